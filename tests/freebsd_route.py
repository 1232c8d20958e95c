"""The routing-socket side of the simulated FreeBSD kernel that link events need: PF_ROUTE sockets and what they hear.

:class:`FreeBsdRouteKernel` is ``freebsd_kernel.FreeBsdKernel`` plus
``PF_ROUTE`` raw sockets (real socketpairs: the "kernel" writes each
routing message to its end), ``sysctl(CTL_NET, PF_ROUTE, 0, 0,
NET_RT_IFLIST, index)``'s RTM_IFINFO, and the messages FreeBSD 14 sends to
every routing socket when an interface changes, each rule citing the
kernel function it follows:

- ``rt_ifmsg`` (net/rtsock.c): an RTM_IFINFO (``if_msghdr``: flags,
  ``if_data`` with the MTU and ``ifi_link_state``, no sockaddrs) from
  ``if_up``/``if_down`` (``ifhwioctl`` SIOCSIFFLAGS when IFF_UP changes,
  ``tundtor`` bringing a closed tun down), ``ifhwioctl`` SIOCSIFMTU, and
  ``do_link_state_change`` (``if_link_state_change``: LINK_STATE_UP at
  ``tunopen``, LINK_STATE_DOWN at ``tundtor``).
- ``rt_ifannouncemsg`` (net/rtsock.c): an RTM_IFANNOUNCE with
  IFAN_DEPARTURE when an interface leaves this vnet (``if_detach_internal``
  after ``if_unlink_ifnet``, from ``if_detach`` or ``if_vmove``:
  ``ifconfig tun0 vnet jail``), and IFAN_DEPARTURE then IFAN_ARRIVAL
  around a rename (``ifhwioctl`` SIOCSIFNAME), the interface keeping its
  index and its place in the list.
- ``raw_input``/``soroverflow``: a message that does not fit a socket's
  buffer is dropped (counted in ``dropped``); a socket with SO_RERROR
  (``setsockopt``) gets ENOBUFS from its next read once what is queued is
  read (``soreceive_generic``: ``so_rerror``, cleared when reported).

Addresses and routes (RTM_NEWADDR/DELADDR, in.c/in6.c) are the network
side's (``freebsd_net``), not simulated here.

Checked against FreeBSD 14's sys/net/if.c (``ifhwioctl``,
``if_detach_internal``) and sys/net/if_tuntap.c (``tunopen``, ``tundtor``)
as published in github.com/sobomax/freebsd14_vendor at 0f7ff34.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from typing import Any, Dict, List, Set, Tuple

from bsd_packets import raw_input, sysctl_copyout
from darwin_kernel import _Socket
from freebsd_kernel import C, E, GOLDEN, IFF_UP, FreeBsdKernel, Ifnet, _Dev
from tuntap_cffi import _bsdlibc

OFF, SIZE = GOLDEN["offsetof"], GOLDEN["sizeof"]
PF_ROUTE, SOCK_RAW, AF_LINK = C["PF_ROUTE"], C["SOCK_RAW"], C["AF_LINK"]
CTL_NET = 4  # sys/sysctl.h
LINK_STATE_DOWN, LINK_STATE_UP = C["LINK_STATE_DOWN"], C["LINK_STATE_UP"]
# sys/socket.h of FreeBSD 15 (main): FreeBSD 14's headers (the golden file's) have no SO_RERROR, and its
# sosetopt answers ENOPROTOOPT for it.
SO_RERROR = 0x20000


def sa_size(sa_len: int) -> int:
    """net/route.h SA_SIZE: a sockaddr's room in a routing message (sizeof(long) steps, 0 takes one)."""
    return 8 if sa_len == 0 else 1 + ((sa_len - 1) | 7)


class FreeBsdRouteKernel(FreeBsdKernel):
    """``FreeBsdKernel`` with routing sockets and the link messages they hear (see the module docstring)."""

    def __init__(self, root: bool = True, so_rerror: bool = True) -> None:
        super().__init__(root)
        self.so_rerror = so_rerror  # a FreeBSD 15 kernel (SO_RERROR), or 14 (sosetopt: ENOPROTOOPT)
        self.ffi.cdef(_bsdlibc.NET_FUNCTIONS)
        self.route_sockets: List[int] = []
        self.options: Dict[Tuple[int, int], int] = {}  # (fd, SO_*) -> value set with setsockopt
        self.rerror: Set[int] = set()  # route sockets with an ENOBUFS to report (so_rerror)
        self.link_states: Dict[int, int] = {}  # ifindex -> ifi_link_state (LINK_STATE_UNKNOWN until opened)
        self.dropped = 0  # messages raw_input dropped on a full socket buffer

    # ------------------------------------------------------------ sockets
    def socket(self, domain: int, type: int, protocol: int) -> int:
        if domain != PF_ROUTE:
            return super().socket(domain, type, protocol)
        self.calls.append(("socket", domain, type))
        if type != SOCK_RAW:
            return self._fail(E["EPROTOTYPE"])  # socreate: route's protosw is SOCK_RAW only
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)  # socket() without SOCK_CLOEXEC: open across exec until fcntl
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        self.route_sockets.append(fd)
        return fd

    def setsockopt(self, fd: int, level: int, name: int, value: Any, length: int) -> int:
        self.calls.append(("setsockopt", name))
        if fd not in self.route_sockets:
            return self._fail(E["ENOTSOCK"] if fd in self.files else E["EBADF"])  # (only routing sockets here)
        known = (SO_RERROR, C["SO_RCVBUF"]) if self.so_rerror else (C["SO_RCVBUF"],)
        if level != C["SOL_SOCKET"] or name not in known or length != 4:
            return self._fail(E["ENOPROTOOPT"])  # sosetopt: (the options simulated; FreeBSD 14 has no SO_RERROR)
        self.options[fd, name] = self.ffi.cast("int *", value)[0]
        if name == C["SO_RCVBUF"]:  # what is queued unread is bounded by the kernel end's send buffer here
            peer = socket.socket(fileno=self.sockets[fd].peer)
            try:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.options[fd, name])
            finally:
                peer.detach()
        return 0

    def read(self, fd: int, buf: Any, count: int) -> int:
        if fd in self.rerror and not select.select([fd], [], [], 0)[0]:  # the buffer read empty: so_rerror
            self.rerror.discard(fd)
            self.calls.append(("read", fd))
            return self._fail(E["ENOBUFS"])
        return super().read(fd, buf, count)

    def _detach_socket(self, fd: int) -> None:
        self.rerror.discard(fd)
        if fd in self.route_sockets:
            self.route_sockets.remove(fd)
        was = self.sockets.get(fd)
        up = isinstance(was, _Dev) and was.ifnet.flags & IFF_UP
        super()._detach_socket(fd)
        if isinstance(was, _Dev):  # tundtor: if_down if it was up, then if_link_state_change(LINK_STATE_DOWN)
            if up:
                self.rt_ifmsg(was.ifnet)
            self.link_state_change(was.ifnet, LINK_STATE_DOWN)

    def open(self, path: Any, flags: int, *mode: Any) -> int:
        fd = super().open(path, flags, *mode)
        dev = self.sockets.get(fd) if fd >= 0 else None
        if isinstance(dev, _Dev):  # tunopen: if_link_state_change(ifp, LINK_STATE_UP)
            self.link_state_change(dev.ifnet, LINK_STATE_UP)
        return fd

    def _ifioctl(self, request: int, arg: Any) -> int:
        ifr = self.ffi.cast("struct ifreq *", arg)
        name = self.ffi.string(ifr.ifr_name).decode("latin-1")
        ifnet = self.ifnets.get(name)
        flags = ifnet.flags if ifnet is not None else 0
        result = super()._ifioctl(request, arg)
        if result == 0 and ifnet is not None:
            from freebsd_kernel import IO

            if request == IO["SIOCSIFNAME"]:  # ifhwioctl: departure under the old name, arrival under the new
                self._announce(ifnet, name, C["IFAN_DEPARTURE"])
                self._announce(ifnet, ifnet.name, C["IFAN_ARRIVAL"])
            elif request == IO["SIOCSIFFLAGS"] and (flags ^ ifnet.flags) & IFF_UP:
                self.rt_ifmsg(ifnet)  # ifhwioctl: if_up/if_down -> if_route/if_unroute -> rt_ifmsg
            elif request == IO["SIOCSIFMTU"]:
                self.rt_ifmsg(ifnet)  # ifhwioctl SIOCSIFMTU: rt_ifmsg once the driver took it
        return result

    # ------------------------------------------------------------ messages
    def _ifinfo(self, ifnet: Ifnet, items: List[Tuple[int, bytes]]) -> bytes:
        """An if_msghdr of *ifnet* (FreeBSD's layout, from the golden offsets) and its sockaddrs."""
        head = bytearray(SIZE["struct if_msghdr"])
        body = b"".join(sa + bytes(sa_size(len(sa)) - len(sa)) for _, sa in items)
        struct.pack_into("=HBB", head, 0, len(head) + len(body), C["RTM_VERSION"], C["RTM_IFINFO"])
        struct.pack_into("=i", head, OFF["struct if_msghdr:ifm_addrs"], sum(bit for bit, _ in items))
        struct.pack_into("=i", head, OFF["struct if_msghdr:ifm_flags"], ifnet.flags)
        struct.pack_into("=H", head, OFF["struct if_msghdr:ifm_index"], ifnet.index)
        struct.pack_into("=I", head, OFF["struct if_msghdr:ifm_data.ifi_mtu"], ifnet.mtu)
        state_at = OFF["struct if_msghdr:ifm_data"] + OFF["struct if_data:ifi_link_state"]
        head[state_at] = self.link_states.get(ifnet.index, 0)
        return bytes(head) + body

    def rt_ifmsg(self, ifnet: Ifnet) -> None:
        """rt_ifmsg: the interface's RTM_IFINFO, with no sockaddrs, to every routing socket."""
        self._raw_input(self._ifinfo(ifnet, []))

    def link_state_change(self, ifnet: Ifnet, state: int) -> None:
        """if_link_state_change -> do_link_state_change: a new ifi_link_state is announced (rt_ifmsg)."""
        if self.link_states.get(ifnet.index) != state:
            self.link_states[ifnet.index] = state
            self.rt_ifmsg(ifnet)

    def vmove(self, name: str) -> None:
        """if_vmove (``ifconfig NAME vnet JAIL``): the interface leaves this vnet; its index here is gone."""
        ifnet = self.ifnets.pop(name)  # (if_unlink_ifnet: off the list before the message)
        self._announce(ifnet, name, C["IFAN_DEPARTURE"])  # if_detach_internal: rt_ifannouncemsg

    def _announce(self, ifnet: Ifnet, name: str, what: int) -> None:
        """rt_ifannouncemsg: an RTM_IFANNOUNCE of *ifnet* under *name* to every routing socket."""
        announce = bytearray(SIZE["struct if_announcemsghdr"])
        struct.pack_into("=HBB", announce, 0, len(announce), C["RTM_VERSION"], C["RTM_IFANNOUNCE"])
        struct.pack_into("=H", announce, OFF["struct if_announcemsghdr:ifan_index"], ifnet.index)
        at = OFF["struct if_announcemsghdr:ifan_name"]
        announce[at:at + len(name)] = name.encode()  # (ifan_name is IFNAMSIZ: the name fits, NUL after it)
        struct.pack_into("=H", announce, OFF["struct if_announcemsghdr:ifan_what"], what)
        self._raw_input(bytes(announce))

    def _raw_input(self, msg: bytes) -> None:
        """raw_input: a copy to each routing socket; a full buffer loses it (soroverflow, no SO_RERROR)."""
        by_peer = {self.sockets[fd].peer: fd for fd in self.route_sockets}
        for peer in raw_input(by_peer, msg):
            self.dropped += 1
            if self.options.get((by_peer[peer], SO_RERROR)):
                self.rerror.add(by_peer[peer])  # soroverflow

    # ------------------------------------------------------------ sysctl
    def sysctl(self, name: Any, namelen: int, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int:
        mib = [name[i] for i in range(namelen)]
        self.calls.append(("sysctl", tuple(mib)))
        if mib[:3] != [CTL_NET, PF_ROUTE, 0] or namelen != 6 or mib[4] != C["NET_RT_IFLIST"]:
            return self._fail(E["ENOENT"])  # (only net.route's interface list is simulated here)
        if newp != self.ffi.NULL:
            return self._fail(E["EPERM"])  # sysctl_rtsock: the tables are read-only
        table = b""
        for ifnet in self.ifnets.values():  # sysctl_iflist: an RTM_IFINFO with the sockaddr_dl per interface
            if mib[5] and mib[5] != ifnet.index:
                continue
            dl = bytearray(max(SIZE["struct sockaddr_dl"], 8 + len(ifnet.name)))
            struct.pack_into("=BBHBBBB", dl, 0, len(dl), AF_LINK, ifnet.index, 0, len(ifnet.name), 0, 0)
            dl[8:8 + len(ifnet.name)] = ifnet.name.encode()
            table += self._ifinfo(ifnet, [(C["RTA_IFP"], bytes(dl))])
        return 0 if sysctl_copyout(self.ffi, table, oldp, oldlenp) else self._fail(E["ENOMEM"])
