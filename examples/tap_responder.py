"""Impersonate a host behind a TAP device: answer its ARP who-has and ICMP echo requests.

    sudo python examples/tap_responder.py tap%d --address 198.18.13.1/24
    ping 198.18.13.2              # in another terminal: ARP and ping answered by this script

The device gets --address; the script plays the host --peer (default: .2 of
that subnet) with its own MAC (--mac).  It answers ARP requests for the peer
with the peer's MAC, so the kernel can address it, and ICMP echo requests to
the peer with echo replies; every other frame is ignored.  One preallocated
buffer serves every frame: the request is read into it, turned into the reply
where it lies, and written back from it.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from ipaddress import IPv4Address, IPv4Interface
from typing import Container, List, Optional

from tuntap_cffi import Device, TunTapError, open_tap

ETH_ARP, ETH_IPV4 = b"\x08\x06", b"\x08\x00"  # EtherTypes as they appear on the wire
# ARP for IPv4 over Ethernet (RFC 826): hardware type 1, protocol 0x0800, lengths 6 and 4, operation 1 (request).
ARP_REQUEST_HEAD = b"\x00\x01\x08\x00\x06\x04\x00\x01"


def word_sum(data: memoryview) -> int:
    """Return the sum of the big-endian 16-bit words of *data*, an odd last byte padded with zero."""
    even = len(data) & ~1
    total: int = sum(struct.unpack_from(f"!{even // 2}H", data))
    return total + (data[even] << 8 if len(data) & 1 else 0)


def checksum(data: memoryview) -> int:
    """Return the Internet checksum of *data* (RFC 1071).

    The one's complement of the one's complement sum of the 16-bit words:
    sum them wide, then fold the carries back in (RFC 1071 section 2(C)).
    """
    total = word_sum(data)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_echo_reply(packet: memoryview, remotes: Container[IPv4Address]) -> int:
    """Turn the ICMP echo request in *packet* into its echo reply, in place; return the reply's length.

    Returns 0, leaving *packet* untouched, unless it is an unfragmented IPv4
    ICMP echo request to an address in *remotes*.
    """
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return 0
    ihl, total = (packet[0] & 0x0F) * 4, packet[2] << 8 | packet[3]
    if ihl < 20 or total < ihl + 8 or total > len(packet) or packet[6] & 0x3F or packet[7]:
        return 0  # bad lengths, or a fragment (more-fragments flag or an offset): not reassembled here
    if packet[ihl] != 8 or packet[ihl + 1] != 0 or IPv4Address(bytes(packet[16:20])) not in remotes:
        return 0
    # bytes() copies: the right-hand views would otherwise see the first assignment.
    packet[12:16], packet[16:20] = bytes(packet[16:20]), bytes(packet[12:16])
    packet[8] = 64  # a fresh TTL, as the answering host would send
    packet[ihl] = 0  # echo reply; code, identifier, sequence and data stay as they came
    struct.pack_into("!H", packet, ihl + 2, 0)
    struct.pack_into("!H", packet, ihl + 2, checksum(packet[ihl:total]))
    struct.pack_into("!H", packet, 10, 0)
    struct.pack_into("!H", packet, 10, checksum(packet[:ihl]))
    return total


def arp_reply(frame: memoryview, peer: IPv4Address, peer_mac: bytes) -> int:
    """Turn an ARP request for *peer* in *frame* into the is-at reply, in place; return its length.

    Returns 0, leaving *frame* untouched, unless *frame* is an Ethernet ARP
    request (IPv4 over Ethernet) whose target is *peer*.
    """
    if len(frame) < 42 or frame[12:14] != ETH_ARP or frame[14:22] != ARP_REQUEST_HEAD:
        return 0
    if frame[38:42] != peer.packed:
        return 0
    asker_mac, asker_ip = bytes(frame[22:28]), bytes(frame[28:32])
    frame[0:6], frame[6:12] = asker_mac, peer_mac  # Ethernet: back to the asker, from the peer
    frame[21] = 2  # operation: reply
    frame[22:28], frame[28:32] = peer_mac, peer.packed  # sender: the peer
    frame[32:38], frame[38:42] = asker_mac, asker_ip  # target: the asker
    return 42


def frame_reply(frame: memoryview, peer: IPv4Address, peer_mac: bytes) -> int:
    """Turn an ARP or ICMP echo request for the peer into its reply, in place; return its length or 0."""
    if frame[12:14] == ETH_ARP:
        return arp_reply(frame, peer, peer_mac)
    if len(frame) < 14 or frame[12:14] != ETH_IPV4 or frame[0:6] != peer_mac:
        return 0
    size = ipv4_echo_reply(frame[14:], {peer})
    if not size:
        return 0
    frame[0:6], frame[6:12] = bytes(frame[6:12]), peer_mac  # back to the sender, from the peer
    return 14 + size


def mac_address(text: str) -> bytes:
    """Parse a MAC address such as 02:00:5e:00:53:02."""
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", text):
        raise ValueError(text)
    return bytes.fromhex(text.replace(":", ""))


def serve(dev: Device, peer: IPv4Address, peer_mac: bytes, count: int) -> int:
    """Answer ARP and echo requests on *dev* until *count* echo replies are sent (0: no limit) or Ctrl-C.

    Returns the number of echo replies sent.
    """
    buf = bytearray(dev.max_packet_size)  # the one buffer: every request and reply lives here
    view = memoryview(buf)
    replies = 0
    try:
        while not count or replies < count:
            n = dev.readinto(buf)
            size = frame_reply(view[:n], peer, peer_mac)
            if size:
                dev.write(buf, size)  # the first size bytes; buf's cached pointer, no new view
                if buf[12:14] == ETH_IPV4:  # count echo replies, not ARP ones
                    replies += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C ends serving; the caller then closes the device as usual
    return replies


def main(argv: Optional[List[str]] = None) -> int:
    """Run the responder; return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("name", nargs="?", default="tap%d", help="interface name or template (default: tap%%d)")
    parser.add_argument("--address", type=IPv4Interface, required=True, help="the device's IPv4 address with prefix")
    parser.add_argument("--peer", type=IPv4Address, help="the address answered for (default: .2 of the subnet)")
    parser.add_argument("--mac", type=mac_address, default="02:00:5e:00:53:02", help="the peer's MAC address")
    parser.add_argument("--count", type=int, default=0, help="exit after this many echo replies (default: never)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be 0 (no limit) or more, not {args.count}")
    peer: IPv4Address = args.peer or args.address.network.network_address + 2
    if peer not in args.address.network or peer == args.address.ip:
        parser.error(f"--peer {peer} must be another address of {args.address.network}")
    try:
        with open_tap(args.name) as dev:
            dev.add_address(args.address)
            dev.up()
            print(f"listening on {dev.name} as {peer} at {args.mac.hex(':')}", flush=True)
            replies = serve(dev, peer, args.mac, args.count)
    except TunTapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # Ctrl-C before serving started
    print(f"{replies} replies", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
