#!/usr/bin/env python3
"""Where do ``Device.read_batch`` and ``write_batch`` spend time beyond the C io_uring floor?

Diagnostic companion of drain.py (same interface set-up, same fill, same
written packets): the variants below take turns, ``--block`` packets each
(whole rings of 256), on one full TUN queue (reads) or one stream of writes,
and each is reported as ns/packet and as the median per-packet difference to
the C floor in the same round.

- ``C io_uring floor``: drain_uring.c's loops, in-process through cffi.
- ``read_batch``/``write_batch (as is)``: the public calls.
- ``engine.fill(0)``/``engine.send(256)``: the engine the Device made for the
  ring, called directly (the difference to the above is the Device wrapper:
  argument checks, the engine lookup, the loop around fill).
- ``python enter only``: the engine's own ``_enter`` (SQ mapping, one
  io_uring_enter) and a head store, no completion checks: one cffi syscall
  per batch plus the same kernel work.

Before the timed rounds each Python variant runs untimed turns
(harness.BenchTun.warm_turns) so that PyPy's JIT has compiled them.

    bench/.venv/bin/python bench/diag/profile_batch.py            # CPython
    bench/.venv-pypy/bin/python bench/diag/profile_batch.py       # PyPy
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
from tuntap_cffi import batch  # noqa: E402


def enter_all(engine: Any, slots: int, op: str) -> None:
    """Submit the engine's pre-filled SQEs for every slot in one io_uring_enter (its own _enter: SQ mapping
    and the syscall, with its file-table SQEs where it uses them); drop the CQEs unchecked."""
    engine._enter(0, slots, op)
    engine.uring.cq_head[0] = (engine.uring.cq_head[0] + slots) & 0xFFFF_FFFF


def timed_batches(call: Callable[[], int], batches: int, block: int, what: str) -> int:
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(batches):
        n += call()
    t1 = time.perf_counter_ns()
    if n != block:
        raise RuntimeError(f"{what}: {n} of {block} packets inside a block")
    return t1 - t0


def report(title: str, rounds: List[Dict[str, float]], keys: List[str], block: int) -> None:
    floor = keys[0]
    print(f"\n{title}: {sys.implementation.name} {sys.version.split()[0]}, {len(rounds)} rounds of {block} packets per variant")
    print(f"{'variant':34s} {'ns/pkt':>7s}  {'vs C floor: median [quartiles]':>32s}  ratio")
    for key in keys:
        diffs = [r[key] - r[floor] for r in rounds]
        q1, med, q3 = statistics.quantiles(diffs, n=4)
        ratio = statistics.median(r[key] / r[floor] for r in rounds)
        value = statistics.median(r[key] for r in rounds)
        print(f"{key:34s} {value:7.1f}  {med:+9.1f} [{q1:+8.1f} .. {q3:+8.1f}]  {ratio:5.3f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--fills", type=int, default=4, help="read fills (and write streams)")
    p.add_argument("--packets", type=int, default=300_000)
    p.add_argument("--block", type=int, default=harness.BLOCK, help="packets per turn, a multiple of 256")
    p.add_argument("--subnet", default="198.18.202")
    p.add_argument("--only", choices=["read", "write"], help="profile one side only")
    p.add_argument("--warm-calls", type=int, default=harness.WARM_CALLS,
                   help="untimed calls of each Python variant, in whole turns, first (PyPy's JIT)")
    args = p.parse_args()
    harness.check_subnet(args.subnet)
    harness.build_helpers()
    slots = harness.RING
    per_turn = args.block // slots

    worker = harness.BenchTun(f"ttprof{os.getpid() % 1000}", args.subnet, args.packets, 16)
    worker.warm_calls = args.warm_calls
    try:
        worker.create()
        dev = worker.dev
        clibs = harness.CLibs()
        fd = dev.fileno()
        worker.use_backend("io_uring")

        if args.only != "write":
            ring = dev.packet_ring(slots)
            engine = worker.uring_read_engine(ring)
            u = engine.uring
            read_batch = dev.read_batch
            cring: Any = None

            def enter_only() -> int:
                enter_all(engine, slots, "read")
                return slots if u.cqe_i32[4 * ((u.cq_head[0] - 1) & u.cq_mask) + 2] > 0 else 0

            python: Dict[str, Callable[[], int]] = {
                "read_batch (as is)": lambda: timed_batches(lambda: read_batch(ring), per_turn, args.block, "read_batch"),
                "engine.fill(0)": lambda: timed_batches(lambda: engine.fill(ring, 0), per_turn, args.block, "fill"),
                "python enter only": lambda: timed_batches(enter_only, per_turn, args.block, "enter only"),
            }
            for turn in python.values():
                worker.warm_turns(turn, args.block, fill=True)
            variants: Dict[str, Callable[[], int]] = {
                "C io_uring floor": lambda: clibs.uring_read_block(cring, args.block), **python}
            keys = list(variants)
            rounds: List[Dict[str, float]] = []
            for _ in range(args.fills):
                worker.drain_leftovers()
                cring = clibs.new_uring(fd, slots, ring.slot_size, False)
                worker.fill(args.packets)
                gc.collect()
                for i in range(args.packets // (args.block * len(keys))):
                    order = harness.shuffled(keys, len(rounds))
                    rounds.append({key: variants[key]() / args.block for key in order})
                clibs.ffi.release(cring)
            worker.drain_leftovers()
            report("reads", rounds, keys, args.block)

        if args.only != "read":
            worker.prepare_writes()
            wring = worker.write_ring
            dev.write_batch(wring)  # the engine, and the lengths of the SQEs enter_all submits
            wengine = harness.engine_of(dev, wring, "write")
            if not isinstance(wengine, batch.WriteEngine):
                raise SystemExit(f"the engine is {type(wengine).__name__}, not the io_uring WriteEngine")
            write_batch = dev.write_batch
            blob = b"".join(worker.write_packets)
            cw = clibs.new_uring(fd, slots, wring.slot_size, True)
            if clibs.uring.uring_load(cw, clibs.ffi.from_buffer(blob), len(worker.write_packets[0]), len(worker.write_packets)) < 0:
                raise RuntimeError("uring_load")

            def w_enter_only() -> int:
                enter_all(wengine, slots, "write")
                return slots

            def w_send() -> int:
                if wengine.send(wring, slots):
                    raise RuntimeError("a write failed")
                return slots

            wpython: Dict[str, Callable[[], int]] = {
                "write_batch (as is)": lambda: timed_batches(lambda: write_batch(wring), per_turn, args.block, "write_batch"),
                "engine.send(256)": lambda: timed_batches(w_send, per_turn, args.block, "send"),
                "python enter only": lambda: timed_batches(w_enter_only, per_turn, args.block, "enter only"),
            }
            for turn in wpython.values():
                worker.warm_turns(turn, args.block, fill=False)
            wvariants: Dict[str, Callable[[], int]] = {
                "C io_uring floor": lambda: clibs.uring_write_block(cw, args.block), **wpython}
            wkeys = list(wvariants)
            wrounds: List[Dict[str, float]] = []
            before = worker.write_checks_before()
            for _ in range(args.fills):
                gc.collect()
                for i in range(args.packets // (args.block * len(wkeys))):
                    order = harness.shuffled(wkeys, len(wrounds))
                    wrounds.append({key: wvariants[key]() / args.block for key in order})
            worker.write_checks_after(before, len(wrounds) * len(wkeys) * args.block)
            clibs.ffi.release(cw)
            report("writes", wrounds, wkeys, args.block)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
