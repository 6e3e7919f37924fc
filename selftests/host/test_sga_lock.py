"""examples.sga.locks: per-stripe fcntl locks between processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from examples.sga.locks import StripeLocks, lock_dir


def _child_can_take(path: str, stripe: int) -> bool:
    """Try the stripe from a separate process (fcntl locks never conflict within one)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            ok = StripeLocks(path).try_acquire(stripe)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    return answer == b"1"


@pytest.fixture
def lock_path(tmp_path: Path) -> str:
    path = str(tmp_path / "sga.lock")
    StripeLocks(path, create=True).close()
    return path


def test_a_held_stripe_excludes_other_processes_and_only_that_stripe(lock_path: str) -> None:
    locks = StripeLocks(lock_path)
    locks.acquire(3)
    assert not _child_can_take(lock_path, 3)
    assert _child_can_take(lock_path, 4)
    locks.release(3)
    assert _child_can_take(lock_path, 3)
    locks.close()


def test_a_dead_holder_releases_its_stripes(lock_path: str) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            StripeLocks(lock_path).acquire(7)
            os.write(w, b"x")
            signal.pause()
        finally:
            os._exit(0)
    os.read(r, 1)
    assert not _child_can_take(lock_path, 7)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert _child_can_take(lock_path, 7)
    os.close(r)
    os.close(w)


def test_create_is_exclusive(lock_path: str) -> None:
    with pytest.raises(FileExistsError):
        StripeLocks(lock_path, create=True)


def test_lock_dir_is_writable() -> None:
    assert os.access(lock_dir(), os.W_OK)
