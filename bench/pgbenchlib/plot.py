"""The PNG: segment page tables, faults per backend and select-only tps against N."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .report import CONFIGS, Row, one_copy_kib, rows

__all__ = ["plot"]

_STYLE = {"msharefs": ("tab:green", "o"), "stock": ("tab:red", "s"),
          "huge": ("tab:blue", "D")}


def plot(doc: dict[str, Any], path: str) -> bool:
    """Draw the plot; False (and nothing written) if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")  # no display, in CI or the guest
    import matplotlib.pyplot as plt

    rs = [r for r in rows(doc) if not r.skipped]
    if not any(r.segment_kib is not None for r in rs):
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    panels: list[tuple[str, Callable[[Row], float | None]]] = [
        ("segment page tables (kB, log)", lambda r: r.segment_kib),
        ("touch-pass faults per backend (log)", lambda r: r.faults),
        ("select-only tps (median)", lambda r: r.tps.median if r.tps else None),
    ]
    for ax, (label, value) in zip(axes, panels, strict=True):
        for config in CONFIGS:
            pts = [(r.clients, v) for r in rs if r.config == config
                   if (v := value(r)) is not None]
            if not pts:
                continue
            color, marker = _STYLE[config]
            # Log axes draw zero at 0.1, so a flat zero line stays visible.
            ys = [max(float(v), 0.1) for _, v in pts] if "log" in label else \
                [float(v) for _, v in pts]
            ax.plot([n for n, _ in pts], ys, marker=marker, color=color, label=config)
        ax.set_xscale("log")
        if "log" in label:
            ax.set_yscale("log")
        ticks = sorted({r.clients for r in rs})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("sessions / clients (N)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    seg = int(doc["setup"]["segment_mb"]) << 20
    axes[0].axhline(one_copy_kib(seg), color="gray", ls="--", lw=0.8)
    axes[0].annotate("one copy", (ticks[0], one_copy_kib(seg)), fontsize=8, color="gray")
    s = doc["system"]
    fig.suptitle(f"PostgreSQL 15, shared_buffers {doc['plan']['shared_buffers_mb']} MB: "
                 f"stock, huge pages, msharefs ({s['accelerator']}, kernel {s['kernel']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
