"""Kernel-side packet filters: classic BPF programs from tcpdump expressions (libpcap) or raw instructions.

Facts that shape this module (drivers/net/tun.c, net/core/filter.c):

- ``tun_net_xmit`` runs the filters on each packet the stack hands the
  device, before it is queued for the reader: a packet the filter rejects
  is freed there and counted in the interface's ``tx_dropped``
  (``/sys/class/net/NAME/statistics/tx_dropped``); the reader is never
  woken for it.
- What a filter sees is the packet as transmitted, from ``skb->data``: the
  Ethernet header on a TAP, the IP header on a TUN.  The ``tun_pi`` and
  virtio-net headers are only built when the reader reads
  (``tun_put_user``), so ``packet_info`` and ``vnet_hdr`` change nothing: a
  TAP's program is DLT_EN10MB's, a TUN's DLT_RAW's, always.
- ``TUNATTACHFILTER`` (classic BPF, a ``struct sock_fprog``) is refused on
  a TUN (EINVAL, "Can be set only for TAPs").  A TUN takes
  ``TUNSETFILTEREBPF`` (4.16): the fd of a loaded eBPF program of type
  ``BPF_PROG_TYPE_SOCKET_FILTER``.  So for a TUN the classic program is
  translated here into eBPF (:func:`to_ebpf`, instruction by instruction as
  the kernel's ``bpf_convert_filter`` does for sockets) and loaded with
  ``bpf(BPF_PROG_LOAD)``, which needs CAP_BPF or CAP_SYS_ADMIN.
- A filter returns how many bytes of the packet to keep: 0 drops it, more
  than its length keeps it whole (libpcap's programs return 262144).
- libpcap compiles expressions (``pcap_open_dead`` + ``pcap_compile``), in
  cffi ABI mode with declarations of its own (it is another library than
  libc), loaded at the first compile: a dependency of the field, not of
  the package.  ``pcap_compile`` is not thread-safe before libpcap 1.8:
  compiles take one lock.
"""

from __future__ import annotations

import errno
import struct
import sys
import threading
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import LibpcapNotFoundError

__all__ = [
    "Instruction", "Program", "compile_filter", "check_program", "to_ebpf", "LINKTYPE_ETHERNET", "LINKTYPE_RAW",
    "BPF_MAXINSNS", "LIBPCAP_NAMES",
]

LINKTYPE_ETHERNET = 1  #: a TAP's frames (pcap.LINKTYPE_ETHERNET)
LINKTYPE_RAW = 101  #: a TUN's IP packets (pcap.LINKTYPE_RAW)
BPF_MAXINSNS = 4096  #: <linux/bpf_common.h>: the most instructions a classic program may have


class Instruction(NamedTuple):
    """One classic BPF instruction, ``struct sock_filter`` (libpcap's ``struct bpf_insn``)."""

    code: int  #: 16 bits: class | size | mode, or class | op | source
    jt: int  #: 8 bits: instructions to skip when a conditional jump is taken
    jf: int  #: 8 bits: ... when it is not
    k: int  #: 32 bits: the constant (offset, immediate, jump length)


#: What :meth:`Device.attach_filter` takes: a tcpdump expression or raw instructions.
Program = Union[str, Sequence[Tuple[int, int, int, int]]]

# ----------------------------------------------------------- classic BPF opcodes (<linux/bpf_common.h>, filter.h)
_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_W, _H, _B = 0x00, 0x08, 0x10
_IMM, _ABS, _IND, _MEM, _LEN, _MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_ADD, _SUB, _MUL, _DIV, _OR, _AND, _LSH, _RSH, _NEG, _MOD, _XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0)
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_K, _X = 0x00, 0x08
_RET_A = 0x10
_TAX, _TXA = 0x00, 0x80
_MEMWORDS = 16  # BPF_MEMWORDS: scratch slots M[0..15]
_SKF_AD_OFF = -0x1000  # loads at [-0x1000, 0) are socket "ancillary data", not packet bytes

_SIZES = {_W: 4, _H: 2, _B: 1}
_ALU_OPS = {_ADD, _SUB, _MUL, _DIV, _OR, _AND, _LSH, _RSH, _NEG, _MOD, _XOR}
_JUMPS = {_JEQ, _JGT, _JGE, _JSET}


def _valid_code(code: int) -> bool:
    """Whether *code* is one of the classic instructions the kernel's checker accepts."""
    cls = code & 0x07
    if code > 0xFF:
        return False
    if cls == _LD:
        return code in {_LD | s | m for s in _SIZES for m in (_ABS, _IND)} | {_LD | _W | _IMM, _LD | _W | _MEM,
                                                                            _LD | _W | _LEN}
    if cls == _LDX:
        return code in (_LDX | _W | _IMM, _LDX | _W | _MEM, _LDX | _W | _LEN, _LDX | _B | _MSH)
    if cls in (_ST, _STX):
        return code == cls
    if cls == _ALU:
        return code & 0xF0 in _ALU_OPS and (code & 0xF0 != _NEG or code == _ALU | _NEG)
    if cls == _JMP:
        return code == _JMP | _JA or code & 0xF0 in _JUMPS
    if cls == _RET:
        return code in (_RET | _K, _RET | _RET_A)  # (no RET X in Linux's classic BPF)
    return code in (_MISC | _TAX, _MISC | _TXA)


def _check_field(index: int, name: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"instruction {index}: {name} must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"instruction {index}: {name} must be 0..{(1 << bits) - 1}, not {value!r}")
    return value


def check_program(program: Sequence[Tuple[int, int, int, int]]) -> Tuple[Instruction, ...]:
    """Return *program* as Instructions if the kernel's classic-BPF checker would accept it; else raise.

    *program* is a sequence of ``(code, jt, jf, k)``.  TypeError for a wrong
    type; ValueError for a length outside 1..4096 (BPF_MAXINSNS), a field out
    of range (code 16 bits, jt/jf 8, k 32), an unknown opcode, a jump out
    of the program, a division by constant 0, a shift by 32 or more, a
    scratch slot past M[15], a last instruction that is not a return, or a
    scratch slot read before it is written.  Left to the kernel (its refusal
    is a TunTapError): a TUN's eBPF verifier refuses unreachable code.
    """
    if isinstance(program, (str, bytes, bytearray)) or not isinstance(program, Sequence):
        raise TypeError(f"a filter program is a sequence of (code, jt, jf, k) tuples, not {type(program).__name__}")
    if not 1 <= len(program) <= BPF_MAXINSNS:
        raise ValueError(f"a filter program has 1..{BPF_MAXINSNS} instructions, not {len(program)}")
    out: List[Instruction] = []
    for i, insn in enumerate(program):
        if isinstance(insn, (str, bytes)) or not isinstance(insn, Sequence) or len(insn) != 4:
            raise TypeError(f"instruction {i} must be a (code, jt, jf, k) tuple, not {insn!r}")
        # (a list: PyPy reports a TypeError raised inside a generator being unpacked as its own)
        code, jt, jf, k = [_check_field(i, n, v, b) for n, v, b in zip(("code", "jt", "jf", "k"), insn, (16, 8, 8, 32))]
        if not _valid_code(code):
            raise ValueError(f"instruction {i}: unknown opcode {code:#06x}")
        cls, op = code & 0x07, code & 0xF0
        if cls == _JMP:
            reach = i + 1 + (k if op == _JA else max(jt, jf))
            if reach >= len(program):
                raise ValueError(f"instruction {i}: jumps past the end of the program ({len(program)} instructions)")
        if cls == _ALU and code & _X == _K and (op in (_DIV, _MOD) and k == 0 or op in (_LSH, _RSH) and k >= 32):
            raise ValueError(f"instruction {i}: {'division by 0' if op in (_DIV, _MOD) else f'shift by {k}'}")
        if (cls in (_LD, _LDX) and code & 0xE0 == _MEM or cls in (_ST, _STX)) and k >= _MEMWORDS:
            raise ValueError(f"instruction {i}: scratch slot M[{k}] does not exist (M[0]..M[15])")
        out.append(Instruction(code, jt, jf, k))
    if out[-1].code & 0x07 != _RET:
        raise ValueError("the last instruction of a filter program must be a return (BPF_RET)")
    _check_scratch_reads(out)
    return tuple(out)


def _check_scratch_reads(program: Sequence[Instruction]) -> None:
    """Raise ValueError if a path reads a scratch slot M[k] it has not written (the kernel's check_load_and_stores).

    Jumps go forward only: one pass, each instruction starting from the
    slots written on every path into it.
    """
    valid_at = [0xFFFF] * len(program)  # slots written on every path reaching each instruction
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(program):
        valid &= valid_at[pc]
        if code in (_ST, _STX):
            valid |= 1 << k
        elif code in (_LD | _W | _MEM, _LDX | _W | _MEM) and not valid >> k & 1:
            raise ValueError(f"instruction {pc}: reads M[{k}] before it is written on some path to it")
        elif code == _JMP | _JA:
            valid_at[pc + 1 + k] &= valid
            valid = 0xFFFF
        elif code & 0x07 == _JMP:
            valid_at[pc + 1 + jt] &= valid
            valid_at[pc + 1 + jf] &= valid
            valid = 0xFFFF


# ------------------------------------------------------------------ libpcap

#: Where libpcap is looked for, in order: Fedora/Arch, Debian/Ubuntu, a -dev symlink, macOS.
LIBPCAP_NAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so", "libpcap.A.dylib", "libpcap.dylib")

# <pcap/pcap.h>, <pcap/bpf.h>: the five calls a compile makes.  struct
# bpf_insn has struct sock_filter's layout; pcap_t stays opaque.
_PCAP_CDEF = """
typedef struct pcap pcap_t;
struct bpf_insn { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
struct bpf_program { unsigned int bf_len; struct bpf_insn *bf_insns; };
pcap_t *pcap_open_dead(int linktype, int snaplen);
int pcap_compile(pcap_t *p, struct bpf_program *fp, const char *str, int optimize, uint32_t netmask);
void pcap_freecode(struct bpf_program *fp);
char *pcap_geterr(pcap_t *p);
void pcap_close(pcap_t *p);
"""
# pcap_open_dead takes a DLT_ value, not the file's LINKTYPE_ (DLT_RAW is 14 on OpenBSD, 12 elsewhere).
_DLT = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: 14 if sys.platform.startswith("openbsd") else 12}
_SNAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN: "keep the whole packet"
_NETMASK_UNKNOWN = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN: only `ip broadcast` needs a real one
_pcap: Optional[Tuple[Any, Any]] = None  # (ffi, lib), loaded at the first compile
_pcap_lock = threading.Lock()


def _libpcap() -> Tuple[Any, Any]:
    """(ffi, lib) of libpcap (tried by :data:`LIBPCAP_NAMES`), loaded once; LibpcapNotFoundError if none loads."""
    global _pcap
    if _pcap is None:
        import cffi  # (here: importing this module loads nothing)

        ffi = cffi.FFI()
        ffi.cdef(_PCAP_CDEF)
        tried = []
        for name in LIBPCAP_NAMES:
            try:
                _pcap = (ffi, ffi.dlopen(name))
                break
            except OSError as exc:
                tried.append(f"{name}: {exc}")
        else:
            raise LibpcapNotFoundError(
                errno.ENOENT, "compiling a filter expression needs libpcap, which is not installed: install the package "
                "libpcap0.8 (Debian/Ubuntu: apt-get install libpcap0.8), libpcap (Fedora: dnf install libpcap; "
                "macOS: brew install libpcap), or pass raw (code, jt, jf, k) instructions; tried "
                + "; ".join(tried))
    return _pcap


def compile_filter(expression: str, linktype: int) -> List[Instruction]:
    """Compile a tcpdump-syntax *expression* into classic BPF instructions for *linktype*.

    *linktype* is :data:`LINKTYPE_RAW` (a TUN's IP packets) or
    :data:`LINKTYPE_ETHERNET` (a TAP's frames); ``Device.filter_linktype``
    says which a device needs.  The result can be inspected, stored and
    passed to ``Device.attach_filter``.  TypeError/ValueError for a bad
    argument, ValueError with libpcap's message for an expression it
    cannot compile, :class:`LibpcapNotFoundError` when libpcap is not
    installed.
    """
    if not isinstance(expression, str):
        raise TypeError(f"a filter expression is a str, not {type(expression).__name__}")
    if "\0" in expression:
        raise ValueError(f"a filter expression cannot contain NUL: {expression!r}")
    if isinstance(linktype, bool) or linktype not in _DLT:
        raise ValueError(f"linktype must be LINKTYPE_RAW ({LINKTYPE_RAW}, TUN) or LINKTYPE_ETHERNET "
                         f"({LINKTYPE_ETHERNET}, TAP), not {linktype!r}")
    ffi, lib = _libpcap()
    with _pcap_lock:
        handle = lib.pcap_open_dead(_DLT[linktype], _SNAPLEN)
        if handle == ffi.NULL:
            raise MemoryError("pcap_open_dead failed")
        try:
            prog = ffi.new("struct bpf_program *")
            if lib.pcap_compile(handle, prog, expression.encode(), 1, _NETMASK_UNKNOWN) < 0:
                message = ffi.string(lib.pcap_geterr(handle)).decode(errors="replace")
                raise ValueError(f"cannot compile filter {expression!r}: {message}")
            try:
                insns = prog.bf_insns
                return [Instruction(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(prog.bf_len)]
            finally:
                lib.pcap_freecode(prog)
        finally:
            lib.pcap_close(handle)


# --------------------------------------------------------- classic -> eBPF (for a TUN)

# eBPF (<linux/bpf.h>): classes, sizes and modes as in classic BPF plus these.
_E_ALU64, _E_JMP = 0x07, 0x05
_E_MOV, _E_JNE, _E_EXIT = 0xB0, 0x50, 0x90
_E_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_E_STX_MEM_W = 0x63  # BPF_STX | BPF_MEM | BPF_W
# Registers: A in R0 (where LD_ABS/LD_IND leave their result), X in R7,
# scratch in R8, the skb in R6 (which LD_ABS/LD_IND read implicitly), the
# stack frame in R10; R1-R5 are clobbered by LD_ABS/LD_IND.
_A, _CTX_IN, _CTX, _XR, _TMP, _FP = 0, 1, 6, 7, 8, 10
_SKB_LEN = 0  # offsetof(struct __sk_buff, len)
# struct bpf_insn's second byte holds dst_reg:4, src_reg:4, in bit-field order.
_LITTLE = sys.byteorder == "little"


def _e(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> List[Any]:
    return [code, dst, src, off, imm - (1 << 32) if imm >= 1 << 31 else imm]


def to_ebpf(program: Sequence[Tuple[int, int, int, int]]) -> bytes:
    """Translate a classic program into eBPF socket-filter instructions (``struct bpf_insn[]``, native order).

    Same verdicts on the same packets: A/X are 32-bit, an out-of-bounds
    load returns 0 (as LD_ABS does), division by X = 0 returns 0.
    ValueError for what has no translation here: loads of socket ancillary
    data (``SKF_AD_*`` offsets, which libpcap emits only for live captures).
    """
    prog = check_program(program)
    out: List[List[Any]] = [_e(_E_ALU64 | _E_MOV | _X, _CTX, _CTX_IN), _e(_ALU | _E_MOV, _A), _e(_ALU | _E_MOV, _XR)]
    start: List[int] = []
    fixups: List[Tuple[int, int]] = []  # (eBPF index, classic target) of each jump

    def jump(code: int, target: int, dst: int = _A, src: int = 0, imm: int = 0) -> None:
        fixups.append((len(out), target))
        out.append(_e(code, dst, src, 0, imm))

    for i, (code, jt, jf, k) in enumerate(prog):
        start.append(len(out))
        cls, size, mode, op = code & 0x07, code & 0x18, code & 0xE0, code & 0xF0
        slot = -4 * (_MEMWORDS - k)  # M[k] on the stack
        if cls in (_LD, _LDX) and mode in (_ABS, _IND, _MSH):
            offset = k - (1 << 32) if k >= 1 << 31 else k
            if _SKF_AD_OFF <= offset < 0:
                raise ValueError(f"instruction {i}: a load of socket ancillary data (offset {offset:#x}) "
                                 "cannot run on a TUN; filter on packet bytes only")
        if cls == _LD:
            if mode in (_ABS, _IND):
                out.append(_e(_LD | size | mode, 0, _XR if mode == _IND else 0, 0, k))
            elif mode == _IMM:
                out.append(_e(_ALU | _E_MOV, _A, imm=k))
            elif mode == _LEN:
                out.append(_e(_E_LDX_MEM_W, _A, _CTX, _SKB_LEN))
            else:
                out.append(_e(_E_LDX_MEM_W, _A, _FP, slot))
        elif cls == _LDX:
            if mode == _IMM:
                out.append(_e(_ALU | _E_MOV, _XR, imm=k))
            elif mode == _LEN:
                out.append(_e(_E_LDX_MEM_W, _XR, _CTX, _SKB_LEN))
            elif mode == _MEM:
                out.append(_e(_E_LDX_MEM_W, _XR, _FP, slot))
            else:  # X = 4 * (P[k] & 0xf), A kept
                out += [_e(_E_ALU64 | _E_MOV | _X, _TMP, _A), _e(_LD | _B | _ABS, imm=k),
                        _e(_ALU | _AND, _A, imm=0xF), _e(_ALU | _LSH, _A, imm=2),
                        _e(_ALU | _E_MOV | _X, _XR, _A), _e(_E_ALU64 | _E_MOV | _X, _A, _TMP)]
        elif cls in (_ST, _STX):
            out.append(_e(_E_STX_MEM_W, _FP, _A if cls == _ST else _XR, slot))
        elif cls == _ALU:
            if op == _NEG:
                out.append(_e(_ALU | _NEG, _A))
            elif code & _X:
                if op in (_DIV, _MOD):  # classic BPF returns 0 on division by zero
                    out += [_e(_E_JMP | _E_JNE | _K, _XR, 0, 2, 0), _e(_ALU | _E_MOV, _A), _e(_E_JMP | _E_EXIT)]
                out.append(_e(_ALU | op | _X, _A, _XR))
            else:
                out.append(_e(_ALU | op | _K, _A, imm=k))
        elif cls == _JMP:
            if op == _JA:
                jump(_E_JMP | _JA, i + 1 + k, dst=0)
                continue
            src = _XR
            if not code & _X:  # eBPF sign-extends a 32-bit immediate: compare with a register instead
                out.append(_e(_ALU | _E_MOV, _TMP, imm=k))
                src = _TMP
            if jt == jf:
                jump(_E_JMP | _JA, i + 1 + jt, dst=0)
                continue
            jump(_E_JMP | op | _X, i + 1 + jt, _A, src)
            if jf:
                jump(_E_JMP | _JA, i + 1 + jf, dst=0)
        elif cls == _RET:
            if code == _RET | _K:
                out.append(_e(_ALU | _E_MOV, _A, imm=k))
            out.append(_e(_E_JMP | _E_EXIT))
        else:
            out.append(_e(_ALU | _E_MOV | _X, _XR, _A) if code & 0xF8 == _TAX else _e(_ALU | _E_MOV | _X, _A, _XR))
    for index, target in fixups:
        out[index][3] = start[target] - index - 1
    return b"".join(
        struct.pack("=BBhi", code, dst | src << 4 if _LITTLE else dst << 4 | src, off, imm)
        for code, dst, src, off, imm in out)
