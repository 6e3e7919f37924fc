"""The host side: run bench/pgbench-guest in one guest boot, bring its JSON back."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sgabench import guestjson

__all__ = ["run_guest"]

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = "bench/pgbench-guest"
VM_RUN = REPO / "ci" / "vm-run"


def run_guest(guest_args: list[str], *, memory: str, cpus: int, timeout: float,
              kernel: str | None, kvm: bool) -> tuple[int, dict[str, Any] | None]:
    """One boot (the release flavor unless kernel is given); the guest writes its JSON
    into a --rwdir."""
    with tempfile.TemporaryDirectory(prefix="pgbench-bench-") as tmp:
        out = Path(tmp) / "pgbench.json"
        guest_cmd = ["sh", "-c", f'exec "$LIBMSHARE_PYTHON" {GUEST_SCRIPT} "$@"',
                     "pgbench-guest", *guest_args, "--out", str(out)]
        which = ["--kernel", kernel] if kernel else ["--flavor", "release"]
        cmd = [sys.executable, str(VM_RUN), *which, "--memory", memory, "--cpus", str(cpus),
               "--timeout", str(timeout), "--rwdir", tmp,
               *(["--kvm"] if kvm or os.environ.get("LIBMSHARE_KVM") == "1" else []),
               "--", *guest_cmd]
        print(f"run-pgbench: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        status = subprocess.run(cmd, cwd=REPO, check=False).returncode
        return status, guestjson.load(out)
