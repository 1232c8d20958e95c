"""The macOS backend's functions, declared: each raises until the backend lands.

This is the declared boundary, not a pretend backend: every function of
``_backend.Backend`` is here with its signature (mypy checks the module
against the Protocol), and each raises the one ``UnsupportedPlatformError``
naming macOS and the feature it serves, before any syscall.  The macOS
backend (utun for TUN, feth + BPF for TAP, ioctls and PF_ROUTE for
configuration) replaces these bodies; the functions whose feature macOS
lacks for good (persistence, queues, vnet_hdr, offloads, txqueuelen) keep
raising.
"""

from __future__ import annotations

from typing import NoReturn, Optional, Tuple

from .._capabilities import Feature
from . import PLATFORM

__all__ = [
    "create", "get_iff", "set_persist", "sysfs_tun_flags", "delete_persistent", "control_socket",
    "get_link_flags", "set_link_flags", "get_int", "set_int", "get_hwaddr", "set_hwaddr",
    "set_vnet_hdr_size", "set_offload", "set_queue", "get_vnet_hdr_size",
]


def _lacks(feature: Feature, name: Optional[str] = None) -> NoReturn:
    raise PLATFORM.unsupported(feature, name or None)


def _link_feature(field: str) -> Feature:
    return Feature.TXQUEUELEN if field == "txqueuelen" else Feature.LINK


def create(
    name: str, flags: int, owner: Optional[int], group: Optional[int], persist: Optional[bool], kind: str,
    everyone: bool = False,
) -> Tuple[int, str]:
    """Open a TUN (utun) or TAP (feth + BPF) device: not in this version."""
    _lacks(Feature.TAP if kind == "TAP" else Feature.TUN, name)


def get_iff(fd: int) -> Tuple[str, int]:
    """The name and flags of an adopted fd (``Device.from_fd``): not in this version."""
    _lacks(Feature.FROM_FD)


def set_persist(fd: int, name: str, on: bool, everyone: bool = False) -> None:
    """utun interfaces live as long as their socket: never."""
    _lacks(Feature.PERSIST, name)


def sysfs_tun_flags(name: str) -> Optional[int]:
    """Linux's sysfs view of a persistent device: never."""
    _lacks(Feature.PERSIST, name)


def delete_persistent(name: str) -> None:
    """No persistent devices on macOS: never."""
    _lacks(Feature.PERSIST, name)


def control_socket() -> int:
    """The socket for link ioctls: not in this version."""
    _lacks(Feature.LINK)


def get_link_flags(ctl: int, name: str) -> int:
    """``SIOCGIFFLAGS``: not in this version."""
    _lacks(Feature.LINK, name)


def set_link_flags(ctl: int, name: str, flags: int) -> None:
    """``SIOCSIFFLAGS``: not in this version."""
    _lacks(Feature.LINK, name)


def get_int(ctl: int, name: str, field: str) -> int:
    """mtu/ifindex: not in this version; txqueuelen: never."""
    _lacks(_link_feature(field), name)


def set_int(ctl: int, name: str, field: str, value: int) -> None:
    """mtu: not in this version; txqueuelen: never."""
    _lacks(_link_feature(field), name)


def get_hwaddr(ctl: int, name: str) -> bytes:
    """The MAC of a feth TAP: not in this version."""
    _lacks(Feature.HWADDR, name)


def set_hwaddr(ctl: int, name: str, mac: bytes) -> None:
    """``SIOCSIFLLADDR`` on a feth TAP: not in this version."""
    _lacks(Feature.HWADDR, name)


def set_vnet_hdr_size(fd: int, name: str, size: int) -> None:
    """utun has no virtio-net header: never."""
    _lacks(Feature.VNET_HDR, name)


def get_vnet_hdr_size(fd: int, name: str) -> int:
    """utun has no virtio-net header: never."""
    _lacks(Feature.VNET_HDR, name)


def set_offload(fd: int, name: str, flags: int) -> None:
    """utun has no offloads: never."""
    _lacks(Feature.OFFLOAD, name)


def set_queue(fd: int, name: str, attach: bool) -> None:
    """utun has no multi-queue: never."""
    _lacks(Feature.MULTI_QUEUE, name)
