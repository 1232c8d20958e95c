"""The benchmarks' results as data: run metadata, the results files, the charts drawn from them.

No benchmark runs here (tests/test_bench_smoke.py runs them at tiny sizes):
these tests call ``bench/runinfo.py``, ``bench/forward_bench.py``'s saving
and ``bench/charts.py`` on their own, on synthetic results and on the
committed data under ``bench/results/``, whose figures must equal the
published benchmark tables.  Drawing needs matplotlib (the test extra has it
on CPython only): on PyPy the drawing tests skip, everything else runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import pytest

from conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
import runinfo  # noqa: E402

RESULTS = BENCH / "results"

SYNTHETIC_META: Dict[str, Any] = {
    "meta_version": 1,
    "benchmark": "drain",
    "date_utc": "2030-01-02T03:04:05Z",
    "commit": "abc1234",
    "dirty": True,
    "machine": {"system": "Linux", "kernel": "7.1.0-test", "arch": "x86_64", "cpu": "Test CPU 9000", "cores": 4},
    "interpreters": [
        {"name": "cpython", "version": "3.12.1 (main, Jan 1 2030) [GCC 13]", "cffi": "1.17.0"},
        {"name": "pypy", "version": "3.10.14 (7.3.17+dfsg-1, Jan 01 2030, 00:00:00)\n[PyPy 7.3.17 with GCC 13]",
         "cffi": "1.17.0"},
    ],
}


# ------------------------------------------------------------------ run metadata and the results files


def test_run_metadata_records_date_commit_machine_interpreters() -> None:
    """The "meta" block: the given UTC time, this checkout's HEAD and dirtiness, this machine, the interpreters."""
    when = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    interp = runinfo.this_interpreter()
    meta = runinfo.run_metadata("drain", [interp], now=when)
    assert meta["date_utc"] == "2031-05-06T05:08:09Z"  # converted to UTC
    assert meta["benchmark"] == "drain" and meta["interpreters"] == [interp]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: the commit cannot be compared")
    assert meta["commit"] == head.stdout.strip()
    status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=True).stdout
    assert meta["dirty"] is bool(status.strip())
    m = meta["machine"]
    assert (m["kernel"], m["arch"], m["cores"]) == (platform.release(), platform.machine(), os.cpu_count())
    if os.path.exists("/proc/cpuinfo"):
        assert m["cpu"] not in ("", "?")
    assert interp["name"] == platform.python_implementation().lower()
    assert interp["version"].split()[0] == platform.python_version()


def test_git_commit_marks_local_changes(tmp_path: Path) -> None:
    """A tracked file changed after the commit makes "dirty" true; an untracked file does not."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a").write_text("1")
    git("add", "a")
    git("commit", "-q", "-m", "one")
    (tmp_path / "b").write_text("untracked")
    state = runinfo.git_commit(tmp_path)
    assert state["dirty"] is False and state["commit"]
    (tmp_path / "a").write_text("2")
    assert runinfo.git_commit(tmp_path)["dirty"] is True
    assert runinfo.git_commit(tmp_path / "nowhere") == {"commit": None, "dirty": None}


def test_results_file_round_trip(tmp_path: Path) -> None:
    """save_results writes meta and payload (Paths as text); load_results refuses a file without meta."""
    path = runinfo.save_results(tmp_path / "sub" / "r.json", SYNTHETIC_META, {"args": {"out": tmp_path}, "x": [1]})
    data = runinfo.load_results(path)
    assert data == {"meta": SYNTHETIC_META, "args": {"out": str(tmp_path)}, "x": [1]}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"args": {}, "results": []}))
    with pytest.raises(ValueError, match="no \"meta\" block"):
        runinfo.load_results(bare)


def test_forward_bench_saves_its_runs(tmp_path: Path) -> None:
    """forward_bench.py's results file: every variant's runs, iperf3 flows and the veth row it is compared with."""
    import forward_bench

    args = argparse.Namespace(runs=2, seconds=5, bytes="", c_threads="auto", results=tmp_path / "f.json")
    variants: Dict[str, Tuple[Union[str, List[str]], int]] = {forward_bench.VETH: ("veth", 1), forward_bench.VETH4: ("veth", 4),
                "forward.py, offloads": (["x"], 1), "forward.py, offloads, 2 queues, -P 4": (["y"], 4)}
    runs = {forward_bench.VETH: [10.0, 12.0], forward_bench.VETH4: [30.0, 32.0],
            "forward.py, offloads": [8.0, 9.0], "forward.py, offloads, 2 queues, -P 4": [11.0, 12.0]}
    meta = runinfo.run_metadata("forward_bench", [runinfo.this_interpreter()])
    runinfo.save_results(args.results, meta, forward_bench.results_payload(args, variants, runs))
    data = runinfo.load_results(args.results)
    assert data["meta"]["benchmark"] == "forward_bench" and data["args"]["results"] == str(tmp_path / "f.json")
    got = {v["name"]: (v["parallel"], v["baseline"], v["gbit"]) for v in data["variants"]}
    assert got == {
        forward_bench.VETH: (1, forward_bench.VETH, [10.0, 12.0]),
        forward_bench.VETH4: (4, forward_bench.VETH4, [30.0, 32.0]),
        "forward.py, offloads": (1, forward_bench.VETH, [8.0, 9.0]),
        "forward.py, offloads, 2 queues, -P 4": (4, forward_bench.VETH4, [11.0, 12.0]),
    }


# ------------------------------------------------------------------ the provenance text on each chart


def test_provenance_comes_from_the_meta_block() -> None:
    """Date, commit (marked dirty), machine and interpreter versions: each taken from meta, none made up."""
    assert runinfo.provenance(SYNTHETIC_META) == (
        "2030-01-02 03:04 UTC · commit abc1234 + local changes · Linux 7.1.0-test, 4-core Test CPU 9000"
        " · CPython 3.12.1 (cffi 1.17.0), PyPy 3.10.14 (7.3.17)"
    )
    clean = {**SYNTHETIC_META, "dirty": False, "commit": "0123abc",
             "machine": {**SYNTHETIC_META["machine"], "cores": 1, "kernel": "6.1"},
             "interpreters": SYNTHETIC_META["interpreters"][:1], "date_utc": "2029-12-31T23:59:59Z"}
    assert runinfo.provenance(clean) == (
        "2029-12-31 23:59 UTC · commit 0123abc · Linux 6.1, 1-core Test CPU 9000 · CPython 3.12.1 (cffi 1.17.0)"
    )
    assert runinfo.commit_text({"commit": None, "dirty": None}) == "commit unknown"
    assert runinfo.machine_text({"description": "a described box", "kernel": "x", "cpu": "y"}) == "a described box"
