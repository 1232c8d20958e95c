#!/usr/bin/env bash
# Make the drain benchmark's environments (as root, on Debian/Ubuntu).
# Idempotent and quick once done:
#   bench/.venv       CPython venv: cffi, python-pytun, matplotlib (runs drain.py and its CPython worker,
#                     and charts.py)
#   bench/.venv-pypy  PyPy venv: python-pytun, built from source through cpyext
#                     (needs pypy3-dev); its outcome is kept in pytun-install.log,
#                     and the bench reports pytun on PyPy as n/a if it failed.
# tuntap_cffi itself is not installed: the bench imports the working tree.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc || missing+=(gcc libc6-dev)
have ip || missing+=(iproute2)
have pypy3 || missing+=(pypy3)
dpkg -s pypy3-venv >/dev/null 2>&1 || missing+=(pypy3-venv)
dpkg -s pypy3-dev >/dev/null 2>&1 || missing+=(pypy3-dev)
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || echo "setup: apt-get install failed; going on with what is there" >&2
fi

pip_install() { "$1" -m pip install -q --disable-pip-version-check "${@:2}"; }

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -c 'import cffi, pytun, matplotlib' 2>/dev/null || pip_install .venv/bin/python cffi python-pytun matplotlib

if have pypy3; then
    [ -x .venv-pypy/bin/python ] || pypy3 -m venv .venv-pypy
    if ! .venv-pypy/bin/python -c 'import pytun' 2>/dev/null; then
        if pip_install .venv-pypy/bin/python python-pytun >.venv-pypy/pytun-install.log 2>&1; then
            echo "setup: python-pytun installed for PyPy"
        else
            echo "setup: python-pytun did not install for PyPy (see bench/.venv-pypy/pytun-install.log)" >&2
        fi
    fi
fi
