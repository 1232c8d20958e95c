"""ioctl request numbers, encoded as ``<asm/ioctl.h>`` does on the running CPU.

Facts: a request number packs direction, argument size, a type letter and a
sequence number.  The generic layout (x86, arm, arm64, riscv, s390,
loongarch) gives the size 14 bits and the direction 2 bits with WRITE=1,
READ=2.  powerpc, mips, sparc and alpha give the size 13 bits and the
direction 3 bits with NONE=1, READ=2, WRITE=4; parisc keeps the generic
widths but swaps READ and WRITE.  So ``TUNSETIFF`` is 0x400454ca on x86 and
0x800454ca on mips: the numbers are computed here, never copied.
``tests/test_layout.py`` compiles the kernel's own macros with gcc and
compares every number on the machine it runs on.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ._libc import ffi

__all__ = ["IocEncoding", "encoding_for", "ENCODING", "io", "ior", "iow"]


class IocEncoding(NamedTuple):
    """The field widths and direction values of one architecture family."""

    sizebits: int
    dirbits: int
    none: int
    read: int
    write: int


_GENERIC = IocEncoding(sizebits=14, dirbits=2, none=0, read=2, write=1)
_THREE_BIT_DIR = IocEncoding(sizebits=13, dirbits=3, none=1, read=2, write=4)
_PARISC = IocEncoding(sizebits=14, dirbits=2, none=0, read=1, write=2)


def encoding_for(machine: str) -> IocEncoding:
    """Return the ioctl encoding for a ``uname -m`` machine name."""
    m = machine.lower()
    if m.startswith(("ppc", "powerpc", "mips", "sparc", "alpha")):
        return _THREE_BIT_DIR
    if m.startswith("parisc"):
        return _PARISC
    return _GENERIC


ENCODING = encoding_for(os.uname().machine)

_NRBITS = 8
_TYPEBITS = 8


def _ioc(direction: int, kind: str, nr: int, size: int, enc: IocEncoding = ENCODING) -> int:
    if size >= 1 << enc.sizebits:
        raise ValueError(f"ioctl argument of {size} bytes does not fit the size field")
    typeshift = _NRBITS
    sizeshift = typeshift + _TYPEBITS
    dirshift = sizeshift + enc.sizebits
    return (direction << dirshift) | (size << sizeshift) | (ord(kind) << typeshift) | nr


def io(kind: str, nr: int, enc: IocEncoding = ENCODING) -> int:
    """``_IO(kind, nr)``: a request with no argument."""
    return _ioc(enc.none, kind, nr, 0, enc)


def ior(kind: str, nr: int, ctype: str, enc: IocEncoding = ENCODING) -> int:
    """``_IOR(kind, nr, ctype)``: the kernel writes a *ctype* back."""
    return _ioc(enc.read, kind, nr, ffi.sizeof(ctype), enc)


def iow(kind: str, nr: int, ctype: str, enc: IocEncoding = ENCODING) -> int:
    """``_IOW(kind, nr, ctype)``: the kernel reads a *ctype*."""
    return _ioc(enc.write, kind, nr, ffi.sizeof(ctype), enc)


# <linux/if_tun.h>.  The type in the macro is what the header says, not always
# what the call takes: TUNSETIFF is declared with `int` but takes a
# `struct ifreq *`; TUNSETPERSIST/OWNER/GROUP/QUEUE take the value itself.
TUNSETIFF = iow("T", 202, "int")  # struct ifreq *: name + IFF_* flags
TUNSETPERSIST = iow("T", 203, "int")  # value: 0 or 1
TUNSETOWNER = iow("T", 204, "int")  # value: uid_t
TUNSETLINK = iow("T", 205, "int")  # value: ARPHRD_* type (EBUSY while the interface is up)
TUNSETGROUP = iow("T", 206, "int")  # value: gid_t
TUNGETFEATURES = ior("T", 207, "unsigned int")  # unsigned int *: IFF_* flags supported
TUNSETOFFLOAD = iow("T", 208, "unsigned int")  # value: TUN_F_* (offload issue)
TUNGETIFF = ior("T", 210, "unsigned int")  # struct ifreq *: name + flags (2.6.30)
TUNGETSNDBUF = ior("T", 211, "int")  # int *
TUNSETSNDBUF = iow("T", 212, "int")  # int *
TUNGETVNETHDRSZ = ior("T", 215, "int")  # int *
TUNSETVNETHDRSZ = iow("T", 216, "int")  # int *
TUNSETQUEUE = iow("T", 217, "int")  # struct ifreq *: IFF_ATTACH_QUEUE/IFF_DETACH_QUEUE (3.8)
TUNSETIFINDEX = iow("T", 218, "unsigned int")  # unsigned int *
TUNSETVNETLE = iow("T", 220, "int")  # int *
TUNGETVNETLE = ior("T", 221, "int")  # int *
TUNATTACHFILTER = iow("T", 213, "struct sock_fprog")  # struct sock_fprog *: TAP only (EINVAL on a TUN)
TUNDETACHFILTER = iow("T", 214, "struct sock_fprog")  # argument unused: TAP only
TUNGETFILTER = ior("T", 219, "struct sock_fprog")  # struct sock_fprog *: the attacher's len and pointer, TAP only
TUNSETFILTEREBPF = ior("T", 225, "int")  # int *: an eBPF socket-filter program fd, -1 detaches (4.16; _IOR sic)
TUNSETCARRIER = iow("T", 226, "int")  # int * (4.19)
TUNGETDEVNETNS = io("T", 227)  # returns a netns fd (5.2)

# <linux/nsfs.h>: requests on a namespace file (/run/netns/NAME, /proc/PID/ns/net).
NS_GET_NSTYPE = io("\xb7", 0x3)  # returns the CLONE_NEW* type of the namespace (4.11)

#: Every TUN request above by its header name, for the gcc comparison test.
TUN_REQUESTS = {
    name: value for name, value in globals().items() if name.startswith("TUN") and isinstance(value, int)
}
