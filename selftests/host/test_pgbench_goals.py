"""bench/pgbenchlib: the plans' repetitions and the tps goal by mshare_lab.stats' rule."""
from __future__ import annotations

from typing import Any

from mshare_lab.stats import MIN_PAIRS
from pgbenchlib.plans import PLANS, resolve
from pgbenchlib.report import goals, one_copy_kib

STOCK = [1000.0, 1040.0, 980.0, 1010.0, 995.0, 1025.0, 990.0, 1005.0, 1015.0, 985.0]


def _doc(plan: str, msharefs: list[float], huge: list[float] | None = None) -> dict[str, Any]:
    copy = one_copy_kib(128 << 20)
    runs = []
    tps = {"stock": STOCK[:len(msharefs)], "huge": huge or msharefs, "msharefs": msharefs}
    for rep in range(len(msharefs)):
        for config in ("stock", "huge", "msharefs"):
            r: dict[str, Any] = {"config": config, "clients": 10, "rep": rep,
                                 "tps": tps[config][rep], "latency_ms": 1.0}
            if rep == 0:
                shared = config == "msharefs"
                r.update(pt_start_kib=0, pt_warm_kib=copy if shared else 0, pt_idle_kib=0,
                         pt_touched_kib=0 if shared else 10 * copy, vmpte_idle_kib=[100],
                         vmpte_kib=[100], faults=[1 if shared else 1000], touch_s=1.0)
            runs.append(r)
    return {"plan": resolve(plan, clients="10", reps=len(msharefs)).to_json(),
            "setup": {"segment_mb": 128}, "runs": runs}


def _tps_goal(doc: dict[str, Any]) -> str:
    return next(g for g in goals(doc) if "select-only tps" in g)


def test_full_plans_run_enough_repetitions_for_the_tps_goal() -> None:
    assert PLANS["default"].reps >= MIN_PAIRS and PLANS["sweep"].reps >= MIN_PAIRS
    assert PLANS["quick"].reps < MIN_PAIRS


def test_resolve_applies_the_overrides_to_a_copy() -> None:
    plan = resolve("default", clients="1,50", reps=12, transactions=7, configs="stock")
    assert (plan.clients, plan.reps, plan.transactions, plan.configs) == (
        [1, 50], 12, 7, ["stock"])
    assert PLANS["default"].reps == 10 and PLANS["default"].clients == [1, 10, 50, 100, 200]


def test_a_quick_plan_reports_the_tps_goal_as_inconclusive() -> None:
    line = _tps_goal(_doc("quick", [2000.0, 2100.0, 2050.0]))
    assert "inconclusive (quick plan: 3 < 10 reps" in line


def test_ten_paired_repetitions_are_judged_met_or_not_met() -> None:
    assert ": met: ratio 1.100" in _tps_goal(_doc("default", [v * 1.1 for v in STOCK]))
    assert ": NOT met: ratio 0.500" in _tps_goal(_doc("default", [v * 0.5 for v in STOCK]))
    counts = [g for g in goals(_doc("default", STOCK)) if "tps" not in g and "huge" not in g]
    assert counts and all(g.endswith(": met") for g in counts), counts


def test_huge_pages_win_on_tps_only_by_the_decision_rule() -> None:
    def wins_on_tps(huge: list[float], msharefs: list[float]) -> bool:
        line = next(g for g in goals(_doc("default", msharefs, huge)) if "huge pages" in g)
        return "tps " in line.partition("huge pages win on ")[2]
    assert wins_on_tps([v * 1.5 for v in STOCK], STOCK)
    assert not wins_on_tps(STOCK, STOCK)
    # Three repetitions ahead by far are still no win: too few pairs to judge.
    assert not wins_on_tps([v * 3 for v in STOCK[:3]], STOCK[:3])


def _copy_goal(doc: dict[str, Any]) -> str:
    return next(g for g in goals(doc) if "within 1.2 x" in g)


def test_the_one_copy_goal_is_judged_against_what_the_region_holds_resident() -> None:
    doc = _doc("default", STOCK)
    m = next(r for r in doc["runs"] if r["config"] == "msharefs" and "faults" in r)
    copy = one_copy_kib(128 << 20)  # what the msharefs run's tables rose by
    m["region_touched"] = {"resident": 128 << 20, "pmd_mapped": 0, "page_tables": 0}
    assert _copy_goal(doc).startswith(f"[N=10] msharefs segment page tables {copy:,} kB "
                                      "within 1.2 x one copy of what was touched (128 MiB")
    assert _copy_goal(doc).endswith(": met")
    m["region_touched"]["resident"] = 32 << 20  # the backends' tables beyond one copy
    assert _copy_goal(doc).endswith(": NOT met")
    del m["region_touched"]
    assert f"one copy of the whole segment ({copy:,} kB): met" in _copy_goal(doc)


def _against_huge(doc: dict[str, Any]) -> str:
    return next(g for g in goals(doc) if "msharefs against huge pages" in g)


def test_against_huge_pages_the_interval_says_who_is_ahead() -> None:
    jitter = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0, 1.02, 0.98]
    ahead = _doc("default", STOCK, [v * 1.5 * j for v, j in zip(STOCK, jitter, strict=True)])
    assert "select-only tps 0.67 (" in _against_huge(ahead)
    assert _against_huge(ahead).endswith(": huge pages ahead")
    level = _doc("default", STOCK, [v * j for v, j in zip(STOCK, jitter, strict=True)])
    assert _against_huge(level).endswith(": no difference shown")
    behind = _doc("default", STOCK, [v * 0.5 for v in STOCK])
    assert _against_huge(behind).endswith(": msharefs ahead")
    # A storm's time is inverted: huge pages taking twice as long is msharefs ahead.
    for r in level["runs"]:
        r["storm"] = {"answer_s": 2.0 if r["config"] == "huge" else 1.0, "faults": [1],
                      "disconnect_s": 1.0}
    assert "storm answer 2.00 (2.00-2.00): msharefs ahead" in _against_huge(level)
    # Too few pairs: nothing said.
    assert not [g for g in goals(_doc("quick", STOCK[:3])) if "against huge" in g]


def test_an_unfinished_document_says_so_at_the_top() -> None:
    from pgbenchlib.report import report
    doc = _doc("default", STOCK)
    doc["system"] = {"cpu": "TCG", "cpus": 2, "mem_total_kib": 8 << 20, "kernel": "6.12",
                     "accelerator": "TCG"}
    doc["setup"]["accounts_bytes"] = 64 << 20
    doc["checkpoint"] = {"identity": {}, "boots": []}
    assert "UNFINISHED: 30 of 40 runs done so far" in report(doc)
    doc["finished"] = "now"
    assert "UNFINISHED" not in report(doc)
