"""Packet summaries: hand-built packets give exact lines; malformed input never raises."""

from __future__ import annotations

import array
import ipaddress
import struct
import time
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuntest import (
    A4, A6, ARP_REQUEST, B4, B6, ICMP_ECHO4, ICMP_ECHO6, MAC_A, MAC_B, arp, echo, ethernet, icmp, ipv4, ipv4_udp,
    ipv6, tcp, udp
)
from tuntap_cffi.decode import format_time, hexdump, summarize_ethernet, summarize_ip

# ------------------------------------------------------------ exact summaries

EXACT = [
    (ICMP_ECHO4, f"IPv4 len=32 ICMP {A4} > {B4}: echo request id=4660 seq=3"),
    (ipv4(1, echo(0, 1, 2)), f"IPv4 len=32 ICMP {A4} > {B4}: echo reply id=1 seq=2"),
    (ipv4(1, icmp(3, 3, bytes(4) + ipv4(17, udp(1, 2, b"")))), f"IPv4 len=56 ICMP {A4} > {B4}: destination unreachable (port unreachable)"),
    (ipv4(1, icmp(3, 4, struct.pack("!HH", 0, 1400))), f"IPv4 len=28 ICMP {A4} > {B4}: destination unreachable (fragmentation needed, mtu=1400)"),
    (ipv4(1, icmp(11, 0, bytes(4))), f"IPv4 len=28 ICMP {A4} > {B4}: time exceeded"),
    (ipv4(1, icmp(42, 1, bytes(4))), f"IPv4 len=28 ICMP {A4} > {B4}: type=42 code=1"),
    (ipv4_udp(A4, B4, 4000, 9999, b"hello"), f"IPv4 len=33 UDP {A4}:4000 > {B4}:9999: len=5"),
    (ipv4(6, tcp(40000, 80, 0x02, seq=123, win=64240)), f"IPv4 len=40 TCP {A4}:40000 > {B4}:80: flags=[S] seq=123 win=64240 len=0"),
    (ipv4(6, tcp(80, 40000, 0x12, seq=5, ack=124, win=1000)), f"IPv4 len=40 TCP {A4}:80 > {B4}:40000: flags=[S.] seq=5 ack=124 win=1000 len=0"),
    (ipv4(6, tcp(1, 2, 0x18, seq=9, ack=10, win=7, data=b"GET /")), f"IPv4 len=45 TCP {A4}:1 > {B4}:2: flags=[P.] seq=9 ack=10 win=7 len=5"),
    (ipv4(6, tcp(1, 2, 0x11, ack=3)), f"IPv4 len=40 TCP {A4}:1 > {B4}:2: flags=[F.] seq=1000 ack=3 win=65535 len=0"),
    (ipv4(6, tcp(1, 2, 0x04)), f"IPv4 len=40 TCP {A4}:1 > {B4}:2: flags=[R] seq=1000 win=65535 len=0"),
    (ipv4(6, tcp(1, 2, 0)), f"IPv4 len=40 TCP {A4}:1 > {B4}:2: flags=[none] seq=1000 win=65535 len=0"),
    (ipv4(17, udp(53, 5353, b"abc"), ihl=6), f"IPv4 len=35 UDP {A4}:53 > {B4}:5353: len=3"),
    (ipv4(47, b"\0" * 8), f"IPv4 len=28 GRE {A4} > {B4}: len=8"),
    (ipv4(253, b"xy"), f"IPv4 len=22 proto=253 {A4} > {B4}: len=2"),
    (ipv4(2, b"\x22" + bytes(7)), f"IPv4 len=28 IGMP {A4} > {B4}: v3 report"),
    (ipv4(17, b"later bytes", frag=185), f"IPv4 len=31 UDP {A4} > {B4}: fragment offset=1480"),
    (ICMP_ECHO6, f"IPv6 len=104 ICMPv6 {A6} > {B6}: echo request id=77 seq=9"),
    (ipv6(58, echo(129, 1, 1)), f"IPv6 len=52 ICMPv6 {A6} > {B6}: echo reply id=1 seq=1"),
    (ipv6(58, icmp(133, 0, bytes(4)), "fe80::1", "ff02::2"), "IPv6 len=48 ICMPv6 fe80::1 > ff02::2: router solicitation"),
    (ipv6(58, icmp(135, 0, bytes(4) + ipaddress.IPv6Address(B6).packed), A6, "ff02::1:ff00:2"),
     f"IPv6 len=64 ICMPv6 {A6} > ff02::1:ff00:2: neighbor solicitation who-has {B6}"),
    (ipv6(58, icmp(136, 0, bytes(4) + ipaddress.IPv6Address(B6).packed)), f"IPv6 len=64 ICMPv6 {A6} > {B6}: neighbor advertisement {B6}"),
    (ipv6(58, icmp(2, 0, struct.pack("!I", 1280))), f"IPv6 len=48 ICMPv6 {A6} > {B6}: packet too big mtu=1280"),
    (ipv6(58, icmp(1, 4, bytes(4))), f"IPv6 len=48 ICMPv6 {A6} > {B6}: destination unreachable (port unreachable)"),
    (ipv6(17, udp(5353, 53, b"q" * 8)), f"IPv6 len=56 UDP [{A6}]:5353 > [{B6}]:53: len=8"),
    (ipv6(6, tcp(443, 50000, 0x10, seq=1, ack=2, win=3)), f"IPv6 len=60 TCP [{A6}]:443 > [{B6}]:50000: flags=[.] seq=1 ack=2 win=3 len=0"),
    # Hop-by-hop options (an MLD report's router alert) then ICMPv6: the walk reaches the upper layer.
    (ipv6(0, bytes([58, 0, 5, 2, 0, 0, 1, 0]) + icmp(143, 0, bytes(4)), "::", "ff02::16"), "IPv6 len=56 ICMPv6 :: > ff02::16: multicast listener report v2"),
    (ipv6(44, bytes([17, 0, 0, 0, 0, 0, 0, 1]) + udp(1, 2, b"")), f"IPv6 len=56 UDP [{A6}]:1 > [{B6}]:2: len=0"),
    (ipv6(44, bytes([17, 0, 0x05, 0xC8, 0, 0, 0, 1]) + b"tail"), f"IPv6 len=52 UDP {A6} > {B6}: fragment offset=1480"),
    (ipv6(59, b""), f"IPv6 len=40 {A6} > {B6}: no next header"),
    # Malformed and truncated: described, not raised.
    (b"", "empty packet"),
    (b"\x45\x00\x00", "IPv4 len=3 truncated IPv4 header (3 of 20 bytes)"),
    (ICMP_ECHO4[:22], f"IPv4 len=22 ICMP {A4} > {B4}: truncated ICMP header (2 of 4 bytes) (truncated: total length 32)"),
    (ipv4(1, echo(8, 1, 1))[:26], f"IPv4 len=26 ICMP {A4} > {B4}: echo request truncated echo header (6 of 8 bytes) (truncated: total length 32)"),
    (b"\x4f" + ICMP_ECHO4[1:], "IPv4 len=32 truncated IPv4 header (32 of 60 bytes)"),
    (b"\x43" + ICMP_ECHO4[1:], "IPv4 len=32 bad header length 12"),
    (ICMP_ECHO4[:2] + b"\x00\x05" + ICMP_ECHO4[4:], f"IPv4 len=32 ICMP {A4} > {B4}: echo request id=4660 seq=3 (bad total length 5)"),
    (ICMP_ECHO4 + b"\0" * 6, f"IPv4 len=38 ICMP {A4} > {B4}: echo request id=4660 seq=3"),  # padding after total length
    (ipv4(6, tcp(1, 2, 2))[:30], f"IPv4 len=30 TCP {A4} > {B4}: truncated TCP header (10 of 20 bytes) (truncated: total length 40)"),
    (ipv4(6, tcp(1, 2, 2)[:12] + b"\x20" + tcp(1, 2, 2)[13:]), f"IPv4 len=40 TCP {A4}:1 > {B4}:2: bad data offset 8"),
    (ipv4(17, b"\0\1\0"), f"IPv4 len=23 UDP {A4} > {B4}: truncated UDP header (3 of 8 bytes)"),
    (ICMP_ECHO6[:39], "IPv6 len=39 truncated IPv6 header (39 of 40 bytes)"),
    (ICMP_ECHO6[:60], f"IPv6 len=60 ICMPv6 {A6} > {B6}: echo request id=77 seq=9 (truncated: payload length 64)"),
    (ipv6(0, bytes([58, 200]) + bytes(6)), f"IPv6 len=48 {A6} > {B6}: truncated extension header"),
    (ipv6(60, bytes(4)), f"IPv6 len=44 {A6} > {B6}: truncated IPv6-Opts header (4 of 8 bytes)"),
    (ipv6(60, (bytes([60, 0]) + bytes(6)) * 9), f"IPv6 len=112 {A6} > {B6}: too many extension headers"),
    (b"\x00" * 20, "not an IP packet: version 0, len=20"),
]


@pytest.mark.parametrize("packet, expected", EXACT, ids=range(len(EXACT)))
def test_ip_summary(packet: bytes, expected: str) -> None:
    assert summarize_ip(packet) == expected


ETH_EXACT = [
    (ARP_REQUEST, f"eth {MAC_A} > ff:ff:ff:ff:ff:ff len=42 ARP who-has {B4} tell {A4}"),
    (ethernet(MAC_A, MAC_B, 0x0806, arp(2, MAC_B, B4, MAC_A, A4)), f"eth {MAC_B} > {MAC_A} len=42 ARP {B4} is-at {MAC_B}"),
    (ethernet(MAC_A, MAC_B, 0x0806, arp(3, MAC_B, B4, MAC_A, A4)), f"eth {MAC_B} > {MAC_A} len=42 ARP op=3 {B4} ({MAC_B}) > {A4} ({MAC_A})"),
    (ethernet(MAC_B, MAC_A, 0x0800, ICMP_ECHO4), f"eth {MAC_A} > {MAC_B} len=46 IPv4 len=32 ICMP {A4} > {B4}: echo request id=4660 seq=3"),
    (ethernet(MAC_B, MAC_A, 0x86DD, ICMP_ECHO6), f"eth {MAC_A} > {MAC_B} len=118 IPv6 len=104 ICMPv6 {A6} > {B6}: echo request id=77 seq=9"),
    (ethernet(MAC_B, MAC_A, 0x8100, struct.pack("!HH", 0x2005, 0x0800) + ICMP_ECHO4),
     f"eth {MAC_A} > {MAC_B} len=50 vlan=5 IPv4 len=32 ICMP {A4} > {B4}: echo request id=4660 seq=3"),
    (ethernet(MAC_B, MAC_A, 0x88A8, struct.pack("!HHHH", 100, 0x8100, 200, 0x0806) + arp(1, MAC_A, A4, "00:00:00:00:00:00", B4)),
     f"eth {MAC_A} > {MAC_B} len=50 vlan=100 vlan=200 ARP who-has {B4} tell {A4}"),
    (ethernet(MAC_B, MAC_A, 0x88CC, b"lldp"), f"eth {MAC_A} > {MAC_B} len=18 ethertype=0x88cc (LLDP)"),
    (ethernet(MAC_B, MAC_A, 0x1234, b""), f"eth {MAC_A} > {MAC_B} len=14 ethertype=0x1234"),
    (ethernet(MAC_B, MAC_A, 46, bytes(46)), f"eth {MAC_A} > {MAC_B} len=60 802.3 length=46"),
    (ethernet(MAC_B, MAC_A, 0x0806, struct.pack("!HHBBH", 6, 0x0800, 6, 4, 1)), f"eth {MAC_A} > {MAC_B} len=22 ARP htype=6 ptype=0x0800 op=1"),
    (ARP_REQUEST[:30], f"eth {MAC_A} > ff:ff:ff:ff:ff:ff len=30 truncated ARP (16 of 28 bytes)"),
    (ARP_REQUEST[:18], f"eth {MAC_A} > ff:ff:ff:ff:ff:ff len=18 truncated ARP header (4 of 8 bytes)"),
    (ethernet(MAC_B, MAC_A, 0x8100, b"\x00"), f"eth {MAC_A} > {MAC_B} len=15 truncated VLAN tag (1 of 4 bytes)"),
    (ethernet(MAC_B, MAC_A, 0x0800, b"\x45"), f"eth {MAC_A} > {MAC_B} len=15 IPv4 len=1 truncated IPv4 header (1 of 20 bytes)"),
    (ethernet(MAC_B, MAC_A, 0x0800, ICMP_ECHO6), f"eth {MAC_A} > {MAC_B} len=118 IPv4 len=104 bad version 6"),
    (ARP_REQUEST[:13], "truncated Ethernet header (13 of 14 bytes)"),
]


@pytest.mark.parametrize("frame, expected", ETH_EXACT, ids=range(len(ETH_EXACT)))
def test_ethernet_summary(frame: bytes, expected: str) -> None:
    assert summarize_ethernet(frame) == expected


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b"junk" + b))[4:],
                                  lambda b: array.array("B", b), lambda b: memoryview(b + bytes(-len(b) % 4)).cast("I")],
                         ids=["bytes", "bytearray", "memoryview", "view-slice", "array", "uint-view"])
def test_any_buffer_is_accepted(wrap: object) -> None:
    assert summarize_ip(wrap(ICMP_ECHO4)) == EXACT[0][1]  # type: ignore[operator]
    frame = ethernet(MAC_B, MAC_A, 0x0800, ICMP_ECHO4 + b"pad")
    wrapped = wrap(frame)  # type: ignore[operator]
    assert summarize_ethernet(wrapped) == summarize_ethernet(memoryview(wrapped).cast("B").tobytes())
    assert summarize_ethernet(wrapped).endswith(f"ICMP {A4} > {B4}: echo request id=4660 seq=3")


def test_every_truncation_of_every_sample_is_described() -> None:
    for packet, _ in EXACT:
        for n in range(len(packet) + 1):
            assert isinstance(summarize_ip(packet[:n]), str)
    for frame, _ in ETH_EXACT:
        for n in range(len(frame) + 1):
            assert isinstance(summarize_ethernet(frame[:n]), str)


# ------------------------------------------------------------------ robustness

SAMPLES_IP: List[bytes] = [p for p, _ in EXACT if p]
SAMPLES_ETH: List[bytes] = [f for f, _ in ETH_EXACT] + [ethernet(MAC_B, MAC_A, 0x86DD, p) for p in SAMPLES_IP if p[0] >> 4 == 6]


@st.composite
def mutated(draw: st.DrawFn, samples: List[bytes]) -> bytes:
    """A valid sample, cut at a random length, with random bytes overwritten: reaches deep code paths."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=8))


ip_like = st.one_of(
    st.binary(max_size=128),
    st.tuples(st.sampled_from([0x45, 0x46, 0x4F, 0x60]), st.binary(max_size=128)).map(lambda t: bytes([t[0]]) + t[1]),
    mutated(SAMPLES_IP),
)
eth_like = st.one_of(
    st.binary(max_size=160),
    st.tuples(st.binary(min_size=12, max_size=12), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00", b"\x88\xa8"]),
              ip_like).map(lambda t: t[0] + t[1] + t[2]),
    mutated(SAMPLES_ETH),
)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ip_like)
def test_summarize_ip_never_raises(data: bytes) -> None:
    out = summarize_ip(data)
    assert isinstance(out, str) and out and "\n" not in out
    assert summarize_ip(memoryview(bytearray(data))) == out


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(eth_like)
def test_summarize_ethernet_never_raises(data: bytes) -> None:
    out = summarize_ethernet(data)
    assert isinstance(out, str) and out and "\n" not in out
    assert summarize_ethernet(memoryview(bytearray(data))) == out


# ------------------------------------------------------------------ hexdump, time


def test_hexdump_layout() -> None:
    data = bytes(range(0x41, 0x41 + 17)) + b"\x00\xff"
    assert hexdump(data) == (
        "    0000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  ABCDEFGHIJKLMNOP\n"
        "    0010  51 00 ff                                          Q.."
    )
    assert hexdump(b"") == ""
    assert hexdump(memoryview(bytearray(b"a")), indent="") == "0000  61" + " " * 46 + "  a"


@given(st.binary(max_size=300))
def test_hexdump_round_trips(data: bytes) -> None:
    lines = hexdump(data).split("\n") if data else []
    assert len(lines) == (len(data) + 15) // 16
    back = bytes.fromhex("".join(line[10:58] for line in lines))
    assert back == data


def test_format_time_is_local_time_with_microseconds() -> None:
    ts = 1_700_000_000.25
    assert format_time(ts) == time.strftime("%H:%M:%S", time.localtime(1_700_000_000)) + ".250000"
    # Rounds like the pcap writer: 0.9999996 s is the next second.
    assert format_time(1_700_000_000.9999996) == time.strftime("%H:%M:%S", time.localtime(1_700_000_001)) + ".000000"
