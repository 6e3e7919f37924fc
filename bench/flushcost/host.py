"""The host side: pick the kernel, find its build key, boot one guest, write the results."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sgabench import guestjson

__all__ = ["KERNELS", "default_kernel", "host_info", "kernel_identity", "run_guest"]

REPO = Path(__file__).resolve().parents[2]
VM_RUN = REPO / "ci" / "vm-run"
KERNELS = Path("/work/kernels")
CACHE = Path(os.environ.get("LIBMSHARE_CACHE", Path.home() / ".cache" / "libmshare"))


CONFIG_KEYS = ("CONFIG_MSHARE", "CONFIG_DEBUG_VM", "CONFIG_LOCKDEP", "CONFIG_PROVE_LOCKING",
               "CONFIG_DEBUG_KMEMLEAK", "CONFIG_KASAN", "CONFIG_COMPACTION",
               "CONFIG_MIGRATION", "CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_VM_EVENT_COUNTERS",
               "CONFIG_DEBUG_TLBFLUSH", "CONFIG_PREEMPT_NONE", "CONFIG_PREEMPT", "CONFIG_HZ")


def default_kernel() -> Path:
    """The release kernel if it exists, else the debug one."""
    for name in ("release-bzImage", "debug-bzImage"):
        if (KERNELS / name).exists():
            return KERNELS / name
    raise FileNotFoundError(f"no bzImage in {KERNELS}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def kernel_identity(image: Path) -> dict[str, Any]:
    """The build key: the cache directory whose bzImage has the same bytes, and its meta."""
    digest = _sha256(image)
    out: dict[str, Any] = {"image": str(image), "sha256": digest, "build_key": None,
                           "meta": None}
    builds = CACHE / "builds"
    if builds.is_dir():
        for d in sorted(builds.iterdir()):
            bz = d / "bzImage"
            if bz.is_file() and bz.stat().st_size == image.stat().st_size \
                    and _sha256(bz) == digest:
                out["build_key"] = d.name
                config = d / "config"
                if config.is_file():
                    out["config"] = {k: v for k, _, v in (line.partition("=") for line in
                                     config.read_text().splitlines()) if k in CONFIG_KEYS}
                meta_file = d / "meta.json"
                if meta_file.is_file():
                    out["meta"] = json.loads(meta_file.read_text())
                break
    meta: dict[str, Any] = out["meta"] or {}
    out["flavor"] = meta.get("flavor") or ("release" if "release" in image.name else
                                           "debug" if "debug" in image.name else "unknown")
    return out


def host_info() -> dict[str, Any]:
    load = os.getloadavg()
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                            "bench/flushcost", "bench/run-flushcost"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"git_rev": rev, "bench_code_dirty": bool(dirty), "host_cpus": os.cpu_count(),
            "loadavg": list(load), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_guest(plan: str, kernel: Path, *, memory: str, cpus: int, timeout: float,
              rwdir: Path) -> tuple[int, dict[str, Any] | None]:
    """One boot: bench/run-flushcost --guest in the guest writes its JSON into rwdir."""
    rwdir.mkdir(parents=True, exist_ok=True)
    out = rwdir / f"flushcost-{plan}-{os.getpid()}.json"
    if out.exists():
        out.unlink()
    guest_cmd = ["sh", "-c", 'exec "$LIBMSHARE_PYTHON" bench/run-flushcost "$@"',
                 "run-flushcost", "--guest", "--plan", plan, "--out", str(out),
                 "--accelerator", "TCG"]
    cmd = [sys.executable, str(VM_RUN), "--kernel", str(kernel), "--cpus", str(cpus),
           "--memory", memory, "--timeout", str(timeout), "--rwdir", str(rwdir),
           "--", *guest_cmd]
    print(f"run-flushcost: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    status = subprocess.run(cmd, cwd=REPO, check=False).returncode
    return status, guestjson.load(out)
