#!/usr/bin/env bash
# The drain benchmark, start to end: set up the venvs, then run CPython and
# PyPy and print one markdown table.  Extra arguments go to drain.py, e.g.
# `bash bench/run.sh --interp pypy`.  Run as root.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
exec .venv/bin/python drain.py --interp all "$@"
