"""Sharer processes: forked children driven by one JSON line per command over a pipe,
each answered with one JSON line.  The commands:

- ``populate``: (sharer 0 only) create the memory, then write one byte to each page,
  alternating with a page of a private anonymous filler mapping, so that the shared
  pages and the filler pages come out of the allocator interleaved; unmap the filler,
  which leaves every other page free (fragmentation that compaction must undo by
  migrating the shared pages).  Pinned to CPU 0 so both come from one per-CPU list.
- ``attach``: (the others) map the memory and read one byte of every page; with
  ``cpu``, pinned to that CPU from then on (so it only ever runs there).
- ``pfns``: record the PFN of every shared page (``/proc/self/pagemap``); with
  ``compare`` also say how many changed since the last call (pages that migrated);
  with ``block_pages``, which memory blocks (of that many pages) hold them.
- ``read``: start a reader loop pinned to ``cpu``: 4 MiB chunks, one byte per page,
  a timestamp after each chunk, until a ``stop`` command arrives; the answer to
  ``stop`` carries the timestamps and the reader's minor faults.  With ``warm_s``, it
  first reads that long unmeasured (beside the driver's guest.ticker) and says it
  started only then.
- ``exit``.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import resource
import select
import time
from array import array
from dataclasses import dataclass, field
from typing import IO, Any

from . import mem

__all__ = ["Sharer", "spawn"]

CHUNK_PAGES = 1024


def _pin(cpu: int | None) -> None:
    os.sched_setaffinity(0, range(os.cpu_count() or 1) if cpu is None else {cpu})


def _populate(m: mem.Mapping, nbytes: int) -> dict[str, Any]:
    _pin(0)
    filler = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    with contextlib.suppress(AttributeError, OSError):
        filler.madvise(mmap.MADV_NOHUGEPAGE)
    fbuf = memoryview(filler)
    buf = m.buf
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for off in range(0, nbytes, mem.PAGE):
        buf[off] = 1
        fbuf[off] = 2
    elapsed = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - ru0
    fbuf.release()
    filler.close()  # frees every other page
    _pin(None)
    return {"populate_s": elapsed, "populate_faults": faults}


@dataclass
class _State:
    backend: str
    name: str
    nbytes: int
    inherited: mmap.mmap | None
    m: mem.Mapping | None = None
    cpu: int | None = None  # pinned here by attach
    pfns: list[int] = field(default_factory=list)


def _reader(st: _State, cpu: int, warm_s: float, reply_fd: int,
            cmd_fd: int) -> dict[str, Any]:
    assert st.m is not None
    _pin(cpu)
    buf = st.m.buf
    step = CHUNK_PAGES * mem.PAGE
    stamps = array("d")
    off = 0
    warm_end = time.monotonic() + warm_s
    while time.monotonic() < warm_end:  # not measured (guest.ticker says why)
        end = min(off + step, st.nbytes)
        buf[off:end:mem.PAGE].tobytes()
        off = 0 if end >= st.nbytes else end
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    os.write(reply_fd, (json.dumps({"started": time.monotonic()}) + "\n").encode())
    while True:
        end = min(off + step, st.nbytes)
        buf[off:end:mem.PAGE].tobytes()
        stamps.append(time.monotonic())
        off = 0 if end >= st.nbytes else end
        if select.select([cmd_fd], [], [], 0)[0]:
            break
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    _pin(st.cpu)
    return {"stamps": stamps.tolist(), "chunk_pages": CHUNK_PAGES, "warm_s": warm_s,
            "minflt": ru1.ru_minflt - ru0.ru_minflt,
            "nvcsw": ru1.ru_nvcsw - ru0.ru_nvcsw, "nivcsw": ru1.ru_nivcsw - ru0.ru_nivcsw}


def _handle(st: _State, cmd: dict[str, Any], reply_fd: int, rd: IO[str]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "populate":
        st.m = mem.create(st.backend, st.name, st.nbytes, st.inherited)
        return _populate(st.m, st.nbytes)
    if op == "attach":
        if cmd.get("cpu") is not None:
            st.cpu = int(cmd["cpu"])
            _pin(st.cpu)
        if st.m is None:
            st.m = mem.attach(st.backend, st.name, st.nbytes, st.inherited)
        ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        sum(st.m.buf[::mem.PAGE].tobytes())  # one byte of every page, in a C loop
        return {"touch_s": time.perf_counter() - t0,
                "touch_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - ru0}
    if op == "pfns":
        assert st.m is not None
        now = mem.pfns(st.m.addr, st.nbytes)
        out: dict[str, Any] = {"present": sum(1 for p in now if p)}
        if cmd.get("compare"):
            out["moved"] = sum(1 for a, b in zip(st.pfns, now, strict=True) if a and b and a != b)
            out["lost"] = sum(1 for a, b in zip(st.pfns, now, strict=True) if a and not b)
        else:
            out["pfn_min"] = min((p for p in now if p), default=0)
            out["pfn_max"] = max(now, default=0)
            out["pageblocks"] = len({p >> 9 for p in now if p})
            if cmd.get("block_pages"):
                out["blocks"] = sorted({p // int(cmd["block_pages"]) for p in now if p})
        st.pfns = now
        return out
    if op == "read":
        result = _reader(st, int(cmd["cpu"]), float(cmd.get("warm_s") or 0.0), reply_fd,
                         rd.fileno())
        stop = json.loads(rd.readline())
        if stop.get("op") != "stop":
            raise RuntimeError(f"expected stop, got {stop}")
        return result
    raise ValueError(f"unknown command {op!r}")


def _child(idx: int, backend: str, name: str, nbytes: int, inherited: mmap.mmap | None,
           cmd_fd: int, reply_fd: int) -> None:
    st = _State(backend, name, nbytes, inherited)
    rd = os.fdopen(cmd_fd, "r", buffering=1)
    while True:
        line = rd.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        try:
            reply = _handle(st, cmd, reply_fd, rd)
        except (OSError, RuntimeError, ValueError, KeyError, AssertionError) as e:
            # The driver reports it and stops the run.
            reply = {"error": f"sharer {idx}: {type(e).__name__}: {e}"}
        os.write(reply_fd, (json.dumps(reply) + "\n").encode())
    if st.m is not None:
        st.m.close()


@dataclass
class Sharer:
    """The driver's handle on one sharer process."""

    idx: int
    pid: int
    cmd: IO[str]
    reply: IO[str]

    def send(self, **cmd: Any) -> None:
        self.cmd.write(json.dumps(cmd) + "\n")
        self.cmd.flush()

    def recv(self) -> dict[str, Any]:
        line = self.reply.readline()
        if not line:
            raise RuntimeError(f"sharer {self.idx} (pid {self.pid}) died")
        doc: dict[str, Any] = json.loads(line)
        if "error" in doc:
            raise RuntimeError(doc["error"])
        return doc

    def call(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.recv()

    def finish(self) -> int:
        """Its exit code (minus the signal that killed it), as Popen.returncode says it."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.send(op="exit")
        self.cmd.close()
        self.reply.close()
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def spawn(idx: int, backend: str, name: str, nbytes: int,
          inherited: mmap.mmap | None) -> Sharer:
    c_r, c_w = os.pipe()
    r_r, r_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(c_w)
            os.close(r_r)
            _child(idx, backend, name, nbytes, inherited, c_r, r_w)
        except BaseException:  # noqa: BLE001 - a forked child must reach os._exit
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(c_r)
    os.close(r_w)
    return Sharer(idx, pid, os.fdopen(c_w, "w"), os.fdopen(r_r, "r"))
