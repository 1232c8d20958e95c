"""The ``_backend.Backend`` functions macOS and FreeBSD implement alike, bound to one platform's libc and numbers.

Each BSD backend (``_darwin.backend``, ``_freebsd.backend``) makes one
:class:`BsdBackend` with its capability table, its libc boundary and its
numbers, and exposes the bound methods under the Backend names; only
opening, naming and destroying devices is its own.

Facts that shape this module:

- Link settings, addresses and routes are the BSD layer's (``_bsd.netconfig``):
  the same calls with each platform's numbers (:class:`~._bsd.Numbers`,
  built once per FFI: the ioctl numbers depend on its struct sizes).
- Where the platform's own C library is not there (the package imported on
  another OS, no simulated kernel installed) a configuration call fails
  with the one ``UnsupportedPlatformError``, naming the platform.
- Link events are a PF_ROUTE socket of the iterator's own (``_bsdevents``).
- What neither BSD has (virtio-net header, offloads, queues, sndbuf, link
  type, kernel-side filters, carrier, network namespaces, Linux's sysfs)
  raises that error too, with the reason from the platform's table.
"""

from __future__ import annotations

import errno as _errno
from typing import Any, Callable, List, NoReturn, Optional, Tuple, TypeVar, Union

from ._bsd import BsdLibc, Numbers, netconfig
from ._bsdevents import RouteSource, check_rcvbuf
from ._capabilities import Feature, Platform
from ._constants import NetNamespace
from ._netvalues import Address, IPAddress, IPInterface, IPNetwork, Route
from .errors import UnsupportedPlatformError, error_from_errno

__all__ = ["BsdBackend"]

_T = TypeVar("_T")


class BsdBackend:
    """One BSD platform's shared Backend functions (see the module docstring)."""

    def __init__(self, platform: Platform, get_lib: Callable[[], Optional[BsdLibc]],
                 make_numbers: Callable[[Any], Numbers], libc_name: str) -> None:
        self.platform = platform
        self._get_lib = get_lib
        self._make_numbers = make_numbers
        self._libc_name = libc_name  # how the "not this OS" error names the library
        self._numbers: Optional[Tuple[Any, Numbers]] = None  # (the FFI they were sized with, the numbers)

    def lacks(self, feature: Feature, name: Optional[str] = None) -> NoReturn:
        """Raise the platform's one error for *feature* (before any syscall)."""
        raise self.platform.unsupported(feature, name or None)

    def numbers(self, ffi: Any) -> Numbers:
        """The platform's numbers for the BSD layer, the ioctl requests sized by *ffi*'s declarations."""
        cached = self._numbers
        if cached is None or cached[0] is not ffi:
            cached = self._numbers = (ffi, self._make_numbers(ffi))
        return cached[1]

    def net(self, feature: Feature = Feature.LINK, name: Optional[str] = None) -> Tuple[BsdLibc, Numbers]:
        """The libc and numbers for a configuration call; unsupported where the feature or the platform's libc is not."""
        self.platform.require(feature, name)  # (a feature still planned fails here, before any call)
        lib = self._get_lib()
        if lib is None:
            where = self.platform.name
            raise UnsupportedPlatformError(_errno.EOPNOTSUPP, f"{feature.value} on {where}: works only on {where} "
                                           f"itself (the calls are {self._libc_name}'s)", name)
        return lib, self.numbers(lib.ffi)

    def _link_field(self, field: str, allowed: Tuple[str, ...], name: str) -> None:
        if field not in allowed:
            self.lacks(Feature.TXQUEUELEN if field == "txqueuelen" else Feature.LINK, name)

    # ------------------------------------------------------------ link settings
    def control_socket(self) -> int:
        """An ``AF_INET`` datagram socket for the link ioctls (close-on-exec)."""
        lib, k = self.net()
        return netconfig.control_socket(lib, k)

    def get_link_flags(self, ctl: int, name: str) -> int:
        """``SIOCGIFFLAGS``."""
        lib, k = self.net(name=name)
        return netconfig.get_flags(lib, k, ctl, name)

    def set_link_flags(self, ctl: int, name: str, flags: int) -> None:
        """``SIOCSIFFLAGS`` (root)."""
        lib, k = self.net(name=name)
        netconfig.set_flags(lib, k, ctl, name, flags)

    def get_int(self, ctl: int, name: str, field: str) -> int:
        """``mtu`` (SIOCGIFMTU) or ``ifindex`` (if_nametoindex); txqueuelen: never."""
        self._link_field(field, ("mtu", "ifindex"), name)
        lib, k = self.net(name=name)
        return netconfig.get_mtu(lib, k, ctl, name) if field == "mtu" else netconfig.ifindex(lib, k, name)

    def set_int(self, ctl: int, name: str, field: str, value: int) -> None:
        """``mtu`` (SIOCSIFMTU, root); txqueuelen: never."""
        self._link_field(field, ("mtu",), name)
        lib, k = self.net(name=name)
        netconfig.set_mtu(lib, k, ctl, name, value)

    def get_hwaddr(self, ctl: int, name: str) -> bytes:
        """An Ethernet interface's MAC: the ``sockaddr_dl`` of its NET_RT_IFLIST entry (``sysctl_iflist``'s RTA_IFP)."""
        lib, k = self.net(Feature.HWADDR, name)
        mac = netconfig.get_lladdr(lib, k, netconfig.ifindex(lib, k, name), name)
        if len(mac) != 6:
            raise error_from_errno(_errno.EOPNOTSUPP, "sysctl", name, f"{name} has no Ethernet address")
        return mac

    def set_hwaddr(self, ctl: int, name: str, mac: bytes) -> None:
        """``SIOCSIFLLADDR`` (root): the driver or ``if_setlladdr`` takes ``sa_len`` bytes of ``sa_data``."""
        lib, k = self.net(Feature.HWADDR, name)
        netconfig.set_lladdr(lib, k, ctl, name, mac)

    # ------------------------------------------------------------ addresses and routes
    def config_channel(self, ctl: int) -> int:
        """What the address and route functions take: the control socket itself (IPv4 ioctls go on it)."""
        return ctl

    def add_address(self, chan: int, ifindex: int, name: str, local: IPInterface, peer: Optional[IPAddress]) -> None:
        """``SIOCAIFADDR`` (IPv4, the peer on a point-to-point link) or ``SIOCAIFADDR_IN6`` (NODAD, infinite)."""
        lib, k = self.net(Feature.ADDRESSES, name)
        netconfig.add_address(lib, k, chan, name, local, peer)

    def remove_address(self, chan: int, ifindex: int, name: str, local: IPInterface) -> None:
        """``SIOCDIFADDR`` / ``SIOCDIFADDR_IN6``; absent is harmless."""
        lib, k = self.net(Feature.ADDRESSES, name)
        netconfig.remove_address(lib, k, chan, ifindex, name, local)

    def list_addresses(self, chan: int, ifindex: int, name: str) -> List[Address]:
        """The interface's addresses (sysctl NET_RT_IFLIST)."""
        lib, k = self.net(Feature.ADDRESSES, name)
        return netconfig.list_addresses(lib, k, ifindex, name)

    def add_route(self, chan: int, ifindex: int, name: str, destination: IPNetwork, gateway: Optional[IPAddress],
                  metric: Optional[int]) -> None:
        """``RTM_ADD`` on a PF_ROUTE socket; BSD routes have no metric."""
        lib, k = self.net(Feature.ROUTES, name)
        netconfig.add_route(lib, k, ifindex, name, destination, gateway, metric)

    def remove_route(self, chan: int, ifindex: int, name: str, destination: IPNetwork,
                     gateway: Optional[IPAddress], metric: Optional[int]) -> None:
        """``RTM_DELETE`` of a route out of this interface; absent is harmless."""
        lib, k = self.net(Feature.ROUTES, name)
        netconfig.remove_route(lib, k, ifindex, name, destination, gateway, metric)

    def list_routes(self, chan: int, ifindex: int, name: str) -> List[Route]:
        """The routes out of this interface (sysctl NET_RT_DUMP)."""
        lib, k = self.net(Feature.ROUTES, name)
        return netconfig.list_routes(lib, k, ifindex, name)

    # ------------------------------------------------------------ link events
    def event_source(self, dev: Any, rcvbuf: Optional[int]) -> RouteSource:
        """A PF_ROUTE socket keeping the messages of *dev*'s interface (``_bsdevents``)."""
        lib, k = self.net(Feature.LINK_EVENTS, dev.name)
        check_rcvbuf(k, dev.name, rcvbuf)
        return RouteSource(lib, k, dev.name, dev.ifindex, rcvbuf)

    # ------------------------------------------------------------ what neither BSD has
    def sysfs_tun_flags(self, name: str) -> Optional[int]:
        """Linux's sysfs view of a persistent device: never."""
        self.lacks(Feature.PERSIST, name)

    def set_vnet_hdr_size(self, fd: int, name: str, size: int) -> None:
        self.lacks(Feature.VNET_HDR, name)

    def get_vnet_hdr_size(self, fd: int, name: str) -> int:
        self.lacks(Feature.VNET_HDR, name)

    def set_offload(self, fd: int, name: str, flags: int) -> None:
        self.lacks(Feature.OFFLOAD, name)

    def set_queue(self, fd: int, name: str, attach: bool) -> None:
        self.lacks(Feature.MULTI_QUEUE, name)

    def get_sndbuf(self, fd: int, name: str) -> int:
        self.lacks(Feature.SNDBUF, name)

    def set_sndbuf(self, fd: int, name: str, size: int) -> None:
        self.lacks(Feature.SNDBUF, name)

    def get_link_type(self, ctl: int, name: str) -> int:
        self.lacks(Feature.LINK_TYPE, name)

    def set_link_type(self, fd: int, name: str, kind: int) -> None:
        self.lacks(Feature.LINK_TYPE, name)

    def attach_filter(self, fd: int, name: str, tap: bool, program: Tuple[Tuple[int, int, int, int], ...]) -> None:
        self.lacks(Feature.FILTER, name)

    def detach_filter(self, fd: int, name: str, tap: bool) -> None:
        self.lacks(Feature.FILTER, name)

    def set_carrier(self, fd: int, name: str, on: bool) -> None:
        self.lacks(Feature.CARRIER, name)

    def open_netns(self, ns: Union[str, int]) -> int:
        self.lacks(Feature.NETNS)

    def in_netns(self, nsfd: int, func: Callable[[], _T], undo: Callable[[_T], None]) -> _T:
        self.lacks(Feature.NETNS)

    def device_netns(self, fd: int, name: str) -> int:
        self.lacks(Feature.NETNS, name)

    def describe_netns(self, nsfd: int) -> NetNamespace:
        self.lacks(Feature.NETNS)
