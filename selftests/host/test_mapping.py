"""The memory of a closed mapping must never be reachable: BufferError, never a segfault."""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import pickle
import sys
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN, free_window, is_mapped

from libmshare import _mapping
from libmshare._view import MappedView
from libmshare.errors import AddressInUseError, RegionClosedError

_keys = itertools.count(1 << 40)


def FixedMapping(
    fd: int, start: int, size: int, *, readonly: bool = False
) -> MappedView:
    """One handle on a fresh mapping of ``fd``, as a Region holds it."""
    m = _mapping.map_fixed(fd, start, size, readonly=readonly, key=(0, next(_keys)))
    return MappedView(m, readonly=readonly)


@pytest.fixture
def mapping(memfd: int) -> MappedView:
    return FixedMapping(memfd, free_window(), FAKE_ALIGN)


def assert_refused(m: MappedView) -> None:
    with pytest.raises(BufferError, match=f"{m.start:#x}"):
        m.close()
    assert not m.closed and is_mapped(m.start, m.size)
    m.buf[0] = 42  # still fully usable
    assert m.buf[0] == 42


def test_buf_is_the_mapping(mapping: MappedView, memfd: int) -> None:
    buf = mapping.buf
    assert (buf.format, buf.itemsize, buf.nbytes, buf.readonly) == ("B", 1, FAKE_ALIGN, False)
    buf[10:15] = b"hello"
    assert ctypes.string_at(mapping.start + 10, 5) == b"hello"
    assert buf.obj is None  # no exporter: nothing to write through behind buf's back
    assert os.pread(memfd, 5, 10) == b"hello"
    assert mapping.buf is buf  # one view, like SharedMemory.buf


def test_close_unmaps_and_buf_then_raises(mapping: MappedView) -> None:
    start = mapping.start
    mapping.close()
    assert mapping.closed and not is_mapped(start, FAKE_ALIGN)
    with pytest.raises(RegionClosedError, match="closed"):
        mapping.buf  # noqa: B018
    mapping.close()  # idempotent


def test_a_held_buf_is_released_not_dangling(mapping: MappedView) -> None:
    buf = mapping.buf
    mapping.close()
    with pytest.raises(ValueError, match="released"):
        buf[0]
    with pytest.raises(ValueError, match="released"):
        buf[0] = 1


@pytest.mark.parametrize(
    "derive",
    [
        lambda b: b[1:3],
        lambda b: b[::2],
        lambda b: b[:],
        lambda b: b.cast("Q"),
        lambda b: b.toreadonly(),
        lambda b: memoryview(b),
        lambda b: pickle.PickleBuffer(b),
        lambda b: (ctypes.c_char * 4).from_buffer(b),
        lambda b: b[8:16].cast("Q")[0:1],
    ],
    ids=["slice", "strided", "full-slice", "cast", "toreadonly", "memoryview", "picklebuffer",
         "ctypes-from_buffer", "slice-of-cast-of-slice"],
)
def test_close_refused_while_any_view_lives(mapping: MappedView, derive: object) -> None:
    assert callable(derive)
    view = derive(mapping.buf)
    assert_refused(mapping)
    del view
    gc.collect()
    assert mapping.exports() == 0
    mapping.close()
    assert not is_mapped(mapping.start, FAKE_ALIGN)


def test_released_slice_no_longer_counts(mapping: MappedView) -> None:
    s = mapping.buf[0:8]
    assert_refused(mapping)
    s.release()
    mapping.close()


def test_slices_keep_memory_mapped_after_the_mapping_is_dropped(memfd: int) -> None:
    m = FixedMapping(memfd, free_window(), FAKE_ALIGN)
    start = m.start
    tail = m.buf[-4:]
    tail[:] = b"live"
    del m
    gc.collect()
    # The object is gone but a slice is not: the memory stays until the slice goes.
    assert is_mapped(start, FAKE_ALIGN)
    assert bytes(tail) == b"live"
    del tail
    gc.collect()
    assert not is_mapped(start, FAKE_ALIGN)


def test_dropping_an_unused_mapping_unmaps(memfd: int) -> None:
    m = FixedMapping(memfd, free_window(), FAKE_ALIGN)
    start = m.start
    del m
    gc.collect()
    assert not is_mapped(start, FAKE_ALIGN)


def test_readonly_mapping(memfd: int) -> None:
    os.pwrite(memfd, b"ro", 0)
    fd = os.open(f"/proc/self/fd/{memfd}", os.O_RDONLY)
    try:
        m = FixedMapping(fd, free_window(), FAKE_ALIGN, readonly=True)
    finally:
        os.close(fd)
    assert m.readonly and m.buf.readonly
    assert bytes(m.buf[:2]) == b"ro"
    with pytest.raises(TypeError, match="read-only"):
        m.buf[0] = 1
    m.close()


def test_collision_leaves_both_intact(mapping: MappedView, memfd: int) -> None:
    mapping.buf[:4] = b"keep"
    with pytest.raises(AddressInUseError):
        FixedMapping(memfd, mapping.start, FAKE_ALIGN)
    assert bytes(mapping.buf[:4]) == b"keep"
    mapping.close()


def test_export_of_buf_itself_blocks_close(mapping: MappedView) -> None:
    # A consumer that took buf's own buffer (like numpy.frombuffer(buf)) is refused
    # by release(); ctypes.from_buffer(buf) is such a consumer.
    arr = (ctypes.c_ubyte * 8).from_buffer(mapping.buf)
    assert_refused(mapping)
    del arr
    gc.collect()
    mapping.close()


def test_munmap_of_closed_range_is_not_repeated(memfd: int) -> None:
    m = FixedMapping(memfd, free_window(), FAKE_ALIGN)
    m.close()
    # Reuse the address: a stale finalizer running later would unmap this one.
    again = FixedMapping(memfd, m.start, FAKE_ALIGN)
    gc.collect()
    assert is_mapped(again.start, FAKE_ALIGN)
    again.close()


def test_with_block_slice_releases(mapping: MappedView) -> None:
    with mapping.buf[0:8] as s:
        s[:2] = b"ok"
    mapping.close()  # s is still bound, but released: like mmap.mmap, that is enough
    with pytest.raises(ValueError, match="released"):
        s[0]


def test_exports_read_no_private_struct() -> None:
    # The count must come from documented interfaces, not from an offset into
    # CPython's private _PyManagedBufferObject.
    from libmshare import _mapping, _view

    for mod in (_mapping, _view):
        source = Path(mod.__file__ or "").read_text()
        assert "from_address(id(" not in source and "_EXPORTS_OFFSET" not in source


def test_views_hidden_by_gc_freeze_still_count(mapping: MappedView) -> None:
    s = mapping.buf[0:8]
    gc.freeze()
    try:
        assert_refused(mapping)
    finally:
        gc.unfreeze()
    del s
    mapping.close()


def test_released_slice_still_bound_does_not_count(mapping: MappedView) -> None:
    s = mapping.buf[0:8]
    t = mapping.buf[8:16]
    s.release()
    assert mapping.exports() == 1
    t.release()
    assert mapping.exports() == 0
    mapping.close()


def test_readonly_view_offers_nothing_writable(memfd: int) -> None:
    fd = os.open(f"/proc/self/fd/{memfd}", os.O_RDONLY)
    try:
        m = FixedMapping(fd, free_window(), FAKE_ALIGN, readonly=True)
    finally:
        os.close(fd)
    buf = m.buf
    assert buf.obj is None
    for write in (
        lambda: buf.__setitem__(0, 1),
        lambda: memoryview(buf).__setitem__(0, 1),
        lambda: buf.cast("Q").__setitem__(0, 1),
        lambda: (ctypes.c_char * 4).from_buffer(buf),
        lambda: pickle.PickleBuffer(buf).raw().__setitem__(0, 1),
    ):
        with pytest.raises(TypeError):
            write()
    assert sys.getrefcount(buf) > 0
    m.close()
