/*
 * cs_crypto.h: key pairs, PEM/DER/base64 helpers, the key-pair check.
 * The private-key envelope is cs_envelope.h.
 *
 * Pure code: APR and OpenSSL only, no httpd types.  OpenSSL objects handed
 * out are owned by the pool given (freed by a pool cleanup).
 */
#ifndef CS_CRYPTO_H
#define CS_CRYPTO_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum {
    CS_KEY_EC_P256 = 0,         /* the default */
    CS_KEY_RSA_2048
} cs_key_type_t;

/** "ec-p256" / "rsa-2048" <-> cs_key_type_t. Returns -1 if unknown. */
int cs_key_type_parse(const char *name);
const char *cs_key_type_name(cs_key_type_t type);
/** The type of an existing key, or -1 if it is neither. */
int cs_key_type_of(EVP_PKEY *key);

/**
 * The key-type name of any key a bundle may carry: "ec-p256", "ec-p384",
 * "rsa-<bits>" (2048 bits or more); NULL for anything else (imports of
 * such keys are refused).
 */
const char *cs_key_describe(apr_pool_t *p, EVP_PKEY *key);

/** A new key pair, freed with the pool. */
apr_status_t cs_key_generate(EVP_PKEY **pkey, apr_pool_t *p,
                             cs_key_type_t type);

/* --- PEM/DER helpers (results owned by the pool) ---------------------- */

/** Read every certificate of a PEM text, in order. Array of X509 *. */
apr_status_t cs_pem_read_certs(apr_array_header_t **certs, apr_pool_t *p,
                               const char *pem, apr_size_t len,
                               const char **err);
/**
 * cs_pem_read_certs without decoding the certificates' public keys, which
 * OpenSSL 3.0 does for every certificate it reads, with a decoder context
 * of its own (88 of the 95 us a P-256 leaf takes).  For a leaf whose only
 * use is cs_bundle_verify_bare: X509_get0_pubkey() of such a certificate
 * is NULL, and X509_verify() of it fails (nothing to fetch its algorithms
 * from).  Its public key's bytes are there (X509_get0_pubkey_bitstr), and
 * writing it out gives the bytes read.
 */
apr_status_t cs_pem_read_certs_bare(apr_array_header_t **certs,
                                    apr_pool_t *p, const char *pem,
                                    apr_size_t len, const char **err);
/** Read a private key from PEM text (unencrypted PKCS#8 or traditional). */
apr_status_t cs_pem_read_key(EVP_PKEY **key, apr_pool_t *p, const char *pem,
                             apr_size_t len, const char **err);
/** Load certificates / a key from a file. */
apr_status_t cs_file_read_certs(apr_array_header_t **certs, apr_pool_t *p,
                                const char *path, const char **err);
apr_status_t cs_file_read_key(EVP_PKEY **key, apr_pool_t *p,
                              const char *path, const char **err);
/** PEM text of a chain (array of X509 *), from p. */
const char *cs_pem_write_certs(apr_pool_t *p,
                               const apr_array_header_t *certs);
/** PEM text (PKCS#8) of a private key, in memory the caller must cleanse:
 * for tests and for writing key files; never for the wire. */
char *cs_pem_write_key(apr_pool_t *p, EVP_PKEY *key, apr_size_t *len);

/** Base64 (standard alphabet, no newlines) encode/decode, from p. */
const char *cs_base64_encode(apr_pool_t *p, const unsigned char *data,
                             apr_size_t len);
apr_status_t cs_base64_decode(unsigned char **data, apr_size_t *len,
                              apr_pool_t *p, const char *text);

/**
 * Whether key is pub's key pair: the same public key, and a private key
 * that belongs to it.  Comparing public keys alone (EVP_PKEY_eq,
 * X509_check_private_key) does not tell: a decoder takes the public key
 * a PKCS#8 carries as it is.  EC: the scalar gives the point; other keys:
 * a signature (SHA-256) verifies with pub, one private-key operation
 * (RSA-2048 about 1 ms, where EVP_PKEY_pairwise_check tests the primes,
 * about 100 ms).  1 if it is, 0 if not.
 */
int cs_key_belongs(EVP_PKEY *key, EVP_PKEY *pub);

/** Whether an EC key's private scalar gives its public point (1), as
 * cs_key_belongs checks an EC pair; 0 if not, or not an EC key. */
int cs_ec_key_whole(EVP_PKEY *key);

/** SHA-256 fingerprint of a certificate's DER, lower-case hex, from p. */
const char *cs_cert_fingerprint(apr_pool_t *p, X509 *cert);

#endif /* CS_CRYPTO_H */
