/*
 * bench/envelope_bench.c: what opening one key envelope costs the sync
 * daemon, by wrapping key type, on 1 and on N threads (issue 18: the
 * choice of the wrapping key).
 *
 *   make bench/envelope_bench && bench/envelope_bench [SECONDS] [THREADS]
 *
 * For each wrapping key (RSA-2048, the default; RSA-3072; EC P-256) it
 * seals one ECDSA P-256 certificate key the way CertService does (CMS
 * AuthEnvelopedData, AES-256-GCM; RSA: key transport with OAEP, through
 * cs_envelope_seal; EC: key agreement, ECDH with the standard KDF, which
 * cs_envelope_seal does not make: built here with OpenSSL's CMS API),
 * then opens it again and again for SECONDS [2] on 1 thread and on
 * THREADS [2] threads, and prints opens a second.  RSA envelopes are
 * opened with cs_envelope_open (what mod_certsync runs); EC ones with
 * CMS_decrypt, the same call at its core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_x509.h"

typedef struct {
    const char *name;
    int ec;
    EVP_PKEY *wrap_key;
    X509 *wrap_cert;
    unsigned char *der;
    apr_size_t der_len;
    double seconds;
    volatile apr_uint32_t ops;
    volatile apr_uint32_t failed;
} job_t;

static double now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

/* A self-signed certificate for key (the wrapping certificate). */
static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *n;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)"wrap", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_sign(x, key, EVP_sha256());
    return x;
}

/* An AuthEnvelopedData of key's PKCS#8 to an EC recipient (key
 * agreement). */
static int seal_ec(job_t *j, apr_pool_t *p, EVP_PKEY *key)
{
    CMS_ContentInfo *cms;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    unsigned char *plain = NULL, *der = NULL;
    int plain_len = i2d_PKCS8_PRIV_KEY_INFO(p8, &plain), len;
    BIO *in = BIO_new_mem_buf(plain, plain_len);

    STACK_OF(X509) *recips = sk_X509_new_null();

    sk_X509_push(recips, j->wrap_cert);
    /* With an AEAD cipher CMS_encrypt makes an AuthEnvelopedData. */
    cms = CMS_encrypt(recips, in, EVP_aes_256_gcm(), CMS_BINARY);
    sk_X509_free(recips);
    if (!cms || OBJ_obj2nid(CMS_get0_type(cms))
                != NID_id_smime_ct_authEnvelopedData
        || (len = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
        ERR_print_errors_fp(stderr);
        return -1;
    }
    j->der = apr_pmemdup(p, der, len);
    j->der_len = len;
    OPENSSL_free(der);
    OPENSSL_free(plain);
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return 0;
}

static int open_once(job_t *j, apr_pool_t *p)
{
    const unsigned char *q = j->der;
    CMS_ContentInfo *cms;
    EVP_PKEY *key;
    const char *err;
    BIO *out;
    int ok;

    if (!j->ec) {
        return cs_envelope_open(&key, p, j->der, j->der_len, j->wrap_cert,
                                j->wrap_key, &err) == APR_SUCCESS;
    }
    cms = d2i_CMS_ContentInfo(NULL, &q, (long)j->der_len);
    out = BIO_new(BIO_s_secmem());
    ok = cms && CMS_decrypt(cms, j->wrap_key, j->wrap_cert, NULL, out,
                            CMS_BINARY) == 1;
    BIO_free(out);
    CMS_ContentInfo_free(cms);
    return ok;
}

static void *APR_THREAD_FUNC run(apr_thread_t *t, void *data)
{
    job_t *j = data;
    apr_pool_t *p;
    apr_allocator_t *a;
    double end = now() + j->seconds;

    (void)t;
    apr_allocator_create(&a);
    apr_pool_create_ex(&p, NULL, NULL, a);
    apr_allocator_owner_set(a, p);
    while (now() < end) {
        if (!open_once(j, p)) {
            apr_atomic_inc32(&j->failed);
        }
        apr_atomic_inc32(&j->ops);
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return NULL;
}

static double measure(job_t *j, int threads, apr_pool_t *p)
{
    apr_thread_t *th[64];
    apr_status_t rv;
    int i;

    j->ops = j->failed = 0;
    for (i = 0; i < threads && i < 64; i++) {
        apr_thread_create(&th[i], NULL, run, j, p);
    }
    for (i = 0; i < threads && i < 64; i++) {
        apr_thread_join(&rv, th[i]);
    }
    if (j->failed) {
        fprintf(stderr, "%s: %u opens failed\n", j->name, j->failed);
    }
    return j->ops / j->seconds;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    int threads = argc > 2 ? atoi(argv[2]) : 2, i;
    job_t jobs[3];
    apr_pool_t *p;
    apr_array_header_t *recips;
    EVP_PKEY *key;
    const char *err;
    double one, many;

    apr_initialize();
    apr_pool_create(&p, NULL);
    memset(jobs, 0, sizeof(jobs));
    jobs[0].name = "RSA-2048";
    jobs[0].wrap_key = EVP_RSA_gen(2048);
    jobs[1].name = "RSA-3072";
    jobs[1].wrap_key = EVP_RSA_gen(3072);
    jobs[2].name = "EC P-256";
    jobs[2].ec = 1;
    jobs[2].wrap_key = EVP_EC_gen("P-256");
    if (cs_key_generate(&key, p, CS_KEY_EC_P256)) {
        return 1;
    }
    printf("opening one envelope (a P-256 certificate key), %.0f s each, "
           "%s\n", seconds, OpenSSL_version(OPENSSL_VERSION));
    printf("%-9s %6s %12s %12s %9s\n", "wrap key", "bytes", "1 thread /s",
           apr_psprintf(p, "%d threads /s", threads), "us/open");
    for (i = 0; i < 3; i++) {
        jobs[i].seconds = seconds;
        jobs[i].wrap_cert = self_signed(jobs[i].wrap_key);
        if (jobs[i].ec) {
            if (seal_ec(&jobs[i], p, key)) {
                return 1;
            }
        }
        else {
            recips = apr_array_make(p, 1, sizeof(X509 *));
            APR_ARRAY_PUSH(recips, X509 *) = jobs[i].wrap_cert;
            if (cs_envelope_seal(&jobs[i].der, &jobs[i].der_len, p, key,
                                 recips, &err)) {
                fprintf(stderr, "%s: %s\n", jobs[i].name, err);
                return 1;
            }
        }
        if (!open_once(&jobs[i], p)) {
            fprintf(stderr, "%s: does not open\n", jobs[i].name);
            ERR_print_errors_fp(stderr);
            return 1;
        }
        one = measure(&jobs[i], 1, p);
        many = measure(&jobs[i], threads, p);
        printf("%-9s %6lu %12.0f %12.0f %9.0f\n", jobs[i].name,
               (unsigned long)jobs[i].der_len, one, many, 1e6 / one);
    }
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
