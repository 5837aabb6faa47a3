/*
 * mod_certservice_admin.c: the endpoints of the admin role (domains:
 * issue or queue, import, delete, list, revoke; the ACME account and its
 * key rollover) and the public answer to an http-01 challenge.
 */
#include <openssl/crypto.h>

#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_acme.h"
#include "cs_envelope.h"
#include "cs_jws.h"
#include "cs_metrics.h"
#include "cs_service.h"
#include "mod_certservice_private.h"

static cs_service_t *cs_service(cs_req_t *q, const char **why)
{
    cs_service_t *svc = apr_pcalloc(q->r->pool, sizeof(*svc));

    if (!q->conf->wrap_certs || !q->conf->wrap_certs->nelts) {
        *why = "no wrapping certificate configured "
               "(CertServiceWrapCertificate)";
        return NULL;
    }
    svc->wrap_certs = q->conf->wrap_certs;
    if (q->conf->ca) {
        svc->issuer = cs_issuer_local_ca(q->r->pool, q->conf->ca,
                                         q->conf->lifetime);
    }
    return svc;
}

/* Stores a new bundle and answers with the domain's state: 201 if the
 * domain was unknown in the transaction that stored it, else 200 (a check
 * before would race a concurrent PUT or DELETE of the same name). */
static int cs_store_and_reply(cs_req_t *q, cs_bundle_t *b,
                              const char *what_new, const char *what_known)
{
    apr_status_t rv = cs_store_put_bundle(&q->db, q->r->pool, b,
                                          q->caller.who);

    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00004)
                  "admin '%s': %s %s: serial %s, expires %" APR_INT64_T_FMT
                  ", seq %" APR_INT64_T_FMT, q->caller.who,
                  b->created ? what_new : what_known, b->domain, b->serial,
                  b->not_after, b->seq);
    return cs_send_json(q->r, b->created ? HTTP_CREATED : HTTP_OK,
                        cs_json_domain(b, NULL));
}

/* Several CAs: the CA that issued the domain's certificate, and those
 * that refused it (tried last). */
static void cs_acme_ca_json(json_t *acme, cs_req_t *q, const char *domain)
{
    cs_job_ca_t jc;

    if (!acme
        || cs_store_job_ca_get(&jc, &q->db, q->r->pool, domain)
           != APR_SUCCESS) {
        return;
    }
    json_object_set_new(acme, "ca", jc.ca ? json_string(jc.ca)
                                          : json_null());
    json_object_set_new(acme, "ca_refused", jc.ca_refused
                                            ? json_string(jc.ca_refused)
                                            : json_null());
}

/* The domain's place in the ACME queue, for GET /v1/domains/DOMAIN. */
static void cs_acme_json(json_t *j, cs_req_t *q, const char *domain)
{
    cs_job_t *job;
    const char *profile;

    if (cs_store_job_get(&job, &q->db, q->r->pool, domain) != APR_SUCCESS) {
        return;
    }
    profile = job->profile ? job->profile : q->conf->acme_profile;
    json_object_set_new(j, "acme", json_pack(
        "{s:s, s:i, s:I, s:I, s:o, s:o, s:o}",
        "state", job->state, "attempts", job->attempts,
        "next_attempt", (json_int_t)job->next_at,
        "renew_at", (json_int_t)job->renew_at,
        "last_error", job->last_error ? json_string(job->last_error)
                                      : json_null(),
        "profile", profile ? json_string(profile) : json_null(),
        "profile_source", job->profile ? json_string("domain")
                          : profile ? json_string("CertServiceACMEProfile")
                          : json_null()));
    cs_acme_ca_json(json_object_get(j, "acme"), q, domain);
}

static int cs_acme_enqueue(cs_req_t *q, const char *domain, int kt,
                           const char *profile);

/* An ACME client for one request, logged in with the stored account:
 * the first account of the CA named ca (NULL: the first CA). */
static cs_acme_t *cs_acme_request_client_at(cs_req_t *q, const char *ca,
                                            EVP_PKEY **key, const char **kid,
                                            int *status)
{
    const cs_conf_t *conf = q->conf;
    const cs_acme_issuer_conf_t *is = NULL;
    cs_acme_conf_t ac;
    cs_acme_t *acme;
    const char *cms, *err = NULL;
    unsigned char *der;
    apr_size_t len;
    apr_status_t rv;
    int i;

    *status = HTTP_SERVICE_UNAVAILABLE;
    if (!conf->acme_url || !conf->acme_seal_cert) {
        *status = cs_error(q->r, HTTP_NOT_FOUND, "ACME is not configured "
                           "(CertServiceACMEDirectory)");
        return NULL;
    }
    for (i = 0; ca && conf->acme_issuers && i < conf->acme_issuers->nelts;
         i++) {
        is = APR_ARRAY_IDX(conf->acme_issuers, i,
                           const cs_acme_issuer_conf_t *);
        if (strcmp(is->name, ca) == 0) {
            break;
        }
        is = NULL;
    }
    rv = cs_store_account_get(kid, &cms, &q->db, q->r->pool,
                              is ? is->url : conf->acme_url);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        *status = cs_error(q->r, HTTP_NOT_FOUND, "no ACME account yet (it "
                           "is made with the first order)");
        return NULL;
    }
    if (rv) {
        *status = cs_db_error(q, rv);
        return NULL;
    }
    memset(&ac, 0, sizeof(ac));
    ac.directory_url = is ? is->url : conf->acme_url;
    ac.ca_file = is ? is->ca_file : conf->acme_ca;
    ac.eab = is ? is->eab : conf->acme_eab;
    if (cs_base64_decode(&der, &len, q->r->pool, cms)
        || cs_envelope_open(key, q->r->pool, der, len, conf->acme_seal_cert,
                            conf->acme_seal_key, &err)
        || cs_acme_create(&acme, q->r->pool, &ac)
        || (rv = cs_acme_account(kid, acme, *key, conf->acme_contact,
                                 &err))) {
        *status = cs_error(q->r, HTTP_BAD_GATEWAY, "ACME account: %s",
                           err ? err : "cannot unseal the account key");
        return NULL;
    }
    return acme;
}

static cs_acme_t *cs_acme_request_client(cs_req_t *q, EVP_PKEY **key,
                                         const char **kid, int *status)
{
    return cs_acme_request_client_at(q, NULL, key, kid, status);
}

/* GET /v1/acme/account: the account's URL and key thumbprint. */
int cs_get_acme_account(cs_req_t *q)
{
    const char *kid, *cms, *thumb = NULL, *err = NULL;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key;
    apr_status_t rv;

    if (!q->conf->acme_url || !q->conf->acme_seal_cert) {
        return cs_error(q->r, HTTP_NOT_FOUND, "ACME is not configured "
                        "(CertServiceACMEDirectory)");
    }
    rv = cs_store_account_get(&kid, &cms, &q->db, q->r->pool,
                              q->conf->acme_url);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no ACME account yet");
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    if (cs_base64_decode(&der, &len, q->r->pool, cms)
        || cs_envelope_open(&key, q->r->pool, der, len,
                            q->conf->acme_seal_cert, q->conf->acme_seal_key,
                            &err)
        || cs_jwk_thumbprint(&thumb, q->r->pool, key)) {
        return cs_error(q->r, HTTP_INTERNAL_SERVER_ERROR, "cannot unseal "
                        "the account key: %s", err ? err : "bad envelope");
    }
    return cs_send_json(q->r, HTTP_OK, json_pack(
        "{s:s, s:o, s:s}", "directory", q->conf->acme_url, "account",
        kid ? json_string(kid) : json_null(), "key_thumbprint", thumb));
}

/* One CA of the configuration with its health row (NULL: never used
 * yet). */
static json_t *cs_json_ca(const char *name, const char *url, int order,
                          int accounts, const cs_ca_health_t *h)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:s, s:i, s:o, s:I, s:I, s:I}",
                     "name", name, "directory", url, "order", order,
                     "accounts", accounts,
                     "state", h ? h->state : "unknown",
                     "failures", h ? h->failures : 0,
                     "last_error", h && h->last_error
                                   ? json_string(h->last_error) : json_null(),
                     "next_retry", (json_int_t)(h ? h->next_retry : 0),
                     "last_ok", (json_int_t)(h ? h->last_ok : 0),
                     "updated", (json_int_t)(h ? h->updated : 0));
}

static const cs_ca_health_t *cs_health_of(const apr_array_header_t *hl,
                                          const char *name)
{
    int i;

    for (i = 0; i < hl->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(hl, i, cs_ca_health_t).name, name) == 0) {
            return &APR_ARRAY_IDX(hl, i, cs_ca_health_t);
        }
    }
    return NULL;
}

/* GET /v1/acme/cas: the CAs in the order orders try them, each with its
 * health as the instances recorded it, and every order budget's row. */
int cs_get_acme_cas(cs_req_t *q)
{
    const cs_conf_t *conf = q->conf;
    apr_array_header_t *health, *rates;
    json_t *cas, *budgets;
    apr_status_t rv;
    int i;

    if (!conf->acme_url) {
        return cs_error(q->r, HTTP_NOT_FOUND, "ACME is not configured "
                        "(CertServiceACMEDirectory)");
    }
    if ((rv = cs_store_ca_list(&health, &q->db, q->r->pool))
        || (rv = cs_store_rate_list(&rates, &q->db, q->r->pool))) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, CSLOGNO(00083)
                      "GET /v1/acme/cas: %s",
                      cs_store_error(&q->db, q->r->pool, rv));
        return cs_db_error(q, rv);
    }
    cas = json_array();
    json_array_append_new(cas, cs_json_ca("default", conf->acme_url, 1,
                                          conf->acme_accounts,
                                          cs_health_of(health, "default")));
    for (i = 0; conf->acme_issuers && i < conf->acme_issuers->nelts; i++) {
        const cs_acme_issuer_conf_t *is =
            APR_ARRAY_IDX(conf->acme_issuers, i,
                          const cs_acme_issuer_conf_t *);

        json_array_append_new(cas, cs_json_ca(is->name, is->url, i + 2,
                                              is->accounts ? is->accounts : 1,
                                              cs_health_of(health,
                                                           is->name)));
    }
    budgets = json_array();
    for (i = 0; i < rates->nelts; i++) {
        const cs_rate_row_t *r = &APR_ARRAY_IDX(rates, i, cs_rate_row_t);

        json_array_append_new(budgets, json_pack(
            "{s:s, s:I, s:I, s:I}", "name", r->name,
            "window_start", (json_int_t)r->window_start,
            "count", (json_int_t)r->count,
            "paused_until", (json_int_t)r->paused_until));
    }
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:o, s:o}", "cas", cas,
                                                 "budgets", budgets));
}

/* POST /v1/acme/account/key-change: roll the account over to a new key
 * (RFC 8555 7.3.5) and store it sealed; workers pick it up. */
int cs_post_acme_key_change(cs_req_t *q)
{
    cs_acme_t *acme;
    EVP_PKEY *old, *key;
    apr_array_header_t *rcpt;
    unsigned char *der;
    apr_size_t len;
    const char *kid, *err = NULL, *thumb;
    apr_status_t rv;
    int rc;

    if (!(acme = cs_acme_request_client(q, &old, &kid, &rc))) {
        return rc;
    }
    rcpt = apr_array_make(q->r->pool, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(rcpt, X509 *) = q->conf->acme_seal_cert;
    if (cs_key_generate(&key, q->r->pool, CS_KEY_EC_P256)
        || cs_envelope_seal(&der, &len, q->r->pool, key, rcpt, &err)) {
        return cs_error(q->r, HTTP_INTERNAL_SERVER_ERROR, "new account "
                        "key: %s", err ? err : "key generation failed");
    }
    if ((rv = cs_acme_key_change(acme, key, &err))) {
        return cs_error(q->r, HTTP_BAD_GATEWAY, "key change refused, "
                        "nothing changed: %s", err);
    }
    if ((rv = cs_store_account_put(&q->db, q->r->pool, q->conf->acme_url,
                                   kid, cs_base64_encode(q->r->pool, der,
                                                         len), 0))) {
        /* The CA has the new key; losing it would lock the account. */
        ap_log_rerror(APLOG_MARK, APLOG_CRIT, 0, q->r, CSLOGNO(00028)
                      "ACME account %s rolled over but the new key could "
                      "not be stored: %s", kid,
                      cs_store_error(&q->db, q->r->pool, rv));
        return cs_db_error(q, rv);
    }
    cs_jwk_thumbprint(&thumb, q->r->pool, key);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00029)
                  "admin '%s': ACME account %s rolled over to key %s",
                  q->caller.who, kid, thumb);
    return cs_send_json(q->r, HTTP_OK, json_pack(
        "{s:s, s:s, s:s}", "directory", q->conf->acme_url, "account", kid,
        "key_thumbprint", thumb));
}

/* POST /v1/domains/DOMAIN/revoke {"reason": n}: revoke the current
 * certificate at the CA and queue a new one. */
int cs_post_revoke(cs_req_t *q, const char *raw)
{
    const char *domain, *kid, *err = NULL;
    cs_acme_t *acme;
    EVP_PKEY *akey;
    cs_bundle_t *b;
    apr_array_header_t *chain;
    const char *body, *profile = NULL;
    cs_job_t *job;
    cs_job_ca_t jc;
    apr_size_t len;
    apr_status_t rv;
    int rc, reason = 0;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_req_revoke(&reason, q->r->pool, body, len, &err))) {
        return cs_req_fail(q, rc, err);
    }
    err = NULL;
    rv = cs_store_get(&b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv) || (!rv && !b->chain_pem)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no certificate for %s",
                        domain);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    if (cs_pem_read_certs(&chain, q->r->pool, b->chain_pem,
                          strlen(b->chain_pem), &err) || !chain->nelts) {
        return cs_error(q->r, HTTP_INTERNAL_SERVER_ERROR, "stored chain "
                        "unreadable: %s", err ? err : "empty");
    }
    /* At the CA that issued it (several CAs), with its first account. */
    if (cs_store_job_ca_get(&jc, &q->db, q->r->pool, domain)
        != APR_SUCCESS) {
        jc.ca = NULL;
    }
    if (!(acme = cs_acme_request_client_at(q, jc.ca, &akey, &kid, &rc))) {
        return rc;
    }
    if ((rv = cs_acme_revoke(acme, APR_ARRAY_IDX(chain, 0, X509 *), reason,
                             &err))) {
        return cs_error(q->r, HTTP_BAD_GATEWAY, "revocation refused: %s",
                        err);
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00030)
                  "admin '%s': revoked %s serial %s (reason %d); a new "
                  "certificate is queued", q->caller.who, domain, b->serial,
                  reason);
    /* The replacement keeps the domain's own profile. */
    if (cs_store_job_get(&job, &q->db, q->r->pool, domain) == APR_SUCCESS) {
        profile = job->profile;
    }
    return cs_acme_enqueue(q, domain, cs_key_type_parse(b->key_type) < 0
                           ? CS_KEY_EC_P256
                           : cs_key_type_parse(b->key_type), profile);
}

/* The queue part of PUT /v1/domains/DOMAIN with ACME: the domain known
 * from now on (state "pending" if it is new) and its order queued.  0;
 * an HTTP status with *why; or -1 for a database error *dbrv. */
static int cs_acme_queue(cs_req_t *q, const char *domain, int kt,
                         const char *profile, cs_bundle_t **b,
                         apr_status_t *dbrv, const char **why)
{
    apr_status_t rv;

    /* A wildcard is validated over dns-01 only (RFC 8555 7.1.3). */
    if (domain[0] == '*' && !q->conf->dns) {
        *why = apr_psprintf(q->r->pool, "%s: a wildcard needs a dns-01 "
                            "challenge, and this CertService has none "
                            "(CertServiceDNSUpdate or CertServiceDNSHook)",
                            domain);
        return HTTP_BAD_REQUEST;
    }
    if (!q->conf->wrap_certs || !q->conf->wrap_certs->nelts
        || !q->conf->acme_seal_cert) {
        *why = "ACME needs CertServiceWrapCertificate and "
               "CertServiceACMEAccountSeal";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    rv = cs_store_get(b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        /* Known from now on, without a certificate: state "pending". */
        rv = cs_store_set_error(&q->db, q->r->pool, domain, NULL);
        if (rv == APR_SUCCESS) {
            rv = cs_store_get(b, &q->db, q->r->pool, domain);
        }
    }
    if (rv || (rv = cs_store_job_enqueue(&q->db, q->r->pool, domain,
                                         cs_key_type_name((cs_key_type_t)kt),
                                         profile,
                                         apr_time_sec(apr_time_now())))) {
        *dbrv = rv;
        return -1;
    }
    return 0;
}

/* PUT /v1/domains/DOMAIN with ACME: queue the order, answer 202. */
static int cs_acme_enqueue(cs_req_t *q, const char *domain, int kt,
                           const char *profile)
{
    cs_bundle_t *b;
    apr_status_t rv = APR_SUCCESS;
    const char *why = NULL;
    json_t *j;
    int rc;

    if ((rc = cs_acme_queue(q, domain, kt, profile, &b, &rv, &why)) < 0) {
        return cs_db_error(q, rv);
    }
    if (rc) {
        return cs_error(q->r, rc, "%s", why);
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00023)
                  "admin '%s': %s queued for ACME issuance%s%s",
                  q->caller.who, domain, profile ? ", profile " : "",
                  profile ? profile : "");
    j = cs_json_domain(b, NULL);
    cs_acme_json(j, q, domain);
    return cs_send_json(q->r, HTTP_ACCEPTED, j);
}

/* A local CA's issue (or failure) as a lifecycle event
 * (mod_certservice_notify.c). */
static void cs_put_notify(cs_req_t *q, const char *type, const char *domain,
                          const cs_bundle_t *b, const char *error)
{
    cs_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.domain = domain;
    ev.ca = "local";
    ev.time = apr_time_sec(apr_time_now());
    ev.error = error;
    if (b) {
        ev.serial = b->serial;
        ev.not_after = b->not_after;
    }
    cs_notify_emit(q->r->server, q->conf, &q->db, q->r->pool, &ev,
                   b ? b->serial
                     : apr_psprintf(q->r->pool, "local@%" APR_TIME_T_FMT,
                                    apr_time_now()));
}

int cs_put_domain(cs_req_t *q, const char *raw)
{
    const char *domain, *why = NULL, *profile;
    cs_service_t *svc;
    cs_bundle_t *b;
    const char *body;
    apr_size_t len;
    apr_status_t rv;
    int rc, kt;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    if ((rc = cs_req_put_domain(&kt, &profile, q->r->pool, body, len,
                                q->conf->key_type, &why))) {
        return cs_req_fail(q, rc, why);
    }
    if (q->conf->acme_url) {
        return cs_acme_enqueue(q, domain, kt, profile);
    }
    if (profile) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "profile '%s': profiles are "
                        "ACME's; this CertService issues with a local CA "
                        "(no CertServiceACMEDirectory)", profile);
    }
    if (!(svc = cs_service(q, &why))) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "%s", why);
    }
    if ((rv = cs_service_issue(&b, q->r->pool, svc, domain,
                               (cs_key_type_t)kt, &why))) {
        cs_store_set_error(&q->db, q->r->pool, domain, why);
        cs_put_notify(q, CS_EVENT_FAILED, domain, NULL, why);
        return cs_error(q->r, rv == APR_ENOTIMPL ? HTTP_SERVICE_UNAVAILABLE
                                                 : HTTP_BAD_GATEWAY,
                        "issuing %s failed: %s", domain, why);
    }
    rc = cs_store_and_reply(q, b, "issued", "reissued");
    if (b->seq) {
        cs_put_notify(q, b->created ? CS_EVENT_ISSUED : CS_EVENT_RENEWED,
                      domain, b, NULL);
    }
    return rc;
}

int cs_put_certificate(cs_req_t *q, const char *raw)
{
    const char *domain, *why = NULL;
    cs_service_t *svc;
    cs_bundle_t *b;
    const char *body, *chain_pem, *key_pem, *key_cms;
    apr_size_t len;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_body(q, &body, &len)) != DECLINED) {
        return rc;
    }
    rc = cs_req_import(&chain_pem, &key_pem, &key_cms, q->r->pool, body,
                       len, &why);
    /* The body as read holds the key in plaintext too. */
    OPENSSL_cleanse((char *)body, len);
    if (rc) {
        return cs_req_fail(q, rc, why);
    }
    if (!(svc = cs_service(q, &why))) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "%s", why);
    }
    if (key_cms) {
        /* Sealed by the importer (certsuite import): never in plaintext
         * here; the proxies check it when they open it. */
        rv = cs_service_import_sealed(&b, q->r->pool, svc, domain,
                                      chain_pem, key_cms, apr_time_now(),
                                      &why);
    }
    else {
        rv = cs_service_import(&b, q->r->pool, svc, domain, chain_pem,
                               key_pem, apr_time_now(), &why);
    }
    if (rv) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "import refused, nothing "
                        "stored: %s", why);
    }
    return cs_store_and_reply(q, b, "imported", "imported");
}

int cs_delete_domain(cs_req_t *q, const char *raw)
{
    const char *domain;
    apr_int64_t seq;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    rv = cs_store_delete(&q->db, q->r->pool, domain, q->caller.who, &seq);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "unknown domain %s", domain);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    cs_store_job_delete(&q->db, q->r->pool, domain);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00005)
                  "admin '%s': deleted %s, seq %" APR_INT64_T_FMT,
                  q->caller.who, domain, seq);
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:s, s:s, s:I}", "domain",
                                                 domain, "op", "delete",
                                                 "seq", (json_int_t)seq));
}

int cs_get_domain(cs_req_t *q, const char *raw)
{
    const char *domain;
    cs_bundle_t *b;
    apr_array_header_t *hosts;
    json_t *j;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    rv = cs_store_get(&b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "unknown domain %s", domain);
    }
    if (rv || (rv = cs_store_domain_hosts(&hosts, &q->db, q->r->pool,
                                          domain))) {
        return cs_db_error(q, rv);
    }
    j = cs_json_domain(b, hosts);
    cs_acme_json(j, q, domain);
    return cs_send_json(q->r, HTTP_OK, j);
}

int cs_get_domains(cs_req_t *q)
{
    apr_array_header_t *list;
    const char *after, *why;
    cs_domain_filter_t f;
    json_t *arr;
    apr_status_t rv;
    int rc, i, limit, filtered;

    if ((rc = cs_req_domains(&after, &limit, q->r->pool, q->params, &why))
        || (rc = cs_metrics_filter_parse(&f, &filtered, q->r->pool,
                                         q->params, &why))) {
        return cs_req_fail(q, rc, why);
    }
    /* state=, q=, expiring= (the dashboard's filters: cs_metrics.h). */
    rv = filtered ? cs_store_domain_search(&list, &q->db, q->r->pool, &f,
                                           after, limit,
                                           apr_time_sec(apr_time_now()))
                  : cs_store_list(&list, &q->db, q->r->pool, after, limit);
    if (rv) {
        return cs_db_error(q, rv);
    }
    arr = json_array();
    for (i = 0; i < list->nelts; i++) {
        json_array_append_new(arr, cs_json_domain(
            &APR_ARRAY_IDX(list, i, cs_bundle_t), NULL));
    }
    return cs_send_json(q->r, HTTP_OK, json_pack(
        "{s:o, s:o}", "domains", arr, "next", list->nelts
            ? json_string(APR_ARRAY_IDX(list, list->nelts - 1,
                                        cs_bundle_t).domain)
            : json_null()));
}


/* GET /acme-challenge/TOKEN: the key authorization of a challenge in
 * progress, and nothing else (404). */
int cs_get_challenge(cs_req_t *q, const char *token)
{
    const char *keyauth;
    apr_status_t rv;
    int rc;

    if (q->r->method_number != M_GET) {
        apr_table_setn(q->r->err_headers_out, "Allow", "GET");
        return cs_error(q->r, HTTP_METHOD_NOT_ALLOWED, "method %s not "
                        "allowed here (allowed: GET)", q->r->method);
    }
    if (strlen(token) > 128
        || token[strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                               "qrstuvwxyz0123456789-_")]) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no challenge in progress for "
                        "this token");
    }
    if ((rc = cs_open_db(q)) != DECLINED) {
        return rc;
    }
    rv = cs_store_challenge_get(&keyauth, &q->db, q->r->pool, token,
                                apr_time_sec(apr_time_now()));
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no challenge in progress for "
                        "this token");
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_set_content_type(q->r, "application/octet-stream");
    apr_table_setn(q->r->headers_out, "Cache-Control", "no-store");
    ap_rputs(keyauth, q->r);
    return OK;
}


int cs_domain_add(cs_req_t *q, const char *domain, int kt,
                  const char **what, const char **why)
{
    cs_service_t *svc;
    cs_bundle_t *b;
    apr_status_t rv = APR_SUCCESS;
    int rc;

    if (q->conf->acme_url) {
        if ((rc = cs_acme_queue(q, domain, kt, NULL, &b, &rv, why)) < 0) {
            *why = cs_store_error(&q->db, q->r->pool, rv);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        *what = "queued";
        return rc;
    }
    if (!(svc = cs_service(q, why))) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if ((rv = cs_service_issue(&b, q->r->pool, svc, domain,
                               (cs_key_type_t)kt, why))) {
        cs_store_set_error(&q->db, q->r->pool, domain, *why);
        cs_put_notify(q, CS_EVENT_FAILED, domain, NULL, *why);
        return rv == APR_ENOTIMPL ? HTTP_SERVICE_UNAVAILABLE
                                  : HTTP_BAD_GATEWAY;
    }
    if ((rv = cs_store_put_bundle(&q->db, q->r->pool, b, q->caller.who))) {
        *why = cs_store_error(&q->db, q->r->pool, rv);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (b->seq) {
        cs_put_notify(q, b->created ? CS_EVENT_ISSUED : CS_EVENT_RENEWED,
                      domain, b, NULL);
    }
    *what = "issued";
    return 0;
}
