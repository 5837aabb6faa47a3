/*
 * csy_check.c: the bundles of a batch checked (names, serial, the key
 * envelope opened, chain, validity, key match) and their installs staged,
 * on several threads; and the key.seal backfill, which opens envelopes
 * too.  The cycle that feeds them is csy_sync.c.
 */
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <openssl/crypto.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_layout.h"
#include "cs_name.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_check.h"
#include "csy_client_private.h"
#include "csy_sync.h"

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
 * (workers then open key.cms) if there is none.  verified: key and leaf
 * passed cs_bundle_verify_ex, their pair is not checked again. */
static unsigned char *seal_for_workers(apr_size_t *len,
                                       const csy_config_t *cfg,
                                       apr_pool_t *p, EVP_PKEY *key,
                                       X509 *leaf, int which, int verified,
                                       const char *domain,
                                       const char *serial, const char **warn)
{
    unsigned char *seal;
    const char *err = "no sealing key for this wrapping key";

    if (!cfg->seal_keys || which >= cfg->seal_keys->nelts
        || (verified ? cs_seal_verified : cs_seal)(
               &seal, len, p, key, leaf,
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
                                        which, 0, domain, serial, &warn))
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
 * the whole text would (PEM blocks are read one after another), and with
 * *bare set it is read bare (cs_pem_read_certs_bare); *bare says on
 * return whether it was.
 */
static const char *read_chain(apr_array_header_t **chain, const char **pem,
                              int *checked, int *bare, inter_t **fresh,
                              worker_t *w, apr_pool_t *p,
                              const char *chain_pem)
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
    if (in && (*bare ? cs_pem_read_certs_bare : cs_pem_read_certs)(
                  &leaf, p, chain_pem, rest - chain_pem, &err) == APR_SUCCESS
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
    *bare = 0;
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
static void check_bundle(csy_job_t *j, const csy_config_t *cfg,
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
    int which = 0, checked, bare;

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
    /* An EC leaf whose intermediates are known is read bare, and checked
     * without OpenSSL's decoder of its public key (88 us).  What the bare
     * checks refuse is read and checked again the usual way, whose answer
     * and reason stand. */
    bare = EVP_PKEY_is_a(key, "EC");
    j->why = read_chain(&chain, &chain_pem, &checked, &bare, &fresh, w, p,
                        j->chain_pem);
    if (!j->why && bare
        && cs_bundle_verify_bare(chain, key, j->domain, apr_time_now(),
                                 checked, &err) != APR_SUCCESS) {
        bare = 0;
        j->why = read_chain(&chain, &chain_pem, &checked, &bare, &fresh, w,
                            p, j->chain_pem);
    }
    if (j->why
        || (!bare && cs_bundle_verify_ex(chain, key, j->domain,
                                         apr_time_now(), checked, &j->why))) {
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
                                APR_ARRAY_IDX(chain, 0, X509 *), which, 1,
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
    csy_job_t *jobs;
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

struct csy_checker_t {
    const csy_config_t *cfg;
    csy_store_t *store;
    worker_t *workers;
    int nworkers;
};

csy_checker_t *csy_checker_make(apr_pool_t *p, const csy_config_t *cfg,
                                csy_store_t *store)
{
    csy_checker_t *ck = apr_pcalloc(p, sizeof(*ck));
    apr_allocator_t *alloc;
    int i;

    ck->cfg = cfg;
    ck->store = store;
    ck->nworkers = worker_count(cfg);
    ck->workers = apr_pcalloc(p, ck->nworkers * sizeof(worker_t));
    for (i = 0; i < ck->nworkers; i++) {
        worker_t *w = &ck->workers[i];

        apr_allocator_create(&alloc);
        apr_pool_create_ex(&w->root, p, NULL, alloc);
        apr_allocator_owner_set(alloc, w->root);
        apr_pool_create(&w->batch, w->root);
        w->inter = apr_hash_make(w->root);
    }
    return ck;
}

/* A batch being checked: its jobs and the threads that help the calling
 * one. */
struct csy_checking_t {
    csy_checker_t *ck;
    batch_t b;
    apr_thread_t **threads;
    thread_arg_t *args;
};

csy_checking_t *csy_check_start(csy_checker_t *ck, csy_job_t *jobs,
                                int njobs, apr_pool_t *p)
{
    csy_checking_t *c = apr_pcalloc(p, sizeof(*c));
    int i;

    /* The previous batch's bundles: the cycle copied what it keeps. */
    for (i = 0; i < ck->nworkers; i++) {
        apr_pool_clear(ck->workers[i].batch);
    }
    c->ck = ck;
    c->b.jobs = jobs;
    c->b.njobs = njobs;
    c->b.cfg = ck->cfg;
    c->b.store = ck->store;
    c->args = apr_pcalloc(p, ck->nworkers * sizeof(*c->args));
    c->threads = apr_pcalloc(p, ck->nworkers * sizeof(*c->threads));
    for (i = 1; i < ck->nworkers && i < njobs; i++) {
        c->args[i].b = &c->b;
        c->args[i].w = &ck->workers[i];
        if (apr_thread_create(&c->threads[i], NULL, worker_main, &c->args[i],
                              p) != APR_SUCCESS) {
            c->threads[i] = NULL;  /* the others do its share */
        }
    }
    return c;
}

void csy_check_finish(csy_checking_t *c)
{
    apr_status_t trv;
    int i;

    run_jobs(&c->b, &c->ck->workers[0]);
    for (i = 1; i < c->ck->nworkers; i++) {
        if (c->threads[i]) {
            apr_thread_join(&trv, c->threads[i]);
        }
    }
}
