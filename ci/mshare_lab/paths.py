"""Paths as result files record them: never one machine's absolute path.

A result names the kernel it ran on and where its logs were; on another machine (or in
another checkout) those absolute paths mean nothing, and they leak the build host's
layout into the repository.  portable() keeps what identifies the file: a path under the
cache becomes "~/.cache/libmshare/..." (or "$LIBMSHARE_CACHE/..." when that is set),
one in the checkout becomes relative to it, one under the home directory "~/...".
"""
from __future__ import annotations

import os
from pathlib import Path

from . import env

REPO = Path(__file__).resolve().parents[2]


def portable(path: str | Path) -> str:
    p = Path(path)
    cache_name = f"${env.CACHE}" if os.environ.get(env.CACHE) else "~/.cache/libmshare"
    for root, name in ((env.cache_root(), cache_name), (REPO, "."), (Path.home(), "~")):
        try:
            rel = p.relative_to(root)
        except ValueError:
            continue
        return f"{name}/{rel}" if str(rel) != "." else name
    return str(p)


def kernel_image() -> str | None:
    """The booted bzImage as a result records it (None outside a ci/vm-run guest)."""
    image = env.kernel_image()
    return portable(image) if image else None
