/*
 * csy_ondemand.c: the on-demand table of a proxy (see csy_ondemand.h).
 *
 * One process-shared mutex guards the whole table: every operation is a
 * probe of at most CSY_OD_PROBE slots (or, for the daemon's take and
 * requeue, one pass over the table a few times a second), never a system
 * call, so the lock is held for microseconds.  The mutex is robust: a
 * worker killed while holding it (kill -9) leaves it to the next locker,
 * who marks it consistent; the table is still valid, since every update
 * under the lock leaves the slot it touches whole or unused.
 */
#include <errno.h>
#include <string.h>

#include <apr_strings.h>

#include "csy_ondemand.h"

static apr_uint32_t od_hash(const char *s)
{
    apr_uint32_t h = 2166136261u;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h ? h : 1;
}

static void od_lock(csy_od_t *od)
{
    if (pthread_mutex_lock(&od->mu) == EOWNERDEAD) {
        pthread_mutex_consistent(&od->mu);
    }
}

static void od_unlock(csy_od_t *od)
{
    pthread_mutex_unlock(&od->mu);
}

apr_status_t csy_od_init(csy_od_t *od, unsigned rate, unsigned burst)
{
    pthread_mutexattr_t a;
    int rc;

    if (rate < 1 || burst < 1) {
        return APR_EINVAL;
    }
    memset(od, 0, sizeof(*od));
    if ((rc = pthread_mutexattr_init(&a)) != 0) {
        return rc;
    }
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc) {
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    }
    if (!rc) {
        rc = pthread_mutex_init(&od->mu, &a);
    }
    pthread_mutexattr_destroy(&a);
    od->rate = rate;
    od->burst = burst;
    od->tokens = burst;
    return rc;
}

/* Slot i of the probe window of hash h. */
#define SLOT(h, i) (((h) + (i)) & (CSY_OD_SLOTS - 1))

/* Under the lock: name's slot, or NULL. */
static csy_od_entry_t *od_find(csy_od_t *od, apr_uint32_t h,
                               const char *name)
{
    int i;

    for (i = 0; i < CSY_OD_PROBE; i++) {
        csy_od_entry_t *e = &od->e[SLOT(h, i)];

        if (e->state != CSY_OD_FREE && e->hash == h
            && strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Under the lock: an expired slot becomes free (PENDING that never came,
 * REFUSED whose time is over). */
static void od_expire(csy_od_entry_t *e, apr_time_t now)
{
    if ((e->state == CSY_OD_PENDING || e->state == CSY_OD_REFUSED)
        && e->until <= now) {
        e->state = CSY_OD_FREE;
    }
}

/* Under the lock: a token of the bucket, if there is one. */
static int od_token(csy_od_t *od, apr_time_t now)
{
    if (now > od->refilled) {
        od->tokens += od->rate * (double)(now - od->refilled)
                      / (double)APR_USEC_PER_SEC;
        if (od->tokens > od->burst) {
            od->tokens = od->burst;
        }
    }
    /* A clock that went back restarts the refill from here. */
    od->refilled = now;
    if (od->tokens < 1.0) {
        return 0;
    }
    od->tokens -= 1.0;
    return 1;
}

csy_od_note_t csy_od_note(csy_od_t *od, const char *name, apr_time_t now)
{
    apr_uint32_t h = od_hash(name);
    csy_od_entry_t *e, *slot = NULL, *victim = NULL;
    csy_od_note_t result;
    int i;

    if (strlen(name) > CS_NAME_MAX) {
        return CSY_OD_FULL;
    }
    od_lock(od);
    if ((e = od_find(od, h, name)) != NULL) {
        od_expire(e, now);
    }
    if (e && e->state == CSY_OD_REFUSED) {
        od->count.negative++;
        od_unlock(od);
        return CSY_OD_NEGATIVE;
    }
    if (e && e->state != CSY_OD_FREE) {
        od->count.known++;
        od_unlock(od);
        return CSY_OD_KNOWN;
    }
    if (!od_token(od, now)) {
        od->count.limited++;
        od_unlock(od);
        return CSY_OD_LIMITED;
    }
    for (i = 0; i < CSY_OD_PROBE && !slot; i++) {
        csy_od_entry_t *s = &od->e[SLOT(h, i)];

        od_expire(s, now);
        if (s->state == CSY_OD_FREE) {
            slot = s;
        }
        else if (s->state == CSY_OD_REFUSED
                 && (!victim || s->until < victim->until)) {
            victim = s;
        }
    }
    if (!slot) {
        slot = victim;
    }
    if (slot) {
        slot->hash = h;
        slot->state = CSY_OD_QUEUED;
        slot->until = 0;
        apr_cpystrn(slot->name, name, sizeof(slot->name));
        od->count.noted++;
        result = CSY_OD_NOTED;
    }
    else {
        od->count.full++;
        result = CSY_OD_FULL;
    }
    od_unlock(od);
    return result;
}

csy_od_state_t csy_od_state(csy_od_t *od, const char *name, apr_time_t now)
{
    csy_od_entry_t *e;
    csy_od_state_t st = CSY_OD_FREE;

    od_lock(od);
    if ((e = od_find(od, od_hash(name), name)) != NULL) {
        od_expire(e, now);
        st = (csy_od_state_t)e->state;
    }
    od_unlock(od);
    return st;
}

int csy_od_take(csy_od_t *od, apr_array_header_t *names, apr_pool_t *p,
                int max, apr_time_t now)
{
    int i, n = 0;

    od_lock(od);
    for (i = 0; i < CSY_OD_SLOTS && n < max; i++) {
        csy_od_entry_t *e = &od->e[i];

        if (e->state == CSY_OD_QUEUED && e->until <= now) {
            e->state = CSY_OD_SENT;
            APR_ARRAY_PUSH(names, const char *) = apr_pstrdup(p, e->name);
            n++;
        }
    }
    od->count.sent += (apr_uint64_t)n;
    od_unlock(od);
    return n;
}

void csy_od_apply(csy_od_t *od, const char *name, csy_od_verdict_t v,
                  apr_int64_t retry_after, apr_time_t now)
{
    csy_od_entry_t *e;
    apr_time_t after = retry_after > 0
                       ? apr_time_from_sec(retry_after < 86400 ? retry_after
                                                               : 86400)
                       : 0;

    od_lock(od);
    e = od_find(od, od_hash(name), name);
    if (e && e->state == CSY_OD_SENT) {
        switch (v) {
        case CSY_OD_V_ACCEPTED:
            e->state = CSY_OD_PENDING;
            e->until = now + CSY_OD_PENDING_TTL;
            od->count.accepted++;
            break;
        case CSY_OD_V_REFUSED:
            e->state = CSY_OD_REFUSED;
            e->until = now + (after ? after : CSY_OD_REFUSED_TTL);
            od->count.refused++;
            break;
        default:
            e->state = CSY_OD_QUEUED;
            e->until = now + (after > CSY_OD_RETRY ? after : CSY_OD_RETRY);
            od->count.deferred++;
            break;
        }
    }
    od_unlock(od);
}

void csy_od_requeue_sent(csy_od_t *od, apr_time_t now)
{
    int i;

    od_lock(od);
    for (i = 0; i < CSY_OD_SLOTS; i++) {
        if (od->e[i].state == CSY_OD_SENT) {
            od->e[i].state = CSY_OD_QUEUED;
            od->e[i].until = now + CSY_OD_RETRY;
        }
    }
    od->count.failed++;
    od_unlock(od);
}

int csy_od_served(csy_od_t *od, const char *name)
{
    csy_od_entry_t *e;
    int was = 0;

    od_lock(od);
    if ((e = od_find(od, od_hash(name), name)) != NULL) {
        was = e->state == CSY_OD_PENDING;
        od->count.served += (apr_uint64_t)was;
        e->state = CSY_OD_FREE;
    }
    od_unlock(od);
    return was;
}

void csy_od_load(csy_od_t *od, apr_time_t now, int *pending, int *queued)
{
    int i;

    *pending = *queued = 0;
    od_lock(od);
    for (i = 0; i < CSY_OD_SLOTS; i++) {
        csy_od_entry_t *e = &od->e[i];

        od_expire(e, now);
        *pending += e->state == CSY_OD_PENDING;
        *queued += e->state == CSY_OD_QUEUED && e->until <= now;
    }
    od_unlock(od);
}

void csy_od_counters(csy_od_t *od, csy_od_counters_t *out)
{
    od_lock(od);
    *out = od->count;
    od_unlock(od);
}

void csy_od_count_wait(csy_od_t *od)
{
    od_lock(od);
    od->count.waited++;
    od_unlock(od);
}

static csy_od_verdict_t od_verdict(const char *s)
{
    static const char *const accepted[] = {
        "exists", "issued", "queued", "pending", NULL
    };
    static const char *const refused[] = { "refused", "invalid", NULL };
    static const char *const later[] = { "limited", "deferred", NULL };
    int i;

    for (i = 0; accepted[i]; i++) {
        if (strcmp(s, accepted[i]) == 0) {
            return CSY_OD_V_ACCEPTED;
        }
    }
    for (i = 0; refused[i]; i++) {
        if (strcmp(s, refused[i]) == 0) {
            return CSY_OD_V_REFUSED;
        }
    }
    for (i = 0; later[i]; i++) {
        if (strcmp(s, later[i]) == 0) {
            return CSY_OD_V_LATER;
        }
    }
    return CSY_OD_V_UNKNOWN;
}

apr_status_t csy_od_parse_answer(apr_array_header_t **answers,
                                 apr_pool_t *p, json_t *body,
                                 const char **err)
{
    json_t *results = json_object_get(body, "results"), *r;
    size_t i;

    *answers = apr_array_make(p, 8, sizeof(csy_od_answer_t));
    if (!json_is_array(results)) {
        *err = "the answer has no \"results\" array";
        return APR_EINVAL;
    }
    json_array_foreach(results, i, r) {
        json_t *d = json_object_get(r, "domain");
        json_t *s = json_object_get(r, "status");
        json_t *ra = json_object_get(r, "retry_after");
        csy_od_answer_t *a;

        if (!json_is_string(d) || !json_is_string(s)
            || json_string_length(d) > CS_NAME_MAX
            || (ra && !json_is_null(ra) && !json_is_integer(ra))) {
            *err = apr_psprintf(p, "result %d is not {\"domain\": string, "
                                "\"status\": string, \"retry_after\": "
                                "integer}", (int)i);
            return APR_EINVAL;
        }
        a = apr_array_push(*answers);
        a->name = apr_pstrdup(p, json_string_value(d));
        a->status = apr_pstrdup(p, json_string_value(s));
        a->verdict = od_verdict(a->status);
        a->retry_after = json_is_integer(ra) && json_integer_value(ra) > 0
                         ? (apr_int64_t)json_integer_value(ra) : 0;
    }
    return APR_SUCCESS;
}
