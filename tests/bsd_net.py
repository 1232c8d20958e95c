"""What the simulated XNU and FreeBSD network sides share: PF_ROUTE sockets and the net.route sysctl.

Both kernels answer a routing socket's write the same way (``route_output``
in either rtsock.c: the length check, ``rtm_pid``, ``rtm_errno`` or
``RTF_DONE``, the copy to every PF_ROUTE listener, the sender's own
included, SO_USELOOPBACK being on) and serve ``sysctl(CTL_NET, PF_ROUTE,
0, af, op, arg)`` the same way (size it with a NULL buffer, ENOMEM for a
short one, read-only).  :class:`PfRouteSide` holds that once; a kernel
mixes it in and brings its numbers (:attr:`C`, :attr:`E`, :attr:`OFF`,
:attr:`SIZE`), its sockaddr room in a message (:meth:`sa_room`: XNU's
ROUNDUP32, FreeBSD's SA_SIZE), its message alignment, and the rules that
differ: :meth:`_route_request`, :meth:`_route_sockaddrs`, :meth:`_iflist`.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

CTL_NET = 4  # sys/sysctl.h on both BSDs


class PfRouteSide:
    """The PF_ROUTE half of a simulated BSD kernel (a mixin after the kernel class: it has sockets, calls, ffi, _fail)."""

    C: Mapping[str, int]  #: the platform's constants (golden)
    E: Mapping[str, int]  #: its errno values
    OFF: Mapping[str, int]  #: struct offsets ("struct rt_msghdr:rtm_pid")
    SIZE: Mapping[str, int]  #: struct sizes
    MESSAGE_ALIGN = 1  #: a sysctl message's length is rounded up to this (FreeBSD: ALIGN, 8)

    # What the kernel class provides.
    sockets: Dict[int, Any]
    net_sockets: Dict[int, int]  # fd -> family (AF_INET, AF_INET6, PF_ROUTE)
    routes: List[Any]  # the routing table: entries with family, ifindex, flags
    chatter: List[bytes]  # other listeners' messages each route socket gets before a reply
    full_buffers: bool  # raw_input / rts_input: a full socket buffer drops the copy
    calls: List[Tuple[Any, ...]]
    ffi: Any
    _fail: Callable[[int], int]  # errno set, -1

    @staticmethod
    def sa_room(sa_len: int) -> int:
        """The bytes a sockaddr of *sa_len* takes in a routing message."""
        raise NotImplementedError

    def _route_request(self, msg: bytes, size: int) -> int:
        """The errno of applying request *msg* (its rt_msghdr *size* bytes) to the table."""
        raise NotImplementedError

    def _route_sockaddrs(self, route: Any) -> List[Tuple[int, bytes]]:
        """The (RTA bit, sockaddr) pairs of *route* in a dump."""
        raise NotImplementedError

    def _iflist(self, af: int, index: int) -> bytes:
        raise NotImplementedError

    # ------------------------------------------------------------ routing sockets
    def route_write(self, fd: int, msg: bytes) -> int:
        """A write on PF_ROUTE socket *fd*: route_output, then the message back to every listener."""
        self.calls.append(("route_write",))
        for other in self.chatter:  # other processes' messages reach every listener first
            os.write(self.sockets[fd].peer, other)
        error, reply = self._route_output(msg)
        if reply is not None and not self.full_buffers:  # SO_USELOOPBACK: the sender's copy too
            for rfd, family in self.net_sockets.items():
                if family == self.C["PF_ROUTE"]:
                    os.write(self.sockets[rfd].peer, reply)
        return self._fail(error) if error else len(msg)

    def _route_output(self, msg: bytes) -> Tuple[int, Optional[bytes]]:
        """route_output (rtsock.c): the errno and the message every listener gets back."""
        off = {f: self.OFF[f"struct rt_msghdr:rtm_{f}"] for f in ("flags", "pid", "errno")}
        size = self.SIZE["struct rt_msghdr"]
        if len(msg) < size or len(msg) != struct.unpack_from("=H", msg, 0)[0]:
            return self.E["EINVAL"], None  # len < sizeof(*rtm) or != rtm_msglen: no message back
        out = bytearray(msg)
        error = self._route_request(msg, size)
        struct.pack_into("=i", out, off["pid"], os.getpid())  # rtm->rtm_pid: the sender's pid
        if error:
            struct.pack_into("=i", out, off["errno"], error)
        else:
            flags = struct.unpack_from("=i", out, off["flags"])[0]
            struct.pack_into("=i", out, off["flags"], flags | self.C["RTF_DONE"])
        return error, bytes(out)

    # ------------------------------------------------------------ sysctl
    def sysctl(self, name: Any, namelen: int, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int:
        mib = [name[i] for i in range(namelen)]
        self.calls.append(("sysctl", tuple(mib)))
        if namelen != 6 or mib[:3] != [CTL_NET, self.C["PF_ROUTE"], 0]:
            return self._fail(self.E["ENOENT"])  # (only net.route is simulated)
        if newp != self.ffi.NULL:
            return self._fail(self.E["EPERM"])  # sysctl_rtsock: req->newptr (the tables are read-only)
        af, op, arg = mib[3:]
        if op == self.C["NET_RT_DUMP"]:
            table = self._dump(af)
        elif op == self.C["NET_RT_IFLIST"]:
            table = self._iflist(af, arg)
        else:
            return self._fail(self.E["EINVAL"])
        if oldp == self.ffi.NULL:  # sysctl: the size a buffer needs
            oldlenp[0] = len(table)
            return 0
        if oldlenp[0] < len(table):
            return self._fail(self.E["ENOMEM"])  # SYSCTL_OUT: the buffer is too small
        self.ffi.memmove(oldp, table, len(table))
        oldlenp[0] = len(table)
        return 0

    def _dump(self, af: int) -> bytes:
        """sysctl_dumpentry (XNU) / sysctl_dumpnhop (FreeBSD): an RTM_GET per route of *af* (0: all),
        ``rtm_index`` the route's interface, ``rtm_flags`` its flags (RTF_UP among them)."""
        out = b""
        for r in self.routes:
            if af and af != r.family:
                continue
            out += self._message("struct rt_msghdr", "rtm_", self.C["RTM_GET"],
                                 {"index": ("=H", r.ifindex), "flags": ("=i", r.flags)}, self._route_sockaddrs(r))
        return out

    def _message(self, ctype: str, prefix: str, msg_type: int, fields: Dict[str, Tuple[str, int]],
                 items: List[Tuple[int, bytes]]) -> bytes:
        """rt_msg2 / rtsock_msg_buffer: the header, then the sockaddr of each set bit, each sa_room long."""
        mask, body = 0, b""
        for bit, sa in sorted(items):
            mask |= bit
            body += sa + bytes(self.sa_room(sa[0] if sa else 0) - len(sa))
        head = bytearray(self.SIZE[ctype])
        step = self.MESSAGE_ALIGN
        length = (len(head) + len(body) + step - 1) // step * step
        struct.pack_into("=HBB", head, 0, length, self.C["RTM_VERSION"], msg_type)
        struct.pack_into("=i", head, self.OFF[f"{ctype}:{prefix}addrs"], mask)
        for fname, (fmt, value) in fields.items():
            struct.pack_into(fmt, head, self.OFF[f"{ctype}:{prefix}{fname}"], value)
        return (bytes(head) + body).ljust(length, b"\0")
