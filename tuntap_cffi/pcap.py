"""Write packets in the classic libpcap capture format, which tcpdump, tshark and Wireshark read.

Pure: the writer takes a binary file object and buffers, never an fd of a
device.  The format (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
draft-ietf-opsawg-pcap):

- a 24-byte file header: magic 0xa1b2c3d4 (microsecond timestamps), version
  2.4, thiszone 0, sigfigs 0, snaplen, link type;
- per packet a 16-byte record header (seconds, microseconds, captured length,
  original length) followed by the captured bytes.

All fields are in the writer's native byte order, as libpcap writes them;
readers detect the order from the magic.  Link types: ``LINKTYPE_RAW``
(101: the packet starts with the IPv4/IPv6 header, what a TUN delivers) and
``LINKTYPE_ETHERNET`` (1: what a TAP delivers).
"""

from __future__ import annotations

import numbers
import os
import stat
import struct
import time
from typing import TYPE_CHECKING, BinaryIO, Optional

from ._validate import check_int_in

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import ReadableBuffer

__all__ = ["PcapWriter", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "MAGIC", "DEFAULT_SNAPLEN"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
MAGIC = 0xA1B2C3D4  #: microsecond timestamps (0xa1b23c4d would mean nanoseconds)
VERSION_MAJOR, VERSION_MINOR = 2, 4
DEFAULT_SNAPLEN = 262144  #: libpcap's MAXIMUM_SNAPLEN

_FILE_HEADER = struct.Struct("=IHHiIII")
_RECORD_HEADER = struct.Struct("=IIII")
_MAX_SECONDS = 2**32  # ts_sec is an unsigned 32-bit field
_MAX_LINKTYPE = 0x0FFFFFFF  # the upper 4 bits of the field hold the FCS length (pcap-savefile(5))


class PcapWriter:
    """Write a pcap file header to *file* at once, then one record per :meth:`write_packet`.

    *file* is a binary file object (``open(path, "wb")``,
    ``sys.stdout.buffer``, ``io.BytesIO``); the writer does not close it.
    *linktype* is :data:`LINKTYPE_RAW` for a TUN, :data:`LINKTYPE_ETHERNET`
    for a TAP (any link type number is written as given).  Packets longer
    than *snaplen* are cut to it, their original length kept in the record.
    *flush* True flushes after every packet; None (the default) does so when
    *file* is a pipe, socket or terminal, so a live reader (``| wireshark -k
    -i -``) sees each packet as it comes, while a regular file stays buffered.

    Raises ``TypeError``/``ValueError`` for a bad *linktype*, *snaplen* or
    *flush* before writing anything.
    """

    def __init__(self, file: BinaryIO, linktype: int, *, snaplen: int = DEFAULT_SNAPLEN, flush: Optional[bool] = None) -> None:
        check_int_in("linktype", linktype, 0, _MAX_LINKTYPE)
        check_int_in("snaplen", snaplen, 1, 2**31 - 1)
        if flush is not None and not isinstance(flush, bool):
            raise TypeError(f"flush must be True, False or None, not {flush!r}")
        self._file = file
        self._linktype = linktype
        self._snaplen = snaplen
        self._flush = _is_stream(file) if flush is None else flush
        self._record = bytearray(_RECORD_HEADER.size)  # reused: no allocation per packet
        self._count = 0
        self._closed = False
        self._write_all(_FILE_HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype), _FILE_HEADER.size)
        if self._flush:
            file.flush()

    @property
    def linktype(self) -> int:
        """The link type written in the file header."""
        return self._linktype

    @property
    def snaplen(self) -> int:
        """The most bytes of a packet that are stored."""
        return self._snaplen

    @property
    def count(self) -> int:
        """How many packets were written."""
        return self._count

    @property
    def flushes(self) -> bool:
        """True if every packet is flushed to the file as it is written."""
        return self._flush

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def write_packet(self, data: "ReadableBuffer", timestamp: Optional[float] = None) -> None:
        """Append *data* as one packet captured at *timestamp* (seconds since the epoch).

        *timestamp* None means now; it is rounded to the microsecond.  *data*
        is any C-contiguous bytes-like object and is written without a copy
        (cut to the snaplen if longer).  ``ValueError`` for a timestamp
        outside 0..2**32 seconds (nan and inf included) or a closed writer,
        ``TypeError`` for a timestamp that is not a real number and
        ``BufferError`` for a non-contiguous *data*, all before anything is
        written.
        """
        # Everything is checked before the first byte goes out: a record
        # header without its data would leave a file that no longer parses.
        if self._closed:
            raise ValueError("write to a closed PcapWriter")
        if timestamp is None:
            timestamp = time.time()
        elif type(timestamp) is not float and type(timestamp) is not int:
            # Before any arithmetic: a str times 10**6 is a 10**6-fold copy.
            if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real):
                raise TypeError(f"timestamp must be a number of seconds, not {type(timestamp).__name__}")
        if not -1 < timestamp < _MAX_SECONDS:  # also nan and inf, which round() cannot take
            raise ValueError(f"timestamp={timestamp!r} cannot be stored in a pcap record (0 <= seconds < 2**32)")
        seconds, micros = divmod(round(timestamp * 1_000_000), 1_000_000)
        if not 0 <= seconds < _MAX_SECONDS:
            raise ValueError(f"timestamp={timestamp!r} cannot be stored in a pcap record (0 <= seconds < 2**32)")
        view = data if type(data) is memoryview else memoryview(data)
        if not view.c_contiguous:
            raise BufferError("write_packet() needs a C-contiguous buffer: pass bytes(data) for a strided view")
        length = view.nbytes
        if view.itemsize != 1 or view.ndim != 1:  # slice by bytes, not by items
            view = view.cast("B")
        if length > self._snaplen:
            view = view[: self._snaplen]
        captured = len(view)
        _RECORD_HEADER.pack_into(self._record, 0, seconds, micros, captured, length)
        self._write_all(self._record, _RECORD_HEADER.size)
        self._write_all(view, captured)
        self._count += 1
        if self._flush:
            self._file.flush()

    def _write_all(self, data: "ReadableBuffer", size: int) -> None:
        written = self._file.write(data)
        if written == size:
            return
        # A raw (unbuffered) file may take part of the data, e.g. a pipe when a
        # signal arrives, or return None when non-blocking; buffered files take all.
        view = memoryview(data).cast("B")
        done = written or 0
        while done < size:
            more = self._file.write(view[done:])
            if more is None:
                raise BlockingIOError("the pcap output file cannot take more data now")
            done += more

    def flush(self) -> None:
        """Flush the file object."""
        self._file.flush()

    def close(self) -> None:
        """Flush and stop accepting packets; the file itself stays open.  Idempotent."""
        if not self._closed:
            self._closed = True
            self._file.flush()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_stream(file: BinaryIO) -> bool:
    """True if *file* is a pipe, socket or terminal (a live reader may be waiting on it)."""
    try:
        mode = os.fstat(file.fileno()).st_mode
    except (OSError, ValueError):  # BytesIO and the like (io.UnsupportedOperation): no fd
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
