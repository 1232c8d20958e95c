"""A Device on macOS (utun), against the simulated XNU kernel of ``darwin_kernel.py`` (runs on Linux).

The seam: :func:`darwin_kernel.running_as_macos` points, inside this very
process, the capability table and backend chosen at import at macOS's and
``tuntap_cffi._darwin.libc`` at the simulated kernel, and replaces every
Linux libc function the core could reach by one that fails (a test fails
if one is reached: every C call of a macOS Device must go through the
darwin boundary).  In-process rather than a child with ``sys.platform =
"darwin"`` (as test_platform.py does for imports): threads, asyncio, fd
counts and the kernel's record of calls must be the test's own, a failing
test cleans up through its fixture, and PyPy starts no interpreter per
test.  The utun fds are real AF_UNIX datagram socketpairs, so blocking,
poll, close() from another thread and fd counts are real.
"""

from __future__ import annotations

import asyncio
import errno
import io
import struct
import threading
import time
from typing import Any, Iterator, List

import pytest

from bsd_packets import (close_fails_a_waiting_read, closed_while_waiting, dump_two_packets, ipv4, ipv6, mixed,
                         pcap_packets, polls, wait_for)
from darwin_kernel import AF_INET, AF_INET6, E, XnuKernel, running_as_macos
from xnu_net import XnuNetKernel
from tuntest import fd_count
from tuntap_cffi import DeviceClosedError, InvalidPacketError, open_tun
from tuntap_cffi import BatchWriteError
from tuntap_cffi._utun_device import UtunDevice
from tuntap_cffi.pcap import LINKTYPE_RAW, PcapWriter


@pytest.fixture
def xnu() -> Iterator[XnuKernel]:
    # With its network side: a macOS Device reads its MTU with SIOCGIFMTU (max_packet_size).
    with running_as_macos(XnuNetKernel()) as kernel:
        yield kernel


def warm_up(kernel: XnuKernel) -> None:
    """Open and close one device: the process-wide /dev/null fd of close() is opened once."""
    open_tun().close()


# ------------------------------------------------------------ opening

def test_open_tun_on_macos_is_a_utun_device(xnu: XnuKernel) -> None:
    before = fd_count()
    with open_tun() as dev:
        assert isinstance(dev, UtunDevice)
        assert dev.name == str(dev) == "utun0" and xnu.interfaces == ["utun0"]
        assert dev.fileno() in xnu.sockets and not dev.packet_info and dev.blocking
    assert xnu.interfaces == []
    with open_tun("utun3", packet_info=True, nonblocking=True) as dev:
        assert dev.name == "utun3" and dev.packet_info and not dev.blocking
    assert fd_count() == before + 1  # the process-wide /dev/null that close() copies over the number
    assert any(call[0] == "dup2" for call in xnu.calls)  # close() put /dev/null over the number


def test_what_macos_lacks_fails_before_any_call(xnu: XnuKernel) -> None:
    from tuntap_cffi import UnsupportedPlatformError, open_tap

    for call in (lambda: open_tap(persist=True), lambda: open_tun(persist=True), lambda: open_tun(vnet_hdr=True),
                 lambda: open_tun(multi_queue=True), lambda: open_tun(broadcast=True),
                 lambda: open_tun("tun3", broadcast=True)):  # (a utun, then a tuntaposx node: both point-to-point)
        with pytest.raises(UnsupportedPlatformError):
            call()
    assert xnu.calls == []


# ------------------------------------------------------------ reading

def test_readinto_puts_the_packet_at_buffer_zero_with_one_readv(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        big = bytearray(dev.max_packet_size + 8)
        into = memoryview(big)[8:]  # the caller's own storage, at an offset
        packet = ipv4(b"x" * 100)
        xnu.output(dev.name, ipv6())
        assert dev.readinto(into) == len(ipv6())  # the first read binds the buffer (its size against the MTU)
        xnu.output(dev.name, packet)
        mark = len(xnu.calls)
        n = dev.readinto(into)
        assert n == len(packet) and bytes(big[8:8 + n]) == packet
        assert big[:8] == bytes(8)  # nothing before buf[0]: the header went to the scratch
        assert xnu.calls[mark:] == [("readv", dev.fileno(), 2)]  # one call, two iovecs
        xnu.output(dev.name, ipv6())
        assert dev.read() == ipv6()


def test_reads_and_writes_allocate_nothing_per_packet(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_tun() as dev:
        buf = bytearray(dev.max_packet_size)
        packet = bytearray(ipv4())
        xnu.output(dev.name, bytes(packet))
        dev.readinto(buf)
        dev.write(packet)  # the first use of each buffer (and thread) makes its iovecs
        xnu.input(dev.name)
        made: List[Any] = []
        real_new = xnu.ffi.new
        monkeypatch.setattr(xnu.ffi, "new", lambda *a: made.append(a) or real_new(*a))
        for _ in range(20):
            xnu.output(dev.name, bytes(packet))
            assert dev.readinto(buf) == len(packet)
            assert dev.write(packet) == len(packet)
            assert dev.write(buf, len(packet)) == len(packet)
        assert made == []
        monkeypatch.undo()
        assert [xnu.input(dev.name)[1] for _ in range(40)] == [bytes(packet)] * 40


def test_a_buffer_smaller_than_max_packet_size_is_refused_before_any_call(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        limit = dev.max_packet_size
        mark = len(xnu.calls)
        with pytest.raises(ValueError, match="smaller than"):
            dev.readinto(bytearray(limit - 1))
        with pytest.raises(TypeError):
            dev.readinto(b"read-only")  # type: ignore[arg-type]
        assert [call for call in xnu.calls[mark:] if call[0] in ("read", "readv")] == []  # (the MTU is asked)


def test_max_packet_size_counts_the_header_with_packet_info(xnu: XnuKernel) -> None:
    with open_tun() as plain, open_tun(packet_info=True) as framed:
        assert framed.max_packet_size == plain.max_packet_size + 4
        assert plain.max_packet_size == 1500  # utun's default MTU (utun_attach), read with SIOCGIFMTU
        plain.mtu = 9000
        assert plain.max_packet_size == 9000 and framed.max_packet_size == 1504


# ------------------------------------------------------------ writing

def test_write_prepends_the_af_header_in_network_byte_order(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        mark = len(xnu.calls)
        assert dev.write(ipv4()) == len(ipv4())
        assert xnu.calls[mark:] == [("writev", dev.fileno(), 2)]
        assert xnu.input(dev.name) == (AF_INET, ipv4())  # ntohl of the header: 2
        assert dev.write(memoryview(ipv6())) == len(ipv6())
        assert xnu.input(dev.name) == (AF_INET6, ipv6())  # 30, big-endian (little-endian would read 0x1e000000)
        buf = bytearray(ipv4(b"abc") + b"trailing junk")
        assert dev.write(buf, len(ipv4(b"abc"))) == len(ipv4(b"abc"))
        assert xnu.input(dev.name) == (AF_INET, ipv4(b"abc"))
        with pytest.raises(ValueError):
            dev.write(buf, len(buf) + 1)


@pytest.mark.parametrize("packet", [b"\x00" * 20, b"\x50" + bytes(19), b""])
def test_a_packet_that_is_not_ipv4_or_ipv6_is_refused_before_the_syscall(xnu: XnuKernel, packet: bytes) -> None:
    with open_tun() as dev:
        mark = len(xnu.calls)
        with pytest.raises(InvalidPacketError) as info:
            dev.write(packet)
        assert isinstance(info.value, ValueError) and info.value.errno == errno.EINVAL
        assert info.value.filename == dev.name  # (as the kernel's EINVAL on Linux names it)
        assert xnu.calls[mark:] == []


def test_packet_info_exposes_the_af_header(xnu: XnuKernel) -> None:
    with open_tun(packet_info=True) as dev:
        buf = bytearray(dev.max_packet_size)
        xnu.output(dev.name, ipv4())
        n = dev.readinto(buf)
        assert n == 4 + len(ipv4()) and bytes(buf[:n]) == b"\0\0\0\x02" + ipv4()
        xnu.output(dev.name, ipv6())
        info = dev.read_packet()
        assert (info.flags, info.proto, bytes(info.payload)) == (0, 0x86DD, ipv6())
        xnu.output(dev.name, ipv4())
        info = dev.read_packet(buf)
        assert (info.flags, info.proto, bytes(info.payload)) == (0, 0x0800, ipv4())
        assert dev.write(b"\0\0\0\x1e" + ipv6()) == 4 + len(ipv6())  # the caller's header, as it is
        assert xnu.input(dev.name) == (AF_INET6, ipv6())
        assert dev.write_packet(ipv4()) == len(ipv4())
        assert xnu.input(dev.name) == (AF_INET, ipv4())
        assert dev.write_packet(ipv6(), proto=0x86DD) == len(ipv6())
        assert xnu.input(dev.name) == (AF_INET6, ipv6())
        mark = len(xnu.calls)
        with pytest.raises(ValueError):
            dev.write_packet(ipv4(), proto=0x0806)  # ARP: utun carries IP only
        with pytest.raises(ValueError):
            dev.write_packet(b"\x00" * 20)
        assert xnu.calls[mark:] == []


def test_packet_calls_of_a_device_without_packet_info_say_so(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        with pytest.raises(ValueError, match="packet_info"):
            dev.read_packet()
        with pytest.raises(ValueError, match="packet_info"):
            dev.write_packet(ipv4())


# ------------------------------------------------------------ blocking, non-blocking, closing

def test_nonblocking_reads_say_eagain_in_the_running_os_numbers(xnu: XnuKernel) -> None:
    with open_tun(nonblocking=True) as dev:
        buf = bytearray(dev.max_packet_size)
        with pytest.raises(BlockingIOError) as info:
            dev.readinto(buf)
        assert info.value.errno == errno.EAGAIN  # the kernel said 35: mapped, not taken for Linux's 35 (EDEADLK)
        assert dev.readinto_nowait(buf) == -1 and dev.read_nowait() is None
        xnu.output(dev.name, ipv4())
        assert dev.read_nowait() == ipv4()


def test_writes_to_a_full_utun_wait_or_say_eagain(xnu: XnuKernel) -> None:
    """The socketpair's queue fills (the kernel end reads nothing): EAGAIN 35 from the kernel, mapped."""
    with open_tun(nonblocking=True) as dev:
        written = 0
        with pytest.raises(BlockingIOError) as info:
            for _ in range(100_000):
                dev.write(ipv4())
                written += 1
        assert info.value.errno == errno.EAGAIN and written > 0
        with pytest.raises(BlockingIOError):
            dev.write_nowait(ipv4())
        dev.blocking = True
        done: List[int] = []
        writer = threading.Thread(target=lambda: done.append(dev.write(ipv6())))
        mark = polls(xnu)
        writer.start()
        wait_for(lambda: polls(xnu) > mark, "the writer to poll")
        assert not done
        got = [xnu.input(dev.name) for _ in range(written + 1)]
        writer.join(10)
        assert done == [len(ipv6())] and got[-1] == (AF_INET6, ipv6())


def test_a_blocking_read_waits_for_the_packet(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        got: List[bytes] = []
        reader = threading.Thread(target=lambda: got.append(dev.read()))
        reader.start()
        wait_for(lambda: polls(xnu) > 0, "the reader to poll")
        xnu.output(dev.name, ipv6())
        reader.join(10)
        assert got == [ipv6()]


def test_timeouts_on_a_utun(xnu: XnuKernel) -> None:
    """readinto/read take a timeout as on Linux: TimeoutError when nothing came, the packet when one does."""
    with open_tun() as dev:
        buf = bytearray(dev.max_packet_size)
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            dev.readinto(buf, timeout=0.2)
        assert time.monotonic() - start >= 0.2 and info.value.errno == errno.ETIMEDOUT and dev.name in str(info.value)
        with pytest.raises(TimeoutError):
            dev.read(timeout=0)
        with pytest.raises(ValueError):
            dev.read(timeout=-1)  # refused before any call
        got: List[int] = []
        before = polls(xnu)
        reader = threading.Thread(target=lambda: got.append(dev.readinto(buf, timeout=10)))
        reader.start()
        wait_for(lambda: polls(xnu) > before, "the reader to poll")
        xnu.output(dev.name, ipv4())
        reader.join(10)
        assert got == [len(ipv4())] and bytes(buf[: got[0]]) == ipv4()
        assert dev.write(ipv6(), timeout=1) == len(ipv6())  # room at once: written


def test_close_from_another_thread_wakes_a_blocked_reader(xnu: XnuKernel) -> None:
    warm_up(xnu)
    before = fd_count()
    dev = open_tun()
    buf = bytearray(dev.max_packet_size)
    error = closed_while_waiting(xnu, dev, lambda: dev.readinto(buf))
    assert isinstance(error, DeviceClosedError)
    wait_for(lambda: fd_count() == before, "the number and the wakeup pipe to be freed")
    names = [call[0] for call in xnu.calls]
    assert {"pipe", "poll", "dup2", "write"} <= set(names)  # the wakeup, the wait, the retirement


def test_a_closed_device_refuses_everything(xnu: XnuKernel) -> None:
    dev = open_tun()
    dev.close()
    dev.close()
    for call in (lambda: dev.readinto(bytearray(65535)), lambda: dev.read(), lambda: dev.write(ipv4()),
                 lambda: dev.fileno()):
        with pytest.raises(DeviceClosedError):
            call()


def test_detach_hands_the_fd_back_blocking(xnu: XnuKernel) -> None:
    dev = open_tun()
    fd = dev.detach()
    assert fd in xnu.sockets and xnu.interfaces == ["utun0"] and dev.closed
    assert xnu.fcntl(fd, 3, xnu.ffi.cast("int", 0)) & 4 == 0  # F_GETFL: no O_NONBLOCK (macOS's 4)
    xnu.close(fd)


def test_from_fd_adopts_a_connected_utun_socket(xnu: XnuKernel) -> None:
    from tuntap_cffi import Device
    from tuntap_cffi._darwin import backend

    fd, name = backend.open_utun("utun2")
    xnu.fcntl(fd, 4, xnu.ffi.cast("int", 0))  # F_SETFL: blocking, as a socket from elsewhere may be
    dev = Device.from_fd(fd)
    assert isinstance(dev, UtunDevice) and dev.name == name == "utun2" and not dev.packet_info
    assert xnu.fcntl(fd, 3, xnu.ffi.cast("int", 0)) & 4  # made O_NONBLOCK (macOS's 4)
    xnu.output(name, ipv4())
    assert dev.read() == ipv4()
    dev.close()
    assert xnu.interfaces == []
    fd, name = backend.open_utun("")
    with Device.from_fd(fd, packet_info=True, nonblocking=True) as dev:
        assert dev.packet_info and not dev.blocking
        xnu.output(name, ipv6())
        assert dev.read_packet().proto == 0x86DD


def test_from_fd_refuses_what_is_not_a_connected_utun(xnu: XnuKernel) -> None:
    from tuntap_cffi import Device

    fds = xnu.ffi.new("int[2]")
    assert xnu.pipe(fds) == 0
    unconnected = xnu.socket(32, 2, 2)
    for fd, err in ((fds[0], errno.ENOTSOCK), (unconnected, errno.EINVAL), (999, errno.EBADF)):
        with pytest.raises(OSError) as info:
            Device.from_fd(fd)
        assert info.value.errno == err and "not a connected utun socket" in str(info.value), fd
    assert fds[0] in xnu.files and unconnected in xnu.sockets  # not closed: still the caller's


# ------------------------------------------------------------ asyncio

def test_asyncio_reads_and_writes(xnu: XnuKernel) -> None:
    async def main() -> None:
        with open_tun() as dev:
            buf = bytearray(dev.max_packet_size)
            reading = asyncio.ensure_future(dev.readinto_async(buf))
            await asyncio.sleep(0)
            assert not reading.done()
            xnu.output(dev.name, ipv4())
            n = await asyncio.wait_for(reading, 10)
            assert bytes(buf[:n]) == ipv4()
            xnu.output(dev.name, ipv6())
            assert await asyncio.wait_for(dev.read_async(), 10) == ipv6()
            assert await dev.write_async(ipv4(b"async")) == len(ipv4(b"async"))
            assert xnu.input(dev.name) == (AF_INET, ipv4(b"async"))
            for i in range(3):
                xnu.output(dev.name, ipv4(bytes([i])))
            seen = []
            async for packet in dev:
                seen.append(packet)
                if len(seen) == 3:
                    break
            assert seen == [ipv4(bytes([i])) for i in range(3)]
            await close_fails_a_waiting_read(dev)

    asyncio.run(main())


# ------------------------------------------------------------ batches

def test_read_batch_and_write_batch_through_the_loop_engine(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        assert dev.batch_backend == "loop"
        ring = dev.packet_ring(8)
        packets = mixed(5)
        for packet in packets:
            xnu.output(dev.name, packet)
        assert dev.read_batch(ring) == 5
        assert [bytes(p) for p in ring] == packets
        assert sum(1 for c in xnu.calls if c[0] == "readv") == 6  # one per packet, then EAGAIN
        assert dev.write_batch(ring) == 5
        assert [xnu.input(dev.name) for _ in packets] == [
            (AF_INET if p[0] >> 4 == 4 else AF_INET6, p) for p in packets]
        assert dev.write_batch([ipv6(), ipv4()]) == 2
        assert [xnu.input(dev.name)[0] for _ in range(2)] == [AF_INET6, AF_INET]


def test_write_batch_refuses_a_non_ip_packet_and_writes_the_others(xnu: XnuKernel) -> None:
    with open_tun() as dev:
        ring = dev.packet_ring(4)
        for i, packet in enumerate([ipv4(), b"\x00" * 20, ipv6()]):
            ring.slot(i)[:len(packet)] = packet
            ring.set_length(i, len(packet))
        ring.count = 3
        with pytest.raises(BatchWriteError) as info:
            dev.write_batch(ring)
        assert info.value.written == 2
        assert [xnu.input(dev.name) for _ in range(2)] == [(AF_INET, ipv4()), (AF_INET6, ipv6())]


def test_read_batch_with_packet_info_keeps_the_headers(xnu: XnuKernel) -> None:
    with open_tun(packet_info=True, nonblocking=True) as dev:
        ring = dev.packet_ring(4)
        with pytest.raises(BlockingIOError):
            dev.read_batch(ring)
        xnu.output(dev.name, ipv6())
        assert dev.read_batch(ring) == 1 and bytes(ring[0]) == b"\0\0\0\x1e" + ipv6()


def test_close_wakes_a_waiting_read_batch(xnu: XnuKernel) -> None:
    dev = open_tun()
    ring = dev.packet_ring(4)
    assert isinstance(closed_while_waiting(xnu, dev, lambda: dev.read_batch(ring)), DeviceClosedError)


# ------------------------------------------------------------ pcap

def test_a_capture_is_linktype_raw_without_the_header(xnu: XnuKernel) -> None:
    packets = [ipv4(b"one"), ipv6(b"two")]
    out = io.BytesIO()
    with open_tun() as dev, PcapWriter(out, LINKTYPE_RAW) as writer:
        buf = bytearray(dev.max_packet_size)
        for packet in packets:
            xnu.output(dev.name, packet)
            n = dev.readinto(buf)
            writer.write_packet(memoryview(buf)[:n])
        data = out.getvalue()
    magic, _, _, _, _, _, linktype = struct.unpack("=IHHiIII", data[:24])
    assert linktype == 101
    assert pcap_packets(data) == packets  # the bare IP packets: no AF header in the capture


# ------------------------------------------------------------ failures the kernel injects

def test_kernel_errors_are_mapped_from_macos_numbers(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    # (a Device binds the kernel's functions when it opens)
    monkeypatch.setattr(xnu, "writev", lambda *args: xnu._fail(E["ENOBUFS"]))
    monkeypatch.setattr(xnu, "readv", lambda *args: xnu._fail(E["ENETDOWN"]))
    with open_tun() as dev:
        with pytest.raises(OSError) as info:
            dev.write(ipv4())
        assert info.value.errno == errno.ENOBUFS and info.value.filename == dev.name  # 55 on macOS, 105 here
        with pytest.raises(OSError) as info:
            dev.readinto(bytearray(dev.max_packet_size))
        assert info.value.errno == errno.ENETDOWN


@pytest.mark.parametrize("step", ["pipe", "fcntl"])
def test_a_failing_wakeup_leaks_nothing(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    warm_up(xnu)
    before = fd_count()
    dev = open_tun()
    if step == "pipe":
        monkeypatch.setattr(xnu, "pipe", lambda fds: xnu._fail(E["EMFILE"]))
    else:
        real = xnu.fcntl
        monkeypatch.setattr(xnu, "fcntl", lambda fd, cmd, arg: xnu._fail(E["EBADF"]) if xnu.files.get(fd) == "pipe"
                            else real(fd, cmd, arg))
    with pytest.raises(OSError) as info:
        dev.read()  # blocking, nothing queued: the wait needs the wakeup
    assert info.value.errno == (errno.EMFILE if step == "pipe" else errno.EBADF)
    monkeypatch.undo()
    dev.close()
    assert fd_count() == before and not xnu.sockets and list(xnu.files.values()) == ["/dev/null"]


def test_no_dead_file_no_device_and_no_leak(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/null (what close() puts over the number) cannot be opened: the open fails, not a later close."""
    before = fd_count()
    monkeypatch.setattr(xnu, "open", lambda *args: xnu._fail(E["EMFILE"]))
    with pytest.raises(OSError) as info:
        open_tun()
    assert info.value.errno == errno.EMFILE
    assert fd_count() == before and not xnu.sockets and not xnu.interfaces


def test_no_fd_leaks_over_a_devices_life(xnu: XnuKernel) -> None:
    warm_up(xnu)
    before = fd_count()
    for packet_info in (False, True):
        dev = open_tun(packet_info=packet_info)
        reader = threading.Thread(target=lambda: dev.read())
        reader.start()
        wait_for(lambda: polls(xnu) > 0, "the reader to poll")
        xnu.output(dev.name, ipv4())
        reader.join(10)
        ring = dev.packet_ring(2)
        xnu.output(dev.name, ipv6())
        dev.read_batch(ring)
        dev.write_batch(ring)
        dev.close()
        xnu.calls.clear()
    wait_for(lambda: fd_count() == before, "every fd to be freed")
    assert list(xnu.files.values()) == ["/dev/null"] and not xnu.sockets


def test_batch_engines_of_exited_threads_are_reaped_without_proc(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no /proc: which threads are alive comes from the platform's thread view (DarwinOps.threads).

    A live thread keeps its engine, an exited one's goes at the next miss.
    (Before, the engine table asked /proc/self/task, which macOS has not:
    every other thread's engine was taken for dead, the live one's too.)
    """
    import os

    from tuntap_cffi._engines import table_of

    real_exists, real_listdir = os.path.exists, os.listdir
    monkeypatch.setattr(os.path, "exists", lambda p: False if str(p).startswith("/proc") else real_exists(p))

    def listdir(path: Any = ".") -> List[str]:
        if str(path).startswith("/proc"):
            raise FileNotFoundError(2, "No such file or directory (macOS has no /proc)", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    with open_tun() as dev:
        table = table_of(dev)
        rings = [dev.packet_ring(4) for _ in range(3)]
        made = threading.Event()
        release = threading.Event()

        def live() -> None:
            table.get(rings[0], "read")
            made.set()
            release.wait(10)

        alive = threading.Thread(target=live)
        alive.start()
        try:
            assert made.wait(10)
            gone = threading.Thread(target=lambda: table.get(rings[1], "read"))
            gone.start()
            gone.join(10)
            assert len(table) == 2
            table.get(rings[2], "read")  # a miss: reaps the exited thread's engine only
            assert len(table) == 2  # the live thread's and this one's
        finally:
            release.set()
            alive.join(10)
        table.get(rings[1], "write")  # the next miss after it exited: its engine goes too
        assert len(table) == 2


def test_the_dump_command_on_a_utun(xnu: XnuKernel, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`tuntap-cffi dump utun4 --count 2 --pcap F` on macOS: a line per packet, a LINKTYPE_RAW capture, the utun gone."""
    path = tmp_path / "utun.pcap"
    status, packets = dump_two_packets(xnu, "utun4", path)
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert len([line for line in out if " UDP " in line]) == 2, out
    assert any("198.18.0.1" in line for line in out) and any("fd00::2" in line for line in out), out
    assert pcap_packets(path.read_bytes()) == packets
    assert xnu.interfaces == []
