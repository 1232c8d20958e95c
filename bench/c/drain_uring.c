/* The batch floor of the benchmark: io_uring reads (and writes) of a TUN
 * fd, done the way tuntap_cffi's read_batch (write_batch) does them, in C,
 * with raw syscalls (no liburing; only the kernel's <linux/io_uring.h> for
 * the structures).
 *
 * One io_uring with 2N SQ entries and a CQ of 2N (IORING_SETUP_CQSIZE;
 * plus SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them, 6.1+, falling
 * back without them on EINVAL, as the library does), one slab of N slots
 * registered as fixed buffer 0, and N SQEs pre-filled once, SQE i on slot
 * i, user_data i.  As in the library, the SQEs name the fd through slot 0 of
 * a registered file table (IOSQE_FIXED_FILE), which holds the fd only
 * inside each io_uring_enter: SQE N (FILES_UPDATE fd -> slot 0) goes before
 * a batch's run and SQE N+1 (-1 -> slot 0) after it, both
 * IOSQE_CQE_SKIP_SUCCESS.  Plain fds where the kernel has no CQE_SKIP
 * (< 5.17) or refuses the table.
 *   reads:  IORING_OP_READ_FIXED of the whole slot, RWF_NOWAIT (an empty
 *           queue completes with -EAGAIN at once instead of arming a poll).
 *           A batch is: the SQ array from the tail set to N, 0..N-1, N+1;
 *           tail += N + 2, io_uring_enter(N + 2, N, GETEVENTS), count the
 *           CQEs with res > 0, head += N.  Drained when a batch returns no
 *           packet.  A result other than a length or -EAGAIN is an error.
 *   writes: IORING_OP_WRITE_FIXED of the packet preloaded in the slot.  A
 *           batch of k <= N likewise, k SQEs and CQEs: every CQE's res must
 *           be the packet's length.
 *
 * Built twice by the harness (bench/harness/build.py), into bench/_build/:
 *   drain_uring   (program)
 *       drain_uring FD N SLOT_SIZE
 *           FD is an inherited TUN fd.  Drains it and prints "COUNT NS":
 *           the packets read and the nanoseconds the loop took
 *           (CLOCK_MONOTONIC around the batches only; set-up excluded).
 *       drain_uring -w FD N SLOT_SIZE COUNT PACKET_LEN < packets
 *           Writes COUNT packets in batches of N; stdin holds K packets of
 *           PACKET_LEN bytes (slot i holds packet i % K).  Prints
 *           "COUNT NS" likewise.
 *   libdrainuring.so  (-DDRAIN_LIBRARY)  uring_new, uring_load, uring_block,
 *       uring_write_block, uring_free: called in-process through cffi by
 *       the interleaved comparisons.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

struct uring {
    int ring_fd;
    int fd;
    int fixed; /* the SQEs go through the registered file table */
    int update_fds[2]; /* the FILES_UPDATE SQEs' arguments: fd, -1 */
    unsigned sq_mask;
    int write;
    unsigned n;
    size_t slot;
    unsigned *sq_tail, *sq_array;
    unsigned *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
    struct io_uring_sqe *sqes;
    void *sq_map, *cq_map, *slab;
    size_t sq_map_len, cq_map_len, sqes_len, slab_len;
};

void uring_free(struct uring *u)
{
    if (!u)
        return;
    if (u->sqes && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_len);
    if (u->cq_map && u->cq_map != MAP_FAILED && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_len);
    if (u->sq_map && u->sq_map != MAP_FAILED)
        munmap(u->sq_map, u->sq_map_len);
    if (u->slab && u->slab != MAP_FAILED)
        munmap(u->slab, u->slab_len);
    if (u->ring_fd >= 0)
        close(u->ring_fd);
    free(u);
}

/* Map a ring made by io_uring_setup (fd rfd, parameters p): its SQ ring, CQ
 * ring and SQEs into u, from sq_map to cqes.  0, or -1 with errno set (what
 * was mapped is u's to free). */
static int uring_map(struct uring *u, int rfd, const struct io_uring_params *p)
{
    u->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    u->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    if (p->features & IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_map_len > u->sq_map_len)
            u->sq_map_len = u->cq_map_len;
        u->cq_map_len = u->sq_map_len;
    }
    u->sq_map = mmap(NULL, u->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED)
        return -1;
    if (p->features & IORING_FEAT_SINGLE_MMAP)
        u->cq_map = u->sq_map;
    else {
        u->cq_map = mmap(NULL, u->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_CQ_RING);
        if (u->cq_map == MAP_FAILED)
            return -1;
    }
    u->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        return -1;
    char *sq = u->sq_map, *cq = u->cq_map;
    u->sq_tail = (unsigned *)(sq + p->sq_off.tail);
    u->sq_array = (unsigned *)(sq + p->sq_off.array);
    u->cq_head = (unsigned *)(cq + p->cq_off.head);
    u->cq_tail = (unsigned *)(cq + p->cq_off.tail);
    u->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
    u->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    return 0;
}

/* Set up the ring on fd (N a power of two, like the library's rings); for
 * writes the SQEs get their lengths from uring_load().  NULL with errno set
 * on failure. */
struct uring *uring_new(int fd, unsigned n, unsigned slot, int write)
{
    struct uring *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->ring_fd = -1;
    u->fd = fd;
    u->write = write;
    u->n = n;
    u->slot = slot;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = 2 * n;
    int rfd = (int)syscall(__NR_io_uring_setup, 2 * n, &p);
    if (rfd < 0 && errno == EINVAL) { /* before 6.1: plain rings, as the library falls back */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = 2 * n;
        rfd = (int)syscall(__NR_io_uring_setup, 2 * n, &p);
    }
    if (rfd < 0)
        goto fail;
    u->ring_fd = rfd;
    if (p.sq_entries != 2 * n) {
        errno = EINVAL;
        goto fail;
    }
    if (uring_map(u, rfd, &p) < 0)
        goto fail;

    u->slab_len = (size_t)n * slot;
    u->slab = mmap(NULL, u->slab_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->slab == MAP_FAILED)
        goto fail;
    struct iovec iov = {.iov_base = u->slab, .iov_len = u->slab_len};
    if (syscall(__NR_io_uring_register, rfd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
        goto fail;
    int empty = -1;
    u->fixed = (p.features & IORING_FEAT_CQE_SKIP) &&
               syscall(__NR_io_uring_register, rfd, IORING_REGISTER_FILES, &empty, 1) == 0;
    u->update_fds[0] = fd;
    u->update_fds[1] = -1;
    for (unsigned k = 0; k < 2; k++) {
        struct io_uring_sqe *sqe = &u->sqes[n + k];
        memset(sqe, 0, sizeof *sqe);
        sqe->opcode = IORING_OP_FILES_UPDATE;
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
        sqe->fd = -1;
        sqe->off = 0; /* table slot */
        sqe->addr = (__u64)(unsigned long)&u->update_fds[k];
        sqe->len = 1;
        sqe->user_data = ~0ULL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = &u->sqes[i];
        memset(sqe, 0, sizeof *sqe);
        sqe->opcode = write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
        sqe->fd = u->fixed ? 0 : fd;
        sqe->flags = u->fixed ? IOSQE_FIXED_FILE : 0;
        sqe->off = (__u64)-1; /* the current position: a TUN is a stream */
        sqe->addr = (__u64)(unsigned long)((char *)u->slab + (size_t)i * slot);
        sqe->len = write ? 0 : slot;
        sqe->rw_flags = write ? 0 : RWF_NOWAIT;
        sqe->buf_index = 0;
        sqe->user_data = i;
    }
    return u;
fail:;
    int err = errno;
    uring_free(u);
    errno = err;
    return NULL;
}

/* Writes: put K packets of len bytes from blob into the slots (slot i gets
 * packet i % K) and set every SQE's length.  -1 if they do not fit. */
int uring_load(struct uring *u, const unsigned char *blob, size_t len, size_t k)
{
    if (!u->write || len == 0 || len > u->slot || k == 0)
        return -1;
    for (unsigned i = 0; i < u->n; i++) {
        memcpy((char *)u->slab + (size_t)i * u->slot, blob + (i % k) * len, len);
        u->sqes[i].len = (unsigned)len;
    }
    return 0;
}

/* One batch of k SQEs (the next k SQ positions): submit, wait for all k.
 * Reads: returns the packets read (res > 0).  Writes: returns k if every
 * write took its whole packet.  -errno for io_uring_enter's own failure or
 * the first completion that is neither (short write: -EIO, 0: -EPIPE). */
static long batch(struct uring *u, unsigned k)
{
    unsigned tail = *u->sq_tail, extra = u->fixed ? 2 : 0, total = k + extra;
    unsigned at = tail;
    if (u->fixed)
        u->sq_array[at++ & u->sq_mask] = u->n; /* the fd into the table */
    for (unsigned j = 0; j < k; j++)
        u->sq_array[at++ & u->sq_mask] = j;
    if (u->fixed)
        u->sq_array[at & u->sq_mask] = u->n + 1; /* and out again */
    __atomic_store_n(u->sq_tail, tail + total, __ATOMIC_RELEASE);
    unsigned submit = total;
    for (;;) {
        long r = syscall(__NR_io_uring_enter, u->ring_fd, submit, k, IORING_ENTER_GETEVENTS, NULL, 0);
        if (r >= 0)
            break;
        if (errno != EINTR)
            return -errno;
        submit = 0; /* submitted already: only wait */
        if (__atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE) - *u->cq_head >= k)
            break;
    }
    unsigned head = *u->cq_head;
    long got = 0, bad = 0;
    for (unsigned i = 0; i < k; i++) {
        const struct io_uring_cqe *cqe = &u->cqes[(head + i) & u->cq_mask];
        int res = cqe->res;
        if (cqe->user_data >= u->n) { /* a FILES_UPDATE failed (its CQE is not skipped then) */
            if (!bad)
                bad = res < 0 ? res : -EPROTO;
        } else if (u->write) {
            if (res == (int)u->sqes[cqe->user_data].len)
                got++;
            else if (!bad)
                bad = res < 0 ? res : -EIO;
        } else if (res > 0)
            got++;
        else if (res != -EAGAIN && !bad)
            bad = res == 0 ? -EPIPE : res;
    }
    __atomic_store_n(u->cq_head, head + k, __ATOMIC_RELEASE);
    return bad ? bad : got;
}

/* Reads: run batches of N until one reads nothing, or until at least max
 * packets were read.  Returns the count; *ns gets the loop's duration and
 * *err the errno that stopped it (0 if drained or max was reached). */
long uring_block(struct uring *u, long max, long long *ns, int *err)
{
    long count = 0;
    struct timespec t0, t1;
    *err = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (count < max) {
        long r = batch(u, u->n);
        if (r < 0) {
            *err = (int)-r;
            break;
        }
        if (r == 0)
            break;
        count += r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    return count;
}

/* Writes: write count packets in batches of N (the last one smaller).
 * Returns the packets written; *ns and *err as for uring_block. */
long uring_write_block(struct uring *u, long count, long long *ns, int *err)
{
    long done = 0;
    struct timespec t0, t1;
    *err = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (done < count) {
        unsigned k = count - done < (long)u->n ? (unsigned)(count - done) : u->n;
        long r = batch(u, k);
        if (r < 0) {
            *err = (int)-r;
            break;
        }
        done += r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    return done;
}

#ifndef DRAIN_LIBRARY
static unsigned char blob[1 << 20];

int main(int argc, char **argv)
{
    int write = argc == 7 && strcmp(argv[1], "-w") == 0;
    if (!write && argc != 4) {
        fprintf(stderr, "usage: %s FD N SLOT_SIZE\n       %s -w FD N SLOT_SIZE COUNT PACKET_LEN < packets\n", argv[0], argv[0]);
        return 2;
    }
    char **a = argv + write;
    int fd = atoi(a[1]);
    unsigned n = (unsigned)atoi(a[2]);
    unsigned slot = (unsigned)atoi(a[3]);
    long count = write ? atol(a[4]) : __LONG_MAX__;
    size_t len = write ? (size_t)atol(a[5]) : 0;
    size_t have = 0;
    if (write) {
        ssize_t r;
        while ((r = read(0, blob + have, sizeof blob - have)) > 0)
            have += (size_t)r;
        if (r < 0 || len == 0 || have == 0 || have % len || count <= 0) {
            fprintf(stderr, "drain_uring: bad arguments or input (%zu bytes of packets of %zu)\n", have, len);
            return 2;
        }
    }
    struct uring *u = uring_new(fd, n, slot, write);
    if (!u) {
        fprintf(stderr, "drain_uring: io_uring set-up failed: %s\n", strerror(errno));
        return 1;
    }
    if (write && uring_load(u, blob, len, have / len) < 0) {
        fprintf(stderr, "drain_uring: cannot load the packets\n");
        uring_free(u);
        return 2;
    }
    long long ns;
    int err;
    long done = write ? uring_write_block(u, count, &ns, &err) : uring_block(u, count, &ns, &err);
    uring_free(u);
    if (err) {
        fprintf(stderr, "drain_uring: stopped after %ld packets: %s\n", done, strerror(err));
        return 1;
    }
    printf("%ld %lld\n", done, ns);
    return 0;
}
#endif
