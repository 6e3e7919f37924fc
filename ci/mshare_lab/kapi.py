"""The raw kernel interface the guest suite talks to: syscalls through ctypes, nothing more.

No region logic lives here: every call maps to one system call, raises OSError with the
kernel's errno, and returns what the kernel returned.  mmap/munmap/mount/umount2 come from
libmshare's binding layer (same behaviour: OSError subclasses keeping errno); the rest
(mprotect, mremap, madvise, mlock, process_vm_readv/writev, userfaultfd, vmsplice, futex)
is not part of the SDK and is defined here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
import struct

from libmshare import _libc as _sdk

from . import proc

# Same behaviour as a raw call (OSError subclasses keeping errno): use the SDK's binding.
mmap = _sdk.mmap
munmap = _sdk.munmap
mount = _sdk.mount
umount2 = _sdk.umount2
read_mshare_info = _sdk.read_mshare_info  # pread of struct mshare_info; None before mmap
mshare_stats = _sdk.get_stats  # ioctl(MSHARE_GET_STATS): struct mshare_stats
MSHARE_F_HUGE = _sdk.MSHARE_F_HUGE


def mshare_set_flags(fd: int, flags: int) -> None:
    """ioctl(fd, MSHARE_SET_FLAGS, &flags) as given (the SDK refuses unknown bits before
    the kernel sees them; the suite wants the kernel's answer)."""
    fcntl.ioctl(fd, _sdk.MSHARE_SET_FLAGS, struct.pack("=Q", flags))


def mshare_get_flags(fd: int) -> int:
    """ioctl(fd, MSHARE_GET_FLAGS): the region's flags."""
    flags: int = struct.unpack("=Q", fcntl.ioctl(fd, _sdk.MSHARE_GET_FLAGS, bytes(8)))[0]
    return flags

PAGE = os.sysconf("SC_PAGE_SIZE")

# <asm-generic/mman-common.h>, <linux/mman.h> (x86_64): the SDK's, plus what it lacks.
PROT_NONE = _sdk.PROT_NONE
PROT_READ = _sdk.PROT_READ
PROT_WRITE = _sdk.PROT_WRITE
PROT_EXEC = 0x4
MAP_SHARED = _sdk.MAP_SHARED
MAP_PRIVATE = _sdk.MAP_PRIVATE
MAP_FIXED = _sdk.MAP_FIXED
MAP_ANONYMOUS = _sdk.MAP_ANONYMOUS
MAP_NORESERVE = _sdk.MAP_NORESERVE
MAP_FIXED_NOREPLACE = _sdk.MAP_FIXED_NOREPLACE
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# madvise advice values
MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25

# <sys/mount.h>
MS_RDONLY = 1
MS_REMOUNT = 32
MNT_DETACH = _sdk.MNT_DETACH

# x86_64 syscall numbers for calls glibc has no wrapper for
SYS_futex = 202
SYS_userfaultfd = 323

FUTEX_WAIT = 0
FUTEX_WAKE = 1

# <linux/userfaultfd.h>
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_REGISTER_MODE_MISSING = 1
UFFDIO_REGISTER_MODE_WP = 2
UFFDIO_REGISTER_MODE_MINOR = 4
UFFD_USER_MODE_ONLY = 1  # userfaultfd(2) flag: no kernel-mode faults (unprivileged use)
UFFD_FEATURE_WP_ASYNC = 1 << 15

# <linux/personality.h>
READ_IMPLIES_EXEC = 0x0400000
PER_QUERY = 0xFFFFFFFF
SYS_remap_file_pages = 216

_libc = ctypes.CDLL(None, use_errno=True)


def _fn(name: str, restype: type, *argtypes: type) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    f = getattr(_libc, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_vp, _sz, _int, _ul, _ssz = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_ulong, \
    ctypes.c_ssize_t
_mprotect = _fn("mprotect", _int, _vp, _sz, _int)
_mremap = _fn("mremap", _sz, _vp, _sz, _sz, _int, _vp)
_madvise = _fn("madvise", _int, _vp, _sz, _int)
_mlock = _fn("mlock", _int, _vp, _sz)
_munlock = _fn("munlock", _int, _vp, _sz)
_mlockall = _fn("mlockall", _int, _int)
_munlockall = _fn("munlockall", _int)
_syscall = _fn("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long,
               ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long)
_ioctl = _fn("ioctl", _int, _int, _ul, _vp)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", _vp), ("iov_len", _sz)]


_pvr = _fn("process_vm_readv", _ssz, _int, ctypes.POINTER(_Iovec), _ul,
           ctypes.POINTER(_Iovec), _ul, _ul)
_pvw = _fn("process_vm_writev", _ssz, _int, ctypes.POINTER(_Iovec), _ul,
           ctypes.POINTER(_Iovec), _ul, _ul)
_vmsplice = _fn("vmsplice", _ssz, _int, ctypes.POINTER(_Iovec), _ul, ctypes.c_uint)

_MAP_FAILED = ctypes.c_size_t(-1).value


def _raise(op: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{op}: {os.strerror(err)}")


def mprotect(addr: int, length: int, prot: int) -> None:
    if _mprotect(addr, length, prot) != 0:
        _raise("mprotect")


def mremap(old: int, old_len: int, new_len: int, flags: int, new_addr: int = 0) -> int:
    res = _mremap(old, old_len, new_len, flags, new_addr or None)
    if res == _MAP_FAILED:
        _raise("mremap")
    return int(res)


def madvise(addr: int, length: int, advice: int) -> None:
    if _madvise(addr, length, advice) != 0:
        _raise("madvise")


def mlock(addr: int, length: int) -> None:
    if _mlock(addr, length) != 0:
        _raise("mlock")


def munlock(addr: int, length: int) -> None:
    if _munlock(addr, length) != 0:
        _raise("munlock")


MCL_CURRENT = 1
MCL_FUTURE = 2
MAP_POPULATE = 0x8000
MAP_LOCKED = 0x2000


def mlockall(flags: int) -> None:
    if _mlockall(flags) != 0:
        _raise("mlockall")


def munlockall() -> None:
    if _munlockall() != 0:
        _raise("munlockall")


# <linux/mempolicy.h>; x86_64 syscall numbers
MPOL_BIND = 2
MPOL_MF_MOVE = 1 << 1
_SYS_MBIND = 237
_SYS_MOVE_PAGES = 279
_SYS_PROCESS_MRELEASE = 448
_SYS_SET_MEMPOLICY_HOME_NODE = 450


def mbind(addr: int, length: int, mode: int, nodes: int, flags: int = 0) -> None:
    """mbind(2) with a one-word node mask."""
    mask = ctypes.c_ulong(nodes)
    if _syscall(_SYS_MBIND, addr, length, mode, ctypes.addressof(mask), 64, flags) != 0:
        _raise("mbind")


def move_pages_status(addr: int, node: int) -> int:
    """move_pages(2) of the page at addr to node in this process: the page's status."""
    page = ctypes.c_void_p(addr)
    nodes = ctypes.c_int(node)
    status = ctypes.c_int(1)
    if _syscall(_SYS_MOVE_PAGES, 0, 1, ctypes.addressof(page), ctypes.addressof(nodes),
                ctypes.addressof(status), 0) != 0:
        _raise("move_pages")
    return status.value


def set_mempolicy_home_node(addr: int, length: int, node: int) -> None:
    if _syscall(_SYS_SET_MEMPOLICY_HOME_NODE, addr, length, node, 0, 0, 0) != 0:
        _raise("set_mempolicy_home_node")


def process_mrelease(pidfd: int) -> None:
    if _syscall(_SYS_PROCESS_MRELEASE, pidfd, 0, 0, 0, 0, 0) != 0:
        _raise("process_mrelease")


def peek(addr: int, n: int) -> bytes:
    """Copy n bytes at a user address (a fault here is a real SIGSEGV/SIGBUS)."""
    return ctypes.string_at(addr, n)


def poke(addr: int, data: bytes) -> None:
    ctypes.memmove(addr, data, len(data))


def view(addr: int, n: int) -> memoryview:
    """A writable unsigned-byte memoryview over [addr, addr+n): no copy."""
    return memoryview((ctypes.c_ubyte * n).from_address(addr)).cast("B")


def _iov(addr: int, n: int) -> ctypes.Array[_Iovec]:
    arr = (_Iovec * 1)()
    arr[0].iov_base = addr
    arr[0].iov_len = n
    return arr


def process_vm_readv(pid: int, remote: int, n: int) -> bytes:
    buf = ctypes.create_string_buffer(n)
    got = _pvr(pid, _iov(ctypes.addressof(buf), n), 1, _iov(remote, n), 1, 0)
    if got < 0:
        _raise("process_vm_readv")
    return buf.raw[:got]


def process_vm_writev(pid: int, remote: int, data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    got = _pvw(pid, _iov(ctypes.addressof(buf), len(data)), 1, _iov(remote, len(data)), 1, 0)
    if got < 0:
        _raise("process_vm_writev")
    return int(got)


def vmsplice(fd: int, addr: int, n: int, flags: int = 0) -> int:
    got = _vmsplice(fd, _iov(addr, n), 1, flags)
    if got < 0:
        _raise("vmsplice")
    return int(got)


def userfaultfd(flags: int = os.O_CLOEXEC | os.O_NONBLOCK) -> int:
    fd = _syscall(SYS_userfaultfd, flags, 0, 0, 0, 0, 0)
    if fd < 0:
        _raise("userfaultfd")
    return int(fd)


class _UffdioApi(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class _UffdioRegister(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64),
                ("mode", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


def uffdio_api(fd: int, features: int = 0) -> int:
    """UFFDIO_API handshake asking for features; returns the features the kernel offers."""
    api = _UffdioApi(UFFD_API, features, 0)
    if _ioctl(fd, UFFDIO_API, ctypes.addressof(api)) != 0:
        _raise("UFFDIO_API")
    return int(api.features)


def uffdio_register(fd: int, start: int, length: int, mode: int) -> int:
    reg = _UffdioRegister(start, length, mode, 0)
    if _ioctl(fd, UFFDIO_REGISTER, ctypes.addressof(reg)) != 0:
        _raise("UFFDIO_REGISTER")
    return int(reg.ioctls)


_personality = _fn("personality", _int, _ul)
_mincore = _fn("mincore", _int, _vp, _sz, ctypes.c_char_p)


_prctl = _fn("prctl", _int, _int, _ul, _ul, _ul, _ul)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child forked by ``parent``: prctl(PR_SET_PDEATHSIG), sig when the parent
    exits; exits at once if the parent is gone already (it died before the call)."""
    if _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        _raise("prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os._exit(1)


def personality(persona: int) -> int:
    """personality(2): sets the execution domain, returns the previous one."""
    old = _personality(persona)
    if old == -1:
        _raise("personality")
    return int(old)


def mincore(addr: int, length: int) -> bytes:
    """mincore(2): one byte per page (bit 0: resident)."""
    vec = ctypes.create_string_buffer((length + PAGE - 1) // PAGE)
    if _mincore(addr, length, vec) != 0:
        _raise("mincore")
    return vec.raw


def remap_file_pages(addr: int, size: int, prot: int, pgoff: int, flags: int) -> None:
    if _syscall(SYS_remap_file_pages, addr, size, prot, pgoff, flags, 0) != 0:
        _raise("remap_file_pages")


def futex_wait(addr: int, expected: int, timeout_s: float) -> None:
    """FUTEX_WAIT (shared, not PRIVATE): returns on wake; raises EAGAIN/ETIMEDOUT/EINTR."""

    class _Ts(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    ts = _Ts(int(timeout_s), int((timeout_s % 1) * 1e9))
    if _syscall(SYS_futex, addr, FUTEX_WAIT, expected, ctypes.addressof(ts), 0, 0) != 0:
        _raise("futex(FUTEX_WAIT)")


def futex_wake(addr: int, n: int) -> int:
    woken = _syscall(SYS_futex, addr, FUTEX_WAKE, n, 0, 0, 0)
    if woken < 0:
        _raise("futex(FUTEX_WAKE)")
    return int(woken)


# The /proc readers the suite's cases call through kapi: one implementation, in proc.
Vma = proc.MapDetail
maps = proc.maps
vma_at = proc.vma_at


def minflt() -> int:
    """Minor faults of the calling thread so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def meminfo() -> dict[str, int]:
    """/proc/meminfo in kB, the per-CPU vmstat deltas folded in first (as root)."""
    return proc.meminfo(refresh=os.geteuid() == 0)


PM_PRESENT = 1 << 63
PM_PFN_MASK = (1 << 55) - 1


def pagemap(addr: int, n: int = 1, pid: int | str = "self") -> list[int]:
    """The /proc/PID/pagemap entries of the n pages from addr (bit 63: present; bits 0-54:
    the page frame, shown to CAP_SYS_ADMIN only).  Reading them touches no user page."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        raw = f.read(8 * n)
    return [e for (e,) in struct.iter_unpack("=Q", raw)]


def smaps_entry(start: int, pid: int | str = "self") -> dict[str, str]:
    """The fields of the /proc/PID/smaps entry of the VMA that starts at start, as text
    ("Rss" -> "4 kB"), from proc.smaps; AssertionError when no VMA starts there."""
    entry = proc.smaps(pid).get(start)
    if entry is None:
        raise AssertionError(f"no smaps entry at {start:#x}")
    return entry


def smaps_kb(entry: dict[str, str], key: str) -> int:
    """One "N kB" field of a smaps entry, in kB."""
    return int(entry[key].split()[0])


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, str(e))
