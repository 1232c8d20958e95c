#!/usr/bin/env python3
"""Golden FreeBSD layouts: compile a probe against FreeBSD's own headers, write the numbers as JSON.

Usage::

    python tools/freebsd_golden.py HEADER_DIR [--out FILE]

HEADER_DIR holds FreeBSD kernel headers laid out as under ``sys/`` of the
source tree (``HEADER_DIR/net/if.h``, ``HEADER_DIR/sys/sockio.h`` ...): the
files of :data:`SOURCE` ``paths``.  This script downloads nothing and never
copies a header into the repository; it writes a C probe that includes them
(user-space view, no ``_KERNEL``) after one shim header it generates for the
base types a Linux gcc lacks (FreeBSD/amd64's ``u_char``, ``u_long``,
``time_t``, ``sa_family_t`` ...), compiles it for LP64 with ``gcc
-nostdinc``, runs it and writes every size, offset, constant and ioctl
number to ``tests/freebsd_golden.json``.  ``tests/test_freebsd_layout.py``
checks the cdef in ``tuntap_cffi/_freebsd/cdefs.py`` against that file.

How HEADER_DIR was filled for the committed JSON: the stored public index's
copies of ``freebsd/freebsd-src`` are of FreeBSD 5 to 9 (``if_tun.h``
without ``TUNGIFNAME``, ``sockio.h`` with the 9.x ``SIOCAIFADDR`` 26), so
the FreeBSD 14 kernel tree ``sobomax/freebsd14_vendor`` was read instead,
each file at the commit in :data:`SOURCE` (the index keeps one version per
file).  Each header was written into HEADER_DIR as the declarations the
probe needs, copied verbatim (licence blocks, kernel-only sections and
unrelated declarations left out, ``#include`` lines dropped: the probe's
include order and the shim stand in for them).  On a FreeBSD machine, or
with a full checkout, pass ``<src>/sys`` itself: the probe needs nothing
more than the real headers give.

Facts that shape this script:

- FreeBSD/amd64 and FreeBSD/arm64 are both LP64 (``long`` 8 bytes,
  ``time_t`` 8 bytes), so an x86-64 gcc on Linux gives the numbers of both;
  the probe asserts LP64 at compile time.
- The BSD ``_IOC`` macros live in ``sys/ioccom.h``: the probe evaluates
  FreeBSD's own macros, the cdef module recomputes them with ``.._bsd.ioc``.
- ``struct ifreq``'s ``ifru_flags`` is ``short[2]`` in FreeBSD (low and
  high 16 bits); the probe reports the offsets of both shorts.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from typing import Dict, List, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import golden_probe  # noqa: E402  (tools/ is no package: the shared probe sits beside this script)

#: Where the headers came from (see the module docstring): repository, and the commit of each path.
SOURCE: Dict[str, object] = {
    "repository": "https://github.com/sobomax/freebsd14_vendor",
    "release": "FreeBSD 14 (stable/14 kernel tree)",
    "paths": {
        "sys/sys/ioccom.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/sys/sockio.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/sys/socket.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/sys/errno.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/sys/fcntl.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/net/if.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/net/if_tun.h": "5836bb2ab050b3b1109e468053ccc2b84d946505",
        "sys/net/if_tap.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/net/if_dl.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/net/if_types.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/net/route.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/netinet/in.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/netinet/in_var.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/netinet6/in6.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
        "sys/netinet6/in6_var.h": "0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8",
    },
}

#: Every struct the FreeBSD backend declares, with the fields whose offsets it relies on
#: (dotted paths go through a named union or struct member; ``[1]`` indexes an array).
STRUCTS: Dict[str, List[str]] = {
    **golden_probe.BSD_SOCKADDRS,
    "struct sockaddr_dl": ["sdl_len", "sdl_family", "sdl_index", "sdl_type", "sdl_nlen", "sdl_alen", "sdl_slen",
                           "sdl_data"],
    "struct ifreq_buffer": ["length", "buffer"],
    "struct ifreq": ["ifr_name", "ifr_ifru", "ifr_ifru.ifru_addr", "ifr_ifru.ifru_flags",
                     "ifr_ifru.ifru_flags[1]", "ifr_ifru.ifru_mtu", "ifr_ifru.ifru_data"],
    "struct ifaliasreq": ["ifra_name", "ifra_addr", "ifra_broadaddr", "ifra_mask", "ifra_vhid"],
    "struct in_aliasreq": ["ifra_name", "ifra_addr", "ifra_broadaddr", "ifra_mask", "ifra_vhid"],
    "struct in6_addrlifetime": ["ia6t_expire", "ia6t_preferred", "ia6t_vltime", "ia6t_pltime"],
    "struct in6_ifstat": [],
    "struct icmp6_ifstat": [],
    "struct in6_ifreq": ["ifr_name", "ifr_ifru", "ifr_ifru.ifru_addr"],
    "struct in6_aliasreq": ["ifra_name", "ifra_addr", "ifra_dstaddr", "ifra_prefixmask", "ifra_flags",
                            "ifra_lifetime", "ifra_lifetime.ia6t_vltime", "ifra_lifetime.ia6t_pltime",
                            "ifra_vhid"],
    "struct rt_metrics": ["rmx_locks", "rmx_mtu", "rmx_expire", "rmx_weight", "rmx_filler"],
    "struct rt_msghdr": ["rtm_msglen", "rtm_version", "rtm_type", "rtm_index", "rtm_flags", "rtm_addrs",
                         "rtm_pid", "rtm_seq", "rtm_errno", "rtm_fmask", "rtm_inits", "rtm_rmx"],
    "struct timeval": ["tv_sec", "tv_usec"],
    "struct if_data": ["ifi_type", "ifi_link_state", "ifi_datalen", "ifi_mtu", "ifi_metric", "ifi_baudrate",
                       "ifi_hwassist", "__ifi_epoch", "__ifi_lastchange"],
    "struct if_msghdr": ["ifm_msglen", "ifm_version", "ifm_type", "ifm_addrs", "ifm_flags", "ifm_index",
                         "ifm_data", "ifm_data.ifi_mtu"],
    "struct ifa_msghdr": ["ifam_msglen", "ifam_version", "ifam_type", "ifam_addrs", "ifam_flags", "ifam_index",
                          "ifam_metric"],
    "struct tuninfo": ["baudrate", "mtu", "type", "dummy"],
    # Link events on the PF_ROUTE socket: an interface's departure.
    "struct if_announcemsghdr": ["ifan_msglen", "ifan_version", "ifan_type", "ifan_index", "ifan_name",
                                 "ifan_what"],
}

#: Integer macros, by header name.
CONSTANTS: List[str] = [
    "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_INET6", "AF_ROUTE", "PF_ROUTE", "AF_LINK", "SOCK_DGRAM", "SOCK_RAW",
    "SOCK_CLOEXEC", "SOCK_NONBLOCK", "SOL_SOCKET", "SO_RCVBUF", "IFNAMSIZ", "IF_MAXUNIT",
    "IFF_UP", "IFF_BROADCAST", "IFF_LOOPBACK", "IFF_POINTOPOINT", "IFF_RUNNING", "IFF_MULTICAST",
    "IFF_CANTCHANGE", "IFT_ETHER", "IFT_PROPVIRTUAL", "IN6_IFF_TENTATIVE", "IN6_IFF_NODAD", "TUNMTU", "TUNMRU", "TAPMRU",
    "RTM_VERSION", "RTM_ADD", "RTM_DELETE", "RTM_GET", "RTM_NEWADDR", "RTM_DELADDR", "RTM_IFINFO",
    "RTM_IFANNOUNCE", "IFAN_ARRIVAL", "IFAN_DEPARTURE", "LINK_STATE_UNKNOWN", "LINK_STATE_DOWN", "LINK_STATE_UP",
    "RTA_DST", "RTA_GATEWAY", "RTA_NETMASK", "RTA_GENMASK", "RTA_IFP", "RTA_IFA", "RTA_AUTHOR",
    "RTA_BRD", "RTAX_MAX", "RTF_UP", "RTF_GATEWAY", "RTF_HOST", "RTF_DONE", "RTF_LLINFO", "RTF_STATIC",
    "RTF_PINNED", "RTF_LOCAL", "RTF_BROADCAST", "RTF_MULTICAST", "NET_RT_DUMP", "NET_RT_IFLIST",
    "IOCPARM_MASK", "IOC_VOID", "IOC_OUT", "IOC_IN", "IOC_INOUT",
    "O_RDONLY", "O_RDWR", "O_NONBLOCK", "O_EXCL", "O_CLOEXEC", "F_GETFD", "F_SETFD", "F_GETFL", "F_SETFL",
    "FD_CLOEXEC",
    # errno values FreeBSD's libc reports (sys/errno.h), mapped to the host's by name.
    "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "EBADF", "ENOMEM", "EACCES", "EFAULT", "EBUSY",
    "EEXIST", "ENODEV", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ENOSPC", "EPIPE", "ERANGE", "EAGAIN",
    "EWOULDBLOCK", "EINPROGRESS", "EALREADY", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE",
    "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "ENOTSUP", "EPFNOSUPPORT",
    "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED",
    "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETIMEDOUT", "ECONNREFUSED", "ELOOP",
    "ENAMETOOLONG", "EHOSTDOWN", "EHOSTUNREACH", "EOVERFLOW",
]

#: ioctl request macros, by header name.
IOCTLS: List[str] = [
    "TUNSDEBUG", "TUNGDEBUG", "TUNSIFINFO", "TUNGIFINFO", "TUNSLMODE", "TUNGIFNAME", "TUNSIFMODE", "TUNSIFPID",
    "TUNSIFHEAD", "TUNGIFHEAD", "TAPGIFNAME",
    "SIOCSIFFLAGS", "SIOCGIFFLAGS", "SIOCSIFMTU", "SIOCGIFMTU", "SIOCSIFNAME", "SIOCAIFADDR", "OSIOCAIFADDR",
    "SIOCDIFADDR", "SIOCAIFADDR_IN6", "OSIOCAIFADDR_IN6", "SIOCDIFADDR_IN6", "SIOCSIFLLADDR", "SIOCGHWADDR",
    "SIOCIFCREATE", "SIOCIFCREATE2", "SIOCIFDESTROY",
]

#: The probe's includes, in an order that needs no header to include another.
INCLUDES = [
    "sys/ioccom.h", "sys/socket.h", "sys/sockio.h", "net/if.h", "net/if_tun.h", "net/if_tap.h", "net/if_dl.h",
    "net/if_types.h", "net/route.h", "netinet/in.h", "netinet/in_var.h", "sys/errno.h", "sys/fcntl.h",
]

#: FreeBSD/amd64's base types (sys/_types.h, sys/types.h, x86/_types.h, sys/_timeval.h), which the
#: headers above take from headers the probe does not include.
SHIM_TYPES = """#pragma once
#include <stddef.h>
typedef unsigned char __uint8_t; typedef unsigned short __uint16_t; typedef unsigned int __uint32_t;
typedef unsigned long __uint64_t;
typedef __uint8_t uint8_t; typedef __uint16_t uint16_t; typedef __uint32_t uint32_t; typedef __uint64_t uint64_t;
typedef unsigned char u_char; typedef unsigned short u_short; typedef unsigned int u_int; typedef unsigned long u_long;
typedef __uint32_t u_int32_t; typedef __uint64_t u_quad_t;
typedef char *caddr_t; typedef long time_t; typedef long suseconds_t; typedef int pid_t;
typedef __uint8_t sa_family_t; typedef __uint32_t in_addr_t; typedef __uint16_t in_port_t;
struct timeval { time_t tv_sec; suseconds_t tv_usec; };
"""


def probe_source() -> str:
    """The C probe: one printf per number, ``kind<TAB>key<TAB>value``."""
    return golden_probe.probe_source(['#include "freebsd_types.h"'], INCLUDES, STRUCTS, CONSTANTS, IOCTLS)


def compile_and_run(headers: pathlib.Path, work: pathlib.Path) -> List[Tuple[str, str, int]]:
    """Write the shim and probe under *work*, build against *headers*, return the probe's rows."""
    (work / "freebsd_types.h").write_text(SHIM_TYPES)
    return golden_probe.build_and_run(probe_source(), ["-D__BSD_VISIBLE=1", "-I", str(work), "-I", str(headers)],
                                      work)


def golden(rows: List[Tuple[str, str, int]]) -> Dict[str, object]:
    """The JSON document: provenance, then each kind of number by key."""
    return golden_probe.document(rows, {
        "freebsd": SOURCE, "abi": "LP64 (amd64 and arm64 FreeBSD)", "generator": "tools/freebsd_golden.py",
    })


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("headers", type=pathlib.Path, help="FreeBSD headers laid out as under sys/ of the tree")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent / "tests/freebsd_golden.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="freebsd-golden-") as tmp:
        rows = compile_and_run(args.headers.resolve(), pathlib.Path(tmp))
    args.out.write_text(json.dumps(golden(rows), indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(rows)} numbers to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
