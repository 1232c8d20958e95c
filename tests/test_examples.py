"""The examples run for real: examples/dump.py prints the packets sent to its TUN."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from tuntest import bind_to_device, ipv6_of

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextmanager
def example(script: str, ifname: str, *args: str) -> "Iterator[subprocess.Popen[str]]":
    """Run examples/SCRIPT on *ifname*; wait for its "listening" line; at the end Ctrl-C it (exit 0), or kill it."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "examples", script), ifname, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"listening on {ifname}"
        yield proc
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_ready(proc: "subprocess.Popen[str]", wait: float) -> str:
    """The lines *proc* printed, waiting up to *wait* s for the first."""
    out = ""
    assert proc.stdout is not None
    while select.select([proc.stdout], [], [], wait)[0]:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
        wait = 0.05
    return out


def test_dump_example_prints_udp_packet(ifname: str, subnet: str) -> None:
    out = ""
    with example("dump.py", ifname, "--address", f"{subnet}.1/24") as proc:
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while "Protocol: 17 (UDP)" not in out and time.monotonic() < deadline:
                s.sendto(b"hello dump", (f"{subnet}.2", 4000))
                out += read_ready(proc, 0.2)
    assert "IP Version: 4" in out and "Protocol: 17 (UDP)" in out
    assert f"Source IP: {subnet}.1" in out and f"Destination IP: {subnet}.2" in out
    assert b"hello dump".hex() in out
    assert proc.stderr is not None and "packets" in proc.stderr.read()


def test_async_echo_serves_concurrent_flows(ifname: str, subnet: str) -> None:
    import threading

    with example("async_echo.py", ifname, "--address", f"{subnet}.1/24"):
        results: dict = {}

        def client(i: int) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f"{subnet}.1", 0))
                s.settimeout(5)
                got = []
                for j in range(20):
                    msg = f"flow {i} msg {j}".encode()
                    s.sendto(msg, (f"{subnet}.{10 + i}", 9999))
                    data, addr = s.recvfrom(100)
                    got.append((data, addr))
                results[i] = got

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for i in range(8):
            assert results[i] == [(f"flow {i} msg {j}".encode(), (f"{subnet}.{10 + i}", 9999)) for j in range(20)]


def test_dump_example_prints_total_length_for_ipv4_and_ipv6(ifname: str, subnet: str) -> None:
    """`Length:` is the whole packet's length for both versions (it once was the payload length for IPv6)."""
    payload = b"twelve bytes"
    out = ""
    with example("dump.py", ifname, "--address", f"{ipv6_of(subnet, 1)}/64") as proc:
        subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", ifname], check=True)
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            for s in (s4, s6):
                bind_to_device(s, ifname)
            while out.count(payload.hex()) < 2 and time.monotonic() < deadline:
                s4.sendto(payload, (f"{subnet}.2", 4000))
                try:
                    s6.sendto(payload, (ipv6_of(subnet, 2), 4000))
                except OSError:  # the address may still be tentative for a moment
                    pass
                out += read_ready(proc, 0.2)
    records = [r for r in out.split("-- Packet Received --") if payload.hex() in r]
    versions = {r.split("IP Version: ")[1].split()[0]: r for r in records}
    assert set(versions) == {"4", "6"}, out
    assert f"Length: {20 + 8 + len(payload)}\n" in versions["4"]
    assert f"Length: {40 + 8 + len(payload)}\n" in versions["6"]
