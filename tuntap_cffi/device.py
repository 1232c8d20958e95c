"""Device: a TUN/TAP file descriptor with a file-like, zero-copy packet API.

Facts that shape this module:

- Hot path.  ``readinto`` caches the cffi pointer of the last buffer it was
  given (``ffi.from_buffer`` per call adds 14-32% on CPython), so a loop
  that reuses one buffer makes exactly one C call per packet and allocates
  nothing.  The cached pointer holds a buffer export: a cached bytearray
  cannot be resized and a cached mmap cannot be closed until another buffer
  is used, :meth:`Device.release_buffers` is called or the device is closed.
- Buffers that move.  A cached pointer is only safe while the buffer's
  storage cannot move or vanish under it.  CPython's bytearray,
  array.array, mmap (and memoryviews of those or of bytes) refuse a resize,
  close or release while exported; numpy ignores exports
  (``resize(refcheck=False)``) but refuses to resize an array that has a
  weak reference, so the pointer cached for one carries one.  PyPy refuses
  nothing (cffi's own docs: the pointer of a resized bytearray is freed
  memory).  So only those (and bytes, immutable) are cached, on CPython
  (see ``_cacheable``); any other buffer, every one but bytes on PyPy, gets
  ``ffi.from_buffer`` at every call (its current storage and length: costs
  nothing measurable under PyPy's JIT) and is re-checked against the MTU
  only when its length changed, and again after a blocking read's wait.
  Limit: nothing stops another thread from resizing such a buffer while a
  read or write is in the kernel with its old storage (a data race in the
  program, as in C; the window is one non-blocking syscall).
- Blocking.  The fd is always O_NONBLOCK.  A blocking read tries the read
  first and only on EAGAIN polls the device beside a wakeup eventfd; that is
  what lets ``close()`` from another thread wake a blocked reader.  EINTR is
  retried in Python.
- Closing without fd-number reuse.  ``close()`` marks the device closed,
  wakes every waiter, puts /dev/null over the fd number (the interface goes
  away) and frees the number only once no thread can be about to use it;
  ``detach()`` is the same sequence handing the number back.  The protocol,
  and why the per-packet calls need no announcement for it, is
  :mod:`tuntap_cffi._lifecycle`: a Device holds one ``FdLife`` and calls
  that hold a number across Python code announce themselves there.  A
  racing reader reads end-of-file from /dev/null and then sees ``closed``.
- fork().  A child forgets the parent's engines, wakeup eventfd, control
  socket and asyncio registrations (it closes its own copies only) and
  makes its own on demand: it may use an inherited Device (both processes
  then share the TUN queue) or close it (its own fd only).
- Interrupts.  A signal handler may raise between two bytecodes of a batch
  call (the batch calls live in :mod:`tuntap_cffi._batchio`).  The engines
  record each step first and the next call settles it (batch's
  "Interrupts"); a call hands its packets over with its last store before
  returning (``engine.pend = None``), and an except clause takes that back
  if a handler ran after it: the next call returns them.  PyPy can also run
  one after the ``try`` block is left (POP_BLOCK) and before RETURN_VALUE:
  that batch's count is lost, as any function's result would be (the
  documented limit, docs/guides/errors.md; CPython checks no signal there).  write_batch
  finishes an interrupted ring batch in its except clause and puts the
  count on the exception (``.written``).
- Truncation.  Without ``packet_info`` the kernel truncates a packet that
  does not fit the buffer and says nothing, so buffers smaller than
  :attr:`Device.max_packet_size` are refused before any read.
"""

from __future__ import annotations

from array import array
import enum
import errno
import mmap
import os
import select
import sys
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator, List, NamedTuple, Optional, Tuple, Union

from . import _backend, _darwin, _freebsd, bpf
from ._capabilities import Feature
from ._announce import announced
from ._batchio import BatchIO, take_back
from ._lifecycle import LINUX_OPS, FdLife, FdOps, pending_retirements as pending_retirements  # (still importable here)
from ._engines import EngineTable
from ._filters import FilterConfig
from ._link import LinkConfig
from ._netlink import RtNetlink
from .batch import BatchWriteError as BatchWriteError  # (importable from here as it was)
from .ring import PacketRing
from ._constants import GSO_OFFLOADS, MAX_IP_PACKET, MAX_MTU, MAX_QUEUES, Owner
from ._constants import NetNamespace as NetNamespace, NetnsSpec
# Defined in _constants, importable from here as they always were.
from ._constants import EVERYONE as EVERYONE, DeviceKind as DeviceKind, Everyone as Everyone
from ._constants import ETH_HLEN as ETH_HLEN, PI_LEN as PI_LEN, VLAN_HLEN as VLAN_HLEN
from ._constants import TUN_F_CSUM as TUN_F_CSUM, TUN_F_TSO4 as TUN_F_TSO4, TUN_F_TSO6 as TUN_F_TSO6
from ._constants import TUN_F_TSO_ECN as TUN_F_TSO_ECN, TUN_F_UFO as TUN_F_UFO
from ._constants import TUN_F_USO4 as TUN_F_USO4, TUN_F_USO6 as TUN_F_USO6
from ._constants import TUN_F_UDP_TUNNEL_GSO as TUN_F_UDP_TUNNEL_GSO, TUNNEL_OFFLOADS
from ._constants import TUN_F_UDP_TUNNEL_GSO_CSUM as TUN_F_UDP_TUNNEL_GSO_CSUM
from ._syscalls import check, close_quietly, ffi, lib, poll_ms
from ._validate import check_bool, check_int, check_int_in, check_name, check_netns, check_offload, check_owner
from ._validate import check_napi, check_timeout, check_tunnel_offload, check_vnet_hdr_size
from ._validate import check_min_packets as check_min_packets  # (importable from here as it was)
from .errors import DeviceBusyError, DeviceClosedError, TunTapPermissionError, error_from_errno

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .events import LinkEvents

__all__ = ["Device", "DeviceKind", "TunFlags", "PacketInfo", "Everyone", "EVERYONE", "NetNamespace", "open_tun", "open_tap"]


class TunFlags(enum.IntFlag):
    """The ``IFF_*`` flags of ``<linux/if_tun.h>`` as the kernel reports them."""

    TUN = lib.IFF_TUN
    TAP = lib.IFF_TAP
    NAPI = lib.IFF_NAPI
    NAPI_FRAGS = lib.IFF_NAPI_FRAGS
    NO_CARRIER = lib.IFF_NO_CARRIER
    MULTI_QUEUE = lib.IFF_MULTI_QUEUE
    PERSIST = lib.IFF_PERSIST
    NO_PI = lib.IFF_NO_PI
    ONE_QUEUE = lib.IFF_ONE_QUEUE
    VNET_HDR = lib.IFF_VNET_HDR
    TUN_EXCL = lib.IFF_TUN_EXCL


# The offloads set_offload() probes, newest first, each dropped in turn when
# the kernel says EINVAL: the UDP-tunnel ones (6.17), then USO (6.2).
_PROBED_OFFLOADS = (TUNNEL_OFFLOADS, TUN_F_USO4 | TUN_F_USO6)


class PacketInfo(NamedTuple):
    """A packet read with ``packet_info=True``: the ``tun_pi`` header and the payload.

    ``payload`` is a view into the buffer the packet was read into; it is
    valid until that buffer is reused.
    """

    flags: int  #: TUN_PKT_STRIP (1) means the packet did not fit and was truncated
    proto: int  #: EtherType, e.g. 0x0800 for IPv4, 0x86DD for IPv6
    payload: memoryview


# The per-packet C functions as module globals: a cdata stored on the instance
# costs CPython a slow generic attribute lookup per call (~50 ns, measured).
_read = lib.read
_write = lib.write
_from_buffer = ffi.from_buffer
_get_ident = threading.get_ident

_NO_BUFFER: Tuple[object, Any, int] = (object(), ffi.NULL, 0)  # matches no caller's buffer
_NOT_CHECKED: Tuple[object, int] = (_NO_BUFFER[0], -1)

# Exporters whose storage can neither move nor vanish while a cffi pointer
# holds an export of them (CPython refuses the resize/close/release with
# BufferError; a memoryview with an export cannot be released), so their
# pointer may be cached.  PyPy refuses nothing: there only bytes, which
# cannot change at all.
_EXPORTS_PIN = sys.implementation.name == "cpython"
_PINNED = frozenset({bytes, bytearray, array, mmap.mmap})


def _keep(_ptr: Any) -> None:
    """ffi.gc's destructor for a pinned numpy pointer: nothing to free, it only holds the pin."""


def _cacheable(buffer: Any, ptr: Any) -> Any:
    """*ptr* (``ffi.from_buffer(buffer)``) in a form that stays valid while cached, or None.

    A numpy array ignores exports (``resize(refcheck=False)`` moves its
    data) but refuses to resize while it has a weak reference: the pointer
    cached for an array carries one (through ``ffi.gc``), so it pins the
    array exactly as long as an export pins a bytearray.
    """
    kind = type(buffer)
    if kind is bytes:
        return ptr
    if not _EXPORTS_PIN:  # (a constant for PyPy's JIT: this call folds away)
        return None
    if kind is memoryview:  # its export pins its exporter, if that one can be pinned
        buffer = buffer.obj
        kind = type(buffer)
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
        if buffer.base is None or type(buffer.base) is kind:  # data of an array (numpy points views at the owner)
            owner = buffer if buffer.base is None else buffer.base
            return ffi.gc(ptr, lambda p, pin=weakref.ref(owner): _keep(p))
        buffer = buffer.base  # another exporter's data, held by the array's export of it
        kind = type(buffer)
        if kind is memoryview:
            kind = type(buffer.obj)
    return ptr if kind in _PINNED else None

class Device(BatchIO, LinkConfig, FilterConfig):
    """An open TUN or TAP device.

    Create one with :func:`open_tun`, :func:`open_tap` or
    :meth:`Device.from_fd`.  The device is a context manager; ``close()`` is
    idempotent.  Once closed, every method but ``close`` raises
    :class:`DeviceClosedError` (a ``ValueError``, like closed files).
    """

    # Everything the per-packet path reads is a plain instance attribute.
    _fd: int
    _name: str
    _flags: int
    _kind: DeviceKind
    _closed: bool
    _blocking: bool
    #: The C calls of the fd's life (a macOS Device has its own: see _utun_device).
    _fd_ops: FdOps = LINUX_OPS
    #: What makes the batch engines (None: batch.make_engine).
    _engine_maker: Any = None

    def __init__(
        self, fd: int, name: str, flags: int, *, blocking: bool = True, vnet_hdr_size: int = 0, everyone: bool = False
    ) -> None:
        """Adopt *fd*, attached to interface *name* with IFF_* *flags*.

        Prefer :func:`open_tun`/:func:`open_tap`/:meth:`from_fd`; this does no
        syscall and trusts its arguments.  The fd must be O_NONBLOCK.
        *everyone*: it was opened with ``owner=EVERYONE`` (see :attr:`persistent`).
        """
        self._fd = fd
        self._everyone = everyone
        self._name = name
        # The close protocol (see _lifecycle).  Its lock and announcements are
        # also ours under the old names, bound once: the batch calls use them
        # with no layer in between.
        self._life = life = FdLife(name, self, self._fd_ops)
        self._lock = life.lock  # slow paths only: wakeup setup, release, engines, control socket
        self._inside = life.inside
        self._enter = life.enter
        self._exit = life.exit
        self._others_inside = life.others_inside
        self._leave_closed = life.leave_closed
        self._flags = flags
        self._kind = DeviceKind.TAP if flags & lib.IFF_TAP else DeviceKind.TUN
        self._closed = False
        self._blocking = blocking
        self._ctl = -1  # control socket for link ioctls, made on first use
        self._rtnl: Optional[RtNetlink] = None  # rtnetlink over that socket
        # Batch engines by ring, direction and thread (see _engines).  The
        # batch calls use these three as they did before the table: one
        # call per lookup, one attribute load for the retired engines.
        self._engines = EngineTable(self, self._engine_maker, self._fd_ops.threads)
        self._engine = self._engines.get
        self._stale_engines = self._engines.stale  # (the table changes this list in place)
        self._close_stale_engines = self._engines.close_stale
        self._abuf: Optional[threading.local] = None  # read_async()'s buffer per thread
        # (buffer, cffi pointer, size) of the last buffer read into / written
        # from.  One tuple, read with one attribute load, so threads sharing
        # the device never pair one thread's buffer with another's pointer.
        self._rcache: Tuple[object, Any, int] = _NO_BUFFER
        self._wcache: Tuple[object, Any, int] = _NO_BUFFER
        # (buffer, length) of the last read buffer checked against the MTU whose
        # pointer cannot be cached (see _cacheable): re-checked when its length changes.
        self._rchecked: Tuple[object, int] = _NOT_CHECKED
        self._scratch: Optional[bytearray] = None  # read()'s buffer, under _read_lock
        self._scratch_ptr: Any = ffi.NULL
        self._read_lock = threading.Lock()
        self._pi_buffer: Optional[bytearray] = None  # read_packet()'s default buffer
        self._vnet_hdr_size = vnet_hdr_size if flags & lib.IFF_VNET_HDR else 0
        self._offload = 0
        self._overhead = (PI_LEN if not flags & lib.IFF_NO_PI else 0) + (
            ETH_HLEN + VLAN_HLEN if self._kind is DeviceKind.TAP else 0
        ) + self._vnet_hdr_size
        self._mtu_cache = -1
        self._filter: Optional[Tuple[bpf.Instruction, ...]] = None  # what attach_filter attached

    def _forget_parent(self) -> None:
        """In a fork()ed child, after the FdLife forgot its part: drop what is the parent's.

        The child is single-threaded here: the locks may have been held by
        parent threads that do not exist in it, so they are replaced.  Rings
        and the control socket are shared with the parent: the child closes
        only its own copies (munmap and close() change nothing for the
        parent; submitting to a ring or io_uring_register would) and makes
        its own on demand.
        """
        self._lock = self._life.lock  # (a new one)
        self._read_lock = threading.Lock()
        self._engines.forget()
        ctl, self._ctl = self._ctl, -1
        self._fd_ops.close(ctl)
        self._rtnl = None
        if self._closed and self._fd >= 0:  # fork() raced a close() in another thread: finish it here
            fd, self._fd = self._fd, -1
            self._fd_ops.close(fd)

    # ------------------------------------------------------------------ opening

    @classmethod
    def from_fd(cls, fd: int, *, nonblocking: bool = False, packet_info: Optional[bool] = None) -> "Device":
        """Wrap a TUN/TAP fd opened elsewhere (e.g. received over a Unix socket).

        The name and flags are learned with ``TUNGETIFF``.  That answer cannot
        tell whether packets carry a ``tun_pi`` header (a kernel quirk: see
        ``_linux.backend.get_iff``), so *packet_info* None reads it from sysfs, which
        works when the interface is in this process's network namespace;
        pass True/False to say it yourself.  The Device takes ownership:
        closing it closes *fd* (use :meth:`detach` to give it back).  The fd
        is switched to O_NONBLOCK, which is shared by every duplicate of it.

        On macOS *fd* is a utun socket (connected to the utun control); its
        name comes from ``UTUN_OPT_IFNAME``, and *packet_info* None means
        False: whether the AF header is stripped is this Device's choice,
        not the kernel's state.  On FreeBSD *fd* is a /dev/tun or /dev/tap
        fd: its name from ``TUNGIFNAME``, a tun's AF header turned on
        (``TUNSIFHEAD``) if it was off; *packet_info* as on macOS.
        """
        check_int("fd", fd)
        if fd < 0:
            raise ValueError(f"fd must be a non-negative file descriptor, not {fd}")
        check_bool("nonblocking", nonblocking)
        if packet_info is not None:
            check_bool("packet_info", packet_info)
        _backend.require(Feature.FROM_FD)
        if packet_info:
            _backend.require(Feature.PACKET_INFO)
        if _backend.PLATFORM is _darwin.PLATFORM:  # a utun socket (see _utun_device.adopt_utun)
            from ._utun_device import adopt_utun

            return adopt_utun(fd, nonblocking, bool(packet_info))
        if _backend.PLATFORM is _freebsd.PLATFORM:  # a /dev/tun or /dev/tap fd (see _freebsd_device.adopt_freebsd)
            from ._freebsd_device import adopt_freebsd

            return adopt_freebsd(fd, nonblocking, bool(packet_info))
        backend = _backend.current()
        name, flags = backend.get_iff(fd)
        if packet_info is None:
            # sysfs shows /sys's namespace: an interface of this name there may be another one.
            sysfs = backend.sysfs_tun_flags(name) if _in_this_netns(fd, name) else None
            if sysfs is None:
                raise ValueError(
                    f"cannot tell whether {name} carries packet information (it is not visible "
                    "in this network namespace): pass packet_info=True or False"
                )
            packet_info = not sysfs & lib.IFF_NO_PI
        flags = flags & ~lib.IFF_NO_PI | (0 if packet_info else lib.IFF_NO_PI)
        vnet = backend.get_vnet_hdr_size(fd, name) if flags & lib.IFF_VNET_HDR else 0
        fl = check(lib.fcntl, fd, ffi.cast("int", 3), op="fcntl", name=name)  # F_GETFL
        if not fl & os.O_NONBLOCK:
            check(lib.fcntl, fd, ffi.cast("int", 4), ffi.cast("int", fl | os.O_NONBLOCK), op="fcntl", name=name)  # F_SETFL
        dev = cls(fd, name, flags, blocking=not nonblocking, vnet_hdr_size=vnet)
        if vnet:
            # The offloads set by whoever opened it cannot be read back: assume
            # super-packets may come, so read buffers are sized for them.
            dev._offload = GSO_OFFLOADS & (TUN_F_TSO4 | TUN_F_TSO6)
        return dev

    # --------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The interface name, e.g. ``"tun0"``."""
        return self._name

    @property
    def kind(self) -> DeviceKind:
        """:attr:`DeviceKind.TUN` or :attr:`DeviceKind.TAP`."""
        return self._kind

    @property
    def flags(self) -> TunFlags:
        """The IFF_* flags the device was attached with (``TUNGETIFF`` at open)."""
        return TunFlags(self._flags)

    @property
    def packet_info(self) -> bool:
        """True if each packet carries the 4-byte ``tun_pi`` header.

        On macOS the 4-byte header is utun's address family (big-endian
        AF_INET 2 / AF_INET6 30); ``read_packet``/``write_packet`` still
        speak EtherTypes there (see ``tuntap_cffi._utun_device``).
        """
        return not self._flags & lib.IFF_NO_PI

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or :meth:`detach`) was called."""
        return self._closed

    @property
    def blocking(self) -> bool:
        """False if reads raise ``BlockingIOError`` instead of waiting (settable)."""
        return self._blocking

    @blocking.setter
    def blocking(self, value: bool) -> None:
        self._blocking = check_bool("blocking", value)

    def fileno(self) -> int:
        """Return the file descriptor (always O_NONBLOCK), for select/poll/asyncio."""
        if self._closed:
            raise DeviceClosedError(self._name)
        return self._fd

    def write_fileno(self) -> int:
        """The fd whose room a write waits for (for event loops): :meth:`fileno`, except on a macOS feth TAP."""
        return self.fileno()

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        state = " [closed]" if self._closed else f" fd={self._fd}"
        return f"<{type(self).__name__} {self._kind.value} {self._name!r}{state}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__}: it owns a file descriptor")

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reading

    @property
    def max_packet_size(self) -> int:
        """The largest packet one read can return: MTU plus headers.

        TUN: MTU; TAP: MTU + 14 (Ethernet) + 4 (one 802.1Q tag); plus 4
        with ``packet_info``, plus the virtio-net header with ``vnet_hdr``;
        with a segmentation offload on, 65535 instead of the MTU (GSO
        super-packets).  Read buffers must be at least this large.
        """
        if self._offload & GSO_OFFLOADS:
            return MAX_IP_PACKET + self._overhead
        return self._current_mtu() + self._overhead

    # ------------------------------------------------------ offloads, queues

    @property
    def vnet_hdr_size(self) -> int:
        """Bytes of ``struct virtio_net_hdr`` in front of every packet (0 without ``vnet_hdr``)."""
        return self._vnet_hdr_size

    @property
    def offload(self) -> int:
        """The TUN_F_* offloads in force (set with :meth:`set_offload`)."""
        return self._offload

    @property
    def napi(self) -> bool:
        """True if the device was opened with ``napi=True`` (IFF_NAPI): writes go through NAPI and GRO."""
        return bool(self._flags & lib.IFF_NAPI)

    @announced
    def set_offload(self, flags: int) -> int:
        """Ask for TUN_F_* offloads; return those the kernel took.

        Needs ``vnet_hdr=True``.  TSO and UFO/USO need TUN_F_CSUM.  The
        newer offloads are probed, newest first: a kernel that refuses one
        with EINVAL gets the rest without it, and the result says so (compare
        it with what you asked): TUN_F_UDP_TUNNEL_GSO/_CSUM (6.17: TSO/USO
        inside a UDP tunnel; they need ``vnet_hdr_size=24`` and a plain
        TSO/USO offload), then USO (6.2).  With any segmentation offload on,
        reads may return 64 KiB super-packets: :attr:`max_packet_size` grows
        accordingly.
        """
        check_offload("offload flags", flags)
        _backend.require(Feature.OFFLOAD, self._name)
        if flags and not self._vnet_hdr_size:
            raise ValueError(f"{self._name} has no virtio-net header: open it with vnet_hdr=True for offloads")
        check_tunnel_offload(flags, self._vnet_hdr_size)
        if self._closed:
            raise DeviceClosedError(self._name)
        backend = _backend.current()
        while True:
            try:
                backend.set_offload(self._fd, self._name, flags)
                break
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # EINVAL is how set_offload() says "a bit I do not know": the
                # newest offload asked for goes first (a kernel without USO
                # has no tunnel offloads either).
                newest = next((bits for bits in _PROBED_OFFLOADS if flags & bits), 0)
                if not newest:
                    raise
                flags &= ~newest
        self._offload = flags
        self._recheck_read_buffer()  # the largest packet changed
        return flags

    def attach_queue(self) -> None:
        """Attach this queue to its multi-queue interface again (``TUNSETQUEUE``).

        (``detach()`` is the file-like "give up the fd"; queues use these names.)
        """
        self._set_queue(True)

    def detach_queue(self) -> None:
        """Detach this queue: the kernel stops steering packets to it until attached."""
        self._set_queue(False)

    @announced
    def _set_queue(self, attach: bool) -> None:
        _backend.require(Feature.MULTI_QUEUE, self._name)
        if not self._flags & lib.IFF_MULTI_QUEUE:
            raise ValueError(f"{self._name} was not opened with multi_queue=True")
        if self._closed:
            raise DeviceClosedError(self._name)
        backend = _backend.current()
        backend.set_queue(self._fd, self._name, attach)
        # Kernel quirk (tun_attach, still in 6.18): while a classic filter is
        # attached to a TAP, attaching a queue copies the filter onto the
        # queue's socket and then returns success without attaching it;
        # TUNGETIFF still says IFF_DETACH_QUEUE.
        if attach and self._kind is DeviceKind.TAP and backend.get_iff(self._fd)[1] & lib.IFF_DETACH_QUEUE:
            raise DeviceBusyError(
                errno.EBUSY, f"the kernel does not attach a queue of {self._name} while a filter is attached to it: "
                "detach_filter(), attach_queue(), then attach_filter() again (or detach_filter() once more for "
                "none: this queue kept a copy of the filter)", self._name)

    def readinto(self, buffer: "WriteableBuffer", timeout: Optional[float] = None) -> int:
        """Read one packet into *buffer*; return its length in bytes.

        *buffer* is any writable, C-contiguous buffer (bytearray, memoryview,
        mmap, array, numpy) of at least :attr:`max_packet_size` bytes, else
        ``ValueError`` (the kernel would truncate silently).  Reusing one
        buffer costs one C call per packet and allocates nothing.  With
        ``packet_info=True`` the packet starts with the 4-byte ``tun_pi``
        header (see :meth:`read_packet`).

        Blocks until a packet arrives, unless the device is non-blocking:
        then ``BlockingIOError`` when none is queued.  A blocked call raises
        :class:`DeviceClosedError` when another thread closes the device.
        *timeout* (seconds, int or float, ``>= 0``; None: no limit) bounds
        that wait on a blocking device: ``TimeoutError`` (as a socket's
        timeout raises) when no packet came in time; 0 waits not at all.  A
        non-blocking device raises ``BlockingIOError`` at once as always.
        A bad *timeout* raises TypeError/ValueError before anything is read.
        If the MTU was raised outside this Device after *buffer* was checked,
        a packet the buffer cut short raises ``ValueError`` (it is lost) and
        the buffer is checked again, so refused, on the next call.
        """
        if timeout is not None:  # (the one cost of timeouts on the untimed path)
            check_timeout(timeout)
        cached, ptr, size = self._rcache
        if cached is not buffer:
            cached, ptr, size = self._bind_read_buffer(buffer)
        n: int = _read(self._fd, ptr, size)
        if n > 0 and n < size:  # a packet that fills the buffer may have been cut: _read_again looks
            return n
        return self._read_again(n, ptr, size, buffer, False, timeout)

    def _readinto_uncached(self, buffer: "WriteableBuffer", timeout: Optional[float] = None) -> int:
        """readinto where no read buffer is cached (PyPy): the buffer's current storage at every call.

        The same steps as readinto's miss path, inline: PyPy's JIT then
        makes it cost what readinto with a cached pointer costs (bench:
        1.02x a bare read against 1.05x through _bind_read_buffer).
        """
        if timeout is not None:
            check_timeout(timeout)
        checked = self._rchecked
        if checked[0] is buffer:
            ptr = _from_buffer(buffer, require_writable=True)  # (a closed mmap: ValueError)
            size: int = len(ptr)
            if size != checked[1]:  # resized: check it against the MTU again
                _, ptr, size = self._bind_read_buffer(buffer)
        else:
            _, ptr, size = self._bind_read_buffer(buffer)
        n: int = _read(self._fd, ptr, size)
        if n > 0 and n < size:
            return n
        return self._read_again(n, ptr, size, buffer, False, timeout)

    if not _EXPORTS_PIN:  # chosen once; CPython keeps readinto as it is
        _readinto_uncached.__doc__, _readinto_uncached.__name__ = readinto.__doc__, "readinto"
        readinto = _readinto_uncached

    def read(self, size: int = -1, timeout: Optional[float] = None) -> bytes:
        """Read one packet and return it as bytes (allocates; see :meth:`readinto`).

        *size* is the most bytes to accept; ``-1`` means any packet the
        device can deliver.  A *size* below :attr:`max_packet_size` is
        refused with ``ValueError`` rather than truncating.  *timeout* is
        :meth:`readinto`'s (``TimeoutError``).  Safe to call from several
        threads (they take turns on one internal buffer).
        """
        self._check_read_size(size)
        if timeout is not None:
            check_timeout(timeout)
        with self._read_lock:
            scratch = self._scratch
            if scratch is None:
                scratch = self._make_scratch()
            ptr, room = self._scratch_ptr, len(scratch)
            n: int = _read(self._fd, ptr, room)
            if n <= 0:
                n = self._read_again(n, ptr, room, None, False, timeout)
            return ffi.buffer(ptr, n)[:]  # type: ignore[no-any-return]

    def _make_scratch(self) -> bytearray:
        """read()'s own buffer, made on first use (under _read_lock): the largest packet the device can ever
        deliver, so no MTU lookup per call.  Its pointer is ``_scratch_ptr``."""
        scratch = self._scratch = bytearray(MAX_MTU + self._overhead)
        self._scratch_ptr = ffi.from_buffer(scratch)
        return scratch

    def _check_read_size(self, size: int) -> None:
        """read()'s *size*: an int, -1 or at least max_packet_size; and the device open."""
        if isinstance(size, bool) or not isinstance(size, int):  # (check_int's rule inline: once per packet)
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if self._closed:
            raise DeviceClosedError(self._name)
        if size != -1:
            limit = self.max_packet_size
            if size < limit:
                raise ValueError(self._too_small_message(size, limit))

    def read_packet(self, buffer: "Optional[WriteableBuffer]" = None) -> PacketInfo:
        """Read one packet of a ``packet_info=True`` device and split its header.

        Returns ``PacketInfo(flags, proto, payload)`` with *payload* a view
        into *buffer* (or into a buffer owned by the device, valid until the
        next ``read_packet`` without a buffer).
        """
        if not self.packet_info:
            raise ValueError(f"{self._name} was opened without packet_info=True: there is no tun_pi header")
        if buffer is None:
            if self._pi_buffer is None:
                self._pi_buffer = bytearray(MAX_MTU + self._overhead)
            buffer = self._pi_buffer
        n = self.readinto(buffer)
        view = memoryview(buffer).cast("B")
        if n < PI_LEN:  # never seen; the kernel always writes the header first
            raise ValueError(f"{self._name}: short read of {n} bytes has no tun_pi header")
        # tun_pi.flags is host order, tun_pi.proto network order.
        flags = view[0] | view[1] << 8 if sys.byteorder == "little" else view[0] << 8 | view[1]
        return PacketInfo(flags, view[2] << 8 | view[3], view[PI_LEN:n])

    def _bind_read_buffer(self, buffer: object) -> Tuple[object, Any, int]:
        """(buffer, pointer, length) of *buffer*'s current storage, checked; cached if it is pinned."""
        if self._closed:
            raise DeviceClosedError(self._name)
        try:
            ptr = ffi.from_buffer(buffer, require_writable=True)
        except (TypeError, BufferError):  # BufferError: a read-only memoryview
            raise TypeError(
                f"readinto() needs a writable bytes-like object (bytearray, memoryview, mmap, "
                f"array, numpy array), not {type(buffer).__name__}"
            ) from None
        # (A closed mmap or released memoryview raised ValueError above.)
        size = len(ptr)
        pinned = _cacheable(buffer, ptr)
        checked = self._rchecked
        if checked[0] is not buffer or checked[1] != size:  # new, or its length changed: one MTU lookup
            limit = self.max_packet_size
            if size < limit:
                raise ValueError(self._too_small_message(size, limit))
            if pinned is None:
                self._rchecked = (buffer, size)
        if pinned is None:
            return (buffer, ptr, size)
        self._rcache = entry = (buffer, pinned, size)
        return entry

    def _recheck_read_buffer(self) -> None:
        """Forget the read buffer's check, so the next read checks it against the MTU again."""
        self._rcache = _NO_BUFFER
        self._rchecked = _NOT_CHECKED

    def _too_small_message(self, size: int, limit: int) -> str:
        return (
            f"a read buffer of {size} bytes is smaller than the {limit} bytes {self._name} can "
            f"deliver (MTU {limit - self._overhead} + {self._overhead} bytes of headers); the "
            f"kernel would truncate packets without telling: use at least Device.max_packet_size bytes"
        )

    def _read_again(
        self, n: int, ptr: Any, size: int, buffer: object = None, nowait: bool = False, timeout: Optional[float] = None
    ) -> int:
        """The slow path of a read whose first attempt returned *n* <= 0 or filled the buffer.

        Nothing queued: -1 with *nowait*, else BlockingIOError on a
        non-blocking device, else a wait (TimeoutError once *timeout*
        seconds, counted from the first wait, passed).  *buffer*, if given,
        is what *ptr* points into: after a wait, an uncached one (see
        _cacheable) is looked up again, as another thread may have resized
        it meanwhile.
        """
        deadline = None
        while True:
            if n > 0:
                if n == size:
                    self._check_full_read(ptr, size)
                return n
            if self._closed:
                self._leave_closed()
            if n == 0:
                return 0
            err = ffi.errno
            if err == errno.EAGAIN:
                if nowait:
                    return -1
                if not self._blocking:
                    raise BlockingIOError(errno.EAGAIN, f"no packet queued on {self._name}")
                deadline = self._wait_for_packet(timeout, deadline, "no packet came from")
                if buffer is not None and self._rcache[0] is not buffer:
                    if self._closed:  # woken by close(): leave through the door that frees the number
                        self._leave_closed()
                    _, ptr, size = self._bind_read_buffer(buffer)
            elif err != errno.EINTR:
                raise error_from_errno(err, "read", self._name, f"read from {self._name} failed")
            n = _read(self._fd, ptr, size)

    def readinto_nowait(self, buffer: "WriteableBuffer") -> int:
        """One non-blocking :meth:`readinto`: the packet's length, or -1 if nothing is queued."""
        cached, ptr, size = self._rcache
        if cached is not buffer:
            cached, ptr, size = self._bind_read_buffer(buffer)
        n: int = _read(self._fd, ptr, size)
        if n > 0 and n < size:
            return n
        return self._read_again(n, ptr, size, None, True)

    def _check_full_read(self, ptr: Any, size: int) -> None:
        """A read filled the *size*-byte buffer: raise ValueError if the packet was cut short.

        Only a buffer smaller than :attr:`max_packet_size` can cut a packet
        (the MTU was raised outside this Device since the buffer was
        checked).  A full-size packet is common (bulk TCP fills the MTU), so
        the packet is judged first without a syscall: by tun_pi's
        TUN_PKT_STRIP flag, else for a TUN by the IP header's own length; a
        whole packet is returned and the buffer stays bound.  Only a TAP
        frame without tun_pi cannot show it is whole: then the MTU is read
        again, and if the buffer is now too small the frame counts as cut.
        A cut packet unbinds the buffer, so the next call checks it again
        and refuses it.
        """
        head = ffi.buffer(ptr, size)[: self._vnet_hdr_size + PI_LEN + 6]
        if not self._flags & lib.IFF_NO_PI:
            if not int.from_bytes(head[:2], sys.byteorder) & lib.TUN_PKT_STRIP:
                return
        elif self._kind is DeviceKind.TUN:
            ip = head[self._vnet_hdr_size :]
            version = ip[0] >> 4 if ip else 0
            length = int.from_bytes(ip[2:4], "big") if version == 4 else 40 + int.from_bytes(ip[4:6], "big")
            if version in (4, 6) and length <= size - self._vnet_hdr_size:
                return
        self._cut_if_too_small(size)

    def _cut_if_too_small(self, size: int) -> None:
        """A full read of a packet that cannot show it is whole: cut short if the buffer is now below max_packet_size."""
        need = self.max_packet_size
        if size >= need:
            return
        self._recheck_read_buffer()
        raise ValueError(
            f"{self._name} now delivers packets of up to {need} bytes (MTU raised?) but the read buffer "
            f"holds {size}: a packet was cut short to {size} bytes and dropped; use a buffer of at least "
            f"Device.max_packet_size bytes"
        )

    def release_buffers(self) -> None:
        """Forget the cached buffer pointers, so the buffers can be resized or closed."""
        self._rcache = self._wcache = _NO_BUFFER
        self._rchecked = _NOT_CHECKED

    # ------------------------------------------------------------ batch I/O


    # ---------------------------------------------------------------- asyncio

    async def readinto_async(self, buffer: "WriteableBuffer") -> int:
        """``await``-able :meth:`readinto`: waits on the event loop, never blocks it.

        Cancelling it loses no packet: the read happens only after the wait.
        Closing the device wakes it with :class:`DeviceClosedError`.
        """
        from . import aio

        return await aio.readinto(self, buffer)

    async def read_async(self) -> bytes:
        """``await``-able :meth:`read`: one packet as bytes."""
        from . import aio

        return await aio.read(self)

    async def write_async(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
        """``await``-able :meth:`write` (a TUN/TAP write practically never has to wait)."""
        from . import aio

        return await aio.write(self, data, nbytes)

    async def read_batch_async(
        self, ring: PacketRing, *, min_packets: int = 1, timeout: Optional[float] = None
    ) -> int:
        """``await``-able :meth:`read_batch`: fill *ring* with what is queued; return the count.

        Waits (on the loop) until at least *min_packets* have arrived, the
        ring is full, or *timeout* seconds passed (then the count may be
        lower, even 0).  Cancelled (or interrupted by a signal handler's
        exception) after some packets were read, it returns nothing: the
        next batch call on this ring in this thread returns them first, as
        :meth:`read_batch` does after an interrupt.
        """
        from . import aio

        check_min_packets(min_packets, timeout)
        engine = self._engine(ring, "read")
        try:
            got = await aio.read_batch(self, ring, engine, min_packets, timeout)
            engine.pend = None  # handed over (see read_batch)
            return got
        except BaseException:
            take_back(locals())
            raise

    def __aiter__(self) -> "AsyncIterator[bytes]":
        """``async for packet in dev``: packets as bytes until the device is closed."""
        from . import aio

        return aio.packets(self)

    # ------------------------------------------------------------ link events

    def events(self, *, rcvbuf: Optional[int] = None) -> "LinkEvents":
        """An iterator of this interface's link events: ``for ev in dev.events()`` or ``async for``.

        Yields :mod:`tuntap_cffi.events` values (LinkUp, LinkDown, CarrierOn,
        CarrierOff, MtuChanged, AddressAdded, AddressRemoved, LinkDeleted,
        EventsLost) for changes made after this call, by anyone.  It waits on
        a NETLINK_ROUTE socket of its own (a PF_ROUTE one on macOS and
        FreeBSD; the event loop's, with ``async for``: no thread); closing
        the device ends it, as do its own
        ``close()``/``aclose()`` and leaving its ``with`` block, which close
        the socket.  ``get(timeout)`` waits at most *timeout* seconds
        (``TimeoutError``).  *rcvbuf* sets the socket's receive buffer
        (``SO_RCVBUF``, bytes): when it overflows the iterator yields
        EventsLost, then what changed meanwhile.
        """
        from .events import LinkEvents

        _backend.require(Feature.LINK_EVENTS, self._name)
        return LinkEvents(self, rcvbuf)

    # --------------------------------------- the non-blocking seam (aio.Pollable)
    #
    # One attempt each, whatever :attr:`blocking` says: asyncio's
    # sock_recv_into shape, so an event-loop layer needs nothing else of a
    # Device (it waits through :attr:`lifecycle` when nothing is queued).

    @property
    def lifecycle(self) -> FdLife:
        """The close protocol of this device's fd (internal: event-loop layers register their waiters there)."""
        return self._life

    def read_nowait(self) -> Optional[bytes]:
        """One non-blocking read: a packet as bytes, or None if nothing is queued.

        Read into a buffer of this thread's and copied out in one call, so
        callers on one thread never share it mid-read (loops in two threads
        may share a device).
        """
        local = self._abuf
        if local is None:
            local = self._abuf = threading.local()  # a racing first call makes two: harmless
        pair: Optional[Tuple[bytearray, memoryview]] = getattr(local, "pair", None)
        if pair is None:
            buf = bytearray(MAX_IP_PACKET + self._overhead)
            pair = local.pair = (buf, memoryview(buf))
        n = self.readinto_nowait(pair[0])
        return None if n < 0 else bytes(pair[1][:n])

    def write_nowait(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
        """One non-blocking :meth:`write`: BlockingIOError if the kernel cannot take the packet now."""
        if type(data) is bytes and nbytes is None:
            ptr: Any = data
            size = len(data)
        else:
            cached, ptr, size = self._wcache
            if cached is not data:
                cached, ptr, size = self._bind_write_buffer(data)
            if nbytes is not None:
                if not 0 <= nbytes <= size:
                    raise ValueError(f"nbytes={nbytes!r} is outside 0..{size}, the size of the buffer")
                size = nbytes
        n: int = _write(self._fd, ptr, size)
        if n >= 0:
            return n
        return self._write_again(ptr, size, True)

    # ----------------------------------------------------------------- writing

    def write(self, data: "ReadableBuffer", nbytes: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Write one packet; return the number of bytes written (all of them).

        *data* is any C-contiguous bytes-like object; it is passed to the
        kernel without a copy.  *nbytes* writes only its first *nbytes*
        bytes: ``dev.write(buf, n)`` after ``n = dev.readinto(buf)`` reuses
        the cached pointer of *buf*, where ``dev.write(memoryview(buf)[:n])``
        would make a new view (and bind it) per packet.  A TUN takes an
        IPv4/IPv6 packet, a TAP an Ethernet frame, each after a 4-byte
        ``tun_pi`` header with ``packet_info=True`` (see
        :meth:`write_packet`).  A packet the kernel refuses raises
        :class:`InvalidPacketError` (a ``ValueError``).  *timeout* bounds
        a wait for room (rare: a TUN/TAP takes every packet it can route at
        once) as :meth:`readinto`'s bounds a wait for a packet: ``TimeoutError``.
        """
        if timeout is not None:
            check_timeout(timeout)
            return self._write_timed(data, nbytes, timeout)
        if type(data) is bytes and nbytes is None:  # cffi passes bytes' own storage: no copy
            # len() first: a call between loading self._fd and _write() would be a
            # point where CPython runs other code (see "freeing closed fd numbers").
            size = len(data)
            n: int = _write(self._fd, data, size)
            if n >= 0:
                return n
            return self._write_again(data, size)
        cached, ptr, size = self._wcache
        if cached is not data:
            cached, ptr, size = self._bind_write_buffer(data)
        if nbytes is not None:
            if not 0 <= nbytes <= size:  # a non-number raises TypeError here
                raise ValueError(f"nbytes={nbytes!r} is outside 0..{size}, the size of the buffer")
            size = nbytes
        n = _write(self._fd, ptr, size)
        if n >= 0:
            return n
        return self._write_again(ptr, size)

    def _write_span(self, data: "ReadableBuffer", nbytes: Optional[int]) -> Tuple[Any, int]:
        """The pointer and length write() sends of *data* (its cached binding; the first *nbytes* bytes).

        What :meth:`write` does inline (its hot path); the platform Devices whose writes go through one more
        call anyway (utun, feth) share it.
        """
        cached, ptr, size = self._wcache
        if cached is not data:
            cached, ptr, size = self._bind_write_buffer(data)
        if nbytes is not None:
            if not 0 <= nbytes <= size:  # a non-number raises TypeError here
                raise ValueError(f"nbytes={nbytes!r} is outside 0..{size}, the size of the buffer")
            size = nbytes
        return ptr, size

    def _write_timed(self, data: "ReadableBuffer", nbytes: Optional[int], timeout: float) -> int:
        """write() with a timeout (validated): non-blocking attempts with bounded waits between them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.write_nowait(data, nbytes)
            except BlockingIOError:
                if not self._blocking:
                    raise
            self._wait(select.POLLOUT, self._ms_left(deadline, "no room came on", timeout))

    def write_packet(self, payload: "ReadableBuffer", proto: Optional[int] = None) -> int:
        """Write *payload* behind a ``tun_pi`` header on a ``packet_info=True`` device.

        *proto* is the EtherType; for a TUN it defaults from the IP version
        nibble (0x0800 or 0x86DD).  One ``writev`` call: the payload is not
        copied.  Returns the payload bytes written.
        """
        ptr, size, proto = self._packet_payload(payload, proto)
        pi = ffi.new("struct tun_pi *")
        pi.proto = int.from_bytes(proto.to_bytes(2, "big"), sys.byteorder)  # __be16
        iov = ffi.new("struct iovec[2]")
        iov[0].iov_base, iov[0].iov_len = pi, PI_LEN
        iov[1].iov_base, iov[1].iov_len = ptr, size
        n: int = lib.writev(self._fd, iov, 2)
        if n < 0:
            n = self._write_again(iov, 2, False, lib.writev)
        return n - PI_LEN

    def _packet_payload(self, payload: "ReadableBuffer", proto: Optional[int]) -> Tuple[Any, int, int]:
        """write_packet's arguments checked: the payload's pointer and size, and the EtherType (inferred for None)."""
        if not self.packet_info:
            raise ValueError(f"{self._name} was opened without packet_info=True: use write()")
        if self._closed:
            raise DeviceClosedError(self._name)
        try:
            ptr = ffi.from_buffer(payload)
        except TypeError:
            raise TypeError(f"write_packet() needs a bytes-like payload, not {type(payload).__name__}") from None
        size = len(ptr)
        if proto is None:
            version = ptr[0][0] >> 4 if size else 0
            if self._kind is DeviceKind.TAP or version not in (4, 6):
                raise ValueError("cannot infer proto: pass proto= (an EtherType such as 0x0800)")
            proto = lib.ETH_P_IP if version == 4 else lib.ETH_P_IPV6
        if isinstance(proto, bool) or not isinstance(proto, int) or not 0 <= proto <= 0xFFFF:
            raise ValueError(f"proto must be an EtherType between 0 and 0xFFFF, not {proto!r}")
        return ptr, size, proto

    def _bind_write_buffer(self, data: object) -> Tuple[object, Any, int]:
        if self._closed:
            raise DeviceClosedError(self._name)
        try:
            ptr = ffi.from_buffer(data)
        except TypeError:
            raise TypeError(f"write() needs a bytes-like object, not {type(data).__name__}") from None
        size = len(ptr)  # of the current storage (a closed mmap raised ValueError)
        pinned = _cacheable(data, ptr)
        if pinned is None:
            return (data, ptr, size)
        self._wcache = entry = (data, pinned, size)
        return entry

    def _check_write_error(self, nowait: bool = False) -> None:
        """Raise for the errno of a failed write, unless it is EINTR or EAGAIN (blocking, not *nowait*: wait)."""
        if self._closed:
            self._leave_closed()
        err = ffi.errno
        if err == errno.EINTR:
            return
        if err == errno.EAGAIN and self._blocking and not nowait:
            return
        if err == errno.EAGAIN:
            raise BlockingIOError(errno.EAGAIN, f"{self._name} cannot take a packet now")
        raise self._write_error(err, f"write to {self._name} failed")

    def _write_error(self, err: int, what: str) -> OSError:
        """The exception for a write that failed with *err* (error paths only).

        EIO means the interface is down, and ``ip link del`` brings it down
        before it detaches our file: a write in between gets EIO too.  A TUN
        ioctl takes the RTNL lock that the deletion holds throughout, so once
        TUNGETIFF returns, a deletion under way is over and says EBADFD.
        """
        if err == errno.EIO:
            try:
                _backend.current().get_iff(self._fd)
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    err = errno.EBADFD  # gone, not down
        return error_from_errno(err, "write", self._name, what)

    def _write_again(self, ptr: Any, size: int, nowait: bool = False, call: Any = _write) -> int:
        """The slow path of a write whose first attempt failed: retry, wait (unless *nowait*) or raise.

        *call* is the syscall of the first attempt, ``call(fd, ptr, size)``:
        write(), or writev() of an iovec array of *size* entries.
        """
        while True:
            self._check_write_error(nowait)
            if ffi.errno == errno.EAGAIN:
                self._wait(select.POLLOUT)
            n: int = call(self._fd, ptr, size)
            if n >= 0:
                return n

    # ------------------------------------------------------- waiting, closing

    def _wait_for_packet(self, timeout: Optional[float], deadline: Optional[float], what: str) -> Optional[float]:
        """One wait of a read's slow path: for ever without *timeout*; else until *deadline*, set at the first wait
        (TimeoutError, saying *what* did not happen, once it passed).  Returns the deadline for the next wait."""
        if timeout is None:
            self._wait(select.POLLIN)
            return None
        if deadline is None:
            deadline = time.monotonic() + timeout
        self._wait(select.POLLIN, self._ms_left(deadline, what, timeout))
        return deadline

    def _ms_left(self, deadline: float, what: str, timeout: float) -> int:
        """Milliseconds to wait until *deadline* (rounded up: at least that long); TimeoutError once it passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(errno.ETIMEDOUT, f"{what} {self._name} within {timeout:g} s")
        return poll_ms(left)

    def _wait(self, events: int, timeout_ms: int = -1) -> None:
        """Block until the fd is ready for *events*, the device closes, a signal, or *timeout_ms* (see FdLife.wait)."""
        self._life.wait(self._fd, events, timeout_ms)

    def close(self) -> None:
        """Close the device; a non-persistent interface disappears.  Idempotent.

        Readers blocked in other threads wake with :class:`DeviceClosedError`
        at once and the interface is released at once.  The fd number itself
        stays taken (on /dev/null) until no other thread can be about to use
        it (see the module docstring), so no racing call ever reaches a file
        that reused it: at once when no other thread lives, otherwise within
        tens of milliseconds of the others sleeping, exiting or (CPython)
        making any read or write.
        """
        self._shut(detach=False)

    def detach(self) -> int:
        """Give up ownership of the fd and return it; the Device is then closed.

        The fd is returned in blocking mode if the device was blocking.
        """
        fd = self._shut(detach=True)
        if self._blocking:
            fl = lib.fcntl(fd, ffi.cast("int", 3))  # F_GETFL
            if fl >= 0:
                lib.fcntl(fd, ffi.cast("int", 4), ffi.cast("int", fl & ~os.O_NONBLOCK))  # F_SETFL
        return fd

    def _shut(self, detach: bool) -> int:
        """close() and detach() in trio's order; return the fd (-1: closed already).

        1. mark closed, 2. wake every waiter (blocking and asyncio), 3. keep
        the number on /dev/null until it is safe to free (close), or hand it
        back (detach); then free what no thread is using (the wakeup and
        control fds, the engines) now or from the reaper thread.
        """
        life = self._life
        with life.lock:
            if detach and self._closed:
                raise DeviceClosedError(self._name)
            fd = -1 if self._closed else self._fd  # closed already: only free what is left
            self._closed = True
            self._fd = -1
            life.notify_closing(fd)
            if fd >= 0:
                if not detach:
                    life.retire(fd)
                self.release_buffers()
        life.free_when_safe()
        return fd

    def _helpers_open(self) -> bool:
        """Whether the control socket or an engine is still open (FdLife's question, under the lock)."""
        return self._ctl >= 0 or len(self._engines) > 0

    def _release_helpers(self) -> None:
        """Close the engines and the control socket (no other thread may be using them; under the lock)."""
        self._engines.close_all()
        ctl, self._ctl = self._ctl, -1
        self._fd_ops.close(ctl)
        self._rtnl = None

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed device {self!r}", ResourceWarning, source=self, stacklevel=2)
            self._closed = True
            fd, self._fd = self._fd, -1
            self._fd_ops.close(fd)
        # Unreachable: no thread is inside a call of ours, nothing can use the numbers.
        if hasattr(self, "_stale_engines") and self._helpers_open():  # (the last helper __init__ sets)
            self._release_helpers()
        life = getattr(self, "_life", None)
        if life is not None:
            life.release()


def _in_this_netns(fd: int, name: str) -> bool:
    """Whether TUN/TAP *fd*'s interface is in the calling thread's network namespace (True where that cannot be told)."""
    if not _backend.supports(Feature.NETNS):
        return True
    backend = _backend.current()
    try:
        nsfd = backend.device_netns(fd, name)
    except OSError:
        return True  # a kernel before 5.2, or no CAP_NET_ADMIN over it: as before namespaces
    try:
        return backend.describe_netns(nsfd).current
    finally:
        close_quietly(nsfd)


def _require_open_features(
    kind: DeviceKind, name: str, packet_info: bool, persist: Optional[bool], owned: bool,
    multi_queue: bool, vnet_hdr: bool, offload: bool, napi: bool = False, netns: bool = False,
    no_carrier: bool = False, ipv6: bool = True, broadcast: bool = False,
) -> None:
    """Raise the one UnsupportedPlatformError for the first feature of this open the platform lacks.

    After the arguments are validated, before any syscall.  ``persist=False``
    passes everywhere: "not persistent" is true where nothing persists.
    """
    asked = (
        (True, Feature.TUN if kind is DeviceKind.TUN else Feature.TAP), (packet_info, Feature.PACKET_INFO),
        (bool(persist), Feature.PERSIST), (owned, Feature.OWNER), (multi_queue, Feature.MULTI_QUEUE),
        (vnet_hdr, Feature.VNET_HDR), (offload, Feature.OFFLOAD), (napi, Feature.NAPI), (netns, Feature.NETNS),
        (no_carrier, Feature.CARRIER),
        (not ipv6, Feature.DISABLE_IPV6), (broadcast, Feature.TUN_BROADCAST),
    )
    for wanted, feature in asked:
        if wanted:
            _backend.require(feature, name or None)


def _darwin_legacy_name(kind: DeviceKind, name: str, packet_info: bool) -> bool:
    """Whether *name* asks macOS for a tuntaposx device (``tunN``, ``tap%d`` ...); ValueError for a wrong one."""
    from ._darwin import tuntaposx

    if not tuntaposx.is_legacy_name(name):
        return False
    tuntaposx.candidates(kind.name, name)  # (ValueError: another family, a number the kext has not)
    if packet_info:
        raise ValueError(f"{name!r} is a tuntaposx device: its packets carry no header, so packet_info=True "
                         "has nothing to show (it is utun's AF header: open_tun(\"\", packet_info=True))")
    return True


def _open(
    kind: DeviceKind,
    name: str,
    packet_info: bool,
    persist: Optional[bool],
    owner: Owner,
    group: Union[int, str, None],
    nonblocking: bool,
    multi_queue: bool,
    vnet_hdr: bool = False,
    vnet_hdr_size: int = 10,
    offload: Optional[int] = None,
    napi: bool = False,
    napi_frags: bool = False,
    netns: Optional[NetnsSpec] = None,
    carrier: bool = True,
    ipv6: bool = True,
    broadcast: Optional[bool] = None,
) -> Device:
    name = check_name(name)
    check_bool("packet_info", packet_info)
    if persist is not None:
        check_bool("persist", persist)
    uid, gid, everyone = check_owner(owner, group)
    check_bool("nonblocking", nonblocking)
    check_bool("multi_queue", multi_queue)
    check_bool("vnet_hdr", vnet_hdr)
    check_bool("ipv6", ipv6)
    check_vnet_hdr_size(vnet_hdr_size)
    if offload is not None:
        check_offload("offload", offload)
        if offload and not vnet_hdr:
            raise ValueError("offloads need vnet_hdr=True")
        check_tunnel_offload(offload, vnet_hdr_size)
    check_napi(napi, napi_frags, kind is DeviceKind.TAP)
    ns = None if netns is None else check_netns("netns", netns)
    check_bool("carrier", carrier)
    if broadcast is not None:
        check_bool("broadcast", broadcast)
    # macOS: a tuntaposx node is reached by its name only (tunN, tap%d ...): no TUN/TAP feature is asked.
    legacy = _backend.PLATFORM is _darwin.PLATFORM and _darwin_legacy_name(kind, name, packet_info)
    _require_open_features(DeviceKind.TUN if legacy else kind, name, packet_info, persist, uid is not None or gid is not None or everyone,
                           multi_queue, vnet_hdr, bool(offload), napi, ns is not None, not carrier, ipv6,
                           bool(broadcast))
    if legacy:  # the seed's legacy macOS devices (see _tuntaposx_device)
        from ._tuntaposx_device import open_tuntaposx_device

        return open_tuntaposx_device(kind.name, name, nonblocking)
    if _backend.PLATFORM is _darwin.PLATFORM and kind is DeviceKind.TAP:  # a feth pair (see _feth_device)
        from ._feth_device import open_feth_device

        return open_feth_device(name, packet_info, nonblocking)
    if _backend.PLATFORM is _darwin.PLATFORM:  # a utun: its own framing (see _utun_device)
        from ._utun_device import open_utun_device

        return open_utun_device(name, packet_info, nonblocking)
    if _backend.PLATFORM is _freebsd.PLATFORM:  # /dev/tun, /dev/tap (see _freebsd_device)
        from ._freebsd_device import open_freebsd_device

        return open_freebsd_device(name, kind.value.upper(), packet_info, nonblocking, persist, broadcast)
    flags = lib.IFF_TUN if kind is DeviceKind.TUN else lib.IFF_TAP
    if not packet_info:
        flags |= lib.IFF_NO_PI
    if multi_queue:
        flags |= lib.IFF_MULTI_QUEUE
    if vnet_hdr:
        flags |= lib.IFF_VNET_HDR
    if napi:
        flags |= lib.IFF_NAPI | (lib.IFF_NAPI_FRAGS if napi_frags else 0)
    if not carrier:
        flags |= lib.IFF_NO_CARRIER  # (6.0; only when creating: an attach leaves the carrier as it is)
    backend = _backend.current()

    def create() -> Tuple[int, str]:
        return backend.create(name, flags, uid, gid, persist, kind.value.upper(), everyone)

    try:
        if ns is None:
            fd, real_name = create()
        else:
            # The interface is made in the namespace /dev/net/tun is opened in:
            # the backend opens it from a thread inside the target (see _linux.netns).
            nsfd = backend.open_netns(ns)
            try:
                fd, real_name = backend.in_netns(nsfd, create, lambda made: close_quietly(made[0]))
            finally:
                close_quietly(nsfd)
    except TunTapPermissionError as exc:
        if not napi_frags:
            raise
        # tun_set_iff() asks capable(CAP_NET_ADMIN) for IFF_NAPI_FRAGS, before anything else.
        raise TunTapPermissionError(exc.errno, f"{exc.strerror}; napi_frags=True in particular needs "
                                    "CAP_NET_ADMIN in the initial user namespace (the root of a user "
                                    "namespace is not enough), even to attach", exc.filename) from None
    try:
        # TUNGETIFF adds what the kernel holds (IFF_PERSIST of a reattached
        # device); its bit 0x1000 is ambiguous, ours is what TUNSETIFF set.
        _, got = backend.get_iff(fd)
        real_flags = got & ~lib.IFF_NO_PI | flags & lib.IFF_NO_PI
        if vnet_hdr:
            backend.set_vnet_hdr_size(fd, real_name, vnet_hdr_size)
        dev = Device(fd, real_name, real_flags, blocking=not nonblocking, vnet_hdr_size=vnet_hdr_size, everyone=everyone)
    except BaseException:
        close_quietly(fd)
        raise
    if offload or not ipv6:
        try:
            if offload:
                dev.set_offload(offload)
            if not ipv6:  # while it is down (a new interface is): it never sends a packet of IPv6
                dev.disable_ipv6()
        except BaseException:
            dev.close()
            raise
    return dev


def open_tun(
    name: str = "",
    *,
    packet_info: bool = False,
    persist: Optional[bool] = None,
    owner: Owner = None,
    group: Union[int, str, None] = None,
    nonblocking: bool = False,
    multi_queue: bool = False,
    vnet_hdr: bool = False,
    vnet_hdr_size: int = 10,
    offload: Optional[int] = None,
    napi: bool = False,
    napi_frags: bool = False,
    netns: Optional[NetnsSpec] = None,
    carrier: bool = True,
    ipv6: bool = True,
    broadcast: Optional[bool] = None,
) -> Device:
    """Create (or attach to a persistent) TUN device: IP packets, no link header.

    *name* may be empty (the kernel picks ``tunN``) or hold one ``%d``
    (``"vpn%d"``).  *packet_info* keeps the 4-byte ``tun_pi`` header on
    every packet.  *persist* True keeps the interface after close, False
    clears that on a persistent one, None leaves it.  *owner*/*group* (id or
    name) let that user or group attach later without CAP_NET_ADMIN (with
    both set, only a process matching both); given when attaching, they
    replace what the interface had.  A persistent interface with neither
    is open to every user who can open /dev/net/tun (0666 on most
    distributions), so *persist* True on an interface with neither makes
    the effective uid its owner, unless *owner* is :data:`EVERYONE`, the
    explicit way to make it open to all.  Attaching to an interface that
    already was persistent leaves its owner and group as they are.
    *nonblocking* makes reads raise ``BlockingIOError`` instead of waiting.
    *multi_queue* allows several Devices on one interface (see
    :func:`open_queues`).  *vnet_hdr* puts a ``struct virtio_net_hdr`` of
    *vnet_hdr_size* bytes in front of every packet: 10, 12 (``_v1``, with
    ``num_buffers``), 20 (``_v1_hash``) or 24 (``_v1_hash_tunnel``, the one
    the UDP-tunnel offloads need); *offload* then asks for TUN_F_* offloads
    (see :meth:`Device.set_offload`).  *napi* (IFF_NAPI) feeds written
    packets to the stack through NAPI and GRO, as a NIC driver does, instead
    of the per-packet backlog; *napi_frags* is for a TAP (see
    :func:`open_tap`): a TUN refuses it with ValueError.  *netns* creates (or
    attaches to) the interface inside that network namespace: a name as
    ``ip netns add`` makes them (``"blue"``: /run/netns/blue), a path of a
    namespace file (``"/proc/1234/ns/net"``) or an open fd of one; the
    calling thread stays where it is, and every link setting of the Device
    then acts in that namespace (see :attr:`Device.netns`).  *carrier* False
    creates the interface without carrier (``IFF_NO_CARRIER``, Linux 6.0):
    NO-CARRIER until ``dev.carrier = True`` (see :attr:`Device.carrier`).
    *ipv6* False turns IPv6 off on the
    interface before it can come up (see :meth:`Device.disable_ipv6`): once
    up it sends no router solicitation or MLD report, so the reader sees
    only the packets routed to it (captures, test rigs).

    On macOS it opens a utun: *name* is ``""`` (the kernel picks) or
    ``"utunN"``; reads and writes carry bare IP packets (the 4-byte
    address-family header utun adds is stripped and added without a copy),
    or, with *packet_info*, that header in front (the ``tun_pi`` of macOS).
    ``"tunN"`` (N 0..15) or ``"tun%d"`` opens the tuntaposx kext's
    ``/dev/tunN`` instead (the seed's legacy devices: bare IP packets,
    :class:`DeviceNotReadyError` until the interface has an address and is
    up; ``"tapN"``/``"tap%d"`` with :func:`open_tap`).
    The options macOS lacks raise :class:`UnsupportedPlatformError`.

    On FreeBSD it clones ``/dev/tun`` (``""``; ``"tunN"`` opens that unit,
    any other name renames the clone); packets are bare IP as on Linux (the
    4-byte family header of ``TUNSIFHEAD`` is hidden unless *packet_info*).
    *broadcast* True makes the TUN a broadcast link (``TUNSIFMODE``
    IFF_BROADCAST: IPv4 addresses with a netmask and no peer), False
    point-to-point (a new TUN's default), None leaves an existing one's
    mode; the mode can change only while the interface is down
    (:class:`DeviceBusyError` otherwise).  Linux and macOS TUNs are always
    point-to-point: ``broadcast=True`` raises
    :class:`UnsupportedPlatformError` there (a TAP is the broadcast link).

    Raises ``ValueError``/``TypeError`` for bad arguments before any syscall,
    :class:`TunTapPermissionError` without CAP_NET_ADMIN (or, attaching to
    a persistent interface, not matching its owner/group),
    :class:`DeviceBusyError` if the interface is held by another fd,
    :class:`DevicesExhaustedError` if the template has no free number,
    :class:`DeviceNotFoundError` if ``/dev/net/tun`` is missing,
    :class:`NamespaceNotFoundError` if *netns* names no namespace and
    ``ValueError`` if it is a file or fd of something else.
    """
    return _open(DeviceKind.TUN, name, packet_info, persist, owner, group, nonblocking, multi_queue,
                 vnet_hdr, vnet_hdr_size, offload, napi, napi_frags, netns, carrier, ipv6, broadcast)


def open_tap(
    name: str = "",
    *,
    packet_info: bool = False,
    persist: Optional[bool] = None,
    owner: Owner = None,
    group: Union[int, str, None] = None,
    nonblocking: bool = False,
    multi_queue: bool = False,
    vnet_hdr: bool = False,
    vnet_hdr_size: int = 10,
    offload: Optional[int] = None,
    napi: bool = False,
    napi_frags: bool = False,
    netns: Optional[NetnsSpec] = None,
    carrier: bool = True,
    ipv6: bool = True,
) -> Device:
    """Create (or attach to a persistent) TAP device: Ethernet frames.

    Takes the options of :func:`open_tun`, and *napi_frags* (IFF_NAPI_FRAGS,
    with *napi*): the kernel builds each written frame from page fragments
    (``napi_get_frags``), the receive path of a NIC that DMAs into pages.
    It needs CAP_NET_ADMIN in the initial user namespace.
    """
    return _open(DeviceKind.TAP, name, packet_info, persist, owner, group, nonblocking, multi_queue,
                 vnet_hdr, vnet_hdr_size, offload, napi, napi_frags, netns, carrier, ipv6)


def open_queues(name: str, queues: int, *, tap: bool = False, **options: Any) -> List[Device]:
    """Open *queues* Devices on one multi-queue interface (``IFF_MULTI_QUEUE``).

    The kernel spreads flows over the queues (by flow hash); each Device is
    an fd to read and write from its own thread.  *options* are those of
    :func:`open_tun`/:func:`open_tap` (``multi_queue`` is implied).  If any
    queue fails to open, those already open are closed.
    """
    check_int_in("queues", queues, 1, MAX_QUEUES)
    _backend.require(Feature.MULTI_QUEUE, check_name(name) or None)
    options.pop("multi_queue", None)
    opener = open_tap if tap else open_tun
    devices: List[Device] = []
    try:
        first = opener(name, multi_queue=True, **options)
        devices.append(first)
        for _ in range(queues - 1):
            devices.append(opener(first.name, multi_queue=True, **options))
    except BaseException:
        for dev in devices:
            dev.close()
        raise
    return devices


def delete_persistent(name: str) -> None:
    """Delete the persistent TUN/TAP interface *name* (like ``ip tuntap del``).

    Raises :class:`DeviceNotFoundError` if no TUN/TAP interface has that
    name and :class:`DeviceBusyError` if a process still holds it (for a
    multi-queue interface: any queue, attached or detached), leaving it
    persistent.
    """
    name = check_name(name)
    if not name or "%" in name:
        raise ValueError(f"delete_persistent() needs a full interface name, not {name!r}")
    _backend.require(Feature.PERSIST, name)
    _backend.current().delete_persistent(name)
