/*
 * fuzz_state.c: libFuzzer harness for the sync daemon's status as it is
 * read back (csy_state_parse: STORE/state.json and the copy in shared
 * memory), what the status page derives from it (degraded, reasons,
 * behind) and the agent-check line made from the reasons.
 *
 * Invariants:
 *   - NULL with an error text, or an object and no error;
 *   - every member of the object is one of csy_state.h's names with its
 *     type; state is a phase name; strings hold no NUL; counters are
 *     integers, failures strings, store errors have their error text;
 *   - parsing is idempotent: the object dumped and parsed again is equal;
 *   - degraded is true exactly when there are reasons, each a string;
 *   - the text survives the shared-memory copy byte for byte;
 *   - the agent-check line is one line of printable ASCII that starts
 *     with "ready" or "drain" as the health says, whatever the reasons.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to run
 * the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "csy_agent.h"
#include "csy_rollout.h"
#include "csy_state.h"

#include "fuzz.h"

static apr_pool_t *root;

static int is_text(json_t *v)
{
    return json_is_string(v)
           && strlen(json_string_value(v)) == json_string_length(v);
}

static void check_member(const char *k, json_t *v)
{
    static const char *const strings[] = {
        "state", "health", "host", "pool", "service", "store",
        "last_rollout_failure", NULL
    };
    static const char *const integers[] = {
        "cursor", "service_cursor", "last_sync", "last_success",
        "last_error_time", "next_sync", "last_restart", "last_activation",
        "failures_trimmed", NULL
    };
    json_t *x, *y;
    const char *kk;
    int i;

    for (i = 0; strings[i]; i++) {
        if (!strcmp(k, strings[i])) {
            REQUIRE(is_text(v));
            if (!strcmp(k, "state")) {
                REQUIRE(csy_phase_parse(json_string_value(v))
                        != CSY_PHASE_NONE);
            }
            return;
        }
    }
    for (i = 0; integers[i]; i++) {
        if (!strcmp(k, integers[i])) {
            REQUIRE(json_is_integer(v));
            return;
        }
    }
    if (!strcmp(k, "last_error")) {
        REQUIRE(json_is_null(v) || is_text(v));
    }
    else if (!strcmp(k, "restart_pending")
             || !strcmp(k, "service_cursor_exact")) {
        REQUIRE(json_is_boolean(v));
    }
    else if (!strcmp(k, "counters")) {
        REQUIRE(json_is_object(v));
        json_object_foreach(v, kk, x) {
            REQUIRE(json_is_integer(x));
        }
    }
    else if (!strcmp(k, "failures")) {
        REQUIRE(json_is_object(v));
        json_object_foreach(v, kk, x) {
            REQUIRE(json_is_string(x));
        }
    }
    else if (!strcmp(k, "store_errors")) {
        REQUIRE(json_is_object(v));
        json_object_foreach(v, kk, x) {
            REQUIRE(json_is_object(x));
            REQUIRE(json_is_string(json_object_get(x, "error")));
            y = json_object_get(x, "since");
            REQUIRE(!y || json_is_integer(y));
        }
    }
    else {
        fprintf(stderr, "unknown member %s\n", k);
        REQUIRE(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *err, *k, *line;
    json_t *st, *again, *v, *reasons;
    char *text, *back, buf[256];
    static apr_uint64_t seg[512];     /* aligned like a mapping */
    apr_size_t len, n;
    csy_state_shm_t *shm;
    apr_pool_t *p;
    size_t i;

    if (!root) {
        apr_initialize();
        apr_pool_create(&root, NULL);
    }
    apr_pool_create(&p, root);
    st = csy_state_parse((const char *)data, size, &err);
    REQUIRE((st == NULL) == (err != NULL));
    if (!st) {
        apr_pool_destroy(p);
        return 0;
    }
    REQUIRE(json_is_object(st));
    json_object_foreach(st, k, v) {
        check_member(k, v);
    }

    /* Idempotent, through the text the daemon publishes. */
    text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
    REQUIRE(text != NULL);
    len = strlen(text);
    again = csy_state_parse(text, len, &err);
    REQUIRE(again && json_equal(st, again));
    json_decref(again);

    /* The shared-memory copy gives back the same bytes (or refuses a
     * text too long, keeping what it had). */
    memset(seg, 0, sizeof(seg));
    shm = csy_state_shm_attach(seg, sizeof(seg));
    REQUIRE(shm != NULL);
    REQUIRE(csy_state_shm_get(shm, p, &n) == NULL);
    if (csy_state_shm_put(shm, text, len) == APR_SUCCESS) {
        back = csy_state_shm_get(shm, p, &n);
        REQUIRE(back && n == len && memcmp(back, text, len) == 0);
        /* attached again (a graceful restart): the text stays */
        shm = csy_state_shm_attach(seg, sizeof(seg));
        back = csy_state_shm_get(shm, p, &n);
        REQUIRE(back && n == len && memcmp(back, text, len) == 0);
    }
    else {
        REQUIRE(len > sizeof(seg) - csy_state_shm_size(0));
        REQUIRE(csy_state_shm_get(shm, p, &n) == NULL);
    }
    free(text);

    /* What the page and the agent derive. */
    reasons = csy_state_degraded(st);
    REQUIRE(json_is_array(reasons));
    json_array_foreach(reasons, i, v) {
        REQUIRE(is_text(v));
    }
    csy_state_annotate(st);
    REQUIRE(json_is_true(json_object_get(st, "degraded"))
            == (json_array_size(reasons) > 0));
    REQUIRE(json_equal(json_object_get(st, "degraded_reasons"), reasons));
    v = json_object_get(st, "behind");
    REQUIRE(!v || (json_is_integer(v) && json_integer_value(v) >= 0));
    text = NULL;
    for (i = 0; i < json_array_size(reasons); i++) {
        const char *r = json_string_value(json_array_get(reasons, i));

        text = text ? apr_pstrcat(p, text, "; ", r, NULL)
                    : apr_pstrdup(p, r);
    }
    for (i = 0; i < 2; i++) {
        const char *health = json_string_value(json_object_get(st,
                                                               "health"));
        line = csy_agent_line(buf, i ? 64 : sizeof(buf),
                              i ? "drain" : health, text);
        n = strlen(line);
        REQUIRE(n > 0 && n < (i ? 64 : sizeof(buf)));
        REQUIRE(line[n - 1] == '\n' && strchr(line, '\n') == line + n - 1);
        for (len = 0; len + 1 < n; len++) {
            REQUIRE(line[len] >= 0x20 && line[len] < 0x7f);
        }
        REQUIRE(csy_agent_answer_is_ready(line)
                == (!i && health && !strcmp(health, "ready")));
        REQUIRE(csy_agent_answer_is_ready(line)
                || !strncmp(line, "drain", 5));
    }
    json_decref(reasons);
    json_decref(st);
    apr_pool_destroy(p);
    return 0;
}
