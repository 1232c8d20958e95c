#!/usr/bin/env python3
"""Prototype, kept for the record: drain a full TUN queue with io_uring SQPOLL against read_batch.

Issue 4 asked to try an opt-in SQPOLL mode.  This drives the same pre-filled
RWF_NOWAIT READ_FIXED SQEs (256 slots) through an SQPOLL ring: the kernel's
SQ thread submits, Python bumps the tail and then either waits in
io_uring_enter(GETEVENTS) ("sqpoll_wait") or spins on the CQ tail
("sqpoll_spin"), against Device.read_batch on the same queue, 100,000
16-byte datagrams per drain, median of 5, one run.  x86-64 only as written
(plain loads/stores of the ring indices rely on its memory ordering).

    python3 bench/sqpoll_proto.py          # as root; CPython or PyPy
"""
import os, sys, time, socket, subprocess, statistics, errno
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tuntap_cffi import open_tun
from tuntap_cffi import _uring, batch
from tuntap_cffi._syscalls import ffi, lib

name = "ttsqp%d" % (os.getpid() % 1000)
N = 256
PKTS = 100000
dev = open_tun(name, nonblocking=True)
try:
    open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w").write("1")
    subprocess.run(["ip", "addr", "add", "198.18.232.1/24", "dev", name], check=True)
    dev.txqueuelen = 200000
    dev.up()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def fill_queue():
        for i in range(PKTS):
            s.sendto(b"x" * 16, ("198.18.232.2", 9))
    ring = dev.packet_ring(N)
    # SQPOLL ring with the same pre-filled SQEs
    p = ffi.new("struct io_uring_params *")
    p.flags = lib.IORING_SETUP_SQPOLL | lib.IORING_SETUP_CQSIZE
    p.sq_thread_idle = 1000
    p.cq_entries = 2 * N
    fd = lib.syscall(ffi.cast("long", _uring.NR_SETUP), ffi.cast("unsigned int", N), p)
    assert fd >= 0, ffi.errno
    u = _uring.Uring.__new__(_uring.Uring)
    u.fd = int(fd); u._maps = []; u._map(p); u.flags = p.flags; u.c_fd = ffi.cast("int", u.fd)
    iov = ffi.new("struct iovec *"); iov.iov_base = ring._ptr; iov.iov_len = N * ring.slot_size
    u.register(lib.IORING_REGISTER_BUFFERS, iov, 1)
    for i in range(N):
        sqe = u.sqes[i]
        sqe.opcode = lib.IORING_OP_READ_FIXED; sqe.fd = dev.fileno(); sqe.off = 0xFFFFFFFFFFFFFFFF
        sqe.addr = ring.slot_address(i); sqe.len = ring.slot_size; sqe.rw_flags = 0x8; sqe.buf_index = 0; sqe.user_data = i
    for i in range(N):
        u.sq_array[i] = i
    def sqpoll_drain(spin):
        total = 0
        while True:
            tail = u.sq_tail[0]
            u.sq_tail[0] = tail + N
            if u.sq_flags[0] & lib.IORING_SQ_NEED_WAKEUP:
                u.enter(0, 0, lib.IORING_ENTER_SQ_WAKEUP)
            head = u.cq_head[0]
            if spin:
                while u.cq_tail[0] - head < N:
                    pass
            else:
                while u.cq_tail[0] - head < N:
                    u.enter(0, N, lib.IORING_ENTER_GETEVENTS)
            k = 0
            mask = u.cq_mask
            for j in range(N):
                if u.cqes[(head + j) & mask].res > 0:
                    k += 1
            u.cq_head[0] = head + N
            total += k
            if k == 0:
                return total
    def lib_drain():
        total = 0
        while True:
            try:
                total += dev.read_batch(ring)
            except BlockingIOError:
                return total
    res = {"read_batch": [], "sqpoll_wait": [], "sqpoll_spin": []}
    for rnd in range(5):
        for kind in res:
            fill_queue()
            t = time.perf_counter_ns()
            n = lib_drain() if kind == "read_batch" else sqpoll_drain(kind == "sqpoll_spin")
            dt = time.perf_counter_ns() - t
            assert n >= PKTS, (kind, n)
            res[kind].append(dt / n)
    print(sys.implementation.name, {k: round(statistics.median(v)) for k, v in res.items()})
    u.close()
finally:
    dev.close()
