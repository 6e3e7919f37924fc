"""The benchmark's text report: the main table, PageTables growth, goals, extrapolation."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from examples.sga.result import RunResult
from libmshare import format_size
from mshare_lab import stats, table
from mshare_lab.table import text as render
from vmrun import provenance, rawfiles

from .extrapolate import SEED_PROCESSES, SEED_SGA_GIB, Fit, fit, seed_case_gib
from .runs import CaseRuns, Spread, cases_of, touch_kth

__all__ = ["HUGE_REGION_FAULTS", "goals", "huge_region_pt_bound_kib", "report",
           "throughput_goal"]

Doc = dict[str, Any]
GiB = 1 << 30
HUGE_REGION_FAULTS = 10  # the last attacher's touch faults, as for mshare


def huge_region_pt_bound_kib(size: int) -> int:
    """mshare-huge's PageTables goal: twice one copy of a region's tables with 2 MiB
    leaves (a PMD page per GiB and a PUD page), whatever N: attachers link at the top."""
    return 2 * 4 * (-(-size // GiB) + 1)


def _mib(kib: float) -> str:
    return f"{kib / 1024:.2f}"


def _rise_at(run: RunResult | None, n: int) -> float | None:
    """A run's PageTables rise with n servers attached (a milestone, or its N)."""
    if run is None:
        return None
    return next((m.pt_rise_kib for m in run.milestones if m.attached == n), None)


def _base_touch(base: RunResult | None, n: int) -> float | None:
    """How long mshare's n-th attacher took to touch the SGA."""
    return base.touch_s[n - 1] if base is not None and len(base.touch_s) >= n else None


def _checks(runs: list[RunResult]) -> str:
    bad = [r for r in runs if not r.skipped and not r.correct]
    if not bad:
        return "ok"
    r = bad[0]
    return (f"FAILED in {len(bad)} of {len(runs)} runs: {r.checksum_errors} checksum errors, "
            f"{r.verify_bad_blocks} bad blocks, lock {'ok' if r.lock_ok else 'lost updates'}")


def _range(sp: Spread | None) -> str:
    return "-" if sp is None else f"{sp.low:,.0f}-{sp.high:,.0f} ({sp.n})"


def main_table(cr: CaseRuns) -> str:
    base = cr.runs.get("mshare")  # what the ratios compare with, if it ran
    base = base if base is not None and not base.skipped else None
    base_ops = cr.throughput("mshare") if base is not None else None
    header = ["backend", "N", "S", "PT rise MiB*", "VmPTE/srv KiB", "faults/attacher",
              "touch #N ms", "ops/s median", "ops/s min-max (runs)", "PT vs mshare",
              "touch vs mshare", "ops vs mshare", "checks"]
    rows = []
    for name, r in cr.runs.items():
        if r.skipped:
            rows.append([name, str(r.servers), format_size(r.size), *["-"] * 9,
                         f"skipped: {r.skipped}"])
            continue
        ops = cr.throughput(name)
        assert ops is not None
        rows.append([
            name, str(r.servers), format_size(r.size), _mib(r.pt_rise_kib),
            f"{r.mean(r.vmpte_after_kib):.0f}", f"{r.mean(r.touch_faults):.1f}",
            f"{touch_kth(r) * 1e3:.1f}", f"{ops.median:,.0f}", _range(ops),
            table.ratio(r.pt_rise_kib, _rise_at(base, r.servers)),
            table.ratio(touch_kth(r), _base_touch(base, r.servers)),
            table.ratio(ops.median, base_ops.median if base_ops else None),
            _checks(cr.reps.get(name, [r])),
        ])
    return render(header, rows)


def growth_table(cr: CaseRuns) -> str:
    names = [n for n, r in cr.runs.items() if not r.skipped and r.milestones]
    header = ["attached", *(f"{n} MiB" for n in names)]
    if "mshare" in names and "shm" in names:
        header += ["shm/mshare", "goal N/2"]
    counts = sorted({m.attached for n in names for m in cr.runs[n].milestones})
    rows = []
    for count in counts:
        rise = {n: _rise_at(cr.runs[n], count) for n in names}
        row = [str(count), *(_mib(v) if v is not None else "" for v in rise.values())]
        if len(header) > len(names) + 1:
            s, m = rise["shm"], rise["mshare"]
            row += [table.ratio(s, m) if s is not None and m is not None else "", f"{count / 2:g}"]
        rows.append(row)
    return render(header, rows)


def _median(runs: list[Doc], value: Callable[[Doc], float]) -> float:
    return statistics.median([float(value(r)) for r in runs])


def counters_table(cr: CaseRuns) -> str | None:
    """Medians over the repetitions of what each whole run (fork, attach, touch, the
    workload) cost the system: TLB shootdown IPIs and page faults, and per second."""
    rows = []
    for name in cr.runs:
        runs = [r for r in cr.saved[name] if r.get("counters") and not r.get("skipped")]
        if not runs:
            continue
        tlb = _median(runs, lambda r: r["counters"].get("tlb_shootdowns", 0))
        faults = _median(runs, lambda r: r["counters"].get("pgfault", 0))
        w = _median(runs, lambda r: r.get("wall_s", 0.0))
        w = w if w > 0 else 1.0
        rows.append([name, str(len(runs)), f"{w:.1f}", f"{tlb:,.0f}", f"{tlb / w:,.0f}",
                     f"{faults:,.0f}", f"{faults / w:,.0f}"])
    header = ["backend", "runs", "wall s", "TLB shootdowns", "per s", "page faults", "per s"]
    return render(header, rows) if rows else None


def _touch_faults_goal(where: str, cr: CaseRuns, backend: str, bound: int) -> str:
    """The last attacher's touch faults: a count, every repetition's against the bound."""
    k = cr.runs[backend].kth()
    counted = stats.judge_counts([r.touch_faults[k - 1] for r in cr.reps[backend]
                                  if not r.skipped and len(r.touch_faults) >= k], bound)
    return f"[{where}] {backend} attacher #{k} touch faults (goal <= {bound}): " \
        f"{counted.describe()}"


def huge_region_goals(where: str, cr: CaseRuns, plan: str | None) -> list[str]:
    """mshare-huge: page tables bounded whatever N, few faults, throughput against
    hugetlb (2 MiB pages without sharing) by mshare_lab.stats' rule."""
    r = cr.runs.get("mshare-huge")
    if r is None or r.skipped:
        return []
    bound = huge_region_pt_bound_kib(cr.case.size)
    out = []
    for x in r.milestones:
        ok = x.pt_rise_kib <= bound
        out.append(f"[{where}] mshare-huge PageTables rise at N={x.attached}: "
                   f"{x.pt_rise_kib:,} KiB (goal <= {bound} KiB): {'met' if ok else 'NOT met'}")
    out.append(_touch_faults_goal(where, cr, "mshare-huge", HUGE_REGION_FAULTS))
    h = cr.runs.get("hugetlb")
    if h is None or h.skipped:
        out.append(f"[{where}] mshare-huge throughput goal needs a hugetlb run: "
                   "not evaluated")
        return out
    return [*out, throughput_goal(where, cr, plan, "mshare-huge", "hugetlb")]


def goals(doc: Doc) -> list[str]:
    """The issue's goals, each with what was measured and whether it was met."""
    out: list[str] = []
    plan = doc.get("plan_name")
    for cr in cases_of(doc):
        m, s = cr.runs.get("mshare"), cr.runs.get("shm")
        where = f"N={cr.case.servers}, S={format_size(cr.case.size)}"
        out += huge_region_goals(where, cr, plan)
        if m is None or s is None or m.skipped or s.skipped:
            out.append(f"[{where}] goals need both mshare and shm runs: not evaluated")
            continue
        for x in s.milestones:
            mrise = _rise_at(m, x.attached)
            if mrise is not None:
                ratio = x.pt_rise_kib / mrise if mrise > 0 else float("inf")
                ok = ratio >= x.attached / 2
                out.append(f"[{where}] PageTables shm/mshare at N={x.attached}: {ratio:.1f} "
                           f"(goal >= {x.attached / 2:g}): {'met' if ok else 'NOT met'}")
        out.append(_touch_faults_goal(where, cr, "mshare", 10))
        k = m.kth()
        mt, st = cr.touch_kth_s("mshare"), cr.touch_kth_s("shm")
        assert mt is not None and st is not None
        # Higher is better: shm's time over mshare's, each repetition's pair.
        speed = stats.judge_ratio(*cr.paired("shm", "mshare", touch_kth), margin=20)
        out.append(f"[{where}] attacher #{k} touch, shm time / mshare time (medians "
                   f"{st.median * 1e3:.1f} and {mt.median * 1e3:.1f} ms; goal >= 20x): "
                   f"{speed.describe(plan)}")
        out.append(throughput_goal(where, cr, plan))
    return out


def throughput_goal(where: str, cr: CaseRuns, plan: str | None = None, new: str = "mshare",
                    base: str = "shm") -> str:
    """new/base throughput at least the margin, by mshare_lab.stats' rule.  Repetition
    i ran every backend once (in its rotation), so the i-th runs of the two are a pair.
    The mshare/shm line says how many runs the medians are of."""
    m, s = cr.throughput(new), cr.throughput(base)
    assert m is not None and s is not None
    judged = stats.judge_ratio(*cr.paired(new, base, lambda r: r.throughput))
    runs = f"{m.n} run{'s' if m.n != 1 else ''}" if m.n == s.n else f"{m.n} and {s.n} runs"
    what = f"throughput, medians of {runs} each:" if base == "shm" else "throughput"
    return (f"[{where}] {what} {new} {m.text()} vs {base} {s.text()} ops/s (goal "
            f"{new}/{base} >= {judged.margin:g}): {judged.describe(plan)}")


def extrapolation_table(doc: Doc) -> str | None:
    # The case with the largest S gives the most accurate per-GiB cost.
    best: dict[str, tuple[RunResult, Fit]] = {}
    for cr in cases_of(doc):
        for name, r in cr.runs.items():
            f = fit(r)
            if f is not None and (name not in best or r.size > best[name][0].size):
                best[name] = (r, f)
    if not best:
        return None
    rows = [[name, f"{format_size(r.size)}, N<={r.servers}", f"{f.fixed_kib / 1024:.3f}",
             f"{f.per_process_kib / 1024:.4f}", f"{seed_case_gib(f):,.1f}"]
            for name, (r, f) in best.items()]
    header = ["backend", "fitted on", "fixed MiB/GiB", "per process MiB/GiB",
              f"COMPUTED GiB for {SEED_PROCESSES} x {SEED_SGA_GIB} GiB"]
    return render(header, rows)


_NOTES = (
    "* PT rise: /proc/meminfo PageTables after the servers attached and touched the whole",
    "  SGA, minus its value read after the N servers existed (forked, warmed up) and",
    "  before they attached: the SGA's own tables once (instance, or the mshare region)",
    "  plus every attacher's, and none of the servers' other tables.",
    "  VmPTE/srv: mean VmPTE of a server after its touch (its own tables, all of them).",
    "  faults/attacher: ru_minflt of the touch pass (reads one byte of every 4 KiB page).",
    "  touch #N: wall time of the last (N-th) attacher's touch pass.",
    "  The ratios compare with mshare at the same N (mshare's milestone, its N-th attacher).",
)
_EXTRA_TITLE = ("The seed's case, COMPUTED from the fitted per-GiB costs (not measured): "
                "rise(n) = fixed + n * per_process, fitted at the milestones")


def _system(doc: Doc) -> str:
    s = doc["system"]
    return (f"guest: {s['cpu']}, {s['cpus']} CPUs, {s['mem_total_kib'] / 1048576:.1f} GiB RAM, "
            f"kernel {s['kernel']}, accelerator {doc.get('accelerator', s['accelerator'])}")


def _provenance(doc: Doc) -> list[str]:
    p = doc.get("provenance")
    if not p:
        return ["provenance: not recorded"]
    note = [f"  note: {p['note']}"] if p.get("note") else []
    return [f"provenance: {provenance.describe(p)}", *note]


def _repetitions(doc: Doc) -> str:
    n = doc.get("repeat", 1)
    if n <= 1:
        return "one run per backend (no spread measured)"
    return (f"{n} repetitions, interleaved: each runs every backend once, the order rotated "
            "by one backend each time; ops/s is the median with its range")


def report(doc: Doc) -> str:
    parts = [_system(doc), *_provenance(doc), _repetitions(doc)]
    for cr in cases_of(doc):
        where = f"N={cr.case.servers}, S={format_size(cr.case.size)}"
        parts += ["", main_table(cr)]
        diag = counters_table(cr)
        if diag:
            title = (f"What each run cost the system, medians ({where}; whole run: fork, "
                     "attach, touch, workload):")
            parts += ["", title, diag]
        if any(r.milestones for r in cr.runs.values()):
            parts += ["", f"PageTables rise as servers attach ({where}):", growth_table(cr)]
    parts += ["", *_NOTES]
    extra = extrapolation_table(doc)
    if extra:
        parts += ["", _EXTRA_TITLE, extra]
    parts += ["", "Goals:", *(f"  {g}" for g in goals(doc))]
    raw = rawfiles.describe(doc.get("raw_files", []))
    return "\n".join([*parts, *([""] + raw if raw else [])])
