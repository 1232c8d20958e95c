"""asyncio on real devices: reads, writes, cancellation, close, on the default loop and uvloop."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import socket
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Iterator

import pytest

from conftest import bind_to_device, fd_count, ip
from packets import ipv4_udp, parse_ipv4_udp
from tuntap_cffi import Device, DeviceClosedError, open_tun

pytestmark = pytest.mark.device

LOOPS: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
if importlib.util.find_spec("uvloop") is not None:  # in the CPython test extra
    import uvloop  # type: ignore[import-not-found]

    LOOPS["uvloop"] = uvloop.new_event_loop


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[Any]], Any]]:
    loop = LOOPS[request.param]()

    def run_(coro: Awaitable[Any]) -> Any:
        return loop.run_until_complete(asyncio.wait_for(coro, 20))

    yield run_
    loop.close()


@pytest.fixture
def tun(ifname: str, subnet: str) -> Iterator[Device]:
    dev = open_tun(ifname)
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")
    ip("addr", "add", f"{subnet}.1/24", "dev", ifname)
    dev.up()
    yield dev
    dev.close()


def bound_socket(dev: Device) -> socket.socket:
    """A UDP socket bound to *dev*: another interface with the same subnet (another test process) gets none of it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bind_to_device(s, dev.name)
    return s


def send(dev: Device, subnet: str, payload: bytes, port: int = 9) -> None:
    with bound_socket(dev) as s:
        s.sendto(payload, (f"{subnet}.2", port))


def test_read_async_and_async_for(tun: Device, subnet: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> list:  # type: ignore[type-arg]
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, send, tun, subnet, b"first")
        first = await tun.read_async()
        for i in range(5):
            send(tun, subnet, b"seq%d" % i)
        got = [first]
        async for packet in tun:
            got.append(packet)
            if len(got) == 6:
                break
        return got

    got = run(main())
    assert [parse_ipv4_udp(p)[4] for p in got] == [b"first"] + [b"seq%d" % i for i in range(5)]


def test_readinto_async_write_async_and_batch(tun: Device, subnet: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        buf = bytearray(tun.max_packet_size)
        send(tun, subnet, b"into")
        n = await tun.readinto_async(buf)
        assert parse_ipv4_udp(bytes(buf[:n]))[4] == b"into"
        with bound_socket(tun) as s:
            s.bind((f"{subnet}.1", 0))
            s.setblocking(False)
            pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 7, s.getsockname()[1], b"written")
            assert await tun.write_async(pkt) == len(pkt)
            data = await asyncio.get_running_loop().sock_recv(s, 100)
            assert data == b"written"
        ring = tun.packet_ring(16)
        for i in range(5):
            send(tun, subnet, b"b%d" % i)
        got = 0
        while got < 5:
            got += await tun.read_batch_async(ring)
        assert got == 5

    run(main())


def test_cancelled_read_loses_nothing_and_leaves_no_reader(tun: Device, subnet: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> bytes:
        task = asyncio.ensure_future(tun.read_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not asyncio.get_running_loop().remove_reader(tun.fileno()), "a reader was left registered"
        send(tun, subnet, b"after cancel")
        return await tun.read_async()

    assert parse_ipv4_udp(run(main()))[4] == b"after cancel"


def test_close_wakes_every_waiter(ifname: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    gc.collect()
    before = fd_count()

    async def main() -> list:  # type: ignore[type-arg]
        dev = open_tun(ifname)
        tasks = [asyncio.ensure_future(dev.read_async()) for _ in range(3)]
        await asyncio.sleep(0.05)
        dev.close()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, DeviceClosedError) for r in results), results
    gc.collect()
    assert fd_count() == before
    assert not os.path.exists(f"/sys/class/net/{ifname}")


def test_close_from_another_thread_wakes_the_waiter(ifname: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> float:
        dev = open_tun(ifname)
        task = asyncio.ensure_future(dev.read_async())
        await asyncio.sleep(0.05)
        closed_at = time.monotonic()
        threading.Thread(target=dev.close).start()
        with pytest.raises(DeviceClosedError):
            await task
        return time.monotonic() - closed_at

    assert run(main()) < 0.2
    assert not os.path.exists(f"/sys/class/net/{ifname}")


def test_waiting_uses_no_cpu(tun: Device, run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> float:
        t0 = time.process_time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(tun.read_async(), 1.0)
        return time.process_time() - t0

    assert run(main()) < 0.1, "waiting for a packet must not busy-poll"
