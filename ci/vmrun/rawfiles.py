"""A bench boot's raw files, kept outside git, and their sha256 in the committed result.

vm-run's scratch directories are pruned (run.KEEP_RUNS), so a bench copies what its boot
left there (the console log with the guest's progress lines, the whole dmesg, QEMU's
output, the provenance record, and the document as the guest last wrote it) into the
cache, under raw/<the result's name>/<the boot's scratch name>/, and records each
file's sha256 in the document: a committed figure can then be checked against what the
guest printed, and a copy that changed since shows against its sha256.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from mshare_lab import env
from mshare_lab.paths import portable

from . import provenance

__all__ = ["EXPECTED", "FILES", "describe", "keep"]

FILES = ("console.log", "dmesg.txt", "kmemleak.txt", "provenance.json", "status", "uptime",
         "vng-stdout.log", "vng-stderr.log")
# What every finished boot leaves: a record without one of them is said to be incomplete.
EXPECTED = ("console.log", "dmesg.txt", "provenance.json")
DOCUMENT = "document.json"


def keep(scratch: Path, document: Path | None, name: str) -> dict[str, Any] | None:
    """Copy the boot's raw files (those it left) and ``document`` into the cache under
    raw/``name``/; return the record the result keeps: where, and each file's sha256.
    Where they went is said on stderr, and so is what is missing; a copy that fails is
    said there too and gives None (the boot's results matter more than its copies)."""
    into = env.cache_root() / "raw" / name / scratch.name
    sources = [(scratch / f, f) for f in FILES]
    if document is not None:
        sources.append((document, DOCUMENT))
    files = {}
    try:
        into.mkdir(parents=True, exist_ok=True)
        for src, dest in sources:
            if src.is_file():
                shutil.copyfile(src, into / dest)
                files[dest] = provenance.file_sha256(into / dest)
    except OSError as e:
        print(f"rawfiles: the raw files of {scratch} were not kept: {e}", file=sys.stderr)
        return None
    missing = [f for f in EXPECTED if f not in files]
    print(f"rawfiles: the boot's raw files kept in {portable(into)}"
          + (f"; missing: {', '.join(missing)}" if missing else ""), file=sys.stderr)
    return {"boot": scratch.name, "kept_in": portable(into), "sha256": files,
            **({"missing": missing} if missing else {})}


def describe(records: list[dict[str, Any]]) -> list[str]:
    """Report lines: each boot's raw files, where they are kept and their sha256."""
    lines = []
    for rec in records:
        gone = f"; missing: {', '.join(rec['missing'])}" if rec.get("missing") else ""
        lines.append(f"raw files of boot {rec['boot']} (kept outside git in "
                     f"{rec['kept_in']}{gone}):")
        lines += [f"  {digest}  {name}" for name, digest in sorted(rec["sha256"].items())]
    return lines
