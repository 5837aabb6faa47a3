/*
 * mod_certsync: keeps a proxy's certificate store in step with CertService
 * and makes new certificates live (ARCHITECTURE.md section 4).
 *
 * The sync loop runs in a daemon the module forks from the httpd parent at
 * every (re)start, the way mod_cgid starts cgid: it keeps the parent's
 * privileges (root in production, so it can write root-only key files and
 * signal the parent), is started again if it dies, and is stopped with the
 * configuration generation that started it.  No sync work happens in the
 * request path: workers only read the status file the daemon writes.
 *
 * vhost activation: after a cycle that changed what is servable, the daemon
 * runs the configuration test (httpd -t) and, only if it passes, asks the
 * parent for a graceful restart (SIGUSR1); mod_macro_gen expands the new
 * manifest.
 *
 * dynamic activation: the store keeps the sealed keys (key.cms) and no
 * restart ever happens.  Every virtual host marked `CertSyncCatchAll On`
 * gets an OpenSSL certificate callback through mod_ssl's optional
 * ssl_init_server hook; for each handshake it picks the chain and key for
 * the client's server name from a per-process cache (csy_dyn.h), which
 * reads and decrypts a domain's current version on first use and again
 * after the daemon bumped that domain's generation slot in shared memory.
 */
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_listen.h"
#include "ap_mpm.h"
#include "mod_status.h"
#include "mpm_common.h"
#include "util_cfgtree.h"
#include "unixd.h"

#include "apr_atomic.h"
#include "apr_optional.h"
#include "apr_poll.h"
#include "apr_shm.h"
#include "apr_signal.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include <openssl/ssl.h>

#include "cs_crypto.h"
#include "cs_seal.h"
#include "csy_dyn.h"
#include "csy_probe.h"
#include "csy_store.h"
#include "csy_sync.h"

module AP_MODULE_DECLARE_DATA certsync_module;

/* Log tags "CYnnnnn": never reused; the next free one is 00037. */
#define CYLOGNO(n) "CY" #n ": "

#define CSY_STATUS_HANDLER      "certsync-status"
#define CSY_HEALTH_HANDLER      "certsync-health"
#define CSY_DEFAULT_INTERVAL    30
#define CSY_MAX_BACKOFF         600
#define CSY_DEFAULT_CACHE_SIZE  10000
/* Seconds a probe must keep seeing another serial before it counts as a
 * failure: just after a graceful restart a connection may still reach
 * the old generation. */
#define CSY_PROBE_CONFIRM       3

/* csy_probe() */
#define CSY_PROBE_OK            0
#define CSY_PROBE_NOT_READY     1   /* no handshake: not listening yet */
#define CSY_PROBE_MISMATCH      2   /* it answers with other certificates */

typedef struct csy_conf_t {
    const char *url;
    const char *client_cert;
    const char *client_key;
    const char *ca_file;
    apr_array_header_t *wrap_certs;     /* X509 * */
    apr_array_header_t *wrap_keys;      /* EVP_PKEY * */
    const char *store_dir;
    int interval;                       /* seconds; 0: unset */
    int jitter;                         /* seconds; -1: unset */
    int batch_size;                     /* 0: unset */
    int dynamic;                        /* -1: unset */
    int restart;                        /* -1: unset; 1 graceful, 0 off */
    const char *pool_name;
    const char *host_name;
    /* Staggered restarts (section 6 of ARCHITECTURE.md). */
    int drain_time;                     /* seconds; -1: unset */
    int lease_ttl;                      /* seconds; 0: unset */
    int min_restart_interval;           /* seconds; -1: unset */
    int restart_timeout;                /* seconds; 0: unset */
    const char *probe_host;             /* NULL: no probe */
    int probe_port;
    const char *agent_host;             /* HAProxy agent-check; NULL: none */
    int agent_port;
    /* Dynamic activation. */
    int cache_size;                     /* bundles per process; 0: unset */
    int catch_all;                      /* per virtual host; -1: unset */
    int refuse_unknown;                 /* per virtual host; -1: unset */
} csy_conf_t;

static pid_t csy_daemon_pid;
static pid_t csy_parent_pid;
static volatile sig_atomic_t csy_stop;

/* Dynamic activation: the main server's configuration, the generation
 * table the parent maps before it forks (shared by the daemon and every
 * worker), and each worker process's cache. */
static const struct csy_conf_t *csy_main_conf;
static csy_shared_t *csy_shared;
static csy_cache_t *csy_cache;

/* ------------------------------------------------------------------ */
/* Configuration (server config only: one store per httpd)             */
/* ------------------------------------------------------------------ */

static void *csy_create_server_config(apr_pool_t *p, server_rec *s)
{
    csy_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->jitter = -1;
    conf->dynamic = -1;
    conf->restart = -1;
    conf->drain_time = -1;
    conf->min_restart_interval = -1;
    conf->catch_all = -1;
    conf->refuse_unknown = -1;
    return conf;
}

static csy_conf_t *csy_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &certsync_module);
}

static const char *csy_set_str(cmd_parms *cmd, void *dummy, const char *arg)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *name = cmd->cmd->name;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (!strcasecmp(name, "CertSyncServiceURL")) {
        if (strncmp(arg, "https://", 8) && strncmp(arg, "http://", 7)) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not an http(s) URL",
                                name, arg);
        }
        conf->url = apr_pstrdup(cmd->pool, arg);
        if (conf->url[strlen(conf->url) - 1] == '/') {
            ((char *)conf->url)[strlen(conf->url) - 1] = '\0';
        }
    }
    else if (!strcasecmp(name, "CertSyncServiceCA")) {
        conf->ca_file = ap_server_root_relative(cmd->pool, arg);
    }
    else if (!strcasecmp(name, "CertSyncStoreDir")) {
        conf->store_dir = ap_server_root_relative(cmd->pool, arg);
    }
    else if (!strcasecmp(name, "CertSyncPool")) {
        conf->pool_name = arg;
    }
    else if (!strcasecmp(name, "CertSyncHost")) {
        conf->host_name = arg;
    }
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

static const char *csy_int(cmd_parms *cmd, const char *arg, int min, int max,
                           int *out)
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

static const char *csy_set_batch(cmd_parms *cmd, void *dummy, const char *arg)
{
    return csy_int(cmd, arg, 1, 10000, &csy_conf(cmd->server)->batch_size);
}

/* A directive with two keywords: *out = 1 for `one`, 0 for `zero`. */
static const char *csy_choice(cmd_parms *cmd, const char *arg,
                              const char *one, const char *zero, int *out)
{
    if (!strcasecmp(arg, one) || !strcasecmp(arg, zero)) {
        *out = !strcasecmp(arg, one);
        return NULL;
    }
    return apr_psprintf(cmd->pool, "%s: '%s' is neither '%s' nor '%s'",
                        cmd->cmd->name, arg, zero, one);
}

static const char *csy_set_activation(cmd_parms *cmd, void *dummy,
                                      const char *arg)
{
    return csy_choice(cmd, arg, "dynamic", "vhost",
                      &csy_conf(cmd->server)->dynamic);
}

static const char *csy_set_restart(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    return csy_choice(cmd, arg, "graceful", "off",
                      &csy_conf(cmd->server)->restart);
}

/* CertSyncDrainTime, CertSyncLeaseTTL, CertSyncMinRestartInterval and
 * CertSyncRestartTimeout: seconds. */
static const char *csy_set_seconds(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    const char *name = cmd->cmd->name;

    if (!strcasecmp(name, "CertSyncDrainTime")) {
        return csy_int(cmd, arg, 0, 3600, &conf->drain_time);
    }
    if (!strcasecmp(name, "CertSyncLeaseTTL")) {
        return csy_int(cmd, arg, 10, 86400, &conf->lease_ttl);
    }
    if (!strcasecmp(name, "CertSyncMinRestartInterval")) {
        return csy_int(cmd, arg, 0, 86400, &conf->min_restart_interval);
    }
    return csy_int(cmd, arg, 5, 3600, &conf->restart_timeout);
}

static const char *csy_set_cache_size(cmd_parms *cmd, void *dummy,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    return err ? err : csy_int(cmd, arg, 1, 10000000,
                               &csy_conf(cmd->server)->cache_size);
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

static const char *csy_set_unknown(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    return csy_choice(cmd, arg, "refuse", "default",
                      &csy_conf(cmd->server)->refuse_unknown);
}

/* CertSyncProbe and CertSyncAgent: host:port. */
static const char *csy_set_hostport(cmd_parms *cmd, void *dummy,
                                    const char *arg)
{
    csy_conf_t *conf = csy_conf(cmd->server);
    char *host, *scope;
    apr_port_t port;

    if (apr_parse_addr_port(&host, &scope, &port, arg, cmd->pool)
        || !host || !port || scope) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not host:port",
                            cmd->cmd->name, arg);
    }
    if (!strcasecmp(cmd->cmd->name, "CertSyncProbe")) {
        conf->probe_host = host;
        conf->probe_port = port;
    }
    else {
        conf->agent_host = host;
        conf->agent_port = port;
    }
    return NULL;
}

static const command_rec csy_cmds[] = {
    AP_INIT_TAKE1("CertSyncServiceURL", csy_set_str, NULL, RSRC_CONF,
                  "Base URL of CertService (https://host:port)"),
    AP_INIT_TAKE12("CertSyncClientCertificate", csy_set_client_cert, NULL,
                   RSRC_CONF, "Client certificate and key (PEM) for mutual "
                   "TLS with CertService"),
    AP_INIT_TAKE1("CertSyncServiceCA", csy_set_str, NULL, RSRC_CONF,
                  "CA file that verifies CertService's certificate"),
    AP_INIT_TAKE2("CertSyncWrappingKey", csy_add_wrap_key, NULL, RSRC_CONF,
                  "Wrapping certificate and private key that open the key "
                  "envelopes (repeat during a rotation)"),
    AP_INIT_TAKE1("CertSyncStoreDir", csy_set_str, NULL, RSRC_CONF,
                  "Directory of the local certificate store"),
    AP_INIT_TAKE12("CertSyncInterval", csy_set_interval, NULL, RSRC_CONF,
                   "Seconds between polls, and optional jitter seconds"),
    AP_INIT_TAKE1("CertSyncBatchSize", csy_set_batch, NULL, RSRC_CONF,
                  "Bundles fetched per request (default 100)"),
    AP_INIT_TAKE1("CertSyncActivation", csy_set_activation, NULL, RSRC_CONF,
                  "vhost (graceful restarts) or dynamic"),
    AP_INIT_TAKE1("CertSyncRestart", csy_set_restart, NULL, RSRC_CONF,
                  "graceful (default) or off"),
    AP_INIT_TAKE1("CertSyncPool", csy_set_str, NULL, RSRC_CONF,
                  "Name of this host's pool (for leases and reports)"),
    AP_INIT_TAKE1("CertSyncHost", csy_set_str, NULL, RSRC_CONF,
                  "Name of this host (default: the system's host name)"),
    AP_INIT_TAKE1("CertSyncDrainTime", csy_set_seconds, NULL, RSRC_CONF,
                  "Seconds between reporting drain and restarting "
                  "(default 5)"),
    AP_INIT_TAKE1("CertSyncLeaseTTL", csy_set_seconds, NULL, RSRC_CONF,
                  "Seconds a restart lease lasts unless renewed "
                  "(default 300)"),
    AP_INIT_TAKE1("CertSyncMinRestartInterval", csy_set_seconds, NULL,
                  RSRC_CONF, "Fewest seconds between two restarts "
                  "(default 0)"),
    AP_INIT_TAKE1("CertSyncRestartTimeout", csy_set_seconds, NULL,
                  RSRC_CONF, "Seconds a restarted generation has to pass "
                  "its probe before the store is rolled back (default 120)"),
    AP_INIT_TAKE1("CertSyncProbe", csy_set_hostport, NULL, RSRC_CONF,
                  "host:port of this proxy's TLS listener, probed after a "
                  "restart"),
    AP_INIT_TAKE1("CertSyncAgent", csy_set_hostport, NULL, RSRC_CONF,
                  "host:port where the sync daemon answers HAProxy's "
                  "agent-check (ready/drain)"),
    AP_INIT_TAKE1("CertSyncCacheSize", csy_set_cache_size, NULL, RSRC_CONF,
                  "dynamic mode: certificates and keys each httpd process "
                  "keeps parsed (default 10000)"),
    AP_INIT_FLAG("CertSyncCatchAll", csy_set_catch_all, NULL, RSRC_CONF,
                 "dynamic mode: this TLS virtual host serves every domain "
                 "of the store by SNI"),
    AP_INIT_TAKE1("CertSyncUnknownName", csy_set_unknown, NULL, RSRC_CONF,
                  "dynamic mode: a name the store does not have (or no SNI) "
                  "gets the virtual host's own certificate ('default') or "
                  "no handshake ('refuse')"),
    { NULL }
};

/* ------------------------------------------------------------------ */
/* The sync daemon                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    server_rec *s;
    const csy_conf_t *conf;
    apr_pool_t *pool;
    csy_config_t cfg;
    csy_client_t *client;
    csy_store_t *store;
    json_t *state;              /* what the status page shows */
    /* "ready" or "drain" (string literals): the agent thread reads it. */
    const char *volatile health;
    /* HAProxy agent-check address (a copy: the agent thread may still
     * look at it while the daemon's pool goes at exit); agent_on: set. */
    apr_sockaddr_t agent_addr;
    int agent_on;
    /* Answers the agent thread sent (all, and "ready" ones): tell whether
     * the load balancer has seen this host back in rotation. */
    volatile apr_uint32_t agent_told;
    volatile apr_uint32_t agent_told_ready;
    /* The previous generation's agent was asked (rollout.json): a load
     * balancer uses it, even if it has not asked this daemon yet. */
    int agent_used;
    apr_pool_t *tick;           /* lease renewals */
    const char *lease;          /* the restart lease held, or NULL */
    int lease_wanted;           /* a rollout is under way: hold a lease */
    int lease_backoff;          /* seconds, after a failed renewal */
    apr_time_t lease_due;       /* when to renew it (or ask again) */
    apr_time_t lease_ok;        /* when it was granted or renewed */
    json_t *rollout;            /* rollout.json of the rollout under way */
    apr_uint64_t change_set;    /* bumped when pending grows */
    int seal_pos;               /* key.seal backfill: manifest position */
    int seals_done;             /* ... every version checked */
    long seals_written;
    apr_uint64_t tested_set;    /* the change set that passed httpd -t */
    apr_hash_t *pending;        /* domain -> serial installed, not yet live */
    apr_hash_t *quarantine;     /* domain -> serial rolled back */
    apr_hash_t *failures;       /* domain -> why its bundle was skipped */
} csy_daemon_t;

static void csy_daemon_log(void *baton, cs_log_level_t level,
                           const char *msg)
{
    csy_daemon_t *d = baton;
    int lvl = level == CS_LOG_ERR ? APLOG_ERR
              : level == CS_LOG_WARN ? APLOG_WARNING
              : level == CS_LOG_INFO ? APLOG_INFO : APLOG_DEBUG;

    ap_log_error(APLOG_MARK, lvl, 0, d->s, CYLOGNO(00001) "%s", msg);
}

static void csy_on_term(int sig)
{
    csy_stop = 1;
}

static int csy_running(void)
{
    return !csy_stop && getppid() == csy_parent_pid;
}

static const char *csy_path(csy_daemon_t *d, apr_pool_t *p, const char *name)
{
    return apr_pstrcat(p, d->conf->store_dir, "/", name, NULL);
}

/* The configuration test, with the parent's own arguments. */
/*
 * The configuration test, with the parent's own arguments.  Returns its
 * exit code (-1 if it could not run) and, in *output, what it printed.
 */
static int csy_configtest(apr_pool_t *p, const char **output)
{
    apr_array_header_t *argv = apr_array_make(p, 12, sizeof(char *));
    const char *conffile = ap_conftree ? ap_conftree->filename : NULL;
    apr_procattr_t *attr;
    apr_file_t *rd, *wr;
    apr_proc_t proc;
    apr_exit_why_e why;
    char buf[4096];
    apr_size_t len = 0, n;
    int code = -1, i;

    *output = "";
    APR_ARRAY_PUSH(argv, const char *) = ap_server_argv0;
    APR_ARRAY_PUSH(argv, const char *) = "-t";
    APR_ARRAY_PUSH(argv, const char *) = "-d";
    APR_ARRAY_PUSH(argv, const char *) = ap_server_root;
    if (conffile) {
        APR_ARRAY_PUSH(argv, const char *) = "-f";
        APR_ARRAY_PUSH(argv, const char *) = conffile;
    }
    for (i = 0; i < ap_server_config_defines->nelts; i++) {
        APR_ARRAY_PUSH(argv, const char *) = "-D";
        APR_ARRAY_PUSH(argv, const char *) =
            APR_ARRAY_IDX(ap_server_config_defines, i, const char *);
    }
    APR_ARRAY_PUSH(argv, const char *) = NULL;
    /* Its output goes to a pipe, so a failure can say why. */
    if (apr_file_pipe_create_ex(&rd, &wr, APR_READ_BLOCK, p)
        || apr_procattr_create(&attr, p)
        || apr_procattr_cmdtype_set(attr, APR_PROGRAM_PATH)
        || apr_procattr_io_set(attr, APR_NO_PIPE, APR_NO_PIPE, APR_NO_PIPE)
        || apr_procattr_child_out_set(attr, wr, NULL)
        || apr_procattr_child_err_set(attr, wr, NULL)
        /* ap_server_argv0 is only the base name ("apache2"): looked up
         * in PATH it may be missing (/usr/sbin is not in every PATH) or
         * another httpd.  The parent's own argv[0] is what started it. */
        || apr_proc_create(&proc, ap_server_conf->process->argv[0],
                           (const char *const *)argv->elts, NULL, attr, p)) {
        return -1;
    }
    apr_file_close(wr);
    while (n = sizeof(buf) - 1 - len, n > 0
           && apr_file_read(rd, buf + len, &n) == APR_SUCCESS) {
        len += n;
    }
    buf[len] = '\0';
    for (n = 0; n < len; n++) {
        if (buf[n] == '\n' || buf[n] == '\r') {
            buf[n] = ' ';   /* one log line */
        }
    }
    apr_file_close(rd);
    if (apr_proc_wait(&proc, &code, &why, APR_WAIT) != APR_CHILD_DONE) {
        return -1;
    }
    *output = apr_pstrdup(p, buf);
    return why == APR_PROC_EXIT ? code : -1;
}

static void csy_write_json(csy_daemon_t *d, apr_pool_t *p, const char *name,
                           json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);

    if (text) {
        csy_write_atomic(csy_path(d, p, name), text, strlen(text),
                         APR_FPROT_UREAD | APR_FPROT_UWRITE
                         | APR_FPROT_GREAD | APR_FPROT_WREAD, p);
        free(text);
    }
}

static json_t *csy_read_json(csy_daemon_t *d, apr_pool_t *p,
                             const char *name)
{
    json_error_t jerr;

    return json_load_file(csy_path(d, p, name), 0, &jerr);
}

static void csy_set_state(csy_daemon_t *d, const char *state)
{
    json_object_set_new(d->state, "state", json_string(state));
}

static void csy_count(json_t *state, const char *name, json_int_t add)
{
    json_t *counters = json_object_get(state, "counters");
    json_int_t v = json_integer_value(json_object_get(counters, name));

    json_object_set_new(counters, name, json_integer(v + add));
}

/* ready/drain, for HAProxy's agent-check and the certsync-health page. */
static void csy_set_health(csy_daemon_t *d, apr_pool_t *p, const char *health)
{
    d->health = health;
    json_object_set_new(d->state, "health", json_string(health));
    csy_write_atomic(csy_path(d, p, "health"), health, strlen(health),
                     APR_FPROT_UREAD | APR_FPROT_UWRITE | APR_FPROT_GREAD
                     | APR_FPROT_WREAD, p);
    csy_write_json(d, p, "state.json", d->state);
}

/* Seconds: how long the agent's port may stay taken by the previous
 * generation's daemon, and how long a host back in rotation waits for the
 * load balancer to ask its agent, before either is logged as a problem. */
#define CSY_AGENT_GRACE 10

/* A listening socket for the agent, or -1 with errno set. */
static int csy_agent_listen(const apr_sockaddr_t *sa)
{
    int one = 1, e;
    int fd = socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0
        && bind(fd, (const struct sockaddr *)&sa->sa, sa->salen) == 0
        && listen(fd, 16) == 0) {
        return fd;
    }
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

/*
 * HAProxy's agent-check, answered by a thread of its own: the daemon's
 * main thread may be busy for a while (a sync cycle, the configuration
 * test, a probe), and the load balancer must see ready/drain in every
 * phase.  Plain system calls only: no pool is shared with the main thread.
 *
 * After a graceful restart the previous generation's daemon may still hold
 * the port for a moment (it is on its way out): the port is taken as soon
 * as it is free.  Until then connections are refused, and HAProxy keeps
 * the last answer it had, "drain".
 */
static void *APR_THREAD_FUNC csy_agent_main(apr_thread_t *thread, void *baton)
{
    csy_daemon_t *d = baton;
    apr_time_t since = apr_time_now();
    struct pollfd pfd;
    sigset_t all;
    int fd = -1, told = 0, e;

    /* Signals are for the main thread (csy_on_term). */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!csy_stop && (fd = csy_agent_listen(&d->agent_addr)) < 0) {
        e = errno;
        if (!told && (e != EADDRINUSE || apr_time_now() - since
                      >= apr_time_from_sec(CSY_AGENT_GRACE))) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(e),
                         d->s, CYLOGNO(00013) "CertSyncAgent %s:%d: cannot "
                         "listen; trying again (every 100 ms while the port is "
                         "taken, else every 5 s), meanwhile the "
                         "load balancer's agent-check sees neither drain "
                         "nor ready", d->conf->agent_host,
                         d->conf->agent_port);
            told = 1;
        }
        /* Taken: free in a moment.  Anything else (no such address, a
         * privileged port) will hardly change: tried again now and then. */
        apr_sleep(apr_time_from_msec(e == EADDRINUSE ? 100 : 5000));
    }
    if (fd < 0) {
        return NULL;
    }
    if (apr_time_now() - since >= apr_time_from_msec(100)) {
        ap_log_error(APLOG_MARK, told ? APLOG_NOTICE : APLOG_INFO, 0, d->s,
                     CYLOGNO(00040) "CertSyncAgent %s:%d: listening after "
                     "%" APR_TIME_T_FMT " ms (the port was taken)",
                     d->conf->agent_host, d->conf->agent_port,
                     apr_time_as_msec(apr_time_now() - since));
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    while (!csy_stop) {
        char line[16];
        int c;

        pfd.revents = 0;
        if (poll(&pfd, 1, 500) <= 0) {
            continue;
        }
        if ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            continue;
        }
        apr_cpystrn(line, d->health, sizeof(line) - 1);
        strcat(line, "\n");
        if (send(c, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
            if (strcmp(line, "ready\n") == 0) {
                apr_atomic_inc32(&d->agent_told_ready);
            }
            apr_atomic_inc32(&d->agent_told);
        }
        /* else HAProxy gave up already: it asks again. */
        close(c);
    }
    close(fd);
    return NULL;
}

static void csy_agent_open(csy_daemon_t *d)
{
    apr_threadattr_t *attr;
    apr_thread_t *thread;
    apr_sockaddr_t *sa;
    apr_status_t rv;

    if (!d->conf->agent_host) {
        return;
    }
    if ((rv = apr_sockaddr_info_get(&sa, d->conf->agent_host, APR_UNSPEC,
                                    (apr_port_t)d->conf->agent_port, 0,
                                    d->pool)) == APR_SUCCESS) {
        d->agent_addr = *sa;
        d->agent_on = 1;
    }
    if (rv
        || (rv = apr_threadattr_create(&attr, d->pool))
        || (rv = apr_threadattr_detach_set(attr, 1))
        || (rv = apr_thread_create(&thread, attr, csy_agent_main, d,
                                   d->pool))) {
        d->agent_on = 0;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00013)
                     "CertSyncAgent %s:%d: cannot resolve the address or "
                     "start the agent thread; the load balancer's "
                     "agent-check will not see drain/ready",
                     d->conf->agent_host, d->conf->agent_port);
    }
}

/*
 * Keeps the restart lease of the rollout under way alive, in every phase
 * (drain, restart, probe, the wait for the load balancer): renewed every
 * third of CertSyncLeaseTTL.  Asking CertService again renews a live
 * lease; if it expired meanwhile the answer is a new lease, which is ours
 * from then on (rollout.json names it), or a 409 when another host took
 * the slot: then the daemon asks again, with a jittered backoff.
 */
static void csy_lease_tick(csy_daemon_t *d)
{
    const csy_conf_t *conf = d->conf;
    apr_time_t now = apr_time_now();
    const char *id, *err = "";
    unsigned char r;
    long retry;
    apr_status_t rv;
    int wait;

    if (!d->lease_wanted || now < d->lease_due) {
        return;
    }
    apr_pool_clear(d->tick);
    rv = csy_lease_acquire(&id, &retry, d->client, d->tick, conf->lease_ttl,
                           &err);
    if (rv == APR_SUCCESS) {
        if (!d->lease || strcmp(d->lease, id) != 0) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00019)
                         "restart lease %s had expired; holding lease %s "
                         "now", d->lease ? d->lease : "(none)", id);
            d->lease = apr_pstrdup(d->pool, id);
            if (d->rollout) {
                json_object_set_new(d->rollout, "lease", json_string(id));
                csy_write_json(d, d->tick, "rollout.json", d->rollout);
            }
        }
        d->lease_backoff = 0;
        d->lease_ok = now;
        d->lease_due = now + apr_time_from_sec(conf->lease_ttl / 3);
        return;
    }
    wait = d->lease_backoff ? d->lease_backoff * 2 : 1;
    if (wait > conf->lease_ttl / 3) {
        wait = conf->lease_ttl / 3;
    }
    d->lease_backoff = wait;
    apr_generate_random_bytes(&r, 1);
    d->lease_due = now + apr_time_from_sec(wait)
                   + apr_time_from_msec(r * 4 * wait);   /* up to +100% */
    if (rv == APR_EAGAIN) {
        if (d->lease) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00020)
                         "restart lease %s expired and another host holds "
                         "the pool's slot now; asking again (next in about "
                         "%ds)", d->lease, wait);
        }
        d->lease = NULL;
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00021)
                     "renewing restart lease %s failed: %s; trying again "
                     "in about %ds", d->lease ? d->lease : "(none)", err,
                     wait);
    }
}

/* A rollout starts holding lease (rollout: its rollout.json). */
static void csy_lease_hold(csy_daemon_t *d, const char *lease,
                           json_t *rollout, int renew_now)
{
    d->lease = apr_pstrdup(d->pool, lease);
    d->lease_wanted = 1;
    d->lease_backoff = 0;
    d->lease_ok = apr_time_now();
    d->lease_due = renew_now ? 0 : apr_time_now()
                   + apr_time_from_sec(d->conf->lease_ttl / 3);
    d->rollout = rollout;
}

/* The rollout is over: release the lease, never left to expire. */
static void csy_lease_drop(csy_daemon_t *d, apr_pool_t *p)
{
    if (d->lease) {
        csy_lease_release(d->client, p, d->lease);
    }
    d->lease = NULL;
    d->lease_wanted = 0;
    d->rollout = NULL;
}

/* Waits about `seconds` (the agent thread answers meanwhile), keeping the
 * restart lease alive. */
static void csy_idle(csy_daemon_t *d, int seconds)
{
    apr_time_t until = apr_time_now() + apr_time_from_sec(seconds);

    while (csy_running() && apr_time_now() < until) {
        csy_lease_tick(d);
        apr_sleep(apr_time_from_msec(200));
    }
}

/*
 * Back in the load balancer's rotation before the lease goes, so that
 * another host leaves it only once this one is back: "ready", then at
 * least CertSyncDrainTime (an httpchk on certsync-health needs its rise
 * checks).  With an agent-check, until HAProxy has also been answered
 * "ready" at least once: it may not have asked for a while (its agent
 * connection refused while the new generation's daemon started, a busy
 * machine), and until it asks it keeps the host in DRAIN.  An agent
 * nobody ever asked (no agent-check configured) is not waited for; one
 * that is not asked again within CSY_AGENT_GRACE seconds is given up on,
 * with a warning.
 */
static int csy_agent_used(csy_daemon_t *d)
{
    return d->agent_used || apr_atomic_read32(&d->agent_told) > 0;
}

/* For rollout.json: has a load balancer asked this daemon's agent?  Its
 * own experience only, so that the flag does not outlive an agent-check
 * removed from the load balancer. */
static json_t *csy_agent_asked(csy_daemon_t *d)
{
    return json_boolean(apr_atomic_read32(&d->agent_told) > 0);
}

static void csy_back_in_rotation(csy_daemon_t *d, apr_pool_t *p)
{
    apr_uint32_t ready = apr_atomic_read32(&d->agent_told_ready);
    apr_time_t start = apr_time_now(), limit;

    csy_set_health(d, p, "ready");
    csy_idle(d, d->conf->drain_time);
    limit = start + apr_time_from_sec(d->conf->drain_time + CSY_AGENT_GRACE);
    while (csy_running() && d->agent_on && csy_agent_used(d)
           && apr_atomic_read32(&d->agent_told_ready) == ready) {
        if (apr_time_now() >= limit) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00039)
                         "CertSyncAgent %s:%d: not asked since this host "
                         "became ready %" APR_TIME_T_FMT " s ago; the load "
                         "balancer may still see it draining",
                         d->conf->agent_host, d->conf->agent_port,
                         apr_time_sec(apr_time_now() - start));
            break;
        }
        csy_lease_tick(d);
        apr_sleep(apr_time_from_msec(50));
    }
}

/* Until the lease is ours again (after a 409 on renewal).  0: stopping. */
static int csy_lease_wait(csy_daemon_t *d)
{
    while (csy_running() && !d->lease) {
        csy_lease_tick(d);
        if (!d->lease) {
            apr_sleep(apr_time_from_msec(200));
        }
    }
    return d->lease != NULL;
}

/*
 * Which certificates does the listener present?  Handshakes with (up to
 * three of) the expected domains as SNI; if one presents another serial,
 * all of them are probed, and those that do not match go into mismatched
 * (domain -> the serial expected): CSY_PROBE_MISMATCH, *why says which.
 * A connection or handshake that fails means the restarted generation
 * does not answer yet (CSY_PROBE_NOT_READY: "scoreboard is full", the
 * listener still starting), never that a certificate is wrong.  With
 * nothing expected: does the listener answer at all?
 */
static int csy_probe(csy_daemon_t *d, apr_pool_t *p, apr_hash_t *expected,
                     apr_hash_t *mismatched, const char **why)
{
    const char *serial, *err;
    apr_hash_index_t *hi;
    int probed, pass;

    *why = NULL;
    if (!d->conf->probe_host) {
        return CSY_PROBE_OK;
    }
    if (apr_hash_count(expected) == 0) {
        if (csy_probe_serial(&serial, p, d->conf->probe_host,
                             d->conf->probe_port, "localhost",
                             apr_time_from_sec(5), &err)) {
            *why = err;
            return CSY_PROBE_NOT_READY;
        }
        return CSY_PROBE_OK;
    }
    for (pass = 0; pass < 2; pass++) {
        probed = 0;
        for (hi = apr_hash_first(p, expected);
             hi && (pass || probed < 3); hi = apr_hash_next(hi), probed++) {
            const char *domain = apr_hash_this_key(hi), *sni = domain;
            const char *want = apr_hash_this_val(hi);

            if (domain[0] == '*') {
                sni = apr_pstrcat(p, "probe", domain + 1, NULL);
            }
            if (csy_probe_serial(&serial, p, d->conf->probe_host,
                                 d->conf->probe_port, sni,
                                 apr_time_from_sec(5), &err)) {
                *why = err;
                return CSY_PROBE_NOT_READY;
            }
            if (strcmp(serial, want) != 0) {
                if (!*why) {
                    *why = apr_psprintf(p, "%s is served with serial %s, "
                                        "not %s", domain, serial, want);
                }
                apr_hash_set(mismatched, domain, APR_HASH_KEY_STRING, want);
            }
        }
        if (!*why) {
            return CSY_PROBE_OK;
        }
        if (pass == 0) {
            /* Which ones, of all of them? */
            *why = NULL;
            apr_hash_clear(mismatched);
        }
    }
    return CSY_PROBE_MISMATCH;
}

static json_t *csy_hash_json(apr_pool_t *p, apr_hash_t *h)
{
    json_t *o = json_object();
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, h); hi; hi = apr_hash_next(hi)) {
        json_object_set_new(o, apr_hash_this_key(hi),
                            json_string(apr_hash_this_val(hi)));
    }
    return o;
}

static apr_hash_t *csy_json_hash(apr_pool_t *p, json_t *o)
{
    apr_hash_t *h = apr_hash_make(p);
    const char *k;
    json_t *v;

    json_object_foreach(o, k, v) {
        if (json_is_string(v)) {
            apr_hash_set(h, apr_pstrdup(p, k), APR_HASH_KEY_STRING,
                         apr_pstrdup(p, json_string_value(v)));
        }
    }
    return h;
}

static void csy_restart(csy_daemon_t *d, apr_pool_t *p, json_t *rollout,
                        const char *phase)
{
    apr_hash_index_t *hi;
    apr_hash_t *expected;

    json_object_set_new(rollout, "phase", json_string(phase));
    json_object_set_new(rollout, "restart_at",
                        json_integer(apr_time_sec(apr_time_now())));
    json_object_set_new(rollout, "agent_used", csy_agent_asked(d));
    csy_write_json(d, p, "rollout.json", rollout);
    csy_set_state(d, phase);
    csy_count(d->state, "restarts", 1);
    csy_write_json(d, p, "state.json", d->state);
    kill(csy_parent_pid, AP_SIG_GRACEFUL);
    /* The restart ends this daemon (SIGTERM); the next one resumes from
     * rollout.json.  Should the parent not restart, back in rotation, the
     * change pending again, the lease released. */
    csy_idle(d, d->conf->restart_timeout);
    if (!csy_running()) {
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00023)
                 "the parent (pid %" APR_PID_T_FMT ") did not restart "
                 "within CertSyncRestartTimeout (%ds): ready again, the "
                 "restart stays pending", csy_parent_pid,
                 d->conf->restart_timeout);
    if (strcmp(phase, "restarting") == 0) {
        expected = csy_json_hash(p, json_object_get(rollout, "expected"));
        for (hi = apr_hash_first(p, expected); hi; hi = apr_hash_next(hi)) {
            apr_hash_set(d->pending, apr_pstrdup(d->pool,
                                                 apr_hash_this_key(hi)),
                         APR_HASH_KEY_STRING,
                         apr_pstrdup(d->pool, apr_hash_this_val(hi)));
        }
        d->change_set++;
    }
    json_object_set_new(d->state, "restart_pending", json_true());
    csy_count(d->state, "restart_failures", 1);
    d->rollout = NULL;      /* a lease renewed meanwhile must not write it */
    apr_file_remove(csy_path(d, p, "rollout.json"), p);
    csy_set_state(d, "restart-failed");
    csy_back_in_rotation(d, p);
    csy_lease_drop(d, p);
}

/*
 * The second half of a rollout, in the daemon of the new generation:
 * renew the lease, probe until the listener answers, then release the
 * lease; or roll the store back and restart.
 */
static void csy_resume(csy_daemon_t *d, apr_pool_t *p, json_t *rollout)
{
    const char *phase = json_string_value(json_object_get(rollout, "phase"));
    const char *lease = json_string_value(json_object_get(rollout, "lease"));
    apr_hash_t *expected = csy_json_hash(p, json_object_get(rollout,
                                                            "expected"));
    apr_hash_t *mismatched = apr_hash_make(p), *back;
    apr_time_t deadline, first_mismatch = 0;
    const char *why = "no probe ran";
    apr_hash_index_t *hi;
    apr_pool_t *pp;
    int restarting, rc = CSY_PROBE_NOT_READY, told = 0;

    if (!phase || !lease) {
        apr_file_remove(csy_path(d, p, "rollout.json"), p);
        return;
    }
    d->agent_used = json_is_true(json_object_get(rollout, "agent_used"));
    if (strcmp(phase, "draining") == 0) {
        /* The previous daemon died while draining, before it asked for
         * the restart: nothing was rolled back, and the new certificates
         * may not be live.  Start the rollout again. */
        for (hi = apr_hash_first(p, expected); hi; hi = apr_hash_next(hi)) {
            apr_hash_set(d->pending, apr_pstrdup(d->pool,
                                                 apr_hash_this_key(hi)),
                         APR_HASH_KEY_STRING,
                         apr_pstrdup(d->pool, apr_hash_this_val(hi)));
        }
        d->change_set++;
        json_object_set_new(d->state, "restart_pending", json_true());
        apr_file_remove(csy_path(d, p, "rollout.json"), p);
        /* The predecessor's lease, kept alive until the load balancer
         * has this host back (no rollout.json to update meanwhile). */
        csy_lease_hold(d, lease, NULL, 1);
        csy_back_in_rotation(d, p);
        csy_lease_drop(d, p);
        return;
    }
    restarting = strcmp(phase, "restarting") == 0;
    if (restarting) {
        csy_set_state(d, "probing");
        csy_write_json(d, p, "state.json", d->state);
    }
    else {
        expected = apr_hash_make(p);    /* does it answer at all? */
    }
    /* Renewed at once (the restart may have taken a while), then every
     * third of its TTL.  If another host holds the slot now, the probe
     * goes on meanwhile (this host is out of rotation already: waiting
     * would only keep it out longer); a restart waits for the lease. */
    csy_lease_hold(d, lease, rollout, 1);
    csy_lease_tick(d);
    deadline = apr_time_now() + apr_time_from_sec(d->conf->restart_timeout);
    apr_pool_create(&pp, p);
    while (csy_running() && apr_time_now() < deadline) {
        apr_time_t now = apr_time_now();

        apr_pool_clear(pp);
        apr_hash_clear(mismatched);
        rc = csy_probe(d, pp, expected, mismatched, &why);
        if (rc == CSY_PROBE_OK) {
            break;
        }
        if (rc == CSY_PROBE_MISMATCH) {
            /* It answers: a wrong serial is a failure once it lasts. */
            if (!first_mismatch) {
                first_mismatch = now;
            }
            else if (now - first_mismatch
                     >= apr_time_from_sec(CSY_PROBE_CONFIRM)) {
                break;
            }
        }
        else if (!told) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, CYLOGNO(00022)
                         "probe: the restarted listener does not answer "
                         "yet (%s); trying again for up to %ds", why,
                         d->conf->restart_timeout);
            told = 1;
        }
        csy_idle(d, 1);
    }
    if (!csy_running()) {
        return;
    }
    if (rc == CSY_PROBE_OK) {
        if (restarting) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00014)
                         "rollout complete: %u new certificates served",
                         apr_hash_count(expected));
            csy_set_state(d, "idle");
        }
        else {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, d->s, CYLOGNO(00015)
                         "rollout failed and was rolled back: %s",
                         json_string_value(json_object_get(rollout,
                                                           "failure")));
            csy_set_state(d, "rolled-back");
            json_object_set(d->state, "last_rollout_failure",
                            json_object_get(rollout, "failure"));
        }
        json_object_set_new(d->state, "last_restart",
                            json_object_get(rollout, "restart_at")
                            ? json_incref(json_object_get(rollout,
                                                          "restart_at"))
                            : json_integer(0));
        d->rollout = NULL;  /* a lease renewed meanwhile must not write it */
        apr_file_remove(csy_path(d, p, "rollout.json"), p);
        if (!d->lease) {
            d->lease_wanted = 0;    /* lost meanwhile: no slot to take now */
        }
        csy_back_in_rotation(d, p);
        csy_lease_drop(d, p);
        return;
    }

    if (!restarting) {
        /* Even the rolled-back generation does not answer: no restart in
         * a loop.  The host stays out of rotation, loudly (state, log,
         * report); the lease is released so that the pool goes on. */
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, d->s, CYLOGNO(00016)
                     "after the rollback the listener still fails its "
                     "probe (%s): staying drained; lease released", why);
        csy_set_state(d, "failed");
        json_object_set_new(d->state, "last_rollout_failure",
                            json_string(apr_psprintf(p, "%s; after the "
                                "rollback: %s", json_string_value(
                                    json_object_get(rollout, "failure")),
                                why)));
        csy_write_json(d, p, "state.json", d->state);
        apr_file_remove(csy_path(d, p, "rollout.json"), p);
        csy_report(d->client, p, json_integer_value(json_object_get(
                       rollout, "cursor")), "failed", d->failures);
        csy_lease_drop(d, p);
        return;
    }
    if (rc == CSY_PROBE_MISMATCH) {
        /* Only what is served wrong goes back (and into quarantine): the
         * other new certificates were presented as they should be. */
        back = mismatched;
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, d->s, CYLOGNO(00017)
                     "probe after restart failed (%s): rolling the store "
                     "back for %u of the %u new certificates", why,
                     apr_hash_count(back), apr_hash_count(expected));
    }
    else {
        /* Never answered: nothing can be told apart, all of it goes. */
        back = expected;
        why = apr_psprintf(p, "the restarted generation did not answer "
                           "within CertSyncRestartTimeout (%ds): %s",
                           d->conf->restart_timeout, why);
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, d->s, CYLOGNO(00025)
                     "%s; rolling the store back for the %u new "
                     "certificates", why, apr_hash_count(back));
    }
    for (hi = apr_hash_first(p, back); hi; hi = apr_hash_next(hi)) {
        const char *domain = apr_hash_this_key(hi);
        apr_hash_set(d->quarantine, apr_pstrdup(d->pool, domain),
                     APR_HASH_KEY_STRING,
                     apr_pstrdup(d->pool, apr_hash_this_val(hi)));
        if (csy_store_rollback(d->store, p, domain) != APR_SUCCESS) {
            /* A new domain: nothing to go back to; leave it out. */
            apr_array_header_t *served;
            int i;
            if (csy_store_manifest_read(&served, d->store, p)
                == APR_SUCCESS) {
                apr_array_header_t *keep = apr_array_make(
                    p, served->nelts, sizeof(const char *));
                for (i = 0; i < served->nelts; i++) {
                    const char *x = APR_ARRAY_IDX(served, i, const char *);
                    if (strcmp(x, domain) != 0) {
                        APR_ARRAY_PUSH(keep, const char *) = x;
                    }
                }
                csy_store_manifest_write(d->store, p, keep);
            }
        }
    }
    csy_write_json(d, p, "quarantine.json", csy_hash_json(p, d->quarantine));
    json_object_set_new(rollout, "failure", json_string(why));
    json_object_set_new(rollout, "rolled_back", csy_hash_json(p, back));
    csy_count(d->state, "rollbacks", 1);
    /* Another restart: only with the lease. */
    if (!csy_lease_wait(d)) {
        return;
    }
    csy_restart(d, p, rollout, "rolling-back");
}

/*
 * The first half of a rollout: lease, drain, restart.  Returns the seconds
 * to wait before the next cycle when the rollout has to wait.
 */
static int csy_rollout(csy_daemon_t *d, apr_pool_t *p, long long cursor)
{
    const csy_conf_t *conf = d->conf;
    apr_int64_t last = json_integer_value(json_object_get(d->state,
                                                          "last_restart"));
    apr_int64_t now = apr_time_sec(apr_time_now());
    const char *lease, *err, *output;
    json_t *rollout;
    long retry;
    apr_status_t rv;
    int code;

    if (last && now - last < conf->min_restart_interval) {
        csy_set_state(d, "restart-pending");
        return (int)(conf->min_restart_interval - (now - last));
    }
    /* Once per change set, not per lease retry (tens of seconds with
     * 10,000 virtual hosts); a failed test runs again each cycle, so that
     * a fixed configuration is seen. */
    if (d->tested_set != d->change_set) {
        if ((code = csy_configtest(p, &output)) != 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00007)
                         "configuration test failed (exit %d): not "
                         "restarting; what is served stays served: %s",
                         code, output);
            csy_set_state(d, "configtest-failed");
            csy_count(d->state, "configtest_failures", 1);
            return 0;
        }
        d->tested_set = d->change_set;
    }
    rv = csy_lease_acquire(&lease, &retry, d->client, p, conf->lease_ttl,
                           &err);
    if (rv == APR_EAGAIN) {
        /* Retry-After is when the held lease would expire; the holder
         * usually releases it much sooner, so ask again each interval. */
        csy_set_state(d, "waiting-for-lease");
        return (int)(retry < 1 ? 1 : retry < conf->interval ? retry
                                                           : conf->interval);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00018)
                     "no restart lease: %s; trying again later", err);
        csy_set_state(d, "waiting-for-lease");
        return 0;
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00006)
                 "lease %s: draining for %ds, then a graceful restart to "
                 "serve %u new certificates", lease, conf->drain_time,
                 apr_hash_count(d->pending));
    rollout = json_pack("{s:s, s:s, s:o, s:I}", "phase", "draining",
                        "lease", lease, "expected",
                        csy_hash_json(p, d->pending), "cursor",
                        (json_int_t)cursor);
    json_object_set_new(rollout, "agent_used", csy_agent_asked(d));
    csy_write_json(d, p, "rollout.json", rollout);
    csy_lease_hold(d, lease, rollout, 0);
    csy_set_state(d, "draining");
    csy_set_health(d, p, "drain");
    csy_report(d->client, p, cursor, "draining", d->failures);
    csy_idle(d, conf->drain_time);
    if (!csy_running()) {
        d->rollout = NULL;
        json_decref(rollout);
        return 0;
    }
    if (!d->lease || apr_time_now() - d->lease_ok
                     >= apr_time_from_sec(conf->lease_ttl)) {
        /* Taken by another host, or not renewed for a whole TTL: no
         * restart without it.  Back in rotation; the rollout waits. */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00024)
                     "restart lease lost while draining: ready again, the "
                     "restart stays pending");
        apr_file_remove(csy_path(d, p, "rollout.json"), p);
        csy_set_state(d, "waiting-for-lease");
        csy_set_health(d, p, "ready");
        csy_lease_drop(d, p);
        json_decref(rollout);
        return conf->interval;
    }
    csy_report(d->client, p, cursor, "restarting", d->failures);
    apr_hash_clear(d->pending);
    csy_restart(d, p, rollout, "restarting");
    d->rollout = NULL;
    json_decref(rollout);
    return 0;
}

/*
 * Dynamic mode: what the cycle installed or removed goes live now.  Prune
 * first (a deleted domain's directory goes), then bump each changed
 * domain's generation slot: a worker that looks the name up after the
 * bump finds the store already in its new state.
 */
static void csy_dyn_activate(csy_daemon_t *d, apr_pool_t *p,
                             const csy_result_t *res)
{
    apr_hash_index_t *hi;
    apr_status_t rv = APR_SUCCESS;
    int whole = 0;

    /* Only what changed: a pass over 100,000 domains per change would
     * cost seconds.  A domain both removed and made current in one cycle
     * (deleted, then added again, or the other way round) leaves the
     * manifest to decide: prune the whole store then. */
    for (hi = apr_hash_first(p, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        const char *name = apr_hash_this_key(hi);
        whole |= apr_hash_get(res->made_current, name,
                              APR_HASH_KEY_STRING) != NULL;
    }
    if (whole) {
        rv = csy_store_prune(d->store, p, NULL);
    }
    for (hi = apr_hash_first(p, res->removed_set); hi && !whole;
         hi = apr_hash_next(hi)) {
        apr_status_t rv2 = csy_store_remove(d->store, p,
                                            apr_hash_this_key(hi));
        if (rv2 != APR_SUCCESS && rv == APR_SUCCESS) {
            rv = rv2;           /* go on with the others */
        }
    }
    for (hi = apr_hash_first(p, res->made_current); hi && !whole;
         hi = apr_hash_next(hi)) {
        csy_store_prune(d->store, p, apr_hash_this_key(hi));
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00027)
                     "dynamic: cannot prune the store %s",
                     d->conf->store_dir);
    }
    for (hi = apr_hash_first(p, res->made_current); hi;
         hi = apr_hash_next(hi)) {
        csy_gen_bump(csy_shared, apr_hash_this_key(hi));
    }
    for (hi = apr_hash_first(p, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        csy_gen_bump(csy_shared, apr_hash_this_key(hi));
    }
    csy_count(d->state, "activations", 1);
    json_object_set_new(d->state, "last_activation",
                        json_integer(apr_time_sec(apr_time_now())));
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00028)
                 "dynamic: %d installed and %d removed are live, no "
                 "restart", (int)apr_hash_count(res->made_current),
                 (int)apr_hash_count(res->removed_set));
}

/* Versions installed before the daemon wrote key.seal (an upgraded
 * store) get one, CSY_SEAL_BATCH per cycle, so that the workers' cache
 * misses stop opening key.cms; the activation of new certificates is not
 * held up by more than a batch. */
#define CSY_SEAL_BATCH 500

static void csy_backfill_seals(csy_daemon_t *d, apr_pool_t *p)
{
    int n = csy_seal_backfill(&d->cfg, d->store, p, &d->seal_pos,
                              CSY_SEAL_BATCH, &d->seals_done);

    d->seals_written += n;
    if (n > 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, CYLOGNO(00037)
                     "key.seal written for %d versions installed without "
                     "one (%d domains of the manifest checked so far)", n,
                     d->seal_pos);
    }
    if (d->seals_done && d->seals_written > 0) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00038)
                     "every current version has its key.seal (%ld "
                     "written)", d->seals_written);
    }
}

static void csy_daemon_main(server_rec *s, const csy_conf_t *conf)
{
    csy_daemon_t d;
    apr_pool_t *pool, *cycle, *keep;
    apr_file_t *lock;
    apr_hash_t *failures;
    json_t *j;
    apr_status_t rv;
    int backoff = 0;
    char host[256];

    apr_pool_create(&pool, NULL);
    apr_pool_create(&keep, pool);
    apr_pool_create(&cycle, pool);
    memset(&d, 0, sizeof(d));
    d.s = s;
    d.conf = conf;
    d.pool = pool;
    /* Until the daemon knows whether a rollout is under way (rollout.json):
     * the agent thread may answer before that. */
    d.health = "drain";
    apr_pool_create(&d.tick, pool);
    d.change_set = 1;   /* the restart pending from a previous daemon */
    /* The parent's handlers are not ours. */
    apr_signal(SIGTERM, csy_on_term);
    apr_signal(SIGINT, csy_on_term);
    apr_signal(SIGHUP, SIG_IGN);
    apr_signal(SIGUSR1, SIG_IGN);
    apr_signal(SIGWINCH, SIG_IGN);
    apr_signal(SIGPIPE, SIG_IGN);
    apr_signal(SIGCHLD, SIG_DFL);

    if (gethostname(host, sizeof(host)) != 0) {
        apr_cpystrn(host, "unknown", sizeof(host));
    }
    d.cfg.url = conf->url;
    d.cfg.client_cert = conf->client_cert;
    d.cfg.client_key = conf->client_key;
    d.cfg.ca_file = conf->ca_file;
    d.cfg.wrap_certs = conf->wrap_certs;
    d.cfg.wrap_keys = conf->wrap_keys;
    d.cfg.seal_keys = conf->dynamic == 1
                      ? cs_seal_keys_derive(pool, conf->wrap_keys) : NULL;
    d.cfg.batch_size = conf->batch_size ? conf->batch_size : 100;
    d.cfg.keep_envelopes = conf->dynamic == 1;
    d.cfg.timeout = 30;
    d.cfg.pool_name = conf->pool_name ? conf->pool_name : "default";
    d.cfg.host_name = conf->host_name ? conf->host_name
                                      : apr_pstrdup(pool, host);
    d.cfg.log = csy_daemon_log;
    d.cfg.log_baton = &d;

    if ((rv = csy_store_open(&d.store, pool, conf->store_dir))
        || (rv = csy_client_create(&d.client, pool, &d.cfg))) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CYLOGNO(00002)
                     "sync daemon: cannot open the store %s or a client",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    if (conf->dynamic == 1 && geteuid() == 0) {
        /* The workers read the sealed keys as httpd's Group. */
        csy_store_set_envelope_group(d.store, (long)ap_unixd_config.group_id);
    }
    /* One writer at a time: the previous generation's daemon may still be
     * finishing a cycle after its SIGTERM.  The kernel drops the lock when
     * a daemon exits, however it exits. */
    rv = apr_file_open(&lock, csy_path(&d, pool, ".lock"),
                       APR_FOPEN_WRITE | APR_FOPEN_CREATE,
                       APR_FPROT_UREAD | APR_FPROT_UWRITE, pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_lock(lock, APR_FLOCK_EXCLUSIVE);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CYLOGNO(00012)
                     "sync daemon: cannot lock the store %s",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    /* This generation's configuration was built from the manifest as it
     * is now: versions and deleted domains it does not use can go. */
    if ((rv = csy_store_prune(d.store, cycle, NULL)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, CYLOGNO(00011)
                     "sync daemon: cannot prune the store %s",
                     conf->store_dir);
    }
    if (conf->dynamic == 1 && csy_shared) {
        /* A daemon before this one may have died between a cycle and its
         * activation: let the workers check everything they cache. */
        csy_gen_bump_all(csy_shared);
    }

    /* What the previous generation knew. */
    d.state = csy_read_json(&d, cycle, "state.json");
    if (!json_is_object(d.state)) {
        json_decref(d.state);
        d.state = json_object();
    }
    if (!json_is_object(json_object_get(d.state, "counters"))) {
        json_object_set_new(d.state, "counters", json_object());
    }
    /* Until the first cycle says more (a rollback stays shown). */
    if (!json_is_string(json_object_get(d.state, "state"))) {
        csy_set_state(&d, "starting");
    }
    json_object_set_new(d.state, "host", json_string(d.cfg.host_name));
    json_object_set_new(d.state, "pool", json_string(d.cfg.pool_name));
    json_object_set_new(d.state, "service", json_string(d.cfg.url));
    j = csy_read_json(&d, cycle, "quarantine.json");
    d.quarantine = csy_json_hash(pool, j);
    json_decref(j);
    d.cfg.quarantine = d.quarantine;
    d.pending = apr_hash_make(pool);
    /* Skipped bundles stay listed, reported and retried across daemons:
     * a daemon lives only until the next restart, and the cursor has
     * already moved past them. */
    failures = csy_json_hash(keep, json_object_get(d.state, "failures"));
    d.failures = failures;
    csy_agent_open(&d);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00003)
                 "sync daemon started (pid %" APR_PID_T_FMT "): %s every "
                 "%ds, store %s", getpid(), d.cfg.url, conf->interval,
                 conf->store_dir);

    j = csy_read_json(&d, cycle, "rollout.json");
    if (json_is_object(j) && conf->dynamic == 1) {
        /* Left by vhost mode: nothing to restart for any more. */
        apr_file_remove(csy_path(&d, cycle, "rollout.json"), cycle);
        csy_set_health(&d, cycle, "ready");
    }
    else if (json_is_object(j)) {
        csy_set_health(&d, cycle, "drain");
        csy_resume(&d, cycle, j);
        d.rollout = NULL;
    }
    else {
        csy_set_health(&d, cycle, "ready");
    }
    json_decref(j);

    while (csy_running()) {
        csy_result_t res;
        apr_hash_index_t *hi;
        const char *state;
        apr_time_t now = apr_time_now();
        int wait = 0;

        apr_pool_clear(cycle);
        rv = csy_sync_once(&res, d.client, d.store, failures, cycle);
        json_object_set_new(d.state, "last_sync",
                            json_integer(apr_time_sec(now)));
        json_object_set_new(d.state, "cursor",
                            json_integer(res.cursor_after));
        json_object_set_new(d.state, "failures",
                            csy_hash_json(cycle, failures));
        csy_count(d.state, "cycles", 1);
        csy_count(d.state, "installed", res.installed);
        csy_count(d.state, "removed", res.removed);
        for (hi = apr_hash_first(cycle, res.made_current);
             hi && conf->dynamic != 1; hi = apr_hash_next(hi)) {
            apr_hash_set(d.pending, apr_pstrdup(pool, apr_hash_this_key(hi)),
                         APR_HASH_KEY_STRING,
                         apr_pstrdup(pool, apr_hash_this_val(hi)));
            d.change_set++;
        }
        if (rv) {
            backoff = backoff ? backoff * 2 : conf->interval;
            if (backoff > CSY_MAX_BACKOFF) {
                backoff = CSY_MAX_BACKOFF;
            }
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, CYLOGNO(00004)
                         "sync failed: %s; nothing served changed; next try "
                         "in about %ds", res.error, backoff);
            json_object_set_new(d.state, "last_error",
                                json_string(res.error));
            csy_set_state(&d, "backoff");
            csy_count(d.state, "errors", 1);
            wait = backoff;
        }
        else {
            backoff = 0;
            json_object_set_new(d.state, "last_success",
                                json_integer(apr_time_sec(now)));
            json_object_set_new(d.state, "last_error", json_null());
            /* A rollback stays visible until the next rollout ends; a
             * host left drained after one (CY00016) until its listener
             * answers again. */
            state = json_string_value(json_object_get(d.state, "state"));
            if (state && strcmp(state, "failed") == 0) {
                apr_hash_t *none = apr_hash_make(cycle);
                const char *why;
                if (csy_probe(&d, cycle, none, none, &why)
                    == CSY_PROBE_OK) {
                    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                                 CYLOGNO(00026) "the listener answers "
                                 "again: back in rotation");
                    csy_set_state(&d, "rolled-back");
                    csy_set_health(&d, cycle, "ready");
                }
            }
            else if (!state || strcmp(state, "rolled-back") != 0) {
                csy_set_state(&d, "idle");
            }
            if (res.changed) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, CYLOGNO(00005)
                             "sync to seq %" APR_INT64_T_FMT ": %d "
                             "installed, %d removed, %d failed",
                             (apr_int64_t)res.cursor_after, res.installed,
                             res.removed, (int)apr_hash_count(failures));
            }
            if (res.changed && conf->dynamic == 1) {
                csy_dyn_activate(&d, cycle, &res);
            }
            else if (res.changed) {
                json_object_set_new(d.state, "restart_pending",
                                    json_true());
                /* Durable before the rollout starts: a daemon that dies
                 * before rollout.json is written (in the configuration
                 * test, say) leaves the next one a restart to make. */
                csy_write_json(&d, cycle, "state.json", d.state);
            }
            csy_report(d.client, cycle, res.cursor_after,
                       json_is_true(json_object_get(d.state,
                                                    "restart_pending"))
                       ? "restart-pending" : "ready", failures);
            if (conf->dynamic == 1 && !d.seals_done) {
                csy_backfill_seals(&d, cycle);
            }
        }
        if (!rv && json_is_true(json_object_get(d.state, "restart_pending"))) {
            if (conf->restart == 0) {
                csy_set_state(&d, "restart-pending");
            }
            else {
                /* Cleared first: a restart ends this daemon. */
                json_object_set_new(d.state, "restart_pending", json_false());
                wait = csy_rollout(&d, cycle, res.cursor_after);
                if (wait || !strcmp(json_string_value(json_object_get(
                                        d.state, "state")),
                                    "configtest-failed")) {
                    json_object_set_new(d.state, "restart_pending",
                                        json_true());
                }
            }
        }
        if (!wait) {
            wait = conf->interval;
        }
        if (conf->jitter > 0) {
            unsigned char r[2];
            apr_generate_random_bytes(r, sizeof(r));
            wait += (int)(((r[0] << 8) | r[1]) % (conf->jitter + 1));
        }
        json_object_set_new(d.state, "next_sync",
                            json_integer(apr_time_sec(now) + wait));
        csy_write_json(&d, cycle, "state.json", d.state);
        csy_idle(&d, wait);
    }
    json_decref(d.state);
    csy_stop = 1;       /* the agent thread must not outlive the pool */
    apr_pool_destroy(pool);
    exit(0);
}

static apr_status_t csy_kill_daemon(void *data)
{
    if (csy_daemon_pid > 0) {
        kill(csy_daemon_pid, SIGTERM);
        csy_daemon_pid = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t csy_start_daemon(server_rec *s, apr_pool_t *pconf);

/* Restarts the daemon if it died (and httpd is not stopping). */
static void csy_maintenance(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;
    server_rec *s = ap_server_conf;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(data);
        if (csy_daemon_pid != proc->pid) {
            break;      /* an older generation's daemon */
        }
        csy_daemon_pid = 0;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00008)
                     "sync daemon %" APR_PID_T_FMT " died; starting it "
                     "again", proc->pid);
        csy_start_daemon(s, NULL);
        break;
    case APR_OC_REASON_RESTART:
        /* The pconf cleanup stops it; unregistering calls us again with
         * APR_OC_REASON_UNREGISTER, which has nothing left to do. */
        apr_proc_other_child_unregister(data);
        break;
    default:
        break;
    }
}

static apr_status_t csy_start_daemon(server_rec *s, apr_pool_t *pconf)
{
    apr_proc_t *proc;
    apr_status_t rv;

    if (!pconf) {
        pconf = s->process->pconf;
    }
    proc = apr_pcalloc(pconf, sizeof(*proc));
    csy_parent_pid = getpid();
    rv = apr_proc_fork(proc, pconf);
    if (rv == APR_INCHILD) {
        /* Not a worker: no listening sockets, no children to reap. */
        ap_close_listeners();
        csy_daemon_main(s, csy_conf(s));
        exit(0);    /* not reached */
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CYLOGNO(00009)
                     "cannot fork the sync daemon");
        return rv;
    }
    csy_daemon_pid = proc->pid;
    apr_proc_other_child_register(proc, csy_maintenance, proc, NULL, pconf);
    return APR_SUCCESS;
}

/* Dynamic mode's settings, checked before anything starts. */
static int csy_dyn_check(apr_pool_t *pconf, server_rec *s)
{
    csy_conf_t *conf = csy_conf(s);
    server_rec *v;
    int catch_alls = 0;

    for (v = s; v; v = v->next) {
        catch_alls += csy_conf(v)->catch_all == 1;
    }
    if (conf->dynamic != 1) {
        if (catch_alls) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                         CYLOGNO(00029) "CertSyncCatchAll On needs "
                         "CertSyncActivation dynamic");
            return !OK;
        }
        return OK;
    }
    if (!conf->cache_size) {
        conf->cache_size = CSY_DEFAULT_CACHE_SIZE;
    }
    if (conf->refuse_unknown < 0) {
        conf->refuse_unknown = 0;
    }
    if (!catch_alls) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00030)
                     "CertSyncActivation dynamic, but no virtual host has "
                     "CertSyncCatchAll On: only names with their own "
                     "virtual host are served");
    }
    return OK;
}

static int csy_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    csy_conf_t *conf = csy_conf(s);
    apr_shm_t *shm;
    apr_status_t rv;

    csy_main_conf = conf;
    csy_shared = NULL;          /* the last generation's went with pconf */
    if (csy_dyn_check(pconf, s) != OK) {
        return !OK;
    }
    if (!conf->url) {
        return OK;
    }
    if (!conf->store_dir || !conf->client_cert || !conf->wrap_keys) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     CYLOGNO(00010) "CertSyncServiceURL needs "
                     "CertSyncStoreDir, CertSyncClientCertificate and at "
                     "least one CertSyncWrappingKey");
        return !OK;
    }
    if (!conf->interval) {
        conf->interval = CSY_DEFAULT_INTERVAL;
    }
    if (conf->jitter < 0) {
        conf->jitter = conf->interval / 5;
    }
    if (conf->drain_time < 0) {
        conf->drain_time = 5;
    }
    if (!conf->lease_ttl) {
        conf->lease_ttl = 300;
    }
    if (conf->min_restart_interval < 0) {
        conf->min_restart_interval = 0;
    }
    if (!conf->restart_timeout) {
        conf->restart_timeout = 120;
    }
    /* The first pass only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    cs_http_global_init();
    if (conf->dynamic == 1) {
        /* Anonymous: the daemon and the workers inherit the mapping. */
        if ((rv = apr_shm_create(&shm, sizeof(csy_shared_t), NULL, pconf))) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                         CYLOGNO(00031) "dynamic: cannot create shared "
                         "memory (%" APR_SIZE_T_FMT " bytes)",
                         sizeof(csy_shared_t));
            return !OK;
        }
        csy_shared = apr_shm_baseaddr_get(shm);
        memset(csy_shared, 0, sizeof(*csy_shared));
    }
    if (csy_start_daemon(s, pconf) != APR_SUCCESS) {
        return !OK;
    }
    apr_pool_cleanup_register(pconf, NULL, csy_kill_daemon,
                              apr_pool_cleanup_null);
    return OK;
}

/* ------------------------------------------------------------------ */
/* Dynamic activation: the certificate for each handshake              */
/* ------------------------------------------------------------------ */

/* mod_ssl's optional hook; Debian does not ship mod_ssl_openssl.h. */
typedef int ssl_HOOK_init_server_t(server_rec *s, apr_pool_t *p,
                                   int is_proxy, SSL_CTX *ctx);

static void csy_child_init(apr_pool_t *pchild, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    apr_status_t rv;

    if (conf->dynamic != 1 || !csy_shared) {
        return;
    }
    rv = csy_cache_create(&csy_cache, pchild, (unsigned)conf->cache_size,
                          csy_shared, conf->store_dir, conf->wrap_certs,
                          conf->wrap_keys);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, CYLOGNO(00032)
                     "dynamic: cannot create the certificate cache; this "
                     "process serves only default certificates");
    }
}

/* A name the store does not serve (or no SNI): the virtual host's own
 * certificate, or no handshake. */
static int csy_unknown(SSL *ssl, server_rec *s, const char *name)
{
    int refuse = csy_conf(s)->refuse_unknown;
    conn_rec *c = SSL_get_app_data(ssl);

    if (refuse < 0) {
        refuse = csy_main_conf ? csy_main_conf->refuse_unknown : 0;
    }
    if (refuse == 1) {
        if (c) {
            ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, CYLOGNO(00033)
                          "dynamic: no certificate for %s; handshake "
                          "refused (CertSyncUnknownName refuse)",
                          name ? name : "a client without SNI");
        }
        return 0;
    }
    return 1;
}

static int csy_cert_cb(SSL *ssl, void *arg)
{
    server_rec *s = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    conn_rec *c = SSL_get_app_data(ssl);
    csy_bundle_t *b;
    char name[254], err[512];
    apr_status_t rv;
    int ok;

    if (!csy_cache) {
        return 1;       /* not a worker (or no cache): default */
    }
    if (!sni || !csy_sni_name(name, sni)) {
        return csy_unknown(ssl, s, sni);
    }
    rv = csy_cache_lookup(&b, csy_cache, name, err, sizeof(err));
    if (err[0] && c) {
        ap_log_cerror(APLOG_MARK, APLOG_WARNING, rv, c, CYLOGNO(00034)
                      "dynamic: %s%s", err, rv == APR_SUCCESS
                      ? "; the version loaded before keeps serving" : "");
    }
    if (rv != APR_SUCCESS) {
        return csy_unknown(ssl, s, name);
    }
    ok = csy_bundle_use(ssl, b);
    csy_bundle_release(b);
    if (!ok && c) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, c, CYLOGNO(00035)
                      "dynamic: OpenSSL refused the certificate of %s",
                      name);
    }
    return ok;
}

static int csy_ssl_init_server(server_rec *s, apr_pool_t *p, int is_proxy,
                               SSL_CTX *ctx)
{
    if (is_proxy || csy_conf(s)->catch_all != 1 || !csy_main_conf
        || csy_main_conf->dynamic != 1) {
        return DECLINED;
    }
    SSL_CTX_set_cert_cb(ctx, csy_cert_cb, s);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00036)
                 "dynamic: %s:%d serves every domain of the store by SNI",
                 s->server_hostname, s->addrs ? s->addrs->host_port : 0);
    return OK;
}

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

/* The store's settings: the main server's (a virtual host with a certsync
 * directive of its own, CertSyncCatchAll say, has no merged copy). */
static const csy_conf_t *csy_store_conf(request_rec *r)
{
    return csy_main_conf ? csy_main_conf : csy_conf(r->server);
}

static json_t *csy_read_state(request_rec *r, const csy_conf_t *conf)
{
    json_error_t jerr;

    if (!conf->store_dir) {
        return NULL;
    }
    return json_load_file(apr_pstrcat(r->pool, conf->store_dir,
                                      "/state.json", NULL), 0, &jerr);
}

static apr_int64_t csy_int_of(json_t *state, const char *key)
{
    return (apr_int64_t)json_integer_value(json_object_get(state, key));
}

static void csy_metrics(request_rec *r, json_t *state)
{
    json_t *counters = json_object_get(state, "counters"), *v;
    const char *k;

    ap_set_content_type(r, "text/plain; version=0.0.4");
    ap_rprintf(r, "# HELP certsync_cursor Change-feed sequence applied.\n"
               "# TYPE certsync_cursor gauge\ncertsync_cursor %"
               APR_INT64_T_FMT "\n", csy_int_of(state, "cursor"));
    ap_rprintf(r, "# HELP certsync_last_success_seconds Time of the last "
               "successful sync.\n# TYPE certsync_last_success_seconds "
               "gauge\ncertsync_last_success_seconds %" APR_INT64_T_FMT
               "\n", csy_int_of(state, "last_success"));
    ap_rprintf(r, "# HELP certsync_failed_domains Bundles skipped.\n"
               "# TYPE certsync_failed_domains gauge\n"
               "certsync_failed_domains %lu\n",
               (unsigned long)json_object_size(json_object_get(state,
                                                               "failures")));
    json_object_foreach(counters, k, v) {
        ap_rprintf(r, "# TYPE certsync_%s_total counter\ncertsync_%s_total %"
                   APR_INT64_T_FMT "\n", k, k, (apr_int64_t)json_integer_value(v));
    }
    json_object_foreach(json_object_get(state, "dynamic"), k, v) {
        if (json_is_integer(v) && strcmp(k, "pid")) {
            ap_rprintf(r, "# TYPE certsync_dynamic_%s gauge\n"
                       "certsync_dynamic_%s %" APR_INT64_T_FMT "\n", k, k,
                       (apr_int64_t)json_integer_value(v));
        }
    }
}

static void csy_html(request_rec *r, json_t *state)
{
    json_t *v;
    const char *k;

    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_rputs("<!DOCTYPE html><html><head><title>certsync</title></head>"
             "<body><h1>certsync</h1><table>\n", r);
    json_object_foreach(state, k, v) {
        char *text;
        if (json_is_object(v)) {
            continue;
        }
        text = json_dumps(v, JSON_ENCODE_ANY);
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k),
                   ap_escape_html(r->pool, text ? text : ""));
        free(text);
    }
    ap_rputs("</table><h2>Failures</h2><table>\n", r);
    json_object_foreach(json_object_get(state, "failures"), k, v) {
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k),
                   ap_escape_html(r->pool, json_string_value(v)));
    }
    ap_rputs("</table></body></html>\n", r);
}

/* For the load balancer's httpchk: 200 "ready", or 503 "drain" while this
 * host is about to restart.  (agent-check: CertSyncAgent.) */
static int csy_health_handler(request_rec *r)
{
    const csy_conf_t *conf = csy_store_conf(r);
    apr_file_t *f;
    char buf[16] = "";
    apr_size_t n = sizeof(buf) - 1;
    int drain = 0;

    if (!r->handler || strcmp(r->handler, CSY_HEALTH_HANDLER)) {
        return DECLINED;
    }
    if (conf->store_dir
        && apr_file_open(&f, apr_pstrcat(r->pool, conf->store_dir,
                                         "/health", NULL),
                         APR_FOPEN_READ, 0, r->pool) == APR_SUCCESS) {
        apr_file_read(f, buf, &n);
        apr_file_close(f);
        drain = strncmp(buf, "drain", 5) == 0;
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "text/plain");
    r->status = drain ? HTTP_SERVICE_UNAVAILABLE : HTTP_OK;
    ap_rputs(drain ? "drain\n" : "ready\n", r);
    return OK;
}

/*
 * Dynamic mode's part of the status: the cache counters of every process
 * (shared memory), this process's cache, and what a domain is served
 * with: ?domain=NAME for one, ?domains for every domain of the manifest.
 */
static void csy_dyn_status(request_rec *r, json_t *state)
{
    const csy_conf_t *conf = csy_main_conf;
    csy_cache_info_t info = { 0, 0 };
    csy_store_t *store;
    apr_array_header_t *domains = NULL;
    json_t *dyn, *served;
    const char *one = NULL;
    char name[254], serial[65];
    int i;

    if (!csy_main_conf || csy_main_conf->dynamic != 1 || !csy_shared) {
        return;
    }
    if (csy_cache) {
        csy_cache_info(csy_cache, &info);
    }
#define CSY_SHARED(f) json_integer((json_int_t)__atomic_load_n( \
                          &csy_shared->f, __ATOMIC_RELAXED))
    dyn = json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                    "s:o}",
                    "pid", (int)getpid(), "cache_capacity", info.capacity,
                    "cache_entries", info.entries,
                    "hits", CSY_SHARED(hits), "misses", CSY_SHARED(misses),
                    "envelopes", CSY_SHARED(envelopes),
                    "revalidated", CSY_SHARED(revalidated),
                    "evictions", CSY_SHARED(evictions),
                    "unknown", CSY_SHARED(unknown),
                    "errors", CSY_SHARED(errors),
                    "changes", CSY_SHARED(changes));
#undef CSY_SHARED
    if (r->args && !strncmp(r->args, "domain=", 7)) {
        one = r->args + 7;
    }
    if ((one || (r->args && !strcmp(r->args, "domains")))
        && csy_store_open(&store, r->pool, conf->store_dir) == APR_SUCCESS) {
        served = json_object();
        if (!one) {
            csy_store_manifest_read(&domains, store, r->pool);
        }
        for (i = 0; one ? i < 1 : domains && i < domains->nelts; i++) {
            const char *d = one ? one : APR_ARRAY_IDX(domains, i,
                                                      const char *);
            const char *cur;
            if (!csy_sni_name(name, d) && strncmp(d, "*.", 2)) {
                continue;
            }
            if (!strncmp(d, "*.", 2)) {
                apr_cpystrn(name, d, sizeof(name));
            }
            cur = csy_store_current(store, r->pool, name);
            json_object_set_new(served, name, json_pack(
                "{s:o, s:o}", "store", cur ? json_string(cur) : json_null(),
                "cached_here", csy_cache && csy_cache_serial(csy_cache, name,
                                                             serial)
                               ? json_string(serial) : json_null()));
        }
        json_object_set_new(dyn, "served", served);
    }
    json_object_set_new(state, "dynamic", dyn);
}

static int csy_status_handler(request_rec *r)
{
    const char *accept;
    json_t *state;
    char *text;

    if (!r->handler || strcmp(r->handler, CSY_STATUS_HANDLER)) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    state = csy_read_state(r, csy_store_conf(r));
    if (!state) {
        /* The daemon has not written anything yet (or is not running). */
        state = json_pack("{s:s, s:s, s:s}", "state", "starting", "health",
                          "ready", "detail", "no status from the sync "
                          "daemon yet (is CertSyncServiceURL set and the "
                          "daemon running?)");
    }
    csy_dyn_status(r, state);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    accept = apr_table_get(r->headers_in, "Accept");
    if (r->args && !strcmp(r->args, "metrics")) {
        csy_metrics(r, state);
    }
    else if (accept && ap_strstr_c(accept, "text/html")) {
        csy_html(r, state);
    }
    else {
        ap_set_content_type(r, "application/json");
        text = json_dumps(state, JSON_INDENT(1) | JSON_SORT_KEYS);
        if (text) {
            ap_rputs(text, r);
            ap_rputc('\n', r);
            free(text);
        }
    }
    json_decref(state);
    return OK;
}

/* A section in mod_status's server-status page. */
static int csy_status_hook(request_rec *r, int flags)
{
    json_t *state = csy_read_state(r, csy_store_conf(r));

    if (!state) {
        return OK;
    }
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "CertSyncCursor: %" APR_INT64_T_FMT "\n"
                   "CertSyncState: %s\nCertSyncFailures: %lu\n",
                   csy_int_of(state, "cursor"),
                   json_string_value(json_object_get(state, "state")),
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")));
    }
    else {
        ap_rprintf(r, "<hr><h2>certsync</h2><dl><dt>state: %s</dt>"
                   "<dt>cursor: %" APR_INT64_T_FMT "</dt>"
                   "<dt>failed domains: %lu</dt></dl>\n",
                   ap_escape_html(r->pool, json_string_value(
                                      json_object_get(state, "state"))),
                   csy_int_of(state, "cursor"),
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")));
    }
    json_decref(state);
    return OK;
}

static void csy_register_hooks(apr_pool_t *p)
{
    /* Before mod_ssl's: its ssl_init_server hook reads our settings. */
    static const char *const before_ssl[] = { "mod_ssl.c", NULL };

    ap_hook_post_config(csy_post_config, NULL, before_ssl, APR_HOOK_MIDDLE);
    ap_hook_child_init(csy_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ssl, init_server, csy_ssl_init_server, NULL, NULL,
                      APR_HOOK_MIDDLE);
    ap_hook_handler(csy_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(csy_health_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, csy_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(certsync) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    csy_create_server_config,
    NULL,
    csy_cmds,
    csy_register_hooks
};
