#!/usr/bin/env bash
# The drain benchmark, start to end: set up the venvs, run CPython and PyPy
# and print the markdown tables, then draw the run's charts.  Extra arguments
# go to drain.py, e.g. `bash bench/run.sh --interp pypy`.  Run as root.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
.venv/bin/python drain.py --interp all "$@"
# The run's charts from its raw results (drain.py's default file; after
# `--results FILE`, run charts.py --drain FILE yourself).  The docs' charts
# are drawn from the committed data under bench/results/ instead.
.venv/bin/python charts.py --drain _build/results.json --out _build/charts
