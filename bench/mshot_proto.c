/* Prototype (kept for the record, like sqpoll_proto.py): does an io_uring
 * MULTISHOT READ over a provided-buffer ring drain a full TUN queue faster
 * than the C io_uring floor of drain_uring.c (N pre-filled READ_FIXED SQEs
 * with RWF_NOWAIT)?  Raw syscalls, no liburing.
 *
 *   mshot_proto MODE FD N SLOT_SIZE
 *       FD is an inherited non-blocking TUN fd.  Drains it until a batch
 *       gets no packet and prints "COUNT NS" (CLOCK_MONOTONIC around the
 *       batches only; set-up excluded), like drain_uring, and one line
 *       "stats key=value ..." on stderr.  MODE:
 *         fixed             drain_uring.c's read path itself (#included):
 *                           N READ_FIXED SQEs, RWF_NOWAIT, the fd in a
 *                           registered file table only inside each enter.
 *         mshot             one IORING_OP_READ_MULTISHOT SQE (plain fd,
 *                           IOSQE_BUFFER_SELECT, group 0) over a provided
 *                           buffer ring of N buffers of SLOT_SIZE (one
 *                           slab); SINGLE_ISSUER|DEFER_TASKRUN, CQ 2N.
 *         mshot_fixed_file  the same, the fd in slot 0 of a registered file
 *                           table for the whole run (IOSQE_FIXED_FILE).
 *         mshot_coop        the same as mshot, COOP_TASKRUN|TASKRUN_FLAG
 *                           instead of DEFER_TASKRUN.
 *         mshot_wait1       mshot, but each enter waits for min_complete 1
 *                           with a 1 ms timeout (IORING_ENTER_EXT_ARG).
 *       A multishot batch: (re-)arm the request if the last CQE had no
 *       IORING_CQE_F_MORE (it ends with -ENOBUFS once the N buffers are
 *       used), io_uring_enter(armed ? 0 : 1, min, GETEVENTS) with min 0:
 *       under DEFER_TASKRUN the poll-triggered reads run as task work inside
 *       that enter, and the request keeps reading (a forced retry after each
 *       packet) until the queue is empty (-EAGAIN: it stays armed, no CQE)
 *       or the buffers run out; then consume the CQEs and give the buffers
 *       back in ring order (buf ring tail += packets).  The drain ends with
 *       the first batch that reads nothing.
 *
 *   mshot_proto closecheck FD N SLOT_SIZE VARIANT
 *       Does a multishot read still armed keep the TUN alive after
 *       close(fd)?  A line protocol with the driver (mshot_proto.py):
 *       arm and read what is queued (VARIANT mshot | mshot_fixed_file |
 *       fixed, the last as control: drain_uring's batches), print
 *       "armed PACKETS" and wait for a line on stdin (the driver drops its
 *       own copy of the fd meanwhile); VARIANT mshot_cancel first cancels
 *       the request (IORING_OP_ASYNC_CANCEL, CANCEL_FD|ALL); close(fd),
 *       print "closed" and wait for a line (the driver looks at the
 *       interface); close the ring, print "ring_closed", wait for a line.
 */
#define DRAIN_LIBRARY
#include "drain_uring.c"

#include <fcntl.h>
#include <stddef.h>

/* Newer than some <linux/io_uring.h>: defined here (values of 6.7+). */
#define MS_OP_READ_MULTISHOT 49
#ifndef IORING_CQE_F_BUFFER
#define IORING_CQE_F_BUFFER (1U << 0)
#endif
#ifndef IORING_CQE_F_MORE
#define IORING_CQE_F_MORE (1U << 1)
#endif
#ifndef IORING_CQE_BUFFER_SHIFT
#define IORING_CQE_BUFFER_SHIFT 16
#endif
#define MS_REGISTER_PBUF_RING 22
#define MS_ASYNC_CANCEL_ALL (1U << 0)
#define MS_ASYNC_CANCEL_FD (1U << 1)
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif

struct ms_buf { /* struct io_uring_buf */
    __u64 addr;
    __u32 len;
    __u16 bid;
    __u16 resv;
};
struct ms_buf_reg { /* struct io_uring_buf_reg */
    __u64 ring_addr;
    __u32 ring_entries;
    __u16 bgid;
    __u16 flags;
    __u64 resv[3];
};
struct ms_getevents_arg { /* struct io_uring_getevents_arg */
    __u64 sigmask;
    __u32 sigmask_sz;
    __u32 min_wait_usec;
    __u64 ts;
};

#define READ_TAG 1ULL
#define CANCEL_TAG 2ULL

struct mshot {
    struct uring *u; /* the ring, its mappings and the slab (drain_uring.c's; its SQEs our own) */
    int fd, fixed_file, wait1;
    unsigned n, slot, sq_entries;
    size_t br_len;
    struct ms_buf *br; /* the provided buffer ring, page-aligned */
    volatile __u16 *br_tail;
    __u16 buf_next; /* the bid the next packet must carry (ring order) */
    int armed;
    /* stats */
    long enters, arms, enobufs, ncqes, ended_data, max_per_enter, zero_enters, waits_timed_out;
};

static void ms_free(struct mshot *m)
{
    if (!m)
        return;
    if (m->u && m->u->ring_fd >= 0) {
        close(m->u->ring_fd); /* first: cancels what is armed, before its buffers go */
        m->u->ring_fd = -1;
    }
    uring_free(m->u);
    if (m->br && (void *)m->br != MAP_FAILED)
        munmap(m->br, m->br_len);
    free(m);
}

static struct mshot *ms_new(int fd, unsigned n, unsigned slot, unsigned flags, int fixed_file)
{
    struct mshot *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->u = calloc(1, sizeof *m->u);
    if (!m->u)
        goto fail;
    m->u->ring_fd = -1;
    m->fd = fd;
    m->n = n;
    m->slot = slot;
    m->fixed_file = fixed_file;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | flags;
    p.cq_entries = 2 * n; /* a batch posts at most N packets + 1 (-ENOBUFS) */
    int rfd = (int)syscall(__NR_io_uring_setup, 8, &p);
    if (rfd < 0)
        goto fail;
    m->u->ring_fd = rfd;
    m->sq_entries = p.sq_entries;
    if (uring_map(m->u, rfd, &p) < 0)
        goto fail;

    /* One slab of N slots; the buffer ring's entry i names slot i, bid i. */
    m->u->slab_len = (size_t)n * slot;
    m->u->slab = mmap(NULL, m->u->slab_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m->u->slab == MAP_FAILED)
        goto fail;
    m->br_len = (size_t)n * sizeof(struct ms_buf);
    m->br = mmap(NULL, m->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if ((void *)m->br == MAP_FAILED)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        m->br[i].addr = (__u64)(unsigned long)((char *)m->u->slab + (size_t)i * slot);
        m->br[i].len = slot;
        m->br[i].bid = (__u16)i;
    }
    /* The tail overlays bufs[0].resv. */
    m->br_tail = (volatile __u16 *)((char *)m->br + offsetof(struct ms_buf, resv));
    struct ms_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (__u64)(unsigned long)m->br;
    reg.ring_entries = n;
    reg.bgid = 0;
    if (syscall(__NR_io_uring_register, rfd, MS_REGISTER_PBUF_RING, &reg, 1) < 0)
        goto fail;
    __atomic_store_n((__u16 *)m->br_tail, (__u16)n, __ATOMIC_RELEASE); /* all N buffers given */
    if (fixed_file && syscall(__NR_io_uring_register, rfd, IORING_REGISTER_FILES, &fd, 1) < 0)
        goto fail;
    return m;
fail:;
    int err = errno;
    ms_free(m);
    errno = err;
    return NULL;
}

static void ms_push(struct mshot *m, const struct io_uring_sqe *src)
{
    unsigned tail = *m->u->sq_tail;
    unsigned idx = tail & m->u->sq_mask;
    m->u->sqes[idx] = *src;
    m->u->sq_array[idx] = idx;
    __atomic_store_n(m->u->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

static void ms_arm(struct mshot *m)
{
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    sqe.opcode = MS_OP_READ_MULTISHOT;
    sqe.fd = m->fixed_file ? 0 : m->fd;
    sqe.flags = IOSQE_BUFFER_SELECT | (m->fixed_file ? IOSQE_FIXED_FILE : 0);
    sqe.off = (__u64)-1; /* the current position: a TUN is a stream */
    sqe.addr = 0;
    sqe.len = 0; /* the whole provided buffer */
    sqe.buf_group = 0;
    sqe.user_data = READ_TAG;
    ms_push(m, &sqe);
    m->armed = 1;
    m->arms++;
}

static long ms_enter(struct mshot *m, unsigned submit, unsigned min)
{
    for (;;) {
        long r;
        if (m->wait1 && min) {
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
            struct ms_getevents_arg arg;
            memset(&arg, 0, sizeof arg);
            arg.ts = (__u64)(unsigned long)&ts;
            r = syscall(__NR_io_uring_enter, m->u->ring_fd, submit, min, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                        &arg, sizeof arg);
            if (r < 0 && errno == ETIME) {
                m->waits_timed_out++;
                r = 0;
            }
        } else
            r = syscall(__NR_io_uring_enter, m->u->ring_fd, submit, min, IORING_ENTER_GETEVENTS, NULL, 0);
        m->enters++;
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
        /* (a signal: what was submitted stays submitted) */
        if (r < 0 && submit)
            submit = 0;
    }
}

/* Consume every CQE there is; returns the packets read, or -1 (printed) on
 * an unexpected completion. */
static long ms_reap(struct mshot *m)
{
    unsigned head = *m->u->cq_head;
    unsigned tail = __atomic_load_n(m->u->cq_tail, __ATOMIC_ACQUIRE);
    long got = 0;
    if (tail - head > m->max_per_enter)
        m->max_per_enter = tail - head;
    for (; head != tail; head++) {
        const struct io_uring_cqe *cqe = &m->u->cqes[head & m->u->cq_mask];
        int res = cqe->res;
        unsigned flags = cqe->flags;
        m->ncqes++;
        if (cqe->user_data == CANCEL_TAG) {
            if (res < 0 && res != -ENOENT) {
                fprintf(stderr, "mshot_proto: cancel: %s\n", strerror(-res));
                return -1;
            }
            continue;
        }
        if (cqe->user_data != READ_TAG) {
            fprintf(stderr, "mshot_proto: unexpected CQE user_data %llu res %d\n", (unsigned long long)cqe->user_data,
                    res);
            return -1;
        }
        if (!(flags & IORING_CQE_F_MORE))
            m->armed = 0;
        if (res > 0) {
            unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
            unsigned want = m->buf_next & (m->n - 1);
            if (!(flags & IORING_CQE_F_BUFFER) || bid != want) {
                fprintf(stderr, "mshot_proto: packet in buffer %u (flags %#x), expected %u\n", bid, flags, want);
                return -1;
            }
            m->buf_next++;
            got++;
            if (!(flags & IORING_CQE_F_MORE))
                m->ended_data++;
        } else if (res == -ENOBUFS) {
            m->enobufs++;
        } else if (res == -EAGAIN) {
            /* not an error; the request stays armed if F_MORE */
        } else if (res == -ECANCELED) {
            /* closecheck's cancel */
        } else {
            fprintf(stderr, "mshot_proto: multishot read CQE: %s\n", res == 0 ? "end of file (0)" : strerror(-res));
            return -1;
        }
    }
    __atomic_store_n(m->u->cq_head, head, __ATOMIC_RELEASE);
    if (got) /* give the used buffers back, in ring order: entries unchanged */
        __atomic_store_n((__u16 *)m->br_tail, (__u16)(*m->br_tail + got), __ATOMIC_RELEASE);
    return got;
}

/* One batch: arm if needed, one enter, reap.  Packets read or -1. */
static long ms_batch(struct mshot *m)
{
    unsigned submit = 0;
    if (!m->armed) {
        ms_arm(m);
        submit = 1;
    }
    long r = ms_enter(m, submit, m->wait1 ? 1 : 0);
    if (r < 0) {
        fprintf(stderr, "mshot_proto: io_uring_enter: %s\n", strerror((int)-r));
        return -1;
    }
    long got = ms_reap(m);
    if (got == 0)
        m->zero_enters++;
    return got;
}

static long ms_drain(struct mshot *m, long long *ns, long *batches)
{
    long count = 0;
    struct timespec t0, t1;
    *batches = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long r = ms_batch(m);
        ++*batches;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        count += r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    return count;
}

static struct mshot *ms_for_mode(const char *mode, int fd, unsigned n, unsigned slot)
{
    unsigned defer = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    struct mshot *m = NULL;
    if (strcmp(mode, "mshot") == 0 || strcmp(mode, "mshot_wait1") == 0 || strcmp(mode, "mshot_cancel") == 0)
        m = ms_new(fd, n, slot, defer, 0);
    else if (strcmp(mode, "mshot_fixed_file") == 0)
        m = ms_new(fd, n, slot, defer, 1);
    else if (strcmp(mode, "mshot_coop") == 0)
        m = ms_new(fd, n, slot, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, 0);
    else {
        errno = EINVAL;
        return NULL;
    }
    if (m)
        m->wait1 = strcmp(mode, "mshot_wait1") == 0;
    return m;
}

static int wait_line(void)
{
    char line[64];
    fflush(stdout);
    return fgets(line, sizeof line, stdin) ? 0 : -1;
}

/* closecheck: see the top of the file. */
static int closecheck(const char *variant, int fd, unsigned n, unsigned slot)
{
    struct mshot *m = NULL;
    struct uring *u = NULL;
    long got = 0;
    if (strcmp(variant, "fixed") == 0) {
        u = uring_new(fd, n, slot, 0);
        if (!u) {
            perror("mshot_proto: uring_new");
            return 1;
        }
        long long ns;
        int err;
        got = uring_block(u, __LONG_MAX__, &ns, &err);
        if (err) {
            fprintf(stderr, "mshot_proto: fixed: %s\n", strerror(err));
            return 1;
        }
    } else {
        m = ms_for_mode(variant, fd, n, slot);
        if (!m) {
            perror("mshot_proto: multishot set-up");
            return 1;
        }
        for (;;) { /* read what is queued; the request stays armed on the empty queue */
            long r = ms_batch(m);
            if (r < 0)
                return 1;
            if (r == 0)
                break;
            got += r;
        }
        if (!m->armed) {
            fprintf(stderr, "mshot_proto: the multishot read is not armed at the end\n");
            return 1;
        }
    }
    printf("armed %ld\n", got);
    if (wait_line() < 0)
        return 1;
    if (m && strcmp(variant, "mshot_cancel") == 0) {
        struct io_uring_sqe sqe;
        memset(&sqe, 0, sizeof sqe);
        sqe.opcode = IORING_OP_ASYNC_CANCEL;
        sqe.fd = fd;
        sqe.cancel_flags = MS_ASYNC_CANCEL_FD | MS_ASYNC_CANCEL_ALL;
        sqe.user_data = CANCEL_TAG;
        ms_push(m, &sqe);
        long r = ms_enter(m, 1, 0);
        if (r < 0 || ms_reap(m) < 0) {
            fprintf(stderr, "mshot_proto: cancel failed\n");
            return 1;
        }
        if (m->armed) {
            fprintf(stderr, "mshot_proto: still armed after the cancel\n");
            return 1;
        }
    }
    close(fd);
    printf("closed\n");
    if (wait_line() < 0)
        return 1;
    if (m)
        ms_free(m);
    if (u)
        uring_free(u);
    printf("ring_closed\n");
    if (wait_line() < 0)
        return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "closecheck") == 0)
        return closecheck(argv[5], atoi(argv[2]), (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
    if (argc != 5) {
        fprintf(stderr,
                "usage: %s fixed|mshot|mshot_fixed_file|mshot_coop|mshot_wait1 FD N SLOT_SIZE\n"
                "       %s closecheck FD N SLOT_SIZE mshot|mshot_fixed_file|mshot_cancel|fixed\n",
                argv[0], argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int fd = atoi(argv[2]);
    unsigned n = (unsigned)atoi(argv[3]);
    unsigned slot = (unsigned)atoi(argv[4]);
    if (n == 0 || (n & (n - 1)) || n > 32768 || slot == 0) {
        fprintf(stderr, "mshot_proto: N must be a power of two <= 32768\n");
        return 2;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) {
        fprintf(stderr, "mshot_proto: fd %d is %s\n", fd, fl < 0 ? strerror(errno) : "blocking");
        return 2;
    }
    long long ns = 0;
    long count;
    if (strcmp(mode, "fixed") == 0) {
        struct uring *u = uring_new(fd, n, slot, 0);
        if (!u) {
            fprintf(stderr, "mshot_proto: io_uring set-up failed: %s\n", strerror(errno));
            return 1;
        }
        int err;
        count = uring_block(u, __LONG_MAX__, &ns, &err);
        int fixed = u->fixed;
        uring_free(u);
        if (err) {
            fprintf(stderr, "mshot_proto: stopped after %ld packets: %s\n", count, strerror(err));
            return 1;
        }
        fprintf(stderr, "stats file_table=%d\n", fixed);
    } else {
        struct mshot *m = ms_for_mode(mode, fd, n, slot);
        if (!m) {
            fprintf(stderr, "mshot_proto: %s set-up failed: %s\n", mode, strerror(errno));
            return 1;
        }
        long batches;
        count = ms_drain(m, &ns, &batches);
        if (count < 0) {
            ms_free(m);
            return 1;
        }
        fprintf(stderr,
                "stats batches=%ld enters=%ld arms=%ld enobufs=%ld cqes=%ld ended_with_data=%ld max_cqes_per_enter=%ld "
                "empty_enters=%ld timeouts=%ld armed_at_end=%d\n",
                batches, m->enters, m->arms, m->enobufs, m->ncqes, m->ended_data, m->max_per_enter, m->zero_enters,
                m->waits_timed_out, m->armed);
        ms_free(m);
    }
    printf("%ld %lld\n", count, ns);
    return 0;
}
