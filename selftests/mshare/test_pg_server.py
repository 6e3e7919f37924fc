"""Unmodified PostgreSQL 15 with its main shared memory in an msharefs region (issue 12).

One cluster for the module, on a tmpfs, run as postgres with the preload library of
``mshare run`` and MSHARE_PRELOAD_HUGETLB=refuse (huge_pages=try, the default, so the
preload's ENOMEM answer to MAP_HUGETLB is exercised and the segment is a region of
4 KiB pages, as before huge regions; the preload's default, a huge region, is
test_pg_preload.py's; logging_collector=on, so the syslogger's detach is tested too).  The
cases share the server, in this order, but each gets the state it needs from a fixture
(`running` or `stopped`), so one failure does not fail the cases after it:

1. the segment is a region: one mapping in the postmaster and its backends, none in the
   syslogger (it detached), no name left in msharefs;
2. a read-write (TPC-B-like) pgbench run, then the consistency check (sum of account,
   teller and branch balances each equal to the sum of history deltas) and pg_amcheck;
3. a backend SIGKILLed mid-run: the postmaster's crash restart unmaps the region (its last
   mapping: the region goes) and creates a new one in the same process; the old region is
   mapped nowhere, the new one serves a second run, consistency still holds, and the
   server log holds only the expected crash-restart lines;
4. shutdown: no region mapped anywhere, Shmem back to its level before the server;
5. huge_pages=on under the preload with refuse: refused with a clear line, nothing left;
6. a SIGKILLed postmaster: once its children have exited on their own, nothing is left.

Shmem is compared without the tmpfs files (the data directory and /dev/shm), which the
server legitimately grows.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import kapi
import pytest

from libmshare import run_cmd
from pgbenchlib.cluster import BIN, Cluster, mount_tmpfs, region_maps
from pgbenchlib.consistency import check_consistency

pytestmark = [
    pytest.mark.serial,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (BIN / "postgres").exists(),
                       reason="PostgreSQL 15 is not installed (ci/setup installs it)"),
]

SETTINGS = {"huge_pages": "try", "logging_collector": "on", "log_directory": "log",
            "log_filename": "postgresql.log", "max_wal_size": "64MB",
            "checkpoint_timeout": "30min"}
SHMEM_SLACK_KB = 512
PRELOAD = {"MSHARE_PRELOAD_HUGETLB": "refuse"}

# Every line the server may log in this module; anything else fails test 3's check.
EXPECTED = [re.compile(p) for p in [
    (r"mshare-preload\[\d+\]: mmap\(\d+, MAP_SHARED\|MAP_ANONYMOUS\|MAP_HUGETLB\) answered "
    r"ENOMEM"),
    r"mshare-preload\[\d+\]: mmap\(\d+, MAP_SHARED\|MAP_ANONYMOUS\) moved to msharefs region",
    r"mshare-preload\[\d+\]: munmap\(0x[0-9a-f]+, \d+\): unmapped region .* in its creator",
    r"LOG:  redirecting log output to logging collector process",
    r"HINT:  Future log output will appear in directory",
    r"LOG:  starting PostgreSQL 15",
    r"LOG:  listening on Unix socket",
    r"LOG:  database system was shut down at",
    r"LOG:  database system is ready to accept connections",
    r"LOG:  checkpoint (starting|complete)",
    # The crash restart, as PostgreSQL 15 reports it:
    r"LOG:  server process \(PID \d+\) was terminated by signal 9: Killed",
    r"DETAIL:  Failed process was running: ",
    r"LOG:  terminating any other active server processes",
    r"LOG:  all server processes terminated; reinitializing",
    r"LOG:  database system was interrupted; last known up at",
    r"LOG:  database system was not properly shut down; automatic recovery in progress",
    r"LOG:  redo starts at",
    r"LOG:  (invalid record length at|record with incorrect prev-link|invalid magic number)",
    r"LOG:  redo done at",
    (r"LOG:  background worker \"logical replication launcher\" \(PID \d+\) exited with "
    r"exit code 1"),
    (r"FATAL:  the database system is (in recovery mode|not yet accepting connections|"
    r"starting up)"),
    r"DETAIL:  Consistent recovery state has not been yet reached",
    r"WARNING:  terminating connection because of crash of another server process",
    r"DETAIL:  The postmaster has commanded this server process to roll back",
    r"HINT:  In a moment you should be able to reconnect",
    (r"LOG:  (could not send data to client|could not receive data from client|"
    r"unexpected EOF on client connection)"),
    # A clean shutdown:
    r"LOG:  received fast shutdown request",
    r"LOG:  aborting any active transactions",
    r"LOG:  shutting down",
    r"LOG:  database system is shut down",
    r"FATAL:  terminating connection due to administrator command",
]]
PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ UTC \[\d+\] ")


def unexpected_lines(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        body = PREFIX.sub("", line)
        if not body.strip() or body.startswith(("\t", " ")):
            continue  # continuation of the previous line (a statement, a long DETAIL)
        if not any(p.match(body) for p in EXPECTED):
            out.append(line)
    return out


def tmpfs_used_kb(path: str) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


@dataclass
class Pg:
    cluster: Cluster
    mount: str
    region_dir: str
    shmem_base: int
    tables: bool = False  # pgbench's tables are there

    def shmem(self) -> int:
        """Shmem without the tmpfs files the server writes (data directory, /dev/shm)."""
        used = tmpfs_used_kb(str(self.cluster.root))
        if os.path.isdir("/dev/shm"):
            used += tmpfs_used_kb("/dev/shm")
        return kapi.meminfo()["Shmem"] - used

    def start(self, **extra: str) -> int:
        c = self.cluster
        return c.start("msharefs", c.settings("msharefs", "64MB", 40, {**SETTINGS, **extra}),
                       env=PRELOAD)

    def ensure_tables(self) -> None:
        """pgbench's tables (scale 1), made once for the module on a running server."""
        if not self.tables:
            self.cluster.pgbench_init(1)
            self.tables = True

    def region_lines(self, pid: int | None = None) -> list[str]:
        return region_maps(self.cluster.pid if pid is None else pid, self.region_dir)

    def mapped_anywhere(self, name: str) -> list[int]:
        """Every process that maps a file whose path contains name."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if name in Path(f"/proc/{d}/maps").read_text():
                        out.append(int(d))
                except OSError:
                    pass
        return out


@pytest.fixture(scope="module")
def pg(msharefs: str) -> Iterator[Pg]:
    region_dir = run_cmd.prepare_dir("postgres", msharefs)
    root = Path(tempfile.mkdtemp(prefix="mshare-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    mount_tmpfs(root, "512m")
    cluster = Cluster(root, mount=msharefs, region_dir=region_dir)
    pg = Pg(cluster, msharefs, region_dir, 0)
    try:
        cluster.initdb()
        pg.shmem_base = pg.shmem()
        yield pg
    finally:
        if cluster.proc is not None:
            with_timeout_kill(cluster)
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)
        os.rmdir(region_dir)  # empty: each case checks no region name is left


@pytest.fixture
def stopped(pg: Pg) -> Pg:
    """No server running.  With `running`, each case starts from the state it needs, so
    one failing case does not fail the ones after it."""
    if pg.cluster.proc is not None:
        with_timeout_kill(pg.cluster)
        assert pg.cluster.children_gone(120), f"server processes left: {pg.cluster.user_pids()}"
    return pg


@pytest.fixture
def running(pg: Pg) -> Pg:
    """A server on msharefs with pgbench's tables (scale 1)."""
    if pg.cluster.proc is None:
        pg.start()
    pg.ensure_tables()
    return pg


def with_timeout_kill(cluster: Cluster) -> None:
    try:
        cluster.stop("immediate", timeout=60)
    except Exception:  # noqa: BLE001 - teardown: make sure nothing is left running
        cluster.kill()


def region_name(line: str) -> str:
    return line.split()[5]


def test_pg_segment_is_a_region(stopped: Pg) -> None:
    pg = stopped
    postmaster = pg.start()
    lines = pg.region_lines()
    assert len(lines) == 1, lines
    lo, hi = (int(x, 16) for x in lines[0].split()[0].split("-"))
    assert lo % harness.alignment() == 0 and (hi - lo) % harness.alignment() == 0
    assert lines[0].endswith("(deleted)") and os.listdir(pg.region_dir) == []
    pg.ensure_tables()
    with pg.cluster.connect() as s:
        backend = s.pid
        s.query("select count(*) from pgbench_branches")
        assert pg.region_lines(backend) == lines, "a backend must map the same region"
    procs = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in pg.cluster.user_pids()}
    loggers = [p for p, cmd in procs.items() if cmd.startswith(b"postgres: logger")]
    assert len(loggers) == 1, procs
    assert pg.region_lines(loggers[0]) == [], "the syslogger must detach from the segment"
    mine = preload_lines(pg.cluster.log_text(), postmaster)
    assert len(mine) == 2, mine  # huge_pages=try's first attempt, then without
    assert "answered ENOMEM" in mine[0] and "moved to msharefs region" in mine[1], mine


def preload_lines(log: str, pid: int) -> list[str]:
    """The preload's lines from one process (a postmaster keeps its pid across a crash
    restart; earlier servers of this module had other pids)."""
    return [line for line in log.splitlines() if f"mshare-preload[{pid}]: " in line]


def test_pg_readwrite_consistent(running: Pg) -> None:
    pg = running
    with pg.cluster.connect() as s:
        before = int(s.value("select count(*) from pgbench_history") or 0)
    r = pg.cluster.pgbench(["-c", "4", "-j", "2", "-t", "40", "-n"], timeout=600)
    assert r.failed == 0 and r.transactions == 160, r.output
    with pg.cluster.connect() as s:
        check_consistency(s, expect_history=before + 160)
    amcheck(pg.cluster)


def amcheck(cluster: Cluster) -> None:
    p = cluster.run([str(BIN / "pg_amcheck"), "--install-missing", "--heapallindexed",
                     "-d", "postgres"], check=False, timeout=600)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def test_pg_backend_sigkill_crash_restart(running: Pg) -> None:
    pg = running
    c = pg.cluster
    with c.connect() as s:
        s.query("checkpoint")  # a short redo
        before = s.value("select count(*) from pgbench_history")
    old = region_name(pg.region_lines()[0])
    bench = subprocess.Popen([str(BIN / "pgbench"), "-c", "3", "-j", "1", "-T", "120", "-n"],
                             env=c.env(), cwd=c.root, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, user=c.pw.pw_uid,
                             group=c.pw.pw_gid, extra_groups=[])
    try:
        with c.connect() as s:
            grew = harness.wait_until(lambda: int(s.value(
                "select count(*) from pgbench_history") or 0) > int(before or 0) + 20, 240, 0.2)
            assert grew, "pgbench made no progress"
            # A client's backend, picked now: pgbench's first connection (it reads the
            # scale with it) is gone by the time the clients run.
            q = ("select pid from pg_stat_activity where application_name = 'pgbench' "
                 "and backend_type = 'client backend' and pid <> pg_backend_pid()")
            victim = None
            for _ in range(20):
                pids = [int(row[0] or 0) for row in s.query(q)]
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    victim = pids[0]
                    break
                except (IndexError, ProcessLookupError):
                    time.sleep(0.1)
            assert victim is not None, "no pgbench backend to kill"
    except BaseException:
        bench.kill()
        raise
    finally:
        out, _ = bench.communicate(timeout=harness.scaled(300))
    assert bench.returncode != 0, "pgbench did not notice the crash:\n" + out
    # The postmaster reinitializes: a new region, in the same process.
    c.wait_ready(600)
    lines = pg.region_lines()
    assert len(lines) == 1, lines
    new = region_name(lines[0])
    assert new != old, "the crash restart must create a new region"
    assert pg.mapped_anywhere(old) == [], f"the old region {old} is still mapped"
    assert os.listdir(pg.region_dir) == []
    with c.connect() as s:
        check_consistency(s)
        n = int(s.value("select count(*) from pgbench_history") or 0)
    r = c.pgbench(["-c", "2", "-j", "1", "-t", "20", "-n"], timeout=600)
    assert r.failed == 0, r.output
    with c.connect() as s:
        check_consistency(s, expect_history=n + 40)
    amcheck(c)
    log = c.log_text()
    assert "all server processes terminated; reinitializing" in log
    mine = preload_lines(log, c.pid)  # its start, then the restart's unmap and new region
    unmapped = [i for i, line in enumerate(mine) if "unmapped region" in line]
    moved = [i for i, line in enumerate(mine) if "moved to msharefs region" in line]
    assert len(unmapped) == 1 and len(moved) == 2 and moved[0] < unmapped[0] < moved[1], mine
    bad = unexpected_lines(log)
    assert bad == [], "unexpected server log lines:\n" + "\n".join(bad)


def test_pg_shutdown_frees_everything(running: Pg) -> None:
    pg = running
    c = pg.cluster
    name = region_name(pg.region_lines()[0])
    assert c.stop("fast") == 0
    assert c.children_gone(60)
    assert pg.mapped_anywhere(name) == [] and os.listdir(pg.region_dir) == []
    assert harness.wait_until(lambda: pg.shmem() - pg.shmem_base < SHMEM_SLACK_KB, 30), \
        f"Shmem {pg.shmem() - pg.shmem_base:+} kB after shutdown"
    assert unexpected_lines(c.log_text()) == []


def test_pg_huge_pages_on_refused(stopped: Pg) -> None:
    pg = stopped
    with pytest.raises(Exception, match="could not map anonymous shared memory"):
        pg.start(huge_pages="on")
    log = pg.cluster.log_text()
    assert "huge_pages=on cannot start" in log, log
    assert os.listdir(pg.region_dir) == []
    assert pg.cluster.proc is None


def test_pg_postmaster_sigkill_leaks_nothing(stopped: Pg) -> None:
    pg = stopped
    c = pg.cluster
    pg.start()
    with c.connect() as s:
        s.query("select sum(abalance) from pgbench_accounts")
    name = region_name(pg.region_lines()[0])
    assert pg.shmem() - pg.shmem_base > 1024  # the segment is there and touched
    c.kill()
    assert c.children_gone(120), f"server processes left: {c.user_pids()}"
    assert pg.mapped_anywhere(name) == [] and os.listdir(pg.region_dir) == []
    # PostgreSQL's own leftovers of a killed postmaster (its 56-byte SysV header and
    # dynamic shared memory control segment) are a page or two, within the slack.
    assert harness.wait_until(lambda: pg.shmem() - pg.shmem_base < SHMEM_SLACK_KB, 30), \
        f"Shmem {pg.shmem() - pg.shmem_base:+} kB after the postmaster was SIGKILLed"
