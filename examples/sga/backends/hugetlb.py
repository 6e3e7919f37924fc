"""2 MiB huge pages: a memfd_create(MFD_HUGETLB) file, attached through /proc/PID/fd.

A hugetlb mapping needs its huge pages reserved in the pool when it is mapped (mmap
fails with ENOMEM otherwise, instead of a SIGBUS later).  With ``reserve=True`` (root,
as in the guest) the backend grows /proc/sys/vm/nr_hugepages by what it lacks and
gives the pages back in :meth:`destroy`.
"""

from __future__ import annotations

import contextlib
import mmap
import os

from mshare_lab.proc import meminfo_kib

from .base import Backend, Memory, mmap_memory

__all__ = ["HUGE_PAGE", "HugetlbBackend"]

HUGE_PAGE = 2 << 20
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def _round_up(n: int) -> int:
    return -(-n // HUGE_PAGE) * HUGE_PAGE


class HugetlbBackend(Backend):
    name = "hugetlb"

    def __init__(self, tag: str, *, reserve: bool = False) -> None:
        super().__init__(tag)
        self.reserve = reserve
        self._fd = -1
        self._old_nr: int | None = None
        self._mmaps: list[mmap.mmap] = []

    def describe(self) -> str:
        return "hugetlb (2 MiB pages)"

    def _pages_free(self) -> int:
        return meminfo_kib("HugePages_Free", default=0)

    def unavailable(self, size: int) -> str | None:
        if not hasattr(os, "MFD_HUGETLB"):
            return "this Python has no os.MFD_HUGETLB"
        if meminfo_kib("Hugepagesize", default=0) != HUGE_PAGE // 1024:
            return "the default huge page size is not 2 MiB (or there is no hugetlb)"
        need = _round_up(size) // HUGE_PAGE
        free = self._pages_free()
        if free < need and self.reserve:
            self._grow_pool(need - free)
            free = self._pages_free()
        if free < need:
            how = "" if self.reserve else " (reserve them: --reserve-hugepages, as root)"
            return f"{need} free 2 MiB huge pages needed, {free} available{how}"
        return None

    def _grow_pool(self, extra: int) -> None:
        try:
            with open(NR_HUGEPAGES) as f:
                old = int(f.read())
            with open(NR_HUGEPAGES, "w") as f:
                f.write(f"{old + extra}\n")
        except OSError:
            return  # not root, or a read-only /proc/sys: unavailable() says why
        if self._old_nr is None:
            self._old_nr = old

    def create(self, size: int) -> Memory:
        self._fd = os.memfd_create(f"libmshare-sga-{self.tag}", os.MFD_HUGETLB)
        length = _round_up(size)
        os.ftruncate(self._fd, length)
        m = mmap.mmap(self._fd, length, mmap.MAP_SHARED)
        self._mmaps.append(m)
        return mmap_memory(m, size)

    def address(self) -> str:
        # Opening a memfd's /proc link opens the same file, like a name would.
        return f"/proc/{os.getpid()}/fd/{self._fd}"

    def attach(self, address: str, size: int) -> Memory:
        fd = os.open(address, os.O_RDWR | os.O_CLOEXEC)
        try:
            m = mmap.mmap(fd, _round_up(size), mmap.MAP_SHARED)
        finally:
            os.close(fd)
        return mmap_memory(m, size)

    def destroy(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._old_nr is not None:
            with contextlib.suppress(OSError), open(NR_HUGEPAGES, "w") as f:
                f.write(f"{self._old_nr}\n")
            self._old_nr = None
