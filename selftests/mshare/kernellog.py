"""Reading the kernel log (/dev/kmsg) from a point on, for tests that look for splats.

Each read of /dev/kmsg returns one record, "PRI,seq,usec,flags;text" (see ci/vmrun's
dmesg scanner, which classifies them).  Shared by the guest suite and the fuzzer.
"""

from __future__ import annotations

import os

# read(2) returns one whole record, or fails with EINVAL if it does not fit the buffer;
# selftests/run reads with the same size.
_RECORD_MAX = 8192


class KernelLog:
    """/dev/kmsg records written since the last take() (since opening, at first)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def take(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                rec = os.read(self.fd, _RECORD_MAX)
            except BlockingIOError:
                return out
            except BrokenPipeError:  # records overwritten meanwhile: go on
                continue
            if not rec:
                return out
            out.append(rec.decode(errors="replace").rstrip("\n"))

    def close(self) -> None:
        os.close(self.fd)
