"""Fixtures for host tests of libmshare: no msharefs needed.

``fake_mount`` points the ``LIBMSHARE_FAKE_MOUNT`` test hook at a fresh tmpfs
directory whose ``mshare_info`` says 2 MiB, so regions are small shared files that
child processes (which inherit the environment) see too.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # a bare `pytest` from elsewhere: test this checkout
    sys.path.insert(0, str(_REPO))

from _hosthelp import FAKE_ALIGN, free_window

import libmshare
from libmshare import _libc
from libmshare.fs import FAKE_MOUNT_ENV

# Child processes (subprocess, spawn) must import the same libmshare as this one.
_pkg_root = str(Path(libmshare.__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_pkg_root, os.environ.get("PYTHONPATH", "")) if p
)


def _tmpfs_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@pytest.fixture
def fake_mount(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="libmshare-test-", dir=_tmpfs_dir()))
    (path / "mshare_info").write_text(f"{FAKE_ALIGN}\n")
    monkeypatch.setenv(FAKE_MOUNT_ENV, str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def memfd() -> Iterator[int]:
    """A memfd sized to one fake alignment unit."""
    fd = os.memfd_create("libmshare-test")
    os.ftruncate(fd, FAKE_ALIGN)
    yield fd
    os.close(fd)


@pytest.fixture
def anon_block() -> Iterator[tuple[int, int]]:
    """An anonymous mapping of one fake unit at a free aligned address (unmapped after)."""
    start = free_window()
    _libc.mmap(
        start, FAKE_ALIGN, _libc.PROT_READ | _libc.PROT_WRITE,
        _libc.MAP_PRIVATE | _libc.MAP_ANONYMOUS | _libc.MAP_FIXED_NOREPLACE, -1,
    )
    yield start, FAKE_ALIGN
    _libc.munmap(start, FAKE_ALIGN)


@pytest.fixture
def deny_open(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """deny_open(path): from now on os.open of exactly path fails with EACCES, as for a
    region this user may not open; other paths open as usual."""
    real_open = os.open

    def deny(target: Path) -> None:
        def denied(path: Any, flags: int, *args: Any) -> int:
            if str(path) == str(target):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", denied)
    return deny
