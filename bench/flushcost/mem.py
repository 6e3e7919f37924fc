"""The three kinds of shared memory compared (README.md's "Backends": ``region``,
``shm``, ``anon``), as raw mappings, plus pagemap PFNs.

Raw system calls only (the SDK's binding layer and :mod:`mmap`): no SDK bookkeeping
across fork().
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import struct
from dataclasses import dataclass

import libmshare
from libmshare import _libc
from libmshare.addrspace import find_free_window
from mshare_lab import kapi

__all__ = ["BACKENDS", "PAGE", "Mapping", "address", "anon_premap", "attach", "create", "path", "pfns",
           "remove"]

PAGE = 4096
BACKENDS = ("region", "shm", "anon")
SHM_DIR = "/dev/shm"


@dataclass
class Mapping:
    """One process's view of the shared memory: ``buf`` covers the first nbytes."""

    backend: str
    addr: int
    length: int  # what was mapped (a whole window for a region)
    buf: memoryview
    fd: int = -1
    owner: mmap.mmap | None = None  # the mmap object behind buf (shm, anon)

    def close(self) -> None:
        self.buf.release()
        if self.owner is not None:
            if self.backend != "anon":  # the inherited anon mapping dies with the process
                self.owner.close()
        else:
            _libc.munmap(self.addr, self.length)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _region_map(fd: int, start: int, length: int, nbytes: int) -> Mapping:
    """MAP_SHARED|MAP_FIXED_NOREPLACE of a region's whole window at its start."""
    addr = _libc.mmap(start, length, _libc.PROT_READ | _libc.PROT_WRITE,
                      _libc.MAP_SHARED | _libc.MAP_FIXED_NOREPLACE, fd)
    return Mapping("region", addr, length, kapi.view(addr, nbytes), fd)


def address(m: mmap.mmap) -> int:
    """Where ``m`` is mapped in this process."""
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def _mm_view(m: mmap.mmap, nbytes: int) -> tuple[int, memoryview]:
    return address(m), memoryview(m)[:nbytes]


def _shm_map(fd: int, nbytes: int) -> Mapping:
    """A sharer's MAP_SHARED mapping of the /dev/shm file open at fd."""
    m = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    addr, buf = _mm_view(m, nbytes)
    return Mapping("shm", addr, nbytes, buf, fd, m)


def path(backend: str, name: str) -> str:
    """The file the sharers of a region or of a /dev/shm file open."""
    if backend == "region":
        return os.path.join(libmshare.ensure_mounted(), name)
    return os.path.join(SHM_DIR, name)


def anon_premap(nbytes: int) -> mmap.mmap:
    """The driver's MAP_SHARED|MAP_ANONYMOUS mapping, made before fork()."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


def create(backend: str, name: str, nbytes: int, inherited: mmap.mmap | None) -> Mapping:
    """The first sharer: make the memory (no page is touched here)."""
    if backend == "region":
        file = path(backend, name)  # mounts msharefs if needed: before alignment() reads it
        align = libmshare.alignment()
        window = -(-nbytes // align) * align
        fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        start = find_free_window(window, align)
        if start is None:
            os.close(fd)
            raise OSError(0, "no free aligned window for the region")
        return _region_map(fd, start, window, nbytes)
    if backend == "shm":
        fd = os.open(path(backend, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(fd, nbytes)
        return _shm_map(fd, nbytes)
    return attach(backend, name, nbytes, inherited)  # anon: made before fork()


def attach(backend: str, name: str, nbytes: int, inherited: mmap.mmap | None) -> Mapping:
    """Any other sharer: map the memory the first one made (no page is touched)."""
    if backend == "region":
        fd = os.open(path(backend, name), os.O_RDWR)
        start, size = struct.unpack("QQ", os.pread(fd, 16, 0))
        if size < nbytes:
            os.close(fd)
            raise OSError(0, f"region {name} is {size} bytes, not {nbytes}")
        return _region_map(fd, start, size, nbytes)
    if backend == "shm":
        return _shm_map(os.open(path(backend, name), os.O_RDWR), nbytes)
    if backend == "anon":
        if inherited is None:
            raise ValueError("anon needs the mapping inherited from the driver")
        addr, buf = _mm_view(inherited, nbytes)
        return Mapping(backend, addr, nbytes, buf, -1, inherited)
    raise ValueError(f"unknown backend {backend!r}")


def remove(backend: str, name: str) -> None:
    """Unlink what create() made (the memory goes with the last mapping)."""
    if backend != "anon":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path(backend, name))


def pfns(addr: int, nbytes: int) -> list[int]:
    """PFN of each page of [addr, addr+nbytes) in this process (0: not present); the
    kernel shows PFNs to CAP_SYS_ADMIN only (the guest runs as root)."""
    return [e & kapi.PM_PFN_MASK if e & kapi.PM_PRESENT else 0
            for e in kapi.pagemap(addr, nbytes // PAGE)]
