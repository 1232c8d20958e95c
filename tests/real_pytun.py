"""Where the real python-pytun (the C extension) is, for tests that compare pytun_compat with it.

It is in the ``test`` extra for CPython (tests/run.sh installs it), so the
comparisons normally run in-process's own interpreter.  Under PyPy, where
pytun would need cpyext and pypy3-dev, the pytun half runs in a CPython that
has it: ``$TUNTAP_PYTUN_PYTHON``, else the repository's ``.venv`` (made by
tests/run.sh), else ``bench/.venv`` (bench/setup.sh).  With none of them a
comparison test skips, except under ``CI=true``, where it fails: a
comparison that silently skips in CI proves nothing.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from typing import Optional

import pytest

from tuntest import IN_CI

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports_pytun(python: str) -> bool:
    if not os.access(python, os.X_OK):
        return False
    try:
        proc = subprocess.run([python, "-c", "import pytun"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@functools.lru_cache(maxsize=None)
def real_pytun_python() -> Optional[str]:
    """An interpreter that can ``import pytun`` (the C extension), or None."""
    candidates = [
        os.environ.get("TUNTAP_PYTUN_PYTHON", ""),
        sys.executable if sys.implementation.name == "cpython" else "",
        os.path.join(REPO, ".venv", "bin", "python"),
        os.path.join(REPO, "bench", ".venv", "bin", "python"),
    ]
    for python in candidates:
        if python and _imports_pytun(python):
            return python
    return None


def require_real_pytun() -> str:
    """The interpreter of :func:`real_pytun_python`; skip the test without one (fail under CI=true)."""
    python = real_pytun_python()
    if python is None:
        reason = ("python-pytun is not importable (pip install python-pytun, in the test extra for CPython; "
                  "or set TUNTAP_PYTUN_PYTHON to a CPython that has it)")
        if IN_CI:
            pytest.fail(f"CI=true and this comparison needs the real pytun: {reason}")
        pytest.skip(reason)
    return python
