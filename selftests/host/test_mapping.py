"""The memory of a closed mapping must never be reachable: BufferError, never a segfault."""

from __future__ import annotations

import ctypes
import gc
import os

import pytest
from _hosthelp import FAKE_ALIGN, free_window, is_mapped

from libmshare._mapping import FixedMapping
from libmshare.errors import AddressInUseError, RegionClosedError


@pytest.fixture
def mapping(memfd: int) -> FixedMapping:
    return FixedMapping(memfd, free_window(), FAKE_ALIGN)


def assert_refused(m: FixedMapping) -> None:
    with pytest.raises(BufferError, match=f"{m.start:#x}"):
        m.close()
    assert not m.closed and is_mapped(m.start, m.size)
    m.buf[0] = 42  # still fully usable
    assert m.buf[0] == 42


def test_buf_is_the_mapping(mapping: FixedMapping, memfd: int) -> None:
    buf = mapping.buf
    assert (buf.format, buf.itemsize, buf.nbytes, buf.readonly) == ("B", 1, FAKE_ALIGN, False)
    buf[10:15] = b"hello"
    assert ctypes.string_at(mapping.start + 10, 5) == b"hello"
    assert os.pread(memfd, 5, 10) == b"hello"
    assert mapping.buf is buf  # one view, like SharedMemory.buf


def test_close_unmaps_and_buf_then_raises(mapping: FixedMapping) -> None:
    start = mapping.start
    mapping.close()
    assert mapping.closed and not is_mapped(start, FAKE_ALIGN)
    with pytest.raises(RegionClosedError, match="closed"):
        mapping.buf  # noqa: B018
    mapping.close()  # idempotent


def test_a_held_buf_is_released_not_dangling(mapping: FixedMapping) -> None:
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
        lambda b: memoryview(b.obj),
        lambda b: b.obj,
        lambda b: (ctypes.c_char * 4).from_buffer(b),
        lambda b: b[8:16].cast("Q")[0:1],
    ],
    ids=["slice", "strided", "full-slice", "cast", "toreadonly", "memoryview", "obj-view",
         "obj", "ctypes-from_buffer", "slice-of-cast-of-slice"],
)
def test_close_refused_while_any_view_lives(mapping: FixedMapping, derive: object) -> None:
    assert callable(derive)
    view = derive(mapping.buf)
    assert mapping.exports() >= 1
    assert_refused(mapping)
    del view
    gc.collect()
    assert mapping.exports() == 0
    mapping.close()
    assert not is_mapped(mapping.start, FAKE_ALIGN)


def test_released_slice_no_longer_counts(mapping: FixedMapping) -> None:
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


def test_collision_leaves_both_intact(mapping: FixedMapping, memfd: int) -> None:
    mapping.buf[:4] = b"keep"
    with pytest.raises(AddressInUseError):
        FixedMapping(memfd, mapping.start, FAKE_ALIGN)
    assert bytes(mapping.buf[:4]) == b"keep"
    mapping.close()


def test_export_of_buf_itself_blocks_close(mapping: FixedMapping) -> None:
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


def test_with_block_slice_releases(mapping: FixedMapping) -> None:
    with mapping.buf[0:8] as s:
        s[:2] = b"ok"
    mapping.close()  # s is still bound, but released: like mmap.mmap, that is enough
    with pytest.raises(ValueError, match="released"):
        s[0]


def test_exports_field_is_used_on_this_interpreter() -> None:
    from libmshare import _mapping

    assert _mapping._view_count is _mapping._exports_field


def test_refcount_fallback_is_stricter_but_safe(
    memfd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from libmshare import _mapping

    monkeypatch.setattr(_mapping, "_view_count", _mapping._refcount_estimate)
    m = FixedMapping(memfd, free_window(), FAKE_ALIGN)
    s = m.buf[0:8]
    assert_refused(m)
    s.release()
    assert_refused(m)  # a released slice counts until it is dropped
    del s
    m.close()
