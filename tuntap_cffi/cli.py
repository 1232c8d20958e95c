"""The ``tuntap-cffi`` command: ``dump`` creates a TUN/TAP device and prints (and records) what arrives;
``replay`` writes a capture file into one; ``add``/``del``/``list`` manage persistent devices.

``replay``, ``add``, ``del`` and ``list`` exit with 0 on success, 1 with one
line on stderr for a failure (the library's message), 2 for usage errors,
130 after Ctrl-C and 143 after SIGTERM.  ``dump``:

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
import itertools
import os
import signal
import stat
import sys
import time
from types import FrameType
from typing import Any, BinaryIO, Iterator, Optional, Sequence, TextIO, Tuple

from . import __version__
from .config import IPInterface, parse_interface
from .decode import format_time, hexdump, summarize_ethernet, summarize_ip
from ._constants import MAX_MTU, MIN_MTU, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6
from ._validate import check_name, check_netns
from .bpf import compile_filter
from .capfile import CaptureFormatError, CapturedPacket, linktype_name, read_capture
from .device import Device, DeviceKind, TunFlags, delete_persistent, open_tap, open_tun
from .errors import BatchWriteError, LibpcapNotFoundError, TunTapError
from .offload import gso_split_frame
from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter  # (the values bpf.compile_filter takes)
from .ring import PacketRing

__all__ = ["main", "build_parser", "tuntap_line"]

PROG = "tuntap-cffi"
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6

_NETNS_HELP = ("create the device in network namespace NS: a name of `ip netns list` (/run/netns/NS) or a path "
               "such as /proc/PID/ns/net; --address, --mtu, --no-ipv6 and --filter act there, and the interface "
               "goes with the command as usual (an unknown NS: exit status 1)")

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
  %(prog)s tun0 --netns blue --address 198.18.12.1/24 --no-ipv6
      the device lives in namespace blue (`ip netns add blue`): then
      `ip netns exec blue ping -I tun0 198.18.12.2` shows up here

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


def _netns(value: str) -> str:
    try:
        checked = check_netns("--netns", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(checked)


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
        description="TUN/TAP devices from pure Python (tuntap_cffi).",
        epilog=f"Run `{prog} COMMAND --help` for a command's options and examples.",
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
    dump.add_argument("--netns", type=_netns, metavar="NS", help=_NETNS_HELP)
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
    _add_replay_parser(sub)
    _add_manage_parsers(sub)
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
    if args.command != "dump":
        return _run_command(args, parser)
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
        dev = open_tun(args.name, vnet_hdr=True, offload=OFFLOADS, netns=args.netns)
    else:
        dev = (open_tap if args.tap else open_tun)(args.name, netns=args.netns)
    return _configured(dev, args)


def _configured(dev: Device, args: argparse.Namespace) -> Device:
    """*dev* with --no-ipv6, --mtu and --address applied, brought up; closed if any step fails."""
    try:
        if args.no_ipv6:  # before up(): an interface coming up with IPv6 solicits routers at once
            dev.disable_ipv6()
        if args.mtu is not None:
            dev.mtu = args.mtu
        for address in args.address:
            dev.add_address(address)
        program = getattr(args, "program", None)  # dump --filter only (replay has no filter)
        if program is not None:  # before up(): no unwanted packet is ever queued
            dev.attach_filter(program)
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
                f"{'EN10MB' if tap else 'RAW'}, MTU {dev.mtu}{', netns ' + args.netns if args.netns else ''}"
                f"{', ' + addresses if addresses else ''}"
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


# ------------------------------------------------------------------ replay

_REPLAY_EPILOG = """\
The device: NAME, if a TUN/TAP interface of that name exists (a persistent
one, e.g. made by the `add` command), is attached to, configured with the options
given, brought up and left as it was found; otherwise a new device is created
(NAME may be a template such as 'tun%%d', or empty), brought up, and removed
when the replay ends.  Its kind follows the capture: IP link types (RAW,
IPV4, IPV6, NULL, LOOP, LINUX_SLL, LINUX_SLL2) go into a TUN, Ethernet
(EN10MB) into a TAP; --tun writes an Ethernet capture's IPv4/IPv6 frames into
a TUN without their Ethernet (and VLAN) header and skips the rest (ARP...).
Any other link type is an error that names it.

Pace: by default the packets keep the gaps between their recorded timestamps
(on a monotonic clock, each packet's send time computed from the first one,
so a long file does not drift); --rate sends PPS packets a second; and
--as-fast-as-possible writes batches of --batch packets in one call each.

examples:
  %(prog)s capture.pcap --address 198.18.12.1/24
      a new TUN (the kernel names it), the packets at their recorded pace
  %(prog)s capture.pcapng vpn0 --rate 1000 --loop 10
      into the existing vpn0 (made by the `add` command), 1000 packets/s, 10 times over
  %(prog)s frames.pcap --tap --as-fast-as-possible --count 100000
  tshark -r big.pcapng -w - -Y udp | %(prog)s - tun%%d --address 198.18.12.1/24

A progress line goes to stderr on replays longer than a second (rewritten in
place on a terminal, a line every few seconds otherwise), then the summary.
Exit status: 0 when every packet was written, 1 for an unreadable, truncated
or corrupt file, a link type the device cannot take, or a packet the kernel
refused (with the packet's number), 2 for usage errors, 130 after Ctrl-C
(143 after SIGTERM).  Creating or configuring a device needs CAP_NET_ADMIN.
"""

_ADD_EPILOG = """\
The device stays after the command ends (IFF_PERSIST), down and without
addresses, like `ip tuntap add`.  Without --owner or --group, the library
makes the calling user its owner (a persistent device with neither would be
open to every user who can open /dev/net/tun).  The name is printed on stdout.

examples:
  %(prog)s vpn0
  %(prog)s tap%%d --tap --owner alice --group netdev
  %(prog)s mq0 --multi-queue
"""

_DEL_EPILOG = """\
Fails (exit 1) if no TUN/TAP interface has that name, or if a process still
holds it (it stays then); like `ip tuntap del`.

examples:
  %(prog)s vpn0
"""

_LIST_EPILOG = """\
One line per TUN/TAP interface, in `ip tuntap list`'s format: name, kind,
flags (pi, one_queue, vnet_hdr, multi_queue, persist, ...), then the owner's
uid and group's gid when set, all read from sysfs.

examples:
  %(prog)s
  %(prog)s --persistent
"""

# TAP, Ethernet in a TUN (IP frames only), and link types whose header a TUN drops: the header's size.
_ETHERTYPES_IP = (0x0800, 0x86DD)
_VLAN_TAGS = (0x8100, 0x88A8)
_STRIP_FOR_TUN = {LINKTYPE_RAW: 0, 228: 0, 229: 0, 0: 4, 108: 4}  # RAW, IPV4, IPV6, NULL and LOOP (a 4-byte family)
_LINKTYPE_SLL, _LINKTYPE_SLL2 = 113, 276
_IP_LINKTYPES = frozenset(_STRIP_FOR_TUN) | {_LINKTYPE_SLL, _LINKTYPE_SLL2}
_MAX_WRITE = 65535 + 18  # the largest IP packet, in an Ethernet frame with a VLAN tag


def _add_replay_parser(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="write the packets of a pcap/pcapng capture into a TUN/TAP device",
        description="Write the packets of a pcap or pcapng capture into a TUN (or TAP) device, as if they\n"
        "arrived on it: at their recorded pace, at a fixed rate, or as fast as possible.",
        epilog=_REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file", metavar="FILE", help="the capture (pcap or pcapng, either byte order); '-' reads stdin")
    replay.add_argument(
        "name", nargs="?", default="", type=_name, metavar="NAME",
        help="an existing TUN/TAP interface to write into, or the name (or 'tun%%d' template) of a new one "
        "(default: a new one the kernel names)",
    )
    kind = replay.add_mutually_exclusive_group()
    kind.add_argument("--tap", action="store_true", help="create a TAP (the default for an Ethernet capture)")
    kind.add_argument(
        "--tun", action="store_true",
        help="create a TUN even for an Ethernet capture: its IPv4/IPv6 frames are written without the Ethernet header, others skipped",
    )
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive_float, metavar="PPS", help="send PPS packets a second, ignoring the timestamps")
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no pacing: write batches of packets as fast as the kernel takes them")
    replay.add_argument("--batch", type=_int_in(1, 1024), default=64, metavar="N",
                        help="with --as-fast-as-possible: packets per write_batch call (default 64)")
    replay.add_argument("--count", type=_int_in(1, 2**63 - 1), metavar="N", help="stop after N packets written")
    replay.add_argument(
        "--loop", type=_int_in(1, 2**31 - 1), default=1, metavar="K",
        help="play the file K times (not from stdin); at the recorded pace each pass starts right after the one "
        "before, with --rate the rate runs on across passes",
    )
    replay.add_argument(
        "--address", action="append", default=[], type=_interface, metavar="ADDR/PREFIX",
        help="add this IPv4 or IPv6 address to the interface before the replay (repeatable), as dump does",
    )
    replay.add_argument("--no-ipv6", action="store_true", help="turn IPv6 off on the interface before it comes up")
    replay.add_argument(
        "--netns", type=_netns, metavar="NS",
        help="the device in network namespace NS (a name of `ip netns list`, or a path): created there, or an "
        "interface of NAME there attached to (then --tap/--tun must name its kind, and a multi-queue one is refused)",
    )
    replay.add_argument("--mtu", type=_int_in(MIN_MTU, MAX_MTU), metavar="BYTES", help="set the interface MTU (68..65535)")
    replay.add_argument("--no-progress", action="store_true", help="print no progress line, only the summary")


def _add_manage_parsers(sub: Any) -> None:
    add = sub.add_parser(
        "add", help="create a persistent TUN/TAP device (like `ip tuntap add`)",
        description="Create a persistent TUN (or TAP) device that stays after the command ends.",
        epilog=_ADD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", type=_full_or_template_name, metavar="NAME", help="interface name, or a template with one %%d")
    add.add_argument("--tap", action="store_true", help="a TAP device (Ethernet frames) instead of a TUN")
    add.add_argument("--owner", type=_id_or_name, metavar="USER", help="user (name or uid) who may attach without CAP_NET_ADMIN")
    add.add_argument("--group", type=_id_or_name, metavar="GROUP", help="group (name or gid) whose members may attach")
    add.add_argument("--multi-queue", action="store_true", help="allow several queues (IFF_MULTI_QUEUE)")
    delete = sub.add_parser(
        "del", help="delete a persistent TUN/TAP device (like `ip tuntap del`)",
        description="Delete a persistent TUN or TAP device.", epilog=_DEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("name", type=_full_name, metavar="NAME", help="the interface's name")
    listing = sub.add_parser(
        "list", help="list the TUN/TAP devices (like `ip tuntap list`)",
        description="List the TUN/TAP interfaces of this network namespace.", epilog=_LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--persistent", action="store_true", help="only the persistent ones")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive number")
    return number


def _full_or_template_name(value: str) -> str:
    name = _name(value)
    if not name:
        raise argparse.ArgumentTypeError("the name must not be empty")
    return name


def _full_name(value: str) -> str:
    name = _full_or_template_name(value)
    if "%" in name:
        raise argparse.ArgumentTypeError(f"{name!r}: give the interface's full name, not a template")
    return name


def _id_or_name(value: str) -> "int | str":
    return int(value) if value.isdigit() else value


def _run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run a subcommand other than dump; return the exit code."""
    if args.command == "replay":
        if args.loop > 1 and args.file == "-":
            parser.error("--loop plays the file again: it needs a file, not '-' (stdin)")
        if args.no_ipv6 and any(a.version == 6 for a in args.address):
            parser.error("--no-ipv6 turns IPv6 off: it cannot be combined with an IPv6 --address")
        if args.batch != 64 and not args.as_fast_as_possible:
            parser.error("--batch sets the batch size of --as-fast-as-possible")
        run = _replay
    else:
        run = {"add": _add, "del": _del, "list": _list}[args.command]
    progress = _Progress(args)
    try:
        with _signals_raise():
            return run(args, progress)
    except KeyboardInterrupt as stop:
        progress.finish(f"interrupted after {progress.summary()}")
        return 143 if stop.args == ("SIGTERM",) else 130
    except (TunTapError, OSError, ValueError) as exc:
        progress.finish()
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        if progress.packets:
            progress.finish(f"{progress.summary()} before that")
        return 1


class _signals_raise:
    """SIGINT and SIGTERM raise KeyboardInterrupt (SIGTERM's with the argument "SIGTERM") while active.

    A replay writes each packet with one write(): there is no half-written
    state for a signal to leave behind, so it may interrupt anywhere.
    """

    def __enter__(self) -> None:
        def handler(signum: int, frame: Optional[FrameType]) -> None:
            raise KeyboardInterrupt("SIGTERM" if signum == signal.SIGTERM else "SIGINT")

        self._previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class _Progress:
    """Counts what a replay wrote and shows it on stderr at most a few times a second.

    On a terminal one line rewritten in place (every 0.25 s); otherwise a
    plain line every 2 s; none in the first second, so short replays print
    only their summary.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.packets = 0
        self.bytes = 0
        self.skipped = 0
        self.cut = 0
        self.file_size = 0
        self.file: Optional[BinaryIO] = None
        self.enabled = not getattr(args, "no_progress", True)
        self.terminal = sys.stderr.isatty()
        self.interval = 250_000_000 if self.terminal else 2_000_000_000
        self.start = time.monotonic_ns()
        self.next = self.start + 1_000_000_000
        self.shown = False  # a line rewritten in place is on the terminal
        self.anchor = 0  # with --rate: the monotonic time of the first packet, from which each one's send time is computed

    def due(self, now: int) -> None:
        """Show the progress line if its time has come (*now*: ``time.monotonic_ns()``)."""
        if now >= self.next and self.enabled:
            self.next = now + self.interval
            line = f"{PROG}: {self.summary()}, {(now - self.start) / 1e9:.1f} s"
            if self.file is not None and self.file_size:
                try:
                    line += f", {min(100.0, 100.0 * self.file.tell() / self.file_size):.0f}% of the file"
                except (OSError, ValueError):
                    pass
            if self.terminal:
                sys.stderr.write(f"\r{line}\x1b[K")
                self.shown = True
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def summary(self) -> str:
        text = f"{self.packets} packet{'s' if self.packets != 1 else ''} ({self.bytes} bytes) written"
        if self.skipped:
            text += f", {self.skipped} non-IP frame{'s' if self.skipped != 1 else ''} skipped"
        return text

    def finish(self, line: Optional[str] = None) -> None:
        """End the in-place line (if any) and print *line*."""
        if self.shown:
            sys.stderr.write("\n")
            self.shown = False
        if line is not None:
            sys.stderr.write(f"{PROG}: {line}\n")
        sys.stderr.flush()


def _replay(args: argparse.Namespace, progress: _Progress) -> int:
    try:
        return _replay_file(args, progress)
    except CaptureFormatError as exc:
        raise CaptureFormatError(f"{args.file}: {exc}") from None


def _replay_file(args: argparse.Namespace, progress: _Progress) -> int:
    source = _open_capture(args.file)
    try:
        packets = read_capture(source)
        first = next(packets, None)
        if first is None:
            print(f"{PROG}: {args.file} holds no packets: nothing to replay", file=sys.stderr)
            return 0
        progress.file = source
        progress.file_size = _size_of(source)
        # (sysfs shows this namespace's interfaces, not those of --netns)
        flags = _tun_flags(args.name) if args.netns is None else None
        if flags is None and args.netns is None and args.name and "%" not in args.name and os.path.exists(f"/sys/class/net/{args.name}"):
            raise OSError(errno.EEXIST, "an interface of that name exists and is not a TUN/TAP device", args.name)
        if flags is not None:
            tap = bool(flags & TunFlags.TAP)
            if (args.tap and not tap) or (args.tun and tap):
                raise ValueError(f"{args.name} is an existing {'TAP' if tap else 'TUN'}: drop --{'tun' if tap else 'tap'}")
        else:
            tap = args.tap or (first.linktype == LINKTYPE_ETHERNET and not args.tun)
        _convert(first, tap, 1)  # a link type the device cannot take fails before the device is made
        with _replay_device(args, flags, tap) as dev:
            name = dev.name
            print(f"{PROG}: replaying {args.file} into {name} ({dev.kind.value.upper()}, "
                  f"{'netns ' + args.netns + ', ' if args.netns else ''}"
                  f"{_pace_text(args)}{', ' + ' '.join(map(str, args.address)) if args.address else ''})",
                  file=sys.stderr, flush=True)
            started = time.monotonic_ns()
            for loop in range(args.loop):
                if loop:
                    source.seek(0)
                    packets = read_capture(source)
                    first = next(packets)
                if not _play(dev, itertools.chain((first,), packets), args, progress, tap):
                    break
            elapsed = (time.monotonic_ns() - started) / 1e9
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    progress.finish(f"{progress.summary()} into {name} in {elapsed:.3f} s"
                    + (f"; {progress.cut} cut short by the capture's snaplen were written as captured" if progress.cut else ""))
    return 0


def _open_capture(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def _size_of(file: BinaryIO) -> int:
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError):
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _tun_flags(name: str) -> Optional[int]:
    """The IFF_* flags of TUN/TAP interface *name* from sysfs; None if there is none of that name."""
    if not name or "%" in name:
        return None
    try:
        with open(f"/sys/class/net/{name}/tun_flags") as f:
            return int(f.read().strip(), 16)
    except (OSError, ValueError):
        return None


def _replay_device(args: argparse.Namespace, flags: Optional[int], tap: bool) -> Device:
    """Attach to the existing TUN/TAP *args.name* (its *flags*) or create one; configure it and bring it up."""
    multi_queue = bool(flags is not None and flags & TunFlags.MULTI_QUEUE)
    return _configured((open_tap if tap else open_tun)(args.name, multi_queue=multi_queue, netns=args.netns), args)


def _pace_text(args: argparse.Namespace) -> str:
    if args.as_fast_as_possible:
        return f"as fast as possible, batches of {args.batch}"
    if args.rate is not None:
        return f"{args.rate:g} packets/s"
    return "at the recorded pace"


def _convert(packet: CapturedPacket, tap: bool, number: int) -> Optional[memoryview]:
    """What to write for *packet* into a TAP (*tap*) or a TUN: a view of its bytes, or None to skip it.

    ValueError (naming the packet's *number* and link type) for a link type
    the device cannot take or a packet too short for its link header.
    """
    data, linktype = packet.data, packet.linktype
    if tap:
        if linktype != LINKTYPE_ETHERNET:
            raise ValueError(f"packet {number}: {linktype_name(linktype)} cannot be written into a TAP, which takes "
                             "Ethernet frames: replay it into a TUN")
        return memoryview(data)
    strip = _STRIP_FOR_TUN.get(linktype)
    if strip is None:
        if linktype == LINKTYPE_ETHERNET:  # IP frames without their Ethernet header (and one VLAN tag)
            at = 12
            while len(data) >= at + 2 and int.from_bytes(data[at : at + 2], "big") in _VLAN_TAGS:
                at += 4
            ethertype, strip = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif linktype == _LINKTYPE_SLL:  # Linux "cooked" capture (tcpdump -i any): protocol at 14 of 16
            ethertype, strip = int.from_bytes(data[14:16], "big"), 16
        elif linktype == _LINKTYPE_SLL2:  # protocol at 0 of 20
            ethertype, strip = int.from_bytes(data[0:2], "big"), 20
        else:
            raise ValueError(f"packet {number}: {linktype_name(linktype)} cannot be replayed: a TUN takes RAW, IPV4, IPV6, "
                             "NULL, LOOP, LINUX_SLL(2) or (with --tun) EN10MB; a TAP takes EN10MB")
        if len(data) < strip or ethertype not in _ETHERTYPES_IP:
            return None
    if len(data) <= strip:
        raise ValueError(f"packet {number} ({len(data)} bytes) is too short for its {linktype_name(linktype)} header")
    return memoryview(data)[strip:]


def _play(dev: Device, packets: Iterator[CapturedPacket], args: argparse.Namespace, progress: _Progress, tap: bool) -> bool:
    """Write one pass of *packets* into *dev*; False once --count is reached."""
    if args.as_fast_as_possible:
        return _play_batches(dev, packets, args, progress, tap)
    write, clock, sleep = dev.write, time.monotonic_ns, time.sleep
    count = args.count
    interval = None if args.rate is None else 1e9 / args.rate
    start = 0  # the monotonic time of the pass's first packet: every send time is computed from it (no drift)
    first_ts: Optional[int] = None
    sent_in_pass = 0
    for number, packet in enumerate(packets, progress.packets + progress.skipped + 1):
        data = _convert(packet, tap, number)
        if data is None:
            progress.skipped += 1
            continue
        now = clock()
        if interval is not None:  # one schedule for the whole replay: --loop's passes follow at the same rate
            if progress.packets == 0:
                progress.anchor = now
            else:
                _wait_until(progress.anchor + round(progress.packets * interval), clock, sleep)
        elif sent_in_pass == 0:  # a pass starts at once; its packets keep their gaps to its first one
            start, first_ts = now, packet.timestamp_ns
        elif packet.timestamp_ns is not None and first_ts is not None:
            _wait_until(start + packet.timestamp_ns - first_ts, clock, sleep)
        _write_one(write, data, number)
        sent_in_pass += 1
        progress.packets += 1
        progress.bytes += len(data)
        progress.cut += len(packet.data) < packet.original_length
        progress.due(now)
        if count is not None and progress.packets >= count:
            return False
    return True


#: The longest single sleep of a paced replay (s).  A signal that lands after the interpreter's last check
#: and before the sleep's system call does not cut the sleep short (CI caught a SIGTERM waiting out a 30 s gap
#: that way): its handler runs once this slice ends.
_SLEEP_SLICE = 0.2


def _wait_until(deadline: int, clock: Any, sleep: Any) -> None:
    """Sleep until monotonic time *deadline* (ns), in slices (see _SLEEP_SLICE); a deadline in the past returns at once."""
    while True:
        left = deadline - clock()
        if left <= 0:
            return
        sleep(min(left / 1e9, _SLEEP_SLICE))


def _write_one(write: Any, data: memoryview, number: int) -> None:
    try:
        write(data)
    except TunTapError as exc:
        raise OSError(exc.errno, f"packet {number} ({len(data)} bytes) was refused: {_one_line(exc)}") from exc


def _play_batches(dev: Device, packets: Iterator[CapturedPacket], args: argparse.Namespace, progress: _Progress, tap: bool) -> bool:
    """--as-fast-as-possible: copy packets into a PacketRing's slots and write each full ring with one call."""
    ring = PacketRing(args.batch, _MAX_WRITE)
    try:
        count = args.count
        filled = 0
        number = progress.packets + progress.skipped
        for packet in packets:
            number += 1
            data = _convert(packet, tap, number)
            if data is None:
                progress.skipped += 1
                continue
            if len(data) > _MAX_WRITE:
                raise ValueError(f"packet {number} ({len(data)} bytes) is longer than any packet a TUN/TAP takes")
            ring.slot(filled)[: len(data)] = data
            ring.set_length(filled, len(data))
            filled += 1
            progress.cut += len(packet.data) < packet.original_length
            last = count is not None and progress.packets + filled >= count
            if filled == args.batch or last:
                _flush_ring(dev, ring, filled, progress)
                filled = 0
                progress.due(time.monotonic_ns())
                if last:
                    return False
        if filled:
            _flush_ring(dev, ring, filled, progress)
        return True
    finally:
        ring.close()


def _flush_ring(dev: Device, ring: PacketRing, filled: int, progress: _Progress) -> None:
    ring.count = filled
    size = sum(ring.lengths)
    try:
        dev.write_batch(ring)
    except (BatchWriteError, KeyboardInterrupt) as exc:  # both say how many of the batch went (see write_batch)
        progress.packets += getattr(exc, "written", 0)
        raise
    progress.packets += filled
    progress.bytes += size


# ------------------------------------------------------------- add, del, list


def _add(args: argparse.Namespace, progress: _Progress) -> int:
    if "%" not in args.name and os.path.exists(f"/sys/class/net/{args.name}"):
        # TUNSETIFF would attach to it (and change its owner): `add` only creates.
        raise OSError(errno.EEXIST, "an interface of that name exists already", args.name)
    opener = open_tap if args.tap else open_tun
    with opener(args.name, persist=True, owner=args.owner, group=args.group, multi_queue=args.multi_queue) as dev:
        print(dev.name, flush=True)
    return 0


def _del(args: argparse.Namespace, progress: _Progress) -> int:
    delete_persistent(args.name)
    return 0


# `ip tuntap list`'s words for the IFF_* flags, in its order (iproute2 ip/iptuntap.c).
_FLAG_WORDS = (
    (TunFlags.ONE_QUEUE, "one_queue"), (TunFlags.VNET_HDR, "vnet_hdr"), (TunFlags.MULTI_QUEUE, "multi_queue"),
    (TunFlags.PERSIST, "persist"), (TunFlags.NAPI, "napi"), (TunFlags.NAPI_FRAGS, "napi_frags"),
    (TunFlags.NO_CARRIER, "no_carrier"),
)


def tuntap_line(name: str, flags: int, owner: int, group: int) -> str:
    """One line of ``list``: ``vpn0: tun multi_queue persist user 1000 group 27`` (-1: no owner/group)."""
    words = [f"{name}:", "tap" if flags & TunFlags.TAP else "tun"]
    if not flags & TunFlags.NO_PI:
        words.append("pi")
    words += [word for flag, word in _FLAG_WORDS if flags & flag]
    if owner != -1:
        words.append(f"user {owner}")
    if group != -1:
        words.append(f"group {group}")
    return " ".join(words)


def _list(args: argparse.Namespace, progress: _Progress) -> int:
    for name in sorted(os.listdir("/sys/class/net")):
        flags = _tun_flags(name)
        if flags is None or (args.persistent and not flags & TunFlags.PERSIST):
            continue  # not a TUN/TAP, or gone since the listing
        try:
            owner, group = (int(_read_sysfs(name, field)) for field in ("owner", "group"))
        except (OSError, ValueError):
            continue
        print(tuntap_line(name, flags, owner, group))
    return 0


def _read_sysfs(name: str, field: str) -> str:
    with open(f"/sys/class/net/{name}/{field}") as f:
        return f.read().strip()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
