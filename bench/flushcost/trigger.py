"""The host migration a run times, and how many pages it migrated.

Two triggers:

- ``compact``: ``echo 1 > /proc/sys/vm/compact_memory`` (every zone, MIGRATE_SYNC).  How
  many shared pages it moves depends on where compaction's two scanners meet, which
  varies from run to run (0 to half the shared pages in the n1000 runs of 2026-12-07).
- ``offline``: memory-offline every memory block that holds shared pages (``echo offline
  > /sys/devices/system/memory/memoryN/state``), which migrates every page of the block
  elsewhere (MIGRATE_SYNC, reason memory_hotplug), then online them again, untimed.
  Only blocks of ZONE_MOVABLE can be emptied (a Normal block holds kernel pages and
  offlining it fails with EBUSY), so the guest boots with ``movablecore=``; the allocator
  puts the shared pages there, and all but the few in other zones or in a movable
  block holding reserved pages (tried once per boot, then left alone) move.  Such a
  busy block would soon hold every run's pages: memory onlined again goes to the tail
  of the free lists, so each run's pages come from the next block up, the top one is
  the busy one, and the pages its runs free are handed out first again (the first
  cpus4-offline run moved no shared page in 7 of its 12 repetitions).  So before each
  run :func:`fence` takes the busy blocks' free pages out of the allocator's reach.

Every page migrated on the way (shared or not) is counted by the
``migrate:mm_migrate_pages`` tracepoint (our kernels have no VM event counters), where
the kernel has tracing (the debug flavors; not release).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import mem

__all__ = ["TRIGGERS", "block_pages", "compact", "counting_migrations", "fence", "offline"]

TRIGGERS = ("compact", "offline")
TRACING = Path("/sys/kernel/tracing")
EVENT = TRACING / "events/migrate/mm_migrate_pages"
MEMORY = Path("/sys/devices/system/memory")


def compact() -> float:
    t0 = time.perf_counter()
    Path("/proc/sys/vm/compact_memory").write_text("1\n")
    return time.perf_counter() - t0


def block_pages() -> int:
    """Pages per memory block (the unit that goes offline)."""
    return int((MEMORY / "block_size_bytes").read_text(), 16) // os.sysconf("SC_PAGE_SIZE")


def _movable(block: int) -> bool:
    try:
        return (MEMORY / f"memory{block}/valid_zones").read_text().split() == ["Movable"]
    except OSError:
        return False


# Movable blocks that refused to go offline in this boot: memblock's early allocations
# sit at the top of memory, inside ZONE_MOVABLE, as reserved pages.  Tried once.
_busy: set[int] = set()


# Memory of this (the driver's) process holding free pages of the busy blocks.
_held: list[mmap.mmap] = []
FENCE_CHUNK = 4 << 20
FENCE_MAX = 1 << 30


def fence() -> int:
    """Hold the free pages of the busy blocks found so far, in this process, until it
    exits: touch 4 MiB chunks of anonymous memory, keep those with a page in a busy
    block (FENCE_MAX in all), give back the rest once 4 chunks in a row had none.
    Pages of busy blocks newly held."""
    if not _busy:
        return 0
    per_block = block_pages()
    held, misses, spare = 0, 0, []
    while misses < 4 and len(_held) * FENCE_CHUNK < FENCE_MAX:
        chunk = mmap.mmap(-1, FENCE_CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        chunk.write(b"\1" * FENCE_CHUNK)  # every page faulted in
        addr = mem.address(chunk)
        busy = sum(1 for pfn in mem.pfns(addr, FENCE_CHUNK) if pfn // per_block in _busy)
        if busy:
            _held.append(chunk)
            held, misses = held + busy, 0
        else:
            spare.append(chunk)
            misses += 1
    for chunk in spare:
        chunk.close()
    return held


def offline(blocks: Iterable[int]) -> tuple[float, list[int], list[int]]:
    """Offline the ZONE_MOVABLE blocks among ``blocks``, then online them again as
    movable: the seconds the successful offlinings took, the blocks they emptied, and
    the blocks that could not be (EBUSY: reserved pages; their shared pages stay)."""
    elapsed, done, busy = 0.0, [], []
    for b in sorted(set(blocks)):
        if not _movable(b):
            continue
        if b in _busy:
            busy.append(b)
            continue
        t0 = time.perf_counter()
        try:
            (MEMORY / f"memory{b}/state").write_text("offline\n")
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            _busy.add(b)
            busy.append(b)
            continue
        elapsed += time.perf_counter() - t0
        done.append(b)
    for b in done:
        (MEMORY / f"memory{b}/state").write_text("online_movable\n")
    return elapsed, done, busy


@contextlib.contextmanager
def counting_migrations() -> Iterator[list[int]]:
    """Pages migrated inside the block: the list's one item, added on exit; the list stays
    empty on a kernel without the tracepoint (the release flavor has no tracing)."""
    if not EVENT.is_dir() and TRACING.is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=False,
                       stderr=subprocess.DEVNULL)
    count: list[int] = []
    if not EVENT.is_dir():
        yield count
        return
    (TRACING / "trace").write_text("")
    (EVENT / "enable").write_text("1\n")
    try:
        yield count
    finally:
        (EVENT / "enable").write_text("0\n")
        text = (TRACING / "trace").read_text()
        count.append(sum(int(n) for n in re.findall(r"nr_succeeded=(\d+)", text)))
