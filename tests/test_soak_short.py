"""Soak and leak tests, short form for CI (bench/soak.py is the long form).

Many devices and many packets must leave fds, RSS and interfaces where
they were; a failure injected mid-stream must surface as a clear exception,
never a hang or a silent loss.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import threading
import time
from typing import Callable, List

import pytest

from conftest import fd_count, ip, new_name, our_links
from tuntap_cffi import Device, DeviceNotReadyError, open_tap, open_tun

pytestmark = pytest.mark.device


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_one_thousand_devices(subnet: str) -> None:
    with open_tun(new_name("w")):  # warm-up: lazily made process-wide resources
        pass
    gc.collect()
    fds, rss = fd_count(), rss_kib()
    for i in range(1000):
        opener = open_tun if i % 2 else open_tap
        with opener(new_name("s"), packet_info=bool(i % 3 == 0)) as dev:
            if i % 10 == 0:
                dev.up()
                assert dev.is_up
    gc.collect()
    assert fd_count() == fds
    assert not our_links()
    assert rss_kib() - rss < 8 * 1024, "RSS grew by more than 8 MiB over 1,000 devices"


def flood(subnet: str, count: int, start: int = 0) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(start, start + count):
            s.sendto(i.to_bytes(4, "big"), (f"{subnet}.2", 9))


def drained_sequence(packets: List[bytes]) -> List[int]:
    return [int.from_bytes(p[28:32], "big") for p in packets]


@pytest.fixture
def tun(ifname: str, subnet: str) -> Device:
    dev = open_tun(ifname, nonblocking=True)
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")
    ip("addr", "add", f"{subnet}.1/24", "dev", ifname)
    dev.txqueuelen = 20_000
    dev.up()
    yield dev  # type: ignore[misc]
    dev.close()


ROUND = 10_000


def pump(dev: Device, subnet: str, total: int, drain: Callable[[int], List[int]]) -> None:
    """Send *total* sequence-numbered datagrams in rounds; each drained exactly once, in order."""
    # Warm-up round: the ring's batch engine (an io_uring fd and its maps) is made on first use.
    flood(subnet, 100, 0)
    assert drain(100) == list(range(100))
    gc.collect()
    fds, rss = fd_count(), rss_kib()
    seen = 0
    while seen < total:
        flood(subnet, ROUND, seen)
        got = drain(ROUND)
        assert got == list(range(seen, seen + ROUND)), "lost, duplicated or reordered packets"
        seen += ROUND
    gc.collect()
    assert fd_count() == fds
    assert rss_kib() - rss < 4 * 1024


def test_many_packets_through_readinto(tun: Device, subnet: str) -> None:
    buf = bytearray(tun.max_packet_size)
    view = memoryview(buf)

    def drain(n: int) -> List[int]:
        out = []
        while len(out) < n:
            try:
                k = tun.readinto(buf)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            out.append(int.from_bytes(view[28:32], "big"))
            del k
        return out

    pump(tun, subnet, 100_000, drain)


def test_many_packets_through_read_batch(tun: Device, subnet: str) -> None:
    ring = tun.packet_ring(256)

    def drain(n: int) -> List[int]:
        out: List[int] = []
        while len(out) < n:
            try:
                tun.read_batch(ring)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            out += [int.from_bytes(p[28:32], "big") for p in ring]
        return out

    pump(tun, subnet, 100_000, drain)


def test_many_packets_through_asyncio(tun: Device, subnet: str) -> None:
    ring = tun.packet_ring(256)
    loop = asyncio.new_event_loop()

    async def take(n: int) -> List[int]:
        out: List[int] = []
        while len(out) < n:
            await tun.read_batch_async(ring)
            out += [int.from_bytes(p[28:32], "big") for p in ring]
        return out

    try:
        pump(tun, subnet, 50_000, lambda n: loop.run_until_complete(asyncio.wait_for(take(n), 30)))
    finally:
        loop.close()


@pytest.mark.parametrize("how", ["readinto", "read_batch", "read_async"])
def test_interface_deleted_under_the_reader(ifname: str, subnet: str, how: str) -> None:
    dev = open_tun(ifname)
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
        ip("addr", "add", f"{subnet}.1/24", "dev", ifname)
        dev.up()
        # Down: reads just wait, writes are refused with a clear error.
        ip("link", "set", "dev", ifname, "down")
        with pytest.raises(DeviceNotReadyError) as info:
            dev.write(bytes.fromhex("4500001c00010000401100000000000000000000") + bytes(8))
        assert "down" in str(info.value)
        outcome: List[BaseException] = []

        def reader() -> None:
            try:
                if how == "readinto":
                    dev.readinto(bytearray(dev.max_packet_size))
                elif how == "read_batch":
                    dev.read_batch(dev.packet_ring(8))
                else:
                    asyncio.run(asyncio.wait_for(dev.read_async(), 10))
            except BaseException as exc:  # noqa: BLE001 - inspected below
                outcome.append(exc)

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and not outcome, "a reader of a down interface waits"
        deleted = time.monotonic()
        subprocess.run(["ip", "link", "del", "dev", ifname], check=True)
        t.join(5)
        assert not t.is_alive(), "the reader hangs after its interface was deleted"
        assert len(outcome) == 1 and isinstance(outcome[0], DeviceNotReadyError), outcome
        assert "deleted" in str(outcome[0])
        assert time.monotonic() - deleted < 2
    finally:
        dev.close()
