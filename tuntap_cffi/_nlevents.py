"""Linux's link-event source: a NETLINK_ROUTE socket bound to the link and address groups.

Facts that shape this module:

- The kernel multicasts every link change (RTMGRP_LINK: RTM_NEWLINK,
  RTM_DELLINK) and address change (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR:
  RTM_NEWADDR, RTM_DELADDR) of the namespace to each NETLINK_ROUTE socket
  bound to those groups; no privilege is needed to listen.  The socket is
  made inside the device's namespace: a netlink socket hears only the
  namespace it was made in.
- Only the kernel's messages count (sender port 0): any CAP_NET_ADMIN
  process may send to our port.
- A full receive buffer makes the next ``recv`` fail with ENOBUFS: the
  iterator is told (``EventSink.lost``).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import TYPE_CHECKING, List, Optional, Tuple

from . import config
from ._eventsource import EventSink, read_failed
from ._netlink import NLMSG_HDRLEN
from ._syscalls import check, close_quietly, ffi, lib

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device

__all__ = ["NetlinkSource"]

_GROUPS = lib.RTMGRP_LINK | lib.RTMGRP_IPV4_IFADDR | lib.RTMGRP_IPV6_IFADDR
_MSG_DONTWAIT = 0x40  # (the same value on every Linux architecture)
_RECV_SIZE = 65536
_NLMSG_LEN_TYPE = struct.Struct("=IH")  # the start of struct nlmsghdr


class NetlinkSource:
    """One interface's link events from rtnetlink (see the module docstring)."""

    def __init__(self, dev: "Device", rcvbuf: Optional[int]) -> None:
        self._dev = dev
        self._name = dev.name
        self._index = -1  # the interface's, from the first snapshot (in its namespace)
        self._sock = dev._in_own_netns(lambda: self._subscribe(rcvbuf), close_quietly)
        self._buf = bytearray(_RECV_SIZE)
        self._ptr = ffi.from_buffer(self._buf)
        self._sender_nl = ffi.new("struct sockaddr_nl *")
        self._sender = ffi.cast("struct sockaddr *", self._sender_nl)
        self._addrlen = ffi.new("socklen_t *")

    @property
    def fd(self) -> int:
        return self._sock

    def _subscribe(self, rcvbuf: Optional[int]) -> int:
        sock = check(lib.socket, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0,  # NETLINK_ROUTE
                     op="socket", name=self._name, what="cannot open a NETLINK_ROUTE socket for link events")
        try:
            if rcvbuf is not None:
                size = ffi.new("int *", rcvbuf)
                check(lib.setsockopt, sock, socket.SOL_SOCKET, socket.SO_RCVBUF, size, ffi.sizeof("int"),
                      op="setsockopt", name=self._name, what=f"cannot set the link events' buffer to {rcvbuf} bytes")
            addr = ffi.new("struct sockaddr_nl *")
            addr.nl_family, addr.nl_groups = socket.AF_NETLINK, _GROUPS
            check(lib.bind, sock, ffi.cast("struct sockaddr *", addr), ffi.sizeof("struct sockaddr_nl"),
                  op="bind", name=self._name, what="cannot subscribe to link and address notifications")
        except BaseException:
            close_quietly(sock)
            raise
        return sock

    def receive(self, sink: EventSink) -> bool:
        self._addrlen[0] = ffi.sizeof("struct sockaddr_nl")
        n: int = lib.recvfrom(self._sock, self._ptr, _RECV_SIZE, _MSG_DONTWAIT, self._sender, self._addrlen)
        if n < 0:
            return read_failed(ffi.errno, sink, "netlink", self._name)
        if self._sender_nl.nl_pid == 0:  # only the kernel's: any CAP_NET_ADMIN process may send to our port
            self._parse(memoryview(self._buf)[:n], sink)
        return True

    def _parse(self, data: memoryview, sink: EventSink) -> None:
        offset, end = 0, len(data)
        while offset + NLMSG_HDRLEN <= end:
            length, kind = _NLMSG_LEN_TYPE.unpack_from(data, offset)
            if length < NLMSG_HDRLEN or offset + length > end:
                return  # malformed: the rest cannot be framed
            body = data[offset + NLMSG_HDRLEN : offset + length]
            offset += (length + 3) & ~3
            if kind in (lib.RTM_NEWLINK, lib.RTM_DELLINK):
                state = config.parse_link(body)
                if state is None or state.ifindex != self._index:
                    continue
                if kind == lib.RTM_DELLINK:
                    sink._deleted()
                    return
                sink._link(state)
            elif kind in (lib.RTM_NEWADDR, lib.RTM_DELADDR):
                parsed = config.parse_address_message(body)
                if parsed is None or parsed[0] != self._index:
                    continue
                sink._address(parsed[1], kind == lib.RTM_NEWADDR)

    def drain(self) -> None:
        while lib.recv(self._sock, self._ptr, _RECV_SIZE, _MSG_DONTWAIT) >= 0 or ffi.errno in (errno.EINTR, errno.ENOBUFS):
            pass

    def snapshot(self) -> Tuple[config.LinkState, List[config.Address]]:
        state, addresses = self._dev._link_snapshot()
        self._index = state.ifindex
        return state, addresses

    def close(self) -> None:
        sock, self._sock = self._sock, -1
        close_quietly(sock)
