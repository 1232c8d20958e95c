"""The macOS Device: a utun's packets framed with their 4-byte address family, through the macOS libc.

The same framing serves FreeBSD's tun with ``TUNSIFHEAD`` (``_freebsd_device``):
every number the Device compares or writes (errno values, fcntl flags, the
families of the header) comes from a :class:`BsdFraming` (:data:`DARWIN` here),
never from one platform's modules.

Facts that shape this module (XNU xnu-11417.101.15, bsd/net/if_utun.c):

- Framing.  Every utun datagram is ``AF header + packet``, the header the
  protocol family as a big-endian u32 (``utun_output`` applies ``htonl``,
  the write path ``ntohl``): AF_INET 2, AF_INET6 30.  Header and packet
  must be one datagram, so a read is ONE ``readv`` of two iovecs (the
  header into a 4-byte scratch of the device, the packet straight into the
  caller's buffer: the packet lands at ``buffer[0]``, no copy) and a write
  ONE ``writev`` (a preallocated header chosen by the IP version nibble,
  then the caller's bytes).  The iovec arrays are made once per read
  buffer (cached with its pointer, as ``Device.readinto`` caches one) and
  once per thread for writes: nothing is allocated per packet.
- ``packet_info=True`` is the macOS analogue of ``tun_pi``: reads return
  the header and the packet as the kernel has them (one plain ``read``),
  writes take them from the caller; :meth:`UtunDevice.read_packet` and
  :meth:`UtunDevice.write_packet` speak EtherTypes (0x0800, 0x86DD) so
  code written for Linux's ``tun_pi`` runs unchanged, with ``flags`` 0.
- Every C call of a macOS Device goes through ``tuntap_cffi._darwin.libc``
  (a simulated XNU kernel in the tests): its reads and writes, and its
  life's calls (:class:`DarwinOps`: a pipe for the close wakeup, ``poll``,
  ``dup2`` of /dev/null plus ``FD_CLOEXEC`` over a closed number, as macOS
  has no eventfd and no dup3).  The errno it reports is macOS's (EAGAIN
  35): compared with :mod:`._darwin.errnos`, turned into the running OS's
  number for exceptions.
- Freeing a closed number.  macOS has no /proc: the threads alive at
  close() that may still be about to use the number are the Python threads
  (``threading.enumerate``), and one counts as done once it has exited or
  runs code of the device.  Slower than Linux's proof from /proc (a thread
  that lives on keeps the number on /dev/null until the Device is
  collected), never unsafe; a single-threaded program gets it back at once.
- Batches go through the loop engine, framed the same way: one ``readv``
  per packet into a ring slot (iovec pairs made with the engine), one
  ``writev`` per packet out.
- pcap: a read without ``packet_info`` is a bare IP packet, so captures
  use LINKTYPE_RAW as on Linux.  LINKTYPE_NULL would keep the header but
  wants the family in the capturing host's byte order, and utun's is
  big-endian: RAW is the truer and the portable one.
"""

from __future__ import annotations

import select
import threading
from array import array
from itertools import islice, repeat, takewhile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Set, Tuple

from . import _backend
from ._capabilities import Feature
from ._constants import MAX_IP_PACKET, MAX_MTU
from ._darwin import backend as darwin, errnos, libc, utun
from .batch import CLOSED_SLOT, LoopReadEngine, LoopWriteEngine
from .device import Device, PacketInfo
from .errors import InvalidPacketError, error_from_errno
from .ring import PacketRing
from ._validate import check_timeout
from ._syscalls import ffi as _host_ffi, lib as _host_lib

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._lifecycle import Watched
    from .batch import Engine

__all__ = ["UtunDevice", "DarwinOps", "BsdFraming", "DARWIN", "UtunWriteEngine", "open_utun_device", "adopt_utun",
           "ops_for"]

_HDR = utun.AF_HEADER_LEN
_NO_FRAME: Tuple[object, Any, int, Any] = (object(), None, 0, None)
_POSITIVE = (0).__lt__
_IFF_TUN = _host_lib.IFF_TUN  # (Device's flags: values only, no call)
_IFF_NO_PI = _host_lib.IFF_NO_PI
_IFF_TAP = _host_lib.IFF_TAP


class _Errnos(Protocol):
    """A platform's errno module (``_darwin.errnos``, ``_freebsd.errnos``)."""

    EINTR: int
    EAGAIN: int
    EIO: int
    EINVAL: int

    def host(self, err: int) -> int: ...


@dataclass(frozen=True, eq=False)
class BsdFraming:
    """What an AF-header Device takes from its platform: its errno and fcntl numbers and address families.

    macOS's utun and FreeBSD's ``TUNSIFHEAD`` tun frame packets alike (a
    big-endian u32 family in front); the numbers differ (AF_INET6 30 vs 28,
    ``O_CLOEXEC``), so every number the Device compares or writes comes
    from here, never from one platform's modules.
    """

    errnos: _Errnos
    af_inet: int
    af_inet6: int
    F_GETFL: int
    F_SETFL: int
    F_SETFD: int
    FD_CLOEXEC: int
    O_NONBLOCK: int
    O_RDONLY: int
    O_CLOEXEC: int
    kind: str = "utun"  #: how messages name the device

    @property
    def headers(self) -> Dict[int, bytes]:
        """The header of a packet by IP version (the version nibble of its first byte)."""
        return {4: self.af_inet.to_bytes(_HDR, "big"), 6: self.af_inet6.to_bytes(_HDR, "big")}

    @property
    def ethertype(self) -> Dict[int, int]:
        """The EtherType of a family (read_packet's PacketInfo.proto)."""
        return {self.af_inet: 0x0800, self.af_inet6: 0x86DD}

    def nonblocking_cloexec(self, lib: libc.Libc, fd: int) -> bool:
        """Make *fd* O_NONBLOCK and close-on-exec (pipe() takes no such flags); False: errno says why."""
        int_ = lib.ffi.cast
        status = lib.fcntl(fd, self.F_GETFL, int_("int", 0))
        return status >= 0 and lib.fcntl(fd, self.F_SETFL, int_("int", status | self.O_NONBLOCK)) >= 0 \
            and lib.fcntl(fd, self.F_SETFD, int_("int", self.FD_CLOEXEC)) >= 0

    def make_nonblocking(self, lib: libc.Libc, fd: int, name: str) -> None:
        """O_NONBLOCK on an adopted *fd* (shared with its duplicates) unless it is so already; fcntl's error raised."""
        status = lib.fcntl(fd, self.F_GETFL, lib.ffi.cast("int", 0))
        if status < 0 or not status & self.O_NONBLOCK and \
                lib.fcntl(fd, self.F_SETFL, lib.ffi.cast("int", status | self.O_NONBLOCK)) < 0:
            raise error_from_errno(self.errnos.host(lib.errno()), "fcntl", name, f"cannot make {name} non-blocking")

    def bad_version(self, version: int, name: Optional[str] = None) -> InvalidPacketError:
        return InvalidPacketError(
            self.errnos.host(self.errnos.EINVAL),
            f"a {self.kind} carries IPv4 or IPv6 packets: this one starts with IP version {version}, not 4 or 6",
            name,
        )


#: macOS's utun (XNU's numbers).
DARWIN = BsdFraming(
    errnos, utun.AF_INET, utun.AF_INET6, darwin.F_GETFL, darwin.F_SETFL, darwin.F_SETFD, darwin.FD_CLOEXEC,
    darwin.O_NONBLOCK, darwin.O_RDONLY, darwin.O_CLOEXEC,
)


# ------------------------------------------------------------ the fd's life on macOS

class _PyThread:
    """A thread alive at close(): done once it has exited (macOS has no /proc to prove more)."""

    __slots__ = ("tid",)

    def __init__(self, tid: int) -> None:
        self.tid = tid

    def done(self) -> bool:
        return all(t.native_id != self.tid for t in threading.enumerate())


class DarwinOps:
    """:class:`~tuntap_cffi._lifecycle.FdOps` through the macOS libc: pipe, poll, dup2 of /dev/null."""

    def __init__(self, lib: libc.Libc, k: BsdFraming = DARWIN) -> None:
        self.lib = lib
        self.k = k
        self._one = lib.ffi.new("char[1]", b"\x01")
        self._dead = -1
        self._lock = threading.Lock()

    def wakeup(self, name: str) -> Tuple[int, int]:
        lib = self.lib
        fds = lib.ffi.new("int[2]")
        if lib.pipe(fds) < 0:
            raise error_from_errno(self.k.errnos.host(lib.errno()), "pipe", name, f"cannot make the wakeup pipe of {name}")
        for fd in (fds[0], fds[1]):
            if not self.k.nonblocking_cloexec(lib, fd):
                err = lib.errno()
                lib.close(fds[0])
                lib.close(fds[1])
                raise error_from_errno(self.k.errnos.host(err), "fcntl", name, f"cannot set up the wakeup pipe of {name}")
        return fds[0], fds[1]

    def wake(self, fd: int) -> None:
        self.lib.write(fd, self._one, 1)

    def pollfds(self) -> Any:
        return self.lib.ffi.new("struct pollfd[4]")

    def poll(self, fds: Any, nfds: int, timeout: int) -> int:
        return self.lib.poll(fds, nfds, timeout)

    def dead_fd(self) -> int:
        """A read-only /dev/null fd, opened once (dup2 copies it over a closed device's number).

        A Device asks at open, so a failure to open it fails the open (cleanly),
        never a close.
        """
        if self._dead < 0:
            with self._lock:
                if self._dead < 0:
                    fd = self.lib.open(b"/dev/null", self.k.O_RDONLY | self.k.O_CLOEXEC)
                    if fd < 0:
                        raise error_from_errno(self.k.errnos.host(self.lib.errno()), "open", "/dev/null",
                                               "cannot open /dev/null")
                    self._dead = fd
        return self._dead

    def retire(self, fd: int) -> None:
        lib = self.lib
        lib.dup2(self.dead_fd(), fd)  # closes the utun socket: the interface goes (utun_ctl_disconnect)
        lib.fcntl(fd, self.k.F_SETFD, lib.ffi.cast("int", self.k.FD_CLOEXEC))  # dup2 clears it

    def close(self, fd: int) -> None:
        if fd >= 0:
            self.lib.close(fd)

    def watch_others(self) -> "List[Watched]":
        me = threading.get_native_id()
        return [_PyThread(tid) for tid in self.threads() if tid != me]

    def threads(self) -> Set[int]:
        """The Python threads alive now: macOS has no /proc (see the module docstring)."""
        return {t.native_id for t in threading.enumerate() if t.native_id is not None}


_ops: Optional[DarwinOps] = None
_ops_lock = threading.Lock()


def ops_for(lib: libc.Libc, k: "BsdFraming" = DARWIN) -> DarwinOps:
    """The process's DarwinOps for *lib* (one /dev/null fd for every device of it: utun, feth TAP, FreeBSD's)."""
    global _ops
    with _ops_lock:
        if _ops is None or _ops.lib is not lib:
            _ops = DarwinOps(lib, k)
        return _ops


# ------------------------------------------------------------ batches

class UtunReadEngine(LoopReadEngine):
    """The loop read engine, one ``readv`` (header scratch, slot) per packet; plain reads with packet_info."""

    def __init__(self, lib: libc.Libc, fd: int, ring: PacketRing, framed: bool, k: BsdFraming) -> None:
        super().__init__(fd, ring)
        self.lib = lib
        self.k = k
        self.header = _HDR if framed else 0
        if framed:
            ffi, size = lib.ffi, ring.slot_size
            self._scratch = ffi.new("uint32_t *")
            self._iovs = iovs = ffi.new("struct iovec[]", 2 * ring.slots)
            for i, slot in enumerate(self.slot_ptrs):
                iovs[2 * i].iov_base, iovs[2 * i].iov_len = self._scratch, _HDR
                iovs[2 * i + 1].iov_base, iovs[2 * i + 1].iov_len = slot, size
            self.slot_ptrs = [iovs + 2 * i for i in range(ring.slots)]
            self._call: Any = lib.readv
            self._arg = 2
        else:
            self._call, self._arg = lib.read, ring.slot_size

    def fill(self, ring: PacketRing, first: int, limit: int = 0) -> int:
        """LoopReadEngine.fill through the macOS libc (its errno numbers)."""
        results = self.results
        del results[:]
        self.pend = first
        stop = ring.slots if not limit else min(ring.slots, first + limit)
        lib, call, fd, arg, errnos = self.lib, self._call, self.fd, self._arg, self.k.errnos
        err = 0
        while first + len(results) < stop:
            lib.set_errno(0)
            results.extend(takewhile(_POSITIVE, map(call, repeat(fd), islice(self.slot_ptrs, first + len(results), stop), repeat(arg))))
            err = lib.errno()
            if err != errnos.EINTR:
                break
        k = self._commit(ring)
        if first + k < stop:
            if not err:
                return CLOSED_SLOT if not k else k  # /dev/null's end of file: closed
            if err != errnos.EAGAIN and not k:
                return -errnos.host(err)
        return k

    def _commit(self, ring: PacketRing) -> int:
        if self.header and self.pend is not None and self.pend >= 0:
            header = self.header  # the readv()s counted the header: lengths are the packets'
            self.results[:] = array("i", [max(r - header, 0) for r in self.results])
        return super()._commit(ring)


class UtunWriteEngine(LoopWriteEngine):
    """The loop write engine, one ``writev`` (the packet's AF header, slot) per packet; plain writes with packet_info."""

    def __init__(self, lib: libc.Libc, fd: int, ring: PacketRing, framed: bool, k: BsdFraming) -> None:
        super().__init__(fd, ring)
        self.lib = lib
        self.k = k
        self.framed = framed
        self.ring_view = ring._view
        self.slot_size = ring.slot_size
        if framed:
            ffi = lib.ffi
            self._headers = {v: ffi.new("char[]", h) for v, h in k.headers.items()}
            self._iovs = iovs = ffi.new("struct iovec[]", 2 * ring.slots)
            for i in range(ring.slots):
                iovs[2 * i + 1].iov_base = self.slot_ptrs[i]
            self._pairs = [iovs + 2 * i for i in range(ring.slots)]

    def send(self, ring: PacketRing, count: int) -> List[Tuple[int, int]]:
        ring._own_lengths()
        results = self.results
        del results[:]
        self.pend = count
        lib, fd, errnos = self.lib, self.fd, self.k.errnos
        lengths, slots, start = ring._lengths, ring.slots, ring.start
        failures: List[Tuple[int, int]] = []
        if not self.framed:
            results.extend(map(lib.write, repeat(fd), islice(self.slot_ptrs, start, start + count), lengths))
            if -1 in results:
                err = -errnos.host(lib.errno() or errnos.EIO)
                failures = [(i, err) for i in range(count) if results[i] < 0]
            return failures
        # The headers first (no syscall), then the writev()s from C, each result stored as it comes.
        view, size, iovs, headers = self.ring_view, self.slot_size, self._iovs, self._headers
        sent: List[int] = []
        for i in range(count):
            s = (start + i) % slots
            n = lengths[i]
            header = headers.get(view[s * size] >> 4) if n else None
            if header is None:
                failures.append((i, -errnos.host(errnos.EINVAL)))
                continue
            iovs[2 * s].iov_base, iovs[2 * s].iov_len = header, _HDR
            iovs[2 * s + 1].iov_len = n
            sent.append(s)
        results.extend(map(lib.writev, repeat(fd), [self._pairs[s] for s in sent], repeat(2)))
        if -1 in results:
            err = -errnos.host(lib.errno() or errnos.EIO)
            positions = [(s - start) % slots for s in sent]
            failures += [(positions[j], err) for j in range(len(results)) if results[j] < 0]
            failures.sort()
        return failures


def _engine_maker(lib: libc.Libc, framed: bool, k: BsdFraming) -> Any:
    def make(kind: str, backend: str, fd: int, ring: PacketRing, name: Optional[str] = None) -> "Engine":
        if kind == "read":
            return UtunReadEngine(lib, fd, ring, framed, k)
        return UtunWriteEngine(lib, fd, ring, framed, k)

    return make


# ------------------------------------------------------------ the Device

class _WriteFrame(threading.local):
    """A thread's iovec pair for writes: the header slot and the packet slot, filled per write."""

    def __init__(self, ffi: Any) -> None:
        self.iov = ffi.new("struct iovec[2]")
        self.iov[0].iov_len = _HDR


class UtunDevice(Device):
    """A macOS utun (see the module docstring): a Device whose packets carry no header, or the AF header.

    Without ``packet_info`` (the default) reads return the bare IP packet
    at ``buffer[0]`` and writes take one; the 4-byte address-family header
    utun puts in front is stripped and added with ``readv``/``writev``.
    With ``packet_info=True`` the header is the caller's: reads return it
    and the packet, writes expect it (big-endian AF_INET 2 or AF_INET6
    30); :meth:`read_packet`/:meth:`write_packet` translate it to and from
    the EtherType of ``PacketInfo.proto``.
    """

    #: Whether the fd frames packets with the AF header (a tuntaposx device's carry none: _tuntaposx_device).
    _af_framing = True

    def __init__(
        self, fd: int, name: str, lib: libc.Libc, *, packet_info: bool, blocking: bool = True,
        framing: BsdFraming = DARWIN, tap: bool = False, kind_flag: int = _IFF_TUN,
    ) -> None:
        # *framing*: the platform's numbers (DARWIN: a utun; FreeBSD's for its tun).  *tap*: Ethernet
        # frames with no header at all (FreeBSD's /dev/tap): read and written as they are.  *kind_flag*:
        # what the Device reports (a tuntaposx tap is IFF_TAP without a header, see _af_framing).
        self._lib = lib
        self._k = framing
        self._tap = tap
        self._fd_ops = ops = ops_for(lib, framing)
        ops.dead_fd()  # now, so that close() cannot fail for want of it
        framed = self._af_framing and not packet_info and not tap
        self._engine_maker = _engine_maker(lib, framed, framing)
        flags = _IFF_TAP | _IFF_NO_PI if tap else kind_flag | (0 if packet_info else _IFF_NO_PI)
        super().__init__(fd, name, flags, blocking=blocking)
        ffi = self._ffi = lib.ffi
        self._readv, self._writev, self._dread, self._dwrite, self._errno = (
            lib.readv, lib.writev, lib.read, lib.write, lib.errno)
        self._framed = framed
        self._header_in = ffi.new("uint32_t *")  # read headers land here (shared: nobody reads it back)
        self._headers = {v: ffi.new("char[]", h) for v, h in framing.headers.items()}
        # (buffer, iovec[2], room, pointer): the frame of the last read buffer, as _rcache for Linux.
        self._rframe: Tuple[object, Any, int, Any] = _NO_FRAME
        self._rloose: Tuple[object, Any] = (_NO_FRAME[0], None)  # an uncached buffer's iovecs (PyPy)
        self._wframe = _WriteFrame(ffi)
        self._sframe: Tuple[object, Any, int, Any] = _NO_FRAME  # read()'s scratch, under _read_lock

    # ------------------------------------------------------------ sizes

    def _current_mtu(self) -> int:
        """The MTU from the link settings; without them (this version's macOS) the largest an IP packet can be."""
        if not _backend.supports(Feature.LINK):
            return MAX_IP_PACKET
        return super()._current_mtu()

    def _check_full_read(self, ptr: Any, size: int) -> None:
        """A read filled its buffer: judge the packet by its IP header (after the AF header with packet_info)."""
        if self._tap:  # an Ethernet frame does not say its length
            self._cut_if_too_small(size)
            return
        skip = 0 if self._framed else _HDR
        head = _host_ffi.buffer(ptr, size)[skip: skip + 6]
        version = head[0] >> 4 if head else 0
        length = int.from_bytes(head[2:4], "big") if version == 4 else 40 + int.from_bytes(head[4:6], "big")
        if version in (4, 6) and length <= size - skip:
            return
        self._cut_if_too_small(size)

    # ------------------------------------------------------------ reading

    def _bind_read_frame(self, buffer: object) -> Tuple[object, Any, int, Any]:
        """The frame of *buffer*: iovecs (header scratch, buffer) made once per buffer; cached if it is pinned."""
        _, ptr, size = self._bind_read_buffer(buffer)  # Device's checks and pinning rules
        loose = self._rloose
        iov = loose[1] if loose[0] is buffer else self._ffi.new("struct iovec[2]")
        iov[0].iov_base, iov[0].iov_len = self._header_in, _HDR
        iov[1].iov_base, iov[1].iov_len = ptr, size
        entry = (buffer, iov, size, ptr)
        if self._rcache[0] is buffer:  # pinned: Device cached it
            self._rframe = entry
        else:
            self._rloose = (buffer, iov)
        return entry

    def readinto(self, buffer: "WriteableBuffer", timeout: Optional[float] = None) -> int:
        """Read one packet into *buffer* (at ``buffer[0]``, no copy); return its length.

        One ``readv``: utun's 4-byte AF header into a scratch of the device,
        the packet into *buffer*.  With ``packet_info=True`` the header is
        kept: *buffer* receives it and the packet, and the length counts it.
        Otherwise as :meth:`Device.readinto` (size, blocking, close, *timeout*).
        """
        if timeout is not None:
            check_timeout(timeout)
        cached, iov, size, ptr = self._rframe
        if cached is not buffer:
            cached, iov, size, ptr = self._bind_read_frame(buffer)
        if self._framed:
            r: int = self._readv(self._fd, iov, 2)
            if _HDR < r < size + _HDR:
                return r - _HDR
            return self._read_frame_again(r, iov, size, ptr, buffer, False, timeout)
        r = self._dread(self._fd, ptr, size)
        if 0 < r < size:
            return r
        return self._read_frame_again(r, iov, size, ptr, buffer, False, timeout)

    def readinto_nowait(self, buffer: "WriteableBuffer") -> int:
        """One non-blocking :meth:`readinto`: the packet's length, or -1 if nothing is queued."""
        cached, iov, size, ptr = self._rframe
        if cached is not buffer:
            cached, iov, size, ptr = self._bind_read_frame(buffer)
        return self._read_frame_again(self._read_once(iov, ptr, size), iov, size, ptr, None, True)

    def _read_once(self, iov: Any, ptr: Any, size: int) -> int:
        return self._readv(self._fd, iov, 2) if self._framed else self._dread(self._fd, ptr, size)

    def _read_frame_again(
        self, r: int, iov: Any, size: int, ptr: Any, buffer: object = None, nowait: bool = False,
        timeout: Optional[float] = None,
    ) -> int:
        """Device._read_again for a utun: *r* is what readv (read with packet_info) returned."""
        header = _HDR if self._framed else 0
        deadline, errnos = None, self._k.errnos
        while True:
            if r > header:
                n = r - header
                if n == size:
                    self._check_full_read(ptr, size)
                return n
            if self._closed:
                self._leave_closed()
            if r >= 0:
                return 0  # end of file, or an empty datagram
            err = self._errno()
            if err == errnos.EAGAIN:
                if nowait:
                    return -1
                if not self._blocking:
                    raise BlockingIOError(errnos.host(err), f"no packet queued on {self._name}")
                deadline = self._wait_for_packet(timeout, deadline, "no packet came from")
                if buffer is not None and self._rframe[0] is not buffer:
                    if self._closed:
                        self._leave_closed()
                    _, iov, size, ptr = self._bind_read_frame(buffer)
            elif err != errnos.EINTR:
                raise self._io_error(errnos.host(err), "read")
            r = self._read_once(iov, ptr, size)

    def read(self, size: int = -1, timeout: Optional[float] = None) -> bytes:
        """Read one packet and return it as bytes (see :meth:`Device.read`)."""
        self._check_read_size(size)
        if timeout is not None:
            check_timeout(timeout)
        with self._read_lock:
            frame = self._sframe
            if frame[1] is None:
                scratch = self._scratch
                if scratch is None:
                    scratch = self._make_scratch()
                ptr = self._scratch_ptr
                iov = self._ffi.new("struct iovec[2]")
                iov[0].iov_base, iov[0].iov_len = self._header_in, _HDR
                iov[1].iov_base, iov[1].iov_len = ptr, len(scratch)
                frame = self._sframe = (scratch, iov, len(scratch), ptr)
            _, iov, room, ptr = frame
            n = self._read_frame_again(self._read_once(iov, ptr, room), iov, room, ptr, None, False, timeout)
            return _host_ffi.buffer(ptr, n)[:]  # type: ignore[no-any-return]

    def read_packet(self, buffer: "Optional[WriteableBuffer]" = None) -> PacketInfo:
        """Read one packet of a ``packet_info=True`` utun: ``PacketInfo(0, EtherType, payload)``.

        The AF header's family becomes the EtherType (AF_INET 0x0800,
        AF_INET6 0x86DD; 0 for another family), as Linux's ``tun_pi`` gives.
        """
        if self._framed or self._tap:
            raise ValueError(f"{self._name} was opened without packet_info=True: there is no AF header")
        if buffer is None:
            if self._pi_buffer is None:
                self._pi_buffer = bytearray(MAX_MTU + self._overhead)
            buffer = self._pi_buffer
        n = self.readinto(buffer)
        if n < _HDR:
            raise ValueError(f"{self._name}: short read of {n} bytes has no AF header")
        view = memoryview(buffer).cast("B")
        family = int.from_bytes(view[:_HDR], "big")
        return PacketInfo(0, self._k.ethertype.get(family, 0), view[_HDR:n])

    def release_buffers(self) -> None:
        super().release_buffers()
        self._rframe = _NO_FRAME
        self._rloose = (_NO_FRAME[0], None)

    def _recheck_read_buffer(self) -> None:
        super()._recheck_read_buffer()
        self._rframe = _NO_FRAME

    # ------------------------------------------------------------ writing

    def write(self, data: "ReadableBuffer", nbytes: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Write one IP packet; return its length (see :meth:`Device.write`).

        One ``writev``: the AF header for the packet's IP version (AF_INET,
        AF_INET6; big-endian), then *data* itself.  0: the kernel took
        nothing (a FreeBSD tun or tap that is down drops writes silently).  A packet whose first
        nibble is neither 4 nor 6 raises :class:`InvalidPacketError` before
        any syscall.  With ``packet_info=True`` *data* starts with the
        header and is written as it is.  *timeout*: as :meth:`Device.write`.
        """
        if timeout is not None:
            check_timeout(timeout)
            return self._write_timed(data, nbytes, timeout)
        return self._write_frame(data, nbytes, False)

    def write_nowait(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
        """One non-blocking :meth:`write`: BlockingIOError if the kernel cannot take the packet now."""
        return self._write_frame(data, nbytes, True)

    def _write_frame(self, data: "ReadableBuffer", nbytes: Optional[int], nowait: bool) -> int:
        ptr, size = self._write_span(data, nbytes)
        if not self._framed:
            n: int = self._dwrite(self._fd, ptr, size)
            if n >= 0:
                return n
            return self._write_frame_again(ptr, size, nowait, self._dwrite)
        version = ptr[0][0] >> 4 if size else 0
        header = self._headers.get(version)
        if header is None:
            raise self._k.bad_version(version, self._name)
        iov = self._wframe.iov
        iov[0].iov_base = header
        iov[1].iov_base, iov[1].iov_len = ptr, size
        n = self._writev(self._fd, iov, 2)
        if n > 0:
            return n - _HDR
        if n < 0:
            n = self._write_frame_again(iov, 2, nowait, self._writev)
        return n - _HDR if n else 0  # 0: nothing taken (FreeBSD's tunwrite drops it while the interface is down)

    def write_packet(self, payload: "ReadableBuffer", proto: Optional[int] = None) -> int:
        """Write one packet of a ``packet_info=True`` utun with the AF header for *proto* (an EtherType).

        *proto* 0x0800 (IPv4) or 0x86DD (IPv6); None infers it from the
        IP version.  Returns the payload bytes written.
        """
        ptr, size, proto = self._packet_payload(payload, proto)
        if proto not in (0x0800, 0x86DD):
            raise ValueError(f"a utun carries IPv4 or IPv6: proto must be 0x0800 or 0x86DD, not {proto:#06x}")
        iov = self._wframe.iov
        iov[0].iov_base = self._headers[4 if proto == 0x0800 else 6]
        iov[1].iov_base, iov[1].iov_len = ptr, size
        n: int = self._writev(self._fd, iov, 2)
        if n < 0:
            n = self._write_frame_again(iov, 2, False, self._writev)
        return n - _HDR if n else 0  # (0: dropped by a FreeBSD interface that is down)

    def _write_frame_again(self, ptr: Any, size: int, nowait: bool, call: Any) -> int:
        """Device._write_again with the platform's errno numbers."""
        errnos = self._k.errnos
        while True:
            if self._closed:
                self._leave_closed()
            err = self._errno()
            if err == errnos.EAGAIN:
                if nowait or not self._blocking:
                    raise BlockingIOError(errnos.host(err), f"{self._name} cannot take a packet now")
                self._wait(select.POLLOUT)
            elif err != errnos.EINTR:
                raise self._io_error(errnos.host(err), "write")
            n: int = call(self._fd, ptr, size)
            if n >= 0:
                return n

    def _io_error(self, err: int, op: str) -> OSError:
        """The exception for a failed ``op`` ("read" or "write") with *err* (the running OS's number already)."""
        where = "from" if op == "read" else "to"
        return error_from_errno(err, op, self._name, f"{op} {where} {self._name} failed")

    def _write_error(self, err: int, what: str) -> OSError:
        """The exception for a refused batch write (*err*: the running OS's number already)."""
        return error_from_errno(err, "write", self._name, what)

    # ------------------------------------------------------------ closing

    def detach(self) -> int:
        """Give up the fd and return it (blocking again if the device was); the Device is then closed."""
        fd = self._shut(detach=True)
        if self._blocking:
            lib = self._lib
            k = self._k
            status = lib.fcntl(fd, k.F_GETFL, self._ffi.cast("int", 0))
            if status >= 0:
                lib.fcntl(fd, k.F_SETFL, self._ffi.cast("int", status & ~k.O_NONBLOCK))
        return fd


def open_utun_device(name: str, packet_info: bool, nonblocking: bool) -> UtunDevice:
    """Open utun *name* (``""``: the kernel's pick) as a Device (the arguments are checked already)."""
    fd, real_name = darwin.open_utun(name)
    lib = libc.get()
    assert lib is not None  # (open_utun raised otherwise)
    try:
        return UtunDevice(fd, real_name, lib, packet_info=packet_info, blocking=not nonblocking)
    except BaseException:
        lib.close(fd)
        raise


def adopt_utun(fd: int, nonblocking: bool, packet_info: bool) -> UtunDevice:
    """``Device.from_fd`` on macOS: wrap the connected utun socket *fd* (its name from UTUN_OPT_IFNAME)."""
    name, _ = darwin.get_iff(fd)
    lib = libc.get()
    assert lib is not None  # (get_iff raised otherwise)
    DARWIN.make_nonblocking(lib, fd, name)
    return UtunDevice(fd, name, lib, packet_info=packet_info, blocking=not nonblocking)
