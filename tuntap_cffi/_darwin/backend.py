"""The macOS backend's functions: utun opens and configures; the rest raise until they land.

Every function of ``_backend.Backend`` is here with its signature (mypy
checks the module against the Protocol).  :func:`open_utun` opens a TUN;
link settings, addresses and routes go through the BSD layer
(``.._bsd.netconfig``) with macOS's numbers (:func:`numbers`); the others
raise the one ``UnsupportedPlatformError`` naming macOS and the feature
they serve, before any syscall.  The functions whose feature macOS lacks
for good (persistence, queues, vnet_hdr, offloads, txqueuelen) keep
raising.

Facts that shape this module (XNU xnu-11417.101.15):

- A utun is a ``PF_SYSTEM`` datagram socket connected to the kernel control
  ``com.apple.net.utun_control``: ``CTLIOCGINFO`` turns the name into the
  control id (``ctl_ioctl``, bsd/kern/kern_control.c), ``connect`` with a
  ``sockaddr_ctl`` makes the interface, and ``getsockopt(UTUN_OPT_IFNAME)``
  names it (``utun_ctl_getopt``, bsd/net/if_utun.c).
- ``sc_unit`` 0 lets the kernel pick the first free unit, ``N + 1`` asks for
  ``utunN`` (``utun_ctl_setup``); units stop below ``ctl_maxunit`` 65536, so
  ``utun65534`` is the last name.  A taken unit is EBUSY.
- The control is ``CTL_FLAG_PRIVILEGED``: ``connect`` is EPERM unless root
  (``ctl_setup_kctl``).  There is no capability to grant instead.
- ``socket()`` on macOS has no ``SOCK_CLOEXEC``/``SOCK_NONBLOCK``: both are
  set afterwards with ``fcntl`` (bsd/sys/fcntl.h numbers below, which differ
  from Linux's ``O_NONBLOCK``).
- The libc reports macOS's errno numbers (EAGAIN 35, EMSGSIZE 40,
  EDESTADDRREQ 39, EADDRNOTAVAIL 49, ...): each is turned into the running
  OS's number for its name before it is compared with the ``errno``
  module's names or put on an exception (the simulated kernel of the tests
  runs on Linux and reports macOS's numbers): :func:`.errnos.host` on the
  packet path, the BSD layer's table (``cdefs.ERRNO``, XNU's errno.h) for
  configuration.
- utun interfaces are always point-to-point: ``utun_attach`` sets
  IFF_POINTOPOINT and ifioctl keeps it (IFF_CANTCHANGE), so knowing that
  takes no ioctl.
- Routing messages align sockaddrs to 4 bytes (``ROUNDUP32``, rtsock.c).
"""

from __future__ import annotations

import errno as _errno
from typing import Any, NoReturn, Optional, Tuple

from .._bsd import Numbers
from .._bsdbackend import BsdBackend
from .._capabilities import Feature
from ..errors import (DeviceBusyError, DevicesExhaustedError, TunTapPermissionError, UnsupportedPlatformError,
                      error_from_errno)
from . import PLATFORM, cdefs, errnos, libc, utun

__all__ = [
    "open_utun", "create", "get_iff", "set_persist", "sysfs_tun_flags", "delete_persistent", "control_socket",
    "get_link_flags", "set_link_flags", "get_int", "set_int", "get_hwaddr", "set_hwaddr",
    "set_vnet_hdr_size", "set_offload", "set_queue", "get_vnet_hdr_size", "nonblocking_cloexec",
    "get_sndbuf", "set_sndbuf", "get_link_type", "set_link_type", "attach_filter", "detach_filter",
    "numbers", "config_channel", "add_address", "remove_address", "list_addresses", "add_route", "remove_route",
    "list_routes",
    "set_carrier", "open_netns", "in_netns", "device_netns", "describe_netns", "event_source",
]


def _lacks(feature: Feature, name: Optional[str] = None) -> NoReturn:
    raise PLATFORM.unsupported(feature, name or None)


# bsd/sys/fcntl.h
F_GETFD = 1
F_SETFD = 2
F_GETFL = 3
F_SETFL = 4
FD_CLOEXEC = 1
O_RDONLY = 0
O_NONBLOCK = 0x4
O_CLOEXEC = 0x1000000

_UTUN_PREFIX = "utun"
_MAX_UNIT = 65536  # ctl_maxunit (kern_control.c): the kernel hands out units below it

_ROOT = ("utun control is privileged (CTL_FLAG_PRIVILEGED in the kernel): run as root (sudo); "
         "macOS has no capability to grant instead")


def _no_libc(feature: Feature, name: Optional[str]) -> UnsupportedPlatformError:
    """A utun call in a process not on macOS (and no stand-in libc): the feature is macOS's, the libc is not here."""
    return UnsupportedPlatformError(
        _errno.EOPNOTSUPP, f"{feature.value}: a utun needs macOS's own C library (libSystem), and this "
                           "process does not run on macOS", name or None)


def utun_unit(name: str) -> int:
    """The ``sc_unit`` that asks for *name*: 0 for ``""`` (the kernel picks), ``N + 1`` for ``utunN``."""
    if not isinstance(name, str):
        raise TypeError(f"a utun name is a str, not {type(name).__name__}")
    if name == "":
        return 0
    digits = name[len(_UTUN_PREFIX):]
    # The kernel prints the name as utun%d: a leading zero or a sign could never come back.
    if not name.startswith(_UTUN_PREFIX) or not digits.isdecimal() or not digits.isascii() \
            or (digits != "0" and digits.startswith("0")):
        raise ValueError(f"a macOS TUN device is named utunN (N a number) or \"\" for the next free one, "
                         f"not {name!r}")
    unit = int(digits) + 1
    if unit >= _MAX_UNIT:
        raise ValueError(f"{name!r}: utun numbers stop at utun{_MAX_UNIT - 2}")
    return unit


def _utun_error(err: int, name: str) -> OSError:
    """The library's error for a failed step of opening utun *name* (``""``: the kernel's pick)."""
    what = f"cannot open utun device {name}" if name else "cannot open a utun device"
    err = errnos.host(err)  # macOS's number: the running OS's, for errno's names and the exception
    if err == _errno.EBUSY:
        if not name:  # the kernel found no free unit (the seed's ErrExhausted)
            return DevicesExhaustedError(err, f"{what}: every utun unit is taken: close some", None)
        return DeviceBusyError(err, f"{what}: {name} is held by another socket: ask for another utunN, "
                                    "or \"\" for a free one", name)
    if err in (_errno.EPERM, _errno.EACCES):
        return TunTapPermissionError(err, f"{what}: {_ROOT}", name or None)
    return error_from_errno(err, "utun", name or None, what)


def open_utun(name: str) -> Tuple[int, str]:
    """Open utun *name* (``""``: the first free unit): the connected, non-blocking, close-on-exec fd and its name."""
    unit = utun_unit(name)
    lib = libc.get()
    if lib is None:
        raise _no_libc(Feature.TUN, name)
    ffi = lib.ffi
    fd = lib.socket(cdefs.PF_SYSTEM, cdefs.SOCK_DGRAM, cdefs.SYSPROTO_CONTROL)
    if fd < 0:
        raise _utun_error(lib.errno(), name)
    try:
        info = ffi.new("struct ctl_info *")
        info.ctl_name = utun.UTUN_CONTROL_NAME.encode()
        if lib.ioctl(fd, cdefs.ioctl_numbers(ffi.sizeof)["CTLIOCGINFO"], info) < 0:
            raise _utun_error(lib.errno(), name)
        addr = ffi.new("struct sockaddr_ctl *")
        addr.sc_len = ffi.sizeof(addr[0])
        addr.sc_family = cdefs.AF_SYSTEM
        addr.ss_sysaddr = cdefs.AF_SYS_CONTROL
        addr.sc_id = info.ctl_id
        addr.sc_unit = unit
        if lib.connect(fd, ffi.cast("struct sockaddr *", addr), ffi.sizeof(addr[0])) < 0:
            raise _utun_error(lib.errno(), name)
        ifname = ffi.new("char[]", cdefs.IFNAMSIZ)
        length = ffi.new("uint32_t *", cdefs.IFNAMSIZ)
        if lib.getsockopt(fd, cdefs.SYSPROTO_CONTROL, cdefs.UTUN_OPT_IFNAME, ifname, length) < 0:
            raise _utun_error(lib.errno(), name)
        if not nonblocking_cloexec(lib, fd):
            raise _utun_error(lib.errno(), name)
        return fd, ffi.string(ifname).decode("ascii")
    except BaseException:
        lib.close(fd)  # the interface goes with its socket (utun_ctl_disconnect)
        raise


def nonblocking_cloexec(lib: libc.Libc, fd: int) -> bool:
    """Make *fd* O_NONBLOCK and close-on-exec (macOS's socket() and pipe() take no such flags); False: errno says why."""
    int_ = lib.ffi.cast
    status = lib.fcntl(fd, F_GETFL, int_("int", 0))
    return status >= 0 and lib.fcntl(fd, F_SETFL, int_("int", status | O_NONBLOCK)) >= 0 \
        and lib.fcntl(fd, F_SETFD, int_("int", FD_CLOEXEC)) >= 0


def create(
    name: str, flags: int, owner: Optional[int], group: Optional[int], persist: Optional[bool], kind: str,
    everyone: bool = False,
) -> Tuple[int, str]:
    """Open a TUN (utun).  A TAP is a feth pair with two fds, not one: ``_feth_device.open_feth_device`` builds it."""
    if kind == "TAP":
        raise ValueError("a macOS TAP is a feth pair: open it with tuntap_cffi.open_tap()")
    return open_utun(name)


def get_iff(fd: int) -> Tuple[str, int]:
    """The name of an adopted utun socket (``Device.from_fd``), from ``UTUN_OPT_IFNAME``; flags 0 (utun has none).

    The socket must be connected to the utun control: ``ctl_ctloutput``
    refuses the option before connect (EINVAL), getsockopt on an fd that is
    no socket is ENOTSOCK (``getsock``); the errors say the fd is not a
    connected utun, as Linux's say it is not an attached TUN/TAP.
    """
    lib = libc.get()
    if lib is None:
        raise _no_libc(Feature.FROM_FD, None)
    ifname = lib.ffi.new("char[]", cdefs.IFNAMSIZ)
    length = lib.ffi.new("uint32_t *", cdefs.IFNAMSIZ)
    if lib.getsockopt(fd, cdefs.SYSPROTO_CONTROL, cdefs.UTUN_OPT_IFNAME, ifname, length) < 0:
        raise error_from_errno(errnos.host(lib.errno()), "ioctl", None,
                               f"fd {fd} is not a connected utun socket (getsockopt UTUN_OPT_IFNAME)")
    name = lib.ffi.string(ifname).decode("ascii")
    if not name.startswith(_UTUN_PREFIX):
        raise error_from_errno(_errno.EINVAL, "ioctl", name, f"fd {fd} is a kernel-control socket of {name}, not a utun")
    return name, 0


def set_persist(fd: int, name: str, on: bool, everyone: bool = False) -> None:
    """utun interfaces live as long as their socket: never."""
    _lacks(Feature.PERSIST, name)


def sysfs_tun_flags(name: str) -> Optional[int]:
    """Linux's sysfs view of a persistent device: never."""
    _lacks(Feature.PERSIST, name)


def delete_persistent(name: str) -> None:
    """No persistent devices on macOS: never."""
    _lacks(Feature.PERSIST, name)


def _numbers(ffi: Any) -> Numbers:
    return Numbers(
        platform=PLATFORM.name, constants=cdefs.CONSTANTS, ioctls=cdefs.ioctl_numbers(ffi.sizeof),
        errnos=cdefs.ERRNO, sa_align=4, pointopoint_prefixes=(_UTUN_PREFIX,),
    )


# Link settings, addresses and routes through the BSD layer, and what macOS lacks for good
# (virtio-net header, offloads, queues, sndbuf, link type, filters, carrier, namespaces): shared with
# FreeBSD (.._bsdbackend), bound to macOS's libc and numbers.
_SHARED = BsdBackend(PLATFORM, libc.get, _numbers, "libSystem")
#: ``numbers(ffi)``: macOS's numbers for the BSD layer, the ioctl requests sized by *ffi*'s declarations.
numbers = _SHARED.numbers
control_socket = _SHARED.control_socket
get_link_flags = _SHARED.get_link_flags
set_link_flags = _SHARED.set_link_flags
get_int = _SHARED.get_int
set_int = _SHARED.set_int
config_channel = _SHARED.config_channel
add_address = _SHARED.add_address
remove_address = _SHARED.remove_address
list_addresses = _SHARED.list_addresses
add_route = _SHARED.add_route
remove_route = _SHARED.remove_route
list_routes = _SHARED.list_routes
set_vnet_hdr_size = _SHARED.set_vnet_hdr_size
get_vnet_hdr_size = _SHARED.get_vnet_hdr_size
set_offload = _SHARED.set_offload
set_queue = _SHARED.set_queue
get_sndbuf = _SHARED.get_sndbuf
set_sndbuf = _SHARED.set_sndbuf
get_link_type = _SHARED.get_link_type
set_link_type = _SHARED.set_link_type
attach_filter = _SHARED.attach_filter
detach_filter = _SHARED.detach_filter
set_carrier = _SHARED.set_carrier
open_netns = _SHARED.open_netns
in_netns = _SHARED.in_netns
device_netns = _SHARED.device_netns
describe_netns = _SHARED.describe_netns
event_source = _SHARED.event_source


#: A feth TAP's MAC (its user end): the BSD layer's, as FreeBSD's TAP.
get_hwaddr = _SHARED.get_hwaddr
set_hwaddr = _SHARED.set_hwaddr
