"""Does a bzImage carry the vmlinux its tree just linked?

x86's bzImage embeds the compressed kernel by assembling arch/x86/boot/compressed/piggy.S,
whose ``.incbin`` names the compressed file without hashing it. ccache (in the depend mode
we run it in) serves piggy.o from its cache whenever piggy.S's text is unchanged, and that
text holds only the payload's sizes: a change that keeps the compressed size (one
instruction swapped for another of the same length) gives a bzImage that boots the
*previous* build's kernel. So the image step runs without ccache (see ``NO_CCACHE``), and
``check`` decompresses the payload and compares it with the tree's vmlinux.bin.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

# The environment for the steps after vmlinux: a handful of small objects, never cached.
NO_CCACHE = {"CCACHE_DISABLE": "1"}

VMLINUX_BIN = Path("arch/x86/boot/compressed/vmlinux.bin")
EXTRACT = Path("scripts/extract-vmlinux")


class PayloadError(RuntimeError):
    """The image carries another kernel than the tree's."""


class CannotCheck(RuntimeError):
    """The image could not be decompressed here (a tool missing): nothing was checked."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(tree: Path, image: Path) -> str:
    """The sha256 of the tree's vmlinux.bin, after checking that `image` carries it (its
    decompressed payload starts with it: relocations, where configured, follow it);
    PayloadError if it carries another, CannotCheck if it cannot be decompressed here."""
    want = (tree / VMLINUX_BIN).read_bytes()
    out = subprocess.run([str(tree / EXTRACT), str(image)], capture_output=True,
                         check=False)
    if out.returncode != 0 or not out.stdout:
        raise CannotCheck(f"{EXTRACT} could not decompress {image}: "
                           f"{out.stderr.decode(errors='replace').strip()}")
    got = out.stdout[:len(want)]
    if got != want:
        raise PayloadError(f"{image} carries a kernel ({_sha256(got)[:16]}) other than the "
                           f"tree's {VMLINUX_BIN} ({_sha256(want)[:16]}): a stale piggy.o?")
    return _sha256(want)
