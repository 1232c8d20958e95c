"""The macOS C layer as data: declarations, constants and ioctl numbers (no cffi import here).

This package must import on any OS without reaching cffi or libc
(``tests/test_platform.py`` checks its imports), so this module holds the
cdef *text*; :func:`declare` puts it into an ``FFI()`` the caller owns (the
macOS backend, once it lands; ``tests/test_darwin_layout.py`` on Linux), and
:func:`ioctl_numbers` computes the requests from that FFI's sizes.
Every size, offset, constant and request is checked against XNU's own
headers: ``tools/darwin_golden.py`` compiles them into
``tests/darwin_golden.json``.

Facts that shape this module (XNU xnu-11417.101.15):

- BSD sockaddrs start with ``sa_len u8, sa_family u8`` (Linux: ``u16
  sa_family``), so none of the Linux declarations in ``build_ffi.py`` fit.
- An ioctl request is ``dir | (len & IOCPARM_MASK) << 16 | group << 8 | nr``
  with IOC_VOID/OUT/IN 0x2/0x4/0x8 << 28 (bsd/sys/ioccom.h): one encoding on
  every macOS CPU, unlike Linux's per-architecture one in ``_ioctl.py``.
- x86-64 and arm64 macOS are both LP64 with natural alignment; only
  ``struct ifdrv`` is declared under ``#pragma pack(4)`` (bsd/net/if.h), so
  its 8-byte members sit at 4-byte offsets: it goes in with ``pack=4``.
- ``time_t`` is ``long`` on LP64 macOS (``__darwin_time_t``).
- Both macOS CPUs are little-endian: network-order fields are byte-swapped
  here with ``int.from_bytes`` (``socket.htons`` would import a C module).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Protocol, Tuple

from .._bsd import ioc as _ioc, sockaddr as _sockaddr
from . import utun

__all__ = [
    "CDEF", "CDEF_PACK4", "declare", "ioc", "ioctl_numbers", "CONSTANTS", "ERRNO",
    "fill_sockaddr_in", "fill_sockaddr_in6", "read_sockaddr_in", "read_sockaddr_in6",
    "af_header_into", "af_of",
]

CDEF = """
struct ctl_info { uint32_t ctl_id; char ctl_name[96]; };
struct sockaddr_ctl {
    uint8_t sc_len; uint8_t sc_family; uint16_t ss_sysaddr;
    uint32_t sc_id; uint32_t sc_unit; uint32_t sc_reserved[5];
};
""" + _sockaddr.CDEF + """
struct ifreq {
    char ifr_name[16];
    union {
        struct sockaddr ifru_addr; struct sockaddr ifru_dstaddr; struct sockaddr ifru_broadaddr;
        short ifru_flags; int ifru_metric; int ifru_mtu; int ifru_phys; int ifru_media; int ifru_intval;
        char *ifru_data;
    } ifr_ifru;
};
struct ifaliasreq {
    char ifra_name[16]; struct sockaddr ifra_addr; struct sockaddr ifra_broadaddr; struct sockaddr ifra_mask;
};
struct in6_addrlifetime { long ia6t_expire; long ia6t_preferred; uint32_t ia6t_vltime; uint32_t ia6t_pltime; };
/* 17 input and 17 output ICMPv6 counters: only its size matters (it sizes in6_ifreq's union). */
struct icmp6_ifstat { uint64_t ifs6_in[17]; uint64_t ifs6_out[17]; };
struct in6_ifreq {
    char ifr_name[16];
    union {   /* in6_ifstat (200 bytes) is left out: smaller than icmp6_ifstat and unused */
        struct sockaddr_in6 ifru_addr; struct sockaddr_in6 ifru_dstaddr;
        int ifru_flags; int ifru_flags6; int ifru_metric; int ifru_intval; char *ifru_data;
        struct in6_addrlifetime ifru_lifetime; struct icmp6_ifstat ifru_icmp6stat; uint32_t ifru_scope_id[16];
    } ifr_ifru;
};
struct in6_aliasreq {
    char ifra_name[16]; struct sockaddr_in6 ifra_addr; struct sockaddr_in6 ifra_dstaddr;
    struct sockaddr_in6 ifra_prefixmask; int ifra_flags; struct in6_addrlifetime ifra_lifetime;
};
struct rt_metrics {
    uint32_t rmx_locks; uint32_t rmx_mtu; uint32_t rmx_hopcount; int32_t rmx_expire; uint32_t rmx_recvpipe;
    uint32_t rmx_sendpipe; uint32_t rmx_ssthresh; uint32_t rmx_rtt; uint32_t rmx_rttvar; uint32_t rmx_pksent;
    uint32_t rmx_filler[4];
};
struct rt_msghdr {
    unsigned short rtm_msglen; unsigned char rtm_version; unsigned char rtm_type; unsigned short rtm_index;
    int rtm_flags; int rtm_addrs; int rtm_pid; int rtm_seq; int rtm_errno; int rtm_use; uint32_t rtm_inits;
    struct rt_metrics rtm_rmx;
};
struct timeval32 { int32_t tv_sec; int32_t tv_usec; };   /* BPF_TIMEVAL and IF_DATA_TIMEVAL on LP64 */
struct if_data {
    unsigned char ifi_type; unsigned char ifi_typelen; unsigned char ifi_physical; unsigned char ifi_addrlen;
    unsigned char ifi_hdrlen; unsigned char ifi_recvquota; unsigned char ifi_xmitquota; unsigned char ifi_unused1;
    uint32_t ifi_mtu; uint32_t ifi_metric; uint32_t ifi_baudrate;
    uint32_t ifi_ipackets; uint32_t ifi_ierrors; uint32_t ifi_opackets; uint32_t ifi_oerrors;
    uint32_t ifi_collisions; uint32_t ifi_ibytes; uint32_t ifi_obytes; uint32_t ifi_imcasts; uint32_t ifi_omcasts;
    uint32_t ifi_iqdrops; uint32_t ifi_noproto; uint32_t ifi_recvtiming; uint32_t ifi_xmittiming;
    struct timeval32 ifi_lastchange;
    uint32_t ifi_unused2; uint32_t ifi_hwassist; uint32_t ifi_reserved1; uint32_t ifi_reserved2;
};
struct if_msghdr {
    unsigned short ifm_msglen; unsigned char ifm_version; unsigned char ifm_type; int ifm_addrs; int ifm_flags;
    unsigned short ifm_index; struct if_data ifm_data;
};
struct if_fake_media { int32_t iffm_current; uint32_t iffm_count; uint32_t iffm_reserved[3]; int32_t iffm_list[27]; };
struct if_fake_request {
    uint64_t iffr_reserved[4];
    union {
        char iffru_buf[128]; struct if_fake_media iffru_media; char iffru_peer_name[16];
        uint32_t iffru_dequeue_stall;
    } iffr_u;
};
/* Addresses in NET_RT_IFLIST (sysctl_iflist) and the route socket; the interface in RTA_IFP. */
struct ifa_msghdr {
    unsigned short ifam_msglen; unsigned char ifam_version; unsigned char ifam_type; int ifam_addrs; int ifam_flags;
    unsigned short ifam_index; int ifam_metric;
};
struct sockaddr_dl {
    unsigned char sdl_len; unsigned char sdl_family; unsigned short sdl_index; unsigned char sdl_type;
    unsigned char sdl_nlen; unsigned char sdl_alen; unsigned char sdl_slen; char sdl_data[12];
};
struct bpf_hdr { struct timeval32 bh_tstamp; uint32_t bh_caplen; uint32_t bh_datalen; unsigned short bh_hdrlen; };
struct sockaddr_ndrv { unsigned char snd_len; unsigned char snd_family; unsigned char snd_name[16]; };
"""

#: Declared under ``#pragma pack(4)`` in bsd/net/if.h.
CDEF_PACK4 = """
struct ifdrv { char ifd_name[16]; unsigned long ifd_cmd; size_t ifd_len; void *ifd_data; };
"""


class CdefTarget(Protocol):
    """What :func:`declare` needs of a ``cffi.FFI``."""

    def cdef(self, csource: str, override: bool = ..., packed: bool = ..., pack: Any = ...) -> None: ...


def declare(ffi: CdefTarget) -> None:
    """Declare the macOS structs in *ffi* (an ABI-mode ``cffi.FFI()``: nothing is loaded)."""
    ffi.cdef(CDEF)
    ffi.cdef(CDEF_PACK4, pack=4)


# ------------------------------------------------------------ constants
AF_INET = utun.AF_INET
AF_INET6 = utun.AF_INET6  # 30 on macOS
AF_SYSTEM = PF_SYSTEM = utun.PF_SYSTEM
AF_ROUTE = PF_ROUTE = 17
AF_NDRV = 27  # raw frames out of a feth (TAP)
AF_LINK = 18
SOCK_DGRAM = 2
SOCK_RAW = 3
SYSPROTO_CONTROL = utun.SYSPROTO_CONTROL
AF_SYS_CONTROL = utun.AF_SYS_CONTROL
MAX_KCTL_NAME = 96
IFNAMSIZ = 16
UTUN_OPT_FLAGS = 1
UTUN_OPT_IFNAME = utun.UTUN_OPT_IFNAME
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_POINTOPOINT = 0x10
IFF_RUNNING = 0x40
IFF_MULTICAST = 0x8000
AF_UNSPEC = 0
IN6_IFF_NODAD = 0x20  # no duplicate address detection on a point-to-point utun
ND6_INFINITE_LIFETIME = 0xFFFFFFFF
RTM_VERSION = 5
RTM_ADD = 0x1
RTM_DELETE = 0x2
RTM_GET = 0x4
RTM_NEWADDR = 0xC
RTM_DELADDR = 0xD  # (rt_newaddrmsg: an address removed; a link event)
RTM_IFINFO = 0xE
RTA_DST = 0x1
RTA_GATEWAY = 0x2
RTA_NETMASK = 0x4
RTA_GENMASK = 0x8
RTA_IFP = 0x10
RTA_IFA = 0x20
RTA_AUTHOR = 0x40
RTA_BRD = 0x80
RTAX_MAX = 8  # sockaddrs a message can carry, one per RTA_* bit
RTF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_HOST = 0x4
RTF_DONE = 0x40
RTF_LLINFO = 0x400
RTF_STATIC = 0x800
RTF_WASCLONED = 0x20000
RTF_LOCAL = 0x200000
RTF_BROADCAST = 0x400000
RTF_MULTICAST = 0x800000
RTF_IFSCOPE = 0x1000000
# bsd/sys/sysctl.h, bsd/sys/socket.h: sysctl {CTL_NET, PF_ROUTE, 0, af, NET_RT_*, arg}
CTL_NET = 4
NET_RT_DUMP = 1
NET_RT_IFLIST = 3
# bsd/sys/fcntl.h (O_NONBLOCK and O_CLOEXEC differ from Linux's)
F_SETFD = 2
FD_CLOEXEC = 1
F_GETFL = 3
F_SETFL = 4
O_RDONLY = 0
O_RDWR = 2
O_NONBLOCK = 0x4
O_EXCL = 0x800
O_CLOEXEC = 0x1000000
IF_FAKE_S_CMD_SET_PEER = 1  # bsd/net/if_fake_var.h: ifdrv.ifd_cmd of SIOCSDRVSPEC
IF_FAKE_G_CMD_GET_PEER = 1  # ... of SIOCGDRVSPEC
BPF_ALIGNMENT = 4  # bpf records start on 4-byte boundaries (BPF_WORDALIGN)
BPF_MINBUFSIZE = 32  # BIOCSBLEN raises a smaller size to this ...
BPF_MAXBUFSIZE = 0x80000  # ... and bpf_maxbufsize defaults to this
DLT_EN10MB = 1  # a feth's BPF link type: Ethernet frames
IFT_ETHER = 0x6  # net/if_types.h: a feth's sdl_type

# bsd/sys/ioccom.h: the encoding is BSD's, shared with FreeBSD (see .._bsd.ioc)
IOCPARM_MASK = _ioc.IOCPARM_MASK
IOC_VOID = _ioc.IOC_VOID
IOC_OUT = _ioc.IOC_OUT
IOC_IN = _ioc.IOC_IN
IOC_INOUT = _ioc.IOC_INOUT

# bsd/sys/errno.h: the numbers macOS's libc reports (many differ from Linux's), mapped to the host's by name.
EPERM = 1
ENOENT = 2
ESRCH = 3
EIO = 5
ENXIO = 6
EBADF = 9
ENOMEM = 12
EACCES = 13
EBUSY = 16
EEXIST = 17
ENODEV = 19
EINVAL = 22
ENFILE = 23
EMFILE = 24
ENOTTY = 25
ENOSPC = 28
EAGAIN = 35
EDESTADDRREQ = 39
EMSGSIZE = 40
EPROTOTYPE = 41
ENOPROTOOPT = 42
EPROTONOSUPPORT = 43
ENOTSUP = 45
EAFNOSUPPORT = 47
EADDRINUSE = 48
EADDRNOTAVAIL = 49
ENETDOWN = 50
ENETUNREACH = 51
ENOBUFS = 55
EISCONN = 56
ECONNREFUSED = 61
ENAMETOOLONG = 63
EHOSTUNREACH = 65
EOPNOTSUPP = 102
# ... and those the packet path and a device's life can meet (the one table: .._bsd.host_errno).
EINTR = 4
E2BIG = 7
EFAULT = 14
ENOSPC = 28
EPIPE = 32
ERANGE = 34
EINPROGRESS = 36
EALREADY = 37
ENOTSOCK = 38
ESOCKTNOSUPPORT = 44
EPFNOSUPPORT = 46
ENETRESET = 52
ECONNABORTED = 53
ECONNRESET = 54
ENOTCONN = 57
ESHUTDOWN = 58
ETIMEDOUT = 60
ELOOP = 62
EHOSTDOWN = 64
EOVERFLOW = 84

#: Every constant above by its header name, for the golden comparison.
CONSTANTS: Dict[str, int] = {
    name: value for name, value in globals().items() if name[:1].isupper() and isinstance(value, int)
}


#: macOS's errno values by name (the E* constants above): the one table :func:`.._bsd.host_errno` maps.
ERRNO: Dict[str, int] = {name: value for name, value in CONSTANTS.items() if name.startswith("E")}

ioc = _ioc.ioc

def ioctl_numbers(sizeof: Callable[[str], int]) -> Dict[str, int]:
    """Every request the macOS backend issues, sized by *sizeof* (a declared FFI's ``sizeof``)."""
    ifreq = sizeof("struct ifreq")
    return {
        "CTLIOCGINFO": ioc(IOC_INOUT, "N", 3, sizeof("struct ctl_info")),  # sys/kern_control.h
        "SIOCSIFFLAGS": ioc(IOC_IN, "i", 16, ifreq),
        "SIOCGIFFLAGS": ioc(IOC_INOUT, "i", 17, ifreq),
        "SIOCSIFMTU": ioc(IOC_IN, "i", 52, ifreq),
        "SIOCGIFMTU": ioc(IOC_INOUT, "i", 51, ifreq),
        "SIOCAIFADDR": ioc(IOC_IN, "i", 26, sizeof("struct ifaliasreq")),
        "SIOCDIFADDR": ioc(IOC_IN, "i", 25, ifreq),
        "SIOCAIFADDR_IN6": ioc(IOC_IN, "i", 26, sizeof("struct in6_aliasreq")),  # netinet6/in6_var.h
        "SIOCDIFADDR_IN6": ioc(IOC_IN, "i", 25, sizeof("struct in6_ifreq")),
        "SIOCSIFLLADDR": ioc(IOC_IN, "i", 60, ifreq),
        "SIOCIFCREATE": ioc(IOC_INOUT, "i", 120, ifreq),
        "SIOCIFDESTROY": ioc(IOC_IN, "i", 121, ifreq),
        "SIOCIFCREATE2": ioc(IOC_INOUT, "i", 122, ifreq),
        "SIOCSDRVSPEC": ioc(IOC_IN, "i", 123, sizeof("struct ifdrv")),
        # net/bpf.h: u_int arguments; BIOCPROMISC takes none.
        "BIOCGBLEN": ioc(IOC_OUT, "B", 102, sizeof("unsigned int")),
        "BIOCSBLEN": ioc(IOC_INOUT, "B", 102, sizeof("unsigned int")),
        "BIOCPROMISC": ioc(IOC_VOID, "B", 105, 0),
        "BIOCSETIF": ioc(IOC_IN, "B", 108, ifreq),
        "BIOCIMMEDIATE": ioc(IOC_IN, "B", 112, sizeof("unsigned int")),
        "BIOCSHDRCMPLT": ioc(IOC_IN, "B", 117, sizeof("unsigned int")),
        "BIOCSSEESENT": ioc(IOC_IN, "B", 119, sizeof("unsigned int")),
    }


# ------------------------------------------------------------ sockaddrs and the AF header
# cdata arguments are typed Any: this module cannot import cffi for its types.

def _net16(value: int) -> int:
    """A port as the host-order integer whose memory is big-endian (htons on little-endian macOS)."""
    return int.from_bytes(value.to_bytes(2, "big"), "little")


def fill_sockaddr_in(sa: Any, addr: bytes, port: int) -> None:
    """Fill a zeroed ``struct sockaddr_in *`` with a 4-byte address and a port."""
    sa.sin_len = 16
    sa.sin_family = AF_INET
    sa.sin_port = _net16(port)
    sa.sin_addr.s_addr = int.from_bytes(addr, "little")  # memory order = the address's bytes


def read_sockaddr_in(sa: Any) -> Tuple[bytes, int]:
    """The address bytes and port of a ``struct sockaddr_in *``."""
    return int(sa.sin_addr.s_addr).to_bytes(4, "little"), _net16(sa.sin_port)


def fill_sockaddr_in6(sa: Any, addr: bytes, port: int, flowinfo: int = 0, scope_id: int = 0) -> None:
    """Fill a zeroed ``struct sockaddr_in6 *`` (flowinfo in network order, scope_id in host order)."""
    sa.sin6_len = 28
    sa.sin6_family = AF_INET6
    sa.sin6_port = _net16(port)
    sa.sin6_flowinfo = int.from_bytes(flowinfo.to_bytes(4, "big"), "little")
    sa.sin6_addr.__u6_addr.__u6_addr8 = list(addr)
    sa.sin6_scope_id = scope_id


def read_sockaddr_in6(sa: Any) -> Tuple[bytes, int, int, int]:
    """Address bytes, port, flowinfo and scope_id of a ``struct sockaddr_in6 *``."""
    flowinfo = int.from_bytes(int(sa.sin6_flowinfo).to_bytes(4, "little"), "big")
    return bytes(sa.sin6_addr.__u6_addr.__u6_addr8), _net16(sa.sin6_port), flowinfo, int(sa.sin6_scope_id)


def af_header_into(scratch: Any, family: int) -> None:
    """Write *family* into a ``uint32_t *`` scratch as utun wants it: big-endian in memory."""
    scratch[0] = int.from_bytes(family.to_bytes(utun.AF_HEADER_LEN, "big"), "little")


def af_of(scratch: Any) -> int:
    """The protocol family in a ``uint32_t *`` scratch filled by a utun read."""
    return int.from_bytes(int(scratch[0]).to_bytes(utun.AF_HEADER_LEN, "little"), "big")
