"""libc loaded once, the one call checker, and small fd helpers.

Every failing call goes through :func:`check`, which reads ``ffi.errno`` at
once (cffi saves errno per thread right after each call, so nothing in
between can clobber it), retries EINTR in Python so that signal handlers (and
so Ctrl-C) run between attempts, and turns any other errno into the
exception from ``errors.py``.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, Callable, Optional

from ._libc import ffi
from .errors import error_from_errno

__all__ = ["ffi", "lib", "check", "open_cloexec", "close_quietly", "dead_fd", "WAIT_SLICE_MS", "poll_ms"]


def _load() -> Any:
    attempts = []
    for name in (None, "libc.so.6", "libc.so"):
        try:
            return ffi.dlopen(name)
        except OSError as exc:  # pragma: no cover - depends on the libc at hand
            attempts.append(f"{name or 'the running program'}: {exc}")
    raise OSError("tuntap_cffi cannot load the C library; tried " + "; ".join(attempts))


lib = _load()

#: A blocking wait in the main thread wakes this often so that a Ctrl-C whose
#: signal the kernel delivered to another thread is still handled promptly.
WAIT_SLICE_MS = 200


def poll_ms(seconds: float) -> int:
    """A poll() timeout for *seconds* (> 0) left: whole ms rounded up (it waits at least that long).

    Beyond ~23 days (math.inf included) it is 2e9 ms, as good as for ever
    and within poll's int: ``int(inf * 1000)`` would raise OverflowError.
    """
    return int(seconds * 1000) + 1 if seconds < 2_000_000 else 2_000_000_000


def check(
    func: Callable[..., int],
    *args: Any,
    op: str,
    name: Optional[str] = None,
    what: Optional[str] = None,
) -> int:
    """Call ``func(*args)``; return its non-negative result, else raise.

    EINTR is retried.  Any other errno becomes ``error_from_errno(errno, op,
    name, what)``.
    """
    while True:
        result: int = func(*args)
        if result >= 0:
            return result
        err = ffi.errno
        if err != errno.EINTR:
            raise error_from_errno(err, op, name, what)


def open_cloexec(path: str, flags: int, what: str) -> int:
    """Open *path* with O_CLOEXEC added; raise the mapped error on failure."""
    return check(lib.open, path.encode(), flags | os.O_CLOEXEC, op="open", name=path, what=what)


def close_quietly(fd: int) -> None:
    """Close *fd*, ignoring errors (used on failure paths and at release)."""
    if fd >= 0:
        lib.close(fd)


_dead_lock = threading.Lock()
_dead_fd = -1


def _new_dead_lock() -> None:
    """After fork(): the lock may have been held by a parent thread that the child lacks."""
    global _dead_lock
    _dead_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_dead_lock)


def dead_fd() -> int:
    """Return a process-wide read-only fd on /dev/null, opened once.

    ``close()`` duplicates it over a device's fd number: the TUN file is
    released at once while the number stays taken, so a racing reader gets
    end-of-file from /dev/null instead of reading some newly opened file
    that reused the number.
    """
    global _dead_fd
    if _dead_fd < 0:
        with _dead_lock:
            if _dead_fd < 0:
                _dead_fd = open_cloexec("/dev/null", os.O_RDONLY, "cannot open /dev/null")
    return _dead_fd

