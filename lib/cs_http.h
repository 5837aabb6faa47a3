/*
 * cs_http.h: the one HTTP transport of the suite's clients (the sync
 * client in mod_certsync and the ACME client in lib/cs_acme).
 *
 * Pure code: APR only in this header; the real transport is libcurl
 * (cs_http_curl.c).  A transport is a send function and a baton, so a
 * unit test drives a client over a fake one that answers from a script
 * (t/unit/fake_http.h) with no network at all.
 *
 * One cs_http_t is used by one thread at a time (the curl transport
 * keeps one connection alive between requests).
 *
 * Errors of cs_http_send: APR_ECONNREFUSED when no answer came (refused,
 * timeout, TLS failure: *err says which), APR_ENOSPC when the body was
 * larger than max_body, APR_EINVAL for a URL whose scheme is not allowed,
 * APR_EINTR when conf.stop ended it.
 * Any HTTP status is an answer: APR_SUCCESS with resp->status set.
 */
#ifndef CS_HTTP_H
#define CS_HTTP_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

typedef struct {
    const char *method;         /* "GET", "HEAD", "POST", "PUT", "DELETE" */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; or NULL */
    const char *body;           /* NULL: no body */
    apr_size_t body_len;
    /* Pin the address: "host:port:addr" (curl's CURLOPT_RESOLVE), for the
     * ACME pre-check's probe of each address of a name; or NULL. */
    const char *resolve;
} cs_http_req_t;

typedef struct {
    long status;
    char *body;                 /* NUL-terminated, "" when empty */
    apr_size_t len;
    apr_table_t *headers;       /* response headers (names any case) */
} cs_http_resp_t;

typedef apr_status_t cs_http_send_fn(void *baton, cs_http_resp_t *resp,
                                     const cs_http_req_t *req,
                                     apr_pool_t *p, const char **err);

typedef struct {
    cs_http_send_fn *send;
    void *baton;
} cs_http_t;

typedef struct {
    const char *protocols;      /* "https" (NULL) or "https,http" */
    const char *ca_file;        /* trust for the server; NULL: system */
    const char *client_cert;    /* PEM files for mutual TLS; or NULL */
    const char *client_key;
    /* The same in memory (PEM text), for a process that cannot read the
     * files (an httpd worker: the parent read them); used instead of the
     * files when set; not copied: the caller keeps them alive). */
    const char *client_cert_pem;
    const char *client_key_pem;
    const char *user_agent;     /* NULL: curl's */
    apr_interval_time_t timeout;            /* whole request; 0: 30 s */
    apr_interval_time_t connect_timeout;    /* 0: 10 s */
    apr_size_t max_body;                    /* 0: 1 MiB */
    /* Set non-zero by another thread: the request in flight ends within
     * about a second ("stopped"); NULL: never. */
    const volatile apr_uint32_t *stop;
} cs_http_conf_t;

/** Once per process, before any thread makes a transport (curl). */
void cs_http_global_init(void);

/** The libcurl transport; its handle is freed with p. */
apr_status_t cs_http_curl_create(cs_http_t **http, apr_pool_t *p,
                                 const cs_http_conf_t *conf);

/** One exchange over http; resp and everything in it from p. */
apr_status_t cs_http_send(cs_http_t *http, cs_http_resp_t *resp,
                          const cs_http_req_t *req, apr_pool_t *p,
                          const char **err);

/**
 * A Retry-After value (delta-seconds or an HTTP date) in seconds from
 * now, at most max; 0 when value is NULL or neither form.  A date in the
 * past gives 1.  What to do with it stays the client's business.
 */
apr_int64_t cs_http_retry_after(const char *value, apr_time_t now,
                                apr_int64_t max);

#endif /* CS_HTTP_H */
