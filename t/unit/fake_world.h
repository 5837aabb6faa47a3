/*
 * fake_world.h: the host a csy_rollout machine runs on, faked, as far as
 * its two drivers fake it the same way: t/unit/test_csy_rollout.c (every
 * path, scripted) and t/fuzz/fuzz_store_files.c (a new daemon on a
 * fuzzed rollout.json).
 *
 * Shared: the clocks (a monotonic one that moves only when the test's
 * sleep moves it, and a wall clock wall_step away from it), the parent
 * (a graceful restart ends the daemon when graceful_stops is set), the
 * store's files as JSON values in memory (so that a second machine over
 * the same files resumes what the first wrote), the health last set, and
 * the agent-check's counters.
 *
 * Not shared, so each driver keeps its own: running (each has its own
 * time limit), sleep (each has its own load balancer schedule and clock
 * steps), the configuration test, the probe, leases, reports, rollback,
 * set_health, write_json (the fuzzer checks each journal it is given;
 * the unit test makes writes fail) and the log.
 *
 * Each driver's fake embeds a fake_world_t and passes it as the machine's
 * baton; the functions below are csy_rollout_ops_t members over it:
 *
 *     static const csy_rollout_ops_t ops = {
 *         op_running, fake_world_now, fake_world_wall, op_sleep, ...
 *     };
 *     csy_rollout_init(r, pool, &ops, &f.w, &conf, state, quarantine);
 */
#ifndef FAKE_WORLD_H
#define FAKE_WORLD_H

#include <apr_pools.h>
#include <apr_time.h>

#include <jansson.h>


typedef struct fake_world_t {
    apr_time_t now;                 /* the monotonic clock */
    apr_time_t wall_step;           /* the wall clock is now + wall_step */
    int running;                    /* 0: the daemon is to stop */
    int gracefuls;                  /* graceful restarts asked for */
    int graceful_stops;             /* the parent restarts (SIGTERM us) */
    const char *health;             /* as the driver's set_health left it */
    /* The load balancer's agent-check: answers sent (all, "ready"). */
    int agent_on;
    apr_uint32_t told, told_ready;
    json_t *files;                  /* name -> JSON */
    int removes;
} fake_world_t;

/* The load balancer asks the agent once (the driver's sleep decides when):
 * counted, as "ready" too when the health is. */
void fake_world_agent_asked(fake_world_t *w);

/* csy_rollout_ops_t members; b is the fake_world_t. */
apr_time_t fake_world_now(void *b);
apr_time_t fake_world_wall(void *b);
void fake_world_graceful(void *b);
/* A copy of the file's JSON (NULL: no such file). */
json_t *fake_world_read_json(void *b, apr_pool_t *p, const char *name);
void fake_world_remove(void *b, apr_pool_t *p, const char *name);
int fake_world_agent(void *b, apr_uint32_t *told, apr_uint32_t *told_ready);

#endif /* FAKE_WORLD_H */
