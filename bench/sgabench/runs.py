"""Reading a benchmark document: runs grouped by case and backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from examples.sga.result import RunResult

from .plans import Case

__all__ = ["CaseRuns", "cases_of"]

Doc = dict[str, Any]


@dataclass
class CaseRuns:
    case: Case
    runs: dict[str, RunResult]  # by backend, in the order they ran

    @property
    def baseline(self) -> RunResult | None:
        """The run the ratios compare with: mshare if it ran, else None."""
        r = self.runs.get("mshare")
        return r if r is not None and not r.skipped else None


def cases_of(doc: Doc) -> list[CaseRuns]:
    out = [CaseRuns(Case(**c), {}) for c in doc["plan"]]
    for run in doc["runs"]:
        out[run["case"]].runs[run["backend"]] = RunResult.from_json(run)
    return out
