"""A PROT_READ attach works under every personality (second review, F3).

Under READ_IMPLIES_EXEC, do_mmap() adds PROT_EXEC to every PROT_READ mapping; a window
must still attach, without VM_EXEC (its host PTEs are NX, so an x bit would be a lie in
/proc/PID/maps).  Without the personality PROT_READ|PROT_EXEC stays EINVAL
(test_safety.py's test_attach_with_prot_einval).
"""

from __future__ import annotations

import os

import harness
import kapi

NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


def _attach_under_read_implies_exec(r: harness.Region, prot: int) -> tuple[str, bytes]:
    """In a child: set READ_IMPLIES_EXEC, attach with prot; (perms in maps, first bytes)."""
    kapi.munmap(r.start, r.size)
    kapi.personality(kapi.READ_IMPLIES_EXEC)
    assert kapi.personality(kapi.PER_QUERY) & kapi.READ_IMPLIES_EXEC
    fd = os.open(r.path, os.O_RDWR if prot & kapi.PROT_WRITE else os.O_RDONLY)
    kapi.mmap(r.start, r.size, prot, NOREPLACE, fd)
    vma = kapi.vma_at(r.start)
    assert vma is not None and (vma.start, vma.end) == (r.start, r.start + r.size), vma
    return vma.perms, kapi.peek(r.start, 8)


def test_read_only_attach_under_read_implies_exec_succeeds(region: harness.Region) -> None:
    def body() -> int | None:
        return harness.errno_of(_attach_under_read_implies_exec, region, kapi.PROT_READ)

    assert harness.in_child(body) is None


def test_read_only_attach_under_read_implies_exec_maps_r_s(region: harness.Region) -> None:
    perms, _ = harness.in_child(_attach_under_read_implies_exec, region, kapi.PROT_READ)
    assert perms == "r--s"


def test_read_only_attach_under_read_implies_exec_reads_creator_data(
        region: harness.Region) -> None:
    region.poke(0, b"creator!")
    _, data = harness.in_child(_attach_under_read_implies_exec, region, kapi.PROT_READ)
    assert data == b"creator!"


def test_read_write_attach_under_read_implies_exec_maps_rw_s(region: harness.Region) -> None:
    perms, _ = harness.in_child(_attach_under_read_implies_exec, region, harness.RW)
    assert perms == "rw-s"


def test_read_write_attach_under_read_implies_exec_writes_reach_creator(
        region: harness.Region) -> None:
    def body() -> None:
        _attach_under_read_implies_exec(region, harness.RW)
        kapi.poke(region.start, b"written")

    harness.in_child(body)
    assert region.peek(0, 7) == b"written"
