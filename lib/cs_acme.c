/*
 * cs_acme.c: the ACME client's core (see cs_acme.h): the exchange over
 * the transport (cs_http.h), nonces and the signed POST, the directory,
 * the account, key change, revocation and renewal information (ARI).
 * Orders are in cs_acme_order.c, the pre-check in cs_acme_precheck.c.
 *
 * Every POST is a JWS with a fresh nonce: the nonce of the previous
 * answer when there is one, else one from newNonce.  A badNonce answer
 * carries a new nonce and is retried at once (a few times): CAs reject
 * valid nonces now and then on purpose (pebble: 5% by default).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_acme_private.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_name.h"
#include "cs_sched.h"

/* err, kept past the call's pool in a's buffer (not in a->pool, which
 * would grow with every failure of a long-lived client). */
const char *acme_keep_err(cs_acme_t *a, const char *err)
{
    if (err == NULL) {
        return NULL;
    }
    if (err != a->err) {
        apr_size_t n = cs_utf8_prefix(err, ACME_ERR_TEXT_MAX);
        memcpy(a->err, err, n);
        a->err[n] = '\0';
    }
    return a->err;
}

const char *acme_cut_err(apr_pool_t *p, const char *err)
{
    apr_size_t n;

    if (err == NULL || (n = cs_utf8_prefix(err, ACME_ERR_TEXT_MAX)) ==
        strlen(err)) {
        return err;
    }
    return apr_pstrndup(p, err, n);
}

void acme_log(cs_acme_t *a, cs_log_level_t level, const char *fmt, ...)
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
/* HTTP: the exchange over the transport                               */
/* ------------------------------------------------------------------ */

/* Link: <url>;rel="alternate", possibly several per header. */
static int link_cb(void *baton, const char *key, const char *value)
{
    acme_resp_t *r = baton;
    apr_pool_t *p = r->alternates->pool;
    char *v = apr_pstrdup(p, value), *tok, *last, *gt;

    for (tok = apr_strtok(v, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        while (*tok == ' ') {
            tok++;
        }
        if (*tok != '<' || !(gt = strchr(tok, '>'))) {
            continue;
        }
        if (strstr(gt, "rel=\"alternate\"") || strstr(gt, "rel=alternate")) {
            APR_ARRAY_PUSH(r->alternates, const char *) =
                apr_pstrndup(p, tok + 1, (apr_size_t)(gt - tok - 1));
        }
    }
    return 1;
}

int acme_url_ok(const char *url)
{
    const unsigned char *c;

    if (strncmp(url, "https://", 8) != 0 || !url[8]) {
        return 0;
    }
    for (c = (const unsigned char *)url; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7F) {
            return 0;
        }
    }
    return 1;
}

/* Whether v may be sent back as a nonce (base64url, fits the buffer). */
static int nonce_ok(const cs_acme_t *a, const char *v)
{
    return *v && strlen(v) < sizeof(a->nonce)
           && v[strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                          "wxyz0123456789-_")] == '\0';
}

apr_status_t acme_http(acme_resp_t *r, cs_acme_t *a, apr_pool_t *p,
                       const char *method, const char *url,
                       const char *body, const char *accept,
                       const char **err)
{
    const char *hdrs[3], *nonce;
    cs_http_req_t req;
    cs_http_resp_t resp;
    apr_status_t rv;
    int n = 0;

    memset(r, 0, sizeof(*r));
    r->body = "";
    r->alternates = apr_array_make(p, 2, sizeof(const char *));
    /* The client's own rule, whatever the transport allows. */
    if (!acme_url_ok(url)) {
        *err = apr_psprintf(p, "refusing an ACME URL that is not https "
                            "or not printable ASCII: %s",
                            cs_printable(p, url, strlen(url), 200));
        return APR_EINVAL;
    }
    if (accept) {
        hdrs[n++] = apr_pstrcat(p, "Accept: ", accept, NULL);
    }
    if (body) {
        hdrs[n++] = "Content-Type: application/jose+json";
    }
    hdrs[n] = NULL;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.headers = hdrs;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (acme_stopping(a)) {
        *err = "stopped (the server is shutting down)";
        return APR_EINTR;
    }
    a->stats.requests++;
    rv = cs_http_send(a->http, &resp, &req, p, err);
    /* An answer that came is kept even when the child is stopping (a new
     * order the CA made is recorded, not orphaned against its limits); a
     * failure then is the stop's, not the CA's. */
    if (rv == APR_EINTR || (rv != APR_SUCCESS && acme_stopping(a))) {
        *err = "stopped (the server is shutting down)";
        return APR_EINTR;
    }
    if (rv == APR_EINVAL) {
        return rv;
    }
    if (rv != APR_SUCCESS) {
        *err = apr_pstrcat(p, "CA unreachable: ", *err, NULL);
        return rv == APR_ENOSPC ? APR_EGENERAL : APR_ECONNREFUSED;
    }
    r->status = resp.status;
    r->body = resp.body;
    r->len = resp.len;
    r->headers = resp.headers;
    r->location = apr_table_get(resp.headers, "Location");
    r->retry_after = cs_http_retry_after(apr_table_get(resp.headers,
                                                       "Retry-After"),
                                         apr_time_now(),
                                         ACME_MAX_RETRY_AFTER);
    apr_table_do(link_cb, r, resp.headers, "Link", NULL);
    /* Every answer's nonce is the next POST's (RFC 8555 7.2). */
    nonce = apr_table_get(resp.headers, "Replay-Nonce");
    if (nonce && nonce_ok(a, nonce)) {
        apr_cpystrn(a->nonce, nonce, sizeof(a->nonce));
    }
    return APR_SUCCESS;
}

const char *acme_ca_text(apr_pool_t *p, const char *s, apr_size_t max)
{
    char *out, *c;

    if (!s) {
        return NULL;
    }
    out = apr_pstrndup(p, s, cs_utf8_prefix(s, max));
    for (c = out; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7F) {
            *c = ' ';
        }
    }
    return out;
}

/* The problem document of an error answer, as one line of at most
 * ACME_ERR_MAX bytes (a CA may send a megabyte of subproblems). */
static const char *problem(apr_pool_t *p, const acme_resp_t *r,
                           const char **type)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL), *sub, *o;
    const char *t, *d, *s = NULL;
    size_t i, n;

    *type = "";
    if (!json_is_object(j)) {
        json_decref(j);
        return apr_psprintf(p, "HTTP %ld from the CA", r->status);
    }
    t = json_string_value(json_object_get(j, "type"));
    d = json_string_value(json_object_get(j, "detail"));
    *type = t ? apr_pstrdup(p, t) : "";
    s = apr_psprintf(p, "%s: %s (HTTP %ld)",
                     t ? acme_ca_text(p, t, 200) : "error",
                     d ? acme_ca_text(p, d, 600) : "no detail",
                     r->status);
    sub = json_object_get(j, "subproblems");
    n = json_is_array(sub) ? json_array_size(sub) : 0;
    for (i = 0; i < n && strlen(s) < ACME_ERR_MAX; i++) {
        o = json_array_get(sub, i);
        t = json_string_value(json_object_get(o, "type"));
        d = json_string_value(json_object_get(o, "detail"));
        s = apr_psprintf(p, "%s; %s: %s", s,
                         t ? acme_ca_text(p, t, 200) : "?",
                         d ? acme_ca_text(p, d, 600) : "?");
    }
    if (i < n) {
        s = apr_psprintf(p, "%s; %lu more", s, (unsigned long)(n - i));
    }
    json_decref(j);
    return apr_pstrndup(p, s, cs_utf8_prefix(s, ACME_ERR_MAX));
}

apr_status_t acme_answer_error(cs_acme_t *a, apr_pool_t *p,
                               const acme_resp_t *r, const char *what,
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
    acme_resp_t r;
    apr_status_t rv;

    if (a->nonce[0]) {
        return APR_SUCCESS;
    }
    if ((rv = acme_http(&r, a, p, "HEAD", a->new_nonce, NULL, NULL, err))) {
        return rv;
    }
    if (!a->nonce[0]) {
        *err = apr_psprintf(p, "newNonce gave no Replay-Nonce (HTTP %ld)",
                            r.status);
        return r.status >= 500 ? APR_ECONNREFUSED : APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t acme_post(acme_resp_t *r, cs_acme_t *a, apr_pool_t *p,
                       const char *url, const char *payload, EVP_PKEY *key,
                       int jwk, const char *accept, const char *what,
                       const char **err)
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
        if ((rv = acme_http(r, a, p, "POST", url, jws, accept, err))) {
            return rv;
        }
        if (r->status < 400) {
            a->retry_after = r->retry_after;
            return APR_SUCCESS;
        }
        problem(p, r, &type);
        if (strcmp(type, ACME_ERR_PREFIX "badNonce") != 0) {
            return acme_answer_error(a, p, r, what, err);
        }
        a->stats.bad_nonces++;
        acme_log(a, CS_LOG_DEBUG, "badNonce from %s, retrying", url);
    }
    return acme_answer_error(a, p, r, apr_psprintf(p, "%s (after %d bad "
                                                   "nonces)", what, tries),
                             err);
}

json_t *acme_body_json(apr_pool_t *p, const acme_resp_t *r,
                       const char *what, const char **err)
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

const char *acme_jstr(apr_pool_t *p, json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s ? apr_pstrdup(p, s) : NULL;
}

/* ------------------------------------------------------------------ */
/* Client, directory, account                                          */
/* ------------------------------------------------------------------ */

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
    if (conf->http) {
        a->http = conf->http;
    }
    else {
        cs_http_conf_t hc;
        apr_status_t rv;

        memset(&hc, 0, sizeof(hc));
        hc.protocols = "https";
        hc.ca_file = a->conf.ca_file;
        hc.user_agent = a->conf.user_agent;
        hc.timeout = a->conf.timeout;
        hc.connect_timeout = a->conf.timeout;
        hc.max_body = ACME_MAX_BODY;
        hc.stop = a->conf.stop;
        if ((rv = cs_http_curl_create(&a->http, p, &hc))) {
            return rv;
        }
    }
    *acme = a;
    return APR_SUCCESS;
}

int cs_acme_profile_name_ok(const char *name)
{
    apr_size_t n = name ? strlen(name) : 0;

    return n >= 1 && n <= CS_ACME_PROFILE_MAX
           && name[strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                "opqrstuvwxyz0123456789._-")] == '\0';
}

/* meta.profiles (draft-aaron-acme-profiles): an object of name ->
 * description; what is not one gives no profiles. */
static apr_table_t *read_profiles(apr_pool_t *p, json_t *o)
{
    apr_table_t *t;
    const char *name;
    json_t *v;

    if (!json_is_object(o) || !json_object_size(o)) {
        return NULL;
    }
    t = apr_table_make(p, (int)json_object_size(o));
    json_object_foreach(o, name, v) {
        if (cs_acme_profile_name_ok(name)) {
            apr_table_set(t, name, json_is_string(v)
                          ? acme_ca_text(p, json_string_value(v), 200) : "");
        }
    }
    return apr_is_empty_table(t) ? NULL : t;
}

const apr_table_t *cs_acme_profiles(cs_acme_t *a)
{
    return a->have_dir ? a->profiles : NULL;
}

/* The names of a table, comma separated, into a buffer. */
typedef struct {
    char *buf;
    apr_size_t size;
} name_list_t;

static int add_name(void *baton, const char *key, const char *value)
{
    name_list_t *l = baton;
    apr_size_t len = strlen(l->buf);

    apr_snprintf(l->buf + len, l->size - len, "%s%s", len ? ", " : "", key);
    return 1;
}

apr_status_t cs_acme_profile_check(cs_acme_t *a, const char *profile,
                                   const char **err)
{
    char list[512] = "";
    name_list_t l;
    apr_status_t rv;

    if (!cs_acme_profile_name_ok(profile)) {
        *err = "not a profile name (1 to 64 of A-Z a-z 0-9 . _ -)";
        return APR_EINVAL;
    }
    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (a->profiles && apr_table_get(a->profiles, profile)) {
        return APR_SUCCESS;
    }
    /* Into the client's error buffer: a->pool must not grow with every
     * refusal of a long-lived client. */
    l.buf = list;
    l.size = sizeof(list);
    if (a->profiles) {
        apr_table_do(add_name, &l, a->profiles, NULL);
    }
    apr_snprintf(a->err, sizeof(a->err), "the CA's directory does not offer "
                 "the profile '%s' (%s%s)", profile,
                 *list ? "it offers: " : "it lists no profiles", list);
    *err = a->err;
    return APR_NOTFOUND;
}

apr_status_t cs_acme_directory(cs_acme_t *a, const char **err)
{
    apr_pool_t *p;
    acme_resp_t r;
    json_t *j;
    apr_status_t rv;

    if (a->have_dir) {
        return APR_SUCCESS;
    }
    apr_pool_create(&p, a->pool);
    if ((rv = acme_http(&r, a, p, "GET", a->conf.directory_url, NULL, NULL,
                        err))) {
        goto done;
    }
    if (r.status != 200) {
        rv = acme_answer_error(a, p, &r, "directory", err);
        goto done;
    }
    if (!(j = acme_body_json(p, &r, "directory", err))) {
        rv = APR_EGENERAL;
        goto done;
    }
    /* Into the client's long-lived pool only once it is complete: a CA
     * that keeps failing must not grow it with every try. */
    if (!json_is_string(json_object_get(j, "newNonce"))
        || !json_is_string(json_object_get(j, "newAccount"))
        || !json_is_string(json_object_get(j, "newOrder"))) {
        json_decref(j);
        *err = apr_psprintf(p, "the directory %s lacks newNonce, "
                            "newAccount or newOrder",
                            a->conf.directory_url);
        rv = APR_EGENERAL;
        goto done;
    }
    a->new_nonce = acme_jstr(a->pool, j, "newNonce");
    a->new_account = acme_jstr(a->pool, j, "newAccount");
    a->new_order = acme_jstr(a->pool, j, "newOrder");
    a->revoke_cert = acme_jstr(a->pool, j, "revokeCert");
    a->key_change = acme_jstr(a->pool, j, "keyChange");
    a->renewal_info = acme_jstr(a->pool, j, "renewalInfo");
    a->profiles = read_profiles(a->pool, json_object_get(
        json_object_get(j, "meta"), "profiles"));
    a->eab_required = json_is_true(json_object_get(
        json_object_get(j, "meta"), "externalAccountRequired"));
    json_decref(j);
    a->have_dir = 1;
    rv = APR_SUCCESS;
done:
    if (rv && *err) {
        *err = acme_keep_err(a, *err);
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
    acme_resp_t r;
    json_t *payload, *arr, *eab = NULL;
    const char *eab_jws;
    char *text;
    apr_status_t rv;
    int i;

    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (a->eab_required && !a->conf.eab) {
        *err = "the CA requires an External Account Binding (its "
               "directory's meta.externalAccountRequired) and none is "
               "configured";
        return APR_EACCES;
    }
    apr_pool_create(&p, a->pool);
    if (a->conf.eab) {
        if ((rv = cs_jws_eab(&eab_jws, p, a->conf.eab, key, a->new_account,
                             err))) {
            *err = acme_keep_err(a, apr_pstrcat(p, "externalAccountBinding: ",
                                                *err, NULL));
            apr_pool_destroy(p);
            return rv;
        }
        eab = json_loads(eab_jws, 0, NULL);
    }
    arr = json_array();
    for (i = 0; contact && i < contact->nelts; i++) {
        json_array_append_new(arr, json_string(APR_ARRAY_IDX(contact, i,
                                                             const char *)));
    }
    payload = json_pack("{s:b, s:o}", "termsOfServiceAgreed", 1,
                        "contact", arr);
    if (eab) {
        json_object_set_new(payload, "externalAccountBinding", eab);
    }
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    rv = acme_post(&r, a, p, a->new_account, text ? text : "{}", key, 1, NULL,
                   "newAccount", err);
    free(text);
    if (rv == APR_SUCCESS && (!r.location || !acme_url_ok(r.location)
                              || (r.status != 200 && r.status != 201))) {
        *err = apr_psprintf(p, "newAccount: HTTP %ld without an https "
                            "account URL", r.status);
        rv = APR_EGENERAL;
    }
    if (rv == APR_SUCCESS) {
        a->key = key;
        if (!a->kid || strcmp(a->kid, r.location) != 0) {
            a->kid = apr_pstrdup(a->pool, r.location);
        }
        *kid = a->kid;
        acme_log(a, CS_LOG_INFO, "ACME account %s (%s%s%s)", a->kid,
                 r.status == 201 ? "created" : "existing",
                 a->conf.eab ? ", external account binding key id " : "",
                 a->conf.eab ? a->conf.eab->kid : "");
    }
    else {
        *err = acme_keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}


/* ------------------------------------------------------------------ */
/* Key change, revocation, renewal information                         */
/* ------------------------------------------------------------------ */

apr_status_t cs_acme_key_change(cs_acme_t *a, EVP_PKEY *new_key,
                                const char **err)
{
    apr_pool_t *p;
    acme_resp_t r;
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
        rv = acme_post(&r, a, p, a->key_change, inner, a->key, 0, NULL,
                       "keyChange", err);
    }
    if (rv == APR_SUCCESS) {
        a->key = new_key;
        acme_log(a, CS_LOG_INFO, "ACME account %s rolled over to a new "
                 "key", a->kid);
    }
    else {
        *err = acme_keep_err(a, *err);
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t cs_acme_revoke(cs_acme_t *a, X509 *cert, int reason,
                            const char **err)
{
    apr_pool_t *p;
    acme_resp_t r;
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
    rv = acme_post(&r, a, p, a->revoke_cert, text ? text : "{}", a->key, 0,
                   NULL, "revokeCert", err);
    free(text);
    if (rv) {
        *err = acme_keep_err(a, *err);
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

    /* The lookup parses every extension: one that does not parse leaves
     * an error queued (for whoever checks the queue next) even when the
     * AKI itself is fine. */
    ERR_clear_error();
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

static apr_status_t renewal_info(apr_int64_t *start, apr_int64_t *end,
                                 apr_int64_t *retry_after, cs_acme_t *a,
                                 apr_pool_t *p, X509 *cert, const char **err)
{
    const char *id, *url;
    acme_resp_t r;
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
    if ((rv = acme_http(&r, a, p, "GET", url, NULL, NULL, err))) {
        return rv;
    }
    if (r.status != 200) {
        return acme_answer_error(a, p, &r, "renewalInfo", err);
    }
    if (!(j = acme_body_json(p, &r, "renewalInfo", err))) {
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


apr_status_t cs_acme_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                  apr_int64_t *retry_after, cs_acme_t *a,
                                  apr_pool_t *p, X509 *cert,
                                  const char **err)
{
    apr_status_t rv = renewal_info(start, end, retry_after, a, p, cert, err);

    if (rv) {
        *err = acme_cut_err(p, *err);
    }
    return rv;
}
