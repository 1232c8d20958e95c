#!/usr/bin/env python3
"""read_batch and write_batch across the io_uring counters' 2**32 wrap, on a real TUN.

The heads and tails of an io_uring's SQ and CQ are free-running uint32s
(the kernel's and ours alike): a read engine's move by 258 per full
256-packet batch, so a capture loop at ~1.2 M packets/s takes them past
2**32 after about an hour.  Every sum and difference of them is taken mod
2**32 (batch._U32); before that was done, the first store past the wrap
raised OverflowError.  This check takes the engines' own rings there: the
unused SQEs of each engine's ring become NOPs, submitted through the ring
(the kernel's counters move with ours: nothing is faked) until the
counters are *--margin* short of 2**32; then sequence-numbered UDP
packets stream through ``read_batch`` (from a socket, read off the TUN)
and ``write_batch`` (written into the TUN, received by a socket) until the
counters have wrapped, and every packet must arrive exactly once, in
order.  The NOPs cost the kernel ~100-150 ns each here: ~10 minutes per
engine.

    bench/.venv/bin/python bench/diag/wrap_check.py             # both engines
    bench/.venv/bin/python bench/diag/wrap_check.py --only read

Run as root.  The interface is ``tt<pid>w`` with 198.18.203.0/24 (RFC 2544
benchmarking space); it is removed on every exit path.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import harness  # noqa: E402  (it puts the repository root first on sys.path)
import soak  # noqa: E402
from tuntap_cffi import batch  # noqa: E402
from tuntap_cffi._syscalls import ffi, lib  # noqa: E402

WRAP = 1 << 32


def counters(u: Any) -> Dict[str, int]:
    return {"sq_tail": int(u.sq_tail[0]), "cq_head": int(u.cq_head[0]), "cq_tail": int(u.cq_tail[0])}


def advance(engine: Any, to: int, report_every: float = 30.0) -> float:
    """Move the engine's SQ and CQ counters to *to* (mod 2**32) with NOPs through its own ring."""
    u = engine.uring
    first_nop = engine.n + engine.extra  # SQEs past the engine's own: never submitted by it
    nops = u.sq_entries - first_nop
    if nops < 16:
        raise SystemExit(f"the ring has only {nops} spare SQEs")
    for i in range(first_nop, u.sq_entries):
        sqe = u.sqes + i
        ffi.memmove(sqe, bytes(ffi.sizeof("struct io_uring_sqe")), ffi.sizeof("struct io_uring_sqe"))
        sqe.opcode = lib.IORING_OP_NOP
        sqe.user_data = batch._UPDATE_TAG
    indices = ffi.new("uint32_t[]", list(range(first_nop, u.sq_entries)))
    sq_array, mask, words, ti = u.sq_array, u.sq_mask, u.sq_words, u.sq_tail_i
    cq_words, hi, cti = u.cq_words, u.cq_head_i, u.cq_tail_i
    t0 = last = time.monotonic()
    while True:
        tail = words[ti]
        left = (to - tail) % WRAP
        if left == 0:
            break
        k = min(nops, left)
        pos = tail & mask
        room = u.sq_entries - pos
        if room >= k:
            sq_array[pos : pos + k] = indices[0:k]
        else:  # (cdata slices name both ends)
            sq_array[pos : u.sq_entries] = indices[0:room]
            sq_array[0 : k - room] = indices[room:k]
        words[ti] = (tail + k) % WRAP
        r = u.enter(k, k, lib.IORING_ENTER_GETEVENTS)
        if r != k:
            raise OSError(ffi.errno, f"io_uring_enter submitted {r} of {k} NOPs")
        if (cq_words[cti] - cq_words[hi]) % WRAP != k:
            raise RuntimeError(f"expected {k} NOP completions, found {(cq_words[cti] - cq_words[hi]) % WRAP}")
        cq_words[hi] = cq_words[cti]
        now = time.monotonic()
        if now - last > report_every:
            last = now
            done = (tail + k) % WRAP
            print(f"  ... counters at {done:,} ({100 * done / WRAP:.1f}%), {now - t0:.0f} s", flush=True)
    return time.monotonic() - t0


def where(target: int) -> str:
    return f"2**32 - {WRAP - target}" if target > WRAP // 2 else f"{target:,}"


def crosses(target: int, margin: int) -> bool:
    """Whether a run from *target* surely takes the counters past 2**32 (its packets move them by > 4 * margin)."""
    return WRAP - target <= margin


def check_wrapped(before: Dict[str, int], after: Dict[str, int], target: int, margin: int) -> None:
    """The counters wrapped (every one is now below where it was), where this run was to take them there."""
    if crosses(target, margin) and not all(after[key] < before[key] for key in after):
        raise AssertionError(f"the counters did not wrap: {before} -> {after}")


def check_read(dev: Any, sock: socket.socket, margin: int, target: int, seconds: list) -> None:
    ring = dev.packet_ring(256)
    try:
        dev.read_batch(ring)  # makes this thread's read engine for the ring
    except BlockingIOError:
        pass
    engine = harness.engine_of(dev, ring, "read")
    if not isinstance(engine, batch.ReadEngine):
        raise SystemExit(f"the read engine is {type(engine).__name__}, not io_uring's")
    print(f"read engine: {counters(engine.uring)}; advancing to {where(target)} with NOPs ...", flush=True)
    seconds.append(advance(engine, target))
    before = counters(engine.uring)
    flow = soak.Flow(dev)
    sent = 0
    # Enough full batches to take the SQ tail (258 per batch) well past the wrap.
    count = 4 * margin
    while sent < count:
        k = min(2000, count - sent)
        soak.send_datagrams(sock, sent, k)
        sent += k
        deadline = time.monotonic() + soak.ARRIVAL_TIMEOUT
        while flow.expected < sent:
            try:
                dev.read_batch(ring)
            except BlockingIOError:
                soak.wait_readable(flow, sent, deadline)
                continue
            flow.take_ring(ring)
    flow.finish(sent)
    after = counters(engine.uring)
    check_wrapped(before, after, target, margin)
    print(f"read_batch: {sent:,} packets exactly once, in order; counters {before} -> {after}", flush=True)
    ring.close()


def check_write(dev: Any, subnet: str, margin: int, target: int, seconds: list) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((f"{subnet}.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    port = rx.getsockname()[1]
    ring = dev.packet_ring(256)
    try:
        def fill(first: int) -> None:
            for i in range(256):
                pkt = harness.udp4_packet(f"{subnet}.2", f"{subnet}.1", 7000, port, struct.pack("!Q", first + i))
                ring.slot(i)[: len(pkt)] = pkt
                ring.set_length(i, len(pkt))
            ring.count = 256

        fill(0)
        if dev.write_batch(ring) != 256:  # makes the write engine
            raise AssertionError("the first write_batch")
        engine = harness.engine_of(dev, ring, "write")
        if not isinstance(engine, batch.WriteEngine):
            raise SystemExit(f"the write engine is {type(engine).__name__}, not io_uring's")
        got = 0

        def receive(upto: int) -> None:
            nonlocal got
            while got < upto:
                if not select.select([rx], [], [], soak.ARRIVAL_TIMEOUT)[0]:
                    raise AssertionError(f"datagram #{got} of {upto} did not arrive")
                (seq,) = struct.unpack("!Q", rx.recv(64))
                if seq != got:
                    raise AssertionError(f"expected datagram #{got}, got #{seq}")
                got += 1

        receive(256)
        print(f"write engine: {counters(engine.uring)}; advancing to {where(target)} with NOPs ...", flush=True)
        seconds.append(advance(engine, target))
        before = counters(engine.uring)
        written = 256
        while written < 256 + 4 * margin:
            fill(written)
            if dev.write_batch(ring) != 256:
                raise AssertionError("write_batch wrote fewer than 256")
            written += 256
            receive(written)
        after = counters(engine.uring)
        check_wrapped(before, after, target, margin)
        across = "across the wrap" if crosses(target, margin) else f"from {where(target)}"
        print(f"write_batch: {written - 256:,} packets {across}, received exactly once, in order; "
              f"counters {before} -> {after}", flush=True)
    finally:
        ring.close()
        rx.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--only", choices=["read", "write"])
    p.add_argument("--margin", type=int, default=5000, help="how far short of 2**32 the NOPs stop")
    p.add_argument("--subnet", default="198.18.203")
    p.add_argument(
        "--advance-to", type=int,
        help="take the counters only this far with NOPs (default: 2**32 - margin); below that the wrap is "
        "not crossed and not checked, the rest is (a smoke run of this script)",
    )  # fmt: skip
    args = p.parse_args()
    target = WRAP - args.margin if args.advance_to is None else args.advance_to % WRAP
    harness.check_subnet(args.subnet)
    name = f"tt{os.getpid() % 10000}w"
    dev = soak.open_flow_tun(name, args.subnet)
    seconds: list = []
    try:
        with dev, soak.flow_socket(dev, args.subnet) as sock:
            if args.only != "write":
                check_read(dev, sock, args.margin, target, seconds)
            if args.only != "read":
                check_write(dev, args.subnet, args.margin, target, seconds)
    finally:
        if soak.link_exists(name):
            soak.ip("link", "del", name)
    print(f"NOP runs: {', '.join(f'{s:.0f} s' for s in seconds)}")
    print("RESULT: PASS" if crosses(target, args.margin) else f"RESULT: PASS, without the wrap (--advance-to {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
