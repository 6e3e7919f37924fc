"""Running virtme-ng: the command line, output passthrough, and the timeout.

Facts measured on these machines that shape this module:
- vng needs no terminal, but its stdout must be a pipe it can write to; we copy the pipe
  to our own stdout/stderr (and into files in the scratch directory).
- Nested KVM hangs at "Decompressing Linux...", so TCG (--disable-kvm) is the default.
- virtiofs needs a daemon we do not have here: --force-9p.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from .console import ConsoleSplitter


@dataclass
class VngSpec:
    kernel: Path
    script: Path
    cwd: Path
    cpus: int
    memory: str
    rwdirs: list[Path]
    kvm: bool
    extra_append: list[str]


def interpreter_bin() -> Path:
    """The directory our Python's console scripts (vng, virtme-run, ...) are installed in.

    Not resolved: a venv's bin/python3 is a symlink to the base interpreter, whose own
    directory does not hold the venv's scripts.
    """
    return Path(sys.executable).parent


def find_vng() -> str | None:
    """vng from our own Python's bin directory first (a venv need not be on PATH)."""
    beside = interpreter_bin() / "vng"
    if beside.is_file():
        return str(beside)
    return shutil.which("vng")


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose PATH starts with the interpreter's bin directory.

    vng starts virtme-run (and virtme-run its helpers) through the shell by name, so
    finding vng itself beside the interpreter is not enough: on a fresh machine that
    directory (a venv's, say) is not on PATH and the shell says "virtme-run: not found".
    """
    env = dict(os.environ if base is None else base)
    first = str(interpreter_bin())
    rest = [d for d in env.get("PATH", os.defpath).split(os.pathsep) if d and d != first]
    env["PATH"] = os.pathsep.join([first, *rest])
    return env


def vng_command(spec: VngSpec, vng: str = "vng") -> list[str]:
    # --verbose: the kernel console on vng's stderr, at loglevel 7 (see console.py).
    cmd = [vng, "--run", str(spec.kernel), "--force-9p", "--user", "root", "--verbose",
           "--cpus", str(spec.cpus), "--memory", spec.memory, "--cwd", str(spec.cwd)]
    if not spec.kvm:
        cmd.append("--disable-kvm")
    for d in spec.rwdirs:
        cmd += ["--rwdir", str(d)]
    for a in spec.extra_append:
        cmd += ["--append", a]
    cmd += ["--exec", f"sh {spec.script}"]
    return cmd


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def _pump(src: BinaryIO, sinks: list[Sink]) -> None:
    # read1 returns what is available, so guest output appears as it is produced.
    while chunk := src.read1(65536):  # type: ignore[attr-defined]
        for sink in sinks:
            sink.write(chunk)
            sink.flush()


@dataclass(frozen=True)
class VngResult:
    returncode: int | None  # None after a timeout kill
    timed_out: bool
    seconds: float


def run(cmd: list[str], timeout: float, stdout_copy: Path, stderr_copy: Path,
        console_log: Path) -> VngResult:
    """Run vng in its own process group so a timeout can kill QEMU and all helpers.

    stdout is copied to ours and to stdout_copy; stderr to stderr_copy, and, split by
    ConsoleSplitter, kernel console lines to console_log and the rest to our stderr.
    """
    started = time.monotonic()
    with stdout_copy.open("wb") as out_f, stderr_copy.open("wb") as err_f, \
            console_log.open("wb") as con_f:
        splitter = ConsoleSplitter(con_f, [sys.stderr.buffer])
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env=tool_env())
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, [sys.stdout.buffer, out_f])),
            threading.Thread(target=_pump, args=(proc.stderr, [err_f, splitter])),
        ]
        for t in pumps:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
        for t in pumps:
            t.join(timeout=10)
        splitter.close()
    return VngResult(None if timed_out else proc.returncode, timed_out,
                     time.monotonic() - started)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
