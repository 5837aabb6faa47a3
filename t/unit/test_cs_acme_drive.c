/*
 * test_cs_acme_drive.c: unit tests of CertService's ACME job
 * (mod_certservice/cs_acme_drive.c) against a scripted CA, on a real
 * SQLite store in a temporary file, with a clock of the test's own.
 *
 * The CA is played through the drive's client ops table
 * (cs_acme_ops_t): lib/cs_acme.c cannot take a transport (lib/cs_http.h)
 * on this branch yet.  Once it can, these cases can run the real client
 * over t/unit/fake_http.h instead; what they check stays the same.
 *
 * Cases: an order that succeeds (http-01 answered from the store, the
 * bundle stored sealed, the account made once); an invalid challenge;
 * rateLimited with Retry-After (the job and the cluster-wide limiter
 * wait); the renewal time inside an ARI window, and by lifetime fraction
 * without ARI for two different lifetimes (nothing assumes 90 days); a
 * renewal that names the certificate it replaces; account
 * re-registration (the CA forgot the account; another instance rolled
 * the key over); backoff growth and cap; the pre-check.
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
#include "cs_jws.h"
#include "cs_sched.h"
#include "cs_store.h"
#include "cs_x509.h"
#include "unit.h"

#define DAY 86400

static apr_pool_t *root;
static cs_db_t db;
static apr_int64_t clock_now;   /* the drive's clock */
static int logged_errors;

/* ------------------------------------------------------------------ */
/* The scripted CA                                                     */
/* ------------------------------------------------------------------ */

typedef enum {
    CA_VALID,                   /* the challenge validates */
    CA_INVALID,                 /* the CA says the challenge failed */
    CA_RATE_LIMITED             /* 429 rateLimited with Retry-After */
} ca_mode_t;

typedef struct {
    apr_pool_t *pool;
    cs_ca_t *ca;
    cs_acme_drive_t *drive;     /* for the http-01 callback */
    apr_hash_t *accounts;       /* key thumbprint -> account URL */
    const char *current;        /* the account the client is logged in */
    int next_account;
    ca_mode_t mode;
    apr_interval_time_t lifetime;
    apr_int64_t retry_after;    /* of the last error */
    int ari;                    /* the directory offers renewalInfo */
    apr_int64_t ari_start;
    apr_int64_t ari_end;
    /* What happened. */
    int registrations;          /* newAccount calls */
    int accounts_made;
    int orders;
    int validated;              /* the key authorization was served */
    const char *replaces;       /* of the last order */
    int prechecks;              /* probes that found our token served */
    int precheck_fail;          /* the domain does not reach us */
    const char *last_key;       /* thumbprint of the last account key */
} fake_ca_t;

static fake_ca_t ca;

static apr_status_t ca_directory(void *c, const char **err)
{
    return APR_SUCCESS;
}

static int ca_has_ari(void *c)
{
    return ((fake_ca_t *)c)->ari;
}

static apr_status_t ca_account(const char **kid, void *c, EVP_PKEY *key,
                               const apr_array_header_t *contact,
                               const char **err)
{
    fake_ca_t *f = c;
    const char *thumb, *url;

    f->registrations++;
    if (cs_jwk_thumbprint(&thumb, f->pool, key)) {
        *err = "bad key";
        return APR_EGENERAL;
    }
    f->last_key = thumb;
    url = apr_hash_get(f->accounts, thumb, APR_HASH_KEY_STRING);
    if (!url) {
        url = apr_psprintf(f->pool, "https://ca.test/acct/%d",
                           ++f->next_account);
        apr_hash_set(f->accounts, thumb, APR_HASH_KEY_STRING, url);
        f->accounts_made++;
    }
    f->current = url;
    *kid = url;
    return APR_SUCCESS;
}

static apr_status_t ca_issue(apr_array_header_t **chain, apr_pool_t *p,
                             void *c, EVP_PKEY *key, const char *domain,
                             const char *replaces, const char **err)
{
    fake_ca_t *f = c;
    const char *token = apr_psprintf(p, "tok%d", f->orders + 1);
    const char *keyauth = apr_pstrcat(p, token, ".thumb", NULL), *got;
    apr_status_t rv;

    f->orders++;
    f->replaces = replaces ? apr_pstrdup(f->pool, replaces) : NULL;
    f->retry_after = 0;
    if (!f->current) {
        *err = "urn:ietf:params:acme:error:accountDoesNotExist";
        return APR_EGENERAL;
    }
    if (f->mode == CA_RATE_LIMITED) {
        f->retry_after = 3600;
        *err = "urn:ietf:params:acme:error:rateLimited: too many orders";
        return APR_EAGAIN;
    }
    /* http-01: the client publishes, the CA fetches through the proxies
     * (here: from the store, as GET /acme-challenge/TOKEN would). */
    if ((rv = cs_acme_drive_http01(f->drive, domain, token, keyauth, 1))) {
        *err = "cannot publish";
        return rv;
    }
    if (cs_store_challenge_get(&got, &db, p, token, clock_now)
        == APR_SUCCESS && strcmp(got, keyauth) == 0) {
        f->validated++;
    }
    if (f->mode == CA_INVALID) {
        cs_acme_drive_http01(f->drive, domain, token, keyauth, 0);
        *err = "urn:ietf:params:acme:error:unauthorized: challenge invalid";
        return APR_EGENERAL;
    }
    rv = cs_ca_issue(chain, p, f->ca, key, domain, f->lifetime, err);
    cs_acme_drive_http01(f->drive, domain, token, keyauth, 0);
    return rv;
}

static apr_status_t ca_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                    apr_int64_t *retry_after, void *c,
                                    apr_pool_t *p, X509 *cert,
                                    const char **err)
{
    fake_ca_t *f = c;

    if (!f->ari) {
        return APR_ENOTIMPL;
    }
    *start = f->ari_start;
    *end = f->ari_end;
    *retry_after = 0;
    return APR_SUCCESS;
}

/* The pre-check's probe: the token must be answerable from the store. */
static apr_status_t ca_precheck(void *c, apr_pool_t *p, const char *domain,
                                int port, const char *dns_server,
                                const char *token, const char *expect,
                                const char **err)
{
    fake_ca_t *f = c;
    const char *got;

    if (port == 80
        && cs_store_challenge_get(&got, &db, p, token, clock_now)
           == APR_SUCCESS && strcmp(got, expect) == 0) {
        f->prechecks++;
    }
    if (f->precheck_fail) {
        *err = apr_psprintf(p, "http://%s/.well-known/acme-challenge/: "
                            "connection refused", domain);
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

static apr_int64_t ca_retry_after(void *c)
{
    return ((fake_ca_t *)c)->retry_after;
}

static const cs_acme_ops_t fake_ops = {
    ca_directory, ca_has_ari, ca_account, ca_issue, ca_renewal_info,
    ca_precheck, ca_retry_after
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static apr_int64_t test_clock(void *baton)
{
    return clock_now;
}

static void test_log(void *baton, cs_log_level_t level, const char *msg)
{
    if (level == CS_LOG_ERR) {
        logged_errors++;
    }
    if (getenv("CS_TEST_VERBOSE")) {
        printf("  log %d: %s\n", (int)level, msg);
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
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
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

/* What PUT /v1/domains/DOMAIN does with ACME: known, pending, queued. */
static void enqueue(const char *domain)
{
    CHECK_EQ_INT(cs_store_set_error(&db, root, domain, NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, root, domain, "ec-p256",
                                      clock_now), APR_SUCCESS);
}

/* Claim the next due job, which must be want's (NULL: any), and run it. */
static cs_acme_result_t run(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                            apr_pool_t *p, const char *want)
{
    const char *domain = NULL;

    memset(out, 0, sizeof(*out));
    if (!CHECK_EQ_INT(cs_acme_drive_claim(&domain, d, &db, p), APR_SUCCESS)
        || !CHECK(domain != NULL)) {
        return CS_ACME_JOB_NONE;
    }
    if (want) {
        CHECK_STR(domain, want);
    }
    CHECK_EQ_INT(cs_acme_drive_job(out, d, &db, p, domain), APR_SUCCESS);
    return out->result;
}

static cs_job_t *job_of(apr_pool_t *p, const char *domain)
{
    cs_job_t *job = NULL;

    CHECK_EQ_INT(cs_store_job_get(&job, &db, p, domain), APR_SUCCESS);
    return job;
}

/* Nothing due now (the job waits, or is claimed). */
static int nothing_due(cs_acme_drive_t *d, apr_pool_t *p)
{
    const char *domain = NULL;

    cs_acme_drive_claim(&domain, d, &db, p);
    return domain == NULL;
}

/* ------------------------------------------------------------------ */
/* Cases                                                               */
/* ------------------------------------------------------------------ */

static void test_success(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_bundle_t *b;
    cs_job_t *job;
    const char *kid, *cms, *keyauth;
    apr_int64_t life;

    UNIT_CASE("an order that succeeds");
    apr_pool_create(&p, root);
    enqueue("ok.test");
    CHECK_EQ_INT(run(&out, d, p, "ok.test"), CS_ACME_JOB_ISSUED);
    CHECK(out.new_account != NULL);
    CHECK_EQ_INT(ca.accounts_made, 1);
    CHECK_EQ_INT(ca.orders, 1);
    CHECK_EQ_INT(ca.validated, 1);
    CHECK(ca.replaces == NULL);
    /* The http-01 answer is gone once the order is over. */
    CHECK(APR_STATUS_IS_NOTFOUND(cs_store_challenge_get(&keyauth, &db, p,
                                                        "tok1",
                                                        clock_now)));
    /* The bundle is stored, its key sealed. */
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "ok.test"), APR_SUCCESS)) {
        CHECK(b->serial != NULL);
        CHECK(b->key_cms != NULL);
        CHECK_STR(b->state, "active");
        CHECK(out.bundle && strcmp(out.bundle->serial, b->serial) == 0);
    }
    /* The queue row: valid, renewal by lifetime at 61.7% .. 66.7%. */
    job = job_of(p, "ok.test");
    if (job && out.bundle) {
        life = out.bundle->not_after - out.bundle->not_before;
        CHECK_STR(job->state, "valid");
        CHECK_EQ_INT(job->attempts, 0);
        CHECK(job->last_error == NULL);
        CHECK_STR(out.how, "lifetime");
        CHECK(job->renew_at >= out.bundle->not_before
                               + life * (pol->renew_pm - pol->jitter_pm)
                                 / 1000 - 1);
        CHECK(job->renew_at <= out.bundle->not_before
                               + life * pol->renew_pm / 1000 + 1);
        CHECK_EQ_INT(job->next_at, job->renew_at);
    }
    /* The account is stored, sealed, for every instance. */
    if (CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &db, p,
                                          pol->directory_url),
                     APR_SUCCESS)) {
        CHECK_STR(kid, ca.current);
    }
    /* Not due again before its renewal. */
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "ok.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_invalid_challenge(cs_acme_drive_t *d,
                                   const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_bundle_t *b;
    cs_job_t *job;
    int orders = ca.orders;

    UNIT_CASE("an invalid challenge");
    apr_pool_create(&p, root);
    ca.mode = CA_INVALID;
    enqueue("bad.test");
    CHECK_EQ_INT(run(&out, d, p, "bad.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(ca.orders, orders + 1);
    job = job_of(p, "bad.test");
    if (job) {
        CHECK_STR(job->state, "failed");
        CHECK_EQ_INT(job->attempts, 1);
        CHECK(job->last_error && strstr(job->last_error, "unauthorized"));
        CHECK_EQ_INT(job->next_at, clock_now + pol->backoff);
        CHECK_EQ_INT(out.delay, pol->backoff);
    }
    /* The domain shows the error, and has no certificate. */
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "bad.test"), APR_SUCCESS)) {
        CHECK(b->last_error && strstr(b->last_error, "unauthorized"));
        CHECK(b->key_cms == NULL);
    }
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "bad.test"), APR_SUCCESS);
    ca.mode = CA_VALID;
    apr_pool_destroy(p);
}

static void test_rate_limited(cs_acme_drive_t *d,
                              const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    int orders;

    UNIT_CASE("rateLimited with Retry-After");
    apr_pool_create(&p, root);
    ca.mode = CA_RATE_LIMITED;
    enqueue("busy.test");
    CHECK_EQ_INT(run(&out, d, p, "busy.test"), CS_ACME_JOB_FAILED);
    job = job_of(p, "busy.test");
    if (job) {
        /* The CA's hour, not the first backoff step. */
        CHECK_EQ_INT(job->attempts, 1);
        CHECK_EQ_INT(out.delay, 3600);
        CHECK_EQ_INT(job->next_at, clock_now + 3600);
    }
    /* Everyone waits: another domain is held by the limiter without
     * asking the CA. */
    ca.mode = CA_VALID;
    orders = ca.orders;
    enqueue("other.test");
    CHECK_EQ_INT(run(&out, d, p, "other.test"), CS_ACME_JOB_LIMITED);
    CHECK(out.delay > 3500 && out.delay <= 3600);
    CHECK_EQ_INT(ca.orders, orders);
    /* After the pause both go through. */
    clock_now += 3601;
    CHECK_EQ_INT(run(&out, d, p, NULL), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(run(&out, d, p, NULL), CS_ACME_JOB_ISSUED);
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "busy.test"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "other.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* Renewal time of a certificate of the given lifetime, without ARI. */
static void check_lifetime_fraction(cs_acme_drive_t *d,
                                    const cs_acme_policy_t *pol,
                                    const char *domain, apr_int64_t days)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    apr_int64_t nb, life;

    apr_pool_create(&p, root);
    ca.lifetime = apr_time_from_sec(days * DAY);
    enqueue(domain);
    CHECK_EQ_INT(run(&out, d, p, domain), CS_ACME_JOB_ISSUED);
    job = job_of(p, domain);
    if (job && out.bundle) {
        nb = out.bundle->not_before;
        life = out.bundle->not_after - nb;
        CHECK(life > (days - 1) * DAY && life <= days * DAY + 60);
        CHECK_STR(out.how, "lifetime");
        CHECK(job->renew_at >= nb + life * 617 / 1000 - 1);
        CHECK(job->renew_at <= nb + life * 667 / 1000 + 1);
        CHECK_EQ_INT(job->next_at, job->renew_at);
    }
    apr_pool_destroy(p);
}

static void test_ari(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    cs_bundle_t *b;
    apr_int64_t start;

    UNIT_CASE("no ARI: renewal by lifetime fraction, 6 and 30 days");
    ca.ari = 0;
    check_lifetime_fraction(d, pol, "six.test", 6);
    CHECK_EQ_INT(cs_store_job_delete(&db, root, "six.test"), APR_SUCCESS);
    check_lifetime_fraction(d, pol, "thirty.test", 30);

    UNIT_CASE("ARI: renewal time inside the window");
    apr_pool_create(&p, root);
    /* At the look scheduled by lifetime (about day 19 of 30), the CA
     * suggests a later window: the renewal moves into it. */
    job = job_of(p, "thirty.test");
    if (!job) {
        return;
    }
    clock_now = job->next_at;
    ca.ari = 1;
    start = clock_now + 2 * DAY;
    ca.ari_start = start;
    ca.ari_end = start + DAY;
    CHECK_EQ_INT(run(&out, d, p, "thirty.test"), CS_ACME_JOB_NOT_DUE);
    CHECK_STR(out.how, "ARI window");
    job = job_of(p, "thirty.test");
    if (job) {
        CHECK(job->renew_at >= start && job->renew_at < start + DAY);
        /* Looked at again no later than the renewal time. */
        CHECK(job->next_at <= job->renew_at && job->next_at > clock_now);
    }

    UNIT_CASE("ARI: inside the window the certificate is renewed");
    if (job) {
        clock_now = job->renew_at;
    }
    CHECK_EQ_INT(run(&out, d, p, "thirty.test"), CS_ACME_JOB_RENEWED);
    /* The new order names the certificate it replaces (RFC 9773). */
    CHECK(ca.replaces != NULL);
    if (out.bundle && CHECK_EQ_INT(cs_store_get(&b, &db, p, "thirty.test"),
                                   APR_SUCCESS)) {
        CHECK_STR(b->serial, out.bundle->serial);
    }
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "thirty.test"), APR_SUCCESS);
    ca.ari = 0;
    apr_pool_destroy(p);
}

static void test_account_again(cs_acme_drive_t *d,
                               const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    const char *kid, *cms, *old_kid, *thumb, *err = NULL;
    apr_array_header_t *rcpt;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key;
    int made;

    UNIT_CASE("account re-registration: the CA forgot the account");
    apr_pool_create(&p, root);
    /* The test's clock is some 21 days ahead of the certificates' by
     * now: longer ones, so that none is due for renewal meanwhile. */
    ca.lifetime = apr_time_from_sec(60 * DAY);
    CHECK_EQ_INT(cs_store_account_get(&old_kid, &cms, &db, p,
                                      pol->directory_url), APR_SUCCESS);
    /* A test CA restarted: no account for any key. */
    apr_hash_clear(ca.accounts);
    ca.current = NULL;
    made = ca.accounts_made;
    enqueue("again.test");
    CHECK_EQ_INT(run(&out, d, p, "again.test"), CS_ACME_JOB_FAILED);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "accountDoesNotExist"));
    /* The retry registers the stored key again, and the new account URL
     * is what the database holds afterwards. */
    clock_now += pol->backoff;
    CHECK_EQ_INT(run(&out, d, p, "again.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(ca.accounts_made, made + 1);
    CHECK(out.new_account == NULL);     /* the same key: not a new one */
    if (CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &db, p,
                                          pol->directory_url),
                     APR_SUCCESS)) {
        CHECK_STR(kid, ca.current);
        CHECK(strcmp(kid, old_kid) != 0);
    }

    UNIT_CASE("account re-registration: the key was rolled over");
    /* Another instance rolled the account over to a new key. */
    rcpt = apr_array_make(p, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(rcpt, X509 *) = pol->seal_cert;
    CHECK_EQ_INT(cs_key_generate(&key, p, CS_KEY_EC_P256), APR_SUCCESS);
    CHECK_EQ_INT(cs_envelope_seal(&der, &len, p, key, rcpt, &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_jwk_thumbprint(&thumb, p, key), APR_SUCCESS);
    apr_hash_set(ca.accounts, apr_pstrdup(ca.pool, thumb),
                 APR_HASH_KEY_STRING, kid);
    CHECK_EQ_INT(cs_store_account_put(&db, p, pol->directory_url, kid,
                                      cs_base64_encode(p, der, len), 0),
                 APR_SUCCESS);
    enqueue("rolled.test");
    CHECK_EQ_INT(run(&out, d, p, "rolled.test"), CS_ACME_JOB_ISSUED);
    /* The worker logged in with the new key before ordering. */
    CHECK_STR(ca.last_key, thumb);
    CHECK_STR(ca.current, kid);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "again.test"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "rolled.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_backoff(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    static const apr_int64_t want[] = { 60, 120, 240, 300, 300, 300 };
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    cs_acme_policy_t big = *pol;
    int i;

    UNIT_CASE("backoff: the delay doubles up to the cap");
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 1, 0), 60);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 2, 0), 120);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 4, 0), 300);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 40, 0), 300);
    /* Retry-After wins when it is longer, never when shorter. */
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 1, 3600), 3600);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 3, 10), 240);
    big.backoff_cap = 7 * DAY;
    CHECK_EQ_INT(cs_acme_retry_delay(&big, 12, 0), 60 * 2048);

    UNIT_CASE("backoff: growth and cap through failing jobs");
    apr_pool_create(&p, root);
    ca.mode = CA_INVALID;
    enqueue("flaky.test");
    for (i = 0; i < (int)(sizeof(want) / sizeof(want[0])); i++) {
        CHECK_EQ_INT(run(&out, d, p, "flaky.test"), CS_ACME_JOB_FAILED);
        job = job_of(p, "flaky.test");
        if (!job) {
            break;
        }
        CHECK_EQ_INT(job->attempts, i + 1);
        CHECK_EQ_INT(job->next_at - clock_now, want[i]);
        /* Not due a second early. */
        clock_now = job->next_at - 1;
        CHECK(nothing_due(d, p));
        clock_now = job->next_at;
    }
    /* A success resets the count. */
    ca.mode = CA_VALID;
    CHECK_EQ_INT(run(&out, d, p, "flaky.test"), CS_ACME_JOB_ISSUED);
    job = job_of(p, "flaky.test");
    CHECK(job && job->attempts == 0);
    apr_pool_destroy(p);
}

static void test_precheck(const cs_acme_policy_t *base)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_policy_t pol = *base;
    cs_acme_drive_t *d;
    int orders = ca.orders, registrations;

    UNIT_CASE("pre-check: a domain that does not reach us is not ordered");
    apr_pool_create(&p, root);
    pol.precheck_port = 80;
    cs_acme_drive_create(&d, p, &pol, "test:1:1", test_log, NULL);
    cs_acme_drive_set_client(d, &fake_ops, &ca);
    cs_acme_drive_set_clock(d, test_clock, NULL);
    ca.drive = d;
    ca.precheck_fail = 1;
    enqueue("away.test");
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(ca.prechecks, 1);
    CHECK_EQ_INT(ca.orders, orders);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "connection refused"));
    /* The CA was not involved: the account is not looked up again. */
    registrations = ca.registrations;
    clock_now += pol.backoff;
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(ca.registrations, registrations);

    UNIT_CASE("pre-check: passed, the order goes on");
    ca.precheck_fail = 0;
    clock_now += 2 * pol.backoff;
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(ca.prechecks, 3);
    CHECK_EQ_INT(ca.orders, orders + 1);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "away.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

int main(void)
{
    const char *tmpdir;
    apr_file_t *f;
    char *path;
    cs_acme_policy_t pol;
    cs_acme_drive_t *d;
    apr_pool_t *dp;
    EVP_PKEY *ca_key, *seal_key;
    apr_array_header_t *wrap;
    int rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (apr_temp_dir_get(&tmpdir, root) != APR_SUCCESS) {
        tmpdir = "/tmp";
    }
    path = apr_pstrcat(root, tmpdir, "/cs_acme_drive_test_XXXXXX", NULL);
    if (apr_file_mktemp(&f, path, APR_FOPEN_CREATE | APR_FOPEN_READ
                        | APR_FOPEN_WRITE | APR_FOPEN_EXCL, root)
        != APR_SUCCESS) {
        fprintf(stderr, "no temporary file in %s\n", tmpdir);
        return 2;
    }
    apr_file_close(f);
    open_db(path);

    /* The CA, and one RSA certificate as wrapping certificate and as the
     * account seal. */
    if (cs_key_generate(&ca_key, root, CS_KEY_EC_P256)
        || cs_key_generate(&seal_key, root, CS_KEY_RSA_2048)) {
        fprintf(stderr, "cannot generate keys\n");
        return 2;
    }
    memset(&ca, 0, sizeof(ca));
    ca.pool = root;
    ca.ca = apr_pcalloc(root, sizeof(*ca.ca));
    ca.ca->key = ca_key;
    ca.ca->cert = self_signed(ca_key, "fake ACME CA", 1);
    ca.accounts = apr_hash_make(root);
    ca.lifetime = apr_time_from_sec(10 * DAY);
    wrap = apr_array_make(root, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(wrap, X509 *) = self_signed(seal_key, "wrap and seal", 0);

    memset(&pol, 0, sizeof(pol));
    pol.directory_url = "https://ca.test/directory";
    pol.seal_cert = APR_ARRAY_IDX(wrap, 0, X509 *);
    pol.seal_key = seal_key;
    pol.wrap_certs = wrap;
    pol.limit = 1000;
    pol.window = 3600;
    pol.backoff = 60;
    pol.backoff_cap = 300;
    pol.renew_pm = 667;
    pol.jitter_pm = 50;
    pol.ari = 1;
    pol.precheck_port = -1;

    clock_now = apr_time_sec(apr_time_now());
    apr_pool_create(&dp, root);
    cs_acme_drive_create(&d, dp, &pol, "test:1:0", test_log, NULL);
    cs_acme_drive_set_client(d, &fake_ops, &ca);
    cs_acme_drive_set_clock(d, test_clock, NULL);
    ca.drive = d;

    test_success(d, &pol);
    test_invalid_challenge(d, &pol);
    test_rate_limited(d, &pol);
    test_ari(d, &pol);
    test_account_again(d, &pol);
    test_backoff(d, &pol);
    test_precheck(&pol);

    UNIT_CASE("no error was logged");
    CHECK_EQ_INT(logged_errors, 0);

    rc = unit_summary();
    apr_dbd_close(db.driver, db.handle);
    apr_file_remove(path, root);
    apr_file_remove(apr_pstrcat(root, path, "-wal", NULL), root);
    apr_file_remove(apr_pstrcat(root, path, "-shm", NULL), root);
    apr_pool_destroy(root);
    apr_terminate();
    return rc;
}
