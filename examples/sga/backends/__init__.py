"""SGA backends by name: mshare, mshare-huge, shm, fork, hugetlb."""

from __future__ import annotations

from .base import Backend, Memory
from .fork import ForkBackend
from .hugetlb import HugetlbBackend
from .mshare import MshareBackend, MshareHugeBackend
from .shm import ShmBackend

__all__ = ["BACKENDS", "Backend", "Memory", "make_backend"]

BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (MshareBackend, MshareHugeBackend, ShmBackend, ForkBackend,
                        HugetlbBackend)
}


def make_backend(name: str, tag: str, *, reserve_hugepages: bool = False) -> Backend:
    if name == HugetlbBackend.name:
        return HugetlbBackend(tag, reserve=reserve_hugepages)
    try:
        return BACKENDS[name](tag)
    except KeyError:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})") \
            from None
