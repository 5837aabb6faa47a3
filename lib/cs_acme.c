/*
 * cs_acme.c: the ACME client (see cs_acme.h).
 *
 * Every POST is a JWS with a fresh nonce: the nonce of the previous
 * answer when there is one, else one from newNonce.  A badNonce answer
 * carries a new nonce and is retried at once (a few times): CAs reject
 * valid nonces now and then on purpose (pebble: 5% by default).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_date.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_acme.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_name.h"
#include "cs_sched.h"

#define ACME_MAX_BODY       (1024 * 1024)
#define ACME_MAX_RETRY_AFTER (7 * 86400)   /* seconds */
#define ACME_NONCE_TRIES    5
#define ACME_ERR_PREFIX     "urn:ietf:params:acme:error:"

struct cs_acme_t {
    apr_pool_t *pool;
    cs_acme_conf_t conf;
    CURL *curl;
    /* The directory. */
    int have_dir;
    const char *new_nonce, *new_account, *new_order, *revoke_cert,
               *key_change, *renewal_info;
    /* The account. */
    EVP_PKEY *key;
    const char *kid;
    char nonce[256];
    apr_int64_t retry_after;
    cs_acme_stats_t stats;
    char err[1024];         /* the last error of a call whose pool went */
};

typedef struct {
    long status;
    char *body;
    apr_size_t len;
    apr_size_t cap;                     /* bytes allocated for body */
    int too_big;
    const char *location;
    const char *ctype;
    apr_int64_t retry_after;
    apr_array_header_t *alternates;     /* const char *: Link rel=alternate */
    apr_pool_t *p;
    cs_acme_t *acme;
} resp_t;

/* err, kept past the call's pool in a's buffer (not in a->pool, which
 * would grow with every failure of a long-lived client). */
static const char *keep_err(cs_acme_t *a, const char *err)
{
    if (err == NULL) {
        return NULL;
    }
    if (err != a->err) {
        apr_size_t n = cs_utf8_prefix(err, sizeof(a->err) - 1);
        memcpy(a->err, err, n);
        a->err[n] = '\0';
    }
    return a->err;
}

static void logf_(cs_acme_t *a, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(cs_acme_t *a, int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!a->conf.log) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    a->conf.log(a->conf.log_baton, level, buf);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *baton)
{
    resp_t *r = baton;
    size_t len = size * n;
    char *nb;

    if (r->len + len > ACME_MAX_BODY) {
        r->too_big = 1;
        return 0;
    }
    /* Grown geometrically: a copy per chunk would cost the square of
     * the body's size in the pool. */
    if (r->len + len + 1 > r->cap) {
        apr_size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len + 1) {
            cap *= 2;
        }
        nb = apr_palloc(r->p, cap);
        if (r->len) {
            memcpy(nb, r->body, r->len);
        }
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* Retry-After: delta-seconds or an HTTP date. */
static apr_int64_t parse_retry_after(const char *v)
{
    apr_time_t t;
    apr_int64_t s;

    while (*v == ' ') {
        v++;
    }
    if (apr_isdigit(*v)) {
        s = apr_atoi64(v);
        /* Bounded: a huge value must not overflow now + s. */
        return s < 0 ? 0 : s > ACME_MAX_RETRY_AFTER ? ACME_MAX_RETRY_AFTER
                                                    : s;
    }
    t = apr_date_parse_http(v);
    if (t) {
        s = apr_time_sec(t - apr_time_now());
        return s <= 0 ? 1 : s > ACME_MAX_RETRY_AFTER ? ACME_MAX_RETRY_AFTER
                                                     : s;
    }
    return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *baton)
{
    resp_t *r = baton;
    size_t len = size * n;
    char *line = apr_pstrndup(r->p, data, len), *v, *end;

    while ((end = line + strlen(line)) > line
           && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
        end[-1] = '\0';
    }
    if (!(v = strchr(line, ':'))) {
        return len;
    }
    *v++ = '\0';
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (strcasecmp(line, "Replay-Nonce") == 0) {
        if (strlen(v) < sizeof(r->acme->nonce)
            && v[strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                           "wxyz0123456789-_")] == '\0') {
            apr_cpystrn(r->acme->nonce, v, sizeof(r->acme->nonce));
        }
    }
    else if (strcasecmp(line, "Location") == 0) {
        r->location = v;
    }
    else if (strcasecmp(line, "Content-Type") == 0) {
        r->ctype = v;
    }
    else if (strcasecmp(line, "Retry-After") == 0) {
        r->retry_after = parse_retry_after(v);
    }
    else if (strcasecmp(line, "Link") == 0) {
        /* <url>;rel="alternate", possibly several per line. */
        char *tok, *last, *url, *gt;
        for (tok = apr_strtok(v, ",", &last); tok;
             tok = apr_strtok(NULL, ",", &last)) {
            while (*tok == ' ') {
                tok++;
            }
            if (*tok != '<' || !(gt = strchr(tok, '>'))) {
                continue;
            }
            url = apr_pstrndup(r->p, tok + 1, (apr_size_t)(gt - tok - 1));
            if (strstr(gt, "rel=\"alternate\"")
                || strstr(gt, "rel=alternate")) {
                APR_ARRAY_PUSH(r->alternates, const char *) = url;
            }
        }
    }
    return len;
}

/* One HTTP exchange.  method: "GET", "HEAD" or "POST" (with body). */
static apr_status_t http(resp_t *r, cs_acme_t *a, apr_pool_t *p,
                         const char *method, const char *url,
                         const char *body, const char *accept,
                         const char **err)
{
    struct curl_slist *hdrs = NULL;
    char ebuf[CURL_ERROR_SIZE];
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    r->p = p;
    r->acme = a;
    r->alternates = apr_array_make(p, 2, sizeof(const char *));
    if (strncmp(url, "https://", 8) != 0) {
        *err = apr_psprintf(p, "refusing a non-https ACME URL: %s", url);
        return APR_EINVAL;
    }
    ebuf[0] = '\0';
    curl_easy_reset(a->curl);
    curl_easy_setopt(a->curl, CURLOPT_URL, url);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS,
                     (long)apr_time_as_msec(a->conf.timeout));
    curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)apr_time_as_msec(a->conf.timeout));
    curl_easy_setopt(a->curl, CURLOPT_USERAGENT, a->conf.user_agent);
    curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(a->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(a->curl, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(a->curl, CURLOPT_NOPROXY, "*");
    if (a->conf.ca_file) {
        curl_easy_setopt(a->curl, CURLOPT_CAINFO, a->conf.ca_file);
    }
    if (accept) {
        hdrs = curl_slist_append(hdrs, apr_pstrcat(p, "Accept: ", accept,
                                                   NULL));
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(a->curl, CURLOPT_NOBODY, 1L);
    }
    else if (strcmp(method, "POST") == 0) {
        hdrs = curl_slist_append(hdrs,
                                 "Content-Type: application/jose+json");
        curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, hdrs);
    a->stats.requests++;
    rc = curl_easy_perform(a->curl);
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        *err = apr_psprintf(p, "CA unreachable: %s %s: %s", method, url,
                            ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return r->too_big ? APR_EGENERAL : APR_ECONNREFUSED;
    }
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (!r->body) {
        r->body = "";
    }
    return APR_SUCCESS;
}

/* The problem document of an error answer, as one line. */
static const char *problem(apr_pool_t *p, const resp_t *r, const char **type)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL), *sub;
    const char *t, *d, *s = NULL;
    size_t i;

    *type = "";
    if (!json_is_object(j)) {
        json_decref(j);
        return apr_psprintf(p, "HTTP %ld from the CA", r->status);
    }
    t = json_string_value(json_object_get(j, "type"));
    d = json_string_value(json_object_get(j, "detail"));
    *type = t ? apr_pstrdup(p, t) : "";
    s = apr_psprintf(p, "%s: %s (HTTP %ld)", t ? t : "error",
                     d ? d : "no detail", r->status);
    sub = json_object_get(j, "subproblems");
    for (i = 0; json_is_array(sub) && i < json_array_size(sub); i++) {
        json_t *o = json_array_get(sub, i);
        s = apr_psprintf(p, "%s; %s: %s", s,
                         json_string_value(json_object_get(o, "type"))
                         ? json_string_value(json_object_get(o, "type"))
                         : "?",
                         json_string_value(json_object_get(o, "detail"))
                         ? json_string_value(json_object_get(o, "detail"))
                         : "?");
    }
    json_decref(j);
    return s;
}

/* Maps an error answer to a status, *err, and the Retry-After. */
static apr_status_t answer_error(cs_acme_t *a, apr_pool_t *p,
                                 const resp_t *r, const char *what,
                                 const char **err)
{
    const char *type, *text = problem(p, r, &type);

    a->retry_after = r->retry_after;
    *err = apr_psprintf(p, "%s: %s", what, text);
    if (r->status == 429
        || strcmp(type, ACME_ERR_PREFIX "rateLimited") == 0) {
        if (!a->retry_after) {
            a->retry_after = 60;
        }
        return APR_EAGAIN;
    }
    if (r->status >= 500) {
        return APR_ECONNREFUSED;
    }
    return APR_EGENERAL;
}

static apr_status_t get_nonce(cs_acme_t *a, apr_pool_t *p, const char **err)
{
    resp_t r;
    apr_status_t rv;

    if (a->nonce[0]) {
        return APR_SUCCESS;
    }
    if ((rv = http(&r, a, p, "HEAD", a->new_nonce, NULL, NULL, err))) {
        return rv;
    }
    if (!a->nonce[0]) {
        *err = apr_psprintf(p, "newNonce gave no Replay-Nonce (HTTP %ld)",
                            r.status);
        return r.status >= 500 ? APR_ECONNREFUSED : APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/*
 * A signed POST (payload "" for POST-as-GET).  jwk: sign with the JWK in
 * the header instead of the kid.  Error answers become a status and *err.
 */
static apr_status_t post(resp_t *r, cs_acme_t *a, apr_pool_t *p,
                         const char *url, const char *payload,
                         EVP_PKEY *key, int jwk, const char *accept,
                         const char *what, const char **err)
{
    const char *jws, *type;
    char nonce[256];
    apr_status_t rv;
    int tries;

    for (tries = 0; tries < ACME_NONCE_TRIES; tries++) {
        if ((rv = get_nonce(a, p, err))) {
            return rv;
        }
        apr_cpystrn(nonce, a->nonce, sizeof(nonce));
        a->nonce[0] = '\0';
        if ((rv = cs_jws_sign(&jws, p, key, jwk ? NULL : a->kid, nonce, url,
                              payload, err))) {
            return rv;
        }
        if ((rv = http(r, a, p, "POST", url, jws, accept, err))) {
            return rv;
        }
        if (r->status < 400) {
            a->retry_after = r->retry_after;
            return APR_SUCCESS;
        }
        problem(p, r, &type);
        if (strcmp(type, ACME_ERR_PREFIX "badNonce") != 0) {
            return answer_error(a, p, r, what, err);
        }
        a->stats.bad_nonces++;
        logf_(a, CS_ACME_LOG_DEBUG, "badNonce from %s, retrying", url);
    }
    return answer_error(a, p, r, apr_psprintf(p, "%s (after %d bad "
                                              "nonces)", what, tries), err);
}

/* The JSON object of an answer (new reference), or NULL and *err. */
static json_t *body_json(apr_pool_t *p, const resp_t *r, const char *what,
                         const char **err)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL);

    if (!json_is_object(j)) {
        json_decref(j);
        *err = apr_psprintf(p, "%s: the CA answered something that is not "
                            "a JSON object (HTTP %ld)", what, r->status);
        return NULL;
    }
    return j;
}

static const char *jstr(apr_pool_t *p, json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s ? apr_pstrdup(p, s) : NULL;
}

/* ------------------------------------------------------------------ */
/* Client, directory, account                                          */
/* ------------------------------------------------------------------ */

void cs_acme_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static apr_status_t curl_cleanup(void *data)
{
    curl_easy_cleanup(data);
    return APR_SUCCESS;
}

apr_status_t cs_acme_create(cs_acme_t **acme, apr_pool_t *p,
                            const cs_acme_conf_t *conf)
{
    cs_acme_t *a = apr_pcalloc(p, sizeof(*a));

    if (!conf->directory_url) {
        return APR_EINVAL;
    }
    a->pool = p;
    a->conf = *conf;
    a->conf.directory_url = apr_pstrdup(p, conf->directory_url);
    if (!a->conf.timeout) {
        a->conf.timeout = apr_time_from_sec(30);
    }
    if (!a->conf.poll_max) {
        a->conf.poll_max = apr_time_from_sec(180);
    }
    if (!a->conf.user_agent) {
        a->conf.user_agent = "certsuite-acme/1";
    }
    if (!(a->curl = curl_easy_init())) {
        return APR_ENOMEM;
    }
    apr_pool_cleanup_register(p, a->curl, curl_cleanup,
                              apr_pool_cleanup_null);
    *acme = a;
    return APR_SUCCESS;
}

apr_status_t cs_acme_directory(cs_acme_t *a, const char **err)
{
    apr_pool_t *p;
    resp_t r;
    json_t *j;
    apr_status_t rv;

    if (a->have_dir) {
        return APR_SUCCESS;
    }
    apr_pool_create(&p, a->pool);
    if ((rv = http(&r, a, p, "GET", a->conf.directory_url, NULL, NULL,
                   err))) {
        goto done;
    }
    if (r.status != 200) {
        rv = answer_error(a, p, &r, "directory", err);
        goto done;
    }
    if (!(j = body_json(p, &r, "directory", err))) {
        rv = APR_EGENERAL;
        goto done;
    }
    a->new_nonce = jstr(a->pool, j, "newNonce");
    a->new_account = jstr(a->pool, j, "newAccount");
    a->new_order = jstr(a->pool, j, "newOrder");
    a->revoke_cert = jstr(a->pool, j, "revokeCert");
    a->key_change = jstr(a->pool, j, "keyChange");
    a->renewal_info = jstr(a->pool, j, "renewalInfo");
    json_decref(j);
    if (!a->new_nonce || !a->new_account || !a->new_order) {
        *err = apr_psprintf(a->pool, "the directory %s lacks newNonce, "
                            "newAccount or newOrder",
                            a->conf.directory_url);
        rv = APR_EGENERAL;
        goto done;
    }
    a->have_dir = 1;
    rv = APR_SUCCESS;
done:
    if (rv && *err) {
        *err = keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}

int cs_acme_has_ari(cs_acme_t *a)
{
    return a->have_dir && a->renewal_info != NULL;
}

apr_int64_t cs_acme_retry_after(const cs_acme_t *a)
{
    return a->retry_after;
}

void cs_acme_stats(cs_acme_stats_t *stats, const cs_acme_t *a)
{
    *stats = a->stats;
}

apr_status_t cs_acme_account(const char **kid, cs_acme_t *a, EVP_PKEY *key,
                             const apr_array_header_t *contact,
                             const char **err)
{
    apr_pool_t *p;
    resp_t r;
    json_t *payload, *arr;
    char *text;
    apr_status_t rv;
    int i;

    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    apr_pool_create(&p, a->pool);
    arr = json_array();
    for (i = 0; contact && i < contact->nelts; i++) {
        json_array_append_new(arr, json_string(APR_ARRAY_IDX(contact, i,
                                                             const char *)));
    }
    payload = json_pack("{s:b, s:o}", "termsOfServiceAgreed", 1,
                        "contact", arr);
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    rv = post(&r, a, p, a->new_account, text ? text : "{}", key, 1, NULL,
              "newAccount", err);
    free(text);
    if (rv == APR_SUCCESS && (!r.location || (r.status != 200
                                              && r.status != 201))) {
        *err = apr_psprintf(p, "newAccount: HTTP %ld without an account "
                            "URL", r.status);
        rv = APR_EGENERAL;
    }
    if (rv == APR_SUCCESS) {
        a->key = key;
        if (!a->kid || strcmp(a->kid, r.location) != 0) {
            a->kid = apr_pstrdup(a->pool, r.location);
        }
        *kid = a->kid;
        logf_(a, CS_ACME_LOG_INFO, "ACME account %s (%s)", a->kid,
              r.status == 201 ? "created" : "existing");
    }
    else {
        *err = keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}

/* ------------------------------------------------------------------ */
/* Orders                                                              */
/* ------------------------------------------------------------------ */

static void wait_for(cs_acme_t *a, apr_int64_t retry_after)
{
    apr_int64_t s = retry_after;

    /* Honour Retry-After, within reason for a worker thread. */
    if (s < 1) {
        s = 1;
    }
    if (s > 10) {
        s = 10;
    }
    apr_sleep(apr_time_from_sec(s));
}

/* POST-as-GET url until its status is not one of the waiting ones. */
static apr_status_t poll_status(json_t **obj, cs_acme_t *a, apr_pool_t *p,
                                const char *url, const char *waiting,
                                const char *what, const char **err)
{
    apr_time_t deadline = apr_time_now() + a->conf.poll_max;
    const char *st;
    resp_t r;
    apr_status_t rv;
    json_t *j;

    for (;;) {
        if ((rv = post(&r, a, p, url, "", a->key, 0, NULL, what, err))) {
            return rv;
        }
        if (!(j = body_json(p, &r, what, err))) {
            return APR_EGENERAL;
        }
        st = json_string_value(json_object_get(j, "status"));
        if (!st || !strstr(waiting, apr_pstrcat(p, " ", st, " ", NULL))) {
            *obj = j;
            return APR_SUCCESS;
        }
        json_decref(j);
        if (apr_time_now() >= deadline) {
            *err = apr_psprintf(p, "%s: still %s after %" APR_TIME_T_FMT
                                " s", what, st,
                                apr_time_sec(a->conf.poll_max));
            return APR_TIMEUP;
        }
        wait_for(a, r.retry_after);
    }
}

/* The error of an invalid authorization: its challenge's error. */
static const char *authz_error(apr_pool_t *p, json_t *authz)
{
    json_t *ch = json_object_get(authz, "challenges"), *e;
    size_t i;

    for (i = 0; json_is_array(ch) && i < json_array_size(ch); i++) {
        e = json_object_get(json_array_get(ch, i), "error");
        if (json_is_object(e)) {
            return apr_psprintf(p, "%s: %s",
                                json_string_value(json_object_get(e, "type"))
                                ? json_string_value(json_object_get(e,
                                                                    "type"))
                                : "error",
                                json_string_value(json_object_get(e,
                                                                  "detail"))
                                ? json_string_value(json_object_get(e,
                                                                    "detail"))
                                : "no detail");
        }
    }
    return "the authorization is invalid (no challenge error given)";
}

/* One authorization: answer its http-01 challenge, wait until valid. */
static apr_status_t do_authz(cs_acme_t *a, apr_pool_t *p, const char *url,
                             const char *thumb, const char *domain,
                             const char **err)
{
    resp_t r;
    json_t *authz, *ch, *c, *done = NULL;
    const char *st, *token = NULL, *curl_ = NULL, *keyauth;
    apr_status_t rv;
    size_t i;

    if ((rv = post(&r, a, p, url, "", a->key, 0, NULL, "authorization",
                   err))) {
        return rv;
    }
    if (!(authz = body_json(p, &r, "authorization", err))) {
        return APR_EGENERAL;
    }
    st = jstr(p, authz, "status");
    if (st && strcmp(st, "valid") == 0) {
        json_decref(authz);
        return APR_SUCCESS;
    }
    if (!st || strcmp(st, "pending") != 0) {
        *err = apr_psprintf(p, "authorization for %s is %s: %s", domain,
                            st ? st : "without status",
                            authz_error(p, authz));
        json_decref(authz);
        return APR_EGENERAL;
    }
    ch = json_object_get(authz, "challenges");
    for (i = 0; json_is_array(ch) && i < json_array_size(ch); i++) {
        c = json_array_get(ch, i);
        if (json_is_string(json_object_get(c, "type"))
            && strcmp(json_string_value(json_object_get(c, "type")),
                      "http-01") == 0) {
            token = jstr(p, c, "token");
            curl_ = jstr(p, c, "url");
        }
    }
    json_decref(authz);
    if (!token || !curl_ || strlen(token) > 128
        || token[strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                               "qrstuvwxyz0123456789-_")]) {
        *err = apr_psprintf(p, "no usable http-01 challenge offered for %s",
                            domain);
        return APR_EGENERAL;
    }
    keyauth = apr_pstrcat(p, token, ".", thumb, NULL);
    if (!a->conf.http01) {
        *err = "no http-01 responder configured";
        return APR_EINVAL;
    }
    if ((rv = a->conf.http01(a->conf.http01_baton, domain, token, keyauth,
                             1))) {
        *err = apr_psprintf(p, "cannot publish the http-01 token for %s",
                            domain);
        return rv;
    }
    rv = post(&r, a, p, curl_, "{}", a->key, 0, NULL, "challenge", err);
    if (rv == APR_SUCCESS) {
        rv = poll_status(&done, a, p, url, " pending processing ",
                         "authorization", err);
    }
    a->conf.http01(a->conf.http01_baton, domain, token, keyauth, 0);
    if (rv) {
        return rv;
    }
    st = jstr(p, done, "status");
    if (!st || strcmp(st, "valid") != 0) {
        *err = apr_psprintf(p, "validation of %s failed: %s", domain,
                            authz_error(p, done));
        rv = APR_EGENERAL;
    }
    json_decref(done);
    return rv;
}

/* A CSR for domain with key, DER. */
static apr_status_t make_csr(const char **b64, apr_pool_t *p, EVP_PKEY *key,
                             const char *domain, const char **err)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = NULL;
    unsigned char *der = NULL, *q;
    int len;
    apr_status_t rv = APR_EGENERAL;

    *err = "cannot build the CSR";
    if (!req || !name || !exts) {
        goto done;
    }
    /* A CN is at most 64 characters; the SAN is what counts. */
    if (strlen(domain) <= 64
        && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       (const unsigned char *)domain, -1,
                                       -1, 0)) {
        goto done;
    }
    san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                              apr_pstrcat(p, "DNS:", domain, NULL));
    if (!san || !sk_X509_EXTENSION_push(exts, san)) {
        goto done;
    }
    if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, name)
        || !X509_REQ_set_pubkey(req, key)
        || !X509_REQ_add_extensions(req, exts)
        || !X509_REQ_sign(req, key, EVP_sha256())) {
        goto done;
    }
    if ((len = i2d_X509_REQ(req, NULL)) <= 0) {
        goto done;
    }
    der = apr_palloc(p, (apr_size_t)len);
    q = der;
    i2d_X509_REQ(req, &q);
    *b64 = cs_b64url_encode(p, der, (apr_size_t)len);
    *err = NULL;
    rv = APR_SUCCESS;
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(name);
    X509_REQ_free(req);
    ERR_clear_error();
    return rv;
}

/* Whether the topmost certificate of chain names text as issuer or
 * subject. */
static int chain_matches(apr_pool_t *p, apr_array_header_t *chain,
                         const char *text)
{
    X509 *top = APR_ARRAY_IDX(chain, chain->nelts - 1, X509 *);
    char buf[512];

    X509_NAME_oneline(X509_get_issuer_name(top), buf, sizeof(buf));
    if (strstr(buf, text)) {
        return 1;
    }
    X509_NAME_oneline(X509_get_subject_name(top), buf, sizeof(buf));
    return strstr(buf, text) != NULL;
}

static apr_status_t download(apr_array_header_t **chain,
                             apr_array_header_t **alternates, cs_acme_t *a,
                             apr_pool_t *p, const char *url,
                             const char **err)
{
    resp_t r;
    apr_status_t rv;

    if ((rv = post(&r, a, p, url, "", a->key, 0,
                   "application/pem-certificate-chain", "certificate",
                   err))) {
        return rv;
    }
    if ((rv = cs_pem_read_certs(chain, p, r.body, r.len, err))
        || !(*chain)->nelts) {
        *err = apr_psprintf(p, "certificate: the CA sent no PEM chain (%s)",
                            rv ? *err : "empty");
        return APR_EGENERAL;
    }
    if (alternates) {
        *alternates = r.alternates;
    }
    return APR_SUCCESS;
}

apr_status_t cs_acme_issue(apr_array_header_t **chain, apr_pool_t *p,
                           cs_acme_t *a, EVP_PKEY *key, const char *domain,
                           const char *replaces, const char **err)
{
    resp_t r;
    json_t *payload, *order = NULL, *authzs;
    const char *order_url, *thumb, *finalize, *cert_url, *csr, *st;
    apr_array_header_t *alts, *alt_chain;
    char *text;
    apr_status_t rv;
    size_t i;
    int k;

    *err = NULL;
    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (!a->kid || !a->key) {
        *err = "no ACME account (cs_acme_account() first)";
        return APR_EINVAL;
    }
    if ((rv = cs_jwk_thumbprint(&thumb, p, a->key))) {
        *err = "cannot compute the account key's thumbprint";
        return rv;
    }
    payload = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns",
                        "value", domain);
    if (replaces && a->renewal_info) {
        json_object_set_new(payload, "replaces", json_string(replaces));
    }
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    rv = post(&r, a, p, a->new_order, text ? text : "{}", a->key, 0, NULL,
              "newOrder", err);
    free(text);
    if (rv) {
        return rv;
    }
    if (!r.location || !(order = body_json(p, &r, "newOrder", err))) {
        *err = *err ? *err : "newOrder: no order URL";
        json_decref(order);
        return APR_EGENERAL;
    }
    order_url = apr_pstrdup(p, r.location);
    logf_(a, CS_ACME_LOG_DEBUG, "order %s for %s", order_url, domain);

    /* Authorizations, one after the other (one name per order). */
    authzs = json_object_get(order, "authorizations");
    for (i = 0; json_is_array(authzs) && i < json_array_size(authzs); i++) {
        const char *u = json_string_value(json_array_get(authzs, i));
        if (!u) {
            continue;
        }
        if ((rv = do_authz(a, p, apr_pstrdup(p, u), thumb, domain, err))) {
            json_decref(order);
            return rv;
        }
    }
    json_decref(order);

    if ((rv = poll_status(&order, a, p, order_url, " pending ", "order",
                          err))) {
        return rv;
    }
    st = jstr(p, order, "status");
    finalize = jstr(p, order, "finalize");
    json_decref(order);
    if (!st || (strcmp(st, "ready") && strcmp(st, "valid")) || !finalize) {
        *err = apr_psprintf(p, "order for %s is %s, not ready", domain,
                            st ? st : "without status");
        return APR_EGENERAL;
    }
    if (strcmp(st, "ready") == 0) {
        if ((rv = make_csr(&csr, p, key, domain, err))) {
            return rv;
        }
        payload = json_pack("{s:s}", "csr", csr);
        text = json_dumps(payload, JSON_COMPACT);
        json_decref(payload);
        rv = post(&r, a, p, finalize, text ? text : "{}", a->key, 0, NULL,
                  "finalize", err);
        free(text);
        if (rv) {
            return rv;
        }
    }
    if ((rv = poll_status(&order, a, p, order_url, " ready processing ",
                          "order", err))) {
        return rv;
    }
    st = jstr(p, order, "status");
    cert_url = jstr(p, order, "certificate");
    json_decref(order);
    if (!st || strcmp(st, "valid") || !cert_url) {
        *err = apr_psprintf(p, "order for %s ended %s without a certificate",
                            domain, st ? st : "without status");
        return APR_EGENERAL;
    }
    if ((rv = download(chain, &alts, a, p, cert_url, err))) {
        return rv;
    }
    if (a->conf.preferred_chain
        && !chain_matches(p, *chain, a->conf.preferred_chain)) {
        for (k = 0; k < alts->nelts; k++) {
            if (download(&alt_chain, NULL, a, p,
                         APR_ARRAY_IDX(alts, k, const char *), err)
                == APR_SUCCESS
                && chain_matches(p, alt_chain, a->conf.preferred_chain)) {
                *chain = alt_chain;
                break;
            }
        }
        *err = NULL;
    }
    logf_(a, CS_ACME_LOG_INFO, "certificate for %s issued (%d certificates "
          "in the chain, %d alternate chains)", domain, (*chain)->nelts,
          alts->nelts);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Key change, revocation, renewal information                         */
/* ------------------------------------------------------------------ */

apr_status_t cs_acme_key_change(cs_acme_t *a, EVP_PKEY *new_key,
                                const char **err)
{
    apr_pool_t *p;
    resp_t r;
    json_t *inner_payload, *old_jwk;
    const char *inner;
    char *text;
    apr_status_t rv;

    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (!a->kid || !a->key || !a->key_change) {
        *err = !a->key_change ? "the directory has no keyChange"
                              : "no ACME account";
        return APR_EINVAL;
    }
    apr_pool_create(&p, a->pool);
    old_jwk = cs_jwk_public(a->key);
    inner_payload = json_pack("{s:s, s:o}", "account", a->kid, "oldKey",
                              old_jwk);
    text = json_dumps(inner_payload, JSON_COMPACT);
    json_decref(inner_payload);
    rv = cs_jws_sign(&inner, p, new_key, NULL, NULL, a->key_change,
                     text ? text : "{}", err);
    free(text);
    if (rv == APR_SUCCESS) {
        rv = post(&r, a, p, a->key_change, inner, a->key, 0, NULL,
                  "keyChange", err);
    }
    if (rv == APR_SUCCESS) {
        a->key = new_key;
        logf_(a, CS_ACME_LOG_INFO, "ACME account %s rolled over to a new "
              "key", a->kid);
    }
    else {
        *err = keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t cs_acme_revoke(cs_acme_t *a, X509 *cert, int reason,
                            const char **err)
{
    apr_pool_t *p;
    resp_t r;
    unsigned char *der = NULL;
    json_t *payload;
    char *text;
    int len;
    apr_status_t rv;

    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (!a->kid || !a->key || !a->revoke_cert) {
        *err = "no ACME account or no revokeCert in the directory";
        return APR_EINVAL;
    }
    if ((len = i2d_X509(cert, &der)) <= 0) {
        *err = "cannot encode the certificate";
        return APR_EINVAL;
    }
    apr_pool_create(&p, a->pool);
    payload = json_pack("{s:s, s:i}", "certificate",
                        cs_b64url_encode(p, der, (apr_size_t)len),
                        "reason", reason);
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    OPENSSL_free(der);
    rv = post(&r, a, p, a->revoke_cert, text ? text : "{}", a->key, 0, NULL,
              "revokeCert", err);
    free(text);
    if (rv) {
        *err = keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t cs_acme_cert_id(const char **id, apr_pool_t *p, X509 *cert)
{
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    unsigned char *der = NULL;
    int len;

    if (!aki || !serial) {
        return APR_EINVAL;
    }
    /* The serial's DER content octets: past the tag and a short length. */
    if ((len = i2d_ASN1_INTEGER(serial, &der)) < 3 || der[1] >= 0x80) {
        OPENSSL_free(der);
        return APR_EINVAL;
    }
    *id = apr_pstrcat(p, cs_b64url_encode(p, ASN1_STRING_get0_data(aki),
                                          (apr_size_t)ASN1_STRING_length(aki)),
                      ".", cs_b64url_encode(p, der + 2, (apr_size_t)len - 2),
                      NULL);
    OPENSSL_free(der);
    return APR_SUCCESS;
}

apr_status_t cs_acme_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                  apr_int64_t *retry_after, cs_acme_t *a,
                                  apr_pool_t *p, X509 *cert,
                                  const char **err)
{
    const char *id, *url;
    resp_t r;
    json_t *j, *w;
    apr_status_t rv;

    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (!a->renewal_info || !*a->renewal_info) {
        *err = "the directory offers no renewalInfo";
        return APR_ENOTIMPL;
    }
    if ((rv = cs_acme_cert_id(&id, p, cert))) {
        *err = "the certificate has no authority key identifier";
        return rv;
    }
    url = apr_pstrcat(p, a->renewal_info,
                      a->renewal_info[strlen(a->renewal_info) - 1] == '/'
                      ? "" : "/", id, NULL);
    if ((rv = http(&r, a, p, "GET", url, NULL, NULL, err))) {
        return rv;
    }
    if (r.status != 200) {
        return answer_error(a, p, &r, "renewalInfo", err);
    }
    if (!(j = body_json(p, &r, "renewalInfo", err))) {
        return APR_EGENERAL;
    }
    w = json_object_get(j, "suggestedWindow");
    if (!json_is_object(w)
        || cs_sched_parse_time(start, json_string_value(json_object_get(
                                   w, "start")))
        || cs_sched_parse_time(end, json_string_value(json_object_get(
                                   w, "end")))
        || *end <= *start) {
        json_decref(j);
        *err = "renewalInfo: no valid suggestedWindow";
        return APR_EGENERAL;
    }
    json_decref(j);
    *retry_after = r.retry_after;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Pre-check                                                           */
/* ------------------------------------------------------------------ */

/* A records of name from the DNS server at "ipv4:port": one UDP query,
 * 3 s.  Only what the pre-check needs: no TCP fallback, no CNAME chase
 * beyond what the server puts in the answer section. */
static apr_status_t dns_a(apr_array_header_t **addrs, apr_pool_t *p,
                          const char *name, const char *server,
                          const char **err)
{
    unsigned char q[300], r[1500];
    struct sockaddr_in sa;
    struct pollfd pfd;
    const char *colon = strrchr(server, ':'), *l;
    char host[64], buf[INET_ADDRSTRLEN];
    size_t qlen = 12, off, ll;
    ssize_t n;
    unsigned int id, an, i, type, rdlen;
    int fd;

    *addrs = apr_array_make(p, 2, sizeof(const char *));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    if (!colon || (size_t)(colon - server) >= sizeof(host)) {
        *err = "pre-check: bad DNS server";
        return APR_EINVAL;
    }
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || strlen(name) > 253) {
        *err = "pre-check: bad DNS server or name";
        return APR_EINVAL;
    }
    apr_generate_random_bytes(q, 2);
    id = ((unsigned int)q[0] << 8) | q[1];
    memset(q + 2, 0, 10);
    q[2] = 0x01;                /* recursion desired */
    q[5] = 1;                   /* one question */
    for (l = name; *l; l += ll + (l[ll] == '.')) {
        ll = strcspn(l, ".");
        if (ll == 0 || ll > 63 || qlen + ll + 6 > sizeof(q)) {
            *err = "pre-check: bad name";
            return APR_EINVAL;
        }
        q[qlen++] = (unsigned char)ll;
        memcpy(q + qlen, l, ll);
        qlen += ll;
    }
    q[qlen++] = 0;
    q[qlen++] = 0;
    q[qlen++] = 1;              /* A */
    q[qlen++] = 0;
    q[qlen++] = 1;              /* IN */
    if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0) {
        *err = "pre-check: no socket";
        return APR_EGENERAL;
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    if (sendto(fd, q, qlen, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || poll(&pfd, 1, 3000) != 1
        || (n = recv(fd, r, sizeof(r), 0)) < 12) {
        close(fd);
        *err = apr_psprintf(p, "pre-check: no answer from the DNS server %s "
                            "for %s", server, name);
        return APR_EGENERAL;
    }
    close(fd);
    if ((((unsigned int)r[0] << 8) | r[1]) != id || !(r[2] & 0x80)) {
        *err = "pre-check: a DNS answer that is not ours";
        return APR_EGENERAL;
    }
    if ((r[3] & 0x0F) != 0) {
        *err = apr_psprintf(p, "pre-check: %s does not resolve (DNS rcode "
                            "%d)", name, r[3] & 0x0F);
        return APR_EGENERAL;
    }
    an = ((unsigned int)r[6] << 8) | r[7];
    /* Skip the question: our own name back, then type and class. */
    off = qlen;
    for (i = 0; i < an; i++) {
        while (off < (size_t)n && r[off] && (r[off] & 0xC0) != 0xC0) {
            off += (size_t)r[off] + 1;
        }
        off += off < (size_t)n && r[off] ? 2 : 1;
        if (off + 10 > (size_t)n) {
            break;
        }
        type = ((unsigned int)r[off] << 8) | r[off + 1];
        rdlen = ((unsigned int)r[off + 8] << 8) | r[off + 9];
        off += 10;
        if (off + rdlen > (size_t)n) {
            break;
        }
        if (type == 1 && rdlen == 4
            && inet_ntop(AF_INET, r + off, buf, sizeof(buf))) {
            APR_ARRAY_PUSH(*addrs, const char *) = apr_pstrdup(p, buf);
        }
        off += rdlen;
    }
    return APR_SUCCESS;
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

/* GET url from addr (pinned with CURLOPT_RESOLVE): 200 and expect. */
static apr_status_t http_probe(cs_acme_t *a, apr_pool_t *p, const char *url,
                               const char *pin, const char *expect,
                               const char **err)
{
    CURL *c = curl_easy_init();
    struct curl_slist *resolve = NULL;
    resp_t r;
    char ebuf[CURL_ERROR_SIZE];
    CURLcode rc;

    if (!c) {
        return APR_ENOMEM;
    }
    memset(&r, 0, sizeof(r));
    r.p = p;
    r.acme = a;
    r.alternates = apr_array_make(p, 1, sizeof(const char *));
    ebuf[0] = '\0';
    resolve = curl_slist_append(NULL, pin);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(resolve);
    if (rc != CURLE_OK) {
        *err = apr_psprintf(p, "pre-check: %s (%s): %s", url, pin,
                            ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return APR_EGENERAL;
    }
    if (r.status != 200 || !r.body || strcmp(r.body, expect) != 0) {
        *err = apr_psprintf(p, "pre-check: %s (%s) answered HTTP %ld "
                            "without our probe: the name does not reach "
                            "this pool", url, pin, r.status);
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
