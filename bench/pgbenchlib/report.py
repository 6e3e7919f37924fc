"""The text report of a bench/run-pgbench document: the table, the goals, the notes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from mshare_lab import stats, table
from mshare_lab.stats import Spread, spread
from mshare_lab.table import text as render
from vmrun import rawfiles

from .kernels import NOMSHARE
from .plans import CONFIGS

__all__ = ["HUGE_REGION_FAULTS", "HUGE_REGION_PT_KIB", "STORM_GOAL", "Row", "goals",
           "one_copy_kib", "report", "rows", "storm_table"]

Doc = dict[str, Any]
# msharefs-huge's count goals: a region of 2 MiB leaves has a PUD and a PMD page (8 kB)
# whatever its size and N, and a backend reaches all of it through one top-level link:
# a fault or two of its own beside the link's.
HUGE_REGION_PT_KIB = 16
HUGE_REGION_FAULTS = 3
# The connection storm: msharefs's time until all N sessions answered, over stock's.
STORM_GOAL = 0.8


def one_copy_kib(segment_bytes: int) -> int:
    """One copy of a segment's 4 KiB-page tables: a PTE page per 2 MiB, a PMD page per
    1 GiB, a PUD page (what a region keeps below the top level)."""
    return 4 * (-(-segment_bytes // (2 << 20)) + -(-segment_bytes // (1 << 30)) + 1)


@dataclass
class Row:
    """One configuration at one N: the touch pass (first repetition) and the
    throughput of every repetition."""

    config: str
    clients: int
    skipped: str | None
    resident_kib: int | None = None  # segment tables that outlived the warm-up session
    pass_kib: int | None = None  # PageTables rise of the touch pass, N sessions
    vmpte_idle: float | None = None
    vmpte: float | None = None
    faults: float | None = None
    fault_counts: list[int] | None = None  # every backend's, in the touch pass
    region: dict[str, int] | None = None  # MSHARE_GET_STATS after the touch pass
    touch_s: float | None = None
    mem_used_idle_kib: int | None = None  # the guest's, N sessions idle
    mem_used_kib: int | None = None  # the guest's, after the touch pass
    tps: Spread | None = None
    latency: Spread | None = None
    connect: Spread | None = None
    storm_s: Spread | None = None  # until all N storm sessions had their answer
    storm_faults: float | None = None  # per backend, mean over the storm runs
    storm_mem_mib: Spread | None = None  # the guest's used memory once all had answered
    disconnect_s: Spread | None = None
    rw_tps: Spread | None = None

    @property
    def segment_kib(self) -> int | None:
        if self.resident_kib is None or self.pass_kib is None:
            return None
        return self.resident_kib + self.pass_kib


def rows(doc: Doc) -> list[Row]:
    out = []
    for n in doc["plan"]["clients"]:
        for config in (*CONFIGS, NOMSHARE):
            runs = [r for r in doc["runs"] if r["clients"] == n and r["config"] == config]
            if not runs:
                continue
            ok = [r for r in runs if not r.get("skipped") and not r.get("error")]
            if not ok:
                why = runs[0].get("skipped") or runs[0].get("error") or "no run"
                out.append(Row(config, n, why.splitlines()[0]))
                continue
            row = Row(config, n, None)
            touch = next((r for r in ok if "pt_touched_kib" in r), None)
            if touch is not None:
                row.resident_kib = touch["pt_warm_kib"] - touch["pt_start_kib"]
                row.pass_kib = touch["pt_touched_kib"] - touch["pt_idle_kib"]
                idle = [v for v in touch["vmpte_idle_kib"] if v is not None]
                after = [v for v in touch["vmpte_kib"] if v is not None]
                row.vmpte_idle = statistics.mean(idle) if idle else None
                row.vmpte = statistics.mean(after) if after else None
                row.faults = statistics.mean(touch["faults"])
                row.fault_counts = [int(f) for f in touch["faults"]]
                row.region = touch.get("region_touched")
                row.touch_s = touch["touch_s"]
                row.mem_used_idle_kib = touch.get("mem_used_idle_kib")
                row.mem_used_kib = touch.get("mem_used_kib")
            row.tps = spread([r["tps"] for r in ok if "tps" in r])
            row.latency = spread([r["latency_ms"] for r in ok if "latency_ms" in r])
            row.connect = spread([r["connection_ms"] for r in ok
                                  if r.get("connection_ms") is not None])
            storms = [r["storm"] for r in ok if r.get("storm")]
            if storms:
                row.storm_s = spread([st["answer_s"] for st in storms])
                row.disconnect_s = spread([st["disconnect_s"] for st in storms])
                row.storm_faults = statistics.mean(
                    statistics.mean(st["faults"]) for st in storms)
                row.storm_mem_mib = spread([st["mem_used_kib"] / 1024 for st in storms
                                            if "mem_used_kib" in st])
            row.rw_tps = spread([r["rw_tps"] for r in ok if "rw_tps" in r])
            out.append(row)
    return out


def _cell(v: float | Spread | None, fmt: str = "{:,.0f}") -> str:
    """A table cell: a number, or a spread's median and range; "-" where there is none."""
    if v is None:
        return "-"
    return v.text(fmt) if isinstance(v, Spread) else fmt.format(v)


def main_table(rs: list[Row]) -> str:
    header = ["config", "N", "segment PT kB*", "of which shared", "VmPTE idle/after kB",
              "faults/backend", "touch s", "select-only tps", "latency ms", "connect ms",
              "PMD-mapped MiB", "guest used MiB idle/after", "PT vs msharefs", "faults vs msharefs"]
    base = {r.clients: r for r in rs if r.config == "msharefs" and not r.skipped}
    cells = []
    for r in rs:
        if r.skipped:
            cells.append([r.config, str(r.clients), *["-"] * 11, f"skipped: {r.skipped}"])
            continue
        b = base.get(r.clients)
        cells.append([
            r.config, str(r.clients), _cell(r.segment_kib), _cell(r.resident_kib),
            f"{_cell(r.vmpte_idle)}/{_cell(r.vmpte)}", _cell(r.faults, "{:,.1f}"),
            _cell(r.touch_s, "{:.1f}"), _cell(r.tps), _cell(r.latency, "{:.2f}"),
            _cell(r.connect, "{:.1f}"), "-" if r.region is None else
            f"{r.region['pmd_mapped'] >> 20:,} of {r.region['resident'] >> 20:,}",
            "-" if r.mem_used_kib is None else
            f"{_cell(r.mem_used_idle_kib and r.mem_used_idle_kib / 1024)}/"
            f"{r.mem_used_kib >> 10:,}",
            table.ratio(r.segment_kib, b.segment_kib if b else None),
            table.ratio(r.faults, b.faults if b else None),
        ])
    return render(*_without(header, cells, "guest used MiB idle/after"))


def _without(header: list[str], cells: list[list[str]],
             column: str) -> tuple[list[str], list[list[str]]]:
    """The table without ``column`` when no row has a value there (documents from
    before it was measured)."""
    i = header.index(column)
    if any(len(row) > i and row[i] != "-" for row in cells):
        return header, cells
    return header[:i] + header[i + 1:], [row[:i] + row[i + 1:] for row in cells]


def storm_table(rs: list[Row]) -> str | None:
    """The storm and read-write columns, for plans that have them."""
    shown = [r for r in rs if not r.skipped and (r.storm_s or r.rw_tps)]
    if not shown:
        return None
    header = ["config", "N", "storm: all answered s", "faults/backend", "guest used MiB",
              "disconnect s", "read-write tps"]
    return render(*_without(header, [[
        r.config, str(r.clients), _cell(r.storm_s, "{:.2f}"), _cell(r.storm_faults),
        _cell(r.storm_mem_mib), _cell(r.disconnect_s, "{:.2f}"), _cell(r.rw_tps)]
        for r in shown], "guest used MiB"))


def _value(r: Doc, key: str) -> float | None:
    """A run's number by key; "storm.answer_s" reaches into the storm record."""
    v: Any = r
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) and v else None


def _pairs(doc: Doc, n: int, new: str, base: str,
           key: str = "tps") -> tuple[list[float], list[float]]:
    """Two configurations' values of key at N, paired by repetition (each repetition
    ran every configuration once, in its rotation)."""
    got: dict[str, dict[int, float]] = {new: {}, base: {}}
    for r in doc["runs"]:
        v = _value(r, key) if r["clients"] == n and r["config"] in got else None
        if v is not None:
            got[r["config"]][r["rep"]] = v
    reps = sorted(got[new].keys() & got[base].keys())
    return [got[new][i] for i in reps], [got[base][i] for i in reps]


def _msharefs_goals(doc: Doc, n: int, by: dict[tuple[str, int], Row]) -> list[str]:
    """msharefs (4 KiB region) against stock, and huge pages beside it."""
    m, s, h = by.get(("msharefs", n)), by.get(("stock", n)), by.get(("huge", n))
    if m is None or s is None:
        return [f"[N={n}] msharefs goals need stock and msharefs runs: not evaluated"]
    plan = doc["plan"].get("name")
    out = []
    if m.segment_kib is not None and s.segment_kib is not None:
        # One copy of what was touched: the tables that map the region's resident memory
        # once, densely (MSHARE_GET_STATS after the pass); documents without the stats
        # fall back to a copy of the whole segment.  The region's own tables beside it.
        region = m.region or {}
        if region.get("resident") is not None:
            copy = one_copy_kib(int(region["resident"]))
            what = (f"one copy of what was touched ({int(region['resident']) >> 20:,} MiB "
                    f"resident: {copy:,} kB; the region holds "
                    f"{int(region.get('page_tables', 0)) >> 10:,} kB)")
        else:
            copy = one_copy_kib(int(doc["setup"]["segment_mb"]) << 20)
            what = f"one copy of the whole segment ({copy:,} kB)"
        ok = m.segment_kib <= 1.2 * copy
        out.append(f"[N={n}] msharefs segment page tables {m.segment_kib:,} kB within 1.2 x "
                   f"{what}: {'met' if ok else 'NOT met'}")
        ratio = s.segment_kib / m.segment_kib if m.segment_kib > 0 else float("inf")
        ok = ratio >= n / 2
        out.append(f"[N={n}] stock/msharefs segment page tables {ratio:,.1f}x "
                   f"(goal >= {n / 2:g}): {'met' if ok else 'NOT met'}")
    if m.faults is not None and s.faults is not None:
        share = m.faults / s.faults if s.faults > 0 else 0.0
        ok = share <= 0.01
        out.append(f"[N={n}] msharefs touch faults/backend {m.faults:,.1f} = "
                   f"{share:.2%} of stock's {s.faults:,.1f} (goal <= 1%): "
                   f"{'met' if ok else 'NOT met'}")
    if m.tps and s.tps:
        judged = stats.judge_ratio(*_pairs(doc, n, "msharefs", "stock"))
        out.append(f"[N={n}] select-only tps msharefs {m.tps.text()} vs stock "
                   f"{s.tps.text()} (goal msharefs/stock >= {judged.margin:g}): "
                   f"{judged.describe(plan)}")
    if m.storm_s and s.storm_s:
        # Time msharefs/stock <= 0.8 is stock/msharefs >= 1.25, judged the same way.
        judged = stats.judge_ratio(*_pairs(doc, n, "stock", "msharefs", "storm.answer_s"),
                                   margin=1 / STORM_GOAL)
        out.append(f"[N={n}] storm of {n} sessions: all answered in {m.storm_s.text('{:.2f}')}"
                   f" s msharefs vs {s.storm_s.text('{:.2f}')} s stock, faults/backend "
                   f"{m.storm_faults or 0:,.0f} vs {s.storm_faults or 0:,.0f} (goal "
                   f"msharefs/stock <= {STORM_GOAL:g}, as stock/msharefs >= "
                   f"{1 / STORM_GOAL:g}): {judged.describe(plan)}")
    if m.disconnect_s and s.disconnect_s:
        judged = stats.judge_ratio(*_pairs(doc, n, "stock", "msharefs",
                                           "storm.disconnect_s"), margin=1.0)
        out.append(f"[N={n}] {n} backends exiting: {m.disconnect_s.text('{:.2f}')} s msharefs"
                   f" vs {s.disconnect_s.text('{:.2f}')} s stock (reported, no goal; "
                   f"stock/msharefs >= 1: {judged.describe(plan)})")
    if m.rw_tps and s.rw_tps:
        judged = stats.judge_ratio(*_pairs(doc, n, "msharefs", "stock", "rw_tps"))
        out.append(f"[N={n}] read-write tps msharefs {m.rw_tps.text()} vs stock "
                   f"{s.rw_tps.text()} (goal msharefs/stock >= {judged.margin:g}): "
                   f"{judged.describe(plan)}")
    if h is not None and h.segment_kib is not None and m.segment_kib is not None:
        wins = []
        if h.segment_kib < m.segment_kib:
            # A huge-pages backend's PMD tables are made as it starts, before the pass.
            spans = -(-(int(doc["setup"]["segment_mb"]) << 20) // (1 << 30))
            wins.append(f"page tables {h.segment_kib:,} vs {m.segment_kib:,} kB (segment PT; "
                        f"each huge-pages backend also holds up to {4 * spans + 4} kB of PMD "
                        "tables made at its start, not counted there, less where hugetlb "
                        "shares a whole GiB's)")
        if h.faults is not None and m.faults is not None and h.faults < m.faults:
            wins.append(f"faults/backend {h.faults:,.1f} vs {m.faults:,.1f}")
        # Ahead by the decision rule, not by medians: msharefs/huge below 1 with
        # 90% confidence (NOT met at margin 1); a short plan never claims it.
        behind = stats.judge_ratio(*_pairs(doc, n, "msharefs", "huge"), margin=1.0)
        if h.tps and m.tps and behind.verdict is stats.Verdict.NOT_MET:
            wins.append(f"tps {h.tps.median:,.0f} vs {m.tps.median:,.0f}")
        out.append(f"[N={n}] huge pages beside msharefs: " + (
            "huge pages win on " + "; ".join(wins) if wins else "msharefs as good or "
            "better on page tables, faults and tps"))
    return out


def _huge_region_goals(doc: Doc, n: int, by: dict[tuple[str, int], Row]) -> list[str]:
    """msharefs-huge (a region of 2 MiB pages): its counts, and tps against huge pages."""
    r, h = by.get(("msharefs-huge", n)), by.get(("huge", n))
    if r is None:
        return []
    plan = doc["plan"].get("name")
    out = []
    if r.segment_kib is not None:
        ok = r.segment_kib <= HUGE_REGION_PT_KIB
        out.append(f"[N={n}] msharefs-huge segment page tables {r.segment_kib:,} kB "
                   f"(goal <= {HUGE_REGION_PT_KIB} kB): {'met' if ok else 'NOT met'}")
    if r.fault_counts:
        counted = stats.judge_counts(r.fault_counts, HUGE_REGION_FAULTS)
        out.append(f"[N={n}] msharefs-huge touch faults per backend, each of {n} (goal <= "
                   f"{HUGE_REGION_FAULTS}): {counted.describe()}")
    if r.region is not None:
        # Not a goal: the kernel falls back to 4 KiB pages where THP has none to give.
        out.append(f"[N={n}] msharefs-huge region after the touch pass: "
                   f"{r.region['pmd_mapped'] >> 20:,} of {r.region['resident'] >> 20:,} MiB "
                   f"resident mapped by 2 MiB leaves, {r.region['page_tables'] >> 10:,} kB "
                   "of shared tables")
    if h is None or not h.tps or not r.tps:
        out.append(f"[N={n}] msharefs-huge tps goal needs huge and msharefs-huge runs: "
                   "not evaluated")
    else:
        judged = stats.judge_ratio(*_pairs(doc, n, "msharefs-huge", "huge"))
        out.append(f"[N={n}] select-only tps msharefs-huge {r.tps.text()} vs huge "
                   f"{h.tps.text()} (goal msharefs-huge/huge >= {judged.margin:g}): "
                   f"{judged.describe(plan)}")
    return out


# Against huge pages: each as a speed of the region configuration over huge pages' (a
# storm's time inverted), so that above 1 is the region ahead.
_SPEEDS = (("select-only tps", "tps", False), ("read-write tps", "rw_tps", False),
           ("storm answer", "storm.answer_s", True), ("storm exit", "storm.disconnect_s", True))


def _against_huge(doc: Doc, n: int, by: dict[tuple[str, int], Row]) -> list[str]:
    """What the paired intervals say of each region configuration against huge pages
    (reported, no goal): ahead, behind, or no difference shown at 90%."""
    if ("huge", n) not in by:
        return []
    out = []
    for config in ("msharefs", "msharefs-huge"):
        if (config, n) not in by:
            continue
        said = []
        for label, key, is_time in _SPEEDS:
            new, base = _pairs(doc, n, config, "huge", key)
            if is_time:
                new, base = base, new
            if len(new) < stats.MIN_PAIRS:
                continue
            i = stats.ratio_interval(new, base)
            who = ("huge pages ahead" if i.upper < 1 else config + " ahead" if i.lower > 1
                   else "no difference shown")
            said.append(f"{label} {i.ratio:.2f} ({i.lower:.2f}-{i.upper:.2f}): {who}")
        if said:
            out.append(f"[N={n}] {config} against huge pages, as its speed over theirs "
                       f"(90% interval, reported): " + "; ".join(said))
    return out


def _kernel_goals(doc: Doc, n: int, by: dict[tuple[str, int], Row]) -> list[str]:
    """Stock on CONFIG_MSHARE=y against =n (pgbenchlib.kernels' merged document): tps
    judged by the decision rule (y/n >= 0.95), the counts side by side."""
    m, o = by.get(("stock", n)), by.get((NOMSHARE, n))
    if m is None or o is None:
        return [f"[N={n}] the kernel comparison needs stock runs on both kernels"]
    plan = doc["plan"].get("name")
    out = []
    for label, key, mine, other in (("select-only", "tps", m.tps, o.tps),
                                    ("read-write", "rw_tps", m.rw_tps, o.rw_tps)):
        if mine and other:
            judged = stats.judge_ratio(*_pairs(doc, n, "stock", NOMSHARE, key))
            out.append(f"[N={n}] {label} tps of stock, CONFIG_MSHARE=y {mine.text()} vs =n "
                       f"{other.text()} (goal y/n >= {judged.margin:g}): "
                       f"{judged.describe(plan)}")
    if m.segment_kib is not None and o.segment_kib is not None:
        out.append(f"[N={n}] stock segment page tables {m.segment_kib:,} kB (y) vs "
                   f"{o.segment_kib:,} kB (n), faults/backend {m.faults or 0:,.1f} vs "
                   f"{o.faults or 0:,.1f} (reported, no goal)")
    return out


def goals(doc: Doc) -> list[str]:
    by = {(r.config, r.clients): r for r in rows(doc) if not r.skipped}
    configs = doc["plan"].get("configs", CONFIGS)
    out = []
    for n in doc["plan"]["clients"]:
        if "msharefs" in configs:
            out += _msharefs_goals(doc, n, by)
        if "msharefs-huge" in configs:
            out += _huge_region_goals(doc, n, by)
        out += _against_huge(doc, n, by)
        if NOMSHARE in configs:
            out += _kernel_goals(doc, n, by)
    return out


_NOTES = (
    "* segment PT: what the shared segment costs in page tables with N sessions that have",
    "  each read the whole of pgbench_accounts through shared buffers: the tables that",
    "  outlive the warm-up session (\"of which shared\": PageTables rise over its pg_prewarm",
    "  minus its own VmPTE rise; the region's copy under msharefs, about 0 otherwise)",
    "  plus the PageTables rise of the touch pass (N sessions connected, each warmed on a",
    "  one-block table, then all reading every block of pgbench_accounts with",
    "  get_raw_page, still connected). VmPTE: mean per backend, idle and after the pass.",
    "  faults/backend: mean minflt of one backend over the pass (since 2026-12-07 after",
    "  a query of the pass's shape in private memory; before, its private faults",
    "  included). select-only: pgbench -S, time-based (-T) after a dropped warm-up run",
    "  (older plans: fixed transactions per client), median [lowest-highest] of the",
    "  repetitions; connect: pgbench -S -C average connection time.",
    "  guest used: MemTotal less MemAvailable in the guest (huge pages: with the whole",
    "  reserved pool, touched or not).",
    "Storm: N sessions connect at once and each reads the first W MiB of",
    "  pgbench_accounts through shared buffers; time until all N answered, each",
    "  backend's minflt since its fork (start-up included), and the time from the",
    "  clients hanging up until all N backends have exited (polled every 10 ms: a",
    "  difference of one poll is no result); guest used once all N answered.",
    "  Read-write: pgbench's TPC-B-like script, time-based like select-only, on the",
    "  same cluster (its writes stay for the runs after it). Under TCG a fault costs",
    "  ~20-200 us, far more than on hardware: the fault counts carry over, the times",
    "  do not.",
    "Huge pages: a 2 MiB page needs one PMD entry where 4 KiB pages need 512 PTEs, so a",
    "  backend's tables for the segment are 512x smaller and it takes 512x fewer faults;",
    "  it costs memory reserved up front (nr_hugepages, never swapped, sized to the",
    "  segment) and an administrator's setting. msharefs keeps 4 KiB pages and one copy",
    "  of their tables for all backends, with nothing reserved. msharefs-huge: the",
    "  preload gives huge_pages=on a region of 2 MiB shmem pages (MSHARE_F_HUGE), one",
    "  copy of PMD leaves for all backends and nothing reserved; PMD-mapped MiB: how much",
    "  of the region's resident memory got 2 MiB pages (the rest fell back to 4 KiB).",
)


def _system(doc: Doc) -> list[str]:
    s, st, plan = doc["system"], doc.get("setup") or {}, doc["plan"]
    prov = doc.get("provenance") or {}
    k = prov.get("kernel") or {}
    lines = [(f"guest: {s['cpu']}, {s['cpus']} CPUs, {s['mem_total_kib'] / 1048576:.1f} GiB "
              f"RAM, kernel {s['kernel']}, accelerator {s['accelerator']}; kernel build "
              f"{k.get('key', '?')} ({k.get('flavor', '?')}), git "
              f"{prov.get('git_revision', '?')}")]
    if st:
        lines.append(
            f"{doc.get('postgres', 'PostgreSQL').split(' on ')[0]}: shared_buffers "
            f"{plan['shared_buffers_mb']} MB, segment {st['segment_mb']} MB (one copy of its "
            f"tables {one_copy_kib(int(st['segment_mb']) << 20):,} kB); pgbench scale "
            f"{plan['scale']}, pgbench_accounts {st['accounts_bytes'] >> 20} MiB read by every "
            f"session; {plan['reps']} repetitions, "
            f"{doc.get('comparison') or 'configurations interleaved'}")
    return lines


def _progress(doc: Doc) -> list[str]:
    """A document the guest has not finished (a plan resumed across boots) says so."""
    if doc.get("finished") or "checkpoint" not in doc:
        return []
    plan = doc["plan"]
    cells = len(plan["clients"]) * plan["reps"] * len(plan.get("configs", CONFIGS))
    return [(f"UNFINISHED: {len(doc['runs'])} of {cells} runs done so far (resumed with "
             "--resume); every goal below is judged on those alone")]


def _host_load(doc: Doc) -> list[str]:
    """The host's 1-minute load around the runs (older documents did not record it)."""
    loads = [s["load"][0] for r in doc["runs"]
             for s in (r.get("host_load") or {}).values() if s]
    if not loads:
        return ["host load: not recorded"]
    return [(f"host load (1 min) around the runs: {min(loads):.1f}-{max(loads):.1f}, "
             f"median {statistics.median(loads):.1f}")]


def _operator_notes(doc: Doc) -> list[str]:
    """What the person running the plan added to the document (runs discarded and run
    again, and why); the discarded runs stay in it, out of every table and goal."""
    notes = [f"  {n}" for n in doc.get("notes", [])]
    dropped = doc.get("discarded_runs", [])
    if dropped:
        notes.append("  discarded runs: " + "; ".join(
            f"{r['config']} N={r['clients']} rep {r['rep']} ({r['tps']:,.0f} tps)"
            for r in dropped))
    return ["", "Operator notes:", *notes] if notes else []


def report(doc: Doc) -> str:
    rs = rows(doc)
    storms = storm_table(rs)
    parts = [*_system(doc), *_progress(doc), *_host_load(doc), "", main_table(rs),
             *(["", storms] if storms else []), "", *_NOTES, "", "Goals:",
             *(f"  {g}" for g in goals(doc)), *_operator_notes(doc)]
    errors = [r for r in doc["runs"] if r.get("error")]
    if errors:
        parts += ["", "Errors:", *(f"  {r['config']} N={r['clients']} rep {r['rep']}: "
                                   f"{r['error'].splitlines()[0]}" for r in errors)]
    raw = rawfiles.describe(doc.get("raw_files", []))
    return "\n".join([*parts, *([""] + raw if raw else [])])
