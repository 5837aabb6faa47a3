/*
 * csy_sync.h: one synchronisation of the local store with CertService.
 *
 * Pure code: APR, OpenSSL and jansson; no httpd types.  HTTP goes through
 * a transport (cs_http.h): libcurl's unless the caller gives one (a unit
 * test's fake).  The glue (mod_certsync.c) runs it in its sync process and
 * decides about restarts.
 *
 * A cycle pages through GET /v1/changes from the saved cursor, fetches the
 * changed bundles in batches (POST /v1/bundles) over one kept-alive mutual
 * TLS connection, opens each key envelope in memory with a wrapping key,
 * verifies the bundle (chain order, name, validity, key match) and installs
 * it (csy_store.h).  A bundle that fails is skipped, remembered and retried
 * in later cycles; what was serving keeps serving.  The manifest, then the
 * cursor, are written only after the data they describe is durable.
 */
#ifndef CSY_SYNC_H
#define CSY_SYNC_H

#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_tables.h>

#include <jansson.h>

#include "cs_http.h"
#include "cs_log.h"
#include "csy_store.h"

struct csy_result_t;

/* See csy_config_t.checkpointed. */
typedef void csy_checkpointed_fn(void *baton, const struct csy_result_t *res,
                                 apr_pool_t *p);

typedef struct {
    const char *url;                    /* base URL, no trailing '/' */
    /* The transport to CertService; NULL: a libcurl one (https or http)
     * made from the four fields below. */
    cs_http_t *http;
    const char *client_cert;            /* PEM files for mutual TLS */
    const char *client_key;
    const char *ca_file;                /* CA of CertService's certificate */
    const apr_array_header_t *wrap_certs;   /* X509 * */
    const apr_array_header_t *wrap_keys;    /* EVP_PKEY *, same order */
    /* cs_seal_key_t derived from wrap_keys, same order; NULL: no key.seal
     * (dynamic mode's workers then open key.cms) */
    const apr_array_header_t *seal_keys;
    /* Domains per POST /v1/bundles, at least 1 (csy_client_create says
     * APR_EINVAL otherwise); the default is the caller's (the glue's
     * csy_conf_effective). */
    int batch_size;
    int keep_envelopes;                 /* store key.cms, not privkey.pem */
    /* Threads that open envelopes and check bundles, the caller's among
     * them; 0: one per online CPU (at most 16). */
    int threads;
    long timeout;       /* seconds per HTTP request, > 0 (with http NULL) */
    const char *pool_name;              /* for reports and leases */
    const char *host_name;
    /* domain -> serial that failed its post-restart probe and was rolled
     * back: never installed again (a newer serial is).  May be NULL. */
    apr_hash_t *quarantine;
    /* Called on the cycle's thread after each checkpoint (every
     * checkpoint_pages feed pages, and at the end) made what the pages
     * before it installed or removed durable and listed in the manifest,
     * cursor saved: res->made_current and res->removed_set then hold what
     * changed since the previous call, and are emptied when it returns,
     * so that a cold sync of N domains holds a checkpoint's pages of
     * them, not N (dynamic mode's activation).  NULL: they hold the whole
     * cycle's (vhost mode's rollout takes them all at its end). */
    csy_checkpointed_fn *checkpointed;
    void *checkpointed_baton;
    /* Feed pages between two checkpoints; 0: the default (50). */
    int checkpoint_pages;
    cs_log_fn *log;
    void *log_baton;
} csy_config_t;

typedef struct csy_result_t {
    long long cursor_before;
    long long cursor_after;
    int changed;                /* what is servable or served changed */
    int changes;                /* feed entries read */
    int installed;
    int removed;
    int unchanged;
    /* domain -> serial made current, and domain -> domain no longer
     * servable: the whole cycle's, or what the last checkpointed call
     * left (csy_config_t.checkpointed); from a subpool of p */
    apr_hash_t *made_current;
    apr_hash_t *removed_set;
    apr_hash_t *failures;       /* domain -> reason, after this cycle */
    const char *error;          /* the cycle stopped early: why */
    /* CertService's feed as far as this cycle read it: the "next" of the
     * last page (0: no page read), exact when that page said no more
     * follow (else CertService has at least that much). */
    long long head;
    int head_exact;
    /* A write to the store failed: "manifest", "cursor" or "bundles"
     * (an install; the bundle is skipped and retried), with its error
     * text; NULL when every write of the cycle succeeded. */
    const char *store_failed;
    const char *store_error;
} csy_result_t;

typedef struct csy_client_t csy_client_t;

/** A client that keeps its connection between cycles (freed with p).
 * config must outlive the client.  APR_EINVAL if config->batch_size < 1,
 * or without a transport if config->timeout < 1. */
apr_status_t csy_client_create(csy_client_t **client, apr_pool_t *p,
                               const csy_config_t *config);

/**
 * Run one cycle.  failures (domain -> reason, may be empty, allocated
 * from a pool that outlives p) holds the domains that failed before;
 * they are retried, and res->failures is the updated set (same hash).
 * Returns APR_SUCCESS even when bundles failed; an error when the cycle
 * could not run (CertService unreachable, garbage answers, store errors):
 * then res->error says why and nothing that was served changed.
 */
apr_status_t csy_sync_once(csy_result_t *res, csy_client_t *client,
                           csy_store_t *store, apr_hash_t *failures,
                           apr_pool_t *p);

/**
 * POST /v1/pools/POOL/leases: a restart lease for ttl seconds (asking
 * again while holding one renews it).  APR_SUCCESS with *lease set;
 * APR_EAGAIN when every slot is taken (*retry_after seconds); an error
 * otherwise, with *err.
 */
apr_status_t csy_lease_acquire(const char **lease, long *retry_after,
                               csy_client_t *client, apr_pool_t *p, int ttl,
                               const char **err);

/** DELETE /v1/pools/POOL/leases/LEASE. */
apr_status_t csy_lease_release(csy_client_t *client, apr_pool_t *p,
                               const char *lease);

/**
 * key.seal for current versions without one that opens with this
 * daemon's sealing keys (installed by a mod_certsync from before key.seal,
 * or sealed with a wrapping key since removed): at most max written and
 * 20 * max checked per call, going on from *pos in the manifest; *done
 * once a call reached its end.  Returns how many it sealed.  Needs
 * cfg->seal_keys.
 */
int csy_seal_backfill(const csy_config_t *cfg, csy_store_t *store,
                      apr_pool_t *p, int *pos, int max, int *done);

/**
 * One request to CertService over the client's connection (on-demand's
 * POST /v1/on-demand): *json the parsed answer of a 2xx (may be NULL),
 * *status its HTTP status; an error with *err otherwise (a non-2xx
 * included).  The caller frees *json.
 */
apr_status_t csy_request_json(json_t **json, long *status,
                              csy_client_t *client, apr_pool_t *p,
                              const char *method, const char *path,
                              json_t *body, const char **err);

/** POST /v1/hosts/HOST/report: seq served, rollout state, failures. */
apr_status_t csy_report(csy_client_t *client, apr_pool_t *p, long long seq,
                        const char *state, apr_hash_t *failures);

#endif /* CSY_SYNC_H */
