/*
 * test_cs_acme.c: the ACME client (lib/cs_acme*.c) over the fake
 * transport (fake_http.h), no network: nonces (every answer's
 * Replay-Nonce is the next POST's; badNonce retried with the nonce it
 * brought, up to a limit), Retry-After (seconds, HTTP dates, bounds, the
 * rate limit's default), Link rel=alternate and the preferred chain, the
 * pre-check's probes pinned to each address, with the A records from a
 * small DNS server on loopback (c-ares); the transport's Retry-After
 * grammar itself; and External Account Binding (sent in newAccount, and
 * required by the directory: no request without one).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <jansson.h>

#include <openssl/x509.h>

#include "cs_acme.h"
#include "cs_crypto.h"
#include "cs_http.h"
#include "cs_jws.h"
#include "cs_x509.h"
#include "fake_dns.h"
#include "fake_http.h"
#include "unit.h"

#define CA          "https://ca.test"
#define DIR_JSON \
    "{\"newNonce\":\"" CA "/nonce\",\"newAccount\":\"" CA "/acct\"," \
    "\"newOrder\":\"" CA "/order\",\"revokeCert\":\"" CA "/revoke\"," \
    "\"keyChange\":\"" CA "/key\",\"renewalInfo\":\"" CA "/ari/\"}"
#define BAD_NONCE \
    "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"no\"}"

static apr_pool_t *pool;
static EVP_PKEY *account_key;

static const char *chain_pem(const char *cn, EVP_PKEY *leaf_key,
                             const char *domain);

/* A client over a fresh fake that knows the directory and newNonce. */
static cs_acme_t *client(fake_http_t **pf, const char *preferred)
{
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    fake_http_t *f = fake_http_create(pool);

    fake_http_answer(f, "GET", CA "/dir", 200, NULL, DIR_JSON);
    fake_http_answer(f, "HEAD", CA "/nonce", 200, "Replay-Nonce: head-1\n",
                     NULL);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    conf.probe_http = conf.http;
    conf.preferred_chain = preferred;
    if (cs_acme_create(&acme, pool, &conf) != APR_SUCCESS) {
        return NULL;
    }
    *pf = f;
    return acme;
}

/* The nonce in the protected header of a recorded POST. */
static const char *sent_nonce(const fake_http_request_t *r)
{
    const char *hdr, *payload, *err;
    json_t *j;
    const char *n = NULL;

    if (!r || cs_jws_verify(&hdr, &payload, pool, account_key, r->body,
                            &err)) {
        return NULL;
    }
    j = json_loads(hdr, 0, NULL);
    if (json_string_value(json_object_get(j, "nonce"))) {
        n = apr_pstrdup(pool, json_string_value(json_object_get(j, "nonce")));
    }
    json_decref(j);
    return n;
}

static void test_nonces(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    cs_acme_stats_t st;
    const char *kid = NULL, *err = NULL;

    UNIT_CASE("badNonce: retried at once with the nonce it brought");
    acme = client(&f, NULL);
    if (!CHECK(acme != NULL)) {
        return;
    }
    fake_http_answer_n(f, "POST", CA "/acct", 400,
                       "Replay-Nonce: from-bad-1\n"
                       "Content-Type: application/problem+json\n",
                       BAD_NONCE, 1);
    fake_http_answer(f, "POST", CA "/acct", 201,
                     "Replay-Nonce: after-acct\n"
                     "Location: " CA "/acct/17\n", "{\"status\":\"valid\"}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_SUCCESS);
    CHECK_STR(kid, CA "/acct/17");
    cs_acme_stats(&st, acme);
    CHECK_EQ_INT(st.bad_nonces, 1);
    CHECK_EQ_INT(st.requests, 4);   /* directory, newNonce, 2 x newAccount */
    CHECK_EQ_INT(fake_http_count_of(f, "HEAD", CA "/nonce"), 1);
    CHECK_STR(sent_nonce(fake_http_request(f, 2)), "head-1");
    CHECK_STR(sent_nonce(fake_http_request(f, 3)), "from-bad-1");
    CHECK_STR(fake_http_header(fake_http_request(f, 3), "Content-Type"),
              "application/jose+json");

    UNIT_CASE("the next POST uses the last answer's nonce, no newNonce");
    fake_http_answer(f, "POST", CA "/revoke", 200,
                     "Replay-Nonce: after-revoke\n", "");
    {
        apr_array_header_t *chain;
        EVP_PKEY *leaf_key;
        const char *pem;

        cs_key_generate(&leaf_key, pool, CS_KEY_EC_P256);
        pem = chain_pem("Revoke Root", leaf_key, "x.example.com");
        if (CHECK(pem != NULL)
            && CHECK_EQ_INT(cs_pem_read_certs(&chain, pool, pem, strlen(pem),
                                              &err), APR_SUCCESS)) {
            CHECK_EQ_INT(cs_acme_revoke(acme,
                                        APR_ARRAY_IDX(chain, 0, X509 *), 4,
                                        &err), APR_SUCCESS);
            CHECK_STR(sent_nonce(fake_http_request(f, 4)), "after-acct");
        }
    }
    CHECK_EQ_INT(fake_http_count_of(f, "HEAD", CA "/nonce"), 1);

    UNIT_CASE("badNonce forever: given up after 5, with the CA's error");
    acme = client(&f, NULL);
    fake_http_answer(f, "POST", CA "/acct", 400, "Replay-Nonce: again\n",
                     BAD_NONCE);
    err = NULL;
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EGENERAL);
    CHECK(err && strstr(err, "after 5 bad nonces"));
    CHECK(err && strstr(err, "badNonce"));
    cs_acme_stats(&st, acme);
    CHECK_EQ_INT(st.bad_nonces, 5);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/acct"), 5);

    UNIT_CASE("a malformed Replay-Nonce is not sent back");
    acme = client(&f, NULL);
    fake_http_answer_n(f, "POST", CA "/acct", 400,
                       "Replay-Nonce: bad nonce!\n", BAD_NONCE, 1);
    fake_http_answer(f, "POST", CA "/acct", 200,
                     "Location: " CA "/acct/17\n", "{}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_SUCCESS);
    /* The bad one dropped: a second newNonce instead. */
    CHECK_EQ_INT(fake_http_count_of(f, "HEAD", CA "/nonce"), 2);
}

static void test_retry_after(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    const char *kid, *err = NULL;
    apr_time_t now = apr_time_now();
    char date[APR_RFC822_DATE_LEN];

    UNIT_CASE("cs_http_retry_after: seconds, dates, bounds, garbage");
    CHECK_EQ_INT(cs_http_retry_after("120", now, 3600), 120);
    CHECK_EQ_INT(cs_http_retry_after(" 7", now, 3600), 7);
    CHECK_EQ_INT(cs_http_retry_after("99999999999999", now, 3600), 3600);
    CHECK_EQ_INT(cs_http_retry_after("soon", now, 3600), 0);
    CHECK_EQ_INT(cs_http_retry_after("", now, 3600), 0);
    CHECK_EQ_INT(cs_http_retry_after(NULL, now, 3600), 0);
    apr_rfc822_date(date, now + apr_time_from_sec(600));
    /* The date has whole seconds: 599 or 600. */
    CHECK(cs_http_retry_after(date, now, 3600) >= 599
          && cs_http_retry_after(date, now, 3600) <= 600);
    apr_rfc822_date(date, now - apr_time_from_sec(600));
    CHECK_EQ_INT(cs_http_retry_after(date, now, 3600), 1);
    apr_rfc822_date(date, now + apr_time_from_sec(86400));
    CHECK_EQ_INT(cs_http_retry_after(date, now, 3600), 3600);

    UNIT_CASE("429 with Retry-After: APR_EAGAIN and its seconds");
    acme = client(&f, NULL);
    fake_http_answer(f, "POST", CA "/acct", 429,
                     "Replay-Nonce: n2\nRetry-After: 1800\n",
                     "{\"type\":\"urn:ietf:params:acme:error:rateLimited\","
                     "\"detail\":\"slow down\"}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EAGAIN);
    CHECK_EQ_INT(cs_acme_retry_after(acme), 1800);
    CHECK(err && strstr(err, "slow down"));

    UNIT_CASE("rateLimited with an HTTP date, a week at most");
    acme = client(&f, NULL);
    apr_rfc822_date(date, apr_time_now() + apr_time_from_sec(30 * 86400));
    fake_http_answer(f, "POST", CA "/acct", 403,
                     apr_psprintf(pool, "Retry-After: %s\n", date),
                     "{\"type\":\"urn:ietf:params:acme:error:rateLimited\"}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EAGAIN);
    CHECK_EQ_INT(cs_acme_retry_after(acme), 7 * 86400);

    UNIT_CASE("429 without Retry-After: 60 s");
    acme = client(&f, NULL);
    fake_http_answer(f, "POST", CA "/acct", 429, NULL, "{}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EAGAIN);
    CHECK_EQ_INT(cs_acme_retry_after(acme), 60);

    UNIT_CASE("a 5xx is the CA unreachable, a 4xx its error");
    acme = client(&f, NULL);
    fake_http_answer_n(f, "POST", CA "/acct", 503, NULL, "{}", 1);
    fake_http_answer(f, "POST", CA "/acct", 400, NULL,
                     "{\"type\":\"urn:ietf:params:acme:error:malformed\"}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_ECONNREFUSED);
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EGENERAL);
    CHECK(err && strstr(err, "malformed"));

    UNIT_CASE("no answer at all: APR_ECONNREFUSED, CA unreachable");
    acme = client(&f, NULL);
    fake_http_reset(f);
    fake_http_fail(f, NULL, CA "/*", APR_ECONNREFUSED, 0);
    CHECK_EQ_INT(cs_acme_directory(acme, &err), APR_ECONNREFUSED);
    CHECK(err && strstr(err, "CA unreachable"));
}

/* A chain for domain issued by a CA named cn: PEM. */
static const char *chain_pem(const char *cn, EVP_PKEY *leaf_key,
                             const char *domain)
{
    cs_ca_t ca;
    X509 *x = X509_new();
    apr_array_header_t *chain;
    const char *err;

    cs_key_generate(&ca.key, pool, CS_KEY_EC_P256);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, ca.key);
    X509_sign(x, ca.key, EVP_sha256());
    ca.cert = x;
    if (cs_ca_issue(&chain, pool, &ca, leaf_key, domain,
                    apr_time_from_sec(3600), &err)) {
        X509_free(x);
        return NULL;
    }
    X509_free(x);
    return cs_pem_write_certs(pool, chain);
}

/* The CN of the topmost certificate of chain. */
static const char *top_cn(apr_array_header_t *chain)
{
    char buf[256];
    X509 *top;

    if (!chain || !chain->nelts) {
        return "(no chain)";
    }
    top = APR_ARRAY_IDX(chain, chain->nelts - 1, X509 *);
    X509_NAME_get_text_by_NID(X509_get_subject_name(top), NID_commonName,
                              buf, sizeof(buf));
    return apr_pstrdup(pool, buf);
}

/* An order whose authorization is already valid, the certificate at
 * CA/cert/1 with an alternate chain at CA/cert/1/alt. */
static void script_order(fake_http_t *f, const char *leaf_pem,
                         const char *alt_pem)
{
    fake_http_answer(f, "POST", CA "/acct", 200,
                     "Replay-Nonce: a1\nLocation: " CA "/acct/1\n", "{}");
    fake_http_answer(f, "POST", CA "/order", 201,
                     "Replay-Nonce: o1\nLocation: " CA "/order/1\n",
                     "{\"status\":\"pending\",\"authorizations\":[\"" CA
                     "/authz/1\"],\"finalize\":\"" CA "/order/1/fin\"}");
    fake_http_answer(f, "POST", CA "/authz/1", 200, "Replay-Nonce: z1\n",
                     "{\"status\":\"valid\"}");
    fake_http_answer_n(f, "POST", CA "/order/1", 200, "Replay-Nonce: o2\n",
                       "{\"status\":\"ready\",\"finalize\":\"" CA
                       "/order/1/fin\"}", 1);
    fake_http_answer(f, "POST", CA "/order/1/fin", 200, "Replay-Nonce: f1\n",
                     "{\"status\":\"processing\"}");
    fake_http_answer(f, "POST", CA "/order/1", 200, "Replay-Nonce: o3\n",
                     "{\"status\":\"valid\",\"certificate\":\"" CA
                     "/cert/1\"}");
    fake_http_answer(f, "POST", CA "/cert/1", 200,
                     "Replay-Nonce: c1\n"
                     "Content-Type: application/pem-certificate-chain\n"
                     "Link: <" CA "/dir>;rel=\"index\"\n"
                     "Link: <" CA "/cert/1/alt>;rel=\"alternate\", <" CA
                     "/cert/1/up>;rel=\"up\"\n", leaf_pem);
    fake_http_answer(f, "POST", CA "/cert/1/alt", 200, "Replay-Nonce: c2\n",
                     alt_pem);
}

static void test_link_alternate(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    apr_array_header_t *chain = NULL;
    EVP_PKEY *key;
    const char *kid, *err = NULL, *dflt, *alt;
    const fake_http_request_t *fin;
    int i;

    cs_key_generate(&key, pool, CS_KEY_EC_P256);
    dflt = chain_pem("Default Root X1", key, "www.example.com");
    alt = chain_pem("Alternate Root X2", key, "www.example.com");
    if (!CHECK(dflt && alt)) {
        return;
    }

    UNIT_CASE("Link rel=alternate: the preferred chain is fetched");
    acme = client(&f, "Alternate Root");
    script_order(f, dflt, alt);
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               NULL, &err), APR_SUCCESS);
    if (CHECK(chain != NULL) && CHECK_EQ_INT(chain->nelts, 2)) {
        CHECK_STR(top_cn(chain), "Alternate Root X2");
    }
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/cert/1/alt"), 1);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/cert/1/up"), 0);
    CHECK_EQ_INT(fake_http_unanswered(f), 0);
    for (i = 0, fin = NULL; i < fake_http_count(f); i++) {
        if (strcmp(fake_http_request(f, i)->url, CA "/order/1/fin") == 0) {
            fin = fake_http_request(f, i);
        }
    }
    CHECK(fin && strstr(fin->body, "\"payload\""));
    CHECK_STR(fake_http_header(fake_http_request(f, fake_http_count(f) - 2),
                               "Accept"),
              "application/pem-certificate-chain");

    for (i = 0; i < 2; i++) {
        /* the default chain; the alternate is fetched only to be looked
         * at when a preferred chain is asked for */
        UNIT_CASE(i == 0
                  ? "no preferred chain: the default, no alternate fetched"
                  : "a preferred chain that no chain has: the default");
        acme = client(&f, i == 0 ? NULL : "Nobody's Root");
        script_order(f, dflt, alt);
        cs_acme_account(&kid, acme, account_key, NULL, &err);
        chain = NULL;
        CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key,
                                   "www.example.com", NULL, &err),
                     APR_SUCCESS);
        CHECK_STR(top_cn(chain), "Default Root X1");
        CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/cert/1/alt"), i);
    }
}

/* The directory with meta.profiles: two names the client cannot send,
 * a description that is not a string. */
#define DIR_PROFILES_JSON \
    "{\"newNonce\":\"" CA "/nonce\",\"newAccount\":\"" CA "/acct\"," \
    "\"newOrder\":\"" CA "/order\",\"meta\":{\"profiles\":{" \
    "\"classic\":\"The same profile\",\"tlsserver\":7," \
    "\"shortlived\":\"160 hours\\u0007\",\"bad name\":\"x\",\"\":\"y\"}}}"

/* The payload of the last POST to url, decoded; NULL if none. */
static const char *posted_payload(fake_http_t *f, const char *url)
{
    const fake_http_request_t *r = NULL;
    json_t *j;
    unsigned char *raw;
    apr_size_t len;
    const char *out = NULL;
    int i;

    for (i = 0; i < fake_http_count(f); i++) {
        if (strcmp(fake_http_request(f, i)->method, "POST") == 0
            && strcmp(fake_http_request(f, i)->url, url) == 0) {
            r = fake_http_request(f, i);
        }
    }
    if (!r || !(j = json_loads(r->body, 0, NULL))) {
        return NULL;
    }
    if (json_string_value(json_object_get(j, "payload"))
        && cs_b64url_decode(&raw, &len, pool,
                            json_string_value(json_object_get(j, "payload")))
           == APR_SUCCESS) {
        out = apr_pstrmemdup(pool, (const char *)raw, len);
    }
    json_decref(j);
    return out;
}

static void test_profiles(void)
{
    fake_http_t *f = fake_http_create(pool);
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    const apr_table_t *t;
    apr_array_header_t *chain = NULL;
    const char *err = NULL, *kid, *pay, *leaf;
    EVP_PKEY *key;

    UNIT_CASE("profiles: meta.profiles read, names it cannot send left out");
    fake_http_answer(f, "GET", CA "/dir", 200, NULL, DIR_PROFILES_JSON);
    fake_http_answer(f, "HEAD", CA "/nonce", 200, "Replay-Nonce: head-1\n",
                     NULL);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    if (!CHECK_EQ_INT(cs_acme_create(&acme, pool, &conf), APR_SUCCESS)) {
        return;
    }
    CHECK(cs_acme_profiles(acme) == NULL);
    CHECK_EQ_INT(cs_acme_directory(acme, &err), APR_SUCCESS);
    t = cs_acme_profiles(acme);
    if (CHECK(t != NULL)) {
        CHECK_EQ_INT(apr_table_elts(t)->nelts, 3);
        CHECK_STR(apr_table_get(t, "classic"), "The same profile");
        CHECK_STR(apr_table_get(t, "tlsserver"), "");
        CHECK_STR(apr_table_get(t, "shortlived"), "160 hours ");
        CHECK(apr_table_get(t, "bad name") == NULL);
    }
    CHECK_EQ_INT(cs_acme_profile_check(acme, "shortlived", &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_acme_profile_check(acme, "a b", &err), APR_EINVAL);

    UNIT_CASE("profiles: one not offered fails before newOrder, named");
    cs_key_generate(&key, pool, CS_KEY_EC_P256);
    leaf = chain_pem("Default Root X1", key, "www.example.com");
    script_order(f, leaf, leaf);
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               &(cs_acme_order_t){ NULL, "longlived", 0 },
                               &err), APR_NOTFOUND);
    CHECK(err && strstr(err, "the CA's directory does not offer the "
                             "profile 'longlived' (it offers: ")
          && strstr(err, "classic") && strstr(err, "shortlived")
          && strstr(err, "tlsserver"));
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/order"), 0);

    UNIT_CASE("profiles: newOrder carries the profile asked for");
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               &(cs_acme_order_t){ NULL, "shortlived", 0 },
                               &err), APR_SUCCESS);
    pay = posted_payload(f, CA "/order");
    CHECK(pay && strstr(pay, "\"profile\":\"shortlived\""));

    UNIT_CASE("profiles: a directory without meta.profiles offers none");
    acme = client(&f, NULL);
    CHECK_EQ_INT(cs_acme_profile_check(acme, "classic", &err), APR_NOTFOUND);
    CHECK(err && strstr(err, "'classic' (it lists no profiles)"));
    CHECK(cs_acme_profiles(acme) == NULL);
    script_order(f, leaf, leaf);
    cs_acme_account(&kid, acme, account_key, NULL, &err);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               NULL, &err), APR_SUCCESS);
    pay = posted_payload(f, CA "/order");
    CHECK(pay && !strstr(pay, "profile"));
}

static void test_renewal_info(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    apr_array_header_t *chain;
    apr_int64_t start, end, retry;
    EVP_PKEY *key;
    const char *pem, *err = NULL, *id;

    UNIT_CASE("renewalInfo: the window and its Retry-After");
    cs_key_generate(&key, pool, CS_KEY_EC_P256);
    pem = chain_pem("ARI Root", key, "ari.example.com");
    if (!CHECK(pem != NULL)
        || !CHECK_EQ_INT(cs_pem_read_certs(&chain, pool, pem, strlen(pem),
                                           &err), APR_SUCCESS)) {
        return;
    }
    acme = client(&f, NULL);
    if (cs_acme_cert_id(&id, pool, APR_ARRAY_IDX(chain, 0, X509 *))) {
        /* cs_ca_issue gives no AKI: the call must say so. */
        CHECK_EQ_INT(cs_acme_renewal_info(&start, &end, &retry, acme, pool,
                                          APR_ARRAY_IDX(chain, 0, X509 *),
                                          &err), APR_EINVAL);
        return;
    }
    fake_http_answer(f, "GET", apr_pstrcat(pool, CA "/ari/", id, NULL), 200,
                     "Retry-After: 21600\n",
                     "{\"suggestedWindow\":{\"start\":"
                     "\"2030-01-01T00:00:00Z\",\"end\":"
                     "\"2030-01-02T00:00:00Z\"}}");
    CHECK_EQ_INT(cs_acme_renewal_info(&start, &end, &retry, acme, pool,
                                      APR_ARRAY_IDX(chain, 0, X509 *), &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(retry, 21600);
    CHECK_EQ_INT(end - start, 86400);
}

static void test_precheck(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    const char *err = NULL;
    const fake_http_request_t *r;

    UNIT_CASE("pre-check: each address probed, pinned");
    acme = client(&f, NULL);
    fake_http_answer(f, "GET", "http://localhost:5002/.well-known/"
                     "acme-challenge/tok", 200, NULL, "tok.thumb");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "localhost", 5002, NULL, "tok",
                                  "tok.thumb", &err), APR_SUCCESS);
    CHECK(fake_http_count(f) >= 1);
    r = fake_http_request(f, 0);
    CHECK(r && r->resolve
          && strncmp(r->resolve, "localhost:5002:", 15) == 0);

    UNIT_CASE("pre-check: a wrong answer fails it");
    fake_http_reset(f);
    fake_http_answer(f, "GET", "http://localhost:5002/*", 200, NULL,
                     "someone else");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "localhost", 5002, NULL, "tok",
                                  "tok.thumb", &err), APR_EGENERAL);
    CHECK(err && strstr(err, "does not reach this pool"));

    UNIT_CASE("pre-check: a bad DNS server is refused before any query");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "localhost", 5002,
                                  "dns.example:53", "tok", "tok.thumb",
                                  &err), APR_EINVAL);
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "localhost", 5002,
                                  "127.0.0.1", "tok", "tok.thumb", &err),
                 APR_EINVAL);
}

/* ------------------------------------------------------------------ */
/* A DNS server on loopback for the pre-check (c-ares)                 */
/* ------------------------------------------------------------------ */

/* Names: "two.test" has A 127.0.0.2 and 127.0.0.3, "none.test" no A
 * record, "nx.test" does not exist, "silent.test" is never answered. */
static int dns_answer(const char *name, unsigned char addrs[][4], int max)
{
    static const unsigned char two[2][4] = {
        { 127, 0, 0, 2 }, { 127, 0, 0, 3 }
    };

    if (strcmp(name, "silent.test.") == 0) {
        return FAKE_DNS_SILENT;
    }
    if (strcmp(name, "nx.test.") == 0) {
        return FAKE_DNS_NXDOMAIN;
    }
    if (strcmp(name, "two.test.") == 0 && max >= 2) {
        memcpy(addrs, two, sizeof(two));
        return 2;
    }
    return 0;
}

static void test_precheck_dns(void)
{
    fake_dns_t d;
    fake_http_t *f;
    cs_acme_t *acme;
    const char *server, *err = NULL;
    apr_time_t t0;

    if (!CHECK(fake_dns_start(&d, dns_answer) == 0)) {
        return;
    }
    server = apr_psprintf(pool, "127.0.0.1:%d", d.port);
    acme = client(&f, NULL);

    UNIT_CASE("pre-check DNS: every A record from the given server probed");
    fake_http_answer(f, "GET", "http://two.test:80/*", 200, NULL, "k.t");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "two.test", 80, server, "k",
                                  "k.t", &err), APR_SUCCESS);
    CHECK_EQ_INT(fake_http_count(f), 2);
    if (fake_http_count(f) == 2) {
        CHECK_STR(fake_http_request(f, 0)->resolve, "two.test:80:127.0.0.2");
        CHECK_STR(fake_http_request(f, 1)->resolve, "two.test:80:127.0.0.3");
    }
    CHECK_EQ_INT(d.queries, 1);

    UNIT_CASE("pre-check DNS: NXDOMAIN");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "nx.test", 80, server, "k",
                                  "k.t", &err), APR_EGENERAL);
    CHECK(err && strstr(err, "nx.test does not resolve"));

    UNIT_CASE("pre-check DNS: a name without an A record");
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "none.test", 80, server, "k",
                                  "k.t", &err), APR_EGENERAL);
    CHECK(err && strstr(err, "none.test has no address"));

    UNIT_CASE("pre-check DNS: no answer within 3 s");
    t0 = apr_time_now();
    CHECK_EQ_INT(cs_acme_precheck(acme, pool, "silent.test", 80, server,
                                  "k", "k.t", &err), APR_EGENERAL);
    CHECK(err && strstr(err, "no answer from the DNS server"));
    CHECK(apr_time_now() - t0 < apr_time_from_sec(6));
    CHECK_EQ_INT(fake_http_count(f), 2);    /* nothing probed since */

    fake_dns_stop(&d);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* The process's resident memory in bytes (APR's allocator may map its
 * blocks itself, so malloc's statistics do not see pools). */
static size_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;

    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2) {
            rss = 0;
        }
        fclose(f);
    }
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_directory_retries(void)
{
    fake_http_t *f = fake_http_create(pool);
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    apr_pool_t *cp;
    const char *err;
    char *big = apr_palloc(pool, 100001), *dir;
    size_t before, after;
    int i, ok = 1;

    UNIT_CASE("a directory that keeps failing does not grow the client");
    memset(big, 'a', 100000);
    big[100000] = '\0';
    /* Every member there but newOrder, each a long string. */
    dir = apr_psprintf(pool, "{\"newNonce\":\"%s\",\"newAccount\":\"%s\","
                       "\"revokeCert\":\"%s\",\"keyChange\":\"%s\"}",
                       big, big, big, big);
    fake_http_answer(f, "GET", CA "/dir", 200, NULL, dir);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    apr_pool_create(&cp, pool);
    if (!CHECK_EQ_INT(cs_acme_create(&acme, cp, &conf), APR_SUCCESS)) {
        return;
    }
    for (i = 0; i < 5; i++) {
        ok &= cs_acme_directory(acme, &err) == APR_EGENERAL;
    }
    before = resident_bytes();
    for (i = 0; i < 30; i++) {
        ok &= cs_acme_directory(acme, &err) == APR_EGENERAL;
    }
    after = resident_bytes();
    CHECK(ok);
    CHECK(err && strstr(err, "lacks newNonce, newAccount or newOrder"));
    /* 30 tries keeping 400 KB each would be 12 MB.  Not under ASan: its
     * quarantine keeps what jansson frees resident. */
    if (!UNDER_ASAN) {
        CHECK(after < before + 2 * 1024 * 1024);
    }
    apr_pool_destroy(cp);
}

#define DIR_EAB_JSON \
    "{\"newNonce\":\"" CA "/nonce\",\"newAccount\":\"" CA "/acct\"," \
    "\"newOrder\":\"" CA "/order\",\"meta\":{\"termsOfService\":" \
    "\"" CA "/tos\",\"externalAccountRequired\":true}}"

static cs_acme_t *eab_client(fake_http_t **pf, const cs_eab_t *eab)
{
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    fake_http_t *f = fake_http_create(pool);

    fake_http_answer(f, "GET", CA "/dir", 200, NULL, DIR_EAB_JSON);
    fake_http_answer(f, "HEAD", CA "/nonce", 200, "Replay-Nonce: head-1\n",
                     NULL);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    conf.eab = eab;
    if (cs_acme_create(&acme, pool, &conf) != APR_SUCCESS) {
        return NULL;
    }
    *pf = f;
    return acme;
}

static void test_eab(void)
{
    static const unsigned char mac_key[32] = "0123456789abcdef0123456789abcde";
    cs_eab_t eab = { "eab-kid-7", mac_key, sizeof(mac_key), NULL };
    const char *kid = NULL, *err = NULL, *hdr, *payload, *b64, *ehdr;
    const char *epay;
    apr_size_t len;
    unsigned char *raw;
    cs_acme_stats_t st;
    fake_http_t *f;
    cs_acme_t *acme;
    json_t *j, *b, *h, *jwk;

    UNIT_CASE("EAB required, none configured: no request past the "
              "directory");
    acme = eab_client(&f, NULL);
    if (!CHECK(acme != NULL)) {
        return;
    }
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EACCES);
    CHECK(err && strstr(err, "External Account Binding")
          && strstr(err, "externalAccountRequired"));
    cs_acme_stats(&st, acme);
    CHECK_EQ_INT(st.requests, 1);
    CHECK_EQ_INT(fake_http_count(f), 1);

    UNIT_CASE("EAB configured: newAccount carries the binding");
    acme = eab_client(&f, &eab);
    if (!CHECK(acme != NULL)) {
        return;
    }
    fake_http_answer(f, "POST", CA "/acct", 201,
                     "Replay-Nonce: after-acct\n"
                     "Location: " CA "/acct/9\n", "{\"status\":\"valid\"}");
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_SUCCESS);
    CHECK_STR(kid, CA "/acct/9");
    if (!CHECK(fake_http_request(f, 2) != NULL)
        || !CHECK_EQ_INT(cs_jws_verify(&hdr, &payload, pool, account_key,
                                       fake_http_request(f, 2)->body, &err),
                         APR_SUCCESS)) {
        return;
    }
    j = json_loads(payload, 0, NULL);
    CHECK(json_is_true(json_object_get(j, "termsOfServiceAgreed")));
    b = json_object_get(j, "externalAccountBinding");
    CHECK_EQ_INT(json_object_size(b), 3);
    b64 = json_string_value(json_object_get(b, "protected"));
    if (CHECK(b64 != NULL)
        && CHECK_EQ_INT(cs_b64url_decode(&raw, &len, pool, b64),
                        APR_SUCCESS)) {
        ehdr = apr_pstrndup(pool, (const char *)raw, len);
        h = json_loads(ehdr, 0, NULL);
        CHECK_STR(json_string_value(json_object_get(h, "alg")), "HS256");
        CHECK_STR(json_string_value(json_object_get(h, "kid")), "eab-kid-7");
        CHECK_STR(json_string_value(json_object_get(h, "url")), CA "/acct");
        CHECK(json_object_get(h, "nonce") == NULL);
        json_decref(h);
    }
    b64 = json_string_value(json_object_get(b, "payload"));
    if (CHECK(b64 != NULL)
        && CHECK_EQ_INT(cs_b64url_decode(&raw, &len, pool, b64),
                        APR_SUCCESS)) {
        epay = apr_pstrndup(pool, (const char *)raw, len);
        h = json_loads(epay, 0, NULL);
        jwk = cs_jwk_public(account_key);
        CHECK(h && json_equal(h, jwk));
        json_decref(jwk);
        json_decref(h);
    }
    /* The MAC key itself is nowhere in the request. */
    CHECK(strstr(fake_http_request(f, 2)->body,
                 cs_b64url_encode(pool, mac_key, sizeof(mac_key))) == NULL);
    json_decref(j);
}

/* ------------------------------------------------------------------ */
/* The challenge chosen for an authorization                           */
/* ------------------------------------------------------------------ */

typedef struct {
    int setups, teardowns;
    int type;
    const char *domain, *token, *keyauth;
    int wildcard;
    apr_status_t fail;          /* answered to a setup */
} responder_t;

static apr_status_t respond(void *baton, const cs_acme_challenge_t *ch,
                            int setup)
{
    responder_t *r = baton;

    if (!setup) {
        r->teardowns++;
        return APR_SUCCESS;
    }
    r->setups++;
    r->type = ch->type;
    r->domain = apr_pstrdup(pool, ch->domain);
    r->token = apr_pstrdup(pool, ch->token);
    r->keyauth = apr_pstrdup(pool, ch->keyauth);
    r->wildcard = ch->wildcard;
    return r->fail;
}

/* A client answering the types in answers through r, over a fake whose
 * authorization is pending once with authz_json, then valid. */
static cs_acme_t *challenge_client(fake_http_t **pf, responder_t *r,
                                   int answers, const char *authz_json,
                                   const char *leaf_pem)
{
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    const char *kid, *err;
    fake_http_t *f = fake_http_create(pool);

    fake_http_answer(f, "GET", CA "/dir", 200, NULL, DIR_JSON);
    fake_http_answer(f, "HEAD", CA "/nonce", 200, "Replay-Nonce: head-1\n",
                     NULL);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    conf.challenge = respond;
    conf.challenge_baton = r;
    conf.challenges = answers;
    if (cs_acme_create(&acme, pool, &conf) != APR_SUCCESS) {
        return NULL;
    }
    /* Pending once, then script_order's valid authorization. */
    fake_http_answer_n(f, "POST", CA "/authz/1", 200, "Replay-Nonce: z0\n",
                       authz_json, 1);
    script_order(f, leaf_pem, leaf_pem);
    fake_http_answer(f, "POST", CA "/chal/h", 200, "Replay-Nonce: h1\n",
                     "{}");
    fake_http_answer(f, "POST", CA "/chal/d", 200, "Replay-Nonce: d1\n",
                     "{}");
    fake_http_answer(f, "POST", CA "/chal/t", 200, "Replay-Nonce: t1\n",
                     "{}");
    cs_acme_account(&kid, acme, account_key, NULL, &err);
    *pf = f;
    return acme;
}

#define CH_HTTP "{\"type\":\"http-01\",\"url\":\"" CA "/chal/h\"," \
                "\"token\":\"tokH\"}"
#define CH_DNS "{\"type\":\"dns-01\",\"url\":\"" CA "/chal/d\"," \
               "\"token\":\"tokD\"}"
#define CH_ALPN "{\"type\":\"tls-alpn-01\",\"url\":\"" CA "/chal/t\"," \
                "\"token\":\"tokT\"}"
#define PENDING(list) "{\"status\":\"pending\",\"identifier\":{\"type\":" \
    "\"dns\",\"value\":\"www.example.com\"},\"challenges\":[" list "]}"

static void test_challenge_choice(void)
{
    fake_http_t *f;
    cs_acme_t *acme;
    apr_array_header_t *chain = NULL;
    responder_t r;
    EVP_PKEY *key;
    const char *err = NULL, *leaf;
    cs_acme_order_t o;

    cs_key_generate(&key, pool, CS_KEY_EC_P256);
    leaf = chain_pem("Default Root X1", key, "www.example.com");

    UNIT_CASE("challenge: http-01 preferred among the types answered");
    memset(&r, 0, sizeof(r));
    acme = challenge_client(&f, &r, CS_ACME_HTTP01 | CS_ACME_DNS01,
                            PENDING(CH_DNS "," CH_ALPN "," CH_HTTP), leaf);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(r.type, CS_ACME_HTTP01);
    CHECK_STR(r.token, "tokH");
    CHECK(r.keyauth && strncmp(r.keyauth, "tokH.", 5) == 0);
    CHECK_EQ_INT(r.setups, 1);
    CHECK_EQ_INT(r.teardowns, 1);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/h"), 1);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/d"), 0);

    UNIT_CASE("challenge: the order narrows the types (dns-01 only)");
    memset(&r, 0, sizeof(r));
    acme = challenge_client(&f, &r, CS_ACME_HTTP01 | CS_ACME_DNS01,
                            PENDING(CH_HTTP "," CH_DNS), leaf);
    memset(&o, 0, sizeof(o));
    o.challenges = CS_ACME_DNS01;
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               &o, &err), APR_SUCCESS);
    CHECK_EQ_INT(r.type, CS_ACME_DNS01);
    CHECK_STR(r.token, "tokD");
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/d"), 1);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/h"), 0);

    UNIT_CASE("challenge: tls-alpn-01 before dns-01");
    memset(&r, 0, sizeof(r));
    acme = challenge_client(&f, &r, CS_ACME_TLSALPN01 | CS_ACME_DNS01,
                            PENDING(CH_DNS "," CH_HTTP "," CH_ALPN), leaf);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(r.type, CS_ACME_TLSALPN01);

    UNIT_CASE("challenge: none of the types offered is answered: named");
    memset(&r, 0, sizeof(r));
    acme = challenge_client(&f, &r, CS_ACME_HTTP01,
                            PENDING(CH_DNS "," CH_ALPN), leaf);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               NULL, &err), APR_EGENERAL);
    CHECK(err && strstr(err, "offered: dns-01, tls-alpn-01"));
    CHECK_EQ_INT(r.setups, 0);
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/d")
                 + fake_http_count_of(f, "POST", CA "/chal/t"), 0);

    UNIT_CASE("challenge: an order allowing no type answered fails");
    memset(&r, 0, sizeof(r));
    acme = challenge_client(&f, &r, CS_ACME_HTTP01,
                            PENDING(CH_HTTP "," CH_DNS), leaf);
    o.challenges = CS_ACME_DNS01;
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "www.example.com",
                               &o, &err), APR_EGENERAL);
    CHECK_EQ_INT(r.setups, 0);

    UNIT_CASE("challenge: a wildcard's identifier and flag; a failed "
              "setup abandons the order");
    memset(&r, 0, sizeof(r));
    r.fail = APR_EGENERAL;
    acme = challenge_client(&f, &r, CS_ACME_DNS01,
                            "{\"status\":\"pending\",\"wildcard\":true,"
                            "\"identifier\":{\"type\":\"dns\",\"value\":"
                            "\"example.com\"},\"challenges\":[" CH_DNS "]}",
                            leaf);
    CHECK_EQ_INT(cs_acme_issue(&chain, pool, acme, key, "*.example.com",
                               NULL, &err), APR_EGENERAL);
    CHECK_STR(r.domain, "example.com");
    CHECK_EQ_INT(r.wildcard, 1);
    CHECK(err && strstr(err, "cannot publish the dns-01 answer"));
    CHECK_EQ_INT(fake_http_count_of(f, "POST", CA "/chal/d"), 0);
}

static void test_stop(void)
{
    fake_http_t *f = fake_http_create(pool);
    volatile apr_uint32_t stop = 0;
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    const char *err = NULL, *kid = NULL;

    UNIT_CASE("stop: a client asked to stop sends nothing more (EINTR)");
    fake_http_answer(f, "GET", CA "/dir", 200, NULL, DIR_JSON);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA "/dir";
    conf.http = fake_http_transport(f);
    conf.stop = &stop;
    if (!CHECK_EQ_INT(cs_acme_create(&acme, pool, &conf), APR_SUCCESS)) {
        return;
    }
    CHECK_EQ_INT(cs_acme_directory(acme, &err), APR_SUCCESS);
    stop = 1;
    CHECK_EQ_INT(cs_acme_account(&kid, acme, account_key, NULL, &err),
                 APR_EINTR);
    CHECK(err && strstr(err, "stopped"));
    CHECK_EQ_INT(fake_http_count(f), 1);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    cs_acme_global_init();
    if (cs_key_generate(&account_key, pool, CS_KEY_EC_P256)) {
        printf("cannot generate a key\n");
        return 1;
    }
    test_nonces();
    test_retry_after();
    test_link_alternate();
    test_renewal_info();
    test_profiles();
    test_directory_retries();
    test_precheck();
    test_precheck_dns();
    test_eab();
    test_challenge_choice();
    test_stop();
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
