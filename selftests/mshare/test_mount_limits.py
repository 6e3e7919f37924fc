"""The limits of the msharefs instance (second review, F6): max_regions and max_size.

msharefs is single-instance: every mount shows the same superblock, and its limits apply
when the superblock is created and at `mount -o remount,max_regions=N,max_size=S`.
Creating a region past max_regions fails ENOSPC and creates no file; a first mmap that
would take the established regions' sizes past max_size fails ENOSPC and leaves the region
unestablished.  statfs reports both (files: regions; 4 KiB blocks: established bytes),
/proc/mounts shows them in bytes.

Every test here changes the one superblock: they are serial, and the limits fixture
remounts the defaults back whatever happens.  Other regions may exist (left by other
tests or processes), so counts are taken relative to statfs before the test.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import kapi
import pytest
import sdkgate
from harness import MOUNT

import libmshare

pytestmark = pytest.mark.serial

DEFAULT_MAX_REGIONS = 4096
BLOCK = 4096
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


def default_max_size() -> int:
    return DEFAULT_MAX_REGIONS * harness.alignment()  # 2P with 512 GiB units


@dataclass(frozen=True)
class Usage:
    """What statfs says of the instance."""

    max_regions: int
    regions: int
    max_size: int
    established: int


def usage() -> Usage:
    st = os.statvfs(MOUNT)
    assert st.f_bsize == BLOCK, st
    return Usage(st.f_files, st.f_files - st.f_ffree, st.f_blocks * BLOCK,
                 (st.f_blocks - st.f_bfree) * BLOCK)


def mount_options(target: str = MOUNT) -> dict[str, str]:
    """The options /proc/mounts shows for target (key=value ones)."""
    for m in harness.mounts():
        if m.target == target and m.fstype == harness.FSTYPE:
            return dict(o.split("=", 1) for o in m.options if "=" in o)
    raise AssertionError(f"{target} is not an msharefs mount")


def remount(options: str) -> None:
    kapi.mount("msharefs", MOUNT, "msharefs", kapi.MS_REMOUNT, options)


def restore_defaults() -> None:
    remount(f"max_regions={DEFAULT_MAX_REGIONS},max_size={default_max_size()}")


@pytest.fixture
def limits(msharefs: str) -> Iterator[None]:
    """The default limits before the test (restored if left otherwise) and after it."""
    restore_defaults()
    try:
        yield
    finally:
        restore_defaults()


def _create(rs: harness.Regions, tag: str = "lim") -> tuple[str, int | None]:
    """open(O_CREAT|O_EXCL) of a new name: (path, errno or None)."""
    path = rs.path(tag)
    try:
        rs.open_new(path)
    except OSError as e:
        return path, e.errno
    return path, None


def _establish(rs: harness.Regions, fd: int, units: int = 1) -> int | None:
    start = harness.take_window(units)
    return harness.errno_of(rs.map, fd, start, units * harness.alignment())


def _free(rs: harness.Regions, r: harness.Region) -> None:
    """unlink, munmap and close: the last reference goes."""
    os.unlink(r.path)
    rs.unmap(r)
    rs.close(r.fd)


# ---------------------------------------------------------------- defaults, statfs, /proc

def test_proc_mounts_shows_default_limits_in_bytes(limits: None) -> None:
    opts = mount_options()
    assert (opts.get("max_regions"), opts.get("max_size")) == \
        (str(DEFAULT_MAX_REGIONS), str(default_max_size()))


def test_default_max_size_is_2p_on_x86_64(limits: None) -> None:
    if harness.alignment() != 512 << 30:
        pytest.skip("kernel config: not a 512 GiB alignment unit")
    assert int(mount_options()["max_size"]) == 2 << 50


def test_statfs_block_size_is_4096(limits: None) -> None:
    assert os.statvfs(MOUNT).f_bsize == BLOCK


def test_statfs_files_is_max_regions(limits: None) -> None:
    assert os.statvfs(MOUNT).f_files == DEFAULT_MAX_REGIONS


def test_statfs_blocks_is_max_size_in_4k_blocks(limits: None) -> None:
    assert os.statvfs(MOUNT).f_blocks == default_max_size() // BLOCK


def test_statfs_free_files_drop_by_one_per_region_created(
        limits: None, regions: harness.Regions) -> None:
    before = os.statvfs(MOUNT).f_ffree
    regions.open_new()
    regions.open_new()
    assert os.statvfs(MOUNT).f_ffree == before - 2


def test_statfs_free_blocks_unchanged_by_unestablished_region(
        limits: None, regions: harness.Regions) -> None:
    before = os.statvfs(MOUNT).f_bfree
    regions.open_new()
    assert os.statvfs(MOUNT).f_bfree == before


def test_statfs_free_blocks_drop_by_region_size_when_established(
        limits: None, regions: harness.Regions) -> None:
    before = os.statvfs(MOUNT).f_bfree
    regions.create(units=2)
    assert os.statvfs(MOUNT).f_bfree == before - 2 * harness.alignment() // BLOCK


def test_remount_sets_limits_shown_in_proc_mounts(limits: None) -> None:
    u = usage()
    n, size = u.regions + 7, u.established + 3 * harness.alignment()
    remount(f"max_regions={n},max_size={size}")
    opts = mount_options()
    assert (opts["max_regions"], opts["max_size"]) == (str(n), str(size))


def test_remount_sets_limits_shown_in_statfs(limits: None) -> None:
    u = usage()
    n, size = u.regions + 7, u.established + 3 * harness.alignment()
    remount(f"max_regions={n},max_size={size}")
    st = os.statvfs(MOUNT)
    assert (st.f_files, st.f_ffree, st.f_blocks, st.f_bfree) == \
        (n, 7, size // BLOCK, 3 * harness.alignment() // BLOCK)


@pytest.mark.parametrize(("text", "value"), [("4t", 4 << 40), ("4096g", 4 << 40),
                                             ("4194304m", 4 << 40), ("1p", 1 << 50)])
def test_remount_max_size_takes_memparse_suffixes(limits: None, text: str, value: int) -> None:
    remount(f"max_size={text}")
    assert mount_options()["max_size"] == str(value)


def test_remount_with_one_limit_keeps_the_other(limits: None) -> None:
    remount(f"max_regions={usage().regions + 9}")
    assert mount_options()["max_size"] == str(default_max_size())


@pytest.mark.parametrize("options", ["max_regions=0", "max_size=4k", "max_size=1x",
                                     "max_regions=-1"],
                         ids=["regions_0", "size_4k", "size_bad_suffix", "regions_negative"])
def test_remount_with_invalid_limit_einval(limits: None, options: str) -> None:
    assert harness.errno_of(remount, options) == errno.EINVAL


def test_remount_with_invalid_limit_changes_nothing(limits: None) -> None:
    before = mount_options()
    harness.errno_of(remount, f"max_regions=100,max_size={harness.alignment() - 1}")
    assert mount_options() == before


def test_max_size_of_one_alignment_unit_accepted(limits: None) -> None:
    remount(f"max_size={harness.alignment()}")
    assert mount_options()["max_size"] == str(harness.alignment())


# ---------------------------------------------------------------- max_regions

def test_create_past_max_regions_enospc(limits: None, regions: harness.Regions) -> None:
    remount(f"max_regions={usage().regions + 1}")
    assert _create(regions)[1] is None
    assert _create(regions)[1] == errno.ENOSPC


def test_create_past_max_regions_creates_no_file(limits: None,
                                                 regions: harness.Regions) -> None:
    regions.open_new()  # max_regions is at least 1
    remount(f"max_regions={usage().regions}")
    path, err = _create(regions)
    assert err == errno.ENOSPC
    assert not os.path.lexists(path)


def test_freed_region_gives_its_count_back(limits: None, regions: harness.Regions) -> None:
    remount(f"max_regions={usage().regions + 1}")
    r = regions.create()
    assert _create(regions)[1] == errno.ENOSPC
    _free(regions, r)
    assert _create(regions)[1] is None


def test_unlinked_region_still_mapped_keeps_its_count(limits: None,
                                                      regions: harness.Regions) -> None:
    remount(f"max_regions={usage().regions + 1}")
    r = regions.create()
    os.unlink(r.path)
    regions.close(r.fd)
    assert _create(regions)[1] == errno.ENOSPC


def test_remount_max_regions_equal_to_regions_succeeds(limits: None,
                                                       regions: harness.Regions) -> None:
    regions.open_new()
    n = usage().regions
    remount(f"max_regions={n}")
    assert os.statvfs(MOUNT).f_ffree == 0


# ---------------------------------------------------------------- max_size

def _room_for(units: int) -> None:
    """max_size set to what is established now plus units alignment units."""
    remount(f"max_size={usage().established + units * harness.alignment()}")


def test_first_mmap_past_max_size_enospc(limits: None, regions: harness.Regions) -> None:
    _room_for(1)
    regions.create()
    _, fd = regions.open_new()
    assert _establish(regions, fd) == errno.ENOSPC


def test_first_mmap_of_two_units_past_max_size_enospc(limits: None,
                                                      regions: harness.Regions) -> None:
    _room_for(1)
    _, fd = regions.open_new()
    assert _establish(regions, fd, units=2) == errno.ENOSPC


def test_first_mmap_past_max_size_leaves_region_unestablished(
        limits: None, regions: harness.Regions) -> None:
    _room_for(1)
    regions.create()
    _, fd = regions.open_new()
    assert _establish(regions, fd) == errno.ENOSPC
    assert os.pread(fd, 16, 0) == b""


def test_unestablished_region_establishes_once_there_is_room(
        limits: None, regions: harness.Regions) -> None:
    _room_for(1)
    r = regions.create()
    _, fd = regions.open_new()
    assert _establish(regions, fd) == errno.ENOSPC
    _free(regions, r)
    assert _establish(regions, fd) is None
    assert kapi.read_mshare_info(fd) is not None


def test_freed_region_gives_its_size_back(limits: None, regions: harness.Regions) -> None:
    before = usage().established
    r = regions.create(units=2)
    assert usage().established == before + 2 * harness.alignment()
    _free(regions, r)
    assert usage().established == before


def test_attach_at_max_size_succeeds(limits: None, regions: harness.Regions) -> None:
    """Only establishing counts: more mappers of an established region take nothing."""
    _room_for(1)
    r = regions.create()
    assert usage().established == usage().max_size

    def body() -> None:
        kapi.munmap(r.start, r.size)
        fd = os.open(r.path, os.O_RDWR)
        kapi.mmap(r.start, r.size, harness.RW, NOREPLACE, fd)

    harness.in_child(body)


# ---------------------------------------------------------------- a limit below what is in use

def _below_use(regions: harness.Regions, limit: str) -> str:
    """Two regions (established for max_size), then the option setting limit one below
    what they use: one region fewer, or one alignment unit less."""
    if limit == "max_regions":
        regions.open_new()
        regions.open_new()
        return f"max_regions={usage().regions - 1}"
    regions.create()
    regions.create()
    return f"max_size={usage().established - harness.alignment()}"


@pytest.mark.parametrize("limit", ["max_regions", "max_size"])
def test_remount_limit_below_use_einval(limits: None, regions: harness.Regions,
                                        limit: str) -> None:
    assert harness.errno_of(remount, _below_use(regions, limit)) == errno.EINVAL


@pytest.mark.parametrize("limit", ["max_regions", "max_size"])
def test_remount_limit_below_use_keeps_limits(limits: None, regions: harness.Regions,
                                              limit: str) -> None:
    option = _below_use(regions, limit)
    before = mount_options()
    harness.errno_of(remount, option)
    assert mount_options() == before


# ---------------------------------------------------------------- single instance

def test_second_mount_shows_the_same_limits(limits: None, workdir: Path) -> None:
    remount(f"max_regions={usage().regions + 5}")
    target = workdir / "m-limits"
    target.mkdir(exist_ok=True)
    kapi.mount("msharefs", str(target), "msharefs")
    try:
        assert mount_options(str(target)) == mount_options()
    finally:
        kapi.umount2(str(target))


# ---------------------------------------------------------------- the SDK

def test_sdk_create_past_max_regions_raises_region_limit_error(
        limits: None, regions: harness.Regions) -> None:
    sdkgate.sdk_mount()
    regions.open_new()  # max_regions is at least 1
    remount(f"max_regions={usage().regions}")
    name = f"sdk-lim-{os.getpid()}"
    with pytest.raises(libmshare.RegionLimitError, match="max_regions") as e:
        libmshare.Region.create(name, harness.alignment())
    assert e.value.errno == errno.ENOSPC
    assert not os.path.lexists(f"{MOUNT}/{name}")


def test_sdk_create_past_max_size_raises_region_limit_error(
        limits: None, regions: harness.Regions) -> None:
    sdkgate.sdk_mount()
    _room_for(1)
    regions.create()
    name = f"sdk-lim-{os.getpid()}"
    with pytest.raises(libmshare.RegionLimitError, match="max_size") as e:
        libmshare.Region.create(name, harness.alignment())
    assert e.value.errno == errno.ENOSPC
    assert not os.path.lexists(f"{MOUNT}/{name}")
