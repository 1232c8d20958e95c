"""macOS's errno numbers (bsd/sys/errno.h, XNU xnu-11417.101.15), and the host's number for each.

Facts that shape this module:

- Below 35 macOS and Linux agree (EPERM 1 ... ERANGE 34); from 35 on they
  differ: EAGAIN is 35 on macOS (11 on Linux), EMSGSIZE 40 (90), ENOBUFS
  55 (105).  The macOS backend compares what its libc reports with these
  numbers, never with the ``errno`` module's, which are the running OS's.
- :func:`host` turns a macOS number into the running OS's number for the
  same name, for the exceptions (``OSError.errno`` is what callers compare
  with ``errno.EAGAIN``): the identity on macOS; on Linux, where the tests
  run the backend against a simulated XNU kernel, a translation by name.
"""

from __future__ import annotations

import errno as _errno
from typing import Dict

__all__ = ["EINTR", "EAGAIN", "EBADF", "EINVAL", "EIO", "ENOBUFS", "NAMES", "host"]

EINTR = 4
EIO = 5
EBADF = 9
EINVAL = 22
EAGAIN = 35  # = EWOULDBLOCK
ENOBUFS = 55  # a full interface queue (an NDRV send): room may come

#: macOS errno numbers by name (bsd/sys/errno.h): those the backend's calls can report.
NAMES: Dict[int, str] = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 9: "EBADF",
    12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL",
    23: "ENFILE", 24: "EMFILE", 25: "ENOTTY", 28: "ENOSPC", 32: "EPIPE", 34: "ERANGE",
    35: "EAGAIN", 36: "EINPROGRESS", 37: "EALREADY", 38: "ENOTSOCK", 39: "EDESTADDRREQ", 40: "EMSGSIZE",
    41: "EPROTOTYPE", 42: "ENOPROTOOPT", 43: "EPROTONOSUPPORT", 44: "ESOCKTNOSUPPORT", 45: "ENOTSUP",
    46: "EPFNOSUPPORT", 47: "EAFNOSUPPORT", 48: "EADDRINUSE", 49: "EADDRNOTAVAIL", 50: "ENETDOWN",
    51: "ENETUNREACH", 52: "ENETRESET", 53: "ECONNABORTED", 54: "ECONNRESET", 55: "ENOBUFS", 56: "EISCONN",
    57: "ENOTCONN", 58: "ESHUTDOWN", 60: "ETIMEDOUT", 61: "ECONNREFUSED", 62: "ELOOP", 63: "ENAMETOOLONG",
    64: "EHOSTDOWN", 65: "EHOSTUNREACH", 84: "EOVERFLOW", 102: "EOPNOTSUPP",
}


def host(err: int) -> int:
    """The running OS's errno for macOS's *err* (the same name); *err* itself for a number not listed."""
    name = NAMES.get(err)
    return int(getattr(_errno, name, err)) if name is not None else err
