"""The pcap writer: byte-exact against the libpcap savefile format, and read back by tshark."""

from __future__ import annotations

import array
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Iterator, List, Tuple

import pytest

from tuntest import ARP_REQUEST, ICMP_ECHO4, ICMP_ECHO6, IN_CI, MAC_A, MAC_B, ethernet, ipv4_udp, ipv6, udp
from tuntap_cffi.pcap import DEFAULT_SNAPLEN, LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

NATIVE = "<" if sys.byteorder == "little" else ">"


def parse(data: bytes) -> Tuple[Tuple[int, ...], List[Tuple[int, int, int, int, bytes]]]:
    """Split a pcap file written in this machine's byte order: (file header, records)."""
    header = struct.unpack(NATIVE + "IHHiIII", data[:24])
    records = []
    pos = 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack(NATIVE + "IIII", data[pos : pos + 16])
        records.append((sec, usec, incl, orig, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    assert pos == len(data), "trailing bytes after the last record"
    return header, records


def test_file_header_is_byte_exact() -> None:
    out = io.BytesIO()
    PcapWriter(out, LINKTYPE_RAW)
    # pcap-savefile(5): magic, version 2.4, thiszone, sigfigs, snaplen, linktype.
    expected = struct.pack(NATIVE + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)
    assert out.getvalue() == expected
    if sys.byteorder == "little":
        assert out.getvalue() == bytes.fromhex("d4c3b2a1 0200 0400 00000000 00000000 00000400 65000000")
    out = io.BytesIO()
    PcapWriter(out, LINKTYPE_ETHERNET, snaplen=1500)
    assert out.getvalue()[16:] == struct.pack(NATIVE + "II", 1500, 1)
    assert DEFAULT_SNAPLEN == 262144


def test_records_are_byte_exact() -> None:
    out = io.BytesIO()
    w = PcapWriter(out, LINKTYPE_RAW)
    w.write_packet(ICMP_ECHO4, 1_700_000_000.123456)
    w.write_packet(memoryview(bytearray(b"xx" + ICMP_ECHO6))[2:], 1_700_000_001.5)
    assert w.count == 2
    data = out.getvalue()
    rec1 = struct.pack(NATIVE + "IIII", 1_700_000_000, 123456, len(ICMP_ECHO4), len(ICMP_ECHO4)) + ICMP_ECHO4
    rec2 = struct.pack(NATIVE + "IIII", 1_700_000_001, 500000, len(ICMP_ECHO6), len(ICMP_ECHO6)) + ICMP_ECHO6
    assert data == data[:24] + rec1 + rec2
    if sys.byteorder == "little":
        assert rec1[:16] == bytes.fromhex("00f1536540e2010020000000 20000000".replace(" ", ""))


def test_snaplen_cuts_and_keeps_original_length() -> None:
    out = io.BytesIO()
    w = PcapWriter(out, LINKTYPE_RAW, snaplen=20)
    w.write_packet(ICMP_ECHO6, 10.0)
    w.write_packet(b"short", 11.0)
    _, recs = parse(out.getvalue())
    assert recs == [(10, 0, 20, len(ICMP_ECHO6), ICMP_ECHO6[:20]), (11, 0, 5, 5, b"short")]


@pytest.mark.parametrize("ts, expected", [
    (0.0, (0, 0)), (5.5, (5, 500000)), (1.9999996, (2, 0)), (1.0000004, (1, 0)),
    (1_700_000_000.000001, (1_700_000_000, 1)), (2**32 - 1.0, (2**32 - 1, 0)),
])
def test_timestamps_round_to_microseconds(ts: float, expected: Tuple[int, int]) -> None:
    out = io.BytesIO()
    PcapWriter(out, LINKTYPE_RAW).write_packet(b"p", ts)
    assert parse(out.getvalue())[1][0][:2] == expected


def test_default_timestamp_is_now() -> None:
    out = io.BytesIO()
    before = int(time.time())
    PcapWriter(out, LINKTYPE_RAW).write_packet(b"p")
    assert before <= parse(out.getvalue())[1][0][0] <= time.time() + 1


@pytest.mark.parametrize("data", [b"abcd", bytearray(b"abcd"), memoryview(b"abcd"), array.array("B", b"abcd"),
                                  memoryview(b"abcd").cast("I"), array.array("H", b"abcd")],
                         ids=["bytes", "bytearray", "memoryview", "array-B", "view-I", "array-H"])
def test_any_bytes_like_data(data: object) -> None:
    out = io.BytesIO()
    PcapWriter(out, LINKTYPE_RAW).write_packet(data, 1.0)  # type: ignore[arg-type]
    assert parse(out.getvalue())[1] == [(1, 0, 4, 4, b"abcd")]


@pytest.mark.parametrize("kwargs, exc", [
    ({"linktype": -1}, ValueError), ({"linktype": 2**28}, ValueError), ({"linktype": True}, TypeError),
    ({"linktype": "1"}, TypeError), ({"linktype": 1, "snaplen": 0}, ValueError),
    ({"linktype": 1, "snaplen": 2**31}, ValueError), ({"linktype": 1, "snaplen": 1.5}, TypeError),
    ({"linktype": 1, "flush": "yes"}, TypeError),
])
def test_bad_options_write_nothing(kwargs: dict, exc: type) -> None:  # type: ignore[type-arg]
    out = io.BytesIO()
    with pytest.raises(exc):
        PcapWriter(out, **kwargs)
    assert out.getvalue() == b""


@pytest.mark.parametrize("ts", [-1.0, -0.0000006, 2.0**32, float("inf"), float("-inf"), float("nan"), 10**400])
def test_bad_timestamp_writes_nothing(ts: float) -> None:
    out = io.BytesIO()
    w = PcapWriter(out, LINKTYPE_RAW)
    with pytest.raises(ValueError, match="cannot be stored"):  # ValueError as documented, never OverflowError
        w.write_packet(b"p", ts)
    assert len(out.getvalue()) == 24 and w.count == 0


@pytest.mark.parametrize("ts", ["1" * 300, b"1" * 300, [1] * 300, True, 1j])
def test_timestamp_of_wrong_type_is_refused_before_any_arithmetic(ts: object) -> None:
    out = io.BytesIO()
    w = PcapWriter(out, LINKTYPE_RAW)
    tracing = sys.implementation.name == "cpython"  # PyPy has no tracemalloc
    if tracing:
        import tracemalloc

        tracemalloc.start()
    try:
        with pytest.raises(TypeError, match="timestamp must be a number"):
            w.write_packet(b"p", ts)  # type: ignore[arg-type]
        if tracing:  # a 300-char str times 10**6 would have been ~286 MiB
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        if tracing:
            tracemalloc.stop()
    assert len(out.getvalue()) == 24 and w.count == 0


@pytest.mark.parametrize("data", [memoryview(b"abcdef")[::2], memoryview(array.array("H", range(6)))[::2]],
                         ids=["bytes-strided", "array-H-strided"])
def test_non_contiguous_data_writes_nothing(data: memoryview) -> None:
    out = io.BytesIO()
    w = PcapWriter(out, LINKTYPE_RAW)
    w.write_packet(b"before", 1.0)
    with pytest.raises(BufferError, match="C-contiguous"):
        w.write_packet(data, 2.0)
    w.write_packet(b"after", 3.0)  # the file still parses: no orphan record header
    assert [r[4] for r in parse(out.getvalue())[1]] == [b"before", b"after"] and w.count == 2


def test_closed_writer_refuses_packets_and_leaves_file_open() -> None:
    out = io.BytesIO()
    with PcapWriter(out, LINKTYPE_RAW) as w:
        w.write_packet(b"p", 1.0)
    assert w.closed and not out.closed
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write_packet(b"p", 2.0)
    assert len(parse(out.getvalue())[1]) == 1


class Trickle(io.RawIOBase):
    """A raw file that takes at most 3 bytes per write, as a pipe interrupted by signals may."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        chunk = bytes(memoryview(b).cast("B")[:3])  # type: ignore[arg-type]
        self.data += chunk
        return len(chunk)


def test_partial_writes_are_completed() -> None:
    raw = Trickle()
    w = PcapWriter(raw, LINKTYPE_RAW)  # type: ignore[arg-type]
    w.write_packet(ICMP_ECHO4, 3.25)
    expected = io.BytesIO()
    PcapWriter(expected, LINKTYPE_RAW).write_packet(ICMP_ECHO4, 3.25)
    assert bytes(raw.data) == expected.getvalue()


def test_pipe_gets_every_packet_at_once() -> None:
    r, wfd = os.pipe()
    os.set_blocking(r, False)
    with os.fdopen(r, "rb", buffering=0) as reader, os.fdopen(wfd, "wb") as pipe:
        w = PcapWriter(pipe, LINKTYPE_RAW)
        assert w.flushes
        assert len(reader.read(4096) or b"") == 24  # the header is there before any packet
        w.write_packet(ICMP_ECHO4, 1.0)
        got = reader.read(4096) or b""
        assert got[16:] == ICMP_ECHO4  # no close or flush by the caller needed


def test_regular_file_and_bytesio_are_buffered(tmp_path: "os.PathLike[str]") -> None:
    with open(os.path.join(tmp_path, "x.pcap"), "wb") as f:
        assert not PcapWriter(f, LINKTYPE_RAW).flushes
    assert not PcapWriter(io.BytesIO(), LINKTYPE_RAW).flushes
    assert PcapWriter(io.BytesIO(), LINKTYPE_RAW, flush=True).flushes


# ------------------------------------------------------------------ tshark


def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if IN_CI:
            pytest.fail("CI=true and tshark is missing (tests/run.sh installs it)")
        pytest.skip("tshark is not installed")
    return path


def tshark_fields(path: str, *fields: str) -> List[List[str]]:
    proc = subprocess.run(
        [tshark(), "-r", path, "-T", "fields", "-E", "separator=|", *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines()]


@pytest.fixture
def pcap_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="tt-pcap-")
    try:
        yield os.path.join(d, "capture.pcap")
    finally:
        shutil.rmtree(d)


def write_file(path: str, linktype: int, packets: List[Tuple[bytes, float]], snaplen: int = DEFAULT_SNAPLEN) -> None:
    with open(path, "wb") as f:
        w: PcapWriter
        with PcapWriter(f, linktype, snaplen=snaplen) as w:
            for data, ts in packets:
                w.write_packet(data, ts)


def test_tshark_reads_raw_ip_capture(pcap_path: str) -> None:
    tshark()
    udp6 = ipv6(17, udp(5353, 53, b"q" * 8))
    write_file(pcap_path, LINKTYPE_RAW, [
        (ICMP_ECHO4, 1_700_000_000.000001),
        (ICMP_ECHO6, 1_700_000_000.5),
        (ipv4_udp("198.18.7.1", "198.18.7.2", 4000, 9999, b"hello"), 1_700_000_001.25),
        (udp6, 1_700_000_002.999999),
    ])
    rows = tshark_fields(pcap_path, "frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                         "icmp.type", "icmpv6.type", "udp.dstport", "frame.time_epoch", "frame.len")
    assert [r[0] for r in rows] == ["raw:ip:icmp:data", "raw:ipv6:icmpv6:data", "raw:ip:udp:data", "raw:ipv6:udp:dns"]
    assert rows[0][1:3] == ["198.18.7.1", "198.18.7.2"] and rows[0][5] == "8"
    assert rows[1][3:5] == ["fd00:7474:7::1", "fd00:7474:7::2"] and rows[1][6] == "128"
    assert rows[2][1:3] == ["198.18.7.1", "198.18.7.2"] and rows[2][7] == "9999"
    assert rows[3][7] == "53"
    assert [r[8] for r in rows] == ["1700000000.000001000", "1700000000.500000000", "1700000001.250000000", "1700000002.999999000"]
    assert [int(r[9]) for r in rows] == [32, 104, 33, 56]


def test_tshark_reads_ethernet_capture(pcap_path: str) -> None:
    tshark()
    icmp_frame = ethernet(MAC_B, MAC_A, 0x0800, ICMP_ECHO4)
    write_file(pcap_path, LINKTYPE_ETHERNET, [(ARP_REQUEST, 1.0), (icmp_frame, 2.0)])
    rows = tshark_fields(pcap_path, "frame.protocols", "eth.src", "eth.dst", "arp.opcode",
                         "arp.src.proto_ipv4", "arp.dst.proto_ipv4", "ip.src", "ip.dst", "icmp.type")
    assert rows[0][:6] == ["eth:ethertype:arp", MAC_A, "ff:ff:ff:ff:ff:ff", "1", "198.18.7.1", "198.18.7.2"]
    assert rows[1][0] == "eth:ethertype:ip:icmp:data"
    assert rows[1][1:3] == [MAC_A, MAC_B] and rows[1][6:] == ["198.18.7.1", "198.18.7.2", "8"]


def test_tshark_sees_snaplen_cut(pcap_path: str) -> None:
    tshark()
    write_file(pcap_path, LINKTYPE_RAW, [(ICMP_ECHO6, 5.0)], snaplen=48)
    rows = tshark_fields(pcap_path, "frame.len", "frame.cap_len", "ipv6.dst")
    assert rows == [["104", "48", "fd00:7474:7::2"]]


class Sink:
    """A file that takes every write and keeps nothing."""

    def write(self, data: object) -> int:
        return memoryview(data).nbytes  # type: ignore[arg-type]

    def flush(self) -> None:
        pass


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="tracemalloc is CPython's")
def test_writing_packets_keeps_no_memory() -> None:
    import tracemalloc

    packet = memoryview(bytearray(ICMP_ECHO6))
    w = PcapWriter(Sink(), LINKTYPE_RAW, flush=True)  # type: ignore[arg-type]
    for _ in range(100):  # warm up caches
        w.write_packet(packet, 1_700_000_000.5)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20000):
            w.write_packet(packet, 1_700_000_000.5 + i)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert w.count == 20100
    assert grown < 4096, f"{grown} bytes kept after 20000 packets"
