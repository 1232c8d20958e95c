"""Link configuration on a BSD kernel: flags, MTU, index, IPv4/IPv6 addresses, routes.

Every function takes the platform's libc boundary and :class:`~. Numbers`;
none knows which BSD it runs on.  Validation that needs no kernel comes
first (ValueError before any syscall); every socket opened here is
close-on-exec and closed on every path.

Facts that shape this module (XNU xnu-11417.101.15, FreeBSD alike):

- Flags and MTU are ``SIOCGIF*``/``SIOCSIF*`` on the device's ``AF_INET``
  datagram control socket (``ifioctl``); the index is ``if_nametoindex``.
- IPv4: ``SIOCAIFADDR`` with an ``ifaliasreq`` (address, broadcast or
  peer, mask); on a point-to-point interface without a peer the kernel
  answers EDESTADDRREQ (``in_control``, in.c), refused here first.
  ``SIOCDIFADDR`` removes by address alone, EADDRNOTAVAIL if absent.
  Adding an address that is there updates it: no error.
- IPv6: ``SIOCAIFADDR_IN6`` with an ``in6_aliasreq`` on an ``AF_INET6``
  socket (``in6_control``), ``IN6_IFF_NODAD`` and infinite lifetimes; on a
  point-to-point interface a destination needs a /128 and elsewhere none is
  allowed, and a /0 prefix is refused (EINVAL in ``in6_update_ifa``):
  refused here first.  FreeBSD also refuses (EINVAL) to change the prefix
  length of an address that is there; the error says to remove it first.
  ``SIOCDIFADDR_IN6`` removes.
- Listing addresses uses ``sysctl(CTL_NET, PF_ROUTE, 0, 0, NET_RT_IFLIST,
  index)`` rather than getifaddrs: the kernel filters by interface, the
  answer is the same packed message format the route dump uses (one parser,
  one libc function, no linked list to walk and free), and FreeBSD has the
  same MIB.  ``RTA_BRD`` is the peer on a point-to-point interface.
- KAME embeds a link-local address's scope (the interface index) in bytes
  2-3 of the address inside the kernel, and sysctl shows it: cleared here
  as ``ifconfig`` does.
- Routes: ``RTM_ADD``/``RTM_DELETE`` on a ``PF_ROUTE`` socket opened per
  request.  A route out of the interface without a gateway has a
  ``sockaddr_dl`` naming the interface as gateway (``route add -interface``;
  ``ifa_ifwithroute`` resolves it by index); with a gateway, ``RTF_GATEWAY``
  and an ``RTA_IFP`` ``sockaddr_dl`` pin the interface (``rt_setif``).
  ``route_output`` queues our copy of the request, with ``rtm_errno`` or
  ``RTF_DONE``, before ``write`` returns (``rts_attach`` sets
  SO_USELOOPBACK), and every other listener's messages come in between:
  the reply is read like ``route(8)`` does (until our seq and pid), but
  each read waits at most REPLY_TIMEOUT seconds (a full socket buffer drops
  our copy: ``raw_input`` gives up with ENOBUFS), then ETIMEDOUT.
- ``RTM_DELETE`` names a destination and mask, not an interface: a route
  is removed only if the dump shows it out of this interface, so a route
  of another interface is left alone (as on Linux).
- BSD routes have no metric: asking for one is a ValueError.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import select
from ipaddress import IPv6Address, ip_interface, ip_network
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._netvalues import Address, IPAddress, IPInterface, IPNetwork, LinkState, Route
from ..errors import TunTapError, error_from_errno
from . import BsdLibc, Numbers, rtmsg
from .sockaddr import ip_of, netmask, prefix_of, sockaddr_dl, sockaddr_in, sockaddr_in6, sockaddr_ip

__all__ = [
    "control_socket", "get_flags", "set_flags", "get_mtu", "set_mtu", "ifindex", "is_pointopoint",
    "add_address", "remove_address", "list_addresses", "add_route", "remove_route", "list_routes", "set_lladdr",
    "get_lladdr", "address_of", "link_state", "interface_state", "route_socket",
]

_seq = itertools.count(1)  # rtm_seq of our requests (next() is atomic under the GIL)
_REPLY_SIZE = 2048  # an rt_msghdr and its sockaddrs: well under this
_MAX_FOREIGN = 10000  # other listeners' messages skipped while looking for our reply
#: Seconds a route request waits for each message while looking for its reply (tests shorten it).
REPLY_TIMEOUT = 5.0


def _error(lib: BsdLibc, k: Numbers, what: str, name: Optional[str], op: str = "ioctl",
           err: Optional[int] = None) -> OSError:
    """The library's exception for the platform errno *err* (default: the last call's)."""
    return error_from_errno(k.host_errno(lib.errno() if err is None else err), op, name, what)


def _socket(lib: BsdLibc, k: Numbers, family: str, kind: str, what: str) -> int:
    """A close-on-exec socket (the BSD socket() takes no SOCK_CLOEXEC flag on macOS)."""
    c = k.constants
    fd = lib.socket(c[family], c[kind], 0)
    if fd < 0:
        raise _error(lib, k, what, None, "socket")
    if lib.fcntl(fd, c["F_SETFD"], lib.ffi.cast("int", c["FD_CLOEXEC"])) < 0:
        exc = _error(lib, k, what, None, "socket")
        lib.close(fd)
        raise exc
    return fd


def route_socket(lib: BsdLibc, k: Numbers, what: str) -> int:
    """A new close-on-exec ``PF_ROUTE`` raw socket (routing requests, link events)."""
    return _socket(lib, k, "PF_ROUTE", "SOCK_RAW", what)


def control_socket(lib: BsdLibc, k: Numbers) -> int:
    """A new ``AF_INET`` datagram socket for the link ioctls (the device keeps it)."""
    return _socket(lib, k, "AF_INET", "SOCK_DGRAM", "cannot open an AF_INET socket for interface ioctls")


def _ifreq(lib: BsdLibc, name: str, ctype: str = "struct ifreq") -> Any:
    """A zeroed *ctype* naming interface *name*; ValueError if the name does not fit IFNAMSIZ with its NUL."""
    ifname = name.encode("ascii")
    if not 0 < len(ifname) < 16 or b"\0" in ifname:  # IFNAMSIZ 16 on both BSDs
        raise ValueError(f"interface name {name!r} is not 1 to 15 ASCII characters")
    req = lib.ffi.new(f"{ctype} *")
    lib.ffi.memmove(req, ifname, len(ifname))  # ifr_name / ifra_name come first in each
    return req


def _put(lib: BsdLibc, req: Any, field: str, sa: bytes) -> None:
    """Copy sockaddr bytes into member *field* (dotted through unions) of *req*."""
    lib.ffi.memmove(lib.ffi.addressof(req[0], *field.split(".")), sa, len(sa))


def _ioctl(lib: BsdLibc, k: Numbers, fd: int, request: str, arg: Any, name: str, what: str) -> None:
    if lib.ioctl(fd, k.ioctls[request], arg) < 0:
        raise _error(lib, k, what, name)


def get_flags(lib: BsdLibc, k: Numbers, ctl: int, name: str) -> int:
    """``SIOCGIFFLAGS``: the interface's IFF_* flags."""
    ifr = _ifreq(lib, name)
    _ioctl(lib, k, ctl, "SIOCGIFFLAGS", ifr, name, f"cannot read the flags of {name}")
    return int(ifr.ifr_ifru.ifru_flags) & 0xFFFF


def set_flags(lib: BsdLibc, k: Numbers, ctl: int, name: str, flags: int) -> None:
    """``SIOCSIFFLAGS`` (needs root)."""
    ifr = _ifreq(lib, name)
    ifr.ifr_ifru.ifru_flags = flags - 0x10000 if flags & 0x8000 else flags  # a C short
    _ioctl(lib, k, ctl, "SIOCSIFFLAGS", ifr, name, f"cannot set the flags of {name}")


def get_mtu(lib: BsdLibc, k: Numbers, ctl: int, name: str) -> int:
    """``SIOCGIFMTU``."""
    ifr = _ifreq(lib, name)
    _ioctl(lib, k, ctl, "SIOCGIFMTU", ifr, name, f"cannot read the MTU of {name}")
    return int(ifr.ifr_ifru.ifru_mtu)


def set_mtu(lib: BsdLibc, k: Numbers, ctl: int, name: str, mtu: int) -> None:
    """``SIOCSIFMTU`` (needs root; the kernel takes IF_MINMTU 72 to IF_MAXMTU 65535)."""
    ifr = _ifreq(lib, name)
    ifr.ifr_ifru.ifru_mtu = mtu
    _ioctl(lib, k, ctl, "SIOCSIFMTU", ifr, name, f"cannot set the MTU of {name} to {mtu}")


def ifindex(lib: BsdLibc, k: Numbers, name: str) -> int:
    """``if_nametoindex``: the interface index (0 from it is a failure with errno set)."""
    index = lib.if_nametoindex(name.encode("ascii"))
    if index == 0:
        err = lib.errno() or k.errnos["ENXIO"]
        raise _error(lib, k, f"cannot read the interface index of {name}", name, err=err)
    return int(index)


def set_lladdr(lib: BsdLibc, k: Numbers, ctl: int, name: str, mac: bytes) -> None:
    """``SIOCSIFLLADDR``: the MAC of an Ethernet-like interface (root).

    The driver takes ``ifr_addr.sa_len`` as the address length and
    ``sa_data`` as the address (``feth_ioctl`` -> ``ifnet_set_lladdr``,
    which wants the interface's own length, 6); utun has none (EOPNOTSUPP).
    """
    ifr = _ifreq(lib, name)
    sa = bytes((len(mac), k.constants["AF_LINK"])) + mac
    _put(lib, ifr, "ifr_ifru.ifru_addr", sa)
    _ioctl(lib, k, ctl, "SIOCSIFLLADDR", ifr, name, f"cannot set the hardware address of {name} to {mac.hex(':')}")


def is_pointopoint(lib: BsdLibc, k: Numbers, ctl: int, name: str) -> bool:
    """True if *name* is point-to-point: known from its name where the platform says so, else its flags."""
    if any(name.startswith(prefix) for prefix in k.pointopoint_prefixes):
        return True
    return bool(get_flags(lib, k, ctl, name) & k.constants["IFF_POINTOPOINT"])


# ------------------------------------------------------------------ addresses

def _check_address(k: Numbers, name: str, local: IPInterface, peer: Optional[IPAddress], p2p: bool) -> None:
    """What the kernel would refuse, refused first with what to do instead."""
    if local.version == 4:
        if p2p and peer is None:
            raise ValueError(f"{name} is a point-to-point interface: an IPv4 address needs the peer's address "
                             f"(add_address({str(local)!r}, peer=...)); {k.platform} refuses it without one "
                             "(EDESTADDRREQ)")
        if peer is not None and not p2p:
            raise ValueError(f"{name} is not point-to-point: {k.platform} would take peer {peer} as the "
                             "broadcast address; leave peer=None")
        return
    if local.network.prefixlen == 0:
        raise ValueError(f"address {local}: an IPv6 address needs a prefix of at least /1 on {k.platform}")
    if peer is not None and not p2p:
        raise ValueError(f"{name} is not point-to-point: {k.platform} takes an IPv6 peer only on a "
                         "point-to-point interface")
    if peer is not None and local.network.prefixlen != 128:
        raise ValueError(f"address {local} peer {peer}: on {k.platform} an IPv6 address with a peer must be "
                         f"a /128 (say '{local.ip}/128')")


def add_address(lib: BsdLibc, k: Numbers, ctl: int, name: str, local: IPInterface, peer: Optional[IPAddress]) -> None:
    """``SIOCAIFADDR`` / ``SIOCAIFADDR_IN6``; an address that is there is updated (harmless)."""
    c = k.constants
    _check_address(k, name, local, peer, is_pointopoint(lib, k, ctl, name))
    what = f"cannot add address {local}{f' peer {peer}' if peer else ''} to {name}"
    if local.version == 4:
        req = _ifreq(lib, name, "struct ifaliasreq")
        _put(lib, req, "ifra_addr", sockaddr_in(c["AF_INET"], local.ip.packed))
        if peer is not None:
            _put(lib, req, "ifra_broadaddr", sockaddr_in(c["AF_INET"], peer.packed))
        _put(lib, req, "ifra_mask", netmask(4, local.network.prefixlen, c["AF_INET"], c["AF_INET6"]))
        _ioctl(lib, k, ctl, "SIOCAIFADDR", req, name, what)
        return
    req = _ifreq(lib, name, "struct in6_aliasreq")
    _put(lib, req, "ifra_addr", sockaddr_in6(c["AF_INET6"], local.ip.packed))
    if peer is not None:
        _put(lib, req, "ifra_dstaddr", sockaddr_in6(c["AF_INET6"], peer.packed))
    _put(lib, req, "ifra_prefixmask", netmask(6, local.network.prefixlen, c["AF_INET"], c["AF_INET6"]))
    req.ifra_flags = c["IN6_IFF_NODAD"]  # a utun has no neighbours to detect duplicates with
    req.ifra_lifetime.ia6t_vltime = req.ifra_lifetime.ia6t_pltime = c["ND6_INFINITE_LIFETIME"]
    s6 = _socket(lib, k, "AF_INET6", "SOCK_DGRAM", what)
    try:
        if lib.ioctl(s6, k.ioctls["SIOCAIFADDR_IN6"], req) < 0:
            err = lib.errno()
            if k.host_errno(err) == _errno.EINVAL:  # in6_validate_ifra (FreeBSD): a prefix length may not change
                what += f" (if {local.ip} is there with another prefix length, remove it first)"
            raise _error(lib, k, what, name, err=err)
    finally:
        lib.close(s6)


def remove_address(lib: BsdLibc, k: Numbers, ctl: int, index: int, name: str, local: IPInterface) -> None:
    """``SIOCDIFADDR`` / ``SIOCDIFADDR_IN6`` of *local* with its prefix; absent is harmless.

    The kernel matches the address alone: one with another prefix is left
    alone here, as rtnetlink does on Linux.
    """
    if local not in (a.interface for a in list_addresses(lib, k, index, name)):
        return
    c = k.constants
    what = f"cannot remove address {local} from {name}"
    if local.version == 4:
        req = _ifreq(lib, name)
        _put(lib, req, "ifr_ifru.ifru_addr", sockaddr_in(c["AF_INET"], local.ip.packed))
        fd, own = ctl, False
        request = "SIOCDIFADDR"
    else:
        req = _ifreq(lib, name, "struct in6_ifreq")
        _put(lib, req, "ifr_ifru.ifru_addr", sockaddr_in6(c["AF_INET6"], local.ip.packed))
        fd, own = _socket(lib, k, "AF_INET6", "SOCK_DGRAM", what), True
        request = "SIOCDIFADDR_IN6"
    try:
        if lib.ioctl(fd, k.ioctls[request], req) < 0:
            err = lib.errno()
            if k.host_errno(err) != _errno.EADDRNOTAVAIL:  # gone since the listing: harmless
                raise _error(lib, k, what, name, err=err)
    finally:
        if own:
            lib.close(fd)


def _sysctl(lib: BsdLibc, k: Numbers, mib: Sequence[int], what: str, name: str) -> bytes:
    """The bytes of a sysctl table: size it, read it, again if it grew meanwhile (ENOMEM)."""
    ffi = lib.ffi
    name_c = ffi.new("int[]", list(mib))
    size = ffi.new("size_t *")
    for _ in range(10):
        if lib.sysctl(name_c, len(mib), ffi.NULL, size, ffi.NULL, 0) < 0:
            raise _error(lib, k, what, name, "sysctl")
        if size[0] == 0:
            return b""
        size[0] += size[0] // 8  # room for what appears between the two calls
        buf = ffi.new("char[]", size[0])
        if lib.sysctl(name_c, len(mib), buf, size, ffi.NULL, 0) == 0:
            return bytes(ffi.buffer(buf, size[0]))
        err = lib.errno()
        if k.host_errno(err) != _errno.ENOMEM:
            raise _error(lib, k, what, name, "sysctl", err)
    raise _error(lib, k, what + ": the table kept growing", name, "sysctl", k.errnos["ENOMEM"])


def _unembed(ip: Optional[IPAddress]) -> Optional[IPAddress]:
    """A link-local IPv6 address without the scope KAME embeds in bytes 2-3."""
    if isinstance(ip, IPv6Address) and ip.is_link_local:
        raw = bytearray(ip.packed)
        raw[2:4] = b"\0\0"
        return IPv6Address(bytes(raw))
    return ip


def address_of(k: Numbers, sas: Dict[int, bytes], p2p: bool) -> Optional[Address]:
    """The Address of an RTM_NEWADDR/RTM_DELADDR's sockaddrs (None for the link-level one); RTA_BRD is the peer if *p2p*."""
    c = k.constants
    ip = _unembed(ip_of(sas.get(c["RTA_IFA"], b""), c["AF_INET"], c["AF_INET6"]))
    if ip is None:
        return None
    prefix = prefix_of(sas.get(c["RTA_NETMASK"]), ip.version)
    brd = sas.get(c["RTA_BRD"])
    peer = _unembed(ip_of(brd, c["AF_INET"], c["AF_INET6"])) if p2p and brd else None
    if peer is not None and (peer.version != ip.version or not int(peer)):
        peer = None
    return Address(ip_interface((ip, prefix)), peer)


def link_state(k: Numbers, index: int, flags: int, mtu: int, state: Optional[int]) -> LinkState:
    """An RTM_IFINFO's LinkState: the carrier is off only when the kernel says LINK_STATE_DOWN (FreeBSD)."""
    down = k.constants.get("LINK_STATE_DOWN")
    return LinkState(index, flags, mtu, state is None or down is None or state != down)


def interface_state(lib: BsdLibc, k: Numbers, index: int, name: str) -> Tuple[Optional[LinkState], List[Address]]:
    """Interface *index*'s state (None: no such interface) and addresses, in the kernel's order (NET_RT_IFLIST)."""
    c = k.constants
    data = _sysctl(lib, k, (c["CTL_NET"], c["PF_ROUTE"], 0, 0, c["NET_RT_IFLIST"], index),
                   f"cannot list the addresses of {name}", name)
    state: Optional[LinkState] = None
    out: List[Address] = []
    for kind, msg in rtmsg.walk(data, k):
        if kind not in (c["RTM_IFINFO"], c["RTM_NEWADDR"]):
            continue
        hdr, sas = rtmsg.sockaddrs(lib.ffi, k, msg)
        if hdr.ifindex != index:
            continue
        if kind == c["RTM_IFINFO"]:
            state = link_state(k, index, hdr.flags, *rtmsg.link_data(lib.ffi, msg))
            continue
        address = address_of(k, sas, bool(state and state.flags & c["IFF_POINTOPOINT"]))
        if address is not None:
            out.append(address)
    return state, out


def list_addresses(lib: BsdLibc, k: Numbers, index: int, name: str) -> List[Address]:
    """Every IPv4 and IPv6 address of interface *index*, in the kernel's order (NET_RT_IFLIST)."""
    return interface_state(lib, k, index, name)[1]


def get_lladdr(lib: BsdLibc, k: Numbers, index: int, name: str) -> bytes:
    """The link-level address of interface *index* (b"" if it has none): the ``sockaddr_dl`` of its RTM_IFINFO.

    ``sysctl_iflist`` puts the interface's ``sockaddr_dl`` in RTA_IFP:
    ``sdl_data`` holds the name (``sdl_nlen`` bytes), then the address
    (``sdl_alen`` bytes) at offset 8 + sdl_nlen (net/if_dl.h ``LLADDR``).
    """
    c = k.constants
    data = _sysctl(lib, k, (c["CTL_NET"], c["PF_ROUTE"], 0, 0, c["NET_RT_IFLIST"], index),
                   f"cannot read the hardware address of {name}", name)
    for kind, msg in rtmsg.walk(data, k):
        if kind != c["RTM_IFINFO"]:
            continue
        hdr, sas = rtmsg.sockaddrs(lib.ffi, k, msg)
        dl = sas.get(c["RTA_IFP"], b"")
        if hdr.ifindex == index and len(dl) >= 8 and dl[1] == c["AF_LINK"]:
            nlen, alen = dl[5], dl[6]
            return dl[8 + nlen:8 + nlen + alen]
    return b""


# ------------------------------------------------------------------ routes

def _no_metric(k: Numbers, metric: Optional[int]) -> None:
    if metric is not None:
        raise ValueError(f"routes on {k.platform} have no metric: leave metric=None")


def _route_items(k: Numbers, index: int, destination: IPNetwork, gateway: Optional[IPAddress]) -> Tuple[int, List[Tuple[int, bytes]]]:
    """Flags and (RTA bit, sockaddr) pairs of a route of *destination* out of interface *index*."""
    c = k.constants
    inet, inet6 = c["AF_INET"], c["AF_INET6"]
    flags = c["RTF_UP"] | c["RTF_STATIC"]
    items = [(c["RTA_DST"], sockaddr_ip(destination.network_address, inet, inet6))]
    if destination.prefixlen == destination.max_prefixlen:
        flags |= c["RTF_HOST"]  # no netmask: rtrequest keeps host routes without one
    else:
        items.append((c["RTA_NETMASK"], netmask(destination.version, destination.prefixlen, inet, inet6)))
    link = sockaddr_dl(c["AF_LINK"], index)
    if gateway is None:
        items.append((c["RTA_GATEWAY"], link))
    else:
        flags |= c["RTF_GATEWAY"]
        items += [(c["RTA_GATEWAY"], sockaddr_ip(gateway, inet, inet6)), (c["RTA_IFP"], link)]
    return flags, items


def _route_request(lib: BsdLibc, k: Numbers, rtm_type: str, index: int, name: str, destination: IPNetwork,
                   gateway: Optional[IPAddress], what: str, harmless: int) -> None:
    """Write one RTM_ADD/RTM_DELETE and check the kernel's copy of it; errno *harmless* is success."""
    c, ffi = k.constants, lib.ffi
    flags, items = _route_items(k, index, destination, gateway)
    seq = next(_seq) & 0x7FFFFFFF
    msg = rtmsg.route_request(ffi, k, c[rtm_type], flags, index, seq, items)
    fd = route_socket(lib, k, what)
    try:
        if lib.write(fd, msg, len(msg)) < 0:
            err = lib.errno()
            if k.host_errno(err) == harmless:
                return
            raise _error(lib, k, what, name, "route", err)
        buf = ffi.new("char[]", _REPLY_SIZE)
        pid = os.getpid()
        waiter = select.poll()  # a real fd on macOS and in the simulated kernel alike
        waiter.register(fd, select.POLLIN)
        for _ in range(_MAX_FOREIGN):
            if not waiter.poll(int(REPLY_TIMEOUT * 1000)):
                raise TunTapError(_errno.ETIMEDOUT, f"{what}: the kernel's answer did not come within "
                                  f"{REPLY_TIMEOUT:g} s (its copy may have been dropped: try again)", name)
            n = lib.read(fd, buf, _REPLY_SIZE)
            if n < 0:
                raise _error(lib, k, what + " (reading the kernel's answer)", name, "route")
            reply = bytes(ffi.buffer(buf, n))
            if len(reply) < 4 or reply[3] != c[rtm_type]:
                continue
            try:
                hdr, _ = rtmsg.header(ffi, k, reply)
            except ValueError:
                continue
            if hdr.seq == seq and hdr.pid == pid:
                break
        else:
            raise TunTapError(_errno.EPROTO, f"{what}: no answer from the kernel among {_MAX_FOREIGN} messages", name)
        if hdr.errno and k.host_errno(hdr.errno) != harmless:
            raise _error(lib, k, what, name, "route", hdr.errno)
    finally:
        lib.close(fd)


def add_route(lib: BsdLibc, k: Numbers, index: int, name: str, destination: IPNetwork,
              gateway: Optional[IPAddress], metric: Optional[int]) -> None:
    """``RTM_ADD`` of *destination* out of the interface; EEXIST (a route there, maybe another's) is harmless."""
    _no_metric(k, metric)
    what = f"cannot add route {destination}{f' via {gateway}' if gateway else ''} dev {name}"
    _route_request(lib, k, "RTM_ADD", index, name, destination, gateway, what, _errno.EEXIST)


def remove_route(lib: BsdLibc, k: Numbers, index: int, name: str, destination: IPNetwork,
                 gateway: Optional[IPAddress], metric: Optional[int]) -> None:
    """``RTM_DELETE`` of the route out of the interface; absent (here) is harmless."""
    _no_metric(k, metric)
    if not any(r.destination == destination and (gateway is None or r.gateway == gateway)
               for r in list_routes(lib, k, index, name)):
        return
    what = f"cannot remove route {destination} dev {name}"
    _route_request(lib, k, "RTM_DELETE", index, name, destination, gateway, what, _errno.ESRCH)


def list_routes(lib: BsdLibc, k: Numbers, index: int, name: str) -> List[Route]:
    """The routes out of interface *index*, IPv4 then IPv6 (NET_RT_DUMP; no cloned or local entries)."""
    c = k.constants
    data = _sysctl(lib, k, (c["CTL_NET"], c["PF_ROUTE"], 0, 0, c["NET_RT_DUMP"], 0),
                   f"cannot list the routes of {name}", name)
    skip = c["RTF_WASCLONED"] | c["RTF_LLINFO"] | c["RTF_LOCAL"] | c["RTF_BROADCAST"] | c["RTF_MULTICAST"]
    found: Dict[int, List[Route]] = {4: [], 6: []}
    for kind, msg in rtmsg.walk(data, k):
        if kind != c["RTM_GET"]:  # sysctl_dumpentry's type
            continue
        hdr, sas = rtmsg.sockaddrs(lib.ffi, k, msg)
        if hdr.ifindex != index or hdr.flags & skip:
            continue
        dst = _unembed(ip_of(sas.get(c["RTA_DST"], b""), c["AF_INET"], c["AF_INET6"]))
        if dst is None:
            continue
        mask = None if hdr.flags & c["RTF_HOST"] else sas.get(c["RTA_NETMASK"])
        gateway = None
        if hdr.flags & c["RTF_GATEWAY"]:
            gateway = _unembed(ip_of(sas.get(c["RTA_GATEWAY"], b""), c["AF_INET"], c["AF_INET6"]))
        found[dst.version].append(Route(ip_network((dst, prefix_of(mask, dst.version)), strict=False), gateway))
    return found[4] + found[6]
