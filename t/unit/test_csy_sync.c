/*
 * test_csy_sync.c: one sync cycle (csy_sync.c) over the fake transport
 * (fake_http.h) into a real store (csy_store.c) below a temporary
 * directory: a normal cycle that installs a bundle, then what
 * CertService must not be able to do to a proxy: a garbage body,
 * truncated JSON, HTTP 500, a feed page that repeats, a cursor that goes
 * backwards, a bundle that does not verify.  After every failed cycle the
 * cursor, the manifest and what is served are as before.  Then the lease
 * (Retry-After) and the requests' shape.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>

#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_seal.h"
#include "cs_envelope.h"
#include "cs_x509.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "fake_http.h"
#include "testkit.h"
#include "unit.h"

#define CS_URL      "https://cs.test:8443"
#define CHANGES     CS_URL "/v1/changes*"
#define BUNDLES     CS_URL "/v1/bundles"

static apr_pool_t *pool;
static char base[256];
static csy_store_t *store;
static cs_ca_t ca;
static apr_array_header_t *wrap_certs, *wrap_keys;
static fake_http_t *fake;
static csy_config_t cfg;
static csy_client_t *client;
static apr_hash_t *failures;
static int logged_warn;

/* A bundle as CertService sends it (a JSON object, as text); *serial is
 * its serial.  wrong_key: the envelope holds another key than the
 * certificate's. */
static const char *make_bundle(const char **serial, const char *name,
                               int wrong_key)
{
    apr_array_header_t *chain;
    cs_cert_info_t info;
    EVP_PKEY *key, *other;
    unsigned char *der;
    apr_size_t len;
    const char *err;
    json_t *j;
    char *text, *copy;

    if (cs_key_generate(&key, pool, CS_KEY_EC_P256)
        || cs_key_generate(&other, pool, CS_KEY_EC_P256)
        || cs_ca_issue(&chain, pool, &ca, key, name, apr_time_from_sec(3600),
                       &err)
        || cs_envelope_seal(&der, &len, pool, wrong_key ? other : key,
                            wrap_certs, &err)) {
        return NULL;
    }
    cs_cert_info(&info, pool, APR_ARRAY_IDX(chain, 0, X509 *));
    *serial = info.serial;
    j = json_pack("{s:s, s:s, s:s, s:s}", "domain", name, "serial",
                  info.serial, "chain_pem", cs_pem_write_certs(pool, chain),
                  "key_cms", cs_base64_encode(pool, der, len));
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    copy = apr_pstrdup(pool, text);
    free(text);
    return copy;
}

/* A bundle for name issued by issuer whose chain text is its leaf
 * followed by tail (the issuer's certificate when NULL). */
static const char *make_bundle_tail(const char **serial, const char *name,
                                    const cs_ca_t *issuer, const char *tail)
{
    apr_array_header_t *chain, *leaf;
    cs_cert_info_t info;
    EVP_PKEY *key;
    unsigned char *der;
    apr_size_t len;
    const char *err;
    json_t *j;
    char *text, *copy;

    if (cs_key_generate(&key, pool, CS_KEY_EC_P256)
        || cs_ca_issue(&chain, pool, issuer, key, name,
                       apr_time_from_sec(3600), &err)
        || cs_envelope_seal(&der, &len, pool, key, wrap_certs, &err)) {
        return NULL;
    }
    cs_cert_info(&info, pool, APR_ARRAY_IDX(chain, 0, X509 *));
    *serial = info.serial;
    leaf = apr_array_make(pool, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(leaf, X509 *) = APR_ARRAY_IDX(chain, 0, X509 *);
    j = json_pack("{s:s, s:s, s:s, s:s}", "domain", name, "serial",
                  info.serial, "chain_pem",
                  tail ? apr_pstrcat(pool, cs_pem_write_certs(pool, leaf),
                                     tail, NULL)
                       : cs_pem_write_certs(pool, chain),
                  "key_cms", cs_base64_encode(pool, der, len));
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    copy = apr_pstrdup(pool, text);
    free(text);
    return copy;
}

static void test_log(void *baton, cs_log_level_t level, const char *msg)
{
    if (level <= CS_LOG_WARN) {
        logged_warn++;
    }
    if (getenv("TEST_VERBOSE")) {
        printf("  log %d: %s\n", (int)level, msg);
    }
}

static long long cursor(void)
{
    long long c = -1;

    csy_store_cursor_get(&c, store, pool);
    return c;
}

/* The manifest as one line ("a b"), for comparisons. */
static const char *manifest(void)
{
    apr_array_header_t *d;
    const char *s = "";
    int i;

    if (csy_store_manifest_read(&d, store, pool)) {
        return "(unreadable)";
    }
    for (i = 0; i < d->nelts; i++) {
        s = apr_pstrcat(pool, s, i ? " " : "",
                        APR_ARRAY_IDX(d, i, const char *), NULL);
    }
    return s;
}

/* One cycle over whatever the fake was told. */
static apr_status_t cycle(csy_result_t *res)
{
    return csy_sync_once(res, client, store, failures, pool);
}

static void test_normal_cycle(void)
{
    csy_result_t res;
    const char *serial, *b;
    const fake_http_request_t *r;

    UNIT_CASE("a normal cycle installs a bundle");
    b = make_bundle(&serial, "www.example.com", 0);
    CHECK(b != NULL);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CS_URL "/v1/changes?since=0&limit=1000",
                     200, NULL,
                     "{\"changes\":[{\"seq\":7,\"domain\":\"www.example.com\","
                     "\"op\":\"upsert\"}],\"next\":7,\"more\":false}");
    fake_http_answer(fake, "POST", BUNDLES, 200, NULL,
                     apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_STR(res.error, NULL);
    CHECK_EQ_INT(res.installed, 1);
    CHECK_EQ_INT(res.changes, 1);
    CHECK(res.changed);
    CHECK_EQ_INT(res.cursor_before, 0);
    CHECK_EQ_INT(res.cursor_after, 7);
    CHECK_EQ_INT(cursor(), 7);
    CHECK_STR(csy_store_current(store, pool, "www.example.com"), serial);
    CHECK_STR(apr_hash_get(res.made_current, "www.example.com",
                           APR_HASH_KEY_STRING), serial);
    CHECK_STR(manifest(), "www.example.com");
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);
    /* What went over the wire. */
    CHECK_EQ_INT(fake_http_count(fake), 2);
    r = fake_http_request(fake, 1);
    if (CHECK(r != NULL)) {
        CHECK_STR(r->method, "POST");
        CHECK_STR(fake_http_header(r, "Content-Type"), "application/json");
        CHECK_STR(fake_http_header(r, "Accept"), "application/json");
        CHECK_STR(r->body, "{\"domains\":[\"www.example.com\"]}");
    }

    UNIT_CASE("the next cycle starts at the cursor, nothing new");
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CS_URL "/v1/changes?since=7&limit=1000",
                     200, NULL, "{\"changes\":[],\"next\":7,\"more\":false}");
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.changed, 0);
    CHECK_EQ_INT(fake_http_count(fake), 1);
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);
}

/* A cycle that must fail and change nothing: cursor 7, one domain. */
static void failing_cycle(const char *name, const char *why)
{
    csy_result_t res;
    apr_status_t rv;

    UNIT_CASE(name);
    rv = cycle(&res);
    CHECK(rv != APR_SUCCESS);
    if (CHECK(res.error != NULL) && !CHECK(strstr(res.error, why))) {
        printf("  error was: %s\n", res.error);
    }
    CHECK_EQ_INT(cursor(), 7);
    CHECK_EQ_INT(res.installed, 0);
    CHECK_STR(manifest(), "www.example.com");
    CHECK(csy_store_current(store, pool, "www.example.com") != NULL);
}

/* The fake answers the feed with status and feed, and the bundles with
 * bundles_status and bundles unless that is NULL. */
static void script(int status, const char *feed, int bundles_status,
                   const char *bundles)
{
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CHANGES, status, NULL, feed);
    if (bundles) {
        fake_http_answer(fake, "POST", BUNDLES, bundles_status, NULL,
                         bundles);
    }
}

/* syncfs() as the store calls it (cs_file_sync_fs, compiled into this
 * program): this definition comes before libc's, so that a case can make
 * the store's sync fail, as a disk's writeback error would. */
static volatile int syncfs_errno;       /* 0: the real syncfs */
static volatile int syncfs_ok_first;    /* ... after this many real ones */

int syncfs(int fd)
{
    static int (*real)(int);

    if (syncfs_errno && syncfs_ok_first > 0) {
        syncfs_ok_first--;
    }
    else if (syncfs_errno) {
        errno = syncfs_errno;
        return -1;
    }
    if (!real) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    }
    return real ? real(fd) : 0;
}

#define UPSERT_B8 "{\"changes\":[{\"seq\":8,\"domain\":\"b.example.com\"," \
                  "\"op\":\"upsert\"}],\"next\":8,\"more\":false}"

/* A handler that only notes the saved cursor at each request. */
static apr_status_t watch_cursor(void *baton, cs_http_resp_t *resp,
                                 const cs_http_req_t *req, apr_pool_t *p,
                                 const char **err)
{
    APR_ARRAY_PUSH((apr_array_header_t *)baton, long) = (long)cursor();
    return FAKE_HTTP_DECLINED;
}

static void test_bad_answers(void)
{
    /* Each a failing cycle: what, the answers, what the error says. */
    static const struct {
        const char *what;
        int status;
        const char *feed;
        int bundles_status;
        const char *bundles, *says;
    } bad[] = {
        { "a garbage body", 200, "<html>502 Bad Gateway</html>", 0, NULL,
          "malformed JSON" },
        { "truncated JSON", 200,
          "{\"changes\":[{\"seq\":8,\"domain\":\"b.example.com\","
          "\"op\":\"ups", 0, NULL, "malformed JSON" },
        { "HTTP 500 on the feed", 500, "{\"error\":\"database is down\"}", 0,
          NULL, "HTTP 500: database is down" },
        /* The feed is fine but the bundles cannot be fetched: the cursor
         * must not pass the change whose bundle it did not get. */
        { "HTTP 500 on the bundles", 200, UPSERT_B8, 500, "oops",
          "HTTP 500" },
        { "truncated JSON after all fields", 200,
          "{\"changes\":[],\"next\":7,\"more\":false,", 0, NULL,
          "malformed JSON" },
        { "a cursor that goes backwards", 200,
          "{\"changes\":[{\"seq\":3,\"domain\":\"www.example.com\","
          "\"op\":\"delete\"}],\"next\":3,\"more\":false}", 0, NULL,
          "malformed answer" },
        { "a change naming no valid domain", 200,
          "{\"changes\":[{\"seq\":8,\"domain\":\"../etc\","
          "\"op\":\"upsert\"}],\"next\":8,\"more\":false}", 0, NULL,
          "valid domain" },
        { "a bundles answer without an array", 200, UPSERT_B8, 200,
          "{\"bundles\":{}}", "no bundles array" },
        /* CertService's text goes into the error log and the status: one
         * line of printable text (found by fuzz_feed). */
        { "an error text with a line break", 500,
          "{\"error\":\"down\\nCY00004 forged line\\u0007\"}", 0, NULL,
          "HTTP 500: down\\x0aCY00004 forged line\\x07" },
    };
    const char *serial, *b;
    unsigned i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        script(bad[i].status, bad[i].feed, bad[i].bundles_status,
               bad[i].bundles);
        failing_cycle(bad[i].what, bad[i].says);
    }

    /* The same page again and again: "more" without the cursor moving.
     * Scripted for 50 answers: a client that loops runs out of them. */
    fake_http_reset(fake);
    fake_http_answer_n(fake, "GET", CHANGES, 200, NULL,
                       "{\"changes\":[{\"seq\":7,\"domain\":"
                       "\"www.example.com\",\"op\":\"delete\"}],\"next\":7,"
                       "\"more\":true}", 50);
    failing_cycle("a feed page that repeats", "more without progress");
    CHECK_EQ_INT(fake_http_count(fake), 1);
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);

    fake_http_reset(fake);
    fake_http_fail(fake, NULL, CS_URL "*", APR_ECONNREFUSED, 0);
    failing_cycle("CertService unreachable", "fails as scripted");

    /* A bundle that does not verify is skipped, remembered and retried;
     * the cycle itself succeeds and the cursor moves on. */
    {
        csy_result_t res;

        UNIT_CASE("a bundle whose key does not match is skipped");
        b = make_bundle(&serial, "b.example.com", 1);
        script(200, UPSERT_B8, 200,
               apr_psprintf(pool, "{\"bundles\":[%s]}", b));
        logged_warn = 0;
        CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
        CHECK_EQ_INT(res.installed, 0);
        CHECK_EQ_INT(cursor(), 8);
        CHECK(apr_hash_get(failures, "b.example.com", APR_HASH_KEY_STRING)
              != NULL);
        CHECK_STR(csy_store_current(store, pool, "b.example.com"), NULL);
        CHECK_STR(manifest(), "www.example.com");
        CHECK_EQ_INT(logged_warn, 1);

        UNIT_CASE("the failed bundle is retried and installed");
        b = make_bundle(&serial, "b.example.com", 0);
        script(200, "{\"changes\":[],\"next\":8,\"more\":false}", 200,
               apr_psprintf(pool, "{\"bundles\":[%s]}", b));
        CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
        CHECK_EQ_INT(res.installed, 1);
        CHECK_EQ_INT(apr_hash_count(failures), 0);
        CHECK_STR(csy_store_current(store, pool, "b.example.com"), serial);
        CHECK_STR(manifest(), "b.example.com www.example.com");
    }

    UNIT_CASE("a page then the next page");
    {
        csy_result_t res;

        fake_http_reset(fake);
        fake_http_answer(fake, "GET", CS_URL "/v1/changes?since=8&limit=1000",
                         200, NULL,
                         "{\"changes\":[{\"seq\":9,\"domain\":"
                         "\"b.example.com\",\"op\":\"delete\"}],\"next\":9,"
                         "\"more\":true}");
        fake_http_answer(fake, "GET", CS_URL "/v1/changes?since=9&limit=1000",
                         200, NULL, "{\"changes\":[],\"next\":9,"
                         "\"more\":false}");
        CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
        CHECK_EQ_INT(res.removed, 1);
        CHECK_EQ_INT(cursor(), 9);
        CHECK_STR(manifest(), "www.example.com");
        CHECK_EQ_INT(fake_http_count(fake), 2);
        CHECK_EQ_INT(fake_http_unanswered(fake), 0);
    }

    /* issue 18: the manifest and the cursor were saved after every page:
     * a cold sync of N domains rewrote the whole manifest N / 1000 times.
     * Now every CSY_CHECKPOINT_PAGES pages and at the end: the cursor on
     * disk does not move while the pages of one cycle are read. */
    UNIT_CASE("pages: the cursor is saved at the end, not after each page");
    {
        csy_result_t res;
        apr_array_header_t *seen = apr_array_make(pool, 4, sizeof(long));
        int k;

        fake_http_reset(fake);
        fake_http_handler(fake, watch_cursor, seen);
        for (k = 9; k <= 11; k++) {
            fake_http_answer(fake, "GET",
                             apr_psprintf(pool, CS_URL "/v1/changes?since=%d"
                                          "&limit=1000", k), 200, NULL,
                             apr_psprintf(pool, "{\"changes\":[{\"seq\":%d,"
                                          "\"domain\":\"gone%d.example.com\","
                                          "\"op\":\"delete\"}],\"next\":%d,"
                                          "\"more\":%s}", k + 1, k, k + 1,
                                          k < 11 ? "true" : "false"));
        }
        CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
        CHECK_EQ_INT(cursor(), 12);
        CHECK_EQ_INT(res.cursor_after, 12);
        if (CHECK_EQ_INT(seen->nelts, 3)) {
            CHECK_EQ_INT((int)APR_ARRAY_IDX(seen, 1, long), 9);
            CHECK_EQ_INT((int)APR_ARRAY_IDX(seen, 2, long), 9);
        }
    }
    (void)i;
}

/* Ask for a lease of 300 s; CertService answers status, headers, body. */
static apr_status_t lease_asked(const char **lease, long *retry, int status,
                                const char *headers, const char *body)
{
    const char *err = NULL;

    fake_http_reset(fake);
    fake_http_answer(fake, "POST", CS_URL "/v1/pools/web/leases", status,
                     headers, body);
    return csy_lease_acquire(lease, retry, client, pool, 300, &err);
}

static void test_lease(void)
{
    const char *lease;
    long retry;
    const fake_http_request_t *r;

    UNIT_CASE("a lease granted");
    CHECK_EQ_INT(lease_asked(&lease, &retry, 201, NULL,
                             "{\"lease\":\"l-1\",\"ttl\":300}"),
                 APR_SUCCESS);
    CHECK_STR(lease, "l-1");
    r = fake_http_request(fake, 0);
    if (CHECK(r != NULL)) {
        CHECK_STR(r->body, "{\"host\":\"h1\",\"ttl\":300}");
    }

    /* The lease goes into the URL of its release: only a lease name as
     * the API defines it (found by fuzz_feed). */
    UNIT_CASE("a lease that is not a lease name: refused");
    CHECK_EQ_INT(lease_asked(&lease, &retry, 201, NULL,
                             "{\"lease\":\"../../domains/example.com\"}"),
                 APR_EGENERAL);
    CHECK_STR(lease, NULL);
    CHECK_EQ_INT(lease_asked(&lease, &retry, 201, NULL,
                             "{\"lease\":\"\"}"), APR_EGENERAL);
    CHECK_EQ_INT(lease_asked(&lease, &retry, 201, NULL,
                             "{\"lease\":\"l 1\"}"), APR_EGENERAL);

    UNIT_CASE("a lease refused: its Retry-After");
    CHECK_EQ_INT(lease_asked(&lease, &retry, 409, "Retry-After: 17\n",
                             "{\"error\":\"all slots taken\"}"),
                 APR_EAGAIN);
    CHECK_EQ_INT(retry, 17);
    CHECK_STR(lease, NULL);

    UNIT_CASE("a lease refused without a Retry-After: 5 s");
    CHECK_EQ_INT(lease_asked(&lease, &retry, 409, NULL, "{}"), APR_EAGAIN);
    CHECK_EQ_INT(retry, 5);

    UNIT_CASE("a lease released, a gone lease is released too");
    fake_http_reset(fake);
    fake_http_answer(fake, "DELETE", CS_URL "/v1/pools/web/leases/l-1", 204,
                     NULL, NULL);
    fake_http_answer(fake, "DELETE", CS_URL "/v1/pools/web/leases/l-2", 404,
                     NULL, "{\"error\":\"no such lease\"}");
    CHECK_EQ_INT(csy_lease_release(client, pool, "l-1"), APR_SUCCESS);
    CHECK_EQ_INT(csy_lease_release(client, pool, "l-2"), APR_SUCCESS);
    CHECK_EQ_INT(fake_http_count(fake), 2);
}

/* The batch size's default and the timeout are the glue's
 * (csy_conf_effective, CSY_HTTP_TIMEOUT): the pure client has none to
 * fall back on. */
/* fullchain.pem holds the certificates the daemon verified, written out
 * again, not CertService's text: a line that the PEM reader skips but a
 * worker's faster reader (csy_dyn.c, leaf_parse) takes for the leaf made
 * dynamic mode fail to load the version (found by fuzz_feed). */
static void test_chain_as_verified(void)
{
    csy_result_t res;
    const char *serial, *b, *dir;
    char *pem;
    apr_size_t len;
    long long next = cursor() + 1;

    UNIT_CASE("the chain stored is the chain verified, in plain PEM");
    b = make_bundle(&serial, "pem.example.com", 0);
    if (!CHECK(b != NULL)) {
        return;
    }
    b = apr_pstrcat(pool, "{\"bundles\":[",
                    apr_pstrmemdup(pool, b, (apr_size_t)(strstr(b,
                        "\"chain_pem\":\"") - b)),
                    "\"chain_pem\":\"x -----BEGIN CERTIFICATE-----\\n"
                    "-----END CERTIFICATE-----\\n",
                    strstr(b, "\"chain_pem\":\"") + 13, "]}", NULL);
    script(200, apr_psprintf(pool, "{\"changes\":[{\"seq\":%"
                             APR_INT64_T_FMT ",\"domain\":"
                             "\"pem.example.com\",\"op\":\"upsert\"}],"
                             "\"next\":%" APR_INT64_T_FMT ",\"more\":false}",
                             (apr_int64_t)next, (apr_int64_t)next), 200, b);
    if (!CHECK_EQ_INT(cycle(&res), APR_SUCCESS)) {
        printf("  error: %s\n", res.error);
    }
    CHECK_EQ_INT(res.installed, 1);
    dir = csy_store_current_dir(store, pool, "pem.example.com");
    if (CHECK(dir != NULL)
        && CHECK_EQ_INT(csy_store_read_file(&pem, &len, pool,
                                            apr_pstrcat(pool, dir,
                                                        "/fullchain.pem",
                                                        NULL)), 0)) {
        CHECK(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
        CHECK(strstr(pem, "x -----") == NULL);
    }
}

/*
 * One batch of bundles checked on several threads, with the
 * intermediates parsed once per thread: the good ones installed, a wrong
 * key refused, and a leaf from another CA followed by the text of the
 * intermediate the others share (the one a worker has cached) refused
 * too: the cache spares the intermediate's parsing, never the leaf's
 * signature.  Then every bundle of a batch refused: nothing is synced or
 * switched, the cursor moves on.
 */
static void test_threads(int threads)
{
    csy_config_t c = cfg;
    csy_client_t *cl;
    csy_result_t res;
    cs_ca_t other;
    apr_array_header_t *wc, *wk, *mine;
    const char *serial, *b, *bundles = "", *feed = "", *name, *ca_pem;
    const char *serials[10], *why;
    long long next = cursor();
    int i, ok = 1;

    UNIT_CASE(apr_psprintf(pool, "a batch on %d thread(s): good bundles in, "
                           "a forged chain and a wrong key out", threads));
    c.threads = threads;
    if (!CHECK_EQ_INT(csy_client_create(&cl, pool, &c), APR_SUCCESS)
        || !CHECK_EQ_INT(testkit_ca_and_wrap(pool, &other, &wc, &wk), 0)) {
        return;
    }
    mine = apr_array_make(pool, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(mine, X509 *) = ca.cert;
    ca_pem = cs_pem_write_certs(pool, mine);
    for (i = 0; i < 12; i++) {
        name = apr_psprintf(pool, "t%d-%02d.example.com", threads, i);
        b = i < 10 ? make_bundle(&serials[i], name, 0)
          : i == 10 ? make_bundle_tail(&serial, name, &other, ca_pem)
          : make_bundle(&serial, name, 1);
        ok &= b != NULL;
        bundles = apr_pstrcat(pool, bundles, i ? "," : "", b, NULL);
        feed = apr_psprintf(pool, "%s%s{\"seq\":%" APR_INT64_T_FMT
                            ",\"domain\":\"%s\",\"op\":\"upsert\"}", feed,
                            i ? "," : "", (apr_int64_t)(next + 1 + i), name);
    }
    if (!CHECK(ok)) {
        return;
    }
    script(200, apr_psprintf(pool, "{\"changes\":[%s],\"next\":%"
                             APR_INT64_T_FMT ",\"more\":false}", feed,
                             (apr_int64_t)(next + 12)),
           200, apr_pstrcat(pool, "{\"bundles\":[", bundles, "]}", NULL));
    if (!CHECK_EQ_INT(csy_sync_once(&res, cl, store, failures, pool),
                      APR_SUCCESS)) {
        printf("  error: %s\n", res.error);
    }
    CHECK_EQ_INT(res.installed, 10);
    CHECK(res.store_failed == NULL);
    CHECK_EQ_INT((int)cursor(), (int)(next + 12));
    for (i = 0; i < 10; i++) {
        name = apr_psprintf(pool, "t%d-%02d.example.com", threads, i);
        if (!CHECK_STR(csy_store_current(store, pool, name), serials[i])) {
            printf("  %s\n", name);
        }
        CHECK(apr_hash_get(failures, name, APR_HASH_KEY_STRING) == NULL);
    }
    name = apr_psprintf(pool, "t%d-10.example.com", threads);
    why = apr_hash_get(failures, name, APR_HASH_KEY_STRING);
    CHECK(csy_store_current(store, pool, name) == NULL);
    if (!CHECK(why && strstr(why, "not in order"))) {
        printf("  forged chain: %s\n", why ? why : "(accepted)");
    }
    name = apr_psprintf(pool, "t%d-11.example.com", threads);
    why = apr_hash_get(failures, name, APR_HASH_KEY_STRING);
    CHECK(csy_store_current(store, pool, name) == NULL);
    CHECK(why && strstr(why, "key does not match"));
    CHECK(strstr(manifest(), apr_psprintf(pool, "t%d-09.example.com",
                                          threads)) != NULL);
    CHECK(strstr(manifest(), apr_psprintf(pool, "t%d-10.example.com",
                                          threads)) == NULL);
    apr_hash_clear(failures);
}

/*
 * Batches fetched while the one before is checked (fetch_all): a page of
 * 10 in batches of 4, the second POST answered 500.  The first batch,
 * checked while the second was asked for, is installed; the third is not
 * asked for; the cursor stays.  The next cycle installs the other 6.
 */
static void test_pipeline(void)
{
    csy_config_t c = cfg;
    csy_client_t *cl;
    csy_result_t res;
    const char *b, *bundles = "", *feed = "", *name, *serials[10], *page;
    long long next = cursor();
    int i, ok = 1, current = 0;

    UNIT_CASE("batches asked for while the one before is checked: a "
              "failed batch keeps the ones before it");
    c.threads = 2;
    c.batch_size = 4;
    if (!CHECK_EQ_INT(csy_client_create(&cl, pool, &c), APR_SUCCESS)) {
        return;
    }
    for (i = 0; i < 10; i++) {
        name = apr_psprintf(pool, "pipe-%02d.example.com", i);
        b = make_bundle(&serials[i], name, 0);
        ok &= b != NULL;
        bundles = apr_pstrcat(pool, bundles, i ? "," : "", b, NULL);
        feed = apr_psprintf(pool, "%s%s{\"seq\":%" APR_INT64_T_FMT
                            ",\"domain\":\"%s\",\"op\":\"upsert\"}", feed,
                            i ? "," : "", (apr_int64_t)(next + 1 + i), name);
    }
    if (!CHECK(ok)) {
        return;
    }
    page = apr_psprintf(pool, "{\"changes\":[%s],\"next\":%" APR_INT64_T_FMT
                        ",\"more\":false}", feed, (apr_int64_t)(next + 10));
    bundles = apr_pstrcat(pool, "{\"bundles\":[", bundles, "]}", NULL);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CHANGES, 200, NULL, page);
    /* Every bundle in each answer: only those asked for are taken. */
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL, bundles, 1);
    fake_http_answer_n(fake, "POST", BUNDLES, 500, NULL,
                       "{\"error\":\"down\"}", 1);
    CHECK(csy_sync_once(&res, cl, store, failures, pool) != APR_SUCCESS);
    CHECK(res.error && strstr(res.error, "HTTP 500"));
    CHECK_EQ_INT(fake_http_count_of(fake, "POST", BUNDLES), 2);
    CHECK_EQ_INT(res.installed, 4);
    for (i = 0; i < 10; i++) {
        name = apr_psprintf(pool, "pipe-%02d.example.com", i);
        current += csy_store_current(store, pool, name) != NULL;
    }
    CHECK_EQ_INT(current, 4);
    CHECK_EQ_INT((int)cursor(), (int)next);

    UNIT_CASE("batches asked for while the one before is checked: the "
              "next cycle installs the rest");
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CHANGES, 200, NULL, page);
    fake_http_answer(fake, "POST", BUNDLES, 200, NULL, bundles);
    CHECK_EQ_INT(csy_sync_once(&res, cl, store, failures, pool),
                 APR_SUCCESS);
    CHECK_EQ_INT(fake_http_count_of(fake, "POST", BUNDLES), 3);
    CHECK_EQ_INT(res.installed, 6);
    CHECK_EQ_INT(res.unchanged, 4);
    for (i = 0; i < 10; i++) {
        name = apr_psprintf(pool, "pipe-%02d.example.com", i);
        CHECK_STR(csy_store_current(store, pool, name), serials[i]);
    }
    CHECK_EQ_INT((int)cursor(), (int)(next + 10));
    apr_hash_clear(failures);
}

static void test_batch_size(void)
{
    csy_config_t c = cfg;
    csy_client_t *cl;

    UNIT_CASE("no batch size: refused, no default of its own");
    c.batch_size = 0;
    CHECK_EQ_INT(csy_client_create(&cl, pool, &c), APR_EINVAL);
    c.batch_size = 1;
    CHECK_EQ_INT(csy_client_create(&cl, pool, &c), APR_SUCCESS);

    UNIT_CASE("libcurl's transport without a timeout: refused");
    c.http = NULL;
    c.timeout = 0;
    CHECK_EQ_INT(csy_client_create(&cl, pool, &c), APR_EINVAL);
}

/*
 * A store that takes no write (a full disk: RLIMIT_FSIZE makes every write
 * fail with EFBIG, for root too): the result says which write failed and
 * how far CertService's feed goes, for the daemon's status (issue 17).
 */
static void test_store_full(void)
{
    csy_result_t res;
    const char *serial, *b;
    apr_int64_t c0 = cursor(), next = c0 + 5;
    struct rlimit old, tiny;
    void (*was)(int);

    UNIT_CASE("store full: the bundle is skipped, the cursor not saved");
    b = make_bundle(&serial, "full.example.com", 0);
    script(200, apr_psprintf(pool, "{\"changes\":[{\"seq\":%" APR_INT64_T_FMT ","
                             "\"domain\":\"full.example.com\","
                             "\"op\":\"upsert\"}],\"next\":%" APR_INT64_T_FMT ","
                             "\"more\":false}", next, next),
           200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    getrlimit(RLIMIT_FSIZE, &old);
    tiny = old;
    tiny.rlim_cur = 1;      /* not even the cursor file (3 bytes) */
    was = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    CHECK(cycle(&res) != APR_SUCCESS);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, was);
    CHECK_EQ_INT(res.cursor_after, c0);
    CHECK_EQ_INT(cursor(), c0);
    CHECK_EQ_INT(res.head, next);
    CHECK(res.head_exact);
    CHECK_STR(res.store_failed, "cursor");
    CHECK(res.store_error && strstr(res.store_error, "too large"));
    if (!CHECK(res.error && strstr(res.error, "cannot save the cursor"))) {
        printf("  error was: %s\n", res.error ? res.error : "(none)");
    }
    CHECK(apr_hash_get(failures, "full.example.com", APR_HASH_KEY_STRING)
          != NULL);

    UNIT_CASE("store full: a feed page with more to follow is a lower bound");
    script(200, apr_psprintf(pool, "{\"changes\":[],\"next\":%" APR_INT64_T_FMT ","
                             "\"more\":true}", next + 10), 200, NULL);
    CHECK(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    was = signal(SIGXFSZ, SIG_IGN);
    CHECK(cycle(&res) != APR_SUCCESS);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, was);
    CHECK_EQ_INT(res.head, next + 10);
    CHECK(!res.head_exact);

    UNIT_CASE("store full: space again, the cycle catches up");
    script(200, apr_psprintf(pool, "{\"changes\":[{\"seq\":%" APR_INT64_T_FMT ","
                             "\"domain\":\"full.example.com\","
                             "\"op\":\"upsert\"}],\"next\":%" APR_INT64_T_FMT ","
                             "\"more\":false}", next, next),
           200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_STR(res.store_failed, NULL);
    CHECK_EQ_INT(cursor(), next);
    CHECK_EQ_INT(res.head, next);
    CHECK_STR(csy_store_current(store, pool, "full.example.com"), serial);
    apr_hash_clear(failures);
}

/* The manifest file's inode (0: none): a rewrite is a new file. */
static unsigned long manifest_ino(void)
{
    struct stat st;

    if (stat(apr_pstrcat(pool, base, "/store/manifest", NULL), &st) != 0) {
        return 0;
    }
    return (unsigned long)st.st_ino;
}

/* A feed of one page from the saved cursor; changes: "op domain" pairs
 * separated by ','. */
static const char *feed_page(long long since, const char *changes,
                             int more)
{
    apr_array_header_t *parts = apr_array_make(pool, 4, sizeof(char *));
    char *list = apr_pstrdup(pool, changes), *tok, *last;
    long long seq = since;

    for (tok = apr_strtok(list, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        char *sp = strchr(tok, ' ');
        const char *sep = parts->nelts ? "," : "";

        *sp = '\0';
        APR_ARRAY_PUSH(parts, const char *) =
            apr_psprintf(pool, "%s{\"seq\":%" APR_INT64_T_FMT ",\"domain\":"
                         "\"%s\",\"op\":\"%s\"}", sep, (apr_int64_t)++seq,
                         sp + 1, tok);
    }
    return apr_psprintf(pool, "{\"changes\":[%s],\"next\":%"
                        APR_INT64_T_FMT ",\"more\":%s}",
                        apr_array_pstrcat(pool, parts, 0), (apr_int64_t)seq,
                        more ? "true" : "false");
}

/*
 * Issue 18: at 1,000,000 domains every cycle read the 50.8 MB manifest
 * and every renewal rewrote it.  Now only a change of the servable set
 * writes it (a new file, so a new inode), and a cycle reads none of it
 * when its file is the one the last cycle left.
 */
static void test_manifest_writes(void)
{
    csy_result_t res;
    const char *serial, *b1, *b2;
    unsigned long ino;
    long long c;

    UNIT_CASE("an idle cycle leaves the manifest as it was");
    b1 = make_bundle(&serial, "m1.example.com", 0);
    c = cursor();
    script(200, feed_page(c, "upsert m1.example.com", 0), 200,
           apr_psprintf(pool, "{\"bundles\":[%s]}", b1));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 1);
    ino = manifest_ino();
    CHECK(ino != 0);
    c = cursor();
    script(200, feed_page(c, "", 0), 200, NULL);
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.changed, 0);
    CHECK(manifest_ino() == ino);

    UNIT_CASE("a renewal leaves the manifest as it was");
    b1 = make_bundle(&serial, "m1.example.com", 0);
    script(200, feed_page(c, "upsert m1.example.com", 0), 200,
           apr_psprintf(pool, "{\"bundles\":[%s]}", b1));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 1);
    CHECK(res.changed);         /* served changed: vhost mode restarts */
    CHECK_STR(csy_store_current(store, pool, "m1.example.com"), serial);
    CHECK(manifest_ino() == ino);

    UNIT_CASE("a new domain patches the manifest, in order");
    b2 = make_bundle(&serial, "m0.example.com", 0);
    c = cursor();
    script(200, feed_page(c, "upsert m0.example.com", 0), 200,
           apr_psprintf(pool, "{\"bundles\":[%s]}", b2));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK(manifest_ino() != ino);
    CHECK(strstr(manifest(), "m0.example.com m1.example.com") != NULL);

    UNIT_CASE("deleted and added again in one cycle: the manifest stays");
    ino = manifest_ino();
    b1 = make_bundle(&serial, "m1.example.com", 0);
    c = cursor();
    fake_http_reset(fake);
    fake_http_answer_n(fake, "GET", CHANGES, 200, NULL,
                       feed_page(c, "delete m1.example.com", 1), 1);
    fake_http_answer_n(fake, "GET", CHANGES, 200, NULL,
                       feed_page(c + 1, "upsert m1.example.com", 0), 1);
    fake_http_answer(fake, "POST", BUNDLES, 200, NULL,
                     apr_psprintf(pool, "{\"bundles\":[%s]}", b1));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.removed, 1);
    CHECK_EQ_INT(res.installed, 1);
    CHECK(apr_hash_get(res.removed_set, "m1.example.com",
                       APR_HASH_KEY_STRING) != NULL);
    CHECK(apr_hash_get(res.made_current, "m1.example.com",
                       APR_HASH_KEY_STRING) != NULL);
    CHECK(manifest_ino() == ino);
    CHECK(strstr(manifest(), "m0.example.com m1.example.com") != NULL);

    UNIT_CASE("a deleted domain leaves the manifest");
    c = cursor();
    script(200, feed_page(c, "delete m0.example.com", 0), 200, NULL);
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.removed, 1);
    CHECK(manifest_ino() != ino);
    CHECK(strstr(manifest(), "m0.example.com") == NULL);
    CHECK(strstr(manifest(), "m1.example.com") != NULL);
}

/*
 * The key.seal backfill goes through the manifest in slices, reading
 * only the slice (csy_store_manifest_slice), not the whole file at every
 * cycle: versions installed without key.seal get one, max a call, and
 * the pass ends at the manifest's end.
 */
static void test_seal_backfill(void)
{
    csy_config_t dcfg = cfg;
    apr_array_header_t *chain, *names;
    const char *err, *name, *sdir = csy_store_dir(store);
    cs_cert_info_t info;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key;
    int i, pos = 0, done = 0, n, calls = 0, sealed = 0, have;

    UNIT_CASE("key.seal backfill: in slices, to the manifest's end");
    names = apr_array_make(pool, 5, sizeof(const char *));
    for (i = 0; i < 5; i++) {
        name = apr_psprintf(pool, "seal%d.example.com", i);
        APR_ARRAY_PUSH(names, const char *) = name;
        if (!CHECK(cs_key_generate(&key, pool, CS_KEY_EC_P256) == 0
                   && cs_ca_issue(&chain, pool, &ca, key, name,
                                  apr_time_from_sec(3600), &err) == 0
                   && cs_envelope_seal(&der, &len, pool, key, wrap_certs,
                                       &err) == 0)) {
            return;
        }
        cs_cert_info(&info, pool, APR_ARRAY_IDX(chain, 0, X509 *));
        CHECK_EQ_INT(csy_store_install(store, pool, name, info.serial,
                                       cs_pem_write_certs(pool, chain), der,
                                       len, 1), APR_SUCCESS);
    }
    CHECK_EQ_INT(csy_store_manifest_write(store, pool, names), APR_SUCCESS);
    dcfg.keep_envelopes = 1;
    dcfg.seal_keys = cs_seal_keys_derive(pool, wrap_keys);
    while (!done && calls < 10) {
        n = csy_seal_backfill(&dcfg, store, pool, &pos, 2, &done);
        CHECK(n <= 2);
        sealed += n;
        calls++;
    }
    CHECK(done);
    CHECK_EQ_INT(sealed, 5);
    CHECK_EQ_INT(pos, 5);
    CHECK_EQ_INT(calls, 3);
    for (i = 0, have = 0; i < 5; i++) {
        name = APR_ARRAY_IDX(names, i, const char *);
        have += access(apr_psprintf(pool, "%s/live/%s/current/key.seal",
                                    sdir, name), F_OK) == 0;
    }
    CHECK_EQ_INT(have, 5);
    /* Again from the start: every one sealed, nothing to write. */
    pos = 0;
    CHECK_EQ_INT(csy_seal_backfill(&dcfg, store, pool, &pos, 2, &done), 0);
    CHECK(done);
    CHECK_EQ_INT(pos, 5);
}

/*
 * The page's commit: one syncfs() of the store, then the switches.  When
 * the sync fails (EIO: a writeback error), nothing of the page becomes
 * current, each bundle is a failure that names the sync, and the cursor
 * stays before the page; the next cycle installs it.
 */
static void test_sync_fails(void)
{
    csy_result_t res;
    const char *serial, *b, *why;
    apr_int64_t c0 = cursor(), next = c0 + 3;
    const char *feed;

    UNIT_CASE("the page's sync fails: nothing current, the cursor stays");
    b = make_bundle(&serial, "syncfail.example.com", 0);
    feed = apr_psprintf(pool, "{\"changes\":[{\"seq\":%" APR_INT64_T_FMT
                        ",\"domain\":\"syncfail.example.com\","
                        "\"op\":\"upsert\"}],\"next\":%" APR_INT64_T_FMT
                        ",\"more\":false}", next, next);
    script(200, feed, 200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    syncfs_errno = EIO;
    CHECK(cycle(&res) != APR_SUCCESS);
    syncfs_errno = 0;
    if (!CHECK(res.error && strstr(res.error, "cannot sync the store"))) {
        printf("  error was: %s\n", res.error ? res.error : "(none)");
    }
    CHECK_STR(res.store_failed, "bundles");
    CHECK_EQ_INT(res.installed, 0);
    CHECK_STR(csy_store_current(store, pool, "syncfail.example.com"), NULL);
    CHECK(strstr(manifest(), "syncfail.example.com") == NULL);
    CHECK_EQ_INT(cursor(), c0);
    CHECK_EQ_INT(res.cursor_after, c0);
    why = apr_hash_get(failures, "syncfail.example.com", APR_HASH_KEY_STRING);
    if (!CHECK(why && strstr(why, "cannot sync the batch"))) {
        printf("  failure was: %s\n", why ? why : "(none)");
    }

    UNIT_CASE("the page's sync works again: the next cycle installs it");
    script(200, feed, 200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 1);
    CHECK_STR(csy_store_current(store, pool, "syncfail.example.com"), serial);
    CHECK(strstr(manifest(), "syncfail.example.com") != NULL);
    CHECK_EQ_INT(cursor(), next);
    CHECK(apr_hash_get(failures, "syncfail.example.com",
                       APR_HASH_KEY_STRING) == NULL);
}

/*
 * The retry of an earlier failure: its commit syncs, but the sync of the
 * links before the manifest fails.  It is current and not listed: a
 * failure still, retried (and listed, made live) by the next cycle, as
 * no feed page will name it again.
 */
static void test_retry_unlisted(void)
{
    csy_result_t res;
    const char *serial, *b, *empty;
    apr_int64_t c0 = cursor();

    UNIT_CASE("a retried bundle committed but not listed stays a failure");
    b = make_bundle(&serial, "retried.example.com", 0);
    apr_hash_set(failures, "retried.example.com", APR_HASH_KEY_STRING,
                 "an earlier failure");
    empty = apr_psprintf(pool, "{\"changes\":[],\"next\":%" APR_INT64_T_FMT
                         ",\"more\":false}", c0);
    script(200, empty, 200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    syncfs_ok_first = 1;        /* the commit's; then sync_links' fails */
    syncfs_errno = EIO;
    CHECK(cycle(&res) != APR_SUCCESS);
    syncfs_errno = 0;
    syncfs_ok_first = 0;
    CHECK_STR(csy_store_current(store, pool, "retried.example.com"), serial);
    CHECK(strstr(manifest(), "retried.example.com") == NULL);
    CHECK(apr_hash_get(failures, "retried.example.com",
                       APR_HASH_KEY_STRING) != NULL);

    UNIT_CASE("... and the next cycle lists it and makes it live");
    script(200, empty, 200, apr_psprintf(pool, "{\"bundles\":[%s]}", b));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.unchanged, 1);
    CHECK(strstr(manifest(), "retried.example.com") != NULL);
    CHECK_STR(apr_hash_get(res.made_current, "retried.example.com",
                           APR_HASH_KEY_STRING), serial);
    CHECK(apr_hash_get(failures, "retried.example.com",
                       APR_HASH_KEY_STRING) == NULL);
    CHECK_EQ_INT(cursor(), c0);
}

/*
 * A page's bundles are made durable and current on a thread of their own
 * while the cycle reads and checks the next page (issue 18).  A domain on
 * two pages in a row: the second page waits for the first one's commit
 * before it checks; every install is counted once, the later serial is
 * current, the cursor is the last page's.
 */
static void test_page_commits(void)
{
    csy_result_t res;
    const char *s1, *s2, *s3, *b1, *b2, *b3;
    apr_int64_t c0 = cursor();
    int k;

    UNIT_CASE("pages committed on their own thread: a domain on two pages "
              "in a row");
    b1 = make_bundle(&s1, "twice.example.com", 0);
    b2 = make_bundle(&s2, "twice.example.com", 0);
    b3 = make_bundle(&s3, "once.example.com", 0);
    fake_http_reset(fake);
    for (k = 0; k < 2; k++) {
        fake_http_answer(fake, "GET",
                         apr_psprintf(pool, CS_URL "/v1/changes?since=%"
                                      APR_INT64_T_FMT "&limit=1000", c0 + k),
                         200, NULL,
                         apr_psprintf(pool, "{\"changes\":[{\"seq\":%"
                                      APR_INT64_T_FMT ","
                                      "\"domain\":\"twice.example.com\","
                                      "\"op\":\"upsert\"}%s],\"next\":%"
                                      APR_INT64_T_FMT ","
                                      "\"more\":%s}", c0 + k + 1,
                                      k ? ",{\"seq\":0,\"domain\":"
                                          "\"once.example.com\",\"op\":"
                                          "\"upsert\"}" : "",
                                      c0 + k + 1, k ? "false" : "true"));
    }
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b1), 1);
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s,%s]}", b2, b3),
                       1);
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 3);
    CHECK_EQ_INT(apr_hash_count(failures), 0);
    CHECK_STR(csy_store_current(store, pool, "twice.example.com"), s2);
    CHECK_STR(csy_store_current(store, pool, "once.example.com"), s3);
    CHECK_STR(apr_hash_get(res.made_current, "twice.example.com",
                           APR_HASH_KEY_STRING), s2);
    /* previous is the first page's serial: its commit had switched
     * current before the second page staged over it */
    CHECK_EQ_INT(csy_store_rollback(store, pool, "twice.example.com"),
                 APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "twice.example.com"), s1);
    CHECK_EQ_INT(cursor(), c0 + 2);
    CHECK_EQ_INT(res.cursor_after, c0 + 2);
    CHECK(strstr(manifest(), "twice.example.com") != NULL);
    CHECK(strstr(manifest(), "once.example.com") != NULL);
    CHECK_EQ_INT(fake_http_count(fake), 4);
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);
}

/* A feed page of one change (op: "upsert" or "delete"), seq since + 1,
 * more or not. */
static const char *one_change(apr_int64_t since, const char *name,
                              const char *op, int more)
{
    return apr_psprintf(pool, "{\"changes\":[{\"seq\":%" APR_INT64_T_FMT
                        ",\"domain\":\"%s\",\"op\":\"%s\"}],"
                        "\"next\":%" APR_INT64_T_FMT ",\"more\":%s}",
                        since + 1, name, op, since + 1,
                        more ? "true" : "false");
}

static const char *changes_url(apr_int64_t since)
{
    return apr_psprintf(pool, CS_URL "/v1/changes?since=%" APR_INT64_T_FMT
                        "&limit=1000", since);
}

/* What each checkpointed call saw: the changes handed over, and the store
 * at that moment. */
typedef struct {
    int calls;
    const char *seen[4];        /* "made:NAME@SERIAL removed:NAME" */
    const char *manifest[4];
    long long cursor[4];
} ckpt_log_t;

static void on_checkpoint(void *baton, const csy_result_t *res,
                          apr_pool_t *p)
{
    ckpt_log_t *l = baton;
    apr_hash_index_t *hi;
    const char *s = "";

    (void)p;
    for (hi = apr_hash_first(pool, res->made_current); hi;
         hi = apr_hash_next(hi)) {
        s = apr_pstrcat(pool, s, "made:", apr_hash_this_key(hi), "@",
                        apr_hash_this_val(hi), " ", NULL);
    }
    for (hi = apr_hash_first(pool, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        s = apr_pstrcat(pool, s, "removed:", apr_hash_this_key(hi), " ",
                        NULL);
    }
    if (l->calls < 4) {
        l->seen[l->calls] = s;
        l->manifest[l->calls] = manifest();
        l->cursor[l->calls] = cursor();
    }
    l->calls++;
}

static void test_checkpointed(void)
{
    static const char *names[] = { "cp1.example.com", "cp2.example.com",
                                   "cp1.example.com" };
    static const char *ops[] = { "upsert", "upsert", "delete" };
    csy_result_t res;
    ckpt_log_t log;
    const char *s1, *s2, *b1, *b2;
    apr_int64_t c0 = cursor();
    int k;

    UNIT_CASE("each checkpoint hands over what its pages changed, once "
              "durable and listed, then forgets it");
    memset(&log, 0, sizeof(log));
    b1 = make_bundle(&s1, "cp1.example.com", 0);
    b2 = make_bundle(&s2, "cp2.example.com", 0);
    fake_http_reset(fake);
    for (k = 0; k < 3; k++) {
        fake_http_answer(fake, "GET", changes_url(c0 + k), 200, NULL,
                         one_change(c0 + k, names[k], ops[k], k < 2));
    }
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b1), 1);
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b2), 1);
    cfg.checkpoint_pages = 1;
    cfg.checkpointed = on_checkpoint;
    cfg.checkpointed_baton = &log;
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    cfg.checkpoint_pages = 0;
    cfg.checkpointed = NULL;
    cfg.checkpointed_baton = NULL;
    CHECK_EQ_INT(res.installed, 2);
    CHECK_EQ_INT(res.removed, 1);
    if (CHECK_EQ_INT(log.calls, 3)) {
        CHECK_STR(log.seen[0], apr_psprintf(pool, "made:cp1.example.com@%s ",
                                            s1));
        CHECK(strstr(log.manifest[0], "cp1.example.com") != NULL);
        CHECK_EQ_INT(log.cursor[0], c0 + 1);
        CHECK_STR(log.seen[1], apr_psprintf(pool, "made:cp2.example.com@%s ",
                                            s2));
        CHECK(strstr(log.manifest[1], "cp2.example.com") != NULL);
        CHECK_EQ_INT(log.cursor[1], c0 + 2);
        CHECK_STR(log.seen[2], "removed:cp1.example.com ");
        CHECK(strstr(log.manifest[2], "cp1.example.com") == NULL);
        CHECK_EQ_INT(log.cursor[2], c0 + 3);
    }
    /* handed over, not kept for the cycle's end */
    CHECK_EQ_INT(apr_hash_count(res.made_current), 0);
    CHECK_EQ_INT(apr_hash_count(res.removed_set), 0);
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);
}

/* At the second feed page's request: what the manifest listed. */
static apr_status_t note_manifest(void *baton, cs_http_resp_t *resp,
                                  const cs_http_req_t *req, apr_pool_t *p,
                                  const char **err)
{
    const char **note = baton;

    (void)resp;
    (void)p;
    (void)err;
    if (!strcmp(req->method, "GET") && strstr(req->url, *note)) {
        *note = manifest();
    }
    return FAKE_HTTP_DECLINED;
}

static void test_read_ahead(void)
{
    csy_result_t res;
    const char *s1, *s2, *b1, *b2, *listed;
    apr_int64_t c0 = cursor();
    char since[64];
    int k;

    UNIT_CASE("the next feed page is read while the page before is "
              "checked, not after its checkpoint");
    b1 = make_bundle(&s1, "ahead1.example.com", 0);
    b2 = make_bundle(&s2, "ahead2.example.com", 0);
    fake_http_reset(fake);
    for (k = 0; k < 2; k++) {
        fake_http_answer(fake, "GET", changes_url(c0 + k), 200, NULL,
                         one_change(c0 + k, k ? "ahead2.example.com"
                                               : "ahead1.example.com",
                                    "upsert", !k));
    }
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b1), 1);
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b2), 1);
    /* the handler's baton: the second page's "since=", then what the
     * manifest was when that page was asked for */
    apr_snprintf(since, sizeof(since), "since=%" APR_INT64_T_FMT "&",
                 c0 + 1);
    listed = since;
    fake_http_handler(fake, note_manifest, &listed);
    cfg.checkpoint_pages = 1;
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    cfg.checkpoint_pages = 0;
    CHECK_EQ_INT(res.installed, 2);
    /* before the first page's checkpoint: not listed yet */
    CHECK(listed != since);
    CHECK(strstr(listed, "ahead1.example.com") == NULL);
    CHECK(strstr(manifest(), "ahead1.example.com") != NULL);
    CHECK(strstr(manifest(), "ahead2.example.com") != NULL);
    CHECK_EQ_INT(cursor(), c0 + 2);
    CHECK_EQ_INT(fake_http_count(fake), 4);
    CHECK_EQ_INT(fake_http_unanswered(fake), 0);
}

static void test_failures_listed(void)
{
    csy_result_t res;
    const char *s1, *s2, *s3, *s4, *b1, *b2, *b3, *b4, *first;
    apr_array_header_t *list;
    apr_int64_t c0 = cursor();
    int i;

    UNIT_CASE("a feed page read ahead that fails: the page before is "
              "applied and saved");
    b1 = make_bundle(&s1, "ra1.example.com", 0);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", changes_url(c0), 200, NULL,
                     one_change(c0, "ra1.example.com", "upsert", 1));
    fake_http_answer(fake, "GET", changes_url(c0 + 1), 503, NULL, "busy");
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s]}", b1), 1);
    CHECK(cycle(&res) != APR_SUCCESS);
    CHECK(res.error && strstr(res.error, "GET /v1/changes") != NULL);
    CHECK_EQ_INT(res.installed, 1);
    CHECK_EQ_INT(cursor(), c0 + 1);
    CHECK(strstr(manifest(), "ra1.example.com") != NULL);

    UNIT_CASE("a page that fails after a batch: that batch is current and "
              "listed, the cursor stays");
    c0 = cursor();
    b2 = make_bundle(&s2, "mid1.example.com", 0);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", changes_url(c0), 200, NULL,
                     apr_psprintf(pool, "{\"changes\":[{\"seq\":%"
                                  APR_INT64_T_FMT ",\"domain\":"
                                  "\"mid1.example.com\",\"op\":"
                                  "\"upsert\"},{\"seq\":%" APR_INT64_T_FMT
                                  ",\"domain\":\"mid2.example.com\","
                                  "\"op\":\"upsert\"}],\"next\":%"
                                  APR_INT64_T_FMT ",\"more\":false}",
                                  c0 + 1, c0 + 2, c0 + 2));
    /* one name a batch, in the hash's order: the first answer has both
     * (the one not asked for is ignored), the second batch fails */
    b4 = make_bundle(&s4, "mid2.example.com", 0);
    fake_http_answer_n(fake, "POST", BUNDLES, 200, NULL,
                       apr_psprintf(pool, "{\"bundles\":[%s,%s]}", b2, b4),
                       1);
    fake_http_answer(fake, "POST", BUNDLES, 500, NULL, "oops");
    cfg.batch_size = 1;
    CHECK(cycle(&res) != APR_SUCCESS);
    cfg.batch_size = 100;
    CHECK_EQ_INT(cursor(), c0);
    CHECK_EQ_INT(res.installed, 1);
    first = csy_store_current(store, pool, "mid1.example.com")
            ? "mid1.example.com" : "mid2.example.com";
    CHECK(csy_store_current(store, pool, first) != NULL);
    CHECK(strstr(manifest(), first) != NULL);
    CHECK(apr_hash_get(res.made_current, first, APR_HASH_KEY_STRING)
          != NULL);

    UNIT_CASE("a domain current already but listed only now goes live as "
              "if installed");
    c0 = cursor();
    b3 = make_bundle(&s3, "relisted.example.com", 0);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", changes_url(c0), 200, NULL,
                     one_change(c0, "relisted.example.com", "upsert", 0));
    fake_http_answer(fake, "POST", BUNDLES, 200, NULL,
                     apr_psprintf(pool, "{\"bundles\":[%s]}", b3));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 1);
    /* the manifest without it, as a crash before the write would leave */
    if (CHECK_EQ_INT(csy_store_manifest_read(&list, store, pool),
                     APR_SUCCESS)) {
        apr_array_header_t *rest = apr_array_make(pool, list->nelts,
                                                  sizeof(const char *));
        for (i = 0; i < list->nelts; i++) {
            const char *d = APR_ARRAY_IDX(list, i, const char *);
            if (strcmp(d, "relisted.example.com")) {
                APR_ARRAY_PUSH(rest, const char *) = d;
            }
        }
        CHECK_EQ_INT(csy_store_manifest_write(store, pool, rest),
                     APR_SUCCESS);
    }
    CHECK(strstr(manifest(), "relisted.example.com") == NULL);
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", changes_url(c0 + 1), 200, NULL,
                     one_change(c0 + 1, "relisted.example.com", "upsert", 0));
    fake_http_answer(fake, "POST", BUNDLES, 200, NULL,
                     apr_psprintf(pool, "{\"bundles\":[%s]}", b3));
    CHECK_EQ_INT(cycle(&res), APR_SUCCESS);
    CHECK_EQ_INT(res.installed, 0);
    CHECK_EQ_INT(res.unchanged, 1);
    CHECK(res.changed);
    CHECK_STR(apr_hash_get(res.made_current, "relisted.example.com",
                           APR_HASH_KEY_STRING), s3);
    CHECK(strstr(manifest(), "relisted.example.com") != NULL);
}

int main(void)
{
    const char *tmp = getenv("CSY_TEST_TMPDIR");

    apr_initialize();
    apr_pool_create(&pool, NULL);
    snprintf(base, sizeof(base), "%s/test_csy_sync.XXXXXX",
             tmp ? tmp : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(base)
        || csy_store_open(&store, pool, apr_pstrcat(pool, base, "/store",
                                                    NULL)) != APR_SUCCESS) {
        printf("cannot open a store in %s\n", base);
        return 1;
    }
    if (testkit_ca_and_wrap(pool, &ca, &wrap_certs, &wrap_keys) != 0) {
        return 1;
    }

    fake = fake_http_create(pool);
    cfg.url = CS_URL;
    cfg.http = fake_http_transport(fake);
    cfg.wrap_certs = wrap_certs;
    cfg.wrap_keys = wrap_keys;
    cfg.batch_size = 100;
    cfg.pool_name = "web";
    cfg.host_name = "h1";
    cfg.log = test_log;
    failures = apr_hash_make(pool);
    if (csy_client_create(&client, pool, &cfg) != APR_SUCCESS) {
        printf("cannot make a client\n");
        return 1;
    }

    test_batch_size();
    test_normal_cycle();
    test_bad_answers();
    test_lease();
    test_store_full();
    test_chain_as_verified();
    test_threads(1);
    test_threads(4);
    test_pipeline();
    test_manifest_writes();
    test_seal_backfill();
    test_page_commits();
    test_checkpointed();
    test_read_ahead();
    test_failures_listed();
    test_sync_fails();
    test_retry_unlisted();

    testkit_rm_tree(base);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
