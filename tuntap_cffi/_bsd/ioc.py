"""The BSD ioctl request encoding, shared by macOS and FreeBSD (sys/ioccom.h of both).

Facts that shape this module:

- A request is ``dir | (len & IOCPARM_MASK) << 16 | group << 8 | nr``
  with IOC_VOID/OUT/IN = 0x2/0x4/0x8 << 28: one encoding on every CPU of
  both systems (Linux's differs per architecture: ``_ioctl.py``).
- Only the argument *length* is per platform (a struct's size): each
  platform computes its requests from its own declared sizes with
  :func:`ioc`, and its golden test compares them with its headers.
"""

from __future__ import annotations

__all__ = ["IOCPARM_MASK", "IOC_VOID", "IOC_OUT", "IOC_IN", "IOC_INOUT", "ioc"]

IOCPARM_MASK = 0x1FFF  # 13 bits of argument length
IOC_VOID = 0x20000000
IOC_OUT = 0x40000000
IOC_IN = 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def ioc(direction: int, group: str, nr: int, length: int) -> int:
    """``_IOC(inout, group, num, len)``: the request number; ValueError if *length* does not fit."""
    if not 0 <= length <= IOCPARM_MASK:
        raise ValueError(f"ioctl argument of {length} bytes does not fit the BSD length field")
    return direction | (length << 16) | (ord(group) << 8) | nr
