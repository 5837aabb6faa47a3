/*
 * mod_certservice_metrics.c: what an operator watches: GET /metrics
 * (Prometheus text; role admin or metrics), GET /v1/overview (the same
 * numbers as JSON, for the dashboard; role admin) and the read-only
 * dashboard itself, GET /dashboard/ (role admin), whose files are
 * compiled into the module (cs_dashboard_assets.c, made at build time
 * from mod_certservice/dashboard/).
 *
 * The numbers come from the store (cs_store_metrics(), pure) plus what
 * only the configuration knows: the CAs in their order and the order
 * budgets' limits.  Log tags CS00161 ... CS00169 are this file's.
 */
#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_acme_drive.h"
#include "cs_metrics.h"
#include "mod_certservice_private.h"

/* The dashboard's files (cs_dashboard_assets.c, generated). */
typedef struct {
    const char *name;
    const char *type;
    const char *data;
    apr_size_t len;
} cs_asset_t;
extern const cs_asset_t cs_dashboard_assets[];

/* One budget of the configuration: its row and limits. */
static void add_budget(cs_metrics_t *m, const char *scope, const char *ca,
                       int account, const char *row, apr_int64_t limit,
                       apr_int64_t window)
{
    cs_metric_budget_t *b = apr_array_push(m->budgets);
    const cs_rate_row_t *r = NULL;
    int i;

    memset(b, 0, sizeof(*b));
    b->scope = scope;
    b->ca = ca;
    b->account = account;
    b->row = row;
    b->limit = limit;
    b->window = window;
    for (i = 0; m->limiters && i < m->limiters->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(m->limiters, i, cs_rate_row_t).name, row)
            == 0) {
            r = &APR_ARRAY_IDX(m->limiters, i, cs_rate_row_t);
        }
    }
    cs_metrics_budget_left(b, r, m->now);
}

static void add_ca(cs_metrics_t *m, const char *name, int order)
{
    cs_metric_ca_t *c = apr_array_push(m->cas);
    int i;

    memset(c, 0, sizeof(*c));
    c->name = name;
    c->order = order;
    c->state = "unknown";
    for (i = 0; m->ca_health && i < m->ca_health->nelts; i++) {
        const cs_ca_health_t *h = &APR_ARRAY_IDX(m->ca_health, i,
                                                 cs_ca_health_t);

        if (strcmp(h->name, name) == 0) {
            c->state = h->state;
            c->failures = h->failures;
            c->last_ok = h->last_ok;
            c->next_retry = h->next_retry;
            c->last_error = h->last_error;
        }
    }
}

/* The budgets and CAs as the drive names them (cs_acme_budget_row(); the
 * global budget in "orders:all"). */
static void add_acme(cs_metrics_t *m, apr_pool_t *p, const cs_conf_t *conf)
{
    int i, n;

    m->budgets = apr_array_make(p, 4, sizeof(cs_metric_budget_t));
    m->cas = apr_array_make(p, 2, sizeof(cs_metric_ca_t));
    if (!conf->acme_url) {
        return;
    }
    if (conf->acme_global_limit > 0) {
        add_budget(m, "global", NULL, 0, "orders:all",
                   conf->acme_global_limit, conf->acme_global_window);
    }
    add_ca(m, "default", 1);
    for (n = 0; n < (conf->acme_accounts ? conf->acme_accounts : 1); n++) {
        add_budget(m, "account", "default", n + 1,
                   cs_acme_budget_row(p, 0, "default", n), conf->acme_limit,
                   conf->acme_window);
    }
    for (i = 0; conf->acme_issuers && i < conf->acme_issuers->nelts; i++) {
        const cs_acme_issuer_conf_t *is =
            APR_ARRAY_IDX(conf->acme_issuers, i,
                          const cs_acme_issuer_conf_t *);

        add_ca(m, is->name, i + 2);
        for (n = 0; n < (is->accounts ? is->accounts : 1); n++) {
            add_budget(m, "account", is->name, n + 1,
                       cs_acme_budget_row(p, i + 1, is->name, n),
                       is->limit ? is->limit : conf->acme_limit,
                       is->limit ? is->window : conf->acme_window);
        }
    }
}

static int gather(cs_metrics_t *m, cs_req_t *q, const char *what)
{
    apr_time_t t0 = apr_time_now();
    apr_status_t rv;

    if ((rv = cs_store_metrics(m, &q->db, q->r->pool,
                               apr_time_sec(t0)))) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, CSLOGNO(00161)
                      "%s: cannot gather the metrics: %s", what,
                      cs_store_error(&q->db, q->r->pool, rv));
        return cs_db_error(q, rv);
    }
    add_acme(m, q->r->pool, q->conf);
    m->scrape_seconds = (double)(apr_time_now() - t0) / APR_USEC_PER_SEC;
    return DECLINED;
}

/* GET /metrics */
int cs_get_metrics(cs_req_t *q)
{
    cs_metrics_t m;
    int rc;

    if ((rc = gather(&m, q, "GET /metrics")) != DECLINED) {
        return rc;
    }
    ap_set_content_type(q->r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(q->r->headers_out, "Cache-Control", "no-store");
    ap_rputs(cs_metrics_text(q->r->pool, &m), q->r);
    return OK;
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *counts_json(const apr_array_header_t *a)
{
    json_t *o = json_object();
    int i;

    for (i = 0; a && i < a->nelts; i++) {
        const cs_metric_count_t *c = &APR_ARRAY_IDX(a, i, cs_metric_count_t);

        json_object_set_new(o, c->label, json_integer(c->count));
    }
    return o;
}

/* GET /v1/overview: the metrics as JSON, with the CAs' last errors. */
int cs_get_overview(cs_req_t *q)
{
    cs_metrics_t m;
    json_t *j, *arr, *exp;
    int rc, i;

    if ((rc = gather(&m, q, "GET /v1/overview")) != DECLINED) {
        return rc;
    }
    exp = json_object();
    for (i = 0; i < CS_METRICS_WINDOWS; i++) {
        json_object_set_new(exp, apr_itoa(q->r->pool,
                                          cs_metrics_window_days[i]),
                            json_integer(m.expiring[i]));
    }
    j = json_pack("{s:I, s:o, s:o, s:I, s:I, s:b, s:{s:o, s:I}}",
                  "now", (json_int_t)m.now,
                  "domains", counts_json(m.domains),
                  "expiring", exp,
                  "expired", (json_int_t)m.expired,
                  "feed_seq", (json_int_t)m.feed_seq,
                  "acme", q->conf->acme_url != NULL,
                  "queue", "jobs", counts_json(m.queue),
                  "due", (json_int_t)m.queue_due);
    arr = json_array();
    for (i = 0; i < m.hosts->nelts; i++) {
        const cs_metric_host_t *h = &APR_ARRAY_IDX(m.hosts, i,
                                                   cs_metric_host_t);

        json_array_append_new(arr, json_pack(
            "{s:s, s:o, s:o, s:I, s:I, s:I, s:I}", "host", h->host,
            "pool", jstr(h->pool), "state", jstr(h->state),
            "seq", (json_int_t)h->seq, "reported", (json_int_t)h->reported,
            "lag_changes", (json_int_t)h->lag_changes,
            "lag_seconds", (json_int_t)h->lag_seconds));
    }
    json_object_set_new(j, "hosts", arr);
    arr = json_array();
    for (i = 0; i < m.leases->nelts; i++) {
        const cs_metric_leases_t *l = &APR_ARRAY_IDX(m.leases, i,
                                                     cs_metric_leases_t);

        json_array_append_new(arr, json_pack("{s:s, s:I}", "pool", l->pool,
                                             "held", (json_int_t)l->held));
    }
    json_object_set_new(j, "leases", arr);
    arr = json_array();
    for (i = 0; i < m.cas->nelts; i++) {
        const cs_metric_ca_t *c = &APR_ARRAY_IDX(m.cas, i, cs_metric_ca_t);

        json_array_append_new(arr, json_pack(
            "{s:s, s:i, s:s, s:I, s:I, s:I, s:o}", "name", c->name,
            "order", c->order, "state", c->state,
            "failures", (json_int_t)c->failures,
            "last_ok", (json_int_t)c->last_ok,
            "next_retry", (json_int_t)c->next_retry,
            "last_error", jstr(c->last_error)));
    }
    json_object_set_new(j, "cas", arr);
    arr = json_array();
    for (i = 0; i < m.budgets->nelts; i++) {
        const cs_metric_budget_t *b = &APR_ARRAY_IDX(m.budgets, i,
                                                     cs_metric_budget_t);

        json_array_append_new(arr, json_pack(
            "{s:s, s:o, s:i, s:I, s:I, s:I, s:I}", "scope", b->scope,
            "ca", jstr(b->ca), "account", b->account,
            "limit", (json_int_t)b->limit, "window", (json_int_t)b->window,
            "remaining", (json_int_t)b->remaining,
            "paused_until", (json_int_t)b->paused_until));
    }
    json_object_set_new(j, "budgets", arr);
    arr = json_array();
    for (i = 0; i < m.orders->nelts; i++) {
        const cs_metric_order_t *o = &APR_ARRAY_IDX(m.orders, i,
                                                    cs_metric_order_t);

        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:I}", "ca", o->ca, "result", o->result,
            "count", (json_int_t)o->count));
    }
    json_object_set_new(j, "orders", arr);
    return cs_send_json(q->r, HTTP_OK, j);
}

/* GET /dashboard/[FILE]: a file compiled into the module.  The page
 * loads only its own script and style (no inline code), so the policy
 * allows nothing else. */
#define CS_DASHBOARD_CSP "default-src 'none'; script-src 'self'; " \
    "style-src 'self'; connect-src 'self'; img-src 'self'; " \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

int cs_get_dashboard(cs_req_t *q, const char *file)
{
    const cs_asset_t *a;
    request_rec *r = q->r;

    if (!file) {
        /* /dashboard: the page's relative links need the slash. */
        apr_table_setn(r->headers_out, "Location",
                       apr_pstrcat(r->pool, r->uri, "/", NULL));
        return HTTP_MOVED_PERMANENTLY;
    }
    for (a = cs_dashboard_assets; a->name; a++) {
        if (strcmp(a->name, *file ? file : "index.html") == 0) {
            break;
        }
    }
    if (!a->name) {
        return cs_error(r, HTTP_NOT_FOUND, "no such file in the dashboard");
    }
    ap_set_content_type(r, a->type);
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   CS_DASHBOARD_CSP);
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "Referrer-Policy", "no-referrer");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    ap_set_content_length(r, a->len);
    if (!r->header_only) {
        ap_rwrite(a->data, (int)a->len, r);
    }
    return OK;
}
