#!/usr/bin/env python3
"""TUN benchmark: how fast can each method empty a full TUN queue, and fill the kernel?

One run of this script, for each interpreter asked for (CPython, PyPy):

1. makes a TUN interface ``ttbench<pid % 1000>`` with ``tuntap_cffi``
   (non-blocking), IPv6 and IPv4 forwarding off on it, ``txqueuelen``
   400,000, address 198.18.200.1/24 (RFC 2544 benchmarking space), up;
2. for each of ``--runs`` rounds:
   - reads: for each read method, fills the TUN's queue with ``--packets``
     16-byte UDP datagrams to 198.18.200.2 (sent by the compiled ``fill``
     helper, with ``sendmmsg``), checks that the kernel dropped none, then
     times draining the queue with that method;
   - writes: for each write method, times writing ``--write-packets``
     IPv4/UDP packets into the TUN (the same 256 prebuilt packets, cycled,
     for every method) and checks with the interface's ``rx_packets`` that
     the kernel took every one (see ``--write-to`` for where they go);
   - the interleaved comparisons (``--block``): the methods the targets
     compare take turns, a block of packets each, on one full queue (reads)
     and on one stream of writes;
   then ``--paired`` rounds of whole drains (whole write runs) of only the
   batch targets' methods, back to back in a fresh order each round;
3. reports, per method, the median ns/packet and its ratio to the C
   ``read()`` loop (reads) or the C ``write()`` loop (writes) measured in the
   same interpreter's run, and the targets.

Every Python method is timed with ``time.perf_counter_ns`` around its loop
only, with the callable bound to a local first (the usual hot-loop idiom,
applied to every method alike); rings, packet lists and io_uring engines are
made before the clock starts.  The C loops time themselves with
``clock_gettime(CLOCK_MONOTONIC)`` around their loop only.  Every method
is warmed up untimed first; the batch methods for ~1,100 calls (PyPy
compiles a loop after ~1,000 iterations; one call drains 256 packets, so
one 20,000-packet round would leave their first timed drains interpreted),
before the whole drains and again before the interleaved turns.

Each interpreter runs in its own worker process (``--worker``); the parent
compiles the C helpers, picks the interface name, collects the workers'
JSON results and prints the markdown tables.  The interface is removed on
every exit path (the worker's ``finally``, then the parent's check).  The
TUN set-up, fill and checks, the C helpers and the interleaved turns are
the bench harness's (``bench/harness/``), shared with ``bench/diag/``.

Entry point: ``bash bench/run.sh`` (= ``bash bench/setup.sh`` and
``bench/.venv/bin/python bench/drain.py --interp all``).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import gc
import importlib
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for the harness package
from harness import (  # noqa: E402
    BENCH_DIR, BIG_RING, BLOCK, BUF_SIZE, BUILD_DIR, DRAIN_READ, DRAIN_URING, JIT_LOOP_ITERATIONS, REPO_ROOT, RING,
    TXQUEUELEN, WARM_CALLS, WRITE_KINDS, WRITE_LOOP, WRITE_PORT, BenchTun, block_cffi_cached_ptr,
    block_device_readinto, block_os_write, block_read_batch, block_write, block_write_batch, build_helpers,
    check_subnet, counter, delete_interface, implementation, interface_exists, log, shuffled,
)  # fmt: skip
from runinfo import cpu_model, date_text, interpreter, run_metadata, save_results, summarize  # noqa: E402

PYPY_VENV_PYTHON = BENCH_DIR / ".venv-pypy" / "bin" / "python"
PYTUN_PYPY_LOG = BENCH_DIR / ".venv-pypy" / "pytun-install.log"


# (key, label) in table order.
METHODS: List[Tuple[str, str]] = [
    ("c_read", "C `read()` loop (gcc -O2)"),
    ("c_uring", f"C io_uring loop, {RING} READ_FIXED per enter, registered file (gcc -O2): the batch floor"),
    ("c_uring_1024", f"C io_uring loop, {BIG_RING} READ_FIXED per enter, registered file (gcc -O2)"),
    ("read_batch", f"`Device.read_batch(ring)`, io_uring, {RING} slots"),
    ("read_batch_1024", f"`Device.read_batch(ring)`, io_uring, {BIG_RING} slots"),
    ("read_batch_loop", f"`Device.read_batch(ring)`, loop backend, {RING} slots"),
    ("device_readinto", "`Device.readinto(buf)`"),
    ("cffi_cached_ptr", "bare cffi `lib.read(fd, ptr, n)`, cached `from_buffer`"),
    ("os_read", "`os.read(fd, 2048)`"),
    ("fileio_readinto", "`io.FileIO(fd).readinto(buf)`"),
    ("cffi_from_buffer_each", "cffi `lib.read(fd, ffi.from_buffer(buf), n)` per call"),
    ("pytun_read", "python-pytun `TunTapDevice.read(2048)`"),
]

WRITE_METHODS: List[Tuple[str, str]] = [
    ("c_write", "C `write()` loop (gcc -O2)"),
    ("c_uring_write", f"C io_uring loop, {RING} WRITE_FIXED per enter, registered file (gcc -O2)"),
    ("write_batch", f"`Device.write_batch(ring)`, io_uring, {RING} per call"),
    ("write_batch_loop", f"`Device.write_batch(ring)`, loop backend, {RING} per call"),
    ("write_batch_list", f"`Device.write_batch(list of {RING} bytes)`"),
    ("device_write", "`Device.write(pkt)`"),
    ("os_write", "`os.write(fd, pkt)`"),
]

# Methods that need io_uring (reported n/a with the reason where it is unusable).
URING_METHODS = {"c_uring", "c_uring_1024", "read_batch", "read_batch_1024", "c_uring_write", "write_batch"}
# The methods that take turns in the interleaved comparisons (those asked for).
INTERLEAVED = ("c_read", "device_readinto", "cffi_cached_ptr", "read_batch", "c_uring")
INTERLEAVED_WRITES = ("c_write", "c_uring_write", "write_batch", "device_write", "os_write")
# The methods of the paired whole drains (--paired): those the batch targets compare.
PAIRED = ("c_read", "c_uring", "read_batch")
PAIRED_WRITES = ("c_write", "write_batch")

Trial = Dict[str, Any]  # one fill + drain: method, run, count, ns, sender checks


# --------------------------------------------------------------------------
# The drain loops.  Each returns (packets read, nanoseconds in the loop).
# --------------------------------------------------------------------------


def drain_device_readinto(dev: Any, buf: bytearray) -> Tuple[int, int]:
    readinto = dev.readinto
    n = 0
    t0 = time.perf_counter_ns()
    try:
        while True:
            readinto(buf)
            n += 1
    except BlockingIOError:
        pass
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_cffi_cached_ptr(fd: int, buf: bytearray) -> Tuple[int, int]:
    from tuntap_cffi._syscalls import ffi, lib

    read = lib.read
    ptr = ffi.from_buffer(buf)
    size = len(buf)
    n = 0
    t0 = time.perf_counter_ns()
    while read(fd, ptr, size) > 0:
        n += 1
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_os_read(fd: int) -> Tuple[int, int]:
    read = os.read
    n = 0
    t0 = time.perf_counter_ns()
    try:
        while True:
            read(fd, BUF_SIZE)
            n += 1
    except BlockingIOError:
        pass
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_fileio_readinto(fd: int, buf: bytearray) -> Tuple[int, int]:
    readinto = io.FileIO(fd, "rb", closefd=False).readinto
    n = 0
    t0 = time.perf_counter_ns()
    while readinto(buf):  # None on EAGAIN (0 would be end of file)
        n += 1
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_cffi_from_buffer_each(fd: int, buf: bytearray) -> Tuple[int, int]:
    from tuntap_cffi._syscalls import ffi, lib

    read = lib.read
    from_buffer = ffi.from_buffer
    size = len(buf)
    n = 0
    t0 = time.perf_counter_ns()
    while read(fd, from_buffer(buf), size) > 0:
        n += 1
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_pytun_read(tun: Any, pytun_error: Type[OSError]) -> Tuple[int, int]:
    read = tun.read
    n = 0
    t0 = time.perf_counter_ns()
    try:
        while True:
            read(BUF_SIZE)
            n += 1
    except pytun_error as exc:  # pytun.Error, not BlockingIOError
        if exc.errno != errno.EAGAIN:
            raise
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_c_read(fd: int) -> Tuple[int, int]:
    proc = subprocess.run(
        [str(DRAIN_READ), str(fd)], pass_fds=(fd,), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{DRAIN_READ.name} failed: {proc.stderr.strip()}")
    count, ns = proc.stdout.split()
    return int(count), int(ns)


def drain_read_batch(dev: Any, ring: Any) -> Tuple[int, int]:
    read_batch = dev.read_batch
    n = 0
    t0 = time.perf_counter_ns()
    try:
        while True:
            n += read_batch(ring)
    except BlockingIOError:
        pass
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def drain_c_uring(fd: int, entries: int, slot_size: int) -> Tuple[int, int]:
    proc = subprocess.run(
        [str(DRAIN_URING), str(fd), str(entries), str(slot_size)],
        pass_fds=(fd,), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{DRAIN_URING.name} failed: {proc.stderr.strip()}")
    count, ns = proc.stdout.split()
    return int(count), int(ns)


# --------------------------------------------------------------------------
# The write loops.  Each writes *count* packets, cycling through the same
# WRITE_KINDS prebuilt packets, and returns (packets written, nanoseconds).
# --------------------------------------------------------------------------


def write_c_program(cmd: List[str], fd: int, blob: bytes) -> Tuple[int, int]:
    proc = subprocess.run(cmd, input=blob, pass_fds=(fd,), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {proc.stderr.decode(errors='replace').strip()}")
    count, ns = proc.stdout.split()
    return int(count), int(ns)


def write_batch_ring(dev: Any, ring: Any, count: int) -> Tuple[int, int]:
    write_batch = dev.write_batch
    full, rest = divmod(count, ring.slots)
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(full):
        n += write_batch(ring)
    if rest:
        n += write_batch(ring, rest)
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def write_batch_list(dev: Any, packets: List[bytes], count: int) -> Tuple[int, int]:
    write_batch = dev.write_batch
    full, rest = divmod(count, len(packets))
    n = 0
    t0 = time.perf_counter_ns()
    for _ in range(full):
        n += write_batch(packets)
    if rest:
        n += write_batch(packets, rest)
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def write_device(dev: Any, sequence: List[bytes]) -> Tuple[int, int]:
    write = dev.write
    n = 0
    t0 = time.perf_counter_ns()
    for packet in sequence:
        write(packet)
        n += 1
    t1 = time.perf_counter_ns()
    return n, t1 - t0


def write_os(fd: int, sequence: List[bytes]) -> Tuple[int, int]:
    write = os.write
    n = 0
    t0 = time.perf_counter_ns()
    for packet in sequence:
        write(fd, packet)
        n += 1
    t1 = time.perf_counter_ns()
    return n, t1 - t0


# --------------------------------------------------------------------------
# Warm-up.  (The interleaved comparisons' turns are in harness/turns.py.)
# --------------------------------------------------------------------------


def warmup_counts(method: str, packets: int, jit_calls: int = JIT_LOOP_ITERATIONS) -> List[int]:
    """Packets of the warm-up trials of *method*: one trial of *packets*, or for a batch method enough
    batches (*jit_calls*) for PyPy to compile its drain loop (~1,000 iterations, counted across calls), in
    trials the TUN queue can hold."""
    if not method.startswith(("read_batch", "write_batch")) or method.endswith(("_loop", "_list")):
        return [packets]
    total = max(packets, jit_calls * (BIG_RING if method.endswith("_1024") else RING))
    per_trial = TXQUEUELEN // 2
    return [min(per_trial, total - done) for done in range(0, total, per_trial)]


# --------------------------------------------------------------------------
# The worker: one interpreter, one interface, every method.
# --------------------------------------------------------------------------


class Worker(BenchTun):
    """The harness's TUN, drained with each read method and written into with each write method."""

    def __init__(
        self, name: str, subnet: str, packets: int, payload: int, write_to: str = "broadcast"
    ) -> None:
        super().__init__(name, subnet, packets, payload, write_to)
        self.pytun: Any = None
        self.pytun_note = ""
        self.rings: Dict[str, Any] = {}
        self.warm_reads = self.warm_writes = False  # warm_turns done for the interleaved read / write rounds
        try:
            self.pytun = importlib.import_module("pytun")  # a C extension without type hints
        except ImportError as exc:
            self.pytun_note = pytun_missing_reason(exc)

    # ---- reads

    def ring(self, key: str) -> Any:
        """The PacketRing of a read_batch method, made once per worker."""
        if key not in self.rings:
            self.rings[key] = self.dev.packet_ring(BIG_RING if key.endswith("_1024") else RING)
        return self.rings[key]

    def trial(self, method: str, count: int) -> Tuple[int, int, Dict[str, int]]:
        """Fill the queue, drain it with *method*; return (packets, ns, sender report)."""
        if method == "pytun_read":
            return self.pytun_trial(count)
        strays = self.drain_leftovers()
        ring = None
        if method.startswith("read_batch"):
            ring = self.ring(method)
            self.use_backend("loop" if method == "read_batch_loop" else "io_uring")
            strays += self.prime_read_batch(ring)
        tx_before = counter(self.name, "tx_packets")
        report = self.fill(count)
        report["strays_before"] = strays
        fd = self.dev.fileno()
        gc.collect()
        n, ns = self.drain(method, fd, ring)
        # Packets the kernel queued to the TUN beyond the fill's: traffic from elsewhere on the box.
        report["foreign"] = counter(self.name, "tx_packets") - tx_before - report["sent"]
        return n, ns, report

    def drain(self, method: str, fd: int, ring: Any) -> Tuple[int, int]:
        """Drain the filled queue with *method*: (packets, ns)."""
        if method == "c_read":
            n, ns = drain_c_read(fd)
        elif method == "c_uring":
            n, ns = drain_c_uring(fd, RING, self.dev.max_packet_size)
        elif method == "c_uring_1024":
            n, ns = drain_c_uring(fd, BIG_RING, self.dev.max_packet_size)
        elif ring is not None:
            n, ns = drain_read_batch(self.dev, ring)
        elif method == "device_readinto":
            n, ns = drain_device_readinto(self.dev, self.buf)
        elif method == "cffi_cached_ptr":
            n, ns = drain_cffi_cached_ptr(fd, self.buf)
        elif method == "os_read":
            n, ns = drain_os_read(fd)
        elif method == "fileio_readinto":
            n, ns = drain_fileio_readinto(fd, self.buf)
        elif method == "cffi_from_buffer_each":
            n, ns = drain_cffi_from_buffer_each(fd, self.buf)
        else:
            raise ValueError(method)
        return n, ns

    def pytun_trial(self, count: int) -> Tuple[int, int, Dict[str, int]]:
        """The same interface, attached by pytun itself.

        A plain TUN takes one fd at a time, so the Device makes the interface
        persistent and lets go; pytun attaches (TUNSETIFF on the existing
        name: address, route, txqueuelen and up state stay); afterwards the
        Device re-attaches and clears persistence again.
        """
        pytun = self.pytun
        self.drain_leftovers()
        self.dev.persistent = True
        self.dev.close()
        self.dev = None
        tun = pytun.TunTapDevice(name=self.name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
        try:
            fd = tun.fileno()
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            strays, _ = drain_pytun_read(tun, pytun.Error)
            tx_before = counter(self.name, "tx_packets")
            report = self.fill(count)
            report["strays_before"] = strays
            gc.collect()
            n, ns = drain_pytun_read(tun, pytun.Error)
            report["foreign"] = counter(self.name, "tx_packets") - tx_before - report["sent"]
        finally:
            tun.close()
            self.dev = self.open_tun(self.name, nonblocking=True, persist=False)
        return n, ns, report

    def interleaved(self, count: int, block: int, keys: Sequence[str]) -> List[Dict[str, int]]:
        """Fill once, then drain in turns of *block* packets per method.

        Returns one dict per round (each method once, in a fresh order each round):
        method -> nanoseconds for its *block* packets.
        """
        from tuntap_cffi._syscalls import ffi, lib

        clibs = self.c_libs()
        self.drain_leftovers()
        fd, dev, buf = self.dev.fileno(), self.dev, self.buf
        read, ptr, size = lib.read, ffi.from_buffer(buf), len(buf)
        ring = self.ring("read_batch")
        if "read_batch" in keys:
            self.use_backend("io_uring")
            self.prime_read_batch(ring)
        uring = clibs.new_uring(fd, RING, self.dev.max_packet_size, False) if "c_uring" in keys else None
        if "read_batch" in keys and not self.warm_reads:
            self.warm_turns(lambda: block_read_batch(dev, ring, block), block, fill=True)
            self.warm_reads = True
        self.fill(count)
        turns: Dict[str, Callable[[], int]] = {
            "c_read": lambda: clibs.read_block(fd, ptr, size, block),
            "device_readinto": lambda: block_device_readinto(dev, buf, block),
            "cffi_cached_ptr": lambda: block_cffi_cached_ptr(read, fd, ptr, size, block),
            "read_batch": lambda: block_read_batch(dev, ring, block),
            "c_uring": lambda: clibs.uring_read_block(uring, block),
        }
        rounds = []
        keys = list(keys)
        gc.collect()
        for i in range(count // (block * len(keys))):
            order = shuffled(keys, i)
            rounds.append({key: turns[key]() for key in order})
        self.drain_leftovers()
        if uring is not None:
            clibs.ffi.release(uring)  # uring_free now, not whenever PyPy's GC runs
        return rounds

    # ---- writes

    def write_trial(self, method: str, count: int) -> Tuple[int, int, Dict[str, int]]:
        """Write *count* packets with *method*; return (packets, ns, counter report)."""
        packets, ring, dev = self.write_packets, self.write_ring, self.dev
        fd = dev.fileno()
        strays = self.drain_leftovers()
        if method in ("write_batch", "write_batch_loop"):
            self.use_backend("loop" if method == "write_batch_loop" else "io_uring")
            dev.write_batch(ring, 1)  # makes the engine; before the counters are read
        full, rest = divmod(count, len(packets))
        sequence = packets * full + packets[:rest] if method in ("device_write", "os_write") else []
        blob = b"".join(packets)
        before = self.write_checks_before()
        gc.collect()
        if method == "c_write":
            n, ns = write_c_program([str(WRITE_LOOP), str(fd), str(count), str(len(packets[0]))], fd, blob)
        elif method == "c_uring_write":
            cmd = [str(DRAIN_URING), "-w", str(fd), str(RING), str(ring.slot_size), str(count), str(len(packets[0]))]
            n, ns = write_c_program(cmd, fd, blob)
        elif method in ("write_batch", "write_batch_loop"):
            n, ns = write_batch_ring(dev, ring, count)
        elif method == "write_batch_list":
            n, ns = write_batch_list(dev, packets, count)
        elif method == "device_write":
            n, ns = write_device(dev, sequence)
        elif method == "os_write":
            n, ns = write_os(fd, sequence)
        else:
            raise ValueError(method)
        report = self.write_checks_after(before, count)
        report["strays_before"] = strays
        return n, ns, report

    def interleaved_writes(self, count: int, block: int, keys: Sequence[str]) -> Tuple[List[Dict[str, int]], Dict[str, int]]:
        """Write *count* packets in turns of *block* per method; rounds as for :meth:`interleaved`."""
        from tuntap_cffi._syscalls import ffi

        clibs = self.c_libs()
        packets, ring, dev = self.write_packets, self.write_ring, self.dev
        fd = dev.fileno()
        blob = b"".join(packets)
        blob_ptr = ffi.from_buffer(blob)
        size = len(packets[0])
        # block is a multiple of RING, so every turn writes the packets in the same cyclic order.
        sequence = packets * (block // len(packets)) + packets[: block % len(packets)]
        uring = None
        if "c_uring_write" in keys:
            uring = clibs.new_uring(fd, RING, ring.slot_size, True)
            if clibs.uring.uring_load(uring, clibs.ffi.cast("const unsigned char *", blob_ptr), size, len(packets)) < 0:
                raise RuntimeError("uring_load refused the packets")
        if "write_batch" in keys:
            self.use_backend("io_uring")
            dev.write_batch(ring, 1)  # the engine, before the counters
        c_blob = clibs.ffi.from_buffer(blob)
        turns: Dict[str, Callable[[], int]] = {
            "c_write": lambda: clibs.write_block(fd, c_blob, size, len(packets), block),
            "c_uring_write": lambda: clibs.uring_write_block(uring, block),
            "write_batch": lambda: block_write_batch(dev, ring, block),
            "device_write": lambda: block_write(dev.write, sequence),
            "os_write": lambda: block_os_write(fd, sequence),
        }
        keys = list(keys)
        rounds = []
        if "write_batch" in keys and not self.warm_writes:
            self.warm_turns(lambda: block_write_batch(dev, ring, block), block, fill=False)
            self.warm_writes = True
        self.drain_leftovers()
        before = self.write_checks_before()
        gc.collect()
        for i in range(count // (block * len(keys))):
            order = shuffled(keys, i)
            rounds.append({key: turns[key]() for key in order})
        report = self.write_checks_after(before, len(rounds) * len(keys) * block)
        if uring is not None:
            clibs.ffi.release(uring)
        return rounds, report

def pytun_missing_reason(exc: ImportError) -> str:
    """Why pytun cannot be imported here, from the setup script's install log if any."""
    if implementation() == "pypy" and PYTUN_PYPY_LOG.exists():
        lines = [ln.strip() for ln in PYTUN_PYPY_LOG.read_text(errors="replace").splitlines()]
        # The compiler's "fatal error: Python.h ..." says more than pip's summary lines.
        errors = [ln for ln in lines if "fatal error" in ln] or [ln for ln in lines if "error" in ln.lower()]
        if errors:
            return f"`pip install python-pytun` failed on PyPy: {errors[0][:160]}"
    return f"python-pytun not importable ({exc}); run bench/setup.sh"


def worker_main(args: argparse.Namespace) -> None:
    """Run every trial on this interpreter; print the results as one JSON line."""
    import tuntap_cffi  # the working tree's: harness put the repository first on sys.path
    from tuntap_cffi import batch

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    interp = implementation()
    worker = Worker(args.name, args.subnet, args.packets, args.payload, args.write_to)
    worker.warm_calls = args.warm_calls
    uring_ok, uring_why = batch.uring_status()
    notes: Dict[str, str] = {}
    if worker.pytun is None:
        notes["pytun_read"] = worker.pytun_note
    if not uring_ok:
        for m in URING_METHODS:
            notes[m] = f"io_uring unusable here: {uring_why}"
    methods = [m for m in args.methods if m not in notes]
    write_methods = [m for m in args.write_methods if m not in notes]
    inter_keys = [m for m in INTERLEAVED if m in methods]
    inter_write_keys = [m for m in INTERLEAVED_WRITES if m in write_methods]
    trials: List[Trial] = []
    write_trials: List[Trial] = []
    interleaved: List[Dict[str, int]] = []
    interleaved_writes: List[Dict[str, int]] = []
    interleaved_write_checks: List[Dict[str, int]] = []
    paired: List[Trial] = []
    paired_writes: List[Trial] = []
    paired_keys = [m for m in PAIRED if m in methods]
    paired_write_keys = [m for m in PAIRED_WRITES if m in write_methods]
    started = time.monotonic()
    try:
        worker.create()
        if write_methods:
            worker.prepare_writes()
        # Warm-up: let the JIT (PyPy) and the specializing interpreter (CPython) settle.
        for method in methods:
            for count in warmup_counts(method, args.warmup_packets, args.jit_calls):
                worker.trial(method, count)
        for method in write_methods:
            for count in warmup_counts(method, args.warmup_packets, args.jit_calls):
                worker.write_trial(method, count)
        for run in range(args.runs):
            # Rotate the order so that no method always runs first or last in a round.
            order = methods[run % len(methods) :] + methods[: run % len(methods)]
            line = []
            for method in order:
                n, ns, report = worker.trial(method, args.packets)
                trials.append({"method": method, "run": run, "count": n, "ns": ns, **report})
                line.append(f"{method} {ns / max(n, 1):.0f}")
            log(f"  {interp} round {run + 1}/{args.runs}, reads (ns/pkt): " + ", ".join(line))
            if write_methods:
                order = write_methods[run % len(write_methods) :] + write_methods[: run % len(write_methods)]
                line = []
                for method in order:
                    n, ns, report = worker.write_trial(method, args.write_packets)
                    write_trials.append({"method": method, "run": run, "count": n, "ns": ns, **report})
                    line.append(f"{method} {ns / max(n, 1):.0f}")
                log(f"  {interp} round {run + 1}/{args.runs}, writes (ns/pkt): " + ", ".join(line))
            if args.block:
                if len(inter_keys) > 1:
                    interleaved += worker.interleaved(args.packets, args.block, inter_keys)
                if len(inter_write_keys) > 1:
                    rounds, check = worker.interleaved_writes(args.write_packets, args.block, inter_write_keys)
                    interleaved_writes += rounds
                    interleaved_write_checks.append(check)
        # Paired whole drains: the batch targets' methods back to back, a
        # fresh order each round, so each round's ratio compares drains a
        # few seconds apart (a round of all the methods spans ~30 s).
        for run in range(args.paired):
            for keys, out, trial, what in (
                (paired_keys, paired, worker.trial, "reads"),
                (paired_write_keys, paired_writes, worker.write_trial, "writes"),
            ):
                if len(keys) < 2:
                    continue
                line = []
                for method in shuffled(keys, run):
                    n, ns, report = trial(method, args.packets if what == "reads" else args.write_packets)
                    out.append({"method": method, "run": run, "count": n, "ns": ns, **report})
                    line.append(f"{method} {ns / max(n, 1):.0f}")
                log(f"  {interp} paired {run + 1}/{args.paired}, {what} (ns/pkt): " + ", ".join(line))
    finally:
        worker.close()

    import cffi

    result = {
        "interp": interp,
        "version": " ".join(sys.version.split()),
        "cffi": cffi.__version__,
        "pytun": package_version("python-pytun") if worker.pytun is not None else None,
        "notes": notes,
        "uring": uring_why,
        "tuntap_cffi": str(Path(tuntap_cffi.__file__).parent),
        "packets": args.packets,
        "seconds": round(time.monotonic() - started, 1),
        "trials": trials,
        "write_trials": write_trials,
        "write_packet_len": len(worker.write_packets[0]) if worker.write_packets else 0,
        "block": args.block,
        "interleaved": interleaved,
        "interleaved_writes": interleaved_writes,
        "interleaved_write_checks": interleaved_write_checks,
        "paired": paired,
        "paired_writes": paired_writes,
    }
    # To a file the parent named, not stdout: once a worker's JSON line
    # (~70 KB) reached the parent cut at 64 KiB, exit status 0 (not reproduced).
    Path(args.result_file).write_text(json.dumps(result))


def package_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - any failure just means "unknown"
        return "?"


# --------------------------------------------------------------------------
# The parent: build, run the workers, print the table.
# --------------------------------------------------------------------------


def find_interpreter(interp: str) -> Optional[str]:
    """The interpreter of *interp*'s worker: the running one if it is of that kind, else PyPy's venv or pypy3."""
    if interp == implementation():
        return sys.executable
    if interp == "cpython":
        return None
    if PYPY_VENV_PYTHON.exists():
        return str(PYPY_VENV_PYTHON)
    for candidate in ("/usr/bin/pypy3", "pypy3"):
        if subprocess.run(["sh", "-c", f"command -v {candidate}"], capture_output=True).returncode == 0:
            return candidate
    return None


def run_worker(python: str, name: str, args: argparse.Namespace) -> Dict[str, Any]:
    BUILD_DIR.mkdir(exist_ok=True)
    result = BUILD_DIR / f"worker-{os.getpid()}-{Path(python).parent.parent.name}.json"
    result.unlink(missing_ok=True)
    cmd = [
        python, str(Path(__file__).resolve()), "--worker", "--name", name, "--subnet", args.subnet,
        "--packets", str(args.packets), "--warmup-packets", str(args.warmup_packets),
        "--jit-calls", str(args.jit_calls), "--warm-calls", str(args.warm_calls),
        "--runs", str(args.runs), "--payload", str(args.payload), "--block", str(args.block),
        "--write-packets", str(args.write_packets), "--write-to", args.write_to, "--paired", str(args.paired),
        "--methods", *args.methods, "--write-methods", *args.write_methods, "--result-file", str(result),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=sys.stderr)  # its stdout is not the table
    try:
        proc.wait()
    except BaseException:  # Ctrl-C reaches the worker too: give it time to clean up
        try:
            proc.wait(timeout=10)
        except BaseException:
            proc.kill()
            proc.wait()
        raise
    finally:
        delete_interface(name)
    if proc.returncode != 0:
        raise SystemExit(f"the {python} worker failed (exit {proc.returncode})")
    try:
        return json.loads(result.read_text())  # type: ignore[no-any-return]
    finally:
        result.unlink(missing_ok=True)


WRITE_TO = {
    "broadcast": "to {subnet}.255:{port}, the broadcast address of the TUN's own /24, where no socket is bound: "
    "the kernel takes its local broadcast route and frees the packet at the UDP socket lookup "
    "(no ICMP is ever sent for a broadcast)",
    "offlink": "to {subnet}.3, on the TUN's /24 but not this host's, with IPv4 forwarding off on the "
    "interface: the input route lookup fails and ip_error() frees the packet (no ICMP when not forwarding)",
    "socket": "to {subnet}.1, the TUN's own address, on the port of a bound UDP socket that nobody reads, "
    "SO_RCVBUF at the kernel's minimum: freed at the full socket (UDP RcvbufErrors)",
}

# (method, base, {interpreter: limit on the time ratio method/base}, what the target says)
TARGETS: List[Tuple[str, str, Dict[str, float], str]] = [
    ("read_batch", "c_read", {"cpython": 1.0, "pypy": 1.0}, "`read_batch` >= 1.0x the C `read()` loop's packets/s"),
    ("read_batch", "c_uring", {"cpython": 1.1, "pypy": 1.1}, "`read_batch` within 10% of the C io_uring floor"),
    ("write_batch", "c_write", {"cpython": 1.0, "pypy": 1.0}, "`write_batch` >= 1.0x the C `write()` loop's packets/s"),
    ("device_readinto", "cffi_cached_ptr", {"cpython": 1.15}, "`Device.readinto` <= 1.15x the bare cffi call (CPython)"),
    ("device_readinto", "c_read", {"pypy": 1.3}, "`Device.readinto` <= 1.3x the C `read()` loop (PyPy)"),
]


def wide_table(
    results: List[Dict[str, Any]], summaries: Dict[str, Dict[str, Any]], methods: List[Tuple[str, str]],
    base: str, wanted: Sequence[str], names: Dict[str, str],
) -> None:  # fmt: skip
    """One row per method, ns/pkt and ratio to *base* per interpreter."""
    head = "| method |" + "".join(f" {names[r['interp']]} ns/pkt | {names[r['interp']]} ratio |" for r in results)
    print(head)
    print("| --- |" + " ---: | ---: |" * len(results))
    for key, label in methods:
        if key not in wanted:
            continue
        cells = []
        for r in results:
            s = summaries[r["interp"]]
            if key in s and base in s:
                cells.append(f" {s[key]['median']:.0f} | {s[key]['median'] / s[base]['median']:.2f}x |")
            else:
                cells.append(" n/a | n/a |")
        bold = key in ("read_batch", "write_batch")
        print(f"| {'**' + label + '**' if bold else label} |" + "".join(cells))
    notes = sorted({f"{names[r['interp']]}: {key}: {r['notes'][key]}" for r in results for key in r["notes"] if key in wanted})
    for note in notes:
        print(f"\nn/a — {note}")


def detail_table(results: List[Dict[str, Any]], summaries: Dict[str, Dict[str, Any]], methods: List[Tuple[str, str]],
                 base: str, unit: str, names: Dict[str, str], runs: int) -> None:  # fmt: skip
    print(f"| method | interpreter | ns/pkt (median of {runs}) | ratio | ns/pkt min–max | packets {unit} per run |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in results:
        s = summaries[r["interp"]]
        for key, label in methods:
            if key not in s or base not in s:
                continue
            m = s[key]
            lo, hi = min(m["counts"]), max(m["counts"])
            counts = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
            print(
                f"| {label} | {names[r['interp']]} | {m['median']:.0f} | {m['median'] / s[base]['median']:.2f}x "
                f"| {m['min']:.0f}–{m['max']:.0f} | {counts} |"
            )


def interleaved_table(
    results: List[Dict[str, Any]], key: str, methods: List[Tuple[str, str]], base: str, what: str, block: int,
    names: Dict[str, str],
) -> None:  # fmt: skip
    """Per method: median ns/pkt over the turns, and the median of the per-round ratios to *base*."""
    rounds = {r["interp"]: r[key] for r in results if r[key]}
    counts = ", ".join(f"{names[i]} {len(v)}" for i, v in rounds.items())
    print(f"\nInterleaved, {what}: turns of {block} packets, rounds: {counts}; ratio = median of the per-round ratios.\n")
    print("| method |" + "".join(f" {names[i]} ns/pkt | {names[i]} ratio [quartiles] |" for i in rounds))
    print("| --- |" + " ---: | ---: |" * len(rounds))
    for m, label in methods:
        cells = []
        for v in rounds.values():
            if m not in v[0] or base not in v[0]:
                cells.append(" n/a | n/a |")
                continue
            q1, med, q3 = statistics.quantiles(sorted(t[m] / t[base] for t in v), n=4)
            cells.append(f" {statistics.median(t[m] for t in v) / block:.0f} | {med:.2f}x [{q1:.2f}–{q3:.2f}] |")
        print(f"| {label} |" + "".join(cells))


def spread(ratios: List[float]) -> str:
    """'median [quartiles] over N rounds' of some per-round ratios."""
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}x, 1 round"
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return f"{med:.2f}x [{q1:.2f}–{q3:.2f}] over {len(ratios)} rounds"


def print_report(results: List[Dict[str, Any]], gcc: str, args: argparse.Namespace, meta: Dict[str, Any]) -> None:
    names = {"cpython": "CPython", "pypy": "PyPy"}
    packets, runs = args.packets, args.runs
    reads = {r["interp"]: summarize(r["trials"]) for r in results}
    writes = {r["interp"]: summarize(r["write_trials"]) for r in results}
    plen = max((r["write_packet_len"] for r in results), default=0)
    print(f"\n## TUN benchmark: median of {runs} runs per method and interpreter\n")
    print(f"### Reads: draining {packets:,} queued {args.payload}-byte UDP datagrams\n")
    print("Ratio: ns/pkt over the C `read()` loop's, same interpreter's run (below 1.00 is faster).\n")
    wide_table(results, reads, METHODS, "c_read", args.methods, names)
    if args.write_methods:
        print(f"\n### Writes: {args.write_packets:,} IPv4/UDP packets of {plen} bytes written into the TUN\n")
        print(
            "Ratio: ns/pkt over the C `write()` loop's.  The packets go "
            + WRITE_TO[args.write_to].format(subnet=args.subnet, port=WRITE_PORT)
            + f"; the same {WRITE_KINDS} packets (source ports 40000–{40000 + WRITE_KINDS - 1}) cycled by every method; "
            f"write_batch: {args.write_packets // RING} full rings and one of {args.write_packets % RING}.\n"
        )
        wide_table(results, writes, WRITE_METHODS, "c_write", args.write_methods, names)

    print("\n### Targets\n")
    print(
        "Time ratio method/base (<= 1.00 means at least as many packets/s).  Whole runs: ratio of the "
        "medians above, and within each round.  Interleaved: the methods take turns, "
        f"{args.block} packets each, on one full queue (reads) or one stream of writes; median and "
        "quartiles of the per-round ratios (robust to the box's slow phases).\n"
    )
    print(
        f"Paired: the batch targets' methods drain (write) back to back, whole runs of {packets:,} packets, "
        f"a fresh order each of {args.paired} rounds; median and quartiles of the per-round ratios.\n"
    )
    paired = {r["interp"]: {**summarize(r.get("paired", [])), **summarize(r.get("paired_writes", []))} for r in results}
    print("| target | interpreter | limit | whole runs | per round | paired whole runs: median [quartiles] "
          "| interleaved: median [quartiles] | verdict |")
    print("| --- | --- | ---: | ---: | --- | --- | --- | --- |")
    for method, base, limits, text in TARGETS:
        for r in results:
            interp = r["interp"]
            if interp not in limits:
                continue
            limit = limits[interp]
            s = {**reads[interp], **writes[interp]}
            if method not in s or base not in s:
                print(f"| {text} | {names[interp]} | <= {limit:.2f} | n/a | | | | not measured |")
                continue
            whole = s[method]["median"] / s[base]["median"]
            per_round = [s[method]["per_pkt"][k] / s[base]["per_pkt"][k] for k in sorted(s[method]["per_pkt"])]
            verdicts = ["whole " + ("met" if whole <= limit else "**NOT met**")]
            pair = "n/a"
            p = paired[interp]
            if method in p and base in p:
                ratios = sorted(p[method]["per_pkt"][k] / p[base]["per_pkt"][k] for k in p[method]["per_pkt"])
                pair = spread(ratios)
                verdicts.append("paired " + ("met" if statistics.median(ratios) <= limit else "**NOT met**"))
            inter = "n/a"
            rounds = r["interleaved"] if method in INTERLEAVED else r["interleaved_writes"]
            if rounds and method in rounds[0] and base in rounds[0]:
                ratios = sorted(t[method] / t[base] for t in rounds)
                inter = spread(ratios)
                verdicts.append("interleaved " + ("met" if statistics.median(ratios) <= limit else "**NOT met**"))
            print(
                f"| {text} | {names[interp]} | <= {limit:.2f} | **{whole:.2f}x** "
                f"| {', '.join(f'{x:.2f}' for x in per_round)} | {pair} | {inter} | {'; '.join(verdicts)} |"
            )
    for key, keys, methods, base, what in (
        ("interleaved", INTERLEAVED, METHODS, "c_read", "reads, on one full queue"),
        ("interleaved_writes", INTERLEAVED_WRITES, WRITE_METHODS, "c_write", "writes, in one stream"),
    ):
        if any(r[key] for r in results):
            interleaved_table(results, key, [(k, label) for k, label in methods if k in keys], base, what, args.block, names)

    print("\n### Details: spread and counts\n")
    detail_table(results, reads, METHODS, "c_read", "drained", names, runs)
    if args.write_methods:
        print()
        detail_table(results, writes, WRITE_METHODS, "c_write", "written (= rx_packets increase)", names, runs)

    print("\n### Checks\n")
    for r in results:
        name = names[r["interp"]]
        trials = r["trials"] + r.get("paired", [])
        extra = sorted({t["count"] - t["sent"] for t in trials})
        foreign = [t["foreign"] for t in trials if t["foreign"]]
        if max(abs(x) for x in extra) > 10:
            print(
                f"- **WARNING**: {name} drained counts differ from the packets sent by up to {extra}; "
                f"packets from elsewhere queued to the TUN during timed trials: {foreign or 'none'}"
            )
        print(
            f"- {name}, reads: {len(trials)} timed fills of {packets:,} (paired ones included; plus warm-up and interleaved "
            f"fills, checked alike), each sent in full with "
            f"MSG_DONTWAIT; EAGAIN {sum(t['eagain'] for t in trials)} times; kernel drops "
            f"{sum(t['dropped'] for t in trials)}; socket SIOCOUTQ after a fill: max "
            f"{max(t['outq'] for t in trials)} B (SO_SNDBUF {trials[0]['sndbuf']} B: the TUN orphans "
            f"queued skbs); drained minus sent: {extra}; packets from elsewhere queued to the TUN "
            f"during a timed trial (its tx_packets rise beyond the fill): {sum(foreign)} in {len(foreign)} "
            f"trials; stray packets found before fills: {sum(t['strays_before'] for t in trials)}; "
            f"worker time {r['seconds']} s"
        )
        wt = r["write_trials"] + r.get("paired_writes", [])
        if wt:
            checks = wt + r["interleaved_write_checks"]
            print(
                f"- {name}, writes: {len(wt)} timed runs of {args.write_packets:,} (paired ones included; plus warm-up and "
                f"{len(r['interleaved_write_checks'])} interleaved runs): the TUN's rx_packets rose by exactly "
                f"the packets written every time (checked; it aborts otherwise), rx_dropped+rx_errors "
                f"{sum(c['rx_dropped'] for c in checks)}; packets the kernel sent into the TUN meanwhile "
                f"(tx_packets) {sum(c['tx'] for c in checks)}, found queued afterwards "
                f"{sum(c['replies'] for c in checks)}; io_uring: {r['uring']}"
            )

    print("\n### Environment\n")
    versions = "; ".join(
        f"{names[r['interp']]} {r['version']} (cffi {r['cffi']}, python-pytun {r['pytun'] or 'n/a'})"
        for r in results
    )
    print(
        f"Linux {platform.release()} {platform.machine()}, {cpu_model()} x{os.cpu_count()}; "
        f"{versions}; {gcc}; tuntap_cffi at {git_state()}; {date_text(meta)}"
    )


def git_state() -> str:
    """The commit the working tree's tuntap_cffi is at, marked if it has local changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" + local changes" if git("status", "--porcelain", "--", "tuntap_cffi") else "")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--interp", choices=["all", "cpython", "pypy"], default="all")
    p.add_argument("--packets", type=int, default=300_000, help="datagrams queued per fill")
    p.add_argument("--write-packets", type=int, default=300_000, help="packets written per write run")
    p.add_argument("--runs", type=int, default=5, help="timed rounds (the median is reported)")
    p.add_argument(
        "--paired", type=int, default=11,
        help="rounds of paired whole drains (the batch targets' methods back to back; 0: skip them)",
    )  # fmt: skip
    p.add_argument("--warmup-packets", type=int, default=20_000, help="one untimed round first")
    p.add_argument(
        "--jit-calls", type=int, default=JIT_LOOP_ITERATIONS,
        help="untimed calls of each batch method before the whole drains (PyPy's JIT threshold; small: a smoke run)",
    )  # fmt: skip
    p.add_argument(
        "--warm-calls", type=int, default=WARM_CALLS,
        help="untimed calls of each batch method, in whole turns, before the interleaved rounds",
    )  # fmt: skip
    p.add_argument("--payload", type=int, default=16, help="UDP payload bytes")
    p.add_argument(
        "--block", type=int, default=BLOCK,
        help=f"packets per turn in the interleaved comparisons, a multiple of {RING} (0: skip them)",
    )  # fmt: skip
    p.add_argument("--subnet", default="198.18.200", help="the TUN's /24, inside 198.18.0.0/15")
    p.add_argument(
        "--write-to", choices=list(WRITE_TO), default="broadcast",
        help="where the written packets go: the subnet's broadcast address with no socket on the port "
        "(default), an off-link address of the subnet with forwarding off, or a never-read local socket",
    )  # fmt: skip
    p.add_argument("--methods", nargs="+", default=[k for k, _ in METHODS], choices=[k for k, _ in METHODS])
    p.add_argument(
        "--write-methods", nargs="*", default=[k for k, _ in WRITE_METHODS], choices=[k for k, _ in WRITE_METHODS],
        help="write methods to run (none: skip the writes)",
    )  # fmt: skip
    p.add_argument("--results", help="where the raw per-trial results go (default: bench/_build/results.json)")
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)  # the worker's JSON result goes there
    args = p.parse_args(argv)
    if "c_read" not in args.methods:
        p.error("--methods must include c_read (the read ratios need it)")
    if args.write_methods and "c_write" not in args.write_methods:
        p.error("--write-methods must include c_write (the write ratios need it)")
    if args.block % RING:
        p.error(f"--block must be a multiple of {RING} (read_batch and write_batch turns are whole rings)")
    if args.packets + 1000 > TXQUEUELEN:
        p.error(f"--packets must stay below the TUN queue length {TXQUEUELEN:,}")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker_main(args)
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root (creating a TUN interface needs CAP_NET_ADMIN)")
    check_subnet(args.subnet)
    gcc = build_helpers()
    name = f"ttbench{os.getpid() % 1000}"
    if interface_exists(name):
        raise SystemExit(f"interface {name} exists already; not touching it")
    results = []
    for interp in (["cpython", "pypy"] if args.interp == "all" else [args.interp]):
        python = find_interpreter(interp)
        if python is None:
            why = f"no {interp} interpreter found (CPython: the one running this script; PyPy: bench/.venv-pypy or pypy3)"
            if args.interp == "all":
                log(f"skipping {interp}: {why}")
                continue
            raise SystemExit(why)
        log(f"{interp}: {python}, interface {name}")
        results.append(run_worker(python, name, args))
    raw = Path(args.results) if args.results else BUILD_DIR / "results.json"
    # What the charts print on themselves: date, commit, machine, each worker's interpreter and cffi.
    meta = run_metadata("drain", [interpreter(r["interp"], r["version"], r["cffi"]) for r in results])
    save_results(raw, meta, {"args": vars(args), "results": results})
    log(f"raw results: {raw}")
    print_report(results, gcc, args, meta)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the interface was removed on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
