"""A drop-in replacement for python-pytun, built on :class:`tuntap_cffi.Device`.

A program written for pytun runs unchanged after one import line changes::

    import pytun                                    # before
    from tuntap_cffi import pytun_compat as pytun   # after

    tun = pytun.TunTapDevice(name="tun0", flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    tun.addr, tun.dstaddr, tun.netmask, tun.mtu = "10.8.0.1", "10.8.0.2", "255.255.255.0", 1400
    tun.up()
    packet = tun.read(tun.mtu)
    tun.write(packet)

What pytun (2.4) does, and so what this module does:

- ``TunTapDevice(name='', flags=IFF_TUN, dev='/dev/net/tun')``.  The default
  flags keep packet information on: every packet starts with the 4-byte
  ``tun_pi`` header unless ``IFF_NO_PI`` is given.  The flags go to the
  kernel as given (``IFF_VNET_HDR``, ``IFF_ONE_QUEUE``, ``IFF_TUN_EXCL``...).
- ``name`` is read-only.  ``addr``, ``dstaddr``, ``netmask`` are dotted IPv4
  strings set and read with ``SIOCSIFADDR`` & co. on an ``AF_INET`` socket
  (those ioctls exist only on IPv4 sockets), so setting
  ``addr`` on a TUN gives a /32 and ``netmask`` widens it afterwards; input
  is parsed by ``inet_aton`` (``"10.1"`` is 10.0.0.1).  ``hwaddr`` is 6
  bytes (all zero on a TUN), ``mtu`` an int.  Like pytun, these work by
  interface name, also after ``close()`` while the interface exists.
- ``read(size)`` returns at most *size* bytes of one packet, as the kernel
  truncates: see :meth:`TunTapDevice.read`.  ``write(data)`` returns the
  bytes written.  ``fileno()`` is -1 once closed.  ``persist(flag=True)``
  and ``mq_attach(flag=True)`` take a bool, positionally; ``persist`` sets
  no owner, as pytun's (the interface is open to every user: see
  :meth:`TunTapDevice.persist`).
- The fd is left blocking, as pytun leaves it; a program may make it
  non-blocking itself (``os.set_blocking(tun.fileno(), False)``), and then
  an empty read raises ``Error`` with ``errno.EAGAIN``.  As with pytun, a
  read blocked in the kernel is not woken by ``close()`` from another
  thread (a plain :class:`tuntap_cffi.Device` is).
- Every failure pytun reports as :class:`Error` (an ``OSError``) is one
  here, with the same ``args``: ``(errno, strerror)`` for a failed system
  call, ``(message,)`` for what pytun checks itself ("Bad IP address", "Bad MAC address", "Bad MTU, should be >
  0", "Interface name too long", "Bad flags: ...").  Beyond pytun, a system
  call failure is also the matching :class:`tuntap_cffi.TunTapError`
  subclass (it is an ``Error.DeviceBusyError``, ``Error.DeviceNotFoundError``
  ...: ``except DeviceBusyError`` works; an EAGAIN read is also a
  ``BlockingIOError``), with tuntap_cffi's explanatory error chained as
  ``__cause__``; and an argument error is :class:`ArgumentError`, an
  ``Error`` that is also a ``ValueError``, raised before any system call.
  Wrong argument types raise ``TypeError``, as in pytun.
- ``copy.copy``, ``copy.deepcopy`` and ``pickle`` raise pytun's
  ``TypeError("cannot pickle 'pytun.TunTapDevice' object")``: a copy would
  share the fd and close it when collected.

Deliberate differences from pytun, each where pytun's behaviour is an
accident of its C code:

- The fd is opened ``O_CLOEXEC`` (Python's own files are non-inheritable
  since PEP 446); pytun's is inherited by exec'd programs.
- ``read()`` retries ``EINTR`` (Python's own I/O does since PEP 475), where
  pytun raises ``Error(EINTR)`` when the signal handler returned normally.
  An exception the handler raises (``KeyboardInterrupt``, ``TimeoutError``
  from an alarm, any ``OSError``) reaches the caller unchanged, as through
  pytun: only this library's own errors become :class:`Error`.
- ``write()`` takes any bytes-like object; pytun refuses bytearray and
  memoryview.  A ``str`` is written UTF-8 encoded, as pytun does.
- ``mtu`` refuses values outside a C ``int`` with ``OverflowError``; pytun
  silently truncates them (``2**33 + 1400`` sets 1400).
- Interface names must be ASCII and printable (pytun passes UTF-8 bytes on);
  names the kernel would refuse (``"a/b"``, ``"."``, a bad ``%`` template)
  raise ``ArgumentError(EINVAL, ...)`` before the system call, with the
  ``args`` pytun's kernel error has.
- ``del tun.addr`` raises ``AttributeError`` (pytun: ``SystemError``).
- A read takes a whole packet (into 65 KiB buffers) and returns its first
  *size* bytes.  A packet larger than that cannot occur unless a program
  raises the virtio-net header size (``TUNSETVNETHDRSZ``) to kilobytes.
  On CPython, until ``fileno()`` is first called, reads take queued
  packets in batches and hand them out one per call (see
  :class:`TunTapDevice`); the fd is O_NONBLOCK until then (nobody else can
  see it), blocking after.  The one visible trace: a program that reads
  before it first asks for the fd, and then waits on the fd, can find it
  quiet while packets read ahead wait here (its next ``read`` returns
  them, in order).  Ask for the fd first (``select`` does) and every read
  is one ``read()``.
- One ``AF_INET`` socket per device serves the attribute ioctls (pytun
  opens one per access); it is closed by ``close()``, after which each
  access opens its own, as pytun's do.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import operator
import os
import select
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NoReturn, Optional, Tuple, Type, cast

from . import _backend
from ._linux import backend as _linux
from ._validate import check_name
from .device import Device
from .ring import PacketRing
from ._syscalls import close_quietly, ffi, lib, open_cloexec
from .errors import (
    DeviceBusyError,
    DeviceClosedError,
    DeviceNotFoundError,
    DeviceNotReadyError,
    DevicesExhaustedError,
    InvalidPacketError,
    TunTapError,
    TunTapPermissionError,
    UnsupportedPlatformError,
    error_from_errno,
)

if TYPE_CHECKING:  # pragma: no cover
    from typing import SupportsIndex

    from _typeshed import ReadableBuffer

__all__ = [
    "TunTapDevice",
    "Error",
    "ArgumentError",
    "IFF_TUN",
    "IFF_TAP",
    "IFF_NO_PI",
    "IFF_ONE_QUEUE",
    "IFF_VNET_HDR",
    "IFF_TUN_EXCL",
    "IFF_MULTI_QUEUE",
]

# The constants pytun exports, with <linux/if_tun.h>'s values.
IFF_TUN: int = lib.IFF_TUN
IFF_TAP: int = lib.IFF_TAP
IFF_NO_PI: int = lib.IFF_NO_PI
IFF_ONE_QUEUE: int = lib.IFF_ONE_QUEUE
IFF_VNET_HDR: int = lib.IFF_VNET_HDR
IFF_TUN_EXCL: int = lib.IFF_TUN_EXCL
IFF_MULTI_QUEUE: int = lib.IFF_MULTI_QUEUE

_DEFAULT_DEV = "/dev/net/tun"
_IFNAMSIZ = 16
_ETH_ALEN = 6
_PI_LEN = 4
_C_INT_MAX = 2**31 - 1
# A 64 KiB GSO packet plus every header the kernel can put before it
# (tun_pi, a virtio-net header, Ethernet and one VLAN tag).
_READ_BUFFER_SIZE = 65536 + 1024


# ------------------------------------------------------------------- errors


class Error(OSError):
    """pytun's exception: every failure of this module.

    ``args`` is ``(errno, strerror)`` when a system call failed (``errno``
    and ``strerror`` are set, as for ``OSError``) and ``(message,)`` when the
    module refused an argument itself (``errno`` is then None, except for
    interface names the kernel would refuse, which carry ``EINVAL`` exactly
    as pytun's kernel error does).
    """


class ArgumentError(Error, ValueError):
    """An argument pytun refuses with ``Error``: raised before any system call, also a ValueError."""


def _flavour(base: Type[OSError]) -> Type[Error]:
    """Return ``Error.<base name>``: an ``Error`` subclass that is also *base*."""
    # OSError.__init__ restores plain (errno, strerror) construction for bases
    # that take other arguments (DeviceClosedError takes a name).
    namespace = {
        "__init__": OSError.__init__,
        "__module__": __name__,
        "__qualname__": f"Error.{base.__name__}",  # found by pickle, shown in tracebacks
        "__doc__": f"pytun's Error that is also a {base.__name__}.",
    }
    flavour = cast(Type[Error], type(base.__name__, (Error, base), namespace))
    setattr(Error, base.__name__, flavour)
    return flavour


# tuntap_cffi's error classes (and BlockingIOError) -> their pytun flavour.
_FLAVOURS: Dict[type, Type[Error]] = {
    base: _flavour(base)
    for base in (
        TunTapPermissionError,
        DeviceNotFoundError,
        InvalidPacketError,
        DeviceClosedError,
        DeviceBusyError,
        DevicesExhaustedError,
        DeviceNotReadyError,
        UnsupportedPlatformError,
        TunTapError,
        BlockingIOError,
    )
}


def _pytun_error(exc: OSError) -> Error:
    """Turn a tuntap_cffi error into pytun's shape: ``Error(errno, strerror)``, same class family."""
    err = exc.errno
    if err is None:
        return Error(*exc.args)
    for klass in type(exc).__mro__:
        flavour = _FLAVOURS.get(klass)
        if flavour is not None:
            return flavour(err, os.strerror(err))
    return Error(err, os.strerror(err))


@contextlib.contextmanager
def _as_pytun_errors() -> Iterator[None]:
    """Re-raise tuntap_cffi's own errors as pytun's :class:`Error` (chained).

    Only :class:`TunTapError`: any other exception, above all one a signal
    handler raised while a system call was retried (``TimeoutError`` from
    a SIGALRM handler...), passes unchanged, as it does through pytun.
    """
    try:
        yield
    except TunTapError as exc:
        raise _pytun_error(exc) from exc


def _syscall_error(err: int, op: str, name: str, what: str) -> Error:
    """pytun's Error for errno *err* of a failed read/write, with tuntap_cffi's explanation as its cause."""
    exc = error_from_errno(err, op, name, what)
    error = _pytun_error(exc)
    error.__cause__, error.__suppress_context__ = exc, True  # as `raise error from exc` would
    return error


def _closed_error(name: str) -> Error:
    """``Error(EBADF)``, also a DeviceClosedError: what a closed device's read/write raises."""
    exc = DeviceClosedError(name)
    error = _pytun_error(exc)
    error.__cause__, error.__suppress_context__ = exc, True  # as `raise error from exc` would
    return error


# ------------------------------------------------------- argument checking


def _check_flag(method: str, flag: object) -> bool:
    """pytun's methods take a real bool (``O!`` with ``PyBool_Type``)."""
    if not isinstance(flag, bool):
        raise TypeError(f"{method}() argument 1 must be bool, not {type(flag).__name__}")
    return flag


def _check_text(what: str, value: object) -> str:
    """A str without NUL (what pytun's ``s`` argument format accepts)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("embedded null character")
    return value


def _check_flags(flags: object) -> int:
    """Check the TUNSETIFF flags as pytun does; return them as ``ifr_flags`` (a C short) holds them."""
    value = operator.index(flags)  # type: ignore[arg-type]  # TypeError for non-integers, as pytun
    if not -_C_INT_MAX - 1 <= value <= _C_INT_MAX:
        raise OverflowError(f"signed integer is {'greater than maximum' if value > 0 else 'less than minimum'}")
    if not value & (IFF_TUN | IFF_TAP):
        raise ArgumentError("Bad flags: either IFF_TUN or IFF_TAP must be set")
    if value & IFF_TUN and value & IFF_TAP:
        raise ArgumentError("Bad flags: IFF_TUN and IFF_TAP could not both be set")
    return value & 0xFFFF


def _check_ifname(name: object) -> str:
    """Check an interface name: pytun's length check, then what the kernel refuses (as EINVAL)."""
    name = _check_text("name", name)
    if len(name.encode()) >= _IFNAMSIZ:
        raise ArgumentError("Interface name too long")
    if not name.isascii():
        raise ArgumentError(f"Interface name {name!r} is not ASCII (tuntap_cffi needs ASCII names)")
    try:
        return check_name(name)
    except ValueError as exc:  # the kernel would answer EINVAL, which is what pytun shows
        raise ArgumentError(errno.EINVAL, os.strerror(errno.EINVAL)) from exc


def _parse_ipv4(value: object) -> bytes:
    """Parse an address as pytun does: ASCII str, C string up to a NUL, ``inet_aton`` rules."""
    if not isinstance(value, str):
        raise TypeError(f"an IPv4 address must be str, not {type(value).__name__}")
    value.encode("ascii")  # UnicodeEncodeError (a ValueError) for non-ASCII, as pytun
    try:
        return socket.inet_aton(value.split("\0", 1)[0])
    except OSError:
        raise ArgumentError("Bad IP address") from None


# ------------------------------------------------------ interface ioctls


@contextlib.contextmanager
def _inet_socket() -> Iterator[int]:
    """A fresh AF_INET socket, closed afterwards (pytun makes one per access; we, after close())."""
    fd = _linux.inet_socket()
    try:
        yield fd
    finally:
        close_quietly(fd)


# ------------------------------------------------------------------ device

# The per-packet C calls as module globals (a global load is the cheapest lookup).
_read = lib.read
_write = lib.write
_ioctl_call = lib.ioctl
_unpack = ffi.unpack
_SIOCGIFMTU = lib.SIOCGIFMTU
_CTL_UNOPENED = -1  # TunTapDevice._ctl before the first attribute access
_CTL_CLOSED = -2  # ... after close(): each access opens a socket of its own, as pytun does
# Read-ahead ring: slots hold the largest packet (no MTU lookup per batch, no
# packet cut when the MTU changes).  A batch costs ~6 us beside its packets
# (measured), so the ring starts small and doubles each time a batch fills it,
# up to 128 slots (8.5 MB, which io_uring pins): only a busy device pays for that.
_AHEAD_FIRST_SLOTS = 16
_AHEAD_MAX_SLOTS = 128
# On PyPy a read() through cffi is JIT-compiled to little more than the system
# call, and read-ahead only adds (a drain, CPU ns per packet: 1154 read ahead,
# 984 one read() each; C pytun through cpyext 2338): CPython only.
_READ_AHEAD = sys.implementation.name == "cpython"


def _write_buffer(data: object) -> Any:
    """A cffi view of a bytes-like *data* for write(); TypeError for anything else."""
    try:
        return ffi.from_buffer(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}") from None


class TunTapDevice:
    """TunTapDevice(name='', flags=IFF_TUN, dev='/dev/net/tun') -> TUN/TAP device object.

    Creates the interface (or attaches to a persistent one); *name* may be
    empty (the kernel picks ``tunN``/``tapN``) or hold one ``%d``.  Raises
    :class:`Error` on failure.

    Reading, and why it is shaped so (pytun's ``read(size)`` allocates a new
    bytes object per call anyway, so packets may as well come in batches):

    - On CPython, until the program first calls :meth:`fileno` (directly,
      or through select/poll/asyncio, which call it), nobody but this
      object can see the fd, so nobody can wait on it: it is kept
      O_NONBLOCK and ``read``
      takes what is queued, up to a ring's worth (16 packets, doubling
      while the queue fills the ring, up to 128), at once
      (``Device.read_batch``, io_uring) into a private queue of bytes
      objects, then hands them out one per call, in order; with nothing
      queued it waits in ``poll()``.
    - ``fileno()`` ends that for good: under the read lock (no batch is
      running), the fd is made blocking, as pytun's, and from then on each
      ``read`` first hands out what the private queue still holds, then
      reads one packet with one ``read()`` system call, so a program that
      polls the fd never waits on packets held here that the fd no longer
      shows.  Only a program that reads before it first asks for the fd
      and then polls can find the fd quiet while such leftovers wait:
      its next ``read`` returns them in order.
    - On PyPy every read is one ``read()`` (see _READ_AHEAD): the fd is
      blocking from the start.
    """

    # No __dict__, as pytun's C type: assigning a misspelt attribute fails.
    __slots__ = ("_dev", "_fd", "_name", "_flags", "_buffers", "_read_lock", "_shared", "_pending",
                 "_ring", "_slot_ptrs", "_pollfd", "_ctl", "_ctl_lock", "_mtu_ifr")

    _dev: Device
    _fd: int  # the read/write path calls libc on it directly; -1 once closed
    _name: str
    _flags: int
    # Buffers of one-packet reads (after fileno()), taken with pop() and given
    # back with append(): atomic, so concurrent readers never share one, and
    # cheaper than a lock (a `with lock:` costs CPython ~200 ns, measured).
    _buffers: List[Any]
    _read_lock: threading.Lock  # one read-ahead batch at a time; fileno() waits for it
    _shared: bool  # fileno() was handed out: no read-ahead any more
    _pending: "collections.deque[bytes]"  # packets read ahead, oldest first
    _ring: Optional[PacketRing]
    _slot_ptrs: List[Any]  # char * to each slot of _ring
    _pollfd: Any  # struct pollfd[1] for waiting while nothing is queued
    _ctl: int  # AF_INET socket for interface ioctls, or _CTL_UNOPENED/_CTL_CLOSED
    _ctl_lock: threading.Lock  # guards _ctl's number against close() and _mtu_ifr against other getters
    _mtu_ifr: Any  # struct ifreq with the name filled in, for the mtu getter

    def __init__(self, name: str = "", flags: int = IFF_TUN, dev: str = _DEFAULT_DEV) -> None:
        name = _check_ifname(name)
        flags = _check_flags(flags)
        dev = _check_text("dev", dev)
        self._flags = flags
        self._buffers = [ffi.new("char[]", _READ_BUFFER_SIZE)]
        self._read_lock = threading.Lock()
        self._shared = False
        self._pending = collections.deque()
        self._ring = None
        self._slot_ptrs = []
        self._pollfd = ffi.new("struct pollfd[1]")
        self._pollfd[0].events = select.POLLIN
        self._ctl = _CTL_UNOPENED
        self._ctl_lock = threading.Lock()
        self._fd = -1
        with _as_pytun_errors():
            # Off Linux, before any syscall: the one UnsupportedPlatformError, as a pytun Error.
            _backend.require(_backend.Feature.PYTUN_COMPAT, name or None)
            fd, real_name = self._attach(name, flags, dev)
        # blocking=False: read_batch returns what is queued (BlockingIOError
        # when nothing is) and this class does the waiting (see the class doc).
        # everyone=True: persist() leaves owner and group unset, as pytun's.
        self._dev = Device(fd, real_name, flags, blocking=False, everyone=True)
        self._fd = fd
        self._name = real_name
        self._mtu_ifr = _linux.ifreq(real_name)
        if not _READ_AHEAD:
            self._share()  # one read() per call from the start

    @staticmethod
    def _attach(name: str, flags: int, dev: str) -> Tuple[int, str]:
        """Open *dev* (O_NONBLOCK until fileno(), see the class doc) and ``TUNSETIFF``; return (fd, name)."""
        kind = "TAP" if flags & IFF_TAP else "TUN"
        fd = open_cloexec(dev, os.O_RDWR | os.O_NONBLOCK, f"cannot create {kind} device {name or '(kernel-chosen name)'}")
        try:
            return fd, _linux.set_iff(fd, name, flags, kind)
        except BaseException:
            close_quietly(fd)
            raise

    def __reduce_ex__(self, protocol: "SupportsIndex") -> NoReturn:
        """Refuse copy, deepcopy and pickle, with pytun's TypeError: a copy would share (and close) the fd."""
        # The words of CPython's refusal for pytun's C type: protocols 0 and 1
        # (copyreg) name the class alone, 2 and up with its module.
        qualified = "TunTapDevice" if operator.index(protocol) < 2 else "pytun.TunTapDevice"
        raise TypeError(f"cannot pickle {qualified!r} object")

    def __del__(self) -> None:
        # pytun closes the fd when the object goes away, without a warning.
        if getattr(self, "_dev", None) is None:
            return
        try:
            self.close()
        except ImportError:
            # At interpreter exit Device.close() cannot import what it imports
            # lazily (sys.meta_path is gone); the device is marked closed by
            # then and the kernel closes the fd as the process ends.  pytun
            # prints nothing there, so neither do we.
            if not sys.is_finalizing():
                raise

    # ------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        """The interface name (read-only, as in pytun)."""
        return self._name

    def fileno(self) -> int:
        """Return the file descriptor (blocking, as pytun's); -1 once closed.

        The first call ends read-ahead (see the class doc).
        """
        if not self._shared:
            self._share()
        return self._fd

    def _share(self) -> None:
        """Hand the fd out for good: no batch runs, none will; the fd blocks, as pytun's."""
        with self._read_lock:
            if not self._shared:
                if self._fd >= 0:
                    os.set_blocking(self._fd, True)
                self._shared = True

    def close(self) -> None:
        """Close the device; a non-persistent interface disappears.  Idempotent."""
        self._fd = -1  # reads and writes from now on fail with EBADF, as pytun's
        self._pending.clear()  # what the kernel queue held goes with it, as pytun's
        self._dev.close()
        with self._ctl_lock:
            if self._ctl >= 0:
                close_quietly(self._ctl)
            self._ctl = _CTL_CLOSED
        if self._read_lock.acquire(blocking=False):  # else a reader is inside: the GC frees the ring
            try:
                if self._ring is not None:
                    self._ring.close()
                    self._ring, self._slot_ptrs = None, []
            finally:
                self._read_lock.release()

    # ------------------------------------------------------------- packets

    def read(self, size: int, /) -> bytes:
        """Read one packet and return at most *size* bytes of it, as the kernel truncates.

        Blocks until a packet arrives (unless the program made the fd
        non-blocking: then ``Error(EAGAIN)``, also a ``BlockingIOError``).
        The packet is read whole and its first *size* bytes are returned:
        exactly what the kernel returns for a *size*-byte read, including
        pytun's corner cases, which are reproduced here: *size* is an
        unsigned 32-bit C int (``-1`` reads a whole packet), ``read(0)``
        returns ``b""`` without consuming a packet, a truncated packet has
        ``TUN_PKT_STRIP`` set in its ``tun_pi`` flags, and a *size* smaller
        than the headers (``tun_pi``, virtio-net) consumes the packet and
        raises ``Error(EINVAL)``.  See the class doc for read-ahead.
        """
        if size.__class__ is not int or not 0 < size <= 0xFFFFFFFF:
            size = operator.index(size) & 0xFFFFFFFF  # pytun's "I" format masks, it does not check
            if not size:
                if self._fd < 0:
                    raise _closed_error(self._name)
                return b""
        pending = self._pending
        while True:
            if pending:
                try:
                    packet = pending.popleft()  # atomic: concurrent readers get each packet once
                    break
                except IndexError:  # another thread took the last one
                    continue
            if not self._shared:
                self._read_ahead()
                continue
            if pending:  # a batch that ended just before fileno(): its packets come first
                continue
            buffers = self._buffers
            try:
                buf = buffers.pop()
            except IndexError:  # other threads are reading into the others
                buf = ffi.new("char[]", _READ_BUFFER_SIZE)
            try:
                n: int = _read(self._fd, buf, _READ_BUFFER_SIZE)
                if n <= 0:
                    n = self._read_again(n, buf)
                packet = _unpack(buf, n)
            finally:
                buffers.append(buf)
            break
        if len(packet) <= size:
            return packet
        return self._truncated(packet, size)

    def _read_ahead(self) -> None:
        """Move every queued packet into the private queue, or wait in poll() for one (read() retries)."""
        with self._read_lock:
            if self._shared or self._pending:  # fileno() was called, or another reader filled it
                return
            if self._fd < 0:
                raise _closed_error(self._name)
            ring = self._ring
            if ring is None:
                ring = self._new_ring(_AHEAD_FIRST_SLOTS)
            try:
                count = self._dev.read_batch(ring)
            except BlockingIOError:
                count = 0
            except TunTapError as exc:  # DeviceClosedError when closed meanwhile, or the kernel's error
                raise _pytun_error(exc) from exc
            if count:
                start = ring.start
                ptrs = self._slot_ptrs
                # bytes per packet, by C calls only (map over the lengths).
                self._pending.extend(map(_unpack, ptrs[start:] + ptrs[:start] if start else ptrs, ring.lengths))
                if count == ring.slots < _AHEAD_MAX_SLOTS:  # the queue outran the ring: a bigger one next time
                    self._new_ring(ring.slots * 2)
                return
        self._wait_readable()

    def _new_ring(self, slots: int) -> PacketRing:
        """Read ahead into a ring of *slots* from now on (the old one and its engine go with the GC)."""
        ring = self._ring = PacketRing(slots, _READ_BUFFER_SIZE)
        base = ffi.cast("char *", ring.slot_address(0))
        self._slot_ptrs = [base + i * _READ_BUFFER_SIZE for i in range(slots)]
        return ring

    def _wait_readable(self) -> None:
        """Sleep in poll() until the fd has a packet (or a signal: the caller retries; a handler's exception passes)."""
        pollfd = self._pollfd
        fd = self._fd
        if fd < 0:
            raise _closed_error(self._name)
        pollfd[0].fd = fd
        lib.poll(pollfd, 1, -1)

    def _read_again(self, n: int, buf: Any) -> int:
        """A read into *buf* that returned *n* <= 0: retry EINTR, else raise pytun's Error.

        Nothing here catches exceptions: one raised by a signal handler
        (which runs between the retries) reaches the caller as it was raised.
        """
        while n < 0:
            err = ffi.errno
            if self._fd < 0:
                raise _closed_error(self._name)
            if err != errno.EINTR:
                raise _syscall_error(err, "read", self._name, f"read from {self._name} failed")
            n = _read(self._fd, buf, _READ_BUFFER_SIZE)
        if n == 0 and self._fd < 0:  # closed while we read: the number now reads /dev/null
            raise _closed_error(self._name)
        return n

    def _truncated(self, packet: bytes, size: int) -> bytes:
        """What a *size*-byte read of the whole *packet* returns (``tun_put_user``)."""
        header = 0 if self._flags & IFF_NO_PI else _PI_LEN
        if self._flags & IFF_VNET_HDR:
            header += self._vnet_hdr_size()
        if size < header:
            # tun_put_user: EINVAL when the header does not fit; the packet is dropped.
            err = error_from_errno(errno.EINVAL, "read", self._name, f"a {size}-byte read cannot hold the packet headers of {self._name}")
            raise _pytun_error(err) from err
        out = bytearray(packet[:size])
        if not self._flags & IFF_NO_PI:
            # tun_pi.flags (host order) gets TUN_PKT_STRIP when the packet is cut.
            pi_flags = int.from_bytes(out[0:2], sys.byteorder) | lib.TUN_PKT_STRIP
            out[0:2] = pi_flags.to_bytes(2, sys.byteorder)
        return bytes(out)

    def _vnet_hdr_size(self) -> int:
        with _as_pytun_errors():
            return _linux.get_vnet_hdr_size(self._dev.fileno(), self._name)

    def write(self, data: "ReadableBuffer", /) -> int:
        """Write one packet (any bytes-like object; a str as UTF-8, as pytun); return the bytes written."""
        if type(data) is not bytes:
            data = data.encode() if isinstance(data, str) else _write_buffer(data)
        n: int = _write(self._fd, data, len(data))
        if n >= 0:
            return n
        return self._write_again(data)

    def _write_again(self, data: Any) -> int:
        """A write that failed: retry EINTR, else raise pytun's Error (no exception is caught here)."""
        while True:
            err = ffi.errno
            if self._fd < 0:
                raise _closed_error(self._name)
            if err != errno.EINTR:
                raise _syscall_error(err, "write", self._name, f"write to {self._name} failed")
            n: int = _write(self._fd, data, len(data))
            if n >= 0:
                return n

    # ------------------------------------------------------- control socket

    @contextlib.contextmanager
    def _control(self) -> Iterator[int]:
        """The socket for interface ioctls, under its lock: the device's own, made once; after close() a fresh one."""
        with self._ctl_lock:
            if self._ctl == _CTL_CLOSED:
                with _inet_socket() as sock:
                    yield sock
                return
            if self._ctl < 0:
                self._ctl = _linux.inet_socket()
            yield self._ctl

    # ------------------------------------------------------- device control

    def persist(self, flag: bool = True, /) -> None:
        """Make the interface persistent (``TUNSETPERSIST``) if *flag*, else non-persistent.

        As pytun's, it sets no owner: a persistent interface made here is
        open to every user who can open /dev/net/tun (programs that create
        it as root for an unprivileged user to attach rely on that).  Use
        ``tuntap_cffi.open_tun(name, persist=True)``, which gives it an
        owner, where that is not wanted.
        """
        on = _check_flag("persist", flag)
        with _as_pytun_errors():
            self._dev.persistent = on

    def mq_attach(self, flag: bool = True, /) -> None:
        """Attach (True) or detach (False) this queue of a multi-queue device (``TUNSETQUEUE``)."""
        attach = _check_flag("mq_attach", flag)
        with _as_pytun_errors():
            _linux.set_queue(self._dev.fileno(), self.name, attach)

    def up(self) -> None:
        """Bring the interface up (``SIOCSIFFLAGS``); harmless if it is up."""
        self._set_up(True)

    def down(self) -> None:
        """Bring the interface down; harmless if it is down."""
        self._set_up(False)

    def _set_up(self, on: bool) -> None:
        name = self._name
        with _as_pytun_errors(), self._control() as sock:
            flags = _linux.get_link_flags(sock, name)
            if bool(flags & lib.IFF_UP) != on:
                _linux.set_link_flags(sock, name, flags | lib.IFF_UP if on else flags & ~lib.IFF_UP)

    # ------------------------------------------------------------ attributes

    @property
    def addr(self) -> str:
        """The interface's IPv4 address (``SIOCGIFADDR``/``SIOCSIFADDR``), e.g. ``"10.8.0.1"``."""
        with _as_pytun_errors(), self._control() as sock:
            return _linux.get_inet(sock, self._name, "addr")

    @addr.setter
    def addr(self, value: str) -> None:
        packed = _parse_ipv4(value)
        with _as_pytun_errors(), self._control() as sock:
            _linux.set_inet(sock, self._name, "addr", packed)

    @property
    def dstaddr(self) -> str:
        """The point-to-point peer address (``SIOCGIFDSTADDR``/``SIOCSIFDSTADDR``)."""
        with _as_pytun_errors(), self._control() as sock:
            return _linux.get_inet(sock, self._name, "dstaddr")

    @dstaddr.setter
    def dstaddr(self, value: str) -> None:
        packed = _parse_ipv4(value)
        with _as_pytun_errors(), self._control() as sock:
            _linux.set_inet(sock, self._name, "dstaddr", packed)

    @property
    def netmask(self) -> str:
        """The netmask of the address (``SIOCGIFNETMASK``/``SIOCSIFNETMASK``), e.g. ``"255.255.255.0"``."""
        with _as_pytun_errors(), self._control() as sock:
            return _linux.get_inet(sock, self._name, "netmask")

    @netmask.setter
    def netmask(self, value: str) -> None:
        packed = _parse_ipv4(value)
        with _as_pytun_errors(), self._control() as sock:
            _linux.set_inet(sock, self._name, "netmask", packed)

    @property
    def hwaddr(self) -> bytes:
        """The 6-byte hardware address (``SIOCGIFHWADDR``); zeros on a TUN.  Settable on a TAP."""
        with _as_pytun_errors(), self._control() as sock:
            return _linux.get_hwaddr(sock, self._name)

    @hwaddr.setter
    def hwaddr(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"expected bytes, {type(value).__name__} found")
        if len(value) != _ETH_ALEN:
            raise ArgumentError("Bad MAC address")
        with _as_pytun_errors(), self._control() as sock:
            _linux.set_hwaddr(sock, self._name, value)

    @property
    def mtu(self) -> int:
        """The interface MTU (``SIOCGIFMTU``/``SIOCSIFMTU``)."""
        # Programs call read(tun.mtu) per packet: one ioctl on the kept
        # socket with a kept ifreq; anything unusual takes the general path.
        ifr = self._mtu_ifr
        with self._ctl_lock:
            if _ioctl_call(self._ctl, _SIOCGIFMTU, ifr) >= 0:
                mtu: int = ifr.ifr_mtu
                return mtu
        with _as_pytun_errors(), self._control() as sock:
            return _linux.get_int(sock, self._name, "mtu")

    @mtu.setter
    def mtu(self, value: int) -> None:
        mtu = operator.index(value)
        if mtu <= 0:
            raise ArgumentError("Bad MTU, should be > 0")
        if mtu > _C_INT_MAX:
            raise OverflowError("Python int too large to convert to C int")
        with _as_pytun_errors(), self._control() as sock:
            _linux.set_int(sock, self._name, "mtu", mtu)
