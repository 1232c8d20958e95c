"""Decode packets into one-line summaries: IPv4/IPv6 with TCP/UDP/ICMP, Ethernet, ARP.

Pure functions over buffers (``bytes``, ``bytearray``, ``memoryview``): no
fd, no device, no I/O.  Every length and offset taken from a packet is
untrusted, so each one is checked against the bytes actually present before
it is used; a short or inconsistent packet gives a summary such as
``"truncated IPv4 header (12 of 20 bytes)"``, never an exception.

The summary formats (addresses are examples)::

    IPv4 len=84 ICMP 198.18.5.1 > 198.18.5.2: echo request id=7 seq=1
    IPv4 len=60 TCP 198.18.5.1:40000 > 198.18.5.2:80: flags=[S] seq=1 win=64240 len=0
    IPv6 len=56 UDP [fd00::1]:5353 > [fd00::2]:53: len=8
    eth 02:00:5e:00:00:01 > ff:ff:ff:ff:ff:ff len=42 ARP who-has 198.18.5.2 tell 198.18.5.1
    eth 02:00:5e:00:00:01 > 02:00:5e:00:00:02 len=98 IPv4 len=84 ICMP ...

``len=`` after ``IPv4``/``IPv6`` is the captured packet length, after
``eth`` the frame length, after TCP/UDP ports the payload length.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import TYPE_CHECKING, Dict, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer

__all__ = ["summarize_ip", "summarize_ethernet", "hexdump", "format_time", "IP_PROTOCOLS"]

#: IP protocol numbers (IANA) shown by name; others appear as ``proto=N``.
IP_PROTOCOLS: Dict[int, str] = {
    0: "HOPOPT", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6",
    43: "IPv6-Route", 44: "IPv6-Frag", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6",
    59: "IPv6-NoNxt", 60: "IPv6-Opts", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP",
    136: "UDPLite",
}

_ETHERTYPES: Dict[int, str] = {
    0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8035: "RARP", 0x8100: "802.1Q",
    0x88A8: "802.1ad", 0x88CC: "LLDP", 0x888E: "EAPOL", 0x8847: "MPLS", 0x8848: "MPLS-multicast",
    0x88F7: "PTP", 0x8863: "PPPoE-discovery", 0x8864: "PPPoE-session",
}

_ICMP4: Dict[int, str] = {
    0: "echo reply", 3: "destination unreachable", 4: "source quench", 5: "redirect",
    8: "echo request", 9: "router advertisement", 10: "router solicitation", 11: "time exceeded",
    12: "parameter problem", 13: "timestamp request", 14: "timestamp reply",
}
_ICMP4_UNREACH: Dict[int, str] = {
    0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
    4: "fragmentation needed", 5: "source route failed", 9: "net prohibited", 10: "host prohibited",
    13: "administratively prohibited",
}
_ICMP6: Dict[int, str] = {
    1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem",
    128: "echo request", 129: "echo reply", 130: "multicast listener query",
    131: "multicast listener report", 132: "multicast listener done", 133: "router solicitation",
    134: "router advertisement", 135: "neighbor solicitation", 136: "neighbor advertisement",
    137: "redirect", 143: "multicast listener report v2",
}
_ICMP6_UNREACH: Dict[int, str] = {
    0: "no route", 1: "administratively prohibited", 2: "beyond scope", 3: "address unreachable",
    4: "port unreachable", 5: "source address failed policy", 6: "reject route",
}
_IGMP: Dict[int, str] = {0x11: "membership query", 0x12: "v1 report", 0x16: "v2 report", 0x17: "leave group", 0x22: "v3 report"}

# IPv6 extension headers walked to reach the upper layer (RFC 8200 section 4).
_EXT_HOP, _EXT_ROUTING, _EXT_FRAGMENT, _EXT_AH, _EXT_DSTOPTS, _NO_NEXT = 0, 43, 44, 51, 60, 59
_MAX_EXT_HEADERS = 8  # more than any sane packet has; bounds the walk

_IPV4 = struct.Struct("!BBHHHBB2x4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHH")
_ARP = struct.Struct("!HHBBH")
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_ntop = socket.inet_ntop


def _view(packet: "ReadableBuffer") -> memoryview:
    """A flat unsigned-byte view of *packet* (no copy)."""
    view = packet if isinstance(packet, memoryview) else memoryview(packet)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _mac(view: memoryview, offset: int) -> str:
    return ":".join(f"{b:02x}" for b in view[offset : offset + 6])


def _truncated(what: str, have: int, need: int) -> str:
    return f"truncated {what} ({have} of {need} bytes)"


def summarize_ip(packet: "ReadableBuffer") -> str:
    """Summarize one IP packet (what a TUN device reads) in one line; never raises.

    The IP version is taken from the first nibble.  Anything that is not a
    well-formed IPv4/IPv6 packet is described (``"not an IP packet"``,
    ``"truncated IPv6 header (...)"``) rather than rejected.
    """
    view = _view(packet)
    if not len(view):
        return "empty packet"
    version = view[0] >> 4
    if version == 4:
        return _ipv4(view)
    if version == 6:
        return _ipv6(view)
    return f"not an IP packet: version {version}, len={len(view)}"


def summarize_ethernet(frame: "ReadableBuffer") -> str:
    """Summarize one Ethernet frame (what a TAP device reads) in one line; never raises.

    Shows the source and destination MACs, any 802.1Q/802.1ad tags, then
    ARP, IPv4 and IPv6 decoded as :func:`summarize_ip` does, other
    EtherTypes by name or number.
    """
    view = _view(frame)
    n = len(view)
    if n < 14:
        return _truncated("Ethernet header", n, 14)
    head = f"eth {_mac(view, 6)} > {_mac(view, 0)} len={n}"
    offset = 12
    ethertype = view[12] << 8 | view[13]
    tags = 0
    while ethertype in (0x8100, 0x88A8) and tags < 2:
        if n < offset + 6:
            return f"{head} {_truncated('VLAN tag', n - offset - 2, 4)}"
        tci = view[offset + 2] << 8 | view[offset + 3]
        head += f" vlan={tci & 0x0FFF}"
        offset += 4
        ethertype = view[offset] << 8 | view[offset + 1]
        tags += 1
    payload = view[offset + 2 :]
    if ethertype == 0x0800:
        return f"{head} {_ipv4(payload)}"
    if ethertype == 0x86DD:
        return f"{head} {_ipv6(payload)}"
    if ethertype == 0x0806:
        return f"{head} {_arp(payload)}"
    if ethertype < 0x0600:  # IEEE 802.3: a length field, LLC follows
        return f"{head} 802.3 length={ethertype}"
    name = _ETHERTYPES.get(ethertype)
    return f"{head} ethertype=0x{ethertype:04x}" + (f" ({name})" if name else "")


def _arp(view: memoryview) -> str:
    n = len(view)
    if n < 8:
        return _truncated("ARP header", n, 8)
    htype, ptype, hlen, plen, op = _ARP.unpack_from(view, 0)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return f"ARP htype={htype} ptype=0x{ptype:04x} op={op}"
    if n < 28:
        return _truncated("ARP", n, 28)
    sender = _ntop(_AF_INET, view[14:18])
    target = _ntop(_AF_INET, view[24:28])
    if op == 1:
        return f"ARP who-has {target} tell {sender}"
    if op == 2:
        return f"ARP {sender} is-at {_mac(view, 8)}"
    return f"ARP op={op} {sender} ({_mac(view, 8)}) > {target} ({_mac(view, 18)})"


def _ipv4(view: memoryview) -> str:
    n = len(view)
    if n < 20:
        return f"IPv4 len={n} " + _truncated("IPv4 header", n, 20)
    vihl, _tos, total, _ident, frag, _ttl, proto, src_b, dst_b = _IPV4.unpack_from(view, 0)
    if vihl >> 4 != 4:
        return f"IPv4 len={n} bad version {vihl >> 4}"
    ihl = (vihl & 0x0F) * 4
    if ihl < 20:
        return f"IPv4 len={n} bad header length {ihl}"
    if ihl > n:
        return f"IPv4 len={n} " + _truncated("IPv4 header", n, ihl)
    src = _ntop(_AF_INET, src_b)
    dst = _ntop(_AF_INET, dst_b)
    note = ""
    end = n
    if total < ihl:
        note = f" (bad total length {total})"
    elif total > n:
        note = f" (truncated: total length {total})"
    else:
        end = total  # ignore link-layer padding after the IP packet
    offset = (frag & 0x1FFF) * 8
    if offset:
        name = IP_PROTOCOLS.get(proto) or f"proto={proto}"
        return f"IPv4 len={n} {name} {src} > {dst}: fragment offset={offset}{note}"
    return f"IPv4 len={n} " + _transport(proto, src, dst, view[ihl:end], 4) + note


def _ipv6(view: memoryview) -> str:
    n = len(view)
    if n < 40:
        return f"IPv6 len={n} " + _truncated("IPv6 header", n, 40)
    first, plen, nxt, _hops, src_b, dst_b = _IPV6.unpack_from(view, 0)
    if first >> 28 != 6:
        return f"IPv6 len={n} bad version {first >> 28}"
    src = _ntop(_AF_INET6, src_b)
    dst = _ntop(_AF_INET6, dst_b)
    note = ""
    end = 40 + plen
    if end > n:
        note = f" (truncated: payload length {plen})"
        end = n
    offset = 40
    for _ in range(_MAX_EXT_HEADERS):
        if nxt in (_EXT_HOP, _EXT_ROUTING, _EXT_DSTOPTS, _EXT_AH, _EXT_FRAGMENT):
            if end - offset < 8:
                return f"IPv6 len={n} {src} > {dst}: " + _truncated(f"{IP_PROTOCOLS[nxt]} header", end - offset, 8) + note
            if nxt == _EXT_FRAGMENT:
                frag = view[offset + 2] << 8 | view[offset + 3]
                if frag & 0xFFF8:  # not the first fragment: no upper-layer header here
                    inner = view[offset]
                    name = IP_PROTOCOLS.get(inner) or f"proto={inner}"
                    return f"IPv6 len={n} {name} {src} > {dst}: fragment offset={frag & 0xFFF8}{note}"
                size = 8
            elif nxt == _EXT_AH:
                size = (view[offset + 1] + 2) * 4
            else:
                size = (view[offset + 1] + 1) * 8
            nxt = view[offset]
            offset += size
            if offset > end:
                return f"IPv6 len={n} {src} > {dst}: truncated extension header{note}"
        else:
            break
    else:
        return f"IPv6 len={n} {src} > {dst}: too many extension headers{note}"
    if nxt == _NO_NEXT:
        return f"IPv6 len={n} {src} > {dst}: no next header{note}"
    return f"IPv6 len={n} " + _transport(nxt, src, dst, view[offset:end], 6) + note


def _endpoints(src: str, dst: str, sport: int, dport: int, version: int) -> str:
    if version == 6:
        return f"[{src}]:{sport} > [{dst}]:{dport}"
    return f"{src}:{sport} > {dst}:{dport}"


def _transport(proto: int, src: str, dst: str, data: memoryview, version: int) -> str:
    """The upper-layer part: ``"TCP a:1 > b:2: flags=[S] ..."``; *data* is the IP payload."""
    n = len(data)
    if proto == 6:
        if n < 20:
            return f"TCP {src} > {dst}: " + _truncated("TCP header", n, 20)
        sport, dport, seq, ack, off, flags, win = _TCP.unpack_from(data, 0)
        hlen = (off >> 4) * 4
        ends = _endpoints(src, dst, sport, dport, version)
        if hlen < 20 or hlen > n:
            return f"TCP {ends}: bad data offset {hlen}"
        text = f"TCP {ends}: flags=[{_tcp_flags(flags)}] seq={seq}"
        if flags & 0x10:
            text += f" ack={ack}"
        return f"{text} win={win} len={n - hlen}"
    if proto in (17, 136):  # UDP, UDP-Lite: same ports and header size
        name = "UDP" if proto == 17 else "UDPLite"
        if n < 8:
            return f"{name} {src} > {dst}: " + _truncated(f"{name} header", n, 8)
        sport, dport, length = _UDP.unpack_from(data, 0)
        return f"{name} {_endpoints(src, dst, sport, dport, version)}: len={n - 8}"
    if proto == 1 or proto == 58:
        name = "ICMP" if proto == 1 else "ICMPv6"
        return f"{name} {src} > {dst}: " + _icmp(data, proto == 58)
    if proto == 132:
        if n < 12:
            return f"SCTP {src} > {dst}: " + _truncated("SCTP header", n, 12)
        sport, dport = data[0] << 8 | data[1], data[2] << 8 | data[3]
        return f"SCTP {_endpoints(src, dst, sport, dport, version)}"
    if proto == 2 and n >= 1:
        kind = data[0]
        return f"IGMP {src} > {dst}: " + (_IGMP.get(kind) or f"type=0x{kind:02x}")
    name = IP_PROTOCOLS.get(proto) or f"proto={proto}"
    return f"{name} {src} > {dst}: len={n}"


_TCP_FLAG_LETTERS: Tuple[Tuple[int, str], ...] = (
    (0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x20, "U"), (0x40, "E"), (0x80, "W"),
)


def _tcp_flags(flags: int) -> str:
    """tcpdump's notation: S F R P U E W, then ``.`` for ACK (``[S.]`` is SYN+ACK)."""
    text = "".join(letter for bit, letter in _TCP_FLAG_LETTERS if flags & bit)
    if flags & 0x10:
        text += "."
    return text or "none"


def _icmp(data: memoryview, v6: bool) -> str:
    n = len(data)
    if n < 4:
        return _truncated("ICMPv6 header" if v6 else "ICMP header", n, 4)
    kind, code = data[0], data[1]
    name = (_ICMP6 if v6 else _ICMP4).get(kind)
    if name is None:
        return f"type={kind} code={code}"
    echo = (128, 129) if v6 else (0, 8)
    if kind in echo:
        if n < 8:
            return f"{name} " + _truncated("echo header", n, 8)
        return f"{name} id={data[4] << 8 | data[5]} seq={data[6] << 8 | data[7]}"
    if v6 and kind in (135, 136):  # neighbor discovery: the target address follows
        if n < 24:
            return f"{name} " + _truncated("neighbor discovery message", n, 24)
        target = _ntop(_AF_INET6, data[8:24])
        return f"{name} {'who-has ' if kind == 135 else ''}{target}"
    if v6 and kind == 2:
        if n < 8:
            return f"{name} " + _truncated("packet-too-big message", n, 8)
        return f"{name} mtu={int.from_bytes(data[4:8], 'big')}"
    if kind == (1 if v6 else 3):
        reason = (_ICMP6_UNREACH if v6 else _ICMP4_UNREACH).get(code)
        if not v6 and code == 4 and n >= 8:  # RFC 1191: next-hop MTU in bytes 6-7
            reason = f"fragmentation needed, mtu={data[6] << 8 | data[7]}"
        return f"{name} ({reason or f'code={code}'})"
    return name if code == 0 else f"{name} code={code}"


def hexdump(data: "ReadableBuffer", indent: str = "    ") -> str:
    """Return *data* as hexdump lines: offset, 16 hex bytes, the printable ASCII.

    ``"    0000  45 00 00 54 ...  E..T..@.@......."``; lines are joined with
    ``"\\n"`` (no trailing newline); empty data gives ``""``.
    """
    view = _view(data)
    lines = []
    for start in range(0, len(view), 16):
        chunk = bytes(view[start : start + 16])
        hexpart = chunk[:8].hex(" ") + ("  " + chunk[8:].hex(" ") if len(chunk) > 8 else "")
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{indent}{start:04x}  {hexpart:<48}  {text}")
    return "\n".join(lines)


def format_time(timestamp: float) -> str:
    """Format seconds since the epoch as local ``HH:MM:SS.microseconds``.

    Rounds to the microsecond exactly as :class:`tuntap_cffi.pcap.PcapWriter`
    does, so a printed time matches the pcap record of the same packet.
    """
    seconds, micros = divmod(round(timestamp * 1_000_000), 1_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"
