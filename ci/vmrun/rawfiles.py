"""A bench boot's raw files, kept outside git, and their sha256 in the committed result.

vm-run's scratch directories are pruned (run.KEEP_RUNS), so a bench copies what its boot
left there (the console log with the guest's progress lines, the whole dmesg, QEMU's
output, the provenance record, and the document as the guest last wrote it) into the
cache, under raw/<the result's name>/<the boot's scratch name>/, and records each
file's sha256 in the document: a committed figure can then be checked against what the
guest printed, and the copies cannot drift unseen.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from mshare_lab import env
from mshare_lab.paths import portable

__all__ = ["FILES", "describe", "keep"]

FILES = ("console.log", "dmesg.txt", "vng-stdout.log", "vng-stderr.log", "provenance.json")
DOCUMENT = "document.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keep(scratch: Path, document: Path | None, name: str) -> dict[str, Any]:
    """Copy the boot's raw files (those it left) and ``document`` into the cache under
    raw/``name``/; return the record the result keeps: where, and each file's sha256."""
    into = env.cache_root() / "raw" / name / scratch.name
    into.mkdir(parents=True, exist_ok=True)
    sources = [(scratch / f, f) for f in FILES]
    if document is not None:
        sources.append((document, DOCUMENT))
    files = {}
    for src, dest in sources:
        if src.is_file():
            shutil.copyfile(src, into / dest)
            files[dest] = _sha256(into / dest)
    return {"boot": scratch.name, "kept_in": portable(into), "sha256": files}


def describe(records: list[dict[str, Any]]) -> list[str]:
    """Report lines: each boot's raw files, where they are kept and their sha256."""
    lines = []
    for rec in records:
        lines.append(f"raw files of boot {rec['boot']} (kept outside git in {rec['kept_in']}):")
        lines += [f"  {digest}  {name}" for name, digest in sorted(rec["sha256"].items())]
    return lines
