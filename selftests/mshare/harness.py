"""Test support for the guest suite: the mount, address slots, regions and child processes.

Everything here is plumbing for the tests; the kernel calls themselves are in kapi.py.
The process helpers (Child, Gate, Counter, ...) and the /proc readers are the shared
toolkit's (mshare_lab.child, mshare_lab.proc), named here as the cases know them.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kapi

from mshare_lab import env
from mshare_lab.child import (  # noqa: F401 - the suite's names for the shared helpers
    NOBODY,
    Child,
    ChildError,
    ChildKilled,
    Counter,
    Gate,
    close_quietly,
    death_signal,
    drop_privileges,
    in_child,
    scaled,
    wait_until,
)
from mshare_lab.proc import config_enabled, mounts  # noqa: F401
from mshare_lab.proc import has_msharefs as kernel_has_msharefs  # noqa: F401

MOUNT = "/sys/fs/mshare"
INFO = f"{MOUNT}/mshare_info"
FSTYPE = "msharefs"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUEST = env.in_guest()
RW = kapi.PROT_READ | kapi.PROT_WRITE


# ---------------------------------------------------------------- environment

def scratch() -> Path:
    """The writable directory (LIBMSHARE_SCRATCH in the guest), one subdir per worker."""
    d = env.scratch_or_tmp() / "selftests" / worker()
    d.mkdir(parents=True, exist_ok=True)
    return d


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_index() -> int:
    w = worker()
    return int(w[2:]) if w.startswith("gw") and w[2:].isdigit() else 0


def mounts_of_type(fstype: str = FSTYPE) -> list[str]:
    return [m.target for m in mounts() if m.fstype == fstype]


def is_mounted() -> bool:
    return MOUNT in mounts_of_type()


def remount() -> None:
    """Unmount msharefs (evicting every region no process maps) and mount it again."""
    with global_lock():
        kapi.umount2(MOUNT)
        kapi.mount(FSTYPE, MOUNT, FSTYPE)


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
               start: int | None = None, huge: bool = False) -> Region:
        """Create and establish a region of `units` alignment units at a free window
        (asking for 2 MiB pages first if huge)."""
        path, fd = self.open_new(path, mode)
        if huge:
            kapi.mshare_set_flags(fd, kapi.MSHARE_F_HUGE)
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


def _selected(text: str) -> str:
    """A knob's value: the bracketed choice of "always [madvise] never", else the text."""
    text = text.strip()
    return text.split("[")[1].split("]")[0] if "[" in text else text


@contextmanager
def knobs(settings: dict[str, str]) -> Iterator[None]:
    """Write each sysctl or sysfs knob of settings that exists; restore the old values."""
    old: dict[str, str] = {}
    try:
        for path, value in settings.items():
            if os.path.exists(path):
                old[path] = _selected(Path(path).read_text())
                Path(path).write_text(value)
        yield
    finally:
        for path, value in old.items():
            Path(path).write_text(value)


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


def create_in_cgroup(group: Path, path: str, start: int, huge: bool = False) -> int:
    """In a child: join group, then create a region at path (with 2 MiB pages if huge)
    and map one unit at start (its memory is charged to group); the region's fd, left
    open."""
    (group / "cgroup.procs").write_text(str(os.getpid()))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    if huge:
        kapi.mshare_set_flags(fd, kapi.MSHARE_F_HUGE)
    kapi.mmap(start, alignment(), RW, kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    return fd


@contextmanager
def region_in_cgroup(group: Path, regions: Regions, tag: str, *, huge: bool = False,
                     first: bytes = b"") -> Iterator[tuple[str, int]]:
    """A region (of 2 MiB pages if huge) that a child in group created, wrote first to
    and keeps mapped, so its memory is charged to group; (path, start).  The child is
    killed afterwards."""
    path, start = regions.path(tag), take_window()
    ready = Counter()

    def owner_body() -> None:
        create_in_cgroup(group, path, start, huge)
        if first:
            kapi.poke(start, first)
        ready.post()
        while True:
            signal.pause()

    owner = Child(owner_body)
    try:
        ready.wait_for(1)
        yield path, start
    finally:
        owner.kill()
        ready.close()


def _cgroup_counter(group: Path, file: str, key: str) -> int:
    for line in (group / file).read_text().splitlines():
        k, v = line.split()
        if k == key:
            return int(v)
    raise KeyError(f"{file} has no {key}")


def cgroup_event(group: Path, key: str) -> int:
    """One counter of group's memory.events."""
    return _cgroup_counter(group, "memory.events", key)


def memory_stat(group: Path, key: str) -> int:
    """One counter of group's memory.stat (bytes for the memory kinds)."""
    return _cgroup_counter(group, "memory.stat", key)


def run_python(code: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run code in a new interpreter (an unrelated process, not a fork of this one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code, *args], check=False, env=env, text=True,
                          capture_output=True, timeout=scaled(timeout), stdin=subprocess.DEVNULL)


def shm_dir() -> str:
    """A tmpfs directory for shmem files (/dev/shm if it is a writable tmpfs)."""
    tmpfs = set(mounts_of_type("tmpfs"))
    if "/dev/shm" in tmpfs and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    d = scratch() / "shm"
    d.mkdir(exist_ok=True)
    if str(d) not in tmpfs:
        kapi.mount("tmpfs", str(d), "tmpfs", 0, "mode=1777")
    return str(d)
