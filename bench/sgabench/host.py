"""The host side: run bench/sga-guest in one guest boot (or on this host), then report."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mshare_lab import env
from vmrun import guestdoc, provenance

__all__ = ["run_guest", "run_host"]

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = "bench/sga-guest"


def run_host(guest_args: list[str]) -> tuple[int, dict[str, Any] | None]:
    """Run the guest side here, on the running kernel (tooling tests, no msharefs)."""
    record = provenance.on_host()
    with tempfile.TemporaryDirectory(prefix="sga-bench-") as tmp:
        out = Path(tmp) / "sga.json"
        cmd = [sys.executable, str(REPO / GUEST_SCRIPT), *guest_args, "--out", str(out),
               "--accelerator", "none (host run, no guest)"]
        code = subprocess.run(cmd, cwd=REPO, check=False).returncode
        doc = guestdoc.load(out)
        if doc is not None:
            doc["provenance"] = provenance.finish(record)
        return code, doc


def run_guest(guest_args: list[str], *, memory: str, cpus: int, timeout: float,
              kernel: str | None, kvm: bool) -> tuple[int, dict[str, Any] | None]:
    """One boot of the release kernel; the guest writes its JSON into a --rwdir."""
    use_kvm = kvm or env.kvm()
    args = [*guest_args, "--accelerator", "KVM" if use_kvm else "TCG", "--reserve-hugepages"]
    return guestdoc.run_bench(GUEST_SCRIPT, args, kernel, label="run-sga", cpus=cpus,
                              memory=memory, timeout=timeout, kvm=use_kvm)
