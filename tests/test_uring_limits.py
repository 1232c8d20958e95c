"""io_uring under fd pressure and after it is disabled: what is remembered, what is raised, what batch_backend says.

Each case runs in a subprocess: RLIMIT_NOFILE, the filled fd table and the
seccomp filter must not touch the test process, and the probe's answer is
per process.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tuntest import bind_to_device, configure, require_uring
from tuntap_cffi import TunTapError, open_tun
from tuntap_cffi._engines import table_of
from tuntap_cffi._syscalls import lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
device = pytest.mark.device

# Fill the fd table up to *free* free numbers under a low RLIMIT_NOFILE.
_FILL = """
import os, resource
def fill(free):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        pass
    for _ in range(free):
        os.close(held.pop())
    return held
def fds():  # (listing /proc/self/fd would need a free fd)
    count = 0
    for fd in range(1024):
        try:
            os.fstat(fd)
            count += 1
        except OSError:
            pass
    return count
"""


def run(script: str) -> Any:
    """Run *script* (which prints one JSON line last) in a fresh interpreter; return the JSON."""
    proc = subprocess.run([sys.executable, "-c", _FILL + textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, TUNTAP_CFFI_BATCH="auto"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_transient_emfile_in_first_probe_is_not_remembered() -> None:
    require_uring()
    out = run("""
        import json
        from tuntap_cffi import batch
        held = fill(0)
        first = batch.uring_status()
        for fd in held:
            os.close(fd)
        print(json.dumps([first, batch.uring_status()]))
    """)
    (usable, why), second = out
    assert not usable and "Too many open files" in why and "transient" in why, out
    assert second == [True, "io_uring"], out


@device
@pytest.mark.parametrize("free", [0, 1, 2])
def test_engine_creation_short_of_fds_names_the_device_and_the_limit(free: int, ifname: str) -> None:
    """With 0-2 free fds a ring's first read_batch raises a TunTapError (EMFILE, RLIMIT_NOFILE), leaks nothing,
    and works with io_uring once fds are free again."""
    require_uring()
    out = run(f"""
        import json
        from tuntap_cffi import TunTapError, batch, open_tun
        from tuntap_cffi._engines import table_of
        assert batch.uring_status() == (True, "io_uring")
        dev = open_tun({ifname!r})
        ring = dev.packet_ring(8)
        held = fill({free})
        before = fds()
        try:
            got = dev.read_batch(ring, timeout=0)
            result = ["ok", got]
        except TunTapError as exc:
            result = ["TunTapError", exc.errno, exc.filename, str(exc)]
        except OSError as exc:
            result = [type(exc).__name__, exc.errno, exc.filename, str(exc)]
        leaked = fds() - before
        for fd in held:
            os.close(fd)
        after = dev.read_batch(ring, timeout=0)
        print(json.dumps([result, leaked, after, dev.batch_backend, table_of(dev).get(ring, "read").backend]))
        dev.close()
    """)
    result, leaked, after, backend, engine = out
    # io_uring_setup takes 1 fd and CPython's mmap dups it: with 0-2 free one of them fails.
    assert result[:3] == ["TunTapError", 24, ifname], out  # EMFILE
    assert "RLIMIT_NOFILE" in result[3] and "batch_backend = 'loop'" in result[3], out
    assert leaked == 0, out
    assert after == 0 and backend == engine == "io_uring", out


@device
def test_batch_backend_says_loop_once_io_uring_is_refused(ifname: str) -> None:
    """io_uring usable at the probe, then refused (a seccomp filter: EPERM from io_uring_setup, as
    kernel.io_uring_disabled=2 gives): new engines fall back to the loop and batch_backend says 'loop'."""
    require_uring()
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp filter below is written for x86-64")
    out = run(f"""
        import ctypes, json, struct
        from tuntap_cffi import batch, open_tun
        from tuntap_cffi._engines import table_of
        dev = open_tun({ifname!r})
        first = dev.packet_ring(8)
        dev.read_batch(first, timeout=0)
        before = [dev.batch_backend, table_of(dev).get(first, "read").backend]
        # seccomp: io_uring_setup (425) fails with EPERM, every other syscall runs (this thread only).
        code = [(0x20, 0, 0, 0), (0x15, 0, 1, 425), (0x06, 0, 0, 0x00050000 | 1), (0x06, 0, 0, 0x7FFF0000)]
        raw = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *c) for c in code))
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        prog = Prog(len(code), ctypes.addressof(raw))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP, FILTER
        second = dev.packet_ring(8)
        dev.read_batch(second, timeout=0)
        after = [dev.batch_backend, table_of(dev).get(second, "read").backend, batch.uring_status()[0]]
        print(json.dumps([before, after]))
        dev.close()
    """)
    before, after = out
    assert before == ["io_uring", "io_uring"], out
    assert after == ["loop", "loop", False], out


@device
def test_stray_completion_raises_a_tuntap_error_naming_the_device(ifname: str, subnet: str) -> None:
    """A completion that is not of the batch's slots (here a NOP the test puts through the engine's own ring,
    as an interrupted batch's leftovers were in issue 13) is never a bare OSError: either the engine sorts it
    out and delivers the packets, or it raises a TunTapError (EPROTO) that names the device."""
    require_uring()
    dev = open_tun(ifname)
    try:
        configure(dev, subnet)
        ring = dev.packet_ring(8)
        engine = table_of(dev).get(ring, "read")
        assert engine.backend == "io_uring"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            bind_to_device(s, ifname)
            s.bind((f"{subnet}.1", 0))
            for i in range(8):
                s.sendto(b"p%d" % i, (f"{subnet}.2", 9))
        u = engine.uring
        index = engine.n + 2  # an SQE the engine does not use
        sqe = u.sqes[index]
        sqe.opcode, sqe.fd, sqe.user_data = lib.IORING_OP_NOP, -1, (engine.n + 5) << 24  # "slot 13"
        tail = u.sq_tail[0]
        u.sq_array[tail & u.sq_mask] = index
        u.sq_tail[0] = (tail + 1) & 0xFFFFFFFF
        assert u.enter(1, 0, 0) == 1
        try:
            got = dev.read_batch(ring, timeout=5)
        except TunTapError as exc:
            assert exc.errno == errno.EPROTO and exc.filename == ifname, repr(exc)
            assert "report it" in str(exc) and "batch_backend" in str(exc), str(exc)
        else:
            assert got > 0 and all(bytes(ring[i])[28:30] == b"p%d" % i for i in range(got)), got
    finally:
        dev.close()
