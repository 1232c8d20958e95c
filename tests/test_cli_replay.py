"""`tuntap-cffi replay` and `add`/`del`/`list` on real devices, run as the user runs them (a subprocess).

The captures are written by tshark's tools (editcap) from packets built
here; what the replay writes into a TUN/TAP reaches the kernel's stack as if
it arrived on the wire, so a UDP socket bound to the device receives it, with
the kernel's receive timestamp (SO_TIMESTAMPNS) telling when.  Timing checks
are lower bounds (never targets): each packet arrives no earlier than its
recorded offset from the first, less a little; or a generous comparison with
the recorded span.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import pytest

from tuntest import bind_to_device, delete_link, disable_ipv6, ethernet, ip, ipv4_udp, link_exists, namespace, need
from tuntap_cffi import open_tun
from tuntap_cffi.cli import tuntap_line
from tuntap_cffi.pcap import PcapWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
CLI = [sys.executable, "-m", "tuntap_cffi"]
SO_TIMESTAMPNS = 35  # (asm-generic/socket.h; SCM_TIMESTAMPNS is the same number)
PEER_MAC = "02:00:5e:10:00:02"
T0 = 1_700_000_000.0


def cli(*args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def capture(path: str, packets: List[bytes], gap: float, linktype: int = 101, form: str = "pcapng") -> None:
    """Write *packets* *gap* seconds apart, as a pcap of ours converted by editcap to *form* (tshark's writer)."""
    raw = path + ".raw.pcap"
    with open(raw, "wb") as f:
        w = PcapWriter(f, linktype)
        for i, data in enumerate(packets):
            w.write_packet(data, T0 + i * gap)
    proc = subprocess.run([need("editcap"), "-F", form, raw, path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    os.unlink(raw)


def add_persistent(name: str, subnet: str, *options: str) -> None:
    """`tuntap-cffi add NAME`, then an address and IPv6 off (by ip/proc: the test's own setup)."""
    proc = cli("add", name, *options)
    assert proc.returncode == 0 and proc.stdout.split() == [name], proc.stderr
    disable_ipv6(name)
    ip("addr", "add", f"{subnet}.1/24", "dev", name)


def listener(name: str, subnet: str) -> socket.socket:
    """A UDP socket on SUBNET.1, bound to *name*, that records each datagram's kernel receive time."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        bind_to_device(s, name)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
    except BaseException:
        s.close()
        raise
    return s


def receive(s: socket.socket, count: int) -> List[Tuple[bytes, float]]:
    """*count* datagrams (payload, kernel receive time in seconds); fewer if none comes for 5 s."""
    got = []
    for _ in range(count):
        try:
            data, ancillary, _flags, _addr = s.recvmsg(2048, socket.CMSG_SPACE(16))
        except socket.timeout:
            break
        stamps = [struct.unpack("qq", d[:16]) for level, kind, d in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
        assert stamps, "no receive timestamp"
        got.append((data, stamps[0][0] + stamps[0][1] / 1e9))
    return got


def nothing_more(s: socket.socket) -> bool:
    """True if no datagram is queued on *s* now.

    Exact once the replay exited: a TUN/TAP write hands the packet to the
    stack within the write() (netif_receive_skb), so a datagram it carries
    is on the socket's queue before the replay's next packet.
    """
    s.setblocking(False)
    try:
        s.recv(2048)
    except BlockingIOError:
        return True
    finally:
        s.settimeout(5)
    return False


def assert_not_early(got: List[Tuple[bytes, float]], gap: float, slack: float = 0.05) -> None:
    """Packet i arrived at least i * *gap* - *slack* seconds after packet 0.

    Offsets from the first packet, not gaps between neighbours: the replay
    computes every send time from the first one, so one packet delayed by a
    busy machine makes the next gap short without the replay being early.
    """
    offsets = [round(when - got[0][1], 3) for _, when in got]
    assert all(off >= i * gap - slack for i, off in enumerate(offsets)), f"packets {gap} s apart arrived at {offsets}"


def udp_packets(subnet: str, port: int, n: int, tag: str = "n") -> List[bytes]:
    return [ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, port, f"{tag}{i}".encode(), ident=i + 1) for i in range(n)]


def replay_udp(name: str, subnet: str, path: str, count: int, gap: float, *options: str,
               form: str = "pcapng", sent: Optional[int] = None) -> "Tuple[subprocess.CompletedProcess[str], List[Tuple[bytes, float]]]":
    """Add persistent TUN *name*; replay *count* UDP datagrams to a listener on it, *gap* s apart in the capture.

    Returns the replay's outcome and the *sent* (default *count*) datagrams
    the listener received, checking that no more came.
    """
    add_persistent(name, subnet)
    with listener(name, subnet) as s:
        capture(path, udp_packets(subnet, s.getsockname()[1], count), gap=gap, form=form)
        proc = cli("replay", path, name, *options)
        assert proc.returncode == 0, proc.stderr
        got = receive(s, count if sent is None else sent)
        assert nothing_more(s), "more datagrams than packets replayed"
        return proc, got


def one_error_line(proc: "subprocess.CompletedProcess[str]") -> str:
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# ------------------------------------------------------------------ replay


@pytest.mark.device
def test_replay_into_an_added_tun_keeps_order_and_the_recorded_pace(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    proc, got = replay_udp(ifname, subnet, os.path.join(tmp_path, "paced.pcapng"), 6, 0.2)
    assert "6 packets (" in proc.stderr and f"written into {ifname}" in proc.stderr, proc.stderr
    assert [data for data, _ in got] == [f"n{i}".encode() for i in range(6)]
    assert_not_early(got, 0.2)
    assert link_exists(ifname) and "persist" in cli("list").stdout  # an existing device is left as it was


@pytest.mark.device
@pytest.mark.parametrize("form", ["pcap", "nsecpcap"])
def test_rate_count_and_loop(form: str, ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    """--rate paces packets recorded at one instant; --loop plays the file again; --count stops it."""
    _, got = replay_udp(ifname, subnet, os.path.join(tmp_path, f"burst.{form}"), 3, 0.0,
                        "--rate", "10", "--loop", "3", "--count", "7", form=form, sent=7)
    assert [data for data, _ in got] == [b"n0", b"n1", b"n2", b"n0", b"n1", b"n2", b"n0"]
    assert_not_early(got, 0.1)  # --rate 10


@pytest.mark.device
def test_as_fast_as_possible_writes_everything_in_order_without_the_pace(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    proc, got = replay_udp(ifname, subnet, os.path.join(tmp_path, "flood.pcapng"), 1000, 0.02,  # 20 s recorded
                           "--as-fast-as-possible", "--batch", "50")
    assert "1000 packets" in proc.stderr and "batches of 50" in proc.stderr, proc.stderr
    assert [data for data, _ in got] == [f"n{i}".encode() for i in range(1000)]
    assert got[-1][1] - got[0][1] < 10, "the recorded 20 s were not skipped"


# The link header each IP link type puts in front of an IPv4 packet (NULL: the capturing host's byte order).
LINK_HEADERS = {
    228: b"",  # IPV4
    0: struct.pack("=I", socket.AF_INET),  # NULL
    108: struct.pack("!I", socket.AF_INET),  # LOOP
    113: struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800),  # LINUX_SLL: ... protocol last
    276: struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, bytes(8)),  # LINUX_SLL2: protocol first
}


@pytest.mark.device
@pytest.mark.parametrize("linktype", sorted(LINK_HEADERS), ids=["NULL", "LOOP", "SLL", "IPV4", "SLL2"])
def test_ip_link_types_into_a_tun_without_their_header(linktype: int, ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    add_persistent(ifname, subnet)
    path = os.path.join(tmp_path, "linked.pcap")
    with listener(ifname, subnet) as s:
        packets = udp_packets(subnet, s.getsockname()[1], 2)
        capture(path, [LINK_HEADERS[linktype] + p for p in packets], gap=0.0, linktype=linktype, form="pcap")
        proc = cli("replay", path, ifname, "--rate", "1000")
        assert proc.returncode == 0, proc.stderr
        assert [d for d, _ in receive(s, 2)] == [b"n0", b"n1"] and nothing_more(s)


@pytest.mark.device
def test_ethernet_capture_into_a_tap_and_into_a_tun(ifnames: "object", subnet: str, tmp_path: "os.PathLike[str]") -> None:
    """EN10MB goes into a TAP as is; with --tun its IP frames lose the Ethernet (and VLAN) header and the ARP is skipped."""
    tap, tun = ifnames(), ifnames()  # type: ignore[operator]
    add_persistent(tap, subnet, "--tap")
    with open(f"/sys/class/net/{tap}/address") as f:
        tap_mac = f.read().strip()
    arp = ethernet("ff:ff:ff:ff:ff:ff", PEER_MAC, 0x0806, bytes(28))
    path = os.path.join(tmp_path, "frames.pcapng")
    with listener(tap, subnet) as s:
        port = s.getsockname()[1]
        frames = [ethernet(tap_mac, PEER_MAC, 0x0800, p) for p in udp_packets(subnet, port, 3, "tap")]
        capture(path, [frames[0], arp, frames[1], frames[2]], gap=0.0, linktype=1)
        proc = cli("replay", path, tap, "--rate", "1000")
        assert proc.returncode == 0, proc.stderr
        assert [d for d, _ in receive(s, 3)] == [b"tap0", b"tap1", b"tap2"] and nothing_more(s)
    delete_link(tap)
    add_persistent(tun, subnet)
    vlan = struct.pack("!HH", 0x8100, 7)
    with listener(tun, subnet) as s:
        port = s.getsockname()[1]
        packets = udp_packets(subnet, port, 2, "tun")
        tagged = ethernet(PEER_MAC, PEER_MAC, 0x8100, b"")[:12] + vlan + struct.pack("!H", 0x0800) + packets[1]
        capture(path, [ethernet(PEER_MAC, PEER_MAC, 0x0800, packets[0]), arp, tagged], gap=0.0, linktype=1)
        proc = cli("replay", path, tun, "--tun", "--rate", "1000")
        assert proc.returncode == 0, proc.stderr
        assert "2 packets" in proc.stderr and "1 non-IP frame skipped" in proc.stderr, proc.stderr
        assert [d for d, _ in receive(s, 2)] == [b"tun0", b"tun1"] and nothing_more(s)


@pytest.mark.device
def test_replay_into_a_new_device_removes_it_after(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(tmp_path, "new.pcapng")
    capture(path, udp_packets(subnet, 9, 3), gap=0.0)
    proc = cli("replay", path, ifname, "--address", f"{subnet}.1/24", "--no-ipv6")
    assert proc.returncode == 0, proc.stderr
    assert f"replaying {path} into {ifname} (TUN, at the recorded pace, {subnet}.1/24)" in proc.stderr, proc.stderr
    assert f"3 packets (" in proc.stderr and f"written into {ifname}" in proc.stderr
    assert not link_exists(ifname)


@pytest.mark.device
def test_replay_netns_writes_into_a_device_in_the_namespace(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    """--netns: the new TUN is made in the namespace, and its stack there receives the packets."""
    from tuntap_cffi._linux.netns import in_netns, open_netns

    with namespace("r") as ns:
        nsfd = open_netns(ns)
        try:  # a UDP socket of the namespace's (the test's thread stays here)
            s = in_netns(nsfd, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), lambda sock: sock.close())
        finally:
            os.close(nsfd)
        with s:
            s.bind(("0.0.0.0", 0))
            s.settimeout(5)
            path = os.path.join(tmp_path, "netns.pcapng")
            capture(path, udp_packets(subnet, s.getsockname()[1], 3, "ns"), gap=0.0)
            proc = cli("replay", path, ifname, "--netns", ns, "--address", f"{subnet}.1/24", "--no-ipv6")
            assert proc.returncode == 0, proc.stderr
            assert f"into {ifname} (TUN, netns {ns}, at the recorded pace" in proc.stderr, proc.stderr
            assert [s.recv(100) for _ in range(3)] == [b"ns0", b"ns1", b"ns2"] and nothing_more(s)
        assert ifname not in ip("netns", "exec", ns, "ip", "-o", "link", "show")  # removed after the replay
        assert cli("replay", path, ifname, "--netns", f"{ns}x").returncode == 1  # an unknown namespace


@pytest.mark.device
def test_from_stdin_and_a_packet_the_kernel_refuses(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    """`... | replay - NAME`; a packet a TUN refuses (not IPv4/IPv6: EINVAL) stops the replay with its number, status 1."""
    add_persistent(ifname, subnet)
    path = os.path.join(tmp_path, "piped.pcapng")
    with listener(ifname, subnet) as s:
        good = udp_packets(subnet, s.getsockname()[1], 2)
        capture(path, [good[0], b"\x00" * 20, good[1]], gap=0.0)
        with open(path, "rb") as f:
            proc = subprocess.run([*CLI, "replay", "-", ifname, "--rate", "1000"], stdin=f, capture_output=True, text=True,
                                  env=ENV, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "packet 2 (20 bytes) was refused" in one_error_line(proc)
        assert "1 packet (" in proc.stderr and "written before that" in proc.stderr, proc.stderr
        assert [d for d, _ in receive(s, 1)] == [b"n0"] and nothing_more(s)
    assert link_exists(ifname)


@pytest.mark.device
def test_unknown_link_type_and_wrong_device_kind_are_errors(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    wifi = os.path.join(tmp_path, "wifi.pcap")
    capture(wifi, [bytes(40)], gap=0.0, linktype=105, form="pcap")
    proc = cli("replay", wifi, ifname)
    assert proc.returncode == 1
    assert "IEEE802_11 (105) cannot be replayed" in one_error_line(proc)
    raw = os.path.join(tmp_path, "raw.pcapng")
    capture(raw, udp_packets(subnet, 9, 1), gap=0.0)
    proc = cli("replay", raw, ifname, "--tap")
    assert proc.returncode == 1 and "RAW (101) cannot be written into a TAP" in one_error_line(proc)
    assert not link_exists(ifname)  # refused before any device was made
    add_persistent(ifname, subnet, "--tap")
    proc = cli("replay", raw, ifname)
    assert proc.returncode == 1 and "RAW (101) cannot be written into a TAP" in one_error_line(proc)
    proc = cli("replay", raw, "lo")
    assert proc.returncode == 1 and "not a TUN/TAP device" in one_error_line(proc)


@pytest.mark.device
@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_a_damaged_file_is_one_clear_error(damage: str, ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(tmp_path, "damaged.pcapng")
    capture(path, udp_packets(subnet, 9, 4), gap=0.0)
    if damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 10)
    elif damage == "garbage":
        with open(path, "wb") as f:
            f.write(b"<html>not a capture</html>")
    else:
        os.unlink(path)
    proc = cli("replay", path, ifname, "--rate", "1000")
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    expected = {"truncated": "it is truncated", "garbage": "not a pcap or pcapng capture", "missing": "No such file"}[damage]
    assert expected in line, line
    if damage == "truncated":
        assert re.search(f"error: {re.escape(path)}: the file ends \\d+ bytes short of the end of the block at byte \\d+", line), line
        assert "3 packets (" in proc.stderr and "written before that" in proc.stderr  # those before the damage went
    assert not link_exists(ifname)


@pytest.mark.device
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_replay_with_its_status(sig: int, status: int, ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(tmp_path, "slow.pcapng")
    capture(path, udp_packets(subnet, 9, 3), gap=30.0)
    proc = subprocess.Popen([*CLI, "replay", path, ifname], stderr=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONFAULTHANDLER": "1"})
    try:
        assert proc.stderr is not None
        assert "replaying" in proc.stderr.readline()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Seen once in CI (stderr already at EOF): show where it hangs (faulthandler dumps every thread).
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"replay did not exit within 30 s of {signal.Signals(sig).name}:\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, err
    assert re.search(r"interrupted after \d packets? \(", err) and "Traceback" not in err, err
    assert not link_exists(ifname)


@pytest.mark.device
def test_progress_lines_on_a_long_replay(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    """Not a terminal: plain lines, the first after a second, then every 2 s at most; --no-progress: none."""
    path = os.path.join(tmp_path, "long.pcapng")
    capture(path, udp_packets(subnet, 9, 8), gap=0.5)  # 3.5 s
    started = time.monotonic()
    proc = cli("replay", path, ifname)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if re.search(r"written, \d+\.\d s", line)]
    assert 1 <= len(progress) <= took / 2 + 1, proc.stderr
    assert "\r" not in proc.stderr
    assert re.search(r"\d+% of the file", progress[0]), progress
    quiet = cli("replay", path, ifname, "--no-progress", "--rate", "4")
    assert quiet.returncode == 0 and not [line for line in quiet.stderr.splitlines() if "written, " in line], quiet.stderr


@pytest.mark.device
def test_progress_on_a_terminal_is_one_line_rewritten(ifname: str, subnet: str, tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(tmp_path, "tty.pcapng")
    capture(path, udp_packets(subnet, 9, 8), gap=0.25)  # 1.75 s
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run([*CLI, "replay", path, ifname], stderr=terminal, stdout=subprocess.DEVNULL, env=ENV, timeout=60)
        os.close(terminal)
        terminal = -1
        out = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0, out
    text = out.decode().replace("\r\n", "\n")  # (the terminal turns each newline into CR LF)
    updates = re.findall(r"\r[^\r\n]*written, \d+\.\d s[^\r\n]*\x1b\[K", text)
    assert 1 <= len(updates) <= 8, text  # every 0.25 s at most, from the first second on
    assert re.search(r"\x1b\[K\n[^\n]*8 packets \(\d+ bytes\) written into", text), text  # the summary on a line of its own


def test_replay_usage_errors_exit_2() -> None:
    for args, message in [
        (["replay"], "FILE"),
        (["replay", "x.pcap", "--rate", "0"], "positive"),
        (["replay", "x.pcap", "--rate", "5", "--as-fast-as-possible"], "not allowed with"),
        (["replay", "x.pcap", "--tun", "--tap"], "not allowed with"),
        (["replay", "-", "--loop", "2"], "stdin"),
        (["replay", "x.pcap", "--batch", "8"], "--as-fast-as-possible"),
        (["del", "tun%d"], "full name"),
        (["add", ""], "empty"),
    ]:
        proc = cli(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_every_command_has_examples_in_its_help() -> None:
    for command in ("replay", "add", "del", "list"):
        proc = cli(command, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout, proc.stdout
        assert f"python -m tuntap_cffi {command} " in proc.stdout.split("examples:")[1] or command == "list"


# ------------------------------------------------------------ add, del, list


def ip_tuntap_lines() -> Dict[str, str]:
    return {line.split(":")[0]: line.strip() for line in ip("tuntap", "list").splitlines() if line.strip()}


@pytest.mark.device
@pytest.mark.parametrize("options", [[], ["--tap", "--multi-queue", "--owner", "nobody", "--group", "0"]], ids=["tun", "tap-mq-owned"])
def test_add_list_del_like_ip_tuntap(options: List[str], ifname: str) -> None:
    proc = cli("add", ifname, *options)
    assert proc.returncode == 0 and proc.stdout == f"{ifname}\n", proc.stderr
    ours = {line.split(":")[0]: line for line in cli("list").stdout.splitlines()}
    assert ours[ifname] == ip_tuntap_lines()[ifname]  # the same line `ip tuntap list` prints
    assert ("tap multi_queue persist user 65534 group 0" if options else "tun persist user 0") in ours[ifname]
    assert cli("del", ifname).returncode == 0
    assert not link_exists(ifname)
    proc = cli("del", ifname)
    assert proc.returncode == 1 and "no TUN/TAP interface" in one_error_line(proc)


@pytest.mark.device
def test_add_refuses_an_existing_name_and_del_a_held_device(ifname: str) -> None:
    assert cli("add", ifname).returncode == 0
    proc = cli("add", ifname, "--owner", "nobody")
    assert proc.returncode == 1 and "exists already" in one_error_line(proc)
    assert "user 0" in ip_tuntap_lines()[ifname]  # its owner was not changed
    with open_tun(ifname):
        proc = cli("del", ifname)
        assert proc.returncode == 1 and "busy" in one_error_line(proc).lower(), proc.stderr
        assert link_exists(ifname)
    assert cli("del", ifname).returncode == 0


@pytest.mark.device
def test_list_persistent_only_and_template_names(ifnames: "object") -> None:
    held = ifnames()  # type: ignore[operator]
    template = held[:-1] + "x%d"
    with open_tun(held):
        proc = cli("add", template)
        assert proc.returncode == 0, proc.stderr
        made = proc.stdout.strip()
        ifnames.given.append(made)  # type: ignore[attr-defined]
        assert re.fullmatch(re.escape(held[:-1]) + r"x\d+", made), made
        everything = cli("list").stdout
        persistent = cli("list", "--persistent").stdout
    assert f"{held}: tun\n" in everything and f"{made}: tun persist user 0\n" in everything
    assert held not in persistent and f"{made}: tun persist user 0\n" in persistent


@pytest.mark.device
def test_add_without_cap_net_admin_is_one_line_and_1(ifname: str) -> None:
    setpriv = need("setpriv")
    proc = subprocess.run([setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--", *CLI, "add", ifname],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 1 and "CAP_NET_ADMIN" in one_error_line(proc)
    assert not link_exists(ifname)


def test_tuntap_line_format() -> None:
    assert tuntap_line("t0", 0x1001 | 0x800, -1, -1) == "t0: tun persist"
    assert tuntap_line("t1", 0x0002 | 0x4000 | 0x100, 1000, 27) == "t1: tap pi vnet_hdr multi_queue user 1000 group 27"


def test_a_paced_wait_sleeps_in_short_slices() -> None:
    """A long gap is slept in slices, so a signal that lands just before a sleep starts waits one slice at most.

    (The race itself cannot be provoked at will: CI once saw a SIGTERM wait out a whole 30 s gap in one sleep.)
    """
    from tuntap_cffi import cli

    now = [0]
    slept: List[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += int(seconds * 1e9)

    cli._wait_until(30 * 10**9, lambda: now[0], sleep)
    assert now[0] >= 30 * 10**9 and max(slept) <= cli._SLEEP_SLICE and len(slept) >= 30 / cli._SLEEP_SLICE
