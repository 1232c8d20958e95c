"""Kernel-side packet filters of a Device: attach_filter, detach_filter, filter, filter_linktype.

Internal: :class:`FilterConfig` is a base of :class:`~tuntap_cffi.device.Device`
(as ``_link.LinkConfig`` is), which is where these members are documented and
used.  The programs are :mod:`tuntap_cffi.bpf`'s (checked, or compiled from
an expression by libpcap); the platform backend attaches them
(``_linux.backend``: ``TUNATTACHFILTER`` on a TAP, an eBPF translation with
``TUNSETFILTEREBPF`` on a TUN).  A call holds the device's fd across
Python code, so it announces itself (``_announce``) and close() does not
free the number under it.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from . import _backend, bpf
from ._announce import announced
from ._capabilities import Feature
from ._constants import DeviceKind
from .errors import DeviceClosedError

__all__ = ["FilterConfig"]


class FilterConfig:
    """The kernel-side filter of a Device (a base class of it: see there)."""

    # What these members use of the Device (set in its __init__).
    _fd: int
    _name: str
    _kind: DeviceKind
    _closed: bool
    _filter: Optional[Tuple[bpf.Instruction, ...]]  # what attach_filter attached, None before

    # The announcements: the Device binds its FdLife's methods here (see _lifecycle).
    _enter: Callable[[], int]
    _exit: Callable[[int], None]
    _others_inside: Callable[[], bool]

    @property
    def filter_linktype(self) -> int:
        """The pcap link type a filter for this device is compiled for (see :mod:`tuntap_cffi.bpf`).

        ``LINKTYPE_ETHERNET`` for a TAP, ``LINKTYPE_RAW`` (IP packets) for a
        TUN, whatever ``packet_info`` and ``vnet_hdr`` say: the kernel runs
        the filter before it adds those headers.
        """
        return bpf.LINKTYPE_ETHERNET if self._kind is DeviceKind.TAP else bpf.LINKTYPE_RAW

    @property
    def filter(self) -> Optional[Tuple[bpf.Instruction, ...]]:
        """The program this Device attached with :meth:`attach_filter`, or None.

        The kernel cannot be asked: ``TUNGETFILTER`` returns only the length
        and a pointer into whichever process attached one, and keeps them
        after a detach.
        """
        return self._filter

    @announced
    def attach_filter(self, program: bpf.Program) -> Tuple[bpf.Instruction, ...]:
        """Attach a kernel-side filter to the interface; return the instructions attached.

        *program* is a tcpdump-syntax expression (compiled by libpcap for
        :attr:`filter_linktype`) or a sequence of raw ``(code, jt, jf, k)``
        classic BPF instructions.  The kernel runs it on every packet before
        queuing it for the reader: a packet it rejects is dropped there
        (counted in the interface's ``tx_dropped``) and wakes no reader.
        It replaces any filter attached before, and applies to the whole
        interface (every queue of a multi-queue one).  A TAP takes the
        classic program (``TUNATTACHFILTER``); a TUN an eBPF translation of
        it (``TUNSETFILTEREBPF``, Linux 4.16, loading it needs CAP_BPF or
        CAP_SYS_ADMIN).

        TypeError/ValueError for a bad program (with libpcap's message for
        an expression) before any syscall; :class:`LibpcapNotFoundError`
        for an expression when libpcap is not installed; the kernel's
        refusals as :class:`TunTapError` subclasses.
        """
        _backend.require(Feature.FILTER, self._name)
        if self._closed:
            raise DeviceClosedError(self._name)
        if isinstance(program, str):
            checked = bpf.check_program(bpf.compile_filter(program, self.filter_linktype))
        else:
            checked = bpf.check_program(program)
        _backend.current().attach_filter(self._fd, self._name, self._kind is DeviceKind.TAP, checked)
        self._filter = checked
        return checked

    @announced
    def detach_filter(self) -> None:
        """Remove the interface's filter: every packet reaches the reader again.  Harmless without one."""
        _backend.require(Feature.FILTER, self._name)
        if self._closed:
            raise DeviceClosedError(self._name)
        _backend.current().detach_filter(self._fd, self._name, self._kind is DeviceKind.TAP)
        self._filter = None
