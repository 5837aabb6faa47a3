/*
 * cs_acme_drive_private.h: the drive's state (cs_acme_drive.h), shared by
 * its files: cs_acme_drive.c (the job, the CAs, the accounts) and
 * cs_acme_challenge.c (the challenge responders).  Pure code.
 */
#ifndef CS_ACME_DRIVE_PRIVATE_H
#define CS_ACME_DRIVE_PRIVATE_H

#include "cs_acme_drive.h"

/* One account at one CA: its client, its rows in the database, and
 * whether it is registered since the last failure (the key in use and
 * the sealed form it came from, both in key_pool, under the drive's
 * pool). */
typedef struct {
    const cs_acme_ops_t *ops;
    void *client;
    const char *key;            /* its cs_acme_accounts row */
    const char *limiter;        /* its new-order budget's row */
    int account_ok;
    apr_pool_t *key_pool;
    const char *account_cms;
} drive_acct_t;

typedef struct {
    cs_acme_ca_t conf;
    int index;
    apr_array_header_t *accts;  /* drive_acct_t * */
    int next_acct;              /* the next order's first try */
} drive_ca_t;

struct cs_acme_drive_t {
    apr_pool_t *pool;           /* the worker's */
    cs_acme_policy_t policy;
    const char *owner;
    const cs_acme_ops_t *ops;
    void *client;
    cs_log_fn *log;
    void *log_baton;
    apr_int64_t (*now)(void *baton);
    void *now_baton;
    /* The CAs in order (drive_ca_t), each with its accounts; the account
     * in use (d->ops and d->client are its). */
    apr_array_header_t *cas;
    drive_acct_t *acct;
    /* During a job, for the challenge responder. */
    cs_db_t *db;
    apr_pool_t *jp;
    const char *dns_err;        /* why dns-01 could not be published */
};

/* The drive's log line (at most 1023 bytes) through its callback. */
void cs_drive_log(cs_acme_drive_t *d, cs_log_level_t level, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));

/* The drive's clock: unix seconds. */
apr_int64_t cs_drive_now(cs_acme_drive_t *d);

/* cs_acme_cas.c: the several CAs. */
/* What a failed attempt at one CA means for the job. */
typedef enum {
    FAIL_DOMAIN,                /* the domain's: another CA fails too */
    FAIL_DOWN,                  /* the CA is down: mark it, next CA */
    FAIL_LIMITED,               /* the CA said rateLimited: next CA */
    FAIL_REFUSED,               /* caa, rejectedIdentifier: next CA, and
                                 * this CA goes last for the domain */
    FAIL_UNUSABLE               /* not for us (EAB missing, no such
                                 * profile): next CA */
} fail_kind_t;

fail_kind_t cs_drive_fail_kind(apr_status_t rv, const char *err);
drive_ca_t *cs_drive_ca_at(cs_acme_drive_t *d, int i);
drive_ca_t *cs_drive_ca_by_name(cs_acme_drive_t *d, const char *name);
int cs_drive_in_list(const char *list, const char *name);
cs_ca_health_t *cs_drive_health_of(const apr_array_header_t *hl,
                                   const char *name);
/* Count an order tried at c (metrics): "valid", or the failure's kind
 * (cs_drive_fail_result()); a failure to count is logged, never
 * returned. */
const char *cs_drive_fail_result(fail_kind_t kind);
void cs_drive_count_order(cs_acme_drive_t *d, drive_ca_t *c,
                          const char *result);
void cs_drive_health_record(cs_acme_drive_t *d, drive_ca_t *c,
                            const cs_ca_health_t *h, apr_int64_t now,
                            int ok, int down, const char *err);
const char *cs_drive_domain_budget_row(cs_acme_drive_t *d, drive_ca_t *c,
                                       const char *domain);
apr_status_t cs_drive_take_budget(int *granted, apr_int64_t *ra, int *which,
                                  cs_acme_drive_t *d, drive_ca_t *c,
                                  drive_acct_t *a, const char *domain,
                                  int ari, apr_int64_t now);
apr_array_header_t *cs_drive_ca_order(cs_acme_drive_t *d, const char *refused);

#endif /* CS_ACME_DRIVE_PRIVATE_H */
