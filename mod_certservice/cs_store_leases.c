/*
 * cs_store_leases.c: the proxies' side of a rollout: restart leases, which
 * bound how many hosts of a pool restart at once, and the hosts' reports
 * of what they serve.
 *
 * A pool's row is the lock its lease decisions serialise on (cs_db.c).
 */
#include <string.h>

#include <apr_dbd.h>
#include <apr_general.h>

#include "cs_db.h"
#include "cs_store.h"

static apr_status_t lease_id_make(const char **id, cs_db_t *db,
                                  apr_pool_t *p)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    char *s;
    apr_status_t rv;
    int i;

    if ((rv = apr_generate_random_bytes(raw, sizeof(raw))) != APR_SUCCESS) {
        return cs_db_fail(db, rv, "no random bytes for a lease id");
    }
    s = apr_palloc(p, 2 * sizeof(raw) + 1);
    for (i = 0; i < (int)sizeof(raw); i++) {
        s[2 * i] = hex[raw[i] >> 4];
        s[2 * i + 1] = hex[raw[i] & 0xF];
    }
    s[2 * sizeof(raw)] = '\0';
    *id = s;
    return APR_SUCCESS;
}

/* Inside the transaction, the pool's row locked: renews host's live lease
 * (*id set), or grants a new one if fewer than max are live (*id set),
 * else *id NULL and *first the earliest expiry. */
static apr_status_t lease_decide(const char **id, apr_int64_t *first,
                                 cs_db_t *db, apr_pool_t *p,
                                 const char *pool, const char *host,
                                 apr_int64_t until, int max)
{
    cs_db_row_t row;
    apr_status_t status;

    *id = NULL;
    *first = 0;
    /* A host asking again (a retried request, a restarted daemon) gets
     * its live lease back, renewed: it already holds that slot. */
    if ((status = cs_db_row(&row, db, p, CS_STMT_LEASE_MINE, pool, host))) {
        return status;
    }
    if (row) {
        *id = row[0];
        return cs_db_exec(NULL, db, p, CS_STMT_LEASE_RENEW, &until, *id);
    }
    if ((status = cs_db_row(&row, db, p, CS_STMT_LEASE_COUNT, pool))) {
        return status;
    }
    if (row) {
        *first = cs_db_int(row[1]);
        if (cs_db_int(row[0]) >= max) {
            return APR_SUCCESS;
        }
    }
    if ((status = lease_id_make(id, db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_LEASE_INSERT, *id, pool, host,
                      &until);
}

/* cs_store_lease_acquire()'s transaction (cs_db_tx_run()). */
typedef struct {
    const char *pool, *host, *id;
    apr_int64_t until, now, first;
    int max;
} lease_tx_t;

static apr_status_t lease_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    lease_tx_t *x = baton;
    apr_status_t status;
    int nrows = 0;

    x->id = NULL;
    x->first = 0;
    /* Lock the pool's row first: every read below then sees every lease
     * committed before us, and nobody else decides until we commit.  On
     * a Galera cluster the lock is local to a node, but every decision
     * writes the row, so two nodes' decisions conflict at certification
     * and one of them runs again (cs_db_tx_run()). */
    if ((status = cs_db_exec(&nrows, db, p, CS_STMT_POOL_LOCK, x->pool))
        == APR_SUCCESS && nrows != 1) {
        status = cs_db_fail(db, APR_EGENERAL, "pool %s has no row",
                            x->pool);
    }
    if (status == APR_SUCCESS) {
        status = cs_db_exec(NULL, db, p, CS_STMT_LEASE_EXPIRE, x->pool,
                            &x->now);
    }
    if (status == APR_SUCCESS) {
        status = lease_decide(&x->id, &x->first, db, p, x->pool, x->host,
                              x->until, x->max);
    }
    return status;
}

apr_status_t cs_store_lease_acquire(const char **lease_id,
                                    apr_int64_t *expires, int *granted,
                                    apr_int64_t *retry_after, cs_db_t *db,
                                    apr_pool_t *p, const char *pool,
                                    const char *host, int ttl,
                                    int max_unavailable, apr_int64_t now)
{
    apr_status_t status;
    apr_int64_t until = now + ttl, first = 0;
    const char *id = NULL;
    lease_tx_t x;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = cs_db_check_len(db, "host", host, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    if (ttl < 1 || max_unavailable < 1) {
        return cs_db_fail(db, APR_EINVAL, "ttl and max_unavailable must be "
                          "at least 1");
    }
    if ((status = cs_db_ensure_row(db, p, CS_STMT_POOL_GET,
                                   CS_STMT_POOL_INSERT, pool))) {
        return status;
    }

    memset(&x, 0, sizeof(x));
    x.pool = pool;
    x.host = host;
    x.until = until;
    x.now = now;
    x.max = max_unavailable;
    if ((status = cs_db_tx_run(db, p, "lease", lease_tx, &x))
        != APR_SUCCESS) {
        return status;
    }
    id = x.id;
    first = x.first;
    *granted = id != NULL;
    *lease_id = id;
    if (id) {
        *expires = until;
    }
    else {
        *retry_after = first - now > 1 ? first - now : 1;
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_lease_release(cs_db_t *db, apr_pool_t *p,
                                    const char *pool, const char *lease_id)
{
    apr_status_t status;
    apr_int64_t now = cs_db_now();
    int nrows = 0;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = cs_db_check_len(db, "lease", lease_id, CS_MAX_TOKEN,
                                     1))) {
        return status;
    }
    /* An expired lease's row may linger until the pool's next acquire;
     * it is not live, so it is not found. */
    if ((status = cs_db_exec(&nrows, db, p, CS_STMT_LEASE_DELETE, pool,
                             lease_id, &now))) {
        return status;
    }
    if (nrows == 0) {
        return cs_db_fail(db, APR_NOTFOUND, "no live lease %s in pool %s",
                          lease_id, pool);
    }
    return APR_SUCCESS;
}

static void lease_from_row(void *item, cs_db_row_t r)
{
    cs_lease_t *l = item;

    l->id = r[0];
    l->host = r[1];
    l->expires = cs_db_int(r[2]);
}

apr_status_t cs_store_leases(apr_array_header_t **leases, cs_db_t *db,
                             apr_pool_t *p, const char *pool,
                             apr_int64_t now)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "pool", pool, CS_MAX_TOKEN, 1))) {
        return status;
    }
    return cs_db_rows(leases, db, p, sizeof(cs_lease_t), lease_from_row,
                      CS_STMT_LEASE_LIST, pool, &now);
}

apr_status_t cs_store_host_report(cs_db_t *db, apr_pool_t *p,
                                  const char *host, const char *pool,
                                  apr_int64_t seq, const char *state,
                                  const char *failed_json, apr_int64_t now)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "host", host, CS_MAX_DOMAIN, 1))
        || (status = cs_db_check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = cs_db_check_len(db, "state", state, CS_MAX_STATE, 1))
        || (status = cs_db_check_len(db, "failed", failed_json, CS_MAX_JSON,
                                     0))) {
        return status;
    }
    if (!failed_json) {
        failed_json = "{}";
    }
    /* Update or insert; no transaction needed (one row, the host's own).
     * The count decides, not the UPDATE's row count, which MySQL reports
     * as 0 when a repeated report changes nothing. */
    if ((status = cs_db_row(&row, db, p, CS_STMT_HOST_COUNT, host))) {
        return status;
    }
    if (!row || cs_db_int(row[0]) == 0) {
        if (cs_db_exec(NULL, db, p, CS_STMT_HOST_INSERT, host, pool, &seq,
                       state, failed_json, &now) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* The same host's report racing this one inserted first. */
        cs_db_forget(db);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_HOST_UPDATE, pool, &seq, state,
                      failed_json, &now, host);
}

/* Columns as in cs_host_serving (the serial last). */
static void serving_from_row(void *item, cs_db_row_t r)
{
    cs_host_serving_t *h = item;

    h->host = r[0];
    h->pool = r[1];
    h->seq = cs_db_int(r[2]);
    h->state = r[3];
    h->failed_json = r[4];
    h->reported = cs_db_int(r[5]);
    h->serial = r[6];
}

apr_status_t cs_store_domain_hosts(apr_array_header_t **hosts, cs_db_t *db,
                                   apr_pool_t *p, const char *domain)
{
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, domain))) {
        return status;
    }
    return cs_db_rows(hosts, db, p, sizeof(cs_host_serving_t),
                      serving_from_row, CS_STMT_HOST_SERVING, domain);
}
