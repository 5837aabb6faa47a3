/*
 * csy_store_private.h: what csy_store.c, csy_manifest.c and csy_cursor.c
 * share: the store handle and its permissions.  Not for other callers.
 */
#ifndef CSY_STORE_PRIVATE_H
#define CSY_STORE_PRIVATE_H

#include <apr_file_info.h>

#include "csy_store.h"

/* Directories and public files: the parent (root) and, in dynamic mode,
 * the workers read them; only the sync process writes. */
#define CSY_PERMS_DIR    (APR_FPROT_UREAD | APR_FPROT_UWRITE \
                          | APR_FPROT_UEXECUTE | APR_FPROT_GREAD \
                          | APR_FPROT_GEXECUTE | APR_FPROT_WREAD \
                          | APR_FPROT_WEXECUTE)
#define CSY_PERMS_PUBLIC (APR_FPROT_UREAD | APR_FPROT_UWRITE \
                          | APR_FPROT_GREAD | APR_FPROT_WREAD)
#define CSY_PERMS_SECRET (APR_FPROT_UREAD | APR_FPROT_UWRITE)
#define CSY_PERMS_BUILD  (APR_FPROT_UREAD | APR_FPROT_UWRITE \
                          | APR_FPROT_UEXECUTE)

/* The manifest this process last checked or wrote, by identity: found
 * again unchanged, it is trusted without a read (csy_store_served_open). */
typedef struct {
    int known;
    apr_ino_t ino;
    apr_dev_t dev;
    apr_off_t size;
    apr_time_t mtime, ctime;
    apr_status_t rv;            /* APR_SUCCESS: sorted (cs_manifest_sorted_
                                 * check); else why it was refused */
} csy_manifest_seen_t;

struct csy_store_t {
    apr_pool_t *pool;
    const char *dir;            /* absolute, no trailing '/' */
    const char *live;           /* dir/live */
    long envelope_gid;          /* group that may read key.cms; -1: none */
    cs_log_fn *log;             /* csy_store_set_log; NULL: none */
    void *log_baton;
    csy_prune_t *prune;         /* a pass under way (csy_store_prune_begin) */
    csy_manifest_seen_t seen;   /* the manifest as last seen (csy_manifest.c) */
};

/* A domain the store accepts as a path component: cs_name_check, lower
 * case. */
int csy_store_domain_ok(const char *domain);

#endif /* CSY_STORE_PRIVATE_H */
