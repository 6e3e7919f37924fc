"""One read(2) done by an io_uring worker thread (io-wq), through raw system calls.

The suite needs a fault taken by a user worker (PF_USER_WORKER: io_uring's io-wq and
SQPOLL threads, vhost's), which shares its process's mm but never returns to user space.
IOSQE_ASYNC sends the request straight to io-wq instead of trying it inline first.
Layouts are <linux/io_uring.h>'s (x86_64); no liburing in the guest.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from . import kapi

_SYS_IO_URING_SETUP = 425
_SYS_IO_URING_ENTER = 426
_IORING_OFF_SQ_RING = 0
_IORING_OFF_SQES = 0x10000000
_IORING_ENTER_GETEVENTS = 1
_IORING_OP_READ = 22
_IOSQE_ASYNC = 1 << 4
_SQE_SIZE = 64
_CQE_SIZE = 16

# struct io_uring_params: 10 u32, then io_sqring_offsets and io_cqring_offsets (each 8
# u32 and a u64 user_addr): 120 bytes.
_PARAMS = struct.Struct("=10I 8IQ 8IQ")
# struct io_uring_sqe, the fields a read uses: opcode, flags, ioprio, fd, off, addr, len,
# rw_flags, user_data; the rest zero.
_SQE = struct.Struct("=BBHiQQIIQ")


def _check(ret: int, op: str) -> int:
    if ret < 0:
        kapi._raise(op)  # the syscall layer's errno-to-OSError
    return ret


def _u32(ring: mmap.mmap, offset: int) -> int:
    value: int = struct.unpack_from("=I", ring, offset)[0]
    return value


def worker_read(fd: int, addr: int, nbytes: int) -> int:
    """Read nbytes from fd (at offset 0) into addr by an io-wq worker; the bytes read,
    or OSError with the request's errno."""
    params = ctypes.create_string_buffer(_PARAMS.size)
    ring_fd = _check(kapi._syscall(_SYS_IO_URING_SETUP, 1, ctypes.addressof(params),
                                   0, 0, 0, 0), "io_uring_setup")
    try:
        p = _PARAMS.unpack(params.raw)
        sq_entries = p[0]
        _, sq_tail, sq_mask, _, _, _, sq_array = p[10:17]
        cq_head, cq_tail, cq_mask, _, _, cqes = p[19:25]
        # IORING_FEAT_SINGLE_MMAP (5.4+): one mapping holds both rings.
        ring_size = max(sq_array + 4 * sq_entries, cqes + _CQE_SIZE * p[1])
        ring = mmap.mmap(ring_fd, ring_size, offset=_IORING_OFF_SQ_RING)
        sqes = mmap.mmap(ring_fd, _SQE_SIZE * sq_entries, offset=_IORING_OFF_SQES)
        try:
            tail = _u32(ring, sq_tail)
            slot = tail & _u32(ring, sq_mask)
            sqes[slot * _SQE_SIZE:(slot + 1) * _SQE_SIZE] = bytes(_SQE_SIZE)
            _SQE.pack_into(sqes, slot * _SQE_SIZE, _IORING_OP_READ, _IOSQE_ASYNC, 0, fd,
                           0, addr, nbytes, 0, 1)
            struct.pack_into("=I", ring, sq_array + 4 * slot, slot)
            # x86 stores are not reordered with older stores: the kernel sees the entry
            # before the tail.
            struct.pack_into("=I", ring, sq_tail, tail + 1)
            _check(kapi._syscall(_SYS_IO_URING_ENTER, ring_fd, 1, 1, _IORING_ENTER_GETEVENTS,
                                 0, 0), "io_uring_enter")
            head = _u32(ring, cq_head)
            if head == _u32(ring, cq_tail):
                raise RuntimeError("io_uring_enter returned with no completion")
            cqe = cqes + _CQE_SIZE * (head & _u32(ring, cq_mask))
            res: int = struct.unpack_from("=Qi", ring, cqe)[1]
            struct.pack_into("=I", ring, cq_head, head + 1)
        finally:
            sqes.close()
            ring.close()
    finally:
        os.close(ring_fd)
    if res < 0:
        raise OSError(-res, f"io_uring read: {os.strerror(-res)}")
    return res
