"""The region fuzzer's short mode: a fixed seed, a bounded time, no finding, no splat.

The long mode (an hour or more, on demand) is `python3 -m selftests.fuzz --seconds 3600`;
see selftests/README.md."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import harness
import pytest

from mshare_lab import proc

SEED = int(os.environ.get("LIBMSHARE_FUZZ_SEED", "20261201"))
SECONDS = float(os.environ.get("LIBMSHARE_FUZZ_SECONDS", "150"))


def _group_tasks(group: int) -> str:
    """Every task of the fuzzer's process group and where it waits: what an overrun
    leaves to explain it."""
    return "\n".join(proc.task_sites(lambda t: proc.pgid(t) == group)) or "  (no task left)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.serial
@pytest.mark.timeout(900)
def test_region_fuzzer_short_mode_finds_nothing(msharefs: str) -> None:
    out = harness.scratch() / "fuzz-short.json"
    limit = harness.scaled(SECONDS * 4 + 120)
    # Its own process group: on a timeout every worker goes too, or the regions they
    # still map would keep the mount busy for the tests that follow.
    proc = subprocess.Popen(
        [sys.executable, "-m", "selftests.fuzz", "--seed", str(SEED), "--seconds",
         str(SECONDS), "--workers", "4", "--ops", "40", "--json", str(out)],
        cwd=harness.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        tasks = _group_tasks(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        harness.wait_until(lambda: not _group_alive(proc.pid), 60)
        sys.stderr.write(stdout + stderr)
        pytest.fail(f"the fuzzer ran past {limit:.0f} s; its process group was killed; "
                    f"its tasks then:\n{tasks}")
    sys.stderr.write(stdout + stderr)
    assert out.exists(), f"the fuzzer wrote no result (exit {proc.returncode})"
    res = json.loads(out.read_text())
    assert res["findings"] == [], "\n".join(res["findings"])
    assert res["splats"] == [], "\n".join(res["splats"])
    assert res["batches"] >= 1 and res["ops"] > 0
    assert proc.returncode == 0


# A batch whose every worker is SIGKILLed while a grandchild it forked pauses for ever,
# still holding the worker's report pipe: the coordinator must see the worker gone and
# stop waiting for that pipe's end of file.  Before, it waited for good (past its own
# 120 s watchdog too), which is how the short mode overran in full suites.
ORPHAN_BATCH = """
import os, random, signal, sys, time
from selftests.fuzz import coordinator, ops

def orphan(w, v, rng):
    if os.fork() == 0:
        signal.pause()
        os._exit(0)
    time.sleep(60)

for table in (ops.ATTACHED, ops.DETACHED):
    for name in list(table):
        table[name] = orphan

class EveryoneAVictim(random.Random):
    def random(self):
        return 0.0
    def uniform(self, a, b):
        return 3.0  # seconds into the batch: each worker has forked its grandchild

c = coordinator.Coordinator(1, 2, 1, sys.argv[1])
c.rng = EveryoneAVictim(1)
t = time.monotonic()
c.run_batch(0)
c.drop_regions()
print(f"batch {time.monotonic() - t:.1f} s, killed {c.result.killed}")
"""


@pytest.mark.serial
@pytest.mark.timeout(300)
def test_fuzzer_batch_ends_when_a_killed_workers_orphan_holds_its_pipe(msharefs: str) -> None:
    # Output to a file: the orphans inherit it, and a pipe would not end while they live.
    out_file = harness.scratch() / f"orphan-batch-{os.getpid()}.txt"
    with open(out_file, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", ORPHAN_BATCH, f"orphan{os.getpid()}"],
                                cwd=harness.REPO, stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        status = proc.wait(timeout=harness.scaled(90))
    except subprocess.TimeoutExpired:
        status = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphans
        proc.wait()
        harness.wait_until(lambda: not _group_alive(proc.pid), 60)
    text = out_file.read_text()
    assert status == 0 and "killed 2" in text, \
        f"the batch {'did not end in 90 s' if status is None else f'exited {status}'}:\n{text}"
