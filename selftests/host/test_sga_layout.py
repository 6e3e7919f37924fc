"""examples.sga.layout: the SGA's geometry and header."""

from __future__ import annotations

import pytest

from examples.sga.layout import (
    BLOCK_SIZE,
    DIR_ENTRY,
    HEADER_SIZE,
    PAGE,
    STATE_OFFSET,
    STATE_OPEN,
    Layout,
    LayoutError,
)


@pytest.mark.parametrize("size", [64 << 10, 1 << 20, 3 << 20 | 12345, 64 << 20, 1 << 30])
def test_everything_fits_and_is_page_aligned(size: int) -> None:
    lay = Layout.for_size(size)
    assert lay.dir_offset == HEADER_SIZE
    assert lay.cache_offset % PAGE == 0
    assert lay.dir_offset + lay.dir_entries * DIR_ENTRY.size <= lay.cache_offset
    assert lay.cache_offset + lay.nblocks * BLOCK_SIZE <= size
    # The buffer cache fills the rest: not even one more block would fit.
    bigger = Layout(size, lay.nblocks + 1, lay.dir_offset, lay.dir_entries,
                    lay.cache_offset, lay.stripes)
    assert bigger.cache_offset + bigger.nblocks * BLOCK_SIZE > size


@pytest.mark.parametrize("size", [1 << 20, 64 << 20])
def test_directory_is_a_power_of_two_at_least_twice_the_blocks(size: int) -> None:
    lay = Layout.for_size(size)
    assert lay.dir_entries & (lay.dir_entries - 1) == 0
    assert lay.dir_entries >= 2 * lay.nblocks
    assert 1 << lay.dir_bits == lay.dir_entries


def test_one_gib_holds_about_131k_blocks() -> None:
    lay = Layout.for_size(1 << 30)
    assert 130_000 < lay.nblocks < (1 << 30) // BLOCK_SIZE


@pytest.mark.parametrize("size", [0, HEADER_SIZE, HEADER_SIZE + BLOCK_SIZE])
def test_too_small_is_refused(size: int) -> None:
    with pytest.raises(LayoutError, match="no room"):
        Layout.for_size(size)


@pytest.mark.parametrize("stripes", [0, 1000])
def test_stripes_must_fit_in_the_header(stripes: int) -> None:
    with pytest.raises(LayoutError, match="stripes"):
        Layout.for_size(1 << 20, stripes)


def test_header_round_trip() -> None:
    lay = Layout.for_size(8 << 20, stripes=16)
    buf = bytearray(lay.pack_header(STATE_OPEN, 42))
    assert Layout.from_header(buf) == (lay, STATE_OPEN, 42)
    assert int.from_bytes(buf[STATE_OFFSET:STATE_OFFSET + 8], "little") == STATE_OPEN


def test_header_with_a_wrong_magic_is_refused() -> None:
    buf = bytearray(Layout.for_size(1 << 20).pack_header(STATE_OPEN, 1))
    buf[0] ^= 0xFF
    with pytest.raises(LayoutError, match="not an SGA"):
        Layout.from_header(buf)
