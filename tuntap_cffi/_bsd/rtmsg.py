"""PF_ROUTE messages: build a route request, walk and read the kernel's messages.

Facts that shape this module (XNU bsd/net/rtsock.c, route.h; FreeBSD
net/rtsock.c, route.h):

- Every message starts with ``msglen u16, version u8, type u8``; readers
  skip a version they do not know and use ``msglen`` to step to the next
  message of a sysctl dump (several are packed back to back).
- After the fixed header (``rt_msghdr``, ``if_msghdr`` or ``ifa_msghdr``,
  sized by the platform's declarations) come the sockaddrs of its
  ``addrs`` mask (:mod:`.sockaddr`).
- ``route_output`` fills in ``rtm_pid`` (``proc_selfpid``) and sends the
  request back to the sender with ``rtm_errno`` or ``RTF_DONE`` set; every
  other PF_ROUTE listener sees it too, so a reply is ours only when its
  type, ``rtm_seq`` and ``rtm_pid`` are.
- A header read from the kernel is untrusted in length: a message shorter
  than its header or than its own ``msglen`` ends the walk.
- Link events are these messages as ``rt_ifmsg`` and ``rt_newaddrmsg``
  (rtsock.c) send them to every PF_ROUTE socket: RTM_IFINFO with the
  interface's flags and ``if_data`` (its MTU; FreeBSD's also carries
  ``ifi_link_state``, XNU's none), RTM_NEWADDR/RTM_DELADDR with the
  address's sockaddrs, and (FreeBSD only: XNU has no such message)
  RTM_IFANNOUNCE when an interface arrives or departs.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

from . import Numbers
from .sockaddr import pack, unpack

__all__ = ["Header", "route_request", "walk", "header", "sockaddrs", "link_data", "announcement"]


class Header(NamedTuple):
    """The fields of a routing message's fixed header that the layer reads."""

    type: int
    ifindex: int
    flags: int
    addrs: int
    pid: int
    seq: int
    errno: int


_KINDS = {  # message type -> (struct, field prefix); index/flags/addrs are in every one
    "RTM_IFINFO": ("struct if_msghdr", "ifm_"),
    "RTM_NEWADDR": ("struct ifa_msghdr", "ifam_"),
    "RTM_DELADDR": ("struct ifa_msghdr", "ifam_"),
}


def route_request(ffi: Any, k: Numbers, rtm_type: int, flags: int, index: int, seq: int,
                  items: Sequence[Tuple[int, bytes]]) -> bytes:
    """An ``rt_msghdr`` of *rtm_type* with the (RTA bit, sockaddr) *items*, ready to write."""
    addrs, body = pack(items, k.sa_align)
    hdr = ffi.new("struct rt_msghdr *")
    hdr.rtm_msglen = ffi.sizeof("struct rt_msghdr") + len(body)
    hdr.rtm_version = k.constants["RTM_VERSION"]
    hdr.rtm_type = rtm_type
    hdr.rtm_index = index
    hdr.rtm_flags = flags
    hdr.rtm_addrs = addrs
    hdr.rtm_seq = seq
    return bytes(ffi.buffer(hdr)) + body


def walk(data: bytes, k: Numbers) -> Iterator[Tuple[int, bytes]]:
    """(type, message) of each message of our RTM_VERSION packed in *data*."""
    at = 0
    while at + 4 <= len(data):
        length = int.from_bytes(data[at:at + 2], sys.byteorder)
        if length < 4 or at + length > len(data):
            return  # malformed: stop rather than read past the buffer
        if data[at + 2] == k.constants["RTM_VERSION"]:
            yield data[at + 3], data[at:at + length]
        at += length


def _struct_of(k: Numbers, msg_type: int) -> Tuple[str, str]:
    for name, kind in _KINDS.items():
        if k.constants.get(name) == msg_type:
            return kind
    return "struct rt_msghdr", "rtm_"


def header(ffi: Any, k: Numbers, msg: bytes) -> Tuple[Header, int]:
    """The fixed header of *msg* and its size; ValueError if *msg* is shorter than it."""
    ctype, prefix = _struct_of(k, msg[3])
    size = ffi.sizeof(ctype)
    hdr = _fixed(ffi, ctype, msg)
    rt = prefix == "rtm_"
    return Header(
        type=msg[3], ifindex=getattr(hdr, prefix + "index"), flags=getattr(hdr, prefix + "flags"),
        addrs=getattr(hdr, prefix + "addrs"), pid=hdr.rtm_pid if rt else 0, seq=hdr.rtm_seq if rt else 0,
        errno=hdr.rtm_errno if rt else 0,
    ), size


def sockaddrs(ffi: Any, k: Numbers, msg: bytes) -> Tuple[Header, Dict[int, bytes]]:
    """The header of *msg* and its sockaddrs by RTA bit."""
    hdr, size = header(ffi, k, msg)
    return hdr, unpack(hdr.addrs, msg[size:], k.sa_align, k.constants["RTAX_MAX"])


def _fixed(ffi: Any, ctype: str, msg: bytes) -> Any:
    """*msg*'s fixed header as a *ctype*; ValueError if *msg* is shorter than it."""
    size = ffi.sizeof(ctype)
    if len(msg) < size:
        raise ValueError(f"a {ctype} message of {len(msg)} bytes (it has {size})")
    hdr = ffi.new(f"{ctype} *")
    ffi.memmove(hdr, msg[:size], size)
    return hdr


def link_data(ffi: Any, msg: bytes) -> Tuple[int, Optional[int]]:
    """The MTU and ``ifi_link_state`` (None where ``if_data`` has none: XNU) of an RTM_IFINFO *msg*."""
    data = _fixed(ffi, "struct if_msghdr", msg).ifm_data
    has_state = any(name == "ifi_link_state" for name, _ in ffi.typeof("struct if_data").fields)
    return int(data.ifi_mtu), int(data.ifi_link_state) if has_state else None


def announcement(ffi: Any, msg: bytes) -> Tuple[int, int]:
    """(index, ``ifan_what``) of an RTM_IFANNOUNCE *msg* (FreeBSD's ``if_announcemsghdr``)."""
    hdr = _fixed(ffi, "struct if_announcemsghdr", msg)
    return int(hdr.ifan_index), int(hdr.ifan_what)
