"""libmshare: Python SDK for msharefs, page tables shared between processes.

Quick start (as root once: ``mshare mount``)::

    import libmshare
    with libmshare.create("db", 1 << 20, round_up=True) as r:   # creator
        r.buf[:5] = b"hello"
    with libmshare.attach("db") as r:                           # any other process
        assert bytes(r.buf[:5]) == b"hello"
    libmshare.unlink("db")

See :mod:`libmshare.region` for the region life cycle, :mod:`libmshare.fs` for
mounting (and the ``LIBMSHARE_FAKE_MOUNT`` test hook), :mod:`libmshare.errors` for the
exceptions.
"""

from .errors import (
    AddressInUseError,
    AddressRangeError,
    AlignmentError,
    AtomicUnavailableError,
    MisalignedError,
    MshareError,
    MshareInfoError,
    MsharePermissionError,
    MshareValueError,
    NotARegionError,
    NotMountedError,
    NotSupportedError,
    RegionClosedError,
    RegionEstablishedError,
    RegionExistsError,
    RegionLimitError,
    RegionNameError,
    RegionNotEstablishedError,
    RegionNotFoundError,
    SizeSyntaxError,
)
from .fs import (
    DEFAULT_MOUNT,
    alignment,
    ensure_mounted,
    find_mount,
    kernel_supports,
    mount,
    parse_mshare_info,
)
from .region import (
    DEFAULT_TIMEOUT,
    Region,
    RegionInfo,
    attach,
    create,
    list_regions,
    mkdir,
    rmdir,
    stat,
    unlink,
)
from .sizes import format_size, parse_address, parse_size
from .stats import RegionStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MOUNT",
    "DEFAULT_TIMEOUT",
    "AddressInUseError",
    "AddressRangeError",
    "AlignmentError",
    "AtomicUnavailableError",
    "MisalignedError",
    "MshareError",
    "MshareInfoError",
    "MsharePermissionError",
    "MshareValueError",
    "NotARegionError",
    "NotMountedError",
    "NotSupportedError",
    "Region",
    "RegionClosedError",
    "RegionEstablishedError",
    "RegionExistsError",
    "RegionInfo",
    "RegionLimitError",
    "RegionNameError",
    "RegionNotEstablishedError",
    "RegionNotFoundError",
    "RegionStats",
    "SizeSyntaxError",
    "alignment",
    "attach",
    "create",
    "ensure_mounted",
    "find_mount",
    "format_size",
    "kernel_supports",
    "list_regions",
    "mkdir",
    "mount",
    "parse_address",
    "parse_mshare_info",
    "parse_size",
    "rmdir",
    "stat",
    "unlink",
]
