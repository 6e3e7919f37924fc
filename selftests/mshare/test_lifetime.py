"""Region lifetime: unlink, recreate, close without unlink, and memory returned."""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from pathlib import Path

import harness
import kapi
import pytest
from harness import MOUNT

PAGE = kapi.PAGE
PMD = 2 << 20


def test_unlink_removes_name_at_once_while_mapped(region: harness.Region) -> None:
    os.unlink(region.path)
    assert Path(region.path).name not in os.listdir(MOUNT)
    with pytest.raises(OSError) as e:
        os.open(region.path, os.O_RDWR)
    assert e.value.errno == errno.ENOENT


def test_unlinked_region_still_shared_by_its_mappings(region: harness.Region) -> None:
    ready, go = harness.Counter(), harness.Gate()

    def body() -> bytes:
        kapi.peek(region.start, 1)
        ready.post()
        go.wait()
        kapi.poke(region.start + 8, b"child")
        return kapi.peek(region.start, 6)

    kid = harness.Child(body)
    ready.wait_for(1)
    os.unlink(region.path)
    region.poke(0, b"parent")
    go.open()
    assert kid.result() == b"parent"
    assert region.peek(8, 5) == b"child"


def test_unlinked_region_mappable_again_through_open_fd(region: harness.Region) -> None:
    region.poke(0, b"via fd")
    os.unlink(region.path)
    kapi.munmap(region.start, region.size)
    kapi.mmap(region.start, region.size, harness.RW,
              kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, region.fd)
    assert region.peek(0, 6) == b"via fd"


def test_recreate_same_name_while_old_mapped_is_new_region(regions: harness.Regions) -> None:
    old = regions.create()
    old.poke(0, b"old data")
    os.unlink(old.path)
    new = regions.create(path=old.path)
    assert new.start != old.start
    assert harness.read_info(new.fd) == (new.start, new.size)
    assert new.peek(0, 8) == b"\0" * 8
    new.poke(0, b"new data")
    assert old.peek(0, 8) == b"old data"


def test_recreate_same_name_at_same_address_after_teardown(regions: harness.Regions) -> None:
    old = regions.create()
    old.poke(0, b"gen-one")
    path, start = old.path, old.start
    regions.cleanup()
    new = regions.create(path=path, start=start)
    assert new.peek(0, 7) == b"\0" * 7


def test_close_and_unmap_without_unlink_keeps_data_and_geometry(
        regions: harness.Regions) -> None:
    r = regions.create()
    r.poke(5 * PAGE, b"persist")
    regions.unmap(r)
    regions.close(r.fd)
    again = regions.attach(r.path)
    assert (again.start, again.size) == (r.start, r.size)
    assert again.peek(5 * PAGE, 7) == b"persist"


def test_sigkill_of_attacher_leaves_region_intact(region: harness.Region) -> None:
    region.poke(0, b"survivor")
    ready = harness.Counter()

    def body() -> None:
        for i in range(64):
            kapi.poke(region.start + (i + 1) * PAGE, b"k")
        ready.post()
        time.sleep(60)

    kid = harness.Child(body)
    ready.wait_for(1)
    os.kill(kid.pid, signal.SIGKILL)
    _, status = kid.wait_status()
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert region.peek(0, 8) == b"survivor"
    assert region.peek(64 * PAGE, 1) == b"k"
    assert harness.in_child(lambda: region.peek(0, 8)) == b"survivor"


# ---------------------------------------------------------------- memory (serial)

def _touch_every(r: harness.Region, span: int, stride: int) -> int:
    for off in range(0, span, stride):
        r.poke(off, b"\x5a")
    return span // stride


def _settle(key: str, target: int, tolerance: int, timeout: float = 30.0) -> int:
    """Wait until /proc/meminfo[key] is within tolerance of target; return it."""
    harness.wait_until(lambda: abs(kapi.meminfo()[key] - target) <= tolerance, timeout, 0.1)
    return kapi.meminfo()[key]


@pytest.mark.serial
def test_memory_returns_to_baseline_after_last_user(regions: harness.Regions) -> None:
    base = kapi.meminfo()
    r = regions.create()
    n = _touch_every(r, 32 << 20, PAGE)
    harness.in_child(lambda: kapi.peek(r.start, 1))
    risen = kapi.meminfo()["Shmem"] - base["Shmem"]
    assert risen >= n * 4 * 9 // 10, f"Shmem rose by {risen} kB for {n} pages"
    regions.cleanup()
    after = _settle("Shmem", base["Shmem"], 1024)
    assert after - base["Shmem"] <= 1024, f"Shmem still {after - base['Shmem']} kB up"


@pytest.mark.serial
def test_page_tables_freed_after_last_user(regions: harness.Regions) -> None:
    base = kapi.meminfo()["PageTables"]
    r = regions.create()
    n = _touch_every(r, 1 << 30, PMD)  # one page per PTE table: 512 tables, 2 MiB
    risen = kapi.meminfo()["PageTables"] - base
    assert risen >= n * 4 * 9 // 10, f"PageTables rose by {risen} kB for {n} PTE tables"
    regions.cleanup()
    after = _settle("PageTables", base, 256)
    assert after - base <= 256, f"PageTables still {after - base} kB up"


@pytest.mark.serial
def test_unlinked_region_memory_held_until_last_mapping_goes(
        regions: harness.Regions) -> None:
    base = kapi.meminfo()["Shmem"]
    r = regions.create()
    _touch_every(r, 16 << 20, PAGE)
    ready, go = harness.Counter(), harness.Gate()

    def holder() -> None:
        kapi.peek(r.start, 1)
        ready.post()
        go.wait()

    kid = harness.Child(holder)
    ready.wait_for(1)
    regions.cleanup()  # parent: unmapped, closed, unlinked
    time.sleep(0.5)
    held = kapi.meminfo()["Shmem"] - base
    assert held >= 15 << 10, f"memory freed while a mapping remained ({held} kB left)"
    go.open()
    kid.result()
    after = _settle("Shmem", base, 1024)
    assert after - base <= 1024


@pytest.mark.serial
def test_closed_unmapped_region_keeps_memory_until_unlink(regions: harness.Regions) -> None:
    base = kapi.meminfo()["Shmem"]
    r = regions.create()
    _touch_every(r, 16 << 20, PAGE)
    regions.unmap(r)
    regions.close(r.fd)
    assert kapi.meminfo()["Shmem"] - base >= 15 << 10
    os.unlink(r.path)
    after = _settle("Shmem", base, 1024)
    assert after - base <= 1024


@pytest.mark.serial
def test_umount_evicts_never_unlinked_region_and_frees_memory(
        regions: harness.Regions) -> None:
    base = kapi.meminfo()
    r = regions.create()
    _touch_every(r, 16 << 20, PAGE)
    _touch_every(r, 1 << 30, PMD)
    regions.unmap(r)
    regions.close(r.fd)
    harness.remount()
    shmem = _settle("Shmem", base["Shmem"], 1024)
    tables = _settle("PageTables", base["PageTables"], 256)
    assert shmem - base["Shmem"] <= 1024
    assert tables - base["PageTables"] <= 256


KMEMLEAK = "/sys/kernel/debug/kmemleak"


def _kmemleak(cmd: str | None = None) -> str:
    if not os.path.exists(KMEMLEAK) and not os.path.ismount("/sys/kernel/debug"):
        kapi.mount("debugfs", "/sys/kernel/debug", "debugfs")
    if cmd is not None:
        with open(KMEMLEAK, "w") as f:
            f.write(cmd)
        return ""
    with open(KMEMLEAK) as f:
        return f.read()


@pytest.mark.serial
@pytest.mark.needs_config("CONFIG_DEBUG_KMEMLEAK")
@pytest.mark.timeout(240)
def test_no_kmemleak_report_after_region_lifecycles(regions: harness.Regions) -> None:
    """Unlinked regions, regions evicted by umount, attachers that exit: nothing leaks."""
    _kmemleak("scan")
    _kmemleak("clear")
    a = regions.create()
    _touch_every(a, 4 << 20, PAGE)
    harness.in_child(lambda: kapi.poke(a.start, b"x"))
    regions.cleanup()
    b = regions.create()
    _touch_every(b, 1 << 20, PAGE)
    regions.unmap(b)
    regions.close(b.fd)
    harness.remount()
    time.sleep(6)  # kmemleak reports objects older than 5 s
    _kmemleak("scan")
    time.sleep(1)
    _kmemleak("scan")
    report = _kmemleak()
    leaks = re.split(r"(?=^unreferenced object)", report, flags=re.MULTILINE)
    ours = [lk for lk in leaks if "mshare" in lk or "mm_alloc" in lk]
    for lk in leaks:
        if lk.strip():
            print("# kmemleak:", lk.splitlines()[0])
    assert not ours, "kmemleak:\n" + "\n".join(ours)
