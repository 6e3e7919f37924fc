"""The buffer cache: formatting, block lookup, checked reads and locked updates.

Readers take no lock: each block header carries a sequence word (a seqlock) that a
writer makes odd before it changes the block and even again after.  A reader reads the
sequence, then the checksum and payload, then the sequence again, and retries if the
two differ or are odd.  Writers serialise on a per-stripe lock.

The shared words (sequence, version, state, per-stripe counters) are only ever
accessed through :mod:`libmshare.atomic`: sequentially consistent loads, stores and
fetch-adds on aligned 8-byte words, so they are never torn and the plain reads and
writes of a block are never moved across them.  The reader puts a :func:`fence`
between its copy of the block and its second load of the sequence, which makes the
seqlock correct on weakly ordered CPUs too, not only on x86-64.  (``struct.pack_into``
must not touch shared words that readers race with: it zeroes its target before it
writes the fields, so a reader could see a sequence of 0 and a checksum of 0.)  The
per-stripe update counters are bumped with fetch-add after the stripe lock is let go.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from typing import Protocol

from libmshare import atomic

from .layout import (
    BLOCK_HEADER,
    BLOCK_MAGIC,
    DIR_ENTRY,
    SEQ_OFFSET,
    STATE_OFFSET,
    STATE_OPEN,
    Layout,
    LayoutError,
)
from .result import CacheStats

__all__ = ["BufferCache", "Locker", "PayloadPool", "block_id"]

_MASK64 = (1 << 64) - 1
# Multiplying by an odd constant is a bijection mod 2**64: ids are unique and never 0.
_ID_MULT = 0x9E3779B97F4A7C15
_HASH_MULT = 0xD6E8FEB86659FD93
# How many payload variants a block can hold; their checksums are computed once.
_VARIANTS = 509
_VARIANT_STEP = 127
_POOL_SPAN = _VARIANTS * _VARIANT_STEP
# A reader gives up on a block that stays busy this many times in a row (a writer that
# died holding it); it is counted, never reported as a checksum error.
_MAX_RETRIES = 1000


# The part of a block header before the sequence word: magic, crc32, block id.
_IDENT = struct.Struct("<IIQ")


def block_id(k: int) -> int:
    """The id of the k-th block (0-based), as a database would name a file block."""
    return ((k + 1) * _ID_MULT) & _MASK64


class Locker(Protocol):
    def acquire(self, stripe: int) -> None: ...
    def release(self, stripe: int) -> None: ...


class PayloadPool:
    """Deterministic block contents: payload variant v is a slice of one random pool."""

    def __init__(self, payload_size: int, seed: int) -> None:
        self.payload_size = payload_size
        self.data = memoryview(random.Random(seed).randbytes(_POOL_SPAN + payload_size))
        self.crcs = [zlib.crc32(self.payload(v)) for v in range(_VARIANTS)]

    def payload(self, variant: int) -> memoryview:
        start = (variant % _VARIANTS) * _VARIANT_STEP
        return self.data[start:start + self.payload_size]

    @staticmethod
    def variants() -> int:
        return _VARIANTS


class BufferCache:
    """Operations on an SGA laid out by :class:`Layout` in ``view`` (any writable buffer)."""

    def __init__(self, view: memoryview, layout: Layout) -> None:
        if len(view) < layout.total_size:
            raise LayoutError(f"buffer of {len(view)} bytes is smaller than the layout")
        self.view = view
        self.layout = layout
        self._stride = _coprime_stride(layout.nblocks)
        self._shift = 64 - layout.dir_bits
        self._dir_mask = layout.dir_entries - 1
        # Atomic access to the words that readers race with.  It holds an export of
        # ``view``: close() drops it before the memory is unmapped.
        self._atomics: atomic.AtomicBuffer | None = atomic.AtomicBuffer(
            view[:layout.total_size])

    def close(self) -> None:
        """Drop this object's hold on the memory (before the mapping is closed)."""
        if self._atomics is not None:
            self._atomics.release()
            self._atomics = None

    @property
    def atomics(self) -> atomic.AtomicBuffer:
        """Atomic loads, stores and fetch-adds on the SGA's aligned words."""
        if self._atomics is None:
            raise ValueError("the buffer cache is closed")
        return self._atomics

    @classmethod
    def open(cls, view: memoryview) -> BufferCache:
        """Attach to a formatted SGA, as a new server process does."""
        layout, state, _seed = Layout.from_header(view)
        if state != STATE_OPEN:
            raise LayoutError(f"the SGA is not open (state {state})")
        return cls(view, layout)

    # -- geometry ---------------------------------------------------------------------

    def slot_of(self, k: int) -> int:
        """Where block k lives: a fixed permutation, so the directory is really needed."""
        return (k * self._stride) % self.layout.nblocks

    def _hash(self, bid: int) -> int:
        return ((bid * _HASH_MULT) & _MASK64) >> self._shift

    # -- formatting (the instance) ------------------------------------------------------

    def format(self, pool: PayloadPool, seed: int) -> None:
        """Write header, directory and every block; the state word goes OPEN last."""
        lay = self.layout
        view = self.view
        view[0:lay.dir_offset] = bytes(lay.dir_offset)
        hdr = lay.pack_header(0, seed)
        view[:len(hdr)] = hdr
        directory = bytearray(lay.dir_entries * DIR_ENTRY.size)
        mask = self._dir_mask
        payload_size = lay.payload_size
        crcs = pool.crcs
        for k in range(lay.nblocks):
            bid = block_id(k)
            slot = self.slot_of(k)
            h = self._hash(bid)
            while DIR_ENTRY.unpack_from(directory, h * DIR_ENTRY.size)[0]:
                h = (h + 1) & mask
            DIR_ENTRY.pack_into(directory, h * DIR_ENTRY.size, bid, slot)
            off = lay.block_offset(slot)
            variant = k % _VARIANTS
            BLOCK_HEADER.pack_into(view, off, BLOCK_MAGIC, crcs[variant], bid, 0, 0)
            view[off + BLOCK_HEADER.size:off + BLOCK_HEADER.size + payload_size] = (
                pool.payload(variant))
        view[lay.dir_offset:lay.dir_offset + len(directory)] = directory
        self.atomics.store_u64(STATE_OFFSET, STATE_OPEN)  # published last

    def close_state(self, state: int) -> None:
        """Publish a new state word (servers stop when it leaves OPEN)."""
        self.atomics.store_u64(STATE_OFFSET, state)

    # -- lookups and checked reads ------------------------------------------------------

    def lookup(self, bid: int) -> int | None:
        """The slot of block ``bid``, or None if the directory does not have it."""
        view = self.view
        base = self.layout.dir_offset
        h = self._hash(bid)
        while True:
            found, slot = DIR_ENTRY.unpack_from(view, base + h * DIR_ENTRY.size)
            if found == bid:
                return int(slot)
            if found == 0:
                return None
            h = (h + 1) & self._dir_mask

    def _find(self, k: int, stats: CacheStats) -> tuple[int, int] | None:
        """Block k's id and directory slot; a miss is counted in ``stats``."""
        bid = block_id(k)
        slot = self.lookup(bid)
        if slot is None:
            stats.misses += 1
            return None
        return bid, slot

    def read(self, k: int, stats: CacheStats) -> None:
        """Look up block k, check its id and checksum; errors are counted in ``stats``."""
        found = self._find(k, stats)
        if found is None:
            return
        bid, slot = found
        view = self.view
        load = self.atomics.load_u64
        off = self.layout.block_offset(slot)
        seq_at = off + SEQ_OFFSET
        body = off + BLOCK_HEADER.size
        end = off + self.layout.block_size
        for _ in range(_MAX_RETRIES):
            seq1 = load(seq_at)
            if seq1 & 1:
                stats.retries += 1
                continue
            magic, crc, got_id = _IDENT.unpack_from(view, off)
            ok = magic == BLOCK_MAGIC and got_id == bid and zlib.crc32(view[body:end]) == crc
            atomic.fence()  # the copy above happens before the second load
            seq2 = load(seq_at)
            if seq1 != seq2:
                stats.retries += 1
                continue
            stats.reads += 1
            if not ok:
                stats.checksum_errors += 1
            return
        stats.busy += 1

    def update(self, k: int, variant: int, pool: PayloadPool, locks: Locker,
               stats: CacheStats) -> None:
        """Rewrite block k's payload with ``variant`` under its stripe lock."""
        found = self._find(k, stats)
        if found is None:
            return
        bid, slot = found
        lay = self.layout
        view = self.view
        ab = self.atomics
        off = lay.block_offset(slot)
        seq_at = off + SEQ_OFFSET
        stripe = slot % lay.stripes
        locks.acquire(stripe)
        try:
            seq = ab.load_u64(seq_at)
            ab.store_u64(seq_at, seq + 1)  # odd: readers retry
            view[off + BLOCK_HEADER.size:off + lay.block_size] = pool.payload(variant)
            view[off:off + _IDENT.size] = _IDENT.pack(BLOCK_MAGIC,
                                                      pool.crcs[variant % _VARIANTS], bid)
            ab.fetch_add_u64(seq_at + 8, 1)  # the version word follows the sequence
            ab.store_u64(seq_at, seq + 2)  # even again: the block is whole
        finally:
            locks.release(stripe)
        # Atomic: exact without the lock, so it need not be held for it.
        ab.fetch_add_u64(lay.counter_offset(stripe), 1)
        stats.updates += 1

    # -- whole-cache checks (the instance, when servers are done) ------------------------

    def verify_all(self) -> tuple[int, int]:
        """(blocks with a bad id or checksum, blocks whose update left them odd)."""
        bad = torn = 0
        lay = self.layout
        view = self.view
        for k in range(lay.nblocks):
            off = lay.block_offset(self.slot_of(k))
            magic, crc, got_id, seq, _ver = BLOCK_HEADER.unpack_from(view, off)
            if seq & 1:
                torn += 1
            body = view[off + BLOCK_HEADER.size:off + lay.block_size]
            if magic != BLOCK_MAGIC or got_id != block_id(k) or zlib.crc32(body) != crc:
                bad += 1
        return bad, torn

    def counted_updates(self) -> int:
        """The sum of the per-stripe counters, which writers bump with fetch-add."""
        lay = self.layout
        return sum(self.atomics.load_u64(lay.counter_offset(s)) for s in range(lay.stripes))


def _coprime_stride(n: int) -> int:
    stride = 1_000_003 % n if n > 1 else 1
    while n > 1 and (stride == 0 or math.gcd(stride, n) != 1):
        stride += 1
    return stride or 1
