/*
 * test_cs_store.c: unit tests of CertService's storage (cs_store.h: cs_db.c
 * and cs_store_*.c).
 *
 * Runs on SQLite (a temporary file) by default.  With
 *     CS_TEST_MYSQL="host=127.0.0.1;port=N;user=U;pass=P;dbname=D"
 * it runs the same tests through apr_dbd's mysql driver instead (the
 * database's cs_* tables are dropped first); t/db/mariadb.sh starts a
 * private MariaDB and prints such a string.  CS_TEST_MYSQL2, a second
 * such string (another node of a Galera cluster: t/db/galera_cluster.sh),
 * sends the forked writers of odd pid to it, so the races run between
 * two nodes, where conflicts are certification failures, not lock waits.
 *
 * The key property is the change feed's: a reader paging from any cursor
 * while several processes write sees every seq exactly once, in order,
 * and never a seq appear behind its cursor.  Leases must never be granted
 * beyond max_unavailable, whichever process asks.  Both are checked with
 * forked writers, each on its own connection, as CertService's httpd
 * children or several CertService hosts would be.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_db.h"
#include "cs_store.h"
#include "testkit.h"
#include "unit.h"

#define MAX_EXPECTED 4096

static const char *driver_name;
static const char *params;
static const char *params2;     /* CS_TEST_MYSQL2: odd pids use it */
static const char *sqlite_path;
static apr_pool_t *root;

typedef struct {
    apr_pool_t *pool;
    cs_db_t db;
} conn_t;

/* What the feed must contain, in order: recorded by the single-process
 * tests as they write. */
typedef struct {
    apr_int64_t seq;
    char domain[64];
    char op[8];
    char serial[65];
    int has_serial;
    apr_int64_t not_after;
} expect_t;

static expect_t expected[MAX_EXPECTED];
static int nexpected;

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static conn_t *conn_open(void)
{
    conn_t *c;
    apr_pool_t *p;
    const apr_dbd_driver_t *driver;
    const char *err = NULL;
    apr_status_t rv;

    apr_pool_create(&p, root);
    c = apr_pcalloc(p, sizeof(*c));
    c->pool = p;
    if ((rv = apr_dbd_get_driver(p, driver_name, &driver)) != APR_SUCCESS) {
        fprintf(stderr, "apr_dbd driver %s: error %d\n", driver_name, rv);
        exit(2);
    }
    rv = apr_dbd_open_ex(driver, p, params2 && (getpid() & 1) ? params2
                                                              : params,
                         &c->db.handle, &err);
    if (rv != APR_SUCCESS) {
        fprintf(stderr, "apr_dbd_open %s: %s\n", driver_name,
                err ? err : "failed");
        exit(2);
    }
    c->db.driver = driver;
    /* Owned by the test, in the connection's pool: statements prepared
     * on demand live exactly as long as the connection. */
    c->db.prepared = apr_hash_make(p);
    return c;
}

static void conn_close(conn_t *c)
{
    apr_dbd_close(c->db.driver, c->db.handle);
    apr_pool_destroy(c->pool);
}

static void drop_tables(conn_t *c)
{
    static const char *const tables[] = {
        "cs_counter", "cs_domains", "cs_changes", "cs_pools", "cs_leases",
        "cs_hosts", "cs_acme_jobs", "cs_acme_challenges", "cs_acme_accounts",
        "cs_acme_limits", "cs_notify_events", "cs_acme_tlsalpn", NULL
    };
    char sql[64];
    int i, nrows;

    for (i = 0; tables[i]; i++) {
        apr_snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s",
                     tables[i]);
        apr_dbd_query(c->db.driver, c->db.handle, &nrows, sql);
    }
}

static void expect(apr_int64_t seq, const char *domain, const char *op,
                   const char *serial, apr_int64_t not_after)
{
    expect_t *e = &expected[nexpected++];

    e->seq = seq;
    apr_cpystrn(e->domain, domain, sizeof(e->domain));
    apr_cpystrn(e->op, op, sizeof(e->op));
    e->has_serial = serial != NULL;
    apr_cpystrn(e->serial, serial ? serial : "", sizeof(e->serial));
    e->not_after = not_after;
}

static cs_bundle_t *bundle(apr_pool_t *p, const char *domain,
                           const char *serial, apr_int64_t not_after)
{
    cs_bundle_t *b = apr_pcalloc(p, sizeof(*b));

    b->domain = domain;
    b->serial = serial;
    b->not_before = not_after - 1000;
    b->not_after = not_after;
    b->key_type = "ec-p256";
    b->chain_pem = apr_psprintf(p, "-----BEGIN CERTIFICATE-----\n%s\n"
                                "-----END CERTIFICATE-----\n", serial);
    b->key_cms = apr_psprintf(p, "MII%sKEY", serial);
    return b;
}

/* A put that the single-process tests expect to work. */
static apr_int64_t put(conn_t *c, apr_pool_t *p, const char *domain,
                       const char *serial, apr_int64_t not_after)
{
    cs_bundle_t *b = bundle(p, domain, serial, not_after);
    apr_status_t rv = cs_store_put_bundle(&c->db, p, b, "admin");

    if (!CHECK_EQ_INT(rv, APR_SUCCESS)) {
        printf("  put %s: %s\n", domain, cs_store_error(&c->db, p, rv));
        return -1;
    }
    expect(b->seq, domain, "upsert", serial, not_after);
    return b->seq;
}

static apr_int64_t now_sec(void)
{
    return apr_time_sec(apr_time_now());
}

static int child_wait_all(pid_t *pids, int n)
{
    int i, status, ok = 1;

    for (i = 0; i < n; i++) {
        if (waitpid(pids[i], &status, 0) != pids[i]
            || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ok = 0;
        }
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

/* Before the schema exists: every call fails cleanly with the database's
 * reason, and the connection is still usable afterwards (each failed
 * transaction was ended). */
static void test_errors(void)
{
    conn_t *c;
    apr_pool_t *p;
    cs_bundle_t *got;
    apr_array_header_t *arr;
    apr_int64_t seq, next, exp, retry;
    const char *id;
    apr_status_t rv;
    int more, granted;

    UNIT_CASE("errors: no schema yet");
    c = conn_open();
    p = c->pool;
    drop_tables(c);
    rv = cs_store_get(&got, &c->db, p, "a.example");
    CHECK_EQ_INT(rv, APR_EGENERAL);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "cs_") != NULL);
    rv = cs_store_put_bundle(&c->db, p, bundle(p, "a.example", "01", 1),
                             "admin");
    CHECK_EQ_INT(rv, APR_EGENERAL);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "cs_") != NULL);
    rv = cs_store_delete(&c->db, p, "a.example", "admin", &seq);
    CHECK_EQ_INT(rv, APR_EGENERAL);
    rv = cs_store_set_error(&c->db, p, "a.example", "x");
    CHECK_EQ_INT(rv, APR_EGENERAL);
    rv = cs_store_changes(&arr, &next, &more, &c->db, p, 0, 10);
    CHECK_EQ_INT(rv, APR_EGENERAL);
    rv = cs_store_lease_acquire(&id, &exp, &granted, &retry, &c->db, p,
                                "web", "h1", 60, 1, now_sec());
    CHECK_EQ_INT(rv, APR_EGENERAL);
    rv = cs_store_host_report(&c->db, p, "h1", "web", 1, "ready", "{}",
                              now_sec());
    CHECK_EQ_INT(rv, APR_EGENERAL);
    rv = cs_store_domain_hosts(&arr, &c->db, p, "a.example");
    CHECK_EQ_INT(rv, APR_EGENERAL);

    UNIT_CASE("errors: the connection recovers");
    rv = cs_store_schema(&c->db, p);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_STR(cs_store_error(&c->db, p, APR_SUCCESS), "no error");
    rv = cs_store_put_bundle(&c->db, p, got = bundle(p, "a.example", "01", 1),
                             "admin");
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(got->seq, 1);
    CHECK_STR(cs_store_error(&c->db, p, APR_NOTFOUND),
              apr_psprintf(p, "%pm", &(apr_status_t){ APR_NOTFOUND }));
    conn_close(c);
}

/* Every statement prepared when the connection opens, the way mod_dbd
 * does with what the glue registered: all must prepare on this
 * database, and the store must use them rather than its own. */
static void test_prepared_upfront(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    const cs_statement_t *s;
    apr_dbd_prepared_t *st;
    cs_bundle_t *got;
    apr_array_header_t *arr;
    apr_int64_t next;
    int rv, n = 0, more;

    UNIT_CASE("statements: all prepare, as mod_dbd would");
    for (s = cs_store_statements(); s->label; s++) {
        st = NULL;
        rv = apr_dbd_prepare(c->db.driver, p, c->db.handle, s->sql,
                             s->label, &st);
        if (!CHECK_EQ_INT(rv, 0)) {
            printf("  %s: %s\n", s->label,
                   apr_dbd_error(c->db.driver, c->db.handle, rv));
            continue;
        }
        apr_hash_set(c->db.prepared, s->label, APR_HASH_KEY_STRING, st);
        n++;
    }
    CHECK_EQ_INT(cs_store_get(&got, &c->db, p, "none.example"),
                 APR_NOTFOUND);
    CHECK_EQ_INT(cs_store_changes(&arr, &next, &more, &c->db, p, 0, 5),
                 APR_SUCCESS);
    CHECK_EQ_INT(apr_hash_count(c->db.prepared), n);
    conn_close(c);
}

static void test_schema_race(void)
{
    conn_t *c;
    pid_t pids[3];
    int i;

    UNIT_CASE("schema: created by racing processes");
    c = conn_open();
    drop_tables(c);
    /* No connection may be open across fork (SQLite's locks are per
     * process). */
    conn_close(c);
    for (i = 0; i < 3; i++) {
        if ((pids[i] = fork()) == 0) {
            conn_t *cc = conn_open();
            apr_status_t rv = cs_store_schema(&cc->db, cc->pool);

            if (rv != APR_SUCCESS) {
                fprintf(stderr, "child schema: %s\n",
                        cs_store_error(&cc->db, cc->pool, rv));
            }
            _exit(rv == APR_SUCCESS ? 0 : 1);
        }
    }
    CHECK(child_wait_all(pids, 3));
}

static void test_schema(void)
{
    conn_t *a, *b;
    apr_status_t rv;
    cs_bundle_t *got;

    UNIT_CASE("schema: idempotent");
    a = conn_open();
    rv = cs_store_schema(&a->db, a->pool);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    rv = cs_store_schema(&a->db, a->pool);
    CHECK_EQ_INT(rv, APR_SUCCESS);

    /* Another connection creating the schema (each httpd child does on
     * its first request) leaves this connection's statements working. */
    rv = cs_store_get(&got, &a->db, a->pool, "nothing.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    b = conn_open();
    b->db.prepared = NULL;      /* the hash from the call's pool */
    rv = cs_store_schema(&b->db, b->pool);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK(b->db.prepared != NULL);
    rv = cs_store_get(&got, &b->db, b->pool, "nothing.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    rv = cs_store_get(&got, &a->db, a->pool, "nothing.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    conn_close(b);
    conn_close(a);
}

/* A database made before cs_acme_jobs had its profile column: the
 * schema adds it (the old DDL, verbatim), keeps the rows (profile NULL),
 * and running it again, from another connection, changes nothing. */
static void test_schema_add_column(void)
{
    conn_t *a, *b;
    cs_job_t *job;
    int nrows;

    UNIT_CASE("schema: a column added to an older database (profile)");
    a = conn_open();
    drop_tables(a);
    CHECK_EQ_INT(apr_dbd_query(a->db.driver, a->db.handle, &nrows,
        "CREATE TABLE cs_acme_jobs ("
        " domain VARCHAR(253) NOT NULL PRIMARY KEY,"
        " key_type VARCHAR(16) NOT NULL,"
        " state VARCHAR(16) NOT NULL,"
        " attempts BIGINT NOT NULL,"
        " next_at BIGINT NOT NULL,"
        " owner VARCHAR(64),"
        " lease_until BIGINT NOT NULL,"
        " last_error TEXT,"
        " renew_at BIGINT NOT NULL,"
        " updated BIGINT NOT NULL,"
        " UNIQUE (next_at, domain))"), 0);
    CHECK_EQ_INT(apr_dbd_query(a->db.driver, a->db.handle, &nrows,
        "INSERT INTO cs_acme_jobs VALUES ('old.example', 'ec-p256', 'valid',"
        " 0, 5000, NULL, 0, NULL, 5000, 1000)"), 0);
    CHECK_EQ_INT(cs_store_schema(&a->db, a->pool), APR_SUCCESS);
    if (CHECK_EQ_INT(cs_store_job_get(&job, &a->db, a->pool, "old.example"),
                     APR_SUCCESS)) {
        CHECK_STR(job->state, "valid");
        CHECK(job->profile == NULL);
    }
    b = conn_open();
    CHECK_EQ_INT(cs_store_schema(&b->db, b->pool), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&b->db, b->pool, "old.example",
                                      "ec-p256", "shortlived", 6000),
                 APR_SUCCESS);
    if (CHECK_EQ_INT(cs_store_job_get(&job, &a->db, a->pool, "old.example"),
                     APR_SUCCESS)) {
        CHECK_STR(job->profile, "shortlived");
        CHECK_STR(job->state, "queued");
    }
    CHECK_EQ_INT(cs_store_schema(&a->db, a->pool), APR_SUCCESS);
    conn_close(b);
    conn_close(a);
}

static void test_statements(void)
{
    const cs_statement_t *s;
    int n = 0;

    UNIT_CASE("statements: labelled, no request data in the SQL");
    for (s = cs_store_statements(); s->label; s++) {
        n++;
        CHECK(strncmp(s->label, "cs_", 3) == 0);
        CHECK(s->sql != NULL && *s->sql);
    }
    CHECK(n > 10);
    CHECK(s->sql == NULL);
    /* The store's ids (cs_db.h) index the table: no hole before its end. */
    CHECK_EQ_INT(n, CS_STMT_COUNT);
}

/* ------------------------------------------------------------------ */
/* Domains                                                             */
/* ------------------------------------------------------------------ */

/* Set (error) or clear (NULL) domain's last error, and read the domain
 * back into *got: whether both went through. */
static int error_set(cs_bundle_t **got, conn_t *c, const char *domain,
                     const char *error)
{
    CHECK_EQ_INT(cs_store_set_error(&c->db, c->pool, domain, error),
                 APR_SUCCESS);
    return CHECK_EQ_INT(cs_store_get(got, &c->db, c->pool, domain),
                        APR_SUCCESS);
}

static void test_domains(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    cs_bundle_t *b, *got;
    apr_array_header_t *list;
    apr_status_t rv;
    apr_int64_t s1, s2, s3, seq;
    const char *nasty = "x'); DROP TABLE cs_domains; -- \"%s%lld\\";
    char *big;

    UNIT_CASE("domains: get unknown");
    rv = cs_store_get(&got, &c->db, p, "a.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "a.example") != NULL);

    UNIT_CASE("domains: put and get");
    s1 = put(c, p, "a.example", "0a", 2000000000);
    CHECK_EQ_INT(s1, 1);
    rv = cs_store_get(&got, &c->db, p, "a.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        CHECK_STR(got->domain, "a.example");
        CHECK_EQ_INT(got->seq, s1);
        CHECK_STR(got->state, "active");
        CHECK_STR(got->serial, "0a");
        CHECK_EQ_INT(got->not_before, 2000000000 - 1000);
        CHECK_EQ_INT(got->not_after, 2000000000);
        CHECK_STR(got->key_type, "ec-p256");
        CHECK_STR(got->chain_pem, "-----BEGIN CERTIFICATE-----\n0a\n"
                  "-----END CERTIFICATE-----\n");
        CHECK_STR(got->key_cms, "MII0aKEY");
        CHECK_STR(got->last_error, NULL);
        CHECK(got->updated >= now_sec() - 5 && got->updated <= now_sec());
    }
    s2 = put(c, p, "b.example", "0b", 2000000100);
    CHECK_EQ_INT(s2, s1 + 1);

    UNIT_CASE("domains: renewal replaces");
    b = bundle(p, "a.example", "0c", 2000000200);
    b->key_type = "rsa-2048";
    b->updated = 1234;
    b->last_error = "stored as given";
    rv = cs_store_put_bundle(&c->db, p, b, nasty);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    s3 = b->seq;
    CHECK_EQ_INT(s3, s2 + 1);
    expect(s3, "a.example", "upsert", "0c", 2000000200);
    rv = cs_store_get(&got, &c->db, p, "a.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        CHECK_EQ_INT(got->seq, s3);
        CHECK_STR(got->serial, "0c");
        CHECK_STR(got->key_type, "rsa-2048");
        CHECK_EQ_INT(got->updated, 1234);
        CHECK_STR(got->last_error, b->last_error);
    }

    UNIT_CASE("domains: errors are no change");
    if (error_set(&got, c, "a.example", nasty)) {
        CHECK_STR(got->state, "error");
        CHECK_STR(got->last_error, nasty);
        CHECK_STR(got->serial, "0c");
        CHECK_EQ_INT(got->seq, s3);
    }
    if (error_set(&got, c, "a.example", NULL)) {
        CHECK_STR(got->state, "active");
        CHECK_STR(got->last_error, NULL);
    }
    /* A first issuance that failed: the domain is known, with no
     * certificate. */
    if (error_set(&got, c, "c.example", "acme: rejected")) {
        CHECK_STR(got->state, "error");
        CHECK_STR(got->last_error, "acme: rejected");
        CHECK_STR(got->serial, NULL);
        CHECK_STR(got->key_cms, NULL);
        CHECK_STR(got->chain_pem, NULL);
        CHECK_EQ_INT(got->seq, 0);
        CHECK_EQ_INT(got->not_after, 0);
    }
    if (error_set(&got, c, "c.example", NULL)) {
        CHECK_STR(got->state, "pending");
    }
    /* A long error is cut (at a character boundary), not refused. */
    big = apr_palloc(p, 10001);
    memset(big, 'e', 10000);
    big[3999] = '\xc3';
    big[4000] = '\xa9';
    big[10000] = '\0';
    if (error_set(&got, c, "c.example", big)
        && CHECK(got->last_error != NULL)) {
        CHECK_EQ_INT(strlen(got->last_error), 3999);
    }

    UNIT_CASE("domains: list");
    rv = cs_store_list(&list, &c->db, p, NULL, 10);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(list->nelts, 3)) {
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "a.example");
        CHECK_STR(APR_ARRAY_IDX(list, 1, cs_bundle_t).domain, "b.example");
        CHECK_STR(APR_ARRAY_IDX(list, 2, cs_bundle_t).domain, "c.example");
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).serial, "0c");
        CHECK_EQ_INT(APR_ARRAY_IDX(list, 1, cs_bundle_t).seq, s2);
        CHECK_EQ_INT(APR_ARRAY_IDX(list, 1, cs_bundle_t).not_after,
                     2000000100);
        CHECK_STR(APR_ARRAY_IDX(list, 1, cs_bundle_t).state, "active");
        CHECK_STR(APR_ARRAY_IDX(list, 2, cs_bundle_t).state, "error");
        /* Without the bulky columns. */
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).chain_pem, NULL);
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).key_cms, NULL);
    }
    rv = cs_store_list(&list, &c->db, p, "a.example", 1);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(list->nelts, 1)) {
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "b.example");
    }
    rv = cs_store_list(&list, &c->db, p, "b.example", 5);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(list->nelts, 1)) {
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "c.example");
    }
    rv = cs_store_list(&list, &c->db, p, "c.example", 5);
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        CHECK_EQ_INT(list->nelts, 0);
    }
    rv = cs_store_list(&list, &c->db, p, NULL, 0);
    CHECK_EQ_INT(rv, APR_EINVAL);

    UNIT_CASE("domains: delete");
    rv = cs_store_delete(&c->db, p, "b.example", "admin", &seq);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(seq, s3 + 1);
    expect(seq, "b.example", "delete", NULL, 0);
    rv = cs_store_get(&got, &c->db, p, "b.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    seq = -7;
    rv = cs_store_delete(&c->db, p, "b.example", "admin", &seq);
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    CHECK_EQ_INT(seq, -7);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "b.example") != NULL);
    /* The refused delete used no seq: the next change follows on. */
    CHECK_EQ_INT(put(c, p, "b.example", "0d", 2000000300), s3 + 2);
    /* A domain that never had a certificate is deleted like any. */
    rv = cs_store_delete(&c->db, p, "c.example", NULL, &seq);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(seq, s3 + 3);
    expect(seq, "c.example", "delete", NULL, 0);

    UNIT_CASE("domains: values the schema cannot hold are refused");
    big = apr_palloc(p, 70001);
    memset(big, 'a', 70000);
    big[70000] = '\0';
    b = bundle(p, "big.example", "0e", 2000000400);
    b->chain_pem = big;
    rv = cs_store_put_bundle(&c->db, p, b, "admin");
    CHECK_EQ_INT(rv, APR_EINVAL);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "chain_pem") != NULL);
    big[254] = '\0';
    rv = cs_store_put_bundle(&c->db, p, bundle(p, big, "0f", 1), "admin");
    CHECK_EQ_INT(rv, APR_EINVAL);
    rv = cs_store_get(&got, &c->db, p, big);
    CHECK_EQ_INT(rv, APR_EINVAL);
    rv = cs_store_get(&got, &c->db, p, "");
    CHECK_EQ_INT(rv, APR_EINVAL);
    rv = cs_store_get(&got, &c->db, p, "big.example");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    /* Nothing refused took a seq. */
    CHECK_EQ_INT(put(c, p, "d.example", "10", 2000000500), s3 + 4);

    conn_close(c);
}

/* Another connection changes the schema (a later version adding a
 * table, say): statements this connection prepared before keep working,
 * in and out of transactions. */
static void test_schema_change(void)
{
    conn_t *a = conn_open(), *b = conn_open();
    apr_pool_t *p = a->pool;
    cs_bundle_t *got;
    apr_array_header_t *list;
    apr_status_t rv;
    apr_int64_t s1;
    int nrows;

    UNIT_CASE("schema: changed by another connection");
    s1 = put(a, p, "s.example", "51", 2000000000);
    CHECK(s1 > 0);
    CHECK_EQ_INT(cs_store_get(&got, &a->db, p, "s.example"), APR_SUCCESS);
    CHECK_EQ_INT(apr_dbd_query(b->db.driver, b->db.handle, &nrows,
                               "CREATE TABLE cs_test_extra (x BIGINT)"), 0);
    CHECK_EQ_INT(put(a, p, "s.example", "52", 2000000000), s1 + 1);
    rv = cs_store_get(&got, &a->db, p, "s.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        CHECK_STR(got->serial, "52");
    }
    CHECK_EQ_INT(apr_dbd_query(b->db.driver, b->db.handle, &nrows,
                               "DROP TABLE cs_test_extra"), 0);
    rv = cs_store_list(&list, &a->db, p, "s", 1);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(list->nelts, 1)) {
        CHECK_STR(APR_ARRAY_IDX(list, 0, cs_bundle_t).domain, "s.example");
    }
    CHECK_EQ_INT(cs_store_get(&got, &a->db, p, "s.example"), APR_SUCCESS);
    conn_close(b);
    conn_close(a);
}

/* MySQL: the connection is lost (server restart, wait_timeout) and the
 * client reconnects by itself into a session that knows none of the
 * prepared statements.  At most one call fails, and a write commits whole
 * or not at all (the feed paging test after this finds any gap). */
static apr_status_t kill_session(conn_t *a, conn_t *b)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    const char *id = NULL;
    int nrows;

    if (apr_dbd_select(a->db.driver, a->pool, a->db.handle, &res,
                       "SELECT CONNECTION_ID()", 0) != 0) {
        return APR_EGENERAL;
    }
    while (apr_dbd_get_row(a->db.driver, a->pool, res, &row, -1) == 0) {
        id = apr_pstrdup(a->pool, apr_dbd_get_entry(a->db.driver, row, 0));
        row = NULL;
    }
    if (!id || apr_dbd_query(b->db.driver, b->db.handle, &nrows,
                             apr_pstrcat(a->pool, "KILL ", id, NULL))) {
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

static void test_reconnect(void)
{
    conn_t *a, *b;
    apr_pool_t *p;
    cs_bundle_t *got, *nb;
    apr_status_t rv;
    const char *last = NULL;
    int round, step, failed;
    char serial[8];

    if (strcmp(driver_name, "mysql") != 0) {
        return;
    }
    UNIT_CASE("mysql: at most one call fails across a reconnect");
    a = conn_open();
    b = conn_open();
    p = a->pool;
    for (round = 0; round < 3; round++) {
        /* Different statements prepared before the loss each round. */
        if (round == 1) {
            CHECK_EQ_INT(cs_store_get(&got, &a->db, p, "r.example"),
                         last ? APR_SUCCESS : APR_NOTFOUND);
        }
        CHECK_EQ_INT(kill_session(a, b), APR_SUCCESS);
        failed = 0;
        for (step = 0; step < 6; step++) {
            if (step % 2) {
                rv = cs_store_get(&got, &a->db, p, "r.example");
                if (rv == APR_SUCCESS) {
                    CHECK_STR(got->serial, last);
                }
                else if (!last && rv == APR_NOTFOUND) {
                    rv = APR_SUCCESS;
                }
            }
            else {
                apr_snprintf(serial, sizeof(serial), "7%d%d", round, step);
                nb = bundle(p, "r.example", apr_pstrdup(p, serial),
                            2000000000);
                rv = cs_store_put_bundle(&a->db, p, nb, "admin");
                if (rv == APR_SUCCESS) {
                    expect(nb->seq, "r.example", "upsert", nb->serial,
                           2000000000);
                    last = nb->serial;
                }
            }
            if (rv != APR_SUCCESS) {
                CHECK_EQ_INT(rv, APR_EGENERAL);
                failed++;
            }
        }
        CHECK(failed <= 1);
    }
    CHECK(last != NULL);
    conn_close(b);
    conn_close(a);
}

/* ------------------------------------------------------------------ */
/* The change feed                                                     */
/* ------------------------------------------------------------------ */

static void check_change(const cs_change_t *c, const expect_t *e)
{
    CHECK_EQ_INT(c->seq, e->seq);
    CHECK_STR(c->domain, e->domain);
    CHECK_STR(c->op, e->op);
    CHECK_STR(c->serial, e->has_serial ? e->serial : NULL);
    CHECK_EQ_INT(c->not_after, e->not_after);
}

static void test_feed_paging(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p;
    apr_array_header_t *changes;
    apr_int64_t since, cur, next, n = nexpected;
    apr_status_t rv;
    int limits[] = { 1, 2, 3, 0, 0 };
    int li, more, i, want, pages;

    limits[3] = nexpected;
    limits[4] = nexpected + 5;
    UNIT_CASE("feed: paging from every cursor");
    CHECK(n >= 8);
    /* Recorded seqs are 1..n: the single-process tests wrote them all. */
    for (i = 0; i < n; i++) {
        CHECK_EQ_INT(expected[i].seq, i + 1);
    }
    apr_pool_create(&p, c->pool);
    for (since = 0; since <= n + 2; since++) {
        for (li = 0; li < 5; li++) {
            cur = since;
            pages = 0;
            do {
                apr_pool_clear(p);
                rv = cs_store_changes(&changes, &next, &more, &c->db, p,
                                      cur, limits[li]);
                if (!CHECK_EQ_INT(rv, APR_SUCCESS)) {
                    break;
                }
                want = cur >= n ? 0 : (n - cur < limits[li] ? n - cur
                                                            : limits[li]);
                CHECK_EQ_INT(changes->nelts, want);
                for (i = 0; i < changes->nelts && i < want; i++) {
                    check_change(&APR_ARRAY_IDX(changes, i, cs_change_t),
                                 &expected[cur + i]);
                }
                CHECK_EQ_INT(next, want ? cur + want : cur);
                CHECK_EQ_INT(more, cur + want < n);
                cur = next;
                pages++;
            } while (more && pages <= n + 1);
            CHECK_EQ_INT(cur, since > n ? since : n);
        }
    }
    rv = cs_store_changes(&changes, &next, &more, &c->db, p, 0, 0);
    CHECK_EQ_INT(rv, APR_EINVAL);
    conn_close(c);
}

/* A writer child: puts (and now and then deletes) its own domains,
 * retrying what the database refused for being busy. */
static int feed_writer(int id, int writes)
{
    conn_t *c = conn_open();
    apr_pool_t *p;
    apr_int64_t last = 0, seq;
    apr_status_t rv;
    cs_bundle_t *b;
    int i, tries, live[5] = { 0, 0, 0, 0, 0 };
    char domain[64], serial[32];

    apr_pool_create(&p, c->pool);
    srand(getpid());
    for (i = 0; i < writes; i++) {
        int slot = i % 5, del = live[slot] && (rand() % 4 == 0);

        apr_snprintf(domain, sizeof(domain), "w%d-%d.example", id, slot);
        apr_snprintf(serial, sizeof(serial), "%x%04x", id, i);
        for (tries = 0; tries < 200; tries++) {
            apr_pool_clear(p);
            if (del) {
                rv = cs_store_delete(&c->db, p, domain, "writer", &seq);
            }
            else {
                b = bundle(p, domain, serial, 2000000000 + i);
                rv = cs_store_put_bundle(&c->db, p, b, "writer");
                seq = b->seq;
            }
            if (rv == APR_SUCCESS) {
                break;
            }
            if (rv != APR_EAGAIN) {
                fprintf(stderr, "writer %d: %s\n", id,
                        cs_store_error(&c->db, p, rv));
            }
            apr_sleep(apr_time_from_msec(5 + rand() % 20));
        }
        if (rv != APR_SUCCESS || seq <= last) {
            fprintf(stderr, "writer %d: write %d failed or seq %"
                    APR_INT64_T_FMT " after %" APR_INT64_T_FMT "\n", id, i,
                    seq, last);
            return 1;
        }
        last = seq;
        live[slot] = !del;
        if (rand() % 3 == 0) {
            apr_sleep(rand() % 2000);
        }
    }
    conn_close(c);
    return 0;
}

/* One pass over the whole feed from cursor 0 in small pages: every seq
 * must follow the one before it, so none can ever be skipped. */
static int feed_pass(conn_t *c, apr_pool_t *p, apr_int64_t *total,
                     int limit)
{
    apr_array_header_t *changes;
    apr_int64_t cur = 0, next;
    apr_status_t rv;
    int more, i, ok = 1;

    do {
        apr_pool_clear(p);
        rv = cs_store_changes(&changes, &next, &more, &c->db, p, cur,
                              limit);
        if (rv != APR_SUCCESS) {
            printf("  feed: %s\n", cs_store_error(&c->db, p, rv));
            return 0;
        }
        for (i = 0; i < changes->nelts; i++) {
            if (APR_ARRAY_IDX(changes, i, cs_change_t).seq != cur + 1) {
                printf("  feed: seq %" APR_INT64_T_FMT " after %"
                       APR_INT64_T_FMT "\n",
                       APR_ARRAY_IDX(changes, i, cs_change_t).seq, cur);
                ok = 0;
            }
            cur = APR_ARRAY_IDX(changes, i, cs_change_t).seq;
        }
        if (next != cur || changes->nelts > limit
            || (more && changes->nelts != limit)) {
            ok = 0;
        }
    } while (more && ok);
    *total = cur;
    return ok;
}

static void test_feed_concurrent(void)
{
    enum { WRITERS = 3, WRITES = 60 };
    conn_t *c;
    apr_pool_t *p;
    pid_t pids[WRITERS];
    apr_int64_t start = nexpected, total = 0, prev = 0;
    int i, running, status, passes = 0, ok = 1, grew = 0;
    int done[WRITERS] = { 0 };
    apr_array_header_t *list;
    apr_status_t rv;

    UNIT_CASE("feed: exactly once, in order, under concurrent writers");
    for (i = 0; i < WRITERS; i++) {
        if ((pids[i] = fork()) == 0) {
            _exit(feed_writer(i, WRITES));
        }
    }
    c = conn_open();
    apr_pool_create(&p, c->pool);
    do {
        running = 0;
        for (i = 0; i < WRITERS; i++) {
            if (!done[i]) {
                if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                    done[i] = 1;
                    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                }
                else {
                    running++;
                }
            }
        }
        /* After the last writer ended, one more pass sees everything. */
        if (!feed_pass(c, p, &total, 1 + passes % 4)) {
            ok = 0;
        }
        if (total < prev) {
            ok = 0;
        }
        grew += total > prev;
        prev = total;
        passes++;
    } while (running && ok);
    CHECK(ok);
    CHECK_EQ_INT(total, start + WRITERS * WRITES);
    CHECK(passes >= 2);
    if (!ok) {
        for (i = 0; i < WRITERS; i++) {
            if (!done[i]) {
                waitpid(pids[i], &status, 0);
            }
        }
    }

    /* The feed describes the table: each writer domain's last change
     * matches its row. */
    UNIT_CASE("feed: agrees with the domains");
    apr_pool_clear(p);
    rv = cs_store_list(&list, &c->db, p, "w", 1000);
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        apr_array_header_t *changes;
        apr_hash_t *last = apr_hash_make(p);
        apr_int64_t next;
        int more, live = 0, rows = 0;

        rv = cs_store_changes(&changes, &next, &more, &c->db, p, start,
                              100000);
        CHECK_EQ_INT(rv, APR_SUCCESS);
        for (i = 0; rv == APR_SUCCESS && i < changes->nelts; i++) {
            cs_change_t *ch = &APR_ARRAY_IDX(changes, i, cs_change_t);

            apr_hash_set(last, ch->domain, APR_HASH_KEY_STRING, ch);
        }
        for (i = 0; i < list->nelts; i++) {
            cs_bundle_t *b = &APR_ARRAY_IDX(list, i, cs_bundle_t);
            cs_change_t *ch = apr_hash_get(last, b->domain,
                                           APR_HASH_KEY_STRING);

            if (b->domain[0] != 'w') {
                continue;       /* another test's */
            }
            rows++;
            if (CHECK(ch != NULL)) {
                CHECK_EQ_INT(ch->seq, b->seq);
                CHECK_STR(ch->op, "upsert");
                CHECK_STR(ch->serial, b->serial);
            }
        }
        {
            apr_hash_index_t *hi;

            for (hi = apr_hash_first(p, last); hi; hi = apr_hash_next(hi)) {
                cs_change_t *ch;

                apr_hash_this(hi, NULL, NULL, (void **)&ch);
                live += strcmp(ch->op, "upsert") == 0;
            }
        }
        CHECK_EQ_INT(live, rows);
        CHECK(rows > 0);
    }
    conn_close(c);
    printf("# feed: %d passes from cursor 0, %d of them saw new changes\n",
           passes, grew);
}

/* ------------------------------------------------------------------ */
/* Leases                                                              */
/* ------------------------------------------------------------------ */

static int is_hex32(const char *s)
{
    int i;

    for (i = 0; s && s[i]; i++) {
        if (!strchr("0123456789abcdef", s[i])) {
            return 0;
        }
    }
    return s && i == 32;
}

static void test_leases(void)
{
    /* none may be unavailable, no TTL, no pool name */
    static const struct {
        const char *pool;
        int ttl, max_unavailable;
    } invalid[] = {
        { "web", 60, 0 }, { "web", 0, 1 }, { "", 60, 1 },
    };
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    apr_array_header_t *leases;
    const char *l1, *l2, *l3, *again, *l4, *id;
    apr_int64_t now = now_sec(), exp, retry;
    apr_status_t rv;
    int granted;
    size_t i;

    UNIT_CASE("leases: granted up to max_unavailable");
    rv = cs_store_lease_acquire(&l1, &exp, &granted, &retry, &c->db, p,
                                "web", "h1", 60, 2, now);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    CHECK(is_hex32(l1));
    CHECK_EQ_INT(exp, now + 60);
    rv = cs_store_lease_acquire(&l2, &exp, &granted, &retry, &c->db, p,
                                "web", "h2", 60, 2, now + 1);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    CHECK(is_hex32(l2) && strcmp(l1, l2) != 0);
    CHECK_EQ_INT(exp, now + 61);

    UNIT_CASE("leases: full pool says when to retry");
    retry = 0;
    rv = cs_store_lease_acquire(&l3, &exp, &granted, &retry, &c->db, p,
                                "web", "h3", 60, 2, now + 10);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(retry, 50);
    CHECK(l3 == NULL);

    UNIT_CASE("leases: asking again renews the same lease");
    rv = cs_store_lease_acquire(&again, &exp, &granted, &retry, &c->db, p,
                                "web", "h1", 60, 2, now + 20);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    CHECK_STR(again, l1);
    CHECK_EQ_INT(exp, now + 80);
    rv = cs_store_lease_acquire(&l3, &exp, &granted, &retry, &c->db, p,
                                "web", "h3", 60, 2, now + 20);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(retry, 41);    /* h2's, now the first to expire */
    rv = cs_store_leases(&leases, &c->db, p, "web", now + 20);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(leases->nelts, 2)) {
        CHECK_STR(APR_ARRAY_IDX(leases, 0, cs_lease_t).id, l2);
        CHECK_STR(APR_ARRAY_IDX(leases, 0, cs_lease_t).host, "h2");
        CHECK_EQ_INT(APR_ARRAY_IDX(leases, 0, cs_lease_t).expires, now + 61);
        CHECK_STR(APR_ARRAY_IDX(leases, 1, cs_lease_t).id, l1);
        CHECK_EQ_INT(APR_ARRAY_IDX(leases, 1, cs_lease_t).expires, now + 80);
    }

    UNIT_CASE("leases: release");
    rv = cs_store_lease_release(&c->db, p, "other", l2);
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    rv = cs_store_lease_release(&c->db, p, "web", l2);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    rv = cs_store_lease_release(&c->db, p, "web", l2);
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    rv = cs_store_lease_release(&c->db, p, "web",
                                "00000000000000000000000000000000");
    CHECK_EQ_INT(rv, APR_NOTFOUND);
    CHECK(strstr(cs_store_error(&c->db, p, rv), "no live lease") != NULL);
    rv = cs_store_lease_acquire(&l3, &exp, &granted, &retry, &c->db, p,
                                "web", "h3", 60, 2, now + 20);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);

    UNIT_CASE("leases: expiry frees the slots");
    /* h1's and h3's leases both end at now + 80. */
    rv = cs_store_lease_acquire(&l4, &exp, &granted, &retry, &c->db, p,
                                "web", "h4", 60, 1, now + 79);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(retry, 1);
    rv = cs_store_lease_acquire(&l4, &exp, &granted, &retry, &c->db, p,
                                "web", "h4", 60, 1, now + 80);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    rv = cs_store_leases(&leases, &c->db, p, "web", now + 80);
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(leases->nelts, 1)) {
        CHECK_STR(APR_ARRAY_IDX(leases, 0, cs_lease_t).id, l4);
    }
    /* Dropped when h4 was granted: gone, even for the wall clock. */
    rv = cs_store_lease_release(&c->db, p, "web", l1);
    CHECK_EQ_INT(rv, APR_NOTFOUND);

    UNIT_CASE("leases: pools are independent");
    rv = cs_store_lease_acquire(&id, &exp, &granted, &retry, &c->db, p,
                                "api", "h1", 30, 1, now);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    rv = cs_store_leases(&leases, &c->db, p, "api", now);
    CHECK(rv == APR_SUCCESS && leases->nelts == 1);
    rv = cs_store_lease_release(&c->db, p, "api", id);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    rv = cs_store_lease_release(&c->db, p, "web", l4);
    CHECK_EQ_INT(rv, APR_SUCCESS);

    UNIT_CASE("leases: invalid arguments");
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        rv = cs_store_lease_acquire(&id, &exp, &granted, &retry, &c->db, p,
                                    invalid[i].pool, "h1", invalid[i].ttl,
                                    invalid[i].max_unavailable, now);
        CHECK_EQ_INT(rv, APR_EINVAL);
    }
    conn_close(c);
}

/* Shared between the lease children: how many hold a lease right now,
 * by their own count (raised after the grant, lowered before the
 * release, so it can only under-count the database's view). */
typedef struct {
    volatile int holders;
    volatile int max_holders;
    volatile int grants;
    volatile int refusals;
    volatile int over;
} lease_shared_t;

static int lease_child(lease_shared_t *sh, int id, int attempts, int max)
{
    conn_t *c = conn_open();
    apr_pool_t *p;
    apr_array_header_t *leases;
    const char *lease;
    apr_int64_t exp, retry;
    apr_status_t rv;
    int i, granted, h, m;
    char host[16];

    apr_pool_create(&p, c->pool);
    srand(getpid());
    apr_snprintf(host, sizeof(host), "race%d", id);
    for (i = 0; i < attempts; i++) {
        apr_pool_clear(p);
        rv = cs_store_lease_acquire(&lease, &exp, &granted, &retry, &c->db,
                                    p, "race", host, 60, max, now_sec());
        if (rv != APR_SUCCESS) {
            if (rv != APR_EAGAIN) {
                fprintf(stderr, "lease child %d: %s\n", id,
                        cs_store_error(&c->db, p, rv));
                return 1;
            }
            continue;
        }
        if (!granted) {
            __sync_add_and_fetch(&sh->refusals, 1);
            apr_sleep(500 + rand() % 1500);
            continue;
        }
        h = __sync_add_and_fetch(&sh->holders, 1);
        __sync_add_and_fetch(&sh->grants, 1);
        while ((m = sh->max_holders) < h
               && !__sync_bool_compare_and_swap(&sh->max_holders, m, h)) {
            ;
        }
        /* The database's own view, from inside the critical section. */
        if (cs_store_leases(&leases, &c->db, p, "race", now_sec())
            == APR_SUCCESS && leases->nelts > max) {
            __sync_add_and_fetch(&sh->over, 1);
        }
        apr_sleep(1000 + rand() % 2000);
        __sync_sub_and_fetch(&sh->holders, 1);
        for (m = 0; m < 100; m++) {
            rv = cs_store_lease_release(&c->db, p, "race", lease);
            if (rv != APR_EAGAIN) {
                break;
            }
        }
        if (rv != APR_SUCCESS) {
            fprintf(stderr, "lease child %d: release: %s\n", id,
                    cs_store_error(&c->db, p, rv));
            return 1;
        }
    }
    conn_close(c);
    return 0;
}

static void test_leases_concurrent(void)
{
    enum { CHILDREN = 4, ATTEMPTS = 40, MAX = 2 };
    lease_shared_t *sh;
    pid_t pids[CHILDREN];
    conn_t *c;
    apr_array_header_t *leases;
    apr_status_t rv;
    int i;

    UNIT_CASE("leases: never over-granted across processes");
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(sh != MAP_FAILED)) {
        return;
    }
    memset((void *)sh, 0, sizeof(*sh));
    for (i = 0; i < CHILDREN; i++) {
        if ((pids[i] = fork()) == 0) {
            _exit(lease_child(sh, i, ATTEMPTS, MAX));
        }
    }
    CHECK(child_wait_all(pids, CHILDREN));
    CHECK(sh->max_holders <= MAX);
    CHECK_EQ_INT(sh->over, 0);
    CHECK_EQ_INT(sh->holders, 0);
    CHECK(sh->grants > 0);
    CHECK(sh->grants + sh->refusals >= CHILDREN);
    c = conn_open();
    rv = cs_store_leases(&leases, &c->db, c->pool, "race", now_sec());
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        CHECK_EQ_INT(leases->nelts, 0);
    }
    conn_close(c);
    printf("# leases: %d granted, %d refused, at most %d held at once\n",
           sh->grants, sh->refusals, sh->max_holders);
    munmap((void *)sh, sizeof(*sh));
}

/* ------------------------------------------------------------------ */
/* Host reports                                                        */
/* ------------------------------------------------------------------ */

static void test_hosts(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    apr_array_header_t *hosts;
    apr_int64_t s1, s2, s3, s4, now = now_sec();
    apr_status_t rv;
    cs_host_serving_t *h;
    const char *want[7];
    int i;

    UNIT_CASE("hosts: which serial each host serves");
    s1 = put(c, p, "x.example", "01", 2000000000);
    s2 = put(c, p, "y.example", "02", 2000000000);
    s3 = put(c, p, "x.example", "03", 2000000000);
    rv = cs_store_delete(&c->db, p, "x.example", "admin", &s4);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    expect(s4, "x.example", "delete", NULL, 0);
    CHECK(s1 < s2 && s2 < s3 && s3 < s4);

    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h0", "web", 0, "idle",
                                      "{}", now), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h1", "web", s1 - 1,
                                      "idle", "{}", now), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h2", "web", s1,
                                      "ready", "{\"y.example\":\"bad\"}",
                                      now + 1), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h3", "api", s2,
                                      "draining", NULL, now), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h4", "web", s3,
                                      "ready", "{}", now), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h5", "web", s4,
                                      "ready", "{}", now), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h6", "web", s4 + 100,
                                      "ready", "{}", now), APR_SUCCESS);
    want[0] = NULL;
    want[1] = NULL;
    want[2] = "01";
    want[3] = "01";
    want[4] = "03";
    want[5] = NULL;             /* deleted as of its seq */
    want[6] = NULL;
    rv = cs_store_domain_hosts(&hosts, &c->db, p, "x.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(hosts->nelts, 7)) {
        for (i = 0; i < 7; i++) {
            h = &APR_ARRAY_IDX(hosts, i, cs_host_serving_t);
            CHECK_STR(h->host, apr_psprintf(p, "h%d", i));
            CHECK_STR(h->serial, want[i]);
        }
        h = &APR_ARRAY_IDX(hosts, 2, cs_host_serving_t);
        CHECK_STR(h->pool, "web");
        CHECK_EQ_INT(h->seq, s1);
        CHECK_STR(h->state, "ready");
        CHECK_STR(h->failed_json, "{\"y.example\":\"bad\"}");
        CHECK_EQ_INT(h->reported, now + 1);
        h = &APR_ARRAY_IDX(hosts, 3, cs_host_serving_t);
        CHECK_STR(h->pool, "api");
        CHECK_STR(h->state, "draining");
        CHECK_STR(h->failed_json, "{}");
    }
    rv = cs_store_domain_hosts(&hosts, &c->db, p, "y.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(hosts->nelts, 7)) {
        CHECK_STR(APR_ARRAY_IDX(hosts, 2, cs_host_serving_t).serial, NULL);
        CHECK_STR(APR_ARRAY_IDX(hosts, 3, cs_host_serving_t).serial, "02");
        CHECK_STR(APR_ARRAY_IDX(hosts, 6, cs_host_serving_t).serial, "02");
    }

    UNIT_CASE("hosts: a report replaces the last one");
    /* Exactly the same report again: MySQL counts no changed row. */
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h2", "web", s1,
                                      "ready", "{\"y.example\":\"bad\"}",
                                      now + 1), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_host_report(&c->db, p, "h1", "api", s3,
                                      "ready", "{}", now + 2), APR_SUCCESS);
    rv = cs_store_domain_hosts(&hosts, &c->db, p, "x.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(hosts->nelts, 7)) {
        h = &APR_ARRAY_IDX(hosts, 1, cs_host_serving_t);
        CHECK_STR(h->serial, "03");
        CHECK_STR(h->pool, "api");
        CHECK_EQ_INT(h->seq, s3);
        CHECK_EQ_INT(h->reported, now + 2);
        CHECK_STR(APR_ARRAY_IDX(hosts, 2, cs_host_serving_t).serial, "01");
    }
    rv = cs_store_domain_hosts(&hosts, &c->db, p, "unknown.example");
    if (CHECK_EQ_INT(rv, APR_SUCCESS) && CHECK_EQ_INT(hosts->nelts, 7)) {
        for (i = 0; i < 7; i++) {
            CHECK_STR(APR_ARRAY_IDX(hosts, i, cs_host_serving_t).serial,
                      NULL);
        }
    }
    conn_close(c);
}

/* ------------------------------------------------------------------ */

static void cleanup_sqlite(void)
{
    if (sqlite_path) {
        unlink(sqlite_path);
        unlink(apr_pstrcat(root, sqlite_path, "-wal", NULL));
        unlink(apr_pstrcat(root, sqlite_path, "-shm", NULL));
        unlink(apr_pstrcat(root, sqlite_path, "-journal", NULL));
    }
}

/* cs_store_rate_take() on the "orders" limiter, which must succeed:
 * whether it granted (*ra: the seconds it said to wait). */
static int rate_take(conn_t *c, apr_int64_t now, apr_int64_t window,
                     int limit, apr_int64_t pause, apr_int64_t *ra)
{
    int granted = -1;

    CHECK_EQ_INT(cs_store_rate_take(&granted, ra, &c->db, c->pool, "orders",
                                    now, window, limit, pause),
                 APR_SUCCESS);
    return granted;
}

/* The ACME queue, challenges, accounts and limiter, from two connections
 * (two CertService instances on one database). */
static void test_acme(void)
{
    conn_t *a = conn_open(), *b = conn_open();
    apr_pool_t *p = a->pool;
    apr_array_header_t *due;
    cs_job_t *job, fin;
    const char *v, *kid, *cms;
    apr_int64_t ra;
    int claimed;

    UNIT_CASE("acme: queue");
    drop_tables(a);
    CHECK_EQ_INT(cs_store_schema(&a->db, p), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&a->db, p, "a.example", "ec-p256",
                                      "shortlived", 1000), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "a.example"), APR_SUCCESS);
    CHECK_STR(job->profile, "shortlived");
    CHECK_EQ_INT(cs_store_job_enqueue(&b->db, p, "a.example", "rsa-2048",
                                      NULL, 1000), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&b->db, p, "b.example", "ec-p256",
                                      "tlsserver", 1001), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "a.example"), APR_SUCCESS);
    CHECK_STR(job->key_type, "rsa-2048");
    CHECK_STR(job->state, "queued");
    /* A PUT without a profile goes back to the pool's. */
    CHECK(job->profile == NULL);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "b.example"), APR_SUCCESS);
    CHECK_STR(job->profile, "tlsserver");
    CHECK_EQ_INT(cs_store_job_enqueue(&a->db, p, "c.example", "ec-p256",
                                      "a-profile-name-longer-than-the-sixty-"
                                      "four-bytes-that-the-column-holds", 1000),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "nope.example"),
                 APR_NOTFOUND);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 1000, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 1);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 1001, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 2);

    UNIT_CASE("acme: one claim wins");
    CHECK_EQ_INT(cs_store_job_claim(&claimed, &a->db, p, "a.example", "w1",
                                    1001, 300), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 1);
    CHECK_EQ_INT(cs_store_job_claim(&claimed, &b->db, p, "a.example", "w2",
                                    1001, 300), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 0);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 1001, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 1);
    CHECK_STR(APR_ARRAY_IDX(due, 0, const char *), "b.example");
    /* A claim whose worker died expires. */
    CHECK_EQ_INT(cs_store_job_claim(&claimed, &b->db, p, "a.example", "w2",
                                    1302, 300), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 1);
    /* Only the owner records the outcome. */
    memset(&fin, 0, sizeof(fin));
    fin.domain = "a.example";
    fin.state = "valid";
    fin.next_at = 5000;
    fin.renew_at = 5000;
    CHECK_EQ_INT(cs_store_job_finish(&a->db, p, &fin, "w1"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "a.example"), APR_SUCCESS);
    CHECK_STR(job->state, "queued");
    CHECK_EQ_INT(cs_store_job_finish(&a->db, p, &fin, "w2"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_get(&job, &a->db, p, "a.example"), APR_SUCCESS);
    CHECK_STR(job->state, "valid");
    CHECK_EQ_INT(job->next_at, 5000);
    CHECK(job->owner == NULL);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 4999, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 1);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 5000, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 2);
    CHECK_EQ_INT(cs_store_job_delete(&b->db, p, "b.example"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_due(&due, &b->db, p, 5000, 10), APR_SUCCESS);
    CHECK_EQ_INT(due->nelts, 1);

    UNIT_CASE("acme: challenges");
    CHECK_EQ_INT(cs_store_challenge_put(&a->db, p, "tok-1", "a.example",
                                        "tok-1.thumb", APR_INT64_MAX / 2),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_challenge_get(&v, &b->db, p, "tok-1", 1000),
                 APR_SUCCESS);
    CHECK_STR(v, "tok-1.thumb");
    CHECK_EQ_INT(cs_store_challenge_get(&v, &b->db, p, "tok-2", 1000),
                 APR_NOTFOUND);
    CHECK_EQ_INT(cs_store_challenge_get(&v, &b->db, p, "tok-1",
                                        APR_INT64_MAX / 2), APR_NOTFOUND);
    CHECK_EQ_INT(cs_store_challenge_delete(&b->db, p, "tok-1"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_challenge_get(&v, &a->db, p, "tok-1", 1000),
                 APR_NOTFOUND);

    UNIT_CASE("acme: tls-alpn-01 certificates");
    {
        cs_tlsalpn_t t = { "a.example", "-----BEGIN CERTIFICATE-----\n",
                           "c2VhbGVk", APR_INT64_MAX / 2 }, *got;

        CHECK_EQ_INT(cs_store_tlsalpn_get(&got, &b->db, p, "a.example", 1000),
                     APR_NOTFOUND);
        CHECK_EQ_INT(cs_store_tlsalpn_put(&a->db, p, &t), APR_SUCCESS);
        /* A retried order replaces it. */
        t.key_cms = "c2VhbGVkMg==";
        CHECK_EQ_INT(cs_store_tlsalpn_put(&a->db, p, &t), APR_SUCCESS);
        if (CHECK_EQ_INT(cs_store_tlsalpn_get(&got, &b->db, p, "a.example",
                                              1000), APR_SUCCESS)) {
            CHECK_STR(got->cert_pem, t.cert_pem);
            CHECK_STR(got->key_cms, "c2VhbGVkMg==");
            CHECK(got->expires == APR_INT64_MAX / 2);
        }
        CHECK_EQ_INT(cs_store_tlsalpn_get(&got, &b->db, p, "a.example",
                                          APR_INT64_MAX / 2), APR_NOTFOUND);
        CHECK_EQ_INT(cs_store_tlsalpn_get(&got, &b->db, p, "b.example",
                                          1000), APR_NOTFOUND);
        CHECK_EQ_INT(cs_store_tlsalpn_delete(&b->db, p, "a.example"),
                     APR_SUCCESS);
        CHECK_EQ_INT(cs_store_tlsalpn_get(&got, &a->db, p, "a.example",
                                          1000), APR_NOTFOUND);
    }

    UNIT_CASE("acme: accounts");
    CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &a->db, p,
                                      "https://ca/dir"), APR_NOTFOUND);
    CHECK_EQ_INT(cs_store_account_put(&a->db, p, "https://ca/dir",
                                      "https://ca/acct/1", "c2VhbGVk", 1),
                 APR_SUCCESS);
    /* The other instance's racing insert fails: it reads ours. */
    CHECK(cs_store_account_put(&b->db, p, "https://ca/dir",
                               "https://ca/acct/2", "b3RoZXI=", 1)
          != APR_SUCCESS);
    CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &b->db, p,
                                      "https://ca/dir"), APR_SUCCESS);
    CHECK_STR(kid, "https://ca/acct/1");
    CHECK_STR(cms, "c2VhbGVk");
    CHECK_EQ_INT(cs_store_account_put(&b->db, p, "https://ca/dir",
                                      "https://ca/acct/1", "bmV3a2V5", 0),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &a->db, p,
                                      "https://ca/dir"), APR_SUCCESS);
    CHECK_STR(cms, "bmV3a2V5");

    UNIT_CASE("acme: one limiter for both instances");
    CHECK_EQ_INT(rate_take(a, 100, 10, 2, 0, &ra), 1);
    CHECK_EQ_INT(rate_take(b, 101, 10, 2, 0, &ra), 1);
    CHECK_EQ_INT(rate_take(a, 102, 10, 2, 0, &ra), 0);
    CHECK_EQ_INT(ra, 8);
    CHECK_EQ_INT(rate_take(b, 110, 10, 2, 0, &ra), 1);
    /* A 429 seen by one instance pauses the other. */
    CHECK_EQ_INT(rate_take(a, 111, 0, 0, 200, &ra), 0);
    CHECK_EQ_INT(rate_take(b, 150, 10, 2, 0, &ra), 0);
    CHECK_EQ_INT(ra, 50);
    CHECK_EQ_INT(rate_take(b, 200, 10, 2, 0, &ra), 1);

    conn_close(b);
    conn_close(a);
}

/* ------------------------------------------------------------------ */
/* 201 or 200: decided inside the transaction                          */
/* ------------------------------------------------------------------ */

enum { RACERS = 8, MIX_OPS = 40 };

/* What one racing operation saw; filled in by the children. */
typedef struct {
    int op;                     /* 'P' put, 'D' delete */
    int ok;                     /* 1: done (a seq); 0: delete found none */
    int created;                /* put: b->created */
    apr_int64_t seq;
} race_op_t;

typedef struct {
    race_op_t ops[RACERS][MIX_OPS];
    int n[RACERS];
    int failed[RACERS];
} race_t;

/* One racer: ops puts (or, mixed, puts and deletes) of one name, each
 * retried while the database is busy. */
static int racer(race_t *sh, int id, const char *domain, int ops, int mix)
{
    conn_t *c = conn_open();
    apr_pool_t *p;
    apr_status_t rv = APR_SUCCESS;
    cs_bundle_t *b;
    int i, tries;

    apr_pool_create(&p, c->pool);
    srand(getpid());
    for (i = 0; i < ops; i++) {
        race_op_t *o = &sh->ops[id][i];

        o->op = mix && rand() % 2 ? 'D' : 'P';
        for (tries = 0; tries < 400; tries++) {
            apr_pool_clear(p);
            if (o->op == 'D') {
                rv = cs_store_delete(&c->db, p, domain, "racer", &o->seq);
                o->ok = rv == APR_SUCCESS;
                if (APR_STATUS_IS_NOTFOUND(rv)) {
                    rv = APR_SUCCESS;
                }
            }
            else {
                b = bundle(p, domain, apr_psprintf(p, "%x%02x", id, i),
                           2000000000);
                rv = cs_store_put_bundle(&c->db, p, b, "racer");
                o->ok = rv == APR_SUCCESS;
                o->created = b->created;
                o->seq = b->seq;
            }
            if (rv != APR_EAGAIN) {
                break;
            }
            apr_sleep(apr_time_from_msec(1 + rand() % 5));
        }
        if (rv != APR_SUCCESS) {
            fprintf(stderr, "racer %d: %s\n", id,
                    cs_store_error(&c->db, p, rv));
            sh->failed[id] = 1;
            break;
        }
        sh->n[id] = i + 1;
    }
    conn_close(c);
    return 0;
}

static race_t *race(const char *domain, int ops, int mix)
{
    race_t *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[RACERS];
    int i, status;

    if (sh == MAP_FAILED) {
        return NULL;
    }
    memset(sh, 0, sizeof(*sh));
    for (i = 0; i < RACERS; i++) {
        if ((pids[i] = fork()) == 0) {
            _exit(racer(sh, i, domain, ops, mix));
        }
    }
    for (i = 0; i < RACERS; i++) {
        waitpid(pids[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(!sh->failed[i]);
    }
    return sh;
}

static int by_seq(const void *a, const void *b)
{
    const race_op_t *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void test_put_created(void)
{
    race_t *sh;
    race_op_t done[RACERS * MIX_OPS];
    int i, j, n = 0, created = 0, exists = 0, wrong = 0, nputs = 0;

    UNIT_CASE("put: of 8 concurrent PUTs of a new name, one creates it");
    if (!(sh = race("race-new.example", 1, 0))) {
        CHECK(!"mmap");
        return;
    }
    for (i = 0; i < RACERS; i++) {
        CHECK_EQ_INT(sh->n[i], 1);
        created += sh->ops[i][0].ok && sh->ops[i][0].created;
    }
    CHECK_EQ_INT(created, 1);
    munmap(sh, sizeof(*sh));

    /* PUTs and DELETEs of one name: in the order of their seqs (the
     * order of their transactions), each put created the name exactly
     * when it did not exist, and each delete that found it followed a
     * put. */
    UNIT_CASE("put: created agrees with its transaction, mixed with "
              "deletes");
    if (!(sh = race("race-mix.example", MIX_OPS, 1))) {
        CHECK(!"mmap");
        return;
    }
    for (i = 0; i < RACERS; i++) {
        CHECK_EQ_INT(sh->n[i], MIX_OPS);
        for (j = 0; j < sh->n[i]; j++) {
            if (sh->ops[i][j].ok) {
                done[n++] = sh->ops[i][j];
            }
        }
    }
    qsort(done, n, sizeof(done[0]), by_seq);
    for (i = 0; i < n; i++) {
        if (i && done[i].seq == done[i - 1].seq) {
            wrong++;
        }
        if (done[i].op == 'P') {
            nputs++;
            wrong += done[i].created == exists;
            exists = 1;
        }
        else {
            wrong += !exists;
            exists = 0;
        }
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(nputs > 0 && nputs < n);
    printf("# put/delete race: %d writes in order, %d puts\n", n, nputs);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------------ */
/* Conflicts run again (cs_db_tx_run), the scheduler's scan            */
/* ------------------------------------------------------------------ */

typedef struct {
    int runs, conflicts;        /* runs so far; how many conflict */
    int plain;                  /* fail without a conflict instead */
    int logged[2];              /* CS00120, CS00121 lines */
} tx_probe_t;

static void probe_log(void *baton, cs_log_level_t level, const char *msg)
{
    tx_probe_t *t = baton;

    if (strncmp(msg, "CS00120: ", 9) == 0 && level == CS_LOG_INFO) {
        t->logged[0]++;
    }
    if (strncmp(msg, "CS00121: ", 9) == 0 && level == CS_LOG_WARN) {
        t->logged[1]++;
    }
}

/* A body that writes (the counter: its effect must not survive a run
 * that conflicted) and then, the first t->conflicts times, reports a
 * conflict the way cs_db_driver_fail() does for a Galera certification
 * failure. */
static apr_status_t probe_body(cs_db_t *db, apr_pool_t *p, void *baton)
{
    tx_probe_t *t = baton;
    apr_status_t status;

    t->runs++;
    if ((status = cs_db_exec(NULL, db, p, CS_STMT_SEQ_NEXT))) {
        return status;
    }
    if (t->runs <= t->conflicts) {
        if (t->plain) {
            return cs_db_fail(db, APR_EGENERAL, "plain failure");
        }
        db->conflict = 1;
        return cs_db_fail(db, APR_EAGAIN, "Deadlock found (test)");
    }
    return APR_SUCCESS;
}

static apr_int64_t seq_now(conn_t *c, apr_pool_t *p)
{
    cs_db_row_t row = NULL;

    cs_db_enter(&c->db, p);
    if (cs_db_row(&row, &c->db, p, CS_STMT_SEQ_GET) || !row) {
        return -1;
    }
    return cs_db_int(row[0]);
}

static void test_tx_retry(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p;
    apr_status_t rv;
    apr_int64_t before;
    tx_probe_t t;

    apr_pool_create(&p, c->pool);
    c->db.log = probe_log;
    c->db.log_baton = &t;

    UNIT_CASE("tx retry: two conflicts, the third run commits, once");
    memset(&t, 0, sizeof(t));
    t.conflicts = 2;
    before = seq_now(c, p);
    c->db.retries = 0;
    rv = cs_db_tx_run(&c->db, p, "probe", probe_body, &t);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(t.runs, 3);
    CHECK_EQ_INT((int)c->db.retries, 2);
    CHECK_EQ_INT(t.logged[0], 2);
    CHECK_EQ_INT(t.logged[1], 0);
    /* The runs that conflicted were rolled back: one increment. */
    CHECK_EQ_INT((int)(seq_now(c, p) - before), 1);

    UNIT_CASE("tx retry: bounded, logged when it gives up, nothing kept");
    memset(&t, 0, sizeof(t));
    t.conflicts = 1000;
    before = seq_now(c, p);
    rv = cs_db_tx_run(&c->db, p, "probe", probe_body, &t);
    CHECK_EQ_INT(rv, APR_EAGAIN);
    CHECK_EQ_INT(t.runs, 8);
    CHECK_EQ_INT(t.logged[0], 7);
    CHECK_EQ_INT(t.logged[1], 1);
    CHECK_EQ_INT((int)(seq_now(c, p) - before), 0);

    UNIT_CASE("tx retry: a failure that is no conflict is not run again");
    memset(&t, 0, sizeof(t));
    t.conflicts = 1;
    t.plain = 1;
    rv = cs_db_tx_run(&c->db, p, "probe", probe_body, &t);
    CHECK_EQ_INT(rv, APR_EGENERAL);
    CHECK_EQ_INT(t.runs, 1);
    CHECK_EQ_INT(t.logged[0] + t.logged[1], 0);

    c->db.log = NULL;
    conn_close(c);
}

/* Budgets: forked processes take orders from two budgets at once; the
 * rows' locks (on Galera: certification) must keep the grants within the
 * tighter budget, whichever node each process writes through. */
static void test_budgets_concurrent(void)
{
    enum { CHILDREN = 6, TRIES = 12, LIMIT = 9 };
    volatile int *granted;
    cs_budget_t b[2];
    pid_t pids[CHILDREN];
    int i, total = 0, fails = 0, retries = 0;

    UNIT_CASE("budgets: never over-granted across processes");
    granted = mmap(NULL, 3 * CHILDREN * sizeof(int), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(granted != MAP_FAILED)) {
        return;
    }
    b[0].name = "race-global";
    b[0].window = 3600;
    b[0].limit = 1000;
    b[1].name = "race-account";
    b[1].window = 3600;
    b[1].limit = LIMIT;
    for (i = 0; i < CHILDREN; i++) {
        if ((pids[i] = fork()) == 0) {
            conn_t *k = conn_open();
            apr_int64_t ra;
            int j, g, which;

            for (j = 0; j < TRIES; j++) {
                if (cs_store_budget_take(&g, &ra, &which, &k->db, k->pool, b,
                                         2, now_sec()) != APR_SUCCESS) {
                    granted[CHILDREN + i]++;
                    continue;
                }
                granted[i] += g;
            }
            granted[2 * CHILDREN + i] = (int)k->db.retries;
            conn_close(k);
            _exit(0);
        }
    }
    CHECK(child_wait_all(pids, CHILDREN));
    for (i = 0; i < CHILDREN; i++) {
        total += granted[i];
        fails += granted[CHILDREN + i];
        retries += granted[2 * CHILDREN + i];
    }
    CHECK_EQ_INT(fails, 0);
    CHECK_EQ_INT(total, LIMIT);
    printf("# budgets: %d granted of %d asked, limit %d, %d failed,"
           " %d conflicts run again\n", total, CHILDREN * TRIES, LIMIT,
           fails, retries);
    munmap((void *)granted, 3 * CHILDREN * sizeof(int));
}

#define DUE_JOBS 700

/* jobs i: due (next_at <= 2000) when due(i); deadline prio(i). */
static int due_a(int i) { return i % 3 == 0; }         /* 234 due */
static int due_b(int i) { return i % 3 != 2; }         /* 467 due */
static apr_int64_t prio_of(int i) { return 100000 - 7 * (i % 101) - i; }

static void jobs_fill(conn_t *c, apr_pool_t *p, int (*due)(int))
{
    apr_dbd_transaction_t *t = NULL;
    int i, nrows;

    apr_dbd_query(c->db.driver, c->db.handle, &nrows,
                  "DELETE FROM cs_acme_jobs");
    apr_dbd_transaction_start(c->db.driver, p, c->db.handle, &t);
    for (i = 0; i < DUE_JOBS; i++) {
        CHECK_EQ_INT(apr_dbd_query(c->db.driver, c->db.handle, &nrows,
            apr_psprintf(p, "INSERT INTO cs_acme_jobs (domain, key_type,"
                         " state, attempts, next_at, owner, lease_until,"
                         " last_error, renew_at, updated, prio) VALUES"
                         " ('j%03d.example', 'ec-p256', 'valid', 0, %d,"
                         " NULL, 0, NULL, 0, 0, %" APR_INT64_T_FMT ")", i,
                         due(i) ? 1000 + i : 3000 + i, prio_of(i))), 0);
    }
    apr_dbd_transaction_end(c->db.driver, p, t);
}

/* The answer worked out here: the due, unclaimed jobs by (prio, name). */
static int due_expect(const char **want, apr_pool_t *p, int (*due)(int),
                      int skip, int limit)
{
    int i, j, n = 0, best;
    char used[DUE_JOBS];

    memset(used, 0, sizeof(used));
    while (n < limit) {
        best = -1;
        for (i = 0; i < DUE_JOBS; i++) {
            if (!due(i) || used[i] || i == skip) {
                continue;
            }
            if (best < 0 || prio_of(i) < prio_of(best)
                || (prio_of(i) == prio_of(best) && i < best)) {
                best = i;
            }
        }
        if (best < 0) {
            break;
        }
        used[best] = 1;
        want[n++] = apr_psprintf(p, "j%03d.example", best);
    }
    for (j = n; j < limit; j++) {
        want[j] = NULL;
    }
    return n;
}

static void due_check(conn_t *c, apr_pool_t *p, int (*due)(int), int skip,
                      int limit)
{
    const char *want[16];
    apr_array_header_t *got = NULL;
    apr_status_t rv;
    int n, i, same = 1;

    n = due_expect(want, p, due, skip, limit);
    rv = cs_store_job_due_prio(&got, &c->db, p, 2000, limit);
    if (!CHECK_EQ_INT(rv, APR_SUCCESS)) {
        return;
    }
    CHECK_EQ_INT(got->nelts, n);
    for (i = 0; i < n && i < got->nelts; i++) {
        same &= strcmp(APR_ARRAY_IDX(got, i, const char *), want[i]) == 0;
    }
    CHECK(same);
}

/* The statements the scheduler runs at every turn must reach their rows
 * through an index range, never walk the table or a whole index (a walk
 * costs the same with nothing due as with everything). */
static int plan_ok(conn_t *c, apr_pool_t *p, const char *sql,
                   const char *want)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    const char *detail, *s;
    char *q, *o;
    int ok = 1, seen = 0;

    /* The placeholders as numbers, for EXPLAIN. */
    q = o = apr_palloc(p, strlen(sql) * 2 + 1);
    for (s = sql; *s; s++) {
        if (*s == '%') {
            while (*s && *s != 's' && *s != 'd') {
                s++;
            }
            *o++ = '1';
            continue;
        }
        *o++ = *s;
    }
    *o = '\0';
    if (apr_dbd_select(c->db.driver, p, c->db.handle, &res,
                       apr_pstrcat(p, "EXPLAIN QUERY PLAN ", q, NULL), 0)) {
        return 0;
    }
    while (apr_dbd_get_row(c->db.driver, p, res, &row, -1) == 0) {
        detail = apr_dbd_get_entry(c->db.driver, row, 3);
        printf("# plan: %s\n", detail ? detail : "(null)");
        if (!detail || strncmp(detail, "SEARCH", 6) != 0) {
            ok = 0;
        }
        seen |= detail && strstr(detail, want) != NULL;
    }
    return ok && seen;
}

/* A new SQLite file gets 8 KiB pages (three domains' rows to a page, not
 * one to a 4 KiB page). */
static void test_page_size(void)
{
    apr_pool_t *p;
    apr_dbd_t *h = NULL;
    const apr_dbd_driver_t *driver;
    const char *path, *err = NULL;
    apr_array_header_t *rows;
    cs_db_t db;

    if (strcmp(driver_name, "sqlite3") != 0) {
        return;
    }
    UNIT_CASE("schema: a new SQLite file has 8 KiB pages");
    apr_pool_create(&p, root);
    path = testkit_tmpfile(p, "cs_store_pages_");
    if (!CHECK(path != NULL)
        || !CHECK_EQ_INT(apr_dbd_get_driver(p, "sqlite3", &driver), 0)
        || !CHECK_EQ_INT(apr_dbd_open_ex(driver, p, path, &h, &err), 0)) {
        return;
    }
    memset(&db, 0, sizeof(db));
    db.driver = driver;
    db.handle = h;
    CHECK_EQ_INT(cs_store_schema(&db, p), APR_SUCCESS);
    if (CHECK_EQ_INT(cs_db_select(&rows, &db, p, "PRAGMA page_size", "ps"),
                     APR_SUCCESS) && CHECK(rows->nelts == 1)) {
        CHECK_STR(APR_ARRAY_IDX(rows, 0, cs_db_row_t)[0], "8192");
    }
    apr_dbd_close(driver, h);
    apr_file_remove(path, p);
    apr_pool_destroy(p);
}

static void test_due_prio(void)
{
    conn_t *c = conn_open();
    apr_array_header_t *got = NULL;
    apr_pool_t *p;
    const char *want[16];
    int nrows;

    apr_pool_create(&p, c->pool);
    cs_db_enter(&c->db, p);

    UNIT_CASE("due by deadline: fewer due than the window: exact order");
    jobs_fill(c, p, due_a);
    due_check(c, p, due_a, -1, 8);
    due_check(c, p, due_a, -1, 1);

    UNIT_CASE("due by deadline: more due than the window: exact order");
    jobs_fill(c, p, due_b);
    due_check(c, p, due_b, -1, 8);
    due_check(c, p, due_b, -1, 16);

    UNIT_CASE("due by deadline: a claimed job is skipped");
    due_expect(want, p, due_b, -1, 1);
    apr_dbd_query(c->db.driver, c->db.handle, &nrows,
                  apr_psprintf(p, "UPDATE cs_acme_jobs SET lease_until ="
                               " 99999 WHERE domain = '%s'", want[0]));
    due_check(c, p, due_b, atoi(want[0] + 1), 8);

    UNIT_CASE("due by deadline: nothing due, nothing found");
    CHECK_EQ_INT(cs_store_job_due_prio(&got, &c->db, p, 10, 8),
                 APR_SUCCESS);
    CHECK_EQ_INT(got->nelts, 0);
    CHECK_EQ_INT(cs_store_job_due_prio(&got, &c->db, p, 10, 0), APR_EINVAL);

    if (strcmp(driver_name, "sqlite3") == 0) {
        UNIT_CASE("scheduler statements: index ranges, no walk (SQLite)");
        CHECK(plan_ok(c, p,
                      cs_store_statements()[CS_STMT_JOB_DUE_WINDOW].sql,
                      "(next_at<?)"));
        CHECK(plan_ok(c, p, cs_store_statements()[CS_STMT_JOB_DUE_PRIO].sql,
                      "(prio<?)"));
        CHECK(plan_ok(c, p, cs_store_statements()[CS_STMT_JOB_DUE].sql,
                      "(next_at<?)"));
    }
    apr_dbd_query(c->db.driver, c->db.handle, &nrows,
                  "DELETE FROM cs_acme_jobs");
    conn_close(c);
}

int main(void)
{
    const char *mysql = getenv("CS_TEST_MYSQL");
    int rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mysql && *mysql) {
        driver_name = "mysql";
        params = mysql;
        params2 = getenv("CS_TEST_MYSQL2");
        if (params2 && !*params2) {
            params2 = NULL;
        }
    }
    else {
        driver_name = "sqlite3";
        if ((sqlite_path = testkit_tmpfile(root, "cs_store_test_")) == NULL) {
            return 2;
        }
        params = sqlite_path;
    }
    apr_dbd_init(root);
    printf("# cs_store on %s\n", driver_name);

    test_statements();
    test_errors();
    test_schema_race();
    test_schema();
    test_schema_add_column();
    test_prepared_upfront();
    test_domains();
    test_hosts();
    test_schema_change();
    test_reconnect();
    test_feed_paging();
    test_feed_concurrent();
    test_leases();
    test_leases_concurrent();
    test_acme();
    test_put_created();
    test_tx_retry();
    test_budgets_concurrent();
    test_page_size();
    test_due_prio();

    rc = unit_summary();
    cleanup_sqlite();
    apr_pool_destroy(root);
    apr_terminate();
    return rc;
}
