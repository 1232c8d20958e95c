"""FreeBSD's errno numbers (sys/sys/errno.h, FreeBSD 14), and the host's number for each.

Facts that shape this module:

- Below 35 FreeBSD and Linux agree; from 35 on they differ (EAGAIN 35,
  EDESTADDRREQ 39, EOPNOTSUPP = ENOTSUP 45).  The backend compares what its
  libc reports with these numbers, never with the ``errno`` module's.
- :func:`host` turns a FreeBSD number into the running OS's for the same
  name, for the exceptions (the identity on FreeBSD; by name on Linux,
  where the tests run the backend against a simulated FreeBSD kernel).
- Every value is in ``tests/freebsd_golden.json`` (``cdefs.ERRNO``, checked
  against errno.h): this module only names those the Device compares with.
"""

from __future__ import annotations

import errno as _errno
from typing import Dict

from . import cdefs

__all__ = ["EINTR", "EAGAIN", "EBADF", "EINVAL", "EIO", "NAMES", "host"]

EINTR = cdefs.EINTR
EIO = cdefs.EIO
EBADF = cdefs.EBADF
EINVAL = cdefs.EINVAL
EAGAIN = cdefs.EAGAIN  # = EWOULDBLOCK

#: FreeBSD errno names by number (aliases such as EWOULDBLOCK, ENOTSUP give way to the primary name).
NAMES: Dict[int, str] = {value: name for name, value in reversed(list(cdefs.ERRNO.items()))
                         if name not in ("EWOULDBLOCK", "ENOTSUP")}


def host(err: int) -> int:
    """The running OS's errno for FreeBSD's *err* (the same name); *err* itself for a number not listed."""
    name = NAMES.get(err)
    return int(getattr(_errno, name, err)) if name is not None else err
