/*
 * csy_alpn.h: tls-alpn-01 (RFC 8737) on a proxy: the challenge
 * certificates an acme-tls/1 handshake is answered with.
 *
 * CertService makes the certificate while its order is in progress and
 * hands it out at GET /v1/acme-tls/DOMAIN (role proxy) with its key sealed
 * to the pool's wrapping certificates (a CMS envelope, like a bundle's
 * key_cms).  A worker asks for it when a client offers acme-tls/1 alone,
 * opens the key with its wrapping key, checks the certificate (one SAN,
 * the domain; the critical acmeIdentifier; the key pair; the validity:
 * cs_tlsalpn_cert_check) and keeps it a few seconds: a CA validates from
 * several places within seconds.  A name CertService has no challenge for
 * is not remembered by default (miss_ttl 0): anyone can send acme-tls/1
 * handshakes, and a remembered "none" would refuse the CA's validation
 * that follows within the same moment.  What bounds a flood of them is
 * max_fetches: at most that many requests run at once in one process, and
 * the handshakes beyond them are refused.
 *
 * Pure code: APR, OpenSSL, jansson and the cs_http transport; no httpd
 * types (mod_certsync_alpn.c is the glue).  Thread-safe.
 */
#ifndef CSY_ALPN_H
#define CSY_ALPN_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_http.h"

/** The ALPN protocol of tls-alpn-01. */
#define CSY_ACME_TLS_1  "acme-tls/1"

/** Whether a client's ALPN offer (const char * names) is acme-tls/1
 * alone, as RFC 8737 3 has a CA send it: only then is a handshake a
 * challenge.  An offer with h2 or http/1.1 beside it is a normal one. */
int csy_alpn_offers_only_acme(const apr_array_header_t *offers);

/** A challenge certificate and its key; reference counted. */
typedef struct csy_alpn_cred_t {
    X509 *cert;
    EVP_PKEY *key;
    volatile apr_uint32_t refs;
} csy_alpn_cred_t;

void csy_alpn_cred_release(csy_alpn_cred_t *cred);

/**
 * CertService's answer (the JSON of GET /v1/acme-tls/DOMAIN) for domain,
 * its key opened with one of the wrapping keys (X509 * / EVP_PKEY *
 * arrays, same order) and checked (cs_tlsalpn_cert_check at now).
 * *cred holds one reference.  APR_EINVAL with a reason in err otherwise.
 */
apr_status_t csy_alpn_parse(csy_alpn_cred_t **cred, const char *body,
                            apr_size_t len, const char *domain,
                            const apr_array_header_t *wrap_certs,
                            const apr_array_header_t *wrap_keys,
                            apr_time_t now, char *err, apr_size_t errlen);

/** A transport for one fetch, from p (a libcurl one in production). */
typedef cs_http_t *csy_alpn_http_fn(void *baton, apr_pool_t *p);

typedef struct {
    const char *url;                /* CertService, no trailing '/' */
    csy_alpn_http_fn *http;
    void *http_baton;
    const apr_array_header_t *wrap_certs;
    const apr_array_header_t *wrap_keys;
    apr_interval_time_t ttl;        /* a certificate is reused; 0: 5 s */
    apr_interval_time_t miss_ttl;   /* a 404 is remembered; 0: not */
    unsigned capacity;              /* names kept; 0: 64 */
    unsigned max_fetches;           /* at once; 0: 4 */
} csy_alpn_conf_t;

typedef struct csy_alpn_t csy_alpn_t;

/** One per process (freed with p); conf's strings and arrays are kept. */
apr_status_t csy_alpn_create(csy_alpn_t **a, apr_pool_t *p,
                             const csy_alpn_conf_t *conf);

/**
 * The challenge certificate for domain (a store name: csy_sni_name),
 * from the cache or CertService.  *cred holds a reference the caller
 * releases.  APR_NOTFOUND: no challenge in progress for domain (err
 * empty); APR_EBUSY: max_fetches already running; another error with a
 * reason in err: CertService unreachable, an answer that does not parse
 * or check.
 */
apr_status_t csy_alpn_get(csy_alpn_cred_t **cred, csy_alpn_t *a,
                          const char *domain, apr_time_t now, char *err,
                          apr_size_t errlen);

/** Counters since creation. */
typedef struct {
    apr_uint32_t hits;              /* answered from the cache */
    apr_uint32_t fetches;           /* requests to CertService */
    apr_uint32_t misses;            /* no challenge (fetched or cached) */
    apr_uint32_t errors;
    apr_uint32_t busy;
} csy_alpn_stats_t;
void csy_alpn_stats(csy_alpn_stats_t *st, csy_alpn_t *a);

#endif /* CSY_ALPN_H */
