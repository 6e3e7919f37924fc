"""Data in a region: zero-filled, shared at once, patterns across the whole window."""

from __future__ import annotations

import os
import signal
import time

import harness
import kapi
import pytest

PAGE = kapi.PAGE


def _sparse_offsets(size: int, n: int = 128) -> list[int]:
    """n page offsets spread over the whole region, first and last page included."""
    step = size // n
    return [i * step + (i * 7 % 16) * PAGE for i in range(n)] + [size - PAGE]


def test_fresh_region_reads_zero(region: harness.Region) -> None:
    for off in _sparse_offsets(region.size, 32):
        assert region.peek(off, 64) == b"\0" * 64, hex(off)


def test_sparse_pattern_over_whole_region_seen_by_child(region: harness.Region) -> None:
    offs = _sparse_offsets(region.size)
    for i, off in enumerate(offs):
        region.poke(off, harness.pattern(i, 256))

    def body() -> list[int]:
        bad = [i for i, off in enumerate(offs) if region.peek(off, 256) != harness.pattern(i, 256)]
        for i, off in enumerate(offs):
            region.poke(off, harness.pattern(~i & 0xFFFF, 256))
        return bad

    assert harness.in_child(body) == []
    assert all(region.peek(off, 256) == harness.pattern(~i & 0xFFFF, 256)
               for i, off in enumerate(offs))


def test_dense_pages_round_trip_through_child(region: harness.Region) -> None:
    n = 96
    for i in range(n):
        region.poke(i * PAGE, harness.pattern(i))

    def body() -> int:
        v = region.view(0, n * PAGE)
        ok = sum(bytes(v[i * PAGE:(i + 1) * PAGE]) == harness.pattern(i) for i in range(n))
        v.release()
        return ok

    assert harness.in_child(body) == n


@pytest.mark.parametrize("boundary", [2 << 20, 1 << 30], ids=["pte_table", "pmd_table"])
def test_access_straddling_page_table_boundary(region: harness.Region, boundary: int) -> None:
    """A write across the end of one shared page table into the next."""
    off = 5 * boundary - 8
    region.poke(off, b"across-boundary!")
    assert harness.in_child(lambda: region.peek(off, 16)) == b"across-boundary!"


def test_last_page_of_region_usable(region: harness.Region) -> None:
    region.poke(region.size - 8, b"lastbyte")
    assert harness.in_child(lambda: region.peek(region.size - 8, 8)) == b"lastbyte"


def test_access_past_region_end_sigsegv(region: harness.Region) -> None:
    assert harness.death_signal(lambda: kapi.peek(region.start + region.size, 1)) \
        == signal.SIGSEGV


def test_access_below_region_start_sigsegv(region: harness.Region) -> None:
    assert harness.death_signal(lambda: kapi.peek(region.start - PAGE, 1)) == signal.SIGSEGV


def test_two_regions_do_not_alias(regions: harness.Regions) -> None:
    a, b = regions.create(), regions.create()
    a.poke(0, b"A" * 64)
    b.poke(0, b"B" * 64)
    assert harness.in_child(lambda: (a.peek(0, 64), b.peek(0, 64))) == (b"A" * 64, b"B" * 64)


def test_write_seen_at_once_by_other_process(region: harness.Region) -> None:
    """Ping-pong through one word: each side sees the other's write without any syscall."""
    rounds = 200
    ping, pong = region.start, region.start + 64
    kapi.poke(pong, (0).to_bytes(8, "little"))

    def spin_until(addr: int, value: int, deadline: float) -> None:
        want = value.to_bytes(8, "little")
        while kapi.peek(addr, 8) != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"never saw {value} at {addr:#x}")

    def child() -> None:
        deadline = time.monotonic() + harness.scaled(60)
        for i in range(1, rounds + 1):
            spin_until(ping, i, deadline)
            kapi.poke(pong, i.to_bytes(8, "little"))

    kid = harness.Child(child)
    deadline = time.monotonic() + harness.scaled(60)
    for i in range(1, rounds + 1):
        kapi.poke(ping, i.to_bytes(8, "little"))
        spin_until(pong, i, deadline)
    kid.result()


def test_data_outlives_creator_process(regions: harness.Regions) -> None:
    path = regions.path("orphan")

    def creator() -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                             0o600)
        start = harness.take_window()
        kapi.mmap(start, harness.alignment(), harness.RW,
                  kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
        kapi.poke(start + PAGE, b"outlived")
        return start

    start = harness.in_child(creator)
    r = regions.attach(path)
    assert r.start == start
    assert r.peek(PAGE, 8) == b"outlived"
