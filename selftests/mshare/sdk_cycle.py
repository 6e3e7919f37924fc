"""The SDK side of test_sdk_latency, run as its own process as the C side is.

Usage: sdk_cycle.py NAME SIZE START ITERATIONS given|picked; times the cycle with START
given and with the start picked, in the order the last argument names first, and prints
nanoseconds per cycle for each: "GIVEN PICKED".
Measured in a fresh interpreter, not in the test's: a pytest process that has run the
serial phase's other cases timed the same loop 10-20% slower (why is not known: not its
collector) while the C program, always a fresh process, did not slow.  One cycle runs untimed
first, as in the C program: both sides' one-time costs (the SDK's mount lookup, the
first page faults on code) stay out.
"""

from __future__ import annotations

import gc
import sys
import time

import libmshare


def cycle(name: str, size: int, start: int | None) -> None:
    """create (O_EXCL, fchmod, mmap), touch, close, attach, read, close, unlink."""
    r = libmshare.create(name, size, start=start)
    r.buf[0] = 1
    r.close()
    a = libmshare.attach(name)
    if a.buf[0] != 1:
        raise SystemExit("data lost")
    a.close()
    libmshare.unlink(name)


def timed(name: str, size: int, start: int | None, n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        cycle(name, size, start)
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str]) -> int:
    name, size, start, n, first = argv[1], int(argv[2], 0), int(argv[3], 0), int(argv[4]), argv[5]
    cycle(name, size, start)
    # Collector off, as timeit does: its passes are the interpreter's, not the SDK's.
    gc.disable()
    if first == "given":
        given = timed(name, size, start, n)
        picked = timed(name, size, None, n)
    else:
        picked = timed(name, size, None, n)
        given = timed(name, size, start, n)
    print(given, picked)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
