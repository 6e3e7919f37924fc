"""Region stats on a kernel without MSHARE_GET_STATS: the binding's ABI and errors, the
cgroup lookup, and what the SDK gives where there are no stats (the emulated mount)."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import _backend, _cgroup, _libc
from libmshare.errors import (
    MshareError,
    MsharePermissionError,
    NotSupportedError,
    RegionClosedError,
)
from libmshare.stats import RegionStats, read_stats

FIELDS = ["start", "size", "resident", "swapped", "pmd_mapped", "page_tables",
          "nr_mappers", "memcg_id"]


def canned(**kw: Any) -> RegionStats:
    return dataclasses.replace(
        RegionStats(start=0x7E0000000000, size=FAKE_ALIGN, resident=0, swapped=0,
                    pmd_mapped=0, page_tables=0, mappers=1, memcg_id=0, cgroup=None), **kw)


@pytest.fixture
def cgroup_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the only cgroup2 mount, with a fresh lookup cache."""
    (tmp_path / "system.slice" / "db.service").mkdir(parents=True)
    (tmp_path / "user.slice").mkdir()
    monkeypatch.setattr(_cgroup, "find_mounts", lambda fstype: [str(tmp_path)])
    monkeypatch.setattr(_cgroup, "_known", {})
    monkeypatch.setattr(_cgroup, "_known_mounts", [])
    return tmp_path


# -- the binding ----------------------------------------------------------------------

def test_mshare_stats_struct_is_64_bytes() -> None:
    assert ctypes.sizeof(_libc.MshareStats) == 64


def test_mshare_stats_fields_are_u64_in_uapi_order() -> None:
    assert [f[0] for f in _libc.MshareStats._fields_] == FIELDS
    assert [getattr(_libc.MshareStats, f).offset for f in FIELDS] == list(range(0, 64, 8))
    raw = struct.pack("=8Q", *range(1, 9))
    assert [getattr(_libc.MshareStats.from_buffer_copy(raw), f) for f in FIELDS] \
        == list(range(1, 9))


def test_get_stats_ioctl_number_is_ior_0xb9_0_of_64_bytes() -> None:
    # _IOR(type, nr, size) = dir READ (2) << 30 | size << 16 | type << 8 | nr
    assert _libc.MSHARE_GET_STATS == (2 << 30) | (64 << 16) | (0xB9 << 8) | 0x00
    assert _libc.MSHARE_GET_STATS == 0x8040B900


def test_get_stats_fills_the_struct_through_ioctl(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def ioctl(fd: int, request: int, buf: _libc.MshareStats) -> int:
        seen.append((fd, request))
        ctypes.memmove(ctypes.addressof(buf), struct.pack("=8Q", *range(10, 18)), 64)
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    got = _libc.get_stats(7, "/sys/fs/mshare/db")
    assert seen == [(7, _libc.MSHARE_GET_STATS)]
    assert (got.start, got.nr_mappers, got.memcg_id) == (10, 16, 17)


def test_enotty_from_a_regular_file_says_the_kernel_lacks_the_ioctl(tmp_path: Path) -> None:
    path = tmp_path / "region"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(NotSupportedError, match="lacks MSHARE_GET_STATS") as e:
            _libc.get_stats(fd, str(path))
    finally:
        os.close(fd)
    assert e.value.errno == errno.ENOTTY and e.value.filename == str(path)


def test_enotty_from_a_directory_is_not_blamed_on_the_kernel(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(MshareError) as e:
            _libc.get_stats(fd, str(tmp_path))
    finally:
        os.close(fd)
    assert e.value.errno == errno.ENOTTY and not isinstance(e.value, NotSupportedError)


def test_other_ioctl_errors_keep_their_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    def ioctl(fd: int, request: int, buf: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    with pytest.raises(MsharePermissionError, match="stats") as e:
        _libc.get_stats(3, "/sys/fs/mshare/db")
    assert e.value.errno == errno.EACCES


# -- RegionStats and the cgroup lookup ------------------------------------------------

def test_region_stats_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        canned().resident = 1  # type: ignore[misc]


def test_read_stats_renames_nr_mappers_and_resolves_the_cgroup(
    cgroup_tree: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = cgroup_tree / "system.slice" / "db.service"
    raw = _libc.MshareStats(0x7E0000000000, 1 << 39, 16 << 20, 4096, 2 << 20, 12288, 3,
                            group.stat().st_ino)
    monkeypatch.setattr(_libc, "get_stats", lambda fd, path: raw)
    assert read_stats(3, "/sys/fs/mshare/db") == RegionStats(
        start=0x7E0000000000, size=1 << 39, resident=16 << 20, swapped=4096,
        pmd_mapped=2 << 20, page_tables=12288, mappers=3, memcg_id=group.stat().st_ino,
        cgroup=str(group))


def test_cgroup_of_the_mount_root_is_the_mount(cgroup_tree: Path) -> None:
    assert _cgroup.cgroup_dir(cgroup_tree.stat().st_ino) == str(cgroup_tree)


def test_cgroup_id_0_is_no_cgroup(cgroup_tree: Path) -> None:
    assert _cgroup.cgroup_dir(0) is None


def test_cgroup_not_in_the_tree_is_none(cgroup_tree: Path) -> None:
    outside = cgroup_tree.parent / f"{cgroup_tree.name}-elsewhere"
    outside.mkdir()
    assert _cgroup.cgroup_dir(outside.stat().st_ino) is None


def test_cgroup_without_a_cgroup2_mount_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cgroup, "find_mounts", lambda fstype: [])
    monkeypatch.setattr(_cgroup, "_known", {})
    assert _cgroup.cgroup_dir(1) is None


def test_cgroup_lookup_asks_for_cgroup2_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def find_mounts(fstype: str) -> list[str]:
        asked.append(fstype)
        return []

    monkeypatch.setattr(_cgroup, "find_mounts", find_mounts)
    _cgroup.cgroup_dir(5)
    assert asked == ["cgroup2"]


def test_remembered_cgroup_path_is_checked_before_use(cgroup_tree: Path) -> None:
    group = cgroup_tree / "user.slice"
    ino = group.stat().st_ino
    assert _cgroup.cgroup_dir(ino) == str(group)
    group.rename(cgroup_tree / "moved.slice")
    assert _cgroup.cgroup_dir(ino) == str(cgroup_tree / "moved.slice")


# -- the SDK on the emulated mount ----------------------------------------------------

def test_region_stats_on_the_emulated_mount_are_not_made_up(fake_mount: Path) -> None:
    with (libmshare.create("db", FAKE_ALIGN) as r,
          pytest.raises(NotSupportedError, match="emulated mount") as e):
        r.stats()
    assert e.value.errno == errno.EOPNOTSUPP


def test_stat_on_the_emulated_mount_has_no_stats(fake_mount: Path) -> None:
    libmshare.create("db", FAKE_ALIGN).close()
    info = libmshare.stat("db")
    assert info.stats is None and info.established is True and info.size == FAKE_ALIGN


def test_list_regions_on_the_emulated_mount_have_no_stats(fake_mount: Path) -> None:
    libmshare.create("a", FAKE_ALIGN).close()
    assert [i.stats for i in libmshare.list_regions()] == [None]


def test_region_stats_come_from_the_backend(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    want = canned(resident=4096, mappers=2)
    monkeypatch.setattr(_backend.EmulatedBackend, "read_stats", lambda self, fd, path: want)
    with libmshare.create("db", FAKE_ALIGN) as r:
        assert r.stats() == want
    assert libmshare.stat("db").stats == want


def _read_stats_fails(monkeypatch: pytest.MonkeyPatch, error: type[MshareError], err: int,
                      message: str) -> None:
    """The backend's read_stats raising error(err, message, path), as the binding would."""
    def read_stats(self: object, fd: int, path: str) -> RegionStats:
        raise error(err, message, path)

    monkeypatch.setattr(_backend.EmulatedBackend, "read_stats", read_stats)


def test_stat_on_a_kernel_without_the_ioctl_has_no_stats(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _read_stats_fails(monkeypatch, NotSupportedError, errno.ENOTTY,
                      "stats: lacks MSHARE_GET_STATS")
    libmshare.create("db", FAKE_ALIGN).close()
    assert libmshare.stat("db").stats is None


def test_stat_reports_other_stats_errors(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _read_stats_fails(monkeypatch, MshareError, errno.EIO, "stats: Input/output error")
    libmshare.create("db", FAKE_ALIGN).close()
    with pytest.raises(MshareError) as e:
        libmshare.stat("db")
    assert e.value.errno == errno.EIO


def test_region_stats_after_close_raise_region_closed(fake_mount: Path) -> None:
    r = libmshare.create("db", FAKE_ALIGN)
    r.close()
    with pytest.raises(RegionClosedError):
        r.stats()


def test_region_stats_of_a_reused_name_are_estale(fake_mount: Path) -> None:
    with libmshare.create("db", FAKE_ALIGN) as r:
        libmshare.unlink("db")
        libmshare.create("db", FAKE_ALIGN).close()
        with pytest.raises(MshareError) as e:
            r.stats()
    assert e.value.errno == errno.ESTALE and "another region" in str(e.value)


def test_region_stats_of_an_unlinked_region_are_not_found(fake_mount: Path) -> None:
    with libmshare.create("db", FAKE_ALIGN) as r:
        libmshare.unlink("db")
        with pytest.raises(libmshare.RegionNotFoundError):
            r.stats()
