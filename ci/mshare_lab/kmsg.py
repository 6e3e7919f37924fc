"""The kernel log from a point on (/dev/kmsg), for guest code that looks for splats.

Each read of /dev/kmsg returns one record, "PRI,seq,usec,flags;text" followed by
dictionary lines; mshare_lab.dmesg classifies the first line (by PRI's facility, kernel
records apart from user space's).
"""
from __future__ import annotations

import errno
import os

# read(2) returns one whole record, or fails with EINVAL if it does not fit the buffer.
RECORD_MAX = 8192


def record_line(rec: str) -> str:
    """One record as one line: the "PRI,seq,usec,flags;" prefix kept, the dictionary
    lines after the text dropped."""
    return rec.split("\n", 1)[0]


class KmsgTail:
    """/dev/kmsg records written since the last take() (since opening, at first).

    Opening raises OSError where /dev/kmsg cannot be read (not root, no such device)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def take(self) -> list[str]:
        """The new records, each without its trailing newline."""
        out: list[str] = []
        while True:
            try:
                rec = os.read(self.fd, RECORD_MAX)
            except OSError as e:
                if e.errno == errno.EPIPE:  # records overwritten meanwhile: go on
                    continue
                if e.errno == errno.EAGAIN:
                    return out
                raise
            if not rec:
                return out
            out.append(rec.decode(errors="replace").rstrip("\n"))

    def close(self) -> None:
        os.close(self.fd)
