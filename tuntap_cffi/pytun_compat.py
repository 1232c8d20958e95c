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
  strings set and read with ``SIOCSIFADDR`` & co. on a fresh ``AF_INET``
  socket per access (those ioctls exist only on IPv4 sockets), so setting
  ``addr`` on a TUN gives a /32 and ``netmask`` widens it afterwards; input
  is parsed by ``inet_aton`` (``"10.1"`` is 10.0.0.1).  ``hwaddr`` is 6
  bytes (all zero on a TUN), ``mtu`` an int.  Like pytun, these work by
  interface name, also after ``close()`` while the interface exists.
- ``read(size)`` returns at most *size* bytes of one packet, as the kernel
  truncates: see :meth:`TunTapDevice.read`.  ``write(data)`` returns the
  bytes written.  ``fileno()`` is -1 once closed.  ``persist(flag=True)``
  and ``mq_attach(flag=True)`` take a bool, positionally.
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
- A read consumes one packet into a private 65 KiB buffer (one per device,
  behind a lock, so concurrent readers are safe) and returns its first
  *size* bytes.  A packet larger than that buffer cannot occur unless a
  program raises the virtio-net header size (``TUNSETVNETHDRSZ``) to
  kilobytes.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, NoReturn, Optional, Tuple, Type, cast

from . import _backend, _ioctl, _linux
from .device import Device, _check_name
from ._syscalls import check, close_quietly, ffi, lib, open_cloexec
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
        return _check_name(name)
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
    """A fresh AF_INET datagram socket for interface ioctls (pytun makes one per call)."""
    fd = check(
        lib.socket,
        socket.AF_INET,
        socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
        0,
        op="socket",
        what="cannot open an AF_INET socket for interface ioctls",
    )
    try:
        yield fd
    finally:
        close_quietly(fd)


# attribute: (get request, set request, ifreq member)
_INET_FIELDS: Dict[str, Tuple[int, int, str]] = {
    "addr": (lib.SIOCGIFADDR, lib.SIOCSIFADDR, "ifr_addr"),
    "dstaddr": (lib.SIOCGIFDSTADDR, lib.SIOCSIFDSTADDR, "ifr_dstaddr"),
    "netmask": (lib.SIOCGIFNETMASK, lib.SIOCSIFNETMASK, "ifr_netmask"),
}


def _get_inet(name: str, field: str) -> str:
    """``SIOCGIF{ADDR,DSTADDR,NETMASK}``: the interface's IPv4 address field, dotted."""
    request, _, member = _INET_FIELDS[field]
    ifr = _linux._ifreq(name)
    with _as_pytun_errors(), _inet_socket() as sock:
        check(lib.ioctl, sock, request, ifr, op="ioctl", name=name, what=f"cannot read the {field} of {name}")
    sin = ffi.cast("struct sockaddr_in *", ffi.addressof(ifr[0], member))
    return socket.inet_ntoa(bytes(ffi.buffer(ffi.addressof(sin[0], "sin_addr"), 4)))


def _set_inet(name: str, field: str, packed: bytes) -> None:
    """``SIOCSIF{ADDR,DSTADDR,NETMASK}`` with an AF_INET sockaddr holding *packed*."""
    _, request, member = _INET_FIELDS[field]
    ifr = _linux._ifreq(name)
    sin = ffi.cast("struct sockaddr_in *", ffi.addressof(ifr[0], member))
    sin.sin_family = socket.AF_INET
    ffi.memmove(ffi.addressof(sin[0], "sin_addr"), packed, 4)
    what = f"cannot set the {field} of {name} to {socket.inet_ntoa(packed)}"
    with _as_pytun_errors(), _inet_socket() as sock:
        check(lib.ioctl, sock, request, ifr, op="ioctl", name=name, what=what)


# ------------------------------------------------------------------ device

# The per-packet C calls as module globals (a global load is the cheapest lookup).
_read = lib.read
_write = lib.write


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
    """

    # No __dict__, as pytun's C type: assigning a misspelt attribute fails.
    __slots__ = ("_dev", "_fd", "_name", "_flags", "_buf", "_ptr", "_view", "_read_lock")

    _dev: Device
    _fd: int  # the read/write path calls libc on it directly; -1 once closed
    _name: str
    _flags: int
    _buf: bytearray
    _ptr: Any  # cffi pointer into _buf, made once
    _view: memoryview
    _read_lock: threading.Lock

    def __init__(self, name: str = "", flags: int = IFF_TUN, dev: str = _DEFAULT_DEV) -> None:
        name = _check_ifname(name)
        flags = _check_flags(flags)
        dev = _check_text("dev", dev)
        self._flags = flags
        self._buf = bytearray(_READ_BUFFER_SIZE)
        self._ptr = ffi.from_buffer(self._buf)
        self._view = memoryview(self._buf)
        self._read_lock = threading.Lock()
        self._fd = -1
        with _as_pytun_errors():
            _backend.current()  # UnsupportedPlatformError off Linux
            fd, real_name = self._attach(name, flags, dev)
        # blocking=False: the fd itself blocks (as pytun's does), so the
        # Device never waits in poll(); an EAGAIN reaches the caller.
        self._dev = Device(fd, real_name, flags, blocking=False)
        self._fd = fd
        self._name = real_name

    @staticmethod
    def _attach(name: str, flags: int, dev: str) -> Tuple[int, str]:
        """Open *dev* (blocking, as pytun) and ``TUNSETIFF``; return (fd, interface name)."""
        kind = "TAP" if flags & IFF_TAP else "TUN"
        what = f"cannot create {kind} device {name or '(kernel-chosen name)'}"
        fd = open_cloexec(dev, os.O_RDWR, what)
        try:
            ifr = _linux._ifreq(name)
            ifr.ifr_flags = _linux._short(flags)
            op = "create_template" if "%" in name else "create"
            check(lib.ioctl, fd, _ioctl.TUNSETIFF, ifr, op=op, name=name or None, what=what)
            return fd, ffi.string(ifr.ifr_name).decode("ascii")
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
        dev: Optional[Device] = getattr(self, "_dev", None)
        if dev is not None:
            dev.close()

    # ------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        """The interface name (read-only, as in pytun)."""
        return self._name

    def fileno(self) -> int:
        """Return the file descriptor (blocking, as pytun's); -1 once closed."""
        dev = self._dev
        return -1 if dev.closed else dev.fileno()

    def close(self) -> None:
        """Close the device; a non-persistent interface disappears.  Idempotent."""
        self._fd = -1  # reads and writes from now on fail with EBADF, as pytun's
        self._dev.close()

    # ------------------------------------------------------------- packets

    def read(self, size: int, /) -> bytes:
        """Read one packet and return at most *size* bytes of it, as the kernel truncates.

        Blocks until a packet arrives (unless the program made the fd
        non-blocking: then ``Error(EAGAIN)``, also a ``BlockingIOError``).
        The packet is read whole into the device's buffer and the first
        *size* bytes are returned: exactly what the kernel returns for a
        *size*-byte read, including pytun's corner cases, which are
        reproduced here: *size* is an unsigned 32-bit C int (``-1`` reads a
        whole packet), ``read(0)`` returns ``b""`` without consuming a
        packet, a truncated packet has ``TUN_PKT_STRIP`` set in its
        ``tun_pi`` flags, and a *size* smaller than the headers
        (``tun_pi``, virtio-net) consumes the packet and raises
        ``Error(EINVAL)``.
        """
        size = operator.index(size) & 0xFFFFFFFF  # pytun's "I" format masks, it does not check
        if size == 0:
            if self._fd < 0:
                raise _closed_error(self._name)
            return b""
        with self._read_lock:  # the buffer is shared: one reader at a time
            n: int = _read(self._fd, self._ptr, _READ_BUFFER_SIZE)
            if n <= 0:
                n = self._read_again(n)
            if n <= size:
                return bytes(self._view[:n])
            return self._truncated(n, size)

    def _read_again(self, n: int) -> int:
        """A read that returned *n* <= 0: retry EINTR, else raise pytun's Error (under the read lock).

        Nothing here catches exceptions: one raised by a signal handler
        (which runs between the retries) reaches the caller as it was raised.
        """
        while n < 0:
            err = ffi.errno
            if self._fd < 0:
                raise _closed_error(self._name)
            if err != errno.EINTR:
                raise _syscall_error(err, "read", self._name, f"read from {self._name} failed")
            n = _read(self._fd, self._ptr, _READ_BUFFER_SIZE)
        if n == 0 and self._fd < 0:  # closed while we read: the number now reads /dev/null
            raise _closed_error(self._name)
        return n

    def _truncated(self, n: int, size: int) -> bytes:
        """What a *size*-byte read of the *n*-byte packet in the buffer returns (``tun_put_user``)."""
        header = 0 if self._flags & IFF_NO_PI else _PI_LEN
        if self._flags & IFF_VNET_HDR:
            header += self._vnet_hdr_size()
        if size < header:
            # tun_put_user: EINVAL when the header does not fit; the packet is dropped.
            err = error_from_errno(errno.EINVAL, "read", self.name, f"a {size}-byte read cannot hold the packet headers of {self.name}")
            raise _pytun_error(err) from err
        out = bytearray(self._view[:size])
        if not self._flags & IFF_NO_PI:
            # tun_pi.flags (host order) gets TUN_PKT_STRIP when the packet is cut.
            pi_flags = int.from_bytes(out[0:2], sys.byteorder) | lib.TUN_PKT_STRIP
            out[0:2] = pi_flags.to_bytes(2, sys.byteorder)
        return bytes(out)

    def _vnet_hdr_size(self) -> int:
        size = ffi.new("int *")
        with _as_pytun_errors():
            check(lib.ioctl, self._dev.fileno(), _ioctl.TUNGETVNETHDRSZ, size, op="ioctl", name=self.name)
        value: int = size[0]
        return value

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

    # ------------------------------------------------------- device control

    def persist(self, flag: bool = True, /) -> None:
        """Make the interface persistent (``TUNSETPERSIST``) if *flag*, else non-persistent."""
        on = _check_flag("persist", flag)
        with _as_pytun_errors():
            self._dev.persistent = on

    def mq_attach(self, flag: bool = True, /) -> None:
        """Attach (True) or detach (False) this queue of a multi-queue device (``TUNSETQUEUE``)."""
        attach = _check_flag("mq_attach", flag)
        ifr = ffi.new("struct ifreq *")
        ifr.ifr_flags = lib.IFF_ATTACH_QUEUE if attach else lib.IFF_DETACH_QUEUE
        what = f"cannot {'attach' if attach else 'detach'} this queue of {self.name}"
        with _as_pytun_errors():
            check(lib.ioctl, self._dev.fileno(), _ioctl.TUNSETQUEUE, ifr, op="ioctl", name=self.name, what=what)

    def up(self) -> None:
        """Bring the interface up (``SIOCSIFFLAGS``); harmless if it is up."""
        self._set_up(True)

    def down(self) -> None:
        """Bring the interface down; harmless if it is down."""
        self._set_up(False)

    def _set_up(self, on: bool) -> None:
        name = self.name
        with _as_pytun_errors(), _inet_socket() as sock:
            flags = _linux.get_link_flags(sock, name)
            if bool(flags & lib.IFF_UP) != on:
                _linux.set_link_flags(sock, name, flags | lib.IFF_UP if on else flags & ~lib.IFF_UP)

    # ------------------------------------------------------------ attributes

    @property
    def addr(self) -> str:
        """The interface's IPv4 address (``SIOCGIFADDR``/``SIOCSIFADDR``), e.g. ``"10.8.0.1"``."""
        return _get_inet(self.name, "addr")

    @addr.setter
    def addr(self, value: str) -> None:
        _set_inet(self.name, "addr", _parse_ipv4(value))

    @property
    def dstaddr(self) -> str:
        """The point-to-point peer address (``SIOCGIFDSTADDR``/``SIOCSIFDSTADDR``)."""
        return _get_inet(self.name, "dstaddr")

    @dstaddr.setter
    def dstaddr(self, value: str) -> None:
        _set_inet(self.name, "dstaddr", _parse_ipv4(value))

    @property
    def netmask(self) -> str:
        """The netmask of the address (``SIOCGIFNETMASK``/``SIOCSIFNETMASK``), e.g. ``"255.255.255.0"``."""
        return _get_inet(self.name, "netmask")

    @netmask.setter
    def netmask(self, value: str) -> None:
        _set_inet(self.name, "netmask", _parse_ipv4(value))

    @property
    def hwaddr(self) -> bytes:
        """The 6-byte hardware address (``SIOCGIFHWADDR``); zeros on a TUN.  Settable on a TAP."""
        name = self.name
        with _as_pytun_errors(), _inet_socket() as sock:
            return _linux.get_hwaddr(sock, name)

    @hwaddr.setter
    def hwaddr(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"expected bytes, {type(value).__name__} found")
        if len(value) != _ETH_ALEN:
            raise ArgumentError("Bad MAC address")
        name = self.name
        with _as_pytun_errors(), _inet_socket() as sock:
            _linux.set_hwaddr(sock, name, value)

    @property
    def mtu(self) -> int:
        """The interface MTU (``SIOCGIFMTU``/``SIOCSIFMTU``)."""
        name = self.name
        with _as_pytun_errors(), _inet_socket() as sock:
            return _linux.get_int(sock, name, "mtu")

    @mtu.setter
    def mtu(self, value: int) -> None:
        mtu = operator.index(value)
        if mtu <= 0:
            raise ArgumentError("Bad MTU, should be > 0")
        if mtu > _C_INT_MAX:
            raise OverflowError("Python int too large to convert to C int")
        name = self.name
        with _as_pytun_errors(), _inet_socket() as sock:
            _linux.set_int(sock, name, "mtu", mtu)
