"""Test support for the guest suite: the mount, address slots, regions and child processes.

Everything here is plumbing for the tests; the kernel calls themselves are in kapi.py.
"""

from __future__ import annotations

import errno
import faulthandler
import fcntl
import itertools
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kapi

MOUNT = "/sys/fs/mshare"
INFO = f"{MOUNT}/mshare_info"
FSTYPE = "msharefs"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOBODY = 65534
GUEST = os.environ.get("LIBMSHARE_GUEST") == "1"
TIME_SCALE = float(os.environ.get("LIBMSHARE_TIME_SCALE") or 1)
RW = kapi.PROT_READ | kapi.PROT_WRITE


# ---------------------------------------------------------------- environment

def scratch() -> Path:
    """The writable directory (LIBMSHARE_SCRATCH in the guest), one subdir per worker."""
    root = Path(os.environ.get("LIBMSHARE_SCRATCH")
                or Path(tempfile.gettempdir()) / "libmshare-selftests")
    d = root / "selftests" / worker()
    d.mkdir(parents=True, exist_ok=True)
    return d


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_index() -> int:
    w = worker()
    return int(w[2:]) if w.startswith("gw") and w[2:].isdigit() else 0


def kernel_has_msharefs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == [FSTYPE] for line in f)
    except OSError:
        return False


def mounts_of_type(fstype: str = FSTYPE) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if ln.split()[2] == fstype]


def is_mounted() -> bool:
    return MOUNT in mounts_of_type()


@contextmanager
def global_lock(name: str = "mount") -> Iterator[None]:
    """A lock shared by all xdist workers: a flock on a local file (9p, where the
    scratch directory lives in the guest, does not make flock exclusive)."""
    path = Path(tempfile.gettempdir()) / f".mshare-selftests-{name}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_mounted() -> None:
    with global_lock():
        if not is_mounted():
            kapi.mount(FSTYPE, MOUNT, FSTYPE)


_align: int | None = None


def alignment() -> int:
    global _align
    if _align is None:
        with open(INFO, "rb") as f:
            _align = int(f.read())
    return _align


def config_enabled(option: str) -> bool | None:
    """CONFIG_X from /proc/config.gz (None if the kernel does not export its config)."""
    import gzip
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        return None
    return f"\n{option}=y" in f"\n{text}"


# ---------------------------------------------------------------- address slots

# 512 GiB slots from 1 TiB up to 80 TiB: below any PIE executable (0x55..) and the
# top-down mmap area, so no process (forked or freshly exec'ed) has anything there.
_FIRST_SLOT, _END_SLOT = 2, 160
_slot_counter = itertools.count()


def window_is_free(lo: int, size: int) -> bool:
    """Whether nothing is mapped in [lo, lo+size) in this process: a PROT_NONE probe
    mapping with MAP_FIXED_NOREPLACE, unmapped at once (no /proc/self/maps to parse, and
    it reserves no memory: a private PROT_NONE mapping is not accounted)."""
    flags = kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS | kapi.MAP_NORESERVE | \
        kapi.MAP_FIXED_NOREPLACE
    try:
        kapi.mmap(lo, size, kapi.PROT_NONE, flags, -1)
    except OSError as e:
        if e.errno == errno.EEXIST:
            return False
        raise
    kapi.munmap(lo, size)
    return True


def take_window(units: int = 1) -> int:
    """A free, aligned window of `units` alignment units in this process.

    Slots rotate per worker (worker index * 37 + counter), so consecutive tests never
    reuse an address soon and parallel workers use different ranges; a window that
    overlaps any mapping of this process is skipped.
    """
    a = alignment()
    n_slots = _END_SLOT - _FIRST_SLOT
    for _ in range(n_slots):
        slot = _FIRST_SLOT + (worker_index() * 37 + next(_slot_counter)) % n_slots
        if slot + units > _END_SLOT:
            continue
        if window_is_free(slot * a, units * a):
            for _ in range(units - 1):
                next(_slot_counter)
            return slot * a
    raise RuntimeError("no free address slot for a region")


# ---------------------------------------------------------------- regions

_names = itertools.count()


@dataclass
class Region:
    """One mapping of a region in this process (fd may be -1 once closed)."""

    path: str
    fd: int
    start: int
    size: int

    def peek(self, off: int, n: int) -> bytes:
        return kapi.peek(self.start + off, n)

    def poke(self, off: int, data: bytes) -> None:
        kapi.poke(self.start + off, data)

    def view(self, off: int = 0, n: int | None = None) -> memoryview:
        return kapi.view(self.start + off, self.size - off if n is None else n)


@dataclass
class Regions:
    """Per-test region factory; teardown unmaps, closes and unlinks what the test left."""

    paths: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    mappings: list[tuple[int, int]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def name(self, tag: str = "r") -> str:
        """A name unique to this worker, process and test: ks-<worker>-<pid>-<n>-<tag>."""
        return f"ks-{worker()}-{os.getpid()}-{next(_names)}-{tag}"

    def path(self, tag: str = "r", parent: str = MOUNT) -> str:
        p = f"{parent}/{self.name(tag)}"
        self.paths.append(p)
        return p

    def mkdir(self, tag: str = "d", mode: int = 0o755) -> str:
        p = f"{MOUNT}/{self.name(tag)}"
        os.mkdir(p, mode)
        self.dirs.append(p)
        return p

    def open_new(self, path: str | None = None, mode: int = 0o600,
                 flags: int = os.O_RDWR) -> tuple[str, int]:
        """Create the region file (O_CREAT|O_EXCL) without mapping it."""
        path = path or self.path()
        if path not in self.paths:
            self.paths.append(path)
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        self.fds.append(fd)
        return path, fd

    def map(self, fd: int, start: int, size: int, prot: int = RW,
            flags: int = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, offset: int = 0) -> int:
        addr: int = kapi.mmap(start, size, prot, flags, fd, offset)
        self.mappings.append((addr, size))
        return addr

    def create(self, units: int = 1, *, path: str | None = None, mode: int = 0o600,
               start: int | None = None) -> Region:
        """Create and establish a region of `units` alignment units at a free window."""
        path, fd = self.open_new(path, mode)
        start = take_window(units) if start is None else start
        size = units * alignment()
        self.map(fd, start, size)
        return Region(path, fd, start, size)

    def attach(self, path: str, readonly: bool = False,
               flags: int = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE) -> Region:
        """Open, read struct mshare_info, map it at its start (in this process)."""
        fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        self.fds.append(fd)
        start, size = read_info(fd)
        self.map(fd, start, size, kapi.PROT_READ if readonly else RW, flags)
        return Region(path, fd, start, size)

    def unmap(self, r: Region) -> None:
        kapi.munmap(r.start, r.size)
        if (r.start, r.size) in self.mappings:
            self.mappings.remove((r.start, r.size))

    def close(self, fd: int) -> None:
        os.close(fd)
        if fd in self.fds:
            self.fds.remove(fd)

    def cleanup(self) -> None:
        for addr, size in reversed(self.mappings):
            try:
                kapi.munmap(addr, size)
            except OSError:
                pass
        close_quietly(*self.fds)
        for p in self.paths:
            try:
                os.unlink(p)
            except OSError:
                pass
        for d in reversed(self.dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.mappings.clear()
        self.fds.clear()
        self.paths.clear()
        self.dirs.clear()


def read_info(fd: int) -> tuple[int, int]:
    """(start, size) from struct mshare_info; the region must be established."""
    info = kapi.read_mshare_info(fd)
    assert info is not None, "region not established: read gave 0 bytes"
    return int(info.start), int(info.size)


def errno_of(fn: Callable[..., Any], *args: Any) -> int | None:
    """The errno fn(*args) raised, or None if it succeeded."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None


def pattern(seed: int, n: int = kapi.PAGE) -> bytes:
    """n bytes that differ for every seed (and within a page)."""
    block = seed.to_bytes(8, "little") + (seed * 2654435761 % 2**64).to_bytes(8, "little")
    return (block * (n // 16 + 1))[:n]


CG_ROOT = Path("/sys/fs/cgroup")


def memory_controller() -> bool:
    """Whether cgroup v2 (mounted here if it is not) has the memory controller."""
    if not (CG_ROOT / "cgroup.controllers").exists():
        kapi.mount("cgroup2", str(CG_ROOT), "cgroup2", 0, None)
    return "memory" in (CG_ROOT / "cgroup.controllers").read_text().split()


@contextmanager
def memory_cgroup(tag: str) -> Iterator[Path]:
    """A new cgroup v2 group with the memory controller, removed once its tasks are
    gone (memory_controller() first)."""
    (CG_ROOT / "cgroup.subtree_control").write_text("+memory")
    group = CG_ROOT / f"ks-{tag}-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), 30)
        group.rmdir()


def cgroup_event(group: Path, key: str) -> int:
    """One counter of group's memory.events."""
    for line in (group / "memory.events").read_text().splitlines():
        k, v = line.split()
        if k == key:
            return int(v)
    raise KeyError(key)


def scaled(seconds: float) -> float:
    """A watchdog limit stretched by LIBMSHARE_TIME_SCALE (selftests/run --time-scale), for
    kernels that run everything several times slower (KASAN under TCG)."""
    return seconds * TIME_SCALE


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---------------------------------------------------------------- child processes

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


def run_python(code: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run code in a new interpreter (an unrelated process, not a fork of this one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code, *args], check=False, env=env, text=True,
                          capture_output=True, timeout=scaled(timeout), stdin=subprocess.DEVNULL)


def shm_dir() -> str:
    """A tmpfs directory for shmem files (/dev/shm if it is a writable tmpfs)."""
    with open("/proc/self/mounts") as f:
        tmpfs = {ln.split()[1] for ln in f if ln.split()[2] == "tmpfs"}
    if "/dev/shm" in tmpfs and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    d = scratch() / "shm"
    d.mkdir(exist_ok=True)
    if str(d) not in tmpfs:
        kapi.mount("tmpfs", str(d), "tmpfs", 0, "mode=1777")
    return str(d)


def enoent_ok(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
