"""/proc readings for the guest suite, the fuzzer, the benches and the examples: one
parser per file (the role tools/testing/selftests/mm/vm_util.c plays for the mm selftests).

Every reader takes a pid ("self" by default) where the file is per process, and returns
plain values: kB for memory (as the kernel prints them), counts for the rest.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import platform
from collections.abc import Callable, Iterator

from libmshare import fs
from libmshare.addrspace import MapDetail, parse_maps
from libmshare.fs import MountEntry

from . import env

__all__ = [
    "PF_KTHREAD", "MapDetail", "MountEntry", "config_enabled", "cpu_model",
    "has_msharefs", "interrupts", "is_user_task", "kernel_config", "maps", "mem_used_kib",
    "meminfo", "meminfo_kib",
    "minflt", "mounts", "page_tables_kib", "pgid", "refresh_counters", "smaps",
    "smaps_rollup", "stat_flags", "state", "status", "status_kib", "system_info",
    "task_sites", "tasks", "user_tasks", "vm_pte_kib", "vma_at", "vmstat", "wait_site",
]

Pid = int | str
PF_KTHREAD = 0x00200000  # stat_flags(): a kernel thread

# The one msharefs check: the SDK's (/proc/filesystems lists the type).
has_msharefs = fs.kernel_supports
# The one /proc/self/mounts parser: the SDK's, which finds msharefs mounts with it.
mounts = fs.mount_table


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _fields(text: str) -> dict[str, int]:
    """'Name:   123 kB' lines -> {Name: 123}; lines whose value is not a number are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].lstrip("-").isdigit():
            out[key] = int(words[0])
    return out


def refresh_counters() -> bool:
    """Fold the per-CPU vmstat deltas into the global counters (root only).

    /proc/meminfo shows the global counters, which lag by up to a per-CPU threshold
    (tens of pages per CPU) until the next periodic fold: PageTables read 0-88 kB high
    across six otherwise identical 64-attacher runs.  Writing stat_refresh folds them.
    """
    try:
        with open("/proc/sys/vm/stat_refresh", "w") as f:
            f.write("1\n")
    except OSError:
        return False
    return True


def meminfo(refresh: bool = True) -> dict[str, int]:
    """/proc/meminfo in kB (counts such as HugePages_Free as they are), folded first."""
    if refresh:
        refresh_counters()
    return _fields(_read("/proc/meminfo"))


def meminfo_kib(field: str, *, default: int | None = None, refresh: bool = False) -> int:
    """One /proc/meminfo field; KeyError when it is missing and there is no default."""
    value = meminfo(refresh).get(field, default)
    if value is None:
        raise KeyError(f"/proc/meminfo has no {field}")
    return value


def mem_used_kib() -> int:
    """Memory in use system-wide: MemTotal less MemAvailable (what free(1) calls used,
    counting what reclaim could not give back)."""
    m = meminfo(True)
    return m["MemTotal"] - m["MemAvailable"]


def page_tables_kib() -> int:
    """System-wide memory in page tables (every process, and msharefs regions), folded."""
    return meminfo_kib("PageTables", refresh=True)


def vmstat() -> dict[str, int]:
    """/proc/vmstat: event and page counts by name."""
    return {k: int(v) for k, _, v in (ln.partition(" ") for ln in
                                      _read("/proc/vmstat").splitlines())}


def status(pid: Pid = "self") -> dict[str, str]:
    """/proc/PID/status as text values; raises OSError once the process is gone."""
    out: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def status_kib(field: str, pid: Pid = "self") -> int | None:
    """One number of /proc/PID/status ("VmLck" in kB), None if the process is gone or
    has no such field (a kernel thread has no Vm* lines)."""
    try:
        value = status(pid).get(field)
    except OSError:
        return None
    return int(value.split()[0]) if value else None


def vm_pte_kib(pid: Pid = "self") -> int | None:
    """VmPTE of one process (its own page tables), None if it is gone."""
    return status_kib("VmPTE", pid)


def _stat(pid: Pid) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 on), None once it is gone."""
    try:
        text = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def state(pid: Pid = "self") -> str | None:
    """The process state letter (R, S, D, Z, ...), None once it is gone (reaped)."""
    fields = _stat(pid)
    return fields[0] if fields else None


def pgid(pid: Pid = "self") -> int | None:
    """The process group (/proc/PID/stat field 5), None once it is gone."""
    fields = _stat(pid)
    return int(fields[2]) if fields else None


def wait_site(pid: Pid = "self", depth: int = 6) -> str | None:
    """Where a task waits: its state, wchan and the top ``depth`` frames of its kernel
    stack (root only), for a stuck task's report; a thread is "PID/task/TID".  None once
    it is gone."""
    try:
        wchan = _read(f"/proc/{pid}/wchan").strip() or "-"
        frames = _read(f"/proc/{pid}/stack").splitlines()[:depth]
    except OSError:
        return None
    stack = " < ".join(f.split()[-1] for f in frames if f.split()) or "-"
    return f"state {state(pid)} wchan {wchan} stack {stack}"


def tasks() -> Iterator[str]:
    """Every task (thread) as "PID/task/TID", in PID then TID order; a process that is
    gone before its threads are listed is skipped."""
    for pid in sorted(filter(str.isdigit, os.listdir("/proc")), key=int):
        try:
            tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
        except OSError:
            continue
        yield from (f"{pid}/task/{tid}" for tid in tids)


def is_user_task(pid: Pid) -> bool:
    """Is the task alive and not a kernel thread?"""
    flags = stat_flags(pid)
    return flags is not None and not flags & PF_KTHREAD


def user_tasks() -> Iterator[int]:
    """The TIDs of every task that is not a kernel thread."""
    for where in tasks():
        if is_user_task(where):
            yield int(where.rsplit("/", 1)[1])


def task_sites(keep: Callable[[str], bool], depth: int = 6) -> list[str]:
    """One line per task (thread) that keep("PID/task/TID") selects: its command and where
    it waits (wait_site), for a stuck run's report."""
    lines = []
    for where in tasks():
        site = wait_site(where, depth) if keep(where) else None
        if site:
            with contextlib.suppress(OSError):
                comm = _read(f"/proc/{where}/comm").strip()
                pid, _, tid = where.split("/")
                lines.append(f"  task {tid} (pid {pid}, {comm}) {site}")
    return lines


def stat_flags(pid: Pid = "self") -> int | None:
    """The task's PF_* flags (/proc/PID/stat field 9; PF_KTHREAD marks a kernel thread),
    None once it is gone."""
    fields = _stat(pid)
    return int(fields[6]) if fields else None


def minflt(pid: Pid = "self") -> int | None:
    """Minor faults of a process so far (/proc/PID/stat field 10), None once it is gone."""
    fields = _stat(pid)
    return int(fields[7]) if fields else None


def maps(pid: Pid = "self") -> list[MapDetail]:
    """/proc/PID/maps, parsed by the SDK's parser (the one the SDK places regions with)."""
    return parse_maps(_read(f"/proc/{pid}/maps"), detail=True)


def vma_at(addr: int, pid: Pid = "self") -> MapDetail | None:
    return next((v for v in maps(pid) if v.start <= addr < v.end), None)


def smaps(pid: Pid = "self") -> dict[int, dict[str, str]]:
    """/proc/PID/smaps: each mapping's start -> its fields as text ("Rss" -> "4 kB")."""
    out: dict[int, dict[str, str]] = {}
    entry: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/smaps").splitlines():
        head = line.split(maxsplit=1)[0] if line.strip() else ""
        if "-" in head and ":" not in head:
            entry = out.setdefault(int(head.partition("-")[0], 16), {})
            continue
        key, _, value = line.partition(":")
        entry[key] = value.strip()
    return out


def smaps_rollup(pid: Pid = "self") -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB."""
    return _fields(_read(f"/proc/{pid}/smaps_rollup"))


def interrupts() -> dict[str, list[int]]:
    """/proc/interrupts: each row's per-CPU counts ("TLB" -> [cpu0, cpu1, ...])."""
    lines = _read("/proc/interrupts").splitlines()
    ncpu = len(lines[0].split())
    out: dict[str, list[int]] = {}
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        counts = rest.split()[:ncpu]
        if head.strip() and all(c.isdigit() for c in counts):
            out[head.strip()] = [int(c) for c in counts]
    return out


def config_enabled(option: str) -> bool | None:
    """CONFIG_X from /proc/config.gz (None if the kernel does not export its config)."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        return None
    return f"\n{option}=y" in f"\n{text}"


def kernel_config(keys: tuple[str, ...]) -> dict[str, str]:
    """The values of these options in the config ci/vm-run passed to the guest."""
    path = env.kernel_config()
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        if path is not None:
            for line in _read(str(path)).splitlines():
                key, _, value = line.partition("=")
                if key in keys:
                    out[key] = value
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in _read("/proc/cpuinfo").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _accelerator() -> str:
    """KVM if the guest has kvm-clock, else emulated (TCG) if the CPU says hypervisor."""
    if "TCG" in cpu_model():  # QEMU names its emulated CPU "QEMU TCG CPU"
        return "TCG"
    with contextlib.suppress(OSError):
        if "kvm-clock" in _read("/sys/devices/system/clocksource/clocksource0/"
                                "available_clocksource"):
            return "KVM"
    flags = ""
    with contextlib.suppress(OSError):
        flags = next((ln for ln in _read("/proc/cpuinfo").splitlines()
                      if ln.startswith("flags")), "")
    return "TCG (virtual CPU, no kvm-clock)" if " hypervisor" in flags else "none (bare metal)"


def system_info() -> dict[str, object]:
    """What machine this is: kernel, CPU, memory, accelerator, page size."""
    return {
        "kernel": os.uname().release,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total_kib": meminfo_kib("MemTotal"),
        "accelerator": _accelerator(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
    }
