/*
 * cs_metrics.h: CertService's numbers for GET /metrics (Prometheus text)
 * and the dashboard: what the store holds, gathered by a few aggregate
 * queries (cs_store_metrics()), and their text (cs_metrics_text()).
 *
 * Pure code: APR and APR-util only, no httpd types.  The glue
 * (mod_certservice_metrics.c) adds what only the configuration knows
 * (the CAs in their order, the order budgets' limits) before formatting.
 */
#ifndef CS_METRICS_H
#define CS_METRICS_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "cs_store.h"

/* Certificates expiring within these many days (cumulative windows). */
#define CS_METRICS_WINDOWS 3
extern const int cs_metrics_window_days[CS_METRICS_WINDOWS];

/** A count by one label (a domain's or an ACME job's state). */
typedef struct {
    const char *label;
    apr_int64_t count;
} cs_metric_count_t;

/** ACME orders tried at a CA, by result (cs_store_order_count()). */
typedef struct {
    const char *ca;
    const char *result;
    apr_int64_t count;
} cs_metric_order_t;

/** Live restart leases of a pool. */
typedef struct {
    const char *pool;
    apr_int64_t held;
} cs_metric_leases_t;

/** A host as its last report left it, and how far it is behind. */
typedef struct {
    const char *host;
    const char *pool;
    const char *state;          /* the rollout state it reported */
    apr_int64_t seq;            /* the feed position it serves */
    apr_int64_t reported;       /* unix seconds of its last report */
    apr_int64_t lag_changes;    /* feed head - seq (never below 0) */
    apr_int64_t lag_seconds;    /* age of the oldest change it lacks; 0:
                                 * none */
} cs_metric_host_t;

/** One order budget (the glue fills limit and window from the
 * configuration; the store row gives what is used). */
typedef struct {
    const char *scope;          /* "account" or "global" */
    const char *ca;             /* NULL for the global budget */
    int account;                /* 1..n; 0 for the global budget */
    const char *row;            /* its limiter row: "orders", ... */
    apr_int64_t limit;          /* orders per window; 0: unlimited */
    apr_int64_t window;         /* seconds */
    apr_int64_t remaining;      /* cs_metrics_budget_left() */
    apr_int64_t paused_until;   /* the CA's Retry-After; 0: none */
} cs_metric_budget_t;

/** One CA of the configuration, in the order orders try them, with the
 * health the instances recorded (state "unknown": never asked yet). */
typedef struct {
    const char *name;
    int order;
    const char *state;          /* "up", "down", "unknown" */
    apr_int64_t failures;       /* consecutive */
    apr_int64_t last_ok;        /* 0: never */
    apr_int64_t next_retry;     /* 0: none */
    const char *last_error;
} cs_metric_ca_t;

typedef struct {
    apr_int64_t now;                    /* unix seconds */
    apr_array_header_t *domains;        /* cs_metric_count_t, by state */
    apr_int64_t expiring[CS_METRICS_WINDOWS];
    apr_int64_t expired;                /* certificates past not_after */
    apr_int64_t feed_seq;               /* the change feed's head */
    apr_array_header_t *queue;          /* cs_metric_count_t: ACME jobs
                                         * not valid, by state */
    apr_int64_t queue_due;              /* jobs due now */
    apr_array_header_t *orders;         /* cs_metric_order_t */
    apr_array_header_t *leases;         /* cs_metric_leases_t */
    apr_array_header_t *hosts;          /* cs_metric_host_t */
    apr_array_header_t *limiters;       /* cs_rate_row_t: the rows
                                         * "orders" and "orders:..." */
    /* Set by the glue (NULL: ACME not configured). */
    apr_array_header_t *budgets;        /* cs_metric_budget_t */
    apr_array_header_t *cas;            /* cs_metric_ca_t */
    apr_array_header_t *ca_health;      /* cs_ca_health_t, from the store */
    double scrape_seconds;              /* set by the glue, or 0 */
} cs_metrics_t;

/**
 * Gather everything the store knows, at now (unix seconds), in a few
 * aggregate queries along indexes (docs/mod_certservice.md, "Metrics",
 * says what each costs).  Returns APR_SUCCESS or a store error
 * (cs_store_error()).
 */
apr_status_t cs_store_metrics(cs_metrics_t *m, cs_db_t *db, apr_pool_t *p,
                              apr_int64_t now);

/**
 * Count one ACME order tried at CA ca with its result ("valid",
 * "failed", "refused", "limited", "down", "unusable") in the
 * database, so that every instance adds to the same counters.
 */
apr_status_t cs_store_order_count(cs_db_t *db, apr_pool_t *p,
                                  const char *ca, const char *result);

/** What GET /v1/domains may filter on (cs_metrics_filter_parse()). */
typedef struct {
    const char *state;          /* NULL: any */
    const char *contains;       /* NULL: any; [a-z0-9.*-] only */
    int expiring_days;          /* 0: any; else a certificate expiring
                                 * within that many days */
} cs_domain_filter_t;

/**
 * Read the filters of GET /v1/domains from its query parameters
 * (cs_query_param_t): state=WORD, q=TEXT (a part of the name, lower
 * case), expiring=DAYS (1..3650).  Returns 0 with *any set when a
 * filter is given, else 400 with *err.
 */
int cs_metrics_filter_parse(cs_domain_filter_t *f, int *any, apr_pool_t *p,
                            const apr_array_header_t *params,
                            const char **err);

/**
 * Domains matching f (array of cs_bundle_t without chain and key), by
 * name after `after`, at most limit; at now for "expiring".
 */
apr_status_t cs_store_domain_search(apr_array_header_t **domains,
                                    cs_db_t *db, apr_pool_t *p,
                                    const cs_domain_filter_t *f,
                                    const char *after, int limit,
                                    apr_int64_t now);

/** What is left of budget b at now given its row (NULL: never used). */
void cs_metrics_budget_left(cs_metric_budget_t *b, const cs_rate_row_t *row,
                            apr_int64_t now);

/** m in the Prometheus text exposition format (version 0.0.4). */
const char *cs_metrics_text(apr_pool_t *p, const cs_metrics_t *m);

/** s as a Prometheus label value (backslash, quote, newline escaped). */
const char *cs_metrics_label(apr_pool_t *p, const char *s);

#endif /* CS_METRICS_H */
