"""Huge regions (``create(huge=True)``, ``Region.huge``) on the emulated mount, which keeps
the flag in an xattr and, having no 2 MiB pages, falls back to 4 KiB pages as the
kernel does; a kernel without the v6 ioctls is stood in for by a plain tmpfs file."""

from __future__ import annotations

import copy
import errno
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import _backend, _libc, _mapping
from libmshare.errors import (
    MshareError,
    MshareValueError,
    NotSupportedError,
    RegionEstablishedError,
)

MSHAREFS = _backend.MsharefsBackend


@pytest.fixture
def calls(fake_mount: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order in which create sets flags, establishes the file and maps it."""
    seen: list[str] = []

    def record(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return fn(*args, **kwargs)
        return wrapper

    emulated = _backend.EmulatedBackend
    monkeypatch.setattr(emulated, "set_flags", record("set_flags", emulated.set_flags))
    monkeypatch.setattr(emulated, "establish", record("establish", emulated.establish))
    monkeypatch.setattr(_mapping, "map_fixed", record("mmap", _mapping.map_fixed))
    return seen


@pytest.fixture
def fd_of(fake_mount: Path) -> Iterator[Any]:
    """fd_of(name, flags): an fd on the region file, closed afterwards."""
    fds: list[int] = []

    def open_(name: str, flags: int = os.O_RDWR) -> int:
        fds.append(os.open(fake_mount / name, flags))
        return fds[-1]

    yield open_
    for fd in fds:
        os.close(fd)


def lacking_v6(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulated regions answer the flags ioctls as a v5 kernel does: ENOTTY (a plain
    tmpfs file, which has no such ioctl, gives it for real)."""
    monkeypatch.setattr(_backend.EmulatedBackend, "set_flags", MSHAREFS.set_flags)
    monkeypatch.setattr(_backend.EmulatedBackend, "get_flags", MSHAREFS.get_flags)


# -- create(huge=...) and Region.huge ---------------------------------------------------

def test_create_huge_gives_a_huge_region(fake_mount: Path) -> None:
    with libmshare.create("db", FAKE_ALIGN, huge=True) as r:
        assert r.huge is True


def test_create_without_huge_gives_a_region_that_is_not_huge(fake_mount: Path) -> None:
    with libmshare.create("db", FAKE_ALIGN) as r:
        assert r.huge is False


def test_region_create_classmethod_takes_huge(fake_mount: Path) -> None:
    with libmshare.Region.create("db", FAKE_ALIGN, huge=True) as r:
        assert r.huge is True


def test_huge_flag_is_set_before_the_first_mmap(calls: list[str]) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    assert calls == ["set_flags", "establish", "mmap"]


def test_region_without_huge_sets_no_flags(calls: list[str]) -> None:
    # Nothing to ask of the kernel, so a kernel older than series v6 serves it too.
    libmshare.create("db", FAKE_ALIGN).close()
    assert calls == ["establish", "mmap"]


@pytest.mark.parametrize("huge", [1, "yes", None])
def test_huge_that_is_not_a_bool_is_a_type_error_before_creating(
    fake_mount: Path, huge: object,
) -> None:
    with pytest.raises(TypeError, match="huge must be True or False"):
        libmshare.create("db", FAKE_ALIGN, huge=huge)  # type: ignore[arg-type]
    assert not (fake_mount / "db").exists()


def test_attacher_in_another_process_sees_huge(fake_mount: Path) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    code = "import libmshare\nwith libmshare.attach('db') as r:\n    print(r.huge)\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "True\n"


def test_readonly_attacher_sees_huge(fake_mount: Path) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    with libmshare.attach("db", readonly=True) as r:
        assert r.huge is True


def test_exist_ok_attaches_the_region_with_its_creators_flags(fake_mount: Path) -> None:
    # As with a fallback: huge=True asks, the region says what it got.
    with (libmshare.create("db", FAKE_ALIGN) as first,
          libmshare.create("db", FAKE_ALIGN, huge=True, exist_ok=True) as second):
        assert (first.huge, second.huge) == (False, False)


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy,
                                   lambda r: pickle.loads(pickle.dumps(r))])
def test_copies_of_a_handle_keep_huge(fake_mount: Path, clone: Any) -> None:
    with libmshare.create("db", FAKE_ALIGN, huge=True) as r, clone(r) as other:
        assert other.huge is True


def test_huge_region_on_the_emulated_mount_falls_back_without_stats(
    fake_mount: Path,
) -> None:
    # The emulation's memory is the file's own 4 KiB pages, and it counts nothing.
    with libmshare.create("db", FAKE_ALIGN, huge=True) as r:
        r.buf[:4] = b"data"
        with pytest.raises(NotSupportedError) as e:
            r.stats()
    assert e.value.errno == errno.EOPNOTSUPP


# -- stat and list_regions --------------------------------------------------------------

def test_stat_says_huge_without_mapping(fake_mount: Path) -> None:
    libmshare.create("big", FAKE_ALIGN, huge=True).close()
    libmshare.create("small", FAKE_ALIGN).close()
    assert [(i.name, i.huge) for i in libmshare.list_regions()] == [("big", True),
                                                                     ("small", False)]
    assert libmshare.stat("big").huge is True


def test_stat_of_a_region_before_its_first_mmap_says_what_it_asked(
    fake_mount: Path, fd_of: Any,
) -> None:
    fd = os.open(fake_mount / "db", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _backend.EmulatedBackend().set_flags(fd, _libc.MSHARE_F_HUGE, "db")
    finally:
        os.close(fd)
    info = libmshare.stat("db")
    assert (info.established, info.huge) == (False, True)


def test_stat_of_a_region_this_user_may_not_open_has_huge_none(
    fake_mount: Path, deny_open: Callable[[Path], None],
) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    deny_open(fake_mount / "db")
    assert libmshare.stat("db").huge is None


# -- a kernel older than series v6 ------------------------------------------------------

def test_create_huge_on_a_kernel_without_set_flags_is_enotty_and_leaves_no_file(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lacking_v6(monkeypatch)
    with pytest.raises(NotSupportedError, match=r"lacks MSHARE_SET_FLAGS \(older than "
                                                r"series v6\)") as e:
        libmshare.create("db", FAKE_ALIGN, huge=True)
    assert e.value.errno == errno.ENOTTY
    assert not (fake_mount / "db").exists()


def test_create_without_huge_works_on_a_kernel_without_flags(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lacking_v6(monkeypatch)
    with libmshare.create("db", FAKE_ALIGN) as r:
        assert r.huge is False
    assert libmshare.stat("db").huge is False


# -- the emulated backend refuses as the kernel does ------------------------------------

def test_set_flags_after_the_first_mmap_is_ebusy(fake_mount: Path, fd_of: Any) -> None:
    libmshare.create("db", FAKE_ALIGN).close()
    with pytest.raises(RegionEstablishedError) as e:
        _backend.EmulatedBackend().set_flags(fd_of("db"), _libc.MSHARE_F_HUGE, "db")
    assert e.value.errno == errno.EBUSY
    assert e.value.strerror == ("huge: the region is established already; choose before "
                                "its first mmap")
    assert libmshare.stat("db").huge is False


def test_set_flags_through_a_read_only_fd_is_ebadf(fake_mount: Path, fd_of: Any) -> None:
    (fake_mount / "db").write_bytes(b"")
    with pytest.raises(MshareError, match="huge: the region is open read-only") as e:
        _backend.EmulatedBackend().set_flags(fd_of("db", os.O_RDONLY), _libc.MSHARE_F_HUGE,
                                             "db")
    assert e.value.errno == errno.EBADF


def test_set_flags_unknown_bit_is_refused_naming_it(fake_mount: Path, fd_of: Any) -> None:
    (fake_mount / "db").write_bytes(b"")
    with pytest.raises(MshareValueError, match="unknown bits 0x4"):
        _backend.EmulatedBackend().set_flags(fd_of("db"), 0x4, "db")


def test_set_flags_without_user_xattrs_says_so(
    fake_mount: Path, fd_of: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (fake_mount / "db").write_bytes(b"")

    def no_xattrs(*args: Any) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    with pytest.raises(NotSupportedError, match="user xattrs") as e:
        _backend.EmulatedBackend().set_flags(fd_of("db"), _libc.MSHARE_F_HUGE, "db")
    assert e.value.errno == errno.EOPNOTSUPP


def test_get_flags_of_a_damaged_xattr_is_eio(fake_mount: Path, fd_of: Any) -> None:
    (fake_mount / "db").write_bytes(b"")
    fd = fd_of("db")
    os.setxattr(fd, "user.mshare.flags", b"\x01")
    with pytest.raises(MshareError, match="not 8 bytes") as e:
        _backend.EmulatedBackend().get_flags(fd, "db")
    assert e.value.errno == errno.EIO
