"""Ordinary inode permissions on region files, checked from a non-root child.

The interpreter lives under /root (mode 700), so a child forked after the imports drops
to uid/gid 65534 instead of exec'ing Python as another user.
"""

from __future__ import annotations

import errno
import os
import stat

import harness
import kapi
from harness import NOBODY, RW

NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE
OTHER_UID = 12345


def _open_errno(path: str, flags: int) -> int | None:
    return harness.errno_of(os.open, path, flags)


def _attach_as(r: harness.Region, readonly: bool, write: bytes | None = None) -> bytes:
    """In a child: detach the inherited mapping, then attach through a fresh open."""
    kapi.munmap(r.start, r.size)
    fd = os.open(r.path, os.O_RDONLY if readonly else os.O_RDWR)
    start, size = harness.read_info(fd)
    kapi.mmap(start, size, kapi.PROT_READ if readonly else RW, NOREPLACE, fd)
    if write is not None:
        kapi.poke(start, write)
    return kapi.peek(start, 8)


def test_mshare_info_readable_by_non_root() -> None:
    def body() -> bytes:
        with open(harness.INFO, "rb") as f:
            return f.read()

    assert int(harness.in_child(body, uid=NOBODY)) == harness.alignment()


def test_non_root_cannot_open_0600_root_region_eacces(region: harness.Region) -> None:
    got = harness.in_child(lambda: (_open_errno(region.path, os.O_RDONLY),
                                    _open_errno(region.path, os.O_RDWR)), uid=NOBODY)
    assert got == (errno.EACCES, errno.EACCES)


def test_non_root_cannot_create_in_root_owned_0755_dir(regions: harness.Regions) -> None:
    d = regions.mkdir(mode=0o755)
    path = f"{d}/nope"
    got = harness.in_child(lambda: _open_errno(path, os.O_RDWR | os.O_CREAT | os.O_EXCL),
                           uid=NOBODY)
    assert got == errno.EACCES
    assert not os.path.exists(path)


def test_non_root_creates_region_in_own_directory_with_its_ids(
        regions: harness.Regions) -> None:
    d = regions.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    path = regions.path("nobody", parent=d)

    def body() -> bytes:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        start = harness.take_window()
        kapi.mmap(start, harness.alignment(), RW, NOREPLACE, fd)
        kapi.poke(start, b"nobody!!")
        return kapi.peek(start, 8)

    assert harness.in_child(body, uid=NOBODY) == b"nobody!!"
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o600)


def test_chmod_0644_allows_non_root_readonly_attach(region: harness.Region) -> None:
    region.poke(0, b"readable")
    os.chmod(region.path, 0o644)
    assert harness.in_child(_attach_as, region, True, uid=NOBODY) == b"readable"


def test_chmod_0644_still_denies_non_root_rdwr_eacces(region: harness.Region) -> None:
    os.chmod(region.path, 0o644)
    assert harness.in_child(_open_errno, region.path, os.O_RDWR, uid=NOBODY) == errno.EACCES


def test_chown_gives_non_root_owner_write_access(region: harness.Region) -> None:
    os.chown(region.path, NOBODY, NOBODY)
    assert os.stat(region.path).st_uid == NOBODY
    harness.in_child(_attach_as, region, False, b"by owner", uid=NOBODY)
    assert region.peek(0, 8) == b"by owner"


def test_group_write_bit_grants_member_access(region: harness.Region) -> None:
    os.chown(region.path, 0, NOBODY)
    os.chmod(region.path, 0o660)
    harness.in_child(_attach_as, region, False, b"by group", uid=OTHER_UID, gid=NOBODY)
    assert region.peek(0, 8) == b"by group"


def test_other_user_outside_group_denied_eacces(region: harness.Region) -> None:
    os.chown(region.path, 0, NOBODY)
    os.chmod(region.path, 0o660)
    assert harness.in_child(_open_errno, region.path, os.O_RDONLY, uid=OTHER_UID,
                            gid=OTHER_UID) == errno.EACCES


def test_chmod_by_non_owner_eperm(region: harness.Region) -> None:
    assert harness.in_child(harness.errno_of, os.chmod, region.path, 0o666,
                            uid=NOBODY) == errno.EPERM
    assert stat.S_IMODE(os.stat(region.path).st_mode) == 0o600


def test_non_root_cannot_unlink_region_in_root_owned_dir(region: harness.Region) -> None:
    os.chmod(region.path, 0o666)
    assert harness.in_child(harness.errno_of, os.unlink, region.path, uid=NOBODY) \
        == errno.EACCES
    assert os.path.exists(region.path)


def test_mapping_inherited_across_privilege_drop_keeps_working(region: harness.Region) -> None:
    """Permissions are checked at open/mmap; a mapping already held stays usable."""
    harness.in_child(lambda: kapi.poke(region.start, b"dropped!"), uid=NOBODY)
    assert region.peek(0, 8) == b"dropped!"


def test_chmod_after_attach_does_not_revoke_mapping(region: harness.Region) -> None:
    os.chmod(region.path, 0o666)
    ready, go = harness.Counter(), harness.Gate()

    def body() -> bytes:
        _attach_as(region, False)
        ready.post()
        go.wait()
        kapi.poke(region.start, b"after-ch")
        return kapi.peek(region.start, 8)

    kid = harness.Child(body, uid=NOBODY)
    ready.wait_for(1)
    os.chmod(region.path, 0o600)
    go.open()
    assert kid.result() == b"after-ch"
