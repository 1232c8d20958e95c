"""The capture reader (tuntap_cffi.capfile) against files tshark's tools wrote, and against tshark reading ours.

Two oracles: files written by editcap/mergecap (pcap, nanosecond pcap,
pcapng, pcapng with two interfaces of different link types and timestamp
units) must give back exactly the packets the test put in, with the
timestamps tshark reads; files built here for what those tools never write
(big-endian, Simple Packet Blocks, 2**-n resolution, if_tsoffset, blocks to
skip, a second section) are first read by tshark, and the reader must see
what tshark sees.  Truncated and corrupt files raise CaptureFormatError.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
from typing import List, Optional, Tuple

import pytest

from tuntest import ARP_REQUEST, ICMP_ECHO4, ICMP_ECHO6, MAC_A, MAC_B, ethernet, ipv4_udp, need
from tuntap_cffi.capfile import CaptureFormatError, CapturedPacket, linktype_name, read_capture
from tuntap_cffi.pcap import PcapWriter

T0 = 1_700_000_000
IP_PACKETS = [ipv4_udp("198.18.7.2", "198.18.7.1", 4000, 5000, b"packet %d" % i) for i in range(5)] + [ICMP_ECHO6]
IP_TIMES_NS = [T0 * 10**9 + i * 200_000_000 + 123_456_000 for i in range(len(IP_PACKETS))]
FRAMES = [ARP_REQUEST, ethernet(MAC_B, MAC_A, 0x0800, ICMP_ECHO4)]
FRAME_TIMES_NS = [T0 * 10**9 + 100_000_000, T0 * 10**9 + 300_000_000]


@pytest.fixture
def workdir(tmp_path: "os.PathLike[str]") -> str:
    return str(tmp_path)


def write_pcap(path: str, linktype: int, packets: List[bytes], times_ns: List[int]) -> None:
    with open(path, "wb") as f:
        w = PcapWriter(f, linktype)
        for data, ns in zip(packets, times_ns):
            w.write_packet(data, ns / 1e9)


def tshark_view(path: str) -> List[Tuple[Optional[int], int, int, int]]:
    """(time in ns, interface id, captured length, original length) of each packet, as tshark reads *path*.

    A Simple Packet Block has no time (None); a record without a time or an
    interface is not a packet (tshark shows a custom block as one) and is left out.
    """
    proc = subprocess.run([need("tshark"), "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.interface_id",
                           "-e", "frame.cap_len", "-e", "frame.len"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows: List[Tuple[Optional[int], int, int, int]] = []
    for line in proc.stdout.splitlines():
        when, iface, cap, orig = line.split("\t")
        if not iface and not when:
            continue
        seconds, _, fraction = when.partition(".")
        ns = int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9]) if when else None
        rows.append((ns, int(iface or 0), int(cap), int(orig)))  # (a pcap file has no interface ids)
    return rows


def read_all(path: str) -> List[CapturedPacket]:
    with open(path, "rb") as f:
        return list(read_capture(f))


def run_tool(*argv: str) -> None:
    proc = subprocess.run([need(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("form", ["pcap", "nsecpcap", "pcapng"])
def test_files_written_by_editcap(form: str, workdir: str) -> None:
    source = os.path.join(workdir, "source.pcap")
    write_pcap(source, 101, IP_PACKETS, IP_TIMES_NS)
    path = os.path.join(workdir, f"converted.{form}")
    run_tool("editcap", "-F", form, source, path)
    got = read_all(path)
    assert [p.data for p in got] == IP_PACKETS
    assert {p.linktype for p in got} == {101}
    assert [p.timestamp_ns for p in got] == IP_TIMES_NS
    assert [(t, 0, len(d), len(d)) for t, d in zip(IP_TIMES_NS, IP_PACKETS)] == tshark_view(path)


def test_pcapng_of_two_interfaces_written_by_mergecap(workdir: str) -> None:
    """mergecap: interface 0 RAW in microseconds, interface 1 Ethernet with if_tsresol 9 (from a nanosecond pcap)."""
    raw, frames, frames_ns = (os.path.join(workdir, n) for n in ("raw.pcap", "frames.pcap", "frames-ns.pcap"))
    write_pcap(raw, 101, IP_PACKETS, IP_TIMES_NS)
    times = [t + 789 for t in FRAME_TIMES_NS]  # nanoseconds a microsecond file could not hold
    write_pcap(frames, 1, FRAMES, FRAME_TIMES_NS)
    run_tool("editcap", "-F", "nsecpcap", frames, frames_ns)
    # editcap kept the microseconds; put the extra nanoseconds in by hand (the nsec pcap is native-endian).
    with open(frames_ns, "r+b") as f:
        data = bytearray(f.read())
        pos = 24
        for t in times:
            struct.pack_into("=I", data, pos + 4, t % 10**9)
            pos += 16 + struct.unpack_from("=I", data, pos + 8)[0]
        f.seek(0)
        f.write(data)
    merged = os.path.join(workdir, "merged.pcapng")
    run_tool("mergecap", "-F", "pcapng", "-w", merged, raw, frames_ns)
    got = read_all(merged)
    view = tshark_view(merged)
    assert [(p.timestamp_ns, p.interface, len(p.data), p.original_length) for p in got] == view
    assert sorted((p.timestamp_ns, p.linktype, p.data) for p in got) == sorted(
        [(t, 101, d) for t, d in zip(IP_TIMES_NS, IP_PACKETS)] + [(t, 1, d) for t, d in zip(times, FRAMES)])
    assert {p.interface: p.linktype for p in got} == {0: 101, 1: 1}


# ------------------------------------------- files built here, read by tshark first


def block(order: str, kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, snaplen: int = 0, tsresol: Optional[int] = None, tsoffset: Optional[int] = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order: str, interface: int, units: int, data: bytes, original: Optional[int] = None) -> bytes:
    return block(order, 6, struct.pack(order + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(data),
                                       len(data) if original is None else original) + data)


def spb(order: str, data: bytes, original: Optional[int] = None) -> bytes:
    """A Simple Packet Block: *data* is what the writer kept (its snaplen's worth), *original* the wire length."""
    return block(order, 3, struct.pack(order + "I", len(data) if original is None else original) + data)


def pcap_file(order: str, nanoseconds: bool, linktype: int, packets: List[Tuple[int, bytes]]) -> bytes:
    out = struct.pack(order + "IHHiIII", 0xA1B23C4D if nanoseconds else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for ns, data in packets:
        fraction = ns % 10**9 if nanoseconds else ns % 10**9 // 1000
        out += struct.pack(order + "IIII", ns // 10**9, fraction, len(data), len(data)) + data
    return out


def handmade_pcapng(order: str) -> bytes:
    """Two sections; 2**-20 and 10**-3 resolutions, an offset, SPBs, an ISB and a custom block to skip."""
    isb = block(order, 5, struct.pack(order + "III", 0, 0, 0))
    custom = block(order, 0xBAD, b"\x00\x00\x7f\xff" + b"ignored")
    first = (shb(order) + idb(order, 101, tsresol=0x80 | 20) + idb(order, 1, tsresol=3, tsoffset=T0)
             + epb(order, 0, (T0 << 20) + (1 << 19), IP_PACKETS[0])  # T0 + 0.5 s in 2**-20 units
             + isb + epb(order, 1, 250, FRAMES[0])  # 250 ms after the offset T0
             + custom + epb(order, 0, (T0 + 1) << 20, IP_PACKETS[1][:20], len(IP_PACKETS[1])))  # snapped
    second = shb(order) + idb(order, 229, snaplen=40) + spb(order, ICMP_ECHO6[:40], len(ICMP_ECHO6)) + spb(order, ICMP_ECHO6[:30])
    return first + second


def expected_handmade() -> List[Tuple[Optional[int], int, int, bytes, int]]:
    """(ns, interface, linktype, data, original length) of handmade_pcapng's packets."""
    return [
        (T0 * 10**9 + 500_000_000, 0, 101, IP_PACKETS[0], len(IP_PACKETS[0])),
        (T0 * 10**9 + 250_000_000, 1, 1, FRAMES[0], len(FRAMES[0])),
        ((T0 + 1) * 10**9, 0, 101, IP_PACKETS[1][:20], len(IP_PACKETS[1])),
        (None, 0, 229, ICMP_ECHO6[:40], len(ICMP_ECHO6)),  # an SPB is cut to the interface's snaplen
        (None, 0, 229, ICMP_ECHO6[:30], 30),
    ]


@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
def test_handmade_pcapng_reads_as_tshark_reads_it(order: str, workdir: str) -> None:
    path = os.path.join(workdir, "hand.pcapng")
    with open(path, "wb") as f:
        f.write(handmade_pcapng(order))
    got = read_all(path)
    assert [(p.timestamp_ns, p.interface, p.linktype, p.data, p.original_length) for p in got] == expected_handmade()
    assert [(p.timestamp_ns, p.interface, len(p.data), p.original_length) for p in got] == tshark_view(path)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("nanoseconds", [False, True], ids=["usec", "nsec"])
def test_pcap_of_either_byte_order_and_unit(order: str, nanoseconds: bool, workdir: str) -> None:
    times = [t + (789 if nanoseconds else 0) for t in IP_TIMES_NS]
    path = os.path.join(workdir, "hand.pcap")
    with open(path, "wb") as f:
        f.write(pcap_file(order, nanoseconds, 228 if nanoseconds else 101, list(zip(times, IP_PACKETS[:5]))))
    got = read_all(path)
    assert [(p.timestamp_ns, p.data) for p in got] == list(zip(times, IP_PACKETS[:5]))
    assert {p.linktype for p in got} == {228 if nanoseconds else 101}
    assert [(p.timestamp_ns, len(p.data)) for p in got] == [(t, c) for t, _, c, _ in tshark_view(path)]


def test_pcap_fcs_bits_of_the_link_type_are_not_the_link_type() -> None:
    data = pcap_file("<", False, 1 | 0x1 << 28 | 4 << 29, [(T0 * 10**9, FRAMES[0])])
    assert [p.linktype for p in read_capture(io.BytesIO(data))] == [1]


# ------------------------------------------------------------ truncated and corrupt


def boundaries(data: bytes, pcapng: bool) -> "set[int]":
    """The offsets at which a cut leaves a complete file (after the header / a whole block or record)."""
    ends = set()
    if pcapng:
        pos = 0
        while pos < len(data):
            pos += struct.unpack_from("<I", data, pos + 4)[0]
            ends.add(pos)
    else:
        pos = 24
        ends.add(pos)
        while pos < len(data):
            pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
            ends.add(pos)
    return ends


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_every_truncation_is_an_error_or_a_clean_prefix(kind: str) -> None:
    """Cut the file at every byte: a cut between records/blocks reads as a shorter file, any other is CaptureFormatError."""
    data = handmade_pcapng("<") if kind == "pcapng" else pcap_file("<", False, 101, list(zip(IP_TIMES_NS, IP_PACKETS)))
    whole = list(read_capture(io.BytesIO(data)))
    clean = boundaries(data, kind == "pcapng")
    for cut in range(1, len(data)):
        got: List[CapturedPacket] = []
        try:
            for p in read_capture(io.BytesIO(data[:cut])):
                got.append(p)
        except CaptureFormatError as exc:
            assert cut not in clean, f"cut at {cut}: {exc}"
            assert "byte" in str(exc)
        else:
            assert cut in clean, f"a file cut at byte {cut} read as complete ({len(got)} packets)"
        assert got == whole[: len(got)], f"cut at {cut}: a packet differs from the whole file's"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"GIF89a..", "not a pcap or pcapng capture"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 0, 1), "version 3"),
    (pcap_file("<", False, 101, [])[:24] + struct.pack("<IIII", T0, 0, 1 << 30, 64), "corrupt"),
    (shb("<")[:-4] + struct.pack("<I", 99), "lengths differ"),
    (shb("<") + epb("<", 0, 0, ICMP_ECHO4), "interface 0"),
    (shb("<") + spb("<", ICMP_ECHO4), "before any interface"),
    (shb("<") + struct.pack("<II", 6, 13) + bytes(8), "impossible length 13"),
    (shb("<") + idb("<", 101) + block("<", 6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + ICMP_ECHO4), "more than the block"),
    (shb("<") + idb("<", 101, tsresol=0x7F), "timestamp resolution"),
    (block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x11223344, 1, 0, -1)), "byte-order magic"),
])
def test_corrupt_files_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(CaptureFormatError, match=message):
        list(read_capture(io.BytesIO(data)))


def test_reads_from_a_pipe_in_small_pieces() -> None:
    """A pipe returns what it has: the reader asks again until a header or packet is whole."""

    class Dribble(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            chunk = self.data[self.pos : self.pos + min(size, 3)]
            self.pos += len(chunk)
            return chunk

    data = handmade_pcapng(">")
    assert list(read_capture(Dribble(data))) == list(read_capture(io.BytesIO(data)))  # type: ignore[arg-type]


def test_linktype_names() -> None:
    assert linktype_name(101) == "RAW (101)"
    assert linktype_name(1) == "EN10MB (1)"
    assert linktype_name(147) == "link type 147"
