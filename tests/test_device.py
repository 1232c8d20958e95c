"""Opening, naming, options, properties and the file-like contract, on real devices."""

from __future__ import annotations

import errno
import os
import pickle

import pytest

from tuntest import fd_count, link_exists, link_info, our_links
import tuntap_cffi
from tuntap_cffi import (
    EVERYONE,
    Device,
    DeviceClosedError,
    DeviceKind,
    DeviceNotFoundError,
    TunFlags,
    delete_persistent,
    open_tap,
    open_tun,
)

pytestmark = pytest.mark.device


def test_open_tun_with_name(ifname: str) -> None:
    with open_tun(ifname) as dev:
        assert dev.name == ifname
        assert str(dev) == ifname
        assert dev.kind is DeviceKind.TUN
        assert dev.flags & TunFlags.TUN and dev.flags & TunFlags.NO_PI
        assert not dev.flags & TunFlags.TAP
        assert not dev.packet_info
        assert link_exists(ifname)
        info = link_info(ifname)
        assert info["link_type"] == "none"  # a TUN has no link-layer header
        assert info["linkinfo"]["info_kind"] == "tun"
        assert info["linkinfo"]["info_data"]["type"] == "tun"
        assert repr(dev) == f"<Device tun {ifname!r} fd={dev.fileno()}>"
        assert not dev.closed
    assert dev.closed
    assert repr(dev) == f"<Device tun {ifname!r} [closed]>"
    assert not link_exists(ifname), "a non-persistent interface disappears on close"


def test_open_tap_with_template(ifnames) -> None:  # type: ignore[no-untyped-def]
    prefix = ifnames("p")  # reserve a unique prefix; the device gets prefix + number
    template = prefix + "x%d"
    with open_tap(template) as dev:
        ifnames.given.append(dev.name)
        assert dev.name.startswith(prefix + "x") and dev.name[len(prefix) + 1 :].isdigit()
        assert dev.kind is DeviceKind.TAP
        assert dev.flags & TunFlags.TAP
        info = link_info(dev.name)
        assert info["link_type"] == "ether"
        assert info["linkinfo"]["info_data"]["type"] == "tap"


def test_kernel_chosen_name() -> None:
    with open_tun() as dev:
        name = dev.name
        assert name.startswith("tun") and name[3:].isdigit()
        assert link_exists(name)
    assert not link_exists(name)


def test_packet_info_flag(ifname: str) -> None:
    with open_tun(ifname, packet_info=True) as dev:
        assert dev.packet_info
        assert not dev.flags & TunFlags.NO_PI
        assert dev.max_packet_size == dev.mtu + 4


def test_max_packet_size_tap(ifname: str) -> None:
    with open_tap(ifname) as dev:
        assert dev.max_packet_size == dev.mtu + 14 + 4


def test_link_control_matches_kernel(ifname: str) -> None:
    with open_tun(ifname) as dev:
        info = link_info(ifname)
        assert dev.ifindex == info["ifindex"]
        assert dev.mtu == info["mtu"] == 1500
        assert dev.txqueuelen == info["txqlen"]
        assert not dev.is_up and "UP" not in info["flags"]
        dev.up()
        dev.up()  # harmless twice
        assert dev.is_up and "UP" in link_info(ifname)["flags"]
        dev.mtu = 1280
        assert dev.mtu == 1280 == link_info(ifname)["mtu"]
        assert dev.max_packet_size == 1280
        dev.txqueuelen = 4321
        assert dev.txqueuelen == 4321 == link_info(ifname)["txqlen"]
        dev.down()
        assert not dev.is_up and "UP" not in link_info(ifname)["flags"]


@pytest.mark.parametrize("value, exc", [(0, ValueError), (67, ValueError), (65536, ValueError), ("1500", TypeError), (True, TypeError)])
def test_bad_mtu(ifname: str, value: object, exc: type) -> None:
    with open_tun(ifname) as dev:
        with pytest.raises(exc):
            dev.mtu = value  # type: ignore[assignment]
        assert dev.mtu == 1500


def test_persist_reattach_and_delete(ifname: str) -> None:
    with open_tun(ifname, persist=True) as dev:
        assert dev.flags & TunFlags.PERSIST
        assert dev.persistent
    assert link_exists(ifname), "a persistent interface outlives its fd"
    with open_tun(ifname) as again:  # reattach
        assert again.name == ifname
        assert again.persistent
    assert link_exists(ifname)
    delete_persistent(ifname)
    assert not link_exists(ifname)
    with pytest.raises(DeviceNotFoundError):
        delete_persistent(ifname)


def test_persistent_setter(ifname: str) -> None:
    with open_tap(ifname) as dev:
        assert not dev.persistent
        dev.persistent = True
        assert dev.persistent
        dev.persistent = False
    assert not link_exists(ifname)


def owner_group(name: str) -> tuple:  # type: ignore[type-arg]
    """The interface's (owner, group) as sysfs says: -1 where unset."""
    return tuple(int(open(f"/sys/class/net/{name}/{attr}").read()) for attr in ("owner", "group"))


def test_persist_makes_the_creator_the_owner_and_reattach_keeps_any_owner(ifnames) -> None:  # type: ignore[no-untyped-def]
    mine, theirs, public = ifnames(), ifnames(), ifnames()
    open_tun(mine, persist=True).close()
    open_tap(theirs, persist=True, owner=65534).close()
    open_tun(public, persist=True, owner=EVERYONE).close()
    try:
        assert owner_group(mine) == (os.geteuid(), -1)
        assert owner_group(theirs) == (65534, -1)
        assert owner_group(public) == (-1, -1)
        # Attaching (root may) with persist=True or None changes no owner.
        for name, opener in ((mine, open_tun), (theirs, open_tap), (public, open_tun)):
            before = owner_group(name)
            for persist in (True, None):
                with opener(name, persist=persist) as dev:
                    assert dev.persistent
                assert owner_group(name) == before, (name, persist)
    finally:
        for name in (mine, theirs, public):
            delete_persistent(name)


@pytest.mark.parametrize("options, expected", [
    ({}, (os.geteuid(), -1)),
    ({"owner": EVERYONE}, (-1, -1)),
    ({"group": 65534}, (-1, 65534)),  # a group alone stays alone: an owner beside it would narrow it
])
def test_persistent_setter_gives_an_owner_like_open(ifname: str, options: dict, expected: tuple) -> None:  # type: ignore[type-arg]
    with open_tun(ifname, **options) as dev:
        assert owner_group(ifname)[0] == -1
        dev.persistent = True
        assert owner_group(ifname) == expected
    try:
        assert link_exists(ifname)
    finally:
        delete_persistent(ifname)


def test_everyone_cannot_unset_an_owner(ifname: str) -> None:
    open_tun(ifname, persist=True).close()
    try:
        before = fd_count()
        with pytest.raises(tuntap_cffi.TunTapError) as info:
            open_tun(ifname, owner=EVERYONE)
        assert info.value.errno == errno.EINVAL and info.value.filename == ifname
        assert "delete" in str(info.value) and "EVERYONE" in str(info.value)
        assert fd_count() == before
        assert owner_group(ifname) == (os.geteuid(), -1)
        with open_tun(ifname, persist=False, owner=EVERYONE):  # going away anyway: no complaint
            pass
        assert not link_exists(ifname)
    finally:
        if link_exists(ifname):
            delete_persistent(ifname)


def test_persist_false_clears_on_reattach(ifname: str) -> None:
    open_tun(ifname, persist=True).close()
    with open_tun(ifname, persist=False) as dev:
        assert not dev.persistent
    assert not link_exists(ifname)


def test_from_fd_and_detach(ifname: str) -> None:
    dev = open_tap(ifname, packet_info=True)
    fd = dev.detach()
    assert dev.closed
    with pytest.raises(ValueError):
        dev.fileno()
    assert link_exists(ifname), "detach hands the fd over; the interface stays"
    try:
        other = Device.from_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    with other:
        assert other.name == ifname
        assert other.kind is DeviceKind.TAP
        assert other.packet_info
        assert other.fileno() == fd
    assert not link_exists(ifname)


def test_from_fd_rejects_non_tun() -> None:
    r, w = os.pipe()
    try:
        before = fd_count()
        with pytest.raises(OSError) as info:
            Device.from_fd(r)
        assert "TUNGETIFF" in str(info.value)
        assert fd_count() == before
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("fd, exc", [(-1, ValueError), ("3", TypeError), (3.0, TypeError), (True, TypeError)])
def test_from_fd_bad_arguments(fd: object, exc: type) -> None:
    with pytest.raises(exc):
        Device.from_fd(fd)  # type: ignore[arg-type]


def test_closed_contract(ifname: str) -> None:
    dev = open_tun(ifname)
    dev.close()
    dev.close()  # idempotent
    assert dev.closed
    buf = bytearray(2048)
    for call in (dev.fileno, lambda: dev.readinto(buf), dev.read, lambda: dev.write(b"x" * 20),
                 lambda: dev.write(bytearray(20)), lambda: dev.mtu, dev.up, lambda: dev.ifindex):
        with pytest.raises(DeviceClosedError) as info:
            call()
        assert isinstance(info.value, ValueError)
        assert "closed" in str(info.value)


def test_no_pickling(ifname: str) -> None:
    with open_tun(ifname) as dev:
        with pytest.raises(TypeError):
            pickle.dumps(dev)


def test_unclosed_device_warns_and_closes(ifname: str) -> None:
    dev = open_tun(ifname)
    with pytest.warns(ResourceWarning):
        del dev
        import gc

        gc.collect()
    assert not link_exists(ifname)


def test_fds_are_cloexec_and_nonblocking(ifname: str) -> None:
    import fcntl

    with open_tun(ifname) as dev:
        fd = dev.fileno()
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
        assert dev.blocking


def test_open_configure_close_cycles_leak_nothing(ifnames) -> None:  # type: ignore[no-untyped-def]
    import gc

    with open_tun(ifnames("w")):  # warm-up: the process-wide /dev/null fd close() uses
        pass
    gc.collect()
    fds_before = fd_count()
    buf = bytearray(65535 + 22)
    for i in range(200):
        opener = open_tun if i % 2 else open_tap
        with opener(ifnames("c"), packet_info=bool(i % 3)) as dev:
            dev.mtu = 1400
            dev.up()
            assert dev.is_up
            dev.blocking = False
            with pytest.raises(BlockingIOError):
                for _ in range(50):  # drain what the kernel sent on up (IPv6 RS, MLD)
                    dev.readinto(buf)
    gc.collect()
    assert fd_count() == fds_before
    # Only our own names are compared: other jobs on the box may add links meanwhile.
    assert len(ifnames.given) == 201
    assert not [n for n in ifnames.given if link_exists(n)]
    assert not our_links()


def test_owner_and_group_reach_the_kernel(ifname: str) -> None:
    with open_tun(ifname, persist=True, owner=65534, group="nogroup") as dev:
        assert dev.persistent
    try:
        assert open(f"/sys/class/net/{ifname}/owner").read().strip() == "65534"
        import grp

        gid = grp.getgrnam("nogroup").gr_gid
        assert open(f"/sys/class/net/{ifname}/group").read().strip() == str(gid)
    finally:
        delete_persistent(ifname)
    assert not link_exists(ifname)


def test_multi_queue_devices_share_one_interface(ifname: str) -> None:
    with open_tun(ifname, multi_queue=True) as first, open_tun(ifname, multi_queue=True) as second:
        assert first.flags & TunFlags.MULTI_QUEUE and second.flags & TunFlags.MULTI_QUEUE
        assert first.name == second.name == ifname
        assert first.fileno() != second.fileno()
        assert first.ifindex == second.ifindex
    assert not link_exists(ifname)
