#!/usr/bin/env python3
"""Prototype (kept for the record): io_uring multishot reads against the C io_uring floor.

Does one ``IORING_OP_READ_MULTISHOT`` over a provided-buffer ring drain a
full TUN queue faster than drain_uring.c's N pre-filled ``READ_FIXED`` SQEs?
``mshot_proto.c`` (built into bench/_build/) drains an inherited fd with each
mode; this driver makes the TUN with drain.Worker (drain.py's set-up, fill
and checks), and for each round fills the queue with ``--packets`` datagrams
and drains it with every mode, in a fresh random order per round (after one
untimed warm-up round).  Prints the median ns/packet per mode, the median of
the per-round ratios to ``fixed`` (N = 256), and the per-round figures.

Then the close() check: with a multishot read still armed (the queue ran dry
before the N buffers were used), does closing the TUN fd release the
interface at once?  (Not done with ``--no-closecheck``.)

    bash bench/setup.sh
    flock /tmp/bench.lock bench/.venv/bin/python bench/mshot_proto.py [--rounds 11] [--packets 300000]
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drain  # noqa: E402

sys.path.insert(0, str(drain.REPO_ROOT))  # the working tree's tuntap_cffi

PROG = drain.BUILD_DIR / "mshot_proto"
SOURCE = drain.BENCH_DIR / "mshot_proto.c"

# label -> (mshot_proto MODE, N)
MODES: Dict[str, Tuple[str, int]] = {
    "fixed": ("fixed", 256),
    "mshot": ("mshot", 256),
    "mshot_fixed_file": ("mshot_fixed_file", 256),
    "mshot_coop": ("mshot_coop", 256),
    "fixed_1024": ("fixed", 1024),
    "mshot_1024": ("mshot", 1024),
    "mshot_wait1": ("mshot_wait1", 256),  # not by default: min_complete 1, 1 ms timeout (the last batch waits it out)
}
DEFAULT_MODES = [m for m in MODES if m != "mshot_wait1"]
CLOSE_VARIANTS = ("fixed", "mshot", "mshot_fixed_file", "mshot_cancel")


def build() -> None:
    drain.build_helpers()  # fill (and the others)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(PROG), str(SOURCE)], check=True)


def wait_for_no_pytest() -> None:
    """The box is shared: never measure while a test run is going on."""
    warned = False
    while subprocess.run(["pgrep", "-f", "pytest"], capture_output=True).returncode == 0:
        if not warned:
            drain.log("a pytest process is running: waiting")
            warned = True
        time.sleep(5)


def run_mode(label: str, fd: int, slot: int) -> Tuple[int, int, Dict[str, str]]:
    mode, n = MODES[label]
    proc = subprocess.run(
        [str(PROG), mode, str(fd), str(n), str(slot)], pass_fds=(fd,), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: exit {proc.returncode}: {proc.stderr.strip()}")
    count, ns = (int(x) for x in proc.stdout.split())
    stats: Dict[str, str] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("stats "):
            stats = dict(item.split("=", 1) for item in line.split()[1:])
    return count, ns, stats


def one_drain(w: drain.Worker, label: str, packets: int, slot: int) -> Tuple[int, int, Dict[str, str]]:
    strays = w.drain_leftovers()
    tx_before = drain.counter(w.name, "tx_packets")
    report = w.fill(packets)  # raises unless every datagram was queued (none dropped)
    fd = w.dev.fileno()
    count, ns, stats = run_mode(label, fd, slot)
    foreign = drain.counter(w.name, "tx_packets") - tx_before - report["sent"]
    left = w.drain_leftovers()
    if count != report["sent"] + foreign or left:
        raise RuntimeError(
            f"{label}: drained {count}, the fill sent {report['sent']} (+{foreign} foreign), "
            f"{left} left in the queue, {strays} strays before"
        )
    if foreign:
        drain.log(f"note: {foreign} foreign packets in a {label} drain")
    return count, ns, stats


def quartiles(values: List[float]) -> Tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def benchmark(args: argparse.Namespace, labels: List[str]) -> None:
    name = f"ttms{os.getpid() % 1000}"
    w = drain.Worker(name, args.subnet, args.packets, args.payload)
    try:
        w.create()
        slot = w.dev.max_packet_size
        print(f"interface {name}, {args.subnet}.0/24, slot {slot} bytes, {args.packets} datagrams of "
              f"{args.payload} bytes per fill, {args.rounds} rounds (+1 warm-up), kernel {os.uname().release}")
        for label in labels:  # warm-up, untimed
            one_drain(w, label, min(args.packets, 20_000), slot)
        per_round: List[Dict[str, float]] = []
        last_stats: Dict[str, Dict[str, str]] = {}
        for r in range(args.rounds):
            wait_for_no_pytest()
            order = random.sample(labels, len(labels))
            row: Dict[str, float] = {}
            for label in order:
                count, ns, stats = one_drain(w, label, args.packets, slot)
                row[label] = ns / count
                last_stats[label] = stats
            per_round.append(row)
            print(f"round {r + 1:2d}: " + "  ".join(f"{k} {row[k]:6.1f}" for k in labels)
                  + f"   (order: {' '.join(order)})", flush=True)
        print()
        print(f"| mode | N | ns/pkt (median) | ratio to fixed [quartiles] | ratio to fixed, same N |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label in labels:
            mode, n = MODES[label]
            ns = statistics.median(row[label] for row in per_round)
            ratios = [row[label] / row["fixed"] for row in per_round]
            lo, hi = quartiles(ratios)
            base = "fixed" if n == 256 else f"fixed_{n}"
            same = (f"{statistics.median(row[label] / row[base] for row in per_round):.3f}"
                    if base in labels else "n/a")
            print(f"| {label} | {n} | {ns:.1f} | {statistics.median(ratios):.3f} [{lo:.3f}, {hi:.3f}] | {same} |")
        print()
        print("per-drain stats of the last round (mshot_proto's stderr):")
        for label in labels:
            print(f"  {label}: {' '.join(f'{k}={v}' for k, v in last_stats[label].items())}")
    finally:
        w.close()
    if drain.interface_exists(name):
        raise RuntimeError(f"{name} is still there after close")


def read_line(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError("mshot_proto closecheck: no answer")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"mshot_proto closecheck ended: exit {proc.wait()}")
    return line.strip()


def send_line(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def ip_link(name: str) -> str:
    out = subprocess.run(["ip", "-o", "link", "show", name], capture_output=True, text=True)
    if out.returncode != 0:
        return "absent (" + (out.stderr.strip() or f"exit {out.returncode}") + ")"
    fields = out.stdout.split()
    return "present: " + " ".join(fields[1:3]) + " ..."


def closecheck(args: argparse.Namespace) -> None:
    """Per variant: a fresh TUN, 10 packets queued, mshot_proto reads them and stays armed; we drop our fd."""
    print()
    print("close() with a multishot read still armed (10 packets queued and read, N = 256, queue then empty):")
    print()
    print("| variant | read | after the driver's close | right after close(fd) in mshot_proto | 200 ms later | "
          "after the ring's close |")
    print("| --- | ---: | --- | --- | --- | --- |")
    for i, variant in enumerate(CLOSE_VARIANTS):
        name = f"ttmc{os.getpid() % 1000}{i}"
        w = drain.Worker(name, args.subnet, 10, args.payload)
        proc: Optional[subprocess.Popen] = None
        try:
            w.create()
            slot = w.dev.max_packet_size
            w.drain_leftovers()
            w.fill(10)
            fd = w.dev.fileno()
            proc = subprocess.Popen(
                [str(PROG), "closecheck", str(fd), "256", str(slot), variant],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,), text=True,
            )  # fmt: skip
            armed = read_line(proc)
            w.dev.close()  # our copy of the fd: the child's is the last one now
            w.dev = None
            before = "present" if drain.interface_exists(name) else "absent"
            send_line(proc)
            if read_line(proc) != "closed":
                raise RuntimeError("closecheck: protocol")
            at_close = ip_link(name)
            time.sleep(0.2)
            later = ip_link(name)
            send_line(proc)
            if read_line(proc) != "ring_closed":
                raise RuntimeError("closecheck: protocol")
            t0 = time.monotonic()
            while drain.interface_exists(name) and time.monotonic() - t0 < 2.0:
                time.sleep(0.001)
            gone = (f"gone within {(time.monotonic() - t0) * 1e3:.0f} ms" if not drain.interface_exists(name)
                    else "STILL present after 2 s")
            send_line(proc)
            proc.wait(timeout=10)
            print(f"| {variant} | {armed.split()[1]} | {before} | {at_close} | {later} | {gone} |", flush=True)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            w.close()
        if drain.interface_exists(name):
            raise RuntimeError(f"{name} is still there after close")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--packets", type=int, default=300_000, help="datagrams queued per fill")
    p.add_argument("--payload", type=int, default=16, help="UDP payload bytes")
    p.add_argument("--subnet", default="198.18.201", help="the TUN's /24, inside 198.18.0.0/15")
    p.add_argument("--modes", nargs="+", default=DEFAULT_MODES, choices=list(MODES))
    p.add_argument("--no-closecheck", action="store_true")
    p.add_argument("--closecheck-only", action="store_true")
    args = p.parse_args()
    if "fixed" not in args.modes:
        args.modes.insert(0, "fixed")

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    drain.check_subnet(args.subnet)
    build()
    if not args.closecheck_only:
        benchmark(args, args.modes)
    if not args.no_closecheck:
        closecheck(args)


if __name__ == "__main__":
    main()
