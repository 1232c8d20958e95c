"""The macOS cdef against XNU's own headers (pure: no device, no Mac; runs on Linux).

``tests/darwin_golden.json`` holds the sizes, offsets, constants and
ioctl numbers that ``tools/darwin_golden.py`` printed from a probe compiled
against the XNU headers; every one must equal what the cdef and the BSD
``_IOC`` encoding in ``tuntap_cffi/_darwin/cdefs.py`` give.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict

import cffi
import pytest
from hypothesis import given, strategies as st

from tuntap_cffi._darwin import cdefs, utun

import golden_layout

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN: Dict[str, Any] = json.loads((ROOT / "tests" / "darwin_golden.json").read_text())
FFI = cffi.FFI()
cdefs.declare(FFI)


def test_golden_names_its_source() -> None:
    assert GOLDEN["xnu"]["tag"].startswith("xnu-") and len(GOLDEN["xnu"]["commit"]) == 40


@pytest.mark.parametrize("struct", sorted(GOLDEN["sizeof"]))
def test_struct_size_and_alignment(struct: str) -> None:
    assert FFI.sizeof(struct) == GOLDEN["sizeof"][struct]
    assert FFI.alignof(struct) == GOLDEN["alignof"][struct]


@pytest.mark.parametrize("key", sorted(GOLDEN["offsetof"]))
def test_field_offset(key: str) -> None:
    struct, path = key.split(":")
    assert FFI.offsetof(struct, *path.split(".")) == GOLDEN["offsetof"][key]


def test_ioctl_numbers_match_the_headers() -> None:
    assert cdefs.ioctl_numbers(FFI.sizeof) == GOLDEN["ioctls"]


def test_constants_match_the_headers() -> None:
    assert cdefs.CONSTANTS == GOLDEN["constants"]


def test_every_cdef_struct_is_in_the_golden_file() -> None:
    declared = {key.split(" ", 1)[1] for key in GOLDEN["sizeof"]}
    assert golden_layout.defined_structs(cdefs.CDEF + cdefs.CDEF_PACK4) <= declared


def test_golden_file_is_what_the_generator_asks_for() -> None:
    golden_layout.assert_golden_is_what_the_generator_asks_for(GOLDEN, golden_layout.generator("darwin_golden"))


def test_errno_table_is_xnus_errno_h() -> None:
    """The errno values the BSD layer maps from are the E* constants, each checked against sys/errno.h above."""
    assert cdefs.ERRNO and all(name.startswith("E") for name in cdefs.ERRNO)
    assert cdefs.ERRNO == {name: GOLDEN["constants"][name] for name in GOLDEN["constants"] if name.startswith("E")}
    assert (cdefs.ERRNO["EAGAIN"], cdefs.ERRNO["EDESTADDRREQ"], cdefs.ERRNO["EADDRNOTAVAIL"]) == (35, 39, 49)


def test_the_bsd_layer_gets_the_golden_numbers() -> None:
    """What the darwin backend hands the BSD layer: ioctls computed with _IOC from the cdef's sizes."""
    from tuntap_cffi._darwin import backend

    k = backend.numbers(FFI)
    assert dict(k.ioctls) == GOLDEN["ioctls"] and dict(k.constants) == GOLDEN["constants"]
    assert k.errnos == cdefs.ERRNO and k.sa_align == 4  # ROUNDUP32 (rtsock.c)


def test_ioc_rejects_a_length_too_long() -> None:
    with pytest.raises(ValueError):
        cdefs.ioc(cdefs.IOC_IN, "i", 1, cdefs.IOCPARM_MASK + 1)


# ------------------------------------------------- sockaddrs and the AF header, through the cdef

@given(addr=st.binary(min_size=4, max_size=4), port=st.integers(0, 0xFFFF))
def test_sockaddr_in_round_trip(addr: bytes, port: int) -> None:
    sa = FFI.new("struct sockaddr_in *")
    cdefs.fill_sockaddr_in(sa, addr, port)
    assert bytes(FFI.buffer(sa)) == bytes([16, 2]) + port.to_bytes(2, "big") + addr + bytes(8)
    assert cdefs.read_sockaddr_in(sa) == (addr, port)


@given(addr=st.binary(min_size=16, max_size=16), port=st.integers(0, 0xFFFF),
       flowinfo=st.integers(0, 0xFFFFFFFF), scope_id=st.integers(0, 0xFFFFFFFF))
def test_sockaddr_in6_round_trip(addr: bytes, port: int, flowinfo: int, scope_id: int) -> None:
    sa = FFI.new("struct sockaddr_in6 *")
    cdefs.fill_sockaddr_in6(sa, addr, port, flowinfo, scope_id)
    wire = bytes(FFI.buffer(sa))
    assert wire[:8] == bytes([28, 30]) + port.to_bytes(2, "big") + flowinfo.to_bytes(4, "big")
    assert wire[8:24] == addr and wire[24:] == scope_id.to_bytes(4, "little")
    assert cdefs.read_sockaddr_in6(sa) == (addr, port, flowinfo, scope_id)


@given(family=st.integers(0, 0xFFFFFFFF))
def test_af_header_round_trip(family: int) -> None:
    scratch = FFI.new("uint32_t *")
    cdefs.af_header_into(scratch, family)
    assert bytes(FFI.buffer(scratch)) == family.to_bytes(4, "big")
    assert cdefs.af_of(scratch) == family


@pytest.mark.parametrize("version", [4, 6])
def test_af_header_of_each_ip_version(version: int) -> None:
    scratch = FFI.new("uint32_t *")
    cdefs.af_header_into(scratch, {4: cdefs.AF_INET, 6: cdefs.AF_INET6}[version])
    assert bytes(FFI.buffer(scratch)) == utun.AF_HEADER[version]


def test_the_tap_device_reads_bpf_records_at_the_headers_offsets() -> None:
    """_feth_device parses bpf_hdr with one struct.unpack_from and aligns records by hand: both from XNU's numbers."""
    from tuntap_cffi import _feth_device

    off = GOLDEN["offsetof"]
    at = _feth_device._RECORD_AT
    assert at == off["struct bpf_hdr:bh_caplen"]
    fields = [off[f"struct bpf_hdr:bh_{f}"] - at for f in ("caplen", "datalen", "hdrlen")]
    assert fields == [0, 4, 8] and _feth_device._RECORD.format in ("=IIH", b"=IIH")
    assert _feth_device._ALIGN + 1 == GOLDEN["constants"]["BPF_ALIGNMENT"]


def test_the_feth_requests_are_sized_by_the_golden_structs() -> None:
    """SIOCSDRVSPEC carries a struct ifdrv (pack 4), whose ifd_data points at a struct if_fake_request."""
    from tuntap_cffi._darwin import feth

    assert GOLDEN["ioctls"]["SIOCSDRVSPEC"] == cdefs.ioc(cdefs.IOC_IN, "i", 123, GOLDEN["sizeof"]["struct ifdrv"])
    assert GOLDEN["sizeof"]["struct if_fake_request"] == FFI.sizeof("struct if_fake_request") == 160
    assert GOLDEN["sizeof"]["struct sockaddr_ndrv"] == FFI.sizeof("struct sockaddr_ndrv") == 18
    assert feth.BPF_BUFFER <= GOLDEN["constants"]["BPF_MAXBUFSIZE"]
