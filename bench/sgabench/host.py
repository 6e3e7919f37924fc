"""The host side: run bench/sga-guest in one guest boot (or on this host), then report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from kbuild.artifact import Build
from mshare_lab import benchloop, env
from vmrun import guestdoc, provenance

__all__ = ["run_guest", "run_host"]

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


def run_guest(guest_args: list[str], *, memory: str, cpus: int, timeout: float,
              kernel: Build | Path, kvm: bool, out: Path,
              resume: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
    """One boot of the kernel; the guest saves its JSON to ``out`` after every run."""
    use_kvm = kvm or env.kvm()
    args = [*guest_args, "--accelerator", "KVM" if use_kvm else "TCG", "--reserve-hugepages"]
    return guestdoc.run_bench(GUEST_SCRIPT, args, kernel, label="run-sga", cpus=cpus,
                              memory=memory, timeout=timeout, kvm=use_kvm, out=out,
                              resume=resume)
