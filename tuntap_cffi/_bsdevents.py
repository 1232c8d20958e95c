"""The BSDs' link-event source (macOS, FreeBSD): a PF_ROUTE socket's RTM_IFINFO, RTM_NEWADDR/DELADDR, RTM_IFANNOUNCE.

Facts that shape this module (XNU bsd/net/rtsock.c, if.c; FreeBSD
sys/net/rtsock.c, if.c):

- Every PF_ROUTE socket gets every routing message of the system
  (``raw_input``); no privilege is needed to listen.  The interface's
  messages are kept by index, the rest (routes, other interfaces) skipped.
- ``rt_ifmsg`` sends an RTM_IFINFO (``if_msghdr``: the flags, ``if_data``
  with the MTU, no sockaddrs) when the interface goes up or down
  (``if_updown``), its MTU changes (``ifioctl`` SIOCSIFMTU) and on
  promiscuous/allmulti changes: a whole state, diffed by the iterator.
  FreeBSD's ``if_data`` has ``ifi_link_state`` (``if_link_state_change``
  sends an RTM_IFINFO too: LINK_STATE_UP when a tun is opened, DOWN when
  closed): the carrier.  XNU's has no link state (link changes are kernel
  events, ``KEV_DL_LINK_ON``, not routing messages): on macOS the carrier
  is not reported and no carrier event comes.
- ``rt_newaddrmsg`` sends RTM_NEWADDR/RTM_DELADDR (``ifa_msghdr``:
  RTA_IFA, RTA_NETMASK, RTA_BRD the peer on a point-to-point link) when an
  address's route is installed or removed (XNU ``rtinit``,
  ``in6_ifloop_request``).
- FreeBSD's ``rt_ifannouncemsg`` sends RTM_IFANNOUNCE (``if_announcemsghdr``)
  with IFAN_DEPARTURE when an interface is destroyed or leaves the vnet
  (``if_detach_internal``, after ``if_unlink_ifnet`` took it off the
  interface list): LinkDeleted.  A rename (``ifhwioctl`` SIOCSIFNAME)
  sends IFAN_DEPARTURE and IFAN_ARRIVAL too but the interface stays
  listed under its index, so a departure is taken for a deletion only
  when ``NET_RT_IFLIST`` no longer lists the index.  XNU
  has no such message; a utun goes only when its socket closes, which is
  the Device's close and ends the iteration anyway.
- Overflow: XNU's ``raw_input`` drops a message that does not fit the
  socket's buffer without telling the reader (raw_usrreq.c ignores
  ``sbappendaddr``'s failure), so on macOS no EventsLost can be reported,
  and *rcvbuf* is refused there.  FreeBSD's ``soroverflow`` makes the next
  read fail with ENOBUFS when the socket has SO_RERROR (FreeBSD 15; not in
  14's headers, whose sosetopt refuses it with ENOPROTOOPT: a loss then goes
  unreported, as on macOS), which is asked for here; *rcvbuf* is its SO_RCVBUF.
- The state to diff against is ``sysctl(NET_RT_IFLIST, index)``: the same
  RTM_IFINFO and RTM_NEWADDR messages as the events, one parser.
- The socket is close-on-exec and non-blocking (``fcntl``: macOS's
  ``socket`` takes no SOCK_* flags); every call goes through the
  platform's libc boundary.
"""

from __future__ import annotations

import errno as _errno
from typing import Callable, Dict, List, Optional, Tuple

from ._bsd import BsdLibc, Numbers, netconfig, rtmsg
from ._eventsource import EventSink, read_failed
from ._netvalues import Address, LinkState
from .errors import UnsupportedPlatformError, error_from_errno

__all__ = ["RouteSource", "check_rcvbuf"]

#: A routing message is an rt_msghdr and its sockaddrs, or an if_msghdr: well under this.
_READ_SIZE = 4096


def check_rcvbuf(k: Numbers, name: str, rcvbuf: Optional[int]) -> None:
    """Refuse a *rcvbuf* (before any call) where losses are not reported (no SO_RERROR: macOS)."""
    if rcvbuf is not None and "SO_RERROR" not in k.constants:
        raise UnsupportedPlatformError(_errno.EOPNOTSUPP, f"link events' rcvbuf on {k.platform}: the kernel "
                                       "drops what overflows the routing socket silently; leave rcvbuf=None", name)


class RouteSource:
    """Interface *index*'s link events from a PF_ROUTE socket (see the module docstring)."""

    def __init__(self, lib: BsdLibc, k: Numbers, name: str, index: int, rcvbuf: Optional[int] = None) -> None:
        self._lib, self._k, self._name, self._index = lib, k, name, index
        c = k.constants
        # (the functions, not bound methods: no reference cycle through self)
        self._types: Dict[int, Callable[[RouteSource, bytes, EventSink], None]] = {
            c["RTM_IFINFO"]: RouteSource._ifinfo, c["RTM_NEWADDR"]: RouteSource._newaddr,
            c["RTM_DELADDR"]: RouteSource._deladdr}
        if "RTM_IFANNOUNCE" in c:
            self._types[c["RTM_IFANNOUNCE"]] = RouteSource._announce
        self._p2p = False  # the last state's IFF_POINTOPOINT: RTA_BRD is the peer then
        what = f"cannot open a PF_ROUTE socket for the link events of {name}"
        self._sock = netconfig.route_socket(lib, k, what)
        try:
            flags = lib.fcntl(self._sock, c["F_GETFL"], lib.ffi.cast("int", 0))
            if flags < 0 or lib.fcntl(self._sock, c["F_SETFL"], lib.ffi.cast("int", flags | c["O_NONBLOCK"])) < 0:
                raise error_from_errno(k.host_errno(lib.errno()), "fcntl", name, what)
            if "SO_RERROR" in c:  # (False from a kernel before FreeBSD 15: losses go unreported, as on macOS)
                self._option("SO_RERROR", 1, "cannot have lost link events reported", optional=True)
            if rcvbuf is not None:
                self._option("SO_RCVBUF", rcvbuf, f"cannot set the link events' buffer to {rcvbuf} bytes")
        except BaseException:
            self.close()
            raise
        self._buf = lib.ffi.new("char[]", _READ_SIZE)

    def _option(self, option: str, value: int, what: str, optional: bool = False) -> bool:
        """``setsockopt(SOL_SOCKET, option, int value)`` on the socket; False if *optional* and the kernel lacks it."""
        lib, c = self._lib, self._k.constants
        if lib.setsockopt(self._sock, c["SOL_SOCKET"], c[option], lib.ffi.new("int *", value), 4) < 0:
            err = self._k.host_errno(lib.errno())
            if optional and err == _errno.ENOPROTOOPT:
                return False
            raise error_from_errno(err, "setsockopt", self._name, what)
        return True

    @property
    def fd(self) -> int:
        return self._sock

    def receive(self, sink: EventSink) -> bool:
        lib, k = self._lib, self._k
        n = lib.read(self._sock, self._buf, _READ_SIZE)
        if n < 0:
            return read_failed(k.host_errno(lib.errno()), sink, "read", self._name)
        for kind, msg in rtmsg.walk(bytes(lib.ffi.buffer(self._buf, n)), k):
            handle = self._types.get(kind)
            if handle is not None:
                try:
                    handle(self, msg, sink)
                except ValueError:
                    continue  # shorter than its header: not a message to trust
        return True

    def _ifinfo(self, msg: bytes, sink: EventSink) -> None:
        hdr, _ = rtmsg.header(self._lib.ffi, self._k, msg)
        if hdr.ifindex == self._index:
            state = netconfig.link_state(self._k, self._index, hdr.flags, *rtmsg.link_data(self._lib.ffi, msg))
            self._p2p = bool(state.flags & self._k.constants["IFF_POINTOPOINT"])
            sink._link(state)

    def _address(self, msg: bytes, sink: EventSink, added: bool) -> None:
        hdr, sas = rtmsg.sockaddrs(self._lib.ffi, self._k, msg)
        if hdr.ifindex == self._index:
            address = netconfig.address_of(self._k, sas, self._p2p)
            if address is not None:
                sink._address(address, added)

    def _newaddr(self, msg: bytes, sink: EventSink) -> None:
        self._address(msg, sink, True)

    def _deladdr(self, msg: bytes, sink: EventSink) -> None:
        self._address(msg, sink, False)

    def _announce(self, msg: bytes, sink: EventSink) -> None:
        index, what = rtmsg.announcement(self._lib.ffi, msg)
        if index == self._index and what == self._k.constants["IFAN_DEPARTURE"]:
            state, _ = netconfig.interface_state(self._lib, self._k, index, self._name)
            if state is None:  # (still listed: a rename, see the module docstring)
                sink._deleted()

    def drain(self) -> None:
        lib, k = self._lib, self._k
        while lib.read(self._sock, self._buf, _READ_SIZE) >= 0 or \
                k.host_errno(lib.errno()) in (_errno.EINTR, _errno.ENOBUFS):
            pass

    def snapshot(self) -> Tuple[LinkState, List[Address]]:
        state, addresses = netconfig.interface_state(self._lib, self._k, self._index, self._name)
        if state is None:
            raise error_from_errno(_errno.ENODEV, "sysctl", self._name, f"{self._name} is gone")
        self._p2p = bool(state.flags & self._k.constants["IFF_POINTOPOINT"])
        return state, addresses

    def close(self) -> None:
        sock, self._sock = self._sock, -1
        if sock >= 0:
            self._lib.close(sock)
