"""Exceptions of tuntap_cffi and the one table that maps errno to them.

Every kernel failure becomes an ``OSError`` subclass carrying ``errno``, the
device name as ``filename`` and a message that says what to do.  Where
Python has a builtin errno class the tuntap class also derives from it, so
``except PermissionError`` catches a missing CAP_NET_ADMIN (a plain subclass
of ``OSError`` would not be caught: ``OSError``'s errno-to-subclass mapping
only applies when ``OSError`` itself is constructed).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Dict, Optional, Tuple, Type

__all__ = [
    "TunTapError",
    "DeviceBusyError",
    "DevicesExhaustedError",
    "DeviceNotReadyError",
    "UnsupportedPlatformError",
    "TunTapPermissionError",
    "DeviceNotFoundError",
    "NamespaceNotFoundError",
    "InvalidPacketError",
    "DeviceClosedError",
    "BatchWriteError",
    "LibpcapNotFoundError",
    "error_from_errno",
]


class TunTapError(OSError):
    """Base class of every error raised by tuntap_cffi for a kernel failure."""


class DeviceBusyError(TunTapError):
    """The interface exists and is in use (another process holds it), or has another kind."""


class DevicesExhaustedError(TunTapError):
    """The kernel has no free interface name for the template (``tun%d``)."""


class DeviceNotReadyError(TunTapError):
    """The device cannot carry packets now: the interface is down, or it was deleted under this fd."""


class UnsupportedPlatformError(TunTapError):
    """TUN/TAP devices are not supported on this operating system (yet)."""


class TunTapPermissionError(TunTapError, PermissionError):
    """The caller lacks CAP_NET_ADMIN (or ownership of a persistent device)."""


class DeviceNotFoundError(TunTapError, FileNotFoundError):
    """``/dev/net/tun`` or the named interface does not exist."""


class NamespaceNotFoundError(TunTapError, FileNotFoundError):
    """The network namespace given (``netns=``, ``move_to_netns``) does not exist."""


class InvalidPacketError(TunTapError, ValueError):
    """The kernel refused a written packet (EINVAL): not what the device accepts."""


class DeviceClosedError(TunTapError, ValueError):
    """The device is closed (also raised in a reader when another thread closes it)."""

    def __init__(self, name: str = "") -> None:
        super().__init__(_errno.EBADF, "I/O operation on closed device", name or None)


class BatchWriteError(TunTapError):
    """``write_batch``: the kernel refused packets; the others went, ``written`` says how many.

    ``errno`` and ``__cause__`` are those of the first refused packet.
    """

    written: int = 0


class LibpcapNotFoundError(TunTapError, FileNotFoundError):
    """A filter expression needs libpcap to compile, and it is not installed (the message names the package)."""


# ---------------------------------------------------------------------------
# The errno table.  A row: (exception class, advice).  An operation may give
# an errno a more precise meaning; those overrides live in _OP_TABLE.

_NEED_CAP = (
    "CAP_NET_ADMIN is needed (run as root, or grant it: "
    "`setcap cap_net_admin+ep` on the interpreter, or `ambient` capabilities)"
)

_DELETED = "the interface was deleted (e.g. by `ip link del`): this fd carries no more packets; close it and open a new one"

_TABLE: Dict[int, Tuple[Type[TunTapError], str]] = {
    _errno.EPERM: (TunTapPermissionError, _NEED_CAP),
    _errno.EACCES: (TunTapPermissionError, _NEED_CAP),
    _errno.EBUSY: (DeviceBusyError, "the interface is already attached to another file descriptor"),
    _errno.ENFILE: (TunTapError, "the system has too many open files"),
    _errno.EMFILE: (TunTapError, "this process has too many open files (see RLIMIT_NOFILE)"),
    _errno.EIO: (DeviceNotReadyError, "the interface is down: bring it up first (Device.up())"),
    _errno.EBADFD: (DeviceNotReadyError, _DELETED),
    _errno.ENODEV: (DeviceNotFoundError, "no such interface"),
    _errno.ENXIO: (DeviceNotFoundError, "no such interface"),
    _errno.ENOENT: (DeviceNotFoundError, "no such file"),
}

_OP_TABLE: Dict[Tuple[str, int], Tuple[Type[TunTapError], str]] = {
    ("open", _errno.ENOENT): (
        DeviceNotFoundError,
        "/dev/net/tun is missing: load the driver (`modprobe tun`) or create the node "
        "(`mkdir -p /dev/net && mknod /dev/net/tun c 10 200`)",
    ),
    ("open", _errno.ENODEV): (
        DeviceNotFoundError,
        "the tun driver is not loaded: run `modprobe tun`",
    ),
    ("open", _errno.EACCES): (
        TunTapPermissionError,
        "/dev/net/tun is not accessible to this user: run as root or with CAP_NET_ADMIN",
    ),
    ("create", _errno.EINVAL): (
        DeviceBusyError,
        "the name is taken by an interface of another kind, or the flags are not supported",
    ),
    # A %d template: ENFILE when all 32768 numbers are taken, EEXIST when the
    # next number no longer fits in 15 bytes and the cut-off name is taken.
    ("create_template", _errno.ENFILE): (
        DevicesExhaustedError,
        "no free interface name is left for this template",
    ),
    ("create_template", _errno.EEXIST): (
        DevicesExhaustedError,
        "no free interface name is left for this template within 15 bytes",
    ),
    ("write", _errno.EINVAL): (
        InvalidPacketError,
        "the kernel refused the packet: a TUN device expects an IPv4 or IPv6 packet "
        "(with a 4-byte tun_pi header first when packet_info=True), a TAP device an "
        "Ethernet frame of at least 14 bytes",
    ),
    ("engine", _errno.EMFILE): (
        TunTapError,
        "this process is at its open-file limit: an io_uring engine takes 1 fd (3 while it is set up "
        "on CPython); raise RLIMIT_NOFILE (`ulimit -n`, resource.setrlimit) or set "
        "Device.batch_backend = 'loop'",
    ),
    ("write", _errno.EBADFD): (
        DeviceNotReadyError,
        "the interface is gone (deleted, e.g. by `ip link del`): "
        "this device carries no more packets; close it and open a new one",
    ),
    # TUNSETQUEUE's EINVAL once TUNGETIFF said the interface is gone (see _linux.backend.set_queue).
    ("queue_deleted", _errno.EINVAL): (DeviceNotReadyError, _DELETED),
    ("create", _errno.EPERM): (
        TunTapPermissionError,
        _NEED_CAP + "; without it a process can only attach to a persistent device "
        "whose owner/group it matches",
    ),
    # TUNSETIFF on an existing interface: EPERM means owner/group do not match.
    ("attach", _errno.EPERM): (
        TunTapPermissionError,
        "the interface has an owner and/or group (`ip -d link show` says which) that this process "
        "does not match, and it lacks CAP_NET_ADMIN: run as that user (and group), or with CAP_NET_ADMIN",
    ),
}

# An operation without a row of its own for an errno uses its parent's.
_OP_PARENT = {"create_template": "create", "attach": "create"}


def error_from_errno(
    err: int, op: str, name: Optional[str] = None, what: Optional[str] = None
) -> OSError:
    """Return the exception for *err* raised by operation *op* on device *name*.

    *op* is a short verb the table knows ("open", "create", "attach", "read",
    "write", "ioctl"); *what* describes the action for the message, e.g.
    "cannot create TUN device".
    """
    if err in (_errno.EAGAIN, _errno.EWOULDBLOCK):
        return BlockingIOError(err, os.strerror(err))
    row = _OP_TABLE.get((op, err))
    if row is None and op in _OP_PARENT:
        row = _OP_TABLE.get((_OP_PARENT[op], err))
    if row is None:
        row = _TABLE.get(err)
    head = what or op
    if row is None:
        return TunTapError(err, f"{head}: {os.strerror(err)}", name)
    cls, advice = row
    return cls(err, f"{head}: {os.strerror(err)}: {advice}", name)
