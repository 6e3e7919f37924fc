"""read()/pread()/write() on a region file: a 16-byte read-only file holding
struct mshare_info { unsigned long start; unsigned long size; } once established."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import harness
import pytest

INFO = struct.Struct("=QQ")


@contextmanager
def _rdonly(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_read_gives_struct_start_and_size(regions: harness.Regions) -> None:
    r = regions.create()
    fd = os.open(r.path, os.O_RDONLY)
    try:
        assert INFO.unpack(os.read(fd, 16)) == (r.start, r.size)
    finally:
        os.close(fd)


def test_read_before_region_established_gives_zero_bytes(regions: harness.Regions) -> None:
    _, fd = regions.open_new()
    assert os.read(fd, 16) == b""
    assert os.pread(fd, 16, 0) == b""


def test_read_through_fd_opened_before_establish_sees_struct(
        regions: harness.Regions) -> None:
    path, fd = regions.open_new()
    early = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(early, 16, 0) == b""
        start = harness.take_window()
        regions.map(fd, start, harness.alignment())
        assert INFO.unpack(os.read(early, 16)) == (start, harness.alignment())
    finally:
        os.close(early)


def test_short_read_gives_first_bytes(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        assert os.read(fd, 8) == region.start.to_bytes(8, "little")


def test_sequential_short_reads_walk_the_struct(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        assert os.read(fd, 8) == region.start.to_bytes(8, "little")
        assert os.read(fd, 8) == region.size.to_bytes(8, "little")
        assert os.read(fd, 8) == b""


def test_second_read_returns_zero_bytes(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        assert len(os.read(fd, 16)) == 16
        assert os.read(fd, 16) == b""


def test_large_read_buffer_gets_exactly_16_bytes(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        assert os.read(fd, 4096) == INFO.pack(region.start, region.size)


def test_pread_at_zero_always_gives_struct(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        os.read(fd, 16)
        for _ in range(3):
            assert INFO.unpack(os.pread(fd, 16, 0)) == (region.start, region.size)


def test_pread_at_offset_8_gives_size(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        assert os.pread(fd, 16, 8) == region.size.to_bytes(8, "little")


@pytest.mark.parametrize("offset", [16, 4096])
def test_pread_at_or_past_16_gives_zero_bytes(region: harness.Region, offset: int) -> None:
    with _rdonly(region.path) as fd:
        assert os.pread(fd, 16, offset) == b""


def test_write_einval(region: harness.Region) -> None:
    with pytest.raises(OSError) as e:
        os.write(region.fd, b"\0" * 16)
    assert e.value.errno == errno.EINVAL
    assert harness.read_info(region.fd) == (region.start, region.size)


def test_write_before_established_einval(regions: harness.Regions) -> None:
    _, fd = regions.open_new()
    with pytest.raises(OSError) as e:
        os.write(fd, INFO.pack(harness.take_window(), harness.alignment()))
    assert e.value.errno == errno.EINVAL
    assert os.pread(fd, 16, 0) == b""


def test_write_on_rdonly_fd_ebadf(region: harness.Region) -> None:
    with _rdonly(region.path) as fd:
        with pytest.raises(OSError) as e:
            os.write(fd, b"x")
        assert e.value.errno == errno.EBADF
