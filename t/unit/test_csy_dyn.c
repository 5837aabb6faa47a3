/*
 * Unit tests of csy_dyn.c: server names, bundles read from a real store
 * (csy_store.c) with sealed keys (cs_envelope.c), the per-process cache
 * (hits, generation slots, renewal, deletion, wildcards, eviction, a bad
 * new version) and many threads looking up while versions change.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <malloc.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_file.h"
#include "cs_layout.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_dyn.h"
#include "csy_store.h"
#include "testkit.h"
#include "unit.h"

static apr_pool_t *pool;
static char base[256];
static csy_store_t *store;
static cs_ca_t ca;
static apr_array_header_t *wrap_certs, *wrap_keys;

/* Issue and install a new version of name, with key.cms and, as the sync
 * daemon writes it, key.seal; its serial (or NULL).  garbage: neither
 * opens. */
static const char *install(const char *name, int garbage)
{
    apr_array_header_t *chain, *seal_keys = cs_seal_keys_derive(pool,
                                                                wrap_keys);
    cs_cert_info_t info;
    EVP_PKEY *key;
    unsigned char *der, *seal;
    apr_size_t len, seal_len;
    const char *err, *pem;

    if (cs_key_generate(&key, pool, CS_KEY_EC_P256)
        || cs_ca_issue(&chain, pool, &ca, key, name, apr_time_from_sec(3600),
                       &err)
        || cs_envelope_seal(&der, &len, pool, key, wrap_certs, &err)) {
        return NULL;
    }
    cs_cert_info(&info, pool, APR_ARRAY_IDX(chain, 0, X509 *));
    if (!seal_keys
        || cs_seal(&seal, &seal_len, pool, key, APR_ARRAY_IDX(chain, 0, X509 *),
                   &APR_ARRAY_IDX(seal_keys, 0, cs_seal_key_t), name,
                   info.serial, &err)) {
        return NULL;
    }
    if (garbage) {
        memset(der + len / 2, 0x5a, 16);
        seal[seal_len / 2] ^= 1;
    }
    pem = cs_pem_write_certs(pool, chain);
    if (csy_store_install_sealed(store, pool, name, info.serial, pem, der,
                                 len, 1, seal, seal_len)) {
        return NULL;
    }
    return info.serial;
}

/* The path of a file of the version serial of name. */
static const char *version_file(const char *name, const char *serial,
                                const char *file)
{
    return apr_pstrcat(pool, base, "/live/", name, "/", serial, "/", file,
                       NULL);
}

static void remove_domain(const char *name)
{
    testkit_rm_tree(apr_pstrcat(pool, base, "/live/", name, NULL));
}

static void test_sni_name(void)
{
    static const struct { const char *in, *out; } good[] = {
        { "example.com", "example.com" },
        { "WWW.Example.COM", "www.example.com" },
        { "xn--bcher-kva.example", "xn--bcher-kva.example" },
        { "a-b.c-d.e", "a-b.c-d.e" },
        { "1.example", "1.example" },
    };
    static const char *bad[] = {
        "", "localhost", "example.com.", ".example.com", "a..b", "-a.b",
        "a-.b", "a.-b", "a.b-", "*.example.com", "a b.c", "a/b.c",
        "../x.y", "a.b\n", "exa_mple.com", "caf\xc3\xa9.fr",
        "1.2", "10.0.0.1", "ab--cd.example",
    };
    char out[CSY_NAME_SIZE], big[300];
    unsigned i;

    UNIT_CASE("csy_sni_name");
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(csy_sni_name(out, good[i].in));
        CHECK_STR(out, good[i].out);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!CHECK(!csy_sni_name(out, bad[i]))) {
            printf("accepted '%s'\n", bad[i]);
        }
    }
    /* A 64-character label, and a name longer than 253. */
    memset(big, 'a', 64);
    strcpy(big + 64, ".com");
    CHECK(!csy_sni_name(out, big));
    for (i = 0; i < 254; i += 2) {
        big[i] = 'a';
        big[i + 1] = '.';
    }
    big[253] = 'b';
    big[254] = '\0';
    CHECK(!csy_sni_name(out, big));
    big[251] = 'b';
    big[252] = '\0';
    CHECK(csy_sni_name(out, big + 1) == 0);     /* starts with '.' */
    CHECK(csy_sni_name(out, big));              /* 252 characters */
}

/* cs_seal.c: key.seal for one pair of key and certificate. */
static void seal_pair(EVP_PKEY **key, X509 **leaf, cs_key_type_t type,
                      const char *name)
{
    apr_array_header_t *chain;
    const char *err;

    *leaf = NULL;
    if (cs_key_generate(key, pool, type) == APR_SUCCESS
        && cs_ca_issue(&chain, pool, &ca, *key, name,
                       apr_time_from_sec(3600), &err) == APR_SUCCESS) {
        *leaf = APR_ARRAY_IDX(chain, 0, X509 *);
    }
}

/* Does key sign what leaf's public key verifies? */
static int signs_for(EVP_PKEY *key, X509 *leaf)
{
    static const unsigned char msg[] = "key.seal";
    unsigned char sig[1024];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1
         && EVP_DigestSign(md, sig, &sig_len, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    if (!ok || !(md = EVP_MD_CTX_new())) {
        return 0;
    }
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                              X509_get0_pubkey(leaf)) == 1
         && EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* A copy of an EC P-256 leaf whose SubjectPublicKeyInfo names the curve
 * 1.2.840.10045.3.1.6 (prime239v3) instead of .7: the same point bytes,
 * a public key that no longer decodes.  The caller frees it. */
static X509 *damaged_curve(X509 *leaf)
{
    static const unsigned char p256[] = {
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
    };
    unsigned char *der = NULL, *at = NULL;
    const unsigned char *q;
    X509 *x = NULL;
    int n, i;

    if ((n = i2d_X509(leaf, &der)) <= 0) {
        return NULL;
    }
    for (i = 0; i + (int)sizeof(p256) <= n; i++) {
        if (memcmp(der + i, p256, sizeof(p256)) == 0) {
            at = der + i;
            break;
        }
    }
    if (at) {
        at[sizeof(p256) - 1] = 0x06;
        q = der;
        x = d2i_X509(NULL, &q, n);
    }
    OPENSSL_free(der);
    ERR_clear_error();
    return x;
}

static void test_seal(void)
{
    cs_seal_key_t sk, sk2, other;
    EVP_PKEY *key, *rsa, *got, *wrap2;
    X509 *leaf, *rsa_leaf, *bad;
    unsigned char *sealed, *copy;
    apr_size_t len, rlen;
    const char *err;

    UNIT_CASE("cs_seal: derivation");
    CHECK_EQ_INT(cs_seal_key_derive(&sk, APR_ARRAY_IDX(wrap_keys, 0,
                                                       EVP_PKEY *)), 0);
    CHECK_EQ_INT(cs_seal_key_derive(&sk2, APR_ARRAY_IDX(wrap_keys, 0,
                                                        EVP_PKEY *)), 0);
    CHECK_MEM(sk.k, sk2.k, sizeof(sk.k));
    if (!CHECK_EQ_INT(cs_key_generate(&wrap2, pool, CS_KEY_RSA_2048), 0)) {
        return;
    }
    CHECK_EQ_INT(cs_seal_key_derive(&other, wrap2), 0);
    CHECK(memcmp(sk.k, other.k, sizeof(sk.k)) != 0);
    CHECK(cs_seal_key_derive(&other, NULL) != APR_SUCCESS);

    UNIT_CASE("cs_seal: EC key, round trip");
    seal_pair(&key, &leaf, CS_KEY_EC_P256, "seal.test");
    if (!CHECK(leaf != NULL)
        || !CHECK_EQ_INT(cs_seal(&sealed, &len, pool, key, leaf, &sk,
                                 "seal.test", "0a1b", &err), 0)) {
        return;
    }
    CHECK(len < 200);               /* point and scalar, not PKCS#8 */
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &sk, "seal.test",
                              "0a1b", &err), 0);
    CHECK(got && EVP_PKEY_eq(got, key) == 1);
    CHECK(got && X509_check_private_key(leaf, got) == 1);
    /* Only the public halves are compared above: the scalar must sign
     * what the certificate's key verifies. */
    CHECK(got && signs_for(got, leaf));
    EVP_PKEY_free(got);

    UNIT_CASE("cs_seal_verified: a pair already verified, round trip");
    if (CHECK_EQ_INT(cs_seal_verified(&copy, &rlen, pool, key, leaf, &sk,
                                      "seal.test", "0a1b", &err), 0)) {
        CHECK_EQ_INT(rlen, len);
        CHECK_EQ_INT(cs_seal_open(&got, copy, rlen, leaf, &sk, "seal.test",
                                  "0a1b", &err), 0);
        CHECK(got && EVP_PKEY_eq(got, key) == 1);
        CHECK(got && signs_for(got, leaf));
        EVP_PKEY_free(got);
    }
    CHECK_EQ_INT(cs_seal_verified(&copy, &rlen, pool, key, NULL, &sk,
                                  "seal.test", "0a1b", &err), APR_EINVAL);

    UNIT_CASE("cs_seal: a sealing key that was not derived");
    other.ok = 0;
    CHECK_EQ_INT(cs_seal(&copy, &rlen, pool, key, leaf, &other, "seal.test",
                         "0a1b", &err), APR_EINVAL);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &other, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_key_derive(&other, wrap2), 0);

    UNIT_CASE("cs_seal: RSA key (PKCS#8), round trip");
    seal_pair(&rsa, &rsa_leaf, CS_KEY_RSA_2048, "rsa.seal.test");
    if (CHECK(rsa_leaf != NULL)
        && CHECK_EQ_INT(cs_seal(&copy, &rlen, pool, rsa, rsa_leaf, &sk,
                                "rsa.seal.test", "01", &err), 0)) {
        CHECK_EQ_INT(cs_seal_open(&got, copy, rlen, rsa_leaf, &sk,
                                  "rsa.seal.test", "01", &err), 0);
        CHECK(got && EVP_PKEY_eq(got, rsa) == 1);
        CHECK(got && signs_for(got, rsa_leaf));
        EVP_PKEY_free(got);
    }

    UNIT_CASE("cs_seal: whether it opens, without building the key");
    CHECK_EQ_INT(cs_seal_open(NULL, sealed, len, NULL, &sk, "seal.test",
                              "0a1b", &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_seal_open(NULL, sealed, len, NULL, &other, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_open(NULL, sealed, len, NULL, &sk, "seal.test",
                              "0a1c", &err), APR_ENOENT);

    UNIT_CASE("cs_seal: bound to its sealing key, name and serial");
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &other, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    CHECK(got == NULL);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &sk, "seal.tesu",
                              "0a1b", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &sk, "seal.test",
                              "0a1c", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, leaf, &sk, "seal.test0",
                              "a1b", &err), APR_ENOENT);

    UNIT_CASE("cs_seal: damage is detected");
    copy = apr_pmemdup(pool, sealed, len);
    copy[len / 2] ^= 0x01;
    CHECK_EQ_INT(cs_seal_open(&got, copy, len, leaf, &sk, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    copy = apr_pmemdup(pool, sealed, len);
    copy[len - 1] ^= 0x80;          /* the tag */
    CHECK_EQ_INT(cs_seal_open(&got, copy, len, leaf, &sk, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len - 1, leaf, &sk, "seal.test",
                              "0a1b", &err), APR_ENOENT);
    CHECK_EQ_INT(cs_seal_open(&got, sealed, 20, leaf, &sk, "seal.test",
                              "0a1b", &err), APR_EINVAL);
    copy = apr_pmemdup(pool, sealed, len);
    copy[0] = 'X';                  /* magic */
    CHECK_EQ_INT(cs_seal_open(&got, copy, len, leaf, &sk, "seal.test",
                              "0a1b", &err), APR_EINVAL);
    CHECK(got == NULL);
    CHECK(strstr(err, "not a sealed key") != NULL);

    UNIT_CASE("cs_seal: the key must be the certificate's");
    CHECK_EQ_INT(cs_seal(&copy, &rlen, pool, key, rsa_leaf, &sk, "x.test",
                         "01", &err), APR_EINVAL);
    CHECK(strstr(err, "does not match") != NULL);
    /* authentic, but opened against another certificate */
    CHECK_EQ_INT(cs_seal_open(&got, sealed, len, rsa_leaf, &sk, "seal.test",
                              "0a1b", &err), APR_EINVAL);
    CHECK(got == NULL);
    CHECK(strstr(err, "does not match") != NULL);

    /* The same point in a certificate whose public key is not P-256 (the
     * curve's OID damaged in fullchain.pem; found by fuzz_seal): the
     * point's bytes alone do not make it the certificate's key. */
    UNIT_CASE("cs_seal: the certificate's key, not only its point");
    bad = damaged_curve(leaf);
    if (CHECK(bad != NULL)) {
        CHECK(X509_get0_pubkey(bad) == NULL);
        CHECK_EQ_INT(cs_seal_open(&got, sealed, len, bad, &sk, "seal.test",
                                  "0a1b", &err), APR_EINVAL);
        CHECK(got == NULL);
        EVP_PKEY_free(got);
        X509_free(bad);
    }
}

static void test_bundle(void)
{
    csy_bundle_t *b = NULL;
    const char *serial = install("load.test", 0);
    apr_array_header_t *none = apr_array_make(pool, 1, sizeof(void *));
    char err[256];

    UNIT_CASE("csy_bundle_load");
    CHECK(serial != NULL);
    CHECK_EQ_INT(csy_bundle_load(&b, base, "load.test", wrap_certs,
                                 wrap_keys, err, sizeof(err)), APR_SUCCESS);
    if (CHECK(b != NULL)) {
        CHECK_STR(b->serial, serial);
        CHECK_STR(b->name, "load.test");
        CHECK_EQ_INT(X509_check_private_key(b->leaf, b->key), 1);
        CHECK_EQ_INT(sk_X509_num(b->chain), 1);
        CHECK_EQ_INT(X509_cmp(sk_X509_value(b->chain, 0), ca.cert), 0);
        csy_bundle_release(b);
    }
    CHECK(APR_STATUS_IS_NOTFOUND(csy_bundle_load(&b, base, "nope.test",
                                                 wrap_certs, wrap_keys, err,
                                                 sizeof(err))));
    CHECK(b == NULL);
    /* No wrapping key that opens it. */
    CHECK(csy_bundle_load(&b, base, "load.test", none, none, err,
                          sizeof(err)) != APR_SUCCESS);
    CHECK(b == NULL);
    CHECK(strstr(err, "load.test") != NULL);
    /* An envelope that does not open. */
    CHECK(install("broken.test", 1) != NULL);
    CHECK(csy_bundle_load(&b, base, "broken.test", wrap_certs, wrap_keys,
                          err, sizeof(err)) != APR_SUCCESS);
    CHECK(b == NULL && err[0] != '\0');
}

/* The 421 rule of the dynamic catch-all: which Host names a certificate
 * covers. */
static void test_cert_covers(void)
{
    csy_bundle_t *b = NULL, *w = NULL;
    char err[256];

    UNIT_CASE("csy_cert_covers");
    CHECK(install("covers.test", 0) != NULL);
    CHECK(install("*.wild.test", 0) != NULL);
    CHECK_EQ_INT(csy_bundle_load(&b, base, "covers.test", wrap_certs,
                                 wrap_keys, err, sizeof(err)), APR_SUCCESS);
    CHECK_EQ_INT(csy_bundle_load(&w, base, "*.wild.test", wrap_certs,
                                 wrap_keys, err, sizeof(err)), APR_SUCCESS);
    if (!CHECK(b != NULL && w != NULL)) {
        return;
    }
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "covers.test"), 1);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "COVERS.test"), 1);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "other.test"), 0);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "www.covers.test"), 0);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "overs.test"), 0);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, "127.0.0.1"), 0);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, ""), 0);
    CHECK_EQ_INT(csy_cert_covers(b->leaf, NULL), 0);
    CHECK_EQ_INT(csy_cert_covers(NULL, "covers.test"), 0);
    /* A wildcard: one label, not the parent itself, not two labels. */
    CHECK_EQ_INT(csy_cert_covers(w->leaf, "a.wild.test"), 1);
    CHECK_EQ_INT(csy_cert_covers(w->leaf, "wild.test"), 0);
    CHECK_EQ_INT(csy_cert_covers(w->leaf, "a.b.wild.test"), 0);
    CHECK_EQ_INT(csy_cert_covers(w->leaf, "covers.test"), 0);
    csy_bundle_release(b);
    csy_bundle_release(w);
}

/* Loads name: ok, the key matches the leaf, and it came from key.cms
 * (envelope 1) or from key.seal (0). */
static void load_checked(const char *name, int envelope)
{
    csy_bundle_t *b = NULL;
    char err[256];

    CHECK_EQ_INT(csy_bundle_load(&b, base, name, wrap_certs, wrap_keys, err,
                                 sizeof(err)), 0);
    CHECK(b && X509_check_private_key(b->leaf, b->key) == 1);
    CHECK(b && b->from_envelope == envelope);
    csy_bundle_release(b);
}

/* Overwrites byte `at` of a file (a damaged copy, same size). */
static int damage(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    int ch, ok;

    if (!fp) {
        return 0;
    }
    ok = fseek(fp, at, SEEK_SET) == 0 && (ch = fgetc(fp)) != EOF
         && fseek(fp, at, SEEK_SET) == 0 && fputc(ch ^ 0x5a, fp) != EOF;
    return fclose(fp) == 0 && ok;
}

/* A bundle is read through key.seal when it opens, else key.cms. */
static void test_bundle_seal(void)
{
    const char *serial = install("sealed.test", 0), *other;
    apr_array_header_t *none = apr_array_make(pool, 1, sizeof(void *));
    csy_bundle_t *b = NULL;
    char err[256];

    UNIT_CASE("csy_bundle_load: key.seal, then key.cms");
    if (!CHECK(serial != NULL)) {
        return;
    }
    /* both there: key.seal is used */
    load_checked("sealed.test", 0);
    /* without key.cms: only key.seal can have provided the key */
    CHECK_EQ_INT(rename(version_file("sealed.test", serial, "key.cms"),
                        version_file("sealed.test", serial, "cms.away")), 0);
    load_checked("sealed.test", 0);
    /* without the wrapping key neither opens */
    CHECK(csy_bundle_load(&b, base, "sealed.test", none, none, err,
                          sizeof(err)) != APR_SUCCESS);
    /* a damaged key.seal (a byte of its ciphertext) and no key.cms: an
     * error, no key */
    CHECK(damage(version_file("sealed.test", serial, "key.seal"), 40));
    CHECK(csy_bundle_load(&b, base, "sealed.test", wrap_certs, wrap_keys,
                          err, sizeof(err)) != APR_SUCCESS);
    CHECK(b == NULL);
    /* the damaged key.seal and key.cms: key.cms is used */
    CHECK_EQ_INT(rename(version_file("sealed.test", serial, "cms.away"),
                        version_file("sealed.test", serial, "key.cms")), 0);
    load_checked("sealed.test", 1);
    /* key.cms alone (a store written before key.seal existed) */
    CHECK_EQ_INT(unlink(version_file("sealed.test", serial, "key.seal")), 0);
    load_checked("sealed.test", 1);
    /* a key.seal of another version: key.cms is used, and without key.cms
     * nothing opens */
    serial = install("sealed2.test", 0);
    other = install("sealed3.test", 0);
    if (CHECK(serial != NULL && other != NULL)) {
        CHECK_EQ_INT(rename(version_file("sealed3.test", other, "key.seal"),
                            version_file("sealed2.test", serial,
                                         "key.seal")), 0);
        load_checked("sealed2.test", 1);
        unlink(version_file("sealed2.test", serial, "key.cms"));
        CHECK(csy_bundle_load(&b, base, "sealed2.test", wrap_certs,
                              wrap_keys, err, sizeof(err)) != APR_SUCCESS);
    }
}

static csy_bundle_t *get(csy_cache_t *c, const char *name, apr_status_t *rv,
                         char *err)
{
    csy_bundle_t *b = NULL;

    *rv = csy_cache_lookup(&b, c, name, err, 256);
    return b;
}

/* c serves name's version serial. */
static void serves(csy_cache_t *c, const char *name, const char *serial)
{
    apr_status_t rv;
    char err[256];
    csy_bundle_t *b = get(c, name, &rv, err);

    CHECK(b && !strcmp(b->serial, serial));
    csy_bundle_release(b);
}

static void test_cache(void)
{
    csy_shared_t *sh = calloc(1, csy_shared_size(CSY_GEN_SLOTS_MIN));
    csy_cache_t *c;
    csy_cache_info_t info;
    csy_bundle_t *b, *held;
    const char *s1, *s2, *w;
    char err[256], serial[CSY_SERIAL_SIZE];
    apr_status_t rv;

    csy_shared_init(sh, CSY_GEN_SLOTS_MIN);
    UNIT_CASE("cache: hit, renewal, revalidation");
    CHECK_EQ_INT(csy_cache_create(&c, pool, 3, sh, base, wrap_certs,
                                  wrap_keys), APR_SUCCESS);
    s1 = install("a.test", 0);
    b = get(c, "a.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->serial, s1));
    csy_bundle_release(b);
    CHECK_EQ_INT((int)sh->misses, 1);
    b = get(c, "a.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->serial, s1));
    CHECK_EQ_INT((int)sh->hits, 1);
    held = b;                   /* a handshake still using it */

    /* Renewed in the store: served only after the daemon's bump. */
    s2 = install("a.test", 0);
    CHECK(s2 && strcmp(s1, s2));
    serves(c, "a.test", s1);
    csy_gen_bump(sh, "a.test");
    serves(c, "a.test", s2);
    CHECK_EQ_INT((int)sh->misses, 2);
    /* The replaced bundle is still whole for its holder. */
    CHECK_STR(held->serial, s1);
    CHECK_EQ_INT(X509_check_private_key(held->leaf, held->key), 1);
    csy_bundle_release(held);
    /* A bump without a change (slot shared, say): one readlink. */
    csy_gen_bump(sh, "a.test");
    serves(c, "a.test", s2);
    CHECK_EQ_INT((int)sh->revalidated, 1);
    CHECK_EQ_INT((int)sh->misses, 2);
    CHECK(csy_cache_serial(c, "a.test", serial));
    CHECK_STR(serial, s2);

    UNIT_CASE("cache: wildcard, unknown");
    w = install("*.wild.test", 0);
    b = get(c, "x.wild.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->serial, w)
          && !strcmp(b->name, "*.wild.test"));
    CHECK(err[0] == '\0');                  /* nothing to log */
    csy_bundle_release(b);
    b = get(c, "a.b.wild.test", &rv, err);   /* one label only */
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    b = get(c, "wild.test", &rv, err);
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    CHECK(err[0] == '\0');
    CHECK_EQ_INT((int)sh->unknown, 2);
    /* A new daemon bumps every slot: cached entries are checked again
     * (one readlink each), not reloaded. */
    csy_gen_bump_all(sh);
    serves(c, "x.wild.test", w);
    CHECK_EQ_INT((int)sh->revalidated, 2);

    UNIT_CASE("cache: a bad new version keeps the old one serving");
    CHECK(install("a.test", 1) != NULL);
    csy_gen_bump(sh, "a.test");
    b = get(c, "a.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->serial, s2));
    CHECK(err[0] != '\0');
    CHECK_EQ_INT((int)sh->errors, 1);
    csy_bundle_release(b);
    b = get(c, "a.test", &rv, err);         /* not retried per handshake */
    CHECK(b && err[0] == '\0');
    csy_bundle_release(b);
    CHECK_EQ_INT((int)sh->errors, 1);

    UNIT_CASE("cache: deletion");
    remove_domain("a.test");
    b = get(c, "a.test", &rv, err);         /* no bump yet: still cached */
    CHECK(b != NULL);
    csy_bundle_release(b);
    csy_gen_bump(sh, "a.test");
    b = get(c, "a.test", &rv, err);
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    CHECK(!csy_cache_serial(c, "a.test", serial));

    UNIT_CASE("cache: eviction");
    CHECK(install("e1.test", 0) && install("e2.test", 0)
          && install("e3.test", 0) && install("e4.test", 0));
    b = get(c, "e1.test", &rv, err);
    held = get(c, "e2.test", &rv, err);
    /* One CA: its certificate is parsed once and shared. */
    CHECK(b && held && sk_X509_num(b->chain) == 1
          && sk_X509_value(b->chain, 0) == sk_X509_value(held->chain, 0));
    CHECK_EQ_INT(X509_cmp(sk_X509_value(held->chain, 0), ca.cert), 0);
    csy_bundle_release(held);
    csy_bundle_release(b);
    b = get(c, "e3.test", &rv, err);
    csy_bundle_release(b);
    b = get(c, "e1.test", &rv, err);        /* e1 is now the most recent */
    csy_bundle_release(b);
    b = get(c, "e4.test", &rv, err);        /* evicts the LRU: the wildcard */
    csy_bundle_release(b);
    csy_cache_info(c, &info);
    CHECK_EQ_INT((int)info.entries, 3);
    CHECK_EQ_INT((int)info.capacity, 3);
    CHECK(csy_cache_serial(c, "e1.test", serial));
    CHECK(!csy_cache_serial(c, "*.wild.test", serial));
    CHECK(sh->evictions >= 1);
    CHECK(sh->misses > 0);
    CHECK_EQ_INT(sh->envelopes, 0);     /* every key from key.seal */
    free(sh);
}

/* Many threads look names up in a cache smaller than their working set
 * while the main thread renews domains and bumps their slots. */
#define T_THREADS 6
#define T_NAMES 12
#define T_LOOKUPS 1500

typedef struct {
    csy_cache_t *c;
    int failures;
    int mismatches;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char name[32], err[256];
    unsigned seed = (unsigned)(uintptr_t)arg;
    csy_bundle_t *b;
    int i;

    for (i = 0; i < T_LOOKUPS; i++) {
        snprintf(name, sizeof(name), "c%d.test", rand_r(&seed) % T_NAMES);
        if (csy_cache_lookup(&b, w->c, name, err, sizeof(err))
            != APR_SUCCESS) {
            w->failures++;
            continue;
        }
        if (strcmp(b->name, name)
            || X509_check_private_key(b->leaf, b->key) != 1) {
            w->mismatches++;
        }
        csy_bundle_release(b);
    }
    return NULL;
}

/*
 * False change notices (issue 18): a bump reaches every name of its slot.
 * Over the 1,000,000 names bench/mkstore makes, the names a bump reaches
 * besides its own, on average: sum over slots of n(n - 1), divided by N.
 * 65,536 slots for any store (before): about 15; sized from the manifest
 * (csy_gen_slots_for): at most about 1.
 */
static double false_notices(apr_uint32_t slots, long n)
{
    csy_shared_t *sh = calloc(1, csy_shared_size(slots));
    apr_uint32_t *count = calloc(slots, sizeof(*count));
    char name[64];
    double sum = 0;
    long i;

    csy_shared_init(sh, slots);
    for (i = 1; i <= n; i++) {
        snprintf(name, sizeof(name), "d%ld.scale.test", i);
        count[csy_gen_slot(sh, name)]++;
    }
    for (i = 0; i < (long)slots; i++) {
        sum += (double)count[i] * (count[i] ? count[i] - 1 : 0);
    }
    free(count);
    free(sh);
    return sum / (double)n;
}

static void test_gen_slots(void)
{
    apr_uint64_t bytes = 0;
    apr_uint32_t slots;
    double before, after;
    char name[64];
    long i, n = 1000000;

    UNIT_CASE("generation slots: sized from the manifest");
    CHECK_EQ_INT((int)csy_gen_slots_for(0), CSY_GEN_SLOTS_MIN);
    CHECK_EQ_INT((int)csy_gen_slots_for(1000), CSY_GEN_SLOTS_MIN);
    CHECK(csy_gen_slots_for((apr_uint64_t)1 << 40) == CSY_GEN_SLOTS_MAX);
    /* The manifest mod_certsync writes for n names:
     * "NAME live/NAME/current\n" a line. */
    bytes = sizeof("# certsync manifest v2\n") - 1;
    for (i = 1; i <= n; i++) {
        bytes += 2 * (apr_uint64_t)snprintf(name, sizeof(name),
                                            "d%ld.scale.test", i) + 15;
    }
    slots = csy_gen_slots_for(bytes);
    CHECK(slots >= (apr_uint32_t)n && (slots & (slots - 1)) == 0);

    UNIT_CASE("generation slots: false notices per bump at 1,000,000");
    before = false_notices(CSY_GEN_SLOTS_MIN, n);
    after = false_notices(slots, n);
    printf("# false change notices per bump, 1,000,000 domains: %.2f with "
           "%u slots, %.2f with %u (manifest %llu bytes)\n", before,
           (unsigned)CSY_GEN_SLOTS_MIN, after, (unsigned)slots,
           (unsigned long long)bytes);
    CHECK(before > 10);
    CHECK(after <= 1.0);
}

static void test_threads(void)
{
    csy_shared_t *sh = calloc(1, csy_shared_size(CSY_GEN_SLOTS_MIN));
    worker_t w[T_THREADS];
    pthread_t t[T_THREADS];
    csy_cache_t *c;
    char name[32];
    int i, renewals = 0, failures = 0, mismatches = 0;

    csy_shared_init(sh, CSY_GEN_SLOTS_MIN);
    UNIT_CASE("cache: threads, eviction and renewals at once");
    for (i = 0; i < T_NAMES; i++) {
        snprintf(name, sizeof(name), "c%d.test", i);
        CHECK(install(name, 0) != NULL);
    }
    CHECK_EQ_INT(csy_cache_create(&c, pool, 5, sh, base, wrap_certs,
                                  wrap_keys), APR_SUCCESS);
    for (i = 0; i < T_THREADS; i++) {
        w[i].c = c;
        w[i].failures = w[i].mismatches = 0;
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "c%d.test", i % T_NAMES);
        renewals += install(name, 0) != NULL;
        csy_gen_bump(sh, name);
        /* Old versions go, as the daemon's prune does. */
        csy_store_prune(store, pool, name);
    }
    for (i = 0; i < T_THREADS; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
        mismatches += w[i].mismatches;
    }
    CHECK_EQ_INT(renewals, 40);
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(mismatches, 0);
    CHECK(sh->evictions > 0);
    CHECK_EQ_INT((int)(sh->hits + sh->misses + sh->revalidated),
                 T_THREADS * T_LOOKUPS);
    printf("threads: %llu hits, %llu misses, %llu revalidated, "
           "%llu evictions\n", (unsigned long long)sh->hits,
           (unsigned long long)sh->misses,
           (unsigned long long)sh->revalidated,
           (unsigned long long)sh->evictions);
    free(sh);
}

/* ------------------------------------------------------------------ */
/* Names the store does not have                                       */
/* ------------------------------------------------------------------ */

#define U_LOOKUPS 20000

/* CPU time (user and system) of this process: what a handshake would
 * pay, without the waits for the CPU that a loaded machine adds. */
static double cpu_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double lookup_us(csy_cache_t *c, int distinct)
{
    double t0 = cpu_us();
    csy_bundle_t *b;
    apr_status_t rv;
    char name[64], err[256];
    int i, ok = 1;

    for (i = 0; i < U_LOOKUPS; i++) {
        snprintf(name, sizeof(name), "u%d.%s.unknown.test",
                 distinct ? i : 7, distinct ? "r" : "s");
        b = get(c, name, &rv, err);
        ok &= b == NULL && APR_STATUS_IS_NOTFOUND(rv);
    }
    CHECK(ok);
    return (cpu_us() - t0) / U_LOOKUPS;
}

static void test_unknown(void)
{
    csy_shared_t *sh = calloc(1, csy_shared_size(CSY_GEN_SLOTS_MIN));
    csy_cache_t *c;
    csy_bundle_t *b;
    apr_status_t rv;
    char err[256];
    double random_us, same_us;

    csy_shared_init(sh, CSY_GEN_SLOTS_MIN);
    UNIT_CASE("negative cache: an unknown name, asked again");
    CHECK_EQ_INT(csy_cache_create(&c, pool, 4, sh, base, wrap_certs,
                                  wrap_keys), APR_SUCCESS);
    b = get(c, "late.neg.test", &rv, err);
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    CHECK_EQ_INT((int)sh->unknown_cached, 0);
    b = get(c, "late.neg.test", &rv, err);
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    /* The name and its wildcard parent, both remembered. */
    CHECK_EQ_INT((int)sh->unknown_cached, 2);

    UNIT_CASE("negative cache: a name added later is served at once");
    CHECK(install("late.neg.test", 0) != NULL);
    csy_gen_bump(sh, "late.neg.test");      /* as the daemon does */
    b = get(c, "late.neg.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->name, "late.neg.test"));
    csy_bundle_release(b);

    UNIT_CASE("negative cache: a wildcard added later");
    b = get(c, "x.wneg.test", &rv, err);
    CHECK(b == NULL && APR_STATUS_IS_NOTFOUND(rv));
    CHECK(install("*.wneg.test", 0) != NULL);
    csy_gen_bump(sh, "*.wneg.test");
    b = get(c, "x.wneg.test", &rv, err);
    CHECK(rv == APR_SUCCESS && b && !strcmp(b->name, "*.wneg.test"));
    csy_bundle_release(b);

    UNIT_CASE("negative cache: what an unknown name costs");
    random_us = lookup_us(c, 1);
    same_us = lookup_us(c, 0);
    printf("unknown names: %.2f us of CPU a lookup for new random names, "
           "%.2f us for one name asked again\n", random_us, same_us);
    /* No readlink at all for a name seen before. */
    CHECK(same_us < 2.0);
    free(sh);
}

/* ------------------------------------------------------------------ */
/* Bytes per cached domain                                             */
/* ------------------------------------------------------------------ */

#define M_DOMAINS 200

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* What a cache entry costs the heap, with its bundle as a handshake left
 * it (SSL_use_cert_and_key checks the key against the certificate, and
 * OpenSSL 3.0 keeps what that comparison exported). */
static void test_memory(void)
{
    csy_shared_t *sh = calloc(1, csy_shared_size(CSY_GEN_SLOTS_MIN));
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    csy_cache_t *c;
    csy_bundle_t *b;
    apr_pool_t *p;
    apr_status_t rv;
    char name[64], err[256];
    size_t before, loaded, used;
    int i, ok = 1;

    UNIT_CASE("cache: bytes per cached domain");
    csy_shared_init(sh, CSY_GEN_SLOTS_MIN);
    for (i = 0; i < M_DOMAINS; i++) {
        snprintf(name, sizeof(name), "m%d.mem.test", i);
        ok &= install(name, 0) != NULL;
    }
    CHECK(ok);
    apr_pool_create(&p, pool);
    CHECK_EQ_INT(csy_cache_create(&c, p, M_DOMAINS, sh, base, wrap_certs,
                                  wrap_keys), APR_SUCCESS);
    /* One name first: the intermediates, parsed once per process. */
    b = get(c, "m0.mem.test", &rv, err);
    csy_bundle_release(b);
    before = heap_used();
    for (i = 1; i < M_DOMAINS; i++) {
        snprintf(name, sizeof(name), "m%d.mem.test", i);
        b = get(c, name, &rv, err);
        ok &= rv == APR_SUCCESS;
        csy_bundle_release(b);
    }
    loaded = heap_used();
    for (i = 1; i < M_DOMAINS; i++) {
        SSL *ssl = SSL_new(ctx);

        snprintf(name, sizeof(name), "m%d.mem.test", i);
        b = get(c, name, &rv, err);
        ok &= rv == APR_SUCCESS && ssl && csy_bundle_use(ssl, b);
        csy_bundle_release(b);
        SSL_free(ssl);
    }
    used = heap_used();
    CHECK(ok);
    CHECK_EQ_INT((int)sh->misses, M_DOMAINS);
    printf("bytes per cached domain: %zu loaded, %zu after a handshake\n",
           (loaded - before) / (M_DOMAINS - 1),
           (used - before) / (M_DOMAINS - 1));
    if (loaded > before) {
        CHECK((used - before) / (M_DOMAINS - 1) <= CSY_CACHE_ENTRY_BYTES);
    }
    apr_pool_destroy(p);
    SSL_CTX_free(ctx);
    free(sh);
}

/* ------------------------------------------------------------------ */
/* A miss, step by step                                                */
/* ------------------------------------------------------------------ */

#define S_ROUNDS 300

/* CPU time of each step csy_dyn.c takes on a miss, the same calls in the
 * same order, S_ROUNDS times on the domains of test_memory (informative:
 * printed, not checked, apart from every step succeeding). */
static void test_miss_steps(void)
{
    apr_array_header_t *seal_keys = cs_seal_keys_derive(pool, wrap_keys);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    double t[8] = { 0 }, t0;
    csy_cache_t *c;
    apr_pool_t *p;
    int i, ok = 1;

    UNIT_CASE("a miss, step by step");
    apr_pool_create(&p, pool);
    CHECK_EQ_INT(csy_cache_create(&c, pool, 1, NULL, base, wrap_certs,
                                  wrap_keys), APR_SUCCESS);
    for (i = 0; i < S_ROUNDS; i++) {
        char name[64], serial[CSY_SERIAL_SIZE], err[256], *pem, *sealed;
        const char *why, *b64, *e;
        apr_size_t len, seal_len;
        unsigned char *der;
        const unsigned char *q;
        EVP_ENCODE_CTX *ec;
        EVP_PKEY *key = NULL;
        X509 *leaf;
        SSL *ssl;
        csy_bundle_t *b;
        apr_status_t rv;
        ssize_t n;
        int dn = 0, dm = 0;

        snprintf(name, sizeof(name), "m%d.mem.test", i % M_DOMAINS);
        t0 = cpu_us();
        n = readlink(cs_layout_path(p, base, name, CS_LAYOUT_CURRENT, NULL),
                     serial, sizeof(serial) - 1);
        ok &= n > 0;
        serial[n > 0 ? n : 0] = '\0';
        t[0] += cpu_us() - t0;

        t0 = cpu_us();
        ok &= cs_file_read(&pem, &len, p, cs_layout_path(p, base, name,
                           serial, CS_LAYOUT_CHAIN), 1 << 20) == APR_SUCCESS;
        t[1] += cpu_us() - t0;

        t0 = cpu_us();
        b64 = strstr(pem, "-----BEGIN CERTIFICATE-----") + 27;
        e = strstr(b64, "-----END CERTIFICATE-----");
        der = malloc((size_t)(e - b64));
        ec = EVP_ENCODE_CTX_new();
        EVP_DecodeInit(ec);
        EVP_DecodeUpdate(ec, der, &dn, (const unsigned char *)b64,
                         (int)(e - b64));
        EVP_DecodeFinal(ec, der + dn, &dm);
        EVP_ENCODE_CTX_free(ec);
        t[2] += cpu_us() - t0;

        t0 = cpu_us();
        q = der;
        leaf = d2i_X509(NULL, &q, dn + dm);
        ok &= leaf != NULL;
        t[3] += cpu_us() - t0;
        free(der);

        t0 = cpu_us();
        ok &= cs_file_read(&sealed, &seal_len, p, cs_layout_path(p, base,
                           name, serial, CS_LAYOUT_SEAL), 1 << 16)
              == APR_SUCCESS;
        t[4] += cpu_us() - t0;

        t0 = cpu_us();
        ok &= cs_seal_open(&key, (unsigned char *)sealed, seal_len, leaf,
                           &APR_ARRAY_IDX(seal_keys, 0, cs_seal_key_t), name,
                           serial, &why) == APR_SUCCESS;
        t[5] += cpu_us() - t0;

        ssl = SSL_new(ctx);
        t0 = cpu_us();
        ok &= ssl && SSL_use_cert_and_key(ssl, leaf, key, NULL, 1) == 1;
        t[6] += cpu_us() - t0;
        SSL_free(ssl);
        X509_free(leaf);
        EVP_PKEY_free(key);

        /* The whole miss through the cache (capacity 1: always a miss). */
        t0 = cpu_us();
        rv = csy_cache_lookup(&b, c, name, err, sizeof(err));
        ok &= rv == APR_SUCCESS;
        csy_bundle_release(b);
        t[7] += cpu_us() - t0;
        apr_pool_clear(p);
    }
    CHECK(ok);
    printf("a miss, CPU us per step (%d rounds): readlink current %.1f, "
           "read fullchain.pem %.1f, base64 of the leaf %.1f, d2i_X509 "
           "%.1f, read key.seal %.1f, cs_seal_open (AES-GCM, fromdata, "
           "check) %.1f, SSL_use_cert_and_key (every handshake) %.1f; "
           "a whole miss through the cache %.1f\n", S_ROUNDS,
           t[0] / S_ROUNDS, t[1] / S_ROUNDS, t[2] / S_ROUNDS,
           t[3] / S_ROUNDS, t[4] / S_ROUNDS, t[5] / S_ROUNDS,
           t[6] / S_ROUNDS, t[7] / S_ROUNDS);
    apr_pool_destroy(p);
    SSL_CTX_free(ctx);
}

int main(void)
{
    const char *err;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    snprintf(base, sizeof(base), "/tmp/test_csy_dyn.%d", (int)getpid());
    if (csy_store_open(&store, pool, base) != APR_SUCCESS) {
        printf("cannot open a store in %s\n", base);
        return 1;
    }
    if (testkit_ca_and_wrap(pool, &ca, &wrap_certs, &wrap_keys) != 0) {
        return 1;
    }
    (void)err;

    test_sni_name();
    test_seal();
    test_bundle();
    test_cert_covers();
    test_bundle_seal();
    test_cache();
    test_gen_slots();
    test_threads();
    test_unknown();
    test_memory();
    test_miss_steps();

    testkit_rm_tree(base);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
