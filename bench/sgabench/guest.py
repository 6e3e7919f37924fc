"""The guest side: run every backend of every case, saving JSON after each run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from examples.sga import RunConfig, run
from examples.sga.progress import ProgressLine
from libmshare import format_size
from mshare_lab import proc
from mshare_lab.benchloop import Cell, Loop, identity, load, rotation
from vmrun import provenance

from .plans import Case, plan_json

__all__ = ["ensure_dev_shm", "run_plan"]

Doc = dict[str, Any]


def ensure_dev_shm() -> str | None:
    """Make /dev/shm a writable tmpfs if it is not (root in a minimal guest)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return None
    try:
        os.makedirs("/dev/shm", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm"],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"/dev/shm unavailable and could not be mounted: {e}"
    return None


def counters() -> dict[str, int]:
    """System-wide counters that tell where a backend's time goes: TLB shootdown IPIs
    (/proc/interrupts "TLB", summed over CPUs), page faults, and the TLB-flush counts in
    /proc/vmstat when the kernel has them (CONFIG_DEBUG_TLBFLUSH)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        tlb = proc.interrupts().get("TLB")
        if tlb is not None:
            out["tlb_shootdowns"] = sum(tlb)
    wanted = {"pgfault", "pgmajfault", "nr_tlb_remote_flush", "nr_tlb_remote_flush_received",
              "nr_tlb_local_flush_all", "nr_tlb_local_flush_one"}
    with contextlib.suppress(OSError):
        out.update((k, v) for k, v in proc.vmstat().items() if k in wanted)
    return out


def run_plan(cases: list[Case], backends: list[str], out: str, *, accelerator: str | None,
             reserve_hugepages: bool, repeat: int = 1, plan_name: str = "custom",
             resume: bool = False, log: Callable[[str], None] = print) -> Doc:
    """Every case `repeat` times, each repetition every backend once in its rotated order
    (mshare_lab.benchloop.rotation: a slow spell of the shared host falls on all alike),
    saved after every run; with ``resume``, the document at ``out`` is continued."""
    saved = load(out) if resume else None
    plan = plan_json(plan_name, cases, backends, repeat)
    note = ensure_dev_shm()
    doc: Doc = {
        "schema": 2,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "system": proc.system_info(),
        "accelerator": accelerator or proc.system_info()["accelerator"],
        "python": sys.version.split()[0],
        **plan,
        "notes": [note] if note else [],
        "runs": [],
    }
    loop = Loop(doc, out, identity(plan, provenance.current()), saved)

    def measure(cell: Cell) -> Doc:
        idx, rep, name = int(cell[0]), int(cell[1]), str(cell[2])
        case = cases[idx]
        n = case.servers_for(name)
        label = f"{name} N={n} S={format_size(case.size)}" + (
            f" run {rep + 1}/{repeat}" if repeat > 1 else "")
        config = RunConfig(backend=name, servers=n, size=case.size,
                           duration=case.duration, milestones=case.milestones,
                           reserve_hugepages=reserve_hugepages)
        progress = ProgressLine(label)
        before = counters()
        result = run(config, progress)
        progress.finish()
        if result.skipped:
            log(f"{label}: skipped: {result.skipped}")
        else:
            log(f"{label}: PageTables +{result.pt_rise_kib / 1024:.2f} MiB, "
                f"{result.mean(result.touch_faults):.0f} faults/attacher, "
                f"{result.throughput:,.0f} ops/s, "
                f"{'correct' if result.correct else 'INCORRECT'} "
                f"({result.wall_s:.0f} s)")
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        return {"case": idx, "rep": rep, **result.to_json(),
                "counters": {k: v - before[k] for k, v in counters().items() if k in before}}

    cells: list[Cell] = [(idx, rep, name) for idx in range(len(cases))
                         for rep in range(repeat) for name in rotation(backends, rep)]
    return loop.run(cells, measure)
