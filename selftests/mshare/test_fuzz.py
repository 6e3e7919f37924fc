"""The region fuzzer's short mode: a fixed seed, a bounded time, no finding, no splat.

The long mode (an hour or more, on demand) is `python3 -m selftests.fuzz --seconds 3600`;
see selftests/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import harness
import pytest

SEED = int(os.environ.get("LIBMSHARE_FUZZ_SEED", "20261201"))
SECONDS = float(os.environ.get("LIBMSHARE_FUZZ_SECONDS", "150"))


@pytest.mark.serial
@pytest.mark.timeout(900)
def test_region_fuzzer_short_mode_finds_nothing(msharefs: str) -> None:
    out = harness.scratch() / "fuzz-short.json"
    proc = subprocess.run(
        [sys.executable, "-m", "selftests.fuzz", "--seed", str(SEED), "--seconds",
         str(SECONDS), "--workers", "4", "--ops", "40", "--json", str(out)],
        cwd=harness.REPO, capture_output=True, text=True, check=False,
        timeout=harness.scaled(SECONDS * 4 + 120))
    sys.stderr.write(proc.stdout + proc.stderr)
    assert out.exists(), f"the fuzzer wrote no result (exit {proc.returncode})"
    res = json.loads(out.read_text())
    assert res["findings"] == [], "\n".join(res["findings"])
    assert res["splats"] == [], "\n".join(res["splats"])
    assert res["batches"] >= 1 and res["ops"] > 0
    assert proc.returncode == 0
