"""Real-device tests for FreeBSD: collected only when ``sys.platform`` starts with "freebsd" (never on Linux CI).

They open real /dev/tun and /dev/tap devices and need root:
``.github/workflows/freebsd.yml`` runs them in a FreeBSD VM
(vmactions/freebsd-vm).  These tests have not run yet: the project is not
hosted, and no FreeBSD machine is available where it is developed (the
simulator suite, tests/test_freebsd_device.py, is what ran there).
"""

from __future__ import annotations

import sys

if not sys.platform.startswith("freebsd"):
    collect_ignore_glob = ["test_*.py"]
