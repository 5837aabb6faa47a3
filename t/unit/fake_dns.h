/*
 * fake_dns.h: a DNS server on loopback (UDP, A queries) for unit tests of
 * the ACME pre-check's resolver (c-ares), answering from the test's own
 * function in a thread of its own.
 */
#ifndef FAKE_DNS_H
#define FAKE_DNS_H

#include <pthread.h>

#define FAKE_DNS_NXDOMAIN   (-1)    /* the name does not exist */
#define FAKE_DNS_SILENT     (-2)    /* the query is never answered */

/** The A records of name (dotted, with the final '.'): up to max IPv4
 * addresses into addrs, returning how many; or FAKE_DNS_NXDOMAIN, or
 * FAKE_DNS_SILENT. */
typedef int fake_dns_answer_fn(const char *name, unsigned char addrs[][4],
                               int max);

typedef struct {
    int fd;
    int port;
    volatile int stop;
    volatile int queries;
    fake_dns_answer_fn *answer;
    pthread_t thread;
} fake_dns_t;

/** Binds 127.0.0.1 on a free port and starts answering; 0 or -1. */
int fake_dns_start(fake_dns_t *d, fake_dns_answer_fn *answer);
void fake_dns_stop(fake_dns_t *d);

#endif /* FAKE_DNS_H */
