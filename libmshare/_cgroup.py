"""Finding a cgroup v2 group's directory from its id.

The kernel names a memory cgroup by its cgroup id, which on cgroup v2 is the inode
number of the group's directory (1 for the root).  Turning it into a path means
walking the cgroup2 mount; the answers are remembered, since a region's memcg rarely
changes and ``mshare top`` asks again on every refresh.  A remembered path is checked
(its inode still the id) before use.  "Not found" is remembered too: ids are never
reused and a group exists before anything is charged to it, so a missing group cannot
appear later, unless cgroup2 is mounted anew (the cache is dropped then).
"""

from __future__ import annotations

import os

from .fs import find_mounts

__all__ = ["cgroup_dir"]

CGROUP2 = "cgroup2"

_known: dict[int, str | None] = {}
_known_mounts: list[str] = []


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _search(root: str, cgroup_id: int) -> str | None:
    if _ino(root) == cgroup_id:
        return root
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed while we walked, or not ours to read
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            # kernfs gives a group's id as d_ino already: no stat for each group.
            if entry.inode() == cgroup_id and _ino(entry.path) == cgroup_id:
                return entry.path
            pending.append(entry.path)
    return None


def cgroup_dir(cgroup_id: int) -> str | None:
    """The directory of cgroup v2 group ``cgroup_id`` under a cgroup2 mount, or None.

    None for id 0 (no cgroup), without a cgroup2 mount, and for a group not found
    there: removed (its memory can stay charged to it) or outside this process's view.
    """
    if cgroup_id <= 0:
        return None
    mounts = find_mounts(CGROUP2)
    if mounts != _known_mounts:
        _known.clear()
        _known_mounts[:] = mounts
    if cgroup_id in _known:
        path = _known[cgroup_id]
        if path is None or _ino(path) == cgroup_id:
            return path
    path = None
    for mount in mounts:
        path = _search(mount, cgroup_id)
        if path is not None:
            break
    _known[cgroup_id] = path
    return path
