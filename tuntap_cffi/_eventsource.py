"""What the link-event iterator (``events.LinkEvents``) asks of a platform: a source of the kernel's notifications.

Facts that shape this module:

- The iterator (its blocking and async waits, close, the one consumer, the
  diff against the last state, the resync after a loss) is the same on
  every platform; what differs is the socket and its messages: rtnetlink
  on Linux (``_nlevents``), PF_ROUTE on the BSDs (``_bsdevents``).  So a
  platform gives an :class:`EventSource` (the backend's ``event_source``)
  and the iterator hands it an :class:`EventSink` to tell what it read.
- A source reports states, not differences: the whole link state of an
  interface message, each address of an address message; the iterator
  keeps what it reported last and yields what changed.
"""

from __future__ import annotations

import errno
from typing import List, Protocol, Tuple

from ._netvalues import Address, LinkState
from .errors import error_from_errno

__all__ = ["EventSink", "EventSource", "read_failed"]


class EventSink(Protocol):
    """What a source tells the iterator, for the interface it watches only (the iterator's own, private methods)."""

    def _link(self, state: LinkState) -> None:
        """The interface's whole state, as a link message carried it."""

    def _address(self, address: Address, added: bool) -> None:
        """An address message: *address* added (True) or removed."""

    def _deleted(self) -> None:
        """The interface is gone."""

    def _lost(self) -> None:
        """The kernel dropped notifications (ENOBUFS)."""


class EventSource(Protocol):
    """A subscribed socket and how to read it (made by the backend's ``event_source``)."""

    @property
    def fd(self) -> int:
        """The socket to poll for POLLIN (an event loop's reader fd too)."""

    def receive(self, sink: EventSink) -> bool:
        """Read one datagram without blocking and tell *sink* what it says; False when none is queued."""

    def drain(self) -> None:
        """Drop every queued datagram (after a loss: older than the state :meth:`snapshot` reads next)."""

    def snapshot(self) -> Tuple[LinkState, List[Address]]:
        """The interface's state and addresses now (an OSError with ENODEV if it is gone)."""

    def close(self) -> None:
        """Close the socket (once; later calls do nothing)."""


def read_failed(err: int, sink: EventSink, op: str, name: str) -> bool:
    """A source's read failed with *err* (the host's number): :meth:`EventSource.receive`'s answer, or the error.

    EAGAIN: nothing queued (False); EINTR: try again (True); ENOBUFS: the
    kernel dropped notifications, told to *sink* (True); anything else
    raises the library's error for *op* on *name*.
    """
    if err in (errno.EAGAIN, errno.EINTR):
        return err == errno.EINTR
    if err == errno.ENOBUFS:
        sink._lost()
        return True
    raise error_from_errno(err, op, name, f"cannot read the link events of {name}")
