"""Interface configuration through rtnetlink, checked against what `ip -j` reports."""

from __future__ import annotations

import ipaddress
import json
from typing import Iterator, List, Set, Tuple

import pytest

from tuntest import fd_count, ip, ipv6_of, link_info
from tuntap_cffi import Device, open_tap, open_tun
from tuntap_cffi.config import Address, Route, parse_mac

pytestmark = pytest.mark.device


def kernel_addresses(name: str) -> Set[Tuple[str, int, str]]:
    """(local, prefixlen, peer or '') of every address `ip -j addr` lists."""
    data = json.loads(ip("-j", "addr", "show", "dev", name))[0]
    return {(a["local"], a["prefixlen"], a.get("address", "")) for a in data.get("addr_info", [])}


def ours(dev: Device) -> Set[Tuple[str, int, str]]:
    return {(str(a.interface.ip), a.interface.network.prefixlen, str(a.peer) if a.peer else "") for a in dev.addresses}


@pytest.fixture
def tun(ifname: str) -> Iterator[Device]:
    with open_tun(ifname) as dev:
        dev.up()
        yield dev


@pytest.fixture
def tap(ifname: str) -> Iterator[Device]:
    with open_tap(ifname) as dev:
        yield dev


def v6(subnet: str, host: int, prefix: int = 64) -> str:
    return str(ipaddress.ip_interface(f"{ipv6_of(subnet, host)}/{prefix}"))  # canonical, as the kernel prints it


def test_ipv4_and_ipv6_addresses(tun: Device, subnet: str) -> None:
    tun.add_address(f"{subnet}.1/24")
    tun.add_address(f"{subnet}.7/24")  # a second IPv4 address (secondary)
    tun.add_address(v6(subnet, 1))
    tun.add_address(ipaddress.ip_interface(v6(subnet, 2, 80)))
    kernel = kernel_addresses(tun.name)
    assert (f"{subnet}.1", 24, "") in {(l, p, "") for l, p, _ in kernel}
    assert ours(tun) == {(l, p, "" if a == l else a) for l, p, a in kernel}
    got = {str(a.interface) for a in tun.addresses}
    assert {f"{subnet}.1/24", f"{subnet}.7/24", v6(subnet, 1), v6(subnet, 2, 80)} <= got


def test_adding_twice_is_harmless(tun: Device, subnet: str) -> None:
    for _ in range(2):
        tun.add_address(f"{subnet}.1/24")
        tun.add_address(v6(subnet, 1))
    kernel = kernel_addresses(tun.name)
    assert sum(1 for l, _, _ in kernel if l == f"{subnet}.1") == 1
    assert len(tun.addresses) == len(kernel)


def test_point_to_point_peer(tun: Device, subnet: str) -> None:
    tun.add_address(f"{subnet}.1", peer=f"{subnet}.2")
    tun.add_address(v6(subnet, 1, 128).split("/")[0], peer=v6(subnet, 2).split("/")[0])
    kernel = kernel_addresses(tun.name)
    assert (f"{subnet}.1", 32, f"{subnet}.2") in kernel
    v6_local, v6_peer = v6(subnet, 1).split("/")[0], v6(subnet, 2).split("/")[0]
    assert (v6_local, 128, v6_peer) in kernel
    assert Address(ipaddress.ip_interface(f"{subnet}.1/32"), ipaddress.ip_address(f"{subnet}.2")) in tun.addresses
    assert str(Address(ipaddress.ip_interface(f"{subnet}.1/32"), ipaddress.ip_address(f"{subnet}.2"))) == f"{subnet}.1/32 peer {subnet}.2"


def test_remove_address(tun: Device, subnet: str) -> None:
    tun.add_address(f"{subnet}.1/24")
    tun.add_address(f"{subnet}.9/25")
    tun.add_address(v6(subnet, 1))
    tun.remove_address(f"{subnet}.1/24")  # exact
    tun.remove_address(f"{subnet}.9")  # without prefix: whatever prefix it has
    tun.remove_address(v6(subnet, 1))
    tun.remove_address(f"{subnet}.1/24")  # absent: harmless
    kernel = kernel_addresses(tun.name)
    assert not any(l.startswith(f"{subnet}.") or l.startswith("fd00:7474:") for l, _, _ in kernel), kernel
    assert ours(tun) == {(l, p, "" if a == l else a) for l, p, a in kernel}


@pytest.mark.parametrize("bad, exc", [
    ("198.18.0.1/33", ValueError), ("198.18.0.300/24", ValueError), ("fd00::1/129", ValueError),
    ("not an address", ValueError), ("fe80::1%eth0/64", ValueError), (17, TypeError), (None, TypeError),
    (b"198.18.0.1", TypeError),
])
def test_bad_addresses_fail_before_any_syscall(tun: Device, bad: object, exc: type) -> None:
    before, kernel = fd_count(), kernel_addresses(tun.name)
    with pytest.raises(exc):
        tun.add_address(bad)  # type: ignore[arg-type]
    with pytest.raises(exc):
        tun.remove_address(bad)  # type: ignore[arg-type]
    assert fd_count() == before and kernel_addresses(tun.name) == kernel


def test_bad_peer(tun: Device, subnet: str) -> None:
    with pytest.raises(ValueError):
        tun.add_address(f"{subnet}.1", peer="fd00::2")
    with pytest.raises(ValueError):
        tun.add_address(f"{subnet}.1", peer=f"{subnet}.2/24")
    with pytest.raises(TypeError):
        tun.add_address(f"{subnet}.1", peer=2)  # type: ignore[arg-type]


def test_failed_setting_leaves_device_usable(tun: Device, subnet: str) -> None:
    # A gateway the interface cannot reach: the kernel refuses (ENETUNREACH)
    # and says why; the message carries its words.
    import errno

    third = int(subnet.split(".")[2])
    with pytest.raises(OSError) as info:
        tun.add_route(f"198.19.{third}.0/24", gateway=f"{subnet}.2")
    assert info.value.errno == errno.ENETUNREACH
    assert "kernel: Nexthop has invalid gateway" in str(info.value)
    tun.add_address(f"{subnet}.1/24")
    assert f"{subnet}.1" in {l for l, _, _ in kernel_addresses(tun.name)}
    tun.add_route(f"198.19.{third}.0/24", gateway=f"{subnet}.2")
    assert any(r["dst"] == f"198.19.{third}.0/24" for r in kernel_routes(tun.name))
    assert tun.is_up


def kernel_routes(name: str) -> List[dict]:  # type: ignore[type-arg]
    out: List[dict] = []  # type: ignore[type-arg]
    for family in ("-4", "-6"):
        out += json.loads(ip("-j", family, "route", "show", "table", "main", "dev", name))
    return out


def test_routes(tun: Device, subnet: str) -> None:
    tun.add_address(f"{subnet}.1/24")
    tun.add_address(v6(subnet, 1))
    third = int(subnet.split(".")[2])
    other = f"198.19.{third}.0/24"
    v6net = str(ipaddress.ip_network(f"fd00:7475:{third:x}::/64"))  # as ip prints it: fd00:7475::/64 for 0
    tun.add_route(other)
    tun.add_route(other)  # harmless twice
    tun.add_route(f"198.19.{third}.128/25", gateway=f"{subnet}.2", metric=7)
    tun.add_route(v6net, metric=9)
    kernel = {r["dst"]: r for r in kernel_routes(tun.name)}
    assert kernel[other]["scope"] == "link"
    assert kernel[f"198.19.{third}.128/25"]["gateway"] == f"{subnet}.2"
    assert kernel[f"198.19.{third}.128/25"]["metric"] == 7
    assert kernel[v6net]["metric"] == 9
    routes = tun.routes
    assert Route(ipaddress.ip_network(other), None, 0) in routes
    assert Route(ipaddress.ip_network(f"198.19.{third}.128/25"), ipaddress.ip_address(f"{subnet}.2"), 7) in routes
    assert Route(ipaddress.ip_network(v6net), None, 9) in routes
    assert {str(r.destination) for r in routes} == set(kernel)
    tun.remove_route(other)
    tun.remove_route(other)  # absent: harmless
    tun.remove_route(f"198.19.{third}.128/25", gateway=f"{subnet}.2", metric=7)
    tun.remove_route(v6net, metric=9)
    left = {r["dst"] for r in kernel_routes(tun.name)}
    assert not left & {other, f"198.19.{third}.128/25", v6net}


@pytest.mark.parametrize("dst, gw, metric, exc", [
    ("198.19.0.1/24", None, None, ValueError),  # host bits set
    ("default", None, None, ValueError),
    ("198.19.0.0/24", "fd00::1", None, ValueError),
    ("198.19.0.0/24", None, -1, ValueError),
    ("198.19.0.0/24", None, "7", TypeError),
    (42, None, None, TypeError),
])
def test_bad_routes(tun: Device, dst: object, gw: object, metric: object, exc: type) -> None:
    before = kernel_routes(tun.name)
    with pytest.raises(exc):
        tun.add_route(dst, gateway=gw, metric=metric)  # type: ignore[arg-type]
    assert kernel_routes(tun.name) == before


def test_hwaddr(tap: Device) -> None:
    assert tap.hwaddr == link_info(tap.name)["address"]
    tap.hwaddr = "02:00:5E:10:00:01"
    assert tap.hwaddr == "02:00:5e:10:00:01" == link_info(tap.name)["address"]
    tap.hwaddr = b"\x02\x00\x5e\x10\x00\x02"
    assert tap.hwaddr == "02:00:5e:10:00:02"
    tap.up()
    tap.hwaddr = "02-00-5e-10-00-03"  # a TAP takes a new MAC while up
    assert link_info(tap.name)["address"] == "02:00:5e:10:00:03"


@pytest.mark.parametrize("mac, exc", [
    ("01:00:5e:00:00:01", ValueError),  # multicast
    ("00:00:00:00:00:00", ValueError),
    ("02:00:5e:00:01", ValueError),
    ("02:00:5e:00:00:zz", ValueError),
    (b"\x02\x00", ValueError),
    (12345, TypeError),
])
def test_bad_hwaddr(tap: Device, mac: object, exc: type) -> None:
    before = tap.hwaddr
    with pytest.raises(exc):
        tap.hwaddr = mac  # type: ignore[assignment]
    assert tap.hwaddr == before


def test_tun_has_no_hwaddr(tun: Device) -> None:
    assert tun.hwaddr is None
    with pytest.raises(ValueError):
        tun.hwaddr = "02:00:5e:10:00:01"


def test_configuration_needs_cap_net_admin(tun: Device, subnet: str) -> None:
    import subprocess
    import sys
    import textwrap

    # The fd goes to a child without CAP_NET_ADMIN: reading works, configuring does not.
    child = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from tuntap_cffi import Device, TunTapPermissionError
        dev = Device.from_fd(int(sys.argv[2]), packet_info=False)
        try:
            dev.add_address(sys.argv[3])
        except TunTapPermissionError as exc:
            print("refused", exc.errno, "CAP_NET_ADMIN" in str(exc))
        print(dev.mtu, [str(a.interface) for a in dev.addresses if a.interface.version == 4])
        dev.close()  # closes the child's copy only: the parent's fd keeps the interface
        """
    )
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fd = tun.fileno()
    proc = subprocess.run(
        ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--", sys.executable, "-c", child, repo, str(fd), f"{subnet}.1/24"],
        pass_fds=[fd], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["refused 1 True", "1500 []"]
    assert not any(l == f"{subnet}.1" for l, _, _ in kernel_addresses(tun.name))
    assert tun.is_up and tun.name in link_info(tun.name)["ifname"]


@pytest.mark.parametrize("mac", [
    "+2:+0:+0:+0:+0:+1",  # int(p, 16) takes a sign
    " 2: 0: 0: 0: 0: 1",  # ... and surrounding blanks
    "2 :0:0:0:0:1",
    "02:00:5e:10:00:01\n",
    "\uff10\uff12:00:5e:10:00:01",  # fullwidth digits: int() takes any Unicode digit
    "\u0660\u0662:00:5e:10:00:01",  # Arabic-Indic digits
    "02:00-5e:10:00:01",  # mixed separators
    "0x2:00:5e:10:00:01",
    "_2:00:5e:10:00:01",  # int() takes underscores between digits: '0_2'
    "0_2:00:5e:10:00:01",
])
def test_parse_mac_takes_only_ascii_hex_octets(mac: str) -> None:
    with pytest.raises(ValueError, match="is not a MAC address"):
        parse_mac(mac)


@pytest.mark.parametrize("mac, raw", [
    ("02:00:5E:10:00:01", b"\x02\x00\x5e\x10\x00\x01"),
    ("02-00-5e-10-00-01", b"\x02\x00\x5e\x10\x00\x01"),
    ("2:0:5e:10:0:1", b"\x02\x00\x5e\x10\x00\x01"),  # one digit per octet, as `ip link` takes it
])
def test_parse_mac_good(mac: str, raw: bytes) -> None:
    assert parse_mac(mac) == raw
