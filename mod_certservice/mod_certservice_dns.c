/*
 * mod_certservice_dns.c: the dns-01 directives (CertServiceDNSUpdate,
 * CertServiceDNSHook, CertServiceDNSResolver, CertServiceDNSPropagation,
 * CertServiceDNSChallenge) and the effective cs_dns_conf_t the ACME
 * workers hand to lib/cs_dns.c.
 *
 * Log tags CS00051 ... CS00059 are this file's (none used yet: every
 * error here is a configuration error that names its directive).
 */
#include <arpa/inet.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_core.h"

#include "cs_dns.h"
#include "cs_conf.h"
#include "cs_file.h"
#include "mod_certservice_private.h"

static cs_conf_t *cs_dns_raw(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config,
                                &certservice_module);
}

/* A DNS name as a directive gives it: lower case, no final dot, LDH
 * labels (and "_"). */
static const char *cs_dns_name(apr_pool_t *p, const char *arg)
{
    char *n = apr_pstrdup(p, arg), *c;
    apr_size_t len = strlen(n);

    if (len && n[len - 1] == '.') {
        n[--len] = '\0';
    }
    if (!len || len > 253 || n[0] == '.' || strstr(n, "..")) {
        return NULL;
    }
    for (c = n; *c; c++) {
        *c = (char)apr_tolower(*c);
        if (!apr_isalnum(*c) && *c != '-' && *c != '.' && *c != '_') {
            return NULL;
        }
    }
    return n;
}

static apr_status_t cs_dns_cleanse(void *data)
{
    char *s = data;

    OPENSSL_cleanse(s, strlen(s));
    return APR_SUCCESS;
}

/* The TSIG secret from file: BIND's key file (tsig-keygen's output:
 * algorithm and secret) or the base64 secret alone.  Owner-only, like the
 * EAB key file; the secret is never put in a message. */
static const char *cs_dns_read_key(cmd_parms *cmd, const char *file,
                                   const char **secret, const char **alg)
{
    const char *path = ap_server_root_relative(cmd->pool, file), *err;
    apr_size_t len, n;
    unsigned char *raw;
    char *text, *s, *e, *a;

    *alg = NULL;
    if ((err = cs_read_secret_file(cmd, "TSIG key", file, &text, &len))) {
        return err;
    }
    s = text;
    if ((a = strstr(text, "secret"))) {
        /* key "name" { algorithm hmac-sha256; secret "..."; }; */
        if (!(s = strchr(a, '"')) || !(e = strchr(++s, '"'))) {
            return apr_psprintf(cmd->pool, "%s: '%s': no quoted secret in "
                                "the key file", cmd->cmd->name, path);
        }
        *e = '\0';
        if ((a = strstr(text, "algorithm"))) {
            a += 9;
            a += strspn(a, " \t\r\n");
            n = strcspn(a, "; \t\r\n");
            *alg = apr_pstrndup(cmd->pool, a, n);
        }
    }
    else {
        s += strspn(s, " \t\r\n");
        s[strcspn(s, " \t\r\n")] = '\0';
    }
    if (!*s || s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                           "vwxyz0123456789+/=")]
        || cs_base64_decode(&raw, &n, cmd->temp_pool, s) || n < 16) {
        return apr_psprintf(cmd->pool, "%s: '%s' holds no base64 TSIG "
                            "secret of at least 16 bytes (tsig-keygen makes "
                            "one)", cmd->cmd->name, path);
    }
    OPENSSL_cleanse(raw, n);
    *secret = apr_pstrdup(cmd->pool, s);
    apr_pool_cleanup_register(cmd->pool, *secret, cs_dns_cleanse,
                              apr_pool_cleanup_null);
    return NULL;
}

/* An address and optional port: "192.0.2.1", "192.0.2.1:5353",
 * "[2001:db8::1]:53", "2001:db8::1". */
static int cs_dns_addr(apr_pool_t *p, const char *arg, const char **addr,
                       int *port)
{
    const char *colon;
    char *a;
    unsigned char buf[16];

    *port = 53;
    if (arg[0] == '[') {
        a = apr_pstrdup(p, arg + 1);
        if (!(colon = strchr(a, ']'))) {
            return 0;
        }
        a[colon - a] = '\0';
        if (colon[1] == ':') {
            *port = atoi(colon + 2);
        }
        else if (colon[1]) {
            return 0;
        }
    }
    else if ((colon = strchr(arg, ':')) && !strchr(colon + 1, ':')) {
        a = apr_pstrndup(p, arg, (apr_size_t)(colon - arg));
        *port = atoi(colon + 1);
    }
    else {
        a = apr_pstrdup(p, arg);
    }
    if (*port < 1 || *port > 65535
        || (inet_pton(AF_INET, a, buf) != 1
            && inet_pton(AF_INET6, a, buf) != 1)) {
        return 0;
    }
    *addr = a;
    return 1;
}

/* CertServiceDNSUpdate ZONE SERVER[:PORT] KEY-NAME KEY-FILE [ALGORITHM] */
const char *cs_set_dns_update(cmd_parms *cmd, void *dummy, int argc,
                              char *const argv[])
{
    cs_conf_t *conf = cs_dns_raw(cmd);
    const char *err, *file_alg;
    cs_dns_zone_t *z;
    int i;

    if (argc < 4 || argc > 5) {
        return apr_psprintf(cmd->pool, "%s takes ZONE SERVER[:PORT] "
                            "KEY-NAME KEY-FILE [ALGORITHM]", cmd->cmd->name);
    }
    if (!conf->dns_zones) {
        conf->dns_zones = apr_array_make(cmd->pool, 2,
                                         sizeof(cs_dns_zone_t));
    }
    z = apr_array_push(conf->dns_zones);
    memset(z, 0, sizeof(*z));
    if (!(z->zone = cs_dns_name(cmd->pool, argv[0]))) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a zone name",
                            cmd->cmd->name, argv[0]);
    }
    for (i = 0; i < conf->dns_zones->nelts - 1; i++) {
        if (!strcmp(APR_ARRAY_IDX(conf->dns_zones, i, cs_dns_zone_t).zone,
                    z->zone)) {
            return apr_psprintf(cmd->pool, "%s: zone '%s' given twice",
                                cmd->cmd->name, z->zone);
        }
    }
    if (!cs_dns_addr(cmd->pool, argv[1], &z->server, &z->port)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a server (an IP "
                            "address, optionally :PORT; [IPv6]:PORT)",
                            cmd->cmd->name, argv[1]);
    }
    if (!(z->key_name = cs_dns_name(cmd->pool, argv[2]))) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a TSIG key name",
                            cmd->cmd->name, argv[2]);
    }
    if ((err = cs_dns_read_key(cmd, argv[3], &z->key_secret, &file_alg))) {
        return err;
    }
    z->key_alg = argc == 5 ? argv[4] : file_alg ? file_alg : "hmac-sha256";
    if (!cs_dns_tsig_alg(z->key_alg)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a TSIG algorithm "
                            "(hmac-sha256, hmac-sha384, hmac-sha512, "
                            "hmac-sha1)", cmd->cmd->name, z->key_alg);
    }
    z->key_alg = cs_dns_tsig_alg(z->key_alg);
    return NULL;
}

/* CertServiceDNSHook /path/to/command [TIMEOUT] */
const char *cs_set_dns_hook(cmd_parms *cmd, void *dummy, const char *path,
                            const char *timeout)
{
    cs_conf_t *conf = cs_dns_raw(cmd);
    const char *full = ap_server_root_relative(cmd->pool, path);
    apr_interval_time_t t;
    apr_finfo_t fi;

    if (!full || apr_stat(&fi, full, APR_FINFO_TYPE | APR_FINFO_PROT,
                          cmd->temp_pool) != APR_SUCCESS
        || fi.filetype != APR_REG
        || !(fi.protection & (APR_UEXECUTE | APR_GEXECUTE | APR_WEXECUTE))) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an executable file",
                            cmd->cmd->name, path);
    }
    if (timeout) {
        if (ap_timeout_parameter_parse(timeout, &t, "s")
            || t < apr_time_from_sec(1) || t > apr_time_from_sec(3600)) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not a timeout "
                                "between 1 s and 1 hour", cmd->cmd->name,
                                timeout);
        }
        conf->dns_hook_timeout = t;
    }
    conf->dns_hook = full;
    return NULL;
}

/* CertServiceDNSResolver ADDRESS[:PORT] */
const char *cs_set_dns_resolver(cmd_parms *cmd, void *dummy,
                                const char *arg)
{
    const char *addr;
    int port;

    if (!cs_dns_addr(cmd->pool, arg, &addr, &port)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a resolver (an IP "
                            "address, optionally :PORT; [IPv6]:PORT)",
                            cmd->cmd->name, arg);
    }
    cs_dns_raw(cmd)->dns_resolver = arg;
    return NULL;
}

/* CertServiceDNSPropagation TIMEOUT [PORT] */
const char *cs_set_dns_propagation(cmd_parms *cmd, void *dummy,
                                   const char *timeout, const char *port)
{
    cs_conf_t *conf = cs_dns_raw(cmd);
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(timeout, &t, "s")
        || t < apr_time_from_sec(1) || t > apr_time_from_sec(3600)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration between "
                            "1 s and 1 hour", cmd->cmd->name, timeout);
    }
    conf->dns_wait = t;
    if (port) {
        return cs_conf_int(cmd->pool, cmd->cmd->name, port, 1, 65535,
                           &conf->dns_auth_port);
    }
    return NULL;
}

/* CertServiceDNSChallenge wildcard|all */
const char *cs_set_dns_challenge(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    cs_conf_t *conf = cs_dns_raw(cmd);

    if (strcasecmp(arg, "wildcard") == 0) {
        conf->dns_all = 1;
    }
    else if (strcasecmp(arg, "all") == 0) {
        conf->dns_all = 2;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not wildcard or all",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

void cs_dns_config_apply(cs_conf_t *conf)
{
    cs_dns_conf_t *dc = &conf->dns_conf;

    memset(dc, 0, sizeof(*dc));
    conf->dns = NULL;
    if (!conf->dns_zones && !conf->dns_hook) {
        return;
    }
    dc->zones = conf->dns_zones;
    dc->hook = conf->dns_hook;
    dc->hook_timeout = conf->dns_hook_timeout;
    dc->resolver = conf->dns_resolver;
    dc->auth_port = conf->dns_auth_port;
    dc->wait = conf->dns_wait;
    dc->stop = &cs_wd_stop;     /* the child's exit (mod_certservice.c) */
    conf->dns = dc;
}
