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
 * copy separately all the same), written as the store's layout (see
 * mod_certsync/csy_store.h): live/NAME/SERIAL/fullchain.pem, privkey.pem
 * (vhost mode), key.cms (the key sealed to WRAP.crt, dynamic mode) and,
 * unless WRAP.key is "-", key.seal (what the sync daemon writes for the
 * workers, lib/cs_seal.h), the `current` link, then the manifest and a
 * cursor of 0.  No fsync: this is
 * a benchmark's scratch store.
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
#include "cs_seal.h"
#include "cs_x509.h"

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
               const apr_array_header_t *wrap, const cs_seal_key_t *sk,
               const char *name)
{
    apr_array_header_t *chain;
    cs_cert_info_t info;
    unsigned char *der, *seal = NULL;
    apr_size_t der_len, seal_len = 0;
    const char *err, *pem, *ddir, *vdir;

    if (cs_ca_issue(&chain, p, ca, key, name,
                    apr_time_from_sec(30 * 86400), &err)
        || cs_envelope_seal(&der, &der_len, p, key, wrap, &err)) {
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
    ddir = apr_pstrcat(p, store, "/live/", name, NULL);
    vdir = apr_pstrcat(p, ddir, "/", info.serial, NULL);
    if (mkdir(ddir, 0755) || mkdir(vdir, 0755)
        || put(apr_pstrcat(p, vdir, "/fullchain.pem", NULL), pem,
               strlen(pem), 0644)
        || put(apr_pstrcat(p, vdir, "/privkey.pem", NULL), key_pem, key_len,
               0600)
        || put(apr_pstrcat(p, vdir, "/key.cms", NULL), der, der_len, 0600)
        || (seal && put(apr_pstrcat(p, vdir, "/key.seal", NULL), seal,
                        seal_len, 0600))
        || symlink(info.serial, apr_pstrcat(p, ddir, "/current", NULL))) {
        perror(ddir);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool, *p;
    apr_array_header_t *wrap;
    cs_ca_t *ca;
    EVP_PKEY *key, *wrap_key = NULL;
    cs_seal_key_t sk;
    const char *err = NULL, *store, *prefix;
    char *key_pem, *path;
    apr_size_t key_len;
    long count, i;
    int workers, w, status, bad = 0;
    FILE *m;

    if (argc < 8) {
        fprintf(stderr, "usage: mkstore STORE CA.crt CA.key WRAP.crt "
                "WRAP.key|- COUNT PREFIX [WORKERS]\n");
        return 2;
    }
    store = argv[1];
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
    path = apr_pstrcat(pool, store, "/live", NULL);
    mkdir(store, 0755);
    if (mkdir(path, 0755) && access(path, W_OK)) {
        perror(path);
        return 1;
    }
    for (w = 0; w < workers; w++) {
        if (fork() == 0) {
            apr_pool_create(&p, pool);
            for (i = 1 + w; i <= count; i += workers) {
                apr_pool_clear(p);
                if (one(p, store, ca, key, key_pem, key_len, wrap,
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
    m = fopen(apr_pstrcat(pool, store, "/manifest", NULL), "w");
    if (!m) {
        perror("manifest");
        return 1;
    }
    fputs("# certsync manifest v1\n", m);
    for (i = 1; i <= count; i++) {
        fprintf(m, "d%ld.%s %s/live/d%ld.%s/current\n", i, prefix, store, i,
                prefix);
    }
    fclose(m);
    return put(apr_pstrcat(pool, store, "/cursor", NULL), "0\n", 2, 0644)
           ? 1 : 0;
}
