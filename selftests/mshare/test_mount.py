"""msharefs itself: registration, mount point, mshare_info, directories, mounts."""

from __future__ import annotations

import errno
import os
import platform
import re
import stat
from pathlib import Path

import harness
import kapi
import pytest
from harness import INFO, MOUNT

P4D_SPAN_X86_64 = 512 << 30


def test_filesystem_type_registered_as_nodev_msharefs() -> None:
    with open("/proc/filesystems") as f:
        lines = [ln.rstrip("\n") for ln in f]
    assert "nodev\tmsharefs" in lines


def test_mount_point_is_sys_fs_mshare_directory() -> None:
    assert stat.S_ISDIR(os.stat(MOUNT).st_mode)


def test_mounted_with_type_msharefs(msharefs: str) -> None:
    assert any(m.target == MOUNT and m.fstype == "msharefs" for m in harness.mounts())


def test_mshare_info_is_regular_file_mode_0444() -> None:
    st = os.stat(INFO)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o444


def test_mshare_info_is_decimal_ending_in_newline() -> None:
    with open(INFO, "rb") as f:
        text = f.read()
    assert re.fullmatch(rb"[1-9][0-9]*\n", text), text


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 alignment")
def test_mshare_info_alignment_is_512gib_on_x86_64() -> None:
    with open(INFO, "rb") as f:
        assert int(f.read()) == P4D_SPAN_X86_64


def test_mshare_info_readable_in_small_pieces() -> None:
    fd = os.open(INFO, os.O_RDONLY)
    try:
        got = b""
        while chunk := os.read(fd, 5):
            got += chunk
    finally:
        os.close(fd)
    with open(INFO, "rb") as f:
        assert got == f.read()


def test_mshare_info_unlink_eperm() -> None:
    with pytest.raises(OSError) as e:
        os.unlink(INFO)
    assert e.value.errno == errno.EPERM
    assert os.path.exists(INFO)


def test_mshare_info_rename_eperm() -> None:
    target = f"{MOUNT}/ks-{harness.worker()}-{os.getpid()}-renamed-info"
    with pytest.raises(OSError) as e:
        os.rename(INFO, target)
    assert e.value.errno == errno.EPERM
    assert os.path.exists(INFO) and not os.path.exists(target)


def test_mshare_info_write_eperm() -> None:
    """Even root (which passes the 0444 check) cannot change it."""
    try:
        fd = os.open(INFO, os.O_WRONLY)
    except OSError as e:
        assert e.errno == errno.EPERM
        return
    try:
        with pytest.raises(OSError) as e2:
            os.write(fd, b"4096\n")
        assert e2.value.errno == errno.EPERM
    finally:
        os.close(fd)
    with open(INFO, "rb") as f:
        assert int(f.read()) == harness.alignment()


def test_mshare_info_cannot_be_replaced_by_rename_onto_it(regions: harness.Regions) -> None:
    path, _ = regions.open_new()
    with pytest.raises(OSError) as e:
        os.rename(path, INFO)
    assert e.value.errno == errno.EPERM
    with open(INFO, "rb") as f:
        assert int(f.read()) == harness.alignment()
    assert os.path.exists(path)


def test_mkdir_and_rmdir_inside_msharefs(regions: harness.Regions) -> None:
    d = f"{MOUNT}/{regions.name('dir')}"
    os.mkdir(d, 0o755)
    assert stat.S_ISDIR(os.stat(d).st_mode)
    os.rmdir(d)
    assert not os.path.exists(d)


def test_rmdir_of_directory_holding_region_enotempty(regions: harness.Regions) -> None:
    d = regions.mkdir()
    regions.open_new(regions.path("in-dir", parent=d))
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY


def test_region_inside_nested_directories(regions: harness.Regions) -> None:
    d1 = regions.mkdir("outer")
    d2 = f"{d1}/inner"
    os.mkdir(d2)
    regions.dirs.append(d2)
    r = regions.create(path=regions.path("nested", parent=d2))
    r.poke(0, b"nested")
    other = harness.in_child(lambda: _attach_and_peek(r.path, 6))
    assert other == b"nested"


def _attach_and_peek(path: str, n: int) -> bytes:
    """In a forked child: drop the mapping inherited from the parent, then attach by name
    (MAP_FIXED_NOREPLACE over the inherited mapping would fail with EEXIST)."""
    fd = os.open(path, os.O_RDONLY)
    start, size = harness.read_info(fd)
    kapi.munmap(start, size)
    kapi.mmap(start, size, kapi.PROT_READ, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    return kapi.peek(start, n)


def test_readdir_lists_mshare_info_regions_and_directories(regions: harness.Regions) -> None:
    path, _ = regions.open_new()
    d = regions.mkdir()
    names = os.listdir(MOUNT)
    assert {"mshare_info", Path(path).name, Path(d).name} <= set(names)
    kinds = {e.name: e.is_dir() for e in os.scandir(MOUNT)}
    assert kinds[Path(d).name] is True and kinds[Path(path).name] is False


def test_mount_as_non_root_eperm() -> None:
    def body() -> int | None:  # a path nobody can look up: EPERM, not EACCES, is the check
        return harness.errno_of(kapi.mount, "msharefs", MOUNT, "msharefs")

    assert harness.in_child(body, uid=harness.NOBODY) == errno.EPERM


def test_second_mount_elsewhere_works_and_has_mshare_info(workdir: Path) -> None:
    target = workdir / "m2"
    target.mkdir(exist_ok=True)
    kapi.mount("msharefs", str(target), "msharefs")
    try:
        with open(target / "mshare_info", "rb") as f:
            assert int(f.read()) == harness.alignment()
        assert str(target) in harness.mounts_of_type()
    finally:
        kapi.umount2(str(target))
    assert os.path.exists(INFO)


def test_remount_keeps_regions_and_data(regions: harness.Regions) -> None:
    r = regions.create()
    r.poke(0, b"remount")
    kapi.mount("msharefs", MOUNT, "msharefs", kapi.MS_REMOUNT)
    assert harness.is_mounted()
    assert harness.in_child(lambda: _attach_and_peek(r.path, 7)) == b"remount"


@pytest.mark.serial
def test_umount_with_region_open_ebusy(regions: harness.Regions) -> None:
    regions.create()
    with pytest.raises(OSError) as e:
        kapi.umount2(MOUNT)
    assert e.value.errno == errno.EBUSY
    assert harness.is_mounted()


@pytest.mark.serial
def test_umount_then_mount_again_starts_empty(regions: harness.Regions) -> None:
    """A region never unlinked lives until unmount; a fresh mount has only mshare_info."""
    path = regions.path("kept")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    start, size = harness.take_window(), harness.alignment()
    kapi.mmap(start, size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    kapi.poke(start, b"old")
    kapi.munmap(start, size)
    os.close(fd)
    name = Path(path).name
    assert name in os.listdir(MOUNT)
    harness.remount()
    assert sorted(os.listdir(MOUNT)) == ["mshare_info"]
