"""What differs between real msharefs and the emulation used by host tests.

Four things only: how a region file tells its geometry (``struct mshare_info``), what
the creator must do before its first mmap, where the region's flags (huge pages) are
kept, and whether region stats exist.  Everything
else (open, mmap at a fixed address, munmap, unlink) is the same system calls on both.

Real msharefs: the first mmap fixes the geometry, and ``pread(fd, 16, 0)`` returns it.

Emulation (``LIBMSHARE_FAKE_MOUNT``, see :mod:`libmshare.fs`): a region is an ordinary
file holding the region's memory in bytes ``[0, size)`` followed by a 16-byte
``struct mshare_info`` trailer.  The creator writes the trailer before mapping, which
also sizes the file so the mapping cannot fault with SIGBUS.  Any file system that
supports shared file mappings works (tmpfs in the tests).  It has no stats: resident
memory, page tables and mappers are the kernel's to count, and numbers made up from
the file would pass for measurements.  Flags are kept in a ``user.mshare.flags``
xattr (a little-endian ``__u64``) and refused as the kernel refuses them: EBUSY once
the trailer is written, EBADF through a read-only descriptor.  A huge region there
is what the kernel makes when no 2 MiB pages are to be had: the flag is kept and
reported, the memory is 4 KiB pages (the file's own).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
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

    def set_flags(self, fd: int, flags: int, path: str) -> None:
        """Choose the region's flags (``MSHARE_F_*``), before its first mmap."""

    def get_flags(self, fd: int, path: str) -> int:
        """The region's flags (``MSHARE_F_*``)."""


class MsharefsBackend:
    def establish(self, fd: int, start: int, size: int, path: str) -> None:
        # The kernel fixes the geometry at the first mmap; nothing to do before it.
        pass

    def read_info(self, fd: int, path: str) -> tuple[int, int] | None:
        info = _libc.read_mshare_info(fd, path)
        return None if info is None else (info.start, info.size)

    def read_stats(self, fd: int, path: str) -> RegionStats:
        return read_stats(fd, path)

    def set_flags(self, fd: int, flags: int, path: str) -> None:
        _libc.set_flags(fd, flags, path)

    def get_flags(self, fd: int, path: str) -> int:
        return _libc.get_flags(fd, path)


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

    def set_flags(self, fd: int, flags: int, path: str) -> None:
        _libc.check_flags(flags)
        try:
            # The kernel's refusals, in its order: EBADF, then EBUSY (established).
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            if os.fstat(fd).st_size:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        except OSError as e:
            raise _libc.set_flags_error(e, fd, flags, path) from None
        try:
            os.setxattr(fd, _FLAGS_XATTR, struct.pack("<Q", flags))
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                raise NotSupportedError(
                    e.errno, "set flags: the emulated mount keeps flags in user xattrs, "
                    "which its file system does not support", path,
                ) from None
            raise from_oserror(e, "set flags", path) from None

    def get_flags(self, fd: int, path: str) -> int:
        try:
            raw = os.getxattr(fd, _FLAGS_XATTR)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
                return 0  # never set (or could not have been: no user xattrs here)
            raise from_oserror(e, "get flags", path) from None
        if len(raw) != 8:
            raise from_errno(errno.EIO, "get flags", path, f"{_FLAGS_XATTR} is not 8 bytes")
        flags: int = struct.unpack("<Q", raw)[0]
        return flags


_FLAGS_XATTR = "user.mshare.flags"


def backend_for(emulated: bool) -> Backend:
    return EmulatedBackend() if emulated else MsharefsBackend()
