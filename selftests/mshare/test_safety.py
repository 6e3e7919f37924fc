"""Memory safety and isolation of region windows: what the first independent review of
the series broke, one behaviour per test, each with the one outcome our kernel gives.

Stale translations after munmap, the OOM reaper / process_mrelease() zapping shared
tables, secondary MMUs, memory cgroup charging, mlock/populate of a window, and the
protections a view may have.  The series' C kselftest has a twin of each."""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import kapi
import pytest
from kernellog import KernelLog

from mshare_lab import proc

PAGE = kapi.PAGE
NPAGES = 64
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE
ANON = kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS


def fill(start: int, seed: int, n: int = NPAGES) -> None:
    for i in range(n):
        ctypes.memset(start + i * PAGE, (seed + i) & 0xFF, PAGE)


def first_bad_page(start: int, seed: int, n: int = NPAGES) -> int | None:
    """The first of n pages at start not holding fill()'s bytes (sampled), or None."""
    for i in range(n):
        want = bytes([(seed + i) & 0xFF])
        if kapi.peek(start + i * PAGE, 1) != want or kapi.peek(start + i * PAGE + PAGE - 1, 1) != want:
            return i
    return None


def present(start: int, n: int = NPAGES) -> int:
    """How many of n pages have a present page table entry here (touches no page)."""
    return sum(1 for e in kapi.pagemap(start, n) if e & kapi.PM_PRESENT)


def reattach(r: harness.Region) -> None:
    kapi.mmap(r.start, r.size, harness.RW, NOREPLACE, r.fd)


@pytest.fixture(params=["4k", "huge"])
def any_region(request: pytest.FixtureRequest, regions: harness.Regions) -> harness.Region:
    """A region of 4 KiB pages, then one of 2 MiB pages: what holds for PTEs must hold
    for the host's PMD leaves."""
    return regions.create(huge=request.param == "huge")


@pytest.fixture
def cpu0() -> Iterator[None]:
    """Run on CPU 0 only: the translations that could go stale are this CPU's."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


# ---------------------------------------------------------------- stale TLB (item 1)

@pytest.mark.timeout(600)
def test_munmap_then_anonymous_memory_reads_zero(any_region: harness.Region,
                                                 cpu0: None) -> None:
    region = any_region
    for it in range(200):
        fill(region.start, it)
        assert first_bad_page(region.start, it) is None
        kapi.munmap(region.start, region.size)
        anon = kapi.mmap(region.start, NPAGES * PAGE, harness.RW,
                         ANON | kapi.MAP_FIXED_NOREPLACE, -1)
        try:
            stale = [i for i in range(NPAGES) if kapi.peek(anon + i * PAGE, 1) != b"\0"]
            assert not stale, f"iteration {it}: new anonymous pages {stale} hold region data"
        finally:
            kapi.munmap(anon, NPAGES * PAGE)
        reattach(region)


@pytest.mark.timeout(600)
def test_map_fixed_over_window_neither_reads_nor_writes_region(any_region: harness.Region,
                                                               cpu0: None) -> None:
    region = any_region
    for it in range(100):
        fill(region.start, 7)
        anon = kapi.mmap(region.start, region.size, harness.RW,
                         ANON | kapi.MAP_FIXED | kapi.MAP_NORESERVE, -1)
        stale = [i for i in range(NPAGES) if kapi.peek(anon + i * PAGE, 1) != b"\0"]
        assert not stale, f"iteration {it}: pages {stale} of the new mapping read region data"
        for i in range(NPAGES):
            kapi.poke(anon + i * PAGE, b"\x63")
        kapi.munmap(anon, region.size)
        reattach(region)
        assert first_bad_page(region.start, 7) is None, \
            f"iteration {it}: a write meant for the new mapping reached the region"


# ---------------------------------------------------------------- reaping (item 2)

def _readonly_sharer(r: harness.Region, ready: harness.Counter) -> None:
    kapi.munmap(r.start, r.size)
    fd = os.open(r.path, os.O_RDONLY)
    kapi.mmap(r.start, r.size, kapi.PROT_READ, NOREPLACE, fd)
    for i in range(NPAGES):
        kapi.peek(r.start + i * PAGE, 1)
    ready.post()
    while True:
        signal.pause()


@pytest.mark.timeout(600)
def test_mrelease_of_readonly_sharer_keeps_shared_ptes(any_region: harness.Region) -> None:
    region = any_region
    fill(region.start, 3)
    kmsg = KernelLog()
    try:
        for it in range(40):
            ready = harness.Counter()
            child = harness.Child(_readonly_sharer, region, ready)
            ready.wait_for(1)
            pidfd = os.pidfd_open(child.pid)
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                try:  # races with the child's own exit: both must leave the tables alone
                    kapi.process_mrelease(pidfd)
                except OSError as e:
                    assert e.errno in (errno.ESRCH, errno.EINVAL), e
            finally:
                os.close(pidfd)
            with pytest.raises(harness.ChildKilled):
                child.result()
            ready.close()
            assert present(region.start) == NPAGES, \
                f"iteration {it}: reaping a read-only sharer cleared the shared PTEs"
        assert first_bad_page(region.start, 3) is None
        bad = [line for line in kmsg.take() if "rss-counter" in line]
        assert not bad, bad
    finally:
        kmsg.close()


# ---------------------------------------------------------------- secondary MMUs (item 3)

HMM_DEVICE = "/dev/hmm_dmirror0"


@pytest.mark.needs_config("CONFIG_TEST_HMM")
def test_hmm_mirror_open_ebusy_while_region_mapped(region: harness.Region) -> None:
    assert harness.errno_of(os.open, HMM_DEVICE, os.O_RDWR) == errno.EBUSY


@pytest.mark.needs_config("CONFIG_TEST_HMM")
def test_hmm_mirror_opens_again_once_region_unmapped(region: harness.Region) -> None:
    def body() -> None:
        kapi.munmap(region.start, region.size)
        os.close(os.open(HMM_DEVICE, os.O_RDWR))

    harness.in_child(body)


@pytest.mark.needs_config("CONFIG_TEST_HMM")
def test_attach_ebusy_with_hmm_mirror(region: harness.Region) -> None:
    def body() -> int | None:
        kapi.munmap(region.start, region.size)
        mirror = os.open(HMM_DEVICE, os.O_RDWR)
        fd = os.open(region.path, os.O_RDWR)
        try:
            return harness.errno_of(kapi.mmap, region.start, region.size, harness.RW,
                                    NOREPLACE, fd)
        finally:
            os.close(mirror)

    assert harness.in_child(body) == errno.EBUSY


# ---------------------------------------------------------------- memcg (item 4)

CG_LIMIT = 32 << 20
CG_TOUCH = 128 << 20


@pytest.fixture
def small_memcg() -> Iterator[Path]:
    """A cgroup v2 group with memory.max = 32 MiB (cgroup2 mounted if needed)."""
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    with harness.memory_cgroup("mshare") as group:
        (group / "memory.max").write_text(str(CG_LIMIT))
        yield group


def _touch(start: int, n: int) -> None:
    for off in range(0, n, PAGE):
        kapi.poke(start + off, b"\1")


@pytest.mark.serial
@pytest.mark.timeout(300)
def test_creator_in_32mib_memcg_is_oom_killed_touching_128mib(
        regions: harness.Regions, small_memcg: Path) -> None:
    path, start = regions.path("cg"), harness.take_window()

    def body() -> None:
        harness.create_in_cgroup(small_memcg, path, start)
        os.unlink(path)  # freed with this process
        _touch(start, CG_TOUCH)

    assert harness.death_signal(body, timeout=240) == signal.SIGKILL
    assert harness.cgroup_event(small_memcg, "oom_kill") >= 1
    assert int((small_memcg / "memory.peak").read_text()) <= CG_LIMIT


@pytest.mark.serial
@pytest.mark.timeout(300)
def test_sharer_outside_memcg_gets_sigbus_past_creator_limit(
        regions: harness.Regions, small_memcg: Path) -> None:
    with harness.region_in_cgroup(small_memcg, regions, "cg2", first=b"\1") as (path, start):

        def sharer() -> None:
            fd = os.open(path, os.O_RDWR)
            kapi.mmap(start, harness.alignment(), harness.RW, NOREPLACE, fd)
            _touch(start, CG_TOUCH)

        assert harness.death_signal(sharer, timeout=240) == signal.SIGBUS
        assert int((small_memcg / "memory.peak").read_text()) <= CG_LIMIT


# ---------------------------------------------------------------- mlock/populate (item 5)

SHMEM_BOUND_KB = 64 << 10  # a child that grows Shmem past this is killed


def _bounded(fn: Callable[[], None], timeout: float = 120.0) -> tuple[int, int]:
    """Run fn in a child, killing it once Shmem grows by SHMEM_BOUND_KB; (status, growth kB)."""
    base = kapi.meminfo()["Shmem"]
    child = harness.Child(fn)
    grew = 0
    deadline = time.monotonic() + harness.scaled(timeout)
    while True:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        grew = max(grew, kapi.meminfo()["Shmem"] - base)
        if pid:
            return status, grew
        if grew > SHMEM_BOUND_KB or time.monotonic() > deadline:
            child.kill()
            return -1, grew
        time.sleep(0.02)


def _attach_readonly(r: harness.Region, flags: int = 0) -> None:
    kapi.munmap(r.start, r.size)
    fd = os.open(r.path, os.O_RDONLY)
    kapi.mmap(r.start, r.size, kapi.PROT_READ, NOREPLACE | flags, fd)


def _assert_attached_without_growth(status: int, grew: int) -> None:
    assert status != -1, f"child killed after Shmem grew by {grew} kB: the window was populated"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert grew < 4096, f"Shmem grew by {grew} kB"


@pytest.mark.serial
def test_attach_under_mlockall_future_populates_nothing(region: harness.Region) -> None:
    def body() -> None:
        kapi.mlockall(kapi.MCL_CURRENT | kapi.MCL_FUTURE)
        _attach_readonly(region)

    _assert_attached_without_growth(*_bounded(body))


@pytest.mark.serial
def test_unprivileged_attach_under_mlockall_future_succeeds(region: harness.Region) -> None:
    os.chmod(region.path, 0o644)

    def body() -> None:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
        harness.drop_privileges()
        kapi.mlockall(kapi.MCL_FUTURE)  # MCL_CURRENT would lock past the rlimit itself
        _attach_readonly(region)

    _assert_attached_without_growth(*_bounded(body))


@pytest.mark.serial
@pytest.mark.parametrize("flag", [kapi.MAP_POPULATE, kapi.MAP_LOCKED], ids=["populate", "locked"])
def test_attach_with_map_flag_populates_nothing(region: harness.Region, flag: int) -> None:
    _assert_attached_without_growth(*_bounded(lambda: _attach_readonly(region, flag)))


@pytest.mark.serial
def test_mlock_of_window_succeeds_and_populates_nothing(region: harness.Region) -> None:
    def body() -> None:
        kapi.mlock(region.start, region.size)
        assert proc.status_kib("VmLck") == 0, proc.status()

    _assert_attached_without_growth(*_bounded(body))


# ---------------------------------------------------------------- protections (item 6)

@pytest.mark.parametrize("prot", [kapi.PROT_NONE, kapi.PROT_READ | kapi.PROT_EXEC,
                                  harness.RW | kapi.PROT_EXEC, kapi.PROT_WRITE],
                         ids=["none", "read_exec", "rwx", "write_only"])
def test_attach_with_prot_einval(region: harness.Region, prot: int) -> None:
    kapi.munmap(region.start, region.size)
    fd = os.open(region.path, os.O_RDWR)
    try:
        assert harness.errno_of(kapi.mmap, region.start, region.size, prot, NOREPLACE,
                                fd) == errno.EINVAL
    finally:
        os.close(fd)
    reattach(region)


def _forced_access(r: harness.Region, write: bool) -> int | bytes:
    _attach_readonly(r)
    mem = os.open("/proc/self/mem", os.O_RDWR)
    try:
        if write:
            return harness.errno_of(os.pwrite, mem, b"x", r.start) or 0
        return os.pread(mem, 5, r.start)
    finally:
        os.close(mem)


def test_forced_write_into_readonly_view_eio(region: harness.Region) -> None:
    region.poke(0, b"keep!")
    assert harness.in_child(_forced_access, region, True) == errno.EIO
    assert region.peek(0, 5) == b"keep!"


def test_forced_read_of_readonly_view_reads_region(region: harness.Region) -> None:
    region.poke(0, b"seen!")
    assert harness.in_child(_forced_access, region, False) == b"seen!"


# ---------------------------------------------------------------- the smaller points (item 7)

@pytest.mark.needs_config("CONFIG_NUMA")
@pytest.mark.parametrize("flags", [0, kapi.MPOL_MF_MOVE], ids=["plain", "move"])
def test_mbind_of_window_einval(region: harness.Region, flags: int) -> None:
    region.poke(0, b"x")
    assert harness.errno_of(kapi.mbind, region.start, region.size, kapi.MPOL_BIND, 1,
                            flags) == errno.EINVAL


@pytest.mark.needs_config("CONFIG_NUMA")
def test_set_mempolicy_home_node_of_window_einval(region: harness.Region) -> None:
    assert harness.errno_of(kapi.set_mempolicy_home_node, region.start, region.size,
                            0) == errno.EINVAL


@pytest.mark.needs_config("CONFIG_NUMA")
def test_move_pages_of_region_page_status_efault(region: harness.Region) -> None:
    """One sharer must not move every sharer's page (the host maps it once)."""
    region.poke(0, b"x")
    assert kapi.move_pages_status(region.start, 0) == -errno.EFAULT


@pytest.mark.serial
def test_unprivileged_map_locked_attach_needs_no_memlock_rlimit(
        region: harness.Region) -> None:
    os.chmod(region.path, 0o644)

    def body() -> None:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        harness.drop_privileges()
        _attach_readonly(region, kapi.MAP_LOCKED)

    _assert_attached_without_growth(*_bounded(body))


def test_readonly_opener_cannot_establish_eacces(regions: harness.Regions, align: int) -> None:
    path, _ = regions.open_new()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert harness.errno_of(kapi.mmap, harness.take_window(), align, kapi.PROT_READ,
                                NOREPLACE, fd) == errno.EACCES
        assert kapi.read_mshare_info(fd) is None
    finally:
        os.close(fd)


def test_start_zero_einval(regions: harness.Regions, align: int) -> None:
    """msharefs refuses start 0 (EINVAL); a non-PIE interpreter (a stock Debian python3)
    maps its text below 512 GiB, and then the core's MAP_FIXED_NOREPLACE check answers
    first (EEXIST).  The C kselftest (a PIE) always sees the EINVAL."""
    _, fd = regions.open_new()
    want = errno.EINVAL if harness.window_is_free(0, align) else errno.EEXIST
    assert harness.errno_of(kapi.mmap, 0, align, harness.RW, NOREPLACE, fd) == want
    assert kapi.read_mshare_info(fd) is None


def test_refused_first_mmap_leaves_region_unestablished(regions: harness.Regions,
                                                        align: int) -> None:
    _, fd = regions.open_new()
    refused = harness.take_window()
    assert harness.errno_of(kapi.mmap, refused, align, kapi.PROT_READ | kapi.PROT_EXEC,
                            NOREPLACE, fd) == errno.EINVAL
    assert kapi.read_mshare_info(fd) is None
    start = harness.take_window()
    regions.map(fd, start, align)
    assert harness.read_info(fd) == (start, align)
