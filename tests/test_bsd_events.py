"""Link events on macOS and FreeBSD (Device.events() from a PF_ROUTE socket), against the simulated kernels.

The process runs as macOS (``darwin_kernel.running_as_macos``) or FreeBSD
(``freebsd_kernel.running_as_freebsd``) for the library: the Device's C
calls all reach ``xnu_net.XnuNetKernel`` or ``freebsd_route.FreeBsdRouteKernel``,
whose PF_ROUTE sockets are real socketpairs that hear ``rt_ifmsg``,
``rt_newaddrmsg`` and (FreeBSD) ``rt_ifannouncemsg`` as those kernels send
them.  So blocking, poll, close() from another thread, asyncio and fd
counts are real; no Linux libc call may be reached (checked on the way
out).  The iterator is events.py's, the same as on Linux: only the socket
and its messages are the BSD layer's.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, ip_interface
from typing import Callable, Iterator, List, Tuple

import pytest

from darwin_kernel import running_as_macos
from freebsd_kernel import running_as_freebsd
from freebsd_kernel import C, raw_control
from freebsd_route import LINK_STATE_DOWN, LINK_STATE_UP, SO_RERROR, FreeBsdRouteKernel
from tuntest import (Runner, close_ends_an_async_iterator, close_wakes_a_blocked_iterator, fd_count,
                     iterator_closed_from_another_thread)
from xnu_net import PF_ROUTE, XnuNetKernel
from tuntap_cffi import Device, UnsupportedPlatformError, open_tun
from tuntap_cffi.config import Address
from tuntap_cffi.events import (
    AddressAdded, AddressRemoved, CarrierOff, CarrierOn, EventsLost, LinkDeleted, LinkDown, LinkEvent, LinkUp,
    MtuChanged,
)


@pytest.fixture
def xnu() -> Iterator[XnuNetKernel]:
    kernel = XnuNetKernel()
    with running_as_macos(kernel):
        open_tun().close()  # the process-wide /dev/null fd of close(), opened before any count
        yield kernel


PEER4 = Address(ip_interface("198.18.0.1/32"), IPv4Address("198.18.0.2"))
LINK_LOCAL = Address(ip_interface("fe80::1/64"))  # XNU embeds the scope in bytes 2-3: unembedded here
GLOBAL6 = Address(ip_interface("2001:db8::1/64"))


def each_kind(dev: Device) -> List[Tuple[Callable[[], None], LinkEvent]]:
    """One change of each kind XNU reports on *dev* (a utun: point-to-point, up at attach), with its event."""
    return [
        (dev.down, LinkDown()),
        (dev.up, LinkUp()),
        (lambda: setattr(dev, "mtu", 1400), MtuChanged(1500, 1400)),
        (lambda: dev.add_address("198.18.0.1/32", peer="198.18.0.2"), AddressAdded(PEER4)),
        (lambda: dev.add_address("fe80::1/64"), AddressAdded(LINK_LOCAL)),
        (lambda: dev.add_address("2001:db8::1/64"), AddressAdded(GLOBAL6)),
        (lambda: dev.remove_address("198.18.0.1/32"), AddressRemoved(PEER4)),
        (lambda: dev.remove_address("fe80::1/64"), AddressRemoved(LINK_LOCAL)),
    ]


def test_each_kind_blocking(xnu: XnuNetKernel) -> None:
    before = fd_count()
    with open_tun() as dev:
        with dev.events() as events:
            assert xnu.net_sockets[events._sock] == PF_ROUTE
            for change, expected in each_kind(dev):
                change()
                assert events.get(timeout=10) == expected
            dev.mtu = 1400  # rt_ifmsg comes for an unchanged MTU too: nothing changed, nothing reported
            dev.mtu = 1300
            assert events.get(timeout=10) == MtuChanged(1400, 1300)
    assert fd_count() == before
    assert xnu.dropped == 0


def test_each_kind_async(xnu: XnuNetKernel, run: Runner) -> None:
    before = fd_count()
    with open_tun() as dev:
        async def main() -> List[Tuple[LinkEvent, LinkEvent]]:
            pairs = []
            async with dev.events() as events:
                for change, expected in each_kind(dev):
                    change()
                    pairs.append((await asyncio.wait_for(events.__anext__(), 10), expected))
            return pairs

        for got, expected in run(main()):
            assert got == expected
    assert fd_count() == before


def test_only_this_interfaces_messages_are_reported(xnu: XnuNetKernel) -> None:
    with open_tun() as dev, open_tun() as other, dev.events() as events:
        other.down()  # another interface's RTM_IFINFO,
        other.add_address("198.18.1.1/32", peer="198.18.1.2")  # RTM_NEWADDR,
        dev.add_route("198.18.4.0/24")  # and a route's RTM_ADD reach every PF_ROUTE socket first
        dev.mtu = 1280
        assert events.get(timeout=10) == MtuChanged(1500, 1280)


def test_events_made_before_the_iterator_are_not_reported(xnu: XnuNetKernel) -> None:
    with open_tun() as dev:
        dev.down()
        dev.add_address("2001:db8::1/64")
        with dev.events() as events:  # its state is the kernel's now: down, with that address
            dev.up()
            dev.remove_address("2001:db8::1/64")
            assert [events.get(timeout=10), events.get(timeout=10)] == [LinkUp(), AddressRemoved(GLOBAL6)]


def test_device_close_wakes_a_blocked_iterator(xnu: XnuNetKernel) -> None:
    before = fd_count()
    close_wakes_a_blocked_iterator(open_tun())
    assert fd_count() == before


def test_device_close_ends_an_async_iterator(xnu: XnuNetKernel, run: Runner) -> None:
    before = fd_count()
    close_ends_an_async_iterator(open_tun(), run)
    assert fd_count() == before


def test_closing_the_iterator_from_another_thread_wakes_it(xnu: XnuNetKernel) -> None:
    with open_tun() as dev:
        with dev.events() as warm:  # the device's own wakeup (a pipe) is made by the first wait
            with pytest.raises(TimeoutError):
                warm.get(timeout=0.01)
        before = fd_count()
        iterator_closed_from_another_thread(dev)
        assert fd_count() == before


def test_rcvbuf_is_refused_before_any_call(xnu: XnuNetKernel) -> None:
    with open_tun() as dev:
        calls, before = len(xnu.calls), fd_count()
        with pytest.raises(UnsupportedPlatformError, match="rcvbuf"):
            dev.events(rcvbuf=65536)
        assert len(xnu.calls) == calls and fd_count() == before


def test_a_message_cut_short_is_skipped(xnu: XnuNetKernel) -> None:
    """A datagram whose message is shorter than its header (untrusted length) ends the walk of it, not the iterator."""
    import struct

    with open_tun() as dev, dev.events() as events:
        from xnu_net import C

        short = struct.pack("=HBB", 8, C["RTM_VERSION"], C["RTM_IFINFO"]) + bytes(4)  # an if_msghdr of 8 bytes
        xnu._raw_input(short)
        dev.mtu = 1400
        assert events.get(timeout=10) == MtuChanged(1500, 1400)


# ------------------------------------------------------------------ FreeBSD

@pytest.fixture
def fbsd() -> Iterator[FreeBsdRouteKernel]:
    with running_as_freebsd(FreeBsdRouteKernel()) as kernel:
        open_tun().close()  # the process-wide /dev/null fd of close(), opened before any count
        yield kernel


def test_freebsd_each_kind(fbsd: FreeBsdRouteKernel, run: Runner) -> None:
    before = fd_count()
    with open_tun() as dev:
        with dev.events() as events:
            assert events._sock in fbsd.route_sockets
            for change, expected in [(dev.up, LinkUp()), (lambda: setattr(dev, "mtu", 1400), MtuChanged(1500, 1400)),
                                     (dev.down, LinkDown())]:
                change()
                assert events.get(timeout=10) == expected

        async def main() -> LinkEvent:
            async with dev.events() as events:
                dev.up()
                return await asyncio.wait_for(events.__anext__(), 10)

        assert run(main()) == LinkUp()
    assert fd_count() == before
    assert fbsd.dropped == 0


def test_freebsd_carrier_is_the_link_state(fbsd: FreeBsdRouteKernel) -> None:
    """if_data's ifi_link_state: tunopen made it LINK_STATE_UP (the carrier is on when the iterator starts)."""
    with open_tun() as dev, dev.events() as events:
        ifnet = fbsd.ifnets[dev.name]
        fbsd.link_state_change(ifnet, LINK_STATE_DOWN)
        assert events.get(timeout=10) == CarrierOff()
        fbsd.link_state_change(ifnet, LINK_STATE_UP)
        assert events.get(timeout=10) == CarrierOn()


def test_freebsd_departure_ends_the_iteration(fbsd: FreeBsdRouteKernel) -> None:
    """RTM_IFANNOUNCE IFAN_DEPARTURE (the interface moved to a jail's vnet: if_vmove) yields LinkDeleted, then ends."""
    with open_tun() as dev, open_tun() as other, dev.events() as events:
        fbsd.vmove(other.name)  # another interface's departure is not ours
        dev.up()
        fbsd.vmove(dev.name)
        assert list(events) == [LinkUp(), LinkDeleted()]
        assert events.get() is None


def test_freebsd_a_rename_is_no_deletion(fbsd: FreeBsdRouteKernel) -> None:
    """SIOCSIFNAME announces a departure and an arrival, but the interface keeps its index: events go on."""
    with open_tun() as dev, dev.events() as events:
        with raw_control(dev.name) as (lib, k, ctl):  # `ifconfig tun0 name tt0`, from another program
            ifr = lib.ffi.new("struct ifreq *")
            ifr.ifr_name = dev.name.encode()
            new = lib.ffi.new("char[]", b"tt0")
            ifr.ifr_ifru.ifru_data = new
            assert lib.ioctl(ctl, k.ioctls["SIOCSIFNAME"], ifr) == 0
        assert fbsd.ifnets["tt0"].name == "tt0"
        fbsd.link_state_change(fbsd.ifnets["tt0"], LINK_STATE_DOWN)
        assert events.get(timeout=10) == CarrierOff()  # (not LinkDeleted: the departure was a rename's)
        fbsd.vmove("tt0")
        assert list(events) == [LinkDeleted()]


def test_freebsd_lost_events_are_reported_then_resynced(fbsd: FreeBsdRouteKernel) -> None:
    """SO_RERROR is set: messages dropped on the full socket come back as ENOBUFS, then the state is read again."""
    with open_tun() as dev, dev.events(rcvbuf=4096) as events:
        assert fbsd.options[events._sock, C["SO_RCVBUF"]] == 4096 and fbsd.options[events._sock, SO_RERROR]
        for mtu in range(1300, 1340):  # far more than the socketpair queues unread: most are dropped
            dev.mtu = mtu
        got: List[LinkEvent] = []
        while True:
            try:
                got.append(events.get(timeout=1))
            except TimeoutError:
                break
        assert fbsd.dropped > 0 and got.count(EventsLost()) == 1, got
        lost = got.index(EventsLost())
        before = [MtuChanged(1500 if mtu == 1300 else mtu - 1, mtu) for mtu in range(1300, 1300 + lost)]
        assert got[:lost] == before  # what was queued, in order
        last = before[-1].new if before else 1500
        assert got[lost + 1:] == [MtuChanged(last, 1339)], got  # then the kernel's state, read again



def test_freebsd_14_without_so_rerror_still_reports_events() -> None:
    """FreeBSD 14's sosetopt refuses SO_RERROR (ENOPROTOOPT): events still come, a loss goes unreported as on macOS."""
    with running_as_freebsd(FreeBsdRouteKernel(so_rerror=False)) as fbsd:
        with open_tun() as dev, dev.events() as events:
            assert ("setsockopt", SO_RERROR) in fbsd.calls  # asked, refused, carried on
            dev.up()
            assert events.get(timeout=5) == LinkUp()
            dev.mtu = 1400
            assert events.get(timeout=5) == MtuChanged(1500, 1400)
