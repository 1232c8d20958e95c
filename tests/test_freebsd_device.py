"""A Device on FreeBSD (/dev/tun, /dev/tap), against the simulated FreeBSD kernel of ``freebsd_kernel.py``.

Runs on Linux, in this process: :func:`freebsd_kernel.running_as_freebsd`
(darwin_kernel's seam) points the capability table and backend chosen at
import at FreeBSD's and ``tuntap_cffi._freebsd.libc`` at the simulated
kernel, and fails the test if any Linux libc function is reached.  The
device fds are real AF_UNIX datagram socketpairs, so blocking, poll,
close() from another thread and fd counts are real.
"""

from __future__ import annotations

import asyncio
import errno
import io
from pathlib import Path
from typing import Iterator, List

import pytest

from bsd_packets import (close_fails_a_waiting_read, closed_while_waiting, dump_two_packets, ipv4, ipv6, mixed,
                         pcap_packets)
from freebsd_kernel import AF_INET, AF_INET6, C, IO, O_RDWR, FreeBsdKernel, running_as_freebsd
from tuntest import fd_count
from tuntap_cffi import (Device, DeviceBusyError, DeviceClosedError, DeviceNotFoundError, InvalidPacketError,
                         UnsupportedPlatformError, delete_persistent, open_tap, open_tun)
from tuntap_cffi._freebsd_device import FreeBsdDevice
from tuntap_cffi.pcap import LINKTYPE_RAW, PcapWriter


@pytest.fixture
def fbsd() -> Iterator[FreeBsdKernel]:
    with running_as_freebsd(FreeBsdKernel()) as kernel:
        yield kernel


def frame(payload: bytes = b"frame") -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + payload


def ioctls(kernel: FreeBsdKernel) -> List[str]:
    """The names of the ioctl requests made so far (FreeBSD's headers' names)."""
    names = {value: key for key, value in IO.items() if key != "TAPGIFNAME"}  # (TAPGIFNAME is TUNGIFNAME)
    return [names.get(c[2], hex(c[2])) for c in kernel.calls if c[0] == "ioctl"]


# ------------------------------------------------------------ opening, naming, destroying

def test_open_tun_clones_dev_tun_turns_on_the_af_header_and_destroys_at_close(fbsd: FreeBsdKernel) -> None:
    before = fd_count()
    with open_tun() as dev:
        assert isinstance(dev, FreeBsdDevice) and dev.name == str(dev) == "tun0"
        assert fbsd.interfaces == ["tun0"] and fbsd.ifnets["tun0"].head  # TUNSIFHEAD 1
        assert ("open", b"/dev/tun", fbsd.calls[0][2]) == fbsd.calls[0]
        assert ioctls(fbsd)[:2] == ["TUNGIFNAME", "TUNSIFHEAD"]
        assert not dev.packet_info and dev.blocking and dev.kind.value == "tun"
        with open_tun() as second:  # /dev/tun again: the next free unit
            assert second.name == "tun1"
    # tunclose leaves the interface; the Device destroys it (SIOCIFDESTROY after the close).
    assert fbsd.interfaces == [] and fbsd.destroyed == ["tun1", "tun0"]
    assert fd_count() == before + 1  # the process-wide /dev/null that close() copies over the number


def test_tun_n_opens_that_unit_and_a_second_opener_is_busy(fbsd: FreeBsdKernel) -> None:
    with open_tun("tun7", packet_info=True, nonblocking=True) as dev:
        assert dev.name == "tun7" and dev.packet_info and not dev.blocking
        # Whether tun7 was there (it persists then) is asked before the open, which would make it.
        assert [c[:2] for c in fbsd.calls[:2]] == [("if_nametoindex", b"tun7"), ("open", b"/dev/tun7")]
        before = fd_count()
        with pytest.raises(DeviceBusyError) as info:  # tunopen: TUN_OPEN
            open_tun("tun7")
        assert info.value.errno == errno.EBUSY and "tun7" in str(info.value)
        assert fd_count() == before and fbsd.interfaces == ["tun7"]  # the other opener's interface stays
    assert fbsd.interfaces == []


def test_any_other_name_is_a_clone_renamed_with_siocsifname(fbsd: FreeBsdKernel) -> None:
    with open_tun("ttfbsd0") as dev:
        assert dev.name == "ttfbsd0" and fbsd.interfaces == ["ttfbsd0"]
        assert fbsd.ifnets["ttfbsd0"].node == "tun0"  # the device node keeps its name
        before = fd_count()
        with pytest.raises(DeviceBusyError) as info:  # if_rename: EEXIST
            open_tun("ttfbsd0")
        assert info.value.errno == errno.EEXIST and fd_count() == before
        assert fbsd.interfaces == ["ttfbsd0"] and fbsd.destroyed == ["tun1"]  # the clone made for it went
    assert fbsd.destroyed == ["tun1", "ttfbsd0"]


@pytest.mark.parametrize("name", ["tun/0", "a" * 16, "tun 1", "é"])
def test_a_name_freebsd_cannot_have_is_refused_before_any_call(fbsd: FreeBsdKernel, name: str) -> None:
    with pytest.raises(ValueError):
        open_tun(name)
    assert fbsd.calls == []


def test_without_root_no_node_is_cloned(fbsd: FreeBsdKernel) -> None:
    fbsd.root = False
    before = fd_count()
    with pytest.raises(DeviceNotFoundError) as info:
        open_tun()
    assert "kldload if_tuntap" in str(info.value) and "root" in str(info.value)
    assert fd_count() == before and fbsd.interfaces == []


def test_what_freebsd_lacks_fails_before_any_call(fbsd: FreeBsdKernel) -> None:
    for call in (lambda: open_tun(vnet_hdr=True), lambda: open_tun(multi_queue=True),
                 lambda: open_tun(owner=0)):
        with pytest.raises(UnsupportedPlatformError) as info:
            call()
        assert "FreeBSD" in str(info.value)
    with pytest.raises(ValueError):
        open_tap(packet_info=True)  # a tap has no header to show
    assert fbsd.calls == []


def test_broadcast_sets_tunsifmode_and_leaves_multicast_on(fbsd: FreeBsdKernel) -> None:
    p2p, bcast, mcast = (C[n] for n in ("IFF_POINTOPOINT", "IFF_BROADCAST", "IFF_MULTICAST"))
    with open_tun() as dev:  # None: a new tun keeps tuncreate's point-to-point mode, no TUNSIFMODE
        assert "TUNSIFMODE" not in ioctls(fbsd) and fbsd.ifnets[dev.name].flags & (p2p | bcast | mcast) == p2p | mcast
    with open_tun(broadcast=True) as dev:
        assert ioctls(fbsd)[-1] == "TUNSIFMODE"
        assert fbsd.ifnets[dev.name].flags & (p2p | bcast | mcast) == bcast | mcast
    with open_tun("tun5", persist=True, broadcast=True):
        pass
    with open_tun("tun5", broadcast=False) as dev:  # False: back to point-to-point, on an existing tun too
        assert fbsd.ifnets["tun5"].flags & (p2p | bcast | mcast) == p2p | mcast
        dev.persistent = False


def test_the_mode_of_a_tun_that_is_up_cannot_change_and_nothing_is_left(fbsd: FreeBsdKernel) -> None:
    open_tun("tun3", persist=True).close()  # (tundtor takes it down at the close)
    fbsd.ifnets["tun3"].flags |= C["IFF_UP"]  # then `ifconfig tun3 up`, by someone else
    before = fd_count()
    with pytest.raises(DeviceBusyError) as info:  # tunioctl TUNSIFMODE: "deny this if UP"
        open_tun("tun3", broadcast=True)
    assert info.value.errno == errno.EBUSY and "bring it down first" in str(info.value)
    assert fd_count() == before and fbsd.interfaces == ["tun3"]  # the fd closed; tun3 was there before: kept
    with open_tun("tun3") as dev:  # (None: the mode is left as it is, so an up tun opens)
        dev.down()
        dev.persistent = False
    assert fbsd.interfaces == []


def test_broadcast_is_refused_on_a_tap_and_checked_before_any_call(fbsd: FreeBsdKernel) -> None:
    with pytest.raises(TypeError):
        open_tap(broadcast=True)  # type: ignore[call-arg]  # a TAP is Ethernet: always broadcast
    with pytest.raises(TypeError):
        open_tun(broadcast=1)  # type: ignore[arg-type]
    assert fbsd.calls == []


# ------------------------------------------------------------ packets on a tun

def test_writes_carry_freebsds_af_header_and_reads_strip_it(fbsd: FreeBsdKernel) -> None:
    with open_tun() as dev:
        dev.up()
        assert dev.write(ipv4()) == len(ipv4()) and dev.write(ipv6()) == len(ipv6())
        # tunwrite_l3 reads ntohl(family): AF_INET6 is 28 on FreeBSD (30 on macOS, 10 on Linux).
        assert fbsd.input(dev.name) == (AF_INET, ipv4()) and fbsd.input(dev.name) == (AF_INET6, ipv6())
        assert AF_INET6 == 28
        buf = bytearray(dev.max_packet_size)
        fbsd.output(dev.name, ipv6())
        assert dev.readinto(buf) == len(ipv6()) and bytes(buf[:len(ipv6())]) == ipv6()  # (binds the buffer)
        fbsd.output(dev.name, ipv6(b"again"))
        mark = len(fbsd.calls)
        assert dev.readinto(buf) == len(ipv6(b"again")) and bytes(buf[:len(ipv6(b"again"))]) == ipv6(b"again")
        assert fbsd.calls[mark:] == [("readv", dev.fileno(), 2)]  # one call: the header into the scratch
        fbsd.output(dev.name, ipv4(b"x" * 100))
        assert dev.read() == ipv4(b"x" * 100)


def test_a_write_to_a_tun_that_is_down_is_dropped_and_says_zero(fbsd: FreeBsdKernel) -> None:
    with open_tun() as dev:
        assert not dev.is_up
        assert dev.write(ipv4()) == 0  # tunwrite: "ignore silently"
        assert not fbsd.written(dev.name)
        dev.up()
        assert dev.write(ipv4()) == len(ipv4()) and fbsd.input(dev.name) == (AF_INET, ipv4())


def test_a_packet_that_is_not_ipv4_or_ipv6_is_refused_before_the_syscall(fbsd: FreeBsdKernel) -> None:
    with open_tun() as dev:
        dev.up()
        mark = len(fbsd.calls)
        with pytest.raises(InvalidPacketError) as info:
            dev.write(b"\x00" * 20)
        assert "a tun carries IPv4 or IPv6" in str(info.value) and info.value.errno == errno.EINVAL
        assert fbsd.calls[mark:] == []


def test_packet_info_shows_freebsds_header(fbsd: FreeBsdKernel) -> None:
    with open_tun(packet_info=True) as dev:
        dev.up()
        fbsd.output(dev.name, ipv6())
        assert dev.read() == b"\0\0\0\x1c" + ipv6()  # 28, big-endian
        fbsd.output(dev.name, ipv6())
        info = dev.read_packet()
        assert (info.flags, info.proto, bytes(info.payload)) == (0, 0x86DD, ipv6())
        assert dev.write_packet(ipv6(b"w")) == len(ipv6(b"w"))
        assert fbsd.input(dev.name) == (AF_INET6, ipv6(b"w"))
        assert dev.write(b"\0\0\0\x02" + ipv4()) == 4 + len(ipv4())  # the caller's header, as it is
        assert fbsd.input(dev.name) == (AF_INET, ipv4())
        with pytest.raises(OSError) as err:  # tunwrite_l3: a family other than INET/INET6
            dev.write(b"\0\0\0\x07" + ipv4())
        assert err.value.errno == errno.EAFNOSUPPORT


def test_nonblocking_reads_say_eagain_in_the_running_os_numbers(fbsd: FreeBsdKernel) -> None:
    with open_tun(nonblocking=True) as dev:
        with pytest.raises(BlockingIOError) as info:
            dev.read()
        assert info.value.errno == errno.EAGAIN  # FreeBSD's 35, reported as this OS's


def test_close_from_another_thread_wakes_a_blocked_reader(fbsd: FreeBsdKernel) -> None:
    dev = open_tun()
    buf = bytearray(dev.max_packet_size)
    assert isinstance(closed_while_waiting(fbsd, dev, lambda: dev.readinto(buf)), DeviceClosedError)
    assert fbsd.interfaces == []


def test_asyncio_reads_and_writes(fbsd: FreeBsdKernel) -> None:
    async def main() -> None:
        with open_tun() as dev:
            dev.up()
            reading = asyncio.ensure_future(dev.read_async())
            await asyncio.sleep(0)
            assert not reading.done()
            fbsd.output(dev.name, ipv6())
            assert await asyncio.wait_for(reading, 10) == ipv6()
            assert await dev.write_async(ipv4(b"async")) == len(ipv4(b"async"))
            assert fbsd.input(dev.name) == (AF_INET, ipv4(b"async"))
            await close_fails_a_waiting_read(dev)

    asyncio.run(main())


def test_read_batch_and_write_batch_through_the_loop_engine(fbsd: FreeBsdKernel) -> None:
    with open_tun() as dev:
        dev.up()
        packets, ring = mixed(5), dev.packet_ring(8)
        for packet in packets:
            fbsd.output(dev.name, packet)
        assert dev.batch_backend == "loop" and dev.read_batch(ring) == 5 and [bytes(p) for p in ring] == packets
        assert dev.write_batch(ring) == 5  # one writev per packet, FreeBSD's header on each
        assert [fbsd.input(dev.name) for _ in packets] == [
            (AF_INET if p[0] >> 4 == 4 else AF_INET6, p) for p in packets]


def test_a_capture_is_linktype_raw_without_the_header(fbsd: FreeBsdKernel) -> None:
    packets = [ipv4(b"one"), ipv6(b"two")]
    out = io.BytesIO()
    with open_tun() as dev, PcapWriter(out, LINKTYPE_RAW) as writer:
        dev.up()
        buf = bytearray(dev.max_packet_size)
        for packet in packets:
            fbsd.output(dev.name, packet)
            writer.write_packet(memoryview(buf)[:dev.readinto(buf)])
        data = out.getvalue()
    assert pcap_packets(data) == packets


# ------------------------------------------------------------ a tap

def test_a_tap_carries_bare_ethernet_frames(fbsd: FreeBsdKernel) -> None:
    with open_tap() as dev:
        assert dev.name == "tap0" and dev.kind.value == "tap" and not dev.packet_info
        assert "TUNSIFHEAD" not in ioctls(fbsd)  # a tap takes no header
        dev.up()
        assert dev.write(frame()) == len(frame())
        assert fbsd.input(dev.name) == (None, frame())
        fbsd.output(dev.name, frame(b"in"))
        assert dev.read() == frame(b"in")
        with pytest.raises(ValueError):
            dev.read_packet()
        ring = dev.packet_ring(4)
        fbsd.output(dev.name, frame(b"a"))
        fbsd.output(dev.name, frame(b"b"))
        assert dev.read_batch(ring) == 2 and [bytes(p) for p in ring] == [frame(b"a"), frame(b"b")]
    assert fbsd.destroyed == ["tap0"]


# ------------------------------------------------------------ configuration through the BSD layer

def test_mtu_and_up_down_go_through_ifioctl_with_freebsds_numbers(fbsd: FreeBsdKernel) -> None:
    with open_tun() as dev:
        assert dev.mtu == 1500 and not dev.is_up
        dev.mtu = 1400
        assert fbsd.ifnets[dev.name].mtu == 1400 and dev.mtu == 1400
        dev.up()
        assert dev.is_up and fbsd.ifnets[dev.name].flags & 0x1
        dev.down()
        assert not dev.is_up
        assert dev.ifindex == fbsd.ifnets[dev.name].index
        with pytest.raises(ValueError):
            dev.mtu = 10
    assert fbsd.interfaces == []


def test_no_fd_leaks_over_a_devices_life(fbsd: FreeBsdKernel) -> None:
    open_tun().close()  # the process-wide /dev/null fd
    before = fd_count()
    for _ in range(3):
        with open_tun() as dev:
            dev.up()
            dev.write(ipv4())
            dev.mtu
    assert fd_count() == before and fbsd.interfaces == []


# ------------------------------------------------------------ persistence and adoption (if_tuntap.c)

def test_persist_skips_the_destroy_and_tun_n_attaches_again(fbsd: FreeBsdKernel) -> None:
    """tunclose leaves the interface: a persistent Device does not destroy it, /dev/tunN opens it again."""
    open_tap().close()  # the process-wide /dev/null fd
    before = fd_count()
    with open_tun(persist=True) as dev:
        assert dev.persistent and dev.name == "tun0"
        index = fbsd.ifnets["tun0"].index
    assert fbsd.interfaces == ["tun0"] and fbsd.destroyed == ["tap0"]
    with open_tun("tun0") as again:  # there before the open: persistent unless persist=False
        assert again.persistent and fbsd.ifnets["tun0"].index == index
    assert fbsd.interfaces == ["tun0"]
    with open_tun("tun0", persist=False) as last:
        assert not last.persistent
    assert fbsd.interfaces == [] and fbsd.destroyed == ["tap0", "tun0"]
    assert fd_count() == before


def test_persistent_is_settable_and_delete_persistent_destroys(fbsd: FreeBsdKernel) -> None:
    with open_tap() as dev:
        assert not dev.persistent
        dev.persistent = True
        with pytest.raises(TypeError):
            dev.persistent = 1  # type: ignore[assignment]
        with pytest.raises(DeviceBusyError):  # tun_destroy would sleep until the close: refused first
            delete_persistent(dev.name)
        assert fbsd.interfaces == ["tap0"]
    assert fbsd.interfaces == ["tap0"] and fbsd.destroyed == []
    before = fd_count()
    delete_persistent("tap0")
    assert fbsd.interfaces == [] and fbsd.destroyed == ["tap0"] and fd_count() == before
    with pytest.raises(DeviceNotFoundError):
        delete_persistent("tap0")
    assert fbsd.interfaces == []


def test_from_fd_adopts_a_dev_tun_fd_and_turns_its_header_on(fbsd: FreeBsdKernel) -> None:
    """A /dev/tun fd opened elsewhere (no TUNSIFHEAD yet): TUNGIFNAME names it, TUNGIFHEAD tells it is a tun."""
    fd = fbsd.open(b"/dev/tun", O_RDWR)
    assert not fbsd.ifnets["tun0"].head
    with Device.from_fd(fd) as dev:
        assert isinstance(dev, FreeBsdDevice) and dev.name == "tun0" and dev.kind.value == "tun"
        assert fbsd.ifnets["tun0"].head and not dev.persistent and not dev.packet_info
        dev.up()  # (tunwrite drops a packet while down)
        dev.write(ipv6())
        assert fbsd.input("tun0") == (AF_INET6, ipv6())
    assert fbsd.interfaces == [] and fbsd.destroyed == ["tun0"]  # not persistent: it goes with the Device


def test_from_fd_adopts_a_dev_tap_fd(fbsd: FreeBsdKernel) -> None:
    fd = fbsd.open(b"/dev/tap", O_RDWR)
    with pytest.raises(ValueError):
        Device.from_fd(fd, packet_info=True)  # a tap has no header to show
    with Device.from_fd(fd, nonblocking=True) as dev:
        assert dev.name == "tap0" and dev.kind.value == "tap" and not dev.blocking
        dev.persistent = True
    assert fbsd.interfaces == ["tap0"]



def test_the_dump_command_on_a_tun(fbsd: FreeBsdKernel, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tuntap-cffi dump tun4 --count 2 --pcap F` on FreeBSD: a line per packet, a LINKTYPE_RAW capture, tun4 gone."""
    path = tmp_path / "tun.pcap"
    status, packets = dump_two_packets(fbsd, "tun4", path)
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert len([line for line in out if " UDP " in line]) == 2, out
    assert pcap_packets(path.read_bytes()) == packets
    assert fbsd.interfaces == [] and "tun4" in fbsd.destroyed
