"""The fixtures: unique interface names and subnets, one event loop matrix, cleanup; helpers live in tuntest.py.

Every interface a test makes is named ``tt`` + a per-run tag + a counter
(at most 15 bytes) and is deleted at teardown even when the test fails; the
session ends with a check that no interface of this run is left.  Traffic
goes only to addresses inside the test's own 198.18.0.0/15 subnet
(RFC 2544 benchmarking space) or fd00:7474::/32, both assigned to the test's
own devices.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Iterator, List

import pytest

from tuntest import (
    IN_CI, LOOPS, RUN_TAG, Runner, delete_link, ip, new_name, our_links, our_namespaces, require_uring, reserve_subnet,
    tun_available,
)
# Re-exported: tests written before tuntest.py was their home import these two from here.
from tuntest import fd_count, join_task  # noqa: F401

# The real-device suites of the other systems (tests/macos/, tests/freebsd/: see their modules' docstrings)
# are collected only there: never run, nor skipped, on Linux.  Here rather than in a conftest.py of their
# own: a second module named conftest would shadow this one for the test files that import from it.
collect_ignore_glob = [f"{system}/*" for system, here in (("macos", sys.platform == "darwin"),
                                                           ("freebsd", sys.platform.startswith("freebsd"))) if not here]


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


@pytest.fixture(params=["io_uring", "loop"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each batch backend's name; io_uring must be usable in CI (it is on any 6.x test box)."""
    name: str = request.param
    if name == "io_uring":
        require_uring()
    return name


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Runner]:
    """A fresh event loop of each kind in LOOPS (uvloop: CPython only, required in CI) that runs coroutines."""
    runner = Runner(request.param)
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Fail the run if any interface or namespace this run named is still there (then remove it)."""
    yield
    left = our_links()
    for name in left:
        delete_link(name)
    spaces = our_namespaces()
    for name in spaces:
        ip("netns", "del", name, check=False)
    assert not left and not spaces, f"the test run left interfaces {left} and namespaces {spaces} behind"
