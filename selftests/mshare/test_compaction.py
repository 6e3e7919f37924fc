"""Host-side changes under running sharers: compaction moves region pages and regions are
torn down and recreated, while other processes read and write.  No process may ever see
stale data (a lost write, a counter going backwards) or foreign data (another region's
or a freed page's contents)."""

from __future__ import annotations

import os
import struct
import time

import harness
import kapi
import pytest

pytestmark = [pytest.mark.serial, pytest.mark.timeout(600)]

PAGE = kapi.PAGE
NPAGES = 512  # 2 MiB: one full shared PTE table
REC = struct.Struct("=QQ")  # (owner magic, counter) at the start of each page


def _compact() -> None:
    with open("/proc/sys/vm/compact_memory", "w") as f:
        f.write("1")


def _vmstat(key: str) -> int | None:
    """A /proc/vmstat counter; None without it (event counters need VM_EVENT_COUNTERS)."""
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == key:
                return int(v)
    return None


def _pfns(start: int, n: int) -> list[int]:
    out = []
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        raw = f.read(8 * n)
    for (e,) in struct.iter_unpack("=Q", raw):
        out.append(e & ((1 << 55) - 1) if e >> 63 else 0)
    return out


def test_compaction_under_readers_and_writers_loses_nothing(region: harness.Region) -> None:
    writers = 2
    magic = [0x5A5A0000 + w for w in range(writers)]
    for p in range(NPAGES):
        region.poke(p * PAGE, REC.pack(magic[p % writers], 0))
    stop, ready = harness.Gate(), harness.Counter()

    def writer(w: int) -> tuple[int, list[str]]:
        errors: list[str] = []
        mine = list(range(w, NPAGES, writers))
        count = {p: 0 for p in range(NPAGES)}
        rounds = 0
        ready.post()
        while not stop.is_open():
            rounds += 1
            for p in mine:
                kapi.poke(region.start + p * PAGE, REC.pack(magic[w], rounds))
                got = REC.unpack(kapi.peek(region.start + p * PAGE, 16))
                if got != (magic[w], rounds):
                    errors.append(f"page {p}: wrote {rounds}, read back {got}")
            for p in range(NPAGES):  # everybody's pages: right owner, never backwards
                owner, c = REC.unpack(kapi.peek(region.start + p * PAGE, 16))
                if owner != magic[p % writers] or c < count[p]:
                    errors.append(f"page {p}: saw {owner:#x}/{c} after {count[p]}")
                count[p] = c
            if len(errors) > 20:
                break
        return rounds, errors

    kids = [harness.Child(writer, w) for w in range(writers)]
    ready.wait_for(writers)
    pfn_before = _pfns(region.start, NPAGES)
    migrated = _vmstat("pgmigrate_success")
    deadline = time.monotonic() + 20
    compactions = 0
    while time.monotonic() < deadline or compactions < 3:
        _compact()
        compactions += 1
    stop.open()
    results = [k.result() for k in kids]
    moved = sum(a != b for a, b in zip(pfn_before, _pfns(region.start, NPAGES), strict=True)
                if a and b)
    now = _vmstat("pgmigrate_success")
    migrations = "n/a" if now is None or migrated is None else f"+{now - migrated}"
    print(f"# compaction: {compactions} runs, pgmigrate_success {migrations}, region pages "
          f"moved {moved}/{NPAGES}, writer rounds {[r[0] for r in results]}")
    for rounds, errors in results:
        assert rounds > 0
        assert errors == []


def test_teardown_and_recreate_never_shows_stale_data(regions: harness.Regions) -> None:
    """A long-lived sharer attaches generation after generation of a region at the same
    address while the previous one is unlinked, freed and compacted away."""
    generations = 16
    start = harness.take_window()
    names = [regions.path(f"gen{g}") for g in range(generations)]
    to_kid, from_kid = os.pipe(), os.pipe()
    marked = [0, 1, 17, 255, 511, 4096]  # pages stamped with the generation

    def sharer() -> list[str]:
        errors = []
        for g in range(generations):
            assert os.read(to_kid[0], 1) == b"g"
            fd = os.open(names[g], os.O_RDWR)
            kapi.mmap(start, harness.alignment(), harness.RW,
                      kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
            for p in marked:
                got = kapi.peek(start + p * PAGE, 8)
                if got != (g + 1).to_bytes(8, "little"):
                    errors.append(f"gen {g} page {p}: {got.hex()}")
            if kapi.peek(start + 2 * PAGE, 8) != b"\0" * 8:
                errors.append(f"gen {g}: unwritten page not zero")
            kapi.poke(start + 3 * PAGE, b"ack")
            kapi.munmap(start, harness.alignment())
            os.close(fd)
            os.write(from_kid[1], b"a")
        return errors

    kid = harness.Child(sharer)
    for g in range(generations):
        r = regions.create(path=names[g], start=start)
        for p in marked:
            r.poke(p * PAGE, (g + 1).to_bytes(8, "little"))
        os.write(to_kid[1], b"g")
        assert os.read(from_kid[0], 1) == b"a"
        assert r.peek(3 * PAGE, 3) == b"ack"
        regions.cleanup()
        if g % 4 == 3:
            _compact()
    assert kid.result() == []
    for fd in (*to_kid, *from_kid):
        os.close(fd)
