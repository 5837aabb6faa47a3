/*
 * mod_certsync_config.c: the directives of mod_certsync, their defaults
 * and the merge of a virtual host's configuration.
 *
 * Every directive but CertSyncCatchAll (virtual host only) and
 * CertSyncUnknownName (both) means something for the whole httpd only
 * (one store, one daemon per httpd): it is refused inside <VirtualHost>
 * rather than accepted and ignored.  The setters take what they set from
 * cmd->info, so no setter dispatches on the directive's name.  Errors name
 * the directive and the bad value.  csy_conf_effective() is the one owner
 * of the defaults.
 */
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"

#include "apr_strings.h"

#include <openssl/x509.h>

#include "cs_conf.h"
#include "cs_crypto.h"
#include "mod_certsync_private.h"

void *csy_create_server_config(apr_pool_t *p, server_rec *s)
{
    csy_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->jitter = -1;
    conf->dynamic = -1;
    conf->restart = -1;
    conf->drain_time = -1;
    conf->min_restart_interval = -1;
    conf->catch_all = -1;
    conf->refuse_unknown = -1;
    conf->ondemand = -1;
    conf->ondemand_wait = -1;
    conf->tickets = -1;
    return conf;
}

#define CSY_MERGE_PTR(f) conf->f = add->f ? add->f : base->f
#define CSY_MERGE_INT(f, unset) \
    conf->f = add->f != (unset) ? add->f : base->f

/* Every field, so that a virtual host sees the main server's settings. */
void *csy_merge_server_config(apr_pool_t *p, void *basev, void *addv)
{
    const csy_conf_t *base = basev, *add = addv;
    csy_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    CSY_MERGE_PTR(url);
    CSY_MERGE_PTR(client_cert);
    CSY_MERGE_PTR(client_key);
    CSY_MERGE_PTR(ca_file);
    CSY_MERGE_PTR(wrap_certs);
    CSY_MERGE_PTR(wrap_keys);
    CSY_MERGE_PTR(store_dir);
    CSY_MERGE_INT(interval, 0);
    CSY_MERGE_INT(jitter, -1);
    CSY_MERGE_INT(batch_size, 0);
    CSY_MERGE_INT(timeout, 0);
    CSY_MERGE_INT(dynamic, -1);
    CSY_MERGE_INT(restart, -1);
    CSY_MERGE_PTR(pool_name);
    CSY_MERGE_PTR(host_name);
    CSY_MERGE_INT(drain_time, -1);
    CSY_MERGE_INT(lease_ttl, 0);
    CSY_MERGE_INT(min_restart_interval, -1);
    CSY_MERGE_INT(restart_timeout, 0);
    conf->probe = add->probe.host ? add->probe : base->probe;
    conf->agent = add->agent.host ? add->agent : base->agent;
    CSY_MERGE_INT(cache_size, 0);
    CSY_MERGE_INT(catch_all, -1);
    CSY_MERGE_INT(refuse_unknown, -1);
    CSY_MERGE_INT(ondemand, -1);
    CSY_MERGE_INT(tickets, -1);
    CSY_MERGE_INT(ondemand_wait, -1);
    CSY_MERGE_INT(ondemand_rate, 0);
    CSY_MERGE_INT(ondemand_burst, 0);
    CSY_MERGE_INT(watch, 0);
    return conf;
}

/*
 * The effective configuration: every unset field gets its default.  Run
 * by post_config on the main server's and every virtual host's copy, so
 * that nothing downstream (the daemon, the pure sync code, the handlers)
 * needs a default of its own.
 */
void csy_conf_effective(csy_conf_t *conf, apr_pool_t *p)
{
    char host[256];

    if (!conf->interval) {
        conf->interval = CSY_DEFAULT_INTERVAL;
    }
    if (conf->jitter < 0) {
        conf->jitter = conf->interval / 5;
    }
    if (!conf->batch_size) {
        conf->batch_size = CSY_DEFAULT_BATCH_SIZE;
    }
    if (!conf->timeout) {
        conf->timeout = CSY_DEFAULT_TIMEOUT;
    }
    if (conf->dynamic < 0) {
        conf->dynamic = 0;
    }
    if (conf->restart < 0) {
        conf->restart = 1;
    }
    if (!conf->pool_name) {
        conf->pool_name = CSY_DEFAULT_POOL;
    }
    if (!conf->host_name) {
        if (gethostname(host, sizeof(host)) != 0) {
            apr_cpystrn(host, "unknown", sizeof(host));
        }
        host[sizeof(host) - 1] = '\0';
        conf->host_name = apr_pstrdup(p, host);
    }
    if (conf->drain_time < 0) {
        conf->drain_time = CSY_DEFAULT_DRAIN_TIME;
    }
    if (!conf->lease_ttl) {
        conf->lease_ttl = CSY_DEFAULT_LEASE_TTL;
    }
    if (conf->min_restart_interval < 0) {
        conf->min_restart_interval = CSY_DEFAULT_MIN_RESTART;
    }
    if (!conf->restart_timeout) {
        conf->restart_timeout = CSY_DEFAULT_RESTART_TIMEOUT;
    }
    if (!conf->cache_size) {
        conf->cache_size = CSY_DEFAULT_CACHE_SIZE;
    }
    if (conf->catch_all < 0) {
        conf->catch_all = 0;
    }
    if (conf->refuse_unknown < 0) {
        conf->refuse_unknown = 0;
    }
    if (conf->ondemand < 0) {
        conf->ondemand = 0;
    }
    if (conf->tickets < 0) {
        conf->tickets = 1;
    }
    if (conf->ondemand_wait < 0) {
        conf->ondemand_wait = CSY_DEFAULT_OD_WAIT;
    }
    if (!conf->ondemand_rate) {
        conf->ondemand_rate = CSY_DEFAULT_OD_RATE;
    }
    if (!conf->watch) {
        conf->watch = -1;       /* off unless asked for */
    }
    if (!conf->ondemand_burst) {
        conf->ondemand_burst = conf->ondemand_rate > CSY_DEFAULT_OD_BURST
                               ? conf->ondemand_rate : CSY_DEFAULT_OD_BURST;
    }
}

csy_conf_t *csy_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &certsync_module);
}

/* cmd->info of the setters below: where the value goes, and its range. */
typedef struct {
    apr_size_t offset;
    int min, max;
} csy_int_slot_t;

typedef struct {
    apr_size_t offset;
    const char *one, *zero;     /* keywords for 1 and 0 */
} csy_choice_slot_t;

#define CSY_FIELD(conf, offset, type) \
    ((type *)((char *)(conf) + (offset)))

static const char *csy_int(cmd_parms *cmd, const char *arg, int min, int max,
                           int *out)
{
    return cs_conf_int(cmd->pool, cmd->cmd->name, arg, min, max, out);
}

/* CertSyncServiceURL: http(s), without its trailing '/'. */
static const char *csy_set_url(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_size_t len = strlen(arg);

    if (err) {
        return err;
    }
    if (strncmp(arg, "https://", 8) && strncmp(arg, "http://", 7)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an http(s) URL",
                            cmd->cmd->name, arg);
    }
    if (arg[len - 1] == '/') {
        len--;
    }
    csy_conf(cmd->server)->url = apr_pstrmemdup(cmd->pool, arg, len);
    return NULL;
}

/* A file or directory, relative to ServerRoot (cmd->info: the offset). */
static const char *csy_set_path(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *path;

    if (err) {
        return err;
    }
    if (!(path = ap_server_root_relative(cmd->pool, arg))) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a valid path",
                            cmd->cmd->name, arg);
    }
    *CSY_FIELD(csy_conf(cmd->server), (apr_size_t)cmd->info,
               const char *) = path;
    return NULL;
}

/* A name, as it is (cmd->info: the offset). */
static const char *csy_set_name(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    *CSY_FIELD(csy_conf(cmd->server), (apr_size_t)cmd->info,
               const char *) = arg;
    return NULL;
}

static const char *csy_set_client_cert(cmd_parms *cmd, void *dummy,
                                       const char *cert, const char *key)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    conf->client_cert = ap_server_root_relative(cmd->pool, cert);
    conf->client_key = ap_server_root_relative(cmd->pool, key ? key : cert);
    if (!conf->client_cert || !conf->client_key) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a valid path",
                            cmd->cmd->name, conf->client_cert ? key : cert);
    }
    return NULL;
}

static const char *csy_add_wrap_key(cmd_parms *cmd, void *dummy,
                                    const char *cert, const char *key)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    apr_array_header_t *certs;
    EVP_PKEY *pkey;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    /* Read by the parent at startup (root may read what workers cannot);
     * the sync daemon inherits it. */
    if (cs_file_read_certs(&certs, cmd->pool,
                           ap_server_root_relative(cmd->pool, cert), &err)) {
        return apr_psprintf(cmd->pool, "%s: cannot read certificate '%s': "
                            "%s", cmd->cmd->name, cert, err);
    }
    if (cs_file_read_key(&pkey, cmd->pool,
                         ap_server_root_relative(cmd->pool, key), &err)) {
        return apr_psprintf(cmd->pool, "%s: cannot read key '%s': %s",
                            cmd->cmd->name, key, err);
    }
    if (X509_check_private_key(APR_ARRAY_IDX(certs, 0, X509 *), pkey) != 1) {
        return apr_psprintf(cmd->pool, "%s: key '%s' does not match "
                            "certificate '%s'", cmd->cmd->name, key, cert);
    }
    if (!conf->wrap_certs) {
        conf->wrap_certs = apr_array_make(cmd->pool, 2, sizeof(X509 *));
        conf->wrap_keys = apr_array_make(cmd->pool, 2, sizeof(EVP_PKEY *));
    }
    APR_ARRAY_PUSH(conf->wrap_certs, X509 *) = APR_ARRAY_IDX(certs, 0,
                                                             X509 *);
    APR_ARRAY_PUSH(conf->wrap_keys, EVP_PKEY *) = pkey;
    return NULL;
}

static const char *csy_set_interval(cmd_parms *cmd, void *dummy,
                                    const char *interval, const char *jitter)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err || (err = csy_int(cmd, interval, 1, 86400, &conf->interval))) {
        return err;
    }
    return jitter ? csy_int(cmd, jitter, 0, 86400, &conf->jitter) : NULL;
}

/* A number in a range (cmd->info: a csy_int_slot_t). */
static const char *csy_set_int(cmd_parms *cmd, void *dummy, const char *arg)
{
    const csy_int_slot_t *slot = cmd->info;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : csy_int(cmd, arg, slot->min, slot->max,
                               CSY_FIELD(csy_conf(cmd->server), slot->offset,
                                         int));
}

/* One of two keywords (cmd->info: a csy_choice_slot_t). */
static const char *csy_choice(cmd_parms *cmd, const char *arg, int *out)
{
    const csy_choice_slot_t *slot = cmd->info;

    if (!strcasecmp(arg, slot->one) || !strcasecmp(arg, slot->zero)) {
        *out = !strcasecmp(arg, slot->one);
        return NULL;
    }
    return apr_psprintf(cmd->pool, "%s: '%s' is neither '%s' nor '%s'",
                        cmd->cmd->name, arg, slot->zero, slot->one);
}

static const char *csy_set_choice(cmd_parms *cmd, void *dummy,
                                  const char *arg)
{
    const csy_choice_slot_t *slot = cmd->info;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : csy_choice(cmd, arg,
                                  CSY_FIELD(csy_conf(cmd->server),
                                            slot->offset, int));
}

/* CertSyncUnknownName: the main server's default, or a virtual host's. */
static const char *csy_set_unknown(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    return csy_choice(cmd, arg, &csy_conf(cmd->server)->refuse_unknown);
}

static const char *csy_set_catch_all(cmd_parms *cmd, void *dummy, int on)
{
    /* In the main server it would reach every virtual host without
     * certsync directives, taking their names from them. */
    if (!cmd->server->is_virtual) {
        return apr_psprintf(cmd->pool, "%s belongs in the catch-all TLS "
                            "<VirtualHost>, not in the main server",
                            cmd->cmd->name);
    }
    csy_conf(cmd->server)->catch_all = on;
    return NULL;
}

static const char *csy_set_flag(cmd_parms *cmd, void *dummy, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    *CSY_FIELD(csy_conf(cmd->server), (apr_size_t)cmd->info, int) = on;
    return NULL;
}

/* CertSyncWatch on|off|seconds. */
static const char *csy_set_watch(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dummy;
    if (err) {
        return err;
    }
    if (strcasecmp(arg, "off") == 0) {
        conf->watch = -1;
        return NULL;
    }
    if (strcasecmp(arg, "on") == 0) {
        conf->watch = CSY_DEFAULT_WATCH;
        return NULL;
    }
    if ((err = csy_int(cmd, arg, 1, 300, &conf->watch))) {
        return apr_psprintf(cmd->pool, "%s (or on, off)", err);
    }
    return NULL;
}

/* CertSyncOnDemandRate names [burst]. */
static const char *csy_set_od_rate(cmd_parms *cmd, void *dummy,
                                   const char *rate, const char *burst)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err || (err = csy_int(cmd, rate, 1, 100000, &conf->ondemand_rate))) {
        return err;
    }
    return burst ? csy_int(cmd, burst, 1, 100000, &conf->ondemand_burst)
                 : NULL;
}

/* host:port (cmd->info: the offset of a csy_addr_t). */
static const char *csy_set_addr(cmd_parms *cmd, void *dummy, const char *arg)
{
    csy_addr_t *addr = CSY_FIELD(csy_conf(cmd->server),
                                 (apr_size_t)cmd->info, csy_addr_t);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *host, *scope;
    apr_port_t port;

    if (err) {
        return err;
    }
    if (apr_parse_addr_port(&host, &scope, &port, arg, cmd->pool)
        || !host || !port || scope) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not host:port",
                            cmd->cmd->name, arg);
    }
    addr->host = host;
    addr->port = port;
    return NULL;
}

#define CSY_OFF(f) ((void *)APR_OFFSETOF(csy_conf_t, f))

static csy_int_slot_t csy_batch_slot = {
    APR_OFFSETOF(csy_conf_t, batch_size), 1, 10000
};
static csy_int_slot_t csy_timeout_slot = {
    APR_OFFSETOF(csy_conf_t, timeout), 1, 3600
};
static csy_int_slot_t csy_drain_slot = {
    APR_OFFSETOF(csy_conf_t, drain_time), 0, 3600
};
static csy_int_slot_t csy_lease_ttl_slot = {
    APR_OFFSETOF(csy_conf_t, lease_ttl), 10, 86400
};
static csy_int_slot_t csy_min_restart_slot = {
    APR_OFFSETOF(csy_conf_t, min_restart_interval), 0, 86400
};
static csy_int_slot_t csy_restart_timeout_slot = {
    APR_OFFSETOF(csy_conf_t, restart_timeout), 5, 3600
};
static csy_int_slot_t csy_cache_size_slot = {
    APR_OFFSETOF(csy_conf_t, cache_size), 1, 10000000
};
static csy_int_slot_t csy_od_wait_slot = {
    APR_OFFSETOF(csy_conf_t, ondemand_wait), 0, 30
};
static csy_choice_slot_t csy_activation_slot = {
    APR_OFFSETOF(csy_conf_t, dynamic), "dynamic", "vhost"
};
static csy_choice_slot_t csy_restart_slot = {
    APR_OFFSETOF(csy_conf_t, restart), "graceful", "off"
};
static csy_choice_slot_t csy_unknown_slot = {
    APR_OFFSETOF(csy_conf_t, refuse_unknown), "refuse", "default"
};

const command_rec csy_cmds[] = {
    AP_INIT_TAKE1("CertSyncServiceURL", csy_set_url, NULL, RSRC_CONF,
                  "Base URL of CertService (https://host:port)"),
    AP_INIT_TAKE12("CertSyncClientCertificate", csy_set_client_cert, NULL,
                   RSRC_CONF, "Client certificate and key (PEM) for mutual "
                   "TLS with CertService"),
    AP_INIT_TAKE1("CertSyncServiceCA", csy_set_path, CSY_OFF(ca_file),
                  RSRC_CONF, "CA file that verifies CertService's "
                  "certificate"),
    AP_INIT_TAKE2("CertSyncWrappingKey", csy_add_wrap_key, NULL, RSRC_CONF,
                  "Wrapping certificate and private key that open the key "
                  "envelopes (repeat during a rotation)"),
    AP_INIT_TAKE1("CertSyncStoreDir", csy_set_path, CSY_OFF(store_dir),
                  RSRC_CONF, "Directory of the local certificate store"),
    AP_INIT_TAKE12("CertSyncInterval", csy_set_interval, NULL, RSRC_CONF,
                   "Seconds between polls (default "
                   CSY_STR(CSY_DEFAULT_INTERVAL) "), and optional jitter "
                   "seconds (default: a fifth of the interval)"),
    AP_INIT_TAKE1("CertSyncBatchSize", csy_set_int, &csy_batch_slot,
                  RSRC_CONF, "Bundles fetched per request (default "
                  CSY_STR(CSY_DEFAULT_BATCH_SIZE) ")"),
    AP_INIT_TAKE1("CertSyncTimeout", csy_set_int, &csy_timeout_slot,
                  RSRC_CONF, "Seconds one request to CertService may take, "
                  "answer included (default " CSY_STR(CSY_DEFAULT_TIMEOUT)
                  ")"),
    AP_INIT_TAKE1("CertSyncActivation", csy_set_choice, &csy_activation_slot,
                  RSRC_CONF, "vhost (graceful restarts; default) or "
                  "dynamic"),
    AP_INIT_TAKE1("CertSyncRestart", csy_set_choice, &csy_restart_slot,
                  RSRC_CONF, "graceful (default) or off"),
    AP_INIT_TAKE1("CertSyncPool", csy_set_name, CSY_OFF(pool_name),
                  RSRC_CONF, "Name of this host's pool (for leases and "
                  "reports; default " CSY_DEFAULT_POOL ")"),
    AP_INIT_TAKE1("CertSyncHost", csy_set_name, CSY_OFF(host_name),
                  RSRC_CONF, "Name of this host (default: the system's host "
                  "name)"),
    AP_INIT_TAKE1("CertSyncDrainTime", csy_set_int, &csy_drain_slot,
                  RSRC_CONF, "Seconds between reporting drain and "
                  "restarting (default " CSY_STR(CSY_DEFAULT_DRAIN_TIME) ")"),
    AP_INIT_TAKE1("CertSyncLeaseTTL", csy_set_int, &csy_lease_ttl_slot,
                  RSRC_CONF, "Seconds a restart lease lasts unless renewed "
                  "(default " CSY_STR(CSY_DEFAULT_LEASE_TTL) ")"),
    AP_INIT_TAKE1("CertSyncMinRestartInterval", csy_set_int,
                  &csy_min_restart_slot, RSRC_CONF, "Fewest seconds between "
                  "two restarts (default " CSY_STR(CSY_DEFAULT_MIN_RESTART)
                  ")"),
    AP_INIT_TAKE1("CertSyncRestartTimeout", csy_set_int,
                  &csy_restart_timeout_slot, RSRC_CONF, "Seconds a restarted "
                  "generation has to pass its probe before the store is "
                  "rolled back (default "
                  CSY_STR(CSY_DEFAULT_RESTART_TIMEOUT) ")"),
    AP_INIT_TAKE1("CertSyncProbe", csy_set_addr, CSY_OFF(probe), RSRC_CONF,
                  "host:port of this proxy's TLS listener, probed after a "
                  "restart"),
    AP_INIT_TAKE1("CertSyncAgent", csy_set_addr, CSY_OFF(agent), RSRC_CONF,
                  "host:port where the sync daemon answers HAProxy's "
                  "agent-check (ready/drain)"),
    AP_INIT_TAKE1("CertSyncCacheSize", csy_set_int, &csy_cache_size_slot,
                  RSRC_CONF, "dynamic mode: certificates and keys each httpd "
                  "process keeps parsed (default "
                  CSY_STR(CSY_DEFAULT_CACHE_SIZE) ")"),
    AP_INIT_FLAG("CertSyncCatchAll", csy_set_catch_all, NULL, RSRC_CONF,
                 "dynamic mode: this TLS virtual host serves every domain "
                 "of the store by SNI"),
    AP_INIT_TAKE1("CertSyncUnknownName", csy_set_unknown, &csy_unknown_slot,
                  RSRC_CONF, "dynamic mode: a name the store does not have "
                  "(or no SNI) gets the virtual host's own certificate "
                  "('default') or no handshake ('refuse')"),
    AP_INIT_FLAG("CertSyncOnDemand", csy_set_flag, CSY_OFF(ondemand),
                 RSRC_CONF, "dynamic mode: ask CertService for a certificate "
                 "when a handshake names a domain the store does not have "
                 "(default Off)"),
    AP_INIT_TAKE1("CertSyncOnDemandWait", csy_set_int, &csy_od_wait_slot,
                  RSRC_CONF, "dynamic mode, on demand: seconds a handshake "
                  "for a new name may wait for its certificate (0 to 30; "
                  "default " CSY_STR(CSY_DEFAULT_OD_WAIT) ": the default "
                  "certificate at once)"),
    AP_INIT_TAKE1("CertSyncWatch", csy_set_watch, NULL, RSRC_CONF,
                  "dynamic mode: keep a long-poll request on CertService's "
                  "change feed open and sync as soon as it moves: on (a "
                  "wait of " CSY_STR(CSY_DEFAULT_WATCH) " s), a wait in "
                  "seconds, or off (the default)"),
    AP_INIT_TAKE12("CertSyncOnDemandRate", csy_set_od_rate, NULL, RSRC_CONF,
                   "dynamic mode, on demand: new names per second this "
                   "proxy sends to CertService (default "
                   CSY_STR(CSY_DEFAULT_OD_RATE) "), and the burst (default "
                   CSY_STR(CSY_DEFAULT_OD_BURST) ")"),
    AP_INIT_FLAG("CertSyncTicketKeys", csy_set_flag, CSY_OFF(tickets),
                 RSRC_CONF, "TLS session tickets under the pool's keys from "
                 "CertService, on every TLS virtual host (default On)"),
    { NULL }
};
