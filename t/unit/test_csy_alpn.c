/*
 * test_csy_alpn.c: unit tests of csy_alpn.c, the proxy's side of
 * tls-alpn-01: which ALPN offers are challenges (a normal h2 / http/1.1
 * handshake is not), CertService's answer opened and checked (every
 * failure), and the cache in front of CertService (hits, a 404
 * remembered briefly, errors not remembered, the cap on fetches at once),
 * over a scripted transport (fake_http.h).
 */
#include <stdio.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_x509.h"
#include "csy_alpn.h"
#include "fake_http.h"
#include "testkit.h"
#include "unit.h"

#define CS      "https://cs.test"
#define DOMAIN  "alpn.example.org"
#define SEC     apr_time_from_sec(1)

static apr_pool_t *pool;
static apr_array_header_t *wrap_certs, *wrap_keys;
static fake_http_t *fake;

static apr_array_header_t *strs(const char *a, const char *b)
{
    apr_array_header_t *arr = apr_array_make(pool, 2, sizeof(const char *));

    if (a) {
        APR_ARRAY_PUSH(arr, const char *) = a;
    }
    if (b) {
        APR_ARRAY_PUSH(arr, const char *) = b;
    }
    return arr;
}

/* CertService's answer for domain: a challenge certificate made for
 * cert_domain, its key (or another one) sealed to recipients. */
static const char *answer(const char *domain, const char *cert_domain,
                          int other_key, const apr_array_header_t *rcpt)
{
    EVP_PKEY *key, *other;
    X509 *cert;
    apr_array_header_t *certs = apr_array_make(pool, 1, sizeof(X509 *));
    unsigned char *der;
    apr_size_t len;
    const char *err;
    char *text, *out;
    json_t *j;

    cs_key_generate(&key, pool, CS_KEY_EC_P256);
    cs_key_generate(&other, pool, CS_KEY_EC_P256);
    if (cs_tlsalpn_cert_make(&cert, pool, key, cert_domain, "tok.thumb",
                             apr_time_from_sec(3600), &err)
        || cs_envelope_seal(&der, &len, pool, other_key ? other : key, rcpt,
                            &err)) {
        return NULL;
    }
    APR_ARRAY_PUSH(certs, X509 *) = cert;
    j = json_pack("{s:s, s:s, s:s, s:i}", "domain", domain,
                  "cert_pem", cs_pem_write_certs(pool, certs),
                  "key_cms", cs_base64_encode(pool, der, len),
                  "expires", 1);
    text = json_dumps(j, JSON_COMPACT);
    out = apr_pstrdup(pool, text);
    free(text);
    json_decref(j);
    return out;
}

static void test_offers(void)
{
    UNIT_CASE("ALPN: only acme-tls/1 alone is a challenge");
    CHECK(csy_alpn_offers_only_acme(strs("acme-tls/1", NULL)));
    CHECK(!csy_alpn_offers_only_acme(strs("h2", "http/1.1")));
    CHECK(!csy_alpn_offers_only_acme(strs("http/1.1", NULL)));
    CHECK(!csy_alpn_offers_only_acme(strs("h2", "acme-tls/1")));
    CHECK(!csy_alpn_offers_only_acme(strs("acme-tls/1", "http/1.1")));
    CHECK(!csy_alpn_offers_only_acme(strs("acme-tls/2", NULL)));
    CHECK(!csy_alpn_offers_only_acme(strs(NULL, NULL)));
    CHECK(!csy_alpn_offers_only_acme(NULL));
}

static void test_parse(void)
{
    apr_array_header_t *foreign_certs, *foreign_keys;
    cs_ca_t ca;
    csy_alpn_cred_t *cred;
    const char *body;
    char err[256];
    apr_time_t now = apr_time_now();

    UNIT_CASE("parse: CertService's answer opened and checked");
    body = answer(DOMAIN, DOMAIN, 0, wrap_certs);
    if (!CHECK(body != NULL)) {
        return;
    }
    if (CHECK_EQ_INT(csy_alpn_parse(&cred, body, strlen(body), DOMAIN,
                                    wrap_certs, wrap_keys, now, err,
                                    sizeof(err)), APR_SUCCESS)) {
        CHECK(X509_check_private_key(cred->cert, cred->key) == 1);
        CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, cred->cert, cred->key,
                                           DOMAIN, now, &body),
                     APR_SUCCESS);
        csy_alpn_cred_release(cred);
    }

    UNIT_CASE("parse: refused");
#define REFUSED(text, want) do { \
        const char *b_ = (text); \
        cred = (csy_alpn_cred_t *)1; \
        CHECK_EQ_INT(csy_alpn_parse(&cred, b_, strlen(b_), DOMAIN, \
                                    wrap_certs, wrap_keys, now, err, \
                                    sizeof(err)), APR_EINVAL); \
        CHECK(cred == NULL); \
        if (!CHECK(strstr(err, want) != NULL)) { \
            printf("# err: %s\n", err); \
        } \
    } while (0)
    REFUSED("", "not a tls-alpn-01 answer");
    REFUSED("[]", "not a tls-alpn-01 answer");
    REFUSED("{\"domain\":\"" DOMAIN "\",\"cert_pem\":\"x\"}",
            "not a tls-alpn-01 answer");
    REFUSED(answer("other.example.org", "other.example.org", 0, wrap_certs),
            "another domain");
    REFUSED("{\"domain\":\"" DOMAIN "\",\"cert_pem\":\"x\",\"key_cms\":\"\"}",
            "not one certificate");
    /* A certificate for another name served under this one. */
    REFUSED(answer(DOMAIN, "other.example.org", 0, wrap_certs), "SAN");
    /* A key that is not the certificate's. */
    REFUSED(answer(DOMAIN, DOMAIN, 1, wrap_certs), "key does not belong");
    /* Sealed to another pool's wrapping certificate. */
    if (CHECK(testkit_ca_and_wrap(pool, &ca, &foreign_certs,
                                  &foreign_keys) == 0)) {
        REFUSED(answer(DOMAIN, DOMAIN, 0, foreign_certs),
                "wrapping key");
    }
    /* Outside its validity. */
    body = answer(DOMAIN, DOMAIN, 0, wrap_certs);
    CHECK_EQ_INT(csy_alpn_parse(&cred, body, strlen(body), DOMAIN,
                                wrap_certs, wrap_keys,
                                now + apr_time_from_sec(7200), err,
                                sizeof(err)), APR_EINVAL);
    CHECK(strstr(err, "not valid now") != NULL);
}

static cs_http_t *transport(void *baton, apr_pool_t *p)
{
    return fake_http_transport(baton);
}

static void test_cache(void)
{
    csy_alpn_conf_t conf;
    csy_alpn_t *a;
    csy_alpn_cred_t *c1, *c2;
    csy_alpn_stats_t st;
    char err[256];
    apr_time_t t = apr_time_now(), u = t + 20 * SEC;
    const char *url = CS "/v1/acme-tls/" DOMAIN;

    UNIT_CASE("cache: one fetch, then hits until the TTL");
    fake = fake_http_create(pool);
    memset(&conf, 0, sizeof(conf));
    conf.url = CS;
    conf.http = transport;
    conf.http_baton = fake;
    conf.wrap_certs = wrap_certs;
    conf.wrap_keys = wrap_keys;
    conf.capacity = 2;
    if (!CHECK_EQ_INT(csy_alpn_create(&a, pool, &conf), APR_SUCCESS)) {
        return;
    }
    fake_http_answer_n(fake, "GET", url, 200, NULL,
                       answer(DOMAIN, DOMAIN, 0, wrap_certs), 1);
    CHECK_EQ_INT(csy_alpn_get(&c1, a, DOMAIN, t, err, sizeof(err)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_alpn_get(&c2, a, DOMAIN, t + 4 * SEC, err,
                              sizeof(err)), APR_SUCCESS);
    CHECK(c1 && c1 == c2);
    CHECK_EQ_INT(fake_http_count(fake), 1);
    if (CHECK(fake_http_count(fake) >= 1)) {
        CHECK_STR(fake_http_request(fake, 0)->url, url);
    }
    /* The references outlive the cache's. */
    csy_alpn_cred_release(c2);

    UNIT_CASE("cache: after the TTL CertService is asked again; 404");
    fake_http_answer_n(fake, "GET", url, 404, NULL, "{}", 2);
    CHECK_EQ_INT(csy_alpn_get(&c2, a, DOMAIN, t + 6 * SEC, err,
                              sizeof(err)), APR_NOTFOUND);
    CHECK(c2 == NULL && err[0] == '\0');
    CHECK_EQ_INT(fake_http_count(fake), 2);
    /* A 404 is not remembered: the challenge published a moment later
     * (the CA's validation right after anyone's acme-tls/1 probe) is
     * found. */
    CHECK_EQ_INT(csy_alpn_get(&c2, a, DOMAIN, t + 6 * SEC + SEC / 2, err,
                              sizeof(err)), APR_NOTFOUND);
    CHECK_EQ_INT(fake_http_count(fake), 3);
    fake_http_answer_n(fake, "GET", url, 200, NULL,
                       answer(DOMAIN, DOMAIN, 0, wrap_certs), 1);
    CHECK_EQ_INT(csy_alpn_get(&c2, a, DOMAIN, t + 7 * SEC, err,
                              sizeof(err)), APR_SUCCESS);
    CHECK(c2 && c2 != c1);
    CHECK_EQ_INT(fake_http_count(fake), 4);
    csy_alpn_cred_release(c2);
    CHECK(X509_check_private_key(c1->cert, c1->key) == 1);
    csy_alpn_cred_release(c1);

    UNIT_CASE("cache: errors are not remembered, and say why");
    fake_http_reset(fake);
    fake_http_answer_n(fake, "GET", CS "/v1/acme-tls/e.example.org", 500,
                       NULL, "oops", 1);
    CHECK_EQ_INT(csy_alpn_get(&c2, a, "e.example.org", t, err, sizeof(err)),
                 APR_EGENERAL);
    CHECK(strstr(err, "HTTP 500") != NULL);
    fake_http_answer_n(fake, "GET", CS "/v1/acme-tls/e.example.org", 200,
                       NULL, "not json", 1);
    CHECK_EQ_INT(csy_alpn_get(&c2, a, "e.example.org", t, err, sizeof(err)),
                 APR_EINVAL);
    /* Unreachable: the fake answers nothing. */
    CHECK_EQ_INT(csy_alpn_get(&c2, a, "e.example.org", t, err, sizeof(err)),
                 APR_ECONNREFUSED);
    CHECK(err[0] != '\0');
    CHECK_EQ_INT(fake_http_count(fake), 3);

    UNIT_CASE("cache: bounded, the first to end makes room");
    conf.miss_ttl = SEC;
    if (!CHECK_EQ_INT(csy_alpn_create(&a, pool, &conf), APR_SUCCESS)) {
        return;
    }
    fake_http_reset(fake);
    fake_http_answer(fake, "GET", CS "/v1/acme-tls/*", 404, NULL, "{}");
    csy_alpn_get(&c2, a, "a.example.org", u, err, sizeof(err));
    csy_alpn_get(&c2, a, "b.example.org", u + SEC / 4, err, sizeof(err));
    csy_alpn_get(&c2, a, "c.example.org", u + SEC / 2, err, sizeof(err));
    /* Two places, three names. */
    CHECK_EQ_INT(fake_http_count(fake), 3);
    /* a went for c; b is still remembered. */
    csy_alpn_get(&c2, a, "b.example.org", u + SEC / 2, err, sizeof(err));
    CHECK_EQ_INT(fake_http_count(fake), 3);
    csy_alpn_get(&c2, a, "a.example.org", u + SEC / 2, err, sizeof(err));
    CHECK_EQ_INT(fake_http_count(fake), 4);
    csy_alpn_stats(&st, a);
    CHECK_EQ_INT(st.hits, 0);
    CHECK_EQ_INT(st.misses, 5);     /* b once from the cache */
    CHECK_EQ_INT(st.fetches, 4);
}

/* A transport that answers while more fetches wait: the cap refuses
 * the ones beyond it. */
static csy_alpn_t *busy_a;
static int busy_seen;

static apr_status_t busy_send(void *baton, cs_http_resp_t *resp,
                              const cs_http_req_t *req, apr_pool_t *p,
                              const char **err)
{
    csy_alpn_cred_t *c;
    char e[128];

    /* One fetch runs (this one); max_fetches is 1. */
    busy_seen = csy_alpn_get(&c, busy_a, "other.example.org",
                             apr_time_now(), e, sizeof(e));
    resp->status = 404;
    resp->body = "";
    resp->len = 0;
    resp->headers = apr_table_make(p, 1);
    return APR_SUCCESS;
}

static cs_http_t *busy_transport(void *baton, apr_pool_t *p)
{
    cs_http_t *h = apr_pcalloc(p, sizeof(*h));

    h->send = busy_send;
    return h;
}

static void test_busy(void)
{
    csy_alpn_conf_t conf;
    csy_alpn_cred_t *c;
    csy_alpn_stats_t st;
    char err[128];

    UNIT_CASE("cache: at most max_fetches requests at once");
    memset(&conf, 0, sizeof(conf));
    conf.url = CS;
    conf.http = busy_transport;
    conf.wrap_certs = wrap_certs;
    conf.wrap_keys = wrap_keys;
    conf.max_fetches = 1;
    if (!CHECK_EQ_INT(csy_alpn_create(&busy_a, pool, &conf), APR_SUCCESS)) {
        return;
    }
    CHECK_EQ_INT(csy_alpn_get(&c, busy_a, DOMAIN, apr_time_now(), err,
                              sizeof(err)), APR_NOTFOUND);
    CHECK_EQ_INT(busy_seen, APR_EBUSY);
    csy_alpn_stats(&st, busy_a);
    CHECK_EQ_INT(st.busy, 1);
    CHECK_EQ_INT(st.fetches, 1);
}

int main(void)
{
    cs_ca_t ca;

    apr_initialize();
    atexit(apr_terminate);
    apr_pool_create(&pool, NULL);
    UNIT_CASE("setup");
    if (!CHECK(testkit_ca_and_wrap(pool, &ca, &wrap_certs, &wrap_keys) == 0)) {
        return unit_summary();
    }
    test_offers();
    test_parse();
    test_cache();
    test_busy();
    apr_pool_destroy(pool);
    return unit_summary();
}
