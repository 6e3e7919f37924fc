"""Plain-text tables: columns sized to their contents, numbers right-aligned."""

from __future__ import annotations

__all__ = ["render"]


def _numeric(cell: str) -> bool:
    stripped = cell.replace(",", "").replace(".", "").replace("x", "").replace("-", "")
    return stripped.strip().isdigit()


def render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = []
        for cell, w in zip(cells, widths, strict=True):
            out.append(cell.rjust(w) if _numeric(cell) else cell.ljust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
