"""Linux: the platform's capability table (here) and its backend (:mod:`.backend`).

Linux has everything the library offers: TUN and TAP through
``/dev/net/tun`` (TUNSETIFF & co.), packet info, persistence, owners,
multi-queue, virtio-net headers and offloads, the io_uring and loop batch
engines, link ioctls and rtnetlink.  This module is pure (no C call): the
platform boundary (``_backend``) imports it at import time on every OS and
loads :mod:`.backend` (which declares the Linux structs and ioctls through
cffi) only when a device is opened, as ``_darwin`` does for macOS.
"""

from __future__ import annotations

from .._capabilities import Feature, Platform

__all__ = ["PLATFORM"]

#: Linux's capability table: every feature.
PLATFORM = Platform("Linux", frozenset(Feature))
