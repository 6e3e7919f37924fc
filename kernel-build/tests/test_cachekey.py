from pathlib import Path

from kbuild.cachekey import compute_key
from kbuild.patches import Patch


def key(tmp_path: Path, **over: object) -> str:
    frag = tmp_path / "base"
    if not frag.exists():
        frag.write_text("CONFIG_A=y\n")
    args: dict[str, object] = {
        "source_ident": "linux-source-6.12=6.12.117-1 sha256=ab", "series": [],
        "series_text": "", "fragments": [frag], "flavor": "debug", "mshare": True,
        "compiler": "gcc 12.2.0",
    }
    args.update(over)
    return compute_key(**args)  # type: ignore[arg-type]


def test_key_is_stable(tmp_path: Path) -> None:
    assert key(tmp_path) == key(tmp_path)


def test_every_input_changes_the_key(tmp_path: Path) -> None:
    base = key(tmp_path)
    p = Patch("0001-mm-add.patch", "11" * 32, tmp_path / "x")
    variants = {
        "source": key(tmp_path, source_ident="linux-source-6.12=6.12.118-1 sha256=ab"),
        "patch": key(tmp_path, series=[p]),
        "patch content": key(tmp_path, series=[Patch(p.name, "22" * 32, p.path)]),
        "series": key(tmp_path, series_text="0001-mm-add.patch\n"),
        "flavor": key(tmp_path, flavor="release"),
        "mshare": key(tmp_path, mshare=False),
        "compiler": key(tmp_path, compiler="gcc 13"),
    }
    assert len(set(variants.values()) | {base}) == len(variants) + 1
    (tmp_path / "base").write_text("CONFIG_A=y\nCONFIG_B=y\n")
    assert key(tmp_path) != base
