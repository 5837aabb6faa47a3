/*
 * fuzz_acme_common.h: what the harnesses of the ACME client's answers
 * share (fuzz_acme_docs.c, fuzz_x509_chain.c): REQUIRE, text checks, and
 * the fixed key of the test chains in t/fuzz/acme_pki/.
 *
 * Header-only (static functions), so each harness stays one source file
 * plus the library sources it tests.
 */
#ifndef FUZZ_ACME_COMMON_H
#define FUZZ_ACME_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "cs_crypto.h"
#include "fuzz.h"           /* REQUIRE, the entry point's prototype */

/* The key of t/fuzz/acme_pki/leaf.pem (a test key, nothing else): the
 * seeds' chains are for it, so a chain can pass cs_bundle_verify. */
static const char fuzz_leaf_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFfONZ1luAe+xAitx\n"
    "A8o/toomOIS3c3c5mZRlznMxJ0ShRANCAATe0fDtED6uyLWN2cNvEExJq3WzjFZo\n"
    "MDk0pCZHOso/wUb37AbOtCpt564L+AShZd4BeZf9A4j0qI9bhfE1+526\n"
    "-----END PRIVATE KEY-----\n";

/* Inside the validity of every certificate in t/fuzz/acme_pki/
 * (2027-06-01T00:00:00Z, unix seconds). */
#define FUZZ_NOW_SEC    1811808000

static apr_pool_t *fuzz_pool;   /* process-wide: keys */
static EVP_PKEY *fuzz_leaf_key;

/* Once per process (libFuzzer and replay.c both only call the harness). */
static inline void fuzz_init(void)
{
    const char *err;

    if (fuzz_pool) {
        return;
    }
    REQUIRE(apr_initialize() == APR_SUCCESS);
    REQUIRE(apr_pool_create(&fuzz_pool, NULL) == APR_SUCCESS);
    REQUIRE(cs_pem_read_key(&fuzz_leaf_key, fuzz_pool, fuzz_leaf_key_pem,
                            strlen(fuzz_leaf_key_pem), &err)
            == APR_SUCCESS);
}

/* Strict UTF-8 (what jansson accepts in a JSON string): no overlong
 * forms, no surrogates, nothing past U+10FFFF. */
static inline int fuzz_utf8_ok(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned int c, n, i;

    while (*u) {
        if (*u < 0x80) {
            u++;
            continue;
        }
        if (*u >= 0xC2 && *u <= 0xDF) {
            n = 1;
            c = *u & 0x1F;
        }
        else if (*u >= 0xE0 && *u <= 0xEF) {
            n = 2;
            c = *u & 0x0F;
        }
        else if (*u >= 0xF0 && *u <= 0xF4) {
            n = 3;
            c = *u & 0x07;
        }
        else {
            return 0;
        }
        for (i = 1; i <= n; i++) {
            if ((u[i] & 0xC0) != 0x80) {
                return 0;
            }
            c = (c << 6) | (u[i] & 0x3F);
        }
        if ((n == 2 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF)))
            || (n == 3 && (c < 0x10000 || c > 0x10FFFF))) {
            return 0;
        }
        u += n + 1;
    }
    return 1;
}

/* Only characters of the base64url alphabet (no padding). */
static inline int fuzz_b64url_only(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* What every OpenSSL-using call must leave behind: no queued error that a
 * later, unrelated check of the queue would take for its own. */
#define REQUIRE_NO_SSL_ERROR() REQUIRE(ERR_peek_error() == 0)

#endif /* FUZZ_ACME_COMMON_H */
