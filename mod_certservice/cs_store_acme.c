/*
 * cs_store_acme.c: the ACME issuer's shared state, for every instance on
 * the database: the queue of orders (also the renewal schedule), http-01
 * challenges in progress, accounts, and the order limiter.
 *
 * A claim is one UPDATE whose WHERE re-checks that the job is due and
 * unclaimed, so two workers (of any instance) never both get it.  A
 * limiter's row is its lock, like a pool's for leases.
 */
#include <apr_dbd.h>
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_sched.h"
#include "cs_store.h"

apr_status_t cs_store_job_enqueue(cs_db_t *db, apr_pool_t *p,
                                  const char *domain, const char *key_type,
                                  const char *profile, apr_int64_t now)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_check_len(db, "key_type", key_type, CS_MAX_WORD,
                                     1))
        || (status = cs_db_check_len(db, "profile", profile, CS_MAX_PROFILE,
                                     0))
        || (status = cs_db_row(&row, db, p, CS_STMT_JOB_GET, domain))) {
        return status;
    }
    if (!row) {
        if (cs_db_exec(NULL, db, p, CS_STMT_JOB_INSERT, domain, key_type,
                       profile, &now, &now) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* A racing PUT of the same domain inserted first. */
        cs_db_forget(db);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_JOB_REQUEUE, key_type, profile,
                      &now, &now, domain);
}

apr_status_t cs_store_job_get(cs_job_t **job, cs_db_t *db, apr_pool_t *p,
                              const char *domain)
{
    cs_db_row_t r;
    apr_status_t status;
    cs_job_t *j;

    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_row(&r, db, p, CS_STMT_JOB_GET, domain))) {
        return status;
    }
    if (!r) {
        return cs_db_fail(db, APR_NOTFOUND, "no ACME job for %s", domain);
    }
    j = apr_pcalloc(p, sizeof(*j));
    j->domain = r[0];
    j->key_type = r[1];
    j->state = r[2];
    j->attempts = (int)cs_db_int(r[3]);
    j->next_at = cs_db_int(r[4]);
    j->owner = r[5];
    j->lease_until = cs_db_int(r[6]);
    j->last_error = r[7];
    j->renew_at = cs_db_int(r[8]);
    j->updated = cs_db_int(r[9]);
    j->profile = r[10];
    *job = j;
    return APR_SUCCESS;
}

static void domain_from_row(void *item, cs_db_row_t r)
{
    *(const char **)item = r[0];
}

apr_status_t cs_store_job_due(apr_array_header_t **domains, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t now, int limit)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_rows(domains, db, p, sizeof(const char *), domain_from_row,
                      CS_STMT_JOB_DUE, &now, &now, &limit);
}

apr_status_t cs_store_job_claim(int *claimed, cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *owner,
                                apr_int64_t now, int lease)
{
    apr_status_t status;
    apr_int64_t until = now + lease;
    int nrows = 0;

    *claimed = 0;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "owner", owner, CS_MAX_TOKEN, 1))
        || (status = cs_db_exec(&nrows, db, p, CS_STMT_JOB_CLAIM, owner,
                                &until, domain, &now, &now))) {
        return status;
    }
    *claimed = nrows == 1;
    return APR_SUCCESS;
}

apr_status_t cs_store_job_finish(cs_db_t *db, apr_pool_t *p,
                                 const cs_job_t *job, const char *owner)
{
    apr_status_t status;
    apr_int64_t attempts = job->attempts, now = cs_db_now();

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_JOB_FINISH, job->state, &attempts,
                      &job->next_at, cs_db_cut(p, job->last_error,
                                               CS_MAX_ERROR),
                      &job->renew_at, &now, job->domain, owner);
}

apr_status_t cs_store_job_delete(cs_db_t *db, apr_pool_t *p,
                                 const char *domain)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_JOB_DELETE, domain);
}

apr_status_t cs_store_job_count(apr_int64_t *count, cs_db_t *db,
                                apr_pool_t *p, const char *state)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_row(&row, db, p, CS_STMT_JOB_COUNT, state))) {
        return status;
    }
    *count = row ? cs_db_int(row[0]) : 0;
    return APR_SUCCESS;
}

apr_status_t cs_store_challenge_put(cs_db_t *db, apr_pool_t *p,
                                    const char *token, const char *domain,
                                    const char *keyauth, apr_int64_t expires)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "token", token, CS_MAX_CHTOKEN, 1))
        || (status = cs_db_check_len(db, "keyauth", keyauth, CS_MAX_VARCHAR,
                                     1))) {
        return status;
    }
    /* Drops this token if a retried order left it, and stale ones. */
    if ((status = cs_db_exec(NULL, db, p, CS_STMT_CHAL_DELETE, token,
                             &now))) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_CHAL_INSERT, token, domain,
                      keyauth, &expires);
}

apr_status_t cs_store_challenge_get(const char **keyauth, cs_db_t *db,
                                    apr_pool_t *p, const char *token,
                                    apr_int64_t now)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "token", token, CS_MAX_CHTOKEN, 1))
        || (status = cs_db_row(&row, db, p, CS_STMT_CHAL_GET, token,
                               &now))) {
        return status;
    }
    if (!row || !row[0]) {
        return cs_db_fail(db, APR_NOTFOUND, "no challenge in progress");
    }
    *keyauth = row[0];
    return APR_SUCCESS;
}

apr_status_t cs_store_challenge_delete(cs_db_t *db, apr_pool_t *p,
                                       const char *token)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_CHAL_DELETE, token, &now);
}

apr_status_t cs_store_account_get(const char **kid, const char **key_cms,
                                  cs_db_t *db, apr_pool_t *p,
                                  const char *directory)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "directory", directory,
                                     CS_MAX_VARCHAR, 1))
        || (status = cs_db_row(&row, db, p, CS_STMT_ACCT_GET, directory))) {
        return status;
    }
    if (!row) {
        return cs_db_fail(db, APR_NOTFOUND, "no ACME account for %s",
                          directory);
    }
    *kid = row[0];
    *key_cms = row[1];
    return APR_SUCCESS;
}

apr_status_t cs_store_account_put(cs_db_t *db, apr_pool_t *p,
                                  const char *directory, const char *kid,
                                  const char *key_cms, int insert)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "directory", directory,
                                     CS_MAX_VARCHAR, 1))
        || (status = cs_db_check_len(db, "kid", kid, CS_MAX_VARCHAR, 0))
        || (status = cs_db_check_len(db, "key_cms", key_cms, CS_MAX_TEXT,
                                     1))) {
        return status;
    }
    if (insert) {
        return cs_db_exec(NULL, db, p, CS_STMT_ACCT_INSERT, directory, kid,
                          key_cms, &now);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_ACCT_UPDATE, kid, key_cms, &now,
                      directory);
}

/* Inside the transaction, the limiter's row locked: reads it, decides
 * (cs_sched_rate_take(), or records the CA's pause) and writes it back. */
static apr_status_t rate_decide(int *granted, apr_int64_t *retry_after,
                                cs_db_t *db, apr_pool_t *p,
                                const char *name, apr_int64_t now,
                                apr_int64_t window, int limit,
                                apr_int64_t pause_until)
{
    cs_db_row_t row;
    apr_status_t status;
    cs_rate_t r;

    if ((status = cs_db_exec(NULL, db, p, CS_STMT_LIM_LOCK, name))
        || (status = cs_db_row(&row, db, p, CS_STMT_LIM_GET, name))) {
        return status;
    }
    if (!row) {
        return cs_db_fail(db, APR_EGENERAL, "limiter %s has no row", name);
    }
    r.window_start = cs_db_int(row[0]);
    r.count = cs_db_int(row[1]);
    r.paused_until = cs_db_int(row[2]);
    if (pause_until > 0) {
        /* The CA said wait: everyone waits (never shortened). */
        if (pause_until > r.paused_until) {
            r.paused_until = pause_until;
        }
    }
    else if (limit > 0) {
        cs_sched_rate_take(&r, granted, retry_after, now, window, limit);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_LIM_SET, &r.window_start,
                      &r.count, &r.paused_until, name);
}

apr_status_t cs_store_rate_take(int *granted, apr_int64_t *retry_after,
                                cs_db_t *db, apr_pool_t *p,
                                const char *name, apr_int64_t now,
                                apr_int64_t window, int limit,
                                apr_int64_t pause_until)
{
    apr_dbd_transaction_t *t;
    apr_status_t status;

    *granted = 0;
    *retry_after = 1;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "limiter", name, CS_MAX_NAME, 1))
        || (status = cs_db_ensure_row(db, p, CS_STMT_LIM_GET,
                                      CS_STMT_LIM_INSERT, name))
        || (status = cs_db_tx_begin(&t, db, p))) {
        return status;
    }
    status = rate_decide(granted, retry_after, db, p, name, now, window,
                         limit, pause_until);
    if ((status = cs_db_tx_end(t, db, p, status)) != APR_SUCCESS) {
        *granted = 0;
    }
    return status;
}

/* ------------------------------------------------------------------ */
/* tls-alpn-01 challenge certificates                                  */
/* ------------------------------------------------------------------ */

apr_status_t cs_store_tlsalpn_put(cs_db_t *db, apr_pool_t *p,
                                  const cs_tlsalpn_t *t)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();

    if ((status = cs_db_enter_domain(db, p, t->domain))
        || (status = cs_db_check_len(db, "cert_pem", t->cert_pem,
                                     CS_MAX_TEXT, 1))
        || (status = cs_db_check_len(db, "key_cms", t->key_cms,
                                     CS_MAX_TEXT, 1))) {
        return status;
    }
    /* The domain's earlier one (a retried order), and stale ones. */
    if ((status = cs_db_exec(NULL, db, p, CS_STMT_ALPN_DELETE, t->domain,
                             &now))) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_ALPN_INSERT, t->domain,
                      t->cert_pem, t->key_cms, &t->expires);
}

apr_status_t cs_store_tlsalpn_get(cs_tlsalpn_t **t, cs_db_t *db,
                                  apr_pool_t *p, const char *domain,
                                  apr_int64_t now)
{
    cs_db_row_t row;
    cs_tlsalpn_t *out;
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_row(&row, db, p, CS_STMT_ALPN_GET, domain,
                               &now))) {
        return status;
    }
    if (!row || !row[0] || !row[1]) {
        return cs_db_fail(db, APR_NOTFOUND, "no tls-alpn-01 challenge in "
                          "progress");
    }
    out = apr_pcalloc(p, sizeof(*out));
    out->domain = apr_pstrdup(p, domain);
    out->cert_pem = row[0];
    out->key_cms = row[1];
    out->expires = cs_db_int(row[2]);
    *t = out;
    return APR_SUCCESS;
}

apr_status_t cs_store_tlsalpn_delete(cs_db_t *db, apr_pool_t *p,
                                     const char *domain)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();

    if ((status = cs_db_enter_domain(db, p, domain)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_ALPN_DELETE, domain, &now);
}
