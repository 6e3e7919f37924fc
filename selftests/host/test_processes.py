"""Regions across fork, multiprocessing spawn and subprocess, on the emulated mount."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

from _hosthelp import FAKE_ALIGN

import libmshare
from libmshare import Region


def _spawn_child(region: Region, q: mp.Queue[tuple[int, bytes]]) -> None:
    # `region` arrived pickled: the child attached it by name, at the same address.
    q.put((region.start, bytes(region.buf[:6])))
    region.buf[6:12] = b"child!"
    region.close()


def _attach_by_name(name: str, q: mp.Queue[tuple[int, bytes]]) -> None:
    with Region.attach(name, readonly=True) as r:
        q.put((r.start, bytes(r.buf[:6])))


def test_fork_child_shares_memory(fake_mount: Path) -> None:
    with libmshare.create("fork", FAKE_ALIGN) as r:
        r.buf[:6] = b"parent"
        pid = os.fork()
        if pid == 0:  # child: inherited mapping, same object
            ok = bytes(r.buf[:6]) == b"parent"
            r.buf[6:12] = b"forked"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bytes(r.buf[:12]) == b"parentforked"
        r.unlink()


def test_spawn_child_receives_pickled_region(fake_mount: Path) -> None:
    ctx = mp.get_context("spawn")
    with libmshare.create("spawn", FAKE_ALIGN) as r:
        r.buf[:6] = b"parent"
        # The parent keeps its mapping; the child maps the same address in its own space.
        q: mp.Queue[tuple[int, bytes]] = ctx.Queue()
        p = ctx.Process(target=_spawn_child, args=(r, q))
        p.start()
        start, head = q.get(timeout=60)
        p.join(60)
        assert p.exitcode == 0
        assert (start, head) == (r.start, b"parent")
        assert bytes(r.buf[6:12]) == b"child!"
        p2 = ctx.Process(target=_attach_by_name, args=("spawn", q))
        p2.start()
        assert q.get(timeout=60) == (r.start, b"parent")
        p2.join(60)
        assert p2.exitcode == 0
        r.unlink()


def test_subprocess_attaches_and_writes(fake_mount: Path) -> None:
    with libmshare.create("sub", FAKE_ALIGN) as r:
        code = (
            "import sys, libmshare\n"
            "with libmshare.attach(sys.argv[1]) as r:\n"
            "    print(hex(r.start), bytes(r.buf[:2]).decode())\n"
            "    r.buf[2:4] = b'OK'\n"
        )
        r.buf[:2] = b"hi"
        out = subprocess.run([sys.executable, "-c", code, "sub"], capture_output=True,
                             text=True, check=True, env=os.environ)
        assert out.stdout.split() == [hex(r.start), "hi"]
        assert bytes(r.buf[:4]) == b"hiOK"
        r.unlink()
