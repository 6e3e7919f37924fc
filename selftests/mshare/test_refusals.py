"""Operations that would change a region's VMA or its shared page tables are refused
with EINVAL (mremap checks for a region right after finding its VMA) and change nothing:
same VMA, same data, and the populated pages' page table entries still present and
mapping the same page frames (read from /proc/self/pagemap, which touches no page)."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import harness
import kapi
import pytest

PAGE = kapi.PAGE
NPAGES = 4


@dataclass
class Populated:
    r: harness.Region
    pfns: list[int]

    def data(self) -> list[bytes]:
        return [self.r.peek(i * PAGE, 16) for i in range(NPAGES)]


@pytest.fixture
def pop(region: harness.Region) -> Populated:
    """A region whose first NPAGES pages hold data and have present PTEs."""
    for i in range(NPAGES):
        region.poke(i * PAGE, harness.pattern(i, 16))
    entries = kapi.pagemap(region.start, NPAGES)
    assert all(e & kapi.PM_PRESENT and e & kapi.PM_PFN_MASK for e in entries), \
        f"populated pages not present in pagemap: {[hex(e) for e in entries]}"
    return Populated(region, [e & kapi.PM_PFN_MASK for e in entries])


def assert_unchanged(p: Populated, perms: str = "rw-s") -> None:
    r = p.r
    vma = kapi.vma_at(r.start)
    assert vma is not None, "region mapping is gone"
    assert (vma.start, vma.end, vma.perms) == (r.start, r.start + r.size, perms), \
        "region VMA was split, moved or changed"
    # Before anything touches the pages again: a zapped entry would read as not present.
    entries = kapi.pagemap(r.start, NPAGES)
    gone = [i for i, e in enumerate(entries) if not e & kapi.PM_PRESENT]
    assert not gone, f"populated pages {gone} of {NPAGES} lost their page table entries: " \
        "the refused call zapped them"
    assert [e & kapi.PM_PFN_MASK for e in entries] == p.pfns, \
        "populated pages now map other page frames"
    assert p.data() == [harness.pattern(i, 16) for i in range(NPAGES)]
    if "w" in perms:
        r.poke(0, harness.pattern(0, 16))


def test_pagemap_check_sees_entries_zapped_outside_regions() -> None:
    """The method can fail: MADV_DONTNEED on ordinary shared memory clears the entries
    that assert_unchanged reads, while the data survives in the shared object."""
    n = NPAGES * PAGE
    addr = kapi.mmap(0, n, harness.RW, kapi.MAP_SHARED | kapi.MAP_ANONYMOUS, -1)
    try:
        for i in range(NPAGES):
            kapi.poke(addr + i * PAGE, harness.pattern(i, 16))
        assert all(e & kapi.PM_PRESENT for e in kapi.pagemap(addr, NPAGES))
        kapi.madvise(addr, n, kapi.MADV_DONTNEED)
        assert not any(e & kapi.PM_PRESENT for e in kapi.pagemap(addr, NPAGES))
        assert kapi.peek(addr, 16) == harness.pattern(0, 16)
    finally:
        kapi.munmap(addr, n)


def expect_errno(fn: Callable[..., object], *args: object,
                 allowed: tuple[int | None, ...] = (errno.EINVAL,)) -> None:
    got = harness.errno_of(fn, *args)
    assert got in allowed, f"expected {[_name(e) for e in allowed]}, got {_name(got)}"


def _name(e: int | None) -> str:
    return "success" if e is None else errno.errorcode.get(e, str(e))


# ---------------------------------------------------------------- mprotect

@pytest.mark.parametrize("prot", [kapi.PROT_READ, kapi.PROT_NONE], ids=["read", "none"])
def test_mprotect_whole_region_einval(pop: Populated, prot: int) -> None:
    expect_errno(kapi.mprotect, pop.r.start, pop.r.size, prot)
    assert_unchanged(pop)


def test_mprotect_part_of_region_einval(pop: Populated) -> None:
    expect_errno(kapi.mprotect, pop.r.start, PAGE, kapi.PROT_READ)
    assert_unchanged(pop)


def test_mprotect_add_exec_einval(pop: Populated) -> None:
    expect_errno(kapi.mprotect, pop.r.start, pop.r.size,
                 kapi.PROT_READ | kapi.PROT_WRITE | kapi.PROT_EXEC)
    assert_unchanged(pop)


def test_readonly_attach_cannot_be_made_writable(region: harness.Region) -> None:
    def body() -> tuple[int | None, int | None]:
        kapi.munmap(region.start, region.size)
        fd = os.open(region.path, os.O_RDONLY)
        kapi.mmap(region.start, region.size, kapi.PROT_READ,
                  kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
        err = harness.errno_of(kapi.mprotect, region.start, region.size, harness.RW)
        write_sig = harness.death_signal(kapi.poke, region.start, b"x")
        return err, write_sig

    err, write_sig = harness.in_child(body)
    assert err == errno.EACCES  # the core refuses first: the fd gives no VM_MAYWRITE
    assert write_sig == signal.SIGSEGV
    assert region.peek(0, 1) == b"\0"


# ---------------------------------------------------------------- munmap / MAP_FIXED

@pytest.mark.parametrize("where", ["head", "middle", "tail"])
def test_partial_munmap_einval(pop: Populated, where: str) -> None:
    off = {"head": 0, "middle": pop.r.size // 2, "tail": pop.r.size - PAGE}[where]
    expect_errno(kapi.munmap, pop.r.start + off, PAGE)
    assert_unchanged(pop)


def test_partial_munmap_of_populated_pages_einval(pop: Populated) -> None:
    expect_errno(kapi.munmap, pop.r.start, NPAGES * PAGE)
    assert_unchanged(pop)


# ---------------------------------------------------------------- mremap

def test_mremap_move_einval(pop: Populated) -> None:
    dest = harness.take_window()
    expect_errno(kapi.mremap, pop.r.start, pop.r.size, pop.r.size,
                 kapi.MREMAP_MAYMOVE | kapi.MREMAP_FIXED, dest)
    assert kapi.vma_at(dest) is None
    assert_unchanged(pop)


def test_mremap_grow_fails(pop: Populated) -> None:
    expect_errno(kapi.mremap, pop.r.start, pop.r.size, 2 * pop.r.size, 0)
    assert_unchanged(pop)


def test_mremap_grow_with_maymove_fails(pop: Populated) -> None:
    expect_errno(kapi.mremap, pop.r.start, pop.r.size, 2 * pop.r.size, kapi.MREMAP_MAYMOVE)
    assert_unchanged(pop)


def test_mremap_shrink_einval(pop: Populated) -> None:
    expect_errno(kapi.mremap, pop.r.start, pop.r.size, pop.r.size // 2, 0)
    assert_unchanged(pop)


def test_mremap_duplicate_with_zero_old_len_einval(pop: Populated) -> None:
    """old_len 0 on a shared mapping would create a second mapping of the same memory."""
    dest = harness.take_window()
    expect_errno(kapi.mremap, pop.r.start, 0, pop.r.size,
                 kapi.MREMAP_MAYMOVE | kapi.MREMAP_FIXED, dest)
    assert kapi.vma_at(dest) is None
    assert_unchanged(pop)


# ---------------------------------------------------------------- madvise

def _advice(*names: str) -> dict[str, int]:
    """Test id -> MADV_ value ("dontneed" -> kapi.MADV_DONTNEED)."""
    return {name: getattr(kapi, f"MADV_{name.upper()}") for name in names}


TABLE_CHANGING = _advice("dontneed", "dontneed_locked", "free", "remove", "pageout", "cold",
                         "collapse", "wipeonfork")


@pytest.mark.parametrize("advice", list(TABLE_CHANGING.values()), ids=list(TABLE_CHANGING))
def test_madvise_that_changes_page_tables_einval(pop: Populated, advice: int) -> None:
    expect_errno(kapi.madvise, pop.r.start, NPAGES * PAGE, advice)
    assert_unchanged(pop)


def test_madvise_dontneed_whole_region_einval(pop: Populated) -> None:
    expect_errno(kapi.madvise, pop.r.start, pop.r.size, kapi.MADV_DONTNEED)
    assert_unchanged(pop)


def test_madvise_dontneed_from_another_sharer_einval(pop: Populated) -> None:
    """A sharer's refused DONTNEED must not zap the tables everybody uses."""
    got = harness.in_child(lambda: harness.errno_of(
        kapi.madvise, pop.r.start, NPAGES * PAGE, kapi.MADV_DONTNEED))
    assert got == errno.EINVAL
    assert_unchanged(pop)


HINTS = _advice("normal", "random", "sequential", "willneed")


@pytest.mark.parametrize("advice", list(HINTS.values()), ids=list(HINTS))
def test_madvise_pure_hint_succeeds_and_changes_nothing(pop: Populated, advice: int) -> None:
    expect_errno(kapi.madvise, pop.r.start, pop.r.size, advice, allowed=(None,))
    assert_unchanged(pop)


def test_madvise_vma_flag_on_part_einval(pop: Populated) -> None:
    """DONTFORK on one page would split the VMA."""
    expect_errno(kapi.madvise, pop.r.start, PAGE, kapi.MADV_DONTFORK)
    assert_unchanged(pop)


@pytest.mark.parametrize("advice", [kapi.MADV_POPULATE_READ, kapi.MADV_POPULATE_WRITE],
                         ids=["populate_read", "populate_write"])
def test_madvise_populate_einval(pop: Populated, advice: int) -> None:
    off = 64 * PAGE  # not yet populated
    expect_errno(kapi.madvise, pop.r.start + off, 2 * PAGE, advice)
    assert not kapi.pagemap(pop.r.start + off)[0] & kapi.PM_PRESENT
    assert pop.r.peek(off, 16) == b"\0" * 16
    assert_unchanged(pop)


def test_mlock_of_part_succeeds_without_split_or_populate(pop: Populated) -> None:
    """A window is never locked (VM_SPECIAL) nor populated: mlock succeeds, changes nothing."""
    off = 64 * PAGE
    kapi.mlock(pop.r.start, 128 * PAGE)
    kapi.munlock(pop.r.start, 128 * PAGE)
    assert not kapi.pagemap(pop.r.start + off)[0] & kapi.PM_PRESENT
    assert_unchanged(pop)


# ---------------------------------------------------------------- userfaultfd

@pytest.mark.parametrize("mode", [kapi.UFFDIO_REGISTER_MODE_MISSING, kapi.UFFDIO_REGISTER_MODE_WP],
                         ids=["missing", "wp"])
def test_userfaultfd_register_einval(pop: Populated, mode: int) -> None:
    fd = kapi.userfaultfd()
    try:
        kapi.uffdio_api(fd)
        expect_errno(kapi.uffdio_register, fd, pop.r.start, pop.r.size, mode)
    finally:
        os.close(fd)
    assert_unchanged(pop)


UFFD_MODES = {
    "missing": (kapi.UFFDIO_REGISTER_MODE_MISSING, 0),
    "minor": (kapi.UFFDIO_REGISTER_MODE_MINOR, 0),
    "wp": (kapi.UFFDIO_REGISTER_MODE_WP, 0),
    "wp_async": (kapi.UFFDIO_REGISTER_MODE_WP, kapi.UFFD_FEATURE_WP_ASYNC),
}


def _user_mode_uffd_register_errno(start: int, size: int, mode: int, features: int) -> int | None:
    """UFFDIO_REGISTER of [start, start+size) through a UFFD_USER_MODE_ONLY userfaultfd
    whose UFFDIO_API asked for features: the errno, or None if it was accepted."""
    fd = kapi.userfaultfd(os.O_CLOEXEC | os.O_NONBLOCK | kapi.UFFD_USER_MODE_ONLY)
    try:
        kapi.uffdio_api(fd, features)
        return harness.errno_of(kapi.uffdio_register, fd, start, size, mode)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("mode", "features"), list(UFFD_MODES.values()), ids=list(UFFD_MODES))
def test_user_mode_userfaultfd_register_of_linked_window_einval(
        pop: Populated, mode: int, features: int) -> None:
    """Refused for being a region window (WP-async would accept any other VMA type)."""
    assert _user_mode_uffd_register_errno(pop.r.start, pop.r.size, mode,
                                          features) == errno.EINVAL
    assert_unchanged(pop)


@pytest.mark.parametrize(("mode", "features"), list(UFFD_MODES.values()), ids=list(UFFD_MODES))
def test_unprivileged_userfaultfd_register_of_linked_window_einval(
        pop: Populated, mode: int, features: int) -> None:
    os.chmod(pop.r.path, 0o666)
    r = pop.r

    def body() -> int | None:
        kapi.munmap(r.start, r.size)
        fd = os.open(r.path, os.O_RDWR)
        kapi.mmap(r.start, r.size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
        assert kapi.peek(r.start, 16) == harness.pattern(0, 16)  # links the window
        return _user_mode_uffd_register_errno(r.start, r.size, mode, features)

    assert harness.in_child(body, uid=harness.NOBODY) == errno.EINVAL
    assert_unchanged(pop)


# ---------------------------------------------------------------- refusals that detach

# A MAP_FIXED mapping of the region file over its own live window that msharefs refuses
# (here: a non-zero offset) fails EINVAL after the core has unmapped the old window
# (6.12's __mmap_region()), as for any file: the window is gone, the region is not.
# remap_file_pages() is such a mapping internally.
REFUSED_REMAPS = ["map_fixed_pgoff1", "remap_file_pages_pgoff1"]


def _refused_remap(r: harness.Region, how: str) -> int | None:
    if how == "map_fixed_pgoff1":
        return harness.errno_of(kapi.mmap, r.start, r.size, harness.RW,
                                kapi.MAP_SHARED | kapi.MAP_FIXED, r.fd, PAGE)
    return harness.errno_of(kapi.remap_file_pages, r.start, r.size, 0, 1, 0)


@pytest.mark.parametrize("how", REFUSED_REMAPS)
def test_refused_remap_over_window_einval(pop: Populated, how: str) -> None:
    assert _refused_remap(pop.r, how) == errno.EINVAL


@pytest.mark.parametrize("how", REFUSED_REMAPS)
def test_refused_remap_over_window_detaches_it(pop: Populated, how: str) -> None:
    _refused_remap(pop.r, how)
    assert harness.errno_of(kapi.mincore, pop.r.start, PAGE) == errno.ENOMEM
    assert [v for v in kapi.maps() if v.start < pop.r.start + pop.r.size and
            v.end > pop.r.start] == []


@pytest.mark.parametrize("how", REFUSED_REMAPS)
def test_window_detached_by_refused_remap_reattaches_with_data(pop: Populated,
                                                               how: str) -> None:
    _refused_remap(pop.r, how)
    kapi.mmap(pop.r.start, pop.r.size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE,
              pop.r.fd)
    assert pop.data() == [harness.pattern(i, 16) for i in range(NPAGES)]


def test_remap_file_pages_over_read_only_window_einval_keeps_it(pop: Populated) -> None:
    """A read-only window has no VM_SHARED, which remap_file_pages() checks before it
    unmaps anything: EINVAL, and the window stays."""
    r = pop.r
    kapi.munmap(r.start, r.size)
    fd = os.open(r.path, os.O_RDONLY)
    try:
        kapi.mmap(r.start, r.size, kapi.PROT_READ, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE,
                  fd)
        assert harness.errno_of(kapi.remap_file_pages, r.start, r.size, 0, 1, 0) == \
            errno.EINVAL
        vma = kapi.vma_at(r.start)
        assert vma is not None and (vma.start, vma.end) == (r.start, r.start + r.size)
        assert pop.data() == [harness.pattern(i, 16) for i in range(NPAGES)]
    finally:
        os.close(fd)
