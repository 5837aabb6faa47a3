/*
 * bench/metrics_bench.c: what a scrape of GET /metrics costs the database
 * at N domains (docs/benchmarks.md, "CertService metrics").
 *
 *     make bench/metrics_bench && bench/metrics_bench [N] [DIR]
 *
 * Fills a SQLite store in DIR (default /tmp) with N domains (default
 * 1,000,000): 90% active with certificates expiring over the next 60
 * days, 1% expired, 5% pending, 4% in error; an ACME job per domain (95%
 * valid, 4% failed, 1% queued), 100 hosts, 10 leases.  Then times
 * cs_store_metrics() (the median of 5), with the metrics' indexes and
 * without them (dropped), side by side in one run, and each family's
 * query with the indexes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_db.h"
#include "cs_metrics.h"
#include "cs_store.h"

static void die(cs_db_t *db, apr_pool_t *p, const char *what, int rv)
{
    fprintf(stderr, "metrics_bench: %s: %s\n", what,
            db ? cs_store_error(db, p, rv) : "failed");
    exit(1);
}

static void run(cs_db_t *db, apr_pool_t *p, const char *sql)
{
    int rv = cs_db_run(db, sql);

    if (rv) {
        fprintf(stderr, "metrics_bench: %s: %s\n", sql,
                apr_dbd_error(db->driver, db->handle, rv));
        exit(1);
    }
    (void)p;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Median of 5 runs of cs_store_metrics(), in milliseconds. */
static double time_metrics(cs_db_t *db, apr_pool_t *p, apr_int64_t now,
                           cs_metrics_t *m)
{
    double t[5];
    int i;
    apr_status_t rv;

    for (i = 0; i < 5; i++) {
        apr_pool_t *sp;
        apr_time_t t0;

        apr_pool_create(&sp, p);
        t0 = apr_time_now();
        if ((rv = cs_store_metrics(m, db, sp, now))) {
            die(db, sp, "cs_store_metrics", rv);
        }
        t[i] = (double)(apr_time_now() - t0) / 1000.0;
        if (i < 4) {
            apr_pool_destroy(sp);
        }
    }
    qsort(t, 5, sizeof(t[0]), cmp);
    return t[2];
}

static double time_query(cs_db_t *db, apr_pool_t *p, const char *sql)
{
    apr_array_header_t *rows;
    double t[5];
    int i;

    for (i = 0; i < 5; i++) {
        apr_time_t t0 = apr_time_now();
        apr_status_t rv = cs_db_select(&rows, db, p, sql, "query");

        if (rv) {
            die(db, p, sql, rv);
        }
        t[i] = (double)(apr_time_now() - t0) / 1000.0;
    }
    qsort(t, 5, sizeof(t[0]), cmp);
    return t[2];
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    apr_pool_t *p;
    cs_db_t db;
    cs_metrics_t m;
    const char *file, *err = NULL;
    apr_int64_t now = apr_time_sec(apr_time_now());
    apr_time_t t0;
    double with, without;
    int i;
    static const struct {
        const char *what;
        const char *sql;
    } q[] = {
        { "domains by state",
          "SELECT state, COUNT(*) FROM cs_domains GROUP BY state" },
        { "expiring (7/14/30 d)",
          "SELECT SUM(CASE WHEN not_after < %N7 THEN 1 ELSE 0 END),"
          " SUM(CASE WHEN not_after < %N14 THEN 1 ELSE 0 END), COUNT(*)"
          " FROM cs_domains WHERE not_after >= %N AND not_after < %N30" },
        { "expired",
          "SELECT COUNT(*) FROM cs_domains WHERE not_after > 0"
          " AND not_after < %N" },
        { "ACME queue",
          "SELECT state, COUNT(*) FROM cs_acme_jobs"
          " WHERE state IN ('queued', 'failed') GROUP BY state" },
        { "jobs due",
          "SELECT COUNT(*) FROM cs_acme_jobs WHERE next_at <= %N"
          " AND lease_until < %N" },
        { "hosts and their lag",
          "SELECT h.host, (SELECT c.at FROM cs_changes c WHERE c.seq > h.seq"
          " ORDER BY c.seq LIMIT 1) FROM cs_hosts h" },
        { NULL, NULL }
    };

    if (n < 100) {
        fprintf(stderr, "usage: metrics_bench [N >= 100] [DIR]\n");
        return 2;
    }
    apr_initialize();
    atexit(apr_terminate);
    apr_pool_create(&p, NULL);
    apr_dbd_init(p);
    file = apr_psprintf(p, "%s/metrics_bench.%d.db", dir, (int)getpid());
    memset(&db, 0, sizeof(db));
    if (apr_dbd_get_driver(p, "sqlite3", &db.driver)
        || apr_dbd_open_ex(db.driver, p, file, &db.handle, &err)) {
        fprintf(stderr, "metrics_bench: %s: %s\n", file, err ? err : "?");
        return 1;
    }
    db.prepared = apr_hash_make(p);
    if (cs_store_schema(&db, p)) {
        die(&db, p, "schema", 1);
    }
    printf("# %ld domains in %s\n", n, file);
    t0 = apr_time_now();
    run(&db, p, "BEGIN");
    run(&db, p, apr_psprintf(p,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
        " WHERE x < %ld) INSERT INTO cs_domains (name, state, key_type, seq,"
        " serial, not_before, not_after, chain_pem, key_cms, last_error,"
        " updated, actor) SELECT 'd' || x || '.example',"
        " CASE WHEN x %% 100 < 90 THEN 'active' WHEN x %% 100 < 91"
        " THEN 'active' WHEN x %% 100 < 96 THEN 'pending' ELSE 'error' END,"
        " 'ec-p256', x, CASE WHEN x %% 100 BETWEEN 91 AND 95 THEN NULL"
        " ELSE printf('%%x', x) END,"
        " CASE WHEN x %% 100 BETWEEN 91 AND 95 THEN 0 ELSE %" APR_INT64_T_FMT " END,"
        " CASE WHEN x %% 100 BETWEEN 91 AND 95 THEN 0"
        " WHEN x %% 100 = 90 THEN %" APR_INT64_T_FMT " - 86400"
        " ELSE %" APR_INT64_T_FMT " + (x * 7919) %% (60 * 86400) END,"
        " 'chain', 'key', CASE WHEN x %% 100 >= 96 THEN 'failed' END, %" APR_INT64_T_FMT ","
        " 'bench' FROM c", n, (apr_int64_t)(now - 30 * 86400),
        (apr_int64_t)now, (apr_int64_t)now, (apr_int64_t)now));
    run(&db, p, apr_psprintf(p,
        "INSERT INTO cs_acme_jobs (domain, key_type, state, attempts,"
        " next_at, owner, lease_until, last_error, renew_at, updated)"
        " SELECT name, 'ec-p256', CASE WHEN seq %% 100 >= 96 THEN 'failed'"
        " WHEN seq %% 100 = 95 THEN 'queued' ELSE 'valid' END, 0,"
        " %" APR_INT64_T_FMT " + (seq * 104729) %% (30 * 86400) - 3600, NULL, 0, NULL, 0, 0"
        " FROM cs_domains", (apr_int64_t)now));
    run(&db, p, apr_psprintf(p,
        "INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor,"
        " at) SELECT seq, name, 'upsert', serial, not_after, 'bench',"
        " %" APR_INT64_T_FMT " - (%ld - seq) FROM cs_domains", (apr_int64_t)now, n));
    run(&db, p, apr_psprintf(p,
        "UPDATE cs_counter SET value = %ld WHERE name = 'seq'", n));
    for (i = 0; i < 100; i++) {
        run(&db, p, apr_psprintf(p,
            "INSERT INTO cs_hosts (host, pool, seq, state, failed_json,"
            " reported) VALUES ('proxy%d', 'pool%d', %ld, 'ready', '{}',"
            " %" APR_INT64_T_FMT ")", i, i % 10, n - i * 10, (apr_int64_t)now));
    }
    for (i = 0; i < 10; i++) {
        run(&db, p, apr_psprintf(p,
            "INSERT INTO cs_leases (id, pool, host, expires) VALUES"
            " ('l%d', 'pool%d', 'proxy%d', %" APR_INT64_T_FMT ")", i, i, i,
            (apr_int64_t)now + 600));
    }
    run(&db, p, "COMMIT");
    /* Index the rows (the schema made the indexes before them). */
    run(&db, p, "ANALYZE");
    printf("# filled in %.1f s\n",
           (double)(apr_time_now() - t0) / APR_USEC_PER_SEC);

    with = time_metrics(&db, p, now, &m);
    printf("cs_store_metrics, with the indexes:    %9.1f ms\n", with);
    printf("#   domains active %" APR_INT64_T_FMT ", expiring 7/14/30 d %"
           APR_INT64_T_FMT "/%" APR_INT64_T_FMT "/%" APR_INT64_T_FMT
           ", expired %" APR_INT64_T_FMT ", due %" APR_INT64_T_FMT "\n",
           APR_ARRAY_IDX(m.domains, 0, cs_metric_count_t).count,
           m.expiring[0], m.expiring[1], m.expiring[2], m.expired,
           m.queue_due);
    for (i = 0; q[i].what; i++) {
        char *sql = apr_pstrdup(p, q[i].sql), *s;

        /* %N: now, %N7 ...: now + days */
        while ((s = strstr(sql, "%N"))) {
            int days = atoi(s + 2);
            const char *rest = s + 2;

            while (*rest >= '0' && *rest <= '9') {
                rest++;
            }
            *s = '\0';
            sql = apr_psprintf(p, "%s%" APR_INT64_T_FMT "%s", sql,
                               (apr_int64_t)(now + days * 86400LL), rest);
        }
        printf("  %-24s %9.1f ms\n", q[i].what, time_query(&db, p, sql));
    }
    run(&db, p, "DROP INDEX cs_domains_state");
    run(&db, p, "DROP INDEX cs_domains_not_after");
    run(&db, p, "DROP INDEX cs_acme_jobs_state");
    without = time_metrics(&db, p, now, &m);
    printf("cs_store_metrics, without them:        %9.1f ms (%.1fx)\n",
           without, without / with);
    apr_dbd_close(db.driver, db.handle);
    unlink(file);
    unlink(apr_pstrcat(p, file, "-wal", NULL));
    unlink(apr_pstrcat(p, file, "-shm", NULL));
    return 0;
}
