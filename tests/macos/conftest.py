"""Real-device tests for macOS: collected only when ``sys.platform == "darwin"`` (never on Linux CI, not even skipped).

They open real utun (and, where the library has it, feth TAP) devices and
need root: ``.github/workflows/macos.yml`` runs them with sudo on hosted
macOS runners.  The tuntaposx tests run only where the kext's /dev/tun0 is
present (never on Apple silicon) and skip otherwise.  These tests have not
run yet: the project is not hosted, and no Mac is available where it is
developed (the darwin simulator suites, tests/test_darwin_*.py, are what
ran there).
"""

from __future__ import annotations

import sys

if sys.platform != "darwin":
    collect_ignore_glob = ["test_*.py"]
