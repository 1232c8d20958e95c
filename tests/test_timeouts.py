"""Timeouts of readinto/read/write (TimeoutError, as sockets raise) and the quiet interface (open_tun(ipv6=False))."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

from tuntest import batch_tun, bind_to_device, fd_count, join_task, require_uring, tun_with_address, udp_flow
from tuntap_cffi import DeviceClosedError, open_tap, open_tun

pytestmark = pytest.mark.device

BAD_TIMEOUTS = [(True, TypeError), ("1", TypeError), (b"1", TypeError), (-1, ValueError), (-0.001, ValueError),
                (math.nan, ValueError)]


def send_one(subnet: str, name: str, port: int = 9) -> None:
    """One UDP datagram from SUBNET.1 to SUBNET.2:PORT out of *name* (the TUN reads it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        bind_to_device(s, name)
        s.sendto(b"timeout test", (f"{subnet}.2", port))


def quiet_tun(name: str) -> Any:
    """A TUN that stays down: nothing ever arrives on it."""
    return open_tun(name, ipv6=False)


@pytest.mark.parametrize("call", ["readinto", "read"])
@pytest.mark.parametrize("timeout", [0, 0.0, 0.2, 1])
def test_a_blocking_read_times_out(ifname: str, call: str, timeout: float) -> None:
    with quiet_tun(ifname) as dev:
        buf = bytearray(dev.max_packet_size)
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            dev.readinto(buf, timeout=timeout) if call == "readinto" else dev.read(timeout=timeout)
        elapsed = time.monotonic() - start
        assert elapsed >= timeout  # (a poll waits at least its timeout: rounded up to whole ms)
        assert elapsed < timeout + 10
        assert ifname in str(info.value) and isinstance(info.value, OSError)
        assert not dev.closed  # the device is as usable as before
        dev.blocking = False
        with pytest.raises(BlockingIOError):
            dev.readinto(buf)


@pytest.mark.parametrize("call", ["readinto", "read"])
def test_a_timed_read_returns_what_is_queued_or_comes_in_time(ifname: str, subnet: str, call: str) -> None:
    dev = tun_with_address(ifname, subnet)
    try:
        buf = bytearray(dev.max_packet_size)
        view = memoryview(buf)
        mine = udp_flow(f"{subnet}.2", 9)

        def read() -> bytes:
            if call == "readinto":
                n = dev.readinto(buf, timeout=10)
                return bytes(view[:n])
            return dev.read(timeout=10)

        send_one(subnet, ifname)  # queued before the call
        assert mine(read())
        # Sent while the call waits: the wait ends with the packet, not the timeout.
        sender = threading.Timer(0.2, send_one, (subnet, ifname))
        sender.start()
        try:
            start = time.monotonic()
            assert mine(read())
            assert time.monotonic() - start < 9
        finally:
            sender.join()
        view.release()
    finally:
        dev.close()


@pytest.mark.parametrize("timeout, error", BAD_TIMEOUTS)
def test_a_bad_timeout_fails_before_any_read(ifname: str, subnet: str, timeout: object, error: type) -> None:
    dev = tun_with_address(ifname, subnet)
    try:
        send_one(subnet, ifname)
        buf = bytearray(dev.max_packet_size)
        before = fd_count()
        with pytest.raises(error, match="timeout.* must be"):
            dev.readinto(buf, timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(error, match="timeout.* must be"):
            dev.read(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(error, match="timeout.* must be"):
            dev.write(b"\x45" + bytes(19), timeout=timeout)  # type: ignore[arg-type]
        assert fd_count() == before
        # The queued packet is still there: no call read it.
        dev.blocking = False
        assert udp_flow(f"{subnet}.2", 9)(dev.read())
    finally:
        dev.close()


def test_a_non_blocking_device_ignores_the_timeout(ifname: str) -> None:
    with open_tun(ifname, ipv6=False, nonblocking=True) as dev:
        start = time.monotonic()
        with pytest.raises(BlockingIOError):
            dev.readinto(bytearray(dev.max_packet_size), timeout=5)
        with pytest.raises(BlockingIOError):
            dev.read(timeout=5)
        assert time.monotonic() - start < 4


def in_thread(call: Callable[[], object]) -> Tuple[threading.Thread, List[object], List[BaseException]]:
    """A started thread running *call*; the lists get what it returned or raised."""
    results: List[object] = []
    errors: List[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # noqa: B902 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results, errors


def test_an_infinite_timeout_waits_until_close(ifname: str) -> None:
    dev = quiet_tun(ifname)
    thread, _, errors = in_thread(lambda: dev.readinto(bytearray(dev.max_packet_size), timeout=math.inf))
    try:
        thread.join(0.3)
        assert thread.is_alive() and not errors
    finally:
        dev.close()
        join_task(thread)
    assert len(errors) == 1 and isinstance(errors[0], DeviceClosedError), errors


@pytest.mark.parametrize("backend", ["loop", "io_uring"])
def test_read_batch_with_an_infinite_timeout_waits_for_the_packet(ifname: str, subnet: str, backend: str) -> None:
    """inf means "no limit" for read_batch as for readinto (it raised OverflowError: int(inf * 1000))."""
    if backend == "io_uring":
        require_uring()
    with batch_tun(ifname, subnet, backend) as dev:
        ring = dev.packet_ring(8)
        thread, got, errors = in_thread(lambda: dev.read_batch(ring, timeout=math.inf))
        try:
            thread.join(0.3)
            assert thread.is_alive() and not errors, errors  # waiting, not failed
            send_one(subnet, ifname, 4242)
            join_task(thread)
        finally:
            if thread.is_alive():
                dev.close()
                join_task(thread)
        assert not errors and got == [len(ring)] and len(ring) >= 1, (got, errors)
        assert any(udp_flow(f"{subnet}.2", 4242)(bytes(packet)) for packet in ring)


def test_close_wakes_a_timed_read(ifname: str) -> None:
    dev = quiet_tun(ifname)
    errors: List[BaseException] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        try:
            dev.read(timeout=60)
        except BaseException as exc:  # noqa: B902 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(5)
    time.sleep(0.05)  # (lets it reach the wait; the test holds either way)
    start = time.monotonic()
    dev.close()
    join_task(thread)
    assert time.monotonic() - start < 30
    assert len(errors) == 1 and isinstance(errors[0], DeviceClosedError), errors


def test_a_timed_write_writes(ifname: str, subnet: str) -> None:
    from tuntest import ipv4_udp, receiver

    dev = tun_with_address(ifname, subnet)
    try:
        with receiver(subnet) as rx:
            port = rx.getsockname()[1]
            packet = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, port, b"timed write")
            assert dev.write(packet, timeout=1) == len(packet)
            assert dev.write(bytearray(packet), len(packet), timeout=0) == len(packet)
            assert rx.recv(100) == b"timed write"
            assert rx.recv(100) == b"timed write"
    finally:
        dev.close()


# ----------------------------------------------------------- quiet interfaces


@pytest.mark.parametrize("opener", [open_tun, open_tap])
def test_ipv6_false_keeps_the_interface_quiet(ifname: str, opener: Callable[..., Any]) -> None:
    with opener(ifname, ipv6=False) as dev:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6") as f:
            assert f.read().strip() == "1"  # off before it ever came up
        dev.up()
        with pytest.raises(TimeoutError):  # no MLD report, no router solicitation (they come at once when on)
            got = dev.read(timeout=3)
            raise AssertionError(f"a quiet interface sent {got[:60].hex()}")
        assert not [a for a in dev.addresses if a.interface.version == 6]


def test_without_the_option_an_interface_speaks_ipv6(ifname: str) -> None:
    with open_tun(ifname) as dev:
        dev.up()
        packet = dev.read(timeout=20)
        assert packet[0] >> 4 == 6, packet[:40].hex()


@pytest.mark.parametrize("value", [0, 1, "no", None])
def test_ipv6_must_be_a_bool(ifname: str, value: object) -> None:
    before = fd_count()
    with pytest.raises(TypeError, match="ipv6 must be True or False"):
        open_tun(ifname, ipv6=value)  # type: ignore[arg-type]
    assert fd_count() == before
