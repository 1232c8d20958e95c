"""Link settings of a Device: MTU, up/down, addresses, routes, MAC, persistence, sndbuf, link type, carrier, netns.

Internal: :class:`LinkConfig` is a base of :class:`~tuntap_cffi.device.Device`,
which is where these members are documented and used.  Each one reaches the
kernel through the platform backend (``_backend``: link ioctls on a control
socket, TUNSETPERSIST on the device's fd, and addresses and routes over the
backend's configuration channel on that same socket: rtnetlink on Linux,
whose messages ``config`` builds and reads, ioctls and PF_ROUTE on the
BSDs), so this module is the device's side of config.py and the backends.

The control socket is made on first use and closed with the device; calls
that hold it (or the device's fd) across Python code announce themselves
(``_announce``), so close() frees neither under them.

Namespaces: a socket acts in the network namespace it was made in, so the
control socket is made inside the device's namespace (``TUNGETDEVNETNS``;
the backend makes it from a short-lived thread when that is not the
caller's: see ``_linux.netns``).  :meth:`LinkConfig.move_to_netns` makes
the new namespace's socket first, moves the interface, then puts the new
socket over the old one's fd number (``dup3``): a thread using the number
meanwhile never meets a closed or reused fd.  A move made by someone else
(``ip link set NAME netns X``) is not noticed: call ``move_to_netns`` to
move a Device, or its link settings keep acting where it was.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Interface, IPv6Interface
import os
from typing import Any, Callable, TYPE_CHECKING, List, Optional, Tuple, TypeVar, Union

from . import _backend, config
from ._announce import announced
from ._capabilities import Feature
from ._constants import MAX_MTU, MIN_MTU, DeviceKind, NetNamespace, NetnsSpec
from ._netlink import RtNetlink
from ._syscalls import check, close_quietly, lib
from ._validate import check_bool, check_int_in, check_link_type, check_netns, check_sndbuf
from .errors import DeviceClosedError

__all__ = ["LinkConfig"]

_T = TypeVar("_T")


def _keep(_: object) -> None:
    """in_netns's *undo* for a call that made nothing to close."""


class LinkConfig:
    """The interface settings of a Device (a base class of it: see there)."""

    # What these members use of the Device (set in its __init__).
    _fd: int
    _name: str
    _flags: int
    _kind: DeviceKind
    _closed: bool
    _everyone: bool  # opened with owner=EVERYONE (see persistent)
    _lock: threading.Lock
    _ctl: int  # the control socket, -1 until first use
    _rtnl: Any  # the backend's configuration channel over _ctl (rtnetlink on Linux), None until first use
    _mtu_cache: int  # the last MTU read, -1 before

    # The announcements: the Device binds its FdLife's methods here (see _lifecycle).
    _enter: Callable[[], int]
    _exit: Callable[[int], None]
    _others_inside: Callable[[], bool]

    if TYPE_CHECKING:  # (the Device's own)
        def _recheck_read_buffer(self) -> None: ...

    def _control(self) -> int:
        if self._closed:
            raise DeviceClosedError(self._name)
        ctl = self._ctl
        if ctl < 0:
            with self._lock:
                if self._ctl < 0:
                    backend = _backend.current()
                    self._ctl = self._in_own_netns(backend.control_socket, close_quietly)
                ctl = self._ctl
        return ctl

    def _in_own_netns(self, func: Callable[[], _T], undo: Callable[[_T], None]) -> _T:
        """``func()`` run inside the device's network namespace (see ``in_netns``; *undo* frees what it made).

        Where the namespace cannot be told (a kernel before 5.2, no
        CAP_NET_ADMIN over it) or the platform has none, *func* runs here.
        """
        if not _backend.supports(Feature.NETNS):
            return func()
        backend = _backend.current()
        try:
            nsfd = backend.device_netns(self._fd, self._name)
        except OSError:
            return func()
        try:
            return backend.in_netns(nsfd, func, undo)
        finally:
            close_quietly(nsfd)

    @announced
    def _current_mtu(self) -> int:
        """The MTU, read from the kernel (it can change under us), cached on failure."""
        ctl = self._control()
        try:
            self._mtu_cache = _backend.current().get_int(ctl, self._name, "mtu")
        except OSError:
            # Not visible from here (moved to another namespace?): assume the
            # largest MTU tun allows unless we saw the real one before.
            if self._mtu_cache < 0:
                return MAX_MTU
        return self._mtu_cache

    @property
    def mtu(self) -> int:
        """The interface MTU in bytes (settable; setting needs CAP_NET_ADMIN)."""
        return self._current_mtu()

    @mtu.setter
    @announced
    def mtu(self, value: int) -> None:
        check_int_in("mtu", value, MIN_MTU, MAX_MTU)
        _backend.current().set_int(self._control(), self._name, "mtu", value)
        self._mtu_cache = value
        self._recheck_read_buffer()

    @property
    @announced
    def txqueuelen(self) -> int:
        """The transmit queue length: packets the kernel holds for a slow reader (settable)."""
        _backend.require(Feature.TXQUEUELEN, self._name)  # before the control socket is made
        return _backend.current().get_int(self._control(), self._name, "txqueuelen")

    @txqueuelen.setter
    @announced
    def txqueuelen(self, value: int) -> None:
        check_int_in("txqueuelen", value, 0, 2**31 - 1, "2**31-1")
        _backend.require(Feature.TXQUEUELEN, self._name)
        _backend.current().set_int(self._control(), self._name, "txqueuelen", value)

    @property
    @announced
    def ifindex(self) -> int:
        """The kernel's interface index."""
        return _backend.current().get_int(self._control(), self._name, "ifindex")

    @property
    @announced
    def is_up(self) -> bool:
        """True if the interface is administratively up (IFF_UP)."""
        return bool(_backend.current().get_link_flags(self._control(), self._name) & lib.IFF_UP)

    def up(self) -> None:
        """Bring the interface up (``ip link set NAME up``); harmless if it is up."""
        self._set_up(True)

    def down(self) -> None:
        """Take the interface down; harmless if it is down."""
        self._set_up(False)

    @announced
    def _set_up(self, on: bool) -> None:
        backend = _backend.current()
        ctl = self._control()
        flags = backend.get_link_flags(ctl, self._name)
        new = flags | lib.IFF_UP if on else flags & ~lib.IFF_UP
        if new != flags:
            backend.set_link_flags(ctl, self._name, new)

    # ----------------------------------------------------------- configuration

    def _channel(self) -> Any:
        chan = self._rtnl
        if chan is None:
            ctl = self._control()
            with self._lock:
                if self._rtnl is None:
                    self._rtnl = _backend.current().config_channel(ctl)
                chan = self._rtnl
        return chan

    @announced
    def add_address(self, address: "Union[str, config.IPInterface, config.IPAddress]", peer: "Union[str, config.IPAddress, None]" = None) -> None:
        """Add an IPv4 or IPv6 address, e.g. ``"10.8.0.1/24"`` or ``"fd00::1/64"``.

        With *peer* (``"10.8.0.2"``) the address is point-to-point: the
        prefix, /32 or /128 if none is given, is the peer's.  Adding an
        address that is already there is harmless.  Needs CAP_NET_ADMIN.
        """
        local = config.parse_interface(address)
        peer_ip = None if peer is None else config.parse_address_for(peer, "peer", local, "address")
        _backend.require(Feature.ADDRESSES, self._name)
        _backend.current().add_address(self._channel(), self.ifindex, self._name, local, peer_ip)

    @announced
    def remove_address(self, address: "Union[str, config.IPInterface, config.IPAddress]") -> None:
        """Remove an address; without a /prefix, every prefix of that address.

        Removing an address the interface does not have is harmless.
        """
        given = config.parse_interface(address)
        _backend.require(Feature.ADDRESSES, self._name)
        exact = isinstance(address, (IPv4Interface, IPv6Interface)) or (
            isinstance(address, str) and "/" in address
        )
        backend, chan, index = _backend.current(), self._channel(), self.ifindex
        if exact:
            targets = [given]
        else:
            targets = [a.interface for a in backend.list_addresses(chan, index, self._name) if a.interface.ip == given.ip]
        for target in targets:
            backend.remove_address(chan, index, self._name, target)

    @announced
    def _link_snapshot(self) -> "Tuple[config.LinkState, List[config.Address]]":
        """The link's state and addresses as the kernel has them now (for the event iterators to diff against)."""
        nl, index = self._channel(), self.ifindex
        return config.get_link(nl, index, self._name), config.list_addresses(nl, index, self._name)

    @property
    @announced
    def addresses(self) -> "List[config.Address]":
        """Every IPv4 and IPv6 address of the interface (link-local ones too)."""
        _backend.require(Feature.ADDRESSES, self._name)
        return _backend.current().list_addresses(self._channel(), self.ifindex, self._name)

    @announced
    def add_route(self, destination: "Union[str, config.IPNetwork]", gateway: "Union[str, config.IPAddress, None]" = None, metric: Optional[int] = None) -> None:
        """Route *destination* (``"10.9.0.0/16"``, ``"::/0"``) out of this interface.

        Main table; *gateway* optional; *metric* the route priority.  An
        identical route is harmless; a route to the same destination through
        another interface is left alone (no replace).  Needs CAP_NET_ADMIN.
        """
        dst, gw, prio = self._route_args(destination, gateway, metric)
        _backend.require(Feature.ROUTES, self._name)
        _backend.current().add_route(self._channel(), self.ifindex, self._name, dst, gw, prio)

    @announced
    def remove_route(self, destination: "Union[str, config.IPNetwork]", gateway: "Union[str, config.IPAddress, None]" = None, metric: Optional[int] = None) -> None:
        """Remove a route out of this interface; an absent route is harmless."""
        dst, gw, prio = self._route_args(destination, gateway, metric)
        _backend.require(Feature.ROUTES, self._name)
        _backend.current().remove_route(self._channel(), self.ifindex, self._name, dst, gw, prio)

    @property
    @announced
    def routes(self) -> "List[config.Route]":
        """The main table's unicast routes out of this interface, IPv4 then IPv6."""
        _backend.require(Feature.ROUTES, self._name)
        return _backend.current().list_routes(self._channel(), self.ifindex, self._name)

    def disable_ipv6(self) -> None:
        """Turn IPv6 off on this interface: once up, it sends nothing of its own.

        A TUN that is up sends IPv6 router solicitations and MLD reports,
        which a capture counts as packets; call this before :meth:`up` to
        keep it quiet.  It also drops the interface's IPv6 addresses.
        Harmless when the kernel has no IPv6.  Needs CAP_NET_ADMIN.
        """
        _backend.require(Feature.DISABLE_IPV6, self._name)
        if self._closed:
            raise DeviceClosedError(self._name)
        self._in_own_netns(lambda: config.set_ipv6(self._name, False), _keep)  # /proc/sys/net is per thread

    @staticmethod
    def _route_args(destination: object, gateway: object, metric: object) -> "Tuple[config.IPNetwork, Optional[config.IPAddress], Optional[int]]":
        dst = config.parse_network(destination)
        gw = None if gateway is None else config.parse_address_for(gateway, "gateway", dst, "destination")
        if metric is not None:
            metric = check_int_in("metric", metric, 0, 2**32 - 1, "2**32-1")
        return dst, gw, metric

    @property
    @announced
    def hwaddr(self) -> Optional[str]:
        """The MAC address of a TAP (``"02:00:5e:..."``), settable; None for a TUN."""
        if self._kind is DeviceKind.TUN:
            if self._closed:
                raise DeviceClosedError(self._name)
            return None
        return config.format_mac(_backend.current().get_hwaddr(self._control(), self._name))

    @hwaddr.setter
    @announced
    def hwaddr(self, value: "Union[str, bytes]") -> None:
        mac = config.parse_mac(value)
        if self._kind is DeviceKind.TUN:
            raise ValueError(f"{self._name} is a TUN device: it has no hardware address")
        _backend.current().set_hwaddr(self._control(), self._name, mac)

    @property
    def persistent(self) -> bool:
        """True if the interface outlives its last fd (``TUNSETPERSIST``); settable.

        Setting True on an interface that is not persistent and has neither
        owner nor group also makes this process's effective uid its owner,
        as ``open_tun(persist=True)`` does, unless the device was opened with
        ``owner=EVERYONE``.
        """
        backend = _backend.current()
        if not self._closed and _backend.supports(Feature.NETNS):
            # TUNGETIFF holds the kernel's flags wherever the interface is;
            # sysfs shows only the namespace /sys was mounted in, where
            # another interface may have this name.
            me = self._enter()
            try:
                return bool(backend.get_iff(self._fd)[1] & lib.IFF_PERSIST)
            except OSError:
                pass  # deleted under us (EBADFD): what sysfs or our flags say
            finally:
                self._exit(me)
        flags = backend.sysfs_tun_flags(self._name)
        return bool((flags if flags is not None else self._flags) & lib.IFF_PERSIST)

    @persistent.setter
    @announced
    def persistent(self, value: bool) -> None:
        check_bool("persistent", value)
        if self._closed:
            raise DeviceClosedError(self._name)
        backend = _backend.current()
        # Inside the device's namespace: set_persist looks its owner up there.
        self._in_own_netns(lambda: backend.set_persist(self._fd, self._name, value, self._everyone), _keep)
        self._flags = self._flags | lib.IFF_PERSIST if value else self._flags & ~lib.IFF_PERSIST

    # ------------------------------------------------------ send buffer, link type

    @property
    @announced
    def sndbuf(self) -> int:
        """Bytes of written packets the kernel may hold for the interface at once (``TUNGETSNDBUF``; settable).

        2**31-1, the default, means no limit.  With a limit, a write that
        would pass it waits (or raises ``BlockingIOError`` on a non-blocking
        device) until the kernel has passed earlier packets on.  It is the
        interface's: every queue and fd of it shares the value.
        """
        _backend.require(Feature.SNDBUF, self._name)
        if self._closed:
            raise DeviceClosedError(self._name)
        return _backend.current().get_sndbuf(self._fd, self._name)

    @sndbuf.setter
    @announced
    def sndbuf(self, value: int) -> None:
        size = check_sndbuf(value)
        _backend.require(Feature.SNDBUF, self._name)
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.current().set_sndbuf(self._fd, self._name, size)

    @property
    @announced
    def link_type(self) -> int:
        """The interface's ARPHRD_* type: 1 (Ethernet) for a TAP, 65534 (ARPHRD_NONE) for a TUN; settable on a TAP.

        Setting it (``TUNSETLINK``) changes what the interface tells the
        stack and tools it carries, e.g. ``ARPHRD_NONE`` for raw IP over a
        TAP; the frames still move as the TAP moves them.  The kernel takes it
        only while the interface is down: else :class:`DeviceBusyError`.
        A TUN's type is refused with ValueError: a TUN has no link layer to name.
        """
        _backend.require(Feature.LINK_TYPE, self._name)
        return _backend.current().get_link_type(self._control(), self._name)

    @link_type.setter
    @announced
    def link_type(self, value: int) -> None:
        kind = check_link_type(value)
        _backend.require(Feature.LINK_TYPE, self._name)
        if self._kind is not DeviceKind.TAP:
            raise ValueError(f"{self._name} is a TUN: link_type can be set on a TAP only (a TUN is ARPHRD_NONE)")
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.current().set_link_type(self._fd, self._name, kind)

    # ------------------------------------------------------ carrier, namespace

    @property
    @announced
    def carrier(self) -> bool:
        """Whether the interface has carrier (settable: ``TUNSETCARRIER``, Linux 4.19; needs CAP_NET_ADMIN).

        Without carrier the interface is NO-CARRIER in ``ip link`` and the
        kernel sends nothing through it (the packets are dropped, not
        queued), as if the cable were pulled; reading and writing the
        device still work.  Read from the kernel (IFLA_CARRIER) in the
        device's namespace.  ``open_tun(carrier=False)`` opens it without.
        """
        _backend.require(Feature.CARRIER, self._name)
        return config.get_carrier(self._channel(), self.ifindex, self._name)

    @carrier.setter
    @announced
    def carrier(self, value: bool) -> None:
        check_bool("carrier", value)
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.require(Feature.CARRIER, self._name)
        _backend.current().set_carrier(self._fd, self._name, value)

    @property
    @announced
    def netns(self) -> NetNamespace:
        """The network namespace the interface is in now, as a :class:`NetNamespace`.

        ``inode`` identifies it (``net:[INODE]`` in ``readlink
        /proc/PID/ns/net``), ``name`` is its ``ip netns`` name or None,
        ``current`` says whether it is the calling thread's namespace.
        Needs ``TUNGETDEVNETNS`` (Linux 5.2) and CAP_NET_ADMIN over that
        namespace.
        """
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.require(Feature.NETNS, self._name)
        backend = _backend.current()
        nsfd = backend.device_netns(self._fd, self._name)
        try:
            return backend.describe_netns(nsfd)
        finally:
            close_quietly(nsfd)

    @announced
    def move_to_netns(self, netns: NetnsSpec) -> None:
        """Move the interface into network namespace *netns*: a name (``ip netns``), a path or an fd.

        Its addresses and routes stay behind (the kernel drops them) and it
        arrives down, keeping its name, MTU and (for a TAP) its MAC; every
        link setting then acts there.  The Device keeps working: packets
        are read and written as before.  Raises
        :class:`NamespaceNotFoundError` for an unknown name or path,
        ValueError for a file or fd that is not a network namespace, and a
        TunTapError (EEXIST) if that namespace has an interface of this
        name; the interface then stays where it was.  Needs CAP_NET_ADMIN
        over both namespaces.
        """
        ns = check_netns("netns", netns)
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.require(Feature.NETNS, self._name)
        backend = _backend.current()
        target = backend.open_netns(ns)
        try:
            nl, index = self._channel(), self.ifindex
            # The socket for the new namespace first: once the interface
            # has moved, nothing may fail before the old socket is replaced.
            new = backend.in_netns(target, backend.control_socket, close_quietly)
            try:
                config.move_link(nl, index, self._name, target, repr(ns) if isinstance(ns, str) else f"fd {ns}")
                with self._lock:
                    check(lib.dup3, new, self._ctl, os.O_CLOEXEC, op="dup3", name=self._name,
                          what=f"cannot replace the control socket of {self._name} after its move")
                    self._rtnl = None  # the next request sets its socket options up again
            finally:
                close_quietly(new)
        finally:
            close_quietly(target)
