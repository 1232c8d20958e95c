"""The macOS libc boundary: the C functions the backend calls, made on first use.

Facts that shape this module:

- This package must import on any OS without reaching cffi or libc
  (``tests/test_platform.py`` checks it): ``cffi`` is imported inside
  :func:`_load`, the first time the backend asks for the functions on macOS.
- ABI mode, as on Linux: an ``FFI()`` with :func:`.cdefs.declare`'s structs
  plus the function declarations below, and ``dlopen(None)`` (libSystem is
  already in every macOS process).  ``ioctl`` and ``fcntl`` stay variadic:
  Apple arm64 passes variadic arguments on the stack, so a fixed-argument
  declaration would hand the kernel garbage there.
- ``socklen_t`` is ``__uint32_t`` on macOS (bsd/sys/_types/_socklen_t.h),
  ``nfds_t`` ``unsigned int`` (bsd/sys/poll.h); ``open`` is variadic too.
- A Device's whole life goes through here (its reads and writes, its
  wakeup pipe, poll, and dup2 of /dev/null over a closed fd), so the
  simulated kernel sees every call; :meth:`Libc.set_errno` lets a loop of
  reads tell end-of-file from a failure (errno cleared before).
- One object carries every function and the FFI its structs come from, so a
  stand-in (``tests/darwin_kernel.py``, a simulated XNU kernel on Linux) is
  installed with :func:`use` and the backend cannot tell the difference.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from . import cdefs

__all__ = ["Libc", "FUNCTIONS", "NET_FUNCTIONS", "TAP_FUNCTIONS", "get", "use"]

#: The C functions, as macOS's headers declare them (bsd/sys/socket.h, uio.h, fcntl.h, ioctl.h, unistd.h).
FUNCTIONS = """
struct iovec { void *iov_base; size_t iov_len; };
int socket(int domain, int type, int protocol);
int connect(int fd, const struct sockaddr *addr, uint32_t addrlen);
int getsockopt(int fd, int level, int name, void *value, uint32_t *len);
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

#: What a feth TAP adds (bsd/sys/socket.h): binding its NDRV socket to the I/O end.
TAP_FUNCTIONS = """
int bind(int fd, const struct sockaddr *addr, uint32_t addrlen);
"""


class Libc(Protocol):
    """What the macOS backend calls: C's signatures, -1 and :meth:`errno` on failure."""

    @property
    def ffi(self) -> Any:
        """The FFI that declared the structs (``new``, ``cast``, ``sizeof``, ``string``)."""

    def socket(self, domain: int, type: int, protocol: int) -> int: ...
    def connect(self, fd: int, addr: Any, addrlen: int) -> int: ...
    def getsockopt(self, fd: int, level: int, name: int, value: Any, length: Any) -> int: ...
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


class _CLibc:
    """libSystem through cffi: the functions are the library's own (no Python layer in between)."""

    def __init__(self, ffi: Any) -> None:
        lib = ffi.dlopen(None)
        self.ffi = ffi
        self.socket = lib.socket
        self.connect = lib.connect
        self.getsockopt = lib.getsockopt
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


_current: Optional[Libc] = None


def _load() -> Optional[Libc]:
    import os

    # The running kernel, not sys.platform (which a test may set): another OS's libc
    # has other numbers and structs, so only a stand-in may serve there.
    if os.uname().sysname != "Darwin":
        return None
    import cffi

    ffi = cffi.FFI()
    cdefs.declare(ffi)
    ffi.cdef(FUNCTIONS)
    ffi.cdef(NET_FUNCTIONS)
    ffi.cdef(TAP_FUNCTIONS)
    return _CLibc(ffi)


def get() -> Optional[Libc]:
    """macOS's C functions (loaded on first use), the stand-in of :func:`use`, or None on another OS."""
    global _current
    if _current is None:
        _current = _load()
    return _current


def use(stand_in: Optional[Libc]) -> None:
    """Make *stand_in* what :func:`get` returns (None: load the real one again on next use)."""
    global _current
    _current = stand_in
