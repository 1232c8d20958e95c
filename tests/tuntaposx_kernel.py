"""The tuntaposx kext in the simulated XNU kernel: ``/dev/tunN`` and ``/dev/tapN`` (the seed's legacy macOS devices).

:class:`KextKernel` is ``xnu_net.XnuNetKernel`` (utun, interfaces,
addresses, routes) with the kext loaded (or not: ``kext=False``).  It
follows tuntaposx's sources (github.com/bbits/tuntaposx, src/tuntap.cc and
src/tun/tun.cc) rule by rule, each rule citing its function.  A node's fd
is one end of a real ``socketpair(AF_UNIX, SOCK_DGRAM)`` whose other end
the "kext" holds, so poll, blocking, close() from another thread and fd
counts stay real.  Numbers (open flags, errno values) come from XNU's
headers through ``darwin_golden.json``, not from the backend's cdefs.
"""

from __future__ import annotations

import os
import re
import select
import socket
from dataclasses import dataclass
from typing import Any, Dict, Set

from xnu_net import C, E, IFF_BROADCAST, IFF_MULTICAST, IFF_POINTOPOINT, IFF_RUNNING, IFF_UP, XnuNetKernel

O_RDWR, O_EXCL, O_CLOEXEC, O_ACCMODE = C["O_RDWR"], C["O_EXCL"], C["O_CLOEXEC"], 3
IFF_SIMPLEX = 0x800  # net/if.h (not in the golden probe's list)
IF_COUNT = 16  # TUN_IF_COUNT / TAP_IF_COUNT (the kext's Makefile): nodes per family
TUN_MTU = TAP_MTU = 1500  # tun.h / tap.h
_NODE = re.compile(rb"/dev/(tun|tap)(\d+)")


@dataclass
class Node:
    name: str  # tunN / tapN: the node's and the interface's name
    peer: int  # the kext's end of the socketpair


class KextKernel(XnuNetKernel):
    """``XnuNetKernel`` with the tuntaposx kext: 16 tun and 16 tap nodes while it is loaded."""

    def __init__(self, root: bool = True, kext: bool = True) -> None:
        super().__init__(root)
        self.kext = kext
        self.nodes: Dict[int, Node] = {}  # fd -> its open node
        self.elsewhere: Dict[str, int] = {}  # nodes another process holds open: name -> the kext's fd pair end

    # ------------------------------------------------------------ the character devices
    def _open_names(self) -> Set[str]:
        return {node.name for node in self.nodes.values()} | set(self.elsewhere)

    def open(self, path: Any, flags: int, *mode: Any) -> int:
        name = self.ffi.string(path) if isinstance(path, self.ffi.CData) else bytes(path)
        match = _NODE.fullmatch(name)
        if match is None:
            return super().open(path, flags, *mode)
        self.calls.append(("open", name, flags))
        family, unit = match.group(1).decode(), int(match.group(2))
        if not self.kext or unit >= IF_COUNT or match.group(2) != str(unit).encode():
            return self._fail(E["ENOENT"])  # no such devfs node (register_chardev makes %s%d for unit < count)
        if not self.root and flags & O_ACCMODE:
            return self._fail(E["EACCES"])  # devfs_make_node(..., UID 0, GID 0, 0660): root:wheel only
        ifname = f"{family}{unit}"
        if ifname in self._open_names():
            return self._fail(E["EBUSY"])  # tuntap_interface::cdev_open: "if (open) return EBUSY"
        user, kext = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, not flags & O_CLOEXEC)
        self.files[fd] = name.decode()
        self.nodes[fd] = Node(ifname, kext.detach())
        self._attach(ifname)
        return fd

    def _attach(self, ifname: str) -> None:
        """cdev_open -> initialize_netif -> register_interface: attached RUNNING|MULTICAST|SIMPLEX, not UP;
        tun_interface::initialize_interface adds POINTOPOINT, a tap is an Ethernet interface (broadcast, a MAC)."""
        flags = IFF_RUNNING | IFF_MULTICAST | IFF_SIMPLEX
        if ifname.startswith("tun"):
            self.attach(ifname, flags | IFF_POINTOPOINT, TUN_MTU)
        else:
            ifp = self.attach(ifname, flags | IFF_BROADCAST, TAP_MTU)
            ifp.lladdr = bytes((0x02, 0x74, 0x61, 0x70, 0, int(ifname[3:])))

    def hold(self, ifname: str) -> None:
        """Another process opens node *ifname* (its interface comes, as for ours)."""
        user, kext = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.elsewhere[ifname] = user.detach()
        os.close(kext.detach())
        self._attach(ifname)

    def _release_node(self, fd: int) -> None:
        """The last reference went (close, or dup2 over it): cdev_close -> shutdown_netif detaches the interface."""
        node = self.nodes.pop(fd)
        self.detach(node.name)
        os.close(node.peer)

    def close(self, fd: int) -> int:
        if fd in self.nodes:
            self._release_node(fd)
        return super().close(fd)

    def dup2(self, fd: int, to: int) -> int:
        if to in self.nodes and self._known(fd):
            self._release_node(to)
        return super().dup2(fd, to)

    # ------------------------------------------------------------ reads and writes
    def _not_ready(self, fd: int) -> bool:
        """cdev_read/cdev_write: ``!open || ifp == NULL || !(ifnet_flags(ifp) & IFF_UP)`` -> EIO."""
        node = self.nodes.get(fd)
        if node is None:
            return False
        ifp = self.ifnets.get(node.name)
        return ifp is None or not ifp.flags & IFF_UP

    def _readv(self, fd: int, iov: Any, iovcnt: int) -> int:
        if self._not_ready(fd):
            return self._fail(E["EIO"])
        return super()._readv(fd, iov, iovcnt)

    def _writev(self, fd: int, iov: Any, iovcnt: int) -> int:
        if self._not_ready(fd):
            return self._fail(E["EIO"])
        return super()._writev(fd, iov, iovcnt)

    # ------------------------------------------------------------ the kext's side
    def _node(self, ifname: str) -> Node:
        return next(node for node in self.nodes.values() if node.name == ifname)

    def send(self, ifname: str, packet: bytes) -> None:
        """The stack sends *packet* out of *ifname* (if_output queues it whole: no header on a tun, tun.cc)."""
        os.write(self._node(ifname).peer, packet)

    def received(self, ifname: str, timeout: float = 5.0) -> bytes:
        """What the process wrote to *ifname*, as cdev_write hands it to ifnet_input."""
        peer = self._node(ifname).peer
        if not select.select([peer], [], [], timeout)[0]:
            raise TimeoutError(f"nothing written to {ifname}")
        return os.read(peer, 1 << 17)

    def teardown(self) -> None:
        super().teardown()
        for fd in self.elsewhere.values():
            os.close(fd)
        self.elsewhere.clear()

