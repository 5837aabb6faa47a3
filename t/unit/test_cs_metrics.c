/*
 * test_cs_metrics.c: CertService's metrics (cs_metrics.h): what the store
 * counts (cs_store_metrics() on a temporary SQLite file filled with known
 * domains, jobs, hosts, leases and orders), the Prometheus text made of
 * it, label escaping, the budgets' arithmetic, and the domain filters of
 * GET /v1/domains.  With CS_TEST_MYSQL (as for test_cs_store.c) the same
 * on MariaDB/MySQL: t/certservice/mariadb_test.sh runs it so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_metrics.h"
#include "cs_request.h"
#include "cs_store.h"
#include "testkit.h"
#include "unit.h"

#define DAY 86400
#define NOW ((apr_int64_t)2000000000)

static apr_pool_t *root;

/* SQLite in file, or with CS_TEST_MYSQL set (t/db/mariadb.sh's
 * parameters) that MariaDB/MySQL database. */
static void open_db(cs_db_t *db, apr_pool_t *p, const char *file)
{
    const char *err = NULL, *mysql = getenv("CS_TEST_MYSQL");
    const char *driver = mysql && *mysql ? "mysql" : "sqlite3";

    memset(db, 0, sizeof(*db));
    if (apr_dbd_get_driver(p, driver, &db->driver) != APR_SUCCESS
        || apr_dbd_open_ex(db->driver, p, mysql && *mysql ? mysql : file,
                           &db->handle, &err) != APR_SUCCESS) {
        fprintf(stderr, "%s: %s\n", driver, err ? err : "no driver");
        exit(2);
    }
    db->prepared = apr_hash_make(p);
}

/* MySQL: a database of earlier runs loses its cs_* tables. */
static void drop_tables(cs_db_t *db, apr_pool_t *p)
{
    apr_array_header_t *rows;
    int i;

    if (strcmp(apr_dbd_name(db->driver), "mysql") != 0
        || cs_db_select(&rows, db, p, "SHOW TABLES LIKE 'cs\\_%'",
                        "tables")) {
        return;
    }
    for (i = 0; i < rows->nelts; i++) {
        cs_db_run(db, apr_pstrcat(p, "DROP TABLE ",
                                  APR_ARRAY_IDX(rows, i, cs_db_row_t)[0],
                                  NULL));
    }
}

/* A domain with a certificate expiring at not_after. */
static void put(cs_db_t *db, apr_pool_t *p, const char *name,
                apr_int64_t not_after)
{
    cs_bundle_t b;

    memset(&b, 0, sizeof(b));
    b.domain = name;
    b.state = "active";
    b.serial = apr_psprintf(p, "%llx", (unsigned long long)not_after);
    b.not_before = not_after - 30 * DAY;
    b.not_after = not_after;
    b.key_type = "ec-p256";
    b.chain_pem = "x";
    b.key_cms = "y";
    CHECK_EQ_INT(cs_store_put_bundle(db, p, &b, "test"), APR_SUCCESS);
}

static int has_line(const char *text, const char *line)
{
    const char *s = text;
    size_t n = strlen(line);

    while ((s = strstr(s, line))) {
        if ((s == text || s[-1] == '\n') && s[n] == '\n') {
            return 1;
        }
        s += n;
    }
    return 0;
}

/* On the first failure, the whole text once. */
static int shown;
#define CHECK_LINE(text, line)                                           \
    do {                                                                 \
        if (!unit_check(has_line(text, line), __FILE__, __LINE__,        \
                        "line: " line) && !shown++) {                    \
            printf("%s", text);                                          \
        }                                                                \
    } while (0)

static void test_store(apr_pool_t *p, const char *dir)
{
    cs_db_t db;
    cs_metrics_t m;
    const char *text, *lease;
    apr_int64_t exp, ra, seq;
    int granted;
    cs_job_t *job;
    apr_array_header_t *changes;

    UNIT_CASE("store: aggregates over known rows");
    open_db(&db, p, apr_pstrcat(p, dir, "/m.db", NULL));
    drop_tables(&db, p);
    CHECK_EQ_INT(cs_store_schema(&db, p), APR_SUCCESS);

    /* Empty: every family present, all zero. */
    CHECK_EQ_INT(cs_store_metrics(&m, &db, p, NOW), APR_SUCCESS);
    text = cs_metrics_text(p, &m);
    CHECK_LINE(text, "certservice_domains{state=\"active\"} 0");
    CHECK_LINE(text, "certservice_domains{state=\"error\"} 0");
    CHECK_LINE(text, "certservice_certificates_expiring{within_days=\"30\"} 0");
    CHECK_LINE(text, "certservice_acme_queue_jobs{state=\"queued\"} 0");
    CHECK_LINE(text, "# TYPE certservice_acme_orders_total counter");
    CHECK_LINE(text, "# TYPE certservice_host_feed_lag_seconds gauge");

    /* Expiry: 3 d, 10 d, 20 d, 60 d from now; one expired; a pending
     * domain (no certificate) and one in error. */
    put(&db, p, "a3.example", NOW + 3 * DAY);
    put(&db, p, "b10.example", NOW + 10 * DAY);
    put(&db, p, "c20.example", NOW + 20 * DAY);
    put(&db, p, "d60.example", NOW + 60 * DAY);
    put(&db, p, "old.example", NOW - DAY);
    CHECK_EQ_INT(cs_store_set_error(&db, p, "bad.example", "CA said no"),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, p, "new.example", "ec-p256",
                                      NULL, NOW - 5), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, p, "later.example", "ec-p256",
                                      NULL, NOW + 500), APR_SUCCESS);
    /* One job failed, due in the future. */
    CHECK_EQ_INT(cs_store_job_get(&job, &db, p, "later.example"),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_claim(&granted, &db, p, "later.example", "w1",
                                    NOW + 600, 60), APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    job->state = "failed";
    job->next_at = NOW + 600;
    CHECK_EQ_INT(cs_store_job_finish(&db, p, job, "w1"), APR_SUCCESS);

    /* Orders: two valid at "default", one down at "backup". */
    CHECK_EQ_INT(cs_store_order_count(&db, p, "default", "valid"),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_order_count(&db, p, "default", "valid"),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_order_count(&db, p, "backup", "down"),
                 APR_SUCCESS);

    /* Hosts: proxy1 at the head, proxy2 two changes behind. */
    CHECK_EQ_INT(cs_store_changes(&changes, &seq, &granted, &db, p, 0, 1000),
                 APR_SUCCESS);
    CHECK_EQ_INT(seq, 5);
    CHECK_EQ_INT(cs_store_host_report(&db, p, "proxy1", "demo", 5, "ready",
                                      "{}", NOW - 10), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&db, p, "proxy2", "demo", 3,
                                      "restart-pending", "{}", NOW - 20),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_lease_acquire(&lease, &exp, &granted, &ra, &db, p,
                                        "demo", "proxy2", 60, 1, NOW - 10),
                 APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);

    CHECK_EQ_INT(cs_store_metrics(&m, &db, p, NOW), APR_SUCCESS);
    text = cs_metrics_text(p, &m);
    if (getenv("CS_METRICS_DUMP")) {
        /* For promtool check metrics (by hand). */
        FILE *f = fopen(getenv("CS_METRICS_DUMP"), "w");

        if (f) {
            fputs(text, f);
            fclose(f);
        }
    }
    CHECK_LINE(text, "certservice_domains{state=\"active\"} 5");
    CHECK_LINE(text, "certservice_domains{state=\"error\"} 1");
    CHECK_LINE(text, "certservice_domains{state=\"pending\"} 0");
    CHECK_LINE(text, "certservice_certificates_expiring{within_days=\"7\"} 1");
    CHECK_LINE(text, "certservice_certificates_expiring{within_days=\"14\"} 2");
    CHECK_LINE(text, "certservice_certificates_expiring{within_days=\"30\"} 3");
    CHECK_LINE(text, "certservice_certificates_expired 1");
    CHECK_LINE(text, "certservice_feed_changes_total 5");
    CHECK_LINE(text, "certservice_acme_queue_jobs{state=\"queued\"} 1");
    CHECK_LINE(text, "certservice_acme_queue_jobs{state=\"failed\"} 1");
    CHECK_LINE(text, "certservice_acme_queue_due_jobs 1");
    CHECK_LINE(text, "certservice_acme_orders_total{ca=\"default\","
                     "result=\"valid\"} 2");
    CHECK_LINE(text, "certservice_acme_orders_total{ca=\"backup\","
                     "result=\"down\"} 1");
    CHECK_LINE(text, "certservice_leases_held{pool=\"demo\"} 1");
    CHECK_LINE(text, "certservice_host_feed_lag_changes{host=\"proxy1\","
                     "pool=\"demo\"} 0");
    CHECK_LINE(text, "certservice_host_feed_lag_changes{host=\"proxy2\","
                     "pool=\"demo\"} 2");
    CHECK_LINE(text, "certservice_host_feed_lag_seconds{host=\"proxy1\","
                     "pool=\"demo\"} 0");
    CHECK_LINE(text, "certservice_host_last_sync_timestamp_seconds"
                     "{host=\"proxy2\",pool=\"demo\"} 1999999980");
    CHECK_LINE(text, "certservice_host_state{host=\"proxy2\",pool=\"demo\","
                     "state=\"restart-pending\"} 1");
    /* proxy2 lacks changes 4 and 5, written by this test at the wall
     * clock: their age at NOW is NOW - (then). */
    {
        const cs_metric_host_t *h = &APR_ARRAY_IDX(m.hosts, 1,
                                                   cs_metric_host_t);

        CHECK_STR(h->host, "proxy2");
        CHECK(h->lag_seconds > 0
              && h->lag_seconds <= NOW - apr_time_sec(apr_time_now()) + 5);
    }
    apr_dbd_close(db.driver, db.handle);
}

static void test_text(apr_pool_t *p)
{
    cs_metrics_t m;
    cs_metric_budget_t *b;
    cs_metric_ca_t *c;
    cs_metric_host_t *h;
    cs_rate_row_t row;
    const char *text;

    UNIT_CASE("labels are escaped");
    CHECK_STR(cs_metrics_label(p, "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    CHECK_STR(cs_metrics_label(p, NULL), "");

    UNIT_CASE("budgets: the window, the pause, unlimited");
    memset(&row, 0, sizeof(row));
    {
        cs_metric_budget_t bb;

        memset(&bb, 0, sizeof(bb));
        bb.limit = 300;
        bb.window = 10800;
        cs_metrics_budget_left(&bb, NULL, NOW);
        CHECK_EQ_INT(bb.remaining, 300);
        row.window_start = NOW - 100;
        row.count = 120;
        cs_metrics_budget_left(&bb, &row, NOW);
        CHECK_EQ_INT(bb.remaining, 180);
        /* The window is over: all of it again. */
        row.window_start = NOW - 10800;
        cs_metrics_budget_left(&bb, &row, NOW);
        CHECK_EQ_INT(bb.remaining, 300);
        row.window_start = NOW - 100;
        row.count = 400;
        cs_metrics_budget_left(&bb, &row, NOW);
        CHECK_EQ_INT(bb.remaining, 0);
        row.count = 1;
        row.paused_until = NOW + 60;
        cs_metrics_budget_left(&bb, &row, NOW);
        CHECK_EQ_INT(bb.remaining, 0);
        CHECK_EQ_INT(bb.paused_until, NOW + 60);
        bb.limit = 0;
        cs_metrics_budget_left(&bb, &row, NOW);
        CHECK_EQ_INT(bb.remaining, -1);
    }

    UNIT_CASE("text: budgets, CAs, odd labels");
    memset(&m, 0, sizeof(m));
    m.budgets = apr_array_make(p, 3, sizeof(cs_metric_budget_t));
    b = apr_array_push(m.budgets);
    memset(b, 0, sizeof(*b));
    b->scope = "account";
    b->ca = "default";
    b->account = 1;
    b->limit = 300;
    b->remaining = 299;
    b = apr_array_push(m.budgets);
    memset(b, 0, sizeof(*b));
    b->scope = "global";
    b->limit = 30;
    b->remaining = 0;
    b = apr_array_push(m.budgets);
    memset(b, 0, sizeof(*b));
    b->scope = "account";
    b->ca = "backup";
    b->account = 1;
    b->remaining = -1;          /* unlimited: not a sample */
    m.cas = apr_array_make(p, 2, sizeof(cs_metric_ca_t));
    c = apr_array_push(m.cas);
    memset(c, 0, sizeof(*c));
    c->name = "default";
    c->order = 1;
    c->state = "up";
    c->last_ok = NOW - 5;
    c = apr_array_push(m.cas);
    memset(c, 0, sizeof(*c));
    c->name = "backup";
    c->order = 2;
    c->state = "down";
    c->failures = 3;
    m.hosts = apr_array_make(p, 1, sizeof(cs_metric_host_t));
    h = apr_array_push(m.hosts);
    memset(h, 0, sizeof(*h));
    h->host = "we\"ird";
    h->pool = "p";
    h->state = "ready";
    m.scrape_seconds = 0.25;
    text = cs_metrics_text(p, &m);
    CHECK_LINE(text, "certservice_acme_budget_remaining{scope=\"account\","
                     "ca=\"default\",account=\"1\"} 299");
    CHECK_LINE(text, "certservice_acme_budget_remaining{scope=\"global\"} 0");
    CHECK_LINE(text, "certservice_acme_budget_limit{scope=\"global\"} 30");
    CHECK(!strstr(text, "ca=\"backup\",account"));
    CHECK_LINE(text, "certservice_acme_ca_up{ca=\"default\",order=\"1\"} 1");
    CHECK_LINE(text, "certservice_acme_ca_up{ca=\"backup\",order=\"2\"} 0");
    CHECK_LINE(text, "certservice_acme_ca_consecutive_failures"
                     "{ca=\"backup\"} 3");
    CHECK_LINE(text, "certservice_acme_ca_last_success_timestamp_seconds"
                     "{ca=\"default\"} 1999999995");
    CHECK_LINE(text, "certservice_host_state{host=\"we\\\"ird\",pool=\"p\","
                     "state=\"ready\"} 1");
    CHECK_LINE(text, "certservice_metrics_collect_seconds 0.250000");
    /* Every family once, HELP before TYPE, text ends with a newline. */
    CHECK(strstr(text, "# HELP certservice_domains ")
          < strstr(text, "# TYPE certservice_domains gauge"));
    CHECK(text[strlen(text) - 1] == '\n');
    CHECK(strstr(strstr(text, "# TYPE certservice_domains ") + 1,
                 "# TYPE certservice_domains ") == NULL);
}

static void test_filters(apr_pool_t *p, const char *dir)
{
    apr_array_header_t *params, *list;
    cs_domain_filter_t f;
    const char *err = NULL;
    cs_db_t db;
    int any;

    UNIT_CASE("filters: parse");
    CHECK_EQ_INT(cs_query_parse(&params, p, "state=error&q=shop&expiring=14",
                                &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 0);
    CHECK_EQ_INT(any, 1);
    CHECK_STR(f.state, "error");
    CHECK_STR(f.contains, "shop");
    CHECK_EQ_INT(f.expiring_days, 14);
    CHECK_EQ_INT(cs_query_parse(&params, p, "limit=5", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 0);
    CHECK_EQ_INT(any, 0);
    CHECK_EQ_INT(cs_query_parse(&params, p, "q=a%25b", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 400);
    CHECK_EQ_INT(cs_query_parse(&params, p, "q=a_b", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 400);
    CHECK_EQ_INT(cs_query_parse(&params, p, "state=Error'", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 400);
    CHECK_EQ_INT(cs_query_parse(&params, p, "expiring=0", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 400);
    CHECK_EQ_INT(cs_query_parse(&params, p, "expiring=7d", &err), 0);
    CHECK_EQ_INT(cs_metrics_filter_parse(&f, &any, p, params, &err), 400);

    UNIT_CASE("filters: search the store");
    open_db(&db, p, apr_pstrcat(p, dir, "/m.db", NULL));
    memset(&f, 0, sizeof(f));
    f.state = "error";
    CHECK_EQ_INT(cs_store_domain_search(&list, &db, p, &f, NULL, 10, NOW),
                 APR_SUCCESS);
    CHECK_EQ_INT(list->nelts, 1);
    CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "bad.example");
    CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).last_error, "CA said no");
    memset(&f, 0, sizeof(f));
    f.expiring_days = 14;       /* a3, b10 and the expired old */
    CHECK_EQ_INT(cs_store_domain_search(&list, &db, p, &f, NULL, 10, NOW),
                 APR_SUCCESS);
    CHECK_EQ_INT(list->nelts, 3);
    CHECK_STR(APR_ARRAY_IDX(list, 2, cs_bundle_t).domain, "old.example");
    memset(&f, 0, sizeof(f));
    f.contains = "0.ex";        /* b10, c20, d60 */
    CHECK_EQ_INT(cs_store_domain_search(&list, &db, p, &f, "b10.example", 1,
                                        NOW), APR_SUCCESS);
    CHECK_EQ_INT(list->nelts, 1);
    CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "c20.example");
    apr_dbd_close(db.driver, db.handle);
}

int main(void)
{
    apr_pool_t *p;
    char *dir;

    apr_initialize();
    atexit(apr_terminate);
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);
    apr_pool_create(&p, root);
    dir = testkit_tmpdir(p, "cs-metrics");
    test_store(p, dir);
    test_text(p);
    test_filters(p, dir);
    testkit_rm_tree(dir);
    return unit_summary();
}
