"""The host side: pick the kernel, name its build, boot one guest, write the results."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kbuild.artifact import Build
from mshare_lab import env
from mshare_lab.gitrev import git_revision
from vmrun import guestdoc, provenance

__all__ = ["host_info", "kernel_identity", "run_guest"]

CONFIG_KEYS = ("CONFIG_MSHARE", "CONFIG_DEBUG_VM", "CONFIG_LOCKDEP", "CONFIG_PROVE_LOCKING",
               "CONFIG_DEBUG_KMEMLEAK", "CONFIG_KASAN", "CONFIG_COMPACTION",
               "CONFIG_MIGRATION", "CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_VM_EVENT_COUNTERS",
               "CONFIG_DEBUG_TLBFLUSH", "CONFIG_PREEMPT_NONE", "CONFIG_PREEMPT", "CONFIG_HZ")


def _build_of(kernel: Build | Path) -> Build | None:
    """The build an image is (a copy of an image is found by its bytes in the cache)."""
    if isinstance(kernel, Build):
        return kernel
    found = Build.from_image(kernel)
    if found is None:
        same = provenance.find_build(kernel, env.cache_root() / "builds")
        found = Build.from_dir(same) if same is not None else None
    return found


def kernel_identity(kernel: Build | Path) -> dict[str, Any]:
    """The build key, its meta.json and the config options the report names."""
    build = _build_of(kernel)
    image = kernel.image if isinstance(kernel, Build) else kernel
    out: dict[str, Any] = {"image": str(image), "build_key": None, "meta": None,
                           "flavor": "unknown"}
    if build is not None:
        out.update(build_key=build.key, meta=build.meta, flavor=build.flavor or "unknown")
        if build.config is not None:
            out["config"] = {k: v for k, _, v in (line.partition("=") for line in
                             build.config.read_text().splitlines()) if k in CONFIG_KEYS}
    return out


def host_info() -> dict[str, Any]:
    rev = git_revision(paths=("bench/flushcost", "bench/run-flushcost"), untracked=True)
    return {"git_rev": rev.removesuffix("+dirty"), "bench_code_dirty": rev.endswith("+dirty"),
            "host_cpus": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_guest(plan: str, kernel: Build | Path, *, memory: str, cpus: int, timeout: float,
              rwdir: Path) -> tuple[int, dict[str, Any] | None]:
    """One boot: bench/run-flushcost --guest in the guest writes its JSON into rwdir."""
    rwdir.mkdir(parents=True, exist_ok=True)
    out = rwdir / f"flushcost-{plan}-{os.getpid()}.json"
    args = ["--guest", "--plan", plan, "--out", str(out), "--accelerator", "TCG"]
    result, doc = guestdoc.run_script("bench/run-flushcost", args, out, kernel,
                                      label="run-flushcost", cpus=cpus, memory=memory,
                                      timeout=timeout)
    return result.status, doc
