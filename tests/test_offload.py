"""TUN offload packet logic: the virtio-net header, GSO split, GRO coalesce.

The pure tests check tuntap_cffi.offload against packets built and verified
here from the RFCs (``tuntest.checksum`` is RFC 1071 over struct-unpacked
words, independent of the module's bignum/array sums).  The device tests
hand the results to the kernel: split segments written to a TUN without
offloads must pass its own checksum checks (RSTs from a closed port, UDP
datagrams byte-exact at a socket), coalesced super-packets written with
TSO must carry a real TCP stream to a kernel socket, and the super-packets
the kernel itself sends with TSO must split into a byte-exact stream.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuntest import checksum, disable_ipv6, ip, ipv6_of, namespace, read_until, wait_ipv6_local
from tuntap_cffi import Device, PacketRing, open_tun
from tuntap_cffi import offload
from tuntap_cffi.offload import (
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VirtioNetHdr,
    gro_coalesce,
    gso_split,
    gso_split_frame,
    internet_checksum,
)

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
TCP, UDP = 6, 17
HDR = "<BBHHHH" if sys.byteorder == "little" else ">BBHHHH"  # tun: the host's byte order
A4, B4 = ipaddress.ip_address("198.18.0.2").packed, ipaddress.ip_address("198.18.0.1").packed
A6, B6 = ipaddress.ip_address("fd00:7474::2").packed, ipaddress.ip_address("fd00:7474::1").packed
TS_OPTION = b"\x01\x01\x08\x0a" + struct.pack("!II", 123456, 654321)  # NOP NOP timestamps: 12 bytes
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------- reference packets


def pseudo(version: int, src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The TCP/UDP pseudo-header (RFC 793/768 for IPv4, RFC 8200 section 8.1 for IPv6)."""
    if version == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp_header(sport: int, dport: int, seq: int, ack: int, flags: int, window: int = 65535, options: bytes = b"", urg: int = 0) -> bytes:
    assert len(options) % 4 == 0
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, (20 + len(options)) // 4 << 4, flags, window, 0, urg) + options


def udp_header(sport: int, dport: int, length: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, length, 0)


def ip_packet(version: int, src: bytes, dst: bytes, proto: int, l4: bytes, *, ident: int = 0, ttl: int = 64, tos: int = 0,
              df: bool = True, flow: int = 0, ext: bytes = b"", csum: str = "full") -> bytes:
    """An IPv4/IPv6 packet around transport bytes *l4* (checksum field zero).

    csum: "full" computes the transport checksum, "partial" stores the
    pseudo-header sum as the kernel does for NEEDS_CSUM, "none" leaves 0.
    *ext*: IPv6 destination-options header bytes (its next header is *proto*).
    """
    at = 16 if proto == TCP else 6
    if csum == "full":
        value = checksum(pseudo(version, src, dst, proto, len(l4)) + l4)
        if proto == UDP and value == 0:
            value = 0xFFFF
    elif csum == "partial":
        value = ~checksum(pseudo(version, src, dst, proto, len(l4))) & 0xFFFF
    else:
        value = 0
    l4 = l4[:at] + struct.pack("!H", value) + l4[at + 2 :]
    if version == 4:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ident & 0xFFFF, 0x4000 if df else 0, ttl, proto, 0, src, dst)
        return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + l4
    first = 6 << 28 | tos << 20 | flow
    return struct.pack("!IHBB16s16s", first, len(ext) + len(l4), 60 if ext else proto, ttl, src, dst) + ext + l4


def dest_options(next_header: int) -> bytes:
    """An 8-byte IPv6 destination-options header: one PadN option."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0])


def with_ipv4_options(pkt: bytes, options: bytes) -> bytes:
    """*pkt* (IPv4, no options) with IP *options* inserted, lengths and header checksum redone."""
    assert len(options) % 4 == 0
    ihl = 20 + len(options)
    head = bytes([0x40 | ihl // 4]) + pkt[1:2] + struct.pack("!H", len(pkt) + len(options)) + pkt[4:10] + b"\0\0" + pkt[12:20] + options
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + pkt[20:]


def addrs(version: int) -> Tuple[bytes, bytes]:
    return (A4, B4) if version == 4 else (A6, B6)


class Parsed:
    """The fields of an IPv4/IPv6 TCP/UDP packet, read with struct (test-side reference parser)."""

    def __init__(self, pkt: bytes) -> None:
        self.raw = pkt
        self.version = pkt[0] >> 4
        if self.version == 4:
            self.l4 = (pkt[0] & 15) * 4
            self.proto = pkt[9]
            self.total, self.ident = struct.unpack("!HH", pkt[2:6])
            assert self.total == len(pkt), "IPv4 total length"
            self.src, self.dst = pkt[12:16], pkt[16:20]
            self.fixed_ip = pkt[:2] + pkt[6:10] + pkt[12 : self.l4]  # all but length, ID, checksum
        else:
            assert struct.unpack("!H", pkt[4:6])[0] == len(pkt) - 40, "IPv6 payload length"
            nh, off = pkt[6], 40
            while nh == 60:
                nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
            self.l4, self.proto = off, nh
            self.src, self.dst = pkt[8:24], pkt[24:40]
            self.fixed_ip = pkt[:4] + pkt[6:off]
        t = self.l4
        if self.proto == TCP:
            self.sport, self.dport, self.seq, self.ack, doff, self.flags, self.window, self.csum, self.urg = struct.unpack("!HHIIBBHHH", pkt[t : t + 20])
            self.hl = t + (doff >> 4) * 4
            self.options = pkt[t + 20 : self.hl]
        else:
            self.sport, self.dport, self.udp_len, self.csum = struct.unpack("!HHHH", pkt[t : t + 8])
            self.hl = t + 8
        self.payload = pkt[self.hl :]

    def ip_valid(self) -> bool:
        return self.version == 6 or checksum(self.raw[: self.l4]) == 0

    def l4_valid(self) -> bool:
        if self.proto == UDP and (self.csum == 0 or self.udp_len != len(self.raw) - self.l4):
            return False
        return checksum(pseudo(self.version, self.src, self.dst, self.proto, len(self.raw) - self.l4) + self.raw[self.l4 :]) == 0


def super_packet(version: int, proto: int, payload: bytes, gso_size: int, *, seq: int = 1000, ack: int = 77, flags: int = ACK,
                 ident: int = 1, options: bytes = b"", ext: bytes = b"", hdr_len: Optional[int] = None, size: int = 10) -> Tuple[bytes, bytes]:
    """(virtio-net header, packet) as the kernel hands a GSO super-packet to a TUN reader."""
    src, dst = addrs(version)
    if proto == TCP:
        l4 = tcp_header(40000, 443, seq, ack, flags, options=options) + payload
        gso = VIRTIO_NET_HDR_GSO_TCPV4 if version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
        if flags & CWR:
            gso |= VIRTIO_NET_HDR_GSO_ECN
    else:
        l4 = udp_header(5353, 4789, 8 + len(payload)) + payload
        gso = VIRTIO_NET_HDR_GSO_UDP_L4
    if ext:
        ext = dest_options(proto)
    pkt = ip_packet(version, src, dst, proto, l4, ident=ident, ext=ext, csum="partial")
    start = (20 if version == 4 else 40) + len(ext)
    hl = start + len(l4) - len(payload)
    fields = (VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, hl if hdr_len is None else hdr_len, gso_size, start, 16 if proto == TCP else 6)
    hdr = struct.pack(HDR, *fields) + bytes(size - 10)
    return hdr, pkt


def ring_packets(ring: PacketRing) -> List[bytes]:
    return [bytes(p) for p in ring]


def seeded_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).getrandbits(8 * n).to_bytes(n, "little") if n else b""


# ------------------------------------------------------------------- checksums


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=0xFFFF * 8))
def test_checksum_implementations_agree_with_rfc1071(data: bytes, initial: int) -> None:
    expected = checksum(struct.pack("!H", initial % 0xFFFF) + data)  # the partial sum as one more word
    nonzero = any(data) or initial % 0xFFFF
    view = memoryview(bytearray(data))
    for sum16 in (offload._sum16_int, offload._sum16_array):  # both, on both interpreters
        ours = -(initial + sum16(data)) % 0xFFFF
        # All-zero input is the one place the two zeros of ones' complement differ: +0 here, -0 there.
        assert ours == expected if nonzero else (ours, expected) == (0, 0xFFFF)
        assert sum16(view) == sum16(data) and sum16(view[1:]) == sum16(data[1:])
    if nonzero:
        assert internet_checksum(data, initial) == expected
    # A buffer with its own checksum appended (even length) checksums to zero.
    even = data + b"\0" * (len(data) & 1)
    assert internet_checksum(even + struct.pack("!H", checksum(even))) in (0, 0xFFFF)


def test_checksum_choice_matches_interpreter() -> None:
    expected = offload._sum16_array if sys.implementation.name == "pypy" else offload._sum16_int
    assert offload._sum16 is expected


# ------------------------------------------------------------------ the header


header_fields = st.tuples(*(st.integers(0, 255) for _ in range(2)), *(st.integers(0, 0xFFFF) for _ in range(4)))


@given(header_fields, st.integers(0, 0xFFFF), st.sampled_from([10, 12]))
def test_header_round_trips(fields: Tuple[int, ...], num_buffers: int, size: int) -> None:
    buf = bytearray(size + 5)
    hdr = VirtioNetHdr(buf, size)
    names = ("flags", "gso_type", "hdr_len", "gso_size", "csum_start", "csum_offset")
    for name, value in zip(names, fields):
        setattr(hdr, name, value)
    if size == 12:
        hdr.num_buffers = num_buffers
    packed = struct.pack(HDR, *fields) + (struct.pack(HDR[0] + "H", num_buffers) if size == 12 else b"")
    assert bytes(buf[:size]) == packed and bytes(buf[size:]) == bytes(5)  # in place, nothing past it
    assert bytes(hdr) == packed and hdr.unpack() == fields and hdr.size == size
    again = VirtioNetHdr(bytes(packed), size)  # read-only view
    assert [getattr(again, n) for n in names] == list(fields) and again == hdr
    assert f"gso_size={fields[3]}" in repr(again)
    fresh = VirtioNetHdr(size=size)
    fresh.set(*fields)
    assert fresh.unpack() == fields
    if size == 12:
        assert again.num_buffers == num_buffers and fresh.num_buffers == 0
    with pytest.raises(TypeError):
        again.gso_size = 1  # read-only buffer
    fresh.set()
    assert bytes(fresh) == bytes(size)


def test_header_argument_errors() -> None:
    with pytest.raises(ValueError):
        VirtioNetHdr(bytearray(9))
    with pytest.raises(ValueError):
        VirtioNetHdr(bytearray(20), 11)
    with pytest.raises(ValueError):
        VirtioNetHdr(bytearray(11), 12)
    with pytest.raises(TypeError):
        VirtioNetHdr("0123456789")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        VirtioNetHdr(bytearray(10), 10.0)  # type: ignore[arg-type]
    hdr = VirtioNetHdr()
    with pytest.raises(ValueError):
        hdr.flags = 256
    with pytest.raises(ValueError):
        hdr.gso_size = -1
    with pytest.raises(ValueError):
        hdr.csum_start = 0x10000
    with pytest.raises(TypeError):
        hdr.hdr_len = True
    with pytest.raises(AttributeError):
        hdr.num_buffers
    with pytest.raises(ValueError):
        hdr.set(gso_size=1 << 16)
    assert bytes(hdr) == bytes(10)  # nothing was half-set
    arr = VirtioNetHdr(memoryview(bytearray(12)).cast("H"), 12)  # any C-contiguous buffer
    arr.num_buffers = 7
    assert arr.num_buffers == 7


@given(header_fields, st.integers(0, 70000))
def test_header_check_accepts_exactly_the_consistent_ones(fields: Tuple[int, ...], length: int) -> None:
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = fields
    kind = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    valid = (
        not flags & ~7
        and kind in (0, 1, 3, 4, 5)
        and (not gso_type & VIRTIO_NET_HDR_GSO_ECN or kind in (1, 4))
        and (not flags & 1 or csum_start + csum_offset + 2 <= length)
        and hdr_len <= length
        and (kind == 0 or gso_size > 0)
    )
    hdr = VirtioNetHdr(struct.pack(HDR, *fields))
    if valid:
        hdr.check(length)
    else:
        with pytest.raises(ValueError):
            hdr.check(length)


@pytest.mark.parametrize(
    "fields, why",
    [
        ((1, 0, 0, 0, 30, 16), "checksum field past the end"),
        ((1, 0, 0, 0, 20, 19), "checksum field straddles the end"),
        ((0, 1, 41, 100, 0, 0), "hdr_len past the end"),
        ((0, 1, 0, 0, 0, 0), "GSO with gso_size 0"),
        ((0, 2, 0, 10, 0, 0), "unknown GSO type"),
        ((0, 0x85, 0, 10, 0, 0), "ECN with UDP"),
        ((8, 0, 0, 0, 0, 0), "unknown flag"),
    ],
)
def test_header_check_table(fields: Tuple[int, ...], why: str) -> None:
    hdr = VirtioNetHdr(struct.pack(HDR, *fields))
    with pytest.raises(ValueError):
        hdr.check(40)
    ring = PacketRing(4, 100)
    with pytest.raises(ValueError):
        gso_split(bytes(40), hdr, ring)
    assert ring.count == 0, why


# ---------------------------------------------------------------- GSO split


def check_segments(segments: List[bytes], hdr: bytes, pkt: bytes) -> None:
    """Every segment of split(hdr, pkt) is right by the reference parser."""
    flags, gso_type, _hdr_len, gso_size, _start, _off = struct.unpack(HDR, hdr[:10])
    whole = Parsed(pkt)
    payload = whole.payload
    nseg = -(-len(payload) // gso_size)
    assert len(segments) == nseg
    assert b"".join(Parsed(s).payload for s in segments) == payload
    for i, raw in enumerate(segments):
        seg = Parsed(raw)
        assert len(seg.payload) == min(gso_size, len(payload) - i * gso_size)
        assert seg.hl == whole.hl and seg.fixed_ip == whole.fixed_ip
        assert seg.ip_valid() and seg.l4_valid(), f"segment {i}: bad checksum"
        assert (seg.sport, seg.dport) == (whole.sport, whole.dport)
        if seg.version == 4:
            assert seg.ident == (whole.ident + i) & 0xFFFF
        if seg.proto == TCP:
            assert seg.seq == (whole.seq + i * gso_size) & 0xFFFFFFFF
            assert (seg.ack, seg.window, seg.urg, seg.options) == (whole.ack, whole.window, whole.urg, whole.options)
            expect = whole.flags
            if i > 0:
                expect &= ~CWR
            if i < nseg - 1:
                expect &= ~(FIN | PSH)
            assert seg.flags == expect
        else:
            assert seg.udp_len == len(raw) - seg.l4


@FAST
@given(st.data())
def test_split_property(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([4, 6]), "version")
    proto = data.draw(st.sampled_from([TCP, UDP]), "proto")
    n = data.draw(st.one_of(st.integers(1, 3000), st.integers(3000, 65000)), "payload")
    headers = 20 + 60 + 8 if version == 4 else 40 + 60 + 8
    n = min(n, 65535 - headers)
    payload = seeded_bytes(data.draw(st.integers(0, 2**32), "seed"), n)
    gso_size = data.draw(st.integers(max(1, -(-n // 60)), n + 50), "gso_size")
    flags = ACK | data.draw(st.sampled_from([0, PSH, FIN, PSH | FIN, CWR, CWR | PSH, ECE]), "flags")
    options = data.draw(st.sampled_from([b"", TS_OPTION, b"\x01" * 40]), "options")
    seq = data.draw(st.sampled_from([0, 1000, 0xFFFFFFFF - 3000, 0xFFFFFFFF]), "seq")
    ident = data.draw(st.sampled_from([0, 1, 0xFFFF, 0xFFF0]), "ident")
    ext = version == 6 and data.draw(st.booleans(), "ext")
    size = data.draw(st.sampled_from([10, 12]), "size")
    hdr, pkt = super_packet(version, proto, payload, gso_size, seq=seq, flags=flags, ident=ident, options=options if proto == TCP else b"",
                            ext=b"x" if ext else b"", size=size)
    # hdr_len is not trusted: whatever the kernel put there (0, the whole linear part) gives the same result.
    bogus = data.draw(st.sampled_from([None, 0, len(pkt)]), "hdr_len")
    if bogus is not None:
        hdr = hdr[:2] + struct.pack(HDR[0] + "H", bogus) + hdr[4:]
    hl = Parsed(pkt).hl
    ring = PacketRing(64, hl + min(gso_size, n))  # exactly big enough
    ring.count = 1  # segments are appended after what is there
    ring.set_length(0, 1)
    count = gso_split_frame(hdr + pkt, ring, size)
    assert count == -(-n // gso_size) and ring.count == count + 1
    check_segments(ring_packets(ring)[1:], hdr, pkt)
    ring.close()


def test_split_table() -> None:
    payload = bytes(range(256)) * 2
    ring = PacketRing(16, 2048)
    # TCPv4: 512 bytes in 200-byte segments -> 200, 200, 112 (wireguard-go's table style)
    hdr, pkt = super_packet(4, TCP, payload, 200, seq=5, ident=9, flags=ACK | PSH)
    assert gso_split(pkt, VirtioNetHdr(hdr), ring) == 3
    segs = [Parsed(s) for s in ring_packets(ring)]
    assert [len(s.raw) for s in segs] == [240, 240, 152]
    assert [s.seq for s in segs] == [5, 205, 405] and [s.ident for s in segs] == [9, 10, 11]
    assert [s.flags for s in segs] == [ACK, ACK, ACK | PSH]
    assert all(s.ip_valid() and s.l4_valid() for s in segs)
    # UDP over IPv6: lengths per segment
    ring.clear()
    hdr, pkt = super_packet(6, UDP, payload, 500)
    assert gso_split(pkt, VirtioNetHdr(hdr), ring) == 2
    segs = [Parsed(s) for s in ring_packets(ring)]
    assert [s.udp_len for s in segs] == [508, 20] and all(s.l4_valid() for s in segs)
    # IPv4 options are copied into every segment
    ring.clear()
    hdr, pkt = super_packet(4, TCP, payload, 300, ident=0xFFFF)
    pkt = with_ipv4_options(pkt, b"\x94\x04\x00\x00")  # Router Alert
    hdr = hdr[:6] + struct.pack(HDR[0] + "H", 24) + hdr[8:]  # csum_start follows the longer header
    assert gso_split(pkt, VirtioNetHdr(hdr), ring) == 2
    check_segments(ring_packets(ring), hdr, pkt)
    assert all(bytes(s[20:24]) == b"\x94\x04\x00\x00" for s in ring)
    # payload <= gso_size: one packet, checksum completed, flags untouched
    ring.clear()
    hdr, pkt = super_packet(4, TCP, payload, 1448, flags=ACK | FIN | CWR)
    assert gso_split(pkt, VirtioNetHdr(hdr), ring) == 1
    one = Parsed(bytes(ring[0]))
    assert one.flags == ACK | FIN | CWR and one.l4_valid() and one.payload == payload
    ring.close()


def test_split_non_gso_completes_the_checksum() -> None:
    ring = PacketRing(4, 2048)
    for version, proto in itertools.product((4, 6), (TCP, UDP)):
        src, dst = addrs(version)
        l4 = (tcp_header(1, 2, 3, 4, ACK) if proto == TCP else udp_header(1, 2, 8 + 300)) + seeded_bytes(version + proto, 300)
        partial = ip_packet(version, src, dst, proto, l4, csum="partial")
        full = ip_packet(version, src, dst, proto, l4, csum="full")
        start = 20 if version == 4 else 40
        hdr = VirtioNetHdr(struct.pack(HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, start, 16 if proto == TCP else 6))
        ring.clear()
        assert gso_split(partial, hdr, ring) == 1
        assert bytes(ring[0]) == full
        assert gso_split(full, VirtioNetHdr(struct.pack(HDR, VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0)), ring) == 1
        assert bytes(ring[1]) == full  # nothing to do: copied as is
    # A UDP checksum that folds to 0 goes out as 0xFFFF (0 would mean "no checksum").
    udp = bytearray(udp_header(1, 2, 48) + seeded_bytes(1, 40))
    fix = checksum(pseudo(4, A4, B4, UDP, 48) + bytes(udp))  # make the true sum 0xFFFF: add the checksum as data
    udp[-2:] = struct.pack("!H", (struct.unpack("!H", udp[-2:])[0] + fix) % 0xFFFF)
    pkt = ip_packet(4, A4, B4, UDP, bytes(udp), csum="partial")
    ring.clear()
    gso_split(pkt, VirtioNetHdr(struct.pack(HDR, 1, 0, 0, 0, 20, 6)), ring)
    assert Parsed(bytes(ring[0])).csum == 0xFFFF and Parsed(bytes(ring[0])).l4_valid()
    ring.close()


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda h, p: (h[:6] + struct.pack("<H", 24) + h[8:], p), "csum_start is not the TCP header"),
        (lambda h, p: (h[:8] + struct.pack("<H", 6) + h[10:], p), "csum_offset is not the TCP checksum"),
        (lambda h, p: (h[:1] + bytes([VIRTIO_NET_HDR_GSO_TCPV6]) + h[2:], p), "TCPV6 on an IPv4 packet"),
        (lambda h, p: (h[:1] + bytes([VIRTIO_NET_HDR_GSO_UDP_L4]) + h[2:], p), "UDP_L4 on a TCP packet"),
        (lambda h, p: (h[:1] + bytes([VIRTIO_NET_HDR_GSO_UDP]) + h[2:], p), "UFO"),
        (lambda h, p: (h, p[:2] + struct.pack("!H", len(p) + 1) + p[4:]), "IPv4 total length past the end"),
        (lambda h, p: (h, bytes([0x44]) + p[1:]), "IPv4 header length 16"),
        (lambda h, p: (h, p[:6] + b"\x20\x00" + p[8:]), "IPv4 fragment"),
        (lambda h, p: (h, p[:32] + bytes([0x40]) + p[33:]), "TCP header length 16"),
        (lambda h, p: (h, p[:32] + bytes([0xF0]) + p[33:50]), "TCP header past the end"),
        (lambda h, p: (h, p[:40]), "no payload"),
        (lambda h, p: (h, bytes([0x75]) + p[1:]), "IP version 7"),
    ],
)
def test_split_refuses_malformed(mutate: object, why: str) -> None:
    hdr, pkt = super_packet(4, TCP, bytes(3000), 1000)
    h, p = mutate(bytearray(hdr), bytearray(pkt))  # type: ignore[operator]
    ring = PacketRing(8, 2048)
    with pytest.raises(ValueError):
        gso_split(bytes(p), VirtioNetHdr(bytes(h)), ring)
    assert ring.count == 0, why


def test_split_ring_limits_and_types() -> None:
    hdr, pkt = super_packet(6, TCP, bytes(5000), 1000)
    small = PacketRing(4, 2048)
    with pytest.raises(ValueError, match="5 segments"):
        gso_split(pkt, VirtioNetHdr(hdr), small)
    narrow = PacketRing(8, 1000)
    with pytest.raises(ValueError, match="slots"):
        gso_split(pkt, VirtioNetHdr(hdr), narrow)
    assert small.count == narrow.count == 0
    with pytest.raises(TypeError):
        gso_split(pkt, VirtioNetHdr(hdr), [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gso_split(pkt, hdr, small)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gso_split("text", VirtioNetHdr(hdr), small)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gso_split(b"", VirtioNetHdr(hdr), small)
    full = PacketRing(1, 2048)
    full.count = 1
    full.set_length(0, 1)
    with pytest.raises(ValueError, match="full"):
        gso_split(pkt, VirtioNetHdr(bytes(10)), full)
    for r in (small, narrow, full):
        r.close()


# ---------------------------------------------------------------- GRO coalesce


def segment(version: int, seq: int, payload: bytes, *, flags: int = ACK, ident: int = 0, sport: int = 40000, ack: int = 77,
            ttl: int = 64, window: int = 65535, options: bytes = b"", dst: Optional[bytes] = None, flow: int = 0) -> bytes:
    src, d = addrs(version)
    l4 = tcp_header(sport, 443, seq, ack, flags, window=window, options=options) + payload
    return ip_packet(version, src, dst or d, TCP, l4, ident=ident, ttl=ttl, flow=flow)


def coalesce(packets: Sequence[bytes], size: int = 10, slot: int = 65535 + 12) -> List[Tuple[Tuple[int, ...], bytes]]:
    """gro_coalesce into a fresh ring: [(header fields, packet)]."""
    out = PacketRing(max(1, len(packets)), slot)
    try:
        n = gro_coalesce(packets, out, size)
        assert n == out.count
        return [(struct.unpack(HDR, bytes(f[:10])), bytes(f[size:])) for f in out]
    finally:
        out.close()


def expand(frames: List[Tuple[Tuple[int, ...], bytes]]) -> List[bytes]:
    """Split every coalesced frame back into packets (checksums completed)."""
    ring = PacketRing(512, 2048)
    for fields, pkt in frames:
        gso_split(pkt, VirtioNetHdr(struct.pack(HDR, *fields)), ring)
    result = ring_packets(ring)
    ring.close()
    return result


def expect_super(fields: Tuple[int, ...], pkt: bytes, gso_size: int) -> Parsed:
    """Assert *fields* describe *pkt* as a TSO super-packet the kernel accepts; return it parsed."""
    p = Parsed(pkt)
    flags, gso_type, hdr_len, size, start, off = fields
    assert flags == VIRTIO_NET_HDR_F_NEEDS_CSUM
    assert gso_type & ~VIRTIO_NET_HDR_GSO_ECN == (VIRTIO_NET_HDR_GSO_TCPV4 if p.version == 4 else VIRTIO_NET_HDR_GSO_TCPV6)
    assert (hdr_len, size, start, off) == (p.hl, gso_size, p.l4, 16)
    assert p.ip_valid()
    assert p.csum == ~checksum(pseudo(p.version, p.src, p.dst, TCP, len(pkt) - p.l4)) & 0xFFFF  # the pseudo-header sum
    return p


@pytest.mark.parametrize("version", [4, 6])
def test_coalesce_table(version: int) -> None:
    mss = 100
    data = seeded_bytes(version, 10 * mss)

    def seg(i: int, n: int = mss, **kw: object) -> bytes:
        return segment(version, 1000 + i * mss, data[i * mss : i * mss + n], ident=i, **kw)  # type: ignore[arg-type]

    zero = (0, 0, 0, 0, 0, 0)
    # three in a row -> one super-packet
    out = coalesce([seg(0), seg(1), seg(2)])
    assert len(out) == 1
    p = expect_super(out[0][0], out[0][1], mss)
    assert p.payload == data[: 3 * mss] and p.seq == 1000 and p.flags == ACK
    # PSH on the last is kept; PSH in the middle ends the run
    out = coalesce([seg(0), seg(1, flags=ACK | PSH), seg(2), seg(3)])
    assert len(out) == 2 and expect_super(out[0][0], out[0][1], mss).flags == ACK | PSH
    assert expect_super(out[1][0], out[1][1], mss).seq == 1000 + 2 * mss
    # FIN too ends it, on the last segment
    out = coalesce([seg(0), seg(1, flags=ACK | FIN)])
    assert len(out) == 1 and expect_super(*out[0], mss).flags == ACK | FIN
    # a head with PSH cannot take more
    assert [f for f, _ in coalesce([seg(0, flags=ACK | PSH), seg(1)])] == [zero, zero]
    # CWR starts a run (GSO_ECN) but cannot join one
    out = coalesce([seg(0, flags=ACK | CWR), seg(1), seg(2, flags=ACK | CWR)])
    assert len(out) == 2 and out[0][0][1] & VIRTIO_NET_HDR_GSO_ECN and out[1][0] == zero
    assert expect_super(*out[0], mss).flags == ACK | CWR
    # a sequence gap, another ack, window, TTL or option value: no merge
    for other in (seg(2), seg(1, ack=78), seg(1, window=1000), seg(1, ttl=63), seg(1, options=TS_OPTION)):
        assert [f for f, _ in coalesce([seg(0), other])] == [zero, zero]
    # a shorter segment ends the run; a longer one cannot follow
    out = coalesce([seg(0), seg(1, n=50), seg(2)])
    assert len(out) == 2 and Parsed(out[0][1]).payload == data[:150] and out[1][0] == zero
    assert [f for f, _ in coalesce([seg(0, n=50), segment(version, 1050, data[:100], ident=1)])] == [zero, zero]
    # pure ACKs and SYN/RST/URG segments pass through
    for other in (seg(1, n=0), seg(1, flags=ACK | SYN), seg(1, flags=ACK | RST), seg(1, flags=ACK | URG), seg(1, flags=PSH)):
        assert len(coalesce([seg(0), other])) == 2
    # a bad checksum in the middle passes through unmerged, and ends the run before it
    bad = bytearray(seg(1))
    bad[-1] ^= 0xFF
    out = coalesce([seg(0), bytes(bad), seg(2), seg(3)])
    assert [f for f, _ in out[:2]] == [zero, zero] and out[1][1] == bytes(bad)
    assert expect_super(*out[2], mss).payload == data[2 * mss : 4 * mss]
    # two interleaved flows -> two super-packets, each in its first segment's place
    b = [segment(version, 5000 + i * mss, data[i * mss : (i + 1) * mss], sport=40001, ident=100 + i) for i in range(3)]
    out = coalesce([seg(0), b[0], seg(1), b[1], seg(2), b[2]])
    assert len(out) == 2
    assert expect_super(*out[0], mss).sport == 40000 and expect_super(*out[1], mss).sport == 40001
    # UDP and others pass through with a zero header, unchanged
    udp = ip_packet(version, *addrs(version), UDP, udp_header(1, 2, 108) + data[:100])
    out = coalesce([udp, seg(0), seg(1)])
    assert out[0] == (zero, udp) and len(out) == 2


def test_coalesce_ipv4_specifics() -> None:
    data = seeded_bytes(4, 1000)
    zero = (0, 0, 0, 0, 0, 0)

    def seg(i: int, ident: int = 0) -> bytes:
        return segment(4, i * 100, data[i * 100 : (i + 1) * 100], ident=ident)

    # IDs: consecutive (with wrap-around) merge; a jump does not; all equal with DF merge (the kernel renumbers)
    assert len(coalesce([seg(0, ident=0xFFFF), seg(1, ident=0), seg(2, ident=1)])) == 1
    assert len(coalesce([seg(0, ident=5), seg(1, ident=7)])) == 2
    assert len(coalesce([seg(0, ident=5), seg(1, ident=5), seg(2, ident=5)])) == 1
    assert len(coalesce([seg(0, ident=5), seg(1, ident=5), seg(2, ident=6)])) == 2
    # IPv4 options: not coalesced
    with_options = with_ipv4_options(seg(0), b"\x01\x01\x01\x00")
    assert Parsed(with_options).ip_valid() and Parsed(with_options).l4_valid()
    assert [f for f, _ in coalesce([with_options, seg(1, ident=1)])] == [zero, zero]
    # a bad IPv4 header checksum is not laundered
    bad = bytearray(seg(1, ident=1))
    bad[10] ^= 1
    assert coalesce([seg(0), bytes(bad)])[1] == (zero, bytes(bad))
    # a fragment of the flow ends every run (its flow is unknown) and passes through
    frag = bytearray(seg(1, ident=1))
    frag[6] |= 0x20
    assert len(coalesce([seg(0), bytes(frag), seg(1, ident=1)])) == 3


def test_coalesce_respects_size_limits() -> None:
    mss = 1448
    data = seeded_bytes(7, 60 * mss)
    segs = [segment(4, i * mss, data[i * mss : (i + 1) * mss], ident=i) for i in range(60)]
    out = coalesce(segs)
    sizes = [len(p) for _, p in out]
    assert len(out) == 2 and max(sizes) <= 65535 and sizes[0] == 40 + 45 * mss  # 45 segments fit in 64 KiB
    assert b"".join(Parsed(p).payload for _, p in out) == data
    # smaller ring slots cap super-packets too
    out = coalesce(segs[:10], slot=10 + 40 + 3 * mss)
    assert [len(p) for _, p in out] == [40 + 3 * mss] * 3 + [40 + mss]


def test_coalesce_argument_errors() -> None:
    ring = PacketRing(2, 2000)
    pkt = segment(4, 0, b"x" * 10)
    with pytest.raises(ValueError, match="free"):
        gro_coalesce([pkt] * 3, ring)
    with pytest.raises(ValueError):
        gro_coalesce([pkt], ring, 11)
    with pytest.raises(TypeError):
        gro_coalesce([pkt], ring, 10.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gro_coalesce([pkt], [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        gro_coalesce([b""], ring)
    with pytest.raises(ValueError, match="does not fit"):
        gro_coalesce([bytes(1995)], ring)
    with pytest.raises(ValueError):
        gro_coalesce(ring, ring)
    with pytest.raises(TypeError):
        gro_coalesce(["text"], ring)  # type: ignore[list-item]
    assert ring.count == 0
    # a PacketRing as input, 12-byte headers, appended after what is there
    src = PacketRing(4, 2000)
    for i in range(3):
        s = segment(6, i * 10, bytes([i]) * 10, ident=i)
        src.slot(i)[: len(s)] = s
        src.set_length(i, len(s))
    src.count = 3
    ring.close()
    ring = PacketRing(4, 2000)
    ring.count = 1
    ring.set_length(0, 5)
    assert gro_coalesce(src, ring, 12) == 1 and ring.count == 2
    assert bytes(ring[1][:12]) == struct.pack(HDR + "H", 1, VIRTIO_NET_HDR_GSO_TCPV6, 60, 10, 40, 16, 0)
    ring.close()
    src.close()


@FAST
@given(st.data())
def test_coalesce_inverts_split(data: st.DataObject) -> None:
    """coalesce(split(x)) is x itself: the same bytes, and the header with hdr_len recomputed."""
    version = data.draw(st.sampled_from([4, 6]), "version")
    n = data.draw(st.one_of(st.integers(1, 4000), st.integers(4000, 65535 - 40 - 60)), "payload")
    payload = seeded_bytes(data.draw(st.integers(0, 2**32), "seed"), n)
    gso_size = data.draw(st.integers(max(1, -(-n // 60)), n + 10), "gso_size")
    flags = ACK | data.draw(st.sampled_from([0, PSH, FIN, CWR, CWR | PSH | FIN, ECE]), "flags")
    options = data.draw(st.sampled_from([b"", TS_OPTION]), "options")
    seq = data.draw(st.sampled_from([1, 0xFFFFFFFF - 2000, 0xFFFFFFFF]), "seq")
    ident = data.draw(st.sampled_from([3, 0xFFFF]), "ident")
    hdr, pkt = super_packet(version, TCP, payload, gso_size, seq=seq, flags=flags, ident=ident, options=options)
    ring = PacketRing(64, 2048 if gso_size < 1900 else 65535)
    count = gso_split(pkt, VirtioNetHdr(hdr), ring)
    out = coalesce(ring_packets(ring))
    ring.close()
    assert len(out) == 1
    fields, merged = out[0]
    if count == 1:  # nothing to merge: the packet, checksum completed
        assert fields == (0, 0, 0, 0, 0, 0) and Parsed(merged).l4_valid()
        assert merged[: Parsed(merged).l4 + 16] == pkt[: Parsed(pkt).l4 + 16]
    else:
        assert merged == pkt
        assert fields == struct.unpack(HDR, hdr[:10])


def random_batch(rnd: random.Random) -> Tuple[List[bytes], List[int]]:
    """A batch mixing TCP flows (runs, gaps, PSH, pure ACKs, corrupt segments, other TTLs) with UDP and other packets.

    Returns the packets and, per packet, whether it was corrupted (1) or not (0).
    """
    flows = []
    for f in range(rnd.randint(1, 4)):
        version = rnd.choice((4, 6))
        flows.append({"version": version, "sport": 1000 + f, "seq": rnd.getrandbits(32), "ident": rnd.getrandbits(16), "mss": rnd.choice((64, 100, 1448))})
    batch: List[bytes] = []
    bad: List[int] = []
    for _ in range(rnd.randint(1, 60)):
        kind = rnd.random()
        if kind < 0.15:
            version = rnd.choice((4, 6))
            if rnd.random() < 0.5:
                pkt = ip_packet(version, *addrs(version), UDP, udp_header(53, 53, 8 + 20) + seeded_bytes(rnd.getrandbits(30), 20))
            else:
                pkt = ip_packet(version, *addrs(version), 1, seeded_bytes(rnd.getrandbits(30), 30), csum="none") if version == 4 else \
                    ip_packet(6, A6, B6, 59, bytes(30), csum="none")
            batch.append(pkt)
            bad.append(0)
            continue
        fl = rnd.choice(flows)
        r = rnd.random()
        n = fl["mss"] if r < 0.7 else rnd.randint(0, fl["mss"])
        flags = ACK | (PSH if rnd.random() < 0.1 else 0) | (FIN if rnd.random() < 0.03 else 0)
        if rnd.random() < 0.05:
            fl["seq"] += rnd.randint(1, 5000)  # a gap
        pkt = segment(fl["version"], fl["seq"], seeded_bytes(rnd.getrandbits(30), n), flags=flags, ident=fl["ident"], sport=fl["sport"],
                      ttl=63 if rnd.random() < 0.05 else 64)
        fl["seq"] = (fl["seq"] + n) & 0xFFFFFFFF
        fl["ident"] = (fl["ident"] + 1) & 0xFFFF
        if n and rnd.random() < 0.05:
            corrupt = bytearray(pkt)
            corrupt[rnd.randrange(len(corrupt) - n, len(corrupt))] ^= 1 << rnd.randrange(8)
            pkt = bytes(corrupt)
            bad.append(1)
        else:
            bad.append(0)
        batch.append(pkt)
    return batch, bad


def flow_of(pkt: bytes) -> Tuple[object, ...]:
    """The test's flow key: TCP addresses and ports; every other packet in one bucket."""
    version = pkt[0] >> 4
    proto = pkt[9] if version == 4 else pkt[6]
    if proto != TCP:
        return ("other",)
    p = Parsed(pkt)
    return (p.src, p.dst, p.sport, p.dport)


@FAST
@given(st.randoms(use_true_random=False))
def test_coalesce_mixed_batches(rnd: random.Random) -> None:
    """Nothing lost, changed or reordered within a flow; corrupt and non-TCP packets pass through unchanged."""
    batch, bad = random_batch(rnd)
    out = coalesce(batch)
    assert len(out) <= len(batch)
    for (fields, pkt) in out:
        if fields == (0, 0, 0, 0, 0, 0):
            assert pkt in batch  # passed through unchanged
        else:
            expect_super(fields, pkt, fields[3])
    for pkt, is_bad in zip(batch, bad):
        if is_bad:
            assert ((0, 0, 0, 0, 0, 0), pkt) in out, "a corrupt segment was merged"
    # Splitting the output again gives back exactly the input, flow by flow, in order.
    again = expand(out)
    assert sorted(again) == sorted(batch)
    per_flow_in: Dict[Tuple[object, ...], List[bytes]] = {}
    per_flow_out: Dict[Tuple[object, ...], List[bytes]] = {}
    for pkts, table in ((batch, per_flow_in), (again, per_flow_out)):
        for pkt in pkts:
            table.setdefault(flow_of(pkt), []).append(pkt)
    assert per_flow_out == per_flow_in


def test_coalesce_merges_a_long_run_of_one_flow() -> None:
    """The mixed-batch property above also holds when merging is what happens (not only pass-through)."""
    batch = [segment(4, i * 1448, seeded_bytes(i, 1448), ident=i) for i in range(40)]
    out = coalesce(batch)
    assert len(out) == 1 and expand(out) == batch


# ------------------------------------------------------------- garbage in


mutations = st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4)


@FAST
@given(st.binary(min_size=10, max_size=12), st.binary(max_size=200), st.sampled_from([4, 6]), st.sampled_from([TCP, UDP]), mutations, st.integers(0, 4000))
def test_split_garbage_is_a_clean_value_error(raw_hdr: bytes, raw: bytes, version: int, proto: int, flips: List[Tuple[int, int]], cut: int) -> None:
    ring = PacketRing(64, 2048)
    try:
        for hdr, pkt in ((raw_hdr[:10], raw), super_packet(version, proto, bytes(range(200)) * 15, 100)):
            h, p = bytearray(hdr), bytearray(pkt)
            for at, x in flips:
                target = h if at % 5 == 0 or not p else p
                target[at % len(target)] ^= x
            p = p[: len(p) - cut % 50] if cut % 3 == 0 else p
            before = ring.count
            try:
                n = gso_split(bytes(p), VirtioNetHdr(bytes(h)), ring)
            except ValueError:
                assert ring.count == before
            else:
                assert ring.count == before + n and all(len(s) <= ring.slot_size for s in ring)
    finally:
        ring.close()


@FAST
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=20), st.randoms(use_true_random=False), mutations)
def test_coalesce_garbage_passes_through(garbage: List[bytes], rnd: random.Random, flips: List[Tuple[int, int]]) -> None:
    batch, _ = random_batch(rnd)
    mutated = []
    for i, pkt in enumerate(batch):
        if flips and i % 3 == 0:
            b = bytearray(pkt)
            for at, x in flips:
                b[at % len(b)] ^= x
            pkt = bytes(b)
        mutated.append(pkt)
    mixed = garbage + mutated
    rnd.shuffle(mixed)
    out = coalesce(mixed)
    assert len(out) <= len(mixed)
    assert sorted(expand(out)) == sorted(mixed)


# ------------------------------------------------------------- device tests


needs_device = pytest.mark.device
def tcp_csum_errors(ns: Optional[str]) -> int:
    """Tcp InCsumErrors of a network namespace, from its /proc/net/snmp."""
    argv = ["cat", "/proc/net/snmp"] if ns is None else ["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    names, values = [line.split()[1:] for line in text.splitlines() if line.startswith("Tcp:")]
    return int(values[names.index("InCsumErrors")])


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace (its own TCP counters), deleted afterwards."""
    with namespace("o") as name:
        yield name


def is_tcp(pkt: bytes, flags: int = 0) -> bool:
    if len(pkt) < 40:
        return False
    version = pkt[0] >> 4
    if version == 4 and pkt[9] == TCP or version == 6 and pkt[6] == TCP:
        return bool(Parsed(pkt).flags & flags == flags)
    return False


@needs_device
@pytest.mark.parametrize("version", [4, 6])
def test_split_segments_pass_the_kernels_checksum_checks(ifname: str, subnet: str, netns: str, version: int) -> None:
    """Each split segment to a closed port draws a RST; a corrupt one draws none and counts as a checksum error."""
    local, peer = (f"{subnet}.1", f"{subnet}.2") if version == 4 else (ipv6_of(subnet, 1), ipv6_of(subnet, 2))
    with open_tun(ifname) as dev:
        ip("link", "set", "dev", ifname, "netns", netns)
        ip("-n", netns, "addr", "add", f"{local}/{24 if version == 4 else 64}", "dev", ifname, *(["nodad"] if version == 6 else []))
        ip("-n", netns, "link", "set", ifname, "up")
        if version == 6:
            wait_ipv6_local(ifname, local, netns)
        src, dst = ipaddress.ip_address(peer).packed, ipaddress.ip_address(local).packed
        payload = seeded_bytes(version, 20 * 1000 + 321)
        l4 = tcp_header(45678, 9, 7777, 31337, ACK | PSH, options=TS_OPTION) + payload  # port 9: nothing listens in the fresh namespace
        pkt = ip_packet(version, src, dst, TCP, l4, ident=0xFFF0, csum="partial")
        l4off = 20 if version == 4 else 40
        gso = VIRTIO_NET_HDR_GSO_TCPV4 if version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
        hdr = VirtioNetHdr(struct.pack(HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, len(pkt), 1000, l4off, 16))  # hdr_len: the whole, untrusted
        ring = PacketRing(32, 1500)
        count = gso_split(pkt, hdr, ring)
        assert count == 21
        before = tcp_csum_errors(netns)
        assert dev.write_batch(ring) == count  # the ring goes to the device as it is
        resets = read_until(dev, lambda p: is_tcp(p, RST) and Parsed(p).dport == 45678, count)
        assert len(resets) == count, f"{len(resets)} RSTs for {count} segments"
        assert all(Parsed(r).seq == 31337 and r[0] >> 4 == version for r in resets)  # RST seq = our ack
        assert tcp_csum_errors(netns) == before, "the kernel counted a bad TCP checksum"
        # The control: one flipped payload bit, checksum left alone -> no RST, InCsumErrors + 1.
        bad = bytearray(ring_packets(ring)[0])
        struct.pack_into("!I", bad, l4off + 8, 4242)  # its own ack (a RST would say seq 4242), checksum not updated
        bad[-1] ^= 0x10
        assert not Parsed(bytes(bad)).l4_valid()
        assert dev.write(bytes(bad)) == len(bad)
        deadline = time.monotonic() + 3
        while tcp_csum_errors(netns) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tcp_csum_errors(netns) == before + 1
        assert read_until(dev, lambda p: is_tcp(p, RST) and Parsed(p).seq == 4242, timeout=0.3) == []


@needs_device
@pytest.mark.parametrize("version", [4, 6])
def test_uso_split_datagrams_arrive_byte_exact(ifname: str, subnet: str, version: int) -> None:
    local, peer = (f"{subnet}.1", f"{subnet}.2") if version == 4 else (ipv6_of(subnet, 1), ipv6_of(subnet, 2))
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with open_tun(ifname) as dev, socket.socket(family, socket.SOCK_DGRAM) as sock:
        if version == 4:
            disable_ipv6(ifname)
        ip("addr", "add", f"{local}/{24 if version == 4 else 64}", "dev", ifname, *(["nodad"] if version == 6 else []))
        dev.up()
        if version == 6:
            wait_ipv6_local(ifname, local)
        sock.bind((local, 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        gso_size = 1200
        payload = seeded_bytes(11, 9 * gso_size + 37)
        src, dst = ipaddress.ip_address(peer).packed, ipaddress.ip_address(local).packed
        pkt = ip_packet(version, src, dst, UDP, udp_header(4242, port, 8 + len(payload)) + payload, csum="partial")
        l4off = 20 if version == 4 else 40
        hdr = VirtioNetHdr(struct.pack(HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, l4off + 8, gso_size, l4off, 6))
        ring = PacketRing(16, 1500)
        assert gso_split(pkt, hdr, ring) == 10
        assert dev.write_batch(ring) == 10
        got = [sock.recvfrom(2000) for _ in range(10)]
        assert [d for d, _ in got] == [payload[i : i + gso_size] for i in range(0, len(payload), gso_size)]
        assert all(a[0] == peer and a[1] == 4242 for _, a in got)


class MiniTcp:
    """The TUN side of one TCP connection, just enough for bulk data in one direction (test helper)."""

    def __init__(self, dev: Device, version: int, me: str, kernel: str, my_port: int, kernel_port: int) -> None:
        self.dev, self.version = dev, version
        self.me, self.kernel = ipaddress.ip_address(me).packed, ipaddress.ip_address(kernel).packed
        self.my_port, self.kernel_port = my_port, kernel_port
        self.ident = 1
        self.vh = dev.vnet_hdr_size

    def packet(self, seq: int, ack: int, flags: int, payload: bytes = b"", options: bytes = b"", window: int = 65535) -> bytes:
        l4 = tcp_header(self.my_port, self.kernel_port, seq, ack, flags, window=window, options=options) + payload
        self.ident += 1
        return ip_packet(self.version, self.me, self.kernel, TCP, l4, ident=self.ident)

    def send(self, pkt: bytes) -> None:
        frame = bytes(self.vh) + pkt  # a zero header: a plain packet with its checksum done
        assert self.dev.write(frame) == len(frame)

    def mine(self, pkt: bytes) -> bool:
        return is_tcp(pkt) and Parsed(pkt).dport == self.my_port and Parsed(pkt).src == self.kernel


@needs_device
@pytest.mark.parametrize("version", [4, 6])
def test_coalesced_super_packets_carry_a_tcp_stream_into_the_kernel(ifname: str, subnet: str, version: int) -> None:
    """Our side of a TCP connection sends through gro_coalesce + TSO; the kernel socket receives the stream byte-exact."""
    local, peer = (f"{subnet}.1", f"{subnet}.2") if version == 4 else (ipv6_of(subnet, 1), ipv6_of(subnet, 2))
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    data = seeded_bytes(5, 400_000)
    with open_tun(ifname, vnet_hdr=True, offload=TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) as dev, socket.socket(family, socket.SOCK_STREAM) as srv:
        if version == 4:
            disable_ipv6(ifname)
        ip("addr", "add", f"{local}/{24 if version == 4 else 64}", "dev", ifname, *(["nodad"] if version == 6 else []))
        dev.up()
        if version == 6:
            wait_ipv6_local(ifname, local)
        srv.bind((local, 0))
        srv.listen(1)
        srv.settimeout(10)
        received = bytearray()

        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                while len(received) < len(data):
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    received.extend(chunk)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            tcp = MiniTcp(dev, version, peer, local, 40123, srv.getsockname()[1])
            isn = 1_000_000
            tcp.send(tcp.packet(isn, 0, SYN, options=struct.pack("!BBH", 2, 4, 1460)))  # MSS; no window scaling
            synack = Parsed(read_until(dev, lambda p: bool(tcp.mine(p) and Parsed(p).flags & SYN))[0])
            assert synack.flags & ACK and synack.ack == isn + 1
            rcv = synack.seq + 1
            una = nxt = isn + 1
            end = una + len(data)
            wnd = synack.window
            mss = 1448 if version == 4 else 1428
            out = PacketRing(64, 65535 + dev.vnet_hdr_size)
            supers = 0
            deadline = time.monotonic() + 30
            last_progress = time.monotonic()
            while una < end and time.monotonic() < deadline:
                limit = min(una + wnd, end)
                batch = []
                while nxt < limit:
                    n = min(mss, limit - nxt)
                    off = nxt - isn - 1
                    batch.append(tcp.packet(nxt, rcv, ACK | (PSH if nxt + n == end else 0), data[off : off + n]))
                    nxt += n
                if batch:
                    out.clear()
                    n = gro_coalesce(batch, out, dev.vnet_hdr_size)
                    supers += sum(frame[1] != VIRTIO_NET_HDR_GSO_NONE for frame in out)
                    assert dev.write_batch(out) == n
                for ack_pkt in read_until(dev, tcp.mine, timeout=0.5):
                    a = Parsed(ack_pkt)
                    if a.flags & ACK and a.ack > una:
                        una, wnd, last_progress = a.ack, a.window, time.monotonic()
                if time.monotonic() - last_progress > 1:
                    nxt = una  # nothing acknowledged for a while: go back (never seen here, but keeps the test honest)
                    last_progress = time.monotonic()
            server.join(10)
            tcp.send(tcp.packet(end, rcv, RST | ACK))
            assert una == end, f"acknowledged {una - isn - 1} of {len(data)} bytes"
            assert bytes(received) == data
            assert supers >= 2, "no super-packet was written: the test did not exercise coalescing"
        finally:  # whatever failed, no thread of this test outlives it (it would close fds under later tests)
            with contextlib.suppress(OSError):
                srv.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
            server.join(15)


@needs_device
@pytest.mark.parametrize("version", [4, 6])
def test_kernel_tso_super_packets_split_into_the_stream(ifname: str, subnet: str, version: int) -> None:
    """The kernel sends a TCP stream to the TUN with TSO on; splitting its super-packets gives valid segments and the exact stream."""
    local, peer = (f"{subnet}.1", f"{subnet}.2") if version == 4 else (ipv6_of(subnet, 1), ipv6_of(subnet, 2))
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    data = seeded_bytes(6, 600_000)
    with open_tun(ifname, vnet_hdr=True, offload=TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) as dev, socket.socket(family, socket.SOCK_STREAM) as cli:
        if version == 4:
            disable_ipv6(ifname)
        ip("addr", "add", f"{local}/{24 if version == 4 else 64}", "dev", ifname, *(["nodad"] if version == 6 else []))
        dev.up()
        if version == 6:
            wait_ipv6_local(ifname, local)
        cli.bind((local, 0))
        tcp = MiniTcp(dev, version, peer, local, 8080, cli.getsockname()[1])
        cli.setblocking(False)
        assert cli.connect_ex((peer, 8080)) in (115, 0)  # EINPROGRESS
        # The SYN comes with a partial checksum (TUN_F_CSUM): split completes it.
        ring = PacketRing(64, 2048)

        def read_frames(timeout: float) -> List[bytes]:
            buf = bytearray(dev.max_packet_size)
            got: List[bytes] = []
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    n = dev.readinto(buf)
                except BlockingIOError:
                    if got:
                        break
                    time.sleep(0.001)
                    continue
                got.append(bytes(buf[:n]))
            return got

        dev.blocking = False
        syn = None
        deadline = time.monotonic() + 5
        while syn is None and time.monotonic() < deadline:
            for frame in read_frames(0.5):
                ring.clear()
                gso_split_frame(frame, ring, dev.vnet_hdr_size)
                pkt = bytes(ring[0])
                if tcp.mine(pkt) and Parsed(pkt).flags & SYN:
                    syn = Parsed(pkt)
        assert syn is not None and syn.l4_valid()
        isn = 5_000_000
        tcp.send(tcp.packet(isn, syn.seq + 1, SYN | ACK, options=struct.pack("!BBH", 2, 4, 1460)))
        rcv_base = syn.seq + 1
        segments: Dict[int, bytes] = {}
        stream = bytearray()
        rcv_nxt = rcv_base

        def send_all() -> None:
            cli.setblocking(True)
            cli.sendall(data)

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        gso_frames = 0
        deadline = time.monotonic() + 30
        while rcv_nxt < rcv_base + len(data) and time.monotonic() < deadline:
            for frame in read_frames(0.2):
                hdr = VirtioNetHdr(frame, dev.vnet_hdr_size)
                ring.clear()
                gso_split_frame(frame, ring, dev.vnet_hdr_size)
                if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE:
                    gso_frames += 1
                for raw in ring:
                    seg = Parsed(bytes(raw))
                    if not tcp.mine(seg.raw):
                        continue
                    assert seg.ip_valid() and seg.l4_valid(), "a split segment has a bad checksum"
                    assert len(seg.raw) <= 1500
                    if seg.payload:
                        segments[seg.seq] = seg.payload
            while rcv_nxt in segments:
                chunk = segments.pop(rcv_nxt)
                stream += chunk
                rcv_nxt += len(chunk)
            tcp.send(tcp.packet(isn + 1, rcv_nxt, ACK))
        sender.join(5)
        tcp.send(tcp.packet(isn + 1, rcv_nxt, RST | ACK))
        assert rcv_nxt == rcv_base + len(data), f"received {rcv_nxt - rcv_base} of {len(data)} bytes"
        assert bytes(stream) == data
        assert gso_frames >= 1, "the kernel sent no super-packet: the test did not exercise the split of real TSO output"


# ------------------------------------------------ the 20- and 24-byte header forms


def test_header_forms_of_20_and_24_bytes() -> None:
    for size in (20, 24):
        buf = bytearray(size + 3)
        hdr = VirtioNetHdr(buf, size)
        hdr.set(1, 5, 42, 1000, 34, 6)
        hdr.num_buffers, hdr.hash_value, hdr.hash_report = 1, 0xDEADBEEF, 3
        # __le16 whatever the host: hash_value_lo, hash_value_hi, hash_report.
        assert bytes(buf[12:18]) == b"\xef\xbe\xad\xde\x03\x00"
        if size == 24:
            hdr.outer_th_offset, hdr.inner_nh_offset = 34, 64
            assert bytes(buf[20:24]) == b"\x22\x00\x40\x00"
            assert "outer_th_offset=34 inner_nh_offset=64" in repr(hdr)
        else:
            with pytest.raises(AttributeError, match="needs 24 bytes"):
                hdr.outer_th_offset
        assert "hash_value=0xdeadbeef hash_report=3" in repr(hdr) and bytes(buf[size:]) == bytes(3)
        assert hdr.unpack() == (1, 5, 42, 1000, 34, 6) and len(bytes(hdr)) == size
        hdr.set()  # everything after csum_offset too
        assert bytes(hdr) == bytes(size)
    small = VirtioNetHdr(bytearray(12), 12)
    for name in ("hash_value", "hash_report", "inner_nh_offset"):
        with pytest.raises(AttributeError):
            getattr(small, name)
    with pytest.raises(ValueError):
        VirtioNetHdr(bytearray(24), 24).hash_value = 1 << 32
    with pytest.raises(ValueError, match="10, 12, 20 or 24"):
        VirtioNetHdr(bytearray(30), 16)


TUNNEL4, TUNNEL6 = offload.VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, offload.VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6


@pytest.mark.parametrize("size, flags, gso, offsets, why", [
    (24, 1, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, (34, 64), None),
    (24, 1 | 8, VIRTIO_NET_HDR_GSO_TCPV6 | TUNNEL6, (54, 84), None),  # UDP_TUNNEL_CSUM goes with a tunnel
    (24, 1, VIRTIO_NET_HDR_GSO_TCPV4 | TUNNEL4 | TUNNEL6, (34, 64), "not both"),
    (24, 1, VIRTIO_NET_HDR_GSO_NONE | TUNNEL4, (34, 64), "TSO or USO packets only"),
    (24, 1, VIRTIO_NET_HDR_GSO_UDP | TUNNEL4, (34, 64), "TSO or USO packets only"),
    (24, 1, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, (0, 64), "do not fit"),
    (24, 1, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, (34, 40), "do not fit"),
    (24, 1, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, (34, 200), "do not fit"),
    (12, 1, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, (0, 0), "unknown gso_type"),
    (24, 1 | 8, VIRTIO_NET_HDR_GSO_UDP_L4, (0, 0), "unknown virtio-net header flags"),
])
def test_header_check_knows_the_tunnel_form(size: int, flags: int, gso: int, offsets: Tuple[int, int],
                                             why: Optional[str]) -> None:
    hdr = VirtioNetHdr(bytearray(size), size)
    hdr.set(flags, gso, 100, 1000, 90, 6)
    if size == 24:
        hdr.outer_th_offset, hdr.inner_nh_offset = offsets
    if why is None:
        hdr.check(200)
    else:
        with pytest.raises(ValueError, match=why):
            hdr.check(200)


@pytest.mark.parametrize("size", [20, 24])
def test_split_and_coalesce_take_the_larger_headers(size: int) -> None:
    payload = seeded_bytes(size, 3000)
    hdr10, pkt = super_packet(4, TCP, payload, 1000)
    ring10, ring = PacketRing(8, 2048), PacketRing(8, 2048)
    try:
        assert gso_split_frame(hdr10 + pkt, ring10) == 3
        assert gso_split_frame(hdr10 + bytes(size - 10) + pkt, ring, size) == 3
        segments = ring_packets(ring)
        assert segments == ring_packets(ring10)
        assert [len(f) for _, f in coalesce(segments, size)] == [len(pkt)]
        assert coalesce(segments, size) == coalesce(segments, 10)  # the same header fields and packet ...
        out = PacketRing(4, 65535 + size)
        assert gro_coalesce(segments, out, size) == 1
        assert bytes(out[0][10:size]) == bytes(size - 10)  # ... and zeros after them
        out.close()
    finally:
        ring10.close()
        ring.close()


def test_split_refuses_udp_tunnel_packets() -> None:
    hdr = VirtioNetHdr(bytearray(24), 24)
    _, pkt = super_packet(4, UDP, b"x" * 3000, 1000)
    hdr.set(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4 | TUNNEL4, 28, 1000, 20, 6)
    hdr.outer_th_offset, hdr.inner_nh_offset = 8, 16
    ring = PacketRing(8, 2048)
    try:
        with pytest.raises(ValueError, match="not split here"):
            gso_split(pkt, hdr, ring)
        assert ring.count == 0
    finally:
        ring.close()
