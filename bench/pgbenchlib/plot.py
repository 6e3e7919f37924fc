"""The PNG: segment page tables, faults per backend, select-only tps and (plans
with one) the connection storm's time, against N."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mshare_lab import plot as lab_plot
from mshare_lab.stats import Spread

from .kernels import NOMSHARE
from .plans import CONFIGS
from .report import Row, one_copy_kib, rows

__all__ = ["plot"]

_STYLE = {"msharefs": ("tab:green", "o"), "stock": ("tab:red", "s"),
          "huge": ("tab:blue", "D"), "msharefs-huge": ("tab:purple", "v"),
          NOMSHARE: ("tab:orange", "x")}


def _exact(v: float | None) -> Spread | None:
    """A count as a spread of one (drawn without a band)."""
    return None if v is None else Spread(float(v), float(v), float(v), 1)


def plot(doc: dict[str, Any], path: str) -> bool:
    """Draw the plot; False (and nothing written) if there is nothing to draw."""
    rs = [r for r in rows(doc) if not r.skipped]
    if not any(r.segment_kib is not None for r in rs):
        return False
    panels: list[tuple[str, Callable[[Row], Spread | None], bool]] = [
        ("segment page tables (kB, log)", lambda r: _exact(r.segment_kib), True),
        ("touch-pass faults per backend (log)", lambda r: _exact(r.faults), True),
        ("select-only tps (median, band: range)", lambda r: r.tps, False),
    ]
    if any(r.storm_s for r in rs):
        panels.append(("storm: s until all N answered (median, band: range)",
                       lambda r: r.storm_s, False))
    ticks = sorted({r.clients for r in rs})
    s = doc["system"]
    title = (f"PostgreSQL 15, shared_buffers {doc['plan']['shared_buffers_mb']} MB: "
             f"{', '.join(doc['plan'].get('configs', CONFIGS))} ({s['accelerator']}, "
             f"kernel {s['kernel']})")
    with lab_plot.panels(path, len(panels), (5.4 * len(panels), 4.8), title) as axes:
        for ax, (label, value, log_y) in zip(axes, panels, strict=True):
            for config, style in _STYLE.items():
                pts = [(r.clients, v) for r in rs if r.config == config
                       if (v := value(r)) is not None]
                if not pts:
                    continue
                xs = [n for n, _ in pts]
                if log_y:  # log axes draw zero at 0.1, so a flat zero line stays visible
                    lab_plot.line(ax, xs, [max(v.median, 0.1) for _, v in pts],
                                  style, config)
                else:
                    lab_plot.line(ax, xs, [v.median for _, v in pts], style, config,
                                  ([v.low for _, v in pts], [v.high for _, v in pts]))
            lab_plot.against_n(ax, ticks, "sessions / clients (N)", label, log_y=log_y)
        seg = int(doc["setup"]["segment_mb"]) << 20
        axes[0].axhline(one_copy_kib(seg), color="gray", ls="--", lw=0.8)
        axes[0].annotate("one copy", (ticks[0], one_copy_kib(seg)), fontsize=8, color="gray")
    return True
