"""``mshare create --huge`` and the huge flag in ``mshare stat``/``top``, on the emulated
mount (which keeps the flag and falls back to 4 KiB pages, as the kernel does)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import _backend
from libmshare.cli import main
from libmshare.stats import RegionStats

MiB = 1 << 20


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.fixture
def huge_stats(fake_mount: Path, monkeypatch: pytest.MonkeyPatch) -> RegionStats:
    """Stats a kernel would give a huge region with 8 MiB written: all of it PMD-mapped."""
    given = RegionStats(start=0x7E0000000000, size=FAKE_ALIGN, resident=8 * MiB, swapped=0,
                        pmd_mapped=8 * MiB, page_tables=4096, mappers=1, memcg_id=1,
                        cgroup="/sys/fs/cgroup")
    monkeypatch.setattr(_backend.EmulatedBackend, "read_stats",
                        lambda self, fd, path: given)
    return given


def test_create_huge_makes_a_huge_region(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    got = json.loads(run(capsys, "create", "db", "--size", "2M", "--huge", "--json"))
    assert got["huge"] is True
    assert libmshare.stat("db").huge is True


def test_create_without_huge_makes_a_region_that_is_not_huge(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert json.loads(run(capsys, "create", "db", "--size", "2M", "--json"))["huge"] is False


def test_huge_takes_no_value(fake_mount: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["create", "db", "--size", "2M", "--huge=yes"])
    assert e.value.code == 2 and "--huge" in capsys.readouterr().err
    assert not (fake_mount / "db").exists()


def test_create_help_states_the_fallback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["create", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0
    assert "--huge ask for 2 MiB pages" in help_text
    assert "uses 4 KiB pages silently" in help_text


def test_create_huge_on_a_kernel_without_set_flags_is_one_line_and_status_1(
    fake_mount: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A plain tmpfs file answers MSHARE_SET_FLAGS as a v5 kernel's msharefs: ENOTTY.
    monkeypatch.setattr(_backend.EmulatedBackend, "set_flags",
                        _backend.MsharefsBackend.set_flags)
    assert main(["create", "db", "--size", "2M", "--huge", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "errno": errno.ENOTTY, "type": "NotSupportedError",
        "error": "set flags: the running kernel's msharefs lacks MSHARE_SET_FLAGS (older "
                 f"than series v6): {fake_mount / 'db'}"}
    assert len(err.splitlines()) == 1 and "MSHARE_SET_FLAGS" in err
    assert not (fake_mount / "db").exists()


def test_stat_says_huge_and_how_much_is_pmd_mapped(
    huge_stats: RegionStats, capsys: pytest.CaptureFixture[str],
) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    out = run(capsys, "stat", "db").splitlines()
    assert "huge: yes" in out
    assert "pmd mapped: 8.0M (8388608 bytes)" in out


def test_stat_of_a_region_that_is_not_huge_says_no(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    libmshare.create("db", FAKE_ALIGN).close()
    assert "huge: no" in run(capsys, "stat", "db").splitlines()


def test_stat_of_a_region_this_user_may_not_open_says_huge_unknown(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
    deny_open: Callable[[Path], None],
) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    deny_open(fake_mount / "db")
    assert "huge: unknown" in run(capsys, "stat", "db").splitlines()
    assert json.loads(run(capsys, "stat", "--json", "db"))["huge"] is None


def test_stat_json_has_huge_and_pmd_mapped(
    huge_stats: RegionStats, capsys: pytest.CaptureFixture[str],
) -> None:
    libmshare.create("db", FAKE_ALIGN, huge=True).close()
    got = json.loads(run(capsys, "stat", "--json", "db"))
    assert got["huge"] is True and got["stats"]["pmd_mapped"] == 8 * MiB


def test_top_shows_huge_beside_pmd_mapped(
    huge_stats: RegionStats, capsys: pytest.CaptureFixture[str],
) -> None:
    libmshare.create("big", FAKE_ALIGN, huge=True).close()
    libmshare.create("small", FAKE_ALIGN).close()
    lines = run(capsys, "top", "--count", "1").splitlines()
    header = lines[1].split()
    rows = {line.split()[0]: dict(zip(header, line.split(), strict=True))
            for line in lines[2:]}
    assert (rows["big"]["HUGE"], rows["big"]["PMD"]) == ("yes", "8.0M")
    assert rows["small"]["HUGE"] == "no"


def test_top_json_has_huge_for_each_region(
    fake_mount: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    libmshare.create("big", FAKE_ALIGN, huge=True).close()
    libmshare.create("small", FAKE_ALIGN).close()
    got = json.loads(run(capsys, "top", "--json"))
    assert {r["name"]: r["huge"] for r in got["regions"]} == {"big": True, "small": False}
