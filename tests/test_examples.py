"""The examples run for real: examples/dump.py prints the packets sent to its TUN."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dump_example_prints_udp_packet(ifname: str, subnet: str) -> None:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "examples", "dump.py"), ifname, "--address", f"{subnet}.1/24"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    out = ""
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"listening on {ifname}"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while "Protocol: 17 (UDP)" not in out and time.monotonic() < deadline:
                s.sendto(b"hello dump", (f"{subnet}.2", 4000))
                if select.select([proc.stdout], [], [], 0.2)[0]:
                    out += proc.stdout.readline()
                    while select.select([proc.stdout], [], [], 0.05)[0]:
                        line = proc.stdout.readline()
                        if not line:
                            break
                        out += line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "IP Version: 4" in out and "Protocol: 17 (UDP)" in out
    assert f"Source IP: {subnet}.1" in out and f"Destination IP: {subnet}.2" in out
    assert b"hello dump".hex() in out
    assert proc.stderr is not None and "packets" in proc.stderr.read()


def test_async_echo_serves_concurrent_flows(ifname: str, subnet: str) -> None:
    import threading

    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "examples", "async_echo.py"), ifname, "--address", f"{subnet}.1/24"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"listening on {ifname}"
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
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
