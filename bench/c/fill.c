/* Fill a TUN's queue for the drain benchmark: send COUNT small UDP datagrams.
 *
 * usage: fill IFNAME DST_IPV4 PORT COUNT PAYLOAD_BYTES
 *
 * The socket is bound to IFNAME (SO_BINDTODEVICE), so the datagrams go into
 * that TUN whatever other routes exist, and connected to DST_IPV4:PORT (an
 * address of the TUN's own subnet).  sendmmsg() sends batches with
 * MSG_DONTWAIT: the TUN orphans every skb it queues, so the socket's send
 * buffer should never fill; if it does, EAGAIN is counted and we wait for
 * room (up to 2 s, then give up).
 *
 * Prints one line of KEY=VALUE pairs: sent, eagain, outq (SIOCOUTQ at the
 * end: bytes still charged to the socket) and sndbuf (SO_SNDBUF).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 1024

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s IFNAME DST_IPV4 PORT COUNT PAYLOAD_BYTES\n", argv[0]);
        return 2;
    }
    const char *ifname = argv[1];
    long count = atol(argv[4]);
    size_t payload_len = (size_t)atol(argv[5]);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1 || count <= 0 || payload_len > 1400) {
        fprintf(stderr, "fill: bad arguments\n");
        return 2;
    }

    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0 ||
        connect(s, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("fill: socket/SO_BINDTODEVICE/connect");
        return 1;
    }
    int sndbuf = 0;
    socklen_t optlen = sizeof sndbuf;
    getsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, &optlen);

    static unsigned char payload[1400];
    memset(payload, 0xab, sizeof payload);
    struct iovec iov = {.iov_base = payload, .iov_len = payload_len};
    static struct mmsghdr msgs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    long sent = 0, eagain = 0;
    int status = 0;
    while (sent < count) {
        unsigned int want = count - sent < BATCH ? (unsigned int)(count - sent) : BATCH;
        int r = sendmmsg(s, msgs, want, MSG_DONTWAIT);
        if (r > 0) {
            sent += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            eagain++;
            struct pollfd p = {.fd = s, .events = POLLOUT};
            if (poll(&p, 1, 2000) > 0)
                continue;
            fprintf(stderr, "fill: the send buffer stayed full for 2 s after %ld datagrams\n", sent);
        } else {
            fprintf(stderr, "fill: sendmmsg after %ld datagrams: %s\n", sent, r < 0 ? strerror(errno) : "sent nothing");
        }
        status = 1;
        break;
    }
    int outq = -1;
    ioctl(s, SIOCOUTQ, &outq);
    printf("sent=%ld eagain=%ld outq=%d sndbuf=%d\n", sent, eagain, outq, sndbuf);
    close(s);
    return status;
}
