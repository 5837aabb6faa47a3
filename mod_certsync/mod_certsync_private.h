/*
 * mod_certsync_private.h: what the glue files of mod_certsync share (the
 * configuration type and its defaults, the per-generation globals and the
 * functions one file calls in another; the CYLOGNO tag macro comes from
 * lib/cs_log.h).  Not for the pure code (csy_*.c), which must build
 * without httpd's headers.
 *
 *   mod_certsync.c         module record, hooks, post_config
 *   mod_certsync_config.c  directives, defaults, merge
 *   mod_certsync_daemon.c  the sync daemon process (with _state.c,
 *                          _agent.c, _ops.c: mod_certsync_daemon.h)
 *   mod_certsync_dyn.c     dynamic activation (mod_ssl hooks)
 *   mod_certsync_alpn.c    tls-alpn-01 (acme-tls/1 handshakes)
 *   mod_certsync_status.c  status, health, metrics, mod_status
 */
#ifndef MOD_CERTSYNC_PRIVATE_H
#define MOD_CERTSYNC_PRIVATE_H

#include <sys/types.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "apr_hash.h"
#include "apr_tables.h"

#include <jansson.h>

#include "cs_log.h"
#include "csy_dyn.h"
#include "csy_ondemand.h"

APLOG_USE_MODULE(certsync);

/*
 * Log tags "CYnnnnn": never reused, each used by one message only; take a
 * number above every one in use (t/lint/logtags.pl checks).  The pure rollout and agent code
 * (csy_rollout.c, csy_agent.c) spell their tags the same way and share
 * the numbering; docs/mod_certsync.md lists every tag.  The macro
 * CYLOGNO is lib/cs_log.h's.
 */

/* host:port of CertSyncProbe and CertSyncAgent; host NULL: unset. */
typedef struct csy_addr_t {
    const char *host;
    int port;
} csy_addr_t;

/*
 * One per server_rec.  Every directive except CertSyncCatchAll and
 * CertSyncUnknownName is server-config only (one store per httpd); a
 * virtual host's merged copy therefore carries the main server's values.
 * The markers below say "unset"; csy_conf_effective() replaces them with
 * the defaults, the only place that knows them.
 */
typedef struct csy_conf_t {
    const char *url;                    /* no trailing '/' */
    const char *client_cert;
    const char *client_key;
    const char *ca_file;
    apr_array_header_t *wrap_certs;     /* X509 * */
    apr_array_header_t *wrap_keys;      /* EVP_PKEY * */
    const char *store_dir;
    int interval;                       /* seconds; 0: unset */
    int jitter;                         /* seconds; -1: unset */
    int batch_size;                     /* 0: unset */
    int timeout;                        /* seconds a request; 0: unset */
    int dynamic;                        /* -1: unset */
    int restart;                        /* -1: unset; 1 graceful, 0 off */
    const char *pool_name;              /* NULL: unset */
    const char *host_name;              /* NULL: unset */
    /* Staggered restarts (section 6 of ARCHITECTURE.md). */
    int drain_time;                     /* seconds; -1: unset */
    int lease_ttl;                      /* seconds; 0: unset */
    int min_restart_interval;           /* seconds; -1: unset */
    int restart_timeout;                /* seconds; 0: unset */
    csy_addr_t probe;                   /* 0: unset (NULL host: no probe) */
    csy_addr_t agent;           /* HAProxy agent-check; 0: unset (none) */
    /* Dynamic activation. */
    int cache_size;                     /* bundles per process; 0: unset */
    int catch_all;                      /* per virtual host; -1: unset */
    int refuse_unknown;                 /* per virtual host; -1: unset */
    /* On-demand issuance (dynamic mode; mod_certsync_ondemand.c). */
    int ondemand;                       /* -1: unset */
    int ondemand_wait;                  /* seconds; -1: unset */
    int ondemand_rate;                  /* names per second; 0: unset */
    int ondemand_burst;                 /* 0: unset */
    /* The feed watch (dynamic mode; mod_certsync_watch.c). */
    int watch;                          /* seconds; 0: unset, -1: off */
    /* The pool's TLS session ticket keys (mod_certsync_tkeys.c). */
    int tickets;                        /* -1: unset */
} csy_conf_t;

/* The defaults (csy_conf_effective; the directives' help strings quote
 * them through CSY_STR). */
#define CSY_DEFAULT_INTERVAL        30
/* CertSyncWatch on: the wait asked of CertService (below its default
 * CertServiceChangesWait of 30 s). */
#define CSY_DEFAULT_WATCH           25
#define CSY_DEFAULT_BATCH_SIZE      100
#define CSY_DEFAULT_TIMEOUT         30
#define CSY_DEFAULT_DRAIN_TIME      5
#define CSY_DEFAULT_LEASE_TTL       300
#define CSY_DEFAULT_MIN_RESTART     0
#define CSY_DEFAULT_RESTART_TIMEOUT 120
#define CSY_DEFAULT_CACHE_SIZE      10000
#define CSY_DEFAULT_POOL            "default"
#define CSY_DEFAULT_OD_WAIT         0
#define CSY_DEFAULT_OD_RATE         5
#define CSY_DEFAULT_OD_BURST        20
#define CSY_STR(n)                  APR_STRINGIFY(n)

/* Set by post_config for the generation that runs: the main server's
 * effective configuration, and dynamic mode's generation table the parent
 * maps before it forks (shared by the daemon and every worker). */
extern const csy_conf_t *csy_main_conf;
extern csy_shared_t *csy_shared;
/* The daemon's status (csy_state.h), written by the daemon, read by the
 * status and health pages: made once per httpd process, kept across
 * graceful restarts; NULL without a sync daemon. */
extern struct csy_state_shm_t *csy_status_shm;
/* Each worker process's certificate cache (dynamic mode; child_init). */
extern csy_cache_t *csy_cache;

/* mod_certsync_config.c */
extern const command_rec csy_cmds[];
void *csy_create_server_config(apr_pool_t *p, server_rec *s);
void *csy_merge_server_config(apr_pool_t *p, void *basev, void *addv);
csy_conf_t *csy_conf(server_rec *s);
void csy_conf_effective(csy_conf_t *conf, apr_pool_t *p);

/* mod_certsync_daemon.c: the forked daemon's life; never returns.
 * parent: the httpd parent's pid (signalled for a graceful restart; the
 * daemon stops when it is gone). */
void csy_daemon_main(server_rec *s, const csy_conf_t *conf, pid_t parent)
    __attribute__((noreturn));

/* mod_certsync_dyn.c */
int csy_dyn_check(apr_pool_t *pconf, server_rec *s);
void csy_dyn_register_hooks(apr_pool_t *p);

/* mod_certsync_alpn.c: tls-alpn-01; the challenge certificate chosen
 * for a connection (NULL: not an acme-tls/1 one). */
void csy_alpn_register_hooks(apr_pool_t *p);
struct csy_alpn_cred_t *csy_alpn_conn_cred(const conn_rec *c);
/* mod_certsync_ondemand.c: on-demand issuance (log tags CY00174 ...
 * CY00179, CY00185 ... CY00189).  csy_ondemand: the shared table (NULL
 * unless CertSyncOnDemand on in dynamic mode), made by post_config. */
extern csy_od_t *csy_ondemand;
int csy_od_check(server_rec *s);
int csy_od_post_config(apr_pool_t *pconf, server_rec *s);
/* The certificate callback: name (a store name) is not in the store;
 * records it and, with CertSyncOnDemandWait, waits for it.  1 and *b set
 * (a reference the caller releases) if the store got it meanwhile. */
int csy_od_handshake(csy_bundle_t **b, conn_rec *c, const char *name);
json_t *csy_od_status_json(void);

/* mod_certsync_tkeys.c: the pool's TLS session ticket keys (log tags
 * CY00260 ... CY00269).  csy_tk_table: the keys in shared memory, made by
 * post_config (NULL: CertSyncTicketKeys off, or no CertService); the
 * daemon writes it (csy_tk_sync, each cycle), every TLS virtual host's
 * ticket callback reads it. */
extern struct cs_tk_table_t *csy_tk_table;
int csy_tk_post_config(apr_pool_t *pconf, server_rec *s);
void csy_tk_register_hooks(apr_pool_t *p);
/* The daemon: fetch and open the keys, publish them to the table; what
 * it did goes into state (the status's "ticket_keys"). */
struct csy_client_t;
void csy_tk_sync(server_rec *s, const csy_conf_t *conf,
                 struct csy_client_t *client, json_t *state,
                 apr_pool_t *p);

/* mod_certsync_status.c */
void csy_status_register_hooks(apr_pool_t *p);

#endif /* MOD_CERTSYNC_PRIVATE_H */
