"""An asyncio UDP echo service behind a TUN: every datagram sent to a "remote"
address of the device's subnet comes back from that address.

    sudo python examples/async_echo.py tun%d --address 198.18.14.1/24
    # then, from anywhere on the machine:  nc -u 198.18.14.7 9999

One coroutine reads packets with ``read_batch_async`` (every queued packet
per wakeup, without blocking the loop) and answers each UDP datagram in
place: addresses and ports swapped, checksums recomputed, written back with
``write_async``.  Other coroutines run meanwhile: here a once-a-second
statistics line.  Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import struct
import sys

from tuntap_cffi import Device, DeviceClosedError, open_tun


def checksum(data: memoryview, initial: int = 0) -> int:
    """RFC 1071: one's complement of the one's complement sum of 16-bit words."""
    raw = bytes(data) + b"\0" * (len(data) % 2)
    total: int = initial + sum(struct.unpack(f"!{len(raw) // 2}H", raw))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo(packet: memoryview, own: set) -> bool:  # type: ignore[type-arg]
    """Turn an IPv4/UDP datagram for a remote address into its echo, in place."""
    if len(packet) < 28 or packet[0] != 0x45 or packet[9] != 17 or packet[6] & 0x3F or packet[7]:
        return False  # IPv4 without options, UDP, not a fragment
    dst = bytes(packet[16:20])
    if dst in own:
        return False  # the kernel answers its own addresses
    src = bytes(packet[12:16])
    packet[12:16], packet[16:20] = dst, src
    sport, dport = struct.unpack_from("!HH", packet, 20)
    struct.pack_into("!HH", packet, 20, dport, sport)
    packet[8] = 64  # TTL
    packet[10:12] = b"\0\0"
    packet[10:12] = checksum(packet[:20]).to_bytes(2, "big")
    length = len(packet) - 20
    packet[26:28] = b"\0\0"
    pseudo = sum(struct.unpack("!4H", packet[12:20])) + 17 + length
    packet[26:28] = (checksum(packet[20:], pseudo) or 0xFFFF).to_bytes(2, "big")
    return True


async def serve(dev: Device, own: set, stats: dict) -> None:  # type: ignore[type-arg]
    ring = dev.packet_ring(64)
    try:
        while True:
            await dev.read_batch_async(ring)
            for packet in ring:
                if echo(packet, own):
                    await dev.write_async(packet)
                    stats["echoed"] += 1
    except DeviceClosedError:
        pass


async def report(stats: dict) -> None:  # type: ignore[type-arg]
    while True:
        await asyncio.sleep(1)
        print(f"echoed {stats['echoed']} datagrams", flush=True)


async def main_async(args: argparse.Namespace) -> None:
    with open_tun(args.name) as dev:
        for address in args.address:
            dev.add_address(address)
        dev.up()
        own = {ipaddress.ip_interface(a).ip.packed for a in args.address}
        stats = {"echoed": 0}
        print(f"listening on {dev.name}", flush=True)
        await asyncio.gather(serve(dev, own, stats), report(stats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="tun%d")
    parser.add_argument("--address", action="append", required=True, help="IPv4 address/prefix of the device (repeatable)")
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
