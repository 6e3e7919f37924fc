"""msharefs through libmshare: one alignment unit of address space, the first S bytes used.

Servers attach by region name with ``libmshare.Region.attach``, which maps the region
at its fixed start and, on our kernel, uses the region's own page tables.  ``mshare-huge``
is the same region asking for 2 MiB pages (``create(huge=True)``, series v6): PMD leaves
in the shared tables, 4 KiB pages where THP has none to give, nothing reserved.
"""

from __future__ import annotations

import contextlib
import os

import libmshare
from libmshare.fs import FAKE_MOUNT_ENV

from .base import Backend, Memory

__all__ = ["MshareBackend", "MshareHugeBackend"]


def _emulated() -> bool:
    return bool(os.environ.get(FAKE_MOUNT_ENV))


class MshareBackend(Backend):
    name = "mshare"
    huge = False

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.region_name = f"libmshare-sga-{'huge-' if self.huge else ''}{tag}"
        self._created = False

    def describe(self) -> str:
        if _emulated():
            return f"{self.name} (EMULATED by {FAKE_MOUNT_ENV}: no page-table sharing)"
        return self.name

    def unavailable(self, size: int) -> str | None:
        if _emulated():
            return None
        if not libmshare.kernel_supports():
            return f"the running kernel ({os.uname().release}) has no msharefs"
        try:
            libmshare.ensure_mounted()
        except libmshare.MshareError as e:
            return f"msharefs is not mounted and could not be: {e}"
        return None

    def create(self, size: int) -> Memory:
        region = libmshare.Region.create(self.region_name, size, round_up=True,
                                         huge=self.huge)
        self._created = True
        return _region_memory(region, size)

    def address(self) -> str:
        return self.region_name

    def attach(self, address: str, size: int) -> Memory:
        return _region_memory(libmshare.Region.attach(address), size)

    def destroy(self) -> None:
        if self._created:
            with contextlib.suppress(libmshare.RegionNotFoundError):
                libmshare.unlink(self.region_name)
            self._created = False


def _region_memory(region: libmshare.Region, size: int) -> Memory:
    if region.size < size:
        region.close()
        raise ValueError(f"region {region.name!r} is {region.size} bytes, less than {size}")
    view = region.buf[:size]
    # Memory.close releases the slice first, so Region.close finds no live export.
    return Memory(view, region.close)


class MshareHugeBackend(MshareBackend):
    """A region of 2 MiB pages; a kernel before series v6 fails its create (ENOTTY,
    NotSupportedError saying so)."""

    name = "mshare-huge"
    huge = True

    def describe(self) -> str:
        return super().describe() + " (2 MiB pages)"
