/*
 * cs_crypto.h: key pairs and the private-key envelope.
 *
 * Pure code: APR and OpenSSL only, no httpd types.  OpenSSL objects handed
 * out are owned by the pool given (freed by a pool cleanup).
 *
 * The envelope (ARCHITECTURE.md section 3) is a CMS AuthEnvelopedData
 * (RFC 5083/5084): the private key, as PKCS#8 DER, encrypted with
 * AES-256-GCM; the content key transported to every wrapping certificate
 * with RSA-OAEP (SHA-256, MGF1-SHA-256).  An operator can check one with
 *   openssl cms -decrypt -inform DER -recip wrap.crt -inkey wrap.key
 *       | openssl pkey -inform DER
 * (cms -decrypt alone prints the PKCS#8 DER; pkey turns it into PEM).
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

/**
 * Encrypt a private key to every certificate in recipients (X509 *;
 * each must hold an RSA key of at least 2048 bits).  The plaintext key
 * bytes are cleansed before returning.  *der is allocated from p.
 * On failure *err says why (static or from p).
 */
apr_status_t cs_envelope_seal(unsigned char **der, apr_size_t *der_len,
                              apr_pool_t *p, EVP_PKEY *key,
                              const apr_array_header_t *recipients,
                              const char **err);

/**
 * Decrypt an envelope with one wrapping certificate and its private key.
 * Checks that the content is AuthEnvelopedData with AES-256-GCM (anything
 * else is refused).  The key is freed with the pool; plaintext buffers are
 * cleansed.  wrap_cert may be NULL: every recipient is then tried.
 * Returns APR_EINVAL if der is not an AES-256-GCM AuthEnvelopedData,
 * APR_ENOENT if wrap_cert is not one of its recipients (during a rotation:
 * try the other wrapping key), APR_EGENERAL if it does not decrypt (wrong
 * key or damaged envelope: OpenSSL does not tell these apart, on purpose).
 */
apr_status_t cs_envelope_open(EVP_PKEY **key, apr_pool_t *p,
                              const unsigned char *der, apr_size_t der_len,
                              X509 *wrap_cert, EVP_PKEY *wrap_key,
                              const char **err);

/**
 * cs_envelope_open(), and if pem is not NULL the envelope's PKCS#8 key as
 * PEM text ("PRIVATE KEY"), from p, in memory the caller must cleanse
 * (*pem_len bytes): the very bytes that were decrypted and parsed, where
 * cs_pem_write_key() would encode the key again.  For key files.
 */
apr_status_t cs_envelope_open_pem(EVP_PKEY **key, char **pem,
                                  apr_size_t *pem_len, apr_pool_t *p,
                                  const unsigned char *der,
                                  apr_size_t der_len, X509 *wrap_cert,
                                  EVP_PKEY *wrap_key, const char **err);

/**
 * The same envelope around any secret bytes (1 to 65536 of them): the
 * pool's TLS session ticket keys (cs_tkey.h).  The caller cleanses data.
 */
apr_status_t cs_envelope_seal_data(unsigned char **der, apr_size_t *der_len,
                                   apr_pool_t *p, const unsigned char *data,
                                   apr_size_t len,
                                   const apr_array_header_t *recipients,
                                   const char **err);

/**
 * Open what cs_envelope_seal_data() made into data (size bytes; *len the
 * content's length).  Errors as cs_envelope_open(); APR_EGENERAL too if
 * the content is larger than size.  Only data holds the plaintext after.
 */
apr_status_t cs_envelope_open_data(unsigned char *data, apr_size_t size,
                                   apr_size_t *len, apr_pool_t *p,
                                   const unsigned char *der,
                                   apr_size_t der_len, X509 *wrap_cert,
                                   EVP_PKEY *wrap_key, const char **err);

/* --- PEM/DER helpers (results owned by the pool) ---------------------- */

/** Read every certificate of a PEM text, in order. Array of X509 *. */
apr_status_t cs_pem_read_certs(apr_array_header_t **certs, apr_pool_t *p,
                               const char *pem, apr_size_t len,
                               const char **err);
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

/**
 * Whether der (an envelope, as cs_envelope_seal makes it) has cert among
 * its key transport recipients: 1 if it has, 0 if not, -1 if der is not
 * a CMS structure.  Needs no private key (recipient identifiers are
 * public): for checking a wrapping-key rotation, and sealed imports.
 */
int cs_envelope_has_recipient(const unsigned char *der, apr_size_t der_len,
                              X509 *cert);

/** SHA-256 fingerprint of a certificate's DER, lower-case hex, from p. */
const char *cs_cert_fingerprint(apr_pool_t *p, X509 *cert);

#endif /* CS_CRYPTO_H */
