"""The guest side of bench/run-pgbench: one cluster (initdb, pgbench -i, on a tmpfs), then
for each client count N and repetition every configuration once, a fresh server start
each, in an order rotated so that a slow spell of the shared host falls on all alike.

A run (Bench._measure) warms the buffers with one session, whose PageTables rise less its
own VmPTE rise is what outlives it (the region's copy under msharefs); then, in the first
repetition, the touch pass (N idle sessions, then all reading every block of
pgbench_accounts with get_raw_page, which reads all 8 KiB of each buffer), the storm
(plans with one) and the pgbench runs.  bench/README.md says what each number means.
The document is saved after every run (mshare_lab.benchloop): a timeout keeps what
finished and another boot can resume it.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libmshare import fs, run_cmd
from mshare_lab.benchloop import Cell, Loop, identity, load, rotation, save
from mshare_lab.proc import mem_used_kib, meminfo_kib, minflt, mounts, state, system_info
from mshare_lab.proc import page_tables_kib as page_tables
from mshare_lab.proc import vm_pte_kib as vmpte
from vmrun import provenance

from .cluster import (
    PRELOADED,
    Cluster,
    PgbenchResult,
    hugepages,
    mount_tmpfs,
    region_maps,
    region_stats,
)
from .libpq import Session, connect_all, query_all
from .plans import Plan, cell_s

__all__ = ["TOUCH_SQL", "WARM_SQL", "run_plan"]

Doc = dict[str, Any]

WARM_SQL = ("select pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey'), "
            "pg_prewarm('pgbench_tellers'), pg_prewarm('pgbench_branches')")
# generate_series in the select list streams (ProjectSet): no tuplestore to fault in.
TOUCH_SQL = ("select sum(length(get_raw_page('{rel}', b::int))) from (select generate_series("
             "0, pg_relation_size('{rel}') / 8192 - 1) b) s")
# The touch pass's private side without the segment: as many rows, each an 8 kB bytea
# made in the backend, and the accounts relation opened (pg_relation_size).
PRIVATE_SQL = ("select sum(length(decode(repeat('00', 8192), 'hex'))) from (select "
               "generate_series(0, pg_relation_size('pgbench_accounts') / 8192 - 1) b) s")
# The storm's read: the first {blocks} blocks of the accounts table, whole.
STORM_SQL = ("select sum(length(get_raw_page('pgbench_accounts', b::int))) from (select "
             "generate_series(0, least({blocks}, pg_relation_size('pgbench_accounts') / 8192)"
             " - 1) b) s")
ROOT = Path("/run/pgbench")
BLOCK = 8192


def _region(pid: int, region_dir: str) -> Doc:
    """What the server's region holds now (bytes): how much of it 2 MiB leaves map."""
    st = region_stats(pid, region_dir)
    return {"resident": st.resident, "pmd_mapped": st.pmd_mapped,
            "page_tables": st.page_tables}


def _thp_shmem() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read_text().strip()
    except OSError:
        return "n/a"


class Bench:
    def __init__(self, plan: Plan, out: str, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.out = out
        self.log = log
        # pgbench -c N and this process's N sessions each need a descriptor per
        # connection: the soft limit up to the hard one.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        mount = fs.ensure_mounted()
        region_dir = run_cmd.prepare_dir("postgres", mount)
        if not any(m.target == str(ROOT) for m in mounts()):
            mount_tmpfs(ROOT, "3g")
        self.cluster = Cluster(ROOT, mount=mount, region_dir=region_dir)
        self.doc: Doc = {
            "schema": 1,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "system": system_info(),
            "provenance": provenance.current(),
            "python": sys.version.split()[0],
            "postgres": "",
            "plan": plan.to_json(),
            "thp_shmem": _thp_shmem(),
            "notes": [],
            "setup": {},
            "runs": [],
        }

    def settings(self, config: str) -> dict[str, str]:
        return self.cluster.settings(config, f"{self.plan.shared_buffers_mb}MB",
                                     self.plan.max_connections, {"max_wal_size": "256MB"})

    def setup(self) -> None:
        c = self.cluster
        t = time.monotonic()
        c.initdb()
        t_initdb = time.monotonic() - t
        c.start("stock", self.settings("stock"), label="setup")
        try:
            t = time.monotonic()
            c.pgbench_init(self.plan.scale)
            t_init = time.monotonic() - t
            with c.connect() as s:
                s.query("create extension pg_prewarm; create extension pageinspect; "
                        "checkpoint")
                self.doc["postgres"] = s.value("select version()")
                sizes = s.query("select pg_relation_size('pgbench_accounts'), "
                                "pg_total_relation_size('pgbench_accounts'), "
                                "pg_database_size('postgres')")[0]
        finally:
            c.stop()
        seg = c.shared_memory_size_mb(self.settings("stock"))
        self.doc["setup"] = {
            "initdb_s": t_initdb, "pgbench_init_s": t_init,
            "accounts_bytes": int(sizes[0] or 0), "accounts_total_bytes": int(sizes[1] or 0),
            "database_bytes": int(sizes[2] or 0), "segment_mb": seg,
            "settings": self.settings("stock"),
        }
        self.log(f"setup: initdb {t_initdb:.0f} s, pgbench -i -s {self.plan.scale} "
                 f"{t_init:.0f} s, accounts {int(sizes[0] or 0) >> 20} MiB, segment {seg} MB")
        save(self.doc, self.out)

    def run_one(self, config: str, n: int, rep: int, touch: bool) -> Doc:
        r: Doc = {"config": config, "clients": n, "rep": rep, "skipped": None}
        if config == "huge":
            need = int(self.cluster.show("shared_memory_size_in_huge_pages",
                                         self.settings("huge")))
            with hugepages(need + 2) as total:
                free = meminfo_kib("HugePages_Free")
                r["huge_pages"] = {"needed": need, "reserved": total, "free": free}
                if free < need:
                    r["skipped"] = f"only {free} of {need} 2 MiB huge pages could be reserved"
                    return r
                return self._measure(r, config, n, touch)
        return self._measure(r, config, n, touch)

    def _measure(self, r: Doc, config: str, n: int, touch: bool) -> Doc:
        c = self.cluster
        t = time.monotonic()
        c.start(config, self.settings(config), label=config)
        r["start_s"] = time.monotonic() - t
        try:
            preloaded = config in PRELOADED
            if preloaded:
                r["region"] = region_maps(c.pid, c.region_dir)
                if len(r["region"]) != 1:
                    raise RuntimeError(f"{config} run without exactly one region: "
                                       f"{r['region']}")
            with c.connect() as s:
                # The tables that outlive the warm-up session: PageTables rise over its
                # query minus its own VmPTE rise (all else alive throughout).
                s.query("select 1")
                pt0, pte0 = page_tables(), vmpte(s.pid) or 0
                t = time.monotonic()
                s.query(WARM_SQL)
                r["warm_s"] = time.monotonic() - t
                pt1, pte1 = page_tables(), vmpte(s.pid) or 0
            r["pt_start_kib"], r["pt_warm_kib"] = pt0, pt1 - (pte1 - pte0)
            if preloaded:
                r["region_warm"] = _region(c.pid, c.region_dir)
            if touch:
                self._touch_pass(r, n)
                if preloaded:
                    r["region_touched"] = _region(c.pid, c.region_dir)
            if self.plan.storm_mib:
                r["storm"] = self._storm(n)
            p, seconds = self._pgbench(["-S"], n)
            r.update(tps=p.tps, latency_ms=p.latency_ms, pgbench_failed=p.failed,
                     transactions=p.transactions, pgbench_seconds=seconds)
            if n in self.plan.rw_clients:
                p, seconds = self._pgbench([], n)  # the built-in TPC-B-like script
                r.update(rw_tps=p.tps, rw_latency_ms=p.latency_ms, rw_failed=p.failed,
                         rw_seconds=seconds)
            p = c.pgbench(["-S", "-n", "-C", "-c", str(n), "-j", str(min(n, 2)),
                           "-t", str(self.plan.connect_transactions)])
            r.update(tps_connect=p.tps, connection_ms=p.connection_ms,
                     pgbench_connect_failed=p.failed)
        finally:
            c.stop()
        return r

    def _pgbench(self, script: list[str], n: int) -> tuple[PgbenchResult, float | None]:
        """One pgbench run of N clients and its -T: time-based after a warm-up run whose
        numbers are dropped, or (older plans) a fixed number of transactions per client.
        pgbench's -T clock starts before its clients connect, so the measured run lasts
        the plan's seconds plus the warm-up's connection time (whole seconds)."""
        p = self.plan
        common = [*script, "-n", "-c", str(n), "-j", str(min(n, 2))]
        if not p.seconds:
            return self.cluster.pgbench([*common, "-t", str(p.transactions)]), None
        connecting = 0.0
        if p.warmup_transactions:
            warm = self.cluster.pgbench([*common, "-t", str(p.warmup_transactions)])
            connecting = (warm.connection_ms or 0.0) / 1000
        seconds = p.seconds + math.ceil(connecting)
        return self.cluster.pgbench([*common, "-T", f"{seconds:g}"]), seconds

    def _storm(self, n: int) -> Doc:
        """N clients at once, each reading the same W MiB through shared buffers: the
        time until all have their answer, their backends' faults, and how long the N
        backends take to exit once the clients hang up."""
        c = self.cluster
        blocks = self.plan.storm_mib * (1 << 20) // BLOCK
        t0 = time.monotonic()
        sessions = connect_all(c.conninfo(), n)
        try:
            connected = time.monotonic() - t0
            results = query_all(sessions, STORM_SQL.format(blocks=blocks))
            answered = time.monotonic() - t0
            used = mem_used_kib()
            pids = [s.pid for s in sessions]
            faults = [minflt(p) or 0 for p in pids]
            sums = {rows[0][0] for rows in results}
        finally:
            t1 = time.monotonic()
            for s in sessions:
                s.close()
        pending = set(pids)
        while pending:  # the postmaster reaps its backends at once: gone from /proc
            pending = {p for p in pending if state(p) not in (None, "Z", "X")}
            if pending:
                time.sleep(0.01)
        gone = time.monotonic() - t1
        if len(sums) != 1:
            raise RuntimeError(f"storm sessions read different data: {sorted(map(str, sums))}")
        return {"mib": self.plan.storm_mib, "bytes": int(sums.pop() or 0),
                "connect_s": connected, "answer_s": answered, "disconnect_s": gone,
                "faults": faults, "mem_used_kib": used}

    def _touch_pass(self, r: Doc, n: int) -> None:
        c = self.cluster
        t = time.monotonic()
        sessions: list[Session] = []
        try:
            for _ in range(n):
                sessions.append(c.connect())
            # Each backend's private part warmed first (pageinspect loaded, the plan's
            # code paths faulted in) on the one-block branches table.
            query_all(sessions, TOUCH_SQL.format(rel="pgbench_branches"))
            r["connect_all_s"] = time.monotonic() - t
            pids = [s.pid for s in sessions]
            # ... and the pass's own memory reached once without the segment, so that the
            # pass's faults are the segment's (a region's backend has its link by now).
            flt = [minflt(p) for p in pids]
            query_all(sessions, PRIVATE_SQL)
            r["private_faults"] = [(b or 0) - (a or 0)
                                   for a, b in zip(flt, map(minflt, pids), strict=True)]
            time.sleep(0.3)
            r["pt_idle_kib"] = page_tables()
            r["mem_used_idle_kib"] = mem_used_kib()
            r["vmpte_idle_kib"] = [vmpte(p) for p in pids]
            flt0 = [minflt(p) for p in pids]
            t = time.monotonic()
            results = query_all(sessions, TOUCH_SQL.format(rel="pgbench_accounts"))
            r["touch_s"] = time.monotonic() - t
            r["pt_touched_kib"] = page_tables()
            r["mem_used_kib"] = mem_used_kib()
            r["vmpte_kib"] = [vmpte(p) for p in pids]
            flt1 = [minflt(p) for p in pids]
            r["faults"] = [(b or 0) - (a or 0) for a, b in zip(flt0, flt1, strict=True)]
            sums = {rows[0][0] for rows in results}
            r["touch_bytes"] = int(sums.pop() or 0) if len(sums) == 1 else None
            if r["touch_bytes"] is None:
                raise RuntimeError(f"sessions read different data: {sorted(map(str, sums))}")
        finally:
            for s in sessions:
                s.close()

    def cells(self) -> list[Cell]:
        """(N, rep, config) in the order they run: per N and repetition every
        configuration once, the order rotated (by the repetition and N's place)."""
        p = self.plan
        return [(n, rep, config) for i, n in enumerate(p.clients) for rep in range(p.reps)
                for config in rotation(p.configs, rep + i)]

    def measure(self, cell: Cell) -> Doc:
        n, rep, config = int(cell[0]), int(cell[1]), str(cell[2])
        t = time.monotonic()
        try:
            r = self.run_one(config, n, rep, touch=rep == 0)
        except Exception as e:  # noqa: BLE001 - record it, go on with the rest
            r = {"config": config, "clients": n, "rep": rep,
                 "skipped": None, "error": f"{type(e).__name__}: {e}"[:4000]}
            if self.cluster.proc is not None:
                self.cluster.kill()
        r["wall_s"] = time.monotonic() - t
        self.log(summary(r))
        return r

    def run(self, resume: Doc | None) -> Doc:
        # The identity is checked before anything is set up or the saved runs rewritten.
        loop = Loop(self.doc, self.out, identity(self.plan.to_json(), self.doc["provenance"]),
                    resume, stall_s=cell_s(self.plan))
        if resume is not None:
            self.log(f"resuming: {len(loop.done)} of {len(self.cells())} runs done")
        self.doc = loop.doc
        self.setup()  # every boot: the cluster's tmpfs went with the last one
        loop.run(self.cells(), self.measure)
        self.doc["server_log_tail"] = self.cluster.log_text(since_start=False)[-4000:]
        save(self.doc, self.out)
        return self.doc


def summary(r: Doc) -> str:
    head = f"{r['config']:13} N={r['clients']:<4} rep {r['rep']}: "
    if r.get("error"):
        return head + "ERROR " + str(r["error"]).splitlines()[0]
    if r.get("skipped"):
        return head + "skipped: " + str(r["skipped"])
    parts = []
    if "pt_touched_kib" in r:
        seg = (r["pt_warm_kib"] - r["pt_start_kib"]) + (r["pt_touched_kib"] - r["pt_idle_kib"])
        faults = r["faults"]
        parts.append(f"segment PT {seg} kB, faults/backend {sum(faults) / len(faults):.0f}, "
                     f"touch {r['touch_s']:.1f} s")
    parts.append(f"{r['tps']:.0f} tps, {r['latency_ms']:.2f} ms, connect "
                 f"{r['connection_ms'] or 0:.1f} ms ({r['wall_s']:.0f} s)")
    if "region_warm" in r:
        reg = r.get("region_touched") or r["region_warm"]
        parts.append(f"region {reg['pmd_mapped'] >> 20} of {reg['resident'] >> 20} MiB "
                     "PMD-mapped")
    return head + "; ".join(parts)


def run_plan(plan: Plan, out: str, log: Callable[[str], None], *, resume: bool = False) -> Doc:
    """Run the plan, saving to ``out`` after every run; with ``resume``, continue the
    document already at ``out`` (the same plan, kernel and git revision only)."""
    saved = load(out) if resume else None
    bench = Bench(plan, out, log)
    try:
        return bench.run(saved)
    finally:
        if bench.cluster.proc is not None:
            bench.cluster.kill()
        subprocess.run(["umount", "-l", str(ROOT)], check=False)
