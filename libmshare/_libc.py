"""The binding layer: the few libc calls, constants and uapi structs msharefs needs.

Nothing here knows about names, mounts or regions; every failure becomes an
exception from :mod:`libmshare.errors` with errno preserved.  ``open``/``pread``/
``close`` come from :mod:`os` and ``ioctl`` from :mod:`fcntl`; only what they and
:mod:`mmap` cannot do goes through ctypes (a mapping at a caller-chosen address,
``mount(2)``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat

from .errors import (
    MshareError,
    MshareValueError,
    NotSupportedError,
    RegionEstablishedError,
    from_errno,
    from_oserror,
)

__all__ = [
    "MAP_ANONYMOUS",
    "MAP_FAILED",
    "MAP_FIXED",
    "MAP_FIXED_NOREPLACE",
    "MAP_NORESERVE",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "MNT_DETACH",
    "MSHARE_F_ALL",
    "MSHARE_F_HUGE",
    "MSHARE_GET_FLAGS",
    "MSHARE_GET_STATS",
    "MSHARE_INFO_SIZE",
    "MSHARE_SET_FLAGS",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "MshareInfo",
    "MshareStats",
    "check_flags",
    "describe_flags",
    "get_flags",
    "get_stats",
    "mmap",
    "mount",
    "munmap",
    "read_mshare_info",
    "set_flags",
    "set_flags_error",
    "umount2",
]

# <asm-generic/mman-common.h>, <linux/mman.h>: identical on x86_64 and arm64.
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000  # Linux 4.17+
MNT_DETACH = 0x2

# (void *)-1 as an unsigned word: mmap's result is taken as c_size_t, not c_void_p, since
# ctypes turns a c_void_p of 0 into None, and 0 is a valid result of a MAP_FIXED mapping.
MAP_FAILED = ctypes.c_size_t(-1).value


class MshareInfo(ctypes.Structure):
    """``struct mshare_info { unsigned long start; unsigned long size; }``."""

    _fields_ = [("start", ctypes.c_ulong), ("size", ctypes.c_ulong)]

    def __repr__(self) -> str:
        return f"MshareInfo(start={self.start:#x}, size={self.size:#x})"


MSHARE_INFO_SIZE = ctypes.sizeof(MshareInfo)


class MshareStats(ctypes.Structure):
    """``struct mshare_stats`` of <linux/mshare.h>: eight ``__u64``, 64 bytes."""

    _fields_ = [
        ("start", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("resident", ctypes.c_uint64),
        ("swapped", ctypes.c_uint64),
        ("pmd_mapped", ctypes.c_uint64),
        ("page_tables", ctypes.c_uint64),
        ("nr_mappers", ctypes.c_uint64),
        ("memcg_id", ctypes.c_uint64),
    ]


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    # <asm-generic/ioctl.h> (x86_64, arm64): dir in bits 30-31 (1 = write, 2 = read),
    # size in bits 16-29, type in bits 8-15, number in bits 0-7.
    return (direction << 30) | (size << 16) | (kind << 8) | nr


def _ior(kind: int, nr: int, size: int) -> int:
    return _ioc(2, kind, nr, size)


def _iow(kind: int, nr: int, size: int) -> int:
    return _ioc(1, kind, nr, size)


MSHARE_GET_STATS = _ior(0xB9, 0x00, ctypes.sizeof(MshareStats))

# Region flags (series v6): chosen before the region's first mmap, fixed after it.
MSHARE_F_HUGE = 1 << 0  # 2 MiB pages where there are (4 KiB otherwise, silently)
MSHARE_F_ALL = MSHARE_F_HUGE
MSHARE_SET_FLAGS = _iow(0xB9, 0x01, ctypes.sizeof(ctypes.c_uint64))
MSHARE_GET_FLAGS = _ior(0xB9, 0x02, ctypes.sizeof(ctypes.c_uint64))
_FLAG_NAMES = {MSHARE_F_HUGE: "huge"}
_V6 = "(older than series v6)"
_U64_MAX = (1 << 64) - 1

# dlopen(NULL): the interpreter's own global namespace, which includes the libc it was
# linked against (glibc or musl) without guessing a soname.
_libc = ctypes.CDLL(None, use_errno=True)

_mmap = _libc.mmap
_mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
]
_mmap.restype = ctypes.c_size_t

_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_munmap.restype = ctypes.c_int

_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p
]
_mount.restype = ctypes.c_int

_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int


def _span(addr: int, length: int) -> str:
    return f"{addr:#x}-{addr + length:#x}"


def mmap(
    addr: int, length: int, prot: int, flags: int, fd: int, offset: int = 0,
    *, path: str | None = None,
) -> int:
    """mmap(2); returns the mapped address.

    With ``MAP_FIXED_NOREPLACE`` a kernel older than 4.17 treats the address as a
    hint; a mapping that lands elsewhere is undone and reported instead of being
    returned, so callers can rely on "exactly there or an exception".
    """
    res = _mmap(addr or None, length, prot, flags, fd, offset)
    if res == MAP_FAILED:
        err = ctypes.get_errno()
        what = "already in use" if err == errno.EEXIST else "requested"
        raise from_errno(err, "mmap", path, f"window {_span(addr, length)} {what}")
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and res != addr:
        _munmap(res, length)
        raise MshareError(
            0, f"mmap: kernel ignored MAP_FIXED_NOREPLACE (needs Linux 4.17+): asked for "
            f"{addr:#x}, got {res:#x}", path,
        )
    return int(res)


def munmap(addr: int, length: int) -> None:
    if _munmap(addr, length) != 0:
        err = ctypes.get_errno()
        raise from_errno(err, "munmap", None, f"window {_span(addr, length)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    raw = None if data is None else ctypes.c_char_p(os.fsencode(data))
    if _mount(os.fsencode(source), os.fsencode(target), os.fsencode(fstype), flags, raw) != 0:
        raise from_errno(ctypes.get_errno(), "mount", target, f"type {fstype}")


def umount2(target: str, flags: int = 0) -> None:
    if _umount2(os.fsencode(target), flags) != 0:
        raise from_errno(ctypes.get_errno(), "umount", target)


def read_mshare_info(fd: int, path: str | None = None) -> MshareInfo | None:
    """pread the 16-byte struct at offset 0; None if the region is not established.

    The contract: before the first mmap every read gives 0 bytes, afterwards pread at
    offset 0 gives the whole struct.  Anything in between is a kernel bug, reported
    as EIO rather than guessed at.
    """
    try:
        raw = os.pread(fd, MSHARE_INFO_SIZE, 0)
    except OSError as e:
        raise from_oserror(e, "read mshare_info", path) from None
    if not raw:
        return None
    if len(raw) != MSHARE_INFO_SIZE:
        raise from_errno(
            errno.EIO, "read mshare_info", path, f"got {len(raw)} bytes, expected {MSHARE_INFO_SIZE}"
        )
    return MshareInfo.from_buffer_copy(raw)


def _ioctl_error(
    e: OSError, op: str, fd: int, lacks: str, path: str | None
) -> MshareError:
    """The exception for an msharefs ioctl failing with ``e`` on ``fd``.

    ENOTTY from a region file means a kernel whose msharefs predates the ioctl, which
    gets a :class:`NotSupportedError` saying so (errno ENOTTY kept); from anything
    else (a directory) it is the plain answer to a wrong descriptor.
    """
    if e.errno == errno.ENOTTY and stat.S_ISREG(os.fstat(fd).st_mode):
        return NotSupportedError(
            errno.ENOTTY, f"{op}: the running kernel's msharefs lacks {lacks}", path
        )
    return from_oserror(e, op, path)


def get_stats(fd: int, path: str | None = None) -> MshareStats:
    """ioctl(fd, MSHARE_GET_STATS): what the region open on ``fd`` holds and costs now."""
    stats = MshareStats()
    try:
        fcntl.ioctl(fd, MSHARE_GET_STATS, stats)
    except OSError as e:
        raise _ioctl_error(
            e, "stats", fd, "MSHARE_GET_STATS (it predates region stats)", path
        ) from None
    return stats


def describe_flags(flags: int) -> str:
    """Region flags for messages: ``"huge"``, ``"no flags"``, unknown bits in hex."""
    names = [n for bit, n in _FLAG_NAMES.items() if flags & bit]
    if flags & ~MSHARE_F_ALL:
        names.append(f"unknown bits {flags & ~MSHARE_F_ALL:#x}")
    return "+".join(names) or "no flags"


def check_flags(flags: int) -> int:
    """``flags`` if it is a set of known region flags; else the error naming the bits."""
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise TypeError(f"region flags must be an int, not {type(flags).__name__}")
    if not 0 <= flags <= _U64_MAX:
        raise MshareValueError(f"region flags {flags} are not a 64-bit unsigned value")
    if flags & ~MSHARE_F_ALL:
        raise MshareValueError(
            f"region flags {flags:#x} have {describe_flags(flags)} (known: "
            f"MSHARE_F_HUGE {MSHARE_F_HUGE:#x})"
        )
    return flags


def _writable(fd: int) -> bool | None:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except OSError:
        return None  # not an open descriptor at all


def set_flags_error(e: OSError, fd: int, flags: int, path: str | None) -> MshareError:
    """The exception for MSHARE_SET_FLAGS failing with ``e`` (the emulated mount's too)."""
    what = describe_flags(flags)
    if e.errno == errno.EBUSY:
        return RegionEstablishedError(
            errno.EBUSY, f"{what}: the region is established already; choose before its "
            "first mmap", path,
        )
    if e.errno == errno.EINVAL:
        return MshareError(
            errno.EINVAL, f"set flags: the kernel does not know flags {flags:#x} ({what})",
            path,
        )
    if e.errno == errno.EBADF and _writable(fd) is False:
        return MshareError(
            errno.EBADF, f"{what}: the region is open read-only; its flags are set through "
            "a descriptor open for writing", path,
        )
    return _ioctl_error(e, "set flags", fd, f"MSHARE_SET_FLAGS {_V6}", path)


def set_flags(fd: int, flags: int, path: str | None = None) -> None:
    """ioctl(fd, MSHARE_SET_FLAGS, &flags): choose the flags of the region open on ``fd``.

    Only before the region's first mmap (later: :class:`RegionEstablishedError`,
    EBUSY) and through a descriptor open for writing (EBADF otherwise).  Unknown bits
    are refused before the call (:class:`MshareValueError`).
    """
    value = ctypes.c_uint64(check_flags(flags))
    try:
        fcntl.ioctl(fd, MSHARE_SET_FLAGS, value)
    except OSError as e:
        raise set_flags_error(e, fd, flags, path) from None


def get_flags(fd: int, path: str | None = None) -> int:
    """ioctl(fd, MSHARE_GET_FLAGS): the flags of the region open on ``fd`` (any mode)."""
    value = ctypes.c_uint64()
    try:
        fcntl.ioctl(fd, MSHARE_GET_FLAGS, value)
    except OSError as e:
        raise _ioctl_error(e, "get flags", fd, f"MSHARE_GET_FLAGS {_V6}", path) from None
    return value.value
