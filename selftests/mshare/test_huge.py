"""Huge regions: MSHARE_F_HUGE before the first mmap backs a region with 2 MiB pages,
mapped by PMD leaves in the region's own tables and reached by every mapper through its
top-level link.  The series' C kselftest has a twin of each case (huge.* and the
set/get flags cases)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import harness
import kapi
import pytest

PAGE = kapi.PAGE
MiB = 1 << 20
HUGE = 2 * MiB
THP_SHMEM = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
SPLIT_ALL = Path("/sys/kernel/debug/split_huge_pages")
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE
PR_SET_THP_DISABLE = 41  # <linux/prctl.h>


def fill(start: int, n: int, seed: int) -> None:
    """One byte a 4 KiB page over n bytes."""
    for off in range(0, n, PAGE):
        ctypes.memset(start + off, (seed + off // PAGE) & 0xFF, 1)


def intact(start: int, n: int, seed: int) -> bool:
    return all(kapi.peek(start + off, 1)[0] == (seed + off // PAGE) & 0xFF
               for off in range(0, n, PAGE))


@pytest.fixture
def huge_region(regions: harness.Regions) -> harness.Region:
    return regions.create(huge=True)


@pytest.fixture
def debugfs() -> None:
    if not SPLIT_ALL.exists():
        kapi.mount("debugfs", "/sys/kernel/debug", "debugfs", 0, None)


# ---------------------------------------------------------------- the flag

def test_set_flags_after_first_mmap_ebusy(region: harness.Region) -> None:
    assert harness.errno_of(kapi.mshare_set_flags, region.fd, kapi.MSHARE_F_HUGE) == errno.EBUSY
    assert kapi.mshare_get_flags(region.fd) == 0


def test_set_unknown_flag_einval(regions: harness.Regions) -> None:
    _, fd = regions.open_new()
    assert harness.errno_of(kapi.mshare_set_flags, fd, kapi.MSHARE_F_HUGE << 1) == errno.EINVAL
    assert kapi.mshare_get_flags(fd) == 0


def test_set_flags_on_readonly_fd_ebadf(regions: harness.Regions) -> None:
    path, _ = regions.open_new()
    ro = os.open(path, os.O_RDONLY)
    regions.fds.append(ro)
    assert harness.errno_of(kapi.mshare_set_flags, ro, kapi.MSHARE_F_HUGE) == errno.EBADF
    assert kapi.mshare_get_flags(ro) == 0


def test_get_flags_reads_huge_back_on_any_fd(huge_region: harness.Region) -> None:
    ro = os.open(huge_region.path, os.O_RDONLY)
    try:
        assert kapi.mshare_get_flags(ro) == kapi.MSHARE_F_HUGE
    finally:
        os.close(ro)


# ---------------------------------------------------------------- leaves in the host

def test_touch_maps_pmd_leaves_and_no_pte_table(huge_region: harness.Region) -> None:
    fill(huge_region.start, 4 * HUGE, 1)
    st = kapi.mshare_stats(huge_region.fd)
    assert (st.resident, st.pmd_mapped) == (4 * HUGE, 4 * HUGE)
    assert st.page_tables == 2 * PAGE, "a PUD and a PMD table, no PTE table"
    entry = kapi.smaps_entry(huge_region.start)
    assert kapi.smaps_kb(entry, "ShmemPmdMapped") == 4 * HUGE // 1024


def test_huge_region_is_charged_to_the_creators_cgroup(regions: harness.Regions) -> None:
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    with harness.memory_cgroup("huge") as group, \
            harness.region_in_cgroup(group, regions, "hcg", huge=True) as (path, start):

        def writer() -> int:
            fd = os.open(path, os.O_RDWR)
            kapi.mmap(start, harness.alignment(), harness.RW, NOREPLACE, fd)
            fill(start, 16 * HUGE, 2)
            return int(kapi.mshare_stats(fd).pmd_mapped)

        before = harness.memory_stat(group, "shmem_thp")
        assert harness.Child(writer).result() == 16 * HUGE
        after = harness.memory_stat(group, "shmem_thp")
    assert after - before == 16 * HUGE


def test_readonly_attach_cannot_write_through_pmd_leaf(huge_region: harness.Region) -> None:
    fill(huge_region.start, HUGE, 3)
    assert kapi.mshare_stats(huge_region.fd).pmd_mapped == HUGE
    r = huge_region

    def readonly_writer() -> None:
        kapi.munmap(r.start, r.size)
        fd = os.open(r.path, os.O_RDONLY)
        kapi.mmap(r.start, r.size, kapi.PROT_READ, NOREPLACE, fd)
        assert kapi.peek(r.start + PAGE, 1) == b"\x04"
        assert harness.errno_of(kapi.process_vm_writev, os.getpid(), r.start, b"x") \
            == errno.EFAULT
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(r.start)
            with pytest.raises(OSError) as e:
                mem.write(b"x")
            assert e.value.errno == errno.EIO
        ctypes.memset(r.start, 0x78, 1)  # must not survive

    assert harness.death_signal(readonly_writer) == signal.SIGSEGV
    assert intact(r.start, HUGE, 3)


@pytest.mark.serial
def test_split_of_all_huge_pages_keeps_region_data(huge_region: harness.Region,
                                                   debugfs: None) -> None:
    fill(huge_region.start, 4 * HUGE, 4)
    assert kapi.mshare_stats(huge_region.fd).pmd_mapped == 4 * HUGE
    SPLIT_ALL.write_text("1")
    st = kapi.mshare_stats(huge_region.fd)
    assert (st.pmd_mapped, st.resident) == (0, 4 * HUGE)
    assert intact(huge_region.start, 4 * HUGE, 4)


@pytest.fixture
def thp_denied() -> Iterator[None]:
    old = THP_SHMEM.read_text().split("[")[1].split("]")[0]
    THP_SHMEM.write_text("deny")
    try:
        yield
    finally:
        THP_SHMEM.write_text(old)


@pytest.mark.serial
def test_huge_region_falls_back_to_4k_pages_when_thp_denied(
        regions: harness.Regions, thp_denied: None) -> None:
    r = regions.create(huge=True)
    fill(r.start, HUGE, 5)
    st = kapi.mshare_stats(r.fd)
    assert (st.resident, st.pmd_mapped) == (HUGE, 0)
    assert intact(r.start, HUGE, 5)


def test_creators_thp_disable_does_not_apply_to_its_huge_region(
        regions: harness.Regions) -> None:
    path, start = regions.path("nothp"), harness.take_window()

    def creator() -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        kapi.mshare_set_flags(fd, kapi.MSHARE_F_HUGE)
        kapi.mmap(start, harness.alignment(), harness.RW, NOREPLACE, fd)
        fill(start, 4 * HUGE, 6)
        return int(kapi.mshare_stats(fd).pmd_mapped)

    assert harness.Child(creator).result() == 4 * HUGE
