"""libmshare on the real msharefs (guest only): handles under fork, pickle and read-only
attach, and many processes creating or attaching one name at once (issue 13).

Runs when LIBMSHARE_GUEST=1 (ci/vm-run); elsewhere every test skips with one reason.
In the guest a kernel without msharefs is a failure, not a skip.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import harness
import pytest

import libmshare

PYTHON = [sys.executable, "-S"]  # see test_sdk_region.py: site costs most of a start-up
_seq = itertools.count()


@pytest.fixture
def names(sdk_mount: str) -> Iterator[list[str]]:
    """Eight region names unique to this process and test; unlinked afterwards."""
    base = f"sdk-h-{os.getpid()}-{next(_seq)}"
    ns = [f"{base}-{i}" for i in range(8)]
    yield ns
    for n in ns:
        try:
            libmshare.unlink(n)
        except FileNotFoundError:
            pass


POOL = """
import copy, multiprocessing as mp, os, pickle, sys, libmshare

def mapped(start):
    with open("/proc/self/maps") as f:
        return any(line.startswith(f"{start:x}-") for line in f)

def touch(region):
    head = bytes(region.buf[:6])
    region.buf[4096 * (1 + os.getpid() % 16)] = 1
    start = region.start
    region.close()
    return start, head

if __name__ == "__main__":
    r = libmshare.create(sys.argv[1], libmshare.alignment())
    r.buf[:6] = b"parent"
    with mp.get_context("fork").Pool(2) as pool:  # a worker maps it already: a handle
        got = pool.map_async(touch, [r] * 4).get(timeout=float(sys.argv[2]))
    assert got == [(r.start, b"parent")] * 4, got
    twin = copy.deepcopy(r)
    third = pickle.loads(pickle.dumps(r))
    for h in (r, third):
        h.close()
        assert mapped(twin.start)
    twin.buf[:1] = b"P"
    twin.close()
    assert not mapped(twin.start)
    with libmshare.attach(sys.argv[1]) as again:
        print(bytes(again.buf[:6]).decode())
"""


def test_sdk_fork_pool_deepcopy_and_close_order(names: list[str]) -> None:
    # In a fresh interpreter: forking the pytest worker (threads) is not what is tested.
    limit = harness.scaled(120)
    out = subprocess.run([*PYTHON, "-c", POOL, names[0], str(limit)], capture_output=True,
                         text=True, timeout=limit + harness.scaled(60), check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Parent"]


CREATOR = """
import os, sys, time, libmshare
names, procs, calls = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
align = libmshare.alignment()
r, w = os.pipe()
go_r, go_w = os.pipe()
pids = []
for i in range(procs):
    pid = os.fork()
    if pid == 0:  # forked after the imports: Python starts slowly under TCG
        os.close(go_w)
        os.read(go_r, 1)
        out = []
        for c in range(calls):
            name = names[(i + c) % len(names)]
            try:
                if i % 4 == 3:
                    reg = libmshare.attach(name, timeout=60)
                else:
                    reg = libmshare.create(name, align, exist_ok=True, timeout=60)
                out.append(f"{name} {reg.start}")
                reg.close()
            except FileNotFoundError:
                out.append(f"{name} early")  # an attach before any create: fine
            except Exception as e:
                why = f"{type(e).__name__}:{e}".replace(" ", "_").replace("\\n", "|")
                out.append(f"{name} {why}")
        os.write(w, ("\\n".join(out) + "\\n").encode())
        os._exit(0)
    pids.append(pid)
os.close(go_r)
os.close(w)
t0 = time.monotonic()
os.close(go_w)
data = b""
while chunk := os.read(r, 1 << 16):
    data += chunk
bad = [p for p in pids if os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) != 0]
print(f"elapsed {time.monotonic() - t0:.1f} exited-badly {len(bad)}")
sys.stdout.write(data.decode())
"""


@pytest.mark.timeout(240)
def test_sdk_many_processes_create_or_attach_one_name(names: list[str]) -> None:
    procs, calls = 64, 8
    t0 = time.monotonic()
    res = subprocess.run([*PYTHON, "-c", CREATOR, ",".join(names), str(procs), str(calls)],
                         capture_output=True, text=True, timeout=harness.scaled(200),
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    head, *lines = res.stdout.splitlines()
    assert head.endswith("exited-badly 0"), head
    assert len(lines) == procs * calls
    starts: dict[str, set[str]] = {}
    for line in lines:
        name, what = line.split(maxsplit=1)
        if what != "early":
            starts.setdefault(name, set()).add(what)
    errors = sorted({w for s in starts.values() for w in s if not w.isdigit()})
    assert not errors, (head, errors[:5])
    assert set(starts) == set(names) and all(len(s) == 1 for s in starts.values())
    for n in names:
        assert libmshare.stat(n).established is True
    print(f"{procs}x{calls} calls: {head}; whole test {time.monotonic() - t0:.1f} s")


READONLY = """
import ctypes, sys, libmshare
r = libmshare.attach(sys.argv[1], readonly=True)
refused = 0
for attempt in ("r.buf[0] = 1", "r.buf.obj[0] = 1", "memoryview(r.buf.obj)[0] = 1",
                "(ctypes.c_ubyte * 1).from_buffer(r.buf)[0] = 1",
                "r.buf.cast('Q')[0] = 1"):
    try:
        exec(attempt)
    except TypeError:
        refused += 1
print(refused, bytes(r.buf[:4]).decode())
"""


def test_sdk_readonly_writes_raise_never_crash(names: list[str]) -> None:
    with libmshare.create(names[0], libmshare.alignment()) as r:
        r.buf[:4] = b"data"
    out = subprocess.run([*PYTHON, "-c", READONLY, names[0]], capture_output=True,
                         text=True, timeout=harness.scaled(120), check=False)
    assert out.returncode == 0, f"status {out.returncode}: {out.stderr[-1000:]}"
    assert out.stdout.split() == ["5", "data"]
