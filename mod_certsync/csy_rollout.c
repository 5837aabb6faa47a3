/*
 * csy_rollout.c: the staggered restart of one proxy, as a state machine
 * over an operations table (csy_rollout.h).
 *
 * Pure code: APR and jansson only.  The phases follow ARCHITECTURE.md
 * section 6 and docs/mod_certsync.md: configuration test, lease, drain,
 * graceful restart; in the next generation probe, then ready and release,
 * or roll back, restart again and probe that.  Every wait keeps the lease
 * alive (csy_rollout_idle), and the journal (rollout.json) is written
 * before each step that can end this daemon, so that the next one carries
 * the rollout on from its phase.
 */
#include <stdarg.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_layout.h"
#include "cs_name.h"
#include "csy_rollout.h"

/* Seconds a probe must keep seeing another serial before it counts as a
 * failure: just after a graceful restart a connection may still reach
 * the old generation. */
#define CSY_PROBE_CONFIRM       3

static const char *const csy_phase_names[CSY_PHASE_COUNT] = {
    "starting", "idle", "backoff", "restart-pending", "configtest-failed",
    "waiting-for-lease", "draining", "restarting", "probing",
    "rolling-back", "rolled-back", "failed", "restart-failed"
};

const char *csy_phase_name(csy_phase_t phase)
{
    return phase >= 0 && phase < CSY_PHASE_COUNT ? csy_phase_names[phase]
                                                 : "unknown";
}

csy_phase_t csy_phase_parse(const char *name)
{
    int i;

    for (i = 0; name && i < CSY_PHASE_COUNT; i++) {
        if (strcmp(name, csy_phase_names[i]) == 0) {
            return (csy_phase_t)i;
        }
    }
    return CSY_PHASE_NONE;
}

static void rlog(csy_rollout_t *r, apr_pool_t *p, cs_log_level_t level,
                 const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    r->ops->log(r->baton, level, msg);
}

static void set_state(csy_rollout_t *r, csy_phase_t phase)
{
    json_object_set_new(r->state, "state",
                        json_string(csy_phase_name(phase)));
}

static void count(csy_rollout_t *r, const char *name, json_int_t add)
{
    json_t *counters = json_object_get(r->state, "counters");
    json_int_t v = json_integer_value(json_object_get(counters, name));

    if (!json_is_object(counters)) {
        counters = json_object();
        json_object_set_new(r->state, "counters", counters);
    }
    json_object_set_new(counters, name, json_integer(v + add));
}

static int running(csy_rollout_t *r)
{
    return r->ops->running(r->baton);
}

/* The monotonic clock: every wait and deadline. */
static apr_time_t now(csy_rollout_t *r)
{
    return r->ops->now(r->baton);
}

/* The wall clock: only for times that are saved (seconds). */
static apr_int64_t wall_sec(csy_rollout_t *r)
{
    return apr_time_sec(r->ops->wall(r->baton));
}

json_t *csy_hash_json(apr_pool_t *p, apr_hash_t *h)
{
    json_t *o = json_object();
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, h); hi; hi = apr_hash_next(hi)) {
        json_object_set_new(o, apr_hash_this_key(hi),
                            json_string(apr_hash_this_val(hi)));
    }
    return o;
}

apr_hash_t *csy_json_hash(apr_pool_t *p, json_t *o)
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

/*
 * The last restart, a wall-clock time in seconds (from state.json's
 * last_restart or rollout.json's restart_at; 0: none), onto the monotonic
 * clock that CertSyncMinRestartInterval is measured on.  A time in the
 * future was written while the clock was ahead, and it has been set right
 * since: taken as now, and saved so, so that a pending restart waits
 * CertSyncMinRestartInterval at most, not as long as the clock was wrong.
 */
static void recall_restart(csy_rollout_t *r, apr_pool_t *p, apr_int64_t at,
                           const char *from)
{
    apr_int64_t t = wall_sec(r);

    r->restart_known = at > 0;
    if (!r->restart_known) {
        return;
    }
    if (at > t) {
        rlog(r, p, CS_LOG_WARN, CYLOGNO(00200) "%s: the last restart is "
             "saved as %" APR_INT64_T_FMT ", %" APR_INT64_T_FMT " s in the "
             "future (the clock was ahead when it was written?): taken as "
             "now", from, at, at - t);
        at = t;
        json_object_set_new(r->state, "last_restart", json_integer(t));
    }
    r->restart_mono = now(r) - apr_time_from_sec(t - at);
}

void csy_rollout_init(csy_rollout_t *r, apr_pool_t *pool,
                      const csy_rollout_ops_t *ops, void *baton,
                      const csy_rollout_conf_t *conf, json_t *state,
                      apr_hash_t *quarantine)
{
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    r->baton = baton;
    r->conf = *conf;
    r->pool = pool;
    apr_pool_create(&r->tick, pool);
    r->state = state;
    r->pending = apr_hash_make(pool);
    r->quarantine = quarantine ? quarantine : apr_hash_make(pool);
    r->change_set = 1;      /* the restart pending from a previous daemon */
    recall_restart(r, r->tick, json_integer_value(json_object_get(
                       state, "last_restart")), "state.json");
}

void csy_rollout_add(csy_rollout_t *r, const char *domain,
                     const char *serial)
{
    apr_hash_set(r->pending, apr_pstrdup(r->pool, domain),
                 APR_HASH_KEY_STRING, apr_pstrdup(r->pool, serial));
    r->change_set++;
}

/* A lease id as CertService hands them out and takes them back in a URL
 * path (docs/certservice-api.md): 1 to 64 of A-Z a-z 0-9 . _ - */
static int lease_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n >= 1 && n <= 64
           && s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
                       "WXYZ0123456789._-")] == '\0';
}

/* The journal's domain -> serial pairs that can be the store's (a name
 * the store accepts, a serial): only those are probed, rolled back or
 * pending again.  The others are dropped, counted in *dropped. */
static apr_hash_t *journal_pairs(apr_pool_t *p, json_t *o, int *dropped)
{
    apr_hash_t *h = apr_hash_make(p);
    const char *k, *v;
    json_t *jv;

    *dropped = 0;
    json_object_foreach(o, k, jv) {
        v = json_string_value(jv);
        if (v && cs_name_check(NULL, k, strlen(k), 0) == NULL
            && cs_layout_serial_ok(v, strlen(v))) {
            apr_hash_set(h, apr_pstrdup(p, k), APR_HASH_KEY_STRING,
                         apr_pstrdup(p, v));
        }
        else {
            (*dropped)++;
        }
    }
    return h;
}

/* A rollout's expected set goes back to pending (the restart did not
 * happen, or the predecessor died before it). */
static void pending_again(csy_rollout_t *r, apr_pool_t *p,
                          apr_hash_t *expected)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, expected); hi; hi = apr_hash_next(hi)) {
        apr_hash_set(r->pending, apr_pstrdup(r->pool, apr_hash_this_key(hi)),
                     APR_HASH_KEY_STRING,
                     apr_pstrdup(r->pool, apr_hash_this_val(hi)));
    }
    r->change_set++;
}

/*
 * Keeps the restart lease of the rollout under way alive, in every phase
 * (drain, restart, probe, the wait for the load balancer): renewed every
 * third of CertSyncLeaseTTL.  Asking CertService again renews a live
 * lease; if it expired meanwhile the answer is a new lease, which is ours
 * from then on (the journal names it), or a 409 when another host took
 * the slot: then the daemon asks again, with a jittered backoff.
 */
static void lease_tick(csy_rollout_t *r)
{
    apr_time_t t = now(r);
    const char *id = NULL, *err = "";
    unsigned char rnd = 0;
    long retry;
    apr_status_t rv;
    int wait, third = r->conf.lease_ttl / 3;

    if (!r->lease_wanted || t < r->lease_due) {
        return;
    }
    apr_pool_clear(r->tick);
    rv = r->ops->lease_acquire(r->baton, r->tick, r->conf.lease_ttl, &id,
                               &retry, &err);
    if (rv == APR_SUCCESS) {
        if (!r->lease || strcmp(r->lease, id) != 0) {
            rlog(r, r->tick, CS_LOG_NOTICE, CYLOGNO(00019) "restart lease "
                 "%s had expired; holding lease %s now",
                 r->lease ? r->lease : "(none)", id);
            r->lease = apr_pstrdup(r->pool, id);
            if (r->journal) {
                json_object_set_new(r->journal, "lease", json_string(id));
                r->ops->write_json(r->baton, r->tick, "rollout.json",
                                   r->journal);
            }
        }
        r->lease_backoff = 0;
        r->lease_ok = t;
        r->lease_due = t + apr_time_from_sec(third);
        return;
    }
    wait = r->lease_backoff ? r->lease_backoff * 2 : 1;
    if (wait > third) {
        wait = third;
    }
    r->lease_backoff = wait;
    apr_generate_random_bytes(&rnd, 1);
    r->lease_due = t + apr_time_from_sec(wait)
                   + apr_time_from_msec(rnd * 4 * wait);   /* up to +100% */
    if (rv == APR_EAGAIN) {
        if (r->lease) {
            rlog(r, r->tick, CS_LOG_WARN, CYLOGNO(00020) "restart "
                 "lease %s expired and another host holds the pool's slot "
                 "now; asking again (next in about %ds)", r->lease, wait);
        }
        r->lease = NULL;
    }
    else {
        rlog(r, r->tick, CS_LOG_WARN, CYLOGNO(00021) "renewing restart "
             "lease %s failed: %s; trying again in about %ds",
             r->lease ? r->lease : "(none)", err, wait);
    }
}

/* A rollout starts holding lease (journal: its rollout.json). */
static void lease_hold(csy_rollout_t *r, const char *lease, json_t *journal,
                       int renew_now)
{
    r->lease = apr_pstrdup(r->pool, lease);
    r->lease_wanted = 1;
    r->lease_backoff = 0;
    r->lease_ok = now(r);
    r->lease_due = renew_now ? 0 : now(r)
                   + apr_time_from_sec(r->conf.lease_ttl / 3);
    r->journal = journal;
}

/* The rollout is over: release the lease, never left to expire. */
static void lease_drop(csy_rollout_t *r, apr_pool_t *p)
{
    if (r->lease) {
        r->ops->lease_release(r->baton, p, r->lease);
    }
    r->lease = NULL;
    r->lease_wanted = 0;
    r->journal = NULL;
}

void csy_rollout_idle(csy_rollout_t *r, int seconds)
{
    apr_time_t until = now(r) + apr_time_from_sec(seconds);

    while (running(r) && now(r) < until) {
        lease_tick(r);
        r->ops->sleep(r->baton, apr_time_from_msec(200));
    }
}

/* Until the lease is ours again (after a 409 on renewal).  0: stopping. */
static int lease_wait(csy_rollout_t *r)
{
    while (running(r) && !r->lease) {
        lease_tick(r);
        if (!r->lease) {
            r->ops->sleep(r->baton, apr_time_from_msec(200));
        }
    }
    return r->lease != NULL;
}

/* Has a load balancer asked this daemon's agent?  Its own experience
 * only (for the journal), so that the flag does not outlive an
 * agent-check removed from the load balancer. */
static int agent_asked(csy_rollout_t *r)
{
    apr_uint32_t told = 0, ready = 0;

    r->ops->agent(r->baton, &told, &ready);
    return told > 0;
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
 * that is not asked again within agent_grace seconds is given up on,
 * with a warning.
 */
static void back_in_rotation(csy_rollout_t *r, apr_pool_t *p)
{
    apr_uint32_t told, ready, told_now, ready_now;
    apr_time_t start = now(r), limit;
    int on = r->ops->agent(r->baton, &told, &ready);

    r->ops->set_health(r->baton, p, "ready");
    csy_rollout_idle(r, r->conf.drain_time);
    limit = start + apr_time_from_sec(r->conf.drain_time
                                      + r->conf.agent_grace);
    while (running(r) && on
           && r->ops->agent(r->baton, &told_now, &ready_now)
           && (r->agent_used || told_now > 0) && ready_now == ready) {
        if (now(r) >= limit) {
            rlog(r, p, CS_LOG_WARN, CYLOGNO(00039) "CertSyncAgent %s: "
                 "not asked since this host became ready %" APR_TIME_T_FMT
                 " s ago; the load balancer may still see it draining",
                 r->conf.agent_name, apr_time_sec(now(r) - start));
            break;
        }
        lease_tick(r);
        r->ops->sleep(r->baton, apr_time_from_msec(50));
    }
}

/*
 * The graceful restart (phase: restarting, or rolling-back): the journal
 * first, since the restart ends this daemon and the next one resumes from
 * it.  Should the parent not restart: back in rotation, the change pending
 * again, the lease released.
 */
static void restart(csy_rollout_t *r, apr_pool_t *p, json_t *journal,
                    csy_phase_t phase)
{
    json_object_set_new(journal, "phase",
                        json_string(csy_phase_name(phase)));
    json_object_set_new(journal, "restart_at", json_integer(wall_sec(r)));
    json_object_set_new(journal, "agent_used",
                        json_boolean(agent_asked(r)));
    if (r->ops->write_json(r->baton, p, "rollout.json", journal)
        != APR_SUCCESS && phase == CSY_PHASE_RESTARTING) {
        /* The next daemon would not probe what it serves: no restart.  A
         * rollback restarts anyway, to serve what worked. */
        rlog(r, p, CS_LOG_ERR, CYLOGNO(00173) "cannot write rollout.json, "
             "the rollout's journal: not restarting; ready again, the "
             "restart stays pending");
        pending_again(r, p, csy_json_hash(p, json_object_get(journal,
                                                         "expected")));
        json_object_set_new(r->state, "restart_pending", json_true());
        r->journal = NULL;
        r->ops->remove(r->baton, p, "rollout.json");
        set_state(r, CSY_PHASE_RESTART_PENDING);
        back_in_rotation(r, p);
        lease_drop(r, p);
        return;
    }
    set_state(r, phase);
    count(r, "restarts", 1);
    r->ops->write_json(r->baton, p, "state.json", r->state);
    r->ops->graceful(r->baton);
    csy_rollout_idle(r, r->conf.restart_timeout);
    if (!running(r)) {
        return;
    }
    rlog(r, p, CS_LOG_ERR, CYLOGNO(00023) "the parent (%s) did not "
         "restart within CertSyncRestartTimeout (%ds): ready again, the "
         "restart stays pending", r->conf.parent, r->conf.restart_timeout);
    if (phase == CSY_PHASE_RESTARTING) {
        pending_again(r, p, csy_json_hash(p, json_object_get(journal,
                                                         "expected")));
    }
    json_object_set_new(r->state, "restart_pending", json_true());
    count(r, "restart_failures", 1);
    r->journal = NULL;      /* a lease renewed meanwhile must not write it */
    r->ops->remove(r->baton, p, "rollout.json");
    set_state(r, CSY_PHASE_RESTART_FAILED);
    back_in_rotation(r, p);
    lease_drop(r, p);
}

/* The predecessor died while draining, before it asked for the restart:
 * nothing was rolled back, and the new certificates may not be live.
 * The rollout starts again. */
static void resume_draining(csy_rollout_t *r, apr_pool_t *p,
                            apr_hash_t *expected, const char *lease)
{
    pending_again(r, p, expected);
    json_object_set_new(r->state, "restart_pending", json_true());
    r->ops->remove(r->baton, p, "rollout.json");
    /* The predecessor's lease, kept alive until the load balancer has
     * this host back (no journal to update meanwhile). */
    lease_hold(r, lease, NULL, 1);
    back_in_rotation(r, p);
    lease_drop(r, p);
}

/* Probes until the listener answers as expected, answers wrong for
 * CSY_PROBE_CONFIRM seconds, or CertSyncRestartTimeout is over. */
static int probe_until(csy_rollout_t *r, apr_pool_t *p,
                       apr_hash_t *expected, apr_hash_t *mismatched,
                       const char **why)
{
    apr_time_t deadline, first_mismatch = 0;
    apr_pool_t *pp;
    int rc = CSY_PROBE_NOT_READY, told = 0;

    deadline = now(r) + apr_time_from_sec(r->conf.restart_timeout);
    apr_pool_create(&pp, p);
    while (running(r) && now(r) < deadline) {
        apr_time_t t = now(r);

        apr_pool_clear(pp);
        apr_hash_clear(mismatched);
        rc = r->ops->probe(r->baton, pp, expected, mismatched, why);
        if (rc == CSY_PROBE_OK) {
            break;
        }
        if (rc == CSY_PROBE_MISMATCH) {
            /* It answers: a wrong serial is a failure once it lasts. */
            if (!first_mismatch) {
                first_mismatch = t;
            }
            else if (t - first_mismatch
                     >= apr_time_from_sec(CSY_PROBE_CONFIRM)) {
                break;
            }
        }
        else if (!told) {
            rlog(r, p, CS_LOG_INFO, CYLOGNO(00022) "probe: the restarted "
                 "listener does not answer yet (%s); trying again for up "
                 "to %ds", *why, r->conf.restart_timeout);
            told = 1;
        }
        csy_rollout_idle(r, 1);
    }
    /* What the probe said outlives pp. */
    *why = *why ? apr_pstrdup(p, *why) : "no probe ran";
    return rc;
}

/* The listener answers as it should after a restart: the rollout (or its
 * rollback) is over. */
static void resume_done(csy_rollout_t *r, apr_pool_t *p, json_t *journal,
                        int restarting, apr_hash_t *expected)
{
    json_t *at = json_object_get(journal, "restart_at");
    apr_int64_t at_sec = json_is_integer(at) ? json_integer_value(at) : 0;

    if (restarting) {
        rlog(r, p, CS_LOG_NOTICE, CYLOGNO(00014) "rollout complete: %u "
             "new certificates served", apr_hash_count(expected));
        set_state(r, CSY_PHASE_IDLE);
    }
    else {
        rlog(r, p, CS_LOG_CRIT, CYLOGNO(00015) "rollout failed and was "
             "rolled back: %s", json_string_value(json_object_get(
                 journal, "failure")));
        set_state(r, CSY_PHASE_ROLLED_BACK);
        json_object_set(r->state, "last_rollout_failure",
                        json_object_get(journal, "failure"));
    }
    /* When the restart was asked for; anything but a positive number (a
     * damaged journal) is no known restart, and recall_restart() takes one
     * in the future (the clock was ahead) as now. */
    json_object_set_new(r->state, "last_restart",
                        json_integer(at_sec > 0 ? at_sec : 0));
    recall_restart(r, p, at_sec, "rollout.json");
    r->journal = NULL;      /* a lease renewed meanwhile must not write it */
    r->ops->remove(r->baton, p, "rollout.json");
    if (!r->lease) {
        r->lease_wanted = 0;    /* lost meanwhile: no slot to take now */
    }
    back_in_rotation(r, p);
    lease_drop(r, p);
}

/* Even the rolled-back generation does not answer: no restart in a loop.
 * The host stays out of rotation, loudly (state, log, report); the lease
 * is released so that the pool goes on. */
static void resume_failed(csy_rollout_t *r, apr_pool_t *p, json_t *journal,
                          const char *why)
{
    const char *failure = json_string_value(json_object_get(journal,
                                                            "failure"));

    rlog(r, p, CS_LOG_CRIT, CYLOGNO(00016) "after the rollback the "
         "listener still fails its probe (%s): staying drained; lease "
         "released", why);
    set_state(r, CSY_PHASE_FAILED);
    json_object_set_new(r->state, "last_rollout_failure",
                        json_string(apr_psprintf(p, "%s; after the "
                                                 "rollback: %s",
                                                 failure ? failure : "",
                                                 why)));
    r->ops->write_json(r->baton, p, "state.json", r->state);
    r->ops->remove(r->baton, p, "rollout.json");
    r->ops->report(r->baton, p, json_integer_value(json_object_get(
                       journal, "cursor")), "failed");
    lease_drop(r, p);
}

/* The restarted generation serves some certificates wrong (mismatched),
 * or does not answer at all: those (or all) go back and into quarantine,
 * then the host restarts again, with the lease. */
static void resume_rollback(csy_rollout_t *r, apr_pool_t *p, json_t *journal,
                            int rc, apr_hash_t *expected,
                            apr_hash_t *mismatched, const char *why)
{
    apr_hash_t *back;
    apr_hash_index_t *hi;
    json_t *q;

    if (rc == CSY_PROBE_MISMATCH) {
        /* Only what is served wrong goes back (and into quarantine): the
         * other new certificates were presented as they should be. */
        back = mismatched;
        rlog(r, p, CS_LOG_CRIT, CYLOGNO(00017) "probe after restart "
             "failed (%s): rolling the store back for %u of the %u new "
             "certificates", why, apr_hash_count(back),
             apr_hash_count(expected));
    }
    else {
        /* Never answered: nothing can be told apart, all of it goes. */
        back = expected;
        why = apr_psprintf(p, "the restarted generation did not answer "
                           "within CertSyncRestartTimeout (%ds): %s",
                           r->conf.restart_timeout, why);
        rlog(r, p, CS_LOG_CRIT, CYLOGNO(00025) "%s; rolling the store "
             "back for the %u new certificates", why, apr_hash_count(back));
    }
    for (hi = apr_hash_first(p, back); hi; hi = apr_hash_next(hi)) {
        const char *domain = apr_hash_this_key(hi);

        apr_hash_set(r->quarantine, apr_pstrdup(r->pool, domain),
                     APR_HASH_KEY_STRING,
                     apr_pstrdup(r->pool, apr_hash_this_val(hi)));
        r->ops->rollback(r->baton, p, domain);
    }
    q = csy_hash_json(p, r->quarantine);
    r->ops->write_json(r->baton, p, "quarantine.json", q);
    json_decref(q);
    json_object_set_new(journal, "failure", json_string(why));
    json_object_set_new(journal, "rolled_back", csy_hash_json(p, back));
    count(r, "rollbacks", 1);
    /* Another restart: only with the lease. */
    if (!lease_wait(r)) {
        return;
    }
    restart(r, p, journal, CSY_PHASE_ROLLING_BACK);
}

/*
 * The second half of a rollout, in the daemon of the new generation:
 * renew the lease, probe until the listener answers, then release the
 * lease; or roll the store back and restart.
 */
static void resume(csy_rollout_t *r, apr_pool_t *p, json_t *journal)
{
    const char *name = json_string_value(json_object_get(journal, "phase"));
    csy_phase_t phase = csy_phase_parse(name);
    const char *lease = json_string_value(json_object_get(journal, "lease"));
    apr_hash_t *expected, *mismatched = apr_hash_make(p);
    const char *why = NULL;
    int rc, dropped;

    /* A journal's phase is draining, restarting or rolling-back (does
     * the listener answer at all?).  Without one of those or a lease
     * nothing can be carried on: whatever the predecessor installed may
     * not be live, so the restart is pending again; the host goes back in
     * rotation. */
    if (!name || !lease_ok(lease) || (phase != CSY_PHASE_DRAINING
                                      && phase != CSY_PHASE_RESTARTING
                                      && phase != CSY_PHASE_ROLLING_BACK)) {
        rlog(r, p, CS_LOG_ERR, CYLOGNO(00170) "rollout.json is not a "
             "journal this daemon can carry on (%s): removed; back in "
             "rotation, the restart pending again", !name ? "no phase"
             : !lease_ok(lease) ? "no valid lease id"
             : apr_psprintf(p, "phase '%s'", cs_printable(p, name,
                                                          strlen(name),
                                                          40)));
        json_object_set_new(r->state, "restart_pending", json_true());
        r->ops->remove(r->baton, p, "rollout.json");
        r->ops->set_health(r->baton, p, "ready");
        return;
    }
    /* Only pairs that can be the store's are probed or rolled back; the
     * journal is written again with those only. */
    expected = journal_pairs(p, json_object_get(journal, "expected"),
                             &dropped);
    if (dropped) {
        rlog(r, p, CS_LOG_WARN, CYLOGNO(00171) "rollout.json: %d entries "
             "of \"expected\" are not a domain name and a serial; "
             "ignored", dropped);
    }
    json_object_set_new(journal, "expected", csy_hash_json(p, expected));
    r->agent_used = json_is_true(json_object_get(journal, "agent_used"));
    if (phase == CSY_PHASE_DRAINING) {
        resume_draining(r, p, expected, lease);
        return;
    }
    if (phase == CSY_PHASE_RESTARTING) {
        set_state(r, CSY_PHASE_PROBING);
        r->ops->write_json(r->baton, p, "state.json", r->state);
    }
    else {
        expected = apr_hash_make(p);    /* does it answer at all? */
    }
    /* Renewed at once (the restart may have taken a while), then every
     * third of its TTL.  If another host holds the slot now, the probe
     * goes on meanwhile (this host is out of rotation already: waiting
     * would only keep it out longer); a restart waits for the lease. */
    lease_hold(r, lease, journal, 1);
    lease_tick(r);
    rc = probe_until(r, p, expected, mismatched, &why);
    if (!running(r)) {
        return;
    }
    if (rc == CSY_PROBE_OK) {
        resume_done(r, p, journal, phase == CSY_PHASE_RESTARTING, expected);
    }
    else if (phase != CSY_PHASE_RESTARTING) {
        resume_failed(r, p, journal, why);
    }
    else {
        resume_rollback(r, p, journal, rc, expected, mismatched, why);
    }
}

void csy_rollout_start(csy_rollout_t *r, apr_pool_t *p)
{
    json_t *journal = r->ops->read_json(r->baton, p, "rollout.json");

    if (!json_is_object(journal)) {
        r->ops->set_health(r->baton, p, "ready");
    }
    else {
        r->ops->set_health(r->baton, p, "drain");
        resume(r, p, journal);
        r->journal = NULL;
    }
    json_decref(journal);
}

/*
 * The first half of a rollout: lease, drain, restart.  Returns the seconds
 * to wait before the next cycle when the rollout has to wait.
 */
static int rollout(csy_rollout_t *r, apr_pool_t *p, long long cursor)
{
    apr_int64_t since = apr_time_sec(now(r) - r->restart_mono);
    const char *lease = NULL, *err = "", *output = "";
    json_t *journal;
    long retry = 0;
    apr_status_t rv;
    int code;

    if (r->restart_known && since < r->conf.min_restart_interval) {
        set_state(r, CSY_PHASE_RESTART_PENDING);
        return (int)(r->conf.min_restart_interval - since);
    }
    /* Once per change set, not per lease retry (tens of seconds with
     * 10,000 virtual hosts); a failed test runs again each cycle, so that
     * a fixed configuration is seen. */
    if (r->tested_set != r->change_set) {
        if ((code = r->ops->configtest(r->baton, p, &output)) != 0) {
            rlog(r, p, CS_LOG_ERR, CYLOGNO(00007) "configuration test "
                 "failed (exit %d): not restarting; what is served stays "
                 "served: %s", code, output);
            set_state(r, CSY_PHASE_CONFIGTEST_FAILED);
            count(r, "configtest_failures", 1);
            return 0;
        }
        r->tested_set = r->change_set;
    }
    rv = r->ops->lease_acquire(r->baton, p, r->conf.lease_ttl, &lease,
                               &retry, &err);
    if (rv == APR_EAGAIN) {
        /* Retry-After is when the held lease would expire; the holder
         * usually releases it much sooner, so ask again each interval. */
        set_state(r, CSY_PHASE_WAITING_FOR_LEASE);
        return (int)(retry < 1 ? 1 : retry < r->conf.interval
                                     ? retry : r->conf.interval);
    }
    if (rv != APR_SUCCESS) {
        rlog(r, p, CS_LOG_WARN, CYLOGNO(00018) "no restart lease: %s; "
             "trying again later", err);
        set_state(r, CSY_PHASE_WAITING_FOR_LEASE);
        return 0;
    }
    rlog(r, p, CS_LOG_NOTICE, CYLOGNO(00006) "lease %s: draining for %ds, "
         "then a graceful restart to serve %u new certificates", lease,
         r->conf.drain_time, apr_hash_count(r->pending));
    journal = json_pack("{s:s, s:s, s:o, s:I}", "phase",
                        csy_phase_name(CSY_PHASE_DRAINING), "lease", lease,
                        "expected", csy_hash_json(p, r->pending), "cursor",
                        (json_int_t)cursor);
    json_object_set_new(journal, "agent_used", json_boolean(agent_asked(r)));
    if (r->ops->write_json(r->baton, p, "rollout.json", journal)
        != APR_SUCCESS) {
        /* A restart the next daemon could not carry on: none. */
        rlog(r, p, CS_LOG_ERR, CYLOGNO(00172) "cannot write rollout.json, "
             "the rollout's journal: not draining, the restart stays "
             "pending; what is served stays served");
        r->ops->lease_release(r->baton, p, lease);
        set_state(r, CSY_PHASE_RESTART_PENDING);
        json_decref(journal);
        return r->conf.interval;
    }
    lease_hold(r, lease, journal, 0);
    set_state(r, CSY_PHASE_DRAINING);
    r->ops->set_health(r->baton, p, "drain");
    r->ops->report(r->baton, p, cursor, "draining");
    csy_rollout_idle(r, r->conf.drain_time);
    if (!running(r)) {
        r->journal = NULL;
        json_decref(journal);
        return 0;
    }
    if (!r->lease || now(r) - r->lease_ok
                     >= apr_time_from_sec(r->conf.lease_ttl)) {
        /* Taken by another host, or not renewed for a whole TTL: no
         * restart without it.  Back in rotation; the rollout waits. */
        rlog(r, p, CS_LOG_WARN, CYLOGNO(00024) "restart lease lost "
             "while draining: ready again, the restart stays pending");
        r->ops->remove(r->baton, p, "rollout.json");
        set_state(r, CSY_PHASE_WAITING_FOR_LEASE);
        r->ops->set_health(r->baton, p, "ready");
        lease_drop(r, p);
        json_decref(journal);
        return r->conf.interval;
    }
    r->ops->report(r->baton, p, cursor, "restarting");
    apr_hash_clear(r->pending);
    restart(r, p, journal, CSY_PHASE_RESTARTING);
    r->journal = NULL;
    json_decref(journal);
    return 0;
}

int csy_rollout_cycle(csy_rollout_t *r, apr_pool_t *p, long long cursor,
                      int restart_on)
{
    const char *state;
    int wait;

    if (!json_is_true(json_object_get(r->state, "restart_pending"))) {
        return 0;
    }
    if (!restart_on) {
        set_state(r, CSY_PHASE_RESTART_PENDING);
        return 0;
    }
    /* Cleared first: a restart ends this daemon. */
    json_object_set_new(r->state, "restart_pending", json_false());
    wait = rollout(r, p, cursor);
    state = json_string_value(json_object_get(r->state, "state"));
    if (wait || csy_phase_parse(state) == CSY_PHASE_CONFIGTEST_FAILED) {
        json_object_set_new(r->state, "restart_pending", json_true());
    }
    return wait;
}

void csy_rollout_recheck(csy_rollout_t *r, apr_pool_t *p)
{
    apr_hash_t *none;
    const char *why = NULL;
    csy_phase_t phase = csy_phase_parse(json_string_value(
                            json_object_get(r->state, "state")));

    if (phase != CSY_PHASE_FAILED) {
        return;
    }
    none = apr_hash_make(p);
    if (r->ops->probe(r->baton, p, none, none, &why) == CSY_PROBE_OK) {
        rlog(r, p, CS_LOG_NOTICE, CYLOGNO(00026) "the listener answers "
             "again: back in rotation");
        set_state(r, CSY_PHASE_ROLLED_BACK);
        r->ops->set_health(r->baton, p, "ready");
    }
}
