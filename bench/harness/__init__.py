"""The bench harness: what drain.py and the diagnostics share (implementation in submodules, names here).

- :mod:`.build`: the C helpers' paths, :func:`build_helpers` (gcc -O2 into
  ``bench/_build/``) and :class:`CLibs` (the C loops called in-process).
- :mod:`.tun`: :class:`BenchTun` (the TUN, its fill, drains, written packets
  and counter checks), the bench's constants, interface helpers.
- :mod:`.turns`: the interleaved comparisons' timed turns and their order.

A script under ``bench/`` or ``bench/diag/`` puts ``bench/`` on ``sys.path``
and imports this package; importing it puts the repository root first on
``sys.path`` too, so every script measures the working tree's
``tuntap_cffi`` (nothing is installed).
"""

from __future__ import annotations

import sys

from .build import (
    BENCH_DIR,
    BUILD_DIR,
    C_DIR,
    DRAIN_READ,
    DRAIN_URING,
    FILL,
    LIBDRAIN,
    LIBDRAINURING,
    LIBWRITELOOP,
    REPO_ROOT,
    WRITE_LOOP,
    CLibs,
    build_fill,
    build_helpers,
)
from .tun import (
    BIG_RING,
    BLOCK,
    BUF_SIZE,
    JIT_LOOP_ITERATIONS,
    RING,
    TXQUEUELEN,
    UDP_PORT,
    WARM_CALLS,
    WRITE_KINDS,
    WRITE_PORT,
    BenchTun,
    check_subnet,
    counter,
    delete_interface,
    engine_of,
    implementation,
    interface_exists,
    ip_checksum,
    log,
    tx_dropped,
    udp4_packet,
    udp_sockets_on_port,
)
from .turns import (
    block_cffi_cached_ptr,
    block_device_readinto,
    block_os_write,
    block_read_batch,
    block_write,
    block_write_batch,
    shuffled,
)

if sys.path[0] != str(REPO_ROOT):  # measure the working tree's tuntap_cffi, even where one is installed
    sys.path.insert(0, str(REPO_ROOT))

__all__ = [
    "BENCH_DIR", "BUILD_DIR", "C_DIR", "DRAIN_READ", "DRAIN_URING", "FILL", "LIBDRAIN", "LIBDRAINURING",
    "LIBWRITELOOP", "REPO_ROOT", "WRITE_LOOP", "CLibs", "build_fill", "build_helpers",
    "BIG_RING", "BLOCK", "BUF_SIZE", "JIT_LOOP_ITERATIONS", "RING", "TXQUEUELEN", "UDP_PORT", "WARM_CALLS",
    "WRITE_KINDS", "WRITE_PORT", "BenchTun", "check_subnet", "counter", "delete_interface", "engine_of",
    "implementation", "interface_exists", "ip_checksum", "log", "tx_dropped", "udp4_packet", "udp_sockets_on_port",
    "block_cffi_cached_ptr", "block_device_readinto", "block_os_write", "block_read_batch", "block_write",
    "block_write_batch", "shuffled",
]  # fmt: skip
