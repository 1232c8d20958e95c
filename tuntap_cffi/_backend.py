"""The platform boundary: which backend module drives devices on this OS.

A backend is a module with the functions ``_linux`` defines (``create``,
``get_iff``, ``set_persist``, ``control_socket``, link ioctls).  A macOS
backend slots in here.  On other systems opening a device raises
:class:`UnsupportedPlatformError`; importing the package still works.
"""

from __future__ import annotations

import errno
import sys
from types import ModuleType
from typing import Optional

from .errors import UnsupportedPlatformError

__all__ = ["current"]

_backend: Optional[ModuleType] = None


def current() -> ModuleType:
    """Return the backend module for this platform, or raise UnsupportedPlatformError."""
    global _backend
    if _backend is None:
        if sys.platform.startswith("linux"):
            from . import _linux

            _backend = _linux
        else:
            raise UnsupportedPlatformError(
                errno.EOPNOTSUPP,
                f"TUN/TAP devices are not supported on {sys.platform!r} by tuntap_cffi yet (Linux only)",
            )
    return _backend
