"""What every test shares, in wireguard-go's ``tun/tuntest`` shape: packet builders, devices, sockets, readers.

conftest.py holds the fixtures (``ifname``, ``ifnames``, ``subnet``, ``run``, ``backend``)
and builds them from this module; tests import helpers from here.

Facts that shape this module:
- Every interface and namespace a test makes is named ``tt`` + this run's
  tag + a counter (<= 15 bytes: IFNAMSIZ), so the session's end can find
  and remove what a failed test left.
- Traffic goes only to 198.18.0.0/15 (RFC 2544 benchmarking space) on the
  test's own devices, and sockets are bound to the device: another test
  process may have a TUN with the same /24, and the route would then send
  our datagrams there.
- A TUN sends IPv6 router solicitations once up, so devices made here have
  IPv6 off and readers take a predicate: a test counts only its own flow.
- Waits are bounded and wait for an event (the fd readable, a kernel task
  gone), never a fixed sleep standing in for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import importlib
import ipaddress
import itertools
import json
import os
import platform
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterator, List, Optional, Sequence, Tuple, TypeVar

import pytest

if TYPE_CHECKING:  # (the package is imported by the helpers that use it: importing this module imports no tuntap_cffi)
    from tuntap_cffi import Device, PacketRing

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RUN_TAG = f"{os.getpid() % 10000:04d}"
_counter = itertools.count()


def need(tool: str) -> str:
    """The path of the program *tool*; skip the test without it (fail under CI=true: tests/run.sh installs it)."""
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"CI=true and {tool} is missing (tests/run.sh installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


# ------------------------------------------------------------ names and links


def tun_available() -> str:
    """Return '' if /dev/net/tun can be opened, else the reason."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/net/tun cannot be opened: {exc}"
    os.close(fd)
    return ""


def new_name(tag: str = "") -> str:
    """A fresh interface name of this run: tt<run tag><tag><n>, <= 15 bytes."""
    name = f"tt{RUN_TAG}{tag}{next(_counter)}"
    assert len(name) <= 15, name
    return name


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its stdout."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def link_info(name: str) -> dict:  # type: ignore[type-arg]
    """``ip -j -d link show NAME`` as a dict."""
    return json.loads(ip("-j", "-d", "link", "show", "dev", name))[0]  # type: ignore[no-any-return]


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def our_links() -> List[str]:
    """Interfaces of this test run still present (none named so on macOS: its devices are utunN, tunN, fethN)."""
    if sys.platform == "darwin":
        return []
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(f"tt{RUN_TAG}"))


def delete_link(name: str) -> None:
    if link_exists(name):
        ip("link", "del", "dev", name, check=False)


def tx_dropped(name: str) -> int:
    """Packets the kernel dropped on their way to *name*'s reader (its queue was full)."""
    with open(f"/sys/class/net/{name}/statistics/tx_dropped") as f:
        return int(f.read())


def our_namespaces() -> List[str]:
    """Network namespaces of this test run still present (macOS has none)."""
    if sys.platform == "darwin":
        return []
    return sorted(line.split()[0] for line in ip("netns", "list").splitlines()
                  if line.startswith(f"tt{RUN_TAG}"))


@contextlib.contextmanager
def namespace(tag: str = "") -> Iterator[str]:
    """A fresh network namespace named like this run's interfaces, deleted afterwards whatever happens."""
    name = new_name(tag)
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "del", name, check=False)


# ---------------------------------------------------------------- subnets

SUBNET_LOCKS = os.path.join(tempfile.gettempdir(), "tuntap-cffi-test-subnets")


def _prefixes_in_use() -> "set[str]":
    """The 198.18.0.0/15 /24s with an address on any interface of this namespace, or a route (any table) in them."""
    out = ip("-4", "-o", "addr", "show")
    taken = {addr.rsplit(".", 1)[0] for addr in re.findall(r"\binet (198\.1[89]\.\d+\.\d+)", out)}
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unicast"):
            words = words[1:]
        if not words or not words[0].startswith(("198.18.", "198.19.")):
            continue
        dst, _, plen = words[0].partition("/")
        if not plen or int(plen) >= 24:
            taken.add(dst.rsplit(".", 1)[0])
    return taken


def reserve_subnet(start: int) -> Tuple[str, int]:
    """Reserve the first free /24 of 198.18.0.0/15 from number *start* (mod 512): (prefix, lock fd).

    Free: no address of it on an interface here, no route into it, and no other holder of its
    lock file (an flock, which the kernel drops when the holder exits).
    Closing the fd gives it back.
    """
    os.makedirs(SUBNET_LOCKS, exist_ok=True)
    taken = _prefixes_in_use()
    for i in range(512):
        n = (start + i) % 512
        prefix = f"198.{18 + n // 256}.{n % 256}"
        if prefix in taken:
            continue
        fd = os.open(os.path.join(SUBNET_LOCKS, str(n)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return prefix, fd
    pytest.fail("every /24 of 198.18.0.0/15 is in use on this host")


def ipv6_of(subnet: str, host: int) -> str:
    """Host *host* of SUBNET's IPv6 twin, fd00:7474:N::/64 (N: the /24's number in 198.18.0.0/15), canonical text.

    One rule for every test: the /64 is as unique as the reserved /24 (two
    rules could give two reserved subnets the same /64).
    """
    _, second, third = subnet.split(".")
    n = (int(second) - 18) * 256 + int(third)
    return str(ipaddress.IPv6Address(f"fd00:7474:{n:x}::{host:x}"))


def wait_ipv6_local(name: str, address: str, netns: Optional[str] = None, timeout: float = 10.0) -> None:
    """Wait until the kernel delivers packets for IPv6 *address* on *name* (fail the test otherwise).

    Even with nodad the kernel installs an address's local route from a work
    queue after the link comes up; a packet written before that is not ours
    to the kernel and is dropped, which on a loaded box made a SYN go
    unanswered.
    """
    where = ["-n", netns] if netns else []
    assert wait_until(lambda: address in ip(*where, "-6", "route", "show", "table", "local", "dev", name), timeout), (
        f"{address} never became local on {name}")


# --------------------------------------------------------- devices and rings


def disable_ipv6(name: str) -> None:
    """No IPv6 on *name*: no router solicitations among the packets a test reads.

    Written to /proc directly, not through Device.disable_ipv6: the helpers
    should not lean on the code under test.
    """
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
        f.write("1")


def configure(dev: Device, subnet: str, *, cidr: Optional[str] = None, mtu: Optional[int] = None,
              txqueuelen: Optional[int] = None) -> None:
    """Give *dev* *cidr* (default SUBNET.1/24), IPv6 off, optionally an MTU and a queue length; bring it up."""
    disable_ipv6(dev.name)
    if mtu is not None:
        dev.mtu = mtu
    if txqueuelen is not None:
        # tun's queue is a ring of txqueuelen packets; beyond it the kernel drops.
        dev.txqueuelen = txqueuelen
    ip("addr", "add", cidr or f"{subnet}.1/24", "dev", dev.name)
    dev.up()


def tun_with_address(name: str, subnet: str, *, cidr: Optional[str] = None, mtu: Optional[int] = None,
                     txqueuelen: Optional[int] = None, **options: Any) -> Device:
    """A TUN *name* made by open_tun(name, **options) and set up by :func:`configure`; closed if that fails."""
    from tuntap_cffi import open_tun

    dev = open_tun(name, **options)
    try:
        configure(dev, subnet, cidr=cidr, mtu=mtu, txqueuelen=txqueuelen)
    except BaseException:
        dev.close()
        raise
    return dev


PEER_MAC = "02:00:5e:10:00:02"  # the TAP's neighbour at SUBNET.2: a locally administered address


def tap_with_address(name: str, subnet: str, **options: Any) -> Device:
    """A TAP *name* (open_tap(name, **options)) with SUBNET.1/24, IPv6 off, a permanent neighbour SUBNET.2 at PEER_MAC, up; closed if that fails."""
    from tuntap_cffi import open_tap

    dev = open_tap(name, **options)
    try:
        disable_ipv6(name)
        ip("addr", "add", f"{subnet}.1/24", "dev", name)
        # A static neighbour: the kernel sends straight to it, no ARP first.
        ip("neigh", "add", f"{subnet}.2", "lladdr", PEER_MAC, "dev", name, "nud", "permanent")
        dev.up()
    except BaseException:
        dev.close()
        raise
    return dev


@contextlib.contextmanager
def batch_tun(name: str, subnet: str, backend: str, **options: Any) -> Iterator[Device]:
    """:func:`tun_with_address` (name, subnet, **options) using batch backend *backend*, closed afterwards."""
    dev = tun_with_address(name, subnet, **options)
    try:
        dev.batch_backend = backend
        assert dev.batch_backend == backend
        yield dev
    finally:
        dev.close()


def require_uring() -> None:
    """Skip where io_uring is unusable; in CI (any 6.x test box) that is a failure."""
    from tuntap_cffi import batch

    usable, why = batch.uring_status()
    if not usable:
        if IN_CI:
            pytest.fail(f"CI=true and io_uring is not usable here: {why}")
        pytest.skip(f"io_uring is not usable here: {why}")


def fill_ring(ring: PacketRing, packets: Sequence[bytes]) -> None:
    """Put *packets* in positions 0.. of *ring* as a batch to send."""
    for i, pkt in enumerate(packets):
        ring.slot(i)[: len(pkt)] = pkt
        ring.set_length(i, len(pkt))
    ring.count = len(packets)


# ---------------------------------------------------------------- sockets

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)  # PyPy 3.9's socket module lacks the name
SO_RCVBUFFORCE = 33  # (Linux; not in every Python's socket module)
DPORT = 9  # a flow's destination port on SUBNET.2 (nothing listens there: the TUN is the wire)
# Linux socket options, pinned so the kernel's packets are predictable byte for byte.
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2


def bind_to_device(sock: socket.socket, name: str) -> None:
    """Send and receive only through interface *name* (another with the same subnet gets nothing)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, name.encode())


def udp_socket(subnet: str, device: Optional[str] = None, *, host: int = 1,
               connect_port: Optional[int] = None) -> socket.socket:
    """A UDP socket on SUBNET.HOST whose packets :func:`ipv4_udp` rebuilds byte for byte (TTL 64, DF, TOS 0).

    With *device*, bound to it too (see the module docstring); with
    *connect_port*, connected to SUBNET.2:PORT.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if device is not None:
            bind_to_device(s, device)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0)
        s.bind((f"{subnet}.{host}", 0))
        if connect_port is not None:
            s.connect((f"{subnet}.2", connect_port))
    except BaseException:
        s.close()
        raise
    return s


def receiver(subnet: str, host: int = 1, rcvbuf: int = 32 << 20) -> socket.socket:
    """A UDP socket on SUBNET.HOST with a receive buffer large enough that nothing is dropped."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # root: beyond rmem_max
        s.bind((f"{subnet}.{host}", 0))
        s.settimeout(5)
    except BaseException:
        s.close()
        raise
    return s


# ------------------------------------------------------- packets (RFC-built)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
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


def expected_packet(pkt: bytes, src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """The exact IPv4/UDP packet the kernel should have built (the IP ID, the kernel's choice, copied from *pkt*)."""
    ident = struct.unpack("!H", pkt[4:6])[0] if len(pkt) >= 6 else 0
    return ipv4_udp(src, dst, sport, dport, payload, ident=ident)


def is_udp_to(pkt: "bytes | bytearray | memoryview", port: int, dst: Optional[bytes] = None) -> bool:
    """True if *pkt* is IPv4 (no options)/UDP to *port*, and to address *dst* (4 bytes) if given."""
    return (len(pkt) >= 28 and pkt[0] == 0x45 and pkt[9] == 17 and (pkt[22] << 8 | pkt[23]) == port
            and (dst is None or pkt[16:20] == dst))


def udp_flow(dst: str, port: int) -> Callable[[bytes], bool]:
    """A predicate for :func:`is_udp_to` *dst* (dotted quad) : *port*, for the readers below."""
    d = socket.inet_aton(dst)
    return lambda pkt: is_udp_to(pkt, port, d)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


# ------------------------------------------- headers for pure tests (decode, pcap)

# Packets that never meet a device (summaries, pcap files): the IPv4 header
# checksum is filled in, the TCP/UDP/ICMP ones are left 0.
A4, B4 = "198.18.7.1", "198.18.7.2"
A6, B6 = "fd00:7474:7::1", "fd00:7474:7::2"
MAC_A, MAC_B = "02:00:5e:10:00:01", "02:00:5e:10:00:02"


def ipv4(proto: int, payload: bytes, src: str = A4, dst: str = B4, frag: int = 0x4000, ihl: int = 5) -> bytes:
    """An IPv4 packet carrying *payload* as protocol *proto*; *ihl* > 5 adds zeroed options."""
    options = bytes((ihl - 5) * 4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 7, frag, 64, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(nxt: int, payload: bytes, src: str = A6, dst: str = B6) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + payload


def tcp(sport: int, dport: int, flags: int, seq: int = 1000, ack: int = 0, win: int = 65535, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, win, 0, 0) + data


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(kind: int, code: int, rest: bytes) -> bytes:
    return struct.pack("!BBH", kind, code, 0) + rest


def echo(kind: int, ident: int, seq: int, data: bytes = b"ping") -> bytes:
    return icmp(kind, 0, struct.pack("!HH", ident, seq) + data)


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sha) + ipaddress.IPv4Address(spa).packed \
        + mac_bytes(tha) + ipaddress.IPv4Address(tpa).packed


ICMP_ECHO4 = ipv4(1, echo(8, 0x1234, 3))
ICMP_ECHO6 = ipv6(58, echo(128, 77, 9, b"x" * 56))
ARP_REQUEST = ethernet("ff:ff:ff:ff:ff:ff", MAC_A, 0x0806, arp(1, MAC_A, A4, "00:00:00:00:00:00", B4))


# ------------------------------------------------------ readers with deadlines


def read_until(dev: Device, accept: Callable[[bytes], bool], want: int = 1, *, timeout: float = 5.0,
               buf: Any = None, strip: Optional[int] = None) -> List[bytes]:
    """Read packets until *want* satisfy *accept* or *timeout* passed; return those (maybe fewer).

    Each packet is passed on without its first *strip* bytes (default: the
    device's virtio header, none without vnet_hdr).  *buf* (default: a bytearray of max_packet_size) is
    what readinto fills.  The device is left non-blocking; between packets
    the wait is a poll of its fd, never a sleep.
    """
    buf = bytearray(dev.max_packet_size) if buf is None else buf
    strip = dev.vnet_hdr_size if strip is None else strip
    got: List[bytes] = []
    deadline = time.monotonic() + timeout
    dev.blocking = False
    # Views released on return (an mmap buffer cannot be closed while one is exported).
    with memoryview(buf) as whole, whole.cast("B") as view:
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not select.select([dev], [], [], left)[0]:
                continue
            try:
                n = dev.readinto(buf)
            except BlockingIOError:
                continue
            pkt = bytes(view[strip:n])
            if accept(pkt):
                got.append(pkt)
    return got


def read_matching(dev: Device, accept: Callable[[bytes], bool], *, timeout: float = 5.0, buf: Any = None) -> bytes:
    """The first packet that satisfies *accept* (see :func:`read_until`); fail the test if none came in time."""
    got = read_until(dev, accept, timeout=timeout, buf=buf)
    if not got:
        raise AssertionError(f"the expected packet did not arrive in {timeout} s")
    return got[0]


def sequence_report(seqs: Sequence[int], total: int) -> str:
    """What is wrong with a sequence that should be 0..total-1: losses, duplicates, reordering."""
    seen = set(seqs)
    missing = [i for i in range(total) if i not in seen]
    duplicated = len(seqs) - len(seen)
    disorder = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
    return (f"{len(seqs)} packets: {len(missing)} missing (first {missing[:5]}), {duplicated} duplicated, "
            f"first out of order at index {disorder}")


# ------------------------------------------------------------ fds and threads


def join_task(thread: threading.Thread) -> None:
    """join() *thread*, then wait until its kernel task is gone too.

    join() returns once the Python thread is done; its kernel task, which
    the library asks about (/proc/self/task) to know whether the thread may
    still use a closed device or an engine, exits a moment later (155 of
    2,000 joins here still saw it).
    """
    thread.join()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/self/task/{thread.native_id}") and time.monotonic() < deadline:
        time.sleep(0.001)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll *predicate* until it holds (True) or *timeout* passed (False): for states no fd announces."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def fd_count() -> int:
    """Open fds of this process, after a GC pass.

    A Device closed while other threads lived may keep its (dead) fd
    number until the library saw that no thread can still use it, or the
    Device is collected; one caught in a reference cycle of an earlier test
    (a kept traceback) would otherwise be freed by a GC pass in the middle
    of a later test's count.
    """
    from tuntap_cffi.device import pending_retirements

    count = -1
    # Until two passes agree: PyPy finalizes an object whose finalizer freed
    # another one's last reference (a socket of a device...) only at the next
    # collection; a count taken after one pass moved by 6 fds in a later test.
    for _ in range(4):
        gc.collect()
        # A closed device's number is freed by a reaper thread once the other
        # threads are seen idle: let it finish (bounded), or a count taken now
        # would move in the middle of the caller's test.
        deadline = time.monotonic() + 5
        while pending_retirements() and time.monotonic() < deadline:
            time.sleep(0.15)  # (asleep this long, this thread counts as idle on PyPy too)
        now = len(os.listdir("/dev/fd" if sys.platform == "darwin" else "/proc/self/fd"))  # (macOS has no /proc)
        if now == count:
            break
        count = now
    return count


def open_fds() -> List[str]:
    """What this process has open, for a failure message."""
    out = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            out.append(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


# -------------------------------------------------------------- event loops

# The one loop matrix: every asyncio test runs on each (PyPy has no uvloop).
LOOPS = ["asyncio"] if platform.python_implementation() == "PyPy" else ["asyncio", "uvloop"]


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for *kind* (one of LOOPS); uvloop must be installed in CI (CPython test extra)."""
    if kind == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            if IN_CI:
                pytest.fail(f"CI=true and uvloop is not importable ({exc}): it is in the CPython test extra")
            pytest.skip(f"uvloop is not installed: {exc}")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


class Runner:
    """Runs coroutines on one event loop of *kind*; a coroutine still running after *timeout* fails the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.new_loop = loop_factory(kind)  #: makes more loops of the same kind (e.g. for other threads)
        self.loop = self.new_loop()

    def __call__(self, coro: "Coroutine[Any, Any, T]", timeout: float = 30.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        """Cancel what is left on the loop, finish its async generators, close it."""
        loop = self.loop
        leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in leftover:
            t.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ------------------------------------------------------------ link events, any platform

def close_wakes_a_blocked_iterator(dev: Device) -> None:
    """Close *dev* while a thread waits in ``next()`` of its link events: the iteration ends (nothing yielded)."""
    events = dev.events()
    got: List[Any] = []
    entered = threading.Event()

    def consume() -> None:
        entered.set()
        got.extend(events)  # blocks until the close
        got.append("ended")

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        entered.wait(5)
        thread.join(0.3)
        assert thread.is_alive()
    finally:
        dev.close()
        join_task(thread)
    assert got == ["ended"]
    assert events.get() is None


def close_ends_an_async_iterator(dev: Device, run: "Runner") -> None:
    """Close *dev* while a task waits in ``async for`` over its link events: the task ends (nothing yielded)."""
    async def main() -> List[Any]:
        got: List[Any] = []

        async def consume() -> None:
            async for event in dev.events():
                got.append(event)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        assert not task.done()
        dev.close()
        await asyncio.wait_for(task, 10)
        return got

    try:
        assert run(main()) == []
    finally:
        dev.close()


def iterator_closed_from_another_thread(dev: Device) -> None:
    """Close a link-event iterator of *dev* from another thread while it waits: get() returns None, dev goes on."""
    events = dev.events()
    closer = threading.Timer(0.3, events.close)
    closer.start()
    try:
        assert events.get(timeout=30) is None
    finally:
        closer.join()
    assert not dev.closed  # the device goes on
    dev.mtu = 1300
    try:
        next(events)
    except StopIteration:
        return
    raise AssertionError("a closed iterator yielded an event")

