"""The seed's legacy macOS devices (tuntaposx ``/dev/tunN``, ``/dev/tapN``), against the simulated kext (runs on Linux).

The seam is ``darwin_kernel.running_as_macos`` (see test_darwin_device.py);
the kernel is ``tuntaposx_kernel.KextKernel``: XNU's network side plus the
kext's nodes, each a real AF_UNIX datagram socketpair, following the
kext's rules (one open per node, the interface attached at open and
detached at close, EIO until the interface is up).
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from typing import Iterator, List

import pytest

from darwin_kernel import running_as_macos
from tuntaposx_kernel import IF_COUNT, IFF_UP, O_CLOEXEC, O_EXCL, O_RDWR, KextKernel
from tuntest import fd_count
from tuntap_cffi import (BatchWriteError, DeviceBusyError, DeviceKind, DeviceNotFoundError, DeviceNotReadyError,
                         DevicesExhaustedError, TunTapPermissionError, open_tap, open_tun)
from tuntap_cffi._tuntaposx_device import TuntaposxDevice


@pytest.fixture
def kext() -> Iterator[KextKernel]:
    with running_as_macos(KextKernel()) as kernel:
        yield kernel


def ipv4(payload: bytes = b"ping") -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0,
                       bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1])) + payload


def frame(payload: bytes = b"hello") -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + payload  # local experimental EtherType


def ready(dev: TuntaposxDevice) -> None:
    """Give the device its address and bring it up: the kext's condition for reads and writes."""
    if dev.kind is DeviceKind.TUN:
        dev.add_address("198.18.0.1/32", "198.18.0.2")
    else:
        dev.add_address("198.18.1.1/24")
    dev.up()


def opens(kernel: KextKernel) -> List[bytes]:
    return [call[1] for call in kernel.calls if call[0] == "open" and call[1] != b"/dev/null"]


# ------------------------------------------------------------ opening by name

def test_open_tun_with_a_tun_name_opens_that_kext_node(kext: KextKernel) -> None:
    before = fd_count()
    with open_tun("tun3") as dev:
        assert isinstance(dev, TuntaposxDevice)
        assert dev.name == str(dev) == "tun3" and dev.kind is DeviceKind.TUN and not dev.packet_info
        assert "tun3" in kext.ifnets  # cdev_open attached the interface
        # The seed's open: O_RDWR|O_EXCL (and close-on-exec); non-blocking through fcntl (the kext's FIONBIO).
        assert [c for c in kext.calls if c[0] == "open" and c[1] == b"/dev/tun3"] == [
            ("open", b"/dev/tun3", O_RDWR | O_EXCL | O_CLOEXEC)]
        assert not os.get_inheritable(dev.fileno()) and not os.get_blocking(dev.fileno()) and dev.blocking
        assert dev.max_packet_size == 1500
    assert "tun3" not in kext.ifnets  # the close detached it (cdev_close)
    assert fd_count() == before + 1  # (the process-wide /dev/null the close copies over the number)
    with open_tun("tun3"):  # free again
        pass


def test_open_tap_with_a_tap_name_carries_ethernet_frames(kext: KextKernel) -> None:
    with open_tap("tap0") as dev:
        assert isinstance(dev, TuntaposxDevice) and dev.kind is DeviceKind.TAP and dev.name == "tap0"
        assert dev.max_packet_size == 1500 + 18  # Ethernet header and one VLAN tag, as on Linux
        ready(dev)
        kext.send("tap0", frame(b"in"))
        buf = bytearray(dev.max_packet_size)
        assert dev.readinto(buf) == len(frame(b"in")) and bytes(buf[:len(frame(b"in"))]) == frame(b"in")
        assert dev.write(frame(b"out")) == len(frame(b"out"))
        assert kext.received("tap0") == frame(b"out")  # the frame as it is: no header in front


def test_a_template_takes_the_first_free_node_of_sixteen(kext: KextKernel) -> None:
    kext.hold("tun0")  # another process has /dev/tun0 open
    before = fd_count()
    with open_tun("tun%d") as first, open_tun("tun%d") as second:
        assert (first.name, second.name) == ("tun1", "tun2")
        assert opens(kext) == [b"/dev/tun0", b"/dev/tun1", b"/dev/tun0", b"/dev/tun1", b"/dev/tun2"]
    with open_tap("tap%d") as tap:
        assert tap.name == "tap0"
    assert fd_count() == before + 1


def test_every_node_busy_is_devices_exhausted(kext: KextKernel) -> None:
    for n in range(IF_COUNT):
        kext.hold(f"tun{n}")
    before = fd_count()
    with pytest.raises(DevicesExhaustedError) as info:
        open_tun("tun%d")
    assert info.value.errno == errno.EBUSY and "tun15" in str(info.value) and 'open_tun("")' in str(info.value)
    assert len(opens(kext)) == IF_COUNT and fd_count() == before


def test_an_explicit_busy_name_is_device_busy(kext: KextKernel) -> None:
    with open_tun("tun2"):
        before = fd_count()
        with pytest.raises(DeviceBusyError) as info:
            open_tun("tun2")
        assert info.value.errno == errno.EBUSY and info.value.filename == "tun2"
        assert fd_count() == before
        assert opens(kext) == [b"/dev/tun2", b"/dev/tun2"]  # no other node tried for a name


def test_without_the_kext_the_error_says_so_and_points_to_utun() -> None:
    with running_as_macos(KextKernel(kext=False)) as kernel:
        before = fd_count()
        for name in ("tun0", "tun%d"):
            with pytest.raises(DeviceNotFoundError) as info:
                open_tun(name)
            assert info.value.errno == errno.ENOENT
            assert "kext is not installed" in str(info.value) and 'open_tun("")' in str(info.value)
        assert fd_count() == before
        with open_tun() as dev:  # utun needs no kext
            assert dev.name == "utun0"
        assert opens(kernel) == [b"/dev/tun0", b"/dev/tun0"]


def test_without_root_the_nodes_are_refused() -> None:
    with running_as_macos(KextKernel(root=False)):
        with pytest.raises(TunTapPermissionError) as info:
            open_tap("tap1")
        assert info.value.errno == errno.EACCES and "root" in str(info.value)


@pytest.mark.parametrize("opener,name", [
    (open_tun, "tap0"), (open_tap, "tun1"), (open_tun, "tun16"), (open_tun, "tun01"), (open_tap, "tap99"),
])
def test_a_wrong_legacy_name_is_refused_before_any_call(kext: KextKernel, opener: object, name: str) -> None:
    with pytest.raises(ValueError):
        opener(name)  # type: ignore[operator]
    assert kext.calls == []


def test_packet_info_has_nothing_to_show_on_a_legacy_device(kext: KextKernel) -> None:
    with pytest.raises(ValueError, match="no header"):
        open_tun("tun0", packet_info=True)
    assert kext.calls == []


# ------------------------------------------------------------ packets

def test_reads_and_writes_are_not_ready_until_the_interface_is_up(kext: KextKernel) -> None:
    with open_tun("tun0") as dev:
        buf = bytearray(dev.max_packet_size)
        for call in (lambda: dev.readinto(buf), lambda: dev.write(ipv4()), lambda: dev.read()):
            with pytest.raises(DeviceNotReadyError) as info:
                call()
            assert info.value.errno == errno.EIO and info.value.filename == "tun0"
            assert "add_address" in str(info.value) and "up()" in str(info.value)
        with pytest.raises(DeviceNotReadyError) as info:
            dev.read_batch(dev.packet_ring(2))
        assert info.value.errno == errno.EIO and "up" in str(info.value)
        with pytest.raises(BatchWriteError) as refused:  # (a batch's refusal names the first packet's cause)
            dev.write_batch([ipv4()])
        assert refused.value.written == 0 and isinstance(refused.value.__cause__, DeviceNotReadyError)
        assert "add_address" in str(refused.value.__cause__)
        dev.add_address("198.18.0.1/32", "198.18.0.2")
        with pytest.raises(DeviceNotReadyError):  # an address alone: the kext's if_ioctl leaves IFF_UP alone
            dev.write(ipv4())
        dev.up()
        assert kext.ifnets["tun0"].flags & IFF_UP
        assert dev.write(ipv4(b"out")) == len(ipv4(b"out"))
        assert kext.received("tun0") == ipv4(b"out")  # no AF header: the bare packet
        kext.send("tun0", ipv4(b"in"))
        assert dev.readinto(buf) == len(ipv4(b"in")) and bytes(buf[:len(ipv4(b"in"))]) == ipv4(b"in")


def test_one_plain_read_and_write_per_packet(kext: KextKernel) -> None:
    with open_tun("tun0") as dev:
        ready(dev)
        buf = bytearray(dev.max_packet_size)
        del kext.calls[:]
        kext.send("tun0", ipv4())
        dev.readinto(buf)
        dev.write(ipv4())
        assert [c[0] for c in kext.calls if c[0] in ("read", "readv", "write", "writev")] == ["read", "write"]


def test_nonblocking_reads_say_eagain(kext: KextKernel) -> None:
    with open_tun("tun1", nonblocking=True) as dev:
        ready(dev)
        with pytest.raises(BlockingIOError) as info:
            dev.read()
        assert info.value.errno == errno.EAGAIN


def test_batches_of_a_legacy_device(kext: KextKernel) -> None:
    with open_tun("tun0") as dev:
        ready(dev)
        ring = dev.packet_ring(4)
        packets = [ipv4(bytes([i]) * (i + 1)) for i in range(3)]
        for packet in packets:
            kext.send("tun0", packet)
        assert dev.read_batch(ring) == 3 and [bytes(p) for p in ring] == packets
        assert dev.write_batch(ring) == 3
        assert [kext.received("tun0") for _ in packets] == packets


def test_close_from_another_thread_wakes_a_blocked_reader(kext: KextKernel) -> None:
    with open_tun("tun0") as dev:
        ready(dev)
        errors: List[BaseException] = []

        def run() -> None:
            try:
                dev.read()
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=run)
        reader.start()
        deadline = time.monotonic() + 10
        while not any(c[0] == "poll" for c in kext.calls):
            assert time.monotonic() < deadline, "the reader never waited"
            time.sleep(0.005)
        dev.close()
        assert "tun0" not in kext.ifnets
        reader.join(10)
        assert not reader.is_alive() and len(errors) == 1 and isinstance(errors[0], ValueError)
