"""Reading a benchmark document: runs grouped by case and backend, with repetitions.

bench/run-sga runs every case `repeat` times, each time every backend once, the order
rotated by one backend per repetition (interleaved: a slow spell of the shared host falls
on every backend alike, not on whichever ran then). A backend's throughput is reported as
the median of its repetitions with their spread (lowest to highest); the tables of
memory and faults show the repetition whose throughput is that median.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from examples.sga.result import RunResult
from mshare_lab.stats import Spread, spread

from .plans import Case

__all__ = ["CaseRuns", "Spread", "cases_of", "spread"]

Doc = dict[str, Any]


def _median_run(runs: list[RunResult]) -> RunResult:
    measured = [r for r in runs if not r.skipped]
    if not measured:
        return runs[0]
    ranked = sorted(measured, key=lambda r: r.throughput)
    return ranked[(len(ranked) - 1) // 2]


@dataclass
class CaseRuns:
    case: Case
    runs: dict[str, RunResult]  # by backend, in the order they first ran: the median run
    reps: dict[str, list[RunResult]] = field(default_factory=dict)  # every repetition

    @property
    def baseline(self) -> RunResult | None:
        """The run the ratios compare with: mshare if it ran, else None."""
        r = self.runs.get("mshare")
        return r if r is not None and not r.skipped else None

    def throughput(self, backend: str) -> Spread | None:
        return spread([r.throughput for r in self.reps.get(backend, []) if not r.skipped])

    def touch_kth_s(self, backend: str) -> Spread | None:
        """The last attacher's touch time, over the repetitions."""
        return spread([r.touch_s[r.kth() - 1] for r in self.reps.get(backend, [])
                       if not r.skipped and r.touch_s])


def cases_of(doc: Doc) -> list[CaseRuns]:
    out = [CaseRuns(Case(**c), {}) for c in doc["plan"]]
    for run in doc["runs"]:
        out[run["case"]].reps.setdefault(run["backend"], []).append(RunResult.from_json(run))
    for cr in out:
        cr.runs = {name: _median_run(runs) for name, runs in cr.reps.items()}
    return out
