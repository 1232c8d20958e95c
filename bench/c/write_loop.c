/* The C baseline of the write benchmark: write() COUNT packets into a TUN.
 *
 * Built twice by the harness (bench/harness/build.py), into bench/_build/:
 *   write_loop   (program)  usage: write_loop FD COUNT PACKET_LEN < packets
 *       FD is an inherited TUN fd.  stdin holds K packets of PACKET_LEN
 *       bytes each, back to back (the same packets every Python method
 *       writes); packet i of the run is packet i % K.  Every write() must
 *       take the whole packet (EINTR is retried; anything else stops the
 *       run with exit status 1).  Prints "COUNT NS": the packets written and
 *       the nanoseconds the loop took (CLOCK_MONOTONIC around the loop only).
 *   libwriteloop.so  (-DDRAIN_LIBRARY)  the same loop as write_block(),
 *       called in-process through cffi by the interleaved comparison.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Write count packets to fd, packet i being blob[(i % k) * len ...].
 * Returns the packets written; *ns gets the loop's duration and *err the
 * errno that stopped it early (EIO for a short write), else 0. */
long write_block(int fd, const unsigned char *blob, size_t len, size_t k, long count, long long *ns, int *err)
{
    size_t i = 0;
    long done = 0;
    ssize_t r = 0;
    struct timespec t0, t1;
    *err = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (done < count) {
        r = write(fd, blob + i * len, len);
        if (r == (ssize_t)len) {
            done++;
            if (++i == k)
                i = 0;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        *err = r < 0 ? errno : EIO;
        break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    return done;
}

#ifndef DRAIN_LIBRARY
static unsigned char blob[1 << 20];

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s FD COUNT PACKET_LEN < packets\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[1]);
    long count = atol(argv[2]);
    size_t len = (size_t)atol(argv[3]);
    size_t have = 0;
    ssize_t r;
    while ((r = read(0, blob + have, sizeof blob - have)) > 0)
        have += (size_t)r;
    if (r < 0 || len == 0 || have == 0 || have % len || count <= 0) {
        fprintf(stderr, "write_loop: bad arguments or input (%zu bytes of packets of %zu)\n", have, len);
        return 2;
    }
    long long ns;
    int err;
    long done = write_block(fd, blob, len, have / len, count, &ns, &err);
    if (err) {
        fprintf(stderr, "write_loop: stopped after %ld packets: %s\n", done, strerror(err));
        return 1;
    }
    printf("%ld %lld\n", done, ns);
    return 0;
}
#endif
