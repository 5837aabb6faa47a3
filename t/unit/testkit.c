/*
 * testkit.c: see testkit.h.
 */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE    /* mkdtemp, nftw */
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <apr_file_io.h>
#include <apr_strings.h>

#include "cs_x509.h"
#include "testkit.h"

static apr_status_t x509_free_cleanup(void *data)
{
    X509_free(data);
    return APR_SUCCESS;
}

X509 *testkit_cert(apr_pool_t *pool, EVP_PKEY *key, const char *cn,
                   long serial, long before, long after)
{
    X509 *x = X509_new();

    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                               MBSTRING_UTF8, (const unsigned char *)cn,
                               -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), before);
    X509_gmtime_adj(X509_getm_notAfter(x), after);
    X509_set_pubkey(x, key);
    apr_pool_cleanup_register(pool, x, x509_free_cleanup,
                              apr_pool_cleanup_null);
    return x;
}

X509 *testkit_self_signed(apr_pool_t *pool, EVP_PKEY *key, const char *cn)
{
    static long serial;
    X509 *x = testkit_cert(pool, key, cn, ++serial, -60, 86400);

    X509_sign(x, key, EVP_sha256());
    return x;
}

int testkit_ca_and_wrap(apr_pool_t *pool, cs_ca_t *ca,
                        apr_array_header_t **certs,
                        apr_array_header_t **keys)
{
    EVP_PKEY *wrap_key;

    if (cs_key_generate(&ca->key, pool, CS_KEY_EC_P256)
        || cs_key_generate(&wrap_key, pool, CS_KEY_RSA_2048)) {
        printf("cannot generate keys\n");
        return -1;
    }
    ca->cert = testkit_self_signed(pool, ca->key, "test CA");
    *certs = apr_array_make(pool, 1, sizeof(X509 *));
    *keys = apr_array_make(pool, 1, sizeof(EVP_PKEY *));
    APR_ARRAY_PUSH(*certs, X509 *) = testkit_self_signed(pool, wrap_key,
                                                         "wrap");
    APR_ARRAY_PUSH(*keys, EVP_PKEY *) = wrap_key;
    return 0;
}

char *testkit_tmpdir(apr_pool_t *pool, const char *name)
{
    const char *tmp;
    char *dir;

    apr_temp_dir_get(&tmp, pool);
    dir = apr_psprintf(pool, "%s/cs-unit-%s-XXXXXX", tmp, name);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return NULL;
    }
    return dir;
}

char *testkit_tmpfile(apr_pool_t *pool, const char *prefix)
{
    const char *tmpdir;
    apr_file_t *f;
    char *path;

    if (apr_temp_dir_get(&tmpdir, pool) != APR_SUCCESS) {
        tmpdir = "/tmp";
    }
    path = apr_pstrcat(pool, tmpdir, "/", prefix, "XXXXXX", NULL);
    if (apr_file_mktemp(&f, path, APR_FOPEN_CREATE | APR_FOPEN_READ
                        | APR_FOPEN_WRITE | APR_FOPEN_EXCL, pool)
        != APR_SUCCESS) {
        fprintf(stderr, "no temporary file in %s\n", tmpdir);
        return NULL;
    }
    apr_file_close(f);
    return path;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

void testkit_rm_tree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

double testkit_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

double testkit_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
