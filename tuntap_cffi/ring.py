"""PacketRing: preallocated slots for batches of packets (no syscalls here).

One slab (an anonymous mmap, so page-aligned and registrable with io_uring),
``slots`` fixed-size slots, and a lengths array.  A batch read fills it;
packet ``i`` of the batch lives in slot ``(start + i) % slots`` (io_uring
completes reads in the cyclic order they were queued, so the ring rotates
rather than copying).  Views are zero-copy.
"""

from __future__ import annotations

import mmap
from array import array
from typing import Any, Iterator

from ._syscalls import ffi
from ._validate import check_int_in

__all__ = ["PacketRing"]


class PacketRing:
    """*slots* buffers of *slot_size* bytes each, for ``read_batch``/``write_batch``.

    Create one with :meth:`Device.packet_ring` (slot size = what the device
    can deliver) or directly.  After ``n = dev.read_batch(ring)``,
    ``len(ring) == n`` and ``ring[i]`` is a memoryview of packet *i* (valid
    until the next batch into this ring).  To send a batch, fill slots
    (:meth:`slot`), :meth:`set_length` each and ``ring.count = k``, then
    ``dev.write_batch(ring)``.
    """

    __slots__ = ("slots", "slot_size", "_slab", "_view", "_ptr", "_lengths", "_owned_view", "_lengths_view", "start",
                 "count", "__weakref__")

    def __init__(self, slots: int, slot_size: int) -> None:
        check_int_in("slots", slots, 1, 32768)  # io_uring's SQ limit
        check_int_in("slot_size", slot_size, 1, 1 << 20)
        self.slots = slots
        self.slot_size = slot_size
        # Private: a fork()ed child's packets land in its own copy of the slab.
        self._slab = mmap.mmap(-1, slots * slot_size, flags=mmap.MAP_PRIVATE)
        self._view = memoryview(self._slab)
        self._ptr: Any = ffi.cast("char *", ffi.from_buffer(self._slab))
        self._lengths = array("i", bytes(4 * slots))  # length of packet i of the batch
        self._owned_view = memoryview(self._lengths)
        # What the lengths are read from: _owned_view, or (after an io_uring
        # batch on CPython) an int32 view straight into a copy of the
        # completion entries, which saves copying them out one by one.
        # Whoever writes a length calls _own_lengths() first.
        self._lengths_view = self._owned_view
        self.start = 0  #: slot of packet 0
        self.count = 0  #: packets in the ring

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> memoryview:
        """Packet *i* of the batch (``-count <= i < count``), a zero-copy view."""
        count = self.count
        if i < 0:
            i += count
        if not 0 <= i < count:
            raise IndexError(f"packet {i} of a batch of {count}")
        offset = ((self.start + i) % self.slots) * self.slot_size
        return self._view[offset : offset + self._lengths_view[i]]

    def __iter__(self) -> Iterator[memoryview]:
        view, lengths, size, slots, start = self._view, self._lengths_view, self.slot_size, self.slots, self.start
        for i in range(self.count):
            offset = ((start + i) % slots) * size
            yield view[offset : offset + lengths[i]]

    def __repr__(self) -> str:
        return f"<PacketRing {self.count}/{self.slots} packets, slots of {self.slot_size} bytes>"

    @property
    def lengths(self) -> memoryview:
        """The lengths of the batch's packets (a view of ``count`` ints)."""
        return self._lengths_view[: self.count]

    def slot(self, i: int) -> memoryview:
        """The whole buffer of packet position *i* (for filling before ``write_batch``)."""
        if not 0 <= i < self.slots:
            raise IndexError(f"slot {i} of {self.slots}")
        offset = ((self.start + i) % self.slots) * self.slot_size
        return self._view[offset : offset + self.slot_size]

    def set_length(self, i: int, n: int) -> None:
        """Record that packet position *i* holds *n* bytes."""
        if not 0 <= i < self.slots:
            raise IndexError(f"slot {i} of {self.slots}")
        if not 0 < n <= self.slot_size:
            raise ValueError(f"length {n} is outside 1..{self.slot_size}")
        if self._lengths_view is not self._owned_view:
            self._own_lengths()
        self._lengths[i] = n

    def _own_lengths(self) -> None:
        """Make the lengths array hold the current lengths (before anything writes to it)."""
        view = self._lengths_view
        if view is not self._owned_view:
            self._owned_view[: len(view)] = view
            self._lengths_view = self._owned_view

    def clear(self) -> None:
        """Empty the ring (``count = 0``, ``start = 0``)."""
        self.count = 0
        self.start = 0

    def slot_address(self, slot: int) -> int:
        """The address of physical slot *slot* (for the batch engines)."""
        return int(ffi.cast("uintptr_t", self._ptr + slot * self.slot_size))

    def close(self) -> None:
        """Release the slab (views handed out must be gone)."""
        self._view.release()
        self._slab.close()


def check_ring(ring: object, need: int, name: str) -> PacketRing:
    """Validate a ring argument against the bytes one packet can need."""
    if not isinstance(ring, PacketRing):
        raise TypeError(f"expected a PacketRing, not {type(ring).__name__}")
    if ring.slot_size < need:
        raise ValueError(
            f"the ring's slots of {ring.slot_size} bytes are smaller than the {need} bytes {name} can "
            "deliver: the kernel would truncate packets; use Device.packet_ring() or larger slots"
        )
    return ring

