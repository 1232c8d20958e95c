"""macOS link configuration through the BSD layer, against the simulated XNU kernel (runs on Linux).

The darwin backend's mtu, flags, index, addresses and routes go through
``tuntap_cffi._bsd`` to ``tuntap_cffi._darwin.libc``; here that boundary is
``xnu_net.XnuNetKernel``, whose sockets are real socketpairs (fd counts
are real) and whose errno values are XNU's.  The last tests drive the same
calls through ``LinkConfig`` (the Device's configuration half) with the
darwin backend in place of Linux's.
"""

from __future__ import annotations

import errno
import struct
import threading
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from typing import Iterator, List, Tuple

import pytest
from hypothesis import given, strategies as st

import darwin_kernel
from darwin_kernel import GOLDEN
from tuntest import fd_count
from xnu_net import AF_INET, AF_INET6, AF_LINK, C, E, IFF_BROADCAST, IFF_MULTICAST, IFF_POINTOPOINT, IFF_UP, \
    Ifnet, PF_ROUTE, SOCK_DGRAM, SOCK_RAW, XnuNetKernel, installed, roundup32
from tuntap_cffi import DeviceNotFoundError, TunTapError, TunTapPermissionError, _backend
from tuntap_cffi._bsd import Numbers, netconfig, sockaddr
from tuntap_cffi._constants import DeviceKind
from tuntap_cffi._darwin import backend, cdefs, errnos
from tuntap_cffi._link import LinkConfig
from tuntap_cffi._netvalues import IPInterface
from tuntap_cffi.config import Address, Route


class Utun:
    """A utun opened through the backend, its control socket, and the kernel under both."""

    def __init__(self, kernel: XnuNetKernel) -> None:
        self.kernel = kernel
        self.fd, self.name = backend.open_utun("")
        self.ctl = backend.control_socket()
        self.index = backend.get_int(self.ctl, self.name, "ifindex")

    @property
    def ifnet(self) -> Ifnet:
        return self.kernel.ifnets[self.name]

    def calls(self) -> int:
        return len(self.kernel.calls)


@pytest.fixture
def xnu() -> Iterator[XnuNetKernel]:
    kernel = XnuNetKernel()
    with installed(kernel):
        yield kernel


@pytest.fixture
def utun(xnu: XnuNetKernel) -> Iterator[Utun]:
    dev = Utun(xnu)
    before = fd_count()
    yield dev
    assert fd_count() == before  # no control, AF_INET6 or route socket left behind on any path
    assert set(xnu.net_sockets) == {dev.ctl}


def ip(text: str) -> IPInterface:
    return ip_interface(text)


# ------------------------------------------------------------------ link settings

def test_control_socket_is_an_inet_datagram_socket_closed_on_exec(xnu: XnuNetKernel) -> None:
    import os

    ctl = backend.control_socket()
    assert xnu.net_sockets[ctl] == AF_INET and ("socket", AF_INET, SOCK_DGRAM) in xnu.calls
    assert not os.get_inheritable(ctl)


def test_mtu_reads_and_sets_through_siocgifmtu(utun: Utun) -> None:
    assert backend.get_int(utun.ctl, utun.name, "mtu") == 1500  # UTUN_DEFAULT_MTU
    backend.set_int(utun.ctl, utun.name, "mtu", 1280)
    assert utun.ifnet.mtu == 1280 and backend.get_int(utun.ctl, utun.name, "mtu") == 1280
    assert ("ioctl", "SIOCSIFMTU") in utun.kernel.calls and ("ioctl", "SIOCGIFMTU") in utun.kernel.calls
    with pytest.raises(TunTapError) as info:
        backend.set_int(utun.ctl, utun.name, "mtu", 71)  # below IF_MINMTU
    assert info.value.errno == errno.EINVAL and info.value.filename == utun.name


def test_flags_go_down_and_up_keeping_pointopoint(utun: Utun) -> None:
    flags = backend.get_link_flags(utun.ctl, utun.name)
    assert flags & IFF_UP and flags & IFF_POINTOPOINT  # utun_attach
    backend.set_link_flags(utun.ctl, utun.name, flags & ~IFF_UP & ~IFF_POINTOPOINT)
    assert utun.ifnet.flags == flags & ~IFF_UP  # IFF_CANTCHANGE kept IFF_POINTOPOINT
    backend.set_link_flags(utun.ctl, utun.name, utun.ifnet.flags | IFF_UP)
    assert backend.get_link_flags(utun.ctl, utun.name) == flags


def test_ifindex_is_if_nametoindex_and_an_unknown_name_is_not_found(utun: Utun) -> None:
    assert utun.index == utun.ifnet.index and utun.index != utun.kernel.ifnets["lo0"].index
    with pytest.raises(DeviceNotFoundError) as info:
        backend.get_int(utun.ctl, "utun99", "ifindex")
    assert info.value.errno == errno.ENXIO and info.value.filename == "utun99"


def test_an_ioctl_on_a_gone_interface_is_not_found(utun: Utun) -> None:
    with pytest.raises(DeviceNotFoundError):
        backend.get_link_flags(utun.ctl, "utun42")


@pytest.mark.parametrize("name", ["", "utun" + "9" * 12, "ut\0n0"])
def test_a_name_that_does_not_fit_ifreq_is_a_valueerror_before_any_call(utun: Utun, name: str) -> None:
    before = utun.calls()
    with pytest.raises(ValueError, match="1 to 15"):
        backend.get_link_flags(utun.ctl, name)
    assert utun.calls() == before


def test_txqueuelen_stays_unsupported_without_a_call(utun: Utun) -> None:
    from tuntap_cffi import UnsupportedPlatformError

    before = utun.calls()
    with pytest.raises(UnsupportedPlatformError):
        backend.get_int(utun.ctl, utun.name, "txqueuelen")
    assert utun.calls() == before


def test_siocsiflladdr_sets_a_feth_mac_and_a_utun_has_none(utun: Utun) -> None:
    k = backend.numbers(utun.kernel.ffi)
    feth = utun.kernel.attach("feth0", IFF_UP | IFF_BROADCAST | IFF_MULTICAST, 1500)
    feth.lladdr = bytes(6)
    netconfig.set_lladdr(utun.kernel, k, utun.ctl, "feth0", bytes.fromhex("02005e100001"))
    assert feth.lladdr == bytes.fromhex("02005e100001")
    with pytest.raises(TunTapError) as info:
        netconfig.set_lladdr(utun.kernel, k, utun.ctl, utun.name, bytes.fromhex("02005e100001"))
    assert E["EOPNOTSUPP"] == 102 and info.value.errno == errno.EOPNOTSUPP  # 95 on Linux


# ------------------------------------------------------------------ IPv4 addresses

def test_ipv4_address_with_peer_is_siocaifaddr_with_the_peer_as_broadaddr(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"), IPv4Address("198.18.0.2"))
    [ia] = utun.ifnet.inet
    assert (ia.addr, ia.mask, ia.dst) == (bytes([198, 18, 0, 1]), bytes([255, 255, 255, 0]), bytes([198, 18, 0, 2]))
    assert backend.list_addresses(utun.ctl, utun.index, utun.name) == [
        Address(ip("198.18.0.1/24"), IPv4Address("198.18.0.2"))]
    # Adding it again updates it (in_control finds the address): harmless.
    backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"), IPv4Address("198.18.0.3"))
    assert [a.peer for a in backend.list_addresses(utun.ctl, utun.index, utun.name)] == [IPv4Address("198.18.0.3")]


def test_ipv4_without_peer_on_a_utun_is_a_valueerror_before_any_call(utun: Utun) -> None:
    before = utun.calls()
    with pytest.raises(ValueError, match="point-to-point.*peer"):
        backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"), None)
    assert utun.calls() == before and utun.ifnet.inet == []


def test_the_kernel_itself_says_edestaddrreq_and_the_backend_maps_macos_numbers(utun: Utun) -> None:
    """in_control's rule, reached with a hand-made ifaliasreq (the backend never sends one)."""
    kernel = utun.kernel
    req = kernel.ffi.new("struct ifaliasreq *")
    req.ifra_name = utun.name.encode()
    sin = kernel.ffi.cast("struct sockaddr_in *", kernel.ffi.addressof(req[0], "ifra_addr"))
    cdefs.fill_sockaddr_in(sin, bytes([198, 18, 0, 1]), 0)
    assert kernel.ioctl(utun.ctl, GOLDEN["ioctls"]["SIOCAIFADDR"], req) == -1
    assert kernel.errno() == E["EDESTADDRREQ"] == 39 != errno.EDESTADDRREQ  # XNU's number, not Linux's
    k = backend.numbers(kernel.ffi)
    exc = netconfig._error(kernel, k, "cannot add", utun.name)
    assert isinstance(exc, TunTapError) and exc.errno == errno.EDESTADDRREQ
    assert "Destination address required" in str(exc)


@pytest.mark.parametrize("name", sorted(cdefs.ERRNO))
def test_every_macos_errno_maps_to_the_host_errno_of_that_name(name: str) -> None:
    k = Numbers("macOS", cdefs.CONSTANTS, {}, cdefs.ERRNO, 4)
    assert k.host_errno(cdefs.ERRNO[name]) == getattr(errno, name)


@pytest.mark.parametrize("name", sorted(set(E) | set(darwin_kernel.E)))
def test_the_packet_path_and_configuration_map_every_simulated_errno_alike(name: str) -> None:
    """One table, one function: what either simulated kernel reports (ENOTSOCK 38, EINTR 4 ...) means its name
    on both paths (38 is Linux's ENOSYS: a second table that lacked a name handed its number on unchanged)."""
    number = darwin_kernel.E.get(name, E.get(name))
    k = backend.numbers(XnuNetKernel().ffi)
    assert errnos.host(number) == k.host_errno(number) == getattr(errno, name)


def test_ipv4_without_peer_on_a_broadcast_interface_asks_its_flags(utun: Utun) -> None:
    utun.kernel.attach("feth0", IFF_UP | IFF_BROADCAST | IFF_MULTICAST, 1500)
    index = backend.get_int(utun.ctl, "feth0", "ifindex")
    backend.add_address(utun.ctl, index, "feth0", ip("198.18.1.1/24"), None)
    assert ("ioctl", "SIOCGIFFLAGS") in utun.kernel.calls  # not a utun: its flags decide
    assert backend.list_addresses(utun.ctl, index, "feth0") == [Address(ip("198.18.1.1/24"))]


def test_ipv4_peer_on_a_broadcast_interface_is_a_valueerror(utun: Utun) -> None:
    utun.kernel.attach("feth0", IFF_UP | IFF_BROADCAST | IFF_MULTICAST, 1500)
    with pytest.raises(ValueError, match="broadcast"):  # SIOCAIFADDR would make the "peer" the broadcast address
        backend.add_address(utun.ctl, 7, "feth0", ip("198.18.1.1/24"), IPv4Address("198.18.1.2"))
    assert utun.kernel.ifnets["feth0"].inet == [] and ("ioctl", "SIOCAIFADDR") not in utun.kernel.calls


def test_remove_ipv4_address_and_absent_is_harmless(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"), IPv4Address("198.18.0.2"))
    backend.remove_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/16"))  # another prefix: left alone
    assert len(utun.ifnet.inet) == 1
    backend.remove_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"))
    assert utun.ifnet.inet == [] and ("ioctl", "SIOCDIFADDR") in utun.kernel.calls
    backend.remove_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"))  # absent: harmless


def test_without_root_an_address_is_a_permission_error(xnu: XnuNetKernel) -> None:
    dev = Utun(xnu)
    xnu.root = False
    with pytest.raises(TunTapPermissionError):
        backend.add_address(dev.ctl, dev.index, dev.name, ip("198.18.0.1/24"), IPv4Address("198.18.0.2"))


# ------------------------------------------------------------------ IPv6 addresses

def test_ipv6_address_is_siocaifaddr_in6_nodad_with_infinite_lifetimes(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("fd00::1/64"), None)
    [ia] = utun.ifnet.inet6
    assert (ia.plen, ia.dst, ia.flags) == (64, None, C["IN6_IFF_NODAD"])
    assert ia.vltime == ia.pltime == 0xFFFFFFFF
    assert ("socket", AF_INET6, SOCK_DGRAM) in utun.kernel.calls  # in6_control's socket, closed again
    assert backend.list_addresses(utun.ctl, utun.index, utun.name) == [Address(ip("fd00::1/64"))]


def test_ipv6_peer_needs_a_128_before_any_call(utun: Utun) -> None:
    before = utun.calls()
    with pytest.raises(ValueError, match="/128"):
        backend.add_address(utun.ctl, utun.index, utun.name, ip("fd00::1/64"), IPv6Address("fd00::2"))
    assert utun.calls() == before
    backend.add_address(utun.ctl, utun.index, utun.name, ip("fd00::1/128"), IPv6Address("fd00::2"))
    assert backend.list_addresses(utun.ctl, utun.index, utun.name) == [
        Address(ip("fd00::1/128"), IPv6Address("fd00::2"))]


def test_link_local_is_listed_without_the_scope_the_kernel_embeds(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("fe80::1/64"), None)
    assert utun.ifnet.inet6[0].addr[2:4] == utun.index.to_bytes(2, "big")  # KAME's embedded scope
    assert backend.list_addresses(utun.ctl, utun.index, utun.name) == [Address(ip("fe80::1/64"))]
    backend.remove_address(utun.ctl, utun.index, utun.name, ip("fe80::1/64"))
    assert utun.ifnet.inet6 == []


def test_both_families_listed_only_for_this_interface(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/30"), IPv4Address("198.18.0.2"))
    backend.add_address(utun.ctl, utun.index, utun.name, ip("fd00::1/64"), None)
    assert backend.list_addresses(utun.ctl, utun.index, utun.name) == [
        Address(ip("198.18.0.1/30"), IPv4Address("198.18.0.2")), Address(ip("fd00::1/64"))]
    lo0 = utun.kernel.ifnets["lo0"].index
    assert backend.list_addresses(utun.ctl, lo0, "lo0") == [Address(ip("127.0.0.1/8"))]
    assert ("sysctl", (C["CTL_NET"], PF_ROUTE, 0, 0, C["NET_RT_IFLIST"], utun.index)) in utun.kernel.calls
    backend.remove_address(utun.ctl, utun.index, utun.name, ip("fd00::1/64"))
    assert utun.ifnet.inet6 == [] and ("ioctl", "SIOCDIFADDR_IN6") in utun.kernel.calls


# ------------------------------------------------------------------ routes

def _add(utun: Utun, dst: str, gw: str = "") -> None:
    backend.add_route(utun.ctl, utun.index, utun.name, ip_network(dst), IPv4Address(gw) if gw and "." in gw
                      else IPv6Address(gw) if gw else None, None)


def test_routes_are_rtm_add_listed_from_the_dump_ipv4_then_ipv6(utun: Utun) -> None:
    backend.add_address(utun.ctl, utun.index, utun.name, ip("198.18.0.1/24"), IPv4Address("198.18.0.2"))
    _add(utun, "fd01::/64")
    _add(utun, "198.19.0.0/16")
    _add(utun, "198.19.5.5/32")
    _add(utun, "0.0.0.0/0")  # the kernel keeps a zero mask as a zero-length sockaddr
    _add(utun, "10.99.0.0/16", "198.18.0.2")
    assert backend.list_routes(utun.ctl, utun.index, utun.name) == [
        Route(ip_network("198.19.0.0/16")), Route(ip_network("198.19.5.5/32")), Route(ip_network("0.0.0.0/0")),
        Route(ip_network("10.99.0.0/16"), IPv4Address("198.18.0.2")), Route(ip_network("fd01::/64"))]
    entry = next(r for r in utun.kernel.routes if r.dst == bytes([198, 19, 0, 0]))
    assert entry.gateway[1] == AF_LINK and entry.ifindex == utun.index  # route add -interface
    assert entry.flags & C["RTF_STATIC"] and not entry.flags & C["RTF_GATEWAY"]
    gw = next(r for r in utun.kernel.routes if r.dst == bytes([10, 99, 0, 0]))
    assert gw.flags & C["RTF_GATEWAY"] and gw.ifindex == utun.index
    assert ("socket", PF_ROUTE, SOCK_RAW) in utun.kernel.calls


def test_adding_a_route_twice_is_harmless(utun: Utun) -> None:
    _add(utun, "198.19.0.0/16")
    _add(utun, "198.19.0.0/16")  # EEXIST from rtrequest
    assert backend.list_routes(utun.ctl, utun.index, utun.name) == [Route(ip_network("198.19.0.0/16"))]


def test_remove_route_removes_ours_and_leaves_another_interfaces(utun: Utun) -> None:
    _add(utun, "198.19.0.0/16")
    backend.remove_route(utun.ctl, utun.index, utun.name, ip_network("198.19.0.0/16"), None, None)
    assert backend.list_routes(utun.ctl, utun.index, utun.name) == []
    backend.remove_route(utun.ctl, utun.index, utun.name, ip_network("198.19.0.0/16"), None, None)  # absent
    lo_routes = list(utun.kernel.routes)
    backend.remove_route(utun.ctl, utun.index, utun.name, ip_network("127.0.0.0/8"), None, None)  # lo0's
    assert utun.kernel.routes == lo_routes


def test_an_unreachable_gateway_is_enetunreach_in_the_hosts_numbers(utun: Utun) -> None:
    with pytest.raises(TunTapError) as info:
        _add(utun, "10.99.0.0/16", "203.0.113.9")
    assert E["ENETUNREACH"] == 51 and info.value.errno == errno.ENETUNREACH  # 101 on Linux
    assert "Network is unreachable" in str(info.value) and info.value.filename == utun.name


def test_a_dropped_reply_times_out_and_closes_the_route_socket(utun: Utun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netconfig, "REPLY_TIMEOUT", 0.2)
    utun.kernel.full_buffers = True
    with pytest.raises(TunTapError) as info:
        _add(utun, "198.19.0.0/16")
    assert info.value.errno == errno.ETIMEDOUT and "did not come" in str(info.value)


def test_a_metric_is_a_valueerror_before_any_call(utun: Utun) -> None:
    before = utun.calls()
    with pytest.raises(ValueError, match="metric"):
        backend.add_route(utun.ctl, utun.index, utun.name, ip_network("198.19.0.0/16"), None, 5)
    assert utun.calls() == before


def test_other_listeners_messages_are_skipped_for_our_reply(utun: Utun) -> None:
    k = backend.numbers(utun.kernel.ffi)
    foreign_add = bytearray(netconfig.rtmsg.route_request(
        utun.kernel.ffi, k, C["RTM_ADD"], 0, 1, 1, [(C["RTA_DST"], sockaddr.sockaddr_in(AF_INET, bytes(4)))]))
    struct.pack_into("=ii", foreign_add, 16, 1, 7)  # another pid, our seq or not: not ours
    struct.pack_into("=i", foreign_add, 24, E["EEXIST"])
    utun.kernel.chatter = [bytes(foreign_add), bytes(64)]
    _add(utun, "198.19.0.0/16")
    assert backend.list_routes(utun.ctl, utun.index, utun.name) == [Route(ip_network("198.19.0.0/16"))]


def test_without_root_a_route_is_a_permission_error_and_the_socket_closes(xnu: XnuNetKernel) -> None:
    dev = Utun(xnu)
    before = fd_count()
    xnu.root = False
    with pytest.raises(TunTapPermissionError):
        _add(dev, "198.19.0.0/16")
    assert fd_count() == before


def test_closing_the_utun_detaches_its_interface_and_routes(xnu: XnuNetKernel) -> None:
    dev = Utun(xnu)
    _add(dev, "198.19.0.0/16")
    xnu.close(dev.fd)
    assert dev.name not in xnu.ifnets and all(r.ifindex != dev.index for r in xnu.routes)


# ------------------------------------------------------------------ the layer's encodings

@given(st.integers(0, 255), st.sampled_from([4, 8]))
def test_roundup_is_xnus_roundup32_and_freebsds_sa_size(sa_len: int, align: int) -> None:
    got = sockaddr.roundup(sa_len, align)
    if align == 4:
        assert got == roundup32(sa_len)
    assert got % align == 0 and got >= max(sa_len, 1) and got - sa_len < align or sa_len == 0 and got == align


@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=8), st.sampled_from([4, 8]))
def test_pack_and_unpack_round_trip(raw: List[bytes], align: int) -> None:
    items = [(1 << i, bytes([len(b) + 2, 99]) + b) for i, b in enumerate(raw) if len(b) + 2 < 256]
    addrs, body = sockaddr.pack(items, align)
    assert len(body) % align == 0
    assert sockaddr.unpack(addrs, body, align) == dict(items)


@pytest.mark.parametrize("prefix", [0, 1, 8, 24, 31, 32])
def test_a_shortened_mask_reads_as_its_prefix(prefix: int) -> None:
    full = sockaddr.netmask(4, prefix, AF_INET, AF_INET6)
    body = full[2:].rstrip(b"\0")
    short = bytes((2 + len(body), AF_INET)) + body if body else b""
    assert sockaddr.prefix_of(short, 4) == prefix == sockaddr.prefix_of(full, 4)


# ------------------------------------------------------------------ through LinkConfig

class HostedLink(LinkConfig):
    """LinkConfig without a Device: what its members use of one (the Device itself is helper ddev's)."""

    def __init__(self, name: str) -> None:
        self._fd, self._name, self._flags, self._kind = -1, name, 0, DeviceKind.TUN
        self._closed, self._everyone, self._lock = False, False, threading.Lock()
        self._ctl, self._rtnl, self._mtu_cache = -1, None, -1
        self._enter = lambda: 0
        self._exit = lambda me: None
        self._others_inside = lambda: False

    def _recheck_read_buffer(self) -> None:
        pass


@pytest.fixture
def link(utun: Utun, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tuple[HostedLink, Utun]]:
    monkeypatch.setattr(_backend, "_backend", backend)  # the platform's backend: macOS's
    hosted = HostedLink(utun.name)
    yield hosted, utun
    utun.kernel.close(hosted._ctl)


def test_linkconfig_settings_on_macos(link: Tuple[HostedLink, Utun]) -> None:
    dev, utun = link
    assert dev.mtu == 1500 and dev.is_up and dev.ifindex == utun.index
    dev.mtu = 1400
    dev.down()
    assert utun.ifnet.mtu == 1400 and not dev.is_up
    dev.up()
    assert dev.is_up


def test_linkconfig_addresses_and_routes_on_macos(link: Tuple[HostedLink, Utun]) -> None:
    dev, utun = link
    dev.add_address("198.18.0.1/24", peer="198.18.0.2")
    dev.add_address("fd00::1/64")
    assert [str(a) for a in dev.addresses] == ["198.18.0.1/24 peer 198.18.0.2", "fd00::1/64"]
    dev.add_route("198.19.0.0/16")
    dev.add_route("fd01::/64")
    assert dev.routes == [Route(ip_network("198.19.0.0/16")), Route(ip_network("fd01::/64"))]
    dev.remove_route("198.19.0.0/16")
    dev.remove_address("198.18.0.1")  # every prefix of it
    assert dev.addresses == [Address(ip("fd00::1/64"))] and dev.routes == [Route(ip_network("fd01::/64"))]
    before = utun.calls()
    with pytest.raises(ValueError, match="peer"):
        dev.add_address("198.18.0.5/24")
    assert all(call[0] != "ioctl" or call[1] != "SIOCAIFADDR" for call in utun.kernel.calls[before:])
