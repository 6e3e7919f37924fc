"""mshare_lab.iouring on the host kernel: one read done by an io_uring worker thread."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator

import pytest

from mshare_lab import iouring


@pytest.fixture
def buffer() -> Iterator[mmap.mmap]:
    buf = mmap.mmap(-1, 1 << 20)
    buf[:] = b"\xa5" * len(buf)
    yield buf
    buf.close()


def _address(buf: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def _no_io_uring() -> bool:
    """The host may forbid io_uring (kernel.io_uring_disabled, seccomp)."""
    try:
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            iouring.worker_read(fd, 0, 0)
        finally:
            os.close(fd)
    except OSError as err:
        return err.errno in (errno.ENOSYS, errno.EPERM)
    return False


pytestmark = pytest.mark.skipif(_no_io_uring(), reason="io_uring is not available here")


def test_worker_read_fills_the_buffer_and_returns_its_length(buffer: mmap.mmap) -> None:
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        assert iouring.worker_read(fd, _address(buffer), len(buffer)) == len(buffer)
    finally:
        os.close(fd)
    assert buffer[:] == bytes(len(buffer))


def test_worker_read_of_a_bad_fd_raises_ebadf(buffer: mmap.mmap) -> None:
    # Not a just-closed fd: the ring's own fd would take its number.
    with pytest.raises(OSError) as err:
        iouring.worker_read(-1, _address(buffer), len(buffer))
    assert err.value.errno == errno.EBADF
