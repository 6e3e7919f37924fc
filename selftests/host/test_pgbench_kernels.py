"""bench/pgbenchlib.kernels: stock on CONFIG_MSHARE=y against =n, boots alternating."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pgbenchlib.kernels import NOMSHARE, boot_plan, merge, run_pairs
from pgbenchlib.plans import resolve
from pgbenchlib.report import goals, report

STOCK = [1000.0, 1040.0, 980.0, 1010.0, 995.0, 1025.0, 990.0, 1005.0, 1015.0, 985.0]


def _boot_doc(tps: float, *, finished: bool = True, clients: int = 10) -> dict[str, Any]:
    run: dict[str, Any] = {"config": "stock", "clients": clients, "rep": 0, "tps": tps,
                           "latency_ms": 1.0}
    doc: dict[str, Any] = {
        "schema": 1, "plan": resolve("default", clients=str(clients), configs="stock",
                                     reps=1).to_json(),
        "setup": {"segment_mb": 556, "accounts_bytes": 256 << 20}, "runs": [run],
        "system": {"cpu": "TCG", "cpus": 2, "mem_total_kib": 8 << 20, "kernel": "6.12",
                   "accelerator": "TCG"}}
    if finished:
        doc["finished"] = "now"
    return doc


def _merged(mine: list[float], other: list[float]) -> dict[str, Any]:
    boots = []
    for pair, kernel in boot_plan(len(mine)):
        boots.append((pair, kernel, _boot_doc((mine if kernel == "mshare" else other)[pair])))
    return merge(boots)


def test_boot_plan_alternates_which_kernel_boots_first() -> None:
    assert boot_plan(3) == [(0, "mshare"), (0, "nomshare"), (1, "nomshare"),
                            (1, "mshare"), (2, "mshare"), (2, "nomshare")]


def test_merge_renames_the_nomshare_kernels_runs_and_pairs_by_boot_pair() -> None:
    doc = _merged([1.0, 2.0], [3.0, 4.0])
    got = sorted((r["config"], r["rep"], r["tps"]) for r in doc["runs"])
    assert got == [("stock", 0, 1.0), ("stock", 1, 2.0), (NOMSHARE, 0, 3.0),
                   (NOMSHARE, 1, 4.0)]
    assert doc["plan"]["configs"] == ["stock", NOMSHARE] and doc["plan"]["reps"] == 2
    assert [b["kernel"] for b in doc["boots"]] == ["mshare", "nomshare", "nomshare", "mshare"]


def test_equal_tps_on_both_kernels_is_met() -> None:
    line = next(g for g in goals(_merged(STOCK, STOCK)) if "select-only" in g)
    assert "CONFIG_MSHARE=y" in line and ": met: ratio 1.000" in line


def test_tps_a_fifth_lower_with_the_series_is_not_met() -> None:
    line = next(g for g in goals(_merged([v * 0.8 for v in STOCK], STOCK))
                if "select-only" in g)
    assert ": NOT met: ratio 0.800" in line


def test_the_report_has_a_row_for_each_kernel() -> None:
    text = report(_merged(STOCK, STOCK))
    assert "\nstock " in text and f"\n{NOMSHARE} " in text
    assert "10 repetitions, one repetition per boot, boots alternating" in text, text


def test_run_pairs_boots_only_what_is_not_saved_finished(tmp_path: Path) -> None:
    booted: list[tuple[str, str, bool]] = []
    saved_docs = {"pair-00-mshare.json": _boot_doc(1.0),
                  "pair-00-nomshare.json": _boot_doc(2.0, finished=False)}

    def saved(kernel: str, path: Path) -> dict[str, Any] | None:
        return saved_docs.get(path.name)

    def boot(kernel: str, path: Path, resume: dict[str, Any] | None,
             ) -> tuple[int, dict[str, Any] | None]:
        booted.append((path.name, kernel, resume is not None))
        return 0, _boot_doc(5.0)

    status, done = run_pairs(1, tmp_path, boot, saved, lambda _: None)
    assert status == 0
    assert booted == [("pair-00-nomshare.json", "nomshare", True)]  # continued, not redone
    assert [(pair, kernel) for pair, kernel, _ in done] == [(0, "mshare"), (0, "nomshare")]


def test_run_pairs_keeps_the_first_failing_status_and_leaves_out_unfinished_boots(
        tmp_path: Path) -> None:
    def boot(kernel: str, path: Path, resume: dict[str, Any] | None,
             ) -> tuple[int, dict[str, Any] | None]:
        return (125, _boot_doc(1.0, finished=False)) if kernel == "nomshare" else (
            0, _boot_doc(1.0))

    status, done = run_pairs(1, tmp_path, boot, lambda k, p: None, lambda _: None)
    assert status == 125 and [k for _, k, _ in done] == ["mshare"]


def test_the_plot_draws_the_nomshare_kernels_stock_beside_ours(
        tmp_path: Path, monkeypatch: Any) -> None:
    from mshare_lab import plot as lab_plot
    from pgbenchlib.plot import plot

    doc = _merged(STOCK, STOCK)
    for r in doc["runs"]:
        if r["rep"] == 0:
            r.update(pt_start_kib=0, pt_warm_kib=0, pt_idle_kib=0, pt_touched_kib=100,
                     vmpte_idle_kib=[10], vmpte_kib=[20], faults=[1000], touch_s=1.0)
    drawn: list[str] = []
    real = lab_plot.line

    def line(ax: Any, xs: Any, ys: Any, style: Any, label: str, *band: Any) -> None:
        drawn.append(label)
        real(ax, xs, ys, style, label, *band)
    monkeypatch.setattr(lab_plot, "line", line)
    assert plot(doc, str(tmp_path / "p.png"))
    assert drawn.count("stock") == drawn.count(NOMSHARE) == 3  # PT, faults, tps
