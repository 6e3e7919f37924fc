"""Regions: create, attach, close, unlink, list and stat msharefs regions by name.

The shape follows ``multiprocessing.shared_memory.SharedMemory``: ``name``, ``size``,
``buf``, ``close()``, ``unlink()``.  The differences come from msharefs itself:

* ``size`` is a multiple of the alignment unit (512 GiB on x86_64).  Ask for a byte
  count with ``round_up=True`` and read it back from ``requested_size``.
* Every process maps the region at the same address, ``start``.
* ``close()`` raises ``BufferError`` while slices or other views of ``buf`` exist
  (as ``mmap.mmap.close`` does); after ``close()``, ``buf`` raises
  :class:`~libmshare.errors.RegionClosedError`.  A reference to ``buf`` itself is
  fine: it is released, as ``SharedMemory.close()`` releases its ``buf``.
* Closing never destroys data: a region lives until it is unlinked.

A ``Region`` pickles as its name, so passing one to a ``multiprocessing`` child (spawn
or forkserver) attaches the region there at the same address.  After ``fork()`` the
child simply inherits the mapping and the object.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import stat as _stat
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ._backend import Backend, backend_for
from ._mapping import FixedMapping
from ._names import validate_name
from .addrspace import check_size, check_window, find_free_window
from .errors import (
    AddressInUseError,
    MshareValueError,
    NotARegionError,
    RegionExistsError,
    RegionNotEstablishedError,
    from_errno,
    from_oserror,
)
from .fs import INFO_FILE, Mount, read_alignment, resolve_mount
from .sizes import format_size

__all__ = [
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

# Attempts at picking a window when another thread keeps mapping into our choice.
_PICK_ATTEMPTS = 4


@dataclass(frozen=True)
class RegionInfo:
    """What ``ls``/``stat`` show.  ``start``/``size`` are None while the region is not
    established yet, or when this user may not open it to read them."""

    name: str
    path: str
    start: int | None
    size: int | None
    mode: int
    uid: int
    gid: int

    @property
    def established(self) -> bool:
        return self.size is not None


def _check_mode(mode: int) -> int:
    mode = operator.index(mode)
    if not 0 <= mode <= 0o7777:
        raise MshareValueError(f"mode {mode:#o} is outside 0o0..0o7777")
    return mode


def _open(path: str, flags: int, op: str, mode: int = 0) -> int:
    try:
        return os.open(path, flags, mode)
    except OSError as e:
        raise from_oserror(e, op, path) from None


def _read_geometry(backend: Backend, fd: int, path: str, op: str) -> tuple[int, int]:
    geometry = backend.read_info(fd, path)
    if geometry is None:
        raise RegionNotEstablishedError(
            errno.ENODATA, f"{op}: the region has not been mapped by its creator yet", path
        )
    return geometry


class Region:
    """A mapped msharefs region.  Build one with :meth:`create` or :meth:`attach`."""

    def __init__(
        self, *, name: str, mount: Mount, mapping: FixedMapping, requested_size: int
    ) -> None:
        self._name = name
        self._mount = mount
        self._mapping = mapping
        self._requested_size = requested_size

    # -- constructors -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        start: int | None = None,
        round_up: bool = False,
        mode: int = 0o600,
        exist_ok: bool = False,
        mount: str | None = None,
    ) -> Region:
        """Create region ``name`` of ``size`` bytes and map it.

        ``size`` must be a multiple of the alignment unit unless ``round_up`` is true;
        ``requested_size`` keeps the number asked for.  ``start`` (aligned) fixes the
        address; by default a free window is picked from this process's address map.
        ``mode`` is applied exactly (umask does not narrow it).  If ``name`` exists:
        ``RegionExistsError``, or with ``exist_ok=True`` the existing region is
        attached instead, provided its size (and ``start``, if given) match.
        """
        m = resolve_mount(mount)
        rel = validate_name(name, m.path)
        path = os.path.join(m.path, rel)
        requested = operator.index(size)
        mode = _check_mode(mode)
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
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            if not exist_ok:
                raise from_errno(errno.EEXIST, "create", path) from None
            return cls._attach_existing(rel, m, backend, path, size, start, requested)
        except OSError as e:
            raise from_oserror(e, "create", path) from None
        try:
            os.fchmod(fd, mode)
            mapping = _map_new(backend, fd, path, size, align, start)
        except BaseException:
            # The name is ours (O_EXCL) and holds nothing yet: leave no debris.
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(name=rel, mount=m, mapping=mapping, requested_size=requested)

    @classmethod
    def _attach_existing(
        cls, rel: str, m: Mount, backend: Backend, path: str, size: int,
        start: int | None, requested: int,
    ) -> Region:
        fd = _open(path, os.O_RDWR, "create")
        try:
            have_start, have_size = _read_geometry(backend, fd, path, "create")
            if have_size != size or (start is not None and have_start != start):
                want = f"{start:#x}" if start is not None else "any start"
                raise RegionExistsError(
                    errno.EEXIST,
                    f"create: region exists at {have_start:#x} with size "
                    f"{format_size(have_size)}, not {want} with size {format_size(size)}",
                    path,
                )
            mapping = FixedMapping(fd, have_start, have_size, path=path)
        finally:
            os.close(fd)
        return cls(name=rel, mount=m, mapping=mapping, requested_size=min(requested, size))

    @classmethod
    def attach(cls, name: str, *, readonly: bool = False, mount: str | None = None) -> Region:
        """Map existing region ``name`` at its start address.

        ``readonly=True`` opens it O_RDONLY and maps it PROT_READ: ``buf`` is then a
        read-only memoryview.  (Its ``buf.obj`` is the raw ctypes window: writing
        through that faults like any write to read-only memory.)
        """
        m = resolve_mount(mount)
        rel = validate_name(name, m.path)
        path = os.path.join(m.path, rel)
        backend = backend_for(m.emulated)
        fd = _open(path, os.O_RDONLY if readonly else os.O_RDWR, "attach")
        try:
            start, size = _read_geometry(backend, fd, path, "attach")
            mapping = FixedMapping(fd, start, size, readonly=readonly, path=path)
        finally:
            os.close(fd)
        return cls(name=rel, mount=m, mapping=mapping, requested_size=size)

    # -- properties ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name relative to the mount, e.g. ``"app/db"``."""
        return self._name

    @property
    def mount(self) -> str:
        return self._mount.path

    @property
    def path(self) -> str:
        return os.path.join(self._mount.path, self._name)

    @property
    def start(self) -> int:
        return self._mapping.start

    @property
    def size(self) -> int:
        """The mapped size: a multiple of the alignment unit."""
        return self._mapping.size

    @property
    def requested_size(self) -> int:
        """The size the creator asked for (``<= size``); ``size`` for attachers."""
        return self._requested_size

    @property
    def readonly(self) -> bool:
        return self._mapping.readonly

    @property
    def closed(self) -> bool:
        return self._mapping.closed

    @property
    def buf(self) -> memoryview:
        """Zero-copy view of the whole region (format ``B``); read-only if attached so."""
        return self._mapping.buf

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Unmap the region from this process.  Its data stays until it is unlinked.

        Raises ``BufferError`` (and stays open) while slices or other exported views
        of ``buf`` are alive.  Closing twice is harmless.
        """
        self._mapping.close()

    def unlink(self) -> None:
        """Remove the name; the memory goes when the last process unmaps it."""
        unlink(self._name, mount=self._mount.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reattach, (self._name, self._mount.path, self.readonly, self._requested_size))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "readonly" if self.readonly else "open"
        return (
            f"<Region {self._name!r} start={self.start:#x} size={format_size(self.size)} "
            f"{state}>"
        )


def _map_new(
    backend: Backend, fd: int, path: str, size: int, align: int, start: int | None
) -> FixedMapping:
    """The creator's first mmap, which fixes the region's geometry."""
    for _ in range(_PICK_ATTEMPTS):
        where = start if start is not None else find_free_window(size, align)
        if where is None:
            raise from_errno(
                errno.ENOMEM, "create", path,
                f"no free {format_size(align)}-aligned window of {format_size(size)}",
            )
        backend.establish(fd, where, size, path)
        try:
            return FixedMapping(fd, where, size, path=path)
        except AddressInUseError:
            # Our pick raced with another mapping; a caller-chosen start is final.
            if start is not None:
                raise
    raise from_errno(
        errno.EEXIST, "mmap", path, f"every free window was taken while picking "
        f"({_PICK_ATTEMPTS} attempts)",
    )


def _reattach(name: str, mount: str, readonly: bool, requested_size: int) -> Region:
    region = Region.attach(name, readonly=readonly, mount=mount)
    region._requested_size = requested_size
    return region


def create(
    name: str,
    size: int,
    *,
    start: int | None = None,
    round_up: bool = False,
    mode: int = 0o600,
    exist_ok: bool = False,
    mount: str | None = None,
) -> Region:
    """Same as :meth:`Region.create`."""
    return Region.create(
        name, size, start=start, round_up=round_up, mode=mode, exist_ok=exist_ok, mount=mount
    )


def attach(name: str, *, readonly: bool = False, mount: str | None = None) -> Region:
    """Same as :meth:`Region.attach`."""
    return Region.attach(name, readonly=readonly, mount=mount)


def _resolve(name: str, mount: str | None) -> tuple[Mount, str]:
    m = resolve_mount(mount)
    return m, validate_name(name, m.path)


def unlink(name: str, mount: str | None = None) -> None:
    """Remove region ``name``; mapped copies keep working until they are closed."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        os.unlink(path)
    except OSError as e:
        raise from_oserror(e, "unlink", path) from None


def mkdir(name: str, mode: int = 0o700, *, exist_ok: bool = False, mount: str | None = None) -> str:
    """Create a directory for regions inside msharefs; returns its path."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    mode = _check_mode(mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not (exist_ok and os.path.isdir(path)):
            raise from_errno(errno.EEXIST, "mkdir", path) from None
    except OSError as e:
        raise from_oserror(e, "mkdir", path) from None
    return path


def rmdir(name: str, mount: str | None = None) -> None:
    """Remove an empty directory inside msharefs."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        os.rmdir(path)
    except OSError as e:
        raise from_oserror(e, "rmdir", path) from None


def _info(rel: str, path: str, backend: Backend, st: os.stat_result) -> RegionInfo:
    geometry: tuple[int, int] | None = None
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        pass  # listed with its owner and mode; the geometry needs read access
    except OSError as e:
        raise from_oserror(e, "stat", path) from None
    else:
        try:
            geometry = backend.read_info(fd, path)
        finally:
            os.close(fd)
    start, size = geometry if geometry is not None else (None, None)
    return RegionInfo(rel, path, start, size, _stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def stat(name: str, mount: str | None = None) -> RegionInfo:
    """Describe region ``name`` without mapping it."""
    m, rel = _resolve(name, mount)
    path = os.path.join(m.path, rel)
    try:
        st = os.stat(path)
    except OSError as e:
        raise from_oserror(e, "stat", path) from None
    if _stat.S_ISDIR(st.st_mode):
        raise NotARegionError(errno.EISDIR, "stat: is a directory, not a region", path)
    return _info(rel, path, backend_for(m.emulated), st)


def list_regions(mount: str | None = None) -> list[RegionInfo]:
    """Every region under the mount, directories included, sorted by name."""
    m = resolve_mount(mount)
    backend = backend_for(m.emulated)
    found: list[RegionInfo] = []

    def walk(rel_dir: str) -> None:
        directory = os.path.join(m.path, rel_dir)
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            raise from_oserror(e, "list", directory) from None
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                walk(rel)
            elif rel != INFO_FILE and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                    found.append(_info(rel, entry.path, backend, st))
                except FileNotFoundError:
                    pass  # unlinked while we listed

    walk("")
    return sorted(found, key=lambda info: info.name)
