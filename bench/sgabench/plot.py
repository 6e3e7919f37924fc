"""The PNG: PageTables rise against attached servers, one line per backend and size."""

from __future__ import annotations

from typing import Any

from libmshare import format_size
from mshare_lab import plot as lab_plot

from .runs import cases_of

__all__ = ["plot"]

_STYLE = {"mshare": ("tab:green", "o"), "shm": ("tab:red", "s"),
          "fork": ("tab:orange", "^"), "hugetlb": ("tab:blue", "D"),
          "mshare-huge": ("tab:purple", "v")}


def plot(doc: dict[str, Any], path: str) -> bool:
    """Draw the plot; False (and nothing written) if there is nothing to draw."""
    cases = [cr for cr in cases_of(doc) if any(r.milestones for r in cr.runs.values())]
    if not cases:
        return False
    s = doc["system"]
    title = (f"Page tables for a shared SGA ({doc.get('accelerator', '')}, "
             f"kernel {s['kernel']})")
    with lab_plot.panels(path, len(cases), (5.5 * len(cases), 4.5), title) as axes:
        for ax, cr in zip(axes, cases, strict=True):
            for name, r in cr.runs.items():
                if r.skipped or not r.milestones:
                    continue
                # Log axes show a per-attacher cost as a slope of 1; zero is drawn at 1 KiB.
                lab_plot.line(ax, [m.attached for m in r.milestones],
                              [max(m.pt_rise_kib, 1) / 1024 for m in r.milestones],
                              _STYLE.get(name, ("gray", "x")), name)
            ticks = sorted({m.attached for r in cr.runs.values() for m in r.milestones})
            lab_plot.against_n(ax, ticks, "servers attached (N)",
                               "PageTables rise (MiB, log; 0 drawn at 1 KiB)", log_y=True)
            ax.set_title(f"SGA {format_size(cr.case.size)}")
    return True
