/*
 * cs_acme.h: an ACME client (RFC 8555) for CertService: directory, nonces,
 * accounts, orders with their authorizations (a challenge of a type the
 * caller's responder answers: http-01, dns-01, tls-alpn-01), finalization, certificate
 * chains (and alternates), account key rollover, revocation, and ACME
 * Renewal Information (RFC 9773).
 *
 * Pure code: APR, OpenSSL, jansson and c-ares; no httpd types.  HTTP goes
 * through a transport (cs_http.h): libcurl's unless the caller gives one
 * (a unit test's fake).  One cs_acme_t is used by one thread at a time (it
 * holds one kept-alive connection and the current nonce).
 *
 * Errors: APR_EAGAIN when the CA refused for a rate limit (HTTP 429 or
 * urn:ietf:params:acme:error:rateLimited; cs_acme_retry_after() says how
 * long it asked to wait), APR_ECONNREFUSED when the CA could not be
 * reached at all, APR_TIMEUP when an order did not settle in time,
 * APR_EGENERAL when the CA answered with an error (its problem document is
 * in *err: type, detail, subproblems), APR_NOTFOUND when a profile asked
 * for is not in the directory, APR_EINVAL for bad arguments (or
 * a URL from the CA that is not https and printable ASCII), APR_EACCES
 * when the CA requires an External Account Binding and the client has
 * none (known from the directory, before any other request).  An error
 * text is one line of at most 1023 bytes, cut at a UTF-8 character, with
 * no control characters from the CA's documents; from the call's pool p
 * where it has one, else kept by the client until its next error.
 */
#ifndef CS_ACME_H
#define CS_ACME_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_http.h"
#include "cs_jws.h"
#include "cs_log.h"

typedef struct cs_acme_t cs_acme_t;

/* Challenge types, as bits of a set.  When an authorization offers
 * several that are allowed, the first in this order is answered:
 * http-01, tls-alpn-01, dns-01. */
#define CS_ACME_HTTP01      0x1
#define CS_ACME_TLSALPN01   0x2
#define CS_ACME_DNS01       0x4

/** One challenge to answer. */
typedef struct {
    int type;                   /* one CS_ACME_* bit */
    const char *name;           /* its RFC 8555 name: "http-01", ... */
    const char *domain;         /* the identifier, without a "*." */
    int wildcard;               /* the order is for "*." domain */
    const char *token;          /* base64url, checked */
    /* token "." the account key's thumbprint.  http-01 serves it as is;
     * dns-01 and tls-alpn-01 use its SHA-256 (RFC 8555 8.4, RFC 8737). */
    const char *keyauth;
} cs_acme_challenge_t;

/** Publish what answers ch (setup 1) or take it down again (setup 0).
 * Returning an error abandons the order. */
typedef apr_status_t cs_acme_challenge_fn(void *baton,
                                          const cs_acme_challenge_t *ch,
                                          int setup);

typedef struct {
    const char *directory_url;
    const char *ca_file;            /* trust for the CA's TLS; NULL: system */
    apr_interval_time_t timeout;    /* one request; 0: 30 s */
    apr_interval_time_t poll_max;   /* waiting for a state; 0: 180 s */
    const char *user_agent;         /* NULL: "certsuite-acme/1" */
    /* Chain choice: the first chain (default, then alternates) whose
     * topmost certificate's issuer or subject contains this text; NULL or
     * no match: the default chain. */
    const char *preferred_chain;
    /* The transport to the CA; NULL: a libcurl one (https only) made from
     * ca_file, timeout and user_agent. */
    cs_http_t *http;
    /* The pre-check's transport; NULL: a libcurl one per address probed
     * (http only, 10 s). */
    cs_http_t *probe_http;
    cs_log_fn *log;
    void *log_baton;
    /* The responder and the challenge types it answers (CS_ACME_* bits;
     * 0: CS_ACME_HTTP01). */
    cs_acme_challenge_fn *challenge;
    void *challenge_baton;
    int challenges;
    /* External Account Binding sent with every newAccount; NULL: none.
     * The caller keeps it (and its key) alive as long as the client. */
    const cs_eab_t *eab;
    /* Set non-zero (by another thread) when the caller must stop: an
     * order gives up at its next wait or request, or within about a
     * second of the request in flight, APR_EINTR.  NULL: no such flag. */
    const volatile apr_uint32_t *stop;
} cs_acme_conf_t;

/** Once per process, before any thread makes a client: the transport's
 * (cs_http_global_init) and c-ares' global state.  Not thread-safe. */
void cs_acme_global_init(void);

/** A client for one directory; its transport is freed with p.  Call
 * cs_acme_global_init() once per process before. */
apr_status_t cs_acme_create(cs_acme_t **acme, apr_pool_t *p,
                            const cs_acme_conf_t *conf);

/** Fetch the directory (done by every call below when not yet done). */
apr_status_t cs_acme_directory(cs_acme_t *acme, const char **err);

/** Whether the directory offers renewalInfo (RFC 9773). */
int cs_acme_has_ari(cs_acme_t *acme);

/** Longest profile name the client keeps or sends. */
#define CS_ACME_PROFILE_MAX 64

/** Whether name is a profile name the client can use: 1 to
 * CS_ACME_PROFILE_MAX characters of A-Z a-z 0-9 . _ - */
int cs_acme_profile_name_ok(const char *name);

/**
 * The profiles the directory offers (draft-aaron-acme-profiles: its
 * meta.profiles, name -> description), NULL when it lists none or was not
 * fetched yet.  Names the client could not send (cs_acme_profile_name_ok)
 * are left out; descriptions are cut to 200 bytes, control characters
 * made spaces.  Owned by the client.
 */
const apr_table_t *cs_acme_profiles(cs_acme_t *acme);

/**
 * Whether the CA offers profile (the directory is fetched first).
 * APR_NOTFOUND with *err naming the profile and what the directory
 * offers when it does not (the text kept by the client until its next
 * error); APR_EINVAL for a name that is not one; the directory's own
 * errors otherwise.
 */
apr_status_t cs_acme_profile_check(cs_acme_t *acme, const char *profile,
                                   const char **err);

/**
 * Use key as the account key: newAccount with it, agreeing to the terms;
 * the CA returns the existing account for a key it knows (reuse), or
 * creates one.  contact: array of "mailto:..." (may be NULL).  *kid is
 * the account URL (from the client's pool).  With conf.eab the request
 * carries the externalAccountBinding (RFC 8555 7.3.4); without it, a CA
 * whose directory says meta.externalAccountRequired gets no request and
 * the call fails with APR_EACCES.
 */
apr_status_t cs_acme_account(const char **kid, cs_acme_t *acme,
                             EVP_PKEY *key,
                             const apr_array_header_t *contact,
                             const char **err);

/** What an order asks for, beyond its domain. */
typedef struct {
    /* The ARI certificate id of the certificate this one renews; NULL. */
    const char *replaces;
    /* The ACME profile (newOrder "profile"); NULL: the CA's default. */
    const char *profile;
    /* The challenge types this order may use (CS_ACME_* bits, within
     * conf.challenges); 0: every type the responder answers. */
    int challenges;
} cs_acme_order_t;

/**
 * Order a certificate for domain with the CSR of key; the chain (array of
 * X509 *, leaf first) from p.  Each authorization is answered with the
 * first challenge type (see CS_ACME_HTTP01) that the CA offers, the order
 * allows and the responder answers; none: the order fails, naming the
 * types offered.  o may be NULL (no replaces, no profile, any type).  A
 * profile the directory does not offer fails with APR_NOTFOUND before
 * any order is made (cs_acme_profile_check).
 */
apr_status_t cs_acme_issue(apr_array_header_t **chain, apr_pool_t *p,
                           cs_acme_t *acme, EVP_PKEY *key,
                           const char *domain, const cs_acme_order_t *o,
                           const char **err);

/** Roll the account over to new_key (RFC 8555 7.3.5). */
apr_status_t cs_acme_key_change(cs_acme_t *acme, EVP_PKEY *new_key,
                                const char **err);

/** Revoke cert (RFC 8555 7.6) with the account key; reason: RFC 5280
 * code (0 unspecified, 4 superseded ...). */
apr_status_t cs_acme_revoke(cs_acme_t *acme, X509 *cert, int reason,
                            const char **err);

/** RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "."
 * base64url(serial DER content); APR_EINVAL without an AKI. */
apr_status_t cs_acme_cert_id(const char **id, apr_pool_t *p, X509 *cert);

/**
 * RFC 9773: the CA's suggested renewal window for cert (unix seconds) and
 * the Retry-After it gave (seconds; 0 if none).  APR_ENOTIMPL if the
 * directory has no renewalInfo.
 */
apr_status_t cs_acme_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                  apr_int64_t *retry_after, cs_acme_t *acme,
                                  apr_pool_t *p, X509 *cert,
                                  const char **err);

/**
 * The pre-check: resolve domain (A records from dns_server "ipv4:port", or
 * the system's resolver when NULL) and GET
 * http://domain:port/.well-known/acme-challenge/token from every address
 * (10 s each, no redirects): each must answer 200 with exactly expect
 * (the caller published it as a challenge in progress).  APR_EGENERAL and
 * *err naming what failed otherwise.
 */
apr_status_t cs_acme_precheck(cs_acme_t *acme, apr_pool_t *p,
                              const char *domain, int port,
                              const char *dns_server, const char *token,
                              const char *expect, const char **err);

/** The Retry-After (seconds) of the last error answer; 0 if none. */
apr_int64_t cs_acme_retry_after(const cs_acme_t *acme);

/** Counters since creation, for logs and tests. */
typedef struct {
    int requests;
    int bad_nonces;             /* badNonce answers retried */
} cs_acme_stats_t;
void cs_acme_stats(cs_acme_stats_t *stats, const cs_acme_t *acme);

#endif /* CS_ACME_H */
