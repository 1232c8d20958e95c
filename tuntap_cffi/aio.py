"""asyncio: awaitable reads and writes on the device's non-blocking fd.

Facts and the design they force:
- The fd is always O_NONBLOCK, so a coroutine tries the syscall first and
  only on EAGAIN waits for ``loop.add_reader`` to fire (no threads, no
  polling); the packet is read after the wait, with no ``await`` between the
  read and the return, so a cancelled wait has consumed nothing and a
  cancelled read loses no packet.
- Every wait registers the fd with the loop only for its duration and
  removes it in ``finally``: a cancelled or finished read leaves no reader.
- ``close()`` (from any thread) fails every waiting future with
  :class:`DeviceClosedError` and unregisters the fd from each loop before
  the fd number can be freed: on another thread's loop this is scheduled
  with ``call_soon_threadsafe`` and the number is freed by that callback, so
  a loop never holds a registration for a number that was reused.
- Works on any loop with ``add_reader``/``add_writer`` (the default
  selector loop, uvloop).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, List, Optional

from .errors import DeviceClosedError

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .device import Device
    from .ring import PacketRing

__all__ = ["readinto", "read", "write", "read_batch", "packets"]


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wake_all(futures: "List[asyncio.Future[None]]") -> None:
    """The fd is ready: wake every coroutine waiting for it on this loop (they retry)."""
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


async def _wait(dev: "Device", write: bool = False, timeout: Optional[float] = None) -> None:
    """Wait until the device's fd is readable (or writable); DeviceClosedError if it closes.

    With *timeout*, also return (as if woken) after that many seconds.
    The device's close protocol keeps the registration (see _lifecycle's
    "asyncio"): one reader callback per loop wakes all its coroutines, and
    a close fails the future and unregisters the fd.
    """
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[None]" = loop.create_future()
    life = dev._life
    fd = dev.fileno()  # (DeviceClosedError once closed)
    futures = life.add_async_waiter(loop, fut, write, fd, _wake_all)
    timer = None if timeout is None else loop.call_later(timeout, _wake_all, [fut])
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        life.remove_async_waiter(loop, fut, write, fd, futures)


async def readinto(dev: "Device", buffer: "WriteableBuffer") -> int:
    """Read one packet into *buffer* without blocking the loop; return its length."""
    while True:
        n = dev._readinto_nowait(buffer)
        if n >= 0:
            return n
        await _wait(dev)


async def read(dev: "Device") -> bytes:
    """Read one packet and return it as bytes.

    The packet is read into a buffer of this thread's and copied out with no
    ``await`` in between, so coroutines on one loop never share it mid-read
    and loops in other threads have their own.
    """
    buf, view = dev._async_buffer()
    while True:
        n = dev._readinto_nowait(buf)
        if n >= 0:
            return bytes(view[:n])
        await _wait(dev)


async def write(dev: "Device", data: "ReadableBuffer", nbytes: Optional[int] = None) -> int:
    """Write one packet; waits (without blocking the loop) in the rare case the queue is full."""
    while True:
        try:
            return dev._write_nowait(data, nbytes)
        except BlockingIOError:
            await _wait(dev, write=True)


async def read_batch(dev: "Device", ring: "PacketRing", engine: Any, min_packets: int = 1, timeout: Optional[float] = None) -> int:
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


async def packets(dev: "Device") -> AsyncIterator[bytes]:
    """``async for packet in dev``: each packet as bytes, until the device closes."""
    while True:
        try:
            yield await read(dev)
        except DeviceClosedError:
            return
