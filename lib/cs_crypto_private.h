/*
 * cs_crypto_private.h: what cs_crypto.c and cs_envelope.c share: the pool
 * cleanup of a key and the error text of the last OpenSSL failure.  Not
 * for other files.
 */
#ifndef CS_CRYPTO_PRIVATE_H
#define CS_CRYPTO_PRIVATE_H

#include <apr_pools.h>
#include <openssl/evp.h>

/** key is freed with p. */
void cs_pkey_own(apr_pool_t *p, EVP_PKEY *key);

/**
 * what, followed by OpenSSL's reason for the last error if it has one.
 * The error queue is cleared so that nothing stale reaches the next
 * OpenSSL user on this thread (mod_ssl reads the same queue).
 */
const char *cs_ssl_error(apr_pool_t *p, const char *what);

#endif /* CS_CRYPTO_PRIVATE_H */
