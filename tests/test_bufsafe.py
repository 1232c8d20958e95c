"""Buffers that change under the Device's cached pointer, and readinto after an MTU raised outside the library.

CPython refuses to resize, close or release a buffer while a cffi pointer
holds an export of it (BufferError); PyPy refuses nothing, and a pointer
taken before the change points at storage that no longer backs the object
(or at freed memory).  Each case changes the buffer the way the interpreter
allows, then checks the contract: the call is refused with ValueError (not
an OSError: nothing reached the kernel, the packet is still queued), or it
uses the buffer's current storage (the packet lands in, or is taken from,
the object the caller holds), and no read reports more bytes than the
buffer holds.  A change the interpreter refuses leaves the buffer as it
was, which must still work.

Traffic: UDP from a socket on *subnet*.1 (bound to the device) to
*subnet*.2, routed into the TUN, or written into the TUN for that socket;
IPv6 is off on the TUN and readers skip what is not the flow under test.
"""

from __future__ import annotations

import array
import asyncio
import importlib.util
import mmap
import os
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator, Optional, Tuple

import pytest

from tuntest import ip, ipv4_udp, parse_ipv4_udp, tap_with_address, tun_with_address, udp_socket
from tuntap_cffi import Device

pytestmark = pytest.mark.device

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None  # in the CPython test extra only


@pytest.fixture
def dev(ifname: str, subnet: str) -> Iterator[Device]:
    with tun_with_address(ifname, subnet, nonblocking=True) as d:
        yield d


@pytest.fixture
def sock(ifname: str, subnet: str, dev: Device) -> Iterator[socket.socket]:
    with udp_socket(subnet, ifname) as s:
        s.settimeout(5)
        yield s


_ports = iter(range(20000, 30000))


def send_to_tun(sock: socket.socket, subnet: str, size: int = 100) -> Tuple[int, bytes]:
    """Send a fresh datagram into the TUN; return (its port, its payload)."""
    port, payload = next(_ports), os.urandom(size)
    sock.sendto(payload, (f"{subnet}.2", port))
    return port, payload


def contents(buf: Any, n: int) -> bytes:
    return bytes(memoryview(buf).cast("B")[:n])


def read_ours(dev: Device, buf: Any, port: int, read: Optional[Callable[[Any], int]] = None, header: int = 0) -> bytes:
    """Read into *buf* until the datagram to *port* is in it; return its payload (bounded in time).

    *header*: bytes in front of the IP packet (tun_pi, Ethernet).
    """
    read = read or dev.readinto
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not select.select([dev], [], [], 0.5)[0]:
            continue
        try:
            n = read(buf)
        except BlockingIOError:
            continue
        assert 0 < n <= len(memoryview(buf).cast("B")), f"read reported {n} bytes into a buffer of {len(buf)}"
        pkt = contents(buf, n)[header:]
        if pkt[0] >> 4 == 4 and pkt[9] == 17 and int.from_bytes(pkt[22:24], "big") == port:
            return parse_ipv4_udp(pkt)[4]
    raise AssertionError(f"the datagram to port {port} did not arrive in the caller's buffer")


def try_change(change: Callable[[], object]) -> bool:
    """Apply *change*; False if the interpreter refused it (CPython, buffer exported)."""
    try:
        change()
    except (BufferError, ValueError):  # numpy says ValueError ("cannot resize ... referenced")
        return False
    return True


def assert_refused(call: Callable[[], object]) -> None:
    """*call* raises ValueError without reaching the kernel."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert not isinstance(info.value, OSError), f"reached the kernel: {info.value!r}"


# --------------------------------------------------------------------- reads

# name: (make a buffer of n bytes, change it, does the changed buffer still fit a packet)
def _bytearray(n: int) -> bytearray:
    return bytearray(n)


def _array(n: int) -> "array.array[int]":
    return array.array("B", bytes(n))


def _numpy(n: int) -> Any:
    import numpy

    return numpy.zeros(n, dtype="uint8")


READ_CASES = {
    "bytearray-extend": (_bytearray, lambda b: b.extend(bytes(4096)), True),
    "bytearray-slice-longer": (_bytearray, lambda b: b.__setitem__(slice(10, 20), bytes(5000)), True),
    "bytearray-shrink": (_bytearray, lambda b: b.__delitem__(slice(10, None)), False),
    "array-extend": (_array, lambda a: a.extend(bytes(4096)), True),
    "array-shrink": (_array, lambda a: a.__delitem__(slice(10, None)), False),
    "mmap-resize": (lambda n: mmap.mmap(-1, n), lambda m: m.resize(len(m) + 65536), True),
    "mmap-close": (lambda n: mmap.mmap(-1, n), lambda m: m.close(), False),
    "memoryview-release": (lambda n: memoryview(bytearray(n)), lambda v: v.release(), False),
}
if HAVE_NUMPY:
    READ_CASES["numpy-resize"] = (_numpy, lambda a: a.resize(len(a) + 65536, refcheck=False), True)
    READ_CASES["numpy-shrink"] = (_numpy, lambda a: a.resize(10, refcheck=False), False)


@pytest.mark.parametrize("way", ["readinto", "readinto_async"])
@pytest.mark.parametrize("case", list(READ_CASES))
def test_readinto_after_the_buffer_changed(dev: Device, sock: socket.socket, subnet: str, case: str, way: str) -> None:
    make, change, fits = READ_CASES[case]
    read: Callable[[Any], int] = dev.readinto
    if way == "readinto_async":
        loop = asyncio.new_event_loop()
        read = lambda b: loop.run_until_complete(asyncio.wait_for(dev.readinto_async(b), 5))  # noqa: E731
    try:
        buf = make(dev.max_packet_size)
        port, payload = send_to_tun(sock, subnet)
        assert read_ours(dev, buf, port, read) == payload  # binds buf: its pointer is cached
        changed = try_change(lambda: change(buf))
        port, payload = send_to_tun(sock, subnet)
        if changed and not fits:
            assert_refused(lambda: read(buf))
            assert read_ours(dev, bytearray(dev.max_packet_size), port) == payload  # still queued
        else:
            assert read_ours(dev, buf, port, read) == payload
    finally:
        if way == "readinto_async":
            loop.close()
        dev.release_buffers()
        if isinstance(buf, mmap.mmap) and not buf.closed:
            buf.close()


def test_readinto_a_buffer_changed_by_another_readers_use(dev: Device, sock: socket.socket, subnet: str) -> None:
    """A bound buffer changed, used again, then changed back to its bound length: still its current storage."""
    buf = bytearray(dev.max_packet_size)
    size = len(buf)
    port, payload = send_to_tun(sock, subnet)
    assert read_ours(dev, buf, port) == payload
    if try_change(lambda: buf.extend(bytes(100_000))):  # moves the storage on PyPy
        port, payload = send_to_tun(sock, subnet)
        assert read_ours(dev, buf, port) == payload
        del buf[size:]  # back to the length first bound, in yet other storage
        port, payload = send_to_tun(sock, subnet)
        assert read_ours(dev, buf, port) == payload


def in_poll(thread: threading.Thread) -> bool:
    """Whether *thread* sits in poll/ppoll now (its /proc syscall line)."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/syscall") as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    return nr in POLL_SYSCALLS


POLL_SYSCALLS = {"x86_64": {"7", "271"}, "aarch64": {"73"}}.get(os.uname().machine, set())


@pytest.mark.skipif(not POLL_SYSCALLS, reason="poll syscall numbers of this machine not listed")
def test_blocked_readinto_uses_the_storage_the_buffer_has_when_the_packet_comes(dev: Device, sock: socket.socket, subnet: str) -> None:
    """A reader blocked in readinto(buf) while another thread resizes buf: the packet lands in buf as it is then."""
    buf = bytearray(dev.max_packet_size)
    port, payload = send_to_tun(sock, subnet)
    assert read_ours(dev, buf, port) == payload  # bound
    dev.blocking = True
    got: "list[object]" = []

    def reader() -> None:
        try:
            got.append(dev.readinto(buf))
        except BaseException as exc:  # noqa: B036 - reported by the test
            got.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not in_poll(thread) and time.monotonic() < deadline:
            time.sleep(0.001)  # polls the reader's state (an event we can only look at)
        assert in_poll(thread), "the reader never blocked"
        try_change(lambda: buf.extend(bytes(100_000)))  # PyPy: new storage; CPython refuses
        port, payload = send_to_tun(sock, subnet)
        thread.join(5)
        assert not thread.is_alive(), "the reader did not wake"
    finally:
        if thread.is_alive():
            dev.close()
            thread.join(5)
    n = got[0]
    assert isinstance(n, int), n
    assert 0 < n <= len(buf)
    pkt = bytes(buf[:n])
    assert parse_ipv4_udp(pkt)[3:] == (port, payload)


# -------------------------------------------------------------------- writes


def write_cases() -> "dict[str, Tuple[Callable[[bytes], Any], Callable[[Any, bytes], None]]]":
    """name: (make a buffer holding a packet, make it hold another packet of another length)."""

    def set_bytearray(b: bytearray, pkt: bytes) -> None:
        b[:] = pkt

    def set_array(a: "array.array[int]", pkt: bytes) -> None:
        a[:] = array.array("B", pkt)

    def set_mmap(m: mmap.mmap, pkt: bytes) -> None:
        m.resize(len(pkt))
        m[:] = pkt

    cases = {
        "bytearray": (bytearray, set_bytearray),
        "bytearray-del-extend": (bytearray, lambda b, pkt: (b.__delitem__(slice(None)), b.extend(pkt))),
        "array": (lambda pkt: array.array("B", pkt), set_array),
        "mmap-resize": (lambda pkt: _mmap_of(pkt), set_mmap),
    }
    if HAVE_NUMPY:
        import numpy

        def set_numpy(a: Any, pkt: bytes) -> None:
            a.resize(len(pkt), refcheck=False)
            a[:] = numpy.frombuffer(pkt, dtype="uint8")

        cases["numpy-resize"] = (lambda pkt: numpy.frombuffer(pkt, dtype="uint8").copy(), set_numpy)
    return cases


def _mmap_of(pkt: bytes) -> mmap.mmap:
    m = mmap.mmap(-1, len(pkt))
    m[:] = pkt
    return m


WRITE_CASES = write_cases()


def rx_bytes(name: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/rx_bytes") as f:
        return int(f.read())


def packet_for(sock: socket.socket, subnet: str, size: int) -> Tuple[bytes, bytes]:
    """(an IPv4/UDP packet from *subnet*.2 to *sock*, its payload)."""
    payload = os.urandom(size)
    return ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, sock.getsockname()[1], payload), payload


@pytest.mark.parametrize("longer", [True, False], ids=["to-longer", "to-shorter"])
@pytest.mark.parametrize("way", ["write", "write-n", "write_batch", "write_async"])
@pytest.mark.parametrize("case", list(WRITE_CASES))
def test_write_after_the_buffer_changed(dev: Device, sock: socket.socket, subnet: str, case: str, way: str, longer: bool) -> None:
    make, refill = WRITE_CASES[case]
    first, first_payload = packet_for(sock, subnet, 300)
    second, second_payload = packet_for(sock, subnet, 900 if longer else 40)
    loop = asyncio.new_event_loop()

    def write(buf: Any, n: int) -> int:
        if way == "write":
            return dev.write(buf)
        if way == "write-n":
            return dev.write(buf, n)
        if way == "write_batch":
            assert dev.write_batch([buf]) == 1
            return n
        return loop.run_until_complete(asyncio.wait_for(dev.write_async(buf), 5))

    buf = make(first)
    try:
        assert write(buf, len(first)) == len(first)  # binds buf: its pointer is cached
        assert sock.recv(2048) == first_payload
        if not try_change(lambda: refill(buf, second)):
            return  # refused (CPython): the buffer could not change
        assert contents(buf, len(second)) == second
        if way == "write-n" and not longer:
            assert_refused(lambda: dev.write(buf, len(first)))  # more than the buffer now holds
        rx = rx_bytes(dev.name)
        assert write(buf, len(second)) == len(second)
        assert sock.recv(2048) == second_payload
        assert rx_bytes(dev.name) - rx == len(second)  # what the kernel took: the buffer's current bytes, no more
    finally:
        loop.close()
        dev.release_buffers()
        if isinstance(buf, mmap.mmap):
            buf.close()


@pytest.mark.parametrize("way", ["write", "write-n", "write_batch"])
@pytest.mark.parametrize("case", ["mmap-close", "memoryview-release"])
def test_write_refuses_a_closed_or_released_buffer(dev: Device, sock: socket.socket, subnet: str, case: str, way: str) -> None:
    pkt, payload = packet_for(sock, subnet, 200)
    buf: Any = _mmap_of(pkt) if case == "mmap-close" else memoryview(bytearray(pkt))
    write: Callable[[], int] = {
        "write": lambda: dev.write(buf),
        "write-n": lambda: dev.write(buf, len(pkt)),
        "write_batch": lambda: dev.write_batch([buf]),
    }[way]
    assert write() in (len(pkt), 1)
    assert sock.recv(2048) == payload
    if try_change(buf.close if case == "mmap-close" else buf.release):
        assert_refused(write)
    else:
        dev.release_buffers()
        buf.close() if case == "mmap-close" else buf.release()


# --------------------------------------------------------- an MTU raised outside

HEADER = {"tun": 0, "tun-pi": 4, "tap": 14}  # bytes in front of the IP packet


@pytest.fixture(params=list(HEADER))
def any_dev(request: pytest.FixtureRequest, ifname: str, subnet: str) -> Iterator[Tuple[Device, int]]:
    """A TUN, a TUN with packet_info, or a TAP (with a static neighbour at *subnet*.2); non-blocking."""
    if request.param == "tap":
        d = tap_with_address(ifname, subnet)
    else:
        d = tun_with_address(ifname, subnet, packet_info=request.param == "tun-pi")
    with d:
        d.blocking = False
        yield d, HEADER[request.param]


@pytest.fixture
def any_sock(ifname: str, subnet: str, any_dev: Tuple[Device, int]) -> Iterator[socket.socket]:
    with udp_socket(subnet, ifname) as s:
        s.settimeout(5)
        yield s


def test_readinto_reports_a_packet_cut_by_an_mtu_raised_outside(any_dev: Tuple[Device, int], ifname: str, any_sock: socket.socket, subnet: str) -> None:
    dev, header = any_dev
    buf = bytearray(dev.max_packet_size)  # for MTU 1500, when bound
    port, payload = send_to_tun(any_sock, subnet)
    assert read_ours(dev, buf, port, header=header) == payload  # bound and checked
    ip("link", "set", "dev", ifname, "mtu", "9000")  # behind the library's back
    port, _ = send_to_tun(any_sock, subnet, 8000)  # one 8,028-byte IPv4 packet out of the device
    with pytest.raises(ValueError, match="cut short") as info:
        read_ours(dev, buf, port, header=header)
    assert not isinstance(info.value, OSError)
    assert_refused(lambda: dev.readinto(buf))  # unbound: re-checked against MTU 9000, too small
    big = bytearray(dev.max_packet_size)
    port, payload = send_to_tun(any_sock, subnet, 8000)
    assert read_ours(dev, big, port, header=header) == payload


def test_readinto_returns_a_packet_that_fills_the_buffer_exactly(any_dev: Tuple[Device, int], ifname: str, any_sock: socket.socket, subnet: str) -> None:
    """MTU raised outside; a whole packet of exactly the bound size: returned, and no syscall judged it.

    A TUN packet shows it is whole (tun_pi's flag, the IP length): returned,
    the buffer stays bound (a full-MTU packet costs no MTU lookup).  A TAP
    frame without tun_pi cannot show it: the MTU is read, and as the buffer
    is now too small the frame counts as cut (the documented rule).
    """
    dev, header = any_dev
    buf = bytearray(dev.max_packet_size)
    port, payload = send_to_tun(any_sock, subnet)
    assert read_ours(dev, buf, port, header=header) == payload
    ip("link", "set", "dev", ifname, "mtu", "9000")
    port, payload = send_to_tun(any_sock, subnet, len(buf) - header - 28)  # fills buf with the IPv4 and UDP headers
    if dev.kind == "tap":
        with pytest.raises(ValueError, match="cut short"):
            read_ours(dev, buf, port, header=header)
        port, payload = send_to_tun(any_sock, subnet)
        assert_refused(lambda: dev.readinto(buf))  # too small for MTU 9000 now: refused before reading
        assert read_ours(dev, bytearray(dev.max_packet_size), port, header=header) == payload
        return
    assert read_ours(dev, buf, port, header=header) == payload
    port, _ = send_to_tun(any_sock, subnet, 8000)  # the first packet it would cut is caught
    with pytest.raises(ValueError, match="cut short"):
        read_ours(dev, buf, port, header=header)
    assert_refused(lambda: dev.readinto(buf))
