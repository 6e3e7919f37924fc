"""The gate of the libmshare (SDK) guest tests, for their fixtures to call.

Stricter than conftest's ``msharefs`` fixture: these tests run only in ci/vm-run's
guest (LIBMSHARE_GUEST=1), not on any kernel that happens to have msharefs.
"""

from __future__ import annotations

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
