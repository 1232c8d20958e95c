"""The benchmark's TUN: set up, filled, drained, written into and checked; and the packets it carries.

One :class:`BenchTun` owns one interface made with ``tuntap_cffi``
(non-blocking), IPv6 and IPv4 forwarding off on it before it goes up
(per-interface sysctls only), ``txqueuelen`` 400,000 and ``SUBNET.1/24``
(inside 198.18.0.0/15, RFC 2544 benchmarking space).  Reads: the compiled
filler (``bench/c/fill.c``) queues datagrams to ``SUBNET.2``, routed into
the TUN, and each fill is checked (all sent, no kernel drop).  Writes: valid
IPv4/UDP packets go where ``write_to`` says, and every write run is checked
with the interface's counters.  The interface is removed by :meth:`close`.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import struct
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from .build import FILL, CLibs

BUF_SIZE = 2048  # every single-packet read method reads into (or asks for) 2048 bytes
TXQUEUELEN = 400_000
UDP_PORT = 9  # discard; nothing listens: the datagrams only sit in the TUN queue
RING = 256  # slots of the batch rows' ring (and SQEs of the C io_uring floor)
BIG_RING = 1024
WARM_CALLS = 1600  # untimed read_batch/write_batch calls, in whole turns, before the interleaved rounds (see warm_turns)
# Packets per turn of the interleaved comparisons: 16 batches of 256.  The
# first batch of a turn pays for what the other methods' turns left in the
# caches: measured (bench/diag/turn_cost.py, 2026-12-02) +25% for the C
# io_uring floor and +39% for read_batch on CPython, against the turn's later
# batches.  With turns of 4 batches that switching cost was a quarter of every figure.
BLOCK = 16 * RING
JIT_LOOP_ITERATIONS = 1100  # PyPy compiles a loop after ~1,000 iterations (its default threshold: 1039)
WRITE_PORT = 9  # destination port of the written packets (checked to have no socket, see --write-to)
WRITE_KINDS = 256  # distinct packets written, cycled (source ports 40000..40255)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def implementation() -> str:
    return "pypy" if platform.python_implementation() == "PyPy" else "cpython"


def interface_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def delete_interface(name: str) -> None:
    if interface_exists(name):
        subprocess.run(["ip", "link", "del", "dev", name], check=False, capture_output=True)


def counter(name: str, key: str) -> int:
    """/sys/class/net/NAME/statistics/KEY (rx_* = what user space wrote into the TUN)."""
    with open(f"/sys/class/net/{name}/statistics/{key}") as f:
        return int(f.read())


def tx_dropped(name: str) -> int:
    return counter(name, "tx_dropped")


def udp_sockets_on_port(port: int) -> List[str]:
    """Local addresses of the IPv4/IPv6 UDP sockets bound to *port*, from /proc/net/udp{,6}."""
    found = []
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]  # hex address:port
            if int(local.rsplit(":", 1)[1], 16) == port:
                found.append(f"{path}: {local}")
    return found


def check_subnet(subnet: str) -> None:
    """Exit unless SUBNET.0/24 is inside 198.18.0.0/15 and no interface here has an address in it."""
    net = ipaddress.IPv4Network(f"{subnet}.0/24")
    if not net.subnet_of(ipaddress.IPv4Network("198.18.0.0/15")):
        raise SystemExit(f"--subnet {subnet}: only 198.18.0.0/15 (benchmarking space) may be used")
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "to", str(net)], capture_output=True, text=True, check=True
    ).stdout.strip()
    if used:
        raise SystemExit(f"{net} is already in use here; pick another with --subnet:\n{used}")


def ip_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp4_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A valid IPv4/UDP packet (DF set, TTL 64, both checksums right)."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    ulen = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0)
    csum = ip_checksum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen) + udp + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, csum)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    return ip + udp + payload


def engine_of(dev: Any, ring: Any, kind: str) -> Any:
    """The batch engine *dev* uses for *ring* in this thread (*kind* "read" or "write"), made if need be.

    Through ``tuntap_cffi._engines.table_of``, the explicitly internal way
    to a Device's engine table (tests and diagnostics use it).
    """
    from tuntap_cffi._engines import table_of  # (after harness put the working tree first on sys.path)

    return table_of(dev).get(ring, kind)


class BenchTun:
    """Owns the interface; fills its queue, drains it, writes into it and checks the kernel's counters."""

    def __init__(
        self, name: str, subnet: str, packets: int, payload: int, write_to: str = "broadcast"
    ) -> None:
        from tuntap_cffi import open_tun

        self.open_tun = open_tun
        self.name = name
        self.subnet = subnet
        self.local = f"{subnet}.1"
        self.peer = f"{subnet}.2"
        self.packets = packets
        self.payload = payload
        self.buf = bytearray(BUF_SIZE)  # the one reused buffer of the readinto methods
        self.dev: Any = None
        self.write_to = write_to
        self.sink: Optional[socket.socket] = None  # the never-read socket of --write-to socket
        self.write_packets: List[bytes] = []
        self.write_ring: Any = None
        self.clibs: Optional[CLibs] = None
        self.warm_calls = WARM_CALLS  # batch calls warm_turns makes before the first interleaved round

    # ---- interface set-up and the queue

    def create(self) -> None:
        if interface_exists(self.name):
            raise RuntimeError(f"interface {self.name} already exists; not touching it")
        self.dev = self.open_tun(self.name, nonblocking=True)
        conf = {
            # before up: no router solicitations, no MLD
            f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6": "1",
            # Never route what we write back out of the TUN (and --write-to offlink relies on it:
            # a packet that is not for this host is then dropped silently, no ICMP).
            f"/proc/sys/net/ipv4/conf/{self.name}/forwarding": "0",
        }
        for path, value in conf.items():
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write(value)
        self.dev.txqueuelen = TXQUEUELEN
        subprocess.run(["ip", "addr", "add", f"{self.local}/24", "dev", self.name], check=True)
        self.dev.up()
        got = self.dev.txqueuelen
        if got != TXQUEUELEN:
            raise RuntimeError(f"txqueuelen is {got}, not {TXQUEUELEN}")

    def drain_leftovers(self) -> int:
        """Empty the queue before a fill; return how many packets were there."""
        n = 0
        try:
            while True:
                self.dev.readinto(self.buf)
                n += 1
        except BlockingIOError:
            pass
        return n

    def fill(self, count: int) -> Dict[str, int]:
        """Queue *count* datagrams; check that the kernel dropped none."""
        dropped_before = tx_dropped(self.name)
        proc = subprocess.run(
            [str(FILL), self.name, self.peer, str(UDP_PORT), str(count), str(self.payload)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"fill failed: {proc.stderr.strip()} {proc.stdout.strip()}")
        report = {k: int(v) for k, v in (item.split("=") for item in proc.stdout.split())}
        report["dropped"] = tx_dropped(self.name) - dropped_before
        if report["sent"] != count or report["dropped"]:
            raise RuntimeError(f"the queue does not hold {count} packets: {report}")
        return report

    def use_backend(self, backend: str) -> None:
        """Switch the Device's batch backend (its engines are dropped; the next batch call makes new ones)."""
        self.dev.batch_backend = backend
        if self.dev.batch_backend != backend:
            raise RuntimeError(f"batch_backend={backend!r} did not take: {self.dev.batch_backend!r}")

    def prime_read_batch(self, ring: Any) -> int:
        """Make the ring's engine (io_uring set-up, buffer registration) before the clock starts.

        Called on an empty queue: returns the stray packets it read, if any.
        """
        try:
            return int(self.dev.read_batch(ring))
        except BlockingIOError:
            return 0

    def uring_read_engine(self, ring: Any) -> Any:
        """The Device's io_uring read engine for *ring*, made now (exits if the Device chose another)."""
        from tuntap_cffi import batch

        self.prime_read_batch(ring)
        engine = engine_of(self.dev, ring, "read")
        if not isinstance(engine, batch.ReadEngine):
            raise SystemExit(f"the engine is {type(engine).__name__}, not the io_uring ReadEngine")
        return engine

    def warm_turns(self, turn: Callable[[], int], block: int, fill: bool) -> None:
        """Run a batch method's turn untimed (``warm_calls`` calls in all) before the first interleaved round.

        A turn of the batch methods is a loop of only block/256 calls, and
        PyPy compiles a loop after ~1,000 iterations (counted across calls):
        without this, PyPy's read_batch turns run interpreted for most of
        the rounds, while every per-packet method's turn loops over
        thousands of packets and is compiled in the first round.  The whole
        drains have their warm-up round; this is the interleaved turns'
        own.  Reads refill the queue as needed (the kernel holds TXQUEUELEN
        packets).
        """
        per_fill = max(1, (TXQUEUELEN // 2) // block)
        turns = -(-self.warm_calls * RING // block)
        done = 0
        while done < turns:
            k = min(per_fill, turns - done)
            if fill:
                self.drain_leftovers()
                self.fill(k * block)
            for _ in range(k):
                turn()
            done += k
        self.drain_leftovers()

    def c_libs(self) -> CLibs:
        if self.clibs is None:
            self.clibs = CLibs()
        return self.clibs

    # ---- writes

    def write_destination(self) -> Tuple[str, int]:
        """Where the written packets go (see --write-to); set it up; return (address, port)."""
        if self.write_to == "broadcast":
            return f"{self.subnet}.255", WRITE_PORT
        if self.write_to == "offlink":
            return f"{self.subnet}.3", WRITE_PORT
        if self.sink is None:
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
            self.sink.bind((self.local, 0))
        return self.local, self.sink.getsockname()[1]

    def prepare_writes(self) -> None:
        """The WRITE_KINDS packets every write method writes, and the write_batch ring holding them."""
        if self.write_to == "broadcast":
            # A socket bound to the port on any address would get every packet (the kernel's
            # cheap path is "no socket"): refuse rather than flood it.
            bound = udp_sockets_on_port(WRITE_PORT)
            if bound:
                raise RuntimeError(f"UDP port {WRITE_PORT} has sockets ({bound}); use --write-to socket")
        dst, port = self.write_destination()
        payload = b"\xab" * self.payload
        self.write_packets = [udp4_packet(self.peer, dst, 40000 + i, port, payload) for i in range(WRITE_KINDS)]
        ring = self.dev.packet_ring(RING)
        for i in range(RING):
            packet = self.write_packets[i % WRITE_KINDS]
            ring.slot(i)[: len(packet)] = packet
            ring.set_length(i, len(packet))
        ring.count = RING
        self.write_ring = ring

    def write_checks_before(self) -> Dict[str, int]:
        return {k: counter(self.name, k) for k in ("rx_packets", "rx_dropped", "rx_errors", "tx_packets")}

    def write_checks_after(self, before: Dict[str, int], written: int) -> Dict[str, int]:
        """Check that the kernel took exactly *written* packets, and nothing came back."""
        after = self.write_checks_before()
        delta = {k: after[k] - before[k] for k in after}
        replies = self.drain_leftovers()
        report = {
            "rx": delta["rx_packets"],
            "rx_dropped": delta["rx_dropped"] + delta["rx_errors"],
            "tx": delta["tx_packets"],
            "replies": replies,
        }
        if report["rx"] != written or report["rx_dropped"]:
            raise RuntimeError(f"the kernel did not take the {written:,} packets written: {report}")
        return report

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.dev is not None:
            self.dev.close()
            self.dev = None
        delete_interface(self.name)  # still there if it was left persistent
