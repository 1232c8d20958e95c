"""Forward packets between two TUN (or TAP) devices: a userspace wire.

    sudo python examples/forward.py tunA tunB --offload --queues 2

Each direction (and each queue) gets a thread running the batch loop

    n = src.read_batch(ring)     # every queued packet, one io_uring_enter
    dst.write_batch(ring)        # all of them back out, one io_uring_enter

or, with ``--threads pair`` (the default with ``--offload``), one thread
per queue pair polls both devices and moves whichever has packets.

With ``--offload`` both devices carry a virtio-net header and accept TSO/USO
super-packets: a 64 KiB TCP burst crosses as one packet instead of 45, and
is passed through unsplit (the receiving device takes the same header).
``--queues N`` opens N queues per device (IFF_MULTI_QUEUE); the kernel
spreads flows over them.  Prints "ready NAME_A NAME_B" when the devices
exist, statistics on exit (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import select
import signal
import sys
import threading
from typing import Dict, List

from tuntap_cffi import BatchWriteError, Device, DeviceClosedError, PacketRing, open_queues
from tuntap_cffi.device import TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6

OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6


class Stats:
    """Per-pump counters, read once at the end (each pump writes only its own)."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.batches = 0
        self.largest = 0
        self.gso = 0  # batches whose first packet's virtio-net header says GSO (sampled: cheap)
        self.dropped = 0


def move(src: Device, dst: Device, ring: PacketRing, hdr: int, stats: Stats) -> None:
    """Forward what *ring* holds to *dst* and count it."""
    n = len(ring)
    try:
        dst.write_batch(ring)
    except BatchWriteError as exc:  # e.g. the far side is down: count, go on
        stats.dropped += n - exc.written
    stats.batches += 1
    stats.packets += n
    lengths = ring.lengths  # sum/max run in C: no Python code per packet
    stats.bytes += sum(lengths)
    biggest = max(lengths)
    if biggest > stats.largest:
        stats.largest = biggest
    if hdr and ring[0][1]:  # gso_type, byte 1 of the virtio-net header
        stats.gso += 1


def pump_pair(a: Device, b: Device, slots: int, stats_ab: Stats, stats_ba: Stats) -> None:
    """Both directions of a queue pair in one thread, waking in one poll() for either.

    One thread means no GIL hand-offs between the directions and one wakeup
    where two threads would each take theirs.
    """
    a.blocking = b.blocking = False
    ring_a, ring_b = a.packet_ring(slots), b.packet_ring(slots)
    hdr = a.vnet_hdr_size
    poller = select.poll()
    fd_a, fd_b = a.fileno(), b.fileno()
    poller.register(fd_a, select.POLLIN)
    poller.register(fd_b, select.POLLIN)
    routes = {fd_a: (a, b, ring_a, stats_ab), fd_b: (b, a, ring_b, stats_ba)}
    try:
        while True:
            for fd, _events in poller.poll():  # a closed device reads as /dev/null: readable
                src, dst, ring, stats = routes[fd]
                try:
                    src.read_batch(ring)
                except BlockingIOError:
                    continue
                move(src, dst, ring, hdr, stats)
    except DeviceClosedError:
        pass


def pump(src: Device, dst: Device, slots: int, stats: Stats) -> None:
    """Move batches from *src* to *dst* until either is closed."""
    ring = src.packet_ring(slots)
    hdr = src.vnet_hdr_size
    try:
        while True:
            src.read_batch(ring)
            move(src, dst, ring, hdr, stats)
    except DeviceClosedError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="first interface name (created)")
    parser.add_argument("b", help="second interface name (created)")
    parser.add_argument("--tap", action="store_true", help="TAP devices instead of TUN")
    parser.add_argument("--offload", action="store_true", help="virtio-net headers with TSO/USO: forward super-packets")
    parser.add_argument("--queues", type=int, default=1, help="queues per device (default 1)")
    parser.add_argument("--slots", type=int, default=64, help="packets per batch (default 64)")
    parser.add_argument("--threads", choices=("pair", "direction"),
                        help="a thread per queue pair (both directions; the default with --offload: fewer wakeups "
                             "and GIL hand-offs) or per direction (the default without: two cores' worth of work)")
    parser.add_argument("--backend", choices=("auto", "io_uring", "loop"), default="auto", help="batch I/O backend")
    args = parser.parse_args()

    options: Dict[str, object] = {}
    if args.offload:
        options = {"vnet_hdr": True, "offload": OFFLOADS}
    side_a = open_queues(args.a, args.queues, tap=args.tap, **options)
    try:
        side_b = open_queues(args.b, args.queues, tap=args.tap, **options)
    except BaseException:
        for dev in side_a:
            dev.close()
        raise
    devices = side_a + side_b
    for dev in devices:
        dev.batch_backend = args.backend
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pumps: List[threading.Thread] = []
    stats: List[Stats] = []
    threads = args.threads or ("pair" if args.offload else "direction")
    for qa, qb in zip(side_a, side_b):
        if threads == "pair":
            pair = [Stats(), Stats()]
            stats += pair
            pumps.append(threading.Thread(target=pump_pair, args=(qa, qb, args.slots, *pair), daemon=True))
            continue
        for src, dst in ((qa, qb), (qb, qa)):
            st = Stats()
            stats.append(st)
            pumps.append(threading.Thread(target=pump, args=(src, dst, args.slots, st), daemon=True))
    for t in pumps:
        t.start()
    print(f"ready {side_a[0].name} {side_b[0].name} backend={devices[0].batch_backend}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    for dev in devices:
        dev.close()
    for t in pumps:
        t.join(5)
    for i, st in enumerate(stats):
        print(f"pump {i}: packets={st.packets} bytes={st.bytes} batches={st.batches} "
              f"largest={st.largest} gso={st.gso} dropped={st.dropped}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
