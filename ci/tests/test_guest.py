"""The guest script, run on the host with sh: the same shell code the guest runs."""
import subprocess
from pathlib import Path

from vmrun import guest


def spec(tmp_path: Path, cmd: list[str]) -> guest.GuestSpec:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return guest.GuestSpec(cmd=cmd, cwd=tmp_path, scratch=scratch, repo=Path("/repo"),
                           python="/opt/py/bin/python3", env={"EXTRA": "it's"})


def run(script: Path) -> int:
    return subprocess.run(["sh", str(script)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, check=False).returncode


def test_status_is_recorded_and_returned(tmp_path: Path) -> None:
    s = spec(tmp_path, ["sh", "-c", "exit 3"])
    assert run(guest.write(s)) == 3
    assert (s.scratch / guest.STATUS_FILE).read_text() == "3\n"
    assert (s.scratch / guest.DMESG_FILE).exists()


def test_arguments_and_environment_survive_quoting(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shell = ('printf "%s|" "$1" "$LIBMSHARE_GUEST" "$LIBMSHARE_PYTHON" "$EXTRA" '
             '"$PYTHONPATH" "$(pwd)" > "$2"; [ -d "$TMPDIR" ]')
    s = spec(tmp_path, ["sh", "-c", shell, "_", "a b 'c' $HOME", str(out)])
    assert run(guest.write(s)) == 0
    fields = out.read_text().split("|")
    assert fields[:4] == ["a b 'c' $HOME", "1", "/opt/py/bin/python3", "it's"]
    assert fields[4].split(":")[0] == "/repo"
    assert fields[5] == str(tmp_path)


def test_stdin_is_closed(tmp_path: Path) -> None:
    # Reading stdin must see EOF at once, not hang: CI has no stdin, neither has the guest.
    s = spec(tmp_path, ["sh", "-c", "cat; exit 7"])
    assert run(guest.write(s)) == 7


def test_kmemleak_scan_is_in_the_script(tmp_path: Path) -> None:
    text = guest.render(spec(tmp_path, ["true"]))
    scan = text.index("echo scan > /sys/kernel/debug/kmemleak")
    assert text.index(f"sleep {guest.KMEMLEAK_MIN_AGE_S}") > scan
    assert text.index("cat /sys/kernel/debug/kmemleak") > scan
    # dmesg is taken last, so it includes kmemleak's "suspected memory leaks" line
    assert text.index("dmesg -x >") > text.index("cat /sys/kernel/debug/kmemleak")


def test_uptime_stamps_give_boot_cmd_and_after_times(tmp_path: Path) -> None:
    s = spec(tmp_path, ["sh", "-c", "exit 0"])
    assert run(guest.write(s)) == 0
    stamps = guest.read_uptimes((s.scratch / guest.UPTIME_FILE).read_text())
    assert set(stamps) == {"cmd_start", "cmd_end", "done"}
    assert stamps["cmd_start"] <= stamps["cmd_end"] <= stamps["done"]
    line = guest.timing_line({"cmd_start": 33.94, "cmd_end": 35.0, "done": 60.1})
    assert line == ("boot to CMD 33.9 s, CMD 1.1 s, after CMD (kmemleak scans, dmesg) 25.1 s")
    assert guest.timing_line({}) is None
