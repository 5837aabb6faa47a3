/*
 * mod_certsync_status.c: what mod_certsync shows: the certsync-status
 * handler (JSON, HTML for people, Prometheus metrics with ?metrics), the
 * certsync-health handler for a load balancer's httpchk, and a section in
 * mod_status's server-status.  Everything comes from the state.json and
 * health files the sync daemon writes, plus dynamic mode's counters in
 * shared memory and the answering process's cache.
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

static json_t *csy_read_state(request_rec *r, const csy_conf_t *conf)
{
    json_error_t jerr;

    if (!conf->store_dir) {
        return NULL;
    }
    return json_load_file(apr_pstrcat(r->pool, conf->store_dir,
                                      "/state.json", NULL), 0, &jerr);
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
               "certsync_failed_domains %lu\n",
               (unsigned long)json_object_size(json_object_get(state,
                                                               "failures")));
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
    ap_rputs("</table><h2>Failures</h2><table>\n", r);
    json_object_foreach(json_object_get(state, "failures"), k, v) {
        ap_rprintf(r, "<tr><th>%s</th><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, k), csy_html_str(r->pool, v));
    }
    ap_rputs("</table></body></html>\n", r);
}

/* For the load balancer's httpchk: 200 "ready", or 503 "drain" while this
 * host is about to restart.  (agent-check: CertSyncAgent.) */
static int csy_health_handler(request_rec *r)
{
    const csy_conf_t *conf = csy_store_conf(r);
    apr_file_t *f;
    char buf[16] = "";
    apr_size_t n = sizeof(buf) - 1;
    int drain = 0;

    if (!r->handler || strcmp(r->handler, CSY_HEALTH_HANDLER)) {
        return DECLINED;
    }
    if (conf->store_dir
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
    return OK;
}

/*
 * Dynamic mode's part of the status: the cache counters of every process
 * (shared memory), this process's cache, and what a domain is served
 * with: ?domain=NAME for one, ?domains for every domain of the manifest.
 */
static void csy_dyn_status(request_rec *r, json_t *state)
{
    const csy_conf_t *conf = csy_main_conf;
    csy_cache_info_t info = { 0, 0 };
    csy_store_t *store;
    apr_array_header_t *domains = NULL;
    json_t *dyn, *served;
    const char *one = NULL;
    char name[CSY_NAME_SIZE], serial[CSY_SERIAL_SIZE];
    int i;

    if (!csy_main_conf || csy_main_conf->dynamic != 1 || !csy_shared) {
        return;
    }
    if (csy_cache) {
        csy_cache_info(csy_cache, &info);
    }
#define CSY_SHARED(f) json_integer((json_int_t)__atomic_load_n( \
                          &csy_shared->f, __ATOMIC_RELAXED))
    dyn = json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                    "s:o}",
                    "pid", (int)getpid(), "cache_capacity", info.capacity,
                    "cache_entries", info.entries,
                    "hits", CSY_SHARED(hits), "misses", CSY_SHARED(misses),
                    "envelopes", CSY_SHARED(envelopes),
                    "revalidated", CSY_SHARED(revalidated),
                    "evictions", CSY_SHARED(evictions),
                    "unknown", CSY_SHARED(unknown),
                    "errors", CSY_SHARED(errors),
                    "changes", CSY_SHARED(changes));
#undef CSY_SHARED
    if (r->args && !strncmp(r->args, "domain=", 7)) {
        one = r->args + 7;
    }
    if ((one || (r->args && !strcmp(r->args, "domains")))
        && csy_store_open(&store, r->pool, conf->store_dir) == APR_SUCCESS) {
        served = json_object();
        if (!one) {
            csy_store_manifest_read(&domains, store, r->pool);
        }
        for (i = 0; one ? i < 1 : domains && i < domains->nelts; i++) {
            const char *d = one ? one : APR_ARRAY_IDX(domains, i,
                                                      const char *);
            const char *cur;

            if (!csy_sni_name(name, d) && strncmp(d, "*.", 2)) {
                continue;
            }
            if (!strncmp(d, "*.", 2)) {
                apr_cpystrn(name, d, sizeof(name));
            }
            cur = csy_store_current(store, r->pool, name);
            json_object_set_new(served, name, json_pack(
                "{s:o, s:o}", "store", cur ? json_string(cur) : json_null(),
                "cached_here", csy_cache && csy_cache_serial(csy_cache, name,
                                                             serial)
                               ? json_string(serial) : json_null()));
        }
        json_object_set_new(dyn, "served", served);
    }
    json_object_set_new(state, "dynamic", dyn);
}

static int csy_status_handler(request_rec *r)
{
    const char *accept;
    json_t *state;
    char *text;

    if (!r->handler || strcmp(r->handler, CSY_STATUS_HANDLER)) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    state = csy_read_state(r, csy_store_conf(r));
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
    json_t *state = csy_read_state(r, csy_store_conf(r));
    const char *st;

    if (!state) {
        return OK;
    }
    st = json_string_value(json_object_get(state, "state"));
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "CertSyncCursor: %" APR_INT64_T_FMT "\n"
                   "CertSyncState: %s\nCertSyncFailures: %lu\n",
                   csy_int_of(state, "cursor"), st ? st : "",
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")));
    }
    else {
        ap_rprintf(r, "<hr><h2>certsync</h2><dl><dt>state: %s</dt>"
                   "<dt>cursor: %" APR_INT64_T_FMT "</dt>"
                   "<dt>failed domains: %lu</dt></dl>\n",
                   csy_html_str(r->pool, json_object_get(state, "state")),
                   csy_int_of(state, "cursor"),
                   (unsigned long)json_object_size(
                       json_object_get(state, "failures")));
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
