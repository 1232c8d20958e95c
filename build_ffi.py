"""Every C declaration tuntap_cffi uses; writes ``tuntap_cffi/_libc.py``.

cffi out-of-line ABI mode: ``set_source(..., None)`` means no C compiler is
involved.  cffi turns the declarations below into a pure-Python module that
the package loads with ``ffi.dlopen``.  Run ``python build_ffi.py`` after
editing this file and commit the regenerated ``tuntap_cffi/_libc.py``
(``tests/test_libc_generated.py`` fails when the two disagree).

The package never imports this file: importing a build script must not touch
the installed package (cairocffi lost its generated modules that way).

Only architecture-independent values appear here as ``#define``.  Values
that differ between architectures (``O_NONBLOCK``, ioctl request numbers
built with ``_IOW``/``_IOR``) are computed at run time in
``tuntap_cffi/_ioctl.py`` or taken from the standard library.
"""

from __future__ import annotations

import pathlib

import cffi

CDEF = r"""
/* ---- <sys/socket.h>, <linux/if.h>: the interface request ---------------- */
typedef unsigned short sa_family_t;

struct sockaddr {
    sa_family_t sa_family;
    char        sa_data[14];
};

struct ifmap {
    unsigned long  mem_start;
    unsigned long  mem_end;
    unsigned short base_addr;
    unsigned char  irq;
    unsigned char  dma;
    unsigned char  port;
};

/* The kernel names the union ifr_ifru and reaches its members through
   macros (#define ifr_flags ifr_ifru.ifru_flags); an anonymous union with the
   macro names as members gives the same layout and the same spelling. */
struct ifreq {
    char ifr_name[16];                  /* IFNAMSIZ */
    union {
        struct sockaddr ifr_addr;
        struct sockaddr ifr_dstaddr;
        struct sockaddr ifr_broadaddr;
        struct sockaddr ifr_netmask;
        struct sockaddr ifr_hwaddr;
        short           ifr_flags;
        int             ifr_ifindex;
        int             ifr_metric;
        int             ifr_mtu;
        int             ifr_qlen;
        struct ifmap    ifr_map;
        char            ifr_slave[16];
        char            ifr_newname[16];
        void           *ifr_data;
    };
};

#define IFNAMSIZ        16
#define IFF_UP          0x1
#define IFF_RUNNING     0x40
#define IFF_LOWER_UP    0x10000         /* 2.6.17: the carrier is on (and the link up), in rtnetlink's ifi_flags */

/* ---- <linux/sockios.h>: generic values, the same on every architecture --- */
#define SIOCGIFFLAGS    0x8913
#define SIOCSIFFLAGS    0x8914
#define SIOCGIFADDR     0x8915
#define SIOCSIFADDR     0x8916
#define SIOCGIFDSTADDR  0x8917
#define SIOCSIFDSTADDR  0x8918
#define SIOCGIFBRDADDR  0x8919
#define SIOCSIFBRDADDR  0x891a
#define SIOCGIFNETMASK  0x891b
#define SIOCSIFNETMASK  0x891c
#define SIOCGIFMTU      0x8921
#define SIOCSIFMTU      0x8922
#define SIOCSIFHWADDR   0x8924
#define SIOCGIFHWADDR   0x8927
#define SIOCGIFINDEX    0x8933
#define SIOCDIFADDR     0x8936
#define SIOCGIFTXQLEN   0x8942
#define SIOCSIFTXQLEN   0x8943

/* ---- <linux/if_arp.h>: ifr_hwaddr.sa_family ---------------------------- */
#define ARPHRD_ETHER    1
#define ARPHRD_NONE     0xFFFE

/* ---- <sys/socket.h>: Linux's values, the same on every architecture ----- */
typedef unsigned int socklen_t;
#define AF_UNSPEC       0
#define AF_INET         2
#define AF_INET6        10
#define AF_NETLINK      16

/* ---- <netinet/in.h> ----------------------------------------------------- */
struct in_addr {
    uint32_t s_addr;                    /* network byte order */
};

struct sockaddr_in {
    sa_family_t    sin_family;
    uint16_t       sin_port;
    struct in_addr sin_addr;
    unsigned char  sin_zero[8];
};

/* glibc spells it as a union of 8-, 16- and 32-bit views; s6_addr is a macro
   for the byte view, so the anonymous union keeps the C spelling. */
struct in6_addr {
    union {
        uint8_t  s6_addr[16];
        uint16_t s6_addr16[8];
        uint32_t s6_addr32[4];
    };
};

struct sockaddr_in6 {
    sa_family_t     sin6_family;
    uint16_t        sin6_port;
    uint32_t        sin6_flowinfo;
    struct in6_addr sin6_addr;
    uint32_t        sin6_scope_id;
};

/* ---- <linux/ipv6.h>: SIOCSIFADDR/SIOCDIFADDR on an AF_INET6 socket ------ */
struct in6_ifreq {
    struct in6_addr ifr6_addr;
    uint32_t        ifr6_prefixlen;
    int             ifr6_ifindex;
};

/* ---- <linux/netlink.h> -------------------------------------------------- */
struct sockaddr_nl {
    sa_family_t    nl_family;
    unsigned short nl_pad;
    uint32_t       nl_pid;
    uint32_t       nl_groups;
};

struct nlmsghdr {
    uint32_t nlmsg_len;
    uint16_t nlmsg_type;
    uint16_t nlmsg_flags;
    uint32_t nlmsg_seq;
    uint32_t nlmsg_pid;
};

struct nlmsgerr {
    int             error;
    struct nlmsghdr msg;
};

#define NETLINK_ROUTE   0
#define NLMSG_NOOP      0x1
#define NLMSG_ERROR     0x2
#define NLMSG_DONE      0x3
#define NLM_F_REQUEST   0x01
#define NLM_F_MULTI     0x02
#define NLM_F_ACK       0x04
#define NLM_F_DUMP      0x300
#define NLM_F_REPLACE   0x100
#define NLM_F_EXCL      0x200
#define NLM_F_CREATE    0x400
#define NLM_F_ACK_TLVS  0x200           /* in an NLMSG_ERROR: extended ack follows */
#define SOL_NETLINK     270
#define NETLINK_EXT_ACK 11              /* 4.12: error messages from the kernel */
#define NLMSGERR_ATTR_MSG 1

/* ---- <linux/rtnetlink.h>, <linux/if_addr.h>, <linux/if_link.h> ---------- */
struct rtattr {
    unsigned short rta_len;
    unsigned short rta_type;
};

struct ifaddrmsg {
    uint8_t  ifa_family;
    uint8_t  ifa_prefixlen;
    uint8_t  ifa_flags;
    uint8_t  ifa_scope;
    uint32_t ifa_index;
};

struct rtmsg {
    unsigned char rtm_family;
    unsigned char rtm_dst_len;
    unsigned char rtm_src_len;
    unsigned char rtm_tos;
    unsigned char rtm_table;
    unsigned char rtm_protocol;
    unsigned char rtm_scope;
    unsigned char rtm_type;
    unsigned int  rtm_flags;
};

struct ifinfomsg {
    unsigned char  ifi_family;
    unsigned char  __ifi_pad;
    unsigned short ifi_type;
    int            ifi_index;
    unsigned int   ifi_flags;
    unsigned int   ifi_change;
};

#define RTM_NEWLINK     16
#define RTM_GETLINK     18
#define RTM_NEWADDR     20
#define RTM_DELADDR     21
#define RTM_GETADDR     22
#define RTM_NEWROUTE    24
#define RTM_DELROUTE    25
#define RTM_GETROUTE    26
#define IFA_ADDRESS     1
#define IFA_LOCAL       2
#define IFA_LABEL       3
#define IFA_BROADCAST   4
#define IFA_FLAGS       8
#define IFA_F_NODAD     0x02
#define IFA_F_PERMANENT 0x80
#define RTA_DST         1
#define RTA_OIF         4
#define RTA_GATEWAY     5
#define RTA_PRIORITY    6
#define RTA_TABLE       15
#define RT_TABLE_MAIN   254
#define RTPROT_KERNEL   2
#define RTPROT_BOOT     3
#define RTPROT_STATIC   4
#define RT_SCOPE_UNIVERSE 0
#define RT_SCOPE_LINK   253
#define RT_SCOPE_HOST   254
#define RTN_UNICAST     1
#define IFLA_ADDRESS    1
#define IFLA_IFNAME     3
#define IFLA_MTU        4
#define IFLA_TXQLEN     13
#define IFLA_LINKINFO   18              /* nested: IFLA_INFO_KIND, IFLA_INFO_DATA */
#define IFLA_INFO_KIND  1
#define IFLA_INFO_DATA  2
#define IFLA_TUN_OWNER  1               /* u32, in tun's IFLA_INFO_DATA when set (4.15) */
#define IFLA_TUN_GROUP  2
#define IFLA_NET_NS_FD  28              /* RTM_NEWLINK: move the link to this namespace (3.0) */
#define IFLA_CARRIER    33              /* u8: the link has carrier (3.x) */
/* link events (LinkEvents): the groups a NETLINK_ROUTE socket binds to, and what they send */
#define RTM_DELLINK     17
#define RTMGRP_LINK     0x1
#define RTMGRP_IPV4_IFADDR 0x10
#define RTMGRP_IPV6_IFADDR 0x100

/* ---- <linux/if_tun.h> --------------------------------------------------- */
struct tun_pi {
    unsigned short flags;
    unsigned short proto;               /* __be16: network byte order */
};

#define TUN_PKT_STRIP   0x0001

/* TUNSETOFFLOAD bits (USO4/USO6 of 6.2 are in offload.py: newer than these headers) */
#define TUN_F_CSUM      0x01
#define TUN_F_TSO4      0x02
#define TUN_F_TSO6      0x04
#define TUN_F_TSO_ECN   0x08
#define TUN_F_UFO       0x10

/* ---- <linux/filter.h>: classic BPF, TUNATTACHFILTER's argument (TAP only) */
struct sock_filter {
    uint16_t code;
    uint8_t  jt;
    uint8_t  jf;
    uint32_t k;
};

struct sock_fprog {
    unsigned short      len;
    struct sock_filter *filter;
};

#define BPF_MAXINSNS    4096

/* ---- <linux/virtio_net.h>: the header in front of each packet with IFF_VNET_HDR */
struct virtio_net_hdr {
    uint8_t  flags;                     /* VIRTIO_NET_HDR_F_* */
    uint8_t  gso_type;                  /* VIRTIO_NET_HDR_GSO_* */
    uint16_t hdr_len;                   /* __virtio16: little-endian here */
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

struct virtio_net_hdr_mrg_rxbuf {
    struct virtio_net_hdr hdr;
    uint16_t num_buffers;
};

/* The virtio 1.0 forms: TUNSETVNETHDRSZ 12, 20 and 24.  tun reads and writes
   the first 12 bytes of each (the hash fields stay zero: tun reports no hash);
   the tunnel offsets are filled for TUN_F_UDP_TUNNEL_GSO packets (6.17).  The
   hash and tunnel fields are __le16 whatever the host's byte order.  6.17 split
   __le32 hash_value into two __le16 halves, so the struct's alignment is 2. */
struct virtio_net_hdr_v1 {
    uint8_t  flags;
    uint8_t  gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
};

struct virtio_net_hdr_v1_hash {
    struct virtio_net_hdr_v1 hdr;
    uint16_t hash_value_lo;
    uint16_t hash_value_hi;
    uint16_t hash_report;               /* VIRTIO_NET_HASH_REPORT_* */
    uint16_t padding;
};

struct virtio_net_hdr_v1_hash_tunnel {
    struct virtio_net_hdr_v1_hash hash_hdr;
    uint16_t outer_th_offset;           /* the outer UDP header, from the packet's start */
    uint16_t inner_nh_offset;           /* the inner IP header, from the packet's start */
};

/* TUNSETIFF flags (ifr_flags) */
#define IFF_TUN         0x0001
#define IFF_TAP         0x0002
#define IFF_NAPI        0x0010
#define IFF_NAPI_FRAGS  0x0020
#define IFF_NO_CARRIER  0x0040
#define IFF_NO_PI       0x1000
#define IFF_ONE_QUEUE   0x2000
#define IFF_VNET_HDR    0x4000
#define IFF_TUN_EXCL    0x8000
#define IFF_MULTI_QUEUE 0x0100
#define IFF_ATTACH_QUEUE 0x0200
#define IFF_DETACH_QUEUE 0x0400
#define IFF_PERSIST     0x0800
#define IFF_NOFILTER    0x1000

/* ---- <linux/if_ether.h>: tun_pi.proto values --------------------------- */
#define ETH_P_IP        0x0800
#define ETH_P_ARP       0x0806
#define ETH_P_IPV6      0x86DD

/* ---- <sys/uio.h> -------------------------------------------------------- */
struct iovec {
    void   *iov_base;
    size_t  iov_len;
};

/* ---- <poll.h> ----------------------------------------------------------- */
struct pollfd {
    int   fd;
    short events;
    short revents;
};
typedef unsigned long nfds_t;

/* ---- <linux/io_uring.h> (5.1+): the members used here -------------------
   The header's unions are flattened to their first member (same offsets). */
struct io_sqring_offsets {
    uint32_t head;
    uint32_t tail;
    uint32_t ring_mask;
    uint32_t ring_entries;
    uint32_t flags;
    uint32_t dropped;
    uint32_t array;
    uint32_t resv1;
    uint64_t resv2;
};

struct io_cqring_offsets {
    uint32_t head;
    uint32_t tail;
    uint32_t ring_mask;
    uint32_t ring_entries;
    uint32_t overflow;
    uint32_t cqes;
    uint32_t flags;
    uint32_t resv1;
    uint64_t resv2;
};

struct io_uring_params {
    uint32_t sq_entries;
    uint32_t cq_entries;
    uint32_t flags;
    uint32_t sq_thread_cpu;
    uint32_t sq_thread_idle;
    uint32_t features;
    uint32_t wq_fd;
    uint32_t resv[3];
    struct io_sqring_offsets sq_off;
    struct io_cqring_offsets cq_off;
};

struct io_uring_sqe {
    uint8_t  opcode;
    uint8_t  flags;                     /* IOSQE_* */
    uint16_t ioprio;
    int32_t  fd;
    uint64_t off;
    uint64_t addr;
    uint32_t len;
    uint32_t rw_flags;
    uint64_t user_data;
    uint16_t buf_index;
    uint16_t personality;
    int32_t  splice_fd_in;
    uint64_t addr3;
    uint64_t __pad2[1];
};

struct io_uring_cqe {
    uint64_t user_data;
    int32_t  res;
    uint32_t flags;
};

struct io_uring_probe_op {
    uint8_t  op;
    uint8_t  resv;
    uint16_t flags;                     /* IO_URING_OP_SUPPORTED */
    uint32_t resv2;
};

/* The header ends in a flexible array `struct io_uring_probe_op ops[]`,
   which starts at sizeof(struct io_uring_probe); it is left out here. */
struct io_uring_probe {
    uint8_t  last_op;
    uint8_t  ops_len;
    uint16_t resv;
    uint32_t resv2[3];
};

#define IORING_SETUP_SQPOLL         0x2
#define IORING_SETUP_CQSIZE         0x8
#define IORING_SETUP_CLAMP          0x10
#define IORING_SETUP_SUBMIT_ALL     0x80
#define IORING_SETUP_COOP_TASKRUN   0x100    /* 5.19 */
#define IORING_SETUP_SINGLE_ISSUER  0x1000   /* 6.0 */
#define IORING_SETUP_DEFER_TASKRUN  0x2000   /* 6.1 */
#define IORING_ENTER_GETEVENTS      0x1
#define IORING_ENTER_SQ_WAKEUP      0x2
#define IORING_FEAT_SINGLE_MMAP     0x1
#define IORING_FEAT_NODROP          0x2
#define IORING_SQ_NEED_WAKEUP       0x1
#define IORING_OFF_SQ_RING          0x0
#define IORING_OFF_CQ_RING          0x8000000
#define IORING_OFF_SQES             0x10000000
#define IORING_OP_NOP               0
#define IORING_OP_READ_FIXED        4
#define IORING_OP_WRITE_FIXED       5
#define IORING_OP_READ              22
#define IORING_OP_WRITE             23
#define IORING_OP_FILES_UPDATE      20
#define IOSQE_FIXED_FILE            0x1
#define IOSQE_CQE_SKIP_SUCCESS      0x40     /* 5.17 */
#define IORING_FEAT_CQE_SKIP        0x800    /* 5.17 */
#define IORING_REGISTER_BUFFERS     0
#define IORING_UNREGISTER_BUFFERS   1
#define IORING_REGISTER_FILES       2
#define IORING_UNREGISTER_FILES     3
#define IORING_REGISTER_PROBE       8
#define IO_URING_OP_SUPPORTED       0x1

/* ---- libc ---------------------------------------------------------------- */
int     open(const char *pathname, int flags, ...);
int     close(int fd);
int     ioctl(int fd, unsigned long request, ...);
int     fcntl(int fd, int cmd, ...);
ssize_t read(int fd, void *buf, size_t count);
ssize_t write(int fd, const void *buf, size_t count);
ssize_t readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
int     poll(struct pollfd *fds, nfds_t nfds, int timeout);
int     socket(int domain, int type, int protocol);
int     bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
int     setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen);
ssize_t send(int sockfd, const void *buf, size_t len, int flags);
ssize_t recv(int sockfd, void *buf, size_t len, int flags);
ssize_t recvfrom(int sockfd, void *buf, size_t len, int flags, struct sockaddr *src_addr, socklen_t *addrlen);
int     eventfd(unsigned int initval, int flags);
int     dup3(int oldfd, int newfd, int flags);
long    syscall(long number, ...);          /* io_uring_setup/enter/register */

/* ---- <sched.h>: entering a network namespace (one thread only) --------- */
#define CLONE_NEWNET    0x40000000
int     setns(int fd, int nstype);
"""

MODULE = "tuntap_cffi._libc"
OUTPUT = pathlib.Path(__file__).resolve().parent / "tuntap_cffi" / "_libc.py"

HEADER = (
    "# GENERATED by build_ffi.py: do not edit; run `python build_ffi.py` instead.\n"
)


def make_ffi() -> cffi.FFI:
    """Return the FFI builder holding every declaration (no side effects)."""
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.set_source(MODULE, None)
    return ffibuilder


def generate() -> str:
    """Return the text of ``_libc.py`` as the installed cffi writes it."""
    import contextlib
    import io
    import os
    import tempfile

    # cffi < 1.16 (PyPy's) only writes to a path.
    fd, path = tempfile.mkstemp(suffix=".py")
    os.close(fd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # cffi prints "generating ..."
            make_ffi().emit_python_code(path)
        with open(path) as f:
            return HEADER + f.read()
    finally:
        os.unlink(path)


def main() -> None:
    OUTPUT.write_text(generate())
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
