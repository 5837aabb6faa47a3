/*
 * cs_store_acme.c: the ACME issuer's shared state, for every instance on
 * the database: the queue of orders (also the renewal schedule), http-01
 * challenges in progress, accounts, and the order limiter.
 *
 * A claim is one UPDATE whose WHERE re-checks that the job is due and
 * unclaimed, so two workers (of any instance) never both get it.  A
 * limiter's row is its lock, like a pool's for leases.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_sched.h"
#include "cs_store.h"

/* A job queued (again) goes by the time it was: its deadline
 * (cs_sched_deadline()). */
static apr_status_t job_prio_now(cs_db_t *db, apr_pool_t *p,
                                 const char *domain, apr_int64_t now)
{
    return cs_db_exec(NULL, db, p, CS_STMT_JOB_PRIO_SET, &now, domain);
}

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
                       profile, &now, &now, &now) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* A racing PUT of the same domain inserted first. */
        cs_db_forget(db);
    }
    if ((status = cs_db_exec(NULL, db, p, CS_STMT_JOB_REQUEUE, key_type,
                             profile, &now, &now, domain))) {
        return status;
    }
    return job_prio_now(db, p, domain, now);
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

/* cs_store_rate_take()'s transaction (cs_db_tx_run()). */
typedef struct {
    const char *name;
    apr_int64_t now, window, pause_until, retry_after;
    int limit, granted;
} rate_tx_t;

static apr_status_t rate_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    rate_tx_t *x = baton;

    x->granted = 0;
    x->retry_after = 1;
    return rate_decide(&x->granted, &x->retry_after, db, p, x->name, x->now,
                       x->window, x->limit, x->pause_until);
}

apr_status_t cs_store_rate_take(int *granted, apr_int64_t *retry_after,
                                cs_db_t *db, apr_pool_t *p,
                                const char *name, apr_int64_t now,
                                apr_int64_t window, int limit,
                                apr_int64_t pause_until)
{
    apr_status_t status;
    rate_tx_t x;

    *granted = 0;
    *retry_after = 1;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "limiter", name, CS_MAX_NAME, 1))
        || (status = cs_db_ensure_row(db, p, CS_STMT_LIM_GET,
                                      CS_STMT_LIM_INSERT, name))) {
        return status;
    }
    memset(&x, 0, sizeof(x));
    x.name = name;
    x.now = now;
    x.window = window;
    x.limit = limit;
    x.pause_until = pause_until;
    if ((status = cs_db_tx_run(db, p, "limiter", rate_tx, &x))
        == APR_SUCCESS) {
        *granted = x.granted;
        *retry_after = x.retry_after;
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

/* ------------------------------------------------------------------ */
/* Several CAs: health, the job's CA, budgets                          */
/* ------------------------------------------------------------------ */

static void ca_from_row(void *item, cs_db_row_t r)
{
    cs_ca_health_t *h = item;

    h->name = r[0];
    h->url = r[1];
    h->state = r[2];
    h->failures = (int)cs_db_int(r[3]);
    h->last_error = r[4];
    h->next_retry = cs_db_int(r[5]);
    h->last_ok = cs_db_int(r[6]);
    h->updated = cs_db_int(r[7]);
}

apr_status_t cs_store_ca_get(cs_ca_health_t **h, cs_db_t *db, apr_pool_t *p,
                             const char *name)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "CA name", name, CS_MAX_NAME, 1))
        || (status = cs_db_row(&row, db, p, CS_STMT_CA_GET, name))) {
        return status;
    }
    if (!row) {
        return cs_db_fail(db, APR_NOTFOUND, "no health row for CA %s",
                          name);
    }
    *h = apr_pcalloc(p, sizeof(**h));
    ca_from_row(*h, row);
    return APR_SUCCESS;
}

apr_status_t cs_store_ca_put(cs_db_t *db, apr_pool_t *p,
                             const cs_ca_health_t *h)
{
    cs_db_row_t row;
    apr_status_t status;
    apr_int64_t failures = h->failures;
    const char *err = cs_db_cut(p, h->last_error, CS_MAX_ERROR);

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "CA name", h->name, CS_MAX_NAME,
                                     1))
        || (status = cs_db_check_len(db, "CA url", h->url, CS_MAX_VARCHAR,
                                     1))
        || (status = cs_db_check_len(db, "CA state", h->state, CS_MAX_WORD,
                                     1))
        || (status = cs_db_row(&row, db, p, CS_STMT_CA_GET, h->name))) {
        return status;
    }
    if (!row) {
        if (cs_db_exec(NULL, db, p, CS_STMT_CA_INSERT, h->url, h->state,
                       &failures, err, &h->next_retry, &h->last_ok,
                       &h->updated, h->name) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* Another instance inserted it first. */
        cs_db_forget(db);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_CA_UPDATE, h->url, h->state,
                      &failures, err, &h->next_retry, &h->last_ok,
                      &h->updated, h->name);
}

apr_status_t cs_store_ca_list(apr_array_header_t **cas, cs_db_t *db,
                              apr_pool_t *p)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_rows(cas, db, p, sizeof(cs_ca_health_t), ca_from_row,
                      CS_STMT_CA_LIST);
}

apr_status_t cs_store_job_ca_get(cs_job_ca_t *jc, cs_db_t *db,
                                 apr_pool_t *p, const char *domain)
{
    cs_db_row_t r;
    apr_status_t status;

    memset(jc, 0, sizeof(*jc));
    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_row(&r, db, p, CS_STMT_JOB_CA_GET, domain))) {
        return status;
    }
    if (!r) {
        return cs_db_fail(db, APR_NOTFOUND, "no ACME job for %s", domain);
    }
    jc->ca = r[0];
    jc->ca_refused = r[1];
    jc->has_prio = r[2] != NULL;
    jc->prio = cs_db_int(r[2]);
    return APR_SUCCESS;
}

apr_status_t cs_store_job_ca_set(cs_db_t *db, apr_pool_t *p,
                                 const char *domain, const cs_job_ca_t *jc)
{
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_check_len(db, "ca", jc->ca, CS_MAX_NAME, 0))
        || (status = cs_db_check_len(db, "ca_refused", jc->ca_refused,
                                     CS_MAX_VARCHAR, 0))) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_JOB_CA_SET, jc->ca,
                      jc->ca_refused, &jc->prio, domain);
}

/* How many due jobs cs_store_job_due_prio() looks at by due time first:
 * when no more are due, they are all of them and the answer; when more
 * are, they bound the deadline of the answer. */
#define CS_DUE_WINDOW 256

/* A due job as the window reads it: its deadline, or its due time when
 * it has none (a job of an old version, until cs_store_schema() gave it
 * one: SQL sorts the NULL first, so does this). */
typedef struct {
    const char *domain;
    apr_int64_t prio;
    int no_prio;
} due_t;

static void due_from_row(void *item, cs_db_row_t r)
{
    due_t *d = item;

    d->domain = r[0];
    d->no_prio = r[1] == NULL;
    d->prio = cs_db_int(r[1] ? r[1] : r[2]);
}

/* ORDER BY prio, domain (NULLs first; names are ASCII, compared as the
 * binary collations of both databases do). */
static int due_cmp(const void *a, const void *b)
{
    const due_t *x = a, *y = b;

    if (x->no_prio != y->no_prio) {
        return x->no_prio ? -1 : 1;
    }
    if (x->prio != y->prio) {
        return x->prio < y->prio ? -1 : 1;
    }
    return strcmp(x->domain, y->domain);
}

/* The scheduler's question, at a cost that grows with what is due rather
 * than with the queue: the first CS_DUE_WINDOW due jobs by due time
 * (index next_at; nothing is read when nothing is due).  If that was all
 * of them, sorting them by deadline is the answer.  If more are due, the
 * limit-th smallest deadline among them bounds the answer's (at least
 * limit due jobs have a deadline no later), and the walk along the
 * deadline index stops there. */
apr_status_t cs_store_job_due_prio(apr_array_header_t **domains,
                                   cs_db_t *db, apr_pool_t *p,
                                   apr_int64_t now, int limit)
{
    apr_array_header_t *win;
    apr_status_t status;
    apr_int64_t bound;
    due_t *d;
    int fetch, i;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (limit < 1) {
        return cs_db_fail(db, APR_EINVAL, "limit must be at least 1");
    }
    fetch = (limit > CS_DUE_WINDOW ? limit : CS_DUE_WINDOW) + 1;
    if ((status = cs_db_rows(&win, db, p, sizeof(due_t), due_from_row,
                             CS_STMT_JOB_DUE_WINDOW, &now, &now, &fetch))) {
        return status;
    }
    d = (due_t *)win->elts;
    qsort(d, win->nelts, sizeof(*d), due_cmp);
    if (win->nelts < fetch || d[limit - 1].no_prio) {
        /* All that is due (or the answer has jobs without a deadline,
         * which the walk below would not find). */
        *domains = apr_array_make(p, limit, sizeof(const char *));
        for (i = 0; i < win->nelts && i < limit; i++) {
            APR_ARRAY_PUSH(*domains, const char *) = d[i].domain;
        }
        return APR_SUCCESS;
    }
    bound = d[limit - 1].prio;
    return cs_db_rows(domains, db, p, sizeof(const char *), domain_from_row,
                      CS_STMT_JOB_DUE_PRIO, &bound, &now, &now, &limit);
}

/* Inside the transaction: lock and read every row, decide, and write
 * them all back only when every budget had room. */
static apr_status_t budget_decide(int *granted, apr_int64_t *retry_after,
                                  int *which, cs_db_t *db, apr_pool_t *p,
                                  const cs_budget_t *b, int n,
                                  apr_int64_t now)
{
    cs_rate_t *r = apr_pcalloc(p, n * sizeof(*r));
    cs_db_row_t row;
    apr_status_t status;
    int i, ok;

    for (i = 0; i < n; i++) {
        if ((status = cs_db_exec(NULL, db, p, CS_STMT_LIM_LOCK, b[i].name))
            || (status = cs_db_row(&row, db, p, CS_STMT_LIM_GET,
                                   b[i].name))) {
            return status;
        }
        if (!row) {
            return cs_db_fail(db, APR_EGENERAL, "limiter %s has no row",
                              b[i].name);
        }
        r[i].window_start = cs_db_int(row[0]);
        r[i].count = cs_db_int(row[1]);
        r[i].paused_until = cs_db_int(row[2]);
    }
    for (i = 0; i < n; i++) {
        if (b[i].limit > 0) {
            cs_sched_rate_take(&r[i], &ok, retry_after, now, b[i].window,
                               b[i].limit);
        }
        else {
            ok = r[i].paused_until <= now;
            *retry_after = ok ? 0 : r[i].paused_until - now;
        }
        if (!ok) {
            *which = i;
            return APR_SUCCESS;
        }
    }
    for (i = 0; i < n; i++) {
        if (b[i].limit > 0
            && (status = cs_db_exec(NULL, db, p, CS_STMT_LIM_SET,
                                    &r[i].window_start, &r[i].count,
                                    &r[i].paused_until, b[i].name))) {
            return status;
        }
    }
    *granted = 1;
    return APR_SUCCESS;
}

/* cs_store_budget_take()'s transaction (cs_db_tx_run()). */
typedef struct {
    const cs_budget_t *b;
    int n, granted, which;
    apr_int64_t now, retry_after;
} budget_tx_t;

static apr_status_t budget_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    budget_tx_t *x = baton;

    x->granted = 0;
    x->retry_after = 1;
    x->which = -1;
    return budget_decide(&x->granted, &x->retry_after, &x->which, db, p,
                         x->b, x->n, x->now);
}

apr_status_t cs_store_budget_take(int *granted, apr_int64_t *retry_after,
                                  int *which, cs_db_t *db, apr_pool_t *p,
                                  const cs_budget_t *b, int n,
                                  apr_int64_t now)
{
    apr_status_t status;
    budget_tx_t x;
    int i;

    *granted = 0;
    *retry_after = 1;
    *which = -1;
    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    for (i = 0; i < n; i++) {
        if ((status = cs_db_check_len(db, "limiter", b[i].name, CS_MAX_NAME,
                                      1))
            || (status = cs_db_ensure_row(db, p, CS_STMT_LIM_GET,
                                          CS_STMT_LIM_INSERT, b[i].name))) {
            return status;
        }
    }
    memset(&x, 0, sizeof(x));
    x.b = b;
    x.n = n;
    x.now = now;
    if ((status = cs_db_tx_run(db, p, "budgets", budget_tx, &x))
        == APR_SUCCESS) {
        *granted = x.granted;
        *retry_after = x.retry_after;
        *which = x.which;
    }
    return status;
}

static void rate_from_row(void *item, cs_db_row_t r)
{
    cs_rate_row_t *x = item;

    x->name = r[0];
    x->window_start = cs_db_int(r[1]);
    x->count = cs_db_int(r[2]);
    x->paused_until = cs_db_int(r[3]);
}

apr_status_t cs_store_rate_list(apr_array_header_t **rows, cs_db_t *db,
                                apr_pool_t *p)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_rows(rows, db, p, sizeof(cs_rate_row_t), rate_from_row,
                      CS_STMT_LIM_LIST);
}
