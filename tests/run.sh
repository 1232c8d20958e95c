#!/usr/bin/env bash
# Run the whole test suite on CPython and on PyPy (as root, on Debian/Ubuntu).
# Installs what the tests need: Debian packages with apt-get, Python packages
# into .venv (CPython) and .venv-pypy (PyPy) with pip.  Extra arguments go to
# pytest, e.g. `bash tests/run.sh -k readinto`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have pypy3 || missing+=(pypy3)
dpkg -s pypy3-venv >/dev/null 2>&1 || missing+=(pypy3-venv)
# Debian/Ubuntu's python3 makes venvs only with python3-venv (it brings ensurepip).
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
have ping || missing+=(iputils-ping)
have setpriv || missing+=(util-linux)
have ip || missing+=(iproute2)
have gcc || missing+=(gcc libc6-dev)
# python-pytun (the test extra, CPython only) builds from source where no wheel fits: it needs the headers.
dpkg -s python3-dev >/dev/null 2>&1 || missing+=(python3-dev)
have tshark || missing+=(tshark)
have iperf3 || missing+=(iperf3)  # bench/pytun_bench.py's smoke test runs a tunnel under it
[ -e /usr/include/linux/if_tun.h ] || missing+=(linux-libc-dev)
# Filter expressions compile with libpcap, loaded at run time (Ubuntu 24.04's libpcap0.8t64 provides libpcap0.8).
ldconfig -p | grep 'libpcap\.so' >/dev/null || missing+=(libpcap0.8)  # (not grep -q: under pipefail ldconfig's SIGPIPE would fail it)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    # tshark's wireshark-common asks whether non-root users may capture: answer no, without a prompt.
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The pcap and CLI tests read their captures back with tshark: fail here if it does not run.
tshark -v >/dev/null 2>&1 || { echo "tshark is installed but \`tshark -v\` fails" >&2; exit 1; }

[ -x .venv/bin/python ] || python3 -m venv .venv
# The docs extra on CPython only: tests/test_docs.py builds the site once, there.
.venv/bin/python -m pip install -q --disable-pip-version-check '.[test,docs]'
[ -x .venv-pypy/bin/python ] || pypy3 -m venv .venv-pypy
.venv-pypy/bin/python -m pip install -q --disable-pip-version-check '.[test]'

status=0
echo "== CPython: $(.venv/bin/python -VV | head -1)"
.venv/bin/python -m pytest "$@" || status=$?
echo "== PyPy: $(.venv-pypy/bin/python -VV | tr '\n' ' ')"
.venv-pypy/bin/python -m pytest "$@" || status=$?
exit "$status"
