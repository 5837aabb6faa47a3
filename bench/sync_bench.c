/*
 * bench/sync_bench.c: the sync daemon's cold sync without CertService:
 * csy_sync_once() over an in-process transport that answers the change
 * feed and POST /v1/bundles from N bundles made beforehand (a local EC
 * CA, ECDSA P-256 certificate keys sealed to the RSA-2048 wrapping key of
 * t/unit/testkit.c), into a new store under DIR (a real disk: the
 * durability is what is measured).
 *
 *   make bench/sync_bench
 *   bench/sync_bench N DIR [THREADS ...]    (THREADS: 0 = one per CPU)
 *
 * Prints, for each THREADS, the bundles installed a second from the first
 * feed request to the cycle's end (manifest and cursor written).  With
 * SYNC_BENCH_DYNAMIC=1 the store keeps envelopes and key.seal (dynamic
 * mode) instead of privkey.pem (vhost mode, the default, as
 * bench/certsync.sh); then, as in the daemon, the changes are handed over
 * at each checkpoint (csy_config_t.checkpointed; SYNC_BENCH_CHECKPOINTED=0:
 * kept to the cycle's end).  In both modes the start's prune is under way,
 * as in the daemon's first cycle, and the process's RSS is printed before
 * and after the cycle.  Built with -DSYNC_BENCH_OLD it compiles against a
 * tree from before csy_config_t.threads (issue 18's side-by-side run):
 * THREADS is then ignored.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define PAGE 1000

typedef struct {
    int n;
    const char **names;
    const char **bundles;       /* JSON objects, as text */
    apr_hash_t *by_name;        /* name -> bundle text */
} world_t;

/* A line of /proc/self/status (VmRSS, VmHWM) in MB; -1 if absent. */
static double proc_mb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    size_t n = strlen(field);

    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = atof(line + n + 1);
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    return kb < 0 ? -1 : kb / 1024;
}

/* Dynamic mode's activation stands in here: the changes are counted. */
static void on_checkpoint(void *baton, const csy_result_t *res,
                          apr_pool_t *p)
{
    (void)p;
    *(long *)baton += (long)apr_hash_count(res->made_current);
}

static apr_status_t serve(void *baton, cs_http_resp_t *resp,
                          const cs_http_req_t *req, apr_pool_t *p,
                          const char **err)
{
    world_t *w = baton;
    apr_array_header_t *parts;
    const char *q;
    char *body;
    json_t *j, *d;
    size_t i;
    long since, k, end;

    resp->status = 200;
    resp->headers = apr_table_make(p, 1);
    if (strcmp(req->method, "GET") == 0
        && (q = strstr(req->url, "/v1/changes?since=")) != NULL) {
        since = atol(q + strlen("/v1/changes?since="));
        end = since + PAGE < w->n ? since + PAGE : w->n;
        /* Pieces joined once: the transport's own cost stays small and
         * linear (the daemon's is what is measured). */
        parts = apr_array_make(p, (int)(end - since) + 2, sizeof(char *));
        APR_ARRAY_PUSH(parts, const char *) = "{\"changes\":[";
        for (k = since; k < end; k++) {
            APR_ARRAY_PUSH(parts, const char *) =
                apr_psprintf(p, "%s{\"seq\":%ld,\"domain\":\"%s\","
                             "\"op\":\"upsert\"}", k > since ? "," : "",
                             k + 1, w->names[k]);
        }
        APR_ARRAY_PUSH(parts, const char *) =
            apr_psprintf(p, "],\"next\":%ld,\"more\":%s}", end,
                         end < w->n ? "true" : "false");
        body = apr_array_pstrcat(p, parts, 0);
    }
    else if (strcmp(req->method, "POST") == 0
             && strstr(req->url, "/v1/bundles")) {
        j = json_loadb(req->body, req->body_len, 0, NULL);
        parts = apr_array_make(p, 2 * (int)json_array_size(
                                   json_object_get(j, "domains")) + 2,
                               sizeof(char *));
        APR_ARRAY_PUSH(parts, const char *) = "{\"bundles\":[";
        json_array_foreach(json_object_get(j, "domains"), i, d) {
            const char *b = apr_hash_get(w->by_name, json_string_value(d),
                                         APR_HASH_KEY_STRING);
            if (b) {
                APR_ARRAY_PUSH(parts, const char *) = i ? "," : "";
                APR_ARRAY_PUSH(parts, const char *) = b;
            }
        }
        APR_ARRAY_PUSH(parts, const char *) = "]}";
        body = apr_array_pstrcat(p, parts, 0);
        json_decref(j);
    }
    else {
        *err = "sync_bench: unexpected request";
        return APR_EGENERAL;
    }
    resp->body = body;
    resp->len = strlen(body);
    return APR_SUCCESS;
}

static void log_none(void *baton, cs_log_level_t level, const char *msg)
{
    (void)baton;
    if (level <= CS_LOG_WARN) {
        fprintf(stderr, "sync_bench: %s\n", msg);
    }
}

int main(int argc, char **argv)
{
    world_t w;
    cs_ca_t ca;
    apr_array_header_t *wrap_certs, *wrap_keys, *chain;
    apr_pool_t *pool, *run;
    cs_cert_info_t info;
    cs_http_t http;
    csy_config_t cfg;
    csy_client_t *client;
    csy_store_t *store;
    csy_result_t res;
    EVP_PKEY *key;
    unsigned char *der;
    apr_size_t len;
    const char *err, *dir;
    double t0, t1, c0, c1, r0;
    csy_prune_t *prune;
    long handed = 0;
    struct mallinfo2 m0, m1;
    apr_allocator_t *alloc;
    int i, a, dyn = getenv("SYNC_BENCH_DYNAMIC") != NULL;
    json_t *j;
    char *text;

    if (argc < 3) {
        fprintf(stderr, "usage: %s N DIR [THREADS ...]\n", argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    w.n = atoi(argv[1]);
    dir = argv[2];
    if (testkit_ca_and_wrap(pool, &ca, &wrap_certs, &wrap_keys)) {
        return 1;
    }
    w.names = apr_pcalloc(pool, w.n * sizeof(char *));
    w.bundles = apr_pcalloc(pool, w.n * sizeof(char *));
    w.by_name = apr_hash_make(pool);
    t0 = testkit_now();
    for (i = 0; i < w.n; i++) {
        w.names[i] = apr_psprintf(pool, "s%d.bench.test", i + 1);
        if (cs_key_generate(&key, pool, CS_KEY_EC_P256)
            || cs_ca_issue(&chain, pool, &ca, key, w.names[i],
                           apr_time_from_sec(86400), &err)
            || cs_envelope_seal(&der, &len, pool, key, wrap_certs, &err)) {
            fprintf(stderr, "cannot make bundle %d\n", i);
            return 1;
        }
        cs_cert_info(&info, pool, APR_ARRAY_IDX(chain, 0, X509 *));
        j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "domain", w.names[i],
                      "serial", info.serial, "chain_pem",
                      cs_pem_write_certs(pool, chain), "key_cms",
                      cs_base64_encode(pool, der, len), "key_type", "ec");
        text = json_dumps(j, JSON_COMPACT);
        w.bundles[i] = apr_pstrdup(pool, text);
        free(text);
        json_decref(j);
        apr_hash_set(w.by_name, w.names[i], APR_HASH_KEY_STRING,
                     w.bundles[i]);
    }
    printf("sync_bench: %d bundles made in %.1f s; store under %s; %s "
           "mode\n", w.n, testkit_now() - t0, dir, dyn ? "dynamic" : "vhost");

    for (a = argc > 3 ? 3 : 2; a < argc || a == 2; a++) {
        /* its own allocator: the heap figures below are the cycle's */
        apr_allocator_create(&alloc);
        apr_allocator_max_free_set(alloc, 1);   /* freed nodes to malloc */
        apr_pool_create_ex(&run, NULL, NULL, alloc);
        apr_allocator_owner_set(alloc, run);
        memset(&cfg, 0, sizeof(cfg));
        http.send = serve;
        http.baton = &w;
        cfg.url = "https://cs.bench";
        cfg.http = &http;
        cfg.wrap_certs = wrap_certs;
        cfg.wrap_keys = wrap_keys;
        cfg.batch_size = 100;
        cfg.keep_envelopes = dyn;
        cfg.seal_keys = dyn ? cs_seal_keys_derive(run, wrap_keys) : NULL;
#ifndef SYNC_BENCH_OLD
        /* As the daemon: dynamic mode's activation at each checkpoint
         * (SYNC_BENCH_CHECKPOINTED=0: none, the changes kept whole). */
        if (dyn && !(getenv("SYNC_BENCH_CHECKPOINTED")
                     && !strcmp(getenv("SYNC_BENCH_CHECKPOINTED"), "0"))) {
            cfg.checkpointed = on_checkpoint;
            cfg.checkpointed_baton = &handed;
        }
#endif
        cfg.pool_name = "bench";
        cfg.host_name = "bench";
        cfg.log = log_none;
#ifndef SYNC_BENCH_OLD
        cfg.threads = a < argc ? atoi(argv[a]) : 0;
#endif
        if (csy_store_open(&store, run,
                           apr_psprintf(run, "%s/store-%d-%ld", dir, a,
                                        (long)getpid())) != APR_SUCCESS
            || csy_client_create(&client, run, &cfg) != APR_SUCCESS) {
            fprintf(stderr, "cannot open a store under %s\n", dir);
            return 1;
        }
        /* As the daemon: the start's prune under way during the first
         * cycle (its steps run between cycles). */
        if (csy_store_prune_begin(&prune, store, run) != APR_SUCCESS) {
            fprintf(stderr, "cannot begin a prune under %s\n", dir);
            return 1;
        }
        t0 = testkit_now();
        c0 = testkit_cpu();
        m0 = mallinfo2();
        r0 = proc_mb("VmRSS");
        if (csy_sync_once(&res, client, store, apr_hash_make(run), run)
            != APR_SUCCESS) {
            fprintf(stderr, "cycle failed: %s\n", res.error);
            return 1;
        }
        t1 = testkit_now();
        c1 = testkit_cpu();
        m1 = mallinfo2();
        printf("threads %s: %d installed in %.2f s: %.0f bundles/s; "
               "CPU %.3f ms a bundle (%.0f/s on 2 idle CPUs)\n",
#ifndef SYNC_BENCH_OLD
               a < argc ? argv[a] : "0",
#else
               "(old: 1)",
#endif
               res.installed, t1 - t0, res.installed / (t1 - t0),
               res.installed ? 1000 * (c1 - c0) / res.installed : 0.0,
               c1 > c0 ? 2 * res.installed / (c1 - c0) : 0.0);
        /* What the cycle's result (and its pool) holds at its end, which
         * the daemon keeps until its next cycle clears the pool. */
        printf("  heap in use after the cycle: %+.1f MB (%.0f bytes a "
               "bundle); from the system: %+.1f MB\n",
               ((double)m1.uordblks - (double)m0.uordblks) / 1048576,
               res.installed ? ((double)m1.uordblks - (double)m0.uordblks)
                               / res.installed : 0.0,
               ((double)(m1.arena + m1.hblkhd) - (double)(m0.arena
                                                           + m0.hblkhd))
               / 1048576);
        printf("  RSS: %.1f MB before the cycle, %.1f MB after it, "
               "%.1f MB at the process's peak; %ld changes handed over at "
               "checkpoints, %d left to the cycle's end\n", r0,
               proc_mb("VmRSS"), proc_mb("VmHWM"), handed,
               (int)apr_hash_count(res.made_current));
        handed = 0;
        csy_store_prune_end(prune);
        if (res.installed != w.n) {
            fprintf(stderr, "only %d of %d installed\n", res.installed,
                    w.n);
            return 1;
        }
        apr_pool_destroy(run);
        if (a == 2) {
            break;
        }
    }
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
