import sys
import time
from pathlib import Path

import pytest

from mshare_lab import proc
from vmrun import vng


def test_command_line(tmp_path: Path) -> None:
    spec = vng.VngSpec(kernel=Path("/k/bzImage"), script=Path("/s/guest.sh"), cwd=Path("/w"),
                       cpus=2, memory="4G", rwdirs=[Path("/s"), Path("/x")], kvm=False,
                       extra_append=[])
    cmd = vng.vng_command(spec)
    assert cmd[:3] == ["vng", "--run", "/k/bzImage"]
    for flag in ("--force-9p", "--disable-kvm"):
        assert flag in cmd
    assert cmd[cmd.index("--cpus") + 1] == "2" and cmd[cmd.index("--memory") + 1] == "4G"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--rwdir"] == ["/s", "/x"]
    assert cmd[-2:] == ["--exec", "sh /s/guest.sh"]
    spec.kvm = True
    assert "--disable-kvm" not in vng.vng_command(spec)


def test_output_is_copied_and_status_returned(tmp_path: Path) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(5)"
    res = vng.run([sys.executable, "-c", code],
                  30, tmp_path / "o", tmp_path / "e", tmp_path / "c")
    assert (res.returncode, res.timed_out) == (5, False)
    assert (tmp_path / "o").read_text() == "out\n"
    assert (tmp_path / "e").read_text() == "err\n"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    # The grandchild stands in for QEMU under vng: it must die too.
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    res = vng.run(["sh", "-c", script], 1.5, tmp_path / "o", tmp_path / "e", tmp_path / "c")
    assert res.timed_out and res.returncode is None
    assert time.monotonic() - started < 20
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert proc.state(pid) in (None, "Z")


def test_tools_beside_the_interpreter_are_found_with_a_minimal_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vng starts virtme-run by name through the shell: the interpreter's bin directory
    must be on the PATH vng runs with, even when ours is a fresh machine's (issue 14)."""
    bin_dir = tmp_path / "venv-bin"
    bin_dir.mkdir()
    tool = bin_dir / "virtme-run-standin"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    monkeypatch.setattr(vng, "interpreter_bin", lambda: bin_dir)
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    res = vng.run(["sh", "-c", "virtme-run-standin"], 30, tmp_path / "o", tmp_path / "e",
                  tmp_path / "c")
    assert res.returncode == 0, (tmp_path / "e").read_text()
    assert (tmp_path / "o").read_text() == "found\n"
    env = vng.tool_env({"PATH": f"/bin:{bin_dir}"})
    assert env["PATH"] == f"{bin_dir}:/bin"


def test_interpreter_bin_is_not_resolved() -> None:
    # A venv's python3 is a symlink to the base interpreter; the venv's scripts are
    # beside the link, not beside its target.
    assert vng.interpreter_bin() == Path(sys.executable).parent
