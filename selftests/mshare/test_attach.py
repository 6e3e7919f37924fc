"""Attaching to an existing region: from children, unrelated processes, read-only, exec."""

from __future__ import annotations

import errno
import os
import signal
import sys
import textwrap

import harness
import kapi
import pytest
from harness import RW

NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


def _detach_inherited(r: harness.Region) -> None:
    """In a forked child: drop the mapping inherited from the parent."""
    kapi.munmap(r.start, r.size)


def _attach_errno(r: harness.Region, start: int, size: int, prot: int = RW,
                  flags: int = NOREPLACE, readonly: bool = False) -> int | None:
    def body() -> int | None:
        _detach_inherited(r)
        fd = os.open(r.path, os.O_RDONLY if readonly else os.O_RDWR)
        return harness.errno_of(kapi.mmap, start, size, prot, flags, fd)
    got: int | None = harness.in_child(body)
    return got


def test_attach_at_other_address_einval(region: harness.Region, align: int) -> None:
    other = harness.take_window()
    assert _attach_errno(region, other, region.size) == errno.EINVAL


def test_attach_with_shorter_length_einval(regions: harness.Regions, align: int) -> None:
    r = regions.create(units=2)
    assert _attach_errno(r, r.start, align) == errno.EINVAL


def test_attach_with_longer_length_einval(region: harness.Region, align: int) -> None:
    assert _attach_errno(region, region.start, 2 * align) == errno.EINVAL


def test_attach_map_private_einval(region: harness.Region) -> None:
    flags = kapi.MAP_PRIVATE | kapi.MAP_FIXED_NOREPLACE
    assert _attach_errno(region, region.start, region.size, flags=flags) == errno.EINVAL


def test_attach_prot_write_on_rdonly_fd_eacces(region: harness.Region) -> None:
    assert _attach_errno(region, region.start, region.size, readonly=True) == errno.EACCES


def test_attach_without_fixed_flag_lands_at_region_start(region: harness.Region) -> None:
    region.poke(0, b"hint")

    def body() -> tuple[int, bytes]:
        _detach_inherited(region)
        fd = os.open(region.path, os.O_RDWR)
        addr = kapi.mmap(region.start, region.size, RW, kapi.MAP_SHARED, fd)
        return addr, kapi.peek(addr, 4)

    assert harness.in_child(body) == (region.start, b"hint")


def test_attach_twice_in_one_process_eexist(region: harness.Region) -> None:
    fd = os.open(region.path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            kapi.mmap(region.start, region.size, RW, NOREPLACE, fd)
        assert e.value.errno == errno.EEXIST
    finally:
        os.close(fd)


def test_readonly_attach_reads_data(region: harness.Region) -> None:
    region.poke(100, b"read-only view")

    def body() -> tuple[bytes, str]:
        _detach_inherited(region)
        fd = os.open(region.path, os.O_RDONLY)
        start, size = harness.read_info(fd)
        kapi.mmap(start, size, kapi.PROT_READ, NOREPLACE, fd)
        v = kapi.vma_at(start)
        assert v is not None
        return kapi.peek(start + 100, 14), v.perms

    assert harness.in_child(body) == (b"read-only view", "r--s")


def test_write_through_readonly_attach_sigsegv(region: harness.Region) -> None:
    def body() -> None:
        _detach_inherited(region)
        fd = os.open(region.path, os.O_RDONLY)
        kapi.mmap(region.start, region.size, kapi.PROT_READ, NOREPLACE, fd)
        kapi.poke(region.start, b"x")

    assert harness.death_signal(body) == signal.SIGSEGV
    assert region.peek(0, 1) == b"\0"


def test_readonly_attach_sees_later_writes(region: harness.Region) -> None:
    ready, go = harness.Counter(), harness.Gate()

    def body() -> bytes:
        _detach_inherited(region)
        fd = os.open(region.path, os.O_RDONLY)
        kapi.mmap(region.start, region.size, kapi.PROT_READ, NOREPLACE, fd)
        kapi.peek(region.start, 1)  # populate/link before the write
        ready.post()
        go.wait()
        return kapi.peek(region.start, 5)

    child = harness.Child(body)
    ready.wait_for(1)
    region.poke(0, b"later")
    go.open()
    assert child.result() == b"later"


def test_forked_child_inherits_mapping_and_data(region: harness.Region) -> None:
    region.poke(0, b"inherited")

    def body() -> tuple[bytes, tuple[int, int] | None]:
        v = kapi.vma_at(region.start)
        return kapi.peek(region.start, 9), (v.start, v.end) if v else None

    assert harness.in_child(body) == (b"inherited", (region.start, region.start + region.size))


def test_forked_child_writes_seen_by_parent(region: harness.Region) -> None:
    harness.in_child(lambda: kapi.poke(region.start + 4096, b"from child"))
    assert region.peek(4096, 10) == b"from child"


def test_grandchild_of_fork_shares_region(region: harness.Region) -> None:
    def body() -> None:
        harness.in_child(lambda: kapi.poke(region.start + 8192, b"grandchild"))

    harness.in_child(body)
    assert region.peek(8192, 10) == b"grandchild"


def test_child_forked_before_parent_touched_sees_later_data(
        regions: harness.Regions) -> None:
    """The child's top-level entry starts empty and is linked on its first fault."""
    r = regions.create()
    ready, go = harness.Counter(), harness.Gate()

    def body() -> bytes:
        ready.post()
        go.wait()
        return kapi.peek(r.start + 3 * kapi.PAGE, 6)

    child = harness.Child(body)
    ready.wait_for(1)
    r.poke(3 * kapi.PAGE, b"linked")
    go.open()
    assert child.result() == b"linked"


ATTACH_SCRIPT = textwrap.dedent("""
    import os, sys, kapi
    path, off = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDWR)
    raw = os.read(fd, 16)
    start, size = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
    kapi.mmap(start, size, kapi.PROT_READ | kapi.PROT_WRITE,
              kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE, fd)
    sys.stdout.write(kapi.peek(start + off, 6).decode())
    kapi.poke(start + off, b"answer")
""")


def test_unrelated_process_attaches_and_shares(region: harness.Region) -> None:
    region.poke(12345, b"unrela")
    out = harness.run_python(ATTACH_SCRIPT, region.path, "12345")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "unrela"
    assert region.peek(12345, 6) == b"answer"


def test_exec_detaches_and_new_program_can_attach(region: harness.Region) -> None:
    """After exec the window is empty; the new program attaches by name."""
    region.poke(0, b"before")
    script = "import kapi, sys; s = int(sys.argv[3]); " \
             "assert kapi.vma_at(s) is None, 'mapping survived exec'\n" + ATTACH_SCRIPT

    def body() -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(harness.HERE), str(harness.REPO)])
        os.execve(sys.executable, [sys.executable, "-c", script, region.path, "0",
                                      str(region.start)], env)

    child = harness.Child(body)
    _, status = child.wait_status()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert region.peek(0, 6) == b"answer"


def test_many_attachers_each_see_all_writes(region: harness.Region) -> None:
    n = 24
    ready, go = harness.Counter(), harness.Gate()

    def body(i: int) -> bytes:
        _detach_inherited(region)
        fd = os.open(region.path, os.O_RDWR)
        start, size = harness.read_info(fd)
        kapi.mmap(start, size, RW, NOREPLACE, fd)
        kapi.poke(start + i * 8, i.to_bytes(8, "little"))
        ready.post()
        go.wait()
        return kapi.peek(start, n * 8)

    kids = [harness.Child(body, i) for i in range(n)]
    ready.wait_for(n)
    go.open()
    expect = b"".join(i.to_bytes(8, "little") for i in range(n))
    assert all(k.result() == expect for k in kids)
    assert region.peek(0, n * 8) == expect


def test_full_munmap_detaches_without_touching_others(region: harness.Region) -> None:
    region.poke(0, b"stay")

    def body() -> tuple[bool, bytes]:
        kapi.munmap(region.start, region.size)
        gone = kapi.vma_at(region.start) is None
        fd = os.open(region.path, os.O_RDWR)
        kapi.mmap(region.start, region.size, RW, NOREPLACE, fd)
        return gone, kapi.peek(region.start, 4)

    assert harness.in_child(body) == (True, b"stay")
    assert region.peek(0, 4) == b"stay"


def test_access_after_detach_sigsegv(region: harness.Region) -> None:
    def body() -> None:
        kapi.munmap(region.start, region.size)
        kapi.peek(region.start, 1)

    assert harness.death_signal(body) == signal.SIGSEGV


def test_munmap_of_range_covering_region_detaches(region: harness.Region) -> None:
    """A range larger than the region on both sides still unmaps the whole VMA."""
    def body() -> bool:
        kapi.munmap(region.start - kapi.PAGE, region.size + 2 * kapi.PAGE)
        return kapi.vma_at(region.start) is None

    assert harness.in_child(body) is True
