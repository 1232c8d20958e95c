"""Link configuration of a Device: MTU, up/down, addresses, routes, MAC, persistence.

Internal: :class:`LinkConfig` is a base of :class:`~tuntap_cffi.device.Device`,
which is where these members are documented and used.  Each one reaches the
kernel through the platform backend (``_backend``: link ioctls on a control
socket, TUNSETPERSIST on the device's fd) or rtnetlink on that same socket
(``config`` builds and reads the messages), so this module is the device's
side of config.py and _linux/backend.py.

The control socket is made on first use and closed with the device; calls
that hold it (or the device's fd) across Python code announce themselves
(``_announce``), so close() frees neither under them.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Interface, IPv6Interface
from typing import Callable, TYPE_CHECKING, List, Optional, Tuple, Union

from . import _backend, config
from ._announce import announced
from ._constants import MAX_MTU, MIN_MTU, DeviceKind
from ._netlink import RtNetlink
from ._syscalls import lib
from ._validate import check_bool, check_int_in
from .errors import DeviceClosedError

__all__ = ["LinkConfig"]


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
    _rtnl: Optional[RtNetlink]  # rtnetlink over _ctl, made on first use
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
                    self._ctl = _backend.current().control_socket()
                ctl = self._ctl
        return ctl

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
        return _backend.current().get_int(self._control(), self._name, "txqueuelen")

    @txqueuelen.setter
    @announced
    def txqueuelen(self, value: int) -> None:
        check_int_in("txqueuelen", value, 0, 2**31 - 1, "2**31-1")
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

    def _netlink(self) -> RtNetlink:
        nl = self._rtnl
        if nl is None:
            ctl = self._control()
            with self._lock:
                if self._rtnl is None:
                    self._rtnl = RtNetlink(ctl)
                nl = self._rtnl
        return nl

    @announced
    def add_address(self, address: "Union[str, config.IPInterface, config.IPAddress]", peer: "Union[str, config.IPAddress, None]" = None) -> None:
        """Add an IPv4 or IPv6 address, e.g. ``"10.8.0.1/24"`` or ``"fd00::1/64"``.

        With *peer* (``"10.8.0.2"``) the address is point-to-point: the
        prefix, /32 or /128 if none is given, is the peer's.  Adding an
        address that is already there is harmless.  Needs CAP_NET_ADMIN.
        """
        local = config.parse_interface(address)
        peer_ip = None if peer is None else config.parse_address_for(peer, "peer", local, "address")
        config.add_address(self._netlink(), self.ifindex, self._name, local, peer_ip)

    @announced
    def remove_address(self, address: "Union[str, config.IPInterface, config.IPAddress]") -> None:
        """Remove an address; without a /prefix, every prefix of that address.

        Removing an address the interface does not have is harmless.
        """
        given = config.parse_interface(address)
        exact = isinstance(address, (IPv4Interface, IPv6Interface)) or (
            isinstance(address, str) and "/" in address
        )
        nl, index = self._netlink(), self.ifindex
        if exact:
            targets = [given]
        else:
            targets = [a.interface for a in config.list_addresses(nl, index, self._name) if a.interface.ip == given.ip]
        for target in targets:
            config.remove_address(nl, index, self._name, target)

    @announced
    def _link_snapshot(self) -> "Tuple[config.LinkState, List[config.Address]]":
        """The link's state and addresses as the kernel has them now (for the event iterators to diff against)."""
        nl, index = self._netlink(), self.ifindex
        return config.get_link(nl, index, self._name), config.list_addresses(nl, index, self._name)

    @property
    @announced
    def addresses(self) -> "List[config.Address]":
        """Every IPv4 and IPv6 address of the interface (link-local ones too)."""
        return config.list_addresses(self._netlink(), self.ifindex, self._name)

    @announced
    def add_route(self, destination: "Union[str, config.IPNetwork]", gateway: "Union[str, config.IPAddress, None]" = None, metric: Optional[int] = None) -> None:
        """Route *destination* (``"10.9.0.0/16"``, ``"::/0"``) out of this interface.

        Main table; *gateway* optional; *metric* the route priority.  An
        identical route is harmless; a route to the same destination through
        another interface is left alone (no replace).  Needs CAP_NET_ADMIN.
        """
        dst, gw, prio = self._route_args(destination, gateway, metric)
        config.add_route(self._netlink(), self.ifindex, self._name, dst, gw, prio)

    @announced
    def remove_route(self, destination: "Union[str, config.IPNetwork]", gateway: "Union[str, config.IPAddress, None]" = None, metric: Optional[int] = None) -> None:
        """Remove a route out of this interface; an absent route is harmless."""
        dst, gw, prio = self._route_args(destination, gateway, metric)
        config.remove_route(self._netlink(), self.ifindex, self._name, dst, gw, prio)

    @property
    @announced
    def routes(self) -> "List[config.Route]":
        """The main table's unicast routes out of this interface, IPv4 then IPv6."""
        return config.list_routes(self._netlink(), self.ifindex, self._name)

    def disable_ipv6(self) -> None:
        """Turn IPv6 off on this interface: once up, it sends nothing of its own.

        A TUN that is up sends IPv6 router solicitations and MLD reports,
        which a capture counts as packets; call this before :meth:`up` to
        keep it quiet.  It also drops the interface's IPv6 addresses.
        Harmless when the kernel has no IPv6.  Needs CAP_NET_ADMIN.
        """
        if self._closed:
            raise DeviceClosedError(self._name)
        config.set_ipv6(self._name, False)

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
        flags = _backend.current().sysfs_tun_flags(self._name)
        return bool((flags if flags is not None else self._flags) & lib.IFF_PERSIST)

    @persistent.setter
    @announced
    def persistent(self, value: bool) -> None:
        check_bool("persistent", value)
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.current().set_persist(self._fd, self._name, value, self._everyone)
        self._flags = self._flags | lib.IFF_PERSIST if value else self._flags & ~lib.IFF_PERSIST
