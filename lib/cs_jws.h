/*
 * cs_jws.h: JSON Web Signatures as ACME uses them (RFC 7515 flattened JSON
 * serialisation, RFC 7517 JWK, RFC 7638 thumbprints, RFC 8555 section 6.2).
 *
 * Pure code: APR, OpenSSL and jansson only, no httpd types.  Keys are
 * ECDSA P-256 (ES256) or RSA of at least 2048 bits (RS256).
 */
#ifndef CS_JWS_H
#define CS_JWS_H

#include <apr_pools.h>
#include <jansson.h>
#include <openssl/evp.h>

/** base64url without padding, from p. */
const char *cs_b64url_encode(apr_pool_t *p, const unsigned char *data,
                             apr_size_t len);
/** Decode base64url (padding tolerated); APR_EINVAL on a bad character. */
apr_status_t cs_b64url_decode(unsigned char **data, apr_size_t *len,
                              apr_pool_t *p, const char *text);

/** "ES256" or "RS256" for key, NULL for a key ACME cannot sign with. */
const char *cs_jws_alg(EVP_PKEY *key);

/** The public JWK of key, members in lexicographic order (new reference,
 * NULL for an unsupported key). */
json_t *cs_jwk_public(EVP_PKEY *key);

/** RFC 7638 SHA-256 thumbprint of key's public JWK, base64url, from p. */
apr_status_t cs_jwk_thumbprint(const char **thumb, apr_pool_t *p,
                               EVP_PKEY *key);

/**
 * Sign payload for url: a flattened JWS as JSON text, from p.
 * kid: the account URL; NULL puts the public JWK in the header instead
 * (newAccount, revocation by certificate key, the inner JWS of a key
 * change).  nonce: NULL leaves it out (the inner JWS of a key change).
 * payload: the JSON text; "" for POST-as-GET.
 */
apr_status_t cs_jws_sign(const char **jws, apr_pool_t *p, EVP_PKEY *key,
                         const char *kid, const char *nonce, const char *url,
                         const char *payload, const char **err);

/**
 * Check a flattened JWS (text) with key: its alg matches the key and the
 * signature verifies.  *protected_hdr and *payload are the decoded JSON
 * texts, from p.  For tests and for checking what a server echoes.
 */
apr_status_t cs_jws_verify(const char **protected_hdr, const char **payload,
                           apr_pool_t *p, EVP_PKEY *key, const char *jws,
                           const char **err);

#endif /* CS_JWS_H */
