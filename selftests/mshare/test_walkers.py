"""Kernel paths that walk a process's page tables or pin its pages (GUP) on a region.

The contract allows each to work correctly on the region or fail cleanly; on our series
every one of them works (the fault redirect lives in handle_mm_fault(), which GUP uses
too), so each test asserts that one outcome.  None may oops or warn (dmesg is scanned
after the phase) or return wrong data.  A sharer whose
top-level entry is not linked yet ("unlinked": forked, never touched the region) takes a
different kernel path from one that has touched it ("linked"); both are tested.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import kapi
import pytest

PAGE = kapi.PAGE
LINKS = ["linked", "unlinked"]


class Target:
    """A forked sharer that waits while the parent acts on its address space."""

    def __init__(self, r: harness.Region, touch: bool) -> None:
        self.ready, self.go = harness.Counter(), harness.Gate()

        def body() -> bytes:
            if touch:
                kapi.peek(r.start, 1)
            self.ready.post()
            self.go.wait()
            return kapi.peek(r.start, 64)

        self.child = harness.Child(body)
        self.pid = self.child.pid
        self.ready.wait_for(1)

    def finish(self) -> bytes:
        self.go.open()
        out: bytes = self.child.result()
        self.ready.close()
        self.go.close()
        return out


@pytest.fixture
def target(region: harness.Region) -> Iterator[Callable[[bool], Target]]:
    made: list[Target] = []

    def make(touch: bool) -> Target:
        t = Target(region, touch)
        made.append(t)
        return t

    yield make
    for t in made:
        t.child.kill()


# ---------------------------------------------------------------- /proc walkers

def test_smaps_lists_region_with_its_full_size(region: harness.Region) -> None:
    e = kapi.smaps_entry(region.start)
    assert e["Size"] == f"{region.size >> 10} kB"


def test_smaps_rss_counts_touched_pages_in_each_sharer(regions: harness.Regions) -> None:
    """smaps walks the region's own tables: every sharer reports the region's resident
    pages in Rss (Pss is its share: test_accounting)."""
    r = regions.create()
    for i in range(8):
        r.poke(i * PAGE, b"x")
    rss = int(kapi.smaps_entry(r.start)["Rss"].split()[0])
    assert rss == 8 * PAGE >> 10, f"Rss {rss} kB for 8 touched pages"


def test_smaps_rollup_readable_with_region_mapped(region: harness.Region) -> None:
    region.poke(0, b"x")
    with open("/proc/self/smaps_rollup") as f:
        text = f.read()
    assert "Rss:" in text


def _pagemap(addr: int, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        return int(struct.unpack("=Q", f.read(8))[0])


PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def test_pagemap_never_touched_page_not_present(region: harness.Region) -> None:
    region.poke(0, b"x")
    assert not _pagemap(region.start + 100 * PAGE) & PRESENT


def test_pagemap_touched_page_present_with_its_pfn(region: harness.Region) -> None:
    region.poke(0, b"x")
    entry = _pagemap(region.start)
    assert entry & PRESENT and entry & PFN_MASK, hex(entry)


def test_pagemap_sharers_report_the_same_pfn(region: harness.Region) -> None:
    region.poke(0, b"x")
    mine = _pagemap(region.start)

    def child() -> int:
        kapi.peek(region.start, 1)
        return _pagemap(region.start)

    theirs = harness.in_child(child)
    assert mine & PRESENT and theirs & PRESENT, (hex(mine), hex(theirs))
    assert mine & PFN_MASK == theirs & PFN_MASK != 0


# ---------------------------------------------------------------- GUP users

@pytest.mark.parametrize("link", LINKS)
def test_process_vm_readv_of_sharer(region: harness.Region, target: Callable[[bool], Target],
                                    link: str) -> None:
    region.poke(0, b"cross-memory-read")
    t = target(link == "linked")
    assert kapi.process_vm_readv(t.pid, region.start, 17) == b"cross-memory-read"
    t.finish()


def test_process_vm_readv_of_unpopulated_page_reads_zero(
        region: harness.Region, target: Callable[[bool], Target]) -> None:
    t = target(True)
    assert kapi.process_vm_readv(t.pid, region.start + 77 * PAGE, 32) == b"\0" * 32
    t.finish()


@pytest.mark.parametrize("link", LINKS)
def test_process_vm_writev_into_sharer_seen_by_all(
        region: harness.Region, target: Callable[[bool], Target], link: str) -> None:
    t = target(link == "linked")
    assert kapi.process_vm_writev(t.pid, region.start, b"written-remotely") == 16
    assert region.peek(0, 16) == b"written-remotely"
    assert t.finish()[:16] == b"written-remotely"


@pytest.mark.parametrize("link", LINKS)
def test_proc_pid_mem_read_of_sharer(region: harness.Region,
                                     target: Callable[[bool], Target], link: str) -> None:
    region.poke(PAGE, b"via /proc/pid/mem")
    t = target(link == "linked")
    fd = os.open(f"/proc/{t.pid}/mem", os.O_RDONLY)
    try:
        assert os.pread(fd, 17, region.start + PAGE) == b"via /proc/pid/mem"
    finally:
        os.close(fd)
    t.finish()


def test_proc_pid_mem_write_into_sharer_seen_by_all(
        region: harness.Region, target: Callable[[bool], Target]) -> None:
    t = target(True)
    fd = os.open(f"/proc/{t.pid}/mem", os.O_RDWR)
    try:
        assert os.pwrite(fd, b"poked-through-mem", region.start) == 17
    finally:
        os.close(fd)
    assert region.peek(0, 17) == b"poked-through-mem"
    assert t.finish()[:17] == b"poked-through-mem"


@pytest.mark.parametrize("populated", [True, False], ids=["populated", "unpopulated"])
def test_vmsplice_region_pages_into_pipe(region: harness.Region, populated: bool) -> None:
    if populated:
        region.poke(0, harness.pattern(7))
    r, w = os.pipe()
    try:
        assert kapi.vmsplice(w, region.start, PAGE) == PAGE
        assert os.read(r, PAGE) == (harness.pattern(7) if populated else b"\0" * PAGE)
    finally:
        os.close(r)
        os.close(w)


def test_futex_wake_reaches_waiter_in_other_sharer(region: harness.Region) -> None:
    word = region.start + 128
    kapi.poke(word, b"\0\0\0\0")

    def waiter() -> int:
        wakeups = 0
        deadline = time.monotonic() + harness.scaled(60)
        while kapi.peek(word, 4) == b"\0\0\0\0" and time.monotonic() < deadline:
            try:
                kapi.futex_wait(word, 0, 5.0)
                wakeups += 1
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT):
                    raise
        return wakeups

    kid = harness.Child(waiter)
    deadline = time.monotonic() + harness.scaled(30)
    woken = 0
    while woken == 0 and time.monotonic() < deadline:
        woken = kapi.futex_wake(word, 1)
        time.sleep(0.01)
    kapi.poke(word, b"\1\0\0\0")
    kapi.futex_wake(word, 1)
    assert woken == 1, "FUTEX_WAKE never found the other sharer's waiter on the same word"
    assert kid.result() >= 1


# ---------------------------------------------------------------- O_DIRECT

def _tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if path is None:
        if harness.GUEST:
            pytest.fail(f"{name} not found (e2fsprogs/util-linux on the host)")
        pytest.skip(f"{name} not found")
    return path


LOOP_SET_FD, LOOP_CLR_FD, LOOP_CTL_GET_FREE = 0x4C00, 0x4C01, 0x4C82


def _loop_attach(img: Path) -> tuple[str, int]:
    """Bind img to a free loop device (retrying if another worker takes it first)."""
    ctl = os.open("/dev/loop-control", os.O_RDWR)
    try:
        for _ in range(50):
            n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{n}"
            lfd = os.open(dev, os.O_RDWR)
            ifd = os.open(img, os.O_RDWR)
            try:
                fcntl.ioctl(lfd, LOOP_SET_FD, ifd)
                return dev, lfd
            except OSError as e:
                os.close(lfd)
                if e.errno != errno.EBUSY:
                    raise
            finally:
                os.close(ifd)
    finally:
        os.close(ctl)
    raise RuntimeError("no free loop device")


@pytest.fixture(scope="module")
def ext4(msharefs: str) -> Iterator[Path]:
    """A small ext4 on a loop device whose image lives in a private tmpfs."""
    mkfs = _tool("mkfs.ext4")
    base = harness.scratch() / f"ext4-{os.getpid()}"
    tmp, mnt = base / "tmpfs", base / "mnt"
    tmp.mkdir(parents=True, exist_ok=True)
    mnt.mkdir(exist_ok=True)
    kapi.mount("tmpfs", str(tmp), "tmpfs", 0, "size=64m")
    try:
        img = tmp / "ext4.img"
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        subprocess.run([mkfs, "-q", "-F", str(img)], check=True, capture_output=True)
        dev, lfd = _loop_attach(img)
        try:
            kapi.mount(dev, str(mnt), "ext4")
            try:
                yield mnt
            finally:
                kapi.umount2(str(mnt))
        finally:
            fcntl.ioctl(lfd, LOOP_CLR_FD)
            os.close(lfd)
    finally:
        kapi.umount2(str(tmp), kapi.MNT_DETACH)


SIZE = 16 * PAGE


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@pytest.mark.parametrize("populated", [True, False], ids=["populated", "unpopulated"])
def test_o_direct_read_into_region(ext4: Path, region: harness.Region, populated: bool) -> None:
    data = b"".join(harness.pattern(i) for i in range(SIZE // PAGE))
    path = ext4 / f"src-{os.getpid()}-{populated}"
    _write_file(path, data)
    off = 32 * PAGE
    if populated:
        region.poke(off, b"\xff" * SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [region.view(off, SIZE)], 0)
    finally:
        os.close(fd)
        path.unlink()
    assert n == SIZE
    assert region.peek(off, SIZE) == data
    assert harness.in_child(lambda: region.peek(off, SIZE)) == data


def test_o_direct_write_from_region(ext4: Path, region: harness.Region) -> None:
    data = b"".join(harness.pattern(100 + i) for i in range(SIZE // PAGE))
    region.poke(0, data)
    path = ext4 / f"dst-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        n = os.pwritev(fd, [region.view(0, SIZE)], 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert n == SIZE
    with open(path, "rb") as f:
        assert f.read() == data
    path.unlink()


# ---------------------------------------------------------------- core dump

@pytest.mark.serial
@pytest.mark.timeout(240)
def test_core_dump_of_process_holding_region(region: harness.Region) -> None:
    """The dump completes, the region shows as a PT_LOAD of its full size, other memory
    is dumped; with the default coredump_filter a named region's contents are not."""
    region.poke(0, b"in region")
    d = harness.scratch() / f"core-{os.getpid()}"
    d.mkdir(exist_ok=True)
    kapi.mount("tmpfs", str(d), "tmpfs", 0, "size=512m")
    pattern_path = "/proc/sys/kernel/core_pattern"
    with open(pattern_path) as f:
        old_pattern = f.read().strip()
    try:
        with open(pattern_path, "w") as f:
            f.write(f"{d}/core.%p")
        marker = b"MSHARE-CORE-MARKER-" + os.urandom(8).hex().encode()

        def crash() -> None:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
            with open("/proc/self/coredump_filter", "w") as f:
                f.write("0x33")
            kapi.peek(region.start, 1)
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(10)

        child = harness.Child(crash)
        _, status = child.wait_status(timeout=200)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
        assert os.WCOREDUMP(status), "no core dump was written"
        core = (d / f"core.{child.pid}").read_bytes()
    finally:
        with open(pattern_path, "w") as f:
            f.write(old_pattern)
        kapi.umount2(str(d), kapi.MNT_DETACH)
    assert core[:4] == b"\x7fELF" and struct.unpack_from("=H", core, 16)[0] == 4  # ET_CORE
    phoff, = struct.unpack_from("=Q", core, 32)
    phentsize, phnum = struct.unpack_from("=HH", core, 54)
    loads = {}
    for i in range(phnum):
        p_type, _, _, p_vaddr, _, p_filesz, p_memsz = struct.unpack_from(
            "=IIQQQQQ", core, phoff + i * phentsize)
        if p_type == 1:
            loads[p_vaddr] = (p_filesz, p_memsz)
    assert loads.get(region.start, (None, None))[1] == region.size
    assert loads[region.start][0] == 0
    assert marker in core
