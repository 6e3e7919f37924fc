"""mshare_lab.hostload: the host's load sampled for a guest, and the bench loop recording
it around every run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mshare_lab import env, hostload
from mshare_lab.benchloop import Loop, identity


def test_sampler_writes_a_sample_at_once_and_removes_it_after(tmp_path: Path) -> None:
    with hostload.Sampler(tmp_path):
        sample = json.loads((tmp_path / hostload.FILE).read_text())
        assert len(sample["load"]) == 3 and sample["cpus"] >= 1
    assert not (tmp_path / hostload.FILE).exists()


def test_guest_reads_the_hosts_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env.GUEST, "1")
    (tmp_path / hostload.FILE).write_text(json.dumps({"time": 1.0, "load": [7.5, 6, 5],
                                                      "cpus": 2}))
    assert hostload.now(tmp_path) == {"time": 1.0, "load": [7.5, 6, 5], "cpus": 2}


def test_guest_without_a_sampler_gets_none(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env.GUEST, "1")
    assert hostload.now(tmp_path) is None


def test_on_the_host_the_load_is_read_directly(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env.GUEST, raising=False)
    sample = hostload.now(tmp_path)
    assert sample is not None and len(sample["load"]) == 3


def test_loop_records_the_host_load_around_each_run(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env.GUEST, "1")
    out = tmp_path / "doc.json"
    seen: list[float] = []

    def measure(cell: tuple[int | str, ...]) -> dict[str, object]:
        # The host's load changes while the run goes on.
        (tmp_path / hostload.FILE).write_text(json.dumps({"load": [2.0, 1, 1]}))
        seen.append(1)
        return {}

    (tmp_path / hostload.FILE).write_text(json.dumps({"load": [0.5, 1, 1]}))
    doc = Loop({"runs": []}, str(out), identity({}, {})).run([(0,)], measure)
    assert seen and doc["runs"][0]["host_load"] == {"before": {"load": [0.5, 1, 1]},
                                                    "after": {"load": [2.0, 1, 1]}}
