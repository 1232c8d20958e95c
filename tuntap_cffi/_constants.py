"""Constants of TUN/TAP and the packets through it, each defined once.

Internal: the public names are re-exported where users import them
(``tuntap_cffi``, ``tuntap_cffi.device``, ``tuntap_cffi.offload``).  Pure:
no cffi, so the pure modules (offload, pcap, the validators) can use it.
Plain ints: these are ABI values that never change, and the installed
headers may lack the newer ones (USO arrived in 6.2).  The ``IFF_*`` flags,
which build_ffi.py declares, stay with ``lib`` (device.TunFlags).
"""

from __future__ import annotations

import enum
import os
from typing import NamedTuple, Optional, Union

__all__ = [
    "DeviceKind", "Everyone", "EVERYONE", "Owner", "NetNamespace", "NetnsSpec", "NETNS_DIR",
    "TUN_F_CSUM", "TUN_F_TSO4", "TUN_F_TSO6", "TUN_F_TSO_ECN", "TUN_F_UFO", "TUN_F_USO4", "TUN_F_USO6",
    "TUN_F_UDP_TUNNEL_GSO", "TUN_F_UDP_TUNNEL_GSO_CSUM", "TUNNEL_OFFLOADS", "VNET_HDR_SIZES", "VNET_HDR_TUNNEL",
    "ALL_OFFLOADS", "GSO_OFFLOADS", "MAX_SNDBUF", "MAX_MTU", "MAX_IP_PACKET", "MIN_MTU", "ETH_HLEN", "VLAN_HLEN", "PI_LEN",
    "MAX_NAME", "MAX_QUEUES",
]


class DeviceKind(str, enum.Enum):
    """Which kind of interface a Device is: layer 3 (TUN) or layer 2 (TAP)."""

    TUN = "tun"
    TAP = "tap"

    def __str__(self) -> str:
        return self.value


class Everyone(enum.Enum):
    """The type of :data:`EVERYONE` (an enum of one value, so type checkers know it)."""

    EVERYONE = "everyone"

    def __repr__(self) -> str:
        return "EVERYONE"


#: ``owner=EVERYONE``: a persistent interface with neither owner nor group,
#: which any user who can open /dev/net/tun may attach to, un-persist and
#: delete.  Without it a persistent interface gets an owner (see open_tun).
EVERYONE = Everyone.EVERYONE

#: What the *owner* option takes.
Owner = Union[int, str, Everyone, None]

#: Where ``ip netns add NAME`` puts a namespace: a name given as ``netns=`` means NETNS_DIR/NAME.
NETNS_DIR = "/run/netns"

#: What the *netns* option takes: a name under NETNS_DIR, a path of a
#: namespace file (``/proc/PID/ns/net``), or an open fd of one.
NetnsSpec = Union[str, "os.PathLike[str]", int]


class NetNamespace(NamedTuple):
    """A network namespace: its identity, and its ``ip netns`` name if it has one.

    Two values are equal when they name the same namespace: a namespace is
    identified by the inode of its namespace file (``readlink
    /proc/PID/ns/net`` shows ``net:[INODE]``; ``stat -L`` of
    ``/run/netns/NAME`` shows the same inode).
    """

    inode: int  #: the namespace's inode number: its identity
    name: Optional[str]  #: its name under /run/netns (``ip netns``), None if it has none
    current: bool  #: it is the calling thread's own network namespace

    def __str__(self) -> str:
        return self.name if self.name is not None else f"net:[{self.inode}]"


# TUNSETOFFLOAD bits, include/uapi/linux/if_tun.h
TUN_F_CSUM = 0x01  # we accept partial checksums (NEEDS_CSUM) (since 2.6.27)
TUN_F_TSO4 = 0x02  # we accept IPv4 TCP super-packets
TUN_F_TSO6 = 0x04  # we accept IPv6 TCP super-packets
TUN_F_TSO_ECN = 0x08  # we accept TSO with the ECN (CWR) bit
TUN_F_UFO = 0x10  # UDP fragmentation offload (accepted for compatibility, never produced)
TUN_F_USO4 = 0x20  # we accept IPv4 UDP super-packets (since 6.2)
TUN_F_USO6 = 0x40  # we accept IPv6 UDP super-packets (since 6.2)
# Since 6.17: TSO/USO super-packets inside a UDP tunnel (VXLAN, GENEVE), their
# virtio-net header carrying the tunnel offsets (24 bytes); the kernel takes
# them only with TUN_F_CSUM and a plain TSO/USO offload, _CSUM only with the first.
TUN_F_UDP_TUNNEL_GSO = 0x80  # we accept UDP-tunnelled super-packets
TUN_F_UDP_TUNNEL_GSO_CSUM = 0x100  # ... whose outer UDP checksum is left to us (VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM)
TUNNEL_OFFLOADS = TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM
ALL_OFFLOADS = (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO | TUN_F_USO4 | TUN_F_USO6
                | TUNNEL_OFFLOADS)
GSO_OFFLOADS = (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO | TUN_F_USO4 | TUN_F_USO6
                | TUN_F_UDP_TUNNEL_GSO)  # those that bring super-packets

# The virtio-net header sizes (TUNSETVNETHDRSZ), include/uapi/linux/virtio_net.h:
# virtio_net_hdr (10), _v1 / _mrg_rxbuf (12: num_buffers), _v1_hash (20: the
# hash report; tun never fills it), _v1_hash_tunnel (24: the UDP-tunnel offsets).
VNET_HDR_SIZES = (10, 12, 20, 24)
VNET_HDR_TUNNEL = 24  # the size whose header carries outer_th_offset/inner_nh_offset

# Sizes.  65535 is two limits that happen to agree: tun's max_mtu, and the
# 16-bit length field of an IP packet (so of a GSO super-packet: tun's
# gso_max_size is 64 KiB).
MAX_MTU = 65535  # drivers/net/tun.c: dev->max_mtu
MIN_MTU = 68  # the IPv4 minimum (RFC 791)
MAX_IP_PACKET = 65535  # an IP packet's length field: a super-packet's ceiling
ETH_HLEN = 14  # Ethernet header
VLAN_HLEN = 4  # one 802.1Q tag
PI_LEN = 4  # struct tun_pi
MAX_NAME = 15  # IFNAMSIZ - 1: an interface name's bytes
MAX_QUEUES = 256  # MAX_TAP_QUEUES: queues of one multi-queue interface
MAX_SNDBUF = 2**31 - 1  # TUNSETSNDBUF takes a positive int (INT_MAX, the default, means unlimited)
