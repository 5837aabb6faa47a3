/*
 * cs_http_curl.c: the libcurl transport of cs_http.h.
 *
 * One easy handle per transport, reset before each request but kept, so
 * that its connection cache keeps the connection to the server alive
 * between requests (a sync cycle's pages and batches, an ACME order's
 * POSTs).  The handle is freed by a cleanup on the transport's pool.
 *
 * The body grows geometrically in the request's pool: a copy per chunk
 * would cost the square of the body's size; it is bounded by max_body.
 * Response headers go into an apr_table_t (apr_table_addn: a header that
 * comes several times, Link, stays several entries); a new status line
 * (100 Continue, then the answer) starts the table again.
 */
#include <string.h>

#include <apr_strings.h>
#include <curl/curl.h>

#include "cs_http.h"

typedef struct {
    CURL *curl;
    cs_http_conf_t conf;
} curl_http_t;

typedef struct {
    cs_http_resp_t *resp;
    apr_pool_t *p;
    apr_size_t cap;
    apr_size_t max;
    int too_big;
} recv_t;

void cs_http_global_init(void)
{
    static int done;

    /* Not thread-safe (curl's own rule): called from post_config. */
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = 1;
    }
}

static size_t on_body(char *data, size_t size, size_t n, void *baton)
{
    recv_t *r = baton;
    cs_http_resp_t *resp = r->resp;
    size_t len = size * n;
    char *nb;

    if (resp->len + len > r->max) {
        r->too_big = 1;
        return 0;
    }
    if (resp->len + len + 1 > r->cap) {
        apr_size_t cap = r->cap ? r->cap : 4096;
        while (cap < resp->len + len + 1) {
            cap *= 2;
        }
        nb = apr_palloc(r->p, cap);
        if (resp->len) {
            memcpy(nb, resp->body, resp->len);
        }
        resp->body = nb;
        r->cap = cap;
    }
    memcpy(resp->body + resp->len, data, len);
    resp->len += len;
    resp->body[resp->len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *baton)
{
    recv_t *r = baton;
    size_t len = size * n;
    char *line = apr_pstrndup(r->p, data, len), *v, *end;

    while ((end = line + strlen(line)) > line
           && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '
               || end[-1] == '\t')) {
        end[-1] = '\0';
    }
    if (strncmp(line, "HTTP/", 5) == 0) {
        apr_table_clear(r->resp->headers);
        return len;
    }
    if (!(v = strchr(line, ':')) || v == line) {
        return len;
    }
    *v++ = '\0';
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    apr_table_addn(r->resp->headers, line, v);
    return len;
}

/* Whether url's scheme is one of protocols ("https,http"). */
static int scheme_allowed(apr_pool_t *p, const char *url,
                          const char *protocols)
{
    const char *colon = strstr(url, "://");
    char *list, *tok, *last;
    apr_size_t n;

    if (!colon) {
        return 0;
    }
    n = (apr_size_t)(colon - url);
    list = apr_pstrdup(p, protocols);
    for (tok = apr_strtok(list, ", ", &last); tok;
         tok = apr_strtok(NULL, ", ", &last)) {
        if (strlen(tok) == n && strncasecmp(url, tok, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* curl calls it about once a second even while nothing moves. */
static int on_progress(void *baton, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    const volatile apr_uint32_t *stop = baton;

    return *stop != 0;
}

static apr_status_t curl_send(void *baton, cs_http_resp_t *resp,
                              const cs_http_req_t *req, apr_pool_t *p,
                              const char **err)
{
    curl_http_t *h = baton;
    const cs_http_conf_t *c = &h->conf;
    CURL *curl = h->curl;
    struct curl_slist *hdrs = NULL, *resolve = NULL;
    const char *const *hp;
    char ebuf[CURL_ERROR_SIZE];
    recv_t r;
    CURLcode rc;

    resp->headers = apr_table_make(p, 8);
    if (!scheme_allowed(p, req->url, c->protocols)) {
        *err = apr_psprintf(p, "refusing a URL that is not %s: %s",
                            c->protocols, req->url);
        return APR_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.resp = resp;
    r.p = p;
    r.max = c->max_body;
    ebuf[0] = '\0';
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     (long)apr_time_as_msec(c->timeout));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)apr_time_as_msec(c->connect_timeout));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, c->protocols);
    /* Servers talk to their own peers: no proxy from the environment. */
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
    if (c->stop) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)c->stop);
    }
    if (c->user_agent) {
        curl_easy_setopt(curl, CURLOPT_USERAGENT, c->user_agent);
    }
    if (c->ca_file) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->client_cert_pem) {
        struct curl_blob blob;

        blob.data = (void *)c->client_cert_pem;
        blob.len = strlen(c->client_cert_pem);
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &blob);
    }
    else if (c->client_cert) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, c->client_cert);
    }
    if (c->client_key_pem) {
        struct curl_blob blob;

        blob.data = (void *)c->client_key_pem;
        blob.len = strlen(c->client_key_pem);
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &blob);
    }
    else if (c->client_key) {
        curl_easy_setopt(curl, CURLOPT_SSLKEY, c->client_key);
    }
    if (req->resolve) {
        /* A pinned address is one probe of one address: never a
         * connection made to another address of the same name. */
        resolve = curl_slist_append(NULL, req->resolve);
        curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
        curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
    }
    for (hp = req->headers; hp && *hp; hp++) {
        hdrs = curl_slist_append(hdrs, *hp);
    }
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    else if (strcmp(req->method, "GET") != 0) {
        if (strcmp(req->method, "POST") != 0) {
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        }
        if (req->body || strcmp(req->method, "POST") == 0) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(req->body ? req->body_len : 0));
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
                             req->body ? req->body : "");
        }
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    }
    /* Nothing of this call stays in the handle past it. */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_RESOLVE, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(resolve);
    if (!resp->body) {
        resp->body = "";
    }
    if (r.too_big) {
        *err = apr_psprintf(p, "%s %s: response too large (over %"
                            APR_SIZE_T_FMT " bytes)", req->method, req->url,
                            c->max_body);
        return APR_ENOSPC;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        *err = apr_psprintf(p, "%s %s: stopped", req->method, req->url);
        return APR_EINTR;
    }
    if (rc != CURLE_OK) {
        *err = apr_psprintf(p, "%s %s: %s", req->method, req->url,
                            ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return rc == CURLE_UNSUPPORTED_PROTOCOL ? APR_EINVAL
                                                : APR_ECONNREFUSED;
    }
    return APR_SUCCESS;
}

static apr_status_t curl_cleanup(void *data)
{
    curl_easy_cleanup(data);
    return APR_SUCCESS;
}

apr_status_t cs_http_curl_create(cs_http_t **http, apr_pool_t *p,
                                 const cs_http_conf_t *conf)
{
    cs_http_t *t = apr_pcalloc(p, sizeof(*t));
    curl_http_t *h = apr_pcalloc(p, sizeof(*h));

    h->conf = *conf;
    /* The strings are the caller's; the transport may outlive them. */
    h->conf.protocols = apr_pstrdup(p, conf->protocols ? conf->protocols
                                                        : "https");
    h->conf.ca_file = apr_pstrdup(p, conf->ca_file);
    h->conf.client_cert = apr_pstrdup(p, conf->client_cert);
    h->conf.client_key = apr_pstrdup(p, conf->client_key);
    h->conf.user_agent = apr_pstrdup(p, conf->user_agent);
    if (!h->conf.timeout) {
        h->conf.timeout = apr_time_from_sec(30);
    }
    if (!h->conf.connect_timeout) {
        h->conf.connect_timeout = apr_time_from_sec(10);
    }
    if (!h->conf.max_body) {
        h->conf.max_body = 1024 * 1024;
    }
    if (!(h->curl = curl_easy_init())) {
        return APR_ENOMEM;
    }
    apr_pool_cleanup_register(p, h->curl, curl_cleanup,
                              apr_pool_cleanup_null);
    t->send = curl_send;
    t->baton = h;
    *http = t;
    return APR_SUCCESS;
}
