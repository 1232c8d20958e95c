"""The platform boundary: capability tables, the one "unsupported here" error, the darwin skeleton.

Linux's table is checked against what a real device does: every declared
feature has an exercise below that makes the real calls on a real TUN/TAP.
The darwin package is checked on Linux: it imports, its table says what it
says, and every feature and backend function fails with
UnsupportedPlatformError naming macOS, before any syscall.
"""

from __future__ import annotations

import ast
import errno
import inspect
import os
import pathlib
import subprocess
import sys
import types
from ipaddress import ip_interface, ip_network
from typing import Callable, Dict, Iterator, List, Set

import pytest

from conftest import NameFactory
from tuntest import PEER_MAC, disable_ipv6, fd_count, ipv4_udp, namespace, require_uring
from tuntap_cffi import (Device, DeviceKind, TunTapError, UnsupportedPlatformError, open_queues, open_tap,
                         open_tun)
from tuntap_cffi import _backend, _darwin
from tuntap_cffi._capabilities import Feature, Platform
from tuntap_cffi._darwin import backend as darwin_backend, utun
from tuntap_cffi.device import TUN_F_CSUM
from tuntap_cffi.events import LinkUp

REPO = str(pathlib.Path(__file__).resolve().parent.parent)


# ------------------------------------------------------------------ Linux


def test_linux_is_this_platform_and_declares_every_feature_but_a_broadcast_tun() -> None:
    assert _backend.PLATFORM is _backend.LINUX
    assert _backend.PLATFORM.name == "Linux"
    assert _backend.LINUX.features == frozenset(Feature) - {Feature.TUN_BROADCAST}
    for feature in _backend.LINUX.features:
        assert _backend.supports(feature)
        _backend.require(feature)  # returns: Linux has it
    assert set(_backend.LINUX.reasons) == {Feature.TUN_BROADCAST}


@pytest.mark.device
def test_a_linux_tun_is_point_to_point_and_broadcast_is_refused_before_any_syscall(ifname: str) -> None:
    """tun_net_init makes every TUN IFF_POINTOPOINT|IFF_NOARP: broadcast=False is what it is, True is not there."""
    before = fd_count()
    with pytest.raises(UnsupportedPlatformError) as info:
        open_tun(ifname, broadcast=True)
    assert "Linux" in str(info.value) and "open_tap()" in str(info.value) and info.value.filename == ifname
    assert fd_count() == before and not os.path.exists(f"/sys/class/net/{ifname}")
    with open_tun(ifname, broadcast=False) as dev:
        flags = int(open(f"/sys/class/net/{ifname}/flags").read(), 16)
        assert flags & 0x10 and not flags & 0x2 and dev.name == ifname  # IFF_POINTOPOINT, not IFF_BROADCAST


def _tun(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        assert dev.name == name and dev.kind is DeviceKind.TUN


def _tap(name: str, subnet: str) -> None:
    with open_tap(name) as dev:
        assert dev.name == name and dev.kind is DeviceKind.TAP


def _packet_info(name: str, subnet: str) -> None:
    with open_tun(name, packet_info=True) as dev:
        disable_ipv6(name)
        dev.up()
        pkt = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, 9, b"pi")
        assert dev.packet_info and dev.write_packet(pkt) == len(pkt)


def _persist(name: str, subnet: str) -> None:
    open_tun(name, persist=True).close()
    assert os.path.exists(f"/sys/class/net/{name}")  # outlived its fd
    with open_tun(name) as dev:  # reattached
        assert dev.persistent
    from tuntap_cffi import delete_persistent

    delete_persistent(name)
    assert not os.path.exists(f"/sys/class/net/{name}")


def _owner(name: str, subnet: str) -> None:
    with open_tun(name, owner=os.geteuid(), group=os.getegid()):
        got = tuple(int(open(f"/sys/class/net/{name}/{attr}").read()) for attr in ("owner", "group"))
        assert got == (os.geteuid(), os.getegid())


def _from_fd(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        with Device.from_fd(os.dup(dev.fileno())) as twin:
            assert twin.name == name and twin.kind is DeviceKind.TUN


def _multi_queue(name: str, subnet: str) -> None:
    queues = open_queues(name, 2)
    try:
        assert [q.name for q in queues] == [name, name]
        queues[1].detach_queue()
        queues[1].attach_queue()
    finally:
        for q in queues:
            q.close()


def _vnet_hdr(name: str, subnet: str) -> None:
    with open_tun(name, vnet_hdr=True, vnet_hdr_size=12) as dev:
        assert dev.vnet_hdr_size == 12


def _offload(name: str, subnet: str) -> None:
    with open_tun(name, vnet_hdr=True, offload=TUN_F_CSUM) as dev:
        assert dev.offload == TUN_F_CSUM


def _batch(backend: str) -> Callable[[str, str], None]:
    def exercise(name: str, subnet: str) -> None:
        if backend == "io_uring":
            require_uring()
        with open_tun(name) as dev:
            disable_ipv6(name)
            dev.up()
            dev.batch_backend = backend
            assert dev.batch_backend == backend
            pkts = [ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, 9, bytes([i])) for i in range(3)]
            assert dev.write_batch(pkts) == 3
    return exercise


def _link(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        dev.mtu = 1400
        assert dev.mtu == 1400
        assert dev.ifindex == int(open(f"/sys/class/net/{name}/ifindex").read())
        disable_ipv6(name)
        dev.up()
        assert dev.is_up
        dev.down()
        assert not dev.is_up


def _txqueuelen(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        dev.txqueuelen = 321
        assert dev.txqueuelen == 321


def _hwaddr(name: str, subnet: str) -> None:
    with open_tap(name) as dev:
        dev.hwaddr = PEER_MAC
        assert dev.hwaddr == PEER_MAC


def _addresses(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        disable_ipv6(name)
        dev.add_address(f"{subnet}.1/24")
        assert [str(a.interface) for a in dev.addresses] == [f"{subnet}.1/24"]
        dev.remove_address(f"{subnet}.1/24")
        assert dev.addresses == []


def _routes(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        disable_ipv6(name)
        dev.up()
        dev.add_route(f"{subnet}.128/25")
        assert f"{subnet}.128/25" in [str(r.destination) for r in dev.routes]
        dev.remove_route(f"{subnet}.128/25")
        assert f"{subnet}.128/25" not in [str(r.destination) for r in dev.routes]


def _disable_ipv6(name: str, subnet: str) -> None:
    if not os.path.exists("/proc/sys/net/ipv6"):
        pytest.skip("this kernel has no IPv6")
    with open_tun(name) as dev:
        dev.disable_ipv6()
        assert open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read().strip() == "1"


def _pytun_compat(name: str, subnet: str) -> None:
    from tuntap_cffi import pytun_compat

    dev = pytun_compat.TunTapDevice(name)
    try:
        assert dev.name == name
    finally:
        dev.close()


def _napi(name: str, subnet: str) -> None:
    with open_tap(name, napi=True, napi_frags=True) as dev:
        assert dev.napi and int(open(f"/sys/class/net/{name}/tun_flags").read(), 16) & 0x30 == 0x30


def _sndbuf(name: str, subnet: str) -> None:
    with open_tun(name) as dev:
        dev.sndbuf = 65536
        assert dev.sndbuf == 65536


def _link_type(name: str, subnet: str) -> None:
    with open_tap(name) as dev:
        dev.link_type = 0xFFFE  # ARPHRD_NONE
        assert dev.link_type == 0xFFFE == int(open(f"/sys/class/net/{name}/type").read())


def _filter(name: str, subnet: str) -> None:
    with open_tap(name) as dev:
        prog = dev.attach_filter([(0x06, 0, 0, 0)])  # ret #0: drop everything
        assert dev.filter == prog
        dev.detach_filter()
        assert dev.filter is None


def _netns(name: str, subnet: str) -> None:
    with namespace("n") as ns, open_tun(name, netns=ns) as dev:
        assert dev.netns.name == ns and not os.path.exists(f"/sys/class/net/{name}")
        dev.mtu = 1400
        assert dev.mtu == 1400
        dev.move_to_netns("/proc/thread-self/ns/net")
        assert dev.netns.current and os.path.exists(f"/sys/class/net/{name}")


def _carrier(name: str, subnet: str) -> None:
    with open_tun(name, carrier=False) as dev:
        assert not dev.carrier
        dev.carrier = True
        assert dev.carrier


def _link_events(name: str, subnet: str) -> None:
    with open_tun(name, ipv6=False) as dev:
        with dev.events() as events:
            dev.up()
            assert events.get(timeout=10) == LinkUp()


#: One real exercise per feature Linux declares.
EXERCISES: Dict[Feature, Callable[[str, str], None]] = {
    Feature.TUN: _tun,
    Feature.TAP: _tap,
    Feature.PACKET_INFO: _packet_info,
    Feature.PERSIST: _persist,
    Feature.OWNER: _owner,
    Feature.FROM_FD: _from_fd,
    Feature.MULTI_QUEUE: _multi_queue,
    Feature.VNET_HDR: _vnet_hdr,
    Feature.OFFLOAD: _offload,
    Feature.IO_URING: _batch("io_uring"),
    Feature.LOOP_BATCH: _batch("loop"),
    Feature.LINK: _link,
    Feature.TXQUEUELEN: _txqueuelen,
    Feature.HWADDR: _hwaddr,
    Feature.ADDRESSES: _addresses,
    Feature.ROUTES: _routes,
    Feature.DISABLE_IPV6: _disable_ipv6,
    Feature.PYTUN_COMPAT: _pytun_compat,
    Feature.NAPI: _napi,
    Feature.SNDBUF: _sndbuf,
    Feature.LINK_TYPE: _link_type,
    Feature.FILTER: _filter,
    Feature.NETNS: _netns,
    Feature.CARRIER: _carrier,
    Feature.LINK_EVENTS: _link_events,
}


def test_every_linux_feature_has_an_exercise() -> None:
    assert set(EXERCISES) == set(_backend.LINUX.features)


@pytest.mark.device
@pytest.mark.parametrize("feature", sorted(_backend.LINUX.features), ids=lambda f: f.name)
def test_linux_feature_works_on_a_real_device(feature: Feature, ifnames: NameFactory, subnet: str) -> None:
    ifname = ifnames()
    with open_tun(ifnames("w")):  # warm-up: the process-wide /dev/null fd close() uses
        pass
    before = fd_count()
    EXERCISES[feature](ifname, subnet)
    assert fd_count() == before


# ------------------------------------------------------------------ macOS

DARWIN = _darwin.PLATFORM
#: What works on macOS: utun (tests/test_darwin_device.py) and, through the BSD layer, its configuration
#: (tests/test_darwin_config.py); a TAP as a feth pair, with its MAC (tests/test_darwin_tap.py); all against
#: the simulated kernel; link events from PF_ROUTE (tests/test_bsd_events.py).
DARWIN_WORKS = {Feature.TUN, Feature.PACKET_INFO, Feature.LOOP_BATCH, Feature.FROM_FD,
                Feature.LINK, Feature.ADDRESSES, Feature.ROUTES, Feature.TAP, Feature.HWADDR, Feature.LINK_EVENTS}
PLANNED: Set[Feature] = set()


def test_darwin_table_says_what_works_today_and_what_is_planned() -> None:
    assert isinstance(DARWIN, Platform) and DARWIN.name == "macOS"
    assert DARWIN.features == DARWIN_WORKS
    assert DARWIN.planned == PLANNED
    assert set(DARWIN.reasons) == set(Feature) - DARWIN_WORKS  # every missing feature says why
    for feature in PLANNED:
        assert "not implemented in this version" in DARWIN.reasons[feature]
    assert "several utun devices" in DARWIN.reasons[Feature.MULTI_QUEUE]


#: Each Device member of a feature macOS lacks, called on a utun Device.
DEVICE_MEMBERS: Dict[Feature, Callable[[Device], object]] = {
    Feature.DISABLE_IPV6: lambda dev: dev.disable_ipv6(),
    Feature.TXQUEUELEN: lambda dev: dev.txqueuelen,
    Feature.PERSIST: lambda dev: dev.persistent,
    Feature.CARRIER: lambda dev: dev.carrier,
    Feature.NETNS: lambda dev: dev.netns,
    Feature.SNDBUF: lambda dev: dev.sndbuf,
    Feature.LINK_TYPE: lambda dev: dev.link_type,
    Feature.FILTER: lambda dev: dev.attach_filter([(0x06, 0, 0, 0)]),
    Feature.MULTI_QUEUE: lambda dev: dev.attach_queue(),
    Feature.OFFLOAD: lambda dev: dev.set_offload(0),
}


@pytest.mark.parametrize("feature", list(DEVICE_MEMBERS), ids=lambda f: f.name)
def test_a_macos_device_refuses_what_macos_lacks_with_the_one_error(feature: Feature) -> None:
    """On a utun Device (the simulated kernel), before any call: disable_ipv6 wrote /proc, silent on a real Mac."""
    from darwin_kernel import running_as_macos
    from xnu_net import XnuNetKernel

    assert not DARWIN.supports(feature)
    with running_as_macos(XnuNetKernel()) as kernel, open_tun() as dev:
        calls = len(kernel.calls)
        with pytest.raises(UnsupportedPlatformError) as info:
            DEVICE_MEMBERS[feature](dev)
        assert feature.value in str(info.value) and "macOS" in str(info.value)
        assert len(kernel.calls) == calls


def test_a_table_cannot_contradict_itself() -> None:
    with pytest.raises(ValueError, match="both there and planned"):
        Platform("X", {Feature.TUN}, planned={Feature.TUN})
    with pytest.raises(ValueError, match="reason given for a feature that is there"):
        Platform("X", {Feature.TUN}, reasons={Feature.TUN: "why"})


def test_darwin_utun_framing_constants() -> None:
    # XNU: the protocol family, big-endian, in front of each packet; AF_INET6 is 30 on macOS.
    assert utun.AF_HEADER_LEN == 4
    assert utun.AF_HEADER == {4: b"\x00\x00\x00\x02", 6: b"\x00\x00\x00\x1e"}
    assert utun.UTUN_CONTROL_NAME == "com.apple.net.utun_control"


@pytest.mark.parametrize("feature", sorted(set(Feature) - DARWIN_WORKS, key=list(Feature).index),
                         ids=lambda f: f.name)
def test_darwin_feature_fails_with_the_one_error(feature: Feature) -> None:
    assert not DARWIN.supports(feature)
    before = fd_count()
    with pytest.raises(UnsupportedPlatformError) as info:
        DARWIN.require(feature, "utun7")
    err = info.value
    assert isinstance(err, TunTapError) and err.errno == errno.EOPNOTSUPP and err.filename == "utun7"
    text = str(err)
    assert "macOS" in text and feature.value in text and DARWIN.reasons[feature] in text
    assert ("planned" if feature in PLANNED else "not available") in text
    assert fd_count() == before


def _call_args(method: Callable[..., object]) -> Dict[str, object]:
    """Arguments for a Backend method, by parameter name (any values: the skeleton must not use them)."""
    values = {"name": "utun7", "flags": 0, "owner": None, "group": None, "persist": None, "kind": "TUN",
              "everyone": False, "fd": 99999, "on": True, "ctl": 99999, "field": "mtu", "value": 1400,
              "mac": bytes(6), "size": 10, "attach": True, "tap": True, "program": ((6, 0, 0, 0),), "chan": 99999,
              "ifindex": 7, "local": ip_interface("198.18.0.1/24"), "peer": None, "destination": ip_network("198.19.0.0/16"),
              "gateway": None, "metric": None,
              "ns": "blue", "nsfd": 99999, "func": lambda: 1, "undo": lambda _: None,
              "dev": types.SimpleNamespace(name="utun7"), "rcvbuf": None}
    params = [p for p in inspect.signature(method).parameters if p != "self"]
    return {p: values[p] for p in params}


BACKEND_METHODS = sorted(name for name, _ in inspect.getmembers(_backend.Backend, inspect.isfunction)
                         if not name.startswith("_"))
EXPECTED_FEATURE = {
    "create": Feature.TUN, "get_iff": Feature.FROM_FD, "set_persist": Feature.PERSIST,
    "sysfs_tun_flags": Feature.PERSIST, "delete_persistent": Feature.PERSIST, "control_socket": Feature.LINK,
    "get_link_flags": Feature.LINK, "set_link_flags": Feature.LINK, "get_int": Feature.LINK,
    "set_int": Feature.LINK, "get_hwaddr": Feature.HWADDR, "set_hwaddr": Feature.HWADDR,
    "set_vnet_hdr_size": Feature.VNET_HDR, "get_vnet_hdr_size": Feature.VNET_HDR,
    "set_offload": Feature.OFFLOAD, "set_queue": Feature.MULTI_QUEUE,
    "get_sndbuf": Feature.SNDBUF, "set_sndbuf": Feature.SNDBUF,
    "get_link_type": Feature.LINK_TYPE, "set_link_type": Feature.LINK_TYPE,
    "attach_filter": Feature.FILTER, "detach_filter": Feature.FILTER,
    "add_address": Feature.ADDRESSES, "remove_address": Feature.ADDRESSES, "list_addresses": Feature.ADDRESSES,
    "add_route": Feature.ROUTES, "remove_route": Feature.ROUTES, "list_routes": Feature.ROUTES,
    "set_carrier": Feature.CARRIER, "open_netns": Feature.NETNS, "in_netns": Feature.NETNS,
    "device_netns": Feature.NETNS, "describe_netns": Feature.NETNS, "event_source": Feature.LINK_EVENTS,
}


def test_darwin_backend_has_every_backend_function() -> None:
    assert set(BACKEND_METHODS) == set(EXPECTED_FEATURE) | {"config_channel"}  # (a channel is no call)
    for name in BACKEND_METHODS:
        assert callable(getattr(darwin_backend, name)), name


@pytest.mark.parametrize("method", sorted(EXPECTED_FEATURE))
def test_darwin_backend_function_raises_naming_macos_and_its_feature(method: str) -> None:
    func = getattr(darwin_backend, method)
    args = _call_args(getattr(_backend.Backend, method))
    before = fd_count()
    with pytest.raises(UnsupportedPlatformError) as info:
        func(**args)
    assert fd_count() == before
    text = str(info.value)
    assert "macOS" in text and EXPECTED_FEATURE[method].value in text, text


@pytest.mark.parametrize("kind, feature, says", [("TUN", Feature.TUN, "macOS's own C library")])
def test_darwin_create_names_the_kind_asked_for(kind: str, feature: Feature, says: str) -> None:
    """TUN needs macOS's libc (this process runs on Linux, without the simulator)."""
    with pytest.raises(UnsupportedPlatformError) as info:
        darwin_backend.create("utun7", 0, None, None, None, kind)
    assert feature.value in str(info.value) and says in str(info.value)


def test_darwin_create_sends_a_tap_to_open_tap() -> None:
    """A macOS TAP is a feth pair with two fds, which create()'s one fd cannot carry: open_tap() builds it."""
    before = fd_count()
    with pytest.raises(ValueError, match="feth pair"):
        darwin_backend.create("", 0, None, None, None, "TAP")
    assert fd_count() == before


def test_darwin_txqueuelen_is_its_own_feature() -> None:
    for call in (lambda: darwin_backend.get_int(-1, "utun7", "txqueuelen"),
                 lambda: darwin_backend.set_int(-1, "utun7", "txqueuelen", 100)):
        with pytest.raises(UnsupportedPlatformError) as info:
            call()
        assert Feature.TXQUEUELEN.value in str(info.value) and "not available" in str(info.value)


def _imports_outside_functions(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of *tree* except the bodies of functions (imports there run only when called)."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
            yield from _imports_outside_functions(node)


def test_darwin_package_reaches_no_c_call() -> None:
    """By design, not by luck: importing the package reaches neither libc nor cffi.

    ``errors`` (pure Python, already imported by ``_capabilities``) and the
    builtin ``errno`` table are allowed; ``libc.py`` loads cffi and libSystem
    inside its functions, on first use on macOS, so only its module level is
    checked.
    """
    allowed = {"__future__", "typing", "errno", "tuntap_cffi._capabilities", "tuntap_cffi.errors",
               "tuntap_cffi._darwin", "tuntap_cffi._bsd", "tuntap_cffi._bsdlibc", "tuntap_cffi._bsdbackend",
               "tuntap_cffi._netvalues",
               "tuntap_cffi._constants"}  # (_constants: pure Python, no cffi)
    package = pathlib.Path(_darwin.__file__).parent
    files = sorted(package.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "backend.py", "utun.py", "libc.py"}
    for path in files:
        tree = ast.parse(path.read_text())
        nodes = _imports_outside_functions(tree) if path.name == "libc.py" else ast.walk(tree)
        for names in _imported(nodes, "tuntap_cffi._darwin"):
            assert set(names) <= allowed, f"{path.name} imports {names}"


def _imported(nodes: Iterator[ast.AST], package: str) -> Iterator[List[str]]:
    """The module names each import statement among *nodes* of a module of *package* names."""
    for node in nodes:
        if isinstance(node, ast.Import):
            yield [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "tuntap_cffi" if node.level == 2 else package if node.level == 1 else ""
            yield [f"{base}.{node.module}".strip(".") if node.module else base]


def test_bsd_layer_reaches_no_c_call() -> None:
    """The shared BSD layer imports on any OS too: the FFI and functions come with the libc passed in."""
    from tuntap_cffi import _bsd

    allowed = {"__future__", "typing", "errno", "sys", "os", "itertools", "dataclasses", "ipaddress", "select",
               "tuntap_cffi.errors", "tuntap_cffi._netvalues", "tuntap_cffi._bsd", "tuntap_cffi._bsd.sockaddr"}
    package = pathlib.Path(_bsd.__file__).parent
    files = sorted(package.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "ioc.py", "sockaddr.py", "rtmsg.py", "netconfig.py"}
    for path in files:
        for names in _imported(ast.walk(ast.parse(path.read_text())), "tuntap_cffi._bsd"):
            assert set(names) <= allowed, f"{path.name} imports {names}"


# ------------------------------------------------- another OS, in a child


def _child(script: str, *args: str) -> List[str]:
    """Run *script* in a fresh interpreter (the repo on its path, then *args*); its output lines."""
    proc = subprocess.run([sys.executable, "-c", script, REPO, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()

CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.platform = sys.argv[2]
from tuntap_cffi import *  # must import on any OS
from tuntap_cffi import _backend
print(_backend.PLATFORM.name, len(_backend.PLATFORM.features))
before = len(os.listdir("/proc/self/fd"))
for call in (lambda: open_tun(""), lambda: open_tap("")):
    try:
        dev = call()
    except UnsupportedPlatformError as exc:
        print(type(exc).__name__, exc.errno, isinstance(exc, TunTapError), exc.strerror)
    else:
        dev.close()
        print("opened")
print(len(os.listdir("/proc/self/fd")) == before)
"""


@pytest.mark.parametrize("system, name, features, tun_says, tap_says", [
    ("sunos5", "sunos5", 0, "Linux, macOS and FreeBSD only", "Linux, macOS and FreeBSD only"),
    # macOS opens a TUN, but the child runs on Linux: utun needs macOS's own libc, and no fd is opened for it.
    ("darwin", "macOS", len(DARWIN_WORKS), "macOS's own C library", "a feth TAP needs macOS's own C library"),
    # FreeBSD opens both, but the child runs on Linux: /dev/tun needs FreeBSD's own libc.  Its 12: TUN, TAP,
    # packet info, loop batches, link settings, addresses, routes, a TAP's MAC, link events, persistence, from_fd,
    # a broadcast-mode TUN.
    ("freebsd14", "FreeBSD", 12, "FreeBSD's own C library", "FreeBSD's own C library"),
])
def test_package_imports_on_another_os_and_opening_fails_cleanly(
    system: str, name: str, features: int, tun_says: str, tap_says: str,
) -> None:
    lines = _child(CHILD, system)
    assert lines[0] == f"{name} {features}", lines
    for line, says in zip(lines[1:3], (tun_says, tap_says)):
        assert line.startswith(f"UnsupportedPlatformError {errno.EOPNOTSUPP} True "), lines
        assert name in line and says in line, line
    assert "TUN" in lines[1] and "TAP" in lines[2]
    assert lines[3] == "True", lines  # no fd opened on the way to the error


WIRED = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.platform = "darwin"
from tuntap_cffi import UnsupportedPlatformError, open_queues, Device
from tuntap_cffi.device import delete_persistent
before = len(os.listdir("/proc/self/fd"))
for call in (lambda: open_queues("ttq0", 2), lambda: delete_persistent("ttq0"), lambda: Device.from_fd(0)):
    try:
        call()
    except UnsupportedPlatformError as exc:
        print(exc.strerror)
    else:
        print("no error")
print(len(os.listdir("/proc/self/fd")) == before)
"""


def test_the_entry_points_of_a_missing_feature_name_it_on_macos() -> None:
    """open_queues and delete_persistent check the platform first: the error names the feature; from_fd needs macOS's libc."""
    lines = _child(WIRED)
    assert lines[0].startswith("multi-queue devices") and "on macOS: not available" in lines[0], lines
    assert lines[1].startswith("persistent devices") and "on macOS: not available" in lines[1], lines
    assert lines[2].startswith("Device.from_fd: a utun needs macOS's own C library"), lines  # (works on macOS)
    assert lines[3] == "True", lines  # no fd opened on the way to the errors


ENGINES = r"""
import sys
sys.path.insert(0, sys.argv[1])
sys.platform = "darwin"
from tuntap_cffi import UnsupportedPlatformError
from tuntap_cffi._engines import EngineTable
class Host:  # (the table reads nothing of it for these two)
    pass
table = EngineTable(Host())
print(table.backend)
try:
    table.choose("io_uring")
except UnsupportedPlatformError as exc:
    print(exc.strerror)
else:
    print("no error")
"""


def test_a_platform_without_io_uring_batches_with_the_loop_engine() -> None:
    """The engine table asks the capability table: 'auto' means the loop engine there, 'io_uring' is refused."""
    lines = _child(ENGINES)
    assert lines[0] == "loop", lines
    assert lines[1].startswith("the io_uring batch engine") and "on macOS: not available" in lines[1], lines


PYTUN_ON_MACOS = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.platform = "darwin"
from tuntap_cffi import UnsupportedPlatformError, pytun_compat
before = len(os.listdir("/proc/self/fd"))
try:
    pytun_compat.TunTapDevice("utun3")
except pytun_compat.Error as exc:
    cause = exc.__cause__  # pytun's shape is (errno, strerror); the library's explanation is the cause
    print(isinstance(exc, UnsupportedPlatformError), exc.args == (exc.errno, os.strerror(exc.errno)), cause.filename)
    print(cause.strerror)
else:
    print("opened")
print(len(os.listdir("/proc/self/fd")) == before)
"""


def test_pytun_compat_on_macos_says_what_to_use_instead() -> None:
    """pytun's API is Linux's: on macOS its TunTapDevice is the one error (a pytun Error), before any syscall."""
    lines = _child(PYTUN_ON_MACOS)
    assert lines[0] == "True True utun3", lines
    assert "pytun_compat" in lines[1] and "on macOS" in lines[1] and "open_tun()" in lines[1], lines
    assert lines[2] == "True", lines  # no fd opened on the way to the error
