/*
 * cs_acme_precheck.c: the pre-check before an order (see cs_acme.h): does
 * every address of the name reach this pool's http-01 responder?
 *
 * The name's A records come from a given DNS server (c-ares, with the
 * hosts file and search domains off: the answer the CA's resolver would
 * get) or from the system's resolver; each address is then probed with
 * an HTTP GET pinned to it.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <apr_strings.h>

#include <ares.h>

#include "cs_acme_private.h"

void cs_acme_global_init(void)
{
    static int done;

    cs_http_global_init();
    if (!done) {
        ares_library_init(ARES_LIB_INIT_ALL);
        done = 1;
    }
}

#define PRECHECK_DNS_MS     3000    /* one query, one try */
#define PRECHECK_HTTP_S     10      /* one probe */
#define PRECHECK_MAX_FDS    4       /* one server: UDP, and TCP if ever */

/* The sockets c-ares wants watched (ARES_OPT_SOCK_STATE_CB). */
typedef struct {
    struct pollfd fds[PRECHECK_MAX_FDS];
    int n;
} dns_socks_t;

typedef struct {
    int done;
    int status;
    apr_array_header_t *addrs;
    apr_pool_t *p;
} dns_query_t;

static void sock_state(void *data, ares_socket_t fd, int readable,
                       int writable)
{
    dns_socks_t *s = data;
    int i;

    for (i = 0; i < s->n && s->fds[i].fd != fd; i++) {
    }
    if (!readable && !writable) {
        if (i < s->n) {
            s->fds[i] = s->fds[--s->n];
        }
        return;
    }
    if (i == s->n) {
        if (s->n == PRECHECK_MAX_FDS) {
            return;     /* cannot happen with one server and one query */
        }
        s->n++;
    }
    s->fds[i].fd = fd;
    s->fds[i].events = (short)((readable ? POLLIN : 0)
                               | (writable ? POLLOUT : 0));
    s->fds[i].revents = 0;
}

static void on_addrinfo(void *arg, int status, int timeouts,
                        struct ares_addrinfo *res)
{
    dns_query_t *q = arg;
    struct ares_addrinfo_node *n;
    char buf[INET_ADDRSTRLEN];

    q->done = 1;
    q->status = status;
    for (n = res ? res->nodes : NULL; n; n = n->ai_next) {
        if (n->ai_family == AF_INET
            && inet_ntop(AF_INET,
                         &((struct sockaddr_in *)n->ai_addr)->sin_addr, buf,
                         sizeof(buf))) {
            APR_ARRAY_PUSH(q->addrs, const char *) = apr_pstrdup(q->p, buf);
        }
    }
    if (res) {
        ares_freeaddrinfo(res);
    }
}

/* A records of name from the DNS server at "ipv4:port". */
static apr_status_t dns_a(apr_array_header_t **addrs, apr_pool_t *p,
                          const char *name, const char *server,
                          const char **err)
{
    struct ares_options opts;
    struct ares_addrinfo_hints hints;
    struct in_addr ip;
    ares_channel ch;
    dns_socks_t socks;
    dns_query_t q;
    const char *colon = strrchr(server, ':');
    char lookups[] = "b";
    struct timeval tv, *tvp;
    int i, rc, ms;

    *addrs = apr_array_make(p, 2, sizeof(const char *));
    /* The same server syntax as before c-ares: a literal IPv4 and a port. */
    if (!colon || colon == server || !colon[1]
        || colon[1 + strspn(colon + 1, "0123456789")] != '\0'
        || inet_pton(AF_INET, apr_pstrndup(p, server,
                                           (apr_size_t)(colon - server)),
                     &ip) != 1) {
        *err = "pre-check: bad DNS server";
        return APR_EINVAL;
    }
    if (strlen(name) > 253) {
        *err = "pre-check: bad DNS server or name";
        return APR_EINVAL;
    }
    memset(&socks, 0, sizeof(socks));
    memset(&opts, 0, sizeof(opts));
    opts.flags = ARES_FLAG_NOSEARCH;
    opts.timeout = PRECHECK_DNS_MS;
    opts.tries = 1;
    opts.lookups = lookups;
    opts.sock_state_cb = sock_state;
    opts.sock_state_cb_data = &socks;
    if (ares_init_options(&ch, &opts, ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS
                          | ARES_OPT_TRIES | ARES_OPT_LOOKUPS
                          | ARES_OPT_SOCK_STATE_CB) != ARES_SUCCESS) {
        *err = "pre-check: cannot start a DNS resolver (c-ares)";
        return APR_EGENERAL;
    }
    if ((rc = ares_set_servers_ports_csv(ch, server)) != ARES_SUCCESS) {
        ares_destroy(ch);
        *err = apr_psprintf(p, "pre-check: bad DNS server %s: %s", server,
                            ares_strerror(rc));
        return APR_EINVAL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    memset(&q, 0, sizeof(q));
    q.addrs = *addrs;
    q.p = p;
    ares_getaddrinfo(ch, name, NULL, &hints, on_addrinfo, &q);
    while (!q.done) {
        tvp = ares_timeout(ch, NULL, &tv);
        ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1
                 : PRECHECK_DNS_MS;
        if (poll(socks.fds, (nfds_t)socks.n, ms) < 0) {
            break;
        }
        /* Copied: processing one socket may change the set. */
        {
            dns_socks_t now = socks;
            int none = 1;

            for (i = 0; i < now.n; i++) {
                if (now.fds[i].revents) {
                    none = 0;
                    ares_process_fd(ch, now.fds[i].revents
                                        & (POLLIN | POLLERR | POLLHUP)
                                        ? now.fds[i].fd : ARES_SOCKET_BAD,
                                    now.fds[i].revents & POLLOUT
                                        ? now.fds[i].fd : ARES_SOCKET_BAD);
                }
            }
            if (none) {
                /* The timeout: c-ares ends the query. */
                ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            }
        }
    }
    ares_destroy(ch);     /* ends a query still running (ARES_EDESTRUCTION) */
    switch (q.status) {
    case ARES_SUCCESS:
    case ARES_ENODATA:      /* the name is there, without an A record */
        return APR_SUCCESS;
    case ARES_ENOTFOUND:
        *err = apr_psprintf(p, "pre-check: %s does not resolve (%s)", name,
                            ares_strerror(q.status));
        return APR_EGENERAL;
    case ARES_EBADNAME:
        *err = "pre-check: bad name";
        return APR_EINVAL;
    default:
        *err = apr_psprintf(p, "pre-check: no answer from the DNS server %s "
                            "for %s (%s)", server, name,
                            ares_strerror(q.status));
        return APR_EGENERAL;
    }
}

/* Addresses of name from the system's resolver. */
static apr_status_t sys_addrs(apr_array_header_t **addrs, apr_pool_t *p,
                              const char *name, const char **err)
{
    struct addrinfo hints, *res = NULL, *ai;
    char buf[INET6_ADDRSTRLEN];
    int rc;

    *addrs = apr_array_make(p, 2, sizeof(const char *));
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if ((rc = getaddrinfo(name, NULL, &hints, &res)) != 0) {
        *err = apr_psprintf(p, "pre-check: %s does not resolve: %s", name,
                            gai_strerror(rc));
        return APR_EGENERAL;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            && inet_ntop(ai->ai_family, a, buf, sizeof(buf))) {
            APR_ARRAY_PUSH(*addrs, const char *) =
                ai->ai_family == AF_INET6 ? apr_pstrcat(p, "[", buf, "]",
                                                        NULL)
                                          : apr_pstrdup(p, buf);
        }
    }
    freeaddrinfo(res);
    return APR_SUCCESS;
}

/* GET url from the address pin names ("domain:port:addr"): 200 and
 * expect.  A transport of its own per address unless the caller gave
 * one: a connection kept from another address must not answer for it. */
static apr_status_t http_probe(cs_acme_t *a, apr_pool_t *p, const char *url,
                               const char *pin, const char *expect,
                               const char **err)
{
    cs_http_t *http = a->conf.probe_http;
    cs_http_conf_t hc;
    cs_http_req_t req;
    cs_http_resp_t resp;
    apr_pool_t *sub;
    apr_status_t rv;

    apr_pool_create(&sub, p);
    if (!http) {
        memset(&hc, 0, sizeof(hc));
        hc.protocols = "http";
        hc.timeout = apr_time_from_sec(PRECHECK_HTTP_S);
        hc.connect_timeout = hc.timeout;
        hc.max_body = ACME_MAX_BODY;
        if ((rv = cs_http_curl_create(&http, sub, &hc))) {
            apr_pool_destroy(sub);
            return rv;
        }
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.resolve = pin;
    rv = cs_http_send(http, &resp, &req, p, err);
    apr_pool_destroy(sub);
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "pre-check: %s (%s): %s", url, pin, *err);
        return APR_EGENERAL;
    }
    if (resp.status != 200 || strcmp(resp.body, expect) != 0) {
        *err = apr_psprintf(p, "pre-check: %s (%s) answered HTTP %ld "
                            "without our probe: the name does not reach "
                            "this pool", url, pin, resp.status);
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t cs_acme_precheck(cs_acme_t *a, apr_pool_t *p,
                              const char *domain, int port,
                              const char *dns_server, const char *token,
                              const char *expect, const char **err)
{
    apr_array_header_t *addrs;
    const char *url, *addr;
    apr_status_t rv;
    int i;

    rv = dns_server ? dns_a(&addrs, p, domain, dns_server, err)
                    : sys_addrs(&addrs, p, domain, err);
    if (rv) {
        return rv;
    }
    if (!addrs->nelts) {
        *err = apr_psprintf(p, "pre-check: %s has no address", domain);
        return APR_EGENERAL;
    }
    url = apr_psprintf(p, "http://%s:%d/.well-known/acme-challenge/%s",
                       domain, port, token);
    /* Every address the CA might pick must reach us. */
    for (i = 0; i < addrs->nelts; i++) {
        addr = APR_ARRAY_IDX(addrs, i, const char *);
        if ((rv = http_probe(a, p, url,
                             apr_psprintf(p, "%s:%d:%s", domain, port, addr),
                             expect, err))) {
            return rv;
        }
    }
    return APR_SUCCESS;
}
