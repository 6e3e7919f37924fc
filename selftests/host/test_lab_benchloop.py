"""The shared bench loop (mshare_lab.benchloop): a save after every cell, and a resume
that keeps the saved cells and refuses another run's document."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mshare_lab.benchloop import Cell, Loop, ResumeError, identity, load, rotation

RECORD = {"git_revision": "abc123", "kernel": {"key": "k1", "flavor": "release"}}
PLAN = {"name": "quick", "reps": 3}
CELLS: list[Cell] = [(rep, c) for rep in range(3) for c in rotation(["stock", "msharefs"], rep)]


class Interrupted(Exception):
    """The boot dying in the middle of a cell."""


def _measure(calls: list[Cell], die_at: int | None = None) -> Any:
    def measure(cell: Cell) -> dict[str, Any]:
        if len(calls) == die_at:
            raise Interrupted
        calls.append(cell)
        return {"config": cell[1], "rep": cell[0], "value": 10 * int(cell[0])}
    return measure


def _run(out: Path, calls: list[Cell], *, die_at: int | None = None, resume: bool = False,
         plan: dict[str, Any] = PLAN, record: dict[str, Any] = RECORD) -> dict[str, Any]:
    saved = load(str(out)) if resume else None
    loop = Loop({"plan": plan, "runs": []}, str(out), identity(plan, record), saved)
    return loop.run(CELLS, _measure(calls, die_at))


def _cells(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(r["cell"]) for r in doc["runs"]]


def test_every_cell_is_saved_as_it_completes(tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    with pytest.raises(Interrupted):
        _run(out, [], die_at=4)
    saved = json.loads(out.read_text())
    assert _cells(saved) == CELLS[:4]
    assert saved["checkpoint"]["identity"] == {"plan": PLAN, "kernel": "k1",
                                               "git_revision": "abc123"}
    assert "finished" not in saved


def test_resume_after_an_interruption_gives_the_cells_of_an_uninterrupted_run(
        tmp_path: Path) -> None:
    whole = _run(tmp_path / "whole.json", [])
    out = tmp_path / "doc.json"
    first: list[Cell] = []
    with pytest.raises(Interrupted):
        _run(out, first, die_at=3)
    before = json.loads(out.read_text())["runs"]
    second: list[Cell] = []
    doc = _run(out, second, resume=True)
    assert sorted(_cells(doc)) == sorted(_cells(whole)) and len(doc["runs"]) == len(CELLS)
    assert second == CELLS[3:]  # the saved cells are not run again ...
    assert doc["runs"][:3] == before  # ... and their data is kept
    assert len(doc["checkpoint"]["boots"]) == 2 and "finished" in doc
    assert json.loads((tmp_path / "doc.json").read_text()) == doc


def test_resuming_a_finished_run_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    _run(out, [])
    again: list[Cell] = []
    assert _cells(_run(out, again, resume=True)) == CELLS and again == []


@pytest.mark.parametrize(("change", "named"), [
    ({"plan": {"name": "quick", "reps": 10}}, 'plan differs (saved {"name": "quick", "reps": 3}'),
    ({"record": {**RECORD, "kernel": {"key": "k2"}}}, 'kernel differs (saved "k1", now "k2")'),
    ({"record": {**RECORD, "git_revision": "def456"}}, "git_revision differs"),
])
def test_another_runs_document_is_refused(tmp_path: Path, change: dict[str, Any],
                                          named: str) -> None:
    out = tmp_path / "doc.json"
    with pytest.raises(Interrupted):
        _run(out, [], die_at=2)
    saved = out.read_text()
    with pytest.raises(ResumeError, match="cannot resume") as err:
        _run(out, [], resume=True, **change)
    assert named in str(err.value)
    assert out.read_text() == saved  # refused before anything is written


def test_a_document_without_a_checkpoint_or_none_at_all_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    out.write_text(json.dumps({"runs": []}))
    with pytest.raises(ResumeError, match="has no checkpoint"):
        _run(out, [], resume=True)
    with pytest.raises(ResumeError, match="cannot resume .*absent.json"):
        load(str(tmp_path / "absent.json"))


def test_a_cell_running_past_stall_s_reports_where_its_tasks_wait(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    loop = Loop({"runs": []}, str(tmp_path / "doc.json"), identity({}, {}), stall_s=0.05)
    loop.run([(0,)], lambda cell: (time.sleep(0.3), {})[1])
    err = capfd.readouterr().err
    assert "benchloop: cell [0] has run" in err
    assert f"(pid {os.getpid()}, " in err


def test_a_cell_within_stall_s_reports_nothing(tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    loop = Loop({"runs": []}, str(tmp_path / "doc.json"), identity({}, {}), stall_s=30)
    loop.run([(0,)], lambda cell: {})
    assert "benchloop" not in capfd.readouterr().err
