"""A TAP on macOS (a feth pair, BPF reads, NDRV writes), against the simulated XNU kernel of ``xnu_tap.py``.

The seam is ``darwin_kernel.running_as_macos`` (see test_darwin_device.py);
the BPF and NDRV fds are real AF_UNIX socketpairs, so poll, blocking,
close() from another thread, asyncio and fd counts are real.  "The stack"
is :meth:`XnuTapKernel.stack_send` (a frame sent out of the user end) and
:attr:`XnuTapKernel.received` (frames the user end received).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import io
import struct
import sys
import threading
from typing import Any, Iterator, List

import pytest

from bsd_packets import wait_for
from darwin_kernel import E, running_as_macos
from tuntest import fd_count
from xnu_tap import XnuTapKernel
from tuntap_cffi import (DeviceBusyError, DeviceClosedError, DeviceKind, DevicesExhaustedError, InvalidPacketError,
                         TunTapPermissionError, UnsupportedPlatformError, open_tap)
from tuntap_cffi import _feth_device as feth_device
from tuntap_cffi._feth_device import FethDevice
from tuntap_cffi._lifecycle import FdLife, pending_retirements
from tuntap_cffi._syscalls import ffi as host_ffi
from tuntap_cffi.pcap import LINKTYPE_ETHERNET, PcapWriter


@pytest.fixture
def xnu() -> Iterator[XnuTapKernel]:
    with running_as_macos(XnuTapKernel()) as kernel:
        yield kernel


def frame(payload: bytes = b"hello", dst: bytes = b"\x02\0\0\0\0\x01", src: bytes = b"\x02\0\0\0\0\x02") -> bytes:
    return dst + src + b"\x88\xb5" + payload  # EtherType 0x88B5: local experimental


def calls(kernel: XnuTapKernel, name: str) -> int:
    return sum(1 for call in kernel.calls if call[0] == name)


def only_lo0(kernel: XnuTapKernel) -> bool:
    return list(kernel.ifnets) == ["lo0"] and not kernel.feths


def warm_up() -> None:
    """The process-wide /dev/null fd of close() is opened once."""
    open_tap().close()


# ------------------------------------------------------------ opening

def test_open_tap_builds_a_peered_pair_read_by_bpf_written_by_ndrv(xnu: XnuTapKernel) -> None:
    with open_tap() as dev:
        assert isinstance(dev, FethDevice) and dev.name == "feth0" and dev.io_name == "feth1"
        assert xnu.feths["feth0"].peer == "feth1" and xnu.feths["feth1"].peer == "feth0"
        assert all(xnu.ifnets[n].flags & 1 for n in ("feth0", "feth1"))  # both IFF_UP
        (bpf,) = xnu.bpfs.values()
        assert dev.fileno() in xnu.bpfs and bpf.ifname == "feth1"
        assert (bpf.bufsize, bpf.immediate, bpf.seesent, bpf.hdrcmplt) == (131072, True, False, True)
        (ndrv,) = xnu.ndrvs.values()
        assert ndrv.ifname == "feth1" and ndrv.connected
        assert dev.kind is DeviceKind.TAP and not dev.packet_info and dev.blocking


def test_open_tap_by_name_and_busy_names(xnu: XnuTapKernel) -> None:
    with open_tap("feth7") as dev:
        assert dev.name == "feth7" and dev.io_name == "feth0"
        with pytest.raises(DeviceBusyError) as info:
            open_tap("feth7")
        assert info.value.filename == "feth7" and "exists already" in str(info.value)
        with open_tap("") as other:  # the free units: 1 and 2
            assert (other.name, other.io_name) == ("feth1", "feth2")
    assert only_lo0(xnu) and xnu.tap_fds == 0


@pytest.mark.parametrize("name", ["tap16", "feth", "feth01", "feth-1", "feth32768", "utun0"])  # (tapN, N < 16: the tuntaposx legacy path)
def test_a_bad_name_is_refused_before_any_syscall(xnu: XnuTapKernel, name: str) -> None:
    with pytest.raises(ValueError):
        open_tap(name)
    assert xnu.calls == []


def test_a_busy_bpf_unit_moves_on_and_none_free_is_exhausted(xnu: XnuTapKernel) -> None:
    xnu.bpf_busy = {0, 1}
    with open_tap() as dev:
        assert [d.unit for d in xnu.bpfs.values()] == [2]
        assert [c[1] for c in xnu.calls if c[0] == "open" and c[1].startswith(b"/dev/bpf")] == \
            [b"/dev/bpf0", b"/dev/bpf1", b"/dev/bpf2"]
        assert dev.name == "feth0"
    xnu.bpf_busy = {0, 1, 2, 3}
    before = fd_count()
    with pytest.raises(DevicesExhaustedError):
        open_tap()
    assert only_lo0(xnu) and xnu.tap_fds == 0 and fd_count() == before


def test_without_root_the_error_says_so_and_nothing_is_left(xnu: XnuTapKernel) -> None:
    xnu.root = False
    before = fd_count()
    with pytest.raises(TunTapPermissionError) as info:
        open_tap()
    assert "root" in str(info.value)
    assert only_lo0(xnu) and fd_count() == before


@pytest.mark.parametrize("step", ["SIOCIFCREATE", "SIOCSDRVSPEC", "SIOCSIFFLAGS", "open", "BIOCSBLEN", "BIOCSETIF",
                                  "BIOCIMMEDIATE", "BIOCSSEESENT", "BIOCSHDRCMPLT", "socket", "bind", "connect"])
def test_a_failing_step_leaves_no_interface_and_no_fd(xnu: XnuTapKernel, step: str) -> None:
    warm_up()
    before = fd_count()
    xnu.fail[step] = E["EIO"]
    with pytest.raises(OSError):
        open_tap()
    assert step not in xnu.fail  # the step was reached
    assert only_lo0(xnu) and xnu.tap_fds == 0 and fd_count() == before


# ------------------------------------------------------------ frames

def test_frames_the_stack_sends_come_out_of_the_device_one_per_read(xnu: XnuTapKernel) -> None:
    with open_tap() as dev:
        frames = [frame(bytes([i]) * (i + 1)) for i in range(3)]
        for f in frames:
            xnu.stack_send(dev.name, f)
        buf = bytearray(dev.max_packet_size)
        got = []
        for _ in frames:
            n = dev.readinto(buf)
            got.append(bytes(buf[:n]))
        assert got == frames  # each at buf[0]
        assert calls(xnu, "bpf_read") == 1  # one BPF read brought the three
        xnu.stack_send(dev.name, frame(b"x" * 1000))
        assert dev.read() == frame(b"x" * 1000)


def test_written_frames_arrive_at_the_user_end_and_are_not_read_back(xnu: XnuTapKernel) -> None:
    with open_tap(nonblocking=True) as dev:
        assert dev.write(frame(b"out")) == len(frame(b"out"))
        assert dev.write(bytearray(frame(b"out2"))) == len(frame(b"out2"))
        assert xnu.received[dev.name] == [frame(b"out"), frame(b"out2")]
        assert xnu.received[dev.io_name] == []
        with pytest.raises(BlockingIOError):  # BIOCSSEESENT 0: our own frames are not read back
            dev.read()


def test_a_full_interface_queue_blocks_or_raises(xnu: XnuTapKernel) -> None:
    with open_tap(nonblocking=True) as dev:
        xnu.fail["ndrv_write"] = E["ENOBUFS"]
        with pytest.raises(BlockingIOError):
            dev.write(frame())
        assert xnu.received[dev.name] == []
    with open_tap() as dev:
        xnu.fail["ndrv_write"] = E["ENOBUFS"]
        mark = len(xnu.calls)
        assert dev.write(frame(b"again")) == len(frame(b"again"))  # waited for room on the NDRV socket, sent
        assert xnu.received[dev.name] == [frame(b"again")]
        assert [c[0] for c in xnu.calls[mark:]].count("ndrv_write") == 2 and calls(xnu, "poll") >= 1


def test_packet_info_is_refused_before_any_syscall(xnu: XnuTapKernel) -> None:
    with pytest.raises(UnsupportedPlatformError) as info:
        open_tap(packet_info=True)
    assert "utun" in str(info.value) and xnu.calls == []


def test_concurrent_readers_get_every_frame_once(xnu: XnuTapKernel) -> None:
    with open_tap() as dev:
        frames = [frame(i.to_bytes(2, "big") * 20) for i in range(300)]
        got: List[bytes] = []
        lock = threading.Lock()

        def read() -> None:
            buf = bytearray(dev.max_packet_size)
            while True:
                try:
                    n = dev.readinto(buf, timeout=0.5)
                except TimeoutError:
                    return
                with lock:
                    got.append(bytes(buf[:n]))

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        for f in frames:
            xnu.stack_send(dev.name, f)
        for t in readers:
            t.join(30)
        assert sorted(got) == sorted(frames)


def test_a_frame_shorter_than_its_header_is_refused_before_the_syscall(xnu: XnuTapKernel) -> None:
    with open_tap() as dev:
        with pytest.raises(InvalidPacketError) as info:
            dev.write(b"\x02" * 13)
        assert info.value.filename == dev.name and info.value.errno == errno.EINVAL
        assert calls(xnu, "ndrv_write") == 0


def test_a_frame_bpf_cut_short_is_never_delivered_as_whole(xnu: XnuTapKernel) -> None:
    xnu.bpf_cap = 256  # the kernel caps BIOCSBLEN: a 300-byte frame cannot fit
    with open_tap() as dev:
        xnu.stack_send(dev.name, frame(b"b" * 286))
        xnu.stack_send(dev.name, frame(b"ok"))
        buf = bytearray(dev.max_packet_size)
        with pytest.raises(InvalidPacketError) as info:
            dev.readinto(buf)
        assert "only 238 of the 300 bytes" in str(info.value) and info.value.filename == dev.name
        n = dev.readinto(buf)
        assert bytes(buf[:n]) == frame(b"ok")  # the next frame comes next


def test_read_batch_hands_out_every_record_of_one_bpf_read(xnu: XnuTapKernel) -> None:
    with open_tap(nonblocking=True) as dev:
        ring = dev.packet_ring(8)
        frames = [frame(bytes([i]) * (7 * i + 1)) for i in range(5)]
        for f in frames:
            xnu.stack_send(dev.name, f)
        assert dev.read_batch(ring) == 5
        assert [bytes(p) for p in ring] == frames
        assert calls(xnu, "bpf_read") == 2  # the records, then EAGAIN
        assert dev.write_batch(ring) == 5
        assert xnu.received[dev.name] == frames
        with pytest.raises(BlockingIOError):  # (our own frames are not read back)
            dev.read_batch(ring)
        assert dev.write_batch([frame(b"a"), frame(b"b")]) == 2
        assert xnu.received[dev.name][5:] == [frame(b"a"), frame(b"b")]


def test_frames_are_handed_out_with_nothing_made_per_frame(xnu: XnuTapKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """readinto and read_batch copy each frame from a pointer made once per record position, not per frame."""
    sources: List[object] = []  # the source of every copy from the BPF buffer (kept alive: distinct objects, distinct ids)

    class Recording:  # the module's cffi, its memmove recorded (the FFI object's own attributes are read-only)
        def __getattr__(self, name: str) -> Any:
            return getattr(host_ffi, name)

        def memmove(self, dst: Any, src: Any, n: int) -> None:
            sources.append(src)
            host_ffi.memmove(dst, src, n)

    monkeypatch.setattr(feth_device, "_host_ffi", Recording())
    with open_tap(nonblocking=True) as dev:
        buf = bytearray(dev.max_packet_size)
        ring = dev.packet_ring(16)
        frames = [frame(bytes([i]) * 300) for i in range(10)]
        reads = calls(xnu, "bpf_read")
        for round in range(41):  # each round's frames come in one BPF read, at the same positions
            for f in frames:
                xnu.stack_send(dev.name, f)
            if round % 2:
                assert dev.read_batch(ring) == 10 and [bytes(p) for p in ring] == frames
            else:
                got = []
                for _ in frames:
                    n = dev.readinto(buf)
                    got.append(bytes(buf[:n]))
                assert got == frames
        assert calls(xnu, "bpf_read") - reads <= 41 * 2  # (read_batch's last read says EAGAIN)
        assert len(sources) == 410 and len({id(s) for s in sources}) == 10


def test_an_interrupted_bpf_read_is_retried(xnu: XnuTapKernel) -> None:
    """EINTR is retried by readinto and read_batch alike (device.py's rule), never taken for an empty queue."""
    with open_tap(nonblocking=True) as dev:
        ring = dev.packet_ring(4)
        buf = bytearray(dev.max_packet_size)
        # read_batch: EINTR, the frame, then EAGAIN ends the batch; readinto: EINTR, the frame.
        for call, reads in ((lambda: dev.read_batch(ring) == 1 and bytes(ring[0]) == frame(b"i"), 3),
                            (lambda: bytes(buf[:dev.readinto(buf)]) == frame(b"i"), 2)):
            xnu.stack_send(dev.name, frame(b"i"))
            xnu.fail["bpf_read"] = E["EINTR"]
            mark = calls(xnu, "bpf_read")
            assert call()
            assert "bpf_read" not in xnu.fail and calls(xnu, "bpf_read") - mark == reads


def test_read_batch_interrupted_by_signal_handlers_loses_and_repeats_no_frame(xnu: XnuTapKernel) -> None:
    """Hundreds of handler exceptions inside read_batch on a feth TAP: every frame exactly once, in order.

    One BPF read holds many frames, kept in the Device's buffer between calls: a read's result and each frame
    handed out must be recorded where no handler can cut in (as the Linux engines do, tests/test_interrupts.py)."""
    import random
    import time

    from test_interrupts import PYPY, Boom, Interrupter

    # Most of the time goes to the simulated kernel, where the handler never raises: 60,000 frames gave 214 to
    # 675 exceptions inside the library in 8 runs here (at least 60 required; the code before the fix lost a frame
    # within the first 20).
    total, min_raised = 60000, 60
    with open_tap(nonblocking=True) as dev:
        ring = dev.packet_ring(16)
        seqs: List[int] = []
        errors: List[BaseException] = []

        def send() -> None:  # the stack's frames, in bursts (the sim blocks the sender while the reader lags)
            try:
                for i in range(total):
                    xnu.stack_send(dev.name, frame(struct.pack("!I", i)))
                    if i % 50 == 49:
                        time.sleep(0.001)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        rnd = random.Random(7)
        deadline = time.monotonic() + 120
        with Interrupter(once=PYPY, interval=0.0002) as it:
            while len(seqs) < total and time.monotonic() < deadline:
                it.armed = rnd.random() < 0.5
                try:
                    n = dev.read_batch(ring)
                except Boom:
                    it.armed = False
                    continue  # the call's frames are the next call's
                except BlockingIOError:
                    it.armed = False
                    time.sleep(0.0002)
                    continue
                it.armed = False
                seqs.extend(struct.unpack_from("!I", ring[i], 14)[0] for i in range(n))
        sender.join(30)
        assert not errors, errors
        assert seqs == list(range(total)), (len(seqs), [i for i, s in enumerate(seqs) if s != i][:5])
        assert it.raised >= min_raised, f"only {it.raised} exceptions inside the library"


def test_read_batch_stops_before_a_truncated_record_and_raises_on_it_next(xnu: XnuTapKernel) -> None:
    xnu.bpf_cap = 256
    with open_tap(nonblocking=True) as dev:
        ring = dev.packet_ring(4)
        xnu.stack_send(dev.name, frame(b"1"))
        xnu.stack_send(dev.name, frame(b"c" * 286))
        xnu.stack_send(dev.name, frame(b"2"))
        assert dev.read_batch(ring) == 1 and bytes(ring[0]) == frame(b"1")
        with pytest.raises(OSError) as info:
            dev.read_batch(ring)
        assert info.value.errno == errno.EMSGSIZE
        assert dev.read_batch(ring) == 1 and bytes(ring[0]) == frame(b"2")


# ------------------------------------------------------------ configuration through the BSD layer

def test_hwaddr_mtu_and_up_down_act_on_the_user_end(xnu: XnuTapKernel) -> None:
    with open_tap("feth3") as dev:
        assert dev.hwaddr == "66:65:74:68:00:03"  # feth_clone_create: "feth" + the unit
        dev.hwaddr = "02:00:5e:10:00:01"
        assert xnu.ifnets["feth3"].lladdr == bytes.fromhex("02005e100001")
        assert dev.hwaddr == "02:00:5e:10:00:01"
        assert xnu.ifnets[dev.io_name].lladdr == b"feth\0\0"
        assert dev.mtu == 1500
        dev.mtu = 2000
        assert xnu.ifnets["feth3"].mtu == 2000 and xnu.ifnets[dev.io_name].mtu == 1500
        assert dev.max_packet_size >= 2000 + 14
        with pytest.raises(OSError) as info:
            dev.mtu = 9000  # above feth's maximum (2048 unless sysctl net.link.fake.max_mtu says more)
        assert info.value.errno == errno.EINVAL and dev.mtu == 2000
        assert dev.is_up
        dev.down()
        assert not dev.is_up and xnu.ifnets[dev.io_name].flags & 1


# ------------------------------------------------------------ closing

def test_close_destroys_both_ends_and_frees_every_fd(xnu: XnuTapKernel) -> None:
    warm_up()
    before = fd_count()
    dev = open_tap()
    assert fd_count() > before
    dev.close()
    assert only_lo0(xnu) and xnu.tap_fds == 0
    wait_for(lambda: fd_count() == before, "every fd to be freed")
    dev.close()  # idempotent
    with pytest.raises(DeviceClosedError):
        dev.write(frame())
    with pytest.raises(DeviceClosedError):
        dev.read()
    other = open_tap()
    with pytest.raises(ValueError):
        other.detach()
    assert len(xnu.feths) == 2 and not other.closed  # refused: still open
    other.close()


def test_an_unclosed_device_takes_its_pair_with_it(xnu: XnuTapKernel) -> None:
    warm_up()
    before = fd_count()
    dev = open_tap()
    with pytest.warns(ResourceWarning):
        del dev
        gc.collect()
    assert only_lo0(xnu) and xnu.tap_fds == 0
    wait_for(lambda: fd_count() == before, "every fd to be freed")


def test_close_from_another_thread_wakes_a_blocked_reader(xnu: XnuTapKernel) -> None:
    warm_up()
    before = fd_count()
    dev = open_tap()
    buf = bytearray(dev.max_packet_size)
    errors: List[BaseException] = []

    def run() -> None:
        try:
            dev.readinto(buf)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=run)
    reader.start()
    wait_for(lambda: calls(xnu, "poll") > 0, "the reader to wait in poll")
    dev.close()
    reader.join(10)
    assert not reader.is_alive() and len(errors) == 1 and isinstance(errors[0], DeviceClosedError)
    assert only_lo0(xnu)
    wait_for(lambda: fd_count() == before, "every fd to be freed")


def test_a_reader_woken_by_close_frees_the_numbers_itself(xnu: XnuTapKernel) -> None:
    """A blocked reader whose buffer is not cached (any buffer on PyPy; a ctypes array here) leaves through the
    close protocol's door: it frees the retired numbers before it returns, not the reaper after it exited."""
    warm_up()
    dev = open_tap()
    bpf = dev.fileno()
    size = dev.max_packet_size
    # Not pinned by an export, so bound again after every wait: any buffer on PyPy, a ctypes array on CPython.
    buf = bytearray(size) if sys.implementation.name == "pypy" else (ctypes.c_char * size)()
    seen: List[object] = []

    def run() -> None:
        try:
            dev.readinto(buf)
        except DeviceClosedError:
            seen.append(bpf in xnu.files)  # (this thread is the only other one: nothing else may hold them)

    reader = threading.Thread(target=run)
    reader.start()
    wait_for(lambda: calls(xnu, "poll") > 0, "the reader to wait in poll")
    # On macOS the threads watched are Python's: any other one alive at close() (a thread of an earlier test still
    # winding down; never the reaper, see the next test) rightly holds the numbers until it is seen gone.
    ours = {threading.main_thread(), reader}
    try:
        wait_for(lambda: set(threading.enumerate()) <= ours, "the threads of earlier tests to end")
    except AssertionError:
        raise AssertionError(f"threads of earlier tests still alive: {set(threading.enumerate()) - ours}") from None
    dev.close()
    reader.join(10)
    assert seen == [False]


class _HeldLife:
    """An owner whose closed FdLife the reaper cannot free while another thread is marked inside it."""

    def __init__(self) -> None:
        self.life = FdLife("held", self)
        self.helpers = True

    def _helpers_open(self) -> bool:
        return self.helpers

    def _release_helpers(self) -> None:
        self.helpers = False

    def _forget_parent(self) -> None:
        pass


def test_a_reaper_busy_with_another_device_does_not_hold_this_ones_numbers(xnu: XnuTapKernel) -> None:
    """The reaper never uses a device's numbers: a close while it runs does not wait for it (it once did, and a
    feth close that started the reaper itself between its two retirements left the woken reader unable to free)."""
    warm_up()
    held = _HeldLife()
    held.life.closing = True
    held.life.inside[-1] = 1  # (a thread that never exits: the reaper keeps this life until the test lets go)
    held.life.free_when_safe()
    try:
        reaper = [t for t in threading.enumerate() if t.name == "tuntap_cffi-reaper"]
        assert len(reaper) == 1
        dev = open_tap()
        bpf = dev.fileno()
        buf = bytearray(dev.max_packet_size) if sys.implementation.name == "pypy" \
            else (ctypes.c_char * dev.max_packet_size)()
        seen: List[object] = []

        def run() -> None:
            try:
                dev.readinto(buf)
            except DeviceClosedError:
                seen.append(bpf in xnu.files)

        reader = threading.Thread(target=run)
        reader.start()
        wait_for(lambda: calls(xnu, "poll") > 0, "the reader to wait in poll")
        dev.close()
        reader.join(10)
        assert seen == [False] and reader.is_alive() is False and reaper[0].is_alive()
    finally:
        held.life.inside.clear()
    wait_for(lambda: pending_retirements() == 0, "the reaper to free the held life")


def test_a_blocking_read_with_a_timeout(xnu: XnuTapKernel) -> None:
    with open_tap() as dev:
        with pytest.raises(TimeoutError):
            dev.read(timeout=0.05)
        threading.Timer(0.05, xnu.stack_send, (dev.name, frame(b"late"))).start()
        assert dev.read(timeout=10) == frame(b"late")


# ------------------------------------------------------------ asyncio and pcap

def test_asyncio_reads_and_writes(xnu: XnuTapKernel) -> None:
    async def main() -> None:
        with open_tap() as dev:
            buf = bytearray(dev.max_packet_size)
            reading = asyncio.ensure_future(dev.readinto_async(buf))
            await asyncio.sleep(0)
            assert not reading.done()
            xnu.stack_send(dev.name, frame(b"async"))
            n = await asyncio.wait_for(reading, 10)
            assert bytes(buf[:n]) == frame(b"async")
            assert await dev.write_async(frame(b"back")) == len(frame(b"back"))
            assert xnu.received[dev.name] == [frame(b"back")]
            waiting = asyncio.ensure_future(dev.read_async())
            await asyncio.sleep(0)
            dev.close()
            with pytest.raises(DeviceClosedError):
                await asyncio.wait_for(waiting, 10)

    asyncio.run(main())


def test_write_async_waits_for_room_on_the_ndrv_socket(xnu: XnuTapKernel) -> None:
    """The BPF device is always writable: a write that found no room waits on the NDRV socket, not spinning."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with open_tap() as dev:
            (ndrv,) = xnu.ndrvs
            assert dev.write_fileno() == ndrv != dev.fileno()
            assert xnu.ndrv_fill(ndrv) > 0
            mark = calls(xnu, "ndrv_write")
            writing = asyncio.ensure_future(dev.write_async(frame(b"room")))
            await asyncio.sleep(0.2)  # (a writer woken by the BPF fd would have retried thousands of times by now)
            assert not writing.done() and calls(xnu, "ndrv_write") - mark == 1
            xnu.ndrv_drain(ndrv)
            assert await asyncio.wait_for(writing, 10) == len(frame(b"room"))
            assert calls(xnu, "ndrv_write") - mark == 2 and xnu.received[dev.name] == [frame(b"room")]
            xnu.ndrv_fill(ndrv)
            waiting = asyncio.ensure_future(dev.write_async(frame(b"never")))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            dev.close()
            with pytest.raises(DeviceClosedError):
                await asyncio.wait_for(waiting, 10)
            assert not loop.remove_writer(ndrv)  # the close unregistered the NDRV socket

    asyncio.run(main())


def test_the_ndrv_number_is_retired_as_the_devices_own(xnu: XnuTapKernel) -> None:
    """A thread alive at close() may be between loading the NDRV number and its write: the number stays on
    /dev/null (the socket is gone) until that thread cannot be, as the BPF number does."""
    warm_up()
    before = fd_count()
    dev = open_tap()
    (ndrv,) = xnu.ndrvs
    bpf = dev.fileno()
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        dev.close()
        assert not xnu.ndrvs and only_lo0(xnu)  # the socket and the pair are gone at once
        assert xnu.files.get(ndrv) == xnu.files.get(bpf) == "/dev/null"  # both numbers still taken
        with pytest.raises(DeviceClosedError):
            dev.write(frame())
    finally:
        done.set()
        other.join(10)
    wait_for(lambda: fd_count() == before, "both numbers to be freed once the thread exited")
    assert ndrv not in xnu.files and bpf not in xnu.files


def test_a_capture_is_linktype_ethernet(xnu: XnuTapKernel) -> None:
    frames = [frame(b"one"), frame(b"two" * 50)]
    out = io.BytesIO()
    with open_tap() as dev, PcapWriter(out, LINKTYPE_ETHERNET) as writer:
        buf = bytearray(dev.max_packet_size)
        for f in frames:
            xnu.stack_send(dev.name, f)
        for _ in frames:
            n = dev.readinto(buf)
            writer.write_packet(memoryview(buf)[:n])
        data = out.getvalue()
    assert struct.unpack("=I", data[20:24])[0] == 1
    at, seen = 24, []
    while at < len(data):
        incl = struct.unpack("=IIII", data[at:at + 16])[2]
        seen.append(data[at + 16:at + 16 + incl])
        at += 16 + incl
    assert seen == frames
