"""One fuzzing worker: a forked process that throws random calls at its views."""

from __future__ import annotations

import json
import os
import random
import traceback

from mshare_lab import kapi

from . import ops
from .state import RW, Finding, View, Worker


def run(w: Worker, seed: int, n_ops: int, numa: bool, report_fd: int) -> None:
    """Runs in the forked worker; reports JSON on report_fd and never returns."""
    status = 0
    try:
        rng = random.Random(seed)
        table = dict(ops.ATTACHED)
        if not numa:
            del table["mbind"]
        names = sorted(table)
        for v in w.views:  # start from the coordinator's view, or a fresh read-only one
            if rng.random() < 0.3:
                v.detach()
                v.attach(RW if rng.random() < 0.5 else kapi.PROT_READ)
        for _ in range(n_ops):
            v = rng.choice(w.views)
            if v.prot is None:
                name = rng.choice(sorted(ops.DETACHED))
                op = ops.DETACHED[name]
            else:
                name = rng.choice(names)
                op = table[name]
            w.counts[name] += 1
            try:
                op(w, v, rng)
            except Finding as e:
                w.findings.append(f"worker {w.wid} op {name}: {e}")
            except OSError as e:
                w.findings.append(f"worker {w.wid} op {name}: unexpected {e!r}")
        for v in w.views:
            if v.prot is not None:
                ops.check_slots(w, v, rng)
    except Finding as e:
        w.findings.append(f"worker {w.wid} final check: {e}")
    except BaseException:  # noqa: BLE001 - reported to the coordinator
        w.findings.append(f"worker {w.wid} crashed: {traceback.format_exc()}")
        status = 1
    report = {"counts": dict(w.counts), "findings": w.findings,
              "shadow": [[r, off, val] for (r, off), val in w.shadow.items()]}
    try:
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(report_fd, data):]
    finally:
        os._exit(status)


def new_worker(wid: int, batch: int, coordinator: int, views: list[View]) -> Worker:
    return Worker(wid, batch, coordinator,
                  [View(v.index, v.path, v.start, v.size, v.prot) for v in views])
