"""Region stats: what a region holds and costs now, as the kernel counts it.

Read with ``MSHARE_GET_STATS`` on any open descriptor of the region
(:func:`libmshare._libc.get_stats`): :meth:`libmshare.Region.stats` for a mapped
region, :attr:`libmshare.RegionInfo.stats` from :func:`libmshare.stat` and
:func:`libmshare.list_regions` without mapping it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _libc
from ._cgroup import cgroup_dir

__all__ = ["RegionStats"]


@dataclass(frozen=True)
class RegionStats:
    """One region's memory and costs at the moment they were read; all sizes in bytes.

    - ``start``, ``size``: the window; both 0 before the creator's first mmap.
    - ``resident``: the region's memory in RAM (every mapper reaches all of it, so this
      is each mapper's ``Rss`` in ``/proc/PID/smaps`` for the window); ``swapped``: its
      memory in swap; ``pmd_mapped``: the part of ``resident`` mapped by PMD (2 MiB)
      leaves.
    - ``page_tables``: the region's shared page tables, paid once for all mappers.
    - ``mappers``: processes that map the region now.
    - ``memcg_id``: the cgroup id (cgroup v2: the inode number of the group's
      directory) of the memory cgroup charged for the region, 0 if none; ``cgroup``:
      that directory's path under the cgroup2 mount, None when it cannot be found
      (removed, outside this process's view, or no cgroup2 mount).
    """

    start: int
    size: int
    resident: int
    swapped: int
    pmd_mapped: int
    page_tables: int
    mappers: int
    memcg_id: int
    cgroup: str | None


def read_stats(fd: int, path: str) -> RegionStats:
    """:class:`RegionStats` of the msharefs region open on ``fd`` (``path`` for errors)."""
    raw = _libc.get_stats(fd, path)
    return RegionStats(
        start=raw.start, size=raw.size, resident=raw.resident, swapped=raw.swapped,
        pmd_mapped=raw.pmd_mapped, page_tables=raw.page_tables, mappers=raw.nr_mappers,
        memcg_id=raw.memcg_id, cgroup=cgroup_dir(raw.memcg_id),
    )
