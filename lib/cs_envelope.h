/*
 * cs_envelope.h: the private-key envelope.
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
#ifndef CS_ENVELOPE_H
#define CS_ENVELOPE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

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

/**
 * Whether der (an envelope, as cs_envelope_seal makes it) has cert among
 * its key transport recipients: 1 if it has, 0 if not, -1 if der is not
 * a CMS structure.  Needs no private key (recipient identifiers are
 * public): for checking a wrapping-key rotation, and sealed imports.
 */
int cs_envelope_has_recipient(const unsigned char *der, apr_size_t der_len,
                              X509 *cert);

#endif /* CS_ENVELOPE_H */
