/*
 * csy_alpn.c: tls-alpn-01 challenge certificates on a proxy (csy_alpn.h).
 *
 * The cache is a small array scanned in full (64 entries by default: a
 * pool answers few challenges at a time); the oldest entry makes room.
 * Fetches run outside its lock, so one slow CertService answer holds no
 * other handshake.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include <jansson.h>
#include <openssl/err.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_x509.h"
#include "csy_alpn.h"
#include "csy_dyn.h"

int csy_alpn_offers_only_acme(const apr_array_header_t *offers)
{
    return offers && offers->nelts == 1
           && APR_ARRAY_IDX(offers, 0, const char *)
           && strcmp(APR_ARRAY_IDX(offers, 0, const char *),
                     CSY_ACME_TLS_1) == 0;
}

void csy_alpn_cred_release(csy_alpn_cred_t *cred)
{
    if (cred && apr_atomic_dec32(&cred->refs) == 0) {
        X509_free(cred->cert);
        EVP_PKEY_free(cred->key);
        free(cred);
    }
}

static apr_status_t fail(char *err, apr_size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static apr_status_t fail(char *err, apr_size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return APR_EINVAL;
}

apr_status_t csy_alpn_parse(csy_alpn_cred_t **cred, const char *body,
                            apr_size_t len, const char *domain,
                            const apr_array_header_t *wrap_certs,
                            const apr_array_header_t *wrap_keys,
                            apr_time_t now, char *err, apr_size_t errlen)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *name, *pem, *cms, *why = NULL;
    apr_array_header_t *certs;
    unsigned char *der;
    apr_size_t der_len;
    EVP_PKEY *key = NULL;
    X509 *cert;
    csy_alpn_cred_t *c;
    apr_pool_t *tp;
    apr_status_t rv = APR_EINVAL;
    int i;

    *cred = NULL;
    err[0] = '\0';
    apr_pool_create(&tp, NULL);
    name = json_string_value(json_object_get(j, "domain"));
    pem = json_string_value(json_object_get(j, "cert_pem"));
    cms = json_string_value(json_object_get(j, "key_cms"));
    if (!json_is_object(j) || !name || !pem || !cms) {
        fail(err, errlen, "not a tls-alpn-01 answer (domain, cert_pem, "
             "key_cms)");
        goto done;
    }
    if (strcmp(name, domain) != 0) {
        fail(err, errlen, "an answer for another domain");
        goto done;
    }
    if (cs_pem_read_certs(&certs, tp, pem, strlen(pem), &why)
        || certs->nelts != 1) {
        fail(err, errlen, "cert_pem is not one certificate%s%s",
             why ? ": " : "", why ? why : "");
        goto done;
    }
    cert = APR_ARRAY_IDX(certs, 0, X509 *);
    if (cs_base64_decode(&der, &der_len, tp, cms) != APR_SUCCESS) {
        fail(err, errlen, "key_cms is not base64");
        goto done;
    }
    /* During a rotation the envelope names one of the keys. */
    rv = APR_ENOENT;
    for (i = 0; wrap_keys && i < wrap_keys->nelts && rv == APR_ENOENT; i++) {
        why = NULL;
        rv = cs_envelope_open(&key, tp, der, der_len,
                              APR_ARRAY_IDX(wrap_certs, i, X509 *),
                              APR_ARRAY_IDX(wrap_keys, i, EVP_PKEY *), &why);
    }
    if (rv != APR_SUCCESS) {
        rv = fail(err, errlen, "the key does not open with this proxy's "
                  "wrapping key%s%s", why ? ": " : "", why ? why : "");
        goto done;
    }
    if ((rv = cs_tlsalpn_cert_check(NULL, cert, key, domain, now, &why))) {
        fail(err, errlen, "%s", why);
        goto done;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        rv = APR_ENOMEM;
        goto done;
    }
    X509_up_ref(cert);
    EVP_PKEY_up_ref(key);
    c->cert = cert;
    c->key = key;
    c->refs = 1;
    *cred = c;
done:
    json_decref(j);
    apr_pool_destroy(tp);
    ERR_clear_error();
    return rv;
}

/* ------------------------------------------------------------------ */
/* The cache                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    char name[CSY_NAME_SIZE];       /* "" : free */
    csy_alpn_cred_t *cred;          /* NULL: CertService had none */
    apr_time_t until;
} alpn_entry_t;

struct csy_alpn_t {
    csy_alpn_conf_t conf;
    apr_pool_t *pool;
    apr_thread_mutex_t *mutex;
    alpn_entry_t *entries;
    volatile apr_uint32_t fetching;
    csy_alpn_stats_t stats;
};

static apr_status_t alpn_cleanup(void *data)
{
    csy_alpn_t *a = data;
    unsigned i;

    for (i = 0; i < a->conf.capacity; i++) {
        csy_alpn_cred_release(a->entries[i].cred);
        a->entries[i].cred = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t csy_alpn_create(csy_alpn_t **pa, apr_pool_t *p,
                             const csy_alpn_conf_t *conf)
{
    csy_alpn_t *a = apr_pcalloc(p, sizeof(*a));
    apr_status_t rv;

    a->conf = *conf;
    a->pool = p;
    if (!a->conf.ttl) {
        a->conf.ttl = apr_time_from_sec(5);
    }
    if (!a->conf.capacity) {
        a->conf.capacity = 64;
    }
    if (!a->conf.max_fetches) {
        a->conf.max_fetches = 4;
    }
    if ((rv = apr_thread_mutex_create(&a->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      p))) {
        return rv;
    }
    a->entries = apr_pcalloc(p, a->conf.capacity * sizeof(*a->entries));
    apr_pool_cleanup_register(p, a, alpn_cleanup, apr_pool_cleanup_null);
    *pa = a;
    return APR_SUCCESS;
}

/* Under the lock: the entry of name, live at now, or NULL. */
static alpn_entry_t *cache_find(csy_alpn_t *a, const char *name,
                                apr_time_t now)
{
    unsigned i;

    for (i = 0; i < a->conf.capacity; i++) {
        if (a->entries[i].name[0] && now < a->entries[i].until
            && strcmp(a->entries[i].name, name) == 0) {
            return &a->entries[i];
        }
    }
    return NULL;
}

/* Under the lock: keep cred (or a miss) for name, in name's entry, a
 * free or expired one, else the one that ends first. */
static void cache_put(csy_alpn_t *a, const char *name,
                      csy_alpn_cred_t *cred, apr_time_t until,
                      apr_time_t now)
{
    alpn_entry_t *e = NULL, *x;
    unsigned i;

    for (i = 0; i < a->conf.capacity; i++) {
        x = &a->entries[i];
        if (strcmp(x->name, name) == 0 || !x->name[0] || x->until <= now) {
            e = x;
            break;
        }
        if (!e || x->until < e->until) {
            e = x;
        }
    }
    csy_alpn_cred_release(e->cred);
    apr_cpystrn(e->name, name, sizeof(e->name));
    e->cred = cred;
    if (cred) {
        apr_atomic_inc32(&cred->refs);
    }
    e->until = until;
}

static apr_status_t fetch(csy_alpn_cred_t **cred, csy_alpn_t *a,
                          const char *domain, apr_time_t now, char *err,
                          apr_size_t errlen)
{
    static const char *const headers[] = { "Accept: application/json",
                                           NULL };
    cs_http_req_t req;
    cs_http_resp_t resp;
    cs_http_t *http;
    const char *why = NULL;
    apr_pool_t *p;
    apr_status_t rv;

    apr_pool_create(&p, NULL);
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(p, a->conf.url, "/v1/acme-tls/", domain, NULL);
    req.headers = headers;
    if (!(http = a->conf.http(a->conf.http_baton, p))) {
        apr_snprintf(err, errlen, "no HTTP client for CertService");
        rv = APR_EGENERAL;
    }
    else if ((rv = cs_http_send(http, &resp, &req, p, &why))) {
        apr_snprintf(err, errlen, "%s", why ? why : "no answer");
    }
    else if (resp.status == 404) {
        rv = APR_NOTFOUND;
    }
    else if (resp.status != 200) {
        apr_snprintf(err, errlen, "GET %s: HTTP %ld", req.url, resp.status);
        rv = APR_EGENERAL;
    }
    else {
        rv = csy_alpn_parse(cred, resp.body, resp.len, domain,
                            a->conf.wrap_certs, a->conf.wrap_keys, now, err,
                            errlen);
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t csy_alpn_get(csy_alpn_cred_t **cred, csy_alpn_t *a,
                          const char *domain, apr_time_t now, char *err,
                          apr_size_t errlen)
{
    alpn_entry_t *e;
    csy_alpn_cred_t *got = NULL;
    apr_status_t rv;

    *cred = NULL;
    err[0] = '\0';
    apr_thread_mutex_lock(a->mutex);
    if ((e = cache_find(a, domain, now)) != NULL) {
        if (e->cred) {
            apr_atomic_inc32(&e->cred->refs);
            *cred = e->cred;
            a->stats.hits++;
        }
        else {
            a->stats.misses++;
        }
        apr_thread_mutex_unlock(a->mutex);
        return *cred ? APR_SUCCESS : APR_NOTFOUND;
    }
    if (a->fetching >= a->conf.max_fetches) {
        a->stats.busy++;
        apr_thread_mutex_unlock(a->mutex);
        apr_snprintf(err, errlen, "%u requests for challenges already "
                     "running", a->conf.max_fetches);
        return APR_EBUSY;
    }
    a->fetching++;
    a->stats.fetches++;
    apr_thread_mutex_unlock(a->mutex);

    rv = fetch(&got, a, domain, now, err, errlen);

    apr_thread_mutex_lock(a->mutex);
    a->fetching--;
    if (rv == APR_SUCCESS) {
        cache_put(a, domain, got, now + a->conf.ttl, now);
        *cred = got;
    }
    else if (rv == APR_NOTFOUND) {
        if (a->conf.miss_ttl > 0) {
            cache_put(a, domain, NULL, now + a->conf.miss_ttl, now);
        }
        a->stats.misses++;
    }
    else {
        a->stats.errors++;
    }
    apr_thread_mutex_unlock(a->mutex);
    return rv;
}

void csy_alpn_stats(csy_alpn_stats_t *st, csy_alpn_t *a)
{
    apr_thread_mutex_lock(a->mutex);
    *st = a->stats;
    apr_thread_mutex_unlock(a->mutex);
}
