"""mshare run's preload library: one the command's user can read, or a clear error."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from libmshare import run_cmd

NOBODY = pwd.getpwuid(65534).pw_name

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")


def private_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A library in a mode-0700 directory of root's, named by MSHARE_PRELOAD_LIB."""
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    lib = d / "libmshare_preload.so"
    lib.write_bytes(b"\x7fELF not really, but bytes to copy " + os.urandom(8))
    monkeypatch.setenv(run_cmd.LIBRARY_ENV, str(lib))
    return lib


@needs_root
def test_readable_by_asks_as_that_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = private_library(tmp_path, monkeypatch)
    assert run_cmd.readable_by("root", lib)
    assert not run_cmd.readable_by(NOBODY, lib)


@needs_root
def test_library_the_user_cannot_read_is_copied_where_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = private_library(tmp_path, monkeypatch)
    copy = run_cmd.preload_library(NOBODY)
    assert copy != lib and copy.read_bytes() == lib.read_bytes()
    assert run_cmd.readable_by(NOBODY, copy)
    assert f"{NOBODY} cannot read {lib}; preloading a copy, {copy}" in capsys.readouterr().err
    assert run_cmd.preload_library(NOBODY) == copy  # the same copy, not a new one


def test_library_for_its_own_user_is_used_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = private_library(tmp_path, monkeypatch)
    assert run_cmd.preload_library(pwd.getpwuid(os.geteuid()).pw_name) == lib
    assert run_cmd.preload_library() == lib


def test_unreadable_library_that_cannot_be_copied_names_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(run_cmd.LIBRARY_ENV, str(tmp_path / "gone" / "libmshare_preload.so"))
    monkeypatch.setattr(run_cmd, "readable_by", lambda user, path: False)
    with pytest.raises(PermissionError, match=f"{NOBODY} cannot read the preload library "
                       f".*set {run_cmd.LIBRARY_ENV}"):
        run_cmd.preload_library(NOBODY)


def test_preload_env_puts_the_readable_copy_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = private_library(tmp_path, monkeypatch)
    monkeypatch.setattr(run_cmd, "readable_by", lambda user, path: path != lib)
    env = run_cmd.preload_env("/sys/fs/mshare/x", mount="/sys/fs/mshare",
                              base={"LD_PRELOAD": "/other.so"}, user=NOBODY)
    first, other = env["LD_PRELOAD"].split()
    assert first != str(lib) and Path(first).read_bytes() == lib.read_bytes()
    assert other == "/other.so"
