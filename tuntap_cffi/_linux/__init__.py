"""Linux: the platform's capability table (here) and its backend (:mod:`.backend`).

Linux has everything the library offers but one: TUN and TAP through
``/dev/net/tun`` (TUNSETIFF & co.), packet info, persistence, owners,
multi-queue, virtio-net headers and offloads, the io_uring and loop batch
engines, link ioctls and rtnetlink.  A Linux TUN is point-to-point by
design (``tun_net_init``: IFF_POINTOPOINT | IFF_NOARP, no mode ioctl), so
FreeBSD's broadcast-mode TUN has no counterpart: a TAP is the broadcast link.  This module is pure (no C call): the
platform boundary (``_backend``) imports it at import time on every OS and
loads :mod:`.backend` (which declares the Linux structs and ioctls through
cffi) only when a device is opened, as ``_darwin`` does for macOS.
"""

from __future__ import annotations

from .._capabilities import Feature, Platform

__all__ = ["PLATFORM"]

#: Linux's capability table: every feature but a broadcast-mode TUN.
PLATFORM = Platform(
    "Linux", frozenset(Feature) - {Feature.TUN_BROADCAST},
    reasons={Feature.TUN_BROADCAST: "a Linux TUN is always point-to-point (IFF_POINTOPOINT|IFF_NOARP): "
                                    "open_tap() gives a broadcast (Ethernet) link"},
)
