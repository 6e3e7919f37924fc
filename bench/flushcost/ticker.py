"""A ticker: a small process pinned to one CPU that wakes every 5 ms until told to stop,
so that the CPU switches to another mm (a CR3 load) about 200 times a second.

Why (a hypothesis that plan cpus2-offline-warm tests): under TCG a vCPU's software TLB
is resized only when it is flushed, growing when the last window used most of it and
shrinking when it used little. A reader that reads for seconds with no flush on its CPU
keeps whatever size the CPU's history left, which would explain why its rate before a
migration clustered at about 4 or about 9 million pages/s (cpus2-offline: region N = 8's
runs started near 9.6, every other case's median near 4; the medians after the
migration were 7.6-9.2 for every case). Reading beside the ticker's switches first
should grow that TLB to fit the reader's pages, the same for every backend.

A separate interpreter (not a fork of the reader), so that the reader's own faults and
file descriptors are untouched.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ticking"]

PERIOD_S = 0.005
_CODE = f"""
import os, select, sys
os.sched_setaffinity(0, {{int(sys.argv[1])}})
print("ready", flush=True)
while not select.select([sys.stdin], [], [], {PERIOD_S})[0]:
    pass
"""


@contextmanager
def ticking(cpu: int) -> Iterator[subprocess.Popen[str]]:
    """The ticker runs on ``cpu`` inside the block (it has pinned itself once the block
    starts) and has exited when the block ends."""
    p = subprocess.Popen([sys.executable, "-c", _CODE, str(cpu)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the ticker on CPU {cpu} did not start "
                               f"(status {p.wait()})")
        yield p
    finally:
        p.stdin.close()  # select sees the end of its input: it exits
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
