"""A region is counted once (issue 21): smaps Pss is each mapper's share, MSHARE_GET_STATS
reports the region, its tables are charged to the creator's cgroup, and the OOM killer
charges each sharer its share of an unlinked region.

The rules are in docs/mshare-api.md ("Counting a region's memory").  The region's pages
are mapped only by its host's tables: no process's RSS counters hold them, so smaps walks
the host's tables for every mapper (Pss divided by the processes that map it), and the
OOM killer adds resident/sharers to the badness of each sharer (processes that have
faulted it in) once no name keeps the region, within the memcg that is out of memory.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import kapi
import pytest
from kernellog import KernelLog

PAGE = kapi.PAGE
MiB = 1 << 20
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


def _touch(start: int, n: int, first: int = 0) -> None:
    """Write a byte in each page of [start + first, start + n)."""
    for off in range(first, n, PAGE):
        kapi.poke(start + off, b"\1")


def _waiting(then: Callable[[], object] | None = None) -> tuple[harness.Child, harness.Gate,
                                                               harness.Counter]:
    """A forked child (it inherits every window) that runs then(), reports, and waits."""
    gate, ready = harness.Gate(), harness.Counter()

    def body() -> None:
        if then is not None:
            then()
        ready.post()
        gate.wait()

    child = harness.Child(body)
    ready.wait_for(1)
    return child, gate, ready


def _finish(*waiters: tuple[harness.Child, harness.Gate, harness.Counter]) -> None:
    for child, gate, ready in waiters:
        gate.open()
        child.result()
        gate.close()
        ready.close()


# ---------------------------------------------------------------- smaps

TOUCH = 16 * MiB


def test_pss_summed_over_four_sharers_is_region_resident(regions: harness.Regions) -> None:
    r = regions.create()
    _touch(r.start, TOUCH)
    waiters = [_waiting() for _ in range(3)]
    try:
        entries = [kapi.smaps_entry(r.start)]
        entries += [kapi.smaps_entry(r.start, child.pid) for child, _, _ in waiters]
    finally:
        _finish(*waiters)
    pss = [kapi.smaps_kb(e, "Pss") for e in entries]
    assert sum(pss) == TOUCH >> 10, f"Pss per sharer {pss} kB"
    assert [kapi.smaps_kb(e, "Rss") for e in entries] == [TOUCH >> 10] * 4
    assert [e["MshareMappers"] for e in entries] == ["4"] * 4


def test_smaps_shows_shared_region_as_shared_dirty(regions: harness.Regions) -> None:
    r = regions.create()
    _touch(r.start, MiB)
    waiter = _waiting()
    try:
        e = kapi.smaps_entry(r.start)
    finally:
        _finish(waiter)
    assert (kapi.smaps_kb(e, "Shared_Dirty"), kapi.smaps_kb(e, "Private_Dirty")) == (1024, 0)


def test_smaps_rollup_pss_counts_region_share(regions: harness.Regions) -> None:
    """smaps_rollup sums the same shares: with the region's 16 MiB shared by two, this
    process's rollup Pss grows by 8 MiB (all else in it unchanged, within 1 MiB)."""
    def rollup_pss() -> int:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))

    r = regions.create()
    _touch(r.start, TOUCH)
    waiter = _waiting()
    try:
        with_region = rollup_pss()
        regions.unmap(r)
        without = rollup_pss()
    finally:
        _finish(waiter)
    grew = with_region - without
    assert abs(grew - (TOUCH >> 11)) <= 1024, f"rollup Pss grew by {grew} kB"


# ---------------------------------------------------------------- MSHARE_GET_STATS

def test_stats_follow_mappers_and_touched_pages(regions: harness.Regions) -> None:
    r = regions.create()
    st = kapi.mshare_stats(r.fd)
    assert (st.start, st.size, st.resident, st.nr_mappers) == (r.start, r.size, 0, 1)
    _touch(r.start, MiB)
    waiters = [_waiting(), _waiting(lambda: _touch(r.start, 2 * MiB, MiB))]
    try:
        st = kapi.mshare_stats(r.fd)
        assert (st.resident, st.nr_mappers) == (2 * MiB, 3)
    finally:
        _finish(*waiters)
    assert kapi.mshare_stats(r.fd).nr_mappers == 1
    regions.unmap(r)
    st = kapi.mshare_stats(r.fd)
    assert (st.resident, st.nr_mappers) == (2 * MiB, 0)  # the open fd keeps the region


def test_stats_page_tables_are_one_copy_for_four_mappers(regions: harness.Regions) -> None:
    r = regions.create()
    _touch(r.start, 8 * MiB)
    alone = kapi.mshare_stats(r.fd).page_tables
    # 8 MiB needs 4 PTE tables, a PMD and a PUD table.
    assert alone >= 6 * PAGE
    waiters = [_waiting(lambda: _touch(r.start, 8 * MiB)) for _ in range(3)]
    try:
        st = kapi.mshare_stats(r.fd)
    finally:
        _finish(*waiters)
    assert (st.page_tables, st.nr_mappers) == (alone, 4)


def test_stats_name_the_creators_memory_cgroup(regions: harness.Regions) -> None:
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    path = regions.path("cgid")
    start = harness.take_window()
    with harness.memory_cgroup("statid") as group:
        def create() -> int:
            fd = harness.create_in_cgroup(group, path, start)
            return int(kapi.mshare_stats(fd).memcg_id)

        assert harness.in_child(create) == group.stat().st_ino


# ---------------------------------------------------------------- memory cgroup

@pytest.fixture
def creator_cgroup(regions: harness.Regions) -> Iterator[tuple[Path, harness.Region]]:
    """A region created by a child living in a new memory cgroup (memory.max unlimited);
    this process attaches it, from the test's own cgroup."""
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    path = regions.path("cgtab")
    start = harness.take_window()
    with harness.memory_cgroup("tables") as group:
        waiter = _waiting(lambda: harness.create_in_cgroup(group, path, start))
        try:
            yield group, regions.attach(path)
        finally:
            _finish(waiter)


@pytest.mark.serial
def test_region_tables_and_pages_charged_to_creator_cgroup(
        creator_cgroup: tuple[Path, harness.Region]) -> None:
    group, r = creator_cgroup
    tables0 = harness.memory_stat(group, "pagetables")
    shmem0 = harness.memory_stat(group, "shmem")
    _touch(r.start, 32 * MiB)  # from outside the group
    tables = kapi.mshare_stats(r.fd).page_tables
    grew = harness.memory_stat(group, "pagetables") - tables0
    assert tables <= grew <= tables + 16 * PAGE, f"cgroup pagetables +{grew}, region {tables}"
    assert harness.memory_stat(group, "shmem") - shmem0 >= 32 * MiB


# ---------------------------------------------------------------- OOM badness

SHARE_TOUCH = 128 * MiB


def _oom_score(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score").read_text())


def _expected_score_gain(nbytes: int) -> float:
    """How much /proc/PID/oom_score grows for nbytes more badness: oom_score is
    (1000 + badness * 1000 / totalpages) * 2 / 3, totalpages = RAM + swap."""
    mem = kapi.meminfo()
    totalpages = (mem["MemTotal"] + mem["SwapTotal"]) * 1024 // PAGE
    return nbytes // PAGE * 1000 / totalpages * 2 / 3


class Probe:
    """A forked sharer of region r (it inherits the window) that links it on demand."""

    def __init__(self, r: harness.Region) -> None:
        self.go, self.ready = harness.Gate(), harness.Counter()

        def body() -> None:
            self.ready.post()
            self.go.wait()
            kapi.peek(r.start, 1)  # links the region: a sharer from now on
            self.ready.post()
            signal.pause()

        self.child = harness.Child(body)
        self.ready.wait_for(1)
        self.before = _oom_score(self.child.pid)

    def link(self) -> None:
        self.go.open()
        self.ready.wait_for(2)

    def gain(self) -> int:
        return _oom_score(self.child.pid) - self.before

    def close(self) -> None:
        self.child.kill()
        self.go.close()
        self.ready.close()


@pytest.fixture
def probe(regions: harness.Regions) -> Iterator[tuple[harness.Region, Probe]]:
    """A region with 128 MiB written by this process, and a probe that shares it."""
    r = regions.create()
    _touch(r.start, SHARE_TOUCH)
    p = Probe(r)
    try:
        yield r, p
    finally:
        p.close()


@pytest.mark.serial
@pytest.mark.timeout(300)
def test_oom_score_leaves_out_a_named_region(probe: tuple[harness.Region, Probe]) -> None:
    """While the region has a name, no kill can free it: it counts in no sharer."""
    _, p = probe
    p.link()
    assert abs(p.gain()) <= 1, f"oom_score {p.gain():+} for a named region"


@pytest.mark.serial
@pytest.mark.timeout(300)
def test_oom_score_counts_each_sharers_share_of_an_unlinked_region(
        probe: tuple[harness.Region, Probe]) -> None:
    """Once unlinked, a sharer's OOM badness (what /proc/PID/oom_score scales) holds
    resident/sharers: 1/2 of 128 MiB with two sharers, 1/4 with four."""
    r, p = probe
    os.unlink(r.path)
    p.link()
    halves = p.gain()
    more = [_waiting(lambda: _peek_quietly(r.start)) for _ in range(2)]
    try:
        quarters = p.gain()
    finally:
        _finish(*more)
    half, quarter = _expected_score_gain(SHARE_TOUCH // 2), _expected_score_gain(SHARE_TOUCH // 4)
    assert abs(halves - half) <= 1.5, f"oom_score {halves:+} as one of 2 sharers, {half:.1f}"
    assert abs(quarters - quarter) <= 1.5, \
        f"oom_score {quarters:+} as one of 4 sharers, {quarter:.1f}"


def _peek_quietly(addr: int) -> None:
    kapi.peek(addr, 1)


OOM_MAX = 48 * MiB
OOM_HOG = 8 * MiB
OOM_WRITE = 64 * MiB


def _page_byte(index: int) -> bytes:
    return bytes([index % 251 + 1])


@pytest.mark.serial
@pytest.mark.timeout(400)
def test_region_filling_creator_cgroup_kills_its_largest_sharer_first(
        regions: harness.Regions) -> None:
    """A mapper outside the creator's cgroup (memory.max 48 MiB) unlinks the region and
    writes its pages until the cgroup is full.  Its OOM killer picks by badness, which
    holds each sharer's share of an unlinked region: the creator (about 20 MiB of it) goes
    before a task there with 8 MiB of its own, then that task; with no task left there,
    the mapper's fault gets SIGBUS.  What it wrote stays readable to another sharer, and
    the cgroup's memory comes back when that sharer, the last, lets go."""
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    path = regions.path("oom")
    start = harness.take_window()
    written = ctypes.c_uint64.from_address(
        kapi.mmap(0, PAGE, harness.RW, kapi.MAP_SHARED | kapi.MAP_ANONYMOUS, -1))
    with harness.memory_cgroup("oom") as group:
        (group / "memory.max").write_text(str(OOM_MAX))

        def join() -> None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

        def create() -> None:
            harness.create_in_cgroup(group, path, start)
            kapi.poke(start, _page_byte(0))

        def hog() -> None:
            join()
            anon = kapi.mmap(0, OOM_HOG, harness.RW, kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS, -1)
            _touch(anon, OOM_HOG)

        def write() -> None:
            """In a fork of this process, which maps the window: a sharer from its
            first write."""
            os.unlink(path)  # as a database does once all have attached
            for i in range(OOM_WRITE // PAGE):
                kapi.poke(start + i * PAGE, _page_byte(i))
                written.value = i + 1

        creator, hogger = _waiting(create), _waiting(hog)
        r = regions.attach(path)  # reads what the writer wrote, once it is gone
        log = KernelLog()
        try:
            data, status = harness.Child(write).wait_status(300)
            killed = [int(m.group(1)) for line in log.take()
                      for m in [re.search(r"Killed process (\d+)", line)] if m]
        finally:
            log.close()
            for child, gate, ready in (creator, hogger):
                child.kill()
                gate.close()
                ready.close()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGBUS, \
            f"mapper ended with status {status:#x}: {pickle.loads(data) if data else ''}"
        assert killed[:2] == [creator[0].pid, hogger[0].pid], \
            f"OOM kills {killed}: creator {creator[0].pid}, hog {hogger[0].pid}"

        n = int(written.value)
        assert n * PAGE >= OOM_MAX - OOM_HOG - 8 * MiB, f"only {n} pages written"
        bad = [i for i in range(n) if r.peek(i * PAGE, 1) != _page_byte(i)]
        assert not bad, f"{len(bad)} of {n} written pages lost, first {bad[:4]}"
        regions.unmap(r)
        regions.close(r.fd)  # the region's last mapping and fd: it is freed
        assert harness.wait_until(
            lambda: int((group / "memory.current").read_text()) <= 2 * MiB, 30), \
            f"memory.current {(group / 'memory.current').read_text().strip()} after the region"
