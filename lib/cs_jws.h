/*
 * cs_jws.h: JSON Web Signatures as ACME uses them (RFC 7515 flattened JSON
 * serialisation, RFC 7517 JWK, RFC 7638 thumbprints, RFC 8555 section 6.2).
 *
 * Pure code: APR, OpenSSL and jansson only, no httpd types.  Keys are
 * ECDSA P-256 (ES256) or RSA of at least 2048 bits (RS256); an External
 * Account Binding (RFC 8555 7.3.4) is MACed with HS256, HS384 or HS512.
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

/**
 * An External Account Binding (RFC 8555 7.3.4): the key id and the MAC
 * key a CA hands out with an external account, the key decoded.  The key
 * is a secret: no error text or log line of this code carries it.
 */
typedef struct {
    const char *kid;
    const unsigned char *key;
    apr_size_t key_len;
    const char *alg;            /* "HS256", "HS384", "HS512"; NULL: HS256 */
} cs_eab_t;

/** The OpenSSL digest name of an EAB MAC algorithm ("HS256" ->
 * "SHA256"), NULL for one this code does not do. */
const char *cs_eab_digest(const char *alg);

/**
 * Decode an EAB MAC key as CAs hand it out: base64url (padding tolerated),
 * white space around it ignored (a file's final newline).  The decoded
 * bytes from p.  APR_EINVAL and *err (which never quotes the text) when it
 * is empty or not base64url.  The copies made on the way are cleansed.
 */
apr_status_t cs_eab_key_decode(unsigned char **key, apr_size_t *key_len,
                               apr_pool_t *p, const char *text,
                               const char **err);

/**
 * The externalAccountBinding member of a newAccount payload for url: a
 * flattened JWS (JSON text, from p) whose protected header is
 * {"alg", "kid": eab->kid, "url"}, whose payload is account_key's public
 * JWK and whose signature is the HMAC of the signing input with eab->key.
 */
apr_status_t cs_jws_eab(const char **jws, apr_pool_t *p,
                        const cs_eab_t *eab, EVP_PKEY *account_key,
                        const char *url, const char **err);

#endif /* CS_JWS_H */
