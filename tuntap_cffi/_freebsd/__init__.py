"""FreeBSD: the declared platform boundary and its backend's data.

:data:`PLATFORM` declares what works on FreeBSD: TUN devices are
``/dev/tun`` clones (``if_tuntap.c``) whose packets carry the 4-byte
address-family header of ``TUNSIFHEAD`` (the Device is the BSD AF-header
Device of ``tuntap_cffi._utun_device``, with FreeBSD's numbers), TAP
devices ``/dev/tap`` clones carrying bare Ethernet frames; link settings
(MTU, up/down, index), IPv4/IPv6 addresses, routes and a TAP's MAC go
through the BSD layer ``.._bsd`` with FreeBSD's numbers (proven against
``tests/freebsd_net.py``, which follows in.c, in6.c and rtsock.c).
:mod:`.backend` holds the ``_backend.Backend`` functions, those of a
missing feature raising the one ``UnsupportedPlatformError``.  This
package makes no C call and loads no library: it imports on any OS.

Facts that shape this package (FreeBSD 14, sys/net/if_tuntap.c, net/if_tun.h):

- Opening ``/dev/tun`` (``/dev/tap``) clones the next free unit
  (``tunclone``); ``/dev/tunN`` opens (cloning if needed) that unit; a
  unit open elsewhere is EBUSY (``tunopen``).  ``TUNGIFNAME`` names it.
- ``TUNSIFHEAD`` 1 makes every read and write carry the packet's family as
  a big-endian u32 (``tunread``/``tunwrite_l3``), AF_INET6 being 28: the
  same framing as macOS's utun, other numbers.  Without it a TUN carries
  IPv4 only (``tunwrite_l3`` assumes AF_INET), so the backend always sets it.
- ``TUNSIFMODE`` picks IFF_POINTOPOINT (the default) or IFF_BROADCAST
  (``open_tun(broadcast=True)``), refused with EBUSY while the interface
  is up.
- Closing the device leaves the interface (``tunclose`` only brings it
  down and purges its addresses): the backend destroys it with
  ``SIOCIFDESTROY`` at close, as the library promises everywhere.
- No multi-queue, no virtio-net header on TUN, no offloads, no io_uring, no
  rtnetlink, no network namespaces (jails/vnet are another model).
"""

from __future__ import annotations

from .._capabilities import Feature, Platform

__all__ = ["PLATFORM"]

_NOT_YET = "the FreeBSD backend does not implement it in this version of tuntap_cffi"

#: FreeBSD's capability table.
PLATFORM = Platform(
    "FreeBSD",
    features=frozenset({
        Feature.TUN, Feature.TAP, Feature.PACKET_INFO, Feature.LOOP_BATCH,  # /dev/tun, /dev/tap (.._freebsd_device)
        Feature.LINK,  # MTU, up/down, index through the BSD layer (.._bsd)
        # SIOCAIFADDR ('i', 43) / SIOCAIFADDR_IN6 ('i', 27), PF_ROUTE with SA_SIZE alignment, SIOCSIFLLADDR
        Feature.ADDRESSES, Feature.ROUTES, Feature.HWADDR,
        Feature.LINK_EVENTS,  # RTM_IFINFO/RTM_IFANNOUNCE (and address messages) on a PF_ROUTE socket (.._bsdevents)
        Feature.PERSIST, Feature.FROM_FD,  # no SIOCIFDESTROY at close; TUNGIFNAME names an adopted fd
        Feature.TUN_BROADCAST,  # TUNSIFMODE IFF_BROADCAST at open (open_tun(broadcast=True))
    }),
    planned=frozenset(),
    reasons={
        Feature.OWNER: "FreeBSD has no per-interface owner: the /dev/tun node's permissions (devfs.rules) "
                       "decide who may open it",
        Feature.MULTI_QUEUE: "if_tuntap has no multi-queue: open several devices",
        Feature.VNET_HDR: "this backend does not drive TAPSVNETHDR (FreeBSD's virtio-net header on TAP)",
        Feature.OFFLOAD: "offloads need a virtio-net header, which this backend does not drive",
        Feature.IO_URING: "io_uring is Linux's: batches use the loop engine (batch_backend='loop')",
        Feature.TXQUEUELEN: "FreeBSD has no ioctl for an interface's send-queue length",
        Feature.FILTER: "if_tuntap has no kernel-side filter ioctl (a BPF descriptor could filter a copy)",
        Feature.DISABLE_IPV6: "no per-interface IPv6 switch is mapped on FreeBSD (ND6_IFF_IFDISABLED is the nearest)",
        Feature.PYTUN_COMPAT: "python-pytun's API is Linux's (/dev/net/tun, TUNSETIFF): use "
                              "tuntap_cffi.open_tun()/open_tap()",
        Feature.NAPI: "if_tuntap has no NAPI mode",
        Feature.SNDBUF: "if_tuntap has no TUNSETSNDBUF: its queue is the interface's send queue",
        Feature.LINK_TYPE: "if_tuntap has no TUNSETLINK: a TUN is IFT_PPP (broadcast=True makes it a broadcast "
                           "link), a TAP Ethernet",
        Feature.NETNS: "FreeBSD has no network namespaces: vnet jails are the nearest",
        Feature.CARRIER: "if_tuntap has no carrier switch: bring the interface down instead",
    },
    fallback=_NOT_YET,
)
