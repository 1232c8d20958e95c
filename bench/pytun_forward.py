"""The comparison forwarder: python-pytun, one packet per read/write, select() loop.

    bench/.venv/bin/python bench/pytun_forward.py tunA tunB

Written the way pytun programs forward between two devices; prints
"ready A B" once both exist and runs until SIGTERM.
"""

from __future__ import annotations

import select
import signal
import sys

import pytun  # type: ignore[import-not-found]


def main() -> int:
    a = pytun.TunTapDevice(name=sys.argv[1], flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    b = pytun.TunTapDevice(name=sys.argv[2], flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    peer = {a.fileno(): (a, b), b.fileno(): (b, a)}
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print(f"ready {a.name} {b.name}", flush=True)
    while running[0]:
        try:
            ready, _, _ = select.select(list(peer), [], [], 0.2)
        except InterruptedError:
            continue
        for fd in ready:
            src, dst = peer[fd]
            try:
                dst.write(src.read(65536))
            except pytun.Error:
                pass  # e.g. the other side still down
    a.close()
    b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
