/*
 * mod_certservice: CertService, the trusted host that issues certificates,
 * generates key pairs, seals private keys to the proxy pool's wrapping
 * certificates and serves them, with a change feed and restart leases, as
 * JSON over mutual TLS (ARCHITECTURE.md section 3, docs/certservice-api.md).
 *
 * This file is httpd glue only: directives, roles from client certificates,
 * routing and JSON I/O.  The work happens in pure code: cs_service.c
 * (issuing, importing, JSON views), cs_store.c (apr_dbd storage),
 * lib/cs_crypto.c and lib/cs_x509.c (keys, envelopes, certificates) and
 * lib/cs_name.c (domain names).
 */
#include <arpa/inet.h>
#include <errno.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "apr_dbd.h"
#include "apr_lib.h"
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_dbd.h"
#include "mod_ssl.h"
#include "mod_watchdog.h"

#include "apr_optional.h"
#include "apr_strings.h"

#include "cs_acme.h"
#include "cs_crypto.h"
#include "cs_jws.h"
#include "cs_name.h"
#include "cs_sched.h"
#include "cs_service.h"
#include "cs_store.h"
#include "cs_x509.h"

module AP_MODULE_DECLARE_DATA certservice_module;

/* Log tags "CSnnnnn": never reused; the next free one is 00032. */
#define CSLOGNO(n) "CS" #n ": "

#define CS_HANDLER              "certservice"
#define CS_DEFAULT_LIFETIME     apr_time_from_sec(47 * 86400)
#define CS_DEFAULT_MAX_BODY     (1024 * 1024)
#define CS_DEFAULT_MAX_BATCH    100
#define CS_DEFAULT_LEASE_TTL    900
#define CS_DEFAULT_FEED_LIMIT   100
#define CS_MAX_FEED_LIMIT       1000
/* ACME defaults: Let's Encrypt's 300 new orders per account per 3 hours;
 * retries from 1 minute doubling to 6 hours; renewal between 61.7% and
 * 66.7% of the lifetime. */
#define CS_ACME_LIMIT           300
#define CS_ACME_WINDOW          10800
#define CS_ACME_BACKOFF         60
#define CS_ACME_BACKOFF_CAP     21600
#define CS_ACME_RENEW_PM        667
#define CS_ACME_JITTER_PM       50
#define CS_ACME_WORKERS         2
#define CS_ACME_ARI_RECHECK     21600   /* ask renewalInfo again after */
/* A worker's hold on a job: longer than one order can take (two polls of
 * up to 180 s each, a few requests of up to 30 s), so that no other worker
 * or instance orders the same domain meanwhile. */
#define CS_ACME_CLAIM           900
#define CS_ACME_CHALLENGE_TTL   600

typedef enum { CS_ROLE_NONE = 0, CS_ROLE_PROXY = 1, CS_ROLE_ADMIN = 2 } cs_role_t;

typedef struct {
    cs_role_t role;
    int by_fingerprint;         /* else by subject DN */
    const char *value;          /* DN, or lower-case hex SHA-256 */
} cs_role_rule_t;

typedef struct {
    apr_array_header_t *wrap_certs;     /* X509 *; NULL: unset */
    cs_ca_t *ca;
    apr_interval_time_t lifetime;       /* -1: unset */
    int key_type;                       /* -1: unset */
    apr_array_header_t *roles;          /* cs_role_rule_t; NULL: unset */
    int max_unavailable;                /* 0: unset */
    apr_table_t *pool_max_unavailable;  /* pool -> N; NULL: unset */
    int lease_max_ttl;                  /* 0: unset */
    apr_size_t max_body;                /* 0: unset */
    int max_batch;                      /* 0: unset */
    /* ACME (all: unset markers as above) */
    const char *acme_url;               /* NULL: ACME off */
    apr_array_header_t *acme_contact;   /* const char * */
    const char *acme_ca;
    X509 *acme_seal_cert;
    EVP_PKEY *acme_seal_key;
    int acme_limit;                     /* 0: unset */
    apr_int64_t acme_window;
    apr_int64_t acme_backoff;           /* 0: unset */
    apr_int64_t acme_backoff_cap;
    int acme_renew_pm;                  /* 0: unset */
    int acme_jitter_pm;
    int acme_ari;                       /* -1: unset */
    int acme_workers;                   /* 0: unset */
    const char *acme_chain;
    int acme_precheck_port;             /* 0: unset, -1: off */
    const char *acme_precheck_dns;      /* NULL: the system's resolver */
} cs_conf_t;

static APR_OPTIONAL_FN_TYPE(ssl_var_lookup) *cs_ssl_var;
static APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *cs_dbd_acquire;
/* Set once the schema exists (per process; creating it is idempotent). */
static volatile int cs_schema_ready;

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

static void *cs_create_server_config(apr_pool_t *p, server_rec *s)
{
    cs_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->lifetime = -1;
    conf->key_type = -1;
    conf->acme_ari = -1;
    return conf;
}

#define CS_MERGE(field, unset) \
    conf->field = add->field != (unset) ? add->field : base->field

static void *cs_merge_server_config(apr_pool_t *p, void *basev, void *addv)
{
    cs_conf_t *base = basev, *add = addv;
    cs_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    CS_MERGE(wrap_certs, NULL);
    CS_MERGE(ca, NULL);
    CS_MERGE(lifetime, -1);
    CS_MERGE(key_type, -1);
    CS_MERGE(roles, NULL);
    CS_MERGE(max_unavailable, 0);
    CS_MERGE(pool_max_unavailable, NULL);
    CS_MERGE(lease_max_ttl, 0);
    CS_MERGE(max_body, 0);
    CS_MERGE(max_batch, 0);
    CS_MERGE(acme_url, NULL);
    CS_MERGE(acme_contact, NULL);
    CS_MERGE(acme_ca, NULL);
    CS_MERGE(acme_seal_cert, NULL);
    CS_MERGE(acme_seal_key, NULL);
    CS_MERGE(acme_limit, 0);
    CS_MERGE(acme_window, 0);
    CS_MERGE(acme_backoff, 0);
    CS_MERGE(acme_backoff_cap, 0);
    CS_MERGE(acme_renew_pm, 0);
    CS_MERGE(acme_jitter_pm, 0);
    CS_MERGE(acme_ari, -1);
    CS_MERGE(acme_workers, 0);
    CS_MERGE(acme_chain, NULL);
    CS_MERGE(acme_precheck_port, 0);
    if (add->acme_precheck_port) {
        conf->acme_precheck_dns = add->acme_precheck_dns;
    }
    else {
        conf->acme_precheck_dns = base->acme_precheck_dns;
    }
    return conf;
}

static cs_conf_t *cs_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &certservice_module);
}

static const char *cs_set_wrap_cert(cmd_parms *cmd, void *dummy,
                                    const char *arg)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    apr_array_header_t *certs;
    const char *path = ap_server_root_relative(cmd->pool, arg), *err;
    int i;

    if (!path || cs_file_read_certs(&certs, cmd->pool, path, &err)) {
        return apr_psprintf(cmd->pool, "%s: cannot read '%s': %s",
                            cmd->cmd->name, arg, path ? err : "bad path");
    }
    for (i = 0; i < certs->nelts; i++) {
        EVP_PKEY *pub = X509_get0_pubkey(APR_ARRAY_IDX(certs, i, X509 *));
        if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA
            || EVP_PKEY_get_bits(pub) < 2048) {
            return apr_psprintf(cmd->pool, "%s: '%s': a wrapping certificate "
                                "must hold an RSA key of at least 2048 bits "
                                "(keys are sealed with RSA-OAEP)",
                                cmd->cmd->name, arg);
        }
    }
    if (!conf->wrap_certs) {
        conf->wrap_certs = apr_array_make(cmd->pool, 2, sizeof(X509 *));
    }
    apr_array_cat(conf->wrap_certs, certs);
    return NULL;
}

static const char *cs_set_local_ca(cmd_parms *cmd, void *dummy,
                                   const char *cert, const char *key)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *err;

    if (cs_ca_load(&conf->ca, cmd->pool,
                   ap_server_root_relative(cmd->pool, cert),
                   ap_server_root_relative(cmd->pool, key), &err)) {
        return apr_psprintf(cmd->pool, "%s: cannot load CA '%s' / '%s': %s",
                            cmd->cmd->name, cert, key, err);
    }
    return NULL;
}

static const char *cs_set_lifetime(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(arg, &t, "s") || t < apr_time_from_sec(60)
        || t > apr_time_from_sec(825 * 86400)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a lifetime between "
                            "60s and 825 days (seconds, or with a unit: "
                            "2h, 30mi)", cmd->cmd->name, arg);
    }
    conf->lifetime = t;
    return NULL;
}

static const char *cs_set_key_type(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    int kt = cs_key_type_parse(arg);

    if (kt < 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a key type "
                            "(ec-p256 or rsa-2048)", cmd->cmd->name, arg);
    }
    cs_conf(cmd->server)->key_type = kt;
    return NULL;
}

static const char *cs_add_role(cmd_parms *cmd, void *dummy, const char *role,
                               const char *match)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    cs_role_rule_t *rule;

    if (!conf->roles) {
        conf->roles = apr_array_make(cmd->pool, 4, sizeof(cs_role_rule_t));
    }
    rule = apr_array_push(conf->roles);
    if (strcasecmp(role, "proxy") == 0) {
        rule->role = CS_ROLE_PROXY;
    }
    else if (strcasecmp(role, "admin") == 0) {
        rule->role = CS_ROLE_ADMIN;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a role (proxy or "
                            "admin)", cmd->cmd->name, role);
    }
    if (strncasecmp(match, "dn:", 3) == 0 && match[3]) {
        rule->value = match + 3;
    }
    else if (strncasecmp(match, "sha256:", 7) == 0) {
        char *hex = apr_pstrdup(cmd->pool, match + 7), *o = hex;
        const char *i;
        for (i = hex; *i; i++) {
            if (*i != ':') {
                *o++ = (char)apr_tolower(*i);
            }
        }
        *o = '\0';
        if (strlen(hex) != 64 || hex[strspn(hex, "0123456789abcdef")]) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a SHA-256 "
                                "fingerprint (64 hex digits, ':' allowed)",
                                cmd->cmd->name, match);
        }
        rule->by_fingerprint = 1;
        rule->value = hex;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' must be dn:<subject DN> or "
                            "sha256:<certificate fingerprint>",
                            cmd->cmd->name, match);
    }
    return NULL;
}

static const char *cs_parse_int(cmd_parms *cmd, const char *arg, int min,
                                int max, int *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (*arg < '0' || *arg > '9' || *end || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number between %d "
                            "and %d", cmd->cmd->name, arg, min, max);
    }
    *out = (int)v;
    return NULL;
}

static const char *cs_set_max_unavailable(cmd_parms *cmd, void *dummy,
                                          const char *n, const char *pool)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *err;
    int v;

    if ((err = cs_parse_int(cmd, n, 1, 100000, &v))) {
        return err;
    }
    if (!pool) {
        conf->max_unavailable = v;
        return NULL;
    }
    if (!conf->pool_max_unavailable) {
        conf->pool_max_unavailable = apr_table_make(cmd->pool, 4);
    }
    apr_table_set(conf->pool_max_unavailable, pool, n);
    return NULL;
}

static const char *cs_set_int(cmd_parms *cmd, void *dummy, const char *arg)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *name = cmd->cmd->name, *err;
    int v;

    if (strcasecmp(name, "CertServiceLeaseMaxTTL") == 0) {
        if (!(err = cs_parse_int(cmd, arg, 1, 86400, &v))) {
            conf->lease_max_ttl = v;
        }
    }
    else if (strcasecmp(name, "CertServiceMaxBodySize") == 0) {
        if (!(err = cs_parse_int(cmd, arg, 1024, 64 * 1024 * 1024, &v))) {
            conf->max_body = (apr_size_t)v;
        }
    }
    else if (!(err = cs_parse_int(cmd, arg, 1, 10000, &v))) {
        conf->max_batch = v;
    }
    return err;
}

/* --- ACME directives ------------------------------------------------ */

static const char *cs_set_acme_url(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    if (strncmp(arg, "https://", 8) != 0 || strlen(arg) < 12
        || strlen(arg) > 255 || strpbrk(arg, " \t\"'<>")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an https:// URL of "
                            "an ACME directory (at most 255 characters)",
                            cmd->cmd->name, arg);
    }
    cs_conf(cmd->server)->acme_url = arg;
    return NULL;
}

static const char *cs_add_acme_contact(cmd_parms *cmd, void *dummy,
                                       const char *arg)
{
    cs_conf_t *conf = cs_conf(cmd->server);

    if (strncmp(arg, "mailto:", 7) != 0 || !strchr(arg + 7, '@')
        || strpbrk(arg, " \t\",<>")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a contact "
                            "(mailto:name@example.com)", cmd->cmd->name,
                            arg);
    }
    if (!conf->acme_contact) {
        conf->acme_contact = apr_array_make(cmd->pool, 2,
                                            sizeof(const char *));
    }
    APR_ARRAY_PUSH(conf->acme_contact, const char *) = arg;
    return NULL;
}

static const char *cs_set_acme_ca(cmd_parms *cmd, void *dummy,
                                  const char *arg)
{
    const char *path = ap_server_root_relative(cmd->pool, arg), *err;
    apr_array_header_t *certs;

    if (!path || cs_file_read_certs(&certs, cmd->pool, path, &err)
        || !certs->nelts) {
        return apr_psprintf(cmd->pool, "%s: cannot read certificates from "
                            "'%s': %s", cmd->cmd->name, arg,
                            path ? err : "bad path");
    }
    cs_conf(cmd->server)->acme_ca = path;
    return NULL;
}

static const char *cs_set_acme_seal(cmd_parms *cmd, void *dummy,
                                    const char *cert, const char *key)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    apr_array_header_t *certs;
    EVP_PKEY *pub, *priv;
    const char *err;

    if (cs_file_read_certs(&certs, cmd->pool,
                           ap_server_root_relative(cmd->pool, cert), &err)
        || !certs->nelts) {
        return apr_psprintf(cmd->pool, "%s: cannot read certificate '%s': "
                            "%s", cmd->cmd->name, cert, err);
    }
    if (cs_file_read_key(&priv, cmd->pool,
                         ap_server_root_relative(cmd->pool, key), &err)) {
        return apr_psprintf(cmd->pool, "%s: cannot read key '%s': %s",
                            cmd->cmd->name, key, err);
    }
    pub = X509_get0_pubkey(APR_ARRAY_IDX(certs, 0, X509 *));
    if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA
        || EVP_PKEY_get_bits(pub) < 2048 || EVP_PKEY_eq(pub, priv) != 1) {
        return apr_psprintf(cmd->pool, "%s: '%s' / '%s' must be an RSA "
                            "certificate of at least 2048 bits and its "
                            "key", cmd->cmd->name, cert, key);
    }
    conf->acme_seal_cert = APR_ARRAY_IDX(certs, 0, X509 *);
    conf->acme_seal_key = priv;
    return NULL;
}

/* A duration: seconds, or with a unit (ap_timeout_parameter_parse). */
static const char *cs_parse_secs(cmd_parms *cmd, const char *arg,
                                 apr_int64_t min, apr_int64_t max,
                                 apr_int64_t *out)
{
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(arg, &t, "s")
        || apr_time_sec(t) < min || apr_time_sec(t) > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration between "
                            "%" APR_INT64_T_FMT " and %" APR_INT64_T_FMT
                            " seconds (or with a unit: 3h, 30mi)",
                            cmd->cmd->name, arg, min, max);
    }
    *out = apr_time_sec(t);
    return NULL;
}

static const char *cs_set_acme_limit(cmd_parms *cmd, void *dummy,
                                     const char *n, const char *window)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *err;

    if ((err = cs_parse_int(cmd, n, 1, 1000000, &conf->acme_limit))) {
        return err;
    }
    return cs_parse_secs(cmd, window, 1, 30 * 86400, &conf->acme_window);
}

static const char *cs_set_acme_backoff(cmd_parms *cmd, void *dummy,
                                       const char *base, const char *cap)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *err;

    if ((err = cs_parse_secs(cmd, base, 1, 86400, &conf->acme_backoff))
        || (err = cs_parse_secs(cmd, cap, 1, 7 * 86400,
                                &conf->acme_backoff_cap))) {
        return err;
    }
    if (conf->acme_backoff_cap < conf->acme_backoff) {
        return apr_psprintf(cmd->pool, "%s: the cap '%s' is below the first "
                            "delay '%s'", cmd->cmd->name, cap, base);
    }
    return NULL;
}

/* "67%" -> 670 per mille. */
static const char *cs_parse_percent(cmd_parms *cmd, const char *arg,
                                    int min, int max, int *pm)
{
    char *end;
    double v = strtod(arg, &end);

    if (end == arg || strcmp(end, "%") != 0 || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a percentage "
                            "between %d%% and %d%%", cmd->cmd->name, arg,
                            min, max);
    }
    *pm = (int)(v * 10 + 0.5);
    return NULL;
}

static const char *cs_set_acme_renewal(cmd_parms *cmd, void *dummy,
                                       const char *args)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *w, *err;
    int i = 0;

    while (*(w = ap_getword_conf(cmd->temp_pool, &args))) {
        if (strcasecmp(w, "ari") == 0 || strcasecmp(w, "noari") == 0) {
            conf->acme_ari = strcasecmp(w, "ari") == 0;
        }
        else if (i == 0) {
            if ((err = cs_parse_percent(cmd, w, 10, 95,
                                        &conf->acme_renew_pm))) {
                return err;
            }
            i++;
        }
        else if (i == 1) {
            if ((err = cs_parse_percent(cmd, w, 0, 50,
                                        &conf->acme_jitter_pm))) {
                return err;
            }
            i++;
        }
        else {
            return apr_psprintf(cmd->pool, "%s: unexpected '%s' (FRACTION%% "
                                "[JITTER%%] [ari|noari])", cmd->cmd->name, w);
        }
    }
    if (conf->acme_renew_pm && conf->acme_jitter_pm > conf->acme_renew_pm) {
        return apr_psprintf(cmd->pool, "%s: the jitter is larger than the "
                            "renewal point", cmd->cmd->name);
    }
    if (!conf->acme_jitter_pm && i == 2) {
        conf->acme_jitter_pm = -1;      /* an explicit 0% */
    }
    return NULL;
}

static const char *cs_set_acme_workers(cmd_parms *cmd, void *dummy,
                                       const char *arg)
{
    return cs_parse_int(cmd, arg, 1, 16, &cs_conf(cmd->server)->acme_workers);
}

static const char *cs_set_acme_chain(cmd_parms *cmd, void *dummy,
                                     const char *arg)
{
    if (!*arg || strlen(arg) > 200) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a name to look for "
                            "in the chain's issuer (1 to 200 characters)",
                            cmd->cmd->name, arg);
    }
    cs_conf(cmd->server)->acme_chain = arg;
    return NULL;
}

static const char *cs_set_acme_precheck(cmd_parms *cmd, void *dummy,
                                        const char *arg, const char *dns)
{
    cs_conf_t *conf = cs_conf(cmd->server);
    const char *err, *colon = dns ? strrchr(dns, ':') : NULL;
    struct in_addr ia;
    char host[64];
    int port;

    if (strcasecmp(arg, "off") == 0) {
        conf->acme_precheck_port = -1;
        return dns ? apr_psprintf(cmd->pool, "%s: 'off' takes no DNS server",
                                  cmd->cmd->name) : NULL;
    }
    if (strcasecmp(arg, "on") == 0) {
        conf->acme_precheck_port = 80;
    }
    else if ((err = cs_parse_int(cmd, arg, 1, 65535,
                                 &conf->acme_precheck_port))) {
        return apr_psprintf(cmd->pool, "%s (or on, off)", err);
    }
    if (dns) {
        if (!colon || colon - dns >= (long)sizeof(host)
            || cs_parse_int(cmd, colon + 1, 1, 65535, &port)) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a DNS server "
                                "(IPv4:port)", cmd->cmd->name, dns);
        }
        memcpy(host, dns, (size_t)(colon - dns));
        host[colon - dns] = '\0';
        if (inet_pton(AF_INET, host, &ia) != 1) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a DNS server "
                                "(IPv4:port)", cmd->cmd->name, dns);
        }
    }
    conf->acme_precheck_dns = dns;
    return NULL;
}

static const command_rec cs_cmds[] = {
    AP_INIT_TAKE1("CertServiceACMEDirectory", cs_set_acme_url, NULL,
                  RSRC_CONF, "Issue through this ACME directory (https URL); "
                  "PUT /v1/domains then queues an order"),
    AP_INIT_ITERATE("CertServiceACMEContact", cs_add_acme_contact, NULL,
                    RSRC_CONF, "Contact of the ACME account: mailto:..."),
    AP_INIT_TAKE1("CertServiceACMECA", cs_set_acme_ca, NULL, RSRC_CONF,
                  "PEM file of the CA certificates to trust for the ACME "
                  "directory's TLS (default: the system's)"),
    AP_INIT_TAKE2("CertServiceACMEAccountSeal", cs_set_acme_seal, NULL,
                  RSRC_CONF, "RSA certificate and key file that seal the "
                  "ACME account key in the database"),
    AP_INIT_TAKE2("CertServiceACMELimit", cs_set_acme_limit, NULL, RSRC_CONF,
                  "New orders per window, for the whole cluster: N SECONDS "
                  "(default 300 3h)"),
    AP_INIT_TAKE2("CertServiceACMEBackoff", cs_set_acme_backoff, NULL,
                  RSRC_CONF, "Retry delay after a failure, doubling: FIRST "
                  "CAP (default 60 6h)"),
    AP_INIT_RAW_ARGS("CertServiceACMERenewal", cs_set_acme_renewal, NULL,
                     RSRC_CONF, "Renew at FRACTION% of the lifetime, up to "
                     "JITTER% earlier; ari|noari (default 66.7% 5% ari)"),
    AP_INIT_TAKE1("CertServiceACMEWorkers", cs_set_acme_workers, NULL,
                  RSRC_CONF, "Threads processing ACME orders (default 2)"),
    AP_INIT_TAKE1("CertServiceACMEPreferredChain", cs_set_acme_chain, NULL,
                  RSRC_CONF, "Pick the alternate chain whose top names this "
                  "issuer"),
    AP_INIT_TAKE12("CertServiceACMEPreCheck", cs_set_acme_precheck, NULL,
                   RSRC_CONF, "Before ordering, check that the domain "
                   "reaches us over http: on|off|PORT [DNS-SERVER:PORT] "
                   "(default off)"),
    AP_INIT_TAKE1("CertServiceWrapCertificate", cs_set_wrap_cert, NULL,
                  RSRC_CONF, "PEM file of a wrapping certificate (RSA): "
                  "private keys are sealed to every one configured"),
    AP_INIT_TAKE2("CertServiceLocalCA", cs_set_local_ca, NULL, RSRC_CONF,
                  "Issue with a local CA: certificate file and key file"),
    AP_INIT_TAKE1("CertServiceCertificateLifetime", cs_set_lifetime, NULL,
                  RSRC_CONF, "Lifetime of certificates the local CA issues "
                  "(default 47 days)"),
    AP_INIT_TAKE1("CertServiceKeyType", cs_set_key_type, NULL, RSRC_CONF,
                  "Default key type: ec-p256 (default) or rsa-2048"),
    AP_INIT_TAKE2("CertServiceRole", cs_add_role, NULL, RSRC_CONF,
                  "Map a client certificate to a role: proxy|admin "
                  "dn:<subject>|sha256:<fingerprint>"),
    AP_INIT_TAKE12("CertServiceMaxUnavailable", cs_set_max_unavailable, NULL,
                   RSRC_CONF, "Restart leases granted at once: N [pool] "
                   "(default 1)"),
    AP_INIT_TAKE1("CertServiceLeaseMaxTTL", cs_set_int, NULL, RSRC_CONF,
                  "Longest restart lease, in seconds (default 900)"),
    AP_INIT_TAKE1("CertServiceMaxBodySize", cs_set_int, NULL, RSRC_CONF,
                  "Largest request body, in bytes (default 1048576)"),
    AP_INIT_TAKE1("CertServiceMaxBatch", cs_set_int, NULL, RSRC_CONF,
                  "Most domains in one POST /v1/bundles (default 100)"),
    { NULL }
};

/* ------------------------------------------------------------------ */
/* Responses                                                           */
/* ------------------------------------------------------------------ */

static int cs_send_json(request_rec *r, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);

    json_decref(body);
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (text) {
        ap_rputs(text, r);
        ap_rputc('\n', r);
        free(text);
    }
    return OK;
}

static int cs_error(request_rec *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cs_error(request_rec *r, int status, const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(r->pool, fmt, ap);
    va_end(ap);
    ap_log_rerror(APLOG_MARK, status >= 500 ? APLOG_ERR : APLOG_INFO, 0, r,
                  CSLOGNO(00001) "%s %s: %d %s", r->method, r->uri, status,
                  msg);
    return cs_send_json(r, status, json_pack("{s:s, s:i}", "error", msg,
                                             "status", status));
}

/* Reads a JSON object body of at most max bytes. */
static int cs_read_json(request_rec *r, apr_size_t max, json_t **out)
{
    char *buf;
    apr_size_t len = 0;
    long n;
    json_error_t jerr;
    int rc;

    *out = NULL;
    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return cs_error(r, rc, "cannot read the request body");
    }
    if (r->remaining > (apr_off_t)max) {
        return cs_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE, "request body of "
                        "%" APR_OFF_T_FMT " bytes exceeds "
                        "CertServiceMaxBodySize (%" APR_SIZE_T_FMT ")",
                        r->remaining, max);
    }
    buf = apr_palloc(r->pool, max + 1);
    if (ap_should_client_block(r)) {
        while ((n = ap_get_client_block(r, buf + len, max + 1 - len)) > 0) {
            len += (apr_size_t)n;
            if (len > max) {
                return cs_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE,
                                "request body exceeds CertServiceMaxBodySize "
                                "(%" APR_SIZE_T_FMT ")", max);
            }
        }
        if (n < 0) {
            return cs_error(r, HTTP_BAD_REQUEST, "cannot read the request "
                            "body");
        }
    }
    if (len == 0) {
        *out = json_object();
        return DECLINED;
    }
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out) {
        return cs_error(r, HTTP_BAD_REQUEST, "malformed JSON at line %d "
                        "column %d: %s", jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return cs_error(r, HTTP_BAD_REQUEST, "the body must be a JSON "
                        "object");
    }
    /* DECLINED: go on; anything else is the response already sent. */
    return DECLINED;
}

/* ------------------------------------------------------------------ */
/* Who is calling                                                      */
/* ------------------------------------------------------------------ */

typedef struct {
    cs_role_t role;
    const char *who;            /* for the audit log: the subject DN */
    const char *why;            /* when role is CS_ROLE_NONE */
} cs_caller_t;

static void cs_identify(cs_caller_t *caller, request_rec *r,
                        const cs_conf_t *conf)
{
    const char *verify, *dn, *pem, *fp = NULL;
    int i;

    memset(caller, 0, sizeof(*caller));
    if (!cs_ssl_var) {
        caller->why = "mod_ssl is not loaded: no client certificates";
        return;
    }
    verify = cs_ssl_var(r->pool, r->server, r->connection, r,
                        "SSL_CLIENT_VERIFY");
    if (!verify || strcmp(verify, "SUCCESS") != 0) {
        caller->why = "a verified client certificate is required";
        return;
    }
    dn = cs_ssl_var(r->pool, r->server, r->connection, r, "SSL_CLIENT_S_DN");
    caller->who = dn ? dn : "?";
    for (i = 0; conf->roles && i < conf->roles->nelts; i++) {
        const cs_role_rule_t *rule = &APR_ARRAY_IDX(conf->roles, i,
                                                    cs_role_rule_t);
        int match;

        if (rule->by_fingerprint) {
            if (!fp) {
                pem = cs_ssl_var(r->pool, r->server, r->connection, r,
                                 "SSL_CLIENT_CERT");
                fp = "";
                if (pem) {
                    apr_array_header_t *certs;
                    const char *err;
                    if (!cs_pem_read_certs(&certs, r->pool, pem, strlen(pem),
                                           &err) && certs->nelts) {
                        fp = cs_cert_fingerprint(r->pool,
                                                 APR_ARRAY_IDX(certs, 0,
                                                               X509 *));
                    }
                }
            }
            match = strcmp(fp, rule->value) == 0;
        }
        else {
            match = dn && strcmp(dn, rule->value) == 0;
        }
        if (match && rule->role > caller->role) {
            caller->role = rule->role;
        }
    }
    if (!caller->role) {
        caller->why = "the client certificate maps to no role";
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    request_rec *r;
    const cs_conf_t *conf;
    cs_caller_t caller;
    cs_db_t db;
    const char *seg[7];
    int nseg;
} cs_req_t;

static int cs_open_db(cs_req_t *q)
{
    ap_dbd_t *dbd = cs_dbd_acquire ? cs_dbd_acquire(q->r) : NULL;
    apr_status_t rv;

    if (!dbd) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database "
                        "unavailable (see DBDriver/DBDParams)");
    }
    /* Statements are prepared on first use into mod_dbd's per-connection
     * hash, so they live exactly as long as the connection.  They are not
     * registered with ap_dbd_prepare(): mod_dbd would prepare them before
     * the schema exists and refuse every connection of a new database. */
    q->db.driver = dbd->driver;
    q->db.handle = dbd->handle;
    q->db.prepared = dbd->prepared;
    if (!cs_schema_ready) {
        if ((rv = cs_store_schema(&q->db, q->r->pool)) != APR_SUCCESS) {
            return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database "
                            "schema: %s", cs_store_error(&q->db, q->r->pool,
                                                         rv));
        }
        cs_schema_ready = 1;
    }
    return DECLINED;
}

static int cs_db_error(cs_req_t *q, apr_status_t rv)
{
    return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database error: %s",
                    cs_store_error(&q->db, q->r->pool, rv));
}

/* Domain from a path segment or JSON, normalised; NULL after a 400. */
static const char *cs_domain(cs_req_t *q, const char *raw, int *rc)
{
    const char *name, *why = cs_name_normalize(&name, q->r->pool, raw);

    if (why) {
        *rc = cs_error(q->r, HTTP_BAD_REQUEST, "invalid domain name '%s': "
                       "%s", raw ? ap_escape_logitem(q->r->pool, raw) : "",
                       why);
        return NULL;
    }
    return name;
}

/* Pool and host names: short tokens. */
static int cs_token_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64
           && s[strspn(s, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")] == '\0';
}

/* The unescaped value of a query parameter, NULL if absent; the last
 * occurrence wins. */
static char *cs_query_arg(request_rec *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *p;
    char *v = NULL;

    for (p = r->args; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1
                                                   : NULL) {
        if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            v = apr_pstrndup(r->pool, p + nlen + 1,
                             strcspn(p + nlen + 1, "&"));
        }
    }
    if (v) {
        ap_unescape_url(v);
    }
    return v;
}

static int cs_query_int(request_rec *r, const char *name, apr_int64_t dflt,
                        apr_int64_t max, apr_int64_t *out)
{
    const char *v = cs_query_arg(r, name);
    apr_int64_t n;
    char *end;

    *out = dflt;
    if (!v) {
        return DECLINED;
    }
    errno = 0;
    n = apr_strtoi64(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || n > max || errno == ERANGE) {
        return cs_error(r, HTTP_BAD_REQUEST, "query parameter '%s' must be "
                        "a number from 0 to %" APR_INT64_T_FMT, name, max);
    }
    *out = n;
    return DECLINED;
}

static int cs_get_changes(cs_req_t *q)
{
    apr_array_header_t *changes;
    apr_int64_t since, limit, next;
    apr_status_t rv;
    int more, rc;

    if ((rc = cs_query_int(q->r, "since", 0, APR_INT64_MAX, &since))
        != DECLINED
        || (rc = cs_query_int(q->r, "limit", CS_DEFAULT_FEED_LIMIT,
                              CS_MAX_FEED_LIMIT, &limit)) != DECLINED) {
        return rc;
    }
    if (limit < 1) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "limit must be at least 1");
    }
    if ((rv = cs_store_changes(&changes, &next, &more, &q->db, q->r->pool,
                               since, (int)limit))) {
        return cs_db_error(q, rv);
    }
    return cs_send_json(q->r, HTTP_OK, cs_json_changes(changes, next, more));
}

static int cs_get_bundle(cs_req_t *q, const char *raw)
{
    const char *domain;
    cs_bundle_t *b;
    apr_status_t rv;
    int rc;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    rv = cs_store_get(&b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv) || (!rv && !b->key_cms)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no certificate for %s",
                        domain);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    return cs_send_json(q->r, HTTP_OK, cs_json_bundle(b));
}

static int cs_post_bundles(cs_req_t *q)
{
    json_t *body, *names, *v, *bundles, *missing;
    size_t i;
    int rc;

    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    names = json_object_get(body, "domains");
    if (!json_is_array(names)) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be "
                        "{\"domains\":[...]}");
    }
    if (json_array_size(names) > (size_t)q->conf->max_batch) {
        size_t n = json_array_size(names);
        json_decref(body);
        return cs_error(q->r, HTTP_REQUEST_ENTITY_TOO_LARGE, "%" APR_SIZE_T_FMT
                        " domains requested; CertServiceMaxBatch is %d", n,
                        q->conf->max_batch);
    }
    bundles = json_array();
    missing = json_array();
    json_array_foreach(names, i, v) {
        const char *domain;
        cs_bundle_t *b;
        apr_status_t rv;

        if (!json_is_string(v)) {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return cs_error(q->r, HTTP_BAD_REQUEST, "domains[%"
                            APR_SIZE_T_FMT "] is not a string", i);
        }
        if (!(domain = cs_domain(q, json_string_value(v), &rc))) {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return rc;
        }
        rv = cs_store_get(&b, &q->db, q->r->pool, domain);
        if (rv == APR_SUCCESS && b->key_cms) {
            json_array_append_new(bundles, cs_json_bundle(b));
        }
        else if (APR_STATUS_IS_NOTFOUND(rv) || rv == APR_SUCCESS) {
            json_array_append_new(missing, json_string(domain));
        }
        else {
            json_decref(body);
            json_decref(bundles);
            json_decref(missing);
            return cs_db_error(q, rv);
        }
    }
    json_decref(body);
    return cs_send_json(q->r, HTTP_OK, json_pack("{s:o, s:o}", "bundles",
                                                 bundles, "missing",
                                                 missing));
}

static int cs_max_unavailable(const cs_conf_t *conf, const char *pool)
{
    const char *v = conf->pool_max_unavailable
                    ? apr_table_get(conf->pool_max_unavailable, pool) : NULL;

    if (v) {
        return atoi(v);
    }
    return conf->max_unavailable ? conf->max_unavailable : 1;
}

static int cs_post_lease(cs_req_t *q, const char *pool)
{
    json_t *body, *jhost, *jttl;
    const char *host, *lease;
    apr_int64_t expires, retry;
    apr_status_t rv;
    int rc, granted, ttl, max_ttl = q->conf->lease_max_ttl;

    if (!cs_token_ok(pool)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid pool name");
    }
    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    jhost = json_object_get(body, "host");
    jttl = json_object_get(body, "ttl");
    if (!json_is_string(jhost) || !cs_token_ok(json_string_value(jhost))
        || !json_is_integer(jttl) || json_integer_value(jttl) < 1
        || json_integer_value(jttl) > max_ttl) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be {\"host\": "
                        "<name of 1-64 of [A-Za-z0-9._-]>, \"ttl\": <1..%d "
                        "seconds>}", max_ttl);
    }
    host = apr_pstrdup(q->r->pool, json_string_value(jhost));
    ttl = (int)json_integer_value(jttl);
    json_decref(body);
    rv = cs_store_lease_acquire(&lease, &expires, &granted, &retry, &q->db,
                                q->r->pool, pool, host, ttl,
                                cs_max_unavailable(q->conf, pool),
                                apr_time_sec(apr_time_now()));
    if (rv) {
        return cs_db_error(q, rv);
    }
    if (!granted) {
        apr_table_setn(q->r->err_headers_out, "Retry-After",
                       apr_psprintf(q->r->pool, "%" APR_INT64_T_FMT, retry));
        return cs_send_json(q->r, HTTP_CONFLICT, json_pack(
            "{s:s, s:i, s:I}", "error", "every restart slot of the pool is "
            "taken", "status", HTTP_CONFLICT, "retry_after",
            (json_int_t)retry));
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00002)
                  "lease %s granted to host %s in pool %s for %ds", lease,
                  host, pool, ttl);
    apr_table_setn(q->r->headers_out, "Location",
                   apr_pstrcat(q->r->pool, q->r->uri, "/", lease, NULL));
    return cs_send_json(q->r, HTTP_CREATED, json_pack(
        "{s:s, s:I}", "lease", lease, "expires", (json_int_t)expires));
}

static int cs_delete_lease(cs_req_t *q, const char *pool, const char *lease)
{
    apr_status_t rv;

    if (!cs_token_ok(pool) || !cs_token_ok(lease)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid pool or lease id");
    }
    rv = cs_store_lease_release(&q->db, q->r->pool, pool, lease);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no live lease %s in pool %s",
                        lease, pool);
    }
    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, CSLOGNO(00003)
                  "lease %s of pool %s released", lease, pool);
    q->r->status = HTTP_NO_CONTENT;
    return OK;
}

static int cs_post_report(cs_req_t *q, const char *host)
{
    json_t *body, *jpool, *jseq, *jstate, *jfailed;
    char *failed;
    apr_status_t rv;
    int rc;

    if (!cs_token_ok(host)) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "invalid host name");
    }
    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    jpool = json_object_get(body, "pool");
    jseq = json_object_get(body, "seq");
    jstate = json_object_get(body, "state");
    jfailed = json_object_get(body, "failed");
    if (!json_is_string(jpool) || !cs_token_ok(json_string_value(jpool))
        || !json_is_integer(jseq) || json_integer_value(jseq) < 0
        || !json_is_string(jstate) || !cs_token_ok(json_string_value(jstate))
        || (jfailed && !json_is_object(jfailed))) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be {\"pool\": "
                        "name, \"seq\": n, \"state\": word, \"failed\": "
                        "{domain: reason, ...}}");
    }
    failed = json_dumps(jfailed ? jfailed : json_object(), JSON_COMPACT);
    rv = cs_store_host_report(&q->db, q->r->pool, host,
                              json_string_value(jpool),
                              (apr_int64_t)json_integer_value(jseq),
                              json_string_value(jstate), failed ? failed : "{}",
                              apr_time_sec(apr_time_now()));
    free(failed);
    json_decref(body);
    if (rv) {
        return cs_db_error(q, rv);
    }
    q->r->status = HTTP_NO_CONTENT;
    return OK;
}

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
                                         q->conf->lifetime != -1
                                         ? q->conf->lifetime
                                         : CS_DEFAULT_LIFETIME);
    }
    return svc;
}

/* Stores a new bundle and answers with the domain's state. */
static int cs_store_and_reply(cs_req_t *q, cs_bundle_t *b, int existed,
                              const char *what)
{
    apr_status_t rv = cs_store_put_bundle(&q->db, q->r->pool, b,
                                          q->caller.who);

    if (rv) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00004)
                  "admin '%s': %s %s: serial %s, expires %" APR_INT64_T_FMT
                  ", seq %" APR_INT64_T_FMT, q->caller.who, what, b->domain,
                  b->serial, b->not_after, b->seq);
    return cs_send_json(q->r, existed ? HTTP_OK : HTTP_CREATED,
                        cs_json_domain(b, NULL));
}

/* The domain's place in the ACME queue, for GET /v1/domains/DOMAIN. */
static void cs_acme_json(json_t *j, cs_req_t *q, const char *domain)
{
    cs_job_t *job;

    if (cs_store_job_get(&job, &q->db, q->r->pool, domain) != APR_SUCCESS) {
        return;
    }
    json_object_set_new(j, "acme", json_pack(
        "{s:s, s:i, s:I, s:I, s:o}",
        "state", job->state, "attempts", job->attempts,
        "next_attempt", (json_int_t)job->next_at,
        "renew_at", (json_int_t)job->renew_at,
        "last_error", job->last_error ? json_string(job->last_error)
                                      : json_null()));
}

static int cs_acme_enqueue(cs_req_t *q, const char *domain, int kt);

/* An ACME client for one request, logged in with the stored account. */
static cs_acme_t *cs_acme_request_client(cs_req_t *q, EVP_PKEY **key,
                                         const char **kid, int *status)
{
    const cs_conf_t *conf = q->conf;
    cs_acme_conf_t ac;
    cs_acme_t *acme;
    const char *cms, *err = NULL;
    unsigned char *der;
    apr_size_t len;
    apr_status_t rv;

    *status = HTTP_SERVICE_UNAVAILABLE;
    if (!conf->acme_url || !conf->acme_seal_cert) {
        *status = cs_error(q->r, HTTP_NOT_FOUND, "ACME is not configured "
                           "(CertServiceACMEDirectory)");
        return NULL;
    }
    rv = cs_store_account_get(kid, &cms, &q->db, q->r->pool, conf->acme_url);
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
    ac.directory_url = conf->acme_url;
    ac.ca_file = conf->acme_ca;
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

/* GET /v1/acme/account: the account's URL and key thumbprint. */
static int cs_get_acme_account(cs_req_t *q)
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

/* POST /v1/acme/account/key-change: roll the account over to a new key
 * (RFC 8555 7.3.5) and store it sealed; workers pick it up. */
static int cs_post_acme_key_change(cs_req_t *q)
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
static int cs_post_revoke(cs_req_t *q, const char *raw)
{
    const char *domain, *kid, *err = NULL;
    cs_acme_t *acme;
    EVP_PKEY *akey;
    cs_bundle_t *b;
    apr_array_header_t *chain;
    json_t *body, *jr;
    apr_status_t rv;
    int rc, reason = 0;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    jr = json_object_get(body, "reason");
    if (jr && (!json_is_integer(jr) || json_integer_value(jr) < 0
               || json_integer_value(jr) > 10
               || json_integer_value(jr) == 7)) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "reason must be an RFC 5280 "
                        "reason code (0-10, not 7)");
    }
    reason = jr ? (int)json_integer_value(jr) : 0;
    json_decref(body);
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
    if (!(acme = cs_acme_request_client(q, &akey, &kid, &rc))) {
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
    return cs_acme_enqueue(q, domain, cs_key_type_parse(b->key_type) < 0
                           ? CS_KEY_EC_P256
                           : cs_key_type_parse(b->key_type));
}

/* PUT /v1/domains/DOMAIN with ACME: queue the order, answer 202. */
static int cs_acme_enqueue(cs_req_t *q, const char *domain, int kt)
{
    cs_bundle_t *b;
    apr_status_t rv;
    json_t *j;

    if (domain[0] == '*') {
        return cs_error(q->r, HTTP_BAD_REQUEST, "%s: a wildcard needs a "
                        "dns-01 challenge; this CertService answers "
                        "http-01 only", domain);
    }
    if (!q->conf->wrap_certs || !q->conf->wrap_certs->nelts
        || !q->conf->acme_seal_cert) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "ACME needs "
                        "CertServiceWrapCertificate and "
                        "CertServiceACMEAccountSeal");
    }
    rv = cs_store_get(&b, &q->db, q->r->pool, domain);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        /* Known from now on, without a certificate: state "pending". */
        rv = cs_store_set_error(&q->db, q->r->pool, domain, NULL);
        if (rv == APR_SUCCESS) {
            rv = cs_store_get(&b, &q->db, q->r->pool, domain);
        }
    }
    if (rv || (rv = cs_store_job_enqueue(&q->db, q->r->pool, domain,
                                         cs_key_type_name((cs_key_type_t)kt),
                                         apr_time_sec(apr_time_now())))) {
        return cs_db_error(q, rv);
    }
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00023)
                  "admin '%s': %s queued for ACME issuance", q->caller.who,
                  domain);
    j = cs_json_domain(b, NULL);
    cs_acme_json(j, q, domain);
    return cs_send_json(q->r, HTTP_ACCEPTED, j);
}

static int cs_put_domain(cs_req_t *q, const char *raw)
{
    const char *domain, *why = NULL;
    cs_service_t *svc;
    cs_bundle_t *b, *old;
    json_t *body, *jkt;
    apr_status_t rv;
    int rc, kt = q->conf->key_type != -1 ? q->conf->key_type : CS_KEY_EC_P256;
    int existed;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    jkt = json_object_get(body, "key_type");
    if (jkt && (!json_is_string(jkt)
                || (kt = cs_key_type_parse(json_string_value(jkt))) < 0)) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "key_type must be "
                        "\"ec-p256\" or \"rsa-2048\"");
    }
    json_decref(body);
    if (q->conf->acme_url) {
        return cs_acme_enqueue(q, domain, kt);
    }
    if (!(svc = cs_service(q, &why))) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "%s", why);
    }
    rv = cs_store_get(&old, &q->db, q->r->pool, domain);
    if (rv && !APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_db_error(q, rv);
    }
    existed = rv == APR_SUCCESS;
    if ((rv = cs_service_issue(&b, q->r->pool, svc, domain,
                               (cs_key_type_t)kt, &why))) {
        cs_store_set_error(&q->db, q->r->pool, domain, why);
        return cs_error(q->r, rv == APR_ENOTIMPL ? HTTP_SERVICE_UNAVAILABLE
                                                 : HTTP_BAD_GATEWAY,
                        "issuing %s failed: %s", domain, why);
    }
    return cs_store_and_reply(q, b, existed, existed ? "reissued" : "issued");
}

static int cs_put_certificate(cs_req_t *q, const char *raw)
{
    const char *domain, *why = NULL;
    cs_service_t *svc;
    cs_bundle_t *b, *old;
    json_t *body, *jchain, *jkey;
    apr_status_t rv;
    int rc, existed;

    if (!(domain = cs_domain(q, raw, &rc))) {
        return rc;
    }
    if ((rc = cs_read_json(q->r, q->conf->max_body, &body)) != DECLINED) {
        return rc;
    }
    jchain = json_object_get(body, "chain_pem");
    jkey = json_object_get(body, "key_pem");
    if (!json_is_string(jchain) || !json_is_string(jkey)) {
        json_decref(body);
        return cs_error(q->r, HTTP_BAD_REQUEST, "body must be "
                        "{\"chain_pem\": \"...\", \"key_pem\": \"...\"}");
    }
    if (!(svc = cs_service(q, &why))) {
        json_decref(body);
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "%s", why);
    }
    rv = cs_service_import(&b, q->r->pool, svc, domain,
                           json_string_value(jchain),
                           json_string_value(jkey), apr_time_now(), &why);
    json_decref(body);
    if (rv) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "import refused, nothing "
                        "stored: %s", why);
    }
    rv = cs_store_get(&old, &q->db, q->r->pool, domain);
    if (rv && !APR_STATUS_IS_NOTFOUND(rv)) {
        return cs_db_error(q, rv);
    }
    existed = rv == APR_SUCCESS;
    return cs_store_and_reply(q, b, existed, "imported");
}

static int cs_delete_domain(cs_req_t *q, const char *raw)
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

static int cs_get_domain(cs_req_t *q, const char *raw)
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

static int cs_get_domains(cs_req_t *q)
{
    apr_array_header_t *list;
    apr_int64_t limit;
    const char *after = NULL, *v;
    json_t *arr;
    apr_status_t rv;
    int rc, i;

    if ((rc = cs_query_int(q->r, "limit", 100, 1000, &limit)) != DECLINED) {
        return rc;
    }
    if (limit < 1) {
        return cs_error(q->r, HTTP_BAD_REQUEST, "limit must be at least 1");
    }
    if ((v = cs_query_arg(q->r, "after")) != NULL
        && !(after = cs_domain(q, v, &rc))) {
        return rc;
    }
    if ((rv = cs_store_list(&list, &q->db, q->r->pool, after,
                            (int)limit))) {
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

/* ------------------------------------------------------------------ */
/* ACME: the issuer queue's workers (watchdog threads)                 */
/* ------------------------------------------------------------------ */

static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *cs_dbd_open;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *cs_dbd_close;

/* One worker thread: its own pool and allocator, client and account. */
typedef struct {
    server_rec *s;
    const cs_conf_t *conf;
    int index;
    apr_pool_t *pool;           /* lives as long as the thread */
    cs_acme_t *acme;
    const char *owner;          /* "host:pid:index", for claims */
    cs_db_t *db;                /* during a job, for the http-01 callback */
    apr_pool_t *jp;             /* the job's pool */
    int account_ok;             /* registered since the last failure */
    char *account_cms;          /* the sealed key it registered with */
    apr_pool_t *key_pool;       /* the account key in use (under pool) */
} cs_worker_t;

/* Effective ACME settings (defaults for unset fields). */
#define ACME_LIMIT(c)   ((c)->acme_limit ? (c)->acme_limit : CS_ACME_LIMIT)
#define ACME_WINDOW(c)  ((c)->acme_window ? (c)->acme_window : CS_ACME_WINDOW)
#define ACME_BACKOFF(c) ((c)->acme_backoff ? (c)->acme_backoff \
                                           : CS_ACME_BACKOFF)
#define ACME_CAP(c)     ((c)->acme_backoff_cap ? (c)->acme_backoff_cap \
                                               : CS_ACME_BACKOFF_CAP)
#define ACME_RENEW(c)   ((c)->acme_renew_pm ? (c)->acme_renew_pm \
                                            : CS_ACME_RENEW_PM)
#define ACME_JITTER(c)  ((c)->acme_jitter_pm < 0 ? 0 : (c)->acme_jitter_pm \
                         ? (c)->acme_jitter_pm : CS_ACME_JITTER_PM)
#define ACME_ARI(c)     ((c)->acme_ari != 0)

static void cs_acme_log(void *baton, cs_log_level_t level, const char *msg)
{
    cs_worker_t *w = baton;
    int l = level == CS_LOG_ERR ? APLOG_ERR
            : level == CS_LOG_WARN ? APLOG_WARNING
            : level == CS_LOG_INFO ? APLOG_INFO : APLOG_DEBUG;

    ap_log_error(APLOG_MARK, l, 0, w->s, CSLOGNO(00012) "acme worker %d: %s",
                 w->index, msg);
}

static apr_status_t cs_acme_http01(void *baton, const char *domain,
                                   const char *token, const char *keyauth,
                                   int setup)
{
    cs_worker_t *w = baton;
    apr_status_t rv;

    if (!setup) {
        return cs_store_challenge_delete(w->db, w->jp, token);
    }
    rv = cs_store_challenge_put(w->db, w->jp, token, domain, keyauth,
                                apr_time_sec(apr_time_now())
                                + CS_ACME_CHALLENGE_TTL);
    if (rv) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, w->s, CSLOGNO(00013)
                     "acme: cannot store the http-01 token for %s: %s",
                     domain, cs_store_error(w->db, w->jp, rv));
    }
    return rv;
}

typedef struct {
    cs_acme_t *acme;
    const char *replaces;
} cs_acme_issuer_t;

static apr_status_t cs_acme_issue_cb(apr_array_header_t **chain,
                                     apr_pool_t *p,
                                     const cs_issuer_t *issuer,
                                     EVP_PKEY *key, const char *domain,
                                     const char **err)
{
    const cs_acme_issuer_t *ai = issuer->baton;

    return cs_acme_issue(chain, p, ai->acme, key, domain, ai->replaces, err);
}

/* Register (or find) the account of key, which lives in kp.  The ACME
 * client keeps using the previous key until the CA accepted this one, so
 * the previous key's pool goes only then; kp goes on failure.  Either way
 * a worker holds one account key however often it looks the account up. */
static apr_status_t cs_acme_use_key(const char **got, cs_worker_t *w,
                                    apr_pool_t *kp, EVP_PKEY *key,
                                    const char **err)
{
    apr_status_t rv = cs_acme_account(got, w->acme, key,
                                      w->conf->acme_contact, err);

    if (rv != APR_SUCCESS) {
        apr_pool_destroy(kp);
        return rv;
    }
    if (w->key_pool) {
        apr_pool_destroy(w->key_pool);
    }
    w->key_pool = kp;
    return APR_SUCCESS;
}

/* The account: from the database (key unsealed), else a new one. */
static apr_status_t cs_acme_ensure_account(cs_worker_t *w, const char **err)
{
    const cs_conf_t *conf = w->conf;
    const char *kid = NULL, *cms, *got;
    unsigned char *der;
    apr_size_t len;
    apr_array_header_t *rcpt;
    apr_pool_t *kp;
    EVP_PKEY *key;
    apr_status_t rv;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        rv = cs_store_account_get(&kid, &cms, w->db, w->jp, conf->acme_url);
        if (rv == APR_SUCCESS) {
            free(w->account_cms);
            w->account_cms = strdup(cms);
            apr_pool_create(&kp, w->pool);
            if ((rv = cs_base64_decode(&der, &len, w->jp, cms))
                || (rv = cs_envelope_open(&key, kp, der, len,
                                          conf->acme_seal_cert,
                                          conf->acme_seal_key, err))) {
                *err = apr_psprintf(w->jp, "cannot unseal the ACME account "
                                    "key with CertServiceACMEAccountSeal: "
                                    "%s", *err ? *err : "bad base64");
                apr_pool_destroy(kp);
                return rv;
            }
            if ((rv = cs_acme_use_key(&got, w, kp, key, err))) {
                return rv;
            }
            if (!kid || strcmp(kid, got) != 0) {
                cs_store_account_put(w->db, w->jp, conf->acme_url, got, cms,
                                     0);
            }
            return APR_SUCCESS;
        }
        if (!APR_STATUS_IS_NOTFOUND(rv)) {
            *err = cs_store_error(w->db, w->jp, rv);
            return rv;
        }
        /* None yet: make one, register it, store it sealed.  Another
         * instance racing us wins the insert; we then use its account. */
        rcpt = apr_array_make(w->jp, 1, sizeof(X509 *));
        APR_ARRAY_PUSH(rcpt, X509 *) = conf->acme_seal_cert;
        apr_pool_create(&kp, w->pool);
        if ((rv = cs_key_generate(&key, kp, CS_KEY_EC_P256))
            || (rv = cs_envelope_seal(&der, &len, w->jp, key, rcpt, err))) {
            *err = *err ? *err : "cannot make an account key";
            apr_pool_destroy(kp);
            return rv;
        }
        if ((rv = cs_acme_use_key(&got, w, kp, key, err))) {
            return rv;
        }
        if (cs_store_account_put(w->db, w->jp, conf->acme_url, got,
                                 cs_base64_encode(w->jp, der, len), 1)
            == APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, w->s, CSLOGNO(00014)
                         "acme: new account %s at %s", got, conf->acme_url);
            return APR_SUCCESS;
        }
    }
    *err = "cannot store the ACME account";
    return APR_EGENERAL;
}

/* When the certificate of b should be renewed, and when to look again. */
static apr_int64_t cs_acme_renew_time(cs_worker_t *w, const cs_bundle_t *b,
                                      apr_int64_t now, apr_int64_t *recheck,
                                      const char **how)
{
    const cs_conf_t *conf = w->conf;
    apr_int64_t at = cs_sched_renew_at(b->not_before, b->not_after,
                                       b->serial, ACME_RENEW(conf),
                                       ACME_JITTER(conf));
    apr_int64_t start, end, ra, ari;
    apr_array_header_t *chain;
    const char *err = NULL;

    *recheck = at;
    *how = "lifetime";
    if (!ACME_ARI(conf) || !b->chain_pem || cs_acme_directory(w->acme, &err)
        || !cs_acme_has_ari(w->acme)
        || cs_pem_read_certs(&chain, w->jp, b->chain_pem,
                             strlen(b->chain_pem), &err) || !chain->nelts) {
        return at;
    }
    if (cs_acme_renewal_info(&start, &end, &ra, w->acme, w->jp,
                             APR_ARRAY_IDX(chain, 0, X509 *), &err)) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->s, CSLOGNO(00015)
                     "acme: renewalInfo for %s: %s; renewing by lifetime",
                     b->domain, err);
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

/* Pre-check: a probe token of ours must come back through
 * http://DOMAIN:PORT/.well-known/acme-challenge/. */
static apr_status_t cs_worker_precheck(cs_worker_t *w, const char *domain,
                                       const char **err)
{
    unsigned char raw[16];
    const char *token, *expect;
    apr_status_t rv;

    apr_generate_random_bytes(raw, sizeof(raw));
    token = apr_pstrcat(w->jp, "cs-precheck-",
                        cs_b64url_encode(w->jp, raw, sizeof(raw)), NULL);
    expect = apr_pstrcat(w->jp, token, ".precheck", NULL);
    if ((rv = cs_store_challenge_put(w->db, w->jp, token, domain, expect,
                                     apr_time_sec(apr_time_now()) + 120))) {
        *err = cs_store_error(w->db, w->jp, rv);
        return rv;
    }
    rv = cs_acme_precheck(w->acme, w->jp, domain,
                          w->conf->acme_precheck_port,
                          w->conf->acme_precheck_dns, token, expect, err);
    cs_store_challenge_delete(w->db, w->jp, token);
    return rv;
}

/* One job, claimed by this worker. */
static void cs_acme_job(cs_worker_t *w, const char *domain)
{
    const cs_conf_t *conf = w->conf;
    apr_pool_t *p = w->jp;
    cs_job_t *job;
    cs_bundle_t *old = NULL, *b;
    cs_service_t svc;
    cs_issuer_t issuer;
    cs_acme_issuer_t ai;
    apr_array_header_t *chain;
    apr_int64_t now = apr_time_sec(apr_time_now()), recheck, ra, when;
    const char *err = NULL, *how;
    apr_status_t rv;
    int granted, renewal, precheck_failed = 0;

    if ((rv = cs_store_job_get(&job, w->db, p, domain))) {
        return;
    }
    rv = cs_store_get(&old, w->db, p, domain);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        /* Deleted meanwhile. */
        cs_store_job_delete(w->db, p, domain);
        return;
    }
    if (rv) {
        goto release;
    }
    renewal = old->serial && old->key_cms;
    /* A scheduled look at a certificate we have: renew only when due.
     * A queued (forced) or failed job is due already: a forced re-issue
     * that failed once must not wait for the old certificate's renewal. */
    if (renewal && strcmp(job->state, "valid") == 0) {
        when = cs_acme_renew_time(w, old, now, &recheck, &how);
        if (when > now) {
            job->next_at = recheck;
            job->renew_at = when;
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, w->s, CSLOGNO(00016)
                         "acme: %s: renewal at %" APR_INT64_T_FMT " (%s), "
                         "next look at %" APR_INT64_T_FMT, domain, when, how,
                         recheck);
            goto release;
        }
    }
    /* The cluster-wide limiter, before anything is asked of the CA. */
    if ((rv = cs_store_rate_take(&granted, &ra, w->db, p, "orders", now,
                                 ACME_WINDOW(conf), ACME_LIMIT(conf), 0))) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, w->s, CSLOGNO(00017)
                     "acme: limiter: %s", cs_store_error(w->db, p, rv));
        job->next_at = now + 5;
        goto release;
    }
    if (!granted) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->s, CSLOGNO(00018)
                     "acme: %s waits %" APR_INT64_T_FMT " s for the order "
                     "limit (%d per %" APR_INT64_T_FMT " s)", domain, ra,
                     ACME_LIMIT(conf), ACME_WINDOW(conf));
        job->next_at = now + ra;
        goto release;
    }

    /* After any failure the account is looked up again (the CA may have
     * forgotten it: a test CA restarted), and when its key changed in the
     * database (a key rollover by any instance). */
    if (w->account_ok && w->account_cms) {
        const char *kid, *cms;
        if (cs_store_account_get(&kid, &cms, w->db, p, conf->acme_url)
            == APR_SUCCESS && strcmp(cms, w->account_cms) != 0) {
            w->account_ok = 0;
        }
    }
    if (!w->account_ok
        && (rv = cs_acme_ensure_account(w, &err)) == APR_SUCCESS) {
        w->account_ok = 1;
    }
    if (w->account_ok && conf->acme_precheck_port > 0) {
        rv = cs_worker_precheck(w, domain, &err);
        precheck_failed = rv != APR_SUCCESS;
    }
    if (w->account_ok && rv == APR_SUCCESS) {
        memset(&svc, 0, sizeof(svc));
        memset(&issuer, 0, sizeof(issuer));
        ai.acme = w->acme;
        ai.replaces = NULL;
        if (renewal && old->chain_pem
            && !cs_pem_read_certs(&chain, p, old->chain_pem,
                                  strlen(old->chain_pem), &err)
            && chain->nelts) {
            cs_acme_cert_id(&ai.replaces, p, APR_ARRAY_IDX(chain, 0, X509 *));
        }
        err = NULL;
        issuer.name = "acme";
        issuer.issue = cs_acme_issue_cb;
        issuer.baton = &ai;
        svc.issuer = &issuer;
        svc.wrap_certs = conf->wrap_certs;
        rv = cs_service_issue(&b, p, &svc, domain,
                              (cs_key_type_t)cs_key_type_parse(job->key_type),
                              &err);
    }
    /* Deleted while the order ran: do not bring it back. */
    if (rv == APR_SUCCESS
        && APR_STATUS_IS_NOTFOUND(cs_store_job_get(&job, w->db, p, domain))) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->s, CSLOGNO(00031)
                     "acme: %s was deleted during its order; certificate "
                     "%s dropped", domain, b->serial);
        return;
    }
    if (rv == APR_SUCCESS
        && (rv = cs_store_put_bundle(w->db, p, b, "acme")) != APR_SUCCESS) {
        err = apr_pstrcat(p, "storing the certificate: ",
                          cs_store_error(w->db, p, rv), NULL);
    }
    if (rv == APR_SUCCESS) {
        job->state = "valid";
        job->attempts = 0;
        job->last_error = NULL;
        job->renew_at = cs_acme_renew_time(w, b, now, &recheck, &how);
        job->next_at = recheck;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, w->s, CSLOGNO(00019)
                     "acme: %s %s: serial %s, expires %" APR_INT64_T_FMT
                     ", seq %" APR_INT64_T_FMT ", renewal at %"
                     APR_INT64_T_FMT " (%s)", renewal ? "renewed" : "issued",
                     domain, b->serial, b->not_after, b->seq, job->renew_at,
                     how);
        goto release;
    }
    /* Failed: back off per domain, and for a rate limit pause everyone.
     * The account is looked up again unless the CA was not involved (a
     * domain failing the pre-check again and again would otherwise unseal
     * the account key into the worker's pool each time). */
    if (!precheck_failed) {
        w->account_ok = 0;
    }
    job->attempts++;
    job->state = "failed";
    job->last_error = err ? err : "unknown error";
    when = cs_sched_backoff(job->attempts, ACME_BACKOFF(conf), ACME_CAP(conf));
    if (rv == APR_EAGAIN) {
        ra = cs_acme_retry_after(w->acme);
        cs_store_rate_take(&granted, &ra, w->db, p, "orders", now, 0, 0,
                           now + cs_acme_retry_after(w->acme));
        ra = cs_acme_retry_after(w->acme);
        when = ra > when ? ra : when;
    }
    job->next_at = now + when;
    cs_store_set_error(w->db, p, domain, job->last_error);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, w->s, CSLOGNO(00020)
                 "acme: %s failed (attempt %d, next in %" APR_INT64_T_FMT
                 " s): %s", domain, job->attempts, when, job->last_error);
release:
    if ((rv = cs_store_job_finish(w->db, p, job, w->owner))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, w->s, CSLOGNO(00021)
                     "acme: cannot record the outcome for %s: %s", domain,
                     cs_store_error(w->db, p, rv));
    }
}

static apr_status_t cs_acme_wd(int state, void *data, apr_pool_t *wdp)
{
    cs_worker_t *w = (cs_worker_t *)data;
    apr_allocator_t *alloc;
    cs_acme_conf_t ac;
    apr_array_header_t *due;
    ap_dbd_t *dbd;
    cs_db_t db;
    apr_status_t rv;
    apr_time_t until = apr_time_now() + apr_time_from_sec(20);
    int i, claimed, worked;

    if (state == AP_WATCHDOG_STATE_STOPPING) {
        free(w->account_cms);
        w->account_cms = NULL;
        if (w->pool) {
            apr_pool_destroy(w->pool);
            w->pool = NULL;
            w->key_pool = NULL;
            w->acme = NULL;
        }
        return APR_SUCCESS;
    }
    if (!w->pool) {
        if (apr_allocator_create(&alloc) != APR_SUCCESS
            || apr_pool_create_ex(&w->pool, NULL, NULL, alloc)
               != APR_SUCCESS) {
            return APR_SUCCESS;
        }
        apr_allocator_owner_set(alloc, w->pool);
        memset(&ac, 0, sizeof(ac));
        ac.directory_url = w->conf->acme_url;
        ac.ca_file = w->conf->acme_ca;
        ac.preferred_chain = w->conf->acme_chain;
        ac.log = cs_acme_log;
        ac.log_baton = w;
        ac.http01 = cs_acme_http01;
        ac.http01_baton = w;
        if (cs_acme_create(&w->acme, w->pool, &ac) != APR_SUCCESS) {
            apr_pool_destroy(w->pool);
            w->pool = NULL;
            return APR_SUCCESS;
        }
        w->owner = apr_psprintf(w->pool, "%.40s:%" APR_PID_T_FMT ":%d",
                                w->s->server_hostname
                                ? w->s->server_hostname : "cs",
                                getpid(), w->index);
    }
    if (!(dbd = cs_dbd_open(wdp, w->s))) {
        return APR_SUCCESS;
    }
    memset(&db, 0, sizeof(db));
    db.driver = dbd->driver;
    db.handle = dbd->handle;
    db.prepared = dbd->prepared;
    if (!cs_schema_ready) {
        if ((rv = cs_store_schema(&db, wdp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, w->s, CSLOGNO(00022)
                         "acme: database schema: %s",
                         cs_store_error(&db, wdp, rv));
            cs_dbd_close(w->s, dbd);
            return APR_SUCCESS;
        }
        cs_schema_ready = 1;
    }
    w->db = &db;
    /* Work while jobs are due, for a while: then give the watchdog its
     * thread back (it checks for stopping between calls). */
    do {
        worked = 0;
        if (cs_store_job_due(&due, &db, wdp, apr_time_sec(apr_time_now()),
                             8) != APR_SUCCESS) {
            break;
        }
        for (i = 0; i < due->nelts && !worked; i++) {
            const char *domain = APR_ARRAY_IDX(due, i, const char *);
            if (cs_store_job_claim(&claimed, &db, wdp, domain, w->owner,
                                   apr_time_sec(apr_time_now()),
                                   CS_ACME_CLAIM) == APR_SUCCESS
                && claimed) {
                apr_pool_create(&w->jp, wdp);
                cs_acme_job(w, domain);
                apr_pool_destroy(w->jp);
                w->jp = NULL;
                worked = 1;
            }
        }
    } while (worked && apr_time_now() < until);
    w->db = NULL;
    cs_dbd_close(w->s, dbd);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */
/* ------------------------------------------------------------------ */

static int cs_method(cs_req_t *q, int allowed_mask, const char *allow)
{
    if (allowed_mask & (AP_METHOD_BIT << q->r->method_number)) {
        return DECLINED;
    }
    apr_table_setn(q->r->err_headers_out, "Allow", allow);
    return cs_error(q->r, HTTP_METHOD_NOT_ALLOWED, "method %s not allowed "
                    "here (allowed: %s)", q->r->method, allow);
}

static int cs_need(cs_req_t *q, cs_role_t role)
{
    if (q->caller.role >= role) {
        return DECLINED;
    }
    return cs_error(q->r, HTTP_FORBIDDEN, "this endpoint needs the %s role",
                    role == CS_ROLE_ADMIN ? "admin" : "proxy");
}

#define M(x) (AP_METHOD_BIT << (x))

static int cs_route(cs_req_t *q)
{
    const char **s = q->seg;
    int n = q->nseg, m = q->r->method_number, rc;

    if (n < 2 || strcmp(s[0], "v1") != 0) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }
    if (strcmp(s[1], "domains") == 0 && n <= 4) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        if (n == 2) {
            return (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
                   ? rc : cs_get_domains(q);
        }
        if (n == 4 && strcmp(s[3], "certificate") == 0) {
            return (rc = cs_method(q, M(M_PUT), "PUT")) != DECLINED
                   ? rc : cs_put_certificate(q, s[2]);
        }
        if (n == 4 && strcmp(s[3], "revoke") == 0) {
            return (rc = cs_method(q, M(M_POST), "POST")) != DECLINED
                   ? rc : cs_post_revoke(q, s[2]);
        }
        if (n == 3) {
            if ((rc = cs_method(q, M(M_GET) | M(M_PUT) | M(M_DELETE),
                                "GET, PUT, DELETE")) != DECLINED) {
                return rc;
            }
            return m == M_GET ? cs_get_domain(q, s[2])
                   : m == M_PUT ? cs_put_domain(q, s[2])
                   : cs_delete_domain(q, s[2]);
        }
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }

    if (strcmp(s[1], "acme") == 0 && n >= 3 && n <= 4
        && strcmp(s[2], "account") == 0) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        if (n == 3) {
            return (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
                   ? rc : cs_get_acme_account(q);
        }
        if (strcmp(s[3], "key-change") == 0) {
            return (rc = cs_method(q, M(M_POST), "POST")) != DECLINED
                   ? rc : cs_post_acme_key_change(q);
        }
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }

    if ((rc = cs_need(q, CS_ROLE_PROXY)) != DECLINED) {
        return rc;
    }
    if (n == 2 && strcmp(s[1], "changes") == 0) {
        if ((rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_changes(q);
    }
    if (strcmp(s[1], "bundles") == 0 && (n == 2 || n == 3)) {
        if ((rc = cs_method(q, n == 2 ? M(M_POST) : M(M_GET),
                            n == 2 ? "POST" : "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return n == 2 ? cs_post_bundles(q) : cs_get_bundle(q, s[2]);
    }
    if (strcmp(s[1], "pools") == 0 && (n == 4 || n == 5)
        && strcmp(s[3], "leases") == 0) {
        if ((rc = cs_method(q, n == 4 ? M(M_POST) : M(M_DELETE),
                            n == 4 ? "POST" : "DELETE")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return n == 4 ? cs_post_lease(q, s[2]) : cs_delete_lease(q, s[2],
                                                                 s[4]);
    }
    if (n == 4 && strcmp(s[1], "hosts") == 0 && strcmp(s[3], "report") == 0) {
        if ((rc = cs_method(q, M(M_POST), "POST")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_post_report(q, s[2]);
    }
    return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
}

/* GET /acme-challenge/TOKEN: the key authorization of a challenge in
 * progress, and nothing else (404). */
static int cs_get_challenge(cs_req_t *q, const char *token)
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

static int cs_handler(request_rec *r)
{
    cs_req_t q;
    cs_conf_t eff;
    char *path, *tok, *last;

    if (!r->handler || strcmp(r->handler, CS_HANDLER) != 0) {
        return DECLINED;
    }
    memset(&q, 0, sizeof(q));
    q.r = r;
    eff = *cs_conf(r->server);
    eff.max_body = eff.max_body ? eff.max_body : CS_DEFAULT_MAX_BODY;
    eff.max_batch = eff.max_batch ? eff.max_batch : CS_DEFAULT_MAX_BATCH;
    eff.lease_max_ttl = eff.lease_max_ttl ? eff.lease_max_ttl
                                          : CS_DEFAULT_LEASE_TTL;
    q.conf = &eff;

    path = apr_pstrdup(r->pool, r->uri);
    for (tok = apr_strtok(path, "/", &last); tok;
         tok = apr_strtok(NULL, "/", &last)) {
        if (q.nseg == (int)(sizeof(q.seg) / sizeof(q.seg[0]))) {
            return cs_error(r, HTTP_NOT_FOUND, "no such endpoint");
        }
        q.seg[q.nseg++] = tok;
    }

    /* http-01 challenges are public: the CA asks through the proxies. */
    if (q.nseg == 2 && strcmp(q.seg[0], "acme-challenge") == 0) {
        return cs_get_challenge(&q, q.seg[1]);
    }

    cs_identify(&q.caller, r, q.conf);
    if (!q.caller.role) {
        return cs_error(r, HTTP_FORBIDDEN, "%s", q.caller.why);
    }
    return cs_route(&q);
}

/* ------------------------------------------------------------------ */
/* Hooks                                                               */
/* ------------------------------------------------------------------ */

/* The ACME workers of one server: watchdog threads (singletons: in one
 * child process of this instance). */
static int cs_acme_start(apr_pool_t *pconf, server_rec *s, cs_conf_t *conf)
{
    static int started;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_wd;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *reg_wd;
    ap_watchdog_t *wd;
    cs_worker_t *w;
    apr_status_t rv;
    int i, n = conf->acme_workers ? conf->acme_workers : CS_ACME_WORKERS;

    if (!conf->acme_seal_cert || !conf->wrap_certs
        || !conf->wrap_certs->nelts) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, CSLOGNO(00024)
                     "CertServiceACMEDirectory %s needs "
                     "CertServiceACMEAccountSeal and "
                     "CertServiceWrapCertificate", conf->acme_url);
        return !OK;
    }
    get_wd = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    reg_wd = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!get_wd || !reg_wd || !cs_dbd_open || !cs_dbd_close) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, CSLOGNO(00025)
                     "CertServiceACMEDirectory needs mod_watchdog and "
                     "mod_dbd");
        return !OK;
    }
    if (!started++) {
        cs_http_global_init();
    }
    for (i = 0; i < n; i++) {
        w = apr_pcalloc(pconf, sizeof(*w));
        w->s = s;
        w->conf = conf;
        w->index = i;
        if ((rv = get_wd(&wd, apr_psprintf(pconf, "certservice-acme-%d-%d",
                                           started, i), 0, 1, pconf))
            || (rv = reg_wd(wd, apr_time_from_sec(1), w, cs_acme_wd))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CSLOGNO(00026)
                         "cannot start ACME worker %d", i);
            return !OK;
        }
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CSLOGNO(00027)
                 "ACME issuance through %s: %d workers, %d orders per %"
                 APR_INT64_T_FMT " s", conf->acme_url, n, ACME_LIMIT(conf),
                 ACME_WINDOW(conf));
    return OK;
}

static int cs_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *main_s)
{
    server_rec *s;
    cs_conf_t *conf;

    cs_ssl_var = APR_RETRIEVE_OPTIONAL_FN(ssl_var_lookup);
    cs_dbd_acquire = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
    if (!cs_dbd_acquire) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, main_s, CSLOGNO(00006)
                     "mod_certservice needs mod_dbd (LoadModule dbd_module)");
        return !OK;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    cs_dbd_open = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    cs_dbd_close = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    for (s = main_s; s; s = s->next) {
        conf = cs_conf(s);
        if (conf->acme_url && cs_acme_start(pconf, s, conf) != OK) {
            return !OK;
        }
        if (conf->ca && (!conf->wrap_certs || !conf->wrap_certs->nelts)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CSLOGNO(00007)
                         "CertServiceLocalCA without "
                         "CertServiceWrapCertificate: nothing can be issued "
                         "until a wrapping certificate is configured");
        }
    }
    return OK;
}

static void cs_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(cs_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(cs_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(certservice) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    cs_create_server_config,
    cs_merge_server_config,
    cs_cmds,
    cs_register_hooks
};
