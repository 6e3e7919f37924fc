"""The mshare command against the real msharefs (guest only; see test_sdk_region.py).

Every test runs the command in fresh interpreters, which is the slow part under TCG, so
each test starts at most two and sets up anything else through the SDK in-process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import harness
import pytest

import libmshare

# -S: libmshare needs only the standard library and comes from PYTHONPATH (the guest has
# no console script); site's .pth processing is two thirds of an interpreter's start-up
# under TCG.
PYTHON = [sys.executable, "-S"]


def mshare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYTHON, "-m", "libmshare.cli", *args], capture_output=True,
                          text=True, timeout=harness.scaled(240), check=False)


def ok(*args: str) -> str:
    res = mshare(*args)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return res.stdout


def test_info_json_reports_kernel_mount_and_alignment(name: str) -> None:
    data = json.loads(ok("info", "--json"))
    assert data["kernel_supports"] is True and data["emulated"] is False
    assert data["mount"] == libmshare.find_mount()
    assert data["alignment"] == libmshare.alignment()
    if platform.machine() == "x86_64":
        assert data["alignment"] == 512 << 30


def test_info_text_shows_alignment(name: str) -> None:
    align = libmshare.alignment()
    assert f"alignment: {align} ({libmshare.format_size(align)})" in ok("info")


def test_create_json_reports_rounded_size_mode_and_established(name: str) -> None:
    created = json.loads(ok("create", name, "--size", "1M", "--round-up", "--mode", "0640",
                            "--json"))
    assert (created["size"], created["mode"], created["established"]) \
        == (libmshare.alignment(), "0640", True)
    info = libmshare.stat(name)
    assert (info.start, info.size, info.mode) == (created["start"], created["size"], 0o640)


def test_created_region_outlives_the_command_and_another_process_attaches(name: str) -> None:
    created = json.loads(ok("create", name, "--size", "1M", "--round-up", "--json"))
    code = ("import sys, libmshare\n"
            "with libmshare.attach(sys.argv[1]) as r:\n"
            "    r.buf[:3] = b'cli'\n"
            "    print(hex(r.start))\n")
    out = subprocess.run([*PYTHON, "-c", code, name], capture_output=True, text=True,
                         timeout=harness.scaled(240), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == hex(created["start"])
    with libmshare.attach(name, readonly=True) as r:
        assert bytes(r.buf[:3]) == b"cli"


def test_ls_lists_region_with_start_size_and_mode(name: str) -> None:
    align = libmshare.alignment()
    with libmshare.create(name, align, mode=0o640) as r:
        start = r.start
    row = next(line for line in ok("ls").splitlines() if line.split()[0] == name)
    assert row.split()[1:4] == [hex(start), libmshare.format_size(align), "0640"]


def test_stat_json_matches_the_region(name: str) -> None:
    align = libmshare.alignment()
    with libmshare.create(name, align, mode=0o600) as r:
        start = r.start
    got = json.loads(ok("stat", name, "--json"))
    assert (got["start"], got["size"], got["mode"], got["established"]) \
        == (start, align, "0600", True)


def test_create_of_existing_name_fails_with_one_line(name: str) -> None:
    libmshare.create(name, libmshare.alignment()).close()
    res = mshare("create", name, "--size", "1M", "--round-up")
    assert res.returncode == 1 and "File exists" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_rm_removes_the_region(name: str) -> None:
    libmshare.create(name, libmshare.alignment()).close()
    assert ok("rm", name) == ""
    with pytest.raises(libmshare.RegionNotFoundError):
        libmshare.stat(name)


def test_stat_of_missing_region_fails_with_enoent_message(name: str) -> None:
    res = mshare("stat", name)
    assert res.returncode == 1 and "No such file" in res.stderr


def test_unaligned_size_is_one_line(name: str) -> None:
    res = mshare("create", name, "--size", "1M")
    assert res.returncode == 1
    assert "not a multiple of the alignment" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not os.path.exists(os.path.join(libmshare.find_mount() or "/nonexistent", name))
