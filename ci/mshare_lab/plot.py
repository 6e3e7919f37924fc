"""The one plot helper the benches draw with: a row of panels against N, saved as a PNG.

A measured quantity with repetitions is drawn as its median with the spread (lowest to
highest) as a band behind it; a linear y axis starts at zero, so a difference is never
magnified by where the axis happens to begin.  matplotlib is imported only when a plot
is drawn (it is the bench extra, not a dependency of the rest).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["against_n", "line", "panels"]


@contextmanager
def panels(path: str, count: int, size: tuple[float, float], title: str) -> Iterator[list[Axes]]:
    """count axes side by side; the figure is written to path when the block ends."""
    import matplotlib

    matplotlib.use("Agg")  # no display, in CI or the guest
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, count, figsize=size, squeeze=False)
    try:
        yield list(axes[0])
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def line(ax: Axes, xs: Sequence[float], ys: Sequence[float], style: tuple[str, str],
         label: str, spread: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
    """One series (style: color, marker); spread (lows, highs) as a band behind it."""
    color, marker = style
    ax.plot(xs, ys, marker=marker, color=color, label=label)
    if spread is not None:
        ax.fill_between(xs, spread[0], spread[1], color=color, alpha=0.15, linewidth=0)


def against_n(ax: Axes, ticks: Sequence[int], xlabel: str, ylabel: str, *,
              log_y: bool) -> None:
    """Finish a panel drawn against N: log N with a tick at each N measured; y on a log
    scale or linear from zero; grid and legend."""
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
