#!/usr/bin/env python3
"""pytun_compat against the real python-pytun (C), same TUN, same run, interleaved rounds.

    python bench/pytun_bench.py [--rounds 7] [--packets 20000] [--tunnel-seconds 5]   # as root

Two parts, each inside network namespaces this script makes and removes on
every exit path (traffic stays in them):

1. Calls (one namespace, one persistent TUN ``ttpb<pid>``, 198.18.220.1/24,
   IPv6 off, txqueuelen above the flood): in every round, pytun and
   pytun_compat take turns in a fresh random order; each attaches to the
   TUN and is timed, per call, over ``--packets`` calls of
   - ``read(1500)``, blocking, draining a full queue (UDP datagrams the
     namespace sent to 198.18.220.2, counted in the TUN's tx counters first:
     a drop aborts the run), before the program ever called ``fileno()``;
   - the same after ``fileno()`` was called (a program that polls the fd:
     pytun_compat reads no packet ahead then);
   - ``write(pkt)`` of one 48-byte IPv4/UDP packet to 198.18.220.3 (not an
     address of the namespace, forwarding off: the kernel drops it after
     taking it; rx_packets checks every one arrived);
   - the ``mtu`` getter;
   - and, in pytun_compat's turns only, ``lib.write(fd, pkt, len)``: one bare
     cffi call per packet, the floor of a design that drives write through
     cffi (its table line sets it beside pytun's write).
   The clock is the thread's CPU time (``time.thread_time_ns``: user and
   system time of this thread, so the load of other programs on the box
   does not count; nothing in these loops waits), around each loop only,
   with the method bound to a local first, the same for both.  Each device
   first reads 1,000 packets untimed: pytun_compat makes and grows its
   read-ahead ring there, once per device (a few ms, what a long-running
   program pays once).
2. Tunnel (``--tunnel-seconds`` > 0, needs iperf3): two namespaces joined by
   a veth pair, in each a pytun-style UDP tunnel program (select() on the
   TUN and the UDP socket, ``tun.read(tun.mtu)``, ``sock.sendto``:
   bench/pytun_tunnel.py, which the tests also run), iperf3 TCP across the
   overlay;
   pytun and pytun_compat take turns, both ends the same implementation.

Prints a markdown table: per row the median ns per call (Mbit/s for the
tunnel) of each, and compat / pytun (time ratio: below 1.0 is faster; for
the tunnel the throughput ratio, above 1.0 is faster).  Runs in this
interpreter: under PyPy the pytun column is pytun through cpyext (or n/a if
it is not installed there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TAG = f"{os.getpid() % 10000:04d}"
NET = "198.18.220"  # the calls' TUN (part 1)
UNDER, OVER = "198.18.221", "198.18.222"  # the tunnel's veth underlay and overlay (part 2)
IMPLS = ("pytun", "pytun_compat")
ROWS = ("read, blocking loop", "read, after fileno()", "write", "mtu getter")
FLOOR = "write, bare cffi call"  # measured in pytun_compat's turns only: the floor of a cffi design
READ_SIZE = 1500
COMPAT_IMPORT = "from tuntap_cffi import pytun_compat as pytun"  # pytun_tunnel.py's import line
WARM = 1000  # packets read untimed by each device before its timed drain


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def load(impl: str) -> Any:
    """The module *impl* names, or None if it cannot be imported here."""
    try:
        if impl == "pytun":
            import pytun  # type: ignore[import-not-found]

            return pytun
        sys.path.insert(0, str(REPO))
        from tuntap_cffi import pytun_compat

        return pytun_compat
    except ImportError:
        return None


# ------------------------------------------------------------- part 1: calls


def checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: str, dst: str, payload: bytes) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0: none), header checksum filled in."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + struct.pack("!HHHH", 9, 9, 8 + len(payload), 0) + payload


def counter(name: str, which: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/{which}") as f:
        return int(f.read())


class Dropped(Exception):
    """The kernel dropped packets of a fill: the turn is redone on a fresh attachment (empty queue)."""


def fill(name: str, sock: socket.socket, count: int) -> None:
    """Queue *count* datagrams on the TUN; raise Dropped if the kernel dropped any."""
    dropped = counter(name, "tx_dropped")  # (tun counts tx_packets as the reader takes them)
    payload = b"b" * 100
    for _ in range(count):
        sock.sendto(payload, (f"{NET}.2", 9))
    if counter(name, "tx_dropped") != dropped:
        raise Dropped(f"tx_dropped went up by {counter(name, 'tx_dropped') - dropped} while queueing {count} packets")


def per_call(loop: Callable[[int], None], count: int) -> float:
    """CPU ns per call of *loop* (this thread's user + system time: other programs' load does not count)."""
    start = time.thread_time_ns()
    loop(count)
    return (time.thread_time_ns() - start) / count


def measure(mod: Any, name: str, sock: socket.socket, count: int) -> Dict[str, float]:
    """One turn of one implementation: ns per call of each row (a turn whose fill lost packets is redone)."""
    for attempt in range(3):
        try:
            return turn(mod, name, sock, count)
        except Dropped as exc:
            print(f"redoing a turn: {exc}", file=sys.stderr)  # (seldom, on a loaded box; cause unknown)
    raise RuntimeError("three turns in a row lost packets while filling the queue")


def turn(mod: Any, name: str, sock: socket.socket, count: int) -> Dict[str, float]:
    tun = mod.TunTapDevice(name=name, flags=mod.IFF_TUN | mod.IFF_NO_PI)
    out: Dict[str, float] = {}
    try:
        def drain(n: int) -> None:
            read = tun.read
            for _ in range(n):
                read(READ_SIZE)

        fill(name, sock, WARM)  # untimed: pytun_compat's read-ahead ring is made and grown here, once
        drain(WARM)
        fill(name, sock, count)
        out[ROWS[0]] = per_call(drain, count)  # fileno() never called
        tun.fileno()
        fill(name, sock, count)
        out[ROWS[1]] = per_call(drain, count)
        packet = udp_packet(f"{NET}.2", f"{NET}.3", b"w" * 20)
        before = counter(name, "rx_packets")

        def writes(n: int) -> None:
            write = tun.write
            for _ in range(n):
                write(packet)

        out[ROWS[2]] = per_call(writes, count)
        if mod.__name__.endswith("pytun_compat"):
            # The design's floor: one bare cffi write() per packet, on the same fd.
            from tuntap_cffi._syscalls import lib

            def bare_writes(n: int, fd: int = tun.fileno(), size: int = len(packet)) -> None:
                write = lib.write
                for _ in range(n):
                    write(fd, packet, size)

            out[FLOOR] = per_call(bare_writes, count)
            expected = 2 * count
        else:
            expected = count
        if counter(name, "rx_packets") - before != expected:
            raise RuntimeError("the kernel did not take every written packet")

        def mtus(n: int) -> None:
            for _ in range(n):
                tun.mtu

        out[ROWS[3]] = per_call(mtus, count)
    finally:
        tun.close()
    return out


def calls_worker(rounds: int, count: int) -> Dict[str, Any]:
    """Part 1, run inside the namespace: {impl: {row: [ns per call per round]}}."""
    name = f"ttpb{TAG}"
    mods = {impl: load(impl) for impl in IMPLS}
    results: Dict[str, Dict[str, List[float]]] = {impl: {row: [] for row in ROWS + ((FLOOR,) if impl == "pytun_compat" else ())} for impl in IMPLS}
    sh("ip", "link", "set", "dev", "lo", "up")
    sh("ip", "tuntap", "add", "dev", name, "mode", "tun")  # persistent, no packet info
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", name)
        sh("ip", "link", "set", "dev", name, "up", "txqueuelen", str(count + 1000))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"{NET}.1", 0))
        signal.alarm(max(60, count // 1000 * rounds))  # a lost packet would leave a read blocked for ever
        present = [impl for impl in IMPLS if mods[impl] is not None]
        measure(mods[present[-1]], name, sock, min(count, 2000))  # warm-up (PyPy's JIT, caches)
        for _ in range(rounds):
            random.shuffle(present)
            for impl in present:
                for row, value in measure(mods[impl], name, sock, count).items():
                    results[impl][row].append(value)
        signal.alarm(0)
    finally:
        sh("ip", "link", "del", "dev", name, check=False)
    return {"results": results, "missing": [impl for impl in IMPLS if mods[impl] is None]}


# ------------------------------------------------------------ part 2: tunnel


def tunnel_program(impl: str) -> str:
    """bench/pytun_tunnel.py (also run by tests/test_pytun_compat.py), for *impl*."""
    program = (BENCH / "pytun_tunnel.py").read_text()
    return program if impl == "pytun_compat" else program.replace(COMPAT_IMPORT, "import pytun")


def tunnel_run(impl: str, namespaces: Tuple[str, str], seconds: int) -> float:
    """One iperf3 TCP run across the overlay with *impl* at both ends; Mbit/s at the receiver."""
    a, b = namespaces
    program = tunnel_program(impl)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs: List[subprocess.Popen[str]] = []
    try:
        for ns, me, peer, mine, other, tun in ((a, ".1", ".2", ".1", ".2", f"ttpo{TAG}a"),
                                               (b, ".2", ".1", ".2", ".1", f"ttpo{TAG}b")):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", program, tun, OVER + me, OVER + peer,
                 UNDER + mine, UNDER + other, "4789"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"the {impl} tunnel did not start: {proc.stderr.read() if proc.stderr else ''}")
        server = subprocess.Popen(["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-B", f"{OVER}.2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(server)  # type: ignore[arg-type]
        time.sleep(0.5)  # iperf3 -s has no readiness signal; it retries below if early
        for attempt in range(5):
            out = subprocess.run(["ip", "netns", "exec", a, "iperf3", "-c", f"{OVER}.2", "-t", str(seconds), "-J"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                report = json.loads(out.stdout)
                return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
            time.sleep(0.5)
        raise RuntimeError(f"iperf3 failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def tunnel_part(rounds: int, seconds: int) -> Dict[str, List[float]]:
    a, b = f"ttpb{TAG}a", f"ttpb{TAG}b"
    veth_a, veth_b = f"ttpv{TAG}a", f"ttpv{TAG}b"
    made: List[str] = []
    results: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        for ns, dev, host in ((a, veth_a, ".1"), (b, veth_b, ".2")):
            sh("ip", "link", "set", "dev", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{UNDER}{host}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", "dev", dev, "up")
            sh("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        present = [impl for impl in IMPLS if load(impl) is not None]
        for _ in range(rounds):
            random.shuffle(present)
            for impl in present:
                results[impl].append(tunnel_run(impl, (a, b), seconds))
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)  # takes the veth pair along
    return results


# ------------------------------------------------------------------- report


def median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def ratio(compat: Optional[float], pytun: Optional[float]) -> str:
    return "n/a" if compat is None or not pytun else f"{compat / pytun:.2f}x"


def table(calls: Dict[str, Dict[str, List[float]]], tunnel: Dict[str, List[float]], rounds: int) -> str:
    lines = [
        "| what | python-pytun (C) | pytun_compat | compat / pytun |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        c, p = median(calls["pytun_compat"][row]), median(calls["pytun"][row])
        lines.append(f"| {row} (ns/call) | {fmt(p)} | {fmt(c)} | {ratio(c, p)} |")
        if row == "write" and calls["pytun_compat"].get(FLOOR):
            f = median(calls["pytun_compat"][FLOOR])
            lines.append(f"| (write floor: one bare cffi `lib.write`; pytun's write beside it) | {fmt(p)} | {fmt(f)} | {ratio(f, p)} |")
    if any(tunnel.values()):
        c, p = median(tunnel["pytun_compat"]), median(tunnel["pytun"])
        spread = {impl: f" [{min(v):.0f}-{max(v):.0f}]" if v else "" for impl, v in tunnel.items()}
        lines.append(f"| UDP tunnel, iperf3 TCP (Mbit/s [range]) | {fmt(p)}{spread['pytun']} | "
                     f"{fmt(c)}{spread['pytun_compat']} | {ratio(c, p)} (throughput) |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the calls (default 7)")
    parser.add_argument("--packets", type=int, default=20000, help="calls per row and round (default 20000)")
    parser.add_argument("--tunnel-rounds", type=int, default=3, help="iperf3 runs per implementation (default 3)")
    parser.add_argument("--tunnel-seconds", type=int, default=5, help="iperf3 -t; 0 skips the tunnel (default 5)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON after the table")
    parser.add_argument("--calls-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls_worker:  # inside the namespace
        print(json.dumps(calls_worker(args.rounds, args.packets)))
        return 0
    if os.geteuid() != 0:
        print("run as root (namespaces, TUN devices)", file=sys.stderr)
        return 2
    ns = f"ttpb{TAG}c"
    sh("ip", "netns", "add", ns)
    try:
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--calls-worker",
                               "--rounds", str(args.rounds), "--packets", str(args.packets)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the calls worker failed: {proc.stderr}")
        worker = json.loads(proc.stdout)
    finally:
        sh("ip", "netns", "del", ns, check=False)
    tunnel: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    if args.tunnel_seconds > 0:
        if not shutil.which("iperf3"):
            print("iperf3 is missing (apt-get install iperf3): no tunnel row", file=sys.stderr)
        else:
            tunnel = tunnel_part(args.tunnel_rounds, args.tunnel_seconds)
    impl = f"{sys.implementation.name} {sys.version.split()[0]}"
    print(f"\n## pytun_compat vs python-pytun on {impl}: medians of {args.rounds} interleaved rounds of "
          f"{args.packets} calls" + (f", iperf3 {args.tunnel_rounds} x {args.tunnel_seconds} s each" if any(tunnel.values()) else "")
          + "\n")
    if worker["missing"]:
        print(f"(not importable here: {', '.join(worker['missing'])})\n")
    print(table(worker["results"], tunnel, args.rounds))
    if args.json:
        print(json.dumps({"calls": worker["results"], "tunnel": tunnel}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
