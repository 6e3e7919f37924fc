"""Region names: relative paths inside the msharefs mount, checked before use."""

from __future__ import annotations

import os

from .errors import RegionNameError
from .fs import INFO_FILE

__all__ = ["region_path", "validate_name"]


def validate_name(name: str, mount: str) -> str:
    """Return the canonical relative name, or raise :class:`RegionNameError`.

    ``"db"`` and ``"app/db"`` are names; an absolute path is accepted only inside
    ``mount`` and is made relative.  Empty names and components, ``.``, ``..``, NUL
    and the reserved ``mshare_info`` are refused, so a name can never reach outside
    the mount or alias another one.
    """
    if not isinstance(name, str):
        raise TypeError(f"region name must be str, not {type(name).__name__}")
    if not name:
        raise RegionNameError("region name is empty")
    if "\0" in name:
        raise RegionNameError(f"region name {name!r} contains a NUL character")
    rel = name
    if name.startswith("/"):
        prefix = mount.rstrip("/") + "/"
        if not name.startswith(prefix):
            raise RegionNameError(
                f"absolute path {name!r} is outside the msharefs mount {mount!r}"
            )
        rel = name[len(prefix):]
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise RegionNameError(
                f"region name {name!r} has an empty, '.' or '..' path component"
            )
    if parts == [INFO_FILE]:
        raise RegionNameError(f"region name {name!r} is reserved by msharefs")
    return rel


def region_path(name: str, mount: str) -> str:
    return os.path.join(mount, validate_name(name, mount))
