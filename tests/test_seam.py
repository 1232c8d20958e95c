"""The non-blocking seam that event-loop layers use (aio.Pollable), on a real TUN.

One attempt per call whatever ``blocking`` says (asyncio's sock_recv_into
shape): a layer tries the call, and only when nothing is queued waits for
the fd itself.  aio.py needs nothing else of a Device, so it imports nothing
of device.py (no import circle).
"""

from __future__ import annotations

import ast
import select
import socket
from pathlib import Path

import pytest

from tuntest import bind_to_device, ipv4_udp, parse_ipv4_udp
from tuntap_cffi import DeviceClosedError, aio, open_tun


@pytest.mark.device
def test_nowait_calls_never_wait_on_a_blocking_device(ifname: str, subnet: str) -> None:
    """Nothing queued: -1 / None at once (a blocking readinto would wait); queued: the packet; closed: ValueError."""
    with open_tun(ifname) as dev:  # blocking
        assert dev.blocking
        dev.disable_ipv6()  # no router solicitations in the queue
        dev.add_address(f"{subnet}.1/24")
        buf = bytearray(dev.max_packet_size)
        assert dev.readinto_nowait(buf) == -1
        assert dev.read_nowait() is None
        dev.up()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            bind_to_device(s, ifname)
            s.bind((f"{subnet}.1", 0))
            s.sendto(b"seam-read", (f"{subnet}.2", 9))
            s.sendto(b"seam-readinto", (f"{subnet}.2", 9))
            assert select.select([dev.fileno()], [], [], 5)[0], "the datagram never reached the TUN"
            packet = dev.read_nowait()
            assert packet is not None and parse_ipv4_udp(packet)[4] == b"seam-read"
            assert select.select([dev.fileno()], [], [], 5)[0], "the second datagram never reached the TUN"
            n = dev.readinto_nowait(buf)
            assert n > 0 and parse_ipv4_udp(bytes(buf[:n]))[4] == b"seam-readinto"
            assert dev.readinto_nowait(buf) == -1
            # A packet into the kernel's stack, to the socket bound on .1.
            port = s.getsockname()[1]
            out = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 9, port, b"seam-write")
            assert dev.write_nowait(out) == len(out)
            s.settimeout(5)
            assert s.recv(100) == b"seam-write"
    for call in (lambda: dev.readinto_nowait(buf), dev.read_nowait, lambda: dev.write_nowait(out)):
        with pytest.raises(DeviceClosedError):
            call()


def test_aio_imports_nothing_of_device() -> None:
    """aio.py types the device by its own Protocols: no import of tuntap_cffi.device, not even for typing."""
    tree = ast.parse(Path(aio.__file__).read_text())
    modules = [
        ("." * node.level) + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [m for m in modules if m in (".device", "tuntap_cffi.device")], modules
