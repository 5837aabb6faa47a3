/*
 * cs_service.h: CertService's operations on certificates, between the API
 * and the store: issuing through an issuer, importing, and the envelope.
 *
 * Pure code: APR, OpenSSL and jansson; no httpd types.
 */
#ifndef CS_SERVICE_H
#define CS_SERVICE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <jansson.h>

#include "cs_crypto.h"
#include "cs_store.h"
#include "cs_x509.h"

/**
 * An issuer turns a name and a fresh key pair into a certificate chain
 * (leaf first).  The built-in local CA is one; ACME plugs in here.
 */
typedef struct cs_issuer_t cs_issuer_t;
struct cs_issuer_t {
    const char *name;           /* for logs and status: "local-ca" */
    apr_status_t (*issue)(apr_array_header_t **chain, apr_pool_t *p,
                          const cs_issuer_t *issuer, EVP_PKEY *key,
                          const char *domain, const char **err);
    void *baton;
};

/** The local CA issuer; lifetime of the certificates it issues. */
cs_issuer_t *cs_issuer_local_ca(apr_pool_t *p, const cs_ca_t *ca,
                                apr_interval_time_t lifetime);

typedef struct {
    const cs_issuer_t *issuer;
    const apr_array_header_t *wrap_certs;   /* X509 *: envelope recipients */
} cs_service_t;

/**
 * Issue a certificate for domain: a new key pair of type kt, a chain from
 * the issuer, checked with cs_bundle_verify, the key sealed at once.
 * *b is ready for cs_store_put_bundle.
 */
apr_status_t cs_service_issue(cs_bundle_t **b, apr_pool_t *p,
                              const cs_service_t *svc, const char *domain,
                              cs_key_type_t kt, const char **err);

/**
 * Import an existing certificate chain and key for domain: the key must
 * match, the chain be in order, valid now and for the name; the key is
 * sealed at once and its plaintext cleansed.
 */
apr_status_t cs_service_import(cs_bundle_t **b, apr_pool_t *p,
                               const cs_service_t *svc, const char *domain,
                               const char *chain_pem, const char *key_pem,
                               apr_time_t now, const char **err);

/**
 * Import a certificate chain whose key its importer sealed (certsuite
 * import): key_cms, base64 of a CMS envelope as cs_envelope_seal makes
 * it, must name every wrapping certificate of svc.  The chain is checked
 * as for cs_service_import; the key cannot be (only the proxies can open
 * it, and they check it before serving).
 */
apr_status_t cs_service_import_sealed(cs_bundle_t **b, apr_pool_t *p,
                                      const cs_service_t *svc,
                                      const char *domain,
                                      const char *chain_pem,
                                      const char *key_cms, apr_time_t now,
                                      const char **err);

/* --- JSON views (new references; the caller json_decref()s) ---------- */

/** The bundle a proxy fetches (ARCHITECTURE.md section 3). */
json_t *cs_json_bundle(const cs_bundle_t *b);
/** A domain for admins: state, expiry, last error, and hosts (array of
 * cs_host_serving_t, may be NULL). Never the key. */
json_t *cs_json_domain(const cs_bundle_t *b, const apr_array_header_t *hosts);
/** The change feed page. */
json_t *cs_json_changes(const apr_array_header_t *changes, apr_int64_t next,
                        int more);

/* Times in JSON are integer seconds since the epoch (UTC). */

#endif /* CS_SERVICE_H */
