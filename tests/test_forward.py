"""examples/forward.py joins two namespaces through two TUNs: TCP crosses byte-exact.

Topology: the forwarder (this machine's namespace) opens TUN a and TUN b,
then the test moves a into namespace A (198.18.X.1/24) and b into namespace B
(198.18.X.2/24): every packet between A and B crosses the Python forwarder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Dict, Iterator, List, Tuple

import pytest

from tuntest import ip, namespace, new_name

pytestmark = pytest.mark.device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORWARD = os.path.join(REPO, "examples", "forward.py")

SERVER = textwrap.dedent(
    """
    import hashlib, socket, sys, threading
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(8)
    print("listening", flush=True)
    def serve(conn):
        h = hashlib.sha256(); n = 0
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            h.update(data); n += len(data)
        conn.sendall(f"{n} {h.hexdigest()}".encode()); conn.close()
    threads = []
    for _ in range(int(sys.argv[3])):
        conn, _ = srv.accept()
        t = threading.Thread(target=serve, args=(conn,)); t.start(); threads.append(t)
    for t in threads:
        t.join()
    """
)

CLIENT = textwrap.dedent(
    """
    import hashlib, random, socket, sys
    seed, size = int(sys.argv[3]), int(sys.argv[4])
    data = random.Random(seed).randbytes(size) if hasattr(random.Random, "randbytes") else bytes(random.Random(seed).getrandbits(8) for _ in range(size))
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    s.sendall(data); s.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        chunk = s.recv(256)
        if not chunk:
            break
        answer += chunk
    print(answer.decode(), len(data), hashlib.sha256(data).hexdigest())
    """
)


@pytest.fixture
def namespaces() -> Iterator[Tuple[str, str]]:
    with namespace("A") as a, namespace("B") as b:
        yield a, b


def run_forwarder(args: List[str]) -> subprocess.Popen:  # type: ignore[type-arg]
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, FORWARD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stop(proc: "subprocess.Popen[str]") -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    return out


def parse_stats(out: str) -> List[Dict[str, int]]:
    stats = []
    for line in out.splitlines():
        if line.startswith("pump "):
            stats.append({k: int(v) for k, v in (f.split("=") for f in line.split()[2:])})
    return stats


@pytest.mark.parametrize("offload, queues, flows", [(False, 1, 1), (True, 1, 1), (True, 2, 16), (False, 2, 16)],
                         ids=["plain", "offload", "offload-2queues", "plain-2queues"])
def test_tcp_through_forwarder_is_byte_exact(namespaces: Tuple[str, str], subnet: str, offload: bool, queues: int, flows: int) -> None:
    ns_a, ns_b = namespaces
    dev_a, dev_b = new_name("a"), new_name("b")
    args = [dev_a, dev_b, "--queues", str(queues)] + (["--offload"] if offload else [])
    fwd = run_forwarder(args)
    server = None
    try:
        assert fwd.stdout is not None
        line = fwd.stdout.readline().split()
        assert line[:3] == ["ready", dev_a, dev_b], (line, fwd.stderr.read() if fwd.stderr else "")
        for dev, ns, host in ((dev_a, ns_a, 1), (dev_b, ns_b, 2)):
            ip("link", "set", "dev", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable, "-c", SERVER, f"{subnet}.2", "5001", str(flows)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        size = 4 << 20
        clients = [subprocess.Popen(["ip", "netns", "exec", ns_a, sys.executable, "-c", CLIENT, f"{subnet}.2", "5001", str(seed), str(size)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in range(flows)]
        for c in clients:
            out, err = c.communicate(timeout=120)
            assert c.returncode == 0, err
            got_n, got_hash, sent_n, sent_hash = out.split()
            assert (int(got_n), got_hash) == (int(sent_n), sent_hash) == (size, sent_hash)
        server.wait(30)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        out = stop(fwd)
    stats = parse_stats(out)
    assert len(stats) == 2 * queues
    # Only what the kernel sends while one side is still down (IPv6 router
    # solicitations during set-up) may be refused by the far device.
    assert sum(s["dropped"] for s in stats) <= 8
    total = sum(s["bytes"] for s in stats)
    assert total > flows * (4 << 20)
    if offload:
        # Super-packets crossed: lengths above the MTU, with GSO in their virtio-net headers.
        assert max(s["largest"] for s in stats) > 1500 + 10
        assert sum(s["gso"] for s in stats) > 0
    else:
        assert max(s["largest"] for s in stats) <= 1500
    if queues > 1:
        # Flows were spread over the queues: every pump carried packets.  (16
        # flows hashed onto 2 queues all land on one with probability 2**-15.)
        assert all(s["packets"] > 0 for s in stats), stats
