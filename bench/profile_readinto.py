#!/usr/bin/env python3
"""Where does ``Device.readinto`` spend its time beyond the bare cffi call?

Diagnostic companion of drain.py (same interface set-up, same fill): the
variants below take turns on one full TUN queue, ``--block`` packets each,
and each is reported as the median per-packet difference to the bare call in
the same round.  The variants are functions bound to the real Device
(``types.MethodType``), so they see exactly its instance layout.

    bench/.venv/bin/python bench/profile_readinto.py            # CPython
    bench/.venv-pypy/bin/python bench/profile_readinto.py       # PyPy
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import time
import types
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drain  # noqa: E402

sys.path.insert(0, str(drain.REPO_ROOT))
from tuntap_cffi._syscalls import lib  # noqa: E402

_READ = lib.read  # a module global: LOAD_GLOBAL is specialized on CPython 3.11, self._read is not


def readinto_global_read(self: Any, buffer: Any) -> int:
    """Device.readinto with the module-global ``_READ`` instead of ``self._read``."""
    cached, ptr, size = self._rcache
    if cached is not buffer:
        cached, ptr, size = self._bind_read_buffer(buffer)
    n: int = _READ(self._fd, ptr, size)
    if n > 0:
        return n
    return self._read_again(n, ptr, size)  # type: ignore[no-any-return]


def readinto_global_read_fd_cached(self: Any, buffer: Any) -> int:
    """As above, and the fd kept in the cache tuple too (one attribute load fewer)."""
    cached, fd, ptr, size = self._bench_rcache4
    if cached is not buffer:
        raise RuntimeError("the benchmark binds its one buffer up front")
    n: int = _READ(fd, ptr, size)
    if n > 0:
        return n
    return self._read_again(n, ptr, size)  # type: ignore[no-any-return]


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
    drain.check_subnet(args.subnet)
    if not drain.FILL.exists():
        drain.build_helpers()

    worker = drain.Worker(f"ttprof{os.getpid() % 1000}", args.subnet, args.packets, 16)
    rounds: List[Dict[str, float]] = []
    try:
        worker.create()
        dev, buf = worker.dev, worker.buf
        worker.drain_leftovers()  # binds buf in the Device's cache
        cached, ptr, size = dev._rcache
        fd = dev.fileno()
        dev._bench_rcache4 = (cached, fd, ptr, size)
        read = lib.read

        def closure_floor(b: Any) -> int:  # the least any Python-level wrapper can cost
            n: int = read(fd, ptr, size)
            return n

        variants: Dict[str, Callable[[int], int]] = {
            "bare lib.read(fd, ptr, n)": lambda k: timed_bare(read, fd, ptr, size, k),
            "Device.readinto (as is)": lambda k: timed_arg(dev.readinto, buf, k),
            "  with module-global _READ": lambda k: timed_arg(types.MethodType(readinto_global_read, dev), buf, k),
            "  ... and fd in the cache tuple": lambda k: timed_arg(
                types.MethodType(readinto_global_read_fd_cached, dev), buf, k
            ),
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
