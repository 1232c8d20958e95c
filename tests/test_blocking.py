"""Blocking reads: close() from another thread, EINTR, Ctrl-C, fd-number reuse."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable, List

import pytest

from tuntest import configure, join_task
from tuntap_cffi import Device, DeviceClosedError, open_tap, open_tun

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocked_reader(dev: Device, how: str) -> "tuple[threading.Thread, List[object], threading.Event]":
    """Start a thread blocked in a read; it stores what the read raised or returned."""
    outcome: List[object] = []
    started = threading.Event()

    def run() -> None:
        buf = bytearray(dev.max_packet_size)
        started.set()
        try:
            if how == "readinto":
                outcome.append(dev.readinto(buf))
            elif how == "read":
                outcome.append(dev.read())
            else:
                outcome.append(dev.read_packet())
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)
        outcome.append(time.monotonic())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait()
    return t, outcome, started


@pytest.mark.parametrize("how", ["readinto", "read", "read_packet"])
@pytest.mark.parametrize("opener", [open_tun, open_tap], ids=["tun", "tap"])
def test_close_wakes_blocked_reader(ifname: str, how: str, opener: Callable[..., Device]) -> None:
    dev = opener(ifname, packet_info=(how == "read_packet"))
    t, outcome, _ = blocked_reader(dev, how)
    time.sleep(0.3)  # let it block in poll()
    assert t.is_alive() and not outcome, "the reader should be blocked: the device is down and silent"
    fd = dev.fileno()
    closed_at = time.monotonic()
    dev.close()
    t.join(2)
    assert not t.is_alive(), "close() did not wake the blocked reader"
    exc, woke_at = outcome
    assert isinstance(exc, DeviceClosedError), exc
    assert isinstance(exc, ValueError) and "closed" in str(exc)
    assert woke_at - closed_at < 0.1, f"woke {woke_at - closed_at:.3f} s after close()"
    assert not os.path.exists(f"/sys/class/net/{ifname}")
    # Once the reader has left, the number is freed (and may be reused safely).
    assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != "/dev/net/tun"


def test_close_from_reader_thread_perspective_main_thread_reads(ifname: str) -> None:
    """The main thread blocks in readinto; a helper thread closes the device."""
    dev = open_tun(ifname)
    timer = threading.Timer(0.3, dev.close)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(DeviceClosedError):
        dev.readinto(bytearray(dev.max_packet_size))
    elapsed = time.monotonic() - t0
    timer.join()
    assert 0.25 < elapsed < 0.3 + 0.1, elapsed


def test_close_during_traffic_never_reads_a_reused_fd(ifname: str, subnet: str) -> None:
    """Readers racing close() see packets or DeviceClosedError, never another file's data."""
    for round_ in range(20):
        name = f"{ifname}"
        dev = open_tun(name, nonblocking=False)
        configure(dev, subnet)
        stop = threading.Event()
        seen: List[bytes] = []
        errors: List[BaseException] = []

        def sender() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while not stop.is_set():
                    try:
                        s.sendto(b"P" * 32, (f"{subnet}.2", 9))
                    except OSError:
                        return

        def reader() -> None:
            buf = bytearray(dev.max_packet_size)
            try:
                while True:
                    n = dev.readinto(buf)
                    seen.append(bytes(buf[:n]))
            except DeviceClosedError:
                pass
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=sender), threading.Thread(target=reader), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        dev.close()
        # Grab fd numbers at once: if a reader still used the old number it
        # would now find one of these pipes, full of 'Z'.
        pipes = [os.pipe() for _ in range(8)]
        for r, w in pipes:
            os.write(w, b"Z" * 64)
        stop.set()
        for t in threads:
            t.join(5)
        for r, w in pipes:
            os.close(r)
            os.close(w)
        assert not errors, errors
        assert seen, "the readers got no packet at all"
        bad = [p for p in seen if len(p) != 60 or p[0] != 0x45 or p[28:] != b"P" * 32]
        assert not bad, f"a reader returned data that is not one of the sent packets: {bad[:3]}"


def test_eintr_is_retried(ifname: str, subnet: str) -> None:
    dev = open_tun(ifname)
    configure(dev, subnet)
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)  # a signal every 20 ms
    try:
        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"after signals", (f"{subnet}.2", 9))

        timer = threading.Timer(0.5, send)
        timer.start()
        with dev:
            buf = bytearray(dev.max_packet_size)
            n = dev.readinto(buf)
            assert buf[n - 13 : n] == b"after signals"
        timer.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(hits) >= 10, "the handler ran while the read was blocked"


CTRL_C_CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    import tuntap_cffi
    dev = tuntap_cffi.open_tun(sys.argv[2])
    target = sys.argv[3]
    if target == "other-thread":
        # Deliver SIGINT to another thread: the main thread's poll() is not
        # interrupted and must notice on its own.
        ready = threading.Event()
        def idle():
            ready.set()
            time.sleep(30)
        t = threading.Thread(target=idle, daemon=True)
        t.start()
        ready.wait()
        def fire():
            time.sleep(0.3)
            print("sent", time.monotonic(), flush=True)
            signal.pthread_kill(t.ident, signal.SIGINT)
        threading.Thread(target=fire, daemon=True).start()
    else:
        print("ready", flush=True)
    try:
        dev.readinto(bytearray(dev.max_packet_size))
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
    dev.close()
    """
)


@pytest.mark.parametrize("target", ["main-thread", "other-thread"])
def test_ctrl_c_interrupts_blocking_read(ifname: str, target: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, REPO, ifname, target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        if target == "main-thread":
            assert first == ["ready"], first
            time.sleep(0.3)  # let it block
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
        else:
            assert first[0] == "sent", first
            sent = float(first[1])
        line = proc.stdout.readline().split()
        assert line and line[0] == "interrupted", (line, proc.stderr.read() if proc.stderr else "")
        latency = float(line[1]) - sent
        assert latency < 0.5, f"Ctrl-C took {latency:.3f} s"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


CYCLE_CHILD = textwrap.dedent(
    """
    import gc, sys
    sys.path.insert(0, sys.argv[1])
    from tuntap_cffi import open_tun
    gc.disable()
    view = memoryview(bytearray(100))
    try:
        with open_tun(sys.argv[2]) as dev:
            dev.up()
            dev.write(view[:10])  # refused by the kernel inside write()
    except ValueError:
        pass
    frames = [o for o in gc.get_objects() if type(o).__name__ == "frame"]
    print(len(frames))
    del view, frames
    gc.collect()
    print("survived")
    """
)


def test_close_leaves_no_frame_cycle(ifname: str) -> None:
    """close() inspects other threads' frames; it must not keep any (not even its own).

    A kept frame held the failed write's buffer export alive in a cycle, and
    CPython 3.11 crashed when the GC cleared that memoryview (gh-77894).
    """
    proc = subprocess.run([sys.executable, "-c", CYCLE_CHILD, REPO, ifname], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    count, survived = proc.stdout.split()
    assert survived == "survived"
    if sys.implementation.name == "cpython":  # PyPy has no refcounts: its frames wait for the GC anyway
        assert count == "0", f"{count} frames left in reference cycles"


GC_PRESSURE_CHILD = textwrap.dedent(
    """
    import faulthandler, mmap, sys, threading
    sys.path.insert(0, sys.argv[1])
    from tuntap_cffi import open_tun

    faulthandler.dump_traceback_later(60, exit=True)  # a deadlock holding the GIL still ends the child
    prefix = sys.argv[2]

    def work(k):
        for i in range(150):
            for _ in range(20):  # cyclic garbage; one piece holds an mmap, whose dealloc releases the GIL
                box = [mmap.mmap(-1, 4096), {}]
                box.append(box)
            open_tun(f"{prefix}{k}x{i}").close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("done")
    """
)


def test_close_from_many_threads_under_gc_pressure() -> None:
    """Threads opening and closing devices amid cyclic garbage never hang or crash.

    close() used to look at other threads' frames (sys._current_frames()); on CPython 3.11
    a GC pass during that deadlocked or corrupted memory (gh-106883) in about half of these
    children's runs on this machine, and still 1 in 4 with the GC held off during the call.
    Two run side by side here.
    """
    from tuntest import RUN_TAG, delete_link

    prefixes = [f"tt{RUN_TAG}g{j}" for j in range(2)]  # + "<thread>x<i>": at most 15 bytes
    procs = []
    try:
        for prefix in prefixes:
            procs.append(subprocess.Popen([sys.executable, "-c", GC_PRESSURE_CHILD, REPO, prefix],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for name in os.listdir("/sys/class/net"):
            if any(name.startswith(prefix) for prefix in prefixes):
                delete_link(name)
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "done", (p.returncode, err[-4000:])


def number_freed(fd: int, timeout: float = 5.0) -> bool:
    """Wait (bounded) until fd number *fd* is closed: at once when nothing else can use it, or
    within the reaper's checks when other threads of the test run are around (seen idle)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/self/fd/{fd}"):  # (the reaper's /proc reads may take the number for a moment)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_close_keeps_the_fd_number_while_other_threads_live(ifnames: Callable[..., str]) -> None:
    """The interface goes at close(); the number stays on /dev/null while another thread is
    inside a call that holds it (announced: see test_closing.py for the unannounced kinds),
    and is freed by a later close() once alone, or by the finalizer (or the reaper first)."""
    import gc

    open_tun(ifnames()).close()  # the process-wide /dev/null fd close() uses exists from now on
    for how in ("close again", "finalizer"):
        name = ifnames()
        dev = open_tun(name)
        fd = dev.fileno()
        entered, release = threading.Event(), threading.Event()

        def inside(dev: Device) -> None:
            me = dev._enter()  # as read_batch, _wait and the link setters do
            entered.set()
            release.wait()
            dev._exit(me)

        other = threading.Thread(target=inside, args=(dev,), daemon=True)
        other.start()
        assert entered.wait(5)
        try:
            dev.close()
            assert not os.path.exists(f"/sys/class/net/{name}"), "close() did not release the interface"
            assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null", "the number was freed under a thread inside"
            assert dev.closed
        finally:
            release.set()
            join_task(other)  # its kernel task gone too: close() asks /proc/self/task
        if how == "close again":
            dev.close()
        else:
            del dev
            gc.collect()
        # At once when this is the only thread left; with threads earlier tests
        # left behind (idle executors), the reaper frees it once they are seen
        # idle (the finalizer, or the reaper, which may hold the Device for one pass).
        assert number_freed(fd), f"{how}: fd {fd} still open"


def test_the_woken_reader_frees_the_fd_number(ifname: str) -> None:
    """With the blocked reader as the only other thread, the number is freed once it has woken."""
    open_tun(ifname).close()
    dev = open_tun(ifname, nonblocking=False)
    fd = dev.fileno()
    t, outcome, _started = blocked_reader(dev, "readinto")
    time.sleep(0.1)
    dev.close()
    t.join(5)
    assert isinstance(outcome[0], DeviceClosedError), outcome
    assert number_freed(fd), "the number outlived the last thread that could use it"
