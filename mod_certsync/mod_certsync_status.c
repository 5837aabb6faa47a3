/*
 * mod_certsync_status.c: what mod_certsync shows: the certsync-status
 * handler (JSON, HTML for people, Prometheus metrics with ?metrics), the
 * certsync-health handler for a load balancer's httpchk, and a section in
 * mod_status's server-status.  Everything comes from the status the sync
 * daemon publishes in shared memory (csy_state.h; state.json, which the
 * daemon writes when the store takes it, only when there is none: no
 * daemon yet in this httpd), plus dynamic mode's counters in shared
 * memory and the answering process's cache.  Whatever the bytes, the
 * status is read with csy_state_parse(), so no field is ever missing
 * under a reader's feet.
 */
#include <unistd.h>

#include <jansson.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_status.h"

#include "apr_optional.h"
#include "apr_optional_hooks.h"
#include "apr_strings.h"

#include "csy_dyn.h"
#include "csy_state.h"
#include "csy_store.h"
#include "mod_certsync_private.h"

#define CSY_STATUS_HANDLER      "certsync-status"
#define CSY_HEALTH_HANDLER      "certsync-health"

/* The store's settings: the main server's (every directive about the store
 * is server-config only). */
static const csy_conf_t *csy_store_conf(request_rec *r)
{
    return csy_main_conf ? csy_main_conf : csy_conf(r->server);
}

/* The daemon's status, parsed and annotated (degraded, its reasons, how
 * far behind CertService); NULL when there is none.  *from: where it was
 * read. */
static json_t *csy_read_state(request_rec *r, const csy_conf_t *conf,
                              const char **from)
{
    const char *err;
    char *text;
    apr_size_t len;
    json_t *st = NULL;

    *from = NULL;
    if (csy_status_shm
        && (text = csy_state_shm_get(csy_status_shm, r->pool, &len))) {
        st = csy_state_parse(text, len, &err);
        *from = "shared memory";
    }
    if (!st && conf->store_dir
        && csy_store_read_file(&text, &len, r->pool,
                               apr_pstrcat(r->pool, conf->store_dir,
                                           "/state.json", NULL))
           == APR_SUCCESS) {
        st = csy_state_parse(text, len, &err);
        *from = "state.json";
    }
    if (st) {
        csy_state_annotate(st);
        json_object_set_new(st, "status_from", json_string(*from));
    }
    return st;
}

static apr_int64_t csy_int_of(json_t *state, const char *key)
{
    return (apr_int64_t)json_integer_value(json_object_get(state, key));
}

/* A string member for HTML: escaped, "" when missing or not a string
 * (state.json is a file: it may lack anything). */
static const char *csy_html_str(apr_pool_t *p, json_t *v)
{
    const char *s = json_string_value(v);

    return ap_escape_html(p, s ? s : "");
}

static void csy_metrics(request_rec *r, json_t *state)
{
    json_t *counters = json_object_get(state, "counters"), *v;
    const char *k;
    apr_int64_t failed = (apr_int64_t)json_object_size(
        json_object_get(state, "failures"));

    if (csy_int_of(state, "failures_trimmed") > 0) {
        failed = csy_int_of(state, "failures_trimmed");
    }

    ap_set_content_type(r, "text/plain; version=0.0.4");
    ap_rprintf(r, "# HELP certsync_cursor Change-feed sequence applied.\n"
               "# TYPE certsync_cursor gauge\ncertsync_cursor %"
               APR_INT64_T_FMT "\n", csy_int_of(state, "cursor"));
    ap_rprintf(r, "# HELP certsync_last_success_seconds Time of the last "
               "successful sync.\n# TYPE certsync_last_success_seconds "
               "gauge\ncertsync_last_success_seconds %" APR_INT64_T_FMT
               "\n", csy_int_of(state, "last_success"));
    ap_rprintf(r, "# HELP certsync_failed_domains Bundles skipped.\n"
               "# TYPE certsync_failed_domains gauge\n"
               "certsync_failed_domains %" APR_INT64_T_FMT "\n", failed);
    ap_rprintf(r, "# HELP certsync_service_cursor CertService's change-feed "
               "sequence, as far as the last sync read it.\n"
               "# TYPE certsync_service_cursor gauge\n"
               "certsync_service_cursor %" APR_INT64_T_FMT "\n"
               "# HELP certsync_behind Changes CertService has that this "
               "host has not applied.\n# TYPE certsync_behind gauge\n"
               "certsync_behind %" APR_INT64_T_FMT "\n",
               csy_int_of(state, "service_cursor"),
               csy_int_of(state, "behind"));
    ap_rprintf(r, "# HELP certsync_last_error_seconds Time of the last "
               "failed sync (0: the last one succeeded).\n"
               "# TYPE certsync_last_error_seconds gauge\n"
               "certsync_last_error_seconds %" APR_INT64_T_FMT "\n",
               csy_int_of(state, "last_error_time"));
    ap_rprintf(r, "# HELP certsync_store_write_errors Files of the store "
               "that cannot be written now.\n"
               "# TYPE certsync_store_write_errors gauge\n"
               "certsync_store_write_errors %lu\n",
               (unsigned long)json_object_size(json_object_get(state,
                                                           "store_errors")));
    ap_rprintf(r, "# HELP certsync_degraded 1 when the host serves, but "
               "not all that CertService has or not durably "
               "(degraded_reasons in the status).\n"
               "# TYPE certsync_degraded gauge\ncertsync_degraded %d\n",
               json_is_true(json_object_get(state, "degraded")));
    json_object_foreach(counters, k, v) {
        ap_rprintf(r, "# TYPE certsync_%s_total counter\ncertsync_%s_total %"
                   APR_INT64_T_FMT "\n", k, k,
                   (apr_int64_t)json_integer_value(v));
    }
    json_object_foreach(json_object_get(state, "dynamic"), k, v) {
        if (json_is_integer(v) && strcmp(k, "pid")) {
            ap_rprintf(r, "# TYPE certsync_dynamic_%s gauge\n"
                       "certsync_dynamic_%s %" APR_INT64_T_FMT "\n", k, k,
                       (apr_int64_t)json_integer_value(v));
        }
    }
}

static void csy_html(request_rec *r, json_t *state)
{
    json_t *v;
    const char *k;
    size_t i;

    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_rputs("<!DOCTYPE html><html><head><title>certsync</title></head>"
             "<body><h1>certsync</h1><table>\n", r);
    json_object_foreach(state, k, v) {
        char *text;

        if (json_is_object(v)) {
            continue;
        }
        text = json_dumps(v, JSON_ENCODE_ANY);
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k),
                   ap_escape_html(r->pool, text ? text : ""));
        free(text);
    }
    ap_rputs("</table><h2>Degraded</h2><ul>\n", r);
    json_array_foreach(json_object_get(state, "degraded_reasons"), i, v) {
        ap_rprintf(r, "<li>%s</li>\n", csy_html_str(r->pool, v));
    }
    ap_rputs("</ul><h2>Store write errors</h2><table>\n", r);
    json_object_foreach(json_object_get(state, "store_errors"), k, v) {
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k),
                   csy_html_str(r->pool, json_object_get(v, "error")));
    }
    ap_rputs("</table><h2>Failures</h2><table>\n", r);
    json_object_foreach(json_object_get(state, "failures"), k, v) {
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k), csy_html_str(r->pool, v));
    }
    ap_rputs("</table></body></html>\n", r);
}

/*
 * For the load balancer's httpchk: 200 "ready", or 503 "drain" while this
 * host is about to restart.  (agent-check: CertSyncAgent.)  The health is
 * the daemon's as published in shared memory (the health file of the
 * store only without one): a store that cannot be written must not leave
 * a stale "drain" behind.  A degraded host that serves stays 200, its
 * reasons on a second line, "degraded: ...".
 */
static int csy_health_handler(request_rec *r)
{
    const csy_conf_t *conf = csy_store_conf(r);
    const char *from, *health;
    apr_file_t *f;
    char buf[16] = "";
    apr_size_t n = sizeof(buf) - 1;
    json_t *state, *v;
    size_t i;
    int drain = 0;

    if (!r->handler || strcmp(r->handler, CSY_HEALTH_HANDLER)) {
        return DECLINED;
    }
    state = csy_read_state(r, conf, &from);
    /* "health" on the page may say degraded; this is the word for the
     * load balancer (csy_state_annotate). */
    health = json_string_value(json_object_get(state, "load_balancer"));
    if (health && from && !strcmp(from, "shared memory")) {
        drain = strcmp(health, "drain") == 0;
    }
    else if (conf->store_dir
             && apr_file_open(&f, apr_pstrcat(r->pool, conf->store_dir,
                                              "/health", NULL),
                              APR_FOPEN_READ, 0, r->pool) == APR_SUCCESS) {
        apr_file_read(f, buf, &n);
        apr_file_close(f);
        drain = strncmp(buf, "drain", 5) == 0;
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "text/plain");
    r->status = drain ? HTTP_SERVICE_UNAVAILABLE : HTTP_OK;
    ap_rputs(drain ? "drain\n" : "ready\n", r);
    if (json_is_true(json_object_get(state, "degraded"))) {
        ap_rputs("degraded:", r);
        json_array_foreach(json_object_get(state, "degraded_reasons"), i,
                           v) {
            ap_rprintf(r, "%s %s", i ? ";" : "", json_string_value(v));
        }
        ap_rputs("\n", r);
    }
    json_decref(state);
    return OK;
}

/* ?domains lists at most this many domains a page (default
 * CSY_DOMAINS_PAGE): the page costs a readlink per domain listed and one
 * pass over the manifest up to it, never memory per domain of the store. */
#define CSY_DOMAINS_PAGE        100
#define CSY_DOMAINS_PAGE_MAX    1000

/* ?domains[&after=NAME][&limit=N]: one page of the manifest's domains in
 * its order (sorted, as the daemon writes it), after NAME; "next" names
 * the last one listed when more follow. */
static void csy_domains_page(request_rec *r, json_t *dyn, csy_store_t *store,
                             json_t *served)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *rd;
    const char *why, *after = "", *last = NULL;
    char *args = apr_pstrdup(r->pool, r->args), *tok, *state;
    long limit = CSY_DOMAINS_PAGE;
    int n = 0, more = 0;
    apr_pool_t *one;

    for (tok = apr_strtok(args, "&", &state); tok;
         tok = apr_strtok(NULL, "&", &state)) {
        if (!strncmp(tok, "after=", 6)) {
            after = tok + 6;
            ap_unescape_url((char *)after);
        }
        else if (!strncmp(tok, "limit=", 6)) {
            limit = strtol(tok + 6, NULL, 10);
        }
    }
    if (limit < 1 || limit > CSY_DOMAINS_PAGE_MAX) {
        limit = limit < 1 ? CSY_DOMAINS_PAGE : CSY_DOMAINS_PAGE_MAX;
    }
    if (csy_store_manifest_open(&rd, &why, store, r->pool) != APR_SUCCESS) {
        return;
    }
    apr_pool_create(&one, r->pool);
    while (cs_manifest_next(&e, &pr, rd) == APR_SUCCESS) {
        const char *cur;

        if (!e || strcmp(e->name, after) <= 0) {
            continue;
        }
        if (n == limit) {
            more = 1;
            break;
        }
        apr_pool_clear(one);
        cur = csy_store_current(store, one, e->name);
        json_object_set_new(served, e->name, json_pack(
            "{s:o, s:o}", "store", cur ? json_string(cur) : json_null(),
            "cached_here", json_null()));
        last = apr_pstrdup(r->pool, e->name);
        n++;
    }
    apr_pool_destroy(one);
    json_object_set_new(dyn, "next", more && last ? json_string(last)
                                                  : json_null());
    json_object_set_new(dyn, "limit", json_integer(limit));
}

/*
 * Dynamic mode's part of the status: the cache counters of every process
 * (shared memory), this process's cache, and what a domain is served
 * with: ?domain=NAME for one, ?domains for a page of the manifest's
 * domains (csy_domains_page).
 */
static void csy_dyn_status(request_rec *r, json_t *state)
{
    const csy_conf_t *conf = csy_main_conf;
    csy_cache_info_t info = { 0, 0 };
    csy_store_t *store;
    json_t *dyn, *served, *v;
    const char *one = NULL, *k;
    char name[CSY_NAME_SIZE], serial[CSY_SERIAL_SIZE];

    if (!csy_main_conf || csy_main_conf->dynamic != 1 || !csy_shared) {
        return;
    }
    if (csy_cache) {
        csy_cache_info(csy_cache, &info);
    }
#define CSY_SHARED(f) json_integer((json_int_t)__atomic_load_n( \
                          &csy_shared->f, __ATOMIC_RELAXED))
    dyn = json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                    "s:o, s:o, s:i}",
                    "pid", (int)getpid(), "cache_capacity", info.capacity,
                    "cache_entries", info.entries,
                    "hits", CSY_SHARED(hits), "misses", CSY_SHARED(misses),
                    "envelopes", CSY_SHARED(envelopes),
                    "revalidated", CSY_SHARED(revalidated),
                    "evictions", CSY_SHARED(evictions),
                    "unknown", CSY_SHARED(unknown),
                    "unknown_cached", CSY_SHARED(unknown_cached),
                    "errors", CSY_SHARED(errors),
                    "changes", CSY_SHARED(changes),
                    "generation_slots", (int)(csy_shared->mask + 1));
#undef CSY_SHARED
    if (csy_ondemand) {
        json_object_set_new(dyn, "on_demand", csy_od_status_json());
    }
    if (r->args && !strncmp(r->args, "domain=", 7)) {
        one = r->args + 7;
    }
    if ((one || (r->args && (!strcmp(r->args, "domains")
                             || !strncmp(r->args, "domains&", 8))))
        && csy_store_open(&store, r->pool, conf->store_dir) == APR_SUCCESS) {
        served = json_object();
        if (!one) {
            csy_domains_page(r, dyn, store, served);
        }
        else if (csy_sni_name(name, one) || !strncmp(one, "*.", 2)) {
            const char *cur;

            if (!strncmp(one, "*.", 2)) {
                apr_cpystrn(name, one, sizeof(name));
            }
            cur = csy_store_current(store, r->pool, name);
            json_object_set_new(served, name, json_pack(
                "{s:o, s:o}", "store", cur ? json_string(cur) : json_null(),
                "cached_here", json_null()));
        }
        json_object_foreach(served, k, v) {
            if (csy_cache && csy_cache_serial(csy_cache, k, serial)) {
                json_object_set_new(v, "cached_here", json_string(serial));
            }
        }
        json_object_set_new(dyn, "served", served);
    }
    json_object_set_new(state, "dynamic", dyn);
}

static int csy_status_handler(request_rec *r)
{
    const char *accept, *from;
    json_t *state;
    char *text;

    if (!r->handler || strcmp(r->handler, CSY_STATUS_HANDLER)) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    state = csy_read_state(r, csy_store_conf(r), &from);
    if (!state) {
        /* The daemon has not written anything yet (or is not running). */
        state = json_pack("{s:s, s:s, s:s}", "state", "starting", "health",
                          "ready", "detail", "no status from the sync "
                          "daemon yet (is CertSyncServiceURL set and the "
                          "daemon running?)");
    }
    csy_dyn_status(r, state);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    accept = apr_table_get(r->headers_in, "Accept");
    if (r->args && !strcmp(r->args, "metrics")) {
        csy_metrics(r, state);
    }
    else if (accept && ap_strstr_c(accept, "text/html")) {
        csy_html(r, state);
    }
    else {
        ap_set_content_type(r, "application/json");
        text = json_dumps(state, JSON_INDENT(1) | JSON_SORT_KEYS);
        if (text) {
            ap_rputs(text, r);
            ap_rputc('\n', r);
            free(text);
        }
    }
    json_decref(state);
    return OK;
}

/* A section in mod_status's server-status page. */
static int csy_status_hook(request_rec *r, int flags)
{
    const char *from, *st;
    json_t *state = csy_read_state(r, csy_store_conf(r), &from);

    if (!state) {
        return OK;
    }
    st = json_string_value(json_object_get(state, "state"));
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "CertSyncCursor: %" APR_INT64_T_FMT "\n"
                   "CertSyncState: %s\nCertSyncFailures: %lu\n"
                   "CertSyncBehind: %" APR_INT64_T_FMT "\n"
                   "CertSyncDegraded: %d\n",
                   csy_int_of(state, "cursor"), st ? st : "",
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")),
                   csy_int_of(state, "behind"),
                   json_is_true(json_object_get(state, "degraded")));
    }
    else {
        ap_rprintf(r, "<hr><h2>certsync</h2><dl><dt>state: %s</dt>"
                   "<dt>cursor: %" APR_INT64_T_FMT "</dt>"
                   "<dt>failed domains: %lu</dt>"
                   "<dt>behind CertService: %" APR_INT64_T_FMT "</dt>"
                   "<dt>degraded: %s</dt></dl>\n",
                   csy_html_str(r->pool, json_object_get(state, "state")),
                   csy_int_of(state, "cursor"),
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")),
                   csy_int_of(state, "behind"),
                   json_is_true(json_object_get(state, "degraded"))
                   ? "yes" : "no");
    }
    json_decref(state);
    return OK;
}

void csy_status_register_hooks(apr_pool_t *p)
{
    ap_hook_handler(csy_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(csy_health_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, csy_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
