/*
 * bench/cycle_bench.c: what one sync cycle costs the daemon once the store
 * is large (issue 18: at 1,000,000 domains an idle cycle read the whole
 * 50.8 MB manifest): csy_sync_once() over an in-process transport that
 * answers the change feed and POST /v1/bundles, on one store handle kept
 * across cycles as the daemon keeps it.
 *
 *   make bench/cycle_bench
 *   bench/cycle_bench N DIR [IDLE]
 *
 * The store DIR/stubs-N holds N stub domains dI.bench.test (a directory
 * and the current link, what the daemon reads of a domain; made on the
 * first run, about a minute at 1,000,000, and kept: the run leaves it with
 * the same N domains) and their manifest.  Then, each timed (CPU of the
 * process, every thread, and wall):
 *
 *   first     the first cycle on the handle, feed empty (a daemon's start)
 *   idle      IDLE (20) cycles, feed empty: the mean
 *   renew     100 upserts of domains already served (new serials)
 *   add       100 upserts of new domains
 *   delete    the same 100 deleted
 *
 * SYNC_BENCH_DYNAMIC=1: envelopes and key.seal (dynamic mode) instead of
 * privkey.pem.  It builds against trees from before the change too (the
 * side by side in docs/benchmarks.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_http.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "testkit.h"

#define PAGE    1000
#define CHANGES 100

typedef struct {
    const char *domain;
    int del;
} change_t;

typedef struct {
    apr_array_header_t *feed;   /* change_t; seq = index + 1 */
    apr_hash_t *bundles;        /* name -> bundle JSON text */
} world_t;

static apr_status_t serve(void *baton, cs_http_resp_t *resp,
                          const cs_http_req_t *req, apr_pool_t *p,
                          const char **err)
{
    world_t *w = baton;
    apr_array_header_t *parts;
    const char *q, *b;
    json_t *j, *d;
    size_t i;
    long since, k, end, n = w->feed->nelts;

    resp->status = 200;
    resp->headers = apr_table_make(p, 1);
    parts = apr_array_make(p, 16, sizeof(char *));
    if (strcmp(req->method, "GET") == 0
        && (q = strstr(req->url, "/v1/changes?since=")) != NULL) {
        since = atol(q + strlen("/v1/changes?since="));
        end = since + PAGE < n ? since + PAGE : n;
        APR_ARRAY_PUSH(parts, const char *) = "{\"changes\":[";
        for (k = since; k < end; k++) {
            change_t *c = &APR_ARRAY_IDX(w->feed, k, change_t);

            APR_ARRAY_PUSH(parts, const char *) =
                apr_psprintf(p, "%s{\"seq\":%ld,\"domain\":\"%s\","
                             "\"op\":\"%s\"}", k > since ? "," : "", k + 1,
                             c->domain, c->del ? "delete" : "upsert");
        }
        APR_ARRAY_PUSH(parts, const char *) =
            apr_psprintf(p, "],\"next\":%ld,\"more\":%s}",
                         end > since ? end : since,
                         end < n ? "true" : "false");
    }
    else if (strcmp(req->method, "POST") == 0
             && strstr(req->url, "/v1/bundles")) {
        j = json_loadb(req->body, req->body_len, 0, NULL);
        APR_ARRAY_PUSH(parts, const char *) = "{\"bundles\":[";
        json_array_foreach(json_object_get(j, "domains"), i, d) {
            if ((b = apr_hash_get(w->bundles, json_string_value(d),
                                  APR_HASH_KEY_STRING)) != NULL) {
                APR_ARRAY_PUSH(parts, const char *) = i ? "," : "";
                APR_ARRAY_PUSH(parts, const char *) = b;
            }
        }
        APR_ARRAY_PUSH(parts, const char *) = "]}";
        json_decref(j);
    }
    else {
        *err = "cycle_bench: unexpected request";
        return APR_EGENERAL;
    }
    resp->body = apr_array_pstrcat(p, parts, 0);
    resp->len = strlen(resp->body);
    return APR_SUCCESS;
}

static void log_warn(void *baton, cs_log_level_t level, const char *msg)
{
    (void)baton;
    if (level <= CS_LOG_WARN) {
        fprintf(stderr, "cycle_bench: %s\n", msg);
    }
}

/* A fresh bundle (new key, new serial) for name. */
static int make_bundle(world_t *w, apr_pool_t *p, const cs_ca_t *ca,
                       apr_array_header_t *wrap_certs, const char *name)
{
    apr_array_header_t *chain;
    cs_cert_info_t info;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key;
    const char *err;
    json_t *j;
    char *text;

    if (cs_key_generate(&key, p, CS_KEY_EC_P256)
        || cs_ca_issue(&chain, p, ca, key, name, apr_time_from_sec(86400),
                       &err)
        || cs_envelope_seal(&der, &len, p, key, wrap_certs, &err)) {
        fprintf(stderr, "cannot make a bundle for %s\n", name);
        return -1;
    }
    cs_cert_info(&info, p, APR_ARRAY_IDX(chain, 0, X509 *));
    j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "domain", name, "serial",
                  info.serial, "chain_pem", cs_pem_write_certs(p, chain),
                  "key_cms", cs_base64_encode(p, der, len), "key_type",
                  "ec");
    text = json_dumps(j, JSON_COMPACT);
    apr_hash_set(w->bundles, apr_pstrdup(p, name), APR_HASH_KEY_STRING,
                 apr_pstrdup(p, text));
    free(text);
    json_decref(j);
    return 0;
}

/* N stub domains and their manifest, unless the store has them. */
static int fill(csy_store_t *store, apr_pool_t *p, const char *dir, long n)
{
    apr_array_header_t *names = apr_array_make(p, (int)n,
                                               sizeof(const char *));
    const char *mpath = apr_pstrcat(p, dir, "/manifest", NULL);
    struct stat st;
    double t0 = testkit_now();
    char path[512];
    long i;

    for (i = 1; i <= n; i++) {
        APR_ARRAY_PUSH(names, const char *) =
            apr_psprintf(p, "d%ld.bench.test", i);
    }
    if (stat(mpath, &st) == 0) {
        return 0;
    }
    for (i = 1; i <= n; i++) {
        const char *d = APR_ARRAY_IDX(names, i - 1, const char *);

        snprintf(path, sizeof(path), "%s/live/%s", dir, d);
        if (mkdir(path, 0755) && errno != EEXIST) {
            perror(path);
            return -1;
        }
        snprintf(path, sizeof(path), "%s/live/%s/1", dir, d);
        if (mkdir(path, 0755) && errno != EEXIST) {
            perror(path);
            return -1;
        }
        snprintf(path, sizeof(path), "%s/live/%s/current", dir, d);
        if (symlink("1", path) && errno != EEXIST) {
            perror(path);
            return -1;
        }
    }
    if (csy_store_manifest_write(store, p, names) != APR_SUCCESS) {
        fprintf(stderr, "cannot write the manifest\n");
        return -1;
    }
    printf("cycle_bench: %ld stub domains made in %.1f s\n", n, testkit_now() - t0);
    return 0;
}

/* One cycle, timed; its CPU and wall in ms. */
static int cycle(double *c_ms, double *w_ms, csy_result_t *res,
                 csy_client_t *cl, csy_store_t *store, apr_hash_t *failures,
                 apr_pool_t *p)
{
    apr_pool_t *run;
    double t0, c0;

    apr_pool_create(&run, p);
    t0 = testkit_now();
    c0 = testkit_cpu();
    if (csy_sync_once(res, cl, store, failures, run) != APR_SUCCESS) {
        fprintf(stderr, "cycle failed: %s\n", res->error);
        return -1;
    }
    *c_ms = 1000 * (testkit_cpu() - c0);
    *w_ms = 1000 * (testkit_now() - t0);
    apr_pool_destroy(run);
    return 0;
}

static void add_changes(world_t *w, apr_pool_t *p, const char *fmt, int del)
{
    int i;

    for (i = 1; i <= CHANGES; i++) {
        change_t *c = apr_array_push(w->feed);

        c->domain = apr_psprintf(p, fmt, i);
        c->del = del;
    }
}

int main(int argc, char **argv)
{
    world_t w;
    cs_ca_t ca;
    apr_array_header_t *wrap_certs, *wrap_keys;
    apr_pool_t *pool;
    apr_hash_t *failures;
    cs_http_t http;
    csy_config_t cfg;
    csy_client_t *client;
    csy_store_t *store;
    csy_result_t res;
    const char *dir;
    struct stat st;
    double c, wall, csum = 0, wsum = 0;
    long n;
    int i, idle, dyn = getenv("SYNC_BENCH_DYNAMIC") != NULL;

    if (argc < 3) {
        fprintf(stderr, "usage: %s N DIR [IDLE]\n", argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    n = atol(argv[1]);
    idle = argc > 3 ? atoi(argv[3]) : 20;
    dir = apr_psprintf(pool, "%s/stubs-%ld", argv[2], n);
    if (testkit_ca_and_wrap(pool, &ca, &wrap_certs, &wrap_keys)
        || csy_store_open(&store, pool, dir) != APR_SUCCESS
        || fill(store, pool, dir, n)
        || csy_store_cursor_set(store, 0, pool) != APR_SUCCESS) {
        fprintf(stderr, "cannot make the store %s\n", dir);
        return 1;
    }
    w.feed = apr_array_make(pool, 3 * CHANGES, sizeof(change_t));
    w.bundles = apr_hash_make(pool);
    for (i = 1; i <= CHANGES; i++) {
        if (make_bundle(&w, pool, &ca, wrap_certs,
                        apr_psprintf(pool, "d%d.bench.test", i))
            || make_bundle(&w, pool, &ca, wrap_certs,
                           apr_psprintf(pool, "new%d.bench.test", i))) {
            return 1;
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    http.send = serve;
    http.baton = &w;
    cfg.url = "https://cs.bench";
    cfg.http = &http;
    cfg.wrap_certs = wrap_certs;
    cfg.wrap_keys = wrap_keys;
    cfg.batch_size = 100;
    cfg.keep_envelopes = dyn;
    cfg.seal_keys = dyn ? cs_seal_keys_derive(pool, wrap_keys) : NULL;
    cfg.pool_name = "bench";
    cfg.host_name = "bench";
    cfg.log = log_warn;
    if (csy_client_create(&client, pool, &cfg) != APR_SUCCESS) {
        return 1;
    }
    failures = apr_hash_make(pool);
    st.st_size = 0;
    stat(apr_pstrcat(pool, dir, "/manifest", NULL), &st);
    printf("cycle_bench: %ld domains, manifest %.1f MB, %s mode\n", n,
           st.st_size / 1e6, dyn ? "dynamic" : "vhost");

    if (cycle(&c, &wall, &res, client, store, failures, pool)) {
        return 1;
    }
    printf("first   CPU %8.2f ms  wall %8.2f ms  (feed empty)\n", c, wall);
    for (i = 0; i < idle; i++) {
        if (cycle(&c, &wall, &res, client, store, failures, pool)) {
            return 1;
        }
        csum += c;
        wsum += wall;
    }
    printf("idle    CPU %8.2f ms  wall %8.2f ms  (mean of %d cycles)\n",
           csum / idle, wsum / idle, idle);

    add_changes(&w, pool, "d%d.bench.test", 0);
    if (cycle(&c, &wall, &res, client, store, failures, pool)) {
        return 1;
    }
    printf("renew   CPU %8.2f ms  wall %8.2f ms  (%d installed)\n", c, wall,
           res.installed);
    add_changes(&w, pool, "new%d.bench.test", 0);
    if (cycle(&c, &wall, &res, client, store, failures, pool)) {
        return 1;
    }
    printf("add     CPU %8.2f ms  wall %8.2f ms  (%d installed)\n", c, wall,
           res.installed);
    add_changes(&w, pool, "new%d.bench.test", 1);
    if (cycle(&c, &wall, &res, client, store, failures, pool)) {
        return 1;
    }
    printf("delete  CPU %8.2f ms  wall %8.2f ms  (%d removed)\n", c, wall,
           res.removed);
    if (res.removed != CHANGES) {
        fprintf(stderr, "cycle_bench: %d removed, not %d\n", res.removed,
                CHANGES);
        return 1;
    }
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
