"""Regions: create, attach, close, unlink, list and stat msharefs regions by name.

The shape follows ``multiprocessing.shared_memory.SharedMemory``: ``name``, ``size``,
``buf``, ``close()``, ``unlink()``.  The differences come from msharefs itself:

* ``size`` is a multiple of the alignment unit (512 GiB on x86_64).  Ask for a byte
  count with ``round_up=True`` and read it back from ``requested_size``.
* Every process maps the region at the same address, ``start``, and a process maps a
  region once: every :class:`Region` object of a process for one region is a handle on
  that one mapping, which is unmapped when the last handle is closed
  (:mod:`libmshare._mapping`).
* ``close()`` raises ``BufferError`` while slices or other views of that handle's
  ``buf`` exist (as ``mmap.mmap.close`` does); after ``close()``, ``buf`` raises
  :class:`~libmshare.errors.RegionClosedError`.  A reference to ``buf`` itself is
  fine: it is released, as ``SharedMemory.close()`` releases its ``buf``.
* Closing never destroys data: a region lives until it is unlinked.

A ``Region`` pickles as a reference to the region: unpickled in a process that maps
it already (``copy.deepcopy``, a ``Queue``, a ``fork`` pool worker) it is one more
handle on that mapping; elsewhere (``spawn``) it attaches the region by name.

``create(..., huge=True)`` asks for 2 MiB pages (tmpfs THP mapped by PMD leaves in the
region's own page tables).  Where there are none (THP off, shmem THP denied, memory too
fragmented) the kernel silently uses 4 KiB pages instead, reserving nothing:
``Region.huge`` says what was asked, ``stats().pmd_mapped`` what was had.
"""

from __future__ import annotations

import contextlib
import errno
import math
import operator
import os
import stat as _stat
import time
import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self

from . import _libc, _mapping
from ._backend import Backend, backend_for
from ._modes import FileMode, check_mode
from ._names import validate_name
from ._view import MappedView
from .addrspace import check_size, check_window, find_free_window
from .errors import (
    AddressInUseError,
    MshareError,
    MshareValueError,
    NotARegionError,
    NotSupportedError,
    RegionClosedError,
    RegionExistsError,
    RegionNotEstablishedError,
    RegionNotFoundError,
    from_errno,
    from_oserror,
)
from .fs import INFO_FILE, Mount, read_alignment, resolve_mount
from .sizes import format_size
from .stats import RegionStats

__all__ = [
    "DEFAULT_TIMEOUT",
    "Region",
    "RegionInfo",
    "attach",
    "create",
    "list_regions",
    "mkdir",
    "rmdir",
    "stat",
    "unlink",
]

#: Seconds that attaching waits for a region's creator to map it (its first mmap).
DEFAULT_TIMEOUT = 10.0
# Attempts at picking a window when another thread keeps mapping into our choice.
_PICK_ATTEMPTS = 4
# Polling a region that is being established: from 1 ms, doubling, to at most 200 ms.
# Not faster: with dozens of waiters, polling at 50 ms took the CPU from the creator
# they wait for (64 processes in a loaded TCG guest).
_FIRST_POLL = 0.001
_MAX_POLL = 0.2


@dataclass(frozen=True)
class RegionInfo:
    """A region as ``ls``/``stat`` see it, without mapping it.

    ``established`` is True once the creator's first mmap fixed the region's start
    and size, False while it has not, and None when this user may not open the file
    to find out.  ``start`` and ``size`` are None unless it is True.  ``mode`` is the
    file's permission bits (an ``int`` shown in octal).  ``stats`` is what the region
    holds and costs now (:class:`~libmshare.stats.RegionStats`), None where it cannot be
    read: no permission to open the file, the emulated mount of the tests, or a kernel
    without ``MSHARE_GET_STATS``.  ``huge`` is True if the region asked for 2 MiB pages
    (see :attr:`Region.huge`), None when this user may not open the file.
    """

    name: str
    path: str
    start: int | None
    size: int | None
    mode: int
    uid: int
    gid: int
    established: bool | None
    stats: RegionStats | None = None
    huge: bool | None = None


def _open(path: str, flags: int, op: str, mode: int = 0) -> int:
    try:
        return os.open(path, flags, mode)
    except OSError as e:
        raise from_oserror(e, op, path) from None


def _key(fd: int) -> _mapping.Key:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise MshareValueError(f"timeout {timeout!r} must be a number of seconds >= 0")
    return float(timeout)


class _Replaced(Exception):
    """The name no longer refers to the file we opened (its creator gave up on it)."""


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == _key(fd)


def _wait_geometry(
    backend: Backend, fd: int, path: str, op: str, deadline: float, timeout: float
) -> tuple[int, int]:
    """(start, size), waiting until ``deadline`` for the creator's first mmap."""
    delay = _FIRST_POLL
    while True:
        geometry = backend.read_info(fd, path)
        if geometry is not None:
            return geometry
        left = deadline - time.monotonic()
        if left <= 0:
            raise RegionNotEstablishedError(
                errno.ENODATA,
                f"{op}: the region was not established within {timeout:g} s (its creator "
                "made the file but has not mapped it: still starting, or it died; a "
                "region that stays like this can only be unlinked)",
                path,
            )
        if not _same_file(fd, path):
            raise _Replaced
        time.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_POLL)


def _check_huge(huge: bool) -> bool:
    if not isinstance(huge, bool):
        raise TypeError(f"huge must be True or False, not {type(huge).__name__}")
    return huge


def _read_huge(backend: Backend, fd: int, path: str) -> bool:
    """Whether the region open on ``fd`` asked for 2 MiB pages, as the kernel says."""
    try:
        flags = backend.get_flags(fd, path)
    except NotSupportedError as e:
        if e.errno != errno.ENOTTY:
            raise
        return False  # a kernel older than MSHARE_GET_FLAGS has no huge regions
    return bool(flags & _libc.MSHARE_F_HUGE)


def _huge_of(backend: Backend, fd: int, path: str, mapping: _mapping.FixedMapping) -> bool:
    """:func:`_read_huge` for a region just mapped; lets go of ``mapping`` on failure.

    Read once per handle: a mapped region is established, so its flags are fixed.
    """
    try:
        return _read_huge(backend, fd, path)
    except BaseException:
        _mapping.release(mapping)
        raise


def _size_mismatch(
    path: str, have: tuple[int, int], size: int, start: int | None
) -> NoReturn:
    want = f"{start:#x}" if start is not None else "any start"
    raise RegionExistsError(
        errno.EEXIST,
        f"create: region exists at {have[0]:#x} with size {format_size(have[1])}, not "
        f"{want} with size {format_size(size)}",
        path,
    )


def _map_existing(
    backend: Backend, fd: int, path: str, op: str, *, readonly: bool, deadline: float,
    timeout: float, want: tuple[int, int | None] | None = None,
) -> _mapping.FixedMapping:
    """This process's mapping of the region open on ``fd``: shared, or made now."""
    key = _key(fd)
    m = _mapping.acquire(key, readonly=readonly, path=path)
    if m is None:
        start, size = _wait_geometry(backend, fd, path, op, deadline, timeout)
    else:
        start, size = m.start, m.size
    if want is not None and (size != want[0] or want[1] not in (None, start)):
        if m is not None:
            _mapping.release(m)
        _size_mismatch(path, (start, size), *want)
    if m is not None:
        return m
    return _mapping.map_fixed(fd, start, size, readonly=readonly, key=key, path=path)


class Region:
    """A handle on a mapped msharefs region.  Get one from :meth:`create` or :meth:`attach`.

    Attributes: ``name``, ``path``, ``mount``, ``start``, ``size``, ``requested_size``,
    ``huge``, ``readonly``, ``closed``, ``buf``.  Close it (or use ``with``): a region dropped
    unclosed emits ``ResourceWarning``, like a file.
    """

    _view: MappedView | None = None
    _name: str
    _mount: Mount
    _requested_size: int
    _huge: bool

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use Region.create() or Region.attach() to get a Region")

    @classmethod
    def _from_mapping(
        cls, name: str, mount: Mount, mapping: _mapping.FixedMapping, requested_size: int,
        *, readonly: bool, huge: bool,
    ) -> Region:
        self = cls.__new__(cls)
        try:
            self._view = MappedView(mapping, readonly=readonly)
        except BaseException:
            _mapping.release(mapping)
            raise
        self._name = name
        self._mount = mount
        self._requested_size = requested_size
        self._huge = huge
        return self

    # -- constructors -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        start: int | None = None,
        round_up: bool = False,
        mode: int = FileMode(0o600),
        exist_ok: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        huge: bool = False,
        mount: str | None = None,
    ) -> Region:
        """Create region ``name`` of ``size`` bytes, map it and return a handle on it.

        ``size`` must be a multiple of the alignment unit unless ``round_up`` is true;
        ``requested_size`` keeps the number asked for.  ``start`` (aligned) fixes the
        address; by default a free window is picked from this process's address map.
        ``mode`` (0 to 0o777) is applied exactly: the umask does not narrow it.

        ``huge=True`` asks for 2 MiB pages (``MSHARE_F_HUGE``, set before the first
        mmap).  Where the kernel has none to give it uses 4 KiB pages, silently and
        without reserving any: ``stats().pmd_mapped`` tells.  A kernel older than
        series v6 refuses it (``NotSupportedError``, ENOTTY); the emulated mount keeps
        the flag and, having no 2 MiB pages, falls back.

        If ``name`` exists: ``RegionExistsError``, or with ``exist_ok=True`` the
        existing region is attached instead, provided its size (and ``start``, if
        given) match; if its creator has not mapped it yet, this waits up to
        ``timeout`` seconds for that (see :meth:`attach`).  Its flags are its
        creator's, whatever ``huge`` says (as a fallback would be): see ``huge``.
        """
        m = resolve_mount(mount)
        rel = validate_name(name, m.path)
        path = os.path.join(m.path, rel)
        requested = operator.index(size)
        mode = check_mode(mode)
        timeout = _check_timeout(timeout)
        huge = _check_huge(huge)
        align = read_alignment(m.path)
        if round_up and requested > 0:
            size = -(-requested // align) * align
        else:
            size = requested
        check_size(size, align)
        if start is not None:
            start = operator.index(start)
            check_window(start, size, align)
        backend = backend_for(m.emulated)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                if not exist_ok:
                    raise from_errno(errno.EEXIST, "create", path) from None
            except OSError as e:
                raise from_oserror(e, "create", path) from None
            else:
                return cls._create_new(rel, m, backend, fd, path, size, align, start,
                                       mode, requested, huge)
            # Someone else's region, maybe being created right now.
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # its creator gave up and removed it: try to create it again
            except OSError as e:
                raise from_oserror(e, "create", path) from None
            try:
                mapping = _map_existing(backend, fd, path, "create", readonly=False,
                                        deadline=deadline, timeout=timeout,
                                        want=(size, start))
                is_huge = _huge_of(backend, fd, path, mapping)
            except _Replaced:
                continue
            finally:
                os.close(fd)
            return cls._from_mapping(rel, m, mapping, min(requested, size), readonly=False,
                                     huge=is_huge)

    @classmethod
    def _create_new(
        cls, rel: str, m: Mount, backend: Backend, fd: int, path: str, size: int,
        align: int, start: int | None, mode: int, requested: int, huge: bool,
    ) -> Region:
        try:
            os.fchmod(fd, mode)
            if huge:  # not set otherwise: a region without flags needs no v6 kernel
                backend.set_flags(fd, _libc.MSHARE_F_HUGE, path)
            mapping = _map_new(backend, fd, path, size, align, start)
        except BaseException:
            # The name is ours (O_EXCL) and holds nothing yet: leave no debris.
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)
        # Its flags are the ones set just above: no need to ask the kernel back.
        return cls._from_mapping(rel, m, mapping, requested, readonly=False, huge=huge)

    @classmethod
    def attach(
        cls, name: str, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT,
        mount: str | None = None,
    ) -> Region:
        """Map existing region ``name`` at its start address and return a handle on it.

        ``readonly=True`` opens it O_RDONLY and maps it PROT_READ: ``buf`` is then a
        read-only memoryview, and writing through it raises ``TypeError``.  If this
        process maps the region already (another handle, or inherited over ``fork``),
        the new handle shares that mapping.  A region whose creator has not mapped it
        yet is waited for, up to ``timeout`` seconds (0: not at all), then
        ``RegionNotEstablishedError``.
        """
        m = resolve_mount(mount)
        rel = validate_name(name, m.path)
        path = os.path.join(m.path, rel)
        timeout = _check_timeout(timeout)
        backend = backend_for(m.emulated)
        deadline = time.monotonic() + timeout
        while True:
            fd = _open(path, os.O_RDONLY if readonly else os.O_RDWR, "attach")
            try:
                mapping = _map_existing(backend, fd, path, "attach", readonly=readonly,
                                        deadline=deadline, timeout=timeout)
                is_huge = _huge_of(backend, fd, path, mapping)
            except _Replaced:
                continue  # removed and maybe made again while we waited: by name again
            finally:
                os.close(fd)
            return cls._from_mapping(rel, m, mapping, mapping.size, readonly=readonly,
                                     huge=is_huge)

    # -- properties ---------------------------------------------------------------

    def _handle(self) -> MappedView:
        assert self._view is not None
        return self._view

    @property
    def name(self) -> str:
        """The name relative to the mount, e.g. ``"app/db"``."""
        return self._name

    @property
    def mount(self) -> str:
        """The mount point this region lives under."""
        return self._mount.path

    @property
    def path(self) -> str:
        """The region file's absolute path."""
        return os.path.join(self._mount.path, self._name)

    @property
    def start(self) -> int:
        """The address at which every process maps the region."""
        return self._handle().start

    @property
    def size(self) -> int:
        """The mapped size: a multiple of the alignment unit."""
        return self._handle().size

    @property
    def requested_size(self) -> int:
        """The size the creator asked for (``<= size``); ``size`` for attachers."""
        return self._requested_size

    @property
    def huge(self) -> bool:
        """True if the region asked for 2 MiB pages (``MSHARE_F_HUGE``), as the kernel says.

        What was asked, not what was had: where no 2 MiB pages were to be had the
        kernel used 4 KiB pages silently; ``stats().pmd_mapped`` says how many bytes
        are mapped by 2 MiB leaves.  False on a kernel older than series v6.
        """
        return self._huge

    @property
    def readonly(self) -> bool:
        """True if ``buf`` is read-only (attached with ``readonly=True``)."""
        return self._handle().readonly

    @property
    def closed(self) -> bool:
        """True once :meth:`close` succeeded."""
        return self._handle().closed

    @property
    def buf(self) -> memoryview:
        """Zero-copy view of the whole region (format ``B``); read-only if attached so.

        Raises :class:`~libmshare.errors.RegionClosedError` after :meth:`close`.
        """
        return self._handle().buf

    def stats(self) -> RegionStats:
        """What the region holds and costs now (resident memory, page tables, mappers...).

        Read from the kernel through the region's name, which must still be this
        region: ``RegionNotFoundError`` once it is unlinked, ``MshareError`` (ESTALE)
        if the name now belongs to another region.  ``NotSupportedError`` on a kernel
        without ``MSHARE_GET_STATS`` (ENOTTY) and on the emulated mount (EOPNOTSUPP);
        :class:`~libmshare.errors.RegionClosedError` after :meth:`close`.
        """
        view = self._handle()
        if view.closed:
            raise RegionClosedError(f"region {self._name!r} is closed; stats need an open handle")
        path = self.path
        fd = _open(path, os.O_RDONLY, "stats")
        try:
            if _key(fd) != view.mapping.key:
                raise MshareError(
                    errno.ESTALE, "stats: the region was removed and its name now belongs "
                    "to another region", path,
                )
            return backend_for(self._mount.emulated).read_stats(fd, path)
        finally:
            os.close(fd)

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close this handle; the last handle of the process unmaps the region.

        The data stays until the region is unlinked.  Raises ``BufferError`` (and
        stays open) while slices or other views of this handle's ``buf`` are alive.
        Closing twice is harmless.
        """
        self._handle().close()

    def unlink(self) -> None:
        """Remove the region's name; its memory goes when the last process unmaps it."""
        unlink(self._name, mount=self._mount.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        view = self._view
        if view is None or view.closed:
            return
        warnings.warn(f"unclosed region {self!r}", ResourceWarning, stacklevel=2, source=self)
        view.abandon()

    def __reduce__(self) -> tuple[Any, ...]:
        m = self._handle().mapping
        return (_unpickle, (self._name, self._mount.path, self.readonly,
                            self._requested_size, m.key, m.start, m.size, self._huge))

    def __repr__(self) -> str:
        if self._view is None:
            return "<Region (uninitialised)>"
        state = "closed" if self.closed else "readonly" if self.readonly else "open"
        return (
            f"<Region {self._name!r} start={self.start:#x} size={format_size(self.size)} "
            f"{state}>"
        )


def _map_new(
    backend: Backend, fd: int, path: str, size: int, align: int, start: int | None
) -> _mapping.FixedMapping:
    """The creator's first mmap, which fixes the region's geometry."""
    key = _key(fd)
    for _ in range(_PICK_ATTEMPTS):
        where = start if start is not None else find_free_window(size, align)
        if where is None:
            raise from_errno(
                errno.ENOMEM, "create", path,
                f"no free {format_size(align)}-aligned window of {format_size(size)}",
            )
        backend.establish(fd, where, size, path)
        try:
            return _mapping.map_fixed(fd, where, size, readonly=False, key=key, path=path)
        except AddressInUseError:
            # Our pick raced with another mapping; a caller-chosen start is final.
            if start is not None:
                raise
    raise from_errno(
        errno.EEXIST, "mmap", path, f"every free window was taken while picking "
        f"({_PICK_ATTEMPTS} attempts)",
    )


def _unpickle(
    name: str, mount: str, readonly: bool, requested_size: int, key: _mapping.Key | None,
    start: int, size: int, huge: bool = False,
) -> Region:
    """A handle for a pickled Region: on this process's mapping, or attached by name."""
    m = resolve_mount(mount)
    mapping = _mapping.acquire(key, readonly=readonly) if key is not None else None
    if mapping is not None:
        return Region._from_mapping(name, m, mapping, requested_size, readonly=readonly,
                                    huge=huge)
    region = Region.attach(name, readonly=readonly, mount=mount)
    got = region._handle().mapping
    if key is not None and (got.key, got.start, got.size) != (key, start, size):
        region.close()
        raise MshareError(
            errno.ESTALE, "unpickle: the region was removed and its name now belongs to "
            "another region", region.path,
        )
    region._requested_size = requested_size
    return region


def create(
    name: str,
    size: int,
    *,
    start: int | None = None,
    round_up: bool = False,
    mode: int = FileMode(0o600),
    exist_ok: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    huge: bool = False,
    mount: str | None = None,
) -> Region:
    """Create region ``name`` of ``size`` bytes, map it and return a handle on it.

    ``size`` must be a multiple of the alignment unit unless ``round_up`` is true.
    ``start`` fixes the address (default: a free aligned window).  ``mode`` (0 to
    0o777) is applied exactly, whatever the umask.  ``huge=True`` asks for 2 MiB
    pages; where there are none the kernel uses 4 KiB pages silently (see
    ``Region.huge`` and ``stats().pmd_mapped``).  With ``exist_ok=True`` an existing
    region of the same size (and ``start``, if given) is attached instead, waiting up
    to ``timeout`` seconds for its creator to map it.  See :meth:`Region.create`.
    """
    return Region.create(
        name, size, start=start, round_up=round_up, mode=mode, exist_ok=exist_ok,
        timeout=timeout, huge=huge, mount=mount,
    )


def attach(
    name: str, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT,
    mount: str | None = None,
) -> Region:
    """Map existing region ``name`` at its start address and return a handle on it.

    ``readonly=True`` maps it PROT_READ (writes raise ``TypeError``).  A region that
    its creator has not mapped yet is waited for, up to ``timeout`` seconds.  In a
    process that maps the region already, the handle shares that mapping.  See
    :meth:`Region.attach`.
    """
    return Region.attach(name, readonly=readonly, timeout=timeout, mount=mount)


def _resolve(name: str, mount: str | None) -> tuple[Mount, str]:
    m = resolve_mount(mount)
    return m, validate_name(name, m.path)


def unlink(name: str, *, mount: str | None = None) -> None:
    """Remove region ``name``; processes that map it keep it until they close it."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        os.unlink(path)
    except OSError as e:
        raise from_oserror(e, "unlink", path) from None


def mkdir(
    name: str, mode: int = FileMode(0o700), *, exist_ok: bool = False,
    mount: str | None = None,
) -> str:
    """Create a directory for regions inside msharefs and return its path.

    ``mode`` (0 to 0o777) is applied exactly, whatever the umask, as for
    :func:`create`.  With ``exist_ok=True`` an existing directory is fine (its mode is
    left as it is).
    """
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    mode = check_mode(mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not (exist_ok and os.path.isdir(path)):
            raise from_errno(errno.EEXIST, "mkdir", path) from None
        return path
    except OSError as e:
        raise from_oserror(e, "mkdir", path) from None
    try:
        os.chmod(path, mode)  # the umask narrowed what mkdir(2) made
    except OSError as e:
        raise from_oserror(e, "mkdir", path) from None
    return path


def rmdir(name: str, *, mount: str | None = None) -> None:
    """Remove an empty directory inside msharefs."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        os.rmdir(path)
    except OSError as e:
        raise from_oserror(e, "rmdir", path) from None


def _optional_stats(backend: Backend, fd: int, path: str) -> RegionStats | None:
    try:
        return backend.read_stats(fd, path)
    except NotSupportedError:
        return None  # the emulated mount, or a kernel older than MSHARE_GET_STATS


def _info(rel: str, path: str, backend: Backend, st: os.stat_result) -> RegionInfo:
    geometry: tuple[int, int] | None = None
    stats: RegionStats | None = None
    huge: bool | None = None
    established: bool | None
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        established = None  # listed with its owner and mode; the rest needs read access
    except OSError as e:
        raise from_oserror(e, "stat", path) from None
    else:
        try:
            geometry = backend.read_info(fd, path)
            stats = _optional_stats(backend, fd, path)
            huge = _read_huge(backend, fd, path)
        finally:
            os.close(fd)
        established = geometry is not None
    start, size = geometry if geometry is not None else (None, None)
    return RegionInfo(rel, path, start, size, FileMode(_stat.S_IMODE(st.st_mode)),
                      st.st_uid, st.st_gid, established, stats, huge)


def stat(name: str, *, mount: str | None = None) -> RegionInfo:
    """Describe region ``name`` (a :class:`RegionInfo`) without mapping it."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        st = os.stat(path)
    except OSError as e:
        raise from_oserror(e, "stat", path) from None
    if _stat.S_ISDIR(st.st_mode):
        raise NotARegionError(errno.EISDIR, "stat: is a directory, not a region", path)
    return _info(rel, path, backend_for(m.emulated), st)


def list_regions(*, mount: str | None = None) -> list[RegionInfo]:
    """Every region under the mount, in directories too, sorted by name.

    A subdirectory the caller may not read (another user's mode-0700 directory, say) is
    left out, as ``find`` and :func:`os.walk` leave it out; a mount that cannot be read
    at all raises.
    """
    m = resolve_mount(mount)
    backend = backend_for(m.emulated)
    found: list[RegionInfo] = []

    def walk(rel_dir: str) -> None:
        directory = os.path.join(m.path, rel_dir)
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            # below the top: unreadable, or removed while we listed
            if rel_dir and isinstance(e, (PermissionError, FileNotFoundError)):
                return
            raise from_oserror(e, "list", directory) from None
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                walk(rel)
            elif rel != INFO_FILE and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                    found.append(_info(rel, entry.path, backend, st))
                except (FileNotFoundError, RegionNotFoundError):
                    pass  # unlinked while we listed

    walk("")
    return sorted(found, key=lambda info: info.name)
