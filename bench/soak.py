#!/usr/bin/env python3
"""Soak: open and close many devices, push many packets through every read path; nothing may leak.

What it checks, on real devices (run as root, or with CAP_NET_ADMIN):

1. devices: open and close ``--devices`` devices from ``--threads`` threads,
   TUN and TAP alternating, every third with ``packet_info``; each one also
   does one of: nothing; ``up()`` and an MTU read (control socket); a
   non-blocking ``readinto`` (binds the read buffer); a timed
   ``read_batch`` (an io_uring engine and the wakeup eventfd); ``detach()``
   and ``os.close``.  Afterwards no interface is left, the sampled Device
   objects are freed, and the fd count, the number of memory mappings and
   the RSS are back to the baseline (RSS within a few MB).
2. packets: ``--packets`` sequence-numbered UDP datagrams through
   ``readinto``, through ``read_batch`` (io_uring), and as many
   through the asyncio path (``readinto_async`` and ``read_batch_async``
   alternating, on the default loop and on uvloop when importable), sent
   from a socket bound to the TUN in rounds that fit its queue.  Every
   packet must arrive exactly once and in order (a single flow through one
   queue is FIFO, so "in order" is the exactly-once check) and the
   interface must drop nothing.  Every path runs twice with half the
   packets: afterwards the fds and mappings must be back to the baseline,
   and the second halves must not have grown the RSS (a leak grows with the
   packets; an allocator's high-water mark settles during the first half).

    python3 bench/soak.py                       # the long form: 1,000,000 packets, 1,000 devices
    python3 bench/soak.py --packets 200000 --devices 200 --watchdog 300

It prints what it checked with the figures, then ``RESULT: PASS`` (exit 0)
or ``RESULT: FAIL`` (exit 1); ``--json FILE`` writes the same as JSON.
``--watchdog SECONDS`` arms faulthandler: a hang, even a deadlock that
holds the GIL, dumps every thread's stack and exits 1.
``tests/test_soak.py`` runs the same functions with smaller numbers in CI.
Interfaces are named ``<prefix><n>`` (``--name-prefix``, default
``tt<pid % 10000>s``), traffic goes to ``--subnet`` ``.2`` (default
198.18.201.0/24, RFC 2544 benchmarking space, routed into the soak's own
TUN); every interface is removed on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import re
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout: use the working tree's package
    sys.path.insert(0, str(REPO_ROOT))

from tuntap_cffi import Device, PacketRing, batch, open_tap, open_tun  # noqa: E402

SEQ = struct.Struct("!Q")
PKT_LEN = 20 + 8 + SEQ.size  # IPv4 without options, UDP, the sequence number
DPORT = 9  # the flow's destination port on .2 (discard: nothing listens, the TUN is the wire)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
PAGE = resource.getpagesize()
#: How long a round may take to arrive once sent before the packets count as lost.
ARRIVAL_TIMEOUT = 5.0


class Usage(NamedTuple):
    """What this process holds: open fds, memory mappings, resident bytes."""

    fds: int
    maps: int
    rss: int


def usage() -> Usage:
    """Collect garbage (the finalizers of dropped rings and devices run), then measure.

    The fds are counted once pending fd retirements are done (see
    :func:`settle_retirements`); the mappings and RSS before that wait, as
    they always were (the RSS allowances were set so).
    """
    for _ in range(3):  # PyPy: objects freed by one pass can hold the last refs of others
        gc.collect()
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    settle_retirements()
    return Usage(len(os.listdir("/proc/self/fd")), maps, rss)


def leaks(before: Usage, after: Usage, rss_slack: int, maps_slack: int = 16, rss_only: bool = False) -> List[str]:
    """What grew beyond the allowance between two :func:`usage` measurements (empty: nothing)."""
    problems = []
    if not rss_only and after.fds != before.fds:
        kinds = Counter(re.sub(r"\[\d+\]$", "", t) for t in _fd_targets())  # pipe:[123] -> pipe:
        problems.append(f"fds {before.fds} -> {after.fds}; open now: {dict(kinds.most_common())}")
    if not rss_only and after.maps > before.maps + maps_slack:
        problems.append(f"memory mappings {before.maps} -> {after.maps} (allowed +{maps_slack})")
    if after.rss > before.rss + rss_slack:
        problems.append(f"RSS {before.rss / 2**20:.1f} MB -> {after.rss / 2**20:.1f} MB (allowed +{rss_slack / 2**20:.0f} MB)")
    return problems


def _fd_targets() -> List[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


def ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def tx_dropped(name: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/tx_dropped") as f:
        return int(f.read())


# ------------------------------------------------------------------- devices


def _exercise(dev: Device, variant: int) -> None:
    """One of five things a short-lived device does before it is closed."""
    if variant == 1:  # control socket: link flags and MTU
        dev.up()
        assert dev.is_up and dev.mtu > 0
    elif variant == 2:  # the read path binds and caches a buffer
        dev.blocking = False
        try:
            dev.readinto(bytearray(dev.max_packet_size))
        except BlockingIOError:
            pass
        else:
            raise AssertionError(f"{dev.name} is down, yet a packet was read")
    elif variant == 3:  # a batch engine (io_uring where usable) and the wakeup eventfd
        ring = dev.packet_ring(8)
        got = dev.read_batch(ring, timeout=0.001)
        assert got == 0, f"{dev.name} is down, yet read_batch returned {got} packets"
    elif variant == 4:  # the fd handed back: the caller closes it
        fd = dev.detach()
        os.close(fd)


def soak_devices(names: Sequence[str], threads: int = 8) -> Dict[str, Any]:
    """Open and close one device per name (see the module docstring); return figures.

    Raises AssertionError if an interface outlives its close or a sampled
    Device is not freed.  Threads overlap the kernel's slow part: closing a
    TUN/TAP waits for RCU grace periods (about 20 ms here), which run in
    parallel across closes.
    """
    errors: List[BaseException] = []
    survivors: List[str] = []
    refs: List["weakref.ReferenceType[Device]"] = []
    lock = threading.Lock()

    def work(part: Sequence[Tuple[int, str]]) -> None:
        try:
            for i, name in part:
                opener = open_tap if i % 2 else open_tun
                dev = opener(name, packet_info=i % 3 == 0)
                try:
                    _exercise(dev, i % 5)
                finally:
                    dev.close()
                if link_exists(name):
                    with lock:
                        survivors.append(name)
                if i % 10 == 0:
                    with lock:
                        refs.append(weakref.ref(dev))
                del dev
        except BaseException as exc:  # re-raised in the caller's thread
            with lock:
                errors.append(exc)

    indexed = list(enumerate(names))
    parts = [indexed[k::threads] for k in range(threads)]
    t0 = time.monotonic()
    workers = [threading.Thread(target=work, args=(part,), name=f"soak-devices-{k}") for k, part in enumerate(parts)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    if errors:
        raise errors[0]
    left = [n for n in names if link_exists(n)]
    assert not survivors and not left, f"interfaces outlived close(): {sorted(set(survivors) | set(left))[:10]}"
    # A number closed while the other workers lived is freed by the library's
    # reaper thread once they are gone; it holds a Device only during its check.
    settle_retirements()
    for _ in range(3):
        gc.collect()
    alive = sum(1 for r in refs if r() is not None)
    assert alive == 0, f"{alive} of {len(refs)} sampled Device objects are still alive after close() and gc"
    return {"devices": len(names), "threads": threads, "seconds": elapsed, "sampled_freed": len(refs)}


def settle_retirements(timeout: float = 5.0) -> None:
    """Wait (bounded) until the library's reaper has freed every fd number closed while other threads lived.

    Until then each such number holds a /dev/null placeholder: an fd that a
    baseline taken meanwhile counts and a later measurement does not (any
    other thread alive, even faulthandler's watchdog, defers a retirement).
    """
    from tuntap_cffi.device import pending_retirements

    deadline = time.monotonic() + timeout
    while pending_retirements() and time.monotonic() < deadline:
        time.sleep(0.15)  # (asleep this long, this thread counts as idle on PyPy too)


# ------------------------------------------------------------------- packets


def open_flow_tun(name: str, subnet: str, txqueuelen: int = 8192) -> Device:
    """A non-blocking TUN with *subnet*.1/24, IPv6 off (no router solicitations), up."""
    dev = open_tun(name, nonblocking=True)
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
        ip("addr", "add", f"{subnet}.1/24", "dev", name)
        dev.txqueuelen = txqueuelen
        dev.up()
    except BaseException:
        dev.close()
        raise
    return dev


def flow_socket(dev: Device, subnet: str) -> socket.socket:
    """A UDP socket bound to the TUN and connected to *subnet*.2:DPORT: its datagrams queue on *dev*."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, dev.name.encode())
        s.bind((f"{subnet}.1", 0))
        s.connect((f"{subnet}.2", DPORT))
    except BaseException:
        s.close()
        raise
    return s


class SequenceError(AssertionError):
    """A packet arrived out of order, twice, or not at all."""


class Flow:
    """The receiving side's bookkeeping: the next sequence number expected, strays seen."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.expected = 0
        self.strays = 0  # packets on the TUN that are not the flow's (never seen with IPv6 off)
        self.dropped_at_start = tx_dropped(dev.name)

    def lost(self, sent: int) -> SequenceError:
        dropped = tx_dropped(self.dev.name) - self.dropped_at_start
        return SequenceError(
            f"{sent - self.expected} of {sent} packets sent did not arrive within {ARRIVAL_TIMEOUT} s "
            f"(next expected #{self.expected}; the interface counted {dropped} tx drops)"
        )

    def out_of_order(self, seq: int) -> SequenceError:
        what = "a duplicate or reordered" if seq < self.expected else "a gap: lost packets before"
        return SequenceError(f"expected packet #{self.expected}, got #{seq} ({what})")

    def take(self, p: Any, n: int) -> None:
        """Check one packet of *n* bytes: if it is the flow's, it must be the next in sequence."""
        if n != PKT_LEN or p[9] != 17 or (p[22] << 8 | p[23]) != DPORT:
            self.strays += 1
            return
        (seq,) = SEQ.unpack_from(p, 28)
        if seq != self.expected:
            raise self.out_of_order(seq)
        self.expected += 1

    def take_ring(self, ring: PacketRing) -> None:
        """Check a batch (its views end with this frame: a ring cannot be closed while one lives)."""
        take = self.take
        for p in ring:
            take(p, len(p))

    def finish(self, sent: int) -> None:
        """After the last round: nothing more may be queued, and the interface dropped nothing."""
        assert self.expected == sent, (self.expected, sent)
        r, _, _ = select.select([self.dev], [], [], 0.05)
        if r:
            buf = bytearray(self.dev.max_packet_size)
            n = self.dev.readinto(buf)
            if n == PKT_LEN and buf[9] == 17:
                raise SequenceError(f"an extra packet #{SEQ.unpack_from(buf, 28)[0]} after all {sent} arrived")
        dropped = tx_dropped(self.dev.name) - self.dropped_at_start
        assert dropped == 0, f"the interface dropped {dropped} packets"


def send_datagrams(sock: socket.socket, first: int, count: int) -> None:
    send, pack = sock.send, SEQ.pack
    for seq in range(first, first + count):
        send(pack(seq))


def wait_readable(flow: Flow, sent: int, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([flow.dev], [], [], left)[0]:
        raise flow.lost(sent)


def stream_readinto(dev: Device, sock: socket.socket, count: int, window: int = 2000) -> Dict[str, Any]:
    """Send *count* datagrams in rounds of *window*; read each with ``readinto``; check exactly-once order."""
    flow = Flow(dev)
    buf = bytearray(dev.max_packet_size)
    readinto, take = dev.readinto, flow.take
    sent = 0
    t0 = time.monotonic()
    while sent < count:
        k = min(window, count - sent)
        send_datagrams(sock, sent, k)
        sent += k
        deadline = time.monotonic() + ARRIVAL_TIMEOUT
        while flow.expected < sent:
            try:
                n = readinto(buf)
            except BlockingIOError:
                wait_readable(flow, sent, deadline)  # a qdisc run left to softirq: give it time
                continue
            take(buf, n)
    elapsed = time.monotonic() - t0
    flow.finish(sent)
    return {"path": "readinto", "packets": sent, "strays": flow.strays, "seconds": elapsed}


def stream_read_batch(dev: Device, sock: socket.socket, count: int, window: int = 2000, slots: int = 256) -> Dict[str, Any]:
    """As :func:`stream_readinto`, reading with ``read_batch`` into a ring of *slots*."""
    flow = Flow(dev)
    ring = dev.packet_ring(slots)
    read_batch = dev.read_batch
    sent = batches = 0
    t0 = time.monotonic()
    while sent < count:
        k = min(window, count - sent)
        send_datagrams(sock, sent, k)
        sent += k
        deadline = time.monotonic() + ARRIVAL_TIMEOUT
        while flow.expected < sent:
            try:
                read_batch(ring)
            except BlockingIOError:
                wait_readable(flow, sent, deadline)
                continue
            batches += 1
            flow.take_ring(ring)
    elapsed = time.monotonic() - t0
    flow.finish(sent)
    backend = dev.batch_backend
    ring.close()
    return {"path": f"read_batch ({backend})", "backend": backend, "packets": sent, "batches": batches,
            "strays": flow.strays, "seconds": elapsed}


def loop_factories() -> Dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops to run the asyncio path on: the default one, and uvloop when importable."""
    out: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        out["uvloop"] = uvloop.new_event_loop
    return out


def stream_async(dev: Device, sock: socket.socket, count: int, new_loop: Callable[[], asyncio.AbstractEventLoop],
                 window: int = 2000, chunk: int = 64) -> Dict[str, Any]:
    """*count* datagrams through ``readinto_async`` and ``read_batch_async`` (alternating per 1000).

    A sender coroutine on the same loop sends *chunk* datagrams, then yields;
    the receiver drains them and then has to wait on the loop (add_reader),
    so the wait, wake and unregister path runs about ``count / chunk`` times.
    Those waits are counted at the loop's public ``add_reader`` (see
    :func:`counting_loop`) and returned as ``waits``.
    """
    flow = Flow(dev)
    waits = [0]

    async def run() -> Tuple[int, int]:
        buf = bytearray(dev.max_packet_size)
        ring = dev.packet_ring(64)
        progress = asyncio.Event()
        sent = 0

        async def sender() -> None:
            nonlocal sent
            while sent < count:
                room = window - (sent - flow.expected)
                if room <= 0:
                    progress.clear()
                    await progress.wait()
                    continue
                k = min(chunk, count - sent, room)
                send_datagrams(sock, sent, k)
                sent += k
                await asyncio.sleep(0)

        async def receiver() -> int:
            batches = 0
            while flow.expected < count:
                if (flow.expected // 1000) % 2:
                    await dev.read_batch_async(ring)
                    batches += 1
                    flow.take_ring(ring)
                else:
                    n = await dev.readinto_async(buf)
                    flow.take(buf, n)
                progress.set()
            return batches

        send_task = asyncio.ensure_future(sender())
        try:
            batches = await asyncio.wait_for(receiver(), timeout=ARRIVAL_TIMEOUT + count * 50e-6)
        except asyncio.TimeoutError:
            raise flow.lost(sent) from None
        finally:
            send_task.cancel()
            try:
                await send_task
            except asyncio.CancelledError:
                pass
        ring.close()
        return sent, batches

    loop = counting_loop(new_loop, dev.fileno(), waits)
    try:
        t0 = time.monotonic()
        sent, batches = loop.run_until_complete(run())
        elapsed = time.monotonic() - t0
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    flow.finish(sent)
    kind = type(loop).__mro__[1]  # the loop class new_loop makes
    return {"path": f"async ({kind.__module__}.{kind.__name__})", "packets": sent, "batches": batches,
            "waits": waits[0], "strays": flow.strays, "seconds": elapsed}


def counting_loop(new_loop: Callable[[], asyncio.AbstractEventLoop], fd: int, count: List[int]) -> asyncio.AbstractEventLoop:
    """A loop of the class *new_loop* makes whose ``add_reader`` adds 1 to ``count[0]`` for each wait on *fd*.

    Every wait of the async read paths registers the fd with the loop's
    public ``add_reader`` (the fd stays registered only while a coroutine
    waits on it), so counting there counts the waits without reaching into
    tuntap_cffi.
    """
    probe = new_loop()
    base = type(probe)
    probe.close()

    class CountingLoop(base):  # type: ignore[valid-type, misc]
        def add_reader(self, reader_fd: Any, callback: Callable[..., Any], *args: Any) -> None:
            if reader_fd == fd:
                count[0] += 1
            super().add_reader(reader_fd, callback, *args)

    return CountingLoop()


# --------------------------------------------------------------------- script


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000,
                    help="packets through each path: readinto, read_batch, asyncio on each loop "
                         "(default 1,000,000; 0 skips the packet soak)")
    ap.add_argument("--devices", type=int, default=1000, help="devices to open and close (default 1000; 0 skips)")
    ap.add_argument("--threads", type=int, default=8, help="threads opening and closing devices (default 8)")
    ap.add_argument("--window", type=int, default=2000, help="datagrams sent per round, 1..4096 (default 2000; the TUN queue holds 8192)")
    ap.add_argument("--subnet", default="198.18.201", help="the soak TUN's /24 inside 198.18.0.0/15 (default 198.18.201)")
    ap.add_argument("--rss-slack-mb", type=float, default=8.0, help="allowed RSS growth per check (default 8 MB)")
    ap.add_argument("--name-prefix", default=f"tt{os.getpid() % 10000:04d}s",
                    help="interface names are PREFIX<n> (default tt<pid %% 10000>s; must start with 'tt')")
    ap.add_argument("--watchdog", type=float, default=0,
                    help="after this many seconds dump every thread's stack and exit: a hang (even one that "
                         "holds the GIL) becomes a failure, exit status 1 (default 0: off)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures and verdicts as JSON to FILE")
    args = ap.parse_args(argv)
    if not args.subnet.startswith(("198.18.", "198.19.")) or args.subnet.count(".") != 2:
        ap.error("--subnet must be a /24 prefix inside 198.18.0.0/15, like 198.18.201")
    if args.packets < 0 or args.devices < 0 or args.threads < 1 or not 1 <= args.window <= 4096:
        ap.error("--packets and --devices must be >= 0, --threads positive, --window 1..4096 (half the TUN queue)")
    prefix = args.name_prefix
    if not prefix.startswith("tt") or len(prefix) + len(str(args.devices + max(20, args.devices // 10))) > 15:
        ap.error("--name-prefix must start with 'tt' and leave room for the device number within 15 bytes")
    if args.watchdog > 0:
        import faulthandler

        # Its own C thread: it fires even when a deadlocked thread holds the GIL.
        faulthandler.dump_traceback_later(args.watchdog, exit=True)
    slack = int(args.rss_slack_mb * 2**20)
    # A tenth of the devices first, at least 20 (PyPy's heap and JIT settle only after a while: with
    # 20, its baseline RSS moved by 3.5 MB with unrelated edits to this file).
    warm_devices = max(20, args.devices // 10)
    names = [f"{prefix}{i}" for i in range(args.devices + warm_devices + 1)]
    flow_name = f"{prefix}f"
    names.append(flow_name)
    report: Dict[str, Any] = {"python": f"{platform.python_implementation()} {platform.python_version()}",
                              "kernel": platform.release(), "io_uring": list(batch.uring_status())}
    print(f"soak on {report['python']}, Linux {report['kernel']}; io_uring: {report['io_uring']}", flush=True)
    failures = 0
    try:
        # Warm-up: every code path once (imports, the /dev/null fd, the io_uring probe, JIT).
        soak_devices(names[:warm_devices], threads=args.threads)  # as many threads: glibc caches their stacks (mappings)
        if args.packets:
            # A tenth of the run (PyPy's RSS settles only once its JIT has seen the loops for a while).
            warm = min(max(4000, args.packets // 10), 100_000)
            dev = open_flow_tun(names[warm_devices], args.subnet)
            with dev, flow_socket(dev, args.subnet) as s:
                stream_readinto(dev, s, warm)
                stream_read_batch(dev, s, warm)
                for factory in loop_factories().values():
                    stream_async(dev, s, max(warm // 4, 1000), factory)
        base = usage()
        report["baseline"] = base._asdict()
        print(f"baseline: {base.fds} fds, {base.maps} mappings, RSS {_mb(base.rss)}", flush=True)

        if args.devices:
            fig = soak_devices(names[warm_devices + 1:warm_devices + 1 + args.devices], threads=args.threads)
            after = usage()
            bad = leaks(base, after, slack)
            failures += bool(bad)
            report["devices"] = dict(fig, after=after._asdict(), leaks=bad)
            print(f"devices: {fig['devices']} opened and closed in {fig['seconds']:.1f} s on {fig['threads']} threads "
                  f"({fig['seconds'] / max(fig['devices'], 1) * 1000:.1f} ms each); none left; "
                  f"{fig['sampled_freed']} sampled Device objects freed; "
                  f"fds {base.fds}->{after.fds}, mappings {base.maps}->{after.maps}, RSS {_mb(base.rss)}->{_mb(after.rss)}"
                  + (f"  LEAK: {'; '.join(bad)}" if bad else "  OK"), flush=True)

        if args.packets:
            # Each path runs twice, half the packets each time (every half is checked exactly-once
            # on its own).  A leak grows with the packets, so the second halves must not grow RSS:
            # the first may, as an allocator's high-water mark settles (PyPy: about 6 MB over the
            # first million packets, then flat).
            dev = open_flow_tun(flow_name, args.subnet)
            runs: List[Dict[str, Any]] = []
            half = max(args.packets // 2, 1)
            with dev, flow_socket(dev, args.subnet) as s:
                for phase in range(2):
                    runs.append(stream_readinto(dev, s, half, args.window))
                    runs.append(stream_read_batch(dev, s, half, args.window))
                    for factory in loop_factories().values():
                        runs.append(stream_async(dev, s, half, factory, args.window))
                    if phase == 0:
                        mid = usage()
            for fig in runs:
                extra = "".join(f", {k} {fig[k]}" for k in ("batches", "waits") if fig.get(k) is not None)
                print(f"packets via {fig['path']}: {fig['packets']} sent, all received exactly once in order "
                      f"in {fig['seconds']:.2f} s ({fig['seconds'] / fig['packets'] * 1e6:.2f} us/packet incl. "
                      f"sending){extra}; {fig['strays']} strays; 0 dropped", flush=True)
            if link_exists(flow_name):
                raise AssertionError(f"{flow_name} outlived close()")
            after = usage()
            bad = leaks(base, after, 1 << 40) + leaks(mid, after, slack, rss_only=True)  # fds: baseline; RSS: halves
            failures += bool(bad)
            report["packets"] = {"runs": runs, "middle": mid._asdict(), "after": after._asdict(), "leaks": bad}
            total = sum(f["packets"] for f in runs)
            print(f"after {total} packets: fds {base.fds}->{after.fds}, mappings {base.maps}->{mid.maps}->{after.maps}, "
                  f"RSS {_mb(base.rss)} (baseline) -> {_mb(mid.rss)} (first halves) -> {_mb(after.rss)} (second halves)"
                  + (f"  LEAK: {'; '.join(bad)}" if bad else "  OK"), flush=True)
    except Exception as exc:
        failures += 1
        report["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        left = [n for n in names if link_exists(n)]
        for n in left:
            subprocess.run(["ip", "link", "del", "dev", n], capture_output=True)
        if left:
            print(f"removed leftover interfaces: {left}")
            report["left"] = left
            failures += 1
        report["result"] = "FAIL" if failures else "PASS"
        if args.json:
            import json

            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        print("RESULT:", report["result"], flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
