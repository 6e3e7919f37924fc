"""The host side: run bench/sga-guest in one guest boot (or on this host), then report."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["run_guest", "run_host"]

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = "bench/sga-guest"
VM_RUN = REPO / "ci" / "vm-run"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return doc


def run_host(guest_args: list[str]) -> tuple[int, dict[str, Any] | None]:
    """Run the guest side here, on the running kernel (tooling tests, no msharefs)."""
    with tempfile.TemporaryDirectory(prefix="sga-bench-") as tmp:
        out = Path(tmp) / "sga.json"
        cmd = [sys.executable, str(REPO / GUEST_SCRIPT), *guest_args, "--out", str(out),
               "--accelerator", "none (host run, no guest)"]
        status = subprocess.run(cmd, cwd=REPO, check=False).returncode
        return status, _load(out)


def run_guest(guest_args: list[str], *, memory: str, cpus: int, timeout: float,
              kernel: str | None, kvm: bool) -> tuple[int, dict[str, Any] | None]:
    """One boot of the release kernel; the guest writes its JSON into a --rwdir."""
    accel = "KVM" if kvm or os.environ.get("LIBMSHARE_KVM") == "1" else "TCG"
    with tempfile.TemporaryDirectory(prefix="sga-bench-") as tmp:
        out = Path(tmp) / "sga.json"
        inner = [*guest_args, "--out", str(out), "--accelerator", accel,
                 "--reserve-hugepages"]
        # The guest's own Python is LIBMSHARE_PYTHON (expanded in the guest).
        guest_cmd = ["sh", "-c", f'exec "$LIBMSHARE_PYTHON" {GUEST_SCRIPT} "$@"', "sga-guest",
                     *inner]
        which = ["--kernel", kernel] if kernel else ["--flavor", "release"]
        cmd = [sys.executable, str(VM_RUN), *which, "--memory", memory, "--cpus", str(cpus),
               "--timeout", str(timeout), "--rwdir", tmp, *(["--kvm"] if kvm else []),
               "--", *guest_cmd]
        print(f"run-sga: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        status = subprocess.run(cmd, cwd=REPO, check=False).returncode
        return status, _load(out)
