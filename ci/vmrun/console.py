"""Separating the kernel's console from the guest command's stderr.

vng --verbose sends the kernel console to the same stderr as the command's own stderr.
We want the console (it is the only record of a panic, when no dmesg comes back) without
burying the command's output in boot messages, so console lines, which all start with a
printk timestamp (CONFIG_PRINTK_TIME), go to a file and everything else passes through.
"""
from __future__ import annotations

import re
from typing import BinaryIO

_KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d+\] ")


class ConsoleSplitter:
    """A byte sink: whole lines are routed to `console` or `other` (line-buffered)."""

    def __init__(self, console: BinaryIO, other: list[BinaryIO]) -> None:
        self.console = console
        self.other = other
        self._partial = b""

    def write(self, chunk: bytes) -> int:
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._route(line + b"\n")
        return len(chunk)

    def _route(self, line: bytes) -> None:
        # The serial console ends lines with \r\n; dropping the \r keeps the log clean.
        if _KERNEL_LINE.match(line):
            self.console.write(line.replace(b"\r\n", b"\n"))
        else:
            for sink in self.other:
                sink.write(line)

    def flush(self) -> None:
        # Only the sinks: a partial line waits for its end, or a console line split
        # across two reads would be routed half and half.
        self.console.flush()
        for sink in self.other:
            sink.flush()

    def close(self) -> None:
        if self._partial:
            self._route(self._partial)
            self._partial = b""
        self.flush()
