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


# ------------------------------------------------------------------ the committed data = the published tables

DRAIN_FILE = RESULTS / "drain-2026-12-06-4f929d7.json"
FORWARD_FILE = RESULTS / "forward-2026-11-25-5db4a7f.json"

# The published tables' row labels (bold and spacing aside) and the method each row shows.
README_READS = {
    "C `read()` loop (gcc -O2), the baseline": "c_read",
    "C io_uring loop, 256 per enter, registered file (the batch floor)": "c_uring",
    "C io_uring loop, 1024 per enter, registered file": "c_uring_1024",
    "`read_batch(ring)`, io_uring, 256 slots": "read_batch",
    "`read_batch(ring)`, io_uring, 1024 slots": "read_batch_1024",
    "`read_batch(ring)`, loop backend, 256 slots": "read_batch_loop",
    "`Device.readinto(buf)`": "device_readinto",
    "bare cffi `lib.read(fd, ptr, n)`, pointer cached": "cffi_cached_ptr",
    "cffi with `ffi.from_buffer` per call": "cffi_from_buffer_each",
    "`os.read(fd, 2048)`": "os_read",
    "`io.FileIO(fd).readinto(buf)`": "fileio_readinto",
    "python-pytun `read(2048)` (C extension; via cpyext on PyPy)": "pytun_read",
}
README_WRITES = {
    "C `write()` loop (gcc -O2), the baseline": "c_write",
    "C io_uring loop, 256 per enter, registered file": "c_uring_write",
    "`write_batch(ring)`, io_uring, 256 per call": "write_batch",
    "`write_batch(ring)`, loop backend": "write_batch_loop",
    "`write_batch(list of 256 bytes)`": "write_batch_list",
    "`Device.write(pkt)`": "device_write",
    "`os.write(fd, pkt)`": "os_write",
}


def published_table(header: str) -> Tuple[Path, str, List[List[str]]]:
    """The markdown table whose header row starts with *header*, in README.md or a docs/ page.

    Returns the file, its text before the table (whitespace collapsed) and the body rows (cells stripped, bold
    marks removed).  The tables may move from the README to the documentation's performance page: both are read.
    """
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        lines = page.read_text().splitlines() if page.is_file() else []
        for i, line in enumerate(lines):
            if line.startswith(header):
                body = []
                for row in lines[i + 2:]:
                    if not row.startswith("|"):
                        break
                    body.append([c.strip().replace("**", "") for c in row.strip().strip("|").split("|")])
                return page, " ".join(" ".join(lines[:i]).split()), body
    pytest.fail(f"no table starting {header!r} in {', '.join(str(p.relative_to(REPO)) for p in pages)}")


@pytest.mark.parametrize("kind, header, labels", [
    ("reads", "| read method |", README_READS),
    ("writes", "| write method |", README_WRITES),
])  # fmt: skip
def test_drain_data_equals_the_published_table(kind: str, header: str, labels: Dict[str, str]) -> None:
    """What the charts compute from the committed drain file (ns/pkt medians, ratios to the C loop, per
    interpreter) is what the published table prints, row by row; and the table's run is the file's."""
    import charts

    data = runinfo.load_results(DRAIN_FILE)
    figures = charts.drain_figures(data, kind)
    page, before, rows = published_table(header)
    assert [labels.get(row[0], row[0]) for row in rows] == list(labels.values()), f"{page}: rows changed"
    assert set(figures["cpython"]) == set(figures["pypy"]) == set(labels.values())
    for row in rows:
        key = labels[row[0]]
        cp, pp = figures["cpython"][key], figures["pypy"][key]
        assert row[1:] == [f"{cp['ns']:.0f}", f"{cp['ratio']:.2f}x", f"{pp['ns']:.0f}", f"{pp['ratio']:.2f}x"], (
            f"{page}: {row[0]}: the table says {row[1:]}, the data gives "
            f"{cp['ns']:.0f} {cp['ratio']:.2f}x / {pp['ns']:.0f} {pp['ratio']:.2f}x")
    meta = data["meta"]
    # The words before the table name this run: its date, commit and machine, as the chart's footer does.
    for said in (runinfo.date_text(meta), f"commit {meta['commit']}", runinfo.machine_text(meta["machine"])):
        assert said in before, f"{page} does not say {said!r} before the {kind} table"


def test_forward_data_equals_the_published_table() -> None:
    """The transcribed forwarding file gives the published table: each path's runs, median and ratio to veth."""
    import charts

    data = runinfo.load_results(FORWARD_FILE)
    assert "TRANSCRIBED" in data["meta"]["source"]
    page, before, rows = published_table("| path | Gbit/s | runs | ratio to veth |")
    got = [[v["name"], f"{v['median']:.2f}", ", ".join(f"{x:.2f}" for x in v["gbit"]), f"{v['ratio']:.2f}x"]
           for v in charts.forward_figures(data)]
    # The table writes iperf3's -P in backticks, and -P 1 on the first veth row (the bench's names do not).
    assert [[r[0].replace("`", "").replace(", -P 1", ""), *r[1:]] for r in rows] == got, page
    meta = data["meta"]
    assert f"commit {meta['commit']}" in before and runinfo.date_text(meta)[:10] in before


# ------------------------------------------------------------------ drawing (matplotlib: CPython's test extra)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 100_000  # the committed charts stay small enough for a repository and a README


def need_matplotlib() -> None:
    if platform.python_implementation() != "CPython":
        pytest.skip("the test extra installs matplotlib on CPython only: the charts are drawn on CPython")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true and matplotlib is missing: the test extra installs it on CPython")
        pytest.skip("matplotlib is not installed (pip install '.[test]')")


def png_size(path: Path) -> Tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file starts as a PNG does."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def synthetic_drain() -> Dict[str, Any]:
    """A small drain results file: two interpreters, three runs, a method the chart has no label for."""
    def trials(methods: Dict[str, float]) -> List[Dict[str, Any]]:
        return [{"method": m, "run": run, "count": 1000, "ns": int(ns * 1000 * (1 + 0.01 * run))}
                for run in range(3) for m, ns in methods.items()]

    return {
        "meta": SYNTHETIC_META,
        "args": {"packets": 1000, "payload": 16, "write_packets": 1000, "runs": 3},
        "results": [
            {"interp": "cpython", "write_packet_len": 44,
             "trials": trials({"c_read": 800, "read_batch": 700, "device_readinto": 1300, "mystery_read": 900}),
             "write_trials": trials({"c_write": 1400, "write_batch": 1200})},
            {"interp": "pypy", "write_packet_len": 44,
             "trials": trials({"c_read": 850, "read_batch": 720, "device_readinto": 900}),
             "write_trials": trials({"c_write": 1450, "write_batch": 1250})},
        ],
    }


def synthetic_forward() -> Dict[str, Any]:
    return {
        "meta": {**SYNTHETIC_META, "benchmark": "forward_bench", "interpreters": SYNTHETIC_META["interpreters"][:1]},
        "args": {"runs": 2, "seconds": 5, "bytes": ""},
        "variants": [
            {"name": "veth pair (the limit)", "parallel": 1, "baseline": "veth pair (the limit)", "gbit": [10.0, 12.0]},
            {"name": "forward.py, offloads", "parallel": 1, "baseline": "veth pair (the limit)", "gbit": [8.0, 9.0]},
        ],
    }


def test_charts_render_a_results_file(tmp_path: Path) -> None:
    """charts.py's command line turns a drain and a forward results file into three PNGs of the expected size."""
    need_matplotlib()
    import charts

    drain, forward = tmp_path / "d.json", tmp_path / "f.json"
    drain.write_text(json.dumps(synthetic_drain()))
    forward.write_text(json.dumps(synthetic_forward()))
    assert charts.main(["--drain", str(drain), "--forward", str(forward), "--out", str(tmp_path / "png")]) == 0
    rows = {"drain-reads.png": 4, "drain-writes.png": 2, "forward.png": 2}
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(rows)
    for name, n in rows.items():
        path = tmp_path / "png" / name
        # The figure is WIDTH_IN wide and grows 0.42 in per row, at DPI pixels per inch.
        expected = (round(charts.WIDTH_IN * charts.DPI), round((1.6 + 0.42 * n) * charts.DPI))
        assert png_size(path) == expected, name
        assert 5_000 < path.stat().st_size < MAX_PNG_BYTES, (name, path.stat().st_size)


def test_chart_texts_come_from_the_data() -> None:
    """Title and footer are made from the file: its sizes and runs, its date, commit, machine and interpreters;
    a method without a label is charted under its key, not dropped."""
    need_matplotlib()
    import charts

    data = synthetic_drain()
    fig = charts.ratio_figure(data, "reads", "d.json")
    texts = [t.get_text() for t in fig.texts]
    assert runinfo.provenance(SYNTHETIC_META) + "\ndata: d.json" in texts
    assert "TUN reads: 1,000 queued 16-byte UDP datagrams drained, median of 3 runs" in texts
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["C read() loop (baseline)", "read_batch(ring), io_uring, 256", "Device.readinto(buf)",
                     "mystery_read"]
    bars = {round(p.get_width(), 3) for p in fig.axes[0].patches}
    assert {1.0, round(700 / 800, 3), round(1300 / 800, 3), round(900 / 800, 3), round(720 / 850, 3)} <= bars
    noted = {**data["meta"], "footnote": "figures transcribed"}
    assert charts.footer(noted, "x.json") == runinfo.provenance(noted) + "\nfigures transcribed; data: x.json"
    fwd = charts.forward_figure(synthetic_forward(), "f.json")
    assert any(t.get_text().startswith(runinfo.provenance(synthetic_forward()["meta"])) for t in fwd.texts)


def test_committed_charts_are_small_pngs_of_the_committed_data() -> None:
    """docs/_static/bench holds the three charts render() writes, as PNGs under the size limit."""
    folder = REPO / "docs" / "_static" / "bench"
    assert sorted(p.name for p in folder.glob("*.png")) == ["drain-reads.png", "drain-writes.png", "forward.png"]
    for path in folder.glob("*.png"):
        width, _ = png_size(path)
        assert width == 900 and path.stat().st_size < MAX_PNG_BYTES, path
