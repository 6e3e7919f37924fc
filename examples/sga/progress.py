"""The progress line on stderr: rewritten in place on a terminal, a few lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressLine"]

_PHASES = {"fork": "forking servers", "ready": "servers warming up",
           "attach": "servers attached", "run": "servers finished"}


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._last_step: dict[str, int] = {}
        self._last_draw = 0.0
        self._dirty = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        text = f"[{self.label}] {_PHASES.get(phase, phase)}: {done}/{total}"
        if self.tty:
            now = time.monotonic()
            # Redrawing costs a write per server; five times a second is plenty.
            if done == total or now - self._last_draw > 0.2:
                self.stream.write(f"\r\x1b[K{text}")
                self.stream.flush()
                self._last_draw = now
                self._dirty = True
            return
        # Not a terminal (a log, the guest console): a line per tenth of the phase.
        step = done * 10 // max(total, 1)
        if step != self._last_step.get(phase, -1) and (step > 0 or total == 1):
            self._last_step[phase] = step
            print(text, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty and self._dirty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._dirty = False
