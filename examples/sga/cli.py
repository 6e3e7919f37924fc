"""python3 -m examples.sga: a database-style SGA shared by N server processes.

An instance creates the SGA (header, block directory, buffer cache of 8 KiB blocks with
checksums) on the chosen backend; N servers forked from it attach it as new connections
would, touch all of it, then run a read-mostly workload (random lookups with checksum
checks, a small share of updates under a stripe lock) for the given duration.  The
result says what the page tables cost and whether any checksum failed (none may).
Everything the run created is removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

import libmshare
from libmshare import SizeSyntaxError, format_size, parse_size
from mshare_lab.proc import system_info

from .backends import BACKENDS
from .instance import run
from .layout import LayoutError
from .progress import ProgressLine
from .result import RunConfig, RunResult

__all__ = ["main", "summary"]


class Terminated(Exception):
    """SIGTERM arrived; raised in the main thread so that every cleanup runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except SizeSyntaxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return value


def _seconds(text: str) -> float:
    value = float(text.removesuffix("s"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _milestones(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"milestones {text!r}: give counts like 1,10,100") \
            from None


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"update share {text!r} must be in 0..1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m examples.sga", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                   help="how the SGA is shared (auto: mshare if the kernel has msharefs, "
                        "else shm)")
    p.add_argument("--servers", "-n", type=_count, default=100, metavar="N",
                   help="server processes (default 100)")
    p.add_argument("--size", "-s", type=_size, default=1 << 30, metavar="SIZE",
                   help="SGA size, e.g. 64M, 1G (default 1G)")
    p.add_argument("--duration", "-d", type=_seconds, default=10.0,
                   metavar="SECONDS", help="workload duration (default 10)")
    p.add_argument("--update-share", type=_share, default=0.02, metavar="FRACTION",
                   help="share of operations that update a block (default 0.02)")
    p.add_argument("--stripes", type=_count, default=64,
                   help="write-lock stripes (default 64)")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--milestones", type=_milestones, default=[], metavar="N1,N2,...",
                   help="also read PageTables after this many servers attached")
    p.add_argument("--kth", type=_count, default=None, metavar="K",
                   help="report the touch time of the K-th attacher (default the last)")
    p.add_argument("--reserve-hugepages", action="store_true",
                   help="hugetlb: grow /proc/sys/vm/nr_hugepages as needed (root), "
                        "and shrink it back afterwards")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    return p


def summary(r: RunResult, kth: int | None = None) -> str:
    if r.skipped:
        return f"{r.label}: skipped: {r.skipped}"
    k = r.kth(kth)
    rise = f"{r.pt_rise_kib / 1024:.2f} MiB"
    rows = [
        ("backend", r.label),
        ("servers", str(r.servers)),
        ("SGA", f"{format_size(r.size)} ({r.nblocks} blocks of 8K)"),
        ("PageTables rise", (f"{rise} (baseline read after the servers existed, "
                            "before they attached)")),
    ]
    rows += [(f"  {m.attached} attached", f"{m.pt_rise_kib / 1024:.2f} MiB")
             for m in r.milestones]
    rows += [
        ("VmPTE / server", (f"{r.mean(r.vmpte_before_kib):.0f} KiB before attach, "
                           f"{r.mean(r.vmpte_after_kib):.0f} KiB after the touch (mean)")),
        ("touch faults", (f"{r.mean(r.touch_faults):.1f} per attacher (mean), "
                         f"{r.touch_faults[k - 1]} for attacher {k}")),
        ("touch time", (f"{r.touch_s[k - 1] * 1e3:.1f} ms for attacher {k} "
                       f"(mean {r.mean(r.touch_s) * 1e3:.1f} ms)")),
        ("throughput", (f"{r.throughput:,.0f} ops/s ({r.reads} reads, {r.updates} updates "
                       f"in {r.duration_s:g} s)")),
        ("checksum errors", (f"{r.checksum_errors} in reads; {r.verify_bad_blocks} bad, "
                            f"{r.verify_torn_blocks} torn blocks at the end")),
        ("stripe counters", (f"{r.counted_updates} counted for {r.updates} updates "
                            f"({'ok' if r.lock_ok else 'LOST UPDATES'})")),
        ("verdict", "correct" if r.correct else "INCORRECT"),
    ]
    return "\n".join(f"{name:<17}{value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    backend = args.backend
    if backend == "auto":
        backend = "mshare" if libmshare.kernel_supports() else "shm"
    config = RunConfig(backend=backend, servers=args.servers, size=args.size,
                       duration=args.duration, update_share=args.update_share,
                       stripes=args.stripes, seed=args.seed, milestones=args.milestones,
                       reserve_hugepages=args.reserve_hugepages)
    progress = ProgressLine(backend)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = run(config, progress)
    except KeyboardInterrupt:
        progress.finish()
        print("interrupted: servers stopped, SGA removed", file=sys.stderr)
        return 130
    except Terminated:
        progress.finish()
        print("terminated: servers stopped, SGA removed", file=sys.stderr)
        return 143
    except (OSError, LayoutError, RuntimeError) as e:
        progress.finish()
        print(f"sga: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.finish()
    print(summary(result, args.kth))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"system": system_info(), "result": result.to_json()}, f, indent=1)
    if result.skipped:
        return 2
    return 0 if result.correct else 1
