/*
 * mod_certservice_proxy.c: the endpoints of the proxy role: the change
 * feed, bundles (one, or many in one round trip), restart leases, and a
 * host's report of what it serves.
 */
#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_service.h"
#include "mod_certservice_private.h"

int cs_get_changes(cs_req_t *q)
{
    apr_array_header_t *changes;
    apr_int64_t since, limit, next;
    apr_status_t rv;
    int more, rc;

    if ((rc = cs_query_int(q->r, "since", 0, APR_INT64_MAX, &since))
        != DECLINED
        || (rc = cs_query_int(q->r, "limit", CS_DEFAULT_FEED_LIMIT,
                              CS_MAX_FEED_LIMIT, &limit)) != DECLINED) {
        return rc;
    }
    if (limit < 1) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "limit must be at least 1");
    }
    if ((rv = cs_store_changes(&changes, &next, &more, &q->db, q->r->pool,
                               since, (int)limit))) {
        return cs_db_error(q, rv);
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
    json_t *body, *names, *v, *bundles, *missing;
    size_t i;
    int rc;

    if ((rc = cs_read_body(q, &body)) != DECLINED) {
        return rc;
    }
    names = json_object_get(body, "domains");
    if (!json_is_array(names)) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be "
                        "{\"domains\":[...]}");
    }
    if (json_array_size(names) > (size_t)q->conf->max_batch) {
        size_t n = json_array_size(names);
        json_decref(body);
        return cs_error(q->r, HTTP_REQUEST_ENTITY_TOO_LARGE, "%" APR_SIZE_T_FMT
                        " domains requested; CertServiceMaxBatch is %d", n,
                        q->conf->max_batch);
    }
    bundles = json_array();
    missing = json_array();
    json_array_foreach(names, i, v) {
        const char *domain;
        cs_bundle_t *b;
        apr_status_t rv;

        if (!json_is_string(v)) {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return cs_error(q->r, HTTP_BAD_REQUEST, "domains[%"
                            APR_SIZE_T_FMT "] is not a string", i);
        }
        if (!(domain = cs_domain(q, json_string_value(v), &rc))) {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return rc;
        }
        rv = cs_store_get(&b, &q->db, q->r->pool, domain);
        if (rv == APR_SUCCESS && b->key_cms) {
            json_array_append_new(bundles, cs_json_bundle(b));
        }
        else if (APR_STATUS_IS_NOTFOUND(rv) || rv == APR_SUCCESS) {
            json_array_append_new(missing, json_string(domain));
        }
        else {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return cs_db_error(q, rv);
        }
    }
    json_decref(body);
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:o, s:o}", "bundles",
                                                 bundles, "missing",
                                                 missing));
}

int cs_post_lease(cs_req_t *q, const char *pool)
{
    json_t *body, *jhost, *jttl;
    const char *host, *lease;
    apr_int64_t expires, retry;
    apr_status_t rv;
    int rc, granted, ttl, max_ttl = q->conf->lease_max_ttl;

    if (!cs_token_ok(pool)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid pool name");
    }
    if ((rc = cs_read_body(q, &body)) != DECLINED) {
        return rc;
    }
    jhost = json_object_get(body, "host");
    jttl = json_object_get(body, "ttl");
    if (!json_is_string(jhost) || !cs_token_ok(json_string_value(jhost))
        || !json_is_integer(jttl) || json_integer_value(jttl) < 1
        || json_integer_value(jttl) > max_ttl) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be {\"host\": "
                        "<name of 1-64 of [A-Za-z0-9._-]>, \"ttl\": <1..%d "
                        "seconds>}", max_ttl);
    }
    host = apr_pstrdup(q->r->pool, json_string_value(jhost));
    ttl = (int)json_integer_value(jttl);
    json_decref(body);
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

    if (!cs_token_ok(pool) || !cs_token_ok(lease)) {
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
    json_t *body, *jpool, *jseq, *jstate, *jfailed;
    char *failed;
    apr_status_t rv;
    int rc;

    if (!cs_token_ok(host)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid host name");
    }
    if ((rc = cs_read_body(q, &body)) != DECLINED) {
        return rc;
    }
    jpool = json_object_get(body, "pool");
    jseq = json_object_get(body, "seq");
    jstate = json_object_get(body, "state");
    jfailed = json_object_get(body, "failed");
    if (!json_is_string(jpool) || !cs_token_ok(json_string_value(jpool))
        || !json_is_integer(jseq) || json_integer_value(jseq) < 0
        || !json_is_string(jstate) || !cs_token_ok(json_string_value(jstate))
        || (jfailed && !json_is_object(jfailed))) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be {\"pool\": "
                        "name, \"seq\": n, \"state\": word, \"failed\": "
                        "{domain: reason, ...}}");
    }
    failed = json_dumps(jfailed ? jfailed : json_object(), JSON_COMPACT);
    rv = cs_store_host_report(&q->db, q->r->pool, host,
                              json_string_value(jpool),
                              (apr_int64_t)json_integer_value(jseq),
                              json_string_value(jstate),
                              failed ? failed : "{}",
                              apr_time_sec(apr_time_now()));
    free(failed);
    json_decref(body);
    if (rv) {
        return cs_db_error(q, rv);
    }
    q->r->status = HTTP_NO_CONTENT;
    return OK;
}
