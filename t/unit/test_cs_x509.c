/*
 * test_cs_x509.c: unit tests of cs_x509.c: the local CA issuer, the facts
 * of a certificate and the bundle checks, every failure one by one.
 *
 * The CAs are made here at run time; nothing is committed.
 */
/* mkdtemp() */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_crypto.h"
#include "cs_x509.h"
#include "testkit.h"
#include "unit.h"

#define DAY     apr_time_from_sec(86400)

static apr_pool_t *pool;
static const char *tmpdir;

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);

    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
}

/*
 * A self-signed certificate for cn.  A CA unless leaf; skid, if given,
 * is the subject key identifier to claim (hex) instead of the real one.
 */
static cs_ca_t *make_ca(const char *cn, cs_key_type_t kt, int leaf,
                        const char *skid)
{
    cs_ca_t *ca = apr_pcalloc(pool, sizeof(*ca));
    X509V3_CTX ctx;
    X509 *x;

    if (cs_key_generate(&ca->key, pool, kt) != APR_SUCCESS) {
        return NULL;
    }
    x = testkit_cert(pool, ca->key, cn, 4242, -3600, 365 * 86400L);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (leaf) {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    }
    else {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    add_ext(x, &ctx, NID_subject_key_identifier, skid ? skid : "hash");
    X509_sign(x, ca->key, EVP_sha256());
    ca->cert = x;
    return ca;
}

/* A CA named cn, with a new key of type kt, that claims of's subject key
 * identifier: an impostor for the checks that match issuers. */
static cs_ca_t *impostor(const char *cn, cs_key_type_t kt, const cs_ca_t *of)
{
    char *skid = i2s_ASN1_OCTET_STRING(NULL,
                                       X509_get0_subject_key_id(of->cert));
    cs_ca_t *fake = make_ca(cn, kt, 0, skid);

    OPENSSL_free(skid);
    return fake;
}

static apr_array_header_t *chain_of(X509 *a, X509 *b, X509 *c)
{
    apr_array_header_t *r = apr_array_make(pool, 3, sizeof(X509 *));

    if (a) {
        APR_ARRAY_PUSH(r, X509 *) = a;
    }
    if (b) {
        APR_ARRAY_PUSH(r, X509 *) = b;
    }
    if (c) {
        APR_ARRAY_PUSH(r, X509 *) = c;
    }
    return r;
}

#define LEAF(ch)    APR_ARRAY_IDX((ch), 0, X509 *)

/* Verification must fail with a message containing what. */
static int fails(const apr_array_header_t *chain, EVP_PKEY *key,
                 const char *name, apr_time_t now, const char *what)
{
    const char *err = NULL;
    apr_status_t rv = cs_bundle_verify(chain, key, name, now, &err);

    if (rv == APR_SUCCESS || err == NULL || !strstr(err, what)) {
        printf("# %s: rv %d, err %s\n", name ? name : "(null)", rv,
               err ? err : "NULL");
        return 0;
    }
    return ERR_peek_error() == 0;
}

static apr_status_t pkey_free(void *data)
{
    EVP_PKEY_free(data);
    return APR_SUCCESS;
}

/* An EC key with pub's public point and priv's private scalar (P-256
 * both), as a decoder builds it from a PKCS#8 that carries both. */
static EVP_PKEY *mixed_ec(EVP_PKEY *pub, EVP_PKEY *priv)
{
    unsigned char point[65];
    size_t plen = 0;
    BIGNUM *d = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;

    if (EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, point,
                                        sizeof(point), &plen)
        && EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_PRIV_KEY, &d)
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           "prime256v1", 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, plen)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d)
        && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL
        && EVP_PKEY_fromdata_init(ctx) == 1) {
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params);
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    EVP_PKEY_CTX_free(ctx);
    if (key) {
        apr_pool_cleanup_register(pool, key, pkey_free,
                                  apr_pool_cleanup_null);
    }
    return key;
}

static int passes(const apr_array_header_t *chain, EVP_PKEY *key,
                  const char *name, apr_time_t now)
{
    const char *err = NULL;

    if (cs_bundle_verify(chain, key, name, now, &err) != APR_SUCCESS) {
        printf("# %s: %s\n", name, err);
        return 0;
    }
    return err == NULL;
}

static int write_pem(const char *file, X509 *cert, EVP_PKEY *key)
{
    const char *path = apr_pstrcat(pool, tmpdir, "/", file, NULL);
    FILE *f = fopen(path, "w");
    const char *pem;
    apr_size_t len;

    if (f == NULL) {
        return 0;
    }
    if (cert) {
        pem = cs_pem_write_certs(pool, chain_of(cert, NULL, NULL));
        len = strlen(pem);
    }
    else {
        pem = cs_pem_write_key(pool, key, &len);
    }
    fwrite(pem, 1, len, f);
    return fclose(f) == 0;
}

static const char *tmp(const char *file)
{
    return apr_pstrcat(pool, tmpdir, "/", file, NULL);
}

/* ------------------------------------------------------------------ */

static void test_ca_load(const cs_ca_t *ca, const cs_ca_t *other)
{
    cs_ca_t *loaded;
    const char *err;
    cs_ca_t *leafy = make_ca("not a ca", CS_KEY_EC_P256, 1, NULL);

    UNIT_CASE("CA load");
    CHECK(write_pem("ca.crt", ca->cert, NULL));
    CHECK(write_pem("ca.key", NULL, ca->key));
    CHECK(write_pem("other.key", NULL, other->key));
    CHECK(write_pem("leaf.crt", leafy->cert, NULL));
    CHECK(write_pem("leaf.key", NULL, leafy->key));
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("ca.crt"), tmp("ca.key"),
                            &err), APR_SUCCESS);
    CHECK(loaded != NULL && X509_cmp(loaded->cert, ca->cert) == 0);
    CHECK(loaded != NULL && EVP_PKEY_eq(loaded->key, ca->key) == 1);

    UNIT_CASE("CA load refused");
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("ca.crt"), tmp("other.key"),
                            &err), APR_EINVAL);
    CHECK(loaded == NULL && strstr(err, "does not match") != NULL);
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("leaf.crt"), tmp("leaf.key"),
                            &err), APR_EINVAL);
    CHECK(strstr(err, "not a CA") != NULL);
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("none.crt"), tmp("ca.key"),
                            &err), APR_ENOENT);
    CHECK(strstr(err, "none.crt") != NULL);
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("ca.crt"), tmp("none.key"),
                            &err), APR_ENOENT);
    CHECK_EQ_INT(cs_ca_load(&loaded, pool, tmp("ca.key"), tmp("ca.key"),
                            &err), APR_ENOENT);
    CHECK(ERR_peek_error() == 0);
    unlink(tmp("ca.crt"));
    unlink(tmp("ca.key"));
    unlink(tmp("other.key"));
    unlink(tmp("leaf.crt"));
    unlink(tmp("leaf.key"));
}

static void check_leaf(X509 *leaf, const cs_ca_t *ca, const char *name,
                       EVP_PKEY *key, apr_interval_time_t lifetime)
{
    ASN1_OCTET_STRING *bc_ext;
    const ASN1_OCTET_STRING *akid, *skid;
    X509_NAME_ENTRY *cn;
    cs_cert_info_t info;
    apr_time_t now = apr_time_now();
    int i, rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    char buf[300];

    CHECK_EQ_INT(X509_get_version(leaf), X509_VERSION_3);
    /* basicConstraints CA:FALSE, critical */
    i = X509_get_ext_by_NID(leaf, NID_basic_constraints, -1);
    CHECK(i >= 0);
    CHECK(X509_EXTENSION_get_critical(X509_get_ext(leaf, i)));
    bc_ext = X509_EXTENSION_get_data(X509_get_ext(leaf, i));
    /* SEQUENCE {} : cA absent means FALSE */
    CHECK(ASN1_STRING_length(bc_ext) == 2);
    CHECK(!(X509_get_extension_flags(leaf) & EXFLAG_CA));
    CHECK_EQ_INT(X509_check_ca(leaf), 0);
    /* keyUsage */
    CHECK_EQ_INT(X509_get_key_usage(leaf),
                 rsa ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)
                     : KU_DIGITAL_SIGNATURE);
    CHECK_EQ_INT(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    /* key identifiers: AKID is the CA's SKID */
    skid = X509_get0_subject_key_id(leaf);
    akid = X509_get0_authority_key_id(leaf);
    CHECK(skid != NULL && akid != NULL);
    CHECK(akid != NULL
          && ASN1_OCTET_STRING_cmp(akid,
                                   X509_get0_subject_key_id(ca->cert))
             == 0);
    /* subject CN, issuer, key, signature */
    i = X509_NAME_get_index_by_NID(X509_get_subject_name(leaf),
                                   NID_commonName, -1);
    if (strlen(name) <= 64) {
        CHECK(i >= 0);
        cn = X509_NAME_get_entry(X509_get_subject_name(leaf), i);
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf),
                                  NID_commonName, buf, sizeof(buf));
        CHECK_STR(buf, name);
        (void)cn;
    }
    else {
        CHECK(i < 0);
        i = X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1);
        CHECK(i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(leaf, i)));
    }
    CHECK_EQ_INT(X509_NAME_cmp(X509_get_issuer_name(leaf),
                               X509_get_subject_name(ca->cert)), 0);
    CHECK_EQ_INT(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
    CHECK_EQ_INT(X509_verify(leaf, X509_get0_pubkey(ca->cert)), 1);
    CHECK_EQ_INT(X509_get_signature_nid(leaf),
                 EVP_PKEY_get_base_id(ca->key) == EVP_PKEY_RSA
                 ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA256);
    /* serial: 128 random bits, positive, lower-case hex */
    cs_cert_info(&info, pool, leaf);
    CHECK(strlen(info.serial) >= 16 && strlen(info.serial) <= 32);
    CHECK(info.serial[0] != '0' && info.serial[0] != '-');
    CHECK(strspn(info.serial, "0123456789abcdef") == strlen(info.serial));
    /* validity: from a minute ago for lifetime */
    CHECK(info.not_before <= now - apr_time_from_sec(59)
          && info.not_before >= now - apr_time_from_sec(65));
    CHECK_EQ_INT(info.not_after - info.not_before,
                 lifetime + apr_time_from_sec(60));
    ERR_clear_error();
}

static void test_issue(const cs_ca_t *ca, EVP_PKEY *ec, EVP_PKEY *rsa)
{
    apr_array_header_t *chain, *c2;
    const char *err;
    const char *longname = "a-rather-long-label-to-go-past-the-sixty-four"
                           "-characters.of-a-cn.example.com";
    apr_time_t now = apr_time_now();
    cs_cert_info_t i1, i2;

    UNIT_CASE("issue ec leaf");
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "www.example.com",
                             30 * DAY, &err), APR_SUCCESS);
    CHECK_EQ_INT(chain->nelts, 2);
    CHECK(X509_cmp(APR_ARRAY_IDX(chain, 1, X509 *), ca->cert) == 0);
    check_leaf(LEAF(chain), ca, "www.example.com", ec, 30 * DAY);
    CHECK(passes(chain, ec, "www.example.com", now));
    CHECK(passes(chain, ec, "WWW.Example.COM", now));

    UNIT_CASE("issue rsa leaf");
    CHECK_EQ_INT(cs_ca_issue(&c2, pool, ca, rsa, "api.example.org",
                             45 * DAY, &err), APR_SUCCESS);
    check_leaf(LEAF(c2), ca, "api.example.org", rsa, 45 * DAY);
    CHECK(passes(c2, rsa, "api.example.org", now));
    cs_cert_info(&i1, pool, LEAF(chain));
    cs_cert_info(&i2, pool, LEAF(c2));
    CHECK(strcmp(i1.serial, i2.serial) != 0);

    UNIT_CASE("issue wildcard");
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "*.example.com", DAY,
                             &err), APR_SUCCESS);
    check_leaf(LEAF(chain), ca, "*.example.com", ec, DAY);
    CHECK(passes(chain, ec, "*.example.com", now));
    CHECK(passes(chain, ec, "*.EXAMPLE.com", now));
    CHECK(passes(chain, ec, "foo.example.com", now));
    CHECK(fails(chain, ec, "example.com", now, "not valid for the name"));
    CHECK(fails(chain, ec, "a.b.example.com", now,
                "not valid for the name"));
    CHECK(fails(chain, ec, "*.b.example.com", now,
                "not valid for the name"));
    CHECK(fails(chain, ec, "*.org", now, "not valid for the name"));

    UNIT_CASE("an exact leaf does not cover a wildcard name");
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "foo.example.com", DAY,
                             &err), APR_SUCCESS);
    CHECK(fails(chain, ec, "*.example.com", now, "not valid for the name"));

    UNIT_CASE("issue a name longer than a CN");
    CHECK(strlen(longname) > 64);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, longname, DAY, &err),
                 APR_SUCCESS);
    check_leaf(LEAF(chain), ca, longname, ec, DAY);
    CHECK(passes(chain, ec, longname, now));

    UNIT_CASE("issue refused");
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "a.com,DNS:evil.com",
                             DAY, &err), APR_EINVAL);
    CHECK(chain == NULL && err != NULL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "", DAY, &err),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, NULL, DAY, &err),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "*.", DAY, &err),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "a.*.com", DAY, &err),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, ec, "x.example.com", 0,
                             &err), APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, ca, NULL, "x.example.com", DAY,
                             &err), APR_EINVAL);
    CHECK_EQ_INT(cs_ca_issue(&chain, pool, NULL, ec, "x.example.com", DAY,
                             &err), APR_EINVAL);
}

static void test_verify_failures(const cs_ca_t *ca, const cs_ca_t *foreign,
                                 EVP_PKEY *ec, EVP_PKEY *rsa)
{
    apr_array_header_t *chain, *fchain;
    X509 *leaf, *cacert, *fake_leaf;
    const char *err;
    cs_cert_info_t info;
    apr_time_t now = apr_time_now();
    cs_ca_t *fake;

    cs_ca_issue(&chain, pool, ca, ec, "www.example.com", 30 * DAY, &err);
    leaf = LEAF(chain);
    cacert = APR_ARRAY_IDX(chain, 1, X509 *);
    cs_cert_info(&info, pool, leaf);

    UNIT_CASE("verify: a leaf alone is fine");
    CHECK(passes(chain_of(leaf, NULL, NULL), ec, "www.example.com", now));

    UNIT_CASE("verify: wrong key");
    CHECK(fails(chain, rsa, "www.example.com", now, "key does not match"));
    CHECK(fails(chain, foreign->key, "www.example.com", now,
                "key does not match"));
    CHECK(fails(chain, NULL, "www.example.com", now, "key does not match"));

    /* The leaf's public key with another key's private scalar: the public
     * halves are equal, the pair is not (found by fuzz_seal, in a PKCS#8
     * whose public key was replaced). */
    UNIT_CASE("verify: the private key belongs to another public key");
    CHECK(fails(chain, mixed_ec(ec, foreign->key), "www.example.com", now,
                "private key does not belong"));

    UNIT_CASE("verify: wrong name");
    CHECK(fails(chain, ec, "other.example.com", now,
                "not valid for the name"));
    CHECK(fails(chain, ec, "example.com", now, "not valid for the name"));
    CHECK(fails(chain, ec, "www.example.com.evil", now,
                "not valid for the name"));
    CHECK(fails(chain, ec, "", now, "no name"));
    CHECK(fails(chain, ec, NULL, now, "no name"));

    UNIT_CASE("verify: CN alone does not count");
    {
        /* make_ca's certificate has CN=not-san.example.com, no SAN */
        cs_ca_t *cn_only = make_ca("not-san.example.com", CS_KEY_EC_P256, 1,
                                   NULL);

        CHECK(fails(chain_of(cn_only->cert, NULL, NULL), cn_only->key,
                    "not-san.example.com", now, "not valid for the name"));
    }

    UNIT_CASE("verify: expired");
    CHECK(passes(chain, ec, "www.example.com",
                 info.not_after - apr_time_from_sec(1)));
    CHECK(fails(chain, ec, "www.example.com",
                info.not_after + apr_time_from_sec(1), "has expired"));
    CHECK(fails(chain, ec, "www.example.com", info.not_after + 365 * DAY,
                "has expired"));

    UNIT_CASE("verify: not yet valid");
    CHECK(passes(chain, ec, "www.example.com", info.not_before));
    CHECK(fails(chain, ec, "www.example.com",
                info.not_before - apr_time_from_sec(1), "not yet valid"));
    CHECK(fails(chain, ec, "www.example.com", 0, "not yet valid"));

    UNIT_CASE("verify: chain out of order");
    CHECK(fails(chain_of(cacert, leaf, NULL), ec, "www.example.com", now,
                "not in order"));
    CHECK(fails(chain_of(leaf, cacert, leaf), ec, "www.example.com", now,
                "not in order"));

    UNIT_CASE("verify: foreign intermediate");
    CHECK(fails(chain_of(leaf, foreign->cert, NULL), ec, "www.example.com",
                now, "not in order"));
    CHECK(fails(chain_of(leaf, cacert, foreign->cert), ec,
                "www.example.com", now, "not in order"));

    UNIT_CASE("verify: same issuer name and key id, wrong signature");
    /* RSA like the real CA: X509_check_issued also matches key types */
    fake = impostor("Unit Test CA", CS_KEY_RSA_2048, ca);
    CHECK(cs_ca_issue(&fchain, pool, fake, ec, "www.example.com", DAY,
                      &err) == APR_SUCCESS);
    fake_leaf = LEAF(fchain);
    CHECK(passes(fchain, ec, "www.example.com", now));
    CHECK(fails(chain_of(fake_leaf, cacert, NULL), ec, "www.example.com",
                now, "signature does not verify"));

    UNIT_CASE("verify: empty chain");
    CHECK(fails(chain_of(NULL, NULL, NULL), ec, "www.example.com", now,
                "chain is empty"));
    CHECK(fails(NULL, ec, "www.example.com", now, "chain is empty"));
    {
        apr_array_header_t *holey = chain_of(leaf, NULL, NULL);

        APR_ARRAY_PUSH(holey, X509 *) = NULL;
        CHECK(fails(holey, ec, "www.example.com", now, "hole"));
    }
}

/* leaf as the sync daemon reads it when it knows the issuer: bare, from
 * its PEM (cs_pem_read_certs_bare); then issuer, if any. */
static apr_array_header_t *bare_chain(X509 *leaf, X509 *issuer)
{
    const char *pem = cs_pem_write_certs(pool, chain_of(leaf, NULL, NULL));
    apr_array_header_t *certs;
    const char *err;

    if (pem == NULL
        || cs_pem_read_certs_bare(&certs, pool, pem, strlen(pem), &err)
           != APR_SUCCESS
        || certs->nelts != 1) {
        return NULL;
    }
    return chain_of(LEAF(certs), issuer, NULL);
}

static int bare_passes(const apr_array_header_t *chain, EVP_PKEY *key,
                       const char *name)
{
    const char *err = NULL;

    if (chain == NULL
        || cs_bundle_verify_bare(chain, key, name, apr_time_now(), 1, &err)
           != APR_SUCCESS) {
        printf("# %s: %s\n", name, chain ? err : "no chain");
        return 0;
    }
    return ERR_peek_error() == 0;
}

static int bare_fails(const apr_array_header_t *chain, EVP_PKEY *key,
                      const char *name, apr_time_t now, const char *what)
{
    const char *err = NULL;
    apr_status_t rv = chain ? cs_bundle_verify_bare(chain, key, name, now, 1,
                                                    &err)
                            : APR_SUCCESS;

    if (rv == APR_SUCCESS || err == NULL || !strstr(err, what)) {
        printf("# %s: rv %d, err %s\n", name, rv, err ? err : "NULL");
        return 0;
    }
    return ERR_peek_error() == 0;
}

static void test_verify_bare(const cs_ca_t *ca, const cs_ca_t *foreign,
                             EVP_PKEY *ec, EVP_PKEY *rsa)
{
    apr_array_header_t *chain, *bare, *fchain;
    cs_ca_t *fake;
    const char *err, *pem, *again;
    cs_cert_info_t info;
    X509 *cacert;

    UNIT_CASE("bare: the leaf read without its public key");
    cs_ca_issue(&chain, pool, ca, ec, "www.example.com", 30 * DAY, &err);
    cacert = APR_ARRAY_IDX(chain, 1, X509 *);
    bare = bare_chain(LEAF(chain), cacert);
    if (!CHECK(bare != NULL)) {
        return;
    }
    CHECK(X509_get0_pubkey(LEAF(bare)) == NULL);
    ERR_clear_error();
    CHECK(X509_get0_pubkey_bitstr(LEAF(bare)) != NULL);
    pem = cs_pem_write_certs(pool, chain_of(LEAF(chain), NULL, NULL));
    again = cs_pem_write_certs(pool, chain_of(LEAF(bare), NULL, NULL));
    CHECK(pem && again && strcmp(pem, again) == 0);

    UNIT_CASE("bare: signed with RSA PKCS#1 v1.5 and with ECDSA");
    CHECK(bare_passes(bare, ec, "www.example.com"));
    CHECK(cs_ca_issue(&fchain, pool, foreign, ec, "e.example.net", DAY,
                      &err) == APR_SUCCESS);
    CHECK(bare_passes(bare_chain(LEAF(fchain), foreign->cert), ec,
                      "e.example.net"));
    CHECK(bare_passes(bare_chain(LEAF(chain), NULL), ec, "www.example.com"));

    UNIT_CASE("bare: another key, or a private key of another");
    CHECK(bare_fails(bare, foreign->key, "www.example.com", apr_time_now(),
                     "key does not match"));
    CHECK(bare_fails(bare, mixed_ec(ec, foreign->key), "www.example.com",
                     apr_time_now(), "does not belong"));
    CHECK(bare_fails(bare, NULL, "www.example.com", apr_time_now(),
                     "key does not match"));
    /* Not EC: the bare path does not say; the usual one does. */
    CHECK(bare_fails(bare, rsa, "www.example.com", apr_time_now(),
                     "key does not match"));
    CHECK(cs_ca_issue(&fchain, pool, ca, rsa, "r.example.net", DAY, &err)
          == APR_SUCCESS);
    CHECK(bare_fails(bare_chain(LEAF(fchain), cacert), rsa, "r.example.net",
                     apr_time_now(), "key does not match"));
    CHECK(passes(fchain, rsa, "r.example.net", apr_time_now()));

    UNIT_CASE("bare: same issuer name and key id, another signer");
    fake = impostor("Unit Test CA", CS_KEY_RSA_2048, ca);
    CHECK(cs_ca_issue(&fchain, pool, fake, ec, "www.example.com", DAY,
                      &err) == APR_SUCCESS);
    CHECK(bare_passes(bare_chain(LEAF(fchain), fake->cert), ec,
                      "www.example.com"));
    CHECK(bare_fails(bare_chain(LEAF(fchain), cacert), ec, "www.example.com",
                     apr_time_now(), "signature does not verify"));
    fake = impostor("Foreign CA", CS_KEY_EC_P256, foreign);
    CHECK(cs_ca_issue(&fchain, pool, fake, ec, "e.example.net", DAY,
                      &err) == APR_SUCCESS);
    CHECK(bare_fails(bare_chain(LEAF(fchain), foreign->cert), ec,
                     "e.example.net", apr_time_now(),
                     "signature does not verify"));

    UNIT_CASE("bare: another issuer");
    /* The same issuer name, another key and key identifier. */
    fake = make_ca("Unit Test CA", CS_KEY_RSA_2048, 0, NULL);
    CHECK(cs_ca_issue(&fchain, pool, fake, ec, "www.example.com", DAY,
                      &err) == APR_SUCCESS);
    CHECK(bare_fails(bare_chain(LEAF(fchain), cacert), ec, "www.example.com",
                     apr_time_now(), "not in order"));
    CHECK(bare_fails(bare_chain(LEAF(chain), foreign->cert), ec,
                     "www.example.com", apr_time_now(), "not in order"));
    /* Another name claiming the issuer's key identifier. */
    fake = impostor("Renamed CA", CS_KEY_RSA_2048, ca);
    CHECK(fails(chain_of(LEAF(chain), fake->cert, NULL), ec,
                "www.example.com", apr_time_now(), "not in order"));
    CHECK(bare_fails(bare_chain(LEAF(chain), fake->cert), ec,
                     "www.example.com", apr_time_now(), "not in order"));
    CHECK(bare_fails(bare_chain(LEAF(chain), LEAF(chain)), ec,
                     "www.example.com", apr_time_now(), "not in order"));

    UNIT_CASE("bare: extensions that do not read, and the issuer's usage");
    {
        X509 *dup = X509_dup(LEAF(chain)), *noaki = X509_dup(LEAF(chain));
        X509 *signer = X509_dup(ca->cert);
        X509V3_CTX ctx;
        int at;

        /* An extension twice: OpenSSL takes the leaf's extensions for
         * unreadable, and X509_check_issued refuses it. */
        X509V3_set_ctx(&ctx, cacert, dup, NULL, NULL, 0);
        add_ext(dup, &ctx, NID_ext_key_usage, "serverAuth");
        X509_sign(dup, ca->key, EVP_sha256());
        CHECK(fails(chain_of(dup, cacert, NULL), ec, "www.example.com",
                    apr_time_now(), "not in order"));
        CHECK(bare_fails(bare_chain(dup, cacert), ec, "www.example.com",
                         apr_time_now(), "not in order"));
        /* No authority key identifier at all: fine either way. */
        at = X509_get_ext_by_NID(noaki, NID_authority_key_identifier, -1);
        X509_EXTENSION_free(X509_delete_ext(noaki, at));
        X509_sign(noaki, ca->key, EVP_sha256());
        CHECK(at >= 0 && passes(chain_of(noaki, cacert, NULL), ec,
                                "www.example.com", apr_time_now()));
        CHECK(bare_passes(bare_chain(noaki, cacert), ec, "www.example.com"));
        /* The CA's key and name, with a key usage without keyCertSign. */
        at = X509_get_ext_by_NID(signer, NID_key_usage, -1);
        X509_EXTENSION_free(X509_delete_ext(signer, at));
        X509V3_set_ctx(&ctx, signer, signer, NULL, NULL, 0);
        add_ext(signer, &ctx, NID_key_usage, "critical,digitalSignature");
        X509_sign(signer, ca->key, EVP_sha256());
        CHECK(at >= 0 && fails(chain_of(LEAF(chain), signer, NULL), ec,
                               "www.example.com", apr_time_now(),
                               "not in order"));
        CHECK(bare_fails(bare_chain(LEAF(chain), signer), ec,
                         "www.example.com", apr_time_now(), "not in order"));
        X509_free(signer);
        X509_free(noaki);
        X509_free(dup);
        ERR_clear_error();
    }

    UNIT_CASE("bare: names and times as the usual checks");
    cs_cert_info(&info, pool, LEAF(chain));
    CHECK(bare_fails(bare, ec, "other.example.com", apr_time_now(),
                     "not valid for the name"));
    CHECK(bare_fails(bare, ec, "www.example.com",
                     info.not_after + apr_time_from_sec(1), "has expired"));
    CHECK(bare_fails(bare, ec, "www.example.com",
                     info.not_before - apr_time_from_sec(1),
                     "not yet valid"));

    UNIT_CASE("bare: a block that is no certificate");
    {
        static const char junk[] = "-----BEGIN CERTIFICATE-----\n"
                                   "MIIBAAAAAAAA\n"
                                   "-----END CERTIFICATE-----\n";
        apr_array_header_t *certs;

        CHECK(cs_pem_read_certs_bare(&certs, pool, junk, strlen(junk), &err)
              == APR_EINVAL);
        CHECK(cs_pem_read_certs_bare(&certs, pool, "", 0, &err)
              == APR_ENOENT);
        CHECK(ERR_peek_error() == 0);
    }
}

static void test_cert_info(void)
{
    static const struct {
        const char *bytes_hex;
        const char *want;
    } vec[] = {
        { "00", "0" }, { "01", "1" }, { "0abc", "abc" }, { "00ff", "ff" },
        { "7fffffffffffffffffffffffffffffff",
          "7fffffffffffffffffffffffffffffff" },
        { "00800000000000000000000000000000ff",
          "800000000000000000000000000000ff" },
        { "10", "10" }, { "0100", "100" }
    };
    cs_cert_info_t info;
    X509 *x;
    BIGNUM *bn;
    size_t i;

    UNIT_CASE("cert info serial");
    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        x = X509_new();
        bn = NULL;
        BN_hex2bn(&bn, vec[i].bytes_hex);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        cs_cert_info(&info, pool, x);
        CHECK_STR(info.serial, vec[i].want);
        X509_free(x);
    }

    UNIT_CASE("cert info times");
    x = X509_new();
    ASN1_TIME_set_string(X509_getm_notBefore(x), "20260102030405Z");
    /* GeneralizedTime past 2049 */
    ASN1_TIME_set_string(X509_getm_notAfter(x), "20510101000000Z");
    cs_cert_info(&info, pool, x);
    CHECK_EQ_INT(info.not_before, apr_time_from_sec(1767323045));
    CHECK_EQ_INT(info.not_after, apr_time_from_sec(2556144000LL));
    X509_free(x);

    UNIT_CASE("cert info NULL");
    cs_cert_info(&info, pool, NULL);
    CHECK_STR(info.serial, "");
    CHECK_EQ_INT(info.not_after, 0);
}

/* tls-alpn-01 (RFC 8737 3): the challenge certificate, its extension
 * byte for byte, and the checks a proxy makes before answering with it. */
static const char alpn_keyauth[] =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
    "nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";
/* SHA-256 of alpn_keyauth (sha256sum). */
static const unsigned char alpn_digest[32] =
    "\x34\x6c\x0a\xa1\x70\x60\x09\x3f\x09\x84\x46\xb4\x6c\xae\xc0\xc1"
    "\xf4\xaa\x1f\x2b\xbf\x65\x67\xae\x81\x5d\x3b\x7c\xb1\x88\x56\xad";

/* The extension as DER: SEQUENCE { OID 1.3.6.1.5.5.7.1.31, BOOLEAN TRUE,
 * OCTET STRING { OCTET STRING (32) digest } }. */
static void check_alpn_ext_der(X509 *x)
{
    static const unsigned char head[] = {
        0x30, 0x31,
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f,
        0x01, 0x01, 0xff,
        0x04, 0x22, 0x04, 0x20
    };
    ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int at = X509_get_ext_by_OBJ(x, obj, -1);
    unsigned char *der = NULL;
    int len;

    ASN1_OBJECT_free(obj);
    if (!CHECK(at >= 0)) {
        return;
    }
    len = i2d_X509_EXTENSION(X509_get_ext(x, at), &der);
    if (CHECK_EQ_INT(len, (int)sizeof(head) + 32)) {
        CHECK_MEM(der, head, sizeof(head));
        CHECK_MEM(der + sizeof(head), alpn_digest, 32);
    }
    OPENSSL_free(der);
}

static void test_tlsalpn(EVP_PKEY *ec, EVP_PKEY *rsa)
{
    X509 *x, *y;
    GENERAL_NAMES *gens;
    unsigned char digest[32];
    const char *err;
    apr_time_t now = apr_time_now();
    char cn[256];
    X509V3_CTX ctx;
    cs_cert_info_t info;

    UNIT_CASE("tls-alpn-01: the challenge certificate");
    if (!CHECK_EQ_INT(cs_tlsalpn_cert_make(&x, pool, ec, "alpn.example.org",
                                           alpn_keyauth, DAY, &err),
                      APR_SUCCESS)) {
        return;
    }
    check_alpn_ext_der(x);
    /* Self-signed by the key, one DNS SAN, the CN for people. */
    CHECK_EQ_INT(X509_verify(x, ec), 1);
    CHECK_EQ_INT(X509_NAME_cmp(X509_get_subject_name(x),
                               X509_get_issuer_name(x)), 0);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                              sizeof(cn));
    CHECK_STR(cn, "alpn.example.org");
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (CHECK(gens && sk_GENERAL_NAME_num(gens) == 1)) {
        CHECK_EQ_INT(sk_GENERAL_NAME_value(gens, 0)->type, GEN_DNS);
    }
    GENERAL_NAMES_free(gens);
    cs_cert_info(&info, pool, x);
    CHECK(info.not_before <= now && info.not_after > now + DAY - 60 * 1000000LL
          && info.not_after <= now + DAY + apr_time_from_sec(5));

    UNIT_CASE("tls-alpn-01: what a proxy checks");
    memset(digest, 0, sizeof(digest));
    CHECK_EQ_INT(cs_tlsalpn_cert_check(digest, x, ec, "alpn.example.org",
                                       now, &err), APR_SUCCESS);
    CHECK_MEM(digest, alpn_digest, 32);
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, x, ec, "ALPN.example.org",
                                       now, &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, x, ec, "other.example.org",
                                       now, &err), APR_EINVAL);
    CHECK(err && strstr(err, "SAN"));
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, x, rsa, "alpn.example.org",
                                       now, &err), APR_EINVAL);
    CHECK(err && strstr(err, "key"));
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, x, ec, "alpn.example.org",
                                       now + 2 * DAY, &err), APR_EINVAL);
    CHECK(err && strstr(err, "valid"));
    /* A certificate without the extension, and one with it not
     * critical. */
    y = testkit_cert(pool, ec, "alpn.example.org", 7, -60, 86400);
    X509V3_set_ctx(&ctx, y, y, NULL, NULL, 0);
    add_ext(y, &ctx, NID_subject_alt_name, "DNS:alpn.example.org");
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, y, ec, "alpn.example.org",
                                       now, &err), APR_EINVAL);
    CHECK(err && strstr(err, "one acmeIdentifier"));
    {
        ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
        ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
        unsigned char der[34] = { 0x04, 0x20 };
        X509_EXTENSION *e;

        memcpy(der + 2, alpn_digest, 32);
        ASN1_OCTET_STRING_set(v, der, sizeof(der));
        e = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, v);
        X509_add_ext(y, e, -1);
        X509_EXTENSION_free(e);
        ASN1_OCTET_STRING_free(v);
        ASN1_OBJECT_free(obj);
    }
    CHECK_EQ_INT(cs_tlsalpn_cert_check(NULL, y, ec, "alpn.example.org",
                                       now, &err), APR_EINVAL);
    CHECK(err && strstr(err, "not critical"));

    UNIT_CASE("tls-alpn-01: names and lifetimes refused");
    CHECK_EQ_INT(cs_tlsalpn_cert_make(&y, pool, ec, "*.example.org",
                                      alpn_keyauth, DAY, &err), APR_EINVAL);
    CHECK_EQ_INT(cs_tlsalpn_cert_make(&y, pool, ec, "a b.example.org",
                                      alpn_keyauth, DAY, &err), APR_EINVAL);
    CHECK_EQ_INT(cs_tlsalpn_cert_make(&y, pool, ec, "a.example.org",
                                      alpn_keyauth, 0, &err), APR_EINVAL);
    /* An RSA key works too; another key authorization, another digest. */
    CHECK_EQ_INT(cs_tlsalpn_cert_make(&y, pool, rsa, "r.example.org",
                                      "tok.thumb", DAY, &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_tlsalpn_cert_check(digest, y, rsa, "r.example.org",
                                       now, &err), APR_SUCCESS);
    CHECK(memcmp(digest, alpn_digest, 32) != 0);
}

int main(void)
{
    cs_ca_t *ca, *foreign;
    EVP_PKEY *ec, *rsa;

    apr_initialize();
    atexit(apr_terminate);
    apr_pool_create(&pool, NULL);
    if ((tmpdir = testkit_tmpdir(pool, "x509")) == NULL) {
        return 2;
    }

    UNIT_CASE("setup");
    ca = make_ca("Unit Test CA", CS_KEY_RSA_2048, 0, NULL);
    foreign = make_ca("Foreign CA", CS_KEY_EC_P256, 0, NULL);
    cs_key_generate(&ec, pool, CS_KEY_EC_P256);
    cs_key_generate(&rsa, pool, CS_KEY_RSA_2048);
    if (!CHECK(ca && foreign && ec && rsa)) {
        return unit_summary();
    }

    test_ca_load(ca, foreign);
    test_issue(ca, ec, rsa);

    UNIT_CASE("issue from an EC CA");
    {
        apr_array_header_t *chain;
        const char *err;

        CHECK_EQ_INT(cs_ca_issue(&chain, pool, foreign, rsa, "e.example.net",
                                 DAY, &err), APR_SUCCESS);
        check_leaf(LEAF(chain), foreign, "e.example.net", rsa, DAY);
        CHECK(passes(chain, rsa, "e.example.net", apr_time_now()));
    }

    test_verify_failures(ca, foreign, ec, rsa);
    test_verify_bare(ca, foreign, ec, rsa);
    test_cert_info();
    test_tlsalpn(ec, rsa);

    UNIT_CASE("error queue");
    CHECK(ERR_peek_error() == 0);

    rmdir(tmpdir);
    apr_pool_destroy(pool);
    return unit_summary();
}
