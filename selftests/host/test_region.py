"""Region life cycle on the emulated mount (LIBMSHARE_FAKE_MOUNT, 2 MiB alignment)."""

from __future__ import annotations

import errno
import os
import pickle
import stat as _stat
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN, free_window, is_mapped

import libmshare
from libmshare import Region
from libmshare.errors import (
    AddressInUseError,
    AlignmentError,
    MshareValueError,
    NotARegionError,
    RegionClosedError,
    RegionExistsError,
    RegionNameError,
    RegionNotEstablishedError,
    RegionNotFoundError,
)


def test_create_write_close_attach_read(fake_mount: Path) -> None:
    with Region.create("db", FAKE_ALIGN) as r:
        assert (r.name, r.path, r.size, r.requested_size) == (
            "db", str(fake_mount / "db"), FAKE_ALIGN, FAKE_ALIGN)
        assert r.start % FAKE_ALIGN == 0 and is_mapped(r.start, r.size)
        assert not r.readonly and not r.closed
        assert bytes(r.buf[:16]) == bytes(16)  # zero-filled
        r.buf[:5] = b"hello"
        r.buf[-3:] = b"end"
        start = r.start
    assert r.closed and not is_mapped(start, FAKE_ALIGN)
    with pytest.raises(RegionClosedError):
        r.buf  # noqa: B018
    # Closed, never unlinked: the data stays.
    with libmshare.attach("db") as again:
        assert again.start == start and again.size == FAKE_ALIGN
        assert bytes(again.buf[:5]) == b"hello" and bytes(again.buf[-3:]) == b"end"
    libmshare.unlink("db")
    with pytest.raises(RegionNotFoundError):
        libmshare.attach("db")


def test_round_up_keeps_requested_size(fake_mount: Path) -> None:
    with libmshare.create("r", 1000, round_up=True) as r:
        assert (r.size, r.requested_size) == (FAKE_ALIGN, 1000)
    with libmshare.create("r2", FAKE_ALIGN + 1, round_up=True) as r:
        assert r.size == 2 * FAKE_ALIGN
    with pytest.raises(AlignmentError, match="size 0x3e8.*alignment 0x200000 \\(2M\\)"):
        libmshare.create("r3", 1000)
    with pytest.raises(AlignmentError, match="size 0 "):
        libmshare.create("r3", 0, round_up=True)
    assert not (fake_mount / "r3").exists()  # validation happens before any syscall


def test_explicit_start(fake_mount: Path) -> None:
    start = free_window()
    with libmshare.create("fixed", FAKE_ALIGN, start=start) as r:
        assert r.start == start
    with pytest.raises(AlignmentError, match=f"start {start + 4096:#x}.*0x200000"):
        libmshare.create("bad", FAKE_ALIGN, start=start + 4096)


def test_start_collision_names_address_and_leaves_no_debris(
    fake_mount: Path, anon_block: tuple[int, int]
) -> None:
    start, _ = anon_block
    with pytest.raises(AddressInUseError, match=f"{start:#x}") as exc:
        libmshare.create("clash", FAKE_ALIGN, start=start)
    assert exc.value.errno == errno.EEXIST
    assert not (fake_mount / "clash").exists()
    assert is_mapped(start, FAKE_ALIGN)


def test_existing_name(fake_mount: Path) -> None:
    libmshare.create("e", FAKE_ALIGN).close()
    with pytest.raises(RegionExistsError) as exc:
        libmshare.create("e", FAKE_ALIGN)
    assert isinstance(exc.value, FileExistsError) and exc.value.errno == errno.EEXIST
    with libmshare.create("e", 1, round_up=True, exist_ok=True) as r:
        assert r.size == FAKE_ALIGN and r.requested_size == 1
        start = r.start
    with pytest.raises(RegionExistsError, match="size 2M, not any start with size 4M"):
        libmshare.create("e", 2 * FAKE_ALIGN, exist_ok=True)
    other = start - FAKE_ALIGN
    with pytest.raises(RegionExistsError, match=f"not {other:#x}"):
        libmshare.create("e", FAKE_ALIGN, start=other, exist_ok=True)


def test_mode_is_exact_despite_umask(fake_mount: Path) -> None:
    old = os.umask(0o077)
    try:
        libmshare.create("m", FAKE_ALIGN, mode=0o664).close()
    finally:
        os.umask(old)
    assert _stat.S_IMODE(os.stat(fake_mount / "m").st_mode) == 0o664
    assert libmshare.stat("m").mode == 0o664
    with pytest.raises(MshareValueError, match="0o10000"):
        libmshare.create("m2", FAKE_ALIGN, mode=0o10000)


def test_readonly_attach(fake_mount: Path) -> None:
    with libmshare.create("ro", FAKE_ALIGN) as r:
        r.buf[:2] = b"ro"
    with libmshare.attach("ro", readonly=True) as r:
        assert r.readonly and r.buf.readonly
        assert bytes(r.buf[:2]) == b"ro"
        with pytest.raises(TypeError):
            r.buf[0] = 0
        assert "readonly" in repr(r)


def test_attach_before_established(fake_mount: Path) -> None:
    (fake_mount / "pending").touch()
    with pytest.raises(RegionNotEstablishedError, match="not established within 0 s") as exc:
        libmshare.attach("pending", timeout=0)
    assert exc.value.errno == errno.ENODATA
    info = libmshare.stat("pending")
    assert (info.start, info.size, info.established) == (None, None, False)


def test_names_with_directories(fake_mount: Path) -> None:
    with pytest.raises(RegionNotFoundError):
        libmshare.create("app/db", FAKE_ALIGN)
    assert libmshare.mkdir("app") == str(fake_mount / "app")
    assert libmshare.mkdir("app", exist_ok=True) == str(fake_mount / "app")
    with pytest.raises(RegionExistsError):
        libmshare.mkdir("app")
    with libmshare.create("app/db", FAKE_ALIGN) as r:
        assert r.name == "app/db" and r.path == str(fake_mount / "app" / "db")
    with libmshare.attach(str(fake_mount / "app" / "db")) as r:  # absolute, inside the mount
        assert r.name == "app/db"
    with pytest.raises(NotARegionError):
        libmshare.attach("app")
    with pytest.raises(NotARegionError):
        libmshare.stat("app")
    with pytest.raises(RegionNameError, match="'\\.\\.'"):
        libmshare.attach("app/../db")
    with pytest.raises(RegionNameError, match="outside"):
        libmshare.create("/tmp/x", FAKE_ALIGN)
    libmshare.unlink("app/db")
    libmshare.rmdir("app")
    assert not (fake_mount / "app").exists()


def test_list_and_stat(fake_mount: Path) -> None:
    libmshare.mkdir("d")
    libmshare.create("b", FAKE_ALIGN, mode=0o640).close()
    libmshare.create("d/a", 2 * FAKE_ALIGN).close()
    (fake_mount / "d" / "pending").touch()
    infos = libmshare.list_regions()
    assert [i.name for i in infos] == ["b", "d/a", "d/pending"]
    b, a, pending = infos
    assert b.mode == 0o640 and b.uid == os.geteuid() and b.gid == os.getegid()
    assert b.path == str(fake_mount / "b") and b.size == FAKE_ALIGN and b.established
    assert a.size == 2 * FAKE_ALIGN and a.start is not None and a.start % FAKE_ALIGN == 0
    assert not pending.established
    assert libmshare.stat("d/a") == a
    with pytest.raises(RegionNotFoundError):
        libmshare.stat("nope")


def test_list_leaves_out_an_unreadable_subdirectory(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libmshare.create("top", FAKE_ALIGN).close()
    libmshare.mkdir("theirs")
    libmshare.create("theirs/hidden", FAKE_ALIGN).close()
    real = os.scandir
    denied = str(fake_mount / "theirs")

    def scandir(path: str) -> object:
        if path == denied:  # as another user's mode-0700 directory answers
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    with monkeypatch.context() as m:
        m.setattr(os, "scandir", scandir)
        assert [i.name for i in libmshare.list_regions()] == ["top"]


def test_list_of_an_unreadable_mount_raises_eacces(
    fake_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def scandir(path: str) -> object:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with monkeypatch.context() as m, \
            pytest.raises(libmshare.MsharePermissionError, match="list") as exc:
        m.setattr(os, "scandir", scandir)
        libmshare.list_regions()
    assert exc.value.errno == errno.EACCES


def test_unlink_while_mapped_keeps_the_mapping(fake_mount: Path) -> None:
    with libmshare.create("u", FAKE_ALIGN) as r:
        r.unlink()
        assert not (fake_mount / "u").exists()
        r.buf[:3] = b"still"[:3]
        assert bytes(r.buf[:3]) == b"sti"
    with pytest.raises(RegionNotFoundError):
        libmshare.unlink("u")


def test_close_refused_with_live_slice(fake_mount: Path) -> None:
    r = libmshare.create("s", FAKE_ALIGN)
    part = r.buf[100:200]
    with pytest.raises(BufferError):
        r.close()
    with pytest.raises(BufferError), r:
        pass
    assert not r.closed
    del part
    r.close()


def test_pickle_reattaches_by_name(fake_mount: Path) -> None:
    r = libmshare.create("p", 1000, round_up=True)
    data = pickle.dumps(r)
    r.buf[:4] = b"pick"
    start = r.start
    r.close()
    with pickle.loads(data) as again:
        assert (again.name, again.start, again.requested_size) == ("p", start, 1000)
        assert bytes(again.buf[:4]) == b"pick"


def test_repr(fake_mount: Path) -> None:
    r = libmshare.create("rep", FAKE_ALIGN)
    assert repr(r) == f"<Region 'rep' start={r.start:#x} size=2M open>"
    r.close()
    assert repr(r).endswith("closed>")


def test_bad_argument_types(fake_mount: Path) -> None:
    with pytest.raises(TypeError):
        libmshare.create("t", 2.0e6)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        libmshare.create(b"t", FAKE_ALIGN)  # type: ignore[arg-type]


def test_window_picking_retries_after_a_race(
    fake_mount: Path, anon_block: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from libmshare import region as region_mod

    taken, _ = anon_block
    free = free_window()
    picks = iter([taken, free])
    monkeypatch.setattr(region_mod, "find_free_window", lambda size, align: next(picks))
    with libmshare.create("race", FAKE_ALIGN) as r:
        assert r.start == free


def test_window_picking_gives_up(
    fake_mount: Path, anon_block: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from libmshare import region as region_mod

    taken, _ = anon_block
    monkeypatch.setattr(region_mod, "find_free_window", lambda size, align: taken)
    with pytest.raises(AddressInUseError, match="attempts"):
        libmshare.create("busy", FAKE_ALIGN)
    monkeypatch.setattr(region_mod, "find_free_window", lambda size, align: None)
    with pytest.raises(libmshare.MshareError, match="no free 2M-aligned window of 2M") as exc:
        libmshare.create("full", FAKE_ALIGN)
    assert exc.value.errno == errno.ENOMEM
    assert sorted(p.name for p in fake_mount.iterdir()) == ["mshare_info"]


def test_exist_ok_on_a_region_not_established_yet(fake_mount: Path) -> None:
    (fake_mount / "half").touch()
    with pytest.raises(RegionNotEstablishedError):
        libmshare.create("half", FAKE_ALIGN, exist_ok=True, timeout=0.05)
