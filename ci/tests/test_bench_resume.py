"""A bench plan resumed across boots: the host side (vmrun.guestdoc.run_bench with out and
resume, guestdoc.resumable, the run-pgbench and run-sga --resume flags) with the fake vng
of conftest.py, and the SGA guest loop with a fake examples.sga runner."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.sga.result import RunResult
from kbuild.artifact import Build
from mshare_lab import env
from mshare_lab.benchloop import ResumeError
from pgbenchlib.plans import resolve
from sgabench import guest as sga_guest
from sgabench.plans import Case
from vmrun import guestdoc, provenance, rawfiles

REPO = Path(__file__).resolve().parents[2]

# A bench's guest script on the shared loop: the plan is --reps; it dies (as a boot that
# times out would) when --die-after cells are done.
FAKE_GUEST = """
import argparse, sys
from mshare_lab.benchloop import Loop, identity, load
from vmrun import provenance
p = argparse.ArgumentParser()
p.add_argument("--reps", type=int)
p.add_argument("--die-after", type=int, default=-1)
p.add_argument("--resume", action="store_true")
p.add_argument("--out")
a = p.parse_args()
plan = {"reps": a.reps}
loop = Loop({"runs": []}, a.out, identity(plan, provenance.current()),
            load(a.out) if a.resume else None)
cells = [(rep, c) for rep in range(a.reps) for c in ("stock", "msharefs")]
def measure(cell):
    if len(loop.done) == a.die_after:
        sys.exit(9)
    return {"rep": cell[0], "config": cell[1], "boot": len(loop.doc["checkpoint"]["boots"])}
loop.run(cells, measure)
"""


def _build(image: Path) -> Build:
    return Build(image, "k42", "release", True, None, {"git_revision": "r1"})


@pytest.fixture(autouse=True)
def _cache_per_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # vm-run names a scratch directory by the second: boots here follow within one.
    boots = iter(range(100))
    real = env.cache_root
    monkeypatch.setattr(env, "cache_root", lambda: real() / f"boot{next(boots)}")


def _boot(script: Path, image: Path, out: Path, *args: str,
          resume: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
    return guestdoc.run_bench(str(script), list(args), _build(image), label="test", cpus=2,
                              memory="1G", timeout=60, out=out, resume=resume)


def _cells(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(r["cell"]) for r in doc["runs"])


def test_a_run_resumed_in_a_second_boot_has_the_cells_of_one_boot(
        fake: Any, tmp_path: Path) -> None:
    image = fake()
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)
    status, whole = _boot(script, image, tmp_path / "whole" / "r.json", "--reps", "3")
    assert status == 0 and whole is not None and len(whole["runs"]) == 6

    out = tmp_path / "results" / "r.json"
    status, first = _boot(script, image, out, "--reps", "3", "--die-after", "2")
    assert status == 9 and first is not None and len(first["runs"]) == 2
    # The guest saved into the result directory itself, cell by cell.
    assert json.loads(out.read_text())["runs"] == first["runs"]

    saved = guestdoc.resumable(out, {"reps": 3}, _build(image))
    status, doc = _boot(script, image, out, "--reps", "3", resume=saved)
    assert status == 0 and doc is not None
    assert _cells(doc) == _cells(whole)
    assert [r["boot"] for r in doc["runs"]] == [1, 1, 2, 2, 2, 2]  # the first boot's kept
    assert doc["checkpoint"]["identity"]["kernel"] == "k42"
    assert doc["provenance"]["kernel"]["key"] == "k42"


def test_every_boot_of_a_resumed_run_keeps_its_raw_files_outside_git_with_sha256(
        fake: Any, tmp_path: Path) -> None:
    image = fake()
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)
    out = tmp_path / "results" / "r.json"
    _, first = _boot(script, image, out, "--reps", "2", "--die-after", "1")
    assert first is not None and len(first["raw_files"]) == 1
    _, doc = _boot(script, image, out, "--reps", "2", resume=first)
    assert doc is not None
    boots = doc["raw_files"]
    assert len(boots) == 2 and boots[0] == first["raw_files"][0]
    # Each boot's copies in their own directory (the fixture gives each boot a cache
    # root, so kept_in is absolute here), the first boot's document with its one run and
    # the second's with all 4.
    runs = []
    for rec in boots:
        kept = Path(rec["kept_in"])
        assert kept.parent.name == "r" and kept.name == rec["boot"]
        assert {"console.log", "provenance.json", "document.json"} <= rec["sha256"].keys()
        for name, digest in rec["sha256"].items():
            assert hashlib.sha256((kept / name).read_bytes()).hexdigest() == digest
        runs.append(len(json.loads((kept / "document.json").read_text())["runs"]))
    assert runs == [len(first["runs"]), 4] == [1, 4]


def test_raw_files_that_cannot_be_kept_are_said_and_leave_the_result_alone(
        fake: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = fake()
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)

    def full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rawfiles.shutil, "copyfile", full)
    status, doc = _boot(script, image, tmp_path / "r.json", "--reps", "1")
    assert status == 0 and doc is not None and len(doc["runs"]) == 2
    assert doc["raw_files"] == []
    assert "the raw files of" in capsys.readouterr().err


def test_a_resume_of_another_plan_or_kernel_is_refused_before_a_boot(
        fake: Any, tmp_path: Path) -> None:
    image = fake()
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)
    out = tmp_path / "r.json"
    _boot(script, image, out, "--reps", "2", "--die-after", "1")
    with pytest.raises(ResumeError, match=r'plan differs \(saved \{"reps": 2\}, now'):
        guestdoc.resumable(out, {"reps": 10}, _build(image))
    other = Build(image, "k43", "release", True, None, {})
    with pytest.raises(ResumeError, match='kernel differs .saved "k42", now "k43"'):
        guestdoc.resumable(out, {"reps": 2}, other)
    # The guest refuses too (the same check), leaving the saved runs alone.
    before = json.loads(out.read_text())["runs"]
    status, _ = _boot(script, image, out, "--reps", "10", resume=json.loads(out.read_text()))
    assert status != 0 and json.loads(out.read_text())["runs"] == before


def test_run_pgbench_refuses_another_plans_document_without_booting(tmp_path: Path) -> None:
    saved = tmp_path / "pgbench-quick.json"
    # A quick plan's document; the command asks for the quick plan with 10 repetitions.
    saved.write_text(json.dumps({"runs": [], "checkpoint": {"identity": {
        "plan": resolve("quick").to_json(), "kernel": None,
        "git_revision": provenance.git_revision()}}}))
    (tmp_path / "bzImage").write_bytes(b"")
    p = subprocess.run([sys.executable, str(REPO / "bench/run-pgbench"), "--quick",
                        "--repeat", "10", "--kernel", str(tmp_path / "bzImage"),
                        "--resume", str(saved), "--json", str(tmp_path / "new.json")],
                       capture_output=True, text=True, check=False, timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"run-pgbench: cannot resume {saved}: plan differs" in p.stderr
    assert "booting" not in p.stderr and not (tmp_path / "new.json").exists()


def _fake_sga(calls: list[str], die_at: int | None) -> Any:
    def run(config: Any, progress: Any) -> RunResult:
        if len(calls) == die_at:
            raise KeyboardInterrupt  # the boot's end, mid-run
        calls.append(config.backend)
        return RunResult(backend=config.backend, label=config.backend, servers=4,
                         size=64 << 20, nblocks=10, duration_s=1.0, reads=100 + len(calls))
    return run


def test_the_sga_guest_loop_resumes_where_it_stopped(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sga_guest, "ensure_dev_shm", lambda: None)
    monkeypatch.setattr(provenance, "current", lambda: {"git_revision": "r1",
                                                        "kernel": {"key": "k1"}})
    args: dict[str, Any] = {"accelerator": "TCG", "reserve_hugepages": False, "repeat": 3,
                            "plan_name": "custom", "log": lambda s: None}
    cases = [Case(64 << 20, 4, [], 0.1)]
    whole_calls: list[str] = []
    monkeypatch.setattr(sga_guest, "run", _fake_sga(whole_calls, None))
    whole = sga_guest.run_plan(cases, ["a", "b"], str(tmp_path / "whole.json"), **args)

    out = str(tmp_path / "sga.json")
    first: list[str] = []
    monkeypatch.setattr(sga_guest, "run", _fake_sga(first, 3))
    with pytest.raises(KeyboardInterrupt):
        sga_guest.run_plan(cases, ["a", "b"], out, **args)
    second: list[str] = []
    monkeypatch.setattr(sga_guest, "run", _fake_sga(second, None))
    doc = sga_guest.run_plan(cases, ["a", "b"], out, resume=True, **args)
    assert _cells(doc) == _cells(whole) and first + second == whole_calls
    assert [r["reads"] for r in doc["runs"][:3]] == [101, 102, 103]  # the first boot's data
    with pytest.raises(ResumeError, match="plan differs"):
        sga_guest.run_plan(cases, ["a", "b"], out, resume=True, **{**args, "repeat": 10})
