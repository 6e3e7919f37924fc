"""Stress: many processes attaching, touching, forking, exiting and being SIGKILLed."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import select
import signal
import time

import harness
import kapi
import pytest

PAGE = kapi.PAGE
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _subreaper(on: bool) -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _worker(rs: list[harness.Region], seed: int, slot: int) -> None:
    """Runs in a forked child: random attach/touch/fork steps, then a stamp and _exit."""
    rnd = random.Random(seed)
    r = rs[rnd.randrange(len(rs))]
    if rnd.random() < 0.5:  # re-attach by name instead of using the inherited mapping
        kapi.munmap(r.start, r.size)
        fd = os.open(r.path, os.O_RDWR)
        kapi.mmap(r.start, r.size, harness.RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    for _ in range(rnd.randrange(1, 24)):
        off = rnd.randrange(1, 2048) * PAGE + rnd.choice((0, 1 << 30, r.size // 2))
        kapi.poke(r.start + off, seed.to_bytes(8, "little"))
        kapi.peek(r.start + off, 8)
    if rnd.random() < 0.3 and os.fork() == 0:
        kapi.poke(r.start + (4096 + rnd.randrange(64)) * PAGE, b"grandkid")
        if rnd.random() < 0.5:
            time.sleep(rnd.random() * 0.2)
        os._exit(0)
    if rnd.random() < 0.3:
        time.sleep(rnd.random() * 0.3)
    for q in rs:  # a stamp in every region's first page says "I finished"
        kapi.poke(q.start + slot * 8, seed.to_bytes(8, "little"))
    os._exit(0)


@pytest.mark.serial
@pytest.mark.timeout(600)
def test_hundreds_of_processes_attach_touch_fork_exit_and_sigkill(
        regions: harness.Regions) -> None:
    base = kapi.meminfo()
    total, live_max = 300, 24
    rs = [regions.create() for _ in range(4)]
    rnd = random.Random(0x5EED)
    seeds = [rnd.randrange(1, 2**62) for _ in range(total)]
    finished: dict[int, int] = {}
    killed: set[int] = set()
    live: dict[int, int] = {}
    _subreaper(True)
    try:
        started = 0
        while started < total or live:
            while started < total and len(live) < live_max:
                pid = os.fork()
                if pid == 0:
                    try:
                        _worker(rs, seeds[started], started)
                    finally:
                        os._exit(1)
                live[pid] = started
                started += 1
            if live and rnd.random() < 0.25:
                victim = rnd.choice(list(live))
                time.sleep(rnd.random() * 0.02)
                os.kill(victim, signal.SIGKILL)
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid in live:
                i = live.pop(pid)
                if os.WIFSIGNALED(status):
                    assert os.WTERMSIG(status) == signal.SIGKILL, f"worker {i} died of " \
                        f"{signal.Signals(os.WTERMSIG(status)).name}"
                    killed.add(i)
                else:
                    assert os.WEXITSTATUS(status) == 0, f"worker {i} failed"
                    finished[i] = seeds[i]
        while True:  # grandchildren re-parented to us
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
    finally:
        _subreaper(False)
    print(f"# stress: {total} workers, {len(killed)} SIGKILLed, {len(finished)} finished")
    assert len(finished) + len(killed) == total
    for r in rs:
        for i, seed in finished.items():
            assert r.peek(i * 8, 8) == seed.to_bytes(8, "little"), f"worker {i} stamp lost"
    # afterwards every region can be unlinked and memory is back to its baseline
    for r in rs:
        os.unlink(r.path)
    regions.cleanup()
    ok = harness.wait_until(
        lambda: kapi.meminfo()["Shmem"] - base["Shmem"] <= 2048
        and kapi.meminfo()["PageTables"] - base["PageTables"] <= 512, 60, 0.2)
    now = kapi.meminfo()
    assert ok, f"Shmem +{now['Shmem'] - base['Shmem']} kB, " \
        f"PageTables +{now['PageTables'] - base['PageTables']} kB after the stress run"


def test_exclusive_create_race_has_one_winner(regions: harness.Regions) -> None:
    rounds, racers = 12, 6
    for _ in range(rounds):
        path = regions.path("race")
        gate, ready = harness.Gate(), harness.Counter()

        def racer(path: str = path, gate: harness.Gate = gate,
                  ready: harness.Counter = ready) -> int | None:
            ready.post()
            gate.wait()
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as e:
                return e.errno
            return None

        kids = [harness.Child(racer) for _ in range(racers)]
        ready.wait_for(racers)
        gate.open()
        got = sorted((k.result() for k in kids), key=lambda e: -1 if e is None else e)
        gate.close()
        ready.close()
        assert got == [None] + [errno.EEXIST] * (racers - 1)


def test_concurrent_first_mmaps_establish_once(regions: harness.Regions) -> None:
    """Racing creators map the same fresh file at different windows: one geometry wins."""
    path, fd = regions.open_new()
    racers = 6
    windows = [harness.take_window() for _ in range(racers)]
    gate, ready = harness.Gate(), harness.Counter()

    def racer(i: int) -> int | None:
        f = os.open(path, os.O_RDWR)
        ready.post()
        gate.wait()
        return harness.errno_of(kapi.mmap, windows[i], harness.alignment(), harness.RW,
                                kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, f)

    kids = [harness.Child(racer, i) for i in range(racers)]
    ready.wait_for(racers)
    gate.open()
    errs = [k.result() for k in kids]
    assert errs.count(None) == 1 and set(errs) <= {None, errno.EINVAL}, errs
    start, _ = harness.read_info(fd)
    assert start == windows[errs.index(None)]


def test_attach_detach_churn_while_parent_writes(region: harness.Region) -> None:
    stop = harness.Gate()
    n = 6

    def churn(i: int) -> int:
        cycles = prev = 0
        while True:
            kapi.munmap(region.start, region.size)
            fd = os.open(region.path, os.O_RDWR)
            kapi.mmap(region.start, region.size, harness.RW,
                      kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
            os.close(fd)
            kapi.poke(region.start + (i + 1) * PAGE, cycles.to_bytes(8, "little"))
            seen = int.from_bytes(kapi.peek(region.start, 8), "little")
            assert seen >= prev, f"parent's counter went back from {prev} to {seen}"
            prev = seen
            cycles += 1
            ready, _, _ = select.select([stop.r], [], [], 0)
            if ready:
                return cycles

    kids = [harness.Child(churn, i) for i in range(n)]
    last = 0
    deadline = time.monotonic() + harness.scaled(5)
    while time.monotonic() < deadline:
        last += 1
        region.poke(0, last.to_bytes(8, "little"))
        assert int.from_bytes(region.peek(0, 8), "little") == last
    stop.open()
    cycles = [k.result() for k in kids]
    assert all(c > 0 for c in cycles)
    for i, c in enumerate(cycles):
        assert int.from_bytes(region.peek((i + 1) * PAGE, 8), "little") == c - 1
