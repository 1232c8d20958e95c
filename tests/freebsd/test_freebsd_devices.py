"""FreeBSD for real (root): a tun answering a ping by hand, a named tun, a tap; each destroyed at close.

Traffic stays on 198.18.0.0/15 (RFC 2544 benchmarking space), on the
test's own devices: each ping goes from the test's point-to-point address
to its peer, which only the test's tun reaches.  The ping test sets its
address with ifconfig(8); the configuration test uses the library's own
calls and checks them with ifconfig(8) and netstat(1).

Collected only when ``sys.platform`` starts with "freebsd"
(tests/conftest.py).  ``.github/workflows/freebsd.yml`` runs them in a
FreeBSD VM (vmactions/freebsd-vm).  These tests have not run yet: the
project is not hosted, and no FreeBSD machine is available where it is
developed (the simulator suite, tests/test_freebsd_device.py, is what ran
there).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
from typing import List, Tuple

import pytest

from tuntap_cffi import Device, open_tap, open_tun

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cloning /dev/tun and ifconfig need root")


def subnet() -> Tuple[str, str]:
    """A /30's two addresses inside 198.18.0.0/15 (ours, the peer's), random per test."""
    third, fourth = random.randrange(256), random.randrange(0, 252, 4)
    return f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"


def interfaces() -> List[str]:
    return subprocess.run(["ifconfig", "-l"], check=True, capture_output=True, text=True).stdout.split()


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def echo_reply(request: bytes) -> bytes:
    """The ICMP echo reply to an IPv4 echo request: addresses swapped, type 0, both checksums redone."""
    ihl = (request[0] & 0x0F) * 4
    header = bytearray(request[:ihl])
    header[12:16], header[16:20] = request[16:20], request[12:16]
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", inet_checksum(bytes(header)))
    icmp = bytearray(request[ihl:])
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = struct.pack("!H", inet_checksum(bytes(icmp)))
    return bytes(header) + bytes(icmp)


def test_a_ping_to_the_peer_is_read_and_answered_through_the_tun() -> None:
    ours, peer = subnet()
    with open_tun() as dev:
        assert dev.name.startswith("tun") and dev.name in interfaces()
        subprocess.run(["ifconfig", dev.name, "inet", ours, peer, "up"], check=True)
        assert dev.is_up
        proc = subprocess.Popen(["ping", "-c", "1", "-t", "10", "-S", ours, peer],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            buf = bytearray(dev.max_packet_size)
            while True:  # the stack's own IPv6 chatter is skipped
                n = dev.readinto(buf, timeout=10)
                packet = bytes(buf[:n])
                if n >= 28 and packet[0] >> 4 == 4 and packet[9] == 1 and \
                        socket.inet_ntoa(packet[16:20]) == peer and packet[(packet[0] & 0x0F) * 4] == 8:
                    break
            assert dev.write(echo_reply(packet)) == n  # TUNSIFHEAD's header added by the Device
            out, _ = proc.communicate(timeout=15)
            assert proc.returncode == 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert dev.name not in interfaces()  # SIOCIFDESTROY at close


def test_a_named_tun_is_a_renamed_clone() -> None:
    name = f"tt{os.getpid() % 100000}f"
    with open_tun(name) as dev:
        assert dev.name == name and name in interfaces()
        dev.mtu = 1400
        assert dev.mtu == 1400
    assert name not in interfaces()


def test_a_tap_is_an_ethernet_interface() -> None:
    with open_tap() as dev:
        assert dev.name.startswith("tap") and dev.kind.value == "tap"
        dev.up()
        out = subprocess.run(["ifconfig", dev.name], check=True, capture_output=True, text=True).stdout
        assert "ether" in out and "UP" in out
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"tuntap_cffi"
        assert dev.write(frame) == len(frame)
    assert dev.name not in interfaces()


def test_addresses_routes_and_mac_through_the_library_as_ifconfig_and_netstat_see_them() -> None:
    ours, peer = subnet()
    third = ours.split(".")[2]
    with open_tun() as dev:
        dev.add_address(f"{ours}/32", peer=peer)
        dev.add_address("fd00:7f::1/64")
        dev.add_route(f"198.19.{third}.0/24")
        out = subprocess.run(["ifconfig", dev.name], check=True, capture_output=True, text=True).stdout
        assert f"inet {ours} --> {peer}" in out and "fd00:7f::1" in out
        assert {str(a.interface) for a in dev.addresses} >= {f"{ours}/32", "fd00:7f::1/64"}
        table = subprocess.run(["netstat", "-rn", "-f", "inet"], check=True, capture_output=True, text=True).stdout
        assert f"198.19.{third}.0/24" in table and any(str(r.destination) == f"198.19.{third}.0/24" for r in dev.routes)
        dev.remove_route(f"198.19.{third}.0/24")
        dev.remove_address("fd00:7f::1/64")
        assert all(str(r.destination) != f"198.19.{third}.0/24" for r in dev.routes)
    with open_tap() as tap:
        tap.hwaddr = "02:00:5e:10:00:01"
        out = subprocess.run(["ifconfig", tap.name], check=True, capture_output=True, text=True).stdout
        assert "ether 02:00:5e:10:00:01" in out and tap.hwaddr == "02:00:5e:10:00:01"


def test_a_broadcast_tun_takes_an_address_with_a_netmask() -> None:
    ours, _ = subnet()
    with open_tun(broadcast=True) as dev:
        dev.add_address(f"{ours}/30")
        out = subprocess.run(["ifconfig", dev.name], check=True, capture_output=True, text=True).stdout
        assert "BROADCAST" in out and "POINTOPOINT" not in out and f"inet {ours} netmask 0xfffffffc" in out


def test_a_second_opener_of_a_unit_is_busy() -> None:
    from tuntap_cffi import DeviceBusyError

    with open_tun() as dev:
        with pytest.raises(DeviceBusyError):
            open_tun(dev.name)
        assert isinstance(dev, Device)


def test_link_events_made_by_ifconfig() -> None:
    """RTM_IFINFO from FreeBSD: up, MTU and down made by another process (ifconfig) are reported."""
    from tuntap_cffi.events import LinkDown, LinkEvent, LinkUp, MtuChanged

    def until(events: "object", wanted: LinkEvent) -> None:
        while True:  # (the kernel also announces what it does by itself)
            if events.get(timeout=10) == wanted:  # type: ignore[attr-defined]
                return

    with open_tun() as dev, dev.events() as events:
        subprocess.run(["ifconfig", dev.name, "up"], check=True)
        until(events, LinkUp())
        subprocess.run(["ifconfig", dev.name, "mtu", "1400"], check=True)
        until(events, MtuChanged(1500, 1400))
        subprocess.run(["ifconfig", dev.name, "down"], check=True)
        until(events, LinkDown())


def test_a_persistent_tun_outlives_its_device_until_deleted() -> None:
    from tuntap_cffi import delete_persistent

    with open_tun(persist=True) as dev:
        name = dev.name
    try:
        assert name in interfaces()
        with open_tun(name) as again:  # /dev/tunN attaches to it
            assert again.persistent
        assert name in interfaces()
    finally:
        delete_persistent(name)
    assert name not in interfaces()

