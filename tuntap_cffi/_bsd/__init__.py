"""The BSD network layer macOS and FreeBSD share: ioctl encoding, sockaddrs, routing messages, link configuration.

A platform brings its numbers (:class:`Numbers`: constants, ioctl requests
computed from its own struct sizes, errno values, the routing-message
alignment) and a libc boundary whose FFI declares its structs
(:class:`BsdLibc`: ``ifreq``, ``ifaliasreq``, ``in6_aliasreq``,
``in6_ifreq``, ``rt_msghdr``, ``if_msghdr``, ``ifa_msghdr``); the code
here is the same for both.  macOS's numbers and structs are in
``.._darwin.cdefs`` (checked against XNU's headers); FreeBSD adds its own.

Like ``_darwin``, this package imports on any OS: no cffi, no libc at
import (the FFI comes with the libc object the platform passes in).

Facts that shape this package:

- The BSDs configure links with ioctls on an ``AF_INET`` datagram socket
  (``ifioctl``), IPv6 addresses with ioctls on an ``AF_INET6`` one
  (``in6_control``), routes with messages on a ``PF_ROUTE`` socket and
  listings with ``sysctl(CTL_NET, PF_ROUTE, ...)``: no rtnetlink.
- What differs between the two is data: struct sizes and so the ioctl
  numbers (FreeBSD's SIOCAIFADDR is ``('i', 43)``, macOS's ``('i', 26)``),
  family numbers (AF_INET6 30 vs 28), the routing-message alignment
  (XNU's ``ROUNDUP32`` is 4 bytes, FreeBSD's ``SA_SIZE`` ``sizeof(long)``)
  and which interfaces are point-to-point by nature.  The layer names
  struct members as both declare them (``ifr_ifru.ifru_flags``,
  ``rtm_seq``, ``ifam_index`` ...); a platform whose header spells one
  otherwise declares it under this name (FreeBSD's ``ifru_flags[2]``: a
  ``short ifru_flags`` and a ``short ifru_flagshigh`` in a struct member).
- errno numbers differ from Linux's (EAGAIN 35, EDESTADDRREQ 39,
  EADDRNOTAVAIL 49 on both BSDs): a platform's numbers are mapped to the
  host's by name (:func:`host_errno`, one function over the platform's
  one table, e.g. ``.._darwin.cdefs.ERRNO``) before ``errors.py``'s table,
  which is written in the host's numbers.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Protocol, Tuple

__all__ = ["Numbers", "BsdLibc", "host_errno"]


@dataclass(frozen=True)
class Numbers:
    """One platform's numbers, by their header names."""

    platform: str  #: the name messages use ("macOS")
    constants: Mapping[str, int]  #: AF_*, IFF_*, RTM_*, RTA_*, RTF_*, CTL_NET, NET_RT_*, IN6_IFF_NODAD, ...
    ioctls: Mapping[str, int]  #: SIOC* requests, computed from the platform's struct sizes
    errnos: Mapping[str, int]  #: the platform's errno values (EAGAIN 35 ...)
    sa_align: int  #: sockaddr alignment in routing messages: 4 (XNU ROUNDUP32), sizeof(long) on FreeBSD
    #: Interface names that are point-to-point whatever their flags say (utun: IFF_POINTOPOINT is
    #: set at attach and is in IFF_CANTCHANGE), so no ioctl is needed to know it.
    pointopoint_prefixes: Tuple[str, ...] = ()

    def host_errno(self, err: int) -> int:
        """The host's number for the platform's errno *err* (the same name); *err* if it has none."""
        return host_errno(self.errnos, err)


# Each platform table's numbers mapped to the host's, made once: (the table, platform number -> host number).
_host_tables: Dict[int, Tuple[Mapping[str, int], Dict[int, int]]] = {}


def host_errno(errnos: Mapping[str, int], err: int) -> int:
    """The host's number for *err*, a number of the platform whose errno table (by name) is *errnos*.

    The one mapping of a platform's errno numbers: the backend's packet path
    and its configuration both go through it.  A number the table lacks, or
    whose name the host has not, comes back unchanged.  Of two names for one
    number (EAGAIN, EWOULDBLOCK) the table's first decides.
    """
    entry = _host_tables.get(id(errnos))
    if entry is None or entry[0] is not errnos:
        table: Dict[int, int] = {}
        for name, value in errnos.items():
            if hasattr(_errno, name):
                table.setdefault(value, int(getattr(_errno, name)))
        entry = _host_tables[id(errnos)] = (errnos, table)
    return entry[1].get(err, err)


class BsdLibc(Protocol):
    """The C functions the layer calls: C's signatures, -1 (0 for if_nametoindex) and :meth:`errno` on failure."""

    @property
    def ffi(self) -> Any:
        """The FFI that declared the platform's structs."""

    def socket(self, domain: int, type: int, protocol: int) -> int: ...
    def ioctl(self, fd: int, request: int, arg: Any) -> int: ...
    def fcntl(self, fd: int, cmd: int, arg: Any) -> int: ...
    def setsockopt(self, fd: int, level: int, name: int, value: Any, length: int) -> int: ...
    def close(self, fd: int) -> int: ...
    def read(self, fd: int, buf: Any, count: int) -> int: ...
    def write(self, fd: int, buf: Any, count: int) -> int: ...
    def sysctl(self, name: Any, namelen: int, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int: ...
    def if_nametoindex(self, name: bytes) -> int: ...
    def errno(self) -> int:
        """The errno of the last failed call on this thread (the platform's number)."""
