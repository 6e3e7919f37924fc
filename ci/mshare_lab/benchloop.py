"""The guest-side loop every benchmark shares: a balanced order of the things compared,
and the result document saved after every completed cell, so that a boot that dies
keeps what finished and a later boot can resume the same plan where it stopped.

A cell is one measurement of the plan (a repetition of one configuration at one
point: for instance (clients, rep, config)); its run record carries its key as
``"cell"`` and the host's load before and after it as ``"host_load"`` (hostload).
The document's ``"checkpoint"`` holds the run's identity (the plan, the kernel build,
the git revision) and the boots it took.  Resuming keeps every saved run
and skips its cell; it refuses a document whose identity differs, because a plan's
repetitions paired across two kernels or two revisions would judge neither.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from . import hostload, proc

__all__ = ["Cell", "Loop", "ResumeError", "check_resume", "identity", "load", "rotation",
           "save"]

T = TypeVar("T")
Doc = dict[str, Any]
Cell = tuple[int | str, ...]


class ResumeError(ValueError):
    """A saved document that this run may not continue (unreadable, or another run's)."""


def rotation(items: Sequence[T], rep: int) -> list[T]:
    """Repetition rep's order: the list rotated by rep, so that over len(items)
    repetitions every item runs once in every position (a slow spell of a shared host
    falls on every item alike, not on whichever always ran first)."""
    k = rep % len(items) if items else 0
    return [*items[k:], *items[:k]]


def save(doc: Doc, path: str) -> None:
    """Write the document whole or not at all (a rename over the last checkpoint)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def load(path: str) -> Doc:
    """A saved document to resume; ResumeError if there is none to read."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ResumeError(f"cannot resume {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ResumeError(f"cannot resume {path}: not a result document")
    return doc


def identity(plan: Any, record: Doc) -> Doc:
    """What must be the same in every boot of one run: the plan as JSON and, from a
    provenance record (vmrun.provenance), the kernel build and the git revision."""
    k = record.get("kernel") or {}
    return {"plan": plan, "kernel": k.get("key") or k.get("image") or k.get("flavor"),
            "git_revision": record.get("git_revision")}


def check_resume(saved: Doc, want: Doc, source: str) -> None:
    """ResumeError naming every part of the identity that differs."""
    have = (saved.get("checkpoint") or {}).get("identity")
    if have is None:
        raise ResumeError(f"cannot resume {source}: it has no checkpoint (not a bench "
                          "result, or one saved before runs could be resumed)")
    diffs = [f"{key} differs (saved {json.dumps(have.get(key))}, now {json.dumps(value)})"
             for key, value in want.items() if have.get(key) != value]
    if diffs:
        raise ResumeError(f"cannot resume {source}: " + "; ".join(diffs))


class Loop:
    """Run a plan's cells in order, saving the document after each; with ``resume``
    (the saved document) keep its runs and skip their cells."""

    def __init__(self, doc: Doc, out: str, ident: Doc, resume: Doc | None = None,
                 stall_s: float | None = None) -> None:
        if resume is not None:
            check_resume(resume, ident, out)
            doc = resume
        self.doc = doc
        self.out = out
        self._dir = os.path.dirname(os.path.abspath(out))  # where the host writes its load
        os.makedirs(self._dir, exist_ok=True)
        self.done = {tuple(r["cell"]) for r in doc.setdefault("runs", []) if "cell" in r}
        boots = (doc.get("checkpoint") or {}).get("boots", [])
        doc["checkpoint"] = {"identity": ident,
                             "boots": [*boots, time.strftime("%Y-%m-%dT%H:%M:%S%z")]}
        self._elapsed = float(doc.get("elapsed_s", 0.0))  # the earlier boots' share
        self._t0 = time.monotonic()
        # A cell running this long is reported (stall_report), then again every stall_s.
        self.stall_s = stall_s
        save(doc, out)

    @property
    def elapsed(self) -> float:
        """Seconds measuring so far, over every boot of the run."""
        return self._elapsed + time.monotonic() - self._t0

    def run(self, cells: Sequence[Cell], measure: Callable[[Cell], Doc]) -> Doc:
        """measure(cell) for every cell not done yet, each run saved as it completes."""
        for cell in cells:
            if cell in self.done:
                continue
            before = hostload.now(self._dir)
            with self._watchdog(cell):
                r = measure(cell)
            r["cell"] = list(cell)
            r["host_load"] = {"before": before, "after": hostload.now(self._dir)}
            self.doc["runs"].append(r)
            self.done.add(cell)
            self.doc["elapsed_s"] = self.elapsed
            save(self.doc, self.out)
        self.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save(self.doc, self.out)
        return self.doc

    @contextlib.contextmanager
    def _watchdog(self, cell: Cell) -> Iterator[None]:
        if not self.stall_s:
            yield
            return
        done = threading.Event()
        t0, stall_s = time.monotonic(), self.stall_s

        def watch() -> None:
            while not done.wait(stall_s):
                stall_report(cell, time.monotonic() - t0)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def stall_report(cell: Cell, seconds: float) -> None:
    """Where every user task waits, on stderr, and in the kernel's log its blocked tasks
    (sysrq w) and what every CPU runs (sysrq l): what a run that stops making progress
    leaves to explain it (the console reaches the host even if the boot never ends)."""
    lines = proc.task_sites(proc.is_user_task)
    print(f"benchloop: cell {list(cell)} has run {seconds:.0f} s; its tasks:\n"
          + "\n".join(lines), file=sys.stderr, flush=True)
    for key in "wl":
        with contextlib.suppress(OSError), open("/proc/sysrq-trigger", "w") as f:
            f.write(key)
