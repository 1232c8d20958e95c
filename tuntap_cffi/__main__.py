"""``python -m tuntap_cffi``: the ``tuntap-cffi`` command (see :mod:`tuntap_cffi.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tuntap_cffi"))
