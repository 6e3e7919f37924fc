"""The guest side: every (backend, N, phase) run of the plan, repeated and interleaved;
one run (one_run) is the steps of README.md's "What one run does"."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mshare_lab import paths, proc
from mshare_lab.benchloop import Cell, Loop, identity, rotation
from vmrun import provenance

from . import mem, trigger
from .sharer import Sharer, spawn
from .ticker import ticking

__all__ = ["PLANS", "Plan", "run_plan"]

Doc = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    size_mib: int
    sharers: tuple[int, ...]
    reps: int
    backends: tuple[str, ...] = mem.BACKENDS
    phases: tuple[str, ...] = ("idle", "reader")
    baseline_s: float = 2.0
    after_s: float = 1.0
    # CPUs the sharers after the first are pinned to, round robin (None: unpinned).  With
    # 4 vCPUs and (1, 2): compaction on CPU 0, mappers on 1 and 2, CPU 3 never a mapper.
    mapper_cpus: tuple[int, ...] | None = None
    # Sharers 1..N-1 as mapper.c processes of a few pages each instead of forked Python
    # (about 200 pages each once they run): regions only.
    c_mappers: bool = False
    # The timed host migration (trigger.py): "compact" or "offline"; the latter needs
    # kernel_args with movablecore= (the host side boots the guest with them).
    trigger: str = "compact"
    kernel_args: tuple[str, ...] = ()
    # Seconds the reader reads beside a ticker on its CPU before it is measured (0: not
    # at all, the plans before 2026-12-07's cpus2-offline-warm): ticker.py says why.
    reader_warm_s: float = 0.0


PLANS: dict[str, Plan] = {
    "quick": Plan(size_mib=32, sharers=(1, 8), reps=3, baseline_s=1.5, after_s=0.5),
    "n32": Plan(size_mib=32, sharers=(32,), reps=3, baseline_s=1.5, after_s=0.5),
    "default": Plan(size_mib=128, sharers=(1, 8, 32), reps=3),
    "large": Plan(size_mib=256, sharers=(1, 8, 32), reps=3),
    "smoke": Plan(size_mib=16, sharers=(1, 2), reps=1, baseline_s=1.0, after_s=0.5),
    # Issue 20's plans: boot with --cpus 4.
    "cpus4": Plan(size_mib=32, sharers=(1, 8), reps=10, baseline_s=1.5, after_s=0.5,
                  mapper_cpus=(1, 2)),
    # 12, not 10: a repetition that moves too few pages leaves no pair (the v8 run had
    # 9 pairs of 10), and the decision rule needs 10.
    "n1000": Plan(size_mib=32, sharers=(1, 1000), reps=12, backends=("region",),
                  phases=("idle",), mapper_cpus=(1, 2), c_mappers=True),
    # The n1000 question again with a migration that moves every shared page every time
    # (added after two compaction runs left too few pairs): memory offline of the
    # blocks holding them, 4 GiB of the 8 made ZONE_MOVABLE.  Boot with --cpus 3
    # (4 starved the host's 2 cores: soft lockups) and --memory 8G.  12, not 10: the
    # first run (10) lost a pair where the pages came from the one movable block that
    # cannot go offline (memblock's reserved pages at the top of memory).
    "n1000-offline": Plan(size_mib=32, sharers=(1, 1000), reps=12, backends=("region",),
                          phases=("idle",), mapper_cpus=(1, 2), c_mappers=True,
                          trigger="offline", kernel_args=("movablecore=4G",)),
    # cpus4's reader question again with a migration that moves every shared page of
    # every backend every time: the compaction runs moved 16-3,734 of 8,192 pages, and
    # the drop, which grows with the pages moved, left both N inconclusive (intervals
    # 0.72-1.16 and 0.80-1.42).  Boot with --cpus 4 --memory 8G.
    "cpus4-offline": Plan(size_mib=32, sharers=(1, 8), reps=12, baseline_s=1.5,
                          after_s=0.5, phases=("reader",), mapper_cpus=(1, 2),
                          trigger="offline", kernel_args=("movablecore=4G",)),
    # The same reader question with one vCPU per host core (boot with --cpus 2 --memory
    # 8G): with 4 vCPUs on the 2 cores the reader's rate before the migration was
    # bimodal (about 4 or 9 million pages/s, whether its vCPU had a core to itself), and
    # that, not the flush, decided the cpus4-offline drop.  The migration on CPU 0, the
    # reader and the other sharers on CPU 1.
    "cpus2-offline": Plan(size_mib=32, sharers=(1, 8), reps=12, baseline_s=1.5,
                          after_s=0.5, phases=("reader",), mapper_cpus=(1,),
                          trigger="offline", kernel_args=("movablecore=4G",)),
    # cpus2-offline again with the reader's software TLB grown before it is measured,
    # added after that plan's N = 8 miss (a plan changed after a miss): there the
    # region's reader started at 9.6 million pages/s and shm's at 4.8 (medians), while
    # after the migration every backend's median was 7.6-9.2; if the rate a reader
    # starts at is the vCPU's TLB size (ticker.py), this plan's baselines agree.
    "cpus2-offline-warm": Plan(size_mib=32, sharers=(1, 8), reps=12, baseline_s=1.5,
                               after_s=0.5, phases=("reader",), mapper_cpus=(1,),
                               trigger="offline", kernel_args=("movablecore=4G",),
                               reader_warm_s=1.0),
}


STALL_S = 300.0

VMSTAT_KEYS = ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned",
               "compact_free_scanned", "compact_isolated", "nr_tlb_remote_flush",
               "nr_tlb_remote_flush_received", "nr_tlb_local_flush_all",
               "nr_tlb_local_flush_one")


def interrupts() -> dict[str, list[int]]:
    """Per-CPU counts of the IPI rows: CAL (function calls) and TLB (shootdowns)."""
    return {k: v for k, v in proc.interrupts().items() if k in ("CAL", "TLB", "RES")}


def zone_free() -> dict[str, int]:
    """nr_free_pages of each zone (pages in per-CPU lists do not count as free)."""
    out: dict[str, int] = {}
    zone = "?"
    for line in Path("/proc/zoneinfo").read_text().splitlines():
        if line.startswith("Node"):
            zone = line.split()[-1]
        elif line.strip().startswith("nr_free_pages"):
            out[zone] = int(line.split()[-1])
    return out


def block_types() -> dict[str, list[int]]:
    """Pageblocks per migratetype and zone (/proc/pagetypeinfo's last table)."""
    out: dict[str, list[int]] = {}
    try:
        text = Path("/proc/pagetypeinfo").read_text()
    except OSError:
        return out
    # The rows after the table's heading line (the one line that starts with it).
    for row in text.partition("\nNumber of blocks type")[2].splitlines()[1:]:
        parts = row.replace(",", " ").split()
        if len(parts) > 4 and parts[0] == "Node":
            out[parts[3]] = [int(x) for x in parts[4:]]
    return out


def prepare_guest() -> list[str]:
    """Quiet the guest: no THP, no proactive compaction; a writable /dev/shm."""
    notes: list[str] = []
    # percpu_pagelist_high_fraction: keep the per-CPU free lists short, so that the
    # filler's pages go back to the buddy allocator at once (as holes compaction can
    # fill) instead of waiting in CPU 0's list, invisible to the free scanner.
    settings = {"/proc/sys/vm/percpu_pagelist_high_fraction": "1000000",
                "/sys/kernel/mm/transparent_hugepage/enabled": "never",
                "/proc/sys/vm/compaction_proactiveness": "0",
                "/proc/sys/vm/compact_unevictable_allowed": "1"}
    for path, value in settings.items():
        if os.path.exists(path):
            try:
                Path(path).write_text(value + "\n")
                notes.append(f"{path} = {value}")
            except OSError as e:
                notes.append(f"{path}: could not set {value}: {e}")
        else:
            notes.append(f"{path}: absent")
    # Two pipe ends per sharer: 1,000 sharers need more than the default 1,024 fds.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else max(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    notes.append(f"RLIMIT_NOFILE = {want}")
    if not (os.path.isdir(mem.SHM_DIR) and os.access(mem.SHM_DIR, os.W_OK)):
        os.makedirs(mem.SHM_DIR, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", mem.SHM_DIR],
                       check=True)
        notes.append(f"mounted a tmpfs on {mem.SHM_DIR}")
    return notes


def guest_info() -> Doc:
    zones = [line.strip() for line in Path("/proc/zoneinfo").read_text().splitlines()
             if line.startswith("Node") or line.strip().startswith("managed")]
    opts = proc.kernel_config((
        "CONFIG_MSHARE", "CONFIG_DEBUG_VM", "CONFIG_LOCKDEP", "CONFIG_PROVE_LOCKING",
        "CONFIG_DEBUG_KMEMLEAK", "CONFIG_KASAN", "CONFIG_COMPACTION", "CONFIG_MIGRATION",
        "CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_DEBUG_TLBFLUSH", "CONFIG_PREEMPT",
        "CONFIG_PREEMPT_VOLUNTARY", "CONFIG_PREEMPT_NONE", "CONFIG_HZ"))
    return {"kernel": platform.release(), "version": platform.version(),
            "cpus": os.cpu_count(), "cpu_model": proc.cpu_model(),
            "mem_total_kib": proc.meminfo_kib("MemTotal"),
            "zones": zones, "kernel_image": paths.kernel_image(),
            "config": opts, "python": sys.version.split()[0]}


def _rate(stamps: list[float], chunk_pages: int, lo: float, hi: float) -> float | None:
    """Pages per second read by chunks that ended in [lo, hi)."""
    if hi - lo <= 0:
        return None
    return sum(1 for s in stamps if lo <= s < hi) * chunk_pages / (hi - lo)


@functools.cache
def _mapper_exe() -> str:
    """mapper.c, built once per guest with its gcc."""
    exe = os.path.join(tempfile.mkdtemp(prefix="flushcost-"), "mapper")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, str(Path(__file__).with_name("mapper.c"))],
                   check=True)
    return exe


def _c_mappers(n: int, path: str, nbytes: int, cpus: tuple[int, ...] | None,
               ) -> list[subprocess.Popen[str]]:
    """n mapper.c processes, each waiting for its go line before it maps path."""
    return [subprocess.Popen([_mapper_exe(), path, str(nbytes),
                              str(cpus[i % len(cpus)] if cpus else -1)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for i in range(n)]


def _c_touch(mappers: list[subprocess.Popen[str]]) -> list[Doc]:
    """Let every mapper map and read the region; their faults and seconds."""
    for m in mappers:
        assert m.stdin is not None
        m.stdin.write("go\n")
        m.stdin.flush()
    out = []
    for m in mappers:
        assert m.stdout is not None
        line = m.stdout.readline().split()
        if len(line) != 3:
            raise RuntimeError(f"mapper {m.pid} did not map the region (exit {m.poll()})")
        out.append({"touch_faults": int(line[0]), "touch_s": int(line[1]) / 1e9})
    return out


def one_run(backend: str, n: int, phase: str, plan: Plan, tag: str) -> Doc:
    nbytes = plan.size_mib << 20
    name = f"flushcost-{os.getpid()}-{tag}"
    inherited = mem.anon_premap(nbytes) if backend == "anon" else None
    sharers: list[Sharer] = []
    mappers: list[subprocess.Popen[str]] = []
    run: Doc = {"backend": backend, "sharers": n, "phase": phase, "size_mib": plan.size_mib}
    try:
        for i in range(1 if plan.c_mappers else n):
            sharers.append(spawn(i, backend, name, nbytes, inherited))
        if plan.c_mappers:
            mappers = _c_mappers(n - 1, mem.path(backend, name), nbytes, plan.mapper_cpus)
        os.sched_setaffinity(0, {0})  # the compaction runs on CPU 0; the reader on CPU 1
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        run["precompact_s"] = trigger.compact()
        if plan.trigger == "offline":
            run["fenced_pages"] = trigger.fence()
        run["free_pages_before"] = zone_free()
        run["block_types_before"] = block_types()
        run.update(sharers[0].call(op="populate"))
        run["free_pages_populated"] = zone_free()
        run["block_types_populated"] = block_types()
        cpus = plan.mapper_cpus
        for i, s in enumerate(sharers[1:]):
            s.send(op="attach", cpu=cpus[i % len(cpus)] if cpus else None)
        touch = [s.recv() for s in sharers[1:]] + _c_touch(mappers)
        run["attach_touch_s"] = [t["touch_s"] for t in touch]
        run["attach_touch_faults"] = [t["touch_faults"] for t in touch]
        run["pfns_before"] = sharers[0].call(
            op="pfns", block_pages=trigger.block_pages() if plan.trigger == "offline" else 0)
        reader = sharers[-1]
        started = 0.0
        if phase == "reader":
            cpu = plan.mapper_cpus[0] if plan.mapper_cpus else \
                1 if (os.cpu_count() or 1) > 1 else 0
            with ticking(cpu) if plan.reader_warm_s else contextlib.nullcontext():
                reader.send(op="read", cpu=cpu, warm_s=plan.reader_warm_s)
                started = float(reader.recv()["started"])
            time.sleep(plan.baseline_s)
        v0, i0 = proc.vmstat(), interrupts()
        t0 = time.monotonic()
        with trigger.counting_migrations() as migrated:
            if plan.trigger == "offline":
                # The key keeps its name: the report reads every trigger's time from it.
                run["compact_s"], run["offlined_blocks"], run["busy_blocks"] = \
                    trigger.offline(run["pfns_before"].pop("blocks"))
            else:
                run["compact_s"] = trigger.compact()
        t1 = time.monotonic()
        v1, i1 = proc.vmstat(), interrupts()
        if migrated:
            run["migrated"] = migrated[0]
        if phase == "reader":
            time.sleep(plan.after_s)
            t2 = time.monotonic()
            reader.send(op="stop")
            rd = reader.recv()
            stamps = [float(s) for s in rd["stamps"]]
            cp = int(rd["chunk_pages"])
            run["reader"] = {"before_pages_s": _rate(stamps, cp, started + 0.3, t0),  # skip warm-up
                             "during_pages_s": _rate(stamps, cp, t0, t1),
                             "after_pages_s": _rate(stamps, cp, t1, t2), "minflt": rd["minflt"],
                             "nvcsw": rd["nvcsw"], "nivcsw": rd["nivcsw"],
                             "chunks": len(stamps)}
        run["vmstat"] = {k: v1[k] - v0[k] for k in VMSTAT_KEYS if k in v0 and k in v1}
        run["ipis"] = {k: [b - a for a, b in zip(i0[k], i1[k], strict=True)] for k in i0}
        run["pfns_after"] = sharers[0].call(op="pfns", compare=True)
        run["free_pages_after"] = zone_free()
        run["block_types_after"] = block_types()
        run["ok"] = True
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        run["ok"] = False
        run["error"] = f"{type(e).__name__}: {e}"
    finally:
        for m in mappers:
            if m.stdin is not None:
                m.stdin.close()
        run["exit_statuses"] = sorted({s.finish() for s in sharers} | {m.wait() for m in mappers})
        mem.remove(backend, name)
        if inherited is not None:
            inherited.close()
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    return run


def _summary(r: Doc) -> str:
    if not r.get("ok"):
        return f"FAILED: {r.get('error')}"
    s = (f"compact {r['compact_s']:.3f} s, "
         f"shared moved {r['pfns_after'].get('moved')}/{r['pfns_after'].get('present')}, "
         f"CAL {r['ipis'].get('CAL')} TLB {r['ipis'].get('TLB')}")
    if "reader" in r:
        rd = r["reader"]
        s += (f", reader {rd['before_pages_s'] or 0:,.0f} -> {rd['during_pages_s'] or 0:,.0f}"
              " pages/s")
    if r.get("busy_blocks") or r.get("fenced_pages"):
        s += f", busy blocks {r.get('busy_blocks')}, fenced {r.get('fenced_pages', 0)} pages"
    return s


def run_plan(plan_name: str, plan: Plan, out: str, accelerator: str,
             log: Callable[[str], None]) -> Doc:
    notes = prepare_guest()
    doc: Doc = {"schema": 1, "plan_name": plan_name, "plan": asdict(plan),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "guest": {**guest_info(), "accelerator": accelerator},
                "notes": notes, "runs": []}
    # A run takes seconds (a minute at N = 1,000): one past STALL_S is reported.
    loop = Loop(doc, out, identity({"plan_name": plan_name, "plan": doc["plan"]},
                                   provenance.current()), stall_s=STALL_S)
    cells: list[Cell] = [(rep, n, backend, phase) for rep in range(plan.reps)
                         for n in plan.sharers for backend in rotation(plan.backends, rep)
                         for phase in plan.phases]
    seq = {cell: k for k, cell in enumerate(cells, 1)}

    def measure(cell: Cell) -> Doc:
        rep, n, backend, phase = int(cell[0]), int(cell[1]), str(cell[2]), str(cell[3])
        r = one_run(backend, n, phase, plan, f"{seq[cell]}")
        r["rep"] = rep
        r["seq"] = seq[cell]
        log(f"[{loop.elapsed:6.0f}s] rep {rep} {backend:6} N={n:<3} {phase:6}: {_summary(r)}")
        return r

    return loop.run(cells, measure)
