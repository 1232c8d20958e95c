"""A simulated XNU kernel at the macOS backend's libc boundary (``tuntap_cffi._darwin.libc``).

It answers the calls that open a utun as xnu-11417.101.15 does, rule by
rule; each rule cites the kernel function it follows (bsd/kern/
kern_control.c, bsd/net/if_utun.c, bsd/kern/uipc_syscalls.c).  Every utun
fd is one end of a real ``socketpair(AF_UNIX, SOCK_DGRAM)`` whose other end
the "kernel" holds, so fd counts, poll, blocking and close stay real.
Numbers it checks come from XNU's headers (``tests/darwin_golden.json``),
not from the backend's own cdefs.  It records every call in ``calls``.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import socket
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import cffi

from tuntap_cffi._darwin import cdefs, libc

GOLDEN = json.loads((pathlib.Path(__file__).parent / "darwin_golden.json").read_text())
CONSTANTS = GOLDEN["constants"]
CTLIOCGINFO = GOLDEN["ioctls"]["CTLIOCGINFO"]
PF_SYSTEM = CONSTANTS["PF_SYSTEM"]
SOCK_DGRAM = CONSTANTS["SOCK_DGRAM"]
SYSPROTO_CONTROL = CONSTANTS["SYSPROTO_CONTROL"]
UTUN_OPT_IFNAME = CONSTANTS["UTUN_OPT_IFNAME"]
MAX_KCTL_NAME = CONSTANTS["MAX_KCTL_NAME"]
SOCKADDR_CTL_LEN = GOLDEN["sizeof"]["struct sockaddr_ctl"]
CTL_MAXUNIT = 65536  # kern_control.c: const u_int32_t ctl_maxunit
# bsd/sys/fcntl.h
F_GETFD, F_SETFD, F_GETFL, F_SETFL, FD_CLOEXEC, O_NONBLOCK, O_RDWR = 1, 2, 3, 4, 1, 0x4, 0x2

UTUN_CONTROL = "com.apple.net.utun_control"
# Control ids are handed out at registration (ctl_register): any numbers; the backend must ask.
CONTROLS = {UTUN_CONTROL: 0x5A17, "com.apple.net.ipsec_control": 0x5A18}


@dataclass
class _Socket:
    peer: int  # the kernel's end of the socketpair
    type: int
    unit: int = 0  # 0: not connected (kcb->sac.sc_unit)
    control: Optional[str] = None  # kcb->kctl
    status: int = O_RDWR


class XnuKernel:
    """The kernel side of ``libc.Libc``: utun's control socket, its units and their interfaces."""

    def __init__(self, root: bool = True) -> None:
        self.ffi = cffi.FFI()
        cdefs.declare(self.ffi)
        self.ffi.cdef(libc.FUNCTIONS)
        self.root = root  # kauth_cred_issuser() of the calling process
        self.sockets: Dict[int, _Socket] = {}
        self.units: Dict[int, int] = {}  # utun unit -> fd (utun_head)
        self.calls: List[Tuple[Any, ...]] = []
        self._errno = 0

    # ------------------------------------------------------------ helpers
    def _fail(self, err: int) -> int:
        self._errno = err
        return -1

    def errno(self) -> int:
        return self._errno

    @property
    def interfaces(self) -> List[str]:
        """The utun interfaces that exist (attached by utun_ctl_connect, detached by utun_ctl_disconnect)."""
        return sorted(f"utun{unit - 1}" for unit in self.units)

    # ------------------------------------------------------------ syscalls
    def socket(self, domain: int, type: int, protocol: int) -> int:
        self.calls.append(("socket",))
        if domain != PF_SYSTEM:
            return self._fail(errno.EAFNOSUPPORT)  # only PF_SYSTEM is simulated
        if protocol != SYSPROTO_CONTROL:
            return self._fail(errno.EPROTONOSUPPORT)  # socreate: no protosw for it in systemdomain
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)  # macOS socket() has no SOCK_CLOEXEC: open across exec until fcntl
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        return fd

    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        self.calls.append(("ioctl",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(errno.EBADF)
        if request != CTLIOCGINFO:
            return self._fail(errno.ENOTSUP)  # ctl_ioctl: error = ENOTSUP for any other cmd
        info = self.ffi.cast("struct ctl_info *", arg)
        raw = bytes(self.ffi.buffer(info.ctl_name))
        name_len = raw.find(b"\0") if b"\0" in raw else len(raw)  # strnlen(ctl_name, MAX_KCTL_NAME)
        if name_len == 0 or name_len + 1 > MAX_KCTL_NAME:
            return self._fail(errno.EINVAL)  # ctl_ioctl CTLIOCGINFO
        control_id = CONTROLS.get(raw[:name_len].decode("latin-1"))
        if control_id is None:
            return self._fail(errno.ENOENT)  # ctl_ioctl: ctl_find_by_name found none
        info.ctl_id = control_id
        return 0

    def connect(self, fd: int, addr: Any, addrlen: int) -> int:
        self.calls.append(("connect",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(errno.EBADF)
        if addrlen > 255:
            return self._fail(errno.ENAMETOOLONG)  # getsockaddr: len > SOCK_MAXADDRLEN
        if addrlen < 2:
            return self._fail(errno.EINVAL)  # getsockaddr: shorter than sa_len + sa_family
        if sock.control is not None:
            return self._fail(errno.EISCONN)  # soconnectlock on a connected socket
        # getsockaddr sets sa_len to addrlen; ctl_setup_kctl: sa_len != sizeof(struct sockaddr_ctl) -> EINVAL.
        if addrlen != SOCKADDR_CTL_LEN:
            return self._fail(errno.EINVAL)
        sa = self.ffi.cast("struct sockaddr_ctl *", addr)
        self.calls.append(("sockaddr_ctl", sa.sc_len, sa.sc_family, sa.ss_sysaddr, sa.sc_id, sa.sc_unit))
        control = {cid: name for name, cid in CONTROLS.items()}.get(sa.sc_id)
        if control is None:
            return self._fail(errno.ENOENT)  # ctl_setup_kctl: ctl_find_by_id_unit found none
        if sock.type != SOCK_DGRAM:
            return self._fail(errno.EPROTOTYPE)  # ctl_setup_kctl: not CTL_FLAG_REG_SOCK_STREAM, so DGRAM only
        if not self.root:
            return self._fail(errno.EPERM)  # ctl_setup_kctl: CTL_FLAG_PRIVILEGED and !kauth_cred_issuser
        if control != UTUN_CONTROL:
            return self._fail(errno.ECONNREFUSED)  # only utun's control is simulated
        unit = sa.sc_unit
        # utun_ctl_setup (the control's ctl_setup): unit 0 -> first free from 1; a taken unit -> EBUSY.
        if unit == 0:
            unit = 1
            while unit != CTL_MAXUNIT and unit in self.units:
                unit += 1
            if unit == CTL_MAXUNIT:
                return self._fail(errno.EBUSY)
        elif unit in self.units:
            return self._fail(errno.EBUSY)
        # utun_ctl_connect: attaches the interface utun<unit - 1>.
        sock.control, sock.unit = control, unit
        self.units[unit] = fd
        return 0

    def getsockopt(self, fd: int, level: int, name: int, value: Any, length: Any) -> int:
        self.calls.append(("getsockopt",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(errno.EBADF)
        if level != SYSPROTO_CONTROL:
            return self._fail(errno.EINVAL)  # ctl_ctloutput: sopt_level != SYSPROTO_CONTROL
        if sock.control is None:
            return self._fail(errno.EINVAL)  # ctl_ctloutput: kcb->kctl == NULL before connect
        if name != UTUN_OPT_IFNAME:
            return self._fail(errno.ENOPROTOOPT)  # utun_ctl_getopt: default case
        ifname = f"utun{sock.unit - 1}".encode()
        size = self.ffi.cast("uint32_t *", length)
        if size[0] < len(ifname) + 1:
            return self._fail(errno.EMSGSIZE)  # utun_ctl_getopt UTUN_OPT_IFNAME: *len too small
        self.ffi.memmove(value, ifname + b"\0", len(ifname) + 1)
        size[0] = len(ifname) + 1  # scnprintf(...) + 1
        return 0

    def fcntl(self, fd: int, cmd: int, arg: Any) -> int:
        self.calls.append(("fcntl",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(errno.EBADF)
        value = int(arg)
        if cmd == F_GETFL:
            return sock.status
        if cmd == F_SETFL:  # macOS's O_NONBLOCK (4) on the real Linux fd
            sock.status = (sock.status & ~O_NONBLOCK) | (value & O_NONBLOCK)
            os.set_blocking(fd, not value & O_NONBLOCK)
            return 0
        if cmd == F_GETFD:
            return 0 if os.get_inheritable(fd) else FD_CLOEXEC
        if cmd == F_SETFD:
            os.set_inheritable(fd, not value & FD_CLOEXEC)
            return 0
        return self._fail(errno.EINVAL)

    def close(self, fd: int) -> int:
        self.calls.append(("close",))
        sock = self.sockets.pop(fd, None)
        if sock is None:
            return self._fail(errno.EBADF)
        if sock.control is not None:
            del self.units[sock.unit]  # ctl_disconnect -> utun_ctl_disconnect: the interface goes away
        os.close(sock.peer)
        os.close(fd)
        return 0

    # Packets pass through the real socketpair (later items frame them).  One datagram per call:
    # readv/writev gather and scatter here (PyPy 3.9's os has no readv/writev).
    def _io(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            return self._fail(exc.errno or errno.EIO)

    def read(self, fd: int, buf: Any, count: int) -> int:
        return self.readv(fd, self.ffi.new("struct iovec *", (buf, count)), 1)

    def write(self, fd: int, buf: Any, count: int) -> int:
        return self.writev(fd, self.ffi.new("struct iovec *", (buf, count)), 1)

    def readv(self, fd: int, iov: Any, iovcnt: int) -> int:
        data = self._io(os.read, fd, sum(iov[i].iov_len for i in range(iovcnt)))
        if data == -1:
            return -1
        at = 0
        for i in range(iovcnt):
            part = data[at:at + iov[i].iov_len]
            self.ffi.memmove(iov[i].iov_base, part, len(part))
            at += len(part)
        return len(data)

    def writev(self, fd: int, iov: Any, iovcnt: int) -> int:
        datagram = b"".join(self.ffi.buffer(iov[i].iov_base, iov[i].iov_len)[:] for i in range(iovcnt))
        return int(self._io(os.write, fd, datagram))
