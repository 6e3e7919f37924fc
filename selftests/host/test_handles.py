"""Region objects are handles on one mapping per process: pickle, copy, fork, spawn.

Before: unpickling re-mapped the region at its fixed address, which fails in a process
that maps it already (AddressInUseError from deepcopy or a Queue; a fork Pool hung).
"""

from __future__ import annotations

import copy
import errno
import gc
import itertools
import multiprocessing as mp
import os
import pickle
import warnings
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN, is_mapped

import libmshare
from libmshare import Region


def _read_and_mark(region: Region) -> tuple[int, bytes]:
    # In a pool worker: one more handle (fork) or a fresh attach (spawn).
    head = bytes(region.buf[:6])
    region.buf[100 + os.getpid() % 64] = 1
    start = region.start
    region.close()
    return start, head


def test_deepcopy_is_a_second_handle_on_the_same_mapping(fake_mount: Path) -> None:
    with libmshare.create("dc", FAKE_ALIGN) as r:
        twin = copy.deepcopy(r)
        flat = copy.copy(r)
        assert twin is not r and twin.start == flat.start == r.start
        twin.buf[:4] = b"twin"
        assert bytes(r.buf[:4]) == b"twin"
        twin.close()
        flat.close()
        assert is_mapped(r.start, FAKE_ALIGN) and bytes(r.buf[:4]) == b"twin"
    assert not is_mapped(r.start, FAKE_ALIGN)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_close_in_every_order_unmaps_only_at_the_last(
    fake_mount: Path, order: tuple[int, ...]
) -> None:
    created = libmshare.create("order", FAKE_ALIGN)
    handles = [created, pickle.loads(pickle.dumps(created)), libmshare.attach("order")]
    start = created.start
    assert {h.start for h in handles} == {start}
    for n, i in enumerate(order):
        handles[i].close()
        assert handles[i].closed
        still_open = [h for h in handles if not h.closed]
        assert is_mapped(start, FAKE_ALIGN) == bool(still_open), (order, n)
        for h in still_open:
            h.buf[0] = n  # every remaining handle still reaches the memory
    libmshare.unlink("order")


def test_a_slice_of_one_handle_does_not_block_another(fake_mount: Path) -> None:
    a = libmshare.create("sl", FAKE_ALIGN)
    b = copy.copy(a)
    part = a.buf[:8]
    b.close()  # b's own buf has no views
    with pytest.raises(BufferError):
        a.close()
    part[:2] = b"ok"
    del part
    a.close()
    assert not is_mapped(b.start, FAKE_ALIGN)


def test_queue_in_the_same_process(fake_mount: Path) -> None:
    q: mp.Queue[Region] = mp.get_context("fork").Queue()
    with libmshare.create("q", FAKE_ALIGN) as r:
        q.put(r)
        got = q.get(timeout=30)
        assert got.start == r.start and got is not r
        got.buf[:1] = b"Q"
        got.close()
        assert bytes(r.buf[:1]) == b"Q"
    q.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_map_over_regions(fake_mount: Path, method: str) -> None:
    with libmshare.create("pool", FAKE_ALIGN) as r:
        r.buf[:6] = b"parent"
        with mp.get_context(method).Pool(2) as pool:
            # A hang here was the bug: a timeout turns it into a failure.
            results = pool.map_async(_read_and_mark, [r] * 6).get(timeout=120)
        assert results == [(r.start, b"parent")] * 6
        assert any(r.buf[100:164])
        assert is_mapped(r.start, FAKE_ALIGN)
        r.unlink()


def test_counts_right_after_fork(fake_mount: Path) -> None:
    a = libmshare.create("fk", FAKE_ALIGN)
    b = copy.copy(a)
    pid = os.fork()
    if pid == 0:  # the child's two handles refer to the inherited mapping
        ok = is_mapped(a.start, FAKE_ALIGN)
        c = pickle.loads(pickle.dumps(a))  # a third handle, no second mmap
        a.close()
        c.close()
        ok = ok and is_mapped(b.start, FAKE_ALIGN) and bytes(b.buf[:1]) == b"\0"
        b.buf[:1] = b"c"
        b.close()
        ok = ok and not is_mapped(b.start, FAKE_ALIGN)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child's closes changed nothing here.
    assert is_mapped(a.start, FAKE_ALIGN) and bytes(b.buf[:1]) == b"c"
    a.close()
    assert is_mapped(b.start, FAKE_ALIGN)
    b.close()
    assert not is_mapped(b.start, FAKE_ALIGN)


def test_readonly_handle_on_a_writable_mapping(fake_mount: Path) -> None:
    with libmshare.create("rw", FAKE_ALIGN) as r, libmshare.attach("rw", readonly=True) as ro:
        assert ro.readonly and ro.buf.readonly and ro.start == r.start
        with pytest.raises(TypeError):
            ro.buf[0] = 1
        ro_copy = pickle.loads(pickle.dumps(ro))
        assert ro_copy.readonly
        ro_copy.close()
    with libmshare.attach("rw", readonly=True) as ro:
        with pytest.raises(libmshare.AddressInUseError, match="read-only already"):
            libmshare.attach("rw")
        assert not ro.closed


def test_unpickle_in_the_mapping_process_after_unlink(fake_mount: Path) -> None:
    with libmshare.create("gone", FAKE_ALIGN) as r:
        data = pickle.dumps(r)
        r.unlink()
        with pickle.loads(data) as again:
            assert again.start == r.start


def test_unpickle_refuses_a_name_now_naming_another_region(fake_mount: Path) -> None:
    with libmshare.create("reused", FAKE_ALIGN) as r:
        data = pickle.dumps(r)
    libmshare.unlink("reused")
    libmshare.create("reused", FAKE_ALIGN).close()
    with pytest.raises(libmshare.MshareError) as exc:
        pickle.loads(data)
    assert exc.value.errno == errno.ESTALE


def test_unclosed_region_warns_and_unmaps(fake_mount: Path) -> None:
    r = libmshare.create("leak", FAKE_ALIGN)
    start = r.start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del r
        gc.collect()
    # Only this handle's warning counts: gc.collect() may also finalize what earlier
    # tests left (a failed test's open pipes, say).
    ours = [w for w in caught if "'leak'" in str(w.message)]
    assert [w.category for w in ours] == [ResourceWarning]
    assert "unclosed region" in str(ours[0].message)
    assert not is_mapped(start, FAKE_ALIGN)


def test_dropped_handle_with_a_live_slice_unmaps_when_it_goes(fake_mount: Path) -> None:
    r = libmshare.create("late", FAKE_ALIGN)
    start = r.start
    tail = r.buf[-4:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del r
        gc.collect()
    tail[:] = b"live"
    assert is_mapped(start, FAKE_ALIGN)
    del tail
    gc.collect()
    assert not is_mapped(start, FAKE_ALIGN)


def test_region_cannot_be_built_directly() -> None:
    with pytest.raises(TypeError, match="create"):
        Region()


def test_buf_of_a_dropped_handle_stays_usable(fake_mount: Path) -> None:
    libmshare.create("held", FAKE_ALIGN).close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        buf = libmshare.attach("held").buf  # the handle is dropped at once
        gc.collect()
    buf[:4] = b"held"
    assert bytes(buf[:4]) == b"held"
    del buf
    gc.collect()
    assert not libmshare._mapping.mapped()
