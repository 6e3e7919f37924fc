"""Attaching to a region that is being established waits for it, bounded by timeout=.

Before: a creator makes the file (O_CREAT|O_EXCL) and maps it a moment later; an
attacher or ``create(exist_ok=True)`` in between failed with RegionNotEstablishedError.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN, free_window

import libmshare
from libmshare import _backend, region
from libmshare.errors import MshareValueError, RegionNotEstablishedError


def _establish_later(path: Path, delay: float) -> threading.Thread:
    """Play a creator: the file now, its geometry ``delay`` seconds later."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    start = free_window()

    def later() -> None:
        time.sleep(delay)
        _backend.EmulatedBackend().establish(fd, start, FAKE_ALIGN, str(path))
        os.close(fd)

    t = threading.Thread(target=later)
    t.start()
    return t


def test_attach_waits_for_the_creator(fake_mount: Path) -> None:
    t = _establish_later(fake_mount / "slow", 0.3)
    t0 = time.monotonic()
    with libmshare.attach("slow", timeout=10) as r:
        assert 0.25 < time.monotonic() - t0 < 5 and r.size == FAKE_ALIGN
    t.join()


def test_create_exist_ok_waits_for_the_creator(fake_mount: Path) -> None:
    t = _establish_later(fake_mount / "slow", 0.3)
    with libmshare.create("slow", FAKE_ALIGN, exist_ok=True, timeout=10) as r:
        assert r.size == FAKE_ALIGN
    t.join()


def test_wait_runs_out_with_a_clear_error(fake_mount: Path) -> None:
    (fake_mount / "stuck").touch()
    t0 = time.monotonic()
    with pytest.raises(RegionNotEstablishedError, match="not established within 0.2 s") as e:
        libmshare.attach("stuck", timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 3
    assert e.value.errno == errno.ENODATA and e.value.filename == str(fake_mount / "stuck")


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_timeout_must_be_seconds(fake_mount: Path, bad: float) -> None:
    with pytest.raises(MshareValueError, match="timeout"):
        libmshare.attach("x", timeout=bad)
    with pytest.raises(TypeError):
        libmshare.attach("x", timeout="1")  # type: ignore[arg-type]


def test_exist_ok_creates_when_the_creator_gave_up(fake_mount: Path) -> None:
    (fake_mount / "abandoned").touch()

    def give_up() -> None:
        time.sleep(0.2)
        os.unlink(fake_mount / "abandoned")

    t = threading.Thread(target=give_up)
    t.start()
    with libmshare.create("abandoned", FAKE_ALIGN, exist_ok=True, timeout=10) as r:
        assert r.size == FAKE_ALIGN
    t.join()
    assert libmshare.stat("abandoned").established is True


def test_many_processes_create_or_attach_at_once(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Widen the creator's window between creating the file and fixing its geometry.
    slow = _backend.EmulatedBackend.establish

    def establish(self: _backend.EmulatedBackend, fd: int, start: int, size: int,
                  path: str) -> None:
        time.sleep(0.02)
        slow(self, fd, start, size, path)

    monkeypatch.setattr(_backend.EmulatedBackend, "establish", establish)
    procs, names = 12, 8
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for i in range(procs):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.read(go_r, 1)  # all start together
            lines = []
            for n in range(names):
                try:
                    if i % 3 == 2:
                        r = libmshare.attach(f"race{n}", timeout=10)
                    else:
                        r = libmshare.create(f"race{n}", FAKE_ALIGN, exist_ok=True)
                    lines.append(f"{n} {r.start}")
                    r.close()
                except FileNotFoundError:
                    lines.append(f"{n} attach-before-create")
                except Exception as e:  # noqa: BLE001 (reported to the parent)
                    lines.append(f"{n} {type(e).__name__}")
            os.write(out_w, ("\n".join(lines) + "\n").encode())
            os._exit(0)
        pids.append(pid)
    os.close(go_r)
    os.close(out_w)
    os.close(go_w)  # EOF: go
    data = b""
    while chunk := os.read(out_r, 65536):
        data += chunk
    os.close(out_r)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    starts: dict[str, set[str]] = {}
    for line in data.decode().split("\n"):
        if line:
            n, what = line.split()
            if what != "attach-before-create":
                starts.setdefault(n, set()).add(what)
    failures = {n: s for n, s in starts.items() if not all(x.isdigit() for x in s)}
    assert not failures
    assert len(starts) == names and all(len(s) == 1 for s in starts.values())


def test_established_is_none_when_it_cannot_be_known(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libmshare.create("locked", FAKE_ALIGN).close()
    (fake_mount / "pending").touch()
    assert libmshare.stat("locked").established is True
    assert libmshare.stat("pending").established is False
    real_open = os.open

    def denied(path: str, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(region.os, "open", denied)
    info = libmshare.stat("locked")
    assert (info.established, info.start, info.size) == (None, None, None)

