"""Packets and waits the simulated-BSD Device tests (test_darwin_device, test_freebsd_device) share."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, List, Tuple

from tuntap_cffi import DeviceClosedError


def ipv4(payload: bytes = b"ping", src: int = 1) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0,
                         bytes([198, 18, 0, src]), bytes([198, 18, 0, 2]))
    return header + payload


def ipv6(payload: bytes = b"pong") -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), 17, 64, b"\xfd" + bytes(15), b"\xfd" + bytes(14) + b"\x02") + payload


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def pcap_packets(data: bytes) -> List[bytes]:
    """The packets of a pcap file's bytes (after its 24-byte header)."""
    at, seen = 24, []
    while at < len(data):
        incl = struct.unpack("=IIII", data[at:at + 16])[2]
        seen.append(data[at + 16:at + 16 + incl])
        at += 16 + incl
    return seen


def mixed(count: int) -> List[bytes]:
    """*count* packets of growing sizes, IPv6 and IPv4 in turn."""
    return [ipv4(bytes([i]) * (i + 1)) if i % 2 else ipv6(bytes([i]) * (i + 1)) for i in range(count)]


async def close_fails_a_waiting_read(dev: Any) -> None:
    """A read_async waiting on *dev* ends with DeviceClosedError when *dev* closes."""
    waiting = asyncio.ensure_future(dev.read_async())
    await asyncio.sleep(0)
    dev.close()
    try:
        await asyncio.wait_for(waiting, 10)
    except DeviceClosedError:
        return
    raise AssertionError("the waiting read did not fail with DeviceClosedError")


def polls(kernel: Any) -> int:
    return sum(1 for call in kernel.calls if call[0] == "poll")


def closed_while_waiting(kernel: Any, dev: Any, call: Callable[[], object]) -> BaseException:
    """Run *call* in a thread until it waits in poll, close *dev* here; what the call raised."""
    errors: List[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=run)
    waiter.start()
    wait_for(lambda: polls(kernel) > 0, "the call to poll")
    dev.close()
    assert kernel.interfaces == []  # released at once (the close took the interface with it)
    waiter.join(10)
    assert not waiter.is_alive() and len(errors) == 1, errors
    return errors[0]


def raw_input(peers: Iterable[int], msg: bytes) -> List[int]:
    """A routing message to each PF_ROUTE socket through the kernel's end *peers*: the ones that were full and lost it.

    Both BSDs' ``raw_input`` append a copy to each listener's buffer and drop
    it where the buffer is full (XNU ignores ``sbappendaddr``'s failure;
    FreeBSD's ``soroverflow`` tells the reader only with SO_RERROR).
    """
    dropped = []
    for fd in peers:
        peer = socket.socket(fileno=fd)
        try:
            peer.send(msg, socket.MSG_DONTWAIT)
        except BlockingIOError:
            dropped.append(fd)
        finally:
            peer.detach()
    return dropped


def sysctl_copyout(ffi: Any, table: bytes, oldp: Any, oldlenp: Any) -> bool:
    """sysctl's answer: the size a buffer needs (*oldp* NULL) or *table* copied out; False: the buffer is too small."""
    if oldp == ffi.NULL:
        oldlenp[0] = len(table)
        return True
    if oldlenp[0] < len(table):
        return False  # SYSCTL_OUT: ENOMEM
    ffi.memmove(oldp, table, len(table))
    oldlenp[0] = len(table)
    return True


def dump_two_packets(kernel: Any, ifname: str, path: Path) -> Tuple[int, List[bytes]]:
    """`tuntap-cffi dump IFNAME --count 2 --pcap PATH` while the kernel sends an IPv4 and an IPv6 packet out of
    *ifname* once the dump waits for them: (its exit status, the packets sent).

    *kernel* is a simulated kernel with ``interfaces`` and ``output(ifname, packet)``.  The dump runs in this
    thread (it installs signal handlers: the main thread's); pytest's capsys takes its output.
    """
    from tuntap_cffi.cli import main

    packets = [ipv4(b"one"), ipv6(b"two")]

    def stack() -> None:
        wait_for(lambda: ifname in kernel.interfaces and polls(kernel) > 0, "the dump to wait for packets")
        for packet in packets:
            kernel.output(ifname, packet)

    sender = threading.Thread(target=stack)
    sender.start()
    try:
        status = main(["dump", ifname, "--count", "2", "--pcap", str(path)])
    finally:
        sender.join(10)
    return status, packets
