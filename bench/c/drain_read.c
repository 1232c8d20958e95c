/* The C baseline of the drain benchmark: read() a TUN fd until EAGAIN.
 *
 * Built twice by the harness (bench/harness/build.py), into bench/_build/:
 *   drain_read   (program)  usage: drain_read FD
 *       FD is an inherited O_NONBLOCK TUN fd.  Reads every queued packet into
 *       one 2048-byte buffer and prints "COUNT NS": the packets read and the
 *       nanoseconds the loop took (CLOCK_MONOTONIC around the loop only).
 *   libdrain.so  (-DDRAIN_LIBRARY)  the same loop as drain_block(), called
 *       in-process through cffi (harness.CLibs) by the interleaved comparison in drain.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Read packets from fd into buf until read() fails (EINTR is retried) or
 * max packets were read.  Returns the count; *ns gets the loop's duration
 * and *stop_errno the errno that ended it (0 if max was reached, -1 for
 * end of file). */
long drain_block(int fd, void *buf, size_t size, long max, long long *ns, int *stop_errno)
{
    long count = 0;
    ssize_t r;
    int err = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (count < max) {
        r = read(fd, buf, size);
        if (r > 0) {
            count++;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        err = r == 0 ? -1 : errno;
        break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    *stop_errno = err;
    return count;
}

#ifndef DRAIN_LIBRARY
static unsigned char buf[2048];

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FD\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[1]);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) {
        fprintf(stderr, "drain_read: fd %d is %s\n", fd, fl < 0 ? strerror(errno) : "blocking");
        return 2;
    }
    long long ns;
    int err;
    long count = drain_block(fd, buf, sizeof buf, LONG_MAX, &ns, &err);
    if (err != EAGAIN) {
        fprintf(stderr, "drain_read: stopped after %ld packets: %s\n", count,
                err == -1 ? "end of file" : strerror(err));
        return 1;
    }
    printf("%ld %lld\n", count, ns);
    return 0;
}
#endif
