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
- ``python enter only``: the engine's own ring driven the least Python can
  (SQ array slice, tail store, one io_uring_enter, head store; no checks):
  one cffi syscall per batch plus the same kernel work.
- ``sections``: a copy of the engine's fast path with a clock read between
  the steps; the per-step medians are printed below the table.  (The copy
  follows tuntap_cffi/batch.py as of commit d8a8b01; compare its total with
  the ``as is`` row, which runs whatever the working tree holds.)
- ``proposed``: the change suggested in bench/README.md, applied to a copy of
  the fast path (the package is not changed): on PyPy, one plain loop over
  int32 views of the CQEs/SQEs (the JIT compiles it; strided memoryview
  slicing and ``bytes(memoryview)`` are slow there); on CPython, the bulk
  memoryview copy of the lengths, but the user_data order checked on the
  first and last CQE of each piece only, and one ``bytes`` conversion
  searched and sliced as bytes (no strided memoryview-to-bytes copy).

    bench/.venv/bin/python bench/profile_batch.py            # CPython
    bench/.venv-pypy/bin/python bench/profile_batch.py       # PyPy
"""

from __future__ import annotations

import argparse
import errno
import functools
import gc
import inspect
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drain  # noqa: E402

sys.path.insert(0, str(drain.REPO_ROOT))
from tuntap_cffi import batch  # noqa: E402
from tuntap_cffi._syscalls import ffi, lib  # noqa: E402

PYPY = sys.implementation.name == "pypy"
EAGAIN = -errno.EAGAIN
GETEVENTS = lib.IORING_ENTER_GETEVENTS

READ_SECTIONS = ["sq array + tail", "io_uring_enter", "user_data check + lengths copy", "head store + cast",
                 "bytes(raw)", "EAGAIN search", "final checks", "cut check (full slot search)"]  # fmt: skip
WRITE_SECTIONS = ["SQE lengths copy", "sq array + tail", "io_uring_enter", "user_data copy + check + res copy",
                  "head store + res == lengths"]  # fmt: skip


# ----------------------------------------------------------------------------
# Instrumented copies of the engines' fast paths (tuntap_cffi/batch.py).
# ----------------------------------------------------------------------------


def sections_fill(engine: Any, ring: Any, acc: Dict[str, int]) -> int:
    """ReadEngine.fill(0) + _reap, step by step (fast path only), adding ns per step to *acc*."""
    clock = time.perf_counter_ns
    t0 = clock()
    first = 0
    u = engine.uring
    want = ring.slots - first
    tail = u.sq_tail[0]
    pos = tail & u.sq_mask
    entries = u.sq_entries
    head_part = min(want, entries - pos)
    u.sq_array_u32[pos : pos + head_part] = engine.seq[first : first + head_part]
    if head_part < want:
        u.sq_array_u32[0 : want - head_part] = engine.seq[first + head_part : first + want]
    u.sq_tail[0] = tail + want
    t1 = clock()
    r = u.enter(want, want, GETEVENTS)
    if r < 0:
        raise OSError(ffi.errno, "io_uring_enter")
    t2 = clock()
    count = ring.slots - first
    head = u.cq_head[0]
    assert u.cq_tail[0] - head >= count
    lengths = ring._owned_view
    done = 0
    ok = True
    while done < count:
        c = (head + done) & u.cq_mask
        piece = min(count - done, u.cq_entries - c)
        if u.cqe_u64[2 * c : 2 * (c + piece) : 2] != engine.seq64[first + done : first + done + piece]:
            ok = False
        lengths[first + done : first + done + piece] = u.cqe_i32[4 * c + 2 : 4 * (c + piece) : 4]
        done += piece
    t3 = clock()
    u.cq_head[0] = head + count
    if not ok:
        raise OSError("out of order")
    raw = lengths.cast("B")[4 * first : 4 * (first + count)]
    t4 = clock()
    data = bytes(raw)
    t5 = clock()
    found = data.find(batch._EAGAIN_BYTES)
    while found >= 0 and found % 4:
        found = data.find(batch._EAGAIN_BYTES, found + 1)
    k = count if found < 0 else found // 4
    t6 = clock()
    if not (raw[4 * k :] == engine.eagain[: 4 * (count - k)] and not bytes(raw[3 : 4 * k : 4]).strip(b"\0")):
        raise RuntimeError("slow path: not profiled")
    t7 = clock()
    full = data.find(engine.full, 0, 4 * k)
    while full >= 0 and full % 4:
        full = data.find(engine.full, full + 1, 4 * k)
    if full >= 0:
        engine.cut = True
    t8 = clock()
    for key, a, b in zip(READ_SECTIONS, (t0, t1, t2, t3, t4, t5, t6, t7), (t1, t2, t3, t4, t5, t6, t7, t8)):
        acc[key] += b - a
    return k


def sections_send(engine: Any, ring: Any, count: int, acc: Dict[str, int]) -> int:
    """WriteEngine.send(count), step by step (fast path only)."""
    clock = time.perf_counter_ns
    t0 = clock()
    u = engine.uring
    slots, start = ring.slots, ring.start
    lengths = ring._owned_view
    lengths_u32 = lengths.cast("B").cast("I")
    done = 0
    while done < count:
        s = (start + done) % slots
        piece = min(count - done, slots - s)
        engine.sqe_len[s : s + piece] = lengths_u32[done : done + piece]
        done += piece
    t1 = clock()
    tail = u.sq_tail[0]
    pos = tail & u.sq_mask
    head_part = min(count, u.sq_entries - pos)
    u.sq_array_u32[pos : pos + head_part] = engine.seq[start : start + head_part]
    if head_part < count:
        u.sq_array_u32[0 : count - head_part] = engine.seq[start + head_part : start + count]
    u.sq_tail[0] = tail + count
    t2 = clock()
    if u.enter(count, count, GETEVENTS) < 0:
        raise OSError(ffi.errno, "io_uring_enter")
    t3 = clock()
    head = u.cq_head[0]
    res, ud = memoryview(engine.res), memoryview(engine.ud)
    in_order = True
    done = 0
    while done < count:
        c = (head + done) & u.cq_mask
        piece = min(count - done, u.cq_entries - c)
        s = (start + done) % slots
        ud[done : done + piece] = u.cqe_u64[2 * c : 2 * (c + piece) : 2]
        if ud[done : done + piece] != engine.seq64[s : s + piece]:
            in_order = False
        res[done : done + piece] = u.cqe_i32[4 * c + 2 : 4 * (c + piece) : 4]
        done += piece
    t4 = clock()
    u.cq_head[0] = head + count
    if not in_order or res[:count] != lengths[:count]:
        raise RuntimeError("slow path: not profiled")
    t5 = clock()
    for key, a, b in zip(WRITE_SECTIONS, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
        acc[key] += b - a
    return count


# ----------------------------------------------------------------------------
# The proposal (see bench/README.md), as functions over the real engines.
# ----------------------------------------------------------------------------


class Views:
    """int32 pointers over an engine's CQEs and SQEs (made once per engine)."""

    def __init__(self, engine: Any, ring: Any) -> None:
        u = engine.uring
        self.cqe = ffi.cast("int32_t *", ffi.from_buffer(u.cqe_i32))  # CQE c: user_data low 4c, res 4c+2
        self.sqe = ffi.cast("uint32_t *", u.sqes)  # SQE j: len at 16j+6
        self.identity = False  # the SQ array maps position p to SQE p % n (reads: first == 0 always)
        self.lengths_bytes = ring._owned_view.cast("B")  # made once, not per batch
        self.lengths_u32 = self.lengths_bytes.cast("I")
        self.full = ring.slot_size  # a read that filled its slot may have been cut short


def proposed_fill(engine: Any, ring: Any, views: Views, first: int) -> int:
    u = engine.uring
    want = ring.slots - first
    tail = u.sq_tail[0]
    pos = tail & u.sq_mask
    if not (views.identity and pos == first and want == u.sq_entries):
        head_part = min(want, u.sq_entries - pos)
        u.sq_array_u32[pos : pos + head_part] = engine.seq[first : first + head_part]
        if head_part < want:
            u.sq_array_u32[0 : want - head_part] = engine.seq[first + head_part : first + want]
        views.identity = pos == first and want == u.sq_entries
    u.sq_tail[0] = tail + want
    if u.enter(want, want, GETEVENTS) < 0:
        raise OSError(ffi.errno, "io_uring_enter")  # (EINTR handling as in the package)
    count = want
    head = u.cq_head[0]
    if u.cq_tail[0] - head < count:
        raise AssertionError("io_uring_enter returned before every read completed")
    if PYPY:
        # One plain loop: the JIT turns it into a tight loop over the CQEs.
        cqe, lengths, mask, full = views.cqe, ring._lengths, u.cq_mask, views.full
        k = count
        slow = False
        in_order = True
        for i in range(count):
            c = ((head + i) & mask) << 2
            r = cqe[c + 2]
            lengths[first + i] = r
            if cqe[c] != first + i:  # user_data < 2**15: its low half says it all
                in_order = False
            if r > 0:
                if k != count:
                    slow = True  # a packet after an EAGAIN: a hole
                if r == full:
                    engine.cut = True  # the caller re-checks the MTU
            elif r == EAGAIN:
                if k == count:
                    k = i
            else:
                slow = True  # an error, or 0 (closed)
        u.cq_head[0] = head + count
        if not in_order:
            raise OSError(errno.EPROTO, "io_uring completions arrived out of submission order")
        return slow_path(engine, ring, first, count) if slow else k
    lv = ring._owned_view
    done = 0
    ok = True
    cqe64 = u.cqe_u64
    while done < count:
        c = (head + done) & u.cq_mask
        piece = min(count - done, u.cq_entries - c)
        # Inline reads complete in slot order: checking the first and last user_data of each
        # piece catches a reordering without a strided compare of all of them.
        if cqe64[2 * c] != first + done or cqe64[2 * (c + piece - 1)] != first + done + piece - 1:
            ok = False
        lv[first + done : first + done + piece] = u.cqe_i32[4 * c + 2 : 4 * (c + piece) : 4]
        done += piece
    u.cq_head[0] = head + count
    if not ok:
        raise OSError(errno.EPROTO, "io_uring completions arrived out of submission order")
    raw = bytes(views.lengths_bytes[4 * first : 4 * (first + count)])  # one conversion, searched and sliced as bytes
    found = raw.find(batch._EAGAIN_BYTES)
    while found >= 0 and found % 4:
        found = raw.find(batch._EAGAIN_BYTES, found + 1)
    k = count if found < 0 else found // 4
    if raw[4 * k :] == engine.eagain[: 4 * (count - k)] and not raw[3 : 4 * k : 4].strip(b"\0"):
        full = raw.find(engine.full, 0, 4 * k)
        while full >= 0 and full % 4:
            full = raw.find(engine.full, full + 1, 4 * k)
        if full >= 0:
            engine.cut = True
        return k
    return slow_path(engine, ring, first, count)


def proposed_send(engine: Any, ring: Any, views: Views, count: int) -> List[Tuple[int, int]]:
    u = engine.uring
    slots, start = ring.slots, ring.start
    if PYPY:
        sqe, lengths = views.sqe, ring._lengths
        for i in range(count):
            sqe[(((start + i) % slots) << 4) + 6] = lengths[i]
    else:
        done = 0
        while done < count:
            s = (start + done) % slots
            piece = min(count - done, slots - s)
            engine.sqe_len[s : s + piece] = views.lengths_u32[done : done + piece]
            done += piece
    tail = u.sq_tail[0]
    pos = tail & u.sq_mask
    head_part = min(count, u.sq_entries - pos)
    u.sq_array_u32[pos : pos + head_part] = engine.seq[start : start + head_part]
    if head_part < count:
        u.sq_array_u32[0 : count - head_part] = engine.seq[start + head_part : start + count]
    u.sq_tail[0] = tail + count
    if u.enter(count, count, GETEVENTS) < 0:
        raise OSError(ffi.errno, "io_uring_enter")
    head = u.cq_head[0]
    if PYPY:
        cqe, lengths, mask = views.cqe, ring._lengths, u.cq_mask
        in_order = True
        failed = False
        for i in range(count):
            c = ((head + i) & mask) << 2
            if cqe[c] != (start + i) % slots:
                in_order = False
            if cqe[c + 2] != lengths[i]:
                failed = True
        u.cq_head[0] = head + count
        if in_order and not failed:
            return []
        raise RuntimeError("slow path (match by user_data): not part of the proposal")
    res = memoryview(engine.res)
    in_order = True
    done = 0
    cqe64 = u.cqe_u64
    while done < count:
        c = (head + done) & u.cq_mask
        piece = min(count - done, u.cq_entries - c)
        s = (start + done) % slots
        # First and last user_data of the piece only; a refused write shows in res anyway.
        if cqe64[2 * c] != s or cqe64[2 * (c + piece - 1)] != s + piece - 1:
            in_order = False
        res[done : done + piece] = u.cqe_i32[4 * c + 2 : 4 * (c + piece) : 4]
        done += piece
    u.cq_head[0] = head + count
    if in_order and res[:count] == ring._owned_view[:count]:
        return []
    raise RuntimeError("slow path: not part of the proposal")


# What the copies above read from the engines (as of commit d8a8b01).
READ_FIELDS = ("uring", "seq64", "eagain", "full", "cut", "_slow")  # (seq: now a cdata array, see enter_only)
WRITE_FIELDS = ("uring", "seq", "seq64", "sqe_len", "res", "ud")


def enter_all(engine: Any, slots: int, op: str) -> None:
    """Submit the engine's pre-filled SQEs for every slot in one io_uring_enter (its own _enter: SQ mapping
    and the syscall, with its file-table SQEs where it uses them); drop the CQEs unchecked."""
    engine._enter(0, slots, op)
    engine.uring.cq_head[0] += slots


def has_fields(engine: Any, fields: Sequence[str]) -> bool:
    """Whether *engine* still has what the copies need; else they are left out (and said so)."""
    missing = [f for f in fields if not hasattr(engine, f)]
    if missing:
        print(f"{type(engine).__name__} has no {', '.join(missing)}: the engines changed since the copies "
              "of their fast paths were made; leaving out the 'sections' and 'proposed' variants")
    return not missing


def takes_ring(method: Any) -> bool:
    """Whether an engine method has the ring as its first argument (the engines' API is changing)."""
    return next(iter(inspect.signature(method).parameters), "") == "ring"


def slow_path(engine: Any, ring: Any, first: int, count: int) -> int:
    if takes_ring(engine._slow):
        return int(engine._slow(ring, first, count))
    return int(engine._slow(first, count))


# ----------------------------------------------------------------------------


def timed_batches(call: Callable[[], int], batches: int, block: int, what: str) -> int:
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(batches):
        n += call()
    t1 = time.perf_counter_ns()
    if n != block:
        raise RuntimeError(f"{what}: {n} of {block} packets inside a block")
    return t1 - t0


def report(title: str, rounds: List[Dict[str, float]], keys: List[str], steps: List[Dict[str, float]],
           sections: List[str], block: int, slots: int) -> None:  # fmt: skip
    floor = keys[0]
    print(f"\n{title}: {sys.implementation.name} {sys.version.split()[0]}, {len(rounds)} rounds of {block} packets per variant")
    print(f"{'variant':34s} {'ns/pkt':>7s}  {'vs C floor: median [quartiles]':>32s}  ratio")
    for key in keys:
        diffs = [r[key] - r[floor] for r in rounds]
        q1, med, q3 = statistics.quantiles(diffs, n=4)
        ratio = statistics.median(r[key] / r[floor] for r in rounds)
        value = statistics.median(r[key] for r in rounds)
        print(f"{key:34s} {value:7.1f}  {med:+9.1f} [{q1:+8.1f} .. {q3:+8.1f}]  {ratio:5.3f}x")
    if not steps:
        return
    print("sections (instrumented copy), median ns per packet (x256 = per batch):")
    for k in sections:
        v = statistics.median(s[k] for s in steps)
        print(f"  {k:34s} {v:7.1f}  ({v * slots / 1000:6.1f} us/batch)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--fills", type=int, default=4, help="read fills (and write streams)")
    p.add_argument("--packets", type=int, default=300_000)
    p.add_argument("--block", type=int, default=1024, help="packets per turn, a multiple of 256")
    p.add_argument("--subnet", default="198.18.202")
    p.add_argument("--only", choices=["read", "write"], help="profile one side only")
    args = p.parse_args()
    drain.check_subnet(args.subnet)
    drain.build_helpers()
    slots = drain.RING
    per_turn = args.block // slots

    worker = drain.Worker(f"ttprof{os.getpid() % 1000}", args.subnet, args.packets, 16)
    try:
        worker.create()
        dev = worker.dev
        clibs = drain.CLibs()
        fd = dev.fileno()
        worker.use_backend("io_uring")

        if args.only != "write":
            ring = dev.packet_ring(slots)
            worker.prime_read_batch(ring)
            engine = dev._engine(ring, "read")
            if not isinstance(engine, batch.ReadEngine):
                raise SystemExit(f"the engine is {type(engine).__name__}, not the io_uring ReadEngine")
            u, views = engine.uring, Views(engine, ring)
            read_batch = dev.read_batch
            fill: Callable[[int], int] = (
                functools.partial(engine.fill, ring) if takes_ring(engine.fill) else getattr(engine, "fill")
            )
            acc = {k: 0 for k in READ_SECTIONS}
            steps: List[Dict[str, float]] = []
            cring: Any = None

            def enter_only() -> int:
                enter_all(engine, slots, "read")
                return slots if u.cqe_i32[4 * ((u.cq_head[0] - 1) & u.cq_mask) + 2] > 0 else 0

            def sections() -> int:
                for k in acc:
                    acc[k] = 0
                t = timed_batches(lambda: sections_fill(engine, ring, acc), per_turn, args.block, "sections")
                steps.append({k: v / args.block for k, v in acc.items()})
                return t

            variants: Dict[str, Callable[[], int]] = {
                "C io_uring floor": lambda: clibs.uring_read_block(cring, args.block),
                "read_batch (as is)": lambda: timed_batches(lambda: read_batch(ring), per_turn, args.block, "read_batch"),
                "engine.fill(0)": lambda: timed_batches(lambda: fill(0), per_turn, args.block, "fill"),
                "python enter only": lambda: timed_batches(enter_only, per_turn, args.block, "enter only"),
            }
            if has_fields(engine, READ_FIELDS):
                variants["sections (instrumented copy)"] = sections
                variants["proposed fill (copy)"] = lambda: timed_batches(
                    lambda: proposed_fill(engine, ring, views, 0), per_turn, args.block, "proposed"
                )
            keys = list(variants)
            rounds: List[Dict[str, float]] = []
            for _ in range(args.fills):
                worker.drain_leftovers()
                cring = clibs.new_uring(fd, slots, ring.slot_size, False)
                worker.fill(args.packets)
                gc.collect()
                for i in range(args.packets // (args.block * len(keys))):
                    order = drain.shuffled(keys, len(rounds))
                    rounds.append({key: variants[key]() / args.block for key in order})
                clibs.ffi.release(cring)
            worker.drain_leftovers()
            report("reads", rounds, keys, steps, READ_SECTIONS, args.block, slots)

        if args.only != "read":
            worker.prepare_writes()
            wring = worker.write_ring
            dev.write_batch(wring, 1)
            wengine = dev._engine(wring, "write")
            if not isinstance(wengine, batch.WriteEngine):
                raise SystemExit(f"the engine is {type(wengine).__name__}, not the io_uring WriteEngine")
            wviews = Views(wengine, wring)
            write_batch = dev.write_batch
            send: Callable[[int], List[Tuple[int, int]]] = (
                functools.partial(wengine.send, wring) if takes_ring(wengine.send) else getattr(wengine, "send")
            )
            wacc = {k: 0 for k in WRITE_SECTIONS}
            wsteps: List[Dict[str, float]] = []
            blob = b"".join(worker.write_packets)
            cw = clibs.new_uring(fd, slots, wring.slot_size, True)
            if clibs.uring.uring_load(cw, clibs.ffi.from_buffer(blob), len(worker.write_packets[0]), len(worker.write_packets)) < 0:
                raise RuntimeError("uring_load")

            dev.write_batch(wring, slots)  # sets the lengths of the SQEs enter_all submits

            def w_enter_only() -> int:
                enter_all(wengine, slots, "write")
                return slots

            def w_sections() -> int:
                for k in wacc:
                    wacc[k] = 0
                t = timed_batches(lambda: sections_send(wengine, wring, slots, wacc), per_turn, args.block, "sections")
                wsteps.append({k: v / args.block for k, v in wacc.items()})
                return t

            def w_proposed() -> int:
                if proposed_send(wengine, wring, wviews, slots):
                    raise RuntimeError("a write failed")
                return slots

            def w_send() -> int:
                if send(slots):
                    raise RuntimeError("a write failed")
                return slots

            wvariants: Dict[str, Callable[[], int]] = {
                "C io_uring floor": lambda: clibs.uring_write_block(cw, args.block),
                "write_batch (as is)": lambda: timed_batches(lambda: write_batch(wring), per_turn, args.block, "write_batch"),
                "engine.send(256)": lambda: timed_batches(w_send, per_turn, args.block, "send"),
                "python enter only": lambda: timed_batches(w_enter_only, per_turn, args.block, "enter only"),
            }
            if has_fields(wengine, WRITE_FIELDS):
                wvariants["sections (instrumented copy)"] = w_sections
                wvariants["proposed send (copy)"] = lambda: timed_batches(w_proposed, per_turn, args.block, "proposed")
            wkeys = list(wvariants)
            wrounds: List[Dict[str, float]] = []
            before = worker.write_checks_before()
            for _ in range(args.fills):
                gc.collect()
                for i in range(args.packets // (args.block * len(wkeys))):
                    order = drain.shuffled(wkeys, len(wrounds))
                    wrounds.append({key: wvariants[key]() / args.block for key in order})
            worker.write_checks_after(before, len(wrounds) * len(wkeys) * args.block)
            clibs.ffi.release(cw)
            report("writes", wrounds, wkeys, wsteps, WRITE_SECTIONS, args.block, slots)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
