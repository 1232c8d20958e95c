"""The C helpers: where their sources and binaries live, how they are built, and their in-process loops.

The C baselines (``bench/c/*.c``) are compiled with ``gcc -O2`` into
``bench/_build/`` at bench time: each loop once as a program (a subprocess
times a whole drain or write run on an inherited fd) and once as a shared
library (``-DDRAIN_LIBRARY``) that :class:`CLibs` calls in-process through
cffi, so a C loop can take its turn between Python methods on one queue.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
C_DIR = BENCH_DIR / "c"
BUILD_DIR = BENCH_DIR / "_build"
DRAIN_READ = BUILD_DIR / "drain_read"
LIBDRAIN = BUILD_DIR / "libdrain.so"  # drain_read.c's loop as a library, for the interleaved run
DRAIN_URING = BUILD_DIR / "drain_uring"  # the C io_uring floor (reads and writes)
LIBDRAINURING = BUILD_DIR / "libdrainuring.so"
WRITE_LOOP = BUILD_DIR / "write_loop"  # the C write() loop
LIBWRITELOOP = BUILD_DIR / "libwriteloop.so"
FILL = BUILD_DIR / "fill"


GCC = ["gcc", "-O2", "-Wall"]


def build_helpers() -> str:
    """Compile the C helpers into bench/_build (those older than their source); return gcc's version line."""
    for source, program, library in (
        ("drain_read.c", DRAIN_READ, LIBDRAIN),
        ("drain_uring.c", DRAIN_URING, LIBDRAINURING),
        ("write_loop.c", WRITE_LOOP, LIBWRITELOOP),
    ):
        compile_c(source, program)
        compile_c(source, library, "-shared", "-fPIC", "-DDRAIN_LIBRARY")
    build_fill()
    return subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def build_fill() -> None:
    """Compile only the filler (for scripts that need nothing else), if it is older than its source."""
    compile_c("fill.c", FILL)


def compile_c(source: str, target: Path, *flags: str) -> None:
    """gcc -O2 bench/c/SOURCE into *target*, unless *target* is newer than the source."""
    path = C_DIR / source
    if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
        return
    BUILD_DIR.mkdir(exist_ok=True)
    subprocess.run([*GCC, *flags, "-o", str(target), str(path)], check=True)


class CLibs:
    """The C loops as libraries (libdrain, libdrainuring, libwriteloop), called in-process through cffi."""

    def __init__(self) -> None:
        import cffi

        self.ffi = ffi = cffi.FFI()
        ffi.cdef(
            """
            long drain_block(int fd, void *buf, size_t size, long max, long long *ns, int *stop_errno);
            void *uring_new(int fd, unsigned n, unsigned slot, int write);
            int uring_load(void *u, const unsigned char *blob, size_t len, size_t k);
            long uring_block(void *u, long max, long long *ns, int *err);
            long uring_write_block(void *u, long count, long long *ns, int *err);
            void uring_free(void *u);
            long write_block(int fd, const unsigned char *blob, size_t len, size_t k, long count,
                             long long *ns, int *err);
            """
        )
        self.drain = ffi.dlopen(str(LIBDRAIN))
        self.uring = ffi.dlopen(str(LIBDRAINURING))
        self.write = ffi.dlopen(str(LIBWRITELOOP))
        self.ns = ffi.new("long long *")
        self.err = ffi.new("int *")

    def read_block(self, fd: int, ptr: Any, size: int, k: int) -> int:
        """Read *k* packets with drain_read.c's loop; return its own nanoseconds."""
        n = self.drain.drain_block(fd, ptr, size, k, self.ns, self.err)
        if n != k:
            raise RuntimeError(f"the queue ran dry inside a block ({n} of {k}, errno {self.err[0]})")
        return int(self.ns[0])

    def new_uring(self, fd: int, entries: int, slot_size: int, write: bool) -> Any:
        u = self.uring.uring_new(fd, entries, slot_size, 1 if write else 0)
        if u == self.ffi.NULL:
            err = self.ffi.errno
            raise OSError(err, f"C io_uring set-up failed: {os.strerror(err)}")
        return self.ffi.gc(u, self.uring.uring_free)

    def uring_read_block(self, u: Any, k: int) -> int:
        n = self.uring.uring_block(u, k, self.ns, self.err)
        if n != k:
            raise RuntimeError(f"C io_uring read {n} of {k} packets inside a block (errno {self.err[0]})")
        return int(self.ns[0])

    def uring_write_block(self, u: Any, k: int) -> int:
        n = self.uring.uring_write_block(u, k, self.ns, self.err)
        if n != k:
            raise RuntimeError(f"C io_uring wrote {n} of {k} packets inside a block (errno {self.err[0]})")
        return int(self.ns[0])

    def write_block(self, fd: int, blob: Any, size: int, kinds: int, k: int) -> int:
        n = self.write.write_block(fd, blob, size, kinds, k, self.ns, self.err)
        if n != k:
            raise RuntimeError(f"the C write() loop wrote {n} of {k} packets (errno {self.err[0]})")
        return int(self.ns[0])
