#!/usr/bin/env python3
"""Where does ``Device.readinto`` spend its time beyond the bare cffi call?

Diagnostic companion of drain.py (same interface set-up, same fill): the
variants below take turns on one full TUN queue, ``--block`` packets each,
and each is reported as the median per-packet difference to the bare call in
the same round.  Beside the public ``Device.readinto``, its statements run
in a slotted class of this script's own (:class:`ReadintoShape`), as they are
and with the fd in the cache tuple: what the Device's own instance costs
beyond its statements.  Only public names of tuntap_cffi are used, and the
explicitly internal ``tuntap_cffi._syscalls.lib`` for the bare call.

(Until issue 15 the variants were copies of readinto bound to the Device
and reading its private members; the one that called ``lib.read`` as a
module global, -50 ns/packet on CPython 3.11, became readinto's body in
commit 095362c.)

    bench/.venv/bin/python bench/diag/profile_readinto.py            # CPython
    bench/.venv-pypy/bin/python bench/diag/profile_readinto.py       # PyPy
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import harness  # noqa: E402  (it puts the repository root first on sys.path)

from tuntap_cffi._syscalls import ffi, lib  # noqa: E402

_READ = lib.read  # a module global, as device.py's _read: LOAD_GLOBAL is specialized on CPython 3.11


class ReadintoShape:
    """Device.readinto's statements over a plain slotted object (the queue is full: no slow path)."""

    __slots__ = ("rcache", "rcache4", "fd")

    def __init__(self, fd: int, buffer: bytearray) -> None:
        ptr = ffi.from_buffer(buffer)
        self.fd = fd
        self.rcache: Tuple[object, Any, int] = (buffer, ptr, len(buffer))
        self.rcache4: Tuple[object, int, Any, int] = (buffer, fd, ptr, len(buffer))

    def readinto(self, buffer: Any) -> int:
        cached, ptr, size = self.rcache
        if cached is not buffer:
            raise RuntimeError("the benchmark binds its one buffer up front")
        n: int = _READ(self.fd, ptr, size)
        if n > 0 and n < size:
            return n
        raise RuntimeError(f"read() returned {n} inside a block")

    def readinto_fd_cached(self, buffer: Any) -> int:
        """As readinto, with the fd kept in the cache tuple too (one attribute load fewer)."""
        cached, fd, ptr, size = self.rcache4
        if cached is not buffer:
            raise RuntimeError("the benchmark binds its one buffer up front")
        n: int = _READ(fd, ptr, size)
        if n > 0 and n < size:
            return n
        raise RuntimeError(f"read() returned {n} inside a block")


def timed(call: Callable[[], Any], k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(k):
        call()
    return time.perf_counter_ns() - t0


def timed_arg(call: Callable[[Any], Any], arg: Any, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(k):
        call(arg)
    return time.perf_counter_ns() - t0


def timed_bare(read: Callable[..., int], fd: int, ptr: Any, size: int, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(k):
        read(fd, ptr, size)
    return time.perf_counter_ns() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--fills", type=int, default=5)
    p.add_argument("--packets", type=int, default=300_000)
    p.add_argument("--block", type=int, default=1000)
    p.add_argument("--subnet", default="198.18.201")
    args = p.parse_args()
    harness.check_subnet(args.subnet)
    harness.build_fill()

    worker = harness.BenchTun(f"ttprof{os.getpid() % 1000}", args.subnet, args.packets, 16)
    rounds: List[Dict[str, float]] = []
    try:
        worker.create()
        dev, buf = worker.dev, worker.buf
        worker.drain_leftovers()  # binds buf in the Device's cache
        fd = dev.fileno()
        ptr, size = ffi.from_buffer(buf), len(buf)
        shape = ReadintoShape(fd, buf)
        read = lib.read

        def closure_floor(b: Any) -> int:  # the least any Python-level wrapper can cost
            n: int = read(fd, ptr, size)
            return n

        variants: Dict[str, Callable[[int], int]] = {
            "bare lib.read(fd, ptr, n)": lambda k: timed_bare(read, fd, ptr, size, k),
            "Device.readinto (as is)": lambda k: timed_arg(dev.readinto, buf, k),
            "  its statements, slotted class": lambda k: timed_arg(shape.readinto, buf, k),
            "  ... and fd in the cache tuple": lambda k: timed_arg(shape.readinto_fd_cached, buf, k),
            "floor: def f(b): return read(fd, ptr, n)": lambda k: timed_arg(closure_floor, buf, k),
            "functools.partial(lib.read, fd, ptr, n)": lambda k: timed(functools.partial(read, fd, ptr, size), k),
        }
        keys = list(variants)
        for _ in range(args.fills):
            worker.drain_leftovers()
            worker.fill(args.packets)
            gc.collect()
            for i in range(args.packets // (args.block * len(keys))):
                order = keys[i % len(keys) :] + keys[: i % len(keys)]
                rounds.append({key: variants[key](args.block) / args.block for key in order})
    finally:
        worker.close()

    bare = keys[0]
    print(f"{sys.implementation.name} {sys.version.split()[0]}: {len(rounds)} rounds of {args.block} packets per variant")
    print(f"{'variant':44s} {'ns/pkt':>7s}  {'vs bare: median [quartiles]':>30s}  ratio")
    for key in keys:
        diffs = [r[key] - r[bare] for r in rounds]
        q1, med, q3 = statistics.quantiles(diffs, n=4)
        ratio = statistics.median(r[key] / r[bare] for r in rounds)
        value = statistics.median(r[key] for r in rounds)
        print(f"{key:44s} {value:7.0f}  {med:+8.1f} [{q1:+7.1f} .. {q3:+7.1f}]  {ratio:5.3f}x")


if __name__ == "__main__":
    main()
