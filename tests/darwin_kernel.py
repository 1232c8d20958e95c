"""A simulated XNU kernel at the macOS backend's libc boundary (``tuntap_cffi._darwin.libc``).

It answers the calls that open a utun as xnu-11417.101.15 does, rule by
rule; each rule cites the kernel function it follows (bsd/kern/
kern_control.c, bsd/net/if_utun.c, bsd/kern/uipc_syscalls.c).  Every utun
fd is one end of a real ``socketpair(AF_UNIX, SOCK_DGRAM)`` whose other end
the "kernel" holds, so fd counts, poll, blocking and close stay real.
Numbers it checks come from XNU's headers (``tests/darwin_golden.json``),
not from the backend's own cdefs.  It records every call in ``calls``.

A Device's whole life runs here too: the reads and writes of a utun (one
datagram per call, the AF header in network byte order), the wakeup pipe,
``poll``, ``open`` of /dev/null and ``dup2`` over a closed number (which
closes the utun socket: the interface goes, as ``closef`` ->
``ctl_disconnect`` does).  Pipes and files are real fds too.  Failures
report macOS's errno numbers (bsd/sys/errno.h: EAGAIN 35, not Linux's 11),
translated by name from what the real Linux fd said.
"""

from __future__ import annotations

import contextlib
import errno
import json
import select
import os
import pathlib
import socket
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

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

# bsd/sys/fcntl.h
O_CLOEXEC = 0x1000000
# bsd/sys/errno.h: macOS's numbers (from 35 on they differ from Linux's)
E = {"EPERM": 1, "ENOENT": 2, "EINTR": 4, "EIO": 5, "EBADF": 9, "ENOMEM": 12, "EACCES": 13, "EFAULT": 14,
     "EBUSY": 16, "EEXIST": 17, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "EPIPE": 32, "EAGAIN": 35,
     "ENOTSOCK": 38, "EDESTADDRREQ": 39, "EMSGSIZE": 40, "EPROTOTYPE": 41, "ENOPROTOOPT": 42,
     "EPROTONOSUPPORT": 43, "ENOTSUP": 45, "EAFNOSUPPORT": 47, "ENETDOWN": 50, "ENOBUFS": 55, "EISCONN": 56,
     "ENOTCONN": 57, "ECONNREFUSED": 61, "ENAMETOOLONG": 63}
AF_INET, AF_INET6 = 2, 30  # bsd/sys/socket.h

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
        self.files: Dict[int, str] = {}  # the process's other fds: "pipe" ends and "/dev/null"
        self._thread = threading.local()  # errno is per thread

    # ------------------------------------------------------------ helpers
    def _fail(self, err: int) -> int:
        self._thread.errno = err
        return -1

    def errno(self) -> int:
        return int(getattr(self._thread, "errno", 0))

    def set_errno(self, value: int) -> None:
        self._thread.errno = value

    def _known(self, fd: int) -> bool:
        return fd in self.sockets or fd in self.files

    @property
    def interfaces(self) -> List[str]:
        """The utun interfaces that exist (attached by utun_ctl_connect, detached by utun_ctl_disconnect)."""
        return sorted(f"utun{unit - 1}" for unit in self.units)

    # ------------------------------------------------------------ syscalls
    def socket(self, domain: int, type: int, protocol: int) -> int:
        self.calls.append(("socket",))
        if domain != PF_SYSTEM:
            return self._fail(E["EAFNOSUPPORT"])  # only PF_SYSTEM is simulated
        if protocol != SYSPROTO_CONTROL:
            return self._fail(E["EPROTONOSUPPORT"])  # socreate: no protosw for it in systemdomain
        user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = user.detach()
        os.set_inheritable(fd, True)  # macOS socket() has no SOCK_CLOEXEC: open across exec until fcntl
        self.sockets[fd] = _Socket(peer=kernel.detach(), type=type)
        return fd

    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        self.calls.append(("ioctl",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(E["EBADF"])
        if request != CTLIOCGINFO:
            return self._fail(E["ENOTSUP"])  # ctl_ioctl: error = ENOTSUP for any other cmd
        info = self.ffi.cast("struct ctl_info *", arg)
        raw = bytes(self.ffi.buffer(info.ctl_name))
        name_len = raw.find(b"\0") if b"\0" in raw else len(raw)  # strnlen(ctl_name, MAX_KCTL_NAME)
        if name_len == 0 or name_len + 1 > MAX_KCTL_NAME:
            return self._fail(E["EINVAL"])  # ctl_ioctl CTLIOCGINFO
        control_id = CONTROLS.get(raw[:name_len].decode("latin-1"))
        if control_id is None:
            return self._fail(E["ENOENT"])  # ctl_ioctl: ctl_find_by_name found none
        info.ctl_id = control_id
        return 0

    def connect(self, fd: int, addr: Any, addrlen: int) -> int:
        self.calls.append(("connect",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(E["EBADF"])
        if addrlen > 255:
            return self._fail(E["ENAMETOOLONG"])  # getsockaddr: len > SOCK_MAXADDRLEN
        if addrlen < 2:
            return self._fail(E["EINVAL"])  # getsockaddr: shorter than sa_len + sa_family
        if sock.control is not None:
            return self._fail(E["EISCONN"])  # soconnectlock on a connected socket
        # getsockaddr sets sa_len to addrlen; ctl_setup_kctl: sa_len != sizeof(struct sockaddr_ctl) -> EINVAL.
        if addrlen != SOCKADDR_CTL_LEN:
            return self._fail(E["EINVAL"])
        sa = self.ffi.cast("struct sockaddr_ctl *", addr)
        self.calls.append(("sockaddr_ctl", sa.sc_len, sa.sc_family, sa.ss_sysaddr, sa.sc_id, sa.sc_unit))
        control = {cid: name for name, cid in CONTROLS.items()}.get(sa.sc_id)
        if control is None:
            return self._fail(E["ENOENT"])  # ctl_setup_kctl: ctl_find_by_id_unit found none
        if sock.type != SOCK_DGRAM:
            return self._fail(E["EPROTOTYPE"])  # ctl_setup_kctl: not CTL_FLAG_REG_SOCK_STREAM, so DGRAM only
        if not self.root:
            return self._fail(E["EPERM"])  # ctl_setup_kctl: CTL_FLAG_PRIVILEGED and !kauth_cred_issuser
        if control != UTUN_CONTROL:
            return self._fail(E["ECONNREFUSED"])  # only utun's control is simulated
        unit = sa.sc_unit
        # utun_ctl_setup (the control's ctl_setup): unit 0 -> first free from 1; a taken unit -> EBUSY.
        if unit == 0:
            unit = 1
            while unit != CTL_MAXUNIT and unit in self.units:
                unit += 1
            if unit == CTL_MAXUNIT:
                return self._fail(E["EBUSY"])
        elif unit in self.units:
            return self._fail(E["EBUSY"])
        # utun_ctl_connect: attaches the interface utun<unit - 1>.
        sock.control, sock.unit = control, unit
        self.units[unit] = fd
        return 0

    def getsockopt(self, fd: int, level: int, name: int, value: Any, length: Any) -> int:
        self.calls.append(("getsockopt",))
        sock = self.sockets.get(fd)
        if sock is None:
            return self._fail(E["ENOTSOCK"] if fd in self.files else E["EBADF"])  # getsock(): a file, not a socket
        if level != SYSPROTO_CONTROL:
            return self._fail(E["EINVAL"])  # ctl_ctloutput: sopt_level != SYSPROTO_CONTROL
        if sock.control is None:
            return self._fail(E["EINVAL"])  # ctl_ctloutput: kcb->kctl == NULL before connect
        if name != UTUN_OPT_IFNAME:
            return self._fail(E["ENOPROTOOPT"])  # utun_ctl_getopt: default case
        ifname = f"utun{sock.unit - 1}".encode()
        size = self.ffi.cast("uint32_t *", length)
        if size[0] < len(ifname) + 1:
            return self._fail(E["EMSGSIZE"])  # utun_ctl_getopt UTUN_OPT_IFNAME: *len too small
        self.ffi.memmove(value, ifname + b"\0", len(ifname) + 1)
        size[0] = len(ifname) + 1  # scnprintf(...) + 1
        return 0

    def fcntl(self, fd: int, cmd: int, arg: Any) -> int:
        self.calls.append(("fcntl", fd, cmd))
        if not self._known(fd):
            return self._fail(E["EBADF"])
        value = int(arg)
        if cmd == F_GETFL:
            sock = self.sockets.get(fd)
            return (sock.status if sock else O_RDWR) & ~O_NONBLOCK | (0 if os.get_blocking(fd) else O_NONBLOCK)
        if cmd == F_SETFL:  # macOS's O_NONBLOCK (4) on the real Linux fd
            if fd in self.sockets:
                self.sockets[fd].status = (self.sockets[fd].status & ~O_NONBLOCK) | (value & O_NONBLOCK)
            os.set_blocking(fd, not value & O_NONBLOCK)
            return 0
        if cmd == F_GETFD:
            return 0 if os.get_inheritable(fd) else FD_CLOEXEC
        if cmd == F_SETFD:
            os.set_inheritable(fd, not value & FD_CLOEXEC)
            return 0
        return self._fail(E["EINVAL"])

    def _detach_socket(self, fd: int) -> None:
        """The last reference to a utun socket went (close, or dup2 over it): ctl_disconnect -> utun_ctl_disconnect."""
        sock = self.sockets.pop(fd)
        if sock.control is not None:
            del self.units[sock.unit]  # the interface goes away
        os.close(sock.peer)

    def close(self, fd: int) -> int:
        self.calls.append(("close", fd))
        if fd in self.sockets:
            self._detach_socket(fd)
        elif self.files.pop(fd, None) is None:
            return self._fail(E["EBADF"])
        os.close(fd)
        return 0

    def open(self, path: Any, flags: int, *mode: Any) -> int:
        """Only /dev/null, read-only (what a Device opens: its dead file)."""
        name = self.ffi.string(path) if isinstance(path, self.ffi.CData) else bytes(path)
        self.calls.append(("open", name, flags))
        if name != b"/dev/null" or flags & ~O_CLOEXEC:
            return self._fail(E["EACCES"])  # (not simulated)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.set_inheritable(fd, not flags & O_CLOEXEC)
        self.files[fd] = "/dev/null"
        return fd

    def pipe(self, fds: Any) -> int:
        """pipe(): two blocking fds, open across exec (pipe() in bsd/kern/sys_pipe.c takes no flags: fcntl sets them)."""
        self.calls.append(("pipe",))
        r, w = os.pipe()
        for fd in (r, w):
            os.set_inheritable(fd, True)
            self.files[fd] = "pipe"
        fds[0], fds[1] = r, w
        return 0

    def dup2(self, fd: int, to: int) -> int:
        """dup2 (bsd/kern/kern_descrip.c): *to* becomes *fd*'s file, what *to* held is closed first, and
        finishdup() clears UF_EXCLOSE on *to* (FD_CLOEXEC off).  A utun socket closed so detaches its interface."""
        self.calls.append(("dup2", fd, to))
        if not self._known(fd) or to < 0:
            return self._fail(E["EBADF"])
        if to in self.sockets:
            self._detach_socket(to)
        os.dup2(fd, to, inheritable=True)
        self.files[to] = self.files.get(fd, "socket")
        return 0

    def poll(self, fds: Any, nfds: int, timeout: int) -> int:
        """poll over the real fds; an fd the process does not hold is POLLNVAL (poll_nocancel, bsd/kern/sys_generic.c)."""
        self.calls.append(("poll", nfds, timeout))
        pfds = self.ffi.cast("struct pollfd *", fds)
        poller = select.poll()
        ready = 0
        for i in range(nfds):
            pfds[i].revents = 0
            if not self._known(pfds[i].fd):
                pfds[i].revents = select.POLLNVAL
                ready += 1
            else:
                poller.register(pfds[i].fd, pfds[i].events)
        if ready:
            timeout = 0
        try:
            events = poller.poll(timeout)
        except OSError as exc:
            return self._fail(self._macos(exc))
        for fd, revents in events:
            for i in range(nfds):
                if pfds[i].fd == fd:
                    pfds[i].revents = revents
            ready += 1
        return ready

    # Packets pass through the real socketpair.  One datagram per call:
    # readv/writev gather and scatter here (PyPy 3.9's os has no readv/writev).
    @staticmethod
    def _macos(exc: OSError) -> int:
        """The macOS number of a real Linux fd's error (by name)."""
        return E.get(errno.errorcode.get(exc.errno or 0, ""), E["EIO"])

    def _io(self, call: Any, fd: int, *args: Any) -> Any:
        if not self._known(fd):
            return self._fail(E["EBADF"])
        try:
            return call(fd, *args)
        except OSError as exc:
            return self._fail(self._macos(exc))

    def read(self, fd: int, buf: Any, count: int) -> int:
        self.calls.append(("read", fd))
        return self._readv(fd, self.ffi.new("struct iovec *", (buf, count)), 1)

    def write(self, fd: int, buf: Any, count: int) -> int:
        self.calls.append(("write", fd))
        return self._writev(fd, self.ffi.new("struct iovec *", (buf, count)), 1)

    def readv(self, fd: int, iov: Any, iovcnt: int) -> int:
        self.calls.append(("readv", fd, iovcnt))
        return self._readv(fd, iov, iovcnt)

    def writev(self, fd: int, iov: Any, iovcnt: int) -> int:
        self.calls.append(("writev", fd, iovcnt))
        return self._writev(fd, iov, iovcnt)

    def _readv(self, fd: int, iov: Any, iovcnt: int) -> int:
        # (a new name: *iov* may be read()'s own iovec, freed the moment nothing refers to it)
        vec = self.ffi.cast("struct iovec *", iov)
        data = self._io(os.read, fd, sum(vec[i].iov_len for i in range(iovcnt)))
        if data == -1:
            return -1
        at = 0
        for i in range(iovcnt):
            part = data[at:at + vec[i].iov_len]
            self.ffi.memmove(vec[i].iov_base, part, len(part))
            at += len(part)
        return len(data)

    def _writev(self, fd: int, iov: Any, iovcnt: int) -> int:
        vec = self.ffi.cast("struct iovec *", iov)  # (a new name: *iov* must stay referenced, see _readv)
        datagram = b"".join(self.ffi.buffer(vec[i].iov_base, vec[i].iov_len)[:] for i in range(iovcnt))
        return int(self._io(os.write, fd, datagram))

    # ------------------------------------------------------------ the kernel's side of a utun

    def unit_fd(self, ifname: str) -> int:
        """The user fd of interface *ifname*."""
        return self.units[int(ifname[len("utun"):]) + 1]

    def output(self, ifname: str, packet: bytes, family: Optional[int] = None) -> None:
        """The stack sends *packet* out of utun *ifname* (utun_output): htonl(family) + packet, one datagram.

        *family* defaults to the packet's IP version's (AF_INET 2, AF_INET6 30).
        """
        if family is None:
            family = AF_INET if packet[0] >> 4 == 4 else AF_INET6
        os.write(self.sockets[self.unit_fd(ifname)].peer, family.to_bytes(4, "big") + packet)

    def input(self, ifname: str, timeout: float = 5.0) -> Tuple[int, bytes]:
        """What the process wrote to utun *ifname*: (ntohl of the header, the packet), as utun_demux reads it."""
        peer = self.sockets[self.unit_fd(ifname)].peer
        if not select.select([peer], [], [], timeout)[0]:
            raise TimeoutError(f"nothing written to {ifname}")
        datagram = os.read(peer, 1 << 17)
        return int.from_bytes(datagram[:4], "big"), datagram[4:]

    def teardown(self) -> None:
        """Close every fd the simulated process still holds."""
        for fd in list(self.sockets):
            self.close(fd)
        for fd in list(self.files):
            self.close(fd)


# ------------------------------------------------------------ running the library "on macOS" in this process

class _NoLinuxCalls:
    """Stands for the Linux libc while a test runs as macOS: its constants still read, any function is recorded."""

    def __init__(self, real: Any, calls: List[str]) -> None:
        self._real, self._calls = real, calls

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        if isinstance(value, int):
            return value  # (IFF_* and the like: numbers, not calls)
        self._calls.append(name)
        raise AssertionError(f"the Linux libc's {name} was reached on another OS")


class _NoLinuxOps:
    def __init__(self, calls: List[str]) -> None:
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(f"LINUX_OPS.{name}")
        raise AssertionError(f"the Linux fd life's {name} was reached on another OS")


@contextlib.contextmanager
def running_as_macos(kernel: XnuKernel) -> Iterator[XnuKernel]:
    """This process as macOS for the library, its kernel *kernel*; everything put back after (see running_as)."""
    from tuntap_cffi import _darwin

    with running_as(kernel, _darwin.PLATFORM, libc):
        yield kernel


@contextlib.contextmanager
def running_as(kernel: Any, platform: Any, libc_module: Any) -> Iterator[Any]:
    """This process as another OS for the library, its kernel *kernel*; everything put back after.

    The one seam: the capability table and backend ``_backend`` chose at
    import are pointed at *platform*'s (and the engine table's io_uring
    answer with them), the platform's libc boundary *libc_module* at
    *kernel*, and every Linux libc function the core could reach is
    replaced by one that fails and is recorded in ``kernel.linux_calls``
    (checked empty on the way out).  Shared by the simulated XNU and
    FreeBSD kernels.
    """
    from tuntap_cffi import _backend, _engines, _lifecycle, _syscalls, batch, device

    linux_calls: List[str] = []
    kernel.linux_calls = linux_calls  # type: ignore[attr-defined]
    guard = _NoLinuxCalls(_syscalls.lib, linux_calls)

    def refused(*args: Any) -> int:
        linux_calls.append("read/write")
        raise AssertionError("the Linux libc's read/write was reached on another OS")

    saved = [
        (_backend, "PLATFORM", platform), (_backend, "require", platform.require),
        (_backend, "supports", platform.supports), (_backend, "_backend", None),
        (_engines, "_URING_HERE", False),
        (_syscalls, "lib", guard), (_lifecycle, "lib", guard), (device, "lib", guard), (batch, "lib", guard),
        (device, "_read", refused), (device, "_write", refused),
    ]
    olds = [(module, name, getattr(module, name)) for module, name, _ in saved]
    old_ops = device.Device._fd_ops
    for module, name, value in saved:
        setattr(module, name, value)
    device.Device._fd_ops = _NoLinuxOps(linux_calls)  # type: ignore[assignment]
    libc_module.use(kernel)
    try:
        yield kernel
    finally:
        libc_module.use(None)
        device.Device._fd_ops = old_ops
        for module, name, value in olds:
            setattr(module, name, value)
        kernel.teardown()
    assert linux_calls == [], linux_calls
