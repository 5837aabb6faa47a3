/*
 * cs_acme_challenge.c: the drive's challenge responder
 * (cs_acme_drive_challenge, cs_acme_drive.h): http-01 key authorizations
 * and tls-alpn-01 certificates in the store for the proxies, dns-01
 * records through lib/cs_dns.c.
 *
 * Log tags used here: CS00013; tls-alpn-01: CS00100 ... CS00102; dns-01:
 * CS00095 ... CS00097 (the pre-check's is in cs_acme_drive.c).
 */
#include <string.h>

#include <apr_strings.h>

#include "cs_acme_drive_private.h"
#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_x509.h"

/* tls-alpn-01 (RFC 8737): the challenge certificate with a fresh key,
 * the key sealed to the wrapping certificates like a bundle's, in the
 * store for any instance to hand to the proxies (GET /v1/acme-tls/D). */
static apr_status_t tlsalpn_challenge(cs_acme_drive_t *d,
                                      const cs_acme_challenge_t *ch,
                                      int setup)
{
    cs_tlsalpn_t t;
    apr_array_header_t *certs;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key;
    X509 *cert;
    const char *err = NULL;
    apr_status_t rv;

    if (!setup) {
        return cs_store_tlsalpn_delete(d->db, d->jp, ch->domain);
    }
    if ((rv = cs_key_generate(&key, d->jp, CS_KEY_EC_P256))
        || (rv = cs_tlsalpn_cert_make(&cert, d->jp, key, ch->domain,
                                      ch->keyauth,
                                      apr_time_from_sec(CS_ACME_TLSALPN_LIFE),
                                      &err))
        || (rv = cs_envelope_seal(&der, &len, d->jp, key,
                                  d->policy.wrap_certs, &err))) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00100) "acme: cannot make the "
                     "tls-alpn-01 certificate for %s: %s", ch->domain,
                     err ? err : "no key");
        return rv;
    }
    certs = apr_array_make(d->jp, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(certs, X509 *) = cert;
    memset(&t, 0, sizeof(t));
    t.domain = ch->domain;
    t.cert_pem = cs_pem_write_certs(d->jp, certs);
    t.key_cms = cs_base64_encode(d->jp, der, len);
    t.expires = cs_drive_now(d) + CS_ACME_CHALLENGE_TTL;
    if ((rv = cs_store_tlsalpn_put(d->db, d->jp, &t))) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00101) "acme: cannot store the "
                     "tls-alpn-01 certificate for %s: %s", ch->domain,
                     cs_store_error(d->db, d->jp, rv));
        return rv;
    }
    cs_drive_log(d, CS_LOG_DEBUG, CSLOGNO(00102) "acme: %s: tls-alpn-01 "
                 "certificate published (%s)", ch->domain,
                 cs_cert_fingerprint(d->jp, cert));
    return APR_SUCCESS;
}

/* dns-01: the TXT record through lib/cs_dns.c, with the drive's log. */
static apr_status_t drive_dns01(cs_acme_drive_t *d,
                                const cs_acme_challenge_t *ch, int setup)
{
    cs_dns_conf_t dc = *d->policy.dns;
    const char *err = NULL;
    apr_status_t rv;

    dc.log = d->log;
    dc.log_baton = d->log_baton;
    rv = cs_dns01_publish(d->jp, &dc, ch->domain, ch->keyauth, setup, &err);
    if (rv && setup) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00095) "acme: dns-01 for %s%s: %s",
                     ch->wildcard ? "*." : "", ch->domain, err);
        d->dns_err = apr_pstrcat(d->jp, "dns-01: ", err, NULL);
    }
    else if (rv) {
        cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00096) "acme: dns-01 for %s: "
                     "cannot remove the TXT record: %s", ch->domain, err);
    }
    return rv;
}

apr_status_t cs_acme_drive_challenge(void *baton,
                                     const cs_acme_challenge_t *ch, int setup)
{
    cs_acme_drive_t *d = baton;
    apr_status_t rv;

    if (ch->type == CS_ACME_TLSALPN01) {
        return tlsalpn_challenge(d, ch, setup);
    }
    if (ch->type == CS_ACME_DNS01 && d->policy.dns) {
        return drive_dns01(d, ch, setup);
    }
    if (ch->type != CS_ACME_HTTP01) {
        return APR_ENOTIMPL;
    }
    if (!setup) {
        return cs_store_challenge_delete(d->db, d->jp, ch->token);
    }
    rv = cs_store_challenge_put(d->db, d->jp, ch->token, ch->domain,
                                ch->keyauth,
                                cs_drive_now(d) + CS_ACME_CHALLENGE_TTL);
    if (rv) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00013) "acme: cannot store the "
                     "http-01 token for %s: %s", ch->domain,
                     cs_store_error(d->db, d->jp, rv));
    }
    return rv;
}
