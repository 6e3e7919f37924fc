"""bench/pgbenchlib: the scale plan, and the connection storm and read-write goals judged
by mshare_lab.stats' rule."""
from __future__ import annotations

from typing import Any

from pgbenchlib.plans import PLANS, resolve
from pgbenchlib.report import STORM_GOAL, goals, report

STOCK_S = [10.0, 10.4, 9.8, 10.1, 9.95, 10.25, 9.9, 10.05, 10.15, 9.85]


def _doc(msharefs_s: list[float], rw_ratio: float = 1.0) -> dict[str, Any]:
    runs = []
    for rep, stock in enumerate(STOCK_S[:len(msharefs_s)]):
        for config, answer, faults in (("stock", stock, 16400), ("msharefs", msharefs_s[rep], 40)):
            runs.append({
                "config": config, "clients": 100, "rep": rep, "tps": 1000.0,
                "latency_ms": 1.0,
                "rw_tps": 500.0 * (rw_ratio if config == "msharefs" else 1.0),
                "storm": {"mib": 64, "bytes": 64 << 20, "connect_s": 1.0, "answer_s": answer,
                          "disconnect_s": 0.5, "faults": [faults] * 100},
                "host_load": {"before": {"load": [0.5, 0.4, 0.3]},
                              "after": {"load": [1.5, 0.5, 0.3]}}})
    plan = resolve("default", clients="100", reps=len(msharefs_s), configs="stock,msharefs")
    return {"plan": plan.to_json(), "setup": {"segment_mb": 512, "accounts_bytes": 256 << 20},
            "runs": runs}


def _line(doc: dict[str, Any], what: str) -> str:
    return next(g for g in goals(doc) if what in g)


def test_scale_plan_reaches_1000_clients_with_1gib_of_buffers() -> None:
    plan = PLANS["scale"]
    assert max(plan.clients) >= 1000 and plan.shared_buffers_mb >= 1024
    assert plan.max_connections > 1000 and plan.reps >= 10
    assert plan.seconds > 0 and plan.warmup_transactions > 0 and plan.storm_mib > 0


def test_storm_twice_as_fast_is_met() -> None:
    line = _line(_doc([s / 2 for s in STOCK_S]), "storm of 100 sessions")
    assert f"msharefs/stock <= {STORM_GOAL:g}" in line and line.endswith("margin 1.25")
    assert ": met: ratio 2.000" in line


def test_storm_as_slow_as_stock_is_not_met() -> None:
    line = _line(_doc(list(STOCK_S)), "storm of 100 sessions")
    assert ": NOT met: ratio 1.000" in line


def test_storm_faults_per_backend_are_reported_beside_the_times() -> None:
    assert "faults/backend 40 vs 16,400" in _line(_doc(list(STOCK_S)), "storm of")


def test_read_write_tps_at_half_of_stock_is_not_met() -> None:
    assert ": NOT met: ratio 0.500" in _line(_doc(list(STOCK_S), 0.5), "read-write tps")


def test_report_shows_the_storm_table_and_the_host_load() -> None:
    text = report({**_doc(list(STOCK_S)), "system": {
        "cpu": "QEMU", "cpus": 2, "mem_total_kib": 1 << 24, "kernel": "6.12",
        "accelerator": "TCG"}})
    assert "storm: all answered s" in text
    assert "host load (1 min) around the runs: 0.5-1.5" in text


def test_report_lists_operator_notes_and_discarded_runs_outside_the_goals() -> None:
    doc = _doc(list(STOCK_S))
    dropped = {**doc["runs"][0], "tps": 467.25}
    text = report({**doc, "system": {
        "cpu": "QEMU", "cpus": 2, "mem_total_kib": 1 << 24, "kernel": "6.12",
        "accelerator": "TCG"}, "notes": ["rep 3 discarded: host busy"],
        "discarded_runs": [dropped]})
    tail = text[text.index("Operator notes:"):]
    assert "  rep 3 discarded: host busy" in tail
    assert f"discarded runs: {dropped['config']} N={dropped['clients']} rep " \
           f"{dropped['rep']} (467 tps)" in tail
