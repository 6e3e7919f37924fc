"""bench/run-pgbench's and bench/pgbench-guest's --repeat and --transactions."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from pgbenchlib.plans import positive


def test_positive_takes_a_count() -> None:
    assert positive("7") == 7


@pytest.mark.parametrize("text", ["0", "-3"])
def test_positive_refuses_less_than_one(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be at least 1, not {text}"):
        positive(text)


@pytest.mark.parametrize("script", ["run-pgbench", "pgbench-guest"])
@pytest.mark.parametrize("flag", ["--repeat", "--transactions"])
def test_zero_is_an_argument_error_naming_the_flag(script: str, flag: str) -> None:
    out = ["--out", "/nonexistent/x.json"] if script == "pgbench-guest" else []
    p = subprocess.run([sys.executable, str(REPO / "bench" / script), flag, "0", *out],
                       capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 2
    assert f"argument {flag}: must be at least 1, not 0" in p.stderr


@pytest.mark.parametrize("extra", [["--configs", "huge"], ["--repeat", "3"],
                                   ["--resume", "/nonexistent/x.json"]])
def test_nomshare_refuses_what_it_sets_itself(extra: list[str]) -> None:
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run-pgbench"), "--nomshare",
                        "10", *extra], capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 2
    assert "--nomshare runs stock, one repetition a boot, and resumes by itself" in p.stderr
