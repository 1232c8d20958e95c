"""Every script under bench/ runs end to end at tiny sizes, so that a change cannot break one silently.

Each runs as a subprocess of the interpreter running the tests, on its own
TUN (and the test's own subnet where the script takes one), with the
smallest sizes that still go through every step: the benchmark that
``bench/run.sh`` runs (drain.py), the other benchmarks, every diagnostic
under bench/diag/.  Figures are not judged (no timing in tests): each test
checks that the script printed the rows it promises, each with its numbers,
and left no interface or namespace behind.  ``bench/pytun_bench.py`` has its
own smoke test (tests/test_pytun_bench.py).  The C baselines are compiled
by the scripts (gcc, which tests/run.sh installs): without gcc these tests
fail under CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Sequence

import pytest

from conftest import IN_CI, RUN_TAG

pytestmark = pytest.mark.device

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
NUMBER = r"[-+]?\d+(?:\.\d+)?"


def need(program: str, why: str) -> None:
    if shutil.which(program) is None:
        if IN_CI:
            pytest.fail(f"CI=true and {why} needs {program} (tests/run.sh installs it)")
        pytest.skip(f"{program} is not installed ({why})")


def need_uring() -> None:
    from tuntap_cffi import batch

    usable, why = batch.uring_status()
    if not usable:
        pytest.skip(f"io_uring is unusable here ({why}): the script measures an io_uring engine")


def run(script: str, args: Sequence[str], leftovers: Callable[[int], List[str]], timeout: float = 120,
        compiles: bool = True) -> str:
    """Run bench/SCRIPT ARGS with this interpreter; check exit 0 and that none of ``leftovers(pid)`` exists."""
    if compiles:
        need("gcc", f"bench/{script} (it compiles C helpers)")
    proc = subprocess.Popen([sys.executable, str(BENCH / script), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"bench/{script} took more than {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    left = [name for name in leftovers(proc.pid) if os.path.exists(f"/sys/class/net/{name}")]
    for name in left:
        subprocess.run(["ip", "link", "del", "dev", name], capture_output=True)
    assert proc.returncode == 0, f"bench/{script} failed (exit {proc.returncode}):\n{out[-3000:]}\n{err[-5000:]}"
    assert not left, f"bench/{script} left interfaces behind: {left}"
    return out


def rows(out: str, heading: str) -> List[List[str]]:
    """The body rows (cells stripped) of the first markdown table after the line starting with *heading*."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    table = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    assert len(table) >= 2 and set(table[1][0]) <= set("-: "), f"no table after {heading!r}:\n{out}"
    return table[2:]


def is_number(cell: str, unit: str = "") -> bool:
    return re.fullmatch(rf"\*?\*?{NUMBER}{re.escape(unit)}\*?\*?", cell) is not None


def lines_matching(out: str, pattern: str) -> List[str]:
    return [line for line in out.splitlines() if re.search(pattern, line)]


# ------------------------------------------------------------------ benchmarks


def charted(args: Sequence[str], tmp_path: Path, pngs: List[str]) -> None:
    """bench/charts.py draws a real run's results file (where matplotlib is: the test extra has it on CPython)."""
    if importlib.util.find_spec("matplotlib") is None:
        return  # tests/test_bench_charts.py says why it is missing (a failure in CI on CPython)
    out = tmp_path / "charts"
    proc = subprocess.run([sys.executable, str(BENCH / "charts.py"), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == pngs and all((out / p).stat().st_size for p in pngs)


def test_run_sh_runs_drain_py_then_charts() -> None:
    """bench/run.sh (setup.sh, the benchmark, its charts) names scripts that exist and parses as bash; the charts
    read the file drain.py writes by default."""
    text = (BENCH / "run.sh").read_text()
    runs = re.findall(r"^\.venv/bin/python (\S+\.py)(.*)$", text, re.M)
    assert [script for script, _ in runs] == ["drain.py", "charts.py"], runs
    assert all((BENCH / script).is_file() for script, _ in runs) and (BENCH / "setup.sh").is_file()
    assert "--drain _build/results.json" in runs[1][1]
    assert 'else BUILD_DIR / "results.json"' in (BENCH / "drain.py").read_text()  # drain.py's default file
    assert subprocess.run(["bash", "-n", str(BENCH / "run.sh")]).returncode == 0


def test_drain(subnet: str, tmp_path: Path) -> None:
    """The drain benchmark's every read and write method, interleaved turns and paired drains, at 2,600 packets."""
    interp = "pypy" if sys.implementation.name == "pypy" else "cpython"
    results = tmp_path / "results.json"
    out = run("drain.py", ["--interp", interp, "--runs", "1", "--packets", "2600", "--write-packets", "2600",
                           "--warmup-packets", "300", "--paired", "2", "--block", "256", "--jit-calls", "2",
                           "--warm-calls", "2", "--subnet", subnet, "--results", str(results)],
              lambda pid: [f"ttbench{pid % 1000}"])
    reads = rows(out, "### Reads")
    writes = rows(out, "### Writes")
    assert len(reads) == 12 and len(writes) == 7, out
    for row in reads + writes:  # method | ns/pkt | ratio: figures, or n/a with a note (no io_uring, no pytun)
        assert (is_number(row[1]) and is_number(row[2], "x")) or row[1:] == ["n/a", "n/a"], row
    measured = {row[0] for row in reads + writes if row[1] != "n/a"}
    assert {"C `read()` loop (gcc -O2)", "`Device.readinto(buf)`", "`os.read(fd, 2048)`",
            "C `write()` loop (gcc -O2)", "`Device.write(pkt)`"} <= measured, out
    targets = rows(out, "### Targets")
    assert len(targets) == 4 and all(row[6] != "n/a" or row[7] == "not measured" for row in targets), targets
    if "`Device.read_batch(ring)`, io_uring, 256 slots" in measured:  # and the turns of the interleaved tables
        assert len(rows(out, "Interleaved, reads")) == 5 and len(rows(out, "Interleaved, writes")) == 5, out
    assert lines_matching(out, r"^- \w+, reads: \d+ timed fills") and lines_matching(out, r"^- \w+, writes: "), out
    meta = json.loads(results.read_text())["meta"]  # what the charts print: bench/runinfo.py's block
    assert meta["benchmark"] == "drain" and meta["machine"]["kernel"] == platform.release(), meta
    assert [i["name"] for i in meta["interpreters"]] == [interp] and meta["date_utc"].endswith("Z"), meta
    charted(["--drain", str(results)], tmp_path, ["drain-reads.png", "drain-writes.png"])


def test_async_bench(subnet: str) -> None:
    out = run("async_bench.py", ["--packets", "3000", "--runs", "1", "--subnet", subnet],
              lambda pid: [f"ttab{pid % 10000:04d}"])
    table = rows(out, "## Async drain")
    methods = [row[0] for row in table]
    assert methods[:4] == ["sync readinto", "sync read_batch", "asyncio readinto_async", "asyncio read_batch_async"]
    assert all(is_number(row[1]) and is_number(row[2], "x") for row in table), table
    assert lines_matching(out, rf"^asyncio: read_batch_async / sync read_batch = {NUMBER}x"), out


def test_forward_bench(tmp_path: Path) -> None:
    """iperf3 through every forwarder (forward.py, the C one, pytun's where importable) and a veth pair."""
    need("iperf3", "bench/forward_bench.py")
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    results = tmp_path / "forward.json"
    out = run("forward_bench.py", ["--runs", "1", "--bytes", "10M", "--results", str(results)],
              lambda pid: [f"ttfb{pid % 10000:04d}{end}" for end in "xy"], timeout=180)
    table = rows(out, "## Forwarder benchmark")
    names = [row[0] for row in table]
    assert names[:8] == ["veth pair (the limit)", "veth pair, -P 4", "forward.py, no offloads", "forward.py, offloads",
                         "forward.py, offloads, 2 queues, -P 4", "C forwarder, no offloads", "C forwarder, offloads",
                         "C forwarder, offloads, 2 queues, -P 4"], names
    assert all(is_number(row[1]) and float(row[1]) > 0 and is_number(row[3], "x") for row in table), table
    assert lines_matching(out, r"^Targets: offload forwarder / veth = ") and lines_matching(out, r"^Against the C"), out
    saved = json.loads(results.read_text())  # the same runs as data, with the run's metadata
    assert saved["meta"]["benchmark"] == "forward_bench" and saved["meta"]["machine"]["kernel"] == platform.release()
    assert [v["name"] for v in saved["variants"]] == names
    assert all(f"{statistics.median(v['gbit']):.2f}" == row[1] for v, row in zip(saved["variants"], table)), table
    charted(["--forward", str(results)], tmp_path, ["forward.png"])
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert not {ns for ns in after - before if ns.startswith("ttfb")}, after - before


def test_soak_script(subnet: str) -> None:
    """bench/soak.py's main (tests/test_soak.py runs its functions): devices, every read path, the leak checks."""
    prefix = f"tt{RUN_TAG}K"
    out = run("soak.py", ["--packets", "3000", "--devices", "8", "--threads", "2", "--watchdog", "60",
                          "--subnet", subnet, "--name-prefix", prefix],
              lambda pid: [n for n in os.listdir("/sys/class/net") if n.startswith(prefix)], compiles=False)
    assert out.rstrip().endswith("RESULT: PASS"), out
    assert lines_matching(out, r"^devices: 8 opened and closed .* OK$"), out
    for path in ("readinto", r"read_batch \(io_uring|loop\)", r"async \("):
        assert len(lines_matching(out, rf"^packets via {path}.*all received exactly once in order")) >= 2, (path, out)
    assert lines_matching(out, r"^after \d+ packets: fds .* OK$"), out


# ------------------------------------------------------------------ diagnostics


def test_profile_readinto(subnet: str) -> None:
    out = run("diag/profile_readinto.py", ["--fills", "1", "--packets", "12000", "--block", "1000", "--subnet", subnet],
              lambda pid: [f"ttprof{pid % 1000}"])
    figures = lines_matching(out, rf"\s{NUMBER}\s+[-+]{NUMBER} \[\s*[-+]{NUMBER} \.\.\s+[-+]{NUMBER}\]\s+{NUMBER}x$")
    assert len(figures) == 6 and figures[1].startswith("Device.readinto (as is)"), out


def test_buffer_cost(subnet: str) -> None:
    out = run("diag/buffer_cost.py", ["--packets", "8000", "--block", "1000", "--fills", "2", "--subnet", subnet],
              lambda pid: [f"ttbuf{pid % 1000}"])
    figures = lines_matching(out, rf"^  \S.* {NUMBER} ns\s+{NUMBER}x$")
    names = " ".join(figures)
    assert len(figures) >= 7 and "Device.readinto(bytearray)" in names and "Device.write(buf, n)" in names, out


def test_profile_batch(subnet: str) -> None:
    need_uring()
    out = run("diag/profile_batch.py", ["--fills", "1", "--packets", "2048", "--block", "256", "--warm-calls", "2",
                                        "--subnet", subnet], lambda pid: [f"ttprof{pid % 1000}"])
    figures = lines_matching(out, rf"\s{NUMBER}\s+[-+]{NUMBER} \[\s*[-+]{NUMBER} \.\.\s+[-+]{NUMBER}\]\s+{NUMBER}x$")
    assert len(figures) == 8, out
    assert [f.split("  ")[0] for f in figures[1:4]] == ["read_batch (as is)", "engine.fill(0)", "python enter only"], out


def test_turn_cost(subnet: str) -> None:
    out = run("diag/turn_cost.py", ["--fills", "1", "--packets", "5120", "--block", "512", "--warm-calls", "2",
                                    "--subnet", subnet], lambda pid: [f"tt{pid % 10000}t"])
    figures = lines_matching(out, rf"^  (c_uring|read_batch)\s+{NUMBER}\s+{NUMBER}\s+first/rest {NUMBER}x$")
    assert len(figures) == 2, out


def test_batch_cost_faked() -> None:
    need_uring()
    out = run("diag/batch_cost.py", ["--faked"], lambda pid: [f"tt{pid % 10000}c"])
    figures = lines_matching(out, rf"^\s*{NUMBER} us  ")
    assert [f.split(" us  ")[1] for f in figures] == [
        "dev.read_batch(ring)", "engine.fill(ring, 0)", "u.cq_head[0] = head; engine._reap(ring, 0, 256)"], out


def test_batch_cost_in_place(subnet: str) -> None:
    need_uring()
    out = run("diag/batch_cost.py", ["--fills", "1", "--rounds", "2", "--packets", "4096", "--subnet", subnet],
              lambda pid: [f"tt{pid % 10000}c"])
    figures = lines_matching(out, rf"^\s*{NUMBER} us  ")
    assert [f.split(" us  ")[1] for f in figures] == ["read_batch(ring)", "engine.fill(ring, 0)", "engine._enter alone"]
    assert lines_matching(out, rf"^read_batch's io_uring_enter against the C floor's whole batch: {NUMBER}x$"), out


def test_wrap_check_short_of_the_wrap(subnet: str) -> None:
    """wrap_check's every step (NOPs through each engine's ring, the streams both ways, in order) up to 5,000."""
    need_uring()
    out = run("diag/wrap_check.py", ["--margin", "600", "--advance-to", "5000", "--subnet", subnet],
              lambda pid: [f"tt{pid % 10000}w"])
    assert lines_matching(out, r"^read_batch: 2,400 packets exactly once, in order; counters "), out
    assert lines_matching(out, r"^write_batch: 2,560 packets from 5,000, received exactly once, in order"), out
    assert out.rstrip().endswith("RESULT: PASS, without the wrap (--advance-to 5000)"), out
