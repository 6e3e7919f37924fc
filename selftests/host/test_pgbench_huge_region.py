"""bench/pgbenchlib: the msharefs-huge configuration (huge_pages=on + the preload: a
region of 2 MiB pages) in the plans, and its goals: segment page tables <= 16 kB,
touch faults <= 3 per backend (counts), tps against huge by mshare_lab.stats' rule."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pgbenchlib.plans import CONFIGS, PLANS, config_list, resolve, timeout_s
from pgbenchlib.report import goals, report

REPO = Path(__file__).resolve().parents[2]
HUGE = [1000.0, 1040.0, 980.0, 1010.0, 995.0, 1025.0, 990.0, 1005.0, 1015.0, 985.0]
MiB = 1 << 20


def _doc(plan: str, tps: list[float], *, pt_kib: int = 8,
         faults: list[int] | None = None) -> dict[str, Any]:
    """huge and msharefs-huge at N=10, len(tps) repetitions; the touch pass in the first."""
    runs = []
    for rep in range(len(tps)):
        for config in ("huge", "msharefs-huge"):
            r: dict[str, Any] = {"config": config, "clients": 10, "rep": rep,
                                 "tps": HUGE[rep] if config == "huge" else tps[rep],
                                 "latency_ms": 1.0}
            if rep == 0:
                region = config == "msharefs-huge"
                r.update(pt_start_kib=0, pt_warm_kib=pt_kib if region else 0, pt_idle_kib=0,
                         pt_touched_kib=0, vmpte_idle_kib=[100], vmpte_kib=[100],
                         faults=(faults or [1] * 10) if region else [131] * 10,
                         touch_s=1.0)
                if region:
                    r["region_touched"] = {"resident": 140 * MiB, "pmd_mapped": 138 * MiB,
                                           "page_tables": 8192}
            runs.append(r)
    return {"plan": resolve(plan, clients="10", configs="huge,msharefs-huge",
                            reps=len(tps)).to_json(),
            "setup": {"segment_mb": 144, "accounts_bytes": 64 * MiB}, "runs": runs}


def _goal(doc: dict[str, Any], what: str) -> str:
    return next(g for g in goals(doc) if what in g)


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_plan_runs_msharefs_huge_beside_the_others(plan: str) -> None:
    assert PLANS[plan].configs == ["stock", "huge", "msharefs", "msharefs-huge"]


def test_an_unknown_configuration_is_an_argument_error() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="choose from stock, huge, "
                       "msharefs, msharefs-huge"):
        config_list("msharefs,hugetlb")


def test_run_pgbench_refuses_an_unknown_configuration() -> None:
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run-pgbench"), "--configs",
                        "bogus"], capture_output=True, text=True, check=False, timeout=60)
    assert p.returncode == 2 and "argument --configs: 'bogus': choose from" in p.stderr


def test_the_timeout_grows_with_the_configurations() -> None:
    two = resolve("quick", configs="huge,msharefs-huge")
    assert timeout_s(two) * 2 == timeout_s(resolve("quick")) == 2400.0
    assert len(CONFIGS) == 4


def test_segment_page_tables_of_one_pmd_and_pud_page_meet_the_goal() -> None:
    line = _goal(_doc("default", HUGE, pt_kib=8), "msharefs-huge segment page tables")
    assert line.endswith("8 kB (goal <= 16 kB): met"), line


def test_segment_page_tables_of_a_4k_region_miss_the_goal() -> None:
    line = _goal(_doc("default", HUGE, pt_kib=300), "msharefs-huge segment page tables")
    assert line.endswith("300 kB (goal <= 16 kB): NOT met"), line


def test_faults_are_judged_per_backend_by_the_worst() -> None:
    assert ": met: worst 3" in _goal(_doc("default", HUGE, faults=[1, 3, 2]), "touch faults")
    assert ": NOT met: worst 4" in _goal(_doc("default", HUGE, faults=[1, 4, 2]),
                                         "touch faults")


def test_tps_against_huge_is_judged_by_the_decision_rule() -> None:
    assert ": met: ratio 1.000" in _goal(_doc("default", HUGE), "tps msharefs-huge")
    assert ": NOT met: ratio 0.500" in _goal(_doc("default", [v / 2 for v in HUGE]),
                                             "tps msharefs-huge")


def test_a_quick_plan_reports_tps_against_huge_as_inconclusive() -> None:
    line = _goal(_doc("quick", HUGE[:3]), "tps msharefs-huge")
    assert "inconclusive (quick plan: 3 < 10 reps" in line


def test_the_report_shows_what_2_mib_leaves_map() -> None:
    doc = _doc("default", HUGE)
    assert "138 of 140 MiB resident mapped by 2 MiB leaves, 8 kB of shared tables" in \
        _goal(doc, "msharefs-huge region")
    assert "138 of 140" in report({**doc, "system": {"cpu": "x", "cpus": 2, "kernel": "k",
                                                      "mem_total_kib": 1 << 20,
                                                      "accelerator": "tcg"}})
