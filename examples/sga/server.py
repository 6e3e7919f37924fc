"""A server process: warm up, wait, attach the SGA, touch it all, then serve.

It runs in a child forked from the instance, which has imported everything already
(forking is much cheaper than starting Python under TCG).  Before it says "ready" it
runs its whole code path once on a small private SGA, so that the page tables for its
own code and heap exist before the instance reads its PageTables baseline: what the
SGA costs is then what the attach and touch add.
"""

from __future__ import annotations

import ctypes
import random
import resource
import time
from dataclasses import asdict, dataclass

from mshare_lab.proc import vm_pte_kib

from .backends import Backend, Memory
from .cache import BufferCache, PayloadPool
from .channel import LineReader, send_report
from .layout import PAGE
from .locks import StripeLocks
from .result import CacheStats

__all__ = ["ServerSpec", "serve", "touch_all", "workload"]

# Operations between two looks at the clock.
_BATCH = 64
WARMUP_OPS = 64


@dataclass
class ServerSpec:
    """What every server knows before it is forked."""

    backend: Backend
    size: int
    lock_path: str
    pool: PayloadPool
    seed: int
    update_share: float


def touch_all(view: memoryview, dst: memoryview) -> None:
    """Read one byte of every page, in C: the strided copy touches each 4 KiB page."""
    with view[::PAGE] as every_page:
        dst[:] = every_page


# glibc mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_HEAP = 32 << 20


def keep_strided_copy_buffer(n: int) -> None:
    """Make the temporary buffer of touch_all() cost no page faults.

    CPython copies a strided memoryview through a temporary buffer of ``n`` bytes taken
    from malloc and freed at once.  With glibc's defaults a buffer above 128 KiB is a
    fresh mmap every time, and a smaller one may be trimmed from the heap: either way
    the touch pass would count faults on that buffer (16 at 256M, 64 at 1G) as faults on
    the SGA.  Keep such buffers in the heap, and fault one in now.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_HEAP)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_HEAP)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    buf = libc.malloc(n)
    if buf:
        ctypes.memset(buf, 0, n)
        libc.free(buf)


def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def workload(cache: BufferCache, pool: PayloadPool, locks: StripeLocks, rng: random.Random,
             update_share: float, *, deadline: float | None = None,
             ops: int | None = None) -> CacheStats:
    """Random lookups with checksum checks, and a share of locked updates."""
    stats = CacheStats()
    nblocks = cache.layout.nblocks
    variants = pool.variants()
    done = 0
    while True:
        for _ in range(_BATCH):
            k = rng.randrange(nblocks)
            if rng.random() < update_share:
                cache.update(k, rng.randrange(variants), pool, locks, stats)
            else:
                cache.read(k, stats)
        done += _BATCH
        if ops is not None and done >= ops:
            return stats
        if deadline is not None and time.monotonic() >= deadline:
            return stats


def serve(idx: int, spec: ServerSpec, warm: BufferCache, ctrl_fd: int, report_fd: int) -> int:
    """The body of server ``idx``; returns its exit status."""
    locks = StripeLocks(spec.lock_path)
    rng = random.Random(spec.seed * 1_000_003 + idx)
    # Touch destination written once now, so the touch pass faults only on the SGA.
    dst = memoryview(bytearray(b"\x01") * (spec.size // PAGE))
    keep_strided_copy_buffer(len(dst))
    touch_all(warm.view, dst[:len(warm.view[::PAGE])])
    workload(warm, spec.pool, locks, rng, 0.5, ops=WARMUP_OPS)
    minflt()
    vm_pte_kib()
    # A forked child's counters start at zero: this is what starting a server cost.
    send_report(report_fd, {"kind": "ready", "idx": idx, "vmpte_kib": vm_pte_kib(),
                            "startup_faults": minflt()})

    control = LineReader(ctrl_fd)
    memory: Memory | None = None
    cache: BufferCache | None = None
    try:
        while True:
            line = control.readline()
            if not line or line == "exit":
                return 0
            cmd, _, arg = line.partition(" ")
            if cmd == "attach":
                t0 = time.perf_counter()
                f0 = minflt()
                memory = spec.backend.attach(arg, spec.size)
                t1 = time.perf_counter()
                f1 = minflt()
                touch_all(memory.view, dst)
                t2 = time.perf_counter()
                f2 = minflt()
                cache = BufferCache.open(memory.view)
                send_report(report_fd, {
                    "kind": "attached", "idx": idx, "attach_s": t1 - t0, "touch_s": t2 - t1,
                    "attach_faults": f1 - f0, "touch_faults": f2 - f1,
                })
            elif cmd == "run" and cache is not None:
                start, deadline = (float(x) for x in arg.split())
                time.sleep(max(0.0, start - time.monotonic()))
                stats = workload(cache, spec.pool, locks, rng, spec.update_share,
                                 deadline=deadline)
                send_report(report_fd, {"kind": "done", "idx": idx, **asdict(stats),
                                        "elapsed_s": time.monotonic() - start})
            else:
                send_report(report_fd, {"kind": "error", "idx": idx,
                                        "message": f"unexpected command {line!r}"})
                return 1
    finally:
        if cache is not None:
            cache.close()
        if memory is not None:
            memory.close()
        locks.close()
