"""Kernel-side packet filters: attach_filter/detach_filter, compile_filter, the eBPF translation for a TUN.

The traffic tests show the drop happens in the kernel: packets of an
unwanted kind are sent to the device first; the interface's tx_dropped
counter (which tun_net_xmit bumps when a filter rejects a packet) grows by
exactly their number while the device's fd never becomes readable; then
the wanted ones are read, and every wakeup of the reader and every
successful read is one of them.  Detaching lets the unwanted kind through
again.  libpcap must be installed (tests/run.sh installs it).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Sequence, Tuple

import pytest

from conftest import NameFactory
from tuntest import PEER_MAC, configure, fd_count, ip, tap_with_address, tun_with_address, tx_dropped, udp_socket, wait_until
from tuntap_cffi import (Device, DeviceClosedError, LibpcapNotFoundError, TunTapError, compile_filter, open_tap,
                         open_tun)
from tuntap_cffi import bpf
from tuntap_cffi.bpf import LINKTYPE_ETHERNET, LINKTYPE_RAW, Instruction, check_program, to_ebpf

REPO = Path(__file__).resolve().parent.parent
WANTED, UNWANTED = 4000, 4001  # UDP destination ports on SUBNET.2
RET_ALL = 0x40000


def raw_udp_dport(port: int, l2: int) -> List[Tuple[int, int, int, int]]:
    """A hand-written classic program: accept IPv4 UDP (first fragment) to *port*; the IP header at *l2*."""
    head = [(0x28, 0, 0, 12), (0x15, 0, 10, 0x0800)] if l2 else []  # ldh [12]; jeq #ETH_P_IP else drop
    body = [
        (0x30, 0, 0, l2),            # ldb [l2]             version and IHL
        (0x54, 0, 0, 0xF0),          # and #0xf0
        (0x15, 0, 8, 0x40),          # jeq #0x40 else drop  IPv4
        (0x30, 0, 0, l2 + 9),        # ldb [l2+9]           protocol
        (0x15, 0, 6, 17),            # jeq #17 else drop    UDP
        (0x28, 0, 0, l2 + 6),        # ldh [l2+6]           flags and fragment offset
        (0x45, 4, 0, 0x1FFF),        # jset #0x1fff: drop   (a later fragment has no UDP header)
        (0xB1, 0, 0, l2),            # ldxb 4*([l2]&0xf)    X = IP header length
        (0x48, 0, 0, l2 + 2),        # ldh [x+l2+2]         UDP destination port
        (0x15, 0, 1, port),          # jeq #port else drop
        (0x06, 0, 0, RET_ALL),       # ret #262144          keep the whole packet
        (0x06, 0, 0, 0),             # drop: ret #0
    ]
    return head + body


# ------------------------------------------------------------------ no device


def test_compile_filter_gives_the_instructions() -> None:
    prog = compile_filter("udp dst port 4000", LINKTYPE_RAW)
    assert all(isinstance(i, Instruction) for i in prog)
    assert prog[0] == (0x30, 0, 0, 0)  # DLT_RAW: the first byte is the IP version
    assert (0x15, 0, 0, 0)[:1] == (prog[2].code,) and 4000 in [i.k for i in prog]
    assert prog[-2:] == [(0x06, 0, 0, RET_ALL), (0x06, 0, 0, 0)]
    eth = compile_filter("udp dst port 4000", LINKTYPE_ETHERNET)
    assert eth[0] == (0x28, 0, 0, 12)  # Ethernet: the EtherType first
    assert check_program(prog) == tuple(prog) and check_program(eth) == tuple(eth)


@pytest.mark.parametrize("expression, linktype, exc, says", [
    ("udp dst prt 4000", LINKTYPE_RAW, ValueError, "cannot compile filter 'udp dst prt 4000'"),
    ("udp and (", LINKTYPE_RAW, ValueError, "syntax error"),
    ("ether host 02:00:00:00:00:01", LINKTYPE_RAW, ValueError, "cannot compile"),  # no link header on a TUN
    ("udp", 105, ValueError, "linktype must be LINKTYPE_RAW"),
    ("udp", True, ValueError, "linktype must be"),
    ("ud\0p", LINKTYPE_RAW, ValueError, "NUL"),
    (b"udp", LINKTYPE_RAW, TypeError, "a filter expression is a str"),
])
def test_compile_filter_refuses(expression: object, linktype: object, exc: type, says: str) -> None:
    with pytest.raises(exc) as info:  # type: ignore[misc]
        compile_filter(expression, linktype)  # type: ignore[arg-type]
    assert says in str(info.value)


BAD_PROGRAMS = [
    ([], ValueError, "1..4096 instructions, not 0"),
    ([(6, 0, 0, 0)] * 4097, ValueError, "not 4097"),
    ("udp", TypeError, None),  # (a str goes to compile_filter through attach_filter; check_program wants tuples)
    (42, TypeError, "sequence of (code, jt, jf, k)"),
    ([(6, 0, 0)], TypeError, "instruction 0 must be a (code, jt, jf, k) tuple"),
    ([(6, 0, 0, 1.0)], TypeError, "k must be an int"),
    ([(6, 0, 0, True)], TypeError, "k must be an int"),
    ([(6, 0, 0, 1 << 32)], ValueError, "k must be 0..4294967295"),
    ([(6, 0, 0, -1)], ValueError, "k must be"),
    ([(6, 256, 0, 0)], ValueError, "jt must be 0..255"),
    ([(6, 0, -1, 0)], ValueError, "jf must be"),
    ([(0x10006, 0, 0, 0)], ValueError, "code must be 0..65535"),
    ([(0x0106, 0, 0, 0)], ValueError, "unknown opcode 0x0106"),
    ([(0xFF, 0, 0, 0), (6, 0, 0, 0)], ValueError, "unknown opcode 0x00ff"),
    ([(0x15, 0, 1, 0), (6, 0, 0, 0)], ValueError, "jumps past the end"),
    ([(0x05, 0, 0, 1), (6, 0, 0, 0)], ValueError, "jumps past the end"),
    ([(0x34, 0, 0, 0), (6, 0, 0, 0)], ValueError, "division by 0"),
    ([(0x64, 0, 0, 32), (6, 0, 0, 0)], ValueError, "shift by 32"),
    ([(0x02, 0, 0, 16), (6, 0, 0, 0)], ValueError, "M[16]"),
    ([(0x61, 0, 0, 16), (6, 0, 0, 0)], ValueError, "M[16]"),
    ([(0x30, 0, 0, 0)], ValueError, "last instruction of a filter program must be a return"),
    ([(0x0E, 0, 0, 0)], ValueError, "unknown opcode 0x000e"),  # RET X: not in Linux's classic BPF
    ([(0x61, 0, 0, 3), (0x16, 0, 0, 0)], ValueError, "reads M[3] before it is written"),
    # M[1] is written on the taken branch only, then read where both branches meet:
    ([(0x15, 0, 1, 0), (0x02, 0, 0, 1), (0x60, 0, 0, 1), (0x16, 0, 0, 0)], ValueError, "instruction 2: reads M[1]"),
]


@pytest.mark.parametrize("program, exc, says", BAD_PROGRAMS, ids=[f"bad{i}" for i in range(len(BAD_PROGRAMS))])
def test_check_program_refuses(program: object, exc: type, says: str) -> None:
    with pytest.raises(exc) as info:  # type: ignore[misc]
        check_program(program)  # type: ignore[arg-type]
    if says:
        assert says in str(info.value)


def test_missing_libpcap_is_a_clear_error_at_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libpcap: importing works, compiling raises naming the package; raw programs still work."""
    monkeypatch.setattr(bpf, "_pcap", None)
    monkeypatch.setattr(bpf, "LIBPCAP_NAMES", ("libpcap-not-here.so.9",))
    with pytest.raises(LibpcapNotFoundError) as info:
        compile_filter("udp", LINKTYPE_RAW)
    err = info.value
    assert isinstance(err, TunTapError) and isinstance(err, FileNotFoundError)
    assert "libpcap0.8" in str(err) and "brew install libpcap" in str(err) and "libpcap-not-here.so.9" in str(err)
    assert to_ebpf(raw_udp_dport(WANTED, 0))  # raw instructions need no libpcap


def test_ebpf_translation_shape() -> None:
    """Each classic jump lands on the translation of its target; immediates ≥ 2**31 go through a register."""
    code = to_ebpf([(0x15, 0, 1, 0xFFFFFFFF), (0x06, 0, 0, 1), (0x06, 0, 0, 0)])
    insns = [struct.unpack("=BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    # prologue (3) | mov32 r8, k | jeq r0, r8 -> +? | ja -> ret #0 | mov32 r0, 1 | exit | mov32 r0, 0 | exit
    assert [c for c, *_ in insns] == [0xBF, 0xB4, 0xB4, 0xB4, 0x1D, 0x05, 0xB4, 0x95, 0xB4, 0x95]
    assert insns[3][3] == -1  # 0xffffffff as the s32 a mov32 zero-extends
    assert insns[4][2] == 1 and insns[5][2] == 2  # jeq -> index 6 (ret #1), ja -> index 8 (ret #0)
    with pytest.raises(ValueError, match="ancillary"):
        to_ebpf([(0x20, 0, 0, 0xFFFFF000 + 4), (0x16, 0, 0, 0)])  # ld [SKF_AD_OFF + SKF_AD_PKTTYPE]


# --------------------------------------------------------------- real devices


def _open(kind: str, name: str, subnet: str, **options: object) -> Device:
    """A non-blocking TUN or TAP with SUBNET.1/24, IPv6 off (no chatter to count), up (a TAP: SUBNET.2 a static neighbour)."""
    return (tap_with_address if kind == "tap" else tun_with_address)(name, subnet, nonblocking=True, **options)


def _udp_dport(dev: Device, packet: bytes) -> int:
    """The UDP destination port of a packet read from *dev* (after its tun_pi/vnet/Ethernet headers), -1 if none."""
    at = (4 if dev.packet_info else 0) + dev.vnet_hdr_size + (14 if dev.kind.value == "tap" else 0)
    pkt = packet[at:]
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
        return -1
    ihl = (pkt[0] & 0xF) * 4
    return int(struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0])


def _drain(dev: Device, want: int, timeout: float = 5.0) -> Tuple[List[int], int, int]:
    """Wait for and read packets until *want* came or *timeout*: (their UDP ports, poll wakeups, reads)."""
    buf = bytearray(dev.max_packet_size)
    ports: List[int] = []
    wakeups = reads = 0
    poller = select.poll()
    poller.register(dev.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while len(ports) < want and time.monotonic() < deadline:
        if not poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            continue
        wakeups += 1
        while True:
            try:
                n = dev.readinto(buf)
            except BlockingIOError:
                break
            reads += 1
            ports.append(_udp_dport(dev, bytes(buf[:n])))
    return ports, wakeups, reads


def _send(sock: socket.socket, subnet: str, port: int, count: int) -> None:
    for i in range(count):
        sock.sendto(b"filter test %d" % i, (f"{subnet}.2", port))


def _readable(dev: Device) -> bool:
    return bool(select.select([dev], [], [], 0)[0])


CASES = [
    ("tun", {}, "expression"), ("tun", {}, "raw"), ("tun", {"packet_info": True}, "expression"),
    ("tun", {"vnet_hdr": True}, "raw"),
    ("tap", {}, "expression"), ("tap", {}, "raw"), ("tap", {"packet_info": True}, "raw"),
    ("tap", {"vnet_hdr": True}, "expression"),
]


@pytest.mark.device
@pytest.mark.parametrize("kind, options, form", CASES,
                         ids=[f"{k}-{'-'.join(o) or 'plain'}-{f}" for k, o, f in CASES])
def test_filter_drops_in_the_kernel(kind: str, options: dict, form: str, ifname: str, subnet: str) -> None:  # type: ignore[type-arg]
    unwanted, wanted = 6, 4
    with _open(kind, ifname, subnet, **options) as dev, udp_socket(subnet, ifname) as sock:
        assert dev.filter is None
        program = f"udp dst port {WANTED}" if form == "expression" else raw_udp_dport(WANTED, 14 if kind == "tap" else 0)
        attached = dev.attach_filter(program)
        assert dev.filter == attached and attached[-1].code == 0x06
        if form == "raw":
            assert attached == tuple(program)
        dropped = tx_dropped(ifname)
        _send(sock, subnet, UNWANTED, unwanted)
        # The kernel drops them as it transmits them: the counter says so, and nothing was queued for the reader.
        assert wait_until(lambda: tx_dropped(ifname) - dropped >= unwanted, 5), tx_dropped(ifname) - dropped
        assert not _readable(dev)
        _send(sock, subnet, WANTED, wanted)
        ports, wakeups, reads = _drain(dev, wanted)
        assert ports == [WANTED] * wanted  # all of them, and nothing else
        assert 1 <= wakeups <= wanted and reads == wanted
        assert tx_dropped(ifname) - dropped == unwanted
        # Detached: the unwanted kind reaches the reader again, and nothing more is dropped.
        dev.detach_filter()
        assert dev.filter is None
        _send(sock, subnet, UNWANTED, unwanted)
        ports, _, _ = _drain(dev, unwanted)
        assert ports == [UNWANTED] * unwanted
        assert tx_dropped(ifname) - dropped == unwanted
        dev.detach_filter()  # harmless twice


@pytest.mark.device
@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_filter_on_length_and_replacing_a_filter(kind: str, ifname: str, subnet: str) -> None:
    """`greater N` (LD LEN, a comparison) keeps only the large datagrams; a second attach replaces the first."""
    with _open(kind, ifname, subnet) as dev, udp_socket(subnet, ifname) as sock:
        dev.attach_filter(f"udp dst port {UNWANTED}")  # replaced below: must not linger
        dev.attach_filter("greater 600")
        dropped = tx_dropped(ifname)
        for size in (100, 700, 200, 900):
            sock.sendto(bytes(size), (f"{subnet}.2", WANTED))
        assert wait_until(lambda: tx_dropped(ifname) - dropped >= 2, 5)
        buf = bytearray(dev.max_packet_size)
        got: List[int] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            if select.select([dev], [], [], 0.5)[0]:
                got.append(dev.readinto(buf) - (14 if kind == "tap" else 0) - 28)
        assert got == [700, 900]
        assert not _readable(dev) and tx_dropped(ifname) - dropped == 2


# Expressions whose translation takes the other paths of to_ebpf (X loads,
# scratch memory, ALU with X, division by X, JSET, ranges over 2**31).
TRANSLATED = [
    "ip", "ip6", "icmp[icmptype] == icmp-echo", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "udp and (port 53 or port 5353)", "ip[2:2] > 576", "ip[2:2] / ip[8] > 3", "ip[2:2] % (ip[8] + 1) == 1",
    "ip[2:2] - ip[9] < 4000 and ip[8] * 2 > 3", "ip[16:4] > 0x80000000", "len >= 100 and len <= 1500",
    "ip[2:2] << 1 > 100 and ip[2:2] >> 1 < 2000", "ip[6] & 0x20 == 0 and -ip[8] != 0",
    "ip[2:2] ^ 0xffff != 0 or ip[2:2] | 1 == 3", "ip and udp[8:4] == 0x66696c74", "net 198.18.0.0/15",
]


@pytest.mark.device
def test_tun_takes_the_translation_of_many_expressions(ifname: str, subnet: str) -> None:
    """The kernel's eBPF verifier accepts what to_ebpf makes of each (a refusal would raise TunTapError)."""
    with open_tun(ifname) as dev:
        before = fd_count()
        for expression in TRANSLATED:
            prog = dev.attach_filter(expression)
            assert prog == tuple(compile_filter(expression, LINKTYPE_RAW))
        assert fd_count() == before  # every program fd was closed once attached


@pytest.mark.device
def test_bad_programs_fail_before_any_syscall_and_attach_nothing(ifname: str, subnet: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with _open("tun", ifname, subnet) as dev, udp_socket(subnet, ifname) as sock:
        before = fd_count()
        for program, exc, _ in BAD_PROGRAMS:
            if isinstance(program, str):
                continue
            with pytest.raises(exc):  # type: ignore[call-overload]
                dev.attach_filter(program)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown host 'prt'"):
            dev.attach_filter(f"udp dst prt {WANTED}")
        monkeypatch.setattr(bpf, "_pcap", None)
        monkeypatch.setattr(bpf, "LIBPCAP_NAMES", ("libpcap-not-here.so.9",))
        with pytest.raises(LibpcapNotFoundError):
            dev.attach_filter("udp")
        assert fd_count() == before and dev.filter is None
        _send(sock, subnet, UNWANTED, 2)  # no filter: everything still arrives
        assert _drain(dev, 2)[0] == [UNWANTED] * 2
    with pytest.raises(DeviceClosedError):
        dev.attach_filter("udp")
    with pytest.raises(DeviceClosedError):
        dev.detach_filter()


@pytest.mark.device
def test_tun_filter_without_cap_bpf_says_what_is_needed(ifname: str) -> None:
    """A TUN's filter is an eBPF program: a process without CAP_BPF/CAP_SYS_ADMIN gets a permission error saying so."""
    code = (
        "import sys\n"
        "from tuntap_cffi import open_tun, TunTapPermissionError\n"
        f"with open_tun({ifname!r}) as dev:\n"
        "    try:\n"
        f"        dev.attach_filter({raw_udp_dport(WANTED, 0)!r})\n"
        "    except TunTapPermissionError as exc:\n"
        "        print('denied', exc.filename, exc)\n"
    )
    code += "    else:\n        print('attached')\n"
    proc = subprocess.run(["setpriv", "--bounding-set=-all,+net_admin", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        unprivileged_bpf = f.read().strip() == "0"
    if unprivileged_bpf:  # this kernel lets anyone load a socket filter
        assert proc.stdout.strip() == "attached", proc.stdout + proc.stderr
    else:
        assert proc.stdout.startswith(f"denied {ifname} "), proc.stdout + proc.stderr
        assert "CAP_BPF or CAP_SYS_ADMIN" in proc.stdout


# ------------------------------------------------------------------ the CLI


def _dump(*args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, "-m", "tuntap_cffi", "dump", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.mark.device
@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_dump_filter_prints_only_what_it_asks_for(kind: str, ifnames: NameFactory, subnet: str) -> None:
    name = ifnames()
    extra = ["--tap"] if kind == "tap" else []
    proc = _dump(name, *extra, "--address", f"{subnet}.1/24", "--no-ipv6", "--count", "2",
                 "--filter", f"udp dst port {WANTED}")
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "listening on" in banner and f"filter 'udp dst port {WANTED}'" in banner, banner + proc.stderr.read()
        if kind == "tap":
            ip("neigh", "add", f"{subnet}.2", "lladdr", PEER_MAC, "dev", name, "nud", "permanent")
        with udp_socket(subnet, name) as sock:
            dropped = tx_dropped(name)
            _send(sock, subnet, UNWANTED, 5)
            assert wait_until(lambda: tx_dropped(name) - dropped >= 5, 5)
            _send(sock, subnet, WANTED, 2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and all(f"> {subnet}.2:{WANTED}" in line for line in lines), out
    assert "2 packets captured" in err


def test_dump_filter_refuses_a_bad_expression_before_creating_anything() -> None:
    proc = _dump("--filter", "udp dst prt 9")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--filter: cannot compile filter 'udp dst prt 9': unknown host 'prt'" in err, err


def _send_flows(subnet: str, name: str, port: int, flows: int) -> None:
    """One datagram from each of *flows* sockets (distinct source ports: the kernel spreads them over the queues)."""
    for _ in range(flows):
        with udp_socket(subnet, name) as sock:
            sock.sendto(b"flow", (f"{subnet}.2", port))


def _drain_queues(queues: Sequence[Device], want: int, timeout: float = 5.0) -> List[int]:
    """The UDP ports of what *queues* read until *want* packets came or *timeout*."""
    buf = bytearray(queues[0].max_packet_size)
    ports: List[int] = []
    deadline = time.monotonic() + timeout
    while len(ports) < want and time.monotonic() < deadline:
        for ready in select.select(list(queues), [], [], 0.2)[0]:
            try:
                ports.append(_udp_dport(ready, bytes(buf[:ready.readinto(buf)])))
            except BlockingIOError:
                pass
    return ports


def _rx_queues(name: str) -> int:
    return sum(1 for entry in os.listdir(f"/sys/class/net/{name}/queues") if entry.startswith("rx-"))


@pytest.mark.device
@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_filter_covers_every_queue_and_queue_reattach(kind: str, ifname: str, subnet: str) -> None:
    """A filter is the interface's: every queue's packets are filtered.  Re-attaching a queue: a TUN's
    (eBPF) filter lets it; a TAP's (classic) makes the kernel skip the attach, which raises DeviceBusyError
    with the way out, instead of succeeding with the queue still detached."""
    from tuntap_cffi import DeviceBusyError, open_queues

    queues = open_queues(ifname, 2, tap=kind == "tap", nonblocking=True)
    try:
        configure(queues[0], subnet)
        if kind == "tap":
            ip("neigh", "add", f"{subnet}.2", "lladdr", PEER_MAC, "dev", ifname, "nud", "permanent")
        queues[0].attach_filter(f"udp dst port {WANTED}")
        dropped = tx_dropped(ifname)
        _send_flows(subnet, ifname, UNWANTED, 16)
        assert wait_until(lambda: tx_dropped(ifname) - dropped >= 16, 5)
        assert not select.select(list(queues), [], [], 0)[0]  # neither queue was handed one
        _send_flows(subnet, ifname, WANTED, 16)
        assert _drain_queues(queues, 16) == [WANTED] * 16
        queues[1].detach_queue()
        assert _rx_queues(ifname) == 1
        if kind == "tun":
            queues[1].attach_queue()
        else:
            with pytest.raises(DeviceBusyError, match="while a filter is attached") as info:
                queues[1].attach_queue()
            assert info.value.filename == ifname and _rx_queues(ifname) == 1
            queues[0].detach_filter()  # the way out the message gives
            queues[1].attach_queue()
            queues[0].detach_filter()  # (the re-attached queue kept a copy of the filter)
        assert _rx_queues(ifname) == 2
        if kind == "tun":
            _send_flows(subnet, ifname, UNWANTED, 16)  # still filtered on both queues
            assert wait_until(lambda: tx_dropped(ifname) - dropped >= 32, 5)
            queues[0].detach_filter()
        _send_flows(subnet, ifname, UNWANTED, 16)  # no filter anywhere: all arrive
        assert _drain_queues(queues, 16) == [UNWANTED] * 16
        assert not select.select(list(queues), [], [], 0)[0]
    finally:
        for queue in queues:
            queue.close()


# ----------------------------------------- the eBPF translation against the kernel's classic BPF

SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003


def _crafted(subnet: str) -> List[bytes]:
    """IPv4 packets of many kinds (sizes, protocols, TCP flags, options, fragments), IP ID = their index + 1."""
    def ip4(proto: int, payload: bytes, *, dst: int = 2, ttl: int = 64, tos: int = 0, frag: int = 0x4000,
            options: bytes = b"") -> bytes:
        ihl = 5 + len(options) // 4
        head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, 4 * ihl + len(payload), 0, frag, ttl, proto, 0,
                           socket.inet_aton(f"{subnet}.1"), socket.inet_aton(f"{subnet}.{dst}"))
        return head + options + payload

    def udp(dport: int, size: int) -> bytes:
        return struct.pack("!HHHH", 33333, dport, 8 + size, 0) + bytes(range(256)) * (size // 256) + bytes(size % 256)

    def tcp(dport: int, flags: int) -> bytes:
        return struct.pack("!HHIIBBHHH", 44444, dport, 1, 0, 0x50, flags, 65535, 0, 0)

    packets = [ip4(17, udp(port, size)) for port in (53, 80, 4000, 5353) for size in (0, 10, 600, 1000)]
    packets += [ip4(6, tcp(port, flags)) for port in (80, 443) for flags in (0x02, 0x12, 0x10, 0x11, 0x04)]
    packets += [ip4(1, struct.pack("!BBHHH", kind, 0, 0, 7, 1) + b"ping") for kind in (8, 0, 3)]
    packets += [ip4(17, udp(4000, 20), options=b"\x01\x01\x01\x00"),   # IHL 6: the UDP header moves
                ip4(17, udp(4000, 40), frag=0x2000),                     # first fragment (MF)
                ip4(17, bytes(48), frag=0x0010),                         # a later fragment: no UDP header
                ip4(47, bytes(30)), ip4(17, udp(53, 5), dst=3, ttl=1, tos=0x20), ip4(17, udp(99, 5), dst=200),
                ip4(6, tcp(80, 0x02), dst=130, tos=0xB8)]
    return [p[:4] + struct.pack("!H", i + 1) + p[6:] for i, p in enumerate(packets)]


def _ids(packets: Sequence[bytes]) -> List[int]:
    return sorted(struct.unpack("!H", p[4:6])[0] for p in packets)


@pytest.mark.device
def test_ebpf_translation_agrees_with_the_kernels_classic_bpf(ifname: str, subnet: str) -> None:
    """For each expression, what a TUN's reader gets through to_ebpf's program is exactly what the same classic
    program lets through on a packet socket watching the TUN (the kernel's own classic BPF), packet for packet."""
    from tuntap_cffi._libc import ffi

    expressions = TRANSLATED + [f"udp dst port {WANTED}", "tcp[tcpflags] & tcp-syn != 0", "ip[1] & 0xfc == 0x20",
                                "ip[6:2] & 0x3fff != 0", "greater 500", "less 100", "icmp or tcp port 443",
                                "dst host 198.18.0.0 or ip[19] > 100", "udp[2:2] == 53 and ip[8] == 1",
                                "ip[16:4] & 0x800000ff > 0x80000003"]  # (an unsigned compare above 2**31)
    outcomes = set()
    packets = _crafted(subnet)
    with _open("tun", ifname, subnet) as dev, \
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw, \
            socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)) as watch:
        raw.setsockopt(socket.SOL_SOCKET, 25, ifname.encode())  # SO_BINDTODEVICE
        watch.bind((ifname, ETH_P_ALL))
        watch.setblocking(False)
        buf = bytearray(dev.max_packet_size)
        for expression in expressions:
            program = dev.attach_filter(expression)
            insns = ffi.new("struct sock_filter[]", len(program))
            for i, (code, jt, jf, k) in enumerate(program):
                insns[i].code, insns[i].jt, insns[i].jf, insns[i].k = code, jt, jf, k
            fprog = ffi.new("struct sock_fprog *", {"len": len(program), "filter": insns})
            watch.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ffi.buffer(fprog)))
            while True:  # what the watcher queued before its filter was in place
                try:
                    watch.recv(65536)
                except BlockingIOError:
                    break
            dropped = tx_dropped(ifname)
            for packet in packets:
                raw.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
            through: List[bytes] = []

            def all_seen() -> bool:
                while True:
                    try:
                        through.append(bytes(buf[:dev.readinto(buf)]))
                    except BlockingIOError:
                        return len(through) + tx_dropped(ifname) - dropped >= len(packets)

            assert wait_until(all_seen, 5), (expression, len(through), tx_dropped(ifname) - dropped)
            classic: List[bytes] = []
            while True:
                try:
                    classic.append(watch.recv(65536))
                except BlockingIOError:
                    break
            assert _ids(through) == _ids(classic), expression
            outcomes.add(tuple(_ids(through)))
    assert len(outcomes) >= 15  # the expressions split the packets in many different ways
