"""Joining the two runs (with the series, CONFIG_MSHARE=y; and CONFIG_MSHARE=n) into one
table, and finding regressions: a case that passes without the series must pass with it."""
from __future__ import annotations

from dataclasses import dataclass

from mshare_lab import table

from .tap import NOT_RUN, PASS, Case, Category


@dataclass(frozen=True)
class Row:
    category: str
    name: str
    with_series: str
    without: str

    @property
    def regression(self) -> bool:
        return self.without == PASS and self.with_series != PASS


def join(with_series: list[Case], without: list[Case]) -> list[Row]:
    """Rows in the order cases ran with the series, then any seen only without it."""
    a = {c.name: c for c in with_series}
    b = {c.name: c for c in without}
    order = [c.name for c in with_series] + [c.name for c in without if c.name not in a]
    rows = []
    for name in order:
        case = a.get(name) or b[name]
        rows.append(Row(case.category, name,
                        a[name].status if name in a else NOT_RUN,
                        b[name].status if name in b else NOT_RUN))
    return rows


def regressions(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.regression]


def counts(rows: list[Row], column: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        status = getattr(r, column)
        out[status] = out.get(status, 0) + 1
    return out


def _fmt_counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))


def render_markdown(rows: list[Row], cats_with: list[Category], cats_without: list[Category],
                    header: str) -> str:
    cases = [[r.category, "`" + r.name.replace("|", "\\|") + "`",
              r.with_series + (" **REGRESSION**" if r.regression else ""), r.without]
             for r in rows]
    lines = [header.rstrip(), "",
             table.markdown(["category", "case", "CONFIG_MSHARE=y (series)", "CONFIG_MSHARE=n"],
                            cases)]
    lines += ["", f"Totals with the series: {_fmt_counts(counts(rows, 'with_series'))}.",
              f"Totals without: {_fmt_counts(counts(rows, 'without'))}.",
              f"Regressions (pass without the series, not with it): {len(regressions(rows))}.",
              ""]
    other = {c.name: c for c in cats_without}
    times = [[c.name, str(c.seconds), str(c.exit_status),
              str(o.seconds) if (o := other.get(c.name)) else "-",
              str(o.exit_status) if o else "-"] for c in cats_with]
    lines.append(table.markdown(["category", "seconds (=y)", "exit (=y)", "seconds (=n)",
                                 "exit (=n)"], times))
    return "\n".join(lines) + "\n"
