/*
 * cs_seal.h: a private key sealed for one proxy's own processes (key.seal).
 *
 * CertService seals every key to the proxies' wrapping certificates
 * (key.cms: CMS AuthEnvelopedData, RSA-OAEP key transport).  Opening that
 * costs an RSA private-key operation and OpenSSL 3.0's generic key
 * decoders, about 1.2 ms: fine once per sync, too slow for each handshake
 * that misses dynamic mode's cache.  So the sync daemon, which has just
 * opened the envelope and checked the key against its certificate, also
 * writes key.seal: the same key under AES-256-GCM with a key derived by
 * HKDF-SHA256 from the wrapping private key.  Only a process that holds the
 * wrapping key can derive it, so on disk key.seal protects the key exactly
 * as key.cms does.  It is bound to its domain and serial (GCM associated
 * data): it cannot be moved to another name or version.
 *
 * Pure code: APR and OpenSSL 3.0 only.
 */
#ifndef CS_SEAL_H
#define CS_SEAL_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define CS_SEAL_KEY_LEN 32

typedef struct {
    unsigned char k[CS_SEAL_KEY_LEN];
    int ok;                     /* derived (else k is not a key) */
} cs_seal_key_t;

/** The sealing key of one wrapping private key, derived from its private
 *  number (RSA d or an EC scalar), so the same in every process that
 *  loaded that key, however its file is encoded.  Derive once, at
 *  startup. */
apr_status_t cs_seal_key_derive(cs_seal_key_t *out, EVP_PKEY *wrap_key);

/** cs_seal_key_t of every wrapping key (EVP_PKEY *), same order, from p
 *  and cleansed when p goes (a key that cannot be derived has ok = 0);
 *  NULL if none can. */
apr_array_header_t *cs_seal_keys_derive(apr_pool_t *p,
                                        const apr_array_header_t *wrap_keys);

/**
 * Seal key, whose certificate is leaf, for the version serial of name.
 * EC keys are stored as their curve, point and scalar (opened without a
 * decoder); other keys as PKCS#8.  The result is from p.
 * APR_EINVAL with *err if the key does not match leaf.
 */
apr_status_t cs_seal(unsigned char **out, apr_size_t *out_len,
                     apr_pool_t *p, EVP_PKEY *key, X509 *leaf,
                     const cs_seal_key_t *sk, const char *name,
                     const char *serial, const char **err);

/**
 * cs_seal() of a key and leaf that cs_bundle_verify() (or _ex) has just
 * found to be a pair (the same public key, and a private key that belongs
 * to it): the sync daemon's, which then does not make that check twice
 * (0.05 ms of ECDSA P-256 a bundle).  Anything else calls cs_seal().
 */
apr_status_t cs_seal_verified(unsigned char **out, apr_size_t *out_len,
                              apr_pool_t *p, EVP_PKEY *key, X509 *leaf,
                              const cs_seal_key_t *sk, const char *name,
                              const char *serial, const char **err);

/**
 * Open what cs_seal() made.  *key is the caller's (EVP_PKEY_free); with
 * key NULL, only whether it opens is checked (leaf is not used).
 * APR_ENOENT: not sealed with sk for this name and serial (or damaged:
 * GCM cannot tell which), so try another sealing key or key.cms;
 * APR_EINVAL: not a sealed key, or one that does not match leaf.
 * Every buffer that held the plaintext is cleansed.
 */
apr_status_t cs_seal_open(EVP_PKEY **key, const unsigned char *in,
                          apr_size_t len, X509 *leaf,
                          const cs_seal_key_t *sk, const char *name,
                          const char *serial, const char **err);

#endif /* CS_SEAL_H */
