"""The rtnetlink client: malformed answers, answers from others than the kernel, answers that never come.

The parser cases are unit tests with crafted bytes (the kernel does not send
such messages on demand); the sender check and the timeout use real sockets.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuntap_cffi import TunTapError
from tuntap_cffi._netlink import RtNetlink, fixed, parse_answers
from tuntap_cffi._syscalls import lib

SEQ = 7
NAME = "tt-netlink"


def message(kind: int, body: bytes, seq: int = SEQ, flags: int = 0, length: int = -1) -> bytes:
    """One netlink message: struct nlmsghdr (length given or right) + body, padded to 4 bytes."""
    size = 16 + len(body)
    raw = struct.pack("=IHHII", size if length < 0 else length, kind, flags, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def parse(data: bytes, dump: bool = False) -> Tuple[bool, List[Tuple[int, memoryview]]]:
    out: List[Tuple[int, memoryview]] = []
    done = parse_answers(memoryview(data), SEQ, dump, (), out, "cannot test", NAME)
    return done, out


@pytest.mark.parametrize("data, detail", [
    (message(lib.NLMSG_ERROR, b"\x00\x00"), "NLMSG_ERROR of 2 bytes"),  # escaped as struct.error
    (message(lib.NLMSG_ERROR, b""), "NLMSG_ERROR of 0 bytes"),
    (message(lib.NLMSG_ERROR, struct.pack("=i", -2**31)), "error -2147483648"),  # escaped as OverflowError
    (message(lib.NLMSG_ERROR, struct.pack("=i", 5)), "error 5"),  # positive: no errno
    (message(lib.NLMSG_ERROR, struct.pack("=i", -4096)), "error -4096"),  # beyond MAX_ERRNO
    (message(lib.NLMSG_DONE, b"", length=100), "100 bytes at offset 0"),
    (message(lib.NLMSG_DONE, b"", length=3), "3 bytes at offset 0"),
])
def test_malformed_answers_raise_a_tuntap_error(data: bytes, detail: str) -> None:
    with pytest.raises(TunTapError) as info:
        parse(data)
    assert info.value.errno == errno.EPROTO and info.value.filename == NAME, repr(info.value)
    assert "malformed netlink answer" in str(info.value) and detail in str(info.value), str(info.value)


def test_well_formed_answers() -> None:
    ack = message(lib.NLMSG_ERROR, struct.pack("=i", 0) + bytes(16))
    assert parse(ack) == (True, [])
    assert parse(message(lib.NLMSG_ERROR, b"\0" * 4, seq=SEQ + 1)) == (False, [])  # not ours: skipped
    done, out = parse(message(lib.RTM_NEWADDR, b"abcd", flags=2) + message(lib.NLMSG_DONE, b"\0" * 4), dump=True)
    assert done and [(k, bytes(b)) for k, b in out] == [(lib.RTM_NEWADDR, b"abcd")]
    with pytest.raises(PermissionError) as info:
        parse(message(lib.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16)))
    assert isinstance(info.value, TunTapError) and info.value.filename == NAME


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([lib.NLMSG_ERROR, lib.NLMSG_DONE, lib.RTM_NEWADDR, 1]),
                          st.binary(max_size=40), st.sampled_from([SEQ, SEQ + 1]), st.integers(0, 0x3FF),
                          st.one_of(st.just(-1), st.integers(0, 80))), max_size=4),
       st.binary(max_size=20), st.booleans())
def test_any_bytes_give_an_answer_or_a_tuntap_error(parts: List[Tuple[int, bytes, int, int, int]], tail: bytes, dump: bool) -> None:
    data = b"".join(message(k, b, s, f, n) for k, b, s, f, n in parts) + tail
    try:
        done, out = parse(data, dump)
    except TunTapError:
        return
    assert isinstance(done, bool) and all(off >= 0 for off in (len(b) for _k, b in out))


def route_socket() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    s.bind((0, 0))
    return s


def test_forged_answer_from_another_socket_is_dropped() -> None:
    """A process with CAP_NET_ADMIN can unicast to our port id: its 'answer' with our next sequence number
    (an EPERM error) must not be taken for the kernel's (the real dump answers)."""
    with route_socket() as ours, route_socket() as forger:
        nl = RtNetlink(ours.fileno())
        forged = message(lib.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16), seq=nl._seq + 1)
        forger.sendto(forged, (ours.getsockname()[0], 0))  # queued before our request goes out
        answers = nl.request(lib.RTM_GETADDR, 0, fixed("struct ifaddrmsg", ifa_family=socket.AF_INET),
                             what="cannot list addresses", dump=True)
    assert any(kind == lib.RTM_NEWADDR for kind, _body in answers), answers  # lo's 127.0.0.1 at least


def test_unanswered_request_times_out() -> None:
    """A socket that never answers (the far end of a socketpair) raises ETIMEDOUT naming the device."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        nl = RtNetlink(a.fileno())
        nl.timeout = 0.3
        result: List[object] = []

        def ask() -> None:
            try:
                nl.request(lib.RTM_GETADDR, 0, fixed("struct ifaddrmsg", ifa_family=socket.AF_INET),
                           what="cannot list addresses", name=NAME, dump=True)
            except Exception as exc:  # noqa: BLE001 - reported below
                result.append(exc)

        start = time.monotonic()
        t = threading.Thread(target=ask, daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "the request is still waiting for an answer after 10 s"
        assert len(b.recv(100)) > 0  # the request did go out
    exc = result[0]
    assert isinstance(exc, TunTapError) and exc.errno == errno.ETIMEDOUT and exc.filename == NAME, repr(exc)
    assert "no answer from the kernel within 0.3 s" in str(exc) and time.monotonic() - start < 5
