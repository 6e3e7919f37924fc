"""The mshare command against the real msharefs (guest only; see test_sdk_region.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

import libmshare

GUEST = os.environ.get("LIBMSHARE_GUEST") == "1"


@pytest.fixture
def name() -> str:
    if not GUEST:
        pytest.skip("libmshare guest tests run only in our kernel (ci/vm-run sets LIBMSHARE_GUEST=1)")
    if not libmshare.kernel_supports():
        pytest.fail("LIBMSHARE_GUEST=1 but the kernel has no msharefs", pytrace=False)
    libmshare.ensure_mounted()
    return f"sdk-cli-{os.getpid()}"


def mshare(*args: str) -> subprocess.CompletedProcess[str]:
    # The guest runs the checkout through PYTHONPATH: no console script is installed.
    return subprocess.run([sys.executable, "-m", "libmshare.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def ok(*args: str) -> str:
    res = mshare(*args)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return res.stdout


def test_info(name: str) -> None:
    data = json.loads(ok("info", "--json"))
    assert data["kernel_supports"] is True and data["emulated"] is False
    assert data["mount"] == libmshare.find_mount()
    if platform.machine() == "x86_64":
        assert data["alignment"] == 512 << 30
        assert "alignment: 549755813888 (512G)" in ok("info")


def test_create_attach_ls_stat_rm(name: str) -> None:
    created = json.loads(ok("create", name, "--size", "1M", "--round-up", "--mode", "0640",
                            "--json"))
    align = libmshare.alignment()
    assert created["size"] == align and created["mode"] == 0o640 and created["established"]
    # The CLI process has exited: the region outlives it, and another process attaches.
    code = ("import sys, libmshare\n"
            "with libmshare.attach(sys.argv[1]) as r:\n"
            "    r.buf[:3] = b'cli'\n"
            "    print(hex(r.start))\n")
    out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == hex(created["start"])
    with libmshare.attach(name, readonly=True) as r:
        assert bytes(r.buf[:3]) == b"cli"

    row = next(line for line in ok("ls").splitlines() if line.split()[0] == name)
    assert row.split()[1:4] == [hex(created["start"]), libmshare.format_size(align), "0640"]
    assert json.loads(ok("stat", name, "--json")) == created

    res = mshare("create", name, "--size", "1M", "--round-up")
    assert res.returncode == 1 and "File exists" in res.stderr
    assert len(res.stderr.splitlines()) == 1

    assert ok("rm", name) == ""
    res = mshare("stat", name)
    assert res.returncode == 1 and "No such file" in res.stderr


def test_unaligned_size_is_one_line(name: str) -> None:
    res = mshare("create", name, "--size", "1M")
    assert res.returncode == 1
    assert "not a multiple of the alignment" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not os.path.exists(os.path.join(libmshare.find_mount() or "/nonexistent", name))
