"""The seed's legacy macOS devices: the tuntaposx kext's ``/dev/tunN`` and ``/dev/tapN``, opened by name.

On macOS ``open_tun("")`` is a utun and ``open_tap("")`` a feth pair; the
kext's devices are reached only by naming them: ``"tunN"``/``"tapN"``
(N 0..15) for that node, ``"tun%d"``/``"tap%d"`` for the first free one
(the seed's ``Tun("")`` loop).  This module turns a name into the nodes to
try and opens one; the Device over the fd is ``tuntap_cffi._tuntaposx_device``.
It makes no C call at import (this package imports on any OS).

Facts that shape this module (tuntaposx, github.com/bbits/tuntaposx:
src/tuntap.cc, src/tun/tun.cc, src/tun/kmod.cc; the Go seed's
device_darwin.go):

- The kext makes ``TUN_IF_COUNT`` (16) nodes per family when it loads
  (``tuntap_manager::initialize``; ``register_chardev``: ``/dev/tun%d``,
  root:wheel 0660).  Without the kext there is no node: ENOENT.  It was
  last released in 2015, is deprecated since macOS 10.15.4 and never loads
  on Apple silicon: utun is the way there.
- One open file per device: ``cdev_open`` answers EBUSY while the node is
  open; the seed also opens with ``O_EXCL`` and counts EEXIST as busy.
  The interface ``tunN`` is attached at open (``initialize_netif``) and
  detached at close (``shutdown_netif``): it lives as long as the fd.
- ``cdev_read``/``cdev_write`` answer EIO while the interface is not
  IFF_UP (``!open || ifp == NULL || !(ifnet_flags(ifp) & IFF_UP)``), and
  the kext's ``if_ioctl`` leaves the flags alone when an address is set:
  the device is ready once it has its address and is up (``ifconfig tun0
  A B up``; ``Device.add_address`` then ``Device.up()``).  That EIO is the
  seed's ErrNotReady: :class:`~tuntap_cffi.errors.DeviceNotReadyError`.
- A tun device carries bare IP packets (``prepend_af`` is off unless
  TUNSIFHEAD asks), a tap device Ethernet frames: no header to strip.
- Blocking is the kext's ``block_io``, changed only by FIONBIO
  (``cdev_ioctl``), which ``fcntl(F_SETFL, O_NONBLOCK)`` issues: O_NONBLOCK
  at open would not reach it, so the fd is made non-blocking with fcntl.
"""

from __future__ import annotations

import errno as _errno
from typing import List, Optional, Tuple

from .._capabilities import Feature
from ..errors import DeviceBusyError, DeviceNotFoundError, DevicesExhaustedError, TunTapPermissionError, \
    error_from_errno
from . import backend, cdefs, errnos, libc

__all__ = ["COUNT", "FAMILIES", "is_legacy_name", "candidates", "open_node", "NOT_READY"]

#: Nodes per family the kext makes (TUN_IF_COUNT / TAP_IF_COUNT in its Makefile; the seed's maxDevices).
COUNT = 16
#: The families, by the Device kind that opens them.
FAMILIES = {"TUN": "tun", "TAP": "tap"}

#: What a DeviceNotReadyError of a tuntaposx device says to do (its EIO: see the module docstring).
NOT_READY = ("a tuntaposx device is ready once it has an address and is up (the kext answers EIO until "
             "then): dev.add_address(...) and dev.up(), or `ifconfig {name} <addr> <peer> up`; then retry")

_NO_KEXT = ("/dev/{node} does not exist: the tuntaposx kext is not installed or not loaded (it never loads on "
            "Apple silicon and is deprecated since macOS 10.15.4); use a utun instead: open_tun(\"\")")


def _family_and_number(name: str) -> Optional[Tuple[str, str]]:
    """("tun"/"tap", the rest) if *name* starts with a family and the rest is a number or ``%d``."""
    for family in FAMILIES.values():
        rest = name[len(family):]
        if name.startswith(family) and (rest == "%d" or rest.isdecimal() and rest.isascii()):
            return family, rest
    return None


def is_legacy_name(name: str) -> bool:
    """Whether *name* names a tuntaposx device (``tunN``, ``tapN``, ``tun%d``, ``tap%d``) rather than a utun/feth."""
    return _family_and_number(name) is not None


def candidates(kind: str, name: str) -> List[str]:
    """The interface names to try for *name*, in order: one for ``tunN``, all 16 for ``tun%d``.

    ValueError (before any syscall) for a number the kext has not (a
    leading zero, 16 or more) or a family that is not *kind*'s (``TUN`` or
    ``TAP``): ``open_tun("tap0")`` would hand out Ethernet frames.
    """
    parsed = _family_and_number(name)
    if parsed is None:
        raise ValueError(f"{name!r} is not a tuntaposx device name (tunN, tapN, tun%d, tap%d)")
    family, rest = parsed
    if family != FAMILIES[kind]:
        opener = "open_tap" if family == "tap" else "open_tun"
        raise ValueError(f"{name!r} is a {family} device: open it with {opener}()")
    if rest == "%d":
        return [f"{family}{n}" for n in range(COUNT)]
    if (rest != "0" and rest.startswith("0")) or int(rest) >= COUNT:
        raise ValueError(f"{name!r}: the tuntaposx kext makes {family}0 .. {family}{COUNT - 1}")
    return [name]


def _busy(err: int) -> bool:
    """The seed's isBusy: EBUSY (cdev_open: the node is open) or EEXIST (O_EXCL)."""
    return err in (_errno.EBUSY, _errno.EEXIST)


def _error(err: int, node: str) -> OSError:
    """The library's error for opening /dev/*node* (*err*: the host's number already)."""
    what = f"cannot open /dev/{node}"
    if _busy(err):
        return DeviceBusyError(err, f"{what}: it is open in another process or fd (one fd per device): "
                                    f"close that, ask for another, or use a template ({node[:3]}%d)", node)
    if err == _errno.ENOENT:
        return DeviceNotFoundError(err, f"{what}: " + _NO_KEXT.format(node=node), node)
    if err in (_errno.EACCES, _errno.EPERM):
        return TunTapPermissionError(err, f"{what}: the kext's nodes are root:wheel 0660: run as root (sudo)", node)
    return error_from_errno(err, "open", node, what)


def open_node(kind: str, name: str) -> Tuple[int, str]:
    """Open the tuntaposx device *name* (or a template's first free one): a non-blocking, close-on-exec fd and its name.

    Busy nodes are skipped under a template; all busy: DevicesExhaustedError.
    """
    names = candidates(kind, name)
    lib = libc.get()
    if lib is None:
        raise backend._no_libc(Feature.TUN if kind == "TUN" else Feature.TAP, name)
    flags = cdefs.O_RDWR | cdefs.O_EXCL | cdefs.O_CLOEXEC
    for node in names:
        fd = lib.open(f"/dev/{node}".encode(), flags)
        if fd < 0:
            err = errnos.host(lib.errno())
            if _busy(err) and len(names) > 1:
                continue  # the seed's loop: try the next of the 16
            raise _error(err, node)
        if not backend.nonblocking_cloexec(lib, fd):  # FIONBIO through fcntl (see the module docstring)
            err = errnos.host(lib.errno())
            lib.close(fd)
            raise _error(err, node)
        return fd, node
    family = FAMILIES[kind]
    raise DevicesExhaustedError(_errno.EBUSY, f"cannot open a {family} device: /dev/{family}0 .. /dev/{family}"
                                              f"{COUNT - 1} are all open: close one, or use a utun (open_tun(\"\"))",
                                None)
