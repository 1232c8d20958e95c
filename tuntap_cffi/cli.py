"""The ``tuntap-cffi`` command: ``dump`` creates a TUN/TAP device and prints (and records) what arrives.

Exit codes: 0 after a normal end (``--count`` reached, Ctrl-C, SIGTERM, the
reader of the output went away), 1 when the device cannot be created or
configured (one line on stderr, e.g. the CAP_NET_ADMIN advice), 2 for usage
errors (argparse's convention), 130 for Ctrl-C before the capture started.

Ctrl-C while a packet is being written must not cut a pcap record in half,
so SIGINT/SIGTERM only set a flag, except while the loop is blocked in a
read: then they raise ``KeyboardInterrupt`` to leave it.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys
import time
from types import FrameType
from typing import Any, BinaryIO, Optional, Sequence, TextIO, Tuple

from . import __version__
from .config import IPInterface, parse_interface
from .decode import format_time, hexdump, summarize_ethernet, summarize_ip
from ._constants import MAX_MTU, MIN_MTU, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6
from ._validate import check_name
from .device import Device, DeviceKind, open_tap, open_tun
from .bpf import compile_filter
from .errors import LibpcapNotFoundError, TunTapError
from .offload import gso_split_frame
from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter  # (the values bpf.compile_filter takes)
from .ring import PacketRing

__all__ = ["main", "build_parser"]

PROG = "tuntap-cffi"
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6

_DUMP_EPILOG = """\
Each packet is printed on one line: local time, IP version, length, protocol,
source > destination (with ports for TCP/UDP), then ICMP/ICMPv6 type, TCP
flags, ARP who-has/is-at.  A TAP line starts with the Ethernet MACs.

examples:
  %(prog)s tun%%d --address 198.18.12.1/24
      then `ping 198.18.12.2` in another terminal: its echo requests appear
  %(prog)s tap0 --tap --address 198.18.12.1/24 --address fd00:7474:12::1/64 --hex
  %(prog)s vpn0 --address 198.18.12.1/24 --pcap capture.pcap --count 100
  %(prog)s --address 198.18.12.1/24 --pcap - | wireshark -k -i -
  %(prog)s --address 198.18.12.1/24 --pcap - | tshark -r -
  %(prog)s --address 198.18.12.1/24 --no-ipv6 --count 3
      only the packets sent to it: no router solicitations or MLD reports of its own
  %(prog)s --address 198.18.12.1/24 --filter 'udp port 53 or icmp'
      the kernel drops every other packet before it reaches the reader (see tx_dropped in `ip -s link`)

Packet lines go to stdout (to stderr with --pcap -); the "listening" banner,
the final packet count and errors go to stderr.

Creating the device needs CAP_NET_ADMIN (root, or `setcap cap_net_admin+ep`
on the interpreter).  The interface exists while the command runs; Ctrl-C
stops it, prints the packet count and removes the interface.
"""


def _interface(value: str) -> IPInterface:
    try:
        return parse_interface(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_in(low: int, high: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is outside {low}..{high}")
        return number

    return parse


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Return the argument parser of the whole command (``dump`` is its subcommand)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Linux TUN/TAP devices from pure Python (tuntap_cffi).",
        epilog=f"Run `{prog} dump --help` for the packet dump.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    dump = sub.add_parser(
        "dump",
        help="create a TUN/TAP device and print the packets sent to it",
        description="Create a TUN (or TAP) device, bring it up and print one line per packet\n"
        "the kernel sends to it; optionally record the packets in a pcap file.",
        epilog=_DUMP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dump.add_argument(
        "name", nargs="?", default="", type=_name,
        help="interface name, or a template with one %%d such as 'tun%%d' (default: the kernel picks tunN/tapN)",
    )
    dump.add_argument("--tap", action="store_true", help="create a TAP device (Ethernet frames) instead of a TUN (IP packets)")
    dump.add_argument(
        "--address", action="append", default=[], type=_interface, metavar="ADDR/PREFIX",
        help="add this IPv4 or IPv6 address to the interface, e.g. 198.18.12.1/24 or fd00:7474:12::1/64 (repeatable)",
    )
    dump.add_argument(
        "--no-ipv6", action="store_true",
        help="turn IPv6 off on the interface before it comes up, so that it sends nothing of its own "
        "(router solicitations, MLD reports) and --count counts only the traffic sent to it",
    )
    dump.add_argument(
        "--filter", metavar="EXPR",
        help="a tcpdump-syntax filter expression (needs libpcap), attached to the device so that the kernel "
        "drops every packet it rejects before the reader sees it (counted in the interface's tx_dropped); "
        "for a TUN the expression sees IP packets, for a TAP Ethernet frames",
    )
    dump.add_argument("--mtu", type=_int_in(MIN_MTU, MAX_MTU), metavar="BYTES", help="set the interface MTU (68..65535)")
    dump.add_argument("--count", type=_int_in(1, 2**63 - 1), metavar="N", help="stop after N packets (default: until Ctrl-C)")
    dump.add_argument(
        "--offload", action="store_true",
        help="TUN only: take TSO/USO super-packets with a virtio-net header (as fast forwarders do) and "
        "split each into the valid packets it stands for before printing and recording",
    )
    dump.add_argument("--hex", action="store_true", help="also print each packet's bytes as an indented hex dump (offset, hex, ASCII)")
    dump.add_argument(
        "--pcap", metavar="FILE",
        help="also write the packets to FILE in pcap format (link type RAW for a TUN, Ethernet for a TAP), "
        "readable by tcpdump/tshark/Wireshark; '-' writes the pcap to stdout and the text lines to stderr. "
        "A new FILE is created readable by its owner only (0600: packets may carry secrets); an existing "
        "regular file is not overwritten without --overwrite; a symbolic link is refused; a named pipe "
        "(mkfifo) is written to as it is",
    )
    dump.add_argument(
        "--overwrite", action="store_true",
        help="with --pcap FILE: replace FILE if it is an existing regular file (its old size is reported)",
    )
    return parser


class _Stop:
    """SIGINT/SIGTERM handler: remember the request; interrupt only a blocked read (see module doc)."""

    def __init__(self) -> None:
        self.requested = False
        self.interruptible = True  # setup and reads may be interrupted; writing a packet may not

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        self.requested = True
        if self.interruptible:
            self.interruptible = False  # a second signal must not interrupt the cleanup
            raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Run the command with *argv* (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.offload and args.tap:
        parser.error("--offload splits IP super-packets: it works with a TUN, not --tap")
    if args.no_ipv6 and any(a.version == 6 for a in args.address):
        parser.error("--no-ipv6 turns IPv6 off: it cannot be combined with an IPv6 --address")
    if args.pcap == "-" and sys.stdout.isatty():
        parser.error("--pcap - would write binary data to the terminal: pipe it (| tshark -r -) or give a file")
    args.program = None
    if args.filter is not None:  # compiled before anything is created: a typo is a usage error
        try:
            args.program = compile_filter(args.filter, LINKTYPE_ETHERNET if args.tap else LINKTYPE_RAW)
        except ValueError as exc:
            parser.error(f"--filter: {exc}")
        except LibpcapNotFoundError as exc:
            print(f"{PROG}: error: --filter: {_one_line(exc)}", file=sys.stderr)
            return 1
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _dump(args, stop)
    except KeyboardInterrupt:  # before the capture loop started
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (TunTapError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _open_device(args: argparse.Namespace) -> Device:
    if args.offload:
        dev = open_tun(args.name, vnet_hdr=True, offload=OFFLOADS)
    else:
        dev = (open_tap if args.tap else open_tun)(args.name)
    try:
        if args.no_ipv6:  # before up(): an interface coming up with IPv6 solicits routers at once
            dev.disable_ipv6()
        if args.mtu is not None:
            dev.mtu = args.mtu
        for address in args.address:
            dev.add_address(address)
        if args.program is not None:  # before up(): no unwanted packet is ever queued
            dev.attach_filter(args.program)
        dev.up()
    except BaseException:
        dev.close()
        raise
    return dev


def _dump(args: argparse.Namespace, stop: _Stop) -> int:
    text: TextIO = sys.stderr if args.pcap == "-" else sys.stdout
    with _open_device(args) as dev:
        tap = dev.kind is DeviceKind.TAP
        pcap_file = None
        if args.pcap == "-":
            pcap_file = sys.stdout.buffer
        elif args.pcap is not None:
            pcap_file = _open_pcap(args.pcap, args.overwrite)
        try:
            writer = None
            if pcap_file is not None:
                writer = PcapWriter(pcap_file, LINKTYPE_ETHERNET if tap else LINKTYPE_RAW)
            where = f", writing {'stdout' if args.pcap == '-' else args.pcap}" if writer else ""
            addresses = " ".join(str(a) for a in args.address)
            # From the "listening" line on, a signal ends the capture cleanly
            # (exit 0): it only sets the flag until the loop's first read,
            # which checks it (a signal just after the line used to escape as
            # "interrupted", 130: seen on PyPy in CI).
            stop.interruptible = False
            print(
                f"{PROG}: listening on {dev.name} ({dev.kind.value.upper()}, link-type "
                f"{'EN10MB' if tap else 'RAW'}, MTU {dev.mtu}{', ' + addresses if addresses else ''}"
                f"{f', filter {args.filter!r}' if args.filter is not None else ''}){where}",
                file=sys.stderr, flush=True,
            )
            seen, reason = _capture(dev, args, stop, writer, text)
        finally:
            if pcap_file is not None and pcap_file is not sys.stdout.buffer:
                pcap_file.close()
    print(f"{seen} packet{'s' if seen != 1 else ''} captured{reason}", file=sys.stderr, flush=True)
    return 0


def _open_pcap(path: str, overwrite: bool) -> BinaryIO:
    """Open *path* for the capture: never through a symlink, a new file 0600, an old one only if *overwrite*.

    dump runs as root: a symlink or file planted at a predictable path (in
    /tmp) must not make it truncate or write to another file.
    """
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            fd = os.open(path, flags)  # a pipe blocks here until its reader comes
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "--pcap: refusing to follow a symbolic link: give the target's own path", path) from None
            raise
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                if not overwrite:
                    raise OSError(errno.EEXIST, "--pcap: the file exists: pass --overwrite to replace it, or another name", path)
                print(f"{PROG}: overwriting {path} ({info.st_size} bytes)", file=sys.stderr, flush=True)
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
    return os.fdopen(fd, "wb")


def _capture(dev: Device, args: argparse.Namespace, stop: _Stop, writer: Optional[PcapWriter], text: TextIO) -> "tuple[int, str]":
    """The loop: one preallocated buffer, read with readinto, packets as memoryview slices."""
    # Sized for the largest MTU a tun allows, not the current one: the device
    # checks a cached buffer against the MTU only when it is bound, and an
    # MTU raised under us must not truncate packets silently.
    buf = bytearray(MAX_MTU + dev.max_packet_size - dev.mtu)
    view = memoryview(buf)
    readinto = dev.readinto
    summarize = summarize_ethernet if dev.kind is DeviceKind.TAP else summarize_ip
    count, show_hex = args.count, args.hex
    hdr_size = dev.vnet_hdr_size
    # With --offload, each read may stand for up to 45+ packets: split into a ring.
    # Segments are at most an MTU long; a 64 KiB burst at MSS 536 is 123 of them.
    segments = PacketRing(256, max(dev.mtu, 1500)) if hdr_size else None
    seen = 0
    try:
        while count is None or seen < count:
            try:
                stop.interruptible = True
                if stop.requested:
                    break
                n = readinto(buf)
                stop.interruptible = False
            except KeyboardInterrupt:
                break
            timestamp = time.time()
            packets: Tuple[memoryview, ...]
            if segments is None:
                packets = (view[:n],)
            else:
                segments.clear()
                try:
                    gso_split_frame(view[:n], segments, hdr_size)
                    packets = tuple(segments)
                except ValueError as exc:  # not splittable: show it, record the IP packet as is
                    text.write(f"{format_time(timestamp)} unsplittable super-packet ({n} bytes): {exc}\n")
                    packets = (view[hdr_size:n],)
            for packet in packets:
                if writer is not None:
                    writer.write_packet(packet, timestamp)
                line = f"{format_time(timestamp)} {summarize(packet)}\n"
                if show_hex:
                    line += hexdump(packet) + "\n"
                text.write(line)
            text.flush()
            seen += len(packets)
    except BrokenPipeError:
        # Whoever read our output is gone (`| head`): stop quietly.  Point the
        # dead stream at /dev/null so the interpreter's final flush stays quiet.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BrokenPipeError:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
        return seen, " (output closed)"
    finally:
        stop.interruptible = False
        if writer is not None:
            try:
                writer.close()
            except BrokenPipeError:
                pass
    return seen, ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
