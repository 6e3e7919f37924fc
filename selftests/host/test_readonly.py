"""No Python-level operation on a read-only region may crash the interpreter.

Before: ``buf.obj`` of a read-only attach was a writable ctypes array over PROT_READ
pages, and writing through it killed the interpreter with SIGSEGV.  Each attempt runs
in a child process so that a crash fails the test instead of the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN

import libmshare

ATTEMPTS = {
    "setitem": "r.buf[0] = 1",
    "slice-assign": "r.buf[0:2] = b'xx'",
    "cast": "r.buf.cast('Q')[0] = 1",
    "memoryview": "memoryview(r.buf)[0] = 1",
    "obj": "r.buf.obj[0] = 1",
    "obj-view": "memoryview(r.buf.obj).cast('B')[0] = 1",
    "obj-ctypes": "(ctypes.c_ubyte * 2).from_buffer(r.buf.obj)[0] = 1",
    "ctypes": "ctypes.c_char.from_buffer(r.buf).value = b'x'",
    "picklebuffer": "pickle.PickleBuffer(r.buf).raw()[0] = 1",
    "readinto": "io.BytesIO(b'xx').readinto(r.buf)",
    "struct": "struct.pack_into('B', r.buf, 0, 1)",
    "copy-handle": "copy.copy(r).buf[0] = 1",
}

CHILD = """
import copy, ctypes, io, pickle, struct, sys
import libmshare
r = libmshare.attach(sys.argv[1], readonly=True)
try:
    exec(sys.argv[2])
except (TypeError, BufferError, AttributeError) as e:
    print("refused", type(e).__name__)
else:
    print("wrote")
assert bytes(r.buf[:2]) == b"ro"
"""


@pytest.mark.parametrize("attempt", list(ATTEMPTS), ids=list(ATTEMPTS))
def test_readonly_write_attempt_raises(fake_mount: Path, attempt: str) -> None:
    if not Path(fake_mount, "ro").exists():
        with libmshare.create("ro", FAKE_ALIGN) as r:
            r.buf[:2] = b"ro"
    res = subprocess.run(
        [sys.executable, "-c", CHILD, "ro", ATTEMPTS[attempt]], capture_output=True,
        text=True, timeout=60, env=os.environ, check=False,
    )
    assert res.returncode == 0, f"status {res.returncode}: {res.stderr[-800:]}"
    assert res.stdout.split()[0] == "refused", res.stdout


def test_readonly_buf_obj_offers_no_exporter(fake_mount: Path) -> None:
    libmshare.create("ro2", FAKE_ALIGN).close()
    with libmshare.attach("ro2", readonly=True) as r:
        assert r.buf.obj is None
        with pytest.raises(TypeError, match="read-only"):
            r.buf[0] = 1
