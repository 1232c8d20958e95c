#!/usr/bin/env python3
"""Benchmark charts: PNGs of a results file, with the run's date, machine and commit on each.

    bench/.venv/bin/python bench/charts.py                      # the last runs in bench/_build/ -> bench/_build/charts/
    bench/.venv/bin/python bench/charts.py --drain bench/results/drain-2026-12-06-4f929d7.json \\
        --forward bench/results/forward-2026-11-25-5db4a7f.json --out docs/_static/bench

Three charts, each from the data alone:

- ``drain-reads.png``: each read method's time per packet over the C
  ``read()`` loop's in the same interpreter's run (median of the whole
  drains), CPython and PyPy side by side; lower is faster, 1.0x marked;
- ``drain-writes.png``: the same for the write methods against the C
  ``write()`` loop;
- ``forward.png``: the forwarders' iperf3 throughput (Gbit/s, median, each
  run a dot), the veth pair as the limit, each bar's ratio to its veth row.

The figures are :func:`runinfo.ratios` of the raw trials, the computation
behind drain.py's tables; the footer is :func:`runinfo.provenance` of the
file's "meta" block.  matplotlib is a bench-only dependency (bench/setup.sh
installs it into bench/.venv; the test extra has it on CPython): it is
imported only to draw, so the figures and texts are usable without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for runinfo
from runinfo import NAMES, load_results, provenance, ratios  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BENCH = Path(__file__).resolve().parent
BUILD_DIR = BENCH / "_build"

# (method key, label) in chart order; this library's own calls are drawn in bold.
READ_LABELS: List[Tuple[str, str]] = [
    ("c_read", "C read() loop (baseline)"),
    ("c_uring", "C io_uring loop, 256/enter (batch floor)"),
    ("c_uring_1024", "C io_uring loop, 1024/enter"),
    ("read_batch", "read_batch(ring), io_uring, 256"),
    ("read_batch_1024", "read_batch(ring), io_uring, 1024"),
    ("read_batch_loop", "read_batch(ring), loop backend"),
    ("device_readinto", "Device.readinto(buf)"),
    ("cffi_cached_ptr", "bare cffi lib.read, cached pointer"),
    ("cffi_from_buffer_each", "cffi, ffi.from_buffer per call"),
    ("os_read", "os.read(fd, 2048)"),
    ("fileio_readinto", "io.FileIO(fd).readinto(buf)"),
    ("pytun_read", "python-pytun read(2048)"),
]
WRITE_LABELS: List[Tuple[str, str]] = [
    ("c_write", "C write() loop (baseline)"),
    ("c_uring_write", "C io_uring loop, 256/enter"),
    ("write_batch", "write_batch(ring), io_uring, 256"),
    ("write_batch_loop", "write_batch(ring), loop backend"),
    ("write_batch_list", "write_batch(list of 256 bytes)"),
    ("device_write", "Device.write(pkt)"),
    ("os_write", "os.write(fd, pkt)"),
]
OURS = {"read_batch", "read_batch_1024", "read_batch_loop", "device_readinto",
        "write_batch", "write_batch_loop", "write_batch_list", "device_write"}
COLOURS = {"cpython": "#3b6ea8", "pypy": "#d08a2e"}
VETH_COLOUR, FORWARD_COLOUR = "#9a9a9a", "#3b6ea8"
WIDTH_IN, DPI = 9.0, 100  # 900 px wide: legible in a README, ~50 KB per PNG


def drain_figures(data: Mapping[str, Any], kind: str) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{interpreter: {method: {"ns", "ratio"}}} of a drain results file; *kind* "reads" or "writes"."""
    trials, base = ("trials", "c_read") if kind == "reads" else ("write_trials", "c_write")
    return {r["interp"]: ratios(r[trials], base) for r in data["results"] if r.get(trials)}


def forward_figures(data: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Per variant of a forward results file: name, runs, median Gbit/s, its baseline and the ratio to it."""
    medians = {v["name"]: statistics.median(v["gbit"]) for v in data["variants"]}
    return [
        {"name": v["name"], "gbit": list(v["gbit"]), "median": medians[v["name"]], "baseline": v["baseline"],
         "ratio": medians[v["name"]] / medians[v["baseline"]]}
        for v in data["variants"]
    ]


def footer(meta: Mapping[str, Any], source: str) -> str:
    """The chart's footer: the run's provenance, any note on where the figures came from, the data file."""
    lines = [provenance(meta)]
    lines.append("; ".join(filter(None, [meta.get("footnote"), f"data: {source}"])))
    return "\n".join(lines)


def _figure(rows: int) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, 1.6 + 0.42 * rows))


def _finish(fig: "Figure", title: str, foot: str) -> None:
    fig.suptitle(title, fontsize=11, fontweight="bold", x=0.01, ha="left")
    fig.text(0.01, 0.01, foot, fontsize=7, color="#444444", ha="left", va="bottom", linespacing=1.4)
    fig.tight_layout(rect=(0, 0.07 if "\n" in foot else 0.05, 1, 0.97))


def ratio_figure(data: Mapping[str, Any], kind: str, source: str) -> "Figure":
    """The read (or write) methods' ratios to the C loop, one bar per interpreter, 1.0x marked."""
    figures = drain_figures(data, kind)
    if not figures:
        raise ValueError(f"{source}: no {kind} trials to chart")
    labels = READ_LABELS if kind == "reads" else WRITE_LABELS
    known = {k for k, _ in labels}
    present = set().union(*(f.keys() for f in figures.values()))
    # Methods the labels do not know are charted under their key, never dropped.
    rows = [(k, lab) for k, lab in labels if k in present] + [(k, k) for k in sorted(present - known)]
    interps = [i for i in ("cpython", "pypy") if i in figures] + sorted(set(figures) - set(NAMES))
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    height = 0.8 / len(interps)
    for n, interp in enumerate(interps):
        ys, xs = [], []
        for y, (key, _) in enumerate(rows):
            if key in figures[interp]:
                ys.append(y - 0.4 + height * (n + 0.5))
                xs.append(figures[interp][key]["ratio"])
        bars = ax.barh(ys, xs, height=height * 0.92, color=COLOURS.get(interp, "#777777"),
                       label=NAMES.get(interp, interp))
        ax.bar_label(bars, labels=[f"{x:.2f}x" for x in xs], padding=2, fontsize=7)
    ax.set_yticks(range(len(rows)), [lab for _, lab in rows], fontsize=8.5)
    for tick, (key, _) in zip(ax.get_yticklabels(), rows):
        if key in OURS:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    loop = "read()" if kind == "reads" else "write()"
    ax.axvline(1.0, color="#333333", linestyle="--", linewidth=1)
    ax.text(1.0, -0.75, f" C {loop} loop = 1.0x", fontsize=7.5, va="bottom", ha="left", color="#333333")
    ax.set_xlim(0, max(f[k]["ratio"] for f in figures.values() for k in f) * 1.12)
    ax.set_xlabel(f"time per packet / the C {loop} loop's, same interpreter and run (median of whole runs): "
                  "lower is faster", fontsize=8)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    args = data.get("args", {})
    if kind == "reads":
        what = f"{args.get('packets', 0):,} queued {args.get('payload', '?')}-byte UDP datagrams drained"
    else:
        size = max((r.get("write_packet_len", 0) for r in data["results"]), default=0)
        what = f"{args.get('write_packets', 0):,} IPv4/UDP packets of {size} bytes written"
    _finish(fig, f"TUN {kind}: {what}, median of {args.get('runs', '?')} runs", footer(data["meta"], source))
    return fig


def forward_figure(data: Mapping[str, Any], source: str) -> "Figure":
    """Throughput of each forwarding path: median bar, each run a dot, the veth rows as the limit."""
    rows = forward_figures(data)
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    gap = max(max(r["gbit"]) for r in rows) * 0.015  # between the last dot and the figure
    for y, row in enumerate(rows):
        limit = row["name"] == row["baseline"]
        ax.barh(y, row["median"], height=0.7, color=VETH_COLOUR if limit else FORWARD_COLOUR)
        ax.plot(row["gbit"], [y] * len(row["gbit"]), "o", color="#222222", markersize=3)
        text = f"{row['median']:.2f}  (the limit)" if limit else f"{row['median']:.2f}  ({row['ratio']:.2f}x veth)"
        ax.text(max(row["gbit"] + [row["median"]]) + gap, y, text, va="center", fontsize=7.5)
    ax.set_yticks(range(len(rows)), [r["name"].replace(" (the limit)", "") for r in rows], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(r["gbit"]) for r in rows) * 1.3)
    ax.set_xlabel("Gbit/s received by iperf3 (bar: median; dots: each run); -P 4 rows compare with "
                  "the veth pair at -P 4", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    args = data.get("args", {})
    amount = f"{args['bytes']}B" if args.get("bytes") else f"{args.get('seconds', '?')} s"
    runs = max(len(r["gbit"]) for r in rows)
    _finish(fig, f"Forwarding between two namespaces: iperf3 TCP, {amount} per run, median of {runs}",
            footer(data["meta"], source))
    return fig


def save(fig: "Figure", path: Path) -> Path:
    """Write *fig* as a PNG (no software/version stamp, so equal drawings give equal files; zlib at its best)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, pil_kwargs={"optimize": True})
    return path


def _source_name(path: Path) -> str:
    """The data file as a reader can find it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(BENCH.parent))
    except ValueError:
        return path.name


def render(drain: Optional[Path], forward: Optional[Path], out: Path) -> List[Path]:
    """Every chart the given results files make, into *out*; the PNGs' paths."""
    written = []
    if drain is not None:
        data = load_results(drain)
        for kind in ("reads", "writes"):
            if drain_figures(data, kind):
                written.append(save(ratio_figure(data, kind, _source_name(drain)), out / f"drain-{kind}.png"))
    if forward is not None:
        written.append(save(forward_figure(load_results(forward), _source_name(forward)), out / "forward.png"))
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--drain", type=Path, help="drain.py's results (default: bench/_build/results.json if there)")
    p.add_argument("--forward", type=Path, help="forward_bench.py's results (default: bench/_build/forward.json if there)")
    p.add_argument("--out", type=Path, default=BUILD_DIR / "charts", help="where the PNGs go (default: bench/_build/charts)")
    args = p.parse_args(argv)
    if args.drain is None and args.forward is None:
        found = {name: BUILD_DIR / file for name, file in (("drain", "results.json"), ("forward", "forward.json"))
                 if (BUILD_DIR / file).exists()}
        if not found:
            p.error("no results file given and none in bench/_build/ (run bash bench/run.sh or forward_bench.py first)")
        args.drain, args.forward = found.get("drain"), found.get("forward")
    for path in (args.drain, args.forward):
        if path is not None and not path.is_file():
            p.error(f"{path}: no such file")
    for path in render(args.drain, args.forward, args.out):
        print(f"chart: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
