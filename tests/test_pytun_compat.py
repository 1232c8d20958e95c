"""pytun_compat: pytun's API on real devices, checked against the kernel and against pytun itself.

Three kinds of checks:

- In-process: each attribute and method of the compat device against what
  ``ip -j`` and sysfs report, its errors, and ``read(size)`` against the
  kernel's own truncation (``os.read`` on the same fd).
- PYTUN_SCENARIO, a script of 68 pytun calls whose outcomes (values,
  ``Error`` args, exception types) must equal PYTUN_OUTCOMES, which is what
  python-pytun 2.4 produces.  The same script also runs against the real
  pytun (see real_pytun.py: skipped without it, failed under CI=true),
  proving PYTUN_OUTCOMES is pytun's behaviour.
- TUNNEL_PROGRAM, a UDP tunnel written the way pytun users write one, runs
  in two network namespaces joined by a veth pair; ping and a UDP echo go
  across its overlay.  With a real pytun at hand it also runs unchanged but
  for the import line against pytun, and pytun against pytun_compat.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tuntest import (
    disable_ipv6, fd_count, ip, ipv4_udp, link_info, namespace, new_name, open_fds, our_links, parse_ipv4_udp
)
from real_pytun import require_real_pytun
from tuntap_cffi import (
    DeviceBusyError,
    DeviceClosedError,
    DeviceNotFoundError,
    DeviceNotReadyError,
    InvalidPacketError,
    TunTapError,
)
from tuntap_cffi import pytun_compat as pytun
from tuntap_cffi._linux import backend as _linux

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT_IMPORT = "from tuntap_cffi import pytun_compat as pytun"


def program_for(implementation: str, program: str) -> Tuple[str, str]:
    """Return (interpreter, program text) running *program* on "pytun_compat" or the real "pytun".

    For "pytun" the test skips without a real pytun (fails under CI=true).
    """
    if implementation == "pytun_compat":
        return sys.executable, program
    assert COMPAT_IMPORT in program
    return require_real_pytun(), program.replace(COMPAT_IMPORT, "import pytun")  # the one-line change


def child_env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=REPO)


# ------------------------------------------------------------------ helpers


@pytest.fixture
def devices() -> Iterator[Callable[..., pytun.TunTapDevice]]:
    """A factory of compat devices; every one is closed after the test."""
    made: List[pytun.TunTapDevice] = []

    def make(*args: Any, **kwargs: Any) -> pytun.TunTapDevice:
        dev = pytun.TunTapDevice(*args, **kwargs)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


def inet_addrs(name: str) -> List[Dict[str, Any]]:
    """The IPv4 entries of ``ip -j addr show dev NAME``."""
    info = json.loads(ip("-j", "addr", "show", "dev", name))[0]
    return [a for a in info["addr_info"] if a["family"] == "inet"]


def wait_readable(fd: Any, timeout: float = 5.0) -> None:
    assert select.select([fd], [], [], timeout)[0], "no packet arrived"


def drained(dev: pytun.TunTapDevice) -> bool:
    """True if no packet is queued on *dev* (reads once, non-blocking)."""
    os.set_blocking(dev.fileno(), False)
    try:
        dev.read(65535)
    except pytun.Error as exc:
        assert exc.errno == errno.EAGAIN
        return True
    finally:
        os.set_blocking(dev.fileno(), True)
    return False


def tun_with_peer(make: Callable[..., pytun.TunTapDevice], name: str, subnet: str, flags: int) -> pytun.TunTapDevice:
    """A compat TUN, up, with subnet.1 peer subnet.2/24 set the pytun way."""
    tun = make(name=name, flags=flags)
    disable_ipv6(name)
    tun.addr = f"{subnet}.1"
    tun.dstaddr = f"{subnet}.2"
    tun.netmask = "255.255.255.0"
    tun.up()
    return tun


# ---------------------------------------------------------- module surface


def test_exports_what_pytun_exports() -> None:
    pytun_names = {
        "Error", "TunTapDevice", "IFF_TUN", "IFF_TAP", "IFF_NO_PI", "IFF_ONE_QUEUE",
        "IFF_VNET_HDR", "IFF_TUN_EXCL", "IFF_MULTI_QUEUE",
    }
    assert pytun_names <= set(pytun.__all__) and set(pytun.__all__) - pytun_names == {"ArgumentError"}
    # <linux/if_tun.h>: these are kernel ABI.
    assert (pytun.IFF_TUN, pytun.IFF_TAP, pytun.IFF_NO_PI, pytun.IFF_ONE_QUEUE) == (0x1, 0x2, 0x1000, 0x2000)
    assert (pytun.IFF_VNET_HDR, pytun.IFF_TUN_EXCL, pytun.IFF_MULTI_QUEUE) == (0x4000, 0x8000, 0x100)
    assert issubclass(pytun.Error, OSError) and not issubclass(pytun.Error, TunTapError)
    assert issubclass(pytun.ArgumentError, pytun.Error) and issubclass(pytun.ArgumentError, ValueError)


def test_default_device_is_tun_with_packet_info(ifname: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = devices(name=ifname)
    assert tun.name == ifname
    data = link_info(ifname)["linkinfo"]["info_data"]
    assert data["type"] == "tun" and data["pi"] is True and data["vnet_hdr"] is False
    fd = tun.fileno()
    assert os.get_blocking(fd), "pytun leaves the fd blocking"
    assert not os.get_inheritable(fd)
    assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/net/tun"


@pytest.mark.parametrize("flags, kind, pi, vnet_hdr, multi_queue", [
    (pytun.IFF_TAP, "tap", True, False, False),
    (pytun.IFF_TUN | pytun.IFF_NO_PI, "tun", False, False, False),
    (pytun.IFF_TAP | pytun.IFF_NO_PI | pytun.IFF_VNET_HDR, "tap", False, True, False),
    (pytun.IFF_TUN | pytun.IFF_NO_PI | pytun.IFF_MULTI_QUEUE | pytun.IFF_ONE_QUEUE, "tun", False, False, True),
])
def test_flags_reach_the_kernel(ifname: str, devices: Callable[..., pytun.TunTapDevice], flags: int, kind: str,
                                pi: bool, vnet_hdr: bool, multi_queue: bool) -> None:
    devices(ifname, flags)  # positional, as pytun allows
    data = link_info(ifname)["linkinfo"]["info_data"]
    assert (data["type"], data["pi"], data["vnet_hdr"], data["multi_queue"]) == (kind, pi, vnet_hdr, multi_queue)


def test_kernel_chosen_and_template_names(ifnames: Any, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tap = devices(flags=pytun.IFF_TAP)
    ifnames.given.append(tap.name)
    assert tap.name.startswith("tap") and tap.name[3:].isdigit()
    assert link_info(tap.name)["link_type"] == "ether"
    prefix = ifnames("t")
    tun = devices(name=prefix + "x%d")
    ifnames.given.append(tun.name)
    assert tun.name.startswith(prefix + "x") and tun.name[len(prefix) + 1:].isdigit()
    assert os.path.exists(f"/sys/class/net/{tun.name}")


# ----------------------------------------------------- attributes vs kernel


def test_ipv4_attributes_set_what_ip_reports(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = devices(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    local = f"{subnet}.1"
    # inet_aton rules, as pytun: a single hexadecimal number is a whole address.
    tun.addr = "0x" + socket.inet_aton(local).hex()
    assert tun.addr == local
    # SIOCSIFADDR on a point-to-point TUN makes a /32.
    assert [(a["local"], a["prefixlen"]) for a in inet_addrs(ifname)] == [(local, 32)]
    tun.dstaddr = f"{subnet}.2"
    tun.netmask = "255.255.255.0"
    assert [(a["local"], a["address"], a["prefixlen"]) for a in inet_addrs(ifname)] == [(local, f"{subnet}.2", 24)]
    assert (tun.addr, tun.dstaddr, tun.netmask) == (local, f"{subnet}.2", "255.255.255.0")
    tun.up()  # the kernel installs the prefix route once the link is up
    routes = json.loads(ip("-j", "route", "show", "dev", ifname))
    assert [r["dst"] for r in routes] == [f"{subnet}.0/24"]


def test_ipv4_attributes_read_what_the_kernel_holds(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = devices(name=ifname)
    ip("addr", "add", f"{subnet}.9", "peer", f"{subnet}.10/30", "dev", ifname)
    assert (tun.addr, tun.dstaddr, tun.netmask) == (f"{subnet}.9", f"{subnet}.10", "255.255.255.252")


def test_mtu_up_and_down_against_ip_link(ifname: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = devices(name=ifname)
    assert tun.mtu == link_info(ifname)["mtu"] == 1500
    tun.mtu = 1280
    assert link_info(ifname)["mtu"] == 1280
    ip("link", "set", "dev", ifname, "mtu", "9000")
    assert tun.mtu == 9000
    assert "UP" not in link_info(ifname)["flags"]
    tun.up()
    tun.up()  # harmless when up
    assert "UP" in link_info(ifname)["flags"]
    tun.down()
    tun.down()
    assert "UP" not in link_info(ifname)["flags"]


def test_hwaddr_against_ip_link(ifnames: Any, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tap = devices(name=ifnames(), flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    assert tap.hwaddr == bytes.fromhex(link_info(tap.name)["address"].replace(":", ""))
    tap.hwaddr = bytes.fromhex("02005e100042")
    assert link_info(tap.name)["address"] == "02:00:5e:10:00:42"
    assert tap.hwaddr == bytes.fromhex("02005e100042")
    tun = devices(name=ifnames())
    assert link_info(tun.name)["link_type"] == "none"
    assert tun.hwaddr == bytes(6)  # a TUN has none: pytun returns the zeros the kernel gives
    with pytest.raises(pytun.Error) as info:
        tun.hwaddr = bytes.fromhex("02005e100042")
    assert info.value.args == (errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))


def test_persist_against_ip_link(ifname: str) -> None:
    dev = pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    dev.persist()  # default True, as pytun
    assert link_info(ifname)["linkinfo"]["info_data"]["persist"] is True
    # No owner, as pytun: open to every user (programs that hand it to one rely on that).
    assert open(f"/sys/class/net/{ifname}/owner").read().strip() == "-1"
    dev.close()
    assert os.path.exists(f"/sys/class/net/{ifname}")
    assert dev.mtu == 1500  # attributes work by name, also after close (as pytun)
    again = pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    again.persist(False)
    assert link_info(ifname)["linkinfo"]["info_data"]["persist"] is False
    again.close()
    assert not os.path.exists(f"/sys/class/net/{ifname}")


# ------------------------------------------------------------------ errors


ARGUMENT_ERRORS: List[Tuple[str, Callable[[pytun.TunTapDevice], object], Optional[Tuple[object, ...]]]] = [
    ("no kind", lambda d: pytun.TunTapDevice(flags=0), ("Bad flags: either IFF_TUN or IFF_TAP must be set",)),
    ("two kinds", lambda d: pytun.TunTapDevice(flags=pytun.IFF_TUN | pytun.IFF_TAP),
     ("Bad flags: IFF_TUN and IFF_TAP could not both be set",)),
    ("long name", lambda d: pytun.TunTapDevice(name="x" * 16), ("Interface name too long",)),
    ("kernel-refused name", lambda d: pytun.TunTapDevice(name="a/b"), (errno.EINVAL, os.strerror(errno.EINVAL))),
    ("bad template", lambda d: pytun.TunTapDevice(name="tt%s"), (errno.EINVAL, os.strerror(errno.EINVAL))),
    ("non-ASCII name", lambda d: pytun.TunTapDevice(name="tt\u00e9"), None),
    ("bad addr", lambda d: setattr(d, "addr", "bogus"), ("Bad IP address",)),
    ("bad dstaddr", lambda d: setattr(d, "dstaddr", "1.2.3.4.5"), ("Bad IP address",)),
    ("bad netmask", lambda d: setattr(d, "netmask", ""), ("Bad IP address",)),
    ("short hwaddr", lambda d: setattr(d, "hwaddr", b"\x02\x00"), ("Bad MAC address",)),
    ("zero mtu", lambda d: setattr(d, "mtu", 0), ("Bad MTU, should be > 0",)),
    ("negative mtu", lambda d: setattr(d, "mtu", -1500), ("Bad MTU, should be > 0",)),
]


@pytest.mark.parametrize("label, action, args", ARGUMENT_ERRORS, ids=[case[0] for case in ARGUMENT_ERRORS])
def test_argument_errors_are_pytun_errors_and_value_errors(
    ifname: str, devices: Callable[..., pytun.TunTapDevice], monkeypatch: pytest.MonkeyPatch,
    label: str, action: Callable[[pytun.TunTapDevice], object], args: Optional[Tuple[object, ...]],
) -> None:
    dev = devices(name=ifname)
    links = our_links()  # (other programs on the box may add links meanwhile)
    with monkeypatch.context():
        # No system call may happen: pytun_compat's own, and its ioctls through _linux.
        for module, attr in ((pytun, "open_cloexec"), (pytun, "_inet_socket"), (_linux, "check")):
            monkeypatch.setattr(module, attr, lambda *a, **k: pytest.fail("reached the kernel despite bad input"))
        before = fd_count()
        with pytest.raises(pytun.ArgumentError) as info:
            action(dev)
        assert fd_count() == before
    assert isinstance(info.value, pytun.Error) and isinstance(info.value, ValueError)
    if args is not None:
        assert info.value.args == args
    assert our_links() == links


TYPE_ERRORS: List[Tuple[str, Callable[[pytun.TunTapDevice], object], type]] = [
    ("name bytes", lambda d: pytun.TunTapDevice(name=b"tt"), TypeError),  # type: ignore[arg-type]
    ("name NUL", lambda d: pytun.TunTapDevice(name="tt\0"), ValueError),
    ("flags str", lambda d: pytun.TunTapDevice(flags="1"), TypeError),  # type: ignore[arg-type]
    ("flags beyond C int", lambda d: pytun.TunTapDevice(flags=2**31 | 1), OverflowError),
    ("dev None", lambda d: pytun.TunTapDevice(dev=None), TypeError),  # type: ignore[arg-type]
    ("addr int", lambda d: setattr(d, "addr", 1), TypeError),
    ("addr non-ASCII", lambda d: setattr(d, "addr", "1.2.3.\u00e9"), UnicodeEncodeError),
    ("hwaddr bytearray", lambda d: setattr(d, "hwaddr", bytearray(6)), TypeError),
    ("mtu float", lambda d: setattr(d, "mtu", 1400.0), TypeError),
    ("mtu beyond C int", lambda d: setattr(d, "mtu", 2**31), OverflowError),
    ("persist int", lambda d: d.persist(1), TypeError),  # type: ignore[arg-type]
    ("mq_attach keyword", lambda d: d.mq_attach(flag=True), TypeError),  # type: ignore[call-arg]
    ("read float", lambda d: d.read(1.0), TypeError),  # type: ignore[arg-type]
    ("write int", lambda d: d.write(5), TypeError),  # type: ignore[arg-type]
    ("set name", lambda d: setattr(d, "name", "other"), AttributeError),
    ("new attribute", lambda d: setattr(d, "colour", "blue"), AttributeError),
]


@pytest.mark.parametrize("label, action, exc", TYPE_ERRORS, ids=[case[0] for case in TYPE_ERRORS])
def test_python_level_errors_as_pytun(
    ifname: str, devices: Callable[..., pytun.TunTapDevice], label: str,
    action: Callable[[pytun.TunTapDevice], object], exc: type,
) -> None:
    dev = devices(name=ifname)
    before = fd_count()
    with pytest.raises(exc) as info:
        action(dev)
    assert not isinstance(info.value, pytun.Error)
    assert fd_count() == before


def assert_pytun_error(exc: BaseException, err: int, *also: type) -> None:
    """*exc* is pytun-shaped (Error(errno, strerror)) and also each class in *also*."""
    assert isinstance(exc, pytun.Error)
    assert exc.args == (err, os.strerror(err)) and exc.errno == err and exc.filename is None
    for klass in also:
        assert isinstance(exc, klass), (type(exc).__mro__, klass)
    # tuntap_cffi's own error, with its advice, is kept as the cause.
    if isinstance(exc, TunTapError):
        assert isinstance(exc.__cause__, TunTapError) and exc.__cause__.errno == err


def test_creation_errors(ifname: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    devices(name=ifname)
    before = fd_count()
    with pytest.raises(pytun.Error) as info:
        pytun.TunTapDevice(name=ifname)
    assert_pytun_error(info.value, errno.EBUSY, DeviceBusyError, TunTapError)
    assert type(info.value) is pytun.Error.DeviceBusyError  # type: ignore[attr-defined]
    again = pickle.loads(pickle.dumps(info.value))  # e.g. across multiprocessing
    assert type(again) is type(info.value) and again.args == info.value.args
    with pytest.raises(pytun.Error) as info:
        pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TAP)  # the name is a TUN's
    assert_pytun_error(info.value, errno.EINVAL, TunTapError)
    with pytest.raises(pytun.Error) as info:
        pytun.TunTapDevice(dev="/nonexistent/tun")
    assert_pytun_error(info.value, errno.ENOENT, DeviceNotFoundError, FileNotFoundError)
    with pytest.raises(pytun.Error) as info:
        pytun.TunTapDevice(dev="/dev/null")
    assert_pytun_error(info.value, errno.ENOTTY, TunTapError)
    assert fd_count() == before, "a failed creation leaks no fd"


def test_kernel_errors_of_attributes_and_io(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = devices(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    disable_ipv6(ifname)
    for attr in ("addr", "dstaddr", "netmask"):
        with pytest.raises(pytun.Error) as info:
            getattr(tun, attr)
        assert_pytun_error(info.value, errno.EADDRNOTAVAIL, TunTapError)
    with pytest.raises(pytun.Error) as info:
        tun.netmask = "255.255.255.0"  # before any address
    assert_pytun_error(info.value, errno.EADDRNOTAVAIL)
    with pytest.raises(pytun.Error) as info:
        tun.mtu = 10  # below the kernel's minimum: the kernel says EINVAL
    assert_pytun_error(info.value, errno.EINVAL)
    assert link_info(ifname)["mtu"] == 1500
    with pytest.raises(pytun.Error) as info:
        tun.mq_attach()  # not a multi-queue device
    assert_pytun_error(info.value, errno.EINVAL)
    packet = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 1, 2, b"x")
    with pytest.raises(pytun.Error) as info:
        tun.write(packet)  # the interface is down
    assert_pytun_error(info.value, errno.EIO, DeviceNotReadyError)
    tun.up()
    with pytest.raises(pytun.Error) as info:
        tun.write(b"\x75" * 40)  # IP version 7
    assert_pytun_error(info.value, errno.EINVAL, InvalidPacketError, ValueError)
    os.set_blocking(tun.fileno(), False)  # a program may do this to the fd pytun gives it
    with pytest.raises(pytun.Error) as info:
        tun.read(1500)
    assert_pytun_error(info.value, errno.EAGAIN, BlockingIOError)


def test_closed_device(ifname: str) -> None:
    tun = pytun.TunTapDevice(name=ifname)
    tun.close()
    assert not os.path.exists(f"/sys/class/net/{ifname}")
    assert tun.fileno() == -1 and tun.name == ifname
    for action in (lambda: tun.read(100), lambda: tun.read(0), lambda: tun.write(b"x"), tun.persist, tun.mq_attach):
        with pytest.raises(pytun.Error) as info:
            action()
        assert_pytun_error(info.value, errno.EBADF, DeviceClosedError)
    with pytest.raises(pytun.Error) as info:
        tun.mtu
    assert_pytun_error(info.value, errno.ENODEV, DeviceNotFoundError)
    tun.close()  # idempotent


def test_without_cap_net_admin(ifname: str) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed"
    child = (
        "import errno, sys\n"
        f"{COMPAT_IMPORT}\n"
        "try:\n"
        "    pytun.TunTapDevice(name=sys.argv[1])\n"
        "except pytun.Error as e:\n"
        "    print(e.args == (errno.EPERM, 'Operation not permitted'), isinstance(e, PermissionError))\n"
    )
    proc = subprocess.run(
        [setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--", sys.executable, "-c", child, ifname],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
    assert not os.path.exists(f"/sys/class/net/{ifname}")


def test_ctrl_c_interrupts_a_blocking_read(ifname: str) -> None:
    child = (
        "import sys\n"
        f"{COMPAT_IMPORT}\n"
        "tun = pytun.TunTapDevice(name=sys.argv[1], flags=pytun.IFF_TUN | pytun.IFF_NO_PI)\n"
        "try:\n"
        "    print('reading', flush=True)\n"
        "    tun.read(1500)\n"  # the interface is down: nothing ever arrives
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, ifname], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=child_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "reading\n"
        time.sleep(0.3)  # let it block in read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert out == "interrupted\n" and proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_dropped_device_closes_without_warning(ifname: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pytun.TunTapDevice(name=ifname)
        gc.collect()
    assert not os.path.exists(f"/sys/class/net/{ifname}"), "pytun closes the fd when the object goes"
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("implementation", ["pytun", "pytun_compat"])
def test_program_exits_quietly_with_an_open_device(ifname: str, implementation: str) -> None:
    """A pytun program that never closes its device (a module global) exits without a word, as with pytun."""
    python, child = program_for(
        implementation, f"{COMPAT_IMPORT}\nimport sys\ntun = pytun.TunTapDevice(name=sys.argv[1])\nprint(tun.mtu)\n")
    proc = subprocess.run([python, "-c", child, ifname], capture_output=True, text=True, timeout=60, env=child_env())
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1500\n", "")
    assert not os.path.exists(f"/sys/class/net/{ifname}")


# ----------------------------------------------------------------- packets


def test_udp_through_read_and_write(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = tun_with_peer(devices, ifname, subnet, pytun.IFF_TUN | pytun.IFF_NO_PI)
    tun.mtu = 1400
    payload = os.urandom(1372)  # fills the MTU exactly
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 0))
        port = s.getsockname()[1]
        s.sendto(payload, (f"{subnet}.2", 9999))
        wait_readable(tun)  # select() takes the device itself
        packet = tun.read(tun.mtu)
        assert len(packet) == 1400
        assert parse_ipv4_udp(packet) == (f"{subnet}.1", f"{subnet}.2", port, 9999, payload)
        # The other way: a packet written to the TUN reaches the socket.
        s.settimeout(5)
        for data in (bytes, bytearray, memoryview):  # pytun takes bytes only; more is harmless
            reply = os.urandom(100)
            assert tun.write(data(ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9999, port, reply))) == 128
            assert s.recvfrom(2048) == (reply, (f"{subnet}.2", 9999))


def normalised(result: Any, offset: int) -> Any:
    """A read result with the IPv4 ID and header checksum (which differ per packet) zeroed."""
    if not isinstance(result, bytes):
        return result
    data = bytearray(result)
    for i in (4, 5, 10, 11):
        if offset + i < len(data):
            data[offset + i] = 0
    return bytes(data)


STRIP = int(1).to_bytes(2, sys.byteorder)  # tun_pi.flags = TUN_PKT_STRIP, host order


@pytest.mark.parametrize("flags", [
    pytun.IFF_TUN,
    pytun.IFF_TUN | pytun.IFF_NO_PI,
    pytun.IFF_TUN | pytun.IFF_NO_PI | pytun.IFF_VNET_HDR,
    pytun.IFF_TUN | pytun.IFF_VNET_HDR,
], ids=["pi", "no-pi", "vnet-hdr", "pi-vnet-hdr"])
def test_read_size_truncates_exactly_as_the_kernel(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice],
                                                  flags: int) -> None:
    """pytun_compat.read(size) against os.read(fd, size) on the same device, packet for packet."""
    tun = tun_with_peer(devices, ifname, subnet, flags)
    pi = not flags & pytun.IFF_NO_PI
    header = 4 * pi + 10 * bool(flags & pytun.IFF_VNET_HDR)  # tun_pi, then virtio_net_hdr
    full = header + 28 + 100
    sizes = [1, 3, 4, 5, 8, 9, 10, 12, 14, 20, header + 27, full - 1, full, full + 1, 65535]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 4321))

        def read_one(reader: Callable[[int], bytes], size: int) -> Any:
            s.sendto(b"p" * 100, (f"{subnet}.2", 9))
            wait_readable(tun)
            try:
                return reader(size)
            except OSError as exc:
                return ("errno", exc.errno)

        for size in sizes:
            ours = read_one(tun.read, size)
            kernels = read_one(lambda n: os.read(tun.fileno(), n), size)
            assert normalised(ours, header) == normalised(kernels, header), size
            if size < header:  # the headers must fit: EINVAL, and the packet is dropped
                assert ours == ("errno", errno.EINVAL)
            else:
                assert len(ours) == min(size, full)
                if pi:
                    assert ours[:2] == (STRIP if size < full else bytes(2))
            assert drained(tun), "each read consumed exactly one packet"


def test_read_size_follows_pytuns_unsigned_conversion(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = tun_with_peer(devices, ifname, subnet, pytun.IFF_TUN)  # packet info on
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((f"{subnet}.1", 4322))
        s.sendto(b"q" * 100, (f"{subnet}.2", 9))
        wait_readable(tun)
        assert tun.read(0) == b""
        assert len(tun.read(2000)) == 132, "read(0) left the packet queued"
        s.sendto(b"q" * 100, (f"{subnet}.2", 9))
        wait_readable(tun)
        assert len(tun.read(-1)) == 132  # -1 is 2**32 - 1 for pytun's "I" format: the whole packet
        s.sendto(b"q" * 100, (f"{subnet}.2", 9))
        wait_readable(tun)
        # 2**32 + 8 is masked to 8: tun_pi (TUN_PKT_STRIP, proto 0x0800), then 4 bytes of IPv4.
        assert tun.read(2**32 + 8) == STRIP + bytes.fromhex("0800") + bytes.fromhex("45000080")
        assert drained(tun)


def test_concurrent_readers_get_each_packet_once(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    tun = tun_with_peer(devices, ifname, subnet, pytun.IFF_TUN | pytun.IFF_NO_PI)
    os.set_blocking(tun.fileno(), False)
    count = 200
    got: List[bytes] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 20

    def reader() -> None:
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= count:
                    return
            if not select.select([tun], [], [], 0.05)[0]:
                continue
            try:
                packet = tun.read(1500)
            except pytun.Error as exc:
                assert exc.errno == errno.EAGAIN  # the other thread took it
                continue
            with lock:
                got.append(parse_ipv4_udp(packet)[4])

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    payloads = [b"%05d" % i * 50 for i in range(count)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, (f"{subnet}.2", 9))
    for t in threads:
        t.join()
    assert sorted(got) == sorted(payloads)


def test_reads_ahead_until_fileno_then_hands_out_the_rest_in_order(ifname: str, subnet: str) -> None:
    """Before fileno() a read takes a batch of queued packets; after it, those come first, then the fd's.

    On PyPy there is no read-ahead (pytun_compat._READ_AHEAD): the first read took one packet and the rest
    is still the kernel's, readable on the fd."""
    pytun.TunTapDevice(name=ifname).close()  # the first close() in a process opens /dev/null for good
    before = fd_count()
    tun = pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    disable_ipv6(ifname)
    tun.addr, tun.dstaddr, tun.netmask = f"{subnet}.1", f"{subnet}.2", "255.255.255.0"
    tun.up()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(12):  # fewer than the first read-ahead ring holds
                s.sendto(b"%03d" % i, (f"{subnet}.2", 9))
            assert parse_ipv4_udp(tun.read(1500))[4] == b"000"  # blocking, fd never asked for
            fd = tun.fileno()
            assert os.get_blocking(fd), "the fd is blocking once handed out, as pytun's"
            os.set_blocking(fd, False)
            if pytun._READ_AHEAD:
                with pytest.raises(BlockingIOError):
                    os.read(fd, 2000)  # the kernel queue is empty: the first read took it all
                rest = 1
            else:
                assert parse_ipv4_udp(os.read(fd, 2000))[4] == b"001"
                rest = 2
            assert [parse_ipv4_udp(tun.read(1500))[4] for _ in range(rest, 12)] == [b"%03d" % i for i in range(rest, 12)]
            with pytest.raises(pytun.Error) as info:
                tun.read(1500)
            assert info.value.errno == errno.EAGAIN
            # From now on one read() per call on the fd: what arrives is readable on the fd.
            s.sendto(b"late", (f"{subnet}.2", 9))
            wait_readable(fd)
            assert parse_ipv4_udp(tun.read(1500))[4] == b"late"
        assert tun.mtu == 1500
    finally:
        tun.close()
    del tun, info  # (the exception's traceback holds the device)
    assert fd_count() == before, " ".join(open_fds())  # the ring's io_uring, the attribute socket: all gone


def test_attributes_share_one_socket_that_close_releases(ifname: str) -> None:
    before = fd_count()
    tun = pytun.TunTapDevice(name=ifname)
    opened = fd_count()
    for _ in range(3):
        assert (tun.mtu, tun.hwaddr) == (1500, bytes(6))
    assert fd_count() == opened + 1, "one AF_INET socket for every attribute access"
    tun.persist(True)
    tun.close()
    assert fd_count() == opened - 1, " ".join(open_fds())  # the socket went with close()
    try:
        assert tun.mtu == 1500  # after close(): a socket per access, as pytun's
        assert fd_count() == before
    finally:
        again = pytun.TunTapDevice(name=ifname)
        again.persist(False)
        again.close()


def test_mq_attach_against_the_kernel(ifname: str, subnet: str, devices: Callable[..., pytun.TunTapDevice]) -> None:
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI | pytun.IFF_MULTI_QUEUE
    a = tun_with_peer(devices, ifname, subnet, flags)
    b = devices(name=ifname, flags=flags)

    def queues() -> Tuple[int, int]:
        data = link_info(ifname)["linkinfo"]["info_data"]
        return data["numqueues"], data["numdisabled"]

    assert queues() == (2, 0)
    a.mq_attach(False)
    assert queues() == (1, 1)
    with pytest.raises(pytun.Error) as info:
        a.mq_attach(False)  # already detached: the kernel says EINVAL
    assert info.value.args == (errno.EINVAL, os.strerror(errno.EINVAL))
    # Every flow now goes to the one attached queue.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for port in range(5000, 5016):
            s.sendto(b"mq", (f"{subnet}.2", port))
    seen = set()
    while len(seen) < 16:
        wait_readable(b)
        seen.add(parse_ipv4_udp(b.read(1500))[3])
    assert seen == set(range(5000, 5016))
    assert drained(a) and drained(b)
    a.mq_attach()  # default True
    assert queues() == (2, 0)
    with pytest.raises(pytun.Error):
        a.mq_attach(True)  # already attached


# ------------------------------------------------- pytun's outcomes, exactly

#: A script of pytun calls; prints the outcome of each as JSON.  argv: TUN,
#: TAP and multi-queue interface names, and a /24 prefix "198.18.X".
PYTUN_SCENARIO = '''\
import json
import os
import select
import socket
import sys

from tuntap_cffi import pytun_compat as pytun

tun_name, tap_name, mq_name, net = sys.argv[1:5]
outcomes = []


def step(label, action):
    try:
        value = action()
    except pytun.Error as e:
        outcomes.append([label, "Error", list(e.args)])
    except Exception as e:
        outcomes.append([label, type(e).__name__])
    else:
        outcomes.append([label, "ok", value.hex() if isinstance(value, bytes) else value])


def assign(dev, attr, value):
    def action():
        setattr(dev, attr, value)
        return getattr(dev, attr)
    return action


def receive(dev, size):
    def action():
        if not select.select([dev], [], [], 5)[0]:
            raise RuntimeError("no packet arrived")
        return dev.read(size)
    return action


step("no kind", lambda: pytun.TunTapDevice(name=tun_name, flags=0))
step("both kinds", lambda: pytun.TunTapDevice(name=tun_name, flags=pytun.IFF_TUN | pytun.IFF_TAP))
step("long name", lambda: pytun.TunTapDevice(name="x" * 16))
step("bad name", lambda: pytun.TunTapDevice(name="a/b"))
step("flags str", lambda: pytun.TunTapDevice(name=tun_name, flags="1"))
step("no node", lambda: pytun.TunTapDevice(name=tun_name, dev="/nonexistent/tun"))
step("not a tun node", lambda: pytun.TunTapDevice(name=tun_name, dev="/dev/null"))

tun = pytun.TunTapDevice(name=tun_name)  # pytun's default: IFF_TUN, packet info on
with open(f"/proc/sys/net/ipv6/conf/{tun_name}/disable_ipv6", "w") as f:
    f.write("1")
step("name", lambda: tun.name == tun_name)
step("busy", lambda: pytun.TunTapDevice(name=tun_name))
step("no addr", lambda: tun.addr)
step("no dstaddr", lambda: tun.dstaddr)
step("no netmask", lambda: tun.netmask)
step("netmask first", assign(tun, "netmask", "255.255.255.0"))
step("bad addr", assign(tun, "addr", "bogus"))
step("addr not str", assign(tun, "addr", 1))
step("addr", assign(tun, "addr", net + ".1"))
step("dstaddr", assign(tun, "dstaddr", net + ".2"))
step("netmask", assign(tun, "netmask", "255.255.255.0"))
step("addr again", lambda: tun.addr)
step("mtu 0", assign(tun, "mtu", 0))
step("mtu 10", assign(tun, "mtu", 10))
step("mtu float", assign(tun, "mtu", 1400.0))
step("mtu", assign(tun, "mtu", 1400))
step("tun hwaddr", lambda: tun.hwaddr)
step("set tun hwaddr", assign(tun, "hwaddr", b"\\x02\\x00\\x5e\\x00\\x00\\x01"))
step("short hwaddr", assign(tun, "hwaddr", b"\\x02"))
step("str hwaddr", assign(tun, "hwaddr", "abcdef"))
step("set name", assign(tun, "name", "other"))
step("new attribute", assign(tun, "colour", "blue"))
step("persist int", lambda: tun.persist(1))
step("mq_attach single queue", lambda: tun.mq_attach())
step("write while down", lambda: tun.write(bytes.fromhex("00000800") + bytes(20)))
step("up", tun.up)
step("up again", tun.up)
step("read 0", lambda: tun.read(0))

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def send():
    sock.sendto(b"p" * 100, (net + ".2", 9))


send()
step("read whole", lambda: len(receive(tun, 2000)()))
send()
step("read 8", receive(tun, 8))
send()
step("read 4", receive(tun, 4))
send()
step("read 2", receive(tun, 2))
os.set_blocking(tun.fileno(), False)
step("read 2 dropped it", lambda: tun.read(2000))
os.set_blocking(tun.fileno(), True)
send()
step("read -1", lambda: len(receive(tun, -1)()))
send()
step("read 2**32 + 8", receive(tun, 2**32 + 8))
step("read float", lambda: tun.read(1.0))
step("write", lambda: tun.write(bytes.fromhex("00000800") + bytes.fromhex("4500001c0001000040117d") + bytes(17)))
step("down", tun.down)
step("fileno", lambda: tun.fileno() >= 0)

tap = pytun.TunTapDevice(name=tap_name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
step("tap hwaddr", assign(tap, "hwaddr", b"\\x02\\x00\\x5e\\x00\\x00\\x09"))
step("tap multicast hwaddr", assign(tap, "hwaddr", b"\\x01\\x00\\x5e\\x00\\x00\\x09"))
step("tap mtu", lambda: tap.mtu)
tap.close()

flags = pytun.IFF_TUN | pytun.IFF_MULTI_QUEUE | pytun.IFF_NO_PI
a = pytun.TunTapDevice(name=mq_name, flags=flags)
b = pytun.TunTapDevice(name=mq_name, flags=flags)
step("attach attached", a.mq_attach)
step("detach", lambda: a.mq_attach(False))
step("detach detached", lambda: a.mq_attach(False))
step("attach", lambda: a.mq_attach(True))
step("mq_attach keyword", lambda: a.mq_attach(flag=True))
step("single queue onto multi", lambda: pytun.TunTapDevice(name=mq_name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI))
a.close()
b.close()

tun.close()
step("fileno closed", tun.fileno)
step("read closed", lambda: tun.read(10))
step("read 0 closed", lambda: tun.read(0))
step("write closed", lambda: tun.write(b"x"))
step("persist closed", tun.persist)
step("mq_attach closed", tun.mq_attach)
step("mtu of vanished", lambda: tun.mtu)
step("close again", tun.close)

keep = pytun.TunTapDevice(name=tun_name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
step("persist", keep.persist)
keep.close()
step("persistent after close", lambda: os.path.exists("/sys/class/net/" + tun_name))
step("mtu after close", lambda: keep.mtu)
again = pytun.TunTapDevice(name=tun_name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
step("persist False", lambda: again.persist(False))
again.close()
step("gone", lambda: os.path.exists("/sys/class/net/" + tun_name))
print(json.dumps(outcomes))
'''


def _e(err: int) -> List[object]:
    return ["Error", [err, os.strerror(err)]]


#: What python-pytun 2.4.2 (the C extension) prints for PYTUN_SCENARIO.
PYTUN_OUTCOMES: List[List[object]] = [
    ["no kind", "Error", ["Bad flags: either IFF_TUN or IFF_TAP must be set"]],
    ["both kinds", "Error", ["Bad flags: IFF_TUN and IFF_TAP could not both be set"]],
    ["long name", "Error", ["Interface name too long"]],
    ["bad name", *_e(errno.EINVAL)],
    ["flags str", "TypeError"],
    ["no node", *_e(errno.ENOENT)],
    ["not a tun node", *_e(errno.ENOTTY)],
    ["name", "ok", True],
    ["busy", *_e(errno.EBUSY)],
    ["no addr", *_e(errno.EADDRNOTAVAIL)],
    ["no dstaddr", *_e(errno.EADDRNOTAVAIL)],
    ["no netmask", *_e(errno.EADDRNOTAVAIL)],
    ["netmask first", *_e(errno.EADDRNOTAVAIL)],
    ["bad addr", "Error", ["Bad IP address"]],
    ["addr not str", "TypeError"],
    ["addr", "ok", "{net}.1"],
    ["dstaddr", "ok", "{net}.2"],
    ["netmask", "ok", "255.255.255.0"],
    ["addr again", "ok", "{net}.1"],
    ["mtu 0", "Error", ["Bad MTU, should be > 0"]],
    ["mtu 10", *_e(errno.EINVAL)],
    ["mtu float", "TypeError"],
    ["mtu", "ok", 1400],
    ["tun hwaddr", "ok", "000000000000"],
    ["set tun hwaddr", *_e(errno.EOPNOTSUPP)],
    ["short hwaddr", "Error", ["Bad MAC address"]],
    ["str hwaddr", "TypeError"],
    ["set name", "AttributeError"],
    ["new attribute", "AttributeError"],
    ["persist int", "TypeError"],
    ["mq_attach single queue", *_e(errno.EINVAL)],
    ["write while down", *_e(errno.EIO)],
    ["up", "ok", None],
    ["up again", "ok", None],
    ["read 0", "ok", ""],
    ["read whole", "ok", 132],
    ["read 8", "ok", "PI_STRIP" + "080045000080"],
    ["read 4", "ok", "PI_STRIP" + "0800"],
    ["read 2", *_e(errno.EINVAL)],
    ["read 2 dropped it", *_e(errno.EAGAIN)],
    ["read -1", "ok", 132],
    ["read 2**32 + 8", "ok", "PI_STRIP" + "080045000080"],
    ["read float", "TypeError"],
    ["write", "ok", 32],
    ["down", "ok", None],
    ["fileno", "ok", True],
    ["tap hwaddr", "ok", "02005e000009"],
    ["tap multicast hwaddr", *_e(errno.EADDRNOTAVAIL)],
    ["tap mtu", "ok", 1500],
    ["attach attached", *_e(errno.EINVAL)],
    ["detach", "ok", None],
    ["detach detached", *_e(errno.EINVAL)],
    ["attach", "ok", None],
    ["mq_attach keyword", "TypeError"],
    ["single queue onto multi", *_e(errno.EINVAL)],
    ["fileno closed", "ok", -1],
    ["read closed", *_e(errno.EBADF)],
    ["read 0 closed", *_e(errno.EBADF)],
    ["write closed", *_e(errno.EBADF)],
    ["persist closed", *_e(errno.EBADF)],
    ["mq_attach closed", *_e(errno.EBADF)],
    ["mtu of vanished", *_e(errno.ENODEV)],
    ["close again", "ok", None],
    ["persist", "ok", None],
    ["persistent after close", "ok", True],
    ["mtu after close", "ok", 1500],
    ["persist False", "ok", None],
    ["gone", "ok", False],
]


def expected_outcomes(net: str) -> List[List[object]]:
    strip = STRIP.hex()
    out = []
    for row in PYTUN_OUTCOMES:
        row = list(row)
        if isinstance(row[-1], str):
            row[-1] = row[-1].replace("{net}", net).replace("PI_STRIP", strip)
        out.append(row)
    return out


IMPLEMENTATIONS = ["pytun_compat", "pytun"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_pytun_scenario_outcomes(implementation: str, ifnames: Any, subnet: str) -> None:
    python, program = program_for(implementation, PYTUN_SCENARIO)
    proc = subprocess.run([python, "-c", program, ifnames("s"), ifnames("s"), ifnames("s"), subnet],
                          capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    expected = expected_outcomes(subnet)
    assert [o[0] for o in outcomes] == [e[0] for e in expected]
    for got, want in zip(outcomes, expected):
        assert got == want


# ------------------------------------------ a pytun-style UDP tunnel program

#: A UDP tunnel written the way pytun users write one: bench/pytun_tunnel.py
#: (bench/pytun_bench.py times it).  argv: TUN name, TUN address, TUN peer,
#: local UDP address, remote UDP address, UDP port.
TUNNEL_PROGRAM = open(os.path.join(REPO, "bench", "pytun_tunnel.py")).read()

UDP_ECHO_SERVER = '''\
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, sender = sock.recvfrom(65535)
    sock.sendto(data, sender)
'''

#: Sends each hex line of stdin as one datagram; prints each reply as hex.
UDP_ECHO_CLIENT = '''\
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.connect((sys.argv[1], int(sys.argv[2])))
for line in sys.stdin:
    sock.send(bytes.fromhex(line))
    print(sock.recv(65535).hex(), flush=True)
'''

def run_in(ns: str, *argv: str, **kwargs: Any) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60, **kwargs)


def start_in(ns: str, python: str, program: str, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(["ip", "netns", "exec", ns, python, "-c", program, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def wait_ready(proc: "subprocess.Popen[str]", timeout: float = 30.0) -> str:
    """Return the "ready ..." line *proc* prints once set up; fail with its stderr otherwise."""
    assert proc.stdout is not None and proc.stderr is not None
    if select.select([proc.stdout], [], [], timeout)[0]:
        line = proc.stdout.readline()
        if line.startswith("ready"):
            return line.strip()
    proc.kill()
    raise AssertionError(f"{proc.args} did not get ready: {proc.stderr.read()}")


def stop(procs: List["subprocess.Popen[str]"]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class Underlay:
    """Two namespaces joined by a veth pair: a at prefix.1, b at prefix.2 (/24)."""

    def __init__(self, a: str, b: str, prefix: str) -> None:
        self.a, self.b, self.prefix = a, b, prefix


@pytest.fixture
def underlay(ifnames: Any, subnet: str) -> Iterator[Underlay]:
    """Two fresh network namespaces joined by a veth pair; both removed afterwards, whatever happens."""
    assert shutil.which("ip"), "iproute2 is needed"
    veth = [ifnames("v"), ifnames("v")]
    # Deleting a namespace takes its veth end, and so the pair, along.
    with namespace("a") as ns_a, namespace("b") as ns_b:
        namespaces = [ns_a, ns_b]
        ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for ns, dev, host in zip(namespaces, veth, ("1", "2")):
            ip("link", "set", "dev", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        yield Underlay(ns_a, ns_b, subnet)
    left = set(ip("netns", "list").split()) & set(namespaces)
    assert not left, f"namespaces left behind: {left}"


TUNNEL_PAIRS = [("pytun_compat", "pytun_compat"), ("pytun", "pytun"), ("pytun", "pytun_compat")]


@pytest.mark.parametrize("side_a, side_b", TUNNEL_PAIRS, ids=["-".join(p) for p in TUNNEL_PAIRS])
def test_pytun_style_udp_tunnel_between_namespaces(underlay: Underlay, side_a: str, side_b: str) -> None:
    assert shutil.which("ping"), "iputils-ping is needed"
    # The overlay is the mirror /24 in the other half of 198.18.0.0/15; it
    # exists only inside the two namespaces.
    first, second, third = underlay.prefix.split(".")
    overlay = f"{first}.{37 - int(second)}.{third}"
    under_a, under_b = f"{underlay.prefix}.1", f"{underlay.prefix}.2"
    port = "4789"
    procs: List["subprocess.Popen[str]"] = []
    try:
        python_a, program_a = program_for(side_a, TUNNEL_PROGRAM)
        python_b, program_b = program_for(side_b, TUNNEL_PROGRAM)
        tun_a, tun_b = new_name("o"), new_name("o")
        procs.append(start_in(underlay.a, python_a, program_a, tun_a, f"{overlay}.1", f"{overlay}.2", under_a, under_b, port))
        procs.append(start_in(underlay.b, python_b, program_b, tun_b, f"{overlay}.2", f"{overlay}.1", under_b, under_a, port))
        assert wait_ready(procs[0]) == f"ready {tun_a} {overlay}.1 {overlay}.2 255.255.255.0 1400"
        assert wait_ready(procs[1]) == f"ready {tun_b} {overlay}.2 {overlay}.1 255.255.255.0 1400"
        # What the tunnel programs configured, as the kernel of each namespace reports it.
        for ns, tun, local, peer in ((underlay.a, tun_a, ".1", ".2"), (underlay.b, tun_b, ".2", ".1")):
            info = json.loads(ip("-n", ns, "-j", "addr", "show", "dev", tun))[0]
            assert info["mtu"] == 1400 and "UP" in info["flags"]
            inet = [a for a in info["addr_info"] if a["family"] == "inet"]
            assert [(a["local"], a["address"], a["prefixlen"]) for a in inet] == [(overlay + local, overlay + peer, 24)]

        ping = run_in(underlay.a, "ping", "-c", "5", "-i", "0.2", "-W", "2", f"{overlay}.2")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert " 0% packet loss" in ping.stdout and "5 received" in ping.stdout

        procs.append(start_in(underlay.b, sys.executable, UDP_ECHO_SERVER, f"{overlay}.2", "7"))
        wait_ready(procs[-1])
        # 1372 bytes fill the overlay MTU exactly; 3000 go as IP fragments, each tunnelled.
        payloads = [os.urandom(n) for n in (1, 64, 1372, 3000, 512)]
        client = run_in(underlay.a, sys.executable, "-c", UDP_ECHO_CLIENT, f"{overlay}.2", "7",
                        input="".join(p.hex() + "\n" for p in payloads), env=child_env())
        assert client.returncode == 0, client.stderr
        assert [bytes.fromhex(line) for line in client.stdout.split()] == payloads

        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited: {proc.stderr.read() if proc.stderr else ''}"
    finally:
        stop(procs)
