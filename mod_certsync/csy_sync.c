/*
 * csy_sync.c: one synchronisation cycle with CertService (the feed, the
 * batches of bundles, made durable and current together).  Its requests
 * go through csy_client.c, the bundles are checked on several threads by
 * csy_check.c.  See csy_sync.h.
 */
#include <string.h>

#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <jansson.h>

#include "cs_name.h"
#include "csy_check.h"
#include "csy_client_private.h"
#include "csy_sync.h"

#define CSY_FEED_PAGE       1000
/* Feed pages applied between two saves of the manifest and the cursor
 * (csy_config_t.checkpoint_pages, 0: this).
 * Saving after every page rewrote the whole manifest (and read every
 * domain's current link) once a page: a cold sync of N domains cost
 * N / 1000 rewrites of N lines.  A crash loses at most this many pages'
 * cursor, which the next cycle applies again (an install of the serial
 * already current is a no-op). */
#define CSY_CHECKPOINT_PAGES 50

/* ------------------------------------------------------------------ */
/* The cycle                                                           */
/* ------------------------------------------------------------------ */

/*
 * A page's staged bundles made durable and current on a thread of their
 * own (commit_run) while the cycle reads and checks the next page: one
 * sync of the store, then the switches; a sync that fails refuses them
 * all (current then stays where it was for every one).  The sync costs
 * 50 to 70 ms on this kind of disk whatever it flushes and the switches
 * a symlink and a rename each: on the cycle's thread they left every CPU
 * but one idle at each page's end.  One page's commit at a time;
 * commit_join waits for it and takes each bundle's outcome into the
 * cycle's result, on the cycle's thread.  The links are synced later,
 * once before the manifest and the cursor count on them (sync_links).
 */
typedef struct {
    apr_array_header_t *jobs;   /* csy_job_t, from the page's pool */
    apr_hash_t *domains;        /* their names (a later page naming one
                                 * waits for the commit) */
    csy_store_t *store;
    apr_pool_t *pool;           /* the thread's: own allocator */
    apr_thread_t *thread;       /* NULL: ran on the cycle's thread */
    int unjoined;               /* begun, not yet joined */
    apr_status_t rv;            /* the store's sync */
    int switched;               /* any link switched */
    long long next;             /* the feed after the page; -1: the page
                                 * was not applied whole */
} commit_t;

typedef struct {
    csy_client_t *cl;
    csy_store_t *store;
    csy_result_t *res;
    csy_served_t *served;       /* the manifest's set, and its changes */
    apr_hash_t *failures;       /* domain -> reason */
    apr_pool_t *keep;           /* where failure texts live */
    apr_pool_t *p;              /* the cycle's results */
    apr_pool_t *changes;        /* res->made_current and removed_set */
    int checkpoint_pages;
    csy_checker_t *checker;     /* checking bundles; made at first need */
    apr_array_header_t *staged; /* csy_job_t: fetch_all's, to commit */
    commit_t commit;            /* the previous page's, maybe in flight */
    long long cursor_ok;        /* the feed after the pages committed */
    apr_interval_time_t join_wait;  /* this page's wait for the previous
                                     * page's commit */
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

static void *APR_THREAD_FUNC commit_run(apr_thread_t *t, void *data)
{
    commit_t *c = data;
    apr_status_t srv;
    const char *why;
    csy_job_t *j;
    int k, any = 0;

    (void)t;
    for (k = 0; k < c->jobs->nelts; k++) {
        any |= APR_ARRAY_IDX(c->jobs, k, csy_job_t).pending;
    }
    c->rv = any ? csy_store_sync(c->store) : APR_SUCCESS;
    if (c->rv != APR_SUCCESS) {
        why = apr_psprintf(c->pool, CSY_STORE_WHY "cannot sync the batch: "
                           "%pm", &c->rv);
        for (k = 0; k < c->jobs->nelts; k++) {
            j = &APR_ARRAY_IDX(c->jobs, k, csy_job_t);
            if (j->pending) {
                j->pending = 0;
                j->why = why;
            }
        }
        return NULL;
    }
    for (k = 0; k < c->jobs->nelts; k++) {
        j = &APR_ARRAY_IDX(c->jobs, k, csy_job_t);
        /* bare: the prune's notes are commit_join's (csy_store_prune_keep),
         * on the thread that runs the prune */
        if (j->pending
            && (srv = csy_store_switch_bare(c->store, c->pool, j->domain,
                                            j->serial)) != APR_SUCCESS) {
            j->pending = 0;
            j->why = apr_psprintf(c->pool, CSY_STORE_WHY "%pm", &srv);
        }
        c->switched |= j->pending;
    }
    return NULL;
}

/* Starts committing what fetch_all staged (cy->staged, from p) on its own
 * thread; commit_join must come before p is cleared.  next: the feed
 * position once this page is done (-1: none). */
static void commit_begin(cycle_t *cy, apr_pool_t *p, long long next)
{
    commit_t *c = &cy->commit;
    apr_allocator_t *alloc;
    int k;

    if (!c->pool) {
        apr_allocator_create(&alloc);
        apr_pool_create_ex(&c->pool, cy->p, NULL, alloc);
        apr_allocator_owner_set(alloc, c->pool);
    }
    apr_pool_clear(c->pool);
    c->jobs = cy->staged;
    c->store = cy->store;
    c->rv = APR_SUCCESS;
    c->switched = 0;
    c->next = next;
    c->domains = apr_hash_make(p);
    for (k = 0; k < c->jobs->nelts; k++) {
        const char *d = APR_ARRAY_IDX(c->jobs, k, csy_job_t).want;
        apr_hash_set(c->domains, d, APR_HASH_KEY_STRING, d);
    }
    cy->staged = NULL;
    c->unjoined = 1;
    if (apr_thread_create(&c->thread, NULL, commit_run, c, p)
        != APR_SUCCESS) {
        c->thread = NULL;
        commit_run(NULL, c);    /* here, then */
    }
}

/* Waits for the page's commit in flight, if any, and takes each bundle's
 * outcome into the cycle's result.  Its sync's status; *err set if it
 * failed.  Then cy->cursor_ok is the feed after the pages made current. */
static apr_status_t commit_join(cycle_t *cy, const char **err)
{
    commit_t *c = &cy->commit;
    apr_array_header_t *jobs = c->jobs;
    apr_pool_t *p = c->pool;
    apr_status_t trv;
    const char *why;
    csy_job_t *j;
    int k, listed;

    if (!c->unjoined) {
        return APR_SUCCESS;
    }
    if (c->thread) {
        apr_thread_join(&trv, c->thread);
        c->thread = NULL;
    }
    c->unjoined = 0;
    cy->links_unsynced |= c->switched;

    for (k = 0; k < jobs->nelts; k++) {
        j = &APR_ARRAY_IDX(jobs, k, csy_job_t);
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
        listed = csy_served_add(cy->served, j->want);
        if (j->pending) {
            cy->res->installed++;
            csy_log(cy->cl->config, CS_LOG_INFO, p, "installed %s serial %s",
                    j->want, j->serial);
        }
        else {
            cy->res->unchanged++;
        }
        /* Current already but listed only now (a cycle that failed after
         * its commit, before a manifest listed it): made live as if
         * installed now, or dynamic mode's workers would keep the name as
         * unknown. */
        if (j->pending || listed) {
            cy->res->changed = 1;
            apr_hash_set(cy->res->made_current,
                         apr_pstrdup(cy->changes, j->want),
                         APR_HASH_KEY_STRING,
                         apr_pstrdup(cy->changes, j->serial));
        }
    }
    if (c->rv != APR_SUCCESS) {
        /* Nothing of that page became current; the cursor stays. */
        *err = apr_psprintf(cy->p, "cannot sync the store: %pm", &c->rv);
        return c->rv;
    }
    if (c->next >= 0) {
        cy->cursor_ok = c->next;
    }
    return APR_SUCCESS;
}

/* The links switched since the last call, on disk: before the manifest
 * or the cursor may say they are. */
static apr_status_t sync_links(cycle_t *cy, const char **err)
{
    apr_status_t rv;

    if ((rv = commit_join(cy, err)) != APR_SUCCESS) {
        return rv;
    }
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
static csy_job_t *read_jobs(int *njobs, answer_t *a, apr_pool_t *p)
{
    json_t *bundles = json_object_get(a->resp, "bundles"), *v;
    csy_job_t *jobs, *j;
    size_t i;

    *njobs = 0;
    jobs = apr_pcalloc(p, (json_array_size(bundles) + 1)
                          * sizeof(csy_job_t));
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
static void keep_jobs(cycle_t *cy, apr_pool_t *p, answer_t *a,
                      csy_job_t *jobs, int njobs)
{
    apr_hash_index_t *hi;
    csy_job_t *j, *keep;
    int k;

    for (k = 0; k < njobs; k++) {
        j = &jobs[k];
        keep = &APR_ARRAY_PUSH(cy->staged, csy_job_t);
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

/*
 * A page of work: the names to fetch (a feed page's upserts, or the
 * earlier failures) in batches, the first batch asked for already.  The
 * next feed page is read and its first batch asked for while the threads
 * check the last batch of the page before (fetch_all): at a page's start
 * the threads waited for both, 30 to 40 ms of a page's 650 to 900.
 */
typedef struct {
    apr_pool_t *pool;           /* the page's */
    apr_hash_t *upserts;        /* name -> name: what to fetch */
    apr_hash_t *deletes;        /* name -> name */
    long long since, next;      /* the feed page's */
    int more;
    apr_status_t read_rv;       /* reading the feed page failed */
    apr_array_header_t *batches;    /* apr_array_header_t * of names */
    answer_t first;             /* batch 0's answer, resp NULL if none */
    apr_status_t first_rv;      /* asking for it failed */
    const char *err;            /* why either failed */
    int ahead;                  /* read during the page before's checks */
    apr_interval_time_t feed_t, first_t;
} page_t;

static void page_reset(page_t *pg)
{
    if (pg->first.resp) {
        json_decref(pg->first.resp);
    }
    apr_pool_clear(pg->pool);
    memset(&pg->first, 0, sizeof(pg->first));
    pg->upserts = apr_hash_make(pg->pool);
    pg->deletes = apr_hash_make(pg->pool);
    pg->since = pg->next = -1;
    pg->more = pg->ahead = 0;
    pg->read_rv = pg->first_rv = APR_SUCCESS;
    pg->err = NULL;
    pg->batches = NULL;
    pg->feed_t = pg->first_t = 0;
}

/* pg's upserts in batches of CertSyncBatchSize; the first asked for. */
static void page_ask(cycle_t *cy, page_t *pg)
{
    int size = cy->cl->config->batch_size;  /* > 0: csy_client_create */
    apr_array_header_t *batch = NULL;
    apr_hash_index_t *hi;
    apr_time_t t = apr_time_now();

    pg->batches = apr_array_make(pg->pool,
                                 apr_hash_count(pg->upserts) / size + 1,
                                 sizeof(apr_array_header_t *));
    for (hi = apr_hash_first(pg->pool, pg->upserts); hi;
         hi = apr_hash_next(hi)) {
        if (!batch || batch->nelts == size) {
            batch = apr_array_make(pg->pool, size, sizeof(const char *));
            APR_ARRAY_PUSH(pg->batches, apr_array_header_t *) = batch;
        }
        APR_ARRAY_PUSH(batch, const char *) = apr_hash_this_key(hi);
    }
    if (pg->batches->nelts) {
        pg->first_rv = ask_batch(&pg->first, cy, pg->pool,
                                 APR_ARRAY_IDX(pg->batches, 0,
                                               apr_array_header_t *),
                                 &pg->err);
    }
    pg->first_t = apr_time_now() - t;
}

/* The feed page after since, into pg (emptied first); its first batch
 * asked for. */
static void page_read(cycle_t *cy, page_t *pg, long long since)
{
    apr_time_t t = apr_time_now();

    page_reset(pg);
    pg->since = since;
    pg->read_rv = read_page(cy, pg->pool, since, pg->upserts, pg->deletes,
                            &pg->next, &pg->more, &pg->err);
    pg->feed_t = apr_time_now() - t;
    if (pg->read_rv == APR_SUCCESS) {
        page_ask(cy, pg);
    }
}

/*
 * All the bundles of pg, in its batches, made current together at the
 * end (commit_begin: on their own thread, while the cycle goes on with
 * the next page), also when a batch failed: those before it were checked
 * and are installed.  While the workers check a batch, this thread asks
 * for the next one, and during the last one reads the feed page after pg
 * into ahead (if not NULL): CertService's part (its reads, its JSON, TLS)
 * then costs the cold sync no waiting.  The previous page's commit is
 * joined first if it names one of pg's names (the two would work in one
 * domain's directory at once), else at the end, before this one's begins;
 * an error of its sync is returned.  next_pos: the feed position once the
 * names are all current (-1: none, the cursor stays).
 */
static apr_status_t fetch_all(cycle_t *cy, page_t *pg, page_t *ahead,
                              long long next_pos, const char **err)
{
    apr_pool_t *p = pg->pool;
    apr_array_header_t *batches = pg->batches;
    apr_hash_index_t *hi;
    apr_status_t rv = pg->first_rv, crv;
    const char *cerr = NULL;
    answer_t cur, next;
    csy_checking_t *c;
    csy_job_t *jobs;
    apr_time_t t;
    int k, njobs;

    cy->staged = apr_array_make(p, cy->cl->config->batch_size,
                                sizeof(csy_job_t));
    cur = pg->first;
    memset(&pg->first, 0, sizeof(pg->first));   /* cur's now */
    if (rv != APR_SUCCESS) {
        *err = pg->err;
    }
    t = apr_time_now();
    for (hi = apr_hash_first(p, pg->upserts); hi && cy->commit.unjoined;
         hi = apr_hash_next(hi)) {
        if (apr_hash_get(cy->commit.domains, apr_hash_this_key(hi),
                         APR_HASH_KEY_STRING)
            && (crv = commit_join(cy, &cerr)) != APR_SUCCESS) {
            if (cur.resp) {
                json_decref(cur.resp);
            }
            *err = cerr;
            return crv;
        }
    }
    cy->join_wait = apr_time_now() - t;
    for (k = 0; rv == APR_SUCCESS && k < batches->nelts; k++) {
        if (!cy->checker) {
            cy->checker = csy_checker_make(cy->p, cy->cl->config, cy->store);
        }
        jobs = read_jobs(&njobs, &cur, p);
        c = csy_check_start(cy->checker, jobs, njobs, p);
        memset(&next, 0, sizeof(next));
        if (k + 1 < batches->nelts) {
            rv = ask_batch(&next, cy, p, APR_ARRAY_IDX(batches, k + 1,
                                                       apr_array_header_t *),
                           err);
        }
        else if (ahead) {
            page_read(cy, ahead, pg->next);
            ahead->ahead = 1;
        }
        csy_check_finish(c);
        keep_jobs(cy, p, &cur, jobs, njobs);
        cur = next;
    }
    if (cur.resp) {
        json_decref(cur.resp);      /* a batch failed before it was used */
    }
    t = apr_time_now();
    crv = commit_join(cy, &cerr);
    cy->join_wait += apr_time_now() - t;
    if (crv != APR_SUCCESS) {
        /* What this page staged waits for the next cycle (the cursor
         * stays before the page that failed). */
        *err = cerr;
        return crv;
    }
    commit_begin(cy, p, rv == APR_SUCCESS ? next_pos : -1);
    return rv;
}

/* What the pages before a checkpoint changed, handed to the caller
 * (csy_config_t.checkpointed), then forgotten. */
static void changes_flush(cycle_t *cy, apr_pool_t *p)
{
    const csy_config_t *cfg = cy->cl->config;
    csy_result_t *res = cy->res;

    if (!cfg->checkpointed) {
        return;
    }
    if (apr_hash_count(res->made_current)
        || apr_hash_count(res->removed_set)) {
        cfg->checkpointed(cfg->checkpointed_baton, res, p);
    }
    apr_pool_clear(cy->changes);
    res->made_current = apr_hash_make(cy->changes);
    res->removed_set = apr_hash_make(cy->changes);
}

/* The manifest, then the cursor: what the pages applied and committed so
 * far made durable (their data already is); then the caller hears of
 * what they changed. */
static apr_status_t checkpoint(cycle_t *cy, apr_pool_t *p, long long *saved,
                               const char **err)
{
    csy_result_t *res = cy->res;
    long long cursor;
    apr_status_t rv;

    if ((rv = sync_links(cy, err))) {
        return rv;
    }
    cursor = cy->cursor_ok;
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
    changes_flush(cy, p);
    return APR_SUCCESS;
}

apr_status_t csy_sync_once(csy_result_t *res, csy_client_t *cl,
                           csy_store_t *store, apr_hash_t *failures,
                           apr_pool_t *p)
{
    cycle_t cy;
    apr_hash_index_t *hi;
    page_t pages[3], *pg = &pages[0], *ahead;
    long long cursor, saved;
    const char *err = NULL, *ckpt_err = NULL;
    apr_status_t rv = APR_SUCCESS;
    int more = 1, pending = 0, ckpt_failed = 0, n, k;
    apr_time_t t0;

    memset(res, 0, sizeof(*res));
    memset(&cy, 0, sizeof(cy));
    cy.cl = cl;
    cy.store = store;
    cy.res = res;
    cy.failures = failures;
    cy.keep = apr_hash_pool_get(failures);
    cy.p = p;
    res->failures = failures;
    cy.checkpoint_pages = cl->config->checkpoint_pages > 0
                          ? cl->config->checkpoint_pages
                          : CSY_CHECKPOINT_PAGES;
    apr_pool_create(&cy.changes, p);
    res->made_current = apr_hash_make(cy.changes);
    res->removed_set = apr_hash_make(cy.changes);

    /* The manifest is not read: a stat when it is the one the last cycle
     * left (csy_store_served_open), so that an idle cycle costs the same
     * for 10 domains and for 10,000,000. */
    if ((rv = csy_store_cursor_get(&cursor, store, p))
        || (rv = csy_store_served_open(&cy.served, store, p))) {
        res->error = apr_psprintf(p, "cannot read the store: %pm", &rv);
        return rv;
    }
    res->cursor_before = res->cursor_after = saved = cy.cursor_ok = cursor;

    /* Three pages' pools in turn: a page's commit runs on while the next
     * page is checked and the one after it read; a commit is joined
     * before its page's pool is read into again. */
    memset(pages, 0, sizeof(pages));
    for (k = 0; k < 3; k++) {
        apr_pool_create(&pages[k].pool, p);
    }
    for (n = 0; more; n++) {
        pg = &pages[n % 3];
        ahead = &pages[(n + 1) % 3];
        t0 = apr_time_now();
        if (!pg->ahead) {
            page_read(&cy, pg, cursor);
        }
        if ((rv = pg->read_rv) != APR_SUCCESS) {
            err = pg->err;
            break;
        }
        ahead->ahead = 0;
        rv = fetch_all(&cy, pg, pg->more && pg->next > pg->since ? ahead
                                                                 : NULL,
                       pg->next, &err);
        /* Where a page's time goes: what the checking threads wait for
         * (the feed, the first batch, the previous page's commit). */
        csy_log(cl->config, CS_LOG_DEBUG, pg->pool, "page after %"
                APR_INT64_T_FMT ": %d upserts, %d deletes in %.1f ms; the "
                "feed %.1f ms and its first batch %.1f ms %s; the previous "
                "page's commit waited for %.1f ms", (apr_int64_t)cursor,
                (int)apr_hash_count(pg->upserts),
                (int)apr_hash_count(pg->deletes),
                (apr_time_now() - t0) / 1000.0, pg->feed_t / 1000.0,
                pg->first_t / 1000.0, pg->ahead ? "read during the page "
                "before's checks" : "waited for", cy.join_wait / 1000.0);
        if (rv != APR_SUCCESS) {
            break;
        }
        if (pg->more && pg->next == cursor) {
            err = "GET /v1/changes: more without progress";
            rv = APR_EGENERAL;
            break;
        }
        for (hi = apr_hash_first(pg->pool, pg->deletes); hi;
             hi = apr_hash_next(hi)) {
            const char *d = apr_hash_this_key(hi);
            apr_hash_set(failures, d, APR_HASH_KEY_STRING, NULL);
            if (csy_served_remove(cy.served, d)) {
                d = apr_pstrdup(cy.changes, d);
                apr_hash_set(res->removed_set, d, APR_HASH_KEY_STRING, d);
                res->removed++;
                res->changed = 1;
                csy_log(cl->config, CS_LOG_INFO, pg->pool, "removed %s", d);
            }
        }
        /* Durable data first, then the manifest, then the cursor: every
         * checkpoint_pages pages and at the end. */
        if (pg->next > res->head) {
            res->head = pg->next;
        }
        more = pg->more;
        res->head_exact = !more;
        cursor = pg->next;
        if (++pending >= cy.checkpoint_pages || !more) {
            if ((rv = checkpoint(&cy, pg->pool, &saved, &err))) {
                ckpt_failed = 1;
                break;
            }
            pending = 0;
        }
    }
    /* A page failed: the ones applied before it are saved all the same,
     * and so are the batches it committed itself (current, listed now;
     * the cursor stays before it). */
    if (rv && !ckpt_failed
        && checkpoint(&cy, pg->pool, &saved, &ckpt_err) != APR_SUCCESS) {
        csy_log(cl->config, CS_LOG_WARN, pg->pool, "%s", ckpt_err);
    }

    /* Earlier failures: try their latest bundle again, in the pool of the
     * page after the last (none was read: the feed had no more). */
    if (!rv && apr_hash_count(failures)) {
        pg = &pages[n % 3];
        page_reset(pg);
        pg->upserts = apr_hash_copy(pg->pool, failures);
        page_ask(&cy, pg);
        if ((rv = fetch_all(&cy, pg, NULL, -1, &err)) == APR_SUCCESS
            && (rv = sync_links(&cy, &err)) == APR_SUCCESS
            && (rv = csy_served_write(cy.served, pg->pool))) {
            err = apr_psprintf(p, "cannot write the manifest: %pm", &rv);
            res->store_failed = "manifest";
            res->store_error = apr_psprintf(p, "%pm", &rv);
        }
        /* Not listed: a failure still, retried next cycle (no feed page
         * will name it again). */
        for (hi = apr_hash_first(pg->pool, pg->upserts);
             rv != APR_SUCCESS && hi; hi = apr_hash_next(hi)) {
            const char *d = apr_hash_this_key(hi);

            if (!apr_hash_get(failures, d, APR_HASH_KEY_STRING)) {
                apr_hash_set(failures, apr_pstrdup(cy.keep, d),
                             APR_HASH_KEY_STRING,
                             apr_pstrdup(cy.keep, err ? err : "not listed"));
            }
        }
    }
    /* A page's commit still running, links switched by a page that failed
     * after them: on disk all the same (nothing counts on them yet; the
     * next cycle would sync too). */
    if ((cy.commit.unjoined || cy.links_unsynced)
        && sync_links(&cy, &ckpt_err) != APR_SUCCESS) {
        csy_log(cl->config, CS_LOG_WARN, pg->pool, "%s", ckpt_err);
    }
    if (rv) {
        res->error = err ? apr_pstrdup(p, err)
                         : apr_psprintf(p, "store error: %pm", &rv);
    }
    for (k = 0; k < 3; k++) {
        page_reset(&pages[k]);      /* an answer read ahead, not used */
        apr_pool_destroy(pages[k].pool);
    }
    return rv;
}
