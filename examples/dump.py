"""Dump the packets sent to a TUN device: the Go seed's examples/dump.go, in Python.

    .venv/bin/python examples/dump.py tun%d --address 198.18.12.1/24     # as root
    ping -c 3 198.18.12.2     # in another terminal: its echo requests appear here

Each packet is printed with its total length (IP header included, for IPv4
and IPv6 alike); the count goes to stderr at the end.

`tuntap-cffi dump` is the full-featured version (pcap output, TAP, hex).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from tuntap_cffi import TunTapError, open_tun

PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}


def describe(packet: memoryview) -> str:
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        src, dst = ipaddress.IPv4Address(bytes(packet[12:16])), ipaddress.IPv4Address(bytes(packet[16:20]))
        length = int.from_bytes(packet[2:4], "big")
        payload = packet[ihl:]
    elif version == 6:
        proto = packet[6]
        src, dst = ipaddress.IPv6Address(bytes(packet[8:24])), ipaddress.IPv6Address(bytes(packet[24:40]))
        length = 40 + int.from_bytes(packet[4:6], "big")  # the header holds the payload length: add the fixed header
        payload = packet[40:]
    else:
        return f"-- not an IP packet ({len(packet)} bytes)"
    return (
        f"-- Packet Received --\n"
        f"IP Version: {version}\nLength: {length}\n"
        f"Protocol: {proto} ({PROTOCOLS.get(proto, 'other')})\n"
        f"Source IP: {src}\nDestination IP: {dst}\n"
        f"Payload: [{bytes(payload).hex()}]\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="", help="interface name or template (default: kernel picks)")
    parser.add_argument("--address", help="an IPv4/IPv6 address with prefix to give the device, e.g. 198.18.12.1/24")
    parser.add_argument("--count", type=int, default=0, help="stop after this many packets")
    args = parser.parse_args()
    try:
        dev = open_tun(args.name)
    except TunTapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with dev:
        if args.address:
            dev.add_address(args.address)
        dev.up()
        print(f"listening on {dev.name}", flush=True)
        buf = bytearray(dev.max_packet_size)  # one buffer, reused for every packet
        view = memoryview(buf)
        seen = 0
        try:
            while not args.count or seen < args.count:
                n = dev.readinto(buf)
                print(describe(view[:n]), flush=True)
                seen += 1
        except KeyboardInterrupt:
            pass
        print(f"{seen} packets", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
