/*
 * cs_acme_drive.h: CertService's ACME job: one claimed domain of the
 * issuer queue taken from "due" to its outcome: renewal time (ARI or the
 * lifetime fraction), the cluster-wide order limiter, the account
 * (bootstrap, re-registration, key rollover by another instance), the
 * reachability pre-check, the order, storing the bundle, and the backoff
 * after a failure.
 *
 * Pure code: APR, OpenSSL, jansson and the store; no httpd types.  The
 * glue (mod_certservice_acme.c) owns the thread, the database connection
 * and the log; the ACME client comes from the caller through an ops table
 * (cs_acme_client_ops: lib/cs_acme.c).  t/unit/test_cs_acme_drive.c keeps
 * those production ops and gives the real client a fake transport
 * (lib/cs_http.h, t/unit/fake_http.h) behind which a scripted CA answers.
 *
 * One drive belongs to one worker thread.  Log lines start with their
 * "CSnnnnn: " tag (the tags are in cs_acme_drive.c).
 */
#ifndef CS_ACME_DRIVE_H
#define CS_ACME_DRIVE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_acme.h"
#include "cs_dns.h"
#include "cs_log.h"
#include "cs_store.h"

/* A worker's hold on a job: longer than one order can take (two polls of
 * up to 180 s each, a few requests of up to 30 s), so that no other worker
 * or instance orders the same domain meanwhile. */
#define CS_ACME_CLAIM           900
/* How long an http-01 key authorization stays answerable. */
#define CS_ACME_CHALLENGE_TTL   600
/* How long a tls-alpn-01 challenge certificate is valid (seconds; it
 * is answerable CS_ACME_CHALLENGE_TTL). */
#define CS_ACME_TLSALPN_LIFE    86400
/* Ask renewalInfo again after this when the CA gave no Retry-After. */
#define CS_ACME_ARI_RECHECK     21600

/** The ACME client as the drive uses it (see lib/cs_acme.h for each). */
typedef struct {
    apr_status_t (*directory)(void *client, const char **err);
    int (*has_ari)(void *client);
    apr_status_t (*account)(const char **kid, void *client, EVP_PKEY *key,
                            const apr_array_header_t *contact,
                            const char **err);
    apr_status_t (*issue)(apr_array_header_t **chain, apr_pool_t *p,
                          void *client, EVP_PKEY *key, const char *domain,
                          const cs_acme_order_t *o, const char **err);
    apr_status_t (*profile_check)(void *client, const char *profile,
                                  const char **err);
    apr_status_t (*renewal_info)(apr_int64_t *start, apr_int64_t *end,
                                 apr_int64_t *retry_after, void *client,
                                 apr_pool_t *p, X509 *cert,
                                 const char **err);
    apr_status_t (*precheck)(void *client, apr_pool_t *p,
                             const char *domain, int port,
                             const char *dns_server, const char *token,
                             const char *expect, const char **err);
    apr_int64_t (*retry_after)(void *client);
} cs_acme_ops_t;

/** The ops over lib/cs_acme.c; the client is a cs_acme_t *. */
extern const cs_acme_ops_t cs_acme_client_ops;

/** What the job does, every value effective (the glue applied the
 * defaults of the directives). */
typedef struct {
    const char *directory_url;
    const apr_array_header_t *contact;      /* const char *; or NULL */
    X509 *seal_cert;                        /* seals the account key */
    EVP_PKEY *seal_key;
    const apr_array_header_t *wrap_certs;   /* X509 *: key recipients */
    int limit;                  /* orders per window, cluster-wide */
    apr_int64_t window;         /* seconds */
    apr_int64_t backoff;        /* first retry delay, seconds */
    apr_int64_t backoff_cap;
    int renew_pm;               /* renewal point, per mille of lifetime */
    int jitter_pm;              /* up to this much earlier */
    int ari;                    /* ask renewalInfo when the CA has it */
    int precheck_port;          /* <= 0: no pre-check */
    const char *precheck_dns;   /* NULL: the system's resolver */
    const char *profile;        /* ACME profile of a domain that names
                                 * none; NULL: the CA's default */
    /* dns-01 (CertServiceDNSUpdate, CertServiceDNSHook); NULL: none. */
    const cs_dns_conf_t *dns;
    int dns_all;                /* dns-01 for every domain, not only
                                 * wildcards (CertServiceDNSChallenge) */
    /* Orders across every CA and account, fleet-wide; 0: no such
     * budget. */
    int global_limit;
    apr_int64_t global_window;
} cs_acme_policy_t;

/* How many CAs and accounts per CA a drive takes at most. */
#define CS_ACME_MAX_CAS         8
#define CS_ACME_MAX_ACCOUNTS    16

/** One CA of the issuer; a drive tries them in the order added
 * (failover: cs_acme_drive_job()). */
typedef struct {
    const char *name;           /* 1 to 16 of a-z 0-9 - (its rows) */
    const char *directory_url;
    const char *profile;        /* NULL: the policy's */
    int limit;                  /* new orders per account per window;
                                 * 0: the policy's limit and window */
    apr_int64_t window;
    int domain_limit;           /* certificates per registered domain per
                                 * domain_window at this CA; 0: none */
    apr_int64_t domain_window;
} cs_acme_ca_t;

/** Whether name can name a CA (1 to 16 of a-z 0-9 -). */
int cs_acme_ca_name_ok(const char *name);

/** The row of the order budget of account n (0 ...) of the CA at place
 * ca (0: the first) named name: "orders" for the first CA's first
 * account, else "orders:NAME:N" (N from 1); the metrics read it too. */
const char *cs_acme_budget_row(apr_pool_t *p, int ca, const char *name,
                               int n);

typedef struct cs_acme_drive_t cs_acme_drive_t;

/**
 * A drive for one worker; everything it keeps (the account key) lives in
 * subpools of p.  owner names the worker in job claims.  log may be NULL.
 * The client is set with cs_acme_drive_set_client() (a real client needs
 * the drive as the baton of its http-01 callback first).
 */
apr_status_t cs_acme_drive_create(cs_acme_drive_t **d, apr_pool_t *p,
                                  const cs_acme_policy_t *policy,
                                  const char *owner, cs_log_fn *log,
                                  void *log_baton);
void cs_acme_drive_set_client(cs_acme_drive_t *d, const cs_acme_ops_t *ops,
                              void *client);
/**
 * Add a CA (copied; its strings must live as long as the drive): the
 * first one added is the preferred.  Returns its index, or -1 when there
 * are CS_ACME_MAX_CAS already.  A drive that was given no CA when its
 * first client is set (cs_acme_drive_set_client()) gets one from the
 * policy, named "default".
 */
int cs_acme_drive_add_ca(cs_acme_drive_t *d, const cs_acme_ca_t *ca);
/**
 * Add an account to CA number ca: ops and client speak to that CA
 * (a client per account: it holds the account's key).  The first account
 * of a CA keeps its key in the row of the directory URL, the n-th in
 * "URL#n"; the first account of the first CA counts its orders in the
 * limiter row "orders", the others in "orders:CA:n".  APR_EINVAL for a
 * CA that does not exist or a full one.
 */
apr_status_t cs_acme_drive_add_account(cs_acme_drive_t *d, int ca,
                                       const cs_acme_ops_t *ops,
                                       void *client);
/** The clock (unix seconds); NULL: the real one.  For tests. */
void cs_acme_drive_set_clock(cs_acme_drive_t *d,
                             apr_int64_t (*now)(void *baton), void *baton);

/** The challenge responder (cs_acme_challenge_fn) with the drive as
 * baton.  http-01: the key authorization goes into the store, for any
 * instance to answer through the proxies' relay.  tls-alpn-01: a
 * challenge certificate (cs_tlsalpn_cert_make) with a fresh key sealed
 * to policy.wrap_certs goes into the store (cs_store_tlsalpn_put), for
 * the proxies to fetch (GET /v1/acme-tls/DOMAIN).  dns-01 (with
 * policy.dns): the TXT record through lib/cs_dns.c, published on every
 * authoritative server before the CA is told.  Other types:
 * APR_ENOTIMPL. */
apr_status_t cs_acme_drive_challenge(void *baton,
                                     const cs_acme_challenge_t *ch,
                                     int setup);

/**
 * The next due job, claimed for this worker for CS_ACME_CLAIM seconds;
 * *domain NULL when none is due (or all were claimed by others).
 */
apr_status_t cs_acme_drive_claim(const char **domain, cs_acme_drive_t *d,
                                 cs_db_t *db, apr_pool_t *p);

typedef enum {
    CS_ACME_JOB_NONE,           /* no such job, or the store failed */
    CS_ACME_JOB_DELETED,        /* the domain is gone: job removed */
    CS_ACME_JOB_NOT_DUE,        /* renewal later: job->renew_at */
    CS_ACME_JOB_LIMITED,        /* the order limiter said wait */
    CS_ACME_JOB_ISSUED,         /* a first certificate stored */
    CS_ACME_JOB_RENEWED,
    CS_ACME_JOB_DROPPED,        /* deleted while its order ran */
    CS_ACME_JOB_FAILED          /* job->last_error; retry in delay */
} cs_acme_result_t;

typedef struct {
    cs_acme_result_t result;
    const cs_job_t *job;        /* the queue row as recorded, or NULL */
    const cs_bundle_t *bundle;  /* ISSUED, RENEWED, DROPPED */
    const char *how;            /* renewal time: "lifetime", "ARI window" */
    apr_int64_t delay;          /* FAILED, LIMITED: seconds until retry */
    const char *new_account;    /* an account made by this job: its URL */
    const char *ca;             /* the CA that issued; NULL */
    const char *moved_from;     /* ISSUED, RENEWED: the CA that issued the
                                 * previous certificate, when another */
} cs_acme_outcome_t;

/**
 * Work on the claimed job of domain (everything from p) and record its
 * outcome in the queue, releasing the claim.
 *
 * Several CAs: the job tries them in the order added, the CAs that
 * refused the domain before last, and skips a CA marked down until its
 * next retry.  It moves on to the next CA when a CA is down (unreachable,
 * HTTP 5xx: marked down, retried after the backoff), refuses the order
 * (rateLimited, caa, rejectedIdentifier: the latter two remembered for
 * the domain) or has no budget left for it; any other failure is the
 * domain's (an invalid challenge fails at every CA).  The job records
 * the CA that issued the certificate: ARI is asked of it, and a renewal
 * at it names the certificate it replaces.  The health of every CA is in
 * the database (cs_store_ca_list()).  The outcome says what
 * happened, for the glue's log lines; APR_SUCCESS unless the outcome could
 * not be recorded.
 */
apr_status_t cs_acme_drive_job(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                               cs_db_t *db, apr_pool_t *p,
                               const char *domain);

/** Seconds before the next attempt after attempts failures: the backoff,
 * doubling up to the cap, and never sooner than the CA's Retry-After. */
apr_int64_t cs_acme_retry_delay(const cs_acme_policy_t *policy,
                                int attempts, apr_int64_t retry_after);

#endif /* CS_ACME_DRIVE_H */
