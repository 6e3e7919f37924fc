"""bench/flushcost's reader on the host (shm: no msharefs needed): its unmeasured
warm-up comes before it says it started; and the ticker that runs beside it."""
from __future__ import annotations

import os
import time

from flushcost import mem
from flushcost.sharer import spawn
from flushcost.ticker import ticking
from mshare_lab import proc

NBYTES = 1 << 20
CPU = min(os.sched_getaffinity(0))


def _read(warm_s: float) -> tuple[float, float, dict[str, object]]:
    name = f"flushcost-host-{os.getpid()}-{int(warm_s * 1000)}"
    sharer = spawn(0, "shm", name, NBYTES, None)
    try:
        sharer.call(op="populate")
        t0 = time.monotonic()
        sharer.send(op="read", cpu=CPU, warm_s=warm_s)
        started = float(sharer.recv()["started"])
        time.sleep(0.2)
        sharer.send(op="stop")
        return t0, started, sharer.recv()
    finally:
        status = sharer.finish()
        mem.remove("shm", name)
        assert status == 0


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


def test_the_ticker_runs_pinned_switching_and_is_gone_after_its_block() -> None:
    def switches(pid: int) -> int:
        return int(proc.status(pid)["voluntary_ctxt_switches"])

    with ticking(CPU) as p:
        assert os.sched_getaffinity(p.pid) == {CPU}
        before = switches(p.pid)
        time.sleep(0.3)
        assert switches(p.pid) - before >= 20  # about 60 at 5 ms
    assert p.returncode == 0  # reaped: nothing left behind
