"""Every error path: bad input before any syscall, and each real kernel failure."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from typing import Iterator, List

import pytest

import tuntap_cffi
from tuntest import configure, delete_link, fd_count, ip, ipv4_udp, new_name
from tuntap_cffi import (
    DeviceBusyError,
    DeviceNotReadyError,
    DevicesExhaustedError,
    InvalidPacketError,
    TunTapError,
    open_tap,
    open_tun,
)
from tuntap_cffi._linux import backend as _linux

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_syscalls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if validation lets a call through to the backend, or opens an fd."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached the kernel despite bad input")

    monkeypatch.setattr(_linux, "create", forbidden)
    before = fd_count()
    yield
    assert fd_count() == before


@pytest.mark.parametrize("name", [
    "a" * 16, "é", "tun\u00ff", "has space", "tab\there", "nl\n", "sl/ash", "co:lon", "nul\0", ".", "..",
    "two%d%d", "pct%s", "pct%", "x%dd%d",
])
def test_bad_names_raise_value_error(name: str, no_syscalls: None) -> None:
    with pytest.raises(ValueError) as info:
        open_tun(name)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", [b"tun0", 0, None, ["tun0"]])
def test_bad_name_types_raise_type_error(name: object, no_syscalls: None) -> None:
    with pytest.raises(TypeError):
        open_tap(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("options, exc", [
    ({"packet_info": 1}, TypeError),
    ({"persist": "yes"}, TypeError),
    ({"nonblocking": None}, TypeError),
    ({"multi_queue": 0}, TypeError),
    ({"owner": -1}, ValueError),
    ({"owner": 2**32}, ValueError),
    ({"owner": 1.5}, TypeError),
    ({"group": True}, TypeError),
    ({"owner": "no-such-user-tuntap"}, ValueError),
    ({"group": "no-such-group-tuntap"}, ValueError),
    ({"group": tuntap_cffi.EVERYONE}, TypeError),
    ({"owner": tuntap_cffi.EVERYONE, "group": 0}, ValueError),
    ({"owner": "EVERYONE-no-such-user"}, ValueError),
    ({"colour": "blue"}, TypeError),
])
def test_bad_options(options: dict, exc: type, no_syscalls: None) -> None:  # type: ignore[type-arg]
    with pytest.raises(exc):
        open_tun("", **options)


def test_name_of_15_bytes_is_accepted(ifnames) -> None:  # type: ignore[no-untyped-def]
    name = ifnames("L").ljust(15, "z")
    ifnames.given.append(name)
    with open_tun(name) as dev:
        assert dev.name == name


def test_busy_name(ifname: str) -> None:
    with open_tun(ifname):
        before = fd_count()
        with pytest.raises(DeviceBusyError) as info:
            open_tun(ifname)
        assert info.value.errno == errno.EBUSY
        assert info.value.filename == ifname
        assert fd_count() == before


def test_name_taken_by_other_kind(ifname: str) -> None:
    with open_tun(ifname):
        before = fd_count()
        with pytest.raises(DeviceBusyError) as info:
            open_tap(ifname)
        assert info.value.errno == errno.EINVAL
        assert "another kind" in str(info.value)
        assert fd_count() == before


def test_template_exhausted() -> None:
    # A 13-byte prefix + "%d" leaves room for two digits: exactly 100 names.
    prefix = new_name("e").ljust(13, "z")
    devices = []
    try:
        for _ in range(100):
            devices.append(open_tun(prefix + "%d"))
        assert sorted(d.name for d in devices) == sorted(f"{prefix}{i}" for i in range(100))
        before = fd_count()
        with pytest.raises(DevicesExhaustedError) as info:
            open_tun(prefix + "%d")
        # ENFILE once all 32768 numbers are used; EEXIST when the number no
        # longer fits in 15 bytes and the truncated name is taken (6.x).
        assert info.value.errno in (errno.ENFILE, errno.EEXIST)
        assert "template" in str(info.value)
        assert fd_count() == before
    finally:
        for dev in devices:
            dev.close()
        for i in range(100):
            delete_link(f"{prefix}{i}")


def test_write_to_down_tun_is_not_ready(ifname: str) -> None:
    from tuntest import ipv4_udp

    with open_tun(ifname) as dev:
        with pytest.raises(DeviceNotReadyError) as info:
            dev.write(ipv4_udp("198.18.0.2", "198.18.0.1", 1, 2, b"x"))
        assert info.value.errno == errno.EIO
        assert "up" in str(info.value)
        assert isinstance(info.value, TunTapError) and isinstance(info.value, OSError)


@pytest.mark.parametrize("data", [b"\x00" * 20, bytearray(b"\x01\x02\x03"), b"\x75" * 40], ids=["zeros", "short", "version-7"])
def test_garbage_written_to_tun_is_invalid_packet(ifname: str, data: bytes) -> None:
    with open_tun(ifname) as dev:
        dev.up()
        with pytest.raises(InvalidPacketError) as info:
            dev.write(data)
        assert info.value.errno == errno.EINVAL
        assert isinstance(info.value, ValueError)
        assert "IPv4 or IPv6" in str(info.value)
        assert info.value.filename == ifname


def test_short_frame_written_to_tap_is_invalid_packet(ifname: str) -> None:
    with open_tap(ifname) as dev:
        dev.up()
        with pytest.raises(InvalidPacketError):
            dev.write(b"\x00" * 10)


def test_small_buffer_is_refused_before_reading(ifname: str) -> None:
    with open_tun(ifname, nonblocking=True) as dev:
        with pytest.raises(ValueError) as info:
            dev.readinto(bytearray(1499))
        assert "1499" in str(info.value) and "1500" in str(info.value)
        assert "truncate" in str(info.value)
        with pytest.raises(ValueError):
            dev.read(100)
        with pytest.raises(BlockingIOError):  # exactly the MTU is enough
            dev.readinto(bytearray(1500))
        dev.mtu = 9000
        with pytest.raises(ValueError):  # the cached buffer is re-checked after an MTU change
            dev.readinto(bytearray(1500))


@pytest.mark.parametrize("buf", [b"x" * 2000, "x" * 2000, 2000, memoryview(b"x" * 2000)],
                         ids=["bytes", "str", "int", "readonly-memoryview"])
def test_readinto_needs_writable_buffer(ifname: str, buf: object) -> None:
    with open_tun(ifname) as dev:
        with pytest.raises(TypeError):
            dev.readinto(buf)  # type: ignore[arg-type]


def test_write_needs_bytes_like(ifname: str) -> None:
    with open_tun(ifname) as dev:
        with pytest.raises(TypeError):
            dev.write("text")  # type: ignore[arg-type]


def test_nonblocking_read_raises_blocking_io_error(ifname: str) -> None:
    with open_tun(ifname, nonblocking=True) as dev:
        assert not dev.blocking
        with pytest.raises(BlockingIOError) as info:
            dev.readinto(bytearray(dev.max_packet_size))
        assert info.value.errno == errno.EAGAIN


# --------------------------------------------------------------- subprocesses

CHILD = textwrap.dedent(
    """
    import errno, os, sys
    sys.path.insert(0, sys.argv[1])
    import tuntap_cffi
    name = sys.argv[2]
    before = len(os.listdir("/proc/self/fd"))
    try:
        tuntap_cffi.open_tun(name)
    except tuntap_cffi.TunTapError as exc:
        print(type(exc).__name__, isinstance(exc, PermissionError), isinstance(exc, FileNotFoundError),
              errno.errorcode.get(exc.errno), sep="|")
        print(exc)
    else:
        print("opened")
    print("fds", before, len(os.listdir("/proc/self/fd")))
    """
)


def run_child(prefix: List[str], python: str, package_root: str, name: str) -> List[str]:
    proc = subprocess.run(prefix + [python, "-c", CHILD, package_root, name], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def assert_fds_unchanged(lines: List[str]) -> None:
    _, before, after = lines[-1].split()
    assert before == after, lines


def test_without_cap_net_admin(ifname: str) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed"
    drop = [setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
    lines = run_child(drop, sys.executable, REPO, ifname)
    assert lines[0] == "TunTapPermissionError|True|False|EPERM", lines
    assert "CAP_NET_ADMIN" in lines[1]
    assert_fds_unchanged(lines)
    assert not os.path.exists(f"/sys/class/net/{ifname}")


@pytest.fixture
def world_readable_package() -> Iterator[str]:
    """A copy of the package that an unprivileged user can import (/root is closed)."""
    tmp = tempfile.mkdtemp(prefix="tuntap-unpriv-")
    try:
        shutil.copytree(os.path.join(REPO, "tuntap_cffi"), os.path.join(tmp, "tuntap_cffi"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(tmp):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        yield tmp
    finally:
        shutil.rmtree(tmp)


def unprivileged_python() -> str:
    """An interpreter outside /root with cffi available to any user."""
    for candidate in ("/usr/bin/pypy3",):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("the unprivileged-user tests need Debian's pypy3 (tests/run.sh installs it)")


NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unprivileged_user_cannot_open_device_node(ifname: str, world_readable_package: str) -> None:
    # /dev/net/tun is 0600 here: the open itself is refused.
    mode = os.stat("/dev/net/tun").st_mode & 0o777
    lines = run_child(["setpriv", *NOBODY, "--"], unprivileged_python(), world_readable_package, ifname)
    if mode & 0o006:
        assert lines[0] == "TunTapPermissionError|True|False|EPERM", lines
    else:
        assert lines[0] == "TunTapPermissionError|True|False|EACCES", lines
        assert "/dev/net/tun" in lines[1]
    assert_fds_unchanged(lines)


def in_private_tun_node(command: List[str], node_mode: str = "666") -> List[str]:
    """Run *command* in a private mount namespace whose /dev/net/tun is a fresh node.

    The system's own node is not touched: the replacement is bind-mounted in a
    namespace that dies with the command.
    """
    script = (
        "set -e; d=$(mktemp -d); mknod \"$d/tun\" c 10 200; chmod " + node_mode + " \"$d/tun\"; "
        "mount --bind \"$d/tun\" /dev/net/tun; rm -rf \"$d\"; exec \"$@\""
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


def test_unprivileged_user_needs_cap_to_create(ifname: str, world_readable_package: str) -> None:
    cmd = in_private_tun_node(["setpriv", *NOBODY, "--", unprivileged_python(), "-c", CHILD, world_readable_package, ifname])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "TunTapPermissionError|True|False|EPERM", lines
    assert "CAP_NET_ADMIN" in lines[1]
    assert_fds_unchanged(lines)


OWNER_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import tuntap_cffi
    with tuntap_cffi.open_tun(sys.argv[2], nonblocking=True) as dev:
        print("attached", dev.name, dev.persistent)
        try:
            dev.mtu = 1400
        except PermissionError as exc:
            print("mtu refused", type(exc).__name__, "CAP_NET_ADMIN" in str(exc))
        try:
            dev.readinto(bytearray(dev.max_packet_size))
        except BlockingIOError:
            print("read ok")
    """
)


def test_unprivileged_owner_attaches_to_persistent_device(ifname: str, world_readable_package: str) -> None:
    open_tun(ifname, persist=True, owner=65534).close()
    try:
        cmd = in_private_tun_node(["setpriv", *NOBODY, "--", unprivileged_python(), "-c", OWNER_CHILD, world_readable_package, ifname])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [
            f"attached {ifname} True",
            "mtu refused TunTapPermissionError True",
            "read ok",
        ]
    finally:
        tuntap_cffi.delete_persistent(ifname)


# What an unprivileged user tries on someone else's persistent interface:
# attach, clear persistence by attaching (persist=False), delete.  One line
# per attempt: "ok", or the exception's class, errno and message.
INTRUDER_CHILD = textwrap.dedent(
    """
    import errno, os, sys
    sys.path.insert(0, sys.argv[1])
    import tuntap_cffi
    name = sys.argv[2]
    attempts = [
        ("attach", lambda: tuntap_cffi.open_tun(name, nonblocking=True).close()),
        ("unpersist", lambda: tuntap_cffi.open_tun(name, persist=False).close()),
        ("delete", lambda: tuntap_cffi.delete_persistent(name)),
    ]
    for what, attempt in attempts:
        try:
            attempt()
        except tuntap_cffi.TunTapError as exc:
            print(what, type(exc).__name__, errno.errorcode.get(exc.errno), exc, sep="|")
        else:
            print(what, "ok", sep="|")
        if not os.path.exists("/sys/class/net/" + name):
            print("gone")
            break
    """
)


def intrude_as_nobody(name: str, package: str) -> List[List[str]]:
    """Run INTRUDER_CHILD as nobody with a 0666 /dev/net/tun (as most distributions have it)."""
    cmd = in_private_tun_node(["setpriv", *NOBODY, "--", unprivileged_python(), "-c", INTRUDER_CHILD, package, name])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("options", [{}, {"owner": os.geteuid()}], ids=["defaults", "owner-given"])
def test_persistent_device_is_closed_to_other_users(ifname: str, world_readable_package: str, options: dict) -> None:  # type: ignore[type-arg]
    open_tun(ifname, persist=True, **options).close()
    try:
        assert open(f"/sys/class/net/{ifname}/owner").read().strip() == str(os.geteuid())
        lines = intrude_as_nobody(ifname, world_readable_package)
        assert [line[:3] for line in lines] == [[what, "TunTapPermissionError", "EPERM"]
                                                for what in ("attach", "unpersist", "delete")], lines
        for line in lines:
            assert line[3].startswith(f"[Errno {errno.EPERM}] cannot attach to TUN device {ifname}: "), line
            assert "owner" in line[3] and "CAP_NET_ADMIN" in line[3], line
            assert "cannot create" not in line[3], line
        assert os.path.exists(f"/sys/class/net/{ifname}"), "nobody deleted it"
        with open_tun(ifname) as dev:  # its owner (root here) still attaches
            assert dev.persistent
    finally:
        tuntap_cffi.delete_persistent(ifname)


def test_persistent_device_opened_to_everyone_explicitly(ifname: str, world_readable_package: str) -> None:
    open_tun(ifname, persist=True, owner=tuntap_cffi.EVERYONE).close()
    try:
        assert open(f"/sys/class/net/{ifname}/owner").read().strip() == "-1"
        assert open(f"/sys/class/net/{ifname}/group").read().strip() == "-1"
        assert intrude_as_nobody(ifname, world_readable_package) == [["attach", "ok"], ["unpersist", "ok"], ["gone"]]
        assert not os.path.exists(f"/sys/class/net/{ifname}")
    finally:
        delete_link(ifname)


@pytest.mark.parametrize("ids", [{"owner": 65534}, {"group": "nogroup"}, {"owner": "nobody", "group": 65534}])
def test_explicit_owner_or_group_lets_that_user_in(ifname: str, world_readable_package: str, ids: dict) -> None:  # type: ignore[type-arg]
    open_tun(ifname, persist=True, **ids).close()
    try:
        if "owner" not in ids:  # a group alone: no owner is added beside it
            assert open(f"/sys/class/net/{ifname}/owner").read().strip() == "-1"
        lines = intrude_as_nobody(ifname, world_readable_package)
        assert lines == [["attach", "ok"], ["unpersist", "ok"], ["gone"]], lines
    finally:
        delete_link(ifname)


def test_missing_dev_net_tun(ifname: str) -> None:
    script = "mount -t tmpfs none /dev/net; exec \"$@\""
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
           sys.executable, "-c", CHILD, REPO, ifname]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "DeviceNotFoundError|False|True|ENOENT", lines
    assert "modprobe tun" in lines[1]
    assert_fds_unchanged(lines)



def test_batch_write_error_is_a_tuntap_error_naming_the_device() -> None:
    from tuntap_cffi import BatchWriteError, batch, errors

    assert batch.BatchWriteError is errors.BatchWriteError is BatchWriteError
    assert issubclass(BatchWriteError, TunTapError)
    name = new_name()
    try:
        with open_tun(name) as dev:
            dev.up()
            with pytest.raises(TunTapError) as info:  # every library error is caught by one except clause
                dev.write_batch([b"\x00" * 28, b"\x70" + bytes(27)])  # neither IPv4 nor IPv6
            err = info.value
            assert isinstance(err, BatchWriteError) and err.written == 0, repr(err)
            assert err.errno == errno.EINVAL and err.filename == name, repr(err)
    finally:
        delete_link(name)


def test_write_racing_ip_link_del_says_the_interface_is_gone(ifname: str, subnet: str) -> None:
    """`ip link del` brings the interface down before it detaches the file: a write in that window got EIO,
    reported as "the interface is down: bring it up". Writes flood while the interface is deleted, 5 rounds
    (the old code said "down" in 5 of 5 here); a plain down interface still says down."""
    packet = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, 9, b"x")  # to our own address on the TUN
    for _ in range(5):
        dev = open_tun(ifname, nonblocking=True)
        try:
            configure(dev, subnet)
            errors: List[OSError] = []
            started = threading.Event()

            def flood() -> None:
                started.set()
                while True:
                    try:
                        dev.write(packet)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        errors.append(exc)
                        return

            t = threading.Thread(target=flood)
            t.start()
            started.wait(5)
            ip("link", "del", "dev", ifname)
            t.join(10)
            assert not t.is_alive() and errors, "the writes went on after the interface was deleted"
            err = errors[0]
            assert isinstance(err, DeviceNotReadyError) and err.errno == errno.EBADFD, repr(err)
            assert "interface is gone" in str(err) and "bring it up" not in str(err), str(err)
        finally:
            dev.close()
    with open_tun(ifname) as dev:  # down, never deleted: says so
        with pytest.raises(DeviceNotReadyError, match="bring it up"):
            dev.write(packet)
