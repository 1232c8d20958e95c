"""asyncio drain benchmark: the async read paths against the sync ones, same workload.

    bash bench/setup.sh && bench/.venv/bin/python bench/async_bench.py      # as root

Fills a TUN's queue with N small UDP datagrams (bench/_build/fill, built by
the harness from bench/c/fill.c if missing) and times draining it, median of RUNS:
sync `readinto`, sync `read_batch` (256 slots), `readinto_async` and
`read_batch_async` in a coroutine on the default loop (and uvloop if
installed).  Target: the async batch path within 1.3x of sync read_batch.
Traffic stays on the TUN's own subnet (--subnet, default 198.18.211.0/24).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from harness import FILL, build_fill, check_subnet  # noqa: E402  (the harness puts the repository root first on sys.path)

import tuntap_cffi  # noqa: E402

NAME = f"ttab{os.getpid() % 10000:04d}"
NET = "198.18.211"


def fill(count: int, net: str) -> None:
    out = subprocess.run([str(FILL), NAME, f"{net}.2", "9", str(count), "16"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--subnet", default=NET, help="the TUN's /24, inside 198.18.0.0/15")
    args = parser.parse_args()
    check_subnet(args.subnet)
    build_fill()
    dev = tuntap_cffi.open_tun(NAME, nonblocking=True)
    try:
        with open(f"/proc/sys/net/ipv6/conf/{NAME}/disable_ipv6", "w") as f:
            f.write("1")
        dev.add_address(f"{args.subnet}.1/24")
        dev.txqueuelen = args.packets + 10_000
        dev.up()
        ring = dev.packet_ring(256)
        buf = bytearray(dev.max_packet_size)

        def sync_readinto() -> int:
            n = 0
            try:
                while True:
                    dev.readinto(buf)
                    n += 1
            except BlockingIOError:
                return n

        def sync_batch() -> int:
            n = 0
            try:
                while True:
                    n += dev.read_batch(ring)
            except BlockingIOError:
                return n

        async def async_readinto(total: int) -> int:
            n = 0
            while n < total:
                await dev.readinto_async(buf)
                n += 1
            return n

        async def async_batch(total: int) -> int:
            n = 0
            while n < total:
                n += await dev.read_batch_async(ring)
            return n

        loops: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
        try:
            import uvloop  # type: ignore[import-not-found]

            loops["uvloop"] = uvloop.new_event_loop
        except ImportError:
            pass
        methods: Dict[str, Callable[[], int]] = {"sync readinto": sync_readinto, "sync read_batch": sync_batch}
        for lname, make in loops.items():
            def run_async(coro_fn: Callable[[int], "asyncio.Future[int]"], make: Callable[[], asyncio.AbstractEventLoop] = make) -> int:
                loop = make()
                try:
                    return loop.run_until_complete(coro_fn(args.packets))  # type: ignore[arg-type]
                finally:
                    loop.close()
            methods[f"{lname} readinto_async"] = lambda run_async=run_async: run_async(async_readinto)  # type: ignore[misc]
            methods[f"{lname} read_batch_async"] = lambda run_async=run_async: run_async(async_batch)  # type: ignore[misc]
        results: Dict[str, List[float]] = {m: [] for m in methods}
        for _ in range(args.runs):
            for name, fn in methods.items():
                sync_batch()  # start from an empty queue
                fill(args.packets, args.subnet)
                t0 = time.perf_counter_ns()
                got = fn()
                dt = time.perf_counter_ns() - t0
                if got < args.packets:
                    raise RuntimeError(f"{name}: drained {got} of {args.packets}")
                results[name].append(dt / got)
    finally:
        dev.close()
    base = statistics.median(results["sync read_batch"])
    print(f"\n## Async drain: {args.packets:,} queued 16-byte UDP datagrams, median of {args.runs}\n")
    print("| method | ns/pkt | ratio to sync read_batch |")
    print("| --- | ---: | ---: |")
    for name, v in results.items():
        med = statistics.median(v)
        print(f"| {name} | {med:.0f} | {med / base:.2f}x |")
    for lname in loops:
        ratio = statistics.median(results[f"{lname} read_batch_async"]) / base
        print(f"\n{lname}: read_batch_async / sync read_batch = {ratio:.2f}x (target <= 1.3)")
    print(f"\nPython {sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
