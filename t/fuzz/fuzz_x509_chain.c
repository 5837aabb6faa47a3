/*
 * fuzz_x509_chain.c: libFuzzer harness for a certificate chain as an ACME
 * CA sends it (application/pem-certificate-chain), and for everything the
 * suite computes from it before and after it is stored: the PEM reader
 * (cs_pem_read_certs), the bundle checks (cs_bundle_verify), the facts
 * kept in the store (cs_cert_info, cs_cert_fingerprint), the PEM written
 * to the store and read back, and the ARI certificate id
 * (cs_acme_cert_id) that names the certificate a renewal replaces.
 *
 * The input is the body as downloaded.  Invariants:
 *  - a read chain has at least one certificate and no more than the
 *    input has "-----BEGIN " lines; a failed read says why;
 *  - the PEM written for the store reads back as the same certificates
 *    (DER for DER);
 *  - a serial is lower-case hex without leading zeros, and is the
 *    certificate's serial;
 *  - an ARI id is base64url "." base64url: the AKI key identifier and the
 *    serial's DER content octets, exactly; no id only without a key
 *    identifier or for a serial too long for a short DER length;
 *  - the bare read (cs_pem_read_certs_bare) fails where the usual one
 *    does, and otherwise reads the same certificates, DER for DER; the
 *    bare leaf's checks (cs_bundle_verify_bare) never pass a chain that
 *    cs_bundle_verify refuses;
 *  - a chain that passes cs_bundle_verify has the key's leaf first, and
 *    its validity (as cs_cert_info reads it for the store and the renewal
 *    schedule) contains the time it was checked at;
 *  - no OpenSSL error is left queued; ASan/LSan: no leak once the pool
 *    is gone.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to run
 * the corpus in `make check` without libFuzzer.
 */
#include <limits.h>
#include <stdint.h>

#include <apr_strings.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_acme.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_x509.h"
#include "fuzz_acme_common.h"

/* The names a bundle is checked for: the leaf of the seeds lists the
 * first two. */
static const char *const names[] = {
    "fuzz.example", "*.fuzz.example", "a.fuzz.example", "other.example"
};

static size_t count_begin(const uint8_t *data, size_t size)
{
    static const char tag[] = "-----BEGIN ";
    size_t i, n = 0;

    for (i = 0; i + sizeof(tag) - 1 <= size; i++) {
        if (memcmp(data + i, tag, sizeof(tag) - 1) == 0) {
            n++;
        }
    }
    return n;
}

static void check_serial(apr_pool_t *p, X509 *cert, const char *serial)
{
    BIGNUM *want = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    BIGNUM *got = NULL;
    const char *hex = serial + (serial[0] == '-');
    size_t i;

    (void)p;
    REQUIRE(*hex != '\0');
    REQUIRE(hex[0] != '0' || hex[1] == '\0');
    for (i = 0; hex[i]; i++) {
        REQUIRE((hex[i] >= '0' && hex[i] <= '9')
                || (hex[i] >= 'a' && hex[i] <= 'f'));
    }
    if (want) {
        REQUIRE(BN_hex2bn(&got, serial) > 0);
        REQUIRE(BN_cmp(got, want) == 0);
    }
    BN_free(got);
    BN_free(want);
    ERR_clear_error();      /* ours, not the code's under test */
}

static void check_cert_id(apr_pool_t *p, X509 *cert)
{
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    unsigned char *der = NULL, *a, *b;
    apr_size_t alen, blen;
    const char *id = NULL, *dot;
    int len;
    apr_status_t rv = cs_acme_cert_id(&id, p, cert);

    REQUIRE_NO_SSL_ERROR();
    len = i2d_ASN1_INTEGER(serial, &der);
    if (rv != APR_SUCCESS) {
        REQUIRE(rv == APR_EINVAL);
        REQUIRE(aki == NULL || len < 3 || der[1] >= 0x80);
        OPENSSL_free(der);
        ERR_clear_error();
        return;
    }
    REQUIRE(aki != NULL && len >= 3 && der[1] < 0x80);
    REQUIRE(id != NULL && (dot = strchr(id, '.')) != NULL);
    REQUIRE(strchr(dot + 1, '.') == NULL);
    REQUIRE(fuzz_b64url_only(id, (size_t)(dot - id)));
    REQUIRE(fuzz_b64url_only(dot + 1, strlen(dot + 1)));
    REQUIRE(cs_b64url_decode(&a, &alen, p,
                             apr_pstrndup(p, id, (apr_size_t)(dot - id)))
            == APR_SUCCESS);
    REQUIRE(cs_b64url_decode(&b, &blen, p, dot + 1) == APR_SUCCESS);
    REQUIRE(alen == (apr_size_t)ASN1_STRING_length(aki));
    REQUIRE(alen == 0 || memcmp(a, ASN1_STRING_get0_data(aki), alen) == 0);
    /* The DER content octets: what follows the tag and the length. */
    REQUIRE(blen == (apr_size_t)len - 2 && der[1] == blen);
    REQUIRE(memcmp(b, der + 2, blen) == 0);
    OPENSSL_free(der);
    ERR_clear_error();
}

static int same_der(X509 *x, X509 *y)
{
    unsigned char *a = NULL, *b = NULL;
    int la = i2d_X509(x, &a), lb = i2d_X509(y, &b), same;

    same = la > 0 && la == lb && memcmp(a, b, (size_t)la) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return same;
}

static void check_verified(apr_pool_t *p, const apr_array_header_t *chain,
                           apr_time_t now)
{
    X509 *leaf = APR_ARRAY_IDX(chain, 0, X509 *);
    cs_cert_info_t info;

    REQUIRE(EVP_PKEY_eq(X509_get0_pubkey(leaf), fuzz_leaf_key) == 1);
    /* What the store and the renewal schedule will believe. */
    cs_cert_info(&info, p, leaf);
    REQUIRE(info.not_before <= now);
    REQUIRE(info.not_after > now);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    apr_array_header_t *chain, *again, *bare = NULL;
    const char *err = NULL, *pem, *fp;
    apr_time_t now = apr_time_from_sec(FUZZ_NOW_SEC);
    cs_cert_info_t info;
    apr_status_t rv, brv;
    int i;

    fuzz_init();
    ERR_clear_error();
    apr_pool_create(&p, fuzz_pool);

    rv = cs_pem_read_certs(&chain, p, (const char *)data, size, &err);
    REQUIRE_NO_SSL_ERROR();
    brv = cs_pem_read_certs_bare(&bare, p, (const char *)data, size, &err);
    REQUIRE_NO_SSL_ERROR();
    if (rv != APR_SUCCESS) {
        REQUIRE(rv == APR_EINVAL || rv == APR_ENOENT);
        REQUIRE(chain == NULL && err != NULL);
        REQUIRE(brv != APR_SUCCESS && bare == NULL);
        apr_pool_destroy(p);
        return 0;
    }
    /* The sync daemon's bare read: the same certificates, DER for DER. */
    if (brv == APR_SUCCESS) {
        REQUIRE(bare->nelts == chain->nelts);
        for (i = 0; i < chain->nelts; i++) {
            REQUIRE(same_der(APR_ARRAY_IDX(chain, i, X509 *),
                             APR_ARRAY_IDX(bare, i, X509 *)));
        }
        ERR_clear_error();
    }
    REQUIRE(chain != NULL && chain->nelts >= 1);
    REQUIRE((size_t)chain->nelts <= count_begin(data, size));

    for (i = 0; i < chain->nelts; i++) {
        X509 *x = APR_ARRAY_IDX(chain, i, X509 *);

        REQUIRE(x != NULL);
        cs_cert_info(&info, p, x);
        REQUIRE_NO_SSL_ERROR();
        check_serial(p, x, info.serial);
        fp = cs_cert_fingerprint(p, x);
        REQUIRE(fp != NULL && strlen(fp) == 64
                && strspn(fp, "0123456789abcdef") == 64);
        REQUIRE_NO_SSL_ERROR();
        check_cert_id(p, x);
    }

    /* The store keeps cs_pem_write_certs' text and reads it back. */
    pem = cs_pem_write_certs(p, chain);
    REQUIRE_NO_SSL_ERROR();
    REQUIRE(pem != NULL);
    REQUIRE(cs_pem_read_certs(&again, p, pem, strlen(pem), &err)
            == APR_SUCCESS);
    REQUIRE(again->nelts == chain->nelts);
    for (i = 0; i < chain->nelts; i++) {
        REQUIRE(same_der(APR_ARRAY_IDX(chain, i, X509 *),
                         APR_ARRAY_IDX(again, i, X509 *)));
    }
    ERR_clear_error();

    /* One name per input (each check verifies the whole chain again). */
    rv = cs_bundle_verify(chain, fuzz_leaf_key,
                          names[size % (sizeof(names) / sizeof(names[0]))],
                          now, &err);
    REQUIRE_NO_SSL_ERROR();
    if (rv == APR_SUCCESS) {
        check_verified(p, chain, now);
    }
    else {
        REQUIRE(rv == APR_EINVAL && err != NULL);
    }

    /* The bare leaf's checks, with the usual issuers (as the daemon has
     * them cached), pass nothing that cs_bundle_verify refuses. */
    if (brv == APR_SUCCESS) {
        apr_array_header_t *mixed = apr_array_copy(p, chain);

        APR_ARRAY_IDX(mixed, 0, X509 *) = APR_ARRAY_IDX(bare, 0, X509 *);
        brv = cs_bundle_verify_bare(
            mixed, fuzz_leaf_key,
            names[size % (sizeof(names) / sizeof(names[0]))], now, INT_MAX,
            &err);
        REQUIRE_NO_SSL_ERROR();
        REQUIRE(brv != APR_SUCCESS || rv == APR_SUCCESS);
        REQUIRE(brv == APR_SUCCESS || err != NULL);
    }

    apr_pool_destroy(p);
    return 0;
}
