#!/usr/bin/env python3
"""What the first batch of an interleaved turn costs, against the turn's later ones.

Diagnostic behind drain.py's turn length (BLOCK): drain.py's five
interleaved read methods take turns on one full queue, as there, and the
two batch methods time each of their 256-packet batches on its own.  Prints
the median time of the batch at each position of a turn: the first pays for
what the other methods' turns left in the caches.

    bench/.venv/bin/python bench/diag/turn_cost.py [--block 1024]    # and bench/.venv-pypy/bin/python
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import harness  # noqa: E402  (it puts the repository root first on sys.path)
from tuntap_cffi._syscalls import ffi, lib  # noqa: E402

PACKETS = 290_000  # per fill


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--block", type=int, default=4 * harness.RING, help="packets per turn, a multiple of 256")
    p.add_argument("--fills", type=int, default=4)
    p.add_argument("--packets", type=int, default=PACKETS, help="datagrams per fill")
    p.add_argument("--subnet", default="198.18.207", help="the TUN's /24, inside 198.18.0.0/15")
    p.add_argument("--warm-calls", type=int, default=harness.WARM_CALLS,
                   help="untimed calls of each Python variant, in whole turns, first (PyPy's JIT)")
    args = p.parse_args()
    batches = args.block // harness.RING
    if batches < 2 or args.block % harness.RING:
        p.error(f"--block must be a multiple of {harness.RING}, at least {2 * harness.RING}")
    harness.build_helpers()
    harness.check_subnet(args.subnet)
    w = harness.BenchTun(f"tt{os.getpid() % 10000}t", args.subnet, args.packets, 16)
    w.warm_calls = args.warm_calls
    by_position: Dict[str, List[List[int]]] = {"c_uring": [[] for _ in range(batches)], "read_batch": [[] for _ in range(batches)]}
    try:
        w.create()
        clibs = w.c_libs()
        dev, buf = w.dev, w.buf
        fd = dev.fileno()
        read, ptr, size = lib.read, ffi.from_buffer(buf), len(buf)
        ring = dev.packet_ring(harness.RING)
        w.use_backend("io_uring")
        w.prime_read_batch(ring)
        uring = clibs.new_uring(fd, harness.RING, dev.max_packet_size, False)
        w.warm_turns(lambda: harness.block_read_batch(dev, ring, args.block), args.block, fill=True)
        clock, read_batch = time.perf_counter_ns, dev.read_batch

        def batch_turn() -> List[int]:
            times = []
            for _ in range(batches):
                t0 = clock()
                n = read_batch(ring)
                times.append(clock() - t0)
                if n != harness.RING:
                    raise RuntimeError(f"read_batch got {n} packets inside a turn")
            return times

        turns: Dict[str, Callable[[], Any]] = {
            "c_read": lambda: clibs.read_block(fd, ptr, size, args.block),
            "device_readinto": lambda: harness.block_device_readinto(dev, buf, args.block),
            "cffi_cached_ptr": lambda: harness.block_cffi_cached_ptr(read, fd, ptr, size, args.block),
            "read_batch": batch_turn,
            "c_uring": lambda: [clibs.uring_read_block(uring, harness.RING) for _ in range(batches)],
        }
        rounds = 0
        for fill in range(args.fills):
            w.drain_leftovers()
            w.fill(args.packets)
            gc.collect()
            for i in range(args.packets // (args.block * len(turns))):
                for key in harness.shuffled(list(turns), i + 1000 * fill):
                    times = turns[key]()
                    if key in by_position:
                        for pos, ns in enumerate(times):
                            by_position[key][pos].append(ns)
                rounds += 1
        w.drain_leftovers()
        clibs.ffi.release(uring)
    finally:
        w.close()
    print(f"{sys.implementation.name} {sys.version.split()[0]}: {rounds} rounds, turns of {args.block} packets; "
          f"median us per {harness.RING}-packet batch by its position in the turn")
    for key, positions in by_position.items():
        medians = [statistics.median(v) / 1e3 for v in positions]
        rest = statistics.median([ns for v in positions[1:] for ns in v]) / 1e3
        print(f"  {key:10s} " + " ".join(f"{m:6.1f}" for m in medians) + f"   first/rest {medians[0] / rest:.2f}x")


if __name__ == "__main__":
    main()
