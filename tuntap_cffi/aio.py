"""asyncio: awaitable reads and writes over a device's non-blocking seam.

Facts and the design they force:

- The fd is always O_NONBLOCK, so a coroutine tries the non-blocking call
  first and only when nothing is queued waits for ``loop.add_reader`` to
  fire (no threads, no polling): asyncio's ``sock_recv_into`` shape.  The
  packet is read after the wait, with no ``await`` between the read and the
  return, so a cancelled wait has consumed nothing and a cancelled read
  loses no packet.
- This module needs only the small seam :class:`Pollable` (the non-blocking
  calls, ``fileno()`` and the device's close protocol, which keeps the
  waiters) and imports nothing of :mod:`tuntap_cffi.device`.
- A write waits for room on ``write_fileno()``: the device's fd, but a
  macOS feth TAP reads through BPF (always writable) and writes through
  an NDRV socket, so a full queue is waited for on the socket, not spun on.
- Every wait registers the fd with the loop only for its duration and
  removes it in ``finally``: a cancelled or finished read leaves no reader.
- ``close()`` (from any thread) fails every waiting future with
  :class:`DeviceClosedError` and unregisters the fd from each loop before
  the fd number can be freed (see :mod:`tuntap_cffi._lifecycle`).
- Works on any loop with ``add_reader``/``add_writer`` (the default
  selector loop, uvloop).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, List, Optional, Protocol

from .errors import DeviceClosedError

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .ring import PacketRing

__all__ = ["Pollable", "readinto", "read", "write", "read_batch", "packets"]


class Waiters(Protocol):
    """A device's close protocol as a waiting coroutine sees it (``_lifecycle.FdLife``)."""

    def add_async_waiter(
        self, loop: Any, fut: Any, write: bool, fd: int, ready: Callable[[List[Any]], None]
    ) -> List[Any]: ...

    def remove_async_waiter(self, loop: Any, fut: Any, write: bool, fd: int, futures: List[Any]) -> None: ...


class Pollable(Protocol):
    """What this module needs of a device: non-blocking calls and a close that wakes waiters."""

    def fileno(self) -> int: ...

    def write_fileno(self) -> int: ...  # the fd whose room a write waits for (a feth TAP's: not fileno())

    def readinto_nowait(self, buffer: "WriteableBuffer") -> int: ...  # -1: nothing queued

    def read_nowait(self) -> Optional[bytes]: ...  # None: nothing queued

    def write_nowait(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int: ...  # BlockingIOError

    @property
    def lifecycle(self) -> Waiters: ...


class BatchPollable(Pollable, Protocol):
    """What :func:`read_batch` needs besides: the batch layer's announced passes and engine upkeep."""

    _stale_engines: List[Any]

    def _settle_now(self, engine: Any, ring: "PacketRing") -> int: ...

    def _fill_ring_now(self, ring: "PacketRing", got: int) -> int: ...

    def _close_stale_engines(self) -> None: ...


def _wake_all(futures: "List[asyncio.Future[None]]") -> None:
    """The fd is ready: wake every coroutine waiting for it on this loop (they retry)."""
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


async def _wait(dev: Pollable, write: bool = False, timeout: Optional[float] = None) -> None:
    """Wait until the device's fd is readable (or writable); DeviceClosedError if it closes.

    With *timeout*, also return (as if woken) after that many seconds.
    The device's close protocol keeps the registration: one reader callback
    per loop wakes all its coroutines, and a close fails the future and
    unregisters the fd.
    """
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[None]" = loop.create_future()
    waiters = dev.lifecycle
    fd = dev.write_fileno() if write else dev.fileno()  # (DeviceClosedError once closed)
    futures = waiters.add_async_waiter(loop, fut, write, fd, _wake_all)
    timer = None if timeout is None else loop.call_later(timeout, _wake_all, [fut])
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        waiters.remove_async_waiter(loop, fut, write, fd, futures)


async def readinto(dev: Pollable, buffer: "WriteableBuffer") -> int:
    """Read one packet into *buffer* without blocking the loop; return its length."""
    while True:
        n = dev.readinto_nowait(buffer)
        if n >= 0:
            return n
        await _wait(dev)


async def read(dev: Pollable) -> bytes:
    """Read one packet and return it as bytes."""
    while True:
        packet = dev.read_nowait()
        if packet is not None:
            return packet
        await _wait(dev)


async def write(dev: Pollable, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
    """Write one packet; waits (without blocking the loop) in the rare case the queue is full."""
    while True:
        try:
            return dev.write_nowait(data, nbytes)
        except BlockingIOError:
            await _wait(dev, write=True)


async def read_batch(dev: BatchPollable, ring: "PacketRing", engine: Any, min_packets: int = 1, timeout: Optional[float] = None) -> int:
    """Fill *ring* with what is queued until *min_packets* (or a full ring, or *timeout*); return the count.

    Cancelled (or interrupted by a signal handler's exception), the call
    keeps the packets it had read in the ring and the next batch call on
    the ring returns them first (see batch's "Interrupts"): nothing is lost
    or returned twice.  The caller hands the packets over (``engine.pend = None``).
    """
    got = dev._settle_now(engine, ring) if engine.pend is not None else 0
    ring.start = 0
    want = min(min_packets, ring.slots)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        more = dev._fill_ring_now(ring, got)  # announced: a thread idle between passes holds no engine
        if more < 0:  # an error after some packets: return those, the next call raises it
            break
        got += more
        if got >= want:
            break
        if deadline is None:
            await _wait(dev)
        else:
            left = deadline - loop.time()
            if left <= 0:
                break
            await _wait(dev, timeout=left)
    ring.count = got
    if dev._stale_engines:
        dev._close_stale_engines()
    return got


async def packets(dev: Pollable) -> AsyncIterator[bytes]:
    """``async for packet in dev``: each packet as bytes, until the device closes."""
    while True:
        try:
            yield await read(dev)
        except DeviceClosedError:
            return
