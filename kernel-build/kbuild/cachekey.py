"""The cache key of a build: everything that can change the bzImage we would produce.

That is the inputs (source package, series, fragments, flavor, mshare on/off), the tools
that turn them into a bzImage (the first line of each one's version), and the recipe
itself: the bytes of kernel-build/build and every kernel-build/kbuild/*.py. Hashing the
recipe's files, rather than a version number someone must remember to bump, means a
build made by any other recipe is never served under this one's key.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from .patches import Patch

KBUILD_DIR = Path(__file__).resolve().parent
KERNEL_BUILD_DIR = KBUILD_DIR.parent

# What runs during a build, and how to ask each for its version. gcc is what CC="ccache
# gcc" compiles with (ccache only caches its output); binutils assembles and links;
# make, flex, bison and perl run in kbuild's own steps; pahole (dwarves) would make BTF.
# Tools our configs never run (openssl signs modules; we build none) stay out: two
# machines that differ only there would miss each other's builds for nothing.
TOOLS: dict[str, list[str]] = {
    "gcc": ["gcc", "--version"],
    "ld": ["ld", "--version"],
    "as": ["as", "--version"],
    "make": ["make", "--version"],
    "flex": ["flex", "--version"],
    "bison": ["bison", "--version"],
    "perl": ["perl", "-e", "print $^V"],
    "pahole": ["pahole", "--version"],
}


def recipe_files() -> list[Path]:
    """The build recipe's own files: the entry script and the kbuild package."""
    files = [KERNEL_BUILD_DIR / "build", *sorted(KBUILD_DIR.glob("*.py"))]
    return [f for f in files if f.is_file()]


def recipe_digest(files: list[Path] | None = None) -> str:
    """sha256 over each recipe file's name and bytes, in a fixed order."""
    h = hashlib.sha256()
    for f in recipe_files() if files is None else files:
        h.update(f"{f.parent.name}/{f.name}\0".encode())
        h.update(hashlib.sha256(f.read_bytes()).hexdigest().encode())
        h.update(b"\n")
    return h.hexdigest()


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return "not found"
    lines = [ln.strip() for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else f"no version (status {out.returncode})"


def toolchain_versions() -> dict[str, str]:
    return {name: tool_version(cmd) for name, cmd in TOOLS.items()}


def key_material(
    *,
    source_ident: str,
    series: list[Patch],
    series_text: str,
    fragments: list[Path],
    flavor: str,
    mshare: bool,
    toolchain: dict[str, str],
    recipe: str,
) -> dict[str, Any]:
    """Everything the key hashes, as a JSON-able dict (meta.json keeps a digest of it)."""
    return {
        "schema": 2,
        "recipe_sha256": recipe,
        "toolchain": dict(sorted(toolchain.items())),
        "source": source_ident,
        "series": series_text,
        "patches": [[p.name, p.sha256] for p in series],
        "fragments": [[f.name, f.read_text()] for f in fragments],
        "flavor": flavor,
        "mshare": mshare,
    }


def digest(material: dict[str, Any]) -> str:
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def compute_key(**inputs: Any) -> str:
    """A hex digest of key_material(**inputs); equal inputs give equal keys, any changed
    input a new key."""
    return digest(key_material(**inputs))


def summary(material: dict[str, Any]) -> dict[str, Any]:
    """The material with file contents replaced by their sha256: what meta.json records,
    so two builds' keys can be compared input by input."""
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]
    out = dict(material)
    out["series"] = sha(material["series"])
    out["fragments"] = [[name, sha(text)] for name, text in material["fragments"]]
    return out
