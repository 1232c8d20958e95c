"""The cffi declarations against the C headers, the struct byte layouts, the ioctl encoding.

Three groups, none of which needs a TUN device:

a. ``gcc`` compiles a program generated from the declarations themselves
   (structs and fields from ``ffi.list_types()``, ``#define`` names parsed
   out of ``build_ffi.CDEF``, request names from ``_ioctl.TUN_REQUESTS``),
   so a declaration added later is compared without editing this file.
b. Hypothesis round trips between cffi structs and Python's ``struct``
   module, whose native formats spell the kernel ABI independently of cffi.
c. ``_ioctl`` encodings for other architectures, checked against numbers
   worked out from the kernel's ``ioctl.h`` formulas.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, NoReturn, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import build_ffi  # noqa: E402  (the build script, from the repo root)
from tuntap_cffi import _ioctl  # noqa: E402
from tuntap_cffi._libc import ffi  # noqa: E402
from tuntap_cffi._syscalls import lib  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> NoReturn:
    """Skip for a missing tool; in CI (CI=true) a missing tool is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true, so this cannot be skipped: {reason}")
    pytest.skip(reason)


# ===========================================================================
# a. cffi against gcc and the installed kernel/libc headers
# ===========================================================================

HEADERS = [
    "stddef.h",
    "stdio.h",
    # <linux/if_tun.h> uses _IOW/_IOR without including <asm/ioctl.h> itself.
    "sys/ioctl.h",
    "sys/socket.h",
    # glibc's in6_addr first: <linux/libc-compat.h> then keeps the kernel's
    # <linux/in6.h> (pulled in by <linux/ipv6.h>) from redefining it.
    "netinet/in.h",
    # The kernel's own ifreq (glibc's <net/if.h> conflicts with it; the
    # kernel header is the ABI the ioctls are served with).
    "linux/if.h",
    "linux/if_tun.h",
    "linux/sockios.h",
    "sys/uio.h",
    "poll.h",
    "linux/if_ether.h",
    "linux/if_arp.h",
    "linux/ipv6.h",
    "linux/netlink.h",
    "linux/rtnetlink.h",
    "linux/if_addr.h",
    "linux/if_link.h",
    "linux/io_uring.h",
    "linux/virtio_net.h",
    "linux/sched.h",  # CLONE_NEWNET (setns)
]


class Field(NamedTuple):
    ckind: str  # "struct" or "union"
    cname: str  # tag, e.g. "ifreq"
    name: str  # member as spelt in C: a real member or a kernel macro (ifr_flags)
    offset: int
    size: int
    signed: Optional[bool]  # True/False for an integer field, None otherwise


def _integer_signedness(ctype: Any) -> Optional[bool]:
    """True/False for an integer ctype, None for anything else (char, float, pointer...)."""
    if ctype.kind != "primitive" or ctype.cname in ("char", "float", "double", "long double", "_Bool"):
        return None
    try:
        return bool(int(ffi.cast(ctype, -1)) < 0)
    except TypeError:  # pragma: no cover - primitive without integer semantics
        return None


def _records() -> List[Tuple[str, str]]:
    _typedefs, structs, unions = ffi.list_types()
    return [("struct", s) for s in structs] + [("union", u) for u in unions]


RECORDS = _records()
TYPEDEFS = sorted(ffi.list_types()[0])

FIELDS: List[Field] = []
for _kind, _name in RECORDS:
    # cffi flattens anonymous unions (the ifr_* members of ifreq), which
    # matches the kernel's spelling through its ifr_* macros.
    for _fname, _f in ffi.typeof(f"{_kind} {_name}").fields:
        FIELDS.append(
            Field(_kind, _name, _fname, _f.offset, ffi.sizeof(_f.type), _integer_signedness(_f.type))
        )

# Records of kernel headers newer than the installed ones may be: 6.17 split
# virtio_net_hdr_v1_hash's __le32 hash_value into two __le16 halves (so its
# alignment became 2) and added virtio_net_hdr_v1_hash_tunnel.  gcc compares
# them when the installed <linux/virtio_net.h> has that form (a probe says:
# the field named here); otherwise the values pinned here, read off the 6.17
# uapi header, stand in for gcc's: size, alignment, then (offset, size,
# signedness: 0 unsigned, -1 not an integer) per field.
NEWER_RECORDS: Dict[str, Tuple[str, Tuple[int, int], Dict[str, Tuple[int, int, int]]]] = {
    "struct virtio_net_hdr_v1_hash": ("hash_value_lo", (20, 2), {
        "hdr": (0, 12, -1), "hash_value_lo": (12, 2, 0), "hash_value_hi": (14, 2, 0),
        "hash_report": (16, 2, 0), "padding": (18, 2, 0),
    }),
    "struct virtio_net_hdr_v1_hash_tunnel": ("inner_nh_offset", (24, 2), {
        "hash_hdr": (0, 20, -1), "outer_th_offset": (20, 2, 0), "inner_nh_offset": (22, 2, 0),
    }),
}

CONSTANT_NAMES = sorted(set(re.findall(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_][A-Za-z0-9_]*)", build_ffi.CDEF, re.M)))
REQUEST_NAMES = sorted(_ioctl.TUN_REQUESTS)


def c_program(pinned: Tuple[str, ...] = ()) -> str:
    """C source printing one tab-separated line per value to compare (the *pinned* records left out)."""
    out: List[str] = [f"#include <{h}>" for h in HEADERS]
    out.append("#define TT_SIGNED(lvalue) (((__typeof__(lvalue))-1) < 0)")
    out.append("int main(void) {")
    out.append('    printf("abi\\tvoid*\\t%zu\\n", sizeof(void *));')
    for kind, name in RECORDS:
        t = f"{kind} {name}"
        if t in pinned:
            continue
        out.append(f'    printf("record\\t{t}\\t%zu\\t%zu\\n", sizeof({t}), _Alignof({t}));')
    for f in FIELDS:
        t = f"{f.ckind} {f.cname}"
        if t in pinned:
            continue
        member = f"((({t} *)0)->{f.name})"
        out.append(
            f'    printf("field\\t{f.cname}.{f.name}\\t%zu\\t%zu\\t%d\\n", '
            f"offsetof({t}, {f.name}), sizeof({member}), "
            + (f"TT_SIGNED({member})" if f.signed is not None else "-1")
            + ");"
        )
    for name in TYPEDEFS:
        signed = f"TT_SIGNED(*({name} *)0)" if _integer_signedness(ffi.typeof(name)) is not None else "-1"
        out.append(f'    printf("typedef\\t{name}\\t%zu\\t%d\\n", sizeof({name}), {signed});')
    for kind, names, fmt, cast in (
        ("const", CONSTANT_NAMES, "%lld", "long long"),
        ("request", REQUEST_NAMES, "%llu", "unsigned long long"),
    ):
        for name in names:
            out.append(f"#ifdef {name}")
            out.append(f'    printf("{kind}\\t{name}\\t{fmt}\\n", ({cast})({name}));')
            out.append("#else")
            # Not a macro: an enum constant (IFA_LOCAL, RTA_DST, ...); if the
            # headers lack it altogether, gcc stops here naming it.
            out.append(f'    printf("{kind}\\t{name}\\t{fmt}\\n", ({cast})({name}));')
            out.append("#endif")
    for macro in ("_IOC_NRBITS", "_IOC_TYPEBITS", "_IOC_SIZEBITS", "_IOC_DIRBITS", "_IOC_NONE", "_IOC_READ", "_IOC_WRITE"):
        out.append(f'    printf("ioc\\t{macro}\\t%lld\\n", (long long)({macro}));')
    out.append("    return 0;")
    out.append("}")
    return "\n".join(out) + "\n"


CValues = Dict[Tuple[str, str], List[str]]


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> CValues:
    """Compile and run the generated program once; {(kind, name): [values]}."""
    gcc = shutil.which("gcc")
    if gcc is None:
        _unavailable("gcc is not installed: cannot compare the cffi declarations with the C headers")
    tmp = tmp_path_factory.mktemp("layout")
    pinned = tuple(t for t, (field, _, _) in NEWER_RECORDS.items() if not _header_has(gcc, tmp, t, field))
    src = tmp / "layout.c"
    exe = tmp / "layout"
    src.write_text(c_program(pinned))
    cmd = [gcc, "-std=gnu11", "-Wall", "-Werror=implicit-function-declaration", "-o", str(exe), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr and "fatal error" in proc.stderr:
            _unavailable(f"C headers are missing (install libc6-dev and linux-libc-dev):\n{proc.stderr}")
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr}\n--- {src} ---\n{src.read_text()}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{exe} exited with {run.returncode}: {run.stderr}"
    values: CValues = {}
    for line in run.stdout.splitlines():
        kind, name, *rest = line.split("\t")
        values[(kind, name)] = rest
    for t in pinned:
        _, (size, align), fields = NEWER_RECORDS[t]
        values[("record", t)] = [str(size), str(align)]
        for fname, numbers in fields.items():
            values[("field", f"{t.split()[1]}.{fname}")] = [str(n) for n in numbers]
    c_pointer = int(values[("abi", "void*")][0])
    if c_pointer != ffi.sizeof("void *"):
        _unavailable(
            f"gcc builds {8 * c_pointer}-bit programs but this Python is "
            f"{8 * ffi.sizeof('void *')}-bit: the sizes would not be comparable"
        )
    return values


def _header_has(gcc: str, tmp: Path, record: str, field: str) -> bool:
    """Whether the installed headers declare *record* with *field* (see NEWER_RECORDS)."""
    src = tmp / f"probe_{record.split()[1]}.c"
    src.write_text("".join(f"#include <{h}>\n" for h in HEADERS) + f"int probe = offsetof({record}, {field});\n")
    proc = subprocess.run([gcc, "-std=gnu11", "-c", "-o", str(src.with_suffix(".o")), str(src)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0


def test_pinned_records_are_declared_as_pinned() -> None:
    """Every field of a pinned record is pinned, and nothing else: the stand-in covers the whole declaration."""
    for record, (_, (size, align), fields) in NEWER_RECORDS.items():
        assert (ffi.sizeof(record), ffi.alignof(record)) == (size, align), record
        assert [name for name, _ in ffi.typeof(record).fields] == list(fields), record


def test_generated_lists_are_not_empty() -> None:
    # Guards the derivations above: an empty list would make the parametrized
    # tests below vanish instead of failing.
    assert {"ifreq", "ifmap", "sockaddr", "tun_pi", "iovec", "pollfd"} <= {n for _, n in RECORDS}
    assert {"ifr_name", "ifr_flags", "ifr_hwaddr", "ifr_map", "ifr_data"} <= {f.name for f in FIELDS if f.cname == "ifreq"}
    assert {"IFF_TUN", "IFF_NO_PI", "SIOCGIFFLAGS", "ETH_P_IPV6", "IFNAMSIZ"} <= set(CONSTANT_NAMES)
    assert {"TUNSETIFF", "TUNGETIFF", "TUNSETPERSIST"} <= set(REQUEST_NAMES)


def test_regex_finds_every_integer_constant_of_the_cdef() -> None:
    """The names parsed from CDEF are exactly the integer constants cffi exposes."""
    exposed = {name for name in dir(lib) if isinstance(getattr(lib, name), int)}
    assert set(CONSTANT_NAMES) == exposed


@pytest.mark.parametrize("kind,name", RECORDS, ids=[f"{k} {n}" for k, n in RECORDS])
def test_record_size_and_alignment(c_values: CValues, kind: str, name: str) -> None:
    t = f"{kind} {name}"
    size, align = (int(v) for v in c_values[("record", t)])
    assert (ffi.sizeof(t), ffi.alignof(t)) == (size, align), f"{t}: cffi (sizeof, alignof) vs C"


@pytest.mark.parametrize("field", FIELDS, ids=[f"{f.cname}.{f.name}" for f in FIELDS])
def test_field_offset_size_signedness(c_values: CValues, field: Field) -> None:
    offset, size, signed = (int(v) for v in c_values[("field", f"{field.cname}.{field.name}")])
    assert field.offset == offset, f"offsetof({field.ckind} {field.cname}, {field.name})"
    assert field.size == size, f"sizeof {field.cname}.{field.name}"
    if field.signed is not None:
        assert field.signed == bool(signed), f"{field.cname}.{field.name}: signedness differs from C"


@pytest.mark.parametrize("name", TYPEDEFS)
def test_typedef_size_and_signedness(c_values: CValues, name: str) -> None:
    size, signed = (int(v) for v in c_values[("typedef", name)])
    assert ffi.sizeof(name) == size
    ours = _integer_signedness(ffi.typeof(name))
    if ours is not None:
        assert ours == bool(signed), f"{name}: signedness differs from C"


def _header_value(c_values: CValues, kind: str, name: str) -> int:
    (value,) = c_values[(kind, name)]
    return int(value)


@pytest.mark.parametrize("name", CONSTANT_NAMES)
def test_constant_matches_header(c_values: CValues, name: str) -> None:
    assert getattr(lib, name) == _header_value(c_values, "const", name)


@pytest.mark.parametrize("name", REQUEST_NAMES)
def test_request_number_matches_header(c_values: CValues, name: str) -> None:
    expected = _header_value(c_values, "request", name)
    assert _ioctl.TUN_REQUESTS[name] == expected, f"{name}: {_ioctl.TUN_REQUESTS[name]:#x} != header {expected:#x}"


def test_running_encoding_matches_header(c_values: CValues) -> None:
    c = {name: int(v[0]) for (kind, name), v in c_values.items() if kind == "ioc"}
    enc = _ioctl.ENCODING
    assert (c["_IOC_NRBITS"], c["_IOC_TYPEBITS"]) == (8, 8)
    assert (enc.sizebits, enc.dirbits, enc.none, enc.read, enc.write) == (
        c["_IOC_SIZEBITS"],
        c["_IOC_DIRBITS"],
        c["_IOC_NONE"],
        c["_IOC_READ"],
        c["_IOC_WRITE"],
    ), f"encoding_for({os.uname().machine!r})"


# ===========================================================================
# b. Byte layouts: cffi structs against Python's struct module
# ===========================================================================
#
# Native ("@") struct formats apply the platform C alignment rules, so they
# describe the kernel ABI on any Linux target without going through cffi.
# ifreq: char ifr_name[IFNAMSIZ] then the union; the union's alignment (at
# most 8) divides 16, so every union member starts at offset 16.

IFNAMSIZ = 16
SOCKADDR_FMT = "@H14s"  # sa_family_t sa_family; char sa_data[14]
IFMAP_FMT = "@LLHBBB"  # mem_start, mem_end, base_addr, irq, dma, port
TUN_PI_FMT = "@HH"  # flags, proto
IOVEC_FMT = "@PN"  # void *iov_base; size_t iov_len
POLLFD_FMT = "@ihh"  # fd, events, revents
IFREQ_FMT = {
    "flags": "@16sh",
    "int": "@16si",
    "sockaddr": "@16s" + SOCKADDR_FMT[1:],
    "map": "@16s" + IFMAP_FMT[1:],
    "name": "@16s16s",
    "pointer": "@16sP",
}

NATIVE_LONG_MAX = 2 ** (8 * struct.calcsize("@L")) - 1
POINTER_MAX = 2 ** (8 * struct.calcsize("@P")) - 1
SIZE_T_MAX = 2 ** (8 * struct.calcsize("@N")) - 1

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
i16 = st.integers(-(2**15), 2**15 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
ulong = st.integers(0, NATIVE_LONG_MAX)
pointers = st.integers(0, POINTER_MAX)
sizes = st.integers(0, SIZE_T_MAX)
# Interface names: ASCII without NUL, at most IFNAMSIZ - 1 bytes.
names = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=IFNAMSIZ - 1).map(
    lambda s: s.encode("ascii")
)
sa_data = st.binary(min_size=14, max_size=14)
macs = st.binary(min_size=6, max_size=6)

PROPS = settings(deadline=None)  # PyPy's JIT warm-up makes the first examples slow


def _align(fmt: str) -> int:
    """The alignment the native struct rules give *fmt*'s first item."""
    return struct.calcsize("@B" + fmt.lstrip("@")) - struct.calcsize(fmt)


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


def _raw(p: Any) -> bytes:
    return bytes(ffi.buffer(p))


def _cast_from(cdecl: str, data: bytes) -> Any:
    """A struct pointer over a writable copy of *data* (kept alive by the cdata)."""
    buf = bytearray(data)
    return ffi.from_buffer(f"{cdecl} *", buf)


def _padded(fmt: str, cdecl: str, *values: Any) -> bytes:
    data = struct.pack(fmt, *values)
    assert len(data) <= ffi.sizeof(cdecl)
    return data.ljust(ffi.sizeof(cdecl), b"\0")


def test_struct_module_formats_give_the_cffi_sizes() -> None:
    """The formats used below, padded as C pads, are the sizes cffi uses."""
    assert ffi.sizeof("struct sockaddr") == struct.calcsize(SOCKADDR_FMT) == 16
    ifmap = _round_up(struct.calcsize(IFMAP_FMT), _align("@L"))
    assert ffi.sizeof("struct ifmap") == ifmap
    union = _round_up(max(16, ifmap, struct.calcsize("@P")), max(_align("@L"), _align("@P"), _align("@i")))
    assert ffi.sizeof("struct ifreq") == IFNAMSIZ + union
    assert ffi.sizeof("struct tun_pi") == struct.calcsize(TUN_PI_FMT) == 4
    assert ffi.sizeof("struct iovec") == struct.calcsize(IOVEC_FMT)
    assert ffi.sizeof("struct pollfd") == struct.calcsize(POLLFD_FMT) == 8
    for fmt in IFREQ_FMT.values():
        assert struct.calcsize(fmt) <= ffi.sizeof("struct ifreq")


# ---- struct ifreq ----------------------------------------------------------


@PROPS
@given(name=names)
def test_ifr_name_round_trip(name: bytes) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    assert ffi.string(p.ifr_name) == name
    assert _raw(p)[:IFNAMSIZ] == name.ljust(IFNAMSIZ, b"\0")


@PROPS
@given(first=names, second=names)
def test_ifr_name_reuse_terminates_the_shorter_name(first: bytes, second: bytes) -> None:
    """Assigning a name over a longer one leaves no tail of the old name behind."""
    p = ffi.new("struct ifreq *")
    p.ifr_name = first
    p.ifr_name = second
    assert ffi.string(p.ifr_name) == second


@PROPS
@given(name=names, flags=i16)
def test_ifreq_name_flags(name: bytes, flags: int) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    p.ifr_flags = flags
    got_name, got_flags = struct.unpack_from(IFREQ_FMT["flags"], _raw(p))
    assert (got_name.rstrip(b"\0"), got_flags) == (name, flags)

    q = _cast_from("struct ifreq", _padded(IFREQ_FMT["flags"], "struct ifreq", name, flags))
    assert (ffi.string(q.ifr_name), q.ifr_flags) == (name, flags)


@PROPS
@given(flags=u16)
def test_ifr_flags_holds_all_sixteen_flag_bits(flags: int) -> None:
    """ifr_flags is a C short: IFF_* values >= 0x8000 (IFF_TUN_EXCL) go in as
    their two's complement and come back with ``& 0xFFFF``; the raw bytes are
    the unsigned 16-bit value."""
    p = ffi.new("struct ifreq *")
    if flags & 0x8000:
        with pytest.raises(OverflowError):
            p.ifr_flags = flags
    from tuntap_cffi._linux.backend import _short

    p.ifr_flags = _short(flags)  # what the backend does before every TUNSETIFF/SIOCSIFFLAGS
    assert p.ifr_flags & 0xFFFF == flags
    assert struct.unpack_from("@H", _raw(p), IFNAMSIZ)[0] == flags


@PROPS
@given(field=st.sampled_from(["ifr_mtu", "ifr_ifindex", "ifr_qlen", "ifr_metric"]), name=names, value=i32)
def test_ifreq_name_int(field: str, name: bytes, value: int) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    setattr(p, field, value)
    got_name, got_value = struct.unpack_from(IFREQ_FMT["int"], _raw(p))
    assert (got_name.rstrip(b"\0"), got_value) == (name, value)

    q = _cast_from("struct ifreq", _padded(IFREQ_FMT["int"], "struct ifreq", name, value))
    assert (ffi.string(q.ifr_name), getattr(q, field)) == (name, value)


@PROPS
@given(name=names, family=u16, mac=macs)
def test_ifreq_name_hwaddr(name: bytes, family: int, mac: bytes) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    p.ifr_hwaddr.sa_family = family
    p.ifr_hwaddr.sa_data = mac
    got_name, got_family, got_data = struct.unpack_from(IFREQ_FMT["sockaddr"], _raw(p))
    assert (got_name.rstrip(b"\0"), got_family, got_data[:6]) == (name, family, mac)

    packed = _padded(IFREQ_FMT["sockaddr"], "struct ifreq", name, family, mac.ljust(14, b"\0"))
    q = _cast_from("struct ifreq", packed)
    assert ffi.string(q.ifr_name) == name
    assert (q.ifr_hwaddr.sa_family, ffi.unpack(q.ifr_hwaddr.sa_data, 6)) == (family, mac)
    # Every sockaddr member of the union is the same storage.
    for member in ("ifr_addr", "ifr_dstaddr", "ifr_broadaddr", "ifr_netmask"):
        sa = getattr(q, member)
        assert (sa.sa_family, ffi.unpack(sa.sa_data, 6)) == (family, mac), member


@PROPS
@given(name=names, start=ulong, end=ulong, base=u16, irq=u8, dma=u8, port=u8)
def test_ifreq_name_map(name: bytes, start: int, end: int, base: int, irq: int, dma: int, port: int) -> None:
    fields = (start, end, base, irq, dma, port)
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    m = p.ifr_map
    m.mem_start, m.mem_end, m.base_addr, m.irq, m.dma, m.port = fields
    got = struct.unpack_from(IFREQ_FMT["map"], _raw(p))
    assert (got[0].rstrip(b"\0"),) + got[1:] == (name,) + fields

    q = _cast_from("struct ifreq", _padded(IFREQ_FMT["map"], "struct ifreq", name, *fields))
    m = q.ifr_map
    assert ffi.string(q.ifr_name) == name
    assert (m.mem_start, m.mem_end, m.base_addr, m.irq, m.dma, m.port) == fields


@PROPS
@given(name=names, newname=names)
def test_ifreq_name_newname(name: bytes, newname: bytes) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    p.ifr_newname = newname
    got_name, got_new = struct.unpack_from(IFREQ_FMT["name"], _raw(p))
    assert (got_name.rstrip(b"\0"), got_new.rstrip(b"\0")) == (name, newname)

    q = _cast_from("struct ifreq", _padded(IFREQ_FMT["name"], "struct ifreq", name, newname))
    assert (ffi.string(q.ifr_name), ffi.string(q.ifr_newname), ffi.string(q.ifr_slave)) == (name, newname, newname)


@PROPS
@given(name=names, address=pointers)
def test_ifreq_name_data_pointer(name: bytes, address: int) -> None:
    p = ffi.new("struct ifreq *")
    p.ifr_name = name
    p.ifr_data = ffi.cast("void *", address)
    got_name, got_ptr = struct.unpack_from(IFREQ_FMT["pointer"], _raw(p))
    assert (got_name.rstrip(b"\0"), got_ptr) == (name, address)

    q = _cast_from("struct ifreq", _padded(IFREQ_FMT["pointer"], "struct ifreq", name, address))
    assert int(ffi.cast("uintptr_t", q.ifr_data)) == address


# ---- struct tun_pi ---------------------------------------------------------


@PROPS
@given(flags=u16, proto=u16)
def test_tun_pi_native_fields(flags: int, proto: int) -> None:
    p = ffi.new("struct tun_pi *")
    p.flags = flags
    p.proto = proto
    assert struct.unpack(TUN_PI_FMT, _raw(p)) == (flags, proto)

    q = _cast_from("struct tun_pi", struct.pack(TUN_PI_FMT, flags, proto))
    assert (q.flags, q.proto) == (flags, proto)


@PROPS
@given(ethertype=u16)
def test_tun_pi_proto_is_network_order(ethertype: int) -> None:
    """The conversion device.py uses for the __be16 proto field, both ways."""
    p = ffi.new("struct tun_pi *")
    p.proto = int.from_bytes(ethertype.to_bytes(2, "big"), sys.byteorder)
    raw = _raw(p)
    assert raw[2:4] == ethertype.to_bytes(2, "big")
    assert struct.unpack_from("!H", raw, 2)[0] == ethertype
    # Reading: what the kernel wrote in network order, as read_packet decodes it.
    q = _cast_from("struct tun_pi", b"\0\0" + ethertype.to_bytes(2, "big"))
    assert int.from_bytes(q.proto.to_bytes(2, sys.byteorder), "big") == ethertype
    assert raw[2] << 8 | raw[3] == ethertype


def test_tun_pi_proto_constants_on_the_wire() -> None:
    p = ffi.new("struct tun_pi *")
    p.proto = int.from_bytes(lib.ETH_P_IPV6.to_bytes(2, "big"), sys.byteorder)
    assert _raw(p)[2:] == b"\x86\xdd"


# ---- struct sockaddr, iovec, pollfd -----------------------------------------


@PROPS
@given(family=u16, data=sa_data)
def test_sockaddr(family: int, data: bytes) -> None:
    p = ffi.new("struct sockaddr *")
    p.sa_family = family
    p.sa_data = data
    assert struct.unpack(SOCKADDR_FMT, _raw(p)) == (family, data)

    q = _cast_from("struct sockaddr", struct.pack(SOCKADDR_FMT, family, data))
    assert (q.sa_family, ffi.unpack(q.sa_data, 14)) == (family, data)


@PROPS
@given(base=pointers, length=sizes)
def test_iovec(base: int, length: int) -> None:
    p = ffi.new("struct iovec *")
    p.iov_base = ffi.cast("void *", base)
    p.iov_len = length
    assert struct.unpack(IOVEC_FMT, _raw(p)) == (base, length)

    q = _cast_from("struct iovec", struct.pack(IOVEC_FMT, base, length))
    assert (int(ffi.cast("uintptr_t", q.iov_base)), q.iov_len) == (base, length)


@PROPS
@given(fd=i32, events=i16, revents=i16)
def test_pollfd(fd: int, events: int, revents: int) -> None:
    p = ffi.new("struct pollfd *")
    p.fd, p.events, p.revents = fd, events, revents
    assert struct.unpack(POLLFD_FMT, _raw(p)) == (fd, events, revents)

    q = _cast_from("struct pollfd", struct.pack(POLLFD_FMT, fd, events, revents))
    assert (q.fd, q.events, q.revents) == (fd, events, revents)


# ===========================================================================
# c. _ioctl: the encoding of each architecture family
# ===========================================================================
#
# The kernel's formula, include/uapi/asm-generic/ioctl.h:
#   _IOC(dir,type,nr,size) = dir << _IOC_DIRSHIFT | type << _IOC_TYPESHIFT
#                            | nr << _IOC_NRSHIFT | size << _IOC_SIZESHIFT
#   _IOC_NRSHIFT 0, _IOC_TYPESHIFT 8 (_IOC_NRBITS 8),
#   _IOC_SIZESHIFT 16 (_IOC_TYPEBITS 8), _IOC_DIRSHIFT 16 + _IOC_SIZEBITS.
# Defaults there: _IOC_SIZEBITS 14, _IOC_DIRBITS 2, _IOC_NONE 0U,
# _IOC_WRITE 1U, _IOC_READ 2U (x86, arm, arm64, riscv, s390, ...).
# arch/powerpc/include/uapi/asm/ioctl.h and arch/mips/include/uapi/asm/ioctl.h
# override _IOC_SIZEBITS 13, _IOC_DIRBITS 3, _IOC_NONE 1U, _IOC_READ 2U,
# _IOC_WRITE 4U; arch/sparc/... and arch/alpha/include/uapi/asm/ioctl.h
# define the same values with their own copy of the formula.
# arch/parisc/include/uapi/asm/ioctl.h keeps the widths and sets
# _IOC_NONE 0U, _IOC_WRITE 2U, _IOC_READ 1U.


class Enc(NamedTuple):
    sizebits: int
    dirbits: int
    none: int
    read: int
    write: int


GENERIC = Enc(sizebits=14, dirbits=2, none=0, read=2, write=1)
THREE_BIT = Enc(sizebits=13, dirbits=3, none=1, read=2, write=4)
PARISC = Enc(sizebits=14, dirbits=2, none=0, read=1, write=2)

MACHINES = {
    "x86_64": GENERIC,
    "i686": GENERIC,
    "aarch64": GENERIC,
    "armv7l": GENERIC,
    "riscv64": GENERIC,
    "s390x": GENERIC,
    "ppc64le": THREE_BIT,
    "ppc": THREE_BIT,
    "mips": THREE_BIT,
    "mips64": THREE_BIT,
    "sparc64": THREE_BIT,
    "alpha": THREE_BIT,
    "parisc64": PARISC,
}


def kernel_ioc(enc: Enc, direction: int, kind: str, nr: int, size: int) -> int:
    """``_IOC()`` computed as the kernel header writes it."""
    nrshift, typeshift, sizeshift = 0, 8, 16
    dirshift = sizeshift + enc.sizebits
    return direction << dirshift | ord(kind) << typeshift | nr << nrshift | size << sizeshift


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_encoding_for(machine: str) -> None:
    enc = _ioctl.encoding_for(machine)
    assert (enc.sizebits, enc.dirbits, enc.none, enc.read, enc.write) == tuple(MACHINES[machine])
    assert 8 + 8 + enc.sizebits + enc.dirbits == 32


# name: (request under GENERIC, THREE_BIT, PARISC), with how the header builds it.
PUBLISHED = {
    # TUNSETIFF _IOW('T', 202, int)
    "TUNSETIFF": ("w", 202, 4, 0x400454CA, 0x800454CA, 0x800454CA),
    # TUNGETIFF _IOR('T', 210, unsigned int)
    "TUNGETIFF": ("r", 210, 4, 0x800454D2, 0x400454D2, 0x400454D2),
    # TUNGETDEVNETNS _IO('T', 227)
    "TUNGETDEVNETNS": ("n", 227, 0, 0x54E3, 0x200054E3, 0x54E3),
}


def _call(enc: Any, how: str, nr: int) -> int:
    if how == "w":
        return _ioctl.iow("T", nr, "int", enc=enc)
    if how == "r":
        return _ioctl.ior("T", nr, "unsigned int", enc=enc)
    return _ioctl.io("T", nr, enc=enc)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@pytest.mark.parametrize("family,column", [(GENERIC, 3), (THREE_BIT, 4), (PARISC, 5)], ids=["generic", "three-bit", "parisc"])
def test_published_request_numbers(name: str, family: Enc, column: int) -> None:
    how, nr, size, *_ = PUBLISHED[name]
    published = PUBLISHED[name][column]
    direction = {"w": family.write, "r": family.read, "n": family.none}[how]
    # The published number is what the header formula gives...
    assert kernel_ioc(family, direction, "T", nr, size) == published
    # ...and what _ioctl gives for every machine of that family.
    for machine, enc in MACHINES.items():
        if enc == family:
            assert _call(_ioctl.encoding_for(machine), how, nr) == published, machine


def test_module_requests_use_the_running_encoding() -> None:
    assert _ioctl.ENCODING == _ioctl.encoding_for(os.uname().machine)
    assert _ioctl.TUNSETIFF == _ioctl.iow("T", 202, "int", enc=_ioctl.ENCODING)
    assert _ioctl.TUN_REQUESTS["TUNGETIFF"] == _ioctl.TUNGETIFF


def test_tun_requests_are_distinct_type_t_numbers() -> None:
    values = list(_ioctl.TUN_REQUESTS.values())
    assert len(set(values)) == len(values), "two TUN* names share a request number"
    for name, value in _ioctl.TUN_REQUESTS.items():
        assert 0 <= value < 2**32, name
        assert (value >> 8) & 0xFF == ord("T"), name
        assert 200 <= value & 0xFF <= 255, name


@pytest.mark.parametrize("family", [GENERIC, THREE_BIT, PARISC], ids=["generic", "three-bit", "parisc"])
def test_size_field_limit(family: Enc) -> None:
    biggest = (1 << family.sizebits) - 1
    assert _ioctl.ior("T", 1, f"char[{biggest}]", enc=_ioctl.IocEncoding(**family._asdict())) == kernel_ioc(
        family, family.read, "T", 1, biggest
    )
    with pytest.raises(ValueError):
        _ioctl.iow("T", 1, f"char[{biggest + 1}]", enc=_ioctl.IocEncoding(**family._asdict()))


# ---- configuration structs: sockaddr_in/in6, in6_ifreq, (rt)netlink -------------
#
# (cdecl, native struct format, field paths in format order, strategies).
# Byte-array fields are given as bytes; nested fields as dotted paths.

bytes8 = st.binary(min_size=8, max_size=8)
bytes16 = st.binary(min_size=16, max_size=16)
u32 = st.integers(0, 2**32 - 1)

NEW_STRUCTS = [
    ("struct sockaddr_in", "@HHI8s", ["sin_family", "sin_port", "sin_addr.s_addr", "sin_zero"], [u16, u16, u32, bytes8]),
    ("struct sockaddr_in6", "@HHI16sI", ["sin6_family", "sin6_port", "sin6_flowinfo", "sin6_addr.s6_addr", "sin6_scope_id"], [u16, u16, u32, bytes16, u32]),
    ("struct in6_ifreq", "@16sIi", ["ifr6_addr.s6_addr", "ifr6_prefixlen", "ifr6_ifindex"], [bytes16, u32, i32]),
    ("struct sockaddr_nl", "@HHII", ["nl_family", "nl_pad", "nl_pid", "nl_groups"], [u16, u16, u32, u32]),
    ("struct nlmsghdr", "@IHHII", ["nlmsg_len", "nlmsg_type", "nlmsg_flags", "nlmsg_seq", "nlmsg_pid"], [u32, u16, u16, u32, u32]),
    ("struct nlmsgerr", "@iIHHII", ["error", "msg.nlmsg_len", "msg.nlmsg_type", "msg.nlmsg_flags", "msg.nlmsg_seq", "msg.nlmsg_pid"], [i32, u32, u16, u16, u32, u32]),
    ("struct rtattr", "@HH", ["rta_len", "rta_type"], [u16, u16]),
    ("struct ifaddrmsg", "@BBBBI", ["ifa_family", "ifa_prefixlen", "ifa_flags", "ifa_scope", "ifa_index"], [u8, u8, u8, u8, u32]),
    ("struct rtmsg", "@BBBBBBBBI", ["rtm_family", "rtm_dst_len", "rtm_src_len", "rtm_tos", "rtm_table", "rtm_protocol", "rtm_scope", "rtm_type", "rtm_flags"], [u8] * 8 + [u32]),
    ("struct ifinfomsg", "@BBHiII", ["ifi_family", "__ifi_pad", "ifi_type", "ifi_index", "ifi_flags", "ifi_change"], [u8, u8, u16, i32, u32, u32]),
]


def _set_path(p: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        p = getattr(p, part)
    if isinstance(value, bytes):
        ffi.memmove(getattr(p, leaf), value, len(value))
    else:
        setattr(p, leaf, value)


def _get_path(p: Any, path: str, like: Any) -> Any:
    for part in path.split("."):
        p = getattr(p, part)
    return ffi.unpack(ffi.cast("char *", p), len(like)) if isinstance(like, bytes) else p


@pytest.mark.parametrize("cdecl, fmt, fields, strategies", NEW_STRUCTS, ids=[s[0] for s in NEW_STRUCTS])
def test_configuration_struct_round_trip(cdecl: str, fmt: str, fields: List[str], strategies: List[Any]) -> None:
    assert struct.calcsize(fmt) == ffi.sizeof(cdecl), f"{cdecl}: the format and cffi disagree on the size"

    @PROPS
    @given(st.tuples(*strategies))
    def round_trip(values: Tuple[Any, ...]) -> None:
        p = ffi.new(f"{cdecl} *")
        for path, value in zip(fields, values):
            _set_path(p, path, value)
        assert struct.unpack(fmt, _raw(p)) == values
        q = _cast_from(cdecl, struct.pack(fmt, *values))
        assert tuple(_get_path(q, path, v) for path, v in zip(fields, values)) == values

    round_trip()


def test_netlink_parsers_use_the_declared_layouts() -> None:
    """The struct formats _netlink and config parse answers with match cffi's layouts."""
    from tuntap_cffi import _netlink

    assert _netlink._NLMSG_HDR.size == ffi.sizeof("struct nlmsghdr") == _netlink.NLMSG_HDRLEN
    assert _netlink._RTA_HDR.size == ffi.sizeof("struct rtattr")
    assert struct.calcsize("=BBBBI") == ffi.sizeof("struct ifaddrmsg")  # config.list_addresses
    assert struct.calcsize("=BBBBBBBBI") == ffi.sizeof("struct rtmsg")  # config.list_routes


@PROPS
@given(kind=st.integers(0, 0x3FFF), data=st.binary(max_size=64))
def test_rtattr_build_and_parse_round_trip(kind: int, data: bytes) -> None:
    from tuntap_cffi import _netlink

    raw = _netlink.attr(kind, data)
    assert len(raw) % 4 == 0
    assert [(k, bytes(v)) for k, v in _netlink.parse_attrs(memoryview(raw + _netlink.attr(1, b"x")))] == [(kind, data), (1, b"x")]


@PROPS
@given(garbage=st.binary(max_size=64))
def test_rtattr_parser_never_reads_past_the_end(garbage: bytes) -> None:
    from tuntap_cffi import _netlink

    for _kind, value in _netlink.parse_attrs(memoryview(garbage)):
        assert len(value) <= len(garbage)


# ---- the virtio-net header forms: offload.VirtioNetHdr against the declarations ----

# Each size, the struct tun reads and writes at it, and where the 10 fields of
# struct virtio_net_hdr live in it (the _v1 forms nest it as .hdr / .hash_hdr.hdr).
VNET_FORMS = [
    (10, "struct virtio_net_hdr", ""),
    (12, "struct virtio_net_hdr_v1", ""),
    (20, "struct virtio_net_hdr_v1_hash", "hdr."),
    (24, "struct virtio_net_hdr_v1_hash_tunnel", "hash_hdr.hdr."),
]
VNET_BASE = ["flags", "gso_type", "hdr_len", "gso_size", "csum_start", "csum_offset"]


@pytest.mark.parametrize("size, cdecl, base", VNET_FORMS, ids=[f[1] for f in VNET_FORMS])
def test_virtio_net_header_forms_agree_with_the_declarations(size: int, cdecl: str, base: str) -> None:
    from tuntap_cffi.offload import VirtioNetHdr

    assert ffi.sizeof(cdecl) == size

    @PROPS
    @given(head=st.tuples(u8, u8, u16, u16, u16, u16), num=u16, hash_value=u32, report=u16, outer=u16, inner=u16)
    def round_trip(head: Tuple[int, ...], num: int, hash_value: int, report: int, outer: int, inner: int) -> None:
        buf = bytearray(size)
        hdr = VirtioNetHdr(buf, size)
        hdr.set(*head)
        if size >= 12:
            hdr.num_buffers = num
        if size >= 20:
            hdr.hash_value, hdr.hash_report = hash_value, report
        if size >= 24:
            hdr.outer_th_offset, hdr.inner_nh_offset = outer, inner
        p = _cast_from(cdecl, bytes(buf))
        seen = tuple(_get_path(p, base + name, 0) for name in VNET_BASE)
        assert seen == head
        if size >= 12:
            assert _get_path(p, ("hdr." if size == 20 else "hash_hdr.hdr." if size == 24 else "") + "num_buffers", 0) == num
        if size >= 20:
            hh = "hash_hdr." if size == 24 else ""
            # __le16 halves whatever the host's order: the C fields hold them little-endian.
            lo, hi = (int.from_bytes(bytes(buf[o : o + 2]), "little") for o in (12, 14))
            assert (lo | hi << 16) == hash_value
            assert _get_path(p, hh + "hash_report", 0) == int.from_bytes(report.to_bytes(2, "little"), sys.byteorder)
        if size >= 24:
            assert (_get_path(p, "outer_th_offset", 0), _get_path(p, "inner_nh_offset", 0)) == tuple(
                int.from_bytes(v.to_bytes(2, "little"), sys.byteorder) for v in (outer, inner))
        # And back: the bytes C would write read the same through VirtioNetHdr.
        again = VirtioNetHdr(bytes(buf), size)
        assert again.unpack() == head and bytes(again) == bytes(buf)
        if size >= 20:
            assert (again.hash_value, again.hash_report) == (hash_value, report)
        if size >= 24:
            assert (again.outer_th_offset, again.inner_nh_offset) == (outer, inner)

    round_trip()
