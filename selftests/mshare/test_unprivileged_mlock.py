"""RLIMIT_MEMLOCK never counts a region window (second review, F2).

Run unprivileged: a child forked after the imports drops the window it inherited,
drops to uid/gid 65534 (no CAP_IPC_LOCK) with RLIMIT_MEMLOCK 64 MiB above its own size,
and attaches a region that root created with mode 0666.  (mlockall(MCL_CURRENT) compares
the whole address space with the limit, and a forked pytest worker alone is larger than
64 MiB: the limit covers the process and leaves 64 MiB to spare, far below the 512 GiB
window.)  The window is never locked or populated, so neither mlockall() nor mlock()
over it may count it against the limit.
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Callable
from typing import Any

import harness
import kapi
import pytest

from mshare_lab import proc

PAGE = kapi.PAGE
MEMLOCK = 64 << 20
SAMPLE = 256  # pages of the window checked in pagemap (the first ones and a spread)
PR_SET_DUMPABLE = 4
_prctl = ctypes.CDLL(None, use_errno=True).prctl


@pytest.fixture
def shared(region: harness.Region) -> harness.Region:
    """A fresh (unpopulated) region root created, open to everyone."""
    os.chmod(region.path, 0o666)
    return region


def _attach(r: harness.Region) -> None:
    """In the child, unprivileged: attach by name."""
    fd = os.open(r.path, os.O_RDWR)
    kapi.mmap(r.start, r.size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)


def _unprivileged(r: harness.Region, fn: Callable[[], Any]) -> Any:
    """fn() in a child without the inherited window, as uid 65534 with RLIMIT_MEMLOCK
    64 MiB above the child's size."""
    def body() -> Any:
        kapi.munmap(r.start, r.size)
        own = proc.status_kib("VmSize") * 1024
        assert own < 1 << 30, f"the child maps {own >> 20} MiB already: another window?"
        limit = own + MEMLOCK
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
        harness.drop_privileges()
        # setuid() made the child undumpable, and /proc/self/pagemap root's: undo that.
        if _prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")
        return fn()

    return harness.in_child(body)


def _present(r: harness.Region) -> int:
    head = kapi.pagemap(r.start, SAMPLE // 2)
    step = r.size // (SAMPLE // 2)
    spread = [kapi.pagemap(r.start + i * step)[0] for i in range(SAMPLE // 2)]
    return sum(1 for e in head + spread if e & kapi.PM_PRESENT)


def test_unprivileged_mlockall_without_region_succeeds(shared: harness.Region) -> None:
    """The control: the limit covers the child's own memory."""
    assert _unprivileged(shared, lambda: harness.errno_of(
        kapi.mlockall, kapi.MCL_CURRENT | kapi.MCL_FUTURE)) is None


def test_unprivileged_mlockall_after_attach_succeeds(shared: harness.Region) -> None:
    def body() -> int | None:
        _attach(shared)
        return harness.errno_of(kapi.mlockall, kapi.MCL_CURRENT | kapi.MCL_FUTURE)

    assert _unprivileged(shared, body) is None


def test_unprivileged_mlock_of_window_succeeds(shared: harness.Region) -> None:
    def body() -> int | None:
        _attach(shared)
        return harness.errno_of(kapi.mlock, shared.start, shared.size)

    assert _unprivileged(shared, body) is None


def test_unprivileged_mlockall_and_mlock_leave_window_unpopulated(
        shared: harness.Region) -> None:
    def body() -> int:
        _attach(shared)
        kapi.mlockall(kapi.MCL_CURRENT | kapi.MCL_FUTURE)
        kapi.mlock(shared.start, shared.size)
        return _present(shared)

    assert _unprivileged(shared, body) == 0


def test_unprivileged_mlockall_and_mlock_do_not_lock_window(shared: harness.Region) -> None:
    """VmLck counts what the child locked of its own memory, none of the window: at most
    its size outside the window, and below the limit."""
    def body() -> tuple[int, int]:
        _attach(shared)
        kapi.mlockall(kapi.MCL_CURRENT | kapi.MCL_FUTURE)
        kapi.mlock(shared.start, shared.size)
        return proc.status_kib("VmLck"), proc.status_kib("VmSize") - (shared.size >> 10)

    locked, own = _unprivileged(shared, body)
    assert locked <= own, f"VmLck {locked} kB, but only {own} kB are outside the window"


def test_unprivileged_mlock_of_own_memory_with_region_mapped_succeeds(
        shared: harness.Region) -> None:
    def body() -> int | None:
        _attach(shared)
        anon = kapi.mmap(0, 1 << 20, harness.RW, kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS, -1)
        return harness.errno_of(kapi.mlock, anon, 1 << 20)

    assert _unprivileged(shared, body) is None
