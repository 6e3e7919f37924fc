"""Readings from /proc: page-table memory, per-process VmPTE, and what machine this is."""

from __future__ import annotations

import os
import platform

__all__ = ["meminfo_kib", "page_tables_kib", "refresh_counters", "system_info", "vm_pte_kib"]


def meminfo_kib(field: str, *, default: int | None = None) -> int:
    """A /proc/meminfo field in KiB (or a plain count such as HugePages_Free)."""
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == field:
                return int(rest.split()[0])
    if default is None:
        raise KeyError(f"/proc/meminfo has no {field}")
    return default


def refresh_counters() -> bool:
    """Fold the per-CPU vmstat deltas into the global counters (root only).

    /proc/meminfo shows the global counters, which lag by up to a per-CPU threshold
    (tens of pages per CPU) until the next periodic fold: enough to hide the page
    tables of a few small attachers.  Writing stat_refresh folds them at once.
    """
    try:
        with open("/proc/sys/vm/stat_refresh", "w") as f:
            f.write("1\n")
    except OSError:
        return False
    return True


def page_tables_kib() -> int:
    """System-wide memory in page tables (every process, and msharefs regions)."""
    refresh_counters()
    return meminfo_kib("PageTables")


def vm_pte_kib(pid: int | str = "self") -> int | None:
    """VmPTE of one process (its own page tables), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmPTE:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _accelerator() -> str:
    """KVM if the guest has kvm-clock, else emulated (TCG) if the CPU says hypervisor."""
    if "TCG" in _cpu_model():  # QEMU names its emulated CPU "QEMU TCG CPU"
        return "TCG"
    try:
        with open("/sys/devices/system/clocksource/clocksource0/available_clocksource") as f:
            if "kvm-clock" in f.read():
                return "KVM"
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return "TCG (virtual CPU, no kvm-clock)" if " hypervisor" in flags else "none (bare metal)"


def system_info() -> dict[str, object]:
    return {
        "kernel": os.uname().release,
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total_kib": meminfo_kib("MemTotal"),
        "accelerator": _accelerator(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
    }
