"""A shared mapping at a fixed address, exposed as a memoryview that can never outlive it.

Python 3.11 has no pure-Python hook for buffer release (PEP 688 came in 3.12), and
slices of a memoryview outlive ``release()`` of their parent.  So, like ``mmap.mmap``,
:meth:`FixedMapping.close` refuses with ``BufferError`` while anything could still
reach the memory.  How it knows, in CPython:

* The exporter is a ctypes array laid over the mapping.  Every independent buffer
  taken from it (``memoryview(buf.obj)``, ...) holds a reference to it.
* The view handed out (``buf``) and everything derived from it (slices, ``cast``,
  ``toreadonly``, ``memoryview(buf)``) register on one ``managedbuffer``, whose
  ``exports`` field counts the live ones (a released slice no longer counts).
  That field is read at a fixed offset; the offset is checked against known
  behaviour at import, and if it does not hold (a debug or future build) the
  managedbuffer's reference count is used instead, which also counts released
  slices until they are dropped: safe, only stricter.
* Consumers of ``buf``'s own buffer (``numpy.frombuffer(buf)``, ...) make
  ``buf.release()`` raise ``BufferError``.

Counting the first two against their values at creation, then releasing ``buf``,
covers all three without touching the memory.

If the mapping is dropped without ``close()`` while slices are alive, the unmapping
waits: a finalizer on the ctypes array runs munmap when its last user goes away.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
import weakref

from . import _libc
from .errors import RegionClosedError

__all__ = ["FixedMapping"]


@functools.lru_cache(maxsize=64)
def _window_type(size: int) -> type[ctypes.Array[ctypes.c_ubyte]]:
    # A subclass, because plain ctypes arrays do not support weak references.
    base: type[ctypes.Array[ctypes.c_ubyte]] = ctypes.c_ubyte * size
    return type(f"_Window{size:#x}", (base,), {})


def _managed_buffer(view: memoryview) -> object:
    (mbuf,) = gc.get_referents(view)
    return mbuf


# CPython's _PyManagedBufferObject: PyObject_HEAD; int flags; Py_ssize_t exports; ...
_SSIZE = ctypes.sizeof(ctypes.c_ssize_t)
_EXPORTS_OFFSET = 3 * _SSIZE


def _exports_field(view: memoryview) -> int:
    return ctypes.c_ssize_t.from_address(id(_managed_buffer(view)) + _EXPORTS_OFFSET).value


def _refcount_estimate(view: memoryview) -> int:
    # One reference per view registered on the managedbuffer, plus getrefcount's own
    # argument and the temporary from _managed_buffer.
    return sys.getrefcount(_managed_buffer(view)) - 2


def _exports_field_works() -> bool:
    """Check the field's offset against behaviour we know, before trusting it."""
    if sys.implementation.name != "cpython":
        return False
    probe = memoryview(bytearray(8))
    counts = [_exports_field(probe)]
    part = probe[2:4]
    counts.append(_exports_field(probe))
    part.release()
    counts.append(_exports_field(probe))
    return counts == [1, 2, 1]


_view_count = _exports_field if _exports_field_works() else _refcount_estimate


class FixedMapping:
    """``fd`` mapped MAP_SHARED at exactly ``[start, start + size)``, never replacing."""

    def __init__(
        self, fd: int, start: int, size: int, *, readonly: bool = False, path: str | None = None
    ) -> None:
        prot = _libc.PROT_READ if readonly else _libc.PROT_READ | _libc.PROT_WRITE
        flags = _libc.MAP_SHARED | _libc.MAP_FIXED_NOREPLACE
        _libc.mmap(start, size, prot, flags, fd, 0, path=path)
        self.start = start
        self.size = size
        self.readonly = readonly
        arr = _window_type(size).from_address(start)
        finalizer = weakref.finalize(arr, _libc.munmap, start, size)
        # At interpreter exit the process is going away; unmapping then could only
        # pull memory from under objects still being torn down.
        finalizer.atexit = False
        self._finalizer = finalizer
        self._arr: ctypes.Array[ctypes.c_ubyte] | None = arr
        del arr
        self._view: memoryview | None = self._new_view()
        self._baseline = self._refs()

    def _new_view(self) -> memoryview:
        assert self._arr is not None
        view = memoryview(self._arr).cast("B")
        return view.toreadonly() if self.readonly else view

    def _refs(self) -> tuple[int, int]:
        """(references to the exporter, views registered on buf's managedbuffer)."""
        assert self._view is not None
        return sys.getrefcount(self._arr), _view_count(self._view)

    @property
    def closed(self) -> bool:
        return self._view is None

    @property
    def buf(self) -> memoryview:
        if self._view is None:
            raise RegionClosedError(
                f"mapping at {self.start:#x} is closed; its memory is no longer mapped"
            )
        return self._view

    def exports(self) -> int:
        """How many views or buffers other than ``buf`` itself can reach the memory."""
        if self._view is None:
            return 0
        arr_refs, mbuf_refs = self._refs()
        return (arr_refs - self._baseline[0]) + (mbuf_refs - self._baseline[1])

    def close(self) -> None:
        """Unmap.  ``BufferError`` (and nothing changed) while other views exist."""
        if self._view is None:
            return
        n = self.exports()
        if n:
            raise BufferError(
                f"cannot close the mapping at {self.start:#x}: {n} exported view(s) or "
                "slice(s) of its memory still exist; release or delete them first"
            )
        # Raises BufferError, leaving buf intact, if a consumer holds buf's buffer.
        self._view.release()
        self._view = None
        self._arr = None
        self._finalizer()
