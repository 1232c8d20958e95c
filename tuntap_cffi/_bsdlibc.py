"""The C functions a BSD backend calls (macOS, FreeBSD): cdef text, a Protocol, and the loader of the real library.

Facts that shape this module:

- macOS and FreeBSD declare these functions alike (4.4BSD's headers), so
  one cdef text and one Protocol serve both; each platform's ``libc``
  module adds its structs (its ``cdefs.declare``) and decides when the real
  library may be loaded (only on that OS) or a stand-in used instead.
- :class:`CLibc` binds the functions of ``ffi.dlopen(None)`` as attributes:
  a call is the library's own, with no Python layer in between.
- :class:`Loader` makes it on first use, only when the running kernel is
  the platform's (``os.uname``, not ``sys.platform``, which a test may set:
  another OS's libc has other numbers and structs), and lets a stand-in
  take its place (a simulated kernel in the tests).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

__all__ = ["FUNCTIONS", "NET_FUNCTIONS", "TAP_FUNCTIONS", "Libc", "CLibc", "Loader"]

#: The C functions, as both BSDs' headers declare them (sys/socket.h, uio.h, fcntl.h, ioctl.h, unistd.h, poll.h):
#: ``socklen_t`` is ``__uint32_t`` and ``nfds_t`` ``unsigned int`` on both; ``ioctl``, ``fcntl`` and ``open`` variadic.
FUNCTIONS = """
struct iovec { void *iov_base; size_t iov_len; };
int socket(int domain, int type, int protocol);
int connect(int fd, const struct sockaddr *addr, uint32_t addrlen);
int getsockopt(int fd, int level, int name, void *value, uint32_t *len);
int setsockopt(int fd, int level, int name, const void *value, uint32_t len);
int ioctl(int fd, unsigned long request, ...);
int fcntl(int fd, int cmd, ...);
int open(const char *path, int flags, ...);
int close(int fd);
int pipe(int fds[2]);
int dup2(int from, int to);
struct pollfd { int fd; short events; short revents; };
int poll(struct pollfd *fds, unsigned int nfds, int timeout);
ssize_t read(int fd, void *buf, size_t count);
ssize_t write(int fd, const void *buf, size_t count);
ssize_t readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
"""

#: What link configuration adds (bsd/sys/sysctl.h, net/if.h): the route and address tables, the index.
NET_FUNCTIONS = """
int sysctl(int *name, unsigned int namelen, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
unsigned int if_nametoindex(const char *ifname);
"""

#: What a macOS feth TAP adds (bsd/sys/socket.h): binding its NDRV socket to the I/O end.
TAP_FUNCTIONS = """
int bind(int fd, const struct sockaddr *addr, uint32_t addrlen);
"""


class Libc(Protocol):
    """What a BSD backend calls: C's signatures, -1 and :meth:`errno` on failure."""

    @property
    def ffi(self) -> Any:
        """The FFI that declared the structs (``new``, ``cast``, ``sizeof``, ``string``)."""

    def socket(self, domain: int, type: int, protocol: int) -> int: ...
    def connect(self, fd: int, addr: Any, addrlen: int) -> int: ...
    def getsockopt(self, fd: int, level: int, name: int, value: Any, length: Any) -> int: ...
    def setsockopt(self, fd: int, level: int, name: int, value: Any, length: int) -> int: ...
    def ioctl(self, fd: int, request: int, arg: Any) -> int: ...
    def fcntl(self, fd: int, cmd: int, arg: Any) -> int: ...
    def close(self, fd: int) -> int: ...
    def open(self, path: bytes, flags: int, *mode: Any) -> int: ...
    def pipe(self, fds: Any) -> int: ...
    def dup2(self, fd: int, to: int) -> int: ...
    def poll(self, fds: Any, nfds: int, timeout: int) -> int: ...
    def read(self, fd: int, buf: Any, count: int) -> int: ...
    def write(self, fd: int, buf: Any, count: int) -> int: ...
    def readv(self, fd: int, iov: Any, iovcnt: int) -> int: ...
    def writev(self, fd: int, iov: Any, iovcnt: int) -> int: ...
    def sysctl(self, name: Any, namelen: int, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int: ...
    def if_nametoindex(self, name: bytes) -> int: ...
    def bind(self, fd: int, addr: Any, addrlen: int) -> int: ...
    def errno(self) -> int:
        """The errno of the last failed call on this thread."""

    def set_errno(self, value: int) -> None:
        """Set this thread's errno (to 0 before calls whose 0 result must be told from a failure)."""


class CLibc:
    """The C library through cffi (libSystem, FreeBSD's libc): each function is the library's own."""

    def __init__(self, ffi: Any) -> None:
        lib = ffi.dlopen(None)
        self.ffi = ffi
        self.socket = lib.socket
        self.connect = lib.connect
        self.getsockopt = lib.getsockopt
        self.setsockopt = lib.setsockopt
        self.ioctl = lib.ioctl
        self.fcntl = lib.fcntl
        self.close = lib.close
        self.open = lib.open
        self.pipe = lib.pipe
        self.dup2 = lib.dup2
        self.poll = lib.poll
        self.read = lib.read
        self.write = lib.write
        self.readv = lib.readv
        self.writev = lib.writev
        self.sysctl = lib.sysctl
        self.if_nametoindex = lib.if_nametoindex
        self.bind = lib.bind

    def errno(self) -> int:
        return int(self.ffi.errno)

    def set_errno(self, value: int) -> None:
        self.ffi.errno = value


class Loader:
    """One platform's libc: the real one on that OS (made on first use), a stand-in, or None elsewhere."""

    def __init__(self, sysname: str, declare: Callable[[Any], None]) -> None:
        self._sysname = sysname  # os.uname().sysname of the platform
        self._declare = declare  # puts the platform's structs into an FFI
        self._current: Optional[Libc] = None

    def _load(self) -> Optional[Libc]:
        import os

        if os.uname().sysname != self._sysname:
            return None
        import cffi

        ffi = cffi.FFI()
        self._declare(ffi)
        ffi.cdef(FUNCTIONS)
        ffi.cdef(NET_FUNCTIONS)
        ffi.cdef(TAP_FUNCTIONS)
        return CLibc(ffi)

    def get(self) -> Optional[Libc]:
        """The platform's C functions (loaded on first use), the stand-in of :meth:`use`, or None on another OS."""
        if self._current is None:
            self._current = self._load()
        return self._current

    def use(self, stand_in: Optional[Libc]) -> None:
        """Make *stand_in* what :meth:`get` returns (None: load the real one again on next use)."""
        self._current = stand_in
