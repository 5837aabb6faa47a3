/*
 * fuzz_alpn.c: libFuzzer harness for what a proxy reads when it answers a
 * tls-alpn-01 challenge: CertService's answer to GET /v1/acme-tls/DOMAIN
 * (csy_alpn_parse, mod_certsync/csy_alpn.c: the JSON, cert_pem, key_cms
 * opened with the proxy's wrapping key, cs_tlsalpn_cert_check), and the
 * same bytes as the body of a fetch through the challenge cache
 * (csy_alpn_get over a stub transport).
 *
 * Each input is the whole answer body, for the domain alpn.fuzz.example
 * at 2026-12-06 00:00 UTC.  Beyond "no crash", it aborts when
 *   - the parser answers anything but 0 or APR_EINVAL; fails without a
 *     reason, or with one that is not printable ASCII (it goes to the
 *     error log), or leaves *cred set;
 *   - it accepts an answer whose certificate, checked here on its own,
 *     is not the challenge certificate of the domain: not exactly one SAN
 *     (the DNS name), no critical id-pe-acmeIdentifier of 32 bytes, a key
 *     that is not the certificate's, now outside its validity; or a
 *     credential whose reference count is not 1;
 *   - it accepts one answer for two domains, or with no wrapping key;
 *   - the cache gives another result than the parser for the same body,
 *     or does not answer a second ask for the name from the cache (same
 *     credential, a hit, no second fetch) after a success;
 *   - an OpenSSL error is left queued; ASan, UBSan or LeakSanitizer
 *     report.
 *
 * With FUZZ_ALPN_SEEDS=DIR in the environment the first call writes the
 * seed answers (made with the fixed wrapping key of fuzz_pki.c) to DIR
 * and exits: t/fuzz/corpus/alpn/seed_* were written that way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_x509.h"
#include "csy_alpn.h"
#include "fuzz.h"
#include "fuzz_pki.h"

#define DOMAIN  "alpn.fuzz.example"
/* 2026-12-06 00:00:00 UTC. */
#define NOW_SEC 1796515200

static fuzz_pki_t pki;
static apr_pool_t *gp;

static void printable(const char *s)
{
    for (; *s; s++) {
        REQUIRE((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
    }
}

/* The challenge certificate's properties, read here without the code
 * under test. */
static void check_cred(const csy_alpn_cred_t *c, const char *domain,
                       apr_time_t now)
{
    GENERAL_NAMES *san;
    const GENERAL_NAME *gn;
    const ASN1_IA5STRING *dns;
    int loc, crit = -1;
    time_t t = (time_t)apr_time_sec(now);
    X509_EXTENSION *ext;
    ASN1_OBJECT *oid = OBJ_txt2obj(CS_ACME_ID_OID, 1);

    REQUIRE(c != NULL && c->cert != NULL && c->key != NULL);
    REQUIRE(c->refs == 1);
    REQUIRE(X509_check_private_key(c->cert, c->key) == 1);
    san = X509_get_ext_d2i(c->cert, NID_subject_alt_name, &crit, NULL);
    REQUIRE(san != NULL && sk_GENERAL_NAME_num(san) == 1);
    gn = sk_GENERAL_NAME_value(san, 0);
    REQUIRE(gn->type == GEN_DNS);
    dns = gn->d.dNSName;
    REQUIRE((size_t)ASN1_STRING_length(dns) == strlen(domain)
            && memcmp(ASN1_STRING_get0_data(dns), domain,
                      strlen(domain)) == 0);
    GENERAL_NAMES_free(san);
    REQUIRE(oid != NULL);
    loc = X509_get_ext_by_OBJ(c->cert, oid, -1);
    REQUIRE(loc >= 0);
    REQUIRE(X509_get_ext_by_OBJ(c->cert, oid, loc) < 0);
    ext = X509_get_ext(c->cert, loc);
    REQUIRE(X509_EXTENSION_get_critical(ext));
    REQUIRE(ASN1_STRING_length(X509_EXTENSION_get_data(ext))
            == CS_ACME_ID_LEN);
    ASN1_OBJECT_free(oid);
    REQUIRE(X509_cmp_time(X509_get0_notBefore(c->cert), &t) < 0);
    REQUIRE(X509_cmp_time(X509_get0_notAfter(c->cert), &t) > 0);
}

/* --- the stub transport of the cache -------------------------------- */

typedef struct {
    const char *body;
    apr_size_t len;
    int calls;
} stub_t;

static apr_status_t stub_send(void *baton, cs_http_resp_t *resp,
                              const cs_http_req_t *req, apr_pool_t *p,
                              const char **err)
{
    stub_t *s = baton;

    (void)err;
    s->calls++;
    REQUIRE(strcmp(req->method, "GET") == 0);
    REQUIRE(strcmp(req->url, "https://cs.test/v1/acme-tls/" DOMAIN) == 0);
    resp->status = 200;
    resp->body = apr_pstrmemdup(p, s->body, s->len);
    resp->len = s->len;
    resp->headers = apr_table_make(p, 1);
    return APR_SUCCESS;
}

static cs_http_t *stub_http(void *baton, apr_pool_t *p)
{
    cs_http_t *h = apr_pcalloc(p, sizeof(*h));

    h->send = stub_send;
    h->baton = baton;
    return h;
}

/* --- seeds ---------------------------------------------------------- */

static void seed(const char *dir, const char *name, const char *text)
{
    FILE *f = fopen(apr_pstrcat(gp, dir, "/seed_", name, NULL), "w");

    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static const char *answer(apr_pool_t *p, const char *domain,
                          const char *cert_domain, EVP_PKEY *cert_key,
                          EVP_PKEY *sealed_key, apr_interval_time_t life)
{
    X509 *cert;
    const char *err = NULL;
    apr_array_header_t *one = apr_array_make(p, 1, sizeof(X509 *));
    unsigned char *der;
    apr_size_t der_len;
    BIO *b = BIO_new(BIO_s_mem());
    char *pem, *cpem;
    long n;

    REQUIRE(cs_tlsalpn_cert_make(&cert, p, cert_key, cert_domain,
                                 "tok.thumb", life, &err) == APR_SUCCESS);
    PEM_write_bio_X509(b, cert);
    n = BIO_get_mem_data(b, &pem);
    cpem = apr_pstrmemdup(p, pem, (apr_size_t)n);
    BIO_free(b);
    APR_ARRAY_PUSH(one, X509 *) = pki.wrap;
    REQUIRE(cs_envelope_seal(&der, &der_len, p, sealed_key, one, &err)
            == APR_SUCCESS);
    {
        json_t *j = json_pack("{s:s, s:s, s:s}", "domain", domain,
                              "cert_pem", cpem, "key_cms",
                              cs_base64_encode(p, der, der_len));
        char *s = json_dumps(j, JSON_COMPACT);
        const char *r = apr_pstrdup(p, s);

        free(s);
        json_decref(j);
        return r;
    }
}

static void make_seeds(const char *dir)
{
    apr_interval_time_t week = apr_time_from_sec(7 * 86400);
    EVP_PKEY *k = pki.leaf_key;

    /* Made now (cs_tlsalpn_cert_make starts the validity a minute ago):
     * run on 2026-12-05, so valid at the harness's NOW_SEC. */
    seed(dir, "valid", answer(gp, DOMAIN, DOMAIN, k, k, week));
    seed(dir, "valid_rsa", answer(gp, DOMAIN, DOMAIN, pki.rleaf_key,
                                  pki.rleaf_key, week));
    seed(dir, "other_domain", answer(gp, "other.fuzz.example",
                                     "other.fuzz.example", k, k, week));
    seed(dir, "cert_other_domain", answer(gp, DOMAIN, "other.fuzz.example",
                                          k, k, week));
    seed(dir, "key_mismatch", answer(gp, DOMAIN, DOMAIN, k,
                                     pki.other_key, week));
    seed(dir, "expired", answer(gp, DOMAIN, DOMAIN, k, k,
                                apr_time_from_sec(600)));
    seed(dir, "not_json", "<html>502 Bad Gateway</html>");
    seed(dir, "empty_object", "{}");
    seed(dir, "wrong_types", "{\"domain\":1,\"cert_pem\":[],\"key_cms\":{}}");
    seed(dir, "bad_pem", "{\"domain\":\"" DOMAIN "\",\"cert_pem\":"
         "\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"
         "\\n\",\"key_cms\":\"AAAA\"}");
    seed(dir, "bad_b64", "{\"domain\":\"" DOMAIN "\",\"cert_pem\":\"\","
         "\"key_cms\":\"@@@\"}");
    exit(0);
}

/* --- the harness ---------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_time_t now = apr_time_from_sec(NOW_SEC);
    csy_alpn_cred_t *cred = NULL, *c2 = NULL, *c3 = NULL;
    csy_alpn_conf_t conf;
    csy_alpn_stats_t st;
    csy_alpn_t *a;
    stub_t stub;
    apr_pool_t *p;
    apr_array_header_t *none;
    char err[256], err2[256];
    const char *body = (const char *)data;
    apr_status_t rv, rv2;

    if (!initialized) {
        const char *dir = getenv("FUZZ_ALPN_SEEDS");

        apr_initialize();
        apr_pool_create(&gp, NULL);
        fuzz_pki_load(&pki, gp);
        initialized = 1;
        if (dir) {
            make_seeds(dir);
        }
    }
    apr_pool_create(&p, NULL);

    memset(err, 'x', sizeof(err));
    rv = csy_alpn_parse(&cred, body, size, DOMAIN, pki.wrap_certs,
                        pki.wrap_keys, now, err, sizeof(err));
    REQUIRE(memchr(err, '\0', sizeof(err)) != NULL);
    REQUIRE(rv == APR_SUCCESS || rv == APR_EINVAL);
    if (rv == APR_SUCCESS) {
        check_cred(cred, DOMAIN, now);
        REQUIRE(err[0] == '\0');
    }
    else {
        REQUIRE(cred == NULL);
        REQUIRE(err[0] != '\0');
        printable(err);
    }
    REQUIRE(ERR_peek_error() == 0);

    /* One answer is never good for two names; for another name it must
     * be that name's challenge certificate. */
    rv2 = csy_alpn_parse(&c2, body, size, "other.fuzz.example",
                         pki.wrap_certs, pki.wrap_keys, now, err2,
                         sizeof(err2));
    if (rv2 == APR_SUCCESS) {
        REQUIRE(rv != APR_SUCCESS);
        check_cred(c2, "other.fuzz.example", now);
        csy_alpn_cred_release(c2);
        c2 = NULL;
    }
    else {
        REQUIRE(rv2 == APR_EINVAL && c2 == NULL && err2[0]);
        printable(err2);
    }
    /* Nor for a proxy without the wrapping key. */
    none = apr_array_make(p, 1, sizeof(void *));
    rv2 = csy_alpn_parse(&c2, body, size, DOMAIN, none, none, now, err2,
                         sizeof(err2));
    REQUIRE(rv2 == APR_EINVAL && c2 == NULL && err2[0]);
    printable(err2);
    REQUIRE(ERR_peek_error() == 0);

    /* The same bytes through the cache. */
    memset(&conf, 0, sizeof(conf));
    memset(&stub, 0, sizeof(stub));
    stub.body = body;
    stub.len = size;
    conf.url = "https://cs.test";
    conf.http = stub_http;
    conf.http_baton = &stub;
    conf.wrap_certs = pki.wrap_certs;
    conf.wrap_keys = pki.wrap_keys;
    conf.capacity = 2;
    REQUIRE(csy_alpn_create(&a, p, &conf) == APR_SUCCESS);
    rv2 = csy_alpn_get(&c2, a, DOMAIN, now, err2, sizeof(err2));
    REQUIRE(rv2 == rv);
    REQUIRE(stub.calls == 1);
    if (rv == APR_SUCCESS) {
        REQUIRE(c2 != NULL && c2->refs == 2);
        REQUIRE(csy_alpn_get(&c3, a, DOMAIN, now + apr_time_from_sec(1),
                             err2, sizeof(err2)) == APR_SUCCESS);
        REQUIRE(c3 == c2 && stub.calls == 1);
        csy_alpn_stats(&st, a);
        REQUIRE(st.hits == 1 && st.fetches == 1 && st.errors == 0);
        csy_alpn_cred_release(c3);
        csy_alpn_cred_release(c2);
    }
    else {
        REQUIRE(c2 == NULL && err2[0]);
        printable(err2);
        csy_alpn_stats(&st, a);
        REQUIRE(st.errors == 1 && st.hits == 0);
    }
    REQUIRE(ERR_peek_error() == 0);
    csy_alpn_cred_release(cred);
    apr_pool_destroy(p);
    return 0;
}
