"""The life of one device fd: the calls inside it, its waiters, and its close in trio's order.

Facts that shape this module:

- Closing without fd-number reuse.  Closing an fd that another thread is
  about to read would let that read hit whatever file next gets the number.
  A close therefore (1) marks the device closed, (2) wakes every waiter
  (:meth:`FdLife.notify_closing`: the wakeup eventfd that blocking waits
  poll beside the device, and the asyncio futures), (3) dup3()s /dev/null
  over the number (:meth:`FdLife.retire`), which releases the TUN file (the
  interface goes away) while keeping the number taken, and (4) frees the
  number once no thread can be about to use it (:meth:`FdLife.free_if_unused`).
  ``detach()`` is the same sequence with the number handed back at step 3.
  Another number the owner's per-packet calls use (a macOS feth TAP's NDRV
  socket) goes through steps 3 and 4 with it (:meth:`FdLife.retire_also`).
- Announcements.  Calls that hold a number across Python code (batches,
  waits, link settings) announce themselves (:meth:`FdLife.enter`: a dict
  entry per call, nothing per packet) and check ``closed`` after announcing,
  so a close either sees them or they see the close.  The per-packet calls
  do not announce: see "freeing closed fd numbers" below for why a thread
  that was alive at close() and is not announced is done with the number
  once /proc shows it exited, or slept without running for 50 ms (100 on
  PyPy), or (CPython) made a read/write syscall or ran 1 ms of CPU since; or
  once it runs code of the device.  The close checks at once (a
  single-threaded program gets the number back at once) and a daemon
  thread, started on demand, checks again every 15 ms until all is freed;
  the wakeup fd and the owner's helpers (engines, control socket: see
  :class:`Owner`) go as soon as no other thread is inside an announced
  call.  At the latest the finalizers free them.
- Blocking.  A blocking wait polls the device beside the wakeup eventfd,
  which a close writes and nobody drains: every wait after it returns at
  once.  In the main thread the poll is cut into slices so a Ctrl-C whose
  signal landed on another thread still interrupts promptly.
- asyncio.  A loop keeps one reader callback per fd, so the coroutines
  waiting on one device and loop share a list of futures: one callback wakes
  them all, and the fd stays registered until the last of them is done.
  The registrations live here because the close must undo them before the
  number can be freed: it fails every future with DeviceClosedError and
  unregisters the fd from each loop, on another thread's loop through
  ``call_soon_threadsafe``, and the number is freed by that callback, so a
  loop never holds a registration for a number that was reused.  The loop
  API is used duck-typed (add_reader/remove_reader, call_soon_threadsafe):
  :mod:`tuntap_cffi.aio` makes the futures.
- Platforms.  The C calls of this protocol go through an :class:`FdOps`
  chosen by the owner: :data:`LINUX_OPS` (eventfd, poll, dup3 of
  /dev/null, /proc/self/task: the calls this module always made) by
  default; a macOS Device passes its own (a pipe, poll, dup2 + FD_CLOEXEC
  through the macOS libc boundary: ``tuntap_cffi._utun_device``).
- fork().  A child forgets the parent's wakeup eventfd and asyncio
  registrations (it closes its own copies only) and makes its own on demand;
  the owner forgets what is the parent's through its ``_forget_parent``.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from ._syscalls import WAIT_SLICE_MS, check, close_quietly, dead_fd, ffi, lib
from .errors import DeviceClosedError

if TYPE_CHECKING:  # pragma: no cover
    from typing import NoReturn

__all__ = ["FdLife", "FdOps", "LINUX_OPS", "Owner", "Watched", "pending_retirements"]

_get_ident = threading.get_ident


class Owner(Protocol):
    """What an :class:`FdLife` asks of the object whose fd it keeps (a Device).

    The helpers are the owner's other fds (engines, control socket) that only
    announced calls use: they may be closed once no other thread is inside one.
    """

    def _helpers_open(self) -> bool:
        """Whether the owner still holds a helper fd."""
        ...

    def _release_helpers(self) -> None:
        """Close the helpers (no other thread is inside an announced call)."""
        ...

    def _forget_parent(self) -> None:
        """In a fork()ed child, after the FdLife forgot its part: forget the parent's helpers."""
        ...


class Watched(Protocol):
    """A thread alive at close() that may still be about to use the retired number."""

    tid: int  # its native id

    def done(self) -> bool:
        """True once it cannot be (exited, or proof that it left the window)."""
        ...


class FdOps(Protocol):
    """The C calls of one fd's life on a platform (see "Platforms" above)."""

    def wakeup(self, name: str) -> Tuple[int, int]:
        """A new non-blocking, close-on-exec wakeup: (fd to poll for POLLIN, fd :meth:`wake` writes)."""
        ...

    def wake(self, fd: int) -> None:
        """Make the wakeup readable for good (nobody drains it)."""
        ...

    def pollfds(self) -> Any:
        """A zeroed ``struct pollfd[4]`` that :meth:`poll` takes."""
        ...

    def poll(self, fds: Any, nfds: int, timeout: int) -> int: ...

    def retire(self, fd: int) -> None:
        """Put the dead file (/dev/null, close-on-exec) over *fd*'s number: the device's file is released."""
        ...

    def close(self, fd: int) -> None:
        """Close *fd*, ignoring errors (-1: nothing)."""
        ...

    def watch_others(self) -> List[Watched]:
        """Every other thread of this process, as it is now."""
        ...

    def threads(self) -> Set[int]:
        """The native ids of this process's threads alive now (the platform's view: /proc on Linux)."""
        ...


# ------------------------------------------------- freeing closed fd numbers
#
# Which thread may still be about to use a closed number.  The calls that
# hold a number (or an engine, the wakeup or control fd) across Python code
# announce themselves in FdLife.inside.  The per-packet calls do not: they
# load self._fd and call cffi in one expression, with no point in between
# where CPython 3.11 runs other Python code (no eval-breaker check between
# LOAD_ATTR and CALL; cffi converts the arguments, releases the GIL and
# makes the syscall).  A thread in that window while close() runs is
# therefore past its GIL release, runnable or in the syscall, and its next
# read/write-family syscall is the window's (made on /dev/null by then).
# So a thread alive at close() and not announced can no longer use the
# number once /proc shows that it: has exited; or (CPython) made a read or
# write syscall since (io: syscr + syscw); or (CPython) ran >= 1 ms of CPU
# since (the window needs microseconds); or has slept (state S) for
# _QUIET_NS without being scheduled once (schedstat's run count): a thread
# in the window never sleeps that long (CPython signals a GIL dropper when
# the GIL is next taken, a GIL waiter wakes every 5 ms).  Or it ran code of
# the device since (it finds the device closed).  PyPy checks for thread
# switches, signals and finalizers between bytecodes, so arbitrary code
# (syscalls, CPU) may run inside the window there: only exit, the long
# sleep (a longer one) and the device's own code count on PyPy.

_CPYTHON = sys.implementation.name == "cpython"
_QUIET_NS = 50_000_000 if _CPYTHON else 100_000_000
_CPU_NS = 1_000_000
_RECHECK_S = 0.015  # how often the reaper thread looks again


def _read_proc(path: str) -> bytes:
    """A small /proc file; FileNotFoundError/ProcessLookupError once the task is gone."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 1024)
    finally:
        os.close(fd)
    if not data:
        raise ProcessLookupError(path)
    return data


def _task_sample(tid: int) -> Optional[Tuple[bytes, int, int, int]]:
    """(state, CPU ns, times scheduled, read+write syscalls) of thread *tid*; None once it exited.

    Raises OSError when /proc cannot tell (no fd free, say): assume nothing then.
    """
    base = f"/proc/self/task/{tid}/"
    try:
        stat = _read_proc(base + "stat")
        run_ns, _wait_ns, runs = _read_proc(base + "schedstat").split()[:3]
        syscalls = 0
        if _CPYTHON:
            for line in _read_proc(base + "io").splitlines():
                if line.startswith((b"syscr:", b"syscw:")):
                    syscalls += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    state = stat.rpartition(b")")[2].split(None, 1)[0]  # (the name before it may hold anything)
    return state, int(run_ns), int(runs), syscalls


class _Watched:
    """A thread alive at close(), with what /proc said of it then (see above)."""

    __slots__ = ("tid", "syscalls", "cpu", "state", "runs", "since")

    def __init__(self, tid: int, sample: Optional[Tuple[bytes, int, int, int]]) -> None:
        self.tid = tid
        state, self.cpu, self.runs, self.syscalls = sample or (b"?", 1 << 62, -1, 1 << 62)  # unknown: only exit counts
        self.state = state
        self.since = time.monotonic_ns()

    def done(self) -> bool:
        """True once the thread cannot be about to use the number (exited, or proof in /proc)."""
        try:
            sample = _task_sample(self.tid)
        except OSError:
            return False
        if sample is None:
            return True
        state, cpu, runs, syscalls = sample
        if _CPYTHON and (syscalls > self.syscalls or cpu - self.cpu >= _CPU_NS):
            return True
        now = time.monotonic_ns()
        if state == b"S" and self.state == b"S" and runs == self.runs:
            return now - self.since >= _QUIET_NS  # one sleep, not scheduled since
        self.state, self.runs, self.since = state, runs, now
        return False


def _linux_threads() -> Set[int]:
    """This process's threads (kernel tasks: threads not made by ``threading`` too)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:  # no fd free: the threads Python knows of
        return {t.native_id for t in threading.enumerate() if t.native_id is not None}


def _watch_others() -> List[_Watched]:
    """Every other thread of this process (kernel tasks: threads not made by ``threading`` too)."""
    me = threading.get_native_id()
    tids = _linux_threads()
    watched = []
    for tid in tids:
        if tid == me:
            continue
        try:
            sample = _task_sample(tid)
        except OSError:
            sample = None
        else:
            if sample is None:
                continue  # exited already
        watched.append(_Watched(tid, sample))
    return watched


class _LinuxOps:
    """Linux: eventfd, poll, dup3 of /dev/null, and /proc/self/task for the threads."""

    poll = lib.poll
    close = staticmethod(close_quietly)

    def wakeup(self, name: str) -> Tuple[int, int]:
        # eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): EFD_* equal O_* on every architecture
        wake = check(lib.eventfd, 0, os.O_CLOEXEC | os.O_NONBLOCK, op="eventfd", name=name)
        return wake, wake

    def wake(self, fd: int) -> None:
        lib.write(fd, ffi.new("uint64_t *", 1), 8)

    def pollfds(self) -> Any:
        return ffi.new("struct pollfd[4]")

    def retire(self, fd: int) -> None:
        lib.dup3(dead_fd(), fd, os.O_CLOEXEC)

    def watch_others(self) -> List[Watched]:
        return list(_watch_others())

    threads = staticmethod(_linux_threads)


#: The default :class:`FdOps`: the calls this module makes on Linux.
LINUX_OPS: FdOps = _LinuxOps()


# Lives whose fds wait to be freed; one daemon thread re-checks them.  Weak:
# a life goes with its owner, whose finalizer frees what is left.
_retiring: "weakref.WeakSet[FdLife]" = weakref.WeakSet()
_retire_lock = threading.Lock()
_reaper: Optional[threading.Thread] = None


def pending_retirements() -> int:
    """How many closed devices still wait for the reaper to free their fds (for tests and diagnostics)."""
    with _retire_lock:
        return len(_retiring)


def _watch_all_but_reaper(ops: FdOps) -> List[Watched]:
    """The threads a close must wait for: every other one but the reaper.

    The reaper runs only this module's code and never uses a device's
    numbers, only frees them once safe; watching it would hold a close's
    numbers until it exits (on macOS it is seen done only then).
    """
    reaper = _reaper
    tid = reaper.native_id if reaper is not None else None
    return [w for w in ops.watch_others() if w.tid != tid]


def _reap() -> None:
    """The reaper: re-check every retiring life every _RECHECK_S; exit when none is left."""
    global _reaper
    while True:
        time.sleep(_RECHECK_S)
        # Weak references only, one held at a time: a Device the program
        # dropped stays collectable during and between passes.
        with _retire_lock:
            pending = [weakref.ref(life) for life in _retiring]
        for ref in pending:
            life = ref()
            if life is not None and life.free_if_unused():
                with _retire_lock:
                    _retiring.discard(life)
            life = None
        with _retire_lock:
            if not _retiring:
                _reaper = None
                return


# Every FdLife not yet collected, for fork(): see _after_fork_in_child.
_live: "weakref.WeakSet[FdLife]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Make every inherited life the child's own: forget the parent's wakeup fd, waiters and helpers.

    The child may then use a Device it inherited (both processes share the
    TUN queue: each packet goes to whichever reads first) or close it (that
    closes the child's fd; the interface stays while the parent holds its
    own).  Nothing the child does reaches the parent's rings or wakeup.
    """
    global _reaper, _retire_lock
    _retire_lock = threading.Lock()
    _reaper = None  # (not running in the child)
    _retiring.clear()
    for life in list(_live):
        life.forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)

class FdLife:
    """One device fd's life: announcements, waits, and the close in trio's order (see the module docstring).

    The owner keeps its fd and ``closed`` flag itself (the per-packet path
    reads them as plain attributes) and, holding :attr:`lock`, marks itself
    closed before calling :meth:`notify_closing`.
    """

    def __init__(self, name: str, owner: Owner, ops: FdOps = LINUX_OPS) -> None:
        self.name = name
        self.ops = ops
        self.lock = threading.Lock()  # slow paths only: wakeup setup, close, the owner's helpers
        self.inside: Dict[int, int] = {}  # ident -> depth of threads in a call that announces itself
        self.closing = False  # notify_closing ran: no new waiter may register
        self._owner = weakref.ref(owner)  # (weak: the owner holds this life)
        self._wake_fd = -1
        self._wake_signal = -1  # what a close writes: _wake_fd itself (eventfd) or a pipe's write end
        self._pollfds: Any = None  # struct pollfd[4]: [dev, wake] for POLLIN, then for POLLOUT
        self._retired_fd = -1  # the number after close(), until it is freed
        self._retired_more: List[int] = []  # the owner's other numbers that unannounced calls use (retire_also)
        self._watch: List[Watched] = []  # threads alive at close() that may still hold the number
        # asyncio: (loop, future) of every coroutine waiting, with the fd it registered (-1: none, or the
        # device's); the close fails them and unregisters them before the numbers may be freed.
        self._async_waiters: Dict[Tuple[Any, Any], int] = {}
        self._async_lists: Dict[Tuple[Any, bool], List[Any]] = {}  # (loop, write) -> waiting futures
        self._async_pending = 0  # close-callbacks scheduled on other threads' loops
        _live.add(self)

    # ------------------------------------------------------------ announcements

    def enter(self) -> int:
        """Announce that this thread is in a call that holds fd numbers across Python code.

        An announced thread is never taken for one that cannot use the
        number; the announcer checks ``closed`` after announcing, so a
        close() either sees it or it sees the close.  Returns the ident
        for :meth:`exit`.
        """
        me = _get_ident()
        inside = self.inside
        inside[me] = inside.get(me, 0) + 1  # (only this thread writes its key)
        return me

    def exit(self, me: int) -> None:
        inside = self.inside
        depth = inside.get(me, 1) - 1
        if depth:
            inside[me] = depth
        else:
            inside.pop(me, None)

    def others_inside(self) -> bool:
        """Whether another thread is in a call that announced itself."""
        inside = self.inside
        return len(inside) > (threading.get_ident() in inside)

    def leave_closed(self) -> "NoReturn":
        """Called by a thread that found the device closed: free what it can, raise."""
        self.free_if_unused()  # (the close has the reaper look again if this cannot)
        raise DeviceClosedError(self.name)

    # ------------------------------------------------------------------ waiting

    def wait(self, fd: int, events: int, timeout_ms: int = -1) -> None:
        """Block until *fd* is ready for *events*, the device closes, a signal, or *timeout_ms*.

        Returns after any wakeup; the caller retries its syscall and checks
        ``closed``.  Raises :class:`DeviceClosedError` if closed meanwhile.
        (*fd* may be read before this call announces: it is used only if the
        close had not begun by then, so the number was still the device's.)
        """
        self._poll(None, fd, events == select.POLLIN, timeout_ms)

    def poll_beside(self, pfd: Any, count: int, timeout_ms: int = -1) -> None:
        """Poll the *count* entries of *pfd* (a ``struct pollfd[count + 1]``) and the wakeup fd, which this puts last.

        For waiters on other fds of the device's (the event iterators'
        netlink sockets): a close wakes them as it wakes a reader.  Returns
        after any wakeup, as :meth:`wait`; DeviceClosedError once closing.
        """
        self._poll(pfd, count, False, timeout_ms)

    def _poll(self, own: Any, fd_or_count: int, reading: bool, timeout_ms: int) -> None:
        """wait() (*own* None: *fd_or_count* is the device's fd) or poll_beside() (*own*: its array and count)."""
        me = self.enter()  # the poll set holds the fd and the wakeup fd across Python code
        try:
            if self.closing:
                self.leave_closed()
            pfd = self._pollfds
            if pfd is None:
                pfd = self._setup_wakeup()
            if own is None:
                # Separate pairs for reading and writing: a reader and a writer may wait at once.
                pair, count = (pfd if reading else pfd + 2), 2
                pair[0].fd = fd_or_count
            else:
                pair, count = own, fd_or_count + 1
                own[fd_or_count].fd, own[fd_or_count].events = self._wake_fd, select.POLLIN
            timeout = timeout_ms
            if threading.current_thread() is threading.main_thread() and not 0 <= timeout < WAIT_SLICE_MS:
                timeout = WAIT_SLICE_MS  # see WAIT_SLICE_MS: Ctrl-C must not wait
            self.ops.poll(pair, count, timeout)  # EINTR or a timeout: the caller retries
        finally:
            self.exit(me)

    def _setup_wakeup(self) -> Any:
        with self.lock:
            if self._pollfds is None:
                if self.closing:
                    self.leave_closed()
                wake, self._wake_signal = self.ops.wakeup(self.name)
                pfd = self.ops.pollfds()
                pfd[0].events, pfd[2].events = select.POLLIN, select.POLLOUT
                pfd[1].fd = pfd[3].fd = wake
                pfd[1].events = pfd[3].events = select.POLLIN
                self._wake_fd = wake
                self._pollfds = pfd
            return self._pollfds

    def add_async_waiter(self, loop: Any, fut: Any, write: bool, fd: int, ready: Callable[[List[Any]], None]) -> List[Any]:
        """Register *fut* of *loop* as waiting for *fd* to be readable (or writable); DeviceClosedError once closing.

        The first waiter of a loop registers ``ready(futures)`` as the fd's
        reader (writer); returns that shared list, for
        :meth:`remove_async_waiter`.  (*fd*: as for :meth:`wait`.)
        """
        key = (loop, write)
        with self.lock:
            if self.closing:
                raise DeviceClosedError(self.name)
            futures = self._async_lists.get(key)
            if futures is None:
                futures = self._async_lists[key] = []
                (loop.add_writer if write else loop.add_reader)(fd, ready, futures)
            futures.append(fut)
            self._async_waiters[(loop, fut)] = fd
        return futures

    def add_close_waiter(self, loop: Any, fut: Any) -> None:
        """Have a close fail *fut* of *loop* with DeviceClosedError (a coroutine waiting on another fd of the device's).

        Raises DeviceClosedError at once if the close has begun.  The caller
        waits for its own fd itself and calls :meth:`remove_close_waiter` when done.
        """
        with self.lock:
            if self.closing:
                raise DeviceClosedError(self.name)
            self._async_waiters[(loop, fut)] = -1

    def remove_close_waiter(self, loop: Any, fut: Any) -> None:
        """*fut* is done waiting: a close no longer needs to fail it."""
        with self.lock:
            self._async_waiters.pop((loop, fut), None)

    def remove_async_waiter(self, loop: Any, fut: Any, write: bool, fd: int, futures: List[Any]) -> None:
        """*fut* is done waiting: forget it; the loop's last waiter unregisters the fd (unless a close did)."""
        key = (loop, write)
        with self.lock:
            self._async_waiters.pop((loop, fut), None)
            if fut in futures:
                futures.remove(fut)
            if not futures and self._async_lists.get(key) is futures:
                del self._async_lists[key]
                (loop.remove_writer if write else loop.remove_reader)(fd)

    # ------------------------------------------------------------------ closing

    def notify_closing(self, fd: int) -> None:
        """Step 2 of a close (under :attr:`lock`, the owner marked closed): wake every waiter of *fd*.

        Blocking waits through the wakeup eventfd; asyncio futures fail with
        DeviceClosedError and *fd* is unregistered from each loop.  *fd* -1:
        closed already, nothing waits.
        """
        self.closing = True
        if fd < 0:
            return
        if self._wake_fd >= 0:
            self.ops.wake(self._wake_signal)
        waiters, self._async_waiters = self._async_waiters, {}
        self._async_lists = {}  # _abort_waiter unregisters the fd from each loop
        if not waiters:
            return
        import asyncio  # (a waiter was made by it: imported already)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for (loop, fut), own in waiters.items():
            if loop.is_closed():
                continue
            at = own if own >= 0 else fd  # (a waiter on another fd of the owner's: the NDRV socket of a feth TAP)
            if running is loop:
                self._abort_waiter(loop, fut, at)
            else:
                self._async_pending += 1
                loop.call_soon_threadsafe(self._abort_waiter_later, loop, fut, at)

    def _abort_waiter(self, loop: Any, fut: Any, fd: int) -> None:
        """Unregister *fd* for the waiter's loop and fail its future (runs in the loop's thread)."""
        if not loop.is_closed():
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        if not fut.done():
            fut.set_exception(DeviceClosedError(self.name))

    def _abort_waiter_later(self, loop: Any, fut: Any, fd: int) -> None:
        self._abort_waiter(loop, fut, fd)
        with self.lock:
            self._async_pending -= 1
        self.free_when_safe()

    def retire(self, fd: int) -> None:
        """Step 3 of a close (under :attr:`lock`, after notify_closing): release the file, keep the number.

        /dev/null takes the number's place until :meth:`free_if_unused` finds
        no thread about to use it; the threads alive now are watched from here.
        """
        self.ops.retire(fd)
        self._retired_fd = fd
        self._watch = _watch_all_but_reaper(self.ops)  # after the number left the owner: what each had done by then

    def retire_also(self, fd: int) -> None:
        """Step 3 for another number of the owner's that its per-packet calls use unannounced (under :attr:`lock`).

        The same protocol as the device's own number (a feth TAP's NDRV
        socket, which its writes use): /dev/null over it now, freed with the
        retired number once no thread alive now can be about to use it.
        """
        self.ops.retire(fd)
        self._retired_more.append(fd)
        self._watch = _watch_all_but_reaper(self.ops)  # taken again: after this number left the owner too

    def free_when_safe(self) -> None:
        """Free what the close left now if it is safe, else have the reaper thread do it once it is."""
        global _reaper
        if self.free_if_unused():
            return
        if sys.is_finalizing():
            # Interpreter shutdown (a finalizer closing a device): a new thread
            # would never start (start() waits for ever on CPython 3.11) and no
            # other thread runs Python code any more: free the number now.
            self.release()
            return
        with _retire_lock:
            _retiring.add(self)
            if _reaper is None:
                thread = threading.Thread(target=_reap, name="tuntap_cffi-reaper", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no thread to spare: the other triggers and the finalizer remain
                    return
                _reaper = thread

    def free_if_unused(self) -> bool:
        """Free what the close left as soon as it is safe; False while something must wait.

        The owner's helpers and the wakeup fd are used only by announced
        calls: they go once no other thread is inside one.  The retired
        number also waits for every thread alive at the close (see
        :class:`_Watched`).  True also when an event loop has yet to
        unregister the fd: its callback calls this again.
        """
        with self.lock:
            if not self.closing or self._async_pending:
                return True
            owner = self._owner()  # (None: collected, its finalizer closed its helpers)
            helpers = owner is not None and owner._helpers_open()
            if (self._wake_fd >= 0 or helpers) and not self.others_inside():
                if owner is not None:
                    owner._release_helpers()
                self._release_wakeup()
                helpers = False
            if (self._retired_fd >= 0 or self._retired_more) and not self.others_inside() \
                    and not self._others_may_hold_number():
                self._close_retired()
            return self._retired_fd < 0 and not self._retired_more and self._wake_fd < 0 and not helpers

    def _close_retired(self) -> None:
        """Free the retired numbers (nothing can be about to use them)."""
        fd, self._retired_fd = self._retired_fd, -1
        more, self._retired_more = self._retired_more, []
        for number in [fd] + more:
            self.ops.close(number)

    def _others_may_hold_number(self) -> bool:
        """Whether a thread alive at the close may still be about to use the retired number (under lock).

        The calling thread is running code of this device, so it is not
        (a call made after the close loads -1).  Threads started later never
        saw the number.  (Frame inspection would be sharper, but
        ``sys._current_frames()`` and walking other threads' frames deadlock
        or corrupt memory on CPython 3.11 under GC pressure: gh-106883.)
        """
        if self._watch:
            me = threading.get_native_id()
            self._watch = [w for w in self._watch if w.tid != me and not w.done()]
        return bool(self._watch)

    def _release_wakeup(self) -> None:
        fd, self._wake_fd = self._wake_fd, -1
        signal, self._wake_signal = self._wake_signal, -1
        self.ops.close(fd)
        if signal != fd:
            self.ops.close(signal)
        self._pollfds = None

    def forget_parent(self) -> None:
        """In a fork()ed child: drop what is the parent's, then have the owner do the same.

        The child is single-threaded here: the lock may have been held by a
        parent thread that does not exist in it, so it is replaced.  The
        wakeup eventfd and asyncio registrations are shared with the parent:
        the child closes only its own copies (writing the eventfd or
        epoll_ctl on the parent's loop would reach the parent) and makes its
        own on demand.  A retired number: no thread is left to use it.
        """
        self.lock = threading.Lock()
        self._release_wakeup()
        self._close_retired()
        self._async_waiters = {}
        self._async_lists = {}
        self._async_pending = 0
        self._watch = []
        self.inside.clear()  # (the same dict: the owner may hold it)
        owner = self._owner()
        if owner is not None:
            owner._forget_parent()

    def release(self) -> None:
        """The owner is being finalized (no thread can be inside its calls): free the wakeup fd and retired number.

        Unless a loop has yet to unregister the number: its callback frees it
        (or, if it never runs, this object's finalizer).  No lock: a finalizer
        may run in a thread that holds it.
        """
        if self._async_pending:
            return
        self._release_wakeup()
        self._close_retired()

    def __del__(self) -> None:
        ops = getattr(self, "ops", None)
        if ops is None:
            return
        wake, signal = getattr(self, "_wake_fd", -1), getattr(self, "_wake_signal", -1)
        ops.close(wake)
        if signal != wake:
            ops.close(signal)
        ops.close(getattr(self, "_retired_fd", -1))
        for fd in getattr(self, "_retired_more", ()):
            ops.close(fd)
