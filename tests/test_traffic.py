"""Real packets through real devices: the kernel's IP stack on one side, the Device on the other."""

from __future__ import annotations

import array
import importlib.util
import mmap
import os
import socket
import struct
import time
from typing import Callable

import pytest

from tuntest import (
    PEER_MAC, ethernet, ipv4_udp, mac_bytes, parse_ipv4_udp, read_matching, tap_with_address, tun_with_address,
    udp_flow
)

pytestmark = pytest.mark.device

BUFFER_MAKERS = {
    "bytearray": lambda n: bytearray(n),
    "memoryview": lambda n: memoryview(bytearray(n)),
    "array": lambda n: array.array("B", bytes(n)),
    "mmap": lambda n: mmap.mmap(-1, n),
}
if importlib.util.find_spec("numpy") is not None:  # in the test extra for CPython
    BUFFER_MAKERS["numpy"] = lambda n: __import__("numpy").zeros(n, dtype="uint8")


@pytest.mark.parametrize("make_buffer", list(BUFFER_MAKERS.values()), ids=list(BUFFER_MAKERS))
def test_udp_from_socket_arrives_byte_exact(ifname: str, subnet: str, make_buffer: Callable[[int], object]) -> None:
    payload = os.urandom(200)
    with tun_with_address(ifname, subnet) as dev:
        buf = make_buffer(dev.max_packet_size)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((f"{subnet}.1", 0))
            s.sendto(payload, (f"{subnet}.2", 9999))
            sport = s.getsockname()[1]
        pkt = read_matching(dev, udp_flow(f"{subnet}.2", 9999), buf=buf)
        dev.release_buffers()  # lets the mmap close below
        assert parse_ipv4_udp(pkt) == (f"{subnet}.1", f"{subnet}.2", sport, 9999, payload)
    if isinstance(buf, mmap.mmap):
        buf.close()


def test_blocking_read_returns_packet(ifname: str, subnet: str) -> None:
    with tun_with_address(ifname, subnet) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"blocking", (f"{subnet}.2", 5))
        while True:  # blocking mode: returns as soon as a packet is queued
            pkt = dev.read()
            if udp_flow(f"{subnet}.2", 5)(pkt):
                break
        assert parse_ipv4_udp(pkt)[4] == b"blocking"


def test_udp_written_to_tun_reaches_socket(ifname: str, subnet: str) -> None:
    with tun_with_address(ifname, subnet) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        payload = os.urandom(300)
        pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4242, port, payload)
        assert dev.write(pkt) == len(pkt)  # bytes: passed without a copy
        data, addr = s.recvfrom(2048)
        assert data == payload and addr == (f"{subnet}.2", 4242)
        again = bytearray(ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4243, port, b"second"))
        assert dev.write(again) == len(again)  # any buffer: cached pointer
        assert dev.write(memoryview(again)) == len(again)
        assert s.recvfrom(2048) == (b"second", (f"{subnet}.2", 4243))
        assert s.recvfrom(2048) == (b"second", (f"{subnet}.2", 4243))


def test_packet_info_read_and_write(ifname: str, subnet: str) -> None:
    with tun_with_address(ifname, subnet, packet_info=True) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        s.sendto(b"with pi", (f"{subnet}.2", 77))
        dev.blocking = False
        deadline = time.monotonic() + 5
        while True:
            try:
                info = dev.read_packet()
            except BlockingIOError:
                assert time.monotonic() < deadline, "no packet"
                time.sleep(0.005)
                continue
            if udp_flow(f"{subnet}.2", 77)(bytes(info.payload)):
                break
        assert info.proto == 0x0800 and info.flags == 0
        assert parse_ipv4_udp(bytes(info.payload))[4] == b"with pi"
        pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 99, port, b"pi write")
        assert dev.write_packet(pkt) == len(pkt)
        assert s.recvfrom(100) == (b"pi write", (f"{subnet}.2", 99))
        # write() takes the raw form: the 4-byte header, then the packet
        raw = struct.pack("=H", 0) + struct.pack("!H", 0x0800) + ipv4_udp(f"{subnet}.2", f"{subnet}.1", 98, port, b"raw")
        assert dev.write(raw) == len(raw)
        assert s.recvfrom(100) == (b"raw", (f"{subnet}.2", 98))


def test_tap_ethernet_both_ways(ifname: str, subnet: str) -> None:
    with tap_with_address(ifname, subnet) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        tap_mac = open(f"/sys/class/net/{ifname}/address").read().strip()
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        payload = os.urandom(100)
        s.sendto(payload, (f"{subnet}.2", 5555))
        buf = bytearray(dev.max_packet_size)
        frame = read_matching(dev, lambda f: f[12:14] == b"\x08\x00" and udp_flow(f"{subnet}.2", 5555)(f[14:]), buf=buf)
        assert frame[:6] == mac_bytes(PEER_MAC) and frame[6:12] == mac_bytes(tap_mac)
        assert parse_ipv4_udp(frame[14:]) == (f"{subnet}.1", f"{subnet}.2", port, 5555, payload)
        reply = ethernet(tap_mac, PEER_MAC, 0x0800, ipv4_udp(f"{subnet}.2", f"{subnet}.1", 5555, port, b"reply"))
        assert dev.write(reply) == len(reply)
        assert s.recvfrom(100) == (b"reply", (f"{subnet}.2", 5555))


def test_write_first_nbytes_of_a_buffer(ifname: str, subnet: str) -> None:
    with tun_with_address(ifname, subnet) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        buf = bytearray(dev.max_packet_size)
        for payload in (b"first", b"second, longer"):
            pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, port, payload)
            buf[: len(pkt)] = pkt
            assert dev.write(buf, len(pkt)) == len(pkt)  # one buffer, its pointer cached
            assert s.recvfrom(100) == (payload, (f"{subnet}.2", 4000))
        with pytest.raises(ValueError):
            dev.write(buf, len(buf) + 1)
        with pytest.raises(ValueError):
            dev.write(buf, -1)
        with pytest.raises(TypeError):
            dev.write(buf, "3")  # type: ignore[arg-type]
