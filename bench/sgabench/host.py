"""Run bench/sga-guest on this host (run-sga --host), as run-sga's boot runs it in a guest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from mshare_lab import benchloop
from vmrun import guestdoc, provenance

__all__ = ["GUEST_SCRIPT", "run_host"]

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = "bench/sga-guest"


def run_host(guest_args: list[str], out: Path,
             resume: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run the guest side here, on the running kernel (tooling tests, no msharefs),
    saving to ``out`` after every run; ``resume`` is a saved document to continue."""
    record = provenance.on_host()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    if resume is not None:
        benchloop.save(resume, str(out))
    cmd = [sys.executable, str(REPO / GUEST_SCRIPT), *guest_args, "--out", str(out),
           "--accelerator", "none (host run, no guest)",
           *(["--resume"] if resume is not None else [])]
    code = subprocess.run(cmd, cwd=REPO, check=False).returncode
    doc = guestdoc.load(out)
    if doc is not None:
        doc["provenance"] = provenance.finish(record)
    return code, doc
