"""Exceptions raised by libmshare.

Two families, kept apart on purpose:

* ``MshareError`` (an ``OSError``) is raised when the kernel or the file system
  refused something.  ``errno`` is always set.  Each precise subclass also derives
  from the builtin that Python itself would raise for that errno, so code written
  for plain files (``except FileExistsError``) keeps working.
* ``MshareValueError`` (a ``ValueError``) is raised before any system call when an
  argument or a kernel-provided text is malformed.  Its message names the offending
  value (and the alignment, where one applies).  These are not ``OSError``: a bad
  argument is a bug in the caller, not a condition of the system to retry or log.

``RegionClosedError`` is a ``ValueError`` like the one ``mmap.mmap`` and file objects
raise when used after ``close()``.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AddressInUseError",
    "AddressRangeError",
    "AlignmentError",
    "AtomicUnavailableError",
    "MisalignedError",
    "MshareError",
    "MshareInfoError",
    "MsharePermissionError",
    "MshareValueError",
    "NotARegionError",
    "NotMountedError",
    "NotSupportedError",
    "RegionClosedError",
    "RegionEstablishedError",
    "RegionExistsError",
    "RegionLimitError",
    "RegionNameError",
    "RegionNotEstablishedError",
    "RegionNotFoundError",
    "SizeSyntaxError",
    "from_errno",
    "from_oserror",
]


class MshareError(OSError):
    """An operation on msharefs failed in the kernel; ``errno`` says why."""


class RegionExistsError(MshareError, FileExistsError):
    """The region name is taken (EEXIST from ``open(O_CREAT|O_EXCL)`` or ``mkdir``)."""


class RegionNotFoundError(MshareError, FileNotFoundError):
    """No region, directory or mount point by that name (ENOENT)."""


class MsharePermissionError(MshareError, PermissionError):
    """The caller may not do this (EACCES or EPERM)."""


class AddressInUseError(MshareError, FileExistsError):
    """``MAP_FIXED_NOREPLACE`` found something already mapped in the window (EEXIST)."""


class NotARegionError(MshareError, IsADirectoryError):
    """The name is a directory inside msharefs, not a region (EISDIR)."""


class NotSupportedError(MshareError):
    """The running kernel has no msharefs (ENODEV), or the msharefs here cannot do what
    was asked: ENOTTY for region stats or flags (huge pages) on a kernel that predates
    ``MSHARE_GET_STATS`` or ``MSHARE_SET_FLAGS``, EOPNOTSUPP for stats on the emulated
    mount of the tests."""


class NotMountedError(MshareError, FileNotFoundError):
    """msharefs exists in the kernel but is not mounted, or a path is no msharefs mount."""


class RegionNotEstablishedError(MshareError):
    """The region file exists but its creator has not mapped it yet (ENODATA)."""


class RegionEstablishedError(MshareError):
    """The region's first mmap fixed what was asked to change (EBUSY): its flags, such
    as huge pages, are chosen between creating the file and that mmap."""


class RegionLimitError(MshareError):
    """A limit of the msharefs instance is reached (ENOSPC): ``max_regions`` when a
    region is created, ``max_size`` when one is established (its first mmap).  The
    message names the limit; freeing regions (unlink, last close/munmap) or raising it
    (``mount -o remount,max_regions=N,max_size=S``) makes room."""


class MshareValueError(ValueError):
    """A value was rejected before any system call was made."""


class AlignmentError(MshareValueError):
    """A start address or size is not a positive multiple of the alignment unit."""


class AddressRangeError(MshareValueError):
    """A window does not fit in the user address space."""


class RegionNameError(MshareValueError):
    """A region name is empty, escapes the mount, or has a forbidden component."""


class MshareInfoError(MshareValueError):
    """The text of ``mshare_info`` is not a decimal power of two and a newline."""


class SizeSyntaxError(MshareValueError):
    """A human-readable size or address could not be parsed."""


class MisalignedError(MshareValueError):
    """An atomic operation was asked for at an address that is not a multiple of its width."""


class AtomicUnavailableError(ImportError):
    """:mod:`libmshare.atomic` needs its C extension, which this installation lacks."""


class RegionClosedError(MshareValueError):
    """The region was closed; its memory is no longer mapped in this process."""


# errno -> exception class for every errno with a precise meaning here.  Errnos not in
# the table still raise MshareError, with errno set.
_BY_ERRNO: dict[int, type[MshareError]] = {
    _errno.EEXIST: RegionExistsError,
    _errno.ENOENT: RegionNotFoundError,
    _errno.EACCES: MsharePermissionError,
    _errno.EPERM: MsharePermissionError,
    _errno.EISDIR: NotARegionError,
    _errno.ENODEV: NotSupportedError,
    _errno.ENODATA: RegionNotEstablishedError,
    _errno.ENOSPC: RegionLimitError,
}

# Operations whose EEXIST means "address range taken", not "name taken".
_MAP_OPS = frozenset({"mmap"})

# The msharefs limit an ENOSPC of each operation means: creating a region counts against
# max_regions, its first mmap (establishing it) against max_size.
_LIMIT_OF_OP = {"create": "max_regions", "mmap": "max_size"}


def from_errno(
    err: int, op: str, path: str | None = None, detail: str | None = None
) -> MshareError:
    """Build the exception for ``err`` raised by operation ``op`` on ``path``.

    The message reads ``"<op>: <strerror>[ (<detail>)]"`` and ``filename`` is ``path``,
    so ``str()`` gives e.g. ``[Errno 17] create: File exists: '/sys/fs/mshare/db'``.
    """
    cls: type[MshareError]
    if err == _errno.EEXIST and op in _MAP_OPS:
        cls = AddressInUseError
    else:
        cls = _BY_ERRNO.get(err, MshareError)
    text = f"{op}: {os.strerror(err)}"
    if err == _errno.ENOSPC and op in _LIMIT_OF_OP:
        text = f"{text}: msharefs {_LIMIT_OF_OP[op]} limit reached"
    if detail:
        text = f"{text} ({detail})"
    if path is None:
        return cls(err, text)
    return cls(err, text, path)


def from_oserror(e: OSError, op: str, path: str | None = None) -> MshareError:
    """:func:`from_errno` for an ``OSError`` raised by :mod:`os` (EIO if it has none)."""
    return from_errno(e.errno if e.errno is not None else _errno.EIO, op, path)
