"""The SGA program: --help, arguments, a run, and clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "examples" / "sga" / "run"


def _sga(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    out: subprocess.CompletedProcess[str] = subprocess.run(
        [sys.executable, "-m", "examples.sga", *args], cwd=REPO, capture_output=True,
        text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]
    return out


def test_help_names_every_backend_and_option() -> None:
    p = _sga("--help")
    assert p.returncode == 0
    for word in ("mshare", "shm", "fork", "hugetlb", "--servers", "--size", "--duration",
                 "SIGTERM"):
        assert word in p.stdout


def test_run_script_works_from_another_directory(tmp_path: Path) -> None:
    env = {**os.environ, "LIBMSHARE_PYTHON": sys.executable}
    p = subprocess.run([str(RUN), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, check=False, timeout=60)
    assert p.returncode == 0 and "usage:" in p.stdout


@pytest.mark.parametrize("args", [["--size", "12Q"], ["--servers", "0"],
                                  ["--backend", "sysv"], ["--update-share", "2"]])
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    p = _sga(*args)
    assert p.returncode == 2 and "usage:" in p.stderr


def test_a_size_too_small_for_an_sga_is_an_error() -> None:
    p = _sga("--backend", "fork", "--servers", "1", "--size", "8K", "--duration", "0.2")
    assert p.returncode == 1 and "no room" in p.stderr


def test_a_small_run_prints_a_correct_summary_and_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = _sga("--backend", "shm", "-n", "3", "-s", "4M", "-d", "0.5", "--milestones", "1,2",
             "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "verdict          correct" in p.stdout
    assert "servers attached: 3/3" in p.stderr  # the progress line
    doc = json.loads(out.read_text())
    assert doc["result"]["correct"] and doc["result"]["servers"] == 3
    assert doc["system"]["kernel"] == os.uname().release


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(Path(stat).parent.name))
    return alive


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_stops_the_servers_and_removes_the_sga(sig: int, status: int) -> None:
    # A shell's background job starts with SIGINT ignored, which exec passes on and which
    # stops Python installing its handler: give the CLI the disposition a user's has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.sga", "--backend", "shm", "-n", "4", "-s", "4M",
             "-d", "60"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group: the servers are found by it
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "servers attached: 4/4" in line or time.monotonic() > deadline:
            break
    names = glob.glob(f"/dev/shm/libmshare-sga-{proc.pid}-*")
    assert names, "the SGA should exist while the servers run"
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) == status
    assert "servers stopped, SGA removed" in proc.stderr.read()
    assert glob.glob(f"/dev/shm/libmshare-sga-{proc.pid}-*") == []
    time.sleep(0.2)
    assert _group_alive(proc.pid) == []
