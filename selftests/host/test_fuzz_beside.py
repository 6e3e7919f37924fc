"""Host tests of the fuzzer's long-mode load (selftests/fuzz/beside.py): the command
lines it gives stress-ng and trinity, and its refusals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from regionfuzz import beside


def test_stress_ng_argv_carries_seed_temp_path_and_backstop_timeout(tmp_path: Path) -> None:
    argv = beside.stress_ng_argv(7002, 3600, tmp_path)
    assert argv[:7] == ["stress-ng", "--seed", "7002", "--temp-path", str(tmp_path),
                        "--timeout", "4200s"]
    for stressor in ("--vm", "--mmap", "--madvise", "--mremap", "--mlock", "--mprotect"):
        assert argv[argv.index(stressor) + 1] == "1"


def test_trinity_argv_limits_calls_to_mm_without_log_files(tmp_path: Path) -> None:
    argv = beside.trinity_argv(2**40 + 5, tmp_path)
    assert argv[:6] == ["trinity", "-q", "-l", "off", "-a", "64"]
    assert argv[-7:] == ["-C", "2", "--disable-fds=sockets", "-s", "5", "-V", str(tmp_path)]
    calls = argv[6:-7]
    assert calls[0::2] == ["-c"] * len(beside.TRINITY_CALLS)
    assert {"mmap", "munmap", "mremap", "madvise", "mlockall", "process_vm_writev"} <= set(
        calls[1::2])


def test_unknown_tool_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'syzkaller'"):
        beside.check_installed(["syzkaller"])


def test_missing_tool_names_ci_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(beside.shutil, "which", lambda _: None)
    with pytest.raises(beside.ToolMissing, match="trinity is not installed.*ci/setup"):
        beside.check_installed(["trinity"])


def test_no_tools_starts_nothing() -> None:
    load = beside.Beside([], 1, 10.0)
    load.start()
    assert load.stop() == ({}, [])


def test_a_tool_gone_early_is_a_problem(tmp_path: Path) -> None:
    log = tmp_path / "stress-ng.log"
    log.write_text("stress-ng: error: no stressors\n")
    proc = subprocess.Popen(["sh", "-c", "exit 3"], start_new_session=True)
    proc.wait()
    load = beside.Beside(["stress-ng"], 1, 10.0)
    load.running.append(beside.Running("stress-ng", ["stress-ng"], proc, log))
    report, problems = load.stop()
    assert problems == [("stress-ng was gone before the fuzz ended (exit 3): "
                        "stress-ng: error: no stressors")]
    assert report["stress-ng"] == {"argv": ["stress-ng"], "exit": 3, "exited_early": True,
                                   "tail": "stress-ng: error: no stressors"}


def test_a_running_tool_is_stopped_with_sigint_even_if_started_with_it_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a background job (`cmd &`) inherits: the first fresh-machine run had it, and
    # the tool got SIGKILLed (exit -9) after the grace period instead.
    monkeypatch.setattr(beside, "STOP_GRACE_S", 5.0)
    load = beside.Beside(["trinity"], 1, 10.0, tmp=tmp_path)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        load._spawn("trinity", ["sh", "-c", ("trap 'echo stopped; exit 0' INT; echo ready; "
                                             "while :; do sleep 0.05; done")], tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    log = tmp_path / "trinity.log"
    while "ready" not in log.read_text():  # the trap is set
        time.sleep(0.01)
    load.tmp = None  # tmp_path is no tmpfs of the tool's own: nothing to unmount
    report, problems = load.stop()
    assert problems == []
    assert report["trinity"]["exit"] == 0  # type: ignore[index]
    assert report["trinity"]["tail"] == "ready\nstopped"  # type: ignore[index]
