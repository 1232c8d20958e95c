"""bench/pytun_bench.py runs end to end at tiny sizes (its figures are not checked: no timing in tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Set

import pytest

from tuntest import IN_CI, ip
from real_pytun import REPO

pytestmark = pytest.mark.device


def namespaces() -> Set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def test_pytun_bench_smoke() -> None:
    if not shutil.which("iperf3"):
        if IN_CI:
            pytest.fail("CI=true and the tunnel part needs iperf3 (tests/run.sh installs it)")
        pytest.skip("iperf3 is not installed")
    # On CPython the real pytun is in the test extra; under PyPy it is there only if built through cpyext.
    with_pytun = sys.implementation.name == "cpython" or subprocess.run(
        [sys.executable, "-c", "import pytun"], capture_output=True).returncode == 0
    before = namespaces()
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "pytun_bench.py"), "--rounds", "1", "--packets", "300",
         "--tunnel-rounds", "1", "--tunnel-seconds", "1", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    raw = json.loads(lines[-1])
    impls = ["pytun_compat"] + (["pytun"] if with_pytun else [])
    for impl in impls:
        rows = raw["calls"][impl]
        floor = {"write, bare cffi call"} if impl == "pytun_compat" else set()  # (the design's floor: compat's turns)
        assert set(rows) == {"read, blocking loop", "read, after fileno()", "write", "mtu getter"} | floor
        assert all(len(values) == 1 and values[0] > 0 for values in rows.values()), rows
        assert len(raw["tunnel"][impl]) == 1 and raw["tunnel"][impl][0] > 0
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 2 + 5 + 1  # header, separator, four call rows and the write floor, the tunnel
    if with_pytun:
        assert all(line.rstrip(" |").split("|")[-1].strip().endswith(("x", "x (throughput)")) for line in table[2:])
    # Namespaces and interfaces of the bench are gone.
    assert namespaces() <= before
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(("ttpb", "ttpv", "ttpo"))]
