"""Soak (short forms) and failure injection on real devices.

The soak work is done by the functions of ``bench/soak.py``, whose script is
the long form (1,000,000 packets per path); here the same code runs with CI
sizes.  The device soak runs as a child process: a hang inside CPython (a
deadlock that holds the GIL) cannot be turned into a failure from inside
the hung process, so the child arms ``faulthandler``'s watchdog, which dumps
every thread and exits.  Everything else runs in the test process.

Failure injection: while a reader streams, the interface is taken down
(reads must block without error, writes must raise DeviceNotReadyError),
brought up again (reads resume), then deleted under the reader (``ip link
del``): the kernel detaches the file (reads and writes then fail with
EBADFD, poll reports POLLERR), and the reader must raise
DeviceNotReadyError naming the deletion within a bounded time, never hang
and never return an empty read.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from tuntest import LOOPS, RUN_TAG, delete_link, fd_count, ip, ipv4_udp, loop_factory, open_fds, require_uring
from tuntap_cffi import Device, DeviceNotReadyError, open_tun

pytestmark = pytest.mark.device

SOAK_SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
_spec = importlib.util.spec_from_file_location("tuntap_bench_soak", SOAK_SCRIPT)
assert _spec is not None and _spec.loader is not None
soak: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)

# "A few MB": a leaked buffer per packet would be hundreds of MB here, a leaked Device a few more
# MB per 1,000.  PyPy's RSS wanders by 1-4 MB per 1,000 devices with no object left behind (its
# JIT and GC arenas; measured: no Python object count grows), so it gets more room.
RSS_SLACK = (8 if platform.python_implementation() == "PyPy" else 4) << 20


# ------------------------------------------------------------- 1. devices


def test_open_close_1000_devices_leaks_nothing(tmp_path: Path) -> None:
    """1,000 devices (TUN/TAP alternating, every third with packet_info, each doing a little
    I/O or configuration, see bench/soak.py) opened and closed from 8 threads: no interface
    left, sampled Device objects freed, fds and mappings back to the baseline, RSS within RSS_SLACK."""
    prefix = f"tt{RUN_TAG}Z"  # Z: a tag no other test uses; the children are PREFIX0..PREFIX1020
    report_file = tmp_path / "soak.json"
    cmd = [sys.executable, str(SOAK_SCRIPT), "--devices", "1000", "--packets", "0", "--threads", "8",
           "--name-prefix", prefix, "--watchdog", "100", "--rss-slack-mb", str(RSS_SLACK >> 20),
           "--json", str(report_file)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=130)
    finally:
        left = [n for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
        for name in left:
            delete_link(name)
    output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"the device soak failed (exit {proc.returncode}):\n{output}"
    assert not left, f"interfaces left behind: {left}"
    report = json.loads(report_file.read_text())
    base, dev = report["baseline"], report["devices"]
    assert dev["devices"] == 1000 and dev["sampled_freed"] == 100, dev
    assert dev["leaks"] == [], output
    assert dev["after"]["fds"] == base["fds"], output
    assert dev["after"]["rss"] - base["rss"] <= RSS_SLACK, output
    print(proc.stdout)


# ------------------------------------------------------------- 2. packets


@pytest.fixture
def flow(ifname: str, subnet: str) -> Iterator[Tuple[Device, socket.socket]]:
    """A non-blocking TUN with a socket whose datagrams queue on it (see bench/soak.py)."""
    dev = soak.open_flow_tun(ifname, subnet)
    try:
        with soak.flow_socket(dev, subnet) as s:
            yield dev, s
    finally:
        dev.close()


def check_usage(before: Any) -> None:
    after = soak.usage()
    problems = soak.leaks(before, after, RSS_SLACK)
    assert not problems, problems


def test_200k_packets_through_readinto_exactly_once(flow: Tuple[Device, socket.socket]) -> None:
    dev, s = flow
    soak.stream_readinto(dev, s, 20_000)  # warm-up: buffers, JIT; then the baseline
    before = soak.usage()
    fig = soak.stream_readinto(dev, s, 200_000)
    assert fig["packets"] == 200_000
    check_usage(before)
    print(fig)


def test_200k_packets_through_read_batch_io_uring_exactly_once(flow: Tuple[Device, socket.socket]) -> None:
    require_uring()
    dev, s = flow
    dev.batch_backend = "io_uring"
    soak.stream_read_batch(dev, s, 20_000)
    before = soak.usage()
    fig = soak.stream_read_batch(dev, s, 200_000)
    assert fig["backend"] == "io_uring" and fig["packets"] == 200_000
    check_usage(before)
    print(fig)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_50k_packets_through_the_async_path_exactly_once(flow: Tuple[Device, socket.socket], loop_kind: str) -> None:
    dev, s = flow
    new_loop = loop_factory(loop_kind)
    soak.stream_async(dev, s, 5_000, new_loop)
    before = soak.usage()
    fig = soak.stream_async(dev, s, 50_000, new_loop)
    assert fig["packets"] == 50_000
    # The receiver really waited on the loop (add_reader, wake, unregister) hundreds of times.
    assert fig["waits"] is None or fig["waits"] > 100, fig
    check_usage(before)
    print(fig)


# ---------------------------------------------------- 3. failure injection


class Reader:
    """Reads the device in a thread (the asyncio kind runs its own loop there) and records what happens."""

    def __init__(self, dev: Device, kind: str, port: int) -> None:
        self.dev, self.kind, self.port = dev, kind, port
        self.seqs: List[int] = []
        self.empty_reads = 0  # reads that returned nothing instead of a packet or an exception
        self.exc: Optional[BaseException] = None
        self.ended_at = 0.0
        # Resolved here, in the test's thread: loop_factory may skip or fail the test.
        self.new_loop = loop_factory(kind.split("-")[1]) if kind.startswith("read_async") else None
        self.thread = threading.Thread(target=self._run, name=f"reader-{kind}", daemon=True)

    def start(self) -> "Reader":
        self.thread.start()
        return self

    def _take(self, pkt: Any) -> None:
        if len(pkt) == 0:
            self.empty_reads += 1
        elif len(pkt) == soak.PKT_LEN and pkt[9] == 17 and (pkt[22] << 8 | pkt[23]) == self.port:
            self.seqs.append(soak.SEQ.unpack_from(pkt, 28)[0])

    def _run(self) -> None:
        dev = self.dev
        try:
            if self.kind == "readinto":
                buf = bytearray(dev.max_packet_size)
                while True:
                    n = dev.readinto(buf)
                    self._take(memoryview(buf)[:n])
            elif self.kind == "read_batch":
                ring = dev.packet_ring(64)
                while True:
                    if dev.read_batch(ring) == 0:  # blocking, no timeout: 0 would be "nothing, silently"
                        self.empty_reads += 1
                    for p in ring:
                        self._take(p)
            else:
                assert self.new_loop is not None
                loop = self.new_loop()
                try:
                    loop.run_until_complete(self._read_async())
                finally:
                    loop.close()
        except BaseException as exc:
            self.exc = exc
        finally:
            self.ended_at = time.monotonic()

    async def _read_async(self) -> None:
        while True:
            self._take(await self.dev.read_async())

    def wait_for_packets(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seqs) < count:
            assert self.thread.is_alive(), f"the reader died: {self.exc!r}"
            assert time.monotonic() < deadline, f"the reader got {len(self.seqs)} of {count} packets"
            time.sleep(0.005)


class Sender:
    """Sends numbered datagrams into the TUN from a thread until stopped (errors after deletion are expected)."""

    def __init__(self, s: socket.socket, first: int) -> None:
        self.s, self.next = s, first
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.s.send(soak.SEQ.pack(self.next))
                self.next += 1
            except OSError:  # the route is gone with the interface
                pass
            time.sleep(0.0002)


def warm_loop(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = new_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


FAILURE_READERS = ["readinto", "read_batch"] + [f"read_async-{k}" for k in LOOPS]


@pytest.mark.parametrize("when", ["streaming", "blocked"])
@pytest.mark.parametrize("kind", FAILURE_READERS)
def test_reader_survives_link_down_and_reports_deletion(ifnames: Any, subnet: str, kind: str, when: str) -> None:
    open_tun(ifnames()).close()  # the process-wide /dev/null fd close() uses exists from now on
    if kind.startswith("read_async"):
        # uvloop opens a pipe pair, once per process, with the first loop run in a thread.
        warm = threading.Thread(target=warm_loop, args=(loop_factory(kind.split("-")[1]),))
        warm.start()
        warm.join()
    gc.collect()
    fds_before = fd_count()
    name = ifnames()
    dev = soak.open_flow_tun(name, subnet)
    dev.blocking = True
    s = soak.flow_socket(dev, subnet)
    port = soak.DPORT
    reader = Reader(dev, kind, port).start()
    sender: Optional[Sender] = None
    probe = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, 4001, b"probe")
    try:
        # Streaming.
        for i in range(50):
            s.send(soak.SEQ.pack(i))
        reader.wait_for_packets(50)

        # (a) Down: the reader keeps waiting without an error; writes are refused.
        ip("link", "set", "dev", name, "down")
        time.sleep(0.05)
        cpu = time.process_time()
        time.sleep(0.3)
        used = time.process_time() - cpu
        assert reader.thread.is_alive() and reader.exc is None, f"the link went down and the reader got {reader.exc!r}"
        assert used < 0.1, f"the reader spun while the link was down ({used:.3f} s of CPU in 0.3 s)"
        with pytest.raises(DeviceNotReadyError) as down:
            dev.write(probe)
        assert down.value.errno == errno.EIO and "down" in str(down.value) and name in str(down.value)

        # Up again: the same reader gets packets again.
        dev.up()
        for i in range(50, 100):
            s.send(soak.SEQ.pack(i))
        reader.wait_for_packets(100)

        # (b) Deleted while packets stream in, or while the reader waits for the next one.
        if when == "streaming":
            sender = Sender(s, 100)
            sender.thread.start()
            reader.wait_for_packets(130)
        else:
            time.sleep(0.1)
            assert reader.thread.is_alive() and len(reader.seqs) == 100
        deleted_at = time.monotonic()
        ip("link", "del", "dev", name)
        reader.thread.join(5)
        hung = reader.thread.is_alive()
        if hung:
            dev.close()  # wake it (DeviceClosedError), so the thread ends before the test does
            reader.thread.join(5)
        assert not hung, "the reader was still waiting 5 s after its interface was deleted"
        took = reader.ended_at - deleted_at
        exc = reader.exc
        assert isinstance(exc, DeviceNotReadyError), f"after `ip link del` the reader got {exc!r}, not DeviceNotReadyError"
        assert exc.errno == errno.EBADFD, exc
        assert "deleted" in str(exc) and name in str(exc), f"unclear message: {exc}"
        assert took < 2.0, f"the reader took {took:.2f} s to notice the deletion"
        assert reader.empty_reads == 0, f"{reader.empty_reads} reads returned nothing instead of raising"
        got = reader.seqs
        assert got == sorted(set(got)) and got[:100] == list(range(100)), "a packet came twice or out of order"

        # The Device stays usable for what is left: errors, then a clean close.
        with pytest.raises(DeviceNotReadyError) as after:
            dev.write(probe)
        assert after.value.errno == errno.EBADFD
        dev.blocking = False
        with pytest.raises(DeviceNotReadyError):
            dev.readinto(bytearray(dev.max_packet_size))
        print(f"{kind} ({when}): {type(exc).__name__} {took * 1000:.0f} ms after `ip link del`: {exc}")
    finally:
        if sender is not None:
            sender.stop.set()
            sender.thread.join(5)
        s.close()
        dev.close()
        reader.thread.join(5)
    assert not reader.thread.is_alive()
    assert not os.path.exists(f"/sys/class/net/{name}")
    del reader, exc
    gc.collect()
    assert fd_count() == fds_before, open_fds()
