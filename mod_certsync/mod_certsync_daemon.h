/*
 * mod_certsync_daemon.h: what the glue files of the sync daemon process
 * share: the daemon's type (csy_daemon_t), its stop flag and the
 * functions one of them calls in another.  The daemon runs in a process
 * of its own (mod_certsync.c forks it); nothing here is for the workers,
 * and nothing for the pure code (csy_*.c), which must build without
 * httpd's headers.
 *
 *   mod_certsync_daemon.c  the process: signals, the store's lock, what
 *                          the previous generation left, the sync loop,
 *                          dynamic activation, the key.seal backfill
 *   mod_certsync_state.c   the status (shared memory, state.json) and the
 *                          other files the daemon keeps in the store
 *   mod_certsync_agent.c   the thread that answers HAProxy's agent-check
 *   mod_certsync_ops.c     the real operations under the rollout state
 *                          machine (csy_rollout.c)
 *   mod_certsync_ondemand.c  on-demand issuance: the names handshakes
 *                          queued, sent to CertService between cycles
 *   mod_certsync_watch.c   the thread that long-polls the change feed
 *
 * Nothing in them calls back up into mod_certsync_daemon.c, and
 * mod_certsync_ops.c is the only one that calls into another one
 * (mod_certsync_state.c).
 */
#ifndef MOD_CERTSYNC_DAEMON_H
#define MOD_CERTSYNC_DAEMON_H

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include <jansson.h>

#include "httpd.h"

#include "apr_hash.h"
#include "apr_network_io.h"

#include "csy_rollout.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "mod_certsync_private.h"

/* Bytes of the agent-check's answer, description included. */
#define CSY_AGENT_LINE 256

typedef struct {
    server_rec *s;
    const csy_conf_t *conf;
    apr_pool_t *pool;
    pid_t parent;
    csy_config_t cfg;
    csy_client_t *client;
    csy_store_t *store;
    /* What the status page shows: published to shared memory at every
     * change (csy_publish), and to state.json when the store takes it. */
    json_t *state;
    /* "ready" or "drain" (string literals): the agent thread reads it. */
    const char *volatile health;
    /* The agent-check's answer with why the host is degraded: written by
     * the main thread (csy_publish), read by the agent thread. */
    pthread_mutex_t agent_mu;
    char agent_line[CSY_AGENT_LINE];
    /* HAProxy agent-check address (a copy: the agent thread may still
     * look at it while the daemon's pool goes at exit); agent_on: set. */
    apr_sockaddr_t agent_addr;
    int agent_on;
    /* Answers the agent thread sent (all, and "ready" ones): tell whether
     * the load balancer has seen this host back in rotation. */
    volatile apr_uint32_t agent_told;
    volatile apr_uint32_t agent_told_ready;
    csy_rollout_t rollout;      /* the staggered restarts (vhost mode) */
    int seal_pos;               /* key.seal backfill: manifest position */
    int seals_done;             /* ... every version checked */
    apr_status_t prune_rv;      /* the start's prune (CY00011) */
    csy_prune_t *prune;         /* ... in steps between cycles; NULL: done */
    apr_time_t started;         /* the daemon's start */
    int prune_steps;
    int shm_trimmed;            /* CY00182 was logged */
    long seals_written;
    apr_hash_t *failures;       /* domain -> why its bundle was skipped */
    int watching;               /* CertSyncWatch's thread runs */
    int activated;              /* dynamic: a checkpoint of this cycle's
                                 * made its changes live */
} csy_daemon_t;

/* Set by SIGTERM or SIGINT (mod_certsync_daemon.c), and by the main
 * thread when the daemon exits: the agent thread and the rollout's
 * "running" operation stop on it. */
extern volatile sig_atomic_t csy_stop;

/* mod_certsync_state.c: the status and the files of the store. */
const char *csy_path(csy_daemon_t *d, apr_pool_t *p, const char *name);
void csy_publish(csy_daemon_t *d);
void csy_daemon_store_status(csy_daemon_t *d, apr_pool_t *p,
                             const char *name, const char *path,
                             const char *why);
apr_status_t csy_write_json(csy_daemon_t *d, apr_pool_t *p,
                            const char *name, json_t *j);
json_t *csy_read_json(csy_daemon_t *d, apr_pool_t *p, const char *name);
void csy_set_state(csy_daemon_t *d, csy_phase_t phase);
void csy_count(json_t *state, const char *name, json_int_t add);
void csy_set_health(csy_daemon_t *d, apr_pool_t *p, const char *health);
json_t *csy_daemon_state_recall(csy_daemon_t *d, apr_pool_t *p);
void csy_retry_writes(csy_daemon_t *d, apr_pool_t *p);

/* mod_certsync_agent.c: starts the agent-check thread when CertSyncAgent
 * is set (d->agent_on: it listens, or will once its port is free). */
void csy_daemon_agent_start(csy_daemon_t *d);

/* mod_certsync_ops.c: the operations table for csy_rollout_init(), whose
 * baton is the csy_daemon_t. */
const csy_rollout_ops_t *csy_daemon_ops(void);

/* mod_certsync_ondemand.c: on-demand issuance (csy_ondemand set).  The
 * wait between two cycles, sending queued names to CertService (it ends
 * early, after a second, while an accepted name is not in the store yet);
 * and the names a cycle made current, which stop being pending. */
void csy_daemon_od_idle(csy_daemon_t *d, apr_pool_t *p, int seconds);
void csy_daemon_od_served(csy_daemon_t *d, apr_hash_t *made_current);

/* mod_certsync_watch.c: CertSyncWatch, a long poll on CertService's
 * change feed.  _start: the thread (dynamic mode; d->watching); _cycled:
 * after each cycle, the cursor it reached and whether it failed; _moved:
 * the feed moved past the cursor (a cycle is due now); _idle: the wait
 * between two cycles, ended early when it moved. */
void csy_daemon_watch_start(csy_daemon_t *d);
void csy_daemon_watch_cycled(csy_daemon_t *d, long long cursor, int failed);
int csy_daemon_watch_moved(csy_daemon_t *d);
void csy_daemon_watch_idle(csy_daemon_t *d, int seconds);

#endif /* MOD_CERTSYNC_DAEMON_H */
