"""Reading the process's address map and picking a free aligned window in it.

Every process that attaches a region maps it at the same address, so a good window is
free not only here but in the region's future peers too.  The kernel puts each
process's mmap area just below a randomised ``mmap_base`` near the top of the address
space and grows it downwards.  The policy: the highest aligned window that is free in
``/proc/self/maps`` and lies below the lowest ``mmap_base`` the kernel could give any
process (its stack gap plus the full randomisation range), so that another process's
libraries are unlikely to sit in it.  The heap grows up from low addresses, far away.

The answer is only a candidate: another thread may map there first, which is why the
caller maps with MAP_FIXED_NOREPLACE and retries on EEXIST.
"""

from __future__ import annotations

import functools
import mmap as _pymmap
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

from .errors import AddressRangeError, AlignmentError
from .sizes import format_size

__all__ = [
    "TASK_SIZE",
    "MapEntry",
    "check_size",
    "check_window",
    "find_free_window",
    "lowest_mmap_base",
    "parse_maps",
    "read_maps",
]

# x86_64 with 4-level paging: the top of the user address space (47 bits minus the
# guard page).  5-level machines only hand out higher addresses on request.
TASK_SIZE = 0x7FFFFFFFF000

# arch/x86/mm/mmap.c: mmap_base = TASK_SIZE - gap - rnd, where gap is the stack
# rlimit plus the stack's own randomisation (22 bits of pages) and guard gap, clamped.
_MIN_STACK_GAP = 128 << 20
_MAX_STACK_GAP = TASK_SIZE // 6 * 5
_STACK_RND = 16 << 30
_STACK_GUARD = 1 << 20
_DEFAULT_MMAP_RND_BITS = 28  # x86_64 default; /proc/sys/vm/mmap_rnd_bits is root-only


@dataclass(frozen=True)
class MapEntry:
    """One line of ``/proc/PID/maps``: ``[start, end)`` and the mapped file's name."""

    start: int
    end: int
    name: str


@dataclass(frozen=True)
class MapDetail(MapEntry):
    """A line of ``/proc/PID/maps`` with its permissions, file offset and inode, for
    readers that look at them.  A class of its own: every field a frozen dataclass has
    costs its construction, and the SDK's placement, which parses the whole of its
    process's maps for every region it places, needs only the ranges."""

    perms: str
    offset: int
    inode: int


@overload
def parse_maps(text: str) -> list[MapEntry]: ...


@overload
def parse_maps(text: str, *, detail: Literal[True]) -> list[MapDetail]: ...


def parse_maps(text: str, *, detail: bool = False) -> Sequence[MapEntry]:
    """Parse the text of ``/proc/PID/maps``; ``detail`` also keeps each line's
    permissions, offset and inode (as MapDetail)."""
    entries: list[MapEntry] = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if not fields:
            continue
        lo, _, hi = fields[0].partition("-")
        name = fields[5] if len(fields) > 5 else ""
        if detail:
            entries.append(MapDetail(int(lo, 16), int(hi, 16), name, fields[1],
                                     int(fields[2], 16), int(fields[4])))
        else:
            entries.append(MapEntry(int(lo, 16), int(hi, 16), name))
    return entries


def read_maps() -> list[MapEntry]:
    """This process's mappings, from ``/proc/self/maps``."""
    with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as f:
        return parse_maps(f.read())


# Sysctls an administrator sets at boot: read once per process, not per region.
@functools.cache
def _mmap_min_addr() -> int:
    try:
        with open("/proc/sys/vm/mmap_min_addr", encoding="ascii") as f:
            return max(int(f.read()), _pymmap.PAGESIZE)
    except (OSError, ValueError):
        return 0x10000


@functools.cache
def _mmap_rnd_bits() -> int:
    try:
        with open("/proc/sys/vm/mmap_rnd_bits", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _DEFAULT_MMAP_RND_BITS


def lowest_mmap_base() -> int:
    """A conservative estimate of the lowest mmap_base any process may get."""
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    # With an unlimited stack the kernel uses the legacy bottom-up layout, whose mmap
    # area starts low; only the stack then lives near the top.
    rlimit = 0 if soft == resource.RLIM_INFINITY else soft
    gap = min(max(rlimit + _STACK_RND + _STACK_GUARD, _MIN_STACK_GAP), _MAX_STACK_GAP)
    return TASK_SIZE - gap - (1 << (_mmap_rnd_bits() + 12))


def find_free_window(
    size: int, align: int, entries: list[MapEntry] | None = None
) -> int | None:
    """Start of the highest free ``align``-aligned window of ``size`` bytes, or None."""
    if entries is None:
        entries = read_maps()
    limit = lowest_mmap_base()
    floor = _mmap_min_addr()
    busy = sorted((e.start, e.end) for e in entries if e.start < TASK_SIZE)
    start = (limit - size) // align * align
    # Walk down from the top; each collision jumps below the mapping that caused it.
    i = len(busy) - 1
    while start >= floor:
        end = start + size
        while i >= 0 and busy[i][0] >= end:
            i -= 1
        if i < 0 or busy[i][1] <= start:
            return start
        start = (busy[i][0] - size) // align * align
    return None


def _describe(align: int) -> str:
    return f"{align:#x} ({format_size(align)})"


def check_size(size: int, align: int) -> None:
    """Validate a region size before any system call."""
    if size <= 0:
        raise AlignmentError(
            f"size {size} must be a positive multiple of the alignment {_describe(align)}"
        )
    if size % align:
        up = -(-size // align) * align
        raise AlignmentError(
            f"size {size:#x} ({format_size(size)}) is not a multiple of the alignment "
            f"{_describe(align)}; the next multiple is {format_size(up)}"
        )


def check_window(start: int, size: int, align: int) -> None:
    """Validate a caller-supplied window before any system call."""
    check_size(size, align)
    if start <= 0 or start % align:
        raise AlignmentError(
            f"start {start:#x} is not a positive multiple of the alignment {_describe(align)}"
        )
    if start + size > TASK_SIZE:
        raise AddressRangeError(
            f"window {start:#x}-{start + size:#x} ends above the user address space limit "
            f"{TASK_SIZE:#x} (alignment {_describe(align)})"
        )
