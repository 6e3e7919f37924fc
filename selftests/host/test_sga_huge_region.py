"""The SGA's mshare-huge backend (a region of 2 MiB pages) and its goals in run-sga."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from examples.sga import RunConfig, run
from examples.sga.backends import BACKENDS, make_backend
from examples.sga.backends.mshare import MshareHugeBackend
from examples.sga.result import Milestone, RunResult
from sgabench.plans import BACKENDS as BENCH_BACKENDS
from sgabench.report import goals, huge_region_pt_bound_kib

S = 64 << 20


def test_run_sga_runs_mshare_huge_beside_the_others() -> None:
    assert BENCH_BACKENDS == ["mshare", "mshare-huge", "shm", "fork", "hugetlb"]
    assert set(BENCH_BACKENDS) == set(BACKENDS)


def test_mshare_huge_asks_for_2_mib_pages_under_its_own_name() -> None:
    b = make_backend("mshare-huge", "t1")
    assert isinstance(b, MshareHugeBackend) and b.huge
    assert b.region_name != make_backend("mshare", "t1").region_name  # type: ignore[attr-defined]


def test_emulated_mshare_huge_runs_correctly(fake_mount: Path) -> None:
    """On the emulated mount huge=True is kept and falls back to the file's pages."""
    r = run(RunConfig(backend="mshare-huge", servers=3, size=4 << 20, duration=0.5,
                      milestones=[1, 2], tag=f"t{os.getpid()}mh"))
    assert r.skipped is None and r.correct, r.to_json()
    assert "EMULATED" in r.label and "2 MiB pages" in r.label
    assert [p.name for p in fake_mount.iterdir()] == ["mshare_info"]


def _result(backend: str, rise_kib: int, faults: int, ops: int) -> RunResult:
    return RunResult(
        backend=backend, label=backend, servers=8, size=S, nblocks=8159,
        pt_baseline_kib=1000, pt_after_kib=1000 + rise_kib,
        milestones=[Milestone(n, rise_kib) for n in (1, 8)],
        vmpte_before_kib=[80] * 8, vmpte_after_kib=[80] * 8, attach_s=[0.001] * 8,
        touch_s=[0.001] * 8, touch_faults=[faults] * 8, attach_faults=[2] * 8,
        duration_s=2.0, reads=ops, updates=0, counted_updates=0)


def _doc(rise_kib: int = 8, faults: int = 1, hugetlb: bool = True) -> dict[str, Any]:
    runs = [_result("mshare-huge", rise_kib, faults, 1000)]
    runs.append(_result("hugetlb", 40, 32, 1000) if hugetlb else
                RunResult(backend="hugetlb", label="hugetlb", servers=8, size=S,
                          skipped="no huge pages"))
    return {"plan_name": "custom",
            "plan": [{"size": S, "servers": 8, "milestones": [1, 8], "duration": 2.0}],
            "runs": [{"case": 0, **r.to_json()} for r in runs]}


def test_the_page_table_bound_is_twice_one_copy_of_the_leaf_tables() -> None:
    assert huge_region_pt_bound_kib(S) == 16  # a PMD and a PUD page, twice
    assert huge_region_pt_bound_kib(3 << 30) == 32


def test_page_tables_within_the_bound_are_met_at_every_milestone() -> None:
    lines = [g for g in goals(_doc(rise_kib=8)) if "mshare-huge PageTables" in g]
    assert len(lines) == 2 and all(g.endswith("8 KiB (goal <= 16 KiB): met") for g in lines)


def test_page_tables_of_4k_pages_are_not_met() -> None:
    lines = [g for g in goals(_doc(rise_kib=136)) if "mshare-huge PageTables" in g]
    assert lines and all(g.endswith(": NOT met") for g in lines), lines


def test_faults_are_a_count_against_10() -> None:
    assert any("mshare-huge attacher #8 touch faults (goal <= 10): NOT met: worst 11" in g
               for g in goals(_doc(faults=11)))


def test_throughput_against_hugetlb_needs_ten_pairs() -> None:
    line = next(g for g in goals(_doc()) if "throughput mshare-huge" in g)
    assert "(goal mshare-huge/hugetlb >= 0.95): inconclusive" in line


def test_throughput_without_a_hugetlb_run_is_not_evaluated() -> None:
    assert any("mshare-huge throughput goal needs a hugetlb run: not evaluated" in g
               for g in goals(_doc(hugetlb=False)))
