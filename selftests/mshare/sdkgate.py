"""The gate of the libmshare (SDK) guest tests, for their fixtures to call.

Stricter than conftest's ``msharefs`` fixture: these tests run only in ci/vm-run's
guest (LIBMSHARE_GUEST=1), not on any kernel that happens to have msharefs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import harness
import pytest

import libmshare


def sdk_mount() -> str:
    """msharefs mounted through libmshare; its mount point.

    Skips outside the guest (LIBMSHARE_GUEST unset); in the guest a kernel without
    msharefs fails the test instead of skipping it.
    """
    if not harness.GUEST:
        pytest.skip("libmshare guest tests run only in our kernel (ci/vm-run sets LIBMSHARE_GUEST=1)")
    if not libmshare.kernel_supports():
        pytest.fail("LIBMSHARE_GUEST=1 but the kernel has no msharefs", pytrace=False)
    return libmshare.ensure_mounted()


_seq = itertools.count()


@contextmanager
def region_name(tag: str) -> Iterator[str]:
    """A region name unique to this process, sdk-<tag>-<pid>-<n>, on the SDK's mount;
    unlinked afterwards if the test left it."""
    sdk_mount()
    n = f"sdk-{tag}-{os.getpid()}-{next(_seq)}"
    try:
        yield n
    finally:
        try:
            libmshare.unlink(n)
        except FileNotFoundError:
            pass
