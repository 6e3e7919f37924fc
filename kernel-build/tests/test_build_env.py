"""make's environment: a fixed build date and counter when the cache builds, so the same
key gives the same bzImage bytes whenever and wherever it is built."""
import os
import subprocess
from pathlib import Path

import pytest

from kbuild import kmake, source


def test_timestamp_is_the_tarballs_mtime_in_utc(tmp_path: Path) -> None:
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"")
    os.utime(tarball, (0, 1_700_000_000))
    stamp = source.timestamp(source.Source(tarball, "test", "sha"))
    assert stamp == "Tue Nov 14 22:13:20 UTC 2023"
    # usr/Makefile hands it to gen_initramfs as `date -d`.
    out = subprocess.run(["date", "-u", "-d", stamp, "+%s"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "1700000000"


def test_make_env_with_timestamp_fixes_date_and_counter(tmp_path: Path) -> None:
    env = kmake.make_env(tmp_path, "release", "libmshare-x", timestamp="Thu Jan 01 2026")
    assert env["KBUILD_BUILD_TIMESTAMP"] == "Thu Jan 01 2026"
    assert env["KBUILD_BUILD_VERSION"] == "1"
    assert env["KBUILD_BUILD_USER"] == "release"
    assert env["KBUILD_BUILD_HOST"] == "libmshare-x"


def test_make_env_without_timestamp_leaves_kbuild_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBUILD_BUILD_TIMESTAMP", raising=False)
    monkeypatch.delenv("KBUILD_BUILD_VERSION", raising=False)
    env = kmake.make_env(tmp_path, "debug", "libmshare-tree")
    assert "KBUILD_BUILD_TIMESTAMP" not in env
    assert "KBUILD_BUILD_VERSION" not in env


def test_make_env_puts_ccache_in_depend_mode(tmp_path: Path) -> None:
    # A cold build then preprocesses each file once (6m57s against 10m36s here).
    env = kmake.make_env(tmp_path, "release", "libmshare-x")
    assert env["CCACHE_DEPEND"] == "1"
    assert env["CCACHE_BASEDIR"] == str(tmp_path)
