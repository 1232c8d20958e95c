"""The kernel's own tun selftest (``tools/testing/selftests/net/tun.c``, Linux 6.18) through tuntap_cffi's public API.

Every case of the selftest, and the test of ours that exercises the same
behaviour with ``open_tap``/``open_queues``/``Device`` instead of raw ioctls
(real devices; the selftest's rtnetlink helpers -- deleting a link, adding a
VXLAN device and neighbours -- are the test's own set-up, done with ``ip``).

=================================================  ==========================================================
selftest case (fixture ``tun``: a TAP with          ours
IFF_NAPI | IFF_MULTI_QUEUE, two queues)
=================================================  ==========================================================
tun.delete_detach_close (EINVAL after delete)       test_queue_case[delete_detach_close] (DeviceNotReadyError,
                                                    errno EINVAL); also test_napi's detach/reattach/delete case
tun.detach_delete_close                             test_queue_case[detach_delete_close]
tun.detach_close_delete                             test_queue_case[detach_close_delete]
tun.reattach_delete_close                           test_queue_case[reattach_delete_close]
tun.reattach_close_delete                           test_queue_case[reattach_close_delete]
(NAPI / NAPI_FRAGS traffic, not a case of its own)  test_napi.py::test_napi_devices_open_and_carry_traffic_both_ways
=================================================  ==========================================================

Fixture ``tun_vnet_udptnl``: a TAP with a 24-byte virtio-net header
(``virtio_net_hdr_v1_hash_tunnel``: ``vnet_hdr_size=24``), multi-queue,
offloads CSUM | USO4 | USO6 | UDP_TUNNEL_GSO | UDP_TUNNEL_GSO_CSUM, its MAC
set, under a Geneve device (UDP checksums on) -- here a VXLAN device: this
kernel has no geneve module, and both wrap an Ethernet frame in UDP behind an
8-byte header, so every size is the selftest's --; four tunnel types (4in4,
6in4, 4in6, 6in6: inner in outer) times twelve sizes; two tests each:

- ``send_gso_packet``: a (GSO) tunnel packet written into the TAP reaches a
  UDP socket behind the tunnel device as the datagrams it stands for ->
  ``test_send_gso_packet[TYPE-SIZE]``.
- ``recv_gso_packet``: a socket's UDP_SEGMENT send into the tunnel device
  is read from the TAP as one tunnel super-packet whose header says
  UDP_L4 | UDP_TUNNEL_IPV4/6 and the segment size ->
  ``test_recv_gso_packet[TYPE-SIZE]``.

All 4 x 12 x 2 cases run, in a network namespace of the test's own (the
selftest unshares one too).  The selftest's expected failures are asserted
as failures: ``nogsosz_gtmss`` on receive (the socket refuses a datagram
over the path MTU: EMSGSIZE) and ``over_maxbytes`` both ways (written, the
frame's 16-bit lengths wrap and the stack drops it: the socket gets less
than was sent; sent, the socket refuses a 65535-byte datagram).  Not
through our API: creating the tunnel device and neighbours, and deleting an
interface (the library deletes only persistent devices,
``delete_persistent``), as the selftest does them with rtnetlink.  Options
the selftest uses without a case of their own (IFF_NAPI_FRAGS, the 20-byte
``virtio_net_hdr_v1_hash``) are covered in test_napi.py
(``test_napi_devices_open_and_carry_traffic_both_ways[tap-napi-frags]``,
``test_vnet_header_of_20_and_24_bytes_both_ways``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from conftest import NameFactory
from tuntest import checksum, delete_link, fd_count, ip, link_exists, namespace
from tuntap_cffi import Device, DeviceNotReadyError, open_queues, open_tap
from tuntap_cffi.offload import (TUN_F_CSUM, TUN_F_UDP_TUNNEL_GSO, TUN_F_UDP_TUNNEL_GSO_CSUM, TUN_F_USO4, TUN_F_USO6,
                                 VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4,
                                 VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6, VirtioNetHdr)

pytestmark = pytest.mark.device

KERNEL = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())

# ------------------------------------------------------------- fixture "tun"


def _delete(queues: List[Device], name: str) -> None:
    delete_link(name)  # (the selftest's ip_link_del)
    assert not link_exists(name)


def _delete_detach_close(queues: List[Device], name: str) -> None:
    _delete(queues, name)
    with pytest.raises(DeviceNotReadyError) as info:
        queues[0].detach_queue()
    assert info.value.errno == errno.EINVAL and "was deleted" in str(info.value)


def _detach_delete_close(queues: List[Device], name: str) -> None:
    queues[0].detach_queue()
    _delete(queues, name)


def _detach_close_delete(queues: List[Device], name: str) -> None:
    queues[0].detach_queue()
    queues[0].close()
    _delete(queues, name)


def _reattach_delete_close(queues: List[Device], name: str) -> None:
    queues[0].detach_queue()
    queues[0].attach_queue()
    _delete(queues, name)


def _reattach_close_delete(queues: List[Device], name: str) -> None:
    queues[0].detach_queue()
    queues[0].attach_queue()
    queues[0].close()
    _delete(queues, name)


QUEUE_CASES = {f.__name__[1:]: f for f in (_delete_detach_close, _detach_delete_close, _detach_close_delete,
                                           _reattach_delete_close, _reattach_close_delete)}


@pytest.mark.parametrize("case", list(QUEUE_CASES))
def test_queue_case(case: str, ifname: str) -> None:
    """The selftest's fixture: a NAPI multi-queue TAP with two queues; then the case's steps, then close."""
    with open_tap(ifname):  # warm-up: the process-wide /dev/null fd close() uses
        pass
    before = fd_count()
    queues = open_queues(ifname, 2, tap=True, napi=True)
    try:
        assert all(q.napi for q in queues)
        QUEUE_CASES[case](queues, ifname)
    finally:
        for q in queues:
            q.close()
    assert not link_exists(ifname) and fd_count() == before


# -------------------------------------------------- fixture "tun_vnet_udptnl"

ETH_HLEN, UDP_HLEN, TUNNEL_HLEN, VNET = 14, 8, 8, 24
MAX_SEGMENTS = 128  # the selftest's UDP_TUNNEL_MAX_SEGMENTS
TUNNEL_PORT, VNI, PEER_PORT = 4789, 1, 48878
TAP_MAC, PEER_MAC = "02:00:5e:10:01:01", "02:00:5e:10:01:02"  # outer: the TAP, the remote end
GNV_MAC, INNER_PEER_MAC = "02:00:5e:10:02:01", "02:00:5e:10:02:02"  # inner: the tunnel device, its peer
# Local (.1) and remote (.2) addresses of the outer and inner networks, inside the test's namespace.
NETS = {("outer", 4): "198.18.0.{}", ("outer", 6): "fd00:7474:1::{}",
        ("inner", 4): "198.19.0.{}", ("inner", 6): "fd00:7474:2::{}"}


class Tunnel(NamedTuple):
    inner: int  # IP version inside
    outer: int  # IP version of the tunnel

    @property
    def hdrlen(self) -> int:
        """The selftest's UDP_TUNNEL_HDRLEN: both IP headers, both UDP headers, the tunnel header, the inner Ethernet."""
        return ETH_HLEN + _ip_hlen(self.outer) + _ip_hlen(self.inner) + TUNNEL_HLEN + 2 * UDP_HLEN

    @property
    def mss(self) -> int:
        return 1500 - self.hdrlen

    @property
    def max(self) -> int:
        return 65535 - self.hdrlen - ETH_HLEN


TUNNELS = {"4in4": Tunnel(4, 4), "6in4": Tunnel(6, 4), "4in6": Tunnel(4, 6), "6in6": Tunnel(6, 6)}


class Size(NamedTuple):
    data: Callable[[Tunnel], int]  # the payload size
    gso: Callable[[Tunnel], int]  # the segment size (0: no GSO)
    segments: Callable[[Tunnel], int]  # how many datagrams the socket receives
    no_gso: bool = False  # what the TAP reads is no GSO packet (its header is not checked)


def _n(value: int) -> Callable[[Tunnel], int]:
    return lambda t: value


def _mss(extra: int = 0, times: int = 1) -> Callable[[Tunnel], int]:
    return lambda t: t.mss * times + extra


# The selftest's twelve variants, by name.
SIZES = {
    "nogsosz_1byte": Size(_n(1), _n(0), _n(1), True),
    "nogsosz_1mss": Size(_mss(), _n(0), _n(1), True),
    "nogsosz_gtmss": Size(_mss(1), _n(0), _n(1), True),
    "1byte": Size(_n(1), _n(1), _n(1), True),
    "1mss": Size(_mss(), _mss(), _n(1), True),
    "ltgso": Size(_mss(), _mss(1), _n(1), True),
    "gtgso": Size(_mss(1), _mss(), _n(2)),
    "2mss": Size(_mss(times=2), _mss(), _n(2)),
    "maxbytes": Size(lambda t: t.max, _mss(), lambda t: t.max // t.mss + 1),
    "over_maxbytes": Size(_n(65535), _mss(), lambda t: 65535 // t.mss + 1),
    "maxsegs": Size(_n(MAX_SEGMENTS), _n(1), _n(MAX_SEGMENTS)),
    "5byte": Size(_n(5), _n(2), _n(3)),
}
SEND_FAILS = {"over_maxbytes"}
RECV_FAILS = {"nogsosz_gtmss", "over_maxbytes"}


def _ip_hlen(version: int) -> int:
    return 20 if version == 4 else 40


def _numbers(tunnel: Tunnel, size: Size) -> Tuple[int, int, int]:
    return size.data(tunnel), size.gso(tunnel), size.segments(tunnel)


def _addr(side: str, version: int, host: int) -> str:
    return NETS[side, version].format(host)


class Rig(NamedTuple):
    ns: str
    tap: Device
    sock: socket.socket  # on the inner network, bound to .1, connected to .2:PEER_PORT
    tunnel: Tunnel


@pytest.fixture(params=list(TUNNELS))
def rig(request: pytest.FixtureRequest, ifnames: NameFactory) -> Iterator[Rig]:
    """The selftest's FIXTURE_SETUP(tun_vnet_udptnl), in a namespace of its own, the device through the API."""
    if KERNEL < (6, 17):
        pytest.skip(f"kernel {os.uname().release} has no UDP-tunnel offloads for tun (6.17+)")
    from tuntap_cffi._linux.netns import in_netns, open_netns  # (the test's socket, made in the namespace)

    tunnel = TUNNELS[request.param]
    offload = TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM
    with namespace("u") as ns:
        tap = open_tap(ifnames("t"), vnet_hdr=True, vnet_hdr_size=VNET, multi_queue=True, offload=offload, netns=ns)
        try:
            assert tap.offload == offload
            tap.hwaddr = TAP_MAC
            if tunnel.outer == 4:
                tap.disable_ipv6()  # no chatter of its own
            tap.add_address(f"{_addr('outer', tunnel.outer, 1)}/{24 if tunnel.outer == 4 else 64}")
            tap.up()
            ip("-n", ns, "neigh", "add", _addr("outer", tunnel.outer, 2), "lladdr", PEER_MAC, "dev", tap.name,
               "nud", "permanent")
            gnv = ifnames("g")
            ip("-n", ns, "link", "add", gnv, "address", GNV_MAC, "type", "vxlan", "id", str(VNI),
               "remote", _addr("outer", tunnel.outer, 2), "dstport", str(TUNNEL_PORT), "dev", tap.name,  # (its MTU: 1500 less the tunnel's)
               "udpcsum", "udp6zerocsumrx")
            if tunnel.inner == 4:
                ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{gnv}.disable_ipv6=1")
            inner_local = _addr("inner", tunnel.inner, 1)
            ip("-n", ns, "addr", "add", f"{inner_local}/{24 if tunnel.inner == 4 else 64}", "dev", gnv, "nodad")
            ip("-n", ns, "neigh", "add", _addr("inner", tunnel.inner, 2), "lladdr", INNER_PEER_MAC, "dev", gnv,
               "nud", "permanent")
            ip("-n", ns, "link", "set", gnv, "up")
            for version, name, address in ((tunnel.outer, tap.name, _addr("outer", tunnel.outer, 1)),
                                           (tunnel.inner, gnv, inner_local)):
                if version == 6:
                    _wait_local(ns, name, address)
            nsfd = open_netns(ns)
            try:
                family = socket.AF_INET if tunnel.inner == 4 else socket.AF_INET6
                sock = in_netns(nsfd, lambda: socket.socket(family, socket.SOCK_DGRAM), lambda s: s.close())
            finally:
                os.close(nsfd)
            with sock:
                sock.bind((inner_local, 0))
                sock.connect((_addr("inner", tunnel.inner, 2), PEER_PORT))
                if tunnel.inner == 4:
                    sock.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, 23, 2)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.settimeout(10)
                yield Rig(ns, tap, sock, tunnel)
        finally:
            tap.close()


def _wait_local(ns: str, name: str, address: str) -> None:
    """Wait until *address* is local (the selftest's ip_route_check): nodad routes come from a work queue."""
    from tuntest import wait_until

    assert wait_until(lambda: address in ip("-n", ns, "-6", "route", "show", "table", "local", "dev", name), 10)


def _ip_header(version: int, src: str, dst: str, payload_len: int) -> bytes:
    """An IP header for a UDP payload; a length over 16 bits wraps, as in the selftest's C (over_maxbytes)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if version == 6:
        return struct.pack("!IHBB", 6 << 28, payload_len & 0xFFFF, 17, 64) + s + d
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, (20 + payload_len) & 0xFFFF, 0, 0x4000, 64, 17, 0, s, d)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def _pseudo_sum(src: str, dst: str, length: int) -> int:
    """The folded UDP pseudo-header sum (not inverted): what a NEEDS_CSUM packet carries in its checksum field."""
    words = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    total: int = sum(struct.unpack(f"!{len(words) // 2}H", words)) + 17 + (length & 0xFFFF)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _frame_into_tap(rig: Rig, data_len: int, gso: int) -> bytes:
    """The selftest's build_gso_packet_into_tun: header + Ethernet/IP/UDP/VXLAN/Ethernet/IP/UDP + zeros."""
    t, port = rig.tunnel, rig.sock.getsockname()[1]
    ethertype = {4: b"\x08\x00", 6: b"\x86\xdd"}
    isrc, idst = _addr("inner", t.inner, 2), _addr("inner", t.inner, 1)
    ulen = UDP_HLEN + data_len
    inner = (_mac(GNV_MAC) + _mac(INNER_PEER_MAC) + ethertype[t.inner] + _ip_header(t.inner, isrc, idst, ulen)
             + struct.pack("!HHHH", PEER_PORT, port, ulen & 0xFFFF, _pseudo_sum(isrc, idst, ulen)) + bytes(data_len))
    vxlan = struct.pack("!II", 0x08000000, VNI << 8)  # flags: I (a valid VNI)
    olen = UDP_HLEN + len(vxlan) + len(inner)
    frame = (_mac(TAP_MAC) + _mac(PEER_MAC) + ethertype[t.outer]
             + _ip_header(t.outer, _addr("outer", t.outer, 2), _addr("outer", t.outer, 1), olen)
             + struct.pack("!HHHH", 5555, TUNNEL_PORT, olen & 0xFFFF, 0) + vxlan + inner)
    outer_th = ETH_HLEN + _ip_hlen(t.outer)
    inner_nh = outer_th + UDP_HLEN + TUNNEL_HLEN + ETH_HLEN
    inner_th = inner_nh + _ip_hlen(t.inner)
    hdr = VirtioNetHdr(bytearray(VNET), VNET)
    tunnel_type = VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 if t.outer == 4 else VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6
    hdr.set(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_UDP_L4 | tunnel_type if gso else 0,
            hdr_len=inner_th + UDP_HLEN, gso_size=gso, csum_start=inner_th, csum_offset=6)
    if gso:
        hdr.outer_th_offset, hdr.inner_nh_offset = outer_th, inner_nh
    return bytes(hdr) + frame


@pytest.mark.parametrize("size", list(SIZES))
def test_send_gso_packet(rig: Rig, size: str) -> None:
    """send_gso_packet: written into the TAP, received by the socket behind the tunnel device."""
    data_len, gso, segments = _numbers(rig.tunnel, SIZES[size])
    frame = _frame_into_tap(rig, data_len, gso)
    assert rig.tap.write(frame) == len(frame)
    got: List[int] = []
    if size in SEND_FAILS:  # XFAIL in the selftest: its lengths wrap at 16 bits, and the stack drops the packet
        rig.sock.settimeout(1)
        with pytest.raises(socket.timeout):
            while True:
                got.append(len(rig.sock.recv(65536)))
        assert sum(got) < data_len, got
        return
    while sum(got) < data_len:
        got.append(len(rig.sock.recv(65536)))
    assert sum(got) == data_len and len(got) == segments, got


def _payload_of(packet: bytes, rig: Rig) -> Optional[int]:
    """The selftest's parse_udp_tunnel_vnet_packet: the inner UDP payload's length, None if it is not ours."""
    t, at = rig.tunnel, VNET + ETH_HLEN
    if len(packet) < VNET + rig.tunnel.hdrlen + ETH_HLEN or packet[at] >> 4 != t.outer:
        return None
    at += _ip_hlen(t.outer)
    if packet[at - (11 if t.outer == 4 else 34)] != 17 or packet[at + 2:at + 4] != TUNNEL_PORT.to_bytes(2, "big"):
        return None
    at += UDP_HLEN + TUNNEL_HLEN + ETH_HLEN
    if packet[at] >> 4 != t.inner or packet[at + (9 if t.inner == 4 else 6)] != 17:
        return None
    at += _ip_hlen(t.inner)
    if packet[at + 2:at + 4] != PEER_PORT.to_bytes(2, "big"):
        return None
    return len(packet) - at - UDP_HLEN


@pytest.mark.parametrize("size", list(SIZES))
def test_recv_gso_packet(rig: Rig, size: str) -> None:
    """recv_gso_packet: a UDP_SEGMENT send into the tunnel device, read from the TAP with its tunnel header."""
    data_len, gso, _ = _numbers(rig.tunnel, SIZES[size])
    ancillary = [(socket.SOL_UDP, 103, struct.pack("=H", gso))] if gso else []  # UDP_SEGMENT
    if size in RECV_FAILS:  # XFAIL in the selftest: over the path MTU without GSO, or over 64 KiB
        with pytest.raises(OSError) as info:
            rig.sock.sendmsg([bytes(data_len)], ancillary)
        assert info.value.errno == errno.EMSGSIZE
        return
    assert rig.sock.sendmsg([bytes(data_len)], ancillary) == data_len
    total, first = 0, None
    while total < data_len:
        packet = rig.tap.read(timeout=10)
        length = _payload_of(packet, rig)
        if length is None:
            continue  # the namespace's own chatter (IPv6 neighbour discovery, MLD)
        if first is None:
            first = VirtioNetHdr(bytearray(packet[:VNET]), VNET)
        total += length
    assert total == data_len and first is not None
    if not SIZES[size].no_gso:
        tunnel_type = VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 if rig.tunnel.outer == 4 else VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6
        assert (first.gso_type, first.gso_size) == (VIRTIO_NET_HDR_GSO_UDP_L4 | tunnel_type, gso)
