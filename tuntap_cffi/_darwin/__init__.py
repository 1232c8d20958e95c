"""macOS: the declared platform boundary and its backend's data.

:data:`PLATFORM` declares what works on macOS (a TUN is a utun, with its
packets, packet_info, loop batches and adopting a utun socket: the Device is
``tuntap_cffi._utun_device``; a TAP is a feth pair with its MAC:
``tuntap_cffi._feth_device``; link configuration, addresses and routes go
through the BSD layer ``.._bsd``), what the macOS backend is planned to
deliver, and gives every other feature its reason; :mod:`.backend` holds
the ``_backend.Backend`` functions, those of a missing feature raising the
one ``UnsupportedPlatformError``.
This package makes no C call and loads no library: it imports on any OS.

Facts that shape this package (checked against XNU xnu-11417.101.15; the
numbers are in :mod:`.utun`):

- TUN is utun: ``socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)`` connected
  to the kernel control ``com.apple.net.utun_control`` (bsd/net/if_utun.h).
  One interface per connected socket, named ``utun<unit - 1>``; unit 0 asks
  the kernel for the first free one (``utun_ctl_setup``, if_utun.c).
- The interface goes away when its socket closes (``utun_ctl_disconnect``
  detaches it): no persistence, no reattaching, no multi-queue.
- The control is ``CTL_FLAG_PRIVILEGED``: connecting needs root, EPERM
  otherwise (``ctl_setup_kctl``, bsd/kern/kern_control.c); there is no
  per-device owner or group.
- Every packet is preceded by its protocol family as a 4-byte big-endian
  integer (``utun_output`` swaps it with ``htonl``, ``utun_ctl_send`` with
  ``ntohl``): no tun_pi header, no virtio-net header, no offloads.
- No io_uring and no rtnetlink: batches go through the loop engine;
  addresses are ``SIOCAIFADDR``/``SIOCAIFADDR_IN6`` ioctls and routes
  ``PF_ROUTE`` messages (bsd/net/route.h, RTM_VERSION 5).
- TAP has no utun equivalent: it is a ``feth`` pair (bsd/net/if_fake.c,
  peered with ``SIOCSDRVSPEC`` ``IF_FAKE_S_CMD_SET_PEER``, its MAC set with
  ``SIOCSIFLLADDR``), one end the user's, the other read through BPF and
  written through an NDRV socket (``.feth``, ``.._feth_device``).
- No ioctl sets an interface's send-queue length (bsd/sys/sockio.h has
  none): Linux's txqueuelen has no counterpart.
"""

from __future__ import annotations

from .._capabilities import Feature, Platform

__all__ = ["PLATFORM"]

_NOT_YET = "the macOS backend is not implemented in this version of tuntap_cffi"

#: macOS's capability table: utun TUN devices and their configuration work;
#: *planned* is what the macOS backend will deliver next.
PLATFORM = Platform(
    "macOS",
    features=frozenset({
        Feature.TUN, Feature.PACKET_INFO, Feature.LOOP_BATCH, Feature.FROM_FD,  # utun (.._utun_device)
        Feature.LINK, Feature.ADDRESSES, Feature.ROUTES,  # through the BSD layer (.._bsd)
        Feature.TAP, Feature.HWADDR,  # a feth pair read through BPF, written through NDRV (.._feth_device)
        Feature.LINK_EVENTS,  # RTM_IFINFO/RTM_NEWADDR/RTM_DELADDR on a PF_ROUTE socket (.._bsdevents)
    }),
    planned=frozenset(),
    reasons={
        Feature.PERSIST: "a utun interface lives only as long as its socket: keep the Device open",
        Feature.OWNER: "utun has no per-device owner or group: opening one needs root",
        Feature.MULTI_QUEUE: "utun has no multi-queue: open several utun devices",
        Feature.VNET_HDR: "utun has no virtio-net header",
        Feature.OFFLOAD: "utun has no TUN_F_* offloads (they need a virtio-net header)",
        Feature.IO_URING: "io_uring is Linux's: batches will use the loop engine (batch_backend='loop')",
        Feature.TXQUEUELEN: "macOS has no setting for an interface's send-queue length",
        Feature.FILTER: "utun has no kernel-side filter ioctl; a feth TAP, read through BPF, could take one "
                        "(BIOCSETF): not in this version",
        Feature.DISABLE_IPV6: "no per-interface IPv6 switch is mapped on macOS (ND6_IFF_IFDISABLED is the nearest)",
        Feature.PYTUN_COMPAT: "python-pytun's API is Linux's (/dev/net/tun, TUNSETIFF, its flags and "
                              "ioctls): open a utun with tuntap_cffi.open_tun() instead",
        Feature.NAPI: "utun has no NAPI mode: XNU takes each written packet through its own input path",
        Feature.SNDBUF: "utun has no TUNSETSNDBUF: its buffering is the kernel-control socket's (SO_SNDBUF)",
        Feature.LINK_TYPE: "utun has no TUNSETLINK: its link type is fixed (IFT_OTHER, DLT_NULL)",
        Feature.NETNS: "macOS has no network namespaces: run the program in a VM or container for isolation",
        Feature.CARRIER: "utun has no carrier switch (no TUNSETCARRIER): bring the interface down instead",
        Feature.TUN_BROADCAST: "a utun is always point-to-point: open_tap() (a feth pair) gives a broadcast "
                               "(Ethernet) link",
    },
    fallback=_NOT_YET,
)
