"""Which config fragments make up each flavor."""
from __future__ import annotations

from pathlib import Path

# kasan is debug plus KASAN: a KASAN run should also catch what the debug flavor catches.
FLAVOR_FRAGMENTS: dict[str, tuple[str, ...]] = {
    "release": ("release",),
    "debug": ("debug",),
    "kasan": ("debug", "kasan"),
    # release plus what the kernel's own mm selftests need, for the with/without-series
    # comparison (ci/run-mm-selftests).
    "mmtests": ("release", "mm-selftests"),
}
FLAVORS = tuple(FLAVOR_FRAGMENTS)
MSHARE_FRAGMENT = "mshare"
BASE_FRAGMENT = "base"


def fragment_names(flavor: str, mshare: bool) -> list[str]:
    """Fragments in merge order: base, then mshare, then the flavor's own."""
    if flavor not in FLAVOR_FRAGMENTS:
        raise ValueError(f"unknown flavor {flavor!r}; choose from {', '.join(FLAVORS)}")
    names = [BASE_FRAGMENT]
    if mshare:
        names.append(MSHARE_FRAGMENT)
    names.extend(FLAVOR_FRAGMENTS[flavor])
    return names


def fragment_paths(config_dir: Path, flavor: str, mshare: bool) -> list[Path]:
    paths = [config_dir / name for name in fragment_names(flavor, mshare)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing config fragment(s): {', '.join(missing)}")
    return paths
