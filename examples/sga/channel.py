"""Messages between the instance and its servers over pipes.

Control: one pipe per server, instance -> server, one text line per command.
Reports: one pipe shared by all servers, server -> instance, one JSON line per message.
Every report is far below PIPE_BUF (4096 bytes), so writes from different servers
never interleave.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ChannelError", "LineReader", "Reports", "send_line", "send_report"]

Message = dict[str, Any]


class ChannelError(RuntimeError):
    """A server went away or stopped answering."""


def send_line(fd: int, line: str) -> None:
    data = (line + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def send_report(fd: int, message: Message) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    if len(data) > select.PIPE_BUF:
        raise ValueError(f"report of {len(data)} bytes would not be written atomically")
    os.write(fd, data)


class LineReader:
    """Blocking line reads from a pipe; "" at end of file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""

    def readline(self) -> str:
        while b"\n" not in self._buf:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return ""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()


class Reports:
    """The instance's end of the report pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""
        self._pending: list[Message] = []

    def _fill(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise ChannelError("every server closed its report pipe")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        self._pending.extend(json.loads(line) for line in lines if line)
        return True

    def recv(self, *, stall: float, check: Callable[[], None]) -> Message:
        """The next message.  ``check`` runs every second of silence (it raises if a
        server died); after ``stall`` seconds without any message, ChannelError."""
        last = time.monotonic()
        while not self._pending:
            if self._fill(1.0):
                last = time.monotonic()
                continue
            check()
            if time.monotonic() - last > stall:
                raise ChannelError(f"no report from any server for {stall:.0f} s")
        return self._pending.pop(0)
