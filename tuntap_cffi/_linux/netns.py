"""Network namespaces: open one by name, path or fd, run a call inside it, tell which one a device is in.

Facts that shape this module:

- A TUN/TAP interface is made in the network namespace that was current
  when ``/dev/net/tun`` was opened (``tun_chr_open`` takes the opener's
  ``net_ns``; ``TUNSETIFF`` creates in that file's namespace).  A socket
  likewise keeps the namespace it was created in: link ioctls and
  rtnetlink requests on it act there, whatever thread uses it later.
- ``setns(fd, CLONE_NEWNET)`` changes the namespace of the calling thread
  only, and a network namespace may be entered by one thread of a
  multi-threaded process.  So every fd meant for another namespace is made
  by a short-lived thread that enters it, makes the fd and ends: the
  caller's own thread never changes namespace, and the fds it gets back
  work from any thread.
- ``ip netns add NAME`` bind-mounts the namespace at /run/netns/NAME; any
  ``/proc/PID/ns/net`` (``/proc/thread-self/ns/net``: this thread's) is a
  namespace file too.  ``NS_GET_NSTYPE`` (4.11) on an fd tells whether it
  is a namespace and of which kind: anything else is refused before use.
- ``TUNGETDEVNETNS`` (5.2; CAP_NET_ADMIN over that namespace) returns an fd
  of the namespace a device is in *now* (it follows moves).  A namespace is
  identified by the inode of that fd (all namespace files live on one nsfs
  device).  Where the ioctl is missing or refused, the device is taken to
  be in the caller's namespace (as before namespaces were supported).
- /sys/class/net shows the namespace of whoever mounted /sys, not the
  thread's; /proc/sys/net follows the thread.  So anything read or written
  there for a device in another namespace is done from a thread inside it.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Callable, List, Optional, Tuple, TypeVar, Union

from .. import _ioctl
from .._constants import NETNS_DIR, NetNamespace
from .._syscalls import check, close_quietly, ffi, lib
from ..errors import NamespaceNotFoundError, error_from_errno

__all__ = ["open_netns", "in_netns", "device_netns", "describe_netns", "identity", "THREAD_NETNS"]

T = TypeVar("T")

#: The calling thread's own network namespace file.
THREAD_NETNS = "/proc/thread-self/ns/net"
_F_DUPFD_CLOEXEC = 1030


def identity(fd: int) -> Tuple[int, int]:
    """(device, inode) of namespace fd *fd*: equal for two fds of one namespace."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _thread_identity() -> Optional[Tuple[int, int]]:
    """The calling thread's namespace identity; None without /proc (then calls go through a thread: harmless)."""
    try:
        st = os.stat(THREAD_NETNS)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _require_netns(fd: int, shown: str) -> None:
    """Raise ValueError unless *fd* is a network namespace (NS_GET_NSTYPE)."""
    kind = lib.ioctl(fd, _ioctl.NS_GET_NSTYPE)
    if kind < 0:
        err = ffi.errno
        if err == errno.EBADF:
            raise error_from_errno(err, "netns", None, f"{shown} is not an open file descriptor")
        raise ValueError(f"{shown} is not a namespace file (such as /run/netns/NAME or /proc/PID/ns/net)")
    if kind != lib.CLONE_NEWNET:
        raise ValueError(f"{shown} is a namespace of another kind (type {kind:#x}), not a network namespace")


def open_netns(ns: Union[str, int]) -> int:
    """An fd of network namespace *ns* (a name under /run/netns, a path, or an fd: duplicated), owned by the caller.

    Raises :class:`NamespaceNotFoundError` for a name or path that does not
    exist, ValueError for a file or fd that is no network namespace.
    """
    if isinstance(ns, int):
        _require_netns(ns, f"netns={ns} (fd)")
        return check(lib.fcntl, ns, ffi.cast("int", _F_DUPFD_CLOEXEC), ffi.cast("int", 0), op="netns",
                     what=f"cannot duplicate namespace fd {ns}")
    path = ns if "/" in ns else f"{NETNS_DIR}/{ns}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if "/" in ns:
            raise NamespaceNotFoundError(errno.ENOENT, "no such network namespace file", path) from None
        raise NamespaceNotFoundError(
            errno.ENOENT, f"no network namespace named {ns!r}: create it (`ip netns add {ns}`), "
            "or pass a path (/proc/PID/ns/net) or an open fd of one", path) from None
    except OSError as exc:
        raise error_from_errno(exc.errno or errno.EIO, "netns", path, f"cannot open network namespace {path}") from None
    try:
        _require_netns(fd, f"netns={ns!r}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def in_netns(nsfd: int, func: Callable[[], T], undo: Callable[[T], None]) -> T:
    """Return ``func()`` called inside network namespace *nsfd*, which the calling thread never enters.

    When *nsfd* is the calling thread's namespace, *func* runs here;
    otherwise in a new thread that enters the namespace first and then
    ends.  If the caller is interrupted (KeyboardInterrupt) while that
    thread runs, it still waits for it and hands what *func* made to
    *undo* (close the fd, say) before re-raising: nothing leaks.
    """
    if identity(nsfd) == _thread_identity():
        return func()
    done: List[T] = []
    failed: List[BaseException] = []
    # Waited for instead of join(): a join() interrupted by a signal
    # handler's exception marks a running thread as stopped (CPython
    # 3.11's bpo-45274 fix releases its lock), so is_alive() cannot be
    # trusted after one.
    finished = threading.Event()

    def body() -> None:
        try:
            check(lib.setns, nsfd, lib.CLONE_NEWNET, op="netns",
                  what="cannot enter the network namespace (setns needs CAP_SYS_ADMIN over it)")
            done.append(func())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)
        finally:
            finished.set()

    def settle() -> None:
        """After an interrupt: wait for the worker all the same, and undo what it made."""
        while not finished.is_set():
            try:
                finished.wait()
            except BaseException:  # a second Ctrl-C: keep waiting, the result must be undone
                pass
        if done:
            undo(done.pop())

    worker = threading.Thread(target=body, name="tuntap-netns", daemon=True)
    try:
        worker.start()
    except RuntimeError:
        raise  # no thread could be started: nothing was made
    except BaseException:
        settle()  # interrupted in start()'s own wait: the thread runs anyway
        raise
    try:
        finished.wait()
        worker.join()  # (it has nothing left to do but end)
    except BaseException:
        settle()
        raise
    if failed:
        raise failed[0]
    return done[0]


def device_netns(fd: int, name: str) -> int:
    """``TUNGETDEVNETNS``: an fd of the namespace TUN/TAP *fd*'s interface is in now (owned by the caller).

    Raises the mapped TunTapError where the kernel lacks it (before 5.2:
    ENOTTY/EINVAL) or refuses it (EPERM: no CAP_NET_ADMIN over that namespace).
    """
    return check(lib.ioctl, fd, _ioctl.TUNGETDEVNETNS, op="ioctl", name=name,
                 what=f"cannot tell which network namespace {name} is in (TUNGETDEVNETNS, Linux 5.2)")


def _named(ident: Tuple[int, int]) -> Optional[str]:
    """The name under /run/netns of the namespace *ident*, or None."""
    try:
        entries = os.listdir(NETNS_DIR)
    except OSError:
        return None
    for entry in sorted(entries):
        try:
            st = os.stat(f"{NETNS_DIR}/{entry}")
        except OSError:
            continue  # removed meanwhile, or a mount point left unmounted
        if (st.st_dev, st.st_ino) == ident:
            return entry
    return None


def describe_netns(nsfd: int) -> NetNamespace:
    """What namespace fd *nsfd* is: its inode, its ``ip netns`` name, whether it is the calling thread's."""
    ident = identity(nsfd)
    return NetNamespace(ident[1], _named(ident), ident == _thread_identity())

