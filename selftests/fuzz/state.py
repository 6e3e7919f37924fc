"""A fuzzing worker's view of its regions, and how it records what went wrong."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from mshare_lab import kapi

from . import layout

RW = kapi.PROT_READ | kapi.PROT_WRITE
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE


class Finding(Exception):
    """A call whose outcome differs from the contract's."""


@dataclass
class View:
    """One region as this worker maps it (prot None: detached)."""

    index: int
    path: str
    start: int
    size: int
    prot: int | None = RW
    fd: int = -1
    linked: bool = False  # touched since attaching, so its top-level entry is linked

    @property
    def writable(self) -> bool:
        return self.prot == RW

    def detach(self) -> None:
        kapi.munmap(self.start, self.size)
        self.prot = None
        self.linked = False

    def attach(self, prot: int, flags: int = 0) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR if prot == RW else os.O_RDONLY)
        kapi.mmap(self.start, self.size, prot, NOREPLACE | flags, self.fd)
        self.prot = prot
        self.linked = False


@dataclass
class Worker:
    wid: int
    batch: int
    coordinator: int
    views: list[View]
    shadow: dict[tuple[int, int], int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    lock_future: bool = False

    def expect(self, what: str, got: object, want: object) -> None:
        if got != want:
            raise Finding(f"{what}: expected {want!r}, got {got!r}")

    def expect_errno(self, what: str, fn: object, *args: object, want: int | None) -> None:
        try:
            fn(*args)  # type: ignore[operator]
            got = None
        except OSError as e:
            got = e.errno
        if got != want:
            name = kapi.errno_name(want) if want else "success"
            raise Finding(f"{what}: expected {name}, got "
                          f"{kapi.errno_name(got) if got else 'success'}")

    def slot_value(self, v: View, off: int) -> int:
        return self.shadow.get((v.index, off), 0)

    def check_data(self, v: View, off: int, what: str) -> None:
        got = layout.peek_data(v.start, off)
        v.linked = True
        self.expect(f"{what}: data page {off // layout.PAGE} of region {v.index}",
                    got, layout.data_want(self.batch, v.index, off))
