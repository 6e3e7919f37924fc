"""The binding layer on a kernel without msharefs: memfd/tmpfs stand in for regions."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys

import pytest
from _hosthelp import FAKE_ALIGN, PAGE, free_window, is_mapped

from libmshare import _libc
from libmshare.errors import (
    AddressInUseError,
    MshareError,
    MsharePermissionError,
    RegionNotFoundError,
)

RW = _libc.PROT_READ | _libc.PROT_WRITE
SHARED_NOREPLACE = _libc.MAP_SHARED | _libc.MAP_FIXED_NOREPLACE


def test_mshare_info_layout_is_two_native_words() -> None:
    assert ctypes.sizeof(_libc.MshareInfo) == 16 == _libc.MSHARE_INFO_SIZE
    assert _libc.MshareInfo.start.offset == 0
    assert _libc.MshareInfo.size.offset == 8
    raw = struct.pack("=QQ", 0x7E0000000000, 1 << 39)
    info = _libc.MshareInfo.from_buffer_copy(raw)
    assert (info.start, info.size) == (0x7E0000000000, 1 << 39)
    assert bytes(info) == raw
    assert "0x7e0000000000" in repr(info)


def test_constants_match_linux_uapi() -> None:
    assert _libc.MAP_FIXED_NOREPLACE == 0x100000
    assert (_libc.MAP_SHARED, _libc.MAP_PRIVATE, _libc.MAP_FIXED) == (1, 2, 0x10)
    assert (_libc.PROT_READ, _libc.PROT_WRITE) == (1, 2)


def test_fixed_address_shared_mapping_on_memfd(memfd: int) -> None:
    start = free_window()
    assert _libc.mmap(start, FAKE_ALIGN, RW, SHARED_NOREPLACE, memfd) == start
    try:
        ctypes.memmove(start + 100, b"through the mapping", 19)
        assert os.pread(memfd, 19, 100) == b"through the mapping"
        os.pwrite(memfd, b"through the fd", FAKE_ALIGN - 14)
        assert ctypes.string_at(start + FAKE_ALIGN - 14, 14) == b"through the fd"
    finally:
        _libc.munmap(start, FAKE_ALIGN)
    assert not is_mapped(start, FAKE_ALIGN)


def test_noreplace_collision_raises_and_keeps_the_original(memfd: int) -> None:
    start = free_window()
    _libc.mmap(start, FAKE_ALIGN, RW, SHARED_NOREPLACE, memfd)
    try:
        ctypes.memmove(start, b"original", 8)
        other = os.memfd_create("other")
        os.ftruncate(other, FAKE_ALIGN)
        try:
            # Overlap only the last page: any overlap must be refused.
            with pytest.raises(AddressInUseError) as exc:
                _libc.mmap(start + FAKE_ALIGN - PAGE, FAKE_ALIGN, RW, SHARED_NOREPLACE, other,
                           path="/x")
        finally:
            os.close(other)
        assert exc.value.errno == errno.EEXIST
        assert isinstance(exc.value, FileExistsError)
        assert f"{start + FAKE_ALIGN - PAGE:#x}" in str(exc.value)
        assert exc.value.filename == "/x"
        assert ctypes.string_at(start, 8) == b"original"
    finally:
        _libc.munmap(start, FAKE_ALIGN)


def test_mmap_errors_keep_errno(memfd: int) -> None:
    start = free_window()
    with pytest.raises(MshareError) as exc:
        _libc.mmap(start + 1, PAGE, RW, SHARED_NOREPLACE, memfd)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(MshareError) as exc:
        _libc.mmap(start, PAGE, RW, SHARED_NOREPLACE, 9999)
    assert exc.value.errno == errno.EBADF


def test_readonly_fd_refuses_prot_write(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as f:
        f.truncate(PAGE)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(MsharePermissionError) as exc:
            _libc.mmap(free_window(), PAGE, RW, SHARED_NOREPLACE, fd)
        assert exc.value.errno == errno.EACCES
    finally:
        os.close(fd)


def test_munmap_unaligned_is_einval() -> None:
    with pytest.raises(MshareError) as exc:
        _libc.munmap(free_window() + 1, PAGE)
    assert exc.value.errno == errno.EINVAL


def test_read_mshare_info_states(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "info")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert _libc.read_mshare_info(fd) is None  # not established: 0 bytes
        os.write(fd, struct.pack("=QQ", 0x7E0000000000, 1 << 39))
        info = _libc.read_mshare_info(fd)
        assert info is not None and (info.start, info.size) == (0x7E0000000000, 1 << 39)
        os.ftruncate(fd, 7)
        with pytest.raises(MshareError) as exc:
            _libc.read_mshare_info(fd, path)
        assert exc.value.errno == errno.EIO and "7 bytes" in str(exc.value)
    finally:
        os.close(fd)


def test_mount_on_missing_target_is_not_found() -> None:
    # ENOENT for the target comes before any check of the file system type.
    if os.geteuid() != 0:
        pytest.skip("needs root: an unprivileged mount() fails with EPERM first")
    with pytest.raises(RegionNotFoundError):
        _libc.mount("none", "/nonexistent/libmshare-test", "tmpfs")


def test_mount_without_privilege_is_permission_error() -> None:
    code = (
        "import os\n"
        "from libmshare import _libc\n"
        "from libmshare.errors import MsharePermissionError\n"
        # After the imports: the interpreter may live where nobody cannot read.
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    _libc.mount('none', '/tmp', 'tmpfs')\n"
        "except MsharePermissionError as e:\n"
        "    print(e.errno)\n"
    )
    if os.geteuid() != 0:
        code = code.replace("os.setgid(65534); os.setuid(65534)\n", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(errno.EPERM), out.stderr


def test_noreplace_ignored_by_an_old_kernel_is_undone(
    memfd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before Linux 4.17 the flag was unknown and the address only a hint: emulate that
    # by placing the mapping elsewhere, and check it is unmapped and reported.
    real = _libc._mmap
    placed: list[int] = []

    def hint_only(addr: int, length: int, prot: int, flags: int, fd: int, off: int) -> int:
        res = real(None, length, prot, flags & ~_libc.MAP_FIXED_NOREPLACE, fd, off)
        placed.append(res)
        return res

    monkeypatch.setattr(_libc, "_mmap", hint_only)
    start = free_window()
    with pytest.raises(MshareError, match="needs Linux 4.17") as exc:
        _libc.mmap(start, FAKE_ALIGN, RW, SHARED_NOREPLACE, memfd)
    assert f"{start:#x}" in str(exc.value)
    assert placed and placed[0] != start and not is_mapped(placed[0], FAKE_ALIGN)


def test_mapping_at_address_zero_is_a_result_not_an_error(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # A privileged MAP_FIXED mapping at 0 returns 0; a stale errno must not turn it into
    # an exception (ctypes gives None for a NULL c_void_p, so the wrapper reads a word).
    monkeypatch.setattr(_libc, "_mmap", lambda *args: 0)
    ctypes.set_errno(errno.EACCES)
    assert _libc.mmap(0, FAKE_ALIGN, RW, _libc.MAP_PRIVATE | _libc.MAP_FIXED_NOREPLACE, -1) == 0


def test_map_failed_is_an_error_with_its_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object) -> int:
        ctypes.set_errno(errno.ENOMEM)
        return _libc.MAP_FAILED

    monkeypatch.setattr(_libc, "_mmap", failing)
    with pytest.raises(MshareError) as exc:
        _libc.mmap(0, FAKE_ALIGN, RW, _libc.MAP_PRIVATE, -1)
    assert exc.value.errno == errno.ENOMEM
