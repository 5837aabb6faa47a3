/*
 * test_cs_acme_failover.c: unit tests of the ACME job with several CAs
 * (mod_certservice/cs_acme_drive.c): failover, the CA a domain remembers,
 * per-CA health in the database, accounts per CA, and the budgets held
 * in the database (global, per account, per registered domain, ARI
 * renewals exempt).
 *
 * The CAs are fake ACME clients behind the drive's ops table: each can be
 * up, down (every request fails as unreachable), refuse with a problem
 * type, or fail a domain's challenge; an order that goes through is
 * issued by a local CA of the fake's own.  The store is a real SQLite
 * database in a temporary file, the clock the test's own.
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

#include <openssl/x509v3.h>

#include "cs_acme_drive.h"
#include "cs_crypto.h"
#include "cs_metrics.h"
#include "cs_sched.h"
#include "cs_store.h"
#include "cs_x509.h"
#include "unit.h"

#define DAY 86400
#define ACME_ERR "urn:ietf:params:acme:error:"

static apr_pool_t *root;
static cs_db_t db;
static apr_int64_t clock_now;

typedef enum {
    CA_UP,
    CA_DOWN,            /* unreachable: APR_ECONNREFUSED */
    CA_RATE_LIMITED,    /* rateLimited, Retry-After 600 */
    CA_CAA,             /* refuses every order: caa */
    CA_INVALID,         /* the challenge fails: the domain's fault */
    CA_BAD_DIRECTORY    /* the directory is not one */
} ca_mode_t;

typedef struct {
    const char *name;
    ca_mode_t mode;
    int ari;
    cs_ca_t local;
    int requests;       /* directory and account calls, orders */
    int orders;
    int replaces;       /* orders that named a certificate */
    const char *last_domain;
} fake_ca_t;

static fake_ca_t cas[2];

/* The owner each drive claims as. */
static apr_hash_t *owners;

/* One client per account: the fake CA it talks to. */
typedef struct {
    fake_ca_t *ca;
    int account;
} fake_client_t;

static apr_status_t f_directory(void *c, const char **err)
{
    fake_ca_t *ca = ((fake_client_t *)c)->ca;

    ca->requests++;
    if (ca->mode == CA_DOWN) {
        *err = "CA unreachable: connection refused";
        return APR_ECONNREFUSED;
    }
    if (ca->mode == CA_BAD_DIRECTORY) {
        *err = "directory: not a JSON object";
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

static int f_has_ari(void *c)
{
    return ((fake_client_t *)c)->ca->ari;
}

static apr_status_t f_account(const char **kid, void *c, EVP_PKEY *key,
                              const apr_array_header_t *contact,
                              const char **err)
{
    fake_client_t *fc = c;

    fc->ca->requests++;
    if (fc->ca->mode == CA_DOWN) {
        *err = "CA unreachable: connection refused";
        return APR_ECONNREFUSED;
    }
    *kid = apr_psprintf(root, "https://%s.test/acct/%d", fc->ca->name,
                        fc->account);
    return APR_SUCCESS;
}

static apr_status_t f_issue(apr_array_header_t **chain, apr_pool_t *p,
                            void *c, EVP_PKEY *key, const char *domain,
                            const cs_acme_order_t *o, const char **err)
{
    fake_ca_t *ca = ((fake_client_t *)c)->ca;

    ca->requests++;
    ca->last_domain = apr_pstrdup(root, domain);
    switch (ca->mode) {
    case CA_DOWN:
        *err = "newOrder: HTTP 503 from the CA";
        return APR_ECONNREFUSED;
    case CA_RATE_LIMITED:
        *err = "newOrder: " ACME_ERR "rateLimited: too many (HTTP 429)";
        return APR_EAGAIN;
    case CA_CAA:
        *err = "authorization: " ACME_ERR "caa: CAA record forbids (HTTP "
               "403)";
        return APR_EGENERAL;
    case CA_INVALID:
        *err = "challenge: " ACME_ERR "unauthorized: wrong key "
               "authorization (HTTP 403)";
        return APR_EGENERAL;
    case CA_UP:
    case CA_BAD_DIRECTORY:
        break;
    }
    ca->orders++;
    if (o && o->replaces) {
        ca->replaces++;
    }
    return cs_ca_issue(chain, p, &ca->local, key, domain,
                       apr_time_from_sec(6 * DAY), err);
}

static apr_status_t f_profile_check(void *c, const char *profile,
                                    const char **err)
{
    return APR_SUCCESS;
}

static apr_status_t f_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                   apr_int64_t *retry_after, void *c,
                                   apr_pool_t *p, X509 *cert,
                                   const char **err)
{
    return APR_ENOTIMPL;
}

static apr_status_t f_precheck(void *c, apr_pool_t *p, const char *domain,
                               int port, const char *dns_server,
                               const char *token, const char *expect,
                               const char **err)
{
    return APR_SUCCESS;
}

static apr_int64_t f_retry_after(void *c)
{
    return ((fake_client_t *)c)->ca->mode == CA_RATE_LIMITED ? 600 : 0;
}

static const cs_acme_ops_t fake_ops = {
    f_directory, f_has_ari, f_account, f_issue, f_profile_check,
    f_renewal_info, f_precheck, f_retry_after
};

static apr_int64_t test_clock(void *baton)
{
    return clock_now;
}

static void test_log(void *baton, cs_log_level_t level, const char *msg)
{
    if (getenv("TEST_VERBOSE")) {
        fprintf(stderr, "  log %d: %s\n", (int)level, msg);
    }
}

static apr_status_t x509_free_cleanup(void *x)
{
    X509_free(x);
    return APR_SUCCESS;
}

/* A self-signed certificate for key: a CA unless leaf. */
static X509 *self_signed(EVP_PKEY *key, const char *cn, int is_ca)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    X509 *x = X509_new();

    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4243);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                               MBSTRING_UTF8, (const unsigned char *)cn,
                               -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365 * 86400L);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
                               is_ca ? "critical,CA:TRUE"
                                     : "critical,CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_key_identifier,
                               "hash");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, key, EVP_sha256());
    apr_pool_cleanup_register(root, x, x509_free_cleanup,
                              apr_pool_cleanup_null);
    return x;
}

static void open_db(const char *path)
{
    const apr_dbd_driver_t *driver;
    const char *err = NULL;

    if (apr_dbd_get_driver(root, "sqlite3", &driver) != APR_SUCCESS
        || apr_dbd_open_ex(driver, root, path, &db.handle, &err)
           != APR_SUCCESS) {
        fprintf(stderr, "cannot open %s with apr_dbd sqlite3: %s\n", path,
                err ? err : "no driver");
        exit(2);
    }
    db.driver = driver;
    db.prepared = apr_hash_make(root);
    if (cs_store_schema(&db, root) != APR_SUCCESS) {
        fprintf(stderr, "schema: %s\n", cs_store_error(&db, root, 1));
        exit(2);
    }
}

/* A drive over the two fake CAs, "one" preferred, with accounts[i]
 * accounts at CA i and its budgets. */
static cs_acme_drive_t *make_drive(const cs_acme_policy_t *pol,
                                   const cs_acme_ca_t *conf, int n,
                                   const int *accounts, const char *owner)
{
    cs_acme_drive_t *d;
    fake_client_t *fc;
    int i, k;

    cs_acme_drive_create(&d, root, pol, owner, test_log, NULL);
    cs_acme_drive_set_clock(d, test_clock, NULL);
    for (i = 0; i < n; i++) {
        CHECK_EQ_INT(cs_acme_drive_add_ca(d, &conf[i]), i);
        for (k = 0; k < accounts[i]; k++) {
            fc = apr_pcalloc(root, sizeof(*fc));
            fc->ca = &cas[i];
            fc->account = k + 1;
            CHECK_EQ_INT(cs_acme_drive_add_account(d, i, &fake_ops, fc),
                         APR_SUCCESS);
        }
    }
    if (!owners) {
        owners = apr_hash_make(root);
    }
    apr_hash_set(owners, apr_pmemdup(root, &d, sizeof(d)), sizeof(d),
                 owner);
    return d;
}

static void enqueue(const char *domain)
{
    CHECK_EQ_INT(cs_store_set_error(&db, root, domain, NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, root, domain, "ec-p256", NULL,
                                      clock_now), APR_SUCCESS);
}


/* Claim domain's job as the drive does and run it. */
static cs_acme_result_t run(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                            const char *domain)
{
    const char *owner = apr_hash_get(owners, &d, sizeof(d));
    int claimed = 0;

    memset(out, 0, sizeof(*out));
    if (!CHECK_EQ_INT(cs_store_job_claim(&claimed, &db, root, domain,
                                         owner, clock_now, 900),
                      APR_SUCCESS)
        || !CHECK(claimed)) {
        return CS_ACME_JOB_NONE;
    }
    CHECK_EQ_INT(cs_acme_drive_job(out, d, &db, root, domain),
                 APR_SUCCESS);
    return out->result;
}

static const char *job_ca(const char *domain)
{
    cs_job_ca_t jc;

    if (!CHECK_EQ_INT(cs_store_job_ca_get(&jc, &db, root, domain),
                      APR_SUCCESS)) {
        return NULL;
    }
    return jc.ca;
}

static cs_ca_health_t *health(const char *name)
{
    cs_ca_health_t *h = NULL;

    if (cs_store_ca_get(&h, &db, root, name) != APR_SUCCESS) {
        return NULL;
    }
    return h;
}

/* The metrics' count of orders at ca with result (-1: no row). */
static apr_int64_t orders_of(const char *ca, const char *result)
{
    cs_metrics_t m;
    int i;

    if (cs_store_metrics(&m, &db, root, clock_now) != APR_SUCCESS) {
        return -2;
    }
    for (i = 0; i < m.orders->nelts; i++) {
        const cs_metric_order_t *o = &APR_ARRAY_IDX(m.orders, i,
                                                    cs_metric_order_t);

        if (strcmp(o->ca, ca) == 0 && strcmp(o->result, result) == 0) {
            return o->count;
        }
    }
    return -1;
}

static cs_job_t *job_of(const char *domain)
{
    cs_job_t *job = NULL;

    CHECK_EQ_INT(cs_store_job_get(&job, &db, root, domain), APR_SUCCESS);
    return job;
}

static void reset_cas(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        cas[i].mode = CA_UP;
        cas[i].ari = 0;
        cas[i].requests = cas[i].orders = cas[i].replaces = 0;
    }
}

/* ------------------------------------------------------------------ */
/* Cases                                                               */
/* ------------------------------------------------------------------ */

static void test_failover(const cs_acme_policy_t *pol)
{
    cs_acme_ca_t conf[2];
    int accounts[2] = { 1, 1 };
    cs_acme_drive_t *d;
    cs_acme_outcome_t out;
    cs_ca_health_t *h;
    cs_job_t *job;
    int req;

    memset(conf, 0, sizeof(conf));
    conf[0].name = "one";
    conf[0].directory_url = "https://one.test/directory";
    conf[1].name = "two";
    conf[1].directory_url = "https://two.test/directory";
    d = make_drive(pol, conf, 2, accounts, "test:fo");
    reset_cas();

    UNIT_CASE("both CAs up: a new domain goes to the first");
    enqueue("a.example.com");
    CHECK_EQ_INT(run(&out, d, "a.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "one");
    CHECK(out.moved_from == NULL);
    CHECK_EQ_INT(cas[0].orders, 1);
    CHECK_EQ_INT(cas[1].orders, 0);
    CHECK_STR(job_ca("a.example.com"), "one");
    h = health("one");
    CHECK(h && strcmp(h->state, "up") == 0 && h->last_ok == clock_now);

    UNIT_CASE("CA 1 down: a new domain goes to CA 2, CA 1 marked down");
    cas[0].mode = CA_DOWN;
    enqueue("b.example.com");
    CHECK_EQ_INT(run(&out, d, "b.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    CHECK_EQ_INT(cas[1].orders, 1);
    CHECK_STR(job_ca("b.example.com"), "two");
    h = health("one");
    CHECK(h != NULL);
    if (h) {
        CHECK_STR(h->state, "down");
        CHECK_EQ_INT(h->failures, 1);
        /* The first backoff step. */
        CHECK_EQ_INT(h->next_retry, clock_now + pol->backoff);
        CHECK(h->last_error && strstr(h->last_error, "unreachable"));
    }

    UNIT_CASE("CA 1 down: not asked again before its retry");
    req = cas[0].requests;
    enqueue("c.example.com");
    CHECK_EQ_INT(run(&out, d, "c.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    CHECK_EQ_INT(cas[0].requests, req);

    UNIT_CASE("CA 1 down: a renewal of its certificate goes to CA 2");
    enqueue("a.example.com");
    CHECK_EQ_INT(run(&out, d, "a.example.com"), CS_ACME_JOB_RENEWED);
    CHECK_STR(out.ca, "two");
    CHECK_STR(out.moved_from, "one");
    /* CA 2 does not know CA 1's certificate: no "replaces". */
    CHECK_EQ_INT(cas[1].replaces, 0);
    CHECK_STR(job_ca("a.example.com"), "two");

    UNIT_CASE("CA 1 still down at its retry: one more failure, longer "
              "backoff");
    clock_now += pol->backoff;
    enqueue("d.example.com");
    CHECK_EQ_INT(run(&out, d, "d.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    h = health("one");
    CHECK(h && h->failures == 2 && h->next_retry == clock_now
                                                    + 2 * pol->backoff);

    UNIT_CASE("CA 1 back: renewals return to it, its health is up again");
    cas[0].mode = CA_UP;
    clock_now += 2 * pol->backoff;
    enqueue("b.example.com");
    CHECK_EQ_INT(run(&out, d, "b.example.com"), CS_ACME_JOB_RENEWED);
    CHECK_STR(out.ca, "one");
    CHECK_STR(out.moved_from, "two");
    CHECK_STR(job_ca("b.example.com"), "one");
    h = health("one");
    CHECK(h && strcmp(h->state, "up") == 0 && h->failures == 0);
    enqueue("a.example.com");
    CHECK_EQ_INT(run(&out, d, "a.example.com"), CS_ACME_JOB_RENEWED);
    CHECK_STR(out.ca, "one");

    UNIT_CASE("every CA down: the job waits for the first retry, no "
              "attempt counted");
    cas[0].mode = CA_DOWN;
    cas[1].mode = CA_DOWN;
    enqueue("e.example.com");
    CHECK_EQ_INT(run(&out, d, "e.example.com"), CS_ACME_JOB_FAILED);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "CA one: ")
          && strstr(out.job->last_error, "; CA two: "));
    {
        int claimed = 1;

        CHECK_EQ_INT(cs_store_job_claim(&claimed, &db, root,
                                        "e.example.com", "test:fo",
                                        clock_now, 900), APR_SUCCESS);
        CHECK_EQ_INT(claimed, 0);
    }
    clock_now += 1;
    job = job_of("e.example.com");
    if (job) {
        CHECK_EQ_INT(job->attempts, 1);
    }
    /* Both are down now: a job due meanwhile is not the domain's
     * failure. */
    enqueue("f.example.com");
    CHECK_EQ_INT(run(&out, d, "f.example.com"), CS_ACME_JOB_LIMITED);
    CHECK(out.delay > 0 && out.delay <= pol->backoff);
    job = job_of("f.example.com");
    CHECK(job && job->attempts == 0);

    UNIT_CASE("a directory that is not one: the CA counts as down");
    cas[0].mode = CA_BAD_DIRECTORY;
    cas[1].mode = CA_UP;
    clock_now += pol->backoff_cap;
    enqueue("bd.example.com");
    CHECK_EQ_INT(run(&out, d, "bd.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    h = health("one");
    CHECK(h && strcmp(h->state, "down") == 0
          && strstr(h->last_error, "not a JSON object"));

    UNIT_CASE("a failed challenge is the domain's: no failover");
    cas[0].mode = CA_INVALID;
    cas[1].mode = CA_UP;
    clock_now += pol->backoff_cap;
    req = cas[1].requests;
    enqueue("g.example.com");
    CHECK_EQ_INT(run(&out, d, "g.example.com"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(cas[1].requests, req);
    CHECK(out.job && strstr(out.job->last_error, "unauthorized"));
    h = health("one");
    CHECK(h && strcmp(h->state, "up") == 0);

    UNIT_CASE("caa at CA 1: CA 2 issues, and the domain stays there");
    cas[0].mode = CA_CAA;
    enqueue("h.example.com");
    CHECK_EQ_INT(run(&out, d, "h.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    cas[0].mode = CA_UP;
    req = cas[0].requests;
    enqueue("h.example.com");
    CHECK_EQ_INT(run(&out, d, "h.example.com"), CS_ACME_JOB_RENEWED);
    CHECK_STR(out.ca, "two");
    CHECK_EQ_INT(cas[0].requests, req);
    /* CA 1 is not down for it. */
    h = health("one");
    CHECK(h && strcmp(h->state, "up") == 0
          && strstr(h->last_error, ":caa"));

    UNIT_CASE("rateLimited at CA 1: CA 2 issues; CA 1's account waits");
    cas[0].mode = CA_RATE_LIMITED;
    enqueue("i.example.com");
    CHECK_EQ_INT(run(&out, d, "i.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    cas[0].mode = CA_UP;
    req = cas[0].requests;
    enqueue("j.example.com");
    CHECK_EQ_INT(run(&out, d, "j.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "two");
    /* Asked for its directory only, no order. */
    CHECK_EQ_INT(cas[0].orders, 3);
    clock_now += 601;
    enqueue("k.example.com");
    CHECK_EQ_INT(run(&out, d, "k.example.com"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "one");
    (void)req;

    UNIT_CASE("metrics: every order above counted per CA and result");
    printf("# orders: one valid %d down %d refused %d limited %d failed %d;"
           " two valid %d down %d\n", (int)orders_of("one", "valid"),
           (int)orders_of("one", "down"), (int)orders_of("one", "refused"),
           (int)orders_of("one", "limited"), (int)orders_of("one", "failed"),
           (int)orders_of("two", "valid"), (int)orders_of("two", "down"));
    CHECK_EQ_INT(orders_of("one", "refused"), 1);       /* caa */
    CHECK_EQ_INT(orders_of("one", "limited"), 1);       /* rateLimited */
    CHECK(orders_of("one", "down") >= 2);
    CHECK(orders_of("one", "valid") >= 2);
    CHECK(orders_of("two", "valid") >= 6);
}

static void test_budgets(const cs_acme_policy_t *base)
{
    cs_acme_policy_t pol = *base;
    cs_acme_ca_t conf[2];
    int accounts[2] = { 2, 1 };
    cs_acme_drive_t *d, *d2;
    cs_acme_outcome_t out;
    apr_array_header_t *rows;
    int i, n;

    memset(conf, 0, sizeof(conf));
    conf[0].name = "bone";
    conf[0].directory_url = "https://bone.test/directory";
    conf[0].limit = 1;
    conf[0].window = 3600;
    conf[1].name = "btwo";
    conf[1].directory_url = "https://btwo.test/directory";
    conf[1].limit = 100;
    conf[1].window = 3600;
    conf[1].domain_limit = 2;
    conf[1].domain_window = 7 * DAY;
    pol.global_limit = 5;
    pol.global_window = 3600;
    /* Two instances: two drives on one database. */
    d = make_drive(&pol, conf, 2, accounts, "test:b1");
    d2 = make_drive(&pol, conf, 2, accounts, "test:b2");
    reset_cas();
    clock_now += DAY;

    UNIT_CASE("accounts: one order per account at CA 1, then CA 2");
    enqueue("a.shop.example.co.uk");
    CHECK_EQ_INT(run(&out, d, "a.shop.example.co.uk"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "bone");
    /* The other instance: CA 1's second account. */
    enqueue("b.shop.example.co.uk");
    CHECK_EQ_INT(run(&out, d2, "b.shop.example.co.uk"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "bone");
    enqueue("c.shop.example.co.uk");
    CHECK_EQ_INT(run(&out, d, "c.shop.example.co.uk"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "btwo");
    CHECK_EQ_INT(cas[0].orders, 2);

    UNIT_CASE("registered domain (libpsl: example.co.uk): 2 per week at CA "
              "2");
    enqueue("www.example.co.uk");
    CHECK_EQ_INT(run(&out, d2, "www.example.co.uk"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "btwo");
    enqueue("d.shop.example.co.uk");
    CHECK_EQ_INT(run(&out, d, "d.shop.example.co.uk"), CS_ACME_JOB_LIMITED);
    CHECK(out.delay > 3000 && out.delay <= 3600);
    /* Another registered domain still goes (the global budget: 5). */
    enqueue("x.other.example");
    CHECK_EQ_INT(run(&out, d, "x.other.example"), CS_ACME_JOB_ISSUED);

    UNIT_CASE("the global budget: 5 per hour across CAs and instances");
    enqueue("y.other.example");
    CHECK_EQ_INT(run(&out, d2, "y.other.example"), CS_ACME_JOB_LIMITED);
    CHECK_EQ_INT(cas[0].orders + cas[1].orders, 5);

    UNIT_CASE("an ARI renewal takes only the global budget");
    clock_now += 3600;
    cas[0].ari = 1;
    /* CA 1's two accounts: one order each, then none. */
    enqueue("r1.example.net");
    CHECK_EQ_INT(run(&out, d, "r1.example.net"), CS_ACME_JOB_ISSUED);
    enqueue("r2.example.net");
    CHECK_EQ_INT(run(&out, d, "r2.example.net"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(cas[0].orders, 4);
    /* A renewal of r1 at CA 1, naming the certificate it replaces. */
    enqueue("r1.example.net");
    CHECK_EQ_INT(run(&out, d, "r1.example.net"), CS_ACME_JOB_RENEWED);
    CHECK_STR(out.ca, "bone");
    CHECK_EQ_INT(cas[0].replaces, 1);
    /* A new domain now goes to CA 2: CA 1's accounts are spent. */
    enqueue("r3.example.net");
    CHECK_EQ_INT(run(&out, d, "r3.example.net"), CS_ACME_JOB_ISSUED);
    CHECK_STR(out.ca, "btwo");

    UNIT_CASE("the budgets are rows of the database, for every instance");
    CHECK_EQ_INT(cs_store_rate_list(&rows, &db, root), APR_SUCCESS);
    n = 0;
    for (i = 0; i < rows->nelts; i++) {
        cs_rate_row_t *r = &APR_ARRAY_IDX(rows, i, cs_rate_row_t);

        if (strcmp(r->name, "orders:all") == 0) {
            CHECK_EQ_INT(r->count, 4);
            n++;
        }
        else if (strcmp(r->name, "orders") == 0
                 || strcmp(r->name, "orders:bone:2") == 0) {
            /* The first CA's first account: the row it had alone. */
            CHECK_EQ_INT(r->count, 1);
            n++;
        }
        else if (strncmp(r->name, "rd:btwo:", 8) == 0) {
            n++;
        }
        if (getenv("TEST_VERBOSE")) {
            fprintf(stderr, "  row %s %d\n", r->name, (int)r->count);
        }
    }
    /* orders:all, two accounts at CA 1 ("orders" for the first, as
     * before several CAs), example.co.uk, other.example and example.net
     * at CA 2. */
    CHECK_EQ_INT(n, 6);
}

int main(void)
{
    const char *tmpdir;
    apr_file_t *f;
    char *path;
    cs_acme_policy_t pol;
    EVP_PKEY *seal_key, *k;
    apr_array_header_t *wrap;
    int i, rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (apr_temp_dir_get(&tmpdir, root) != APR_SUCCESS) {
        tmpdir = "/tmp";
    }
    path = apr_pstrcat(root, tmpdir, "/cs_acme_failover_test_XXXXXX", NULL);
    if (apr_file_mktemp(&f, path, APR_FOPEN_CREATE | APR_FOPEN_READ
                        | APR_FOPEN_WRITE | APR_FOPEN_EXCL, root)
        != APR_SUCCESS) {
        fprintf(stderr, "no temporary file in %s\n", tmpdir);
        return 2;
    }
    apr_file_close(f);
    open_db(path);

    if (cs_key_generate(&seal_key, root, CS_KEY_RSA_2048)) {
        fprintf(stderr, "cannot generate keys\n");
        return 2;
    }
    for (i = 0; i < 2; i++) {
        if (cs_key_generate(&k, root, CS_KEY_EC_P256)) {
            return 2;
        }
        cas[i].name = i ? "two" : "one";
        cas[i].local.key = k;
        cas[i].local.cert = self_signed(k, i ? "fake CA two" : "fake CA one",
                                        1);
    }
    wrap = apr_array_make(root, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(wrap, X509 *) = self_signed(seal_key, "wrap and seal", 0);

    memset(&pol, 0, sizeof(pol));
    pol.directory_url = "https://one.test/directory";
    pol.seal_cert = APR_ARRAY_IDX(wrap, 0, X509 *);
    pol.seal_key = seal_key;
    pol.wrap_certs = wrap;
    pol.limit = 1000;
    pol.window = 3600;
    pol.backoff = 60;
    pol.backoff_cap = 600;
    pol.renew_pm = 667;
    pol.jitter_pm = 50;
    pol.ari = 1;
    pol.precheck_port = -1;
    clock_now = apr_time_sec(apr_time_now());

    test_failover(&pol);
    test_budgets(&pol);

    rc = unit_summary();
    apr_dbd_close(db.driver, db.handle);
    apr_file_remove(path, root);
    apr_file_remove(apr_pstrcat(root, path, "-wal", NULL), root);
    apr_file_remove(apr_pstrcat(root, path, "-shm", NULL), root);
    apr_pool_destroy(root);
    apr_terminate();
    return rc;
}
