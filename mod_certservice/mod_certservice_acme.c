/*
 * mod_certservice_acme.c: the watchdog glue of the ACME workers: start
 * them once per process, give each thread its allocator, pool, ACME
 * client and database connection, map the drive's log onto the error log,
 * and run due jobs through the pure drive (cs_acme_drive.c).
 */
#include <unistd.h>

#include "apr_hash.h"
#include "apr_strings.h"
#include "http_core.h"
#include "mod_watchdog.h"

#include "cs_acme.h"
#include "cs_acme_drive.h"
#include "mod_certservice_private.h"

static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *cs_dbd_open;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *cs_dbd_close;

/* One worker thread: its own pool and allocator, client and drive. */
typedef struct {
    server_rec *s;
    const cs_conf_t *conf;
    int index;
    apr_pool_t *pool;           /* lives as long as the thread */
    cs_acme_t *acme;
    cs_acme_drive_t *drive;
    /* CertServiceACMEProfile checked against the directory (worker 0);
     * until then, when to try again after the CA did not answer. */
    int profile_checked;
    apr_time_t profile_retry;
} cs_worker_t;

/* The ACME client's own messages. */
static void cs_acme_log(void *baton, cs_log_level_t level, const char *msg)
{
    cs_worker_t *w = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, w->s, CSLOGNO(00012)
                 "acme worker %d: %s", w->index, msg);
}

/* The drive's: they carry their own tags. */
static void cs_drive_log(void *baton, cs_log_level_t level, const char *msg)
{
    cs_worker_t *w = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, w->s, "%s", msg);
}

/* The directory URL of the CA named name, for log lines and events. */
static const char *cs_ca_url(const cs_conf_t *conf, const char *name)
{
    int i;

    for (i = 0; name && conf->acme_issuers && i < conf->acme_issuers->nelts;
         i++) {
        const cs_acme_issuer_conf_t *is =
            APR_ARRAY_IDX(conf->acme_issuers, i,
                          const cs_acme_issuer_conf_t *);

        if (strcmp(is->name, name) == 0) {
            return is->url;
        }
    }
    return conf->acme_url;
}

/* The job's outcome in the error log (the drive logged the details). */
static void cs_log_outcome(cs_worker_t *w, const char *domain,
                           const cs_acme_outcome_t *o)
{
    if (o->new_account) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, w->s, CSLOGNO(00014)
                     "acme: new account %s at %s", o->new_account,
                     cs_ca_url(w->conf, o->ca));
    }
    if (o->moved_from) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, w->s, CSLOGNO(00080)
                     "acme: %s moved from CA %s to CA %s (%s)", domain,
                     o->moved_from, o->ca, cs_ca_url(w->conf, o->ca));
    }
    if (o->result == CS_ACME_JOB_ISSUED || o->result == CS_ACME_JOB_RENEWED) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, w->s, CSLOGNO(00019)
                     "acme: %s %s: serial %s, expires %" APR_INT64_T_FMT
                     ", seq %" APR_INT64_T_FMT ", renewal at %"
                     APR_INT64_T_FMT " (%s)",
                     o->result == CS_ACME_JOB_RENEWED ? "renewed" : "issued",
                     domain, o->bundle->serial, o->bundle->not_after,
                     o->bundle->seq, o->job->renew_at, o->how);
    }
    else if (o->result == CS_ACME_JOB_FAILED) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, w->s, CSLOGNO(00020)
                     "acme: %s failed (attempt %d, next in %"
                     APR_INT64_T_FMT " s): %s", domain, o->job->attempts,
                     o->delay, o->job->last_error);
    }
}

/* The job's outcome as a lifecycle event in the outbox
 * (mod_certservice_notify.c), for the webhook and the command. */
static void cs_notify_outcome(cs_worker_t *w, cs_db_t *db, apr_pool_t *p,
                              const char *domain,
                              const cs_acme_outcome_t *o)
{
    cs_event_t ev;
    const char *disc;

    memset(&ev, 0, sizeof(ev));
    ev.domain = domain;
    ev.ca = cs_ca_url(w->conf, o->ca);
    if (o->moved_from) {
        /* Moved to another CA: its own event, then the renewal's. */
        ev.type = CS_EVENT_MOVED;
        ev.time = apr_time_sec(apr_time_now());
        ev.serial = o->bundle ? o->bundle->serial : NULL;
        ev.not_after = o->bundle ? o->bundle->not_after : 0;
        ev.detail = apr_psprintf(p, "from CA %s to CA %s", o->moved_from,
                                 o->ca);
        cs_notify_emit(w->s, w->conf, db, p, &ev,
                       apr_pstrcat(p, "moved:", ev.serial, NULL));
        ev.serial = NULL;
        ev.not_after = 0;
        ev.detail = NULL;
    }
    ev.time = apr_time_sec(apr_time_now());
    if (o->result == CS_ACME_JOB_ISSUED || o->result == CS_ACME_JOB_RENEWED) {
        ev.type = o->result == CS_ACME_JOB_ISSUED ? CS_EVENT_ISSUED
                                                  : CS_EVENT_RENEWED;
        ev.serial = o->bundle->serial;
        ev.not_after = o->bundle->not_after;
        disc = ev.serial;
    }
    else if (o->result == CS_ACME_JOB_FAILED && o->job) {
        ev.type = CS_EVENT_FAILED;
        ev.error = o->job->last_error;
        ev.problem = cs_notify_problem(p, ev.error);
        ev.attempts = o->job->attempts;
        /* One event per failed attempt: the attempt and when. */
        disc = apr_psprintf(p, "%d@%" APR_INT64_T_FMT, o->job->attempts,
                            ev.time);
    }
    else {
        return;
    }
    cs_notify_emit(w->s, w->conf, db, p, &ev, disc);
}

/* A client for one account at one CA: conf's CA file, chain and EAB. */
static apr_status_t cs_worker_client(cs_acme_t **acme, cs_worker_t *w,
                                     const char *url, const char *ca_file,
                                     const char *chain, const cs_eab_t *eab)
{
    cs_acme_conf_t ac;

    memset(&ac, 0, sizeof(ac));
    ac.directory_url = url;
    ac.ca_file = ca_file;
    ac.preferred_chain = chain;
    ac.log = cs_acme_log;
    ac.log_baton = w;
    ac.challenge = cs_acme_drive_challenge;
    ac.challenge_baton = w->drive;
    ac.challenges = w->conf->acme_challenges;
    if (w->conf->dns) {
        ac.challenges |= CS_ACME_DNS01;
    }
    ac.eab = eab;
    ac.stop = &cs_wd_stop;     /* the child's exit (mod_certservice.c) */
    return cs_acme_create(acme, w->pool, &ac);
}

/* The thread's pool, drive and clients, on its first run: the CA of
 * CertServiceACMEDirectory first, then each <CertServiceACMEIssuer>, a
 * client per account. */
static apr_status_t cs_worker_init(cs_worker_t *w)
{
    const cs_conf_t *conf = w->conf;
    const cs_acme_issuer_conf_t *is;
    apr_allocator_t *alloc;
    cs_acme_policy_t pol;
    cs_acme_ca_t ca;
    cs_acme_t *acme;
    const char *owner;
    apr_status_t rv;
    int i, k, n, accounts;

    if ((rv = apr_allocator_create(&alloc)) != APR_SUCCESS) {
        return rv;
    }
    if ((rv = apr_pool_create_ex(&w->pool, NULL, NULL, alloc))
        != APR_SUCCESS) {
        apr_allocator_destroy(alloc);
        return rv;
    }
    apr_allocator_owner_set(alloc, w->pool);
    memset(&pol, 0, sizeof(pol));
    pol.directory_url = conf->acme_url;
    pol.contact = conf->acme_contact;
    pol.seal_cert = conf->acme_seal_cert;
    pol.seal_key = conf->acme_seal_key;
    pol.wrap_certs = conf->wrap_certs;
    pol.limit = conf->acme_limit;
    pol.window = conf->acme_window;
    pol.backoff = conf->acme_backoff;
    pol.backoff_cap = conf->acme_backoff_cap;
    pol.renew_pm = conf->acme_renew_pm;
    pol.jitter_pm = conf->acme_jitter_pm;
    pol.ari = conf->acme_ari;
    pol.precheck_port = conf->acme_precheck_port;
    pol.precheck_dns = conf->acme_precheck_dns;
    pol.profile = conf->acme_profile;
    pol.dns = conf->dns;
    pol.dns_all = conf->dns_all == 2;
    pol.global_limit = conf->acme_global_limit;
    pol.global_window = conf->acme_global_window;
    owner = apr_psprintf(w->pool, "%.40s:%" APR_PID_T_FMT ":%d",
                         w->s->server_hostname ? w->s->server_hostname
                                               : "cs", getpid(), w->index);
    cs_acme_drive_create(&w->drive, w->pool, &pol, owner, cs_drive_log, w);
    n = conf->acme_issuers ? conf->acme_issuers->nelts : 0;
    for (i = -1; i < n; i++) {
        is = i < 0 ? NULL : APR_ARRAY_IDX(conf->acme_issuers, i,
                                          const cs_acme_issuer_conf_t *);
        memset(&ca, 0, sizeof(ca));
        ca.name = is ? is->name : "default";
        ca.directory_url = is ? is->url : conf->acme_url;
        ca.profile = is ? is->profile : NULL;
        ca.limit = is ? is->limit : 0;
        ca.window = is ? is->window : 0;
        ca.domain_limit = is ? is->domain_limit : conf->acme_domain_limit;
        ca.domain_window = is ? is->domain_window : conf->acme_domain_window;
        accounts = is ? (is->accounts ? is->accounts : 1)
                      : conf->acme_accounts;
        cs_acme_drive_add_ca(w->drive, &ca);
        for (k = 0; k < accounts; k++) {
            rv = is ? cs_worker_client(&acme, w, is->url, is->ca_file,
                                       is->chain, is->eab)
                    : cs_worker_client(&acme, w, conf->acme_url,
                                       conf->acme_ca, conf->acme_chain,
                                       conf->acme_eab);
            if (rv != APR_SUCCESS) {
                apr_pool_destroy(w->pool);
                w->pool = NULL;
                return rv;
            }
            if (!w->acme) {
                w->acme = acme;
            }
            cs_acme_drive_add_account(w->drive, i + 1, &cs_acme_client_ops,
                                      acme);
        }
    }
    return APR_SUCCESS;
}

/* CertServiceACMEProfile against the directory, once it answers: a
 * profile the CA does not offer is a configuration error for the
 * operator (every order with it fails, naming it, too).  Worker 0 only:
 * one line per configuration. */
static void cs_check_profile(cs_worker_t *w)
{
    const char *err = NULL;
    apr_status_t rv;

    if (w->profile_checked || !w->conf->acme_profile || w->index != 0
        || apr_time_now() < w->profile_retry) {
        return;
    }
    rv = cs_acme_profile_check(w->acme, w->conf->acme_profile, &err);
    if (rv == APR_SUCCESS || APR_STATUS_IS_NOTFOUND(rv)) {
        w->profile_checked = 1;
    }
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, w->s, CSLOGNO(00041)
                     "CertServiceACMEProfile %s: %s; orders without a "
                     "profile of their own fail until it is changed",
                     w->conf->acme_profile, err);
    }
    else if (rv == APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->s, CSLOGNO(00042)
                     "CertServiceACMEProfile %s: offered by %s",
                     w->conf->acme_profile, w->conf->acme_url);
    }
    else {
        /* The CA did not answer: again in a minute, not every second. */
        w->profile_retry = apr_time_now() + apr_time_from_sec(60);
    }
}

/* Everything the worker made for itself: at its STOPPING, or at the
 * child's exit (cs_wd_own()). */
static apr_status_t cs_worker_release(void *data)
{
    cs_worker_t *w = data;

    if (w->pool) {
        apr_pool_destroy(w->pool);
        w->pool = NULL;
        w->drive = NULL;
        w->acme = NULL;
    }
    return APR_SUCCESS;
}

/* Due jobs, with a database connection, for a while: then the watchdog
 * gets its thread back (it checks for stopping between calls). */
static void cs_acme_run(cs_worker_t *w, apr_pool_t *wdp)
{
    cs_acme_outcome_t out;
    const char *domain;
    apr_pool_t *jp;
    ap_dbd_t *dbd;
    cs_db_t db;
    apr_status_t rv;
    apr_time_t until = apr_time_now() + apr_time_from_sec(20);

    if (!(dbd = cs_dbd_open(wdp, w->s))) {
        return;
    }
    memset(&db, 0, sizeof(db));
    db.driver = dbd->driver;
    db.handle = dbd->handle;
    db.prepared = dbd->prepared;
    db.log = cs_db_log_server;
    db.log_baton = w->s;
    if (!*w->conf->schema_ready) {
        if ((rv = cs_store_schema(&db, wdp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, w->s, CSLOGNO(00022)
                         "acme: database schema: %s",
                         cs_store_error(&db, wdp, rv));
            cs_dbd_close(w->s, dbd);
            return;
        }
        *w->conf->schema_ready = 1;
    }
    do {
        apr_pool_create(&jp, wdp);
        if (cs_acme_drive_claim(&domain, w->drive, &db, jp) != APR_SUCCESS
            || !domain) {
            apr_pool_destroy(jp);
            break;
        }
        cs_acme_drive_job(&out, w->drive, &db, jp, domain);
        cs_log_outcome(w, domain, &out);
        cs_notify_outcome(w, &db, jp, domain, &out);
        apr_pool_destroy(jp);
    } while (apr_time_now() < until && !cs_wd_stop);
    cs_dbd_close(w->s, dbd);
}

static apr_status_t cs_acme_wd(int state, void *data, apr_pool_t *wdp)
{
    cs_worker_t *w = (cs_worker_t *)data;

    /* Nothing of the worker is touched outside enter and leave: once the
     * child exits, it releases the worker itself (mod_certservice.c). */
    if (!cs_wd_enter()) {
        return APR_SUCCESS;
    }
    if (state == AP_WATCHDOG_STATE_STOPPING) {
        cs_worker_release(w);
    }
    else if (w->pool || cs_worker_init(w) == APR_SUCCESS) {
        cs_check_profile(w);
        cs_acme_run(w, wdp);
    }
    cs_wd_leave();
    return APR_SUCCESS;
}

/* The ACME workers of one configuration: watchdog threads (singletons:
 * in one child process of this instance). */
static int cs_acme_start(apr_pool_t *pconf, server_rec *s,
                         const cs_conf_t *conf, int nth)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_wd;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *reg_wd;
    ap_watchdog_t *wd;
    cs_worker_t *w;
    apr_status_t rv;
    int i;

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
    for (i = 0; i < conf->acme_workers; i++) {
        w = apr_pcalloc(pconf, sizeof(*w));
        w->s = s;
        w->conf = conf;
        w->index = i;
        if ((rv = get_wd(&wd, apr_psprintf(pconf, "certservice-acme-%d-%d",
                                           nth, i), 0, 1, pconf))
            || (rv = reg_wd(wd, apr_time_from_sec(1), w, cs_acme_wd))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CSLOGNO(00026)
                         "cannot start ACME worker %d", i);
            return !OK;
        }
        cs_wd_own(cs_worker_release, w);
    }
    if (conf->acme_eab) {
        /* The key id only: the MAC key is never logged. */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CSLOGNO(00050)
                     "ACME External Account Binding for %s: key id %s, %s",
                     conf->acme_url, conf->acme_eab->kid,
                     conf->acme_eab->alg);
    }
    for (i = 0; conf->acme_issuers && i < conf->acme_issuers->nelts; i++) {
        const cs_acme_issuer_conf_t *is =
            APR_ARRAY_IDX(conf->acme_issuers, i,
                          const cs_acme_issuer_conf_t *);

        /* The key id only: the MAC key is never logged. */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CSLOGNO(00082)
                     "ACME CA %d, %s: %s, %d account(s)%s%s", i + 2,
                     is->name, is->url, is->accounts ? is->accounts : 1,
                     is->eab ? ", External Account Binding key id "
                             : "", is->eab ? is->eab->kid : "");
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CSLOGNO(00027)
                 "ACME issuance through %s: %d workers, %d orders per %"
                 APR_INT64_T_FMT " s", conf->acme_url, conf->acme_workers,
                 conf->acme_limit, conf->acme_window);
    return OK;
}

/*
 * One set of workers for each server whose own configuration names an
 * ACME directory (CertServiceACMEDirectory in the main server or in that
 * virtual host).  A virtual host that only inherits the main server's ACME
 * directives shares the main server's issuer queue and its workers;
 * before, every server_rec whose merged configuration had a directory
 * started a set of its own: N + 1 sets with N inheriting virtual hosts.
 * Two virtual hosts that each name a directory get a set each, since each
 * may keep its queue in a database of its own (DBDParams); on one database
 * their workers take turns through the queue's claims, as several
 * CertService instances do.
 */
int cs_acme_post_config(apr_pool_t *pconf, server_rec *main_s)
{
    /* Across restarts too: every start gets watchdog names of its own. */
    static int nth;
    const cs_conf_t *conf;
    server_rec *s;

    cs_dbd_open = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    cs_dbd_close = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    for (s = main_s; s; s = s->next) {
        conf = cs_config_get(s);
        if (!conf->acme_url && conf->acme_issuers && conf->acme_here) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, CSLOGNO(00081)
                         "<CertServiceACMEIssuer %s> needs "
                         "CertServiceACMEDirectory in the same server: the "
                         "first CA, which the sections follow",
                         APR_ARRAY_IDX(conf->acme_issuers, 0,
                                       const cs_acme_issuer_conf_t *)->name);
            return !OK;
        }
        if (!conf->acme_url || !conf->acme_here) {
            continue;
        }
        if (!nth) {
            cs_acme_global_init();
        }
        if (cs_acme_start(pconf, s, conf, ++nth) != OK) {
            return !OK;
        }
    }
    return OK;
}
