"""Forwarder benchmark: iperf3 TCP between two network namespaces, several ways joined.

    bash bench/setup.sh && bench/.venv/bin/python bench/forward_bench.py     # as root

Variants, each measured RUNS times (iperf3 -t SECONDS), all in one run:
- veth pair joining the namespaces directly: the limit (iperf3 -P 1, and -P 4
  for the 2-queue row, which is compared with it);
- examples/forward.py without offloads (one thread per queue pair);
- examples/forward.py with offloads (virtio-net header, TSO/USO super-packets);
- examples/forward.py with offloads and 2 queues, iperf3 -P 4;
- a python-pytun forwarder (bench/pytun_forward.py), one packet per call.
Prints a markdown table: Gbit/s (median), ratio to veth, and the targets
(offload forwarder >= 0.8x veth and >= 5x pytun).  Traffic stays inside two
namespaces this script creates (198.18.210.0/24) and removes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TAG = f"{os.getpid() % 10000:04d}"
NS_A, NS_B = f"ttfb{TAG}a", f"ttfb{TAG}b"
DEV_A, DEV_B = f"ttfb{TAG}x", f"ttfb{TAG}y"
NET = "198.18.210"


def sh(*args: str, check: bool = True) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def ensure_iperf3() -> str:
    path = shutil.which("iperf3")
    if path is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "iperf3"], check=True, env=env, capture_output=True)
        path = shutil.which("iperf3")
    assert path, "iperf3 could not be installed"
    return path


def setup_namespaces() -> None:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown() -> None:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)
    for dev in (DEV_A, DEV_B):
        sh("ip", "link", "del", dev, check=False)


def place(dev_a: str, dev_b: str) -> None:
    for dev, ns, host in ((dev_a, NS_A, 1), (dev_b, NS_B, 2)):
        sh("ip", "link", "set", "dev", dev, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{NET}.{host}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", "dev", dev, "up")


def iperf(seconds: int, parallel: int) -> float:
    """One iperf3 TCP run A -> B; the receiver's Gbit/s."""
    server = subprocess.Popen(["ip", "netns", "exec", NS_B, "iperf3", "-s", "-1", "-B", f"{NET}.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = sh("ip", "netns", "exec", NS_A, "iperf3", "-c", f"{NET}.2", "-t", str(seconds), "-P", str(parallel), "-J")
        result = json.loads(out)
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def with_forwarder(cmd: List[str], seconds: int, parallel: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"forwarder did not start: {line} {proc.stderr.read() if proc.stderr else ''}")
        place(DEV_A, DEV_B)
        time.sleep(0.5)
        return iperf(seconds, parallel)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for ns, dev in ((NS_A, DEV_A), (NS_B, DEV_B)):
            sh("ip", "-n", ns, "link", "del", dev, check=False)


def with_veth(seconds: int, parallel: int) -> float:
    sh("ip", "link", "add", DEV_A, "type", "veth", "peer", "name", DEV_B)
    try:
        place(DEV_A, DEV_B)
        return iperf(seconds, parallel)
    finally:
        sh("ip", "-n", NS_A, "link", "del", DEV_A, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    ensure_iperf3()
    py = sys.executable
    forward = str(REPO / "examples" / "forward.py")
    pytun_py = str(BENCH / ".venv" / "bin" / "python")
    variants: Dict[str, object] = {
        "veth pair (the limit)": ("veth", 1),
        "veth pair, -P 4": ("veth", 4),
        "forward.py, no offloads": ([py, forward, DEV_A, DEV_B], 1),
        "forward.py, offloads": ([py, forward, DEV_A, DEV_B, "--offload"], 1),
        "forward.py, offloads, 2 queues, -P 4": ([py, forward, DEV_A, DEV_B, "--offload", "--queues", "2"], 4),
        "python-pytun forwarder": ([pytun_py, str(BENCH / "pytun_forward.py"), DEV_A, DEV_B], 1),
    }
    results: Dict[str, List[float]] = {name: [] for name in variants}
    teardown()
    setup_namespaces()
    try:
        for run in range(args.runs):
            for name, (how, parallel) in variants.items():  # type: ignore[misc]
                if how == "veth":
                    gbit = with_veth(args.seconds, parallel)
                else:
                    gbit = with_forwarder(how, args.seconds, parallel)
                results[name].append(gbit)
                print(f"run {run + 1}/{args.runs} {name}: {gbit:.2f} Gbit/s", file=sys.stderr, flush=True)
    finally:
        teardown()
    med = {name: statistics.median(v) for name, v in results.items()}
    veth = med["veth pair (the limit)"]
    print(f"\n## Forwarder benchmark: iperf3 TCP, {args.seconds} s, between two namespaces, median of {args.runs}\n")
    print("| path | Gbit/s (median) | runs | ratio to veth |")
    print("| --- | ---: | --- | ---: |")
    veth4 = med["veth pair, -P 4"]
    for name, v in results.items():
        base = veth4 if "-P 4" in name else veth  # like against like: the same iperf3 flows
        print(f"| {name} | {med[name]:.2f} | {', '.join(f'{x:.2f}' for x in v)} | {med[name] / base:.2f}x |")
    off = med["forward.py, offloads"]
    off2 = med["forward.py, offloads, 2 queues, -P 4"]
    pytun = med["python-pytun forwarder"]
    print(f"\n(-P 4 rows: ratio to the veth pair with -P 4.)\nTargets: offload forwarder / veth = {off / veth:.2f}x, "
          f"2 queues {off2 / veth4:.2f}x (target >= 0.8); "
          f"offload forwarder / pytun forwarder = {off / pytun:.1f}x (target >= 5)")
    print(f"Interpreter: {sys.version.split()[0]}; kernel {os.uname().release}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
