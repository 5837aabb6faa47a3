/*
 * cs_file.h: the suite's file primitives: a bounded whole-file read, and a
 * durable write beside the target then renamed over it.
 *
 * Pure code: APR and POSIX (Unix only: fsync() of directories, fchown),
 * no httpd types.  Every writer of the certsync store and its state files
 * uses these, and every reader of a certificate, key, envelope, manifest
 * or cursor reads through cs_file_read.
 *
 * Durability: a new file is written, fsync()ed, renamed, and the directory
 * fsync()ed, so a crash leaves the old file or the whole new one.  Temp
 * entries are named CS_FILE_TMP_PREFIX + 16 hex digits and sit beside
 * their target, so that whoever owns the directory can remove what a crash
 * left (cs_file_is_tmp).
 */
#ifndef CS_FILE_H
#define CS_FILE_H

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_pools.h>
#include <apr_tables.h>

#define CS_FILE_TMP_PREFIX  ".tmp-"

/**
 * A whole regular file of at most max bytes, NUL-terminated (the NUL not
 * counted in *len), from p.  Opened with O_CLOEXEC and closed before the
 * return; nothing is registered with p, so this is cheap enough for a TLS
 * handshake.
 * @return APR_SUCCESS; APR_ENOENT if it does not exist; APR_EINVAL if it
 *         is not a regular file; APR_FROM_OS_ERROR(EFBIG) if it is larger
 *         than max; APR_EAGAIN if its size changed while it was read (it
 *         is being written in place); another open or read error.
 */
apr_status_t cs_file_read(char **buf, apr_size_t *len, apr_pool_t *p,
                          const char *path, apr_size_t max);

/**
 * Replace path by a file holding data, atomically and durably, with
 * exactly perms (APR_FPROT_* read/write/execute bits only, else
 * APR_EINVAL; the umask does not apply).
 */
apr_status_t cs_file_write_atomic(const char *path, const void *data,
                                  apr_size_t len, apr_fileperms_t perms,
                                  apr_pool_t *p);

/** Writes a file's contents to f (cs_file_write_atomic_fn). */
typedef apr_status_t cs_file_fill_fn(apr_file_t *f, void *baton);

/**
 * cs_file_write_atomic for contents too large to hold in memory: fill
 * writes them to a buffered temp file (created with exactly perms) that
 * is then flushed, synced and renamed over path.  If fill fails, nothing
 * is left behind and its error is returned.
 */
apr_status_t cs_file_write_atomic_fn(const char *path, apr_fileperms_t perms,
                                     cs_file_fill_fn *fill, void *baton,
                                     apr_pool_t *p);

/**
 * The same in a directory the caller knows (dir is path's parent), and
 * with gid >= 0 the new file's group (it is created, chowned and chmoded
 * before a byte is written).
 */
apr_status_t cs_file_replace(const char *dir, const char *path,
                             const void *data, apr_size_t len,
                             apr_fileperms_t perms, long gid,
                             apr_pool_t *p);

/**
 * Create path, which must not exist, write data, sync it; perms and gid
 * as for cs_file_replace.  On failure nothing is left behind.  For files
 * in a directory that becomes visible only once complete.
 */
apr_status_t cs_file_write_new(const char *path, const void *data,
                               apr_size_t len, apr_fileperms_t perms,
                               long gid, apr_pool_t *p);

/**
 * The same without the sync, for a batch of files that the caller makes
 * durable at once (cs_file_sync_fs) before anything refers to them.
 */
apr_status_t cs_file_write_new_unsynced(const char *path, const void *data,
                                        apr_size_t len,
                                        apr_fileperms_t perms, long gid,
                                        apr_pool_t *p);

/**
 * Make everything written to the file system that holds dir durable: one
 * syncfs() on Linux (sync() elsewhere).  Cheaper than one fsync() per
 * file and directory of a batch; it also flushes other writers' data on
 * that file system.
 */
apr_status_t cs_file_sync_fs(const char *dir);

/** dir/CS_FILE_TMP_PREFIX + 16 random hex digits (a name, not a file). */
const char *cs_file_tmp_path(const char *dir, apr_pool_t *p);

/** Whether a directory entry's name is a temp entry. */
int cs_file_is_tmp(const char *name);

/** Make a rename, mkdir or unlink in dir durable (fsync of dir). */
apr_status_t cs_file_sync_dir(const char *dir);

/** The directory of path ("." or "/" at the top); APR_EINVAL if path ends
 *  with '/'. */
apr_status_t cs_file_parent(const char **parent, const char *path,
                            apr_pool_t *p);

/** The type of path itself (symlinks not followed); 0 if it does not
 *  exist (*type is then APR_NOFILE). */
int cs_file_type(apr_filetype_e *type, const char *path, apr_pool_t *p);

/** Make dir (a real directory, not a symlink) exist with exactly perms;
 *  a new one is made durable in parent.  APR_ENOTDIR if something else
 *  has the name. */
apr_status_t cs_file_ensure_dir(const char *dir, const char *parent,
                                apr_fileperms_t perms, apr_pool_t *p);

/** The same without syncing parent (see cs_file_write_new_unsynced). */
apr_status_t cs_file_ensure_dir_unsynced(const char *dir,
                                         apr_fileperms_t perms,
                                         apr_pool_t *p);

/** The names in dir (array of const char *), without "." and "..". */
apr_status_t cs_file_list_dir(apr_array_header_t **names, const char *dir,
                              apr_pool_t *p);

/** Remove path and everything below it, at most depth levels down, never
 *  following a symlink.  A path that does not exist is not an error. */
apr_status_t cs_file_remove_tree(const char *path, int depth,
                                 apr_pool_t *p);

#endif /* CS_FILE_H */
