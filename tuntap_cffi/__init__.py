"""tuntap_cffi: TUN/TAP devices from pure Python, through cffi's ABI mode (Linux; macOS and FreeBSD backends).

    from tuntap_cffi import open_tun

    with open_tun("tun%d") as dev:
        buf = bytearray(dev.max_packet_size)
        n = dev.readinto(buf)
"""

from .device import (
    EVERYONE,
    Device,
    DeviceKind,
    Everyone,
    NetNamespace,
    PacketInfo,
    TunFlags,
    delete_persistent,
    open_queues,
    open_tap,
    open_tun,
)
from .ring import PacketRing
from .bpf import compile_filter
from .errors import (
    BatchWriteError,
    DeviceBusyError,
    DeviceClosedError,
    DeviceNotFoundError,
    DeviceNotReadyError,
    DevicesExhaustedError,
    InvalidPacketError,
    LibpcapNotFoundError,
    NamespaceNotFoundError,
    TunTapError,
    TunTapPermissionError,
    UnsupportedPlatformError,
)


# The one place the version is written: pyproject.toml reads it (setuptools dynamic attr), CHANGELOG.md names it.
__version__ = "0.1.0"

__all__ = [
    "open_tun",
    "open_tap",
    "open_queues",
    "delete_persistent",
    "EVERYONE",
    "Everyone",
    "Device",
    "PacketRing",
    "BatchWriteError",
    "DeviceKind",
    "NetNamespace",
    "TunFlags",
    "PacketInfo",
    "TunTapError",
    "DeviceBusyError",
    "DevicesExhaustedError",
    "DeviceNotReadyError",
    "UnsupportedPlatformError",
    "TunTapPermissionError",
    "DeviceNotFoundError",
    "NamespaceNotFoundError",
    "InvalidPacketError",
    "DeviceClosedError",
    "LibpcapNotFoundError",
    "compile_filter",
]
