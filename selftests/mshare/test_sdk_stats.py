"""Region stats (MSHARE_GET_STATS) through libmshare against the real msharefs (guest only).

Runs when LIBMSHARE_GUEST=1 (ci/vm-run); elsewhere every test skips with one reason.
Page faults are slow in the guest, so no test touches more than 16 MiB; attaching
processes are forked before the region exists, so they map it only by attaching.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import kapi
import pytest

import libmshare
from libmshare import _libc
from libmshare.errors import MshareError, NotSupportedError

TOUCH = 16 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
# -S: libmshare comes from PYTHONPATH; site's .pth processing slows start-up under TCG.
PYTHON = [sys.executable, "-S"]


def _touch(buf: memoryview, n: int) -> None:
    for off in range(0, n, PAGE):
        buf[off] = 1


def _attach_and_hold(name: str, go: harness.Gate, ready: harness.Counter,
                     leave: harness.Gate) -> None:
    """In a child: once ``go`` opens, attach, touch, report ready, hold until ``leave``."""
    go.wait()
    with libmshare.attach(name) as r:
        _touch(r.buf, TOUCH)
        ready.post()
        leave.wait()


class Attachers:
    """``n`` forked children that attach region ``name`` when started and hold it until
    let go.  Fork them before creating the region: a child forked from a process that
    maps it would inherit the mapping and count as a mapper from the start."""

    def __init__(self, name: str, n: int) -> None:
        self.go = harness.Gate()
        self.ready = harness.Counter()
        self.leave = [harness.Gate() for _ in range(n)]
        self.children = [harness.Child(_attach_and_hold, name, self.go, self.ready, gate)
                         for gate in self.leave]

    def start(self) -> None:
        self.go.open()
        self.ready.wait_for(len(self.children))

    def let_go(self, i: int) -> None:
        """Child ``i`` closes its handle and exits; returns once it is gone."""
        self.leave[i].open()
        self.children[i].result()

    def close(self) -> None:
        self.go.open()  # children still waiting to start must not hang
        for gate in self.leave:
            gate.open()
        try:
            for child in self.children:
                if child.status is None:
                    child.result()
        finally:
            for child in self.children:
                if child.status is None:
                    child.kill()
            self.go.close()
            self.ready.close()
            for gate in self.leave:
                gate.close()


@pytest.fixture
def attachers(name: str) -> Iterator[Attachers]:
    """Two attachers of ``name``, forked before the test creates it."""
    group = Attachers(name, 2)
    try:
        yield group
    finally:
        group.close()


def test_unmapped_region_has_size_0_and_no_mappers(name: str, sdk_mount: str) -> None:
    os.close(os.open(os.path.join(sdk_mount, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    info = libmshare.stat(name)
    assert info.established is False and info.stats is not None
    assert (info.stats.start, info.stats.size, info.stats.mappers, info.stats.resident) \
        == (0, 0, 0, 0)


def test_creator_touching_16mib_has_16mib_resident_and_one_mapper(
        name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, TOUCH)
        s = r.stats()
        assert (s.start, s.size) == (r.start, r.size)
    assert s.resident == TOUCH and s.mappers == 1
    assert 0 < s.page_tables and 0 <= s.pmd_mapped <= s.resident


def test_two_attachers_touching_make_three_mappers(
        name: str, align: int, attachers: Attachers) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, TOUCH)
        assert r.stats().mappers == 1
        attachers.start()
        s = r.stats()
    assert s.mappers == 3 and s.resident == TOUCH  # they touched the same memory


def test_attacher_that_detaches_is_no_longer_a_mapper(
        name: str, align: int, attachers: Attachers) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, TOUCH)
        attachers.start()
        attachers.let_go(0)
        s = r.stats()
    assert s.mappers == 2 and s.resident == TOUCH


def test_smaps_of_the_window_agrees_with_the_stats(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, 4 << 20)
        s = r.stats()
        fields = kapi.smaps_entry(r.start)
    assert kapi.smaps_kb(fields, "Rss") == s.resident // 1024 == 4 << 10  # kB
    assert int(fields["MshareMappers"]) == s.mappers == 1


def _create_in_cgroup(group: Path, name: str, align: int) -> tuple[int, str | None, int]:
    """In a child: join ``group``, create and touch a region; (memcg_id, cgroup, the
    inode of this process's cgroup directory as /proc/self/cgroup names it)."""
    (group / "cgroup.procs").write_text(str(os.getpid()))
    with open("/proc/self/cgroup") as f:
        rel = next(line for line in f if line.startswith("0::")).strip()[3:]
    own = harness.CG_ROOT / rel.lstrip("/")
    with libmshare.create(name, align) as r:
        _touch(r.buf, PAGE)
        s = r.stats()
    return s.memcg_id, s.cgroup, own.stat().st_ino


@pytest.mark.serial  # enables the memory controller at the root of the cgroup tree
def test_memcg_id_is_the_inode_of_the_creators_cgroup(name: str, align: int) -> None:
    if not harness.memory_controller():
        pytest.skip("kernel config: no memory cgroup controller")
    with harness.memory_cgroup("stats") as group:
        memcg_id, cgroup, own_ino = harness.in_child(_create_in_cgroup, group, name, align)
        assert memcg_id == own_ino == group.stat().st_ino
        assert cgroup is not None and os.path.samefile(cgroup, group)


def test_mshare_stat_json_agrees_with_the_sdk(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, 4 << 20)
        res = subprocess.run([*PYTHON, "-m", "libmshare.cli", "stat", "--json", name],
                             capture_output=True, text=True, timeout=harness.scaled(240),
                             check=False)
        info = libmshare.stat(name)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert info.stats is not None
    assert json.loads(res.stdout)["stats"] == dataclasses.asdict(info.stats)


def test_stats_ioctl_on_the_mount_directory_is_enotty(sdk_mount: str) -> None:
    fd = os.open(sdk_mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as raw:
            fcntl.ioctl(fd, _libc.MSHARE_GET_STATS, bytearray(64))
        with pytest.raises(MshareError) as sdk:
            _libc.get_stats(fd, sdk_mount)
    finally:
        os.close(fd)
    assert raw.value.errno == errno.ENOTTY
    assert sdk.value.errno == errno.ENOTTY and not isinstance(sdk.value, NotSupportedError)


def test_stats_ioctl_on_mshare_info_is_enotty(sdk_mount: str) -> None:
    fd = os.open(os.path.join(sdk_mount, "mshare_info"), os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raw:
            fcntl.ioctl(fd, _libc.MSHARE_GET_STATS, bytearray(64))
    finally:
        os.close(fd)
    assert raw.value.errno == errno.ENOTTY


def test_readonly_attacher_reads_stats(name: str, align: int) -> None:
    with libmshare.create(name, align) as r:
        _touch(r.buf, PAGE)
        code = ("import sys, libmshare\n"
                "with libmshare.attach(sys.argv[1], readonly=True) as r:\n"
                "    s = r.stats()\n"
                "    print(s.mappers, s.resident)\n")
        res = harness.run_python(code, name, timeout=240)
    assert res.returncode == 0, res.stderr
    mappers, resident = map(int, res.stdout.split())
    assert mappers == 2 and resident >= PAGE
