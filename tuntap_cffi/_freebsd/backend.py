"""The FreeBSD backend's functions: /dev/tun and /dev/tap open, name and destroy; the BSD layer configures.

:data:`BACKEND` is FreeBSD's ``_backend.Backend`` (mypy checks it against
the Protocol where ``_backend._load`` returns it): :func:`open_device`
opens a TUN or TAP and :func:`destroy` removes one; link settings,
addresses and routes are the BSD layer's (``.._bsdbackend``, with
FreeBSD's numbers: :func:`numbers`); what FreeBSD lacks raises the one
``UnsupportedPlatformError`` naming FreeBSD and the feature, before any
syscall.

Facts that shape this module (FreeBSD 14, sys/net/if_tuntap.c):

- Opening ``/dev/tun`` clones the next free ``tunN`` (``tunclone``: the
  ``dev_clone`` handler, ``if_clone_create``), ``/dev/tunN`` that unit
  (created if missing); ``/dev/tap``/``/dev/tapN`` likewise.  A unit open
  elsewhere is EBUSY (``tunopen``: TUN_OPEN).  Missing nodes (ENOENT) mean
  the ``if_tuntap`` module is not loaded.
- ``TUNGIFNAME`` (``tunioctl``) returns the interface name in an ifreq.
- A name of another form (``tt1234``) is given after the clone with
  ``SIOCSIFNAME`` (``ifhwioctl`` -> ``if_rename``; root), whose
  ``ifr_data`` points at the new name: EEXIST if taken.  The device node
  keeps its ``tunN`` name; the fd is what the Device holds.
- ``TUNSIFHEAD`` 1 (``tunioctl``, TUN only) turns on the 4-byte family
  header: every read starts with it (``tunread``), every write must
  (``tunwrite_l3``: EAFNOSUPPORT for a family other than INET/INET6).
  Without it IPv6 could not be written at all.  A TAP takes no header.
- ``TUNSIFMODE`` (``tunioctl``, TUN only) takes IFF_POINTOPOINT or
  IFF_BROADCAST, optionally with IFF_MULTICAST (anything else EINVAL),
  and replaces those three flags with it; EBUSY while the interface is up.
  A new tun is IFF_POINTOPOINT|IFF_MULTICAST (``tuncreate``): the mode is
  set with IFF_MULTICAST kept.
- Closing the fd leaves the interface (``tunclose``: down, addresses
  purged), so :func:`destroy` (``SIOCIFDESTROY``, ``if_clone_destroy``) is
  what makes it go, as the library promises on close.  That is FreeBSD's
  persistence: a persistent Device skips the destroy, and opening
  ``/dev/tunN`` again attaches to the interface (``tunopen`` of the unit's
  existing node); an interface that was there before the open is taken
  as persistent unless ``persist=False`` is asked.
- ``open(2)`` on FreeBSD takes ``O_CLOEXEC`` and ``O_NONBLOCK`` directly
  (sys/fcntl.h numbers, which differ from Linux's).
- Routing messages align sockaddrs to ``sizeof(long)`` (``SA_SIZE``, route.h).
- A TAP's MAC is the ``sockaddr_dl`` of its ``NET_RT_IFLIST`` entry and
  ``SIOCSIFLLADDR`` sets it (``if_setlladdr``: Ethernet types only, the
  length unchanged); the BSD layer's shared functions do both.
"""

from __future__ import annotations

import errno as _errno
from typing import Any, Optional, Tuple

from .._bsd import Numbers, netconfig
from .._bsdbackend import BsdBackend
from .._capabilities import Feature
from ..errors import (DeviceBusyError, DeviceNotFoundError, TunTapPermissionError, UnsupportedPlatformError,
                      error_from_errno)
from . import PLATFORM, cdefs, errnos, libc

__all__ = ["BACKEND", "FreeBsdBackend", "open_device", "open_node", "close_device", "adopt", "destroy", "device_name", "numbers"]

#: The node to clone from and the interface prefix, by kind.
_PREFIX = {"TUN": "tun", "TAP": "tap"}
_ROOT = "run as root (sudo), or give the user the /dev/tun and /dev/tap nodes (devfs.rules)"


def _no_libc(feature: Feature, name: Optional[str]) -> UnsupportedPlatformError:
    return UnsupportedPlatformError(
        _errno.EOPNOTSUPP, f"{feature.value}: a /dev/tun device needs FreeBSD's own C library, and this "
                           "process does not run on FreeBSD", name or None)


def device_name(name: str, kind: str) -> Tuple[str, bool]:
    """The node to open for *name* and whether the clone must be renamed to it (ValueError if it cannot be a name).

    ``""`` opens ``/dev/tun`` (the kernel's pick), ``tunN`` opens
    ``/dev/tunN``, any other valid interface name is a clone renamed with
    ``SIOCSIFNAME``.
    """
    if not isinstance(name, str):
        raise TypeError(f"an interface name is a str, not {type(name).__name__}")
    prefix = _PREFIX[kind]
    if name == "":
        return f"/dev/{prefix}", False
    if not name.isascii() or not 0 < len(name) < cdefs.IFNAMSIZ or not name.isprintable() \
            or any(c in name for c in "/ \t"):
        raise ValueError(f"a FreeBSD interface name is 1 to {cdefs.IFNAMSIZ - 1} printable ASCII characters "
                         f"without '/' or spaces, not {name!r}")
    digits = name[len(prefix):]
    if name.startswith(prefix) and digits.isdecimal() and (digits == "0" or not digits.startswith("0")) \
            and int(digits) <= cdefs.IF_MAXUNIT:
        return f"/dev/{name}", False
    return f"/dev/{prefix}", True


def _open_error(err: int, node: str, name: str, kind: str) -> OSError:
    """The library's error for a failed open of *node* (*name*: what was asked for, ``""`` for any)."""
    what = f"cannot open {kind} device {name or node}"
    err = errnos.host(err)
    if err == _errno.EBUSY:
        return DeviceBusyError(err, f"{what}: {node} is open in another process (if_tuntap allows one "
                                    f"opener): ask for another name, or \"\" for a new one", name or None)
    if err in (_errno.EPERM, _errno.EACCES):
        return TunTapPermissionError(err, f"{what}: {_ROOT}", name or None)
    if err == _errno.ENOENT:
        # tunclone makes the node only for a process allowed to create interfaces (PRIV_NET_IFCREATE).
        return DeviceNotFoundError(err, f"{what}: {node} does not exist: load the driver (kldload if_tuntap) "
                                        f"and run as root (only root may create {kind.lower()} interfaces)",
                                   name or None)
    return error_from_errno(err, "open", name or None, what)


def _ifname(lib: libc.Libc, fd: int, kind: str) -> str:
    """TUNGIFNAME (TAPGIFNAME): the interface name of a /dev/tun or /dev/tap fd."""
    ifr = lib.ffi.new("struct ifreq *")
    if lib.ioctl(fd, numbers(lib.ffi).ioctls["TUNGIFNAME"], ifr) < 0:
        raise error_from_errno(errnos.host(lib.errno()), "ioctl", None, f"fd {fd} is not a {kind} device (TUNGIFNAME)")
    return str(lib.ffi.string(ifr.ifr_name).decode("ascii"))


def _rename(lib: libc.Libc, k: Numbers, ctl: int, old: str, new: str) -> None:
    """SIOCSIFNAME: *old* becomes *new* (ifr_data points at the new name; EEXIST if it is taken)."""
    ifr = lib.ffi.new("struct ifreq *")
    ifr.ifr_name = old.encode("ascii")
    buf = lib.ffi.new("char[]", new.encode("ascii"))
    ifr.ifr_ifru.ifru_data = buf
    if lib.ioctl(ctl, k.ioctls["SIOCSIFNAME"], ifr) < 0:
        err = errnos.host(lib.errno())
        if err == _errno.EEXIST:
            raise DeviceBusyError(err, f"cannot name the new interface {new}: an interface of that name exists",
                                  new)
        raise error_from_errno(err, "ioctl", new, f"cannot name the new interface {old} {new} (SIOCSIFNAME)")


def open_device(name: str, kind: str) -> Tuple[int, str]:
    """Open TUN or TAP *name* (``""``: a new one): the non-blocking, close-on-exec fd and the interface name."""
    fd, real, _ = open_node(name, kind)
    return fd, real


def open_node(name: str, kind: str, broadcast: Optional[bool] = None) -> Tuple[int, str, bool]:
    """:func:`open_device`, and whether this call made the interface (False: ``/dev/tunN`` was there already).

    A TUN gets ``TUNSIFHEAD`` 1, and the ``TUNSIFMODE`` of *broadcast*
    unless it is None.  On any failure the fd is closed and a clone made
    here destroyed.
    """
    node, rename = device_name(name, kind)
    lib = libc.get()
    if lib is None:
        raise _no_libc(Feature.TUN if kind == "TUN" else Feature.TAP, name)
    k = numbers(lib.ffi)
    # Opening /dev/tunN makes the interface if it is not there (tunclone): whether it was, asked first.
    existed = bool(name) and not rename and lib.if_nametoindex(name.encode("ascii")) != 0
    fd = lib.open(node.encode(), cdefs.O_RDWR | cdefs.O_NONBLOCK | cdefs.O_CLOEXEC)
    if fd < 0:
        raise _open_error(lib.errno(), node, name, kind)
    made = ""  # the interface this call surely cloned (destroyed if a later step fails)
    try:
        real = _ifname(lib, fd, kind)
        if not name or rename:  # (/dev/tunN may have existed before: never destroyed here)
            made = real
        if rename:
            ctl = netconfig.control_socket(lib, k)
            try:
                _rename(lib, k, ctl, real, name)
            finally:
                lib.close(ctl)
            made = real = name
        if kind == "TUN":
            _head_on(lib, k, fd, real)
            if broadcast is not None:
                _set_mode(lib, k, fd, real, broadcast)
        return fd, real, bool(made) or not existed
    except BaseException:
        close_device(fd, made)
        raise


def close_device(fd: int, made: str) -> None:
    """Undo an open that failed later: close *fd*, destroy the interface *made* here (``""``: none was)."""
    lib = libc.get()
    assert lib is not None  # (nothing was opened otherwise)
    lib.close(fd)
    if made:
        destroy(made)


def _head_on(lib: libc.Libc, k: Numbers, fd: int, name: str) -> None:
    """``TUNSIFHEAD`` 1: every packet carries its 4-byte address family."""
    if lib.ioctl(fd, k.ioctls["TUNSIFHEAD"], lib.ffi.new("int *", 1)) < 0:
        raise error_from_errno(errnos.host(lib.errno()), "ioctl", name, f"cannot turn on the AF header of {name}")


def _set_mode(lib: libc.Libc, k: Numbers, fd: int, name: str, broadcast: bool) -> None:
    """``TUNSIFMODE``: a broadcast or a point-to-point link, multicast kept (tuncreate's)."""
    c = k.constants
    mode = (c["IFF_BROADCAST"] if broadcast else c["IFF_POINTOPOINT"]) | c["IFF_MULTICAST"]
    if lib.ioctl(fd, k.ioctls["TUNSIFMODE"], lib.ffi.new("int *", mode)) < 0:
        err = errnos.host(lib.errno())
        what = "a broadcast" if broadcast else "a point-to-point"
        if err == _errno.EBUSY:
            raise DeviceBusyError(err, f"cannot make {name} {what} link while it is up: bring it down first "
                                       "(Device.down()), then open it again", name)
        raise error_from_errno(err, "ioctl", name, f"cannot make {name} {what} link (TUNSIFMODE)")


def adopt(fd: int) -> Tuple[str, str]:
    """``Device.from_fd``: the interface name (TUNGIFNAME) and kind of a /dev/tun or /dev/tap fd.

    ``TUNGIFHEAD`` answers on a tun only (a tap falls through to ENOTTY):
    a tun whose header is off gets it turned on (``TUNSIFHEAD`` 1: without
    it only IPv4 can be written), as :func:`open_device` does.
    """
    lib = libc.get()
    if lib is None:
        raise _no_libc(Feature.FROM_FD, None)
    k = numbers(lib.ffi)
    name = _ifname(lib, fd, "tun or tap")
    head = lib.ffi.new("int *")
    if lib.ioctl(fd, k.ioctls["TUNGIFHEAD"], head) < 0:
        if errnos.host(lib.errno()) != _errno.ENOTTY:
            raise error_from_errno(errnos.host(lib.errno()), "ioctl", name, f"cannot read the AF header mode of {name}")
        return name, "TAP"
    if not head[0]:
        _head_on(lib, k, fd, name)
    return name, "TUN"


def destroy(name: str) -> None:
    """``SIOCIFDESTROY``: the interface goes (``if_clone_destroy``); absent (ENXIO, EINVAL) is harmless."""
    lib, k = BACKEND.net(name=name)
    ctl = netconfig.control_socket(lib, k)
    try:
        ifr = lib.ffi.new("struct ifreq *")
        ifr.ifr_name = name.encode("ascii")
        if lib.ioctl(ctl, k.ioctls["SIOCIFDESTROY"], ifr) < 0:
            err = errnos.host(lib.errno())
            if err not in (_errno.ENXIO, _errno.EINVAL):
                raise error_from_errno(err, "ioctl", name, f"cannot destroy {name} (SIOCIFDESTROY)")
    finally:
        lib.close(ctl)


def _numbers(ffi: Any) -> Numbers:
    return Numbers(
        platform=PLATFORM.name, constants={**cdefs.CONSTANTS, **cdefs.LAYER_CONSTANTS},
        ioctls=cdefs.ioctl_numbers(ffi.sizeof), errnos=cdefs.ERRNO,
        # SA_SIZE (net/route.h); no prefix is point-to-point by nature: TUNSIFMODE can make a tun broadcast.
        sa_align=8, pointopoint_prefixes=(),
    )


class FreeBsdBackend(BsdBackend):
    """FreeBSD's Backend: the BSD layer's shared functions, plus opening devices (see the module docstring)."""

    def create(
        self, name: str, flags: int, owner: Optional[int], group: Optional[int], persist: Optional[bool], kind: str,
        everyone: bool = False,
    ) -> Tuple[int, str]:
        """Open a TUN or TAP (see :func:`open_device`); owner and persistence are refused before."""
        return open_device(name, kind)

    def get_iff(self, fd: int) -> Tuple[str, int]:
        """Linux's TUNGETIFF flags have no FreeBSD counterpart: ``Device.from_fd`` uses :func:`adopt`."""
        self.lacks(Feature.FROM_FD)

    def set_persist(self, fd: int, name: str, on: bool, everyone: bool = False) -> None:
        """Nothing to tell the kernel: every interface outlives its fd; the Device skips SIOCIFDESTROY."""
        self.platform.require(Feature.PERSIST, name)

    def delete_persistent(self, name: str) -> None:
        """``SIOCIFDESTROY`` of interface *name*, unless a process has it open.

        ``tun_destroy`` sleeps until the device is closed, so an open one is
        refused first: opening ``/dev/tunN`` says EBUSY then (``tunopen``:
        one opener).  A renamed interface's node is not found by its name:
        it is destroyed without that check.
        """
        self.net(Feature.PERSIST, name)  # (the one error where FreeBSD's libc is not)
        lib = libc.get()
        assert lib is not None
        if lib.if_nametoindex(name.encode("ascii")) == 0:
            raise DeviceNotFoundError(_errno.ENODEV, "no interface of that name", name)
        node, rename = device_name(name, "TAP" if name.startswith("tap") else "TUN")
        if not rename:
            fd = lib.open(node.encode(), cdefs.O_RDWR | cdefs.O_NONBLOCK | cdefs.O_CLOEXEC)
            if fd < 0:
                err = errnos.host(lib.errno())
                if err == _errno.EBUSY:
                    raise DeviceBusyError(err, f"cannot delete {name}: it is open in a process: close it first",
                                          name)
                raise error_from_errno(err, "open", name, f"cannot delete {name}")
            lib.close(fd)
        destroy(name)


#: FreeBSD's backend, bound to its libc boundary (a simulated kernel in the tests) and numbers.
BACKEND = FreeBsdBackend(PLATFORM, libc.get, _numbers, "FreeBSD's libc")
#: ``numbers(ffi)``: FreeBSD's numbers for the BSD layer, the ioctl requests sized by *ffi*'s declarations.
numbers = BACKEND.numbers
