/*
 * fake_http.c: the scripted server of fake_http.h.
 */
#include <string.h>
#include <strings.h>

#include <apr_strings.h>

#include "fake_http.h"

typedef struct {
    const char *method;
    const char *url;
    long status;
    const char *headers;
    const char *body;
    apr_status_t fail;          /* not APR_SUCCESS: no answer, this error */
    int times;                  /* 0: forever */
    int used;
} answer_t;

struct fake_http_t {
    apr_pool_t *pool;           /* the fake's own: outlives requests */
    cs_http_t http;
    apr_array_header_t *answers;    /* answer_t */
    apr_array_header_t *seen;       /* fake_http_request_t */
    int unanswered;
    cs_http_send_fn *handler;
    void *handler_baton;
};

static int url_matches(const char *pattern, const char *url)
{
    apr_size_t n = strlen(pattern);

    if (n && pattern[n - 1] == '*') {
        return strncmp(pattern, url, n - 1) == 0;
    }
    return strcmp(pattern, url) == 0;
}

static int matches(const char *method, const char *url,
                   const char *want_method, const char *want_url)
{
    return (!want_method || strcmp(want_method, method) == 0)
           && url_matches(want_url, url);
}

static void record(fake_http_t *f, const cs_http_req_t *req)
{
    fake_http_request_t *r = apr_array_push(f->seen);
    const char *const *h;

    r->method = apr_pstrdup(f->pool, req->method);
    r->url = apr_pstrdup(f->pool, req->url);
    r->headers = apr_array_make(f->pool, 4, sizeof(const char *));
    for (h = req->headers; h && *h; h++) {
        APR_ARRAY_PUSH(r->headers, const char *) = apr_pstrdup(f->pool, *h);
    }
    r->body_len = req->body ? req->body_len : 0;
    r->body = req->body ? apr_pstrmemdup(f->pool, req->body, req->body_len)
                        : "";
    r->resolve = req->resolve ? apr_pstrdup(f->pool, req->resolve) : NULL;
}

/* "Name: value\n..." into the table, from p. */
static void add_headers(apr_table_t *t, apr_pool_t *p, const char *lines)
{
    char *copy, *line, *last, *v;

    if (!lines) {
        return;
    }
    copy = apr_pstrdup(p, lines);
    for (line = apr_strtok(copy, "\r\n", &last); line;
         line = apr_strtok(NULL, "\r\n", &last)) {
        if (!(v = strchr(line, ':'))) {
            continue;
        }
        *v++ = '\0';
        while (*v == ' ') {
            v++;
        }
        apr_table_addn(t, line, v);
    }
}

static apr_status_t fake_send(void *baton, cs_http_resp_t *resp,
                              const cs_http_req_t *req, apr_pool_t *p,
                              const char **err)
{
    fake_http_t *f = baton;
    apr_status_t rv;
    answer_t *a;
    int i;

    record(f, req);
    resp->headers = apr_table_make(p, 4);
    if (f->handler) {
        rv = f->handler(f->handler_baton, resp, req, p, err);
        if (rv != FAKE_HTTP_DECLINED) {
            return rv;
        }
    }
    for (i = 0; i < f->answers->nelts; i++) {
        a = &APR_ARRAY_IDX(f->answers, i, answer_t);
        if ((a->times && a->used >= a->times)
            || !matches(req->method, req->url, a->method, a->url)) {
            continue;
        }
        a->used++;
        if (a->fail != APR_SUCCESS) {
            *err = apr_psprintf(p, "fake: %s %s fails as scripted",
                                req->method, req->url);
            return a->fail;
        }
        resp->status = a->status;
        add_headers(resp->headers, p, a->headers);
        resp->body = apr_pstrdup(p, a->body ? a->body : "");
        resp->len = strlen(resp->body);
        return APR_SUCCESS;
    }
    f->unanswered++;
    *err = apr_psprintf(p, "fake: no answer for %s %s", req->method,
                        req->url);
    return APR_ECONNREFUSED;
}

fake_http_t *fake_http_create(apr_pool_t *p)
{
    fake_http_t *f = apr_pcalloc(p, sizeof(*f));

    apr_pool_create(&f->pool, p);
    f->answers = apr_array_make(f->pool, 8, sizeof(answer_t));
    f->seen = apr_array_make(f->pool, 8, sizeof(fake_http_request_t));
    f->http.send = fake_send;
    f->http.baton = f;
    return f;
}

cs_http_t *fake_http_transport(fake_http_t *f)
{
    return &f->http;
}

void fake_http_answer_n(fake_http_t *f, const char *method, const char *url,
                        long status, const char *headers, const char *body,
                        int times)
{
    answer_t *a = apr_array_push(f->answers);

    memset(a, 0, sizeof(*a));
    a->method = method ? apr_pstrdup(f->pool, method) : NULL;
    a->url = apr_pstrdup(f->pool, url);
    a->status = status;
    a->headers = headers ? apr_pstrdup(f->pool, headers) : NULL;
    a->body = body ? apr_pstrdup(f->pool, body) : NULL;
    a->times = times;
}

void fake_http_answer(fake_http_t *f, const char *method, const char *url,
                      long status, const char *headers, const char *body)
{
    fake_http_answer_n(f, method, url, status, headers, body, 0);
}

void fake_http_fail(fake_http_t *f, const char *method, const char *url,
                    apr_status_t rv, int times)
{
    answer_t *a;

    fake_http_answer_n(f, method, url, 0, NULL, NULL, times);
    a = &APR_ARRAY_IDX(f->answers, f->answers->nelts - 1, answer_t);
    a->fail = rv;
}

void fake_http_handler(fake_http_t *f, cs_http_send_fn *fn, void *baton)
{
    f->handler = fn;
    f->handler_baton = baton;
}

void fake_http_reset(fake_http_t *f)
{
    apr_pool_clear(f->pool);
    f->answers = apr_array_make(f->pool, 8, sizeof(answer_t));
    f->seen = apr_array_make(f->pool, 8, sizeof(fake_http_request_t));
    f->unanswered = 0;
    f->handler = NULL;
    f->handler_baton = NULL;
}

int fake_http_count(const fake_http_t *f)
{
    return f->seen->nelts;
}

const fake_http_request_t *fake_http_request(const fake_http_t *f, int i)
{
    if (i < 0 || i >= f->seen->nelts) {
        return NULL;
    }
    return &APR_ARRAY_IDX(f->seen, i, fake_http_request_t);
}

int fake_http_count_of(const fake_http_t *f, const char *method,
                       const char *url)
{
    const fake_http_request_t *r;
    int i, n = 0;

    for (i = 0; i < f->seen->nelts; i++) {
        r = &APR_ARRAY_IDX(f->seen, i, fake_http_request_t);
        n += matches(r->method, r->url, method, url);
    }
    return n;
}

int fake_http_unanswered(const fake_http_t *f)
{
    return f->unanswered;
}

const char *fake_http_header(const fake_http_request_t *r, const char *name)
{
    apr_size_t n = strlen(name);
    const char *h;
    int i;

    if (!r) {
        return NULL;
    }
    for (i = 0; i < r->headers->nelts; i++) {
        h = APR_ARRAY_IDX(r->headers, i, const char *);
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            h += n + 1;
            while (*h == ' ') {
                h++;
            }
            return h;
        }
    }
    return NULL;
}
