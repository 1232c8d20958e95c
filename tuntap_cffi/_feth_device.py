"""The macOS TAP Device: a feth pair, its frames read through BPF and written through NDRV.

``_darwin.feth`` builds the pair (see its docstring for the kernel's
rules); this module is the Device over it.  ``dev.name`` is the user end,
which link configuration, addresses, routes and ``hwaddr`` act on; the
Device's fd (``fileno()``, what poll and asyncio watch) is the BPF device
of the other end, and writes go to that end's NDRV socket.

Facts that shape this module (XNU xnu-11417.101.15, bsd/net/bpf.c):

- One BPF read returns every frame captured since the last one, each a
  record: ``struct bpf_hdr`` (``bh_caplen`` u32 @8, ``bh_datalen`` u32
  @12, ``bh_hdrlen`` u16 @16: offsets checked against XNU's headers), the
  frame at ``bh_hdrlen`` (18 for Ethernet: ``bpf_attachd`` pads so the
  network header is aligned), the next record at
  ``BPF_WORDALIGN(hdrlen + caplen)`` (4-byte words).  A read must ask for
  exactly the buffer length BIOCSBLEN settled on (``bpf_read``).
- So ``readinto`` cannot put a frame at ``buffer[0]`` without a copy: the
  Device keeps one BPF buffer, reads into it when it is drained, and hands
  out one frame per call with one ``memmove`` (the one copy BPF forces).
  No cdata is made per frame: the pointer to a record's frame is made the
  first time a record starts at that position, then reused by every later
  read (at most one per word of the buffer, kept for the Device's life).
  The header is parsed with ``struct.unpack_from``: its 3-tuple comes from
  CPython's tuple free list and PyPy's JIT removes it, where reading
  memoryview casts in place measured 2.7x slower per frame on PyPy and no
  faster on CPython.
  ``read_batch`` hands out every record of a read into the ring: one
  syscall for as many frames as arrived (the batch primitive macOS has).
  The buffer's position is shared by the readers under a lock that is
  never held across a wait.
- Nothing a handler's exception can cut loses or repeats frames, as in
  the Linux loop engine (``batch.LoopReadEngine``): a BPF read's length is
  stored by C as the read returns (``array.extend`` over ``map(read,
  ...)``), into ``BpfBuffer.fills``, and becomes the buffer's extent with
  stores only (no call, so no point where CPython 3.11 runs a handler)
  once that call or the next one gets to it.  A frame handed to a batch is
  copied into its slot first, then the position after it is stored in the
  engine's ``afters`` (with the buffer's generation: which read it came
  from), then its length is appended to the engine's results: that append
  is the handover (what an interrupted call's next call commits), and the
  buffer's position follows it.  A handler may cut in between any two
  steps (PyPy runs one between any two bytecodes): a frame not yet handed
  over is handed out again, and one handed over moves the position when
  the next taker reconciles (:meth:`BpfBuffer._reconcile`: the last
  handed-over frame of each engine, if from the current read and past the
  position).  ``readinto`` has the
  window every Python read call has: an exception after the frame was
  copied and before the call returns loses that one frame.
- A record whose ``bh_caplen < bh_datalen`` is a frame BPF cut short (its
  buffer was smaller than the frame: ``catchpacket``).  It is never
  delivered as if whole: the read that meets it drops it and raises
  :class:`InvalidPacketError` (EMSGSIZE) naming both lengths; the next
  read goes on with the frames after it.  A batch returns the frames
  before it first, and raises on the next call.
- Writes: one ``write`` per frame on the NDRV socket (a frame shorter than
  an Ethernet header raises :class:`InvalidPacketError` first); batches
  through the loop write engine on that socket.
- close(): the Device's fd life as a utun's (``_utun_device.DarwinOps``),
  and both interfaces destroyed (``SIOCIFDESTROY``).  ``write`` loads the
  NDRV number and calls ``write`` unannounced, as ``readinto`` does the
  BPF number, so the NDRV number is retired the same way
  (``FdLife.retire_also``): /dev/null over it at once (a racing write
  fails and sees ``closed``), freed only once no thread alive at the close
  can still be about to use it.  (Freed with the engines, once no call was
  announced, a writer between its load and its syscall could reach a file
  that reused the number.)
- Waiting for room: XNU's BPF device is always writable, so a write that
  met ENOBUFS/EAGAIN waits on the NDRV socket, blocking (``_wait``) and in
  asyncio (``write_fileno``, what ``aio`` polls for a write).
"""

from __future__ import annotations

import errno as _errno
import select
import struct
import threading
from array import array
from typing import TYPE_CHECKING, Any, List, Optional

from ._darwin import backend as darwin, errnos, feth, libc
from ._syscalls import ffi as _host_ffi, lib as _host_lib
from ._utun_device import DARWIN, UtunWriteEngine, ops_for
from ._validate import check_timeout
from .batch import CLOSED_SLOT, LoopReadEngine
from .device import Device
from .errors import DeviceClosedError, InvalidPacketError, UnsupportedPlatformError, error_from_errno
from .ring import PacketRing

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .batch import Engine

__all__ = ["FethDevice", "open_feth_device"]

_IFF_TAP = _host_lib.IFF_TAP  # (Device's flags: values only, no call)
_IFF_NO_PI = _host_lib.IFF_NO_PI
_RECORD = struct.Struct("=IIH")  # bh_caplen, bh_datalen, bh_hdrlen
_RECORD_AT = 8  # after bh_tstamp (struct timeval32)
_ALIGN = 3  # BPF_WORDALIGN: BPF_ALIGNMENT 4 - 1
_EMPTY = -1  # _take(): the buffer is drained and the read found nothing (EAGAIN)


class BpfBuffer:
    """A TAP's BPF buffer and the position of the next record (see the module docstring).

    Its own object, not the Device's: the engines hold it, and nothing here
    refers back to the Device (an engine table outlives a Device only as
    long as nothing it holds keeps the Device alive).
    """

    def __init__(self, lib: libc.Libc, fd: int, size: int, name: str) -> None:
        self.lib = lib
        self.fd = fd  # -1 once the Device is closed (a read then fails: EBADF)
        self.name = name
        self.buf = bytearray(size)
        self.ptr = _host_ffi.from_buffer(self.buf)
        self.size = size
        self.pos = self.end = 0  # the records not handed out yet: buf[pos:end]
        self.lock = threading.Lock()  # the position; never held across a wait
        self._read = lib.read
        # The length of a read not yet made the buffer's extent (see the module docstring): stored by C.
        self.fills = array("i")
        self.gen = 0  # which read the buffer holds (counts them): the high half of an engine's afters
        self.readers: List["FethReadEngine"] = []  # the batch engines taking from it (see _reconcile)
        self._read_args = ((fd,), (self.ptr,), (size,))
        # The frame pointer of a record at position p: sources[p >> 2], made the first time p is met
        # (then reused by every read: no cdata per frame).  For one bh_hdrlen (the DLT's: fixed per attachment).
        self.sources: List[Any] = [None] * ((size + _ALIGN) >> 2)
        self.hdrlen = -1
        self.memmove = _host_ffi.memmove

    def _refill(self) -> int:
        """One BPF read into the buffer (the lock held): its length, 0 at end of file, -1 with errno.

        The length is stored by C as the read returns (``fills``); a handler
        cutting in after that leaves it for :meth:`_settle` of the next call.
        """
        fd, ptr, size = self._read_args
        if fd[0] != self.fd:  # (closed: -1 now)
            self._read_args = fd, ptr, size = (self.fd,), ptr, size
        self.fills.extend(map(self._read, fd, ptr, size))
        return self._settle()

    def _settle(self) -> int:
        """Make the read in ``fills`` the buffer's extent, by stores only (the lock held): its length (<= 0: none)."""
        fills = self.fills
        n: int = fills[0]
        if n > 0:
            self.gen += 1  # (first: a handler cutting in before the rest leaves the read pending, done again)
            self.pos, self.end = 0, n
        del fills[0]
        return n

    def _reconcile(self) -> None:
        """Move the position past the last frame each engine handed over, if it is further (the lock held).

        A handler that cut in between a frame's handover and the position's
        store left the position before that frame (see the module docstring).
        """
        for engine in self.readers:
            results = engine.results
            if results:
                after = engine.afters[engine.first + len(results) - 1]
                if after >> 32 == self.gen and after & 0xFFFFFFFF > self.pos:
                    self.pos = after & 0xFFFFFFFF

    def _source(self, pos: int, hdrlen: int) -> Any:
        """The pointer to the frame of the record at *pos* (the lock held), made once per position."""
        if hdrlen != self.hdrlen:  # (the first record; never again for a feth: its DLT is fixed)
            self.sources = [None] * ((self.size + _ALIGN) >> 2)
            self.hdrlen = hdrlen
        src = self.sources[pos >> 2] = self.ptr + (pos + hdrlen)
        return src

    def _truncated(self, caplen: int, datalen: int) -> InvalidPacketError:
        return InvalidPacketError(
            _errno.EMSGSIZE, f"BPF captured only {caplen} of the {datalen} bytes of a frame on {self.name} "
                             f"(its buffer is {self.size} bytes): the frame was dropped", self.name)

    def take_frame(self, ptr: Any, size: int) -> int:
        """The next frame copied to *ptr*: its length; -1 (the errno set) or 0 (end of file) if none came."""
        with self.lock:
            if self.fills:  # a read an interrupted call made: its frames come first
                self._settle()
            if self.readers:
                self._reconcile()
            pos = self.pos
            if pos >= self.end:
                n = self._refill()
                if n <= 0:
                    return n if n == 0 else -1
                pos = 0
            caplen: int
            caplen, datalen, hdrlen = _RECORD.unpack_from(self.buf, pos + _RECORD_AT)
            after = (pos + hdrlen + caplen + _ALIGN) & ~_ALIGN
            if caplen < datalen:
                self.pos = after
                raise self._truncated(caplen, datalen)
            if caplen > size:  # (the buffer was checked against the MTU: it grew since)
                self.pos = after
                raise ValueError(f"a frame of {caplen} bytes came on {self.name} but the read buffer holds {size}: "
                                 "it was dropped; use a buffer of at least Device.max_packet_size bytes")
            src = self.sources[pos >> 2]
            if src is None or hdrlen != self.hdrlen:
                src = self._source(pos, hdrlen)
            self.memmove(ptr, src, caplen)  # (first: a handler cutting in here leaves the frame where it was)
            self.pos = after
        return caplen

    def take_records(self, engine: "FethReadEngine", first: int, stop: int, size: int) -> int:
        """Copy records into *engine*'s slots first..stop-1, reading when drained; _EMPTY, CLOSED_SLOT or -errno."""
        lib, buf, memmove = self.lib, self.buf, self.memmove
        results, ptrs, afters = engine.results, engine.slot_ptrs, engine.afters
        i = first
        with self.lock:
            if self.fills:  # a read an interrupted call made: its frames come first
                self._settle()
            generation = self.gen << 32
            while i < stop:
                pos = self.pos
                if pos >= self.end:
                    lib.set_errno(0)
                    n = self._refill()
                    if n <= 0:
                        err = lib.errno()
                        if n == 0 or not err:
                            return CLOSED_SLOT
                        if err == errnos.EINTR:
                            continue  # (retried, as every read of the library retries it)
                        return _EMPTY if err == errnos.EAGAIN else -errnos.host(err)
                    pos, generation = 0, self.gen << 32
                caplen, datalen, hdrlen = _RECORD.unpack_from(buf, pos + _RECORD_AT)
                after = (pos + hdrlen + caplen + _ALIGN) & ~_ALIGN
                if caplen < datalen:
                    if i > first:
                        return _EMPTY  # hand out what came before it; the next call raises
                    self.pos = after
                    return -_errno.EMSGSIZE
                src = self.sources[pos >> 2]
                if src is None or hdrlen != self.hdrlen:
                    src = self._source(pos, hdrlen)
                n = caplen if caplen < size else size  # a slot too small: the engine sees a full slot, reports the cut
                memmove(ptrs[i], src, n)  # (first: a handler cutting in here leaves the frame where it was)
                afters[i] = generation | after
                results.append(n)  # the handover (see the module docstring)
                self.pos = after
                i += 1
        return _EMPTY


class FethReadEngine(LoopReadEngine):
    """The loop read engine over a TAP's BPF buffer: every record of each read into a ring slot."""

    def __init__(self, bpf: BpfBuffer, fd: int, ring: PacketRing) -> None:
        super().__init__(fd, ring)
        self.bpf = bpf
        self.size = ring.slot_size
        self.first = 0  # the first slot of the last fill: results[j] is slot first + j's
        self.afters = array("q", bytes(8 * ring.slots))  # per slot: (the read's generation << 32) | the position after it
        with bpf.lock:
            bpf.readers.append(self)

    def close(self) -> None:
        with self.bpf.lock:
            if self in self.bpf.readers:
                self.bpf.readers.remove(self)

    def fill(self, ring: PacketRing, first: int, limit: int = 0) -> int:
        bpf = self.bpf
        with bpf.lock:
            bpf._reconcile()  # an interrupted fill's last frame moves the position before its results go
        results = self.results
        del results[:]
        self.first = first  # (after the del: a handler between the two leaves no results to reconcile)
        self.pend = first
        stop = ring.slots if not limit else min(ring.slots, first + limit)
        status = self.bpf.take_records(self, first, stop, self.size)
        k = self._commit(ring)
        return k if k or status == _EMPTY else status


def _engine_maker(lib: libc.Libc, bpf: BpfBuffer, ndrv: int) -> Any:
    """The engines of a TAP: reads from its BPF buffer, writes on its NDRV socket (no reference to the Device)."""
    def make(kind: str, backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> "Engine":
        if kind == "read":
            return FethReadEngine(bpf, fd, ring)
        return UtunWriteEngine(lib, ndrv, ring, False, DARWIN)  # (unframed: Ethernet frames as they are)

    return make


class FethDevice(Device):
    """A macOS TAP (see the module docstring): Ethernet frames of a feth pair, read through BPF, written through NDRV."""

    def __init__(self, pair: feth.FethPair, lib: libc.Libc, *, blocking: bool = True) -> None:
        self._lib = lib
        self._fd_ops = ops = ops_for(lib)
        ops.dead_fd()  # now, so that close() cannot fail for want of it
        self._pair: Optional[feth.FethPair] = pair
        self._ndrv = pair.ndrv
        self._bpf = bpf = BpfBuffer(lib, pair.bpf, pair.bufsize, pair.user)
        self._engine_maker = _engine_maker(lib, bpf, pair.ndrv)
        super().__init__(pair.bpf, pair.user, _IFF_TAP | _IFF_NO_PI, blocking=blocking)
        self._take_frame = bpf.take_frame
        self._dwrite, self._errno = lib.write, lib.errno

    @property
    def io_name(self) -> str:
        """The feth end that carries the frames (the user end's peer): leave it alone."""
        pair = self._pair
        if pair is None:
            raise DeviceClosedError(self._name)
        return pair.io

    # ------------------------------------------------------------ reading

    def readinto(self, buffer: "WriteableBuffer", timeout: Optional[float] = None) -> int:
        """Copy the next frame to ``buffer[0]``; return its length.

        Frames come from the BPF buffer of the device, filled by one read
        of every frame that arrived: the one copy is from there into
        *buffer* (BPF gives no way to read a frame in place).  A frame BPF
        captured cut short raises :class:`InvalidPacketError` (see the
        module docstring).  Otherwise as :meth:`Device.readinto`.
        """
        if timeout is not None:
            check_timeout(timeout)
        cached, ptr, size = self._rcache
        if cached is not buffer:
            cached, ptr, size = self._bind_read_buffer(buffer)
        n = self._take_frame(ptr, size)
        if n > 0:
            return n
        return self._frame_again(n, ptr, size, buffer, False, timeout)

    def readinto_nowait(self, buffer: "WriteableBuffer") -> int:
        """One non-blocking :meth:`readinto`: the frame's length, or -1 if none is queued."""
        cached, ptr, size = self._rcache
        if cached is not buffer:
            cached, ptr, size = self._bind_read_buffer(buffer)
        return self._frame_again(self._take_frame(ptr, size), ptr, size, buffer, True)

    def _frame_again(self, r: int, ptr: Any, size: int, buffer: object, nowait: bool = False,
                     timeout: Optional[float] = None) -> int:
        """After a read that got no frame: wait and retry, or raise (macOS's errno numbers)."""
        deadline = None
        while True:
            if r > 0:
                return r
            if self._closed:
                self._leave_closed()
            if r == 0:
                return 0  # end of file
            err = self._errno()
            if err == errnos.EAGAIN:
                if nowait:
                    return -1
                if not self._blocking:
                    raise BlockingIOError(errnos.host(err), f"no frame queued on {self._name}")
                deadline = self._wait_for_packet(timeout, deadline, "no frame came from")
                if buffer is not None and self._rcache[0] is not buffer:
                    if self._closed:  # woken by close(): leave through the door that frees the numbers
                        self._leave_closed()
                    _, ptr, size = self._bind_read_buffer(buffer)
            elif err != errnos.EINTR:
                raise error_from_errno(errnos.host(err), "read", self._name, f"read from {self._name} failed")
            r = self._take_frame(ptr, size)

    def read(self, size: int = -1, timeout: Optional[float] = None) -> bytes:
        """Read one frame and return it as bytes (see :meth:`Device.read`)."""
        self._check_read_size(size)
        if timeout is not None:
            check_timeout(timeout)
        with self._read_lock:
            scratch = self._scratch
            if scratch is None:
                scratch = self._make_scratch()
            ptr, room = self._scratch_ptr, len(scratch)
            n = self._frame_again(self._take_frame(ptr, room), ptr, room, None, False, timeout)
            return _host_ffi.buffer(ptr, n)[:]  # type: ignore[no-any-return]

    # ------------------------------------------------------------ writing

    def write_fileno(self) -> int:
        """The NDRV socket the frames are written to: what an event loop polls for room (not :meth:`fileno`)."""
        if self._closed:
            raise DeviceClosedError(self._name)
        return self._ndrv

    def _wait(self, events: int, timeout_ms: int = -1) -> None:
        """Device._wait, room to write being the NDRV socket's."""
        self._life.wait(self._ndrv if events & select.POLLOUT else self._fd, events, timeout_ms)

    def write(self, data: "ReadableBuffer", nbytes: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Send one Ethernet frame out of the user end's peer (the user end receives it); return its length.

        One ``write`` on the NDRV socket, *data* passed without a copy; a
        frame shorter than its 14-byte header raises
        :class:`InvalidPacketError` before any syscall.  *nbytes*,
        *timeout*: as :meth:`Device.write`.
        """
        if timeout is not None:
            check_timeout(timeout)
            return self._write_timed(data, nbytes, timeout)
        return self._send(data, nbytes, False)

    def write_nowait(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
        """One non-blocking :meth:`write`: BlockingIOError if the kernel cannot take the frame now."""
        return self._send(data, nbytes, True)

    def _send(self, data: "ReadableBuffer", nbytes: Optional[int], nowait: bool) -> int:
        ptr, size = self._write_span(data, nbytes)
        if size < feth.ETHER_HDR_LEN:
            raise InvalidPacketError(errnos.host(errnos.EINVAL), f"a TAP takes Ethernet frames: {size} bytes is "
                                     f"shorter than the {feth.ETHER_HDR_LEN}-byte Ethernet header", self._name)
        n: int = self._dwrite(self._ndrv, ptr, size)
        if n >= 0:
            return n
        return self._send_again(ptr, size, nowait)

    def _send_again(self, ptr: Any, size: int, nowait: bool) -> int:
        """After a refused send: wait for room and retry, or raise (ENOBUFS counts as no room)."""
        while True:
            if self._closed:
                self._leave_closed()
            err = self._errno()
            if err in (errnos.EAGAIN, errnos.ENOBUFS):
                if nowait or not self._blocking:
                    raise BlockingIOError(errnos.host(errnos.EAGAIN), f"{self._name} cannot take a frame now")
                self._wait(select.POLLOUT)
            elif err != errnos.EINTR:
                raise error_from_errno(errnos.host(err), "write", self._name, f"write to {self._name} failed")
            n: int = self._dwrite(self._ndrv, ptr, size)
            if n >= 0:
                return n

    def _write_error(self, err: int, what: str) -> OSError:
        """The exception for a refused batch write (*err*: the running OS's number already)."""
        return error_from_errno(err, "write", self._name, what)

    # ------------------------------------------------------------ closing

    def detach(self) -> int:
        """A feth TAP is two interfaces and two fds: there is no one fd to hand back."""
        raise ValueError(f"{self._name} is a feth pair read through BPF and written through NDRV: it cannot be "
                         "detached; close() it")

    def _shut(self, detach: bool) -> int:
        """Device._shut, then the NDRV number retired as the Device's own was, and both interfaces destroyed (once)."""
        fd = super()._shut(detach)
        failure = None
        life = self._life
        with life.lock:
            pair, self._pair = self._pair, None
            self._bpf.fd = -1  # (its number is the Device's, retired above)
            if pair is not None:
                ndrv, self._ndrv = self._ndrv, -1
                life.retire_also(ndrv)  # a racing write meets /dev/null, never a file that reused the number
        if pair is not None:
            k = darwin.numbers(self._lib.ffi)
            failure = feth.destroy_pair(self._lib, k, pair)
            life.free_when_safe()  # (the NDRV number too: once no thread alive now can be about to write)
        if failure is not None:
            raise failure
        return fd

    def __del__(self, *args: Any) -> None:
        pair = getattr(self, "_pair", None)
        super().__del__(*args)  # (a retired NDRV number goes with the FdLife's)
        if pair is not None:  # never closed: the interfaces and the NDRV socket go with the object
            self._pair = None
            self._fd_ops.close(pair.ndrv)
            feth.destroy_pair(self._lib, darwin.numbers(self._lib.ffi), pair)


def open_feth_device(name: str, packet_info: bool, nonblocking: bool) -> FethDevice:
    """Build TAP *name* (``""``: free units) as a Device (the arguments are checked already).

    *packet_info* is refused: macOS's packet information is utun's AF
    header, and a feth's frames carry none.
    """
    feth.feth_name(name)  # ValueError/TypeError before any syscall
    if packet_info:
        raise UnsupportedPlatformError(_errno.EOPNOTSUPP, "packet_info on macOS is a utun's address-family header: "
                                       "a TAP (feth) frame has none; open it without packet_info", name or None)
    lib = libc.get()
    if lib is None:
        raise UnsupportedPlatformError(_errno.EOPNOTSUPP, "a feth TAP needs macOS's own C library (libSystem), "
                                       "and this process does not run on macOS", name or None)
    k = darwin.numbers(lib.ffi)
    pair = feth.open_pair(lib, k, name)
    try:
        return FethDevice(pair, lib, blocking=not nonblocking)
    except BaseException:
        lib.close(pair.bpf)
        lib.close(pair.ndrv)
        feth.destroy_pair(lib, k, pair)
        raise
