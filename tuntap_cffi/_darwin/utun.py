"""utun's numbers and packet framing, as data (the macOS backend will use them).

Every value is from XNU xnu-11417.101.15: bsd/sys/socket.h (families),
bsd/sys/sys_domain.h (the system domain), bsd/net/if_utun.h (the control
name and socket options) and bsd/net/if_utun.c (framing, default MTU).

Facts that shape this module:

- A utun datagram is ``AF header + packet``: the header is the packet's
  protocol family as a big-endian u32 (``utun_output`` applies ``htonl``,
  ``utun_ctl_send`` ``ntohl``), and header and packet must be one datagram:
  the backend will read and write with ``readv``/``writev`` over two iovecs
  (the header into a 4-byte scratch, the packet straight into the caller's
  buffer), so framing adds no copy.
- ``AF_INET6`` is 30 on macOS (10 on Linux, 28 on FreeBSD): the header of an
  IPv6 packet is ``00 00 00 1e``.
- The header grows by a 16-byte UUID only when ``UTUN_FLAGS_ENABLE_PROC_UUID``
  is set with ``UTUN_OPT_FLAGS``; the backend never sets it.
"""

from __future__ import annotations

from typing import Dict

__all__ = [
    "PF_SYSTEM", "SYSPROTO_CONTROL", "AF_SYS_CONTROL", "UTUN_CONTROL_NAME", "UTUN_OPT_IFNAME", "DEFAULT_MTU",
    "AF_INET", "AF_INET6", "AF_HEADER_LEN", "AF_HEADER",
]

PF_SYSTEM = 32  # AF_SYSTEM
SYSPROTO_CONTROL = 2  # the kernel-control protocol of PF_SYSTEM
AF_SYS_CONTROL = 2  # sockaddr_ctl's ss_sysaddr
UTUN_CONTROL_NAME = "com.apple.net.utun_control"
UTUN_OPT_IFNAME = 2  # getsockopt(SYSPROTO_CONTROL): the interface name
DEFAULT_MTU = 1500  # UTUN_DEFAULT_MTU

AF_INET = 2
AF_INET6 = 30

#: Bytes in front of every utun packet: its protocol family, big-endian.
AF_HEADER_LEN = 4
#: The header of a packet by IP version (the version nibble of its first byte).
AF_HEADER: Dict[int, bytes] = {
    4: AF_INET.to_bytes(AF_HEADER_LEN, "big"),
    6: AF_INET6.to_bytes(AF_HEADER_LEN, "big"),
}
