"""Closed devices give their fd number back promptly, and never to a racing call.

close() parks the number on /dev/null and frees it once no thread can be
about to use it (tuntap_cffi.device, "freeing closed fd numbers"): these
tests count fds without gc.collect() (the objects are kept, so only that
mechanism can free them) and race close() against readers, writers and
batches while new files grab every freed number.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import sys
import threading
import time
from typing import Callable, List

import pytest

from tuntest import bind_to_device, checksum, configure, ipv4_udp, join_task, wait_until
from tuntap_cffi import Device, DeviceClosedError, open_tun

pytestmark = pytest.mark.device

PYPY = sys.implementation.name == "pypy"


def open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def freed(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") != "/dev/null"
    except FileNotFoundError:
        return True


def test_idle_background_threads_do_not_keep_closed_numbers(ifnames: Callable[..., str]) -> None:
    """The issue's program: a thread in queue.get(), one in time.sleep(); 100 devices opened,
    closed and kept.  The fds come back within a bounded wait, with no GC pass."""
    open_tun(ifnames()).close()  # the process-wide /dev/null fd exists from here on
    stop = threading.Event()
    jobs: "queue.Queue[object]" = queue.Queue()
    logger = threading.Thread(target=jobs.get)

    def sleeper() -> None:
        while not stop.is_set():
            time.sleep(0.5)

    napper = threading.Thread(target=sleeper)
    logger.start()
    napper.start()
    kept: List[Device] = []
    try:
        time.sleep(0.1)  # both asleep
        baseline = open_count()
        for _ in range(100):
            dev = open_tun(ifnames())
            dev.close()
            kept.append(dev)
        assert wait_until(lambda: open_count() <= baseline + 2), (
            f"{open_count() - baseline} more fds than before 100 devices were opened and closed")
        assert all(not os.path.exists(f"/sys/class/net/{dev.name}") for dev in kept)
    finally:
        stop.set()
        jobs.put(None)
        logger.join()
        napper.join()


def test_a_thread_announced_inside_keeps_the_number(ifname: str) -> None:
    """A thread inside a call that holds the number across Python code (announced) keeps it
    on /dev/null however long it stays; it is freed once that thread leaves."""
    open_tun(ifname).close()
    dev = open_tun(ifname)
    fd = dev.fileno()
    entered, release = threading.Event(), threading.Event()

    def inside() -> None:
        me = dev._enter()  # what read_batch, _wait and the link setters do
        entered.set()
        release.wait()
        dev._exit(me)

    t = threading.Thread(target=inside, daemon=True)
    t.start()
    assert entered.wait(5), "the thread did not get inside"
    try:
        dev.close()
        assert not os.path.exists(f"/sys/class/net/{ifname}")
        time.sleep(0.3)  # many times what an idle thread needs
        assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null", "freed under a thread inside a call"
    finally:
        release.set()
        t.join()
    assert wait_until(lambda: freed(fd)), "the number outlived the thread inside"


def close_beside_busy_thread(dev: Device, work: Callable[[threading.Event], None],
                             busy: Callable[[], bool], what: str) -> None:
    """Close *dev* while a thread runs *work*; CPython must free the number while it runs,
    both interpreters once it stopped."""
    fd = dev.fileno()
    stop = threading.Event()
    t = threading.Thread(target=work, args=(stop,), daemon=True)
    t.start()
    try:
        assert wait_until(busy, 5)
        dev.close()
        if not PYPY:
            assert wait_until(lambda: freed(fd), 5), f"the number stayed taken while a thread {what}"
    finally:
        stop.set()
        join_task(t)
    assert wait_until(lambda: freed(fd), 5)


def test_a_thread_burning_cpu_in_c_does_not_keep_the_number(ifname: str) -> None:
    """A thread busy in C code (hashing, GIL released, no syscalls).  CPython: it ran far longer
    than the window between loading the number and the syscall, so the number is freed
    while it runs.  PyPy cannot tell (see the module docstring): freed once it stops."""
    open_tun(ifname).close()
    block = bytes(1 << 20)
    rounds = [0]

    def burn(stop: threading.Event) -> None:
        while not stop.is_set():
            hashlib.sha256(block).digest()
            rounds[0] += 1

    close_beside_busy_thread(open_tun(ifname), burn, lambda: rounds[0] > 10, "hashed")


def test_a_thread_reading_another_device_does_not_keep_the_number(ifnames: Callable[..., str]) -> None:
    """A thread hammering readinto() on another device.  CPython: its reads since close()
    prove it is past any window, so the number is freed while it reads; PyPy: once it stops."""
    open_tun(ifnames()).close()
    other = open_tun(ifnames(), nonblocking=True)
    reads = [0]

    def hammer(stop: threading.Event) -> None:
        buf = bytearray(other.max_packet_size)
        while not stop.is_set():
            try:
                other.readinto(buf)
            except BlockingIOError:
                pass
            reads[0] += 1

    try:
        close_beside_busy_thread(open_tun(ifnames()), hammer, lambda: reads[0] > 1000, "read another device")
    finally:
        other.close()


def test_close_racing_io_never_reaches_a_file_that_reused_the_number(ifname: str, subnet: str) -> None:
    """close() against threads in readinto, write and read_batch, while another thread opens
    pipes nonstop to take every freed number: no read returns a pipe's bytes, no write lands
    in a pipe.  TUNTAP_STRESS_ROUNDS sets the rounds (default 25)."""
    rounds = int(os.environ.get("TUNTAP_STRESS_ROUNDS", "25"))
    packet_out = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, 9997, b"W" * 32)
    sink = None
    for round_ in range(rounds):
        dev = open_tun(ifname)
        configure(dev, subnet)
        if sink is not None:
            sink.close()
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes the written packets (no ICMP)
        sink.bind((f"{subnet}.1", 9997))
        stop = threading.Event()
        bad: List[object] = []
        pipes: List[tuple] = []

        def check(data: bytes) -> None:
            # An IPv4 packet, whole, with a good header checksum: a pipe's 'Z's are not.
            # (Not only ours: another run given the same /24 at once routes into this TUN too.)
            if not (len(data) >= 20 and data[0] == 0x45 and int.from_bytes(data[2:4], "big") == len(data)
                    and checksum(data[:20]) == 0):
                bad.append(data[:80])

        def reader() -> None:
            buf = bytearray(dev.max_packet_size)
            try:
                while True:
                    n = dev.readinto(buf)
                    check(bytes(buf[:n]))
            except DeviceClosedError:
                pass
            except BaseException as exc:  # noqa: BLE001
                bad.append(exc)

        def batcher() -> None:
            ring = dev.packet_ring(32)
            try:
                while True:
                    for i in range(dev.read_batch(ring, timeout=0.05)):
                        check(bytes(ring[i]))
            except DeviceClosedError:
                pass
            except BaseException as exc:  # noqa: BLE001
                bad.append(exc)

        def writer() -> None:
            try:
                while True:
                    dev.write(packet_out)
            except DeviceClosedError:
                pass
            except BaseException as exc:  # noqa: BLE001
                bad.append(exc)

        def sender() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                bind_to_device(s, ifname)
                while not stop.is_set():
                    try:
                        s.sendto(b"P" * 32, (f"{subnet}.2", 9))
                    except OSError:
                        time.sleep(0.001)

        def grabber() -> None:
            while not stop.is_set():
                r, w = os.pipe()
                os.write(w, b"Z" * 64)
                pipes.append((r, w))
                if len(pipes) > 400:
                    time.sleep(0.001)

        users = [threading.Thread(target=f, daemon=True) for f in (reader, reader, batcher, writer)]
        helpers = [threading.Thread(target=sender, daemon=True), threading.Thread(target=grabber, daemon=True)]
        for t in users + helpers:
            t.start()
        time.sleep(0.03)
        dev.close()
        for t in users:
            t.join(10)
        time.sleep(0.1)  # numbers freed meanwhile went to pipes
        stop.set()
        for t in helpers:
            t.join(10)
        assert not any(t.is_alive() for t in users + helpers), "a thread hung"
        for r, w in pipes:
            os.set_blocking(r, False)
            try:
                data = os.read(r, 4096)
            except BlockingIOError:
                data = b""
            os.close(r)
            os.close(w)
            if data != b"Z" * 64:
                bad.append(("pipe", data[:80]))
        assert not bad, f"round {round_}: {bad[:3]}"
    if sink is not None:
        sink.close()
