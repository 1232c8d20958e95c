"""Answer pings sent into a TUN device: ICMP and ICMPv6 echo replies built in place.

    sudo python examples/icmp_responder.py tun%d --address 198.18.12.1/24 --address fd00:7474:12::1/64
    ping 198.18.12.2              # in another terminal: answered by this script
    ping -6 fd00:7474:12::2       # likewise, over ICMPv6

The kernel answers pings to the device's own addresses itself; what it routes
into the TUN are packets for the other addresses of its subnets (".2" above),
and those are what this script answers.  Everything else (router
solicitations, other protocols, fragments) is ignored.  One preallocated
buffer serves every packet: the request is read into it, turned into the
reply where it lies, and written back from it.
"""

from __future__ import annotations

import argparse
import struct
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from typing import Container, List, Optional, Sequence, Set, Union

from tuntap_cffi import Device, TunTapError, open_tun

IPAddress = Union[IPv4Address, IPv6Address]
IPInterface = Union[IPv4Interface, IPv6Interface]
ICMP, ICMPV6 = 1, 58  # IP protocol numbers


def word_sum(data: memoryview) -> int:
    """Return the sum of the big-endian 16-bit words of *data*, an odd last byte padded with zero."""
    even = len(data) & ~1
    total: int = sum(struct.unpack_from(f"!{even // 2}H", data))
    return total + (data[even] << 8 if len(data) & 1 else 0)


def checksum(data: memoryview, initial: int = 0) -> int:
    """Return the Internet checksum of *data* (RFC 1071); *initial* is a pseudo-header's word_sum.

    The one's complement of the one's complement sum of the 16-bit words:
    sum them wide, then fold the carries back in (RFC 1071 section 2(C)).
    """
    total = initial + word_sum(data)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Remotes:
    """The addresses answered for: the device's subnets minus its own addresses and IPv4 broadcasts."""

    def __init__(self, interfaces: Sequence[IPInterface]) -> None:
        self.networks = [i.network for i in interfaces]
        self.excluded: Set[IPAddress] = {i.ip for i in interfaces}
        self.excluded |= {i.network.broadcast_address for i in interfaces
                          if i.version == 4 and i.network.prefixlen < 31}

    def __contains__(self, address: object) -> bool:
        return address not in self.excluded and any(address in net for net in self.networks)


def ipv4_echo_reply(packet: memoryview, remotes: Container[IPAddress]) -> int:
    """Turn the ICMP echo request in *packet* into its echo reply, in place; return the reply's length.

    Returns 0, leaving *packet* untouched, unless it is an unfragmented IPv4
    ICMP echo request to an address in *remotes*.
    """
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != ICMP:
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


def ipv6_echo_reply(packet: memoryview, remotes: Container[IPAddress]) -> int:
    """Turn the ICMPv6 echo request in *packet* into its echo reply, in place; return the reply's length.

    Returns 0, leaving *packet* untouched, unless it is an IPv6 packet whose
    next header is ICMPv6 (extension headers are not followed) carrying an
    echo request to an address in *remotes*.
    """
    if len(packet) < 48 or packet[0] >> 4 != 6 or packet[6] != ICMPV6:
        return 0
    length = packet[4] << 8 | packet[5]  # the payload length: the ICMPv6 message here
    end = 40 + length
    if length < 8 or end > len(packet) or packet[40] != 128 or packet[41] != 0:
        return 0
    if IPv6Address(bytes(packet[24:40])) not in remotes:
        return 0
    packet[8:24], packet[24:40] = bytes(packet[24:40]), bytes(packet[8:24])
    packet[7] = 64  # hop limit
    packet[40] = 129  # echo reply
    struct.pack_into("!H", packet, 42, 0)
    # RFC 8200 8.1 pseudo-header: source, destination, upper-layer length (32 bits), next header.
    pseudo = word_sum(packet[8:40]) + length + ICMPV6
    struct.pack_into("!H", packet, 42, checksum(packet[40:end], pseudo))
    return end


def echo_reply(packet: memoryview, remotes: Container[IPAddress]) -> int:
    """Turn an IPv4 or IPv6 echo request into its reply in place; return its length, or 0 to ignore it."""
    if packet and packet[0] >> 4 == 6:
        return ipv6_echo_reply(packet, remotes)
    return ipv4_echo_reply(packet, remotes)


def serve(dev: Device, remotes: Container[IPAddress], count: int) -> int:
    """Answer echo requests on *dev* until *count* replies are sent (0: no limit) or Ctrl-C; return that number."""
    buf = bytearray(dev.max_packet_size)  # the one buffer: every request and reply lives here
    view = memoryview(buf)
    replies = 0
    try:
        while not count or replies < count:
            n = dev.readinto(buf)
            size = echo_reply(view[:n], remotes)
            if size:
                dev.write(buf, size)  # the first size bytes; buf's cached pointer, no new view
                replies += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C ends serving; the caller then closes the device as usual
    return replies


def main(argv: Optional[List[str]] = None) -> int:
    """Run the responder; return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("name", nargs="?", default="tun%d", help="interface name or template (default: tun%%d)")
    parser.add_argument("--address", type=ip_interface, action="append", required=True,
                        help="an address with prefix for the device, IPv4 or IPv6; repeatable")
    parser.add_argument("--count", type=int, default=0, help="exit after this many replies (default: never)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be 0 (no limit) or more, not {args.count}")
    try:
        with open_tun(args.name) as dev:
            for address in args.address:
                dev.add_address(address)
            dev.up()
            print(f"listening on {dev.name}", flush=True)
            replies = serve(dev, Remotes(args.address), args.count)
    except TunTapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # Ctrl-C before serving started
    print(f"{replies} replies", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
