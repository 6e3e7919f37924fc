"""Reclaim aimed at a region's cgroup sees which region pages are in use (review of v2,
F5), and region pages reclaimed to swap come back intact.

A region's pages are mapped by its host mm only, and the host has no owner task, so
mm_match_cgroup() never matches it: on v9 memcg reclaim (memory.max, memory.reclaim)
ignored every reference to a region page and evicted pages that mappers were reading as
if nobody used them.  The guest has no disk: swap here is a loop device over a file on
a tmpfs of its own (the loop worker runs in the root cgroup, so what it writes to that
file is charged there, not to the group under test).  The hot pages are faulted first,
so on a least-recently-faulted order they are the first to go; a reader keeps reading
them while memory.reclaim runs (its TLB flushed before each pass, see _Reader), and
whatever of them was evicted is refaulted at once: the group's workingset_refault_anon
counts them.  Both LRUs are checked: the classic lists and the multi-gen LRU.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import harness
import kapi
import pytest

from libmshare.stats import read_stats

PAGE = kapi.PAGE
MiB = 1 << 20
HOT = 4 * MiB
COLD = 60 * MiB
RECLAIM = 16 * MiB
SWAP = 128 * MiB

pytestmark = pytest.mark.serial


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/sbin:/usr/sbin")
    assert path, f"{name} (util-linux) is needed to put swap on a loop device"
    return path


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          timeout=harness.scaled(60)).stdout.strip()


@pytest.fixture
def swap() -> Iterator[None]:
    """SWAP bytes of swap on a loop device over a file on a new tmpfs, removed after."""
    mnt = harness.scratch() / "swapfs"
    mnt.mkdir(exist_ok=True)
    kapi.mount("tmpfs", str(mnt), "tmpfs", 0, f"size={SWAP + MiB}")
    with contextlib.ExitStack() as undo:
        undo.callback(kapi.umount2, str(mnt), 0)
        backing = mnt / "swap"
        with backing.open("wb") as f:
            f.truncate(SWAP)
        loop = _run(_tool("losetup"), "--find", "--show", str(backing))
        undo.callback(_run, _tool("losetup"), "--detach", loop)
        _run(_tool("mkswap"), loop)
        _run(_tool("swapon"), loop)
        undo.callback(_run, _tool("swapoff"), loop)
        yield


def _touch(view: memoryview) -> None:
    """Write one byte to each page: every page faulted, none of them zero-filled (a zero
    page would be swapped out as a counter, with no I/O)."""
    for off in range(0, len(view), PAGE):
        view[off] = 1


class _Reader:
    """Reads one byte of every page of view, pass after pass, in a thread while
    running() is entered (the test's blocking writes release the GIL to it).

    x86 clears a PTE's accessed bit without a TLB flush, and a CPU sets it again only
    when it walks the tables: a reader whose translations stay cached would look idle
    to any kernel (with PCID a context switch need not flush either).  So each pass
    first zaps 64 pages of scratch memory of its own, which flushes its CPU's whole TLB
    (more pages than tlb_single_page_flush_ceiling, 33 unless changed in debugfs)."""

    FLUSH = 64 * PAGE

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.passes = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._scratch = kapi.mmap(0, self.FLUSH, harness.RW,
                                  kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS, -1)

    def one_pass(self) -> None:
        kapi.view(self._scratch, self.FLUSH)[::PAGE] = b"\1" * (self.FLUSH // PAGE)
        kapi.madvise(self._scratch, self.FLUSH, kapi.MADV_DONTNEED)
        bytes(self.view[::PAGE])
        self.passes += 1

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.one_pass()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        t = threading.Thread(target=self._loop, daemon=True)
        t.start()
        try:
            yield
        finally:
            self._stop.set()
            t.join(harness.scaled(30))
            assert not t.is_alive(), "the reader thread did not stop"

    def close(self) -> None:
        kapi.munmap(self._scratch, self.FLUSH)


@pytest.fixture(params=["classic", "mglru"])
def lru(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each LRU in turn: the classic active/inactive lists, then the multi-gen LRU
    (built in, off by default; /sys/kernel/mm/lru_gen/enabled)."""
    knob = Path("/sys/kernel/mm/lru_gen/enabled")
    assert knob.exists(), "kernel config: CONFIG_LRU_GEN is needed (kernel-build/config/base)"
    before = knob.read_text().strip()
    knob.write_text("y" if request.param == "mglru" else "n")
    try:
        yield str(request.param)
    finally:
        knob.write_text("n" if int(before, 16) == 0 else "y")


def test_memory_reclaim_keeps_region_pages_a_mapper_reads(
        regions: harness.Regions, memcg: Path, swap: None, lru: str) -> None:
    with harness.region_in_cgroup(memcg, regions, "reclaim") as (path, _):
        r = regions.attach(path)
        hot, cold = r.view(0, HOT), r.view(HOT, COLD)
        _touch(hot)  # first: the oldest pages on the LRU
        _touch(cold)
        refaults = harness.memory_stat(memcg, "workingset_refault_anon")
        stolen = harness.memory_stat(memcg, "pgsteal")
        reader = _Reader(hot)
        try:
            with reader.running():
                (memcg / "memory.reclaim").write_text(str(RECLAIM))
            reader.one_pass()  # what was evicted after the thread's last pass
        finally:
            reader.close()
        refaulted = harness.memory_stat(memcg, "workingset_refault_anon") - refaults
        reclaimed = harness.memory_stat(memcg, "pgsteal") - stolen
        swapped = read_stats(r.fd, path).swapped
    print(f"# {lru} LRU, memory.reclaim {RECLAIM // MiB} MiB: {reclaimed} pages reclaimed, "
          f"region {swapped // PAGE} pages in swap, {refaulted} refaults while a mapper "
          f"read {HOT // PAGE} pages ({reader.passes} passes)")
    assert reader.error is None, f"the reader failed: {reader.error!r}"
    assert reader.passes >= 3, f"the reader made {reader.passes} passes: nothing to judge"
    assert reclaimed >= RECLAIM // PAGE and swapped >= RECLAIM // 2, \
        "memory.reclaim took too little of the region to judge"
    assert refaulted == 0, \
        f"{refaulted} refaults: pages a mapper kept reading were evicted"


def test_region_pages_reclaimed_to_swap_read_back_intact(
        regions: harness.Regions, memcg: Path, swap: None) -> None:
    size = 16 * MiB
    with harness.region_in_cgroup(memcg, regions, "swapin") as (path, _):
        r = regions.attach(path)
        for off in range(0, size, PAGE):
            r.poke(off, harness.pattern(off // PAGE, 8))
        (memcg / "memory.reclaim").write_text(str(size))
        swapped = read_stats(r.fd, path).swapped // PAGE
        bad = [off // PAGE for off in range(0, size, PAGE)
               if r.peek(off, 8) != harness.pattern(off // PAGE, 8)]
    assert swapped >= size // PAGE // 2, f"only {swapped} of {size // PAGE} pages went to swap"
    assert not bad, f"{len(bad)} pages read back wrong from swap, first {bad[:5]}"
