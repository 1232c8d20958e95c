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
- Every C call goes through ``tuntap_cffi._freebsd.libc`` (a simulated
  FreeBSD kernel in the tests).
"""

from __future__ import annotations

from ._freebsd import backend as freebsd, cdefs, errnos, libc
from ._utun_device import BsdFraming, UtunDevice

__all__ = ["FREEBSD", "FreeBsdDevice", "open_freebsd_device"]

#: FreeBSD's numbers for the AF-header Device (each checked against FreeBSD's headers).
FREEBSD = BsdFraming(
    errnos, cdefs.AF_INET, cdefs.AF_INET6, cdefs.F_GETFL, cdefs.F_SETFL, cdefs.F_SETFD, cdefs.FD_CLOEXEC,
    cdefs.O_NONBLOCK, cdefs.O_RDONLY, cdefs.O_CLOEXEC, kind="tun",
)


class FreeBsdDevice(UtunDevice):
    """A FreeBSD tun (AF-header framing hidden unless ``packet_info``) or tap (bare frames); destroyed at close."""

    def _shut(self, detach: bool) -> int:
        """Device._shut, then ``SIOCIFDESTROY`` once close() closed the fd (tunclose leaves the interface)."""
        name = self._name
        fd = super()._shut(detach)
        if fd >= 0 and not detach:
            freebsd.destroy(name)
        return fd


def open_freebsd_device(name: str, kind: str, packet_info: bool, nonblocking: bool) -> FreeBsdDevice:
    """Open tun/tap *name* (``""``: a new one) as a Device (the arguments are checked already)."""
    if kind == "TAP" and packet_info:
        raise ValueError("a FreeBSD TAP carries bare Ethernet frames: there is no packet_info header")
    fd, real_name = freebsd.open_device(name, kind)
    lib = libc.get()
    assert lib is not None  # (open_device raised otherwise)
    try:
        return FreeBsdDevice(fd, real_name, lib, packet_info=packet_info, blocking=not nonblocking,
                             framing=FREEBSD, tap=kind == "TAP")
    except BaseException:
        lib.close(fd)
        freebsd.destroy(real_name)
        raise
