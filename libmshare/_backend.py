"""What differs between real msharefs and the emulation used by host tests.

Three things only: how a region file tells its geometry (``struct mshare_info``), what
the creator must do before its first mmap, and whether region stats exist.  Everything
else (open, mmap at a fixed address, munmap, unlink) is the same system calls on both.

Real msharefs: the first mmap fixes the geometry, and ``pread(fd, 16, 0)`` returns it.

Emulation (``LIBMSHARE_FAKE_MOUNT``, see :mod:`libmshare.fs`): a region is an ordinary
file holding the region's memory in bytes ``[0, size)`` followed by a 16-byte
``struct mshare_info`` trailer.  The creator writes the trailer before mapping, which
also sizes the file so the mapping cannot fault with SIGBUS.  Any file system that
supports shared file mappings works (tmpfs in the tests).  It has no stats: resident
memory, page tables and mappers are the kernel's to count, and numbers made up from
the file would pass for measurements.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

from . import _libc
from .errors import NotSupportedError, from_errno, from_oserror
from .stats import RegionStats, read_stats

__all__ = ["Backend", "EmulatedBackend", "MsharefsBackend", "backend_for"]


class Backend(Protocol):
    def establish(self, fd: int, start: int, size: int, path: str) -> None:
        """Prepare a freshly created region file for its first mmap."""

    def read_info(self, fd: int, path: str) -> tuple[int, int] | None:
        """(start, size) of an established region, or None before its first mmap."""

    def read_stats(self, fd: int, path: str) -> RegionStats:
        """The region's stats; :class:`NotSupportedError` where there are none."""


class MsharefsBackend:
    def establish(self, fd: int, start: int, size: int, path: str) -> None:
        # The kernel fixes the geometry at the first mmap; nothing to do before it.
        pass

    def read_info(self, fd: int, path: str) -> tuple[int, int] | None:
        info = _libc.read_mshare_info(fd, path)
        return None if info is None else (info.start, info.size)

    def read_stats(self, fd: int, path: str) -> RegionStats:
        return read_stats(fd, path)


class EmulatedBackend:
    def establish(self, fd: int, start: int, size: int, path: str) -> None:
        trailer = bytes(_libc.MshareInfo(start, size))
        try:
            os.pwrite(fd, trailer, size)
        except OSError as e:
            raise from_oserror(e, "create", path) from None

    def read_info(self, fd: int, path: str) -> tuple[int, int] | None:
        n = _libc.MSHARE_INFO_SIZE
        try:
            length = os.fstat(fd).st_size
            if length == 0:
                return None
            raw = os.pread(fd, n, length - n) if length >= n else b""
        except OSError as e:
            raise from_oserror(e, "read mshare_info", path) from None
        info = _libc.MshareInfo.from_buffer_copy(raw) if len(raw) == n else None
        if info is None or info.size + n != length:
            raise from_errno(errno.EIO, "read mshare_info", path, "not an emulated region")
        return info.start, info.size

    def read_stats(self, fd: int, path: str) -> RegionStats:
        raise NotSupportedError(
            errno.EOPNOTSUPP, "stats: not available on an emulated mount "
            "(LIBMSHARE_FAKE_MOUNT): only the kernel counts a region's memory", path,
        )


def backend_for(emulated: bool) -> Backend:
    return EmulatedBackend() if emulated else MsharefsBackend()
