/*
 * sched_bench.c: the ACME scheduler's throughput with N queued domains,
 * no CA: (1) the pure order (cs_sched_order(): N jobs, new and renewals,
 * earliest deadline first), (2) the queue in the database: N jobs in a
 * SQLite store, then claims in the scheduler's order (cs_acme_drive_claim:
 * the due query ordered by deadline, then the claiming UPDATE) and each
 * released as a renewal would be (cs_store_job_finish), as a worker does
 * before it asks a CA anything.
 *
 * Usage: sched_bench [N [CLAIMS [DBFILE]]]   (defaults 100000, 2000,
 * a temporary file).  Prints one line per part.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_acme_drive.h"
#include "cs_sched.h"
#include "cs_store.h"

static double secs(apr_time_t t0)
{
    return (double)(apr_time_now() - t0) / APR_USEC_PER_SEC;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    int claims = argc > 2 ? atoi(argv[2]) : 2000;
    const char *path = argc > 3 ? argv[3] : NULL, *err = NULL, *domain;
    apr_pool_t *root, *p;
    cs_sched_job_t *jobs;
    const apr_dbd_driver_t *driver;
    cs_acme_policy_t pol;
    cs_acme_drive_t *d;
    cs_db_t db;
    cs_job_t *job;
    apr_file_t *f;
    apr_time_t t0;
    apr_int64_t now = 1700000000;
    int *idx, i, got = 0, rv;
    double s;

    apr_initialize();
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);

    /* (1) The pure order: 70% new domains, 30% renewals of 6- to
     * 90-day certificates at random points of their lives. */
    jobs = malloc((size_t)n * sizeof(*jobs));
    idx = malloc((size_t)n * sizeof(*idx));
    srand(42);
    for (i = 0; i < n; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].queued_at = now - rand() % 86400;
        if (i % 10 < 3) {
            apr_int64_t life = (6 + rand() % 85) * 86400;

            jobs[i].not_before = now - rand() % life;
            jobs[i].not_after = jobs[i].not_before + life;
        }
    }
    t0 = apr_time_now();
    cs_sched_order(idx, jobs, n);
    s = secs(t0);
    printf("order: %d queued domains sorted in %.3f s (%.0f domains/s)\n",
           n, s, n / s);

    /* (2) The queue in SQLite. */
    if (!path) {
        char *tmpl = apr_pstrdup(root, "/tmp/sched_bench_XXXXXX");

        if (apr_file_mktemp(&f, tmpl, APR_FOPEN_CREATE | APR_FOPEN_READ
                            | APR_FOPEN_WRITE | APR_FOPEN_EXCL
                            | APR_FOPEN_DELONCLOSE, root)) {
            fprintf(stderr, "no temporary file\n");
            return 2;
        }
        path = tmpl;
    }
    memset(&db, 0, sizeof(db));
    if (apr_dbd_get_driver(root, "sqlite3", &driver)
        || apr_dbd_open_ex(driver, root, path, &db.handle, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", path, err ? err : "?");
        return 2;
    }
    db.driver = driver;
    db.prepared = apr_hash_make(root);
    if (cs_store_schema(&db, root)) {
        fprintf(stderr, "schema: %s\n", cs_store_error(&db, root, 1));
        return 2;
    }
    /* Filling is not what is measured: no fsync per job. */
    apr_dbd_query(driver, db.handle, &rv, "PRAGMA synchronous = OFF");
    t0 = apr_time_now();
    for (i = 0; i < n; i++) {
        apr_pool_create(&p, root);
        domain = apr_psprintf(p, "d%d.sched.example", i);
        if ((rv = cs_store_job_enqueue(&db, p, domain, "ec-p256", NULL,
                                       jobs[i].queued_at))) {
            fprintf(stderr, "enqueue: %s\n", cs_store_error(&db, p, rv));
            return 2;
        }
        apr_pool_destroy(p);
    }
    printf("queue: %d jobs stored in %.1f s\n", n, secs(t0));
    apr_dbd_query(driver, db.handle, &rv, "PRAGMA synchronous = NORMAL");

    memset(&pol, 0, sizeof(pol));
    pol.directory_url = "https://ca.invalid/dir";
    cs_acme_drive_create(&d, root, &pol, "bench:1:0", NULL, NULL);
    t0 = apr_time_now();
    for (i = 0; i < claims; i++) {
        apr_pool_create(&p, root);
        if (cs_acme_drive_claim(&domain, d, &db, p) || !domain
            || cs_store_job_get(&job, &db, p, domain)) {
            apr_pool_destroy(p);
            break;
        }
        /* Released as issued: due again in 60 days. */
        job->state = "valid";
        job->next_at = now + 60 * 86400;
        cs_store_job_finish(&db, p, job, "bench:1:0");
        got++;
        apr_pool_destroy(p);
    }
    s = secs(t0);
    printf("claims: %d jobs claimed and released in the scheduler's order "
           "with %d queued, in %.2f s (%.0f per second, %.1f ms each)\n",
           got, n, s, got / s, s * 1000 / (got ? got : 1));
    apr_dbd_close(driver, db.handle);
    apr_pool_destroy(root);
    apr_terminate();
    return got == claims ? 0 : 1;
}
