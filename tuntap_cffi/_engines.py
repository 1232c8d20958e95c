"""The engine table: which batch engine serves a thread's batches on a PacketRing.

Internal.  A Device holds one :class:`EngineTable`; tests and diagnostics
reach it with :func:`table_of` (explicitly internal: not part of the API).

Facts that shape this module:

- io_uring rings are single-issuer (``batch._new_uring``: the creating
  thread alone may submit), so an engine belongs to one thread: a table
  holds one engine per (ring, direction, thread).  Keyed by the kernel's
  thread id: pthread ids are reused at once for new threads, TIDs only
  after the pid space wraps.
- The hot lookup goes through a thread-local cache: no gettid() syscall per
  batch, and a new thread that reuses a dead one's pthread id starts empty.
- A thread's engines die with the thread: every miss closes the engines of
  threads the platform's thread view (the device's ``FdOps.threads``:
  ``/proc/self/task`` on Linux, the Python threads on macOS, which has no
  /proc) no longer lists: nothing of theirs can be running.  A ring's
  engines die with the ring (a weakref callback).
- Switching the backend retires the engines: a thread may be inside a batch
  with one, so they are closed once no other thread is inside an announced
  call of the device (device.py, "Closing without fd-number reuse").
- A miss hands the device's fd number to a new engine, so it runs
  announced, and it stores the engine under the table's lock after checking
  ``closed``: close() either finds the engine to close or the miss sees the
  device closed and closes it itself.  The device's lock, when both are
  taken, comes first (its release path closes the table's engines).
- The table refers to its device weakly: a Device stays collectable (and
  warns when dropped unclosed) as soon as the program lets go of it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Literal, Optional, Protocol, Set, Tuple, overload

from . import _backend, batch
from ._capabilities import Feature
from ._announce import Announcer
from ._lifecycle import LINUX_OPS
from ._uring import UringUnavailable
from .batch import Engine, Reader, Writer
from .errors import DeviceClosedError
from .ring import PacketRing, check_ring

__all__ = ["EngineHost", "EngineTable", "table_of", "BACKENDS"]

#: What ``Device.batch_backend`` may be set to.
BACKENDS = ("auto", "io_uring", "loop")
# Whether this platform has io_uring at all (macOS does not): decided once, at import.
_URING_HERE = _backend.supports(Feature.IO_URING)

_Key = Tuple[int, str, int]  # (id(ring), "read"/"write", kernel thread id)
_Entry = Tuple["weakref.ref[PacketRing]", Engine]


class EngineHost(Announcer, Protocol):
    """What a table needs of its device (Device meets it): public members and the announcement (_announce).

    ``fileno()`` raises DeviceClosedError once closed.
    """

    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def max_packet_size(self) -> int: ...
    def fileno(self) -> int: ...


class _ThreadEngines(threading.local):
    """A table's engines of one thread, by (id(ring), kind)."""

    def __init__(self) -> None:
        self.cache: Dict[Tuple[int, str], _Entry] = {}


# Each Device's table, for table_of(): weak, so it keeps no Device alive.
_tables: "weakref.WeakKeyDictionary[Any, EngineTable]" = weakref.WeakKeyDictionary()


def table_of(device: Any) -> "EngineTable":
    """The engine table of *device* (internal: for tests and diagnostics).

    ``table_of(dev).get(ring, "read")`` is the engine this thread's
    ``dev.read_batch(ring)`` uses (made on first use, as a batch would).
    """
    return _tables[device]


class EngineTable:
    """A device's batch engines, by ring, direction and thread; the backend they are made for.

    :meth:`get` is the per-batch lookup.  The device keeps ``stale`` (the
    engines a backend switch retired) as the same list object, so its batch
    calls test it with one attribute load; the table only ever changes that
    list in place.
    """

    def __init__(self, host: EngineHost, make: Optional[Callable[..., Engine]] = None,
                 threads: Optional[Callable[[], Set[int]]] = None) -> None:
        """*make* is ``batch.make_engine``'s stand-in for a device with its own framing (a macOS utun);
        *threads* the platform's view of the live threads (the device's ``FdOps.threads``; Linux's by default)."""
        self._host: Callable[[], Optional[EngineHost]] = weakref.ref(host)
        self._make_engine: Callable[..., Engine] = make or batch.make_engine
        self._threads: Callable[[], Set[int]] = threads or LINUX_OPS.threads
        self._lock = threading.Lock()
        self._entries: Dict[_Key, _Entry] = {}
        self._local = _ThreadEngines()  # this thread's view of _entries (see get)
        self.stale: List[Engine] = []  # retired while maybe in use: closed when safe
        self._choice = os.environ.get("TUNTAP_CFFI_BATCH", "auto")
        _tables[host] = self

    def __len__(self) -> int:
        """How many engines the table holds (in use and retired): each holds a ring mapping and fds."""
        return len(self._entries) + len(self.stale)

    # ------------------------------------------------------------- backend

    @property
    def backend(self) -> str:
        """``"io_uring"`` or ``"loop"``: the backend of the engines made from now on (see Device.batch_backend)."""
        if self._choice == "loop" or not _URING_HERE or batch.uring_usable() is False:
            return "loop"
        return "io_uring"

    def choose(self, value: str) -> None:
        """Make engines for *value* (one of BACKENDS) from now on; retire those made so far."""
        if value not in BACKENDS:
            raise ValueError(f"batch_backend must be 'auto', 'io_uring' or 'loop', not {value!r}")
        if value == "io_uring":
            _backend.require(Feature.IO_URING)
        with self._lock:
            # A thread may be inside a batch with one of these: retire them,
            # close them once no other thread is inside (see close_stale).
            self.stale.extend(engine for _ref, engine in self._entries.values())
            self._entries = {}
            self._local = _ThreadEngines()
            self._choice = value
        self.close_stale()

    # -------------------------------------------------------------- lookup

    @overload
    def get(self, ring: PacketRing, kind: Literal["read"]) -> Reader: ...
    @overload
    def get(self, ring: PacketRing, kind: Literal["write"]) -> Writer: ...
    def get(self, ring: PacketRing, kind: str) -> Any:
        """The engine of *ring* for this thread (io_uring's single issuer is a thread); made if need be.

        Looked up in a thread-local cache: no gettid() syscall per batch, and
        a new thread that reuses a dead one's pthread id starts empty.
        """
        entry = self._local.cache.get((id(ring), kind))
        if entry is not None and entry[0]() is ring:
            return entry[1]
        return self._new(ring, kind)

    def _new(self, ring: PacketRing, kind: str) -> Engine:
        host = self._host()
        if host is None:  # (only a get() bound before the device was collected)
            raise ReferenceError("the device of this engine table is gone")
        me = host._enter()  # it hands the fd number to the new engine
        try:
            return self._make(host, ring, kind)
        finally:
            host._exit(me)

    def _make(self, host: EngineHost, ring: PacketRing, kind: str) -> Engine:
        self.reap()
        fd = host.fileno()  # (DeviceClosedError once closed)
        name = host.name
        check_ring(ring, host.max_packet_size if kind == "read" else 1, name)
        backend = self.backend
        try:
            engine = self._make_engine(kind, backend, fd, ring, name)
        except UringUnavailable:
            engine = self._make_engine(kind, "loop", fd, ring, name)
        # Keyed by the kernel's thread id: pthread ids are reused at once
        # for new threads, TIDs only after the pid space wraps.
        key = (id(ring), kind, threading.get_native_id())
        engines = self._entries

        def forget(ref: Any, key: _Key = key, engines: Dict[_Key, _Entry] = engines) -> None:
            entry = engines.get(key)  # the ring is gone: no thread can be using its engine
            if entry is not None and entry[0] is ref and engines.pop(key, None) is entry:
                entry[1].close()

        with self._lock:
            if host.closed:
                engine.close()
                raise DeviceClosedError(name)
            old = self._entries.get(key)
            self._entries[key] = entry = (weakref.ref(ring, forget), engine)
            self._local.cache[key[:2]] = entry
        if old is not None:  # a ring that died and whose id was reused: its engine is idle
            old[1].close()
        return engine

    # ------------------------------------------------------------ retiring

    def reap(self) -> None:
        """Close the engines of threads that have exited (nothing of theirs can be running)."""
        with self._lock:  # (the view taken under it: an entry added since was added by a live thread)
            alive = self._threads()
            dead = [key for key in self._entries if key[2] not in alive]
            gone = [self._entries.pop(key)[1] for key in dead]
        for engine in gone:
            engine.close()
        self.close_stale()

    def close_stale(self) -> None:
        """Close retired engines, unless another thread may still be using one."""
        host = self._host()
        with self._lock:
            if not self.stale or (host is not None and host._others_inside()):  # (a backend switch: rare)
                return
            stale = self.stale[:]
            del self.stale[:]
        for engine in stale:
            engine.close()

    def close_all(self) -> None:
        """Close every engine (the device is closed and no other thread is inside a call of it)."""
        with self._lock:
            engines, self._entries = self._entries, {}
            self._local = _ThreadEngines()
            stale = self.stale[:]
            del self.stale[:]
        for engine in stale + [engine for _ref, engine in engines.values()]:
            engine.close()

    def forget(self) -> None:
        """In a fork()ed child: close the child's copies of the parent's engines and start empty.

        The lock may have been held by a parent thread that does not exist
        in the child: it is replaced.  Closing a copy (munmap, close) changes
        nothing for the parent; submitting to its ring would.
        """
        self._lock = threading.Lock()
        engines, self._entries = self._entries, {}
        forgotten = self.stale + [engine for _ref, engine in engines.values()]
        del self.stale[:]
        self._local = _ThreadEngines()
        engines.clear()  # the rings' weakref callbacks find nothing to close later
        for engine in forgotten:
            engine.close()  # Uring.close(): munmap and close() only
