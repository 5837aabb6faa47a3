/*
 * csy_manifest.c: the store's manifest, written after every change and
 * read back by the sync daemon (prune, rollback, key.seal backfill, the
 * status page).  The grammar and the bad-line policy are lib/cs_manifest.h;
 * this file only says where the manifest is and which domains go in it.
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

apr_status_t csy_store_manifest_load(cs_manifest_t **pm, const char **why,
                                     csy_store_t *store, apr_pool_t *p)
{
    apr_status_t rv;
    apr_size_t len;
    char *buf;

    *why = NULL;
    rv = cs_file_read(&buf, &len, p, csy_store_manifest_path(store, p),
                      CS_MANIFEST_MAX);
    if (APR_STATUS_IS_ENOENT(rv)) {
        rv = APR_SUCCESS;
    }
    else if (rv == APR_SUCCESS) {
        /* Refused as a whole: another version, or not a manifest. */
        *why = cs_manifest_parse(pm, p, buf, len);
        return *why ? APR_EINVAL : APR_SUCCESS;
    }
    /* None (yet), or one that cannot be read: no entries. */
    *pm = apr_palloc(p, sizeof(**pm));
    (*pm)->entries = apr_array_make(p, 1, sizeof(cs_manifest_entry_t));
    (*pm)->problems = apr_array_make(p, 1, sizeof(cs_manifest_problem_t));
    return rv;
}

apr_status_t csy_store_manifest_read(apr_array_header_t **domains,
                                     csy_store_t *store, apr_pool_t *p)
{
    const cs_manifest_entry_t *e;
    cs_manifest_t *m;
    const char *why;
    apr_status_t rv;
    char *name, *c;
    int i;

    rv = csy_store_manifest_load(&m, &why, store, p);
    *domains = apr_array_make(p, m->entries->nelts + 1, sizeof(const char *));
    if (rv != APR_SUCCESS) {
        if (why && store->log) {
            store->log(store->log_baton, CS_LOG_WARN,
                       apr_psprintf(p, "manifest %s refused: %s",
                                    csy_store_manifest_path(store, p), why));
        }
        return rv;
    }
    /* docs/manifest.md: a skipped line is named, never silent. */
    for (i = 0; store->log && i < m->problems->nelts; i++) {
        store->log(store->log_baton, CS_LOG_WARN,
                   cs_manifest_problem_text(
                       p, csy_store_manifest_path(store, p),
                       &APR_ARRAY_IDX(m->problems, i,
                                      cs_manifest_problem_t)));
    }
    for (i = 0; i < m->entries->nelts; i++) {
        e = &APR_ARRAY_IDX(m->entries, i, cs_manifest_entry_t);
        /* Names compare case-insensitively; the store keeps lower case. */
        name = apr_pstrdup(p, e->domain);
        for (c = name; *c; c++) {
            if (*c >= 'A' && *c <= 'Z') {
                *c = (char)(*c - 'A' + 'a');
            }
        }
        APR_ARRAY_PUSH(*domains, const char *) = name;
    }
    return m->problems->nelts ? APR_INCOMPLETE : APR_SUCCESS;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

apr_status_t csy_store_manifest_write(csy_store_t *store, apr_pool_t *p,
                                      const apr_array_header_t *domains)
{
    apr_array_header_t *sorted, *entries;
    cs_manifest_entry_t *e;
    const char *domain, *last = NULL, *text, *why;
    int i;

    if (domains == NULL || domains->elt_size != sizeof(const char *)) {
        return APR_EINVAL;
    }
    sorted = apr_array_copy(p, domains);
    for (i = 0; i < sorted->nelts; i++) {
        if (!csy_store_domain_ok(APR_ARRAY_IDX(sorted, i, const char *))) {
            return APR_EINVAL;
        }
    }
    qsort(sorted->elts, sorted->nelts, sorted->elt_size, cmp_str);

    entries = apr_array_make(p, sorted->nelts + 1,
                             sizeof(cs_manifest_entry_t));
    for (i = 0; i < sorted->nelts; i++) {
        domain = APR_ARRAY_IDX(sorted, i, const char *);
        if (last && strcmp(last, domain) == 0) {
            continue;
        }
        last = domain;
        /* Only what can be served: a domain without a complete current
         * version would make httpd's configuration fail to load. */
        if (csy_store_current(store, p, domain) == NULL) {
            continue;
        }
        e = apr_array_push(entries);
        e->domain = domain;
        e->certdir = cs_layout_path(p, store->dir, domain, CS_LAYOUT_CURRENT,
                                    NULL);
        e->line = 0;
    }
    if ((text = cs_manifest_text(&why, p, entries)) == NULL) {
        return APR_EINVAL;
    }
    return cs_file_write_atomic(csy_store_manifest_path(store, p), text,
                                strlen(text), CSY_PERMS_PUBLIC, p);
}
