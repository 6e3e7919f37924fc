"""Stock PostgreSQL on our kernel against the same tree built without CONFIG_MSHARE.

What the series costs PostgreSQL when nothing uses it.  The two kernels cannot share a
boot, so each boot runs one repetition of the plan's stock runs on one kernel, and the
boots alternate (our kernel first in even pairs, the other first in odd ones); pair i
is boots 2i and 2i+1.  :func:`merge` makes one pgbench document of them, the second
kernel's runs as configuration ``stock-nomshare`` and each pair as one repetition, so the
report's tables and its paired decision rule read it like any other run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["KERNELS", "NOMSHARE", "Boot", "Saved", "boot_plan", "merge", "run_pairs"]

Doc = dict[str, Any]
NOMSHARE = "stock-nomshare"
KERNELS = ("mshare", "nomshare")  # CONFIG_MSHARE=y (our kernel), =n (the same tree)
# One boot: (kernel, where its document goes, a saved unfinished document to continue or
# None) -> (status, its document or None).
Boot = Callable[[str, Path, Doc | None], tuple[int, Doc | None]]
# A boot's saved document, if it is one of this comparison's: (kernel, path) -> it or None.
Saved = Callable[[str, Path], Doc | None]


def boot_plan(pairs: int) -> list[tuple[int, str]]:
    """(pair, kernel) in boot order, balanced: each kernel first in half the pairs."""
    order = []
    for i in range(pairs):
        first, second = KERNELS if i % 2 == 0 else KERNELS[::-1]
        order += [(i, first), (i, second)]
    return order


def merge(boots: list[tuple[int, str, Doc]]) -> Doc:
    """One document of finished boots ((pair, kernel, its document)): the runs of the
    mshare kernel as ``stock``, the other's as ``stock-nomshare``, rep = pair.  System,
    setup and plan from the first boot; every boot's provenance under ``boots``, and
    every boot's raw files."""
    if not boots:
        raise ValueError("no boot finished: nothing to merge")
    first = boots[0][2]
    doc: Doc = {k: copy.deepcopy(v) for k, v in first.items()
                if k in ("schema", "system", "python", "postgres", "setup", "thp_shmem")}
    doc["plan"] = {**first["plan"], "configs": ["stock", NOMSHARE],
                   "reps": len({pair for pair, _, _ in boots})}
    doc["comparison"] = ("one repetition per boot, boots alternating between CONFIG_MSHARE=y "
                         "and the same tree with CONFIG_MSHARE=n")
    doc["boots"] = [{"pair": pair, "kernel": kernel, "provenance": d.get("provenance"),
                     "started": d.get("started"), "elapsed_s": d.get("elapsed_s")}
                    for pair, kernel, d in boots]
    doc["provenance"] = first.get("provenance")
    doc["raw_files"] = [rec for _, _, d in boots for rec in d.get("raw_files", [])]
    runs = []
    for pair, kernel, d in boots:
        for r in d["runs"]:
            if r.get("config") != "stock":
                continue
            runs.append({**r, "rep": pair,
                         "config": "stock" if kernel == "mshare" else NOMSHARE})
    doc["runs"] = runs
    return doc


def run_pairs(pairs: int, directory: Path, boot: Boot, saved: Saved,
              log: Callable[[str], None]) -> tuple[int, list[tuple[int, str, Doc]]]:
    """Every boot of :func:`boot_plan`, each document at ``directory``/pair-I-KERNEL.json:
    one that ``saved`` accepts (this plan, kernel and revision) and that finished is not
    run again, one it accepts unfinished is continued, any other is run anew.  The first
    failing status (0 if none) and the finished boots, in boot order."""
    directory.mkdir(parents=True, exist_ok=True)
    worst, done = 0, []
    for pair, kernel in boot_plan(pairs):
        path = directory / f"pair-{pair:02d}-{kernel}.json"
        doc = saved(kernel, path)
        if doc is None or not doc.get("finished"):
            log(f"pair {pair}, CONFIG_MSHARE={'y' if kernel == 'mshare' else 'n'}: boot")
            status, doc = boot(kernel, path, doc)
            worst = worst or status
        if doc is not None and doc.get("finished"):
            done.append((pair, kernel, doc))
    return worst, done
