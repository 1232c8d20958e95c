"""A simulated FreeBSD kernel at the FreeBSD backend's libc boundary (``tuntap_cffi._freebsd.libc``).

It answers the calls that open, drive and destroy a tun or tap as FreeBSD
14's sys/net/if_tuntap.c does, rule by rule; each rule cites the kernel
function it follows.  Every /dev/tun fd is one end of a real
``socketpair(AF_UNIX, SOCK_DGRAM)`` whose other end the "kernel" holds (one
datagram = one packet, as ``tunread`` returns one packet per read and
``tunwrite`` takes one per write), so fd counts, poll, blocking and close
stay real.  Numbers come from FreeBSD's headers (``tests/freebsd_golden.json``),
not from the backend's cdefs.  Every call is recorded in ``calls``.

The process side (pipes, poll, dup2, /dev/null, fcntl, the errno of a real
fd) is :class:`darwin_kernel.XnuKernel`'s: both BSDs behave alike there, and
the errno numbers they share (all below 70) are the same; a real fd's error
is translated here with FreeBSD's table.

The network side is what the Device's life needs: an interface per unit,
its flags, MTU and index (``SIOCGIFFLAGS``/``SIOCSIFFLAGS``,
``SIOCGIFMTU``/``SIOCSIFMTU``, ``if_nametoindex``), ``SIOCSIFNAME`` and
``SIOCIFDESTROY`` on an ``AF_INET`` datagram socket (``ifioctl``).
Addresses, routes and a TAP's MAC are ``freebsd_net.FreeBsdNetKernel``'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import select
import socket
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cffi

from darwin_kernel import XnuKernel
from tuntap_cffi import _bsdlibc
from tuntap_cffi._freebsd import cdefs

GOLDEN = json.loads((pathlib.Path(__file__).parent / "freebsd_golden.json").read_text())
C = GOLDEN["constants"]
IO = GOLDEN["ioctls"]
#: sys/errno.h: FreeBSD's numbers.
E = {name: value for name, value in C.items() if name.startswith("E")}
AF_INET, AF_INET6 = C["AF_INET"], C["AF_INET6"]  # 2, 28
IFF_UP, IFF_POINTOPOINT, IFF_BROADCAST, IFF_MULTICAST = (C[n] for n in (
    "IFF_UP", "IFF_POINTOPOINT", "IFF_BROADCAST", "IFF_MULTICAST"))
IFF_LINK0 = 0x1000  # net/if.h (not in the golden file: no library code uses it)
IFF_RUNNING, IFF_CANTCHANGE = C["IFF_RUNNING"], C["IFF_CANTCHANGE"]
IFF_SIMPLEX = 0x800  # net/if.h (not in the golden constants; only tuncreate's default tap flags use it)
O_NONBLOCK, O_CLOEXEC, O_RDWR = C["O_NONBLOCK"], C["O_CLOEXEC"], C["O_RDWR"]
IF_MAXUNIT = C["IF_MAXUNIT"]
IF_MINMTU, IF_MAXMTU = 72, 65535  # net/if_var.h: what ifhwioctl SIOCSIFMTU accepts


@dataclass
class Ifnet:
    """One tun/tap: its cdev (``node``, named at creation) and its ifnet (``name``, changed by SIOCSIFNAME)."""

    kind: str  # "tun" or "tap"
    unit: int
    name: str
    index: int
    flags: int
    mtu: int = C["TUNMTU"]
    head: bool = False  # TUN_IFHEAD
    fd: Optional[int] = None  # the fd it is open on (TUN_OPEN)

    @property
    def node(self) -> str:
        return f"{self.kind}{self.unit}"


@dataclass
class _Dev:
    """An open /dev/tun fd: what XnuKernel keeps of a socket (peer, status) plus its interface."""

    peer: int
    ifnet: Ifnet
    type: int = 0
    status: int = O_RDWR
    unit: int = 0
    control: Optional[str] = None


class FreeBsdKernel(XnuKernel):
    """The kernel side of the FreeBSD libc boundary: /dev/tun and /dev/tap, their interfaces, ifioctl."""

    IFNET = Ifnet  #: the interface record _create makes (freebsd_net's adds addresses)

    def __init__(self, root: bool = True) -> None:
        super().__init__(root)  # root: priv_check(PRIV_NET_IFCREATE ...) of the calling process succeeds
        self.ffi = cffi.FFI()
        cdefs.declare(self.ffi)
        self.ffi.cdef(_bsdlibc.FUNCTIONS)
        self.ifnets: Dict[str, Ifnet] = {}  # by interface name
        self.destroyed: List[str] = []  # interfaces SIOCIFDESTROY removed, in order
        self._next_index = 1

    # ------------------------------------------------------------ helpers
    @property
    def interfaces(self) -> List[str]:  # type: ignore[override]
        return sorted(self.ifnets)

    def _by_node(self, node: str) -> Optional[Ifnet]:
        return next((i for i in self.ifnets.values() if i.node == node), None)

    @staticmethod
    def _macos(exc: OSError) -> int:
        """FreeBSD's number for a real Linux fd's error (by name)."""
        return E.get(errno.errorcode.get(exc.errno or 0, ""), E["EIO"])

    def _create(self, kind: str, unit: int) -> Ifnet:
        """tun_create_device + tuncreate: a tun is IFF_POINTOPOINT|IFF_MULTICAST, a tap
        IFF_BROADCAST|IFF_SIMPLEX|IFF_MULTICAST; neither is up; MTU TUNMTU (ether_ifattach: 1500 too)."""
        flags = IFF_MULTICAST | (IFF_POINTOPOINT if kind == "tun" else IFF_BROADCAST | IFF_SIMPLEX)
        ifnet = self.IFNET(kind, unit, f"{kind}{unit}", self._next_index, flags)
        self._next_index += 1
        self.ifnets[ifnet.name] = ifnet
        return ifnet

    # ------------------------------------------------------------ open and close
    def open(self, path: Any, flags: int, *mode: Any) -> int:
        name = self.ffi.string(path) if isinstance(path, self.ffi.CData) else bytes(path)
        self.calls.append(("open", name, flags))
        if name == b"/dev/null":
            if flags & ~O_CLOEXEC:
                return self._fail(E["EACCES"])  # (only what a Device opens is simulated)
            fd = os.open(os.devnull, os.O_RDONLY)
            os.set_inheritable(fd, not flags & O_CLOEXEC)
            self.files[fd] = "/dev/null"
            return fd
        node = name.decode("latin-1").removeprefix("/dev/")
        kind = next((k for k in ("tun", "tap") if node.startswith(k)), None)
        digits = node[3:]
        if kind is None or digits and not digits.isdecimal():
            return self._fail(E["ENOENT"])  # (no other node is simulated)
        ifnet = self._by_node(node) if digits else None
        if ifnet is None:
            # tunclone (dev_clone handler): a unit above IF_MAXUNIT is not recognised, and only a
            # process with PRIV_NET_IFCREATE may clone (tap: unless net.link.tap.user_open); no
            # clone -> devfs finds no node: ENOENT.
            unit = int(digits) if digits else min(set(range(IF_MAXUNIT + 2)) - self._units(kind))
            if unit > IF_MAXUNIT or not self.root:
                return self._fail(E["ENOENT"])
            ifnet = self._create(kind, unit)  # clone_create, tun_create_device, if_clone_create -> tuncreate
        elif not self.root:
            return self._fail(E["EACCES"])  # the node is root's, mode 0600 (tun_create_device: mda_mode)
        if ifnet.fd is not None:
            return self._fail(E["EBUSY"])  # tunopen: TUN_OPEN already
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_blocking(fd, not flags & O_NONBLOCK)
        os.set_inheritable(fd, not flags & O_CLOEXEC)
        self.sockets[fd] = _Dev(peer=kernel.detach(), ifnet=ifnet, status=O_RDWR | flags & O_NONBLOCK)  # type: ignore[assignment]
        ifnet.fd = fd  # tunopen: TUN_OPEN; a tap also gets IFF_DRV_RUNNING
        if kind == "tap":
            ifnet.flags |= IFF_RUNNING
        return fd

    def _units(self, kind: str) -> set:  # type: ignore[type-arg]
        return {i.unit for i in self.ifnets.values() if i.kind == kind}

    def _detach_socket(self, fd: int) -> None:
        """The last close of a /dev/tun fd (close, or dup2 over it): tundtor.

        Pending output is purged (the kernel end goes), the interface is
        brought down and loses IFF_DRV_RUNNING and its addresses (not a tap
        with IFF_LINK0: tundtor skips to ``out`` for it), TUN_OPEN and
        TUN_IFHEAD's fd go; the interface itself stays (tunclose does not
        destroy it: only SIOCIFDESTROY does)."""
        dev = self.sockets.pop(fd)
        if isinstance(dev, _Dev):
            ifnet = dev.ifnet
            if not (ifnet.kind == "tap" and ifnet.flags & IFF_LINK0):
                ifnet.flags &= ~(IFF_UP | IFF_RUNNING)
            ifnet.fd = None
        os.close(dev.peer)

    def socket(self, domain: int, type: int, protocol: int) -> int:
        """An AF_INET or AF_INET6 datagram socket for ifioctl (nothing else is simulated)."""
        self.calls.append(("socket", domain, type))
        if domain not in (AF_INET, AF_INET6):
            return self._fail(E["EAFNOSUPPORT"])
        if type != C["SOCK_DGRAM"]:
            return self._fail(E["EPROTOTYPE"])
        user, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        other.close()
        fd = user.detach()
        os.set_inheritable(fd, True)  # socket() without SOCK_CLOEXEC: open across exec until fcntl
        self.files[fd] = "inet"
        return fd

    # ------------------------------------------------------------ ioctl
    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        self.calls.append(("ioctl", fd, request))
        dev = self.sockets.get(fd)
        if isinstance(dev, _Dev):
            return self._tunioctl(dev.ifnet, request, arg)
        if self.files.get(fd) == "inet":
            return self._ifioctl(request, arg)
        return self._fail(E["EBADF"] if fd not in self.files else E["ENOTTY"])

    def _tunioctl(self, ifnet: Ifnet, request: int, arg: Any) -> int:
        """tunioctl: the tun-only ioctls, then the common ones; anything else ENOTTY."""
        if ifnet.kind == "tun" and request == IO["TUNSIFHEAD"]:
            ifnet.head = bool(self.ffi.cast("int *", arg)[0])  # (and clears TUN_LMODE)
            return 0
        if ifnet.kind == "tun" and request == IO["TUNGIFHEAD"]:
            self.ffi.cast("int *", arg)[0] = int(ifnet.head)
            return 0
        if ifnet.kind == "tun" and request == IO["TUNSIFMODE"]:
            if ifnet.flags & IFF_UP:
                return self._fail(E["EBUSY"])  # "deny this if UP"
            mode = self.ffi.cast("int *", arg)[0]
            if mode & ~IFF_MULTICAST not in (IFF_POINTOPOINT, IFF_BROADCAST):
                return self._fail(E["EINVAL"])
            ifnet.flags = ifnet.flags & ~(IFF_BROADCAST | IFF_POINTOPOINT | IFF_MULTICAST) | mode
            return 0
        if request == IO["TUNGIFNAME"]:  # strlcpy(ifr_name, if_xname, IFNAMSIZ)
            ifr = self.ffi.cast("struct ifreq *", arg)
            ifr.ifr_name = ifnet.name.encode()
            return 0
        return self._fail(E["ENOTTY"])  # tunioctl default (TUNSIFHEAD on a tap falls through to it)

    def _ifioctl(self, request: int, arg: Any) -> int:
        """ifioctl / ifhwioctl on an AF_INET socket (sys/net/if.c), for the requests a Device makes."""
        ifr = self.ffi.cast("struct ifreq *", arg)
        name = self.ffi.string(ifr.ifr_name).decode("latin-1")
        if request == IO["SIOCIFDESTROY"]:
            if not self.root:
                return self._fail(E["EPERM"])  # ifioctl: priv_check(PRIV_NET_IFDESTROY)
            ifnet = self.ifnets.get(name)
            if ifnet is None:
                return self._fail(E["ENXIO"])  # if_clone_destroy: ifunit_ref found none
            # tun_destroy sleeps on tun_cv until the device is closed (tun_busy): a library that
            # destroyed an open device would hang on FreeBSD.
            assert ifnet.fd is None, f"SIOCIFDESTROY of {name} while it is open would block in tun_destroy"
            del self.ifnets[name]
            self.destroyed.append(name)
            return 0
        ifnet = self.ifnets.get(name)
        if ifnet is None:
            return self._fail(E["ENXIO"])  # ifioctl: ifunit_ref(ifr_name) found none
        if request == IO["SIOCGIFFLAGS"]:
            ifr.ifr_ifru.ifru_flags = ifnet.flags & 0x7FFF | -(ifnet.flags & 0x8000)
            ifr.ifr_ifru.ifru_flagshigh = ifnet.flags >> 16
            return 0
        if request == IO["SIOCGIFMTU"]:
            ifr.ifr_ifru.ifru_mtu = ifnet.mtu
            return 0
        if not self.root:
            return self._fail(E["EPERM"])  # ifhwioctl: priv_check for every set
        if request == IO["SIOCSIFFLAGS"]:
            # ifhwioctl: the bits in IFF_CANTCHANGE stay; up and down are if_up/if_down.
            wanted = (ifr.ifr_ifru.ifru_flags & 0xFFFF) | (ifr.ifr_ifru.ifru_flagshigh & 0xFFFF) << 16
            ifnet.flags = ifnet.flags & IFF_CANTCHANGE | wanted & ~IFF_CANTCHANGE
            return 0
        if request == IO["SIOCSIFMTU"]:
            mtu = int(ifr.ifr_ifru.ifru_mtu)
            if not IF_MINMTU <= mtu <= IF_MAXMTU:
                return self._fail(E["EINVAL"])  # ifhwioctl SIOCSIFMTU
            ifnet.mtu = mtu  # tunifioctl SIOCSIFMTU
            return 0
        if request == IO["SIOCSIFNAME"]:
            new = self.ffi.string(self.ffi.cast("char *", ifr.ifr_ifru.ifru_data)).decode("latin-1")
            if not 0 < len(new) < C["IFNAMSIZ"]:
                return self._fail(E["EINVAL"])  # ifhwioctl: copyinstr of IFNAMSIZ, then new_name[0] == '\0'
            if new in self.ifnets:
                return self._fail(E["EEXIST"])  # if_rename: ifunit(new_name) != NULL
            del self.ifnets[name]
            ifnet.name = new  # (tunrename adds a /dev alias; the node keeps its tunN name)
            self.ifnets[new] = ifnet
            return 0
        return self._fail(E["EINVAL"])  # tunifioctl default for a tun (ether_ioctl for a tap)

    def if_nametoindex(self, name: bytes) -> int:
        self.calls.append(("if_nametoindex", name))
        ifnet = self.ifnets.get(bytes(name).decode("latin-1"))
        if ifnet is None:
            self._thread.errno = E["ENXIO"]
            return 0
        return ifnet.index

    # ------------------------------------------------------------ packets
    def _writev(self, fd: int, iov: Any, iovcnt: int) -> int:
        """tunwrite for a /dev/tun fd; a pipe's write otherwise."""
        dev = self.sockets.get(fd)
        if not isinstance(dev, _Dev):
            return super()._writev(fd, iov, iovcnt)
        ifnet = dev.ifnet
        vec = self.ffi.cast("struct iovec *", iov)  # (a new name: *iov* must stay referenced, see XnuKernel._readv)
        data = b"".join(self.ffi.buffer(vec[i].iov_base, vec[i].iov_len)[:] for i in range(iovcnt))
        if not ifnet.flags & IFF_UP:
            return 0  # tunwrite: "ignore silently" (nothing consumed: write returns 0)
        if not data:
            return 0
        mru = C["TAPMRU"] if ifnet.kind == "tap" else C["TUNMRU"] + (4 if ifnet.head else 0)
        if len(data) > mru:
            return self._fail(E["EIO"])  # tunwrite: uio_resid > mru
        if ifnet.kind == "tun":  # tunwrite_l3
            family = int.from_bytes(data[:4], "big") if ifnet.head else AF_INET
            if ifnet.head and len(data) < 4:
                return self._fail(E["ENOBUFS"])  # (m_pullup of the family fails)
            if family not in (AF_INET, AF_INET6):
                return self._fail(E["EAFNOSUPPORT"])
        result = self._io(os.write, fd, data)
        return int(result)

    def output(self, ifname: str, packet: bytes, family: Optional[int] = None) -> None:
        """The stack sends *packet* out of *ifname*: tunoutput (tun) or the tap's if_start.

        A tun must be up (else EHOSTDOWN, dropped); with TUN_IFHEAD the
        family goes first as htonl(af), without it only AF_INET leaves
        (EAFNOSUPPORT).  *family* defaults to the packet's IP version's.
        """
        ifnet = self.ifnets[ifname]
        assert ifnet.fd is not None, f"{ifname} is not open: tunstart_l2/tunoutput would drop the packet"
        if ifnet.kind == "tun":
            if not ifnet.flags & IFF_UP:
                raise OSError(errno.EHOSTDOWN, f"tunoutput: {ifname} is down")
            if family is None:
                family = AF_INET if packet[0] >> 4 == 4 else AF_INET6
            if ifnet.head:
                packet = family.to_bytes(4, "big") + packet
            elif family != AF_INET:
                raise OSError(errno.EAFNOSUPPORT, f"tunoutput: {ifname} has no TUNSIFHEAD and this is not IPv4")
        os.write(self.sockets[ifnet.fd].peer, packet)

    def input(self, ifname: str, timeout: float = 5.0) -> Tuple[Optional[int], bytes]:  # type: ignore[override]
        """What the process wrote to *ifname*: (the family, the packet) for a tun with TUNSIFHEAD, else (None, frame)."""
        ifnet = self.ifnets[ifname]
        assert ifnet.fd is not None
        peer = self.sockets[ifnet.fd].peer
        if not select.select([peer], [], [], timeout)[0]:
            raise TimeoutError(f"nothing written to {ifname}")
        data = os.read(peer, 1 << 17)
        if ifnet.kind == "tun" and ifnet.head:
            return int.from_bytes(data[:4], "big"), data[4:]
        return None, data

    def written(self, ifname: str) -> bool:
        """Whether anything the process wrote to *ifname* is waiting."""
        ifnet = self.ifnets[ifname]
        return ifnet.fd is not None and bool(select.select([self.sockets[ifnet.fd].peer], [], [], 0)[0])


def running_as_freebsd(kernel: FreeBsdKernel) -> Any:
    """This process as FreeBSD for the library, its kernel *kernel* (the seam of darwin_kernel.running_as)."""
    from darwin_kernel import running_as
    from tuntap_cffi import _freebsd
    from tuntap_cffi._freebsd import libc

    return running_as(kernel, _freebsd.PLATFORM, libc)


@contextlib.contextmanager
def raw_control(name: str) -> Iterator[Tuple[Any, Any, int]]:
    """The FreeBSD libc, its numbers and a control socket, for calls a Device would not make (closed after).

    For a test standing in for another program (``ifconfig``) while the process runs as FreeBSD.
    """
    from tuntap_cffi._bsd import netconfig
    from tuntap_cffi._capabilities import Feature
    from tuntap_cffi._freebsd import backend

    lib, k = backend.BACKEND.net(Feature.LINK, name)
    ctl = netconfig.control_socket(lib, k)
    try:
        yield lib, k, ctl
    finally:
        lib.close(ctl)
