"""The cache key of a build: everything that can change the bzImage we would produce."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from .patches import Patch

# Bump when the recipe itself changes (make targets, variables, verification), so builds
# made by an older recipe are not served from the cache.
RECIPE_VERSION = 1


def compiler_ident(cc: str = "gcc") -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return f"{cc}: not found"
    return out.stdout.splitlines()[0] if out.stdout else f"{cc}: no version"


def compute_key(
    *,
    source_ident: str,
    series: list[Patch],
    series_text: str,
    fragments: list[Path],
    flavor: str,
    mshare: bool,
    compiler: str,
) -> str:
    """A hex digest; equal inputs give equal keys, any changed input a new key."""
    material = {
        "recipe": RECIPE_VERSION,
        "source": source_ident,
        "series": series_text,
        "patches": [[p.name, p.sha256] for p in series],
        "fragments": [[f.name, f.read_text()] for f in fragments],
        "flavor": flavor,
        "mshare": mshare,
        "compiler": compiler,
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]
