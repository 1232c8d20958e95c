"""The platform boundary: which platform this is, what it can do, which backend drives it.

Facts that shape this module:

- The platform is chosen once, at import, from ``sys.platform`` (as
  ``selectors.py`` picks ``DefaultSelector``): :data:`PLATFORM` is its
  declared capability table (:class:`~tuntap_cffi._capabilities.Platform`,
  with the display name used in messages).  :func:`require` checks a
  feature against it and raises the one ``UnsupportedPlatformError``.
- The backend module is imported on first use (:func:`current`), not at
  import: importing the package works on any OS, and on one without a
  backend only opening a device fails, with that same error.
- A backend is a module with the functions of :class:`Backend`; ``_linux.backend``
  is the reference, ``_darwin.backend`` macOS's and ``_freebsd.backend``
  FreeBSD's.  mypy checks
  each module against the Protocol where :func:`_load` returns it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Protocol, Tuple, TypeVar, Union

from . import _darwin, _freebsd, _linux
from ._capabilities import Feature, Platform
from ._constants import NetNamespace

_T = TypeVar("_T")

if TYPE_CHECKING:
    from ._eventsource import EventSource
    from ._netvalues import Address, IPAddress, IPInterface, IPNetwork, Route

__all__ = ["Backend", "Feature", "Platform", "LINUX", "PLATFORM", "current", "require", "supports"]


class Backend(Protocol):
    """What device.py needs from a platform; ``_linux.backend`` is the reference."""

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
    def get_sndbuf(self, fd: int, name: str) -> int: ...
    def set_sndbuf(self, fd: int, name: str, size: int) -> None: ...
    def get_link_type(self, ctl: int, name: str) -> int: ...
    def set_link_type(self, fd: int, name: str, kind: int) -> None: ...
    def attach_filter(self, fd: int, name: str, tap: bool, program: Tuple[Tuple[int, int, int, int], ...]) -> None: ...
    def detach_filter(self, fd: int, name: str, tap: bool) -> None: ...
    # Addresses and routes: *chan* is what config_channel made of the control socket
    # (rtnetlink on Linux, the socket itself on the BSDs), kept by the Device.
    def config_channel(self, ctl: int) -> Any: ...
    def add_address(self, chan: Any, ifindex: int, name: str, local: "IPInterface", peer: "Optional[IPAddress]") -> None: ...
    def remove_address(self, chan: Any, ifindex: int, name: str, local: "IPInterface") -> None: ...
    def list_addresses(self, chan: Any, ifindex: int, name: str) -> "List[Address]": ...
    def add_route(self, chan: Any, ifindex: int, name: str, destination: "IPNetwork", gateway: "Optional[IPAddress]", metric: Optional[int]) -> None: ...
    def remove_route(self, chan: Any, ifindex: int, name: str, destination: "IPNetwork", gateway: "Optional[IPAddress]", metric: Optional[int]) -> None: ...
    def list_routes(self, chan: Any, ifindex: int, name: str) -> "List[Route]": ...
    # Carrier and network namespaces (Feature.CARRIER, Feature.NETNS).
    def set_carrier(self, fd: int, name: str, on: bool) -> None: ...
    def open_netns(self, ns: Union[str, int]) -> int: ...
    def in_netns(self, nsfd: int, func: Callable[[], _T], undo: Callable[[_T], None]) -> _T: ...
    def device_netns(self, fd: int, name: str) -> int: ...
    def describe_netns(self, nsfd: int) -> NetNamespace: ...
    # Link events (Feature.LINK_EVENTS): a subscribed socket for events.LinkEvents (*dev* a Device).
    def event_source(self, dev: Any, rcvbuf: Optional[int]) -> "EventSource": ...


#: Linux has everything the library offers (its table is ``_linux.PLATFORM``).
LINUX = _linux.PLATFORM


def _choose(system: str) -> Platform:
    """The capability table for ``sys.platform`` *system*."""
    if system.startswith("linux"):
        return LINUX
    if system == "darwin":
        return _darwin.PLATFORM
    if system.startswith("freebsd"):
        return _freebsd.PLATFORM
    return Platform(system, frozenset(), fallback="tuntap_cffi drives TUN/TAP devices on Linux, macOS and FreeBSD only")


#: This platform's capability table, chosen once at import.
PLATFORM: Platform = _choose(sys.platform)
#: ``require(feature, name=None)``: raise UnsupportedPlatformError unless this platform has *feature*.
require = PLATFORM.require
#: ``supports(feature)``: True if this platform has *feature*.
supports = PLATFORM.supports


def _load() -> Backend:
    if PLATFORM is LINUX:
        from ._linux import backend as linux

        return linux
    if PLATFORM is _darwin.PLATFORM:
        from ._darwin import backend as darwin

        return darwin
    if PLATFORM is _freebsd.PLATFORM:
        from ._freebsd.backend import BACKEND

        return BACKEND
    raise PLATFORM.unsupported(None)


_backend: Optional[Backend] = None


def current() -> Backend:
    """Return the backend module for this platform, or raise UnsupportedPlatformError."""
    global _backend
    if _backend is None:
        _backend = _load()
    return _backend
