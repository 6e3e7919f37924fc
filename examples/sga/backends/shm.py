"""POSIX shared memory: a MAP_SHARED file in /dev/shm, attached by name."""

from __future__ import annotations

import contextlib
import mmap
import os

from .base import Backend, Memory, mmap_memory, populate_mmap

__all__ = ["ShmBackend"]

SHM_DIR = "/dev/shm"


class ShmBackend(Backend):
    name = "shm"

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.path = os.path.join(SHM_DIR, f"libmshare-sga-{tag}")
        self._created = False
        self._mmaps: list[mmap.mmap] = []

    def unavailable(self, size: int) -> str | None:
        if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
            return f"{SHM_DIR} is missing or not writable"
        return None

    def create(self, size: int) -> Memory:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._created = True
        try:
            os.ftruncate(fd, size)
            m = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self._mmaps.append(m)
        return mmap_memory(m, size)

    def address(self) -> str:
        return self.path

    def attach(self, address: str, size: int) -> Memory:
        fd = os.open(address, os.O_RDWR | os.O_CLOEXEC)
        try:
            m = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        return mmap_memory(m, size)

    def populate(self, memory: Memory) -> None:
        for m in self._mmaps:
            populate_mmap(m)

    def destroy(self) -> None:
        if self._created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._created = False
