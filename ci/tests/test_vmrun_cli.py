"""ci/vm-run's plumbing end to end, with the fake vng of conftest.py (it runs the guest
script on the host)."""
from pathlib import Path

import pytest

from vmrun import cli, provenance, status


def test_status_comes_back(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake()
    assert cli.main(["--kernel", str(kernel), "--", "sh", "-c", "echo out; exit 3"]) == 3
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert "guest dmesg: " in err and "exit 3" in err


def test_splat_gives_125(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake(dmesg="[ 1.0] ok\n[ 9.0] WARNING: CPU: 1 PID: 9 at mm/mshare.c:5 x+0x1/0x2\n")
    assert cli.main(["--kernel", str(kernel), "--", "true"]) == status.SPLAT
    err = capfd.readouterr().err
    assert "dmesg.txt:2: [warning]" in err and "mm/mshare.c:5" in err


def test_guest_crash_gives_splat_from_console(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake(mode="crash")
    assert cli.main(["--kernel", str(kernel), "--", "true"]) == status.SPLAT
    err = capfd.readouterr().err
    assert "console.log:1: [oops]" in err and "Kernel panic" in err


def test_no_status_gives_126(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake()
    # The command kills the guest script before it records a status.
    assert cli.main(["--kernel", str(kernel), "--", "sh", "-c", "kill -9 $PPID"]) == status.INFRA
    assert "never recorded CMD's status" in capfd.readouterr().err


def test_timeout_gives_124(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake(mode="hang")
    assert cli.main(["--kernel", str(kernel), "--timeout", "1", "--", "true"]) == status.TIMEOUT
    assert "TIMEOUT" in capfd.readouterr().err


def test_missing_kernel_gives_126(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBMSHARE_CACHE", str(tmp_path))
    assert cli.main(["--kernel", str(tmp_path / "nope"), "--", "true"]) == status.INFRA


def test_command_is_required() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--kernel", "x"])
    assert cli.parse_args(["--", "sh", "-c", "exit 3"]).cmd == ["sh", "-c", "exit 3"]
    assert cli.parse_args(["--", "python3", "--version"]).cmd == ["python3", "--version"]


def test_flavor_choices_are_the_builds() -> None:
    # Every flavor kernel-build/build knows is bootable by name; nothing else is.
    assert cli.parse_args(["--flavor", "mmtests", "--", "true"]).flavor == "mmtests"
    with pytest.raises(SystemExit):
        cli.parse_args(["--flavor", "nosuch", "--", "true"])


def test_provenance_line_names_revision_kernel_and_guest(fake, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    kernel = fake()
    (kernel.parent / "meta.json").write_text(
        '{"key": "abc123", "flavor": "debug", "mshare_applied": true, "git_revision": "f00"}')
    assert cli.main(["--kernel", str(kernel), "--cpus", "3", "--memory", "5G", "--", "true"]) == 0
    err = capfd.readouterr().err
    lines = [p for p in map(provenance.parse_line, err.splitlines()) if p is not None]
    assert len(lines) == 1
    rec = lines[0]
    assert rec["kernel"]["key"] == "abc123" and rec["kernel"]["flavor"] == "debug"
    assert rec["guest"] == {"cpus": 3, "memory": "5G", "accelerator": "TCG"}
    assert rec["git_revision"] != ""
    assert "build key abc123" in provenance.describe(rec)
    assert "3 vCPUs, 5G, TCG" in provenance.describe(rec)


def test_provenance_of_a_copied_image_comes_from_the_identical_build(tmp_path: Path) -> None:
    builds = tmp_path / "builds"
    (builds / "k1").mkdir(parents=True)
    (builds / "k1" / "bzImage").write_bytes(b"kernel bytes")
    (builds / "k1" / "meta.json").write_text('{"key": "k1", "flavor": "release"}')
    (builds / "k2").mkdir()
    (builds / "k2" / "bzImage").write_bytes(b"other bytes!")
    (builds / "k2" / "meta.json").write_text('{"key": "k2", "flavor": "debug"}')
    copy = tmp_path / "kernels" / "release-bzImage"
    copy.parent.mkdir()
    copy.write_bytes(b"kernel bytes")
    info = provenance.kernel_info(copy, builds)
    assert (info["key"], info["flavor"]) == ("k1", "release")
    stray = tmp_path / "kernels" / "stray"
    stray.write_bytes(b"no such build")
    assert provenance.kernel_info(stray, builds)["key"] is None


def test_kernel_args_reach_the_boot_and_the_provenance(fake, capfd: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from vmrun import vng
    seen: list[list[str]] = []
    real = vng.vng_command
    monkeypatch.setattr(vng, "vng_command",
                        lambda spec, path: seen.append(spec.extra_append) or real(spec, path))
    kernel = fake()
    assert cli.main(["--kernel", str(kernel), "--kernel-arg", "movablecore=4G", "--",
                     "true"]) == 0
    assert seen == [["movablecore=4G"]]
    rec = next(p for p in map(provenance.parse_line, capfd.readouterr().err.splitlines())
               if p is not None)
    assert rec["guest"]["kernel_args"] == ["movablecore=4G"]
    assert "booted with movablecore=4G" in provenance.describe(rec)
