"""The FreeBSD Device: a /dev/tun's packets framed with their 4-byte address family, a /dev/tap's bare frames.

Facts that shape this module (FreeBSD 14, sys/net/if_tuntap.c):

- With ``TUNSIFHEAD`` on (the backend sets it at open) a tun frames every
  packet as macOS's utun does: a big-endian u32 family in front, one packet
  per ``read``/``write`` (``tunread`` prepends it, ``tunwrite_l3`` strips
  it), so the Device is the AF-header Device of ``_utun_device`` with
  FreeBSD's numbers (:data:`FREEBSD`: AF_INET6 28, ``O_CLOEXEC``
  0x100000, FreeBSD's errno): ``readv``/``writev`` with no copy.
- A tap carries Ethernet frames with no header (``tunread``/``tunwrite_l2``):
  plain ``read``/``write``, as a Linux TAP with ``IFF_NO_PI``.
- Closing the fd leaves the interface (``tunclose``), so :class:`FreeBsdDevice`
  destroys it (``SIOCIFDESTROY``) once the fd is closed, keeping the
  library's promise that a non-persistent device goes with its Device.
  Persistence is that destroy skipped: FreeBSD has no flag for it, so the
  Device keeps it (``persistent``, ``TunFlags.PERSIST`` in ``flags``).  An
  interface that was there before the open (``/dev/tunN`` of a unit that
  outlived its fd) is persistent unless ``persist=False``; one the open
  cloned is not unless ``persist=True``; an adopted fd (``from_fd``) is
  not (set ``persistent`` to keep it).
- Every C call goes through ``tuntap_cffi._freebsd.libc`` (a simulated
  FreeBSD kernel in the tests).
"""

from __future__ import annotations

from typing import Optional

from ._freebsd import backend as freebsd, cdefs, errnos, libc
from ._utun_device import BsdFraming, UtunDevice
from ._validate import check_bool
from .device import TunFlags
from .errors import DeviceClosedError

__all__ = ["FREEBSD", "FreeBsdDevice", "open_freebsd_device", "adopt_freebsd"]

#: FreeBSD's numbers for the AF-header Device (each checked against FreeBSD's headers).
FREEBSD = BsdFraming(
    errnos, cdefs.AF_INET, cdefs.AF_INET6, cdefs.F_GETFL, cdefs.F_SETFL, cdefs.F_SETFD, cdefs.FD_CLOEXEC,
    cdefs.O_NONBLOCK, cdefs.O_RDONLY, cdefs.O_CLOEXEC, kind="tun",
)


class FreeBsdDevice(UtunDevice):
    """A FreeBSD tun (AF-header framing hidden unless ``packet_info``) or tap (bare frames); destroyed at close
    unless persistent."""

    def _shut(self, detach: bool) -> int:
        """Device._shut, then ``SIOCIFDESTROY`` once close() closed the fd (tunclose leaves the interface)."""
        name, keep = self._name, self._flags & TunFlags.PERSIST
        fd = super()._shut(detach)
        if fd >= 0 and not detach and not keep:
            freebsd.destroy(name)
        return fd

    @property
    def persistent(self) -> bool:
        """True if close() leaves the interface (no SIOCIFDESTROY); settable (no syscall: FreeBSD has no flag)."""
        return bool(self._flags & TunFlags.PERSIST)

    @persistent.setter
    def persistent(self, value: bool) -> None:
        check_bool("persistent", value)
        if self._closed:
            raise DeviceClosedError(self._name)
        self._flags = self._flags | TunFlags.PERSIST if value else self._flags & ~TunFlags.PERSIST


def _device(fd: int, name: str, kind: str, packet_info: bool, nonblocking: bool, persist: bool) -> FreeBsdDevice:
    """The Device of an open /dev/tun or /dev/tap fd."""
    lib = libc.get()
    assert lib is not None  # (the open or the adoption raised otherwise)
    dev = FreeBsdDevice(fd, name, lib, packet_info=packet_info, blocking=not nonblocking, framing=FREEBSD,
                        tap=kind == "TAP")
    if persist:
        dev._flags |= TunFlags.PERSIST
    return dev


def open_freebsd_device(name: str, kind: str, packet_info: bool, nonblocking: bool,
                        persist: Optional[bool] = None, broadcast: Optional[bool] = None) -> FreeBsdDevice:
    """Open tun/tap *name* (``""``: a new one) as a Device (the arguments are checked already).

    *persist* None: persistent if the interface was there before the open.
    *broadcast* (a TUN): the TUNSIFMODE mode to set, None to leave it.
    """
    if kind == "TAP" and packet_info:
        raise ValueError("a FreeBSD TAP carries bare Ethernet frames: there is no packet_info header")
    fd, real_name, made = freebsd.open_node(name, kind, broadcast)
    try:
        return _device(fd, real_name, kind, packet_info, nonblocking, not made if persist is None else persist)
    except BaseException:
        freebsd.close_device(fd, real_name if made else "")
        raise


def adopt_freebsd(fd: int, nonblocking: bool, packet_info: bool) -> FreeBsdDevice:
    """``Device.from_fd`` on FreeBSD: wrap the /dev/tun or /dev/tap fd *fd* (name from TUNGIFNAME, kind from TUNGIFHEAD)."""
    name, kind = freebsd.adopt(fd)
    if kind == "TAP" and packet_info:
        raise ValueError(f"{name} is a FreeBSD TAP: it carries bare Ethernet frames, there is no packet_info header")
    lib = libc.get()
    assert lib is not None  # (adopt raised otherwise)
    FREEBSD.make_nonblocking(lib, fd, name)
    return _device(fd, name, kind, packet_info, nonblocking, False)
