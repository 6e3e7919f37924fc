"""The seed's case, 1500 processes on a 300 GB SGA, computed from measured costs.

For each backend the PageTables rise at the milestones of one case is fitted with
rise(n) = fixed + n * per_process (least squares over the n attached so far).  Both
terms scale with the SGA size, so dividing by S in GiB gives per-GiB costs, and
rise(1500, 300 GiB) = 300 * (fixed + 1500 * per_process) per GiB.  This is arithmetic
on measured numbers, never a measurement: the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from examples.sga.result import RunResult
from mshare_lab.stats import line_fit

__all__ = ["SEED_PROCESSES", "SEED_SGA_GIB", "Fit", "fit", "seed_case_gib"]

SEED_PROCESSES = 1500
SEED_SGA_GIB = 300


@dataclass
class Fit:
    fixed_kib: float        # per GiB of SGA, paid once
    per_process_kib: float  # per GiB of SGA, paid by every attacher


def fit(result: RunResult) -> Fit | None:
    pts = [(float(m.attached), float(m.pt_rise_kib)) for m in result.milestones]
    line = line_fit(pts) if not result.skipped and len(pts) >= 2 else None
    if line is None:
        return None
    gib = result.size / (1 << 30)
    return Fit(line[1] / gib, line[0] / gib)


def seed_case_gib(f: Fit) -> float:
    """PageTables for 1500 processes on 300 GiB, in GiB."""
    kib = SEED_SGA_GIB * (f.fixed_kib + SEED_PROCESSES * f.per_process_kib)
    return max(0.0, kib) / (1 << 20)
