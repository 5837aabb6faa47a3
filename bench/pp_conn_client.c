/*
 * pp_conn_client.c: one HTTP/1.0 request per connection, straight to
 * Apache, for bench/proxy_protocol.sh (PERCONN_SENDER=direct).
 *
 * Each connection is the same for every variant but for the PROXY
 * header: connect, one write() (with --proxy the v1 header and the
 * request together, as a proxy that has the client's first bytes in
 * hand would send them; else the request alone), read until the server
 * closes, close.  So Apache gets one segment either way and the sender
 * does the same work: what differs is only what Apache does with the
 * header.  (haproxy 2.6 in TCP mode writes the header as soon as it has
 * connected, before the client's bytes, in a segment of its own, and
 * pays for it on the sender's CPU: getsockname(), a second send().)
 *
 * --split writes the header and the request with two write()s on a
 * TCP_NODELAY socket, two segments as haproxy sends them.  --split-bare
 * sends no header and writes the request in two pieces, the first as
 * long as the header: the same two segments without the PROXY protocol.
 * --hold-us N keeps each connection open N microseconds after the
 * server's close before closing it, as a proxy that closes its side only
 * once its client has: Apache's lingering close then waits for it.
 * --gap-us N spends N microseconds (a busy wait) between the two writes
 * of --split or --split-bare, as a proxy that writes the header on
 * connecting and the request once it has it; with one write, before
 * it, so that the sender's pace is the same either way.
 *
 * Build:  cc -O2 -pthread bench/pp_conn_client.c -o pp_conn_client
 * Usage:  pp_conn_client [--proxy | --split | --split-bare] [--hold-us N]
 *                        [--gap-us N] PORT CONNECTIONS CONCURRENCY
 * Prints "CONNECTIONS ERRORS CONNECTIONS_PER_SECOND"; exits 1 on any
 * error (a failed connect, or a response that is not a 200 with the
 * 1 KiB body).  127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static const char proxy_line[] =
    "PROXY TCP4 203.0.113.195 127.0.0.1 56324 443\r\n";
static const char request[] =
    "GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n"
    "User-Agent: pp_conn_client\r\nAccept: */*\r\n\r\n";

/* --split-bare cuts the request where the header would end. */
_Static_assert(sizeof(request) > sizeof(proxy_line),
               "the request is longer than the header");

enum { SEND_BARE, SEND_PROXY, SEND_SPLIT, SEND_SPLIT_BARE };

static int send_mode;
static long hold_us, gap_us;
static struct sockaddr_in server;
static long total, next_conn, errors;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* --gap-us: a busy wait, for a gap of a few microseconds (a sleep would
 * take the timer's slack, tens of them). */
static void gap(void)
{
    struct timespec t0, t;

    if (gap_us <= 0) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000L
             + (t.tv_nsec - t0.tv_nsec) / 1000 < gap_us);
}

/* One connection; 0 when the whole 200 response came. */
static int one_connection(const char *both, size_t both_len)
{
    char buf[4096], head[16] = "";
    size_t got = 0;
    ssize_t r;
    int fd, one = 1, rc = -1;

    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&server, sizeof(server)) != 0) {
        goto out;
    }
    if (send_mode == SEND_BARE) {
        gap();
        r = write_all(fd, request, sizeof(request) - 1);
    }
    else if (send_mode == SEND_PROXY) {
        gap();
        r = write_all(fd, both, both_len);
    }
    else {
        /* Two segments: the header and the request, or the request cut
         * where the header would end. */
        const char *first = send_mode == SEND_SPLIT ? proxy_line : request;
        size_t cut = sizeof(proxy_line) - 1;

        r = write_all(fd, first, cut);
        gap();
        if (r == 0 && send_mode == SEND_SPLIT) {
            r = write_all(fd, request, sizeof(request) - 1);
        }
        else if (r == 0) {
            r = write_all(fd, request + cut, sizeof(request) - 1 - cut);
        }
    }
    if (r != 0) {
        goto out;
    }
    while ((r = read(fd, buf, sizeof(buf))) > 0) {
        if (got < sizeof(head) - 1) {
            size_t k = sizeof(head) - 1 - got;

            memcpy(head + got, buf, (size_t)r < k ? (size_t)r : k);
        }
        got += (size_t)r;
    }
    /* The status line and at least the 1 KiB body. */
    rc = r == 0 && got > 1024 && strncmp(head, "HTTP/1.1 200", 12) == 0
         ? 0 : -1;
    if (hold_us > 0) {
        struct timespec hold = { hold_us / 1000000, hold_us % 1000000 * 1000 };

        nanosleep(&hold, NULL);
    }
out:
    close(fd);
    return rc;
}

static void *worker(void *unused)
{
    char both[sizeof(proxy_line) + sizeof(request)];
    size_t both_len = sizeof(proxy_line) - 1 + sizeof(request) - 1;
    long mine;

    (void)unused;
    memcpy(both, proxy_line, sizeof(proxy_line) - 1);
    memcpy(both + sizeof(proxy_line) - 1, request, sizeof(request) - 1);
    for (;;) {
        pthread_mutex_lock(&lock);
        mine = next_conn++;
        pthread_mutex_unlock(&lock);
        if (mine >= total) {
            return NULL;
        }
        if (one_connection(both, both_len) != 0) {
            pthread_mutex_lock(&lock);
            errors++;
            pthread_mutex_unlock(&lock);
        }
    }
}

int main(int argc, char **argv)
{
    pthread_t threads[MAX_THREADS];
    struct timespec t0, t1;
    double secs;
    int i, arg = 1, concurrency;

    if (argc > 1 && strcmp(argv[1], "--proxy") == 0) {
        send_mode = SEND_PROXY;
        arg++;
    }
    else if (argc > 1 && strcmp(argv[1], "--split") == 0) {
        send_mode = SEND_SPLIT;
        arg++;
    }
    else if (argc > 1 && strcmp(argv[1], "--split-bare") == 0) {
        send_mode = SEND_SPLIT_BARE;
        arg++;
    }
    while (argc > arg + 1 && (strcmp(argv[arg], "--hold-us") == 0
                              || strcmp(argv[arg], "--gap-us") == 0)) {
        long *us = argv[arg][2] == 'h' ? &hold_us : &gap_us;
        char *end;

        *us = strtol(argv[arg + 1], &end, 10);
        if (*us <= 0 || *end != '\0') {
            fprintf(stderr, "pp_conn_client: %s wants a positive "
                    "number of microseconds\n", argv[arg]);
            return 2;
        }
        arg += 2;
    }
    if (argc - arg != 3 || (total = atol(argv[arg + 1])) <= 0
        || (concurrency = atoi(argv[arg + 2])) <= 0
        || concurrency > MAX_THREADS) {
        fprintf(stderr, "usage: pp_conn_client [--proxy | --split | "
                "--split-bare] [--hold-us N] [--gap-us N] PORT CONNECTIONS "
                "CONCURRENCY(1-%d)\n", MAX_THREADS);
        return 2;
    }
    memset(&server, 0, sizeof(server));
    server.sin_family = AF_INET;
    server.sin_port = htons((unsigned short)atoi(argv[arg]));
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < concurrency; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "pp_conn_client: pthread_create failed\n");
            return 2;
        }
    }
    for (i = 0; i < concurrency; i++) {
        pthread_join(threads[i], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec)
           + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%ld %ld %.0f\n", total, errors, (double)total / secs);
    return errors ? 1 : 0;
}
