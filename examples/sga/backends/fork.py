"""Fork-inherited MAP_SHARED|MAP_ANONYMOUS memory, as PostgreSQL's postmaster does it.

There is no name: the instance maps the memory before it forks the servers, and a
server "attaches" by using the mapping it inherited.
"""

from __future__ import annotations

import mmap

from .base import Backend, Memory, populate_mmap

__all__ = ["ForkBackend"]


class ForkBackend(Backend):
    name = "fork"
    inherits = True

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self._mmap: mmap.mmap | None = None

    def create(self, size: int) -> Memory:
        # fileno -1: Python maps MAP_SHARED|MAP_ANONYMOUS.
        self._mmap = mmap.mmap(-1, size, mmap.MAP_SHARED)
        return self._inherited(size)

    def _inherited(self, size: int) -> Memory:
        if self._mmap is None:
            raise RuntimeError("fork backend: create() must run before the servers fork")
        whole = memoryview(self._mmap)
        view = whole[:size]
        # Closing one process's view leaves the mapping to the others and to exit.
        return Memory(view, whole.release)

    def address(self) -> str:
        return "inherited"

    def attach(self, address: str, size: int) -> Memory:
        return self._inherited(size)

    def populate(self, memory: Memory) -> None:
        if self._mmap is not None:
            populate_mmap(self._mmap)

    def destroy(self) -> None:
        # Nothing has a name; the memory goes with the last process that maps it.
        return None
