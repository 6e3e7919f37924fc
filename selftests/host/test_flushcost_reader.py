"""bench/flushcost's reader on the host (shm: no msharefs needed): the warm-up beside a
ticker comes before the reader says it started, and none of it is measured."""
from __future__ import annotations

import os
import time

from flushcost import mem
from flushcost.sharer import spawn

NBYTES = 1 << 20


def _read(warm_s: float) -> tuple[float, float, dict[str, object]]:
    name = f"flushcost-host-{os.getpid()}-{int(warm_s * 1000)}"
    sharer = spawn(0, "shm", name, NBYTES, None)
    try:
        sharer.call(op="populate")
        t0 = time.monotonic()
        sharer.send(op="read", cpu=0, warm_s=warm_s)
        started = float(sharer.recv()["started"])
        time.sleep(0.2)
        sharer.send(op="stop")
        return t0, started, sharer.recv()
    finally:
        assert sharer.finish() == 0
        mem.remove("shm", name)


def test_the_reader_says_it_started_only_after_its_warm_up() -> None:
    t0, started, result = _read(0.5)
    assert started - t0 >= 0.5
    stamps = result["stamps"]
    assert isinstance(stamps, list) and stamps and min(stamps) >= started
    assert result["warm_s"] == 0.5


def test_without_a_warm_up_the_reader_starts_at_once() -> None:
    t0, started, result = _read(0.0)
    assert started - t0 < 0.4
    assert result["warm_s"] == 0.0
