"""Running make on a kernel tree: fixed variables, a log file, and progress lines.

A cold build takes many minutes and CI gives no terminal, so every ~30 s we print how many
objects were compiled and the latest step; the full output goes to the log file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Self, TextIO

# Same CC as the lead's development tree, so both share one ccache: kbuild passes relative
# paths, so with CCACHE_BASEDIR set to the tree the hashes match between trees.
CC = "ccache gcc"
PROGRESS_EVERY_S = 30.0
_STEP_RE = re.compile(r"^\s{2}(CC|AS|LD|AR|GEN|HOSTCC|OBJCOPY)\s+(\S+)")


class MakeError(RuntimeError):
    def __init__(self, message: str, tail: list[str]) -> None:
        super().__init__(message)
        self.tail = tail


def make_env(tree: Path, build_user: str, build_host: str,
             timestamp: str | None = None) -> dict[str, str]:
    """make's environment; with `timestamp`, the image no longer depends on when or how
    often the tree was built (the build date and the #N counter are baked into it)."""
    env = dict(os.environ)
    env["CCACHE_BASEDIR"] = str(tree)
    # Depend mode hashes the headers kbuild's -MMD lists instead of running the
    # preprocessor first: a cold build then preprocesses each file once, not twice.
    env["CCACHE_DEPEND"] = "1"
    # Shown in the guest's /proc/version, so a guest can tell which build it booted.
    env["KBUILD_BUILD_USER"] = build_user
    env["KBUILD_BUILD_HOST"] = build_host
    if timestamp is not None:
        env["KBUILD_BUILD_TIMESTAMP"] = timestamp
        env["KBUILD_BUILD_VERSION"] = "1"
    env.pop("ARCH", None)
    env.pop("KCONFIG_CONFIG", None)  # merge_config.sh and make must both use .config
    return env


def make_cmd(jobs: int, *targets: str) -> list[str]:
    return ["make", f"-j{jobs}", "ARCH=x86_64", f"CC={CC}", *targets]


class Progress:
    """Counts compile steps in make's output; a ticker thread reports every `every` s.

    A thread rather than "on the next line", because the final vmlinux link and kallsyms
    passes print nothing for minutes on a debug kernel.
    """

    def __init__(self, label: str, out: TextIO = sys.stderr,
                 every: float = PROGRESS_EVERY_S) -> None:
        self.label = label
        self.out = out
        self.every = every
        self.start = time.monotonic()
        self.compiled = 0
        self.last_step = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def feed(self, line: str) -> None:
        if m := _STEP_RE.match(line):
            if m.group(1) == "CC":
                self.compiled += 1
            self.last_step = f"{m.group(1)} {m.group(2)}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.report()

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.report()

    def report(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        # Rounded, not truncated: start + 95 - start can come out as 94.99999999.
        elapsed = round(now - self.start)
        print(f"kernel-build: {self.label} {elapsed // 60}m{elapsed % 60:02d}s: "
              f"{self.compiled} objects compiled, last: {self.last_step or '-'}",
              file=self.out, flush=True)


def run_logged(cmd: list[str], cwd: Path, env: dict[str, str], log: TextIO,
               progress: Progress | None = None) -> None:
    """Run cmd, appending its output to `log`; MakeError with the output's tail on failure."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        tail.append(line.rstrip("\n"))
        if progress is not None:
            progress.feed(line)
    rc = proc.wait()
    log.flush()
    if rc != 0:
        raise MakeError(f"{' '.join(cmd)} failed with status {rc}", list(tail))
