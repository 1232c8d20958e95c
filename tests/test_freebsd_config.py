"""FreeBSD addresses, routes and a TAP's MAC through the Device API, against the simulated FreeBSD network side.

Runs on Linux, in this process: ``freebsd_net.running_as_freebsd_net``
(darwin_kernel's seam) makes the library take FreeBSD's capability table
and backend, whose calls reach ``freebsd_net.FreeBsdNetKernel`` (in.c,
in6.c and rtsock.c's rules, FreeBSD's numbers from its headers); any Linux
libc call fails the test.  Sockets are real socketpairs: fd counts are real.
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from typing import Any, Iterator, List, Optional

import pytest

from bsd_net import CTL_NET
from freebsd_kernel import IO, raw_control
from freebsd_net import AF_INET, AF_INET6, AF_LINK, C, E, IN6_IFF_NODAD, IN6_IFF_TENTATIVE, LONG, PF_ROUTE, \
    SDL_SHORT_LEN, SIZE, FreeBsdNetKernel, NetIfnet, running_as_freebsd_net, sa_size
from tuntest import fd_count
from tuntap_cffi import TunTapPermissionError, open_tap, open_tun
from tuntap_cffi._bsd import netconfig
from tuntap_cffi._capabilities import Feature
from tuntap_cffi._freebsd import PLATFORM, backend
from tuntap_cffi.config import Address, Route

INFINITE = 0xFFFFFFFF


@pytest.fixture
def fbsd() -> Iterator[FreeBsdNetKernel]:
    with running_as_freebsd_net() as kernel:
        yield kernel


def requests(kernel: FreeBsdNetKernel, since: int = 0) -> List[str]:
    """The names of the ioctl requests made since call *since* (FreeBSD's headers' names)."""
    names = {value: key for key, value in IO.items() if key != "TAPGIFNAME"}
    return [names.get(c[2], hex(c[2])) for c in kernel.calls[since:] if c[0] == "ioctl"]


def ifnet(kernel: FreeBsdNetKernel, name: str) -> NetIfnet:
    ifp = kernel.ifnets[name]
    assert isinstance(ifp, NetIfnet)
    return ifp


def test_the_freebsd_table_lists_addresses_routes_and_hwaddr_as_working() -> None:
    assert {Feature.ADDRESSES, Feature.ROUTES, Feature.HWADDR} <= PLATFORM.features
    assert not {Feature.ADDRESSES, Feature.ROUTES, Feature.HWADDR} & PLATFORM.planned


# ------------------------------------------------------------------ IPv4

def test_ipv4_on_a_tun_is_siocaifaddr_with_the_peer_and_lists_it(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        mark = len(fbsd.calls)
        dev.add_address("198.18.0.1/24", peer="198.18.0.2")
        assert "SIOCAIFADDR" in requests(fbsd, mark)
        [ia] = ifnet(fbsd, dev.name).inet
        assert (ia.addr, ia.mask, ia.dst) == (bytes((198, 18, 0, 1)), bytes((255, 255, 255, 0)), bytes((198, 18, 0, 2)))
        assert dev.addresses == [Address(ip_interface("198.18.0.1/24"), IPv4Address("198.18.0.2"))]
        dev.add_address("198.18.0.1/24", peer="198.18.0.2")  # in_aifaddr_ioctl: removed and added again
        assert len(ifnet(fbsd, dev.name).inet) == 1


def test_without_a_peer_on_a_tun_the_kernel_says_edestaddrreq_in_freebsds_number(
        fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        # What in_aifaddr_ioctl answers without the destination: FreeBSD's 39, the host's EDESTADDRREQ.
        with raw_control(dev.name) as (lib, k, ctl):
            req = lib.ffi.new("struct ifaliasreq *")
            req.ifra_name = dev.name.encode()
            lib.ffi.memmove(lib.ffi.addressof(req[0], "ifra_addr"), bytes((16, AF_INET, 0, 0, 198, 18, 0, 1)), 8)
            assert lib.ioctl(ctl, k.ioctls["SIOCAIFADDR"], req) == -1
            assert lib.errno() == E["EDESTADDRREQ"] == 39 and k.host_errno(39) == errno.EDESTADDRREQ


def test_a_broadcast_tun_takes_an_ipv4_address_with_a_netmask_and_no_peer(fbsd: FreeBsdNetKernel) -> None:
    with open_tun(broadcast=True) as dev:
        dev.add_address("198.18.2.1/24")
        [ia] = ifnet(fbsd, dev.name).inet
        assert ia.dst == bytes((198, 18, 2, 255))  # in_aifaddr_ioctl: a broadcast interface's broadcast address
        assert dev.addresses == [Address(ip_interface("198.18.2.1/24"))]
        with pytest.raises(ValueError, match="not point-to-point"):
            dev.add_address("198.18.3.1/24", peer="198.18.3.2")


def test_ipv4_on_a_tap_gets_the_broadcast_address_in_aifaddr_computes(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        dev.add_address("198.18.1.1/24")
        [ia] = ifnet(fbsd, dev.name).inet
        assert ia.dst == bytes((198, 18, 1, 255))  # ia_subnet | ~ia_subnetmask: the library sent no broadaddr
        assert dev.addresses == [Address(ip_interface("198.18.1.1/24"))]  # a broadcast address is no peer


def test_removing_an_address_and_absent_is_harmless(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        dev.add_address("198.18.2.1/24")
        dev.add_address("fd00:2::1/64")
        dev.remove_address("198.18.2.1/24")
        dev.remove_address("fd00:2::1")  # without a prefix: every prefix of that address
        assert dev.addresses == [] and ifnet(fbsd, dev.name).inet == [] == ifnet(fbsd, dev.name).inet6
        mark = len(fbsd.calls)
        dev.remove_address("198.18.2.1/24")
        assert "SIOCDIFADDR" not in requests(fbsd, mark)  # the listing said absent: no ioctl


def test_without_root_an_address_is_a_permission_error(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        fbsd.root = False  # priv_check(PRIV_NET_ADDIFADDR) fails from here on
        with pytest.raises(TunTapPermissionError) as info:
            dev.add_address("198.18.3.1/32", peer="198.18.3.2")
        assert info.value.errno == errno.EPERM and dev.name in str(info.value)
        fbsd.root = True


# ------------------------------------------------------------------ IPv6

def test_ipv6_is_siocaifaddr_in6_nodad_with_infinite_lifetimes(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        dev.up()  # in6if_do_dad: an up, running interface would start DAD without IN6_IFF_NODAD
        mark = len(fbsd.calls)
        dev.add_address("fd00:3::1/64")
        assert ("socket", AF_INET6, C["SOCK_DGRAM"]) in fbsd.calls[mark:] and "SIOCAIFADDR_IN6" in requests(fbsd, mark)
        [ia] = ifnet(fbsd, dev.name).inet6
        assert ia.flags & IN6_IFF_NODAD and not ia.flags & IN6_IFF_TENTATIVE
        assert (ia.plen, ia.vltime, ia.pltime, ia.dst) == (64, INFINITE, INFINITE, None)
        # A tun's IPv6 address without a peer has an unset ifa_dstaddr: a zero-length RTA_BRD in the listing.
        assert dev.addresses == [Address(ip_interface("fd00:3::1/64"))]
        dev.add_address("fd00:3::5/128", peer="fd00:3::6")
        assert dev.addresses[1] == Address(ip_interface("fd00:3::5/128"), IPv6Address("fd00:3::6"))


@pytest.mark.parametrize("opener, address, peer, match", [
    (open_tun, "198.18.4.1/24", None, "needs the peer"),  # in_aifaddr_ioctl: EDESTADDRREQ
    (open_tap, "198.18.4.5/24", "198.18.4.6", "not point-to-point"),  # would be taken as the broadcast address
    (open_tun, "fd00:4::1/64", "fd00:4::2", "/128"),  # in6_validate_ifra: EINVAL
    (open_tap, "fd00:4::1/128", "fd00:4::2", "not point-to-point"),  # in6_validate_ifra: EINVAL
])
def test_what_freebsd_would_refuse_is_a_valueerror_after_only_reading_the_flags(
        fbsd: FreeBsdNetKernel, opener: Any, address: str, peer: Optional[str], match: str) -> None:
    with opener() as dev:
        mark = len(fbsd.calls)
        with pytest.raises(ValueError, match=match):
            dev.add_address(address, peer=peer)
        assert requests(fbsd, mark) == ["SIOCGIFFLAGS"]  # is_pointopoint: nothing was changed
        assert ifnet(fbsd, dev.name).inet == [] == ifnet(fbsd, dev.name).inet6


def test_a_link_local_address_is_kept_scoped_and_listed_without_the_scope(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        dev.add_address("fe80::1234/64")
        [ia] = ifnet(fbsd, dev.name).inet6
        assert ia.addr[2:4] == dev.ifindex.to_bytes(2, "big")  # in6_setscope embedded the zone
        assert dev.addresses == [Address(ip_interface("fe80::1234/64"))]


def test_changing_an_ipv6_prefix_length_is_freebsds_einval_in_the_hosts_number(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        dev.add_address("fd00:5::1/64")
        dev.add_address("fd00:5::1/64")  # the same again: an update, harmless
        with pytest.raises(OSError) as info:  # in6_validate_ifra: "should not be changed"
            dev.add_address("fd00:5::1/56")
        assert info.value.errno == errno.EINVAL and dev.name in str(info.value)
        assert "remove it first" in str(info.value)  # what to do
        assert dev.addresses == [Address(ip_interface("fd00:5::1/64"))]


# ------------------------------------------------------------------ routes

def test_routes_are_rtm_add_with_sa_size_padding_and_listed_ipv4_then_ipv6(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        dev.add_address("198.18.6.1/24")
        dev.add_route("fd00:6::/64")
        dev.add_route("198.19.0.0/16")
        dev.add_route("198.19.5.0/24", gateway="198.18.6.2")
        dev.add_route("198.19.9.9/32")
        assert dev.routes == [Route(ip_network("198.19.0.0/16")), Route(ip_network("198.19.5.0/24"),
                                                                        IPv4Address("198.18.6.2")),
                              Route(ip_network("198.19.9.9/32")), Route(ip_network("fd00:6::/64"))]
        by_dst = {(r.family, r.dst): r for r in fbsd.routes}
        iface = by_dst[AF_INET, bytes((198, 19, 0, 0))]
        # cleanup_xaddrs_gateway: the interface's sockaddr_dl became a sockaddr_dl_short of its index.
        assert iface.gateway == bytes((SDL_SHORT_LEN, AF_LINK)) + struct.pack("=H", dev.ifindex) + \
            bytes(SDL_SHORT_LEN - 4)
        assert by_dst[AF_INET, bytes((198, 19, 5, 0))].flags & C["RTF_GATEWAY"]
        host = by_dst[AF_INET, bytes((198, 19, 9, 9))]
        assert host.mask is None and host.flags & C["RTF_HOST"]
        assert all(r.ifindex == dev.ifindex for r in fbsd.routes)


def test_a_route_request_is_read_with_freebsds_sa_size(fbsd: FreeBsdNetKernel) -> None:
    """The request's sockaddrs sit sizeof(long) apart: read with XNU's 4-byte ROUNDUP32 it would not parse."""
    with open_tun() as dev:
        lib, k = backend.BACKEND.net(Feature.ROUTES, dev.name)
        assert k.sa_align == LONG == 8
        flags, items = netconfig._route_items(k, dev.ifindex, ip_network("198.19.7.0/24"), None)
        msg = netconfig.rtmsg.route_request(lib.ffi, k, C["RTM_ADD"], flags, dev.ifindex, 1, items)
        assert len(msg) == SIZE["struct rt_msghdr"] + sa_size(16) + sa_size(20) + sa_size(16) == 152 + 16 + 24 + 16
        fd = lib.socket(PF_ROUTE, C["SOCK_RAW"], 0)
        try:
            assert lib.write(fd, msg, len(msg)) == len(msg)
        finally:
            lib.close(fd)
        assert dev.routes == [Route(ip_network("198.19.7.0/24"))]


def test_a_route_twice_is_harmless_and_removing_leaves_another_interfaces(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as one, open_tun() as two:
        one.add_route("198.19.8.0/24")
        one.add_route("198.19.8.0/24")  # EEXIST from rtsock: harmless
        two.add_route("198.19.8.0/24")  # the prefix is one's: EEXIST, harmless, left to one
        assert one.routes == [Route(ip_network("198.19.8.0/24"))] and two.routes == []
        two.remove_route("198.19.8.0/24")  # not out of two: left alone, no RTM_DELETE
        assert len(fbsd.routes) == 1
        one.remove_route("198.19.8.0/24")
        one.remove_route("198.19.8.0/24")  # absent: harmless
        assert fbsd.routes == [] and one.routes == []


def test_a_metric_is_a_valueerror_before_any_call(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        dev.routes  # the Device's control socket exists now
        mark = len(fbsd.calls)
        with pytest.raises(ValueError, match="no metric"):
            dev.add_route("198.19.10.0/24", metric=5)
        assert [c for c in fbsd.calls[mark:] if c[0] != "if_nametoindex"] == []  # no socket, write or sysctl


def test_without_root_a_route_is_a_permission_error_and_its_socket_closes(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        dev.routes  # the Device's own sockets exist now
        before = fd_count()
        fbsd.root = False  # route_output: priv_check(PRIV_NET_ROUTE)
        with pytest.raises(TunTapPermissionError) as info:
            dev.add_route("198.19.11.0/24")
        fbsd.root = True
        assert info.value.errno == errno.EPERM and fd_count() == before
        assert PF_ROUTE not in fbsd.net_sockets.values()


def test_destroying_the_interface_takes_its_routes(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        dev.add_route("198.19.12.0/24")
        assert len(fbsd.routes) == 1
    assert fbsd.routes == [] and fbsd.interfaces == []  # if_detach: rt_flushifroutes


# ------------------------------------------------------------------ a TAP's MAC

def test_a_taps_mac_is_read_from_the_iflist_sockaddr_dl_and_set_with_siocsiflladdr(fbsd: FreeBsdNetKernel) -> None:
    with open_tap() as dev:
        assert dev.hwaddr == ifnet(fbsd, dev.name).lladdr.hex(":") and dev.hwaddr.startswith("58:9c:fc")
        mark = len(fbsd.calls)
        dev.hwaddr = "02:00:5e:10:00:01"
        assert requests(fbsd, mark) == ["SIOCSIFLLADDR"]
        assert ifnet(fbsd, dev.name).lladdr == bytes.fromhex("02005e100001") and dev.hwaddr == "02:00:5e:10:00:01"
        fbsd.root = False
        with pytest.raises(TunTapPermissionError):  # priv_check(PRIV_NET_SETLLADDR)
            dev.hwaddr = "02:00:5e:10:00:02"
        fbsd.root = True


def test_a_tun_has_no_mac_and_its_kernel_would_refuse_one(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        mark = len(fbsd.calls)
        assert dev.hwaddr is None
        with pytest.raises(ValueError, match="TUN"):
            dev.hwaddr = "02:00:5e:10:00:01"
        assert fbsd.calls[mark:] == []
        with raw_control(dev.name) as (lib, k, ctl), pytest.raises(OSError) as info:
            netconfig.set_lladdr(lib, k, ctl, dev.name, bytes(6))
        assert info.value.errno == errno.EINVAL  # if_setlladdr: a tun's sdl_alen is 0


# ------------------------------------------------------------------ hygiene

def test_no_fd_leaks_over_configuration_and_its_failures(fbsd: FreeBsdNetKernel) -> None:
    open_tun().close()  # the process-wide /dev/null fd
    before = fd_count()
    for _ in range(2):
        with open_tap() as dev:
            dev.add_address("198.18.13.1/24")
            dev.add_address("fd00:13::1/64")
            dev.add_route("198.19.13.0/24")
            dev.hwaddr = "02:00:5e:10:00:03"
            with pytest.raises(OSError):
                dev.add_address("fd00:13::1/60")
            dev.addresses, dev.routes
            dev.remove_route("198.19.13.0/24")
            dev.remove_address("fd00:13::1/64")
    assert fd_count() == before and fbsd.net_sockets == {} and fbsd.interfaces == []


def test_the_dump_messages_are_aligned_to_a_long(fbsd: FreeBsdNetKernel) -> None:
    with open_tun() as dev:
        dev.add_address("198.18.14.1/32", peer="198.18.14.2")
        dev.add_route("198.19.14.0/24")
        lib, k = backend.BACKEND.net(Feature.ROUTES, dev.name)
        for op in ("NET_RT_DUMP", "NET_RT_IFLIST"):
            data = netconfig._sysctl(lib, k, (CTL_NET, PF_ROUTE, 0, 0, C[op], 0), "dump", dev.name)
            at, lengths = 0, []
            while at < len(data):
                lengths.append(struct.unpack_from("=H", data, at)[0])
                at += lengths[-1]
            assert lengths and all(n % LONG == 0 for n in lengths) and at == len(data)
        # sysctl_dumpnhop names the route's interface and, on a point-to-point one, the peer (RTA_BRD).
        dump = netconfig._sysctl(lib, k, (CTL_NET, PF_ROUTE, 0, 0, C["NET_RT_DUMP"], 0), "dump", dev.name)
        hdr, sas = netconfig.rtmsg.sockaddrs(lib.ffi, k, dump)
        assert hdr.ifindex == dev.ifindex and sas[C["RTA_BRD"]][4:8] == bytes((198, 18, 14, 2))
