"""The host side: run bench/sga-guest in one guest boot (or on this host), then report."""

from __future__ import annotations

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
BUILD = REPO / "kernel-build" / "build"
if str(REPO / "ci") not in sys.path:
    sys.path.insert(0, str(REPO / "ci"))

from vmrun import provenance  # ci/ is not a package: on sys.path above
from vmrun.cli import cache_root

from . import guestjson


def release_kernel() -> str | None:
    """The release bzImage (kernel-build/build: from the cache, or built), so the result
    can name the exact build it ran on."""
    proc = subprocess.run([sys.executable, str(BUILD), "--flavor", "release"],
                          stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                          check=False, cwd=REPO)
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if proc.returncode == 0 and lines else None


def host_provenance() -> dict[str, Any]:
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    return {"git_revision": provenance.git_revision(),
            "kernel": {"image": None, "key": None, "flavor": f"host {os.uname().release}",
                       "mshare": None},
            "guest": {"cpus": os.cpu_count(), "memory": mem,
                      "accelerator": "none (host run, no guest)"}}


def run_host(guest_args: list[str]) -> tuple[int, dict[str, Any] | None]:
    """Run the guest side here, on the running kernel (tooling tests, no msharefs)."""
    with tempfile.TemporaryDirectory(prefix="sga-bench-") as tmp:
        out = Path(tmp) / "sga.json"
        cmd = [sys.executable, str(REPO / GUEST_SCRIPT), *guest_args, "--out", str(out),
               "--accelerator", "none (host run, no guest)"]
        status = subprocess.run(cmd, cwd=REPO, check=False).returncode
        doc = guestjson.load(out)
        if doc is not None:
            doc["provenance"] = host_provenance()
        return status, doc


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
        kernel = kernel or release_kernel()
        if kernel is None:
            print("run-sga: the release kernel did not build", file=sys.stderr)
            return 126, None
        cmd = [sys.executable, str(VM_RUN), "--kernel", kernel, "--memory", memory,
               "--cpus", str(cpus),
               "--timeout", str(timeout), "--rwdir", tmp, *(["--kvm"] if kvm else []),
               "--", *guest_cmd]
        print(f"run-sga: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        status = subprocess.run(cmd, cwd=REPO, check=False).returncode
        doc = guestjson.load(out)
        if doc is not None:
            doc["provenance"] = provenance.collect(
                Path(kernel).resolve(), cpus=cpus, memory=memory, accelerator=accel,
                builds=cache_root() / "builds")
        return status, doc
