/*
 * test_cs_crypto.c: unit tests of cs_crypto.c and cs_envelope.c: key
 * pairs, the private-key envelope (CMS AuthEnvelopedData) and the
 * PEM/base64 helpers.
 *
 * The wrapping certificates are made here at run time.  The envelope is
 * checked against the openssl command line both ways: what we seal, the
 * CLI opens; what the CLI seals, we open.
 */
/* mkdtemp() */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_file_io.h>
#include <apr_strings.h>

#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "testkit.h"
#include "unit.h"

#define OPENSSL_CLI     "/usr/bin/openssl"

typedef struct {
    X509 *cert;
    EVP_PKEY *key;
} wrap_t;

static apr_pool_t *pool;
static const char *tmpdir;

/* A self-signed RSA-2048 wrapping certificate, owned by pool. */
static wrap_t make_wrap(const char *cn)
{
    wrap_t w = { NULL, NULL };

    if (cs_key_generate(&w.key, pool, CS_KEY_RSA_2048) != APR_SUCCESS) {
        return w;
    }
    w.cert = testkit_self_signed(pool, w.key, cn);
    return w;
}

static apr_array_header_t *recips(int n, const wrap_t *a, const wrap_t *b)
{
    apr_array_header_t *r = apr_array_make(pool, 2, sizeof(X509 *));

    if (n >= 1) {
        APR_ARRAY_PUSH(r, X509 *) = a->cert;
    }
    if (n >= 2) {
        APR_ARRAY_PUSH(r, X509 *) = b->cert;
    }
    return r;
}

/* Equal private keys: compare their PKCS#8 PEM (public parts alone
 * would not catch a wrong private scalar). */
static int same_key(EVP_PKEY *a, EVP_PKEY *b)
{
    apr_size_t la, lb;
    char *pa, *pb;

    if (a == NULL || b == NULL) {
        return 0;
    }
    pa = cs_pem_write_key(pool, a, &la);
    pb = cs_pem_write_key(pool, b, &lb);
    return pa && pb && la == lb && !memcmp(pa, pb, la);
}

/* Open must succeed and give key back. */
static int opens(const unsigned char *der, apr_size_t len, const wrap_t *w,
                 EVP_PKEY *key)
{
    EVP_PKEY *got;
    const char *err;

    if (cs_envelope_open(&got, pool, der, len, w->cert, w->key, &err)
        != APR_SUCCESS) {
        printf("# open failed: %s\n", err);
        return 0;
    }
    return same_key(got, key);
}

/* Open must fail cleanly: no key, a reason, an empty error queue. */
static int refused(const unsigned char *der, apr_size_t len,
                   X509 *cert, EVP_PKEY *wkey, const char **why)
{
    EVP_PKEY *got = (EVP_PKEY *)1;
    const char *err = NULL;
    apr_status_t rv;

    rv = cs_envelope_open(&got, pool, der, len, cert, wkey, &err);
    *why = err ? err : "";
    return rv != APR_SUCCESS && got == NULL && err != NULL
           && ERR_peek_error() == 0;
}

static const char *tmp_path(const char *name)
{
    return apr_pstrcat(pool, tmpdir, "/", name, NULL);
}

static int write_file(const char *name, const void *data, apr_size_t len)
{
    FILE *f = fopen(tmp_path(name), "wb");
    int ok;

    if (f == NULL) {
        return 0;
    }
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static char *read_file(const char *name, apr_size_t *len)
{
    FILE *f = fopen(tmp_path(name), "rb");
    char *buf = apr_palloc(pool, 65536);
    size_t n;

    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int write_wrap(const wrap_t *w, const char *crt, const char *key)
{
    apr_array_header_t *one = apr_array_make(pool, 1, sizeof(X509 *));
    const char *pem;
    char *kpem;
    apr_size_t klen;

    APR_ARRAY_PUSH(one, X509 *) = w->cert;
    pem = cs_pem_write_certs(pool, one);
    kpem = cs_pem_write_key(pool, w->key, &klen);
    return pem && kpem && write_file(crt, pem, strlen(pem))
           && write_file(key, kpem, klen);
}

/* Run a shell command in tmpdir; its exit status. */
static int run(const char *cmd)
{
    const char *full = apr_psprintf(pool, "cd '%s' && %s", tmpdir, cmd);
    int st = system(full);

    return st;
}

/* ------------------------------------------------------------------ */

/* A new key of type: its type, base id and size read back. */
static EVP_PKEY *keygen(cs_key_type_t type, int base_id, int bits)
{
    EVP_PKEY *key = NULL;

    UNIT_CASE(apr_pstrcat(pool, "keygen ", cs_key_type_name(type), NULL));
    CHECK_EQ_INT(cs_key_generate(&key, pool, type), APR_SUCCESS);
    CHECK(key != NULL);
    CHECK_EQ_INT(EVP_PKEY_get_base_id(key), base_id);
    CHECK_EQ_INT(EVP_PKEY_get_bits(key), bits);
    CHECK_EQ_INT(cs_key_type_of(key), type);
    return key;
}

static void test_key_types(void)
{
    EVP_PKEY *ec, *rsa, *p384;

    UNIT_CASE("key types");
    CHECK_EQ_INT(cs_key_type_parse("ec-p256"), CS_KEY_EC_P256);
    CHECK_EQ_INT(cs_key_type_parse("rsa-2048"), CS_KEY_RSA_2048);
    CHECK_EQ_INT(cs_key_type_parse("RSA-2048"), CS_KEY_RSA_2048);
    CHECK_EQ_INT(cs_key_type_parse("rsa-4096"), -1);
    CHECK_EQ_INT(cs_key_type_parse(""), -1);
    CHECK_EQ_INT(cs_key_type_parse(NULL), -1);
    CHECK_STR(cs_key_type_name(CS_KEY_EC_P256), "ec-p256");
    CHECK_STR(cs_key_type_name(CS_KEY_RSA_2048), "rsa-2048");

    ec = keygen(CS_KEY_EC_P256, EVP_PKEY_EC, 256);
    rsa = keygen(CS_KEY_RSA_2048, EVP_PKEY_RSA, 2048);
    CHECK(EVP_PKEY_eq(ec, rsa) != 1);

    UNIT_CASE("key type of others");
    CHECK_EQ_INT(cs_key_generate(&p384, pool, (cs_key_type_t)7),
                 APR_EINVAL);
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    CHECK_EQ_INT(cs_key_type_of(p384), -1);

    UNIT_CASE("key descriptions (imports)");
    CHECK_STR(cs_key_describe(pool, ec), "ec-p256");
    CHECK_STR(cs_key_describe(pool, rsa), "rsa-2048");
    CHECK_STR(cs_key_describe(pool, p384), "ec-p384");
    EVP_PKEY_free(p384);
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    CHECK_STR(cs_key_describe(pool, p384), "rsa-3072");
    EVP_PKEY_free(p384);
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    CHECK_STR(cs_key_describe(pool, p384), NULL);
    EVP_PKEY_free(p384);
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    CHECK_STR(cs_key_describe(pool, p384), NULL);
    EVP_PKEY_free(p384);
    CHECK_EQ_INT(cs_key_type_of(NULL), -1);
    CHECK_STR(cs_key_describe(pool, NULL), NULL);
}

static void test_seal_open(const wrap_t *w1, const wrap_t *w2,
                           const wrap_t *w3)
{
    EVP_PKEY *ec, *rsa;
    unsigned char *d1, *d2, *d3;
    apr_size_t l1, l2, l3;
    const char *err, *why;
    apr_array_header_t *none = apr_array_make(pool, 1, sizeof(X509 *));
    apr_array_header_t *bad = apr_array_make(pool, 1, sizeof(X509 *));
    EVP_PKEY *pub;

    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    cs_key_generate(&rsa, pool, CS_KEY_RSA_2048);

    UNIT_CASE("seal to one recipient");
    CHECK_EQ_INT(cs_envelope_seal(&d1, &l1, pool, ec, recips(1, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK(d1 != NULL && l1 > 100);
    CHECK(opens(d1, l1, w1, ec));
    /* the certificate is optional: the key alone finds its recipient */
    {
        wrap_t nocert = { NULL, w1->key };

        CHECK(opens(d1, l1, &nocert, ec));
    }

    UNIT_CASE("seal an RSA key");
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, rsa, recips(1, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK(opens(d3, l3, w1, rsa));

    UNIT_CASE("seal to two recipients");
    CHECK_EQ_INT(cs_envelope_seal(&d2, &l2, pool, ec, recips(2, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK(l2 > l1);
    CHECK(opens(d2, l2, w1, ec));
    CHECK(opens(d2, l2, w2, ec));
    /* fresh content key and IV every time */
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, ec, recips(1, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK(l3 == l1 && memcmp(d1, d3, l1) != 0);

    UNIT_CASE("open with a wrong key");
    CHECK(refused(d1, l1, w3->cert, w3->key, &why));
    CHECK_STR(why, "envelope: not sealed to this wrapping certificate");
    CHECK(refused(d1, l1, w1->cert, w3->key, &why));
    CHECK_STR(why, "envelope: cannot decrypt (wrong key or damaged "
                   "envelope)");
    CHECK(refused(d1, l1, NULL, w3->key, &why));
    CHECK(strstr(why, "cannot decrypt") != NULL);
    CHECK(refused(d2, l2, w3->cert, w3->key, &why));
    CHECK(refused(d2, l2, w2->cert, w1->key, &why));
    {
        EVP_PKEY *got;

        CHECK_EQ_INT(cs_envelope_open(&got, pool, d1, l1, w3->cert,
                                      w3->key, &err), APR_ENOENT);
        CHECK_EQ_INT(cs_envelope_open(&got, pool, d1, l1, w1->cert,
                                      w3->key, &err), APR_EGENERAL);
    }
    CHECK(refused(d1, l1, w1->cert, NULL, &why));

    UNIT_CASE("seal refuses bad recipients");
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, ec, none, &err),
                 APR_EINVAL);
    CHECK(d3 == NULL && l3 == 0 && err != NULL);
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, ec, NULL, &err),
                 APR_EINVAL);
    APR_ARRAY_PUSH(bad, X509 *) = NULL;
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, ec, bad, &err),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, NULL, recips(1, w1, w2),
                                  &err), APR_EINVAL);

    UNIT_CASE("seal refuses a public key");
    /* not X509_get_pubkey: the certificate was made from the key pair
     * and caches it whole */
    {
        unsigned char *spki = NULL;
        const unsigned char *q;
        int n = i2d_PUBKEY(w2->key, &spki);

        q = spki;
        pub = d2i_PUBKEY(NULL, &q, n);
        OPENSSL_free(spki);
    }
    CHECK(pub != NULL && EVP_PKEY_eq(pub, w2->key) == 1);
    CHECK_EQ_INT(cs_envelope_seal(&d3, &l3, pool, pub, recips(1, w1, w2),
                                  &err), APR_EINVAL);
    CHECK_STR(err, "envelope: the key has no private half");
    CHECK(ERR_peek_error() == 0);
    EVP_PKEY_free(pub);
}

static void test_tamper(const wrap_t *w1)
{
    EVP_PKEY *ec;
    unsigned char *der, *bad;
    apr_size_t len, i;
    const char *err, *why;

    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    cs_envelope_seal(&der, &len, pool, ec, recips(1, w1, w1), &err);
    bad = apr_pmemdup(pool, der, len);

    /* The DER ends with the mac (OCTET STRING of 16 bytes), right after
     * the encrypted content. */
    UNIT_CASE("tampered tag");
    CHECK_EQ_INT(der[len - 18], 0x04);
    CHECK_EQ_INT(der[len - 17], 16);
    bad[len - 1] ^= 0x01;
    CHECK(refused(bad, len, w1->cert, w1->key, &why));
    CHECK(strstr(why, "cannot decrypt") != NULL);
    bad[len - 1] ^= 0x01;
    bad[len - 16] ^= 0x80;
    CHECK(refused(bad, len, w1->cert, w1->key, &why));
    bad[len - 16] ^= 0x80;
    CHECK(opens(bad, len, w1, ec));

    UNIT_CASE("tampered ciphertext");
    for (i = 19; i <= 40; i += 7) {
        bad[len - i] ^= 0x20;
        CHECK(refused(bad, len, w1->cert, w1->key, &why));
        bad[len - i] ^= 0x20;
    }

    UNIT_CASE("truncated or garbage");
    CHECK(refused(der, len - 1, w1->cert, w1->key, &why));
    CHECK(refused(der, 10, w1->cert, w1->key, &why));
    CHECK(refused((const unsigned char *)"hello", 5, w1->cert, w1->key,
                  &why));
    CHECK(strstr(why, "not a CMS") != NULL);
    CHECK(refused(der, 0, w1->cert, w1->key, &why));
}

/* DER of a CMS made by OpenSSL directly, to a cipher of our choosing. */
static unsigned char *other_cms(apr_size_t *len, const wrap_t *w,
                                const EVP_CIPHER *cipher, int auth)
{
    static const char content[] = "not a key";
    BIO *in = BIO_new_mem_buf(content, sizeof(content) - 1);
    CMS_ContentInfo *cms;
    CMS_RecipientInfo *ri;
    STACK_OF(X509) *certs = sk_X509_new_null();
    unsigned char *der = NULL, *q;
    int n;

    sk_X509_push(certs, w->cert);
    if (auth) {
        cms = CMS_AuthEnvelopedData_create(cipher);
        ri = CMS_add1_recipient_cert(cms, w->cert, 0);
        if (ri == NULL || !CMS_final(cms, in, NULL, CMS_BINARY)) {
            CMS_ContentInfo_free(cms);
            cms = NULL;
        }
    }
    else {
        cms = CMS_encrypt(certs, in, cipher, CMS_BINARY);
    }
    sk_X509_free(certs);
    BIO_free(in);
    if (cms == NULL) {
        return NULL;
    }
    n = i2d_CMS_ContentInfo(cms, NULL);
    der = q = apr_palloc(pool, n);
    i2d_CMS_ContentInfo(cms, &q);
    CMS_ContentInfo_free(cms);
    *len = n;
    return der;
}

static void test_other_cms(const wrap_t *w1)
{
    unsigned char *der;
    apr_size_t len = 0;
    const char *why;

    UNIT_CASE("EnvelopedData AES-256-CBC refused");
    der = other_cms(&len, w1, EVP_aes_256_cbc(), 0);
    CHECK(der != NULL);
    CHECK(refused(der, len, w1->cert, w1->key, &why));
    CHECK_STR(why, "envelope: not a CMS AuthEnvelopedData");

    UNIT_CASE("EnvelopedData AES-256-GCM (CMS_encrypt) is AuthEnveloped");
    der = other_cms(&len, w1, EVP_aes_256_gcm(), 0);
    CHECK(der != NULL);
    /* OpenSSL 3.0 turns an AEAD cipher into AuthEnvelopedData: the
     * content is no key, so the structure passes and PKCS#8 fails */
    CHECK(refused(der, len, w1->cert, w1->key, &why));
    CHECK(strstr(why, "PKCS#8") != NULL);

    UNIT_CASE("AuthEnvelopedData AES-128-GCM refused");
    der = other_cms(&len, w1, EVP_aes_128_gcm(), 1);
    CHECK(der != NULL);
    CHECK(refused(der, len, w1->cert, w1->key, &why));
    CHECK_STR(why, "envelope: the content cipher is not AES-256-GCM");
}

static void test_rotation(const wrap_t *w1, const wrap_t *w2)
{
    EVP_PKEY *ec;
    unsigned char *e1, *e2, *e3;
    apr_size_t l1, l2, l3;
    const char *err, *why;

    UNIT_CASE("rotation w1 -> w1+w2 -> w2");
    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    CHECK_EQ_INT(cs_envelope_seal(&e1, &l1, pool, ec, recips(1, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_envelope_seal(&e2, &l2, pool, ec, recips(2, w1, w2),
                                  &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_envelope_seal(&e3, &l3, pool, ec, recips(1, w2, w1),
                                  &err), APR_SUCCESS);
    CHECK(opens(e1, l1, w1, ec));
    CHECK(refused(e1, l1, w2->cert, w2->key, &why));
    CHECK(opens(e2, l2, w1, ec));
    CHECK(opens(e2, l2, w2, ec));
    CHECK(opens(e3, l3, w2, ec));
    CHECK(refused(e3, l3, w1->cert, w1->key, &why));
}

static void test_cli(const wrap_t *w1, const wrap_t *w2)
{
    EVP_PKEY *ec, *rsa, *got;
    unsigned char *der, *p8 = NULL;
    apr_size_t len, n;
    int p8_len;
    char *out, *pem;
    const char *err;

    if (access(OPENSSL_CLI, X_OK) != 0) {
        printf("# SKIP: no %s\n", OPENSSL_CLI);
        return;
    }
    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    cs_key_generate(&rsa, pool, CS_KEY_RSA_2048);
    CHECK(write_wrap(w1, "w1.crt", "w1.key"));
    CHECK(write_wrap(w2, "w2.crt", "w2.key"));

    UNIT_CASE("openssl cms -cmsout -print");
    cs_envelope_seal(&der, &len, pool, ec, recips(2, w1, w2), &err);
    CHECK(write_file("env.der", der, len));
    CHECK_EQ_INT(run(OPENSSL_CLI " cms -cmsout -print -inform DER "
                     "-in env.der > print.txt"), 0);
    out = read_file("print.txt", &n);
    CHECK(out != NULL);
    if (out != NULL) {
        CHECK(strstr(out, "contentType: id-smime-ct-authEnvelopedData")
              != NULL);
        CHECK(strstr(out, "d.authEnvelopedData") != NULL);
        CHECK(strstr(out, "algorithm: aes-256-gcm") != NULL);
        CHECK(strstr(out, "algorithm: rsaesOaep") != NULL);
        /* the OAEP parameters name SHA-256 for the hash and for MGF1 */
        CHECK(strstr(out, "OBJECT            :sha256") != NULL);
        CHECK(strstr(out, "OBJECT            :mgf1") != NULL);
        CHECK(strstr(out, ":sha1") == NULL);
        CHECK(strstr(out, "rsaEncryption") == NULL);
    }

    UNIT_CASE("openssl cms -decrypt opens the envelope");
    {
        PKCS8_PRIV_KEY_INFO *pi = EVP_PKEY2PKCS8(ec);

        p8_len = i2d_PKCS8_PRIV_KEY_INFO(pi, &p8);
        PKCS8_PRIV_KEY_INFO_free(pi);
    }
    pem = cs_pem_write_key(pool, ec, &n);
    CHECK(pem != NULL && strstr(pem, "-----BEGIN PRIVATE KEY-----") == pem);
    CHECK(write_file("key.pem", pem, n));
    CHECK_EQ_INT(run(OPENSSL_CLI " cms -decrypt -inform DER -in env.der "
                     "-recip w1.crt -inkey w1.key -out plain1.der"), 0);
    out = read_file("plain1.der", &n);
    CHECK(out != NULL && (int)n == p8_len && !memcmp(out, p8, n));
    CHECK_EQ_INT(run(OPENSSL_CLI " cms -decrypt -inform DER -in env.der "
                     "-recip w2.crt -inkey w2.key -out plain2.der"), 0);
    out = read_file("plain2.der", &n);
    CHECK(out != NULL && (int)n == p8_len && !memcmp(out, p8, n));
    /* as PEM PKCS#8, the operator's view */
    CHECK_EQ_INT(run(OPENSSL_CLI " cms -decrypt -inform DER -in env.der "
                     "-recip w1.crt -inkey w1.key | " OPENSSL_CLI
                     " pkey -inform DER -out cli.pem"), 0);
    CHECK_EQ_INT(run("cmp -s cli.pem key.pem"), 0);
    CHECK(run(OPENSSL_CLI " cms -decrypt -inform DER -in env.der "
              "-recip w2.crt -inkey w1.key -out /dev/null 2>/dev/null")
          != 0);
    OPENSSL_clear_free(p8, p8_len);

    UNIT_CASE("we open what openssl cms -encrypt seals");
    pem = cs_pem_write_key(pool, rsa, &n);
    CHECK(write_file("rsa.pem", pem, n));
    CHECK_EQ_INT(run(OPENSSL_CLI " pkcs8 -topk8 -nocrypt -in rsa.pem "
                     "-outform DER "
                     "-out rsa.der && " OPENSSL_CLI " cms -encrypt "
                     "-aes-256-gcm -binary -in rsa.der -recip w1.crt "
                     "-keyopt rsa_padding_mode:oaep "
                     "-keyopt rsa_oaep_md:sha256 "
                     "-keyopt rsa_mgf1_md:sha256 -outform DER "
                     "-out cli.der"), 0);
    out = read_file("cli.der", &n);
    CHECK(out != NULL && n > 0);
    if (!CHECK_EQ_INT(cs_envelope_open(&got, pool, (unsigned char *)out,
                                       n, w1->cert, w1->key, &err),
                      APR_SUCCESS)) {
        printf("# %s\n", err);
    }
    CHECK(same_key(got, rsa));

    UNIT_CASE("we refuse what openssl cms -encrypt -aes-256-cbc seals");
    CHECK_EQ_INT(run(OPENSSL_CLI " cms -encrypt -aes-256-cbc -binary "
                     "-in rsa.der -recip w1.crt -outform DER "
                     "-out cbc.der"), 0);
    out = read_file("cbc.der", &n);
    CHECK_EQ_INT(cs_envelope_open(&got, pool, (unsigned char *)out, n,
                                  w1->cert, w1->key, &err), APR_EINVAL);
    CHECK(got == NULL);

    /* no key material left behind */
    run("rm -f w1.crt w1.key w2.crt w2.key env.der print.txt plain1.der "
        "plain2.der cli.pem key.pem rsa.pem rsa.der cli.der cbc.der");
}

static void test_pem(const wrap_t *w1, const wrap_t *w2)
{
    apr_array_header_t *certs, *two = recips(2, w1, w2);
    const char *pem, *err;
    char *kpem, *enc;
    apr_size_t klen;
    EVP_PKEY *key, *ec;
    BIO *bio;
    long n;
    apr_status_t rv;

    UNIT_CASE("PEM certificates round trip");
    pem = cs_pem_write_certs(pool, two);
    CHECK(pem != NULL);
    CHECK_EQ_INT(cs_pem_read_certs(&certs, pool, pem, strlen(pem), &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(certs->nelts, 2);
    CHECK(X509_cmp(APR_ARRAY_IDX(certs, 0, X509 *), w1->cert) == 0);
    CHECK(X509_cmp(APR_ARRAY_IDX(certs, 1, X509 *), w2->cert) == 0);
    CHECK_STR(cs_pem_write_certs(pool, certs), pem);

    UNIT_CASE("PEM certificates refused");
    CHECK_EQ_INT(cs_pem_read_certs(&certs, pool, "", 0, &err), APR_ENOENT);
    CHECK(certs == NULL && err != NULL);
    CHECK_EQ_INT(cs_pem_read_certs(&certs, pool, "junk", 4, &err),
                 APR_ENOENT);
    enc = apr_pstrdup(pool, pem);
    enc[100] = enc[100] == 'A' ? 'B' : 'A';
    rv = cs_pem_read_certs(&certs, pool, enc, strlen(enc), &err);
    CHECK(rv != APR_SUCCESS && certs == NULL);
    CHECK(ERR_peek_error() == 0);

    UNIT_CASE("PEM key round trip");
    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    kpem = cs_pem_write_key(pool, ec, &klen);
    CHECK(kpem != NULL && klen == strlen(kpem));
    CHECK_EQ_INT(cs_pem_read_key(&key, pool, kpem, klen, &err),
                 APR_SUCCESS);
    CHECK(same_key(key, ec));
    OPENSSL_cleanse(kpem, klen);

    UNIT_CASE("PEM traditional RSA key");
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey_traditional(bio, w1->key, NULL, NULL, 0, NULL,
                                         NULL);
    n = BIO_get_mem_data(bio, &enc);
    CHECK(strstr(enc, "BEGIN RSA PRIVATE KEY") != NULL);
    CHECK_EQ_INT(cs_pem_read_key(&key, pool, enc, n, &err), APR_SUCCESS);
    CHECK(same_key(key, w1->key));
    BIO_free(bio);

    UNIT_CASE("PEM encrypted key refused, no prompt");
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PKCS8PrivateKey(bio, ec, EVP_aes_256_cbc(), NULL, 0,
                                  NULL, (void *)"secret");
    n = BIO_get_mem_data(bio, &enc);
    CHECK(strstr(enc, "BEGIN ENCRYPTED PRIVATE KEY") != NULL);
    CHECK_EQ_INT(cs_pem_read_key(&key, pool, enc, n, &err), APR_EINVAL);
    CHECK(key == NULL && err != NULL && ERR_peek_error() == 0);
    BIO_free(bio);
    CHECK_EQ_INT(cs_pem_read_key(&key, pool, pem, strlen(pem), &err),
                 APR_EINVAL);

    UNIT_CASE("files");
    CHECK(write_file("c.pem", pem, strlen(pem)));
    kpem = cs_pem_write_key(pool, ec, &klen);
    CHECK(write_file("k.pem", kpem, klen));
    CHECK_EQ_INT(cs_file_read_certs(&certs, pool, tmp_path("c.pem"), &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(certs->nelts, 2);
    CHECK_EQ_INT(cs_file_read_key(&key, pool, tmp_path("k.pem"), &err),
                 APR_SUCCESS);
    CHECK(same_key(key, ec));
    CHECK_EQ_INT(cs_file_read_key(&key, pool, tmp_path("c.pem"), &err),
                 APR_EINVAL);
    CHECK(strstr(err, "c.pem") != NULL);
    CHECK_EQ_INT(cs_file_read_certs(&certs, pool, tmp_path("none.pem"),
                                    &err), APR_ENOENT);
    CHECK(strstr(err, "none.pem") != NULL);
    CHECK_EQ_INT(cs_file_read_key(&key, pool, tmp_path("none.pem"), &err),
                 APR_ENOENT);
    unlink(tmp_path("c.pem"));
    unlink(tmp_path("k.pem"));
}

/* key's PKCS#8 DER (i2d), from pool; with_public 0: an EC key without
 * RFC 5915's publicKey. */
static unsigned char *pkcs8_der(apr_size_t *len, EVP_PKEY *key,
                                int with_public)
{
    PKCS8_PRIV_KEY_INFO *p8;
    unsigned char *der = NULL, *copy;
    int n;

    if (!with_public
        && !EVP_PKEY_set_utf8_string_param(key,
                                           OSSL_PKEY_PARAM_EC_INCLUDE_PUBLIC,
                                           "no")
        && !EVP_PKEY_set_int_param(key, OSSL_PKEY_PARAM_EC_INCLUDE_PUBLIC,
                                   0)) {
        return NULL;
    }
    if ((p8 = EVP_PKEY2PKCS8(key)) == NULL
        || (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) <= 0) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return NULL;
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    copy = apr_pmemdup(pool, der, (apr_size_t)n);
    OPENSSL_clear_free(der, (size_t)n);
    *len = (apr_size_t)n;
    return copy;
}

/* cs_envelope_open_pem on an envelope around the PKCS#8 bytes p8: the
 * same key as key, and as PEM exactly those bytes (what OpenSSL's own PEM
 * writer makes of them: PEM_write_bio). */
static void open_pem_case(const char *what, const wrap_t *w, EVP_PKEY *key,
                          const unsigned char *p8, apr_size_t p8_len)
{
    apr_array_header_t *r = recips(1, w, NULL);
    unsigned char *der;
    apr_size_t len, pem_len = 0;
    EVP_PKEY *got = NULL, *back = NULL;
    const char *err = NULL;
    char *pem = NULL, *want;
    BIO *b;
    long n;

    UNIT_CASE(apr_pstrcat(pool, "open as PEM: ", what, NULL));
    if (!CHECK(p8 != NULL)
        || !CHECK_EQ_INT(cs_envelope_seal_data(&der, &len, pool, p8, p8_len,
                                               r, &err), APR_SUCCESS)) {
        return;
    }
    if (!CHECK_EQ_INT(cs_envelope_open_pem(&got, &pem, &pem_len, pool, der,
                                           len, w->cert, w->key, &err),
                      APR_SUCCESS)) {
        printf("# %s\n", err);
    }
    CHECK(same_key(got, key));
    CHECK(got && EVP_PKEY_eq(got, key) == 1);
    CHECK(got && cs_key_belongs(got, key));
    b = BIO_new(BIO_s_mem());
    PEM_write_bio(b, "PRIVATE KEY", "", p8, (long)p8_len);
    n = BIO_get_mem_data(b, &want);
    CHECK(pem != NULL && (apr_size_t)n == pem_len
          && memcmp(pem, want, pem_len) == 0);
    BIO_free(b);
    CHECK(pem && strlen(pem) == pem_len);
    CHECK_EQ_INT(cs_pem_read_key(&back, pool, pem ? pem : "", pem_len,
                                 &err), APR_SUCCESS);
    CHECK(same_key(back, key));
    /* Without pem: the same key. */
    got = NULL;
    CHECK_EQ_INT(cs_envelope_open_pem(&got, NULL, NULL, pool, der, len,
                                      w->cert, w->key, &err), APR_SUCCESS);
    CHECK(same_key(got, key));
    CHECK(ERR_peek_error() == 0);
}

/* An EC key's PKCS#8 with its ECPrivateKey's bytes changed at offset off
 * from the end of the whole DER: must open to the decoder's answer (the
 * key built from data only when nothing is unusual). */
static void open_pem_refused(const char *what, const wrap_t *w,
                             const unsigned char *p8, apr_size_t p8_len)
{
    apr_array_header_t *r = recips(1, w, NULL);
    unsigned char *der;
    apr_size_t len, pem_len;
    EVP_PKEY *got = (EVP_PKEY *)1;
    const char *err = NULL;
    char *pem = (char *)1;

    UNIT_CASE(apr_pstrcat(pool, "open as PEM, refused: ", what, NULL));
    if (!CHECK_EQ_INT(cs_envelope_seal_data(&der, &len, pool, p8, p8_len,
                                            r, &err), APR_SUCCESS)) {
        return;
    }
    CHECK(cs_envelope_open_pem(&got, &pem, &pem_len, pool, der, len,
                               w->cert, w->key, &err) != APR_SUCCESS);
    CHECK(got == NULL && pem == NULL && err != NULL);
    CHECK(ERR_peek_error() == 0);
}

static void test_open_pem(const wrap_t *w1)
{
    EVP_PKEY *ec, *p384, *rsa, *bare;
    unsigned char *d, *bad;
    apr_size_t n;

    if (cs_key_generate(&ec, pool, CS_KEY_EC_P256) != APR_SUCCESS
        || cs_key_generate(&rsa, pool, CS_KEY_RSA_2048) != APR_SUCCESS
        || cs_key_generate(&bare, pool, CS_KEY_EC_P256) != APR_SUCCESS) {
        CHECK(0);
        return;
    }
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    d = pkcs8_der(&n, ec, 1);
    open_pem_case("EC P-256 (built from data)", w1, ec, d, n);
    /* The envelope CertService makes (cs_envelope_seal) gives the same. */
    UNIT_CASE("open as PEM: cs_envelope_seal's envelope");
    {
        unsigned char *der;
        apr_size_t len, pem_len;
        EVP_PKEY *got;
        const char *err;
        char *pem, *want;

        CHECK_EQ_INT(cs_envelope_seal(&der, &len, pool, ec,
                                      recips(1, w1, NULL), &err),
                     APR_SUCCESS);
        CHECK_EQ_INT(cs_envelope_open_pem(&got, &pem, &pem_len, pool, der,
                                          len, w1->cert, w1->key, &err),
                     APR_SUCCESS);
        want = cs_pem_write_key(pool, ec, NULL);
        CHECK(want && pem && strcmp(pem, want) == 0);
    }
    d = pkcs8_der(&n, p384, 1);
    open_pem_case("EC P-384 (built from data)", w1, p384, d, n);
    d = pkcs8_der(&n, rsa, 1);
    open_pem_case("RSA-2048 (decoded)", w1, rsa, d, n);
    d = pkcs8_der(&n, bare, 0);
    open_pem_case("EC without its public key (decoded)", w1, bare, d, n);
    /* A point not on the curve: refused, as the decoder refuses it. */
    d = pkcs8_der(&n, ec, 1);
    bad = apr_pmemdup(pool, d, n);
    bad[n - 1] ^= 0x01;
    open_pem_refused("EC point off the curve", w1, bad, n);
    EVP_PKEY_free(p384);
}

static void test_base64(void)
{
    static const char *const vec[][2] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
        { "foobar", "Zm9vYmFy" }
    };
    static const char *const bad[] = {
        "Zm9", "Zm9vY", "Zm=v", "Z===", "====", "Zm9v\n", " Zm9v", "Zm9v ",
        "Zm9-", "Zm9_", "Zg=a"
    };
    unsigned char buf[300], *out;
    apr_size_t i, len;
    const char *text;

    UNIT_CASE("base64 RFC 4648 vectors");
    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        CHECK_STR(cs_base64_encode(pool, (const unsigned char *)vec[i][0],
                                   strlen(vec[i][0])), vec[i][1]);
        CHECK_EQ_INT(cs_base64_decode(&out, &len, pool, vec[i][1]),
                     APR_SUCCESS);
        CHECK_EQ_INT(len, strlen(vec[i][0]));
        CHECK_MEM(out, vec[i][0], len);
    }

    UNIT_CASE("base64 refused");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!CHECK_EQ_INT(cs_base64_decode(&out, &len, pool, bad[i]),
                          APR_EINVAL)) {
            printf("# input \"%s\"\n", bad[i]);
        }
    }
    CHECK_EQ_INT(cs_base64_decode(&out, &len, pool, NULL), APR_EINVAL);

    UNIT_CASE("base64 round trips");
    RAND_bytes(buf, sizeof(buf));
    for (i = 0; i <= sizeof(buf); i += 37) {
        text = cs_base64_encode(pool, buf, i);
        CHECK(strlen(text) == (i + 2) / 3 * 4 && !strchr(text, '\n'));
        CHECK_EQ_INT(cs_base64_decode(&out, &len, pool, text), APR_SUCCESS);
        CHECK(len == i && !memcmp(out, buf, i));
    }
}

static void test_fingerprint(const wrap_t *w1)
{
    unsigned char *der = NULL, md[32];
    int n;
    char hex[65];
    const char *fp;
    size_t i;

    UNIT_CASE("fingerprint");
    n = i2d_X509(w1->cert, &der);
    EVP_Digest(der, n, md, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
    for (i = 0; i < 32; i++) {
        sprintf(hex + 2 * i, "%02x", md[i]);
    }
    fp = cs_cert_fingerprint(pool, w1->cert);
    CHECK_STR(fp, hex);
    CHECK(cs_cert_fingerprint(pool, NULL) == NULL);
}

int main(void)
{
    wrap_t w1, w2, w3;

    apr_initialize();
    atexit(apr_terminate);
    apr_pool_create(&pool, NULL);
    if ((tmpdir = testkit_tmpdir(pool, "crypto")) == NULL) {
        return 2;
    }

    test_key_types();
    w1 = make_wrap("wrap one");
    w2 = make_wrap("wrap two");
    w3 = make_wrap("wrap three");
    UNIT_CASE("wrapping certificates");
    if (!CHECK(w1.cert && w2.cert && w3.cert)) {
        return unit_summary();
    }
    test_seal_open(&w1, &w2, &w3);
    test_tamper(&w1);
    test_other_cms(&w1);
    test_rotation(&w1, &w2);
    test_cli(&w1, &w2);
    test_pem(&w1, &w2);
    test_open_pem(&w1);
    test_base64();
    test_fingerprint(&w1);

    UNIT_CASE("error queue");
    CHECK(ERR_peek_error() == 0);

    rmdir(tmpdir);
    apr_pool_destroy(pool);
    return unit_summary();
}
