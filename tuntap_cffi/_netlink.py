"""rtnetlink requests on a NETLINK_ROUTE socket: build, send, read the answer.

Facts:
- A request is ``struct nlmsghdr`` + a fixed family header (``ifaddrmsg``,
  ``rtmsg``) + attributes (``struct rtattr`` + data, each padded to 4
  bytes), all in host byte order except the addresses themselves.
- With ``NLM_F_ACK`` the kernel answers every request with an
  ``NLMSG_ERROR`` whose ``error`` is 0 (done) or ``-errno``; with
  ``NETLINK_EXT_ACK`` set (4.12) it adds a text saying what was wrong, which
  we put into the exception message.
- A dump (``NLM_F_DUMP``) answers with many messages, flagged
  ``NLM_F_MULTI``, over several reads, ended by ``NLMSG_DONE``.
- An unbound, unconnected netlink socket sends to the kernel (port 0) with a
  plain ``send``; the kernel binds it to a port id on first use.
- Any process with CAP_NET_ADMIN can send to our port id too: an answer
  counts only if it comes from the kernel (sender port id 0, seen through
  ``recvfrom``) and carries our sequence number.
- A kernel answer is trusted to be well formed, but not blindly: a short
  or malformed one raises a TunTapError (EPROTO), never a struct.error, and
  a request left unanswered for REPLY_TIMEOUT seconds raises ETIMEDOUT
  instead of blocking forever.

The fixed headers are filled through the cffi declarations in build_ffi.py,
so their layout is the one the layout tests compare with the kernel's.
"""

from __future__ import annotations

import errno
import select
import struct
import threading
import time
from typing import Iterator, List, Optional, Sequence, Tuple

from ._syscalls import check, ffi, lib
from .errors import error_from_errno

__all__ = ["RtNetlink", "attr", "fixed", "parse_attrs", "parse_answers", "NLMSG_HDRLEN", "REPLY_TIMEOUT"]

#: Seconds a request may wait without any answer from the kernel (each
#: message of a dump restarts it).  The kernel answers at once: only a
#: broken socket or a lost answer ever reaches it.
REPLY_TIMEOUT = 5.0

NLMSG_HDRLEN = ffi.sizeof("struct nlmsghdr")
_RTA_HDR = struct.Struct("=HH")  # struct rtattr: rta_len, rta_type
_NLMSG_HDR = struct.Struct("=IHHII")  # struct nlmsghdr, for parsing answers
_RECV_SIZE = 65536
_NLM_F_CAPPED = 0x100  # in an NLMSG_ERROR: the request was not echoed back
_ERROR = struct.Struct("=i")  # struct nlmsgerr's error: 0 or -errno
_MAX_ERRNO = 4095  # the kernel's errnos are 1..4095 (MAX_ERRNO)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One ``struct rtattr`` with *data*, padded to a multiple of 4 bytes."""
    length = _RTA_HDR.size + len(data)
    return _RTA_HDR.pack(length, kind) + data + b"\0" * (_align4(length) - length)


def parse_attrs(data: memoryview) -> Iterator[Tuple[int, memoryview]]:
    """Yield (type, payload) of each ``struct rtattr`` in *data*; lengths are checked."""
    offset, end = 0, len(data)
    while offset + _RTA_HDR.size <= end:
        length, kind = _RTA_HDR.unpack_from(data, offset)
        if length < _RTA_HDR.size or offset + length > end:
            return  # malformed: stop rather than read past the message
        yield kind & 0x3FFF, data[offset + _RTA_HDR.size : offset + length]  # strip NLA_F_* bits
        offset += _align4(length)


def fixed(ctype: str, **fields: int) -> bytes:
    """The bytes of a fixed header such as ``struct ifaddrmsg`` with *fields* set."""
    p = ffi.new(f"{ctype} *")
    for name, value in fields.items():
        setattr(p, name, value)
    return bytes(ffi.buffer(p))


class RtNetlink:
    """Requests over one NETLINK_ROUTE socket fd (owned by the caller)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._seq = 0
        self._lock = threading.Lock()
        self._buf = bytearray(_RECV_SIZE)
        self._ptr = ffi.from_buffer(self._buf)
        self.timeout = REPLY_TIMEOUT  # (tests shorten it)
        self._pollfd = ffi.new("struct pollfd *")
        self._pollfd.fd, self._pollfd.events = fd, select.POLLIN
        self._sender_nl = ffi.new("struct sockaddr_nl *")
        self._sender = ffi.cast("struct sockaddr *", self._sender_nl)
        self._addrlen = ffi.new("socklen_t *")
        one = ffi.new("int *", 1)
        # Best effort: kernels before 4.12 answer ENOPROTOOPT; messages are then plainer.
        lib.setsockopt(fd, lib.SOL_NETLINK, lib.NETLINK_EXT_ACK, one, ffi.sizeof("int"))

    def request(
        self,
        msg_type: int,
        flags: int,
        body: bytes,
        *,
        what: str,
        name: Optional[str] = None,
        ignore: Sequence[int] = (),
        dump: bool = False,
    ) -> List[Tuple[int, memoryview]]:
        """Send one request; return the (type, body) of every answer message.

        Adds ``NLM_F_REQUEST | NLM_F_ACK`` (and ``NLM_F_DUMP`` if *dump*: the
        flag bits of a dump are reused by NEW requests, NLM_F_REPLACE is
        NLM_F_ROOT, so the caller says which it is).  An error whose errno is
        in *ignore* is treated as success (e.g. EEXIST when adding what is
        there).  Any other error raises the mapped ``TunTapError``.
        """
        if dump:
            flags |= lib.NLM_F_DUMP
        with self._lock:
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
            header = fixed(
                "struct nlmsghdr",
                nlmsg_len=NLMSG_HDRLEN + len(body),
                nlmsg_type=msg_type,
                nlmsg_flags=flags | lib.NLM_F_REQUEST | lib.NLM_F_ACK,
                nlmsg_seq=seq,
            )
            message = header + body
            check(lib.send, self._fd, message, len(message), 0, op="netlink", name=name, what=what)
            return self._answers(seq, dump, what, name, ignore)

    def _answers(self, seq: int, dump: bool, what: str, name: Optional[str], ignore: Sequence[int]) -> List[Tuple[int, memoryview]]:
        out: List[Tuple[int, memoryview]] = []
        while True:
            n = self._receive(what, name)
            if n < 0:
                continue  # not from the kernel: dropped
            data = memoryview(bytes(self._buf[:n]))  # answers outlive the next read
            if parse_answers(data, seq, dump, ignore, out, what, name):
                return out

    def _receive(self, what: str, name: Optional[str]) -> int:
        """One message from the kernel into self._buf: its length, or -1 for one from anyone else (dropped).

        Waits at most REPLY_TIMEOUT seconds (poll), then raises ETIMEDOUT.
        """
        deadline = time.monotonic() + self.timeout
        pfd = self._pollfd
        while True:
            left = deadline - time.monotonic()
            ready = lib.poll(pfd, 1, int(left * 1000) + 1) if left > 0 else 0
            if ready > 0:
                break
            if ready == 0:
                raise error_from_errno(
                    errno.ETIMEDOUT, "netlink", name,
                    f"{what}: no answer from the kernel within {self.timeout:g} s (netlink socket broken? try again)",
                )
            if ffi.errno != errno.EINTR:
                raise error_from_errno(ffi.errno, "netlink", name, what)
        self._addrlen[0] = ffi.sizeof("struct sockaddr_nl")
        n = check(lib.recvfrom, self._fd, self._ptr, len(self._buf), 0, self._sender, self._addrlen, op="netlink", name=name, what=what)
        return n if self._sender_nl.nl_pid == 0 else -1

    @staticmethod
    def _error(err: int, body: memoryview, flags: int, what: str, name: Optional[str]) -> OSError:
        detail = ""
        if flags & lib.NLM_F_ACK_TLVS:
            # struct nlmsgerr, then the echoed request unless capped, then TLVs.
            offset = ffi.sizeof("struct nlmsgerr")
            if not flags & _NLM_F_CAPPED and len(body) >= offset:
                offset = 4 + _align4(struct.unpack_from("=I", body, 4)[0])
            for kind, value in parse_attrs(body[offset:]):
                if kind == lib.NLMSGERR_ATTR_MSG:
                    detail = bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")
        if detail:
            what = f"{what} (kernel: {detail})"
        return error_from_errno(err, "netlink", name, what)



def parse_answers(
    data: memoryview, seq: int, dump: bool, ignore: Sequence[int], out: List[Tuple[int, memoryview]], what: str, name: Optional[str]
) -> bool:
    """Append the (type, body) of *data*'s messages answering request *seq* to *out*; True once the answer is complete.

    Messages of other sequence numbers (late answers to abandoned requests)
    are skipped.  Raises the mapped TunTapError for an error answer, and
    one with EPROTO for a malformed message (too short, a length past the
    data, an error field that is no errno).
    """
    n = len(data)
    offset = 0
    while offset + NLMSG_HDRLEN <= n:
        length, kind, mflags, mseq, _pid = _NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDRLEN or offset + length > n:
            raise _malformed(what, name, f"a message of {length} bytes at offset {offset} of {n}")
        body = data[offset + NLMSG_HDRLEN : offset + length]
        offset += _align4(length)
        if mseq != seq:
            continue  # a late answer to an earlier, abandoned request
        if kind == lib.NLMSG_ERROR:
            if len(body) < _ERROR.size:
                raise _malformed(what, name, f"an NLMSG_ERROR of {len(body)} bytes")
            err = -_ERROR.unpack_from(body)[0]
            if not 0 <= err <= _MAX_ERRNO:
                raise _malformed(what, name, f"an NLMSG_ERROR with error {-err}")
            if err == 0 or err in ignore:
                if not dump:
                    return True
                continue
            raise RtNetlink._error(err, body, mflags, what, name)
        if kind == lib.NLMSG_DONE:
            return True
        out.append((kind, body))
    return False


def _malformed(what: str, name: Optional[str], detail: str) -> OSError:
    return error_from_errno(errno.EPROTO, "netlink", name, f"{what}: malformed netlink answer from the kernel ({detail})")
