"""A hypothesis state machine: random create / attach / write / read / fork / close /
unlink sequences against a model of the contract.

CI runs the "ci" profile (conftest.py); `--hypothesis-profile=long` runs 10,000 examples.
Cost under TCG (debug kernel): a step that forks ~200 ms, any other step plus the
invariants ~30-60 ms; the "ci" profile generates in about 65 s.  The watchdog leaves
room for hypothesis to shrink a failure (it stops shrinking after 300 s) and is off for
the "long" profile, which runs for hours.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import harness
import kapi
import pytest
from harness import MOUNT, RW
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

pytestmark = pytest.mark.timeout(0 if settings.get_current_profile_name() == "long" else 600)

PAGE = kapi.PAGE
NOREPLACE = kapi.MAP_SHARED | kapi.MAP_FIXED_NOREPLACE
MAX_LIVE = 4


def _offsets(size: int) -> list[int]:
    """Few pages, in different shared page tables (PTE, PMD, PUD levels), both ends."""
    return [0, PAGE, (2 << 20) - PAGE, 2 << 20, 1 << 30, size // 2, size - PAGE]


@dataclass
class Model:
    """What the contract says one region holds, and how this process holds it."""

    path: str
    start: int
    size: int
    fd: int | None
    mapped: bool = True
    linked: bool = True
    data: dict[int, bytes] = field(default_factory=dict)

    def expect(self, off: int) -> bytes:
        return self.data.get(off, b"\0" * 8)

    @property
    def alive(self) -> bool:
        return self.mapped or self.fd is not None or self.linked


class RegionMachine(RuleBasedStateMachine):
    regions_b = Bundle("regions")

    def __init__(self) -> None:
        super().__init__()
        self.rs = harness.Regions()
        self.models: list[Model] = []
        self.prefix = self.rs.name("sm")

    def teardown(self) -> None:
        for m in self.models:
            if m.mapped:
                kapi.munmap(m.start, m.size)
            if m.fd is not None:
                os.close(m.fd)
            if m.linked:
                os.unlink(m.path)
        self.rs.cleanup()

    def _live(self) -> list[Model]:
        return [m for m in self.models if m.alive]

    def _new(self, path: str) -> Model:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        start, size = harness.take_window(), harness.alignment()
        kapi.mmap(start, size, RW, NOREPLACE, fd)
        m = Model(path, start, size, fd)
        self.models.append(m)
        return m

    @initialize(target=regions_b)
    def first_region(self) -> Model:
        """Every run starts with one region, so the rules that take one are enabled."""
        return self._new(f"{MOUNT}/{self.prefix}-{len(self.models)}")

    @precondition(lambda self: len(self._live()) < MAX_LIVE)
    @rule(target=regions_b)
    def create(self) -> Model:
        return self._new(f"{MOUNT}/{self.prefix}-{len(self.models)}")

    @precondition(lambda self: len(self._live()) < MAX_LIVE)
    @rule(target=regions_b, old=regions_b)
    def recreate_same_name(self, old: Model) -> Model:
        if old.linked or any(m.linked and m.path == old.path for m in self.models):
            with_errno = harness.errno_of(os.open, old.path,
                                          os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            assert with_errno == errno.EEXIST
            return old
        m = self._new(old.path)
        assert kapi.peek(m.start, 8) == b"\0" * 8
        return m

    @rule(m=regions_b, i=st.integers(0, 6), value=st.binary(min_size=8, max_size=8))
    def write(self, m: Model, i: int, value: bytes) -> None:
        if not m.mapped:
            return
        off = _offsets(m.size)[i]
        kapi.poke(m.start + off, value)
        m.data[off] = value

    @rule(m=regions_b, i=st.integers(0, 6))
    def read(self, m: Model, i: int) -> None:
        if not m.mapped:
            return
        off = _offsets(m.size)[i]
        assert kapi.peek(m.start + off, 8) == m.expect(off)

    @rule(m=regions_b, i=st.integers(0, 6), value=st.binary(min_size=8, max_size=8))
    def write_in_forked_child(self, m: Model, i: int, value: bytes) -> None:
        if not m.mapped:
            return
        off = _offsets(m.size)[i]
        harness.in_child(kapi.poke, m.start + off, value)
        m.data[off] = value

    @rule(m=regions_b)
    def child_attaches_by_name_and_reads_all(self, m: Model) -> None:
        """A child that drops every inherited region mapping (like an unrelated process)
        opens m's name and reads the region that name holds now: m, a newer region
        created under the same name, or nothing (ENOENT)."""
        offs = _offsets(m.size)
        inherited = [(n.start, n.size) for n in self.models if n.mapped]

        def body() -> list[bytes] | int:
            for start, size in inherited:
                kapi.munmap(start, size)
            try:
                fd = os.open(m.path, os.O_RDONLY)
            except FileNotFoundError:
                return errno.ENOENT
            start, size = harness.read_info(fd)
            kapi.mmap(start, size, kapi.PROT_READ, NOREPLACE, fd)
            return [kapi.peek(start + o, 8) for o in offs]

        got = harness.in_child(body)
        holder = next((n for n in self.models if n.linked and n.path == m.path), None)
        if holder is None:
            assert got == errno.ENOENT
        else:
            assert got == [holder.expect(o) for o in offs]

    @rule(m=regions_b)
    def unmap(self, m: Model) -> None:
        if m.mapped:
            kapi.munmap(m.start, m.size)
            m.mapped = False

    @rule(m=regions_b)
    def remap_through_fd(self, m: Model) -> None:
        if m.mapped or m.fd is None:
            return
        kapi.mmap(m.start, m.size, RW, NOREPLACE, m.fd)
        m.mapped = True
        offs = _offsets(m.size)
        assert [kapi.peek(m.start + o, 8) for o in offs] == [m.expect(o) for o in offs]

    @rule(m=regions_b)
    def close_fd(self, m: Model) -> None:
        if m.fd is not None:
            os.close(m.fd)
            m.fd = None

    @rule(m=regions_b)
    def reopen(self, m: Model) -> None:
        if m.fd is not None or not m.linked:
            return
        m.fd = os.open(m.path, os.O_RDWR)
        assert harness.read_info(m.fd) == (m.start, m.size)

    @rule(m=regions_b)
    def unlink(self, m: Model) -> None:
        if m.linked:
            os.unlink(m.path)
            m.linked = False

    @invariant()
    def directory_lists_exactly_the_linked_names(self) -> None:
        names = {n for n in os.listdir(MOUNT) if n.startswith(self.prefix)}
        assert names == {Path(m.path).name for m in self.models if m.linked}

    @invariant()
    def mappings_match_the_model(self) -> None:
        vmas = kapi.maps()  # one read of /proc/self/maps per step
        for m in self.models:
            over = [(v.start, v.end) for v in vmas if v.start < m.start + m.size
                    and m.start < v.end]
            assert over == ([(m.start, m.start + m.size)] if m.mapped else []), \
                f"{m.path} ({'mapped' if m.mapped else 'unmapped'}): window holds {over}"


TestRegionMachine = RegionMachine.TestCase
