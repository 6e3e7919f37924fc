"""bench/sgabench: the report, goals, extrapolation and plot, on a synthetic document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

from examples.sga.result import Milestone, RunResult
from sgabench.extrapolate import fit, seed_case_gib
from sgabench.plans import PLANS, guest_memory
from sgabench.report import goals, report

S = 64 << 20
TABLES_KIB = S // 512 // 1024  # 4 KiB pages: 8 bytes of PTE per page = 128 KiB for 64 MiB


def _result(backend: str, per_attacher_kib: int, faults: int, touch_s: float,
            ops: int) -> RunResult:
    counts = [1, 2, 4, 8]
    return RunResult(
        backend=backend, label=backend, servers=8, size=S, nblocks=8159,
        pt_baseline_kib=1000, pt_after_kib=1000 + TABLES_KIB + 8 * per_attacher_kib,
        milestones=[Milestone(n, TABLES_KIB + n * per_attacher_kib) for n in counts],
        vmpte_before_kib=[80] * 8, vmpte_after_kib=[80 + per_attacher_kib] * 8,
        attach_s=[0.001] * 8, touch_s=[touch_s] * 8, touch_faults=[faults] * 8,
        attach_faults=[2] * 8, duration_s=2.0, reads=ops * 98 // 100,
        updates=ops * 2 // 100, counted_updates=ops * 2 // 100)


def _doc(shm_ops: int = 1000, mshare_faults: int = 0) -> dict[str, Any]:
    runs = [_result("mshare", 0, mshare_faults, 0.001, 1000),
            _result("shm", TABLES_KIB, 1024, 0.2, shm_ops)]
    skipped = RunResult(backend="hugetlb", label="hugetlb", servers=8, size=S,
                        skipped="no huge pages")
    return {
        "system": {"kernel": "6.12.0-test", "cpu": "QEMU TCG CPU", "cpus": 2,
                   "mem_total_kib": 4 << 20, "accelerator": "TCG"},
        "accelerator": "TCG",
        "plan": [{"size": S, "servers": 8, "milestones": [1, 2, 4, 8], "duration": 2.0}],
        "runs": [{"case": 0, **r.to_json()} for r in (*runs, skipped)],
    }


def test_report_has_the_table_growth_notes_extrapolation_and_goals() -> None:
    text = report(_doc())
    for needle in ("PT rise MiB*", "before they attached", "shm/mshare", "COMPUTED",
                   "skipped: no huge pages", "Goals:", "accelerator TCG"):
        assert needle in text
    # shm's rise is 9 sets of 128 KiB against mshare's one: 9.0x at N=8.
    assert "9.0x" in text


def test_goals_are_judged_on_the_measured_numbers() -> None:
    met = goals(_doc())
    ratio_goals = ("throughput", "touch, shm time / mshare time")
    counts = [line for line in met if not any(r in line for r in ratio_goals)]
    assert counts and all(": met" in line for line in counts), met
    assert any("touch faults (goal <= 10): met: worst 0, at most 10" in g for g in met)
    # One run each: a ratio goal needs 10 pairs, and inconclusive is never met.
    for goal in ratio_goals:
        assert any(goal in g and ": inconclusive: 1 pairs" in g for g in met), (goal, met)
    missed = goals(_doc(shm_ops=2000, mshare_faults=50))
    assert any("touch faults" in g and "NOT met: worst 50, at most 10" in g for g in missed)


def test_the_seed_case_comes_out_near_878_gb_for_unshared_tables() -> None:
    shm = fit(_result("shm", TABLES_KIB, 1024, 0.2, 1000))
    assert shm is not None
    assert shm.per_process_kib == pytest.approx(2048)  # 2 MiB of PTEs per GiB
    # 1500 x 300 GiB x 2 MiB/GiB = 878.9 GiB, plus one set for the instance.
    assert seed_case_gib(shm) == pytest.approx(879.5, abs=0.1)
    mshare = fit(_result("mshare", 0, 0, 0.001, 1000))
    assert mshare is not None and seed_case_gib(mshare) == pytest.approx(300 * 2 / 1024)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from sgabench.plot import plot

    out = tmp_path / "sga.png"
    assert plot(_doc(), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plans_and_guest_memory() -> None:
    assert PLANS["quick"][0].servers == 32 and PLANS["quick"][0].size == 64 << 20
    assert {1, 10, 100, 300, 1000} <= set(PLANS["sweep"][0].milestones)
    assert guest_memory(PLANS["quick"]) == "4G"
    assert int(guest_memory(PLANS["sweep"]).rstrip("G")) >= 6
