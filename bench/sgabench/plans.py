"""What a benchmark run measures: cases of (SGA size, servers, milestones, duration).

Under TCG a page fault costs about 200 µs, and a non-shared backend pays S/64 KiB faults
per attacher (read faults map 16 pages at a time), so the cost of a case grows as N x S.
The sweep keeps N x S within what finishes in well under an hour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BACKENDS", "PLANS", "Case", "custom_case", "default_repeat", "guest_memory", "plan_json"]

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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SWEEP_N = [1, 10, 100, 300, 1000]

PLANS: dict[str, list[Case]] = {
    # The README's demo size: a few minutes under TCG for all four backends.
    "quick": [Case(64 * MiB, 32, [1, 2, 4, 8, 16, 32], 3.0)],
    "default": [Case(256 * MiB, 100, [1, 10, 30, 100], 5.0)],
    # The growth law: N up to 1000 at 64 MiB, fewer servers as S grows (measured under
    # TCG on 2 vCPUs: 30-100 ms to fork and warm up a server, 30-70 µs per fault).
    "sweep": [
        Case(64 * MiB, 1000, SWEEP_N, 5.0),
        Case(256 * MiB, 300, [1, 10, 100, 300], 5.0),
        Case(1 * GiB, 300, [1, 10, 100, 300], 5.0),
    ],
}


def custom_case(size: int, servers: int, duration: float) -> Case:
    """The one case of --servers and --size (a milestone at 1 and at N)."""
    return Case(size, servers, sorted({1, servers}), duration)


# Repetitions when --repeat does not say: the throughput goals are ratio goals, which
# mshare_lab.stats judges only on 10 paired repetitions or more.  The quick plan (the
# demo) and the sweep (the growth law: page-table counts, exact in one run; hours per
# repetition under TCG) keep 3 and report their ratio goals as inconclusive.
_REPEAT = {"quick": 3, "sweep": 3}
FULL_REPEAT = 10


def default_repeat(plan: str) -> int:
    return _REPEAT.get(plan, FULL_REPEAT)


def plan_json(name: str, cases: list[Case], backends: list[str], repeat: int) -> dict[str, Any]:
    """What a run of the plan is, as its document records it (and a resume compares)."""
    return {"plan_name": name, "plan": [c.to_json() for c in cases], "backends": backends,
            "repeat": repeat}


def guest_memory(cases: list[Case]) -> str:
    """Guest RAM for a plan: the servers' own memory, the SGA, its page tables, slack."""
    need = 0
    for c in cases:
        per_server = 4 * MiB + c.size // 512  # private heap + worst-case SGA tables
        need = max(need, 2 * GiB + c.servers * per_server + 2 * c.size)
    return f"{max(4, -(-need // GiB))}G"
