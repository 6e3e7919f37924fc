"""Futexes on region memory: what PostgreSQL's semaphores and any pthread user rely on.

glibc's own process-shared objects, called through ctypes on addresses in a region:
``sem_init(pshared=1)`` semaphores (PostgreSQL's), a PTHREAD_PROCESS_SHARED mutex under
contention, and a robust mutex whose holder is SIGKILLed while another process waits.
Shared futexes are keyed by the page behind the address, so every process must reach the
same page through the region's tables; a wrong key is a lost wake-up, which the timed
waits here turn into a failure after DEADLINE seconds instead of a hung suite.

The children are forked (no new interpreter: cheap under TCG).  "attached" children first
unmap the window they inherited and map the region again from its file, as an unrelated
process would; "inherited" ones keep the fork's mapping, as PostgreSQL's backends do.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
from collections.abc import Callable

import harness
import kapi
import pytest

pytestmark = pytest.mark.timeout(300)

DEADLINE = 60
PTHREAD_PROCESS_SHARED = 1
PTHREAD_MUTEX_ROBUST = 1
CLOCK_REALTIME = 0

libc = ctypes.CDLL(None, use_errno=True)
for _name in ("sem_init", "sem_post", "sem_timedwait", "sem_getvalue",
              "pthread_mutex_init", "pthread_mutex_timedlock", "pthread_mutex_unlock",
              "pthread_mutex_consistent", "pthread_mutexattr_init",
              "pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust"):
    getattr(libc, _name).restype = ctypes.c_int

# Offsets in the region (page 1: away from anything a region header might hold).
SEM_A, SEM_B, MUTEX, COUNTER, ROBUST = 4096, 4096 + 64, 4096 + 128, 4096 + 192, 4096 + 256


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def deadline() -> Timespec:
    t = time.clock_gettime(time.CLOCK_REALTIME) + harness.scaled(DEADLINE)
    return Timespec(int(t), int((t % 1) * 1e9))


def at(region: harness.Region, off: int) -> ctypes.c_void_p:
    return ctypes.c_void_p(region.start + off)


def sem_wait(region: harness.Region, off: int) -> None:
    ts = deadline()
    while libc.sem_timedwait(at(region, off), ctypes.byref(ts)) != 0:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise AssertionError(f"sem_timedwait: {os.strerror(err)} (a lost wake-up?)")


def sem_post(region: harness.Region, off: int) -> None:
    assert libc.sem_post(at(region, off)) == 0


def mutex_init(region: harness.Region, off: int, robust: bool = False) -> None:
    attr = ctypes.create_string_buffer(16)
    assert libc.pthread_mutexattr_init(attr) == 0
    assert libc.pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED) == 0
    if robust:
        assert libc.pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST) == 0
    assert libc.pthread_mutex_init(at(region, off), attr) == 0


def mutex_lock(region: harness.Region, off: int) -> int:
    """pthread_mutex_timedlock's result (0, or EOWNERDEAD for a robust mutex); a timeout
    fails."""
    ts = deadline()
    r: int = libc.pthread_mutex_timedlock(at(region, off), ctypes.byref(ts))
    assert r != errno.ETIMEDOUT, "pthread_mutex_timedlock timed out (a lost wake-up?)"
    return r


def mutex_unlock(region: harness.Region, off: int) -> None:
    assert libc.pthread_mutex_unlock(at(region, off)) == 0


def reattach(region: harness.Region) -> harness.Region:
    """In a forked child: drop the inherited window, map the region again from its file."""
    kapi.munmap(region.start, region.size)
    fd = os.open(region.path, os.O_RDWR)
    start, size = harness.read_info(fd)
    kapi.mmap(start, size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    os.close(fd)
    return harness.Region(region.path, -1, start, size)


def in_child(region: harness.Region, attach: bool,
             fn: Callable[[harness.Region], object]) -> harness.Child:
    def body() -> object:
        return fn(reattach(region) if attach else region)
    return harness.Child(body)


def pingpong(region: harness.Region, n: int, ping: bool) -> int:
    for _ in range(n):
        if ping:
            sem_post(region, SEM_A)
            sem_wait(region, SEM_B)
        else:
            sem_wait(region, SEM_A)
            sem_post(region, SEM_B)
    return n


@pytest.mark.parametrize("attach", [True, False], ids=["attached", "inherited"])
def test_semaphore_ping_pong(region: harness.Region, attach: bool) -> None:
    """Two children pass a token 500 times through two pshared semaphores: each post
    must wake the other process, asleep in FUTEX_WAIT."""
    assert libc.sem_init(at(region, SEM_A), 1, 0) == 0
    assert libc.sem_init(at(region, SEM_B), 1, 0) == 0
    pong = in_child(region, attach, lambda r: pingpong(r, 500, False))
    ping = in_child(region, attach, lambda r: pingpong(r, 500, True))
    assert ping.result(harness.scaled(DEADLINE * 3)) == 500
    assert pong.result(harness.scaled(DEADLINE * 3)) == 500


def test_semaphore_posted_by_the_creator(region: harness.Region) -> None:
    """A waiter in an attached child is woken by sem_post from this process, which created
    the region: two different mappings of the same page."""
    assert libc.sem_init(at(region, SEM_A), 1, 0) == 0
    assert libc.sem_init(at(region, SEM_B), 1, 0) == 0
    pong = in_child(region, True, lambda r: pingpong(r, 100, False))
    assert pingpong(region, 100, True) == 100
    assert pong.result(harness.scaled(DEADLINE * 3)) == 100


def add_under_lock(region: harness.Region, n: int) -> int:
    counter = ctypes.c_uint64.from_address(region.start + COUNTER)
    for i in range(n):
        assert mutex_lock(region, MUTEX) == 0
        v = counter.value
        if i % 8 == 0:
            os.sched_yield()  # hold it a while: the others sleep in the kernel
        counter.value = v + 1
        mutex_unlock(region, MUTEX)
    return n


@pytest.mark.parametrize("procs", [2, 4])
def test_mutex_contention(region: harness.Region, procs: int) -> None:
    """procs children (half attached, half inherited) add 1 to one counter 1000 times each
    under a process-shared mutex, yielding while they hold it: no update lost, none hung."""
    n = 1000
    mutex_init(region, MUTEX)
    ctypes.c_uint64.from_address(region.start + COUNTER).value = 0
    kids = [in_child(region, i % 2 == 0, lambda r: add_under_lock(r, n)) for i in range(procs)]
    for k in kids:
        assert k.result(harness.scaled(DEADLINE * 4)) == n
    assert ctypes.c_uint64.from_address(region.start + COUNTER).value == procs * n


def hold_robust(region: harness.Region, ready: harness.Gate) -> None:
    assert mutex_lock(region, ROBUST) == 0
    os.write(ready.w, b"l")
    while True:
        time.sleep(1)


def take_robust(region: harness.Region) -> str:
    r = mutex_lock(region, ROBUST)
    assert r == errno.EOWNERDEAD, f"lock gave {os.strerror(r)}, not EOWNERDEAD"
    assert libc.pthread_mutex_consistent(at(region, ROBUST)) == 0
    mutex_unlock(region, ROBUST)
    assert mutex_lock(region, ROBUST) == 0
    mutex_unlock(region, ROBUST)
    return "recovered"


@pytest.mark.parametrize("waiting", [True, False], ids=["waiter-asleep", "no-waiter"])
def test_robust_mutex_holder_sigkilled(region: harness.Region, waiting: bool) -> None:
    """The holder (an attached child) of a robust mutex is SIGKILLed: the kernel's
    robust-list walk at its exit marks the futex OWNER_DIED and wakes a waiter asleep on
    it (or leaves the mark for the next locker), which gets EOWNERDEAD, makes the mutex
    consistent and locks it again."""
    mutex_init(region, ROBUST, robust=True)
    ready = harness.Gate()
    holder = in_child(region, True, lambda r: hold_robust(r, ready))
    taker = None
    try:
        ready.wait(harness.scaled(DEADLINE))
        if waiting:
            taker = in_child(region, False, take_robust)
            time.sleep(0.5)
            assert os.waitpid(taker.pid, os.WNOHANG) == (0, 0), "the waiter did not wait"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        with pytest.raises(harness.ChildKilled):
            holder.result(harness.scaled(DEADLINE))
        ready.close()
    assert (taker.result(harness.scaled(DEADLINE)) if taker else take_robust(region)) == \
        "recovered"
