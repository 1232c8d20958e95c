"""BSD sockaddrs as bytes, and the packed sockaddr lists of routing messages.

Facts that shape this module:

- Every BSD sockaddr starts with ``sa_len u8, sa_family u8`` (Linux:
  ``u16 sa_family``); ``sockaddr_in`` is 16 bytes (address @4),
  ``sockaddr_in6`` 28 (address @8, scope id @24, host order),
  ``sockaddr_dl`` 20 (``sdl_index`` u16 @2, host order).  The family
  numbers differ (AF_INET6 is 30 on macOS, 28 on FreeBSD): callers pass
  their platform's.
- A routing message carries one sockaddr per bit of its ``addrs`` mask,
  in bit order (RTA_DST, RTA_GATEWAY, RTA_NETMASK, ...), each taking
  ``sa_len`` rounded up to the platform's alignment, and an ``sa_len`` of 0
  taking one whole unit: XNU's ``ROUNDUP32`` (rtsock.c) aligns to 4 bytes,
  FreeBSD's ``SA_SIZE`` (net/route.h) to ``sizeof(long)``.
- The kernel shortens masks: a netmask sockaddr may end right after its
  last non-zero byte (its sa_len says where), its family may be 0; the
  missing bytes are zeros (``rt_msg2`` copies ``sa_len`` bytes).
- The host byte order is the platform's (the code runs there): host-order
  fields use ``sys.byteorder``.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Dict, Optional, Sequence, Tuple, Union

__all__ = [
    "CDEF", "SOCKADDR_IN_LEN", "SOCKADDR_IN6_LEN", "SOCKADDR_DL_LEN", "roundup", "sockaddr_in", "sockaddr_in6",
    "sockaddr_dl", "sockaddr_ip", "netmask", "ip_of", "prefix_of", "dl_index", "pack", "unpack",
]

IPAddress = Union[IPv4Address, IPv6Address]

#: The sockaddrs as both BSDs declare them (cdef text for a platform's ``cdefs``; their golden tests check it).
CDEF = """
struct sockaddr { uint8_t sa_len; uint8_t sa_family; char sa_data[14]; };
struct in_addr { uint32_t s_addr; };
struct sockaddr_in {
    uint8_t sin_len; uint8_t sin_family; uint16_t sin_port; struct in_addr sin_addr; char sin_zero[8];
};
struct in6_addr { union { uint8_t __u6_addr8[16]; uint16_t __u6_addr16[8]; uint32_t __u6_addr32[4]; } __u6_addr; };
struct sockaddr_in6 {
    uint8_t sin6_len; uint8_t sin6_family; uint16_t sin6_port; uint32_t sin6_flowinfo;
    struct in6_addr sin6_addr; uint32_t sin6_scope_id;
};
"""

SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28
SOCKADDR_DL_LEN = 20
_IN_ADDR_AT = 4
_IN6_ADDR_AT = 8


def roundup(sa_len: int, align: int) -> int:
    """Bytes a sockaddr of *sa_len* takes in a routing message (ROUNDUP32 / SA_SIZE; 0 takes *align*)."""
    return 1 + ((sa_len - 1) | (align - 1)) if sa_len > 0 else align


def sockaddr_in(af_inet: int, addr: bytes) -> bytes:
    """A ``sockaddr_in`` with a 4-byte address, port 0."""
    return bytes((SOCKADDR_IN_LEN, af_inet, 0, 0)) + addr + bytes(8)


def sockaddr_in6(af_inet6: int, addr: bytes, scope_id: int = 0) -> bytes:
    """A ``sockaddr_in6`` with a 16-byte address, port and flowinfo 0."""
    return bytes((SOCKADDR_IN6_LEN, af_inet6)) + bytes(6) + addr + scope_id.to_bytes(4, sys.byteorder)


def sockaddr_dl(af_link: int, index: int) -> bytes:
    """A ``sockaddr_dl`` naming interface *index* (no name, no link address): ``route -interface``'s gateway."""
    return bytes((SOCKADDR_DL_LEN, af_link)) + index.to_bytes(2, sys.byteorder) + bytes(SOCKADDR_DL_LEN - 4)


def sockaddr_ip(ip: IPAddress, af_inet: int, af_inet6: int) -> bytes:
    """The sockaddr of an IPv4 or IPv6 address."""
    return sockaddr_in(af_inet, ip.packed) if ip.version == 4 else sockaddr_in6(af_inet6, ip.packed)


def netmask(version: int, prefixlen: int, af_inet: int, af_inet6: int) -> bytes:
    """The full-length sockaddr of a /*prefixlen* mask (the kernel accepts the full length)."""
    bits = 32 if version == 4 else 128
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
    return sockaddr_ip(ip_address(mask) if version == 4 else IPv6Address(mask), af_inet, af_inet6)


def _addr_bytes(sa: bytes, version: int) -> bytes:
    """The address field of *sa* as the kernel meant it: bytes past sa_len are zeros."""
    at, size = (_IN_ADDR_AT, 4) if version == 4 else (_IN6_ADDR_AT, 16)
    end = min(sa[0] if sa else 0, len(sa))
    return (sa[at:end] + bytes(size))[:size] if end > at else bytes(size)


def ip_of(sa: bytes, af_inet: int, af_inet6: int) -> Optional[IPAddress]:
    """The IP address in sockaddr *sa*, or None if it is of another family."""
    if len(sa) < 2:
        return None
    if sa[1] == af_inet:
        return IPv4Address(_addr_bytes(sa, 4))
    if sa[1] == af_inet6:
        return IPv6Address(_addr_bytes(sa, 6))
    return None


def prefix_of(mask: Optional[bytes], version: int) -> int:
    """The prefix length of a (possibly shortened) mask sockaddr; None: a host route (all bits)."""
    if mask is None:
        return 32 if version == 4 else 128
    value = int.from_bytes(_addr_bytes(mask, version), "big")
    bits = 32 if version == 4 else 128
    inverted = ~value & ((1 << bits) - 1)
    return bits - inverted.bit_length()  # leading ones of a contiguous mask


def dl_index(sa: bytes, af_link: int) -> Optional[int]:
    """The interface index of a ``sockaddr_dl``, or None if *sa* is not one."""
    if len(sa) < 4 or sa[1] != af_link:
        return None
    return int.from_bytes(sa[2:4], sys.byteorder)


def pack(items: Sequence[Tuple[int, bytes]], align: int) -> Tuple[int, bytes]:
    """The ``addrs`` mask and the padded sockaddrs of (RTA bit, sockaddr) pairs, in bit order."""
    mask, out = 0, b""
    for bit, sa in sorted(items):
        if mask & bit:
            raise ValueError(f"two sockaddrs for RTA bit {bit:#x}")
        mask |= bit
        out += sa + bytes(roundup(len(sa), align) - len(sa))
    return mask, out


def unpack(addrs: int, data: bytes, align: int, count: int = 8) -> Dict[int, bytes]:
    """The sockaddr of each bit of *addrs* in *data* (rt_xaddrs); stops at one that overruns."""
    out: Dict[int, bytes] = {}
    at = 0
    for i in range(count):
        bit = 1 << i
        if not addrs & bit:
            continue
        if at >= len(data):
            break
        sa_len = data[at]
        if at + sa_len > len(data):
            break  # truncated message: keep what was whole
        out[bit] = bytes(data[at:at + sa_len])
        at += roundup(sa_len, align)
    return out
