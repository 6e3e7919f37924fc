"""Fork a child and talk to it: the one process helper of the guest suite, the fuzzer and
the benches.

``Child`` runs a function in a forked child and brings back its (pickled) value or its
exception; ``Gate`` and ``Counter`` synchronise a parent with many children over a pipe.
Every timeout is stretched by LIBMSHARE_TIME_SCALE (KASAN under TCG runs slower).
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import env

NOBODY = 65534


def scaled(seconds: float) -> float:
    """A watchdog limit stretched by LIBMSHARE_TIME_SCALE (selftests/run --time-scale), for
    kernels that run everything several times slower (KASAN under TCG)."""
    return seconds * env.time_scale()


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()



class ChildError(AssertionError):
    """The child function raised; its traceback is the message."""

    def __init__(self, msg: str, err: int | None) -> None:
        super().__init__(msg)
        self.errno = err


class ChildKilled(AssertionError):
    def __init__(self, sig: int) -> None:
        super().__init__(f"child killed by signal {signal.Signals(sig).name}")
        self.signal = sig


def drop_privileges(uid: int = NOBODY, gid: int = NOBODY, groups: tuple[int, ...] = ()) -> None:
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)


def _child_main(fn: Callable[..., Any], args: tuple[Any, ...], w: int,
                uid: int | None, gid: int | None) -> None:
    """Runs in the forked child; never returns."""
    try:
        signal.alarm(0)
        faulthandler.disable()  # a deliberate SIGSEGV must not print a Python traceback
        if uid is not None:
            drop_privileges(uid, NOBODY if gid is None else gid)
        res: tuple[Any, ...] = ("ok", fn(*args))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        res = ("err", f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
               getattr(e, "errno", None))
    try:
        data = pickle.dumps(res)
    except Exception as e:  # noqa: BLE001
        data = pickle.dumps(("err", f"unpicklable child result: {e}", None))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
    finally:
        os._exit(0)


def _read_all(fd: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("child did not finish in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class Child:
    """A forked child running fn(*args); result() returns its value or raises."""

    def __init__(self, fn: Callable[..., Any], *args: Any, uid: int | None = None,
                 gid: int | None = None) -> None:
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            _child_main(fn, args, w, uid, gid)
        os.close(w)
        self._r = r
        self.status: int | None = None

    def wait_status(self, timeout: float = 120.0) -> tuple[bytes, int]:
        deadline = time.monotonic() + scaled(timeout)
        try:
            data = _read_all(self._r, deadline)
        except TimeoutError:
            self.kill()
            raise
        finally:
            os.close(self._r)
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                return data, status
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"child {self.pid} did not exit")
            time.sleep(0.002)

    def result(self, timeout: float = 120.0) -> Any:
        data, status = self.wait_status(timeout)
        if os.WIFSIGNALED(status):
            raise ChildKilled(os.WTERMSIG(status))
        kind, *rest = pickle.loads(data)
        if kind == "err":
            raise ChildError(rest[0], rest[1])
        return rest[0]

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def in_child(fn: Callable[..., Any], *args: Any, uid: int | None = None,
             gid: int | None = None, timeout: float = 120.0) -> Any:
    """Run fn(*args) in a forked child and return its (pickled) result."""
    return Child(fn, *args, uid=uid, gid=gid).result(timeout)


def death_signal(fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> int | None:
    """The signal that killed a child running fn(*args), or None if it exited."""
    child = Child(fn, *args)
    _, status = child.wait_status(timeout)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def close_quietly(*fds: int) -> None:
    """Close each fd; one that is closed already (a second close()) is no error."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Gate:
    """A one-shot barrier over a pipe: children block in wait() until the parent opens it."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until open(); nobody reads the byte, so it stays readable for everyone."""
        ready, _, _ = select.select([self.r], [], [], scaled(timeout))
        if not ready:
            raise TimeoutError("gate never opened")

    def is_open(self) -> bool:
        ready, _, _ = select.select([self.r], [], [], 0)
        return bool(ready)

    def open(self) -> None:
        os.write(self.w, b"g")  # level-triggered: wakes every waiter at once

    def close(self) -> None:
        close_quietly(self.r, self.w)


class Counter:
    """Children each post a byte; the parent waits for n of them."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.got = 0

    def post(self) -> None:
        os.write(self.w, b".")

    def wait_for(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + scaled(timeout)
        while self.got < n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.r], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"only {self.got} of {n} children reported")
            self.got += len(os.read(self.r, n - self.got))

    def close(self) -> None:
        close_quietly(self.r, self.w)
