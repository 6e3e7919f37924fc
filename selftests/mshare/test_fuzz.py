"""The region fuzzer's short mode: a fixed seed, a bounded time, no finding, no splat.

The long mode (an hour or more, on demand) is `python3 -m selftests.fuzz --seconds 3600`;
see selftests/README.md."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import harness
import pytest

SEED = int(os.environ.get("LIBMSHARE_FUZZ_SEED", "20261201"))
SECONDS = float(os.environ.get("LIBMSHARE_FUZZ_SECONDS", "150"))


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
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        harness.wait_until(lambda: not _group_alive(proc.pid), 60)
        sys.stderr.write(stdout + stderr)
        pytest.fail(f"the fuzzer ran past {limit:.0f} s; its process group was killed")
    sys.stderr.write(stdout + stderr)
    assert out.exists(), f"the fuzzer wrote no result (exit {proc.returncode})"
    res = json.loads(out.read_text())
    assert res["findings"] == [], "\n".join(res["findings"])
    assert res["splats"] == [], "\n".join(res["splats"])
    assert res["batches"] >= 1 and res["ops"] > 0
    assert proc.returncode == 0
