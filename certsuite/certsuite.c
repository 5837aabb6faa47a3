/*
 * certsuite.c: the operators' command for CertService (docs/certsuite.1).
 *
 * Every command is one or a few admin requests over mutual TLS, through
 * the suite's one HTTP transport (lib/cs_http, libcurl, one kept-alive
 * connection).  What is printed and how arguments are read is csc.c's.
 * Messages go to stderr prefixed "certsuite: "; the answer (table or
 * JSON) to stdout.  Exit codes: csc.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_hash.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_file.h"
#include "cs_http.h"
#include "cs_x509.h"
#include "csc.h"

#define CSC_VERSION "0.1.0"
#define CSC_MAX_BODY (64 * 1024 * 1024)

typedef struct {
    apr_pool_t *p;
    csc_args_t *a;
    csc_conf_t conf;
    cs_http_t *http;
    apr_int64_t now;
} csc_t;

static int fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("certsuite: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (s) {
        puts(s);
        free(s);
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/*
 * One request; *out the answer's JSON (NULL for 204).  Any status other
 * than those in ok (a 0-terminated list; NULL: 2xx) is a failure that is
 * printed, with CertService's own "error" text.
 */
static int call(json_t **out, long *status, csc_t *c, const char *method,
                const char *path, json_t *body, const long *ok)
{
    cs_http_req_t req;
    cs_http_resp_t resp;
    const char *err = NULL;
    const char *headers[] = { "Content-Type: application/json",
                              "Accept: application/json", NULL };
    char *text = NULL;
    json_t *j = NULL;
    json_error_t jerr;
    apr_status_t rv;
    int good = 0;

    *out = NULL;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = apr_pstrcat(c->p, c->conf.url, path, NULL);
    req.headers = headers;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        req.body = text;
        req.body_len = strlen(text);
    }
    rv = cs_http_send(c->http, &resp, &req, c->p, &err);
    if (text) {
        /* An import's key (unsealed with --no-seal) was in there. */
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (rv == APR_ENOSPC) {
        return fail(CSC_EXIT_FAIL, "%s %s: the answer is larger than %d "
                    "bytes", method, path, CSC_MAX_BODY);
    }
    if (rv) {
        return fail(CSC_EXIT_CONNECT, "cannot reach CertService at %s: %s",
                    c->conf.url, err ? err : "no answer");
    }
    if (status) {
        *status = resp.status;
    }
    if (ok) {
        for (; *ok; ok++) {
            good |= resp.status == *ok;
        }
    }
    else {
        good = resp.status >= 200 && resp.status < 300;
    }
    if (resp.len) {
        j = json_loadb(resp.body, resp.len, 0, &jerr);
    }
    if (!good) {
        const char *why = json_string_value(json_object_get(j, "error"));
        int code = CSC_EXIT_FAIL;

        if (!why) {
            why = resp.len ? "(an answer that is not CertService's JSON: "
                             "is service_url right?)"
                           : "(no body)";
        }
        code = fail(code, "%s %s: CertService answered %ld: %s", method,
                    path, resp.status, csc_safe(c->p, why));
        json_decref(j);
        return code;
    }
    if (resp.len && !j) {
        return fail(CSC_EXIT_FAIL, "%s %s: the answer is not JSON (%s)",
                    method, path, jerr.text);
    }
    if (j && !json_is_object(j)) {
        json_decref(j);
        return fail(CSC_EXIT_FAIL, "%s %s: the answer is not a JSON object",
                    method, path);
    }
    *out = j;
    return CSC_EXIT_OK;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static apr_int64_t jint(json_t *o, const char *k)
{
    return (apr_int64_t)json_integer_value(json_object_get(o, k));
}

/* Every domain, page after page, into one array (a new reference). */
static int list_all(json_t **out, csc_t *c)
{
    json_t *all = json_array();
    const char *after = NULL;
    int rc;

    for (;;) {
        json_t *page, *doms;
        const char *path = after
            ? apr_psprintf(c->p, "/v1/domains?limit=1000&after=%s", after)
            : "/v1/domains?limit=1000";

        if ((rc = call(&page, NULL, c, "GET", path, NULL, NULL))) {
            json_decref(all);
            return rc;
        }
        doms = json_object_get(page, "domains");
        if (!json_is_array(doms)) {
            json_decref(page);
            json_decref(all);
            return fail(CSC_EXIT_FAIL, "GET /v1/domains: no 'domains' array "
                        "in the answer");
        }
        if (json_array_size(doms) == 0) {
            json_decref(page);
            break;
        }
        json_array_extend(all, doms);
        after = apr_pstrdup(c->p, jstr(page, "next") ? jstr(page, "next")
                                                     : "");
        json_decref(page);
        if (!*after) {
            break;
        }
    }
    *out = all;
    return CSC_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* domain ...                                                          */
/* ------------------------------------------------------------------ */

static void domain_row(csc_table_t *t, csc_t *c, json_t *d)
{
    csc_table_add(t, jstr(d, "domain"), jstr(d, "state"), jstr(d, "serial"),
                  jint(d, "not_after")
                  ? apr_pstrcat(c->p,
                                csc_fmt_time(c->p, jint(d, "not_after")),
                                " (", csc_fmt_expiry(c->p,
                                                     jint(d, "not_after"),
                                                     c->now), ")", NULL)
                  : NULL,
                  jstr(d, "last_error"));
}

static int cmd_domain_list(csc_t *c)
{
    json_t *all, *d, *shown = json_array();
    csc_table_t *t = csc_table_make(c->p, 5, "DOMAIN", "STATE", "SERIAL",
                                    "EXPIRES (UTC)", "LAST ERROR");
    size_t i;
    int rc;

    if ((rc = list_all(&all, c))) {
        json_decref(shown);
        return rc;
    }
    json_array_foreach(all, i, d) {
        if (c->a->state && (!jstr(d, "state")
                            || strcmp(jstr(d, "state"), c->a->state))) {
            continue;
        }
        json_array_append(shown, d);
        domain_row(t, c, d);
    }
    if (c->a->json) {
        print_json(json_pack("{s:o}", "domains", shown));
    }
    else {
        fputs(csc_table_render(t), stdout);
        printf("%d domain%s\n", (int)json_array_size(shown),
               json_array_size(shown) == 1 ? "" : "s");
        json_decref(shown);
    }
    json_decref(all);
    return CSC_EXIT_OK;
}

static int cmd_domain_show(csc_t *c)
{
    json_t *d, *h, *hosts, *acme;
    csc_table_t *t;
    size_t i;
    int rc;

    if ((rc = call(&d, NULL, c, "GET",
                   apr_pstrcat(c->p, "/v1/domains/", c->a->domain, NULL),
                   NULL, NULL))) {
        return rc;
    }
    if (c->a->json) {
        print_json(d);
        json_decref(d);
        return CSC_EXIT_OK;
    }
    t = csc_table_make(c->p, 2, "domain", jstr(d, "domain"));
    csc_table_add(t, "state", jstr(d, "state"));
    csc_table_add(t, "serial", jstr(d, "serial"));
    csc_table_add(t, "key type", jstr(d, "key_type"));
    csc_table_add(t, "valid from", csc_fmt_time(c->p,
                                                jint(d, "not_before")));
    csc_table_add(t, "valid until",
                  apr_pstrcat(c->p, csc_fmt_time(c->p, jint(d, "not_after")),
                              " (", csc_fmt_expiry(c->p, jint(d, "not_after"),
                                                   c->now), ")", NULL));
    csc_table_add(t, "change seq", apr_psprintf(c->p, "%" APR_INT64_T_FMT,
                                                jint(d, "seq")));
    csc_table_add(t, "last error", jstr(d, "last_error"));
    if ((acme = json_object_get(d, "acme")) && json_is_object(acme)) {
        csc_table_add(t, "acme state", jstr(acme, "state"));
        csc_table_add(t, "acme next attempt",
                      csc_fmt_time(c->p, jint(acme, "next_attempt")));
        csc_table_add(t, "acme renew at",
                      csc_fmt_time(c->p, jint(acme, "renew_at")));
        csc_table_add(t, "acme CA", jstr(acme, "ca"));
        csc_table_add(t, "acme last error", jstr(acme, "last_error"));
    }
    fputs(csc_table_render(t), stdout);
    hosts = json_object_get(d, "hosts");
    if (json_is_array(hosts) && json_array_size(hosts)) {
        t = csc_table_make(c->p, 6, "HOST", "POOL", "SERIAL SERVED",
                           "CURRENT", "REPORTED", "FAILED");
        json_array_foreach(hosts, i, h) {
            const char *s = jstr(h, "serial");
            const char *want = jstr(d, "serial");
            csc_table_add(t, jstr(h, "host"), jstr(h, "pool"), s,
                          s && want && !strcmp(s, want) ? "yes" : "no",
                          apr_pstrcat(c->p, csc_fmt_span(c->p, c->now
                                                 - jint(h, "reported")),
                                      " ago", NULL),
                          jstr(h, "failed"));
        }
        fputs("\n", stdout);
        fputs(csc_table_render(t), stdout);
    }
    json_decref(d);
    return CSC_EXIT_OK;
}

static int cmd_domain_add(csc_t *c)
{
    json_t *d, *body = json_object();
    static const long ok[] = { 200, 201, 202, 0 };
    long status = 0;
    int rc;

    if (c->a->key_type) {
        json_object_set_new(body, "key_type", json_string(c->a->key_type));
    }
    if (c->a->profile) {
        json_object_set_new(body, "profile", json_string(c->a->profile));
    }
    rc = call(&d, &status, c, "PUT",
              apr_pstrcat(c->p, "/v1/domains/", c->a->domain, NULL), body,
              ok);
    json_decref(body);
    if (rc) {
        return rc;
    }
    if (c->a->json) {
        print_json(d);
    }
    else if (status == 202) {
        printf("%s: queued for the CA (state %s); `certsuite domain show "
               "%s` follows it\n", jstr(d, "domain"),
               csc_safe(c->p, jstr(d, "state")), jstr(d, "domain"));
    }
    else {
        printf("%s: %s, serial %s, valid until %s (change %" APR_INT64_T_FMT
               ")\n", jstr(d, "domain"),
               status == 201 ? "added" : "re-issued",
               csc_safe(c->p, jstr(d, "serial")),
               csc_fmt_time(c->p, jint(d, "not_after")), jint(d, "seq"));
    }
    json_decref(d);
    return CSC_EXIT_OK;
}

static int cmd_domain_remove(csc_t *c)
{
    json_t *d;
    int rc;

    if ((rc = call(&d, NULL, c, "DELETE",
                   apr_pstrcat(c->p, "/v1/domains/", c->a->domain, NULL),
                   NULL, NULL))) {
        return rc;
    }
    if (c->a->json) {
        print_json(d);
    }
    else {
        printf("%s: removed (change %" APR_INT64_T_FMT "); the proxies stop "
               "serving it at their next sync\n", c->a->domain,
               jint(d, "seq"));
    }
    json_decref(d);
    return CSC_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* import                                                              */
/* ------------------------------------------------------------------ */

static int load_wrap_certs(apr_array_header_t **out, csc_t *c)
{
    apr_array_header_t *all = apr_array_make(c->p, 2, sizeof(X509 *));
    const char *err;
    int i;

    for (i = 0; i < c->conf.wrap->nelts; i++) {
        const char *f = APR_ARRAY_IDX(c->conf.wrap, i, const char *);
        apr_array_header_t *certs;
        if (cs_file_read_certs(&certs, c->p, f, &err)) {
            return fail(CSC_EXIT_USAGE, "wrap_cert %s: %s", f, err);
        }
        apr_array_cat(all, certs);
    }
    *out = all;
    return CSC_EXIT_OK;
}

static int cmd_import(csc_t *c)
{
    apr_array_header_t *chain, *wrap = NULL;
    EVP_PKEY *key;
    const char *err;
    json_t *body, *d;
    unsigned char *der;
    apr_size_t der_len;
    static const long ok[] = { 200, 201, 0 };
    long status = 0;
    int rc, sealed = 0;

    if (cs_file_read_certs(&chain, c->p, c->a->cert_file, &err)) {
        return fail(CSC_EXIT_USAGE, "%s: %s", c->a->cert_file, err);
    }
    if (cs_file_read_key(&key, c->p, c->a->key_file, &err)) {
        return fail(CSC_EXIT_USAGE, "%s: %s", c->a->key_file, err);
    }
    /* The checks CertService makes, before anything leaves: with a
     * sealed key it can check the chain but not the key itself. */
    if (cs_bundle_verify(chain, key, c->a->domain,
                         apr_time_now(), &err)) {
        return fail(CSC_EXIT_FAIL, "not imported: %s", err);
    }
    if (!cs_key_describe(c->p, key)) {
        return fail(CSC_EXIT_FAIL, "not imported: unsupported key type "
                    "(ECDSA P-256/P-384 or RSA of at least 2048 bits)");
    }
    body = json_pack("{s:s}", "chain_pem", cs_pem_write_certs(c->p, chain));
    if (c->conf.wrap->nelts && !c->a->plain_key) {
        if ((rc = load_wrap_certs(&wrap, c))) {
            json_decref(body);
            return rc;
        }
        if (cs_envelope_seal(&der, &der_len, c->p, key, wrap, &err)) {
            json_decref(body);
            return fail(CSC_EXIT_FAIL, "sealing the key to wrap_cert: %s",
                        err);
        }
        json_object_set_new(body, "key_cms",
                            json_string(cs_base64_encode(c->p, der,
                                                         der_len)));
        sealed = 1;
    }
    else {
        apr_size_t klen;
        char *pem = cs_pem_write_key(c->p, key, &klen);
        json_object_set_new(body, "key_pem", json_stringn(pem, klen));
        OPENSSL_cleanse(pem, klen);
    }
    rc = call(&d, &status, c, "PUT",
              apr_pstrcat(c->p, "/v1/domains/", c->a->domain,
                          "/certificate", NULL), body, ok);
    if (!sealed) {
        json_t *k = json_object_get(body, "key_pem");
        OPENSSL_cleanse((char *)json_string_value(k), json_string_length(k));
    }
    json_decref(body);
    if (rc) {
        return rc;
    }
    if (c->a->json) {
        print_json(d);
    }
    else {
        printf("%s: imported (%s), serial %s, valid until %s; key %s\n",
               jstr(d, "domain"), status == 201 ? "new domain" : "replaced",
               csc_safe(c->p, jstr(d, "serial")),
               csc_fmt_time(c->p, jint(d, "not_after")),
               sealed ? apr_psprintf(c->p, "sealed here to %d wrapping "
                                     "certificate%s", wrap->nelts,
                                     wrap->nelts == 1 ? "" : "s")
                      : "sent over mutual TLS and sealed by CertService");
    }
    json_decref(d);
    return CSC_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* pool status                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *host, *pool, *state;
    apr_int64_t seq, reported;
    int current, stale, failed;
} host_row_t;

static int cmd_pool_status(csc_t *c)
{
    json_t *all, *d, *serving = json_array(), *expiring = json_array();
    json_t *jhosts = json_array(), *out;
    apr_hash_t *hosts = apr_hash_make(c->p);
    apr_array_header_t *order = apr_array_make(c->p, 8, sizeof(host_row_t *));
    apr_int64_t head = 0, since = -1;
    csc_table_t *t, *ts, *te;
    size_t i, k;
    int rc, n;

    if ((rc = list_all(&all, c))) {
        goto leave0;
    }
    ts = csc_table_make(c->p, 4, "DOMAIN", "SERIAL", "SERVED BY",
                        "BEHIND (SERIAL SERVED)");
    te = csc_table_make(c->p, 3, "DOMAIN", "EXPIRES (UTC)", "STATE");
    json_array_foreach(all, i, d) {
        json_t *detail, *h, *hs, *on = json_array(), *off = json_array();
        const char *want = jstr(d, "serial");
        const char *on_s = "", *off_s = "";

        if (jint(d, "seq") > head) {
            head = jint(d, "seq");
        }
        if (want && csc_expiring(jint(d, "not_after"), c->now,
                                 c->a->days)) {
            json_array_append_new(expiring, json_pack(
                "{s:s, s:s, s:I}", "domain", jstr(d, "domain"),
                "serial", want, "not_after",
                (json_int_t)jint(d, "not_after")));
            csc_table_add(te, jstr(d, "domain"),
                          apr_pstrcat(c->p, csc_fmt_time(c->p,
                                                   jint(d, "not_after")),
                                      " (", csc_fmt_expiry(c->p,
                                                   jint(d, "not_after"),
                                                   c->now), ")", NULL),
                          jstr(d, "state"));
        }
        if ((rc = call(&detail, NULL, c, "GET",
                       apr_pstrcat(c->p, "/v1/domains/", jstr(d, "domain"),
                                   NULL), NULL, NULL))) {
            json_decref(on);
            json_decref(off);
            goto leave;
        }
        hs = json_object_get(detail, "hosts");
        json_array_foreach(hs, k, h) {
            const char *name = jstr(h, "host");
            const char *s = jstr(h, "serial");
            host_row_t *r;

            if (!name) {
                continue;
            }
            if (!(r = apr_hash_get(hosts, name, APR_HASH_KEY_STRING))) {
                r = apr_pcalloc(c->p, sizeof(*r));
                r->host = apr_pstrdup(c->p, name);
                r->pool = apr_pstrdup(c->p, jstr(h, "pool") ? jstr(h, "pool")
                                                            : "");
                r->state = apr_pstrdup(c->p, jstr(h, "state")
                                             ? jstr(h, "state") : "");
                r->seq = jint(h, "seq");
                r->reported = jint(h, "reported");
                apr_hash_set(hosts, r->host, APR_HASH_KEY_STRING, r);
                APR_ARRAY_PUSH(order, host_row_t *) = r;
            }
            if (jstr(h, "failed")) {
                r->failed++;
            }
            if (s && want && !strcmp(s, want)) {
                r->current++;
                json_array_append_new(on, json_string(name));
                on_s = apr_pstrcat(c->p, on_s, *on_s ? " " : "", name, NULL);
            }
            else {
                r->stale++;
                json_array_append_new(off, json_pack("{s:s, s:o}", "host",
                    name, "serial", s ? json_string(s) : json_null()));
                off_s = apr_pstrcat(c->p, off_s, *off_s ? " " : "", name,
                                    "(", s ? s : "none", ")", NULL);
            }
        }
        json_array_append_new(serving, json_pack(
            "{s:s, s:o, s:o, s:o}", "domain", jstr(d, "domain"),
            "serial", want ? json_string(want) : json_null(),
            "current", on, "behind", off));
        csc_table_add(ts, jstr(d, "domain"), want, on_s, off_s);
        json_decref(detail);
    }

    /* Where the feed ends: deletes leave no domain behind, so read the
     * feed's tail from the lowest seq a host reported. */
    for (n = 0; n < order->nelts; n++) {
        host_row_t *r = APR_ARRAY_IDX(order, n, host_row_t *);
        if (since < 0 || r->seq < since) {
            since = r->seq;
        }
    }
    if (since < 0 || since > head) {
        since = head;
    }
    for (;;) {
        json_t *page;
        if ((rc = call(&page, NULL, c, "GET",
                       apr_psprintf(c->p, "/v1/changes?limit=1000&since=%"
                                    APR_INT64_T_FMT, since), NULL, NULL))) {
            goto leave;
        }
        since = jint(page, "next");
        if (since > head) {
            head = since;
        }
        if (!json_is_true(json_object_get(page, "more"))) {
            json_decref(page);
            break;
        }
        json_decref(page);
    }

    t = csc_table_make(c->p, 8, "HOST", "POOL", "SEQ", "BEHIND FEED",
                       "STATE", "REPORTED", "DOMAINS CURRENT/BEHIND",
                       "FAILED");
    for (n = 0; n < order->nelts; n++) {
        host_row_t *r = APR_ARRAY_IDX(order, n, host_row_t *);
        json_array_append_new(jhosts, json_pack(
            "{s:s, s:s, s:I, s:I, s:s, s:I, s:i, s:i, s:i}",
            "host", r->host, "pool", r->pool, "seq", (json_int_t)r->seq,
            "behind", (json_int_t)(head - r->seq), "state", r->state,
            "reported", (json_int_t)r->reported, "current", r->current,
            "stale", r->stale, "failed", r->failed));
        csc_table_add(t, r->host, r->pool,
                      apr_psprintf(c->p, "%" APR_INT64_T_FMT, r->seq),
                      head > r->seq
                      ? apr_psprintf(c->p, "%" APR_INT64_T_FMT " change%s",
                                     head - r->seq,
                                     head - r->seq == 1 ? "" : "s")
                      : "up to date",
                      r->state,
                      apr_pstrcat(c->p, csc_fmt_span(c->p,
                                                     c->now - r->reported),
                                  " ago", NULL),
                      apr_psprintf(c->p, "%d/%d", r->current, r->stale),
                      apr_itoa(c->p, r->failed));
    }
    if (c->a->json) {
        out = json_pack("{s:I, s:i, s:i, s:O, s:O, s:O}",
                        "feed_head", (json_int_t)head,
                        "domains", (int)json_array_size(all),
                        "expiring_days", c->a->days, "hosts", jhosts,
                        "serving", serving, "expiring", expiring);
        print_json(out);
        json_decref(out);
    }
    else {
        printf("feed at change %" APR_INT64_T_FMT ", %d domain%s, %d "
               "host%s reporting\n\n", head, (int)json_array_size(all),
               json_array_size(all) == 1 ? "" : "s", order->nelts,
               order->nelts == 1 ? "" : "s");
        if (order->nelts) {
            fputs(csc_table_render(t), stdout);
        }
        else {
            puts("no host has reported yet");
        }
        if (json_array_size(all)) {
            fputs("\n", stdout);
            fputs(csc_table_render(ts), stdout);
        }
        printf("\n%d certificate%s expiring within %d day%s%s\n",
               (int)json_array_size(expiring),
               json_array_size(expiring) == 1 ? "" : "s", c->a->days,
               c->a->days == 1 ? "" : "s",
               json_array_size(expiring) ? ":" : "");
        if (json_array_size(expiring)) {
            fputs(csc_table_render(te), stdout);
        }
    }
    rc = CSC_EXIT_OK;
leave:
    json_decref(all);
leave0:
    json_decref(serving);
    json_decref(expiring);
    json_decref(jhosts);
    return rc;
}

/* ------------------------------------------------------------------ */
/* wrap-key rotate                                                     */
/* ------------------------------------------------------------------ */

/* 1: domain's envelope has cert as a recipient; 0: not; <0: exit code
 * negated (a failure already printed). */
static int envelope_has(csc_t *c, const char *domain, X509 *cert)
{
    json_t *b;
    unsigned char *der;
    apr_size_t len;
    int rc;

    if ((rc = call(&b, NULL, c, "GET",
                   apr_pstrcat(c->p, "/v1/bundles/", domain, NULL), NULL,
                   NULL))) {
        return -rc;
    }
    if (!jstr(b, "key_cms")
        || cs_base64_decode(&der, &len, c->p, jstr(b, "key_cms"))) {
        json_decref(b);
        return -fail(CSC_EXIT_FAIL, "%s: its bundle has no readable key_cms",
                     domain);
    }
    json_decref(b);
    rc = cs_envelope_has_recipient(der, len, cert);
    if (rc < 0) {
        return -fail(CSC_EXIT_FAIL, "%s: its key_cms is not a CMS envelope",
                     domain);
    }
    return rc;
}

static int cmd_wrap_rotate(csc_t *c)
{
    apr_array_header_t *certs, *todo, *queued, *left;
    json_t *all, *d, *jtodo = json_array(), *out;
    X509 *cert;
    const char *err;
    size_t i;
    int rc, n, has, proven = 0;
    static const long ok[] = { 200, 201, 202, 0 };

    if (cs_file_read_certs(&certs, c->p, c->a->new_wrap, &err)) {
        return fail(CSC_EXIT_USAGE, "--new %s: %s", c->a->new_wrap, err);
    }
    cert = APR_ARRAY_IDX(certs, 0, X509 *);
    if ((rc = list_all(&all, c))) {
        json_decref(jtodo);
        return rc;
    }
    todo = apr_array_make(c->p, 16, sizeof(const char *));
    queued = apr_array_make(c->p, 4, sizeof(const char *));
    left = apr_array_make(c->p, 4, sizeof(const char *));
    /* Step 3 of the rotation (docs/certservice-api.md): every envelope
     * that does not open with the new key yet is re-issued. */
    json_array_foreach(all, i, d) {
        if (!jstr(d, "serial")) {
            continue;
        }
        if ((has = envelope_has(c, jstr(d, "domain"), cert)) < 0) {
            rc = -has;
            goto leave;
        }
        if (has) {
            proven = 1;
        }
        else {
            APR_ARRAY_PUSH(todo, const char *) = apr_pstrdup(c->p,
                                                       jstr(d, "domain"));
            json_array_append_new(jtodo, json_string(jstr(d, "domain")));
        }
    }
    if (!c->a->json) {
        printf("%d of %d certificates to re-issue so that their keys open "
               "with the new wrapping key\n", todo->nelts,
               (int)json_array_size(all));
    }
    if (c->a->dry_run) {
        if (c->a->json) {
            out = json_pack("{s:O, s:b}", "reissue", jtodo, "dry_run", 1);
            print_json(out);
            json_decref(out);
        }
        else {
            for (n = 0; n < todo->nelts; n++) {
                printf("  %s\n", APR_ARRAY_IDX(todo, n, const char *));
            }
        }
        rc = CSC_EXIT_OK;
        goto leave;
    }
    for (n = 0; n < todo->nelts; n++) {
        const char *dom = APR_ARRAY_IDX(todo, n, const char *);
        long status = 0;
        json_t *r;

        if ((rc = call(&r, &status, c, "PUT",
                       apr_pstrcat(c->p, "/v1/domains/", dom, NULL), NULL,
                       ok))) {
            fail(rc, "stopped after %d of %d re-issues (run the command "
                 "again to go on)", n, todo->nelts);
            goto leave;
        }
        json_decref(r);
        if (status == 202) {
            /* ACME: an order is queued; its envelope is checked when the
             * command runs again. */
            APR_ARRAY_PUSH(queued, const char *) = dom;
            continue;
        }
        if ((has = envelope_has(c, dom, cert)) < 0) {
            rc = -has;
            goto leave;
        }
        if (!has) {
            APR_ARRAY_PUSH(left, const char *) = dom;
            if (!proven) {
                /* The first re-issue already shows CertService does not
                 * seal to the new certificate: stop, change nothing
                 * more. */
                rc = fail(CSC_EXIT_FAIL, "%s was re-issued but its key "
                          "still does not open with %s: CertService does "
                          "not seal to it. Step 1 first: add "
                          "`CertServiceWrapCertificate %s` beside the old "
                          "one and restart CertService gracefully", dom,
                          c->a->new_wrap, c->a->new_wrap);
                goto leave;
            }
        }
        else {
            proven = 1;
        }
        if (!c->a->json && (n + 1) % 100 == 0) {
            fprintf(stderr, "certsuite: %d of %d re-issued\n", n + 1,
                    todo->nelts);
        }
    }
    if (c->a->json) {
        json_t *jq = json_array(), *jl = json_array();
        for (n = 0; n < queued->nelts; n++) {
            json_array_append_new(jq, json_string(APR_ARRAY_IDX(queued, n,
                                                          const char *)));
        }
        for (n = 0; n < left->nelts; n++) {
            json_array_append_new(jl, json_string(APR_ARRAY_IDX(left, n,
                                                          const char *)));
        }
        out = json_pack("{s:O, s:o, s:o, s:b}", "reissued", jtodo,
                        "queued", jq, "not_rewrapped", jl,
                        "complete", !queued->nelts && !left->nelts);
        print_json(out);
        json_decref(out);
    }
    if (left->nelts) {
        rc = fail(CSC_EXIT_FAIL, "%d certificate%s still do%s not open with "
                  "the new key (first: %s)", left->nelts,
                  left->nelts == 1 ? "" : "s", left->nelts == 1 ? "es" : "",
                  APR_ARRAY_IDX(left, 0, const char *));
        goto leave;
    }
    if (queued->nelts) {
        if (!c->a->json) {
            printf("%d re-issue%s queued at the CA: run `certsuite wrap-key "
                   "rotate --new %s` again once they are issued\n",
                   queued->nelts, queued->nelts == 1 ? "" : "s",
                   c->a->new_wrap);
        }
        rc = CSC_EXIT_OK;
        goto leave;
    }
    if (!c->a->json) {
        printf("every key now opens with the new wrapping key. Last step: "
               "once every proxy has the new private key, remove the old "
               "CertServiceWrapCertificate and restart CertService\n");
    }
    rc = CSC_EXIT_OK;
leave:
    json_decref(all);
    json_decref(jtodo);
    return rc;
}

/* ------------------------------------------------------------------ */
/* acme account                                                        */
/* ------------------------------------------------------------------ */

static int cmd_acme_account(csc_t *c)
{
    json_t *acct, *cas = NULL, *ca;
    static const long ok_cas[] = { 200, 404, 0 };
    long status = 0;
    csc_table_t *t;
    size_t i;
    int rc;

    if ((rc = call(&acct, NULL, c, "GET", "/v1/acme/account", NULL,
                   NULL))) {
        return rc;
    }
    if ((rc = call(&cas, &status, c, "GET", "/v1/acme/cas", NULL,
                   ok_cas))) {
        json_decref(acct);
        return rc;
    }
    if (status == 404) {
        json_decref(cas);
        cas = NULL;
    }
    if (c->a->json) {
        if (cas) {
            json_object_set(acct, "cas", json_object_get(cas, "cas"));
        }
        print_json(acct);
    }
    else {
        t = csc_table_make(c->p, 2, "directory", jstr(acct, "directory"));
        csc_table_add(t, "account", jstr(acct, "account"));
        csc_table_add(t, "key thumbprint", jstr(acct, "key_thumbprint"));
        fputs(csc_table_render(t), stdout);
        if (cas && json_is_array(json_object_get(cas, "cas"))) {
            t = csc_table_make(c->p, 5, "CA", "STATE", "FAILURES",
                               "LAST OK", "LAST ERROR");
            json_array_foreach(json_object_get(cas, "cas"), i, ca) {
                csc_table_add(t, jstr(ca, "name"), jstr(ca, "state"),
                              apr_psprintf(c->p, "%" APR_INT64_T_FMT,
                                           jint(ca, "failures")),
                              csc_fmt_time(c->p, jint(ca, "last_ok")),
                              jstr(ca, "last_error"));
            }
            fputs("\n", stdout);
            fputs(csc_table_render(t), stdout);
        }
    }
    json_decref(acct);
    json_decref(cas);
    return CSC_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static int load_conf(csc_t *c)
{
    const char *file = c->a->config;
    const char *dir, *err, *why;
    char *text;
    apr_size_t len;
    apr_status_t rv;
    char ebuf[128];

    if (!file) {
        file = getenv("CERTSUITE_CONFIG");
    }
    if (!file || !*file) {
        file = CSC_DEFAULT_CONFIG;
    }
    if ((rv = cs_file_read(&text, &len, c->p, file, 1024 * 1024))) {
        if (APR_STATUS_IS_ENOENT(rv) && !c->a->config && c->a->url) {
            /* --url alone: the rest must come from somewhere */
            return fail(CSC_EXIT_USAGE, "no configuration file %s (the "
                        "client certificate is named there; -c FILE)",
                        file);
        }
        return fail(CSC_EXIT_USAGE, "cannot read the configuration %s: %s",
                    file, apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
    if (cs_file_parent(&dir, file, c->p)) {
        dir = ".";
    }
    if (csc_conf_parse(&c->conf, c->p, text, len, file, dir, &err)) {
        return fail(CSC_EXIT_USAGE, "%s", err);
    }
    if (c->a->url) {
        c->conf.url = c->a->url;
    }
    if ((why = csc_conf_check(&c->conf, c->p))) {
        return fail(CSC_EXIT_USAGE, "%s: %s", file, why);
    }
    return CSC_EXIT_OK;
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *p;
    csc_args_t a;
    csc_t c;
    cs_http_conf_t hc;
    const char *err;
    int rc;

    apr_app_initialize(&argc, &argv, NULL);
    apr_pool_create(&p, NULL);
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.a = &a;
    if ((rc = csc_args_parse(&a, p, argc, argv, &err))) {
        fprintf(stderr, "certsuite: %s\n\n%s", err, csc_usage());
        goto done;
    }
    if (a.cmd == CSC_CMD_HELP) {
        fputs(csc_usage(), stdout);
        goto done;
    }
    if (a.cmd == CSC_CMD_VERSION) {
        printf("certsuite %s\n", CSC_VERSION);
        goto done;
    }
    if ((rc = load_conf(&c))) {
        goto done;
    }
    cs_http_global_init();
    memset(&hc, 0, sizeof(hc));
    hc.protocols = "https";
    hc.ca_file = c.conf.ca;
    hc.client_cert = c.conf.cert;
    hc.client_key = c.conf.key;
    hc.user_agent = "certsuite/" CSC_VERSION;
    hc.timeout = apr_time_from_sec(c.conf.timeout);
    hc.max_body = CSC_MAX_BODY;
    if (cs_http_curl_create(&c.http, p, &hc)) {
        rc = fail(CSC_EXIT_FAIL, "cannot set up the HTTP client (libcurl)");
        goto done;
    }
    c.now = apr_time_sec(apr_time_now());
    switch (a.cmd) {
    case CSC_CMD_DOMAIN_LIST:
        rc = cmd_domain_list(&c);
        break;
    case CSC_CMD_DOMAIN_SHOW:
        rc = cmd_domain_show(&c);
        break;
    case CSC_CMD_DOMAIN_ADD:
        rc = cmd_domain_add(&c);
        break;
    case CSC_CMD_DOMAIN_REMOVE:
        rc = cmd_domain_remove(&c);
        break;
    case CSC_CMD_IMPORT:
        rc = cmd_import(&c);
        break;
    case CSC_CMD_POOL_STATUS:
        rc = cmd_pool_status(&c);
        break;
    case CSC_CMD_WRAP_ROTATE:
        rc = cmd_wrap_rotate(&c);
        break;
    case CSC_CMD_ACME_ACCOUNT:
        rc = cmd_acme_account(&c);
        break;
    default:
        rc = fail(CSC_EXIT_USAGE, "no command");
    }
done:
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
