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

#include <apr_hash.h>
#include <apr_mmap.h>
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

/* The manifest just written: trusted by the next csy_store_served_open
 * without a read (this process is the store's only writer). */
static void seen_written(csy_store_t *store, apr_pool_t *p)
{
    apr_finfo_t fi;

    store->seen.known = 0;
    if (apr_stat(&fi, csy_store_manifest_path(store, p), APR_FINFO_IDENT
                 | APR_FINFO_SIZE | APR_FINFO_MTIME | APR_FINFO_CTIME, p)
        == APR_SUCCESS) {
        store->seen.known = 1;
        store->seen.ino = fi.inode;
        store->seen.dev = fi.device;
        store->seen.size = fi.size;
        store->seen.mtime = fi.mtime;
        store->seen.ctime = fi.ctime;
        store->seen.rv = APR_SUCCESS;
    }
}

static apr_status_t manifest_write(csy_store_t *store, apr_pool_t *p,
                                   const apr_array_header_t *domains,
                                   int known)
{
    apr_array_header_t *sorted;
    write_ctx_t w;
    apr_status_t rv;
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
    store->seen.known = 0;
    rv = cs_file_write_atomic_fn(csy_store_manifest_path(store, p),
                                 CSY_PERMS_PUBLIC, fill_manifest, &w, p);
    if (rv == APR_SUCCESS) {
        seen_written(store, p);
    }
    return rv;
}

apr_status_t csy_store_manifest_write(csy_store_t *store, apr_pool_t *p,
                                      const apr_array_header_t *domains)
{
    return manifest_write(store, p, domains, 0);
}

/* ------------------------------------------------------------------ */
/* The servable set of a cycle                                         */
/* ------------------------------------------------------------------ */

struct csy_served_t {
    csy_store_t *store;
    apr_pool_t *p;
    apr_mmap_t *map;            /* the manifest on disk; NULL: none yet */
    const char *buf;
    apr_size_t len;
    apr_pool_t *patch;          /* added and removed, emptied by a write:
                                 * a cold sync of 1,000,000 domains kept
                                 * every name until the cycle's end */
    apr_hash_t *added;          /* name -> name: servable, not listed */
    apr_hash_t *removed;        /* name -> name: listed, not servable */
    apr_status_t broken;        /* written, then not mapped again: the set
                                 * is unknown, every later write refused */
};

#define SERVED_PREFIX   CS_LAYOUT_LIVE "/"
#define SERVED_SUFFIX   "/" CS_LAYOUT_CURRENT

static int seen_same(const csy_manifest_seen_t *s, const apr_finfo_t *fi)
{
    return s->known && s->ino == fi->inode && s->dev == fi->device
           && s->size == fi->size && s->mtime == fi->mtime
           && s->ctime == fi->ctime;
}

static void seen_set(csy_store_t *store, const apr_finfo_t *fi,
                     apr_status_t rv)
{
    store->seen.known = 1;
    store->seen.ino = fi->inode;
    store->seen.dev = fi->device;
    store->seen.size = fi->size;
    store->seen.mtime = fi->mtime;
    store->seen.ctime = fi->ctime;
    store->seen.rv = rv;
}

/* A manifest that reads whole but is not in the sorted form, rewritten
 * in it: the same domains (each listed one has a current version, as the
 * sync has always trusted). */
static apr_status_t served_normalise(csy_store_t *store, apr_pool_t *p)
{
    apr_array_header_t *list;
    apr_status_t rv = csy_store_manifest_read(&list, store, p);

    if (rv == APR_SUCCESS) {
        rv = manifest_write(store, p, list, 1);
    }
    return rv;
}

/* Maps the manifest as it is now, checking it first unless it is the one
 * last checked or written; normalises it at most once. */
static apr_status_t served_map(csy_served_t *sv, int normalise)
{
    csy_store_t *store = sv->store;
    const char *path = csy_store_manifest_path(store, sv->p);
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_status_t rv;
    void *addr;

    if (sv->map) {
        apr_mmap_delete(sv->map);
        sv->map = NULL;
    }
    sv->buf = NULL;
    sv->len = 0;
    rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_OS_DEFAULT, sv->p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        store->seen.known = 0;
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_IDENT | APR_FINFO_SIZE
                               | APR_FINFO_MTIME | APR_FINFO_CTIME
                               | APR_FINFO_TYPE, f);
    }
    if (rv == APR_SUCCESS && fi.filetype != APR_REG) {
        rv = APR_EINVAL;
    }
    if (rv == APR_SUCCESS && seen_same(&store->seen, &fi)
        && store->seen.rv != APR_SUCCESS) {
        rv = store->seen.rv;    /* refused, and said so, before */
    }
    /* Its pages are read only where a lookup looks (and by the check). */
    if (rv == APR_SUCCESS && fi.size > 0
        && (rv = apr_mmap_create(&sv->map, f, 0, (apr_size_t)fi.size,
                                 APR_MMAP_READ, sv->p)) == APR_SUCCESS
        && (rv = apr_mmap_offset(&addr, sv->map, 0)) == APR_SUCCESS) {
        sv->buf = addr;
        sv->len = (apr_size_t)fi.size;
    }
    if (f) {
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS || seen_same(&store->seen, &fi)) {
        return rv;
    }
    if (sv->buf && cs_manifest_sorted_check(sv->buf, sv->len, SERVED_PREFIX,
                                            SERVED_SUFFIX) == NULL) {
        seen_set(store, &fi, APR_SUCCESS);
        return APR_SUCCESS;
    }
    if (normalise) {
        rv = served_normalise(store, sv->p);
        if (rv == APR_SUCCESS) {
            return served_map(sv, 0);
        }
        /* Skipped lines or refused: the same answer without a read until
         * the file changes (the lines were logged once). */
        if (rv == APR_INCOMPLETE || rv == APR_EINVAL) {
            seen_set(store, &fi, rv);
        }
    }
    if (sv->map) {
        apr_mmap_delete(sv->map);
        sv->map = NULL;
    }
    sv->buf = NULL;
    sv->len = 0;
    return rv == APR_SUCCESS ? APR_EGENERAL : rv;
}

apr_status_t csy_store_served_open(csy_served_t **psv, csy_store_t *store,
                                   apr_pool_t *p)
{
    csy_served_t *sv = apr_pcalloc(p, sizeof(*sv));

    sv->store = store;
    sv->p = p;
    apr_pool_create(&sv->patch, p);
    sv->added = apr_hash_make(sv->patch);
    sv->removed = apr_hash_make(sv->patch);
    *psv = sv;
    return served_map(sv, 1);
}

int csy_served_has(const csy_served_t *sv, const char *domain)
{
    int found = 0;

    if (apr_hash_get(sv->added, domain, APR_HASH_KEY_STRING)) {
        return 1;
    }
    if (apr_hash_get(sv->removed, domain, APR_HASH_KEY_STRING)) {
        return 0;
    }
    if (sv->buf) {
        cs_manifest_sorted_find(&found, sv->buf, sv->len, domain);
    }
    return found;
}

int csy_served_add(csy_served_t *sv, const char *domain)
{
    const char *d;

    if (csy_served_has(sv, domain)) {
        return 0;
    }
    if (apr_hash_get(sv->removed, domain, APR_HASH_KEY_STRING)) {
        apr_hash_set(sv->removed, domain, APR_HASH_KEY_STRING, NULL);
    }
    else {
        d = apr_pstrdup(sv->patch, domain);
        apr_hash_set(sv->added, d, APR_HASH_KEY_STRING, d);
    }
    return 1;
}

int csy_served_remove(csy_served_t *sv, const char *domain)
{
    const char *d;

    if (!csy_served_has(sv, domain)) {
        return 0;
    }
    if (apr_hash_get(sv->added, domain, APR_HASH_KEY_STRING)) {
        apr_hash_set(sv->added, domain, APR_HASH_KEY_STRING, NULL);
    }
    else {
        d = apr_pstrdup(sv->patch, domain);
        apr_hash_set(sv->removed, d, APR_HASH_KEY_STRING, d);
    }
    return 1;
}

int csy_served_dirty(const csy_served_t *sv)
{
    return apr_hash_count(sv->added) + apr_hash_count(sv->removed) > 0;
}

static apr_array_header_t *sorted_keys(apr_pool_t *p, apr_hash_t *h)
{
    apr_array_header_t *a = apr_array_make(p, (int)apr_hash_count(h) + 1,
                                           sizeof(const char *));
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, h); hi; hi = apr_hash_next(hi)) {
        APR_ARRAY_PUSH(a, const char *) = apr_hash_this_key(hi);
    }
    qsort(a->elts, (size_t)a->nelts, sizeof(const char *), cmp_str);
    return a;
}

typedef struct {
    const csy_served_t *sv;
    const apr_array_header_t *adds, *removes;   /* sorted */
    apr_pool_t *p;
} merge_ctx_t;

/* The old manifest's bytes up to each change, in order, then the added
 * line or past the removed one; then the rest. */
static apr_status_t fill_merge(apr_file_t *f, void *baton)
{
    merge_ctx_t *m = baton;
    const char *buf = m->sv->buf, *name, *why, *nl;
    apr_size_t len = m->sv->len, at = 0, off;
    apr_status_t rv = APR_SUCCESS;
    apr_pool_t *one;
    int i = 0, j = 0, add, found;

    apr_pool_create(&one, m->p);
    while (rv == APR_SUCCESS
           && (i < m->adds->nelts || j < m->removes->nelts)) {
        add = j == m->removes->nelts
              || (i < m->adds->nelts
                  && strcmp(APR_ARRAY_IDX(m->adds, i, const char *),
                            APR_ARRAY_IDX(m->removes, j, const char *)) < 0);
        name = add ? APR_ARRAY_IDX(m->adds, i++, const char *)
                   : APR_ARRAY_IDX(m->removes, j++, const char *);
        off = cs_manifest_sorted_find(&found, buf, len, name);
        if ((rv = apr_file_write_full(f, buf + at, off - at, NULL))) {
            break;
        }
        at = off;
        apr_pool_clear(one);
        if (add && !found) {
            rv = cs_manifest_write_entry(&why, f, one, name,
                                         cs_layout_certdir(one, name));
        }
        else if (!add && found) {
            /* The form ends every line, unless the file was changed in
             * place under the map (only a rename may replace it). */
            if (!(nl = memchr(buf + off, '\n', len - off))) {
                rv = APR_EINVAL;
                break;
            }
            at = (apr_size_t)(nl - buf) + 1;
        }
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_write_full(f, buf + at, len - at, NULL);
    }
    apr_pool_destroy(one);
    return rv;
}

apr_status_t csy_served_write(csy_served_t *sv, apr_pool_t *p)
{
    csy_store_t *store = sv->store;
    apr_array_header_t *adds, *removes;
    merge_ctx_t m;
    apr_status_t rv;
    int i;

    if (sv->broken) {
        return sv->broken;
    }
    if (!csy_served_dirty(sv)) {
        return APR_SUCCESS;
    }
    adds = sorted_keys(p, sv->added);
    removes = sorted_keys(p, sv->removed);
    for (i = 0; i < adds->nelts; i++) {
        if (!csy_store_domain_ok(APR_ARRAY_IDX(adds, i, const char *))) {
            return APR_EINVAL;
        }
    }
    if (!sv->buf) {
        /* None yet: what was added is the whole set. */
        rv = manifest_write(store, p, adds, 1);
    }
    else {
        m.sv = sv;
        m.adds = adds;
        m.removes = removes;
        m.p = p;
        store->seen.known = 0;
        rv = cs_file_write_atomic_fn(csy_store_manifest_path(store, p),
                                     CSY_PERMS_PUBLIC, fill_merge, &m, p);
        if (rv == APR_SUCCESS) {
            seen_written(store, p);
        }
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_clear(sv->patch);
    sv->added = apr_hash_make(sv->patch);
    sv->removed = apr_hash_make(sv->patch);
    /* Not mapped again (EMFILE, ENOMEM): the changes are on disk but no
     * longer here, so a later patch would be of nothing.  The next
     * cycle's csy_store_served_open starts afresh. */
    return sv->broken = served_map(sv, 0);
}

apr_status_t csy_store_manifest_slice(apr_array_header_t **domains,
                                      int *end, csy_store_t *store,
                                      apr_pool_t *p, int from, int max)
{
    csy_served_t *sv;
    const char *at, *stop, *nl, *sp;
    apr_status_t rv;
    int i;

    *domains = apr_array_make(p, max > 0 ? max : 1, sizeof(const char *));
    *end = 1;
    if ((rv = csy_store_served_open(&sv, store, p)) != APR_SUCCESS
        || !sv->buf) {
        return rv;
    }
    /* The sorted form: a line per entry after the header (a memchr a
     * line to reach from: milliseconds at 1,000,000). */
    at = sv->buf;
    stop = sv->buf + sv->len;
    /* The form ends every line with a name and a space before it, unless
     * the file was changed in place under the map (only a rename may
     * replace it): then EINVAL. */
    for (i = -1; at < stop && i < from; i++) {
        if (!(nl = memchr(at, '\n', (apr_size_t)(stop - at)))) {
            return APR_EINVAL;
        }
        at = nl + 1;
    }
    while (at < stop && (*domains)->nelts < max) {
        if (!(nl = memchr(at, '\n', (apr_size_t)(stop - at)))
            || !(sp = memchr(at, ' ', (apr_size_t)(nl - at)))) {
            return APR_EINVAL;
        }
        APR_ARRAY_PUSH(*domains, const char *) =
            apr_pstrmemdup(p, at, (apr_size_t)(sp - at));
        at = nl + 1;
    }
    *end = at >= stop;
    return APR_SUCCESS;
}
