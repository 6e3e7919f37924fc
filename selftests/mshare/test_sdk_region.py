"""libmshare against the real msharefs (guest only): the SDK across processes.

Runs when LIBMSHARE_GUEST=1 (ci/vm-run); elsewhere every test skips with one reason.
In the guest a kernel without msharefs is a failure, not a skip.  Self-contained: only
fixtures defined here and pytest's own.
"""

from __future__ import annotations

import errno
import itertools
import multiprocessing as mp
import os
import platform
import subprocess
import sys

import harness
import pytest

import libmshare
from libmshare import Region, _libc

# -S: libmshare needs only the standard library and comes from PYTHONPATH; site's .pth
# processing is two thirds of an interpreter's start-up under TCG.
PYTHON = [sys.executable, "-S"]
_seq = itertools.count()


def test_mount_and_alignment(sdk_mount: str, align: int) -> None:
    assert libmshare.find_mount() == sdk_mount
    with open(os.path.join(sdk_mount, "mshare_info"), "rb") as f:
        assert libmshare.parse_mshare_info(f.read()) == align
    if platform.machine() == "x86_64":
        assert align == 512 << 30


def test_create_then_attach_in_subprocess(name: str, align: int) -> None:
    with libmshare.create(name, 4096, round_up=True) as r:
        assert (r.size, r.requested_size) == (align, 4096)
        assert r.start % align == 0
        r.buf[:6] = b"parent"
        r.buf[align - 4:] = b"tail"
        code = (
            "import sys, libmshare\n"
            "with libmshare.attach(sys.argv[1]) as r:\n"
            "    print(hex(r.start), hex(r.size), bytes(r.buf[:6]).decode(),"
            " bytes(r.buf[-4:]).decode())\n"
            "    r.buf[6:11] = b'child'\n"
        )
        out = subprocess.run([*PYTHON, "-c", code, name], capture_output=True,
                             text=True, timeout=harness.scaled(120), check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [hex(r.start), hex(align), "parent", "tail"]
        assert bytes(r.buf[:11]) == b"parentchild"


def _spawn_reader(region: Region, q: mp.Queue[tuple[int, bytes]]) -> None:
    q.put((region.start, bytes(region.buf[:6])))
    region.buf[6:12] = b"spawn!"
    region.close()


def test_multiprocessing_spawn(name: str) -> None:
    ctx = mp.get_context("spawn")
    with libmshare.create(name, libmshare.alignment()) as r:
        r.buf[:6] = b"parent"
        q: mp.Queue[tuple[int, bytes]] = ctx.Queue()
        p = ctx.Process(target=_spawn_reader, args=(r, q))
        p.start()
        assert q.get(timeout=harness.scaled(120)) == (r.start, b"parent")
        p.join(harness.scaled(120))
        assert p.exitcode == 0
        assert bytes(r.buf[6:12]) == b"spawn!"


def test_fork_inherits_the_region(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        r.buf[:6] = b"parent"
        pid = os.fork()
        if pid == 0:
            code = 0 if bytes(r.buf[:6]) == b"parent" else 1
            r.buf[6:12] = b"forked"
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bytes(r.buf[:12]) == b"parentforked"


def test_readonly_attach_cannot_write(name: str, align: int) -> None:
    libmshare.create(name, align).close()
    code = (
        "import sys, libmshare\n"
        "with libmshare.attach(sys.argv[1], readonly=True) as r:\n"
        "    print(r.buf.readonly, bytes(r.buf[:4]).decode())\n"
        "    try:\n"
        "        r.buf[0] = 1\n"
        "    except TypeError:\n"
        "        print('refused')\n"
    )
    with libmshare.attach(name) as r:
        r.buf[:4] = b"data"
        r.close()
    out = subprocess.run([*PYTHON, "-c", code, name], capture_output=True, text=True,
                         timeout=harness.scaled(120), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "data", "refused"]


def test_closed_region_keeps_data_until_unlinked(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        r.buf[123:128] = b"kept!"
        start = r.start
    info = libmshare.stat(name)
    assert (info.start, info.size, info.established) == (start, align, True)
    assert info.mode == 0o600 and info.uid == os.geteuid()
    assert name in [i.name for i in libmshare.list_regions()]
    with libmshare.attach(name) as r:
        assert r.start == start and bytes(r.buf[123:128]) == b"kept!"
    libmshare.unlink(name)
    assert name not in [i.name for i in libmshare.list_regions()]
    with pytest.raises(libmshare.RegionNotFoundError) as exc:
        libmshare.attach(name)
    assert exc.value.errno == errno.ENOENT


def test_kernel_errors_become_precise_exceptions(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        with pytest.raises(libmshare.RegionExistsError):
            libmshare.create(name, align)
        # Same process: attach is a second handle on the one mapping (issue 13).
        with libmshare.attach(name) as again:
            assert again.start == r.start
    with pytest.raises(libmshare.AlignmentError, match=f"{align:#x}"):
        libmshare.create(name + "x", align + 4096)


def test_collision_with_existing_mapping_leaves_no_debris(
    name: str, align: int, sdk_mount: str
) -> None:
    start = libmshare.addrspace.find_free_window(align, align)
    assert start is not None
    flags = _libc.MAP_PRIVATE | _libc.MAP_ANONYMOUS | _libc.MAP_FIXED_NOREPLACE
    _libc.mmap(start + align - 4096, 4096, _libc.PROT_READ, flags, -1)
    try:
        with pytest.raises(libmshare.AddressInUseError, match=f"{start:#x}"):
            libmshare.create(name, align, start=start)
        assert not os.path.exists(os.path.join(sdk_mount, name))
    finally:
        _libc.munmap(start + align - 4096, 4096)


def test_not_established_region(name: str, sdk_mount: str) -> None:
    os.close(os.open(os.path.join(sdk_mount, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    assert not libmshare.stat(name).established
    with pytest.raises(libmshare.RegionNotEstablishedError):
        libmshare.attach(name)


def test_exist_ok_attaches(name: str, align: int) -> None:
    libmshare.create(name, align).close()
    with libmshare.create(name, 1, round_up=True, exist_ok=True) as r:
        assert r.size == align and r.requested_size == 1


def test_buffer_never_outlives_the_mapping(name: str, align: int) -> None:
    r = libmshare.create(name, align)
    part = r.buf[4096:8192]
    part[:2] = b"ok"
    with pytest.raises(BufferError):
        r.close()
    del part
    start = r.start
    r.close()
    with pytest.raises(libmshare.RegionClosedError):
        r.buf  # noqa: B018
    with open("/proc/self/maps") as f:
        assert f"{start:x}-" not in f.read()


def test_regions_in_directories(sdk_mount: str, align: int) -> None:
    d = f"sdk-dir-{os.getpid()}-{next(_seq)}"
    libmshare.mkdir(d)
    try:
        with libmshare.create(f"{d}/r", align) as r:
            assert r.path == os.path.join(sdk_mount, d, "r")
        assert [i.name for i in libmshare.list_regions() if i.name.startswith(d)] == [f"{d}/r"]
        libmshare.unlink(f"{d}/r")
    finally:
        libmshare.rmdir(d)


def _as_nobody(code: str, name: str) -> list[str]:
    # Imports first: the interpreter may live where user nobody cannot read.
    prologue = "import os, sys, libmshare\nos.setgid(65534); os.setuid(65534)\n"
    out = subprocess.run([*PYTHON, "-c", prologue + code, name], capture_output=True,
                         text=True, timeout=harness.scaled(120), check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_permissions_for_other_users(name: str, align: int, sdk_mount: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    libmshare.create(name, align, mode=0o600).close()
    denied = (
        "try:\n"
        "    libmshare.attach(sys.argv[1])\n"
        "except libmshare.MsharePermissionError as e:\n"
        "    print('denied', e.errno)\n"
        "print([i.established for i in libmshare.list_regions() if i.name == sys.argv[1]])\n"
    )
    # nobody may not open it, so cannot tell whether it is established: None, not False
    assert _as_nobody(denied, name) == [f"denied {errno.EACCES}", "[None]"]
    os.chmod(os.path.join(sdk_mount, name), 0o644)
    readonly = (
        "with libmshare.attach(sys.argv[1], readonly=True) as r:\n"
        "    print(r.size)\n"
    )
    assert _as_nobody(readonly, name) == [str(align)]
