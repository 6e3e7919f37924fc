"""bench/run-sga's repetitions: interleaved order, medians and spread, and the throughput
goal judged against the spread. (bench/ has no test directory of its own; the report and
plot are tested in selftests/host/test_sga_bench.py.)"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples.sga.result import RunResult
from mshare_lab.benchloop import rotation
from mshare_lab.stats import MIN_PAIRS
from sgabench import guest as sga_guest
from sgabench.plans import Case, default_repeat
from sgabench.report import goals, report, throughput_goal
from sgabench.runs import cases_of, spread

S = 64 << 20


def _run(backend: str, ops: int) -> dict[str, Any]:
    r = RunResult(backend=backend, label=backend, servers=4, size=S, nblocks=10,
                  pt_baseline_kib=100, pt_after_kib=228, touch_s=[0.01] * 4,
                  touch_faults=[3] * 4, vmpte_after_kib=[80] * 4, duration_s=1.0,
                  reads=ops, updates=0)
    return r.to_json()


def _doc(ops: dict[str, list[int]]) -> dict[str, Any]:
    runs = []
    n = len(next(iter(ops.values())))
    for rep in range(n):
        for name in rotation(list(ops), rep):
            runs.append({"case": 0, "rep": rep, **_run(name, ops[name][rep])})
    return {"system": {"kernel": "6.12", "cpu": "TCG", "cpus": 2, "mem_total_kib": 4 << 20,
                       "accelerator": "TCG"},
            "plan": [{"size": S, "servers": 4, "milestones": [], "duration": 1.0}],
            "repeat": n, "runs": runs,
            "provenance": {"git_revision": "abc", "kernel": {"key": "k1", "flavor": "release",
                                                            "mshare": True},
                           "guest": {"cpus": 2, "memory": "4G", "accelerator": "TCG"}}}


def test_rotation_puts_every_backend_in_every_position() -> None:
    b = ["mshare", "shm", "fork", "hugetlb"]
    orders = [rotation(b, rep) for rep in range(4)]
    assert orders[0] == b and orders[1] == ["shm", "fork", "hugetlb", "mshare"]
    for pos in range(4):
        assert sorted(o[pos] for o in orders) == sorted(b)


def test_median_and_spread() -> None:
    sp = spread([5.0, 1.0, 3.0])
    assert sp is not None and (sp.median, sp.low, sp.high, sp.n, sp.width) == (3, 1, 5, 3, 4)
    assert spread([]) is None


def test_the_tables_show_the_median_repetition() -> None:
    cr = cases_of(_doc({"mshare": [900, 1500, 1000], "shm": [1000, 1000, 1000]}))[0]
    assert len(cr.reps["mshare"]) == 3
    assert cr.runs["mshare"].throughput == 1000
    assert list(cr.runs) == ["mshare", "shm"]


SHM = [1000, 1010, 990, 1005, 995, 1000, 1020, 980, 1010, 990]


def test_throughput_goal_with_few_repetitions_is_inconclusive() -> None:
    cr = cases_of(_doc({"mshare": [1500, 1520, 1510], "shm": SHM[:3]}))[0]
    line = throughput_goal("[x]", cr)
    assert "medians of 3 runs each" in line and "1,510 [1,500-1,520]" in line
    assert ": inconclusive: 3 pairs" in line  # no plan named: the rule's own words


def test_throughput_goal_by_the_decision_rule_on_ten_pairs() -> None:
    def line(ratio: float) -> str:
        cr = cases_of(_doc({"mshare": [round(ratio * v) for v in SHM], "shm": SHM}))[0]
        return throughput_goal("[x]", cr)
    assert ": met: ratio 1.100" in line(1.1) and "10 pairs" in line(1.1)
    assert ": NOT met: ratio 0.500" in line(0.5)
    noisy = cases_of(_doc({"mshare": [700, 1300] * 5, "shm": SHM}))[0]
    assert ": inconclusive: ratio" in throughput_goal("[x]", noisy)


def test_report_names_provenance_and_repetitions() -> None:
    doc = _doc({"mshare": [900, 950, 1300], "shm": [1000, 1010, 1020]})
    for i, run in enumerate(doc["runs"]):
        run["wall_s"] = 10.0
        run["counters"] = {"tlb_shootdowns": 5000 if run["backend"] == "mshare" else 50 + i,
                           "pgfault": 100}
    text = report(doc)
    assert "TLB shootdowns" in text
    assert any(line.split()[:5] == ["mshare", "3", "10.0", "5,000", "500"]
               for line in text.splitlines())
    assert "provenance: git revision abc; kernel release CONFIG_MSHARE=y, build key k1" in text
    assert "3 repetitions, interleaved" in text
    assert "900-1,300 (3)" in text


def test_run_plan_interleaves_and_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def fake_run(config: Any, progress: Any) -> RunResult:
        order.append(config.backend)
        return RunResult.from_json(_run(config.backend, 100))
    monkeypatch.setattr(sga_guest, "run", fake_run)
    monkeypatch.setattr(sga_guest, "ensure_dev_shm", lambda: None)
    doc = sga_guest.run_plan([Case(S, 4, [], 0.1)], ["a", "b", "c"], str(tmp_path / "o.json"),
                             accelerator="TCG", reserve_hugepages=False, repeat=3,
                             log=lambda s: None)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["rep"] for r in doc["runs"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert doc["repeat"] == 3


def test_a_quick_plan_reports_its_ratio_goals_as_inconclusive() -> None:
    doc = {**_doc({"mshare": [1500, 1520, 1510], "shm": SHM[:3]}), "plan_name": "quick"}
    judged = [g for g in goals(doc) if "throughput" in g or "shm time / mshare time" in g]
    assert len(judged) == 2
    assert all("inconclusive (quick plan: 3 < 10 reps" in g for g in judged), judged


def test_the_touch_time_goal_is_a_paired_ratio_with_margin_20() -> None:
    def touch_goal(shm_s: float) -> str:
        doc = _doc({"mshare": SHM, "shm": SHM})
        for run in doc["runs"]:
            run["touch_s"] = [shm_s if run["backend"] == "shm" else 0.01] * 4
        return next(g for g in goals(doc) if "shm time / mshare time" in g)
    assert ": met: ratio 30.000" in touch_goal(0.3) and "margin 20" in touch_goal(0.3)
    assert ": NOT met: ratio 10.000" in touch_goal(0.1)


def test_full_plans_run_enough_repetitions_for_a_ratio_goal() -> None:
    assert default_repeat("default") >= MIN_PAIRS and default_repeat("custom") >= MIN_PAIRS
    assert default_repeat("quick") < MIN_PAIRS  # reported as inconclusive, as above
