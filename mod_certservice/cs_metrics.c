/*
 * cs_metrics.c: CertService's metrics as Prometheus text, the budgets'
 * arithmetic, and the filters of GET /v1/domains (cs_metrics.h).
 *
 * Names follow Prometheus' conventions: the prefix certservice_, base
 * units (seconds, unix timestamps in seconds), _total for counters,
 * one HELP and TYPE line per family, every family present even when it
 * has no sample yet (a dashboard must tell "zero" from "missing").
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "cs_metrics.h"
#include "cs_request.h"

const int cs_metrics_window_days[CS_METRICS_WINDOWS] = { 7, 14, 30 };

/* The domain states a domain can be in (cs_store.h): always exposed. */
static const char *const domain_states[] = { "active", "pending", "error",
                                             NULL };

const char *cs_metrics_label(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *c;
    char *out, *o;

    if (!s) {
        return "";
    }
    for (c = s; *c; c++) {
        n += (*c == '\\' || *c == '"' || *c == '\n') ? 2 : 1;
    }
    o = out = apr_palloc(p, n + 1);
    for (c = s; *c; c++) {
        if (*c == '\\' || *c == '"') {
            *o++ = '\\';
            *o++ = *c;
        }
        else if (*c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        }
        else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

void cs_metrics_budget_left(cs_metric_budget_t *b, const cs_rate_row_t *row,
                            apr_int64_t now)
{
    apr_int64_t used = 0;

    b->paused_until = row && row->paused_until > now ? row->paused_until : 0;
    if (b->limit <= 0) {
        b->remaining = -1;
        return;
    }
    /* A fixed window from its first order (cs_sched_rate_take()): over
     * once window seconds have passed. */
    if (row && now < row->window_start + b->window) {
        used = row->count;
    }
    b->remaining = b->paused_until ? 0
                   : used >= b->limit ? 0 : b->limit - used;
}

/* ------------------------------------------------------------------ */
/* Text                                                                */
/* ------------------------------------------------------------------ */

typedef struct {
    apr_pool_t *p;
    apr_array_header_t *parts;
} text_t;

static void put(text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(text_t *t, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    APR_ARRAY_PUSH(t->parts, const char *) = apr_pvsprintf(t->p, fmt, ap);
    va_end(ap);
}

static void family(text_t *t, const char *name, const char *type,
                   const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *L(text_t *t, const char *s)
{
    return cs_metrics_label(t->p, s);
}

static apr_int64_t count_of(const apr_array_header_t *a, const char *label)
{
    int i;

    for (i = 0; a && i < a->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(a, i, cs_metric_count_t).label, label)
            == 0) {
            return APR_ARRAY_IDX(a, i, cs_metric_count_t).count;
        }
    }
    return 0;
}

static int is_domain_state(const char *s)
{
    int i;

    for (i = 0; domain_states[i]; i++) {
        if (strcmp(domain_states[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

static void text_domains(text_t *t, const cs_metrics_t *m)
{
    int i;

    family(t, "certservice_domains", "gauge",
           "Domains CertService holds, by state.");
    for (i = 0; domain_states[i]; i++) {
        put(t, "certservice_domains{state=\"%s\"} %" APR_INT64_T_FMT "\n",
            domain_states[i], count_of(m->domains, domain_states[i]));
    }
    for (i = 0; m->domains && i < m->domains->nelts; i++) {
        const cs_metric_count_t *c = &APR_ARRAY_IDX(m->domains, i,
                                                    cs_metric_count_t);

        if (!is_domain_state(c->label)) {
            put(t, "certservice_domains{state=\"%s\"} %" APR_INT64_T_FMT
                "\n", L(t, c->label), c->count);
        }
    }
    family(t, "certservice_certificates_expiring", "gauge",
           "Certificates that expire within the given number of days and "
           "have no successor yet (not renewed), expired ones excluded.");
    for (i = 0; i < CS_METRICS_WINDOWS; i++) {
        put(t, "certservice_certificates_expiring{within_days=\"%d\"} %"
            APR_INT64_T_FMT "\n", cs_metrics_window_days[i], m->expiring[i]);
    }
    family(t, "certservice_certificates_expired", "gauge",
           "Certificates past their notAfter that have no successor.");
    put(t, "certservice_certificates_expired %" APR_INT64_T_FMT "\n",
        m->expired);
    family(t, "certservice_feed_changes_total", "counter",
           "Changes ever written to the change feed (its head sequence "
           "number).");
    put(t, "certservice_feed_changes_total %" APR_INT64_T_FMT "\n",
        m->feed_seq);
}

static void text_acme(text_t *t, const cs_metrics_t *m)
{
    int i;

    family(t, "certservice_acme_queue_jobs", "gauge",
           "ACME jobs waiting for an order (not valid), by state.");
    put(t, "certservice_acme_queue_jobs{state=\"queued\"} %" APR_INT64_T_FMT
        "\n", count_of(m->queue, "queued"));
    put(t, "certservice_acme_queue_jobs{state=\"failed\"} %" APR_INT64_T_FMT
        "\n", count_of(m->queue, "failed"));
    for (i = 0; m->queue && i < m->queue->nelts; i++) {
        const cs_metric_count_t *c = &APR_ARRAY_IDX(m->queue, i,
                                                    cs_metric_count_t);

        if (strcmp(c->label, "queued") && strcmp(c->label, "failed")) {
            put(t, "certservice_acme_queue_jobs{state=\"%s\"} %"
                APR_INT64_T_FMT "\n", L(t, c->label), c->count);
        }
    }
    family(t, "certservice_acme_queue_due_jobs", "gauge",
           "ACME jobs due now (orders and renewal checks) that no worker "
           "has taken yet.");
    put(t, "certservice_acme_queue_due_jobs %" APR_INT64_T_FMT "\n",
        m->queue_due);
    family(t, "certservice_acme_orders_total", "counter",
           "ACME orders tried, by CA and result (valid, failed, refused, "
           "limited, down, unusable).");
    for (i = 0; m->orders && i < m->orders->nelts; i++) {
        const cs_metric_order_t *o = &APR_ARRAY_IDX(m->orders, i,
                                                    cs_metric_order_t);

        put(t, "certservice_acme_orders_total{ca=\"%s\",result=\"%s\"} %"
            APR_INT64_T_FMT "\n", L(t, o->ca), L(t, o->result), o->count);
    }
    family(t, "certservice_acme_budget_remaining", "gauge",
           "New orders an order budget allows before its window ends "
           "(0 while the CA asked to wait); unlimited budgets are left "
           "out.");
    for (i = 0; m->budgets && i < m->budgets->nelts; i++) {
        const cs_metric_budget_t *b = &APR_ARRAY_IDX(m->budgets, i,
                                                     cs_metric_budget_t);

        if (b->remaining < 0) {
            continue;
        }
        if (b->ca) {
            put(t, "certservice_acme_budget_remaining{scope=\"%s\","
                "ca=\"%s\",account=\"%d\"} %" APR_INT64_T_FMT "\n",
                L(t, b->scope), L(t, b->ca), b->account, b->remaining);
        }
        else {
            put(t, "certservice_acme_budget_remaining{scope=\"%s\"} %"
                APR_INT64_T_FMT "\n", L(t, b->scope), b->remaining);
        }
    }
    family(t, "certservice_acme_budget_limit", "gauge",
           "New orders an order budget allows per window.");
    for (i = 0; m->budgets && i < m->budgets->nelts; i++) {
        const cs_metric_budget_t *b = &APR_ARRAY_IDX(m->budgets, i,
                                                     cs_metric_budget_t);

        if (b->remaining < 0) {
            continue;
        }
        if (b->ca) {
            put(t, "certservice_acme_budget_limit{scope=\"%s\",ca=\"%s\","
                "account=\"%d\"} %" APR_INT64_T_FMT "\n", L(t, b->scope),
                L(t, b->ca), b->account, b->limit);
        }
        else {
            put(t, "certservice_acme_budget_limit{scope=\"%s\"} %"
                APR_INT64_T_FMT "\n", L(t, b->scope), b->limit);
        }
    }
    family(t, "certservice_acme_ca_up", "gauge",
           "1 unless the CA was found down (connection errors, 5xx) at "
           "its last use; order: the place in which orders try it.");
    for (i = 0; m->cas && i < m->cas->nelts; i++) {
        const cs_metric_ca_t *c = &APR_ARRAY_IDX(m->cas, i, cs_metric_ca_t);

        put(t, "certservice_acme_ca_up{ca=\"%s\",order=\"%d\"} %d\n",
            L(t, c->name), c->order, strcmp(c->state, "down") ? 1 : 0);
    }
    family(t, "certservice_acme_ca_consecutive_failures", "gauge",
           "Consecutive times the CA was found down.");
    for (i = 0; m->cas && i < m->cas->nelts; i++) {
        const cs_metric_ca_t *c = &APR_ARRAY_IDX(m->cas, i, cs_metric_ca_t);

        put(t, "certservice_acme_ca_consecutive_failures{ca=\"%s\"} %"
            APR_INT64_T_FMT "\n", L(t, c->name), c->failures);
    }
    family(t, "certservice_acme_ca_last_success_timestamp_seconds", "gauge",
           "When the CA last answered (unix time; 0: never).");
    for (i = 0; m->cas && i < m->cas->nelts; i++) {
        const cs_metric_ca_t *c = &APR_ARRAY_IDX(m->cas, i, cs_metric_ca_t);

        put(t, "certservice_acme_ca_last_success_timestamp_seconds"
            "{ca=\"%s\"} %" APR_INT64_T_FMT "\n", L(t, c->name), c->last_ok);
    }
}

static void text_hosts(text_t *t, const cs_metrics_t *m)
{
    int i;

    family(t, "certservice_leases_held", "gauge",
           "Live restart leases, by pool.");
    for (i = 0; m->leases && i < m->leases->nelts; i++) {
        const cs_metric_leases_t *l = &APR_ARRAY_IDX(m->leases, i,
                                                     cs_metric_leases_t);

        put(t, "certservice_leases_held{pool=\"%s\"} %" APR_INT64_T_FMT "\n",
            L(t, l->pool), l->held);
    }
#define HOSTS(name, type, help, field)                                     \
    family(t, name, type, help);                                           \
    for (i = 0; m->hosts && i < m->hosts->nelts; i++) {                    \
        const cs_metric_host_t *h = &APR_ARRAY_IDX(m->hosts, i,            \
                                                   cs_metric_host_t);      \
        put(t, name "{host=\"%s\",pool=\"%s\"} %" APR_INT64_T_FMT "\n",    \
            L(t, h->host), L(t, h->pool), h->field);                       \
    }
    HOSTS("certservice_host_feed_lag_changes", "gauge",
          "Changes of the feed the host does not serve yet (as of its "
          "last report).", lag_changes)
    HOSTS("certservice_host_feed_lag_seconds", "gauge",
          "Age of the oldest change the host does not serve yet (0: it "
          "serves the feed's head).", lag_seconds)
    HOSTS("certservice_host_last_sync_timestamp_seconds", "gauge",
          "When the host last reported: a proxy reports at the end of "
          "every sync that reached the feed, never after a failed one.",
          reported)
#undef HOSTS
    family(t, "certservice_host_state", "gauge",
           "The rollout state of the host's last report (1 for the state "
           "it is in).");
    for (i = 0; m->hosts && i < m->hosts->nelts; i++) {
        const cs_metric_host_t *h = &APR_ARRAY_IDX(m->hosts, i,
                                                   cs_metric_host_t);

        put(t, "certservice_host_state{host=\"%s\",pool=\"%s\","
            "state=\"%s\"} 1\n", L(t, h->host), L(t, h->pool),
            L(t, h->state));
    }
}

const char *cs_metrics_text(apr_pool_t *p, const cs_metrics_t *m)
{
    text_t t;

    t.p = p;
    t.parts = apr_array_make(p, 128, sizeof(const char *));
    text_domains(&t, m);
    text_acme(&t, m);
    text_hosts(&t, m);
    family(&t, "certservice_metrics_collect_seconds", "gauge",
           "How long gathering these metrics from the database took.");
    put(&t, "certservice_metrics_collect_seconds %.6f\n", m->scrape_seconds);
    return apr_array_pstrcat(p, t.parts, 0);
}

/* ------------------------------------------------------------------ */
/* GET /v1/domains filters                                             */
/* ------------------------------------------------------------------ */

int cs_metrics_filter_parse(cs_domain_filter_t *f, int *any, apr_pool_t *p,
                            const apr_array_header_t *params,
                            const char **err)
{
    const char *v;
    char *end;
    long n;

    memset(f, 0, sizeof(*f));
    *any = 0;
    if ((v = cs_query_get(params, "state")) != NULL) {
        if (!*v || strlen(v) > 16
            || v[strspn(v, "abcdefghijklmnopqrstuvwxyz-")]) {
            *err = "query parameter 'state': a lower-case word (active, "
                   "pending, error)";
            return CS_REQ_BAD;
        }
        f->state = v;
        *any = 1;
    }
    if ((v = cs_query_get(params, "q")) != NULL && *v) {
        /* The characters of a normalised name: nothing LIKE would read
         * as a pattern. */
        if (strlen(v) > 253
            || v[strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789.-*")]) {
            *err = "query parameter 'q': a part of a domain name (lower "
                   "case letters, digits, '.', '-', '*')";
            return CS_REQ_BAD;
        }
        f->contains = v;
        *any = 1;
    }
    if ((v = cs_query_get(params, "expiring")) != NULL) {
        n = strtol(v, &end, 10);
        if (!*v || *end || n < 1 || n > 3650) {
            *err = "query parameter 'expiring': days, 1 to 3650";
            return CS_REQ_BAD;
        }
        f->expiring_days = (int)n;
        *any = 1;
    }
    (void)p;
    return 0;
}
