"""The fuzzer's coordinator: owns the regions, runs batches of workers, checks the result.

Per batch: write the data pattern, fork the workers (some get SIGKILLed and released
with process_mrelease() mid-batch), collect their reports, then check every data page
and every surviving worker's slots through the coordinator's own mapping, and scan the
kernel log written during the batch.  Compaction runs beside it all, so region pages
migrate under the sharers; every few batches the regions are unlinked and made anew.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mshare_lab import dmesg, kapi, proc
from mshare_lab.kmsg import KmsgTail

from . import layout, worker
from .beside import Beside
from .layout import PAGE
from .state import NOREPLACE, RW, View

MOUNT = "/sys/fs/mshare"
REPO = layout.HERE.parents[1]
SHMEM_SLACK_KB = 64 << 10  # past this, something populated a window
BATCH_LIMIT_S = 120.0  # a batch's workers take seconds; past this one is stuck


def _stuck(pid: int) -> str:
    """What a worker that outlived its batch is doing, for the finding."""
    return f"pid {pid} {proc.wait_site(pid, 8) or 'gone'}"


@dataclass
class Result:
    seed: int
    batches: int = 0
    ops: int = 0
    workers: int = 0
    killed: int = 0
    recreated: int = 0
    huge_regions: int = 0  # of the regions made, those with 2 MiB pages
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    splats: list[str] = field(default_factory=list)
    seconds: float = 0.0
    beside: dict[str, object] = field(default_factory=dict)
    # Where the time went, to explain a run that overruns: memory at the start (kB),
    # each batch's phases (s), the compactor's passes.
    memory_kb: dict[str, int] = field(default_factory=dict)
    batch_phases: list[dict[str, float]] = field(default_factory=list)
    compaction: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.splats


def _compact_forever(stop: threading.Event, passes: dict[str, float]) -> None:
    """Compact all memory every half second; passes counts them and their seconds."""
    while not stop.wait(0.5):
        t0 = time.monotonic()
        try:
            Path("/proc/sys/vm/compact_memory").write_text("1\n")
        except OSError:
            return
        took = time.monotonic() - t0
        passes["passes"] = passes.get("passes", 0) + 1
        passes["seconds"] = round(passes.get("seconds", 0.0) + took, 2)
        passes["longest_s"] = round(max(passes.get("longest_s", 0.0), took), 2)


class Coordinator:
    def __init__(self, seed: int, workers: int, ops_per_worker: int, tag: str,
                 huge: bool = False) -> None:
        self.rng = random.Random(seed)
        self.huge = huge
        self.n_workers = min(workers, layout.MAX_WORKERS)
        self.n_ops = ops_per_worker
        self.tag = tag
        self.result = Result(seed)
        if not Path(MOUNT, "mshare_info").exists():
            kapi.mount("msharefs", MOUNT, "msharefs")
        self.align = int(Path(MOUNT, "mshare_info").read_text())
        self.views: list[View] = []
        self.generation = 0
        self.dirty_slots: set[int] = set()  # workers killed mid-batch: slots unknown
        self.numa = proc.config_enabled("CONFIG_NUMA") is True

    # ------------------------------------------------------------ regions

    def _start(self, index: int) -> int:
        return (4 + 2 * index) * self.align  # 2 TiB up: clear of everything else

    def create_regions(self) -> None:
        self.drop_regions()
        self.generation += 1
        for i in range(layout.REGIONS):
            path = f"{MOUNT}/fuzz-{self.tag}-{os.getpid()}-{self.generation}-{i}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            # With huge, every generation has one region of each kind: 4 KiB pages and
            # 2 MiB pages.
            if self.huge and (i + self.generation) % 2:
                kapi.mshare_set_flags(fd, kapi.MSHARE_F_HUGE)
                self.result.huge_regions += 1
            kapi.mmap(self._start(i), self.align, RW, NOREPLACE, fd)
            self.views.append(View(i, path, self._start(i), self.align, RW, fd))
        self.dirty_slots.clear()

    def drop_regions(self) -> None:
        for v in self.views:
            kapi.munmap(v.start, v.size)
            os.close(v.fd)
            os.unlink(v.path)
        self.views.clear()

    def write_batch_data(self, batch: int) -> None:
        for v in self.views:
            for off in layout.data_pages(v.size):
                b = bytes([layout.data_byte(batch, v.index, off)])
                kapi.poke(v.start + off, b)
                kapi.poke(v.start + off + PAGE - 1, b)
            for wid in range(self.n_workers):
                for off in layout.slot_offsets(wid):
                    kapi.poke(v.start + off, b"\0")

    # ------------------------------------------------------------ one batch

    def run_batch(self, batch: int) -> None:
        res = self.result
        t0 = time.monotonic()
        if batch % 5 == 0 or not self.views:
            self.create_regions()
            res.recreated += 1
        t_regions = time.monotonic()
        self.write_batch_data(batch)
        t_data = time.monotonic()
        shmem0 = kapi.meminfo()["Shmem"]
        procs: dict[int, tuple[int, int]] = {}  # pid -> (wid, report fd)
        for wid in range(self.n_workers):
            r, w = os.pipe()
            seed = self.rng.getrandbits(64)
            pid = os.fork()
            if pid == 0:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                worker.run(worker.new_worker(wid, batch, os.getppid(), self.views), seed,
                           self.n_ops, self.numa, w)
            os.close(w)
            procs[pid] = (wid, r)
        victims = {pid for pid in procs if self.rng.random() < 0.25}
        kill_after = self.rng.uniform(0.05, 1.0)
        started = time.monotonic()
        reports: dict[int, bytes] = {pid: b"" for pid in procs}
        open_fds = {fd: pid for pid, (_, fd) in procs.items()}
        stuck_reported = populated = False
        exited: dict[int, int] = {}  # pid -> wait status

        def drop(fd: int) -> None:
            os.close(fd)
            del open_fds[fd]

        def read_report(fd: int) -> None:
            """Take what a readable pipe holds; at its end of file, close it."""
            chunk = os.read(fd, 1 << 16)
            if chunk:
                reports[open_fds[fd]] += chunk
            else:
                drop(fd)

        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [], 0.05)
            for fd in ready:
                read_report(fd)
            # A worker that has exited has written all it will: drain its pipe and stop
            # waiting for the end of file, which a descendant still holding the write
            # end would otherwise keep away for ever.
            for fd, pid in list(open_fds.items()):
                if pid not in exited:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        exited[pid] = status
                if pid in exited:
                    while fd in open_fds and select.select([fd], [], [], 0)[0]:
                        read_report(fd)
                    if fd in open_fds:
                        drop(fd)
            if victims and time.monotonic() - started > kill_after:
                for pid in victims:
                    self._kill_and_release(pid)
                res.killed += len(victims)
                victims = set()
            if not stuck_reported and time.monotonic() - started > BATCH_LIMIT_S:
                res.findings.append(f"batch {batch}: workers still running after "
                                    f"{BATCH_LIMIT_S:.0f} s: " + "; ".join(
                                        _stuck(pid) for pid in set(open_fds.values())))
                for pid in procs:
                    self._kill_and_release(pid)
                stuck_reported = True
            grew = kapi.meminfo()["Shmem"] - shmem0
            if grew > SHMEM_SLACK_KB and not populated:
                res.findings.append(f"batch {batch}: Shmem grew by {grew} kB: a window "
                                    "was populated")
                for pid in procs:
                    self._kill_and_release(pid)
                populated = True
        t_reports = time.monotonic()
        for pid, (wid, _) in procs.items():
            status = exited[pid] if pid in exited else os.waitpid(pid, 0)[1]
            self._collect(batch, wid, status, reports[pid])
        res.workers += len(procs)
        t_reaped = time.monotonic()
        self.check_regions(batch)
        res.batches += 1
        phases = {"regions": t_regions - t0, "data": t_data - t_regions,
                  "workers": t_reports - t_data, "reap": t_reaped - t_reports,
                  "check": time.monotonic() - t_reaped}
        res.batch_phases.append({k: round(v, 2) for k, v in phases.items()})
        print(f"regionfuzz: batch {batch}: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in phases.items()), file=sys.stderr, flush=True)

    def _kill_and_release(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            try:
                kapi.process_mrelease(pidfd)
            except OSError:
                pass  # already gone, or exiting on its own: both reap the same way
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _collect(self, batch: int, wid: int, status: int, data: bytes) -> None:
        res = self.result
        if os.WIFSIGNALED(status):
            self.dirty_slots.add(wid)
            if os.WTERMSIG(status) != signal.SIGKILL:
                res.findings.append(f"batch {batch}: worker {wid} died of "
                                    f"{signal.Signals(os.WTERMSIG(status)).name}")
            return
        try:
            report = json.loads(data)
        except ValueError:
            res.findings.append(f"batch {batch}: worker {wid} sent no report "
                                f"(status {status})")
            self.dirty_slots.add(wid)
            return
        res.findings.extend(f"batch {batch}: {f}" for f in report["findings"])
        for name, n in report["counts"].items():
            res.counts[name] = res.counts.get(name, 0) + n
            res.ops += n
        for r, off, val in report["shadow"]:
            got = kapi.peek(self.views[r].start + off, 1)
            if got != bytes([val]):
                res.findings.append(f"batch {batch}: worker {wid}'s slot page "
                                    f"{off // PAGE} of region {r} holds {got!r}, "
                                    f"it wrote {val}")

    def check_regions(self, batch: int) -> None:
        for v in self.views:
            for off in layout.data_pages(v.size):
                want = layout.data_want(batch, v.index, off)
                got = layout.peek_data(v.start, off)
                if got != want:
                    self.result.findings.append(
                        f"batch {batch}: data page {off // PAGE} of region {v.index} "
                        f"holds {got!r}, expected {want!r}")

    def note_mlocked(self) -> None:
        """Mlocked (kB) now, every worker gone and every region freed, beside its value at
        the start: recorded, not judged.  A window is never mlocked, and vmstat_refresh's
        mid-run negatives are transients of two CPUs' folds; but the core's per-folio
        mlock count is not exact for a folio isolated when it is mlocked or munlocked
        (compaction runs all along here), so a few pages the coordinator still maps may
        stay counted: runs ended +20 and +24 kB, and Mlocked was back at 0 kB once the
        coordinator had exited (not the regions': no leak left in the system)."""
        self.result.memory_kb["Mlocked_end"] = kapi.meminfo()["Mlocked"]

    def scan_log(self, log: KmsgTail) -> None:
        for line in log.take():
            if dmesg.classify(line):  # the same scanner every guest run uses
                self.result.splats.append(line)


def fuzz(seed: int, seconds: float, workers: int, ops_per_worker: int,
         tag: str = "f", beside: list[str] | None = None, huge: bool = False) -> Result:
    """Run batches until `seconds` have passed (at least one batch), with compaction and
    the `beside` tools (see beside.py) running all along."""
    coord = Coordinator(seed, workers, ops_per_worker, tag, huge)
    info = kapi.meminfo()
    coord.result.memory_kb = {k: info[k] for k in ("MemTotal", "MemFree", "Cached", "Shmem",
                                                   "AnonPages", "Slab", "Mlocked")}
    log = KmsgTail()
    stop = threading.Event()
    compactor = threading.Thread(target=_compact_forever,
                                 args=(stop, coord.result.compaction), daemon=True)
    load = Beside(beside or [], seed, seconds)
    load.start()
    compactor.start()
    start = time.monotonic()
    batch = 0
    try:
        while True:
            coord.run_batch(batch)
            coord.scan_log(log)
            batch += 1
            if time.monotonic() - start >= seconds or coord.result.findings:
                break
    finally:
        t_end = time.monotonic()
        stop.set()
        compactor.join()
        coord.result.beside, problems = load.stop()
        coord.result.findings += problems
        coord.drop_regions()
        coord.scan_log(log)
        coord.note_mlocked()
        coord.result.seconds = round(time.monotonic() - start, 1)
        print(f"regionfuzz: wind-down {time.monotonic() - t_end:.1f} s; compaction "
              f"{coord.result.compaction}; memory at start (kB) {coord.result.memory_kb}",
              file=sys.stderr, flush=True)
    return coord.result
