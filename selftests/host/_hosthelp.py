"""Helpers shared by the host tests (imported by name: keep this module name unique)."""

from __future__ import annotations

import mmap

from libmshare import addrspace

FAKE_ALIGN = 2 << 20
PAGE = mmap.PAGESIZE


def free_window(size: int = FAKE_ALIGN, align: int = FAKE_ALIGN) -> int:
    start = addrspace.find_free_window(size, align)
    assert start is not None
    return start


def mapped_ranges() -> list[tuple[int, int]]:
    return [(e.start, e.end) for e in addrspace.read_maps()]


def is_mapped(start: int, size: int) -> bool:
    return any(lo < start + size and start < hi for lo, hi in mapped_ranges())
