/*
 * mkstore: fill a certsync store with COUNT domains quickly, for
 * bench/scale.sh (a real sync of 100,000 domains through CertService takes
 * longer than the benchmark itself; what the proxy does with the store is
 * the same).
 *
 *   mkstore STORE CA.crt CA.key WRAP.crt WRAP.key COUNT PREFIX [WORKERS]
 *
 * Domains are "dI.PREFIX" for I = 1..COUNT.  Each gets a certificate from
 * the CA for one EC P-256 key (one key for all: generating 100,000 keys
 * would only slow the setup; the proxy parses and decrypts every domain's
 * copy separately all the same; one envelope of it too), written in the
 * store's layout
 * (lib/cs_layout.h): live/NAME/SERIAL/fullchain.pem, privkey.pem (vhost
 * mode), key.cms (the key sealed to WRAP.crt, dynamic mode) and, unless
 * WRAP.key is "-", key.seal (what the sync daemon writes for the workers,
 * lib/cs_seal.h), the `current` link.  The versions are written without
 * fsync (a benchmark's scratch store); the store itself, the manifest and
 * the cursor (0) are mod_certsync's own code (csy_store.h).
 *
 *   mkstore -c OUT CA.crt CA.key WRAP.crt COUNT PREFIX [WORKERS [FIRST]]
 *
 * writes the same certificates as CSV rows for CertService's database
 * instead (bench/scale.sh's sync phase: issuing 100,000 domains through
 * the API takes hours on 2 cores): "name,serial,not_before,not_after,
 * chain_pem,key_cms" (seconds; key_cms base64, the one envelope of the
 * shared key, valid for every row since the key is the same), for
 * I = FIRST (1) .. COUNT, into OUT.0 .. OUT.(WORKERS-1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_layout.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_store.h"

static int put(const char *path, const void *data, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "wb");

    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return chmod(path, mode);
}

static int one(apr_pool_t *p, const char *store, const cs_ca_t *ca,
               EVP_PKEY *key, const char *key_pem, apr_size_t key_len,
               const unsigned char *der, apr_size_t der_len,
               const cs_seal_key_t *sk, const char *name)
{
    apr_array_header_t *chain;
    cs_cert_info_t info;
    unsigned char *seal = NULL;
    apr_size_t seal_len = 0;
    const char *err, *pem, *ddir, *vdir;

    if (cs_ca_issue(&chain, p, ca, key, name,
                    apr_time_from_sec(30 * 86400), &err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    cs_cert_info(&info, p, APR_ARRAY_IDX(chain, 0, X509 *));
    if (sk && cs_seal(&seal, &seal_len, p, key,
                      APR_ARRAY_IDX(chain, 0, X509 *), sk, name, info.serial,
                      &err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    pem = cs_pem_write_certs(p, chain);
    ddir = cs_layout_path(p, store, name, NULL, NULL);
    vdir = cs_layout_path(p, store, name, info.serial, NULL);
    if (mkdir(ddir, 0755) || mkdir(vdir, 0755)
        || put(apr_pstrcat(p, vdir, "/" CS_LAYOUT_CHAIN, NULL), pem,
               strlen(pem), 0644)
        || put(apr_pstrcat(p, vdir, "/" CS_LAYOUT_KEY, NULL), key_pem,
               key_len, 0600)
        || put(apr_pstrcat(p, vdir, "/" CS_LAYOUT_ENVELOPE, NULL), der,
               der_len, 0600)
        || (seal && put(apr_pstrcat(p, vdir, "/" CS_LAYOUT_SEAL, NULL), seal,
                        seal_len, 0600))
        || symlink(info.serial, cs_layout_path(p, store, name,
                                               CS_LAYOUT_CURRENT, NULL))) {
        perror(ddir);
        return -1;
    }
    return 0;
}

/* One domain as a CSV row of CertService's cs_domains (see the header). */
static int one_row(FILE *out, apr_pool_t *p, const cs_ca_t *ca,
                   EVP_PKEY *key, const char *cms64, const char *name)
{
    apr_array_header_t *chain;
    cs_cert_info_t info;
    const char *err;

    if (cs_ca_issue(&chain, p, ca, key, name,
                    apr_time_from_sec(30 * 86400), &err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    cs_cert_info(&info, p, APR_ARRAY_IDX(chain, 0, X509 *));
    return fprintf(out, "%s,%s,%" APR_INT64_T_FMT ",%" APR_INT64_T_FMT
                   ",\"%s\",%s\n", name, info.serial,
                   (apr_int64_t)apr_time_sec(info.not_before),
                   (apr_int64_t)apr_time_sec(info.not_after),
                   cs_pem_write_certs(p, chain), cms64) < 0 ? -1 : 0;
}

static int csv_main(int argc, char **argv)
{
    apr_pool_t *pool, *p;
    apr_array_header_t *wrap;
    cs_ca_t *ca;
    EVP_PKEY *key;
    const char *err = NULL, *prefix, *cms64;
    unsigned char *der;
    apr_size_t der_len;
    long count, first, i;
    int workers, w, status, bad = 0;
    FILE *out;

    if (argc < 7) {
        fprintf(stderr, "usage: mkstore -c OUT CA.crt CA.key WRAP.crt COUNT "
                "PREFIX [WORKERS [FIRST]]\n");
        return 2;
    }
    count = atol(argv[5]);
    prefix = argv[6];
    workers = argc > 7 ? atoi(argv[7]) : 2;
    first = argc > 8 ? atol(argv[8]) : 1;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (cs_ca_load(&ca, pool, argv[2], argv[3], &err)
        || cs_file_read_certs(&wrap, pool, argv[4], &err)
        || cs_key_generate(&key, pool, CS_KEY_EC_P256)
        || cs_envelope_seal(&der, &der_len, pool, key, wrap, &err)) {
        fprintf(stderr, "mkstore: %s\n", err ? err : "key generation");
        return 1;
    }
    cms64 = cs_base64_encode(pool, der, der_len);
    for (w = 0; w < workers; w++) {
        if (fork() == 0) {
            out = fopen(apr_psprintf(pool, "%s.%d", argv[1], w), "w");
            if (!out) {
                perror(argv[1]);
                _exit(1);
            }
            apr_pool_create(&p, pool);
            for (i = first + w; i <= count; i += workers) {
                apr_pool_clear(p);
                if (one_row(out, p, ca, key, cms64,
                            apr_psprintf(p, "d%ld.%s", i, prefix))) {
                    _exit(1);
                }
            }
            _exit(fclose(out) == 0 ? 0 : 1);
        }
    }
    for (w = 0; w < workers; w++) {
        wait(&status);
        bad |= !WIFEXITED(status) || WEXITSTATUS(status);
    }
    return bad;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool, *p;
    apr_array_header_t *wrap, *domains;
    csy_store_t *st;
    cs_ca_t *ca;
    EVP_PKEY *key, *wrap_key = NULL;
    cs_seal_key_t sk;
    const char *err = NULL, *store, *prefix;
    char *key_pem, ebuf[128];
    unsigned char *der;
    apr_size_t key_len, der_len;
    apr_status_t rv;
    long count, i;
    int workers, w, status, bad = 0;

    if (argc > 1 && strcmp(argv[1], "-c") == 0) {
        return csv_main(argc - 1, argv + 1);
    }
    if (argc < 8) {
        fprintf(stderr, "usage: mkstore STORE CA.crt CA.key WRAP.crt "
                "WRAP.key|- COUNT PREFIX [WORKERS]\n");
        return 2;
    }
    count = atol(argv[6]);
    prefix = argv[7];
    workers = argc > 8 ? atoi(argv[8]) : 2;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (cs_ca_load(&ca, pool, argv[2], argv[3], &err)
        || cs_file_read_certs(&wrap, pool, argv[4], &err)
        || (strcmp(argv[5], "-") != 0
            && cs_file_read_key(&wrap_key, pool, argv[5], &err))
        || cs_key_generate(&key, pool, CS_KEY_EC_P256)) {
        fprintf(stderr, "mkstore: %s\n", err ? err : "key generation");
        return 1;
    }
    if (wrap_key && cs_seal_key_derive(&sk, wrap_key)) {
        fprintf(stderr, "mkstore: cannot derive the sealing key\n");
        return 1;
    }
    key_pem = cs_pem_write_key(pool, key, &key_len);
    /* One key for all, so one envelope for all: the same bytes in every
     * domain's key.cms (opened per domain all the same), and an RSA
     * operation and a CMS encoding less per domain. */
    if (cs_envelope_seal(&der, &der_len, pool, key, wrap, &err)) {
        fprintf(stderr, "mkstore: %s\n", err);
        return 1;
    }
    /* Makes the store and live/ (0755), absolute: the manifest's paths. */
    if ((rv = csy_store_open(&st, pool, argv[1])) != APR_SUCCESS) {
        fprintf(stderr, "mkstore: %s: %s\n", argv[1],
                apr_strerror(rv, ebuf, sizeof(ebuf)));
        return 1;
    }
    store = csy_store_dir(st);
    for (w = 0; w < workers; w++) {
        if (fork() == 0) {
            apr_pool_create(&p, pool);
            for (i = 1 + w; i <= count; i += workers) {
                apr_pool_clear(p);
                if (one(p, store, ca, key, key_pem, key_len, der, der_len,
                        wrap_key ? &sk : NULL,
                        apr_psprintf(p, "d%ld.%s", i, prefix))) {
                    _exit(1);
                }
            }
            _exit(0);
        }
    }
    for (w = 0; w < workers; w++) {
        wait(&status);
        bad |= !WIFEXITED(status) || WEXITSTATUS(status);
    }
    if (bad) {
        return 1;
    }
    domains = apr_array_make(pool, (int)count, sizeof(const char *));
    for (i = 1; i <= count; i++) {
        APR_ARRAY_PUSH(domains, const char *) =
            apr_psprintf(pool, "d%ld.%s", i, prefix);
    }
    if ((rv = csy_store_manifest_write(st, pool, domains)) != APR_SUCCESS
        || (rv = csy_store_cursor_set(st, 0, pool)) != APR_SUCCESS) {
        fprintf(stderr, "mkstore: manifest or cursor: %s\n",
                apr_strerror(rv, ebuf, sizeof(ebuf)));
        return 1;
    }
    return 0;
}
