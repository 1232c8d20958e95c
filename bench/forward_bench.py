"""Forwarder benchmark: iperf3 TCP between two network namespaces, several ways joined.

    bash bench/setup.sh && bench/.venv/bin/python bench/forward_bench.py \
        && bench/.venv/bin/python bench/charts.py --forward bench/_build/forward.json     # as root

Variants, each measured RUNS times (iperf3 -t SECONDS), all in one run:
- veth pair joining the namespaces directly: the limit (iperf3 -P 1, and -P 4
  for the 2-queue row, which is compared with it);
- examples/forward.py without offloads (one thread per direction, its default);
- examples/forward.py with offloads (virtio-net header, TSO/USO super-packets);
- examples/forward.py with offloads and 2 queues, iperf3 -P 4;
- a python-pytun forwarder (bench/pytun_forward.py), one packet per call;
- the C baseline, bench/c/c_forward.c (compiled here with gcc -O2 into
  bench/_build/): the same wire as forward.py (same TUN flags, 10-byte
  virtio-net header, TUNSETOFFLOAD bits, non-blocking fds), one read() and
  one write() per packet or super-packet, without and with offloads, and
  with offloads and 2 queues (iperf3 -P 4).  It tells what this box allows a
  forwarder (two extra kernel copies per byte, 2 cores shared with both
  iperf3 ends) apart from what Python costs.
Saves every run as JSON with the run's metadata (``--results``, default
bench/_build/forward.json; bench/charts.py draws it) and prints a markdown
table: Gbit/s (median), ratio to veth, and the targets
(offload forwarder >= 0.8x veth and >= 5x pytun), then the Python offload
forwarder's ratio to the C one and the C one's ratio to veth.  Traffic stays
inside two namespaces this script creates (198.18.210.0/24) and removes.

The C rows' threads (``--c-threads``): by default (``auto``) what
forward.py does by default and the faster mode in each row: one thread per
direction without offloads, one per queue pair polling both devices with
offloads.  Short runs, 2 s each, the modes taking turns (Gbit/s, median and
range; 2026-11-25):

| C forwarder | --threads pair | --threads direction |
| --- | ---: | ---: |
| no offloads (3 runs) | 1.52 [1.50-1.62] | 2.05 [1.94-2.17] |
| offloads (8 runs) | 9.9 [8.5-11.4] | 9.9 [6.9-11.8] |
| offloads, 2 queues, -P 4 (8 runs) | 12.2 [11.3-14.8] | 12.2 [8.3-15.5] |

Without offloads the forwarder moves ~170k 1500-byte packets/s one way (and
the ACKs back), one read() and one write() apiece: two threads on two cores
beat one.  With offloads
the modes tie; pair, forward.py's choice, spread less.
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
from typing import Any, Dict, List, Tuple, Union

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # for runinfo (standard library only)
from runinfo import run_metadata, save_results, this_interpreter  # noqa: E402

REPO = BENCH.parent
TAG = f"{os.getpid() % 10000:04d}"
NS_A, NS_B = f"ttfb{TAG}a", f"ttfb{TAG}b"
DEV_A, DEV_B = f"ttfb{TAG}x", f"ttfb{TAG}y"
NET = "198.18.210"
BUILD_DIR = BENCH / "_build"
C_FORWARD = BUILD_DIR / "c_forward"
RESULTS = BUILD_DIR / "forward.json"  # the raw results, next to drain.py's results.json
VETH, VETH4 = "veth pair (the limit)", "veth pair, -P 4"


def baseline(name: str) -> str:
    """The veth row a variant is compared with: like against like, the same iperf3 flows."""
    return VETH4 if "-P 4" in name else VETH


def results_payload(args: argparse.Namespace, variants: Dict[str, Tuple[Union[str, List[str]], int]],
                    results: Dict[str, List[float]]) -> Dict[str, Any]:
    """What forward.json holds besides "meta": the arguments and, per variant, its Gbit/s runs and baseline."""
    return {
        "args": vars(args),
        "variants": [
            {"name": name, "parallel": variants[name][1], "baseline": baseline(name), "gbit": results[name]}
            for name in results
        ],
    }


def sh(*args: str, check: bool = True) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def build_c_forward() -> None:
    """Compile bench/c/c_forward.c into bench/_build/c_forward (gcc -O2); exit with gcc's words if it fails."""
    source = BENCH / "c" / "c_forward.c"
    if shutil.which("gcc") is None:
        raise SystemExit("forward_bench: gcc not found: it is needed to build the C forwarder (apt-get install gcc libc6-dev)")
    BUILD_DIR.mkdir(exist_ok=True)
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(C_FORWARD), str(source)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"forward_bench: cannot compile {source}:\n{proc.stderr.strip()}")


def ensure_iperf3() -> str:
    path = shutil.which("iperf3")
    if path is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "iperf3"], check=True, env=env, capture_output=True)
        path = shutil.which("iperf3")
    assert path, "iperf3 could not be installed"
    return path


def pytun_interpreter() -> str:
    """The Python that runs the pytun forwarder: bench/.venv's (setup.sh), else this one if it has pytun; "" if none."""
    for python in (BENCH / ".venv" / "bin" / "python", Path(sys.executable)):
        if python.exists() and subprocess.run([str(python), "-c", "import pytun"], capture_output=True).returncode == 0:
            return str(python)
    return ""


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


def iperf(seconds: int, parallel: int, size: str = "") -> float:
    """One iperf3 TCP run A -> B (*seconds* long, or *size* bytes if given); the receiver's Gbit/s."""
    server = subprocess.Popen(["ip", "netns", "exec", NS_B, "iperf3", "-s", "-1", "-B", f"{NET}.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        amount = ["-n", size] if size else ["-t", str(seconds)]
        out = sh("ip", "netns", "exec", NS_A, "iperf3", "-c", f"{NET}.2", *amount, "-P", str(parallel), "-J")
        result = json.loads(out)
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def with_forwarder(cmd: List[str], seconds: int, parallel: int, size: str = "") -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"forwarder did not start: {line} {proc.stderr.read() if proc.stderr else ''}")
        place(DEV_A, DEV_B)
        time.sleep(0.5)
        return iperf(seconds, parallel, size)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for ns, dev in ((NS_A, DEV_A), (NS_B, DEV_B)):
            sh("ip", "-n", ns, "link", "del", dev, check=False)


def with_veth(seconds: int, parallel: int, size: str = "") -> float:
    sh("ip", "link", "add", DEV_A, "type", "veth", "peer", "name", DEV_B)
    try:
        place(DEV_A, DEV_B)
        return iperf(seconds, parallel, size)
    finally:
        sh("ip", "-n", NS_A, "link", "del", DEV_A, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--bytes", default="", help="iperf3 -n: each run moves this much (e.g. 20M) instead of --seconds")
    parser.add_argument("--c-threads", choices=("auto", "pair", "direction"), default="auto",
                        help="the C forwarder's threads: one per queue pair or one per direction; auto (default): "
                             "per direction without offloads, per pair with (as forward.py)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"where the raw results go, as JSON (default: {RESULTS.relative_to(REPO)})")
    args = parser.parse_args()
    build_c_forward()
    ensure_iperf3()
    py = sys.executable
    forward = str(REPO / "examples" / "forward.py")
    pytun_py = pytun_interpreter()
    c_plain = "direction" if args.c_threads == "auto" else args.c_threads
    c_offload = "pair" if args.c_threads == "auto" else args.c_threads
    c_fwd = [str(C_FORWARD), DEV_A, DEV_B, "--threads"]
    variants: Dict[str, Tuple[Union[str, List[str]], int]] = {  # name: ("veth" or command, iperf3 -P)
        VETH: ("veth", 1),
        VETH4: ("veth", 4),
        "forward.py, no offloads": ([py, forward, DEV_A, DEV_B], 1),
        "forward.py, offloads": ([py, forward, DEV_A, DEV_B, "--offload"], 1),
        "forward.py, offloads, 2 queues, -P 4": ([py, forward, DEV_A, DEV_B, "--offload", "--queues", "2"], 4),
        "C forwarder, no offloads": ([*c_fwd, c_plain], 1),
        "C forwarder, offloads": ([*c_fwd, c_offload, "--offload"], 1),
        "C forwarder, offloads, 2 queues, -P 4": ([*c_fwd, c_offload, "--offload", "--queues", "2"], 4),
    }
    if pytun_py:
        variants["python-pytun forwarder"] = ([pytun_py, str(BENCH / "pytun_forward.py"), DEV_A, DEV_B], 1)
    else:
        print("python-pytun is importable neither in bench/.venv nor here: no pytun row (bash bench/setup.sh)",
              file=sys.stderr)
    results: Dict[str, List[float]] = {name: [] for name in variants}
    teardown()
    setup_namespaces()
    try:
        for run in range(args.runs):
            for name, (how, parallel) in variants.items():
                if isinstance(how, str):
                    gbit = with_veth(args.seconds, parallel, args.bytes)
                else:
                    gbit = with_forwarder(how, args.seconds, parallel, args.bytes)
                results[name].append(gbit)
                print(f"run {run + 1}/{args.runs} {name}: {gbit:.2f} Gbit/s", file=sys.stderr, flush=True)
    finally:
        teardown()
    saved = save_results(args.results, run_metadata("forward_bench", [this_interpreter()]),
                         results_payload(args, variants, results))
    print(f"raw results: {saved}", file=sys.stderr)
    med = {name: statistics.median(v) for name, v in results.items()}
    veth = med[VETH]
    amount = f"{args.bytes}B per run" if args.bytes else f"{args.seconds} s"
    print(f"\n## Forwarder benchmark: iperf3 TCP, {amount}, between two namespaces, median of {args.runs}\n")
    print("| path | Gbit/s (median) | runs | ratio to veth |")
    print("| --- | ---: | --- | ---: |")
    veth4 = med[VETH4]
    for name, v in results.items():
        base = med[baseline(name)]
        print(f"| {name} | {med[name]:.2f} | {', '.join(f'{x:.2f}' for x in v)} | {med[name] / base:.2f}x |")
    off = med["forward.py, offloads"]
    off2 = med["forward.py, offloads, 2 queues, -P 4"]
    pytun = med.get("python-pytun forwarder")
    versus_pytun = f"{off / pytun:.1f}x" if pytun else "n/a (no python-pytun)"
    print(f"\n(-P 4 rows: ratio to the veth pair with -P 4.)\nTargets: offload forwarder / veth = {off / veth:.2f}x, "
          f"2 queues {off2 / veth4:.2f}x (target >= 0.8); "
          f"offload forwarder / pytun forwarder = {versus_pytun} (target >= 5)")
    c_off = med["C forwarder, offloads"]
    c_off2 = med["C forwarder, offloads, 2 queues, -P 4"]
    print(f"Against the C forwarder (bench/c/c_forward.c, gcc -O2; threads per {c_plain} without offloads, "
          f"per {c_offload} with): offload forwarder / C offload forwarder = "
          f"{off / c_off:.2f}x, 2 queues {off2 / c_off2:.2f}x; "
          f"C offload forwarder / veth = {c_off / veth:.2f}x, 2 queues {c_off2 / veth4:.2f}x")
    print(f"Interpreter: {sys.version.split()[0]}; kernel {os.uname().release}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
