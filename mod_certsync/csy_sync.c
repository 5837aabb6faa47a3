/*
 * csy_sync.c: one synchronisation cycle with CertService (the feed, the
 * bundles checked on several threads, the store's batches).  Its requests
 * go through csy_client.c.  See csy_sync.h.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "cs_crypto.h"
#include "cs_layout.h"
#include "cs_name.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_client_private.h"
#include "csy_sync.h"

#define CSY_FEED_PAGE       1000
/* Feed pages applied between two saves of the manifest and the cursor.
 * Saving after every page rewrote the whole manifest (and read every
 * domain's current link) once a page: a cold sync of N domains cost
 * N / 1000 rewrites of N lines.  A crash loses at most this many pages'
 * cursor, which the next cycle applies again (an install of the serial
 * already current is a no-op). */
#define CSY_CHECKPOINT_PAGES 50

/* How apply_bundle's answer starts when the store refused the install. */
#define CSY_STORE_WHY       "store: "
/* Threads that check bundles at most (csy_config_t.threads). */
#define CSY_THREADS_MAX     16

/* ------------------------------------------------------------------ */
/* One bundle                                                          */
/* ------------------------------------------------------------------ */

static int serial_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64 && s[strspn(s, "0123456789abcdef")] == '\0';
}

/* Opens the envelope with whichever wrapping key it was sealed to; *which
 * is that key's index.  pem: as cs_envelope_open_pem (NULL: none). */
static apr_status_t open_key(EVP_PKEY **key, char **pem, apr_size_t *pem_len,
                             int *which, const csy_config_t *cfg,
                             apr_pool_t *p, const unsigned char *der,
                             apr_size_t len, const char **err)
{
    apr_status_t rv = APR_ENOENT;
    int i;

    *err = "no wrapping key configured (CertSyncWrappingKey)";
    for (i = 0; i < cfg->wrap_keys->nelts; i++) {
        rv = cs_envelope_open_pem(key, pem, pem_len, p, der, len,
                                  APR_ARRAY_IDX(cfg->wrap_certs, i, X509 *),
                                  APR_ARRAY_IDX(cfg->wrap_keys, i,
                                                EVP_PKEY *), err);
        if (rv != APR_ENOENT) {
            *which = i;
            return rv;
        }
    }
    return rv;
}

/* key.seal for dynamic mode's workers (lib/cs_seal.h), sealed with the
 * key derived from the wrapping key that opened the envelope; NULL
 * (workers then open key.cms) if there is none. */
static unsigned char *seal_for_workers(apr_size_t *len,
                                       const csy_config_t *cfg,
                                       apr_pool_t *p, EVP_PKEY *key,
                                       X509 *leaf, int which,
                                       const char *domain,
                                       const char *serial, const char **warn)
{
    unsigned char *seal;
    const char *err = "no sealing key for this wrapping key";

    if (!cfg->seal_keys || which >= cfg->seal_keys->nelts
        || cs_seal(&seal, len, p, key, leaf,
                   &APR_ARRAY_IDX(cfg->seal_keys, which, cs_seal_key_t),
                   domain, serial, &err)) {
        *warn = apr_psprintf(p, "%s (serial %s): no key.seal, workers "
                             "will open key.cms: %s", domain, serial, err);
        return NULL;
    }
    return seal;
}

/* Does the version's key.seal open with one of this daemon's sealing
 * keys?  (After the wrapping key that sealed it was removed, it no longer
 * does.) */
static int seal_opens(const csy_config_t *cfg, apr_pool_t *p,
                      const char *store_dir, const char *domain,
                      const char *serial)
{
    const char *err;
    apr_size_t len;
    char *seal;
    int i;

    if (csy_store_read_file(&seal, &len, p,
                            cs_layout_path(p, store_dir, domain, serial,
                                           CS_LAYOUT_SEAL))) {
        return 0;
    }
    for (i = 0; i < cfg->seal_keys->nelts; i++) {
        if (cs_seal_open(NULL, (unsigned char *)seal, len, NULL,
                         &APR_ARRAY_IDX(cfg->seal_keys, i, cs_seal_key_t),
                         domain, serial, &err) == APR_SUCCESS) {
            return 1;
        }
    }
    return 0;
}

int csy_seal_backfill(const csy_config_t *cfg, csy_store_t *store,
                      apr_pool_t *p, int *pos, int max, int *done)
{
    apr_array_header_t *domains, *chain;
    const char *sdir = csy_store_dir(store), *domain, *serial, *err;
    const char *warn = NULL;
    char *cms;
    apr_size_t cms_len, seal_len;
    unsigned char *seal;
    EVP_PKEY *key;
    apr_pool_t *one;
    int sealed = 0, which = 0, k, end;

    *done = 0;
    /* Only the slice this call may check, not the whole manifest (a
     * cycle's worth of 50 MB at 1,000,000 domains). */
    if (!cfg->seal_keys
        || csy_store_manifest_slice(&domains, &end, store, p, *pos,
                                    20 * max)) {
        *done = 1;
        return 0;
    }
    apr_pool_create(&one, p);
    /* Checking a version that has its key.seal is cheap (a link, a small
     * file, one AES-GCM pass), but a store of 100,000 domains is still a
     * second or two: checked in slices too, so that no cycle waits long. */
    for (k = 0; k < domains->nelts && sealed < max; k++, (*pos)++) {
        apr_pool_clear(one);
        domain = APR_ARRAY_IDX(domains, k, const char *);
        /* The version's own directory, not "current": a switch meanwhile
         * cannot pair one version's files with another's serial. */
        if (!(serial = csy_store_current(store, one, domain))
            || seal_opens(cfg, one, sdir, domain, serial)
            || csy_store_read_file(&cms, &cms_len, one,
                                   cs_layout_path(one, sdir, domain, serial,
                                                  CS_LAYOUT_ENVELOPE))) {
            continue;           /* sealed, gone, or not an envelope */
        }
        if (open_key(&key, NULL, NULL, &which, cfg, one,
                     (unsigned char *)cms, cms_len, &err) == APR_SUCCESS
            && cs_file_read_certs(&chain, one,
                                  cs_layout_path(one, sdir, domain, serial,
                                                 CS_LAYOUT_CHAIN),
                                  &err) == APR_SUCCESS
            && (seal = seal_for_workers(&seal_len, cfg, one, key,
                                        APR_ARRAY_IDX(chain, 0, X509 *),
                                        which, domain, serial, &warn))
               != NULL
            && csy_store_add_seal(store, one, domain, serial, seal,
                                  seal_len) == APR_SUCCESS) {
            sealed++;
        }
        if (warn) {
            csy_log(cfg, CS_LOG_WARN, one, "%s", warn);
            warn = NULL;
        }
    }
    *done = end && k == domains->nelts;
    apr_pool_destroy(one);
    return sealed;
}

/* ------------------------------------------------------------------ */
/* Bundles, checked on several threads                                 */
/* ------------------------------------------------------------------ */

/* Chains whose intermediates a worker has parsed and verified: the text
 * after the leaf -> inter_t.  A pool of 100,000 domains has a handful of
 * distinct intermediates; parsing and verifying them once per bundle was
 * a third of the checks. */
#define CSY_INTER_MAX       64

typedef struct {
    apr_array_header_t *certs;  /* X509 *, the chain after the leaf */
    const char *pem;            /* written out again (cs_pem_write_certs) */
} inter_t;

/* A worker's memory: its own allocator, so that threads never share one. */
typedef struct {
    apr_pool_t *root;           /* the cycle: the intermediates */
    apr_pool_t *batch;          /* one batch's bundles */
    apr_hash_t *inter;          /* chain text after the leaf -> inter_t */
} worker_t;

/* One bundle of a batch: what the main thread read from the answer, then
 * what a worker made of it. */
typedef struct {
    const char *want;           /* the domain asked for */
    const char *domain, *serial, *chain_pem, *key_cms;
    const char *why;            /* refused: why; NULL: fine */
    const char *warn;           /* for the log: no key.seal, and why */
    int pending;                /* staged: to be made current */
} job_t;

/* The text of chain_pem after the leaf's PEM block (its END line and
 * line end included), or NULL if there is none. */
static const char *after_leaf(const char *chain_pem)
{
    static const char end[] = "-----END CERTIFICATE-----";
    const char *e = strstr(chain_pem, end);

    if (!e) {
        return NULL;
    }
    e += sizeof(end) - 1;
    if (*e == '\r') {
        e++;
    }
    if (*e == '\n') {
        e++;
    }
    /* Only whitespace after the leaf: no intermediates to share. */
    return e[strspn(e, " \t\r\n")] ? e : NULL;
}

/*
 * The chain of a bundle, parsed, and its text written out again; *checked
 * is the index from which the chain's signatures are known good
 * (cs_bundle_verify_ex).  The intermediates come from the worker's cache
 * when it has them: the leaf's text parsed alone then yields exactly what
 * the whole text would (PEM blocks are read one after another).
 */
static const char *read_chain(apr_array_header_t **chain, const char **pem,
                              int *checked, inter_t **fresh, worker_t *w,
                              apr_pool_t *p, const char *chain_pem)
{
    const char *rest = after_leaf(chain_pem), *leaf_pem, *err;
    apr_array_header_t *leaf;
    inter_t *in = NULL;
    int i;

    *checked = INT_MAX;
    *fresh = NULL;
    if (rest) {
        in = apr_hash_get(w->inter, rest, APR_HASH_KEY_STRING);
    }
    if (in && cs_pem_read_certs(&leaf, p, chain_pem, rest - chain_pem,
                                &err) == APR_SUCCESS
        && leaf->nelts == 1
        && (leaf_pem = cs_pem_write_certs(p, leaf)) != NULL) {
        *chain = apr_array_make(p, 1 + in->certs->nelts, sizeof(X509 *));
        APR_ARRAY_PUSH(*chain, X509 *) = APR_ARRAY_IDX(leaf, 0, X509 *);
        for (i = 0; i < in->certs->nelts; i++) {
            APR_ARRAY_PUSH(*chain, X509 *) = APR_ARRAY_IDX(in->certs, i,
                                                           X509 *);
        }
        *pem = apr_pstrcat(p, leaf_pem, in->pem, NULL);
        *checked = 1;
        return NULL;
    }
    if (cs_pem_read_certs(chain, p, chain_pem, strlen(chain_pem), &err)) {
        return apr_pstrcat(p, "bad chain: ", err, NULL);
    }
    /* Store what was verified, written out again: CertService's text may
     * hold lines the PEM reader skips, which a worker's reader of the
     * leaf (csy_dyn.c) or another program need not skip alike. */
    if ((*pem = cs_pem_write_certs(p, *chain)) == NULL) {
        return "cannot encode the chain";
    }
    /* Remembered once the bundle verified (keep_inter). */
    if (rest && !in && (*chain)->nelts > 1
        && apr_hash_count(w->inter) < CSY_INTER_MAX) {
        *fresh = apr_pcalloc(p, sizeof(inter_t));
    }
    return NULL;
}

/* The intermediates of a chain that verified, for the next bundles. */
static void keep_inter(worker_t *w, const char *chain_pem)
{
    const char *rest = after_leaf(chain_pem), *err;
    inter_t *in = apr_pcalloc(w->root, sizeof(*in));

    if (!rest
        || cs_pem_read_certs(&in->certs, w->root, rest, strlen(rest), &err)
        || (in->pem = cs_pem_write_certs(w->root, in->certs)) == NULL) {
        return;
    }
    apr_hash_set(w->inter, apr_pstrdup(w->root, rest), APR_HASH_KEY_STRING,
                 in);
}

/*
 * Checks one bundle and stages its install (csy_store_stage): on a worker
 * thread, so it touches only its job, its worker's pools and what the
 * cycle does not change meanwhile (the configuration, the store's
 * handle).  j->why says why it was refused.
 */
static void check_bundle(job_t *j, const csy_config_t *cfg,
                         csy_store_t *store, worker_t *w)
{
    apr_pool_t *p = w->batch;
    const char *norm, *err, *cur, *chain_pem = NULL;
    apr_array_header_t *chain;
    unsigned char *der;
    apr_size_t der_len, pem_len = 0;
    EVP_PKEY *key;
    char *pem = NULL;
    unsigned char *seal = NULL;
    apr_size_t seal_len = 0;
    inter_t *fresh;
    apr_status_t rv;
    int which = 0, checked;

    if (j->why) {
        return;         /* refused as it was read */
    }
    if (cs_name_normalize(&norm, p, j->domain)
        || strcmp(norm, j->domain) != 0 || strcmp(j->domain, j->want) != 0) {
        j->why = "bundle names another or an invalid domain";
        return;
    }
    if (!serial_ok(j->serial)) {
        j->why = "bundle has an invalid serial";
        return;
    }
    cur = csy_store_current(store, p, j->domain);
    if (cur && strcmp(cur, j->serial) == 0) {
        return;         /* already served */
    }
    if (cfg->quarantine
        && (cur = apr_hash_get(cfg->quarantine, j->domain,
                               APR_HASH_KEY_STRING))
        && strcmp(cur, j->serial) == 0) {
        j->why = "this serial failed the probe after a restart and was "
                 "rolled back; waiting for a newer one";
        return;
    }
    if (cs_base64_decode(&der, &der_len, p, j->key_cms) != APR_SUCCESS) {
        j->why = "key_cms is not base64";
        return;
    }
    /* vhost mode: the key file is the envelope's PKCS#8, as PEM. */
    if ((rv = open_key(&key, cfg->keep_envelopes ? NULL : &pem, &pem_len,
                       &which, cfg, p, der, der_len, &err))) {
        j->why = apr_pstrcat(p, "cannot open the key envelope: ", err, NULL);
        return;
    }
    if ((j->why = read_chain(&chain, &chain_pem, &checked, &fresh, w, p,
                             j->chain_pem)) != NULL
        || cs_bundle_verify_ex(chain, key, j->domain, apr_time_now(), checked,
                               &j->why)) {
        if (pem) {
            OPENSSL_cleanse(pem, pem_len);
        }
        return;
    }
    if (fresh) {
        keep_inter(w, j->chain_pem);
    }
    if (cfg->keep_envelopes) {
        seal = seal_for_workers(&seal_len, cfg, p, key,
                                APR_ARRAY_IDX(chain, 0, X509 *), which,
                                j->domain, j->serial, &j->warn);
        rv = csy_store_stage(&j->pending, store, p, j->domain, j->serial,
                             chain_pem, der, der_len, 1, seal, seal_len);
    }
    else {
        if (!pem) {
            j->why = "cannot encode the private key";
            return;
        }
        rv = csy_store_stage(&j->pending, store, p, j->domain, j->serial,
                             chain_pem, pem, pem_len, 0, NULL, 0);
        OPENSSL_cleanse(pem, pem_len);
    }
    if (rv != APR_SUCCESS) {
        j->pending = 0;
        j->why = apr_psprintf(p, CSY_STORE_WHY "%pm", &rv);
    }
}

/* The workers of a batch take the next job until none is left. */
typedef struct {
    job_t *jobs;
    int njobs;
    volatile apr_uint32_t next;
    const csy_config_t *cfg;
    csy_store_t *store;
} batch_t;

static void run_jobs(batch_t *b, worker_t *w)
{
    apr_uint32_t i;

    while ((i = apr_atomic_inc32(&b->next)) < (apr_uint32_t)b->njobs) {
        check_bundle(&b->jobs[i], b->cfg, b->store, w);
    }
}

typedef struct {
    batch_t *b;
    worker_t *w;
} thread_arg_t;

static void *APR_THREAD_FUNC worker_main(apr_thread_t *t, void *data)
{
    thread_arg_t *a = data;

    (void)t;
    /* No apr_thread_exit(): it would destroy the thread's pool, a child
     * of the caller's, from this thread while the caller allocates. */
    run_jobs(a->b, a->w);
    return NULL;
}

/* How many threads check bundles: the configuration's, or one per CPU. */
static int worker_count(const csy_config_t *cfg)
{
    long n = cfg->threads;

    if (n < 1) {
#ifdef _SC_NPROCESSORS_ONLN
        n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    }
    return n < 1 ? 1 : n > CSY_THREADS_MAX ? CSY_THREADS_MAX : (int)n;
}

/* ------------------------------------------------------------------ */
/* The cycle                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    csy_client_t *cl;
    csy_store_t *store;
    csy_result_t *res;
    csy_served_t *served;       /* the manifest's set, and its changes */
    apr_hash_t *failures;       /* domain -> reason */
    apr_pool_t *keep;           /* where failure texts live */
    apr_pool_t *p;              /* the cycle's results */
    worker_t *workers;          /* checking bundles; made at first need */
    int nworkers;
    apr_array_header_t *staged; /* job_t: fetch_all's, to commit */
    int links_unsynced;         /* switched since the last sync_links */
} cycle_t;

static void record_failure(cycle_t *cy, apr_pool_t *p, const char *domain,
                           const char *why)
{
    const char *prev = apr_hash_get(cy->failures, domain,
                                    APR_HASH_KEY_STRING);

    if (!prev || strcmp(prev, why) != 0) {
        csy_log(cy->cl->config, CS_LOG_WARN, p, "bundle %s skipped: %s "
                "(what was served stays served; retried next cycle)",
                domain, why);
    }
    apr_hash_set(cy->failures, apr_pstrdup(cy->keep, domain),
                 APR_HASH_KEY_STRING, apr_pstrdup(cy->keep, why));
}

/* Workers for this cycle, made at its first batch. */
static void workers_make(cycle_t *cy)
{
    apr_allocator_t *alloc;
    int i;

    cy->nworkers = worker_count(cy->cl->config);
    cy->workers = apr_pcalloc(cy->p, cy->nworkers * sizeof(worker_t));
    for (i = 0; i < cy->nworkers; i++) {
        worker_t *w = &cy->workers[i];

        apr_allocator_create(&alloc);
        apr_pool_create_ex(&w->root, cy->p, NULL, alloc);
        apr_allocator_owner_set(alloc, w->root);
        apr_pool_create(&w->batch, w->root);
        w->inter = apr_hash_make(w->root);
    }
}

/* A batch being checked: its jobs and the threads that help the calling
 * one (check_start, check_finish). */
typedef struct {
    batch_t b;
    apr_thread_t **threads;
    thread_arg_t *args;
} checking_t;

/* Starts checking and staging the jobs on the cycle's workers but the
 * first: the calling thread is free meanwhile (it fetches the next batch)
 * and joins them in check_finish. */
static void check_start(checking_t *c, cycle_t *cy, job_t *jobs, int njobs,
                        apr_pool_t *p)
{
    int i;

    if (!cy->workers) {
        workers_make(cy);
    }
    memset(c, 0, sizeof(*c));
    c->b.jobs = jobs;
    c->b.njobs = njobs;
    c->b.cfg = cy->cl->config;
    c->b.store = cy->store;
    c->args = apr_pcalloc(p, cy->nworkers * sizeof(*c->args));
    c->threads = apr_pcalloc(p, cy->nworkers * sizeof(*c->threads));
    for (i = 1; i < cy->nworkers && i < njobs; i++) {
        c->args[i].b = &c->b;
        c->args[i].w = &cy->workers[i];
        if (apr_thread_create(&c->threads[i], NULL, worker_main, &c->args[i],
                              p) != APR_SUCCESS) {
            c->threads[i] = NULL;  /* the others do its share */
        }
    }
}

/* The calling thread checks what is left, then waits for the others. */
static void check_finish(checking_t *c, cycle_t *cy)
{
    apr_status_t trv;
    int i;

    run_jobs(&c->b, &cy->workers[0]);
    for (i = 1; i < cy->nworkers; i++) {
        if (c->threads[i]) {
            apr_thread_join(&trv, c->threads[i]);
        }
    }
}

/*
 * What fetch_all's batches staged, made durable and current: one sync of
 * the store, then the switches; a sync that fails refuses them all
 * (current then stays where it was for every one).  The links are synced
 * later, once before the manifest and the cursor count on them
 * (sync_links): a sync costs 50 to 70 ms on this kind of disk whatever it
 * flushes, so it is paid once a page of the feed, not once a batch.
 * Then each bundle's outcome goes into the cycle's result.
 */
static apr_status_t commit_staged(cycle_t *cy, apr_pool_t *p)
{
    apr_array_header_t *jobs = cy->staged;
    apr_status_t rv = APR_SUCCESS, srv;
    const char *why;
    job_t *j;
    int k, any = 0;

    for (k = 0; k < jobs->nelts; k++) {
        any |= APR_ARRAY_IDX(jobs, k, job_t).pending;
    }
    if (any && (rv = csy_store_sync(cy->store)) != APR_SUCCESS) {
        why = apr_psprintf(p, CSY_STORE_WHY "cannot sync the batch: %pm",
                           &rv);
        for (k = 0; k < jobs->nelts; k++) {
            j = &APR_ARRAY_IDX(jobs, k, job_t);
            if (j->pending) {
                j->pending = 0;
                j->why = why;
            }
        }
    }
    for (k = 0; rv == APR_SUCCESS && k < jobs->nelts; k++) {
        j = &APR_ARRAY_IDX(jobs, k, job_t);
        if (j->pending
            && (srv = csy_store_switch(cy->store, p, j->domain, j->serial))
               != APR_SUCCESS) {
            j->pending = 0;
            j->why = apr_psprintf(p, CSY_STORE_WHY "%pm", &srv);
        }
        cy->links_unsynced |= j->pending;
    }

    for (k = 0; k < jobs->nelts; k++) {
        j = &APR_ARRAY_IDX(jobs, k, job_t);
        why = j->why;
        if (j->warn) {
            csy_log(cy->cl->config, CS_LOG_WARN, p, "%s", j->warn);
        }
        if (why && !strncmp(why, CSY_STORE_WHY, sizeof(CSY_STORE_WHY) - 1)) {
            cy->res->store_failed = "bundles";
            cy->res->store_error = apr_pstrdup(cy->p, why
                                               + sizeof(CSY_STORE_WHY) - 1);
        }
        if (why) {
            record_failure(cy, p, j->want, why);
            continue;
        }
        apr_hash_set(cy->failures, j->want, APR_HASH_KEY_STRING, NULL);
        /* Served, whether installed now or found current on disk: the
         * start's prune must not take it for a deleted domain. */
        csy_store_prune_keep(cy->store, j->want);
        if (j->pending) {
            cy->res->installed++;
            cy->res->changed = 1;
            apr_hash_set(cy->res->made_current, apr_pstrdup(cy->p, j->want),
                         APR_HASH_KEY_STRING, apr_pstrdup(cy->p, j->serial));
            csy_log(cy->cl->config, CS_LOG_INFO, p, "installed %s serial %s",
                    j->want, j->serial);
        }
        else {
            cy->res->unchanged++;
        }
        if (csy_served_add(cy->served, j->want)) {
            cy->res->changed = 1;
        }
    }
    apr_array_clear(jobs);
    return rv;
}

/* The links switched since the last call, on disk: before the manifest
 * or the cursor may say they are. */
static apr_status_t sync_links(cycle_t *cy, const char **err)
{
    apr_status_t rv;

    if (!cy->links_unsynced) {
        return APR_SUCCESS;
    }
    if ((rv = csy_store_sync(cy->store)) != APR_SUCCESS) {
        *err = apr_psprintf(cy->p, "cannot sync the store: %pm", &rv);
        cy->res->store_failed = "bundles";
        cy->res->store_error = apr_psprintf(cy->p, "%pm", &rv);
        return rv;
    }
    cy->links_unsynced = 0;
    return APR_SUCCESS;
}

/* One POST /v1/bundles: its answer, and the names asked for (removed
 * from asked as they are answered). */
typedef struct {
    json_t *resp;
    apr_hash_t *asked;
} answer_t;

/* Asks CertService for the bundles of names (array of const char *). */
static apr_status_t ask_batch(answer_t *a, cycle_t *cy, apr_pool_t *p,
                              apr_array_header_t *names, const char **err)
{
    json_t *body = json_pack("{s:[]}", "domains"), *bundles;
    json_t *arr = json_object_get(body, "domains");
    long status;
    apr_status_t rv;
    int k;

    a->resp = NULL;
    a->asked = apr_hash_make(p);
    for (k = 0; k < names->nelts; k++) {
        const char *n = APR_ARRAY_IDX(names, k, const char *);
        json_array_append_new(arr, json_string(n));
        apr_hash_set(a->asked, n, APR_HASH_KEY_STRING, n);
    }
    rv = csy_request_json(&a->resp, &status, cy->cl, p, "POST",
                          "/v1/bundles", body, err);
    json_decref(body);
    if (rv) {
        return rv;
    }
    bundles = json_object_get(a->resp, "bundles");
    if (!json_is_array(bundles)) {
        json_decref(a->resp);
        a->resp = NULL;
        *err = "POST /v1/bundles: answer has no bundles array";
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* The jobs of an answer (read here: the workers do not touch the JSON). */
static job_t *read_jobs(int *njobs, answer_t *a, apr_pool_t *p)
{
    json_t *bundles = json_object_get(a->resp, "bundles"), *v;
    job_t *jobs, *j;
    size_t i;

    *njobs = 0;
    jobs = apr_pcalloc(p, (json_array_size(bundles) + 1) * sizeof(job_t));
    json_array_foreach(bundles, i, v) {
        const char *domain = json_string_value(json_object_get(v, "domain"));
        const char *want;

        want = domain ? apr_hash_get(a->asked, domain, APR_HASH_KEY_STRING)
                      : NULL;
        if (!want) {
            continue;   /* not asked for: ignore, never trust */
        }
        apr_hash_set(a->asked, want, APR_HASH_KEY_STRING, NULL);
        j = &jobs[(*njobs)++];
        j->want = want;
        if (json_unpack(v, "{s:s, s:s, s:s, s:s}", "domain", &j->domain,
                        "serial", &j->serial, "chain_pem", &j->chain_pem,
                        "key_cms", &j->key_cms) != 0) {
            j->why = "bundle lacks domain, serial, chain_pem or key_cms";
        }
    }
    return jobs;
}

/* What commit_staged needs of checked jobs, out of the answer and the
 * workers' pools (both go before it runs); then the answer goes. */
static void keep_jobs(cycle_t *cy, apr_pool_t *p, answer_t *a, job_t *jobs,
                      int njobs)
{
    apr_hash_index_t *hi;
    job_t *j, *keep;
    int k;

    for (k = 0; k < njobs; k++) {
        j = &jobs[k];
        keep = &APR_ARRAY_PUSH(cy->staged, job_t);
        memset(keep, 0, sizeof(*keep));
        keep->want = j->want;
        keep->domain = j->domain ? apr_pstrdup(p, j->domain) : NULL;
        keep->serial = j->serial ? apr_pstrdup(p, j->serial) : NULL;
        keep->why = j->why ? apr_pstrdup(p, j->why) : NULL;
        keep->warn = j->warn ? apr_pstrdup(p, j->warn) : NULL;
        keep->pending = j->pending;
    }
    json_decref(a->resp);
    a->resp = NULL;
    /* Asked for but not answered: deleted meanwhile; the feed will say. */
    for (hi = apr_hash_first(p, a->asked); hi; hi = apr_hash_next(hi)) {
        csy_log(cy->cl->config, CS_LOG_DEBUG, p, "no bundle for %s",
                (const char *)apr_hash_this_key(hi));
    }
}

/*
 * All the bundles of names, in batches of CertSyncBatchSize, made current
 * together at the end (commit_staged), also when a batch failed: those
 * before it were checked and are installed.  While the workers check a
 * batch, this thread asks for the next one: CertService's part of a batch
 * (its reads, its JSON, TLS) then costs the cold sync no waiting, which
 * before took a tenth to a fifth of it with the workers idle.
 */
static apr_status_t fetch_all(cycle_t *cy, apr_pool_t *p, apr_hash_t *names,
                              const char **err)
{
    apr_array_header_t *batches, *batch = NULL;
    apr_hash_index_t *hi;
    int size = cy->cl->config->batch_size;   /* > 0: csy_client_create */
    apr_status_t rv = APR_SUCCESS, crv;
    answer_t cur, next;
    checking_t c;
    job_t *jobs;
    int k, w, njobs;

    cy->staged = apr_array_make(p, size, sizeof(job_t));
    batches = apr_array_make(p, apr_hash_count(names) / size + 1,
                             sizeof(apr_array_header_t *));
    for (hi = apr_hash_first(p, names); hi; hi = apr_hash_next(hi)) {
        if (!batch || batch->nelts == size) {
            batch = apr_array_make(p, size, sizeof(const char *));
            APR_ARRAY_PUSH(batches, apr_array_header_t *) = batch;
        }
        APR_ARRAY_PUSH(batch, const char *) = apr_hash_this_key(hi);
    }
    if (batches->nelts) {
        rv = ask_batch(&cur, cy, p, APR_ARRAY_IDX(batches, 0,
                                                  apr_array_header_t *), err);
    }
    for (k = 0; rv == APR_SUCCESS && k < batches->nelts; k++) {
        if (cy->workers) {
            for (w = 0; w < cy->nworkers; w++) {
                apr_pool_clear(cy->workers[w].batch);
            }
        }
        jobs = read_jobs(&njobs, &cur, p);
        check_start(&c, cy, jobs, njobs, p);
        memset(&next, 0, sizeof(next));
        if (k + 1 < batches->nelts) {
            rv = ask_batch(&next, cy, p, APR_ARRAY_IDX(batches, k + 1,
                                                       apr_array_header_t *),
                           err);
        }
        check_finish(&c, cy);
        keep_jobs(cy, p, &cur, jobs, njobs);
        cur = next;
    }
    crv = commit_staged(cy, p);
    if (rv == APR_SUCCESS && crv != APR_SUCCESS) {
        /* Nothing of this page became current; the cursor stays. */
        *err = apr_psprintf(cy->p, "cannot sync the store: %pm", &crv);
        rv = crv;
    }
    return rv;
}

/* The manifest, then the cursor: what the pages applied so far made
 * durable (their data already is). */
static apr_status_t checkpoint(cycle_t *cy, apr_pool_t *p, long long cursor,
                               long long *saved, const char **err)
{
    csy_result_t *res = cy->res;
    apr_status_t rv;

    if ((rv = sync_links(cy, err))) {
        return rv;
    }
    /* Only when the set of servable domains changed (a renewal leaves
     * its line as it was), and then as a patch of the old one. */
    if ((rv = csy_served_write(cy->served, p))) {
        *err = apr_psprintf(cy->p, "cannot write the manifest: %pm", &rv);
        res->store_failed = "manifest";
        res->store_error = apr_psprintf(cy->p, "%pm", &rv);
        return rv;
    }
    if (cursor != *saved
        && (rv = csy_store_cursor_set(cy->store, cursor, p))) {
        *err = apr_psprintf(cy->p, "cannot save the cursor: %pm", &rv);
        res->store_failed = "cursor";
        res->store_error = apr_psprintf(cy->p, "%pm", &rv);
        return rv;
    }
    *saved = res->cursor_after = cursor;
    return APR_SUCCESS;
}

/* Reads one page of the feed into upserts/deletes (latest op wins). */
static apr_status_t read_page(cycle_t *cy, apr_pool_t *p, long long since,
                              apr_hash_t *upserts, apr_hash_t *deletes,
                              long long *next, int *more, const char **err)
{
    json_t *resp, *changes, *c;
    json_int_t jnext;
    long status;
    apr_status_t rv;
    size_t i;
    int jmore;

    rv = csy_request_json(&resp, &status, cy->cl, p, "GET",
                          apr_psprintf(p, "/v1/changes?since=%"
                                       APR_INT64_T_FMT "&limit=%d",
                                       (apr_int64_t)since, CSY_FEED_PAGE),
                          NULL, err);
    if (rv) {
        return rv;
    }
    if (json_unpack(resp, "{s:o, s:I, s:b}", "changes", &changes, "next",
                    &jnext, "more", &jmore) != 0 || !json_is_array(changes)
        || jnext < since) {
        json_decref(resp);
        *err = "GET /v1/changes: malformed answer";
        return APR_EGENERAL;
    }
    json_array_foreach(changes, i, c) {
        const char *domain = json_string_value(json_object_get(c, "domain"));
        const char *op = json_string_value(json_object_get(c, "op"));
        const char *norm;

        if (!domain || !op || cs_name_normalize(&norm, p, domain)
            || strcmp(norm, domain) != 0) {
            json_decref(resp);
            *err = "GET /v1/changes: a change lacks a valid domain or op";
            return APR_EGENERAL;
        }
        domain = apr_pstrdup(p, domain);
        if (strcmp(op, "delete") == 0) {
            apr_hash_set(upserts, domain, APR_HASH_KEY_STRING, NULL);
            apr_hash_set(deletes, domain, APR_HASH_KEY_STRING, domain);
        }
        else if (strcmp(op, "upsert") == 0) {
            apr_hash_set(deletes, domain, APR_HASH_KEY_STRING, NULL);
            apr_hash_set(upserts, domain, APR_HASH_KEY_STRING, domain);
        }
        cy->res->changes++;
    }
    *next = (long long)jnext;
    *more = jmore;
    json_decref(resp);
    return APR_SUCCESS;
}

apr_status_t csy_sync_once(csy_result_t *res, csy_client_t *cl,
                           csy_store_t *store, apr_hash_t *failures,
                           apr_pool_t *p)
{
    cycle_t cy;
    apr_hash_t *upserts, *deletes, *retry;
    apr_hash_index_t *hi;
    apr_pool_t *page;
    long long cursor, next, saved;
    const char *err = NULL, *ckpt_err = NULL;
    apr_status_t rv;
    int more = 1, pending = 0;

    memset(res, 0, sizeof(*res));
    memset(&cy, 0, sizeof(cy));
    cy.cl = cl;
    cy.store = store;
    cy.res = res;
    cy.failures = failures;
    cy.keep = apr_hash_pool_get(failures);
    cy.p = p;
    res->failures = failures;
    res->made_current = apr_hash_make(p);
    res->removed_set = apr_hash_make(p);

    /* The manifest is not read: a stat when it is the one the last cycle
     * left (csy_store_served_open), so that an idle cycle costs the same
     * for 10 domains and for 10,000,000. */
    if ((rv = csy_store_cursor_get(&cursor, store, p))
        || (rv = csy_store_served_open(&cy.served, store, p))) {
        res->error = apr_psprintf(p, "cannot read the store: %pm", &rv);
        return rv;
    }
    res->cursor_before = res->cursor_after = saved = cursor;

    apr_pool_create(&page, p);
    while (more) {
        apr_pool_clear(page);
        upserts = apr_hash_make(page);
        deletes = apr_hash_make(page);
        if ((rv = read_page(&cy, page, cursor, upserts, deletes, &next,
                            &more, &err))
            || (rv = fetch_all(&cy, page, upserts, &err))) {
            break;
        }
        if (more && next == cursor) {
            err = "GET /v1/changes: more without progress";
            rv = APR_EGENERAL;
            break;
        }
        for (hi = apr_hash_first(page, deletes); hi; hi = apr_hash_next(hi)) {
            const char *d = apr_hash_this_key(hi);
            apr_hash_set(failures, d, APR_HASH_KEY_STRING, NULL);
            if (csy_served_remove(cy.served, d)) {
                d = apr_pstrdup(p, d);
                apr_hash_set(res->removed_set, d, APR_HASH_KEY_STRING, d);
                res->removed++;
                res->changed = 1;
                csy_log(cl->config, CS_LOG_INFO, page, "removed %s", d);
            }
        }
        /* Durable data first, then the manifest, then the cursor: every
         * CSY_CHECKPOINT_PAGES pages and at the end. */
        if (next > res->head) {
            res->head = next;
        }
        res->head_exact = !more;
        cursor = next;
        if (++pending >= CSY_CHECKPOINT_PAGES || !more) {
            if ((rv = checkpoint(&cy, page, cursor, &saved, &err))) {
                pending = 0;
                break;
            }
            pending = 0;
        }
    }
    /* A page failed: the ones applied before it are saved all the same. */
    if (rv && pending && checkpoint(&cy, page, cursor, &saved,
                                    &ckpt_err) != APR_SUCCESS) {
        csy_log(cl->config, CS_LOG_WARN, page, "%s", ckpt_err);
    }

    /* Earlier failures: try their latest bundle again. */
    if (!rv && apr_hash_count(failures)) {
        apr_pool_clear(page);
        retry = apr_hash_copy(page, failures);
        if ((rv = fetch_all(&cy, page, retry, &err)) == APR_SUCCESS
            && (rv = sync_links(&cy, &err)) == APR_SUCCESS
            && (rv = csy_served_write(cy.served, page))) {
            err = apr_psprintf(p, "cannot write the manifest: %pm", &rv);
            res->store_failed = "manifest";
            res->store_error = apr_psprintf(p, "%pm", &rv);
        }
    }
    /* Links switched by a page that failed after them: on disk all the
     * same (nothing counts on them yet; the next cycle would sync too). */
    if (cy.links_unsynced && sync_links(&cy, &ckpt_err) != APR_SUCCESS) {
        csy_log(cl->config, CS_LOG_WARN, page, "%s", ckpt_err);
    }
    apr_pool_destroy(page);
    if (rv) {
        res->error = err ? apr_pstrdup(p, err)
                         : apr_psprintf(p, "store error: %pm", &rv);
    }
    return rv;
}
