/*
 * mod_certsync_ondemand.c: on-demand issuance on a proxy
 * (CertSyncOnDemand on, dynamic mode).
 *
 * The handshake's side (csy_od_handshake, from the certificate callback
 * in mod_certsync_dyn.c): a name the store does not have is recorded in
 * the shared table (csy_ondemand.h) and the handshake goes on with the
 * virtual host's own certificate: nothing on the network, one hash probe.
 * With CertSyncOnDemandWait the handshake may wait for the certificate,
 * polling the store, at most CSY_OD_MAX_WAITERS handshakes at once.
 *
 * The sync daemon's side (csy_daemon_od_idle, between its cycles):
 * several times a second it takes the queued names, sends them in batches
 * to CertService (POST /v1/on-demand) and writes the verdicts back; while
 * a name CertService accepted is not in the store yet it ends its wait
 * after a second, so the next cycle (GET /v1/changes) brings the
 * certificate as soon as CertService has it.
 *
 * Log tags: CY00174 ... CY00179, CY00185 ... CY00189.
 */
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"

#include "apr_shm.h"
#include "apr_strings.h"

#include "csy_ondemand.h"
#include "mod_certsync_daemon.h"

/* Handshakes of one proxy that may wait (CertSyncOnDemandWait) at once:
 * a flood of new names must not take every worker thread. */
#define CSY_OD_MAX_WAITERS  16
/* How often a waiting handshake looks at the store, and the daemon at the
 * table. */
#define CSY_OD_WAIT_STEP    apr_time_from_msec(100)
#define CSY_OD_TICK         apr_time_from_msec(200)
/* A failing CertService is logged at most this often. */
#define CSY_OD_LOG_EVERY    apr_time_from_sec(60)

csy_od_t *csy_ondemand;

/* --- Configuration ---------------------------------------------------- */

int csy_od_check(server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);

    if (conf->ondemand == 1 && conf->dynamic != 1) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     CYLOGNO(00174) "CertSyncOnDemand On needs "
                     "CertSyncActivation dynamic");
        return !OK;
    }
    return OK;
}

/* The table, in anonymous shared memory: the daemon and the workers
 * inherit it.  A new one per generation: names half asked for are asked
 * for again by their next handshake. */
int csy_od_post_config(apr_pool_t *pconf, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    apr_shm_t *shm;
    apr_status_t rv;

    csy_ondemand = NULL;
    if (conf->ondemand != 1 || conf->dynamic != 1) {
        return OK;
    }
    if ((rv = apr_shm_create(&shm, sizeof(csy_od_t), NULL, pconf))
        || (rv = csy_od_init(apr_shm_baseaddr_get(shm),
                             (unsigned)conf->ondemand_rate,
                             (unsigned)conf->ondemand_burst))) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                     CYLOGNO(00175) "on-demand: cannot create its shared "
                     "table (%" APR_SIZE_T_FMT " bytes)", sizeof(csy_od_t));
        return !OK;
    }
    csy_ondemand = apr_shm_baseaddr_get(shm);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00176)
                 "on-demand: new names are asked for from CertService, at "
                 "most %d per second (burst %d); a handshake %s",
                 conf->ondemand_rate, conf->ondemand_burst,
                 conf->ondemand_wait
                 ? apr_psprintf(pconf, "waits up to %d s for its "
                                "certificate", conf->ondemand_wait)
                 : "gets the default certificate meanwhile");
    return OK;
}

/* --- The handshake ---------------------------------------------------- */

int csy_od_handshake(csy_bundle_t **b, conn_rec *c, const char *name)
{
    const csy_conf_t *conf = csy_main_conf;
    csy_od_note_t noted;
    apr_time_t until;
    csy_od_state_t st;
    char err[256];
    int got = 0;

    *b = NULL;
    if (!csy_ondemand) {
        return 0;
    }
    noted = csy_od_note(csy_ondemand, name, apr_time_now());
    if ((noted != CSY_OD_NOTED && noted != CSY_OD_KNOWN)
        || conf->ondemand_wait <= 0 || !csy_cache) {
        return 0;
    }
    if (__atomic_add_fetch(&csy_ondemand->waiters, 1, __ATOMIC_RELAXED)
        > CSY_OD_MAX_WAITERS) {
        __atomic_sub_fetch(&csy_ondemand->waiters, 1, __ATOMIC_RELAXED);
        return 0;
    }
    csy_od_count_wait(csy_ondemand);
    until = apr_time_now() + apr_time_from_sec(conf->ondemand_wait);
    while (apr_time_now() < until) {
        apr_sleep(CSY_OD_WAIT_STEP);
        if (csy_cache_lookup(b, csy_cache, name, err, sizeof(err))
            == APR_SUCCESS) {
            got = 1;
            break;
        }
        st = csy_od_state(csy_ondemand, name, apr_time_now());
        if (st == CSY_OD_REFUSED || st == CSY_OD_FREE) {
            break;      /* refused, or expired: no certificate coming */
        }
    }
    __atomic_sub_fetch(&csy_ondemand->waiters, 1, __ATOMIC_RELAXED);
    if (c) {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c, CYLOGNO(00177)
                      "on-demand: %s %s after waiting", name,
                      got ? "served" : "not served");
    }
    return got;
}

/* --- Status ----------------------------------------------------------- */

json_t *csy_od_status_json(void)
{
    csy_od_counters_t n;
    int pending, queued;

    if (!csy_ondemand) {
        return NULL;
    }
    csy_od_counters(csy_ondemand, &n);
    csy_od_load(csy_ondemand, apr_time_now(), &pending, &queued);
#define J(x) json_integer((json_int_t)(x))
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                     "s:o, s:o, s:o, s:o}",
                     "pending", J(pending), "queued", J(queued),
                     "noted", J(n.noted), "known", J(n.known),
                     "negative", J(n.negative), "limited", J(n.limited),
                     "full", J(n.full), "sent", J(n.sent),
                     "accepted", J(n.accepted), "refused", J(n.refused),
                     "deferred", J(n.deferred), "failed", J(n.failed),
                     "served", J(n.served), "waited", J(n.waited));
#undef J
}

/* --- The daemon ------------------------------------------------------- */

static apr_time_t csy_od_logged;

/* One batch of queued names to CertService; 0 if there was none. */
static int csy_od_send(csy_daemon_t *d, apr_pool_t *p)
{
    apr_array_header_t *names = apr_array_make(p, CSY_OD_BATCH,
                                               sizeof(const char *));
    apr_array_header_t *answers;
    apr_hash_t *seen;
    json_t *body, *list, *resp = NULL;
    const char *err = NULL;
    apr_time_t now = apr_time_now();
    long status = 0;
    apr_status_t rv;
    int i;

    if (!csy_od_take(csy_ondemand, names, p, CSY_OD_BATCH, now)) {
        return 0;
    }
    list = json_array();
    for (i = 0; i < names->nelts; i++) {
        json_array_append_new(list, json_string(APR_ARRAY_IDX(names, i,
                                                              const char *)));
    }
    body = json_pack("{s:o, s:s}", "domains", list, "host",
                     d->cfg.host_name);
    rv = csy_request_json(&resp, &status, d->client, p, "POST",
                          "/v1/on-demand", body, &err);
    json_decref(body);
    if (rv == APR_SUCCESS
        && (rv = csy_od_parse_answer(&answers, p, resp, &err))) {
        err = apr_psprintf(p, "POST /v1/on-demand: %s", err);
    }
    json_decref(resp);
    if (rv != APR_SUCCESS) {
        csy_od_requeue_sent(csy_ondemand, now);
        if (now - csy_od_logged >= CSY_OD_LOG_EVERY) {
            csy_od_logged = now;
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00178)
                         "on-demand: cannot ask CertService for %d names "
                         "(they are asked for again in a few seconds): %s",
                         names->nelts, err ? err : "no answer");
        }
        return 1;
    }
    seen = apr_hash_make(p);
    for (i = 0; i < answers->nelts; i++) {
        const csy_od_answer_t *a = &APR_ARRAY_IDX(answers, i,
                                                  csy_od_answer_t);

        csy_od_apply(csy_ondemand, a->name, a->verdict, a->retry_after,
                     now);
        apr_hash_set(seen, a->name, APR_HASH_KEY_STRING, a);
        if (a->verdict == CSY_OD_V_ACCEPTED) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00179)
                         "on-demand: CertService has %s (%s); it is "
                         "served once the change feed brings it",
                         a->name, a->status);
        }
        else {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, CYLOGNO(00185)
                         "on-demand: %s: %s%s", a->name,
                         cs_printable(p, a->status, strlen(a->status), 32),
                         a->verdict == CSY_OD_V_REFUSED
                         ? ", not asked for again for a while"
                         : ", asked for again later");
        }
    }
    /* A name the answer left out is asked for again later. */
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);

        if (!apr_hash_get(seen, name, APR_HASH_KEY_STRING)) {
            csy_od_apply(csy_ondemand, name, CSY_OD_V_LATER, 0, now);
        }
    }
    return 1;
}

void csy_daemon_od_served(csy_daemon_t *d, apr_hash_t *made_current)
{
    apr_hash_index_t *hi;

    if (!csy_ondemand || !made_current) {
        return;
    }
    for (hi = apr_hash_first(NULL, made_current); hi;
         hi = apr_hash_next(hi)) {
        const char *name = apr_hash_this_key(hi);

        if (csy_od_served(csy_ondemand, name)) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00186)
                         "on-demand: %s is served", name);
        }
    }
}

void csy_daemon_od_idle(csy_daemon_t *d, apr_pool_t *p, int seconds)
{
    apr_time_t start = apr_time_now();
    apr_time_t until = start + apr_time_from_sec(seconds);
    apr_pool_t *sp;
    int pending, queued, sent;

    apr_pool_create(&sp, p);
    while (csy_daemon_ops()->running(d) && apr_time_now() < until) {
        /* Every batch that is due, then a look at what is pending. */
        do {
            sent = csy_od_send(d, sp);
            apr_pool_clear(sp);
        } while (sent && csy_daemon_ops()->running(d));
        csy_od_load(csy_ondemand, apr_time_now(), &pending, &queued);
        if (pending && apr_time_now() - start >= apr_time_from_sec(1)) {
            break;      /* a sync now brings what CertService issued */
        }
        if (csy_daemon_watch_moved(d)) {
            break;      /* the feed moved (CertSyncWatch) */
        }
        apr_sleep(CSY_OD_TICK);
    }
    apr_pool_destroy(sp);
}
