"""Link events (Device.events()): each kind caused on a real device, blocking and async, and every way it ends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from ipaddress import ip_interface
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest

from tuntest import (Runner, close_ends_an_async_iterator, close_wakes_a_blocked_iterator, fd_count, ip,
                     iterator_closed_from_another_thread, join_task, namespace)
from tuntap_cffi import Device, DeviceClosedError, open_tap, open_tun
from tuntap_cffi.config import Address
from tuntap_cffi.events import (
    AddressAdded, AddressRemoved, CarrierOff, CarrierOn, EventsLost, LinkDeleted, LinkDown, LinkEvent, LinkEvents,
    LinkUp, MtuChanged,
)

pytestmark = pytest.mark.device


@pytest.fixture(autouse=True)
def _dead_fd_open() -> None:
    """The process-wide /dev/null fd the first close() opens, opened before any count (it is never closed)."""
    from tuntap_cffi._syscalls import dead_fd

    dead_fd()


def set_carrier(dev: Device, on: bool) -> None:
    dev.carrier = on


def until_quiet(events: LinkEvents) -> List[LinkEvent]:
    """Every event until none came for a second."""
    got: List[LinkEvent] = []
    while True:
        try:
            event = events.get(timeout=1)
        except TimeoutError:
            return got
        assert event is not None, "the iteration ended"
        got.append(event)


def helpers_made(dev: Device) -> int:
    """fd_count() once the device has made the helpers an iterator uses (control socket, wakeup): they live until close."""
    with dev.events() as events:
        with pytest.raises(TimeoutError):
            events.get(timeout=0.01)  # (one wait: the device's wakeup eventfd)
    return fd_count()


def each_kind(dev: Device, subnet: str) -> List[Tuple[Callable[[], None], LinkEvent]]:
    """One change of each kind on *dev*, with the event it must yield.

    Each is made once the one before was reported: the kernel reports a
    carrier change from a work queue, which folds a quick off-on into nothing.
    """
    address = Address(ip_interface(f"{subnet}.1/24"))
    text = str(address.interface)
    return [
        (dev.up, LinkUp()),
        (lambda: set_carrier(dev, False), CarrierOff()),
        (lambda: set_carrier(dev, True), CarrierOn()),
        (lambda: setattr(dev, "mtu", 1400), MtuChanged(1500, 1400)),
        (lambda: dev.add_address(text), AddressAdded(address)),
        (lambda: dev.remove_address(text), AddressRemoved(address)),
        (dev.down, LinkDown()),
    ]


@pytest.mark.parametrize("opener", [open_tun, open_tap])
def test_each_kind_blocking(ifname: str, subnet: str, opener: Any) -> None:
    before = fd_count()
    with opener(ifname, ipv6=False) as dev:
        with dev.events() as events:
            for cause, wanted in each_kind(dev, subnet):
                cause()
                assert events.get(timeout=10) == wanted
            with pytest.raises(TimeoutError):  # nothing else happened
                events.get(timeout=0.3)
    assert fd_count() == before


def test_each_kind_async(ifname: str, subnet: str, run: Runner) -> None:
    before = fd_count()

    async def main() -> None:
        async with dev.events() as events:
            for cause, wanted in each_kind(dev, subnet):
                cause()
                async for event in events:
                    assert event == wanted
                    break

    with open_tun(ifname, ipv6=False) as dev:
        run(main())
    assert fd_count() == before


def test_events_of_other_interfaces_are_not_reported(ifnames: Any, subnet: str) -> None:
    with open_tun(ifnames(), ipv6=False) as dev, open_tun(ifnames(), ipv6=False) as other:
        with dev.events() as events:
            other.up()
            other.mtu = 1300
            dev.mtu = 1280
            assert events.get(timeout=10) == MtuChanged(1500, 1280)


def test_deletion_ends_the_iteration(ifname: str) -> None:
    before = fd_count()
    with open_tun(ifname, ipv6=False) as dev:
        events = dev.events()
        dev.up()
        ip("link", "del", "dev", ifname)
        got = list(events)  # ends by itself
        assert got[0] == LinkUp() and got[-1] == LinkDeleted(), got
        assert events.get() is None
    assert fd_count() == before


def test_device_close_wakes_a_blocked_iterator(ifname: str) -> None:
    before = fd_count()
    close_wakes_a_blocked_iterator(open_tun(ifname, ipv6=False))
    assert fd_count() == before


def test_device_close_ends_an_async_iterator(ifname: str, run: Runner) -> None:
    before = fd_count()
    close_ends_an_async_iterator(open_tun(ifname, ipv6=False), run)
    assert fd_count() == before


def test_device_closed_from_another_thread_ends_an_async_iterator(ifname: str, run: Runner) -> None:
    before = fd_count()
    dev = open_tun(ifname, ipv6=False)

    async def main() -> List[LinkEvent]:
        closer = threading.Timer(0.3, dev.close)
        closer.start()
        try:
            return [event async for event in dev.events()]
        finally:
            closer.join()

    try:
        assert run(main()) == []
    finally:
        dev.close()
    assert fd_count() == before


def test_closing_the_iterator_from_another_thread_wakes_it(ifname: str) -> None:
    with open_tun(ifname, ipv6=False) as dev:
        before = helpers_made(dev)
        iterator_closed_from_another_thread(dev)
        assert fd_count() == before


def test_aclose_from_another_task_ends_the_waiting_one(ifname: str, run: Runner) -> None:
    with open_tun(ifname, ipv6=False) as dev:
        before = helpers_made(dev)

        async def main() -> None:
            events = dev.events()
            task = asyncio.ensure_future(events.__anext__())
            await asyncio.sleep(0.2)
            with pytest.raises(RuntimeError):  # one consumer at a time
                events.get(timeout=0)
            await events.aclose()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(task, 10)

        run(main())
        assert fd_count() == before


def test_a_cancelled_wait_loses_no_event(ifname: str, run: Runner) -> None:
    with open_tun(ifname, ipv6=False) as dev:
        async def main() -> LinkEvent:
            async with dev.events() as events:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(events.__anext__(), 0.2)
                dev.mtu = 1400
                return await asyncio.wait_for(events.__anext__(), 10)

        assert run(main()) == MtuChanged(1500, 1400)


def test_lost_events_are_reported_then_resynced(ifname: str, subnet: str) -> None:
    with open_tun(ifname, ipv6=False) as dev:
        with dev.events(rcvbuf=1) as events:  # the kernel's minimum: a few messages
            added = [Address(ip_interface(f"{subnet}.{host}/24")) for host in range(1, 101)]
            for address in added:
                dev.add_address(str(address.interface))
            got = until_quiet(events)
            assert EventsLost() in got, got[:5]
            # After the resync every address was reported once, none twice.
            reported = [e.address for e in got if isinstance(e, AddressAdded)]
            assert sorted(reported, key=str) == sorted(added, key=str)


@pytest.mark.parametrize("rcvbuf, error", [(0, ValueError), (-5, ValueError), (True, TypeError), ("1", TypeError),
                                            (2**31, ValueError)])
def test_bad_arguments_fail_before_any_fd(ifname: str, rcvbuf: object, error: type) -> None:
    start = fd_count()
    with open_tun(ifname, ipv6=False) as dev:
        before = helpers_made(dev)
        with pytest.raises(error, match="rcvbuf"):
            dev.events(rcvbuf=rcvbuf)  # type: ignore[arg-type]
        with dev.events() as events:
            with pytest.raises(ValueError, match="timeout"):
                events.get(timeout=-1)
        assert fd_count() == before
    with pytest.raises(DeviceClosedError):
        dev.events()
    assert fd_count() == start


ON_MACOS = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.platform = "darwin"
from tuntap_cffi import UnsupportedPlatformError, Device
dev = Device(os.open("/dev/null", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "utun7", 1)  # (no syscall)
before = len(os.listdir("/proc/self/fd"))
try:
    dev.events()
except UnsupportedPlatformError as exc:
    print(exc.strerror)
else:
    print("no error")
print(len(os.listdir("/proc/self/fd")) == before)
dev.close()
"""


def test_events_on_macos_need_macos_own_libc() -> None:
    """macOS has link events (PF_ROUTE: tests/test_bsd_events.py), through libSystem only: here, the one error."""
    repo = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", ON_MACOS, repo], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("link events (Device.events) on macOS: works only on macOS itself"), lines
    assert "libSystem" in lines[0], lines
    assert lines[1] == "True", lines  # no fd opened on the way to the error


def test_ipv6_addresses_are_reported(ifname: str) -> None:
    with open_tun(ifname) as dev:  # IPv6 on: the kernel gives it a link-local address once up
        with dev.events() as events:
            dev.up()
            assert events.get(timeout=10) == LinkUp()
            added = events.get(timeout=10)
            assert isinstance(added, AddressAdded) and added.address.interface.ip.is_link_local, added
            dev.down()  # the kernel reports the link first, then takes its IPv6 addresses away
            assert [events.get(timeout=10) for _ in range(2)] == [LinkDown(), AddressRemoved(added.address)]


def test_after_lost_events_the_reported_state_is_the_kernels(ifname: str, subnet: str) -> None:
    """Adds still queued when their removals were dropped must not be reported after the resync."""
    with open_tun(ifname, ipv6=False) as dev:
        with dev.events(rcvbuf=1) as events:
            texts = [f"{subnet}.{host}/24" for host in range(1, 61)]
            for text in texts:  # the first few notifications fit in the buffer, the rest are dropped
                dev.add_address(text)
            for text in texts:
                dev.remove_address(text)
            got = until_quiet(events)
            assert EventsLost() in got
            state = set()
            for event in got:
                if isinstance(event, AddressAdded):
                    state.add(event.address)
                elif isinstance(event, AddressRemoved):
                    state.discard(event.address)
            assert state == set(dev.addresses) == set(), got


def test_closes_racing_the_consumer_leave_no_fd(ifname: str) -> None:
    with open_tun(ifname, ipv6=False) as dev:
        before = helpers_made(dev)
        for _ in range(40):
            events = dev.events()
            closer = threading.Thread(target=events.close)
            closer.start()
            try:
                assert events.get(timeout=30) is None  # whichever comes first: the close ends the wait
            except TimeoutError:
                raise AssertionError("a close() from another thread did not end the wait")
            finally:
                join_task(closer)
            events.close()  # (idempotent)
            assert events.get() is None
        assert fd_count() == before


def test_events_of_a_device_in_another_namespace(ifname: str, subnet: str) -> None:
    """The iterator listens in the device's namespace, not the caller's (a netlink socket hears only its own)."""
    with namespace("ev") as ns, open_tun(ifname, netns=ns, ipv6=False) as dev:
        with dev.events() as events:
            for cause, wanted in each_kind(dev, subnet):
                cause()
                assert events.get(timeout=10) == wanted
