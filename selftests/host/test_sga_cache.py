"""examples.sga.cache: format, lookup, checked reads, locked updates, and the seqlock."""

from __future__ import annotations

import mmap
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.sga.cache import BufferCache, PayloadPool, block_id
from examples.sga.layout import BLOCK_HEADER, BLOCK_SIZE, SEQ_OFFSET, Layout, LayoutError
from examples.sga.locks import StripeLocks
from examples.sga.result import CacheStats

SIZE = 2 << 20


class _Recorder:
    """A lock that checks what a writer does while it holds the stripe."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.taken: list[int] = []

    def acquire(self, stripe: int) -> None:
        assert stripe not in self.held
        self.held.add(stripe)
        self.taken.append(stripe)

    def release(self, stripe: int) -> None:
        self.held.remove(stripe)


@pytest.fixture
def pool() -> PayloadPool:
    return PayloadPool(BLOCK_SIZE - BLOCK_HEADER.size, seed=7)


@pytest.fixture
def cache(pool: PayloadPool) -> Iterator[BufferCache]:
    c = BufferCache(memoryview(bytearray(SIZE)), Layout.for_size(SIZE))
    c.format(pool, seed=7)
    yield c
    c.close()


def test_every_block_is_found_at_its_own_slot(cache: BufferCache) -> None:
    slots = set()
    for k in range(cache.layout.nblocks):
        slot = cache.lookup(block_id(k))
        assert slot == cache.slot_of(k)
        slots.add(slot)
    assert slots == set(range(cache.layout.nblocks))


def test_unknown_ids_miss(cache: BufferCache) -> None:
    assert cache.lookup(block_id(cache.layout.nblocks + 5)) is None


def test_block_ids_are_distinct_and_nonzero() -> None:
    ids = [block_id(k) for k in range(100_000)]
    assert len(set(ids)) == len(ids) and 0 not in ids


def test_reads_of_a_fresh_cache_are_clean(cache: BufferCache) -> None:
    stats = CacheStats()
    for k in range(cache.layout.nblocks):
        cache.read(k, stats)
    assert stats.reads == cache.layout.nblocks
    assert (stats.checksum_errors, stats.misses, stats.busy) == (0, 0, 0)
    assert cache.verify_all() == (0, 0)


def test_a_flipped_payload_bit_is_a_checksum_error(cache: BufferCache) -> None:
    off = cache.layout.block_offset(cache.slot_of(3))
    cache.view[off + 100] ^= 0x01
    stats = CacheStats()
    cache.read(3, stats)
    assert stats.checksum_errors == 1
    assert cache.verify_all() == (1, 0)


def test_a_block_in_the_wrong_slot_is_an_error(cache: BufferCache) -> None:
    # The id in the block header must be the one asked for, not just any valid block.
    a = cache.layout.block_offset(cache.slot_of(1))
    b = cache.layout.block_offset(cache.slot_of(2))
    cache.view[a:a + BLOCK_SIZE] = bytes(cache.view[b:b + BLOCK_SIZE])
    stats = CacheStats()
    cache.read(1, stats)
    assert stats.checksum_errors == 1


def test_update_rewrites_payload_checksum_version_under_the_stripe_lock(
        cache: BufferCache, pool: PayloadPool) -> None:
    locks = _Recorder()
    stats = CacheStats()
    slot = cache.slot_of(5)
    off = cache.layout.block_offset(slot)
    before = bytes(cache.view[off:off + BLOCK_SIZE])
    cache.update(5, 123, pool, locks, stats)
    cache.update(5, 124, pool, locks, stats)
    assert locks.taken == [slot % cache.layout.stripes] * 2 and not locks.held
    _magic, crc, bid, seq, version = BLOCK_HEADER.unpack_from(cache.view, off)
    assert (bid, seq, version) == (block_id(5), 4, 2)
    assert crc == pool.crcs[124]
    assert bytes(cache.view[off + BLOCK_HEADER.size:off + BLOCK_SIZE]) == bytes(
        pool.payload(124))
    assert bytes(cache.view[off:off + BLOCK_SIZE]) != before
    assert stats.updates == 2 and cache.counted_updates() == 2
    read = CacheStats()
    cache.read(5, read)
    assert read.checksum_errors == 0 and cache.verify_all() == (0, 0)


def test_a_block_left_odd_is_busy_not_an_error(cache: BufferCache) -> None:
    # A writer killed mid-update leaves the sequence odd: readers give up on the block.
    off = cache.layout.block_offset(cache.slot_of(9))
    cache.atomics.store_u64(off + SEQ_OFFSET, 1)
    stats = CacheStats()
    cache.read(9, stats)
    assert (stats.busy, stats.checksum_errors, stats.reads) == (1, 0, 0)
    assert cache.verify_all() == (0, 1)


def test_open_needs_a_formatted_open_sga(pool: PayloadPool) -> None:
    view = memoryview(bytearray(SIZE))
    with pytest.raises(LayoutError):
        BufferCache.open(view)
    c = BufferCache(view, Layout.for_size(SIZE))
    c.format(pool, seed=7)
    c.close()
    opened = BufferCache.open(view)
    assert opened.layout == Layout.for_size(SIZE)
    opened.close()


def test_close_releases_the_memory(pool: PayloadPool) -> None:
    m = mmap.mmap(-1, SIZE)
    view = memoryview(m)
    c = BufferCache(view, Layout.for_size(SIZE))
    c.format(pool, seed=1)
    c.close()
    view.release()
    m.close()  # BufferError here if the cache still held an export


def test_concurrent_writers_never_show_readers_a_torn_block(
        pool: PayloadPool, tmp_path: Path) -> None:
    """Regression: struct.pack_into zeroes its target first, so a reader racing with
    an update saw sequence 0 and checksum 0.  Three writers hammer four blocks while
    this process reads them; before the fix this found errors within a second."""
    size = 1 << 20
    m = mmap.mmap(-1, size, mmap.MAP_SHARED)
    view = memoryview(m)
    cache = BufferCache(view, Layout.for_size(size))
    cache.format(pool, seed=3)
    lock_path = str(tmp_path / "locks")
    StripeLocks(lock_path, create=True).close()
    pids = []
    for w in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                locks = StripeLocks(lock_path)
                rng = random.Random(w)
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    cache.update(rng.randrange(4), rng.randrange(500), pool, locks, CacheStats())
            finally:
                os._exit(0)
        pids.append(pid)
    stats = CacheStats()
    rng = random.Random(99)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        cache.read(rng.randrange(4), stats)
    for pid in pids:
        os.waitpid(pid, 0)
    assert stats.checksum_errors == 0
    assert stats.reads > 1000
    assert cache.verify_all() == (0, 0)
    cache.close()
    view.release()
    m.close()
