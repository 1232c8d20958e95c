"""`tuntap-cffi dump` for real: a subprocess on a real TUN/TAP, pinged by the system ping, checked against tshark."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Callable, Dict, Iterator, List, NamedTuple, Optional

import pytest

from tuntest import RUN_TAG, delete_link, ip, ipv6_of, namespace, need
from tuntap_cffi import __version__
from tuntap_cffi.decode import format_time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
CLI = [sys.executable, "-m", "tuntap_cffi"]
PEER_MAC = "02:00:5e:10:00:02"

# One printed packet line (see tuntap_cffi.decode for the formats).
LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{6}) (?:eth (\S+) > (\S+) len=(\d+) )?(?:(IPv4|IPv6) len=(\d+) (\S+) (\S+) > (\S+): |(ARP) )?(.*)$")
COUNT_LINE = re.compile(r"^(\d+) packets? captured")


class Packet(NamedTuple):
    time: str
    src_mac: Optional[str]
    dst_mac: Optional[str]
    version: Optional[str]  # "IPv4", "IPv6", or None (ARP, other)
    proto: Optional[str]  # "ICMP", "ICMPv6", "UDP", "ARP", ...
    src: Optional[str]  # without the port
    dst: Optional[str]
    rest: str
    line: str


def strip_port(endpoint: str, proto: str) -> str:
    if proto in ("TCP", "UDP", "UDPLite", "SCTP"):
        host = endpoint.rsplit(":", 1)[0]
        return host[1:-1] if host.startswith("[") else host
    return endpoint


def parse_lines(lines: List[str]) -> List[Packet]:
    """The packet lines of the CLI output (hexdump lines, which start with spaces, skipped)."""
    packets = []
    for line in lines:
        if line.startswith(" ") or not re.match(r"^\d\d:", line):
            continue
        m = LINE.match(line)
        assert m, f"unparsable line: {line!r}"
        when, smac, dmac, _flen, version, _plen, proto, src, dst, arp, rest = m.groups()
        if version:
            packets.append(Packet(when, smac, dmac, version, proto, strip_port(src, proto), strip_port(dst, proto), rest, line))
        else:
            packets.append(Packet(when, smac, dmac, None, arp, None, None, rest, line))
    return packets


class Dump:
    """A running `python -m tuntap_cffi dump ...`; threads collect its output as it comes."""

    def __init__(self, args: List[str], binary_stdout: bool = False, prefix: Optional[List[str]] = None) -> None:
        self.proc = subprocess.Popen([*(prefix or []), *CLI, "dump", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        self.out_lines: List[str] = []
        self.err_lines: List[str] = []
        self.out_bytes = bytearray()
        self._lock = threading.Lock()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump_bytes if binary_stdout else self._pump_lines, args=(self.proc.stdout, self.out_lines), daemon=True),
            threading.Thread(target=self._pump_lines, args=(self.proc.stderr, self.err_lines), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_lines(self, stream: "IO[bytes]", into: List[str]) -> None:
        for raw in stream:
            with self._lock:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _pump_bytes(self, stream: "IO[bytes]", _into: object) -> None:
        while True:
            chunk = stream.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                return
            with self._lock:
                self.out_bytes += chunk

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pumps drain what it wrote last
                with self._lock:
                    if predicate():
                        return
                raise AssertionError(f"dump exited ({self.proc.returncode}) before {what}:\n{self.transcript()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}:\n{self.transcript()}")

    def listening(self) -> str:
        """Wait for the 'listening on NAME' line; return NAME."""
        self.wait_for("the listening line", lambda: any("listening on" in line for line in self.err_lines))
        line = next(line for line in self.err_lines if "listening on" in line)
        return line.split("listening on ", 1)[1].split()[0]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Send *sig*, wait for the exit and for all output; return the exit code."""
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def packets(self, lines: Optional[List[str]] = None) -> List[Packet]:
        with self._lock:
            return parse_lines(list(self.out_lines if lines is None else lines))

    def transcript(self) -> str:
        return "stdout:\n" + "\n".join(self.out_lines) + "\nstderr:\n" + "\n".join(self.err_lines)


@pytest.fixture
def dumps() -> Iterator[Callable[..., Dump]]:
    """Start dump subprocesses; every one is killed at teardown, whatever happened."""
    started: List[Dump] = []

    def start(*args: str, binary_stdout: bool = False, prefix: Optional[List[str]] = None) -> Dump:
        d = Dump(list(args), binary_stdout, prefix)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="tt-cli-")
    try:
        yield d
    finally:
        shutil.rmtree(d)


def ping(*args: str) -> "subprocess.Popen[bytes]":
    """Start the system ping (no one answers: the echo requests are what the dump captures)."""
    return subprocess.Popen([need("ping"), "-n", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_pings(*pings: "subprocess.Popen[bytes]") -> None:
    for p in pings:
        try:
            p.wait(15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def tshark_rows(path: str, *fields: str, stdin: Optional[bytes] = None) -> List[Dict[str, str]]:
    cmd = [need("tshark"), "-r", "-" if stdin is not None else path, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return [dict(zip(fields, line.split("|"))) for line in proc.stdout.decode().splitlines()]


def count_line(d: Dump) -> int:
    matches = [COUNT_LINE.match(line) for line in d.err_lines]
    found = [int(m.group(1)) for m in matches if m]
    assert len(found) == 1, d.transcript()
    return found[0]


def echo_requests(packets: List[Packet], proto: str, dst: str) -> List[Packet]:
    return [p for p in packets if p.proto == proto and p.dst == dst and p.rest.startswith("echo request")]


IP_FIELDS = ("frame.protocols", "frame.len", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "icmp.type", "icmpv6.type")


def assert_lines_match_pcap(packets: List[Packet], rows: List[Dict[str, str]]) -> None:
    """Same number of packets, and packet by packet the same time, version and addresses."""
    assert len(packets) == len(rows), (packets, rows)
    for p, row in zip(packets, rows):
        assert p.time == format_time(float(row["frame.time_epoch"])), (p.line, row)
        layers = row["frame.protocols"].split(":")
        if p.version == "IPv4":
            assert "ip" in layers, (p.line, row)
            assert (row["ip.src"], row["ip.dst"]) == (p.src, p.dst), (p.line, row)
        elif p.version == "IPv6":
            assert "ipv6" in layers, (p.line, row)
            assert (row["ipv6.src"], row["ipv6.dst"]) == (p.src, p.dst), (p.line, row)


# ------------------------------------------------------------------ no device needed


def test_version() -> None:
    proc = subprocess.run([*CLI, "--version"], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"tuntap-cffi {__version__}\n"


def test_help_describes_every_option() -> None:
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert top.returncode == 0 and "dump" in top.stdout and "--version" in top.stdout
    proc = subprocess.run([*CLI, "dump", "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--tap", "--address", "--mtu", "--count", "--hex", "--pcap", "name"):
        assert re.search(rf"^\s+{option}\b.*\S", proc.stdout, re.M), f"{option} is not described:\n{proc.stdout}"
    assert "examples:" in proc.stdout and "wireshark -k -i -" in proc.stdout and "%d" in proc.stdout


@pytest.mark.parametrize("args, message", [
    ([], "COMMAND"),
    (["dump", "--address", "198.18.0.300/24"], "198.18.0.300/24"),
    (["dump", "--mtu", "20"], "68..65535"),
    (["dump", "--count", "0"], "outside"),
    (["dump", "bad/name"], "bad/name"),
    (["dump", "x" * 16], "15"),
    (["dump", "--frobnicate"], "--frobnicate"),
])
def test_usage_errors_exit_2_before_any_device(args: List[str], message: str) -> None:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_console_script_is_declared() -> None:
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        text = f.read()
    assert re.search(r'^\[project\.scripts\]\s*\ntuntap-cffi = "tuntap_cffi\.cli:main"$', text, re.M)
    from tuntap_cffi.cli import main

    assert callable(main)


# ------------------------------------------------------------------ real devices


@pytest.mark.device
def test_tun_ping_v4_and_v6_printed_and_in_pcap(ifname: str, subnet: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    need("tshark")
    a6_1, a6_2 = ipv6_of(subnet, 1), ipv6_of(subnet, 2)
    pcap = os.path.join(workdir, "tun.pcap")
    d = dumps(ifname, "--address", f"{subnet}.1/24", "--address", f"{a6_1}/64", "--pcap", pcap)
    assert d.listening() == ifname
    assert os.path.exists(f"/sys/class/net/{ifname}")
    run_pings(ping("-c", "3", "-i", "0.2", "-W", "1", f"{subnet}.2"), ping("-6", "-c", "3", "-i", "0.2", "-W", "1", a6_2))
    d.wait_for("3 + 3 echo requests", lambda: len(echo_requests(parse_lines(d.out_lines), "ICMP", f"{subnet}.2")) == 3
               and len(echo_requests(parse_lines(d.out_lines), "ICMPv6", a6_2)) == 3)
    assert d.stop() == 0, d.transcript()
    assert not os.path.exists(f"/sys/class/net/{ifname}"), "closing the device must remove the interface"

    packets = d.packets()
    assert count_line(d) == len(packets)
    v4 = echo_requests(packets, "ICMP", f"{subnet}.2")
    v6 = echo_requests(packets, "ICMPv6", a6_2)
    assert [(p.version, p.src) for p in v4] == [("IPv4", f"{subnet}.1")] * 3
    assert [(p.version, p.src) for p in v6] == [("IPv6", a6_1)] * 3
    assert [p.rest.split()[-1] for p in v4] == ["seq=1", "seq=2", "seq=3"]

    rows = tshark_rows(pcap, *IP_FIELDS)
    assert_lines_match_pcap(packets, rows)
    pinged4 = [r for r in rows if r["frame.protocols"].startswith("raw:ip:icmp") and r["icmp.type"] == "8"]
    pinged6 = [r for r in rows if r["frame.protocols"].startswith("raw:ipv6:icmpv6") and r["icmpv6.type"] == "128"]
    assert [(r["ip.src"], r["ip.dst"]) for r in pinged4] == [(f"{subnet}.1", f"{subnet}.2")] * 3
    assert [(r["ipv6.src"], r["ipv6.dst"]) for r in pinged6] == [(a6_1, a6_2)] * 3
    # Every line's length is the frame length.
    assert [int(m.group(1)) for m in (re.search(r" len=(\d+) ", p.line) for p in packets) if m] == [int(r["frame.len"]) for r in rows]


@pytest.mark.device
def test_tap_arp_and_icmp_frames(ifname: str, subnet: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    need("tshark")
    pcap = os.path.join(workdir, "tap.pcap")
    d = dumps(ifname, "--tap", "--address", f"{subnet}.1/24", "--pcap", pcap)
    assert d.listening() == ifname
    with open(f"/sys/class/net/{ifname}/address") as f:
        our_mac = f.read().strip()
    # An unknown neighbour: the kernel asks for it with ARP who-has.
    run_pings(ping("-c", "1", "-W", "1", f"{subnet}.2"))
    d.wait_for("the ARP request", lambda: any(f"ARP who-has {subnet}.2 tell {subnet}.1" in line for line in d.out_lines))
    # A known neighbour: the echo requests go out in Ethernet frames to its MAC.
    ip("neigh", "replace", f"{subnet}.3", "lladdr", PEER_MAC, "dev", ifname, "nud", "permanent")
    run_pings(ping("-c", "2", "-i", "0.2", "-W", "1", f"{subnet}.3"))
    d.wait_for("2 echo requests", lambda: len(echo_requests(parse_lines(d.out_lines), "ICMP", f"{subnet}.3")) == 2)
    assert d.stop() == 0, d.transcript()
    assert not os.path.exists(f"/sys/class/net/{ifname}")

    packets = d.packets()
    assert count_line(d) == len(packets)
    arps = [p for p in packets if p.proto == "ARP" and p.rest == f"who-has {subnet}.2 tell {subnet}.1"]
    assert arps and all((p.src_mac, p.dst_mac) == (our_mac, "ff:ff:ff:ff:ff:ff") for p in arps)
    pings = echo_requests(packets, "ICMP", f"{subnet}.3")
    assert [(p.src_mac, p.dst_mac, p.src) for p in pings] == [(our_mac, PEER_MAC, f"{subnet}.1")] * 2

    rows = tshark_rows(pcap, *IP_FIELDS, "eth.src", "eth.dst", "arp.opcode", "arp.src.proto_ipv4", "arp.dst.proto_ipv4")
    assert len(rows) == len(packets)
    for p, row in zip(packets, rows):
        assert p.time == format_time(float(row["frame.time_epoch"]))
        assert (row["eth.src"], row["eth.dst"]) == (p.src_mac, p.dst_mac), (p.line, row)
        if p.proto == "ARP":
            assert row["frame.protocols"] == "eth:ethertype:arp"
    arp_rows = [r for r in rows if r["frame.protocols"] == "eth:ethertype:arp" and r["arp.opcode"] == "1"
                and r["arp.dst.proto_ipv4"] == f"{subnet}.2"]
    assert len(arp_rows) == len(arps) and all(r["arp.src.proto_ipv4"] == f"{subnet}.1" for r in arp_rows)
    icmp_rows = [r for r in rows if r["frame.protocols"].startswith("eth:ethertype:ip:icmp") and r["icmp.type"] == "8"]
    assert [(r["eth.dst"], r["ip.src"], r["ip.dst"]) for r in icmp_rows] == [(PEER_MAC, f"{subnet}.1", f"{subnet}.3")] * 2


@pytest.mark.device
def test_pcap_to_stdout_is_live_and_clean(ifname: str, subnet: str, dumps: Callable[..., Dump]) -> None:
    need("tshark")
    d = dumps(ifname, "--address", f"{subnet}.1/24", "--pcap", "-", binary_stdout=True)
    d.listening()
    d.wait_for("the pcap file header", lambda: len(d.out_bytes) >= 24)
    assert d.out_bytes[:4] == (0xA1B2C3D4).to_bytes(4, sys.byteorder)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"live!", (f"{subnet}.2", 4444))
    # The record reaches the pipe while the dump still runs (flushed per packet).
    d.wait_for("the UDP record on stdout", lambda: b"live!" in d.out_bytes, timeout=10)
    assert d.proc.poll() is None
    run_pings(ping("-c", "2", "-i", "0.2", "-W", "1", f"{subnet}.2"))
    d.wait_for("2 echo requests on stderr", lambda: len(echo_requests(parse_lines(d.err_lines), "ICMP", f"{subnet}.2")) == 2)
    assert d.stop() == 0, d.transcript()
    packets = d.packets(d.err_lines)  # the text lines went to stderr
    assert count_line(d) == len(packets)
    assert any(p.proto == "UDP" and p.dst == f"{subnet}.2" and p.rest == "len=5" for p in packets)
    rows = tshark_rows("-", *IP_FIELDS, "udp.dstport", stdin=bytes(d.out_bytes))  # `| tshark -r -`
    assert_lines_match_pcap(packets, rows)
    assert [r["ip.dst"] for r in rows if r["frame.protocols"].startswith("raw:ip:icmp") and r["icmp.type"] == "8"] == [f"{subnet}.2"] * 2
    assert [r["udp.dstport"] for r in rows if r["frame.protocols"].startswith("raw:ip:udp")] == ["4444"]


@pytest.mark.device
def test_count_stops_by_itself_with_hex_and_mtu(ifname: str, subnet: str, dumps: Callable[..., Dump]) -> None:
    d = dumps(ifname, "--address", f"{subnet}.1/24", "--count", "2", "--hex", "--mtu", "1400")
    assert d.listening() == ifname
    assert "MTU 1400" in d.err_lines[0]
    with open(f"/sys/class/net/{ifname}/mtu") as f:
        assert f.read().strip() == "1400"
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while d.proc.poll() is None and time.monotonic() < deadline:
            s.sendto(b"count me", (f"{subnet}.2", 5555))
            time.sleep(0.1)
    assert d.finish() == 0, d.transcript()
    assert not os.path.exists(f"/sys/class/net/{ifname}")
    packets = d.packets()
    assert len(packets) == 2 and count_line(d) == 2
    # Each line is followed by its hex dump: the bytes decode back to a packet of the printed length.
    blocks: List[List[str]] = []
    for line in d.out_lines:
        if line.startswith("    "):
            blocks[-1].append(line)
        else:
            blocks.append([])
    assert len(blocks) == 2
    for p, block in zip(packets, blocks):
        data = bytes.fromhex("".join(line[10:58] for line in block))
        assert f"len={len(data)} " in p.line
        assert data[0] >> 4 == (4 if p.version == "IPv4" else 6)
        if p.proto == "UDP":
            assert data.endswith(b"count me")


@pytest.mark.device
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_right_after_the_listening_line_exits_0(ifname: str, sig: int, dumps: Callable[..., Dump]) -> None:
    """The "listening" line says the capture started: a signal sent the moment it appears ends it with 0.

    (It used to escape as "interrupted", 130, when it came before the
    capture loop's first read: 1 run in 16 on PyPy.)
    """
    for _ in range(4):
        d = dumps(ifname)
        assert d.listening() == ifname
        assert d.stop(sig) == 0, d.transcript()
        assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.mark.device
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_cleanly_and_removes_interface(ifname: str, sig: int, dumps: Callable[..., Dump]) -> None:
    d = dumps(ifname)
    assert d.listening() == ifname
    assert os.path.exists(f"/sys/class/net/{ifname}")
    assert d.stop(sig) == 0, d.transcript()
    assert count_line(d) == len(d.packets())
    assert not any("Traceback" in line for line in d.err_lines)
    assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.mark.device
def test_template_name(dumps: Callable[..., Dump]) -> None:
    d = dumps(f"tt{RUN_TAG}d%d")
    name = ""
    try:
        name = d.listening()
        assert re.fullmatch(rf"tt{RUN_TAG}d\d+", name), name
        assert os.path.exists(f"/sys/class/net/{name}")
        assert d.stop() == 0
        assert not os.path.exists(f"/sys/class/net/{name}")
    finally:
        if name:
            delete_link(name)


@pytest.mark.device
def test_without_cap_net_admin_one_line_and_nonzero(ifname: str, dumps: Callable[..., Dump]) -> None:
    setpriv = need("setpriv")
    d = dumps(ifname, "--address", "198.18.0.1/24", prefix=[setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"])
    rc = d.finish(30)
    assert rc == 1, d.transcript()
    assert len(d.err_lines) == 1, d.transcript()
    assert "CAP_NET_ADMIN" in d.err_lines[0] and "Traceback" not in d.err_lines[0]
    assert d.out_lines == []
    assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.mark.device
def test_unwritable_pcap_path_fails_cleanly(ifname: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    d = dumps(ifname, "--pcap", os.path.join(workdir, "no", "such", "dir.pcap"))
    assert d.finish(30) == 1, d.transcript()
    assert len(d.err_lines) == 1 and "No such file or directory" in d.err_lines[0], d.transcript()
    assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.mark.device
@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_pcap_refuses_symlink_and_existing_file(planted: str, ifname: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    """dump runs as root: a symlink or file planted at FILE is neither followed nor truncated."""
    victim = os.path.join(workdir, "victim")
    with open(victim, "wb") as f:
        f.write(b"precious")
    pcap = os.path.join(workdir, "capture.pcap")
    if planted == "symlink":
        os.symlink(victim, pcap)
    else:
        pcap = victim
    d = dumps(ifname, "--pcap", pcap)
    assert d.finish(30) == 1, d.transcript()
    assert len(d.err_lines) == 1 and "Traceback" not in d.err_lines[0], d.transcript()
    assert ("symbolic link" if planted == "symlink" else "--overwrite") in d.err_lines[0], d.transcript()
    with open(victim, "rb") as f:
        assert f.read() == b"precious"
    assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.mark.device
def test_pcap_new_file_is_private_and_overwrite_is_explicit(ifname: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    pcap = os.path.join(workdir, "new.pcap")
    d = dumps(ifname, "--pcap", pcap)
    d.listening()
    assert d.stop() == 0, d.transcript()
    assert stat.S_IMODE(os.stat(pcap).st_mode) == 0o600  # packets may carry secrets: not world-readable
    with open(pcap, "wb") as f:
        f.write(b"x" * 1000)
    d = dumps(ifname, "--pcap", pcap, "--overwrite")
    d.listening()
    assert d.stop() == 0, d.transcript()
    assert any(f"overwriting {pcap} (1000 bytes)" in line for line in d.err_lines), d.transcript()
    with open(pcap, "rb") as f:
        data = f.read()
    assert data[:4] == struct.pack("=I", 0xA1B2C3D4) and b"x" * 8 not in data  # the old bytes are gone


@pytest.mark.device
def test_offload_splits_super_packets_into_valid_packets(ifname: str, subnet: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    """--offload: a UDP GSO send (UDP_SEGMENT) reaches the TUN as one USO super-packet;
    the dump prints and records the datagrams it stands for, with valid checksums."""
    need("tshark")
    pcap = os.path.join(workdir, "offload.pcap")
    d = dumps(ifname, "--offload", "--address", f"{subnet}.1/24", "--pcap", pcap)
    assert d.listening() == ifname
    payload = bytes(range(256)) * 117  # 29,952 bytes: 30 segments of 1000 (the last 952)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_UDP, 103, 1000)  # UDP_SEGMENT (4.18): one send, 30 datagrams
        s.bind((f"{subnet}.1", 0))
        s.sendto(payload, (f"{subnet}.2", 4321))
        sport = s.getsockname()[1]
    d.wait_for("30 UDP datagrams", lambda: sum(1 for p in parse_lines(d.out_lines) if p.proto == "UDP" and p.dst.startswith(f"{subnet}.2")) >= 30)
    assert d.stop() == 0, d.transcript()
    udp = [p for p in d.packets() if p.proto == "UDP" and p.dst.startswith(f"{subnet}.2")]
    assert len(udp) == 30
    rows = [r for r in tshark_rows_opts(pcap, ["-o", "udp.check_checksum:TRUE"], "udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status", "data.data")
            if r["udp.dstport"] == "4321"]
    assert len(rows) == 30
    assert all(r["udp.srcport"] == str(sport) for r in rows)
    assert [int(r["udp.length"]) for r in rows] == [1008] * 29 + [960]
    assert all(r["udp.checksum.status"] == "1" for r in rows), "tshark: every split datagram's UDP checksum is good"
    assert b"".join(bytes.fromhex(r["data.data"]) for r in rows) == payload


def tshark_rows_opts(path: str, options: List[str], *fields: str) -> List[Dict[str, str]]:
    cmd = [need("tshark"), "-r", path, *options, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return [dict(zip(fields, line.split("|"))) for line in proc.stdout.decode().splitlines()]


# ------------------------------------------------------------------ --netns


def ip_in(ns: str, *args: str) -> str:
    """`ip netns exec NS ip ARGS` (the namespace's own view)."""
    return ip("netns", "exec", ns, "ip", *args)


@pytest.mark.device
def test_dump_netns_captures_traffic_made_in_the_namespace(ifname: str, subnet: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    """--netns: the device is made there (not here), configured there, and what a ping bound to it
    inside the namespace sends is printed and recorded; the interface goes with the command."""
    need("tshark")
    with namespace("d") as ns:
        pcap = os.path.join(workdir, "netns.pcap")
        d = dumps(ifname, "--netns", ns, "--address", f"{subnet}.1/24", "--no-ipv6", "--count", "3", "--pcap", pcap)
        assert d.listening() == ifname and f"netns {ns}" in d.err_lines[0], d.transcript()
        assert not os.path.exists(f"/sys/class/net/{ifname}"), "made in the caller's namespace"
        assert f"inet {subnet}.1/24" in ip_in(ns, "addr", "show", "dev", ifname)
        pinger = subprocess.Popen(["ip", "netns", "exec", ns, need("ping"), "-n", "-c", "3", "-i", "0.2", "-W", "1",
                                   "-I", ifname, f"{subnet}.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_pings(pinger)
        assert d.finish() == 0, d.transcript()  # --count 3: IPv6 is off, so only the echo requests count
        packets = d.packets()
        assert count_line(d) == len(packets) == 3
        assert [(p.src, p.dst, p.rest.split()[-1]) for p in echo_requests(packets, "ICMP", f"{subnet}.2")] == [
            (f"{subnet}.1", f"{subnet}.2", f"seq={i}") for i in (1, 2, 3)]
        assert_lines_match_pcap(packets, tshark_rows(pcap, *IP_FIELDS))
        assert ifname not in ip_in(ns, "-o", "link", "show")


@pytest.mark.device
@pytest.mark.parametrize("where, says", [("name", "no network namespace named"), ("file", "not a namespace file")])
def test_dump_netns_unknown_is_one_line_and_status_1(where: str, says: str, ifname: str, workdir: str, dumps: Callable[..., Dump]) -> None:
    ns = f"{RUN_TAG}nosuch" if where == "name" else os.path.join(workdir, "plain-file")
    if where == "file":
        open(ns, "w").close()
    d = dumps(ifname, "--netns", ns)
    assert d.finish() == 1, d.transcript()
    assert len(d.err_lines) == 1 and says in d.err_lines[0] and "Traceback" not in d.transcript(), d.transcript()
    assert not os.path.exists(f"/sys/class/net/{ifname}")
