"""The TPC-B consistency check after pgbench's read-write runs.

Every pgbench transaction adds the same delta to one account, one teller and one branch
and records it in pgbench_history, atomically; from ``pgbench -i`` (all balances 0, no
history) on, the four sums stay equal whatever crashed in between, and pgbench_history
has one row per committed transaction.
"""

from __future__ import annotations

from .libpq import Session

__all__ = ["ConsistencyError", "check_consistency"]

SQL = """
select (select coalesce(sum(abalance), 0) from pgbench_accounts),
       (select coalesce(sum(tbalance), 0) from pgbench_tellers),
       (select coalesce(sum(bbalance), 0) from pgbench_branches),
       (select coalesce(sum(delta), 0) from pgbench_history),
       (select count(*) from pgbench_history)
"""


class ConsistencyError(AssertionError):
    pass


def check_consistency(s: Session, expect_history: int | None = None) -> dict[str, int]:
    """The sums and the history count; raises ConsistencyError unless they agree (and the
    history has expect_history rows, when given)."""
    row = s.query(SQL)[0]
    got = dict(zip(["accounts", "tellers", "branches", "history", "history_rows"],
                   (int(v or 0) for v in row), strict=True))
    if not got["accounts"] == got["tellers"] == got["branches"] == got["history"]:
        raise ConsistencyError(f"balances disagree with the history: {got}")
    if expect_history is not None and got["history_rows"] != expect_history:
        raise ConsistencyError(f"{got['history_rows']} history rows, expected "
                               f"{expect_history}: {got}")
    return got
