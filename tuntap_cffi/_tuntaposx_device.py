"""The Device of a tuntaposx ``/dev/tunN`` or ``/dev/tapN`` (macOS, the seed's legacy path): the utun Device unframed.

Facts that shape this module (see ``tuntap_cffi._darwin.tuntaposx`` for
the kext's rules):

- The kext's fd carries bare IP packets (tun) or Ethernet frames (tap),
  one per read and write, no header: that is the utun Device's own plain
  path (the one ``packet_info=True`` takes: one ``read``, one ``write``),
  so :class:`TuntaposxDevice` is a :class:`~tuntap_cffi._utun_device.UtunDevice`
  with the AF framing off (``_af_framing``) and ``IFF_NO_PI`` in its flags
  (``packet_info`` is False: nothing precedes a packet).  Everything else
  (the macOS libc boundary, close from another thread, poll, asyncio, loop
  batches, the fd's life) is the utun Device's.
- A full read is judged as Linux's TUN/TAP without ``tun_pi`` judges it
  (:meth:`Device._check_full_read`): by the IP header of a tun packet, by the
  MTU for a tap frame.
- EIO on a read or write means the interface is not up yet (the kext's
  ``cdev_read``/``cdev_write``): :class:`DeviceNotReadyError` saying to give
  it an address and bring it up, the seed's ErrNotReady.
"""

from __future__ import annotations

import errno as _errno

from ._darwin import libc, tuntaposx
from ._utun_device import UtunDevice
from ._syscalls import lib as _host_lib
from .device import Device
from .errors import DeviceNotReadyError

__all__ = ["TuntaposxDevice", "open_tuntaposx_device"]

_KIND_FLAG = {"TUN": _host_lib.IFF_TUN, "TAP": _host_lib.IFF_TAP}  # (Device's flags: values only, no call)


class TuntaposxDevice(UtunDevice):
    """A tuntaposx device: bare IP packets (``tunN``) or Ethernet frames (``tapN``), read and written as they are.

    Until the interface has an address and is up, reads and writes raise
    :class:`~tuntap_cffi.DeviceNotReadyError` (the kext answers EIO).
    """

    _af_framing = False
    _check_full_read = Device._check_full_read

    def _io_error(self, err: int, op: str) -> OSError:
        if err == _errno.EIO:
            return DeviceNotReadyError(err, f"{op} on {self._name}: {tuntaposx.NOT_READY.format(name=self._name)}",
                                       self._name)
        return super()._io_error(err, op)

    def _write_error(self, err: int, what: str) -> OSError:
        """A refused batch write: EIO is the kext's "not ready" here too."""
        return self._io_error(err, "write") if err == _errno.EIO else super()._write_error(err, what)


def open_tuntaposx_device(kind: str, name: str, nonblocking: bool) -> TuntaposxDevice:
    """Open the tuntaposx device *name* (``tunN``/``tapN``, or ``tun%d``/``tap%d``) of *kind* ("TUN"/"TAP")."""
    fd, real_name = tuntaposx.open_node(kind, name)
    lib = libc.get()
    assert lib is not None  # (open_node raised otherwise)
    try:
        return TuntaposxDevice(fd, real_name, lib, packet_info=False, blocking=not nonblocking,
                               kind_flag=_KIND_FLAG[kind])
    except BaseException:
        lib.close(fd)
        raise
