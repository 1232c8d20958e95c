"""Network namespaces and carrier on real devices: placed by the library, configured there, moved; NO-CARRIER.

Namespaces are made with ``ip netns add`` by the fixture (setup of the
namespace, not of a device) and removed even when a test fails.  Every
device, address and route of these tests is made through the library;
``ip`` only looks (``ip -n NS ...``) and ``ping`` makes the traffic inside
a namespace.  Traffic inside our own namespaces reaches no other host, so
any subnet is ours there; in this namespace it stays on the ``subnet``
fixture's /24, bound to our device.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from conftest import NameFactory
from tuntest import (
    fd_count, ip, link_exists, namespace, need, open_fds, read_until, udp_flow, udp_socket, wait_until,
)
from tuntap_cffi import (
    DeviceBusyError, NamespaceNotFoundError, NetNamespace, TunFlags, TunTapError, open_queues, open_tap, open_tun,
)
from tuntap_cffi.device import Device, delete_persistent

pytestmark = pytest.mark.device


@pytest.fixture
def ns_a() -> Iterator[str]:
    with namespace("A") as name:
        yield name


@pytest.fixture
def ns_b() -> Iterator[str]:
    with namespace("B") as name:
        yield name


def ns_link(ns: str, name: str) -> Dict[str, Any]:
    """``ip -n NS -j -d link show NAME`` (fails the test if NAME is not there)."""
    return json.loads(ip("-n", ns, "-j", "-d", "link", "show", "dev", name))[0]  # type: ignore[no-any-return]


def ns_has_link(ns: str, name: str) -> bool:
    return name in [link["ifname"] for link in json.loads(ip("-n", ns, "-j", "link", "show"))]


def thread_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def warm(ifnames: NameFactory) -> None:
    """Open and close one device first: the process-wide /dev/null fd close() uses is then counted as before."""
    with open_tun(ifnames("w")):
        pass


# ------------------------------------------------------------------ traffic


def forward(devs: Tuple[Device, Device], until: Callable[[], bool], timeout: float = 30.0) -> int:
    """Copy every packet read from one device to the other until *until*() holds; return how many moved."""
    a, b = devs
    other = {a.fileno(): b, b.fileno(): a}
    by_fd = {a.fileno(): a, b.fileno(): b}
    for dev in devs:
        dev.blocking = False
    buf = bytearray(max(a.max_packet_size, b.max_packet_size))
    moved = 0
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the traffic did not finish in time"
        ready, _, _ = select.select(list(by_fd), [], [], 0.2)
        for fd in ready:
            try:
                n = by_fd[fd].readinto(buf)
            except BlockingIOError:
                continue
            other[fd].write(memoryview(buf)[:n])
            moved += 1
    return moved


def test_ping_between_two_namespaces_through_devices_the_library_placed(ifnames: NameFactory, ns_a: str, ns_b: str) -> None:
    need("ping")
    here = thread_netns()
    name_a, name_b = ifnames("a"), ifnames("b")
    with open_tun(name_a, netns=ns_a) as dev_a, open_tun(name_b, netns=ns_b) as dev_b:
        assert thread_netns() == here  # the caller never changed namespace
        assert not link_exists(name_a) and not link_exists(name_b)  # not in this namespace
        assert ns_has_link(ns_a, name_a) and ns_has_link(ns_b, name_b)
        for dev, cidr in ((dev_a, "10.77.0.1/24"), (dev_b, "10.77.0.2/24")):
            dev.disable_ipv6()  # no router solicitations among the forwarded packets
            dev.add_address(cidr)
            dev.up()
        ping = subprocess.Popen(["ip", "netns", "exec", ns_a, "ping", "-c", "3", "-i", "0.2", "-W", "5",
                                 "-I", name_a, "10.77.0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            moved = forward((dev_a, dev_b), lambda: ping.poll() is not None)
        finally:
            if ping.poll() is None:
                ping.kill()
            out = ping.communicate()[0]
        assert ping.returncode == 0, out
        assert "3 received" in out, out
        assert moved >= 6  # three requests one way, three replies the other


# ------------------------------------------------------------ configuration


def test_every_setting_of_a_device_in_another_namespace_acts_there(ifnames: NameFactory, ns_a: str, subnet: str) -> None:
    name = ifnames()
    # A host interface of the same name: settings must reach the namespace's one, never this one.
    with open_tun(name) as twin, open_tun(name, netns=ns_a) as dev:
        twin_mtu, twin_index = twin.mtu, twin.ifindex
        seen = dev.netns
        assert isinstance(seen, NetNamespace)
        assert seen == NetNamespace(os.stat(f"/run/netns/{ns_a}").st_ino, ns_a, False)
        assert str(seen) == ns_a
        assert twin.netns.current and twin.netns.inode == thread_netns()

        dev.mtu = 1280
        dev.txqueuelen = 77
        assert (dev.mtu, dev.txqueuelen) == (1280, 77)
        link = ns_link(ns_a, name)
        assert (link["mtu"], link["txqlen"]) == (1280, 77)
        assert dev.ifindex == link["ifindex"]
        dev.disable_ipv6()
        assert ip("netns", "exec", ns_a, "cat", f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").strip() == "1"
        dev.up()
        assert dev.is_up and "UP" in ns_link(ns_a, name)["flags"]
        dev.add_address("10.78.0.1/24")
        dev.add_route("10.79.0.0/16", gateway="10.78.0.9", metric=7)
        assert [str(a) for a in dev.addresses] == ["10.78.0.1/24"]
        assert "10.79.0.0/16" in [str(r.destination) for r in dev.routes]
        assert "10.78.0.1/24" in ip("-n", ns_a, "-4", "addr", "show", "dev", name)
        assert "10.79.0.0/16 via 10.78.0.9" in ip("-n", ns_a, "-4", "route", "show", "dev", name)
        assert dev.carrier
        dev.carrier = False
        assert not dev.carrier and "NO-CARRIER" in ns_link(ns_a, name)["flags"]
        dev.carrier = True
        assert dev.carrier
        dev.remove_route("10.79.0.0/16", gateway="10.78.0.9", metric=7)
        dev.remove_address("10.78.0.1/24")
        assert dev.addresses == [] and ip("-n", ns_a, "-4", "addr", "show", "dev", name).strip() == ""
        dev.down()
        assert not dev.is_up
        # The host's interface of that name was never touched.
        assert (twin.mtu, twin.ifindex, twin.is_up) == (twin_mtu, twin_index, False)
        assert not twin.addresses


def test_persistence_is_that_of_the_device_not_of_a_host_interface_of_its_name(ifnames: NameFactory, ns_a: str) -> None:
    name = ifnames()
    open_tun(name, persist=True).close()  # a persistent interface of that name here
    try:
        with open_tun(name, netns=ns_a) as dev:
            assert not dev.persistent
            dev.persistent = True
            assert dev.persistent and ns_link(ns_a, name)["linkinfo"]["info_data"]["persist"]
            dev.persistent = False
            assert not dev.persistent
    finally:
        delete_persistent(name)


def test_owner_of_a_persistent_device_in_another_namespace_is_the_one_asked_for(ifnames: NameFactory, ns_a: str) -> None:
    """persist=True gives an interface without owner the caller's uid: the check must look in the device's namespace."""
    given, later = ifnames("g"), ifnames("l")
    open_tun(given, netns=ns_a, persist=True, owner=4242).close()
    open_tun(later, persist=True, owner=4343).close()  # a host interface of the second name, with an owner
    try:
        with open_tun(later, netns=ns_a) as dev:  # no owner
            dev.persistent = True
        info = {n: ns_link(ns_a, n)["linkinfo"]["info_data"] for n in (given, later)}
        assert info[given]["persist"] and info[given]["user"] in (4242, "4242")  # kept, not replaced by the euid
        assert info[later]["persist"] and info[later]["user"] in (os.geteuid(), str(os.geteuid()), "root")  # an owner, not left open to all
    finally:
        delete_persistent(later)
        ip("-n", ns_a, "link", "del", "dev", given, check=False)
        ip("-n", ns_a, "link", "del", "dev", later, check=False)


def test_from_fd_of_a_device_in_another_namespace_never_guesses_from_a_host_twin(ifnames: NameFactory, ns_a: str) -> None:
    name = ifnames()
    with open_tun(name, packet_info=True) as twin, open_tun(name, netns=ns_a) as dev:  # the twin has tun_pi, dev not
        copy = os.dup(dev.fileno())
        try:
            with pytest.raises(ValueError, match="pass packet_info"):
                Device.from_fd(copy)
        finally:
            os.close(copy)  # (refused: still the caller's)
        with Device.from_fd(os.dup(dev.fileno()), packet_info=False) as again:
            assert not again.packet_info and again.netns.name == ns_a
            again.mtu = 1300
            assert dev.mtu == 1300 and twin.mtu != 1300


def test_tap_in_another_namespace_gets_its_mac_there(ifnames: NameFactory, ns_a: str) -> None:
    name = ifnames()
    with open_tap(name, netns=ns_a) as dev:
        dev.hwaddr = "02:00:5e:10:00:07"
        assert dev.hwaddr == "02:00:5e:10:00:07"
        assert ns_link(ns_a, name)["address"] == "02:00:5e:10:00:07"


def test_queues_of_a_multi_queue_device_open_in_the_namespace(ifnames: NameFactory, ns_a: str) -> None:
    name = ifnames()
    queues = open_queues(name, 2, netns=ns_a)
    try:
        assert ns_link(ns_a, name)["num_rx_queues"] >= 2 and not link_exists(name)
        assert [q.netns.name for q in queues] == [ns_a, ns_a]
    finally:
        for q in queues:
            q.close()


def test_namespace_given_as_path_or_fd(ifnames: NameFactory, ns_a: str) -> None:
    name_p, name_f = ifnames("p"), ifnames("f")
    fd = os.open(f"/run/netns/{ns_a}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with open_tun(name_p, netns=f"/run/netns/{ns_a}") as by_path, open_tun(name_f, netns=fd) as by_fd:
            assert by_path.netns.name == by_fd.netns.name == ns_a
            assert ns_has_link(ns_a, name_p) and ns_has_link(ns_a, name_f)
        os.fstat(fd)  # the caller's fd is still the caller's: open
    finally:
        os.close(fd)
    with open_tun(name_p, netns="/proc/thread-self/ns/net") as here:  # this thread's own: made here, no helper thread
        assert link_exists(name_p) and here.netns.current and here.netns.name is None


# -------------------------------------------------------------------- moves


def test_move_to_another_namespace_and_back(ifnames: NameFactory, ns_a: str, ns_b: str, subnet: str) -> None:
    name = ifnames()
    here = thread_netns()
    with open_tun(name) as dev:
        dev.mtu = 1300
        assert dev.netns == NetNamespace(here, None, True)
        dev.move_to_netns(ns_a)
        assert not link_exists(name) and ns_has_link(ns_a, name)
        assert dev.netns.name == ns_a
        assert dev.mtu == 1300  # read through a control socket made in ns A
        dev.mtu = 1400
        assert ns_link(ns_a, name)["mtu"] == 1400
        fd = os.open(f"/run/netns/{ns_b}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            dev.move_to_netns(fd)
        finally:
            os.close(fd)
        assert not ns_has_link(ns_a, name) and ns_link(ns_b, name)["mtu"] == 1400
        dev.add_address("10.80.0.1/24")
        assert "10.80.0.1/24" in ip("-n", ns_b, "-4", "addr", "show", "dev", name)
        dev.move_to_netns("/proc/thread-self/ns/net")  # home again, by path
        assert link_exists(name) and dev.netns.current and dev.mtu == 1400
        assert dev.addresses == []  # the kernel dropped them on the way
        # The device still carries packets: a datagram sent through it here is read.
        dev.disable_ipv6()
        dev.add_address(f"{subnet}.1/24")
        dev.up()
        with udp_socket(subnet, name) as s:
            s.sendto(b"after the moves", (f"{subnet}.2", 9))
            got = read_until(dev, udp_flow(f"{subnet}.2", 9))
        assert got and got[0].endswith(b"after the moves")
    assert thread_netns() == here


def test_move_into_a_namespace_with_that_name_taken_leaves_the_device(ifnames: NameFactory, ns_a: str) -> None:
    name = ifnames()
    with open_tun(name, netns=ns_a) as taken, open_tun(name) as dev:
        dev.mtu = 1234
        with pytest.raises(TunTapError) as info:
            dev.move_to_netns(ns_a)
        assert info.value.errno == errno.EEXIST and name in str(info.value) and "already" in str(info.value)
        assert link_exists(name) and dev.netns.current and dev.mtu == 1234
        assert taken.netns.name == ns_a


# ------------------------------------------------------------------- errors


def _not_a_namespace_fd() -> int:
    return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def _closed_fd() -> int:
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    return fd


BAD: List[Tuple[str, Callable[[], object], type, str]] = [
    ("float", lambda: 1.5, TypeError, "name, path or fd"),
    ("bytes", lambda: b"x", TypeError, "name, path or fd"),
    ("bool", lambda: True, TypeError, "name, path or fd"),
    ("negative", lambda: -1, ValueError, "not a file descriptor"),
    ("empty", lambda: "", ValueError, "not a namespace name"),
    ("dot", lambda: "..", ValueError, "not a namespace name"),
    ("unknown name", lambda: "ttnosuchns", NamespaceNotFoundError, "ip netns add ttnosuchns"),
    ("unknown path", lambda: "/nonexistent/ns", NamespaceNotFoundError, "no such network namespace"),
    ("not a namespace file", lambda: "/dev/null", ValueError, "not a namespace file"),
    ("another kind of namespace", lambda: "/proc/self/ns/mnt", ValueError, "not a network namespace"),
    ("not a namespace fd", _not_a_namespace_fd, ValueError, "not a namespace file"),
    ("closed fd", _closed_fd, TunTapError, "not an open file descriptor"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_namespace_fails_before_any_device_and_leaks_nothing(case: Tuple[str, Callable[[], object], type, str],
                                                                ifnames: NameFactory, warm: None) -> None:
    _, make, exc, says = case
    name = ifnames()
    with open_tun(ifnames("m")) as mover:
        before, threads = fd_count(), threading.active_count()
        value = make()
        try:
            with pytest.raises(exc, match=says):
                open_tun(name, netns=value)  # type: ignore[arg-type]
            with pytest.raises(exc, match=says):
                mover.move_to_netns(value)  # type: ignore[arg-type]
        finally:
            if case[1] is _not_a_namespace_fd:
                os.close(value)  # type: ignore[arg-type]
        assert not link_exists(name)
        assert mover.netns.current
        assert fd_count() == before, open_fds()
        assert threading.active_count() == threads


def test_open_and_configure_in_a_namespace_leaks_no_fd_thread_or_interface(ifnames: NameFactory, ns_a: str, warm: None) -> None:
    before, threads = fd_count(), threading.active_count()
    name = ifnames()
    for _ in range(3):
        with open_tun(name, netns=ns_a) as dev:
            dev.mtu = 1500
            dev.disable_ipv6()
            dev.add_address("10.81.0.1/24")
            dev.up()
            dev.carrier = False
            assert dev.netns.name == ns_a and not dev.carrier
            dev.move_to_netns("/proc/thread-self/ns/net")
            dev.mtu = 1400
        assert not ns_has_link(ns_a, name) and not link_exists(name)
    assert fd_count() == before, open_fds()
    assert threading.active_count() == threads


def test_a_kernel_refusal_inside_the_namespace_reaches_the_caller(ifnames: NameFactory, ns_a: str, warm: None) -> None:
    name = ifnames()
    with open_tun(name, netns=ns_a):
        before, threads = fd_count(), threading.active_count()
        with pytest.raises(DeviceBusyError) as info:
            open_tap(name, netns=ns_a)  # a TUN of that name is there: TUNSETIFF says EINVAL in ns A
        assert info.value.filename == name
        assert fd_count() == before, open_fds()
        assert threading.active_count() == threads
    assert not ns_has_link(ns_a, name)


def test_interrupted_while_the_device_is_made_in_the_namespace_leaks_nothing(ifnames: NameFactory, ns_a: str, warm: None) -> None:
    """Ctrl-C in the caller while its helper thread creates the device: the device is removed, the error raised."""
    from tuntap_cffi._linux import backend

    name = ifnames()
    main = threading.main_thread().ident
    assert threading.get_ident() == main
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def create() -> Tuple[int, str]:
        made = backend.create(name, 0x1001, None, None, None, "TUN")  # IFF_TUN | IFF_NO_PI
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)  # the caller is in join() now
        assert interrupted.wait(10)
        return made

    before = fd_count()
    nsfd = backend.open_netns(ns_a)
    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.in_netns(nsfd, create, lambda made: os.close(made[0]))
    finally:
        signal.signal(signal.SIGINT, old)
        os.close(nsfd)
    assert interrupted.is_set()
    assert not ns_has_link(ns_a, name)
    assert fd_count() == before, open_fds()


# ------------------------------------------------------------------ carrier


def linkdown(name: str) -> bool:
    """Whether the kernel marks the IPv4 routes through *name* linkdown.

    linkwatch applies a carrier change a moment after it: operstate first,
    then the queue (started or replaced by one that drops), then the
    NETDEV_CHANGE that sets or clears linkdown; so this, not operstate,
    says the change is complete.
    """
    return "linkdown" in ip("-4", "route", "show", "dev", name)


def test_carrier_false_at_open_shows_no_carrier_until_switched_on(ifname: str) -> None:
    with open_tun(ifname, carrier=False) as dev:
        dev.disable_ipv6()
        dev.up()
        assert not dev.carrier
        assert "NO-CARRIER" in ip("link", "show", "dev", ifname)
        assert open(f"/sys/class/net/{ifname}/carrier").read().strip() == "0"
        dev.carrier = True
        assert dev.carrier
        assert "NO-CARRIER" not in ip("link", "show", "dev", ifname)
        assert open(f"/sys/class/net/{ifname}/carrier").read().strip() == "1"
    with open_tun(ifname) as dev:  # the default: carrier on
        dev.disable_ipv6()
        dev.up()
        assert dev.carrier and "NO-CARRIER" not in ip("link", "show", "dev", ifname)


def test_carrier_false_on_a_kernel_without_iff_no_carrier_is_refused_not_ignored(ifname: str) -> None:
    """Before 6.0 TUNSETIFF ignores IFF_NO_CARRIER (it never checked for unknown flags) and the device
    would come up with carrier; so the open checks TUNGETFEATURES first.  This 6.x kernel has the flag:
    the refusal is checked by calling the decision with a pre-6.0 feature set."""
    from tuntap_cffi import UnsupportedPlatformError
    from tuntap_cffi._linux.backend import tun_features, unknown_flags_error

    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        here = tun_features(fd)  # an fd attached to nothing answers too
    finally:
        os.close(fd)
    assert here & TunFlags.NO_CARRIER and here & TunFlags.NAPI  # 6.0+
    flags = TunFlags.TUN | TunFlags.NO_PI | TunFlags.NO_CARRIER
    assert unknown_flags_error(here, flags, ifname, "TUN") is None
    before_6_0 = here & ~TunFlags.NO_CARRIER  # what a 5.x kernel answers
    err = unknown_flags_error(before_6_0, flags, ifname, "TUN")
    assert isinstance(err, UnsupportedPlatformError) and err.errno == errno.EOPNOTSUPP and err.filename == ifname
    assert all(words in str(err) for words in ("IFF_NO_CARRIER", "Linux 6.0", "Device.carrier = False"))
    assert unknown_flags_error(before_6_0, flags & ~TunFlags.NO_CARRIER, ifname, "TUN") is None  # carrier on: fine
    with open_tun(ifname, carrier=False) as dev:  # and the check lets this kernel through
        assert not dev.carrier


def test_without_carrier_the_kernel_routes_nothing_through_the_device(ifname: str, subnet: str) -> None:
    flow = udp_flow(f"{subnet}.2", 9)
    with open_tun(ifname, carrier=False) as dev:
        dev.disable_ipv6()
        dev.add_address(f"{subnet}.1/24")
        dev.up()
        assert linkdown(ifname)  # the kernel's routing knows
        with udp_socket(subnet, ifname) as s:
            s.sendto(b"sent without carrier", (f"{subnet}.2", 9))
            dev.carrier = True
            assert wait_until(lambda: not linkdown(ifname))
            s.sendto(b"sent with carrier", (f"{subnet}.2", 9))
            got = read_until(dev, flow)
            # The first datagram of the flow to reach the reader is the second one: the first was dropped, not queued.
            assert got and got[0].endswith(b"sent with carrier")
            dev.carrier = False
            assert wait_until(lambda: linkdown(ifname))
            s.sendto(b"sent after carrier went", (f"{subnet}.2", 9))
            dev.carrier = True
            assert wait_until(lambda: not linkdown(ifname))
            s.sendto(b"sent with carrier again", (f"{subnet}.2", 9))
            got = read_until(dev, flow)
            assert got and got[0].endswith(b"sent with carrier again")


def test_carrier_takes_only_a_bool(ifname: str, warm: None) -> None:
    before = fd_count()
    with pytest.raises(TypeError, match="carrier"):
        open_tun(ifname, carrier=0)  # type: ignore[arg-type]
    assert not link_exists(ifname) and fd_count() == before
    with open_tun(ifname) as dev:
        with pytest.raises(TypeError, match="carrier"):
            dev.carrier = "off"  # type: ignore[assignment]
        assert dev.carrier
