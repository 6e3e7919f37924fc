"""mshare_lab's /proc readers and fork helper on the host's own kernel."""
from __future__ import annotations

import mmap
import os
import signal

import pytest

from mshare_lab import child, proc


def test_meminfo_reads_kilobytes_and_counts() -> None:
    info = proc.meminfo(refresh=False)
    assert info["MemTotal"] > 0 and "HugePages_Free" in info
    assert proc.meminfo_kib("MemTotal") == info["MemTotal"]
    assert proc.meminfo_kib("NoSuchField", default=7) == 7
    with pytest.raises(KeyError):
        proc.meminfo_kib("NoSuchField")


def test_status_and_vm_pte_of_this_process() -> None:
    assert proc.status()["Pid"] == str(os.getpid())
    assert (proc.vm_pte_kib() or 0) > 0
    assert proc.vm_pte_kib(2**22 + 1) is None  # no such process
    assert proc.status_kib("VmSize") == int(proc.status()["VmSize"].split()[0])
    assert proc.status_kib("NoSuchField") is None


def test_state_of_a_child_until_reaped() -> None:
    assert proc.state() == "R"  # reading its own stat, this process runs
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert child.wait_until(lambda: proc.state(pid) == "Z", 10)  # exited, not reaped yet
    os.waitpid(pid, 0)
    assert proc.state(pid) is None
    assert proc.stat_flags(2) is not None and proc.stat_flags(2) & 0x00200000  # kthreadd
    assert not (proc.stat_flags() or 0) & 0x00200000


def test_mounts_lists_proc() -> None:
    assert any(m.target == "/proc" and m.fstype == "proc" for m in proc.mounts())


def test_maps_and_smaps_see_a_new_mapping() -> None:
    m = mmap.mmap(-1, 8 * mmap.PAGESIZE)
    try:
        m[0] = 1
        start = next(v.start for v in proc.maps() if v.end - v.start >= 8 * mmap.PAGESIZE
                     and v.perms.startswith("rw"))
        vma = proc.vma_at(start)
        assert vma is not None and vma.start == start
        assert "Rss" in proc.smaps()[start]
        assert proc.smaps_rollup()["Rss"] > 0
    finally:
        m.close()


def test_counters() -> None:
    assert proc.vmstat()["pgfault"] > 0
    assert (proc.minflt() or 0) > 0
    rows = proc.interrupts()
    assert len(rows["LOC"]) == os.cpu_count()  # local timer interrupts: one count a CPU
    assert isinstance(proc.has_msharefs(), bool)
    assert proc.system_info()["page_size"] == mmap.PAGESIZE


def test_child_returns_value_raises_error_and_reports_signal() -> None:
    assert child.in_child(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(child.ChildError):
        child.in_child(lambda: 1 // 0)
    assert child.death_signal(lambda: os.kill(os.getpid(), signal.SIGKILL)) == signal.SIGKILL
