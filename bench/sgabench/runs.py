"""Reading a benchmark document: runs grouped by case and backend, with repetitions
(interleaved: see guest.run_plan).  A backend's throughput is the median of its
repetitions with their range; the tables of memory and faults show the repetition whose
throughput is that median."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from examples.sga.result import RunResult
from mshare_lab.stats import Spread, spread

from .plans import Case

__all__ = ["CaseRuns", "Spread", "cases_of", "spread", "touch_kth"]

Doc = dict[str, Any]


def touch_kth(r: RunResult) -> float:
    """How long the last attacher took to touch the SGA."""
    return r.touch_s[r.kth() - 1]


def _median_run(runs: list[RunResult]) -> RunResult:
    ranked = sorted((r for r in runs if not r.skipped), key=lambda r: r.throughput)
    return ranked[(len(ranked) - 1) // 2] if ranked else runs[0]


@dataclass
class CaseRuns:
    case: Case
    # By backend, in the order they first ran: the median run; every repetition, as read
    # and as saved (with what RunResult does not hold: counters, host load); by rep.
    runs: dict[str, RunResult] = field(default_factory=dict)
    reps: dict[str, list[RunResult]] = field(default_factory=dict)
    saved: dict[str, list[Doc]] = field(default_factory=dict)
    by_rep: dict[str, dict[int, RunResult]] = field(default_factory=dict)

    def throughput(self, backend: str) -> Spread | None:
        return spread([r.throughput for r in self.reps.get(backend, []) if not r.skipped])

    def touch_kth_s(self, backend: str) -> Spread | None:
        """The last attacher's touch time, over the repetitions."""
        return spread([touch_kth(r) for r in self.reps.get(backend, [])
                       if not r.skipped and r.touch_s])

    def paired(self, new: str, base: str,
               value: Callable[[RunResult], float]) -> tuple[list[float], list[float]]:
        """Two backends' values, paired by repetition (each repetition ran every backend
        once), where both measured a positive value: the input of a ratio goal."""
        a, b = self.by_rep.get(new, {}), self.by_rep.get(base, {})
        pairs = [(value(a[i]), value(b[i])) for i in sorted(a.keys() & b.keys())
                 if not a[i].skipped and not b[i].skipped]
        pairs = [(x, y) for x, y in pairs if x > 0 and y > 0]
        return [x for x, _ in pairs], [y for _, y in pairs]


def cases_of(doc: Doc) -> list[CaseRuns]:
    out = [CaseRuns(Case(**c)) for c in doc["plan"]]
    for run in doc["runs"]:
        cr, result = out[run["case"]], RunResult.from_json(run)
        runs = cr.reps.setdefault(run["backend"], [])
        runs.append(result)
        cr.saved.setdefault(run["backend"], []).append(run)
        # Documents from before "rep" was recorded ran each backend once per repetition.
        cr.by_rep.setdefault(run["backend"], {})[run.get("rep", len(runs) - 1)] = result
    for cr in out:
        cr.runs = {name: _median_run(runs) for name, runs in cr.reps.items()}
    return out
