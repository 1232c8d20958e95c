"""Multi-queue devices and the device side of offloads (vnet_hdr, TUNSETOFFLOAD)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import List

import pytest

from tuntest import configure, fd_count, ip, link_exists
from tuntap_cffi import Device, DeviceBusyError, DeviceClosedError, DeviceNotReadyError, TunFlags, delete_persistent, open_queues, open_tun
from tuntap_cffi.device import TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6

pytestmark = pytest.mark.device


def test_open_queues_share_one_interface(ifname: str) -> None:
    queues = open_queues(ifname, 3)
    try:
        assert [q.name for q in queues] == [ifname] * 3
        assert len({q.fileno() for q in queues}) == 3
        assert all(q.flags & TunFlags.MULTI_QUEUE for q in queues)
        assert link_exists(ifname)
    finally:
        for q in queues:
            q.close()
    assert not link_exists(ifname)


@pytest.mark.parametrize("n, exc", [(0, ValueError), (257, ValueError), ("2", TypeError), (True, TypeError)])
def test_open_queues_bad_count(ifname: str, n: object, exc: type) -> None:
    before = fd_count()
    with pytest.raises(exc):
        open_queues(ifname, n)  # type: ignore[arg-type]
    assert fd_count() == before


def test_open_queues_failure_closes_what_it_opened(ifname: str) -> None:
    with open_tun(ifname):  # a single-queue device of that name: attaching queues fails
        before = fd_count()
        with pytest.raises(OSError):
            open_queues(ifname, 2)
        assert fd_count() == before


def test_queue_ops_need_multi_queue(ifname: str) -> None:
    with open_tun(ifname) as dev:
        with pytest.raises(ValueError):
            dev.detach_queue()


@pytest.mark.parametrize("call", ["attach_queue", "detach_queue"])
def test_queue_ops_after_the_interface_was_deleted_say_so(ifname: str, call: str) -> None:
    """The kernel says EINVAL (tun_set_queue finds no tun): the library's DeviceNotReadyError, naming the deletion."""
    queues = open_queues(ifname, 2)
    try:
        if call == "attach_queue":
            queues[1].detach_queue()
        ip("link", "del", ifname)
        with pytest.raises(DeviceNotReadyError) as info:
            getattr(queues[1], call)()
        assert info.value.errno == errno.EINVAL and info.value.filename == ifname  # (the kernel's errno)
        assert "was deleted" in str(info.value)
        assert "open a new one" in str(info.value)
    finally:
        for q in queues:
            q.close()


def test_detached_queue_gets_no_packets(ifname: str, subnet: str) -> None:
    q0, q1 = open_queues(ifname, 2, nonblocking=True)
    try:
        configure(q0, subnet)
        q1.detach_queue()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for port in range(1000, 1032):  # 32 flows: with two queues some would hash to q1
                s.sendto(b"flow", (f"{subnet}.2", port))
        time.sleep(0.2)
        buf = bytearray(q0.max_packet_size)
        got = 0
        while True:
            try:
                q0.readinto(buf)
                got += 1
            except BlockingIOError:
                break
        assert got == 32, "every flow goes to the only attached queue"
        q1.attach_queue()
        with pytest.raises(BlockingIOError):
            q1.readinto(buf)
    finally:
        q0.close()
        q1.close()


def test_blocked_readers_on_two_queues_run_in_parallel(ifname: str, subnet: str) -> None:
    """cffi releases the GIL in the call: one thread blocked reading queue A
    does not stop another thread from reading queue B meanwhile."""
    queues = open_queues(ifname, 2)
    try:
        configure(queues[0], subnet)
        results: List[object] = [None, None]

        def reader(i: int) -> None:
            buf = bytearray(queues[i].max_packet_size)
            try:
                results[i] = (queues[i].readinto(buf), time.monotonic())
            except DeviceClosedError as exc:
                results[i] = exc

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        # Send flows until one reader has returned; the other stays blocked in
        # the kernel on its own queue (or gets a packet too): no serialisation.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            port = 2000
            deadline = time.monotonic() + 5
            while all(r is None for r in results) and time.monotonic() < deadline:
                s.sendto(b"x", (f"{subnet}.2", port))
                port += 1
                time.sleep(0.01)
        assert any(isinstance(r, tuple) for r in results), "no reader returned while the other was blocked"
        # The remaining one is still blocked (or also returned): either way it did not
        # prevent the first from running.  Close wakes whoever still waits.
    finally:
        for q in queues:
            q.close()
        for t in threads:
            t.join(2)
    assert all(isinstance(r, (tuple, DeviceClosedError)) for r in results), results


def test_vnet_hdr_and_offloads(ifname: str) -> None:
    with open_tun(ifname, vnet_hdr=True) as dev:
        assert dev.flags & TunFlags.VNET_HDR
        assert dev.vnet_hdr_size == 10
        assert dev.max_packet_size == dev.mtu + 10
        got = dev.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6)
        assert got & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        assert dev.offload == got
        assert dev.max_packet_size == 65535 + 10  # super-packets
        with pytest.raises(ValueError):
            dev.readinto(bytearray(1510))  # an MTU-sized buffer no longer fits a super-packet
        dev.set_offload(0)
        assert dev.max_packet_size == dev.mtu + 10


def test_vnet_hdr_12_and_from_fd(ifname: str) -> None:
    dev = open_tun(ifname, vnet_hdr=True, vnet_hdr_size=12)
    fd = dev.detach()
    with Device.from_fd(fd) as again:
        assert again.vnet_hdr_size == 12
        assert again.max_packet_size >= 65535  # offloads unknown: sized for super-packets


@pytest.mark.parametrize("options, exc", [
    ({"offload": TUN_F_CSUM}, ValueError),  # offloads without vnet_hdr
    ({"vnet_hdr": True, "offload": 0x1000}, ValueError),
    ({"vnet_hdr": True, "offload": TUN_F_TSO4}, ValueError),  # TSO without CSUM
    ({"vnet_hdr": True, "vnet_hdr_size": 11}, ValueError),
    ({"vnet_hdr": 1}, TypeError),
    ({"vnet_hdr": True, "offload": "tso"}, TypeError),
])
def test_bad_offload_options(ifname: str, options: dict, exc: type) -> None:  # type: ignore[type-arg]
    before = fd_count()
    with pytest.raises(exc):
        open_tun(ifname, **options)
    assert fd_count() == before
    assert not link_exists(ifname)


@pytest.mark.parametrize("held", ["attached", "detached"])
def test_delete_persistent_refuses_a_multi_queue_interface_still_held(ifname: str, held: str) -> None:
    """The kernel lets delete_persistent's own queue attach while others are open; it must still raise
    DeviceBusyError, as its docstring says, and leave the interface persistent."""
    queues = open_queues(ifname, 2, persist=True)
    try:
        if held == "detached":
            queues[0].close()
            queues[1].detach_queue()  # held, but no longer counted among the attached queues
        with pytest.raises(DeviceBusyError) as info:
            delete_persistent(ifname)
        assert info.value.filename == ifname and "close" in str(info.value), str(info.value)
        assert link_exists(ifname)
        assert int(open(f"/sys/class/net/{ifname}/tun_flags").read(), 16) & TunFlags.PERSIST
    finally:
        for q in queues:
            q.close()
    assert link_exists(ifname)  # still persistent after the last queue closed
    delete_persistent(ifname)  # nothing holds it now
    assert not link_exists(ifname)
