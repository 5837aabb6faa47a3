/*
 * cs_store_metrics.c: the store's side of the metrics (cs_metrics.h): a
 * few aggregate queries, each along an index, the ACME order counters,
 * and the filtered domain list of GET /v1/domains.
 *
 * The aggregates take no parameter but numbers (the clock), so they run
 * as plain statements (cs_db_select()) with the numbers in the text;
 * strings (the filters) go through the driver's escaping.  What each
 * costs at 1,000,000 domains is in docs/mod_certservice.md, "Metrics".
 */
#include <string.h>

#include <apr_strings.h>

#include "cs_db.h"
#include "cs_metrics.h"

#define I64 "%" APR_INT64_T_FMT

static apr_status_t sel(apr_array_header_t **rows, cs_db_t *db,
                        apr_pool_t *p, const char *what, const char *fmt,
                        ...)
    __attribute__((format(printf, 5, 6)));

static apr_status_t sel(apr_array_header_t **rows, cs_db_t *db,
                        apr_pool_t *p, const char *what, const char *fmt,
                        ...)
{
    va_list ap;
    const char *sql;

    va_start(ap, fmt);
    sql = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    return cs_db_select(rows, db, p, sql, what);
}

static apr_array_header_t *counts(apr_pool_t *p,
                                  const apr_array_header_t *rows)
{
    apr_array_header_t *a = apr_array_make(p, rows->nelts + 1,
                                           sizeof(cs_metric_count_t));
    int i;

    for (i = 0; i < rows->nelts; i++) {
        cs_db_row_t r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        cs_metric_count_t *c = apr_array_push(a);

        c->label = r[0] ? r[0] : "";
        c->count = cs_db_int(r[1]);
    }
    return a;
}

static apr_int64_t cell(const apr_array_header_t *rows, int col)
{
    return rows->nelts ? cs_db_int(APR_ARRAY_IDX(rows, 0, cs_db_row_t)[col])
                       : 0;
}

apr_status_t cs_store_metrics(cs_metrics_t *m, cs_db_t *db, apr_pool_t *p,
                              apr_int64_t now)
{
    apr_array_header_t *rows;
    apr_status_t status;
    int i;

    memset(m, 0, sizeof(*m));
    m->now = now;
    if ((status = cs_db_enter(db, p))) {
        return status;
    }
    /* Domains by state: the index cs_domains_state, read whole (the only
     * query that grows with every domain; no table row is read). */
    if ((status = sel(&rows, db, p, "domains by state",
                      "SELECT state, COUNT(*) FROM cs_domains"
                      " GROUP BY state ORDER BY state"))) {
        return status;
    }
    m->domains = counts(p, rows);
    /* Expiring: one range of the index cs_domains_not_after (the domains
     * expiring within 30 days); a renewal moves a domain's not_after out
     * of it, so what is left has no successor.  Pending domains have
     * not_after 0. */
    if ((status = sel(&rows, db, p, "expiring certificates",
                      "SELECT SUM(CASE WHEN not_after < " I64 " THEN 1"
                      " ELSE 0 END), SUM(CASE WHEN not_after < " I64
                      " THEN 1 ELSE 0 END), COUNT(*) FROM cs_domains"
                      " WHERE not_after >= " I64 " AND not_after < " I64,
                      now + cs_metrics_window_days[0] * (apr_int64_t)86400,
                      now + cs_metrics_window_days[1] * (apr_int64_t)86400,
                      now,
                      now + cs_metrics_window_days[2] * (apr_int64_t)86400))) {
        return status;
    }
    for (i = 0; i < CS_METRICS_WINDOWS; i++) {
        m->expiring[i] = cell(rows, i);
    }
    if ((status = sel(&rows, db, p, "expired certificates",
                      "SELECT COUNT(*) FROM cs_domains WHERE not_after > 0"
                      " AND not_after < " I64, now))) {
        return status;
    }
    m->expired = cell(rows, 0);
    if ((status = sel(&rows, db, p, "feed head",
                      "SELECT value FROM cs_counter WHERE name = 'seq'"))) {
        return status;
    }
    m->feed_seq = cell(rows, 0);
    /* The ACME queue: the jobs not valid (index cs_acme_jobs_state, two
     * ranges), and those due (a range of UNIQUE (next_at, domain)). */
    if ((status = sel(&rows, db, p, "ACME queue",
                      "SELECT state, COUNT(*) FROM cs_acme_jobs"
                      " WHERE state IN ('queued', 'failed')"
                      " GROUP BY state ORDER BY state"))) {
        return status;
    }
    m->queue = counts(p, rows);
    if ((status = sel(&rows, db, p, "ACME jobs due",
                      "SELECT COUNT(*) FROM cs_acme_jobs WHERE next_at <= "
                      I64 " AND lease_until < " I64, now, now))) {
        return status;
    }
    m->queue_due = cell(rows, 0);
    /* Small tables: a row per CA and result, per lease, per host. */
    if ((status = sel(&rows, db, p, "ACME orders",
                      "SELECT ca, result, count FROM cs_acme_order_counts"
                      " ORDER BY ca, result"))) {
        return status;
    }
    m->orders = apr_array_make(p, rows->nelts + 1, sizeof(cs_metric_order_t));
    for (i = 0; i < rows->nelts; i++) {
        cs_db_row_t r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        cs_metric_order_t *o = apr_array_push(m->orders);

        o->ca = r[0];
        o->result = r[1];
        o->count = cs_db_int(r[2]);
    }
    if ((status = sel(&rows, db, p, "leases",
                      "SELECT pool, COUNT(*) FROM cs_leases WHERE expires > "
                      I64 " GROUP BY pool ORDER BY pool", now))) {
        return status;
    }
    m->leases = apr_array_make(p, rows->nelts + 1,
                               sizeof(cs_metric_leases_t));
    for (i = 0; i < rows->nelts; i++) {
        cs_db_row_t r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        cs_metric_leases_t *l = apr_array_push(m->leases);

        l->pool = r[0];
        l->held = cs_db_int(r[1]);
    }
    /* Each host with the time of the first change it lacks: one step
     * along the feed's primary key per host. */
    if ((status = sel(&rows, db, p, "hosts",
                      "SELECT h.host, h.pool, h.seq, h.state, h.reported,"
                      " (SELECT c.at FROM cs_changes c WHERE c.seq > h.seq"
                      " ORDER BY c.seq LIMIT 1) FROM cs_hosts h"
                      " ORDER BY h.host"))) {
        return status;
    }
    m->hosts = apr_array_make(p, rows->nelts + 1, sizeof(cs_metric_host_t));
    for (i = 0; i < rows->nelts; i++) {
        cs_db_row_t r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        cs_metric_host_t *h = apr_array_push(m->hosts);

        h->host = r[0];
        h->pool = r[1];
        h->seq = cs_db_int(r[2]);
        h->state = r[3];
        h->reported = cs_db_int(r[4]);
        h->lag_changes = m->feed_seq > h->seq ? m->feed_seq - h->seq : 0;
        h->lag_seconds = r[5] && now > cs_db_int(r[5])
                         ? now - cs_db_int(r[5]) : 0;
    }
    /* The accounts' and the global budget's rows: a range of the
     * primary key ("orders", "orders:..."; not the many per registered
     * domain, "rd:..."). */
    if ((status = sel(&rows, db, p, "order budgets",
                      "SELECT name, window_start, count, paused_until"
                      " FROM cs_acme_limits WHERE name >= 'orders'"
                      " AND name < 'orders;' ORDER BY name"))) {
        return status;
    }
    m->limiters = apr_array_make(p, rows->nelts + 1, sizeof(cs_rate_row_t));
    for (i = 0; i < rows->nelts; i++) {
        cs_db_row_t r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        cs_rate_row_t *l = apr_array_push(m->limiters);

        l->name = r[0];
        l->window_start = cs_db_int(r[1]);
        l->count = cs_db_int(r[2]);
        l->paused_until = cs_db_int(r[3]);
    }
    return cs_store_ca_list(&m->ca_health, db, p);
}

apr_status_t cs_store_order_count(cs_db_t *db, apr_pool_t *p,
                                  const char *ca, const char *result)
{
    apr_status_t status;
    int n = 0, attempt;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "CA", ca, CS_MAX_NAME, 1))
        || (status = cs_db_check_len(db, "result", result, CS_MAX_WORD,
                                     1))) {
        return status;
    }
    /* The first of a kind inserts its row; of two instances racing to,
     * the loser's insert fails and its second update counts. */
    for (attempt = 0; attempt < 2; attempt++) {
        if ((status = cs_db_exec(&n, db, p, CS_STMT_ORD_ADD, ca, result))) {
            return status;
        }
        if (n > 0 || cs_db_exec(NULL, db, p, CS_STMT_ORD_INSERT, ca,
                                result) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        cs_db_forget(db);
    }
    return cs_db_fail(db, APR_EGENERAL, "cannot count an order of CA %s",
                      ca);
}

static const char *quote(cs_db_t *db, apr_pool_t *p, const char *s)
{
    return apr_pstrcat(p, "'", apr_dbd_escape(db->driver, p, s, db->handle),
                       "'", NULL);
}

apr_status_t cs_store_domain_search(apr_array_header_t **domains,
                                    cs_db_t *db, apr_pool_t *p,
                                    const cs_domain_filter_t *f,
                                    const char *after, int limit,
                                    apr_int64_t now)
{
    apr_array_header_t *rows;
    const char *sql;
    apr_status_t status;
    int i;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "after", after, CS_MAX_DOMAIN, 0))
        || (status = cs_db_check_len(db, "state", f->state, CS_MAX_WORD, 0))
        || (status = cs_db_check_len(db, "q", f->contains, CS_MAX_DOMAIN,
                                     0))) {
        return status;
    }
    /* Along the primary key from `after`; a filter only skips rows, so
     * a rare match reads many (the limit bounds what is returned, not
     * what is read). */
    sql = apr_pstrcat(p, "SELECT name, seq, state, serial, not_before,"
                      " not_after, key_type, last_error, updated"
                      " FROM cs_domains WHERE name > ",
                      quote(db, p, after ? after : ""), NULL);
    if (f->state) {
        sql = apr_pstrcat(p, sql, " AND state = ", quote(db, p, f->state),
                          NULL);
    }
    if (f->contains) {
        sql = apr_pstrcat(p, sql, " AND name LIKE ",
                          quote(db, p, apr_pstrcat(p, "%", f->contains, "%",
                                                   NULL)), NULL);
    }
    if (f->expiring_days) {
        sql = apr_psprintf(p, "%s AND not_after > 0 AND not_after < " I64,
                           sql, now + f->expiring_days * (apr_int64_t)86400);
    }
    sql = apr_psprintf(p, "%s ORDER BY name LIMIT %d", sql, limit);
    if ((status = cs_db_select(&rows, db, p, sql, "domain search"))) {
        return status;
    }
    *domains = apr_array_make(p, rows->nelts + 1, sizeof(cs_bundle_t));
    for (i = 0; i < rows->nelts; i++) {
        cs_db_summary_from_row(apr_array_push(*domains),
                         APR_ARRAY_IDX(rows, i, cs_db_row_t));
    }
    return APR_SUCCESS;
}
