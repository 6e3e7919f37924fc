"""bench/flushcost's idle-phase region goals (issue 20), judged from a saved document."""
from __future__ import annotations

from typing import Any

from flushcost.report import idle_cpu_mean, idle_cpu_pairs, idle_goals, reader_goal

Doc = dict[str, Any]


def _run(rep: int, n: int, moved: int, compact_s: float, ipis: int) -> Doc:
    return {"ok": True, "rep": rep, "sharers": n, "phase": "idle", "backend": "region",
            "compact_s": compact_s, "pfns_after": {"moved": moved},
            "ipis": {"CAL": [ipis, 0], "TLB": [0, 0], "RES": [99, 99]}}


def _doc(runs: list[Doc]) -> Doc:
    return {"plan": {"phases": ["idle"], "backends": ["region"], "sharers": [1, 1000]},
            "runs": runs}


def _pairs(cost_ratio: float, ipis: int = 0, reps: int = 10) -> Doc:
    runs = []
    for rep in range(reps):
        runs.append(_run(rep, 1, 2000, 0.2 * (1 + rep / 100), ipis))
        runs.append(_run(rep, 1000, 1000, 0.1 * (1 + rep / 100) * cost_ratio, ipis))
    return _doc(runs)


def test_same_cost_per_moved_page_at_n1000_is_met() -> None:
    lines = idle_goals(_pairs(1.0))
    assert "N = 1000 against N = 1" in lines[1] and ": met:" in lines[1]


def test_twice_the_cost_per_moved_page_at_n1000_is_not_met() -> None:
    assert ": NOT met:" in idle_goals(_pairs(2.0))[1]


def test_fewer_than_ten_pairs_is_inconclusive() -> None:
    assert ": inconclusive:" in idle_goals(_pairs(1.0, reps=9))[1]


def _with_migrated(doc: Doc, extra_at_n1000: int) -> Doc:
    """Every run also counts the pages it migrated: its shared pages, plus
    extra_at_n1000 other pages in the N = 1000 runs."""
    for r in doc["runs"]:
        r["migrated"] = r["pfns_after"]["moved"] + (extra_at_n1000 if r["sharers"] > 1 else 0)
    return doc


def test_cost_is_judged_per_migrated_page_where_every_run_counted_them() -> None:
    # Twice the time at N = 1000 for twice the pages migrated (1,000 shared + 1,000
    # other): the same cost per page, met, where per shared page it would be NOT met.
    lines = idle_goals(_with_migrated(_pairs(2.0), extra_at_n1000=1000))
    assert "Cost per migrated page, N = 1000" in lines[1] and ": met:" in lines[1]


def test_cost_falls_back_to_moved_shared_pages_when_a_run_lacks_the_count() -> None:
    doc = _with_migrated(_pairs(2.0), extra_at_n1000=1000)
    del doc["runs"][0]["migrated"]
    lines = idle_goals(doc)
    assert "Cost per moved shared page, N = 1000" in lines[1] and ": NOT met:" in lines[1]


def test_ipis_are_counted_per_migrated_page_where_every_run_counted_them() -> None:
    # 51 IPIs over 1,000 shared pages is over the bound, over 2,000 migrated pages not.
    line = idle_goals(_with_migrated(_pairs(1.0, ipis=51), extra_at_n1000=1000))[0]
    assert line.startswith("IPIs per migrated page") and "met: worst" in line
    assert "NOT met" not in line


def test_one_ipi_per_twenty_moved_pages_is_met() -> None:
    # 0.05 x 1000 moved = 50 IPIs allowed in the N = 1000 runs, 100 in the N = 1 runs
    assert "met: worst 0, at most 0" in idle_goals(_pairs(1.0, ipis=50))[0]


def test_one_ipi_more_than_a_twentieth_of_moved_pages_is_not_met() -> None:
    assert "NOT met: worst 1, at most 0" in idle_goals(_pairs(1.0, ipis=51))[0]


def test_runs_moving_fewer_than_512_pages_are_not_judged() -> None:
    doc = _doc([_run(0, 1, 511, 0.1, 0), _run(0, 1000, 3, 0.1, 0)])
    assert idle_goals(doc) == ["Idle region goals: no run moved 512 pages or more: not judged."]


def _reader_doc(region_drop: float, shm_drop: float, reps: int = 10,
                jitter: float = 0.0, moved: int = 4096) -> Doc:
    runs = []
    for rep in range(reps):
        noise = jitter if rep % 2 else -jitter
        for backend, drop in (("region", region_drop + noise), ("shm", shm_drop)):
            before = 1000.0 + rep
            runs.append({"ok": True, "rep": rep, "sharers": 8, "phase": "reader",
                         "backend": backend, "pfns_after": {"moved": moved},
                         "reader": {"before_pages_s": before,
                                    "during_pages_s": before * (1 - (drop + rep / 10) / 100)}})
    return {"plan": {"phases": ["reader"], "backends": ["region", "shm"], "sharers": [8]},
            "runs": runs}


def test_reader_drop_equal_to_shms_is_met() -> None:
    assert ": met:" in reader_goal(_reader_doc(60, 60))[0]


def test_reader_drop_ten_points_over_shms_is_not_met() -> None:
    assert ": NOT met:" in reader_goal(_reader_doc(70, 60))[0]


def test_reader_drop_five_points_over_shms_give_or_take_three_is_inconclusive() -> None:
    assert ": inconclusive:" in reader_goal(_reader_doc(65, 60, jitter=3))[0]


def test_reader_goal_with_fewer_than_ten_pairs_is_inconclusive() -> None:
    assert "3 pairs, fewer than the 10" in reader_goal(_reader_doc(60, 60, reps=3))[0]


def test_reader_pairs_where_a_run_moved_fewer_than_512_pages_are_left_out() -> None:
    doc = _reader_doc(60, 60, reps=12)
    for r in doc["runs"]:
        if r["rep"] < 3 and r["backend"] == "shm":
            r["pfns_after"]["moved"] = 511
    assert "9 pairs, fewer than the 10" in reader_goal(doc)[0]


def _cpu3_doc(region: dict[str, int], shm: dict[str, int]) -> Doc:
    def run(backend: str, counts: dict[str, int]) -> Doc:
        return {"ok": True, "rep": 0, "sharers": 1, "phase": "idle", "backend": backend,
                "ipis": {row: [0, 0, 0, counts[row]] for row in ("CAL", "TLB")}}
    return {"plan": {"mapper_cpus": [1, 2], "backends": ["region", "shm"]},
            "runs": [run("region", region), run("shm", shm)]}


def test_idle_cpu_pairs_count_tlb_shootdowns_apart_from_function_calls() -> None:
    pair, = idle_cpu_pairs(_cpu3_doc({"CAL": 4, "TLB": 0}, {"CAL": 1, "TLB": 0}))
    assert (pair["cpu"], pair["region"], pair["shm"]) == (3, 4.0, 1.0)
    assert (pair["region_tlb"], pair["shm_tlb"]) == (0.0, 0.0)


def test_no_cpu_pairs_where_the_guest_has_no_cpu_beyond_the_sharers() -> None:
    run = {"ok": True, "rep": 0, "phase": "reader", "sharers": 8,
           "ipis": {"CAL": [3, 100], "TLB": [0, 9]}}
    doc = {"plan": {"mapper_cpus": [1], "backends": ["region", "shm"]},
           "runs": [{**run, "backend": "region"}, {**run, "backend": "shm"}]}
    assert idle_cpu_pairs(doc) == []


def _cpu3_reps(region_excess: int, reps: int = 10) -> Doc:
    """CPU 3's CAL count noisy (0-9 a run), the same in the shm and anon runs, the
    region's region_excess more."""
    runs = []
    for rep in range(reps):
        noise = (rep * 7) % 10
        for backend, cal in (("region", noise + region_excess), ("shm", noise),
                             ("anon", noise)):
            runs.append({"ok": True, "rep": rep, "sharers": 1, "phase": "idle",
                         "backend": backend, "ipis": {"CAL": [0, 0, 0, cal], "TLB": [0] * 4}})
    return {"plan": {"mapper_cpus": [1, 2], "backends": ["region", "shm", "anon"]},
            "runs": runs}


def test_idle_cpu_mean_two_more_ipis_a_run_than_shm_is_not_met() -> None:
    doc = _cpu3_reps(2)
    line = idle_cpu_mean(doc, idle_cpu_pairs(doc))
    assert "region - shm: NOT met: mean excess 2.0" in line
    assert "shared-anonymous - shm, for comparison: met: mean excess 0.0" in line


def test_idle_cpu_mean_as_many_ipis_as_shm_is_met() -> None:
    doc = _cpu3_reps(0)
    assert "region - shm: met: mean excess 0.0" in idle_cpu_mean(doc, idle_cpu_pairs(doc))
