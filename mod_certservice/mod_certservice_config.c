/*
 * mod_certservice_config.c: mod_certservice's command table, its general
 * directives (wrapping certificates, local CA, roles, leases, limits), the
 * merge of a virtual host's configuration with the main server's, and the
 * one place where defaults are applied (cs_config_get()).  The handlers of
 * the other directives live with their concern: ACME in
 * mod_certservice_acme_config.c, DNS, notifications and on-demand issuance
 * in their mod_certservice_*.c.
 */
#include "apr_lib.h"
#include "apr_strings.h"
#include "http_core.h"

#include "cs_acme.h"
#include "cs_acme_drive.h"
#include "cs_conf.h"
#include "cs_file.h"
#include "mod_certservice_private.h"

#define CS_STR(x)       CS_STR2(x)
#define CS_STR2(x)      #x

void *cs_create_server_config(apr_pool_t *p, server_rec *s)
{
    cs_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->lifetime = -1;
    conf->key_type = -1;
    conf->acme_ari = -1;
    conf->schema_ready = apr_pcalloc(p, sizeof(*conf->schema_ready));
    return conf;
}

#define CS_MERGE(field, unset) \
    conf->field = add->field != (unset) ? add->field : base->field

void *cs_merge_server_config(apr_pool_t *p, void *basev, void *addv)
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
    CS_MERGE(notify_url, NULL);
    /* The CA goes with the URL it was given with. */
    conf->notify_ca = add->notify_url ? add->notify_ca : base->notify_ca;
    CS_MERGE(notify_secret, NULL);
    CS_MERGE(notify_cmd, NULL);
    CS_MERGE(notify_expiring, 0);
    conf->notify_expiring_pct = add->notify_expiring
                                ? add->notify_expiring_pct
                                : base->notify_expiring_pct;
    conf->notify_here = add->notify_here;
    CS_MERGE(od_ask, NULL);
    CS_MERGE(feed_wait, 0);
    CS_MERGE(feed_waiters, 0);
    /* The CA and timeout go with the URL they were given with. */
    conf->od_ask_ca = add->od_ask ? add->od_ask_ca : base->od_ask_ca;
    CS_MERGE(od_ask_timeout, 0);
    CS_MERGE(od_limit, 0);
    CS_MERGE(od_window, 0);
    CS_MERGE(od_ask_limit, 0);
    CS_MERGE(od_ask_window, 0);
    CS_MERGE(od_refused_ttl, 0);
    CS_MERGE(tk_rotate, 0);
    CS_MERGE(tk_accept, 0);
    CS_MERGE(acme_url, NULL);
    CS_MERGE(acme_contact, NULL);
    CS_MERGE(acme_ca, NULL);
    CS_MERGE(acme_seal_cert, NULL);
    CS_MERGE(acme_seal_key, NULL);
    /* An External Account Binding belongs to its CA: a virtual host that
     * names a directory of its own does not inherit the main server's. */
    conf->acme_eab = add->acme_eab ? add->acme_eab
                     : add->acme_here ? NULL : base->acme_eab;
    CS_MERGE(acme_limit, 0);
    CS_MERGE(acme_window, 0);
    CS_MERGE(acme_backoff, 0);
    CS_MERGE(acme_backoff_cap, 0);
    CS_MERGE(acme_renew_pm, 0);
    CS_MERGE(acme_jitter_pm, 0);
    CS_MERGE(acme_ari, -1);
    CS_MERGE(acme_workers, 0);
    CS_MERGE(acme_chain, NULL);
    CS_MERGE(acme_profile, NULL);
    CS_MERGE(acme_precheck_port, 0);
    CS_MERGE(acme_challenges, 0);
    /* The DNS server goes with the port it was given with. */
    if (add->acme_precheck_port) {
        conf->acme_precheck_dns = add->acme_precheck_dns;
    }
    else {
        conf->acme_precheck_dns = base->acme_precheck_dns;
    }
    /* dns-01 (mod_certservice_dns.c) */
    CS_MERGE(dns_zones, NULL);
    CS_MERGE(dns_hook, NULL);
    CS_MERGE(dns_hook_timeout, 0);
    CS_MERGE(dns_resolver, NULL);
    CS_MERGE(dns_wait, 0);
    CS_MERGE(dns_auth_port, 0);
    CS_MERGE(dns_all, 0);
    CS_MERGE(acme_accounts, 0);
    CS_MERGE(acme_domain_limit, 0);
    conf->acme_domain_window = add->acme_domain_limit
                               ? add->acme_domain_window
                               : base->acme_domain_window;
    CS_MERGE(acme_global_limit, 0);
    conf->acme_global_window = add->acme_global_limit
                               ? add->acme_global_window
                               : base->acme_global_window;
    /* Further CAs go with the first one, like its EAB. */
    conf->acme_issuers = add->acme_issuers ? add->acme_issuers
                         : add->acme_here ? NULL : base->acme_issuers;
    conf->acme_here = add->acme_here;
    /* conf->effective stays 0: defaults are applied after merging; the
     * schema flag is this server's own. */
    conf->schema_ready = apr_pcalloc(p, sizeof(*conf->schema_ready));
    return conf;
}

/* The configuration as the directives left it (unset markers). */
cs_conf_t *cs_conf_raw(server_rec *s)
{
    return ap_get_module_config(s->module_config, &certservice_module);
}

#define CS_DEFAULT(field, unset, dflt) \
    if (conf->field == (unset)) { conf->field = (dflt); }

const cs_conf_t *cs_config_get(server_rec *s)
{
    cs_conf_t *conf = cs_conf_raw(s);

    if (conf->effective) {
        return conf;
    }
    CS_DEFAULT(lifetime, -1, CS_DEFAULT_LIFETIME);
    CS_DEFAULT(key_type, -1, CS_KEY_EC_P256);
    CS_DEFAULT(max_unavailable, 0, CS_DEFAULT_MAX_UNAVAIL);
    CS_DEFAULT(lease_max_ttl, 0, CS_DEFAULT_LEASE_TTL);
    CS_DEFAULT(max_body, 0, CS_DEFAULT_MAX_BODY);
    CS_DEFAULT(max_batch, 0, CS_DEFAULT_MAX_BATCH);
    CS_DEFAULT(acme_limit, 0, CS_ACME_LIMIT);
    CS_DEFAULT(acme_window, 0, CS_ACME_WINDOW);
    CS_DEFAULT(acme_backoff, 0, CS_ACME_BACKOFF);
    CS_DEFAULT(acme_backoff_cap, 0, CS_ACME_BACKOFF_CAP);
    CS_DEFAULT(acme_renew_pm, 0, CS_ACME_RENEW_PM);
    CS_DEFAULT(acme_jitter_pm, 0, CS_ACME_JITTER_PM);
    CS_DEFAULT(acme_jitter_pm, -1, 0);
    CS_DEFAULT(acme_ari, -1, 1);
    CS_DEFAULT(acme_workers, 0, CS_ACME_WORKERS);
    CS_DEFAULT(acme_precheck_port, 0, -1);
    CS_DEFAULT(acme_challenges, 0, CS_ACME_HTTP01);
    cs_dns_config_apply(conf);
    CS_DEFAULT(od_ask_timeout, 0, CS_OD_ASK_TIMEOUT);
    CS_DEFAULT(od_limit, 0, CS_OD_LIMIT);
    CS_DEFAULT(od_window, 0, CS_OD_WINDOW);
    CS_DEFAULT(od_ask_limit, 0, CS_OD_ASK_LIMIT);
    CS_DEFAULT(od_ask_window, 0, CS_OD_ASK_WINDOW);
    CS_DEFAULT(od_refused_ttl, 0, CS_OD_REFUSED_TTL);
    CS_DEFAULT(feed_wait, 0, CS_FEED_WAIT);
    CS_DEFAULT(feed_waiters, 0, CS_FEED_WAITERS);
    CS_DEFAULT(tk_rotate, 0, CS_TK_ROTATE);
    CS_DEFAULT(tk_accept, 0, CS_TK_ACCEPT);
    CS_DEFAULT(acme_accounts, 0, 1);
    if (!conf->notify_expiring) {
        conf->notify_expiring = -1;
        conf->notify_expiring_pct = CS_NOTIFY_EXPIRING_PCT;
    }
    conf->effective = 1;
    return conf;
}

int cs_config_max_unavailable(const cs_conf_t *conf, const char *pool)
{
    const char *v = conf->pool_max_unavailable
                    ? apr_table_get(conf->pool_max_unavailable, pool) : NULL;

    return v ? atoi(v) : conf->max_unavailable;
}

static const char *cs_set_wrap_cert(cmd_parms *cmd, void *dummy,
                                    const char *arg)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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
    cs_conf_raw(cmd->server)->key_type = kt;
    return NULL;
}

static const char *cs_add_role(cmd_parms *cmd, void *dummy, const char *role,
                               const char *match)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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
    else if (strcasecmp(role, "metrics") == 0) {
        rule->role = CS_ROLE_METRICS;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a role (proxy, "
                            "admin or metrics)", cmd->cmd->name, role);
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

const char *cs_parse_int(cmd_parms *cmd, const char *arg, int min, int max,
                         int *out)
{
    return cs_conf_int(cmd->pool, cmd->cmd->name, arg, min, max, out);
}

static const char *cs_set_max_unavailable(cmd_parms *cmd, void *dummy,
                                          const char *n, const char *pool)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *err;
    int v = 0;      /* set when err is NULL; gcc cannot see through */

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

/* An integer directive: cmd->info says which field and its bounds. */
typedef struct {
    apr_size_t offset;          /* of an int in cs_conf_t */
    int min;
    int max;
} cs_int_slot_t;

#define CS_INT_SLOT(name, field, min, max) \
    static cs_int_slot_t name = { \
        APR_OFFSETOF(cs_conf_t, field), (min), (max) }

CS_INT_SLOT(cs_slot_lease_ttl, lease_max_ttl, 1, 86400);
CS_INT_SLOT(cs_slot_max_body, max_body, 1024, 64 * 1024 * 1024);
CS_INT_SLOT(cs_slot_max_batch, max_batch, 1, 10000);
CS_INT_SLOT(cs_slot_acme_workers, acme_workers, 1, 16);

static const char *cs_set_int_slot(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    const cs_int_slot_t *slot = cmd->info;
    int *field = (int *)((char *)cs_conf_raw(cmd->server) + slot->offset);

    return cs_parse_int(cmd, arg, slot->min, slot->max, field);
}

static apr_status_t cs_cleanse_text(void *data)
{
    char *text = data;

    OPENSSL_cleanse(text, strlen(text));
    return APR_SUCCESS;
}

/* A secret (what: "MAC key", "TSIG key") from file, read at startup, as
 * root, from a file only its owner may read or change; *text (at most
 * 4 KiB, NUL-terminated) from cmd->temp_pool, which cleanses it when the
 * configuration has been read.  NULL, or the error naming the directive
 * and the file. */
const char *cs_read_secret_file(cmd_parms *cmd, const char *what,
                                const char *file, char **text,
                                apr_size_t *len)
{
    const char *path = ap_server_root_relative(cmd->pool, file);
    apr_finfo_t fi;
    apr_status_t rv;
    char ebuf[120];

    if (!path) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a valid path",
                            cmd->cmd->name, file);
    }
    if ((rv = apr_stat(&fi, path, APR_FINFO_PROT | APR_FINFO_TYPE,
                       cmd->temp_pool)) != APR_SUCCESS
        && !APR_STATUS_IS_INCOMPLETE(rv)) {
        return apr_psprintf(cmd->pool, "%s: cannot read the %s file '%s': "
                            "%s", cmd->cmd->name, what, path,
                            apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
    if (fi.protection & (APR_GREAD | APR_GWRITE | APR_WREAD | APR_WWRITE)) {
        return apr_psprintf(cmd->pool, "%s: the %s file '%s' may be read or "
                            "changed by its group or others: make it "
                            "readable by its owner only (chmod 600 or 400)",
                            cmd->cmd->name, what, path);
    }
    if ((rv = cs_file_read(text, len, cmd->temp_pool, path, 4096))) {
        return apr_psprintf(cmd->pool, "%s: cannot read the %s file '%s': "
                            "%s", cmd->cmd->name, what, path,
                            apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
    apr_pool_cleanup_register(cmd->temp_pool, *text, cs_cleanse_text,
                              apr_pool_cleanup_null);
    return NULL;
}

const command_rec cs_cmds[] = {
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
    AP_INIT_TAKE23("CertServiceACMEExternalAccountBinding", cs_set_acme_eab,
                   NULL, RSRC_CONF, "External Account Binding for new "
                   "ACME accounts: KEY-ID MAC-KEY-FILE [HS256|HS384|HS512] "
                   "(the file holds the CA's base64url MAC key)"),
    AP_INIT_TAKE2("CertServiceACMELimit", cs_set_acme_limit, NULL, RSRC_CONF,
                  "New orders per window, for the whole cluster: N SECONDS "
                  "(default " CS_STR(CS_ACME_LIMIT) " "
                  CS_STR(CS_ACME_WINDOW) ")"),
    AP_INIT_TAKE2("CertServiceACMEBackoff", cs_set_acme_backoff, NULL,
                  RSRC_CONF, "Retry delay after a failure, doubling: FIRST "
                  "CAP (default " CS_STR(CS_ACME_BACKOFF) " "
                  CS_STR(CS_ACME_BACKOFF_CAP) ")"),
    AP_INIT_RAW_ARGS("CertServiceACMERenewal", cs_set_acme_renewal, NULL,
                     RSRC_CONF, "Renew at FRACTION% of the lifetime, up to "
                     "JITTER% earlier; ari|noari (default "
                     CS_RENEW_DEFAULT_TEXT " ari)"),
    AP_INIT_TAKE1("CertServiceACMEWorkers", cs_set_int_slot,
                  &cs_slot_acme_workers, RSRC_CONF,
                  "Threads processing ACME orders (default "
                  CS_STR(CS_ACME_WORKERS) ")"),
    AP_INIT_TAKE1("CertServiceACMEPreferredChain", cs_set_acme_chain, NULL,
                  RSRC_CONF, "Pick the alternate chain whose top names this "
                  "issuer"),
    AP_INIT_TAKE1("CertServiceACMEProfile", cs_set_acme_profile, NULL,
                  RSRC_CONF, "ACME profile to order certificates with when "
                  "a domain names none (default: the CA's)"),
    AP_INIT_ITERATE("CertServiceACMEChallenges", cs_set_acme_challenges,
                    NULL, RSRC_CONF, "ACME challenge types to answer: "
                    "http-01, tls-alpn-01 (default http-01)"),
    AP_INIT_TAKE12("CertServiceACMEPreCheck", cs_set_acme_precheck, NULL,
                   RSRC_CONF, "Before ordering, check that the domain "
                   "reaches us over http: on|off|PORT [DNS-SERVER:PORT] "
                   "(default off)"),
    AP_INIT_TAKE_ARGV("CertServiceDNSUpdate", cs_set_dns_update, NULL,
                      RSRC_CONF, "dns-01 through RFC 2136 updates of a zone: "
                      "ZONE SERVER[:PORT] KEY-NAME KEY-FILE [ALGORITHM] "
                      "(TSIG; the file owner-only, BIND's key format or "
                      "the base64 secret)"),
    AP_INIT_TAKE12("CertServiceDNSHook", cs_set_dns_hook, NULL, RSRC_CONF,
                   "dns-01 through a command for names in no "
                   "CertServiceDNSUpdate zone: PATH [TIMEOUT] (run as PATH "
                   "set|unset DOMAIN VALUE NAME)"),
    AP_INIT_TAKE1("CertServiceDNSResolver", cs_set_dns_resolver, NULL,
                  RSRC_CONF, "Resolver for dns-01's lookups (CNAMEs, NS "
                  "sets): ADDRESS[:PORT] (default: /etc/resolv.conf)"),
    AP_INIT_TAKE12("CertServiceDNSPropagation", cs_set_dns_propagation,
                   NULL, RSRC_CONF, "Wait this long for every "
                   "authoritative server to answer a dns-01 record, asking "
                   "them on PORT: TIMEOUT [PORT] (default 120 53)"),
    AP_INIT_TAKE1("CertServiceDNSChallenge", cs_set_dns_challenge, NULL,
                  RSRC_CONF, "Which domains are validated over dns-01: "
                  "wildcard (default) or all"),
    AP_INIT_RAW_ARGS("<CertServiceACMEIssuer", cs_issuer_section, NULL,
                     RSRC_CONF, "A further ACME CA, tried after the ones "
                     "before it: <CertServiceACMEIssuer NAME> with "
                     "CertServiceACMEDirectory and the CA's own directives "
                     "inside"),
    AP_INIT_TAKE1("CertServiceACMEAccounts", cs_set_acme_accounts, NULL,
                  RSRC_CONF, "ACME accounts to spread orders over at this "
                  "CA: 1 to " CS_STR(CS_ACME_MAX_ACCOUNTS) " (default 1)"),
    AP_INIT_TAKE2("CertServiceACMEDomainLimit", cs_set_acme_domain_limit,
                  NULL, RSRC_CONF, "Certificates per registered domain per "
                  "window at this CA: N DURATION (default none)"),
    AP_INIT_TAKE2("CertServiceACMEGlobalLimit", cs_set_acme_global_limit,
                  NULL, RSRC_CONF, "Orders per window across every CA and "
                  "account, fleet-wide: N DURATION (default none)"),
    AP_INIT_TAKE1("CertServiceWrapCertificate", cs_set_wrap_cert, NULL,
                  RSRC_CONF, "PEM file of a wrapping certificate (RSA): "
                  "private keys are sealed to every one configured"),
    AP_INIT_TAKE2("CertServiceLocalCA", cs_set_local_ca, NULL, RSRC_CONF,
                  "Issue with a local CA: certificate file and key file"),
    AP_INIT_TAKE1("CertServiceCertificateLifetime", cs_set_lifetime, NULL,
                  RSRC_CONF, "Lifetime of certificates the local CA issues "
                  "(default " CS_STR(CS_DEFAULT_LIFETIME_DAYS) " days)"),
    AP_INIT_TAKE1("CertServiceKeyType", cs_set_key_type, NULL, RSRC_CONF,
                  "Default key type: ec-p256 (default) or rsa-2048"),
    AP_INIT_TAKE2("CertServiceRole", cs_add_role, NULL, RSRC_CONF,
                  "Map a client certificate to a role: "
                  "proxy|admin|metrics dn:<subject>|sha256:<fingerprint>"),
    AP_INIT_TAKE12("CertServiceMaxUnavailable", cs_set_max_unavailable, NULL,
                   RSRC_CONF, "Restart leases granted at once: N [pool] "
                   "(default " CS_STR(CS_DEFAULT_MAX_UNAVAIL) ")"),
    AP_INIT_TAKE1("CertServiceLeaseMaxTTL", cs_set_int_slot,
                  &cs_slot_lease_ttl, RSRC_CONF,
                  "Longest restart lease, in seconds (default "
                  CS_STR(CS_DEFAULT_LEASE_TTL) ")"),
    AP_INIT_TAKE1("CertServiceMaxBodySize", cs_set_int_slot,
                  &cs_slot_max_body, RSRC_CONF,
                  "Largest request body, in bytes (default "
                  CS_STR(CS_DEFAULT_MAX_BODY) ")"),
    AP_INIT_TAKE1("CertServiceMaxBatch", cs_set_int_slot,
                  &cs_slot_max_batch, RSRC_CONF,
                  "Most domains in one POST /v1/bundles (default "
                  CS_STR(CS_DEFAULT_MAX_BATCH) ")"),
    AP_INIT_TAKE12("CertServiceNotifyURL", cs_set_notify_url, NULL,
                   RSRC_CONF, "Webhook for lifecycle events (https:// or "
                   "http:// URL) [and a CA file to trust for it]"),
    AP_INIT_TAKE1("CertServiceNotifySecret", cs_set_notify_secret, NULL,
                  RSRC_CONF, "File with the webhook's HMAC-SHA256 secret"),
    AP_INIT_TAKE1("CertServiceNotifyCmd", cs_set_notify_cmd, NULL,
                  RSRC_CONF, "Command run for each lifecycle event with "
                  "the type and domain as arguments, the JSON on stdin"),
    AP_INIT_TAKE1("CertServiceNotifyExpiring", cs_set_notify_expiring, NULL,
                  RSRC_CONF, "Tell of a certificate this close to its end "
                  "without a successor: a duration (7d), a share of its "
                  "lifetime (default " CS_STR(CS_NOTIFY_EXPIRING_PCT)
                  "%), or off"),
    AP_INIT_TAKE123("CertServiceOnDemandAsk", cs_set_od_ask, NULL,
                    RSRC_CONF, "On-demand issuance: URL asked about each new "
                    "name (GET URL?domain=NAME, 200 = yes) [timeout seconds "
                    "(default " CS_STR(CS_OD_ASK_TIMEOUT) ")] [CA file]; "
                    "unset: every on-demand name is refused"),
    AP_INIT_TAKE2("CertServiceOnDemandLimit", cs_set_od_limit,
                  (void *)"limit", RSRC_CONF, "On-demand issuance: domains "
                  "added per window of seconds, fleet-wide (default "
                  CS_STR(CS_OD_LIMIT) " " CS_STR(CS_OD_WINDOW) ")"),
    AP_INIT_TAKE2("CertServiceOnDemandAskLimit", cs_set_od_limit,
                  (void *)"ask", RSRC_CONF, "On-demand issuance: asks per "
                  "window of seconds, fleet-wide (default "
                  CS_STR(CS_OD_ASK_LIMIT) " " CS_STR(CS_OD_ASK_WINDOW) ")"),
    AP_INIT_TAKE1("CertServiceOnDemandRefusedTTL", cs_set_od_refused_ttl,
                  NULL, RSRC_CONF, "On-demand issuance: seconds a refused "
                  "name is not asked about again (default "
                  CS_STR(CS_OD_REFUSED_TTL) ")"),
    AP_INIT_TAKE12("CertServiceChangesWait", cs_set_feed_wait, NULL,
                   RSRC_CONF, "Longest wait in seconds a GET /v1/changes "
                   "may ask for (wait=N: answered as soon as the feed "
                   "moves), or off (default " CS_STR(CS_FEED_WAIT) ") "
                   "[such requests held at once per process (default "
                   CS_STR(CS_FEED_WAITERS) ")]"),
    AP_INIT_TAKE12("CertServiceTicketKeys", cs_set_ticket_keys, NULL,
                   RSRC_CONF, "The pool's TLS session ticket keys: 'off', "
                   "or how often a new key starts issuing [and how long "
                   "it is accepted after] (default 12h 24h)"),
    { NULL }
};

