#!/usr/bin/env python3
"""Golden macOS layouts: compile a probe against XNU's own headers, write the numbers as JSON.

Usage::

    python tools/darwin_golden.py XNU_DIR --tag xnu-11417.101.15 --commit <sha> [--out FILE]

XNU_DIR is an extracted apple-oss-distributions/xnu tree (it needs ``bsd/``
and ``osfmk/``); this script downloads nothing and never copies a header
into the repository.  It writes a C probe that includes the real headers in
their user-space view (no ``KERNEL``), plus a few shim headers it generates
in a temp dir for what a Linux gcc lacks (the SDK's generated and
Availability headers, ``stdint.h``), compiles it for LP64 with
``gcc -nostdinc``, runs it and writes every size, offset, constant and
ioctl number to ``tests/darwin_golden.json``.
``tests/test_darwin_layout.py`` checks the cdef in
``tuntap_cffi/_darwin/cdefs.py`` against that file.

Facts that shape this script:

- x86-64 and arm64 macOS are both LP64 with the same alignment rules for
  these structs, so an x86-64 gcc on Linux gives the numbers of both; the
  probe asserts LP64 at compile time.
- The BSD ``_IOC`` macros live in ``bsd/sys/ioccom.h``: the probe evaluates
  XNU's own macros, the cdef module recomputes them; neither copies the other.
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

#: Every struct the macOS backend declares, with the fields whose offsets it relies on
#: (dotted paths go through a named union or struct member).
STRUCTS: Dict[str, List[str]] = {
    "struct ctl_info": ["ctl_id", "ctl_name"],
    "struct sockaddr_ctl": ["sc_len", "sc_family", "ss_sysaddr", "sc_id", "sc_unit", "sc_reserved"],
    **golden_probe.BSD_SOCKADDRS,
    "struct ifreq": ["ifr_name", "ifr_ifru", "ifr_ifru.ifru_addr", "ifr_ifru.ifru_flags", "ifr_ifru.ifru_mtu"],
    "struct ifaliasreq": ["ifra_name", "ifra_addr", "ifra_broadaddr", "ifra_mask"],
    "struct in6_addrlifetime": ["ia6t_expire", "ia6t_preferred", "ia6t_vltime", "ia6t_pltime"],
    "struct icmp6_ifstat": [],
    "struct in6_ifreq": ["ifr_name", "ifr_ifru", "ifr_ifru.ifru_addr"],
    "struct in6_aliasreq": ["ifra_name", "ifra_addr", "ifra_dstaddr", "ifra_prefixmask", "ifra_flags",
                            "ifra_lifetime", "ifra_lifetime.ia6t_vltime", "ifra_lifetime.ia6t_pltime"],
    "struct rt_metrics": ["rmx_locks", "rmx_mtu", "rmx_expire", "rmx_filler"],
    "struct rt_msghdr": ["rtm_msglen", "rtm_version", "rtm_type", "rtm_index", "rtm_flags", "rtm_addrs",
                         "rtm_pid", "rtm_seq", "rtm_errno", "rtm_use", "rtm_inits", "rtm_rmx"],
    "struct ifdrv": ["ifd_name", "ifd_cmd", "ifd_len", "ifd_data"],
    # Link events on the PF_ROUTE socket (RTM_IFINFO).
    "struct timeval32": ["tv_sec", "tv_usec"],
    "struct if_data": ["ifi_type", "ifi_mtu", "ifi_metric", "ifi_baudrate", "ifi_lastchange", "ifi_hwassist",
                       "ifi_reserved2"],
    "struct if_msghdr": ["ifm_msglen", "ifm_version", "ifm_type", "ifm_addrs", "ifm_flags", "ifm_index",
                         "ifm_data", "ifm_data.ifi_mtu"],
    # TAP without a kext: a feth pair, peered with SIOCSDRVSPEC, read through BPF, written through NDRV.
    "struct if_fake_media": ["iffm_current", "iffm_count", "iffm_list"],
    "struct if_fake_request": ["iffr_reserved", "iffr_u", "iffr_u.iffru_peer_name"],
    "struct bpf_hdr": ["bh_tstamp", "bh_caplen", "bh_datalen", "bh_hdrlen"],
    "struct sockaddr_ndrv": ["snd_len", "snd_family", "snd_name"],
    # Link configuration: addresses in NET_RT_IFLIST, the interface named in routing messages.
    "struct ifa_msghdr": ["ifam_msglen", "ifam_version", "ifam_type", "ifam_addrs", "ifam_flags", "ifam_index",
                          "ifam_metric"],
    "struct sockaddr_dl": ["sdl_len", "sdl_family", "sdl_index", "sdl_type", "sdl_nlen", "sdl_alen", "sdl_slen",
                           "sdl_data"],
}

#: Integer macros, by header name.
CONSTANTS: List[str] = [
    "AF_INET", "AF_INET6", "AF_SYSTEM", "PF_SYSTEM", "AF_ROUTE", "PF_ROUTE", "AF_NDRV", "AF_LINK",
    "SOCK_DGRAM", "SOCK_RAW", "SYSPROTO_CONTROL", "AF_SYS_CONTROL", "MAX_KCTL_NAME", "IFNAMSIZ",
    "UTUN_OPT_FLAGS", "UTUN_OPT_IFNAME", "IFF_UP", "IFF_POINTOPOINT", "IFF_RUNNING",
    "IN6_IFF_NODAD", "ND6_INFINITE_LIFETIME",
    "RTM_VERSION", "RTM_ADD", "RTM_DELETE", "RTM_GET", "RTM_IFINFO",
    "RTA_DST", "RTA_GATEWAY", "RTA_NETMASK", "RTA_IFP",
    "RTF_UP", "RTF_GATEWAY", "RTF_HOST", "RTF_STATIC", "RTF_IFSCOPE",
    "IOCPARM_MASK", "IOC_VOID", "IOC_OUT", "IOC_IN", "IOC_INOUT",
    "IF_FAKE_S_CMD_SET_PEER", "IF_FAKE_G_CMD_GET_PEER", "BPF_ALIGNMENT",
    # Link configuration (the BSD layer): flags, routing messages, the sysctl tables, fcntl.
    "IFF_BROADCAST", "IFF_LOOPBACK", "IFF_MULTICAST", "AF_UNSPEC", "RTM_NEWADDR", "RTM_DELADDR", "RTA_GENMASK", "RTA_IFA",
    "RTA_AUTHOR", "RTA_BRD", "RTAX_MAX", "RTF_DONE", "RTF_LLINFO", "RTF_WASCLONED", "RTF_LOCAL", "RTF_BROADCAST",
    "RTF_MULTICAST", "CTL_NET", "NET_RT_DUMP", "NET_RT_IFLIST", "F_SETFD", "FD_CLOEXEC",
    # TAP (a feth pair): /dev/bpfN's open flags, BPF's buffer bounds and link type, the MAC's sockaddr_dl type.
    "O_RDWR", "O_CLOEXEC", "BPF_MINBUFSIZE", "BPF_MAXBUFSIZE", "DLT_EN10MB", "IFT_ETHER", "ENOSPC",
    # errno values macOS's libc reports (sys/errno.h), mapped to the host's by name.
    "EPERM", "ENOENT", "ESRCH", "EIO", "ENXIO", "EBADF", "ENOMEM", "EACCES", "EBUSY", "EEXIST", "ENODEV", "EINVAL",
    "ENFILE", "EMFILE", "ENOTTY", "EAGAIN", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT",
    "EPROTONOSUPPORT", "ENOTSUP", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH",
    "ENOBUFS", "EISCONN", "ECONNREFUSED", "ENAMETOOLONG", "EHOSTUNREACH", "EOPNOTSUPP",
    # ... and the rest the packet path and the fd's life can meet: the backend's one errno table.
    "EINTR", "E2BIG", "EFAULT", "ENOSPC", "EPIPE", "ERANGE", "EINPROGRESS", "EALREADY", "ENOTSOCK",
    "ESOCKTNOSUPPORT", "EPFNOSUPPORT", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOTCONN", "ESHUTDOWN",
    "ETIMEDOUT", "ELOOP", "EHOSTDOWN", "EOVERFLOW",
    # open(2) of a tuntaposx node (/dev/tunN, /dev/tapN: the seed's legacy devices), and fcntl's flags.
    "O_RDONLY", "O_RDWR", "O_NONBLOCK", "O_EXCL", "O_CLOEXEC", "F_GETFL", "F_SETFL",
]

#: ioctl request macros, by header name.
IOCTLS: List[str] = [
    "CTLIOCGINFO", "SIOCSIFFLAGS", "SIOCGIFFLAGS", "SIOCSIFMTU", "SIOCGIFMTU", "SIOCAIFADDR", "SIOCDIFADDR",
    "SIOCAIFADDR_IN6", "SIOCDIFADDR_IN6", "SIOCIFCREATE", "SIOCIFCREATE2", "SIOCIFDESTROY", "SIOCSIFLLADDR",
    "SIOCSDRVSPEC", "BIOCGBLEN", "BIOCSBLEN", "BIOCPROMISC", "BIOCSETIF", "BIOCIMMEDIATE", "BIOCSHDRCMPLT",
    "BIOCSSEESENT",
]

#: The probe's includes, in the order a macOS program would write them.
INCLUDES = [
    "sys/types.h", "sys/ioccom.h", "sys/socket.h", "sys/sockio.h", "sys/kern_control.h", "sys/sys_domain.h",
    "net/if.h", "net/if_utun.h", "net/route.h", "netinet/in.h", "netinet6/in6_var.h", "netinet6/nd6.h",
    "net/bpf.h", "net/ndrv.h", "net/if_fake_var.h", "net/if_dl.h", "sys/sysctl.h", "sys/fcntl.h", "sys/errno.h",
    "net/if_types.h",
]

#: What a Linux gcc with -nostdinc lacks: stand-ins for the SDK's compiler and generated headers.
_EMPTY = [
    "sys/_symbol_aliasing.h", "sys/_posix_availability.h", "time.h",  # generated by the SDK's build
] + [f"sys/_pthread/_pthread_{t}.h" for t in (  # libpthread's, not XNU's; no struct here uses them
    "types", "cond_t", "condattr_t", "key_t", "mutex_t", "mutexattr_t", "once_t", "rwlock_t",
    "rwlockattr_t", "t")]
_AVAILABILITY = ["__API_AVAILABLE", "__API_UNAVAILABLE", "__API_DEPRECATED", "__API_DEPRECATED_WITH_REPLACEMENT",
                 "__OSX_AVAILABLE", "__IOS_AVAILABLE", "__TVOS_AVAILABLE", "__WATCHOS_AVAILABLE",
                 "__OSX_AVAILABLE_STARTING", "__OSX_AVAILABLE_BUT_DEPRECATED",
                 "__OSX_AVAILABLE_BUT_DEPRECATED_MSG"]
SHIMS: Dict[str, str] = {
    **{name: "" for name in _EMPTY},
    # sys/signal.h (through net/bpf.h) names it only behind a pointer: an incomplete type will do.
    "sys/_pthread/_pthread_attr_t.h": "#pragma once\ntypedef struct _opaque_pthread_attr_t pthread_attr_t;\n",
    # gcc's own limits.h asks for the C library's: XNU's machine one has every limit used here.
    "limits.h": "#pragma once\n#include <machine/limits.h>\n",
    # Availability annotations change no layout: each macro expands to nothing.
    "Availability.h": "#pragma once\n" + "".join(f"#define {m}(...)\n" for m in _AVAILABILITY)
    + "".join(f"#define __{os}_PROHIBITED\n" for os in ("IOS", "TVOS", "WATCHOS")),
    # The fixed-width types from XNU's own typedef headers, plus the unsigned ones libc adds.
    "stdint.h": "#pragma once\n"
    + "".join(f"#include <sys/_types/_int{n}_t.h>\n" for n in (8, 16, 32, 64))
    + "typedef unsigned char uint8_t;\ntypedef unsigned short uint16_t;\n"
    + "typedef unsigned int uint32_t;\ntypedef unsigned long long uint64_t;\n",
}


def probe_source() -> str:
    """The C probe: one printf per number, ``kind<TAB>key<TAB>value``."""
    return golden_probe.probe_source(["#include <stddef.h>"], INCLUDES, STRUCTS, CONSTANTS, IOCTLS)


def compile_and_run(xnu: pathlib.Path, work: pathlib.Path) -> List[Tuple[str, str, int]]:
    """Write shims and probe under *work*, build against *xnu*'s headers, return the probe's rows."""
    shim = work / "shim"
    for name, text in SHIMS.items():
        path = shim / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    flags = ["-D__APPLE__", "-D__MACH__", "-I", str(shim), "-I", str(xnu / "bsd"), "-I", str(xnu / "osfmk"),
             "-I", str(xnu / "libkern")]
    return golden_probe.build_and_run(probe_source(), flags, work)


def golden(rows: List[Tuple[str, str, int]], tag: str, commit: str) -> Dict[str, object]:
    """The JSON document: provenance, then each kind of number by key."""
    return golden_probe.document(rows, {
        "xnu": {"repository": "https://github.com/apple-oss-distributions/xnu", "tag": tag, "commit": commit},
        "abi": "LP64 (x86-64 and arm64 macOS)",
        "generator": "tools/darwin_golden.py",
    })


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xnu", type=pathlib.Path, help="an extracted XNU source tree")
    parser.add_argument("--tag", required=True, help="the XNU tag the tree is")
    parser.add_argument("--commit", required=True, help="the XNU commit the tree is")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent / "tests/darwin_golden.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="darwin-golden-") as tmp:
        rows = compile_and_run(args.xnu.resolve(), pathlib.Path(tmp))
    args.out.write_text(json.dumps(golden(rows, args.tag, args.commit), indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(rows)} numbers to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
