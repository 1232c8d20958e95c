"""Tiny packet builders/parsers for tests (IPv4/UDP, Ethernet), written from the RFCs."""

from __future__ import annotations

import ipaddress
import struct
from typing import Tuple


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int = 1) -> bytes:
    """An IPv4 packet carrying one UDP datagram, checksums filled in."""
    s = ipaddress.IPv4Address(src).packed
    d = ipaddress.IPv4Address(dst).packed
    udp_len = 8 + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident, 0x4000, 64, 17, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + udp


def parse_ipv4_udp(pkt: bytes) -> Tuple[str, str, int, int, bytes]:
    """Return (src, dst, sport, dport, payload) of an IPv4/UDP packet; assert it is one."""
    assert pkt[0] >> 4 == 4, f"not IPv4: {pkt[:20].hex()}"
    ihl = (pkt[0] & 0xF) * 4
    total = struct.unpack("!H", pkt[2:4])[0]
    assert total == len(pkt), (total, len(pkt))
    assert pkt[9] == 17, f"not UDP: protocol {pkt[9]}"
    assert checksum(pkt[:ihl]) == 0, "bad IPv4 header checksum"
    sport, dport, ulen = struct.unpack("!HHH", pkt[ihl : ihl + 6])
    assert ulen == total - ihl
    src = str(ipaddress.IPv4Address(pkt[12:16]))
    dst = str(ipaddress.IPv4Address(pkt[16:20]))
    return src, dst, sport, dport, bytes(pkt[ihl + 8 : total])


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload
