"""asyncio on real devices: awaitable reads and writes, cancellation, close, idle cost.

The one asyncio suite: every test runs on each event loop of
``tuntest.LOOPS`` (the ``run`` fixture: the default loop, and uvloop on
CPython; PyPy has none).
Traffic is UDP between the kernel's stack (sockets bound to subnet .1 and
to the TUN: another test process may have a TUN with the same subnet, and
the route would then send our datagrams there) and the TUN (subnet .2 is
routed into it); IPv6 is off on the TUN, and readers still skip anything
that is not the flow under test.

"No reader left registered" is checked two ways: ``loop.remove_reader(fd)``
must return False on selector loops (uvloop's ``remove_reader`` always
returns None, so it proves nothing there), and on every loop a packet is
then queued and the loop must stay idle: a reader left on a readable fd
makes a level-triggered loop call it over and over (a busy loop, measured
with ``time.process_time``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import gc
import os
import random
import socket
import struct
import threading
import time
from typing import Any, Awaitable, Callable, List, Tuple

import pytest

from tuntest import (Runner, bind_to_device, checksum, expected_packet, fd_count, ip, ipv4_udp, is_udp_to, join_task,
                     link_exists, open_fds, parse_ipv4_udp, tun_with_address, tx_dropped, udp_socket)
from tuntap_cffi import Device, DeviceClosedError, PacketRing, open_tun

pytestmark = pytest.mark.device

SEQ = struct.Struct("!Q")


def tun(name: str, subnet: str, **options: Any) -> Device:
    """A TUN with *subnet*.1/24, IPv6 off, up, room for the thousands the race test sends without waiting."""
    return tun_with_address(name, subnet, txqueuelen=8192, **options)


async def next_udp(read: "Callable[[], Awaitable[bytes]]", port: int) -> bytes:
    """Read packets until one is UDP to *port* (the caller's wait_for bounds the time)."""
    while True:
        pkt = await read()
        if is_udp_to(pkt, port):
            return pkt


async def assert_no_reader(run: Runner, dev: Device, queue_packet: Callable[[], object]) -> None:
    """Fail if any reader is still registered for *dev* on the running loop.

    *queue_packet* must put one packet in the device's queue (the caller
    reads it afterwards).  See the module docstring for why two checks.
    """
    fd = dev.fileno()
    if run.kind == "asyncio":
        assert run.loop.remove_reader(fd) is False, "a reader is still registered for the device's fd"
    queue_packet()
    await asyncio.sleep(0.02)  # the packet is queued; the loop's poll sees a readable fd from now on
    cpu = time.process_time()
    await asyncio.sleep(0.25)
    used = time.process_time() - cpu
    assert used < 0.1, f"the loop spun ({used:.3f} s of CPU in 0.25 s) on a readable fd: a reader was left registered"


# ------------------------------------------------------------ 1. reads, writes


def test_read_async_packets_are_byte_exact(run: Runner, ifname: str, subnet: str) -> None:
    payloads = [b"a", os.urandom(200), os.urandom(1400)]
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname) as s:
        sport = s.getsockname()[1]

        async def main() -> List[bytes]:
            for p in payloads:
                s.sendto(p, (f"{subnet}.2", 5001))
            return [await next_udp(dev.read_async, 5001) for _ in payloads]

        got = run(main(), timeout=10)
    for pkt, payload in zip(got, payloads):
        assert type(pkt) is bytes
        assert pkt == expected_packet(pkt, f"{subnet}.1", f"{subnet}.2", sport, 5001, payload)
        assert parse_ipv4_udp(pkt) == (f"{subnet}.1", f"{subnet}.2", sport, 5001, payload)


@pytest.mark.parametrize("wrap", [bytearray, lambda n: memoryview(bytearray(n))], ids=["bytearray", "memoryview"])
def test_readinto_async_waits_then_fills_the_buffer(run: Runner, ifname: str, subnet: str, wrap: Callable[[int], Any]) -> None:
    payload = os.urandom(333)
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname) as s:
        sport = s.getsockname()[1]
        buf = wrap(dev.max_packet_size)

        async def main() -> bytes:
            loop = asyncio.get_running_loop()
            # Nothing is queued yet: the read has to wait on the loop for the datagram.
            loop.call_later(0.1, s.sendto, payload, (f"{subnet}.2", 5002))
            t0 = time.monotonic()
            while True:
                n = await dev.readinto_async(buf)
                pkt = bytes(buf[:n])
                if is_udp_to(pkt, 5002):
                    assert time.monotonic() - t0 >= 0.09, "the read returned before the datagram was sent"
                    return pkt

        pkt = run(main(), timeout=10)
    assert pkt == expected_packet(pkt, f"{subnet}.1", f"{subnet}.2", sport, 5002, payload)


def test_async_for_yields_packets_in_order_and_ends_on_close(run: Runner, ifname: str, subnet: str) -> None:
    dev = tun(ifname, subnet)
    try:
        with udp_socket(subnet, ifname, connect_port=5003) as s:

            async def main() -> Tuple[List[bytes], str]:
                got: List[bytes] = []
                all_in = asyncio.Event()

                async def iterate() -> str:
                    async for pkt in dev:
                        assert type(pkt) is bytes
                        if is_udp_to(pkt, 5003):
                            got.append(parse_ipv4_udp(pkt)[4])
                            if len(got) == 20:
                                all_in.set()
                    return "ended"

                it = asyncio.ensure_future(iterate())
                for i in range(20):
                    s.send(SEQ.pack(i))
                    if i % 7 == 0:
                        await asyncio.sleep(0.01)  # some arrive while the iterator waits, some queue up
                await asyncio.wait_for(all_in.wait(), 5)
                await asyncio.sleep(0.05)
                assert not it.done(), "the iteration ended while the device was open"
                dev.close()  # the iterator waits for the next packet: closing must end the loop, not raise
                return got, await asyncio.wait_for(it, 2)

            got, how = run(main(), timeout=15)
        assert how == "ended"
        assert got == [SEQ.pack(i) for i in range(20)]
        assert not link_exists(ifname)

        async def on_closed() -> List[bytes]:
            return [pkt async for pkt in dev]

        assert run(on_closed(), timeout=2) == []  # a closed device: the iteration ends at once
    finally:
        dev.close()


def test_write_async_reaches_a_bound_socket(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        bind_to_device(s, ifname)
        s.bind((f"{subnet}.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        first = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4242, port, os.urandom(300))
        buf = bytearray(dev.max_packet_size)
        second = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4243, port, b"second")
        buf[: len(second)] = second

        async def main() -> List[Tuple[bytes, Any]]:
            loop = asyncio.get_running_loop()
            assert await dev.write_async(first) == len(first)
            assert await dev.write_async(buf, len(second)) == len(second)  # the first n bytes of a buffer
            assert await dev.write_async(memoryview(second)) == len(second)
            return [await loop.run_in_executor(None, s.recvfrom, 2048) for _ in range(3)]

        got = run(main(), timeout=10)
    assert got[0] == (parse_ipv4_udp(first)[4], (f"{subnet}.2", 4242))
    assert got[1] == got[2] == (b"second", (f"{subnet}.2", 4243))


def test_read_batch_async_fills_the_ring(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5004) as s:
        ring = dev.packet_ring(8)

        async def main() -> Tuple[List[int], List[bytes], float]:
            counts: List[int] = []
            got: List[bytes] = []
            for i in range(30):  # queued before the first call: 8 + 8 + 8 + 6
                s.send(SEQ.pack(i))
            while len(got) < 30:
                n = await dev.read_batch_async(ring)
                assert n == len(ring) > 0
                counts.append(n)
                got.extend(bytes(p[28:]) for p in ring if is_udp_to(p, 5004))
            # An empty queue: the call waits for the next datagram.
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, s.send, SEQ.pack(30))
            t0 = time.monotonic()
            n = await dev.read_batch_async(ring)
            waited = time.monotonic() - t0
            got.extend(bytes(p[28:]) for p in ring if is_udp_to(p, 5004))
            return counts, got, waited

        counts, got, waited = run(main(), timeout=10)
        ring_slots = ring.slots
    assert got == [SEQ.pack(i) for i in range(31)]
    assert counts[:3] == [ring_slots] * 3, f"queued packets did not fill the ring: {counts}"
    assert waited >= 0.09


def test_bad_arguments_are_refused_before_waiting(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev:

        async def main() -> None:
            with pytest.raises(ValueError):
                await dev.readinto_async(bytearray(100))  # smaller than max_packet_size: would truncate
            with pytest.raises(TypeError):
                await dev.readinto_async(bytes(dev.max_packet_size))  # read-only
            with pytest.raises(TypeError):
                await dev.write_async("not bytes")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await dev.write_async(bytearray(40), 41)
            with pytest.raises(TypeError):
                await dev.read_batch_async([bytearray(2000)])  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await dev.read_batch_async(PacketRing(4, 100))  # slots too small
            if run.kind == "asyncio":
                assert run.loop.remove_reader(dev.fileno()) is False

        run(main(), timeout=5)


def test_closed_device_raises_at_once(run: Runner, ifname: str, subnet: str) -> None:
    dev = tun(ifname, subnet)
    dev.close()

    async def main() -> None:
        for coro in (dev.read_async(), dev.readinto_async(bytearray(70000)), dev.write_async(b"\x45" + bytes(27))):
            with pytest.raises(DeviceClosedError):
                await asyncio.wait_for(coro, 1)

    run(main(), timeout=5)


# ------------------------------------------------------- 2. concurrent flows


def reverse_reply(buf: bytearray, n: int, server: bytes, port: int) -> bool:
    """Turn a UDP request to server:port in *buf* into the reply (payload reversed); False if not one."""
    if n < 28 or buf[0] != 0x45 or buf[9] != 17 or buf[16:20] != server or (buf[22] << 8 | buf[23]) != port:
        return False
    src, dst = bytes(buf[12:16]), bytes(buf[16:20])
    buf[12:16], buf[16:20] = dst, src
    sport, dport = bytes(buf[20:22]), bytes(buf[22:24])
    buf[20:22], buf[22:24] = dport, sport
    buf[28:n] = buf[28:n][::-1]  # a changed payload: the checksums must really be recomputed
    buf[10:12] = b"\0\0"
    buf[10:12] = struct.pack("!H", checksum(bytes(buf[:20])))
    buf[26:28] = b"\0\0"
    pseudo = bytes(buf[12:20]) + struct.pack("!BBH", 0, 17, n - 20)
    buf[26:28] = struct.pack("!H", checksum(pseudo + bytes(buf[20:n])) or 0xFFFF)
    return True


def test_echo_responder_serves_concurrent_clients(run: Runner, ifname: str, subnet: str) -> None:
    """A UDP responder on the TUN (readinto_async/write_async) answers 8 clients at once:
    4 in threads with blocking sockets, 4 as coroutines on the same loop (sock_sendall/sock_recv)."""
    server_ip, port, rounds = f"{subnet}.2", 7007, 25
    with tun(ifname, subnet) as dev:

        def thread_client(k: int) -> int:
            with udp_socket(subnet, ifname, connect_port=port) as s:
                s.settimeout(5)
                for i in range(rounds):
                    msg = f"thread {k} request {i} ".encode() + os.urandom(16)
                    s.send(msg)
                    assert s.recv(2048) == msg[::-1]
            return rounds

        async def async_client(k: int) -> int:
            loop = asyncio.get_running_loop()
            with udp_socket(subnet, ifname, connect_port=port) as s:
                s.setblocking(False)
                for i in range(rounds):
                    msg = f"coroutine {k} request {i} ".encode() + os.urandom(16)
                    await loop.sock_sendall(s, msg)
                    assert await asyncio.wait_for(loop.sock_recv(s, 2048), 5) == msg[::-1]
            return rounds

        async def responder(served: List[int]) -> None:
            buf = bytearray(dev.max_packet_size)
            server = socket.inet_aton(server_ip)
            while True:
                n = await dev.readinto_async(buf)
                if reverse_reply(buf, n, server, port):
                    assert await dev.write_async(buf, n) == n
                    served[0] += 1

        async def main() -> Tuple[List[int], int]:
            served = [0]
            task = asyncio.ensure_future(responder(served))
            loop = asyncio.get_running_loop()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                results = await asyncio.gather(
                    *(loop.run_in_executor(pool, thread_client, k) for k in range(4)),
                    *(async_client(k) for k in range(4)),
                )
            assert not task.done(), task  # the responder must not have died
            task.cancel()
            return list(results), served[0]

        results, served = run(main(), timeout=60)
    assert results == [rounds] * 8
    assert served == 8 * rounds


def test_two_readers_on_one_device_both_get_packets(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5005) as s:

        async def main() -> List[bytes]:
            readers = [asyncio.ensure_future(next_udp(dev.read_async, 5005)) for _ in range(2)]
            await asyncio.sleep(0.05)  # both wait
            s.send(b"one")
            await asyncio.sleep(0.1)
            s.send(b"two")
            done, pending = await asyncio.wait(readers, timeout=1)
            for t in pending:
                t.cancel()
            assert not pending, f"{len(pending)} of 2 readers still waiting 1 s after both packets were queued"
            return sorted(parse_ipv4_udp(t.result())[4] for t in done)

        assert run(main(), timeout=10) == [b"one", b"two"]


def test_traffic_stays_on_our_device_when_another_has_our_subnet(run: Runner, ifnames: Any, subnet: str) -> None:
    """The premise of every test here: another TUN with the same /24 (another
    test process's, made first, so the kernel routes the prefix to it) gets
    none of our datagrams, and ours gets them all (issue 13, item 6)."""
    neighbour, ours = ifnames(), ifnames()
    with tun(neighbour, subnet, nonblocking=True) as other, tun(ours, subnet) as dev, \
            udp_socket(subnet, ours, connect_port=5012) as s:
        assert f"dev {neighbour} " in ip("route", "get", f"{subnet}.2"), "the precondition: the route prefers the neighbour"

        async def main() -> bytes:
            s.send(b"ours")
            return await next_udp(dev.read_async, 5012)

        assert parse_ipv4_udp(run(main(), timeout=5))[4] == b"ours"
        with pytest.raises(BlockingIOError):
            other.read()


def test_loops_in_two_threads_share_a_device_each_packet_once_and_intact(run: Runner, ifname: str, subnet: str) -> None:
    total, size = 10000, 200
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5008) as s:
        dropped0 = tx_dropped(ifname)
        results: List[List[bytes]] = [[], []]
        errors: List[BaseException] = []
        stop = threading.Event()

        def reader(k: int) -> None:
            async def main() -> None:
                while not stop.is_set():
                    try:
                        pkt = await asyncio.wait_for(dev.read_async(), 0.2)
                    except asyncio.TimeoutError:
                        continue
                    if is_udp_to(pkt, 5008):
                        results[k].append(pkt[28:])

            loop = run.new_loop()
            try:
                loop.run_until_complete(main())
            except BaseException as exc:
                errors.append(exc)
            finally:
                loop.close()

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 20
            for i in range(total):
                s.send(SEQ.pack(i) * (size // SEQ.size))  # a packet's payload: its number, repeated
                while i - sum(map(len, results)) > 2000 and time.monotonic() < deadline:
                    time.sleep(0.001)  # a window well inside the queue: slow readers must not cause drops
            deadline = time.monotonic() + 10
            while sum(map(len, results)) < total and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        dropped = tx_dropped(ifname) - dropped0
    assert not errors, errors
    assert dropped == 0, f"the interface dropped {dropped} packets: the check below would be void"
    got = results[0] + results[1]
    mixed = [p for p in got if p != p[: SEQ.size] * (size // SEQ.size)]
    seqs = sorted(SEQ.unpack_from(p)[0] for p in got)
    assert not mixed, f"{len(mixed)} packets are a mix of two"
    assert seqs == list(range(total)), f"{len(seqs)} received, {len(set(seqs))} distinct, of {total} sent"
    assert results[0] and results[1], "one thread got every packet: the test proved nothing"


def test_read_batch_async_refuses_bad_min_packets(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5009) as s:
        ring = dev.packet_ring(8)

        async def main() -> None:
            for bad, exc in ((0, ValueError), (-5, ValueError), ("x", TypeError), (2.5, TypeError), (True, TypeError)):
                s.send(b"queued")  # so a call that does not refuse returns at once instead of waiting
                with pytest.raises(exc):
                    await asyncio.wait_for(dev.read_batch_async(ring, min_packets=bad), 2)  # type: ignore[arg-type]
            for bad_timeout, exc in ((-1, ValueError), (float("nan"), ValueError), ("1", TypeError), (True, TypeError)):
                s.send(b"queued")
                with pytest.raises(exc):
                    await asyncio.wait_for(dev.read_batch_async(ring, timeout=bad_timeout), 2)  # type: ignore[arg-type]

        run(main(), timeout=10)


def test_read_batch_async_waits_for_min_packets_or_timeout(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5010) as s:
        ring = dev.packet_ring(16)

        def ours() -> List[bytes]:
            return [bytes(p[28:]) for p in ring if is_udp_to(p, 5010)]

        async def main() -> None:
            loop = asyncio.get_running_loop()
            # min_packets=5: two queued now, three more over 0.15 s; one call returns all five.
            s.send(SEQ.pack(0))
            s.send(SEQ.pack(1))
            for i in range(2, 5):
                loop.call_later(0.05 * (i - 1), s.send, SEQ.pack(i))
            t0 = time.monotonic()
            n = await dev.read_batch_async(ring, min_packets=5)
            assert time.monotonic() - t0 >= 0.14
            assert n == len(ring) >= 5
            assert ours() == [SEQ.pack(i) for i in range(5)]
            # A timeout ends the wait with fewer than min_packets (here 2 of 5) ...
            s.send(SEQ.pack(5))
            s.send(SEQ.pack(6))
            t0 = time.monotonic()
            n = await dev.read_batch_async(ring, min_packets=5, timeout=0.1)
            assert 0.09 <= time.monotonic() - t0 < 2
            assert n == len(ring) and ours() == [SEQ.pack(5), SEQ.pack(6)]
            # ... or with none, and leaves no reader behind.
            n = await dev.read_batch_async(ring, timeout=0.05)
            assert n == len(ring) == 0
            await assert_no_reader(run, dev, lambda: s.send(SEQ.pack(7)))
            # timeout=0 is a non-blocking batch: what is queued, at once.
            n = await dev.read_batch_async(ring, timeout=0)
            assert ours() == [SEQ.pack(7)]
            # min_packets above the ring's size: a full ring is enough.
            for i in range(8, 8 + ring.slots):
                s.send(SEQ.pack(i))
            n = await asyncio.wait_for(dev.read_batch_async(ring, min_packets=1000), 5)
            assert n == ring.slots and ours() == [SEQ.pack(i) for i in range(8, 8 + ring.slots)]

        run(main(), timeout=15)


def test_read_batch_async_cancelled_midway_returns_its_packets_with_the_next_call(run: Runner, ifname: str,
                                                                                 subnet: str) -> None:
    """Packets a cancelled call had read come first in the next call on the ring: none lost, none twice."""
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5011) as s:
        ring = dev.packet_ring(16)

        async def main() -> None:
            s.send(SEQ.pack(0))
            s.send(SEQ.pack(1))
            task = asyncio.ensure_future(dev.read_batch_async(ring, min_packets=5))
            await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await assert_no_reader(run, dev, lambda: s.send(SEQ.pack(2)))
            await dev.read_batch_async(ring, min_packets=3)
            assert [bytes(p[28:]) for p in ring if is_udp_to(p, 5011)] == [SEQ.pack(0), SEQ.pack(1), SEQ.pack(2)]

        run(main(), timeout=10)


# ------------------------------------------------------------ 3. cancellation


READ_METHODS = ["read_async", "readinto_async", "read_batch_async"]


def reader_for(dev: Device, method: str) -> Callable[[], Awaitable[List[bytes]]]:
    """An awaitable read by *method* returning the packets it got (read_batch_async: several)."""
    buf = bytearray(dev.max_packet_size)
    ring = dev.packet_ring(16)

    async def read_async() -> List[bytes]:
        return [await dev.read_async()]

    async def readinto_async() -> List[bytes]:
        n = await dev.readinto_async(buf)
        return [bytes(buf[:n])]

    async def read_batch_async() -> List[bytes]:
        await dev.read_batch_async(ring)
        return [bytes(p) for p in ring]

    return {"read_async": read_async, "readinto_async": readinto_async, "read_batch_async": read_batch_async}[method]


@pytest.mark.parametrize("method", READ_METHODS)
def test_cancelled_read_loses_no_packet_and_leaves_no_reader(run: Runner, ifname: str, subnet: str, method: str) -> None:
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5006) as s:
        read = reader_for(dev, method)

        async def main() -> List[bytes]:
            task = asyncio.ensure_future(read())
            await asyncio.sleep(0.05)
            assert not task.done(), "nothing was sent, yet the read finished"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The packet arrives after the cancel; the reader that was waiting must not have taken it.
            await assert_no_reader(run, dev, lambda: s.send(b"after the cancel"))
            got: List[bytes] = []
            while not any(is_udp_to(p, 5006) for p in got):
                got.extend(await read())
            return [p for p in got if is_udp_to(p, 5006)]

        got = run(main(), timeout=10)
    assert [parse_ipv4_udp(p)[4] for p in got] == [b"after the cancel"]


def test_cancel_storm_while_packets_flow_every_packet_read_exactly_once(run: Runner, ifname: str, subnet: str) -> None:
    """Reads are cancelled at random moments (before they start, while they wait, just after the
    wakeup) while a thread sends numbered datagrams; the reads that complete get each one exactly
    once and in order."""
    total = 4000
    with tun(ifname, subnet) as dev, udp_socket(subnet, ifname, connect_port=5007) as s:
        readers = [reader_for(dev, m) for m in READ_METHODS]
        dropped0 = tx_dropped(ifname)
        rng = random.Random(20240611)
        seqs: List[int] = []

        def send_all() -> None:
            for i in range(total):
                s.send(SEQ.pack(i))
                if i % 20 == 19:
                    # Bursts of 20, each once the readers have drained the last: many reads
                    # then find the queue empty and wait, however loaded the box (a fixed
                    # pause was not enough: on a busy one the queue never ran dry).
                    deadline = time.monotonic() + 5
                    while len(seqs) <= i and time.monotonic() < deadline:
                        time.sleep(0.0005)
                    time.sleep(0.001)

        async def main() -> Tuple[List[int], int, int, int]:
            cancelled = cancelled_waiting = completed = 0
            sender = threading.Thread(target=send_all)
            sender.start()
            try:
                while len(seqs) < total:
                    read = readers[rng.randrange(3)]
                    how = rng.randrange(4)
                    if how == 3:  # wait_for cancels the read when its deadline passes
                        try:
                            got = await asyncio.wait_for(read(), rng.uniform(0, 0.002))
                        except asyncio.TimeoutError:
                            cancelled += 1
                            continue
                    else:
                        task = asyncio.ensure_future(read())
                        for _ in range(how):  # 0: cancelled before it runs; 1-2: usually while waiting
                            await asyncio.sleep(0)
                        if rng.random() < 0.85:
                            cancelled_waiting += how > 0 and not task.done()
                            task.cancel()
                        # Unlike `await task`, wait() does not swallow a cancel of main() (the test's timeout).
                        await asyncio.wait({task}, timeout=2.0)
                        if not task.done():  # nothing came for 2 s: what is missing now was lost
                            task.cancel()
                            await asyncio.wait({task})
                            return seqs, cancelled, cancelled_waiting, completed
                        if task.cancelled():
                            cancelled += 1
                            continue
                        got = task.result()
                    completed += 1
                    seqs.extend(SEQ.unpack_from(p, 28)[0] for p in got if is_udp_to(p, 5007))
            finally:
                await asyncio.get_running_loop().run_in_executor(None, sender.join)
            await assert_no_reader(run, dev, lambda: s.send(SEQ.pack(total)))
            last = await next_udp(dev.read_async, 5007)
            seqs.append(SEQ.unpack_from(last, 28)[0])
            return seqs, cancelled, cancelled_waiting, completed

        seqs, cancelled, cancelled_waiting, completed = run(main(), timeout=60)
        dropped = tx_dropped(ifname) - dropped0
    assert dropped == 0, f"the interface dropped {dropped} packets: the check below would be void"
    missing = sorted(set(range(total + 1)) - set(seqs))
    assert seqs == list(range(total + 1)), (
        f"{len(seqs)} received for {total + 1} sent; missing {missing[:10]}; "
        f"first out of order at {next((i for i, q in enumerate(seqs) if q != i), None)}"
    )
    # The storm really happened: many reads were cancelled while they waited, many completed.
    assert cancelled > 150 and cancelled_waiting > 30 and completed > 100, (cancelled, cancelled_waiting, completed)


# ------------------------------------------------------------------- 4. close


@pytest.mark.parametrize("closer", ["loop_thread", "other_thread", "other_thread_while_the_loop_polls"])
def test_close_wakes_every_waiter_and_frees_everything(run: Runner, ifnames: Any, subnet: str, closer: str) -> None:
    """close() fails every waiting read with DeviceClosedError, ends async iteration, frees the fd.

    Closed on the loop's thread; from another thread while the loop is
    blocked (the wakeups queue up on it); or from another thread while the
    loop sits in its poll, which the close must wake.
    """
    open_tun(ifnames()).close()  # the process-wide /dev/null fd close() uses exists from now on
    gc.collect()
    fds_before = fd_count()
    name = ifnames()
    dev = tun(name, subnet)
    fd = dev.fileno()
    closing = threading.Thread(target=dev.close)

    async def main() -> Tuple[List[Any], str]:
        buf = bytearray(dev.max_packet_size)
        ring = dev.packet_ring(8)

        async def iterate() -> str:
            async for _ in dev:
                pass
            return "ended"

        waiters = [asyncio.ensure_future(c) for c in (
            dev.read_async(), dev.read_async(), dev.read_async(), dev.readinto_async(buf), dev.read_batch_async(ring),
        )]
        iteration = asyncio.ensure_future(iterate())
        await asyncio.sleep(0.1)
        assert not any(t.done() for t in waiters + [iteration]), "a read finished with nothing sent"
        t0 = time.monotonic()
        if closer == "loop_thread":
            dev.close()
        elif closer == "other_thread_while_the_loop_polls":
            closing.start()  # not joined here: close() runs while the loop goes on, mostly asleep in its poll
        else:
            closing.start()
            closing.join()  # blocks this loop: the wakeups are queued on it, not run yet
            assert not link_exists(name), "the interface outlived close()"
            # The number stays taken (by /dev/null) until this loop has unregistered it.
            assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null"
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 2)
        how = await asyncio.wait_for(iteration, 2)
        assert time.monotonic() - t0 < 1.0, "waking the waiters took more than a second"
        ring.close()
        return list(results), how

    results, how = run(main(), timeout=15)
    if closing.ident is not None:
        join_task(closing)
    assert how == "ended"
    assert all(isinstance(r, DeviceClosedError) for r in results), results
    assert all(r.errno == errno.EBADF and r.filename == name for r in results)
    if run.kind == "asyncio":
        assert run.loop.remove_reader(fd) is False
    assert not link_exists(name)
    del results
    gc.collect()
    assert fd_count() == fds_before, open_fds()


# --------------------------------------------------------------- 5. idle cost


def test_a_waiting_read_uses_no_cpu(run: Runner, ifname: str, subnet: str) -> None:
    with tun(ifname, subnet) as dev:

        async def main() -> float:
            task = asyncio.ensure_future(dev.read_async())
            await asyncio.sleep(0.05)
            cpu = time.process_time()
            await asyncio.sleep(1.0)
            used = time.process_time() - cpu
            assert not task.done(), "nothing was sent, yet the read finished"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return used

        used = run(main(), timeout=10)
    assert used < 0.05, f"{used:.3f} s of CPU while one read waited 1 s: the wait polls"
