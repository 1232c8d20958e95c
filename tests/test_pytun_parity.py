"""pytun_compat against the real python-pytun: copying and signal handlers' exceptions.

Each scenario is one program written for pytun; it runs unchanged but for the
import line on the real pytun (the C extension, see real_pytun.py) and on
pytun_compat, and prints what each step did: the exception's type and args,
and the effect on the device (is the interface still there, does the device
still carry packets).  The two outputs must be equal, and equal to what is
written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, List

import pytest

from tuntest import ipv4_udp, new_name
from real_pytun import REPO, require_real_pytun

pytestmark = pytest.mark.device

COMPAT_IMPORT = "from tuntap_cffi import pytun_compat as pytun"

#: argv: interface name, /24 prefix "198.18.X", hex of a packet to write.
#: The TUN is up at X.1 peer X.2 without IPv6 (nothing arrives on its own).
PREAMBLE = '''\
import copy
import errno
import faulthandler
import gc
import json
import os
import pickle
import select
import signal
import socket
import sys
import time

from tuntap_cffi import pytun_compat as pytun

faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where it is, on stderr
name, net, packet = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
out = []
tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
    f.write("1")
tun.addr, tun.dstaddr, tun.netmask = net + ".1", net + ".2", "255.255.255.0"
tun.up()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind((net + ".1", 9))  # takes the written packets: no ICMP error comes back to read


def outcome(label, action):
    try:
        value = action()
    except BaseException as e:  # KeyboardInterrupt too: its type is the point
        kind = "Error" if isinstance(e, pytun.Error) else type(e).__name__  # (pytun_compat's are subclasses)
        out.append([label, kind, [a if isinstance(a, (int, str)) else repr(a) for a in e.args]])
    else:
        out.append([label, "ok", value if isinstance(value, (int, str, list)) else type(value).__name__])


def works():
    """The device is open, its interface exists, and it carries a packet both ways."""
    sock.sendto(b"w" * 20, (net + ".2", 9))
    if not select.select([tun], [], [], 5)[0]:
        return "no packet arrived"
    return [tun.fileno() >= 0, os.path.exists("/sys/class/net/" + name), len(tun.read(1500)), tun.write(packet)]
'''

COPY_SCENARIO = PREAMBLE + '''
outcome("copy", lambda: copy.copy(tun))
gc.collect()
outcome("works after copy", works)
outcome("deepcopy", lambda: copy.deepcopy(tun))
gc.collect()
outcome("works after deepcopy", works)
for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    outcome(f"pickle {protocol}", lambda: pickle.dumps(tun, protocol))
gc.collect()
outcome("works after pickle", works)
print(json.dumps(out))
'''

COPY_OUTCOMES: List[List[Any]] = [
    ["copy", "TypeError", ["cannot pickle 'pytun.TunTapDevice' object"]],
    ["works after copy", "ok", [True, True, 48, 48]],
    ["deepcopy", "TypeError", ["cannot pickle 'pytun.TunTapDevice' object"]],
    ["works after deepcopy", "ok", [True, True, 48, 48]],
    # Protocols 0 and 1 go through copyreg._reduce_ex, which names the class without its module.
    *[[f"pickle {p}", "TypeError", ["cannot pickle 'TunTapDevice' object"]] for p in (0, 1)],
    *[[f"pickle {p}", "TypeError", ["cannot pickle 'pytun.TunTapDevice' object"]] for p in range(2, 6)],
    ["works after pickle", "ok", [True, True, 48, 48]],
]

#: A signal handler raises while read() blocks (nothing arrives: the
#: interface has no IPv6 and nobody sends), then while write()s run
#: back to back under a 1 ms interval timer (up to 40 exceptions that
#: write() let out, within 5 s; at least one).
SIGNAL_SCENARIO = PREAMBLE + '''

def raising(exc):
    def handler(signum, frame):
        raise exc
    return handler


def read_interrupted(exc):
    signal.signal(signal.SIGALRM, raising(exc))
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        return tun.read(1500)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


outcome("read, TimeoutError", lambda: read_interrupted(TimeoutError("alarm")))
outcome("read, OSError subclass", lambda: read_interrupted(ConnectionResetError(errno.ECONNRESET, "from handler")))
outcome("read, pytun.Error", lambda: read_interrupted(pytun.Error(errno.EPROTO, "handler's own")))
outcome("read, KeyboardInterrupt", lambda: read_interrupted(KeyboardInterrupt()))
signal.signal(signal.SIGALRM, signal.SIG_IGN)
outcome("works after read", works)


def writes_interrupted(samples, seconds=5):
    """The distinct (type, args) of the first *samples* exceptions that write() lets out (within *seconds*)."""
    seen = []
    on = [True]
    deadline = time.monotonic() + seconds  # (PyPy's JIT may check for signals mostly outside write())

    def tick(signum, frame):
        if on[0]:
            raise TimeoutError("tick")

    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    while on[0]:
        try:  # a tick may land anywhere: only those out of write() are samples
            while len(seen) < samples and time.monotonic() < deadline:
                try:
                    for _ in range(100000):
                        try:
                            tun.write(packet)
                        except BaseException as e:
                            seen.append((type(e).__name__, e.args))
                            break
                except TimeoutError:
                    pass
            on[0] = False
        except TimeoutError:
            pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    return [[t, list(a)] for t, a in sorted(set(seen), key=repr)]


outcome("writes, TimeoutError", lambda: writes_interrupted(40))
outcome("works after writes", works)
print(json.dumps(out))
'''

SIGNAL_OUTCOMES: List[List[Any]] = [
    ["read, TimeoutError", "TimeoutError", ["alarm"]],
    ["read, OSError subclass", "ConnectionResetError", [104, "from handler"]],
    ["read, pytun.Error", "Error", [71, "handler's own"]],
    ["read, KeyboardInterrupt", "KeyboardInterrupt", []],
    ["works after read", "ok", [True, True, 48, 48]],
    ["writes, TimeoutError", "ok", [["TimeoutError", ["tick"]]]],
    ["works after writes", "ok", [True, True, 48, 48]],
]


#: A blocking read loop on a TUN (argv[4]: IFF_NO_PI or not) that asks for
#: the fd only half-way: pytun_compat reads ahead until then (see
#: TunTapDevice); what the program sees must not change.  Packets carry
#: their number; the IPv4 ID and checksum and the UDP source port and
#: checksum (which differ per run) are zeroed before comparing.
READ_SCENARIO = PREAMBLE.replace(
    "tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)",
    "tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | (pytun.IFF_NO_PI if sys.argv[4] == 'no-pi' else 0))",
) + """
import threading

pi = 0 if sys.argv[4] == "no-pi" else 4


def send(first, count):
    for i in range(first, first + count):
        sock.sendto(b"%04d" % i + b"p" * (i * 37 % 1300), (net + ".2", 9))


def shown(packet):
    data = bytearray(packet)
    for i in (4, 5, 10, 11, 20, 21, 26, 27):  # IPv4 ID and checksum, UDP source port and checksum
        if pi + i < len(data):
            data[pi + i] = 0
    return data.hex() if len(data) <= 40 else [len(data), bytes(data[pi + 28:pi + 32]).decode()]


def read(size):
    return lambda: shown(tun.read(size))


send(0, 40)
sizes = [1500, 1500, 36, 4, 2, 0, -1, 2**32 + 40, 1500, 3, 65535, 1500]
for n, size in enumerate(sizes):
    outcome(f"read {n} ({size})", read(size))
outcome("fileno", lambda: tun.fileno() >= 0)
outcome("still blocking", lambda: os.get_blocking(tun.fileno()))
consumed = len(sizes) - 1  # all but read(0)
for n in range(consumed, 40 - 1):  # reads after fileno(): the rest but one, in order
    outcome(f"read {n}", read(1500))
os.set_blocking(tun.fileno(), False)
outcome("the last", read(1500))
outcome("then EAGAIN", read(1500))
os.set_blocking(tun.fileno(), True)

# A fresh device that never hands its fd out: a read waits for a packet sent later.
tun.close()
outcome("read closed", read(1500))
tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | (pytun.IFF_NO_PI if sys.argv[4] == "no-pi" else 0))
with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
    f.write("1")
tun.addr, tun.dstaddr, tun.netmask = net + ".1", net + ".2", "255.255.255.0"
tun.up()
got = []
reader = threading.Thread(target=lambda: got.append(shown(tun.read(1500))))
reader.start()
time.sleep(0.3)
outcome("reader still waiting", lambda: reader.is_alive())
send(100, 1)
reader.join(10)
outcome("reader got the late packet", lambda: got)
send(200, 5)
outcome("read before close", read(1500))
tun.close()  # four packets still queued (pytun_compat: read ahead already)
outcome("read after close", read(1500))
outcome("read 0 after close", lambda: tun.read(0))
outcome("fileno after close", tun.fileno)
print(json.dumps(out))
"""


def run_scenario(implementation: str, program: str, subnet: str, *args: str) -> List[List[Any]]:
    """Run *program* on "pytun_compat" (this interpreter) or the real "pytun"; return its outcomes."""
    python = sys.executable
    if implementation == "pytun":
        python, program = require_real_pytun(), program.replace(COMPAT_IMPORT, "import pytun")
    name = new_name("p")
    # A UDP datagram to the TUN's own address from its peer: the kernel takes it (48 bytes).
    packet = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, 9, b"x" * 20)
    try:
        proc = subprocess.run([python, "-c", program, name, subnet, packet.hex(), *args], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    finally:
        subprocess.run(["ip", "link", "del", "dev", name], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    outcomes: List[List[Any]] = json.loads(proc.stdout)
    return outcomes


@pytest.mark.parametrize("implementation", ["pytun", "pytun_compat"])
def test_copy_and_pickle_refuse_like_pytun(implementation: str, subnet: str) -> None:
    """copy, deepcopy and every pickle protocol raise pytun's TypeError; the device keeps working."""
    assert run_scenario(implementation, COPY_SCENARIO, subnet) == COPY_OUTCOMES


@pytest.mark.parametrize("implementation", ["pytun", "pytun_compat"])
def test_signal_handler_exceptions_pass_through_like_pytun(implementation: str, subnet: str) -> None:
    """A handler's exception during read()/write() reaches the caller as raised, not as pytun.Error."""
    assert run_scenario(implementation, SIGNAL_SCENARIO, subnet) == SIGNAL_OUTCOMES


@pytest.mark.parametrize("pi", ["pi", "no-pi"])
def test_blocking_reads_see_what_pytun_shows(subnet: str, pi: str) -> None:
    """Order, truncation, read(0), headers that do not fit, fileno() half-way, EAGAIN, a late packet, close()."""
    ours = run_scenario("pytun_compat", READ_SCENARIO, subnet, pi)
    theirs = run_scenario("pytun", READ_SCENARIO, subnet, pi)
    assert [row[0] for row in ours] == [row[0] for row in theirs]
    for got, want in zip(ours, theirs):
        assert got == want
    # What the scenario shows (so that its equality means something).
    outcome = {row[0]: row[1:] for row in theirs}
    numbers = [row[2][1] for row in theirs if row[0].startswith("read ") and row[1] == "ok" and isinstance(row[2], list)]
    assert numbers == sorted(numbers) and len(numbers) >= 30, numbers
    header = 4 if pi == "pi" else 0
    assert outcome["read 4 (2)"][0] == ("Error" if header else "ok")  # 2 < tun_pi: EINVAL, packet dropped
    assert outcome["read 5 (0)"] == ["ok", ""]
    assert outcome["still blocking"] == ["ok", True]
    assert outcome["then EAGAIN"] == ["Error", [11, "Resource temporarily unavailable"]]
    assert outcome["reader still waiting"] == ["ok", True]
    assert outcome["reader got the late packet"][1][0][1] == "0100"
    assert outcome["read after close"] == ["Error", [9, "Bad file descriptor"]]
    assert outcome["fileno after close"] == ["ok", -1]
