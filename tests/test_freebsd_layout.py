"""The FreeBSD cdef against FreeBSD's own headers (pure: no device, no FreeBSD; runs on Linux).

``tests/freebsd_golden.json`` holds the sizes, offsets, constants and ioctl
numbers that ``tools/freebsd_golden.py`` printed from a probe compiled
against FreeBSD 14's headers; every one must equal what the cdef and the BSD
``_IOC`` encoding in ``tuntap_cffi/_freebsd/cdefs.py`` give.
"""

from __future__ import annotations

import errno
import json
import pathlib
from typing import Any, Dict

import cffi
import pytest

from tuntap_cffi._freebsd import backend, cdefs, errnos

import golden_layout

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN: Dict[str, Any] = json.loads((ROOT / "tests" / "freebsd_golden.json").read_text())
FFI = cffi.FFI()
cdefs.declare(FFI)
#: C member designators the probe used, as the cdef names them (ifru_flags[2] is two named shorts).
ALIASES = {"ifru_flags[1]": "ifru_flagshigh"}


def test_golden_names_its_source() -> None:
    source = GOLDEN["freebsd"]
    assert source["repository"].startswith("https://github.com/")
    assert source["paths"] and all(len(commit) == 40 for commit in source["paths"].values())


@pytest.mark.parametrize("struct", sorted(GOLDEN["sizeof"]))
def test_struct_layout(struct: str) -> None:
    """Size, alignment and every field offset the probe printed for *struct*."""
    assert (FFI.sizeof(struct), FFI.alignof(struct)) == (GOLDEN["sizeof"][struct], GOLDEN["alignof"][struct])
    for key, offset in GOLDEN["offsetof"].items():
        name, path = key.split(":")
        if name == struct:
            assert FFI.offsetof(struct, *(ALIASES.get(part, part) for part in path.split("."))) == offset, key


def test_ioctl_numbers_match_the_headers() -> None:
    assert cdefs.ioctl_numbers(FFI.sizeof) == GOLDEN["ioctls"]


def test_constants_match_the_headers() -> None:
    assert cdefs.CONSTANTS == GOLDEN["constants"]


def test_the_numbers_the_issue_names() -> None:
    """The values wireguard-go and tun-rs use on FreeBSD, as the headers give them."""
    io = GOLDEN["ioctls"]
    assert (io["TUNSIFHEAD"], io["TUNGIFNAME"], io["TUNSIFMODE"], io["TUNSIFPID"]) == (
        0x80047460, 0x4020745D, 0x8004745E, 0x2000745F)
    assert (io["SIOCIFCREATE2"], io["SIOCIFDESTROY"]) == (0xC020697C, 0x80206979)
    assert io["SIOCAIFADDR"] & 0xFFFF == 0x6900 | 43 and io["SIOCAIFADDR_IN6"] & 0xFFFF == 0x6900 | 27
    assert GOLDEN["constants"]["AF_INET6"] == 28


def test_every_cdef_struct_is_in_the_golden_file() -> None:
    assert golden_layout.defined_structs(cdefs.CDEF) <= {key.split(" ", 1)[1] for key in GOLDEN["sizeof"]}


def test_golden_file_is_what_the_generator_asks_for() -> None:
    generator = golden_layout.generator("freebsd_golden")
    golden_layout.assert_golden_is_what_the_generator_asks_for(GOLDEN, generator)
    assert GOLDEN["freebsd"] == generator.SOURCE


def test_errno_table_is_freebsds_errno_h() -> None:
    assert cdefs.ERRNO == {name: GOLDEN["constants"][name] for name in GOLDEN["constants"] if name.startswith("E")}
    assert (cdefs.ERRNO["EAGAIN"], cdefs.ERRNO["EDESTADDRREQ"], cdefs.ERRNO["EOPNOTSUPP"]) == (35, 39, 45)
    # The Device's errno module maps each to the host's number of the same name.
    assert errnos.host(cdefs.EAGAIN) == errno.EAGAIN and errnos.host(cdefs.ERRNO["EOPNOTSUPP"]) == errno.EOPNOTSUPP
    assert errnos.host(cdefs.ERRNO["EDESTADDRREQ"]) == errno.EDESTADDRREQ and errnos.host(1000) == 1000


def test_the_bsd_layer_gets_the_golden_numbers() -> None:
    """What the FreeBSD backend hands the BSD layer: its own ioctls, constants and SA_SIZE alignment."""
    k = backend.numbers(FFI)
    assert dict(k.ioctls) == GOLDEN["ioctls"]
    assert {name: k.constants[name] for name in GOLDEN["constants"]} == GOLDEN["constants"]
    assert k.errnos == cdefs.ERRNO and k.platform == "FreeBSD"
    assert k.sa_align == 8  # SA_SIZE: sizeof(long) on LP64
    assert k.pointopoint_prefixes == ()  # TUNSIFMODE can make a tun broadcast: always ask
    assert k.host_errno(cdefs.ERRNO["EADDRNOTAVAIL"]) == errno.EADDRNOTAVAIL
