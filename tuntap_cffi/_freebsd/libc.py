"""The FreeBSD libc boundary: the C functions the backend calls, made on first use.

Facts that shape this module:

- This package must import on any OS without reaching cffi or libc:
  ``cffi`` is imported inside :func:`_load`, the first time the backend
  asks for the functions, and only when the running kernel is FreeBSD
  (``os.uname``, not ``sys.platform``, which a test may set).
- ABI mode: an ``FFI()`` with :func:`.cdefs.declare`'s structs plus the
  BSD functions (``.._bsdlibc``: FreeBSD declares them as macOS does) and
  ``dlopen(None)`` (libc is in every FreeBSD process).
- A Device's whole life goes through here (the /dev/tun fd's reads and
  writes, its wakeup pipe, poll, dup2 of /dev/null over a closed fd), so a
  stand-in installed with :func:`use` (``tests/freebsd_kernel.py``, a
  simulated FreeBSD kernel on Linux) sees every call.
"""

from __future__ import annotations

from .._bsdlibc import Libc, Loader
from . import cdefs

__all__ = ["Libc", "get", "use"]

_LOADER = Loader("FreeBSD", cdefs.declare)
#: ``get()``: FreeBSD's C functions (loaded on first use on FreeBSD), the stand-in of :func:`use`, or None.
get = _LOADER.get
#: ``use(stand_in)``: make *stand_in* what :func:`get` returns (None: the real one again).
use = _LOADER.use
