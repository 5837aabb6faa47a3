/*
 * test_csy_state.c: the daemon's status read back from bytes
 * (csy_state_parse), what makes a host degraded, the agent-check line of
 * a degraded host, and the status's copy in shared memory.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "csy_agent.h"
#include "csy_state.h"
#include "unit.h"

static apr_pool_t *pool;

static json_t *parse(const char *text)
{
    const char *err;

    return csy_state_parse(text, strlen(text), &err);
}

static void test_parse(void)
{
    const char *err;
    json_t *st;

    UNIT_CASE("parse: a status as the daemon writes it");
    st = parse("{\"state\": \"backoff\", \"health\": \"ready\", "
               "\"last_error\": \"cannot save the cursor: Read-only file "
               "system\", \"last_error_time\": 1700000000, \"cursor\": 5, "
               "\"service_cursor\": 205, \"service_cursor_exact\": true, "
               "\"counters\": {\"cycles\": 3}, \"failures\": {}, "
               "\"store_errors\": {\"cursor\": {\"error\": \"Read-only "
               "file system\", \"path\": \"/s/cursor\", \"since\": 1}}}");
    CHECK(st != NULL);
    CHECK_STR(json_string_value(json_object_get(st, "state")), "backoff");
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "service_cursor")),
                 205);
    CHECK_STR(json_string_value(json_object_get(json_object_get(
              json_object_get(st, "store_errors"), "cursor"), "error")),
              "Read-only file system");
    json_decref(st);

    UNIT_CASE("parse: truncated, empty, not an object");
    CHECK(parse("{\"state\": \"idle\", \"last_er") == NULL);
    CHECK(csy_state_parse("", 0, &err) == NULL && err != NULL);
    CHECK(csy_state_parse(NULL, 0, &err) == NULL && err != NULL);
    CHECK(parse("[1]") == NULL);
    CHECK(parse("null") == NULL);

    UNIT_CASE("parse: members of the wrong type are left out");
    st = parse("{\"state\": 1, \"last_error\": 5, \"cursor\": \"12\", "
               "\"health\": null, \"failures\": {\"a\": 1, \"b\": \"why\"}, "
               "\"counters\": {\"x\": \"y\", \"cycles\": 2}, "
               "\"store_errors\": {\"s\": \"t\", \"u\": {\"error\": 3}, "
               "\"v\": {\"error\": \"EIO\", \"since\": \"now\"}}, "
               "\"other\": {\"deep\": 1}}");
    CHECK(st != NULL);
    CHECK(json_object_get(st, "state") == NULL);
    CHECK(json_object_get(st, "last_error") == NULL);
    CHECK(json_object_get(st, "cursor") == NULL);
    CHECK(json_object_get(st, "health") == NULL);
    CHECK(json_object_get(st, "other") == NULL);
    CHECK_EQ_INT(json_object_size(json_object_get(st, "failures")), 1);
    CHECK_EQ_INT(json_object_size(json_object_get(st, "counters")), 1);
    CHECK_EQ_INT(json_object_size(json_object_get(st, "store_errors")), 1);
    CHECK(json_object_get(json_object_get(json_object_get(st,
              "store_errors"), "v"), "since") == NULL);
    json_decref(st);

    UNIT_CASE("parse: an unknown state, a string with a NUL");
    st = parse("{\"state\": \"flying\", \"host\": \"a\\u0000b\", "
               "\"last_error\": null}");
    CHECK(st && json_object_get(st, "state") == NULL);
    CHECK(json_object_get(st, "host") == NULL);
    CHECK(json_is_null(json_object_get(st, "last_error")));
    json_decref(st);
}

static void test_degraded(void)
{
    json_t *st, *r;

    UNIT_CASE("degraded: all is well");
    st = parse("{\"state\": \"idle\", \"cursor\": 7, \"service_cursor\": 7, "
               "\"failures\": {}, \"store_errors\": {}, "
               "\"last_error\": null}");
    csy_state_annotate(st);
    CHECK(json_is_false(json_object_get(st, "degraded")));
    CHECK_EQ_INT(json_array_size(json_object_get(st, "degraded_reasons")),
                 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "behind")), 0);
    json_decref(st);

    UNIT_CASE("degraded: the store cannot be written, 200 behind");
    st = parse("{\"state\": \"backoff\", \"cursor\": 0, "
               "\"service_cursor\": 200, \"service_cursor_exact\": true, "
               "\"last_error\": \"cannot write the manifest: No space left "
               "on device\", \"store_errors\": {\"state.json\": "
               "{\"error\": \"No space left on device\"}}}");
    r = csy_state_degraded(st);
    CHECK_EQ_INT(json_array_size(r), 3);
    CHECK_STR(json_string_value(json_array_get(r, 0)),
              "cannot write state.json: No space left on device");
    CHECK_STR(json_string_value(json_array_get(r, 1)),
              "sync failing: cannot write the manifest: No space left on "
              "device");
    CHECK_STR(json_string_value(json_array_get(r, 2)),
              "200 changes behind CertService");
    json_decref(r);
    csy_state_annotate(st);
    CHECK(json_is_true(json_object_get(st, "degraded")));
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "behind")), 200);
    json_decref(st);

    UNIT_CASE("degraded: skipped bundles, a failed configuration test");
    st = parse("{\"state\": \"configtest-failed\", \"failures\": "
               "{\"a.example\": \"bad chain\"}}");
    r = csy_state_degraded(st);
    CHECK_EQ_INT(json_array_size(r), 2);
    CHECK_STR(json_string_value(json_array_get(r, 0)), "1 bundles skipped");
    CHECK_STR(json_string_value(json_array_get(r, 1)),
              "rollout: configtest-failed");
    json_decref(r);
    json_decref(st);
}

/*
 * issue 18: at 1,000,000 domains every cycle failed ("cannot read the
 * store") and the start's prune too (CY00011), while the status page said
 * "health": "ready".  A sync that cannot proceed, or a store that cannot
 * be pruned, is degraded, with the reason, and the page's health says
 * "degraded"; what the load balancer is told ("load_balancer") stays
 * "ready", so that a pool whose proxies all fail alike keeps serving.
 */
static void test_degraded_sync(void)
{
    json_t *st, *r;

    UNIT_CASE("degraded: the store cannot be pruned");
    st = parse("{\"state\": \"idle\", \"health\": \"ready\", "
               "\"prune_error\": \"cannot prune the store /s: Invalid "
               "argument\"}");
    r = csy_state_degraded(st);
    if (CHECK_EQ_INT(json_array_size(r), 1)) {
        CHECK_STR(json_string_value(json_array_get(r, 0)),
                  "cannot prune the store /s: Invalid argument");
    }
    json_decref(r);
    json_decref(st);
    st = parse("{\"state\": \"idle\", \"prune_error\": null}");
    r = csy_state_degraded(st);
    CHECK_EQ_INT(json_array_size(r), 0);
    json_decref(r);
    json_decref(st);

    UNIT_CASE("degraded: health on the status page, the load balancer's");
    st = parse("{\"state\": \"backoff\", \"health\": \"ready\", "
               "\"last_error\": \"cannot read the store: Invalid "
               "argument\"}");
    csy_state_annotate(st);
    CHECK(json_is_true(json_object_get(st, "degraded")));
    CHECK_STR(json_string_value(json_object_get(st, "health")), "degraded");
    CHECK_STR(json_string_value(json_object_get(st, "load_balancer")),
              "ready");
    CHECK_STR(json_string_value(json_array_get(
                  json_object_get(st, "degraded_reasons"), 0)),
              "sync failing: cannot read the store: Invalid argument");
    json_decref(st);
    st = parse("{\"state\": \"idle\", \"health\": \"ready\"}");
    csy_state_annotate(st);
    CHECK_STR(json_string_value(json_object_get(st, "health")), "ready");
    CHECK_STR(json_string_value(json_object_get(st, "load_balancer")),
              "ready");
    json_decref(st);
    /* Drained by a rollout: drain, degraded or not. */
    st = parse("{\"state\": \"draining\", \"health\": \"drain\", "
               "\"last_error\": \"x\"}");
    csy_state_annotate(st);
    CHECK_STR(json_string_value(json_object_get(st, "health")), "drain");
    CHECK_STR(json_string_value(json_object_get(st, "load_balancer")),
              "drain");
    json_decref(st);
}

static void test_agent_line(void)
{
    char buf[128], small[40];

    UNIT_CASE("agent line: not degraded");
    CHECK_STR(csy_agent_line(buf, sizeof(buf), "ready", NULL), "ready\n");
    CHECK_STR(csy_agent_line(buf, sizeof(buf), "drain", ""), "drain\n");

    UNIT_CASE("agent line: degraded stays in rotation");
    CHECK_STR(csy_agent_line(buf, sizeof(buf), "ready",
                             "cannot write cursor: Read-only file system"),
              "ready up #certsync degraded: cannot write cursor: Read-only "
              "file system\n");
    CHECK(csy_agent_answer_is_ready(buf));
    CHECK_STR(csy_agent_line(buf, sizeof(buf), "drain", "x\ny"),
              "drain #certsync degraded: x?y\n");
    CHECK(!csy_agent_answer_is_ready(buf));

    UNIT_CASE("agent line: cut to fit");
    csy_agent_line(small, sizeof(small), "ready",
                   "a reason much longer than the buffer can hold");
    CHECK_EQ_INT(strlen(small), sizeof(small) - 1);
    CHECK(small[sizeof(small) - 2] == '\n');
    CHECK(csy_agent_answer_is_ready(small));
    CHECK(!csy_agent_answer_is_ready("readyx\n"));
}

static void test_shm(void)
{
    size_t size = csy_state_shm_size(64);
    void *seg = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    csy_state_shm_t *shm;
    apr_size_t n;
    char *got, big[100];
    pid_t pid;
    int status, i;

    UNIT_CASE("shm: empty, put, get, too long");
    CHECK(seg != MAP_FAILED);
    shm = csy_state_shm_attach(seg, size);
    CHECK(shm != NULL);
    CHECK(csy_state_shm_get(shm, pool, &n) == NULL);
    CHECK_EQ_INT(csy_state_shm_put(shm, "{\"state\": \"idle\"}", 17),
                 APR_SUCCESS);
    got = csy_state_shm_get(shm, pool, &n);
    CHECK_STR(got, "{\"state\": \"idle\"}");
    CHECK_EQ_INT(n, 17);
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(csy_state_shm_put(shm, big, sizeof(big)), APR_ENOSPC);
    CHECK_STR(csy_state_shm_get(shm, pool, &n), "{\"state\": \"idle\"}");

    UNIT_CASE("shm: attached again (graceful restart) keeps the text");
    shm = csy_state_shm_attach(seg, size);
    CHECK_STR(csy_state_shm_get(shm, pool, &n), "{\"state\": \"idle\"}");

    UNIT_CASE("shm: a reader in another process never sees half a text");
    pid = fork();
    if (pid == 0) {
        for (i = 0; i < 200000; i++) {
            csy_state_shm_put(shm, i & 1 ? "{\"a\": 1111111111}"
                                         : "{\"b\": 2}", i & 1 ? 17 : 8);
        }
        _exit(0);
    }
    status = 1;
    for (i = 0; i < 20000; i++) {
        got = csy_state_shm_get(shm, pool, &n);
        if (got && strcmp(got, "{\"a\": 1111111111}")
            && strcmp(got, "{\"b\": 2}")
            && strcmp(got, "{\"state\": \"idle\"}")) {
            status = 0;
            printf("  torn read: %s\n", got);
            break;
        }
    }
    CHECK(status);
    CHECK(waitpid(pid, &status, 0) == pid && status == 0);
    munmap(seg, size);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_parse();
    test_degraded();
    test_degraded_sync();
    test_agent_line();
    test_shm();
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
