/*
 * fuzz_store_files.c: libFuzzer harness for the files of mod_certsync's
 * store as the sync daemon reads them back: the rollout's journal
 * (rollout.json, mod_certsync/csy_rollout.c) and the current and previous
 * links of a domain (mod_certsync/csy_store.c).  state.json is not here
 * (its reader is being reworked with the status page).
 *
 * The first byte chooses and steers; the rest is the file.
 *
 * Even first byte: the rest is rollout.json.  A new daemon starts on it
 * (csy_rollout_start) in a fake world like t/unit/test_csy_rollout.c's
 * (what they fake alike is t/unit/fake_world.c): a clock that moves when
 * the machine sleeps, a listener, a CertService whose lease answers, an
 * agent and a parent steered by the first byte.
 * The harness aborts unless:
 * - a journal that is not a JSON object changes nothing but the health
 *   ("ready"); one that is starts "drain";
 * - the machine ends (no endless wait) and leaves no journal unless the
 *   parent was asked to restart and did (then the next generation carries
 *   it on and leaves none);
 * - what it sends on never comes from garbage: a lease id (a URL path
 *   segment at CertService) has the API's syntax, every domain probed or
 *   rolled back is a valid store name with a serial, health is "ready" or
 *   "drain", each state a phase name, each journal written is whole;
 * - a restart pending after it waits no longer than the configured
 *   intervals, whatever time the journal held.
 *
 * Odd first byte: the rest is the targets of live/DOMAIN/current and
 * previous, one a line.  They are made as symbolic links in a scratch
 * store beside version directories and bystanders; the harness aborts
 * unless csy_store_current names a version only for a target that is a
 * serial of an existing version, csy_store_rollback swaps exactly when
 * it should, and csy_store_prune removes only versions that neither
 * target names, and nothing a link points at elsewhere.
 *
 * Built with -fsanitize=fuzzer for fuzzing (t/fuzz/run.sh), or linked with
 * replay.c to run the corpus in `make check` without libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "cs_file.h"
#include "cs_layout.h"
#include "cs_name.h"
#include "csy_rollout.h"
#include "csy_store.h"

#include "fake_world.h"
#include "fuzz.h"

#define SEC(n)          apr_time_from_sec(n)
#define T0              SEC(1800000000)
/* A machine still running then waits for ever. */
#define LIMIT           SEC(3 * 3600)
#define FAILING_ANSWERS 5

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* rollout.json                                                         */

enum { PROBE_NEVER, PROBE_OK, PROBE_WRONG, PROBE_LATER };
enum { LEASE_SAME, LEASE_NEW, LEASE_TAKEN, LEASE_ERROR };

typedef struct {
    fake_world_t w;             /* clocks, parent, files, agent */
    int hit_limit;
    int probe;                  /* PROBE_* */
    int lease;                  /* LEASE_*: the first FAILING_ANSWERS */
    int lease_i;
    const char *lease_id;       /* the journal's, for LEASE_SAME */
    int healths, writes, leases, probes, rollbacks;
} fake_t;

static fake_t f;

/* A lease, pool or host name as the API has them (docs/certservice-api.md):
 * 1 to 64 of A-Z a-z 0-9 . _ - */
static int token_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n >= 1 && n <= 64
           && s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
                       "WXYZ0123456789._-")] == '\0';
}

static int domain_ok(const char *d)
{
    return d && cs_name_check(NULL, d, strlen(d), 0) == NULL;
}

static int serial_ok(const char *s)
{
    return s && cs_layout_serial_ok(s, strlen(s));
}

/* domain -> serial, every pair valid */
static void check_pairs(apr_pool_t *p, apr_hash_t *h)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, h); hi; hi = apr_hash_next(hi)) {
        REQUIRE(domain_ok(apr_hash_this_key(hi)));
        REQUIRE(serial_ok(apr_hash_this_val(hi)));
    }
}

static int op_running(void *b)
{
    if (f.w.now > T0 + LIMIT) {
        f.hit_limit = 1;
        f.w.running = 0;
    }
    return f.w.running;
}

static void op_sleep(void *b, apr_interval_time_t t)
{
    REQUIRE(t > 0);
    f.w.now += t;
    /* A load balancer asking the agent every 2 s. */
    if (f.w.agent_on && f.w.now % SEC(2) < t) {
        fake_world_agent_asked(&f.w);
    }
}

static int op_configtest(void *b, apr_pool_t *p, const char **output)
{
    *output = "Syntax OK";
    return 0;
}

static int op_probe(void *b, apr_pool_t *p, apr_hash_t *expected,
                    apr_hash_t *mismatched, const char **why)
{
    apr_hash_index_t *hi;

    f.probes++;
    check_pairs(p, expected);
    *why = NULL;
    if (f.probe == PROBE_NEVER
        || (f.probe == PROBE_LATER && f.w.now < T0 + SEC(5))) {
        *why = "connection refused";
        return CSY_PROBE_NOT_READY;
    }
    if (f.probe == PROBE_WRONG) {
        for (hi = apr_hash_first(p, expected); hi; hi = apr_hash_next(hi)) {
            apr_hash_set(mismatched, apr_hash_this_key(hi),
                         APR_HASH_KEY_STRING, apr_hash_this_val(hi));
            *why = "served with another serial";
        }
    }
    return *why ? CSY_PROBE_MISMATCH : CSY_PROBE_OK;
}

static void op_set_health(void *b, apr_pool_t *p, const char *health)
{
    REQUIRE(strcmp(health, "ready") == 0 || strcmp(health, "drain") == 0);
    f.w.health = health;
    f.healths++;
}

static void op_report(void *b, apr_pool_t *p, long long cursor,
                      const char *state)
{
    REQUIRE(state && token_ok(state));
}

static apr_status_t op_lease_acquire(void *b, apr_pool_t *p, int ttl,
                                     const char **lease, long *retry,
                                     const char **err)
{
    f.leases++;
    *retry = 3;
    if (f.lease_i++ < FAILING_ANSWERS) {
        if (f.lease == LEASE_TAKEN) {
            return APR_EAGAIN;
        }
        if (f.lease == LEASE_ERROR) {
            *err = "CertService unreachable";
            return APR_ECONNREFUSED;
        }
    }
    *lease = f.lease == LEASE_SAME && f.lease_id ? f.lease_id : "L-new.1";
    return APR_SUCCESS;
}

static void op_lease_release(void *b, apr_pool_t *p, const char *lease)
{
    /* DELETE /v1/pools/POOL/leases/LEASE */
    REQUIRE(token_ok(lease));
    f.leases++;
}

static apr_status_t op_rollback(void *b, apr_pool_t *p, const char *domain)
{
    REQUIRE(domain_ok(domain));
    f.rollbacks++;
    return APR_SUCCESS;
}

/* A journal as the machine writes it: whole, nothing from garbage. */
static void check_journal(apr_pool_t *p, json_t *j)
{
    csy_phase_t phase;

    REQUIRE(json_is_object(j));
    phase = csy_phase_parse(json_string_value(json_object_get(j, "phase")));
    REQUIRE(phase == CSY_PHASE_DRAINING || phase == CSY_PHASE_RESTARTING
            || phase == CSY_PHASE_ROLLING_BACK);
    REQUIRE(token_ok(json_string_value(json_object_get(j, "lease"))));
    REQUIRE(json_is_object(json_object_get(j, "expected")));
    check_pairs(p, csy_json_hash(p, json_object_get(j, "expected")));
}

static void check_state(json_t *state)
{
    REQUIRE(json_is_object(state));
    REQUIRE(csy_phase_parse(json_string_value(json_object_get(state,
                                                              "state")))
            != CSY_PHASE_NONE);
}

static apr_status_t op_write_json(void *b, apr_pool_t *p, const char *name,
                                  json_t *j)
{
    char *text;

    f.writes++;
    if (strcmp(name, "rollout.json") == 0) {
        check_journal(p, j);
    }
    else if (strcmp(name, "state.json") == 0) {
        check_state(j);
    }
    else {
        REQUIRE(strcmp(name, "quarantine.json") == 0);
        check_pairs(p, csy_json_hash(p, j));
    }
    /* What the daemon writes (csy_write_json) it can read back. */
    text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
    REQUIRE(text != NULL);
    json_object_set_new(f.w.files, name, json_loads(text, 0, NULL));
    REQUIRE(json_object_get(f.w.files, name) != NULL);
    free(text);
    return APR_SUCCESS;
}

static void op_log(void *b, cs_log_level_t level, const char *msg)
{
    REQUIRE(strncmp(msg, "CY", 2) == 0 && strlen(msg) > 9
            && msg[7] == ':');
}

/* The wall clock runs with the monotonic one here (w.wall_step 0). */
static const csy_rollout_ops_t ops = {
    op_running, fake_world_now, fake_world_wall, op_sleep, op_configtest,
    fake_world_graceful, op_probe, op_set_health, op_report,
    op_lease_acquire, op_lease_release, op_rollback, fake_world_read_json,
    op_write_json, fake_world_remove, fake_world_agent, op_log
};

/* Short waits: every one is a loop of fake sleeps. */
static const csy_rollout_conf_t conf = {
    30,         /* interval */
    1,          /* drain_time */
    9,          /* lease_ttl: renewed every 3 s */
    60,         /* min_restart_interval */
    8,          /* restart_timeout */
    1,          /* agent_grace */
    "127.0.0.1:9443",
    "pid 42"
};

/* One daemon: start on the files, then one cycle with a restart pending. */
static void generation(apr_pool_t *p, int first)
{
    csy_rollout_t r;
    json_t *state = fake_world_read_json(&f.w, p, "state.json");
    json_t *before = fake_world_read_json(&f.w, p, "rollout.json");
    int started_with = json_is_object(before);
    int wait;

    if (!json_is_object(state)) {
        json_decref(state);
        state = json_pack("{s:s, s:{}}", "state", "starting", "counters");
    }
    f.w.running = 1;
    f.w.health = NULL;
    f.healths = f.writes = f.w.removes = f.leases = f.probes = 0;
    f.rollbacks = 0;
    csy_rollout_init(&r, p, &ops, &f.w, &conf, state, NULL);
    csy_rollout_start(&r, p);
    REQUIRE(!f.hit_limit);
    if (!started_with) {
        /* Nothing to carry on: ready, and nothing else touched. */
        REQUIRE(f.healths == 1 && strcmp(f.w.health, "ready") == 0);
        REQUIRE(f.writes == 0 && f.w.removes == 0 && f.leases == 0
                && f.probes == 0 && f.rollbacks == 0);
    }
    check_pairs(p, r.pending);
    check_pairs(p, r.quarantine);
    if (f.w.running) {
        /* A journal carried on is gone (one that is not a JSON object
         * is left alone, read as none by every daemon). */
        REQUIRE(!started_with
                || json_object_get(f.w.files, "rollout.json") == NULL);
        check_state(state);
        /* Back in rotation, unless even the rolled-back generation
         * failed its probe (then drained on purpose, and said so). */
        REQUIRE(strcmp(f.w.health, "ready") == 0
                || csy_phase_parse(json_string_value(json_object_get(
                       state, "state"))) == CSY_PHASE_FAILED);
        REQUIRE(r.lease == NULL);
        /* A restart pending now: asked for within the intervals. */
        json_object_set_new(state, "restart_pending", json_true());
        wait = csy_rollout_cycle(&r, p, 7, 1);
        REQUIRE(!f.hit_limit);
        REQUIRE(wait >= 0 && wait <= conf.min_restart_interval);
    }
    else {
        /* The parent restarts: the next generation carries it on. */
        REQUIRE(f.w.gracefuls > 0);
        check_journal(p, json_object_get(f.w.files, "rollout.json"));
        REQUIRE(first);
        json_object_set_new(f.w.files, "state.json", json_deep_copy(state));
        json_decref(state);
        json_decref(before);
        f.w.graceful_stops = 0;
        f.probe = PROBE_OK;
        f.lease = LEASE_SAME;
        generation(p, 0);
        return;
    }
    json_decref(state);
    json_decref(before);
}

static void fuzz_rollout(apr_pool_t *p, unsigned c, const char *buf,
                         size_t len)
{
    json_t *journal = json_loadb(buf, len, 0, NULL);

    json_decref(f.w.files);
    memset(&f, 0, sizeof(f));
    f.w.now = T0;
    f.w.files = json_object();
    f.probe = (int)((c >> 1) & 3);
    f.lease = (int)((c >> 3) & 3);
    f.w.agent_on = (c >> 5) & 1;
    f.w.graceful_stops = (c >> 6) & 1;
    if (journal) {
        /* As csy_read_json reads it: json_load_file, flags 0. */
        json_object_set_new(f.w.files, "rollout.json", journal);
        f.lease_id = json_string_value(json_object_get(journal, "lease"));
        f.lease_id = token_ok(f.lease_id) ? apr_pstrdup(p, f.lease_id)
                                          : NULL;
    }
    generation(p, 1);
}

/* ------------------------------------------------------------------ */
/* The current and previous links                                       */

#define DOMAIN  "a.example"
#define OTHER   "b.example"

static const char *const versions[] = { "0a", "0b", "1c" };
#define NVERSIONS (sizeof(versions) / sizeof(versions[0]))

static csy_store_t *store;
static const char *ddir, *odir, *outside;

static const char *at(apr_pool_t *p, const char *dir, const char *name)
{
    return apr_pstrcat(p, dir, "/", name, NULL);
}

static int exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

static void mkdir_ok(const char *path)
{
    REQUIRE(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void remove_scratch(void)
{
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    if (cs_file_remove_tree(csy_store_dir(store), 8, p) != APR_SUCCESS) {
        fprintf(stderr, "fuzz_store_files: cannot remove %s\n",
                csy_store_dir(store));
    }
    apr_pool_destroy(p);
}

static void scratch_store(void)
{
    const char *base = getenv("TMPDIR");
    char *dir;

    if (access("/dev/shm", W_OK) == 0) {
        base = "/dev/shm";
    }
    dir = apr_pstrcat(root, base && *base ? base : "/tmp",
                      "/fuzz_store_files.XXXXXX", NULL);
    REQUIRE(mkdtemp(dir) != NULL);
    REQUIRE(chmod(dir, 0755) == 0);
    REQUIRE(csy_store_open(&store, root, dir) == APR_SUCCESS);
    ddir = cs_layout_path(root, csy_store_dir(store), DOMAIN, NULL, NULL);
    odir = cs_layout_path(root, csy_store_dir(store), OTHER, NULL, NULL);
    outside = apr_pstrcat(root, csy_store_dir(store), "/outside", NULL);
    mkdir_ok(ddir);
    mkdir_ok(odir);
    mkdir_ok(outside);
    atexit(remove_scratch);
}

/* The serial a target names if it is one (what link_serial must
 * return), else NULL. */
static const char *model_serial(const char *t)
{
    return t && cs_layout_serial_ok(t, strlen(t)) ? t : NULL;
}

static int version_exists(const char *serial)
{
    size_t i;

    for (i = 0; serial && i < NVERSIONS; i++) {
        if (strcmp(serial, versions[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Make ddir/name a link to target (NULL: none); 0 if it cannot be. */
static int make_link(apr_pool_t *p, const char *name, const char *target)
{
    const char *path = at(p, ddir, name);

    REQUIRE(unlink(path) == 0 || errno == ENOENT);
    return target && symlink(target, path) == 0;
}

static const char *read_link(apr_pool_t *p, const char *name)
{
    char buf[4096];
    ssize_t n = readlink(at(p, ddir, name), buf, sizeof(buf) - 1);

    if (n < 0) {
        return NULL;
    }
    buf[n] = '\0';
    return apr_pstrdup(p, buf);
}

static void fuzz_links(apr_pool_t *p, unsigned c, const char *buf,
                       size_t len)
{
    const char *eol = memchr(buf, '\n', len), *cur_t, *prev_t, *cur, *prev;
    const char *got, *dir;
    apr_status_t rv;
    size_t i;

    /* The kernel keeps a target up to its first NUL. */
    cur_t = apr_pstrndup(p, buf, eol ? (size_t)(eol - buf) : len);
    prev_t = eol ? apr_pstrndup(p, eol + 1, len - (size_t)(eol + 1 - buf))
                 : NULL;
    if (!make_link(p, CS_LAYOUT_CURRENT, cur_t)) {
        cur_t = NULL;
    }
    if (!make_link(p, CS_LAYOUT_PREVIOUS, prev_t)) {
        prev_t = NULL;
    }
    for (i = 0; i < NVERSIONS; i++) {
        mkdir_ok(at(p, ddir, versions[i]));
    }
    mkdir_ok(at(p, odir, "0d"));
    mkdir_ok(at(p, outside, "0e"));
    cur = model_serial(cur_t);
    prev = model_serial(prev_t);

    /* current names a version only if it is a serial that exists. */
    got = csy_store_current(store, p, DOMAIN);
    if (cur && version_exists(cur)) {
        REQUIRE(got && strcmp(got, cur) == 0);
        dir = csy_store_current_dir(store, p, DOMAIN);
        REQUIRE(dir && strcmp(dir, at(p, ddir, CS_LAYOUT_CURRENT)) == 0);
    }
    else {
        REQUIRE(got == NULL);
        REQUIRE(csy_store_current_dir(store, p, DOMAIN) == NULL);
    }

    if (c & 2) {
        /* Rollback: only to a previous version that exists and differs. */
        int live_cur = cur && version_exists(cur);
        int live_prev = prev && version_exists(prev);

        rv = csy_store_rollback(store, p, DOMAIN);
        if (live_prev && !(live_cur && strcmp(cur, prev) == 0)) {
            REQUIRE(rv == APR_SUCCESS);
            REQUIRE(strcmp(read_link(p, CS_LAYOUT_CURRENT), prev) == 0);
            if (live_cur) {
                REQUIRE(strcmp(read_link(p, CS_LAYOUT_PREVIOUS), cur) == 0);
            }
            else {
                /* The garbage previous stays: nothing points at it. */
                REQUIRE(strcmp(read_link(p, CS_LAYOUT_PREVIOUS), prev) == 0);
            }
            got = csy_store_current(store, p, DOMAIN);
            REQUIRE(got && strcmp(got, prev) == 0);
            prev = live_cur ? cur : prev;
            cur = got;
            cur_t = got;
        }
        else {
            const char *l;

            REQUIRE(rv == APR_NOTFOUND);
            l = read_link(p, CS_LAYOUT_CURRENT);
            REQUIRE((l == NULL) == (cur_t == NULL));
            REQUIRE(!l || strcmp(l, cur_t) == 0);
        }
    }

    /* Prune removes versions neither link names, nothing else. */
    rv = csy_store_prune(store, p, DOMAIN);
    if (rv != APR_SUCCESS) {
        char err[120];

        fprintf(stderr, "prune: %s\n", apr_strerror(rv, err, sizeof(err)));
        REQUIRE(system(apr_pstrcat(p, "ls -la '", ddir, "' >&2", NULL))
                >= 0);
    }
    REQUIRE(rv == APR_SUCCESS);
    for (i = 0; i < NVERSIONS; i++) {
        int named = (cur && strcmp(cur, versions[i]) == 0)
                    || (prev && strcmp(prev, versions[i]) == 0);

        REQUIRE(exists(at(p, ddir, versions[i])) == named);
    }
    REQUIRE(exists(at(p, odir, "0d")));
    REQUIRE(exists(at(p, outside, "0e")));
    REQUIRE(exists(at(p, ddir, CS_LAYOUT_CURRENT)) == (cur_t != NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;

    if (!root) {
        REQUIRE(apr_initialize() == APR_SUCCESS);
        REQUIRE(apr_pool_create(&root, NULL) == APR_SUCCESS);
        scratch_store();
    }
    if (size < 1) {
        return 0;
    }
    apr_pool_create(&p, root);
    if (data[0] & 1) {
        fuzz_links(p, data[0], (const char *)data + 1, size - 1);
    }
    else {
        fuzz_rollout(p, data[0], (const char *)data + 1, size - 1);
    }
    apr_pool_destroy(p);
    return 0;
}
