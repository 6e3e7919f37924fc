"""The PNG: PageTables rise against attached servers, one line per backend and size."""

from __future__ import annotations

from typing import Any

from libmshare import format_size

from .runs import cases_of

__all__ = ["plot"]

_STYLE = {"mshare": ("tab:green", "o"), "shm": ("tab:red", "s"),
          "fork": ("tab:orange", "^"), "hugetlb": ("tab:blue", "D")}


def plot(doc: dict[str, Any], path: str) -> bool:
    """Draw the plot; False (and nothing written) if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")  # no display, in CI or the guest
    import matplotlib.pyplot as plt

    cases = [cr for cr in cases_of(doc) if any(r.milestones for r in cr.runs.values())]
    if not cases:
        return False
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.5), squeeze=False)
    for ax, cr in zip(axes[0], cases, strict=True):
        for name, r in cr.runs.items():
            if r.skipped or not r.milestones:
                continue
            color, marker = _STYLE.get(name, ("gray", "x"))
            xs = [m.attached for m in r.milestones]
            # Log axes show a per-attacher cost as a slope of 1; zero is drawn at 1 KiB.
            ys = [max(m.pt_rise_kib, 1) / 1024 for m in r.milestones]
            ax.plot(xs, ys, marker=marker, color=color, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({m.attached for r in cr.runs.values() for m in r.milestones})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("servers attached (N)")
        ax.set_ylabel("PageTables rise (MiB, log; 0 drawn at 1 KiB)")
        ax.set_title(f"SGA {format_size(cr.case.size)}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    s = doc["system"]
    fig.suptitle(f"Page tables for a shared SGA ({doc.get('accelerator', '')}, "
                 f"kernel {s['kernel']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
