"""The network side of the simulated XNU kernel: interfaces, addresses, routes, PF_ROUTE, sysctl.

:class:`XnuNetKernel` is ``darwin_kernel.XnuKernel`` (utun's control
socket) plus what link configuration reaches: ``AF_INET``/``AF_INET6``
datagram sockets and their interface ioctls, ``PF_ROUTE`` sockets whose
replies are real datagrams on the socket's own socketpair, ``sysctl``'s
route and interface tables, and ``if_nametoindex``.  Connecting a utun
attaches its interface here, closing it detaches it (with its addresses
and routes).  It follows xnu-11417.101.15 rule by rule; each rule cites
the kernel function.  Every number (requests, offsets, errno values) comes
from XNU's headers through ``tests/darwin_golden.json``, not from the
backend's cdefs: errors are XNU's errno values (EDESTADDRREQ is 39 here,
not Linux's 89), so the backend's mapping is exercised.  The PF_ROUTE write
and ``sysctl`` plumbing both BSDs share is ``bsd_net.PfRouteSide``'s; the
rules here are XNU's.

Link events: every PF_ROUTE socket hears ``rt_ifmsg``'s RTM_IFINFO when
an interface goes up or down (``ifnet_set_flags`` -> ``if_updown``) or
SIOCSIFMTU succeeds, and ``rt_newaddrmsg``'s RTM_NEWADDR/RTM_DELADDR when
an address comes or goes (``rtinit``, ``in6_ifloop_request``); a message
that does not fit a socket's buffer is dropped silently (``raw_input``).

Not simulated: the routes the kernel adds by itself for an address
(``in_ifinit``'s ``rtinit``), cloning, RTM_GET/RTM_CHANGE, scoped routes,
the address messages of an update in place (``in_ifinit`` scrubbing and
re-adding an address that is there).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from bsd_net import PfRouteSide
from bsd_packets import raw_input
from darwin_kernel import GOLDEN, XnuKernel, _Socket
from tuntap_cffi._darwin import libc

C = GOLDEN["constants"]
IOCTLS = GOLDEN["ioctls"]
SIZE = GOLDEN["sizeof"]
OFF = GOLDEN["offsetof"]
E = {name: value for name, value in C.items() if name.startswith("E")}  # XNU's errno values
REQUEST_NAMES = {value: name for name, value in IOCTLS.items()}
AF_INET, AF_INET6, AF_LINK, PF_ROUTE = C["AF_INET"], C["AF_INET6"], C["AF_LINK"], C["PF_ROUTE"]
SOCK_DGRAM, SOCK_RAW = C["SOCK_DGRAM"], C["SOCK_RAW"]
IFF_UP, IFF_POINTOPOINT, IFF_LOOPBACK = C["IFF_UP"], C["IFF_POINTOPOINT"], C["IFF_LOOPBACK"]
IFF_BROADCAST, IFF_RUNNING, IFF_MULTICAST = C["IFF_BROADCAST"], C["IFF_RUNNING"], C["IFF_MULTICAST"]
# if_private.h (KERNEL_PRIVATE, so not in the golden probe): IFF_BROADCAST|POINTOPOINT|RUNNING|OACTIVE|SIMPLEX|
# MULTICAST|ALLMULTI, the flags ifioctl's SIOCSIFFLAGS keeps whatever is asked.
IFF_CANTCHANGE = IFF_BROADCAST | IFF_POINTOPOINT | IFF_RUNNING | 0x400 | 0x800 | IFF_MULTICAST | 0x200
IF_MINMTU, IF_MAXMTU = 72, 65535  # if_var.h
UTUN_DEFAULT_MTU = 1500  # if_utun.c
RTAX = [1 << i for i in range(C["RTAX_MAX"])]


def roundup32(n: int) -> int:
    """rtsock.c ROUNDUP32: a sockaddr's room in a routing message."""
    return 1 + ((n - 1) | 3) if n > 0 else 4


def iocparm_len(request: int) -> int:
    """ioccom.h IOCPARM_LEN: the bytes ioctl() copies in and out."""
    return (request >> 16) & C["IOCPARM_MASK"]


def trimmed(sa: bytes) -> bytes:
    """A mask as rn_addmask keeps it: cut after its last non-zero byte, sa_len saying so (0: all zero)."""
    body = sa[2:].rstrip(b"\0")
    return bytes((2 + len(body), sa[1])) + body if body else b""


def sockaddr(family: int, addr: bytes) -> bytes:
    if family == AF_INET:
        return bytes((16, AF_INET, 0, 0)) + addr + bytes(8)
    return bytes((28, AF_INET6)) + bytes(6) + addr + bytes(4)


def addr_of(sa: bytes) -> Tuple[int, bytes]:
    """(family, address bytes) of a sockaddr_in/in6; bytes past sa_len are zero."""
    if len(sa) < 2:
        return 0, b""
    full = (sa[:sa[0]] + bytes(28))
    return (AF_INET, full[4:8]) if sa[1] == AF_INET else (sa[1], full[8:24])


def prefix_len(mask: bytes) -> int:
    """in6_mask2len: the leading ones; -1 if a one follows a zero."""
    bits = "".join(f"{b:08b}" for b in mask)
    ones = len(bits) - len(bits.lstrip("1"))
    return ones if "1" not in bits[ones:] else -1


def mask_bytes(plen: int, size: int) -> bytes:
    return (((1 << plen) - 1) << (size * 8 - plen)).to_bytes(size, "big")


@dataclass
class InAddr:
    addr: bytes
    mask: bytes
    dst: bytes  # the peer on a point-to-point interface, else the broadcast address


@dataclass
class In6Addr:
    addr: bytes  # as the kernel keeps it: a link-local one with its scope embedded (KAME)
    plen: int
    dst: Optional[bytes]
    flags: int
    vltime: int
    pltime: int


@dataclass
class Ifnet:
    name: str
    index: int
    flags: int
    mtu: int
    inet: List[InAddr] = field(default_factory=list)
    inet6: List[In6Addr] = field(default_factory=list)
    lladdr: Optional[bytes] = None  # an Ethernet-like interface's MAC (feth); None: it has none (utun)


@dataclass
class RtEntry:
    family: int
    dst: bytes
    mask: Optional[bytes]  # None: a host route (rtrequest keeps no mask for RTF_HOST)
    gateway: bytes  # the gateway sockaddr as given
    flags: int
    ifindex: int


class XnuNetKernel(XnuKernel, PfRouteSide):
    """``XnuKernel`` with interfaces, addresses, a routing table and the sockets that reach them."""

    C, E, OFF, SIZE = C, E, OFF, SIZE  # XNU's numbers for PfRouteSide
    sa_room = staticmethod(roundup32)  # rtsock.c ROUNDUP32

    def __init__(self, root: bool = True) -> None:
        super().__init__(root)
        self.ffi.cdef(libc.NET_FUNCTIONS)
        self.ifnets: Dict[str, Ifnet] = {}
        self.routes: List[RtEntry] = []
        self.net_sockets: Dict[int, int] = {}  # fd -> family (AF_INET, AF_INET6, PF_ROUTE)
        self.chatter: List[bytes] = []  # other listeners' messages each route socket gets before a reply
        self.full_buffers = False  # raw_input: sbappendaddr fails on a full socket buffer, the copy is dropped
        self.dropped = 0  # link-event messages raw_input dropped on a full socket buffer
        self._if_index = 0
        lo0 = self.attach("lo0", IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_MULTICAST, 16384)
        lo0.inet.append(InAddr(bytes((127, 0, 0, 1)), bytes((255, 0, 0, 0)), bytes(4)))
        self.routes.append(RtEntry(AF_INET, bytes((127, 0, 0, 0)), bytes((255, 0, 0, 0)),
                                   sockaddr(AF_INET, bytes((127, 0, 0, 1))), C["RTF_UP"], lo0.index))

    # ------------------------------------------------------------ interfaces
    def attach(self, name: str, flags: int, mtu: int) -> Ifnet:
        """ifnet_attach: a new interface with the next index (if_next_index)."""
        self._if_index += 1
        ifp = self.ifnets[name] = Ifnet(name, self._if_index, flags, mtu)
        return ifp

    def detach(self, name: str) -> None:
        """ifnet_detach: the interface goes with its addresses (in_purgeaddrs) and routes (if_rtproto_del)."""
        ifp = self.ifnets.pop(name)
        self.routes = [r for r in self.routes if r.ifindex != ifp.index]

    def _by_index(self, index: int) -> Optional[Ifnet]:
        return next((i for i in self.ifnets.values() if i.index == index), None)

    def connect(self, fd: int, addr: Any, addrlen: int) -> int:
        result = super().connect(fd, addr, addrlen)
        if result == 0:  # utun_ctl_connect -> utun_attach: IFF_UP | IFF_MULTICAST | IFF_POINTOPOINT, MTU 1500
            self.attach(f"utun{self.sockets[fd].unit - 1}", IFF_UP | IFF_MULTICAST | IFF_POINTOPOINT,
                        UTUN_DEFAULT_MTU)
        return result

    def close(self, fd: int) -> int:
        self.net_sockets.pop(fd, None)
        sock = self.sockets.get(fd)
        if sock is not None and sock.control is not None:  # utun_ctl_disconnect detaches the interface
            self.detach(f"utun{sock.unit - 1}")
        return super().close(fd)

    # ------------------------------------------------------------ sockets
    def socket(self, domain: int, type: int, protocol: int) -> int:
        if domain not in (AF_INET, AF_INET6, PF_ROUTE):
            return super().socket(domain, type, protocol)
        self.calls.append(("socket", domain, type))
        if (domain == PF_ROUTE) != (type == SOCK_RAW) or type not in (SOCK_DGRAM, SOCK_RAW):
            return self._fail(E["EPROTOTYPE"])  # socreate: no protosw of that type in the domain
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)  # no SOCK_CLOEXEC on macOS: open across exec until fcntl
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        self.net_sockets[fd] = domain
        return fd

    def if_nametoindex(self, name: bytes) -> int:
        """libc's if_nametoindex: 0 and ENXIO for an unknown name."""
        self.calls.append(("if_nametoindex",))
        ifp = self.ifnets.get(self.ffi.string(name).decode() if not isinstance(name, bytes) else name.decode())
        if ifp is None:
            self._fail(E["ENXIO"])
            return 0
        return ifp.index

    # ------------------------------------------------------------ ioctls
    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        family = self.net_sockets.get(fd)
        if family is None:
            return super().ioctl(fd, request, arg)
        name = REQUEST_NAMES.get(request, hex(request))
        self.calls.append(("ioctl", name))
        buf = self.ffi.buffer(self.ffi.cast("char *", arg), iocparm_len(request))
        data = bytearray(buf)  # copyin
        error = self._ifioctl(family, name, data)
        if error:
            return self._fail(error)
        buf[:] = bytes(data)  # copyout
        return 0

    def _ifioctl(self, family: int, request: str, data: bytearray) -> int:
        ifname = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
        ifp = self.ifnets.get(ifname)
        if ifp is None:
            return E["ENXIO"]  # ifioctl: ifunit(ifr->ifr_name) == NULL
        if request in ("SIOCAIFADDR", "SIOCDIFADDR") and family != AF_INET or \
                request in ("SIOCAIFADDR_IN6", "SIOCDIFADDR_IN6") and family != AF_INET6:
            return E["EOPNOTSUPP"]  # ifioctl hands it to the socket's pru_control, which knows it not
        flags_at, mtu_at = OFF["struct ifreq:ifr_ifru.ifru_flags"], OFF["struct ifreq:ifr_ifru.ifru_mtu"]
        if request == "SIOCGIFFLAGS":
            struct.pack_into("=h", data, flags_at, ifp.flags - 0x10000 if ifp.flags & 0x8000 else ifp.flags)
            return 0
        if request == "SIOCGIFMTU":
            struct.pack_into("=i", data, mtu_at, ifp.mtu)
            return 0
        if request not in ("SIOCSIFFLAGS", "SIOCSIFMTU", "SIOCAIFADDR", "SIOCDIFADDR", "SIOCAIFADDR_IN6",
                           "SIOCDIFADDR_IN6", "SIOCSIFLLADDR"):
            return E["EOPNOTSUPP"]
        if not self.root:
            return E["EPERM"]  # ifioctl: proc_suser(p); in_control/in6_control: not privileged
        if request == "SIOCSIFFLAGS":  # ifioctl: the IFF_CANTCHANGE bits stay the kernel's
            asked = struct.unpack_from("=h", data, flags_at)[0] & 0xFFFF
            old, ifp.flags = ifp.flags, (ifp.flags & IFF_CANTCHANGE) | (asked & ~IFF_CANTCHANGE & 0xFFFF)
            if (old ^ ifp.flags) & IFF_UP:  # ifnet_set_flags -> if_updown -> rt_ifmsg
                self.rt_ifmsg(ifp)
            return 0
        if request == "SIOCSIFMTU":
            mtu = struct.unpack_from("=i", data, mtu_at)[0]
            if not IF_MINMTU <= mtu <= IF_MAXMTU:
                return E["EINVAL"]  # ifioctl SIOCSIFMTU
            ifp.mtu = mtu  # utun_ioctl: ifnet_set_mtu
            self.rt_ifmsg(ifp)  # ifioctl SIOCSIFMTU: after the driver took it, changed or not
            return 0
        if request == "SIOCSIFLLADDR":  # ifioctl -> the driver: feth_ioctl's ifnet_set_lladdr, utun_ioctl's default
            if ifp.lladdr is None:
                return E["EOPNOTSUPP"]
            at = OFF["struct ifreq:ifr_ifru.ifru_addr"]
            sa_len = data[at]
            if sa_len != len(ifp.lladdr):
                return E["EINVAL"]  # ifnet_set_lladdr: not the interface's address length
            ifp.lladdr = bytes(data[at + 2:at + 2 + sa_len])
            return 0
        if request == "SIOCAIFADDR":
            return self._in_aifaddr(ifp, data)
        if request == "SIOCDIFADDR":
            return self._in_difaddr(ifp, data)
        if request == "SIOCAIFADDR_IN6":
            return self._in6_update_ifa(ifp, data)
        return self._in6_difaddr(ifp, data)

    def _in_aifaddr(self, ifp: Ifnet, data: bytearray) -> int:
        at = {f: OFF[f"struct ifaliasreq:ifra_{f}"] for f in ("addr", "broadaddr", "mask")}
        # in_control copies the three sockaddrs whole and reads each sin_addr (@4), whatever its sa_len.
        family = data[at["addr"] + 1]
        addr, dst, mask = (bytes(data[at[f] + 4:at[f] + 8]) for f in ("addr", "broadaddr", "mask"))
        if family != AF_INET:
            return E["EINVAL"]  # in_control: SIOCAIFADDR of another family
        if ifp.flags & IFF_POINTOPOINT and dst == bytes(4):
            return E["EDESTADDRREQ"]  # in_control: a point-to-point interface needs the destination
        for ia in ifp.inet:
            if ia.addr == addr:  # in_control: the address is there: in_ifinit updates it
                ia.mask, ia.dst = mask, dst
                return 0
        ifp.inet.append(InAddr(addr, mask, dst))
        self.rt_newaddrmsg(C["RTM_NEWADDR"], ifp, AF_INET, addr, mask, dst)  # in_ifinit -> rtinit
        return 0

    def _in_difaddr(self, ifp: Ifnet, data: bytearray) -> int:
        at = OFF["struct ifreq:ifr_ifru.ifru_addr"]
        _, addr = addr_of(bytes(data[at:at + 16]))
        for ia in ifp.inet:
            if ia.addr == addr:
                ifp.inet.remove(ia)
                self.rt_newaddrmsg(C["RTM_DELADDR"], ifp, AF_INET, ia.addr, ia.mask, ia.dst)  # in_ifscrub -> rtinit
                return 0
        return E["EADDRNOTAVAIL"]  # in_control SIOCDIFADDR: ia == NULL

    def _in6_lookup(self, ifp: Ifnet, addr: bytes) -> bytes:
        """The address as stored: a link-local one gets the interface index in bytes 2-3 (in6_update_ifa)."""
        if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80 and addr[2:4] == b"\0\0":
            return addr[:2] + ifp.index.to_bytes(2, "big") + addr[4:]
        return addr

    def _in6_update_ifa(self, ifp: Ifnet, data: bytearray) -> int:
        name = "struct in6_aliasreq:ifra_"
        addr_sa = bytes(data[OFF[name + "addr"]:OFF[name + "addr"] + 28])
        dst_sa = bytes(data[OFF[name + "dstaddr"]:OFF[name + "dstaddr"] + 28])
        mask_sa = bytes(data[OFF[name + "prefixmask"]:OFF[name + "prefixmask"] + 28])
        flags = struct.unpack_from("=i", data, OFF[name + "flags"])[0]
        vltime = struct.unpack_from("=I", data, OFF[name + "lifetime.ia6t_vltime"])[0]
        pltime = struct.unpack_from("=I", data, OFF[name + "lifetime.ia6t_pltime"])[0]
        if addr_sa[1] != AF_INET6 or addr_sa[0] != 28:
            return E["EAFNOSUPPORT"]  # in6_update_ifa: not a valid sockaddr_in6
        if mask_sa[0] == 0 or mask_sa[0] > 28:
            return E["EINVAL"]  # in6_update_ifa: ifra_prefixmask.sin6_len out of bounds
        plen = prefix_len(mask_sa[8:mask_sa[0]])
        if plen <= 0:
            return E["EINVAL"]  # in6_update_ifa: in6_mask2len gave no usable prefix
        if pltime > vltime:
            return E["EINVAL"]  # in6_update_ifa: pltime > vltime
        if ifp.flags & (IFF_LOOPBACK | IFF_POINTOPOINT):
            if dst_sa[1] == AF_INET6 and plen != 128:
                return E["EINVAL"]  # in6_update_ifa: prefix length < 128 with explicit dstaddr
            if dst_sa[1] not in (AF_INET6, 0):
                return E["EAFNOSUPPORT"]
        elif dst_sa[1] != 0:
            return E["EINVAL"]  # in6_update_ifa: dstaddr valid only on p2p and loopback interfaces
        addr = self._in6_lookup(ifp, addr_sa[8:24])
        dst = dst_sa[8:24] if dst_sa[1] == AF_INET6 else None
        for ia in ifp.inet6:
            if ia.addr == addr:  # in6ifa_ifpwithaddr found it: updated in place
                ia.plen, ia.dst, ia.flags, ia.vltime, ia.pltime = plen, dst, flags, vltime, pltime
                return 0
        ifp.inet6.append(In6Addr(addr, plen, dst, flags, vltime, pltime))
        self.rt_newaddrmsg(C["RTM_NEWADDR"], ifp, AF_INET6, addr, mask_bytes(plen, 16), dst)  # in6_ifloop_request
        return 0

    def _in6_difaddr(self, ifp: Ifnet, data: bytearray) -> int:
        at = OFF["struct in6_ifreq:ifr_ifru.ifru_addr"]
        addr = self._in6_lookup(ifp, bytes(data[at + 8:at + 24]))
        for ia in ifp.inet6:
            if ia.addr == addr:
                ifp.inet6.remove(ia)
                self.rt_newaddrmsg(C["RTM_DELADDR"], ifp, AF_INET6, ia.addr, mask_bytes(ia.plen, 16), ia.dst)
                return 0
        return E["EADDRNOTAVAIL"]  # in6_control SIOCDIFADDR_IN6: no such address on the interface

    # ------------------------------------------------------------ PF_ROUTE
    def write(self, fd: int, buf: Any, count: int) -> int:
        if self.net_sockets.get(fd) != PF_ROUTE:
            return super().write(fd, buf, count)
        msg = bytes(buf[:count]) if isinstance(buf, (bytes, bytearray)) else self.ffi.buffer(buf, count)[:]
        return self.route_write(fd, msg)

    def _route_request(self, msg: bytes, size: int) -> int:
        hdr = {f: OFF[f"struct rt_msghdr:rtm_{f}"] for f in ("version", "type", "flags")}
        if msg[hdr["version"]] != C["RTM_VERSION"]:
            return E["EPROTONOSUPPORT"]
        rtm_type = msg[hdr["type"]]
        if rtm_type != C["RTM_GET"] and not self.root:
            return E["EPERM"]  # route_output: only privileged sockets change routes (SS_PRIV)
        flags, addrs = struct.unpack_from("=ii", msg, hdr["flags"])
        sas: Dict[int, bytes] = {}
        at = size
        for bit in RTAX:  # rt_xaddrs: one sockaddr per bit, ROUNDUP32 apart
            if addrs & bit:
                if at >= len(msg):
                    return E["EINVAL"]
                sa_len = msg[at]
                if at + roundup32(sa_len) > len(msg):
                    break
                sas[bit] = msg[at:at + sa_len]
                at += roundup32(sa_len)
        dst = sas.get(C["RTA_DST"])
        if dst is None or len(dst) < 2:
            return E["EINVAL"]  # route_output: no destination
        if dst[1] == AF_INET and dst[0] < 8 or dst[1] == AF_INET6 and dst[0] < 28:
            return E["EINVAL"]  # route_output: sa_len too short for the address
        if dst[1] not in (AF_INET, AF_INET6):
            return E["ESRCH"]  # rtrequest: no rt_tables[af] for it here
        family, dst_addr = addr_of(dst)
        size_of = 4 if family == AF_INET else 16
        mask: Optional[bytes] = None
        if not flags & C["RTF_HOST"] and C["RTA_NETMASK"] in sas:  # rtrequest: a host route keeps no mask
            mask = (sas[C["RTA_NETMASK"]][4 if family == AF_INET else 8:] + bytes(16))[:size_of]
        key = bytes(a & m for a, m in zip(dst_addr, mask)) if mask is not None else dst_addr  # rt_maskedcopy
        found = next((r for r in self.routes if (r.family, r.dst, r.mask) == (family, key, mask)), None)
        if rtm_type == C["RTM_DELETE"]:
            if found is None:
                return E["ESRCH"]  # rtrequest RTM_DELETE: rnh_deladdr found nothing
            self.routes.remove(found)
            return 0
        if rtm_type != C["RTM_ADD"]:
            return E["EOPNOTSUPP"]  # (RTM_GET, RTM_CHANGE ... are not simulated)
        gateway = sas.get(C["RTA_GATEWAY"])
        if gateway is None:
            return E["EINVAL"]  # route_output RTM_ADD: no gateway
        ifp = self._ifa_ifwithroute(flags, gateway)
        if ifp is None:
            return E["ENETUNREACH"]  # rtrequest: ifa_ifwithroute found no interface
        ifpaddr = sas.get(C["RTA_IFP"])
        if found is not None:
            return E["EEXIST"]  # rtrequest RTM_ADD: rnh_addaddr refused a duplicate key and mask
        if ifpaddr is not None and len(ifpaddr) >= 4 and ifpaddr[1] == AF_LINK:
            chosen = self._by_index(struct.unpack_from("=H", ifpaddr, 2)[0])  # rt_setif: the asked interface
            ifp = chosen or ifp
        self.routes.append(RtEntry(family, key, mask, gateway, flags | C["RTF_UP"], ifp.index))
        return 0

    def _ifa_ifwithroute(self, flags: int, gateway: bytes) -> Optional[Ifnet]:
        """ifa_ifwithroute (route.c): the interface a gateway reaches."""
        if len(gateway) >= 4 and gateway[1] == AF_LINK:  # ifa_ifwithnet: an AF_LINK one names its index
            return self._by_index(struct.unpack_from("=H", gateway, 2)[0])
        family, addr = addr_of(gateway)
        for ifp in self.ifnets.values():
            if family == AF_INET:
                for ia in ifp.inet:
                    on_link = bytes(a & m for a, m in zip(addr, ia.mask)) == bytes(a & m for a, m in zip(ia.addr, ia.mask))
                    if addr in (ia.addr, ia.dst) or flags & C["RTF_GATEWAY"] and on_link:
                        return ifp
            elif family == AF_INET6:
                for ia6 in ifp.inet6:
                    m = mask_bytes(ia6.plen, 16)
                    on_link = bytes(a & b for a, b in zip(addr, m)) == bytes(a & b for a, b in zip(ia6.addr, m))
                    if addr == ia6.addr or addr == ia6.dst or on_link:
                        return ifp
        return None

    # ------------------------------------------------------------ sysctl (PfRouteSide's, with these tables)
    def _route_sockaddrs(self, r: RtEntry) -> List[Tuple[int, bytes]]:
        """sysctl_dumpentry: DST, GATEWAY, the trimmed NETMASK, the route's interface address (rt_ifa)."""
        items = [(C["RTA_DST"], sockaddr(r.family, r.dst)), (C["RTA_GATEWAY"], r.gateway)]
        if r.mask is not None:
            items.append((C["RTA_NETMASK"], trimmed(sockaddr(r.family, r.mask))))
        ifp = self._by_index(r.ifindex)
        ifa = ifp and ([ia.addr for ia in ifp.inet] if r.family == AF_INET else [ia6.addr for ia6 in ifp.inet6])
        if ifa:  # RT_HAS_IFADDR: the route's interface address (rt_ifa)
            items.append((C["RTA_IFA"], sockaddr(r.family, ifa[0])))
        return items

    def _iflist(self, af: int, index: int) -> bytes:
        """sysctl_iflist: per interface (all, or arg's) an RTM_IFINFO, then an RTM_NEWADDR per address."""
        out = b""
        for ifp in self.ifnets.values():
            if index and index != ifp.index:
                continue
            out += self._ifinfo(ifp, [(C["RTA_IFP"], self._link_sockaddr(ifp))])
            entries = [(AF_INET, ia.addr, ia.mask, ia.dst) for ia in ifp.inet] + \
                [(AF_INET6, ia6.addr, mask_bytes(ia6.plen, 16), ia6.dst) for ia6 in ifp.inet6]
            for family, addr, mask, dst in entries:
                if af and af != family:
                    continue
                out += self._addrmsg(C["RTM_NEWADDR"], ifp, family, addr, mask, dst, [])
        return out

    @staticmethod
    def _link_sockaddr(ifp: Ifnet) -> bytes:
        """The interface's sockaddr_dl: the name, then (an Ethernet one: IFT_ETHER) the MAC, sdl_len growing
        past sizeof(struct sockaddr_dl) when they need more than sdl_data's 12 bytes."""
        mac = ifp.lladdr or b""
        dl = bytearray(max(SIZE["struct sockaddr_dl"], 8 + len(ifp.name) + len(mac)))
        struct.pack_into("=BBHBBBB", dl, 0, len(dl), AF_LINK, ifp.index, C["IFT_ETHER"] if mac else 0,
                         len(ifp.name), len(mac), 0)
        dl[8:8 + len(ifp.name) + len(mac)] = ifp.name.encode() + mac
        return bytes(dl)

    def _ifinfo(self, ifp: Ifnet, items: List[Tuple[int, bytes]]) -> bytes:
        """An RTM_IFINFO of *ifp*: its index, flags and if_data's MTU (XNU's if_data has no link state)."""
        return self._message("struct if_msghdr", "ifm_", C["RTM_IFINFO"],
                             {"index": ("=H", ifp.index), "flags": ("=i", ifp.flags), "data.ifi_mtu": ("=I", ifp.mtu)},
                             items)

    def _addrmsg(self, kind: int, ifp: Ifnet, family: int, addr: bytes, mask: bytes, dst: Optional[bytes],
                 items: List[Tuple[int, bytes]]) -> bytes:
        """An RTM_NEWADDR/RTM_DELADDR of one address: RTA_IFA, RTA_NETMASK, RTA_BRD (peer or broadcast), *items*."""
        items = items + [(C["RTA_IFA"], sockaddr(family, addr)), (C["RTA_NETMASK"], trimmed(sockaddr(family, mask)))]
        if dst is not None:
            items.append((C["RTA_BRD"], sockaddr(family, dst)))
        return self._message("struct ifa_msghdr", "ifam_", kind, {"index": ("=H", ifp.index)}, items)

    # ------------------------------------------------------------ link events
    def rt_ifmsg(self, ifp: Ifnet) -> None:
        """rt_ifmsg (rtsock.c): the interface's RTM_IFINFO to every PF_ROUTE socket, with no sockaddrs."""
        self._raw_input(self._ifinfo(ifp, []))

    def rt_newaddrmsg(self, kind: int, ifp: Ifnet, family: int, addr: bytes, mask: bytes, dst: Optional[bytes]) -> None:
        """rt_newaddrmsg (rtsock.c): RTM_NEWADDR/RTM_DELADDR with RTA_IFA, RTA_IFP (the link address), RTA_NETMASK,
        RTA_BRD (ifa_dstaddr) to every PF_ROUTE socket."""
        self._raw_input(self._addrmsg(kind, ifp, family, addr, mask, dst, [(C["RTA_IFP"], self._link_sockaddr(ifp))]))

    def _raw_input(self, msg: bytes) -> None:
        """raw_input (raw_usrreq.c): a copy to each PF_ROUTE socket; one whose buffer is full loses it, unreported
        (sbappendaddr's failure is ignored)."""
        peers = [self.sockets[fd].peer for fd, family in self.net_sockets.items() if family == PF_ROUTE]
        self.dropped += len(raw_input(peers, msg))


@contextlib.contextmanager
def installed(kernel: XnuKernel) -> Iterator[XnuKernel]:
    """*kernel* as the macOS libc boundary for the block; its sockets closed after it, whatever happened."""
    libc.use(kernel)
    try:
        yield kernel
    finally:
        libc.use(None)
        for fd in list(kernel.sockets):
            kernel.close(fd)
