"""What every SGA backend provides: create, attach by address, destroy."""

from __future__ import annotations

import mmap
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

__all__ = ["Backend", "Memory", "mmap_memory"]

# Linux 5.14+; Python 3.11's mmap module does not name it.
MADV_POPULATE_WRITE = 23


class Memory:
    """A mapping of the SGA in this process: ``view`` covers exactly the SGA's bytes."""

    def __init__(self, view: memoryview, on_close: Callable[[], None]) -> None:
        self.view = view
        self._on_close: Callable[[], None] | None = on_close

    def close(self) -> None:
        if self._on_close is None:
            return
        self.view.release()
        on_close, self._on_close = self._on_close, None
        on_close()


def mmap_memory(m: mmap.mmap, size: int) -> Memory:
    """Wrap a Python mmap; the view is cut to ``size`` (the mapping may be longer)."""
    whole = memoryview(m)
    view = whole[:size]

    def close() -> None:
        whole.release()
        m.close()

    return Memory(view, close)


class Backend(ABC):
    """One way of sharing the SGA.  ``tag`` makes the names of one run unique.

    The instance calls :meth:`create` and later :meth:`destroy`; each server calls
    :meth:`attach` with the string :meth:`address` gave in the instance.  Backends with
    ``inherits`` set are created before the servers are forked, and attach is then the
    inherited mapping (fork-inherited shared memory has no name to attach by).
    """

    name: ClassVar[str]
    inherits: ClassVar[bool] = False

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def unavailable(self, size: int) -> str | None:
        """None if this backend can run an SGA of ``size`` here, else the reason."""
        del size
        return None

    def describe(self) -> str:
        return self.name

    @abstractmethod
    def create(self, size: int) -> Memory:
        """Create the shared memory (zero-filled, nothing touched yet) and map it."""

    @abstractmethod
    def address(self) -> str:
        """What a server needs to attach (a path, a region name)."""

    @abstractmethod
    def attach(self, address: str, size: int) -> Memory:
        """Map the SGA in a server process, the way a new connection would."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove every name this backend created.  Idempotent; safe after a failure."""

    def populate(self, memory: Memory) -> None:
        """Prefault the instance's mapping before it formats the SGA (a speed hint)."""


def populate_mmap(m: mmap.mmap) -> None:
    """MADV_POPULATE_WRITE: one system call instead of a fault per page; best effort."""
    try:
        m.madvise(MADV_POPULATE_WRITE)
    except OSError:
        pass
