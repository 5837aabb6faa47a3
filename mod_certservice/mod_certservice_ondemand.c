/*
 * mod_certservice_ondemand.c: on-demand issuance (cs_ondemand.h): the
 * directives, POST /v1/on-demand for the proxies, and the startup line.
 *
 * For each name of a request, in this order, the first step that decides
 * answers for it:
 *   1. not a domain, or a wildcard: "invalid";
 *   2. the domain is known already: "exists" (its certificate comes, or
 *      came, through the change feed);
 *   3. no CertServiceOnDemandAsk: "refused" (the secure default);
 *   4. refused before, and the refusal still holds (cs_ondemand, shared
 *      by every instance): "refused", nothing asked;
 *   5. unless allowed before and still so: the ask budget (limiter
 *      "on-demand-ask"), then the ask itself; a no, an error or a
 *      timeout: "refused" (recorded for CertServiceOnDemandRefusedTTL,
 *      and an on-demand-refused event);
 *   6. the issuance budget (limiter "on-demand"): spent, "limited" with
 *      a retry_after (the yes is kept, the ask is not made again);
 *   7. the domain added as PUT /v1/domains/NAME adds it: "issued" (local
 *      CA) or "queued" (ACME).
 * A request stops asking after CS_OD_REQUEST_BUDGET seconds: the rest of
 * its names are "deferred", asked about in the proxy's next request.
 *
 * Log tags: CS00070 ... CS00079.
 */
#include <unistd.h>

#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_http.h"
#include "cs_ondemand.h"
#include "mod_certservice_private.h"

/* Seconds one request may spend asking. */
#define CS_OD_REQUEST_BUDGET    10
/* A deferred name is sent again after this long. */
#define CS_OD_RETRY             5

/* --- Directives ------------------------------------------------------- */

static cs_conf_t *od_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config,
                                &certservice_module);
}

const char *cs_set_od_ask(cmd_parms *cmd, void *dummy, const char *url,
                          const char *timeout, const char *ca)
{
    cs_conf_t *conf = od_conf(cmd);
    char *end;
    long t;

    if ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        || strlen(url) < 10 || strlen(url) > 2000
        || strpbrk(url, " \t\"'<>#")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an https:// or "
                            "http:// URL", cmd->cmd->name, url);
    }
    if (timeout) {
        t = strtol(timeout, &end, 10);
        if (end == timeout || *end || t < 1 || t > 60) {
            return apr_psprintf(cmd->pool, "%s: timeout '%s' is not a "
                                "number of seconds from 1 to 60",
                                cmd->cmd->name, timeout);
        }
        conf->od_ask_timeout = (int)t;
    }
    if (ca) {
        ca = ap_server_root_relative(cmd->pool, ca);
        if (!ca || access(ca, R_OK) != 0) {
            return apr_psprintf(cmd->pool, "%s: cannot read the CA file "
                                "'%s'", cmd->cmd->name, ca ? ca : "");
        }
    }
    conf->od_ask = url;
    conf->od_ask_ca = ca;
    return NULL;
}

/* CertServiceOnDemandLimit / CertServiceOnDemandAskLimit N SECONDS
 * (cmd->info: "limit" or "ask"). */
const char *cs_set_od_limit(cmd_parms *cmd, void *dummy, const char *n,
                            const char *seconds)
{
    cs_conf_t *conf = od_conf(cmd);
    char *end;
    long limit, window;

    limit = strtol(n, &end, 10);
    if (end == n || *end || limit < 1 || limit > 1000000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from 1 to "
                            "1000000", cmd->cmd->name, n);
    }
    window = strtol(seconds, &end, 10);
    if (end == seconds || *end || window < 1 || window > 7 * 86400) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                            "seconds from 1 to 604800", cmd->cmd->name,
                            seconds);
    }
    if (strcmp(cmd->info, "ask") == 0) {
        conf->od_ask_limit = (int)limit;
        conf->od_ask_window = window;
    }
    else {
        conf->od_limit = (int)limit;
        conf->od_window = window;
    }
    return NULL;
}

const char *cs_set_od_refused_ttl(cmd_parms *cmd, void *dummy,
                                  const char *seconds)
{
    char *end;
    long t = strtol(seconds, &end, 10);

    if (end == seconds || *end || t < 1 || t > 30 * 86400) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                            "seconds from 1 to 2592000", cmd->cmd->name,
                            seconds);
    }
    od_conf(cmd)->od_refused_ttl = t;
    return NULL;
}

void cs_od_post_config(server_rec *main_s)
{
    const cs_conf_t *conf;
    const char *main_ask = cs_config_get(main_s)->od_ask;
    server_rec *s;
    int on = 0;

    for (s = main_s; s; s = s->next) {
        conf = cs_config_get(s);
        if (!conf->od_ask || (s != main_s && conf->od_ask == main_ask)) {
            continue;       /* off, or said once for the main server */
        }
        on = 1;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, CSLOGNO(00071)
                     "on-demand issuance: new names are asked about at %s "
                     "(%d s timeout), at most %d asks per %" APR_INT64_T_FMT
                     " s and %d domains added per %" APR_INT64_T_FMT " s "
                     "fleet-wide; a refusal holds %" APR_INT64_T_FMT " s",
                     conf->od_ask, conf->od_ask_timeout, conf->od_ask_limit,
                     conf->od_ask_window, conf->od_limit, conf->od_window,
                     conf->od_refused_ttl);
    }
    if (!on) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main_s, CSLOGNO(00070)
                     "on-demand issuance is off: no CertServiceOnDemandAsk, "
                     "so POST /v1/on-demand refuses every name CertService "
                     "does not know");
    }
}

/* --- POST /v1/on-demand ----------------------------------------------- */

typedef struct {
    cs_req_t *q;
    const char *host;           /* the proxy, as it names itself */
    cs_http_t *http;            /* the ask's client, made on first use */
    apr_time_t deadline;
    apr_int64_t now;
} od_ctx_t;

static json_t *od_result(const char *domain, const char *status,
                         apr_int64_t retry_after, const char *reason)
{
    json_t *j = json_pack("{s:s, s:s}", "domain", domain, "status", status);

    if (retry_after > 0) {
        json_object_set_new(j, "retry_after",
                            json_integer((json_int_t)retry_after));
    }
    if (reason) {
        json_object_set_new(j, "reason", json_string(reason));
    }
    return j;
}

/* An on-demand-refused event, at most CS_OD_EVENTS per hour fleet-wide
 * (a flood of random names must not become a flood of webhooks), one per
 * name and refusal window. */
static void od_event(od_ctx_t *x, const char *domain, const char *why)
{
    const cs_conf_t *conf = x->q->conf;
    cs_event_t ev;
    apr_int64_t retry;
    int granted = 0;

    if (!conf->notify_url && !conf->notify_cmd) {
        return;
    }
    if (cs_store_rate_take(&granted, &retry, &x->q->db, x->q->r->pool,
                           CS_OD_EVENT_LIMITER, x->now, 3600, CS_OD_EVENTS,
                           0) != APR_SUCCESS || !granted) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = CS_EVENT_REFUSED;
    ev.domain = domain;
    ev.detail = why;
    ev.time = x->now;
    cs_notify_emit(x->q->r->server, conf, &x->q->db, x->q->r->pool, &ev,
                   cs_od_event_discriminator(x->q->r->pool, x->now,
                                             conf->od_refused_ttl));
}

/* The ask: 1 yes, 0 no (with *why). */
static int od_ask(od_ctx_t *x, const char *domain, const char **why)
{
    const cs_conf_t *conf = x->q->conf;
    apr_pool_t *p = x->q->r->pool;
    cs_http_conf_t hc;
    cs_http_req_t req;
    cs_http_resp_t resp;
    const char *err = NULL;
    apr_status_t rv;

    if (!x->http) {
        memset(&hc, 0, sizeof(hc));
        hc.protocols = "https,http";
        hc.ca_file = conf->od_ask_ca;
        hc.user_agent = "certservice-on-demand/1";
        hc.timeout = apr_time_from_sec(conf->od_ask_timeout);
        hc.connect_timeout = hc.timeout;
        hc.max_body = 64 * 1024;
        if ((rv = cs_http_curl_create(&x->http, p, &hc))) {
            *why = "cannot make an HTTP client for the ask";
            return 0;
        }
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = cs_od_ask_url(p, conf->od_ask, domain);
    rv = cs_http_send(x->http, &resp, &req, p, &err);
    if (cs_od_ask_allows(rv, rv ? 0 : resp.status)) {
        return 1;
    }
    *why = rv ? apr_psprintf(p, "the ask failed: %s", err ? err : "error")
              : apr_psprintf(p, "the ask answered HTTP %ld", resp.status);
    return 0;
}

/* One name: its result. */
static json_t *od_one(od_ctx_t *x, const cs_od_item_t *it)
{
    cs_req_t *q = x->q;
    const cs_conf_t *conf = q->conf;
    apr_pool_t *p = q->r->pool;
    apr_int64_t retry = 0;
    const char *why = NULL, *what = NULL;
    cs_bundle_t *b;
    cs_od_row_t *row = NULL;
    apr_status_t rv;
    int granted = 0, rc;

    if (!it->name) {
        return od_result(it->raw, "invalid", conf->od_refused_ttl, it->why);
    }
    rv = cs_store_get(&b, &q->db, p, it->name);
    if (rv == APR_SUCCESS) {
        return od_result(it->name, b->serial ? "exists" : "pending", 0,
                         NULL);
    }
    if (!APR_STATUS_IS_NOTFOUND(rv)) {
        goto db_failed;
    }
    if (!conf->od_ask) {
        return od_result(it->name, "refused", conf->od_refused_ttl,
                         "on-demand issuance is off "
                         "(no CertServiceOnDemandAsk)");
    }
    rv = cs_od_get(&row, &q->db, p, it->name);
    if (rv && !APR_STATUS_IS_NOTFOUND(rv)) {
        goto db_failed;
    }
    if (row && row->until <= x->now) {
        row = NULL;                     /* expired: decide again */
    }
    if (row && strcmp(row->verdict, CS_OD_REFUSED) == 0) {
        return od_result(it->name, "refused", row->until - x->now,
                         row->reason);
    }
    if (!row || strcmp(row->verdict, CS_OD_ALLOWED) != 0) {
        if (apr_time_now() > x->deadline) {
            return od_result(it->name, "deferred", CS_OD_RETRY, NULL);
        }
        if ((rv = cs_store_rate_take(&granted, &retry, &q->db, p,
                                     CS_OD_ASK_LIMITER, x->now,
                                     conf->od_ask_window, conf->od_ask_limit,
                                     0))) {
            goto db_failed;
        }
        if (!granted) {
            return od_result(it->name, "limited", retry, "the fleet-wide "
                             "ask budget (CertServiceOnDemandAskLimit) is "
                             "spent");
        }
        if (!od_ask(x, it->name, &why)) {
            if ((rv = cs_od_put(&q->db, p, it->name, CS_OD_REFUSED,
                                x->now + conf->od_refused_ttl, why,
                                x->now))) {
                goto db_failed;
            }
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00072)
                          "on-demand: %s for %s refused: %s", it->name,
                          x->host, why);
            od_event(x, it->name, why);
            return od_result(it->name, "refused", conf->od_refused_ttl, why);
        }
        if ((rv = cs_od_put(&q->db, p, it->name, CS_OD_ALLOWED,
                            x->now + conf->od_refused_ttl, NULL, x->now))) {
            goto db_failed;
        }
    }
    if ((rv = cs_store_rate_take(&granted, &retry, &q->db, p, CS_OD_LIMITER,
                                 x->now, conf->od_window, conf->od_limit,
                                 0))) {
        goto db_failed;
    }
    if (!granted) {
        why = "the fleet-wide on-demand budget (CertServiceOnDemandLimit) "
              "is spent";
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, CSLOGNO(00073)
                      "on-demand: %s allowed, but %s; asked for again in "
                      "%" APR_INT64_T_FMT " s", it->name, why, retry);
        od_event(x, it->name, why);
        return od_result(it->name, "limited", retry, why);
    }
    /* Another proxy's request may have added it meanwhile. */
    if (cs_store_get(&b, &q->db, p, it->name) == APR_SUCCESS) {
        return od_result(it->name, b->serial ? "exists" : "pending", 0,
                         NULL);
    }
    if ((rc = cs_domain_add(q, it->name, conf->key_type, &what, &why))) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, CSLOGNO(00074)
                      "on-demand: %s allowed, but adding it failed (HTTP "
                      "%d): %s", it->name, rc, why);
        return od_result(it->name, "deferred", CS_OD_RETRY * 6, why);
    }
    cs_od_put(&q->db, p, it->name, CS_OD_ADDED,
              x->now + conf->od_refused_ttl, NULL, x->now);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00075)
                  "on-demand: %s %s for %s ('%s')", it->name, what, x->host,
                  q->caller.who);
    return od_result(it->name, what, 0, NULL);

db_failed:
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, CSLOGNO(00076)
                  "on-demand: %s: database: %s", it->name,
                  cs_store_error(&q->db, p, rv));
    return od_result(it->name, "deferred", CS_OD_RETRY, "database error");
}

int cs_post_on_demand(cs_req_t *q)
{
    apr_array_header_t *items;
    const char *body, *host, *err = NULL;
    json_t *results;
    apr_size_t len;
    od_ctx_t x;
    int rc, i;

    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_od_parse_request(&items, &host, q->r->pool, body, len,
                                  CS_OD_MAX_NAMES, &err))) {
        return cs_req_fail(q, rc, err);
    }
    memset(&x, 0, sizeof(x));
    x.q = q;
    x.host = host ? host : q->caller.who;
    x.now = apr_time_sec(apr_time_now());
    x.deadline = apr_time_now() + apr_time_from_sec(CS_OD_REQUEST_BUDGET);
    results = json_array();
    for (i = 0; i < items->nelts; i++) {
        json_array_append_new(results,
                              od_one(&x, &APR_ARRAY_IDX(items, i,
                                                        cs_od_item_t)));
    }
    /* Old verdicts go now and then (one request in 64). */
    if ((x.now & 63) == 0) {
        cs_od_purge(&q->db, q->r->pool, x.now);
    }
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:o}", "results",
                                                 results));
}
