"""The kernel options of tun's own selftest, on real devices: NAPI, the 20/24-byte virtio-net headers and the
UDP-tunnel offloads, the send buffer and the link type.

Each test opens its own devices (the ``ifname``/``ifnames`` fixtures), sends
traffic only inside its own subnet, and checks the kernel's side through
sysfs, the socket that receives what was written, or what the device reads.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
from typing import Iterator, NamedTuple

import pytest

from conftest import NameFactory
from tuntest import (PEER_MAC, checksum, delete_link, disable_ipv6, ethernet, fd_count, ip, ipv4_udp, link_exists,
                     mac_bytes, parse_ipv4_udp, read_matching, receiver, udp_flow, udp_socket)
from tuntap_cffi import Device, DeviceBusyError, InvalidPacketError, open_queues, open_tap, open_tun
from tuntap_cffi.device import TunFlags
from tuntap_cffi.offload import (TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UDP_TUNNEL_GSO,
                                 TUN_F_UDP_TUNNEL_GSO_CSUM, TUN_F_USO4, TUN_F_USO6,
                                 VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4,
                                 VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, VirtioNetHdr)

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARPHRD_ETHER, ARPHRD_NONE = 1, 0xFFFE
KERNEL = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
TUNNEL_KERNEL = KERNEL >= (6, 17)  # TUN_F_UDP_TUNNEL_GSO(_CSUM) arrived in 6.17


def sysfs_flags(name: str) -> int:
    with open(f"/sys/class/net/{name}/tun_flags") as f:
        return int(f.read(), 16)


def up_with_address(dev: Device, subnet: str) -> None:
    """SUBNET.1/24 on *dev*, IPv6 off, up; a TAP also gets the permanent neighbour SUBNET.2 at PEER_MAC."""
    disable_ipv6(dev.name)
    ip("addr", "add", f"{subnet}.1/24", "dev", dev.name)
    if dev.kind.value == "tap":
        ip("neigh", "add", f"{subnet}.2", "lladdr", PEER_MAC, "dev", dev.name, "nud", "permanent")
    dev.up()


def exchange(dev: Device, subnet: str, header: bytes = b"") -> None:
    """One UDP datagram each way through *dev*: written in, received by a socket; sent out, read back.

    *header* goes in front of what is written (a virtio-net header); what is
    read has ``dev.vnet_hdr_size`` bytes of header, which must be a plain one.
    """
    tap = dev.kind.value == "tap"
    mac = mac_bytes(dev.hwaddr) if tap else b""
    with receiver(subnet) as rx, udp_socket(subnet, dev.name, connect_port=9) as tx:
        port = rx.getsockname()[1]
        pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, port, b"in through napi")
        frame = mac + mac_bytes(PEER_MAC) + b"\x08\x00" + pkt if tap else pkt
        assert dev.write(header + frame) == len(header) + len(frame)
        assert rx.recvfrom(100) == (b"in through napi", (f"{subnet}.2", 4000))

        tx.send(b"out of the stack")
        skip = 14 if tap else 0
        want = udp_flow(f"{subnet}.2", 9)
        got = read_matching(dev, lambda p: len(p) > skip and want(p[skip:]))
        if tap:
            assert got[:6] == mac_bytes(PEER_MAC) and got[6:12] == mac
        assert parse_ipv4_udp(got[skip:])[4] == b"out of the stack"


# ------------------------------------------------------------------------ NAPI


@pytest.mark.parametrize("kind, frags", [("tun", False), ("tap", False), ("tap", True)],
                         ids=["tun-napi", "tap-napi", "tap-napi-frags"])
def test_napi_devices_open_and_carry_traffic_both_ways(kind: str, frags: bool, ifname: str, subnet: str) -> None:
    opener = open_tap if kind == "tap" else open_tun
    with opener(ifname, napi=True, napi_frags=frags) as dev:
        assert dev.napi
        assert TunFlags.NAPI in dev.flags and (TunFlags.NAPI_FRAGS in dev.flags) == frags
        assert sysfs_flags(ifname) & 0x30 == (0x30 if frags else 0x10)  # the kernel's own record
        up_with_address(dev, subnet)
        exchange(dev, subnet)


def test_napi_queues_detach_reattach_and_delete(ifname: str, subnet: str) -> None:
    """The selftest's queue cases on a multi-queue NAPI/NAPI_FRAGS TAP: traffic through the attached queue
    while the other is detached, reattach, then delete the interface under a detached queue and close."""
    queues = open_queues(ifname, 2, tap=True, napi=True, napi_frags=True)
    try:
        assert all(q.napi and TunFlags.NAPI_FRAGS in q.flags and TunFlags.MULTI_QUEUE in q.flags for q in queues)
        queues[1].detach_queue()
        up_with_address(queues[0], subnet)
        exchange(queues[0], subnet)  # the kernel steers the reply to the one attached queue
        queues[1].attach_queue()
        queues[1].detach_queue()
        delete_link(ifname)
        assert not link_exists(ifname)
        with pytest.raises(OSError) as info:
            queues[1].attach_queue()  # nothing left to attach to
        assert info.value.errno == errno.EINVAL
    finally:
        for q in queues:
            q.close()
    assert not link_exists(ifname)


def test_a_plain_device_is_not_napi(ifname: str) -> None:
    with open_tap(ifname) as dev:
        assert not dev.napi and not dev.flags & (TunFlags.NAPI | TunFlags.NAPI_FRAGS)
        assert sysfs_flags(ifname) & 0x30 == 0


@pytest.mark.parametrize("call, exc, words", [
    (lambda n: open_tun(n, napi=True, napi_frags=True), ValueError, "TAP devices only"),
    (lambda n: open_tap(n, napi_frags=True), ValueError, "needs napi=True"),
    (lambda n: open_tap(n, napi=1), TypeError, "napi must be True or False"),
    (lambda n: open_tap(n, napi=True, napi_frags="yes"), TypeError, "napi_frags must be True or False"),
], ids=["frags-on-tun", "frags-without-napi", "napi-not-bool", "frags-not-bool"])
def test_napi_misuse_is_refused_before_any_syscall(call, exc, words, ifname: str) -> None:  # type: ignore[no-untyped-def]
    before = fd_count()
    with pytest.raises(exc, match=words):
        call(ifname)
    assert fd_count() == before and not link_exists(ifname)


NO_NET_ADMIN_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from tuntap_cffi import TunTapPermissionError, open_tap
    name = sys.argv[2]
    with open_tap(name) as dev:  # its owner: attaching needs no capability
        print("attached", dev.napi)
    try:
        open_tap(name, napi=True, napi_frags=True)
    except TunTapPermissionError as exc:
        print("refused", exc.errno, exc.filename)
        print(exc.strerror)
    else:
        print("opened")
    """
)


def test_napi_frags_needs_cap_net_admin_even_to_attach(ifname: str) -> None:
    """tun_set_iff() checks capable(CAP_NET_ADMIN) for IFF_NAPI_FRAGS before anything else."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed"
    open_tap(ifname, persist=True, owner=os.geteuid()).close()
    drop = [setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
    proc = subprocess.run(drop + [sys.executable, "-c", NO_NET_ADMIN_CHILD, REPO, ifname],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["attached False", f"refused {errno.EPERM} {ifname}"], lines
    assert "napi_frags=True" in lines[2] and "CAP_NET_ADMIN in the initial user namespace" in lines[2], lines


# ------------------------------------------------ virtio-net headers of 20 and 24 bytes


@pytest.mark.parametrize("size", [20, 24])
def test_vnet_header_of_20_and_24_bytes_both_ways(size: int, ifname: str, subnet: str) -> None:
    with open_tap(ifname, vnet_hdr=True, vnet_hdr_size=size) as dev:
        assert dev.vnet_hdr_size == size
        with Device.from_fd(os.dup(dev.fileno()), packet_info=False) as twin:
            assert twin.vnet_hdr_size == size  # TUNGETVNETHDRSZ: the kernel's value
        assert dev.max_packet_size == dev.mtu + 14 + 4 + size
        up_with_address(dev, subnet)
        zero = VirtioNetHdr(bytearray(size), size)
        exchange(dev, subnet, bytes(zero))
        # What the kernel wrote in front of the frame it gave us: a plain header of that size.
        with udp_socket(subnet, dev.name, connect_port=9) as tx:
            tx.send(b"x" * 40)
            buf = bytearray(dev.max_packet_size)
            want = udp_flow(f"{subnet}.2", 9)
            frame = read_matching(dev, lambda p: want(p[14:]), buf=buf)
        hdr = VirtioNetHdr(buf, size)
        hdr.check(len(frame))
        assert hdr.gso_type == 0 and hdr.hash_report == 0
        if size == 24:
            assert (hdr.outer_th_offset, hdr.inner_nh_offset) == (0, 0)  # no tunnel


@pytest.mark.parametrize("size, exc", [(11, ValueError), (16, ValueError), (9, ValueError), (True, TypeError),
                                       ("24", TypeError)])
def test_other_vnet_header_sizes_are_refused_before_any_syscall(size: object, exc: type, ifname: str) -> None:
    before = fd_count()
    with pytest.raises(exc):  # type: ignore[call-overload]
        open_tap(ifname, vnet_hdr=True, vnet_hdr_size=size)  # type: ignore[arg-type]
    assert fd_count() == before and not link_exists(ifname)


# ------------------------------------------------------------ UDP-tunnel offloads

PLAIN = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6
TUNNEL = TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM


@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_udp_tunnel_offloads_are_probed(kind: str, ifname: str) -> None:
    """On 6.17+ the kernel takes 0x180; before, the library drops them and says so in what it returns."""
    opener = open_tap if kind == "tap" else open_tun
    with opener(ifname, vnet_hdr=True, vnet_hdr_size=24, offload=PLAIN | TUNNEL) as dev:
        expected = PLAIN | TUNNEL if TUNNEL_KERNEL else PLAIN
        assert dev.offload == expected, f"kernel {os.uname().release}: {dev.offload:#x}"
        assert dev.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_UDP_TUNNEL_GSO) == (
            TUN_F_CSUM | TUN_F_TSO4 | (TUN_F_UDP_TUNNEL_GSO if TUNNEL_KERNEL else 0))
        assert dev.max_packet_size == 65535 + dev.vnet_hdr_size + (14 + 4 if kind == "tap" else 0)


@pytest.mark.parametrize("size, flags, words", [
    (10, PLAIN | TUNNEL, "need vnet_hdr_size=24"),
    (24, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_UDP_TUNNEL_GSO_CSUM, "needs TUN_F_UDP_TUNNEL_GSO too"),
    (24, TUN_F_CSUM | TUN_F_UDP_TUNNEL_GSO, "needs a plain segmentation offload"),
    (24, TUN_F_UDP_TUNNEL_GSO | TUN_F_TSO4, "need TUN_F_CSUM"),
], ids=["small-header", "csum-without-gso", "no-plain-gso", "no-csum"])
def test_udp_tunnel_offload_rules_are_enforced_before_any_syscall(size: int, flags: int, words: str,
                                                                  ifname: str) -> None:
    before = fd_count()
    with pytest.raises(ValueError, match=words):
        open_tap(ifname, vnet_hdr=True, vnet_hdr_size=size, offload=flags)
    assert fd_count() == before and not link_exists(ifname)
    with open_tap(ifname, vnet_hdr=True, vnet_hdr_size=size) as dev:
        with pytest.raises(ValueError, match=words):
            dev.set_offload(flags)
        assert dev.offload == 0


class Vxlan(NamedTuple):
    tap: Device
    name: str  # of the VXLAN device
    inner: str  # its /24 prefix
    port: int  # its UDP port
    vni: int


@pytest.fixture
def vxlan(ifnames: NameFactory, subnet: str) -> Iterator[Vxlan]:
    """A TAP (SUBNET.1, neighbour SUBNET.2) under a VXLAN device whose remote end is SUBNET.2.

    The inner subnet is SUBNET's twin in the other /16 of 198.18.0.0/15, on
    the VXLAN device, with a permanent neighbour .2; port and VNI are drawn
    from the subnet's number, so two runs at once do not share them.
    """
    if not TUNNEL_KERNEL:
        pytest.skip(f"kernel {os.uname().release} has no UDP-tunnel offloads for tun (6.17+)")
    tap_name, vx = ifnames("t"), ifnames("x")
    third = int(subnet.split(".")[2])
    inner = ("198.19." if subnet.startswith("198.18.") else "198.18.") + str(third)
    port, vni = 40000 + third + (256 if subnet.startswith("198.19.") else 0), 7000 + third
    dev = open_tap(tap_name, vnet_hdr=True, vnet_hdr_size=24, offload=PLAIN | TUNNEL)
    try:
        up_with_address(dev, subnet)
        ip("link", "add", vx, "type", "vxlan", "id", str(vni), "remote", f"{subnet}.2", "local", f"{subnet}.1",
           "dstport", str(port), "dev", tap_name, "udpcsum")
        disable_ipv6(vx)
        ip("addr", "add", f"{inner}.1/24", "dev", vx)
        ip("neigh", "add", f"{inner}.2", "lladdr", PEER_MAC, "dev", vx, "nud", "permanent")
        ip("link", "set", vx, "up")
        yield Vxlan(dev, vx, inner, port, vni)
    finally:
        delete_link(vx)
        dev.close()


def test_udp_tunnel_gso_packets_read_with_their_tunnel_offsets(vxlan: Vxlan) -> None:
    """The selftest's read side: a USO datagram sent into a VXLAN leaves the TAP as one tunnel super-packet."""
    dev, vx, inner = vxlan.tap, vxlan.name, vxlan.inner
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 25, vx.encode())  # SO_BINDTODEVICE
        s.setsockopt(socket.SOL_UDP, 103, 1000)  # UDP_SEGMENT: one send, many 1000-byte datagrams
        s.bind((f"{inner}.1", 0))
        s.sendto(bytes(range(256)) * 16, (f"{inner}.2", 9))  # 4096 bytes: 5 segments
    finally:
        s.close()
    buf = bytearray(dev.max_packet_size)

    def tunnelled(frame: bytes) -> bool:  # IPv4/UDP to 4789 after the Ethernet header
        return (len(frame) > 50 and frame[12:14] == b"\x08\x00" and frame[14 + 9] == 17
                and frame[36:38] == vxlan.port.to_bytes(2, "big"))

    frame = read_matching(dev, tunnelled, buf=buf)
    hdr = VirtioNetHdr(buf, 24)
    hdr.check(len(frame))
    kind = hdr.gso_type
    assert kind & 0x60 == 0x20, f"gso_type {kind:#x}: not UDP-tunnel-over-IPv4"  # VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
    assert kind & 0x1F == 5 and hdr.gso_size == 1000  # VIRTIO_NET_HDR_GSO_UDP_L4
    # Outer: Ethernet 14 + IPv4 20 -> outer UDP at 34; then VXLAN 8 + inner Ethernet 14 -> inner IP at 64.
    assert (hdr.outer_th_offset, hdr.inner_nh_offset) == (34, 34 + 8 + 8 + 14)
    inner_ip = frame[hdr.inner_nh_offset:]
    assert inner_ip[0] == 0x45 and inner_ip[9] == 17
    assert struct.unpack("!H", inner_ip[2:4])[0] == len(inner_ip) == 20 + 8 + 4096  # one super-packet
    assert socket.inet_ntoa(inner_ip[16:20]) == f"{inner}.2"
    assert ethernet(PEER_MAC, dev.hwaddr, 0x0800, b"") == frame[:14]


# ------------------------------------------------------------ sndbuf, link type


def test_sndbuf_reads_and_sets_the_kernels_value(ifname: str) -> None:
    with open_tun(ifname) as dev:
        assert dev.sndbuf == 2**31 - 1  # tun's default: no limit
        dev.sndbuf = 123456
        assert dev.sndbuf == 123456
        with Device.from_fd(os.dup(dev.fileno()), packet_info=False) as twin:
            assert twin.sndbuf == 123456  # the interface's, not this Device's
        for bad, exc in ((0, ValueError), (-1, ValueError), (2**31, ValueError), (1.5, TypeError),
                         (True, TypeError)):
            with pytest.raises(exc):
                dev.sndbuf = bad  # type: ignore[assignment]
        assert dev.sndbuf == 123456
    with pytest.raises(ValueError, match="closed"):
        dev.sndbuf


def test_link_type_of_a_tap(ifname: str, subnet: str) -> None:
    """TUNSETLINK: raw IP over a TAP (ARPHRD_NONE); the kernel takes it only while the interface is down."""
    with open_tap(ifname) as dev:
        assert dev.link_type == ARPHRD_ETHER
        dev.link_type = ARPHRD_NONE
        assert dev.link_type == ARPHRD_NONE
        with open(f"/sys/class/net/{ifname}/type") as f:
            assert int(f.read()) == ARPHRD_NONE
        disable_ipv6(ifname)
        dev.up()
        with pytest.raises(DeviceBusyError, match=r"Device\.down\(\) first") as info:
            dev.link_type = ARPHRD_ETHER
        assert info.value.errno == errno.EBUSY and info.value.filename == ifname
        assert dev.link_type == ARPHRD_NONE
        dev.down()
        dev.link_type = ARPHRD_ETHER
        assert dev.link_type == ARPHRD_ETHER
        for bad, exc in ((-1, ValueError), (0x10000, ValueError), ("1", TypeError)):
            with pytest.raises(exc):
                dev.link_type = bad  # type: ignore[assignment]


def test_link_type_of_a_tun_is_read_only(ifname: str) -> None:
    with open_tun(ifname) as dev:
        assert dev.link_type == ARPHRD_NONE
        with pytest.raises(ValueError, match="TAP only"):
            dev.link_type = ARPHRD_ETHER
        assert dev.link_type == ARPHRD_NONE


def _ipv4(src: str, dst: str, payload_len: int) -> bytes:
    """An IPv4 header for a UDP payload of *payload_len* bytes, DF, its checksum filled in."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def test_udp_tunnel_gso_super_packet_written_arrives_as_datagrams(vxlan: Vxlan, subnet: str) -> None:
    """The selftest's write side: one VXLAN-wrapped USO super-packet written with a 24-byte header
    reaches a socket behind the VXLAN device as the datagrams it stands for."""
    dev, inner = vxlan.tap, vxlan.inner
    payload = bytes(range(256)) * 16  # 4096 bytes: segments of 1000, 1000, 1000, 1000, 96
    with receiver(inner) as rx:
        rx_port = rx.getsockname()[1]
        # Inner: IPv4/UDP to the socket, its checksum field holding the pseudo-header sum (NEEDS_CSUM).
        ulen = 8 + len(payload)
        seed = (sum(struct.unpack("!4H", socket.inet_aton(f"{inner}.2") + socket.inet_aton(f"{inner}.1")))
                + 17 + ulen)
        while seed > 0xFFFF:
            seed = (seed & 0xFFFF) + (seed >> 16)
        inner_pkt = _ipv4(f"{inner}.2", f"{inner}.1", ulen) + struct.pack("!HHHH", 4000, rx_port, ulen, seed) + payload
        inner_frame = mac_bytes(ip_link_mac(vxlan.name)) + mac_bytes(PEER_MAC) + b"\x08\x00" + inner_pkt
        # Outer: VXLAN (flags I, the VNI) in UDP without a checksum, in IPv4, in Ethernet to the TAP.
        vx_hdr = struct.pack("!II", 0x08000000, vxlan.vni << 8)
        olen = 8 + len(vx_hdr) + len(inner_frame)
        outer = (mac_bytes(dev.hwaddr) + mac_bytes(PEER_MAC) + b"\x08\x00" + _ipv4(f"{subnet}.2", f"{subnet}.1", olen)
                 + struct.pack("!HHHH", 5555, vxlan.port, olen, 0) + vx_hdr + inner_frame)
        outer_th, inner_nh = 14 + 20, 14 + 20 + 8 + 8 + 14
        hdr = VirtioNetHdr(bytearray(24), 24)
        hdr.set(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type=VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
                hdr_len=inner_nh + 28, gso_size=1000, csum_start=inner_nh + 20, csum_offset=6)
        hdr.outer_th_offset, hdr.inner_nh_offset = outer_th - 20, inner_nh  # the outer UDP inside its IP header
        with pytest.raises(InvalidPacketError):
            dev.write(bytes(hdr) + outer)  # the kernel reads the tunnel fields: it refuses the lie
        hdr.outer_th_offset = outer_th
        hdr.check(len(outer))
        assert dev.write(bytes(hdr) + outer) == 24 + len(outer)
        got = [rx.recvfrom(2000) for _ in range(5)]
    assert [len(data) for data, _ in got] == [1000, 1000, 1000, 1000, 96]
    assert b"".join(data for data, _ in got) == payload  # in order, checksums accepted by the stack
    assert {peer for _, peer in got} == {(f"{inner}.2", 4000)}


def ip_link_mac(name: str) -> str:
    with open(f"/sys/class/net/{name}/address") as f:
        return f.read().strip()
