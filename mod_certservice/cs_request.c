/*
 * cs_request.c: a CertService request's query string, names and JSON
 * bodies, read and checked.  See cs_request.h.
 */
#include <errno.h>
#include <string.h>

#include <apr_strings.h>
#include <openssl/crypto.h>

#include "cs_crypto.h"
#include "cs_name.h"
#include "cs_request.h"

/* How much of a client's text an error quotes. */
#define SHOW_MAX 256

/* ------------------------------------------------------------------ */
/* The query string                                                    */
/* ------------------------------------------------------------------ */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes len bytes of s; NULL, with *why, on a bad escape or a NUL. */
static char *unescape(apr_pool_t *p, const char *s, apr_size_t len,
                      const char **why)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i;
    int hi, lo;

    for (i = 0; i < len; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (len - i < 3 || (hi = hexval(s[i + 1])) < 0
            || (lo = hexval(s[i + 2])) < 0) {
            *why = "is not percent-encoded correctly (a '%' must be "
                   "followed by two hex digits)";
            return NULL;
        }
        if (hi == 0 && lo == 0) {
            *why = "contains a NUL byte (%00)";
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

int cs_query_parse(apr_array_header_t **params, apr_pool_t *p,
                   const char *args, const char **err)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(cs_query_param_t));
    const char *part = args, *end, *eq, *why = NULL;

    *params = a;
    while (part && *part) {
        cs_query_param_t *q;
        apr_size_t len;

        end = strchr(part, '&');
        len = end ? (apr_size_t)(end - part) : strlen(part);
        if (len) {
            eq = memchr(part, '=', len);
            q = apr_array_push(a);
            q->name = unescape(p, part, eq ? (apr_size_t)(eq - part) : len,
                               &why);
            q->value = !q->name ? NULL
                       : eq ? unescape(p, eq + 1, len - (eq + 1 - part), &why)
                       : "";
            if (!q->value) {
                /* The name as sent: it may be the part that is bad. */
                *err = apr_psprintf(p, "query parameter '%s' %s",
                                    cs_printable(p, part,
                                                 eq ? (apr_size_t)(eq - part)
                                                    : len, 64),
                                    why);
                return CS_REQ_BAD;
            }
        }
        part = end ? end + 1 : NULL;
    }
    return 0;
}

const char *cs_query_get(const apr_array_header_t *params, const char *name)
{
    const char *v = NULL;
    int i;

    for (i = 0; params && i < params->nelts; i++) {
        const cs_query_param_t *q = &APR_ARRAY_IDX(params, i,
                                                   cs_query_param_t);
        if (strcmp(q->name, name) == 0) {
            v = q->value;
        }
    }
    return v;
}

int cs_query_int(apr_int64_t *out, apr_pool_t *p,
                 const apr_array_header_t *params, const char *name,
                 apr_int64_t dflt, apr_int64_t max, const char **err)
{
    const char *v = cs_query_get(params, name);
    apr_int64_t n;
    char *end;

    *out = dflt;
    if (!v) {
        return 0;
    }
    errno = 0;
    n = apr_strtoi64(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno == ERANGE || n < 0
        || n > max) {
        *err = apr_psprintf(p, "query parameter '%s' must be a number from "
                            "0 to %" APR_INT64_T_FMT, name, max);
        return CS_REQ_BAD;
    }
    *out = n;
    return 0;
}

static int query_limit(int *limit, apr_pool_t *p,
                       const apr_array_header_t *params, const char **err)
{
    apr_int64_t n;
    int rc;

    if ((rc = cs_query_int(&n, p, params, "limit", CS_REQ_DEFAULT_LIMIT,
                           CS_REQ_MAX_LIMIT, err))) {
        return rc;
    }
    if (n < 1) {
        *err = "limit must be at least 1";
        return CS_REQ_BAD;
    }
    *limit = (int)n;
    return 0;
}

int cs_req_changes(apr_int64_t *since, int *limit, apr_pool_t *p,
                   const apr_array_header_t *params, const char **err)
{
    int rc;

    if ((rc = cs_query_int(since, p, params, "since", 0, APR_INT64_MAX,
                           err))) {
        return rc;
    }
    return query_limit(limit, p, params, err);
}

int cs_req_domains(const char **after, int *limit, apr_pool_t *p,
                   const apr_array_header_t *params, const char **err)
{
    const char *v;
    int rc;

    *after = NULL;
    if ((rc = query_limit(limit, p, params, err))) {
        return rc;
    }
    if ((v = cs_query_get(params, "after")) != NULL) {
        return cs_req_domain(after, p, v, "query parameter 'after'", err);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

int cs_req_domain(const char **name, apr_pool_t *p, const char *raw,
                  const char *what, const char **err)
{
    const char *why = cs_name_normalize(name, p, raw);

    if (!why) {
        return 0;
    }
    *err = apr_psprintf(p, "%s%sinvalid domain name '%s': %s",
                        what ? what : "", what ? ": " : "",
                        cs_printable(p, raw, strlen(raw), SHOW_MAX), why);
    return CS_REQ_BAD;
}

int cs_req_token_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64
           && s[strspn(s, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")] == '\0';
}

/* ------------------------------------------------------------------ */
/* Bodies                                                              */
/* ------------------------------------------------------------------ */

int cs_req_json(json_t **body, apr_pool_t *p, const char *buf,
                apr_size_t len, const char **err)
{
    json_error_t jerr;

    if (len == 0) {
        *body = json_object();
        return 0;
    }
    *body = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*body) {
        /* jansson quotes the input in its text: keep it printable. */
        *err = apr_psprintf(p, "malformed JSON at line %d column %d: %s",
                            jerr.line, jerr.column,
                            cs_printable(p, jerr.text, strlen(jerr.text),
                                         sizeof(jerr.text)));
        return CS_REQ_BAD;
    }
    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        *err = "the body must be a JSON object";
        return CS_REQ_BAD;
    }
    return 0;
}

int cs_req_bundles(apr_array_header_t **domains, apr_pool_t *p,
                   const char *buf, apr_size_t len, int max_batch,
                   const char **err)
{
    json_t *body, *names, *v;
    apr_array_header_t *out;
    size_t i;
    int rc;

    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    names = json_object_get(body, "domains");
    if (!json_is_array(names)) {
        json_decref(body);
        *err = "body must be {\"domains\":[...]}";
        return CS_REQ_BAD;
    }
    if (json_array_size(names) > (size_t)max_batch) {
        *err = apr_psprintf(p, "%" APR_SIZE_T_FMT " domains requested; "
                            "CertServiceMaxBatch is %d",
                            json_array_size(names), max_batch);
        json_decref(body);
        return CS_REQ_TOO_LARGE;
    }
    out = apr_array_make(p, (int)json_array_size(names) + 1,
                         sizeof(const char *));
    json_array_foreach(names, i, v) {
        const char *name;

        if (!json_is_string(v)) {
            *err = apr_psprintf(p, "domains[%" APR_SIZE_T_FMT "] is not a "
                                "string", i);
            rc = CS_REQ_BAD;
        }
        else {
            rc = cs_req_domain(&name, p, json_string_value(v), NULL, err);
        }
        if (rc) {
            json_decref(body);
            return rc;
        }
        APR_ARRAY_PUSH(out, const char *) = name;
    }
    json_decref(body);
    *domains = out;
    return 0;
}

int cs_req_lease(const char **host, int *ttl, apr_pool_t *p,
                 const char *buf, apr_size_t len, int max_ttl,
                 const char **err)
{
    json_t *body, *jhost, *jttl;
    int rc;

    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    jhost = json_object_get(body, "host");
    jttl = json_object_get(body, "ttl");
    if (!json_is_string(jhost) || !cs_req_token_ok(json_string_value(jhost))
        || !json_is_integer(jttl) || json_integer_value(jttl) < 1
        || json_integer_value(jttl) > max_ttl) {
        json_decref(body);
        *err = apr_psprintf(p, "body must be {\"host\": <name of 1-64 of "
                            "[A-Za-z0-9._-]>, \"ttl\": <1..%d seconds>}",
                            max_ttl);
        return CS_REQ_BAD;
    }
    *host = apr_pstrdup(p, json_string_value(jhost));
    *ttl = (int)json_integer_value(jttl);
    json_decref(body);
    return 0;
}

int cs_req_report(cs_report_t *report, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err)
{
    json_t *body, *jpool, *jseq, *jstate, *jfailed;
    char *failed;
    int rc;

    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    jpool = json_object_get(body, "pool");
    jseq = json_object_get(body, "seq");
    jstate = json_object_get(body, "state");
    jfailed = json_object_get(body, "failed");
    if (!json_is_string(jpool) || !cs_req_token_ok(json_string_value(jpool))
        || !json_is_integer(jseq) || json_integer_value(jseq) < 0
        || !json_is_string(jstate)
        || !cs_req_token_ok(json_string_value(jstate))
        || (jfailed && !json_is_object(jfailed))) {
        json_decref(body);
        *err = "body must be {\"pool\": name, \"seq\": n, \"state\": word, "
               "\"failed\": {domain: reason, ...}}";
        return CS_REQ_BAD;
    }
    report->pool = apr_pstrdup(p, json_string_value(jpool));
    report->seq = (apr_int64_t)json_integer_value(jseq);
    report->state = apr_pstrdup(p, json_string_value(jstate));
    failed = jfailed ? json_dumps(jfailed, JSON_COMPACT) : NULL;
    report->failed_json = apr_pstrdup(p, failed ? failed : "{}");
    free(failed);
    json_decref(body);
    return 0;
}

int cs_req_profile_ok(const char *s)
{
    /* The same rule as a token's. */
    return cs_req_token_ok(s);
}

int cs_req_put_domain(int *kt, const char **profile, apr_pool_t *p,
                      const char *buf, apr_size_t len, int dflt,
                      const char **err)
{
    json_t *body, *jkt, *jpr;
    int rc;

    *profile = NULL;
    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    *kt = dflt;
    jkt = json_object_get(body, "key_type");
    if (jkt && (!json_is_string(jkt)
                || (*kt = cs_key_type_parse(json_string_value(jkt))) < 0)) {
        json_decref(body);
        *err = "key_type must be \"ec-p256\" or \"rsa-2048\"";
        return CS_REQ_BAD;
    }
    jpr = json_object_get(body, "profile");
    if (jpr && !json_is_null(jpr)) {
        if (!json_is_string(jpr)) {
            json_decref(body);
            *err = "profile must be a string (an ACME profile name) or "
                   "null";
            return CS_REQ_BAD;
        }
        if (!cs_req_profile_ok(json_string_value(jpr))) {
            *err = apr_psprintf(p, "profile '%s' is not a profile name "
                                "(1 to 64 of A-Z a-z 0-9 . _ -)",
                                cs_printable(p, json_string_value(jpr),
                                             json_string_length(jpr), 64));
            json_decref(body);
            return CS_REQ_BAD;
        }
        *profile = apr_pstrdup(p, json_string_value(jpr));
    }
    json_decref(body);
    return 0;
}

static apr_status_t cleanse(void *data)
{
    char *s = data;

    OPENSSL_cleanse(s, strlen(s));
    return APR_SUCCESS;
}

int cs_req_import(const char **chain_pem, const char **key_pem,
                  const char **key_cms, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err)
{
    json_t *body, *jchain, *jkey, *jcms;
    char *key;
    int rc;

    *key_pem = NULL;
    if (key_cms) {
        *key_cms = NULL;
    }
    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    jchain = json_object_get(body, "chain_pem");
    jkey = json_object_get(body, "key_pem");
    jcms = key_cms ? json_object_get(body, "key_cms") : NULL;
    if (!json_is_string(jchain)
        || (jkey && jcms) || !(json_is_string(jkey) || json_is_string(jcms))) {
        if (jkey) {
            OPENSSL_cleanse((char *)json_string_value(jkey),
                            json_string_length(jkey));
        }
        json_decref(body);
        *err = key_cms
               ? "body must be {\"chain_pem\": \"...\", \"key_pem\": "
                 "\"...\"} or {\"chain_pem\": \"...\", \"key_cms\": "
                 "\"...\"}"
               : "body must be {\"chain_pem\": \"...\", \"key_pem\": "
                 "\"...\"}";
        return CS_REQ_BAD;
    }
    *chain_pem = apr_pstrdup(p, json_string_value(jchain));
    if (jcms) {
        *key_cms = apr_pstrdup(p, json_string_value(jcms));
        json_decref(body);
        return 0;
    }
    key = apr_pstrdup(p, json_string_value(jkey));
    apr_pool_cleanup_register(p, key, cleanse, apr_pool_cleanup_null);
    *key_pem = key;
    /* jansson's own copy of the key: cleansed before it is freed. */
    OPENSSL_cleanse((char *)json_string_value(jkey),
                    json_string_length(jkey));
    json_decref(body);
    return 0;
}

int cs_req_revoke(int *reason, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err)
{
    json_t *body, *jr;
    int rc;

    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    jr = json_object_get(body, "reason");
    if (jr && (!json_is_integer(jr) || json_integer_value(jr) < 0
               || json_integer_value(jr) > 10
               || json_integer_value(jr) == 7)) {
        json_decref(body);
        *err = "reason must be an RFC 5280 reason code (0-10, not 7)";
        return CS_REQ_BAD;
    }
    *reason = jr ? (int)json_integer_value(jr) : 0;
    json_decref(body);
    return 0;
}
