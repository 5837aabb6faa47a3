/*
 * mod_certservice_private.h: what the glue files of mod_certservice share:
 * the module's log tags, the server configuration and its defaults, the
 * request being served, and the functions one glue file offers another.
 *
 * Layout (docs/mod_certservice.md, "Source layout"): mod_certservice.c
 * (module record, hooks), mod_certservice_config.c (directives, effective
 * configuration), mod_certservice_io.c (JSON in and out, errors, callers),
 * mod_certservice_api.c (the router), mod_certservice_proxy.c and
 * mod_certservice_admin.c (the endpoints), mod_certservice_acme.c (the
 * watchdog glue of the ACME workers); the work is in pure code
 * (cs_acme_drive.c, cs_service.c, the store cs_db.c and cs_store_*.c,
 * lib/).
 */
#ifndef MOD_CERTSERVICE_PRIVATE_H
#define MOD_CERTSERVICE_PRIVATE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <jansson.h>

#include "apr_dbd.h"
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_dbd.h"
#include "mod_ssl.h"

#include "apr_optional.h"

#include "cs_crypto.h"
#include "cs_dns.h"
#include "cs_jws.h"
#include "cs_log.h"
#include "cs_notify.h"
#include "cs_request.h"
#include "cs_store.h"
#include "cs_x509.h"

APLOG_USE_MODULE(certservice);
extern module AP_MODULE_DECLARE_DATA certservice_module;

/* Log tags "CSnnnnn": never reused; take a number above every one in use
 * (t/lint/logtags.pl fails on a number used twice or not in the docs).  The
 * pure ACME drive puts its own tags in its messages (cs_acme_drive.c:
 * CS00013, CS00015 ... CS00018, CS00021, CS00031 ... CS00034).  The
 * macro CSLOGNO is lib/cs_log.h's. */

#define CS_HANDLER              "certservice"

/* Defaults: the only place they are spelled (cs_config_get() applies
 * them; the directives' help strings print them). */
#define CS_DEFAULT_LIFETIME_DAYS 47
#define CS_DEFAULT_LIFETIME     apr_time_from_sec(CS_DEFAULT_LIFETIME_DAYS \
                                                  * 86400)
#define CS_DEFAULT_MAX_UNAVAIL  1
#define CS_DEFAULT_MAX_BODY     1048576
#define CS_DEFAULT_MAX_BATCH    100
#define CS_DEFAULT_LEASE_TTL    900
#define CS_DEFAULT_FEED_LIMIT   100
#define CS_MAX_FEED_LIMIT       1000
/* One <CertServiceACMEIssuer NAME> section: a further CA, tried in the
 * order of the sections after the one of CertServiceACMEDirectory. */
typedef struct {
    const char *name;
    const char *url;
    const char *ca_file;        /* NULL: the system's trust */
    cs_eab_t *eab;              /* NULL: none */
    const char *profile;        /* NULL: CertServiceACMEProfile's */
    const char *chain;          /* NULL: the default chain */
    int accounts;               /* 0: one */
    int limit;                  /* 0: CertServiceACMELimit's */
    apr_int64_t window;
    int domain_limit;           /* 0: none */
    apr_int64_t domain_window;
} cs_acme_issuer_conf_t;

/* ACME defaults: Let's Encrypt's 300 new orders per account per 3 hours;
 * retries from 1 minute doubling to 6 hours; renewal between 61.7% and
 * 66.7% of the lifetime. */
#define CS_ACME_LIMIT           300
#define CS_ACME_WINDOW          10800
#define CS_ACME_BACKOFF         60
#define CS_ACME_BACKOFF_CAP     21600
#define CS_ACME_RENEW_PM        667
#define CS_ACME_JITTER_PM       50
/* The two above in CertServiceACMERenewal's own words, for its help. */
#define CS_RENEW_DEFAULT_TEXT   "66.7% 5%"
#define CS_ACME_WORKERS         2

/* Ordered: a certificate that several rules match gets the highest.
 * metrics may only read GET /metrics. */
typedef enum {
    CS_ROLE_NONE = 0,
    CS_ROLE_METRICS = 1,
    CS_ROLE_PROXY = 2,
    CS_ROLE_ADMIN = 3
} cs_role_t;

typedef struct {
    cs_role_t role;
    int by_fingerprint;         /* else by subject DN */
    const char *value;          /* DN, or lower-case hex SHA-256 */
} cs_role_rule_t;

/* The server configuration.  While the configuration is read, fields
 * hold "unset" markers (noted per field); cs_config_get() gives the
 * effective one, every default applied. */
typedef struct {
    apr_array_header_t *wrap_certs;     /* X509 *; NULL: unset */
    cs_ca_t *ca;                        /* NULL: no local CA */
    apr_interval_time_t lifetime;       /* -1: unset */
    int key_type;                       /* -1: unset */
    apr_array_header_t *roles;          /* cs_role_rule_t; NULL: unset */
    int max_unavailable;                /* 0: unset */
    apr_table_t *pool_max_unavailable;  /* pool -> N; NULL: unset */
    int lease_max_ttl;                  /* 0: unset */
    int max_body;                       /* 0: unset */
    int max_batch;                      /* 0: unset */
    /* ACME */
    const char *acme_url;               /* NULL: ACME off */
    apr_array_header_t *acme_contact;   /* const char *; NULL: none */
    const char *acme_ca;                /* NULL: the system's trust */
    X509 *acme_seal_cert;               /* NULL: unset */
    EVP_PKEY *acme_seal_key;
    cs_eab_t *acme_eab;                 /* NULL: none; see the merge */
    int acme_limit;                     /* 0: unset */
    apr_int64_t acme_window;            /* 0: unset */
    apr_int64_t acme_backoff;           /* 0: unset */
    apr_int64_t acme_backoff_cap;       /* 0: unset */
    int acme_renew_pm;                  /* 0: unset */
    int acme_jitter_pm;                 /* 0: unset, -1: an explicit 0% */
    int acme_ari;                       /* -1: unset */
    int acme_workers;                   /* 0: unset */
    const char *acme_chain;             /* NULL: the default chain */
    const char *acme_profile;           /* NULL: the CA's default */
    int acme_precheck_port;             /* 0: unset, -1: off */
    const char *acme_precheck_dns;      /* NULL: the system's resolver */
    int acme_challenges;                /* CS_ACME_* bits; 0: unset
                                         * (http-01) */
    /* dns-01 (mod_certservice_dns.c) */
    apr_array_header_t *dns_zones;      /* cs_dns_zone_t; NULL: unset */
    const char *dns_hook;               /* NULL: unset */
    apr_interval_time_t dns_hook_timeout; /* 0: unset (lib default) */
    const char *dns_resolver;           /* NULL: the system's */
    apr_interval_time_t dns_wait;       /* 0: unset (lib default) */
    int dns_auth_port;                  /* 0: unset (53) */
    int dns_all;                        /* 0: unset, 1: wildcards, 2: all */
    cs_dns_conf_t dns_conf;     /* not merged: made from the dns_ fields
                                 * by cs_config_get() */
    const cs_dns_conf_t *dns;   /* not merged: &dns_conf, or NULL when
                                 * dns-01 is not configured */
    /* Several CAs: the first CA's accounts and per-domain budget, the
     * global budget, and the further CAs (<CertServiceACMEIssuer>). */
    int acme_accounts;                  /* 0: unset */
    int acme_domain_limit;              /* 0: unset (none) */
    apr_int64_t acme_domain_window;     /* 0: unset */
    int acme_global_limit;              /* 0: unset (none) */
    apr_int64_t acme_global_window;     /* 0: unset */
    apr_array_header_t *acme_issuers;   /* cs_acme_issuer_conf_t *; NULL:
                                         * none; see the merge */
    /* Notifications (mod_certservice_notify.c) */
    const char *notify_url;             /* NULL: no webhook */
    const char *notify_ca;              /* NULL: the system's trust */
    const char *notify_secret;          /* NULL: unsigned */
    const char *notify_cmd;             /* NULL: no command */
    apr_int64_t notify_expiring;        /* seconds; 0: unset, -1: by
                                         * notify_expiring_pct or off */
    int notify_expiring_pct;            /* 0: unset (with the above) */
    /* On-demand issuance (mod_certservice_ondemand.c) */
    const char *od_ask;                 /* NULL: on-demand refused */
    const char *od_ask_ca;              /* NULL: the system's trust */
    int od_ask_timeout;                 /* seconds; 0: unset */
    int od_limit;                       /* 0: unset */
    apr_int64_t od_window;              /* seconds; 0: unset */
    int od_ask_limit;                   /* 0: unset */
    apr_int64_t od_ask_window;          /* seconds; 0: unset */
    apr_int64_t od_refused_ttl;         /* seconds; 0: unset */
    /* The change feed's long poll (mod_certservice_proxy.c) */
    int feed_wait;                      /* seconds; 0: unset, -1: off */
    int feed_waiters;                   /* per process; 0: unset */
    /* The pool's TLS session ticket keys (mod_certservice_tkeys.c) */
    apr_int64_t tk_rotate;              /* seconds; 0: unset, -1: off */
    apr_int64_t tk_accept;              /* seconds; 0: unset, -1: off */
    int effective;              /* not merged: cs_config_get() sets it */
    int notify_here;            /* not merged: a sink is named in this
                                 * server's own context; only such servers
                                 * start a notification worker */
    int acme_here;              /* not merged: the directory is named in
                                 * this server's own context; only such
                                 * servers start ACME workers */
    /* Per process, per server (not merged): the schema exists in this
     * server's database.  Creating it is idempotent; the flag only saves
     * the statements.  Per server because virtual hosts may name
     * different databases (DBDParams). */
    volatile int *schema_ready; /* not merged: per server, see above */
} cs_conf_t;

/* --- mod_certservice_proxy.c: the change feed's long poll ----------- */

/** CertServiceChangesWait's defaults: the longest wait a GET /v1/changes
 * may ask for, and how many such requests one process holds at once
 * (never more than half of its threads). */
#define CS_FEED_WAIT            30
#define CS_FEED_WAITERS         4   /* each holds a DBD connection */
const char *cs_set_feed_wait(cmd_parms *cmd, void *dummy, const char *secs,
                             const char *waiters);

/* --- mod_certservice.c: watchdog threads at the child's exit ---------- */

/** Seconds the child's exit waits for the watchdog threads' database
 * connections. */
#define CS_WD_EXIT_WAIT 10
/** Non-zero once the child exits: the ACME client's stop flag. */
extern volatile apr_uint32_t cs_wd_stop;
/** Around the whole of a watchdog callback (STOPPING too): 0 when the
 * child is exiting (then do nothing, and no cs_wd_leave()). */
int cs_wd_enter(void);
void cs_wd_leave(void);
/** At post_config, for each watchdog worker: what it makes for itself
 * (its pool, clients, transport) is released by release(data) at the
 * child's exit, once no callback runs; release also serves the worker's
 * own STOPPING, so it must leave the worker as never started. */
void cs_wd_own(apr_status_t (*release)(void *), void *data);

/* --- mod_certservice_acme_config.c: ACME directive handlers ---------- */
const char *cs_set_acme_url(cmd_parms *cmd, void *dummy,
                            const char *arg);
const char *cs_add_acme_contact(cmd_parms *cmd, void *dummy,
                                const char *arg);
const char *cs_set_acme_ca(cmd_parms *cmd, void *dummy,
                           const char *arg);
const char *cs_set_acme_seal(cmd_parms *cmd, void *dummy,
                             const char *cert, const char *key);
const char *cs_set_acme_eab(cmd_parms *cmd, void *dummy,
                            const char *kid, const char *file,
                            const char *alg);
const char *cs_set_acme_limit(cmd_parms *cmd, void *dummy,
                              const char *n, const char *window);
const char *cs_set_acme_backoff(cmd_parms *cmd, void *dummy,
                                const char *base, const char *cap);
const char *cs_set_acme_renewal(cmd_parms *cmd, void *dummy,
                                const char *args);
const char *cs_set_acme_chain(cmd_parms *cmd, void *dummy,
                              const char *arg);
const char *cs_set_acme_profile(cmd_parms *cmd, void *dummy,
                                const char *arg);
const char *cs_set_acme_challenges(cmd_parms *cmd, void *dummy,
                                   const char *arg);
const char *cs_set_acme_precheck(cmd_parms *cmd, void *dummy,
                                 const char *arg, const char *dns);
const char *cs_set_acme_accounts(cmd_parms *cmd, void *dummy,
                                 const char *arg);
const char *cs_set_acme_domain_limit(cmd_parms *cmd, void *dummy,
                                     const char *n,
                                     const char *window);
const char *cs_set_acme_global_limit(cmd_parms *cmd, void *dummy,
                                     const char *n,
                                     const char *window);
const char *cs_issuer_section(cmd_parms *cmd, void *dummy,
                              const char *arg);

/* --- mod_certservice_config.c ----------------------------------------- */
/** A secret from an owner-only file, for a directive (see there). */
const char *cs_read_secret_file(cmd_parms *cmd, const char *what,
                                const char *file, char **text,
                                apr_size_t *len);

/** The configuration as the directives left it (fields unset until
 * cs_config_get()); only for directive handlers. */
cs_conf_t *cs_conf_raw(server_rec *s);
/** An integer directive argument in [min, max], or the error naming the
 * directive and the value. */
const char *cs_parse_int(cmd_parms *cmd, const char *arg, int min, int max,
                         int *out);

extern const command_rec cs_cmds[];
void *cs_create_server_config(apr_pool_t *p, server_rec *s);
void *cs_merge_server_config(apr_pool_t *p, void *basev, void *addv);
/* The effective configuration of s: every default applied.  post_config
 * calls it for every server first, so that requests and workers only
 * read it. */
const cs_conf_t *cs_config_get(server_rec *s);
/* Restart leases granted at once in pool. */
int cs_config_max_unavailable(const cs_conf_t *conf, const char *pool);

/* --- mod_certservice_io.c --------------------------------------------- */

typedef struct {
    cs_role_t role;
    const char *who;            /* for the audit log: the subject DN */
    const char *why;            /* when role is CS_ROLE_NONE */
} cs_caller_t;

/* One request to the API. */
typedef struct {
    request_rec *r;
    const cs_conf_t *conf;
    cs_caller_t caller;
    cs_db_t db;
    const char *seg[7];
    int nseg;
    /* cs_query_param_t: the query string, decoded; NULL until cs_query()
     * read it */
    apr_array_header_t *params;
} cs_req_t;

/* Set at post_config (mod_certservice.c). */
extern APR_OPTIONAL_FN_TYPE(ssl_var_lookup) *cs_ssl_var;
extern APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *cs_dbd_acquire;

/* These answer the request and return what the handler returns. */
int cs_send_json(request_rec *r, int status, json_t *body);
int cs_error(request_rec *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cs_db_error(cs_req_t *q, apr_status_t rv);
/* An answer from a cs_request.h parser: status and reason. */
int cs_req_fail(cs_req_t *q, int status, const char *why);
/* These return DECLINED to go on, anything else is the response sent. */
int cs_read_body(cs_req_t *q, const char **body, apr_size_t *len);
int cs_open_db(cs_req_t *q);
/* A cs_log_fn for the store (cs_db_t.log) outside a request; baton: the
 * server_rec. */
void cs_db_log_server(void *baton, cs_log_level_t level, const char *msg);
int cs_query(cs_req_t *q);
/* Domain from a path segment, normalised; NULL after a 400. */
const char *cs_domain(cs_req_t *q, const char *raw, int *rc);
void cs_identify(cs_caller_t *caller, request_rec *r, const cs_conf_t *conf);

/* --- mod_certservice_proxy.c: role proxy ------------------------------ */

int cs_get_changes(cs_req_t *q);
int cs_get_bundle(cs_req_t *q, const char *raw);
int cs_get_acme_tls(cs_req_t *q, const char *raw);
int cs_post_bundles(cs_req_t *q);
int cs_post_lease(cs_req_t *q, const char *pool);
int cs_delete_lease(cs_req_t *q, const char *pool, const char *lease);
int cs_post_report(cs_req_t *q, const char *host);

/* --- mod_certservice_admin.c: role admin, and http-01 ------------------ */

int cs_get_domains(cs_req_t *q);
int cs_get_domain(cs_req_t *q, const char *raw);
int cs_put_domain(cs_req_t *q, const char *raw);
int cs_delete_domain(cs_req_t *q, const char *raw);
int cs_put_certificate(cs_req_t *q, const char *raw);
int cs_post_revoke(cs_req_t *q, const char *raw);
int cs_get_acme_account(cs_req_t *q);
int cs_get_acme_cas(cs_req_t *q);
int cs_post_acme_key_change(cs_req_t *q);
int cs_get_challenge(cs_req_t *q, const char *token);

/* --- mod_certservice_metrics.c: metrics, overview, dashboard ---------- */

/* Log tags CS00161 ... CS00169 are this file's (CS00160: cs_acme_cas.c's
 * order counter). */
int cs_get_metrics(cs_req_t *q);
int cs_get_overview(cs_req_t *q);
/* file: a name below /dashboard/, "" for the page, NULL for /dashboard
 * itself (redirected to /dashboard/). */
int cs_get_dashboard(cs_req_t *q, const char *file);

/* --- mod_certservice_api.c -------------------------------------------- */

int cs_handler(request_rec *r);
/* TRACE on the API's locations goes to cs_handler, not httpd's echo:
 * translate_name marks it, map_to_storage keeps it from http_core. */
int cs_trace_mark(request_rec *r);
int cs_trace_keep(request_rec *r);

/* --- mod_certservice_acme.c ------------------------------------------- */

/* Start the ACME workers of every distinct ACME configuration once per
 * process (post_config, after cs_config_get() for every server). */
int cs_acme_post_config(apr_pool_t *pconf, server_rec *main_s);

/* --- mod_certservice_dns.c: dns-01 ------------------------------------ */

/* Log tags CS00051 ... CS00059 are this file's; lib/cs_dns.c uses
 * CS00090 ... CS00094, the drive's dns-01 lines CS00095 ... CS00097. */
const char *cs_set_dns_update(cmd_parms *cmd, void *dummy, int argc,
                              char *const argv[]);
const char *cs_set_dns_hook(cmd_parms *cmd, void *dummy, const char *path,
                            const char *timeout);
const char *cs_set_dns_resolver(cmd_parms *cmd, void *dummy,
                                const char *arg);
const char *cs_set_dns_propagation(cmd_parms *cmd, void *dummy,
                                   const char *timeout, const char *port);
const char *cs_set_dns_challenge(cmd_parms *cmd, void *dummy,
                                 const char *arg);
/* conf->dns from the dns_ fields (cs_config_get()). */
void cs_dns_config_apply(cs_conf_t *conf);

/* --- mod_certservice_notify.c: notifications -------------------------- */

/* Log tags CS00060 ... CS00069 are this file's. */
#define CS_NOTIFY_EXPIRING_PCT  10      /* default: 10% of the lifetime */

/* The directives' handlers (their entries are in cs_cmds). */
const char *cs_set_notify_url(cmd_parms *cmd, void *dummy, const char *url,
                              const char *ca);
const char *cs_set_notify_secret(cmd_parms *cmd, void *dummy,
                                 const char *file);
const char *cs_set_notify_cmd(cmd_parms *cmd, void *dummy, const char *path);
const char *cs_set_notify_expiring(cmd_parms *cmd, void *dummy,
                                   const char *arg);

/* Record an event in the outbox for every sink of conf (nothing when it
 * names none); discriminator: see cs_notify_event_id().  Failures are
 * logged, never returned: a notification never fails what it tells of. */
void cs_notify_emit(server_rec *s, const cs_conf_t *conf, cs_db_t *db,
                    apr_pool_t *p, const cs_event_t *ev,
                    const char *discriminator);

/* Start a notification worker for every server whose own configuration
 * names a sink (post_config). */
int cs_notify_post_config(apr_pool_t *pconf, server_rec *main_s);

/* --- mod_certservice_admin.c, for on-demand ---------------------------- */

/* Add domain as PUT /v1/domains/DOMAIN does, without answering the
 * request: queued for ACME, or issued now by the local CA (notified like
 * a PUT).  *what: "queued" or "issued"; else an HTTP status with *why. */
int cs_domain_add(cs_req_t *q, const char *domain, int kt,
                  const char **what, const char **why);

/* --- mod_certservice_ondemand.c: on-demand issuance ------------------- */

/* Log tags CS00070 ... CS00079 are this file's. */
#define CS_OD_ASK_TIMEOUT       5
#define CS_OD_LIMIT             100     /* domains added on demand ... */
#define CS_OD_WINDOW            3600    /* ... per hour, fleet-wide */
#define CS_OD_ASK_LIMIT         600     /* asks ... */
#define CS_OD_ASK_WINDOW        60      /* ... per minute, fleet-wide */
#define CS_OD_REFUSED_TTL       3600    /* a refusal holds an hour */
#define CS_OD_EVENTS            100     /* refusal events per hour */

const char *cs_set_od_ask(cmd_parms *cmd, void *dummy, const char *url,
                          const char *timeout, const char *ca);
const char *cs_set_od_limit(cmd_parms *cmd, void *dummy, const char *n,
                            const char *seconds);
const char *cs_set_od_refused_ttl(cmd_parms *cmd, void *dummy,
                                  const char *seconds);
/* POST /v1/on-demand (role proxy). */
int cs_post_on_demand(cs_req_t *q);
/* Says at startup whether on-demand issuance is on, and how. */
void cs_od_post_config(server_rec *main_s);

/* --- mod_certservice_tkeys.c: the pool's TLS session ticket keys ------ */

/* Log tags CS00140 ... CS00149 are this file's. */
#define CS_TK_ROTATE            (12 * 3600)     /* a new key every 12 h */
#define CS_TK_ACCEPT            (24 * 3600)     /* accepted 24 h more */

const char *cs_set_ticket_keys(cmd_parms *cmd, void *dummy,
                               const char *rotate, const char *accept);
/* GET /v1/ticket-keys (role proxy). */
int cs_get_ticket_keys(cs_req_t *q);

#endif /* MOD_CERTSERVICE_PRIVATE_H */
