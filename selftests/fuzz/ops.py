"""The calls a worker throws at a region window, each checked against its one outcome.

An op takes the worker, one of its views and the worker's random generator.  `ATTACHED`
ops need the view mapped, `DETACHED` ops need it unmapped.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import signal
from collections.abc import Callable

from mshare_lab import kapi

from . import layout
from .layout import PAGE
from .state import RW, Finding, View, Worker

Op = Callable[[Worker, View, random.Random], None]
ANON = kapi.MAP_PRIVATE | kapi.MAP_ANONYMOUS

HINTS = (kapi.MADV_NORMAL, kapi.MADV_RANDOM, kapi.MADV_SEQUENTIAL, kapi.MADV_WILLNEED)
# Every other advice of 6.12 except the memory-failure injectors (they poison pages).
REFUSED_ADVICE = (kapi.MADV_DONTNEED, kapi.MADV_FREE, kapi.MADV_REMOVE, kapi.MADV_DONTFORK,
                  kapi.MADV_DOFORK, kapi.MADV_MERGEABLE, kapi.MADV_UNMERGEABLE,
                  kapi.MADV_HUGEPAGE, kapi.MADV_NOHUGEPAGE, kapi.MADV_DONTDUMP,
                  kapi.MADV_DODUMP, kapi.MADV_WIPEONFORK, kapi.MADV_KEEPONFORK,
                  kapi.MADV_COLD, kapi.MADV_PAGEOUT, kapi.MADV_POPULATE_READ,
                  kapi.MADV_POPULATE_WRITE, kapi.MADV_DONTNEED_LOCKED, kapi.MADV_COLLAPSE)
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4

_msync = kapi._fn("msync", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _inner_range(v: View, rng: random.Random) -> tuple[int, int]:
    """A page range inside the window that is not the whole window."""
    first = rng.randrange(0, 1024)
    pages = rng.choice((1, 2, 17, 512, 4096))
    return v.start + first * PAGE, pages * PAGE


# ---------------------------------------------------------------- data and slots

def read_data(w: Worker, v: View, rng: random.Random) -> None:
    for off in rng.sample(layout.data_pages(v.size), 4):
        w.check_data(v, off, "read")


def write_slot(w: Worker, v: View, rng: random.Random) -> None:
    if not v.writable:
        return check_slots(w, v, rng)
    off = rng.choice(layout.slot_offsets(w.wid))
    val = rng.randrange(1, 256)
    kapi.poke(v.start + off, bytes([val]))
    w.shadow[(v.index, off)] = val
    v.linked = True
    w.expect("slot readback", kapi.peek(v.start + off, 1), bytes([val]))


def check_slots(w: Worker, v: View, rng: random.Random) -> None:
    for off in layout.slot_offsets(w.wid):
        w.expect(f"slot {off // PAGE} of region {v.index}", kapi.peek(v.start + off, 1),
                 bytes([w.slot_value(v, off)]))
    v.linked = True


# ---------------------------------------------------------------- mapping games

def detach(w: Worker, v: View, rng: random.Random) -> None:
    """munmap the window, then prove the addresses no longer reach the region."""
    v.detach()
    anon = kapi.mmap(v.start, 4 * PAGE, RW, ANON | kapi.MAP_FIXED_NOREPLACE, -1)
    try:
        for i in range(4):
            w.expect(f"anonymous page {i} after munmap of the window",
                     kapi.peek(anon + i * PAGE, 1), b"\0")
    finally:
        kapi.munmap(anon, 4 * PAGE)


def attach(w: Worker, v: View, rng: random.Random) -> None:
    prot = RW if rng.random() < 0.6 else kapi.PROT_READ
    flags = rng.choice((0, 0, kapi.MAP_POPULATE, kapi.MAP_LOCKED))
    v.attach(prot, flags)


def anon_over_window(w: Worker, v: View, rng: random.Random) -> None:
    if w.lock_future:  # mlockall(MCL_FUTURE) would populate all 512 GiB of it
        return check_slots(w, v, rng)
    anon = kapi.mmap(v.start, v.size, RW, ANON | kapi.MAP_FIXED | kapi.MAP_NORESERVE, -1)
    v.prot, v.linked = None, False
    try:
        for off in layout.data_pages(v.size)[:4]:
            w.expect("anonymous memory over the window", kapi.peek(anon + off, 1), b"\0")
            kapi.poke(anon + off, b"\xee")  # must never reach the region
    finally:
        kapi.munmap(anon, v.size)


def anon_over_part(w: Worker, v: View, rng: random.Random) -> None:
    addr, n = _inner_range(v, rng)
    w.expect_errno("MAP_FIXED over part of a window", kapi.mmap, addr, n, RW,
                   ANON | kapi.MAP_FIXED, -1, want=errno.EINVAL)


def noreplace_inside(w: Worker, v: View, rng: random.Random) -> None:
    addr, n = _inner_range(v, rng)
    w.expect_errno("MAP_FIXED_NOREPLACE inside a window", kapi.mmap, addr, n, RW,
                   ANON | kapi.MAP_FIXED_NOREPLACE, -1, want=errno.EEXIST)


def partial_munmap(w: Worker, v: View, rng: random.Random) -> None:
    if rng.random() < 0.3:  # across an edge of the window
        addr, n = (v.start - PAGE, 2 * PAGE) if rng.random() < 0.5 else \
            (v.start + v.size - PAGE, 2 * PAGE)
    else:
        addr, n = _inner_range(v, rng)
    w.expect_errno("partial munmap", kapi.munmap, addr, n, want=errno.EINVAL)


def mremap(w: Worker, v: View, rng: random.Random) -> None:
    variant = rng.randrange(4)
    if variant == 0:
        args: tuple[int, ...] = (v.start, v.size, v.size // 2, 0)
    elif variant == 1:
        args = (v.start, v.size, 2 * v.size, kapi.MREMAP_MAYMOVE)
    elif variant == 2:
        args = (v.start, PAGE, PAGE, kapi.MREMAP_MAYMOVE | kapi.MREMAP_FIXED,
                v.start + 8 * v.size)
    else:
        args = (v.start, 0, PAGE, kapi.MREMAP_MAYMOVE)
    w.expect_errno(f"mremap variant {variant}", kapi.mremap, *args, want=errno.EINVAL)


def mprotect(w: Worker, v: View, rng: random.Random) -> None:
    addr, n = (v.start, v.size) if rng.random() < 0.5 else _inner_range(v, rng)
    prot = rng.choice((kapi.PROT_NONE, kapi.PROT_READ, RW, RW | kapi.PROT_EXEC))
    # Write on a read-only attach: the core refuses first (no VM_MAYWRITE), then ours.
    want = errno.EACCES if prot & kapi.PROT_WRITE and not v.writable else errno.EINVAL
    w.expect_errno("mprotect", kapi.mprotect, addr, n, prot, want=want)


def madvise(w: Worker, v: View, rng: random.Random) -> None:
    if rng.random() < 0.3:
        advice = rng.choice(HINTS)  # whole window: no split, so the hint applies
        w.expect_errno(f"madvise hint {advice}", kapi.madvise, v.start, v.size, advice,
                       want=None)
        return
    addr, n = (v.start, v.size) if rng.random() < 0.3 else _inner_range(v, rng)
    advice = rng.choice(REFUSED_ADVICE)
    w.expect_errno(f"madvise {advice}", kapi.madvise, addr, n, advice, want=errno.EINVAL)


def mlock(w: Worker, v: View, rng: random.Random) -> None:
    addr, n = (v.start, v.size) if rng.random() < 0.3 else _inner_range(v, rng)
    w.expect_errno("mlock", kapi.mlock, addr, n, want=None)
    w.expect_errno("munlock", kapi.munlock, addr, n, want=None)


def mlockall(w: Worker, v: View, rng: random.Random) -> None:
    if w.lock_future:
        w.expect_errno("munlockall", kapi.munlockall, want=None)
    else:
        w.expect_errno("mlockall", kapi.mlockall, kapi.MCL_CURRENT | kapi.MCL_FUTURE,
                       want=None)
    w.lock_future = not w.lock_future


def mbind(w: Worker, v: View, rng: random.Random) -> None:
    flags = rng.choice((0, kapi.MPOL_MF_MOVE))
    w.expect_errno("mbind", kapi.mbind, v.start, v.size, kapi.MPOL_BIND, 1, flags,
                   want=errno.EINVAL)


def msync(w: Worker, v: View, rng: random.Random) -> None:
    addr, n = _inner_range(v, rng)
    flags = rng.choice((MS_ASYNC, MS_SYNC, MS_INVALIDATE | MS_SYNC))
    w.expect("msync", _msync(addr, n, flags), 0)


def mincore(w: Worker, v: View, rng: random.Random) -> None:
    vec = kapi.mincore(v.start, layout.DATA_PAGES * PAGE)  # a failure is a finding
    if v.linked:  # the coordinator populated the data pages; the shared tables show them
        w.expect("mincore of populated data pages", set(vec), {1})


# ---------------------------------------------------------------- other ways in

def pvm_read(w: Worker, v: View, rng: random.Random) -> None:
    off = rng.choice(layout.data_pages(v.size))
    got = kapi.process_vm_readv(w.coordinator, v.start + off, 1)
    w.expect("process_vm_readv of the coordinator's data page", got,
             bytes([layout.data_byte(w.batch, v.index, off)]))


def pvm_write(w: Worker, v: View, rng: random.Random) -> None:
    off = rng.choice(layout.slot_offsets(w.wid))
    val = rng.randrange(1, 256)
    if not v.writable:
        w.expect_errno("process_vm_writev into a read-only view", kapi.process_vm_writev,
                       os.getpid(), v.start + off, bytes([val]), want=errno.EFAULT)
        return
    w.expect("process_vm_writev", kapi.process_vm_writev(os.getpid(), v.start + off,
                                                          bytes([val])), 1)
    w.shadow[(v.index, off)] = val


def proc_mem(w: Worker, v: View, rng: random.Random) -> None:
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        off = rng.choice(layout.data_pages(v.size))
        w.expect("/proc/self/mem read", os.pread(fd, 1, v.start + off),
                 bytes([layout.data_byte(w.batch, v.index, off)]))
        slot = rng.choice(layout.slot_offsets(w.wid))
        val = rng.randrange(1, 256)
        if v.writable:
            w.expect("/proc/self/mem write", os.pwrite(fd, bytes([val]), v.start + slot), 1)
            w.shadow[(v.index, slot)] = val
        else:
            w.expect_errno("/proc/self/mem write into a read-only view", os.pwrite, fd,
                           bytes([val]), v.start + slot, want=errno.EIO)
    finally:
        os.close(fd)


def pagemap(w: Worker, v: View, rng: random.Random) -> None:
    kapi.pagemap(v.start, layout.DATA_PAGES)
    kapi.pagemap(v.start + v.size - PAGE, 1)


def userfaultfd(w: Worker, v: View, rng: random.Random) -> None:
    """Every mode is refused for a window, write-protect-async included (v3)."""
    if rng.random() < 0.5:
        fd, features, mode = kapi.userfaultfd(), 0, kapi.UFFDIO_REGISTER_MODE_MISSING
    else:
        fd = kapi.userfaultfd(os.O_CLOEXEC | os.O_NONBLOCK | kapi.UFFD_USER_MODE_ONLY)
        features, mode = kapi.UFFD_FEATURE_WP_ASYNC, kapi.UFFDIO_REGISTER_MODE_WP
    try:
        kapi.uffdio_api(fd, features)
        w.expect_errno(f"userfaultfd register mode {mode}", kapi.uffdio_register, fd,
                       v.start, v.size, mode, want=errno.EINVAL)
    finally:
        os.close(fd)


def refused_remap(w: Worker, v: View, rng: random.Random) -> None:
    """MAP_FIXED at another offset, or remap_file_pages(), over the window: EINVAL.  The
    core has unmapped the window first (documented), except remap_file_pages() of a
    read-only window, which it refuses before touching anything (no VM_SHARED)."""
    if v.fd >= 0 and rng.random() < 0.5:  # the coordinator's inherited view has no fd
        w.expect_errno("MAP_FIXED at pgoff 1 over a window", kapi.mmap, v.start, v.size,
                       v.prot, kapi.MAP_SHARED | kapi.MAP_FIXED, v.fd, PAGE,
                       want=errno.EINVAL)
    else:
        w.expect_errno("remap_file_pages over a window", kapi.remap_file_pages, v.start,
                       v.size, 0, 1, 0, want=errno.EINVAL)
        if not v.writable:
            vma = kapi.vma_at(v.start)
            w.expect("read-only window after remap_file_pages",
                     vma and (vma.start, vma.end), (v.start, v.start + v.size))
            return
    v.prot, v.linked = None, False
    w.expect_errno("mincore after a refused remap", kapi.mincore, v.start, PAGE,
                   want=errno.ENOMEM)


def vmsplice(w: Worker, v: View, rng: random.Random) -> None:
    """GUP through the window: the pipe gets the slot page's current bytes."""
    off = rng.choice(layout.slot_offsets(w.wid))
    r, wr = os.pipe()
    try:
        w.expect("vmsplice", kapi.vmsplice(wr, v.start + off, 1), 1)
        w.expect("vmsplice data", os.read(r, 1), bytes([w.slot_value(v, off)]))
    finally:
        os.close(r)
        os.close(wr)


def fork_child(w: Worker, v: View, rng: random.Random) -> None:
    """A grandchild reads through the inherited view; half of them get SIGKILLed and
    released with process_mrelease() while they run."""
    off = rng.choice(layout.data_pages(v.size))
    want = layout.data_byte(w.batch, v.index, off)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            # A grandchild must not outlive a worker the coordinator SIGKILLs: an orphan
            # pausing for ever kept the worker's report pipe open, and the coordinator
            # waited for its end of file for good (the short mode's overruns).
            kapi.die_with_parent(parent)
            ok = kapi.peek(v.start + off, 1) == bytes([want])
            if rng.random() < 0.5:
                signal.pause()
            os._exit(0 if ok else 3)
        finally:
            os._exit(4)
    if rng.random() < 0.5:
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            try:
                kapi.process_mrelease(pidfd)
            except OSError as e:
                if e.errno not in (errno.ESRCH, errno.EINVAL):
                    raise Finding(f"process_mrelease: {e}") from e
        finally:
            os.close(pidfd)
        os.waitpid(pid, 0)
        return
    status = _wait_or_kill(pid)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        raise Finding(f"grandchild read wrong data (exit {os.WEXITSTATUS(status)})")


def _wait_or_kill(pid: int) -> int:
    """A grandchild that chose to pause gets SIGKILL after a moment."""
    for _ in range(50):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        signal.sigtimedwait([signal.SIGCHLD], 0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def attach_read_implies_exec(w: Worker, v: View, rng: random.Random) -> None:
    """A PROT_READ attach under READ_IMPLIES_EXEC works and is not executable (v3)."""
    old = kapi.personality(kapi.READ_IMPLIES_EXEC)
    try:
        v.attach(kapi.PROT_READ)
    finally:
        kapi.personality(old)
    vma = kapi.vma_at(v.start)
    w.expect("window under READ_IMPLIES_EXEC", vma and (vma.start, vma.end, vma.perms[:3]),
             (v.start, v.start + v.size, "r--"))


ATTACHED: dict[str, Op] = {
    "read_data": read_data, "write_slot": write_slot, "check_slots": check_slots,
    "detach": detach, "anon_over_window": anon_over_window, "anon_over_part": anon_over_part,
    "noreplace_inside": noreplace_inside, "partial_munmap": partial_munmap,
    "mremap": mremap, "mprotect": mprotect, "madvise": madvise, "mlock": mlock,
    "mlockall": mlockall, "mbind": mbind, "msync": msync, "mincore": mincore,
    "pvm_read": pvm_read, "pvm_write": pvm_write, "proc_mem": proc_mem,
    "pagemap": pagemap, "userfaultfd": userfaultfd, "vmsplice": vmsplice,
    "fork_child": fork_child, "refused_remap": refused_remap,
}
DETACHED: dict[str, Op] = {"attach": attach, "mlockall": mlockall,
                           "attach_read_implies_exec": attach_read_implies_exec}
