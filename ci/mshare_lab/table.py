"""The one table printer: plain text (columns sized to their contents, numbers
right-aligned) for terminals and reports, Markdown for result files."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown", "ratio", "text"]


def _numeric(cell: str) -> bool:
    stripped = cell.replace(",", "").replace(".", "").replace("x", "").replace("-", "")
    return stripped.strip().isdigit()


def text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, w in zip(cells, widths, strict=True):
            out.append(cell.rjust(w) if _numeric(cell) else cell.ljust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter a column, "r" for right-aligned (the
    rest, and columns past its end, are left-aligned)."""
    rule = ["--:" if align[i:i + 1] == "r" else "---" for i in range(len(header))]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|",
                      *("| " + " | ".join(r) + " |" for r in rows)])


def ratio(value: float | None, base: float | None) -> str:
    """A ratio column's cell: value over base as "2.5x"; "n/a" where either is missing
    (or both are zero), "inf" over a zero base."""
    if value is None or base is None:
        return "n/a"
    if base <= 0:
        return "inf" if value > 0 else "n/a"
    return f"{value / base:.1f}x"
