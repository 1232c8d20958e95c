"""Read capture files (pcap and pcapng): each packet with its link type and timestamp.

Pure: the reader takes a binary file object (a file, a pipe, ``BytesIO``),
never a device.  Facts that shape this module:

- pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
  draft-ietf-opsawg-pcap): a 24-byte header whose magic gives the byte order
  and the timestamp unit (0xa1b2c3d4 microseconds, 0xa1b23c4d nanoseconds),
  one link type for the file (its upper 4 bits may carry an FCS length),
  then 16-byte record headers each followed by the captured bytes.
- pcapng (draft-ietf-opsawg-pcapng): a sequence of blocks (type, total
  length, body, total length again).  A Section Header Block sets the byte
  order (its magic 0x1a2b3c4d) and forgets the interfaces of the section
  before; each Interface Description Block adds an interface with its link
  type and its timestamp unit (option ``if_tsresol``: 10**-n or 2**-n
  seconds, default microseconds) and offset (``if_tsoffset``, seconds).
  Enhanced Packet Blocks name their interface; a Simple Packet Block belongs
  to interface 0 and carries no timestamp; the obsolete Packet Block is read
  like an Enhanced one.  Every other block is skipped by its length.
- A file is untrusted: every length is checked against what is left of its
  block (or the file) before it is used, and a file that ends inside a
  header or a packet is a :class:`CaptureFormatError` naming the byte
  offset, never a short packet passed on.

Timestamps are integers of nanoseconds, so that pacing a replay by their
differences accumulates no float rounding over a long file.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Tuple

__all__ = ["CaptureFormatError", "CapturedPacket", "read_capture", "linktype_name"]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_OPT_END, _OPT_TSRESOL, _OPT_TSOFFSET = 0, 9, 14
_MAX_PACKET = 1 << 28  # no link type has packets of 256 MiB: a larger length means a corrupt file
_MAX_BLOCK = _MAX_PACKET + 4096
_NS = 1_000_000_000

#: The link types a replay knows, by number (https://www.tcpdump.org/linktypes.html); others are shown as numbers.
_LINKTYPE_NAMES: Dict[int, str] = {
    0: "NULL", 1: "EN10MB", 101: "RAW", 105: "IEEE802_11", 108: "LOOP", 113: "LINUX_SLL", 127: "IEEE802_11_RADIOTAP",
    228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}


def linktype_name(linktype: int) -> str:
    """``"RAW (101)"``: the link type's name and number, for messages."""
    name = _LINKTYPE_NAMES.get(linktype)
    return f"{name} ({linktype})" if name else f"link type {linktype}"


class CaptureFormatError(ValueError):
    """The file is not a pcap/pcapng capture, or is truncated or corrupt at the offset the message names."""


class CapturedPacket(NamedTuple):
    """One packet of a capture file."""

    data: bytes  #: the captured bytes (maybe fewer than ``original_length``: the capture's snaplen)
    linktype: int  #: the LINKTYPE_* of its interface (101 RAW, 1 EN10MB, ...)
    timestamp_ns: Optional[int]  #: nanoseconds since the epoch; None for a pcapng Simple Packet Block
    original_length: int  #: the packet's length on the wire
    interface: int  #: the pcapng interface number (0 in a pcap file)


class _Input:
    """Exact reads from *file* that know their offset, for error messages."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.offset = 0

    def read(self, size: int, what: str) -> bytes:
        """*size* bytes, or CaptureFormatError naming *what* was cut short."""
        data = self._read_upto(size)
        if len(data) != size:
            raise self._truncated(size - len(data), what)
        return data

    def read_or_end(self, size: int, what: str) -> Optional[bytes]:
        """*size* bytes, None at a clean end of the file, CaptureFormatError if it ends within them."""
        data = self._read_upto(size)
        if not data:
            return None
        if len(data) != size:
            raise self._truncated(size - len(data), what)
        return data

    def _truncated(self, missing: int, what: str) -> CaptureFormatError:
        return CaptureFormatError(f"the file ends {missing} bytes short of the end of {what} "
                                  f"(it is {self.offset} bytes long): it is truncated")

    def _read_upto(self, size: int) -> bytes:
        # A pipe may return less than asked for before its end: read until full or empty.
        chunks: List[bytes] = []
        left = size
        while left:
            chunk = self.file.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.offset += len(data)
        return data


def read_capture(file: BinaryIO) -> Iterator[CapturedPacket]:
    """Return an iterator of the packets of the pcap or pcapng capture in *file*, in file order.

    The format is told by the first four bytes, read at once: a file that
    is neither raises :class:`CaptureFormatError` (a ValueError) here.  One
    that is truncated or inconsistent raises it from the iterator when the
    reader reaches that point, after the packets before it.
    """
    source = _Input(file)
    head = source.read_or_end(4, "the file header")
    if head is None:
        raise CaptureFormatError("the file is empty: not a pcap or pcapng capture")
    if head == struct.pack("<I", PCAPNG_SHB):  # the same bytes in either byte order
        return _pcapng(source, head)
    for order in "<>":
        magic = struct.unpack(order + "I", head)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return _pcap(source, order, magic == PCAP_MAGIC_NS)
    raise CaptureFormatError(f"not a pcap or pcapng capture (it starts with {head.hex()})")


def _pcap(source: _Input, order: str, nanoseconds: bool) -> Iterator[CapturedPacket]:
    rest = source.read(20, "the pcap file header")
    major, _minor, _zone, _sigfigs, _snaplen, field = struct.unpack(order + "HHiIII", rest)
    if major != 2:
        raise CaptureFormatError(f"pcap version {major} is not 2: not a capture this reader knows")
    linktype = field & 0x0FFFFFFF  # the upper bits hold the FCS length
    record = struct.Struct(order + "IIII")
    scale = 1 if nanoseconds else 1000
    while True:
        at = source.offset
        header = source.read_or_end(16, "a pcap record header")
        if header is None:
            return
        seconds, fraction, captured, original = record.unpack(header)
        if captured > _MAX_PACKET:
            raise CaptureFormatError(f"the record at byte {at} claims {captured} captured bytes: the file is corrupt")
        data = source.read(captured, f"the packet of the record at byte {at}")
        yield CapturedPacket(data, linktype, seconds * _NS + fraction * scale, original, 0)


class _Interface(NamedTuple):
    linktype: int
    snaplen: int
    units_per_second: int  # timestamp units per second (if_tsresol)
    offset_ns: int  # if_tsoffset


def _pcapng(source: _Input, first: bytes) -> Iterator[CapturedPacket]:
    order = "<"
    interfaces: List[_Interface] = []
    block_type: Optional[int] = struct.unpack("<I", first)[0]
    while True:
        at = source.offset - 4
        if block_type is None:
            return
        if block_type == PCAPNG_SHB:
            raw_length = source.read(4, "a section header block")
            magic = source.read(4, "a section header block")
            if magic == struct.pack("<I", PCAPNG_BYTE_ORDER):
                order = "<"
            elif magic == struct.pack(">I", PCAPNG_BYTE_ORDER):
                order = ">"
            else:
                raise CaptureFormatError(f"the section header at byte {at} has no byte-order magic ({magic.hex()})")
            length = _block_length(raw_length, order, at, 28)
            body = magic + source.read(length - 16, f"the section header block at byte {at}")
            major = struct.unpack(order + "H", body[4:6])[0]
            if major != 1:
                raise CaptureFormatError(f"pcapng version {major} at byte {at} is not 1: not a section this reader knows")
            interfaces = []  # a new section starts its own interface numbering
        else:
            length = _block_length(source.read(4, "a block header"), order, at, 12)
            body = source.read(length - 12, f"the block at byte {at}")
        trailer = source.read(4, f"the end of the block at byte {at}")
        if struct.unpack(order + "I", trailer)[0] != length:
            raise CaptureFormatError(f"the block at byte {at}: its two lengths differ: the file is corrupt")
        if block_type == _IDB:
            interfaces.append(_interface(body, order, at))
        elif block_type in (_EPB, _PB):
            yield _enhanced(body, order, at, interfaces, block_type == _PB)
        elif block_type == _SPB:
            yield _simple(body, order, at, interfaces)
        raw = source.read_or_end(4, "a block header")
        block_type = None if raw is None else struct.unpack(order + "I", raw)[0]


def _block_length(raw: bytes, order: str, at: int, minimum: int) -> int:
    length: int = struct.unpack(order + "I", raw)[0]
    if length < minimum or length % 4 or length > _MAX_BLOCK:
        raise CaptureFormatError(f"the block at byte {at} has an impossible length {length}: the file is corrupt")
    return length


def _interface(body: bytes, order: str, at: int) -> _Interface:
    if len(body) < 8:
        raise CaptureFormatError(f"the interface description block at byte {at} is too short")
    linktype, _reserved, snaplen = struct.unpack(order + "HHI", body[:8])
    units, offset = 1_000_000, 0
    for code, value in _options(body, 8, order, at):
        if code == _OPT_TSRESOL and len(value) >= 1:
            exponent = value[0] & 0x7F
            if exponent > 30 if value[0] & 0x80 else exponent > 18:  # finer than 1e-18 s or 2**-30 s: nothing writes that
                raise CaptureFormatError(f"the interface at byte {at} has a timestamp resolution byte {value[0]:#x} this reader refuses")
            units = 1 << exponent if value[0] & 0x80 else 10**exponent
        elif code == _OPT_TSOFFSET and len(value) >= 8:
            offset = struct.unpack(order + "q", value[:8])[0] * _NS
    return _Interface(linktype, snaplen, units, offset)


def _options(body: bytes, start: int, order: str, at: int) -> Iterator[Tuple[int, bytes]]:
    """The (code, value) options of a block body from *start* (padded to 4 bytes each), up to opt_endofopt."""
    pos = start
    while pos + 4 <= len(body):
        code, size = struct.unpack(order + "HH", body[pos : pos + 4])
        if code == _OPT_END:
            return
        end = pos + 4 + size
        if end > len(body):
            raise CaptureFormatError(f"an option of the block at byte {at} runs past the block: the file is corrupt")
        yield code, body[pos + 4 : end]
        pos = end + (-size % 4)


def _enhanced(body: bytes, order: str, at: int, interfaces: List[_Interface], obsolete: bool) -> CapturedPacket:
    if len(body) < 20:
        raise CaptureFormatError(f"the packet block at byte {at} is too short")
    if obsolete:  # Packet Block: a 16-bit interface id and a drops count in place of the 32-bit id
        interface, _drops, high, low, captured, original = struct.unpack(order + "HHIIII", body[:20])
    else:
        interface, high, low, captured, original = struct.unpack(order + "IIIII", body[:20])
    if interface >= len(interfaces):
        raise CaptureFormatError(f"the packet block at byte {at} names interface {interface}, which no interface block described")
    if captured > len(body) - 20:
        raise CaptureFormatError(f"the packet block at byte {at} claims {captured} captured bytes, more than the block holds")
    info = interfaces[interface]
    units = high << 32 | low
    per = info.units_per_second
    timestamp = units // per * _NS + (units % per) * _NS // per + info.offset_ns
    return CapturedPacket(body[20 : 20 + captured], info.linktype, timestamp, original, interface)


def _simple(body: bytes, order: str, at: int, interfaces: List[_Interface]) -> CapturedPacket:
    if not interfaces:
        raise CaptureFormatError(f"the simple packet block at byte {at} comes before any interface block")
    if len(body) < 4:
        raise CaptureFormatError(f"the simple packet block at byte {at} is too short")
    original: int = struct.unpack(order + "I", body[:4])[0]
    info = interfaces[0]
    # Its captured length is not stored: the original length, cut to the snaplen (0: none) and to the block.
    captured = min(original, info.snaplen or original, len(body) - 4)
    return CapturedPacket(body[4 : 4 + captured], info.linktype, None, original, 0)
