"""Link events: this interface's kernel notifications as typed values, blocking or async.

Facts that shape this module:

- The kernel tells every listening socket of each link and address change:
  rtnetlink's groups on Linux (``_nlevents``), every PF_ROUTE socket on
  macOS and FreeBSD (``_bsdevents``).  No privilege is needed to listen.
  So each iterator has a socket of its own (the platform's
  ``EventSource``, from the backend) that keeps the messages of its
  interface (by index); everything else here is the same on every platform.
- A link message carries the whole state (flags, MTU, carrier), not what
  changed (Linux's ``ifi_change`` is 0 for carrier changes), and the kernel
  sends one for changes nobody asked about (statistics, queue settings,
  promiscuous mode).  So the
  iterator keeps the last state, taken from the kernel right after it
  subscribed (nothing between is missed), and yields the differences:
  :class:`LinkUp`/:class:`LinkDown` (IFF_UP), :class:`CarrierOn`/
  :class:`CarrierOff` (IFLA_CARRIER, 3.7; whether or not the link is up),
  :class:`MtuChanged` with the old and new MTU.  Addresses the same way:
  an IPv6 address whose flags change (DAD done) is announced once.
  A change made just while the iterator was being made may show twice
  (up then down again): the last event always matches the kernel.
- A socket's receive buffer is finite: when notifications come faster than
  they are read the kernel drops them and the next ``recv`` fails with
  ENOBUFS (Linux, FreeBSD; XNU drops them silently).  Never silent here: the iterator yields :class:`EventsLost`,
  drops what is still queued (older than what it reads next: an address
  whose removal was lost must not come back), reads the state again and
  yields what changed meanwhile, so the last state it reported is the
  kernel's again; a larger *rcvbuf* makes it rarer.  The buffer holds the
  notifications of every interface of the namespace (the filter is ours),
  so a namespace busy with other interfaces fills it too.
- Ending.  The interface's deletion yields :class:`LinkDeleted` and ends the
  iteration.  The device's ``close()`` ends it too (events still queued are
  dropped): a blocked ``next()`` wakes through the device's wakeup fd,
  as a blocked reader does (``_lifecycle``), an ``async for`` through a
  future the close fails.  An iterator closed on its own (``close()``,
  ``with``, ``aclose()``, from any thread) wakes its waiter through a
  wakeup of its own (the platform's: an eventfd, a pipe on the BSDs, from
  the device's ``FdOps``).  The socket and that wakeup are closed when the
  iteration ends, by whichever thread is inside it then (never under a
  waiting poll), or at once if none is.
- One consumer at a time: a second thread or task calling ``next()`` while
  one waits gets RuntimeError (as a generator would).
"""

from __future__ import annotations

import asyncio
import errno
import select
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Deque, Optional, Set

from . import _backend, config
from ._eventsource import EventSource
from ._syscalls import poll_ms
from ._validate import check_int_in, check_timeout
from .errors import DeviceClosedError, TunTapError

if TYPE_CHECKING:  # pragma: no cover
    from ._lifecycle import FdLife
    from .device import Device

__all__ = [
    "LinkEvent", "LinkUp", "LinkDown", "CarrierOn", "CarrierOff", "MtuChanged", "AddressAdded",
    "AddressRemoved", "LinkDeleted", "EventsLost", "LinkEvents",
]


@dataclass(frozen=True)
class LinkEvent:
    """Base of every event an iterator of :meth:`Device.events` yields."""


@dataclass(frozen=True)
class LinkUp(LinkEvent):
    """The interface was brought up (IFF_UP set)."""


@dataclass(frozen=True)
class LinkDown(LinkEvent):
    """The interface was taken down (IFF_UP cleared)."""


@dataclass(frozen=True)
class CarrierOn(LinkEvent):
    """The carrier came on (for a TUN/TAP: ``TUNSETCARRIER`` 1, or a reader attached)."""


@dataclass(frozen=True)
class CarrierOff(LinkEvent):
    """The carrier went off (``TUNSETCARRIER`` 0)."""


@dataclass(frozen=True)
class MtuChanged(LinkEvent):
    """The MTU changed from *old* (None if it was not known) to *new*."""

    old: Optional[int]
    new: int


@dataclass(frozen=True)
class AddressAdded(LinkEvent):
    """An IPv4 or IPv6 address was added (IPv6 link-local ones too, when the link comes up)."""

    address: config.Address


@dataclass(frozen=True)
class AddressRemoved(LinkEvent):
    """An address was removed (taking the link down removes IPv6 ones)."""

    address: config.Address


@dataclass(frozen=True)
class LinkDeleted(LinkEvent):
    """The interface is gone (deleted, or moved to another namespace); the iteration ends after it."""


@dataclass(frozen=True)
class EventsLost(LinkEvent):
    """The kernel dropped notifications (the socket's buffer was full: ENOBUFS).

    The events after it bring the state up to date (a read of the kernel's
    state, diffed against the last one reported), but intermediate changes
    (an address added and removed meanwhile) are not reported.
    """


_MAX_RCVBUF = 2**31 - 1
_IFF_UP = 0x1  # (Linux's and both BSDs')


def _wake_future(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class LinkEvents:
    """The link events of one interface: ``for ev in it`` (blocking) or ``async for ev in it``.

    Made by :meth:`Device.events`; see the module docstring for what is
    reported and when the iteration ends.  A context manager (sync and
    async): leaving it closes the iterator's socket.
    """

    def __init__(self, dev: "Device", rcvbuf: Optional[int] = None) -> None:
        if rcvbuf is not None:
            check_int_in("rcvbuf", rcvbuf, 1, _MAX_RCVBUF, "2**31-1")
        if dev.closed:
            raise DeviceClosedError(dev.name)
        self._dev = dev
        self._name = dev.name
        self._life: "FdLife" = dev.lifecycle
        self._lock = threading.Lock()
        self._busy = False  # a next()/__anext__ is running (it closes the fds if a close comes meanwhile)
        self._closed = False  # close() was called, or the iteration ended
        self._gone = False  # the interface was deleted: end once the queued events are read
        self._pending: Deque[LinkEvent] = deque()
        self._source: Optional[EventSource] = None
        self._wake = self._wake_signal = -1
        try:
            self._source = _backend.current().event_source(dev, rcvbuf)
            self._wake, self._wake_signal = self._life.ops.wakeup(self._name)
            state, addresses = self._source.snapshot()  # after subscribing: a change from now on is queued
        except BaseException:
            self._release()
            raise
        self._state = state
        self._addresses: Set[config.Address] = set(addresses)
        self._sock = self._source.fd
        self._pollfds = self._life.ops.pollfds()  # the socket, our wakeup, the device's wakeup
        self._pollfds[0].fd, self._pollfds[1].fd = self._sock, self._wake
        self._pollfds[0].events = self._pollfds[1].events = select.POLLIN

    # ------------------------------------------------------------ blocking

    def __iter__(self) -> "LinkEvents":
        return self

    def __next__(self) -> LinkEvent:
        event = self.get()
        if event is None:
            raise StopIteration
        return event

    def get(self, timeout: Optional[float] = None) -> Optional[LinkEvent]:
        """The next event, waiting for it; None once the iteration ended.

        *timeout* (seconds, as :meth:`Device.readinto`'s) bounds the wait:
        ``TimeoutError`` if no event came in time (the iterator goes on).
        """
        if timeout is not None:
            check_timeout(timeout)
        if not self._begin():
            return None
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._step():
                    return self._pending.popleft() if self._pending else None
                wait_ms = -1
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(errno.ETIMEDOUT, f"no link event on {self._name} within {timeout:g} s")
                    wait_ms = poll_ms(left)
                try:
                    self._life.poll_beside(self._pollfds, 2, wait_ms)
                except DeviceClosedError:
                    self._closed = True
        finally:
            self._finish()

    def close(self) -> None:
        """End the iteration and close its socket (from any thread: a waiting next() returns at once).  Idempotent."""
        with self._lock:
            if self._closed and self._source is None:
                return
            self._closed = True
            if self._busy:  # the waiter closes the fds when it leaves: wake it
                self._life.ops.wake(self._wake_signal)
                return
        self._release()

    def __enter__(self) -> "LinkEvents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- async

    def __aiter__(self) -> "LinkEvents":
        return self

    async def __anext__(self) -> LinkEvent:
        if not self._begin():
            raise StopAsyncIteration
        try:
            loop = asyncio.get_running_loop()
            while not self._step():
                fut: "asyncio.Future[None]" = loop.create_future()
                try:
                    self._life.add_close_waiter(loop, fut)
                except DeviceClosedError:
                    self._closed = True
                    continue
                loop.add_reader(self._sock, _wake_future, fut)
                loop.add_reader(self._wake, _wake_future, fut)
                try:
                    await fut
                except DeviceClosedError:
                    self._closed = True
                finally:
                    loop.remove_reader(self._sock)
                    loop.remove_reader(self._wake)
                    self._life.remove_close_waiter(loop, fut)
            if not self._pending:
                raise StopAsyncIteration
            return self._pending.popleft()
        finally:
            self._finish()

    async def aclose(self) -> None:
        """:meth:`close` for ``async`` code (a waiting ``__anext__`` ends)."""
        self.close()

    async def __aenter__(self) -> "LinkEvents":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- the work

    def _begin(self) -> bool:
        """Become the one consumer: False if the iteration ended, RuntimeError if another one is inside."""
        with self._lock:
            if self._busy:
                raise RuntimeError(f"the link events of {self._name} are being read by another thread or task")
            if self._closed:
                return False
            self._busy = True
            return True

    def _finish(self) -> None:
        with self._lock:
            self._busy = False
            ended = self._closed
        if ended:
            self._release()

    def _step(self) -> bool:
        """Read what is queued into events; True once an event is pending or the iteration ended."""
        if self._closed or self._dev.closed:  # closed: what is queued is dropped
            self._closed = True
            self._pending.clear()
            return True
        while not self._pending:
            if self._gone:
                self._closed = True
                return True
            if not self._receive():
                return False
        return True

    def _receive(self) -> bool:
        """Handle one datagram from the kernel; False when none is queued."""
        assert self._source is not None  # (released only once the iteration ended)
        return self._source.receive(self)

    # The EventSink the source tells what it read (see _eventsource).
    def _link(self, state: config.LinkState) -> None:
        self._diff_link(state)

    def _address(self, address: config.Address, added: bool) -> None:
        self._diff_addresses(address, added)

    def _deleted(self) -> None:
        self._pending.append(LinkDeleted())
        self._gone = True

    def _lost(self) -> None:
        self._pending.append(EventsLost())
        assert self._source is not None
        self._source.drain()  # older than the state _resync reads: an add whose removal was lost must not come back
        self._resync()

    def _diff_link(self, new: config.LinkState) -> None:
        old, out = self._state, self._pending
        if (new.flags ^ old.flags) & _IFF_UP:
            out.append(LinkUp() if new.flags & _IFF_UP else LinkDown())
        if new.carrier != old.carrier:
            out.append(CarrierOn() if new.carrier else CarrierOff())
        if new.mtu is not None and new.mtu != old.mtu:
            out.append(MtuChanged(old.mtu, new.mtu))
        self._state = new if new.mtu is not None else new._replace(mtu=old.mtu)

    def _diff_addresses(self, address: config.Address, added: bool) -> None:
        known = self._addresses
        if added and address not in known:
            known.add(address)
            self._pending.append(AddressAdded(address))
        elif not added and address in known:
            known.discard(address)
            self._pending.append(AddressRemoved(address))

    def _resync(self) -> None:
        """After ENOBUFS: read the state again and queue what changed since the last one reported."""
        assert self._source is not None
        try:
            state, addresses = self._source.snapshot()
        except DeviceClosedError:
            self._closed = True
            return
        except TunTapError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                self._deleted()
                return
            raise
        self._diff_link(state)
        now = set(addresses)
        for gone in [a for a in self._addresses if a not in now]:
            self._diff_addresses(gone, False)
        for new in addresses:
            self._diff_addresses(new, True)

    def _release(self) -> None:
        """Close the socket and the wakeup (no thread is inside the iterator; once, if close() races _finish)."""
        with self._lock:
            source, self._source = self._source, None
            wake, self._wake = self._wake, -1
            signal, self._wake_signal = self._wake_signal, -1
        if source is not None:
            source.close()
        ops = self._life.ops
        ops.close(wake)
        if signal != wake:
            ops.close(signal)

    def __del__(self) -> None:
        if getattr(self, "_busy", False) is False and hasattr(self, "_wake_signal"):
            self._release()

    def __repr__(self) -> str:
        state = " [closed]" if self._closed or self._source is None else f" fd={self._source.fd}"
        return f"<{type(self).__name__} of {self._name!r}{state}>"

