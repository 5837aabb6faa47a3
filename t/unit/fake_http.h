/*
 * fake_http.h: a scripted HTTP server behind the cs_http_t interface, so
 * that the clients' unit tests (test_csy_sync, test_cs_acme) run with no
 * network at all.
 *
 *     fake_http_t *f = fake_http_create(pool);
 *     fake_http_answer(f, "GET", "https://cs/v1/changes*", 200,
 *                      "Retry-After: 5\n", "{...}");
 *     cfg.http = fake_http_transport(f);
 *     ... run the client ...
 *     CHECK_EQ_INT(fake_http_count(f), 2);
 *     CHECK_STR(fake_http_request(f, 0)->method, "GET");
 *
 * Answers are tried in the order they were added; the first whose method
 * and URL match and that has uses left answers.  A URL ending in '*' is
 * a prefix.  An answer used `times` times is spent (0: never), so a script
 * of the same URL answering differently the first time and after is two
 * answers.  A request nothing answers fails like an unreachable server
 * (APR_ECONNREFUSED, "fake: no answer for ...") and is counted in
 * fake_http_unanswered(), so a test sees a client asking what it should
 * not.  A handler, when set, is asked first and may decline.
 *
 * Every request is recorded (copied into the fake's pool).
 */
#ifndef FAKE_HTTP_H
#define FAKE_HTTP_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "cs_http.h"

typedef struct fake_http_t fake_http_t;

/* What a handler returns to leave the request to the script. */
#define FAKE_HTTP_DECLINED  (APR_OS_START_USERERR + 4242)

/** A request as the client sent it. */
typedef struct {
    const char *method;
    const char *url;
    apr_array_header_t *headers;    /* const char *: "Name: value" */
    const char *body;               /* NUL-terminated copy; "" if none */
    apr_size_t body_len;
    const char *resolve;            /* the pinned address, or NULL */
} fake_http_request_t;

fake_http_t *fake_http_create(apr_pool_t *p);

/** The transport to hand to a client. */
cs_http_t *fake_http_transport(fake_http_t *f);

/**
 * Script an answer.  method: NULL matches any; url: exact, or a prefix
 * ending in '*'; headers: "Name: value" lines separated by '\n' (or
 * NULL); body: NULL for none.  times: uses before it is spent, 0: any.
 */
void fake_http_answer_n(fake_http_t *f, const char *method, const char *url,
                        long status, const char *headers, const char *body,
                        int times);

/** fake_http_answer_n(..., 0): answers every time. */
void fake_http_answer(fake_http_t *f, const char *method, const char *url,
                      long status, const char *headers, const char *body);

/** The transport fails with rv (no answer at all), times as above. */
void fake_http_fail(fake_http_t *f, const char *method, const char *url,
                    apr_status_t rv, int times);

/** A handler asked before the script; FAKE_HTTP_DECLINED to pass. */
void fake_http_handler(fake_http_t *f, cs_http_send_fn *fn, void *baton);

/** Forget the script, the handler and the record. */
void fake_http_reset(fake_http_t *f);

/** Requests seen so far, and the i-th of them (NULL past the end). */
int fake_http_count(const fake_http_t *f);
const fake_http_request_t *fake_http_request(const fake_http_t *f, int i);

/** Requests seen whose method and URL (prefix with '*') match. */
int fake_http_count_of(const fake_http_t *f, const char *method,
                       const char *url);

/** Requests that no answer matched. */
int fake_http_unanswered(const fake_http_t *f);

/** The value of header name ("Accept") in a recorded request (may be
 * NULL), or NULL. */
const char *fake_http_header(const fake_http_request_t *r, const char *name);

#endif /* FAKE_HTTP_H */
