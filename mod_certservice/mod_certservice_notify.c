/*
 * mod_certservice_notify.c: the glue of the notifications (cs_notify.h):
 * the directives' handlers, recording an event in the outbox where the
 * ACME worker or the admin API notices it, and the watchdog thread that
 * delivers the outbox: a signed POST to the webhook (lib/cs_http.h) and a
 * run of the command, each row claimed so that of several instances on
 * one database exactly one delivers it.  The thread also scans for
 * certificates that expire without a successor and purges old rows.
 *
 * Log tags: CS00060 ... CS00069.
 */
#include <stdlib.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "http_core.h"
#include "mod_watchdog.h"

#include "cs_file.h"
#include "cs_http.h"
#include "cs_notify.h"
#include "cs_run.h"
#include "mod_certservice_private.h"

static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *cs_dbd_open;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *cs_dbd_close;

/* How often the thread looks at the outbox, scans, purges (seconds). */
#define NOTIFY_TICK         1
#define NOTIFY_SCAN_EVERY   30
#define NOTIFY_PURGE_EVERY  3600
#define NOTIFY_BATCH        16

/* --- Directives ------------------------------------------------------- */

static cs_conf_t *notify_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config,
                                &certservice_module);
}

const char *cs_set_notify_url(cmd_parms *cmd, void *dummy, const char *url,
                              const char *ca)
{
    cs_conf_t *conf = notify_conf(cmd);

    if ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        || strlen(url) < 10 || strlen(url) > 2000
        || strpbrk(url, " \t\"'<>")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an https:// or "
                            "http:// URL", cmd->cmd->name, url);
    }
    if (ca) {
        ca = ap_server_root_relative(cmd->pool, ca);
        if (!ca || access(ca, R_OK) != 0) {
            return apr_psprintf(cmd->pool, "%s: cannot read the CA file "
                                "'%s'", cmd->cmd->name, ca ? ca : "");
        }
    }
    conf->notify_url = url;
    conf->notify_ca = ca;
    conf->notify_here = 1;
    return NULL;
}

const char *cs_set_notify_secret(cmd_parms *cmd, void *dummy,
                                 const char *file)
{
    const char *path = ap_server_root_relative(cmd->pool, file);
    apr_size_t len;
    char *buf;

    /* The error names the file, never what is in it. */
    if (!path || cs_file_read(&buf, &len, cmd->pool, path, 4096)) {
        return apr_psprintf(cmd->pool, "%s: cannot read '%s'",
                            cmd->cmd->name, file);
    }
    while (len > 0 && apr_isspace(buf[len - 1])) {
        buf[--len] = '\0';
    }
    if (len < 16 || strlen(buf) != len) {
        return apr_psprintf(cmd->pool, "%s: '%s' must hold a secret of at "
                            "least 16 bytes (one line, no NUL)",
                            cmd->cmd->name, file);
    }
    notify_conf(cmd)->notify_secret = buf;
    return NULL;
}

const char *cs_set_notify_cmd(cmd_parms *cmd, void *dummy, const char *path)
{
    cs_conf_t *conf = notify_conf(cmd);

    path = ap_server_root_relative(cmd->pool, path);
    if (!path || access(path, X_OK) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an executable file",
                            cmd->cmd->name, path ? path : "");
    }
    conf->notify_cmd = path;
    conf->notify_here = 1;
    return NULL;
}

const char *cs_set_notify_expiring(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    cs_conf_t *conf = notify_conf(cmd);
    char *end;
    apr_int64_t n;

    if (strcasecmp(arg, "off") == 0) {
        conf->notify_expiring = -1;
        conf->notify_expiring_pct = -1;
        return NULL;
    }
    n = apr_strtoi64(arg, &end, 10);
    if (end == arg || n <= 0) {
        end = NULL;
    }
    else if (strcmp(end, "%") == 0 && n < 100) {
        conf->notify_expiring = -1;
        conf->notify_expiring_pct = (int)n;
        return NULL;
    }
    else if (!*end || strcmp(end, "s") == 0) {
        n *= 1;
    }
    else if (strcmp(end, "mi") == 0) {
        n *= 60;
    }
    else if (strcmp(end, "h") == 0) {
        n *= 3600;
    }
    else if (strcmp(end, "d") == 0) {
        n *= 86400;
    }
    else {
        end = NULL;
    }
    if (!end || n > 400 * 86400) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration (7d, "
                            "36h, 90mi, 600s; at most 400d), a share of the "
                            "lifetime (1%% to 99%%), or off",
                            cmd->cmd->name, arg);
    }
    conf->notify_expiring = n;
    conf->notify_expiring_pct = -1;
    return NULL;
}

/* --- Recording -------------------------------------------------------- */

static apr_array_header_t *notify_sinks(apr_pool_t *p, const cs_conf_t *conf)
{
    apr_array_header_t *a = apr_array_make(p, 2, sizeof(const char *));

    if (conf->notify_url) {
        APR_ARRAY_PUSH(a, const char *) = CS_SINK_WEBHOOK;
    }
    if (conf->notify_cmd) {
        APR_ARRAY_PUSH(a, const char *) = CS_SINK_CMD;
    }
    return a;
}

void cs_notify_emit(server_rec *s, const cs_conf_t *conf, cs_db_t *db,
                    apr_pool_t *p, const cs_event_t *ev,
                    const char *discriminator)
{
    apr_array_header_t *sinks = notify_sinks(p, conf);
    const char *id = NULL;
    apr_status_t rv;
    int added;

    if (!sinks->nelts) {
        return;
    }
    if ((rv = cs_notify_record(&added, &id, db, p, ev, discriminator,
                               sinks))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, CSLOGNO(00060)
                     "notify: cannot record the %s event of %s: %s",
                     ev->type, ev->domain, cs_store_error(db, p, rv));
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, CSLOGNO(00061)
                 "notify: %s event %s of %s recorded (%d new rows)",
                 ev->type, id, ev->domain, added);
}

/* --- Delivery --------------------------------------------------------- */

typedef struct {
    server_rec *s;
    const cs_conf_t *conf;
    apr_pool_t *pool;           /* lives as long as the thread */
    cs_http_t *http;
    const char *owner;
    apr_time_t next_scan;
    apr_time_t next_purge;
} cs_notifier_t;

static cs_delivery_t deliver_webhook(cs_notifier_t *n, apr_pool_t *p,
                                     const cs_outbox_t *o, long *status,
                                     apr_int64_t *retry_after,
                                     const char **err)
{
    const char *hdrs[7], *ts;
    cs_http_req_t req;
    cs_http_resp_t resp;
    apr_status_t rv;
    int i = 0;

    ts = apr_psprintf(p, "%" APR_INT64_T_FMT,
                      (apr_int64_t)apr_time_sec(apr_time_now()));
    hdrs[i++] = "Content-Type: application/json";
    hdrs[i++] = apr_pstrcat(p, "X-CertService-Event: ", o->type, NULL);
    hdrs[i++] = apr_pstrcat(p, "X-CertService-Event-Id: ", o->id, NULL);
    hdrs[i++] = apr_pstrcat(p, "X-CertService-Timestamp: ", ts, NULL);
    if (n->conf->notify_secret) {
        const char *sig = cs_notify_sign(p, (const unsigned char *)
                                         n->conf->notify_secret,
                                         strlen(n->conf->notify_secret), ts,
                                         o->body, strlen(o->body));

        if (!sig) {
            *err = "cannot sign (OpenSSL)";
            return CS_DELIVERY_UNREACHABLE;
        }
        hdrs[i++] = apr_pstrcat(p, "X-CertService-Signature: ", sig, NULL);
    }
    hdrs[i] = NULL;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = n->conf->notify_url;
    req.headers = hdrs;
    req.body = o->body;
    req.body_len = strlen(o->body);
    if ((rv = cs_http_send(n->http, &resp, &req, p, err))) {
        return CS_DELIVERY_UNREACHABLE;
    }
    *status = resp.status;
    if (resp.status >= 200 && resp.status < 300) {
        return CS_DELIVERY_OK;
    }
    *retry_after = cs_http_retry_after(apr_table_get(resp.headers,
                                                     "Retry-After"),
                                       apr_time_now(), CS_NOTIFY_BACKOFF_CAP);
    *err = apr_psprintf(p, "HTTP %ld from %s", resp.status,
                        n->conf->notify_url);
    return CS_DELIVERY_STATUS;
}

/* The command: cmd TYPE DOMAIN, the JSON on stdin, CS_NOTIFY_CMD_TIMEOUT
 * seconds at most, and no longer than until the child exits (then it is
 * killed with what it started, and the row retried like any failed run). */
static cs_delivery_t deliver_cmd(cs_notifier_t *n, apr_pool_t *p,
                                 const cs_outbox_t *o, const char **err)
{
    const char *argv[4];
    cs_run_t run;
    apr_status_t rv;
    int exited, code;

    argv[0] = n->conf->notify_cmd;
    argv[1] = o->type;
    argv[2] = o->domain;
    argv[3] = NULL;
    memset(&run, 0, sizeof(run));
    run.argv = argv;
    run.input = o->body;
    run.input_len = strlen(o->body);
    run.limit = apr_time_from_sec(CS_NOTIFY_CMD_TIMEOUT);
    run.stop = &cs_wd_stop;
    rv = cs_run(&exited, &code, &run, p, err);
    if (rv == APR_INCOMPLETE) {
        *err = apr_psprintf(p, "%s killed: the server is stopping", argv[0]);
        return CS_DELIVERY_EXIT;
    }
    if (rv == APR_TIMEUP) {
        *err = apr_psprintf(p, "%s did not end within %d s (killed)",
                            argv[0], CS_NOTIFY_CMD_TIMEOUT);
        return CS_DELIVERY_EXIT;
    }
    if (rv != APR_SUCCESS) {
        return CS_DELIVERY_EXIT;        /* *err: could not run it */
    }
    if (exited && code == 0) {
        return CS_DELIVERY_OK;
    }
    *err = apr_psprintf(p, "%s %s %s: %s %d", argv[0], o->type, o->domain,
                        exited ? "exit" : "signal", code);
    return CS_DELIVERY_EXIT;
}

/* One claimed row: deliver, decide, record. */
static void deliver(cs_notifier_t *n, cs_db_t *db, apr_pool_t *p,
                    const char *id, const char *sink)
{
    cs_outbox_t *o;
    cs_notify_next_t next;
    cs_delivery_t result;
    apr_int64_t retry_after = 0, now;
    const char *err = NULL;
    long status = 0;
    apr_status_t rv;

    if ((rv = cs_notify_get(&o, db, p, id, sink))) {
        return;
    }
    if (strcmp(sink, CS_SINK_WEBHOOK) == 0 && n->conf->notify_url) {
        result = deliver_webhook(n, p, o, &status, &retry_after, &err);
    }
    else if (strcmp(sink, CS_SINK_CMD) == 0 && n->conf->notify_cmd) {
        result = deliver_cmd(n, p, o, &err);
    }
    else {
        /* Recorded by an instance with this sink; ours has none. */
        result = CS_DELIVERY_UNREACHABLE;
        err = apr_psprintf(p, "this instance has no %s configured", sink);
    }
    now = apr_time_sec(apr_time_now());
    cs_notify_decide(&next, o->attempts, result, status, retry_after, now);
    if (result == CS_DELIVERY_OK) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, n->s, CSLOGNO(00062)
                     "notify: %s event %s of %s delivered to the %s",
                     o->type, o->id, o->domain, sink);
    }
    else if (strcmp(next.state, "pending") == 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, n->s, CSLOGNO(00063)
                     "notify: %s event %s of %s: %s delivery failed "
                     "(attempt %d, next in %" APR_INT64_T_FMT " s): %s",
                     o->type, o->id, o->domain, sink, next.attempts,
                     next.next_at - now, err);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, n->s, CSLOGNO(00064)
                     "notify: %s event %s of %s: %s delivery given up "
                     "after %d attempts: %s", o->type, o->id, o->domain,
                     sink, next.attempts, err);
    }
    if ((rv = cs_notify_finish(db, p, id, sink, n->owner, &next, err,
                               now))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, n->s, CSLOGNO(00065)
                     "notify: cannot record the delivery of %s: %s", id,
                     cs_store_error(db, p, rv));
    }
}

/* The expiry scan and the purge, when due (per process: each instance
 * scans, the event ids keep what they find to one event each). */
static void housekeeping(cs_notifier_t *n, cs_db_t *db, apr_pool_t *p)
{
    apr_time_t t = apr_time_now();
    apr_int64_t now = apr_time_sec(t);
    const cs_conf_t *conf = n->conf;
    apr_status_t rv;
    int added;

    if (t >= n->next_scan) {
        n->next_scan = t + apr_time_from_sec(NOTIFY_SCAN_EVERY);
        if (conf->notify_expiring > 0 || conf->notify_expiring_pct > 0) {
            rv = cs_notify_scan_expiring(&added, db, p, now,
                                         conf->notify_expiring > 0
                                         ? conf->notify_expiring : 0,
                                         conf->notify_expiring_pct > 0
                                         ? conf->notify_expiring_pct : 0,
                                         notify_sinks(p, conf), 500);
            if (rv) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, n->s,
                             CSLOGNO(00066) "notify: expiry scan: %s",
                             cs_store_error(db, p, rv));
            }
            else if (added) {
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, n->s,
                             CSLOGNO(00067) "notify: %d expiring "
                             "certificates found", added);
            }
        }
    }
    if (t >= n->next_purge) {
        n->next_purge = t + apr_time_from_sec(NOTIFY_PURGE_EVERY);
        cs_notify_purge(db, p, now, CS_NOTIFY_KEEP);
    }
}

static apr_status_t cs_notify_init(cs_notifier_t *n)
{
    apr_allocator_t *alloc;
    cs_http_conf_t hc;
    apr_status_t rv;

    if ((rv = apr_allocator_create(&alloc)) != APR_SUCCESS) {
        return rv;
    }
    if ((rv = apr_pool_create_ex(&n->pool, NULL, NULL, alloc))
        != APR_SUCCESS) {
        apr_allocator_destroy(alloc);
        return rv;
    }
    apr_allocator_owner_set(alloc, n->pool);
    n->owner = apr_psprintf(n->pool, "%.40s:%" APR_PID_T_FMT ":notify",
                            n->s->server_hostname ? n->s->server_hostname
                                                  : "cs", getpid());
    if (n->conf->notify_url) {
        memset(&hc, 0, sizeof(hc));
        hc.protocols = "https,http";
        hc.ca_file = n->conf->notify_ca;
        hc.user_agent = "certservice-notify/1";
        hc.max_body = 64 * 1024;
        hc.stop = &cs_wd_stop;      /* the child's exit */
        if ((rv = cs_http_curl_create(&n->http, n->pool, &hc))) {
            apr_pool_destroy(n->pool);
            n->pool = NULL;
            return rv;
        }
    }
    return APR_SUCCESS;
}

/* Everything the sender made for itself: at its STOPPING, or at the
 * child's exit (cs_wd_own()). */
static apr_status_t cs_notify_release(void *data)
{
    cs_notifier_t *n = data;

    if (n->pool) {
        apr_pool_destroy(n->pool);
        n->pool = NULL;
        n->http = NULL;
    }
    return APR_SUCCESS;
}

/* Housekeeping, then due rows, with a database connection, for a while. */
static void cs_notify_run(cs_notifier_t *n, apr_pool_t *wdp)
{
    apr_array_header_t *due;
    apr_pool_t *jp;
    ap_dbd_t *dbd;
    cs_db_t db;
    apr_status_t rv;
    apr_time_t until = apr_time_now() + apr_time_from_sec(20);
    int i, claimed, worked;

    if (!(dbd = cs_dbd_open(wdp, n->s))) {
        return;
    }
    memset(&db, 0, sizeof(db));
    db.driver = dbd->driver;
    db.handle = dbd->handle;
    db.prepared = dbd->prepared;
    db.log = cs_db_log_server;
    db.log_baton = n->s;
    if (!*n->conf->schema_ready) {
        if ((rv = cs_store_schema(&db, wdp)) != APR_SUCCESS) {
            cs_dbd_close(n->s, dbd);
            return;
        }
        *n->conf->schema_ready = 1;
    }
    apr_pool_create(&jp, wdp);
    housekeeping(n, &db, jp);
    apr_pool_clear(jp);
    do {
        worked = 0;
        if ((rv = cs_notify_due(&due, &db, jp,
                                apr_time_sec(apr_time_now()),
                                NOTIFY_BATCH))) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, n->s, CSLOGNO(00068)
                         "notify: reading the outbox: %s",
                         cs_store_error(&db, jp, rv));
            break;
        }
        for (i = 0; i < due->nelts && apr_time_now() < until && !cs_wd_stop;
             i++) {
            const cs_outbox_t *o = &APR_ARRAY_IDX(due, i, cs_outbox_t);

            if (cs_notify_claim(&claimed, &db, jp, o->id, o->sink, n->owner,
                                apr_time_sec(apr_time_now()),
                                CS_NOTIFY_CLAIM) == APR_SUCCESS
                && claimed) {
                deliver(n, &db, jp, o->id, o->sink);
                worked = 1;
            }
        }
        apr_pool_clear(jp);
    } while (worked && apr_time_now() < until && !cs_wd_stop);
    apr_pool_destroy(jp);
    cs_dbd_close(n->s, dbd);
}

static apr_status_t cs_notify_wd(int state, void *data, apr_pool_t *wdp)
{
    cs_notifier_t *n = data;

    /* Nothing of the sender is touched outside enter and leave: once the
     * child exits, it releases the sender itself (mod_certservice.c). */
    if (!cs_wd_enter()) {
        return APR_SUCCESS;
    }
    if (state == AP_WATCHDOG_STATE_STOPPING) {
        cs_notify_release(n);
    }
    else if (n->pool || cs_notify_init(n) == APR_SUCCESS) {
        cs_notify_run(n, wdp);
    }
    cs_wd_leave();
    return APR_SUCCESS;
}

int cs_notify_post_config(apr_pool_t *pconf, server_rec *main_s)
{
    /* Across restarts too: every start gets watchdog names of its own. */
    static int nth;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_wd;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *reg_wd;
    const cs_conf_t *conf;
    cs_notifier_t *n;
    ap_watchdog_t *wd;
    server_rec *s;
    apr_status_t rv;

    cs_dbd_open = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    cs_dbd_close = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    get_wd = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    reg_wd = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    for (s = main_s; s; s = s->next) {
        conf = cs_config_get(s);
        if (!conf->notify_here || (!conf->notify_url && !conf->notify_cmd)) {
            continue;
        }
        /* Before any thread makes a transport (curl's rule). */
        cs_http_global_init();
        n = apr_pcalloc(pconf, sizeof(*n));
        n->s = s;
        n->conf = conf;
        rv = APR_ENOTIMPL;
        if (!get_wd || !reg_wd || !cs_dbd_open || !cs_dbd_close
            || (rv = get_wd(&wd, apr_psprintf(pconf, "certservice-notify-%d",
                                              ++nth), 0, 1, pconf))
            || (rv = reg_wd(wd, apr_time_from_sec(NOTIFY_TICK), n,
                            cs_notify_wd))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CSLOGNO(00069)
                         "cannot start the notification worker of "
                         "CertServiceNotifyURL/CertServiceNotifyCmd (it "
                         "needs mod_watchdog and mod_dbd)");
            return !OK;
        }
        cs_wd_own(cs_notify_release, n);
    }
    return OK;
}
