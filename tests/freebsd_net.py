"""The network side of the simulated FreeBSD kernel: addresses, routes, PF_ROUTE, sysctl, a TAP's MAC.

:class:`FreeBsdNetKernel` is ``freebsd_kernel.FreeBsdKernel`` (/dev/tun,
/dev/tap, the link ioctls) plus what address and route configuration
reaches: ``AF_INET``/``AF_INET6`` datagram sockets and their address
ioctls, ``PF_ROUTE`` sockets whose replies are real datagrams on the
socket's own socketpair, ``sysctl``'s route and interface tables and
``SIOCSIFLLADDR``.  It reuses the XNU simulator's model (``xnu_net``: the
address and route records, mask arithmetic) and follows FreeBSD 14 where
FreeBSD's rules differ, each rule citing its function:

- IPv4 (``in_aifaddr_ioctl``, sys/netinet/in.c): every sockaddr's
  ``sin_len`` is checked (EINVAL), a point-to-point interface needs a
  destination (EDESTADDRREQ), an address that is there is removed and added
  again (``in_difaddr_ioctl`` first), a broadcast interface without an
  explicit broadcast address gets ``subnet | ~mask``.
- IPv6 (``in6_control``, ``in6_validate_ifra`` in in6.c): FreeBSD's
  checks in FreeBSD's order, and an existing address's prefix length may
  not change (EINVAL); ``IN6_IFF_TENTATIVE`` unless ``IN6_IFF_NODAD``
  (``in6_update_ifa_internal``, ``nd6_dad_start``).  A link-local address
  is kept with the interface index embedded (``in6_setscope``) and
  exported with it recovered (``sa6_recoverscope``).
- Routes (``route_output``, sys/net/rtsock.c): sockaddrs ``SA_SIZE``
  apart (``sizeof(long)``), ``cleanup_xaddrs`` (a /32 or /128 mask makes a
  host route; the family must be INET or INET6: EAFNOSUPPORT), EEXIST and
  ESRCH from the table; the request comes back to every PF_ROUTE socket
  with ``rtm_errno`` or ``RTF_DONE``.
- Dumps (``sysctl_rtsock``): ``sysctl_dumpnhop`` gives DST, GATEWAY,
  NETMASK (not for a host route), IFP, IFA and, on a point-to-point
  interface, BRD; ``sysctl_iflist`` an RTM_IFINFO with the interface's
  ``sockaddr_dl``, then an RTM_NEWADDR per address whose BRD is
  ``ifa_dstaddr`` (the peer, the broadcast address, or on a tun an unset
  IPv6 destination: a zero-length sockaddr taking ``sizeof(long)``).  Each
  message is ``ALIGN``ed to 8 bytes (``rtsock_msg_buffer``).
- A TAP's MAC (``ifhwioctl`` SIOCSIFLLADDR -> ``if_setlladdr``): the
  length must be the interface's (EINVAL; a tun has none), the type
  Ethernet (ENODEV).

Every number comes from FreeBSD's headers through ``tests/freebsd_golden.json``
(FreeBSD's errno values: EDESTADDRREQ is 39 here, not Linux's 89).
Not simulated: the routes the kernel adds by itself for an address
(``in_addprefix``, ``ifa_add_loopback_route``), RTM_GET/RTM_CHANGE, FIBs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from bsd_net import PfRouteSide
from darwin_kernel import _Socket
from freebsd_kernel import AF_INET, AF_INET6, C, E, GOLDEN, IFF_LINK0, IO, Ifnet, FreeBsdKernel, running_as_freebsd
from xnu_net import In6Addr, InAddr, RtEntry, addr_of, mask_bytes, prefix_len

SIZE = GOLDEN["sizeof"]
OFF = GOLDEN["offsetof"]
REQUEST_NAMES = {value: name for name, value in IO.items() if name != "TAPGIFNAME"}
AF_LINK, PF_ROUTE = C["AF_LINK"], C["PF_ROUTE"]
SOCK_DGRAM, SOCK_RAW = C["SOCK_DGRAM"], C["SOCK_RAW"]
IFF_UP, IFF_POINTOPOINT, IFF_BROADCAST, IFF_LOOPBACK = (C[n] for n in (
    "IFF_UP", "IFF_POINTOPOINT", "IFF_BROADCAST", "IFF_LOOPBACK"))
IFT_ETHER, IFT_PROPVIRTUAL = C["IFT_ETHER"], C["IFT_PROPVIRTUAL"]  # net/if_types.h: a tap's type, a tun's
IN6_IFF_NODAD, IN6_IFF_TENTATIVE = C["IN6_IFF_NODAD"], C["IN6_IFF_TENTATIVE"]
LONG = GOLDEN["sizeof"]["struct rt_metrics"] // 14  # sizeof(long): rt_metrics is 14 u_longs
RTAX = [1 << i for i in range(C["RTAX_MAX"])]
SDL_DATA = OFF["struct sockaddr_dl:sdl_data"]  # 8
#: net/route/nhop.h (kernel-only, so not in the golden probe): sockaddr_dl's fields with ``sdl_data[8]``.
SDL_SHORT_LEN = SDL_DATA + 8


def sa_size(sa_len: int) -> int:
    """net/route.h SA_SIZE: a sockaddr's room in a routing message (a zero-length one takes a long)."""
    return 1 + ((sa_len - 1) | (LONG - 1)) if sa_len > 0 else LONG


def align(n: int) -> int:
    """machine/param.h ALIGN (amd64): rounded up to a long."""
    return (n + LONG - 1) & ~(LONG - 1)


def iocparm_len(request: int) -> int:
    """sys/ioccom.h IOCPARM_LEN: the bytes ioctl() copies in and out."""
    return (request >> 16) & C["IOCPARM_MASK"]


def sockaddr(family: int, addr: bytes, scope_id: int = 0) -> bytes:
    """A sockaddr_in or sockaddr_in6 with FreeBSD's family numbers."""
    if family == AF_INET:
        return bytes((SIZE["struct sockaddr_in"], AF_INET, 0, 0)) + addr + bytes(8)
    return bytes((SIZE["struct sockaddr_in6"], AF_INET6)) + bytes(6) + addr + scope_id.to_bytes(4, "little")


@dataclass
class NetIfnet(Ifnet):
    """A tun/tap with its addresses and link-level address (``if_addrhead``; the first entry is the link's)."""

    inet: List[InAddr] = field(default_factory=list)
    inet6: List[In6Addr] = field(default_factory=list)
    lladdr: bytes = b""  # tap_create -> ether_ifattach: 6 bytes; a tun has none (sdl_alen 0)

    @property
    def if_type(self) -> int:
        return IFT_ETHER if self.kind == "tap" else IFT_PROPVIRTUAL

    def sockaddr_dl(self) -> bytes:
        """if_attach_internal's link address: the name, then the MAC; sdl_len at least sizeof(sockaddr_dl),
        room for IFNAMSIZ and the address, rounded up to a long."""
        size = align(max(SIZE["struct sockaddr_dl"], SDL_DATA + C["IFNAMSIZ"] + len(self.lladdr)))
        dl = bytearray(size)
        struct.pack_into("=BBHBBBB", dl, 0, size, AF_LINK, self.index, self.if_type, len(self.name),
                         len(self.lladdr), 0)
        dl[SDL_DATA:SDL_DATA + len(self.name) + len(self.lladdr)] = self.name.encode() + self.lladdr
        return bytes(dl)


class FreeBsdNetKernel(FreeBsdKernel, PfRouteSide):
    """``FreeBsdKernel`` with addresses, a routing table and the sockets that reach them."""

    IFNET = NetIfnet
    C, E, OFF, SIZE = C, E, OFF, SIZE  # FreeBSD's numbers for PfRouteSide
    sa_room = staticmethod(sa_size)  # net/route.h SA_SIZE
    MESSAGE_ALIGN = LONG  # rtsock_msg_buffer: len = ALIGN(len)

    def __init__(self, root: bool = True) -> None:
        super().__init__(root)
        self.routes: List[RtEntry] = []
        self.net_sockets: Dict[int, int] = {}  # fd -> AF_INET, AF_INET6 or PF_ROUTE
        self.chatter: List[bytes] = []  # other listeners' messages each route socket gets before a reply
        self.full_buffers = False  # rts_input: a full socket buffer drops the copy (sbappendaddr fails)

    def _create(self, kind: str, unit: int) -> Ifnet:
        ifnet = super()._create(kind, unit)
        if kind == "tap":  # tap_create: ether_gen_addr, FreeBSD's OUI 58:9c:fc and a hash (here the index)
            assert isinstance(ifnet, NetIfnet)
            ifnet.lladdr = bytes((0x58, 0x9C, 0xFC)) + ifnet.index.to_bytes(3, "big")
        return ifnet

    def nets(self) -> Dict[str, NetIfnet]:
        return {name: ifp for name, ifp in self.ifnets.items() if isinstance(ifp, NetIfnet)}

    def _by_index(self, index: int) -> Optional[NetIfnet]:
        return next((i for i in self.nets().values() if i.index == index), None)

    # ------------------------------------------------------------ sockets
    def socket(self, domain: int, type: int, protocol: int) -> int:
        if domain != PF_ROUTE:
            fd = super().socket(domain, type, protocol)
            if fd >= 0:
                self.net_sockets[fd] = domain
            return fd
        self.calls.append(("socket", domain, type))
        if type != SOCK_RAW:
            return self._fail(E["EPROTOTYPE"])  # socreate: routesw has only a SOCK_RAW protosw
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)  # socket() without SOCK_CLOEXEC: open across exec until fcntl
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        self.net_sockets[fd] = PF_ROUTE
        return fd

    def close(self, fd: int) -> int:
        self.net_sockets.pop(fd, None)
        return super().close(fd)

    def _detach_socket(self, fd: int) -> None:
        """tundtor: the addresses go with the last close (if_purgeaddrs, once IFF_DRV_RUNNING: a tun that had an
        address, tuninit; every tap, tunopen), except a tap's with IFF_LINK0 (tundtor skips to ``out``)."""
        dev = self.sockets.get(fd)
        ifnet = getattr(dev, "ifnet", None)
        super()._detach_socket(fd)
        if isinstance(ifnet, NetIfnet) and not (ifnet.kind == "tap" and ifnet.flags & IFF_LINK0):
            ifnet.inet.clear()
            ifnet.inet6.clear()

    # ------------------------------------------------------------ ioctls
    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        family = self.net_sockets.get(fd)
        name = REQUEST_NAMES.get(request, "")
        if family == PF_ROUTE:
            self.calls.append(("ioctl", fd, request))
            return self._fail(E["EOPNOTSUPP"])  # (no ioctl on a routing socket is simulated)
        if family is None or name not in ("SIOCAIFADDR", "SIOCDIFADDR", "SIOCAIFADDR_IN6", "SIOCDIFADDR_IN6",
                                          "SIOCSIFLLADDR", "SIOCIFDESTROY"):
            return super().ioctl(fd, request, arg)
        buf = self.ffi.buffer(self.ffi.cast("char *", arg), iocparm_len(request))
        data = bytearray(buf)  # copyin
        ifname = bytes(data[:C["IFNAMSIZ"]]).split(b"\0")[0].decode("latin-1")
        ifp = self.nets().get(ifname)
        if name == "SIOCIFDESTROY":  # if_clone_destroy -> if_detach: rt_flushifroutes takes its routes
            index = ifp.index if ifp is not None else 0
            result = super().ioctl(fd, request, arg)
            if result == 0:
                self.routes = [r for r in self.routes if r.ifindex != index]
            return result
        self.calls.append(("ioctl", fd, request))
        if ifp is None:
            return self._fail(E["ENXIO"])  # ifioctl: ifunit_ref(ifr_name) found none
        error = self._control(family, name, ifp, data)
        if error:
            return self._fail(error)
        buf[:] = bytes(data)  # copyout
        return 0

    def _control(self, family: int, request: str, ifp: NetIfnet, data: bytearray) -> int:
        if request == "SIOCSIFLLADDR":
            return self._setlladdr(ifp, data)
        if request in ("SIOCAIFADDR", "SIOCDIFADDR") and family != AF_INET or \
                request in ("SIOCAIFADDR_IN6", "SIOCDIFADDR_IN6") and family != AF_INET6:
            return E["EOPNOTSUPP"]  # ifioctl hands it to the socket's pr_control, which knows it not
        if not self.root:
            return E["EPERM"]  # in_aifaddr_ioctl / in6_control: priv_check(PRIV_NET_ADDIFADDR / DELIFADDR)
        handler = {"SIOCAIFADDR": self._in_aifaddr, "SIOCDIFADDR": self._in_difaddr,
                   "SIOCAIFADDR_IN6": self._in6_update_ifa, "SIOCDIFADDR_IN6": self._in6_difaddr}[request]
        return handler(ifp, data)

    def _setlladdr(self, ifp: NetIfnet, data: bytearray) -> int:
        """ifhwioctl SIOCSIFLLADDR: priv_check(PRIV_NET_SETLLADDR), then if_setlladdr(sa_data, sa_len)."""
        if not self.root:
            return E["EPERM"]
        at = OFF["struct ifreq:ifr_ifru.ifru_addr"]
        sa_len = data[at]
        if sa_len != len(ifp.lladdr):
            return E["EINVAL"]  # if_setlladdr: "don't allow length to change" (a tun's is 0)
        if ifp.if_type != IFT_ETHER:
            return E["ENODEV"]  # if_setlladdr: not an Ethernet-like type
        ifp.lladdr = bytes(data[at + 2:at + 2 + sa_len])
        return 0

    def _in_aifaddr(self, ifp: NetIfnet, data: bytearray) -> int:
        """in_aifaddr_ioctl (in.c), for the in_aliasreq FreeBSD lays out as ifaliasreq (ifra_dstaddr is ifra_broadaddr)."""
        at = {f: OFF[f"struct in_aliasreq:ifra_{f}"] for f in ("addr", "broadaddr", "mask")}
        addr_sa, brd_sa, mask_sa = (bytes(data[at[f]:at[f] + 16]) for f in ("addr", "broadaddr", "mask"))
        if addr_sa[0] != 16 or addr_sa[1] != AF_INET:
            return E["EINVAL"]  # ifra_addr must be present and of INET family
        if brd_sa[0] != 0 and (brd_sa[0] != 16 or brd_sa[1] != AF_INET):
            return E["EINVAL"]
        if mask_sa[0] != 0 and (mask_sa[0] != 16 or mask_sa[1] != AF_INET):
            return E["EINVAL"]
        if ifp.flags & IFF_POINTOPOINT and (brd_sa[0] != 16 or brd_sa[4:8] == bytes(4)):
            return E["EDESTADDRREQ"]
        addr = addr_sa[4:8]
        old = next((ia for ia in ifp.inet if ia.addr == addr), None)
        if old is not None:
            ifp.inet.remove(old)  # "See whether address already exist": in_difaddr_ioctl, then added anew
        if mask_sa[0]:
            mask = mask_sa[4:8]
        else:  # "guess it based on classes"
            mask = mask_bytes(8 if addr[0] < 128 else 16 if addr[0] < 192 else 24, 4)
        dst = bytes(4)
        if ifp.flags & IFF_BROADCAST:
            if brd_sa[0]:
                dst = brd_sa[4:8]
            elif mask == mask_bytes(31, 4):
                dst = b"\xff" * 4  # IN_RFC3021_MASK: INADDR_BROADCAST
            else:
                dst = bytes(a & m | ~m & 0xFF for a, m in zip(addr, mask))  # ia_subnet | ~ia_subnetmask
        if ifp.flags & IFF_POINTOPOINT:
            dst = brd_sa[4:8]
        ifp.inet.append(InAddr(addr, mask, dst))  # CK_STAILQ_INSERT_TAIL(&ifp->if_addrhead, ...)
        return 0

    def _in_difaddr(self, ifp: NetIfnet, data: bytearray) -> int:
        """in_difaddr_ioctl: by address (a malformed sockaddr deletes the first: deleteAny)."""
        at = OFF["struct ifreq:ifr_ifru.ifru_addr"]
        sa = bytes(data[at:at + 16])
        delete_any = sa[0] != 16 or sa[1] != AF_INET
        for ia in ifp.inet:
            if delete_any or ia.addr == sa[4:8]:
                ifp.inet.remove(ia)
                return 0
        return E["EADDRNOTAVAIL"]

    def _in6_setscope(self, ifp: NetIfnet, addr: bytes) -> bytes:
        """in6_setscope: a link-local (or interface-local multicast) address gets the zone in bytes 2-3."""
        if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
            return addr[:2] + ifp.index.to_bytes(2, "big") + addr[4:]
        return addr

    def _in6_update_ifa(self, ifp: NetIfnet, data: bytearray) -> int:
        """in6_control SIOCAIFADDR_IN6 -> in6_update_ifa: in6_validate_ifra's checks in its order, then the update."""
        name = "struct in6_aliasreq:ifra_"
        addr_sa, dst_sa, mask_sa = (bytes(data[OFF[name + f]:OFF[name + f] + 28])
                                    for f in ("addr", "dstaddr", "prefixmask"))
        flags = struct.unpack_from("=i", data, OFF[name + "flags"])[0]
        vltime = struct.unpack_from("=I", data, OFF[name + "lifetime.ia6t_vltime"])[0]
        pltime = struct.unpack_from("=I", data, OFF[name + "lifetime.ia6t_pltime"])[0]
        p2p = ifp.flags & IFF_POINTOPOINT
        if p2p and dst_sa[1] not in (AF_INET6, C["AF_UNSPEC"]):
            return E["EAFNOSUPPORT"]  # the destination of a p2p link is AF_UNSPEC or AF_INET6
        if addr_sa[0] != 28 or addr_sa[1] != AF_INET6:
            return E["EINVAL"]  # (XNU says EAFNOSUPPORT here)
        if mask_sa[0] > 28:
            return E["EINVAL"]
        addr = self._in6_setscope(ifp, addr_sa[8:24])  # in6_control: sa6_embedscope / in6_setscope
        ia = self._in6ifa_ifpwithaddr(ifp, addr)
        if ia is None and mask_sa[0] == 0:
            return E["EINVAL"]
        plen = prefix_len((mask_sa[8:mask_sa[0]] + bytes(16))[:16]) if mask_sa[0] else ia.plen  # type: ignore[union-attr]
        if plen <= 0:
            return E["EINVAL"]  # in6_mask2len: no usable prefix
        if dst_sa[1] == AF_INET6:
            if not ifp.flags & (IFF_POINTOPOINT | IFF_LOOPBACK):
                return E["EINVAL"]  # "a destination can be specified for a p2p or a loopback IF only"
            if plen != 128:
                return E["EINVAL"]  # "prefixlen should be 128 when dstaddr is specified"
        if pltime > vltime:
            return E["EINVAL"]  # lifetime consistency check
        if vltime == 0 and ia is None:
            return 0  # "there's nothing to do"
        if ia is not None and mask_sa[0] and ia.plen != plen:
            return E["EINVAL"]  # "the prefix length of an existing address should not be changed"
        dst = self._in6_setscope(ifp, dst_sa[8:24]) if dst_sa[1] == AF_INET6 else None
        # in6_update_ifa_internal: flags as asked, TENTATIVE for a new address where in6if_do_dad (up and
        # running, not loopback); nd6_dad_start clears it at once for IN6_IFF_NODAD.
        running = ifp.flags & IFF_UP and (ifp.fd is not None)
        if ia is None:
            if running and not ifp.flags & IFF_LOOPBACK and not flags & IN6_IFF_NODAD:
                flags |= IN6_IFF_TENTATIVE
            ifp.inet6.append(In6Addr(addr, plen, dst, flags, vltime, pltime))
            return 0
        ia.flags, ia.vltime, ia.pltime = flags, vltime, pltime
        if dst is not None:  # in6_notify_ifa: a new destination replaces the old
            ia.dst = dst
        return 0

    def _in6_difaddr(self, ifp: NetIfnet, data: bytearray) -> int:
        """in6_control SIOCDIFADDR_IN6: in6_purgeifaddr of in6ifa_ifpwithaddr's find, else EADDRNOTAVAIL."""
        at = OFF["struct in6_ifreq:ifr_ifru.ifru_addr"]
        ia = self._in6ifa_ifpwithaddr(ifp, self._in6_setscope(ifp, bytes(data[at + 8:at + 24])))
        if ia is None:
            return E["EADDRNOTAVAIL"]
        ifp.inet6.remove(ia)
        return 0

    @staticmethod
    def _in6ifa_ifpwithaddr(ifp: NetIfnet, addr: bytes) -> Optional[In6Addr]:
        return next((ia for ia in ifp.inet6 if ia.addr == addr), None)

    # ------------------------------------------------------------ PF_ROUTE (PfRouteSide's, with FreeBSD's rules)
    def write(self, fd: int, buf: Any, count: int) -> int:
        if self.net_sockets.get(fd) != PF_ROUTE:
            return super().write(fd, buf, count)
        return self.route_write(fd, bytes(buf[:count]) if isinstance(buf, bytes) else self.ffi.buffer(buf, count)[:])

    def _route_request(self, msg: bytes, size: int) -> int:
        if msg[OFF["struct rt_msghdr:rtm_version"]] != C["RTM_VERSION"]:
            return E["EPROTONOSUPPORT"]
        rtm_type = msg[OFF["struct rt_msghdr:rtm_type"]]
        flags, addrs = (struct.unpack_from("=i", msg, OFF[f"struct rt_msghdr:rtm_{f}"])[0] for f in ("flags", "addrs"))
        sas: Dict[int, bytes] = {}
        at = size
        for bit in RTAX:  # rt_xaddrs: one sockaddr per bit, SA_SIZE apart
            if not addrs & bit or at >= len(msg):
                continue
            sa_len = msg[at]
            if at + sa_len > len(msg):
                return E["EINVAL"]  # "sa_len too big"
            if sa_len == 0:
                break  # "there are no more.. quit now"
            sas[bit] = msg[at:at + sa_len]
            at += sa_size(sa_len)
        if rtm_type != C["RTM_GET"] and not self.root:
            return E["EPERM"]  # priv_check(PRIV_NET_ROUTE)
        dst_sa = sas.get(C["RTA_DST"])
        if dst_sa is None:
            return E["EINVAL"]  # cleanup_xaddrs: "prefix dst is not set"
        if dst_sa[1] not in (AF_INET, AF_INET6):
            return E["EAFNOSUPPORT"]  # cleanup_xaddrs: neither INET nor INET6
        family = dst_sa[1]
        width = 4 if family == AF_INET else 16
        if family == AF_INET and sa_size(dst_sa[0]) < 8 or family == AF_INET6 and dst_sa[0] < 28:
            return E["EINVAL"]  # cleanup_xaddrs_inet(6): "prefix dst sin_len too small"
        mask_sa = sas.get(C["RTA_NETMASK"])
        at_addr = 4 if family == AF_INET else 8
        if mask_sa is not None:
            if mask_sa[0] < at_addr:
                return E["EINVAL"]  # "prefix mask sin_len too small"
            mask = (mask_sa[at_addr:mask_sa[0]] + bytes(width))[:width]  # a truncated mask: the rest zeros
        else:
            mask = b"\xff" * width
        _, dst_addr = addr_of(dst_sa)
        key = bytes(a & m for a, m in zip(dst_addr[:width], mask))  # dst &= mask
        stored_mask: Optional[bytes] = None if mask == b"\xff" * width else mask  # remove_netmask: RTF_HOST
        flags = flags | C["RTF_HOST"] if stored_mask is None else flags & ~C["RTF_HOST"]
        gateway = sas.get(C["RTA_GATEWAY"])
        if gateway is not None:  # cleanup_xaddrs_gateway
            if gateway[1] == AF_LINK:
                if gateway[0] < SDL_DATA:
                    return E["EINVAL"]  # "gateway sdl_len too small"
                gateway = bytes((SDL_SHORT_LEN, AF_LINK)) + gateway[2:4] + \
                    bytes(SDL_SHORT_LEN - 4)  # a sockaddr_dl_short naming the index
            elif gateway[1] == AF_INET6 and gateway[0] < 28 or gateway[1] == AF_INET and sa_size(gateway[0]) < 8:
                return E["EINVAL"]  # "gateway sin_len too small"
        found = next((r for r in self.routes if (r.family, r.dst, r.mask) == (family, key, stored_mask)), None)
        if rtm_type == C["RTM_DELETE"]:
            if found is None:
                return E["ESRCH"]  # rib_del_route: no such prefix
            self.routes.remove(found)
            return 0
        if rtm_type != C["RTM_ADD"]:
            return E["EOPNOTSUPP"]  # (RTM_GET, RTM_CHANGE ... are not simulated)
        if gateway is None:
            return E["EINVAL"]  # route_output RTM_ADD: no gateway
        ifp = self._route_ifp(sas.get(C["RTA_IFP"]), flags, gateway)
        if ifp is None:
            return E["ENETUNREACH"]  # rt_getifa_fib: no interface for the gateway
        if found is not None:
            return E["EEXIST"]  # add_route: the prefix is there
        self.routes.append(RtEntry(family, key, stored_mask, gateway, flags | C["RTF_UP"], ifp.index))
        return 0

    def _route_ifp(self, ifp_sa: Optional[bytes], flags: int, gateway: bytes) -> Optional[NetIfnet]:
        """rt_getifa_fib: RTA_IFP's sockaddr_dl names the interface; else ifa_ifwithroute for the gateway."""
        if ifp_sa is not None and len(ifp_sa) >= 4 and ifp_sa[1] == AF_LINK:
            chosen = self._by_index(struct.unpack_from("=H", ifp_sa, 2)[0])
            if chosen is not None:
                return chosen
        if gateway[1] == AF_LINK:  # ifa_ifwithroute: an AF_LINK gateway names its interface
            return self._by_index(struct.unpack_from("=H", gateway, 2)[0])
        family, addr = addr_of(gateway)
        for ifp in self.nets().values():
            if family == AF_INET:
                for ia in ifp.inet:
                    m = ia.mask
                    on_link = bytes(a & b for a, b in zip(addr, m)) == bytes(a & b for a, b in zip(ia.addr, m))
                    if addr in (ia.addr, ia.dst) or on_link:
                        return ifp
            elif family == AF_INET6:
                for ia6 in ifp.inet6:
                    m = mask_bytes(ia6.plen, 16)
                    on_link = bytes(a & b for a, b in zip(addr, m)) == bytes(a & b for a, b in zip(ia6.addr, m))
                    if addr in (ia6.addr, ia6.dst) or on_link:
                        return ifp
        return None

    # ------------------------------------------------------------ sysctl (PfRouteSide's, with these tables)
    def _message(self, ctype: str, prefix: str, msg_type: int, fields: Dict[str, Tuple[str, int]],
                 items: List[Tuple[int, bytes]]) -> bytes:
        """rtsock_msg_buffer: sa6_recoverscope on each IPv6 sockaddr (the zone out of bytes 2-3, into
        sin6_scope_id), SA_SIZE apart, the whole message ALIGNed."""
        out = []
        for bit, sa in items:
            if len(sa) >= 24 and sa[1] == AF_INET6 and sa[8] == 0xFE and sa[9] & 0xC0 == 0x80:
                sa = sa[:10] + b"\0\0" + sa[12:24] + int.from_bytes(sa[10:12], "big").to_bytes(4, "little")
            out.append((bit, sa))
        return super()._message(ctype, prefix, msg_type, fields, out)

    def _ifa_of(self, ifp: NetIfnet, family: int) -> Tuple[bytes, Optional[bytes]]:
        """A route's nh_ifa: the interface's first address of *family* (its link address if none) and dstaddr."""
        if family == AF_INET and ifp.inet:
            return sockaddr(AF_INET, ifp.inet[0].addr), sockaddr(AF_INET, ifp.inet[0].dst)
        if family == AF_INET6 and ifp.inet6:
            dst = ifp.inet6[0].dst
            return sockaddr(AF_INET6, ifp.inet6[0].addr), sockaddr(AF_INET6, dst) if dst is not None else b""
        return ifp.sockaddr_dl(), None

    def _route_sockaddrs(self, r: RtEntry) -> List[Tuple[int, bytes]]:
        """sysctl_dumpnhop: DST, GATEWAY, NETMASK (export_rtaddrs: full length; none for a host route), the
        interface's sockaddr_dl (IFP), its address (IFA) and, on a point-to-point interface, the peer (BRD)."""
        items = [(C["RTA_DST"], sockaddr(r.family, r.dst)), (C["RTA_GATEWAY"], r.gateway)]
        if r.mask is not None:
            items.append((C["RTA_NETMASK"], sockaddr(r.family, r.mask)))
        ifp = self._by_index(r.ifindex)
        if ifp is not None:
            ifa, dst = self._ifa_of(ifp, r.family)
            items += [(C["RTA_IFP"], ifp.sockaddr_dl()), (C["RTA_IFA"], ifa)]
            if ifp.flags & IFF_POINTOPOINT and dst is not None:
                items.append((C["RTA_BRD"], dst))
        return items

    def _iflist(self, af: int, index: int) -> bytes:
        """sysctl_iflist: per interface (all, or arg's) an RTM_IFINFO, then an RTM_NEWADDR per address."""
        out = b""
        for ifp in sorted(self.nets().values(), key=lambda i: i.index):
            if index and index != ifp.index:
                continue
            out += self._message("struct if_msghdr", "ifm_", C["RTM_IFINFO"],
                                 {"index": ("=H", ifp.index), "flags": ("=i", ifp.flags),
                                  "data.ifi_mtu": ("=I", ifp.mtu)}, [(C["RTA_IFP"], ifp.sockaddr_dl())])
            entries: List[Tuple[int, bytes, bytes, Optional[bytes]]] = \
                [(AF_INET, ia.addr, ia.mask, ia.dst) for ia in ifp.inet] + \
                [(AF_INET6, ia6.addr, mask_bytes(ia6.plen, 16), ia6.dst) for ia6 in ifp.inet6]
            for family, addr, mask, dst in entries:
                if af and af != family:
                    continue
                items = [(C["RTA_IFA"], sockaddr(family, addr)), (C["RTA_NETMASK"], sockaddr(family, mask))]
                if family == AF_INET:  # ifa_dstaddr is &ia_dstaddr: the peer or the broadcast address
                    items.append((C["RTA_BRD"], sockaddr(AF_INET, dst or bytes(4))))
                elif ifp.flags & IFF_POINTOPOINT:  # in6_alloc_ifa: a p2p address's ifa_dstaddr, maybe unset
                    items.append((C["RTA_BRD"], sockaddr(AF_INET6, dst) if dst is not None else b""))
                out += self._message("struct ifa_msghdr", "ifam_", C["RTM_NEWADDR"],
                                     {"index": ("=H", ifp.index)}, items)
        return out


@contextlib.contextmanager
def running_as_freebsd_net(kernel: Optional[FreeBsdNetKernel] = None) -> Iterator[FreeBsdNetKernel]:
    """This process as FreeBSD with *kernel*'s network side (see freebsd_kernel.running_as_freebsd)."""
    kernel = kernel or FreeBsdNetKernel()
    with running_as_freebsd(kernel):
        yield kernel
