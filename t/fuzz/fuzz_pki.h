/*
 * fuzz_pki.h: the fixed keys and certificates of the feed and seal
 * harnesses (fuzz_feed.c, fuzz_seal.c).
 *
 * Fixed, not made at start: a corpus input that holds a key, a
 * certificate or an envelope made from them (and a crash found with
 * them) replays the same way in every process.  Made once with
 * `openssl ca` (valid 2000-2099, so `make check` does not depend on the
 * clock); test keys only, they protect nothing.
 */
#ifndef FUZZ_PKI_H
#define FUZZ_PKI_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_seal.h"

typedef struct {
    X509 *ca;                   /* "fuzz test CA", EC P-256 */
    X509 *leaf;                 /* example.com, *.example.com,
                                 * xn--bcher-kva.example; EC P-256 */
    EVP_PKEY *leaf_key;
    X509 *rleaf;                /* rsa.example.com; RSA-2048 */
    EVP_PKEY *rleaf_key;
    EVP_PKEY *other_key;        /* EC P-256, no certificate */
    X509 *wrap;                 /* the proxy's wrapping pair, RSA-2048 */
    EVP_PKEY *wrap_key;
    apr_array_header_t *wrap_certs;     /* X509 *: wrap */
    apr_array_header_t *wrap_keys;      /* EVP_PKEY *: wrap_key */
    apr_array_header_t *seal_keys;      /* cs_seal_key_t of wrap_key */
    const char *chain_pem;      /* leaf, ca */
    const char *rchain_pem;     /* rleaf, ca */
} fuzz_pki_t;

/** Everything above, owned by p; aborts if anything fails. */
void fuzz_pki_load(fuzz_pki_t *pki, apr_pool_t *p);

#endif /* FUZZ_PKI_H */
