"""The FreeBSD C layer as data: declarations, constants and ioctl numbers (no cffi import here).

This package must import on any OS without reaching cffi or libc, so this
module holds the cdef *text*; :func:`declare` puts it into an ``FFI()`` the
caller owns (``.libc`` on FreeBSD, ``tests/test_freebsd_layout.py`` and the
simulated kernel on Linux) and :func:`ioctl_numbers` computes the requests
from that FFI's sizes with the BSD ``_IOC`` (``.._bsd.ioc``).  Every size,
offset, constant and request is checked against FreeBSD 14's own headers:
``tools/freebsd_golden.py`` compiles them into ``tests/freebsd_golden.json``.

Facts that shape this module (FreeBSD 14, amd64 and arm64: LP64):

- ``struct ifreq``'s ``ifru_flags`` is ``short[2]`` (low and high 16 bits
  of the flags); the BSD layer reads and writes ``ifr_ifru.ifru_flags`` as
  one short, so it is declared as an anonymous struct of ``ifru_flags`` and
  ``ifru_flagshigh`` at the same offsets (16 and 18).
- ``SIOCAIFADDR`` is ``_IOW('i', 43, struct ifaliasreq)``: the 68-byte
  ``ifaliasreq`` with ``ifra_vhid`` (netinet/in_var.h's ``in_aliasreq`` has
  the same layout with ``sockaddr_in``s); 9.x's 64-byte one is
  ``OSIOCAIFADDR`` ('i', 26).  ``SIOCAIFADDR_IN6`` is ('i', 27) with the
  136-byte ``in6_aliasreq`` (``ifra_vhid`` again).
- Routing messages differ from XNU's: ``rt_msghdr`` has a spare short after
  ``rtm_index``, ``rtm_fmask``, a ``u_long rtm_inits`` and ``u_long``
  metrics (152 bytes); ``if_msghdr``/``ifa_msghdr`` have a spare short
  after the index.  Sockaddrs in them are aligned to ``sizeof(long)``
  (``SA_SIZE``, net/route.h).
- ``time_t`` and ``long`` are 8 bytes; ``sa_family_t`` is a u8.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Protocol

from .._bsd import ioc as _ioc, sockaddr as _sockaddr

__all__ = ["CDEF", "declare", "ioctl_numbers", "CONSTANTS", "LAYER_CONSTANTS", "ERRNO"]

CDEF = _sockaddr.CDEF + """
struct sockaddr_dl {
    unsigned char sdl_len; unsigned char sdl_family; unsigned short sdl_index; unsigned char sdl_type;
    unsigned char sdl_nlen; unsigned char sdl_alen; unsigned char sdl_slen; char sdl_data[46];
};
struct ifreq_buffer { size_t length; void *buffer; };
struct ifreq {
    char ifr_name[16];
    union {
        struct sockaddr ifru_addr; struct sockaddr ifru_dstaddr; struct sockaddr ifru_broadaddr;
        struct ifreq_buffer ifru_buffer;
        struct { short ifru_flags; short ifru_flagshigh; };   /* short ifru_flags[2] */
        short ifru_index; int ifru_jid; int ifru_metric; int ifru_mtu; int ifru_phys; int ifru_media;
        char *ifru_data; int ifru_cap[2]; unsigned int ifru_fib; unsigned char ifru_vlan_pcp;
    } ifr_ifru;
};
struct ifaliasreq {
    char ifra_name[16]; struct sockaddr ifra_addr; struct sockaddr ifra_broadaddr; struct sockaddr ifra_mask;
    int ifra_vhid;
};
struct in_aliasreq {
    char ifra_name[16]; struct sockaddr_in ifra_addr; struct sockaddr_in ifra_broadaddr;
    struct sockaddr_in ifra_mask; int ifra_vhid;
};
struct in6_addrlifetime { long ia6t_expire; long ia6t_preferred; uint32_t ia6t_vltime; uint32_t ia6t_pltime; };
/* Statistics: only their sizes matter (they size in6_ifreq's union). */
struct in6_ifstat { uint64_t ifs6_counters[20]; };
struct icmp6_ifstat { uint64_t ifs6_in[17]; uint64_t ifs6_out[17]; };
struct in6_ifreq {
    char ifr_name[16];
    union {
        struct sockaddr_in6 ifru_addr; struct sockaddr_in6 ifru_dstaddr; int ifru_flags; int ifru_flags6;
        int ifru_metric; char *ifru_data; struct in6_addrlifetime ifru_lifetime; struct in6_ifstat ifru_stat;
        struct icmp6_ifstat ifru_icmp6stat; uint32_t ifru_scope_id[16];
    } ifr_ifru;
};
struct in6_aliasreq {
    char ifra_name[16]; struct sockaddr_in6 ifra_addr; struct sockaddr_in6 ifra_dstaddr;
    struct sockaddr_in6 ifra_prefixmask; int ifra_flags; struct in6_addrlifetime ifra_lifetime; int ifra_vhid;
};
struct rt_metrics {
    unsigned long rmx_locks; unsigned long rmx_mtu; unsigned long rmx_hopcount; unsigned long rmx_expire;
    unsigned long rmx_recvpipe; unsigned long rmx_sendpipe; unsigned long rmx_ssthresh; unsigned long rmx_rtt;
    unsigned long rmx_rttvar; unsigned long rmx_pksent; unsigned long rmx_weight; unsigned long rmx_nhidx;
    unsigned long rmx_filler[2];
};
struct rt_msghdr {
    unsigned short rtm_msglen; unsigned char rtm_version; unsigned char rtm_type; unsigned short rtm_index;
    unsigned short _rtm_spare1; int rtm_flags; int rtm_addrs; int rtm_pid; int rtm_seq; int rtm_errno;
    int rtm_fmask; unsigned long rtm_inits; struct rt_metrics rtm_rmx;
};
struct timeval { long tv_sec; long tv_usec; };
struct if_data {
    uint8_t ifi_type; uint8_t ifi_physical; uint8_t ifi_addrlen; uint8_t ifi_hdrlen; uint8_t ifi_link_state;
    uint8_t ifi_vhid; uint16_t ifi_datalen; uint32_t ifi_mtu; uint32_t ifi_metric; uint64_t ifi_baudrate;
    uint64_t ifi_ipackets; uint64_t ifi_ierrors; uint64_t ifi_opackets; uint64_t ifi_oerrors;
    uint64_t ifi_collisions; uint64_t ifi_ibytes; uint64_t ifi_obytes; uint64_t ifi_imcasts; uint64_t ifi_omcasts;
    uint64_t ifi_iqdrops; uint64_t ifi_oqdrops; uint64_t ifi_noproto; uint64_t ifi_hwassist;
    union { long tt; uint64_t ph; } __ifi_epoch;
    union { struct timeval tv; struct { uint64_t ph1; uint64_t ph2; } ph; } __ifi_lastchange;
};
struct if_msghdr {
    unsigned short ifm_msglen; unsigned char ifm_version; unsigned char ifm_type; int ifm_addrs; int ifm_flags;
    unsigned short ifm_index; unsigned short _ifm_spare1; struct if_data ifm_data;
};
struct ifa_msghdr {
    unsigned short ifam_msglen; unsigned char ifam_version; unsigned char ifam_type; int ifam_addrs;
    int ifam_flags; unsigned short ifam_index; unsigned short _ifam_spare1; int ifam_metric;
};
struct tuninfo { int baudrate; unsigned short mtu; unsigned char type; unsigned char dummy; };
/* net/if.h: RTM_IFANNOUNCE (if_announce: an interface arrived or departed), a link event. */
struct if_announcemsghdr {
    unsigned short ifan_msglen; unsigned char ifan_version; unsigned char ifan_type; unsigned short ifan_index;
    char ifan_name[16]; unsigned short ifan_what;
};
"""


class CdefTarget(Protocol):
    """What :func:`declare` needs of a ``cffi.FFI``."""

    def cdef(self, csource: str, override: bool = ..., packed: bool = ..., pack: Any = ...) -> None: ...


def declare(ffi: CdefTarget) -> None:
    """Declare the FreeBSD structs in *ffi* (an ABI-mode ``cffi.FFI()``: nothing is loaded)."""
    ffi.cdef(CDEF)


# ------------------------------------------------------------ constants (each checked against the headers)

#: Every constant by its header name, for the golden comparison and the BSD layer (``Numbers.constants``).
CONSTANTS: Dict[str, int] = {
    # sys/socket.h
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_INET": 2, "AF_ROUTE": 17, "PF_ROUTE": 17, "AF_LINK": 18, "AF_INET6": 28,
    "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_CLOEXEC": 0x10000000, "SOCK_NONBLOCK": 0x20000000,
    # (a routing socket's buffer)
    "SOL_SOCKET": 0xFFFF, "SO_RCVBUF": 0x1002,
    "NET_RT_DUMP": 1, "NET_RT_IFLIST": 3,
    # net/if.h (IFF_CANTCHANGE: the bits SIOCSIFFLAGS cannot change)
    "IFNAMSIZ": 16, "IF_MAXUNIT": 0x7FFF, "IFF_UP": 0x1, "IFF_BROADCAST": 0x2, "IFF_LOOPBACK": 0x8,
    "IFF_POINTOPOINT": 0x10, "IFF_RUNNING": 0x40, "IFF_MULTICAST": 0x8000, "IFF_CANTCHANGE": 0x218F72,
    # net/if_types.h: a tap's interface type, a tun's
    "IFT_ETHER": 0x6, "IFT_PROPVIRTUAL": 0x35,
    # netinet6/in6_var.h; net/if_tun.h, net/if_tap.h
    "IN6_IFF_TENTATIVE": 0x02, "IN6_IFF_NODAD": 0x20, "TUNMTU": 1500, "TUNMRU": 65535, "TAPMRU": 65535,
    # net/route.h
    "RTM_VERSION": 5, "RTM_ADD": 0x1, "RTM_DELETE": 0x2, "RTM_GET": 0x4, "RTM_NEWADDR": 0xC, "RTM_DELADDR": 0xD,
    "RTM_IFINFO": 0xE, "RTM_IFANNOUNCE": 0x11,
    # net/if.h: RTM_IFANNOUNCE's ifan_what, if_data's ifi_link_state (link events)
    "IFAN_ARRIVAL": 0, "IFAN_DEPARTURE": 1, "LINK_STATE_UNKNOWN": 0, "LINK_STATE_DOWN": 1, "LINK_STATE_UP": 2,
    "RTA_DST": 0x1, "RTA_GATEWAY": 0x2, "RTA_NETMASK": 0x4, "RTA_GENMASK": 0x8, "RTA_IFP": 0x10, "RTA_IFA": 0x20,
    "RTA_AUTHOR": 0x40, "RTA_BRD": 0x80, "RTAX_MAX": 8,
    "RTF_UP": 0x1, "RTF_GATEWAY": 0x2, "RTF_HOST": 0x4, "RTF_DONE": 0x40, "RTF_LLINFO": 0x400, "RTF_STATIC": 0x800,
    "RTF_PINNED": 0x100000, "RTF_LOCAL": 0x200000, "RTF_BROADCAST": 0x400000, "RTF_MULTICAST": 0x800000,
    # sys/ioccom.h: BSD's encoding (.._bsd.ioc)
    "IOCPARM_MASK": _ioc.IOCPARM_MASK, "IOC_VOID": _ioc.IOC_VOID, "IOC_OUT": _ioc.IOC_OUT, "IOC_IN": _ioc.IOC_IN,
    "IOC_INOUT": _ioc.IOC_INOUT,
    # sys/fcntl.h (O_CLOEXEC differs from macOS's 0x1000000)
    "O_RDONLY": 0, "O_RDWR": 0x2, "O_NONBLOCK": 0x4, "O_EXCL": 0x800, "O_CLOEXEC": 0x100000,
    "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4, "FD_CLOEXEC": 1,
    # sys/errno.h: the numbers FreeBSD's libc reports, mapped to the host's by name
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7, "EBADF": 9, "ENOMEM": 12,
    "EACCES": 13, "EFAULT": 14, "EBUSY": 16, "EEXIST": 17, "ENODEV": 19, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24,
    "ENOTTY": 25, "ENOSPC": 28, "EPIPE": 32, "ERANGE": 34, "EAGAIN": 35, "EWOULDBLOCK": 35, "EINPROGRESS": 36,
    "EALREADY": 37, "ENOTSOCK": 38, "EDESTADDRREQ": 39, "EMSGSIZE": 40, "EPROTOTYPE": 41, "ENOPROTOOPT": 42,
    "EPROTONOSUPPORT": 43, "ESOCKTNOSUPPORT": 44, "EOPNOTSUPP": 45, "ENOTSUP": 45, "EPFNOSUPPORT": 46,
    "EAFNOSUPPORT": 47, "EADDRINUSE": 48, "EADDRNOTAVAIL": 49, "ENETDOWN": 50, "ENETUNREACH": 51, "ENETRESET": 52,
    "ECONNABORTED": 53, "ECONNRESET": 54, "ENOBUFS": 55, "EISCONN": 56, "ENOTCONN": 57, "ESHUTDOWN": 58,
    "ETIMEDOUT": 60, "ECONNREFUSED": 61, "ELOOP": 62, "ENAMETOOLONG": 63, "EHOSTDOWN": 64, "EHOSTUNREACH": 65,
    "EOVERFLOW": 84,
}

# The ones code here and in the backend and Device name.
AF_INET, AF_INET6, IFNAMSIZ, IF_MAXUNIT = (CONSTANTS[n] for n in ("AF_INET", "AF_INET6", "IFNAMSIZ", "IF_MAXUNIT"))
O_RDONLY, O_RDWR, O_NONBLOCK, O_CLOEXEC = (CONSTANTS[n] for n in ("O_RDONLY", "O_RDWR", "O_NONBLOCK", "O_CLOEXEC"))
F_GETFL, F_SETFL, F_SETFD, FD_CLOEXEC = (CONSTANTS[n] for n in ("F_GETFL", "F_SETFL", "F_SETFD", "FD_CLOEXEC"))
EINTR, EIO, EBADF, EINVAL, EAGAIN = (CONSTANTS[n] for n in ("EINTR", "EIO", "EBADF", "EINVAL", "EAGAIN"))
IOC_VOID, IOC_OUT, IOC_IN, IOC_INOUT = _ioc.IOC_VOID, _ioc.IOC_OUT, _ioc.IOC_IN, _ioc.IOC_INOUT

#: What the BSD layer also asks for, from headers the golden probe does not compile (sys/sysctl.h,
#: netinet6/nd6.h) or that FreeBSD lacks: not in the golden file.
LAYER_CONSTANTS: Dict[str, int] = {
    "CTL_NET": 4,  # sys/sysctl.h: the top-level "net" MIB
    "ND6_INFINITE_LIFETIME": 0xFFFFFFFF,  # netinet6/nd6.h
    "RTF_WASCLONED": 0,  # FreeBSD has no cloned routes since 8.0 (0x20000 is unused): filters nothing
    # sys/socket.h of FreeBSD 15 (main), not of the 14 headers the golden file is made from: with it
    # soroverflow reports a message dropped on a full socket as ENOBUFS; a 14 kernel refuses it (ENOPROTOOPT)
    "SO_RERROR": 0x20000,
}

#: FreeBSD's errno values by name (the E* constants above), for the BSD layer's host_errno.
ERRNO: Dict[str, int] = {name: value for name, value in CONSTANTS.items() if name.startswith("E")}

ioc = _ioc.ioc


def ioctl_numbers(sizeof: Callable[[str], int]) -> Dict[str, int]:
    """Every request the FreeBSD backend issues, sized by *sizeof* (a declared FFI's ``sizeof``)."""
    ifreq = sizeof("struct ifreq")
    integer = sizeof("int")
    tuninfo = sizeof("struct tuninfo")
    return {
        # net/if_tun.h (TAPGIFNAME is TUNGIFNAME: net/if_tap.h)
        "TUNSDEBUG": ioc(IOC_IN, "t", 90, integer),
        "TUNGDEBUG": ioc(IOC_OUT, "t", 89, integer),
        "TUNSIFINFO": ioc(IOC_IN, "t", 91, tuninfo),
        "TUNGIFINFO": ioc(IOC_OUT, "t", 92, tuninfo),
        "TUNSLMODE": ioc(IOC_IN, "t", 93, integer),
        "TUNGIFNAME": ioc(IOC_OUT, "t", 93, ifreq),  # the same nr as TUNSLMODE: direction and size tell them apart
        "TAPGIFNAME": ioc(IOC_OUT, "t", 93, ifreq),
        "TUNSIFMODE": ioc(IOC_IN, "t", 94, integer),  # IFF_POINTOPOINT or IFF_BROADCAST
        "TUNSIFPID": ioc(IOC_VOID, "t", 95, 0),
        "TUNSIFHEAD": ioc(IOC_IN, "t", 96, integer),  # 1: the 4-byte AF header on reads and writes
        "TUNGIFHEAD": ioc(IOC_OUT, "t", 97, integer),
        # sys/sockio.h
        "SIOCSIFFLAGS": ioc(IOC_IN, "i", 16, ifreq),
        "SIOCGIFFLAGS": ioc(IOC_INOUT, "i", 17, ifreq),
        "SIOCSIFMTU": ioc(IOC_IN, "i", 52, ifreq),
        "SIOCGIFMTU": ioc(IOC_INOUT, "i", 51, ifreq),
        "SIOCSIFNAME": ioc(IOC_IN, "i", 40, ifreq),  # ifr_data points at the new name
        "SIOCAIFADDR": ioc(IOC_IN, "i", 43, sizeof("struct ifaliasreq")),
        "OSIOCAIFADDR": ioc(IOC_IN, "i", 26, sizeof("struct ifaliasreq") - sizeof("int")),  # 9.x: no ifra_vhid
        "SIOCDIFADDR": ioc(IOC_IN, "i", 25, ifreq),
        "SIOCAIFADDR_IN6": ioc(IOC_IN, "i", 27, sizeof("struct in6_aliasreq")),  # netinet6/in6_var.h
        "OSIOCAIFADDR_IN6": ioc(IOC_IN, "i", 26, sizeof("struct in6_aliasreq") - 8),  # pre-10.x: no ifra_vhid
        "SIOCDIFADDR_IN6": ioc(IOC_IN, "i", 25, sizeof("struct in6_ifreq")),
        "SIOCSIFLLADDR": ioc(IOC_IN, "i", 60, ifreq),
        "SIOCGHWADDR": ioc(IOC_INOUT, "i", 62, ifreq),
        "SIOCIFCREATE": ioc(IOC_INOUT, "i", 122, ifreq),
        "SIOCIFCREATE2": ioc(IOC_INOUT, "i", 124, ifreq),
        "SIOCIFDESTROY": ioc(IOC_IN, "i", 121, ifreq),
    }
