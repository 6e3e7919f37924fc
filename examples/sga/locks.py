"""Per-stripe write locks: POSIX byte-range locks, one byte per stripe, on a lock file.

fcntl locks belong to the process, work between unrelated processes that open the
same path (as a new connection would), and are dropped by the kernel if a holder
dies, so a killed server never wedges the others.
"""

from __future__ import annotations

import fcntl
import os
import tempfile

__all__ = ["StripeLocks", "lock_dir"]


def lock_dir() -> str:
    """A directory on a local file system: /dev/shm if usable, else the temp dir.

    (In the guest, TMPDIR is on 9p, whose byte-range locks need not be shared.)
    """
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


class StripeLocks:
    """Exclusive locks on stripe numbers 0..stripes-1 of one lock file."""

    def __init__(self, path: str, *, create: bool = False) -> None:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o600)

    def acquire(self, stripe: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, stripe)

    def try_acquire(self, stripe: int) -> bool:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, stripe)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def release(self, stripe: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, stripe)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
