"""The values configuration returns, on every platform: an interface's addresses and routes.

Pure Python (no libc, no cffi), so the BSD layer and the platform
packages, which must import on any OS, can build them; ``config``
re-exports them as ``config.Address`` and ``config.Route``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import NamedTuple, Optional, Union

__all__ = ["Address", "Route", "LinkState", "IPInterface", "IPAddress", "IPNetwork"]

IPInterface = Union[IPv4Interface, IPv6Interface]
IPAddress = Union[IPv4Address, IPv6Address]
IPNetwork = Union[IPv4Network, IPv6Network]


class Address(NamedTuple):
    """An address of an interface: the local address with its prefix, and the peer if any."""

    interface: IPInterface  #: e.g. IPv4Interface('10.0.0.1/24')
    peer: Optional[IPAddress] = None  #: the far end of a point-to-point link

    def __str__(self) -> str:
        return f"{self.interface} peer {self.peer}" if self.peer is not None else str(self.interface)


class Route(NamedTuple):
    """A route of the main table that sends traffic out of the interface."""

    destination: IPNetwork
    gateway: Optional[IPAddress] = None
    metric: int = 0


class LinkState(NamedTuple):
    """What the kernel says of an interface: its index, IFF_* flags, MTU and carrier (rtnetlink or PF_ROUTE)."""

    ifindex: int
    flags: int  #: IFF_UP, IFF_RUNNING (IFF_LOWER_UP on Linux), ...: IFF_UP is 0x1 on Linux and the BSDs
    mtu: Optional[int]  #: None if the message had no MTU (IFLA_MTU)
    carrier: bool  #: IFLA_CARRIER (3.7), else IFF_LOWER_UP; FreeBSD's ifi_link_state; True on macOS (unreported)
