"""The mshare command, run as a subprocess on the emulated mount and on this kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _hosthelp import FAKE_ALIGN, free_window

from libmshare.fs import FAKE_MOUNT_ENV


def mshare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "libmshare.cli", *args], check=False, capture_output=True,
        text=True,
        env=os.environ if env is None else env, timeout=60,
    )


def ok(*args: str) -> str:
    res = mshare(*args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return res.stdout


def fails(*args: str, code: int = 1) -> str:
    res = mshare(*args)
    assert res.returncode == code, res
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("mshare: "), res.stderr
        assert "Traceback" not in res.stderr
    return res.stderr


def test_info_on_this_kernel_says_unsupported() -> None:
    env = {k: v for k, v in os.environ.items() if k != FAKE_MOUNT_ENV}
    with open("/proc/filesystems") as f:
        if "msharefs" in f.read().split():
            pytest.skip("this kernel has msharefs")
    res = mshare("info", env=env)
    assert res.returncode == 0 and res.stderr == ""
    assert "kernel support: no" in res.stdout and "mount: not mounted" in res.stdout
    res = mshare("info", "--json", env=env)
    assert json.loads(res.stdout) == {
        "kernel_supports": False, "mount": None, "emulated": False, "alignment": None}
    res = mshare("ls", env=env)
    assert res.returncode == 1 and "has no msharefs" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_info_on_fake_mount(fake_mount: Path) -> None:
    out = ok("info")
    assert f"mount: {fake_mount} (emulated" in out and "alignment: 2097152 (2M)" in out
    data = json.loads(ok("info", "--json"))
    assert data["mount"] == str(fake_mount) and data["alignment"] == FAKE_ALIGN
    assert data["emulated"] is True


def test_create_ls_stat_rm(fake_mount: Path) -> None:
    start = free_window()
    out = ok("create", "db", "--size", "2M", "--addr", hex(start), "--mode", "0640")
    assert f"start: {start:#x}" in out and "size: 2M (2097152 bytes)" in out
    assert "mode: 0640" in out
    created = json.loads(ok("create", "big", "--size", "3M", "--round-up", "--json"))
    assert created["size"] == 2 * FAKE_ALIGN and created["established"] is True
    assert created["path"] == str(fake_mount / "big")

    listing = ok("ls").splitlines()
    assert listing[0].split() == ["NAME", "START", "SIZE", "MODE", "OWNER"]
    assert listing[1].split()[:4] == ["big", f"{created['start']:#x}", "4M", "0600"]
    assert listing[2].split()[:4] == ["db", f"{start:#x}", "2M", "0640"]
    names = [d["name"] for d in json.loads(ok("ls", "--json"))]
    assert names == ["big", "db"]

    st = json.loads(ok("stat", "db", "--json"))
    assert (st["start"], st["size"], st["mode"]) == (start, FAKE_ALIGN, "0640")
    assert "start: " + hex(start) in ok("stat", "db")

    # The region created by the CLI kept its data model: attach it from Python.
    code = "import libmshare; r = libmshare.attach('db'); print(hex(r.start))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == hex(start)

    assert ok("rm", "db") == ""
    assert json.loads(ok("rm", "big", "--json")) == {"removed": "big"}
    assert json.loads(ok("ls", "--json")) == []


def test_errors_are_one_line(fake_mount: Path) -> None:
    ok("create", "x", "--size", "2M")
    assert "File exists" in fails("create", "x", "--size", "2M")
    assert "x" in fails("create", "x", "--size", "2M")
    ok("create", "x", "--size", "2M", "--exist-ok")
    err = fails("create", "y", "--size", "3M")
    assert "size 0x300000 (3M)" in err and "alignment 0x200000 (2M)" in err
    err = fails("create", "y", "--size", "2M", "--addr", "0x1234")
    assert "start 0x1234" in err
    assert "'..'" in fails("create", "../y", "--size", "2M")
    assert "0o10000" in fails("create", "y", "--size", "2M", "--mode", "10000")
    assert "No such file" in fails("rm", "nope")
    assert "No such file" in fails("stat", "nope")
    (fake_mount / "dir").mkdir()
    assert "is a directory" in fails("stat", "dir")


def test_usage_errors_exit_2(fake_mount: Path) -> None:
    assert "--size" in fails("create", "z", code=2)
    assert "size '2Q'" in fails("create", "z", "--size", "2Q", code=2)
    assert "address" in fails("create", "z", "--size", "2M", "--addr", "zz", code=2)
    assert "octal" in fails("create", "z", "--size", "2M", "--mode", "rw", code=2)
    fails(code=2)
    fails("frobnicate", code=2)


def test_mount_needs_kernel_support(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != FAKE_MOUNT_ENV}
    res = mshare("mount", str(tmp_path), env=env)
    with open("/proc/filesystems") as f:
        if "msharefs" in f.read().split():
            pytest.skip("this kernel has msharefs")
    assert res.returncode == 1 and res.stderr.startswith("mshare: ")
    assert "no msharefs" in res.stderr and len(res.stderr.splitlines()) == 1


def test_main_in_process(fake_mount: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from libmshare.cli import main

    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alignment"] == FAKE_ALIGN
    assert main(["stat", "missing"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("mshare: stat: No such file")
    res = mshare("--version")
    assert res.returncode == 0 and res.stdout.startswith("mshare 0.1.0")


def test_json_before_or_after_the_subcommand(fake_mount: Path) -> None:
    ok("create", "j", "--size", "2M")
    after = json.loads(ok("ls", "--json"))
    before = json.loads(ok("--json", "ls"))
    assert before == after and [d["name"] for d in before] == ["j"]
    assert json.loads(ok("--json", "stat", "j"))["name"] == "j"
    assert json.loads(ok("--mount", str(fake_mount), "--json", "info"))["alignment"] == FAKE_ALIGN


def test_json_error_object_on_stdout(fake_mount: Path) -> None:
    for argv in (["stat", "nope", "--json"], ["--json", "stat", "nope"]):
        res = mshare(*argv)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        err = json.loads(res.stdout)
        assert err["errno"] == 2 and "No such file" in err["error"]
        assert err["type"] == "RegionNotFoundError"
    res = mshare("create", "y", "--size", "3M", "--json")
    err = json.loads(res.stdout)
    assert res.returncode == 1 and err["errno"] is None and "alignment" in err["error"]
    assert err["type"] == "AlignmentError"


def test_json_usage_error(fake_mount: Path) -> None:
    res = mshare("--json", "create", "z")
    assert res.returncode == 2 and "--size" in res.stderr
    err = json.loads(res.stdout)
    assert err["type"] == "usage" and err["errno"] is None and "--size" in err["error"]


def test_closed_pipe_is_no_traceback(fake_mount: Path) -> None:
    for n in range(3):
        ok("create", f"p{n}", "--size", "2M")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write, as with `| head -0`
    try:
        res = subprocess.run([sys.executable, "-m", "libmshare", "ls", "--json"],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=60,
                             check=False)
    finally:
        os.close(w)
    assert res.stderr == "" and res.returncode == 141
    shell = subprocess.run(["sh", "-c", f"'{sys.executable}' -m libmshare ls | head -1"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert shell.stdout.split() == ["NAME", "START", "SIZE", "MODE", "OWNER"]
    assert shell.stderr == ""


def test_python_m_libmshare(fake_mount: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "libmshare", "--version"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0 and res.stdout.startswith("mshare 0.1.0")
    res = subprocess.run([sys.executable, "-m", "libmshare", "info", "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(res.stdout)["alignment"] == FAKE_ALIGN


def _documented_shapes() -> dict[str, Any]:
    """``$ mshare CMD --json`` lines of the README, each followed by its JSON."""
    readme = (Path(__file__).resolve().parents[2] / "libmshare" / "README.md").read_text()
    lines = readme.splitlines()
    shapes = {}
    for i, line in enumerate(lines):
        if line.startswith("$ mshare ") and "--json" in line:
            shapes[line.split()[2]] = json.loads(lines[i + 1])
    return shapes


def test_json_shapes_are_the_documented_ones(fake_mount: Path) -> None:
    docs = _documented_shapes()
    assert set(docs) >= {"info", "ls", "stat", "create", "rm", "top", "error"}
    start = free_window()
    real = {
        "create": json.loads(ok("create", "s", "--size", "2M", "--addr", hex(start),
                                "--json")),
        "ls": json.loads(ok("ls", "--json")),
        "stat": json.loads(ok("stat", "s", "--json")),
        "info": json.loads(ok("info", "--json")),
        "top": json.loads(ok("top", "--json")),
        "error": json.loads(mshare("stat", "nope", "--json").stdout),
        "rm": json.loads(ok("rm", "s", "--json")),
    }
    for cmd, data in real.items():
        doc = docs[cmd]
        # Same keys, and the same types where the README's example is not null.
        if isinstance(data, list):
            data, doc = data[0], doc[0]
        assert set(data) == set(doc), cmd
        for k, v in doc.items():
            if v is not None and data[k] is not None:
                assert type(data[k]) is type(v), (cmd, k)
