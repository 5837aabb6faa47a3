/*
 * csy_store.h: mod_certsync's local certificate store on disk.
 *
 * Pure code: APR only, no httpd types.  Every write is atomic and durable:
 * temp file, fsync, rename, fsync of the directory.  A kill -9 at any
 * point leaves every domain with a matching certificate and key (the old
 * pair or the new one), and the next run converges.
 *
 * The layout (live/DOMAIN/SERIAL/, the current and previous links, the
 * file names, manifest, cursor) is lib/cs_layout.h; the durable-write and
 * bounded-read primitives are lib/cs_file.h; the manifest's grammar is
 * lib/cs_manifest.h.  This API says how the store changes.  Directories
 * are 0755 (created if missing) because httpd's parent reads the chains
 * and, in dynamic mode, the workers look versions up; fullchain.pem is
 * 0644; privkey.pem (vhost mode) 0600; key.cms and key.seal (dynamic
 * mode) 0600, or 0640 with csy_store_set_envelope_group.  state.json and
 * the other state files of the glue are written with csy_write_atomic.
 *
 * Switching a domain is one rename() of a new symlink over `current`, so a
 * reader always sees a complete version.  Versions other than current and
 * previous are removed by csy_store_prune().  Temp entries are named
 * .tmp-* and sit beside their target.
 *
 * DOMAIN and SERIAL must have been validated by the caller (normalised
 * domain names; hex serials): they become path components.  The store
 * checks them again (cs_name_check in lower case; 1 to 64 hex digits) and
 * answers APR_EINVAL.
 *
 * One writer at a time (the sync process): there is no lock, and prune
 * removes temp entries that a concurrent install would still be using.
 */
#ifndef CSY_STORE_H
#define CSY_STORE_H

#include <apr_file_info.h>
#include <apr_pools.h>
#include <apr_time.h>
#include <apr_tables.h>

#include "cs_log.h"
#include "cs_manifest.h"

typedef struct csy_store_t csy_store_t;

/**
 * Open (creating the directories if needed) the store at dir, made
 * absolute.  APR_EINVAL if the path has characters that would need quoting
 * in httpd's configuration (space, control, quotes, '\\', '$'),
 * APR_EACCES if the directory is world-writable, APR_ENOTDIR if it or
 * live/ is not a directory (live/ must not be a symlink).
 */
apr_status_t csy_store_open(csy_store_t **store, apr_pool_t *p,
                            const char *dir);

/**
 * Write a file atomically and durably with exactly perms (APR_FPROT_*
 * read/write/execute bits only, else APR_EINVAL; the umask does not
 * apply): a .tmp-* file beside path, written, synced, renamed over path,
 * and the directory synced.  cs_file_write_atomic under the store's name.
 */
apr_status_t csy_write_atomic(const char *path, const void *data,
                              apr_size_t len, apr_fileperms_t perms,
                              apr_pool_t *p);

/** The saved cursor (0 if none; APR_EINVAL if the file is not "N\n"). */
apr_status_t csy_store_cursor_get(long long *seq, csy_store_t *store,
                                  apr_pool_t *p);
/** Save the cursor durably; call only after the data it covers is. */
apr_status_t csy_store_cursor_set(csy_store_t *store, long long seq,
                                  apr_pool_t *p);

/**
 * Install a new version of a domain and make it current; the old current
 * becomes previous.  key is the private key PEM (vhost mode; written
 * 0600) or, with key_is_envelope, the DER envelope (written as key.cms).
 * Installing the serial that is already current is a no-op.
 */
apr_status_t csy_store_install(csy_store_t *store, apr_pool_t *p,
                               const char *domain, const char *serial,
                               const char *chain_pem, const void *key,
                               apr_size_t key_len, int key_is_envelope);

/** The same, with key.seal beside key.cms (seal from cs_seal(); ignored
 *  without key_is_envelope): written with key.cms's permissions. */
apr_status_t csy_store_install_sealed(csy_store_t *store, apr_pool_t *p,
                                      const char *domain, const char *serial,
                                      const char *chain_pem, const void *key,
                                      apr_size_t key_len, int key_is_envelope,
                                      const void *seal, apr_size_t seal_len);

/*
 * A batch of installs with one sync instead of six per install (a cold
 * sync of 100,000 domains):
 *
 *   csy_store_stage()  for each bundle: the new version complete under
 *                      its serial, previous on the old current, current
 *                      unchanged; nothing synced.  Safe from several
 *                      threads at once for different domains.
 *   csy_store_sync()   everything durable (one syncfs()).
 *   csy_store_switch() for each staged one: current to the new version.
 *   csy_store_sync()   the links durable; only then the manifest and the
 *                      cursor that count on them.
 *
 * A kill -9 (or a power loss) anywhere leaves every domain on a complete
 * version: current only ever moves to a version synced before, and a
 * staged version that never became current is replaced by the next
 * install of its serial or removed by csy_store_prune.
 */

/** Stage one install; *pending 0: serial is current already (no-op). */
apr_status_t csy_store_stage(int *pending, csy_store_t *store,
                             apr_pool_t *p, const char *domain,
                             const char *serial, const char *chain_pem,
                             const void *key, apr_size_t key_len,
                             int key_is_envelope, const void *seal,
                             apr_size_t seal_len);

/** Make everything the store has written durable (cs_file_sync_fs). */
apr_status_t csy_store_sync(csy_store_t *store);

/** Make a staged version current (not synced: csy_store_sync after the
 *  batch); APR_ENOENT if the version does not exist. */
apr_status_t csy_store_switch(csy_store_t *store, apr_pool_t *p,
                              const char *domain, const char *serial);

/** csy_store_switch() without telling a prune in progress that the
 *  domain is served: for a thread other than the one that runs the
 *  store's prune and its other calls, which then calls
 *  csy_store_prune_keep() itself.  Safe from several threads at once for
 *  different domains (the sync daemon's page commits). */
apr_status_t csy_store_switch_bare(csy_store_t *store, apr_pool_t *p,
                                   const char *domain, const char *serial);

/** A whole file of the store (at most 1 MiB), NUL-terminated, from p;
 *  APR_ENOENT if it does not exist (cs_file_read's other errors). */
apr_status_t csy_store_read_file(char **buf, apr_size_t *len, apr_pool_t *p,
                                 const char *path);

/** Add key.seal to an installed version (one written before the daemon
 *  wrote them); APR_ENOENT if there is no such version. */
apr_status_t csy_store_add_seal(csy_store_t *store, apr_pool_t *p,
                                const char *domain, const char *serial,
                                const void *seal, apr_size_t seal_len);

/** Make previous current again (rollback); APR_NOTFOUND if none. */
apr_status_t csy_store_rollback(csy_store_t *store, apr_pool_t *p,
                                const char *domain);

/**
 * A rollout's rollback of domain: previous becomes current again
 * (csy_store_rollback); a domain that has nothing to go back to (new in
 * the rollout) leaves the manifest instead, so that the next restart does
 * not serve it.  Returns the error of that manifest write (or read): the
 * caller must say that the next restart may still serve the domain.
 */
apr_status_t csy_store_unserve(csy_store_t *store, apr_pool_t *p,
                               const char *domain);

/** The serial that is current for domain (NULL if none). */
const char *csy_store_current(csy_store_t *store, apr_pool_t *p,
                              const char *domain);

/** Path of one version's directory ("DIR/live/DOMAIN/SERIAL"), whether
 * or not it exists. */
const char *csy_store_version_dir(const csy_store_t *store, apr_pool_t *p,
                                  const char *domain, const char *serial);

/** Path of the current version's directory ("DIR/live/DOMAIN/current"),
 * NULL if the domain has no current version. */
const char *csy_store_current_dir(csy_store_t *store, apr_pool_t *p,
                                  const char *domain);

/** The manifest's path (STORE/manifest). */
const char *csy_store_manifest_path(const csy_store_t *store, apr_pool_t *p);

/**
 * A reader over the manifest (lib/cs_manifest.h: cs_manifest_next), for a
 * caller that goes through it once without keeping it: certdirs come
 * back absolute.  APR_ENOENT if there is none yet; APR_EINVAL with *why
 * if it is refused as a whole.
 */
apr_status_t csy_store_manifest_open(cs_manifest_reader_t **r,
                                     const char **why, csy_store_t *store,
                                     apr_pool_t *p);

/**
 * The whole manifest in memory (lib/cs_manifest.h): entries and the lines that
 * were skipped, for a caller that reports them.  None yet: no entries,
 * APR_SUCCESS.  Refused as a whole (another version, not a manifest):
 * APR_EINVAL, *why says why.  Unreadable: that error.  *pm is always set.
 */
apr_status_t csy_store_manifest_load(cs_manifest_t **pm, const char **why,
                                     csy_store_t *store, apr_pool_t *p);

/**
 * The servable domains (array of const char *, lower case) read from the
 * manifest; empty if there is none yet.  The one policy for bad lines
 * (docs/manifest.md): a malformed line or a repeated domain is skipped;
 * the others are returned, with APR_INCOMPLETE instead of APR_SUCCESS so
 * that the caller knows the list is not the whole manifest
 * (csy_store_manifest_load says which lines and why; the next
 * csy_store_manifest_write leaves them out).  APR_EINVAL if the first line
 * is neither the v1 nor the v2 header; *domains is then empty.
 */
apr_status_t csy_store_manifest_read(apr_array_header_t **domains,
                                     csy_store_t *store, apr_pool_t *p);

/**
 * Write the manifest for domains (array of const char *, each with a
 * current version; others are left out), sorted, atomically, a line at a
 * time (version 2: certdirs relative to the store).
 */
apr_status_t csy_store_manifest_write(csy_store_t *store, apr_pool_t *p,
                                      const apr_array_header_t *domains);

/*
 * The servable set as a sync cycle changes it, without reading the
 * manifest: the file is mapped and looked up by binary search
 * (cs_manifest_sorted_find), the cycle's additions and removals are kept
 * beside it, and csy_served_write writes the new manifest as a copy of the
 * old one's bytes with those lines put in or left out (memory: the
 * changes; CPU: k binary searches and a copy), only when the set changed.
 *
 * The store handle remembers the manifest it last checked or wrote (its
 * inode, size, times): a cycle that finds that file again trusts it
 * (a stat); any other file (a daemon's start, a manifest from an older
 * version, one another program wrote) is checked once, in one pass.  One
 * that is not in the sorted form but reads whole (a version 1 manifest,
 * names out of order) is rewritten in it at once, the same domains; one
 * with skipped lines (csy_store_manifest_read: APR_INCOMPLETE) or refused
 * (APR_EINVAL) is refused again, without reading it, until it changes.
 */
typedef struct csy_served_t csy_served_t;

/** The servable set of the manifest as it is now (none yet: empty);
 *  errors as csy_store_manifest_read's. */
apr_status_t csy_store_served_open(csy_served_t **sv, csy_store_t *store,
                                   apr_pool_t *p);
/** Is domain (lower case) servable, with the changes so far? */
int csy_served_has(const csy_served_t *sv, const char *domain);
/** Add domain (which has a current version); 1 if it was not servable. */
int csy_served_add(csy_served_t *sv, const char *domain);
/** Take domain out; 1 if it was servable. */
int csy_served_remove(csy_served_t *sv, const char *domain);
/** Does the set differ from the manifest on disk? */
int csy_served_dirty(const csy_served_t *sv);
/**
 * Write the manifest with the changes (atomically, durably; nothing if
 * none), then go on from the new one.  On error the changes stay, for
 * the next call.  APR_EINVAL if an added name is not a store domain.
 */
apr_status_t csy_served_write(csy_served_t *sv, apr_pool_t *p);

/**
 * The servable domains of entries from to from + max - 1 of the manifest,
 * in its order (array of const char *), for a pass over every domain in
 * slices (the key.seal backfill): the file mapped, not read whole.
 * *end: no entry after them.  Errors as csy_store_served_open's.
 */
apr_status_t csy_store_manifest_slice(apr_array_header_t **domains,
                                      int *end, csy_store_t *store,
                                      apr_pool_t *p, int from, int max);

/**
 * A domain both removed and made current in one cycle (deleted and added
 * again, or the other way round): the manifest, written by now, decides.
 * Listed: its unused versions go (csy_store_prune with domain); not
 * listed: its directory (csy_store_remove).  A lookup, not a walk.
 */
apr_status_t csy_store_prune_settle(csy_store_t *store, apr_pool_t *p,
                                    const char *domain);

/**
 * With a domain: remove its versions other than current and previous, and
 * the .tmp-* entries a crash left in its directory.  With NULL: that for
 * every domain, the .tmp-* entries of the store and of live/, and the
 * directories of domains not in the manifest (only if a manifest has been
 * written, and only if it has no skipped line: else no domain is removed
 * and, the rest done, APR_INCOMPLETE is returned).  Call it with NULL only
 * once the manifest it goes by has been activated (after the graceful
 * restart), since until then httpd's configuration may still name those
 * files.
 */
apr_status_t csy_store_prune(csy_store_t *store, apr_pool_t *p,
                             const char *domain);

/**
 * The prune of the whole store (csy_store_prune with NULL) in steps, so
 * that a large store does not hold up the sync: at 1,000,000 domains the
 * walk of every domain directory takes minutes.
 *
 * csy_store_prune_begin takes the manifest as it is now as the list of
 * domains to keep (the one the running configuration was built from:
 * call it where csy_store_prune(NULL) would be called) and opens live/.
 * Each csy_store_prune_step then goes through live/'s entries for about
 * budget (at least one entry; a negative budget: to the end) and returns
 * APR_EAGAIN while entries remain; at the end, the pass's outcome as
 * csy_store_prune's (APR_SUCCESS, APR_INCOMPLETE, or the first error,
 * which ends the pass), and again on every later call.
 *
 * Between steps the store may change (sync cycles), on the same thread
 * as the steps, never during one.  A domain made current since the pass
 * began (install, switch, rollback) is kept by it even if the manifest
 * of the beginning does not list it; one taken out of the manifest since
 * stays until the next pass (vhost mode serves it until the restart).
 * Each removal is crash-safe as csy_store_prune's: a pass abandoned at
 * any point (csy_store_prune_end, an exit, kill -9) leaves the store as
 * a whole prune stopped there would.  The pass belongs to a pool made
 * from p; csy_store_prune_end frees it (at most one pass at a time).
 */
typedef struct csy_prune_t csy_prune_t;

apr_status_t csy_store_prune_begin(csy_prune_t **pr, csy_store_t *store,
                                   apr_pool_t *p);
apr_status_t csy_store_prune_step(csy_prune_t *pr,
                                  apr_interval_time_t budget);
/** Domain directories the pass has looked at, and removed, so far. */
void csy_store_prune_counts(const csy_prune_t *pr, long *checked,
                            long *removed);
void csy_store_prune_end(csy_prune_t *pr);

/**
 * Tells the pass under way, if any, that domain is served now although
 * the manifest it began with may not list it (a bundle a cycle found
 * already current on disk and puts back in the manifest: the daemon
 * stopped after switching it, before the manifest said so).  Install,
 * switch and rollback tell it themselves.  The sync process's main
 * thread only.
 */
void csy_store_prune_keep(csy_store_t *store, const char *domain);

/**
 * Envelopes (key.cms, key.seal) installed from now on belong to group gid and are
 * readable by it (0640): in dynamic mode the workers, running as that
 * group, read them and decrypt in memory.  -1 (the default): 0600.
 * Plaintext keys (privkey.pem) are always 0600.
 */
void csy_store_set_envelope_group(csy_store_t *store, long gid);

/**
 * Remove a domain's directory, every version (dynamic mode, where nothing
 * in httpd's configuration names the files: once the manifest no longer
 * lists the domain).  A domain without a directory is not an error.
 */
apr_status_t csy_store_remove(csy_store_t *store, apr_pool_t *p,
                              const char *domain);

/**
 * Where the store reports what it skips (the manifest's bad lines, a
 * prune that removed no domain because of them), at CS_LOG_WARN, once per
 * read.  NULL (the default): the caller learns it from the return values
 * (APR_INCOMPLETE) and csy_store_manifest_load.
 */
void csy_store_set_log(csy_store_t *store, cs_log_fn *log, void *baton);

/** The store directory. */
const char *csy_store_dir(const csy_store_t *store);

#endif /* CSY_STORE_H */
