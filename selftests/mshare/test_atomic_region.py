"""libmshare.atomic on a real msharefs region (guest only): processes that attach the
region by name (sharing its page tables) count exactly and exclude each other."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import harness
import pytest
import sdkgate

import libmshare

# Not -S: the compiled extension needs _cffi_backend from site-packages.
PYTHON = [sys.executable]

WORKERS = """
import os, struct, sys, time, libmshare
from libmshare import atomic
name, procs, rounds, lockers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + float(sys.argv[5])
LOCK, INSIDE, COUNTER, VIOLATIONS, TOTAL = 0, 8, 16, 24, 4096
pids = []
for i in range(procs):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with libmshare.attach(name) as r:  # the fork child attaches by name: a handle
                buf = r.buf
                with atomic.AtomicWord(buf, TOTAL) as total:
                    for _ in range(rounds):
                        total.fetch_add(1)
                for _ in range(rounds // 10 if i < lockers else 0):
                    # A CAS spin lock around a plain update.  It yields while it waits:
                    # with more processes than CPUs, spinning out whole time slices
                    # behind a preempted holder is a convoy, under TCG a crawl.
                    while atomic.compare_exchange_u64(buf, LOCK, 0, os.getpid()) != 0:
                        os.sched_yield()
                        if time.monotonic() > deadline:
                            raise TimeoutError("the lock was never free")
                    if atomic.fetch_add_u64(buf, INSIDE, 1) != 0:
                        atomic.fetch_add_u64(buf, VIOLATIONS, 1)
                    (n,) = struct.unpack_from("=Q", buf, COUNTER)
                    struct.pack_into("=Q", buf, COUNTER, n + 1)
                    atomic.fetch_add_u64(buf, INSIDE, -1)
                    atomic.store_u64(buf, LOCK, 0)
                del buf
            code = 0
        finally:
            os._exit(code)
    pids.append(pid)
bad = sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) != 0 for p in pids)
with libmshare.attach(name) as r:
    print(bad, atomic.load_u64(r.buf, TOTAL), atomic.load_u64(r.buf, COUNTER),
          atomic.load_u64(r.buf, VIOLATIONS))
"""


@pytest.fixture
def name() -> Iterator[str]:
    sdkgate.sdk_mount()
    n = f"atomic-{os.getpid()}"
    libmshare.create(n, libmshare.alignment()).close()
    yield n
    libmshare.unlink(n)


def test_atomic_fetch_add_and_cas_lock_across_processes(name: str) -> None:
    procs, rounds, lockers = 16, 3000, 4
    limit = harness.scaled(150)
    # The workers give up by themselves before the subprocess timeout: a killed parent
    # would leave its forked children spinning.
    out = subprocess.run(
        [*PYTHON, "-c", WORKERS, name, str(procs), str(rounds), str(lockers), str(limit)],
        capture_output=True, text=True, timeout=limit + harness.scaled(60), check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    bad, total, counter, violations = map(int, out.stdout.split())
    assert bad == 0
    assert total == procs * rounds
    assert (counter, violations) == (lockers * (rounds // 10), 0)
