/*
 * mod_certsync_state.c: the sync daemon's status and the files it keeps
 * in the store.
 *
 * The status (d->state, what the status page, the metrics and the health
 * page show) is published to shared memory at every change, and the
 * agent-check's answer made again from it; state.json carries it across a
 * full restart and is read back, with the shared-memory copy, by the next
 * daemon (csy_daemon_state_recall).  health, rollout.json and quarantine.json
 * are written here too, atomically; a write that fails is logged and kept
 * in the status ("store_errors") until the store takes it again.
 *
 * Not here: the status pages (mod_certsync_status.c), the parsing of the
 * status from bytes (csy_state.c, pure), what the rollout writes in its
 * journal (csy_rollout.c).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "httpd.h"
#include "http_log.h"

#include "apr_strings.h"

#include "csy_agent.h"
#include "csy_rollout.h"
#include "csy_state.h"
#include "csy_store.h"
#include "mod_certsync_daemon.h"

const char *csy_path(csy_daemon_t *d, apr_pool_t *p, const char *name)
{
    return apr_pstrcat(p, d->conf->store_dir, "/", name, NULL);
}

/*
 * The status goes to shared memory (the status page, the metrics and the
 * health page read it there: it cannot fail with the store), and the
 * agent-check's answer is made again from it.  A status too large for
 * the segment (tens of thousands of skipped bundles) is published without
 * the list of failures, which state.json still has.
 */
void csy_publish(csy_daemon_t *d)
{
    json_t *reasons, *v, *small = NULL;
    char *text, *desc = NULL, line[CSY_AGENT_LINE];
    size_t i;
    apr_size_t len = 0;
    apr_status_t rv = APR_ENOSPC;

    text = json_dumps(d->state, JSON_COMPACT | JSON_SORT_KEYS);
    if (csy_status_shm && text
        && (rv = csy_state_shm_put(csy_status_shm, text, strlen(text)))
           == APR_ENOSPC) {
        small = json_deep_copy(d->state);
        json_object_set_new(small, "failures_trimmed", json_integer(
            (json_int_t)json_object_size(json_object_get(d->state,
                                                         "failures"))));
        json_object_set_new(small, "failures", json_object());
        free(text);
        text = json_dumps(small, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(small);
        rv = text ? csy_state_shm_put(csy_status_shm, text, strlen(text))
                  : APR_ENOMEM;
        if (!d->shm_trimmed) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s,
                         CYLOGNO(00182) "the status is too large for shared "
                         "memory: published without the list of skipped "
                         "bundles (%lu of them; state.json and the metrics "
                         "count them)", (unsigned long)json_object_size(
                             json_object_get(d->state, "failures")));
            d->shm_trimmed = 1;
        }
    }
    free(text);

    /* "ready up #certsync degraded: why; why" */
    reasons = csy_state_degraded(d->state);
    json_array_foreach(reasons, i, v) {
        const char *r = json_string_value(v);
        apr_size_t n = strlen(r);

        if (len + n + 3 > sizeof(line)) {
            break;
        }
        desc = desc ? realloc(desc, len + n + 3) : malloc(n + 1);
        if (!desc) {
            len = 0;
            break;
        }
        if (len) {
            memcpy(desc + len, "; ", 2);
            len += 2;
        }
        memcpy(desc + len, r, n + 1);
        len += n;
    }
    json_decref(reasons);
    csy_agent_line(line, sizeof(line), d->health, len ? desc : NULL);
    free(desc);
    pthread_mutex_lock(&d->agent_mu);
    memcpy(d->agent_line, line, sizeof(line));
    pthread_mutex_unlock(&d->agent_mu);
}

/*
 * A write to the store failed (name: a file of the store, or "manifest",
 * "cursor", "bundles" for the sync's own), or works again (why NULL).
 * The status keeps {"error", "path", "since", "last"} per name until
 * then: the status page, the metrics and the agent-check tell it.
 */
void csy_daemon_store_status(csy_daemon_t *d, apr_pool_t *p,
                             const char *name, const char *path,
                             const char *why)
{
    json_t *errs = json_object_get(d->state, "store_errors");
    json_t *e = json_object_get(errs, name);
    json_int_t now = apr_time_sec(apr_time_now());

    if (!json_is_object(errs)) {
        errs = json_object();
        json_object_set_new(d->state, "store_errors", errs);
    }
    if (!why) {
        if (e) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00181)
                         "the store takes %s again (it failed since %"
                         APR_INT64_T_FMT ")", path ? path : name,
                         (apr_int64_t)json_integer_value(
                             json_object_get(e, "since")));
            json_object_del(errs, name);
            csy_publish(d);
        }
        return;
    }
    if (!e || !json_is_string(json_object_get(e, "error"))
        || strcmp(json_string_value(json_object_get(e, "error")), why)) {
        e = json_pack("{s:s, s:I}", "error", why, "since",
                      json_is_object(e) && json_object_get(e, "since")
                      ? json_integer_value(json_object_get(e, "since"))
                      : now);
        json_object_set_new(errs, name, e);
    }
    if (path) {
        json_object_set_new(e, "path", json_string(path));
    }
    json_object_set_new(e, "last", json_integer(now));
    csy_publish(d);
}

/* A file of the store, atomically.  rollout.json is the rollout's crash
 * journal and health what the load balancer's httpchk reads: a write that
 * fails is logged and shown in the status, never dropped silently. */
static apr_status_t csy_write_file(csy_daemon_t *d, apr_pool_t *p,
                                   const char *name, const char *text)
{
    const char *path = csy_path(d, p, name);
    apr_status_t rv = csy_write_atomic(path, text, strlen(text),
                                       APR_FPROT_UREAD | APR_FPROT_UWRITE
                                       | APR_FPROT_GREAD | APR_FPROT_WREAD,
                                       p);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00042)
                     "cannot write %s", path);
        csy_daemon_store_status(d, p, name, path,
                                apr_psprintf(p, "%pm", &rv));
    }
    else {
        csy_daemon_store_status(d, p, name, path, NULL);
    }
    return rv;
}

/* The status (d->state) is published first: state.json only carries it
 * across a full restart, and may fail with the store. */
apr_status_t csy_write_json(csy_daemon_t *d, apr_pool_t *p,
                            const char *name, json_t *j)
{
    char *text;
    apr_status_t rv;

    if (j == d->state) {
        csy_publish(d);
    }
    if (!(text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00043)
                     "cannot write %s: no memory for its JSON",
                     csy_path(d, p, name));
        csy_daemon_store_status(d, p, name, csy_path(d, p, name),
                                "no memory");
        return APR_ENOMEM;
    }
    rv = csy_write_file(d, p, name, text);
    free(text);
    return rv;
}

json_t *csy_read_json(csy_daemon_t *d, apr_pool_t *p, const char *name)
{
    json_error_t jerr;

    return json_load_file(csy_path(d, p, name), 0, &jerr);
}

void csy_set_state(csy_daemon_t *d, csy_phase_t phase)
{
    json_object_set_new(d->state, "state",
                        json_string(csy_phase_name(phase)));
}

void csy_count(json_t *state, const char *name, json_int_t add)
{
    json_t *counters = json_object_get(state, "counters");
    json_int_t v = json_integer_value(json_object_get(counters, name));

    json_object_set_new(counters, name, json_integer(v + add));
}

/* ready/drain, for HAProxy's agent-check and the certsync-health page. */
void csy_set_health(csy_daemon_t *d, apr_pool_t *p, const char *health)
{
    d->health = health;
    json_object_set_new(d->state, "health", json_string(health));
    csy_publish(d);     /* the agent's answer first: it cannot fail */
    csy_write_file(d, p, "health", health);
    csy_write_json(d, p, "state.json", d->state);
}

/*
 * The status the previous daemon left: in shared memory after a graceful
 * restart (current even when the store could not take state.json), else
 * in state.json (a full restart), else none.  Either is parsed as
 * untrusted bytes (csy_state_parse).
 */
json_t *csy_daemon_state_recall(csy_daemon_t *d, apr_pool_t *p)
{
    const char *path = csy_path(d, p, "state.json"), *err = NULL, *store;
    apr_size_t len;
    apr_status_t rv;
    json_t *st;
    char *text;

    if (csy_status_shm
        && (text = csy_state_shm_get(csy_status_shm, p, &len)) != NULL
        && (st = csy_state_parse(text, len, &err)) != NULL) {
        store = json_string_value(json_object_get(st, "store"));
        if (store && strcmp(store, d->conf->store_dir) == 0
            && !json_object_get(st, "failures_trimmed")) {
            return st;
        }
        /* (trimmed: the skipped bundles, to retry, are in state.json) */
        json_decref(st);        /* another store's (CertSyncStoreDir) */
    }
    rv = csy_store_read_file(&text, &len, p, path);
    if (rv == APR_SUCCESS && (st = csy_state_parse(text, len, &err))) {
        return st;
    }
    if (rv == APR_SUCCESS || !APR_STATUS_IS_ENOENT(rv)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00183)
                     "cannot read %s (%s): the status starts empty; "
                     "counters and skipped bundles start again", path,
                     err ? err : "read error");
    }
    return json_object();
}

/* Files of the store whose last write failed and that nothing else would
 * write again soon: tried again every cycle, so that a store that takes
 * writes again does not keep stale copies (and the status its errors).
 * state.json is written at the end of every cycle anyway; rollout.json
 * and the sync's own files by what they are for. */
void csy_retry_writes(csy_daemon_t *d, apr_pool_t *p)
{
    json_t *errs = json_object_get(d->state, "store_errors"), *q;

    if (json_object_get(errs, "health")) {
        csy_write_file(d, p, "health", d->health);
    }
    if (json_object_get(errs, "quarantine.json")) {
        q = csy_hash_json(p, d->rollout.quarantine);
        csy_write_json(d, p, "quarantine.json", q);
        json_decref(q);
    }
}
