/*
 * mod_certsync_daemon.c: the sync daemon process, from the moment the
 * parent forked it (mod_certsync.c) until it exits.
 *
 * Its log callbacks and signals, the store's lock (one writer at a time
 * across generations), what the previous generation left (the status,
 * quarantine.json) and the rollout machine built from it, the sync loop
 * over csy_sync_once(), dynamic mode's activation of what a cycle
 * changed and the key.seal backfill.
 *
 * Not here (mod_certsync_daemon.h lists them): the status and the other
 * files of the store (mod_certsync_state.c), the thread that answers
 * HAProxy's agent-check (mod_certsync_agent.c), the real operations under
 * the rollout state machine: the configuration test, SIGUSR1 to the
 * parent, the probe of our own listener, leases and reports on
 * CertService (mod_certsync_ops.c).
 */
#include <signal.h>
#include <unistd.h>

#include <jansson.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "unixd.h"

#include "apr_general.h"
#include "apr_signal.h"
#include "apr_strings.h"

#include "cs_seal.h"
#include "csy_agent.h"
#include "csy_dyn.h"
#include "csy_rollout.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "mod_certsync_daemon.h"

/* Seconds between tries after a failed cycle, at most. */
#define CSY_MAX_BACKOFF         600

/* Versions installed before the daemon wrote key.seal (an upgraded
 * store) get one, CSY_SEAL_BATCH per cycle, so that the workers' cache
 * misses stop opening key.cms; the activation of new certificates is not
 * held up by more than a batch. */
#define CSY_SEAL_BATCH 500

/* The start's prune of the whole store runs between cycles, a step of at
 * most this long at a time (csy_daemon_wait): a cycle that is due waits
 * for one step at most, instead of the whole walk (minutes at 1,000,000
 * domains). */
#define CSY_PRUNE_STEP apr_time_from_msec(200)

/* Bytes of freed pool memory the daemon keeps for its next cycle; the
 * rest goes back to the system. */
#define CSY_DAEMON_MAX_FREE (8 * 1024 * 1024)

volatile sig_atomic_t csy_stop;

static void csy_daemon_log(void *baton, cs_log_level_t level,
                           const char *msg)
{
    csy_daemon_t *d = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, d->s, CYLOGNO(00001)
                 "%s", msg);
}

/* The store's: the manifest lines it skipped (they name the manifest, the
 * line and the domain), a prune that kept domains because of them. */
static void csy_store_log(void *baton, cs_log_level_t level, const char *msg)
{
    csy_daemon_t *d = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, d->s, CYLOGNO(00045)
                 "%s", msg);
}

static void csy_on_term(int sig)
{
    csy_stop = 1;
}

/* A prune that failed shows in the status (degraded, with why) until one
 * succeeds: the store keeps what it cannot remove, and at worst fills. */
static void csy_daemon_prune_status(csy_daemon_t *d, apr_pool_t *p,
                                    apr_status_t rv)
{
    json_object_set_new(d->state, "prune_error", rv == APR_SUCCESS
                        ? json_null()
                        : json_string(apr_psprintf(p, "cannot prune the "
                                                   "store %s: %pm",
                                                   d->conf->store_dir,
                                                   &rv)));
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
    apr_status_t rv = APR_SUCCESS, rv2;
    const char *name;
    apr_pool_t *one;

    /* Only what changed: a pass over 100,000 domains per change would
     * cost seconds.  A domain both removed and made current in one cycle
     * (deleted, then added again, or the other way round) is settled by
     * the manifest the cycle wrote: one lookup, not a walk of the store.
     * Each domain's paths and directory reads in a pool cleared for the
     * next: in p they stayed until the next cycle (0.75 MB of the
     * daemon's RSS at 20,000 domains, measured side by side). */
    apr_pool_create(&one, p);
    for (hi = apr_hash_first(p, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        name = apr_hash_this_key(hi);
        apr_pool_clear(one);
        rv2 = apr_hash_get(res->made_current, name, APR_HASH_KEY_STRING)
              ? csy_store_prune_settle(d->store, one, name)
              : csy_store_remove(d->store, one, name);
        if (rv2 != APR_SUCCESS && rv == APR_SUCCESS) {
            rv = rv2;           /* go on with the others */
        }
    }
    for (hi = apr_hash_first(p, res->made_current); hi;
         hi = apr_hash_next(hi)) {
        name = apr_hash_this_key(hi);
        if (!apr_hash_get(res->removed_set, name, APR_HASH_KEY_STRING)) {
            apr_pool_clear(one);
            csy_store_prune(d->store, one, name);
        }
    }
    apr_pool_destroy(one);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00027)
                     "dynamic: cannot prune the store %s",
                     d->conf->store_dir);
    }
    csy_daemon_prune_status(d, p, rv);
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

/* Dynamic mode: a checkpoint of the cycle made its pages durable and
 * listed; what they changed goes live now, not at the cycle's end (a cold
 * sync of 1,000,000 domains held every name until then). */
static void csy_daemon_checkpointed(void *baton, const csy_result_t *res,
                                    apr_pool_t *p)
{
    csy_daemon_t *d = baton;

    csy_dyn_activate(d, p, res);
    csy_daemon_od_served(d, res->made_current);
    d->activated = 1;
}

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

/* Signals, the client, the store and its lock: exits if any fails. */
static void csy_daemon_open(csy_daemon_t *d, apr_pool_t *cycle)
{
    const csy_conf_t *conf = d->conf;
    apr_file_t *lock;
    apr_status_t rv;

    /* The parent's handlers are not ours. */
    apr_signal(SIGTERM, csy_on_term);
    apr_signal(SIGINT, csy_on_term);
    apr_signal(SIGHUP, SIG_IGN);
    apr_signal(SIGUSR1, SIG_IGN);
    apr_signal(SIGWINCH, SIG_IGN);
    apr_signal(SIGPIPE, SIG_IGN);
    apr_signal(SIGCHLD, SIG_DFL);

    d->cfg.url = conf->url;
    d->cfg.client_cert = conf->client_cert;
    d->cfg.client_key = conf->client_key;
    d->cfg.ca_file = conf->ca_file;
    d->cfg.wrap_certs = conf->wrap_certs;
    d->cfg.wrap_keys = conf->wrap_keys;
    d->cfg.seal_keys = conf->dynamic == 1
                       ? cs_seal_keys_derive(d->pool, conf->wrap_keys)
                       : NULL;
    d->cfg.batch_size = conf->batch_size;
    d->cfg.keep_envelopes = conf->dynamic == 1;
    d->cfg.timeout = conf->timeout;
    d->cfg.pool_name = conf->pool_name;
    d->cfg.host_name = conf->host_name;
    d->cfg.log = csy_daemon_log;
    d->cfg.log_baton = d;
    if (conf->dynamic == 1) {
        d->cfg.checkpointed = csy_daemon_checkpointed;
        d->cfg.checkpointed_baton = d;
    }

    if ((rv = csy_store_open(&d->store, d->pool, conf->store_dir))
        || (rv = csy_client_create(&d->client, d->pool, &d->cfg))) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, d->s, CYLOGNO(00002)
                     "sync daemon: cannot open the store %s or a client",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    csy_store_set_log(d->store, csy_store_log, d);
    if (conf->dynamic == 1 && geteuid() == 0) {
        /* The workers read the sealed keys as httpd's Group. */
        csy_store_set_envelope_group(d->store,
                                     (long)ap_unixd_config.group_id);
    }
    /* One writer at a time: the previous generation's daemon may still be
     * finishing a cycle after its SIGTERM.  The kernel drops the lock when
     * a daemon exits, however it exits. */
    rv = apr_file_open(&lock, csy_path(d, d->pool, ".lock"),
                       APR_FOPEN_WRITE | APR_FOPEN_CREATE,
                       APR_FPROT_UREAD | APR_FPROT_UWRITE, d->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_lock(lock, APR_FLOCK_EXCLUSIVE);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, d->s, CYLOGNO(00012)
                     "sync daemon: cannot lock the store %s",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    /* This generation's configuration was built from the manifest as it
     * is now: versions and deleted domains it does not use can go.  The
     * manifest is read now; the walk of the domain directories goes in
     * steps between the cycles (csy_daemon_wait), so that the first
     * cycle does not wait for it. */
    d->started = apr_time_now();
    if ((rv = csy_store_prune_begin(&d->prune, d->store, d->pool))
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00011)
                     "sync daemon: cannot prune the store %s",
                     conf->store_dir);
    }
    d->prune_rv = rv;
    if (conf->dynamic == 1 && csy_shared) {
        /* A daemon before this one may have died between a cycle and its
         * activation: let the workers check everything they cache. */
        csy_gen_bump_all(csy_shared);
    }
}

/* What the previous generation knew: the status, quarantine.json. */
static void csy_daemon_recall(csy_daemon_t *d, apr_pool_t *keep,
                              apr_pool_t *cycle)
{
    const csy_conf_t *conf = d->conf;
    csy_rollout_conf_t rc;
    json_t *j;

    d->state = csy_daemon_state_recall(d, cycle);
    if (!json_is_object(json_object_get(d->state, "counters"))) {
        json_object_set_new(d->state, "counters", json_object());
    }
    /* Until the first cycle says more (a rollback stays shown). */
    if (!json_is_string(json_object_get(d->state, "state"))) {
        csy_set_state(d, CSY_PHASE_STARTING);
    }
    /* The first cycle runs now.  The previous daemon's next_sync is in
     * the future after any restart, and hours ahead if its clock was:
     * shown, it would only mislead. */
    json_object_set_new(d->state, "next_sync",
                        json_integer(apr_time_sec(apr_time_now())));
    json_object_set_new(d->state, "host", json_string(d->cfg.host_name));
    json_object_set_new(d->state, "pool", json_string(d->cfg.pool_name));
    json_object_set_new(d->state, "service", json_string(d->cfg.url));
    json_object_set_new(d->state, "store", json_string(conf->store_dir));

    rc.interval = conf->interval;
    rc.drain_time = conf->drain_time;
    rc.lease_ttl = conf->lease_ttl;
    rc.min_restart_interval = conf->min_restart_interval;
    rc.restart_timeout = conf->restart_timeout;
    rc.agent_grace = CSY_AGENT_GRACE;
    rc.agent_name = conf->agent.host
                    ? apr_psprintf(d->pool, "%s:%d", conf->agent.host,
                                   conf->agent.port)
                    : "(no CertSyncAgent)";
    rc.parent = apr_psprintf(d->pool, "pid %" APR_PID_T_FMT, d->parent);
    j = csy_read_json(d, cycle, "quarantine.json");
    csy_rollout_init(&d->rollout, d->pool, csy_daemon_ops(), d, &rc,
                     d->state, csy_json_hash(d->pool, j));
    json_decref(j);
    d->cfg.quarantine = d->rollout.quarantine;
    /* Skipped bundles stay listed, reported and retried across daemons:
     * a daemon lives only until the next restart, and the cursor has
     * already moved past them. */
    d->failures = csy_json_hash(keep, json_object_get(d->state,
                                                      "failures"));
}

/* A step of the start's prune; at its end, what it did (CY00230), or
 * why it stopped (CY00231, and the status's prune_error). */
static void csy_daemon_prune_step(csy_daemon_t *d, apr_pool_t *p)
{
    apr_status_t rv = csy_store_prune_step(d->prune, CSY_PRUNE_STEP);
    long checked, removed;

    d->prune_steps++;
    if (APR_STATUS_IS_EAGAIN(rv)) {
        return;
    }
    csy_store_prune_counts(d->prune, &checked, &removed);
    csy_store_prune_end(d->prune);
    d->prune = NULL;
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00231)
                     "sync daemon: cannot prune the store %s (%ld domain "
                     "directories checked, %ld removed)",
                     d->conf->store_dir, checked, removed);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00230)
                     "store %s pruned between cycles: %ld domain "
                     "directories checked, %ld removed, in %d steps; done "
                     "%" APR_TIME_T_FMT " s after the daemon's start",
                     d->conf->store_dir, checked, removed, d->prune_steps,
                     apr_time_sec(apr_time_now() - d->started));
    }
    d->prune_rv = rv;
    csy_daemon_prune_status(d, p, rv);
    csy_publish(d);
}

/* The wait of the mode (on-demand issuance, CertSyncWatch, a rollout's
 * leases). */
static void csy_daemon_idle(csy_daemon_t *d, apr_pool_t *p, int seconds)
{
    if (csy_ondemand) {
        csy_daemon_od_idle(d, p, seconds);
    }
    else if (d->watching) {
        csy_daemon_watch_idle(d, seconds);
    }
    else {
        csy_rollout_idle(&d->rollout, seconds);
    }
}

/*
 * The wait between two cycles.  While the start's prune is not done, its
 * steps fill the wait: back to back in dynamic mode (a change that
 * CertSyncWatch sees ends the wait, as before, a step later at most);
 * with on-demand issuance or in vhost mode (a rollout's leases to renew)
 * a second of the mode's own wait after each step.
 */
static void csy_daemon_wait(csy_daemon_t *d, apr_pool_t *p, int seconds)
{
    apr_time_t until = apr_time_now() + apr_time_from_sec(seconds);
    apr_time_t left;

    while (d->prune && csy_daemon_ops()->running(d)
           && !csy_daemon_watch_moved(d) && apr_time_now() < until) {
        csy_daemon_prune_step(d, p);
        if (d->prune && (csy_ondemand || d->conf->dynamic != 1)) {
            csy_daemon_idle(d, p, 1);
        }
    }
    left = until - apr_time_now();
    if (left > 0 && !csy_daemon_watch_moved(d)) {
        csy_daemon_idle(d, p, (int)apr_time_sec(left + APR_USEC_PER_SEC
                                                 - 1));
    }
}

/* One sync cycle and what follows it; the seconds until the next. */
static int csy_daemon_cycle(csy_daemon_t *d, apr_pool_t *cycle, int *backoff)
{
    const csy_conf_t *conf = d->conf;
    apr_time_t now = apr_time_now();
    csy_result_t res;
    apr_hash_index_t *hi;
    const char *state;
    apr_status_t rv;

    csy_retry_writes(d, cycle);
    /* The ticket keys first: a cycle that fails for the bundles may
     * still bring the key that is about to issue. */
    csy_tk_sync(d->s, conf, d->client, d->state, cycle);
    d->activated = 0;
    rv = csy_sync_once(&res, d->client, d->store, d->failures, cycle);
    json_object_set_new(d->state, "last_sync",
                        json_integer(apr_time_sec(now)));
    json_object_set_new(d->state, "cursor", json_integer(res.cursor_after));
    if (res.head > 0 || res.head_exact) {
        /* How far behind CertService the host is (a page read). */
        json_object_set_new(d->state, "service_cursor",
                            json_integer(res.head > res.cursor_after
                                         ? res.head : res.cursor_after));
        json_object_set_new(d->state, "service_cursor_exact",
                            json_boolean(res.head_exact));
    }
    if (res.store_failed) {
        csy_daemon_store_status(d, cycle, res.store_failed,
                                strcmp(res.store_failed, "bundles")
                                ? csy_path(d, cycle, res.store_failed)
                                : conf->store_dir, res.store_error);
    }
    else if (rv == APR_SUCCESS) {
        csy_daemon_store_status(d, cycle, "manifest", NULL, NULL);
        csy_daemon_store_status(d, cycle, "cursor", NULL, NULL);
        csy_daemon_store_status(d, cycle, "bundles", NULL, NULL);
    }
    json_object_set_new(d->state, "failures",
                        csy_hash_json(cycle, d->failures));
    csy_count(d->state, "cycles", 1);
    csy_count(d->state, "installed", res.installed);
    csy_count(d->state, "removed", res.removed);
    for (hi = apr_hash_first(cycle, res.made_current);
         hi && conf->dynamic != 1; hi = apr_hash_next(hi)) {
        csy_rollout_add(&d->rollout, apr_hash_this_key(hi),
                        apr_hash_this_val(hi));
    }
    if (rv) {
        *backoff = *backoff ? *backoff * 2 : conf->interval;
        if (*backoff > CSY_MAX_BACKOFF) {
            *backoff = CSY_MAX_BACKOFF;
        }
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00004)
                     "sync failed: %s; %s; next try in about %ds", res.error,
                     d->activated ? "what its checkpoints made durable "
                     "before is live, nothing else served changed"
                     : "nothing served changed", *backoff);
        json_object_set_new(d->state, "last_error", json_string(res.error));
        json_object_set_new(d->state, "last_error_time",
                            json_integer(apr_time_sec(now)));
        csy_set_state(d, CSY_PHASE_BACKOFF);
        csy_count(d->state, "errors", 1);
        csy_publish(d);
        return *backoff;
    }
    *backoff = 0;
    json_object_set_new(d->state, "last_success",
                        json_integer(apr_time_sec(now)));
    json_object_set_new(d->state, "last_error", json_null());
    json_object_del(d->state, "last_error_time");
    /* A rollback stays visible until the next rollout ends; a host left
     * drained after one (CY00016) until its listener answers again. */
    state = json_string_value(json_object_get(d->state, "state"));
    if (csy_phase_parse(state) == CSY_PHASE_FAILED) {
        csy_rollout_recheck(&d->rollout, cycle);
    }
    else if (csy_phase_parse(state) != CSY_PHASE_ROLLED_BACK) {
        csy_set_state(d, CSY_PHASE_IDLE);
    }
    if (res.changed) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00005)
                     "sync to seq %" APR_INT64_T_FMT ": %d installed, %d "
                     "removed, %d failed", (apr_int64_t)res.cursor_after,
                     res.installed, res.removed,
                     (int)apr_hash_count(d->failures));
    }
    if (conf->dynamic == 1
        && (apr_hash_count(res.made_current)
            || apr_hash_count(res.removed_set)
            || (res.changed && !d->activated))) {
        /* What no checkpoint made live (the retry of earlier failures) */
        csy_dyn_activate(d, cycle, &res);
        csy_daemon_od_served(d, res.made_current);
    }
    else if (res.changed && conf->dynamic != 1) {
        json_object_set_new(d->state, "restart_pending", json_true());
        /* Durable before the rollout starts: a daemon that dies before
         * rollout.json is written (in the configuration test, say)
         * leaves the next one a restart to make. */
        csy_write_json(d, cycle, "state.json", d->state);
    }
    csy_publish(d);
    csy_report(d->client, cycle, res.cursor_after,
               json_is_true(json_object_get(d->state, "restart_pending"))
               ? "restart-pending" : "ready", d->failures);
    if (conf->dynamic == 1 && !d->seals_done) {
        csy_backfill_seals(d, cycle);
    }
    return csy_rollout_cycle(&d->rollout, cycle, res.cursor_after,
                             conf->restart == 1);
}

void csy_daemon_main(server_rec *s, const csy_conf_t *conf, pid_t parent)
{
    csy_daemon_t d;
    apr_pool_t *pool, *cycle, *keep;
    apr_allocator_t *alloc;
    int backoff = 0;

    /* Its own allocator, which gives back what a cycle freed beyond
     * CSY_DAEMON_MAX_FREE: the global one keeps every block it ever
     * handed out, so the daemon stayed at its largest cycle's size (a cold
     * sync) for good. */
    apr_allocator_create(&alloc);
    apr_allocator_max_free_set(alloc, CSY_DAEMON_MAX_FREE);
    apr_pool_create_ex(&pool, NULL, NULL, alloc);
    apr_allocator_owner_set(alloc, pool);
    apr_pool_create(&keep, pool);
    apr_pool_create(&cycle, pool);
    memset(&d, 0, sizeof(d));
    d.s = s;
    d.conf = conf;
    d.pool = pool;
    d.parent = parent;
    /* Until the daemon knows whether a rollout is under way (rollout.json):
     * the agent thread may answer before that. */
    d.health = "drain";
    pthread_mutex_init(&d.agent_mu, NULL);
    apr_cpystrn(d.agent_line, csy_agent_answer(d.health),
                sizeof(d.agent_line));
    csy_daemon_open(&d, cycle);
    csy_daemon_recall(&d, keep, cycle);
    csy_daemon_prune_status(&d, cycle, d.prune_rv);
    csy_publish(&d);
    csy_daemon_agent_start(&d);
    csy_daemon_watch_start(&d);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00003)
                 "sync daemon started (pid %" APR_PID_T_FMT "): %s every "
                 "%ds, store %s", getpid(), d.cfg.url, conf->interval,
                 conf->store_dir);
    if (conf->dynamic == 1) {
        /* A rollout.json left by vhost mode: nothing to restart for. */
        csy_daemon_ops()->remove(&d, cycle, "rollout.json");
        csy_set_health(&d, cycle, "ready");
    }
    else {
        csy_rollout_start(&d.rollout, cycle);
    }

    while (csy_daemon_ops()->running(&d)) {
        apr_time_t now = apr_time_now();
        int wait;

        apr_pool_clear(cycle);
        wait = csy_daemon_cycle(&d, cycle, &backoff);
        csy_daemon_watch_cycled(&d, (long long)json_integer_value(
                                        json_object_get(d.state, "cursor")),
                                backoff != 0);
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
        csy_daemon_wait(&d, cycle, wait);
        if (csy_daemon_watch_moved(&d)) {
            csy_count(d.state, "watch_wakeups", 1);
        }
    }
    json_decref(d.state);
    csy_stop = 1;       /* the agent thread must not outlive the pool */
    apr_pool_destroy(pool);
    exit(0);
}
