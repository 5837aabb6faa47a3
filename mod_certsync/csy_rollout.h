/*
 * csy_rollout.h: the staggered restart of one proxy (ARCHITECTURE.md
 * section 6) as a state machine over an operations table.
 *
 * Pure code: APR and jansson; no httpd types.  Everything the rollout does
 * to the world goes through csy_rollout_ops_t (the configuration test, the
 * graceful restart, the probe, the health the load balancer sees, reports
 * and leases on CertService, the clocks, the journal STORE/rollout.json),
 * so that a unit test drives every path with fake operations and fake
 * clocks; the sync daemon installs the real ones (mod_certsync_ops.c).
 *
 * Two clocks: every wait and deadline runs on the monotonic one (now),
 * which no step of the wall clock moves; the wall clock (wall) only
 * stamps what is saved for people and for the next daemon (restart_at,
 * last_restart).  A saved wall-clock time that lies in the future (the
 * clock was ahead when it was written, and has been set right since) is
 * taken as "now", once, with a warning (CY00200): it never holds the
 * daemon back for as long as the clock was wrong.
 *
 * A rollout spans two daemons: the one of the generation that asks for
 * the graceful restart (csy_rollout_cycle: configuration test, lease,
 * drain, restart) and the one of the next generation
 * (csy_rollout_start: probe, then ready and release, or roll back and
 * restart again).  What passes between them is the journal, rollout.json:
 * {"phase", "lease", "expected": {domain: serial}, "cursor",
 * "agent_used", "restart_at", and after a rollback "failure" and
 * "rolled_back"}.  Its phase names, like every state string of the status
 * page, are those of csy_phase_name().
 */
#ifndef CSY_ROLLOUT_H
#define CSY_ROLLOUT_H

#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_time.h>

#include <jansson.h>

#include "cs_log.h"

/* The states the status page shows (state.json "state"); draining,
 * restarting and rolling-back are also the journal's phases. */
typedef enum {
    CSY_PHASE_STARTING,             /* until the first cycle ends */
    CSY_PHASE_IDLE,
    CSY_PHASE_BACKOFF,              /* the last cycle failed */
    CSY_PHASE_RESTART_PENDING,      /* CertSyncRestart off, or too soon */
    CSY_PHASE_CONFIGTEST_FAILED,
    CSY_PHASE_WAITING_FOR_LEASE,
    CSY_PHASE_DRAINING,
    CSY_PHASE_RESTARTING,
    CSY_PHASE_PROBING,
    CSY_PHASE_ROLLING_BACK,
    CSY_PHASE_ROLLED_BACK,
    CSY_PHASE_FAILED,               /* even the rollback does not answer */
    CSY_PHASE_RESTART_FAILED,       /* the parent did not restart */
    CSY_PHASE_COUNT,
    CSY_PHASE_NONE = -1             /* not a phase name */
} csy_phase_t;

/** "starting", "idle", ... as in state.json and rollout.json. */
const char *csy_phase_name(csy_phase_t phase);
/** The phase of a name; CSY_PHASE_NONE for NULL or an unknown name. */
csy_phase_t csy_phase_parse(const char *name);

/** A JSON object of a hash of strings (domain -> serial, say). */
json_t *csy_hash_json(apr_pool_t *p, apr_hash_t *h);
/** The string members of a JSON object (NULL: none), copied into p. */
apr_hash_t *csy_json_hash(apr_pool_t *p, json_t *o);

/* csy_rollout_ops_t.probe */
#define CSY_PROBE_OK            0
#define CSY_PROBE_NOT_READY     1   /* no handshake: not listening yet */
#define CSY_PROBE_MISMATCH      2   /* it answers with other certificates */

typedef struct csy_rollout_ops_t {
    /** 0 once the daemon is to stop (SIGTERM, the parent gone). */
    int (*running)(void *baton);
    /** The monotonic clock (csy_clock_mono): intervals and deadlines. */
    apr_time_t (*now)(void *baton);
    /** The wall clock (apr_time_now): times saved in the journal and
     * state.json, shown to people. */
    apr_time_t (*wall)(void *baton);
    void (*sleep)(void *baton, apr_interval_time_t t);
    /** httpd -t: its exit code (-1: did not run), *output what it said. */
    int (*configtest)(void *baton, apr_pool_t *p, const char **output);
    /** Ask the parent for a graceful restart. */
    void (*graceful)(void *baton);
    /**
     * Handshakes with our own listener: CSY_PROBE_OK when every domain of
     * expected (domain -> serial) is presented with its serial;
     * CSY_PROBE_MISMATCH with the wrong ones in mismatched;
     * CSY_PROBE_NOT_READY when it does not answer.  *why says why not.
     * An empty expected: does it answer at all?
     */
    int (*probe)(void *baton, apr_pool_t *p, apr_hash_t *expected,
                 apr_hash_t *mismatched, const char **why);
    /** "ready" or "drain" (string literals) for the load balancer. */
    void (*set_health)(void *baton, apr_pool_t *p, const char *health);
    /** POST /v1/hosts/HOST/report. */
    void (*report)(void *baton, apr_pool_t *p, long long cursor,
                   const char *state);
    /** Ask for (or renew) the pool's restart lease: csy_lease_acquire. */
    apr_status_t (*lease_acquire)(void *baton, apr_pool_t *p, int ttl,
                                  const char **lease, long *retry_after,
                                  const char **err);
    void (*lease_release)(void *baton, apr_pool_t *p, const char *lease);
    /** The domain's previous version becomes current again (or, for a new
     * domain, it leaves the manifest). */
    apr_status_t (*rollback)(void *baton, apr_pool_t *p, const char *domain);
    /** Files of the store: "rollout.json" (the journal), "state.json",
     * "quarantine.json".  read: NULL when missing or not JSON. */
    json_t *(*read_json)(void *baton, apr_pool_t *p, const char *name);
    /** Returns APR_SUCCESS or why the file could not be written: without
     * its journal a host neither drains nor restarts for a rollout. */
    apr_status_t (*write_json)(void *baton, apr_pool_t *p, const char *name,
                               json_t *j);
    void (*remove)(void *baton, apr_pool_t *p, const char *name);
    /** The agent-check answers sent so far (all, and "ready" ones);
     * returns 0 when no agent listens. */
    int (*agent)(void *baton, apr_uint32_t *told, apr_uint32_t *told_ready);
    /** A log line, CYnnnnn tag included: a rollout's alerts are at
     * CS_LOG_CRIT, its milestones at CS_LOG_NOTICE. */
    cs_log_fn *log;
} csy_rollout_ops_t;

typedef struct {
    int interval;               /* seconds: CertSyncInterval */
    int drain_time;
    int lease_ttl;
    int min_restart_interval;
    int restart_timeout;
    int agent_grace;            /* seconds; CSY_AGENT_GRACE in the daemon */
    const char *agent_name;     /* "host:port" for log lines */
    const char *parent;         /* "pid N" for log lines */
} csy_rollout_conf_t;

typedef struct csy_rollout_t {
    const csy_rollout_ops_t *ops;
    void *baton;
    csy_rollout_conf_t conf;
    apr_pool_t *pool;           /* lives as long as the daemon */
    apr_pool_t *tick;           /* lease renewals */
    /* The daemon's state.json (borrowed): state, counters,
     * restart_pending, last_restart, last_rollout_failure. */
    json_t *state;
    apr_hash_t *pending;        /* domain -> serial installed, not live */
    apr_hash_t *quarantine;     /* domain -> serial rolled back */
    apr_uint64_t change_set;    /* bumped when pending grows */
    apr_uint64_t tested_set;    /* the change set that passed httpd -t */
    /* The lease. */
    const char *lease;          /* held, or NULL */
    int lease_wanted;           /* a rollout is under way: hold a lease */
    int lease_backoff;          /* seconds, after a failed renewal */
    apr_time_t lease_due;       /* when to renew it (or ask again) */
    apr_time_t lease_ok;        /* when it was granted or renewed */
    json_t *journal;            /* rollout.json of the rollout under way */
    /* The previous generation's agent was asked (rollout.json). */
    int agent_used;
    /* The last restart on the monotonic clock (CertSyncMinRestartInterval),
     * from last_restart as it was read; restart_known: there was one. */
    apr_time_t restart_mono;
    int restart_known;
} csy_rollout_t;

/**
 * A machine for one daemon.  state: the daemon's state.json object;
 * quarantine: domain -> serial, read from quarantine.json by the caller.
 * Its pending set starts empty and change_set at 1 (a restart pending
 * from a previous daemon is tested again).  A last_restart in state that
 * lies in the future is taken as now (CY00200) and saved so.
 */
void csy_rollout_init(csy_rollout_t *r, apr_pool_t *pool,
                      const csy_rollout_ops_t *ops, void *baton,
                      const csy_rollout_conf_t *conf, json_t *state,
                      apr_hash_t *quarantine);

/**
 * At the daemon's start: reads the journal; none, the host is "ready";
 * else it is "drain" and the rollout a predecessor began is carried on
 * (probe, release or roll back).  Returns when that part is over (or the
 * daemon is stopping, e.g. after a restart it asked for).
 */
void csy_rollout_start(csy_rollout_t *r, apr_pool_t *p);

/** A domain made current by a sync cycle: it joins the next rollout. */
void csy_rollout_add(csy_rollout_t *r, const char *domain,
                     const char *serial);

/**
 * After a successful sync cycle with restart_pending set in the state:
 * restart_on 0 (CertSyncRestart off) only shows restart-pending; else a
 * rollout runs (configuration test once per change set, lease, drain,
 * graceful restart).  Returns the seconds to wait before the next cycle
 * when the rollout has to wait (0: the usual interval).
 */
int csy_rollout_cycle(csy_rollout_t *r, apr_pool_t *p, long long cursor,
                      int restart_on);

/**
 * A host left drained after a failed rollback ("failed"): once the
 * listener answers again it goes back in rotation ("rolled-back").
 */
void csy_rollout_recheck(csy_rollout_t *r, apr_pool_t *p);

/** Waits about seconds, keeping the lease of a rollout alive. */
void csy_rollout_idle(csy_rollout_t *r, int seconds);

#endif /* CSY_ROLLOUT_H */
