"""Where the fuzzer keeps what inside a region, and the bytes it expects there.

Data pages (the first DATA_PAGES and the window's last page) are written only by the
coordinator, one byte pattern per batch: no call of a worker may change them.  Each
worker owns SLOT_PAGES pages after them and keeps a shadow of what it wrote there.
"""

from __future__ import annotations

from pathlib import Path

from mshare_lab import kapi

HERE = Path(__file__).resolve().parent

PAGE = kapi.PAGE
DATA_PAGES = 32
SLOT_BASE = 64
SLOT_PAGES = 4
MAX_WORKERS = 16
REGIONS = 2


def data_pages(size: int) -> list[int]:
    """Offsets of the data pages of a window of `size` bytes."""
    return [i * PAGE for i in range(DATA_PAGES)] + [size - PAGE]


def data_byte(batch: int, region: int, off: int) -> int:
    """The byte every data page holds (first and last byte) in this batch."""
    return (batch * 131 + region * 29 + off // PAGE * 7 + 1) % 251 + 1


# The coordinator after a batch and the workers during it check data pages alike.
def data_want(batch: int, region: int, off: int) -> bytes:
    """What peek_data() must read from the data page at ``off`` in this batch."""
    return bytes([data_byte(batch, region, off)]) * 2


def peek_data(start: int, off: int) -> bytes:
    """The first and last byte of the data page at ``off`` of a window mapped at ``start``."""
    return kapi.peek(start + off, 1) + kapi.peek(start + off + PAGE - 1, 1)


def slot_offsets(worker: int) -> list[int]:
    base = SLOT_BASE + worker * SLOT_PAGES
    return [(base + i) * PAGE for i in range(SLOT_PAGES)]
