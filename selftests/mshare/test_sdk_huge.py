"""Huge regions (MSHARE_F_HUGE, series v6) through libmshare against the real msharefs
(guest only).

Runs when LIBMSHARE_GUEST=1 (ci/vm-run); elsewhere every test skips with one reason.
The tests that count 2 MiB pages run alone (serial): they need free 2 MiB blocks and
the THP knobs at values that allow tmpfs THP, which they compact memory for and put
back to the kernel's defaults where a knob denies it (restored afterwards).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

import libmshare
from libmshare import _libc
from libmshare.errors import MshareError, NotSupportedError, RegionEstablishedError

MiB = 1 << 20
WRITE = 8 * MiB
# -S: libmshare comes from PYTHONPATH; site's .pth processing slows start-up under TCG.
PYTHON = [sys.executable, "-S"]

_THP = Path("/sys/kernel/mm/transparent_hugepage")
# The knobs whose value makes a huge region fall back to 4 KiB pages: (that value, the
# kernel's default, which allows 2 MiB pages).
_DENYING = {
    _THP / "enabled": ("never", "always"),
    _THP / "shmem_enabled": ("deny", "never"),
    _THP / "hugepages-2048kB" / "shmem_enabled": ("never", "inherit"),
}


def _selected(path: Path) -> str:
    text = path.read_text().strip()  # "always [madvise] never"
    return text.split("[")[1].split("]")[0] if "[" in text else text


@pytest.fixture
def thp_available() -> Iterator[None]:
    """2 MiB pages to be had: no knob denies tmpfs THP, and memory is compacted."""
    changed: dict[Path, str] = {}
    try:
        for knob, (denying, default) in _DENYING.items():
            assert knob.exists(), f"{knob} is missing: the kernel lacks CONFIG_TRANSPARENT_HUGEPAGE"
            if _selected(knob) == denying:
                changed[knob] = denying
                knob.write_text(default)
        Path("/proc/sys/vm/compact_memory").write_text("1")
        yield
    finally:
        for knob, value in changed.items():
            knob.write_text(value)


def _sha(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def test_create_huge_gives_a_region_whose_huge_is_true(name: str, align: int) -> None:
    with libmshare.create(name, align, huge=True) as r:
        assert r.huge is True
        assert libmshare.stat(name).huge is True


def test_region_without_huge_is_not_huge(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        assert r.huge is False
        assert libmshare.stat(name).huge is False


@pytest.mark.serial
def test_huge_region_with_8mib_written_has_8mib_pmd_mapped(
        name: str, align: int, thp_available: None) -> None:
    with libmshare.create(name, align, huge=True) as r:
        r.buf[:WRITE] = harness.pattern(1, WRITE)
        s = r.stats()
    assert s.resident == WRITE
    assert s.pmd_mapped == WRITE


@pytest.mark.serial
def test_attacher_in_a_child_reads_the_data_of_a_huge_region(
        name: str, align: int, thp_available: None) -> None:
    data = harness.pattern(2, WRITE)
    with libmshare.create(name, align, huge=True) as r:
        r.buf[:WRITE] = data
        code = ("import hashlib, sys, libmshare\n"
                "with libmshare.attach(sys.argv[1], readonly=True) as r:\n"
                "    print(r.huge, hashlib.sha256(r.buf[:int(sys.argv[2])]).hexdigest(),\n"
                "          r.stats().pmd_mapped)\n")
        res = harness.run_python(code, name, str(WRITE), timeout=240)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", _sha(data), str(WRITE)]


def test_region_without_huge_with_8mib_written_has_no_pmd_mapped(
        name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        r.buf[:WRITE] = harness.pattern(3, WRITE)
        s = r.stats()
    assert s.resident == WRITE
    assert s.pmd_mapped == 0


def test_set_flags_after_the_first_mmap_is_ebusy(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        fd = os.open(r.path, os.O_RDWR)
        try:
            with pytest.raises(RegionEstablishedError) as e:
                _libc.set_flags(fd, _libc.MSHARE_F_HUGE, r.path)
            assert _libc.get_flags(fd, r.path) == 0
        finally:
            os.close(fd)
    assert e.value.errno == errno.EBUSY
    assert "established already; choose before its first mmap" in str(e.value)


def test_flags_set_before_the_first_mmap_read_back_before_it(
        name: str, sdk_mount: str) -> None:
    path = os.path.join(sdk_mount, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _libc.set_flags(fd, _libc.MSHARE_F_HUGE, path)
        assert _libc.get_flags(fd, path) == _libc.MSHARE_F_HUGE
    finally:
        os.close(fd)
    info = libmshare.stat(name)
    assert (info.established, info.huge) == (False, True)


def test_set_flags_through_a_read_only_fd_is_ebadf(name: str, sdk_mount: str) -> None:
    path = os.path.join(sdk_mount, name)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(MshareError, match="open read-only") as e:
            _libc.set_flags(fd, _libc.MSHARE_F_HUGE, path)
    finally:
        os.close(fd)
    assert e.value.errno == errno.EBADF


def test_kernel_refuses_a_flag_bit_the_sdk_does_not_know_with_einval(
        name: str, sdk_mount: str) -> None:
    # The SDK refuses unknown bits itself; this checks it knows all the kernel's.
    path = os.path.join(sdk_mount, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, _libc.MSHARE_SET_FLAGS, struct.pack("=Q", _libc.MSHARE_F_ALL << 1))
    finally:
        os.close(fd)
    assert e.value.errno == errno.EINVAL


def test_set_flags_on_the_mount_directory_is_enotty(sdk_mount: str) -> None:
    fd = os.open(sdk_mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(MshareError) as e:
            _libc.set_flags(fd, _libc.MSHARE_F_HUGE, sdk_mount)
    finally:
        os.close(fd)
    assert e.value.errno == errno.ENOTTY and not isinstance(e.value, NotSupportedError)


def test_flags_ioctls_on_mshare_info_are_enotty(sdk_mount: str) -> None:
    fd = os.open(os.path.join(sdk_mount, "mshare_info"), os.O_RDONLY)
    try:
        set_errno = harness.errno_of(fcntl.ioctl, fd, _libc.MSHARE_SET_FLAGS,
                                     struct.pack("=Q", _libc.MSHARE_F_HUGE))
        get_errno = harness.errno_of(fcntl.ioctl, fd, _libc.MSHARE_GET_FLAGS, bytearray(8))
    finally:
        os.close(fd)
    assert (set_errno, get_errno) == (errno.ENOTTY, errno.ENOTTY)


def test_mshare_create_huge_reports_a_huge_region(name: str) -> None:
    res = subprocess.run([*PYTHON, "-m", "libmshare.cli", "create", name, "--size", "1M",
                          "--round-up", "--huge", "--json"], capture_output=True, text=True,
                         timeout=harness.scaled(240), check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert json.loads(res.stdout)["huge"] is True
    assert libmshare.stat(name).huge is True
