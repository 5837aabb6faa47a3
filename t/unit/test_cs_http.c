/*
 * test_cs_http.c: the libcurl transport (lib/cs_http_curl.c) against a
 * small HTTP/1.1 server on loopback: status, body and headers (a header
 * sent twice stays two entries), bodies far larger than the first
 * buffer, the max_body bound (APR_ENOSPC), methods and request bodies,
 * HEAD, a scheme not allowed (APR_EINVAL), nobody listening
 * (APR_ECONNREFUSED), a pinned address (resolve), and one kept-alive
 * connection for many requests.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_http.h"
#include "unit.h"

#define BIG     100000
#define HUGE    (2 * 1024 * 1024)

static apr_pool_t *pool;

typedef struct {
    int fd;
    volatile int stop;
    int connections;
    int requests;
} server_t;

static int send_all(int fd, const char *buf, size_t len)
{
    ssize_t n;

    while (len) {
        if ((n = send(fd, buf, len, MSG_NOSIGNAL)) <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void answer(int fd, int head, const char *status,
                   const char *headers, const char *body, size_t len)
{
    char top[512];

    snprintf(top, sizeof(top), "HTTP/1.1 %s\r\nContent-Length: %lu\r\n%s"
             "\r\n", status, (unsigned long)len, headers);
    if (send_all(fd, top, strlen(top)) == 0 && !head) {
        send_all(fd, body, len);
    }
}

static char *big_body(void)
{
    static char big[HUGE];

    return big;
}

/* recv, but giving up when the server stops. */
static ssize_t recv_or_stop(server_t *s, int fd, char *buf, size_t len)
{
    struct pollfd pfd;

    pfd.fd = fd;
    pfd.events = POLLIN;
    while (!s->stop) {
        if (poll(&pfd, 1, 100) == 1) {
            return recv(fd, buf, len, 0);
        }
    }
    return -1;
}

/* One connection: requests until the client closes it. */
static void serve_conn(server_t *s, int fd)
{
    const char *big = big_body();
    char buf[8192], *end, *cl, method[16], path[256], echo[1024];
    size_t have = 0, need;
    ssize_t n;
    int head;

    for (;;) {
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == sizeof(buf)
                || (n = recv_or_stop(s, fd, buf + have,
                                     sizeof(buf) - have)) <= 0) {
                return;
            }
            have += (size_t)n;
        }
        *end = '\0';
        need = (cl = strcasestr(buf, "Content-Length:"))
               ? (size_t)atol(cl + 15) : 0;
        end += 4;
        while ((size_t)(buf + have - end) < need) {
            if ((n = recv_or_stop(s, fd, buf + have,
                                  sizeof(buf) - have)) <= 0) {
                return;
            }
            have += (size_t)n;
        }
        __sync_fetch_and_add(&s->requests, 1);
        sscanf(buf, "%15s %255s", method, path);
        head = strcmp(method, "HEAD") == 0;
        if (strcmp(path, "/small") == 0) {
            answer(fd, head, "200 OK", "Link: <https://a/1>;rel=\"alternate\""
                   "\r\nLink: <https://a/2>;rel=\"up\"\r\nX-Test:  spaced "
                   "\r\n", "hello", 5);
        }
        else if (strcmp(path, "/big") == 0) {
            answer(fd, head, "200 OK", "", big, BIG);
        }
        else if (strcmp(path, "/huge") == 0) {
            answer(fd, head, "200 OK", "", big, HUGE);
        }
        else if (strcmp(path, "/hang") == 0) {
            /* No answer, until the client gives up. */
            while (recv_or_stop(s, fd, buf, sizeof(buf)) > 0) {
            }
            return;
        }
        else if (strcmp(path, "/echo") == 0) {
            cl = strcasestr(buf, "\r\nX-Req:");
            snprintf(echo, sizeof(echo), "%s [%.*s] %s", method, (int)need,
                     end, cl ? strtok(cl + 8, " \r\n") : "-");
            answer(fd, head, "200 OK", "", echo, strlen(echo));
        }
        else {
            answer(fd, head, "503 Busy", "Retry-After: 7\r\n", "{}", 2);
        }
        memmove(buf, end + need, (size_t)(buf + have - (end + need)));
        have = (size_t)(buf + have - (end + need));
    }
}

typedef struct {
    server_t *s;
    int fd;
} conn_t;

static void *serve_one(void *arg)
{
    conn_t *c = arg;

    serve_conn(c->s, c->fd);
    close(c->fd);
    free(c);
    return NULL;
}

/* A thread per connection: a kept-alive one must not hold up the next. */
static void *serve(void *arg)
{
    server_t *s = arg;
    struct pollfd pfd;
    pthread_t th[32];
    conn_t *c;
    int fd, n = 0, i;

    pfd.fd = s->fd;
    pfd.events = POLLIN;
    while (!s->stop) {
        if (poll(&pfd, 1, 100) != 1 || (fd = accept(s->fd, NULL, NULL)) < 0) {
            continue;
        }
        __sync_fetch_and_add(&s->connections, 1);
        c = malloc(sizeof(*c));
        c->s = s;
        c->fd = fd;
        if (n == 32 || pthread_create(&th[n], NULL, serve_one, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        n++;
    }
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
    return NULL;
}

static const char *base;        /* the server's URL */

/* Send method to path below base, with an X-Req header and body. */
static apr_status_t get(cs_http_t *h, cs_http_resp_t *resp,
                        const char *method, const char *path,
                        const char *body, const char **err)
{
    static const char *const hdrs[] = { "X-Req: r1", NULL };
    cs_http_req_t req = {
        .method = method,
        .url = apr_pstrcat(pool, base, path, NULL),
        .headers = hdrs,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };

    return cs_http_send(h, resp, &req, pool, err);
}

/* The values of name in t, joined with '|'. */
static int join_cb(void *baton, const char *key, const char *value)
{
    const char **s = baton;

    *s = *s ? apr_pstrcat(pool, *s, "|", value, NULL) : value;
    return 1;
}

static const char *all_of(apr_table_t *t, const char *name)
{
    const char *s = NULL;

    apr_table_do(join_cb, &s, t, name, NULL);
    return s;
}

/* The flag of the conf.stop case, set by another thread. */
static volatile apr_uint32_t stop_flag;

static void *set_stop_later(void *arg)
{
    usleep(300000);
    stop_flag = 1;
    return arg;
}

int main(void)
{
    server_t s;
    pthread_t th;
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    cs_http_conf_t conf;
    cs_http_t *h;
    cs_http_resp_t resp;
    const char *err;
    /* The server echoes method [body] X-Req. */
    static const struct {
        const char *method, *body, *echo;
    } echoes[] = {
        { "POST", "{\"a\":1}", "POST [{\"a\":1}] r1" },
        { "POST", NULL, "POST [] r1" },
        { "DELETE", NULL, "DELETE [] r1" },
        { "PUT", "x", "PUT [x] r1" },
        { "GET", NULL, "GET [] r1" },
    };
    size_t i;
    int bad;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    cs_http_global_init();
    memset(big_body(), 'x', HUGE);
    memset(&s, 0, sizeof(s));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s.fd < 0 || bind(s.fd, (struct sockaddr *)&sa, sizeof(sa))
        || listen(s.fd, 8) || getsockname(s.fd, (struct sockaddr *)&sa, &len)
        || pthread_create(&th, NULL, serve, &s)) {
        printf("cannot start the loopback server\n");
        return 1;
    }
    base = apr_psprintf(pool, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    memset(&conf, 0, sizeof(conf));
    conf.protocols = "https,http";
    conf.timeout = apr_time_from_sec(10);
    if (cs_http_curl_create(&h, pool, &conf)) {
        printf("cannot make a transport\n");
        return 1;
    }

    UNIT_CASE("status, body, headers (twice is two entries)");
    CHECK_EQ_INT(get(h, &resp, "GET", "/small", NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(resp.status, 200);
    CHECK_STR(resp.body, "hello");
    CHECK_EQ_INT(resp.len, 5);
    CHECK_STR(all_of(resp.headers, "link"),
              "<https://a/1>;rel=\"alternate\"|<https://a/2>;rel=\"up\"");
    CHECK_STR(apr_table_get(resp.headers, "x-test"), "spaced");
    CHECK_STR(apr_table_get(resp.headers, "Content-Length"), "5");

    UNIT_CASE("a body far larger than the first buffer");
    CHECK_EQ_INT(get(h, &resp, "GET", "/big", NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(resp.len, BIG);
    for (i = 0, bad = 0; i < resp.len; i++) {
        bad += resp.body[i] != 'x';
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(resp.body[BIG], '\0');
    CHECK_EQ_INT(s.connections, 1);     /* kept alive */

    UNIT_CASE("a body over max_body: APR_ENOSPC");
    CHECK_EQ_INT(get(h, &resp, "GET", "/huge", NULL, &err), APR_ENOSPC);
    CHECK(err && strstr(err, "too large"));

    UNIT_CASE("methods, request bodies and headers");
    for (i = 0; i < sizeof(echoes) / sizeof(echoes[0]); i++) {
        CHECK_EQ_INT(get(h, &resp, echoes[i].method, "/echo", echoes[i].body,
                         &err), APR_SUCCESS);
        CHECK_STR(resp.body, echoes[i].echo);
    }

    UNIT_CASE("HEAD: headers, no body");
    CHECK_EQ_INT(get(h, &resp, "HEAD", "/small", NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(resp.status, 200);
    CHECK_STR(resp.body, "");
    CHECK(apr_table_get(resp.headers, "Link") != NULL);

    UNIT_CASE("an error status is an answer; its Retry-After");
    CHECK_EQ_INT(get(h, &resp, "GET", "/nope", NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(resp.status, 503);
    CHECK_EQ_INT(cs_http_retry_after(apr_table_get(resp.headers,
                                                   "Retry-After"),
                                     apr_time_now(), 60), 7);

    UNIT_CASE("kept alive: a second connection only after the cut body");
    CHECK_EQ_INT(s.connections, 2);
    CHECK_EQ_INT(s.requests, 10);

    UNIT_CASE("a pinned address: a fresh connection to it");
    {
        cs_http_req_t req;

        memset(&req, 0, sizeof(req));
        req.method = "GET";
        req.url = apr_psprintf(pool, "http://pinned.test:%d/small",
                               ntohs(sa.sin_port));
        req.resolve = apr_psprintf(pool, "pinned.test:%d:127.0.0.1",
                                   ntohs(sa.sin_port));
        CHECK_EQ_INT(cs_http_send(h, &resp, &req, pool, &err), APR_SUCCESS);
        CHECK_STR(resp.body, "hello");
        CHECK_EQ_INT(s.connections, 3);
    }

    UNIT_CASE("a scheme not allowed: APR_EINVAL, nothing sent");
    {
        cs_http_t *https_only;

        conf.protocols = NULL;      /* https */
        CHECK_EQ_INT(cs_http_curl_create(&https_only, pool, &conf),
                     APR_SUCCESS);
        CHECK_EQ_INT(get(https_only, &resp, "GET",
                         apr_pstrcat(pool, base, "/small", NULL), NULL,
                         &err), APR_EINVAL);
        CHECK(err && strstr(err, "refusing"));
        CHECK_EQ_INT(get(https_only, &resp, "GET", "file:///etc/passwd",
                         NULL, &err), APR_EINVAL);
        CHECK_EQ_INT(s.requests, 11);
    }

    UNIT_CASE("conf.stop set during a request: APR_EINTR within ~1 s");
    {
        cs_http_t *stoppable;
        pthread_t setter;
        apr_time_t t0;

        conf.protocols = "http";
        conf.stop = &stop_flag;
        CHECK_EQ_INT(cs_http_curl_create(&stoppable, pool, &conf),
                     APR_SUCCESS);
        t0 = apr_time_now();
        CHECK_EQ_INT(pthread_create(&setter, NULL, set_stop_later, NULL), 0);
        CHECK_EQ_INT(get(stoppable, &resp, "GET", "/hang", NULL, &err),
                     APR_EINTR);
        pthread_join(setter, NULL);
        CHECK(err && strstr(err, "stopped"));
        /* Set after 0.3 s; the timeout is 10 s. */
        CHECK(apr_time_now() - t0 < apr_time_from_msec(2500));
        conf.stop = NULL;
    }

    UNIT_CASE("nobody listening: APR_ECONNREFUSED");
    s.stop = 1;
    pthread_join(th, NULL);
    close(s.fd);
    CHECK_EQ_INT(get(h, &resp, "GET", "/small", NULL, &err), APR_ECONNREFUSED);
    CHECK(err && strstr(err, base));

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
