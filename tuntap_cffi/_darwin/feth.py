"""A TAP on macOS without a kext: a ``feth`` pair, read through BPF, written through NDRV.

:func:`open_pair` builds it and :func:`destroy_pair` takes it down; the
Device over it is ``tuntap_cffi._feth_device``.  Every call goes through
:mod:`.libc` (a simulated XNU kernel in the tests).

Facts that shape this module (XNU xnu-11417.101.15):

- Two interfaces.  ``SIOCIFCREATE`` with ``ifr_name`` ``"feth"`` makes the
  first free unit and writes its name back (``if_clone_create``: no digits
  is the wildcard); ``"fethN"`` asks for unit N: EEXIST if it exists, ENXIO
  above ``IF_MAXUNIT`` 0x7fff, ENOSPC when no unit is free; root only
  (``ifioctl_ifclone``'s ``proc_suser``).  The user end is the one asked
  for (``dev.name``: addresses, routes, MTU, hwaddr go on it); the I/O end
  is always the kernel's pick.
- Peering: ``SIOCSDRVSPEC`` on one end, ``ifd_cmd``
  ``IF_FAKE_S_CMD_SET_PEER``, ``ifd_data`` a ``struct if_fake_request``
  naming the other (``feth_set_drvspec`` -> ``feth_config``; EBUSY if
  either has a peer already).  What one end sends, the other receives
  (``feth_output_common`` hands the mbuf to the peer's input).
- Reads: a ``/dev/bpfN`` attached to the I/O end.  ``feth_output_common``
  taps the frame into the peer's BPF (``fake_bpf_tap_in``) before the
  peer's Ethernet demux, so every frame the user end sends is seen,
  whatever its destination MAC: no BIOCPROMISC.  BIOCSSEESENT 0 hides our
  own writes (they are the I/O end's output), BIOCIMMEDIATE 1 makes a
  read return as soon as one frame is there (``bpf_read``), BIOCSHDRCMPLT 1
  keeps the source MAC a write gives.  BIOCSBLEN must come before
  BIOCSETIF (EINVAL after) and the kernel may cap it: the value it writes
  back is the buffer's size, and every ``read`` must ask for exactly that
  (``bpf_read``: EINVAL otherwise).  ``bpfopen`` answers EBUSY for a unit
  in use: try the next; a unit that does not exist is ENOENT.
- Writes: an ``AF_NDRV`` ``SOCK_RAW`` socket bound (``ndrv_bind``: the
  ``sockaddr_ndrv`` names the interface, EADDRNOTAVAIL for none) and
  connected to the I/O end; each send is one Ethernet frame out of it
  (``ndrv_output`` -> ``ifnet_output_raw``), which the user end receives.
  Creating one needs root (``ndrv_attach``: EPERM without SS_PRIV).
- MTU: a feth takes at most ``feth_max_mtu`` (2048 unless ``sysctl
  net.link.fake.max_mtu`` raises it; ``feth_ioctl`` SIOCSIFMTU: EINVAL
  above).  Only the user end's is set: nothing on the I/O end's path
  (``ndrv_output``, ``feth_output``, BPF) checks its own MTU.
- Tear-down: ``SIOCIFDESTROY`` of each end (``if_clone_destroy``); every
  step of :func:`open_pair` undoes the ones before it if it fails.
"""

from __future__ import annotations

import errno as _errno
from typing import List, NamedTuple, Optional

from .._bsd import Numbers, netconfig
from ..errors import DeviceBusyError, DevicesExhaustedError, TunTapPermissionError, error_from_errno
from . import backend, cdefs, errnos, libc

__all__ = ["FethPair", "feth_name", "open_pair", "destroy_pair", "BPF_BUFFER", "BPF_MAX_UNITS", "ETHER_HDR_LEN"]

PREFIX = "feth"
MAX_UNIT = 0x7FFF  # IF_MAXUNIT (net/if_private.h): feth_cloner's ifc_maxunit
BPF_BUFFER = 131072  # asked with BIOCSBLEN: room for many frames per read; the kernel may cap it
BPF_MAX_UNITS = 256  # bpf_maxdevices: /dev/bpf0 .. bpf255
ETHER_HDR_LEN = 14  # net/ethernet.h: a frame shorter than its header is no frame

_ROOT = "a feth TAP needs root (creating interfaces, NDRV sockets and BPF are privileged): run as root (sudo)"


class FethPair(NamedTuple):
    """The pieces of one TAP: the two interfaces and the fds that carry its frames."""

    user: str  #: what the user configures (the Device's name)
    io: str  #: the peer whose BPF reads and NDRV socket writes carry the frames
    ctl: int  #: the AF_INET socket the interface ioctls (and the destroys) go on
    bpf: int  #: /dev/bpfN on the I/O end (O_NONBLOCK, close-on-exec)
    ndrv: int  #: the NDRV socket of the I/O end (O_NONBLOCK, close-on-exec)
    bufsize: int  #: BPF's buffer length: every read asks for exactly this


def feth_name(name: str) -> str:
    """What SIOCIFCREATE is asked for: ``"feth"`` (any free unit) for ``""``, *name* for ``fethN``."""
    if not isinstance(name, str):
        raise TypeError(f"a TAP name is a str, not {type(name).__name__}")
    if name == "":
        return PREFIX
    digits = name[len(PREFIX):]
    # if_clone_lookup reads the digits as the unit; feth%d gives them back without a leading zero.
    if not name.startswith(PREFIX) or not digits.isdecimal() or not digits.isascii() \
            or (digits != "0" and digits.startswith("0")):
        raise ValueError(f"a macOS TAP device is a feth interface: name it fethN (N a number) or \"\" for a "
                         f"free one, not {name!r}")
    if int(digits) > MAX_UNIT:
        raise ValueError(f"{name!r}: feth units stop at feth{MAX_UNIT}")
    return name


def _error(lib: libc.Libc, what: str, name: Optional[str], err: Optional[int] = None) -> OSError:
    """The library's error for a failed step of building the pair (macOS's errno, mapped by name)."""
    host = errnos.host(lib.errno() if err is None else err)
    if host in (_errno.EPERM, _errno.EACCES):
        return TunTapPermissionError(host, f"{what}: {_ROOT}", name)
    return error_from_errno(host, "ioctl", name, what)


def _create(lib: libc.Libc, k: Numbers, ctl: int, asked: str) -> str:
    """SIOCIFCREATE *asked* (``feth``: the kernel's pick); the name made."""
    ifr = lib.ffi.new("struct ifreq *")
    lib.ffi.memmove(ifr.ifr_name, asked.encode("ascii"), len(asked))
    if lib.ioctl(ctl, k.ioctls["SIOCIFCREATE"], ifr) < 0:
        err = errnos.host(lib.errno())
        if err == _errno.EEXIST:
            raise DeviceBusyError(err, f"cannot create {asked}: it exists already: ask for another fethN, or \"\" "
                                       "for a free one", asked)
        if err == _errno.ENOSPC:
            raise DevicesExhaustedError(err, "cannot create a feth interface: every unit is taken: destroy some",
                                        None)
        raise _error(lib, f"cannot create feth interface {asked}", asked if asked != PREFIX else None)
    return str(lib.ffi.string(ifr.ifr_name).decode("ascii"))


def _destroy(lib: libc.Libc, k: Numbers, ctl: int, name: str) -> int:
    """SIOCIFDESTROY *name*; 0 or macOS's errno."""
    ifr = lib.ffi.new("struct ifreq *")
    lib.ffi.memmove(ifr.ifr_name, name.encode("ascii"), len(name))
    return 0 if lib.ioctl(ctl, k.ioctls["SIOCIFDESTROY"], ifr) >= 0 else lib.errno()


def _set_peer(lib: libc.Libc, k: Numbers, ctl: int, name: str, peer: str) -> None:
    """SIOCSDRVSPEC IF_FAKE_S_CMD_SET_PEER: *name* and *peer* become each other's wire."""
    ffi = lib.ffi
    req = ffi.new("struct if_fake_request *")
    ffi.memmove(req.iffr_u.iffru_peer_name, peer.encode("ascii"), len(peer))
    drv = ffi.new("struct ifdrv *")
    ffi.memmove(drv.ifd_name, name.encode("ascii"), len(name))
    drv.ifd_cmd = cdefs.IF_FAKE_S_CMD_SET_PEER
    drv.ifd_len = ffi.sizeof("struct if_fake_request")
    drv.ifd_data = req
    if lib.ioctl(ctl, k.ioctls["SIOCSDRVSPEC"], drv) < 0:
        raise _error(lib, f"cannot make {peer} the peer of {name}", name)


def _uint_ioctl(lib: libc.Libc, fd: int, request: int, value: int, what: str, name: str) -> int:
    """A BIOC* ioctl on a ``u_int``; what the kernel left in it."""
    arg = lib.ffi.new("unsigned int *", value)
    if lib.ioctl(fd, request, arg) < 0:
        raise _error(lib, what, name)
    return int(arg[0])


def _open_bpf(lib: libc.Libc, k: Numbers, io: str) -> List[int]:
    """The first free /dev/bpfN, set up to read *io*'s input: [fd, buffer length]."""
    fd = -1
    for unit in range(BPF_MAX_UNITS):
        fd = lib.open(f"/dev/bpf{unit}".encode(), cdefs.O_RDWR | cdefs.O_CLOEXEC)
        if fd >= 0:
            break
        err = errnos.host(lib.errno())
        if err == _errno.EBUSY:
            continue  # bpfopen: that unit is someone's
        if err == _errno.ENOENT:
            break  # no more units
        raise _error(lib, f"cannot open /dev/bpf{unit}", io)
    if fd < 0:
        raise DevicesExhaustedError(errnos.host(cdefs.EBUSY), "cannot open a BPF device for a TAP: every "
                                    "/dev/bpfN is in use: close some captures", io)
    try:
        size = _uint_ioctl(lib, fd, k.ioctls["BIOCSBLEN"], BPF_BUFFER, "cannot size the BPF buffer", io)
        ifr = lib.ffi.new("struct ifreq *")
        lib.ffi.memmove(ifr.ifr_name, io.encode("ascii"), len(io))
        if lib.ioctl(fd, k.ioctls["BIOCSETIF"], ifr) < 0:
            raise _error(lib, f"cannot attach BPF to {io}", io)
        _uint_ioctl(lib, fd, k.ioctls["BIOCIMMEDIATE"], 1, "cannot make BPF reads immediate", io)
        _uint_ioctl(lib, fd, k.ioctls["BIOCSSEESENT"], 0, "cannot hide our own frames from BPF", io)
        _uint_ioctl(lib, fd, k.ioctls["BIOCSHDRCMPLT"], 1, "cannot keep the source MAC of written frames", io)
        if not backend.nonblocking_cloexec(lib, fd):
            raise _error(lib, "cannot make the BPF device non-blocking", io)
        return [fd, size]
    except BaseException:
        lib.close(fd)
        raise


def _open_ndrv(lib: libc.Libc, io: str) -> int:
    """An NDRV socket bound and connected to *io*, non-blocking and close-on-exec."""
    ffi = lib.ffi
    fd = lib.socket(cdefs.AF_NDRV, cdefs.SOCK_RAW, 0)
    if fd < 0:
        raise _error(lib, "cannot open an NDRV socket", io)
    try:
        sa = ffi.new("struct sockaddr_ndrv *")
        sa.snd_len = ffi.sizeof(sa[0])
        sa.snd_family = cdefs.AF_NDRV
        ffi.memmove(sa.snd_name, io.encode("ascii"), len(io))
        addr = ffi.cast("struct sockaddr *", sa)
        if lib.bind(fd, addr, ffi.sizeof(sa[0])) < 0:
            raise _error(lib, f"cannot bind an NDRV socket to {io}", io)
        if lib.connect(fd, addr, ffi.sizeof(sa[0])) < 0:
            raise _error(lib, f"cannot connect an NDRV socket to {io}", io)
        if not backend.nonblocking_cloexec(lib, fd):
            raise _error(lib, "cannot make the NDRV socket non-blocking", io)
        return fd
    except BaseException:
        lib.close(fd)
        raise


def open_pair(lib: libc.Libc, k: Numbers, name: str) -> FethPair:
    """Build the TAP *name* (``""``: a free unit): both ends created, peered and up, BPF and NDRV open.

    On any failure what was made is undone (interfaces destroyed, fds
    closed) before the error propagates.
    """
    asked = feth_name(name)
    ctl = netconfig.control_socket(lib, k)
    made: List[str] = []
    fds: List[int] = []
    try:
        made.append(_create(lib, k, ctl, asked))
        made.append(_create(lib, k, ctl, PREFIX))
        user, io = made
        _set_peer(lib, k, ctl, io, user)
        for end in (user, io):
            netconfig.set_flags(lib, k, ctl, end, netconfig.get_flags(lib, k, ctl, end) | cdefs.IFF_UP)
        bpf, size = _open_bpf(lib, k, io)
        fds.append(bpf)
        fds.append(_open_ndrv(lib, io))
        return FethPair(user, io, ctl, bpf, fds[1], size)
    except BaseException:
        for fd in fds:
            lib.close(fd)
        for end in reversed(made):
            _destroy(lib, k, ctl, end)
        lib.close(ctl)
        raise


def destroy_pair(lib: libc.Libc, k: Numbers, pair: FethPair) -> Optional[OSError]:
    """Destroy both interfaces and close the control socket; the first failure, returned (close must go on)."""
    failure: Optional[OSError] = None
    for end in (pair.user, pair.io):
        err = _destroy(lib, k, pair.ctl, end)
        if err and failure is None:
            failure = _error(lib, f"cannot destroy {end}", end, err)
    lib.close(pair.ctl)
    return failure
