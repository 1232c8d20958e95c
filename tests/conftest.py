"""Shared fixtures: unique interface names and subnets, cleanup, fd accounting.

Every interface a test makes is named ``tt`` + a per-run tag + a counter
(at most 15 bytes) and is deleted at teardown even when the test fails; the
session ends with a check that no interface of this run is left.  Traffic
goes only to addresses inside the test's own 198.18.0.0/15 subnet
(RFC 2544 benchmarking space) or fd00:7474::/32, both assigned to the test's
own devices.
"""

from __future__ import annotations

import fcntl
import gc
import itertools
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from typing import Iterator, List, Tuple

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RUN_TAG = f"{os.getpid() % 10000:04d}"
_counter = itertools.count()


def tun_available() -> str:
    """Return '' if /dev/net/tun can be opened, else the reason."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/net/tun cannot be opened: {exc}"
    os.close(fd)
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "device" not in item.keywords:
        return
    reason = tun_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and this test needs a TUN device: {reason}")
        pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "device: needs /dev/net/tun and CAP_NET_ADMIN (fails in CI without)")


def new_name(tag: str = "") -> str:
    """A fresh interface name of this run: tt<run tag><tag><n>, <= 15 bytes."""
    name = f"tt{RUN_TAG}{tag}{next(_counter)}"
    assert len(name) <= 15, name
    return name


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its stdout."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def link_info(name: str) -> dict:  # type: ignore[type-arg]
    """``ip -j -d link show NAME`` as a dict."""
    return json.loads(ip("-j", "-d", "link", "show", "dev", name))[0]  # type: ignore[no-any-return]


def our_links() -> List[str]:
    """Interfaces of this test run still present."""
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(f"tt{RUN_TAG}"))


def delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        ip("link", "del", "dev", name, check=False)


SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)  # PyPy 3.9's socket module lacks the name


def bind_to_device(sock: socket.socket, name: str) -> None:
    """Send and receive only through interface *name* (another with the same subnet gets nothing)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, name.encode())


def join_task(thread: threading.Thread) -> None:
    """join() *thread*, then wait until its kernel task is gone too.

    join() returns once the Python thread is done; its kernel task, which
    the library asks about (/proc/self/task) to know whether the thread may
    still use a closed device or an engine, exits a moment later (155 of
    2,000 joins here still saw it).
    """
    thread.join()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/self/task/{thread.native_id}") and time.monotonic() < deadline:
        time.sleep(0.001)


def fd_count() -> int:
    """Open fds of this process, after a GC pass.

    A Device closed while other threads lived may keep its (dead) fd
    number until the library saw that no thread can still use it, or the
    Device is collected; one caught in a reference cycle of an earlier test
    (a kept traceback) would otherwise be freed by a GC pass in the middle
    of a later test's count.
    """
    gc.collect()
    # A closed device's number is freed by a reaper thread once the other
    # threads are seen idle: let it finish (bounded), or a count taken now
    # would move in the middle of the caller's test.
    from tuntap_cffi.device import pending_retirements

    deadline = time.monotonic() + 5
    while pending_retirements() and time.monotonic() < deadline:
        time.sleep(0.15)  # (asleep this long, this thread counts as idle on PyPy too)
    return len(os.listdir("/proc/self/fd"))


def open_fds() -> List[str]:
    """What this process has open, for a failure message."""
    out = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            out.append(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


@pytest.fixture
def ifname() -> Iterator[str]:
    """A unique interface name, deleted after the test whatever happens."""
    name = new_name()
    yield name
    delete_link(name)


@pytest.fixture
def ifnames() -> Iterator["NameFactory"]:
    """A factory of unique names; every name it gave is deleted after the test."""
    factory = NameFactory()
    yield factory
    for name in factory.given:
        delete_link(name)


class NameFactory:
    def __init__(self) -> None:
        self.given: List[str] = []

    def __call__(self, tag: str = "") -> str:
        name = new_name(tag)
        self.given.append(name)
        return name


_subnets = itertools.count()
SUBNET_LOCKS = os.path.join(tempfile.gettempdir(), "tuntap-cffi-test-subnets")


def _assigned_prefixes() -> "set[str]":
    """The 198.18.0.0/15 /24 prefixes with an address on any interface of this namespace."""
    out = ip("-4", "-o", "addr", "show")
    return {addr.rsplit(".", 1)[0] for addr in re.findall(r"\binet (198\.1[89]\.\d+\.\d+)", out)}


def reserve_subnet(start: int) -> Tuple[str, int]:
    """Reserve the first free /24 of 198.18.0.0/15 from number *start* (mod 512): (prefix, lock fd).

    Free: no address of it on an interface here, and no other holder of its
    lock file (an flock, which the kernel drops when the holder exits).
    Closing the fd gives it back.
    """
    os.makedirs(SUBNET_LOCKS, exist_ok=True)
    taken = _assigned_prefixes()
    for i in range(512):
        n = (start + i) % 512
        prefix = f"198.{18 + n // 256}.{n % 256}"
        if prefix in taken:
            continue
        fd = os.open(os.path.join(SUBNET_LOCKS, str(n)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return prefix, fd
    pytest.fail("every /24 of 198.18.0.0/15 is in use on this host")


@pytest.fixture
def subnet() -> Iterator[str]:
    """A /24 prefix of 198.18.0.0/15 that no other test on this host holds, as '198.18.X' / '198.19.X'.

    Unique in this run is not enough: a test run in another process (another
    checkout, a second CI job) with the same prefix gets a second route to
    it, and the kernel sends our packets to its interface.  So the prefix is
    reserved host-wide for the test's duration (see reserve_subnet).
    """
    prefix, fd = reserve_subnet(int(RUN_TAG) * 37 + next(_subnets))
    try:
        yield prefix
    finally:
        os.close(fd)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Fail the run if any interface this run named is still there (then remove it)."""
    yield
    left = our_links()
    for name in left:
        delete_link(name)
    assert not left, f"the test run left interfaces behind: {left}"
