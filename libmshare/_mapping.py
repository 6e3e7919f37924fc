"""One mapping per process and region, shared by every handle on it.

A region can be mapped only once per process: msharefs maps it at one fixed address,
and ``MAP_FIXED_NOREPLACE`` refuses a second mapping there.  So every :class:`Region`
object of a process that refers to the same region (the one ``create`` returned, the
copies that ``pickle``, ``copy`` or a ``multiprocessing.Queue`` made, a later
``attach``) is a handle on one :class:`FixedMapping`, kept in a per-process registry
keyed by the region file's (st_dev, st_ino).  The mapping is unmapped when its last
handle lets go.

After ``fork()`` the child has copies of the registry, of every mapping and of every
handle object, so the counts stay right with nothing to adjust; only the registry's
lock is renewed, since a thread of the parent may have held it.

Handles let go from finalizers too, which may run in the middle of a registry
operation of the same thread (a garbage collection triggered by an allocation).  So a
release that finds the lock taken is queued and done by the lock's holder on its way
out, never re-entered.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import _libc
from .errors import AddressInUseError, from_errno

__all__ = ["FixedMapping", "Key", "acquire", "map_fixed", "mapped", "release"]

Key = tuple[int, int]  # (st_dev, st_ino) of the region file


class FixedMapping:
    """``fd`` mapped MAP_SHARED at exactly ``[start, start + size)``, never replacing."""

    def __init__(
        self, fd: int, start: int, size: int, *, readonly: bool = False,
        path: str | None = None, key: Key | None = None,
    ) -> None:
        prot = _libc.PROT_READ if readonly else _libc.PROT_READ | _libc.PROT_WRITE
        flags = _libc.MAP_SHARED | _libc.MAP_FIXED_NOREPLACE
        _libc.mmap(start, size, prot, flags, fd, 0, path=path)
        self.start = start
        self.size = size
        self.readonly = readonly
        self.key = key
        self.path = path
        self.handles = 0

    @property
    def mapped(self) -> bool:
        """False once the last handle let go and the window was unmapped."""
        return self.handles > 0

    def __repr__(self) -> str:
        return f"<FixedMapping {self.start:#x}+{self.size:#x} handles={self.handles}>"


_lock = threading.Lock()
_by_key: dict[Key, FixedMapping] = {}
_pending: list[FixedMapping] = []


def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock)


def _drop(m: FixedMapping) -> None:
    m.handles -= 1
    if m.handles == 0:
        if m.key is not None and _by_key.get(m.key) is m:
            del _by_key[m.key]
        _libc.munmap(m.start, m.size)


def _drain() -> None:
    while _pending:
        if not _lock.acquire(blocking=False):
            return  # the holder drains on its way out
        try:
            while _pending:
                _drop(_pending.pop())
        finally:
            _lock.release()


@contextmanager
def _locked() -> Iterator[None]:
    with _lock:
        yield
    _drain()


def acquire(key: Key, *, readonly: bool, path: str | None = None) -> FixedMapping | None:
    """One more handle on this process's mapping of region ``key``; None if unmapped.

    A writable handle on a read-only mapping cannot be had: the pages are mapped
    PROT_READ and the one mapping cannot be replaced under the handles using it.
    """
    with _locked():
        m = _by_key.get(key)
        if m is None:
            return None
        if m.readonly and not readonly:
            raise AddressInUseError(
                errno.EEXIST,
                "attach: this process maps the region read-only already; close those "
                "handles first to attach it writable",
                path,
            )
        m.handles += 1
        return m


def map_fixed(
    fd: int, start: int, size: int, *, readonly: bool, key: Key, path: str | None = None
) -> FixedMapping:
    """Map region ``key`` at ``start`` (or share the mapping another thread just made)."""
    with _locked():
        m = _by_key.get(key)
        if m is not None:
            if (m.start, m.size) != (start, size) or (m.readonly and not readonly):
                raise from_errno(errno.EEXIST, "mmap", path, "mapped differently already")
            m.handles += 1
            return m
        m = FixedMapping(fd, start, size, readonly=readonly, path=path, key=key)
        m.handles = 1
        _by_key[key] = m
        return m


def release(m: FixedMapping) -> None:
    """A handle lets go; the last one unmaps.  Safe from finalizers."""
    _pending.append(m)
    _drain()


def mapped() -> list[FixedMapping]:
    """This process's mappings (a snapshot, for tests and diagnostics)."""
    with _locked():
        return list(_by_key.values())
