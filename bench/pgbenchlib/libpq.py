"""A minimal libpq client over ctypes: many sessions from one process, queries in parallel.

Only what the benchmark and the tests need: connect, run a query on every session at
once (PQsendQuery on all, then collect the results), the backend's pid.  libpq5 comes
with postgresql-client-15, so nothing is installed for Python.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import select
import time
from collections.abc import Sequence
from typing import Self

__all__ = ["PgError", "Session", "connect_all", "query_all"]

CONNECTION_OK = 0
POLLING_FAILED, POLLING_READING, POLLING_WRITING, POLLING_OK = 0, 1, 2, 3
PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2


@functools.cache
def _libpq() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for fn, res, args in [
        ("PQconnectdb", vp, [cp]), ("PQstatus", i, [vp]), ("PQerrorMessage", cp, [vp]),
        ("PQfinish", None, [vp]), ("PQbackendPID", i, [vp]), ("PQexec", vp, [vp, cp]),
        ("PQresultStatus", i, [vp]), ("PQresultErrorMessage", cp, [vp]),
        ("PQntuples", i, [vp]), ("PQnfields", i, [vp]), ("PQgetvalue", cp, [vp, i, i]),
        ("PQgetisnull", i, [vp, i, i]), ("PQclear", None, [vp]),
        ("PQsendQuery", i, [vp, cp]), ("PQgetResult", vp, [vp]),
        ("PQconsumeInput", i, [vp]), ("PQisBusy", i, [vp]), ("PQsocket", i, [vp]),
        ("PQconnectStart", vp, [cp]), ("PQconnectPoll", i, [vp]),
    ]:
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    return lib


class PgError(RuntimeError):
    pass


Rows = list[tuple[str | None, ...]]


class Session:
    """One connection (one backend process on the server)."""

    def __init__(self, conninfo: str, *, conn: int | None = None) -> None:
        """Connect (blocking), or adopt ``conn``, a connection made by connect_all()."""
        self._lib = _libpq()
        self._conn: int | None = conn if conn else self._lib.PQconnectdb(conninfo.encode())
        if not self._conn or self._lib.PQstatus(self._conn) != CONNECTION_OK:
            msg = self._error()
            self.close()
            raise PgError(f"connect ({conninfo}): {msg}")
        self.pid: int = self._lib.PQbackendPID(self._conn)

    def _error(self) -> str:
        if not self._conn:
            return "out of memory"
        raw: bytes = self._lib.PQerrorMessage(self._conn) or b""
        return raw.decode(errors="replace").strip()

    def _check(self, res: int | None, sql: str) -> Rows:
        if not res:
            raise PgError(f"{sql}: {self._error()}")
        try:
            st = self._lib.PQresultStatus(res)
            if st not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                msg = (self._lib.PQresultErrorMessage(res) or b"").decode(errors="replace")
                raise PgError(f"{sql}: {msg.strip()}")
            lib = self._lib
            return [tuple(None if lib.PQgetisnull(res, r, c) else lib.PQgetvalue(res, r, c).decode()
                          for c in range(lib.PQnfields(res))) for r in range(lib.PQntuples(res))]
        finally:
            self._lib.PQclear(res)

    def query(self, sql: str) -> Rows:
        return self._check(self._lib.PQexec(self._conn, sql.encode()), sql)

    def value(self, sql: str) -> str | None:
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def send(self, sql: str) -> None:
        if not self._lib.PQsendQuery(self._conn, sql.encode()):
            raise PgError(f"{sql}: {self._error()}")

    def fileno(self) -> int:
        return int(self._lib.PQsocket(self._conn))

    def ready(self) -> bool:
        """Read what arrived; True once the result can be collected without blocking."""
        if not self._lib.PQconsumeInput(self._conn):
            raise PgError(self._error())
        return not self._lib.PQisBusy(self._conn)

    def collect(self, sql: str) -> Rows:
        """The result of the query sent (the last one, if it was several statements)."""
        rows: Rows = []
        while True:
            res = self._lib.PQgetResult(self._conn)
            if not res:
                return rows
            rows = self._check(res, sql)

    def close(self) -> None:
        if self._conn:
            self._lib.PQfinish(self._conn)
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query_all(sessions: Sequence[Session], sql: str, timeout: float = 3600.0) -> list[Rows]:
    """Run sql on every session at once; the results in session order."""
    for s in sessions:
        s.send(sql)
    waiting = {s.fileno(): s for s in sessions}
    poller = select.poll()  # not select(): more than 1024 descriptors may be open
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(waiting)} sessions still running {sql!r}")
        for fd, _ in poller.poll(min(left, 5.0) * 1000):
            if fd in waiting and waiting[fd].ready():
                del waiting[fd]
                poller.unregister(fd)
    return [s.collect(sql) for s in sessions]


def connect_all(conninfo: str, n: int, timeout: float = 3600.0) -> list[Session]:
    """Open n sessions at once, as n clients arriving together would: every connection
    started without blocking (PQconnectStart), then driven to the end (PQconnectPoll) as
    its socket allows.  PgError (the others closed) if any fails."""
    lib = _libpq()
    conns: list[int] = [lib.PQconnectStart(conninfo.encode()) for _ in range(n)]
    # Each connection's next wait; after PQconnectStart, as after POLLING_WRITING.
    want = dict.fromkeys(range(n), POLLING_WRITING)
    deadline = time.monotonic() + timeout
    try:
        if not all(conns):
            raise PgError(f"connect ({conninfo}): out of memory")
        while want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(want)} of {n} connections still being made")
            # The socket may change while a connection is made: a new poll set each round.
            poller = select.poll()
            by_fd: dict[int, int] = {}
            for i, state in want.items():
                fd = lib.PQsocket(conns[i])
                by_fd[fd] = i
                poller.register(fd, select.POLLIN if state == POLLING_READING
                                else select.POLLOUT)
            for fd, _ in poller.poll(min(left, 5.0) * 1000):
                i = by_fd[fd]
                state = lib.PQconnectPoll(conns[i])
                if state == POLLING_OK:
                    del want[i]
                elif state == POLLING_FAILED:
                    msg = (lib.PQerrorMessage(conns[i]) or b"").decode(errors="replace")
                    raise PgError(f"connect ({conninfo}): {msg.strip()}")
                else:
                    want[i] = state
    except BaseException:
        for c in conns:
            if c:
                lib.PQfinish(c)
        raise
    return [Session(conninfo, conn=c) for c in conns]  # every one POLLING_OK: no failure
