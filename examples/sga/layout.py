"""Where everything lives inside the SGA: header, block directory, buffer cache.

    offset 0              header (one 4 KiB page): magic, version, sizes, the state
                          word, per-stripe update counters
    dir_offset            block directory: open-addressing hash table, 16-byte entries
                          (block id u64, slot u64); id 0 means empty
    cache_offset          buffer cache: ``nblocks`` blocks of 8 KiB to the end of the
                          size asked for; each block starts with a 32-byte header
                          (magic u32, crc32 u32, id u64, seq u64, version u64)

All integers are little-endian.  Offsets are page aligned so that the touch pass and
the fault counts of different backends see the same pages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "BLOCK_HEADER",
    "BLOCK_MAGIC",
    "BLOCK_SIZE",
    "DIR_ENTRY",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "PAGE",
    "STATE_CLOSED",
    "STATE_FORMATTING",
    "STATE_OPEN",
    "VERSION",
    "Layout",
    "LayoutError",
]

PAGE = 4096
BLOCK_SIZE = 8192
HEADER_SIZE = PAGE
MAGIC = b"LMSGA\x00\x00\x01"
VERSION = 1
BLOCK_MAGIC = 0x314B4C42  # "BLK1"

# magic, version, stripes, total size, block size, nblocks, dir offset, dir entries,
# cache offset, state, seed.  The per-stripe counters follow at COUNTERS_OFFSET.
HEADER = struct.Struct("<8sIIQQQQQQQQ")
COUNTERS_OFFSET = 128
# magic, crc32 of the payload, block id, seqlock sequence (odd while written), version
BLOCK_HEADER = struct.Struct("<IIQQQ")
SEQ_OFFSET = 16  # of the sequence word inside a block header
DIR_ENTRY = struct.Struct("<QQ")
U64 = struct.Struct("<Q")

# The state word: readers attach only to an OPEN SGA; the instance writes it last.
STATE_FORMATTING = 0
STATE_OPEN = 1
STATE_CLOSED = 2
STATE_OFFSET = 8 + 4 + 4 + 8 * 6

MAX_STRIPES = (HEADER_SIZE - COUNTERS_OFFSET) // 8


class LayoutError(ValueError):
    """The size is too small for an SGA, or a header does not describe one."""


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def _dir_entries(nblocks: int) -> int:
    # A power of two at least twice the block count keeps linear probes short.
    return 1 << max(1, (2 * nblocks - 1).bit_length())


@dataclass(frozen=True)
class Layout:
    """The geometry of an SGA of ``total_size`` bytes."""

    total_size: int
    nblocks: int
    dir_offset: int
    dir_entries: int
    cache_offset: int
    stripes: int
    block_size: int = BLOCK_SIZE

    @property
    def payload_size(self) -> int:
        return self.block_size - BLOCK_HEADER.size

    @property
    def dir_bits(self) -> int:
        return self.dir_entries.bit_length() - 1

    def block_offset(self, slot: int) -> int:
        return self.cache_offset + slot * self.block_size

    def counter_offset(self, stripe: int) -> int:
        return COUNTERS_OFFSET + 8 * stripe

    @classmethod
    def for_size(cls, total_size: int, stripes: int = 64) -> Layout:
        """The largest buffer cache that fits, with its directory, in ``total_size``."""
        if not 1 <= stripes <= MAX_STRIPES:
            raise LayoutError(f"stripes must be in 1..{MAX_STRIPES}, not {stripes}")
        nblocks = (total_size - HEADER_SIZE) // BLOCK_SIZE
        while nblocks > 0:
            entries = _dir_entries(nblocks)
            cache = HEADER_SIZE + _round_up(entries * DIR_ENTRY.size, PAGE)
            if cache + nblocks * BLOCK_SIZE <= total_size:
                return cls(total_size, nblocks, HEADER_SIZE, entries, cache, stripes)
            # The directory costs 32-64 bytes per block: shrink by what it needs.
            nblocks -= max(1, (cache + nblocks * BLOCK_SIZE - total_size) // BLOCK_SIZE)
        raise LayoutError(
            f"an SGA of {total_size} bytes has no room for a header, directory and one "
            f"{BLOCK_SIZE}-byte block"
        )

    def pack_header(self, state: int, seed: int) -> bytes:
        return HEADER.pack(
            MAGIC, VERSION, self.stripes, self.total_size, self.block_size, self.nblocks,
            self.dir_offset, self.dir_entries, self.cache_offset, state, seed,
        )

    @classmethod
    def from_header(cls, buf: memoryview | bytes | bytearray) -> tuple[Layout, int, int]:
        """The layout, state and seed that a header describes."""
        (magic, version, stripes, total, bsize, nblocks, dir_off, dir_entries, cache_off,
         state, seed) = HEADER.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION:
            raise LayoutError(f"not an SGA header (magic {magic!r}, version {version})")
        layout = cls(total, nblocks, dir_off, dir_entries, cache_off, stripes, bsize)
        return layout, state, seed
