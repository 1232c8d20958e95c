"""Validators of the library's arguments: one function per rule, all in one place.

Internal.  Pure (no syscall, no cffi): each raises ``TypeError`` for a value
of the wrong type and ``ValueError`` for one out of range, quoting it, so a
bad argument fails before any syscall.  A bool is not an int here
(``mtu=True`` is a mistake, not 1).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

from ._constants import ALL_OFFLOADS, EVERYONE, GSO_OFFLOADS, MAX_NAME, MAX_SNDBUF, TUN_F_CSUM
from ._constants import TUN_F_TSO4, TUN_F_TSO6, TUN_F_UDP_TUNNEL_GSO, TUN_F_UDP_TUNNEL_GSO_CSUM, TUN_F_USO4
from ._constants import TUN_F_USO6, TUNNEL_OFFLOADS, VNET_HDR_SIZES, VNET_HDR_TUNNEL

__all__ = ["check_int", "check_int_in", "check_bool", "check_name", "check_id", "check_owner", "check_offload",
           "check_min_packets", "check_vnet_hdr_size", "check_tunnel_offload", "check_napi", "check_sndbuf",
           "check_link_type", "check_netns", "check_timeout"]


def check_int(option: str, value: object, what: str = "an int") -> int:
    """*value* if it is an int (not a bool), else TypeError: "*option* must be *what*"."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} must be {what}, not {type(value).__name__}")
    return value


def check_int_in(option: str, value: object, low: int, high: int, shown: Optional[str] = None) -> int:
    """*value* if it is an int in low..high (inclusive); *shown* spells *high* in the message ("2**31-1")."""
    number = check_int(option, value)
    if not low <= number <= high:
        raise ValueError(f"{option}={number!r} is outside {low}..{shown or high}")
    return number


def check_bool(option: str, value: object) -> bool:
    """*value* if it is True or False (not merely truthy), else TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{option} must be True or False, not {value!r}")
    return value


def check_name(name: object) -> str:
    """Validate an interface name (or ``%d`` template) as the kernel would."""
    if not isinstance(name, str):
        raise TypeError(f"interface name must be str, not {type(name).__name__}")
    if not name:
        return name
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"interface name {name!r} must be ASCII") from None
    if len(raw) > MAX_NAME:
        raise ValueError(f"interface name {name!r} is {len(raw)} bytes long; the kernel allows at most {MAX_NAME}")
    if name in (".", ".."):
        raise ValueError(f"interface name {name!r} is reserved")
    for ch in name:
        if ch in "/:\0" or ch.isspace() or not ch.isprintable():
            raise ValueError(f"interface name {name!r} contains {ch!r}, which the kernel refuses")
    pct = name.find("%")
    if pct >= 0 and (name[pct + 1 : pct + 2] != "d" or "%" in name[pct + 2 :]):
        raise ValueError(f"interface name {name!r}: the only template the kernel accepts is one '%d'")
    return name


def check_id(option: str, value: object) -> Optional[int]:
    """Validate a uid/gid option; a user or group name is looked up (EVERYONE: see check_owner)."""
    if value is None:
        return None
    if value is EVERYONE:
        raise TypeError(f"{option}=EVERYONE: EVERYONE is a value of owner only (owner=EVERYONE, group unset)")
    if isinstance(value, str):
        import grp
        import pwd

        try:
            if option == "owner":
                return pwd.getpwnam(value).pw_uid
            return grp.getgrnam(value).gr_gid
        except KeyError:
            raise ValueError(f"{option}={value!r}: no such {'user' if option == 'owner' else 'group'}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} must be an int id or a name, not {value!r}")
    if not 0 <= value < 2**32 - 1:
        raise ValueError(f"{option}={value!r} is out of range for a {'uid' if option == 'owner' else 'gid'}")
    return value


def check_owner(owner: object, group: object) -> Tuple[Optional[int], Optional[int], bool]:
    """Validate owner and group together: (uid, gid, open to everyone)."""
    if owner is EVERYONE:
        if group is not None:
            raise ValueError(f"owner=EVERYONE with group={group!r}: a group limits who may attach; pass one or the other")
        return None, None, True
    return check_id("owner", owner), check_id("group", group), False


def check_offload(option: str, flags: object) -> int:
    """Validate a set of TUN_F_* offload bits: known bits only, and segmentation only with TUN_F_CSUM."""
    bits = check_int(option, flags, "an int of TUN_F_* bits")
    if bits & ~ALL_OFFLOADS:
        raise ValueError(f"unknown offload bits {bits & ~ALL_OFFLOADS:#x}")
    if bits & GSO_OFFLOADS and not bits & TUN_F_CSUM:
        raise ValueError("segmentation offloads (TSO/UFO/USO) need TUN_F_CSUM too")
    # tun.c's set_offload (6.17) takes the tunnel bits only on top of a plain
    # segmentation offload, and the checksum variant only with the first.
    if bits & TUN_F_UDP_TUNNEL_GSO_CSUM and not bits & TUN_F_UDP_TUNNEL_GSO:
        raise ValueError("TUN_F_UDP_TUNNEL_GSO_CSUM needs TUN_F_UDP_TUNNEL_GSO too")
    if bits & TUN_F_UDP_TUNNEL_GSO and not bits & (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6):
        raise ValueError("TUN_F_UDP_TUNNEL_GSO needs a plain segmentation offload too (TUN_F_TSO4/TSO6/USO4+USO6)")
    return bits


def check_vnet_hdr_size(size: object) -> int:
    """Validate a virtio-net header size: one of the four structs of <linux/virtio_net.h>."""
    value = check_int("vnet_hdr_size", size)
    if value not in VNET_HDR_SIZES:
        raise ValueError(f"vnet_hdr_size must be 10, 12, 20 or 24 (struct virtio_net_hdr, _v1, _v1_hash, "
                         f"_v1_hash_tunnel), not {value!r}")
    return value


def check_tunnel_offload(flags: int, vnet_hdr_size: int) -> None:
    """The UDP-tunnel offloads need the 24-byte header: only it carries the tunnel's offsets."""
    if flags & TUNNEL_OFFLOADS and vnet_hdr_size != VNET_HDR_TUNNEL:
        raise ValueError(f"the UDP-tunnel offloads ({flags & TUNNEL_OFFLOADS:#x}) need vnet_hdr_size=24 "
                         f"(struct virtio_net_hdr_v1_hash_tunnel), not {vnet_hdr_size}")


def check_napi(napi: object, napi_frags: object, tap: bool) -> None:
    """IFF_NAPI/IFF_NAPI_FRAGS as tun_set_iff() allows them: NAPI_FRAGS only on a TAP, and only with NAPI."""
    check_bool("napi", napi)
    check_bool("napi_frags", napi_frags)
    if napi_frags and not tap:
        raise ValueError("napi_frags=True is for TAP devices only (the kernel refuses it on a TUN)")
    if napi_frags and not napi:
        raise ValueError("napi_frags=True needs napi=True too (IFF_NAPI_FRAGS builds on IFF_NAPI)")


def check_sndbuf(value: object) -> int:
    """A TUNSETSNDBUF size: a positive C int of bytes."""
    return check_int_in("sndbuf", value, 1, MAX_SNDBUF, "2**31-1")


def check_link_type(value: object) -> int:
    """A TUNSETLINK type: an ARPHRD_* number (16 bits: net_device.type)."""
    return check_int_in("link_type", value, 0, 0xFFFF)


def check_min_packets(min_packets: int, timeout: Optional[float]) -> None:
    """Validate read_batch()'s *min_packets* and *timeout* before any syscall."""
    check_int("min_packets", min_packets)
    if min_packets < 1:
        raise ValueError(f"min_packets={min_packets} must be at least 1")
    if timeout is not None:
        check_timeout(timeout)


def check_timeout(timeout: object) -> float:
    """A timeout in seconds (int or float, >= 0; inf waits for ever); None is the caller's to handle."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # also refuses NaN
        raise ValueError(f"timeout={timeout!r} must be None or >= 0")
    return timeout


def check_netns(option: str, value: object) -> Union[str, int]:
    """A network namespace: a name (``"blue"``), a path (``"/proc/1/ns/net"``, a PathLike) or an fd.

    Returns the name or path as str, or the fd.  A str without ``/`` is a
    name (``ip netns`` keeps those in /run/netns); one with ``/`` a path.
    """
    if isinstance(value, bool):
        raise TypeError(f"{option} must be a namespace name, path or fd, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{option}={value!r} is not a file descriptor")
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a namespace name, path or fd, not {type(value).__name__}")
    if not value or "\0" in value:
        raise ValueError(f"{option}={value!r} is not a namespace name or path")
    if "/" not in value and value in (".", ".."):
        raise ValueError(f"{option}={value!r} is not a namespace name (names are those of `ip netns list`)")
    return value
