"""A private PostgreSQL 15 cluster on a tmpfs, run as ``postgres``, for the benchmark and
the guest tests: initdb once, then start/stop it in any of the four configurations.

Configurations (``plans.CONFIGS``): ``stock`` (huge_pages=off), ``huge`` (huge_pages=on,
2 MiB pages reserved by the caller), ``msharefs`` (stock plus the preload library of
``mshare run``, regions in a directory of msharefs owned by postgres) and
``msharefs-huge`` (huge_pages=on plus the preload: a region of 2 MiB pages, nothing
reserved).  The server is started directly (``postgres -D``), so its Popen pid is the
postmaster's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libmshare import fs, run_cmd
from libmshare.stats import RegionStats, read_stats

from .libpq import PgError, Session

__all__ = ["BIN", "PRELOADED", "Cluster", "PgbenchResult", "hugepages", "mount_tmpfs",
           "parse_pgbench", "region_fd", "region_maps", "region_stats"]

BIN = Path("/usr/lib/postgresql/15/bin")
PRELOADED = frozenset({"msharefs", "msharefs-huge"})  # run with the preload
HUGE_PAGES_ON = frozenset({"huge", "msharefs-huge"})  # huge_pages=on: MAP_HUGETLB
USER = "postgres"
PORT = 5499  # not 5432: never collide with a cluster of the machine's own


def region_maps(pid: int, mount: str) -> list[str]:
    """The lines of /proc/PID/maps that map files of msharefs (regions)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return [ln.rstrip("\n") for ln in f if f" {mount}/" in ln]
    except OSError:
        return []


@contextlib.contextmanager
def region_fd(pid: int, mount: str) -> Iterator[tuple[int, str]]:
    """An fd (and its path) on the one region pid maps under mount, opened through
    /proc/PID/map_files (root): the preload unlinks a region's name as soon as it is
    mapped, so there is no name to open.  LookupError if pid maps no region."""
    lines = region_maps(pid, mount)
    if len(lines) != 1:
        raise LookupError(f"process {pid} maps {len(lines)} regions under {mount}, not 1")
    path = f"/proc/{pid}/map_files/{lines[0].split()[0]}"
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd, path
    finally:
        os.close(fd)


def region_stats(pid: int, mount: str) -> RegionStats:
    """MSHARE_GET_STATS of the one region pid maps under mount (see region_fd)."""
    with region_fd(pid, mount) as (fd, path):
        return read_stats(fd, path)


def mount_tmpfs(path: Path, size: str, owner: str = USER) -> None:
    """A tmpfs at path owned by owner (the data and socket directories live on it)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True)
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, pw.pw_gid)


@contextlib.contextmanager
def hugepages(count: int) -> Iterator[int]:
    """Reserve at least count 2 MiB huge pages for the block (root), give them back after.
    Yields how many are reserved in all (may be fewer: memory is fragmented)."""
    knob = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    before = int(knob.read_text())
    try:
        knob.write_text(f"{before + count}\n")
        yield int(knob.read_text())
    finally:
        knob.write_text(f"{before}\n")


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float
    connection_ms: float | None
    transactions: int
    failed: int
    output: str = field(repr=False, default="")  # pgbench's own words, for failure messages


def parse_pgbench(out: str) -> PgbenchResult:
    def num(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    tps = num(r"tps = ([0-9.]+)")
    lat = num(r"latency average = ([0-9.]+) ms")
    if tps is None or lat is None:
        raise PgError(f"pgbench printed no tps/latency:\n{out}")
    done = num(r"number of transactions actually processed: ([0-9]+)")
    failed = num(r"number of failed transactions: ([0-9]+)")
    conn = num(r"average connection time = ([0-9.]+) ms")
    if conn is None:
        conn = num(r"initial connection time = ([0-9.]+) ms")
    return PgbenchResult(tps, lat, conn, int(done or 0), int(failed or 0), out)


class Cluster:
    """The cluster in root/data, its socket in root/sock, server logs in root."""

    def __init__(self, root: Path, *, mount: str = "/sys/fs/mshare",
                 region_dir: str | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.mount = mount
        self.region_dir = region_dir or f"{mount}/{USER}"
        self.pw = pwd.getpwnam(USER) if os.geteuid() == 0 else pwd.getpwuid(os.getuid())
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self._log_start = 0

    # ------------------------------------------------------------ processes

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"PATH": f"{BIN}:/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.root),
                "USER": self.pw.pw_name, "PGHOST": str(self.sock), "PGPORT": str(PORT),
                "PGUSER": USER, "PGDATABASE": "postgres", "TZ": "UTC", **(extra or {})}

    def _as_user(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        return {"user": self.pw.pw_uid, "group": self.pw.pw_gid, "extra_groups": []}

    def run(self, args: list[str], *, check: bool = True, timeout: float = 3600,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A client program (initdb, pgbench, pg_amcheck, psql) as the server's user."""
        p = subprocess.run(args, env=self.env(env), cwd=self.root, text=True,
                           capture_output=True, timeout=timeout, check=False,
                           **self._as_user())  # type: ignore[call-overload]
        if check and p.returncode != 0:
            raise PgError(f"{' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p  # type: ignore[no-any-return]

    def initdb(self) -> None:
        for d in (self.data, self.sock):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, self.pw.pw_uid, self.pw.pw_gid)
        self.run([str(BIN / "initdb"), "-D", str(self.data), "--data-checksums", "-U", USER,
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])

    def settings(self, config: str, shared_buffers: str, max_connections: int,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "shared_buffers": shared_buffers,
            "max_connections": str(max_connections),
            "huge_pages": "on" if config in HUGE_PAGES_ON else "off",
            "port": str(PORT),
            "unix_socket_directories": str(self.sock),
            "listen_addresses": "",
            "fsync": "off",  # tmpfs: nothing to sync; keeps TCG runs short
            "synchronous_commit": "off",
            "full_page_writes": "on",
            "max_parallel_workers_per_gather": "0",  # every session does its own work
            "shared_preload_libraries": "pg_prewarm",
            "pg_prewarm.autoprewarm": "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] ",
            "restart_after_crash": "on",
            "autovacuum": "off",
            **(extra or {}),
        }

    def _postgres(self, settings: Mapping[str, str], *extra: str) -> list[str]:
        """The server's command line: the data directory, extra, then every setting."""
        return [str(BIN / "postgres"), "-D", str(self.data), *extra,
                *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))]

    def show(self, name: str, settings: Mapping[str, str]) -> str:
        """postgres -C name: its value under these settings (the server must be down)."""
        return self.run(self._postgres(settings, "-C", name)).stdout.strip()

    def shared_memory_size_mb(self, settings: Mapping[str, str]) -> int:
        return int(self.show("shared_memory_size", settings).rstrip("MB"))

    def preload_env(self) -> dict[str, str]:
        env = run_cmd.preload_env(self.region_dir, mount=self.mount, base={},
                                  user=self.pw.pw_name)
        fake = os.environ.get(fs.FAKE_MOUNT_ENV)
        if fake:  # the SDK's host-test hook: regions emulated by ordinary files
            env[fs.FAKE_MOUNT_ENV] = fake
        return env

    def start(self, config: str, settings: Mapping[str, str], *, label: str | None = None,
              env: Mapping[str, str] | None = None, wait: float = 300) -> int:
        """Start the server; returns the postmaster's pid once it accepts connections."""
        assert self.proc is None, "already running"
        extra = self.preload_env() if config in PRELOADED else {}
        extra.update(env or {})
        self.log = self.root / f"server-{label or config}.log"
        args = self._postgres(settings)
        with open(self.log, "ab") as logf:
            self._log_start = self.log.stat().st_size
            self.proc = subprocess.Popen(args, env=self.env(extra), cwd=self.root,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         **self._as_user())  # type: ignore[call-overload]
        self.wait_ready(wait)
        return self.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.sock} port={PORT} user={USER} dbname={dbname}"

    def connect(self, dbname: str = "postgres") -> Session:
        return Session(self.conninfo(dbname))

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise PgError(f"the server exited with {code}:\n{self.log_text()}")
            try:
                with self.connect() as s:
                    s.value("select 1")
                return
            except PgError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log_text(self, since_start: bool = True) -> str:
        """The server's stderr since the last start (or all of it), then whatever the
        logging collector wrote (data/log/*, when logging_collector is on)."""
        text = ""
        if self.log is not None and self.log.exists():
            with open(self.log, "rb") as f:
                if since_start:
                    f.seek(self._log_start)
                text = f.read().decode(errors="replace")
        logdir = self.data / "log"
        if logdir.is_dir():
            for p in sorted(logdir.iterdir()):
                text += p.read_text(errors="replace")
        return text

    def stop(self, mode: str = "fast", timeout: float = 300) -> int:
        """Shut down (fast: SIGINT) and wait; returns the postmaster's exit status."""
        assert self.proc is not None
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig[mode])
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster (its children notice and exit on their own)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.wait_exit(60)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            status = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self.proc = None
        return status

    def children_gone(self, timeout: float = 120) -> bool:
        """Wait until no process of the server's user is left (after a SIGKILLed
        postmaster its backends exit on their own; they hold the region meanwhile)."""
        deadline = time.monotonic() + timeout
        while (pids := self.user_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not pids

    def user_pids(self) -> list[int]:
        out = []
        for d in filter(str.isdigit, os.listdir("/proc")):
            try:
                st = os.stat(f"/proc/{d}")
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if st.st_uid == self.pw.pw_uid and (str(self.data).encode() in cmd
                                                 or cmd.startswith(b"postgres:")):
                out.append(int(d))
        return out

    # ------------------------------------------------------------ pgbench

    def pgbench_init(self, scale: int, timeout: float = 3600) -> None:
        """pgbench -i: the four tables at this scale, vacuumed (no foreign keys)."""
        self.run([str(BIN / "pgbench"), "-i", "-q", "-s", str(scale)], timeout=timeout)

    def pgbench(self, args: list[str], timeout: float = 3600) -> PgbenchResult:
        p = self.run([str(BIN / "pgbench"), *args], timeout=timeout)
        return parse_pgbench(p.stdout + p.stderr)
