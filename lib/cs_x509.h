/*
 * cs_x509.h: certificates: the built-in local CA issuer and the checks a
 * bundle passes before it is stored (CertService imports) or served
 * (mod_certsync).
 *
 * Pure code: APR and OpenSSL only, no httpd types.
 */
#ifndef CS_X509_H
#define CS_X509_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/** The facts about a leaf certificate that the API and store need. */
typedef struct {
    const char *serial;         /* lower-case hex, no leading zeros */
    apr_time_t not_before;
    apr_time_t not_after;
} cs_cert_info_t;

void cs_cert_info(cs_cert_info_t *info, apr_pool_t *p, X509 *cert);

/** A local certificate authority: its certificate and key. */
typedef struct {
    X509 *cert;
    EVP_PKEY *key;
} cs_ca_t;

/** Load a CA from PEM files (the key must match the certificate). */
apr_status_t cs_ca_load(cs_ca_t **ca, apr_pool_t *p, const char *cert_file,
                        const char *key_file, const char **err);

/**
 * Issue a leaf certificate for one name (DNS SAN; a "*.example.com"
 * wildcard allowed), for key, valid from now - 1 minute for lifetime,
 * random 128-bit serial, signed by the CA with SHA-256.  The chain
 * returned (array of X509 *) is the leaf followed by the CA certificate.
 */
apr_status_t cs_ca_issue(apr_array_header_t **chain, apr_pool_t *p,
                         const cs_ca_t *ca, EVP_PKEY *key, const char *name,
                         apr_interval_time_t lifetime, const char **err);

/**
 * The checks before a bundle may be stored or served, each failure named
 * in *err:
 *  - the chain is not empty and in order: every certificate is issued and
 *    signed by the next one;
 *  - key matches the leaf's public key, and its private key belongs to
 *    that public key (EVP_PKEY_pairwise_check);
 *  - the leaf is valid for name (exact, or the leaf's wildcard covers it,
 *    or name is itself the wildcard the leaf names);
 *  - now lies between the leaf's notBefore and notAfter.
 * Whether the chain ends in a trusted root is not checked here (CertService
 * trusts its issuers; mod_certsync may add a trust store).
 */
apr_status_t cs_bundle_verify(const apr_array_header_t *chain, EVP_PKEY *key,
                              const char *name, apr_time_t now,
                              const char **err);

/**
 * cs_bundle_verify for a caller that verified part of the chain before: the
 * signatures of the certificates from index checked on (each by the next)
 * are not verified again (checked 1: only the leaf's; INT_MAX: all).  For
 * the intermediates a batch of bundles shares.
 */
apr_status_t cs_bundle_verify_ex(const apr_array_header_t *chain,
                                 EVP_PKEY *key, const char *name,
                                 apr_time_t now, int checked,
                                 const char **err);

/**
 * cs_bundle_verify_ex for a chain whose leaf was read by
 * cs_pem_read_certs_bare, for the sync daemon's cold sync: the leaf's
 * signature is verified over its to-be-signed bytes (ECDSA or RSA
 * PKCS#1 v1.5 with a digest, as public CAs sign), and key must be an EC
 * key whose public point encodes to the leaf's key bytes and whose
 * private scalar gives that point.  A refusal may be this path's only (a
 * compressed point, another algorithm): the caller reads the leaf again
 * with cs_pem_read_certs and asks cs_bundle_verify_ex, whose answer and
 * reason stand.
 */
apr_status_t cs_bundle_verify_bare(const apr_array_header_t *chain,
                                   EVP_PKEY *key, const char *name,
                                   apr_time_t now, int checked,
                                   const char **err);

/**
 * cs_bundle_verify's checks without the key: for an import whose key was
 * sealed by the importer (certsuite import), which only the proxies can
 * open (and check: mod_certsync verifies every key it opens).
 */
apr_status_t cs_chain_verify(const apr_array_header_t *chain,
                             const char *name, apr_time_t now,
                             const char **err);

/**
 * A certificate signing request for one name, signed with key (SHA-256):
 * the name as a DNS SAN, and as the subject CN when it fits one (64
 * characters); DER from p.  For ACME's finalize (cs_acme_order.c).
 */
apr_status_t cs_csr_make(const unsigned char **csr, apr_size_t *csr_len,
                         apr_pool_t *p, EVP_PKEY *key, const char *domain,
                         const char **err);

/* --- tls-alpn-01 (RFC 8737) ------------------------------------------- */

/** The id-pe-acmeIdentifier extension (RFC 8737 3). */
#define CS_ACME_ID_OID      "1.3.6.1.5.5.7.1.31"
/** Bytes of its extnValue: the DER of an OCTET STRING of 32 bytes. */
#define CS_ACME_ID_LEN      34

/**
 * The tls-alpn-01 challenge certificate for domain: self-signed with key,
 * one DNS SAN (domain), the critical id-pe-acmeIdentifier extension
 * holding SHA-256(keyauth) as an ASN.1 OCTET STRING, a random serial,
 * valid from now - 1 minute for lifetime.  The certificate is freed with
 * p.  APR_EINVAL (and *err) for a name that is not an LDH host name.
 */
apr_status_t cs_tlsalpn_cert_make(X509 **cert, apr_pool_t *p, EVP_PKEY *key,
                                  const char *domain, const char *keyauth,
                                  apr_interval_time_t lifetime,
                                  const char **err);

/**
 * What a proxy checks before it answers an acme-tls/1 handshake with
 * cert and key: exactly one SAN, the DNS name domain; the
 * id-pe-acmeIdentifier extension present once, critical, an OCTET STRING
 * of 32 bytes (copied to digest when not NULL); key is the certificate's
 * key pair; now within its validity.  APR_EINVAL and *err naming the
 * first failure otherwise.
 */
apr_status_t cs_tlsalpn_cert_check(unsigned char *digest, X509 *cert,
                                   EVP_PKEY *key, const char *domain,
                                   apr_time_t now, const char **err);

#endif /* CS_X509_H */
