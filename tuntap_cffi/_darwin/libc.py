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

# The functions macOS declares as FreeBSD does, under the names this module always had.
from .._bsdlibc import FUNCTIONS, NET_FUNCTIONS, TAP_FUNCTIONS, Libc, Loader
from . import cdefs

__all__ = ["Libc", "FUNCTIONS", "NET_FUNCTIONS", "TAP_FUNCTIONS", "get", "use"]

_LOADER = Loader("Darwin", cdefs.declare)
#: ``get()``: macOS's C functions (loaded on first use on macOS), the stand-in of :func:`use`, or None.
get = _LOADER.get
#: ``use(stand_in)``: make *stand_in* what :func:`get` returns (None: load the real one again on next use).
use = _LOADER.use
