"""The ``subnet`` fixture's promise: a /24 that no other test on this host holds.

Tests in two processes (two checkouts, two CI jobs) that drew the same /24
gave the kernel two routes to it, and one run's datagrams went to the other
run's TUN: readers waited for packets that had gone elsewhere (issue 13,
item 6).  ``reserve_subnet`` skips prefixes locked by another process or
already assigned to an interface.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuntest import ip, reserve_subnet
from tuntap_cffi import open_tun

pytestmark = pytest.mark.device

HERE = os.path.dirname(os.path.abspath(__file__))
HOLDER = (
    "import sys; sys.path.insert(0, sys.argv[1]); from tuntest import reserve_subnet; "
    "print(reserve_subnet(int(sys.argv[2]))[0], flush=True); sys.stdin.read()"
)


def test_a_prefix_held_by_another_process_is_skipped() -> None:
    start = 300 + os.getpid() % 100
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, HERE, str(start)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().strip()
        assert held.startswith("198.1"), held
        mine, fd = reserve_subnet(start)
        os.close(fd)
        assert mine != held
    finally:
        holder.communicate("", timeout=10)  # it exits: the kernel drops its lock


def test_a_prefix_assigned_to_an_interface_is_skipped(ifname: str) -> None:
    start = 100 + os.getpid() % 100
    prefix, fd = reserve_subnet(start)
    with open_tun(ifname):
        ip("addr", "add", f"{prefix}.1/24", "dev", ifname)
        os.close(fd)  # unlocked, but in use (as by a test run that takes no locks)
        other, fd = reserve_subnet(start)
        os.close(fd)
        assert other != prefix
