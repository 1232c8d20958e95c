"""Linux backend: /dev/net/tun, the TUN* ioctls, and link ioctls on a control socket.

Facts:
- ``open("/dev/net/tun")`` gives an unattached file; ``TUNSETIFF`` with a
  name and ``IFF_TUN``/``IFF_TAP`` creates the interface (or attaches to a
  persistent one) and writes the chosen name back (``tun%d`` templates).
- The interface lives as long as an fd holds it, unless ``TUNSETPERSIST``.
- Link settings (flags, MTU, queue length, index) are ``SIOC*`` ioctls on any
  socket of the right network namespace; ``dev_ioctl`` serves them for every
  socket family, so a NETLINK_ROUTE socket (which the configuration module
  also uses for addresses) does the job and works without IPv4.
- Every fd is opened O_CLOEXEC and closed on every failure path here.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

from .. import _ioctl
from ..bpf import to_ebpf
from .._netlink import RtNetlink, attr, fixed, parse_attrs
from .._nlevents import NetlinkSource
from .._syscalls import check, close_quietly, ffi, lib, open_cloexec
from ..config import add_address, add_route, list_addresses, list_routes, remove_address, remove_route
from ..errors import DeviceBusyError, DeviceNotFoundError, TunTapError, UnsupportedPlatformError, error_from_errno
# Namespaces have a module of their own; the backend boundary offers its functions.
from .netns import describe_netns as describe_netns, device_netns as device_netns
from .netns import in_netns as in_netns, open_netns as open_netns

__all__ = [
    "TUN_PATH",
    "create",
    "set_iff",
    "owner_and_group",
    "get_iff",
    "set_persist",
    "control_socket",
    "get_link_flags",
    "set_link_flags",
    "get_int",
    "set_int",
    "sysfs_tun_flags",
    "delete_persistent",
    "get_hwaddr",
    "set_hwaddr",
    "set_vnet_hdr_size",
    "set_offload",
    "set_queue",
    "get_vnet_hdr_size",
    "get_sndbuf",
    "set_sndbuf",
    "get_link_type",
    "set_link_type",
    "ifreq",
    "inet_socket",
    "get_inet",
    "set_inet",
    "attach_filter",
    "detach_filter",
    "config_channel",
    "add_address",
    "remove_address",
    "list_addresses",
    "add_route",
    "remove_route",
    "list_routes",
    "set_carrier",
    "open_netns",
    "in_netns",
    "device_netns",
    "event_source",
    "describe_netns",
]

TUN_PATH = "/dev/net/tun"


def _short(flags: int) -> int:
    """*flags* (0..0xFFFF) as the C ``short`` that ``ifr_flags`` is."""
    return flags - 0x10000 if flags & 0x8000 else flags


def ifreq(name: str) -> Any:
    """A zeroed ``struct ifreq`` naming interface *name* (ASCII, checked by the caller)."""
    ifr = ffi.new("struct ifreq *")
    ifr.ifr_name = name.encode("ascii")
    return ifr


def create(
    name: str,
    flags: int,
    owner: Optional[int],
    group: Optional[int],
    persist: Optional[bool],
    kind: str,
    everyone: bool = False,
) -> Tuple[int, str]:
    """Open /dev/net/tun and attach it to interface *name*; return (fd, name).

    The fd is O_NONBLOCK (the Device emulates blocking reads with poll, which
    is what lets ``close()`` wake a blocked reader) and O_CLOEXEC.  *persist*
    True gives the interface an owner as :func:`set_persist` says, unless
    *everyone*.
    """
    what = f"cannot create {kind} device {name or '(kernel-chosen name)'}"
    fd = open_cloexec(TUN_PATH, os.O_RDWR | os.O_NONBLOCK, what)
    try:
        if flags & lib.IFF_NO_CARRIER:  # (TUNSETIFF would ignore it before 6.0: see unknown_flags_error)
            refusal = unknown_flags_error(tun_features(fd), flags, name, kind)
            if refusal is not None:
                raise refusal
        name = set_iff(fd, name, flags, kind)
        what = f"cannot configure {kind} device {name}"
        ids = owner_and_group(name) if everyone and persist is not False else (None, None)
        if ids != (None, None):
            # TUNSETOWNER/TUNSETGROUP refuse -1: once set, they cannot be unset.
            raise TunTapError(errno.EINVAL, f"cannot open {kind} device {name} to every user: it has "
                              f"(owner, group) {ids} and the kernel cannot unset them; delete it "
                              "(delete_persistent) and create it again with owner=EVERYONE", name)
        # Owner and group first, persistence last: if anything fails before,
        # closing the fd removes the interface we just made.
        if owner is not None:
            check(lib.ioctl, fd, _ioctl.TUNSETOWNER, ffi.cast("unsigned long", owner), op="ioctl", name=name, what=what)
        if group is not None:
            check(lib.ioctl, fd, _ioctl.TUNSETGROUP, ffi.cast("unsigned long", group), op="ioctl", name=name, what=what)
        if persist is not None:
            set_persist(fd, name, persist, everyone)
    except BaseException:
        close_quietly(fd)
        raise
    return fd, name


def set_iff(fd: int, name: str, flags: int, kind: str) -> str:
    """``TUNSETIFF``: create interface *name* or attach *fd* to the existing one; return its name.

    A failure names what was tried: attaching when an interface of that name
    is there (a persistent one owned by someone else says EPERM), else creating.
    """
    ifr = ifreq(name)
    ifr.ifr_flags = _short(flags)
    try:
        check(lib.ioctl, fd, _ioctl.TUNSETIFF, ifr, op="ioctl")
    except OSError as exc:  # mapped again, knowing the name and flags
        raise set_iff_error(exc.errno or errno.EIO, name, flags, kind) from None
    real: str = ffi.string(ifr.ifr_name).decode("ascii")
    return real


def set_iff_error(err: int, name: str, flags: int, kind: str) -> OSError:
    """The error for ``TUNSETIFF`` failing with *err* on *name* with IFF_* *flags*.

    An interface of that name exists: the attach's error (EPERM there means
    owner/group).  Else the table's, for a name or a ``%d`` template.
    """
    if "%" not in name and name and sysfs_tun_flags(name) is not None:
        return error_from_errno(err, "attach", name, f"cannot attach to {kind} device {name}")
    op = "create_template" if "%" in name else "create"
    return error_from_errno(err, op, name or None, f"cannot create {kind} device {name or '(kernel-chosen name)'}")


def unknown_flags_error(features: int, flags: int, name: str, kind: str) -> Optional[OSError]:
    """The error for asking TUNSETIFF for *flags* the kernel's ``TUNGETFEATURES`` (*features*) lacks, or None.

    TUNSETIFF ignores flags it does not know ("we never checked for invalid
    flags on TUNSETIFF", tun.c): a kernel before 6.0 would make the device
    with its carrier on when asked for IFF_NO_CARRIER.  So that flag is
    checked against the features first.
    """
    if flags & lib.IFF_NO_CARRIER and not features & lib.IFF_NO_CARRIER:
        return UnsupportedPlatformError(
            errno.EOPNOTSUPP, f"cannot create {kind} device {name or '(kernel-chosen name)'} without carrier: "
            "carrier=False (IFF_NO_CARRIER) needs Linux 6.0; open it with the carrier on and set "
            "Device.carrier = False at once (TUNSETCARRIER, Linux 4.19)", name or None)
    return None


def tun_features(fd: int) -> int:
    """``TUNGETFEATURES``: the IFF_* flags this kernel's TUNSETIFF knows (any /dev/net/tun fd, attached or not)."""
    features = ffi.new("unsigned int *")
    check(lib.ioctl, fd, _ioctl.TUNGETFEATURES, features, op="ioctl", what="cannot read the tun driver's features")
    value: int = features[0]
    return value


def get_iff(fd: int) -> Tuple[str, int]:
    """``TUNGETIFF``: return (name, IFF_* flags) of the interface *fd* is attached to.

    Quirk: the kernel ORs IFF_NOFILTER (0x1000, "no socket filter attached")
    into the answer, and IFF_NO_PI has the same value, so bit 0x1000 says
    nothing about packet information; see :func:`sysfs_tun_flags`.
    """
    ifr = ffi.new("struct ifreq *")
    check(lib.ioctl, fd, _ioctl.TUNGETIFF, ifr, op="ioctl", what=f"fd {fd} is not an attached TUN/TAP device (TUNGETIFF)")
    return ffi.string(ifr.ifr_name).decode("ascii"), ifr.ifr_flags & 0xFFFF


def set_persist(fd: int, name: str, on: bool, everyone: bool = False) -> None:
    """``TUNSETPERSIST``: keep the interface after its last fd closes (or stop).

    The kernel lets any process that can open /dev/net/tun attach to (and so
    un-persist or delete) a persistent interface with neither owner nor
    group.  So when this turns persistence on for an interface that has
    neither, it first makes the caller's effective uid the owner (before,
    so the interface is never persistent and open), unless *everyone*.  An
    interface that already was persistent keeps what it has.
    """
    if on and not everyone and not get_iff(fd)[1] & lib.IFF_PERSIST and owner_and_group(name) == (None, None):
        check(lib.ioctl, fd, _ioctl.TUNSETOWNER, ffi.cast("unsigned long", os.geteuid()), op="ioctl", name=name,
              what=f"cannot make the effective uid the owner of {name} (before making it persistent)")
    check(lib.ioctl, fd, _ioctl.TUNSETPERSIST, ffi.cast("unsigned long", int(on)), op="ioctl", name=name, what=f"cannot set persist={on} on {name}")


def owner_and_group(name: str) -> Tuple[Optional[int], Optional[int]]:
    """The uid and gid allowed to attach to TUN/TAP interface *name*, None where unset.

    Asked over rtnetlink (tun's IFLA_TUN_OWNER/IFLA_TUN_GROUP, 4.15), which
    answers for the calling thread's network namespace, where the device
    is being made or configured; sysfs shows only the namespace /sys was
    mounted in, so it serves only kernels whose answer lacks them.  An
    interface that is not there has neither.
    """
    sock = control_socket()
    try:
        request = fixed("struct ifinfomsg", ifi_family=lib.AF_UNSPEC) + attr(lib.IFLA_IFNAME, name.encode("ascii") + b"\0")
        try:
            answers = RtNetlink(sock).request(lib.RTM_GETLINK, 0, request, what=f"cannot read the owner of {name}", name=name)
        except DeviceNotFoundError:
            return None, None
    finally:
        close_quietly(sock)
    size = ffi.sizeof("struct ifinfomsg")
    for kind, body in answers:
        if kind != lib.RTM_NEWLINK or len(body) < size:
            continue
        for akind, info in parse_attrs(body[size:]):
            if akind != lib.IFLA_LINKINFO:
                continue
            parts = dict(parse_attrs(info))
            if bytes(parts.get(lib.IFLA_INFO_KIND, b"")).rstrip(b"\0") == b"tun" and lib.IFLA_INFO_DATA in parts:
                ids = dict(parse_attrs(parts[lib.IFLA_INFO_DATA]))
                return _u32(ids.get(lib.IFLA_TUN_OWNER)), _u32(ids.get(lib.IFLA_TUN_GROUP))
    return _sysfs_owner_and_group(name)


def _u32(value: Optional[memoryview]) -> Optional[int]:
    """A u32 netlink attribute's value (host order), None if absent."""
    return int.from_bytes(value[:4], sys.byteorder) if value is not None and len(value) >= 4 else None


def _sysfs_owner_and_group(name: str) -> Tuple[Optional[int], Optional[int]]:
    """owner_and_group() from sysfs (kernels before 4.15), None where unset or not shown."""
    ids: List[Optional[int]] = []
    for attr_name in ("owner", "group"):
        try:
            with open(f"/sys/class/net/{name}/{attr_name}") as f:
                value = int(f.read().strip())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            value = -1
        ids.append(None if value < 0 else value)
    return ids[0], ids[1]


def sysfs_tun_flags(name: str) -> Optional[int]:
    """Return the IFF_* flags of TUN/TAP interface *name* from sysfs, or None if it is none."""
    try:
        with open(f"/sys/class/net/{name}/tun_flags") as f:
            return int(f.read().strip(), 16)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def control_socket() -> int:
    """Return a new NETLINK_ROUTE socket fd for link ioctls (and rtnetlink)."""
    return check(
        lib.socket,
        socket.AF_NETLINK,
        socket.SOCK_RAW | socket.SOCK_CLOEXEC,
        0,  # NETLINK_ROUTE
        op="socket",
        what="cannot open a NETLINK_ROUTE control socket",
    )


def inet_socket() -> int:
    """Return a new AF_INET datagram socket for the IPv4 address ioctls (SIOCGIFADDR & co. need one)."""
    return check(
        lib.socket,
        socket.AF_INET,
        socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
        0,
        op="socket",
        what="cannot open an AF_INET socket for interface ioctls",
    )


# The IPv4 address fields of an ifreq: (get request, set request, ifreq member).
INET_FIELDS: Dict[str, Tuple[int, int, str]] = {
    "addr": (lib.SIOCGIFADDR, lib.SIOCSIFADDR, "ifr_addr"),
    "dstaddr": (lib.SIOCGIFDSTADDR, lib.SIOCSIFDSTADDR, "ifr_dstaddr"),
    "netmask": (lib.SIOCGIFNETMASK, lib.SIOCSIFNETMASK, "ifr_netmask"),
}


def get_inet(sock: int, name: str, field: str) -> str:
    """``SIOCGIF{ADDR,DSTADDR,NETMASK}`` on *sock*: the interface's IPv4 address field, dotted."""
    request, _, member = INET_FIELDS[field]
    ifr = ifreq(name)
    check(lib.ioctl, sock, request, ifr, op="ioctl", name=name, what=f"cannot read the {field} of {name}")
    sin = ffi.cast("struct sockaddr_in *", ffi.addressof(ifr[0], member))
    return socket.inet_ntoa(bytes(ffi.buffer(ffi.addressof(sin[0], "sin_addr"), 4)))


def set_inet(sock: int, name: str, field: str, packed: bytes) -> None:
    """``SIOCSIF{ADDR,DSTADDR,NETMASK}`` on *sock* with an AF_INET sockaddr holding *packed*."""
    _, request, member = INET_FIELDS[field]
    ifr = ifreq(name)
    sin = ffi.cast("struct sockaddr_in *", ffi.addressof(ifr[0], member))
    sin.sin_family = socket.AF_INET
    ffi.memmove(ffi.addressof(sin[0], "sin_addr"), packed, 4)
    what = f"cannot set the {field} of {name} to {socket.inet_ntoa(packed)}"
    check(lib.ioctl, sock, request, ifr, op="ioctl", name=name, what=what)


def get_link_flags(ctl: int, name: str) -> int:
    """``SIOCGIFFLAGS``: the interface's IFF_UP/IFF_RUNNING/... flags."""
    ifr = ifreq(name)
    check(lib.ioctl, ctl, lib.SIOCGIFFLAGS, ifr, op="ioctl", name=name, what=f"cannot read the flags of {name}")
    flags: int = ifr.ifr_flags & 0xFFFF
    return flags


def set_link_flags(ctl: int, name: str, flags: int) -> None:
    """``SIOCSIFFLAGS``: set the interface flags (needs CAP_NET_ADMIN)."""
    ifr = ifreq(name)
    ifr.ifr_flags = _short(flags)
    check(lib.ioctl, ctl, lib.SIOCSIFFLAGS, ifr, op="ioctl", name=name, what=f"cannot set the flags of {name}")


# The int-valued ifreq requests: (getter, setter, ifreq field, description).
INT_FIELDS = {
    "mtu": (lib.SIOCGIFMTU, lib.SIOCSIFMTU, "ifr_mtu", "MTU"),
    "txqueuelen": (lib.SIOCGIFTXQLEN, lib.SIOCSIFTXQLEN, "ifr_qlen", "transmit queue length"),
    "ifindex": (lib.SIOCGIFINDEX, None, "ifr_ifindex", "interface index"),
}


def get_int(ctl: int, name: str, field: str) -> int:
    """Read an int-valued link setting (``mtu``, ``txqueuelen``, ``ifindex``)."""
    req, _, member, desc = INT_FIELDS[field]
    ifr = ifreq(name)
    check(lib.ioctl, ctl, req, ifr, op="ioctl", name=name, what=f"cannot read the {desc} of {name}")
    value: int = getattr(ifr, member)
    return value


def set_int(ctl: int, name: str, field: str, value: int) -> None:
    """Write an int-valued link setting (``mtu``, ``txqueuelen``)."""
    _, req, member, desc = INT_FIELDS[field]
    assert req is not None
    ifr = ifreq(name)
    setattr(ifr, member, value)
    check(lib.ioctl, ctl, req, ifr, op="ioctl", name=name, what=f"cannot set the {desc} of {name} to {value}")


def delete_persistent(name: str) -> None:
    """Attach to persistent interface *name*, clear IFF_PERSIST, close: it disappears.

    Unless another fd holds it.  A single-queue interface then refuses the
    attach (EBUSY).  A multi-queue one lets a new queue attach while others
    are held, so the others are looked for: attached queues show in sysfs
    (queues/rx-N, one per attached queue); a detached queue only shows in
    that the interface outlives our close, and then IFF_PERSIST is set
    back.  Either way: DeviceBusyError, and the interface stays as it was.
    """
    flags = sysfs_tun_flags(name)
    if flags is None:
        raise DeviceNotFoundError(errno.ENODEV, "no TUN/TAP interface of that name", name)
    # Attach with the interface's own kind and queue mode, or TUNSETIFF says EINVAL.
    keep = lib.IFF_TUN | lib.IFF_TAP | lib.IFF_MULTI_QUEUE | lib.IFF_NO_PI | lib.IFF_VNET_HDR
    kind = "TAP" if flags & lib.IFF_TAP else "TUN"
    multi = bool(flags & lib.IFF_MULTI_QUEUE)
    fd, _ = create(name, flags & keep, None, None, None if multi else False, kind)
    if multi:
        try:
            held = _attached_queues(name) - 1  # ours is one of them
            if held > 0:
                raise DeviceBusyError(errno.EBUSY, f"cannot delete {name}: {held} other queue(s) of it are open: close them first", name)
            set_persist(fd, name, False)
        finally:
            close_quietly(fd)
        if sysfs_tun_flags(name) is not None:  # a detached queue still holds it
            fd, _ = create(name, flags & keep, None, None, True, kind)
            close_quietly(fd)
            raise DeviceBusyError(errno.EBUSY, f"cannot delete {name}: a detached queue of it is still open: close it first", name)
        return
    close_quietly(fd)


def _attached_queues(name: str) -> int:
    """How many queues are attached to multi-queue interface *name* (tun keeps one rx-N per queue in sysfs)."""
    try:
        return sum(1 for entry in os.listdir(f"/sys/class/net/{name}/queues") if entry.startswith("rx-"))
    except FileNotFoundError:
        return 0


def get_hwaddr(ctl: int, name: str) -> bytes:
    """``SIOCGIFHWADDR``: the 6-byte MAC address of an Ethernet-type interface."""
    ifr = ifreq(name)
    check(lib.ioctl, ctl, lib.SIOCGIFHWADDR, ifr, op="ioctl", name=name, what=f"cannot read the hardware address of {name}")
    return bytes(ffi.buffer(ifr.ifr_hwaddr.sa_data, 6))


def set_hwaddr(ctl: int, name: str, mac: bytes) -> None:
    """``SIOCSIFHWADDR``: set the MAC address (sa_family must be the device type, ARPHRD_ETHER)."""
    ifr = ifreq(name)
    ifr.ifr_hwaddr.sa_family = lib.ARPHRD_ETHER
    ffi.memmove(ifr.ifr_hwaddr.sa_data, mac, 6)
    check(lib.ioctl, ctl, lib.SIOCSIFHWADDR, ifr, op="ioctl", name=name, what=f"cannot set the hardware address of {name} to {mac.hex(':')}")


def set_vnet_hdr_size(fd: int, name: str, size: int) -> None:
    """``TUNSETVNETHDRSZ``: the virtio-net header in front of each packet (10, 12, 20 or 24 bytes)."""
    check(lib.ioctl, fd, _ioctl.TUNSETVNETHDRSZ, ffi.new("int *", size), op="ioctl", name=name,
          what=f"cannot set a {size}-byte virtio-net header on {name}")


def set_offload(fd: int, name: str, flags: int) -> None:
    """``TUNSETOFFLOAD``: the TUN_F_* offloads this reader/writer handles (value argument)."""
    check(lib.ioctl, fd, _ioctl.TUNSETOFFLOAD, ffi.cast("unsigned long", flags), op="ioctl", name=name,
          what=f"cannot set offloads {flags:#x} on {name}")


def set_queue(fd: int, name: str, attach: bool) -> None:
    """``TUNSETQUEUE``: attach this fd's queue to its multi-queue interface, or detach it.

    The kernel says EINVAL both for a queue already in the state asked for
    and for an interface deleted under the fd (tun_set_queue finds no tun);
    TUNGETIFF tells the second apart (EBADFD), which gets the deleted
    interface's error (DeviceNotReadyError, errno still EINVAL).
    """
    ifr = ifreq("")
    ifr.ifr_flags = lib.IFF_ATTACH_QUEUE if attach else lib.IFF_DETACH_QUEUE
    what = f"cannot {'attach' if attach else 'detach'} a queue of {name}"
    try:
        check(lib.ioctl, fd, _ioctl.TUNSETQUEUE, ifr, op="ioctl", name=name, what=what)
    except TunTapError as exc:
        if exc.errno != errno.EINVAL or lib.ioctl(fd, _ioctl.TUNGETIFF, ifreq("")) >= 0 or ffi.errno != errno.EBADFD:
            raise
        raise error_from_errno(errno.EINVAL, "queue_deleted", name, what) from None


def get_vnet_hdr_size(fd: int, name: str) -> int:
    """``TUNGETVNETHDRSZ``: the virtio-net header size of an fd opened elsewhere."""
    size = ffi.new("int *")
    check(lib.ioctl, fd, _ioctl.TUNGETVNETHDRSZ, size, op="ioctl", name=name, what=f"cannot read the virtio-net header size of {name}")
    value: int = size[0]
    return value


def get_sndbuf(fd: int, name: str) -> int:
    """``TUNGETSNDBUF``: the bytes of written packets the kernel may hold at once (INT_MAX: no limit)."""
    size = ffi.new("int *")
    check(lib.ioctl, fd, _ioctl.TUNGETSNDBUF, size, op="ioctl", name=name, what=f"cannot read the send buffer of {name}")
    value: int = size[0]
    return value


def set_sndbuf(fd: int, name: str, size: int) -> None:
    """``TUNSETSNDBUF``: see :func:`get_sndbuf` (it applies to every queue of the interface)."""
    check(lib.ioctl, fd, _ioctl.TUNSETSNDBUF, ffi.new("int *", size), op="ioctl", name=name,
          what=f"cannot set the send buffer of {name} to {size} bytes")


def get_link_type(ctl: int, name: str) -> int:
    """The interface's ARPHRD_* type: ``SIOCGIFHWADDR``'s sa_family (it answers in any namespace)."""
    ifr = ifreq(name)
    check(lib.ioctl, ctl, lib.SIOCGIFHWADDR, ifr, op="ioctl", name=name, what=f"cannot read the link type of {name}")
    kind: int = ifr.ifr_hwaddr.sa_family
    return kind


def set_link_type(fd: int, name: str, kind: int) -> None:
    """``TUNSETLINK`` (value argument): the ARPHRD_* type; tun refuses it with EBUSY while the interface is up."""
    try:
        check(lib.ioctl, fd, _ioctl.TUNSETLINK, ffi.cast("unsigned long", kind), op="ioctl", name=name,
              what=f"cannot set the link type of {name} to {kind}")
    except TunTapError as exc:
        if exc.errno != errno.EBUSY:
            raise
        raise DeviceBusyError(errno.EBUSY, f"cannot set the link type of {name} to {kind}: the kernel changes "
                              "it only while the interface is down: call Device.down() first", name) from None


# ------------------------------------------------------------ packet filters (see tuntap_cffi.bpf)

def _bpf_syscall_number(machine: str) -> Optional[int]:
    """``__NR_bpf`` for a ``uname -m`` machine, None where it is not known here."""
    m = machine.lower()
    if m == "x86_64":
        return 321
    if m in ("i386", "i486", "i586", "i686"):
        return 357
    if m.startswith(("aarch64", "arm64", "riscv", "loongarch")):
        return 280  # the generic table
    if m.startswith("arm"):
        return 386
    if m.startswith(("ppc", "powerpc")):
        return 361
    if m.startswith("s390"):
        return 351
    return None


_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_LOG_SIZE = 1 << 20


def _load_socket_filter(name: str, insns: bytes) -> int:
    """``bpf(BPF_PROG_LOAD)`` of eBPF socket-filter *insns*; return the program fd (O_CLOEXEC).

    The attr is the head of ``union bpf_attr`` (prog_type, insn_cnt, insns,
    license, log_level, log_size, log_buf, kern_version, prog_flags); the
    kernel takes a shorter attr as long as the rest would be zero.  A refused
    program is loaded again with the verifier's log, for the message.
    """
    nr = _bpf_syscall_number(os.uname().machine)
    if nr is None:
        raise TunTapError(errno.ENOSYS, f"cannot filter on TUN {name}: the bpf() syscall number of "
                          f"{os.uname().machine} is not known to tuntap_cffi", name)
    code = ffi.from_buffer(insns)
    license = ffi.new("char[]", b"GPL")
    log = ffi.new("char[]", _BPF_LOG_SIZE)
    for log_level in (0, 1):
        attr = bytearray(struct.pack(
            "=IIQQIIQII", _BPF_PROG_TYPE_SOCKET_FILTER, len(insns) // 8, int(ffi.cast("uintptr_t", code)),
            int(ffi.cast("uintptr_t", license)), log_level, _BPF_LOG_SIZE if log_level else 0,
            int(ffi.cast("uintptr_t", log)) if log_level else 0, 0, 0))
        while True:
            fd: int = lib.syscall(ffi.cast("long", nr), ffi.cast("int", _BPF_PROG_LOAD),
                                  ffi.cast("void *", ffi.from_buffer(attr)), ffi.cast("unsigned int", len(attr)))
            if fd >= 0 or ffi.errno != errno.EINTR:
                break
        if fd >= 0:
            return fd
        err = ffi.errno
        if err in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP) or log_level:
            break
    if err == errno.EPERM:
        raise error_from_errno(err, "ioctl", name, f"cannot load the filter of TUN {name}: a TUN's filter is an "
                               "eBPF program, and loading one needs CAP_BPF or CAP_SYS_ADMIN")
    verifier = ffi.string(log).decode(errors="replace").strip().splitlines()[-8:]
    raise error_from_errno(err, "ioctl", name, f"the kernel refused the eBPF translation of the filter of TUN {name}"
                           + (": " + " | ".join(verifier) if verifier else ""))


# The sock_fprog (and its instructions) last attached to each TAP by this
# process: the kernel keeps that user pointer for the interface, not for
# the fd, and reads it again when a queue attaches later (tun_attach), so
# it must outlive the Device that attached it.  One entry per interface
# name, replaced by the next attach, dropped by a detach.
_attached_fprogs: Dict[str, Any] = {}


def attach_filter(fd: int, name: str, tap: bool, program: Tuple[Tuple[int, int, int, int], ...]) -> None:
    """Attach classic BPF *program* (checked) to the interface of *fd*.

    A TAP: ``TUNATTACHFILTER`` with a ``struct sock_fprog`` (kept alive: see
    ``_attached_fprogs``).  A TUN: ``TUNSETFILTEREBPF`` with the program
    translated to eBPF; the kernel holds the loaded program, whose fd is
    closed here.
    """
    if tap:
        insns = ffi.new("struct sock_filter[]", len(program))
        for i, (code, jt, jf, k) in enumerate(program):
            insns[i].code, insns[i].jt, insns[i].jf, insns[i].k = code, jt, jf, k
        fprog = ffi.new("struct sock_fprog *")
        fprog.len, fprog.filter = len(program), insns
        check(lib.ioctl, fd, _ioctl.TUNATTACHFILTER, fprog, op="ioctl", name=name,
              what=f"cannot attach a {len(program)}-instruction filter to TAP {name}")
        _attached_fprogs[name] = (fprog, insns)
        return
    prog_fd = _load_socket_filter(name, to_ebpf(program))
    try:
        check(lib.ioctl, fd, _ioctl.TUNSETFILTEREBPF, ffi.new("int *", prog_fd), op="ioctl", name=name,
              what=f"cannot attach a filter to TUN {name} (TUNSETFILTEREBPF, Linux 4.16+)")
    finally:
        close_quietly(prog_fd)


def detach_filter(fd: int, name: str, tap: bool) -> None:
    """Remove the filter of *fd*'s interface (``TUNDETACHFILTER`` on a TAP, ``TUNSETFILTEREBPF`` -1 on a TUN)."""
    if tap:
        check(lib.ioctl, fd, _ioctl.TUNDETACHFILTER, ffi.NULL, op="ioctl", name=name,
              what=f"cannot detach the filter of TAP {name}")
        _attached_fprogs.pop(name, None)
    else:
        check(lib.ioctl, fd, _ioctl.TUNSETFILTEREBPF, ffi.new("int *", -1), op="ioctl", name=name,
              what=f"cannot detach the filter of TUN {name}")


def config_channel(ctl: int) -> RtNetlink:
    """rtnetlink over the control socket: the channel ``config``'s address and route calls take.

    Those calls (``config.add_address`` ...) are this backend's, re-exported unchanged.
    """
    return RtNetlink(ctl)


def set_carrier(fd: int, name: str, on: bool) -> None:
    """``TUNSETCARRIER`` (4.19): switch the interface's carrier on or off (needs CAP_NET_ADMIN)."""
    check(lib.ioctl, fd, _ioctl.TUNSETCARRIER, ffi.new("int *", int(on)), op="ioctl", name=name,
          what=f"cannot switch the carrier of {name} {'on' if on else 'off'} (TUNSETCARRIER, Linux 4.19)")


def event_source(dev: Any, rcvbuf: Optional[int]) -> NetlinkSource:
    """A NETLINK_ROUTE socket bound to the link and address groups, in *dev*'s namespace (``_nlevents``)."""
    return NetlinkSource(dev, rcvbuf)
