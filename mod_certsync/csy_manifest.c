/*
 * csy_manifest.c: the store's manifest, written after every change and
 * read back by the sync daemon (prune, rollback, key.seal backfill, the
 * status page).  The format, its reader and writer, and the bad-line
 * policy are lib/cs_manifest.h; this file only says where the manifest
 * is and which domains go in it.
 *
 * Both directions stream: the reader holds one buffer of the file, the
 * writer writes a line at a time into a buffered temp file, so the size
 * of the store sets no limit.  What stays in memory is one lower-case
 * name per domain of the list the caller asked for (the reader itself
 * keeps none for a sorted manifest, which is what this file writes).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "cs_file.h"
#include "cs_layout.h"
#include "cs_manifest.h"
#include "csy_store_private.h"

const char *csy_store_manifest_path(const csy_store_t *store, apr_pool_t *p)
{
    return cs_layout_top(p, store->dir, CS_LAYOUT_MANIFEST);
}

apr_status_t csy_store_manifest_open(cs_manifest_reader_t **r,
                                     const char **why, csy_store_t *store,
                                     apr_pool_t *p)
{
    return cs_manifest_open(r, why, p, csy_store_manifest_path(store, p));
}

apr_status_t csy_store_manifest_load(cs_manifest_t **pm, const char **why,
                                     csy_store_t *store, apr_pool_t *p)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    cs_manifest_t *m;
    apr_status_t rv;

    m = apr_palloc(p, sizeof(*m));
    m->entries = apr_array_make(p, 16, sizeof(cs_manifest_entry_t));
    m->problems = apr_array_make(p, 1, sizeof(cs_manifest_problem_t));
    *pm = m;
    rv = csy_store_manifest_open(&r, why, store, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;     /* none yet: no entries */
    }
    /* Refused as a whole (*why), or one that cannot be read: no entries. */
    while (rv == APR_SUCCESS
           && (rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        if (e) {
            cs_manifest_entry_t *x = apr_array_push(m->entries);

            *x = *e;
            x->domain = apr_pstrdup(p, e->domain);
            x->certdir = apr_pstrdup(p, e->certdir);
            x->name = apr_pstrdup(p, e->name);
        }
        else {
            cs_manifest_problem_t *x = apr_array_push(m->problems);

            *x = *pr;
            x->domain = pr->domain ? apr_pstrdup(p, pr->domain) : NULL;
            x->reason = apr_pstrdup(p, pr->reason);
        }
    }
    if (rv != APR_EOF) {
        apr_array_clear(m->entries);
        apr_array_clear(m->problems);
        return rv;
    }
    return APR_SUCCESS;
}

apr_status_t csy_store_manifest_read(apr_array_header_t **domains,
                                     csy_store_t *store, apr_pool_t *p)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    const char *why, *path = csy_store_manifest_path(store, p);
    apr_status_t rv;
    apr_pool_t *tmp;
    int skipped = 0;

    *domains = apr_array_make(p, 1024, sizeof(const char *));
    rv = cs_manifest_open(&r, &why, p, path);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        if (why && store->log) {
            store->log(store->log_baton, CS_LOG_WARN,
                       apr_psprintf(p, "manifest %s refused: %s", path,
                                    why));
        }
        return rv;
    }
    apr_pool_create(&tmp, p);
    while ((rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        if (e) {
            APR_ARRAY_PUSH(*domains, const char *) =
                apr_pstrdup(p, e->name);
            continue;
        }
        /* docs/manifest.md: a skipped line is named, never silent. */
        skipped++;
        if (store->log) {
            apr_pool_clear(tmp);
            store->log(store->log_baton, CS_LOG_WARN,
                       cs_manifest_problem_text(tmp, path, pr));
        }
    }
    apr_pool_destroy(tmp);
    if (rv != APR_EOF) {
        apr_array_clear(*domains);
        return rv;
    }
    return skipped ? APR_INCOMPLETE : APR_SUCCESS;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    csy_store_t *store;
    const apr_array_header_t *sorted;
    apr_pool_t *p;
    int known;                  /* every domain has a current version */
} write_ctx_t;

/* The lines, one domain at a time: only what can be served (a domain
 * without a complete current version would make httpd's configuration
 * fail to load), each once, relative to the store. */
static apr_status_t fill_manifest(apr_file_t *f, void *baton)
{
    write_ctx_t *w = baton;
    const char *domain, *last = NULL, *why;
    apr_pool_t *one;
    apr_status_t rv;
    int i;

    if ((rv = cs_manifest_write_header(f)) != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create(&one, w->p);
    for (i = 0; rv == APR_SUCCESS && i < w->sorted->nelts; i++) {
        domain = APR_ARRAY_IDX(w->sorted, i, const char *);
        if (last && strcmp(last, domain) == 0) {
            continue;
        }
        last = domain;
        apr_pool_clear(one);
        if (!w->known && csy_store_current(w->store, one, domain) == NULL) {
            continue;
        }
        rv = cs_manifest_write_entry(&why, f, one, domain,
                                     cs_layout_certdir(one, domain));
    }
    apr_pool_destroy(one);
    return rv;
}

static apr_status_t manifest_write(csy_store_t *store, apr_pool_t *p,
                                   const apr_array_header_t *domains,
                                   int known)
{
    apr_array_header_t *sorted;
    write_ctx_t w;
    int i;

    if (domains == NULL || domains->elt_size != sizeof(const char *)) {
        return APR_EINVAL;
    }
    for (i = 0; i < domains->nelts; i++) {
        if (!csy_store_domain_ok(APR_ARRAY_IDX(domains, i, const char *))) {
            return APR_EINVAL;
        }
    }
    sorted = apr_array_copy(p, domains);
    qsort(sorted->elts, sorted->nelts, sorted->elt_size, cmp_str);
    w.store = store;
    w.sorted = sorted;
    w.p = p;
    w.known = known;
    return cs_file_write_atomic_fn(csy_store_manifest_path(store, p),
                                   CSY_PERMS_PUBLIC, fill_manifest, &w, p);
}

apr_status_t csy_store_manifest_write(csy_store_t *store, apr_pool_t *p,
                                      const apr_array_header_t *domains)
{
    return manifest_write(store, p, domains, 0);
}

apr_status_t csy_store_manifest_write_known(csy_store_t *store,
                                            apr_pool_t *p,
                                            const apr_array_header_t *domains)
{
    return manifest_write(store, p, domains, 1);
}
