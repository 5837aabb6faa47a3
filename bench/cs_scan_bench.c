/*
 * cs_scan_bench.c: what the store's periodic and paged queries cost on a
 * large CertService database (bench/certservice_1m.sh fills one).
 *
 *   cs_scan_bench DRIVER PARAMS [ROUNDS]
 *
 * DRIVER is sqlite3 or mysql, PARAMS apr_dbd's.  For the renewal
 * scheduler it picks "now" so that exactly K jobs are due (K = 0, 100,
 * 10,000: the K-th smallest next_at), then times, median of ROUNDS
 * (default 9):
 *
 *   due_prio  cs_store_job_due_prio(now, 8): what an ACME worker asks at
 *             every turn (the store's statements)
 *   old       the statement it ran before (ORDER BY prio over every due
 *             job, no bound), for comparison
 *   due       cs_store_job_due(now, 8) (by due time)
 *
 * and prints the query plans (EXPLAIN QUERY PLAN / EXPLAIN).  Then the
 * paged reads: cs_store_list() (the admin listing, 1000 a page) from the
 * start and from the middle, cs_store_changes() (1000) from 0 and from
 * the middle.  One line per figure: "name K ms".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_db.h"
#include "cs_store.h"

#define OLD_DUE_PRIO "SELECT domain FROM cs_acme_jobs WHERE next_at <= %s" \
    " AND lease_until < %s ORDER BY prio, domain LIMIT 8"

static cs_db_t db;
static int rounds = 9;
static int is_mysql;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static const char *one(apr_pool_t *p, const char *sql)
{
    apr_array_header_t *rows;
    cs_db_row_t r;

    if (cs_db_select(&rows, &db, p, sql, "bench") != APR_SUCCESS
        || rows->nelts < 1) {
        return NULL;
    }
    r = APR_ARRAY_IDX(rows, 0, cs_db_row_t);
    return r[0];
}

static void plan(apr_pool_t *p, const char *label, const char *sql)
{
    apr_array_header_t *rows;
    cs_db_row_t r;
    int i, j, ncols;
    apr_dbd_results_t *res = NULL;

    if (apr_dbd_select(db.driver, p, db.handle, &res,
                       apr_pstrcat(p, is_mysql ? "EXPLAIN " :
                                   "EXPLAIN QUERY PLAN ", sql, NULL), 0)) {
        printf("# plan %s: EXPLAIN failed\n", label);
        return;
    }
    ncols = apr_dbd_num_cols(db.driver, res);
    rows = apr_array_make(p, 4, sizeof(cs_db_row_t));
    for (;;) {
        apr_dbd_row_t *row = NULL;
        if (apr_dbd_get_row(db.driver, p, res, &row, -1) != 0) {
            break;
        }
        r = apr_pcalloc(p, ncols * sizeof(*r));
        for (j = 0; j < ncols; j++) {
            const char *v = apr_dbd_get_entry(db.driver, row, j);
            r[j] = v ? apr_pstrdup(p, v) : "NULL";
        }
        APR_ARRAY_PUSH(rows, cs_db_row_t) = r;
    }
    for (i = 0; i < rows->nelts; i++) {
        r = APR_ARRAY_IDX(rows, i, cs_db_row_t);
        printf("# plan %s:", label);
        for (j = 0; j < ncols; j++) {
            printf(" %s=%s", apr_dbd_get_name(db.driver, res, j), r[j]);
        }
        printf("\n");
    }
}

typedef apr_status_t run_fn(apr_pool_t *p, void *baton);

static double timed(run_fn *fn, void *baton)
{
    double v[64];
    apr_pool_t *p;
    apr_time_t t0;
    int i, n = rounds > 64 ? 64 : rounds;

    for (i = 0; i < n; i++) {
        apr_pool_create(&p, NULL);
        t0 = apr_time_now();
        if (fn(p, baton) != APR_SUCCESS) {
            fprintf(stderr, "failed: %s\n", cs_store_error(&db, p, 1));
            exit(1);
        }
        v[i] = (double)(apr_time_now() - t0) / 1000.0;
        apr_pool_destroy(p);
    }
    return median(v, n);
}

typedef struct {
    apr_int64_t now;
    const char *after;
    int found;
} arg_t;

static apr_status_t run_due_prio(apr_pool_t *p, void *b)
{
    arg_t *a = b;
    apr_array_header_t *d;
    apr_status_t rv = cs_store_job_due_prio(&d, &db, p, a->now, 8);

    a->found = rv == APR_SUCCESS ? d->nelts : -1;
    return rv;
}

static apr_status_t run_due(apr_pool_t *p, void *b)
{
    arg_t *a = b;
    apr_array_header_t *d;
    apr_status_t rv = cs_store_job_due(&d, &db, p, a->now, 8);

    a->found = rv == APR_SUCCESS ? d->nelts : -1;
    return rv;
}

static apr_status_t run_old(apr_pool_t *p, void *b)
{
    arg_t *a = b;
    apr_array_header_t *rows;
    const char *n = apr_psprintf(p, "%" APR_INT64_T_FMT, a->now);
    apr_status_t rv = cs_db_select(&rows, &db, p,
                                   apr_psprintf(p, OLD_DUE_PRIO, n, n),
                                   "old due_prio");

    a->found = rv == APR_SUCCESS ? rows->nelts : -1;
    return rv;
}

static apr_status_t run_list(apr_pool_t *p, void *b)
{
    arg_t *a = b;
    apr_array_header_t *d;
    apr_status_t rv = cs_store_list(&d, &db, p, a->after, 1000);

    a->found = rv == APR_SUCCESS ? d->nelts : -1;
    return rv;
}

static apr_status_t run_changes(apr_pool_t *p, void *b)
{
    arg_t *a = b;
    apr_array_header_t *c;
    apr_int64_t next;
    int more;
    apr_status_t rv = cs_store_changes(&c, &next, &more, &db, p, a->now,
                                       1000);

    a->found = rv == APR_SUCCESS ? c->nelts : -1;
    return rv;
}

int main(int argc, char **argv)
{
    static const int dues[] = { 0, 100, 10000 };
    const apr_dbd_driver_t *driver;
    apr_pool_t *root, *p;
    const char *err = NULL, *v, *s;
    apr_int64_t jobs, maxseq;
    arg_t a;
    double t;
    int i;

    if (argc < 3) {
        fprintf(stderr, "usage: %s sqlite3|mysql PARAMS [ROUNDS]\n",
                argv[0]);
        return 2;
    }
    if (argc > 3) {
        rounds = atoi(argv[3]) > 0 ? atoi(argv[3]) : 9;
    }
    apr_initialize();
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);
    is_mysql = strcmp(argv[1], "mysql") == 0;
    if (apr_dbd_get_driver(root, argv[1], &driver)
        || apr_dbd_open_ex(driver, root, argv[2], &db.handle, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], err ? err : "");
        return 1;
    }
    db.driver = driver;
    db.prepared = apr_hash_make(root);
    apr_pool_create(&p, root);
    if (cs_store_schema(&db, p) != APR_SUCCESS) {
        fprintf(stderr, "schema: %s\n", cs_store_error(&db, p, 1));
        return 1;
    }
    jobs = apr_atoi64(one(p, "SELECT COUNT(*) FROM cs_acme_jobs"));
    maxseq = apr_atoi64(one(p, "SELECT MAX(seq) FROM cs_changes"));
    printf("# %s: %" APR_INT64_T_FMT " jobs, feed up to seq %"
           APR_INT64_T_FMT "\n", argv[1], jobs, maxseq);

    for (i = 0; i < (int)(sizeof(dues) / sizeof(dues[0])); i++) {
        memset(&a, 0, sizeof(a));
        if (dues[i] == 0) {
            v = one(p, "SELECT MIN(next_at) FROM cs_acme_jobs");
            a.now = apr_atoi64(v) - 1;
        }
        else {
            v = one(p, apr_psprintf(p, "SELECT next_at FROM cs_acme_jobs"
                                    " ORDER BY next_at LIMIT 1 OFFSET %d",
                                    dues[i] - 1));
            if (!v) {
                printf("# fewer than %d jobs: skipped\n", dues[i]);
                continue;
            }
            a.now = apr_atoi64(v);
        }
        if (i == 0) {
            s = apr_psprintf(p, "%" APR_INT64_T_FMT, a.now);
            plan(p, "old", apr_psprintf(p, OLD_DUE_PRIO, s, s));
            plan(p, "window", apr_psprintf(p, "SELECT domain, prio, next_at"
                 " FROM cs_acme_jobs WHERE next_at <= %s AND lease_until"
                 " < %s ORDER BY next_at, domain LIMIT 257", s, s));
            plan(p, "bounded", apr_psprintf(p, "SELECT domain FROM"
                 " cs_acme_jobs WHERE prio <= %s AND next_at <= %s AND"
                 " lease_until < %s ORDER BY prio, domain LIMIT 8", s, s,
                 s));
        }
        t = timed(run_due_prio, &a);
        printf("due_prio %d %.3f ms (found %d)\n", dues[i], t, a.found);
        fflush(stdout);
        t = timed(run_old, &a);
        printf("old_due_prio %d %.3f ms (found %d)\n", dues[i], t, a.found);
        fflush(stdout);
        t = timed(run_due, &a);
        printf("due %d %.3f ms (found %d)\n", dues[i], t, a.found);
        fflush(stdout);
    }

    memset(&a, 0, sizeof(a));
    t = timed(run_list, &a);
    printf("list_first_page 1000 %.3f ms (found %d)\n", t, a.found);
    a.after = one(p, apr_psprintf(p, "SELECT name FROM cs_domains ORDER BY"
                                  " name LIMIT 1 OFFSET %" APR_INT64_T_FMT,
                                  jobs / 2));
    t = timed(run_list, &a);
    printf("list_middle_page 1000 %.3f ms (found %d, after %s)\n", t,
           a.found, a.after);
    a.now = 0;
    t = timed(run_changes, &a);
    printf("changes_first_page 1000 %.3f ms (found %d)\n", t, a.found);
    a.now = maxseq / 2;
    t = timed(run_changes, &a);
    printf("changes_middle_page 1000 %.3f ms (found %d)\n", t, a.found);
    apr_dbd_close(driver, db.handle);
    apr_terminate();
    return 0;
}
