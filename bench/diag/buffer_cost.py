#!/usr/bin/env python3
"""Per-packet cost of ``Device.readinto``/``write`` with one reused buffer, against bare cffi calls.

Issue 13 item 1 made the buffer pointer cache depend on the interpreter and
the buffer type (see device.py, "Buffers that move"); this measures what
that costs.  Variants take turns in blocks of ``--block`` packets over a
full TUN queue (the harness's TUN set-up and filler, as drain.py's); each is reported
as the median ns/packet and the median ratio to the bare cached-pointer
call of the same round.  The first fill is a warm-up (PyPy's JIT).

    bench/.venv/bin/python bench/diag/buffer_cost.py        # or any venv with the package's deps
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import harness  # noqa: E402  (it puts the repository root first on sys.path)
from tuntap_cffi._syscalls import ffi, lib  # noqa: E402


def per_call(call: Callable[..., Any], args: Tuple[Any, ...], k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(k):
        call(*args)
    return time.perf_counter_ns() - t0


def from_buffer_each(fn: Callable[..., int], fd: int, buf: Any, size: int, k: int) -> int:
    fb = ffi.from_buffer
    t0 = time.perf_counter_ns()
    for _ in range(k):
        fn(fd, fb(buf), size)
    return time.perf_counter_ns() - t0


def rounds(variants: Dict[str, Callable[[int], int]], packets: int, block: int) -> List[Dict[str, float]]:
    keys = list(variants)
    out = []
    for i in range(packets // (block * len(keys))):
        order = keys[i % len(keys):] + keys[: i % len(keys)]
        out.append({key: variants[key](block) / block for key in order})
    return out


def report(rows: List[Dict[str, float]]) -> None:
    bare = list(rows[0])[0]
    for key in rows[0]:
        ns = statistics.median(r[key] for r in rows)
        ratio = statistics.median(r[key] / r[bare] for r in rows)
        print(f"  {key:34s} {ns:7.0f} ns  {ratio:6.3f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--packets", type=int, default=120_000)
    p.add_argument("--block", type=int, default=1000)
    p.add_argument("--fills", type=int, default=5)
    p.add_argument("--subnet", default="198.19.222")
    args = p.parse_args()
    harness.check_subnet(args.subnet)
    harness.build_fill()
    read, write = lib.read, lib.write
    worker = harness.BenchTun(f"ttbuf{os.getpid() % 1000}", args.subnet, args.packets, 16, write_to="offlink")
    reads: List[Dict[str, float]] = []
    writes: List[Dict[str, float]] = []
    try:
        worker.create()
        dev, buf = worker.dev, worker.buf
        fd = dev.fileno()
        worker.drain_leftovers()
        ptr, size = ffi.from_buffer(buf), len(buf)
        read_variants: Dict[str, Callable[[int], int]] = {
            "bare read, cached pointer": lambda k: per_call(read, (fd, ptr, size), k),
            "bare read, from_buffer per call": lambda k: from_buffer_each(read, fd, buf, size, k),
            "Device.readinto(bytearray)": lambda k: per_call(dev.readinto, (buf,), k),
        }
        try:
            import numpy

            array = numpy.zeros(size, dtype="uint8")
            read_variants["Device.readinto(numpy array)"] = lambda k: per_call(dev.readinto, (array,), k)
        except ImportError:
            pass
        worker.prepare_writes()
        pkt = bytearray(worker.write_packets[0])
        n = len(pkt)
        wbuf = bytearray(2048)
        wbuf[:n] = pkt
        wptr = ffi.from_buffer(pkt)
        write_variants: Dict[str, Callable[[int], int]] = {
            "bare write, cached pointer": lambda k: per_call(write, (fd, wptr, n), k),
            "bare write, from_buffer per call": lambda k: from_buffer_each(write, fd, pkt, n, k),
            "Device.write(bytearray)": lambda k: per_call(dev.write, (pkt,), k),
            "Device.write(buf, n)": lambda k: per_call(dev.write, (wbuf, n), k),
        }
        for fill in range(args.fills):
            worker.drain_leftovers()
            worker.fill(args.packets)
            gc.collect()
            got = rounds(read_variants, args.packets, args.block)
            worker.drain_leftovers()
            wrote = rounds(write_variants, args.packets, args.block)
            if fill:  # the first fill warms up
                reads += got
                writes += wrote
        worker.drain_leftovers()
    finally:
        worker.close()
    print(f"{sys.implementation.name} {sys.version.split()[0]}: {len(reads)} read and {len(writes)} write rounds of {args.block}")
    report(reads)
    report(writes)


if __name__ == "__main__":
    main()
