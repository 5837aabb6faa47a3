/*
 * mod_certservice_acme_config.c: the ACME directives (CertServiceACME*),
 * the <CertServiceACMEIssuer> section and the CAs' budgets.  The command
 * table is in mod_certservice_config.c, with the defaults (cs_config_get()).
 */
#include <arpa/inet.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_core.h"

#include "cs_acme.h"
#include "cs_acme_drive.h"
#include "cs_conf.h"
#include "cs_file.h"
#include "mod_certservice_private.h"

/* --- ACME directives ------------------------------------------------ */

/* The <CertServiceACMEIssuer> section being read: its directives go to
 * it instead of the server (configuration is read by one thread). */
static cs_acme_issuer_conf_t *cs_issuer_open;

const char *cs_set_acme_url(cmd_parms *cmd, void *dummy,
                            const char *arg)
{
    if (strncmp(arg, "https://", 8) != 0 || strlen(arg) < 12
        || strlen(arg) > 255 || strpbrk(arg, " \t\"'<>")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an https:// URL of "
                            "an ACME directory (at most 255 characters)",
                            cmd->cmd->name, arg);
    }
    if (cs_issuer_open) {
        cs_issuer_open->url = arg;
        return NULL;
    }
    cs_conf_raw(cmd->server)->acme_url = arg;
    cs_conf_raw(cmd->server)->acme_here = 1;
    return NULL;
}

const char *cs_add_acme_contact(cmd_parms *cmd, void *dummy,
                                const char *arg)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);

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

const char *cs_set_acme_ca(cmd_parms *cmd, void *dummy,
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
    if (cs_issuer_open) {
        cs_issuer_open->ca_file = path;
        return NULL;
    }
    cs_conf_raw(cmd->server)->acme_ca = path;
    return NULL;
}

const char *cs_set_acme_seal(cmd_parms *cmd, void *dummy,
                             const char *cert, const char *key)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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

static apr_status_t cs_eab_cleanse(void *data)
{
    cs_eab_t *eab = data;

    OPENSSL_cleanse((void *)eab->key, eab->key_len);
    return APR_SUCCESS;
}

/* KEY-ID KEY-FILE [HS256|HS384|HS512]: the MAC key is read here, at
 * startup, as root, from a file only its owner can read; it lives in the
 * configuration's memory (cleansed with it) and is written nowhere. */
const char *cs_set_acme_eab(cmd_parms *cmd, void *dummy,
                            const char *kid, const char *file,
                            const char *alg)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *path = ap_server_root_relative(cmd->pool, file), *err;
    unsigned char *key;
    apr_size_t key_len, len;
    apr_status_t rv;
    char *text;
    cs_eab_t *eab;
    const unsigned char *c;

    for (c = (const unsigned char *)kid; *c > 0x20 && *c < 0x7F; c++) {
    }
    if (!*kid || *c || strlen(kid) > 255 || strpbrk(kid, "\"'<>\\")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a key id (1 to 255 "
                            "printable characters, as the CA gave it)",
                            cmd->cmd->name, kid);
    }
    if (alg) {
        /* As the JWS header spells it, whatever the case given here. */
        char *upper = apr_pstrdup(cmd->pool, alg), *u;

        for (u = upper; *u; u++) {
            *u = (char)apr_toupper(*u);
        }
        if (!cs_eab_digest(upper)) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a MAC "
                                "algorithm (HS256, HS384 or HS512)",
                                cmd->cmd->name, alg);
        }
        alg = upper;
    }
    if ((err = cs_read_secret_file(cmd, "MAC key", file, &text, &len))) {
        return err;
    }
    rv = cs_eab_key_decode(&key, &key_len, cmd->pool, text, &err);
    OPENSSL_cleanse(text, len);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s': %s", cmd->cmd->name, path,
                            err);
    }
    eab = apr_pcalloc(cmd->pool, sizeof(*eab));
    eab->kid = kid;
    eab->key = key;
    eab->key_len = key_len;
    eab->alg = alg ? alg : "HS256";
    apr_pool_cleanup_register(cmd->pool, eab, cs_eab_cleanse,
                              apr_pool_cleanup_null);
    if (cs_issuer_open) {
        cs_issuer_open->eab = eab;
        return NULL;
    }
    conf->acme_eab = eab;
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

const char *cs_set_acme_limit(cmd_parms *cmd, void *dummy,
                              const char *n, const char *window)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *err;

    if (cs_issuer_open) {
        if ((err = cs_parse_int(cmd, n, 1, 1000000,
                                &cs_issuer_open->limit))) {
            return err;
        }
        return cs_parse_secs(cmd, window, 1, 30 * 86400,
                             &cs_issuer_open->window);
    }
    if ((err = cs_parse_int(cmd, n, 1, 1000000, &conf->acme_limit))) {
        return err;
    }
    return cs_parse_secs(cmd, window, 1, 30 * 86400, &conf->acme_window);
}

const char *cs_set_acme_backoff(cmd_parms *cmd, void *dummy,
                                const char *base, const char *cap)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
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

const char *cs_set_acme_renewal(cmd_parms *cmd, void *dummy,
                                const char *args)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *w, *err, *orig = args;
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
        return apr_psprintf(cmd->pool, "%s: '%s': the jitter is larger "
                            "than the renewal point", cmd->cmd->name,
                            orig);
    }
    if (!conf->acme_jitter_pm && i == 2) {
        conf->acme_jitter_pm = -1;      /* an explicit 0% */
    }
    return NULL;
}

const char *cs_set_acme_chain(cmd_parms *cmd, void *dummy,
                              const char *arg)
{
    if (!*arg || strlen(arg) > 200) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a name to look for "
                            "in the chain's issuer (1 to 200 characters)",
                            cmd->cmd->name, arg);
    }
    if (cs_issuer_open) {
        cs_issuer_open->chain = arg;
        return NULL;
    }
    cs_conf_raw(cmd->server)->acme_chain = arg;
    return NULL;
}

const char *cs_set_acme_profile(cmd_parms *cmd, void *dummy,
                                const char *arg)
{
    if (!cs_req_profile_ok(arg)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a profile name (1 "
                            "to 64 of A-Z a-z 0-9 . _ -)", cmd->cmd->name,
                            arg);
    }
    if (cs_issuer_open) {
        cs_issuer_open->profile = arg;
        return NULL;
    }
    cs_conf_raw(cmd->server)->acme_profile = arg;
    return NULL;
}

/* CertServiceACMEChallenges TYPE...: the challenge types the workers
 * answer (in the client's order of preference, whatever the order
 * here). */
const char *cs_set_acme_challenges(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);

    if (strcasecmp(arg, "http-01") == 0) {
        conf->acme_challenges |= CS_ACME_HTTP01;
    }
    else if (strcasecmp(arg, "tls-alpn-01") == 0) {
        conf->acme_challenges |= CS_ACME_TLSALPN01;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a challenge type "
                            "this CertService answers (http-01, "
                            "tls-alpn-01)", cmd->cmd->name, arg);
    }
    return NULL;
}

const char *cs_set_acme_precheck(cmd_parms *cmd, void *dummy,
                                 const char *arg, const char *dns)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *err, *colon = dns ? strrchr(dns, ':') : NULL;
    struct in_addr ia;
    char host[64];
    int port;

    if (strcasecmp(arg, "off") == 0) {
        conf->acme_precheck_port = -1;
        return dns ? apr_psprintf(cmd->pool, "%s: 'off' takes no DNS "
                                  "server ('%s')", cmd->cmd->name, dns)
                   : NULL;
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

/* --- Several CAs ------------------------------------------------------ */

const char *cs_set_acme_accounts(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    return cs_parse_int(cmd, arg, 1, CS_ACME_MAX_ACCOUNTS,
                        cs_issuer_open ? &cs_issuer_open->accounts
                                       : &cs_conf_raw(cmd->server)
                                             ->acme_accounts);
}

const char *cs_set_acme_domain_limit(cmd_parms *cmd, void *dummy,
                                     const char *n,
                                     const char *window)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    int *limit = cs_issuer_open ? &cs_issuer_open->domain_limit
                                : &conf->acme_domain_limit;
    apr_int64_t *win = cs_issuer_open ? &cs_issuer_open->domain_window
                                      : &conf->acme_domain_window;
    const char *err;

    if ((err = cs_parse_int(cmd, n, 1, 1000000, limit))) {
        return err;
    }
    return cs_parse_secs(cmd, window, 1, 30 * 86400, win);
}

const char *cs_set_acme_global_limit(cmd_parms *cmd, void *dummy,
                                     const char *n,
                                     const char *window)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *err;

    if (cs_issuer_open) {
        return apr_psprintf(cmd->pool, "%s: counts across every CA: not "
                            "inside <CertServiceACMEIssuer %s>",
                            cmd->cmd->name, cs_issuer_open->name);
    }
    if ((err = cs_parse_int(cmd, n, 1, 1000000, &conf->acme_global_limit))) {
        return err;
    }
    return cs_parse_secs(cmd, window, 1, 30 * 86400,
                         &conf->acme_global_window);
}

/* What a <CertServiceACMEIssuer> section may hold: the CA's own. */
static const char *const cs_issuer_directives[] = {
    "CertServiceACMEDirectory", "CertServiceACMECA",
    "CertServiceACMEExternalAccountBinding", "CertServiceACMEProfile",
    "CertServiceACMEPreferredChain", "CertServiceACMEAccounts",
    "CertServiceACMELimit", "CertServiceACMEDomainLimit", NULL
};

/* <CertServiceACMEIssuer NAME>: the directives inside go to the section
 * (cs_issuer_open) while they are walked. */
const char *cs_issuer_section(cmd_parms *cmd, void *dummy,
                              const char *arg)
{
    cs_conf_t *conf = cs_conf_raw(cmd->server);
    const char *endp = ap_strrchr_c(arg, '>'), *args, *name, *err;
    cs_acme_issuer_conf_t *is;
    ap_directive_t *dir;
    int i;

    if (!endp) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name, "> directive missing "
                           "closing '>'", NULL);
    }
    args = apr_pstrndup(cmd->temp_pool, arg, endp - arg);
    name = ap_getword_conf(cmd->pool, &args);
    if (!cs_acme_ca_name_ok(name) || strcmp(name, "default") == 0
        || *ap_getword_conf(cmd->temp_pool, &args)) {
        return apr_psprintf(cmd->pool, "%s>: '%s' is not a CA name (one "
                            "word of 1 to 16 of a-z 0-9 -, not 'default')",
                            cmd->cmd->name,
                            apr_pstrndup(cmd->pool, arg, endp - arg));
    }
    if (cs_issuer_open) {
        return apr_psprintf(cmd->pool, "%s %s>: inside <CertServiceACMEIssuer "
                            "%s>; sections do not nest", cmd->cmd->name, name,
                            cs_issuer_open->name);
    }
    for (i = 0; conf->acme_issuers && i < conf->acme_issuers->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(conf->acme_issuers, i,
                                 cs_acme_issuer_conf_t *)->name, name) == 0) {
            return apr_psprintf(cmd->pool, "%s %s>: a CA of that name is "
                                "configured already", cmd->cmd->name, name);
        }
    }
    if (conf->acme_issuers
        && conf->acme_issuers->nelts + 1 >= CS_ACME_MAX_CAS) {
        return apr_psprintf(cmd->pool, "%s %s>: at most %d CAs",
                            cmd->cmd->name, name, CS_ACME_MAX_CAS);
    }
    for (dir = cmd->directive->first_child; dir; dir = dir->next) {
        for (i = 0; cs_issuer_directives[i]; i++) {
            if (strcasecmp(dir->directive, cs_issuer_directives[i]) == 0) {
                break;
            }
        }
        if (!cs_issuer_directives[i]) {
            return apr_psprintf(cmd->pool, "%s is not allowed inside "
                                "<CertServiceACMEIssuer %s> (only the CA's "
                                "own: CertServiceACMEDirectory, ...CA, "
                                "...ExternalAccountBinding, ...Profile, "
                                "...PreferredChain, ...Accounts, ...Limit, "
                                "...DomainLimit)", dir->directive, name);
        }
    }
    is = apr_pcalloc(cmd->pool, sizeof(*is));
    is->name = name;
    cs_issuer_open = is;
    err = ap_walk_config(cmd->directive->first_child, cmd, cmd->context);
    cs_issuer_open = NULL;
    if (err) {
        return err;
    }
    if (!is->url) {
        return apr_psprintf(cmd->pool, "<CertServiceACMEIssuer %s> needs a "
                            "CertServiceACMEDirectory", name);
    }
    if (is->accounts > 1 && strlen(is->url) > 250) {
        return apr_psprintf(cmd->pool, "<CertServiceACMEIssuer %s>: with "
                            "several accounts the directory URL '%s' must "
                            "be at most 250 characters", name, is->url);
    }
    if (!conf->acme_issuers) {
        conf->acme_issuers = apr_array_make(cmd->pool, 2,
                                            sizeof(cs_acme_issuer_conf_t *));
    }
    APR_ARRAY_PUSH(conf->acme_issuers, cs_acme_issuer_conf_t *) = is;
    conf->acme_here = 1;
    return NULL;
}
