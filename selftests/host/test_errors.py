"""errno -> exception mapping: each errno gets its class, its builtin and its errno."""

from __future__ import annotations

import errno
import os

import pytest

from libmshare import errors
from libmshare.errors import from_errno, from_oserror

CASES = [
    (errno.EEXIST, "create", errors.RegionExistsError, FileExistsError),
    (errno.EEXIST, "mmap", errors.AddressInUseError, FileExistsError),
    (errno.ENOENT, "attach", errors.RegionNotFoundError, FileNotFoundError),
    (errno.EACCES, "attach", errors.MsharePermissionError, PermissionError),
    (errno.EPERM, "mount", errors.MsharePermissionError, PermissionError),
    (errno.EISDIR, "attach", errors.NotARegionError, IsADirectoryError),
    (errno.ENODEV, "mount", errors.NotSupportedError, OSError),
    (errno.ENODATA, "attach", errors.RegionNotEstablishedError, OSError),
    (errno.EINVAL, "mmap", errors.MshareError, OSError),
    (errno.ENOMEM, "mmap", errors.MshareError, OSError),
    (errno.EBUSY, "umount", errors.MshareError, OSError),
    (errno.ENOSPC, "create", errors.RegionLimitError, OSError),
    (errno.ENOSPC, "mmap", errors.RegionLimitError, OSError),
]


@pytest.mark.parametrize(("err", "op", "cls", "builtin"), CASES)
def test_errno_maps_to_precise_class(
    err: int, op: str, cls: type[errors.MshareError], builtin: type[OSError]
) -> None:
    e = from_errno(err, op, "/sys/fs/mshare/r", "detail")
    assert type(e) is cls
    assert isinstance(e, errors.MshareError) and isinstance(e, builtin)
    assert e.errno == err
    assert e.filename == "/sys/fs/mshare/r"
    assert str(e).startswith(f"[Errno {err}] {op}: ")
    assert "(detail)" in str(e) and "/sys/fs/mshare/r" in str(e)


def test_builtin_handlers_catch_them() -> None:
    with pytest.raises(FileExistsError):
        raise from_errno(errno.EEXIST, "create", "/x")
    with pytest.raises(FileNotFoundError):
        raise from_errno(errno.ENOENT, "attach")


@pytest.mark.parametrize(("op", "limit"), [("create", "max_regions"), ("mmap", "max_size")])
def test_enospc_names_the_msharefs_limit(op: str, limit: str) -> None:
    e = from_errno(errno.ENOSPC, op, "/sys/fs/mshare/r", "window 0x1-0x2 requested")
    assert type(e) is errors.RegionLimitError
    assert f"{op}: {os.strerror(errno.ENOSPC)}: msharefs {limit} limit reached " \
        "(window 0x1-0x2 requested)" in str(e)


def test_enospc_of_create_without_detail_names_max_regions() -> None:
    assert str(from_errno(errno.ENOSPC, "create")) == \
        f"[Errno {errno.ENOSPC}] create: {os.strerror(errno.ENOSPC)}: " \
        "msharefs max_regions limit reached"


def test_from_oserror_keeps_errno_and_defaults_to_eio() -> None:
    assert from_oserror(OSError(errno.EACCES, "x"), "stat", "/p").errno == errno.EACCES
    assert from_oserror(OSError("no errno"), "stat").errno == errno.EIO


def test_value_errors_are_not_os_errors() -> None:
    for cls in (errors.AlignmentError, errors.AddressRangeError, errors.RegionNameError,
                errors.MshareInfoError, errors.SizeSyntaxError, errors.RegionClosedError):
        assert issubclass(cls, ValueError) and issubclass(cls, errors.MshareValueError)
        assert not issubclass(cls, OSError)


def test_all_names_are_exported() -> None:
    import libmshare

    for name in errors.__all__:
        if name[0].isupper():
            assert getattr(libmshare, name) is getattr(errors, name)
