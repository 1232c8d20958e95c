"""The interleaved comparisons' turns: each times a block of packets with one method, and their order.

On a shared, noisy box whole-run times of one method vary by +-30% between
rounds, which swamps a 10% difference.  So the methods the targets compare
also take turns: on one full queue (reads) or one stream of writes, a block
of packets each, in a fresh order each round (:func:`shuffled`), and each
turn is compared with its neighbours.  Each turn returns the nanoseconds of
its block and raises if the queue ran dry (or a write fell short) inside it.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, List, Sequence


def shuffled(keys: Sequence[str], i: int) -> List[str]:
    """The order of turns in round *i*: a fresh permutation each round.

    (A rotation would give every method the same predecessor in every round,
    and what the predecessor leaves in the caches biases its successor.)
    """
    order = list(keys)
    random.Random(i).shuffle(order)
    return order


def block_device_readinto(dev: Any, buf: bytearray, k: int) -> int:
    readinto = dev.readinto
    t0 = time.perf_counter_ns()
    for _ in range(k):
        readinto(buf)  # raises BlockingIOError if the queue ran dry
    return time.perf_counter_ns() - t0


def block_cffi_cached_ptr(read: Callable[..., int], fd: int, ptr: Any, size: int, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(k):
        if read(fd, ptr, size) <= 0:
            raise RuntimeError("the queue ran dry inside a block")
    return time.perf_counter_ns() - t0


def block_read_batch(dev: Any, ring: Any, k: int) -> int:
    read_batch = dev.read_batch
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(k // ring.slots):
        n += read_batch(ring)
    t1 = time.perf_counter_ns()
    if n != k:
        raise RuntimeError(f"read_batch got {n} of {k} packets inside a block")
    return t1 - t0


def block_write_batch(dev: Any, ring: Any, k: int) -> int:
    write_batch = dev.write_batch
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(k // ring.slots):
        n += write_batch(ring)
    t1 = time.perf_counter_ns()
    if n != k:
        raise RuntimeError(f"write_batch wrote {n} of {k} packets inside a block")
    return t1 - t0


def block_write(write: Callable[..., int], sequence: List[bytes]) -> int:
    t0 = time.perf_counter_ns()
    for packet in sequence:
        write(packet)
    return time.perf_counter_ns() - t0


def block_os_write(fd: int, sequence: List[bytes]) -> int:
    write = os.write
    t0 = time.perf_counter_ns()
    for packet in sequence:
        write(fd, packet)
    return time.perf_counter_ns() - t0
