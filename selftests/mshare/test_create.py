"""Creating a region: the file, the first mmap that fixes start and size, and its refusals."""

from __future__ import annotations

import errno
import os
import stat

import harness
import kapi
import pytest
from harness import RW

NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


def _mmap_errno(fd: int, start: int, size: int, prot: int = RW, flags: int = NOREPLACE,
                offset: int = 0) -> int | None:
    try:
        addr = kapi.mmap(start, size, prot, flags, fd, offset)
    except OSError as e:
        return e.errno
    kapi.munmap(addr, size)
    return None


def _assert_not_established(fd: int) -> None:
    assert os.pread(fd, 16, 0) == b"", "a refused mmap established the region"


def _assert_still_creatable(regions: harness.Regions, fd: int, start: int, size: int) -> None:
    regions.map(fd, start, size)
    assert harness.read_info(fd) == (start, size)


def test_create_excl_on_existing_name_eexist(regions: harness.Regions) -> None:
    path, _ = regions.open_new()
    with pytest.raises(FileExistsError):
        os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def test_open_missing_region_without_creat_enoent(regions: harness.Regions) -> None:
    with pytest.raises(FileNotFoundError):
        os.open(regions.path(), os.O_RDWR)


def test_created_file_has_requested_mode_and_creator_owner(regions: harness.Regions) -> None:
    old = os.umask(0)
    try:
        path, _ = regions.open_new(mode=0o640)
    finally:
        os.umask(old)
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_created_file_mode_honours_umask(regions: harness.Regions) -> None:
    old = os.umask(0o077)
    try:
        path, _ = regions.open_new(mode=0o666)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_first_mmap_sets_start_and_size(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window(2)
    assert kapi.mmap(start, 2 * align, RW, NOREPLACE, fd) == start
    regions.mappings.append((start, 2 * align))
    assert harness.read_info(fd) == (start, 2 * align)


def test_mmap_returns_exactly_the_requested_start(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window()
    assert regions.map(fd, start, align) == start
    assert kapi.vma_at(start) is not None


def test_mapping_is_shared_rw_vma_spanning_the_region(region: harness.Region) -> None:
    v = kapi.vma_at(region.start)
    assert v is not None
    assert (v.start, v.end) == (region.start, region.start + region.size)
    assert v.perms == "rw-s"


def test_start_and_size_fixed_for_life_after_creator_unmaps(
        regions: harness.Regions, align: int) -> None:
    r = regions.create()
    regions.unmap(r)
    other = harness.take_window()
    assert _mmap_errno(r.fd, other, align) == errno.EINVAL
    assert harness.read_info(r.fd) == (r.start, r.size)
    regions.map(r.fd, r.start, r.size)


def test_mmap_unaligned_start_einval(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window(2)
    assert _mmap_errno(fd, start + kapi.PAGE, align) == errno.EINVAL
    _assert_not_established(fd)
    _assert_still_creatable(regions, fd, start, align)


def test_mmap_start_aligned_to_pmd_only_einval(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window(2)
    assert _mmap_errno(fd, start + (2 << 20), align) == errno.EINVAL
    _assert_not_established(fd)


@pytest.mark.parametrize("size_delta", [kapi.PAGE, -kapi.PAGE], ids=["plus_page", "minus_page"])
def test_mmap_unaligned_size_einval(regions: harness.Regions, align: int,
                                    size_delta: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window(2)
    assert _mmap_errno(fd, start, align + size_delta) == errno.EINVAL
    _assert_not_established(fd)
    _assert_still_creatable(regions, fd, start, align)


def test_mmap_size_smaller_than_unit_einval(regions: harness.Regions) -> None:
    _, fd = regions.open_new()
    start = harness.take_window()
    assert _mmap_errno(fd, start, 2 << 20) == errno.EINVAL
    _assert_not_established(fd)


def test_mmap_zero_size_einval_and_region_stays_unestablished(
        regions: harness.Regions) -> None:
    _, fd = regions.open_new()
    assert _mmap_errno(fd, harness.take_window(), 0) == errno.EINVAL
    _assert_not_established(fd)


def test_mmap_private_einval(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window()
    flags = kapi.MAP_PRIVATE | kapi.MAP_FIXED_NOREPLACE
    assert _mmap_errno(fd, start, align, flags=flags) == errno.EINVAL
    _assert_not_established(fd)
    _assert_still_creatable(regions, fd, start, align)


def test_mmap_nonzero_offset_einval(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window()
    assert _mmap_errno(fd, start, align, offset=kapi.PAGE) == errno.EINVAL
    _assert_not_established(fd)


def test_mmap_prot_write_on_rdonly_fd_eacces(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new(flags=os.O_RDONLY)
    assert _mmap_errno(fd, harness.take_window(), align) == errno.EACCES
    _assert_not_established(fd)


def test_mmap_over_existing_mapping_eexist(regions: harness.Regions, align: int) -> None:
    _, fd = regions.open_new()
    start = harness.take_window()
    squatter = start + 5 * kapi.PAGE
    kapi.mmap(squatter, kapi.PAGE, kapi.PROT_READ,
              kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS | kapi.MAP_FIXED_NOREPLACE, -1)
    try:
        assert _mmap_errno(fd, start, align) == errno.EEXIST
        v = kapi.vma_at(squatter)
        assert v is not None and (v.start, v.end) == (squatter, squatter + kapi.PAGE)
        _assert_not_established(fd)
    finally:
        kapi.munmap(squatter, kapi.PAGE)
    _assert_still_creatable(regions, fd, start, align)


def test_map_fixed_over_region_einval_and_region_intact(region: harness.Region) -> None:
    """MAP_FIXED would silently replace part of the region: that is a partial unmap."""
    region.poke(0, b"keep")
    flags = kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS | kapi.MAP_FIXED
    assert harness.errno_of(kapi.mmap, region.start, kapi.PAGE, RW, flags, -1) == errno.EINVAL
    assert region.peek(0, 4) == b"keep"
    v = kapi.vma_at(region.start)
    assert v is not None and (v.start, v.end) == (region.start, region.start + region.size)


def test_512gib_window_is_committed_lazily(regions: harness.Regions) -> None:
    before = kapi.meminfo()["Committed_AS"]
    regions.create()
    after = kapi.meminfo()["Committed_AS"]
    # Full accounting would add 512 GiB; other workers forking add at most a few hundred MiB.
    assert after - before < (16 << 20), f"Committed_AS rose by {after - before} kB"


def test_regions_side_by_side_keep_their_own_data(regions: harness.Regions,
                                                  align: int) -> None:
    base = harness.take_window(4)
    rs = [regions.create(start=base + i * align) for i in range(4)]
    for i, r in enumerate(rs):
        r.poke(0, harness.pattern(i, 64))
        r.poke(r.size - 64, harness.pattern(100 + i, 64))
    for i, r in enumerate(rs):
        assert r.peek(0, 64) == harness.pattern(i, 64)
        assert r.peek(r.size - 64, 64) == harness.pattern(100 + i, 64)


def test_many_regions_in_one_process(regions: harness.Regions) -> None:
    rs = [regions.create() for _ in range(16)]
    for i, r in enumerate(rs):
        r.poke(kapi.PAGE * i, i.to_bytes(4, "little"))
    assert [int.from_bytes(r.peek(kapi.PAGE * i, 4), "little") for i, r in enumerate(rs)] \
        == list(range(16))


def test_region_of_two_units_uses_both(regions: harness.Regions, align: int) -> None:
    r = regions.create(units=2)
    r.poke(align - 8, b"unit-0-e")
    r.poke(align, b"unit-1-s")
    r.poke(r.size - 8, b"unit-1-e")
    got = harness.in_child(lambda: [r.peek(align - 8, 8), r.peek(align, 8),
                                    r.peek(r.size - 8, 8)])
    assert got == [b"unit-0-e", b"unit-1-s", b"unit-1-e"]


def test_rename_region_keeps_it_attachable_by_new_name(regions: harness.Regions) -> None:
    r = regions.create()
    r.poke(0, b"renamed")
    new = regions.path("new-name")
    os.rename(r.path, new)
    assert not os.path.exists(r.path)

    def attach_new() -> bytes:
        fd = os.open(new, os.O_RDONLY)
        start, size = harness.read_info(fd)
        kapi.munmap(start, size)  # the inherited mapping: attach afresh
        kapi.mmap(start, size, kapi.PROT_READ, NOREPLACE, fd)
        return kapi.peek(start, 7)

    assert harness.in_child(attach_new) == b"renamed"
