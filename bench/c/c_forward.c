/* The C baseline of forward_bench.py: examples/forward.py's wire, in C.
 *
 *   c_forward NAME_A NAME_B [--offload] [--queues N] [--threads pair|direction]
 *
 * Creates two TUN interfaces (IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE, N
 * queues each; plus IFF_VNET_HDR with --offload) and moves every packet
 * read from one to the other.  The flags are examples/forward.py's: it
 * opens its devices with open_queues(), so IFF_MULTI_QUEUE even for one
 * queue.  --offload: a 10-byte virtio-net header (TUNSETVNETHDRSZ; the
 * library's default vnet_hdr_size) and TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN|
 * USO4|USO6, or the same without USO4|USO6 where the kernel (< 6.2) says
 * EINVAL: super-packets of up to 64 KiB cross as one read() and one write(),
 * header and all (both devices take the same header).
 *
 * The fds are non-blocking.  --threads pair (the default): one thread per
 * queue pair polls both fds and, when either is readable, moves packets
 * from both in turns of at most BATCH (64, forward.py's --slots) until both
 * say EAGAIN.  --threads direction: one thread per queue and direction,
 * polling its source fd and moving packets until EAGAIN.  A write that fails
 * (EIO while the far interface is still down, ...) counts as dropped.
 *
 * Prints "ready NAME_A NAME_B" (flushed) once the devices exist, and per
 * direction and queue the counters on SIGTERM or SIGINT, then exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20 /* <linux/if_tun.h> since 6.2 */
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#define MAX_QUEUES 16
#define VNET_HDR_SIZE 10 /* struct virtio_net_hdr, as tuntap_cffi's default */
#define BUF_SIZE (65536 + 64) /* a 64 KiB super-packet and its header */
#define BATCH 64 /* pair mode: packets per turn of one direction */
#define POLL_MS 200 /* how often the threads look at the stop flag */

struct stats {
    unsigned long long packets, bytes, dropped, gso, largest;
};

struct worker {
    int fd_a, fd_b; /* pair: both directions; direction: fd_a -> fd_b only */
    int pair;
    struct stats ab, ba;
    pthread_t thread;
};

static atomic_int stop;
static int hdr_size; /* 0 or VNET_HDR_SIZE */

static void die(const char *what, const char *name)
{
    fprintf(stderr, "c_forward: %s %s: %s\n", what, name, strerror(errno));
    exit(1);
}

/* Open one queue of TUN interface *name* (created by the first call);
 * writes the kernel's name of it back into name. */
static int open_queue(char *name, int offload)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("cannot open /dev/net/tun for", name);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (offload ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF", name);
    memcpy(name, ifr.ifr_name, IFNAMSIZ);
    if (offload) {
        int size = VNET_HDR_SIZE;
        if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
            die("TUNSETVNETHDRSZ", name);
        unsigned long flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6;
        if (ioctl(fd, TUNSETOFFLOAD, flags) < 0) {
            if (errno != EINVAL)
                die("TUNSETOFFLOAD", name);
            flags &= ~(unsigned long)(TUN_F_USO4 | TUN_F_USO6); /* before 6.2: no USO */
            if (ioctl(fd, TUNSETOFFLOAD, flags) < 0)
                die("TUNSETOFFLOAD", name);
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("cannot make non-blocking a queue of", name);
    return fd;
}

/* Move at most max packets from src to dst.  Returns the packets read;
 * *drained is set when src said EAGAIN (or failed). */
static long move(int src, int dst, unsigned char *buf, struct stats *st, long max, int *drained)
{
    long n = 0;
    *drained = 0;
    while (n < max) {
        ssize_t r = read(src, buf, BUF_SIZE);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) { /* not expected on a TUN: say so once, go on */
                static atomic_int warned;
                if (!atomic_exchange(&warned, 1))
                    fprintf(stderr, "c_forward: read: %s\n", strerror(errno));
            }
            *drained = 1;
            break;
        }
        if (r == 0) {
            *drained = 1;
            break;
        }
        n++;
        st->packets++;
        st->bytes += (unsigned long long)r;
        if ((unsigned long long)r > st->largest)
            st->largest = (unsigned long long)r;
        if (hdr_size && r > 1 && buf[1]) /* gso_type, byte 1 of the virtio-net header */
            st->gso++;
        ssize_t w;
        do
            w = write(dst, buf, (size_t)r);
        while (w < 0 && errno == EINTR);
        if (w != r)
            st->dropped++;
    }
    return n;
}

static void *run(void *arg)
{
    struct worker *wk = arg;
    unsigned char *buf = malloc(BUF_SIZE);
    if (!buf) {
        fprintf(stderr, "c_forward: out of memory\n");
        exit(1);
    }
    struct pollfd pfd[2] = {{.fd = wk->fd_a, .events = POLLIN}, {.fd = wk->fd_b, .events = POLLIN}};
    int nfds = wk->pair ? 2 : 1;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int r = poll(pfd, (nfds_t)nfds, POLL_MS);
        if (r < 0 && errno != EINTR) {
            perror("c_forward: poll");
            exit(1);
        }
        if (r <= 0)
            continue;
        if (!wk->pair) {
            int drained;
            move(wk->fd_a, wk->fd_b, buf, &wk->ab, LONG_MAX, &drained);
            continue;
        }
        /* Both directions in turns (the ACKs must not wait behind a long data
         * burst) until both are empty. */
        int empty_a = 0, empty_b = 0;
        while (!(empty_a && empty_b)) {
            move(wk->fd_a, wk->fd_b, buf, &wk->ab, BATCH, &empty_a);
            move(wk->fd_b, wk->fd_a, buf, &wk->ba, BATCH, &empty_b);
        }
    }
    free(buf);
    return NULL;
}

static void print_stats(const char *what, int i, const struct stats *st)
{
    printf("%s %d: packets=%llu bytes=%llu largest=%llu gso=%llu dropped=%llu\n", what, i, st->packets, st->bytes,
           st->largest, st->gso, st->dropped);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s NAME_A NAME_B [--offload] [--queues N] [--threads pair|direction]\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    char name_a[IFNAMSIZ] = "", name_b[IFNAMSIZ] = "";
    int offload = 0, queues = 1, pair = 1, names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--offload")) {
            offload = 1;
        } else if (!strcmp(argv[i], "--queues") && i + 1 < argc) {
            queues = atoi(argv[++i]);
            if (queues < 1 || queues > MAX_QUEUES)
                usage(argv[0]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "pair"))
                pair = 1;
            else if (!strcmp(argv[i], "direction"))
                pair = 0;
            else
                usage(argv[0]);
        } else if (argv[i][0] != '-' && names < 2 && strlen(argv[i]) < IFNAMSIZ) {
            strcpy(names++ ? name_b : name_a, argv[i]);
        } else {
            usage(argv[0]);
        }
    }
    if (names != 2)
        usage(argv[0]);
    hdr_size = offload ? VNET_HDR_SIZE : 0;

    int fds_a[MAX_QUEUES], fds_b[MAX_QUEUES];
    for (int q = 0; q < queues; q++)
        fds_a[q] = open_queue(name_a, offload);
    for (int q = 0; q < queues; q++)
        fds_b[q] = open_queue(name_b, offload);

    /* SIGTERM/SIGINT go to the main thread's sigwait(), not to a worker. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    int nworkers = pair ? queues : 2 * queues;
    struct worker *workers = calloc((size_t)nworkers, sizeof *workers);
    if (!workers) {
        fprintf(stderr, "c_forward: out of memory\n");
        return 1;
    }
    for (int w = 0; w < nworkers; w++) {
        int q = pair ? w : w / 2, back = !pair && w % 2;
        workers[w].fd_a = back ? fds_b[q] : fds_a[q];
        workers[w].fd_b = back ? fds_a[q] : fds_b[q];
        workers[w].pair = pair;
        int err = pthread_create(&workers[w].thread, NULL, run, &workers[w]);
        if (err) {
            fprintf(stderr, "c_forward: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    printf("ready %s %s threads=%s\n", name_a, name_b, pair ? "pair" : "direction");
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    atomic_store(&stop, 1);
    for (int w = 0; w < nworkers; w++)
        pthread_join(workers[w].thread, NULL);
    for (int w = 0; w < nworkers; w++) {
        if (pair) {
            print_stats("a->b queue", w, &workers[w].ab);
            print_stats("b->a queue", w, &workers[w].ba);
        } else {
            print_stats(w % 2 ? "b->a queue" : "a->b queue", w / 2, &workers[w].ab);
        }
    }
    fflush(stdout);
    for (int q = 0; q < queues; q++) {
        close(fds_a[q]);
        close(fds_b[q]);
    }
    free(workers);
    return 0;
}
