"""macOS for real (root): utun with an address, its peer, routes and a ping answered by hand; feth TAP; tuntaposx.

Traffic stays on 198.18.0.0/15 (RFC 2544 benchmarking space), on the
test's own devices; each ping is bound to the test's interface
(``ping -b utunN``, macOS's boundif) and sent to the peer of its
point-to-point address, which only the test's device can reach.

Collected only when ``sys.platform == "darwin"`` (tests/conftest.py): never
on Linux CI, not even skipped.  ``.github/workflows/macos.yml`` runs them
with sudo on hosted macOS runners.  The tuntaposx tests run only where the
kext's /dev/tun0 is present (never on Apple silicon) and skip otherwise.
These tests have not run yet: the project is not hosted, and no Mac is
available where it is developed (the darwin simulator suites,
tests/test_darwin_*.py, are what ran there).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import threading
from typing import Iterator, List, Optional, Tuple

import pytest

from tuntest import checksum
from tuntap_cffi import Device, DeviceNotReadyError, _backend, open_tap, open_tun
from tuntap_cffi._capabilities import Feature

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="utun, addresses and routes need root (sudo)")


def subnet() -> Tuple[str, str]:
    """A /30's two addresses inside 198.18.0.0/15 (ours, the peer's), random per test."""
    third, fourth = random.randrange(256), random.randrange(0, 252, 4)
    return f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"


def echo_reply(request: bytes) -> bytes:
    """The ICMP echo reply to an IPv4 echo request: addresses swapped, type 0, both checksums redone."""
    ihl = (request[0] & 0x0F) * 4
    header = bytearray(request[:ihl])
    header[12:16], header[16:20] = request[16:20], request[12:16]
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    icmp = bytearray(request[ihl:])
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    return bytes(header) + bytes(icmp)


def ping_through(dev: Device, peer: str, bind: List[str]) -> None:
    """Ping *peer* once (bound by *bind*), read the echo request with readinto, write the reply: ping must succeed."""
    proc = subprocess.Popen(["ping", "-c", "1", "-t", "10", *bind, peer], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        buf = bytearray(dev.max_packet_size)
        while True:
            n = dev.readinto(buf, timeout=10)
            packet = bytes(buf[:n])
            # IPv4, ICMP, echo request to the peer (the stack also sends its own IPv6 chatter: skipped)
            if n >= 28 and packet[0] >> 4 == 4 and packet[9] == 1 and socket.inet_ntoa(packet[16:20]) == peer \
                    and packet[(packet[0] & 0x0F) * 4] == 8:
                break
        assert dev.write(echo_reply(packet)) == n
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def interfaces() -> List[str]:
    return [name for _, name in socket.if_nameindex()]


@pytest.fixture
def utun() -> Iterator[Device]:
    with open_tun() as dev:
        yield dev


def test_a_utun_answers_a_ping_by_hand(utun: Device) -> None:
    local, peer = subnet()
    assert utun.name.startswith("utun") and utun.name in interfaces()
    utun.add_address(f"{local}/32", peer)  # a utun is point-to-point: the peer is required
    utun.up()
    assert utun.is_up
    ping_through(utun, peer, ["-b", utun.name])


def test_a_ping_bound_by_source_address(utun: Device) -> None:
    local, peer = subnet()
    utun.add_address(f"{local}/32", peer)
    utun.up()
    ping_through(utun, peer, ["-S", local])


def test_utun_mtu_addresses_and_routes(utun: Device) -> None:
    local, peer = subnet()
    assert utun.mtu == 1500
    utun.mtu = 1400
    assert utun.mtu == 1400 and utun.max_packet_size == 1400
    utun.add_address(f"{local}/32", peer)
    utun.add_address("fd00:7474:1::1/64")
    found = {str(a.interface) for a in utun.addresses}
    assert f"{local}/32" in found and "fd00:7474:1::1/64" in found
    utun.up()
    third = local.split(".")[2]
    destination = f"198.19.{third}.0/24"
    utun.add_route(destination)
    assert destination in {str(r.destination) for r in utun.routes}
    utun.remove_route(destination)
    assert destination not in {str(r.destination) for r in utun.routes}
    utun.remove_address(f"{local}/32")
    assert f"{local}/32" not in {str(a.interface) for a in utun.addresses}


def test_closing_a_utun_removes_its_interface() -> None:
    dev = open_tun()
    name = dev.name
    assert name in interfaces()
    dev.close()
    assert name not in interfaces()


@pytest.mark.skipif(not _backend.supports(Feature.TAP), reason="this version of tuntap_cffi has no TAP on macOS (feth)")
def test_a_feth_tap_has_a_mac_and_goes_with_close() -> None:
    with open_tap() as tap:
        name = tap.name
        assert name in interfaces()
        mac = tap.hwaddr
        assert mac is not None and len(mac.split(":")) == 6
        local, _ = subnet()
        tap.add_address(f"{local}/30")
        tap.up()
        assert tap.is_up
    assert name not in interfaces()


def legacy_node() -> Optional[str]:
    return "/dev/tun0" if os.path.exists("/dev/tun0") else None


@pytest.mark.skipif(legacy_node() is None, reason="the tuntaposx kext is not installed (never on Apple silicon)")
def test_a_tuntaposx_device_is_ready_once_up_and_answers_a_ping() -> None:
    with open_tun("tun%d") as dev:
        assert dev.name.startswith("tun") and not dev.packet_info
        with pytest.raises(DeviceNotReadyError):
            dev.write(b"\x45" + bytes(19))
        local, peer = subnet()
        dev.add_address(f"{local}/32", peer)
        dev.up()
        ping_through(dev, peer, ["-b", dev.name])


def test_link_events_of_a_utun_made_by_ifconfig(utun: Device) -> None:
    """RTM_IFINFO/RTM_NEWADDR/RTM_DELADDR from XNU: changes made by another process (ifconfig) are reported."""
    from tuntap_cffi.events import AddressAdded, AddressRemoved, LinkDown, LinkEvent, MtuChanged

    def until(events: "object", wanted: LinkEvent) -> None:
        while True:  # (XNU also announces what it does by itself: IPv6 link-local addresses ...)
            if events.get(timeout=10) == wanted:  # type: ignore[attr-defined]
                return

    local, peer = subnet()
    with utun.events() as events:
        subprocess.run(["ifconfig", utun.name, "mtu", "1400"], check=True)
        until(events, MtuChanged(1500, 1400))
        subprocess.run(["ifconfig", utun.name, "inet", local, peer, "netmask", "255.255.255.255"], check=True)
        added = next(a for a in utun.addresses if str(a.interface.ip) == local)
        until(events, AddressAdded(added))
        subprocess.run(["ifconfig", utun.name, "inet", local, "delete"], check=True)
        until(events, AddressRemoved(added))
        subprocess.run(["ifconfig", utun.name, "down"], check=True)
        until(events, LinkDown())

