"""memory.high of a region's cgroup holds against mappers in other cgroups (second
review, F1), and a mapper throttled in a region fault still dies at once of SIGKILL.

A creator in cgroup A (cgroup v2, memory.high set, memory.max unlimited) makes a region; a
mapper in the test's own cgroup writes its pages.  Like a task inside A writing its own
shared memory, it must be throttled and A reclaimed (memory.events "high" counts
reclaim_high() runs on A).  The guest has no swap, so shmem is not reclaimable: nothing
here expects memory.current to fall.  The inside task and the outside mapper write at the
same time, so both see the same overage and the same host load: what is compared is how
much each wrote while A was over memory.high.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import harness
import kapi
import pytest

from mshare_lab import iouring, proc

PAGE = kapi.PAGE
MiB = 1 << 20
HIGH = 16 * MiB
CAP = 64 * MiB
HUGE = 2 * MiB
SECONDS = 10.0
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE

pytestmark = pytest.mark.serial


def _current(group: Path) -> int:
    return int((group / "memory.current").read_text())


def _write(start: int, cap: int, seconds: float) -> int:
    """Write one byte a page from start on, up to cap bytes, or for seconds once HIGH
    bytes are written (how long the first HIGH bytes take depends on the machine's load,
    not on memory.high); bytes written."""
    deadline = time.monotonic() + harness.scaled(120)
    done = 0
    while done < cap and time.monotonic() < deadline:
        ctypes.memset(start + done, 1, 1)
        done += PAGE
        if done == HIGH:
            deadline = min(deadline, time.monotonic() + seconds)
    return done


def _warm_up() -> None:
    """Run _write once on scratch memory first, so that the copy-on-write faults of the
    forked interpreter land before the child joins a cgroup."""
    scratch = kapi.mmap(0, 64 * PAGE, harness.RW, kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS, -1)
    _write(scratch, 64 * PAGE, SECONDS)
    kapi.munmap(scratch, 64 * PAGE)


def _exited(pid: int) -> bool:
    """Whether the child has exited (a zombie: not reaped, so its pid stays ours)."""
    return proc.state(pid) in (None, "Z", "X")


def _child(fn: Callable[[], object]) -> harness.Child:
    return harness.Child(fn)


def _kill(child: harness.Child) -> None:
    """SIGKILL child (it may be gone already) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.wait_status(30)


def _attach(path: str, start: int) -> None:
    """In a mapper outside the region's cgroup: warm up, then map the region at start."""
    _warm_up()
    fd = os.open(path, os.O_RDWR)
    kapi.mmap(start, harness.alignment(), harness.RW, NOREPLACE, fd)


def _outside_writer(path: str, start: int, cap: int,
                    seconds: float = SECONDS) -> Callable[[], int]:
    def body() -> int:
        _attach(path, start)
        return _write(start, cap, seconds)
    return body


# Words of the board the two racing writers share with the test.
GO, STOP, INSIDE, OUTSIDE = range(4)
# memory.high is paid for in charge batches (MEMCG_CHARGE_BATCH pages): a writer may be
# one batch ahead of the other at any moment.
BATCH = 64 * PAGE


def _board() -> ctypes.Array[ctypes.c_int64]:
    """Four words in shared memory, made before the writers fork."""
    addr = kapi.mmap(0, PAGE, harness.RW, kapi.MAP_SHARED | kapi.MAP_ANONYMOUS, -1)
    return (ctypes.c_int64 * 4).from_address(addr)


def _race_write(start: int, board: ctypes.Array[ctypes.c_int64], slot: int) -> int:
    """Once the board says go, write one byte a page from start on, publishing the bytes
    written in board[slot], until the board says stop or CAP; bytes written."""
    deadline = time.monotonic() + harness.scaled(120)
    while not board[GO] and time.monotonic() < deadline:
        time.sleep(0.001)
    done = 0
    while done < CAP and not board[STOP] and time.monotonic() < deadline:
        ctypes.memset(start + done, 1, 1)
        done += PAGE
        board[slot] = done
    return done


def _inside_racer(group: Path, board: ctypes.Array[ctypes.c_int64]) -> Callable[[], int]:
    def body() -> int:
        _warm_up()
        (group / "cgroup.procs").write_text(str(os.getpid()))
        mem = kapi.mmap(0, CAP, harness.RW, kapi.MAP_SHARED | kapi.MAP_ANONYMOUS, -1)
        return _race_write(mem, board, INSIDE)
    return body


def _outside_racer(path: str, start: int,
                   board: ctypes.Array[ctypes.c_int64]) -> Callable[[], int]:
    def body() -> int:
        _attach(path, start)
        return _race_write(start, board, OUTSIDE)
    return body


@pytest.mark.timeout(300)
def test_outside_mapper_past_memory_high_no_faster_than_task_inside(
        regions: harness.Regions, memcg: Path) -> None:
    board = _board()
    with harness.region_in_cgroup(memcg, regions, "high") as (path, start):
        (memcg / "memory.high").write_text(str(HIGH))
        racers = [_child(_inside_racer(memcg, board)),
                  _child(_outside_racer(path, start, board))]
        time.sleep(harness.scaled(2))  # both set up (warm-up, cgroup, mmap)
        board[GO] = 1
        crossed: tuple[float, int, int] | None = None
        last = (0, 0)
        while not all(_exited(r.pid) for r in racers):
            now, inside, outside = time.monotonic(), board[INSIDE], board[OUTSIDE]
            if crossed is None and _current(memcg) > HIGH:
                crossed = (now, inside, outside)
            if crossed is not None and not board[STOP]:
                last = (inside, outside)
                if now - crossed[0] >= SECONDS:
                    board[STOP] = 1
            time.sleep(0.02)
        for r in racers:
            r.result()
    assert crossed is not None, "memory.current never went past memory.high"
    in_past, out_past = last[0] - crossed[1], last[1] - crossed[2]
    print(f"# over memory.high for {SECONDS:.0f} s: outside mapper {out_past / MiB:.2f} MiB, "
          f"task inside {in_past / MiB:.2f} MiB")
    assert out_past <= 1.5 * in_past + BATCH, \
        f"while over memory.high for {SECONDS:.0f} s the outside mapper wrote " \
        f"{out_past / MiB:.2f} MiB, the task inside {in_past / MiB:.2f} MiB"


@pytest.mark.timeout(300)
def test_outside_mapper_past_memory_high_reclaims_region_cgroup(
        regions: harness.Regions, memcg: Path) -> None:
    with harness.region_in_cgroup(memcg, regions, "high") as (path, start):
        (memcg / "memory.high").write_text(str(HIGH))
        before = harness.cgroup_event(memcg, "high")
        outside = _child(_outside_writer(path, start, CAP))
        outside.result(timeout=120)
        after = harness.cgroup_event(memcg, "high")
    assert after > before, f"memory.events high stayed {before}: A was never reclaimed"


@pytest.mark.timeout(300)
def test_mapper_throttled_in_region_fault_dies_within_1s_of_sigkill(
        regions: harness.Regions, memcg: Path) -> None:
    with harness.region_in_cgroup(memcg, regions, "kill") as (path, start):
        (memcg / "memory.high").write_text(str(1 * MiB))
        mapper = _child(_outside_writer(path, start, CAP, 120))
        try:
            # Throttled: asleep in the kernel (S or D) for 0.5 s running, not finished.
            deadline = time.monotonic() + harness.scaled(60)
            asleep_since: float | None = None
            while time.monotonic() < deadline:
                if _exited(mapper.pid):
                    pytest.fail("the mapper wrote the whole cap: it was never throttled")
                if proc.state(mapper.pid) in ("S", "D"):
                    asleep_since = asleep_since or time.monotonic()
                    if time.monotonic() - asleep_since >= 0.5:
                        break
                else:
                    asleep_since = None
                time.sleep(0.01)
            else:
                pytest.fail("the mapper never stayed asleep in the kernel for 0.5 s")
            t0 = time.monotonic()
            os.kill(mapper.pid, signal.SIGKILL)
            while not _exited(mapper.pid) and time.monotonic() - t0 < harness.scaled(30):
                time.sleep(0.005)
            took = time.monotonic() - t0
        finally:
            _kill(mapper)
    assert took <= harness.scaled(1.0), f"the mapper took {took:.2f} s to die of SIGKILL"


def _one_read(start: int, nbytes: int) -> Callable[[], None]:
    """One read(2) of nbytes from /dev/zero into the window: every fault is taken from
    copy_to_user, inside one system call."""
    def work() -> None:
        zero = os.open("/dev/zero", os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        libc.read.restype = ctypes.c_ssize_t
        assert libc.read(zero, start, nbytes) == nbytes
    return work


def _outside_reader(path: str, start: int, nbytes: int) -> Callable[[], None]:
    def body() -> None:
        _attach(path, start)
        _one_read(start, nbytes)()
    return body


def _worker_reader(path: str, start: int, nbytes: int) -> Callable[[], None]:
    """One read of nbytes from /dev/zero into the window done by an io_uring worker
    thread of the mapper (a user worker: it never returns to user space)."""
    def body() -> None:
        _attach(path, start)
        zero = os.open("/dev/zero", os.O_RDONLY)
        assert iouring.worker_read(zero, start, nbytes) == nbytes
    return body


def _peak_of_one_read(group: Path, regions: harness.Regions, name: str,
                      reader: Callable[[str, int, int], Callable[[], None]]) -> int:
    """A region in group, memory.high HIGH; a mapper outside it runs reader(path, start,
    CAP) (for up to 10 s, then it is killed): the group's highest memory.current."""
    peak = 0
    with harness.region_in_cgroup(group, regions, name) as (path, start):
        (group / "memory.high").write_text(str(HIGH))
        mapper = _child(reader(path, start, CAP))
        try:
            deadline = time.monotonic() + harness.scaled(10)
            while time.monotonic() < deadline and not _exited(mapper.pid):
                peak = max(peak, _current(group))
                time.sleep(0.02)
            peak = max(peak, _current(group))
        finally:
            _kill(mapper)
    return peak


@pytest.mark.timeout(300)
def test_outside_mapper_one_syscall_stays_near_memory_high(
        regions: harness.Regions, memcg: Path) -> None:
    """A large overcharge inside one system call is throttled at once, as for a task in
    the cgroup (the core's synchronous check), not only on the way back to user space:
    one read(2) of 64 MiB into the window keeps the region cgroup under 2 x high."""
    peak = _peak_of_one_read(memcg, regions, "sys", _outside_reader)
    assert peak < 2 * HIGH, \
        f"one read(2) by an outside mapper took the region cgroup to {peak // MiB} MiB " \
        f"(memory.high {HIGH // MiB} MiB)"


@pytest.mark.timeout(300)
def test_io_uring_worker_one_read_stays_near_memory_high(
        regions: harness.Regions, memcg: Path) -> None:
    """An io_uring worker's region faults pay for the region cgroup's memory.high like its
    process's (review of v7, F1: user workers were left to their own cgroup's count, so
    nothing held the region cgroup): one 64 MiB read stays under 2 x high."""
    peak = _peak_of_one_read(memcg, regions, "uring", _worker_reader)
    assert peak < 2 * HIGH, \
        f"one io_uring read by an outside mapper's worker took the region cgroup to " \
        f"{peak // MiB} MiB (memory.high {HIGH // MiB} MiB)"


def _with_prober(path: str, start: int,
                 work: Callable[[], None]) -> Callable[[], tuple[float, float, float]]:
    """In a mapper: run work (faults into the window) while a second thread maps and
    unmaps an anonymous page every few ms, which needs this process's mmap_lock for
    writing: (seconds the prober spent in mmap+munmap in all, its slowest one, seconds
    the work took)."""
    def body() -> tuple[float, float, float]:
        _attach(path, start)
        stop = threading.Event()
        waited = [0.0, 0.0]  # total, worst

        def probe() -> None:
            while not stop.is_set():
                t = time.monotonic()
                anon = kapi.mmap(0, PAGE, harness.RW, kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS, -1)
                kapi.munmap(anon, PAGE)
                dt = time.monotonic() - t
                waited[0] += dt
                waited[1] = max(waited[1], dt)
                time.sleep(0.005)

        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.monotonic()
        work()  # ctypes drops the GIL: the prober runs
        took = time.monotonic() - t0
        stop.set()
        prober.join()
        return waited[0], waited[1], took
    return body


def _huge_writes(start: int) -> Callable[[], None]:
    """A byte written in each 2 MiB page of CAP / 2."""
    def work() -> None:
        for off in range(0, CAP // 2, HUGE):
            ctypes.memset(start + off, 1, 1)
    return work


# A 2 MiB fault may also compact or reclaim memory for its page (THP "defrag"), holding
# the same locks as any fault on a VM_HUGEPAGE mapping that is not served under a VMA
# lock.  That cost is the allocator's, not memory.high's: the test compacts first and
# allocates without direct compaction.  (It does not explain the prober's rare long
# stalls: one of 0.7 s came with compaction off.)
BLOCKED_SHARE = 0.25
NO_DIRECT_COMPACTION = {"/sys/kernel/mm/transparent_hugepage/defrag": "never"}
# 2 MiB shmem pages allocated (the guest kernel has no VM event counters, so no
# thp_file_alloc in /proc/vmstat).
SHMEM_2M_ALLOCS = Path("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/stats/shmem_alloc")


@pytest.mark.timeout(300)
def test_huge_region_fault_over_memory_high_throttles_holding_no_lock(
        regions: harness.Regions, memcg: Path) -> None:
    """A 2 MiB page is a large overcharge at once; the core would reclaim and sleep for it
    inside the fault, holding the faulting process's mmap_lock and the region's: the
    fault pays on its return to user space instead."""
    with harness.knobs(NO_DIRECT_COMPACTION), \
            harness.region_in_cgroup(memcg, regions, "hugehigh", huge=True) as (path, start):
        Path("/proc/sys/vm/compact_memory").write_text("1")
        before = int(SHMEM_2M_ALLOCS.read_text())
        (memcg / "memory.high").write_text(str(HIGH // 2))
        blocked, worst, took = _child(_with_prober(path, start, _huge_writes(start))).result(timeout=240)
        huge = int(SHMEM_2M_ALLOCS.read_text()) - before
    print(f"# 2 MiB faults over memory.high: {took:.1f} s for {CAP // 2 // MiB} MiB "
          f"({huge} 2 MiB pages); an mmap+munmap beside them: {blocked:.2f} s in all, the "
          f"slowest {worst * 1000:.0f} ms")
    assert huge >= CAP // 2 // HUGE // 2, \
        f"only {huge} of {CAP // 2 // HUGE} faults got a 2 MiB page after compaction"
    assert took >= 2.0, f"{CAP // 2 // MiB} MiB past a {HIGH // 2 // MiB} MiB memory.high " \
        f"in {took:.1f} s: the writer was never throttled"
    # Throttled inside the fault, the writer would hold the lock for nearly all of the
    # time it took (v6: every 2 MiB fault slept there).  A stall of the prober's own (a
    # 0.7 s and a 1.9 s one were seen after other tests, never with the test alone: its
    # cause is not known) is a small share of it.
    assert blocked <= BLOCKED_SHARE * took, \
        f"mmap beside the throttled faults waited {blocked:.2f} s of the {took:.1f} s " \
        f"they took (slowest {worst:.2f} s): the fault sleeps holding the mmap_lock"


ONE_READ = 24 * MiB


@pytest.mark.timeout(300)
def test_outside_mapper_one_syscall_over_memory_high_throttles_holding_no_lock(
        regions: harness.Regions, memcg: Path) -> None:
    """Faults that add up past a charge batch inside one system call are paid for at once
    (the core's synchronous check), but with the faulting process's mmap_lock dropped:
    its other threads' mmap() does not wait for the penalty sleeps (review of v7, F2:
    one read(2) of 64 MiB kept an mmap beside it waiting 98% of 197 s)."""
    with harness.region_in_cgroup(memcg, regions, "readhigh") as (path, start):
        (memcg / "memory.high").write_text(str(HIGH // 2))
        blocked, worst, took = _child(_with_prober(path, start, _one_read(start, ONE_READ))) \
            .result(timeout=240)
    print(f"# one read(2) of {ONE_READ // MiB} MiB over memory.high: {took:.1f} s; an "
          f"mmap+munmap beside it: {blocked:.2f} s in all, the slowest {worst * 1000:.0f} ms")
    assert took >= 2.0, f"{ONE_READ // MiB} MiB past a {HIGH // 2 // MiB} MiB memory.high " \
        f"in {took:.1f} s: the reader was never throttled"
    assert blocked <= BLOCKED_SHARE * took, \
        f"mmap beside the throttled read waited {blocked:.2f} s of the {took:.1f} s it " \
        f"took (slowest {worst:.2f} s): the fault pays holding the mmap_lock"
