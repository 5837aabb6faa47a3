/*
 * cs_acme_drive.c: CertService's ACME job (cs_acme_drive.h): renewal
 * time, limiter, account, pre-check, order, store, backoff.
 *
 * Log tags used here (mod_certservice_private.h keeps the next free one):
 * CS00013, CS00015 ... CS00018, CS00021, CS00031 ... CS00034, CS00040,
 * CS00043 ... CS00049 (several CAs) but those of cs_acme_cas.c.  The
 * challenge responders are in cs_acme_challenge.c, the CAs' health and
 * budgets in cs_acme_cas.c.
 */
#include <stdarg.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_time.h>
#include <openssl/sha.h>

#include "cs_acme_drive_private.h"
#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_jws.h"
#include "cs_psl.h"
#include "cs_sched.h"
#include "cs_service.h"
#include "cs_x509.h"

void cs_drive_log(cs_acme_drive_t *d, cs_log_level_t level,
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

apr_int64_t cs_drive_now(cs_acme_drive_t *d)
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

int cs_acme_ca_name_ok(const char *name)
{
    const char *c;

    if (!name || !*name || strlen(name) > 16) {
        return 0;
    }
    for (c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')
              || *c == '-')) {
            return 0;
        }
    }
    return 1;
}

int cs_acme_drive_add_ca(cs_acme_drive_t *d, const cs_acme_ca_t *ca)
{
    drive_ca_t *c;

    if (!d->cas) {
        d->cas = apr_array_make(d->pool, 2, sizeof(drive_ca_t *));
    }
    if (d->cas->nelts >= CS_ACME_MAX_CAS) {
        return -1;
    }
    c = apr_pcalloc(d->pool, sizeof(*c));
    c->conf = *ca;
    c->index = d->cas->nelts;
    c->accts = apr_array_make(d->pool, 1, sizeof(drive_acct_t *));
    APR_ARRAY_PUSH(d->cas, drive_ca_t *) = c;
    return c->index;
}

static void use_acct(cs_acme_drive_t *d, drive_acct_t *a)
{
    d->acct = a;
    d->ops = a->ops;
    d->client = a->client;
}

apr_status_t cs_acme_drive_add_account(cs_acme_drive_t *d, int ca,
                                       const cs_acme_ops_t *ops,
                                       void *client)
{
    drive_ca_t *c;
    drive_acct_t *a;
    int n;

    if (!d->cas || ca < 0 || ca >= d->cas->nelts) {
        return APR_EINVAL;
    }
    c = APR_ARRAY_IDX(d->cas, ca, drive_ca_t *);
    if ((n = c->accts->nelts) >= CS_ACME_MAX_ACCOUNTS) {
        return APR_EINVAL;
    }
    a = apr_pcalloc(d->pool, sizeof(*a));
    a->ops = ops;
    a->client = client;
    a->key = n ? apr_psprintf(d->pool, "%s#%d", c->conf.directory_url,
                              n + 1)
               : c->conf.directory_url;
    a->limiter = cs_acme_budget_row(d->pool, ca, c->conf.name, n);
    APR_ARRAY_PUSH(c->accts, drive_acct_t *) = a;
    if (!d->acct) {
        use_acct(d, a);
    }
    return APR_SUCCESS;
}

void cs_acme_drive_set_client(cs_acme_drive_t *d, const cs_acme_ops_t *ops,
                              void *client)
{
    cs_acme_ca_t ca;

    if (!d->cas || !d->cas->nelts) {
        memset(&ca, 0, sizeof(ca));
        ca.name = "default";
        ca.directory_url = d->policy.directory_url;
        cs_acme_drive_add_ca(d, &ca);
    }
    cs_acme_drive_add_account(d, 0, ops, client);
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

apr_status_t cs_acme_drive_claim(const char **domain, cs_acme_drive_t *d,
                                 cs_db_t *db, apr_pool_t *p)
{
    apr_array_header_t *due;
    apr_status_t rv;
    int i, claimed;

    *domain = NULL;
    /* Earliest deadline first (cs_sched_deadline()). */
    if ((rv = cs_store_job_due_prio(&due, db, p, cs_drive_now(d), 8))) {
        return rv;
    }
    for (i = 0; i < due->nelts; i++) {
        const char *name = APR_ARRAY_IDX(due, i, const char *);

        if (cs_store_job_claim(&claimed, db, p, name, d->owner,
                               cs_drive_now(d), CS_ACME_CLAIM) == APR_SUCCESS
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
    if (d->acct->key_pool) {
        apr_pool_destroy(d->acct->key_pool);
    }
    d->acct->key_pool = kp;
    d->acct->account_cms = apr_pstrdup(kp, cms);
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
        rv = cs_store_account_get(&kid, &cms, d->db, d->jp, d->acct->key);
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
                && (rv = cs_store_account_put(d->db, d->jp, d->acct->key,
                                              got, cms, 0))) {
                cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00032) "acme: account "
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
        if (cs_store_account_put(d->db, d->jp, d->acct->key, got, cms, 1)
            == APR_SUCCESS) {
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
        cs_drive_log(d, CS_LOG_INFO, CSLOGNO(00015) "acme: renewalInfo for "
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
    cs_drive_log(d, CS_LOG_DEBUG, CSLOGNO(00097) "acme: %s: dns-01 answer "
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
        cs_acme_cert_id(&di.o.replaces, d->jp,
                        APR_ARRAY_IDX(chain, 0, X509 *));
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

    drive_acct_t *a = d->acct;

    if (a->account_ok && a->account_cms
        && cs_store_account_get(&kid, &cms, d->db, d->jp, a->key)
           == APR_SUCCESS
        && strcmp(cms, a->account_cms) != 0) {
        a->account_ok = 0;
    }
    if (a->account_ok) {
        return APR_SUCCESS;
    }
    if ((rv = ensure_account(d, &out->new_account, err)) == APR_SUCCESS) {
        a->account_ok = 1;
    }
    return rv;
}

static apr_status_t run_job(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                            const char *domain)
{
    const cs_acme_policy_t *pol = &d->policy;
    apr_pool_t *p = d->jp;
    cs_job_t *job;
    cs_job_ca_t jc;
    cs_sched_job_t sj;
    cs_bundle_t *old = NULL, *b = NULL;
    const cs_bundle_t *cur;
    apr_array_header_t *health = NULL, *cas;
    drive_ca_t *c, *issuer = NULL;
    drive_acct_t *a;
    cs_ca_health_t *h;
    apr_int64_t now = cs_drive_now(d), recheck, ra, when, claimed_at;
    apr_int64_t down_wait = 0, budget_wait = 0, pause = 0;
    const char *err = NULL, *how, *profile, *errs = NULL;
    apr_status_t rv;
    apr_status_t srv;
    int granted, renewal = 0, i, k, which, ari, tried = 0, prechecked = 0;
    int several = d->cas->nelts > 1, all_limited = 0;
    fail_kind_t kind;

    if ((rv = cs_store_job_get(&job, d->db, p, domain))) {
        return APR_SUCCESS;
    }
    out->job = job;
    claimed_at = job->next_at;
    if (cs_store_job_ca_get(&jc, d->db, p, domain) != APR_SUCCESS) {
        memset(&jc, 0, sizeof(jc));
    }
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
    /* The CA that issued the certificate answers ARI for it (a job from
     * before several CAs: the first). */
    issuer = !renewal ? NULL
             : jc.ca ? cs_drive_ca_by_name(d, jc.ca) : cs_drive_ca_at(d, 0);
    c = issuer && issuer->accts->nelts ? issuer : cs_drive_ca_at(d, 0);
    use_acct(d, APR_ARRAY_IDX(c->accts, 0, drive_acct_t *));
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
            cs_drive_log(d, CS_LOG_DEBUG, CSLOGNO(00016) "acme: %s: renewal "
                         "at %" APR_INT64_T_FMT " (%s), next look at %"
                         APR_INT64_T_FMT, domain, when, how, recheck);
            goto release;
        }
    }
    if (cs_store_ca_list(&health, d->db, p) != APR_SUCCESS) {
        health = NULL;
    }
    cas = cs_drive_ca_order(d, jc.ca_refused);
    for (i = 0; i < cas->nelts; i++) {
        c = APR_ARRAY_IDX(cas, i, drive_ca_t *);
        if (!c->accts->nelts) {
            continue;
        }
        h = cs_drive_health_of(health, c->conf.name);
        if (h && strcmp(h->state, "down") == 0 && h->next_retry > now) {
            cs_drive_log(d, CS_LOG_DEBUG, CSLOGNO(00043) "acme: %s: CA %s is "
                         "down, not asked for %" APR_INT64_T_FMT " s", domain,
                         c->conf.name, h->next_retry - now);
            if (!down_wait || h->next_retry - now < down_wait) {
                down_wait = h->next_retry - now;
            }
            continue;
        }
        a = APR_ARRAY_IDX(c->accts, c->next_acct % c->accts->nelts,
                          drive_acct_t *);
        use_acct(d, a);
        err = NULL;
        /* The directory: whether the CA answers, and has ARI.  A CA
         * without a usable one is down, whatever the reason. */
        if ((rv = d->ops->directory(d->client, &err))) {
            rv = rv == APR_EAGAIN ? rv : APR_ECONNREFUSED;
            goto ca_failed;
        }
        /* The domain's profile, else the CA's, else the pool's: one the
         * CA does not offer fails here, before a budget counts it. */
        profile = job->profile ? job->profile
                  : c->conf.profile ? c->conf.profile : pol->profile;
        if (profile
            && (rv = d->ops->profile_check(d->client, profile, &err))) {
            if (rv == APR_NOTFOUND) {
                err = apr_psprintf(p, "profile '%s' (%s): %s", profile,
                                   job->profile ? "chosen for the domain"
                                                : "CertServiceACMEProfile",
                                   err);
                cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00040) "acme: %s: %s",
                             domain, err);
            }
            goto ca_failed;
        }
        ari = issuer == c && pol->ari && d->ops->has_ari(d->client);
        /* The budgets, the accounts in turn. */
        granted = 0;
        which = 0;
        for (k = 0; k < c->accts->nelts && !granted; k++) {
            int n = (c->next_acct + k) % c->accts->nelts;

            a = APR_ARRAY_IDX(c->accts, n, drive_acct_t *);
            if ((rv = cs_drive_take_budget(&granted, &ra, &which, d, c, a,
                                           domain, ari, now))) {
                cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00017) "acme: limiter: "
                             "%s", cs_store_error(d->db, p, rv));
                job->next_at = now + 5;
                goto release;
            }
            if (granted) {
                c->next_acct = n + 1;
                use_acct(d, a);
            }
            else if (which != CS_SCHED_BUDGET_ACCOUNT) {
                break;
            }
        }
        if (!granted) {
            cs_drive_log(d, CS_LOG_INFO, CSLOGNO(00046) "acme: %s: no %s "
                         "budget left at CA %s for %" APR_INT64_T_FMT " s",
                         domain,
                         which == CS_SCHED_BUDGET_GLOBAL ? "global"
                         : which == CS_SCHED_BUDGET_DOMAIN
                         ? "registered domain" : "account",
                         c->conf.name, ra);
            if (!budget_wait || ra < budget_wait) {
                budget_wait = ra;
            }
            if (which == CS_SCHED_BUDGET_GLOBAL) {
                /* Every CA counts against it: none can help. */
                all_limited = 1;
                break;
            }
            continue;
        }
        tried++;
        rv = check_account(out, d, &err);
        if (rv == APR_SUCCESS && pol->precheck_port > 0 && !prechecked) {
            /* The domain's, whichever CA: a failure is its own. */
            prechecked = 1;
            if ((rv = precheck(d, domain, now, &err))) {
                goto failed;
            }
        }
        if (rv == APR_SUCCESS) {
            d->dns_err = NULL;
            rv = order(&b, d, old, ari, domain, job->key_type, profile,
                       &err);
            /* Why the dns-01 answer could not be published, with the
             * client's "cannot publish". */
            if (rv != APR_SUCCESS && d->dns_err) {
                err = apr_pstrcat(p, err ? err : "order failed", ": ",
                                  d->dns_err, NULL);
            }
        }
        if (rv == APR_SUCCESS) {
            cs_drive_health_record(d, c, h, now, 1, 0, NULL);
            cs_drive_count_order(d, c, "valid");
            out->ca = c->conf.name;
            if (renewal && issuer && issuer != c) {
                out->moved_from = issuer->conf.name;
            }
            jc.ca = c->conf.name;
            goto issued;
        }
        /* The CA may have forgotten the account (a test CA restarted):
         * look it up again next time. */
        a->account_ok = 0;
ca_failed:
        kind = cs_drive_fail_kind(rv, err);
        cs_drive_count_order(d, c, cs_drive_fail_result(kind));
        if (kind == FAIL_LIMITED) {
            /* This account waits as the CA asked; everyone using it. */
            ra = d->ops->retry_after(d->client);
            if (ra > 0
                && (srv = cs_store_rate_take(&granted, &when, d->db, p,
                                             d->acct->limiter, now, 0, 0,
                                             now + ra))) {
                cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00033) "acme: cannot "
                             "pause the order limiter for the CA's "
                             "Retry-After of %" APR_INT64_T_FMT " s: %s", ra,
                             cs_store_error(d->db, p, srv));
            }
            pause = ra > pause ? ra : pause;
        }
        if (kind == FAIL_REFUSED
            && !cs_drive_in_list(jc.ca_refused, c->conf.name)) {
            jc.ca_refused = jc.ca_refused
                ? apr_pstrcat(p, jc.ca_refused, " ", c->conf.name, NULL)
                : c->conf.name;
        }
        if (kind == FAIL_DOMAIN) {
            /* It answered. */
            cs_drive_health_record(d, c, h, now, 1, 0, NULL);
        }
        else if (kind != FAIL_UNUSABLE || rv == APR_EACCES) {
            cs_drive_health_record(d, c, h, now, 0, kind == FAIL_DOWN, err);
        }
        err = err ? err : "unknown error";
        errs = !several ? err
               : errs ? apr_psprintf(p, "%s; CA %s: %s", errs, c->conf.name,
                                     err)
               : apr_psprintf(p, "CA %s: %s", c->conf.name, err);
        if (kind == FAIL_DOMAIN) {
            err = errs;
            goto failed;
        }
        if (i + 1 < cas->nelts) {
            cs_drive_log(d, CS_LOG_NOTICE, CSLOGNO(00044) "acme: %s: CA %s "
                         "failed (%s); trying the next CA", domain,
                         c->conf.name, err);
        }
    }
    if (!errs && (all_limited || budget_wait)) {
        cs_drive_log(d, CS_LOG_INFO, CSLOGNO(00018) "acme: %s waits %"
                     APR_INT64_T_FMT " s for the order budgets (%d per %"
                     APR_INT64_T_FMT " s per account)", domain, budget_wait,
                     pol->limit, pol->window);
        job->next_at = now + budget_wait;
        out->result = CS_ACME_JOB_LIMITED;
        out->delay = budget_wait;
        goto release;
    }
    if (!errs && down_wait) {
        /* Every CA is down: not the domain's failure. */
        job->next_at = now + down_wait;
        out->result = CS_ACME_JOB_LIMITED;
        out->delay = down_wait;
        goto release;
    }
    err = errs;
    goto failed;

issued:
    /* Deleted while the order ran: do not bring it back. */
    if (APR_STATUS_IS_NOTFOUND(cs_store_job_get(&job, d->db, p, domain))) {
        out->result = CS_ACME_JOB_DROPPED;
        out->bundle = b;
        out->job = NULL;
        cs_drive_log(d, CS_LOG_INFO, CSLOGNO(00031) "acme: %s was deleted "
                     "during its order; certificate %s dropped", domain,
                     b->serial);
        return APR_SUCCESS;
    }
    out->job = job;
    if ((rv = cs_store_put_bundle(d->db, p, b, "acme")) != APR_SUCCESS) {
        err = apr_pstrcat(p, "storing the certificate: ",
                          cs_store_error(d->db, p, rv), NULL);
        goto failed;
    }
    job->state = "valid";
    job->attempts = 0;
    job->last_error = NULL;
    job->renew_at = renew_time(d, b, now, &recheck, &how);
    job->next_at = recheck;
    out->result = renewal ? CS_ACME_JOB_RENEWED : CS_ACME_JOB_ISSUED;
    out->bundle = b;
    out->how = how;
    goto release;

failed:
    /* Failed: back off per domain (never sooner than a CA's
     * Retry-After). */
    job->attempts++;
    job->state = "failed";
    job->last_error = err ? err : "unknown error";
    when = cs_acme_retry_delay(pol, job->attempts, pause);
    job->next_at = now + when;
    out->result = CS_ACME_JOB_FAILED;
    out->delay = when;
    if ((rv = cs_store_set_error(d->db, p, domain, job->last_error))) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00034) "acme: cannot record the "
                     "error of %s on the domain: %s", domain,
                     cs_store_error(d->db, p, rv));
    }
release:
    if ((rv = cs_store_job_finish(d->db, p, job, d->owner))) {
        cs_drive_log(d, CS_LOG_ERR, CSLOGNO(00021) "acme: cannot record the "
                     "outcome for %s: %s", domain,
                     cs_store_error(d->db, p, rv));
        return rv;
    }
    /* Its place in the queue: a certificate's deadline, else the time
     * it was first queued. */
    cur = b ? b : renewal ? old : NULL;
    memset(&sj, 0, sizeof(sj));
    sj.queued_at = jc.has_prio ? jc.prio : claimed_at;
    if (cur) {
        sj.not_before = cur->not_before;
        sj.not_after = cur->not_after;
    }
    jc.prio = cs_sched_deadline(&sj);
    if ((rv = cs_store_job_ca_set(d->db, p, domain, &jc))) {
        cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00049) "acme: cannot record the "
                     "CA and queue place of %s: %s", domain,
                     cs_store_error(d->db, p, rv));
    }
    return APR_SUCCESS;
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
