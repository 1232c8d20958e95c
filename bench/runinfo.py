"""Where a benchmark run came from, and its results file: the record a chart prints on itself.

Every benchmark run (``bench/drain.py``, ``bench/forward_bench.py``) saves its
raw results as JSON with a ``"meta"`` block made by :func:`run_metadata`: the
UTC date and time, the commit of the working tree and whether tracked files
had local changes, the machine (kernel release, CPU model, core count) and the
interpreters with their cffi.  ``bench/charts.py`` reads that block back
(:func:`provenance`) to put the date, machine and commit on each chart.

Standard library only: the charts and the tests import this module without
the bench's venvs, the harness or tuntap_cffi.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
META_VERSION = 1  # bumped if the "meta" block's keys change meaning

Meta = Dict[str, Any]


def _git(*args: str, cwd: Path = REPO_ROOT) -> Optional[str]:
    """git's stdout (stripped), or None where git or the repository is missing."""
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(cwd: Path = REPO_ROOT) -> Dict[str, Any]:
    """The short commit of HEAD and whether tracked files differ from it (untracked files do not count)."""
    commit = _git("rev-parse", "--short", "HEAD", cwd=cwd)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    # Unknown (no git) is recorded as None, never guessed as clean.
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows, else "?"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> Dict[str, Any]:
    """This machine: OS, kernel release, architecture, CPU model and the cores the OS reports."""
    return {
        "system": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
    }


def interpreter(name: str, version: str, cffi: Optional[str]) -> Dict[str, Any]:
    """One interpreter entry: "cpython" or "pypy", its full version string, its cffi version."""
    return {"name": name, "version": version, "cffi": cffi}


def this_interpreter() -> Dict[str, Any]:
    """The running interpreter's entry (cffi's version from its distribution, None if not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        cffi: Optional[str] = version("cffi")
    except PackageNotFoundError:
        cffi = None
    return interpreter(platform.python_implementation().lower(), " ".join(sys.version.split()), cffi)


def run_metadata(benchmark: str, interpreters: Sequence[Mapping[str, Any]],
                 now: Optional[datetime.datetime] = None) -> Meta:
    """The "meta" block of a results file, taken when the run ends (*now*: the time to record, UTC)."""
    when = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        "meta_version": META_VERSION,
        "benchmark": benchmark,
        "date_utc": when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **git_commit(),
        "machine": machine(),
        "interpreters": [dict(i) for i in interpreters],
        "source": f"recorded by bench/{benchmark}.py at the end of the run",
    }


def save_results(path: Path, meta: Meta, payload: Mapping[str, Any]) -> Path:
    """Write {"meta": meta, **payload} to *path* as JSON (its folder made if missing); return *path*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # default=str: argparse values such as Path are recorded as their text.
    path.write_text(json.dumps({"meta": meta, **payload}, default=str) + "\n")
    return path


def load_results(path: Path) -> Dict[str, Any]:
    """A results file; ValueError naming the file if it has no "meta" block (charts need one)."""
    data: Dict[str, Any] = json.loads(Path(path).read_text())
    if not isinstance(data.get("meta"), dict):
        raise ValueError(f"{path}: no \"meta\" block (date, commit, machine): not a results file of this bench")
    return data


# --------------------------------------------------------------------------
# What a chart says about the run.
# --------------------------------------------------------------------------

NAMES = {"cpython": "CPython", "pypy": "PyPy"}


def short_version(entry: Mapping[str, Any]) -> str:
    """"CPython 3.11.7 (cffi 2.1.1)", "PyPy 3.9.16 (7.3.11)": the version and what matters beside it."""
    name = NAMES.get(entry["name"], entry["name"])
    words = str(entry["version"]).split()
    text = f"{name} {words[0]}" if words else name
    if entry["name"] == "pypy":
        # PyPy's sys.version says "3.9.16 (7.3.11+dfsg-2, ...": its own release is the first parenthesised word.
        release = words[1].strip("(,").split("+")[0] if len(words) > 1 else ""
        return f"{text} ({release})" if release else text
    return f"{text} (cffi {entry['cffi']})" if entry.get("cffi") else text


def machine_text(m: Mapping[str, Any]) -> str:
    """"Linux 6.18, 2-core AMD EPYC VM": kernel release, cores, CPU (a "description" overrides the rest)."""
    if m.get("description"):
        return str(m["description"])
    cores = f"{m['cores']}-core " if m.get("cores") else ""
    return f"{m.get('system') or 'Linux'} {m['kernel']}, {cores}{m['cpu']}"


def commit_text(meta: Mapping[str, Any]) -> str:
    """"commit 4f929d7", "commit 4f929d7 + local changes", or "commit unknown"."""
    if not meta.get("commit"):
        return "commit unknown"
    return f"commit {meta['commit']}" + (" + local changes" if meta.get("dirty") else "")


def date_text(meta: Mapping[str, Any]) -> str:
    """"2026-12-06 00:55 UTC" from the recorded ISO date."""
    when = datetime.datetime.strptime(meta["date_utc"], "%Y-%m-%dT%H:%M:%SZ")
    return when.strftime("%Y-%m-%d %H:%M UTC")


def provenance(meta: Mapping[str, Any]) -> str:
    """The line each chart carries: date, commit, machine, interpreters (all from *meta*)."""
    versions = ", ".join(short_version(i) for i in meta["interpreters"])
    return f"{date_text(meta)} · {commit_text(meta)} · {machine_text(meta['machine'])} · {versions}"


# --------------------------------------------------------------------------
# Figures from the raw trials (shared by drain.py's tables and the charts).
# --------------------------------------------------------------------------


def summarize(trials: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per method: median and spread of ns/packet, counts, per-run values."""
    by_method: Dict[str, Dict[str, Any]] = {}
    for t in trials:
        m = by_method.setdefault(t["method"], {"per_pkt": {}, "counts": []})
        m["per_pkt"][t["run"]] = t["ns"] / t["count"]
        m["counts"].append(t["count"])
    for m in by_method.values():
        values = list(m["per_pkt"].values())
        m["median"] = statistics.median(values)
        m["min"], m["max"] = min(values), max(values)
    return by_method


def ratios(trials: List[Dict[str, Any]], base: str) -> Dict[str, Dict[str, float]]:
    """Per method: {"ns": median ns/packet, "ratio": that over *base*'s median} (the tables' two columns)."""
    s = summarize(trials)
    if base not in s:
        raise ValueError(f"no {base!r} trials: the ratios need the baseline")
    return {k: {"ns": v["median"], "ratio": v["median"] / s[base]["median"]} for k, v in s.items()}
