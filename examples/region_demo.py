"""The first half of examples/demo: one region, two processes, the same bytes.

The creator makes a region with libmshare and writes a greeting; a second process
(started fresh, as an unrelated program would be) attaches it by name, reads the
greeting at the same address and writes a reply that the creator then reads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import libmshare

NAME = f"demo-{os.getpid()}"
SIZE = 64 << 20
REPLY_AT = 4096

_SECOND = """
import os, sys
import libmshare
with libmshare.attach(sys.argv[1]) as r:
    greeting = bytes(r.buf[:64]).rstrip(b"\\0").decode()
    print(f"  pid {os.getpid()} attached {r.name!r} at {r.start:#x}: reads {greeting!r}")
    reply = f"hello back from pid {os.getpid()}".encode()
    r.buf[int(sys.argv[2]):int(sys.argv[2]) + len(reply)] = reply
"""


def main() -> int:
    if not libmshare.kernel_supports():
        print(f"msharefs: absent from kernel {os.uname().release}: no region demo")
        return 0
    mount = libmshare.ensure_mounted()
    print(f"msharefs mounted at {mount}, alignment unit "
          f"{libmshare.format_size(libmshare.alignment())}")
    region = libmshare.create(NAME, SIZE, round_up=True)
    try:
        greeting = f"hello from pid {os.getpid()}".encode()
        region.buf[:len(greeting)] = greeting
        print(f"  pid {os.getpid()} created {region.name!r}: start {region.start:#x}, size "
              f"{libmshare.format_size(region.size)} (asked for "
              f"{libmshare.format_size(region.requested_size)}), wrote {greeting.decode()!r}")
        subprocess.run([sys.executable, "-c", _SECOND, NAME, str(REPLY_AT)], check=True)
        reply = bytes(region.buf[REPLY_AT:REPLY_AT + 64]).rstrip(b"\0").decode()
        print(f"  pid {os.getpid()} reads the reply in its own mapping: {reply!r}")
        ok = reply.startswith("hello back from pid")
    finally:
        region.close()
        libmshare.unlink(NAME)
    print(f"  region {NAME!r} unlinked; shared data {'seen by both' if ok else 'NOT SEEN'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
