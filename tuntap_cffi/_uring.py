"""A minimal io_uring: raw syscalls through libc ``syscall()``, rings mmap'd.

Facts:
- ``io_uring_setup`` returns an fd whose SQ ring, CQ ring and SQE array are
  mapped with mmap at fixed offsets (one mapping for both rings with
  IORING_FEAT_SINGLE_MMAP, 5.4).  The SQ array maps ring positions to SQE
  indices; we keep it the identity where we can, so submitting the next k
  pre-filled SQEs is one store to the tail.
- Without SQPOLL the kernel reads the SQ ring only inside io_uring_enter and
  we read the CQ ring only after it returns: the syscall orders the memory
  accesses, so plain loads and stores from Python are enough.
- A read on a pollable file with no data is armed (it completes when a
  packet arrives; O_NONBLOCK is not honoured for such files on 6.x), so
  reads stay in flight between batches and hold a reference to the file
  until they complete or the ring is closed.
- ``syscall()`` is variadic: cffi wants every variadic argument as typed
  cdata and prepares a new call interface per call (measured: +1.1 us per
  call on CPython, +1.4 us on PyPy).  io_uring_enter, once per batch, goes
  through the same function cast to a fixed prototype instead: on the
  Linux ABIs integer arguments of a variadic call travel exactly as a
  fixed prototype's do, and glibc's ``syscall()`` is assembly that only
  moves registers (x86-64's %al vector count is not read by it).
- Syscall numbers: 425-427 on every architecture since 5.1, except alpha
  (+110) and mips (per-ABI bases); unknown ones raise ``UringUnavailable``.
"""

from __future__ import annotations

import errno
import mmap
import os
import platform
import sys
from typing import Any, List, Optional, Tuple

from ._syscalls import ffi, lib

__all__ = ["Uring", "UringUnavailable", "syscall_numbers", "probe", "TRANSIENT", "ENTER", "NR_ENTER"]

# Errnos that say something about this moment (fds or memory short), not
# about io_uring: an answer with one of them must not be remembered.
TRANSIENT = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR))

_MAP_POPULATE = 0x8000  # populate the ring pages at mmap time (x86/arm/generic value)


class UringUnavailable(OSError):
    """io_uring cannot be used here (old kernel, seccomp, io_uring_disabled, ...)."""


def syscall_numbers(machine: Optional[str] = None) -> Tuple[int, int, int]:
    """(io_uring_setup, io_uring_enter, io_uring_register) for a ``uname -m`` machine."""
    m = (machine or os.uname().machine).lower()
    if m.startswith("alpha"):
        return 535, 536, 537
    if m.startswith("mips"):
        bits = platform.architecture()[0]
        base = 5000 if bits == "64bit" else 4000  # n64 / o32 (n32 is not told apart here)
        return base + 425, base + 426, base + 427
    if m.startswith("ia64"):
        return 1449, 1450, 1451
    return 425, 426, 427


NR_SETUP, NR_ENTER, NR_REGISTER = syscall_numbers()
_LONG_SETUP = ffi.cast("long", NR_SETUP)
_LONG_REGISTER = ffi.cast("long", NR_REGISTER)
ENTER: Any = ffi.cast("long (*)(long, int, unsigned int, unsigned int, unsigned int, void *, size_t)", lib.syscall)

SQE_SIZE = ffi.sizeof("struct io_uring_sqe")
CQE_SIZE = ffi.sizeof("struct io_uring_cqe")


class Uring:
    """One io_uring instance with *entries* SQEs and its mapped rings."""

    def __init__(self, entries: int, flags: int = 0, cq_entries: int = 0) -> None:
        params = ffi.new("struct io_uring_params *")
        params.flags = flags | (lib.IORING_SETUP_CQSIZE if cq_entries else 0)
        params.cq_entries = cq_entries
        fd = lib.syscall(_LONG_SETUP, ffi.cast("unsigned int", entries), params)
        if fd < 0:
            err = ffi.errno
            raise UringUnavailable(err, f"io_uring_setup(flags={flags:#x}) failed: {os.strerror(err)}")
        self.fd = int(fd)
        self._maps: List[mmap.mmap] = []
        try:
            self._map(params)
        except BaseException:
            self.close()
            raise
        self.flags = params.flags
        self.features = params.features
        self.c_fd = ffi.cast("int", self.fd)  # for the variadic calls

    def _map(self, p: Any) -> None:
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * CQE_SIZE
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        shared = mmap.MAP_SHARED | _MAP_POPULATE
        if p.features & lib.IORING_FEAT_SINGLE_MMAP:
            sq_map = cq_map = mmap.mmap(self.fd, max(sq_size, cq_size), shared, prot, offset=lib.IORING_OFF_SQ_RING)
            self._maps.append(sq_map)
        else:
            sq_map = mmap.mmap(self.fd, sq_size, shared, prot, offset=lib.IORING_OFF_SQ_RING)
            self._maps.append(sq_map)
            cq_map = mmap.mmap(self.fd, cq_size, shared, prot, offset=lib.IORING_OFF_CQ_RING)
            self._maps.append(cq_map)
        sqe_map = mmap.mmap(self.fd, p.sq_entries * SQE_SIZE, shared, prot, offset=lib.IORING_OFF_SQES)
        self._maps.append(sqe_map)
        sq: Any = ffi.cast("char *", ffi.from_buffer(sq_map))
        cq: Any = ffi.cast("char *", ffi.from_buffer(cq_map))
        self.sq_entries = int(p.sq_entries)
        self.cq_entries = int(p.cq_entries)
        self.sq_head = ffi.cast("uint32_t *", sq + p.sq_off.head)  # the kernel's: SQEs it has taken
        self.sq_tail = ffi.cast("uint32_t *", sq + p.sq_off.tail)
        self.sq_flags = ffi.cast("uint32_t *", sq + p.sq_off.flags)
        self.sq_array = ffi.cast("uint32_t *", sq + p.sq_off.array)
        self.sq_mask = int(ffi.cast("uint32_t *", sq + p.sq_off.ring_mask)[0])
        self.cq_head = ffi.cast("uint32_t *", cq + p.cq_off.head)
        self.cq_tail = ffi.cast("uint32_t *", cq + p.cq_off.tail)
        self.cq_mask = int(ffi.cast("uint32_t *", cq + p.cq_off.ring_mask)[0])
        self.sqes = ffi.cast("struct io_uring_sqe *", ffi.from_buffer(sqe_map))
        self.cqes = ffi.cast("struct io_uring_cqe *", cq + p.cq_off.cqes)
        self.cqe_p32 = ffi.cast("int32_t *", self.cqes)
        # Views of the CQEs for bulk reads without a Python loop: as int32
        # (res at 2 + 4*i) and as uint64 (user_data at 2*i).
        cqes = memoryview(cq_map)[p.cq_off.cqes : p.cq_off.cqes + self.cq_entries * CQE_SIZE]
        self._views: List[memoryview] = [cqes]
        self.cqe_bytes = cqes
        self.cqe_i32 = self.track(cqes.cast("i"))
        self.cqe_u64 = self.track(cqes.cast("Q"))
        # The SQEs as uint32 (len at 6 + 16*i) and the SQ array, for bulk writes.
        sqe_bytes = self.track(memoryview(sqe_map))
        self.sqe_u32 = self.track(sqe_bytes.cast("I"))
        # The ring words as uint32s with their indices, for the batch
        # engines' hot paths.  A load and a store cost ~75 ns through a
        # memoryview and ~120 through a cdata pointer on CPython; ~190 and
        # ~15 on PyPy, whose JIT sees through cdata.  The counters are
        # free-running uint32s: every sum and difference is taken mod 2**32.
        if sys.implementation.name == "cpython":
            self.sq_words: Any = self.track(self.track(memoryview(sq_map)[: sq_size & ~3]).cast("I"))
            self.cq_words: Any = self.track(self.track(memoryview(cq_map)[: p.cq_off.cqes]).cast("I"))
        else:
            self.sq_words = ffi.cast("uint32_t *", sq)
            self.cq_words = ffi.cast("uint32_t *", cq)
        self.sq_tail_i = p.sq_off.tail // 4
        self.cq_head_i = p.cq_off.head // 4
        self.cq_tail_i = p.cq_off.tail // 4

    def track(self, view: memoryview) -> memoryview:
        """Remember a view of the rings, to release it before unmapping them."""
        self._views.append(view)
        return view

    def enter(self, to_submit: int, min_complete: int, flags: int) -> int:
        """io_uring_enter; EINTR is returned as -1 with ffi.errno set, like any error."""
        r: int = ENTER(NR_ENTER, self.fd, to_submit, min_complete, flags, ffi.NULL, 0)
        return r

    def register(self, opcode: int, arg: Any, nr_args: int) -> None:
        """io_uring_register, raising UringUnavailable on failure."""
        r = lib.syscall(_LONG_REGISTER, self.c_fd, ffi.cast("unsigned int", opcode), arg, ffi.cast("unsigned int", nr_args))
        if r < 0:
            err = ffi.errno
            raise UringUnavailable(err, f"io_uring_register({opcode}) failed: {os.strerror(err)}")

    def close(self) -> None:
        """Unmap the rings and close the fd: the kernel cancels what is in flight.

        Our views are released first (derived ones before their bases), or
        ``mmap.close()`` would refuse on CPython and leave the maps (and the
        fds mmap dup'd) to the GC.  Callers make sure no thread is inside.
        """
        for view in reversed(getattr(self, "_views", [])):
            try:
                view.release()
            except (BufferError, ValueError):  # a temporary slice still alive: GC frees it
                pass
        self._views = []
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # a view is still exported: leave it to the GC
                pass
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def probe() -> Tuple[bool, str]:
    """Whether io_uring with IORING_OP_READ_FIXED works here, and why not.

    A failure with a TRANSIENT errno (no fd or memory free just now) says
    nothing either way: it raises UringUnavailable instead of answering.
    """
    try:
        ring = Uring(2)
    except OSError as exc:  # UringUnavailable, or mmap's own EMFILE/ENOMEM
        if exc.errno in TRANSIENT:
            raise UringUnavailable(exc.errno, f"io_uring could not be probed: {exc.strerror}") from exc
        return False, str(exc)
    try:
        raw = ffi.new("char[]", ffi.sizeof("struct io_uring_probe") + 256 * ffi.sizeof("struct io_uring_probe_op"))
        try:
            ring.register(lib.IORING_REGISTER_PROBE, raw, 256)
        except UringUnavailable as exc:
            if exc.errno in TRANSIENT:
                raise
            return False, str(exc)
        ops = ffi.cast("struct io_uring_probe_op *", raw + ffi.sizeof("struct io_uring_probe"))
        header = ffi.cast("struct io_uring_probe *", raw)
        need = (lib.IORING_OP_READ_FIXED, lib.IORING_OP_WRITE_FIXED)
        for op in need:
            if op > header.last_op or not ops[op].flags & lib.IO_URING_OP_SUPPORTED:
                return False, f"io_uring opcode {op} is not supported by this kernel"
        return True, "io_uring"
    finally:
        ring.close()

