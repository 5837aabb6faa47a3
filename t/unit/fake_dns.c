/*
 * fake_dns.c: see fake_dns.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_dns.h"

#define FAKE_DNS_MAX_A  4

static void *serve(void *arg)
{
    static const unsigned char rr[] = {
        0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4   /* A, IN, TTL 60 */
    };
    fake_dns_t *d = arg;
    unsigned char q[512], r[512 + FAKE_DNS_MAX_A * 16];
    unsigned char addrs[FAKE_DNS_MAX_A][4];
    struct sockaddr_in from;
    socklen_t fromlen;
    struct pollfd pfd;
    ssize_t n;
    size_t off, qend, rl;
    char name[256];
    int an, i;

    pfd.fd = d->fd;
    pfd.events = POLLIN;
    while (!d->stop) {
        if (poll(&pfd, 1, 100) != 1) {
            continue;
        }
        fromlen = sizeof(from);
        n = recvfrom(d->fd, q, sizeof(q), 0, (struct sockaddr *)&from,
                     &fromlen);
        if (n < 17) {
            continue;
        }
        d->queries++;
        /* The question's name, dotted. */
        name[0] = '\0';
        for (off = 12; off < (size_t)n && q[off]; off += q[off] + 1) {
            if (strlen(name) + q[off] + 2 > sizeof(name)) {
                break;
            }
            strncat(name, (const char *)q + off + 1, q[off]);
            strcat(name, ".");
        }
        qend = off + 5;             /* the root label, type, class */
        if (qend > (size_t)n) {
            continue;
        }
        an = d->answer(name, addrs, FAKE_DNS_MAX_A);
        if (an == FAKE_DNS_SILENT) {
            continue;
        }
        memcpy(r, q, qend);
        r[2] = 0x81;                /* an answer, recursion desired */
        r[3] = an == FAKE_DNS_NXDOMAIN ? 0x83 : 0x80;
        an = an < 0 ? 0 : an > FAKE_DNS_MAX_A ? FAKE_DNS_MAX_A : an;
        r[4] = 0; r[5] = 1;
        r[6] = 0; r[7] = (unsigned char)an;
        r[8] = r[9] = r[10] = r[11] = 0;
        rl = qend;
        for (i = 0; i < an; i++) {
            memcpy(r + rl, rr, sizeof(rr));
            memcpy(r + rl + sizeof(rr), addrs[i], 4);
            rl += sizeof(rr) + 4;
        }
        sendto(d->fd, r, rl, 0, (struct sockaddr *)&from, fromlen);
    }
    return NULL;
}

int fake_dns_start(fake_dns_t *d, fake_dns_answer_fn *answer)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    memset(d, 0, sizeof(*d));
    memset(&sa, 0, sizeof(sa));
    d->answer = answer;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (d->fd < 0
        || bind(d->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0
        || getsockname(d->fd, (struct sockaddr *)&sa, &len) != 0
        || pthread_create(&d->thread, NULL, serve, d) != 0) {
        if (d->fd >= 0) {
            close(d->fd);
        }
        return -1;
    }
    d->port = ntohs(sa.sin_port);
    return 0;
}

void fake_dns_stop(fake_dns_t *d)
{
    d->stop = 1;
    pthread_join(d->thread, NULL);
    close(d->fd);
}
