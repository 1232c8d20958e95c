"""macOS's errno numbers on the packet path, and the host's number for each: the one table, the one mapping.

Facts that shape this module:

- Below 35 macOS and Linux agree (EPERM 1 ... ERANGE 34); from 35 on they
  differ: EAGAIN is 35 on macOS (11 on Linux), EMSGSIZE 40 (90), ENOBUFS
  55 (105).  The macOS backend compares what its libc reports with these
  numbers, never with the ``errno`` module's, which are the running OS's.
- :func:`host` turns a macOS number into the running OS's number for the
  same name, for the exceptions (``OSError.errno`` is what callers compare
  with ``errno.EAGAIN``): the identity on macOS; on Linux, where the tests
  run the backend against a simulated XNU kernel, a translation by name.
- One table, one function: the numbers are ``.cdefs.ERRNO`` (checked
  against XNU's bsd/sys/errno.h by the golden test) and the mapping is the
  BSD layer's :func:`.._bsd.host_errno`, which link configuration uses too
  (``Numbers.host_errno``); this module only names the packet path's.
"""

from __future__ import annotations

from .._bsd import host_errno
from . import cdefs

ERRNO = cdefs.ERRNO

__all__ = ["EINTR", "EAGAIN", "EBADF", "EINVAL", "EIO", "ENOBUFS", "host"]

EINTR = ERRNO["EINTR"]
EIO = ERRNO["EIO"]
EBADF = ERRNO["EBADF"]
EINVAL = ERRNO["EINVAL"]
EAGAIN = ERRNO["EAGAIN"]  # = EWOULDBLOCK
ENOBUFS = ERRNO["ENOBUFS"]  # a full interface queue (an NDRV send): room may come


def host(err: int) -> int:
    """The running OS's errno for macOS's *err* (the same name); *err* itself for a number not listed."""
    return host_errno(ERRNO, err)
