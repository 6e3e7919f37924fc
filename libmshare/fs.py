"""Finding, mounting and describing msharefs.

Test hook: if the environment variable ``LIBMSHARE_FAKE_MOUNT`` names a directory,
that directory is used as the mount point and regions in it are *emulated* on the
ordinary file system it lives on (see :mod:`libmshare._backend`).  It must hold an
``mshare_info`` file like the real one, which lets host tests scale the 512 GiB
alignment down.  It exists for tests on kernels without msharefs; leave it unset in
real use.  It never changes :func:`kernel_supports`, which always describes the
running kernel.
"""

from __future__ import annotations

import errno
import mmap as _pymmap
import os
import re
from dataclasses import dataclass

from . import _libc
from .errors import (
    MshareInfoError,
    MsharePermissionError,
    NotMountedError,
    NotSupportedError,
    from_oserror,
)

__all__ = [
    "DEFAULT_MOUNT",
    "FAKE_MOUNT_ENV",
    "FSTYPE",
    "INFO_FILE",
    "Mount",
    "MountEntry",
    "alignment",
    "ensure_mounted",
    "find_mount",
    "find_mounts",
    "kernel_supports",
    "mount",
    "mount_table",
    "parse_mshare_info",
    "read_alignment",
    "resolve_mount",
]

DEFAULT_MOUNT = "/sys/fs/mshare"
FSTYPE = "msharefs"
INFO_FILE = "mshare_info"
FAKE_MOUNT_ENV = "LIBMSHARE_FAKE_MOUNT"

_PROC_FILESYSTEMS = "/proc/filesystems"
_PROC_MOUNTS = "/proc/self/mounts"
_INFO_RE = re.compile(rb"[1-9][0-9]*\n")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """A resolved mount point; ``emulated`` is True only for the test hook."""

    path: str
    emulated: bool = False


def kernel_supports() -> bool:
    """True if the running kernel registers msharefs.  Never raises."""
    try:
        with open(_PROC_FILESYSTEMS, encoding="ascii", errors="replace") as f:
            return any(line.split()[-1:] == [FSTYPE] for line in f)
    except OSError:
        return False


def _unescape(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mounts, unescaped; ``options`` as the kernel lists them."""

    source: str
    target: str
    fstype: str
    options: tuple[str, ...]


def mount_table() -> list[MountEntry]:
    """Every mount of this process, in mount order ([] if /proc is not readable)."""
    try:
        with open(_PROC_MOUNTS, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [MountEntry(_unescape(f[0]), _unescape(f[1]), f[2], tuple(f[3].split(",")))
            for f in (line.split() for line in lines) if len(f) >= 4]


def find_mounts(fstype: str = FSTYPE) -> list[str]:
    """Every mount point of ``fstype`` (msharefs) of this process, in mount order."""
    return [m.target for m in mount_table() if m.fstype == fstype]


def _fake_mount() -> str | None:
    return os.environ.get(FAKE_MOUNT_ENV) or None


def _preferred(mounts: list[str]) -> str | None:
    if DEFAULT_MOUNT in mounts:
        return DEFAULT_MOUNT
    return mounts[0] if mounts else None


def find_mount() -> str | None:
    """The msharefs mount point to use, or None.  Prefers :data:`DEFAULT_MOUNT`."""
    fake = _fake_mount()
    return fake if fake is not None else _preferred(find_mounts())


def _not_available(path: str) -> NotMountedError | NotSupportedError:
    if not kernel_supports():
        return NotSupportedError(
            errno.ENODEV,
            f"the running kernel ({os.uname().release}) has no msharefs "
            f"(no {FSTYPE} in {_PROC_FILESYSTEMS}; it needs CONFIG_MSHARE=y)",
        )
    return NotMountedError(
        errno.ENOENT,
        "msharefs is not mounted here (mount it with 'mshare mount' as root, or "
        f"'mount -t {FSTYPE} {FSTYPE} {DEFAULT_MOUNT}')",
        path,
    )


# Mount points verified against /proc/self/mounts, with their st_dev then: a later
# stat() giving the same st_dev proves the same mount is still there (an unmount or
# a remount changes it), without re-reading the mount table on every call.
_verified: dict[str | None, tuple[str, int]] = {}


def _dev(path: str) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def resolve_mount(mount: str | None = None) -> Mount:
    """Turn a ``mount=`` argument into a checked :class:`Mount`.

    None means :func:`find_mount`.  An explicit path must be an msharefs mount point
    (or the test hook's directory): mapping an ordinary empty file instead would
    fault with SIGBUS on first touch.
    """
    fake = _fake_mount()
    if fake is not None:
        fake = os.path.abspath(fake)
        if mount is None or os.path.abspath(mount) == fake:
            return Mount(fake, emulated=True)
    key = None if mount is None else os.path.abspath(mount)
    cached = _verified.get(key)
    if cached is not None and _dev(cached[0]) == cached[1]:
        return Mount(cached[0])
    mounts = find_mounts()
    path = _preferred(mounts) if key is None else key
    if path is None or path not in mounts:
        raise _not_available(path or DEFAULT_MOUNT)
    dev = _dev(path)
    if dev is not None:
        _verified[key] = _verified[path] = (path, dev)
    return Mount(path)


def mount(path: str = DEFAULT_MOUNT) -> str:
    """Mount msharefs at ``path`` unless it is mounted there already; returns ``path``.

    Needs CAP_SYS_ADMIN; without it raises :class:`MsharePermissionError` saying so.
    """
    path = os.path.abspath(path)
    if path in find_mounts():
        return path
    if not kernel_supports():
        raise _not_available(path)
    try:
        _libc.mount(FSTYPE, path, FSTYPE)
    except MsharePermissionError as e:
        raise MsharePermissionError(
            e.errno, "mount: mounting msharefs needs CAP_SYS_ADMIN (run as root)", path
        ) from None
    return path


def ensure_mounted() -> str:
    """The msharefs mount point, mounting it at :data:`DEFAULT_MOUNT` if needed."""
    found = find_mount()
    return found if found is not None else mount(DEFAULT_MOUNT)


def parse_mshare_info(text: str | bytes) -> int:
    """Parse the text of ``mshare_info``: decimal digits and one newline.

    The value must be a power of two no smaller than the page size (a mapping
    granule); anything else raises :class:`MshareInfoError` quoting the text.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    if not _INFO_RE.fullmatch(raw):
        raise MshareInfoError(
            f"mshare_info text {raw[:64]!r} is not decimal digits followed by one newline"
        )
    value = int(raw)
    if value & (value - 1) or not _pymmap.PAGESIZE <= value <= 1 << 63:
        raise MshareInfoError(
            f"mshare_info value {value} is not a power of two between the page size "
            f"{_pymmap.PAGESIZE} and 2**63"
        )
    return value


def alignment(*, mount: str | None = None) -> int:
    """The alignment unit in bytes (512 GiB on x86_64), read from ``<mount>/mshare_info``."""
    return read_alignment(resolve_mount(mount).path)


# The unit is the kernel's top-level table span, fixed for a mount's life: read once per
# verified mount (path and st_dev, see _verified), it saves three system calls a create.
_alignments: dict[tuple[str, int], int] = {}


def read_alignment(mount_path: str) -> int:
    """:func:`alignment` for a mount point already resolved."""
    verified = _verified.get(mount_path)
    if verified is None:
        return _read_alignment(mount_path)
    value = _alignments.get(verified)
    if value is None:
        value = _alignments[verified] = _read_alignment(mount_path)
    return value


def _read_alignment(mount_path: str) -> int:
    info = os.path.join(mount_path, INFO_FILE)
    try:
        fd = os.open(info, os.O_RDONLY)
        try:
            # Longer than any valid text (20 bytes for 2**63), so trailing junk is seen.
            text = os.read(fd, 32)
        finally:
            os.close(fd)
    except OSError as e:
        raise from_oserror(e, "read", info) from None
    return parse_mshare_info(text)
