"""The platform boundary: which backend module drives devices on this OS.

A backend is a module with the functions ``_linux`` defines (``create``,
``get_iff``, ``set_persist``, ``control_socket``, link ioctls).  A macOS
backend slots in here.  On other systems opening a device raises
:class:`UnsupportedPlatformError`; importing the package still works.
"""

from __future__ import annotations

import errno
import sys
from typing import Optional, Protocol, Tuple, cast

from .errors import UnsupportedPlatformError

__all__ = ["Backend", "current"]


class Backend(Protocol):
    """What device.py needs from a platform; ``_linux`` is the reference."""

    def create(
        self, name: str, flags: int, owner: Optional[int], group: Optional[int], persist: Optional[bool], kind: str,
        everyone: bool = False,
    ) -> Tuple[int, str]: ...
    def get_iff(self, fd: int) -> Tuple[str, int]: ...
    def set_persist(self, fd: int, name: str, on: bool, everyone: bool = False) -> None: ...
    def sysfs_tun_flags(self, name: str) -> Optional[int]: ...
    def delete_persistent(self, name: str) -> None: ...
    def control_socket(self) -> int: ...
    def get_link_flags(self, ctl: int, name: str) -> int: ...
    def set_link_flags(self, ctl: int, name: str, flags: int) -> None: ...
    def get_int(self, ctl: int, name: str, field: str) -> int: ...
    def set_int(self, ctl: int, name: str, field: str, value: int) -> None: ...
    def get_hwaddr(self, ctl: int, name: str) -> bytes: ...
    def set_hwaddr(self, ctl: int, name: str, mac: bytes) -> None: ...
    def set_vnet_hdr_size(self, fd: int, name: str, size: int) -> None: ...
    def set_offload(self, fd: int, name: str, flags: int) -> None: ...
    def set_queue(self, fd: int, name: str, attach: bool) -> None: ...
    def get_vnet_hdr_size(self, fd: int, name: str) -> int: ...


_backend: Optional[Backend] = None


def current() -> Backend:
    """Return the backend module for this platform, or raise UnsupportedPlatformError."""
    global _backend
    if _backend is None:
        if sys.platform.startswith("linux"):
            from . import _linux

            _backend = cast(Backend, _linux)
        else:
            raise UnsupportedPlatformError(
                errno.EOPNOTSUPP,
                f"TUN/TAP devices are not supported on {sys.platform!r} by tuntap_cffi yet (Linux only)",
            )
    return _backend
