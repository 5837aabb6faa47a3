/*
 * cs_store.h: CertService's storage through apr_dbd.
 *
 * Pure code: APR and APR-util only, no httpd types.  One SQL dialect for
 * the sqlite3 and mysql drivers (the DDL too).  The glue hands in a
 * connection it got from mod_dbd; unit tests open one with apr_dbd_open.
 *
 * Ordering: every write that changes what proxies serve appends one row to
 * the change feed with the next value of a counter row, inside the same
 * transaction, and the counter row stays locked until commit.  So sequence
 * numbers are committed in order: a reader that has seen seq N can never
 * later find a change below N appear (no gaps filled in behind a cursor),
 * with one CertService or several on one database, or on the nodes of a
 * Galera cluster: there the row is not locked across nodes, but every
 * writer writes it, so two nodes' writers conflict at certification and
 * the loser's transaction is run again from the start (cs_db_tx_run()).
 */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <apr_dbd.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "cs_log.h"

typedef struct {
    const apr_dbd_driver_t *driver;
    apr_dbd_t *handle;
    /* Prepared statements by label (cs_store_statements()); mod_dbd keeps
     * them per connection.  A label missing from the hash is prepared on
     * first use and added to it, allocated from the hash's own pool (for
     * mod_dbd's hash: the connection's pool).  NULL: a hash is made from
     * the pool of the first call, which must then live as long as the
     * handle. */
    apr_hash_t *prepared;
    /* Inside cs_db_tx_begin() .. cs_db_tx_end(): a statement whose
     * session was lost is not run again there. */
    int in_tx;
    /* The last failure's text (for cs_store_error()), kept here because
     * rolling back clears the driver's own message. */
    char error[256];
    /* The last failure was a deadlock or, on a Galera cluster, a
     * certification conflict: the transaction was rolled back and running
     * it again is the cure (cs_db_tx_run() does, a bounded number of
     * times). */
    int conflict;
    /* Transactions run again after a conflict, since the handle was set
     * up (a count for tests and benchmarks). */
    apr_uint64_t retries;
    /* Where the store logs such retries (NULL: nowhere); the messages
     * carry their own CSnnnnn tags. */
    cs_log_fn *log;
    void *log_baton;
} cs_db_t;

/** One SQL statement the store uses, for mod_dbd's ap_dbd_prepare(). */
typedef struct {
    const char *label;
    const char *sql;
} cs_statement_t;

/** The statements, ending with { NULL, NULL }. */
const cs_statement_t *cs_store_statements(void);

/** Create the tables if missing (idempotent, safe to race).  SQLite: also
 * switches the file to WAL, so the feed's readers never wait on writers. */
apr_status_t cs_store_schema(cs_db_t *db, apr_pool_t *p);

typedef struct {
    const char *domain;         /* normalised */
    apr_int64_t seq;            /* of the latest change */
    const char *state;          /* "active", "pending", "error" */
    const char *serial;         /* hex; NULL while pending */
    apr_int64_t not_before;     /* unix seconds; 0 while pending */
    apr_int64_t not_after;
    const char *key_type;       /* "ec-p256", "rsa-2048" */
    const char *chain_pem;      /* leaf first */
    const char *key_cms;        /* base64 DER CMS envelope */
    const char *last_error;     /* NULL if none */
    apr_int64_t updated;        /* unix seconds */
    int created;                /* set by cs_store_put_bundle: 1 if the
                                 * domain was unknown in its transaction
                                 * (201), 0 if it was known (200) */
} cs_bundle_t;

typedef struct {
    apr_int64_t seq;
    const char *domain;
    const char *op;             /* "upsert" or "delete" */
    const char *serial;         /* NULL for delete */
    apr_int64_t not_after;      /* 0 for delete */
} cs_change_t;

/**
 * Store a new certificate + key for a domain (issue, renewal or import)
 * and append an "upsert" change; all in one transaction.
 * b->seq is set to the change's sequence number, and b->created to
 * whether the domain was unknown: decided inside the transaction (under
 * the counter's lock), so of concurrent writers of one new name exactly
 * one sees it unknown.
 * actor: who did it (for the log line the glue writes; stored too).
 */
apr_status_t cs_store_put_bundle(cs_db_t *db, apr_pool_t *p, cs_bundle_t *b,
                                 const char *actor);

/** Record a domain's error (state "error", last_error) without a change.
 * An unknown domain is added without a certificate (key_cms NULL).  error
 * NULL clears it: state "active", or "pending" if no certificate. */
apr_status_t cs_store_set_error(cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *error);

/** Remove a domain and append a "delete" change (*seq).
 * APR_NOTFOUND if the domain is unknown. */
apr_status_t cs_store_delete(cs_db_t *db, apr_pool_t *p, const char *domain,
                             const char *actor, apr_int64_t *seq);

/** One domain, or APR_NOTFOUND. */
apr_status_t cs_store_get(cs_bundle_t **b, cs_db_t *db, apr_pool_t *p,
                          const char *domain);

/** Every domain (array of cs_bundle_t, without chain_pem/key_cms), ordered
 * by name, starting after `after` (NULL: from the start), at most limit. */
apr_status_t cs_store_list(apr_array_header_t **domains, cs_db_t *db,
                           apr_pool_t *p, const char *after, int limit);

/**
 * The change feed: changes with seq > since, in order, at most limit
 * (array of cs_change_t).  *next is the seq to pass as since next time
 * (the last returned, or since if none); *more says whether more follow.
 */
apr_status_t cs_store_changes(apr_array_header_t **changes,
                              apr_int64_t *next, int *more, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t since, int limit);

/**
 * Restart leases.  Atomically (one transaction, the pool's row locked):
 * drop expired leases of the pool; if fewer than max_unavailable remain,
 * grant one to host for ttl seconds (*lease_id, *expires set, *granted 1);
 * else *granted 0 and *retry_after the seconds until the first live lease
 * expires (at least 1).  now: unix seconds.  A host that already holds a
 * live lease of the pool gets that one back, renewed to now + ttl.
 */
apr_status_t cs_store_lease_acquire(const char **lease_id,
                                    apr_int64_t *expires, int *granted,
                                    apr_int64_t *retry_after, cs_db_t *db,
                                    apr_pool_t *p, const char *pool,
                                    const char *host, int ttl,
                                    int max_unavailable, apr_int64_t now);

/** Release a lease; APR_NOTFOUND if it is unknown or expired (by the
 * wall clock). */
apr_status_t cs_store_lease_release(cs_db_t *db, apr_pool_t *p,
                                    const char *pool, const char *lease_id);

/** Live leases of a pool (array of cs_lease_t). */
typedef struct {
    const char *id;
    const char *host;
    apr_int64_t expires;
} cs_lease_t;
apr_status_t cs_store_leases(apr_array_header_t **leases, cs_db_t *db,
                             apr_pool_t *p, const char *pool,
                             apr_int64_t now);

/**
 * A proxy's report: it now serves the feed up to seq, in rollout state
 * `state`; failed_json is a JSON object {"domain":"reason",...} of the
 * domains it skipped (may be "{}").
 */
apr_status_t cs_store_host_report(cs_db_t *db, apr_pool_t *p,
                                  const char *host, const char *pool,
                                  apr_int64_t seq, const char *state,
                                  const char *failed_json, apr_int64_t now);

typedef struct {
    const char *host;
    const char *pool;
    apr_int64_t seq;            /* what it reported */
    const char *state;
    const char *serial;         /* of this domain as of seq; NULL: none */
    const char *failed_json;
    apr_int64_t reported;
} cs_host_serving_t;

/**
 * Which hosts serve which serial of a domain: for every host that
 * reported, the serial of the domain's latest change at or below the
 * host's reported seq (array of cs_host_serving_t).
 */
apr_status_t cs_store_domain_hosts(apr_array_header_t **hosts, cs_db_t *db,
                                   apr_pool_t *p, const char *domain);

/* --- ACME: issuer queue, challenges, accounts, limiter --------------- */

/** A domain's row in the issuer queue, which is also its renewal
 * schedule: a worker takes it up when next_at has come. */
typedef struct {
    const char *domain;
    const char *key_type;
    const char *state;          /* "queued", "valid", "failed" */
    int attempts;               /* failures since the last success */
    apr_int64_t next_at;        /* unix seconds: due then */
    const char *owner;          /* worker holding it; NULL: none */
    apr_int64_t lease_until;    /* the owner's claim ends */
    const char *last_error;
    apr_int64_t renew_at;       /* of the current certificate; 0: none */
    apr_int64_t updated;
    const char *profile;        /* ACME profile chosen for the domain;
                                 * NULL: the pool's (CertServiceACMEProfile) */
} cs_job_t;

/** Queue an order for domain now (a new row, or the existing one reset:
 * attempts 0, state "queued", key_type and profile as given; profile
 * NULL: none of its own). */
apr_status_t cs_store_job_enqueue(cs_db_t *db, apr_pool_t *p,
                                  const char *domain, const char *key_type,
                                  const char *profile, apr_int64_t now);
/** One job, or APR_NOTFOUND. */
apr_status_t cs_store_job_get(cs_job_t **job, cs_db_t *db, apr_pool_t *p,
                              const char *domain);
/** Domains due at now and not claimed, earliest first, at most limit
 * (array of const char *). */
apr_status_t cs_store_job_due(apr_array_header_t **domains, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t now, int limit);
/** Claim a due job for lease seconds, atomically across instances;
 * *claimed 0 if it was not due or another worker had it. */
apr_status_t cs_store_job_claim(int *claimed, cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *owner,
                                apr_int64_t now, int lease);
/** Store the outcome (state, attempts, next_at, last_error, renew_at of
 * job) and release the claim of owner. */
apr_status_t cs_store_job_finish(cs_db_t *db, apr_pool_t *p,
                                 const cs_job_t *job, const char *owner);
apr_status_t cs_store_job_delete(cs_db_t *db, apr_pool_t *p,
                                 const char *domain);
apr_status_t cs_store_job_count(apr_int64_t *count, cs_db_t *db,
                                apr_pool_t *p, const char *state);

/** http-01 key authorizations in progress, for any instance to answer. */
apr_status_t cs_store_challenge_put(cs_db_t *db, apr_pool_t *p,
                                    const char *token, const char *domain,
                                    const char *keyauth,
                                    apr_int64_t expires);
/** APR_NOTFOUND unless token is in progress (not expired at now). */
apr_status_t cs_store_challenge_get(const char **keyauth, cs_db_t *db,
                                    apr_pool_t *p, const char *token,
                                    apr_int64_t now);
apr_status_t cs_store_challenge_delete(cs_db_t *db, apr_pool_t *p,
                                       const char *token);

/** A tls-alpn-01 challenge certificate in progress for domain, for any
 * instance to hand to the proxies: the certificate (PEM) and its key
 * sealed to the wrapping certificates (base64 CMS, like a bundle's).
 * One per domain: put replaces the domain's earlier one. */
typedef struct {
    const char *domain;
    const char *cert_pem;
    const char *key_cms;
    apr_int64_t expires;        /* unix seconds */
} cs_tlsalpn_t;
apr_status_t cs_store_tlsalpn_put(cs_db_t *db, apr_pool_t *p,
                                  const cs_tlsalpn_t *t);
/** APR_NOTFOUND unless domain has one in progress (not expired at now). */
apr_status_t cs_store_tlsalpn_get(cs_tlsalpn_t **t, cs_db_t *db,
                                  apr_pool_t *p, const char *domain,
                                  apr_int64_t now);
/** Remove domain's (and every expired one). */
apr_status_t cs_store_tlsalpn_delete(cs_db_t *db, apr_pool_t *p,
                                     const char *domain);

/** The ACME account of a directory: its URL and its key, sealed (base64
 * CMS); APR_NOTFOUND if none yet. */
apr_status_t cs_store_account_get(const char **kid, const char **key_cms,
                                  cs_db_t *db, apr_pool_t *p,
                                  const char *directory);
/** insert: a new row (fails if another instance inserted first: read it
 * again), else update the row. */
apr_status_t cs_store_account_put(cs_db_t *db, apr_pool_t *p,
                                  const char *directory, const char *kid,
                                  const char *key_cms, int insert);

/**
 * The cluster-wide order limiter `name` (one row, locked while deciding):
 * at most limit orders per window seconds (cs_sched_rate_take()).
 * pause_until > 0 instead records that the CA asked everyone to wait
 * until then (429 Retry-After); *granted stays 0.
 */
apr_status_t cs_store_rate_take(int *granted, apr_int64_t *retry_after,
                                cs_db_t *db, apr_pool_t *p,
                                const char *name, apr_int64_t now,
                                apr_int64_t window, int limit,
                                apr_int64_t pause_until);

/* --- ACME: several CAs: health, the job's CA, budgets ---------------- */

/** A CA's health as the instances saw it last (one row per CA name). */
typedef struct {
    const char *name;
    const char *url;
    const char *state;          /* "up", "down" */
    int failures;               /* consecutive failures */
    const char *last_error;
    apr_int64_t next_retry;     /* down: not asked again before */
    apr_int64_t last_ok;        /* last success; 0: none */
    apr_int64_t updated;
} cs_ca_health_t;

/** One CA's row; APR_NOTFOUND if none yet. */
apr_status_t cs_store_ca_get(cs_ca_health_t **h, cs_db_t *db, apr_pool_t *p,
                             const char *name);
/** Write h (a new row or the existing one). */
apr_status_t cs_store_ca_put(cs_db_t *db, apr_pool_t *p,
                             const cs_ca_health_t *h);
/** Every CA's row, by name (array of cs_ca_health_t). */
apr_status_t cs_store_ca_list(apr_array_header_t **cas, cs_db_t *db,
                              apr_pool_t *p);

/** A job's CA columns. */
typedef struct {
    const char *ca;             /* issued the current certificate; NULL */
    const char *ca_refused;     /* CAs that refused the domain, space
                                 * separated; NULL: none */
    apr_int64_t prio;           /* its deadline (cs_sched_deadline()) */
    int has_prio;               /* 0: none yet (a new job) */
} cs_job_ca_t;

apr_status_t cs_store_job_ca_get(cs_job_ca_t *jc, cs_db_t *db,
                                 apr_pool_t *p, const char *domain);
apr_status_t cs_store_job_ca_set(cs_db_t *db, apr_pool_t *p,
                                 const char *domain, const cs_job_ca_t *jc);
/** Like cs_store_job_due(), earliest deadline first (the scheduler's
 * order: cs_sched.h). */
apr_status_t cs_store_job_due_prio(apr_array_header_t **domains,
                                   cs_db_t *db, apr_pool_t *p,
                                   apr_int64_t now, int limit);

/** One budget of an order: a limiter row (cs_store_rate_take()). */
typedef struct {
    const char *name;           /* the row: at most 32 bytes */
    apr_int64_t window;         /* seconds */
    int limit;                  /* per window; 0: none (only a pause of
                                 * the row counts) */
} cs_budget_t;

/**
 * Take one order from every budget of b[0 .. n-1] at now, or from none:
 * in one transaction, the rows locked in the order given (every caller
 * gives them in the same order).  *granted 0: *which is the index of the
 * first budget that said no and *retry_after its wait (seconds).
 */
apr_status_t cs_store_budget_take(int *granted, apr_int64_t *retry_after,
                                  int *which, cs_db_t *db, apr_pool_t *p,
                                  const cs_budget_t *b, int n,
                                  apr_int64_t now);

/** A limiter row, for the admin API. */
typedef struct {
    const char *name;
    apr_int64_t window_start;
    apr_int64_t count;
    apr_int64_t paused_until;
} cs_rate_row_t;

/** Every limiter row, by name (array of cs_rate_row_t). */
apr_status_t cs_store_rate_list(apr_array_header_t **rows, cs_db_t *db,
                                apr_pool_t *p);

/** A short text for the last failure on db (from p).  The calls return
 * APR_EGENERAL when the database failed, APR_EAGAIN when it stayed locked
 * or found a deadlock (worth a retry), APR_EINVAL for a value the schema
 * cannot hold, APR_NOTFOUND where said. */
const char *cs_store_error(cs_db_t *db, apr_pool_t *p, int rv);

/* --- The pool's TLS session ticket keys (cs_store_tkeys.c) ------------ */

/* One key as stored and published: its name (hex), its schedule (unix
 * seconds, cs_tkey.h), its secret sealed to the wrapping certificates
 * (base64 DER CMS, as a bundle's key_cms). */
typedef struct {
    apr_int64_t issue_from;
    apr_int64_t issue_until;
    apr_int64_t accept_until;
    const char *name;
    const char *key_cms;
} cs_tkey_row_t;

/** Keys still accepted at now (array of cs_tkey_row_t), by issue_from. */
apr_status_t cs_store_tkeys(apr_array_header_t **keys, cs_db_t *db,
                            apr_pool_t *p, apr_int64_t now);

/**
 * The keys proxies need at now: that of the period issuing now and of the
 * next one (made, sealed to recipients and stored when missing; another
 * instance's that won a race is kept), and the older ones still accepted
 * (keys no longer accepted are deleted).  *keys: cs_tkey_row_t, by
 * issue_from.  rotate, accept: seconds (cs_tkey.h).  On failure *err.
 */
apr_status_t cs_tkeys_current(apr_array_header_t **keys, int *made,
                              cs_db_t *db, apr_pool_t *p,
                              const apr_array_header_t *recipients,
                              apr_int64_t rotate, apr_int64_t accept,
                              apr_int64_t now, const char **err);

#endif /* CS_STORE_H */
