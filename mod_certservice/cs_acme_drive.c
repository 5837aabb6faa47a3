/*
 * cs_acme_drive.c: CertService's ACME job (cs_acme_drive.h): renewal
 * time, limiter, account, pre-check, order, store, backoff.
 *
 * Log tags used here (mod_certservice_private.h keeps the next free one):
 * CS00013, CS00015 ... CS00018, CS00021, CS00031 ... CS00034, CS00040;
 * tls-alpn-01: CS00100 ... CS00102.
 * dns-01: CS00095 ... CS00097.
 */
#include <stdarg.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_time.h>

#include "cs_acme_drive.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_sched.h"
#include "cs_service.h"
#include "cs_x509.h"

struct cs_acme_drive_t {
    apr_pool_t *pool;           /* the worker's */
    cs_acme_policy_t policy;
    const char *owner;
    const cs_acme_ops_t *ops;
    void *client;
    cs_log_fn *log;
    void *log_baton;
    apr_int64_t (*now)(void *baton);
    void *now_baton;
    /* The account: registered since the last failure; the key in use and
     * the sealed form it came from, both in key_pool (under pool). */
    int account_ok;
    apr_pool_t *key_pool;
    const char *account_cms;
    /* During a job, for the challenge responder. */
    cs_db_t *db;
    apr_pool_t *jp;
    const char *dns_err;        /* why dns-01 could not be published */
};

static void drive_log(cs_acme_drive_t *d, cs_log_level_t level,
                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void drive_log(cs_acme_drive_t *d, cs_log_level_t level,
                      const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!d->log) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    d->log(d->log_baton, level, buf);
}

static apr_int64_t drive_now(cs_acme_drive_t *d)
{
    return d->now ? d->now(d->now_baton) : apr_time_sec(apr_time_now());
}

/* ------------------------------------------------------------------ */
/* The ops over lib/cs_acme.c                                          */
/* ------------------------------------------------------------------ */

static apr_status_t op_directory(void *c, const char **err)
{
    return cs_acme_directory(c, err);
}

static int op_has_ari(void *c)
{
    return cs_acme_has_ari(c);
}

static apr_status_t op_account(const char **kid, void *c, EVP_PKEY *key,
                               const apr_array_header_t *contact,
                               const char **err)
{
    return cs_acme_account(kid, c, key, contact, err);
}

static apr_status_t op_issue(apr_array_header_t **chain, apr_pool_t *p,
                             void *c, EVP_PKEY *key, const char *domain,
                             const cs_acme_order_t *o, const char **err)
{
    return cs_acme_issue(chain, p, c, key, domain, o, err);
}

static apr_status_t op_profile_check(void *c, const char *profile,
                                     const char **err)
{
    return cs_acme_profile_check(c, profile, err);
}

static apr_status_t op_renewal_info(apr_int64_t *start, apr_int64_t *end,
                                    apr_int64_t *retry_after, void *c,
                                    apr_pool_t *p, X509 *cert,
                                    const char **err)
{
    return cs_acme_renewal_info(start, end, retry_after, c, p, cert, err);
}

static apr_status_t op_precheck(void *c, apr_pool_t *p, const char *domain,
                                int port, const char *dns_server,
                                const char *token, const char *expect,
                                const char **err)
{
    return cs_acme_precheck(c, p, domain, port, dns_server, token, expect,
                            err);
}

static apr_int64_t op_retry_after(void *c)
{
    return cs_acme_retry_after(c);
}

const cs_acme_ops_t cs_acme_client_ops = {
    op_directory, op_has_ari, op_account, op_issue, op_profile_check,
    op_renewal_info, op_precheck, op_retry_after
};

/* ------------------------------------------------------------------ */
/* The drive                                                           */
/* ------------------------------------------------------------------ */

apr_status_t cs_acme_drive_create(cs_acme_drive_t **pd, apr_pool_t *p,
                                  const cs_acme_policy_t *policy,
                                  const char *owner, cs_log_fn *log,
                                  void *log_baton)
{
    cs_acme_drive_t *d = apr_pcalloc(p, sizeof(*d));

    d->pool = p;
    d->policy = *policy;
    d->owner = apr_pstrdup(p, owner);
    d->log = log;
    d->log_baton = log_baton;
    *pd = d;
    return APR_SUCCESS;
}

void cs_acme_drive_set_client(cs_acme_drive_t *d, const cs_acme_ops_t *ops,
                              void *client)
{
    d->ops = ops;
    d->client = client;
}

void cs_acme_drive_set_clock(cs_acme_drive_t *d,
                             apr_int64_t (*now)(void *baton), void *baton)
{
    d->now = now;
    d->now_baton = baton;
}

apr_int64_t cs_acme_retry_delay(const cs_acme_policy_t *policy,
                                int attempts, apr_int64_t retry_after)
{
    apr_int64_t when = cs_sched_backoff(attempts, policy->backoff,
                                        policy->backoff_cap);

    return retry_after > when ? retry_after : when;
}

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
        drive_log(d, CS_LOG_ERR, CSLOGNO(00100) "acme: cannot make the "
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
    t.expires = drive_now(d) + CS_ACME_CHALLENGE_TTL;
    if ((rv = cs_store_tlsalpn_put(d->db, d->jp, &t))) {
        drive_log(d, CS_LOG_ERR, CSLOGNO(00101) "acme: cannot store the "
                  "tls-alpn-01 certificate for %s: %s", ch->domain,
                  cs_store_error(d->db, d->jp, rv));
        return rv;
    }
    drive_log(d, CS_LOG_DEBUG, CSLOGNO(00102) "acme: %s: tls-alpn-01 "
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
        drive_log(d, CS_LOG_ERR, CSLOGNO(00095) "acme: dns-01 for %s%s: %s",
                  ch->wildcard ? "*." : "", ch->domain, err);
        d->dns_err = apr_pstrcat(d->jp, "dns-01: ", err, NULL);
    }
    else if (rv) {
        drive_log(d, CS_LOG_WARN, CSLOGNO(00096) "acme: dns-01 for %s: "
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
                                drive_now(d) + CS_ACME_CHALLENGE_TTL);
    if (rv) {
        drive_log(d, CS_LOG_ERR, CSLOGNO(00013) "acme: cannot store the "
                  "http-01 token for %s: %s", ch->domain,
                  cs_store_error(d->db, d->jp, rv));
    }
    return rv;
}

apr_status_t cs_acme_drive_claim(const char **domain, cs_acme_drive_t *d,
                                 cs_db_t *db, apr_pool_t *p)
{
    apr_array_header_t *due;
    apr_status_t rv;
    int i, claimed;

    *domain = NULL;
    if ((rv = cs_store_job_due(&due, db, p, drive_now(d), 8))) {
        return rv;
    }
    for (i = 0; i < due->nelts; i++) {
        const char *name = APR_ARRAY_IDX(due, i, const char *);

        if (cs_store_job_claim(&claimed, db, p, name, d->owner,
                               drive_now(d), CS_ACME_CLAIM) == APR_SUCCESS
            && claimed) {
            *domain = name;
            return APR_SUCCESS;
        }
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* The account                                                         */
/* ------------------------------------------------------------------ */

/* Register (or find) the account of key, which lives in kp with cms, its
 * sealed form.  The client keeps using the previous key until the CA
 * accepted this one, so the previous key's pool goes only then; kp goes
 * on failure.  Either way a worker holds one account key however often
 * it looks the account up. */
static apr_status_t use_key(const char **got, cs_acme_drive_t *d,
                            apr_pool_t *kp, EVP_PKEY *key, const char *cms,
                            const char **err)
{
    apr_status_t rv = d->ops->account(got, d->client, key,
                                      d->policy.contact, err);

    if (rv != APR_SUCCESS) {
        if (rv == APR_EACCES) {
            *err = apr_pstrcat(d->jp, *err, ": set "
                               "CertServiceACMEExternalAccountBinding KEY-ID "
                               "MAC-KEY-FILE", NULL);
        }
        apr_pool_destroy(kp);
        return rv;
    }
    if (d->key_pool) {
        apr_pool_destroy(d->key_pool);
    }
    d->key_pool = kp;
    d->account_cms = apr_pstrdup(kp, cms);
    return APR_SUCCESS;
}

/* The account: from the database (key unsealed), else a new one (its URL
 * in *made). */
static apr_status_t ensure_account(cs_acme_drive_t *d, const char **made,
                                   const char **err)
{
    const cs_acme_policy_t *pol = &d->policy;
    const char *kid = NULL, *cms, *got;
    unsigned char *der;
    apr_size_t len;
    apr_array_header_t *rcpt;
    apr_pool_t *kp;
    EVP_PKEY *key;
    apr_status_t rv;
    int attempt;

    *made = NULL;
    for (attempt = 0; attempt < 2; attempt++) {
        rv = cs_store_account_get(&kid, &cms, d->db, d->jp,
                                  pol->directory_url);
        if (rv == APR_SUCCESS) {
            apr_pool_create(&kp, d->pool);
            if ((rv = cs_base64_decode(&der, &len, d->jp, cms))
                || (rv = cs_envelope_open(&key, kp, der, len, pol->seal_cert,
                                          pol->seal_key, err))) {
                *err = apr_psprintf(d->jp, "cannot unseal the ACME account "
                                    "key with CertServiceACMEAccountSeal: "
                                    "%s", *err ? *err : "bad base64");
                apr_pool_destroy(kp);
                return rv;
            }
            if ((rv = use_key(&got, d, kp, key, cms, err))) {
                return rv;
            }
            /* The CA forgot the account and made a new one for the key
             * (a test CA restarted): remember its URL. */
            if ((!kid || strcmp(kid, got) != 0)
                && (rv = cs_store_account_put(d->db, d->jp,
                                              pol->directory_url, got, cms,
                                              0))) {
                drive_log(d, CS_LOG_WARN, CSLOGNO(00032) "acme: account "
                          "%s registered again, but its URL could not be "
                          "stored: %s", got,
                          cs_store_error(d->db, d->jp, rv));
            }
            return APR_SUCCESS;
        }
        if (!APR_STATUS_IS_NOTFOUND(rv)) {
            *err = cs_store_error(d->db, d->jp, rv);
            return rv;
        }
        /* None yet: make one, register it, store it sealed.  Another
         * instance racing us wins the insert; we then use its account. */
        rcpt = apr_array_make(d->jp, 1, sizeof(X509 *));
        APR_ARRAY_PUSH(rcpt, X509 *) = pol->seal_cert;
        apr_pool_create(&kp, d->pool);
        if ((rv = cs_key_generate(&key, kp, CS_KEY_EC_P256))
            || (rv = cs_envelope_seal(&der, &len, d->jp, key, rcpt, err))) {
            *err = *err ? *err : "cannot make an account key";
            apr_pool_destroy(kp);
            return rv;
        }
        cms = cs_base64_encode(d->jp, der, len);
        if ((rv = use_key(&got, d, kp, key, cms, err))) {
            return rv;
        }
        if (cs_store_account_put(d->db, d->jp, pol->directory_url, got, cms,
                                 1) == APR_SUCCESS) {
            *made = got;
            return APR_SUCCESS;
        }
    }
    *err = "cannot store the ACME account";
    return APR_EGENERAL;
}

/* ------------------------------------------------------------------ */
/* Renewal time, pre-check                                             */
/* ------------------------------------------------------------------ */

/* When the certificate of b should be renewed, and when to look again. */
static apr_int64_t renew_time(cs_acme_drive_t *d, const cs_bundle_t *b,
                              apr_int64_t now, apr_int64_t *recheck,
                              const char **how)
{
    const cs_acme_policy_t *pol = &d->policy;
    apr_int64_t at = cs_sched_renew_at(b->not_before, b->not_after,
                                       b->serial, pol->renew_pm,
                                       pol->jitter_pm);
    apr_int64_t start, end, ra, ari;
    apr_array_header_t *chain;
    const char *err = NULL;

    *recheck = at;
    *how = "lifetime";
    if (!pol->ari || !b->chain_pem || d->ops->directory(d->client, &err)
        || !d->ops->has_ari(d->client)
        || cs_pem_read_certs(&chain, d->jp, b->chain_pem,
                             strlen(b->chain_pem), &err) || !chain->nelts) {
        return at;
    }
    if (d->ops->renewal_info(&start, &end, &ra, d->client, d->jp,
                             APR_ARRAY_IDX(chain, 0, X509 *), &err)) {
        drive_log(d, CS_LOG_INFO, CSLOGNO(00015) "acme: renewalInfo for "
                  "%s: %s; renewing by lifetime", b->domain, err);
        *recheck = now + 3600 < at ? now + 3600 : at;
        return at;
    }
    ari = cs_sched_renew_ari(start, end, b->serial, now);
    if (ari < 0) {
        return at;
    }
    *how = "ARI window";
    ra = ra > 0 ? ra : CS_ACME_ARI_RECHECK;
    *recheck = now + ra < ari ? now + ra : ari;
    return ari;
}

/* The dns-01 pre-check: _acme-challenge.DOMAIN, its CNAMEs followed,
 * ends in a zone we update (or the hook takes it). */
static apr_status_t precheck_dns01(cs_acme_drive_t *d, const char *domain,
                                   const char **err)
{
    const char *base = strncmp(domain, "*.", 2) == 0 ? domain + 2 : domain;
    const char *target, *where;
    apr_status_t rv;

    rv = cs_dns01_check(&target, &where, d->jp, d->policy.dns, base, err);
    if (rv) {
        *err = apr_pstrcat(d->jp, "dns-01 pre-check: ", *err, NULL);
        return rv;
    }
    drive_log(d, CS_LOG_DEBUG, CSLOGNO(00097) "acme: %s: dns-01 answer "
              "goes to TXT %s (%s)", domain, target, where);
    return APR_SUCCESS;
}

/* Pre-check: a probe token of ours must come back through
 * http://DOMAIN:PORT/.well-known/acme-challenge/ (dns-01 names: the
 * record's place instead). */
static apr_status_t precheck(cs_acme_drive_t *d, const char *domain,
                             apr_int64_t now, const char **err)
{
    unsigned char raw[16];
    const char *token, *expect;
    apr_status_t rv;

    if (d->policy.dns
        && (d->policy.dns_all || strncmp(domain, "*.", 2) == 0)) {
        return precheck_dns01(d, domain, err);
    }

    apr_generate_random_bytes(raw, sizeof(raw));
    token = apr_pstrcat(d->jp, "cs-precheck-",
                        cs_b64url_encode(d->jp, raw, sizeof(raw)), NULL);
    expect = apr_pstrcat(d->jp, token, ".precheck", NULL);
    if ((rv = cs_store_challenge_put(d->db, d->jp, token, domain, expect,
                                     now + 120))) {
        *err = cs_store_error(d->db, d->jp, rv);
        return rv;
    }
    rv = d->ops->precheck(d->client, d->jp, domain, d->policy.precheck_port,
                          d->policy.precheck_dns, token, expect, err);
    cs_store_challenge_delete(d->db, d->jp, token);
    return rv;
}

/* ------------------------------------------------------------------ */
/* The job                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    cs_acme_drive_t *d;
    cs_acme_order_t o;
} drive_issuer_t;

static apr_status_t drive_issue(apr_array_header_t **chain, apr_pool_t *p,
                                const cs_issuer_t *issuer, EVP_PKEY *key,
                                const char *domain, const char **err)
{
    const drive_issuer_t *di = issuer->baton;

    return di->d->ops->issue(chain, p, di->d->client, key, domain, &di->o,
                             err);
}

/* The order itself: a fresh key, the chain from the CA, the key sealed. */
static apr_status_t order(cs_bundle_t **b, cs_acme_drive_t *d,
                          const cs_bundle_t *old, int renewal,
                          const char *domain, const char *key_type,
                          const char *profile, const char **err)
{
    cs_service_t svc;
    cs_issuer_t issuer;
    drive_issuer_t di;
    apr_array_header_t *chain;
    int kt = cs_key_type_parse(key_type);

    memset(&svc, 0, sizeof(svc));
    memset(&issuer, 0, sizeof(issuer));
    memset(&di, 0, sizeof(di));
    di.d = d;
    di.o.profile = profile;
    /* CertServiceDNSChallenge all: dns-01 for every name (a wildcard
     * gets it anyway: the CA offers nothing else for one). */
    if (d->policy.dns && d->policy.dns_all) {
        di.o.challenges = CS_ACME_DNS01;
    }
    /* ARI: name the certificate this one replaces. */
    if (renewal && old->chain_pem
        && !cs_pem_read_certs(&chain, d->jp, old->chain_pem,
                              strlen(old->chain_pem), err)
        && chain->nelts) {
        cs_acme_cert_id(&di.o.replaces, d->jp, APR_ARRAY_IDX(chain, 0, X509 *));
    }
    *err = NULL;
    issuer.name = "acme";
    issuer.issue = drive_issue;
    issuer.baton = &di;
    svc.issuer = &issuer;
    svc.wrap_certs = d->policy.wrap_certs;
    return cs_service_issue(b, d->jp, &svc, domain,
                            kt < 0 ? CS_KEY_EC_P256 : (cs_key_type_t)kt,
                            err);
}

/* After any failure the account is looked up again (the CA may have
 * forgotten it: a test CA restarted), and when its key changed in the
 * database (a key rollover by any instance). */
static apr_status_t check_account(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                                  const char **err)
{
    const char *kid, *cms;
    apr_status_t rv;

    if (d->account_ok && d->account_cms
        && cs_store_account_get(&kid, &cms, d->db, d->jp,
                                d->policy.directory_url) == APR_SUCCESS
        && strcmp(cms, d->account_cms) != 0) {
        d->account_ok = 0;
    }
    if (d->account_ok) {
        return APR_SUCCESS;
    }
    if ((rv = ensure_account(d, &out->new_account, err)) == APR_SUCCESS) {
        d->account_ok = 1;
    }
    return rv;
}

static apr_status_t run_job(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                            const char *domain)
{
    const cs_acme_policy_t *pol = &d->policy;
    apr_pool_t *p = d->jp;
    cs_job_t *job;
    cs_bundle_t *old = NULL, *b = NULL;
    apr_int64_t now = drive_now(d), recheck, ra, when;
    const char *err = NULL, *how, *profile;
    apr_status_t rv;
    int granted, renewal, ca_not_involved = 0;

    if ((rv = cs_store_job_get(&job, d->db, p, domain))) {
        return APR_SUCCESS;
    }
    out->job = job;
    rv = cs_store_get(&old, d->db, p, domain);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        /* Deleted meanwhile. */
        out->result = CS_ACME_JOB_DELETED;
        out->job = NULL;
        return cs_store_job_delete(d->db, p, domain);
    }
    if (rv) {
        goto release;
    }
    renewal = old->serial && old->key_cms;
    /* A scheduled look at a certificate we have: renew only when due.
     * A queued (forced) or failed job is due already: a forced re-issue
     * that failed once must not wait for the old certificate's renewal. */
    if (renewal && strcmp(job->state, "valid") == 0) {
        when = renew_time(d, old, now, &recheck, &how);
        if (when > now) {
            job->next_at = recheck;
            job->renew_at = when;
            out->result = CS_ACME_JOB_NOT_DUE;
            out->how = how;
            drive_log(d, CS_LOG_DEBUG, CSLOGNO(00016) "acme: %s: renewal "
                      "at %" APR_INT64_T_FMT " (%s), next look at %"
                      APR_INT64_T_FMT, domain, when, how, recheck);
            goto release;
        }
    }
    /* The domain's profile, else the pool's: one the CA does not offer
     * fails here, before the limiter counts an order. */
    profile = job->profile ? job->profile : pol->profile;
    if (profile
        && (rv = d->ops->profile_check(d->client, profile, &err))) {
        if (rv == APR_NOTFOUND) {
            err = apr_psprintf(p, "profile '%s' (%s): %s", profile,
                               job->profile ? "chosen for the domain"
                                            : "CertServiceACMEProfile",
                               err);
            drive_log(d, CS_LOG_WARN, CSLOGNO(00040) "acme: %s: %s", domain,
                      err);
        }
        ca_not_involved = rv == APR_NOTFOUND;
        goto failed;
    }
    /* The cluster-wide limiter, before anything is asked of the CA. */
    if ((rv = cs_store_rate_take(&granted, &ra, d->db, p, "orders", now,
                                 pol->window, pol->limit, 0))) {
        drive_log(d, CS_LOG_WARN, CSLOGNO(00017) "acme: limiter: %s",
                  cs_store_error(d->db, p, rv));
        job->next_at = now + 5;
        goto release;
    }
    if (!granted) {
        drive_log(d, CS_LOG_INFO, CSLOGNO(00018) "acme: %s waits %"
                  APR_INT64_T_FMT " s for the order limit (%d per %"
                  APR_INT64_T_FMT " s)", domain, ra, pol->limit,
                  pol->window);
        job->next_at = now + ra;
        out->result = CS_ACME_JOB_LIMITED;
        out->delay = ra;
        goto release;
    }

    rv = check_account(out, d, &err);
    if (rv == APR_SUCCESS && pol->precheck_port > 0) {
        rv = precheck(d, domain, now, &err);
        ca_not_involved = rv != APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        d->dns_err = NULL;
        rv = order(&b, d, old, renewal, domain, job->key_type, profile,
                   &err);
        /* Why the dns-01 answer could not be published, with the
         * client's "cannot publish". */
        if (rv != APR_SUCCESS && d->dns_err) {
            err = apr_pstrcat(p, err ? err : "order failed", ": ",
                              d->dns_err, NULL);
        }
    }
    /* Deleted while the order ran: do not bring it back. */
    if (rv == APR_SUCCESS
        && APR_STATUS_IS_NOTFOUND(cs_store_job_get(&job, d->db, p,
                                                   domain))) {
        out->result = CS_ACME_JOB_DROPPED;
        out->bundle = b;
        out->job = NULL;
        drive_log(d, CS_LOG_INFO, CSLOGNO(00031) "acme: %s was deleted "
                  "during its order; certificate %s dropped", domain,
                  b->serial);
        return APR_SUCCESS;
    }
    out->job = job;
    if (rv == APR_SUCCESS
        && (rv = cs_store_put_bundle(d->db, p, b, "acme")) != APR_SUCCESS) {
        err = apr_pstrcat(p, "storing the certificate: ",
                          cs_store_error(d->db, p, rv), NULL);
    }
    if (rv == APR_SUCCESS) {
        job->state = "valid";
        job->attempts = 0;
        job->last_error = NULL;
        job->renew_at = renew_time(d, b, now, &recheck, &how);
        job->next_at = recheck;
        out->result = renewal ? CS_ACME_JOB_RENEWED : CS_ACME_JOB_ISSUED;
        out->bundle = b;
        out->how = how;
        goto release;
    }
failed:
    /* Failed: back off per domain, and for a rate limit pause everyone.
     * The account is looked up again unless the CA was not involved (a
     * domain failing the pre-check, or asking for a profile the CA does
     * not offer, again and again would otherwise unseal the account key
     * into the worker's pool each time). */
    if (!ca_not_involved) {
        d->account_ok = 0;
    }
    job->attempts++;
    job->state = "failed";
    job->last_error = err ? err : "unknown error";
    ra = 0;
    if (rv == APR_EAGAIN) {
        ra = d->ops->retry_after(d->client);
        if (ra > 0
            && (rv = cs_store_rate_take(&granted, &when, d->db, p, "orders",
                                        now, 0, 0, now + ra))) {
            drive_log(d, CS_LOG_WARN, CSLOGNO(00033) "acme: cannot pause "
                      "the order limiter for the CA's Retry-After of %"
                      APR_INT64_T_FMT " s: %s", ra,
                      cs_store_error(d->db, p, rv));
        }
    }
    when = cs_acme_retry_delay(pol, job->attempts, ra);
    job->next_at = now + when;
    out->result = CS_ACME_JOB_FAILED;
    out->delay = when;
    if ((rv = cs_store_set_error(d->db, p, domain, job->last_error))) {
        drive_log(d, CS_LOG_ERR, CSLOGNO(00034) "acme: cannot record the "
                  "error of %s on the domain: %s", domain,
                  cs_store_error(d->db, p, rv));
    }
release:
    if ((rv = cs_store_job_finish(d->db, p, job, d->owner))) {
        drive_log(d, CS_LOG_ERR, CSLOGNO(00021) "acme: cannot record the "
                  "outcome for %s: %s", domain, cs_store_error(d->db, p, rv));
    }
    return rv;
}

apr_status_t cs_acme_drive_job(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                               cs_db_t *db, apr_pool_t *p,
                               const char *domain)
{
    apr_status_t rv;

    memset(out, 0, sizeof(*out));
    d->db = db;
    d->jp = p;
    rv = run_job(out, d, domain);
    d->db = NULL;
    d->jp = NULL;
    return rv;
}
