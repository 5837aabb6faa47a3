/*
 * cs_notify.c: the decisions of CertService's notifications (cs_notify.h):
 * event ids, the JSON body, the CA's problem document, the signature, and
 * what becomes of a row after a delivery.  The outbox's SQL is in
 * cs_store_notify.c.
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "cs_notify.h"
#include "cs_sched.h"

#define ACME_PROBLEM    "urn:ietf:params:acme:error:"

static const char *const event_types[] = {
    CS_EVENT_ISSUED, CS_EVENT_RENEWED, CS_EVENT_FAILED, CS_EVENT_EXPIRING,
    CS_EVENT_MOVED, CS_EVENT_REFUSED, NULL
};

int cs_notify_type_known(const char *type)
{
    int i;

    for (i = 0; type && event_types[i]; i++) {
        if (strcmp(type, event_types[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *hex(apr_pool_t *p, const unsigned char *b, apr_size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = apr_palloc(p, 2 * n + 1);
    apr_size_t i;

    for (i = 0; i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

const char *cs_notify_event_id(apr_pool_t *p, const char *type,
                               const char *domain,
                               const char *discriminator)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* NUL-separated: no two different triples hash the same input. */
    const char *parts[3];
    int i;

    parts[0] = type ? type : "";
    parts[1] = domain ? domain : "";
    parts[2] = discriminator ? discriminator : "";
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
    }
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    return hex(p, md, 16);
}

/* ------------------------------------------------------------------ */
/* The CA's problem document, from the client's error text             */
/* ------------------------------------------------------------------ */

/* At s, a problem type: ACME_PROBLEM and a name; its end, or NULL. */
static const char *type_end(const char *s)
{
    const char *e;

    if (strncmp(s, ACME_PROBLEM, sizeof(ACME_PROBLEM) - 1) != 0) {
        return NULL;
    }
    e = s + sizeof(ACME_PROBLEM) - 1;
    while (apr_isalnum(*e) || *e == '-' || *e == '_' || *e == '.') {
        e++;
    }
    return e > s + sizeof(ACME_PROBLEM) - 1 ? e : NULL;
}

/* One "TYPE: detail" at s, up to the next "; TYPE" (or the end): the
 * object, *next after it (NULL at the end), the "(HTTP n)" the client
 * appended taken out into *status. */
static json_t *one_problem(const char *s, const char **next, long *status)
{
    const char *te = type_end(s), *d, *end, *h;
    json_t *o;

    *next = NULL;
    if (!te) {
        return NULL;
    }
    o = json_object();
    json_object_set_new(o, "type", json_stringn(s, (size_t)(te - s)));
    d = te;
    if (d[0] == ':' && d[1] == ' ') {
        d += 2;
    }
    for (end = d; (end = strstr(end, "; ")) != NULL; end++) {
        if (type_end(end + 2)) {
            *next = end + 2;
            break;
        }
    }
    if (!end) {
        end = d + strlen(d);
    }
    /* " (HTTP 403)" at the end of the first one. */
    h = end;
    if (h - d >= 11 && h[-1] == ')') {
        const char *q = h - 2;

        while (q > d && apr_isdigit(*q)) {
            q--;
        }
        if (q - d >= 6 && q < h - 2 && strncmp(q - 6, " (HTTP ", 7) == 0) {
            *status = strtol(q + 1, NULL, 10);
            end = q - 6;
        }
    }
    if (end > d) {
        json_object_set_new(o, "detail", json_stringn(d, (size_t)(end - d)));
    }
    return o;
}

const char *cs_notify_problem(apr_pool_t *p, const char *error)
{
    const char *s, *next;
    json_t *doc, *sub = NULL, *o;
    long status = 0, ignored = 0;
    char *text;
    const char *out;

    if (!error || !(s = strstr(error, ACME_PROBLEM))
        || !(doc = one_problem(s, &next, &status))) {
        return NULL;
    }
    if (status) {
        json_object_set_new(doc, "status", json_integer(status));
    }
    while (next && (o = one_problem(next, &next, &ignored))) {
        if (!sub) {
            sub = json_array();
        }
        json_array_append_new(sub, o);
    }
    if (sub) {
        json_object_set_new(doc, "subproblems", sub);
    }
    text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (!text) {
        return NULL;
    }
    out = apr_pstrdup(p, text);
    free(text);
    return out;
}

/* ------------------------------------------------------------------ */
/* The body, the signature                                             */
/* ------------------------------------------------------------------ */

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v) {
        json_object_set_new(o, key, json_string(v));
    }
}

const char *cs_notify_event_json(apr_pool_t *p, const char *id,
                                 const cs_event_t *ev)
{
    json_t *o = json_object(), *prob;
    char *text;
    const char *out;

    json_object_set_new(o, "id", json_string(id));
    set_str(o, "type", ev->type);
    set_str(o, "domain", ev->domain);
    set_str(o, "serial", ev->serial);
    if (ev->not_after > 0) {
        json_object_set_new(o, "not_after", json_integer(ev->not_after));
    }
    set_str(o, "error", ev->error);
    if (ev->problem
        && (prob = json_loads(ev->problem, 0, NULL)) != NULL) {
        json_object_set_new(o, "problem", prob);
    }
    if (ev->attempts > 0) {
        json_object_set_new(o, "attempts", json_integer(ev->attempts));
    }
    set_str(o, "ca", ev->ca);
    set_str(o, "detail", ev->detail);
    json_object_set_new(o, "time", json_integer(ev->time));
    /* Strings from a CA or an operator may be anything: json_string()
     * refuses invalid UTF-8 (the key is then missing, not the event). */
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!text) {
        return NULL;
    }
    out = apr_pstrdup(p, text);
    free(text);
    return out;
}

const char *cs_notify_sign(apr_pool_t *p, const unsigned char *secret,
                           apr_size_t secret_len, const char *timestamp,
                           const char *body, apr_size_t body_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t n = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2];
    int ok;

    params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    ok = ctx && EVP_MAC_init(ctx, secret, secret_len, params) == 1
         && EVP_MAC_update(ctx, (const unsigned char *)timestamp,
                           strlen(timestamp)) == 1
         && EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1
         && EVP_MAC_update(ctx, (const unsigned char *)body, body_len) == 1
         && EVP_MAC_final(ctx, md, &n, sizeof(md)) == 1;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    if (!ok) {
        return NULL;
    }
    return apr_pstrcat(p, "sha256=", hex(p, md, n), NULL);
}

/* ------------------------------------------------------------------ */
/* After a delivery                                                    */
/* ------------------------------------------------------------------ */

void cs_notify_decide(cs_notify_next_t *next, int attempts,
                      cs_delivery_t result, long status,
                      apr_int64_t retry_after, apr_int64_t now)
{
    apr_int64_t delay;
    int retry;

    next->attempts = attempts;
    next->next_at = now;
    if (result == CS_DELIVERY_OK) {
        next->state = "sent";
        return;
    }
    next->attempts = attempts + 1;
    retry = result != CS_DELIVERY_STATUS || status >= 500 || status == 408
            || status == 429;
    if (!retry || next->attempts >= CS_NOTIFY_MAX_ATTEMPTS) {
        next->state = "dead";
        return;
    }
    delay = cs_sched_backoff(next->attempts, CS_NOTIFY_BACKOFF,
                             CS_NOTIFY_BACKOFF_CAP);
    if (retry_after > delay) {
        delay = retry_after > CS_NOTIFY_BACKOFF_CAP ? CS_NOTIFY_BACKOFF_CAP
                                                    : retry_after;
    }
    next->state = "pending";
    next->next_at = now + delay;
}
