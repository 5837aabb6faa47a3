/*
 * Unit tests of csy_rollout.c (and csy_agent.c): every path of a staggered
 * restart, driven with fake operations and a fake clock.
 *
 * The fake world: two clocks that move only when the machine sleeps, the
 * monotonic one and a wall clock that a test may step back or forward; a
 * parent whose graceful restart ends the daemon (or, for one test, never
 * happens); a listener that answers from some time on, serving some
 * domains with an old serial; a CertService whose lease answers follow a
 * script; a store whose files (rollout.json, state.json,
 * quarantine.json) are JSON values in memory, so that a "new generation"
 * (a second csy_rollout_t over the same files) resumes what the first
 * wrote; and a load balancer that asks the agent every so often.  What
 * t/fuzz/fuzz_store_files.c fakes alike (the clocks, the parent, the
 * files, the agent's counters) is t/unit/fake_world.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "csy_agent.h"
#include "csy_rollout.h"
#include "fake_world.h"
#include "unit.h"

#define SEC(n) apr_time_from_sec(n)
#define T0     SEC(1000000)

typedef struct {
    fake_world_t w;                 /* clocks, parent, files, agent */
    apr_pool_t *pool;
    /* Once w.now reaches step_at (0: never), w.wall_step grows by step_by
     * (a clock set by hand or NTP). */
    apr_time_t step_at, step_by;
    apr_time_t stop_at;             /* SIGTERM then (0: never) */
    int configtest_code;
    int configtests;
    /* The listener: answers from answer_at on (0: never); wrong holds
     * the domains it serves with another serial. */
    apr_time_t answer_at;
    apr_hash_t *wrong;
    int probes;
    char healths[512];
    char reports[512];
    /* Lease answers, one per request, then success with lease_id. */
    apr_status_t lease_rv[16];
    int lease_n, lease_i;
    const char *lease_id;
    int acquires;
    char released[128];
    apr_time_t released_at;
    char rolled_back[128];
    /* Writes of rollout.json fail from the journal_fail_from'th on (1: the
     * first; 0: none), as on a full or read-only store. */
    int journal_writes, journal_fail_from;
    /* The load balancer's agent-check: asked every agent_every from
     * agent_from on (agent_every 0: never). */
    apr_time_t agent_from, agent_every, agent_last;
    char logs[8192];
} fake_t;

static fake_t f;

static void append(char *buf, size_t size, const char *s)
{
    size_t n = strlen(buf);

    snprintf(buf + n, size - n, "%s%s", n ? " " : "", s);
}

static int op_running(void *b)
{
    /* A machine that waits for ever fails its test instead of hanging. */
    if ((f.stop_at && f.w.now >= f.stop_at) || f.w.now > T0 + SEC(3600)) {
        f.w.running = 0;
    }
    return f.w.running;
}

static void op_sleep(void *b, apr_interval_time_t t)
{
    f.w.now += t;
    if (f.step_at && f.w.now >= f.step_at) {
        f.w.wall_step += f.step_by;
        f.step_at = 0;
    }
    if (f.w.agent_on && f.agent_every && f.w.now >= f.agent_from
        && f.w.now - f.agent_last >= f.agent_every) {
        f.agent_last = f.w.now;
        fake_world_agent_asked(&f.w);
    }
}

static int op_configtest(void *b, apr_pool_t *p, const char **output)
{
    f.configtests++;
    *output = f.configtest_code ? "Syntax error on line 1" : "Syntax OK";
    return f.configtest_code;
}

static int op_probe(void *b, apr_pool_t *p, apr_hash_t *expected,
                    apr_hash_t *mismatched, const char **why)
{
    apr_hash_index_t *hi;

    f.probes++;
    *why = NULL;
    if (!f.answer_at || f.w.now < f.answer_at) {
        *why = "connection refused";
        return CSY_PROBE_NOT_READY;
    }
    for (hi = apr_hash_first(p, expected); hi; hi = apr_hash_next(hi)) {
        const char *d = apr_hash_this_key(hi);

        if (f.wrong && apr_hash_get(f.wrong, d, APR_HASH_KEY_STRING)) {
            apr_hash_set(mismatched, d, APR_HASH_KEY_STRING,
                         apr_hash_this_val(hi));
            *why = "served with the old serial";
        }
    }
    return *why ? CSY_PROBE_MISMATCH : CSY_PROBE_OK;
}

static void op_set_health(void *b, apr_pool_t *p, const char *health)
{
    f.w.health = health;
    append(f.healths, sizeof(f.healths), health);
}

static void op_report(void *b, apr_pool_t *p, long long cursor,
                      const char *state)
{
    append(f.reports, sizeof(f.reports), state);
}

static apr_status_t op_lease_acquire(void *b, apr_pool_t *p, int ttl,
                                     const char **lease, long *retry,
                                     const char **err)
{
    apr_status_t rv = f.lease_i < f.lease_n ? f.lease_rv[f.lease_i]
                                            : APR_SUCCESS;

    f.lease_i++;
    f.acquires++;
    *retry = 7;
    if (rv == APR_SUCCESS) {
        *lease = f.lease_id;
    }
    else if (rv != APR_EAGAIN) {
        *err = "CertService unreachable";
    }
    return rv;
}

static void op_lease_release(void *b, apr_pool_t *p, const char *lease)
{
    append(f.released, sizeof(f.released), lease);
    f.released_at = f.w.now;
}

static apr_status_t op_rollback(void *b, apr_pool_t *p, const char *domain)
{
    append(f.rolled_back, sizeof(f.rolled_back), domain);
    return APR_SUCCESS;
}

static apr_status_t op_write_json(void *b, apr_pool_t *p, const char *name,
                                  json_t *j)
{
    if (strcmp(name, "rollout.json") == 0 && f.journal_fail_from
        && ++f.journal_writes >= f.journal_fail_from) {
        return APR_ENOSPC;
    }
    json_object_set_new(f.w.files, name, json_deep_copy(j));
    return APR_SUCCESS;
}

/* Each line as "<LEVEL>CYnnnnn: text", the level's number in
 * cs_log_level_t (logged_at). */
static void op_log(void *b, cs_log_level_t level, const char *msg)
{
    char line[1024];

    snprintf(line, sizeof(line), "<%d>%s", (int)level, msg);
    append(f.logs, sizeof(f.logs), line);
}

static const csy_rollout_ops_t ops = {
    op_running, fake_world_now, fake_world_wall, op_sleep, op_configtest,
    fake_world_graceful, op_probe, op_set_health, op_report,
    op_lease_acquire, op_lease_release, op_rollback, fake_world_read_json,
    op_write_json, fake_world_remove, fake_world_agent, op_log
};

static const csy_rollout_conf_t conf = {
    30,         /* interval */
    5,          /* drain_time */
    30,         /* lease_ttl: renewed every 10 s */
    0,          /* min_restart_interval */
    60,         /* restart_timeout */
    10,         /* agent_grace */
    "127.0.0.1:9443",
    "pid 42"
};

static apr_pool_t *pool;

/* A fresh world. */
static void world(void)
{
    json_decref(f.w.files);
    memset(&f, 0, sizeof(f));
    f.w.now = T0;
    f.w.running = 1;
    f.w.graceful_stops = 1;
    f.lease_id = "L1";
    f.answer_at = T0;
    f.w.files = json_object();
    f.pool = pool;
}

/* A daemon's rollout machine, over state.json as the files hold it (a
 * new generation) or a new state. */
static void generation(csy_rollout_t *r)
{
    json_t *state = fake_world_read_json(&f.w, pool, "state.json");
    json_t *q = fake_world_read_json(&f.w, pool, "quarantine.json");

    if (!state) {
        state = json_pack("{s:s, s:{}}", "state", "starting", "counters");
    }
    f.w.running = 1;
    f.stop_at = 0;
    f.w.health = "drain";         /* what a new daemon answers at first */
    csy_rollout_init(r, pool, &ops, &f.w, &conf, state,
                     csy_json_hash(pool, q));
    json_decref(q);
}

static const char *state_of(csy_rollout_t *r)
{
    return json_string_value(json_object_get(r->state, "state"));
}

static json_int_t counter(csy_rollout_t *r, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(
               r->state, "counters"), name));
}

static const char *journal(const char *key)
{
    return json_string_value(json_object_get(json_object_get(
               f.w.files, "rollout.json"), key));
}

static const char *expected_of(const char *domain)
{
    return json_string_value(json_object_get(json_object_get(
               json_object_get(f.w.files, "rollout.json"), "expected"),
               domain));
}

static int logged(const char *tag)
{
    return strstr(f.logs, tag) != NULL;
}

/* tag (and what follows it, if given) logged at level. */
static int logged_at(cs_log_level_t level, const char *tag)
{
    char want[256];

    snprintf(want, sizeof(want), "<%d>%s", (int)level, tag);
    return strstr(f.logs, want) != NULL;
}

/* Generation 1: two new certificates and a sync cycle that rolls them
 * out; returns what csy_rollout_cycle returned. */
static int first_half(csy_rollout_t *r)
{
    generation(r);
    csy_rollout_start(r, pool);
    csy_rollout_add(r, "a.example", "0a");
    csy_rollout_add(r, "b.example", "0b");
    json_object_set_new(r->state, "restart_pending", json_true());
    return csy_rollout_cycle(r, pool, 17, 1);
}

static void done(csy_rollout_t *r)
{
    json_decref(r->state);
}

static void test_phase_names(void)
{
    static const char *const names[] = {
        "starting", "idle", "backoff", "restart-pending",
        "configtest-failed", "waiting-for-lease", "draining", "restarting",
        "probing", "rolling-back", "rolled-back", "failed", "restart-failed"
    };
    int i;

    UNIT_CASE("phase names are the strings of state.json and rollout.json");
    CHECK_EQ_INT(CSY_PHASE_COUNT, 13);
    for (i = 0; i < CSY_PHASE_COUNT; i++) {
        CHECK_STR(csy_phase_name((csy_phase_t)i), names[i]);
        CHECK_EQ_INT(csy_phase_parse(names[i]), i);
    }
    CHECK_EQ_INT(csy_phase_parse("probing-x"), CSY_PHASE_NONE);
    CHECK_EQ_INT(csy_phase_parse(NULL), CSY_PHASE_NONE);
}

static void test_full_rollout(void)
{
    csy_rollout_t r1, r2;

    UNIT_CASE("full rollout: drain, restart, probe, ready, release");
    world();
    CHECK_EQ_INT(first_half(&r1), 0);
    CHECK_EQ_INT(f.configtests, 1);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK_STR(f.healths, "ready drain");
    CHECK_STR(f.reports, "draining restarting");
    CHECK(logged_at(CS_LOG_NOTICE, "CY00006"));
    /* The journal the next generation reads, in the old format. */
    CHECK_STR(journal("phase"), "restarting");
    CHECK_STR(journal("lease"), "L1");
    CHECK_STR(expected_of("a.example"), "0a");
    CHECK_STR(expected_of("b.example"), "0b");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(
                     f.w.files, "rollout.json"), "cursor")), 17);
    CHECK(json_is_boolean(json_object_get(json_object_get(
              f.w.files, "rollout.json"), "agent_used")));
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(
                     f.w.files, "rollout.json"), "restart_at")),
                 apr_time_sec(T0 + SEC(5)));
    CHECK_STR(json_string_value(json_object_get(json_object_get(
                  f.w.files, "state.json"), "state")), "restarting");
    CHECK_EQ_INT(counter(&r1, "restarts"), 1);
    CHECK_STR(f.released, "");
    done(&r1);

    /* Generation 2: the restarted parent's daemon. */
    f.healths[0] = '\0';
    generation(&r2);
    csy_rollout_start(&r2, pool);
    CHECK_STR(state_of(&r2), "idle");
    CHECK(logged_at(CS_LOG_NOTICE,
                    "CY00014: rollout complete: 2 new certificates"));
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_STR(f.healths, "drain ready");
    CHECK_STR(f.released, "L1");
    /* Back in rotation for CertSyncDrainTime before the lease went. */
    CHECK(f.released_at - T0 >= SEC(10));
    CHECK_EQ_INT(json_integer_value(json_object_get(r2.state,
                                                    "last_restart")),
                 apr_time_sec(T0 + SEC(5)));
    CHECK_STR(f.rolled_back, "");
    done(&r2);
}

static void test_restart_off_and_too_soon(void)
{
    csy_rollout_t r;

    UNIT_CASE("CertSyncRestart off; CertSyncMinRestartInterval");
    world();
    generation(&r);
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 0), 0);
    CHECK_STR(state_of(&r), "restart-pending");
    CHECK_EQ_INT(f.configtests + f.acquires, 0);
    done(&r);
    /* The last restart 40 s ago, as the daemon reads it at its start. */
    json_object_set_new(f.w.files, "state.json",
                        json_pack("{s:s, s:{}, s:I}", "state", "idle",
                                  "counters", "last_restart",
                                  (json_int_t)apr_time_sec(T0) - 40));
    generation(&r);
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    r.conf.min_restart_interval = 100;
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 60);
    CHECK_STR(state_of(&r), "restart-pending");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK_EQ_INT(f.w.gracefuls, 0);
    done(&r);

    UNIT_CASE("CertSyncMinRestartInterval: a last restart in the future "
              "(or one that would overflow) spaces nothing");
    world();
    generation(&r);
    r.conf.min_restart_interval = 100;
    json_object_set_new(r.state, "last_restart",
                        json_integer(apr_time_sec(T0) + 7200));
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    done(&r);
    world();
    generation(&r);
    r.conf.min_restart_interval = 100;
    json_object_set_new(r.state, "last_restart",
                        json_integer((json_int_t)INT64_MIN));
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    done(&r);
}

static void test_drain_interrupted(void)
{
    csy_rollout_t r1, r2;

    UNIT_CASE("drain interrupted: the next generation starts it again");
    world();
    f.stop_at = 0;
    generation(&r1);
    csy_rollout_start(&r1, pool);
    csy_rollout_add(&r1, "a.example", "0a");
    json_object_set_new(r1.state, "restart_pending", json_true());
    f.stop_at = T0 + SEC(2);        /* SIGTERM in the middle of the drain */
    CHECK_EQ_INT(csy_rollout_cycle(&r1, pool, 3, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 0);
    CHECK_STR(journal("phase"), "draining");
    CHECK_STR(f.released, "");
    done(&r1);

    f.healths[0] = '\0';
    generation(&r2);
    csy_rollout_start(&r2, pool);
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_STR(apr_hash_get(r2.pending, "a.example", APR_HASH_KEY_STRING),
              "0a");
    CHECK(json_is_true(json_object_get(r2.state, "restart_pending")));
    CHECK_STR(f.healths, "drain ready");
    CHECK_STR(f.released, "L1");
    CHECK_EQ_INT(f.w.gracefuls, 0);
    /* The next cycle rolls it out, configuration test included. */
    f.released[0] = '\0';
    CHECK_EQ_INT(csy_rollout_cycle(&r2, pool, 3, 1), 0);
    CHECK_EQ_INT(f.configtests, 2);     /* one per daemon */
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK_STR(expected_of("a.example"), "0a");
    done(&r2);
}

static void test_lease_lost_while_draining(void)
{
    csy_rollout_t r;

    UNIT_CASE("lease lost while draining: ready again, no restart");
    world();
    f.lease_rv[0] = APR_SUCCESS;
    f.lease_rv[1] = APR_EAGAIN;     /* the renewal: another host has it */
    f.lease_rv[2] = APR_EAGAIN;
    f.lease_rv[3] = APR_EAGAIN;
    f.lease_n = 4;
    generation(&r);
    csy_rollout_start(&r, pool);
    r.conf.drain_time = 12;         /* longer than a third of the TTL */
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 30);
    CHECK(logged_at(CS_LOG_WARN, "CY00020"));
    CHECK(logged_at(CS_LOG_WARN, "CY00024"));
    CHECK_EQ_INT(f.w.gracefuls, 0);
    CHECK_STR(state_of(&r), "waiting-for-lease");
    CHECK_STR(f.w.health, "ready");
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK_STR(f.released, "");      /* nothing held to release */
    CHECK(!r.lease_wanted);
    done(&r);
}

static void test_configtest_fails(void)
{
    csy_rollout_t r;

    UNIT_CASE("configtest fails: no lease, no restart; tried again");
    world();
    f.configtest_code = 1;
    generation(&r);
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 0);
    CHECK_STR(state_of(&r), "configtest-failed");
    CHECK(logged_at(CS_LOG_ERR, "CY00007"));
    CHECK_EQ_INT(counter(&r, "configtest_failures"), 1);
    CHECK_EQ_INT(f.acquires, 0);
    CHECK_EQ_INT(f.w.gracefuls, 0);
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    /* Fixed: the next cycle tests again (same change set) and goes on. */
    f.configtest_code = 0;
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 0);
    CHECK_EQ_INT(f.configtests, 2);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    done(&r);
}

static void test_lease_wait_coalesces(void)
{
    csy_rollout_t r;

    UNIT_CASE("changes that arrive while waiting for the lease join it");
    world();
    f.lease_rv[0] = APR_EAGAIN;
    f.lease_rv[1] = APR_EAGAIN;
    f.lease_n = 2;
    generation(&r);
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 7);   /* Retry-After */
    CHECK_STR(state_of(&r), "waiting-for-lease");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    /* Another cycle, nothing new: the test is not run again. */
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 7);
    CHECK_EQ_INT(f.configtests, 1);
    /* A change arrives: tested again, and it joins the rollout. */
    csy_rollout_add(&r, "b.example", "0b");
    csy_rollout_add(&r, "a.example", "1a");     /* renewed meanwhile */
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 4, 1), 0);
    CHECK_EQ_INT(f.configtests, 2);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK_STR(expected_of("a.example"), "1a");
    CHECK_STR(expected_of("b.example"), "0b");
    CHECK_EQ_INT(apr_hash_count(r.pending), 0);
    done(&r);
}

static void test_probe_old_serial(void)
{
    csy_rollout_t r1, r2, r3;

    UNIT_CASE("probe shows the old serial: rollback, quarantine, restart");
    world();
    first_half(&r1);
    done(&r1);
    f.wrong = apr_hash_make(pool);
    apr_hash_set(f.wrong, "a.example", APR_HASH_KEY_STRING, "");
    f.answer_at = T0 + SEC(8);      /* the listener starts a bit later */
    generation(&r2);
    csy_rollout_start(&r2, pool);
    CHECK(logged_at(CS_LOG_INFO, "CY00022"));
    CHECK(logged_at(CS_LOG_CRIT, "CY00017"));
    CHECK_STR(f.rolled_back, "a.example");     /* b is served right */
    CHECK_STR(json_string_value(json_object_get(json_object_get(
                  f.w.files, "quarantine.json"), "a.example")), "0a");
    CHECK(!json_object_get(json_object_get(f.w.files, "quarantine.json"),
                           "b.example"));
    CHECK_STR(journal("phase"), "rolling-back");
    CHECK(journal("failure") != NULL);
    CHECK(json_object_get(json_object_get(json_object_get(
              f.w.files, "rollout.json"), "rolled_back"), "a.example"));
    /* A mismatch counts only once it lasted CSY_PROBE_CONFIRM seconds. */
    CHECK(f.w.now - (T0 + SEC(8)) >= SEC(3));
    CHECK_EQ_INT(f.w.gracefuls, 2);
    CHECK_EQ_INT(counter(&r2, "rollbacks"), 1);
    CHECK_STR(f.released, "");
    done(&r2);

    /* Generation 3: the rolled-back configuration answers. */
    f.wrong = NULL;
    generation(&r3);
    CHECK(apr_hash_get(r3.quarantine, "a.example", APR_HASH_KEY_STRING));
    csy_rollout_start(&r3, pool);
    CHECK(logged_at(CS_LOG_CRIT, "CY00015"));
    CHECK_STR(state_of(&r3), "rolled-back");
    CHECK(json_is_string(json_object_get(r3.state,
                                         "last_rollout_failure")));
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_STR(f.released, "L1");
    CHECK_STR(f.w.health, "ready");
    done(&r3);
}

static void test_never_answers(void)
{
    csy_rollout_t r1, r2, r3;

    UNIT_CASE("never answers: all rolled back; then stays drained");
    world();
    first_half(&r1);
    done(&r1);
    f.answer_at = 0;                /* never */
    generation(&r2);
    csy_rollout_start(&r2, pool);
    CHECK(logged_at(CS_LOG_CRIT, "CY00025"));
    CHECK(f.w.now - T0 >= SEC(60));   /* CertSyncRestartTimeout */
    CHECK(strstr(f.rolled_back, "a.example") != NULL);
    CHECK(strstr(f.rolled_back, "b.example") != NULL);
    CHECK_STR(journal("phase"), "rolling-back");
    done(&r2);

    generation(&r3);
    f.reports[0] = '\0';
    csy_rollout_start(&r3, pool);
    CHECK(logged_at(CS_LOG_CRIT, "CY00016"));
    CHECK_STR(state_of(&r3), "failed");
    CHECK_STR(f.reports, "failed");
    CHECK_STR(f.released, "L1");
    CHECK_STR(f.w.health, "drain");
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    /* Later cycles: once the listener answers, back in rotation. */
    csy_rollout_recheck(&r3, pool);
    CHECK_STR(state_of(&r3), "failed");
    f.answer_at = f.w.now;
    csy_rollout_recheck(&r3, pool);
    CHECK(logged_at(CS_LOG_NOTICE, "CY00026"));
    CHECK_STR(state_of(&r3), "rolled-back");
    CHECK_STR(f.w.health, "ready");
    done(&r3);
}

static void test_parent_did_not_restart(void)
{
    csy_rollout_t r;

    UNIT_CASE("the parent did not restart: ready, pending, released");
    world();
    f.w.graceful_stops = 0;
    first_half(&r);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK(logged_at(CS_LOG_ERR,
                    "CY00023: the parent (pid 42) did not restart"));
    CHECK_STR(state_of(&r), "restart-failed");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK_EQ_INT(counter(&r, "restart_failures"), 1);
    CHECK_STR(apr_hash_get(r.pending, "b.example", APR_HASH_KEY_STRING),
              "0b");
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_STR(f.w.health, "ready");
    CHECK_STR(f.released, "L1");
    /* The lease was kept alive over the restart timeout. */
    CHECK(f.acquires >= 1 + 60 / 10);
    done(&r);
}

static void test_journal_not_written(void)
{
    csy_rollout_t r;

    UNIT_CASE("no journal when draining: no drain, no restart, pending");
    world();
    f.journal_fail_from = 1;
    CHECK(first_half(&r) > 0);
    CHECK(logged_at(CS_LOG_ERR, "CY00172: cannot write rollout.json"));
    CHECK_EQ_INT(f.w.gracefuls, 0);
    CHECK(!strstr(f.healths, "drain"));
    CHECK_STR(f.released, "L1");
    CHECK_STR(state_of(&r), "restart-pending");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    /* The store takes writes again: the next cycle rolls out. */
    f.journal_fail_from = 0;
    f.released[0] = '\0';
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 17, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK_STR(journal("phase"), "restarting");
    done(&r);

    UNIT_CASE("no journal before the restart: not restarting, ready again");
    world();
    f.journal_fail_from = 2;
    f.w.graceful_stops = 0;
    first_half(&r);
    CHECK(logged_at(CS_LOG_ERR, "CY00173: cannot write rollout.json"));
    CHECK_EQ_INT(f.w.gracefuls, 0);
    CHECK_STR(f.healths, "ready drain ready");
    CHECK_STR(f.w.health, "ready");
    CHECK_STR(f.released, "L1");
    CHECK_STR(state_of(&r), "restart-pending");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK_STR(apr_hash_get(r.pending, "a.example", APR_HASH_KEY_STRING),
              "0a");
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    done(&r);
}

static void test_resume_phases(void)
{
    csy_rollout_t r;

    UNIT_CASE("journal without a lease, or without a phase: dropped");
    world();
    json_object_set_new(f.w.files, "rollout.json",
                        json_pack("{s:s}", "phase", "restarting"));
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_EQ_INT(f.probes, 0);
    CHECK_EQ_INT(f.w.gracefuls, 0);
    /* Not left drained, and what the predecessor installed is restarted
     * for (fuzz_store_files: seed_rollout_empty_object). */
    CHECK_STR(f.w.health, "ready");
    CHECK(json_is_true(json_object_get(r.state, "restart_pending")));
    CHECK(logged_at(CS_LOG_ERR, "CY00170: rollout.json is not a journal "
                    "this daemon can carry on (no valid lease id)"));
    done(&r);

    UNIT_CASE("journal with a phase that is not a journal's: dropped");
    world();
    json_object_set_new(f.w.files, "rollout.json",
                        json_pack("{s:s, s:s}", "phase", "idle", "lease",
                                  "L1"));
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_EQ_INT(f.probes, 0);
    CHECK_STR(f.w.health, "ready");
    CHECK(logged_at(CS_LOG_ERR, "CY00170: rollout.json is not a journal "
                    "this daemon can carry on (phase 'idle')"));
    done(&r);

    UNIT_CASE("journal with a lease id that is not one: dropped, never "
              "sent to CertService");
    world();
    json_object_set_new(f.w.files, "rollout.json",
                        json_pack("{s:s, s:s, s:{s:s}}", "phase",
                                  "restarting", "lease",
                                  "../../../domains/a.example", "expected",
                                  "a.example", "0a"));
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(!json_object_get(f.w.files, "rollout.json"));
    CHECK_EQ_INT(f.probes, 0);
    CHECK_EQ_INT(f.acquires, 0);
    CHECK_STR(f.released, "");
    CHECK_STR(f.w.health, "ready");
    done(&r);

    UNIT_CASE("journal: pairs that are not a domain and a serial are "
              "neither probed nor rolled back");
    world();
    f.answer_at = 0;                /* never answers: all goes back */
    f.lease_id = "L9";
    json_object_set_new(f.w.files, "rollout.json",
                        json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:i}}",
                                  "phase", "restarting", "lease", "L9",
                                  "expected", "a.example", "0a",
                                  "../../etc", "0b", "b.example", "zz",
                                  "c.example", 12));
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK_STR(f.rolled_back, "a.example");
    CHECK(logged_at(CS_LOG_WARN, "CY00171: rollout.json: 3 entries"));
    done(&r);

    UNIT_CASE("journal: a restart_at in the future spaces no restart");
    world();
    f.lease_id = "L9";
    json_object_set_new(f.w.files, "rollout.json",
                        json_pack("{s:s, s:s, s:{}, s:I}", "phase",
                                  "restarting", "lease", "L9", "expected",
                                  "restart_at", (json_int_t)INT64_MAX));
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK_STR(state_of(&r), "idle");
    /* When it resumed, not the journal's time. */
    CHECK(json_integer_value(json_object_get(r.state, "last_restart"))
          >= apr_time_sec(T0));
    CHECK(json_integer_value(json_object_get(r.state, "last_restart"))
          <= apr_time_sec(f.w.now));
    done(&r);

    UNIT_CASE("a journal written by the old build (2,205-line glue)");
    world();
    json_decref(f.w.files);
    f.w.files = json_loads("{\"rollout.json\": {\"agent_used\": false, "
                         "\"cursor\": 17, \"expected\": {\"a.example\": "
                         "\"0a\"}, \"lease\": \"L9\", \"phase\": "
                         "\"restarting\", \"restart_at\": 999995}}",
                         0, NULL);
    f.w.now = T0 + SEC(10);           /* 5 s after restart_at */
    f.lease_id = "L9";              /* CertService renews it */
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(logged_at(CS_LOG_NOTICE,
                    "CY00014: rollout complete: 1 new certificates"));
    CHECK_STR(state_of(&r), "idle");
    CHECK_STR(f.released, "L9");
    CHECK_EQ_INT(json_integer_value(json_object_get(r.state,
                                                    "last_restart")),
                 999995);
    done(&r);

    UNIT_CASE("resume restarting: the lease expired and came back another");
    world();
    first_half(&r);
    done(&r);
    f.lease_id = "L2";
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(logged_at(CS_LOG_NOTICE, "CY00019: restart lease L1 had expired; "
                    "holding lease L2"));
    CHECK_STR(state_of(&r), "idle");
    CHECK_STR(f.released, "L2");
    done(&r);

    UNIT_CASE("resume restarting: lease taken, probe fails: no restart "
              "until the lease is back");
    world();
    first_half(&r);
    done(&r);
    f.wrong = apr_hash_make(pool);
    apr_hash_set(f.wrong, "b.example", APR_HASH_KEY_STRING, "");
    f.lease_i = 0;
    f.lease_n = 8;
    {
        int i;

        for (i = 0; i < 8; i++) {
            f.lease_rv[i] = APR_EAGAIN;
        }
    }
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(logged_at(CS_LOG_WARN, "CY00020"));
    CHECK(logged_at(CS_LOG_CRIT, "CY00017"));
    CHECK_EQ_INT(f.w.gracefuls, 2);
    CHECK(f.lease_i > 8);           /* asked until it was granted */
    CHECK_STR(journal("phase"), "rolling-back");
    CHECK_STR(journal("lease"), "L1");
    done(&r);
}

/* The first half of a rollout done, with an agent on (and marked used
 * before in rollout.json if used_before). */
static void agent_half(csy_rollout_t *r, int used_before)
{
    world();
    first_half(r);
    done(r);
    if (used_before) {
        json_object_set_new(json_object_get(f.w.files, "rollout.json"),
                            "agent_used", json_true());
    }
    f.w.agent_on = 1;
}

static void test_agent_wait(void)
{
    csy_rollout_t r;

    UNIT_CASE("the lease goes once HAProxy was told 'ready'");
    agent_half(&r, 1);
    f.agent_from = T0 + SEC(15);    /* asks late (a busy machine) */
    f.agent_every = SEC(2);
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK_STR(f.released, "L1");
    CHECK(f.released_at >= T0 + SEC(15));
    CHECK(f.w.told_ready >= 1);
    CHECK(!logged("CY00039"));
    done(&r);

    UNIT_CASE("an agent used before but not asked again: CY00039");
    agent_half(&r, 1);
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(logged_at(CS_LOG_WARN, "CY00039"));
    CHECK_STR(f.released, "L1");
    CHECK(f.released_at - (T0 + SEC(5)) >= SEC(5 + 10));
    done(&r);

    UNIT_CASE("an agent nobody asks: not waited for");
    agent_half(&r, 0);
    generation(&r);
    csy_rollout_start(&r, pool);
    CHECK(!logged("CY00039"));
    CHECK_STR(f.released, "L1");
    CHECK(f.released_at - (T0 + SEC(5)) < SEC(5 + 10));
    done(&r);
}

/* How often tag was logged. */
static int times_logged(const char *tag)
{
    const char *at = f.logs;
    int n = 0;

    while ((at = strstr(at, tag)) != NULL) {
        n++;
        at += strlen(tag);
    }
    return n;
}

#define HOURS(n) SEC(3600 * (n))

static void test_clock_steps(void)
{
    csy_rollout_t r, r2;
    json_int_t t0 = (json_int_t)apr_time_sec(T0);

    UNIT_CASE("the wall clock stepped back 2 h during a wait: it still "
              "ends on time");
    world();
    generation(&r);
    f.step_at = T0 + SEC(3);
    f.step_by = -HOURS(2);
    csy_rollout_idle(&r, 30);
    CHECK(f.w.running);
    CHECK(f.w.now - T0 >= SEC(30));
    CHECK(f.w.now - T0 < SEC(31));
    CHECK(f.w.wall_step == -HOURS(2));
    done(&r);

    UNIT_CASE("the wall clock stepped forward a day during a wait: it does "
              "not end early");
    world();
    generation(&r);
    f.step_at = T0 + SEC(3);
    f.step_by = HOURS(24);
    csy_rollout_idle(&r, 30);
    CHECK(f.w.now - T0 >= SEC(30));
    done(&r);

    UNIT_CASE("the clock stepped back 2 h while draining: the lease is "
              "still renewed every third of its TTL, the restart on time");
    world();
    f.step_at = T0 + SEC(2);
    f.step_by = -HOURS(2);
    generation(&r);
    r.conf.drain_time = 25;
    csy_rollout_start(&r, pool);
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 3, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK(f.acquires >= 3);         /* at 0, 10 and 20 s */
    CHECK(f.w.now - T0 < SEC(60));
    /* restart_at is the wall clock's, for the next generation. */
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(
                     f.w.files, "rollout.json"), "restart_at")),
                 apr_time_sec(f.w.now + f.w.wall_step));
    done(&r);

    UNIT_CASE("a last_restart 2 h in the future in state.json (a full "
              "restart after the clock was set right): taken as now, once");
    world();
    json_object_set_new(f.w.files, "state.json",
                        json_pack("{s:s, s:{}, s:I, s:b}", "state",
                                  "restart-pending", "counters",
                                  "last_restart", t0 + 7200,
                                  "restart_pending", 1));
    generation(&r);
    CHECK(logged_at(CS_LOG_WARN, "CY00200: state.json: the last restart "
                    "is saved as"));
    CHECK_EQ_INT(json_integer_value(json_object_get(r.state,
                                                    "last_restart")), t0);
    r.conf.min_restart_interval = 100;
    csy_rollout_add(&r, "a.example", "0a");
    /* CertSyncMinRestartInterval from now, not 2 h and more. */
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 100);
    CHECK_STR(state_of(&r), "restart-pending");
    op_sleep(NULL, SEC(60));
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 40);
    op_sleep(NULL, SEC(40));
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 0);
    CHECK_EQ_INT(f.w.gracefuls, 1);
    CHECK_EQ_INT(times_logged("CY00200"), 1);
    done(&r);

    UNIT_CASE("a last_restart in the past: CertSyncMinRestartInterval "
              "counts from it, on the monotonic clock");
    world();
    json_object_set_new(f.w.files, "state.json",
                        json_pack("{s:s, s:{}, s:I}", "state", "idle",
                                  "counters", "last_restart", t0 - 30));
    generation(&r);
    r.conf.min_restart_interval = 100;
    csy_rollout_add(&r, "a.example", "0a");
    json_object_set_new(r.state, "restart_pending", json_true());
    /* The wall clock going back 2 h changes nothing: 70 s left. */
    f.w.wall_step = -HOURS(2);
    CHECK_EQ_INT(csy_rollout_cycle(&r, pool, 1, 1), 70);
    CHECK(!logged("CY00200"));
    done(&r);

    UNIT_CASE("restart_at 2 h in the future in rollout.json (the previous "
              "generation's clock was ahead): taken as now");
    world();
    f.w.wall_step = HOURS(2);         /* generation 1: the clock is ahead */
    first_half(&r);
    done(&r);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(
                     f.w.files, "rollout.json"), "restart_at")),
                 t0 + 7200 + 5);
    f.w.wall_step = 0;                /* set right before generation 2 */
    generation(&r2);
    csy_rollout_start(&r2, pool);
    CHECK_STR(state_of(&r2), "idle");
    CHECK(logged_at(CS_LOG_WARN, "CY00200: rollout.json: the last "
                    "restart is saved as"));
    CHECK_EQ_INT(json_integer_value(json_object_get(r2.state,
                                                    "last_restart")),
                 t0 + 5);           /* when generation 2 read it */
    r2.conf.min_restart_interval = 100;
    csy_rollout_add(&r2, "c.example", "0c");
    json_object_set_new(r2.state, "restart_pending", json_true());
    CHECK(csy_rollout_cycle(&r2, pool, 18, 1) <= 100);
    CHECK_EQ_INT(times_logged("CY00200"), 1);
    done(&r2);
}

static void test_agent(void)
{
    csy_agent_retry_t st;
    int log_now, notice;

    UNIT_CASE("agent answers");
    CHECK_STR(csy_agent_answer("ready"), "ready\n");
    CHECK_STR(csy_agent_answer("drain"), "drain\n");
    CHECK_STR(csy_agent_answer(NULL), "drain\n");
    CHECK(csy_agent_answer_is_ready(csy_agent_answer("ready")));
    CHECK(!csy_agent_answer_is_ready(csy_agent_answer("drain")));

    UNIT_CASE("agent listen retry: a taken port");
    csy_agent_retry_init(&st, T0);
    CHECK_EQ_INT(csy_agent_retry(&st, EADDRINUSE, T0 + SEC(1), &log_now),
                 apr_time_from_msec(100));
    CHECK(!log_now);
    CHECK_EQ_INT(csy_agent_retry(&st, EADDRINUSE, T0 + SEC(10), &log_now),
                 apr_time_from_msec(100));
    CHECK(log_now);
    csy_agent_retry(&st, EADDRINUSE, T0 + SEC(11), &log_now);
    CHECK(!log_now);                /* once */
    CHECK(csy_agent_listening_late(&st, T0 + SEC(12), &notice));
    CHECK(notice);

    UNIT_CASE("agent listen retry: another error");
    csy_agent_retry_init(&st, T0);
    CHECK_EQ_INT(csy_agent_retry(&st, EACCES, T0, &log_now),
                 apr_time_from_sec(5));
    CHECK(log_now);
    csy_agent_retry_init(&st, T0);
    CHECK(!csy_agent_listening_late(&st, T0 + apr_time_from_msec(50),
                                    &notice));
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_phase_names();
    test_full_rollout();
    test_restart_off_and_too_soon();
    test_drain_interrupted();
    test_lease_lost_while_draining();
    test_configtest_fails();
    test_lease_wait_coalesces();
    test_probe_old_serial();
    test_never_answers();
    test_parent_did_not_restart();
    test_resume_phases();
    test_agent_wait();
    test_clock_steps();
    test_journal_not_written();
    test_agent();
    json_decref(f.w.files);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
