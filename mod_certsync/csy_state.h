/*
 * csy_state.h: the sync daemon's status (what /certsync-status, the
 * metrics, the health page and HAProxy's agent-check tell), read back
 * from bytes that may be anything, and its copy in shared memory.
 *
 * The daemon keeps its status as a JSON object and publishes it twice: in
 * shared memory, which every worker reads and which cannot fail, and in
 * STORE/state.json, which only carries it across a full stop and start of
 * httpd and which fails with the store (disk full, read-only).  Both are
 * read with csy_state_parse(): whatever the bytes, the object it returns
 * holds only members of known names with their type, so no reader
 * dereferences a missing field.
 *
 * Pure code: APR and jansson; no httpd types.
 */
#ifndef CSY_STATE_H
#define CSY_STATE_H

#include <apr_pools.h>
#include <apr_time.h>

#include <jansson.h>

/**
 * The members of a status object and their types:
 *
 *   strings   state (a csy_phase_name()), health ("ready" or "drain"),
 *             host, pool, service, store, last_error (or null),
 *             prune_error (or null: why the store could not be pruned),
 *             last_rollout_failure
 *   integers  cursor, service_cursor, last_sync, last_success,
 *             last_error_time, next_sync, last_restart, last_activation,
 *             failures_trimmed (the copy in shared memory left the
 *             failures out, there were that many: state.json has them)
 *   booleans  restart_pending, service_cursor_exact
 *   objects   counters (name -> integer), failures (domain -> string),
 *             store_errors (file -> {"error": string, "path": string,
 *             "since": integer, "last": integer})
 *
 * Parses len bytes (no NUL needed) and returns a new object (json_decref)
 * with only those members, each of its type: a member of another type, an
 * unknown member, a counter that is not an integer, a failure that is not a
 * string, a store error without its error text are left out; a state that
 * is not a phase name too.  NULL, with *err, when the bytes are not a JSON
 * object at all.
 */
json_t *csy_state_parse(const char *text, size_t len, const char **err);

/**
 * Why the host is degraded (it serves, but not what CertService has, or
 * cannot keep what it does durable): a new array of strings, empty when
 * all is well.  state: a csy_state_parse() object.  Reasons: store write
 * errors, a failing sync, the lag behind CertService, skipped bundles, a
 * failed configuration test, rollout or restart.
 */
json_t *csy_state_degraded(json_t *state);

/**
 * Adds what the readers derive to a parsed status: "degraded" (boolean),
 * "degraded_reasons" (array), "behind" (changes CertService has that the
 * host has not, when the service cursor is known), "load_balancer" (what
 * the load balancer is told: "ready", or "drain" while a rollout drains
 * the host) and "health" for people: "degraded" when the host serves but
 * is degraded, else the load balancer's word.
 */
void csy_state_annotate(json_t *state);

/*
 * The copy in shared memory: a seqlock around the JSON text.  One writer
 * (the daemon that holds the store's lock); any number of readers in other
 * processes, which never wait for the writer and never see half a text.
 */
typedef struct csy_state_shm_t csy_state_shm_t;

/** The bytes of a segment whose text holds at most text_max bytes. */
apr_size_t csy_state_shm_size(apr_size_t text_max);

/**
 * The status in a segment of size bytes at base (shared, zeroed or
 * already one: a segment kept across graceful restarts keeps its text).
 */
csy_state_shm_t *csy_state_shm_attach(void *base, apr_size_t size);

/** Publishes text; APR_ENOSPC (and the old text stays) if it is too
 * long. */
apr_status_t csy_state_shm_put(csy_state_shm_t *shm, const char *text,
                               apr_size_t len);

/** A copy of the text (NUL-terminated, *len without it) or NULL when
 * none was published (or a writer kept it busy for too long). */
char *csy_state_shm_get(csy_state_shm_t *shm, apr_pool_t *p,
                        apr_size_t *len);

#endif /* CSY_STATE_H */
