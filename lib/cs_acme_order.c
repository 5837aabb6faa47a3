/*
 * cs_acme_order.c: orders (see cs_acme.h): newOrder, the authorizations
 * with the challenge chosen for each, finalization with a CSR (cs_x509.h), the
 * certificate download and the choice among alternate chains.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "cs_acme_private.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_x509.h"

static void wait_for(cs_acme_t *a, apr_int64_t retry_after)
{
    apr_int64_t s = retry_after;

    /* Honour Retry-After, within reason for a worker thread. */
    if (s < 1) {
        s = 1;
    }
    if (s > 10) {
        s = 10;
    }
    /* In slices, so that a stop (conf.stop) is not kept waiting. */
    for (s *= 10; s > 0 && !acme_stopping(a); s--) {
        apr_sleep(apr_time_from_msec(100));
    }
}

/* POST-as-GET url until its status is not one of the waiting ones. */
static apr_status_t poll_status(json_t **obj, cs_acme_t *a, apr_pool_t *p,
                                const char *url, const char *waiting,
                                const char *what, const char **err)
{
    apr_time_t deadline = apr_time_now() + a->conf.poll_max;
    const char *st;
    acme_resp_t r;
    apr_status_t rv;
    json_t *j;

    for (;;) {
        if ((rv = acme_post(&r, a, p, url, "", a->key, 0, NULL, what, err))) {
            return rv;
        }
        if (!(j = acme_body_json(p, &r, what, err))) {
            return APR_EGENERAL;
        }
        st = json_string_value(json_object_get(j, "status"));
        if (!st || !strstr(waiting, apr_pstrcat(p, " ", st, " ", NULL))) {
            *obj = j;
            return APR_SUCCESS;
        }
        json_decref(j);
        if (apr_time_now() >= deadline) {
            *err = apr_psprintf(p, "%s: still %s after %" APR_TIME_T_FMT
                                " s", what, acme_ca_text(p, st, 64),
                                apr_time_sec(a->conf.poll_max));
            return APR_TIMEUP;
        }
        wait_for(a, r.retry_after);
    }
}

/* The error of an invalid authorization: its challenge's error. */
static const char *authz_error(apr_pool_t *p, json_t *authz)
{
    json_t *ch = json_object_get(authz, "challenges"), *e;
    const char *t, *d;
    size_t i;

    for (i = 0; json_is_array(ch) && i < json_array_size(ch); i++) {
        e = json_object_get(json_array_get(ch, i), "error");
        if (json_is_object(e)) {
            t = json_string_value(json_object_get(e, "type"));
            d = json_string_value(json_object_get(e, "detail"));
            return apr_psprintf(p, "%s: %s",
                                t ? acme_ca_text(p, t, ACME_ERR_MAX)
                                  : "error",
                                d ? acme_ca_text(p, d, ACME_ERR_MAX)
                                  : "no detail");
        }
    }
    return "the authorization is invalid (no challenge error given)";
}

/* The challenge types, in the order of preference (cs_acme.h). */
static const struct {
    int type;
    const char *name;
} challenge_types[] = {
    { CS_ACME_HTTP01, "http-01" },
    { CS_ACME_TLSALPN01, "tls-alpn-01" },
    { CS_ACME_DNS01, "dns-01" }
};
#define N_CHALLENGE_TYPES \
    (sizeof(challenge_types) / sizeof(challenge_types[0]))

static int token_ok(const char *token)
{
    return token && *token && strlen(token) <= 128
           && !token[strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                   "opqrstuvwxyz0123456789-_")];
}

/* The challenge of authz to answer: the most preferred type in allowed
 * that it offers with a usable token and URL.  NULL (and *err naming what
 * was offered) when there is none. */
static json_t *choose_challenge(cs_acme_challenge_t *ch, const char **url,
                                apr_pool_t *p, json_t *authz, int allowed,
                                const char *domain, const char **err)
{
    json_t *list = json_object_get(authz, "challenges"), *c;
    const char *offered = "", *type;
    size_t i, k;

    for (k = 0; k < N_CHALLENGE_TYPES; k++) {
        if (!(allowed & challenge_types[k].type)) {
            continue;
        }
        for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
            c = json_array_get(list, i);
            type = json_string_value(json_object_get(c, "type"));
            if (!type || strcmp(type, challenge_types[k].name)
                || !token_ok(json_string_value(json_object_get(c, "token")))
                || !json_is_string(json_object_get(c, "url"))) {
                continue;
            }
            ch->type = challenge_types[k].type;
            ch->name = challenge_types[k].name;
            ch->token = acme_jstr(p, c, "token");
            *url = acme_jstr(p, c, "url");
            return c;
        }
    }
    for (i = 0; json_is_array(list) && i < json_array_size(list); i++) {
        type = json_string_value(json_object_get(json_array_get(list, i),
                                                 "type"));
        if (type) {
            offered = apr_pstrcat(p, offered, *offered ? ", " : "",
                                  acme_ca_text(p, type, 32), NULL);
        }
    }
    *err = apr_psprintf(p, "no usable challenge of a type this CertService "
                        "answers for %s (offered: %s)", domain,
                        *offered ? offered : "none");
    return NULL;
}

/* One authorization: answer the challenge chosen, wait until valid. */
static apr_status_t do_authz(cs_acme_t *a, apr_pool_t *p, const char *url,
                             const char *thumb, const char *domain,
                             int allowed, const char **err)
{
    acme_resp_t r;
    json_t *authz, *done = NULL;
    cs_acme_challenge_t ch;
    const char *st, *curl_ = NULL;
    apr_status_t rv;

    if ((rv = acme_post(&r, a, p, url, "", a->key, 0, NULL, "authorization",
                        err))) {
        return rv;
    }
    if (!(authz = acme_body_json(p, &r, "authorization", err))) {
        return APR_EGENERAL;
    }
    st = acme_jstr(p, authz, "status");
    if (st && strcmp(st, "valid") == 0) {
        json_decref(authz);
        return APR_SUCCESS;
    }
    if (!st || strcmp(st, "pending") != 0) {
        *err = apr_psprintf(p, "authorization for %s is %s: %s", domain,
                            st ? acme_ca_text(p, st, 64) : "without status",
                            authz_error(p, authz));
        json_decref(authz);
        return APR_EGENERAL;
    }
    if (!a->conf.challenge) {
        json_decref(authz);
        *err = "no challenge responder configured";
        return APR_EINVAL;
    }
    memset(&ch, 0, sizeof(ch));
    ch.domain = domain[0] == '*' && domain[1] == '.' ? domain + 2 : domain;
    ch.wildcard = json_is_true(json_object_get(authz, "wildcard"));
    if (!choose_challenge(&ch, &curl_, p, authz, allowed, domain, err)) {
        json_decref(authz);
        return APR_EGENERAL;
    }
    json_decref(authz);
    ch.keyauth = apr_pstrcat(p, ch.token, ".", thumb, NULL);
    if ((rv = a->conf.challenge(a->conf.challenge_baton, &ch, 1))) {
        *err = apr_psprintf(p, "cannot publish the %s answer for %s",
                            ch.name, domain);
        return rv;
    }
    rv = acme_post(&r, a, p, curl_, "{}", a->key, 0, NULL, "challenge", err);
    if (rv == APR_SUCCESS) {
        rv = poll_status(&done, a, p, url, " pending processing ",
                         "authorization", err);
    }
    a->conf.challenge(a->conf.challenge_baton, &ch, 0);
    if (rv) {
        return rv;
    }
    st = acme_jstr(p, done, "status");
    if (!st || strcmp(st, "valid") != 0) {
        *err = apr_psprintf(p, "validation of %s (%s) failed: %s", domain,
                            ch.name, authz_error(p, done));
        rv = APR_EGENERAL;
    }
    json_decref(done);
    return rv;
}

/* Whether the topmost certificate of chain names text as issuer or
 * subject. */
static int chain_matches(apr_pool_t *p, apr_array_header_t *chain,
                         const char *text)
{
    X509 *top = APR_ARRAY_IDX(chain, chain->nelts - 1, X509 *);
    char buf[512];

    X509_NAME_oneline(X509_get_issuer_name(top), buf, sizeof(buf));
    if (strstr(buf, text)) {
        return 1;
    }
    X509_NAME_oneline(X509_get_subject_name(top), buf, sizeof(buf));
    return strstr(buf, text) != NULL;
}

static apr_status_t download(apr_array_header_t **chain,
                             apr_array_header_t **alternates, cs_acme_t *a,
                             apr_pool_t *p, const char *url,
                             const char **err)
{
    acme_resp_t r;
    apr_status_t rv;

    if ((rv = acme_post(&r, a, p, url, "", a->key, 0,
                        "application/pem-certificate-chain", "certificate",
                        err))) {
        return rv;
    }
    if ((rv = cs_pem_read_certs(chain, p, r.body, r.len, err))
        || !(*chain)->nelts) {
        *err = apr_psprintf(p, "certificate: the CA sent no PEM chain (%s)",
                            rv ? *err : "empty");
        return APR_EGENERAL;
    }
    if (alternates) {
        *alternates = r.alternates;
    }
    return APR_SUCCESS;
}

static apr_status_t issue(apr_array_header_t **chain, apr_pool_t *p,
                          cs_acme_t *a, EVP_PKEY *key, const char *domain,
                          const cs_acme_order_t *o, const char **err)
{
    const char *replaces = o ? o->replaces : NULL;
    const char *profile = o ? o->profile : NULL;
    int answers = a->conf.challenges ? a->conf.challenges : CS_ACME_HTTP01;
    int allowed = o && o->challenges ? o->challenges & answers : answers;
    acme_resp_t r;
    json_t *payload, *order = NULL, *authzs;
    const char *order_url, *thumb, *finalize, *cert_url, *csr, *st;
    apr_array_header_t *alts, *alt_chain;
    const unsigned char *der;
    apr_size_t der_len;
    char *text;
    apr_status_t rv;
    size_t i;
    int k;

    *err = NULL;
    if ((rv = cs_acme_directory(a, err))) {
        return rv;
    }
    if (!a->kid || !a->key) {
        *err = "no ACME account (cs_acme_account() first)";
        return APR_EINVAL;
    }
    /* A profile the CA does not offer: no order at all. */
    if (profile && (rv = cs_acme_profile_check(a, profile, err))) {
        *err = apr_pstrdup(p, *err);
        return rv;
    }
    if ((rv = cs_jwk_thumbprint(&thumb, p, a->key))) {
        *err = "cannot compute the account key's thumbprint";
        return rv;
    }
    payload = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns",
                        "value", domain);
    if (replaces && a->renewal_info) {
        json_object_set_new(payload, "replaces", json_string(replaces));
    }
    if (profile) {
        json_object_set_new(payload, "profile", json_string(profile));
    }
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    rv = acme_post(&r, a, p, a->new_order, text ? text : "{}", a->key, 0, NULL,
                   "newOrder", err);
    free(text);
    if (rv) {
        return rv;
    }
    if (!r.location || !acme_url_ok(r.location)
        || !(order = acme_body_json(p, &r, "newOrder", err))) {
        *err = *err ? *err : "newOrder: no https order URL";
        json_decref(order);
        return APR_EGENERAL;
    }
    order_url = apr_pstrdup(p, r.location);
    acme_log(a, CS_LOG_DEBUG, "order %s for %s%s%s", order_url, domain,
             profile ? ", profile " : "", profile ? profile : "");

    /* Authorizations, one after the other (one name per order). */
    authzs = json_object_get(order, "authorizations");
    for (i = 0; json_is_array(authzs) && i < json_array_size(authzs); i++) {
        const char *u = json_string_value(json_array_get(authzs, i));
        if (!u) {
            continue;
        }
        if ((rv = do_authz(a, p, apr_pstrdup(p, u), thumb, domain,
                             allowed, err))) {
            json_decref(order);
            return rv;
        }
    }
    json_decref(order);

    if ((rv = poll_status(&order, a, p, order_url, " pending ", "order",
                          err))) {
        return rv;
    }
    st = acme_jstr(p, order, "status");
    finalize = acme_jstr(p, order, "finalize");
    json_decref(order);
    if (!st || (strcmp(st, "ready") && strcmp(st, "valid")) || !finalize) {
        *err = apr_psprintf(p, "order for %s is %s, not ready", domain,
                            st ? acme_ca_text(p, st, 64) : "without status");
        return APR_EGENERAL;
    }
    if (strcmp(st, "ready") == 0) {
        if ((rv = cs_csr_make(&der, &der_len, p, key, domain, err))) {
            return rv;
        }
        csr = cs_b64url_encode(p, der, der_len);
        payload = json_pack("{s:s}", "csr", csr);
        text = json_dumps(payload, JSON_COMPACT);
        json_decref(payload);
        rv = acme_post(&r, a, p, finalize, text ? text : "{}", a->key, 0, NULL,
                       "finalize", err);
        free(text);
        if (rv) {
            return rv;
        }
    }
    if ((rv = poll_status(&order, a, p, order_url, " ready processing ",
                          "order", err))) {
        return rv;
    }
    st = acme_jstr(p, order, "status");
    cert_url = acme_jstr(p, order, "certificate");
    json_decref(order);
    if (!st || strcmp(st, "valid") || !cert_url) {
        *err = apr_psprintf(p, "order for %s ended %s without a certificate",
                            domain,
                            st ? acme_ca_text(p, st, 64) : "without status");
        return APR_EGENERAL;
    }
    if ((rv = download(chain, &alts, a, p, cert_url, err))) {
        return rv;
    }
    if (a->conf.preferred_chain
        && !chain_matches(p, *chain, a->conf.preferred_chain)) {
        for (k = 0; k < alts->nelts; k++) {
            if (download(&alt_chain, NULL, a, p,
                         APR_ARRAY_IDX(alts, k, const char *), err)
                == APR_SUCCESS
                && chain_matches(p, alt_chain, a->conf.preferred_chain)) {
                *chain = alt_chain;
                break;
            }
        }
        *err = NULL;
    }
    acme_log(a, CS_LOG_INFO, "certificate for %s issued (%d certificates "
             "in the chain, %d alternate chains)", domain, (*chain)->nelts,
             alts->nelts);
    return APR_SUCCESS;
}


apr_status_t cs_acme_issue(apr_array_header_t **chain, apr_pool_t *p,
                           cs_acme_t *a, EVP_PKEY *key, const char *domain,
                           const cs_acme_order_t *o, const char **err)
{
    apr_status_t rv = issue(chain, p, a, key, domain, o, err);

    /* Bounded like the other calls' errors (it goes to the log and the
     * store). */
    if (rv) {
        *err = acme_cut_err(p, *err);
    }
    return rv;
}
