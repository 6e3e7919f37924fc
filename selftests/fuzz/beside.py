"""Load run beside the fuzzer in long mode: Debian's stress-ng and trinity.

Neither knows about regions.  They run in other processes for the whole fuzz, so that
region pages migrate and get reclaimed, and the mm takes locks and faults, while the
fuzzer's workers map, zap and release windows:

- stress-ng (as root): memory stressors that fault, remap, protect, lock and madvise
  their own memory and keep the guest under memory pressure;
- trinity (as nobody, as its authors advise): the mm system calls (`-c` each), with
  its victim files on a tmpfs of its own, never on a folder shared with the host.

Both take their seed from the fuzzer's.  A tool that is gone before the fuzz ends did not
run beside it, and that fails the run (`Beside.stop()` says so).  Their exit statuses are
recorded, not judged: stress-ng fails its own counter check for any stressor instance the
OOM killer SIGKILLs (selftests/results/fuzz/stress-ng-sigkill-control.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("stress-ng", "trinity")
# Sized for the 4 GiB guest: the fuzzer's own workers already take it to the OOM killer.
STRESS_NG_STRESSORS = (
    ("vm", "1"), ("vm-bytes", "256M"), ("vm-method", "all"),
    ("mmap", "1"), ("mmap-bytes", "64M"), ("mmap-mprotect", None),
    ("madvise", "1"), ("mremap", "1"), ("mremap-bytes", "64M"),
    ("mlock", "1"), ("mincore", "1"), ("mprotect", "1"), ("page-in", None),
)
TRINITY_CHILDREN = 2
# Its calls, limited with -c to the mm ones (64-bit): the vm group plus the GUP users.
TRINITY_CALLS = (
    "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "mlock2", "munlock",
    "mlockall", "munlockall", "mincore", "msync", "mbind", "set_mempolicy",
    "get_mempolicy", "migrate_pages", "move_pages", "remap_file_pages", "memfd_create",
    "userfaultfd", "process_vm_readv", "process_vm_writev",
)
TMPFS_SIZE = "64m"
# Not $TMPDIR: in our guests it lies under root's home (mode 0700), where trinity, as
# nobody, finds no victim files and bails out before its first call.
PARENT = "/tmp"
STOP_GRACE_S = 20.0
# stop() ends a tool with SIGINT, but a job started in the background (`cmd &`) inherits
# it ignored (a shell cannot even trap it then): coreutils' env gives it back its default.
DEFAULT_SIGINT = ("env", "--default-signal=INT")


class ToolMissing(RuntimeError):
    """A tool asked for is not installed (ci/setup installs both)."""


def check_installed(tools: list[str]) -> None:
    for tool in tools:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r} to run beside the fuzzer: one of "
                             f"{', '.join(TOOLS)}")
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} is not installed (ci/setup installs it)")


def stress_ng_argv(seed: int, seconds: float, tmp: Path) -> list[str]:
    """stress-ng until stopped: its own timeout is only a backstop past the fuzz."""
    argv = ["stress-ng", "--seed", str(seed & 0xFFFFFFFF), "--temp-path", str(tmp),
            "--timeout", f"{int(seconds) + 600}s", "--metrics-brief"]
    for name, value in STRESS_NG_STRESSORS:
        argv.append(f"--{name}")
        if value is not None:
            argv.append(value)
    return argv


def trinity_argv(seed: int, victims: Path) -> list[str]:
    """trinity on the mm calls until stopped, no log files."""
    calls = [arg for name in TRINITY_CALLS for arg in ("-c", name)]
    return ["trinity", "-q", "-l", "off", "-a", "64", *calls, "-C", str(TRINITY_CHILDREN),
            "--disable-fds=sockets", "-s", str(seed & 0x7FFFFFFF), "-V", str(victims)]


@dataclass
class Running:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Beside:
    """Starts the tools in their own sessions; stop() ends them and reports."""

    tools: list[str]
    seed: int
    seconds: float
    running: list[Running] = field(default_factory=list)
    tmp: Path | None = None

    def start(self) -> None:
        check_installed(self.tools)
        if not self.tools:
            return
        self.tmp = Path(tempfile.mkdtemp(prefix="regionfuzz-beside-", dir=PARENT))
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755",
                        "regionfuzz-beside", str(self.tmp)], check=True)
        for name in self.tools:
            if name == "stress-ng":
                work = self.tmp / "stress-ng"
                work.mkdir()
                self._spawn(name, stress_ng_argv(self.seed, self.seconds, work), work)
            else:
                victims = self.tmp / "trinity"
                victims.mkdir()
                (victims / "victim").write_bytes(b"\0" * 65536)
                nobody = pwd.getpwnam("nobody")
                for path in (victims, victims / "victim"):
                    os.chown(path, nobody.pw_uid, nobody.pw_gid)
                self._spawn(name, trinity_argv(self.seed, victims), victims, user=nobody)

    def _spawn(self, name: str, argv: list[str], cwd: Path,
               user: pwd.struct_passwd | None = None) -> None:
        assert self.tmp is not None
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*DEFAULT_SIGINT, *argv], cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    user=user and user.pw_uid, group=user and user.pw_gid,
                                    extra_groups=[] if user else None)
        self.running.append(Running(name, argv, proc, log))

    def stop(self) -> tuple[dict[str, object], list[str]]:
        """End every tool: a report per tool, and the problems (a tool that died early)."""
        report: dict[str, object] = {}
        problems: list[str] = []
        for run in self.running:
            early = run.proc.poll()
            if early is not None:
                problems.append(f"{run.name} was gone before the fuzz ended (exit {early}): "
                                f"{_tail(run.log)}")
            status = _end(run.proc)
            report[run.name] = {"argv": run.argv, "exit": status,
                                "exited_early": early is not None, "tail": _tail(run.log)}
        if self.tmp is not None:
            subprocess.run(["umount", "-l", str(self.tmp)], check=False)
            self.tmp.rmdir()
        return report, problems


def _end(proc: subprocess.Popen[bytes]) -> int:
    """SIGINT (both tools stop cleanly on it), then SIGKILL their whole session."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _killpg(proc.pid)
    return proc.wait()


def _killpg(pgid: int) -> None:
    """Children trinity or stress-ng left behind."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
