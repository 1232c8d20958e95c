"""fork(): a child may use or close an inherited Device; the parent never notices.

Each scenario runs in a fresh interpreter (``python -c``) that forks, so a
hang fails the test through the subprocess timeout instead of hanging the
run, and pytest's own threads are never forked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

# Shared by the scenarios: a TUN with IPv6 off (no router solicitations in
# the counts), an address, up; a UDP socket bound to it sends tagged packets.
PRELUDE = textwrap.dedent(
    """
    import os, signal, socket, sys, threading, time, traceback
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from tuntap_cffi import DeviceClosedError, PacketRing, open_tun
    from tuntest import ipv4_udp, parse_ipv4_udp
    name, net = sys.argv[3], sys.argv[4]
    dev = open_tun(name)
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
        f.write("1")
    dev.add_address(f"{net}.1/24")
    dev.up()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), name.encode())  # (PyPy lacks the name)

    def send(tag, n):
        for i in range(n):
            tx.sendto(tag + b"%03d" % i, (f"{net}.2", 9))

    def payloads(ring, n):
        return [parse_ipv4_udp(bytes(ring[i]))[4] for i in range(n)]

    def expect(ring, n, tag, count):
        assert n == count, (n, count)
        got = payloads(ring, n)
        want = [tag + b"%03d" % i for i in range(count)]
        assert got == want, (got[:3], want[:3])

    def fork(child):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(20)  # a hung child must not outlive the test
                child()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        return pid

    def reap(pid, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hung"
    """
)

# Item 3, first scenario: the parent made io_uring engines; the child reads
# and writes batches on the inherited device (with the inherited ring and a
# new one); then the parent's next read_batch must still get its packets.
CHILD_USES = PRELUDE + textwrap.dedent(
    """
    ring = dev.packet_ring(64)
    send(b"A", 20)
    expect(ring, dev.read_batch(ring, min_packets=20, timeout=5), b"A", 20)
    out = dev.packet_ring(16)
    for i in range(8):
        pkt = ipv4_udp(f"{net}.2", f"{net}.1", 9, 9999, b"W%03d" % i)
        out.slot(i)[: len(pkt)] = pkt
        out.set_length(i, len(pkt))
    out.count = 8
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mine.bind((f"{net}.1", 9999))
    mine.settimeout(5)
    assert dev.write_batch(out) == 8
    assert sorted(mine.recv(100) for _ in range(8)) == [b"W%03d" % i for i in range(8)]
    backend = dev.batch_backend

    def child():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((f"{net}.1", 9998))
        rx.settimeout(5)
        send(b"C", 20)
        expect(ring, dev.read_batch(ring, min_packets=20, timeout=5), b"C", 20)
        fresh = PacketRing(32, dev.max_packet_size)
        send(b"D", 10)
        expect(fresh, dev.read_batch(fresh, min_packets=10, timeout=5), b"D", 10)
        for i in range(8):
            pkt = ipv4_udp(f"{net}.2", f"{net}.1", 9, 9998, b"K%03d" % i)
            out.slot(i)[: len(pkt)] = pkt
            out.set_length(i, len(pkt))
        out.count = 8
        assert dev.write_batch(out) == 8
        assert sorted(rx.recv(100) for _ in range(8)) == [b"K%03d" % i for i in range(8)]
        assert dev.batch_backend == backend
        dev.close()  # the child's fd only

    pid = fork(child)
    code = reap(pid)
    # What the child wrote into the ring's slots is its own (copy-on-write).
    expect(ring, 20, b"A", 20)
    send(b"P", 30)
    expect(ring, dev.read_batch(ring, min_packets=30, timeout=5), b"P", 30)
    assert dev.write_batch(out) == 8  # the parent's slots still hold its 'W' packets
    assert sorted(mine.recv(100) for _ in range(8)) == [b"W%03d" % i for i in range(8)]
    assert os.path.exists(f"/sys/class/net/{name}"), "the child's close() took the interface away"
    print(backend, code)
    dev.close()
    """
)

# Item 3, second scenario: a parent thread is blocked in a read; a child
# closes its inherited Device in a with block.  The parent's reader must
# stay asleep (no CPU: it used to spin on the shared wakeup eventfd) and
# still get the next packet.
CHILD_CLOSES = PRELUDE + textwrap.dedent(
    """
    mode = sys.argv[5]
    got = []
    tids = []

    def reader():
        tids.append(threading.get_native_id())
        try:
            if mode == "readinto":
                buf = bytearray(dev.max_packet_size)
                n = dev.readinto(buf)
                got.append(parse_ipv4_udp(bytes(buf[:n]))[4])
            else:
                ring = dev.packet_ring(8)
                n = dev.read_batch(ring)
                got.extend(payloads(ring, n))
        except BaseException as exc:
            got.append(exc)

    def cpu_ticks(tid):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    while not tids:
        time.sleep(0.01)
    time.sleep(0.2)  # the reader is in its wait now

    def child():
        with dev:
            pass

    pid = fork(child)
    code = reap(pid)
    before = cpu_ticks(tids[0])
    time.sleep(0.5)
    spent = cpu_ticks(tids[0]) - before
    assert not got, f"the parent's blocked reader woke up: {got}"
    assert spent <= 5, f"the parent's blocked reader used {spent} ticks of CPU in 0.5 s"
    send(b"N", 1)
    t.join(5)
    assert got == [b"N000"], got
    print(code, spent)
    dev.close()
    """
)


def run(script: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([sys.executable, "-c", script, REPO, TESTS, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip()


def test_child_batches_on_an_inherited_device_leave_the_parents_batches_working(ifname: str, subnet: str) -> None:
    """The child reads and writes batches on the inherited device; the parent's next read_batch still works."""
    backend, code = run(CHILD_USES, ifname, subnet).split()
    assert code == "0", "the child's batches on the inherited device failed (see stderr)"
    if backend != "io_uring":
        pytest.skip("io_uring is not usable here: only the loop backend was exercised")


@pytest.mark.parametrize("mode", ["readinto", "read_batch"])
def test_child_closing_an_inherited_device_leaves_the_parents_reader_asleep(ifname: str, subnet: str, mode: str) -> None:
    """A child closing its inherited Device neither wakes nor spins the parent's blocked reader."""
    code, _spent = run(CHILD_CLOSES, ifname, subnet, mode).split()
    assert code == "0", "the child's close failed"
