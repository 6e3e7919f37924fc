"""Region flags (MSHARE_SET_FLAGS/MSHARE_GET_FLAGS, series v6) in the binding layer, on a
kernel without them: the ABI, the checks made before the ioctl and every errno's error."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from libmshare import _libc
from libmshare.errors import (
    MshareError,
    MshareValueError,
    NotSupportedError,
    RegionEstablishedError,
)

PATH = "/sys/fs/mshare/db"


@pytest.fixture
def region_fd(tmp_path: Path) -> Iterator[int]:
    """A regular file open O_RDWR, standing in for a region file."""
    fd = os.open(tmp_path / "db", os.O_RDWR | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


def failing_ioctl(monkeypatch: pytest.MonkeyPatch, err: int) -> list[int]:
    """fcntl.ioctl fails with ``err``; returns the list of requests it was called with."""
    calls: list[int] = []

    def ioctl(fd: int, request: int, arg: object) -> int:
        calls.append(request)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    return calls


# -- the ABI ------------------------------------------------------------------------

def test_set_flags_ioctl_number_is_iow_0xb9_1_of_8_bytes() -> None:
    # _IOW(type, nr, size) = dir WRITE (1) << 30 | size << 16 | type << 8 | nr
    assert _libc.MSHARE_SET_FLAGS == (1 << 30) | (8 << 16) | (0xB9 << 8) | 0x01
    assert _libc.MSHARE_SET_FLAGS == 0x4008B901


def test_get_flags_ioctl_number_is_ior_0xb9_2_of_8_bytes() -> None:
    assert _libc.MSHARE_GET_FLAGS == (2 << 30) | (8 << 16) | (0xB9 << 8) | 0x02
    assert _libc.MSHARE_GET_FLAGS == 0x8008B902


def test_huge_is_bit_0_and_the_only_known_flag() -> None:
    assert _libc.MSHARE_F_HUGE == 1 == _libc.MSHARE_F_ALL


def test_set_flags_passes_a_u64_to_the_ioctl(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def ioctl(fd: int, request: int, arg: ctypes.c_uint64) -> int:
        seen.append((fd, request, bytes(arg)))
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    _libc.set_flags(7, _libc.MSHARE_F_HUGE, PATH)
    assert seen == [(7, _libc.MSHARE_SET_FLAGS, struct.pack("=Q", 1))]


def test_get_flags_returns_the_u64_the_kernel_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    def ioctl(fd: int, request: int, arg: ctypes.c_uint64) -> int:
        assert request == _libc.MSHARE_GET_FLAGS
        arg.value = _libc.MSHARE_F_HUGE
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    assert _libc.get_flags(7, PATH) == _libc.MSHARE_F_HUGE


# -- refused before the ioctl -------------------------------------------------------

def test_unknown_flag_bit_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing_ioctl(monkeypatch, errno.EINVAL)
    with pytest.raises(MshareValueError, match=r"0x3 have huge\+unknown bits 0x2"):
        _libc.set_flags(7, 0x3, PATH)
    assert calls == []


@pytest.mark.parametrize("flags", [-1, 1 << 64])
def test_flags_outside_u64_are_refused(monkeypatch: pytest.MonkeyPatch, flags: int) -> None:
    calls = failing_ioctl(monkeypatch, errno.EINVAL)
    with pytest.raises(MshareValueError, match="not a 64-bit unsigned value"):
        _libc.set_flags(7, flags, PATH)
    assert calls == []


@pytest.mark.parametrize("flags", [True, 1.0, "1"])
def test_flags_that_are_not_an_int_are_a_type_error(flags: object) -> None:
    with pytest.raises(TypeError, match="region flags must be an int"):
        _libc.set_flags(7, flags, PATH)  # type: ignore[arg-type]


# -- the kernel's errors ------------------------------------------------------------

def test_ebusy_is_region_established_naming_the_first_mmap(
    region_fd: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing_ioctl(monkeypatch, errno.EBUSY)
    with pytest.raises(RegionEstablishedError) as e:
        _libc.set_flags(region_fd, _libc.MSHARE_F_HUGE, PATH)
    assert e.value.errno == errno.EBUSY and e.value.filename == PATH
    assert e.value.strerror == ("huge: the region is established already; choose before "
                                "its first mmap")


def test_einval_from_the_kernel_names_the_flags(
    region_fd: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing_ioctl(monkeypatch, errno.EINVAL)
    with pytest.raises(MshareError, match=r"the kernel does not know flags 0x1 \(huge\)") as e:
        _libc.set_flags(region_fd, _libc.MSHARE_F_HUGE, PATH)
    assert e.value.errno == errno.EINVAL


def test_ebadf_on_a_read_only_descriptor_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "db").write_bytes(b"")
    fd = os.open(tmp_path / "db", os.O_RDONLY)
    failing_ioctl(monkeypatch, errno.EBADF)
    try:
        with pytest.raises(MshareError, match="huge: the region is open read-only") as e:
            _libc.set_flags(fd, _libc.MSHARE_F_HUGE, PATH)
    finally:
        os.close(fd)
    assert e.value.errno == errno.EBADF


def test_ebadf_on_a_closed_descriptor_is_plain_ebadf(region_fd: int) -> None:
    closed = os.dup(region_fd)
    os.close(closed)
    with pytest.raises(MshareError, match="set flags: Bad file descriptor") as e:
        _libc.set_flags(closed, _libc.MSHARE_F_HUGE, PATH)
    assert e.value.errno == errno.EBADF


def test_efault_keeps_its_errno(region_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_ioctl(monkeypatch, errno.EFAULT)
    with pytest.raises(MshareError, match="set flags: Bad address") as e:
        _libc.set_flags(region_fd, _libc.MSHARE_F_HUGE, PATH)
    assert e.value.errno == errno.EFAULT


def test_set_flags_enotty_from_a_region_file_says_the_kernel_predates_v6(
    region_fd: int,
) -> None:
    with pytest.raises(NotSupportedError) as e:
        _libc.set_flags(region_fd, _libc.MSHARE_F_HUGE, PATH)
    assert e.value.errno == errno.ENOTTY
    assert e.value.strerror == ("set flags: the running kernel's msharefs lacks "
                                "MSHARE_SET_FLAGS (older than series v6)")


def test_get_flags_enotty_from_a_region_file_says_the_kernel_predates_v6(
    region_fd: int,
) -> None:
    with pytest.raises(NotSupportedError) as e:
        _libc.get_flags(region_fd, PATH)
    assert e.value.errno == errno.ENOTTY
    assert e.value.strerror == ("get flags: the running kernel's msharefs lacks "
                                "MSHARE_GET_FLAGS (older than series v6)")


@pytest.mark.parametrize("call", ["set", "get"])
def test_enotty_from_a_directory_is_not_blamed_on_the_kernel(
    tmp_path: Path, call: str,
) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(MshareError) as e:
            if call == "set":
                _libc.set_flags(fd, _libc.MSHARE_F_HUGE, str(tmp_path))
            else:
                _libc.get_flags(fd, str(tmp_path))
    finally:
        os.close(fd)
    assert e.value.errno == errno.ENOTTY and not isinstance(e.value, NotSupportedError)


def test_stats_enotty_still_says_it_predates_region_stats(region_fd: int) -> None:
    with pytest.raises(NotSupportedError, match=r"lacks MSHARE_GET_STATS \(it predates "
                                                r"region stats\)"):
        _libc.get_stats(region_fd, PATH)
