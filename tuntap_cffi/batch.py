"""Batch I/O engines: many packets per Python-to-C transition.

Two backends, chosen per device (``Device.batch_backend``):

``io_uring``
    One ring per (device, PacketRing, direction, thread: the single
    issuer).  Every slot has a pre-filled READ_FIXED (or WRITE_FIXED) SQE
    over the ring's slab, which is registered once as a fixed buffer.  Reads
    carry ``RWF_NOWAIT``: a read that finds the TUN queue empty completes at
    once with -EAGAIN instead of being armed (O_NONBLOCK is not honoured for
    pollable files on 6.x), so one ``io_uring_enter`` issues a window of
    reads inline, in slot order, and nothing stays in flight between
    batches: no file reference outlives a call and ``close()`` works as for
    ``readinto``.  The requests name the fd through a registered file
    table that holds it only inside each ``io_uring_enter`` (two
    FILES_UPDATE SQEs around the run; see _UringEngine).  Completions are
    matched by ``user_data`` and checked in bulk (CPython: as bytes, C
    loops; PyPy: one JIT-compiled loop): no Python code runs per packet
    unless something unusual happened (an error, a hole left by a packet
    that arrived mid-batch), which a slow path sorts out.  Batches of a few
    packets use plain read()/write() calls, cheaper than a ring round trip.

``loop``
    ``read()``/``write()`` through cffi, one call per packet, until EAGAIN
    or the ring is full.  Used where io_uring is missing or forbidden
    (ENOSYS, EPERM, ``kernel.io_uring_disabled``) or when forced.

Interrupts.  A Python signal handler runs between two bytecodes of the
thread it interrupts and may raise (KeyboardInterrupt, a SIGALRM timeout):
on CPython mostly right after a C call returns, i.e. after a read() whose
result is then never stored, or after io_uring_enter with the batch's
completions still in the ring.  So every engine records, before each step
that changes what the kernel or the ring holds, what that step is
(``pend``), keeps its inputs until the step is committed, and makes each
store of a step absolute (``ring.count = first + k``, not ``+=``): any
later call can ``settle()`` an interrupted step, again and again if it is
interrupted too, and ends with what an uninterrupted one would have left.
``pend`` is None (idle: the last call returned its packets), ``_BUSY`` (a
call holds ``ring.count`` packets in slots 0.. and has not returned them:
the next call returns them first) or a step record.  The loop engines make
their read()/write() calls from C (``array.extend(map(lib.read, ...))``):
no bytecode, so no handler, runs between a call and the store of its
result.  The device clears ``pend`` when it hands the packets over.
"""

from __future__ import annotations

import errno
import struct
import sys
import threading
from array import array
from itertools import islice, repeat, takewhile
from typing import Any, List, Literal, Optional, Protocol, Tuple, overload

from . import _uring
from ._syscalls import ffi, lib
from .errors import BatchWriteError, error_from_errno  # BatchWriteError: still importable from here
from .ring import PacketRing

__all__ = ["Engine", "Reader", "Writer", "ReadEngine", "WriteEngine", "LoopReadEngine", "LoopWriteEngine", "make_engine",
           "uring_status", "BatchWriteError"]

_RWF_NOWAIT = 0x8  # <linux/fs.h>: fail with EAGAIN instead of waiting (4.14)
# On PyPy, memoryview slicing and bytes() of views run element by element
# (measured: ~100 ns/packet each), while a plain loop over cdata is JIT-compiled:
# the bulk paths below are CPython's, the loops PyPy's.
_BULK = sys.implementation.name == "cpython"
_CLOSED_SLOT = -1_000_000  # sentinel: the device is closed
_CQE = struct.Struct("<Qi4x")  # struct io_uring_cqe: user_data, res, flags
_MIN_WINDOW = 16  # reads a batch starts with (see ReadEngine.fill)
_FEW = 4  # at most this many packets: plain read()/write() calls beat a ring round trip
_ENTER_TRIES = 1000  # io_uring_enter calls a batch may take (short submissions, signals) before giving up
_GETEVENTS = lib.IORING_ENTER_GETEVENTS
_FEAT_CQE_SKIP = lib.IORING_FEAT_CQE_SKIP  # 5.17: without it, engines use the plain fd (see _UringEngine)
_UPDATE_TAG = 0xFFFF_FFFF_FFFF_FFFF  # user_data of the FILES_UPDATE SQEs (a CQE only if one fails)
_SLOT_SHIFT = 24  # a read's user_data is its slot << 24 (see ReadEngine._judge)
_U32 = 0xFFFF_FFFF  # the rings' head and tail are free-running uint32s: sums and differences mod 2**32
_ENTER = _uring.ENTER
_NR_ENTER = _uring.NR_ENTER
_NULL = ffi.NULL
# What an io_uring fault that should never happen tells the user to do.
_REPORT = "a bug in tuntap_cffi or the kernel: please report it; Device.batch_backend = 'loop' avoids io_uring"
_BUSY = -1  # engine.pend: a call holds ring.count packets it has not returned (see the module docstring)
_POSITIVE = (0).__lt__  # takewhile's test, a C function: a read() that got a packet
# The two sentinels under the names the device uses (explicitly internal).
BUSY = _BUSY
CLOSED_SLOT = _CLOSED_SLOT

_status: Optional[Tuple[bool, str]] = None


class Engine(Protocol):
    """What every engine offers the device: its backend, its owner thread, its step record (see "Interrupts")."""

    backend: str  #: "io_uring" or "loop"
    owner: Optional[int]  #: the only thread that may use it (io_uring's single issuer), or None: any
    pend: Any  #: None (idle), _BUSY (a call holds ring.count packets it has not returned) or the step under way

    def settle(self, ring: PacketRing) -> int:
        """Finish what an interrupted call left; return the packets (reads) or writes it holds."""
    def close(self) -> None:
        """Release the engine's ring and fds (idempotent)."""


class Reader(Engine, Protocol):
    """A read engine: ReadEngine (io_uring) or LoopReadEngine."""

    cut: bool  #: a packet filled its slot: the caller re-checks the MTU

    def fill(self, ring: PacketRing, first: int) -> int:
        """Read what is queued into slots first..; the count, -errno, or CLOSED_SLOT."""


class Writer(Engine, Protocol):
    """A write engine: WriteEngine (io_uring) or LoopWriteEngine."""

    def send(self, ring: PacketRing, count: int) -> List[Tuple[int, int]]:
        """Write packets 0..count-1 of *ring*; [(position, -errno)] of the refused ones."""



def uring_status() -> Tuple[bool, str]:
    """(usable, reason): whether io_uring batch I/O works in this process.

    Probed once: a definitive answer is kept for the process; a transient
    failure (EMFILE, ENFILE, ENOMEM, EAGAIN: no fd or memory free just then)
    answers False and is probed again on the next call.  An engine whose
    set-up finds io_uring unusable later (``kernel.io_uring_disabled`` set
    since, seccomp) turns the answer to False.
    """
    global _status
    if _status is None:
        try:
            _status = _uring.probe()
        except _uring.UringUnavailable as exc:
            return False, f"{exc} (transient: probed again on the next call)"
    return _status


def uring_usable() -> Optional[bool]:
    """True or False once known for this process; None while only transient failures were seen."""
    usable, _why = uring_status()
    return usable if _status is not None else None


def _new_uring(n: int) -> Tuple[_uring.Uring, Optional[int]]:
    """A ring of *n* SQEs; single-issuer with deferred task work where the kernel has it.

    SINGLE_ISSUER|DEFER_TASKRUN (6.1) measured 5-10% faster per packet here;
    the price is that only the creating thread may submit, so the engine
    records its owner and the device makes a new engine for another thread
    (loss-free: no request outlives a batch).  Older kernels say EINVAL.
    """
    try:
        return _uring.Uring(n, lib.IORING_SETUP_SINGLE_ISSUER | lib.IORING_SETUP_DEFER_TASKRUN, n), threading.get_ident()
    except _uring.UringUnavailable as exc:
        if exc.errno != errno.EINVAL:
            raise
    return _uring.Uring(n, 0, n), None


class _UringEngine:
    """What the read and write engines share: the ring, its pre-filled SQEs, submitting a run of them.

    One SQE per slot, pre-filled once: READ_FIXED (WRITE_FIXED) of slot i,
    user_data i, over the ring's slab registered as fixed buffer 0 where the
    kernel lets us (it pins the pages: RLIMIT_MEMLOCK applies to users
    without CAP_IPC_LOCK; otherwise plain READ/WRITE on the same addresses).

    Registered file: a request on a plain fd takes and drops a reference to
    the file (two atomics and a lookup); through the registered file table it
    does not: 40-70 ns less per request here (C, one full queue).  But a file
    in the table stays open until it leaves it, and close() must release the
    TUN file at once (non-persistent interfaces vanish then).  So every
    submission is bracketed by two more SQEs, FILES_UPDATE fd -> slot 0
    before the run and -1 -> slot 0 after it, both CQE_SKIP_SUCCESS: the
    table holds the fd only inside that one io_uring_enter, and costs no
    extra syscall (two io_uring_register calls would cost 2.6 us per batch
    from CPython).  The kernel issues SQEs in ring order, each inline to
    completion here (RWF_NOWAIT reads, TUN writes), so the reads see the
    file installed; should one ever not, it fails with EBADF, loudly.
    Where the kernel lacks CQE_SKIP_SUCCESS (< 5.17) or the table, or the
    set-up's trial run shows anything unexpected: plain fds.
    """

    backend = "io_uring"
    name: Optional[str] = None  # the device's, for error messages (set by make_engine)

    def __init__(self, fd: int, ring: PacketRing, fixed_op: int, plain_op: int, rw_flags: int, tag_shift: int) -> None:
        n = ring.slots
        self.n = n
        u, self.owner = _new_uring(max(4, 2 * n))  # n SQEs + the two FILES_UPDATEs
        self.uring = u
        try:
            iov = ffi.new("struct iovec *")
            iov.iov_base = ring._ptr
            iov.iov_len = ring.slots * ring.slot_size
            try:
                u.register(lib.IORING_REGISTER_BUFFERS, iov, 1)
                registered = True
            except _uring.UringUnavailable:
                registered = False
            for i in range(n):
                sqe = u.sqes[i]
                sqe.opcode = fixed_op if registered else plain_op
                sqe.fd = fd
                sqe.off = 0xFFFFFFFFFFFFFFFF  # "current position": tun is a stream
                sqe.addr = ring.slot_address(i)
                sqe.len = ring.slot_size
                sqe.rw_flags = rw_flags
                sqe.buf_index = 0
                sqe.user_data = i << tag_shift
            self.fixed_file = self._set_up_fixed_file(fd)
        except BaseException:
            u.close()
            raise
        self.extra = 2 if self.fixed_file else 0  # SQEs per submission beyond the run
        # What the SQ array must say from the tail on: a run of the whole
        # ring is always these SQE indices ([install,] 0..n-1 [, uninstall]);
        # other runs are slices of 0..n-1 twice (see _map_run).
        updates = ([n], [n + 1]) if self.extra else ([], [])
        # (cdata: a slice copy between cdata arrays is a memcpy, ~75 ns on
        # CPython, ~30 on PyPy, where memoryview slices go item by item.)
        self.whole_run = ffi.new("uint32_t[]", updates[0] + list(range(n)) + updates[1])
        self.seq = ffi.new("uint32_t[]", list(range(n)) * 2)
        # The step under way (see the module docstring): None, _BUSY or
        # (first, count, SQ tail before, CQ head before) of a run of SQEs.
        self.pend: Any = None

    def _set_up_fixed_file(self, fd: int) -> bool:
        """Register a one-slot file table and the two FILES_UPDATE SQEs; try them once; switch the SQEs to slot 0."""
        u, n = self.uring, self.n
        if not u.features & _FEAT_CQE_SKIP:
            return False
        try:
            u.register(lib.IORING_REGISTER_FILES, ffi.new("int32_t[]", [-1]), 1)  # one empty slot
        except _uring.UringUnavailable:
            return False
        self._fds = ffi.new("int32_t[]", [fd, -1])  # the FILES_UPDATE arguments (read at issue time)
        for k in range(2):
            sqe = u.sqes[n + k]
            sqe.opcode = lib.IORING_OP_FILES_UPDATE
            sqe.flags = lib.IOSQE_CQE_SKIP_SUCCESS
            sqe.fd = -1
            sqe.off = 0  # table slot
            sqe.addr = int(ffi.cast("uintptr_t", self._fds + k))
            sqe.len = 1
            sqe.user_data = _UPDATE_TAG
        # A trial: both updates alone must complete silently (no CQE: success).
        tail = u.sq_tail[0]
        u.sq_array[tail & u.sq_mask] = n
        u.sq_array[(tail + 1) & u.sq_mask] = n + 1
        u.sq_tail[0] = (tail + 2) & _U32
        r = u.enter(2, 0, 0)
        if r != 2 or u.cq_tail[0] != u.cq_head[0]:
            u.cq_head[0] = u.cq_tail[0]
            if r != 2 and r >= 0:
                raise OSError(errno.EPROTO, "io_uring: the file-table trial was not submitted whole")  # (make_engine names the device)
            return False
        for i in range(n):
            u.sqes[i].fd = 0
            u.sqes[i].flags = lib.IOSQE_FIXED_FILE
        return True

    def close(self) -> None:
        self.uring.close()

    def _enter(self, first: int, count: int, op: str) -> None:
        """Submit the SQEs of slots first..first+count-1 and wait for all their completions.

        The SQ array from the tail on is set to the run's SQE indices every
        time: a submission moves the tail by count + 2, so the positions
        never repeat in step with the runs (one or two slice copies).
        """
        u = self.uring
        words, tail_i = u.sq_words, u.sq_tail_i
        tail = words[tail_i]
        pos = tail & u.sq_mask
        total = count + self.extra
        if count == self.n and not first:  # the whole ring from slot 0
            run = self.whole_run
            entries = u.sq_entries
            room = entries - pos
            sq_array = u.sq_array
            if room >= total:
                sq_array[pos : pos + total] = run
            else:  # (cdata slices name both ends)
                sq_array[pos:entries] = run[0:room]
                sq_array[0 : total - room] = run[room:total]
        else:
            self._map_run(pos, first, count)
        # Before the kernel can see the run: what settle() needs to finish it.
        self.pend = (first, count, tail, u.cq_words[u.cq_head_i])
        words[tail_i] = (tail + total) & _U32
        r: int = _ENTER(_NR_ENTER, u.fd, total, count, _GETEVENTS, _NULL, 0)
        if r != total:
            self._finish(total, count, op, r)
        # (The caller reads the CQ head through _completed(): a signal can end the wait early.)

    def _map_run(self, pos: int, first: int, count: int) -> None:
        """Point SQ positions pos.. at [install,] the SQEs of slots first..first+count-1 [, uninstall]."""
        u = self.uring
        sq_array, mask, seq = u.sq_array, u.sq_mask, self.seq
        at = pos
        if self.extra:
            sq_array[at] = self.n
            at = (at + 1) & mask
        room = u.sq_entries - at
        if room >= count:
            sq_array[at : at + count] = seq[first : first + count]
        else:
            sq_array[at : u.sq_entries] = seq[first : first + room]
            sq_array[0 : count - room] = seq[first + room : first + count]
        if self.extra:
            sq_array[(at + count) & mask] = self.n + 1

    def _finish(self, want: int, count: int, op: str, r: int) -> None:
        """_enter's rare paths: *r*, the last io_uring_enter's result, was short or failed; submit the rest, wait."""
        u = self.uring
        for _ in range(_ENTER_TRIES):
            if r >= 0:
                want -= r  # short: the kernel ran out of requests and did not wait
            else:
                err = ffi.errno
                # EINTR: a signal cut the wait short; EAGAIN/ENOMEM: no request could be allocated.
                if err not in (errno.EINTR, errno.EAGAIN, errno.ENOMEM):
                    raise error_from_errno(err, op, self.name, f"io_uring_enter of a {op} batch on {self.name} failed")
            if not want and (u.cq_tail[0] - u.cq_head[0]) & _U32 >= count:
                return
            r = u.enter(want, count, _GETEVENTS)
        # Never seen: the kernel kept refusing; the rest of the run (and the
        # SQE that empties the file table) stays queued for the next call.
        raise error_from_errno(
            errno.ENOMEM, op, self.name,
            f"io_uring_enter: {want} requests of a {op} batch on {self.name} not taken after {_ENTER_TRIES} tries "
            "(memory is short; Device.batch_backend = 'loop' needs none)",
        )

    def _stray(self, slot: int, first: int, end: int) -> OSError:
        """The error for a read completion that is not of this batch's slots."""
        return error_from_errno(errno.EPROTO, "read", self.name, f"io_uring completion for slot {slot} of {self.name}, outside {first}..{end - 1}: {_REPORT}")

    def _settle_run(self, run: Tuple[int, int, int, int]) -> int:
        """Finish the kernel's side of an interrupted run: submit what it has not taken, wait for every completion.

        Returns how many of the run's completions are still in the CQ ring
        (0: the caller consumed them already, into its own copy), or -1 if
        the run never reached the SQ ring (its tail store did not happen).
        Idempotent: an interrupted settle leaves what a later one finishes.
        """
        first, count, tail, head = run
        u = self.uring
        end = (tail + count + self.extra) & _U32
        if u.sq_words[u.sq_tail_i] != end:
            return -1
        for _ in range(_ENTER_TRIES):
            left = (end - u.sq_head[0]) & _U32
            if (u.cq_words[u.cq_head_i] - head) & _U32:
                want = 0  # consumed already: only the submission may be missing
            else:
                want = count
            if not left and (u.cq_words[u.cq_tail_i] - u.cq_words[u.cq_head_i]) & _U32 >= want:
                return want
            if u.enter(left, want, _GETEVENTS) < 0 and ffi.errno not in (errno.EINTR, errno.EAGAIN, errno.ENOMEM):
                raise error_from_errno(ffi.errno, "io_uring_enter", None, "io_uring_enter failed finishing an interrupted batch")
        raise OSError(errno.ENOMEM, f"io_uring_enter: an interrupted batch not finished after {_ENTER_TRIES} tries")

    def _completed(self, count: int, op: str) -> int:
        """The CQ head, once *count* completions are there (a signal can end io_uring_enter's wait early)."""
        words = self.uring.cq_words
        head: int = words[self.uring.cq_head_i]
        if (words[self.uring.cq_tail_i] - head) & _U32 < count:
            self._finish(0, count, op, 0)
        return head


class ReadEngine(_UringEngine):
    """io_uring reads into one PacketRing from one fd (the ring is passed per call)."""

    def __init__(self, fd: int, ring: PacketRing) -> None:
        # user_data = slot << 24: byte 3 of a CQE is the slot's low byte,
        # byte 4 its high byte (see _judge and fill).
        super().__init__(fd, ring, lib.IORING_OP_READ_FIXED, lib.IORING_OP_READ, _RWF_NOWAIT, _SLOT_SHIFT)
        n = ring.slots
        self.cut = False  # set when a packet filled its slot: the caller re-checks the MTU
        self.window = min(n, _MIN_WINDOW)
        # fill()'s fast path: when the window is the whole ring (CPython; rings
        # of at most _MIN_WINDOW slots keep the plain-read() prelude of _fill).
        self.whole = n if _BULK and n > _MIN_WINDOW else -1
        self.reader = LoopReadEngine(fd, ring)  # for batches of a few packets
        # CPython's copy of a batch's CQEs (see _copy_cqes), and its res fields as
        # int32: the ring reads the lengths of a batch from slot 0 from it.
        self.raw = bytearray(16 * n)
        self.rawview = memoryview(self.raw)
        self.raw_lengths = self.rawview.cast("i")[2::4]
        # For the bulk check of the CQEs as bytes (see _judge): bytes 3 and 11
        # of each CQE, the slot's low byte and the top byte of res, are
        # (slot & 0xff, 0) when the read got a packet (< 16 MiB); byte 4 is
        # the slot's high byte.
        self.got_all = bytes(b for i in range(n) for b in (i & 0xFF, 0))
        self.ud1 = bytes(i >> 8 for i in range(n)) if n > 256 else None
        # The cut check: res == slot_size, byte by byte (translate tables
        # map that byte's value to 1, every other to 0).
        size = ring.slot_size.to_bytes(3, "little")
        self.cut_hi = max(i for i in range(3) if size[i])
        self.cut_byte = size[self.cut_hi]
        self.cut_tables = [bytes(int(v == size[i]) for v in range(256)) for i in range(3)]
        self.eagain = (-errno.EAGAIN & 0xFF).to_bytes(1, "little") * n
        self.ones = b"\xff" * n
        self.compact: Optional[Tuple[Any, int, int]] = None  # (run, slot, to): _slow's next move (see there)

    def fill(self, ring: PacketRing, first: int) -> int:
        """Read into slots first..slots-1; return how many of them now hold packets (a prefix).

        Returns -errno for an error met before any packet of this call,
        ``_CLOSED_SLOT`` when the fd now reads as closed (/dev/null).  Sets
        ``self.cut`` when a packet filled its slot (it may have been cut
        short: the caller checks the MTU).

        Each read that finds the queue empty still costs the kernel ~0.4 us,
        so not every free slot gets a read: a window does, sized from what
        the last call found (at least _MIN_WINDOW), growing 4x while every
        read of a window gets a packet.  A full queue is drained in windows
        of the whole ring; a forwarder that finds 2 packets per wakeup pays
        for ~16 reads, not 256.  After a call that found at most a few
        packets, the next one starts with up to _FEW plain read() calls and
        goes to the ring only if they all get a packet.
        """
        if first or self.window != self.whole:
            return self._fill(ring, first)
        # CPython, the whole ring in one window (a busy queue): the full
        # batch's check without _judge's general cases, ~1 us less per batch.
        n = self.n
        self._enter(0, n, "read")
        self._copy_cqes(self._completed(n, "read"), n)
        raw, end = self.raw, 16 * n
        if raw[3:end:8] == self.got_all and (self.ud1 is None or raw[4:end:16] == self.ud1):
            ring._lengths_view = self.raw_lengths  # (see _judge)
            if raw[8 + self.cut_hi : end : 16].find(self.cut_byte) >= 0:
                self._cut_check(n)
            ring.count = n  # the step's commit (see the module docstring)
            self.pend = _BUSY
            return n
        k = self._judge(ring, 0, n)
        ring.count = max(k, 0)
        self.pend = _BUSY
        if k >= 0:
            self.window = min(n, max(_MIN_WINDOW, 2 * k))
        return k

    def _fill(self, ring: PacketRing, first: int) -> int:
        """fill() in windows (see there)."""
        slots = ring.slots
        got = 0
        if self.window <= _MIN_WINDOW:
            # The last call found few packets: a few plain read()s cost less
            # than a ring round trip (~1 us each on CPython against ~10 us).
            ring.count = first  # (what the call holds: not a finished call's count, should _BUSY come first)
            self.pend = _BUSY  # the reader records its own step: settle() looks there too
            got = self.reader.fill(ring, first, _FEW)
            if self.reader.cut:
                self.reader.cut = False
                self.cut = True
            if got < _FEW or first + got == slots:  # dry, full, or an error (< 0)
                return got
        while True:
            at = first + got
            want = min(slots - at, self.window)
            self._enter(at, want, "read")
            k = self._reap(ring, at, want)
            ring.count = at + max(k, 0)  # the step's commit
            self.pend = _BUSY
            if k < 0:
                return got if got else k  # after packets: the error repeats on the next call
            got += k
            if k < want or at + k == slots:
                self.window = min(slots, max(_MIN_WINDOW, 2 * got))
                return got
            self.window = min(slots, 4 * want)

    def _reap(self, ring: PacketRing, first: int, count: int) -> int:
        """Take the completions of the reads into slots first..first+count-1; return the packets got (a prefix).

        CPython's variant: the CQEs copied and checked as bytes (see
        _copy_cqes, _judge); PyPy's is _reap_one_by_one, chosen at import.
        """
        head = self._completed(count, "read")
        if first:  # the ring may read lengths from self.raw: keep them before it is overwritten
            ring._own_lengths()
        self._copy_cqes(head, count)
        return self._judge(ring, first, count)

    def _reap_one_by_one(self, ring: PacketRing, first: int, count: int) -> int:
        """_reap on PyPy: per completion, one JIT-compiled loop (see _reap_each)."""
        return self._reap_each(ring, first, count, self._completed(count, "read"))

    if not _BULK:  # chosen once, as selectors.py picks DefaultSelector
        _reap = _reap_one_by_one

    def _copy_cqes(self, head: int, count: int) -> None:
        """Copy the *count* CQEs from *head* on into self.raw (CPython) and consume them.

        CPython checks them as bytes, with bytes operations on one byte of
        each (strided slices, compare, find: C loops over a few hundred
        bytes), so no Python code runs per packet; the ring then reads its
        lengths straight from this copy.  (Strided memoryview copies and
        bytes.find over the whole block, the obvious tools, cost ~10 and ~25
        ns per packet here.)  A CQE is user_data (u64), res (s32), flags
        (u32), little-endian.
        """
        u = self.uring
        c = head & u.cq_mask
        end = 16 * count
        piece = 16 * min(count, u.cq_entries - c)  # the CQEs wrap round the ring's end: two pieces
        self.rawview[:piece] = u.cqe_bytes[16 * c : 16 * c + piece]
        if piece < end:
            self.rawview[piece:end] = u.cqe_bytes[: end - piece]
        u.cq_words[u.cq_head_i] = (head + count) & _U32

    def _judge(self, ring: PacketRing, first: int, count: int) -> int:
        """Check the CQEs in self.raw of reads into slots first..first+count-1; return the packets got (a prefix)."""
        raw = self.raw
        end = 16 * count
        # Matched by user_data, in one comparison when every read got a
        # packet: bytes 3 and 11 of each CQE (the slot's low byte, the top
        # byte of res) against what they are then.
        marks = raw[3:end:8]
        expected = self.got_all if count == self.n else self.got_all[2 * first : 2 * (first + count)]
        if marks == expected:
            k = count
        else:
            # The other usual shape: k packets, then -EAGAIN for the rest
            # (res bytes f5 ff ff ff), still in slot order.
            k = marks.find(255, 1)
            while k > 0 and k & 1 == 0:  # a slot's low byte 0xff, not a top byte
                k = marks.find(255, k + 1)
            k >>= 1
            if k < 0 or (
                marks[: 2 * k] != expected[: 2 * k]
                or marks[2 * k :: 2] != expected[2 * k :: 2]
                or marks[2 * k + 1 :: 2] != self.ones[: count - k]
                or raw[8 + 16 * k : end : 16] != self.eagain[: count - k]
                or raw[9 + 16 * k : end : 16] != self.ones[: count - k]
                or raw[10 + 16 * k : end : 16] != self.ones[: count - k]
            ):
                return self._sort_out(ring, first, count)
        if self.ud1 is not None and raw[4:end:16] != self.ud1[first : first + count]:
            return self._sort_out(ring, first, count)  # out of slot order: never seen
        if first == 0:
            ring._lengths_view = self.raw_lengths
        else:
            ring._owned_view[first : first + k] = self.raw_lengths[:k]
        if raw[8 + self.cut_hi : 16 * k : 16].find(self.cut_byte) >= 0:
            self._cut_check(k)
        return k

    def _cut_check(self, k: int) -> None:
        """Set self.cut if a packet of the first *k* CQEs in self.raw filled its slot.

        A packet as long as its slot may have been cut short (MTU raised
        since): res == slot_size.  res <= slot_size always, so the bytes
        above the slot size's top byte are 0; the callers filter on that
        byte's plane (find) and call this when it holds the slot size's.
        """
        raw, hi = self.raw, self.cut_hi
        hits = int.from_bytes(raw[8 + hi : 16 * k : 16].translate(self.cut_tables[hi]), "little")
        for b in range(hi):
            hits &= int.from_bytes(raw[8 + b : 16 * k : 16].translate(self.cut_tables[b]), "little")
        if hits:
            self.cut = True

    def _sort_out(self, ring: PacketRing, first: int, count: int) -> int:
        """The unusual CQEs (CPython): per completion, from the copy in self.raw."""
        ring._own_lengths()
        lengths = ring._lengths
        end = first + count
        for tag, res in _CQE.iter_unpack(self.rawview[: 16 * count]):
            slot = tag >> _SLOT_SHIFT
            if not first <= slot < end:
                raise self._stray(slot, first, end)
            lengths[slot] = res
        return self._slow(ring, first, count)

    def _reap_each(self, ring: PacketRing, first: int, count: int, head: int) -> int:
        """Per completion: lengths[user_data] = res (PyPy's fast path: one JIT-compiled loop).

        One pass: it also sees whether the batch has the usual shape (in
        slot order, k packets then -EAGAIN) and only otherwise calls _slow.
        """
        u = self.uring
        ring._own_lengths()
        # The CQEs as int32: user_data at 4*i (bytes 0-3: the slot's low
        # byte on top) and 4*i + 1 (the slot's high byte), res at 4*i + 2.
        # (Not through a uint64 pointer: PyPy's JIT reads those ~40 ns slower.)
        cqe, mask, lengths, size = u.cqe_p32, u.cq_mask, ring._lengths, ring.slot_size
        end = first + count
        usual = True
        cut = False
        k = 0
        for j in range(count):
            c = ((head + j) & mask) << 2
            slot = (cqe[c] >> _SLOT_SHIFT) & 0xFF | cqe[c + 1] << 8
            if not first <= slot < end:
                u.cq_words[u.cq_head_i] = (head + count) & _U32
                raise self._stray(slot, first, end)
            res = cqe[c + 2]
            lengths[slot] = res
            if usual:
                if slot != first + j:
                    usual = False
                elif res > 0:
                    if k == j:
                        k += 1
                        cut = cut or res == size
                    else:
                        usual = False  # a packet after an EAGAIN: a hole to close
                elif res != -errno.EAGAIN:
                    usual = False  # an error, or 0: /dev/null after close()
        u.cq_words[u.cq_head_i] = (head + count) & _U32
        if usual:
            if cut:
                self.cut = True
            return k
        return self._slow(ring, first, count)

    def _slow(self, ring: PacketRing, first: int, count: int) -> int:
        """Holes (a packet arrived after an EAGAIN) or errors: compact, per packet.

        Resumable: before each move, self.compact records it; a move is
        idempotent until the next one starts (its source is above its
        target and nothing else writes there), so settle() resumes an
        interrupted compaction from the last move recorded for this run.
        """
        ring._own_lengths()
        lengths = ring._lengths
        size = ring.slot_size
        run = self.pend
        resume = self.compact
        i, out = (resume[1], resume[2]) if resume is not None and resume[0] is run else (first, first)
        end = first + count
        while i < end:
            n = lengths[i]
            if n > 0:
                if out != i:  # move the packet down into the hole: keeps arrival order
                    self.compact = (run, i, out)
                    ffi.memmove(ring._ptr + out * size, ring._ptr + i * size, n)
                    lengths[out] = n
                out += 1
            elif n == 0:
                return _CLOSED_SLOT if out == first else out - first
            elif n != -errno.EAGAIN:
                return n if out == first else out - first  # the error again next call, with no packet before it
            i += 1
        if size in lengths[first:out]:
            self.cut = True
        return out - first

    def settle(self, ring: PacketRing) -> int:
        """Finish what an interrupted call left (see the module docstring); return the packets it holds.

        They are in slots 0..ring.count-1 afterwards, in arrival order, and
        ``pend`` is _BUSY: the caller reads on from there and returns them.
        """
        self.reader._commit(ring)  # a fill of the plain-read prelude, if one was under way
        run = self.pend
        if type(run) is tuple:
            first, count = run[0], run[1]
            left = self._settle_run(run)
            if left < 0:
                k = 0  # the run never reached the kernel
            else:
                if left:  # its completions are still in the CQ ring: take them from there
                    self._take_cqes(ring, first, count, run[3])
                elif _BULK and (self.compact is None or self.compact[0] is not run):
                    self._lengths_from_raw(ring, first, count)  # (PyPy's _reap_each wrote them before consuming)
                k = self._slow(ring, first, count)
            ring.count = first + max(k, 0)
            self.pend = _BUSY
        elif run is None:
            ring.count = 0
            self.pend = _BUSY
        return ring.count

    def _take_cqes(self, ring: PacketRing, first: int, count: int, head: int) -> None:
        """settle(): the run's completions into the ring's lengths, by user_data; then consume them."""
        u = self.uring
        ring._own_lengths()
        lengths, cqes, mask = ring._lengths, u.cqes, u.cq_mask
        for j in range(count):
            cqe = cqes[(head + j) & mask]
            slot = cqe.user_data >> _SLOT_SHIFT
            if first <= slot < first + count:
                lengths[slot] = cqe.res
        u.cq_words[u.cq_head_i] = (head + count) & _U32

    def _lengths_from_raw(self, ring: PacketRing, first: int, count: int) -> None:
        """The lengths of a run whose completions were copied into self.raw (CPython), by user_data."""
        ring._own_lengths()
        lengths = ring._lengths
        for tag, res in _CQE.iter_unpack(self.rawview[: 16 * count]):
            slot = tag >> _SLOT_SHIFT
            if first <= slot < first + count:
                lengths[slot] = res


class LoopReadEngine:
    """The fallback: one cffi read() per packet until EAGAIN or the ring is full.

    The read()s run from C, ``array.extend(takewhile(_POSITIVE, map(lib.read,
    ...)))``: each result is stored as it comes, with no bytecode (so no
    signal handler) between a read and its store, and the loop stops at the
    first read that got nothing (EAGAIN, an error, or 0: /dev/null after
    close(), told apart by errno, cleared before).  Measured no slower than
    the Python loop it replaces.
    """

    backend = "loop"
    owner: Optional[int] = None

    def __init__(self, fd: int, ring: PacketRing) -> None:
        self.fd = fd
        self.cut = False
        self.pend: Any = None  # None, _BUSY, or the first slot of a fill under way (see the module docstring)
        self.results = array("i")  # what the read()s of the fill under way returned, from slot pend on
        self.slot_ptrs = [ring._ptr + i * ring.slot_size for i in range(ring.slots)]

    def close(self) -> None:
        pass

    def fill(self, ring: PacketRing, first: int, limit: int = 0) -> int:
        """Read into slots first.. until EAGAIN, a full ring or (if given) *limit* packets."""
        results = self.results
        del results[:]
        self.pend = first  # from here on, results are this fill's (settle() commits them)
        stop = ring.slots if not limit else min(ring.slots, first + limit)
        read, fd, size = lib.read, self.fd, ring.slot_size
        err = 0
        while first + len(results) < stop:
            ffi.errno = 0
            results.extend(takewhile(_POSITIVE, map(read, repeat(fd), islice(self.slot_ptrs, first + len(results), stop), repeat(size))))
            err = ffi.errno
            if err != errno.EINTR:
                break
        k = self._commit(ring)
        if first + k < stop:  # a read got nothing
            if not err:
                return _CLOSED_SLOT if not k else k
            if err != errno.EAGAIN and not k:
                return -err
        return k

    def settle(self, ring: PacketRing) -> int:
        """Finish what an interrupted call left; return the packets it holds (slots 0..ring.count-1)."""
        if self.pend is None:
            ring.count = 0
        self._commit(ring)
        return ring.count

    def _commit(self, ring: PacketRing) -> int:
        """Commit the fill under way: its results become the lengths of slots pend..; return how many.

        fill() ends with it; settle() runs it for a fill that was interrupted
        (the results are complete up to the last read done).  With no fill
        under way, returns 0 and makes pend _BUSY.
        """
        first = self.pend
        if first is None or first < 0:
            self.pend = _BUSY
            return 0
        results = self.results
        k = len(results)
        if k:  # (an empty slice assignment counts as a resize for an array with views)
            ring._own_lengths()
            ring._lengths[first : first + k] = results
            if ring.slot_size in results:
                self.cut = True
        ring.count = first + k
        self.pend = _BUSY
        return k


class WriteEngine(_UringEngine):
    """io_uring writes of a PacketRing's packets to one fd (the ring is passed per call)."""

    def __init__(self, fd: int, ring: PacketRing) -> None:
        super().__init__(fd, ring, lib.IORING_OP_WRITE_FIXED, lib.IORING_OP_WRITE, 0, 0)
        n = ring.slots
        u = self.uring
        self.seq64 = memoryview(array("Q", list(range(n)) * 2))
        # len is the 7th uint32 of each 64-byte SQE
        self.sqe_len = u.track(u.sqe_u32[6 :: ffi.sizeof("struct io_uring_sqe") // 4])
        self.res = array("i", bytes(4 * n))
        self.ud = array("Q", bytes(8 * n))
        self.writer = LoopWriteEngine(fd, ring)  # for batches of a few packets
        self.done: List[Tuple[int, int]] = []  # the refusals of the last run, stored before its CQEs are consumed

    def send(self, ring: PacketRing, count: int) -> List[Tuple[int, int]]:
        """Write packets 0..count-1 of the ring; return [(position, -errno)] of the refused ones."""
        if count <= _FEW:  # a ring round trip costs more than a few write() calls
            self.writer.pend = None  # (what it recorded is of a call already reported)
            self.pend = _BUSY  # the writer records the step: settle() looks there
            return self.writer.send(ring, count)
        u = self.uring
        ring._own_lengths()  # (after a read batch into this ring: forwarding)
        slots, start = ring.slots, ring.start
        lengths = ring._lengths_view
        lengths_u32 = lengths.cast("B").cast("I")  # the SQE field's type, same bytes
        # SQE j serves physical slot j; packet i is in slot (start + i) % slots.
        if _BULK:
            done = 0
            while done < count:
                s = (start + done) % slots
                piece = min(count - done, slots - s)
                self.sqe_len[s : s + piece] = lengths_u32[done : done + piece]
                done += piece
        else:
            sqes, lens = u.sqes, ring._lengths
            for i in range(count):
                sqes[(start + i) % slots].len = lens[i]
        self._enter(start, count, "write")
        head = self._completed(count, "write")
        if not _BULK:
            return self._check_each(ring, count, head)
        res, ud = memoryview(self.res), memoryview(self.ud)
        in_order = True
        done = 0
        while done < count:
            c = (head + done) & u.cq_mask
            piece = min(count - done, u.cq_entries - c)
            s = (start + done) % slots
            ud[done : done + piece] = u.cqe_u64[2 * c : 2 * (c + piece) : 2]
            if ud[done : done + piece] != self.seq64[s : s + piece]:
                in_order = False
            res[done : done + piece] = u.cqe_i32[4 * c + 2 : 4 * (c + piece) : 4]
            done += piece
        failures: List[Tuple[int, int]] = []
        if not in_order or res[:count] != lengths[:count]:
            # Slow path: a refused write completes out of order (its CQE comes
            # after those of the writes behind it): match by user_data (= slot).
            for i in range(count):
                position = (self.ud[i] - start) % slots
                r = self.res[i]
                if r != lengths[position]:
                    failures.append((position, r if r < 0 else -errno.EIO))
            failures.sort()
        self.done = failures  # before the CQEs are consumed: settle() trusts it once they are
        u.cq_words[u.cq_head_i] = (head + count) & _U32
        return failures  # (pend stays: the device clears it when it has reported the count)

    def _check_each(self, ring: PacketRing, count: int, head: int) -> List[Tuple[int, int]]:
        """Per completion (PyPy): match user_data to packet positions, collect refusals."""
        u = self.uring
        cqes, mask, lengths = u.cqes, u.cq_mask, ring._lengths
        slots, start = ring.slots, ring.start
        failures = []
        for j in range(count):
            cqe = cqes[(head + j) & mask]
            position = (cqe.user_data - start) % slots
            r = cqe.res
            if r != lengths[position]:
                failures.append((position, r if r < 0 else -errno.EIO))
        failures.sort()
        self.done = failures  # (see send)
        u.cq_words[u.cq_head_i] = (head + count) & _U32
        return failures

    def settle(self, ring: PacketRing) -> int:
        """Finish an interrupted send(); return how many of its packets the kernel took (0: none was under way).

        A run that reached the SQ ring is submitted whole and waited for;
        one that did not wrote nothing.  Idempotent until the caller clears
        ``pend`` (having reported the count).
        """
        run = self.pend
        if type(run) is not tuple:  # none, or the writer's (a batch of a few packets)
            return self.writer.settle(ring) if run is not None else 0
        count, head = run[1], run[3]
        left = self._settle_run(run)
        if left > 0:  # its completions are still in the CQ ring: note the refusals, then consume them
            u = self.uring
            cqes, mask = u.cqes, u.cq_mask
            self.done = [(j, -errno.EIO) for j in range(count) if cqes[(head + j) & mask].res <= 0]
            u.cq_words[u.cq_head_i] = (head + count) & _U32
        return count - len(self.done) if left >= 0 else 0  # (-1: it never reached the kernel)


class LoopWriteEngine:
    """The fallback: one cffi write() per packet."""

    backend = "loop"
    owner: Optional[int] = None

    def __init__(self, fd: int, ring: PacketRing) -> None:
        self.fd = fd
        self.pend: Any = None  # None, or the packet count of a send under way
        self.results = array("i")  # what its write()s returned, in packet order
        ptrs = [ring._ptr + i * ring.slot_size for i in range(ring.slots)]
        self.slot_ptrs = ptrs * 2  # packet i of a batch from slot s is in slot_ptrs[s + i]

    def close(self) -> None:
        pass

    def send(self, ring: PacketRing, count: int) -> List[Tuple[int, int]]:
        """Write packets 0..count-1; return [(position, -errno)] of the refused ones.

        The write()s run from C (see LoopReadEngine), each result stored as
        it comes, so settle() knows what an interrupted send wrote.  Only the
        last refusal's errno survives the C loop: every refusal of a batch is
        reported with it (TUN/TAP refuse for the device's state or a bad
        packet, in practice one reason per batch).
        """
        ring._own_lengths()
        results = self.results
        del results[:]
        self.pend = count
        start = ring.start
        results.extend(map(lib.write, repeat(self.fd, count), islice(self.slot_ptrs, start, start + count), ring._lengths))
        failures: List[Tuple[int, int]] = []
        if -1 in results:
            err = -(ffi.errno or errno.EIO)
            failures = [(i, err) for i in range(count) if results[i] < 0]
        return failures  # (pend stays: the device clears it when it has reported the count)

    def settle(self, ring: PacketRing) -> int:
        """How many packets an interrupted send() wrote (0: none was under way); the caller clears ``pend``."""
        if self.pend is None:
            return 0
        written: int = len(self.results) - self.results.count(-1)
        return written


@overload
def make_engine(kind: Literal["read"], backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> Reader: ...
@overload
def make_engine(kind: Literal["write"], backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> Writer: ...
@overload
def make_engine(kind: str, backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> Engine: ...
def make_engine(kind: str, backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> Engine:
    """An engine of *kind* 'read'/'write' for *backend* 'io_uring'/'loop' on device *name*'s *fd*."""
    if backend != "io_uring":
        return LoopReadEngine(fd, ring) if kind == "read" else LoopWriteEngine(fd, ring)
    engine: _UringEngine
    try:
        engine = ReadEngine(fd, ring) if kind == "read" else WriteEngine(fd, ring)
    except OSError as exc:
        err = exc.errno
        if err in (errno.EMFILE, errno.ENFILE):
            # Short of fds (io_uring_setup, or mmap's dup on CPython): the
            # program is at a limit it should hear about; falling back would
            # keep a slower engine for this ring after the shortage ends.
            raise error_from_errno(err, "engine", name, f"cannot set up the io_uring {kind} engine of {name}") from exc
        if err in _uring.TRANSIENT:
            # ENOMEM: memory short or, without CAP_IPC_LOCK, the rings over
            # RLIMIT_MEMLOCK (a per-process limit): this ring gets the loop.
            raise _uring.UringUnavailable(err, f"io_uring rings for {name}: {exc.strerror}") from exc
        if isinstance(exc, _uring.UringUnavailable):
            global _status
            _status = (False, str(exc))  # io_uring is refused now (disabled, seccomp): say so from now on
            raise  # the device falls back to the loop
        raise error_from_errno(err or errno.EIO, "engine", name, f"cannot set up the io_uring {kind} engine of {name}: {_REPORT}") from exc
    engine.name = name
    return engine

