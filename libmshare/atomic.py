"""Atomic operations on aligned 32- and 64-bit words of shared memory.

Processes that share a region share data structures, and Python has no atomic memory
operations.  This module gives load, store, exchange, compare-and-swap and fetch-add
on an aligned unsigned word of any buffer (a region's ``buf``, a slice of it, an
``mmap``, a ``bytearray``), each one CPU instruction (``lock xadd``, ``lock cmpxchg``,
``xchg``, an aligned ``mov``) through a small C extension built with cffi.

Memory ordering: every operation is **sequentially consistent** (C11
``memory_order_seq_cst``): it is a full barrier, all processes see all of these
operations in one order, and plain reads and writes of the buffer (``buf[...]``,
``struct``) are not moved across it.  :func:`fence` is a barrier on its own.  A
seqlock, for instance:

* writer (holding the write lock): ``store(seq + 1)``, write the data, ``store(seq + 2)``;
* reader: ``s1 = load()``; copy the data; ``fence()``; ``s2 = load()``; retry if
  ``s1 != s2`` or ``s1`` is odd.

Two ways to call:

* functions, ``fetch_add_u64(buf, offset, 1)``: check the buffer on every call (about
  a microsecond);
* :class:`AtomicWord`, ``AtomicWord(buf, offset).fetch_add(1)``: one word, checked
  once;
* :class:`AtomicBuffer`, ``AtomicBuffer(buf).fetch_add_u64(offset, 1)``: any word of
  ``buf``, with only the offset checked on each call (for data structures with many
  words: counters, a sequence word per block).

The two classes hold an export of ``buf`` until ``release()`` (or the end of a ``with``
block), so the region refuses to close (``BufferError``) while they could be used.

Every operation checks before it touches memory and raises instead of crashing:
``TypeError`` for a store, exchange, compare-and-swap or fetch-add on a read-only
buffer (a load is allowed: reading an aligned word of read-only memory is safe),
``ValueError`` for a released view (a closed region's ``buf``),
:class:`~libmshare.errors.MisalignedError` for an address that is not a multiple of
the word size, ``IndexError`` for an offset outside the buffer, ``OverflowError`` for a
value that does not fit the word.  Words are unsigned; fetch-add takes a negative
delta too (it wraps, as unsigned arithmetic does).

Importing this module raises :class:`~libmshare.errors.AtomicUnavailableError` (an
``ImportError``) if the extension was not built (an install without a C compiler).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn, Self

from .errors import AtomicUnavailableError, MisalignedError

try:
    from ._atomic_c import ffi, lib
except ImportError as e:
    raise AtomicUnavailableError(
        "libmshare.atomic needs its C extension libmshare._atomic_c, which is built when "
        "libmshare is installed from source with cffi and a C compiler (pip install .); "
        f"this installation has none ({e})"
    ) from e

__all__ = [
    "AtomicBuffer",
    "AtomicWord",
    "compare_exchange_u32",
    "compare_exchange_u64",
    "exchange_u32",
    "exchange_u64",
    "fence",
    "fetch_add_u32",
    "fetch_add_u64",
    "load_u32",
    "load_u64",
    "store_u32",
    "store_u64",
]

_MASK = {4: (1 << 32) - 1, 8: (1 << 64) - 1}
_OPS: dict[int, tuple[Callable[..., Any], ...]] = {
    4: (lib.lm_load32, lib.lm_store32, lib.lm_exchange32, lib.lm_cas32, lib.lm_fetch_add32),
    8: (lib.lm_load64, lib.lm_store64, lib.lm_exchange64, lib.lm_cas64, lib.lm_fetch_add64),
}


def _pointer(buf: Any, writable: bool) -> Any:
    """``buf``'s memory as a cffi ``char[]``; TypeError if it must be and is not writable."""
    try:
        return ffi.from_buffer("char[]", buf, require_writable=writable)
    except (TypeError, BufferError):
        if writable and memoryview(buf).readonly:
            raise TypeError(
                "atomic write to a read-only buffer (a region attached readonly=True?)"
            ) from None
        raise


def _check(p: Any, offset: int, size: int) -> int:
    offset = operator.index(offset)
    if not 0 <= offset <= len(p) - size:
        raise IndexError(
            f"offset {offset} of a {size}-byte word is outside the {len(p)}-byte buffer"
        )
    addr = int(ffi.cast("uintptr_t", p)) + offset
    if addr % size:
        raise MisalignedError(
            f"address {addr:#x} (offset {offset}) is not aligned to the {size}-byte word"
        )
    return offset


def _call(buf: Any, offset: int, size: int, writable: bool, op: int, *args: int) -> int:
    with _pointer(buf, writable) as p:
        offset = _check(p, offset, size)
        result: int = _OPS[size][op](p, offset, *args)
        return result


def load_u32(buf: Any, offset: int) -> int:
    """Atomically read the 32-bit word at ``offset`` of ``buf``."""
    return _call(buf, offset, 4, False, 0)


def load_u64(buf: Any, offset: int) -> int:
    """Atomically read the 64-bit word at ``offset`` of ``buf``."""
    return _call(buf, offset, 8, False, 0)


def store_u32(buf: Any, offset: int, value: int) -> None:
    """Atomically write ``value`` (0 to 2**32-1) to the 32-bit word at ``offset``."""
    _call(buf, offset, 4, True, 1, value)


def store_u64(buf: Any, offset: int, value: int) -> None:
    """Atomically write ``value`` (0 to 2**64-1) to the 64-bit word at ``offset``."""
    _call(buf, offset, 8, True, 1, value)


def exchange_u32(buf: Any, offset: int, value: int) -> int:
    """Atomically write ``value`` to the 32-bit word at ``offset``; returns the old value."""
    return _call(buf, offset, 4, True, 2, value)


def exchange_u64(buf: Any, offset: int, value: int) -> int:
    """Atomically write ``value`` to the 64-bit word at ``offset``; returns the old value."""
    return _call(buf, offset, 8, True, 2, value)


def compare_exchange_u32(buf: Any, offset: int, expected: int, desired: int) -> int:
    """If the 32-bit word at ``offset`` holds ``expected``, make it ``desired``, atomically.

    Returns the value found: the swap happened if and only if it equals ``expected``.
    """
    return _call(buf, offset, 4, True, 3, expected, desired)


def compare_exchange_u64(buf: Any, offset: int, expected: int, desired: int) -> int:
    """If the 64-bit word at ``offset`` holds ``expected``, make it ``desired``, atomically.

    Returns the value found: the swap happened if and only if it equals ``expected``.
    """
    return _call(buf, offset, 8, True, 3, expected, desired)


def fetch_add_u32(buf: Any, offset: int, delta: int) -> int:
    """Atomically add ``delta`` (may be negative; wraps mod 2**32); returns the old value."""
    return _call(buf, offset, 4, True, 4, delta & _MASK[4])


def fetch_add_u64(buf: Any, offset: int, delta: int) -> int:
    """Atomically add ``delta`` (may be negative; wraps mod 2**64); returns the old value."""
    return _call(buf, offset, 8, True, 4, delta & _MASK[8])


def fence() -> None:
    """A sequentially consistent memory barrier (``atomic_thread_fence(seq_cst)``)."""
    lib.lm_fence()


class _Export:
    """An export of a buffer, writable if the buffer allows it, held until release().

    The part AtomicWord and AtomicBuffer share: a held export keeps the memory mapped
    (the region refuses to close), and a ``with`` block gives it back.
    """

    def __init__(self, buf: Any) -> None:
        try:
            p = _pointer(buf, True)
            self.readonly = False
        except TypeError:
            p = _pointer(buf, False)
            self.readonly = True
        self._p: Any = p

    def _forget(self) -> None:
        """Drop every reference to the export (a subclass may keep more than ``_p``)."""
        self._p = None

    def release(self) -> None:
        """Give back the export of the buffer; unusable afterwards."""
        p = self._p
        self._forget()  # before ffi.release: no operation starts on a released export
        if p is not None:
            ffi.release(p)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _state(self) -> str:
        return "released" if self._p is None else "readonly" if self.readonly else "open"


class AtomicWord(_Export):
    """One aligned unsigned word of ``buf`` (``bits`` 32 or 64), checked once.

    Holds an export of ``buf`` until :meth:`release` (a ``with`` block releases it
    too), so the memory cannot be unmapped under it.  On a read-only buffer only
    :meth:`load` works; the rest raise ``TypeError``.
    """

    def __init__(self, buf: Any, offset: int, bits: int = 64) -> None:
        if bits not in (32, 64):
            raise ValueError(f"bits must be 32 or 64, not {bits!r}")
        size = bits // 8
        super().__init__(buf)
        p = self._p
        try:
            self.offset = _check(p, offset, size)
        except BaseException:
            self.release()
            raise
        self.bits = bits
        self._w: Any = None if self.readonly else p  # None: writes refused
        self._mask = _MASK[size]
        ops = _OPS[size]
        self._load: Callable[[Any, int], int] = ops[0]
        self._store: Callable[[Any, int, int], None] = ops[1]
        self._exchange: Callable[[Any, int, int], int] = ops[2]
        self._cas: Callable[[Any, int, int, int], int] = ops[3]
        self._add: Callable[[Any, int, int], int] = ops[4]

    # The checks are inlined: a Python call more would cost as much as the operation.
    def load(self) -> int:
        """Atomically read the word."""
        if self._p is None:
            raise ValueError("operation on a released AtomicWord")
        return self._load(self._p, self.offset)

    def store(self, value: int) -> None:
        """Atomically write ``value``."""
        if self._w is None:
            self._refuse()
        self._store(self._w, self.offset, value)

    def exchange(self, value: int) -> int:
        """Atomically write ``value``; returns the old value."""
        if self._w is None:
            self._refuse()
        return self._exchange(self._w, self.offset, value)

    def compare_exchange(self, expected: int, desired: int) -> int:
        """Make the word ``desired`` if it holds ``expected``; returns the value found."""
        if self._w is None:
            self._refuse()
        return self._cas(self._w, self.offset, expected, desired)

    def fetch_add(self, delta: int) -> int:
        """Atomically add ``delta`` (may be negative, wraps); returns the old value."""
        if self._w is None:
            self._refuse()
        return self._add(self._w, self.offset, delta & self._mask)

    def _refuse(self) -> NoReturn:
        if self._p is None:
            raise ValueError("operation on a released AtomicWord")
        raise TypeError("atomic write to a read-only buffer")

    def _forget(self) -> None:
        self._p = self._w = None  # _w too: release() then refuses writes as well

    def __repr__(self) -> str:
        return f"<AtomicWord u{self.bits} offset={self.offset} {self._state()}>"


class AtomicBuffer(_Export):
    """Atomic operations on any aligned word of ``buf``, which is checked once.

    Each call checks only its offset (bounds and alignment).  Holds an export of
    ``buf`` until :meth:`release`.  On a read-only buffer only the loads work.
    """

    def __init__(self, buf: Any) -> None:
        super().__init__(buf)
        self._addr = int(ffi.cast("uintptr_t", self._p))
        self.nbytes = len(self._p)

    def _at(self, offset: int, size: int, write: bool) -> Any:
        p = self._p
        if p is None:
            raise ValueError("operation on a released AtomicBuffer")
        if write and self.readonly:
            raise TypeError("atomic write to a read-only buffer")
        if type(offset) is not int:  # the common case skips the call
            offset = operator.index(offset)
        if not 0 <= offset <= self.nbytes - size:
            raise IndexError(f"offset {offset} of a {size}-byte word is outside the "
                             f"{self.nbytes}-byte buffer")
        if (self._addr + offset) % size:
            raise MisalignedError(f"offset {offset} is not aligned to the {size}-byte word")
        return p

    def load_u32(self, offset: int) -> int:
        """Atomically read the 32-bit word at ``offset``."""
        return lib.lm_load32(self._at(offset, 4, False), offset)

    def load_u64(self, offset: int) -> int:
        """Atomically read the 64-bit word at ``offset``."""
        return lib.lm_load64(self._at(offset, 8, False), offset)

    def store_u32(self, offset: int, value: int) -> None:
        """Atomically write ``value`` to the 32-bit word at ``offset``."""
        lib.lm_store32(self._at(offset, 4, True), offset, value)

    def store_u64(self, offset: int, value: int) -> None:
        """Atomically write ``value`` to the 64-bit word at ``offset``."""
        lib.lm_store64(self._at(offset, 8, True), offset, value)

    def exchange_u32(self, offset: int, value: int) -> int:
        """Atomically write ``value`` to the 32-bit word at ``offset``; the old value."""
        return lib.lm_exchange32(self._at(offset, 4, True), offset, value)

    def exchange_u64(self, offset: int, value: int) -> int:
        """Atomically write ``value`` to the 64-bit word at ``offset``; the old value."""
        return lib.lm_exchange64(self._at(offset, 8, True), offset, value)

    def compare_exchange_u32(self, offset: int, expected: int, desired: int) -> int:
        """Compare-and-swap the 32-bit word at ``offset``; returns the value found."""
        return lib.lm_cas32(self._at(offset, 4, True), offset, expected, desired)

    def compare_exchange_u64(self, offset: int, expected: int, desired: int) -> int:
        """Compare-and-swap the 64-bit word at ``offset``; returns the value found."""
        return lib.lm_cas64(self._at(offset, 8, True), offset, expected, desired)

    def fetch_add_u32(self, offset: int, delta: int) -> int:
        """Atomically add ``delta`` (wraps) to the 32-bit word at ``offset``; the old value."""
        return lib.lm_fetch_add32(self._at(offset, 4, True), offset, delta & _MASK[4])

    def fetch_add_u64(self, offset: int, delta: int) -> int:
        """Atomically add ``delta`` (wraps) to the 64-bit word at ``offset``; the old value."""
        return lib.lm_fetch_add64(self._at(offset, 8, True), offset, delta & _MASK[8])

    def __repr__(self) -> str:
        return f"<AtomicBuffer {self.nbytes} bytes {self._state()}>"
