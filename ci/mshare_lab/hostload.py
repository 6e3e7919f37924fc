"""The host's load, as a benchmark run in a guest sees it.

A guest's /proc/loadavg is its own; what makes guest timings noisy is the host's.  While
a guest runs, the host side samples its load average into a small file in a directory
the guest may write (``Sampler``); a guest-side bench loop reads it before and after each
run (``now``), so every run record says how busy the host was around it.  Without a
guest (a bench run on the host itself) ``now`` reads the load directly.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import env

__all__ = ["FILE", "Sampler", "now"]

FILE = "host-load.json"
PERIOD_S = 2.0


def _sample() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"time": round(time.time(), 1), "load": [one, five, fifteen],
            "cpus": os.cpu_count()}


class Sampler:
    """Write the host's load to ``directory``/FILE every PERIOD_S seconds while open."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hostload", daemon=True)

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_sample()))
        os.replace(tmp, self.path)  # a reader sees a whole sample or the last one

    def _loop(self) -> None:
        while not self._stop.wait(PERIOD_S):
            try:
                self._write()
            except OSError:
                return  # the directory went away: nothing left to tell

    def __enter__(self) -> Self:
        self._write()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)


def now(directory: str | Path) -> dict[str, Any] | None:
    """The host's latest load sample: from ``directory``/FILE in a guest (None if the host
    side writes none there), read directly elsewhere."""
    if not env.in_guest():
        return _sample()
    try:
        sample: dict[str, Any] = json.loads((Path(directory) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return sample
