/*
 * fuzz_cs_request.c: libFuzzer harness for what a CertService API request
 * carries, as mod_certservice/cs_request.c reads it: the query string and
 * its parameters (GET /v1/changes, GET /v1/domains), a domain name from
 * the path, and the JSON body of every endpoint that takes one.
 *
 * Each input is used whole as each of them.  Beyond "no crash", it aborts
 * when
 *   - a parser answers anything but 0, 400 (or 413 for a batch), or
 *     answers without a reason, or with one that is not valid UTF-8 (it
 *     goes into the JSON error body) or quotes a byte outside printable
 *     ASCII;
 *   - the query parse disagrees with an independent rule: it succeeds
 *     exactly when every '%' starts a two-hex-digit escape other than
 *     %00 (so a value never ends early at a NUL); on success the parts
 *     are the '&'-separated non-empty parts, a query without '%' comes
 *     back unchanged, and re-encoding the decoded parameters parses to
 *     the same ones;
 *   - since/limit/after come back out of range, not the default when
 *     absent, or a number that does not print back as the digits sent;
 *   - a name comes back that is not normalised (normalising it again
 *     changes it, or cs_name_check refuses it);
 *   - a body parser accepts what breaks its contract (batch size, token
 *     syntax, ttl range, seq < 0, a "failed" that is not a JSON object,
 *     a key type or revocation reason out of range, an ACME profile that
 *     is not 1 to 64 of A-Z a-z 0-9 . _ -), or a smaller batch
 *     limit accepts what a larger one refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>

#include "cs_name.h"
#include "cs_request.h"

#include "fuzz.h"

#define MAX_TTL 900

static int ishex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}

/* A reason fit for the JSON error body and a log line. */
static void check_err(int rc, const char *err, int allow_413)
{
    json_t *j;
    const char *c;

    REQUIRE(rc == 0 || rc == CS_REQ_BAD || (allow_413
                                            && rc == CS_REQ_TOO_LARGE));
    if (rc == 0) {
        return;
    }
    REQUIRE(err != NULL && *err);
    j = json_string(err);
    REQUIRE(j != NULL);         /* valid UTF-8 */
    json_decref(j);
    for (c = err; *c; c++) {
        REQUIRE((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    }
}

/* A name the parsers hand on must be normalised already. */
static void check_name(apr_pool_t *p, const char *name)
{
    const char *again;

    REQUIRE(name != NULL);
    REQUIRE(cs_name_normalize(&again, p, name) == NULL);
    REQUIRE(strcmp(again, name) == 0);
    REQUIRE(cs_name_check(NULL, name, strlen(name), 0) == NULL);
    REQUIRE(strlen(name) <= 253);
}

/* The independent rule: every '%' starts an escape that is not %00. */
static int query_should_parse(const char *s)
{
    size_t i, n = strlen(s);

    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (n - i < 3 || !ishex(s[i + 1]) || !ishex(s[i + 2])
                || (s[i + 1] == '0' && s[i + 2] == '0')) {
                return 0;
            }
        }
    }
    return 1;
}

static char *encode(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) * 3 + 1), *o = out;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '-') {
            *o++ = (char)c;
        }
        else {
            sprintf(o, "%%%02X", c);
            o += 3;
        }
    }
    *o = '\0';
    return out;
}

static void same_params(const apr_array_header_t *a,
                        const apr_array_header_t *b)
{
    int i;

    REQUIRE(a->nelts == b->nelts);
    for (i = 0; i < a->nelts; i++) {
        const cs_query_param_t *x = &APR_ARRAY_IDX(a, i, cs_query_param_t);
        const cs_query_param_t *y = &APR_ARRAY_IDX(b, i, cs_query_param_t);
        REQUIRE(strcmp(x->name, y->name) == 0);
        REQUIRE(strcmp(x->value, y->value) == 0);
    }
}

/* Leading zeros dropped: what apr_strtoi64 printed back must be. */
static const char *digits(const char *v)
{
    while (v[0] == '0' && v[1]) {
        v++;
    }
    return v;
}

static void fuzz_query(apr_pool_t *p, const char *args)
{
    apr_array_header_t *params, *again;
    const char *err = NULL, *after, *v, *part;
    apr_int64_t since;
    int rc, limit, i, parts = 0;
    char *enc = "";

    rc = cs_query_parse(&params, p, args, &err);
    check_err(rc, err, 0);
    REQUIRE((rc == 0) == query_should_parse(args));
    if (rc) {
        REQUIRE(strncmp(err, "query parameter '", 17) == 0);
        return;
    }
    for (part = args; *part; ) {
        size_t len = strcspn(part, "&");
        parts += len > 0;
        part += len + (part[len] == '&');
    }
    REQUIRE(params->nelts == parts);
    if (!strchr(args, '%')) {
        char *copy = apr_pstrdup(p, args), *tok, *last;
        i = 0;
        for (tok = apr_strtok(copy, "&", &last); tok;
             tok = apr_strtok(NULL, "&", &last), i++) {
            const cs_query_param_t *q = &APR_ARRAY_IDX(params, i,
                                                       cs_query_param_t);
            char *eq = strchr(tok, '=');
            REQUIRE(i < params->nelts);
            if (eq) {
                *eq = '\0';
            }
            REQUIRE(strcmp(q->name, tok) == 0);
            REQUIRE(strcmp(q->value, eq ? eq + 1 : "") == 0);
        }
        REQUIRE(i == params->nelts);
    }
    for (i = 0; i < params->nelts; i++) {
        const cs_query_param_t *q = &APR_ARRAY_IDX(params, i,
                                                   cs_query_param_t);
        enc = apr_pstrcat(p, enc, i ? "&" : "", encode(p, q->name), "=",
                          encode(p, q->value), NULL);
    }
    REQUIRE(cs_query_parse(&again, p, enc, &err) == 0);
    same_params(params, again);

    rc = cs_req_changes(&since, &limit, p, params, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(since >= 0);
        REQUIRE(limit >= 1 && limit <= CS_REQ_MAX_LIMIT);
        if ((v = cs_query_get(params, "since")) != NULL) {
            REQUIRE(strcmp(apr_psprintf(p, "%" APR_INT64_T_FMT, since),
                           digits(v)) == 0);
        }
        else {
            REQUIRE(since == 0);
        }
        if ((v = cs_query_get(params, "limit")) != NULL) {
            REQUIRE(strcmp(apr_psprintf(p, "%d", limit), digits(v)) == 0);
        }
        else {
            REQUIRE(limit == CS_REQ_DEFAULT_LIMIT);
        }
    }
    rc = cs_req_domains(&after, &limit, p, params, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(limit >= 1 && limit <= CS_REQ_MAX_LIMIT);
        REQUIRE((after == NULL) == (cs_query_get(params, "after") == NULL));
        if (after) {
            check_name(p, after);
        }
    }
}

static void fuzz_bodies(apr_pool_t *p, const char *buf, size_t len)
{
    apr_array_header_t *small, *big;
    const char *err = NULL, *host, *chain, *key, *cms, *profile;
    cs_report_t rep;
    json_t *body, *f;
    int rc, rc_big, ttl, kt, reason, i;

    rc = cs_req_json(&body, p, buf, len, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(json_is_object(body));
        json_decref(body);
    }

    rc = cs_req_bundles(&small, p, buf, len, 3, &err);
    check_err(rc, err, 1);
    rc_big = cs_req_bundles(&big, p, buf, len, 100, &err);
    check_err(rc_big, err, 1);
    if (rc == 0) {
        REQUIRE(rc_big == 0);
        REQUIRE(small->nelts <= 3);
        REQUIRE(small->nelts == big->nelts);
        for (i = 0; i < small->nelts; i++) {
            check_name(p, APR_ARRAY_IDX(small, i, const char *));
            REQUIRE(strcmp(APR_ARRAY_IDX(small, i, const char *),
                           APR_ARRAY_IDX(big, i, const char *)) == 0);
        }
    }
    else if (rc == CS_REQ_TOO_LARGE && rc_big == 0) {
        REQUIRE(big->nelts > 3);
    }
    if (rc_big == 0) {
        REQUIRE(big->nelts <= 100);
        for (i = 0; i < big->nelts; i++) {
            check_name(p, APR_ARRAY_IDX(big, i, const char *));
        }
    }

    rc = cs_req_lease(&host, &ttl, p, buf, len, MAX_TTL, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(cs_req_token_ok(host));
        REQUIRE(ttl >= 1 && ttl <= MAX_TTL);
    }

    rc = cs_req_report(&rep, p, buf, len, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(cs_req_token_ok(rep.pool) && cs_req_token_ok(rep.state));
        REQUIRE(rep.seq >= 0);
        f = json_loads(rep.failed_json, 0, NULL);
        REQUIRE(json_is_object(f));
        json_decref(f);
    }

    rc = cs_req_put_domain(&kt, &profile, p, buf, len, 0, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(kt == 0 || kt == 1);
        /* Absent or null, or a name of the documented syntax. */
        REQUIRE(profile == NULL
                || (strlen(profile) >= 1 && strlen(profile) <= 64
                    && profile[strspn(profile, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                               "abcdefghijklmnopqrstuvwxyz"
                                               "0123456789._-")] == '\0'));
    }
    else {
        REQUIRE(profile == NULL);
    }

    rc = cs_req_import(&chain, &key, &cms, p, buf, len, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(chain != NULL && (key != NULL) != (cms != NULL));
    }

    rc = cs_req_revoke(&reason, p, buf, len, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        REQUIRE(reason >= 0 && reason <= 10 && reason != 7);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    const char *name, *err = NULL;
    char *text;
    int rc;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    apr_pool_create(&p, NULL);

    /* A query string or a path segment never holds a NUL byte: httpd
     * ends them there. */
    text = apr_pstrmemdup(p, (const char *)data, size);
    fuzz_query(p, text);

    rc = cs_req_domain(&name, p, text, NULL, &err);
    check_err(rc, err, 0);
    if (rc == 0) {
        check_name(p, name);
    }

    fuzz_bodies(p, (const char *)data, size);
    apr_pool_destroy(p);
    return 0;
}
