/*
 * csy_store.c: mod_certsync's versioned certificate store on disk.  See
 * csy_store.h; the layout is lib/cs_layout.h, the file primitives
 * lib/cs_file.h, the manifest csy_manifest.c, the cursor csy_cursor.c.
 *
 * Unix only: versions are switched with symlinks (readlink, symlink),
 * which APR does not offer.  Everything else goes through APR and
 * cs_file.
 *
 * The store has one writer (the sync process); readers (httpd's parent at
 * startup, the dynamic-mode certificate callback) only ever follow
 * live/DOMAIN/current, which always names a complete version.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "cs_file.h"
#include "cs_layout.h"
#include "cs_manifest.h"
#include "cs_name.h"
#include "csy_store_private.h"

/* Files of a version (chain, envelope, seal) are small. */
#define CSY_READ_MAX        (1024 * 1024)
#define CSY_TMP_TRIES       16
#define CSY_RM_DEPTH        4       /* live/.tmp-X/SERIAL/file is enough */

/* ------------------------------------------------------------------ */
/* Names: everything that becomes a path component is checked here.   */

int csy_store_domain_ok(const char *domain)
{
    return domain && cs_name_check(NULL, domain, strlen(domain), 0) == NULL;
}

static int valid_serial(const char *serial)
{
    return serial && cs_layout_serial_ok(serial, strlen(serial));
}

/* ------------------------------------------------------------------ */
/* Versions and links                                                  */

static int is_dir(const char *path, apr_pool_t *p)
{
    apr_filetype_e type;

    return cs_file_type(&type, path, p) && type == APR_DIR;
}

/* A key file: never readable by others; a sealed one (useless without the
 * wrapping key) readable by the workers' group in dynamic mode. */
static apr_fileperms_t key_perms(int sealed, long gid)
{
    return CSY_PERMS_SECRET | (sealed && gid >= 0 ? APR_FPROT_GREAD : 0);
}

static apr_status_t write_key(const char *path, const void *data,
                              apr_size_t len, int sealed, long gid,
                              int durable, apr_pool_t *p)
{
    return (durable ? cs_file_write_new : cs_file_write_new_unsynced)(
               path, data, len, key_perms(sealed, gid), sealed ? gid : -1, p);
}

/* The serial a link in ddir names, or NULL if there is no such link or it
 * does not name a serial (never trust what is on disk as a path). */
static const char *link_serial(const char *ddir, const char *name,
                               apr_pool_t *p)
{
    char buf[CS_LAYOUT_SERIAL_MAX + 2];
    ssize_t n;
    const char *path = apr_pstrcat(p, ddir, "/", name, NULL);

    /* The target's bytes as readlink() gives them (what csy_dyn.c's
     * reader checks too): a serial, never a path ('/', "..") and never
     * longer than one (a longer target fills buf). */
    n = readlink(path, buf, sizeof(buf));
    if (n <= 0 || (apr_size_t)n >= sizeof(buf)
        || !cs_layout_serial_ok(buf, (apr_size_t)n)) {
        return NULL;
    }
    return apr_pstrmemdup(p, buf, (apr_size_t)n);
}

/* Like link_serial, but only if the version directory exists. */
static const char *link_version(const char *ddir, const char *name,
                                apr_pool_t *p)
{
    const char *serial = link_serial(ddir, name, p);

    if (serial && !is_dir(apr_pstrcat(p, ddir, "/", serial, NULL), p)) {
        return NULL;
    }
    return serial;
}

/* Point ddir/name at serial in one rename(), durably unless the caller
 * makes the whole batch durable (csy_store_sync). */
static apr_status_t link_set_ex(const char *ddir, const char *name,
                                const char *serial, int durable,
                                apr_pool_t *p)
{
    const char *tmp = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    for (i = 0; i < CSY_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        tmp = cs_file_tmp_path(ddir, p);
        rv = symlink(serial, tmp) == 0 ? APR_SUCCESS
                                       : APR_FROM_OS_ERROR(errno);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_file_rename(tmp, apr_pstrcat(p, ddir, "/", name, NULL), p);
    if (rv != APR_SUCCESS) {
        apr_file_remove(tmp, p);
        return rv;
    }
    return durable ? cs_file_sync_dir(ddir) : APR_SUCCESS;
}

static apr_status_t link_set(const char *ddir, const char *name,
                             const char *serial, apr_pool_t *p)
{
    return link_set_ex(ddir, name, serial, 1, p);
}

static const char *domain_dir(const csy_store_t *store, const char *domain,
                              apr_pool_t *p)
{
    return cs_layout_path(p, store->dir, domain, NULL, NULL);
}

static void prune_note(csy_store_t *store, const char *domain);

/* ------------------------------------------------------------------ */
/* Public API                                                          */

apr_status_t csy_write_atomic(const char *path, const void *data,
                              apr_size_t len, apr_fileperms_t perms,
                              apr_pool_t *p)
{
    return cs_file_write_atomic(path, data, len, perms, p);
}

apr_status_t csy_store_read_file(char **buf, apr_size_t *len, apr_pool_t *p,
                                 const char *path)
{
    return cs_file_read(buf, len, p, path, CSY_READ_MAX);
}

apr_status_t csy_store_open(csy_store_t **pstore, apr_pool_t *p,
                            const char *dir)
{
    csy_store_t *store;
    apr_finfo_t fi;
    apr_status_t rv;
    const char *parent;
    char *abs, *trim;
    apr_size_t len;

    *pstore = NULL;
    if (dir == NULL || *dir == '\0') {
        return APR_EINVAL;
    }
    /* Absolute, because the manifest's paths are used from elsewhere. */
    rv = apr_filepath_merge(&abs, NULL, dir, 0, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    trim = abs;
    len = strlen(trim);
    while (len > 1 && trim[len - 1] == '/') {
        trim[--len] = '\0';
    }
    /* The store's path ends up in the manifest's certdirs and, through
     * mod_macro_gen, in httpd's configuration. */
    if (cs_manifest_certdir_check(p, trim, strlen(trim), 0) != NULL) {
        return APR_EINVAL;
    }

    /* The store itself may be a symlink (to another disk), so stat(). */
    rv = apr_stat(&fi, trim, APR_FINFO_TYPE | APR_FINFO_PROT, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        rv = apr_dir_make_recursive(trim, CSY_PERMS_DIR, p);
        if (rv == APR_SUCCESS) {
            rv = apr_file_perms_set(trim, CSY_PERMS_DIR);
        }
        if (rv == APR_SUCCESS
            && cs_file_parent(&parent, trim, p) == APR_SUCCESS) {
            rv = cs_file_sync_dir(parent);
        }
        if (rv == APR_SUCCESS) {
            rv = apr_stat(&fi, trim, APR_FINFO_TYPE | APR_FINFO_PROT, p);
        }
    }
    if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
        return rv;
    }
    if (fi.filetype != APR_DIR) {
        return APR_ENOTDIR;
    }
    /* Anyone could swap the symlinks the root-run reader follows. */
    if (fi.protection & APR_FPROT_WWRITE) {
        return APR_EACCES;
    }

    store = apr_pcalloc(p, sizeof(*store));
    store->pool = p;
    store->envelope_gid = -1;
    store->dir = trim;
    store->live = cs_layout_path(p, trim, NULL, NULL, NULL);
    rv = cs_file_ensure_dir(store->live, store->dir, CSY_PERMS_DIR, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *pstore = store;
    return APR_SUCCESS;
}

void csy_store_set_log(csy_store_t *store, cs_log_fn *log, void *baton)
{
    store->log = log;
    store->log_baton = baton;
}

void csy_store_set_envelope_group(csy_store_t *store, long gid)
{
    store->envelope_gid = gid;
}

const char *csy_store_dir(const csy_store_t *store)
{
    return store->dir;
}

/* Write one complete version into a fresh private directory under ddir;
 * it becomes readable (CSY_PERMS_DIR) only once complete. */
static apr_status_t build_version(const char **pdir, const char *ddir,
                                  const char *chain_pem, const void *key,
                                  apr_size_t key_len, int key_is_envelope,
                                  const void *seal, apr_size_t seal_len,
                                  long gid, int durable, apr_pool_t *p)
{
    const char *dir = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    *pdir = NULL;
    for (i = 0; i < CSY_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        dir = cs_file_tmp_path(ddir, p);
        rv = apr_dir_make(dir, CSY_PERMS_BUILD, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *pdir = dir;
    rv = (durable ? cs_file_write_new : cs_file_write_new_unsynced)(
             apr_pstrcat(p, dir, "/" CS_LAYOUT_CHAIN, NULL), chain_pem,
             strlen(chain_pem), CSY_PERMS_PUBLIC, -1, p);
    if (rv == APR_SUCCESS) {
        rv = write_key(apr_pstrcat(p, dir, "/", key_is_envelope
                                   ? CS_LAYOUT_ENVELOPE : CS_LAYOUT_KEY, NULL),
                       key, key_len, key_is_envelope, gid, durable, p);
    }
    if (rv == APR_SUCCESS && seal && key_is_envelope) {
        /* Optional: without it the workers open key.cms (and count it),
         * so a failure to write it does not stop the install. */
        const char *spath = apr_pstrcat(p, dir, "/" CS_LAYOUT_SEAL, NULL);
        if (write_key(spath, seal, seal_len, 1, gid, durable, p)
            != APR_SUCCESS) {
            apr_file_remove(spath, p);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_perms_set(dir, CSY_PERMS_DIR);
    }
    if (rv == APR_SUCCESS && durable) {
        rv = cs_file_sync_dir(dir);
    }
    return rv;
}

apr_status_t csy_store_install(csy_store_t *store, apr_pool_t *p,
                               const char *domain, const char *serial,
                               const char *chain_pem, const void *key,
                               apr_size_t key_len, int key_is_envelope)
{
    return csy_store_install_sealed(store, p, domain, serial, chain_pem, key,
                                    key_len, key_is_envelope, NULL, 0);
}

/*
 * Everything of an install but the switch of current: the new version
 * complete under its serial, previous on the old current.  *pending: 0 if
 * serial is current already (nothing was done).  durable: every step
 * synced; else the caller makes the batch durable (csy_store_sync) before
 * it switches.
 */
static apr_status_t put_version(int *pending, csy_store_t *store,
                                apr_pool_t *p, const char *domain,
                                const char *serial, const char *chain_pem,
                                const void *key, apr_size_t key_len,
                                int key_is_envelope, const void *seal,
                                apr_size_t seal_len, int durable)
{
    const char *ddir, *cur, *prev, *target, *tmpdir, *trash = NULL;
    apr_filetype_e type;
    apr_status_t rv;

    *pending = 0;

    if (!csy_store_domain_ok(domain) || !valid_serial(serial)
        || chain_pem == NULL
        || *chain_pem == '\0' || key == NULL || key_len == 0) {
        return APR_EINVAL;
    }
    ddir = domain_dir(store, domain, p);
    rv = durable ? cs_file_ensure_dir(ddir, store->live, CSY_PERMS_DIR, p)
                 : cs_file_ensure_dir_unsynced(ddir, CSY_PERMS_DIR, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    cur = link_version(ddir, CS_LAYOUT_CURRENT, p);
    if (cur && strcmp(cur, serial) == 0) {
        return APR_SUCCESS;
    }

    rv = build_version(&tmpdir, ddir, chain_pem, key, key_len,
                       key_is_envelope, seal, seal_len, store->envelope_gid,
                       durable, p);
    if (rv != APR_SUCCESS) {
        if (tmpdir) {
            cs_file_remove_tree(tmpdir, CSY_RM_DEPTH, p);
        }
        return rv;
    }

    /* previous -> old current before anything else moves, so that
     * whatever happens next the rollback target exists, and so that the
     * directory about to be replaced below is referenced by nothing. */
    prev = link_serial(ddir, CS_LAYOUT_PREVIOUS, p);
    if (cur && (prev == NULL || strcmp(prev, cur) != 0)) {
        rv = link_set_ex(ddir, CS_LAYOUT_PREVIOUS, cur, durable, p);
    }
    else if (!cur && prev && strcmp(prev, serial) == 0) {
        rv = apr_file_remove(apr_pstrcat(p, ddir, "/" CS_LAYOUT_PREVIOUS,
                                         NULL), p);
        if (rv == APR_SUCCESS && durable) {
            rv = cs_file_sync_dir(ddir);
        }
    }

    /* A directory by this name is left over from an earlier install (or a
     * crash): rename() cannot replace a non-empty directory, so move it
     * aside; prune removes it if we die before we do. */
    target = apr_pstrcat(p, ddir, "/", serial, NULL);
    if (rv == APR_SUCCESS && cs_file_type(&type, target, p)) {
        /* Staged: previous may have named it until just now; that change
         * must be on disk before the directory is replaced by one whose
         * files are not yet. */
        if (!durable && prev && strcmp(prev, serial) == 0) {
            rv = cs_file_sync_dir(ddir);
        }
        trash = cs_file_tmp_path(ddir, p);
        if (rv == APR_SUCCESS) {
            rv = apr_file_rename(target, trash, p);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_rename(tmpdir, target, p);
    }
    if (rv == APR_SUCCESS && durable) {
        rv = cs_file_sync_dir(ddir);
    }
    if (rv != APR_SUCCESS) {
        cs_file_remove_tree(tmpdir, CSY_RM_DEPTH, p);
        return rv;
    }
    if (trash) {
        cs_file_remove_tree(trash, CSY_RM_DEPTH, p);
    }
    *pending = 1;
    return APR_SUCCESS;
}

apr_status_t csy_store_install_sealed(csy_store_t *store, apr_pool_t *p,
                                      const char *domain, const char *serial,
                                      const char *chain_pem, const void *key,
                                      apr_size_t key_len, int key_is_envelope,
                                      const void *seal, apr_size_t seal_len)
{
    apr_status_t rv;
    int pending;

    rv = put_version(&pending, store, p, domain, serial, chain_pem, key,
                     key_len, key_is_envelope, seal, seal_len, 1);
    if (rv != APR_SUCCESS || !pending) {
        return rv;
    }
    /* The switch: one rename() of a symlink. */
    rv = link_set(domain_dir(store, domain, p), CS_LAYOUT_CURRENT, serial,
                  p);
    if (rv == APR_SUCCESS) {
        prune_note(store, domain);
    }
    return rv;
}

apr_status_t csy_store_stage(int *pending, csy_store_t *store,
                             apr_pool_t *p, const char *domain,
                             const char *serial, const char *chain_pem,
                             const void *key, apr_size_t key_len,
                             int key_is_envelope, const void *seal,
                             apr_size_t seal_len)
{
    return put_version(pending, store, p, domain, serial, chain_pem, key,
                       key_len, key_is_envelope, seal, seal_len, 0);
}

apr_status_t csy_store_sync(csy_store_t *store)
{
    return cs_file_sync_fs(store->dir);
}

apr_status_t csy_store_switch_bare(csy_store_t *store, apr_pool_t *p,
                                   const char *domain, const char *serial)
{
    const char *ddir;

    if (!csy_store_domain_ok(domain) || !valid_serial(serial)) {
        return APR_EINVAL;
    }
    ddir = domain_dir(store, domain, p);
    /* Only to a version that exists: current never dangles. */
    if (!is_dir(apr_pstrcat(p, ddir, "/", serial, NULL), p)) {
        return APR_ENOENT;
    }
    return link_set_ex(ddir, CS_LAYOUT_CURRENT, serial, 0, p);
}

apr_status_t csy_store_switch(csy_store_t *store, apr_pool_t *p,
                              const char *domain, const char *serial)
{
    apr_status_t rv = csy_store_switch_bare(store, p, domain, serial);

    if (rv == APR_SUCCESS) {
        prune_note(store, domain);
    }
    return rv;
}


apr_status_t csy_store_add_seal(csy_store_t *store, apr_pool_t *p,
                                const char *domain, const char *serial,
                                const void *seal, apr_size_t seal_len)
{
    const char *vdir, *path;

    if (!csy_store_domain_ok(domain) || !valid_serial(serial) || seal == NULL
        || seal_len == 0) {
        return APR_EINVAL;
    }
    vdir = csy_store_version_dir(store, p, domain, serial);
    path = cs_layout_path(p, store->dir, domain, serial, CS_LAYOUT_SEAL);
    if (!is_dir(vdir, p)) {
        return APR_ENOENT;
    }
    /* A reader sees no key.seal or a whole one. */
    return cs_file_replace(vdir, path, seal, seal_len,
                           key_perms(1, store->envelope_gid),
                           store->envelope_gid, p);
}

apr_status_t csy_store_rollback(csy_store_t *store, apr_pool_t *p,
                                const char *domain)
{
    const char *ddir, *cur, *prev;
    apr_status_t rv;

    if (!csy_store_domain_ok(domain)) {
        return APR_EINVAL;
    }
    ddir = domain_dir(store, domain, p);
    cur = link_version(ddir, CS_LAYOUT_CURRENT, p);
    prev = link_version(ddir, CS_LAYOUT_PREVIOUS, p);
    if (prev == NULL || (cur && strcmp(cur, prev) == 0)) {
        return APR_NOTFOUND;
    }
    /* current first: a crash between the two leaves the rollback done and
     * both links on the same complete version, never a dangling one. */
    rv = link_set(ddir, CS_LAYOUT_CURRENT, prev, p);
    if (rv == APR_SUCCESS) {
        prune_note(store, domain);
    }
    if (rv == APR_SUCCESS && cur) {
        rv = link_set(ddir, CS_LAYOUT_PREVIOUS, cur, p);
    }
    return rv;
}

apr_status_t csy_store_unserve(csy_store_t *store, apr_pool_t *p,
                               const char *domain)
{
    apr_array_header_t *served, *keep;
    csy_served_t *sv;
    apr_status_t rv;
    int i;

    if (csy_store_rollback(store, p, domain) == APR_SUCCESS) {
        return APR_SUCCESS;
    }
    if ((rv = csy_store_served_open(&sv, store, p)) == APR_SUCCESS) {
        csy_served_remove(sv, domain);
        return csy_served_write(sv, p);
    }
    if (rv != APR_INCOMPLETE) {
        return rv;
    }
    /* With skipped lines (APR_INCOMPLETE, logged) the other domains are
     * still the list: the rewrite leaves the bad lines out, as every
     * manifest write does. */
    rv = csy_store_manifest_read(&served, store, p);
    if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
        return rv;
    }
    keep = apr_array_make(p, served->nelts, sizeof(const char *));
    for (i = 0; i < served->nelts; i++) {
        const char *x = APR_ARRAY_IDX(served, i, const char *);

        if (strcmp(x, domain) != 0) {
            APR_ARRAY_PUSH(keep, const char *) = x;
        }
    }
    return csy_store_manifest_write(store, p, keep);
}

const char *csy_store_current(csy_store_t *store, apr_pool_t *p,
                              const char *domain)
{
    if (!csy_store_domain_ok(domain)) {
        return NULL;
    }
    return link_version(domain_dir(store, domain, p), CS_LAYOUT_CURRENT, p);
}

const char *csy_store_version_dir(const csy_store_t *store, apr_pool_t *p,
                                  const char *domain, const char *serial)
{
    return cs_layout_path(p, store->dir, domain, serial, NULL);
}

const char *csy_store_current_dir(csy_store_t *store, apr_pool_t *p,
                                  const char *domain)
{
    if (csy_store_current(store, p, domain) == NULL) {
        return NULL;
    }
    return cs_layout_path(p, store->dir, domain, CS_LAYOUT_CURRENT, NULL);
}

/* Remove the .tmp- entries in dir that a crash left behind and, if
 * versions, the versions that neither cur nor prev names.  Unknown names
 * are left alone: the store deletes only what it made. */
static apr_status_t prune_entries(const char *dir, int versions,
                                  const char *cur, const char *prev,
                                  apr_pool_t *p)
{
    apr_array_header_t *names;
    apr_status_t rv, rv2;
    const char *name;
    int i, removed = 0;

    rv = cs_file_list_dir(&names, dir, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        name = APR_ARRAY_IDX(names, i, const char *);
        if (cs_file_is_tmp(name)
            || (versions && valid_serial(name)
                && !(cur && strcmp(name, cur) == 0)
                && !(prev && strcmp(name, prev) == 0))) {
            rv = cs_file_remove_tree(apr_pstrcat(p, dir, "/", name, NULL),
                             CSY_RM_DEPTH, p);
            removed = 1;
        }
    }
    if (removed) {
        rv2 = cs_file_sync_dir(dir);
        if (rv == APR_SUCCESS) {
            rv = rv2;
        }
    }
    return rv;
}

/* Remove the versions of one domain that nothing points to, and temp
 * entries. */
static apr_status_t prune_domain(const char *ddir, apr_pool_t *p)
{
    apr_filetype_e type;

    if (!cs_file_type(&type, ddir, p)) {
        return APR_SUCCESS;
    }
    if (type != APR_DIR) {
        return APR_ENOTDIR;
    }
    return prune_entries(ddir, 1, link_serial(ddir, CS_LAYOUT_CURRENT, p),
                         link_serial(ddir, CS_LAYOUT_PREVIOUS, p), p);
}

/* Remove the .tmp- entries in dir (the store's root: cursor, manifest). */
static apr_status_t prune_tmp(const char *dir, apr_pool_t *p)
{
    return prune_entries(dir, 0, NULL, NULL, p);
}

/* A domain's directory out of the served set in one rename(), so that a
 * crash halfway through the removal leaves only a temp entry. */
static apr_status_t remove_domain(csy_store_t *store, const char *name,
                                  apr_pool_t *p)
{
    const char *to = cs_file_tmp_path(store->live, p);
    apr_status_t rv = apr_file_rename(domain_dir(store, name, p), to, p);

    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        rv = cs_file_sync_dir(store->live);
    }
    if (rv == APR_SUCCESS) {
        rv = cs_file_remove_tree(to, CSY_RM_DEPTH, p);
    }
    return rv;
}

apr_status_t csy_store_prune_settle(csy_store_t *store, apr_pool_t *p,
                                    const char *domain)
{
    csy_served_t *sv;
    apr_status_t rv;

    if (!csy_store_domain_ok(domain)) {
        return APR_EINVAL;
    }
    if ((rv = csy_store_served_open(&sv, store, p)) != APR_SUCCESS) {
        return rv;      /* removes nothing the manifest may still list */
    }
    if (csy_served_has(sv, domain)) {
        return prune_domain(domain_dir(store, domain, p), p);
    }
    return remove_domain(store, domain, p);
}

apr_status_t csy_store_remove(csy_store_t *store, apr_pool_t *p,
                              const char *domain)
{
    if (!csy_store_domain_ok(domain)) {
        return APR_EINVAL;
    }
    return remove_domain(store, domain, p);
}

/*
 * The whole store's prune, in steps (csy_store_prune_begin).  keep: the
 * manifest when the pass began, mapped (the file a later write renames
 * over stays as it was while mapped), or NULL: no domain directory is
 * removed; made: the domains made current since, which the snapshot
 * cannot list; dir: live/, read an entry at a time across the steps.
 */
struct csy_prune_t {
    csy_store_t *store;
    apr_pool_t *pool;
    apr_pool_t *sub;            /* one entry's allocations */
    csy_served_t *keep;
    apr_hash_t *made;
    apr_dir_t *dir;
    apr_status_t damaged;       /* APR_INCOMPLETE: a skipped line */
    apr_status_t rv;            /* the pass's outcome, once done */
    int done;
    long checked;               /* domain directories looked at */
    long removed;               /* ... removed (not in the manifest) */
};

static int kept(const csy_prune_t *pr, const char *name)
{
    return csy_served_has(pr->keep, name)
           || apr_hash_get(pr->made, name, APR_HASH_KEY_STRING) != NULL;
}

/* A domain made current: a pass under way must not take it for a
 * deleted one because the manifest it began with did not list it. */
static void prune_note(csy_store_t *store, const char *domain)
{
    csy_prune_t *pr = store->prune;

    /* Without a snapshot the pass removes no domain, so it needs no
     * notes: a cold sync of 1,000,000 domains into an empty store took
     * 70 bytes of the daemon's heap a domain for them. */
    if (pr && !pr->done && pr->keep
        && !apr_hash_get(pr->made, domain, APR_HASH_KEY_STRING)) {
        apr_hash_set(pr->made, apr_pstrdup(pr->pool, domain),
                     APR_HASH_KEY_STRING, "");
    }
}

void csy_store_prune_keep(csy_store_t *store, const char *domain)
{
    prune_note(store, domain);
}

static apr_status_t prune_cleanup(void *data)
{
    csy_prune_t *pr = data;

    if (pr->store->prune == pr) {
        pr->store->prune = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t csy_store_prune_begin(csy_prune_t **ppr, csy_store_t *store,
                                   apr_pool_t *p)
{
    apr_filetype_e type;
    apr_status_t rv;
    apr_pool_t *pp;
    csy_prune_t *pr;

    *ppr = NULL;
    apr_pool_create(&pp, p);
    pr = apr_pcalloc(pp, sizeof(*pr));
    pr->store = store;
    pr->pool = pp;
    pr->made = apr_hash_make(pp);
    apr_pool_create(&pr->sub, pp);

    /* Domains are removed only against a manifest that exists and is
     * whole: without one (never written) nothing says what is unused, and
     * a line that was skipped may be a domain still served (old versions
     * are pruned all the same; the status says why the domains were
     * not). */
    if (cs_file_type(&type, cs_layout_top(pp, store->dir,
                                          CS_LAYOUT_MANIFEST), pp)) {
        /* Mapped, not read into memory: 1,000,000 names were 100 MB of
         * the daemon's heap for the whole pass.  A manifest not in the
         * sorted form is rewritten in it first (csy_store_served_open). */
        pr->damaged = csy_store_served_open(&pr->keep, store, pp);
        if (pr->damaged != APR_SUCCESS && pr->damaged != APR_INCOMPLETE) {
            rv = pr->damaged;
            apr_pool_destroy(pp);
            return rv;
        }
        if (pr->damaged != APR_SUCCESS) {
            pr->keep = NULL;
        }
        if (pr->damaged != APR_SUCCESS && store->log) {
            store->log(store->log_baton, CS_LOG_WARN,
                       apr_psprintf(pp, "%s has skipped lines: no domain "
                                    "directory is removed until it is "
                                    "whole again",
                                    csy_store_manifest_path(store, pp)));
        }
    }
    if ((rv = apr_dir_open(&pr->dir, store->live, pp)) != APR_SUCCESS) {
        apr_pool_destroy(pp);
        return rv;
    }
    store->prune = pr;
    apr_pool_cleanup_register(pp, pr, prune_cleanup, apr_pool_cleanup_null);
    *ppr = pr;
    return APR_SUCCESS;
}

/* One entry of live/, as the whole prune treats it. */
static apr_status_t prune_one(csy_prune_t *pr, const char *name)
{
    csy_store_t *store = pr->store;
    apr_pool_t *sub = pr->sub;
    apr_status_t rv;

    apr_pool_clear(sub);
    if (cs_file_is_tmp(name)) {
        return cs_file_remove_tree(apr_pstrcat(sub, store->live, "/", name,
                                               NULL), CSY_RM_DEPTH, sub);
    }
    if (!csy_store_domain_ok(name)
        || !is_dir(domain_dir(store, name, sub), sub)) {
        return APR_SUCCESS;     /* not ours */
    }
    pr->checked++;
    if (pr->keep && !kept(pr, name)) {
        rv = remove_domain(store, name, sub);
        pr->removed += rv == APR_SUCCESS;
        return rv;
    }
    return prune_domain(domain_dir(store, name, sub), sub);
}

apr_status_t csy_store_prune_step(csy_prune_t *pr,
                                  apr_interval_time_t budget)
{
    csy_store_t *store = pr->store;
    apr_time_t until;
    apr_finfo_t fi;
    apr_status_t rv, rv2;

    if (pr->done) {
        return pr->rv;
    }
    until = budget < 0 ? 0 : apr_time_now() + budget;
    for (;;) {
        rv = apr_dir_read(&fi, APR_FINFO_NAME, pr->dir);
        if (APR_STATUS_IS_ENOENT(rv)) {
            rv = APR_SUCCESS;   /* the end of the listing */
            break;
        }
        if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
            break;
        }
        if (!strcmp(fi.name, ".") || !strcmp(fi.name, "..")) {
            continue;
        }
        if ((rv = prune_one(pr, fi.name)) != APR_SUCCESS) {
            break;
        }
        if (until && apr_time_now() >= until) {
            return APR_EAGAIN;
        }
    }
    /* The end of the pass, or its first error: the rest as before. */
    apr_dir_close(pr->dir);
    pr->dir = NULL;
    apr_pool_clear(pr->sub);
    rv2 = cs_file_sync_dir(store->live);
    if (rv == APR_SUCCESS) {
        rv = rv2;
    }
    rv2 = prune_tmp(store->dir, pr->sub);
    if (rv == APR_SUCCESS) {
        rv = rv2;
    }
    pr->done = 1;
    pr->rv = rv == APR_SUCCESS ? pr->damaged : rv;
    prune_cleanup(pr);
    return pr->rv;
}

void csy_store_prune_counts(const csy_prune_t *pr, long *checked,
                            long *removed)
{
    *checked = pr->checked;
    *removed = pr->removed;
}

void csy_store_prune_end(csy_prune_t *pr)
{
    if (pr) {
        apr_pool_destroy(pr->pool);
    }
}

apr_status_t csy_store_prune(csy_store_t *store, apr_pool_t *p,
                             const char *domain)
{
    csy_prune_t *pr, *outer;
    apr_status_t rv;

    if (domain) {
        if (!csy_store_domain_ok(domain)) {
            return APR_EINVAL;
        }
        return prune_domain(domain_dir(store, domain, p), p);
    }
    /* The whole store in one step.  A pass under way (the start's, in
     * steps) gets its registration back after: what is made current
     * later must still reach it. */
    outer = store->prune;
    if ((rv = csy_store_prune_begin(&pr, store, p)) != APR_SUCCESS) {
        store->prune = outer;
        return rv;
    }
    rv = csy_store_prune_step(pr, -1);
    csy_store_prune_end(pr);
    store->prune = outer;
    return rv;
}
