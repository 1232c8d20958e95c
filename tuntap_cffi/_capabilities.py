"""What a platform can do, and the one error for what it cannot.

Facts that shape this module:

- Each platform declares its capabilities as data (a :class:`Platform`),
  as ``selectors.py`` makes each variant mostly data: the set of features
  that work in this version, the ones its backend is planned to gain, and
  for every missing feature the reason and what to do instead.
- A feature a platform lacks fails at the call, before any syscall, with one
  :class:`~tuntap_cffi.errors.UnsupportedPlatformError` (errno EOPNOTSUPP)
  whose message names the feature, the platform and the reason; never with
  an AttributeError or a wrong answer.
- :meth:`Platform.require` is one set lookup when the feature is there: cheap
  enough for any call that opens or configures (it is never on the
  per-packet path, which a device only reaches once it is open).
- This module imports nothing but ``errors``: a platform package imports it
  to declare its table without importing any other platform.
"""

from __future__ import annotations

import enum
import errno
import types
from dataclasses import dataclass, field
from typing import AbstractSet, Mapping, Optional

from .errors import UnsupportedPlatformError

__all__ = ["Feature", "Platform"]


class Feature(str, enum.Enum):
    """What Device and ``open_tun``/``open_tap``/``open_queues`` offer beyond moving packets.

    The value is how an error message names the feature.  The file-like
    contract, blocking waits, asyncio and the close protocol belong to the
    portable core and are not features: every platform has them.
    """

    TUN = "TUN devices (open_tun)"
    TAP = "TAP devices (open_tap)"
    PACKET_INFO = "packet_info=True (the tun_pi header; read_packet/write_packet)"
    PERSIST = "persistent devices (persist=, Device.persistent, delete_persistent)"
    OWNER = "owner=/group= of a device"
    FROM_FD = "Device.from_fd"
    MULTI_QUEUE = "multi-queue devices (multi_queue=True, open_queues, attach_queue/detach_queue)"
    VNET_HDR = "vnet_hdr=True (the virtio-net header)"
    OFFLOAD = "offloads (offload=, Device.set_offload)"
    IO_URING = "the io_uring batch engine (batch_backend='io_uring')"
    LOOP_BATCH = "read_batch/write_batch (the loop batch engine)"
    LINK = "link settings (mtu, ifindex, is_up/up/down)"
    TXQUEUELEN = "Device.txqueuelen"
    HWADDR = "Device.hwaddr of a TAP"
    ADDRESSES = "addresses (add_address/remove_address/addresses)"
    ROUTES = "routes (add_route/remove_route/routes)"
    DISABLE_IPV6 = "Device.disable_ipv6"
    PYTUN_COMPAT = "tuntap_cffi.pytun_compat (python-pytun's TunTapDevice)"
    NAPI = "napi=/napi_frags= (IFF_NAPI, IFF_NAPI_FRAGS)"
    SNDBUF = "Device.sndbuf (TUNGETSNDBUF/TUNSETSNDBUF)"
    LINK_TYPE = "Device.link_type of a TAP (TUNSETLINK)"
    FILTER = "kernel-side packet filters (Device.attach_filter/detach_filter)"
    NETNS = "network namespaces (netns=, Device.netns, Device.move_to_netns)"
    CARRIER = "carrier control (carrier=, Device.carrier)"
    LINK_EVENTS = "link events (Device.events)"
    TUN_BROADCAST = "broadcast=True (a TUN in broadcast mode: TUNSIFMODE)"


@dataclass(frozen=True, eq=False)
class Platform:
    """One platform's declared capabilities.

    *name* is the display name for messages ("Linux", "macOS"); *features*
    work in this version; *planned* are promised to its backend but not
    there yet (they are missing today and fail like any other);
    *reasons* says, per missing feature, why and what to do instead;
    *fallback* is the reason for a missing feature with no entry.
    """

    name: str
    features: AbstractSet[Feature]
    planned: AbstractSet[Feature] = frozenset()
    reasons: Mapping[Feature, str] = field(default_factory=dict)
    fallback: str = "tuntap_cffi does not implement it there"

    def __post_init__(self) -> None:
        # Frozen copies: a table is shared by every device of the process.
        object.__setattr__(self, "features", frozenset(self.features))
        object.__setattr__(self, "planned", frozenset(self.planned))
        object.__setattr__(self, "reasons", types.MappingProxyType(dict(self.reasons)))
        if self.features & self.planned:
            raise ValueError(f"{self.name}: features both there and planned: {sorted(self.features & self.planned)}")
        if set(self.reasons) & self.features:
            raise ValueError(f"{self.name}: a reason given for a feature that is there")

    def supports(self, feature: Feature) -> bool:
        """True if *feature* works on this platform in this version."""
        return feature in self.features

    def require(self, feature: Feature, name: Optional[str] = None) -> None:
        """Return if *feature* works here; else raise :meth:`unsupported` (*name*: the device)."""
        if feature not in self.features:
            raise self.unsupported(feature, name)

    def unsupported(self, feature: Optional[Feature], name: Optional[str] = None) -> UnsupportedPlatformError:
        """The error for *feature* on this platform: names both, says why and what instead.

        *feature* None stands for TUN/TAP devices as a whole (a platform
        without a backend).
        """
        if feature is None:
            what, reason, verdict = "TUN/TAP devices", self.fallback, "not available"
        else:
            what, reason = feature.value, self.reasons.get(feature, self.fallback)
            verdict = "planned" if feature in self.planned else "not available"
        return UnsupportedPlatformError(errno.EOPNOTSUPP, f"{what} on {self.name}: {verdict}: {reason}", name)
