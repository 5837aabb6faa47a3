/*
 * test_cs_jws.c: base64url, JWK and thumbprints (RFC 7638 vector),
 * ES256 / RS256 JWS signatures checked by OpenSSL directly, and External
 * Account Binding JWSs whose HMAC is recomputed here with OpenSSL's HMAC().
 */
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "cs_crypto.h"
#include "cs_jws.h"
#include "unit.h"

static apr_pool_t *pool;

static void b64(const char *in, const char *want)
{
    unsigned char *back;
    apr_size_t len;

    UNIT_CASE(in);
    CHECK_STR(cs_b64url_encode(pool, (const unsigned char *)in, strlen(in)),
              want);
    CHECK_EQ_INT(cs_b64url_decode(&back, &len, pool, want), APR_SUCCESS);
    CHECK_EQ_INT(len, strlen(in));
    CHECK_MEM(back, in, len);
}

/* The RSA key of RFC 7638 section 3.1, public part only. */
static EVP_PKEY *rfc7638_key(void)
{
    static const char *n64 =
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1R"
        "K7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9"
        "yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZg"
        "nYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
        "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDK"
        "gw";
    unsigned char *n, *e;
    apr_size_t nl, el;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;
    BIGNUM *bn, *be;

    cs_b64url_decode(&n, &nl, pool, n64);
    cs_b64url_decode(&e, &el, pool, "AQAB");
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
    params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_fromdata_init(ctx);
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(bn);
    BN_free(be);
    return key;
}

/* The three parts of a flattened JWS, decoded. */
static int split(const char *jws, const char **prot, const char **pay,
                 unsigned char **sig, apr_size_t *siglen,
                 const char **input)
{
    json_t *j = json_loads(jws, 0, NULL);
    const char *p64, *y64, *s64;
    unsigned char *b;
    apr_size_t len;

    if (!j) {
        return 0;
    }
    p64 = apr_pstrdup(pool, json_string_value(json_object_get(j,
                                                              "protected")));
    y64 = apr_pstrdup(pool, json_string_value(json_object_get(j, "payload")));
    s64 = apr_pstrdup(pool, json_string_value(json_object_get(j,
                                                              "signature")));
    json_decref(j);
    cs_b64url_decode(&b, &len, pool, p64);
    *prot = (const char *)b;
    cs_b64url_decode(&b, &len, pool, y64);
    *pay = (const char *)b;
    cs_b64url_decode(sig, siglen, pool, s64);
    *input = apr_pstrcat(pool, p64, ".", y64, NULL);
    return 1;
}

/* OpenSSL's own verdict on a JWS signature (ES256: R || S made DER here,
 * independently of cs_jws.c). */
static int openssl_verifies(EVP_PKEY *key, const char *input,
                            const unsigned char *sig, apr_size_t siglen,
                            int ec)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int len = 0, ok;

    if (ec) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        if (siglen != 64) {
            ECDSA_SIG_free(es);
            EVP_MD_CTX_free(md);
            return 0;
        }
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
                       BN_bin2bn(sig + 32, 32, NULL));
        len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        sig = der;
        siglen = (apr_size_t)len;
    }
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1
         && EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input,
                             strlen(input)) == 1;
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    return ok;
}

static void sign_case(const char *name, cs_key_type_t kt, const char *alg,
                      apr_size_t siglen_want)
{
    EVP_PKEY *key, *other;
    const char *jws, *jws2, *err = NULL, *prot, *pay, *input, *h, *y;
    unsigned char *sig;
    apr_size_t siglen;
    json_t *hdr;
    char *tampered, *pos;

    UNIT_CASE(name);
    CHECK_EQ_INT(cs_key_generate(&key, pool, kt), APR_SUCCESS);
    CHECK_EQ_INT(cs_key_generate(&other, pool, kt), APR_SUCCESS);
    CHECK_STR(cs_jws_alg(key), alg);

    /* With a kid, a nonce and a payload. */
    CHECK_EQ_INT(cs_jws_sign(&jws, pool, key, "https://ca/acct/1", "n0nce",
                             "https://ca/new-order", "{\"a\":1}", &err),
                 APR_SUCCESS);
    if (!CHECK(split(jws, &prot, &pay, &sig, &siglen, &input))) {
        return;
    }
    CHECK_STR(pay, "{\"a\":1}");
    CHECK_EQ_INT(siglen, siglen_want);
    CHECK(openssl_verifies(key, input, sig, siglen, alg[0] == 'E'));
    CHECK(!openssl_verifies(other, input, sig, siglen, alg[0] == 'E'));
    hdr = json_loads(prot, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(hdr, "alg")), alg);
    CHECK_STR(json_string_value(json_object_get(hdr, "kid")),
              "https://ca/acct/1");
    CHECK_STR(json_string_value(json_object_get(hdr, "nonce")), "n0nce");
    CHECK_STR(json_string_value(json_object_get(hdr, "url")),
              "https://ca/new-order");
    CHECK(json_object_get(hdr, "jwk") == NULL);
    json_decref(hdr);
    CHECK_EQ_INT(cs_jws_verify(&h, &y, pool, key, jws, &err), APR_SUCCESS);
    CHECK_STR(y, "{\"a\":1}");
    CHECK(cs_jws_verify(&h, &y, pool, other, jws, &err) != APR_SUCCESS);

    /* A changed payload no longer verifies. */
    tampered = apr_pstrdup(pool, jws);
    pos = strstr(tampered, "\"payload\":\"") + 11;
    *pos = *pos == 'e' ? 'f' : 'e';
    CHECK(cs_jws_verify(&h, &y, pool, key, tampered, &err) != APR_SUCCESS);

    /* POST-as-GET with the JWK and no nonce (a key change's inner JWS). */
    CHECK_EQ_INT(cs_jws_sign(&jws2, pool, key, NULL, NULL, "https://ca/kc",
                             "", &err), APR_SUCCESS);
    CHECK(split(jws2, &prot, &pay, &sig, &siglen, &input));
    CHECK_STR(pay, "");
    CHECK(openssl_verifies(key, input, sig, siglen, alg[0] == 'E'));
    hdr = json_loads(prot, 0, NULL);
    CHECK(json_object_get(hdr, "nonce") == NULL);
    CHECK(json_object_get(hdr, "kid") == NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(hdr, "jwk"),
                                                "kty")),
              alg[0] == 'E' ? "EC" : "RSA");
    if (alg[0] == 'E') {
        const char *x = json_string_value(json_object_get(
            json_object_get(hdr, "jwk"), "x"));
        /* 32 bytes, base64url: 43 characters, padded or not by value. */
        CHECK(x && strlen(x) == 43);
    }
    json_decref(hdr);
}

/* An EAB JWS for the RFC 7638 key, checked member by member, its MAC
 * recomputed with HMAC() over the exact signing input it carries. */
static void eab_case(const char *alg, const EVP_MD *md, apr_size_t mac_len,
                     EVP_PKEY *account)
{
    /* The key text as a CA hands it out (a file's newline included). */
    static const char key64[] =
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n";
    static const char url[] = "https://ca.test/acme/new-acct";
    unsigned char *key, *sig, want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    apr_size_t key_len = 0, sig_len;
    const char *jws = NULL, *err = NULL, *prot64, *pay64;
    unsigned char *prot, *pay;
    apr_size_t plen, ylen;
    json_t *j, *hdr, *jwk_sent, *jwk;
    cs_eab_t eab;

    UNIT_CASE(alg);
    if (!CHECK_EQ_INT(cs_eab_key_decode(&key, &key_len, pool, key64, &err),
                      APR_SUCCESS)) {
        return;
    }
    CHECK_EQ_INT(key_len, 48);
    eab.kid = "kid-1";
    eab.key = key;
    eab.key_len = key_len;
    eab.alg = alg;
    if (!CHECK_EQ_INT(cs_jws_eab(&jws, pool, &eab, account, url, &err),
                      APR_SUCCESS)) {
        return;
    }
    j = json_loads(jws, 0, NULL);
    CHECK_EQ_INT(json_object_size(j), 3);
    prot64 = json_string_value(json_object_get(j, "protected"));
    pay64 = json_string_value(json_object_get(j, "payload"));
    if (!CHECK(prot64 && pay64
               && json_string_value(json_object_get(j, "signature")))
        || !CHECK_EQ_INT(cs_b64url_decode(&sig, &sig_len, pool,
                                          json_string_value(json_object_get(
                                              j, "signature"))),
                         APR_SUCCESS)) {
        json_decref(j);
        return;
    }
    /* Protected header: exactly alg, kid and url (no nonce, no jwk). */
    CHECK_EQ_INT(cs_b64url_decode(&prot, &plen, pool, prot64), APR_SUCCESS);
    hdr = json_loadb((const char *)prot, plen, 0, NULL);
    CHECK_EQ_INT(json_object_size(hdr), 3);
    CHECK_STR(json_string_value(json_object_get(hdr, "alg")),
              alg ? alg : "HS256");
    CHECK_STR(json_string_value(json_object_get(hdr, "kid")), "kid-1");
    CHECK_STR(json_string_value(json_object_get(hdr, "url")), url);
    json_decref(hdr);
    /* Payload: the account's public JWK. */
    CHECK_EQ_INT(cs_b64url_decode(&pay, &ylen, pool, pay64), APR_SUCCESS);
    jwk_sent = json_loadb((const char *)pay, ylen, 0, NULL);
    jwk = cs_jwk_public(account);
    CHECK(jwk_sent && json_equal(jwk_sent, jwk));
    CHECK_STR(json_string_value(json_object_get(jwk_sent, "e")), "AQAB");
    json_decref(jwk_sent);
    json_decref(jwk);
    /* Signature: HMAC(key, protected "." payload), computed here. */
    HMAC(md, key, (int)key_len,
         (const unsigned char *)apr_pstrcat(pool, prot64, ".", pay64, NULL),
         strlen(prot64) + 1 + strlen(pay64), want, &want_len);
    CHECK_EQ_INT(sig_len, mac_len);
    CHECK_EQ_INT(want_len, mac_len);
    CHECK_MEM(sig, want, mac_len);
    /* Another key gives another MAC. */
    key[0] ^= 1;
    CHECK_EQ_INT(cs_jws_eab(&jws, pool, &eab, account, url, &err),
                 APR_SUCCESS);
    CHECK(strstr(jws, json_string_value(json_object_get(j, "signature")))
          == NULL);
    json_decref(j);
}

/* A bad MAC key text: refused, and the error does not quote it. */
static void eab_bad_key(const char *name, const char *text)
{
    unsigned char *key = NULL;
    apr_size_t len = 0;
    const char *err = NULL;

    UNIT_CASE(name);
    CHECK_EQ_INT(cs_eab_key_decode(&key, &len, pool, text, &err),
                 APR_EINVAL);
    CHECK(err != NULL);
    CHECK(err && (!*text || strstr(err, text) == NULL));
}

int main(void)
{
    EVP_PKEY *rsa, *p384 = NULL;
    const char *thumb = NULL, *err = NULL, *jws;
    unsigned char *out;
    apr_size_t len;
    static const unsigned char bin[] = { 0xfb, 0xff, 0x00 };
    json_t *jwk;
    EVP_PKEY_CTX *ctx;

    apr_initialize();
    apr_pool_create(&pool, NULL);

    /* RFC 4648 vectors, in the URL alphabet without padding. */
    b64("", "");
    b64("f", "Zg");
    b64("fo", "Zm8");
    b64("foo", "Zm9v");
    b64("foob", "Zm9vYg");
    b64("fooba", "Zm9vYmE");
    b64("foobar", "Zm9vYmFy");
    UNIT_CASE("url alphabet");
    CHECK_STR(cs_b64url_encode(pool, bin, 2), "-_8");
    CHECK_EQ_INT(cs_b64url_decode(&out, &len, pool, "-_8"), APR_SUCCESS);
    CHECK_MEM(out, bin, 2);
    CHECK_EQ_INT(cs_b64url_decode(&out, &len, pool, "Zm9vYg=="),
                 APR_SUCCESS);
    CHECK_EQ_INT(len, 4);
    CHECK_EQ_INT(cs_b64url_decode(&out, &len, pool, "+/8"), APR_EINVAL);
    CHECK_EQ_INT(cs_b64url_decode(&out, &len, pool, "Zm9vY"), APR_EINVAL);

    UNIT_CASE("RFC 7638 thumbprint");
    rsa = rfc7638_key();
    CHECK(rsa != NULL);
    CHECK_EQ_INT(cs_jwk_thumbprint(&thumb, pool, rsa), APR_SUCCESS);
    CHECK_STR(thumb, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    jwk = cs_jwk_public(rsa);
    CHECK_STR(json_string_value(json_object_get(jwk, "e")), "AQAB");
    CHECK_EQ_INT(json_object_size(jwk), 3);
    json_decref(jwk);
    EVP_PKEY_free(rsa);

    sign_case("ES256", CS_KEY_EC_P256, "ES256", 64);
    sign_case("RS256", CS_KEY_RSA_2048, "RS256", 256);

    UNIT_CASE("unsupported key");
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_keygen_init(ctx);
    EVP_PKEY_CTX_set_group_name(ctx, "secp384r1");
    EVP_PKEY_generate(ctx, &p384);
    EVP_PKEY_CTX_free(ctx);
    CHECK(p384 != NULL);
    CHECK(cs_jws_alg(p384) == NULL);
    CHECK(cs_jwk_public(p384) == NULL);
    CHECK_EQ_INT(cs_jws_sign(&jws, pool, p384, NULL, "n", "https://x/", "",
                             &err), APR_EINVAL);
    CHECK(err != NULL);
    EVP_PKEY_free(p384);

    /* External Account Binding. */
    rsa = rfc7638_key();
    eab_case(NULL, EVP_sha256(), 32, rsa);
    eab_case("HS256", EVP_sha256(), 32, rsa);
    eab_case("HS384", EVP_sha384(), 48, rsa);
    eab_case("HS512", EVP_sha512(), 64, rsa);
    {
        cs_eab_t eab = { "kid-1", bin, sizeof(bin), "RS256" };

        UNIT_CASE("EAB: an algorithm that is not HMAC");
        CHECK(cs_eab_digest("RS256") == NULL);
        CHECK_EQ_INT(cs_jws_eab(&jws, pool, &eab, rsa, "https://x/", &err),
                     APR_EINVAL);
        UNIT_CASE("EAB: no key id");
        eab.alg = NULL;
        eab.kid = "";
        CHECK_EQ_INT(cs_jws_eab(&jws, pool, &eab, rsa, "https://x/", &err),
                     APR_EINVAL);
    }
    EVP_PKEY_free(rsa);
    eab_bad_key("EAB key: empty", "");
    eab_bad_key("EAB key: white space only", " \n\t\n");
    eab_bad_key("EAB key: base64 alphabet, not base64url", "ab+/cdEF");
    eab_bad_key("EAB key: a space inside", "abcd efgh");
    eab_bad_key("EAB key: a lone trailing character", "abcde");
    eab_bad_key("EAB key: only padding", "====");
    UNIT_CASE("EAB key: padding and white space around are fine");
    CHECK_EQ_INT(cs_eab_key_decode(&out, &len, pool, "\t Zm9vYg==\r\n",
                                   &err), APR_SUCCESS);
    CHECK_EQ_INT(len, 4);
    CHECK_MEM(out, "foob", 4);

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
