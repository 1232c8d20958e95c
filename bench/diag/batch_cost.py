#!/usr/bin/env python3
"""What a 256-packet ``read_batch`` costs in Python, apart from the kernel's work.

Two measurements (diagnostics behind the figures in docs/guides/performance.md and
bench/README.md; run as root):

``--faked``
    The kernel taken out: ``batch._ENTER`` (the engines' io_uring_enter) is
    replaced by a function that posts 256 completions (user_data = slot << 24,
    res 44) to the engine's real, mapped CQ, so every Python step of the call
    runs as in a drain, hot in the caches.  Prints the best of 9 timeit
    repeats of ``read_batch(ring)``, ``engine.fill(ring, 0)`` and the
    engine's CQE check (``_reap``).

``--in-place`` (default)
    A real drain (harness.BenchTun's TUN and fill): ``read_batch``, the engine's
    ``fill`` and its bare ``_enter`` take turns batch by batch (shuffled),
    the C io_uring floor (libdrainuring) after each round, and every
    ``io_uring_enter`` is timed: what a call spends outside the syscall is
    its Python work in place, where the kernel's ~200 us batch has left the
    caches cold (the timing wrapper's own frame, ~0.3 us, is counted in).
    Also prints the syscall's time against the C floor's whole batch (the
    kernel's part: ~1.0x).

    bench/.venv/bin/python bench/diag/batch_cost.py            # in place
    bench/.venv/bin/python bench/diag/batch_cost.py --faked
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import struct
import sys
import time
import timeit
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import harness  # noqa: E402  (it puts the repository root first on sys.path)
from tuntap_cffi import batch, open_tun  # noqa: E402

SLOTS = 256


def faked() -> None:
    dev = open_tun(f"tt{os.getpid() % 10000}c", nonblocking=True)
    saved = batch._ENTER
    try:
        ring = dev.packet_ring(SLOTS)
        try:
            dev.read_batch(ring)  # makes the engine
        except BlockingIOError:
            pass
        engine = harness.engine_of(dev, ring, "read")
        if not isinstance(engine, batch.ReadEngine):
            raise SystemExit(f"the engine is {type(engine).__name__}, not io_uring's")
        u = engine.uring
        blob = b"".join(struct.pack("<Qi4x", (j % SLOTS) << batch._SLOT_SHIFT, 44) for j in range(u.cq_entries))
        u.cqe_bytes[: len(blob)] = blob
        tail = u.cq_tail

        def fake_enter(nr: int, fd: int, to_submit: int, min_complete: int, flags: int, arg: Any, size: int) -> int:
            tail[0] = (tail[0] + min_complete) & 0xFFFF_FFFF
            return to_submit

        batch._ENTER = fake_enter
        engine.window = SLOTS
        if dev.read_batch(ring) != SLOTS or list(ring.lengths[:3]) != [44, 44, 44]:
            raise RuntimeError("the faked batch did not come back as 256 packets of 44 bytes")
        env = {"dev": dev, "ring": ring, "engine": engine, "u": u}

        def best(stmt: str, number: int = 20000) -> None:
            t = min(timeit.repeat(stmt, number=number, repeat=9, globals=env))
            print(f"{t / number * 1e6:7.2f} us  {stmt}")

        print(f"{sys.implementation.name} {sys.version.split()[0]}: Python per {SLOTS}-packet batch, kernel faked")
        best("dev.read_batch(ring)")
        best("engine.fill(ring, 0)")
        env["head"] = u.cq_head[0]
        u.cq_tail[0] = (u.cq_head[0] + SLOTS) & 0xFFFF_FFFF
        best("u.cq_head[0] = head; engine._reap(ring, 0, 256)")
    finally:
        batch._ENTER = saved
        dev.close()


def in_place(fills: int, rounds: int, packets: int, subnet: str) -> None:
    harness.build_helpers()
    harness.check_subnet(subnet)
    w = harness.BenchTun(f"tt{os.getpid() % 10000}c", subnet, packets, 16)
    saved = batch._ENTER
    try:
        w.create()
        dev = w.dev
        w.use_backend("io_uring")
        ring = dev.packet_ring(SLOTS)
        engine = w.uring_read_engine(ring)
        u = engine.uring
        clock = time.perf_counter_ns
        inside = [0]

        def timed_enter(nr: int, fd: int, to_submit: int, min_complete: int, flags: int, arg: Any, size: int) -> int:
            t0 = clock()
            r: int = saved(nr, fd, to_submit, min_complete, flags, arg, size)
            inside[0] += clock() - t0
            return r

        batch._ENTER = timed_enter
        read_batch = dev.read_batch

        def enter_only() -> int:
            engine._enter(0, SLOTS, "read")
            u.cq_words[u.cq_head_i] = u.cq_words[u.cq_tail_i]
            return SLOTS

        variants: Dict[str, Callable[[], int]] = {
            "read_batch(ring)": lambda: read_batch(ring),
            "engine.fill(ring, 0)": lambda: engine.fill(ring, 0),
            "engine._enter alone": enter_only,
        }
        outside: Dict[str, List[int]] = {k: [] for k in variants}
        syscall: List[float] = []
        clibs = harness.CLibs()
        keys = list(variants)
        per_fill = min(rounds, packets // (SLOTS * (len(keys) + 1)))
        for _ in range(fills):
            w.drain_leftovers()
            cring = clibs.new_uring(dev.fileno(), SLOTS, ring.slot_size, False)
            w.fill(packets)
            gc.collect()
            for _ in range(per_fill):
                random.shuffle(keys)
                for key in keys:
                    inside[0] = 0
                    t0 = clock()
                    n = variants[key]()
                    t1 = clock()
                    if n != SLOTS:
                        raise RuntimeError(f"{key}: {n} packets, not a full batch")
                    outside[key].append(t1 - t0 - inside[0])
                    if key == "read_batch(ring)":
                        spent = inside[0]
                c_ns = clibs.uring_read_block(cring, SLOTS)
                syscall.append(spent / c_ns)
            clibs.ffi.release(cring)
        w.drain_leftovers()
        print(f"{sys.implementation.name} {sys.version.split()[0]}: Python per {SLOTS}-packet batch in a real drain, "
              f"outside io_uring_enter (median of {len(syscall)})")
        for key, values in outside.items():
            print(f"{statistics.median(values) / 1e3:7.2f} us  {key}")
        print(f"read_batch's io_uring_enter against the C floor's whole batch: {statistics.median(syscall):.3f}x")
    finally:
        batch._ENTER = saved
        w.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--faked", action="store_true", help="take the kernel out (see above)")
    p.add_argument("--fills", type=int, default=5)
    p.add_argument("--rounds", type=int, default=240, help="rounds per fill (each: every variant, then the C floor)")
    p.add_argument("--packets", type=int, default=250_000, help="datagrams per fill (in place)")
    p.add_argument("--subnet", default="198.18.204", help="the TUN's /24 (in place), inside 198.18.0.0/15")
    args = p.parse_args()
    if args.faked:
        faked()
    else:
        in_place(args.fills, args.rounds, args.packets, args.subnet)


if __name__ == "__main__":
    main()
