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

# The exceptions, re-exported in the "as" form: type checkers and linters take it as an
# export, so __all__ can take their names from errors.__all__ instead of a copy.
from . import errors
from .errors import AddressInUseError as AddressInUseError
from .errors import AddressRangeError as AddressRangeError
from .errors import AlignmentError as AlignmentError
from .errors import AtomicUnavailableError as AtomicUnavailableError
from .errors import MisalignedError as MisalignedError
from .errors import MshareError as MshareError
from .errors import MshareInfoError as MshareInfoError
from .errors import MsharePermissionError as MsharePermissionError
from .errors import MshareValueError as MshareValueError
from .errors import NotARegionError as NotARegionError
from .errors import NotMountedError as NotMountedError
from .errors import NotSupportedError as NotSupportedError
from .errors import RegionClosedError as RegionClosedError
from .errors import RegionEstablishedError as RegionEstablishedError
from .errors import RegionExistsError as RegionExistsError
from .errors import RegionLimitError as RegionLimitError
from .errors import RegionNameError as RegionNameError
from .errors import RegionNotEstablishedError as RegionNotEstablishedError
from .errors import RegionNotFoundError as RegionNotFoundError
from .errors import SizeSyntaxError as SizeSyntaxError
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
    "Region",
    "RegionInfo",
    "RegionStats",
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
# Every exception class of libmshare.errors (not its from_errno/from_oserror).
__all__ += [name for name in errors.__all__ if not name.startswith("from_")]
