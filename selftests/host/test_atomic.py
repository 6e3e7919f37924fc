"""libmshare.atomic: semantics, refusals that never crash, and real cross-process use."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _hosthelp import FAKE_ALIGN
from hypothesis import given, settings
from hypothesis import strategies as st

import libmshare
from libmshare import atomic
from libmshare.errors import AtomicUnavailableError, MisalignedError

U32, U64 = (1 << 32) - 1, (1 << 64) - 1


@pytest.mark.parametrize("bits", [32, 64])
def test_each_operation(bits: int) -> None:
    w = bits // 8
    mask = (1 << bits) - 1
    load, store, xchg, cas, add = (
        getattr(atomic, f"{op}_u{bits}")
        for op in ("load", "store", "exchange", "compare_exchange", "fetch_add"))
    buf = bytearray(4 * w)
    store(buf, w, 41)
    assert load(buf, w) == 41 and buf[:w] == bytes(w)
    assert add(buf, w, 1) == 41 and load(buf, w) == 42
    assert add(buf, w, -43) == 42 and load(buf, w) == mask  # wraps like unsigned C
    assert add(buf, w, 1) == mask and load(buf, w) == 0
    assert xchg(buf, w, 7) == 0 and load(buf, w) == 7
    assert cas(buf, w, 6, 9) == 7 and load(buf, w) == 7  # failed: found 7
    assert cas(buf, w, 7, mask) == 7 and load(buf, w) == mask
    assert int.from_bytes(buf[w:2 * w], sys.byteorder) == mask
    atomic.fence()


def test_atomic_word() -> None:
    buf = bytearray(16)
    with atomic.AtomicWord(buf, 8) as w:
        assert w.fetch_add(5) == 0 and w.load() == 5
        assert w.compare_exchange(5, 6) == 5 and w.exchange(1) == 6
        w.store(3)
        assert struct.unpack_from("=Q", buf, 8) == (3,)
        assert "u64 offset=8 open" in repr(w)
    with pytest.raises(ValueError, match="released"):
        w.load()
    with atomic.AtomicWord(buf, 4, bits=32) as w32:
        assert w32.fetch_add(U32) == 0 and w32.load() == U32
    with pytest.raises(ValueError, match="bits"):
        atomic.AtomicWord(buf, 0, bits=16)


def test_atomic_buffer() -> None:
    buf = bytearray(32)
    with atomic.AtomicBuffer(buf) as ab:
        assert ab.fetch_add_u64(8, 2) == 0 and ab.load_u64(8) == 2
        assert ab.fetch_add_u32(4, -1) == 0 and ab.load_u32(4) == U32
        assert ab.compare_exchange_u64(16, 0, 5) == 0 and ab.exchange_u64(16, 1) == 5
        assert ab.compare_exchange_u32(0, 1, 2) == 0 and ab.exchange_u32(0, 3) == 0
        ab.store_u64(24, U64)
        ab.store_u32(0, 9)
        assert struct.unpack("=IIQQQ", buf) == (9, U32, 2, 1, U64)
        with pytest.raises(MisalignedError):
            ab.load_u64(4)
        with pytest.raises(IndexError):
            ab.load_u32(32)
    with pytest.raises(ValueError, match="released"):
        ab.load_u64(0)
    ro = atomic.AtomicBuffer(bytes(8))
    assert ro.load_u64(0) == 0 and "readonly" in repr(ro)
    with pytest.raises(TypeError, match="read-only"):
        ro.fetch_add_u64(0, 1)


REFUSALS: dict[str, tuple[Callable[[], object], type[BaseException]]] = {
    "store-bytes": (lambda: atomic.store_u64(bytes(8), 0, 1), TypeError),
    "add-readonly-view": (lambda: atomic.fetch_add_u64(memoryview(bytearray(8)).toreadonly(),
                                                       0, 1), TypeError),
    "misaligned-64": (lambda: atomic.load_u64(bytearray(16), 4), MisalignedError),
    "misaligned-32": (lambda: atomic.fetch_add_u32(bytearray(16), 2, 1), MisalignedError),
    "past-the-end": (lambda: atomic.load_u64(bytearray(16), 16), IndexError),
    "negative-offset": (lambda: atomic.load_u32(bytearray(16), -4), IndexError),
    "empty": (lambda: atomic.load_u32(bytearray(), 0), IndexError),
    "not-a-buffer": (lambda: atomic.load_u64(object(), 0), TypeError),
    "float-offset": (lambda: atomic.load_u64(bytearray(8), 0.0), TypeError),  # type: ignore[arg-type]
    "too-big": (lambda: atomic.store_u32(bytearray(8), 0, 1 << 32), OverflowError),
    "negative-store": (lambda: atomic.store_u64(bytearray(8), 0, -1), OverflowError),
    "released": (lambda: atomic.load_u64(_released(), 0), ValueError),
    "word-readonly": (lambda: atomic.AtomicWord(bytes(8), 0).store(1), TypeError),
}


def _released() -> memoryview:
    m = memoryview(bytearray(8))
    m.release()
    return m


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refusals_raise(case: str) -> None:
    call, exc = REFUSALS[case]
    with pytest.raises(exc):
        call()


def test_load_of_a_readonly_buffer_is_allowed() -> None:
    assert atomic.load_u64(struct.pack("=Q", 99), 0) == 99
    assert atomic.AtomicWord(bytes(8), 0).load() == 0


def test_region_refusals(fake_mount: Path) -> None:
    with libmshare.create("a", FAKE_ALIGN) as r:
        atomic.store_u64(r.buf, 64, 5)
        stale = r.buf
    with pytest.raises(ValueError, match="released"):
        atomic.load_u64(stale, 64)  # a closed region's buf
    with libmshare.attach("a", readonly=True) as ro:
        assert atomic.load_u64(ro.buf, 64) == 5
        with pytest.raises(TypeError, match="read-only"):
            atomic.fetch_add_u64(ro.buf, 64, 1)
        with pytest.raises(TypeError, match="read-only"):
            atomic.AtomicWord(ro.buf, 64).fetch_add(1)


def test_a_live_word_keeps_the_region_open(fake_mount: Path) -> None:
    r = libmshare.create("w", FAKE_ALIGN)
    w = atomic.AtomicWord(r.buf, 0)
    with pytest.raises(BufferError):
        r.close()
    w.fetch_add(1)
    w.release()
    r.close()


def _fork(n: int, body: Callable[[int], bool]) -> list[int]:
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                ok = body(i)
            finally:
                os._exit(0 if ok else 1)  # the child never returns into pytest
        pids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]


def test_fetch_add_from_many_processes_is_exact(fake_mount: Path) -> None:
    procs, each = 8, 20_000
    with libmshare.create("count", FAKE_ALIGN) as r:
        def body(i: int) -> bool:
            with libmshare.attach("count") as mine, atomic.AtomicWord(mine.buf, 8) as w:
                for _ in range(each):
                    w.fetch_add(1)
                for _ in range(each // 10):
                    atomic.fetch_add_u32(mine.buf, 4, 3)
            return True

        assert _fork(procs, body) == [0] * procs
        assert atomic.load_u64(r.buf, 8) == procs * each
        assert atomic.load_u32(r.buf, 4) == procs * (each // 10) * 3


LOCK, INSIDE, COUNTER, VIOLATIONS = 0, 8, 16, 24


@settings(max_examples=4, deadline=None)
@given(procs=st.integers(2, 4), rounds=st.integers(20, 150), bits=st.sampled_from([32, 64]))
def test_cas_lock_admits_one_process_at_a_time(procs: int, rounds: int, bits: int) -> None:
    # A spin lock on one word; inside, a plain (non-atomic) read-modify-write of a
    # counter would lose updates if two processes were ever inside at once.
    buf = memoryview(_shared(64))
    cas = atomic.compare_exchange_u32 if bits == 32 else atomic.compare_exchange_u64

    def body(i: int) -> bool:
        me = os.getpid()
        for _ in range(rounds):
            while cas(buf, LOCK, 0, me & 0xFFFF_FFFF) != 0:
                os.sched_yield()  # no convoy behind a preempted holder
            if atomic.fetch_add_u64(buf, INSIDE, 1) != 0:
                atomic.fetch_add_u64(buf, VIOLATIONS, 1)
            (n,) = struct.unpack_from("=Q", buf, COUNTER)
            struct.pack_into("=Q", buf, COUNTER, n + 1)
            atomic.fetch_add_u64(buf, INSIDE, -1)
            (atomic.store_u32 if bits == 32 else atomic.store_u64)(buf, LOCK, 0)
        return True

    assert _fork(procs, body) == [0] * procs
    assert atomic.load_u64(buf, VIOLATIONS) == 0
    assert atomic.load_u64(buf, COUNTER) == procs * rounds


def _shared(size: int) -> memoryview:
    import mmap

    return memoryview(mmap.mmap(-1, size, mmap.MAP_SHARED))


def test_missing_extension_is_a_clear_import_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['libmshare._atomic_c'] = None\n"
        "try:\n"
        "    import libmshare.atomic\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, env=os.environ).stdout
    assert out.startswith(AtomicUnavailableError.__name__)
    assert "C extension" in out and "pip install" in out
