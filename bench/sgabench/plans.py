"""What a benchmark run measures: cases of (SGA size, servers, milestones, duration).

Under TCG a page fault costs about 200 µs, and a non-shared backend pays S/64 KiB faults
per attacher (read faults map 16 pages at a time), so the cost of a case grows as N x S.
The sweep keeps N x S within what finishes in well under an hour.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from libmshare import parse_size

__all__ = ["BACKENDS", "PLANS", "Case", "add_case_options", "default_repeat", "guest_memory",
           "plan_json", "resolve"]

MiB = 1 << 20
GiB = 1 << 30
BACKENDS = ["mshare", "mshare-huge", "shm", "fork", "hugetlb"]


@dataclass
class Case:
    size: int
    servers: int
    milestones: list[int] = field(default_factory=list)
    duration: float = 5.0
    # Fewer servers for some backends, to keep a sweep within its time: each server
    # costs a fork and a warm-up under TCG (about 0.3 s) before anything is measured.
    caps: dict[str, int] = field(default_factory=dict)

    def servers_for(self, backend: str) -> int:
        return min(self.servers, self.caps.get(backend, self.servers))

PLANS: dict[str, list[Case]] = {
    # The README's demo size: a few minutes under TCG for all four backends.
    "quick": [Case(64 * MiB, 32, [1, 2, 4, 8, 16, 32], 3.0)],
    "default": [Case(256 * MiB, 100, [1, 10, 30, 100], 5.0)],
    # The growth law: N up to 1000 at 64 MiB, fewer servers as S grows (measured under
    # TCG on 2 vCPUs: 30-100 ms to fork and warm up a server, 30-70 µs per fault).
    "sweep": [
        Case(64 * MiB, 1000, [1, 10, 100, 300, 1000], 5.0),
        Case(256 * MiB, 300, [1, 10, 100, 300], 5.0),
        Case(1 * GiB, 300, [1, 10, 100, 300], 5.0),
    ],
}


def add_case_options(p: argparse.ArgumentParser) -> None:
    """The options bench/run-sga and bench/sga-guest share: one case of one's own (see
    resolve()), and the backends."""
    p.add_argument("--servers", type=int, help="one case: N servers (with --size)")
    p.add_argument("--size", type=parse_size,
                   help="one case: SGA size such as 128M (with --servers)")
    p.add_argument("--duration", type=float, default=5.0, help="workload seconds (one case)")
    p.add_argument("--backends", type=lambda s: [b for b in s.split(",") if b],
                   default=",".join(BACKENDS))


def resolve(p: argparse.ArgumentParser, args: argparse.Namespace,
            plan: str) -> tuple[str, list[Case]]:
    """The plan's name and cases; "custom" and the one case of --servers and --size (a
    milestone at 1 and at N) when they are given."""
    if (args.servers is None) != (args.size is None):
        p.error("--servers and --size go together")
    if args.servers is None:
        return plan, PLANS[plan]
    return "custom", [Case(args.size, args.servers, sorted({1, args.servers}), args.duration)]


# Repetitions when --repeat does not say: the throughput goals are ratio goals, which
# mshare_lab.stats judges only on 10 paired repetitions or more.  The quick plan (the
# demo) and the sweep (the growth law: page-table counts, exact in one run; hours per
# repetition under TCG) keep 3 and report their ratio goals as inconclusive.
def default_repeat(plan: str) -> int:
    return 3 if plan in ("quick", "sweep") else 10


def plan_json(name: str, cases: list[Case], backends: list[str], repeat: int) -> dict[str, Any]:
    """What a run of the plan is, as its document records it (and a resume compares)."""
    return {"plan_name": name, "plan": [asdict(c) for c in cases], "backends": backends,
            "repeat": repeat}


def guest_memory(cases: list[Case]) -> str:
    """Guest RAM for a plan: the servers' own memory, the SGA, its page tables, slack."""
    # Per server: its private heap and the worst case of its SGA tables.
    need = max((2 * GiB + c.servers * (4 * MiB + c.size // 512) + 2 * c.size for c in cases),
               default=0)
    return f"{max(4, -(-need // GiB))}G"
