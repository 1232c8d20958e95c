"""Device's batch calls: read_batch and write_batch over the engine table (a base class of Device).

Facts that shape this module:

- The engines (batch.py) do the I/O and record every step (``pend``) so an
  interrupted call can be settled by the next one; these methods own the
  handover: ``engine.pend = None`` is the last store before a read batch
  returns its count (see batch's "Interrupts" and :func:`take_back`).
- The default ``read_batch(ring)`` is the capture loop's call: one engine
  lookup, one ``engine.fill``, the announcement inlined (no decorator layer);
  everything else goes through ``_read_batch``.
- Moved here from device.py unchanged (issue 15): Device inherits these, so
  a call costs what it did (the type's method cache finds them).
"""

from __future__ import annotations

import errno
import select
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import batch
from ._engines import EngineTable
from ._syscalls import poll_ms
from ._validate import check_min_packets
from .batch import BatchWriteError, Reader
from .errors import DeviceClosedError, TunTapError, error_from_errno
from .ring import PacketRing

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer

__all__ = ["BatchIO", "take_back"]

_get_ident = threading.get_ident


def take_back(frame_locals: Dict[str, Any]) -> None:
    """A batch read raises: if it had handed its packets over (in *frame_locals*: got bound, pend None), keep them.

    Its caller sees an exception, not a count, so the next call returns them
    (a signal handler that ran between the handover and the return).  The
    library's own errors hand the ring over before ``got`` is bound: left as
    they are.
    """
    engine = frame_locals.get("engine")
    if engine is not None and engine.pend is None and "got" in frame_locals:
        engine.pend = batch.BUSY


class BatchIO:
    """read_batch, write_batch and their slow paths (a base class of Device: see there)."""

    # What these members use of the Device (set in its __init__).
    _fd: int
    _name: str
    _closed: bool
    _blocking: bool
    _inside: Dict[int, int]
    _engines: EngineTable
    _stale_engines: List[Any]
    _enter: Callable[[], int]
    _exit: Callable[[int], None]
    _leave_closed: Callable[[], Any]
    _close_stale_engines: Callable[[], None]
    _engine: Callable[..., Any]  # EngineTable.get, bound once (see Device.__init__)

    if TYPE_CHECKING:  # (the Device's own)
        @property
        def max_packet_size(self) -> int: ...
        def _wait(self, events: int, timeout_ms: int = -1) -> None: ...
        def _write_error(self, err: int, what: str) -> OSError: ...
        def write(self, data: "ReadableBuffer", nbytes: Optional[int] = None) -> int: ...

    def packet_ring(self, slots: int = 256) -> PacketRing:
        """A :class:`PacketRing` of *slots* slots sized for this device (:attr:`max_packet_size`)."""
        return PacketRing(slots, self.max_packet_size)

    @property
    def batch_backend(self) -> str:
        """The batch I/O backend in use: ``"io_uring"`` or ``"loop"`` (settable).

        Set ``"loop"`` to force the read()/write() loop, ``"auto"`` (the
        default, or env ``TUNTAP_CFFI_BATCH``) to use io_uring where the
        kernel allows it.  Setting it drops the engines already made.
        Read, it names the backend of the engines made from now on: "loop"
        once io_uring is known unusable in this process (also when it was
        disabled after engines were made); "io_uring" while it could not
        be probed for want of fds (making an engine then raises a
        TunTapError, EMFILE, that says which limit to raise).  A ring whose
        io_uring rings exceed RLIMIT_MEMLOCK gets a loop engine.
        """
        return self._engines.backend

    @batch_backend.setter
    def batch_backend(self, value: str) -> None:
        self._engines.choose(value)

    def read_batch(self, ring: PacketRing, *, min_packets: int = 1, timeout: Optional[float] = None) -> int:
        """Fill *ring* with up to ``ring.slots`` packets in arrival order; return the count.

        io_uring reads every queued packet up to the ring's size, one
        ``io_uring_enter`` per window of reads (the whole ring once the
        queue is busy; see :mod:`tuntap_cffi.batch`), or, with the ``loop``
        backend, one ``read()`` each.  Blocking
        devices wait until at least *min_packets* have arrived, the ring is
        full, or *timeout* seconds passed (then the count may be lower, even
        0); non-blocking ones raise ``BlockingIOError`` when nothing is
        queued.  ``len(ring)`` is the count and ``ring[i]`` packet *i*.  A
        kernel error with packets already read returns those packets; the
        error is raised by the next call.  Closing the device from another
        thread wakes a waiting call with :class:`DeviceClosedError`.

        Interrupted by an exception that is not the library's (a signal
        handler's: KeyboardInterrupt, a SIGALRM timeout), the call returns
        nothing: the packets it had read stay in the ring and the next batch
        call on this ring, in this thread, returns them first, in order,
        then reads on.  Do not take packets from a ring whose call raised
        (its ``len(ring)`` may show them: they are still the next call's).
        """
        if min_packets.__class__ is not int or min_packets != 1 or timeout is not None:
            check_min_packets(min_packets, timeout)
        me = _get_ident()  # self._enter() inlined, and _exit below: ~0.2 us less per batch
        inside = self._inside
        inside[me] = inside.get(me, 0) + 1
        # The handover is engine.pend = None, the last store before the
        # return, after the announcement is withdrawn (see batch's
        # "Interrupts"): a signal handler's exception before it leaves the
        # packets with the engine, and PyPy may still run one between it and
        # the return: the except clause takes the handover back then (got is
        # bound only there), and the next call returns the packets.
        got: int
        try:
            try:
                if self._closed:
                    self._leave_closed()
                engine = self._engine(ring, "read")
                if (min_packets != 1 or timeout is not None
                        or engine.pend is not None or ring._slab.closed):  # an interrupted call's packets come first; (raises)
                    k = self._read_batch(ring, min_packets, timeout, self._blocking, engine)
                else:
                    # The defaults, the capture loop's call: when the first pass
                    # finds packets, nothing else is needed (~0.5 us less per batch).
                    ring.start = 0
                    k = engine.fill(ring, 0)  # (sets ring.count)
                    if k <= 0 or engine.cut or self._closed or self._stale_engines:
                        k = self._read_batch(ring, 1, None, self._blocking, engine, k)
            finally:
                depth = inside.get(me, 1) - 1
                if depth:
                    inside[me] = depth
                else:
                    inside.pop(me, None)
            got = k
            engine.pend = None
            return got
        except BaseException:
            take_back(locals())
            raise

    def _read_batch(
        self, ring: PacketRing, min_packets: int, timeout: Optional[float], blocking: bool,
        engine: Reader, first_fill: Optional[int] = None,
    ) -> int:
        """read_batch's whole loop; the caller hands the packets over (``engine.pend = None``).

        *first_fill* is what an ``engine.fill(ring, 0)`` already made
        returned.  Otherwise the packets of a call that an exception (a
        signal handler's, a cancellation) interrupted are settled first and
        returned with the new ones (see batch's "Interrupts").
        """
        got = 0
        if first_fill is None:
            if engine.pend is not None:
                got = engine.settle(ring)
            ring.start = 0
        want = min(min_packets, ring.slots)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if first_fill is None:
                more = self._fill_ring(engine, ring, got)
            else:
                more, first_fill = self._filled(engine, ring, got, first_fill), None
            if more < 0:  # an error after some packets: return those, the next call raises it
                break
            got += more
            if got >= want:
                break
            if not blocking:
                if got:
                    break
                ring.count = 0
                engine.pend = None
                raise BlockingIOError(errno.EAGAIN, f"no packet queued on {self._name}")
            wait_ms = -1
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait_ms = poll_ms(left)  # (inf: no limit)
            self._wait(select.POLLIN, wait_ms)
        ring.count = got
        if self._stale_engines:
            self._close_stale_engines()
        return got

    def _settle_now(self, engine: Reader, ring: PacketRing) -> int:
        """engine.settle(ring), announced (it may call io_uring_enter): for the asyncio batch loop."""
        me = self._enter()
        try:
            if self._closed:
                engine.pend = None
                self._leave_closed()
            got: int = engine.settle(ring)
            return got
        finally:
            self._exit(me)

    def _fill_ring_now(self, ring: PacketRing, got: int) -> int:
        """_fill_ring for callers that wait elsewhere between passes (asyncio): announced, engine looked up per pass."""
        me = self._enter()
        try:
            if self._closed:
                self._leave_closed()
            return self._fill_ring(self._engine(ring, "read"), ring, got)
        finally:
            self._exit(me)

    def _fill_ring(self, engine: Reader, ring: PacketRing, got: int) -> int:
        """One non-blocking pass reading what is queued into *ring* from slot *got* on.

        Returns how many packets it added, or -1 when the kernel failed after
        *got* > 0 packets (they stand; the error repeats on the next read).
        Raises the error when *got* is 0, and DeviceClosedError when closed.
        Leaves ``ring.count`` at the packets in the ring.
        """
        if ring._slab.closed:
            engine.pend = None
            raise ValueError("the PacketRing is closed")
        return self._filled(engine, ring, got, engine.fill(ring, got))

    def _filled(self, engine: Reader, ring: PacketRing, got: int, k: int) -> int:
        """_fill_ring's second half: *k* is what engine.fill(ring, got) returned.

        Before raising, it hands the ring over (``engine.pend = None``): the
        packets in it go with the error, the next call starts afresh.
        """
        if engine.cut:  # a packet filled its slot: was it cut short? (MTU raised since)
            engine.cut = False
            need = self.max_packet_size
            if ring.slot_size < need:
                ring.count = max(k, 0) + got
                engine.pend = None
                raise ValueError(
                    f"{self._name} now delivers packets of up to {need} bytes (MTU raised?) but the ring's "
                    f"slots hold {ring.slot_size}: packets may have been cut short; use a new Device.packet_ring()"
                )
        if self._closed:  # set before close() swaps /dev/null in: zero-length "packets" are not ours
            ring.count = 0
            engine.pend = None
            self._leave_closed()
        if k >= 0:
            return k  # (the engine set ring.count)
        ring.count = got
        if k == batch.CLOSED_SLOT:
            engine.pend = None
            self._leave_closed()
        if got:
            return -1
        engine.pend = None
        raise error_from_errno(-k, "read", self._name, f"read from {self._name} failed")

    def write_batch(self, packets: "Union[PacketRing, Sequence[ReadableBuffer]]", count: Optional[int] = None) -> int:
        """Write many packets with one transition; return how many were written.

        *packets* is a :class:`PacketRing` (its first *count* packets, by
        default ``len(ring)``: one ``io_uring_enter`` for all) or a sequence
        of bytes-like packets (written one ``write()`` each).  Every packet
        is attempted; if the kernel refused any, :class:`BatchWriteError`
        (or the refused packet's own error when there is one packet) is
        raised after the others went, with ``.written`` set.

        Interrupted by an exception that is not the library's (a signal
        handler's) while writing a ring, the call first finishes the batch
        (what reached the kernel's queue is written, what did not is not)
        and the exception propagates unchanged with ``.written``: how many
        of the batch's packets were written.  No ``.written``: the call
        wrote nothing, or a second exception interrupted that bookkeeping.
        """
        failures: List[Tuple[int, int]] = []
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise TypeError(f"count must be an int, not {type(count).__name__}")
        if isinstance(packets, PacketRing):
            total = packets.count if count is None else count
            if not 0 <= total <= packets.slots:
                raise ValueError(f"count={total} is outside 0..{packets.slots}")
            if self._closed:
                raise DeviceClosedError(self._name)
            if packets._slab.closed:
                raise ValueError("the PacketRing is closed")
            if not total:
                return 0
            me = self._enter()  # the engine holds the fd number: see _enter
            sent: Optional[List[Tuple[int, int]]] = None
            try:
                try:
                    if self._closed:
                        self._leave_closed()
                    engine = self._engine(packets, "write")
                    if engine.pend is not None:  # a call interrupted while settling (its count went with it, if it could)
                        engine.settle(packets)
                        engine.pend = None
                    sent = engine.send(packets, total)
                finally:
                    self._exit(me)
                if not sent:
                    engine.pend = None  # reported (see read_batch)
                    return total
                engine.pend = None
                raise self._write_failures(sent, total)
            except BaseException as exc:  # a signal handler's, mostly: finish the batch, say what went
                # Inline, each step inside the try: another exception (a second
                # signal) takes exc's place and settling, idempotent until
                # pend is cleared, goes on; .written ends on the one raised.
                written = tries = -1
                while tries < 100:  # (no call before the try: a check there would let an exception past)
                    try:
                        tries += 1
                        if written < 0:
                            if "engine" not in locals():  # it never began
                                written = 0
                            elif engine.pend is not None:  # the batch was under way: finish it (announced)
                                me = self._enter()
                                try:
                                    written = engine.settle(packets)
                                finally:
                                    self._exit(me)
                            else:  # it was done (a handler on the way out) or had not begun
                                written = total - len(sent) if sent is not None else 0
                        if "engine" in locals():
                            engine.pend = None
                        exc.written = written  # type: ignore[attr-defined]
                        break
                    except BaseException as again:  # noqa: BLE001 - raised below
                        exc = again
                raise exc
        else:
            items = list(packets)
            if count is not None:
                if not 0 <= count <= len(items):
                    raise ValueError(f"count={count} is outside 0..{len(items)}")
                items = items[:count]
            for item in items:  # every item a buffer (a memoryview unreleased) before the first write
                if not isinstance(item, (bytes, bytearray)):
                    try:
                        memoryview(item).release()
                    except TypeError:
                        raise TypeError(f"write_batch() needs bytes-like packets, not {type(item).__name__}") from None
            if self._closed:
                raise DeviceClosedError(self._name)
            total = len(items)
            for i, item in enumerate(items):
                try:
                    self.write(item)
                except DeviceClosedError:
                    raise
                except TunTapError as exc:  # refused: note it, go on with the rest
                    failures.append((i, -(exc.errno or errno.EIO)))
        if not failures:
            return total
        raise self._write_failures(failures, total)

    def _write_failures(self, failures: List[Tuple[int, int]], total: int) -> BaseException:
        """The BatchWriteError for *failures* [(position, -errno)] of *total* packets (DeviceClosedError if closed)."""
        if self._closed:
            self._leave_closed()
        first, neg = failures[0]
        cause = self._write_error(-neg, f"write of packet {first} to {self._name} failed")
        err = BatchWriteError(cause.errno, f"{len(failures)} of {total} packets refused; first: {cause}", self._name)
        err.written = total - len(failures)
        err.__cause__ = cause
        return err
