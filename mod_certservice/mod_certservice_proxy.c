/*
 * mod_certservice_proxy.c: the endpoints of the proxy role: the change
 * feed (with its long poll), bundles (one, or many in one round trip),
 * restart leases, and a host's report of what it serves.
 *
 * The long poll: GET /v1/changes?since=SEQ&wait=N with nothing after SEQ
 * is held, looking at the feed every CS_FEED_STEP, until a change comes
 * (from any CertService instance: the feed is the database's) or N
 * seconds (at most CertServiceChangesWait) have passed, then answered as
 * without wait.  A proxy's sync daemon (CertSyncWatch) keeps one such
 * request open, so a new certificate reaches every proxy within a moment
 * instead of within one CertSyncInterval.  Bounded: at most
 * CertServiceChangesWait's second number of requests (and half of the
 * process's threads) are held at once in one process; beyond that,
 * and while httpd stops, the request is answered at once.
 *
 * Log tags: CS00104 ... CS00105.
 */
#include "apr_atomic.h"
#include "apr_strings.h"
#include "ap_mpm.h"
#include "http_log.h"
#include "http_protocol.h"

#include "cs_service.h"
#include "mod_certservice_private.h"

/* How often a held request looks at the feed. */
#define CS_FEED_STEP apr_time_from_msec(250)

static volatile apr_uint32_t feed_held;  /* requests held in this process */

const char *cs_set_feed_wait(cmd_parms *cmd, void *dummy, const char *secs,
                             const char *waiters)
{
    cs_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                           &certservice_module);
    char *end;
    long w, n = 0;

    (void)dummy;
    if (strcasecmp(secs, "off") == 0 || strcmp(secs, "0") == 0) {
        conf->feed_wait = -1;
    }
    else {
        w = strtol(secs, &end, 10);
        if (end == secs || *end || w < 1 || w > 300) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not off or a "
                                "number of seconds from 1 to 300",
                                cmd->cmd->name, secs);
        }
        conf->feed_wait = (int)w;
    }
    if (waiters) {
        n = strtol(waiters, &end, 10);
        if (end == waiters || *end || n < 1 || n > 10000) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                                "requests from 1 to 10000", cmd->cmd->name,
                                waiters);
        }
        conf->feed_waiters = (int)n;
    }
    return NULL;
}

/* May one more request be held?  Then it counts until feed_release(). */
static int feed_hold(const cs_conf_t *conf)
{
    int threads = 0, stopping = 0, max = conf->feed_waiters;

    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) == APR_SUCCESS
        && threads / 2 < max) {
        max = threads / 2 > 0 ? threads / 2 : 1;
    }
    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &stopping) == APR_SUCCESS
        && stopping == AP_MPMQ_STOPPING) {
        return 0;
    }
    if (apr_atomic_inc32(&feed_held) >= (apr_uint32_t)max) {
        apr_atomic_dec32(&feed_held);
        return 0;
    }
    return 1;
}

static int feed_stopping(void)
{
    int state = 0;

    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
           && state == AP_MPMQ_STOPPING;
}

int cs_get_changes(cs_req_t *q)
{
    const cs_conf_t *conf = cs_config_get(q->r->server);
    apr_array_header_t *changes;
    apr_int64_t since, next, wait = 0;
    apr_time_t until;
    apr_status_t rv;
    const char *why;
    int more, rc, limit;

    if ((rc = cs_req_changes(&since, &limit, q->r->pool, q->params, &why))
        || (rc = cs_query_int(&wait, q->r->pool, q->params, "wait", 0, 3600,
                              &why))) {
        return cs_req_fail(q, rc, why);
    }
    if ((rv = cs_store_changes(&changes, &next, &more, &q->db, q->r->pool,
                               since, limit))) {
        return cs_db_error(q, rv);
    }
    if (!changes->nelts && wait > 0 && conf->feed_wait > 0
        && feed_hold(conf)) {
        if (wait > conf->feed_wait) {
            wait = conf->feed_wait;
        }
        until = apr_time_now() + apr_time_from_sec(wait);
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, q->r, CSLOGNO(00104)
                      "changes: holding since=%" APR_INT64_T_FMT " for up "
                      "to %" APR_INT64_T_FMT " s", since, wait);
        while (!changes->nelts && apr_time_now() < until
               && !feed_stopping() && !q->r->connection->aborted) {
            apr_sleep(CS_FEED_STEP);
            if ((rv = cs_store_changes(&changes, &next, &more, &q->db,
                                       q->r->pool, since, limit))) {
                apr_atomic_dec32(&feed_held);
                return cs_db_error(q, rv);
            }
        }
        apr_atomic_dec32(&feed_held);
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, q->r, CSLOGNO(00105)
                      "changes: held request for since=%" APR_INT64_T_FMT
                      " answered with %d changes", since, changes->nelts);
    }
    return cs_send_json(q->r, HTTP_OK, cs_json_changes(changes, next, more));
}

int cs_get_bundle(cs_req_t *q, const char *raw)
{
    const char *domain;
    cs_bundle_t *b;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    rv = cs_store_get(&b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv) || (!rv && !b->key_cms)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no certificate for %s",
                        domain);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    return cs_send_json(q->r, HTTP_OK, cs_json_bundle(b));
}

int cs_post_bundles(cs_req_t *q)
{
    apr_array_header_t *domains;
    json_t *bundles, *missing;
    const char *body, *why;
    apr_size_t len;
    int i, rc;

    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_req_bundles(&domains, q->r->pool, body, len,
                             q->conf->max_batch, &why))) {
        return cs_req_fail(q, rc, why);
    }
    bundles = json_array();
    missing = json_array();
    for (i = 0; i < domains->nelts; i++) {
        const char *domain = APR_ARRAY_IDX(domains, i, const char *);
        cs_bundle_t *b;
        apr_status_t rv = cs_store_get(&b, &q->db, q->r->pool, domain);

        if (rv == APR_SUCCESS && b->key_cms) {
            json_array_append_new(bundles, cs_json_bundle(b));
        }
        else if (APR_STATUS_IS_NOTFOUND(rv) || rv == APR_SUCCESS) {
            json_array_append_new(missing, json_string(domain));
        }
        else {
            json_decref(bundles);
            json_decref(missing);
            return cs_db_error(q, rv);
        }
    }
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:o, s:o}", "bundles",
                                                 bundles, "missing",
                                                 missing));
}

int cs_post_lease(cs_req_t *q, const char *pool)
{
    const char *body, *host, *lease, *why;
    apr_size_t len;
    apr_int64_t expires, retry;
    apr_status_t rv;
    int rc, granted, ttl;

    if (!cs_req_token_ok(pool)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid pool name");
    }
    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_req_lease(&host, &ttl, q->r->pool, body, len,
                           q->conf->lease_max_ttl, &why))) {
        return cs_req_fail(q, rc, why);
    }
    rv = cs_store_lease_acquire(&lease, &expires, &granted, &retry, &q->db,
                                q->r->pool, pool, host, ttl,
                                cs_config_max_unavailable(q->conf, pool),
                                apr_time_sec(apr_time_now()));
    if (rv) {
        return cs_db_error(q, rv);
    }
    if (!granted) {
        apr_table_setn(q->r->err_headers_out, "Retry-After",
                       apr_psprintf(q->r->pool, "%" APR_INT64_T_FMT, retry));
        return cs_send_json(q->r, HTTP_CONFLICT, json_pack(
            "{s:s, s:i, s:I}", "error", "every restart slot of the pool is "
            "taken", "status", HTTP_CONFLICT, "retry_after",
            (json_int_t)retry));
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00002)
                  "lease %s granted to host %s in pool %s for %ds", lease,
                  host, pool, ttl);
    apr_table_setn(q->r->headers_out, "Location",
                   apr_pstrcat(q->r->pool, q->r->uri, "/", lease, NULL));
    return cs_send_json(q->r, HTTP_CREATED, json_pack(
        "{s:s, s:I}", "lease", lease, "expires", (json_int_t)expires));
}

int cs_delete_lease(cs_req_t *q, const char *pool, const char *lease)
{
    apr_status_t rv;

    if (!cs_req_token_ok(pool) || !cs_req_token_ok(lease)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid pool or lease id");
    }
    rv = cs_store_lease_release(&q->db, q->r->pool, pool, lease);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no live lease %s in pool %s",
                        lease, pool);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00003)
                  "lease %s of pool %s released", lease, pool);
    q->r->status = HTTP_NO_CONTENT;
    return OK;
}

int cs_post_report(cs_req_t *q, const char *host)
{
    cs_report_t rep;
    const char *body, *why;
    apr_size_t len;
    apr_status_t rv;
    int rc;

    if (!cs_req_token_ok(host)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid host name");
    }
    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_req_report(&rep, q->r->pool, body, len, &why))) {
        return cs_req_fail(q, rc, why);
    }
    rv = cs_store_host_report(&q->db, q->r->pool, host, rep.pool, rep.seq,
                              rep.state, rep.failed_json,
                              apr_time_sec(apr_time_now()));
    if (rv) {
        return cs_db_error(q, rv);
    }
    q->r->status = HTTP_NO_CONTENT;
    return OK;
}

/* GET /v1/acme-tls/DOMAIN: the tls-alpn-01 challenge certificate of an
 * order in progress for DOMAIN, its key sealed to the wrapping
 * certificates (only a proxy opens it).  404 when none is in progress:
 * the proxy then refuses the acme-tls/1 handshake. */
int cs_get_acme_tls(cs_req_t *q, const char *raw)
{
    const char *domain;
    cs_tlsalpn_t *t;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    rv = cs_store_tlsalpn_get(&t, &q->db, q->r->pool, domain,
                              apr_time_sec(apr_time_now()));
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no tls-alpn-01 challenge in "
                        "progress for %s", domain);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00103)
                  "proxy '%s': tls-alpn-01 certificate of %s",
                  q->caller.who, domain);
    apr_table_setn(q->r->headers_out, "Cache-Control", "no-store");
    return cs_send_json(q->r, HTTP_OK, json_pack(
        "{s:s, s:s, s:s, s:I}", "domain", domain, "cert_pem", t->cert_pem,
        "key_cms", t->key_cms, "expires", (json_int_t)t->expires));
}
