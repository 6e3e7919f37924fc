"""The instance: create the SGA, fork the servers, measure their attach, run, clean up.

The order is what makes the PageTables numbers mean something:

1. fork the N servers (after creating the memory only for the fork backend, whose
   servers inherit it); each warms up on a private SGA and says "ready";
2. read PageTables: the baseline, with every server's own tables already counted;
3. format the SGA (this builds the instance's tables, or the region's with mshare);
4. let the servers attach and touch the whole SGA one at a time, reading PageTables
   after the milestone counts;
5. run the workload in all servers at once, then check every block and the stripe
   counters; 6. stop the servers and remove every name created, whatever happened.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import resource
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from mshare_lab.proc import page_tables_kib, vm_pte_kib

from .backends import Backend, Memory, make_backend
from .cache import BufferCache, PayloadPool
from .channel import ChannelError, Reports, send_line
from .layout import STATE_CLOSED, Layout
from .locks import StripeLocks, lock_dir
from .result import Milestone, RunConfig, RunResult
from .server import ServerSpec, serve, workload

__all__ = ["Progress", "run"]

Progress = Callable[[str, int, int], None]  # (phase, done, total)

_WARM_SIZE = 128 << 10  # a dozen blocks: enough to run every code path once
_STALL_S = 600.0
_START_LEAD_S = 0.5
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _quiet(phase: str, done: int, total: int) -> None:
    return None


class _Servers:
    """The forked servers: pids, control pipes, and stopping them."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.ctrl: list[int] = []

    def check_alive(self) -> None:
        for i, pid in enumerate(self.pids):
            if pid > 0:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got:
                    self.pids[i] = -pid
                    raise ChannelError(f"server {i} (pid {pid}) exited unexpectedly, "
                                       f"wait status {status:#x}")

    def send(self, i: int, line: str) -> None:
        send_line(self.ctrl[i], line)

    def stop(self, grace: float = 10.0) -> None:
        """Ask politely (close the control pipes), then SIGKILL what is left."""
        for fd in self.ctrl:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ctrl = []
        deadline = time.monotonic() + grace
        live = [p for p in self.pids if p > 0]
        while live and time.monotonic() < deadline:
            live = [p for p in live if not os.waitpid(p, os.WNOHANG)[0]]
            if live:
                time.sleep(0.05)
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids = []


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _fork_server(idx: int, spec: ServerSpec, warm: BufferCache, servers: _Servers,
                 report_w: int, report_r: int) -> None:
    ctrl_r, ctrl_w = os.pipe()
    # No signal may run a Python handler between fork and the child's own setup, or
    # the child could run the instance's cleanup.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for sig in _SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                for fd in (*servers.ctrl, ctrl_w, report_r):
                    os.close(fd)
                status = serve(idx, spec, warm, ctrl_r, report_w)
            except Exception:  # noqa: BLE001 - a child must not unwind into the instance
                traceback.print_exc()
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    os.close(ctrl_r)
    servers.pids.append(pid)
    servers.ctrl.append(ctrl_w)


def _expect(reports: Reports, servers: _Servers, kind: str) -> dict[str, Any]:
    msg = reports.recv(stall=_STALL_S, check=servers.check_alive)
    if msg.get("kind") != kind:
        raise ChannelError(f"expected a {kind!r} report, got {msg}")
    return msg


def run(config: RunConfig, progress: Progress = _quiet) -> RunResult:
    """One full run of the SGA on one backend.  Never leaves a name behind."""
    tag = config.tag or f"{os.getpid()}-{random.randrange(1 << 32):08x}"
    backend = make_backend(config.backend, tag, reserve_hugepages=config.reserve_hugepages)
    result = RunResult(backend=config.backend, label=backend.describe(),
                       servers=config.servers, size=config.size)
    try:
        reason = backend.unavailable(config.size)
        if reason is not None:
            result.skipped = reason
            return result
        layout = Layout.for_size(config.size, config.stripes)
        result.nblocks = layout.nblocks
        _run(config, backend, layout, tag, result, progress)
    finally:
        with _signals_held():
            backend.destroy()
    return result


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM so that a cleanup is not interrupted half-way."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


def _run(config: RunConfig, backend: Backend, layout: Layout, tag: str, result: RunResult,
         progress: Progress) -> None:
    started = time.monotonic()
    n = config.servers
    pool = PayloadPool(layout.payload_size, config.seed)
    warm = BufferCache(memoryview(bytearray(_WARM_SIZE)), Layout.for_size(_WARM_SIZE,
                                                                         config.stripes))
    warm.format(pool, config.seed)
    lock_path = os.path.join(lock_dir(), f"libmshare-sga-{tag}.lock")
    locks = StripeLocks(lock_path, create=True)
    servers = _Servers()
    memory: Memory | None = None
    cache: BufferCache | None = None
    report_r, report_w = os.pipe()
    try:
        # The instance runs the servers' code once too, so it is in memory before fork.
        workload(warm, pool, locks, random.Random(0), 0.5, ops=300)
        if backend.inherits:
            memory = backend.create(config.size)
        spec = ServerSpec(backend, config.size, lock_path, pool, config.seed,
                          config.update_share)
        _raise_fd_limit(n + 64)
        gc.collect()
        gc.freeze()  # the servers' collector then leaves the inherited heap alone
        t0 = time.monotonic()
        for i in range(n):
            _fork_server(i, spec, warm, servers, report_w, report_r)
            progress("fork", i + 1, n)
        result.spawn_s = time.monotonic() - t0
        os.close(report_w)
        report_w = -1
        reports = Reports(report_r)
        ready: dict[int, dict[str, Any]] = {}
        for done in range(n):
            msg = _expect(reports, servers, "ready")
            ready[int(msg["idx"])] = msg
            progress("ready", done + 1, n)
        result.fork_s = time.monotonic() - t0
        result.vmpte_before_kib = [int(ready[i]["vmpte_kib"] or 0) for i in range(n)]
        result.startup_faults = [int(ready[i]["startup_faults"]) for i in range(n)]

        if memory is None:
            memory = backend.create(config.size)
        result.pt_baseline_kib = page_tables_kib()

        t0 = time.monotonic()
        backend.populate(memory)
        cache = BufferCache(memory.view, layout)
        cache.format(pool, config.seed)
        result.format_s = time.monotonic() - t0

        address = backend.address()
        marks = {m for m in config.milestones if 0 < m <= n} | {n}
        for i in range(n):
            servers.send(i, f"attach {address}")
            msg = _expect(reports, servers, "attached")
            if msg["idx"] != i:
                raise ChannelError(f"server {msg['idx']} answered for server {i}")
            result.attach_s.append(float(msg["attach_s"]))
            result.touch_s.append(float(msg["touch_s"]))
            result.attach_faults.append(int(msg["attach_faults"]))
            result.touch_faults.append(int(msg["touch_faults"]))
            if i + 1 in marks:
                result.milestones.append(
                    Milestone(i + 1, page_tables_kib() - result.pt_baseline_kib))
            progress("attach", i + 1, n)
        result.pt_after_kib = result.pt_baseline_kib + result.milestones[-1].pt_rise_kib
        result.vmpte_after_kib = [vm_pte_kib(p) or 0 for p in servers.pids]

        start = time.monotonic() + _START_LEAD_S
        deadline = start + config.duration
        for i in range(n):
            servers.send(i, f"run {start!r} {deadline!r}")
        result.duration_s = config.duration
        for done in range(n):
            msg = _expect(reports, servers, "done")
            result.add(msg)
            progress("run", done + 1, n)

        servers.stop()
        cache.close_state(STATE_CLOSED)
        result.verify_bad_blocks, result.verify_torn_blocks = cache.verify_all()
        result.counted_updates = cache.counted_updates()
    finally:
        with _signals_held():
            servers.stop(grace=2.0)
            for fd in (report_r, report_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if cache is not None:
                cache.close()  # its hold on the memory first
            if memory is not None:
                memory.close()
            locks.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            gc.unfreeze()
        result.wall_s = time.monotonic() - started
