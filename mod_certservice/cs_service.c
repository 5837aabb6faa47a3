/*
 * cs_service.c: issuing, importing and the JSON views.  See cs_service.h.
 */
#include <string.h>

#include <apr_strings.h>
#include <openssl/x509.h>

#include "cs_envelope.h"
#include "cs_service.h"

/* ------------------------------------------------------------------ */
/* The local CA issuer                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    const cs_ca_t *ca;
    apr_interval_time_t lifetime;
} local_ca_t;

static apr_status_t local_ca_issue(apr_array_header_t **chain, apr_pool_t *p,
                                   const cs_issuer_t *issuer, EVP_PKEY *key,
                                   const char *domain, const char **err)
{
    const local_ca_t *lc = issuer->baton;

    return cs_ca_issue(chain, p, lc->ca, key, domain, lc->lifetime, err);
}

cs_issuer_t *cs_issuer_local_ca(apr_pool_t *p, const cs_ca_t *ca,
                                apr_interval_time_t lifetime)
{
    cs_issuer_t *issuer = apr_pcalloc(p, sizeof(*issuer));
    local_ca_t *lc = apr_pcalloc(p, sizeof(*lc));

    lc->ca = ca;
    lc->lifetime = lifetime;
    issuer->name = "local-ca";
    issuer->issue = local_ca_issue;
    issuer->baton = lc;
    return issuer;
}

/* ------------------------------------------------------------------ */
/* Bundles                                                             */
/* ------------------------------------------------------------------ */

#define UNSUPPORTED_KEY "unsupported key type (ECDSA P-256/P-384 or RSA " \
                        "of at least 2048 bits expected)"

/* An active bundle of a checked chain and its sealed key (DER). */
static cs_bundle_t *bundle_of(apr_pool_t *p, const char *domain,
                              const apr_array_header_t *chain,
                              const char *key_type, const unsigned char *der,
                              apr_size_t der_len, apr_time_t now)
{
    cs_bundle_t *b = apr_pcalloc(p, sizeof(*b));
    cs_cert_info_t info;

    cs_cert_info(&info, p, APR_ARRAY_IDX(chain, 0, X509 *));
    b->domain = domain;
    b->state = "active";
    b->serial = info.serial;
    b->not_before = apr_time_sec(info.not_before);
    b->not_after = apr_time_sec(info.not_after);
    b->key_type = key_type;
    b->chain_pem = cs_pem_write_certs(p, chain);
    b->key_cms = cs_base64_encode(p, der, der_len);
    b->updated = apr_time_sec(now);
    return b;
}

/* Checks a chain and key, seals the key and fills a bundle. */
static apr_status_t make_bundle(cs_bundle_t **pb, apr_pool_t *p,
                                const cs_service_t *svc, const char *domain,
                                apr_array_header_t *chain, EVP_PKEY *key,
                                apr_time_t now, const char **err)
{
    unsigned char *der;
    apr_size_t der_len;
    apr_status_t rv;
    const char *key_type;

    if ((rv = cs_bundle_verify(chain, key, domain, now, err))) {
        return rv;
    }
    if (!(key_type = cs_key_describe(p, key))) {
        *err = UNSUPPORTED_KEY;
        return APR_EINVAL;
    }
    if ((rv = cs_envelope_seal(&der, &der_len, p, key, svc->wrap_certs,
                               err))) {
        return rv;
    }
    *pb = bundle_of(p, domain, chain, key_type, der, der_len, now);
    return APR_SUCCESS;
}

apr_status_t cs_service_issue(cs_bundle_t **b, apr_pool_t *p,
                              const cs_service_t *svc, const char *domain,
                              cs_key_type_t kt, const char **err)
{
    apr_array_header_t *chain;
    EVP_PKEY *key;
    apr_status_t rv;

    if (!svc->issuer) {
        *err = "no issuer configured (CertServiceLocalCA)";
        return APR_ENOTIMPL;
    }
    if ((rv = cs_key_generate(&key, p, kt))) {
        *err = "key generation failed";
        return rv;
    }
    if ((rv = svc->issuer->issue(&chain, p, svc->issuer, key, domain,
                                 err))) {
        return rv;
    }
    return make_bundle(b, p, svc, domain, chain, key, apr_time_now(), err);
}

apr_status_t cs_service_import(cs_bundle_t **b, apr_pool_t *p,
                               const cs_service_t *svc, const char *domain,
                               const char *chain_pem, const char *key_pem,
                               apr_time_t now, const char **err)
{
    apr_array_header_t *chain;
    EVP_PKEY *key;
    apr_status_t rv;

    if ((rv = cs_pem_read_certs(&chain, p, chain_pem, strlen(chain_pem),
                                err))) {
        return rv;
    }
    if ((rv = cs_pem_read_key(&key, p, key_pem, strlen(key_pem), err))) {
        return rv;
    }
    return make_bundle(b, p, svc, domain, chain, key, now, err);
}

apr_status_t cs_service_import_sealed(cs_bundle_t **pb, apr_pool_t *p,
                                      const cs_service_t *svc,
                                      const char *domain,
                                      const char *chain_pem,
                                      const char *key_cms, apr_time_t now,
                                      const char **err)
{
    apr_array_header_t *chain;
    unsigned char *der;
    apr_size_t der_len;
    apr_status_t rv;
    const char *key_type;
    X509 *leaf;
    int i;

    if ((rv = cs_pem_read_certs(&chain, p, chain_pem, strlen(chain_pem),
                                err))) {
        return rv;
    }
    if ((rv = cs_chain_verify(chain, domain, now, err))) {
        return rv;
    }
    leaf = APR_ARRAY_IDX(chain, 0, X509 *);
    if (!(key_type = cs_key_describe(p, X509_get0_pubkey(leaf)))) {
        *err = UNSUPPORTED_KEY;
        return APR_EINVAL;
    }
    if (cs_base64_decode(&der, &der_len, p, key_cms) || der_len == 0) {
        *err = "key_cms is not base64";
        return APR_EINVAL;
    }
    /* Every proxy must be able to open it with the key it has: the
     * envelope names every wrapping certificate configured here. */
    for (i = 0; i < svc->wrap_certs->nelts; i++) {
        X509 *w = APR_ARRAY_IDX(svc->wrap_certs, i, X509 *);
        int has = cs_envelope_has_recipient(der, der_len, w);

        if (has < 0) {
            *err = "key_cms is not a CMS envelope";
            return APR_EINVAL;
        }
        if (!has) {
            *err = apr_psprintf(p, "key_cms is not sealed to the wrapping "
                                "certificate %s (sealed keys must name "
                                "every CertServiceWrapCertificate)",
                                cs_cert_fingerprint(p, w));
            return APR_EINVAL;
        }
    }
    *pb = bundle_of(p, domain, chain, key_type, der, der_len, now);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/*
 * b's domain, its state if given, its version (seq to key_type), then the
 * members of tail (taken), in that order.
 */
static json_t *bundle_json(const cs_bundle_t *b, const char *state,
                           json_t *tail)
{
    json_t *j = json_pack("{s:s}", "domain", b->domain);

    if (state) {
        json_object_set_new(j, "state", json_string(state));
    }
    json_object_update_new(j, json_pack("{s:I, s:o, s:I, s:I, s:o}",
                                        "seq", (json_int_t)b->seq,
                                        "serial", str_or_null(b->serial),
                                        "not_before",
                                        (json_int_t)b->not_before,
                                        "not_after",
                                        (json_int_t)b->not_after,
                                        "key_type",
                                        str_or_null(b->key_type)));
    json_object_update_new(j, tail);
    return j;
}

json_t *cs_json_bundle(const cs_bundle_t *b)
{
    return bundle_json(b, NULL,
                       json_pack("{s:o, s:o}",
                                 "chain_pem", str_or_null(b->chain_pem),
                                 "key_cms", str_or_null(b->key_cms)));
}

json_t *cs_json_domain(const cs_bundle_t *b, const apr_array_header_t *hosts)
{
    json_t *j = bundle_json(b, b->state ? b->state : "unknown",
                            json_pack("{s:o, s:I}",
                                      "last_error",
                                      str_or_null(b->last_error),
                                      "updated", (json_int_t)b->updated));
    int i;

    if (hosts) {
        json_t *arr = json_array();
        for (i = 0; i < hosts->nelts; i++) {
            const cs_host_serving_t *h = &APR_ARRAY_IDX(hosts, i,
                                                        cs_host_serving_t);
            json_t *failed = h->failed_json
                             ? json_loads(h->failed_json, 0, NULL) : NULL;
            json_t *reason = NULL;

            if (json_is_object(failed)) {
                reason = json_object_get(failed, b->domain);
            }
            json_array_append_new(arr, json_pack(
                "{s:s, s:o, s:I, s:o, s:o, s:o, s:I}",
                "host", h->host,
                "pool", str_or_null(h->pool),
                "seq", (json_int_t)h->seq,
                "state", str_or_null(h->state),
                "serial", str_or_null(h->serial),
                "failed", reason ? json_incref(reason) : json_null(),
                "reported", (json_int_t)h->reported));
            json_decref(failed);
        }
        json_object_set_new(j, "hosts", arr);
    }
    return j;
}

json_t *cs_json_changes(const apr_array_header_t *changes, apr_int64_t next,
                        int more)
{
    json_t *arr = json_array();
    int i;

    for (i = 0; i < changes->nelts; i++) {
        const cs_change_t *c = &APR_ARRAY_IDX(changes, i, cs_change_t);
        json_t *o = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)c->seq,
                              "domain", c->domain, "op", c->op);
        if (strcmp(c->op, "upsert") == 0) {
            json_object_set_new(o, "serial", str_or_null(c->serial));
            json_object_set_new(o, "not_after",
                                json_integer((json_int_t)c->not_after));
        }
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o, s:I, s:b}", "changes", arr,
                     "next", (json_int_t)next, "more", more);
}
