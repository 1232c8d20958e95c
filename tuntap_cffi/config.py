"""Interface configuration: IPv4/IPv6 addresses and routes over rtnetlink, MAC checks.

Everything goes through calls declared in build_ffi.py: rtnetlink messages
on the device's NETLINK_ROUTE control socket (``_netlink``), no ``ip``
subprocess.  Validators here are pure: they raise ``ValueError``/``TypeError``
quoting the bad value before any syscall.

Idempotence: adding what is already there and removing what is not are
harmless (the kernel's EEXIST / EADDRNOTAVAIL / ESRCH answers are taken as
success), so configuration code can simply be re-run.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import List, Optional, Tuple, Union

from ._netlink import RtNetlink, attr, fixed, parse_attrs
from ._netvalues import Address, IPAddress, IPInterface, IPNetwork, LinkState, Route
from ._syscalls import ffi, lib
from .errors import DeviceNotFoundError, error_from_errno

__all__ = [
    "Address",
    "Route",
    "IPInterface",
    "IPAddress",
    "IPNetwork",
    "parse_interface",
    "parse_address",
    "parse_address_for",
    "parse_network",
    "parse_mac",
    "format_mac",
    "add_address",
    "remove_address",
    "list_addresses",
    "parse_address_message",
    "LinkState",
    "parse_link",
    "get_link",
    "add_route",
    "remove_route",
    "list_routes",
    "set_ipv6",
    "move_link",
    "get_carrier",
]

_RT_SCOPE_NOWHERE = 255


# ------------------------------------------------------------------ validators


def _family(value: Union[IPInterface, IPAddress, IPNetwork]) -> int:
    return socket.AF_INET if value.version == 4 else socket.AF_INET6


def parse_interface(value: object, option: str = "address") -> IPInterface:
    """``"10.0.0.1/24"``, ``"fd00::1/64"``, an ``ip_interface`` or ``ip_address`` (then /32, /128)."""
    if isinstance(value, (IPv4Interface, IPv6Interface)):
        return value
    if isinstance(value, (IPv4Address, IPv6Address)):
        return ip_interface(value)
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a str or an ipaddress object, not {type(value).__name__}")
    if "%" in value:
        raise ValueError(f"{option}={value!r}: a scope id has no meaning here")
    try:
        return ip_interface(value.strip())
    except ValueError:
        raise ValueError(f"{option}={value!r} is not an IPv4/IPv6 address with an optional /prefix") from None


def parse_address(value: object, option: str = "address") -> IPAddress:
    """An IPv4/IPv6 address without prefix, as str or ``ip_address``."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a str or an ipaddress object, not {type(value).__name__}")
    try:
        return ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{option}={value!r} is not an IPv4/IPv6 address") from None


def parse_address_for(value: object, option: str, other: Union[IPInterface, IPNetwork], other_option: str) -> IPAddress:
    """parse_address(), and of the IP version of *other* (a peer of an address, a gateway of a route)."""
    ip = parse_address(value, option)
    if ip.version != other.version:
        raise ValueError(f"{option} {ip} and {other_option} {other} are of different IP versions")
    return ip


def parse_network(value: object, option: str = "destination") -> IPNetwork:
    """``"10.9.0.0/16"``, ``"default"``/``"0.0.0.0/0"``, ``"::/0"``; host bits must be clear."""
    if isinstance(value, (IPv4Network, IPv6Network)):
        return value
    if isinstance(value, (IPv4Address, IPv6Address)):
        return ip_network(value)
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a str or an ipaddress object, not {type(value).__name__}")
    if value == "default":
        raise ValueError(f"{option}='default' is ambiguous: say '0.0.0.0/0' or '::/0'")
    try:
        return ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(f"{option}={value!r} is not a network such as '10.9.0.0/16' ({exc})") from None


# Six octets of one or two ASCII hex digits (as ``ip link`` takes them), all
# separated by ':' or all by '-'.
_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{1,2}(?:-[0-9A-Fa-f]{1,2}){5}", re.ASCII)


def parse_mac(value: object) -> bytes:
    """``"02:00:5e:10:00:01"`` (``:`` or ``-``, one or two hex digits per octet) or 6 bytes; unicast and non-zero."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if len(raw) != 6:
            raise ValueError(f"hwaddr must be 6 bytes, not {len(raw)}")
    elif isinstance(value, str):
        # int(p, 16) alone would take '+2', ' 2' and non-ASCII digits: match first.
        match = _MAC_TEXT.fullmatch(value)
        if match is None:
            raise ValueError(f"hwaddr={value!r} is not a MAC address such as '02:00:5e:10:00:01'")
        raw = bytes(int(p, 16) for p in match.group(0).replace("-", ":").split(":"))
    else:
        raise TypeError(f"hwaddr must be a str or 6 bytes, not {type(value).__name__}")
    if raw[0] & 1:
        raise ValueError(f"hwaddr={format_mac(raw)!r} is a multicast address; an interface needs a unicast one")
    if raw == bytes(6):
        raise ValueError("hwaddr 00:00:00:00:00:00 is not a valid interface address")
    return raw


def format_mac(raw: bytes) -> str:
    """``b'\\x02\\x00...'`` -> ``'02:00:...'``."""
    return ":".join(f"{b:02x}" for b in raw)


# ------------------------------------------------------------------- addresses


def _addr_message(ifindex: int, local: IPInterface, peer: Optional[IPAddress]) -> bytes:
    body = fixed(
        "struct ifaddrmsg",
        ifa_family=_family(local),
        ifa_prefixlen=local.network.prefixlen,
        ifa_index=ifindex,
    )
    body += attr(lib.IFA_LOCAL, local.ip.packed)
    body += attr(lib.IFA_ADDRESS, (peer if peer is not None else local.ip).packed)
    return body


def add_address(nl: RtNetlink, ifindex: int, name: str, local: IPInterface, peer: Optional[IPAddress]) -> None:
    """RTM_NEWADDR; an identical address already there is fine."""
    what = f"cannot add address {local}{f' peer {peer}' if peer else ''} to {name}"
    nl.request(
        lib.RTM_NEWADDR,
        lib.NLM_F_CREATE | lib.NLM_F_REPLACE,
        _addr_message(ifindex, local, peer),
        what=what,
        name=name,
    )


def remove_address(nl: RtNetlink, ifindex: int, name: str, local: IPInterface) -> None:
    """RTM_DELADDR matching local address and prefix; absent is fine."""
    body = fixed(
        "struct ifaddrmsg",
        ifa_family=_family(local),
        ifa_prefixlen=local.network.prefixlen,
        ifa_index=ifindex,
    ) + attr(lib.IFA_LOCAL, local.ip.packed)
    nl.request(
        lib.RTM_DELADDR, 0, body, what=f"cannot remove address {local} from {name}", name=name,
        ignore=(errno.EADDRNOTAVAIL, errno.ENOENT),
    )


def list_addresses(nl: RtNetlink, ifindex: int, name: str) -> List[Address]:
    """Every IPv4 and IPv6 address of the interface, in the kernel's order."""
    answers = nl.request(
        lib.RTM_GETADDR, 0, fixed("struct ifaddrmsg", ifa_family=lib.AF_UNSPEC),
        what=f"cannot list the addresses of {name}", name=name, dump=True,
    )
    out: List[Address] = []
    for kind, body in answers:
        if kind == lib.RTM_NEWADDR:
            parsed = parse_address_message(body)
            if parsed is not None and parsed[0] == ifindex:
                out.append(parsed[1])
    return out


_IFADDRMSG = struct.Struct("=BBBBI")  # struct ifaddrmsg


def parse_address_message(body: memoryview) -> Optional[Tuple[int, Address]]:
    """(interface index, address) of an RTM_NEWADDR/RTM_DELADDR body; None if it is no IPv4/IPv6 address."""
    if len(body) < _IFADDRMSG.size:
        return None
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(body)
    if family not in (lib.AF_INET, lib.AF_INET6):
        return None
    size = 4 if family == lib.AF_INET else 16
    local = address = None
    for akind, value in parse_attrs(body[_IFADDRMSG.size:]):
        if akind == lib.IFA_LOCAL and len(value) == size:
            local = ip_address(bytes(value))
        elif akind == lib.IFA_ADDRESS and len(value) == size:
            address = ip_address(bytes(value))
    # IFA_LOCAL is ours and IFA_ADDRESS the peer when they differ; IPv6
    # without a peer sends IFA_ADDRESS alone.
    mine = local if local is not None else address
    if mine is None:
        return None
    peer = address if local is not None and address is not None and address != local else None
    return index, Address(ip_interface(f"{mine}/{prefixlen}"), peer)


# ------------------------------------------------------------------- link state

_IFINFOMSG = struct.Struct("=BBHiII")  # struct ifinfomsg


def parse_link(body: memoryview) -> Optional[LinkState]:
    """The LinkState of an RTM_NEWLINK/RTM_DELLINK body; None if it is short or of another family (AF_BRIDGE)."""
    if len(body) < _IFINFOMSG.size:
        return None
    family, _pad, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    if family != lib.AF_UNSPEC:
        return None
    mtu = None
    carrier = bool(flags & lib.IFF_LOWER_UP)
    for kind, value in parse_attrs(body[_IFINFOMSG.size:]):
        if kind == lib.IFLA_MTU and len(value) == 4:
            mtu = struct.unpack("=I", value)[0]
        elif kind == lib.IFLA_CARRIER and len(value) >= 1:
            carrier = bool(value[0])
    return LinkState(index, flags, mtu, carrier)


def get_link(nl: RtNetlink, ifindex: int, name: str) -> LinkState:
    """RTM_GETLINK of one interface: its LinkState (DeviceNotFoundError if it is gone)."""
    answers = nl.request(
        lib.RTM_GETLINK, 0, fixed("struct ifinfomsg", ifi_family=lib.AF_UNSPEC, ifi_index=ifindex),
        what=f"cannot read the link state of {name}", name=name,
    )
    for kind, body in answers:
        state = parse_link(body) if kind == lib.RTM_NEWLINK else None
        if state is not None and state.ifindex == ifindex:
            return state
    raise error_from_errno(errno.ENODEV, "netlink", name, f"cannot read the link state of {name}: no answer for it")


# ---------------------------------------------------------------------- routes


def _route_message(ifindex: int, destination: IPNetwork, gateway: Optional[IPAddress], metric: Optional[int], scope: int, protocol: int, rtype: int) -> bytes:
    body = fixed(
        "struct rtmsg",
        rtm_family=_family(destination),
        rtm_dst_len=destination.prefixlen,
        rtm_table=lib.RT_TABLE_MAIN,
        rtm_protocol=protocol,
        rtm_scope=scope,
        rtm_type=rtype,
    )
    if destination.prefixlen:
        body += attr(lib.RTA_DST, destination.network_address.packed)
    body += attr(lib.RTA_OIF, struct.pack("=I", ifindex))
    if gateway is not None:
        body += attr(lib.RTA_GATEWAY, gateway.packed)
    if metric is not None:
        body += attr(lib.RTA_PRIORITY, struct.pack("=I", metric))
    return body


def add_route(nl: RtNetlink, ifindex: int, name: str, destination: IPNetwork, gateway: Optional[IPAddress], metric: Optional[int]) -> None:
    """RTM_NEWROUTE in the main table out of the interface; an identical route is fine.

    No NLM_F_REPLACE: a route to the same destination through another
    interface (the system's default route, say) is never overwritten.
    """
    scope = lib.RT_SCOPE_LINK if gateway is None and destination.version == 4 else lib.RT_SCOPE_UNIVERSE
    what = f"cannot add route {destination}{f' via {gateway}' if gateway else ''} dev {name}"
    nl.request(
        lib.RTM_NEWROUTE, lib.NLM_F_CREATE,
        _route_message(ifindex, destination, gateway, metric, scope, lib.RTPROT_BOOT, lib.RTN_UNICAST),
        what=what, name=name, ignore=(errno.EEXIST,),
    )


def remove_route(nl: RtNetlink, ifindex: int, name: str, destination: IPNetwork, gateway: Optional[IPAddress], metric: Optional[int]) -> None:
    """RTM_DELROUTE of the route out of the interface; absent is fine."""
    nl.request(
        lib.RTM_DELROUTE, 0,
        _route_message(ifindex, destination, gateway, metric, _RT_SCOPE_NOWHERE, 0, 0),
        what=f"cannot remove route {destination} dev {name}", name=name, ignore=(errno.ESRCH, errno.ENOENT),
    )


def list_routes(nl: RtNetlink, ifindex: int, name: str) -> List[Route]:
    """The unicast routes of the main table whose output interface is this one."""
    hdr = struct.Struct("=BBBBBBBBI")  # struct rtmsg
    out: List[Route] = []
    for family in (lib.AF_INET, lib.AF_INET6):
        answers = nl.request(
            lib.RTM_GETROUTE, 0, fixed("struct rtmsg", rtm_family=family),
            what=f"cannot list the routes of {name}", name=name, dump=True,
        )
        size = 4 if family == lib.AF_INET else 16
        for kind, body in answers:
            if kind != lib.RTM_NEWROUTE or len(body) < hdr.size:
                continue
            fam, dst_len, _src, _tos, table, _proto, _scope, rtype, _flags = hdr.unpack_from(body)
            if fam != family or rtype != lib.RTN_UNICAST:
                continue
            dst = gateway = None
            oif = metric = 0
            for akind, value in parse_attrs(body[hdr.size:]):
                if akind == lib.RTA_TABLE and len(value) == 4:
                    table = struct.unpack("=I", value)[0]
                elif akind == lib.RTA_DST and len(value) == size:
                    dst = ip_address(bytes(value))
                elif akind == lib.RTA_OIF and len(value) == 4:
                    oif = struct.unpack("=I", value)[0]
                elif akind == lib.RTA_GATEWAY and len(value) == size:
                    gateway = ip_address(bytes(value))
                elif akind == lib.RTA_PRIORITY and len(value) == 4:
                    metric = struct.unpack("=I", value)[0]
            if oif != ifindex or table != lib.RT_TABLE_MAIN:
                continue
            base = dst if dst is not None else ip_address(bytes(size))
            out.append(Route(ip_network(f"{base}/{dst_len}"), gateway, metric))
    return out


# ------------------------------------------------------------ link attributes


def _link_message(ifindex: int) -> bytes:
    return fixed("struct ifinfomsg", ifi_family=lib.AF_UNSPEC, ifi_index=ifindex)


def move_link(nl: RtNetlink, ifindex: int, name: str, nsfd: int, where: str) -> None:
    """RTM_NEWLINK with IFLA_NET_NS_FD: move the interface into namespace *nsfd* (*where* names it).

    The kernel refuses (EEXIST) when the target already has an interface
    of this name, and keeps the interface where it was.
    """
    body = _link_message(ifindex) + attr(lib.IFLA_NET_NS_FD, struct.pack("=I", nsfd))
    what = f"cannot move {name} to network namespace {where}"
    try:
        nl.request(lib.RTM_NEWLINK, 0, body, what=what, name=name)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        raise error_from_errno(errno.EEXIST, "netns", name,
                               f"{what}: it has an interface named {name} already (rename or delete that one first)") from None


def get_carrier(nl: RtNetlink, ifindex: int, name: str) -> bool:
    """IFLA_CARRIER of RTM_GETLINK: whether the interface has carrier."""
    answers = nl.request(lib.RTM_GETLINK, 0, _link_message(ifindex), what=f"cannot read the carrier of {name}", name=name)
    size = ffi.sizeof("struct ifinfomsg")
    for kind, body in answers:
        if kind != lib.RTM_NEWLINK or len(body) < size:
            continue
        for akind, value in parse_attrs(body[size:]):
            if akind == lib.IFLA_CARRIER and len(value) >= 1:
                return bool(value[0])
    raise error_from_errno(errno.EPROTO, "netlink", name, f"cannot read the carrier of {name}: the kernel's answer has no IFLA_CARRIER")


# ------------------------------------------------------------------ IPv6 switch

_IPV6_CONF = "/proc/sys/net/ipv6/conf"


def set_ipv6(name: str, enabled: bool) -> None:
    """Turn IPv6 on or off on interface *name* (sysctl ``net.ipv6.conf.NAME.disable_ipv6``).

    Off, the interface has no IPv6 address, not even a link-local one, so
    once up it sends nothing of its own (no router solicitations, no MLD
    reports).  Do it before ``up()`` for a quiet interface.  A kernel
    without IPv6 (``ipv6.disable=1``) has nothing to turn off: harmless.
    Needs CAP_NET_ADMIN (a write under /proc/sys/net of this namespace).
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, not {enabled!r}")
    if not os.path.isdir(_IPV6_CONF):
        if enabled:
            raise error_from_errno(errno.EAFNOSUPPORT, "sysctl", name, f"cannot enable IPv6 on {name}: the kernel has no IPv6")
        return
    path = f"{_IPV6_CONF}/{name}/disable_ipv6"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeviceNotFoundError(errno.ENODEV, f"cannot {'enable' if enabled else 'disable'} IPv6: no such interface", name) from None
    except OSError as exc:
        raise error_from_errno(exc.errno or errno.EIO, "sysctl", name, f"cannot write {path}") from None
    try:
        os.write(fd, b"0\n" if enabled else b"1\n")
    except OSError as exc:
        raise error_from_errno(exc.errno or errno.EIO, "sysctl", name, f"cannot write {path}") from None
    finally:
        os.close(fd)
