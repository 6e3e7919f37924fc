"""``mshare stat`` with stats and ``mshare top``, on the emulated mount with stats given
by a stand-in backend (the emulation has none of its own)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import _backend
from libmshare.cli import main
from libmshare.stats import RegionStats

MiB = 1 << 20


def stats(resident: int = 0, page_tables: int = 0, mappers: int = 0) -> RegionStats:
    return RegionStats(start=0x7E0000000000, size=FAKE_ALIGN, resident=resident, swapped=0,
                       pmd_mapped=0, page_tables=page_tables, mappers=mappers,
                       memcg_id=4242, cgroup="/sys/fs/cgroup/user.slice")


@pytest.fixture
def regions(fake_mount: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, RegionStats]:
    """Regions a, b, c on the emulated mount; their stats are this dict's, by name
    (a name left out has none, like a region on a kernel without MSHARE_GET_STATS)."""
    given = {
        "a": stats(resident=1 * MiB, page_tables=12 << 10, mappers=5),
        "b": stats(resident=16 * MiB, page_tables=4 << 10, mappers=1),
        "c": stats(resident=4 * MiB, page_tables=40 << 10, mappers=3),
    }

    def read_stats(self: object, fd: int, path: str) -> RegionStats:
        name = os.path.basename(path)
        if name not in given:
            raise libmshare.NotSupportedError(errno.EOPNOTSUPP, "stats: none here", path)
        return given[name]

    monkeypatch.setattr(_backend.EmulatedBackend, "read_stats", read_stats)
    for name in ("a", "b", "c"):
        libmshare.create(name, FAKE_ALIGN).close()
    return given


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def top_names(out: str) -> list[str]:
    lines = out.splitlines()
    assert lines[1].split()[0] == "NAME"
    return [line.split()[0] for line in lines[2:]]


def test_stat_shows_stats_in_human_sizes(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(capsys, "stat", "b").splitlines()
    assert "resident: 16M (16777216 bytes)" in out
    assert "page tables: 4.0K (4096 bytes)" in out
    assert "swapped: 0" in out and "mappers: 1" in out
    assert "memory cgroup: /sys/fs/cgroup/user.slice (id 4242)" in out


def test_stat_json_includes_the_stats(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    got = json.loads(run(capsys, "stat", "--json", "c"))
    assert got["stats"] == {
        "start": 0x7E0000000000, "size": FAKE_ALIGN, "resident": 4 * MiB, "swapped": 0,
        "pmd_mapped": 0, "page_tables": 40 << 10, "mappers": 3, "memcg_id": 4242,
        "cgroup": "/sys/fs/cgroup/user.slice"}
    assert got["name"] == "c" and got["mode"] == "0600"


def test_stat_without_stats_says_they_are_not_available(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    del regions["b"]
    assert "stats: not available" in run(capsys, "stat", "b")
    assert json.loads(run(capsys, "stat", "--json", "b"))["stats"] is None


def test_top_sorts_by_resident_by_default(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    assert top_names(run(capsys, "top", "--count", "1")) == ["b", "c", "a"]


@pytest.mark.parametrize(("key", "order"), [("resident", ["b", "c", "a"]),
                                            ("tables", ["c", "a", "b"]),
                                            ("mappers", ["a", "c", "b"])])
def test_top_sort_key_orders_largest_first(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str], key: str,
    order: list[str],
) -> None:
    assert top_names(run(capsys, "top", "--sort", key, "--count", "1")) == order


def test_top_puts_regions_without_stats_last(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    del regions["b"]
    out = run(capsys, "top", "--count", "1")
    assert top_names(out) == ["c", "a", "b"]
    assert out.splitlines()[-1].split()[2:] == ["no"] + ["-"] * 6


def test_top_shows_sizes_for_people_and_a_summary(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str], fake_mount: Path,
) -> None:
    lines = run(capsys, "top", "--count", "1").splitlines()
    assert lines[0].startswith(f"{fake_mount}: 3 regions, 21M resident, 56K page tables, "
                               "by resident at ")
    assert lines[1].split() == ["NAME", "SIZE", "HUGE", "RESIDENT", "SWAP", "PMD", "TABLES",
                                "MAPPERS", "CGROUP"]
    assert lines[2].split() == ["b", "2M", "no", "16M", "0", "0", "4.0K", "1",
                                "/sys/fs/cgroup/user.slice"]


def test_top_json_is_one_sample(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str], fake_mount: Path,
) -> None:
    got = json.loads(run(capsys, "top", "--json", "--count", "3", "--sort", "mappers"))
    assert (got["mount"], got["sort"]) == (str(fake_mount), "mappers")
    assert [r["name"] for r in got["regions"]] == ["a", "c", "b"]
    assert got["regions"][0]["stats"]["mappers"] == 5
    assert abs(got["time"] - time.time()) < 60


def test_top_count_refreshes_that_many_times(
    regions: dict[str, RegionStats], capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(capsys, "top", "--count", "3", "--interval", "0.01")
    samples = out.split("\n\n")
    assert len(samples) == 3
    assert all(top_names(s) == ["b", "c", "a"] for s in samples)


def test_top_of_an_empty_mount_is_a_header(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    lines = run(capsys, "top", "--count", "1").splitlines()
    assert lines[0].startswith(f"{fake_mount}: 0 regions, by resident at ")
    assert lines[1:] == ["NAME  SIZE  HUGE  RESIDENT  SWAP  PMD  TABLES  MAPPERS  CGROUP"]


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--interval", "-1"],
                                  ["--interval", "x"], ["--count", "0"],
                                  ["--sort", "size"]])
def test_top_bad_options_are_usage_errors(
    fake_mount: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["top", *argv])
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


def test_top_failure_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["top", "--mount", str(tmp_path), "--count", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("mshare: ") and len(err.splitlines()) == 1


def test_top_ends_quietly_with_status_0_on_ctrl_c(fake_mount: Path) -> None:
    # A job started in the background of a non-interactive shell (nohup cmd &) has SIGINT
    # ignored, which a child inherits through exec, and Python then installs no
    # KeyboardInterrupt handler: catch it here while the child starts (exec resets a
    # caught signal to its default).
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "libmshare", "top", "--interval", "0.05"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"{fake_mount}: 0 regions")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and err == ""
