"""The TAP side of the simulated XNU kernel: feth clones, /dev/bpfN, NDRV sockets.

:class:`XnuTapKernel` is ``xnu_net.XnuNetKernel`` plus what a feth TAP
reaches, following xnu-11417.101.15 rule by rule (each rule cites the
kernel function; numbers come from ``tests/darwin_golden.json``, errors are
macOS's errno values):

- ``SIOCIFCREATE``/``SIOCIFDESTROY`` of ``feth`` interfaces
  (``if_clone_create``/``if_clone_destroy``, net/if.c; ``feth_clone_create``,
  net/if_fake.c), peering with ``SIOCSDRVSPEC`` (``feth_set_drvspec`` ->
  ``feth_config``), and a frame sent out of one end arriving at the other
  (``feth_output_common``: tapped into the sender's BPF as output, the
  peer's as input, then the peer's input).
- ``/dev/bpfN`` (``bpfopen``, ``bpfioctl``, ``bpf_read``, ``catchpacket``):
  each open unit's fd is one end of a real ``socketpair(AF_UNIX,
  SOCK_DGRAM)``; ``catchpacket`` sends each record (``bpf_hdr`` + frame)
  as one datagram on the kernel's end, so poll and blocking are real, and
  ``read`` gathers as many as fit the buffer into the reader's memory,
  each at ``BPF_WORDALIGN``, as ``bpf_read`` copies the store buffer.
- ``AF_NDRV`` raw sockets (``ndrv_attach``, ``ndrv_bind``,
  ``ndrv_connect``, ``ndrv_output``), real socketpairs too: a write is one
  frame out of the bound interface.

Frames the user end receives are kept in :attr:`XnuTapKernel.received`
(``feth_enqueue_input`` to the stack); :meth:`XnuTapKernel.stack_send`
is the stack sending a frame out of an interface.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from darwin_kernel import _Socket
from xnu_net import C, E, IFF_BROADCAST, IFF_MULTICAST, IOCTLS, OFF, SIZE, XnuNetKernel, iocparm_len
from tuntap_cffi._darwin import libc

REQUEST_NAMES = {value: name for name, value in IOCTLS.items()}
AF_NDRV, SOCK_RAW = C["AF_NDRV"], C["SOCK_RAW"]
IF_MAXUNIT = 0x7FFF  # net/if_private.h: feth_cloner's ifc_maxunit
IFF_SIMPLEX = 0x800
FETH_MTU = 1500  # feth_clone_create: ETHERMTU
FETH_MAX_MTU = 2048  # if_fake.c: FETH_MAX_MTU_DEFAULT (sysctl net.link.fake.max_mtu)
BPF_UNITS = 4  # /dev/bpf0..3 exist here (macOS makes more on demand, up to bpf_maxdevices)
BPF_DEFAULT_BUFSIZE = 4096  # bpf.c: bpf_bufsize
BPF_HDRLEN = 18  # bpf_attachd: BPF_WORDALIGN(14 + SIZEOF_BPF_HDR 18) - 14 for DLT_EN10MB
O_ACCMODE = 0x3


def wordalign(n: int) -> int:
    """BPF_WORDALIGN (net/bpf.h)."""
    align = C["BPF_ALIGNMENT"]
    return (n + align - 1) & ~(align - 1)


@dataclass
class Feth:
    name: str
    unit: int
    peer: Optional[str] = None  # if_fake.iff_peer


@dataclass
class BpfDesc:
    """struct bpf_d: one open /dev/bpfN."""

    unit: int
    peer: int  # the kernel's end of the socketpair
    bufsize: int = BPF_DEFAULT_BUFSIZE
    ifname: Optional[str] = None  # bd_bif
    immediate: bool = False
    seesent: bool = True  # bpfopen: d->bd_seesent = 1 by default
    hdrcmplt: bool = False
    waiting: List[bytes] = field(default_factory=list)  # records held back without BIOCIMMEDIATE


@dataclass
class NdrvCb:
    """struct ndrv_cb: what an NDRV socket is bound and connected to."""

    ifname: Optional[str] = None  # nd_if (ndrv_bind)
    connected: bool = False  # nd_faddr (ndrv_connect)


class XnuTapKernel(XnuNetKernel):
    """``XnuNetKernel`` with feth interfaces, BPF devices and NDRV sockets."""

    def __init__(self, root: bool = True) -> None:
        super().__init__(root)
        self.ffi.cdef(libc.TAP_FUNCTIONS)
        self.feths: Dict[str, Feth] = {}
        self.bpfs: Dict[int, BpfDesc] = {}  # fd -> descriptor
        self.bpf_busy: set = set()  # units another process holds (bpfopen: EBUSY)
        self.bpf_cap = 1 << 30  # BPF_BUFSIZE_CAP (copysize_limit_panic >> 1): BIOCSBLEN caps to it
        self.ndrvs: Dict[int, NdrvCb] = {}
        self.received: Dict[str, List[bytes]] = {}  # frames each interface's stack got (feth_enqueue_input)
        self.fail: Dict[str, int] = {}  # injected failures: an ioctl name or "open", "socket", "bind", "connect"

    # ------------------------------------------------------------ feth clones
    def _clone_create(self, data: bytearray) -> int:
        """ifioctl_ifclone SIOCIFCREATE -> if_clone_create: the wildcard picks the first free unit."""
        raw = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
        if not raw.startswith("feth"):
            return E["EINVAL"]  # if_clone_lookup: no such cloner (only feth is simulated)
        digits = raw[4:]
        if digits and not digits.isdigit():
            return E["EINVAL"]  # if_clone_lookup: bogus unit number
        if raw in self.ifnets:
            return E["EEXIST"]  # if_clone_create: ifunit(name) != NULL
        used = {f.unit for f in self.feths.values()}
        if digits:
            unit = int(digits)
        else:
            unit = next((u for u in range(IF_MAXUNIT + 1) if u not in used), IF_MAXUNIT + 1)
            if unit > IF_MAXUNIT:
                return E["ENOSPC"]  # if_clone_create: no free bit in the unit bitmap
        if unit > IF_MAXUNIT:
            return E["ENXIO"]  # if_clone_create: unit > ifc_maxunit
        name = f"feth{unit}"
        # feth_clone_create: an Ethernet interface, MAC "feth" + the unit's two bytes, ETHERMTU.
        ifp = self.attach(name, IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST, FETH_MTU)
        ifp.lladdr = b"feth" + unit.to_bytes(2, "big")
        self.feths[name] = Feth(name, unit)
        self.received[name] = []
        data[:16] = name.encode().ljust(16, b"\0")  # the wildcard's name, copied out
        return 0

    def _clone_destroy(self, data: bytearray) -> int:
        """if_clone_destroy -> feth_clone_destroy: unpeered (feth_config(ifp, NULL)), detached."""
        name = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
        if not name.startswith("feth"):
            return E["EINVAL"]
        fake = self.feths.pop(name, None)
        if fake is None:
            return E["ENXIO"]  # if_clone_destroy: ifunit_ref(name) == NULL
        if fake.peer is not None and fake.peer in self.feths:
            self.feths[fake.peer].peer = None
        for desc in self.bpfs.values():  # bpfdetach: readers lose the interface
            if desc.ifname == name:
                desc.ifname = None
        self.detach(name)
        return 0

    def _set_drvspec(self, data: bytearray) -> int:
        """feth_ioctl SIOCSDRVSPEC (root) -> feth_set_drvspec IF_FAKE_S_CMD_SET_PEER -> feth_config."""
        name = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
        fake = self.feths.get(name)
        if fake is None:
            return E["ENXIO"] if name not in self.ifnets else E["EOPNOTSUPP"]
        cmd, length, ptr = struct.unpack_from("=QQQ", data, OFF["struct ifdrv:ifd_cmd"])
        if cmd != C["IF_FAKE_S_CMD_SET_PEER"]:
            return E["EOPNOTSUPP"]
        if length < SIZE["struct if_fake_request"]:
            return E["EINVAL"]  # if_fake_request_copyin: len < sizeof(*iffr)
        req = bytes(self.ffi.buffer(self.ffi.cast("char *", ptr), SIZE["struct if_fake_request"]))
        at = OFF["struct if_fake_request:iffr_u.iffru_peer_name"]
        peer_name = req[at:at + 16].split(b"\0")[0].decode("latin-1")
        if not peer_name:  # feth_config(ifp, NULL): disconnect
            if fake.peer is not None:
                self.feths[fake.peer].peer = None
                fake.peer = None
            return 0
        peer = self.feths.get(peer_name)
        if peer is None:
            return E["ENXIO"] if peer_name not in self.ifnets else E["EINVAL"]  # ifunit; not a feth
        if fake.peer is not None or peer.peer is not None:
            return E["EBUSY"]  # feth_config: either end has a peer already
        fake.peer, peer.peer = peer.name, fake.name
        return 0

    def _ifioctl(self, family: int, request: str, data: bytearray) -> int:
        if request in self.fail:
            return self.fail.pop(request)
        if request in ("SIOCIFCREATE", "SIOCIFDESTROY", "SIOCSDRVSPEC") and not self.root:
            return E["EPERM"]  # ifioctl_ifclone / feth_ioctl: proc_suser
        if request == "SIOCIFCREATE":
            return self._clone_create(data)
        if request == "SIOCIFDESTROY":
            return self._clone_destroy(data)
        if request == "SIOCSDRVSPEC":
            return self._set_drvspec(data)
        name = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
        if request == "SIOCSIFMTU" and name in self.feths and self.root:
            mtu = struct.unpack_from("=i", data, OFF["struct ifreq:ifr_ifru.ifru_mtu"])[0]
            if mtu > FETH_MAX_MTU:
                return E["EINVAL"]  # feth_ioctl SIOCSIFMTU: above feth_max_mtu (IF_MINMTU: the generic check)
        return super()._ifioctl(family, request, data)

    # ------------------------------------------------------------ frames on the wire
    def _output(self, ifname: str, frame: bytes) -> None:
        """feth_output_common: tap out on *ifname*, tap in on the peer, the peer's input gets it."""
        fake = self.feths.get(ifname)
        if fake is None or fake.peer is None:
            return  # feth_output: no peer, the frame is dropped
        for desc in list(self.bpfs.values()):
            if desc.ifname == ifname and desc.seesent:
                self._catch(desc, frame)
            if desc.ifname == fake.peer:
                self._catch(desc, frame)
        self.received[fake.peer].append(frame)

    def stack_send(self, ifname: str, frame: bytes) -> None:
        """The stack sends *frame* out of feth *ifname* (ether_output -> feth_output)."""
        self._output(ifname, frame)

    def _catch(self, desc: BpfDesc, frame: bytes) -> None:
        """catchpacket: bpf_hdr + the frame, caplen cut to what the buffer holds (snaplen: all)."""
        totlen = min(BPF_HDRLEN + len(frame), desc.bufsize)
        caplen = totlen - BPF_HDRLEN
        hdr = bytearray(BPF_HDRLEN)
        struct.pack_into("=IIH", hdr, OFF["struct bpf_hdr:bh_caplen"], caplen, len(frame), BPF_HDRLEN)
        record = bytes(hdr) + frame[:caplen]
        if desc.immediate:
            os.write(desc.peer, record)
            return
        # Without BIOCIMMEDIATE a reader wakes only when the store buffer fills (ROTATE_BUFFERS).
        desc.waiting.append(record)
        if sum(wordalign(len(r)) for r in desc.waiting) >= desc.bufsize // 2:
            for held in desc.waiting:
                os.write(desc.peer, held)
            desc.waiting.clear()

    # ------------------------------------------------------------ /dev/bpfN
    def open(self, path: Any, flags: int, *mode: Any) -> int:
        name = self.ffi.string(path) if isinstance(path, self.ffi.CData) else bytes(path)
        if not name.startswith(b"/dev/bpf"):
            return super().open(path, flags, *mode)
        self.calls.append(("open", name, flags))
        if "open" in self.fail:
            return self._fail(self.fail.pop("open"))
        unit = int(name[len(b"/dev/bpf"):])
        if unit >= BPF_UNITS:
            return self._fail(E["ENOENT"])  # no such device node
        if not self.root:
            return self._fail(E["EACCES"])  # /dev/bpf* is crw------- root
        if unit in self.bpf_busy or any(d.unit == unit for d in self.bpfs.values()):
            return self._fail(E["EBUSY"])  # bpfopen: the minor is in use
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        user.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        fd = user.detach()
        os.set_inheritable(fd, not flags & C["O_CLOEXEC"])
        self.files[fd] = "bpf"
        self.bpfs[fd] = BpfDesc(unit, kernel.detach())
        return fd

    def _drop_bpf(self, fd: int) -> None:
        desc = self.bpfs.pop(fd, None)
        if desc is not None:
            os.close(desc.peer)  # bpfclose

    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        desc = self.bpfs.get(fd)
        if desc is None:
            return super().ioctl(fd, request, arg)
        name = REQUEST_NAMES.get(request, hex(request))
        self.calls.append(("ioctl", name))
        if name in self.fail:
            return self._fail(self.fail.pop(name))
        buf = self.ffi.buffer(self.ffi.cast("char *", arg), iocparm_len(request))
        data = bytearray(buf)
        value = struct.unpack_from("=I", data)[0] if len(data) == 4 else 0
        if name == "BIOCSBLEN":
            if desc.ifname is not None:
                return self._fail(E["EINVAL"])  # bpfioctl BIOCSBLEN: interface already attached
            desc.bufsize = min(max(value, C["BPF_MINBUFSIZE"]), self.bpf_cap)
            struct.pack_into("=I", data, 0, desc.bufsize)
        elif name == "BIOCSETIF":
            ifname = bytes(data[:16]).split(b"\0")[0].decode("latin-1")
            if ifname not in self.ifnets:
                return self._fail(E["ENXIO"])  # bpfioctl BIOCSETIF: ifunit() found none
            desc.ifname = ifname
        elif name == "BIOCIMMEDIATE":
            desc.immediate = bool(value)
        elif name == "BIOCSSEESENT":
            desc.seesent = bool(value)
        elif name == "BIOCSHDRCMPLT":
            desc.hdrcmplt = bool(value)
        else:
            return self._fail(E["EINVAL"])  # bpfioctl: default
        buf[:] = bytes(data)
        return 0

    def read(self, fd: int, buf: Any, count: int) -> int:
        desc = self.bpfs.get(fd)
        if desc is None:
            return super().read(fd, buf, count)
        self.calls.append(("bpf_read", fd))
        if "bpf_read" in self.fail:
            return self._fail(self.fail.pop("bpf_read"))  # e.g. EINTR: bpf_read's msleep(PCATCH) interrupted
        if count != desc.bufsize:
            return self._fail(E["EINVAL"])  # bpf_read: uio_resid != bd_bufsize
        if desc.ifname is None:
            return self._fail(E["ENXIO"])  # bpf_read: no interface attached
        blocking = os.get_blocking(fd)
        sock = socket.socket(fileno=os.dup(fd))
        os.set_blocking(fd, blocking)  # (PyPy's socket() makes the shared file blocking)
        try:
            out = b""
            while True:
                try:
                    flags = socket.MSG_PEEK | (socket.MSG_DONTWAIT if out or not blocking else 0)
                    record = sock.recv(1 << 20, flags)
                except BlockingIOError:
                    break
                if out and wordalign(len(out)) + len(record) > count:
                    break  # the next record stays for the next read (catchpacket rotates the buffers)
                sock.recv(1 << 20)
                out = out.ljust(wordalign(len(out)), b"\0") + record
        finally:
            sock.close()
        if not out:
            return self._fail(E["EAGAIN"])
        self.ffi.memmove(buf, out, len(out))
        return len(out)

    # ------------------------------------------------------------ NDRV sockets
    def socket(self, domain: int, type: int, protocol: int) -> int:
        if domain != AF_NDRV:
            return super().socket(domain, type, protocol)
        self.calls.append(("socket", domain, type))
        if "socket" in self.fail:
            return self._fail(self.fail.pop("socket"))
        if type != SOCK_RAW:
            return self._fail(E["EPROTOTYPE"])  # socreate: ndrvsw is SOCK_RAW only
        if not self.root:
            return self._fail(E["EPERM"])  # ndrv_attach: not SS_PRIV
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        self.ndrvs[fd] = NdrvCb()
        return fd

    def _ndrv_name(self, addr: Any, addrlen: int) -> Optional[str]:
        raw = bytes(self.ffi.buffer(self.ffi.cast("char *", addr), addrlen))
        at = OFF["struct sockaddr_ndrv:snd_name"]
        return raw[at:at + 16].split(b"\0")[0].decode("latin-1") if addrlen >= SIZE["struct sockaddr_ndrv"] else None

    def bind(self, fd: int, addr: Any, addrlen: int) -> int:
        self.calls.append(("bind", fd))
        cb = self.ndrvs.get(fd)
        if cb is None:
            return self._fail(E["EBADF"] if fd not in self.sockets else E["EOPNOTSUPP"])
        if "bind" in self.fail:
            return self._fail(self.fail.pop("bind"))
        if cb.ifname is not None:
            return self._fail(E["EINVAL"])  # ndrv_bind: nd_laddr set already
        name = self._ndrv_name(addr, addrlen)
        if not name:
            return self._fail(E["EINVAL"])  # ndrv_bind: *dname == '\0'
        if name not in self.ifnets:
            return self._fail(E["EADDRNOTAVAIL"])  # ndrv_bind: no interface by that name
        cb.ifname = name
        return 0

    def connect(self, fd: int, addr: Any, addrlen: int) -> int:
        cb = self.ndrvs.get(fd)
        if cb is None:
            return super().connect(fd, addr, addrlen)
        self.calls.append(("connect", fd))
        if "connect" in self.fail:
            return self._fail(self.fail.pop("connect"))
        if cb.connected:
            return self._fail(E["EISCONN"])  # ndrv_connect: nd_faddr set already
        if addrlen < SIZE["struct sockaddr_ndrv"]:
            return self._fail(E["EINVAL"])  # ndrv_connect: sa_len < sizeof(struct sockaddr_ndrv)
        cb.connected = True
        return 0

    def write(self, fd: int, buf: Any, count: int) -> int:
        cb = self.ndrvs.get(fd)
        if cb is None:
            return super().write(fd, buf, count)
        self.calls.append(("ndrv_write", fd))
        if "ndrv_write" in self.fail:
            return self._fail(self.fail.pop("ndrv_write"))  # e.g. ENOBUFS: ifnet_output_raw found the queue full
        if cb.ifname is None:
            return self._fail(E["ENOTCONN"])  # ndrv_send: not bound
        if cb.ifname not in self.ifnets:
            return self._fail(E["ENXIO"])  # the interface went away
        if not self._writable(fd):
            return self._fail(E["EAGAIN"])  # sosend: no room in so_snd on a non-blocking socket (EWOULDBLOCK)
        frame = bytes(buf[:count]) if isinstance(buf, (bytes, bytearray)) else self.ffi.buffer(buf, count)[:]
        self._output(cb.ifname, frame)  # ndrv_output -> ifnet_output_raw -> feth_output
        return count

    @staticmethod
    def _writable(fd: int) -> bool:
        """Whether the socket has room (what poll says: the test fills the real socketpair with :meth:`ndrv_fill`)."""
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return bool(poller.poll(0))

    def ndrv_fill(self, fd: int) -> int:
        """Fill NDRV socket *fd*'s queue (datagrams the kernel's end does not take): writes then say EAGAIN."""
        sent = 0
        blocking = os.get_blocking(fd)
        with socket.socket(fileno=os.dup(fd)) as sock:
            try:
                while True:
                    sock.send(b"\0" * 64, socket.MSG_DONTWAIT)
                    sent += 1
            except BlockingIOError:
                pass
            finally:
                os.set_blocking(fd, blocking)  # (PyPy's socket() makes the shared file blocking)
        return sent

    def ndrv_drain(self, fd: int) -> None:
        """Room again on NDRV socket *fd*: the kernel's end takes what ndrv_fill queued."""
        peer = self.sockets[fd].peer
        blocking = os.get_blocking(peer)
        with socket.socket(fileno=os.dup(peer)) as sock:
            try:
                while True:
                    sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            finally:
                os.set_blocking(peer, blocking)

    # ------------------------------------------------------------ fds going away
    def close(self, fd: int) -> int:
        self._drop_bpf(fd)
        self.ndrvs.pop(fd, None)
        return super().close(fd)

    def dup2(self, fd: int, to: int) -> int:
        if self._known(fd) and to >= 0:
            self._drop_bpf(to)
            self.ndrvs.pop(to, None)
        return super().dup2(fd, to)

    @property
    def tap_fds(self) -> int:
        """BPF and NDRV fds the process holds."""
        return len(self.bpfs) + len(self.ndrvs)
