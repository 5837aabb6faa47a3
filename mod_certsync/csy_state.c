/*
 * csy_state.c: the sync daemon's status read back from untrusted bytes,
 * what makes a host degraded, and the status's copy in shared memory
 * (csy_state.h).  Pure code.
 */
#include <sched.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>

#include <apr_strings.h>

#include "csy_rollout.h"
#include "csy_state.h"

/* ------------------------------------------------------------------ */
/* Parsing                                                             */
/* ------------------------------------------------------------------ */

typedef enum {
    T_STRING, T_STRING_OR_NULL, T_INTEGER, T_BOOLEAN, T_COUNTERS,
    T_FAILURES, T_STORE_ERRORS, T_TICKET_KEYS
} member_type_t;

static const struct {
    const char *name;
    member_type_t type;
} members[] = {
    { "state", T_STRING }, { "health", T_STRING }, { "host", T_STRING },
    { "pool", T_STRING }, { "service", T_STRING }, { "store", T_STRING },
    { "last_error", T_STRING_OR_NULL }, { "prune_error", T_STRING_OR_NULL },
    { "last_rollout_failure", T_STRING },
    { "cursor", T_INTEGER }, { "service_cursor", T_INTEGER },
    { "last_sync", T_INTEGER }, { "last_success", T_INTEGER },
    { "last_error_time", T_INTEGER }, { "next_sync", T_INTEGER },
    { "last_restart", T_INTEGER }, { "last_activation", T_INTEGER },
    { "failures_trimmed", T_INTEGER },
    { "restart_pending", T_BOOLEAN }, { "service_cursor_exact", T_BOOLEAN },
    { "counters", T_COUNTERS }, { "failures", T_FAILURES },
    { "store_errors", T_STORE_ERRORS },
    /* The pool's TLS session ticket keys (mod_certsync_tkeys.c). */
    { "ticket_keys", T_TICKET_KEYS }
};

/* "ticket_keys": its numbers, and the issuing key's name and the last
 * error as text (or null). */
static json_t *ticket_keys_of(json_t *o)
{
    static const char *const ints[] = { "keys", "issuing_until", "rotate",
                                        "accept", "updated" };
    static const char *const strs[] = { "issuing", "error" };
    json_t *out = json_object(), *v;
    size_t i;

    for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (json_is_integer(v = json_object_get(o, ints[i]))) {
            json_object_set(out, ints[i], v);
        }
    }
    for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        v = json_object_get(o, strs[i]);
        if (json_is_null(v) || (json_is_string(v)
                                && strlen(json_string_value(v))
                                   == json_string_length(v))) {
            json_object_set(out, strs[i], v);
        }
    }
    return out;
}

/* The members of o that are of type want (a json_type), copied. */
static json_t *object_of(json_t *o, json_type want)
{
    json_t *out = json_object(), *v;
    const char *k;

    json_object_foreach(o, k, v) {
        if (json_typeof(v) == want) {
            json_object_set(out, k, v);
        }
    }
    return out;
}

static json_t *store_errors_of(json_t *o)
{
    json_t *out = json_object(), *v, *e;
    const char *k;

    json_object_foreach(o, k, v) {
        json_t *error = json_object_get(v, "error");

        if (!json_is_string(error)) {
            continue;
        }
        e = json_pack("{s:O}", "error", error);
        if (json_is_string(json_object_get(v, "path"))) {
            json_object_set(e, "path", json_object_get(v, "path"));
        }
        if (json_is_integer(json_object_get(v, "since"))) {
            json_object_set(e, "since", json_object_get(v, "since"));
        }
        if (json_is_integer(json_object_get(v, "last"))) {
            json_object_set(e, "last", json_object_get(v, "last"));
        }
        json_object_set_new(out, k, e);
    }
    return out;
}

json_t *csy_state_parse(const char *text, size_t len, const char **err)
{
    json_error_t jerr;
    json_t *in, *out, *v;
    size_t i;

    *err = NULL;
    /* JSON_ALLOW_NUL: an embedded NUL is a string's, not the end. */
    in = json_loadb(text ? text : "", text ? len : 0,
                    JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!json_is_object(in)) {
        *err = in ? "not a JSON object" : "not JSON";
        json_decref(in);
        return NULL;
    }
    out = json_object();
    for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        v = json_object_get(in, members[i].name);
        if (!v) {
            continue;
        }
        switch (members[i].type) {
        case T_STRING_OR_NULL:
            if (json_is_null(v)) {
                json_object_set(out, members[i].name, v);
                break;
            }
            /* fall through */
        case T_STRING:
            /* Text for people and for C strings: no embedded NUL. */
            if (json_is_string(v)
                && strlen(json_string_value(v)) == json_string_length(v)
                && (strcmp(members[i].name, "state")
                    || csy_phase_parse(json_string_value(v))
                       != CSY_PHASE_NONE)) {
                json_object_set(out, members[i].name, v);
            }
            break;
        case T_INTEGER:
            if (json_is_integer(v)) {
                json_object_set(out, members[i].name, v);
            }
            break;
        case T_BOOLEAN:
            if (json_is_boolean(v)) {
                json_object_set(out, members[i].name, v);
            }
            break;
        case T_COUNTERS:
            if (json_is_object(v)) {
                json_object_set_new(out, members[i].name,
                                    object_of(v, JSON_INTEGER));
            }
            break;
        case T_FAILURES:
            if (json_is_object(v)) {
                json_object_set_new(out, members[i].name,
                                    object_of(v, JSON_STRING));
            }
            break;
        case T_STORE_ERRORS:
            if (json_is_object(v)) {
                json_object_set_new(out, members[i].name,
                                    store_errors_of(v));
            }
            break;
        case T_TICKET_KEYS:
            if (json_is_object(v)) {
                json_object_set_new(out, members[i].name,
                                    ticket_keys_of(v));
            }
            break;
        }
    }
    json_decref(in);
    return out;
}

/* ------------------------------------------------------------------ */
/* Degraded                                                            */
/* ------------------------------------------------------------------ */

static void reason(json_t *reasons, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(reasons, json_string(buf));
}

json_t *csy_state_degraded(json_t *state)
{
    json_t *reasons = json_array(), *v;
    const char *k, *err;
    json_int_t cursor, head;
    csy_phase_t phase;
    size_t n;

    json_object_foreach(json_object_get(state, "store_errors"), k, v) {
        reason(reasons, "cannot write %s: %s", k,
               json_string_value(json_object_get(v, "error")));
    }
    err = json_string_value(json_object_get(state, "prune_error"));
    if (err) {
        reason(reasons, "%s", err);
    }
    phase = csy_phase_parse(json_string_value(json_object_get(state,
                                                              "state")));
    err = json_string_value(json_object_get(state, "last_error"));
    if (phase == CSY_PHASE_BACKOFF || err) {
        reason(reasons, "sync failing: %s", err ? err : "(no detail)");
    }
    cursor = json_integer_value(json_object_get(state, "cursor"));
    head = json_integer_value(json_object_get(state, "service_cursor"));
    if (json_is_integer(json_object_get(state, "service_cursor"))
        && head > cursor) {
        reason(reasons, "%s%" APR_INT64_T_FMT " changes behind "
               "CertService",
               json_is_true(json_object_get(state, "service_cursor_exact"))
               ? "" : "at least ", (apr_int64_t)(head - cursor));
    }
    n = json_object_size(json_object_get(state, "failures"));
    if (json_integer_value(json_object_get(state, "failures_trimmed")) > 0) {
        n = (size_t)json_integer_value(json_object_get(state,
                                                       "failures_trimmed"));
    }
    if (n > 0) {
        reason(reasons, "%lu bundles skipped", (unsigned long)n);
    }
    if (phase == CSY_PHASE_CONFIGTEST_FAILED || phase == CSY_PHASE_FAILED
        || phase == CSY_PHASE_RESTART_FAILED) {
        reason(reasons, "rollout: %s", csy_phase_name(phase));
    }
    return reasons;
}

void csy_state_annotate(json_t *state)
{
    json_t *reasons = csy_state_degraded(state);
    json_t *head = json_object_get(state, "service_cursor");
    const char *health = json_string_value(json_object_get(state,
                                                           "health"));
    int degraded = json_array_size(reasons) > 0;
    json_int_t behind;

    /* What the load balancer is told stays ready while the host serves
     * (degraded is not down); the page says degraded. */
    health = health && !strcmp(health, "drain") ? "drain" : "ready";
    json_object_set_new(state, "load_balancer", json_string(health));
    json_object_set_new(state, "health",
                        json_string(degraded && !strcmp(health, "ready")
                                    ? "degraded" : health));
    json_object_set_new(state, "degraded", json_boolean(degraded));
    json_object_set_new(state, "degraded_reasons", reasons);
    if (json_is_integer(head)) {
        behind = json_integer_value(head)
                 - json_integer_value(json_object_get(state, "cursor"));
        json_object_set_new(state, "behind",
                            json_integer(behind > 0 ? behind : 0));
    }
}

/* ------------------------------------------------------------------ */
/* Shared memory                                                       */
/* ------------------------------------------------------------------ */

/* Changes when the layout does: a segment kept across a graceful restart
 * into another build of the module starts empty. */
#define CSY_STATE_MAGIC 0x43535901u

struct csy_state_shm_t {
    apr_uint32_t magic;
    apr_uint32_t seq;           /* odd while the writer copies */
    apr_uint32_t cap;           /* bytes of text */
    apr_uint32_t len;           /* 0: nothing published */
    char text[1];
};

apr_size_t csy_state_shm_size(apr_size_t text_max)
{
    return offsetof(csy_state_shm_t, text) + text_max;
}

csy_state_shm_t *csy_state_shm_attach(void *base, apr_size_t size)
{
    csy_state_shm_t *shm = base;
    apr_size_t cap = size - offsetof(csy_state_shm_t, text);

    if (size <= offsetof(csy_state_shm_t, text) || cap > 0x7fffffff) {
        return NULL;
    }
    if (shm->magic != CSY_STATE_MAGIC || shm->cap != cap) {
        memset(shm, 0, offsetof(csy_state_shm_t, text));
        shm->cap = (apr_uint32_t)cap;
        __atomic_store_n(&shm->magic, CSY_STATE_MAGIC, __ATOMIC_RELEASE);
    }
    return shm;
}

apr_status_t csy_state_shm_put(csy_state_shm_t *shm, const char *text,
                               apr_size_t len)
{
    apr_uint32_t seq;

    if (len == 0 || len > shm->cap) {
        return APR_ENOSPC;
    }
    seq = __atomic_load_n(&shm->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&shm->seq, seq | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(shm->text, text, len);
    __atomic_store_n(&shm->len, (apr_uint32_t)len, __ATOMIC_RELAXED);
    __atomic_store_n(&shm->seq, (seq | 1) + 1, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

char *csy_state_shm_get(csy_state_shm_t *shm, apr_pool_t *p,
                        apr_size_t *len)
{
    apr_uint32_t before, after, n;
    char *copy = NULL;
    int tries;

    *len = 0;
    for (tries = 0; tries < 1000; tries++) {
        before = __atomic_load_n(&shm->seq, __ATOMIC_ACQUIRE);
        if (before & 1) {
            sched_yield();
            continue;
        }
        n = __atomic_load_n(&shm->len, __ATOMIC_RELAXED);
        if (n == 0 || n > shm->cap) {
            return NULL;
        }
        if (!copy) {
            copy = apr_palloc(p, shm->cap + 1);
        }
        memcpy(copy, shm->text, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&shm->seq, __ATOMIC_RELAXED);
        if (before == after) {
            copy[n] = '\0';
            *len = n;
            return copy;
        }
    }
    return NULL;
}
