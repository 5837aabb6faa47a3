/*
 * cs_file.c: bounded whole-file reads and durable atomic writes.  See
 * cs_file.h.
 *
 * Unix only: durability needs fsync() of directories and the exact mode
 * needs fchmod(), neither of which APR offers; reads use open/fstat/read
 * so that nothing is registered with the caller's pool (the dynamic-mode
 * certificate callback reads with a short-lived unmanaged pool).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_file.h"

/* Tries at a fresh temp name: the names are random, so a collision means
 * something else is wrong. */
#define CS_FILE_TMP_TRIES   16

static apr_status_t os_error(void)
{
    return APR_FROM_OS_ERROR(errno);
}

apr_status_t cs_file_read(char **pbuf, apr_size_t *plen, apr_pool_t *p,
                          const char *path, apr_size_t max)
{
    struct stat st;
    apr_size_t size, got = 0;
    apr_status_t rv = APR_SUCCESS;
    ssize_t n;
    char *buf;
    int fd;

    *pbuf = NULL;
    *plen = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return os_error();
    }
    if (fstat(fd, &st) != 0) {
        rv = os_error();
    }
    else if (!S_ISREG(st.st_mode)) {
        rv = APR_EINVAL;
    }
    else if (st.st_size < 0 || (apr_uint64_t)st.st_size > (apr_uint64_t)max) {
        rv = APR_FROM_OS_ERROR(EFBIG);
    }
    if (rv != APR_SUCCESS) {
        close(fd);
        return rv;
    }
    size = (apr_size_t)st.st_size;
    /* One byte more than the size, to notice a file that grew. */
    buf = apr_palloc(p, size + 2);
    for (;;) {
        n = read(fd, buf + got, size + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rv = os_error();
            break;
        }
        if (n == 0 || (got += (apr_size_t)n) > size) {
            break;
        }
    }
    close(fd);
    if (rv == APR_SUCCESS && got != size) {
        rv = APR_EAGAIN;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    buf[got] = '\0';
    *pbuf = buf;
    *plen = got;
    return APR_SUCCESS;
}

/* APR_FPROT_* bits are not mode bits; only rwx is accepted, so a caller
 * cannot ask for set-id bits or APR_FPROT_OS_DEFAULT by accident. */
static apr_status_t perms_mode(mode_t *mode, apr_fileperms_t perms)
{
    static const struct {
        apr_fileperms_t perm;
        mode_t mode;
    } bits[] = {
        { APR_FPROT_UREAD, S_IRUSR }, { APR_FPROT_UWRITE, S_IWUSR },
        { APR_FPROT_UEXECUTE, S_IXUSR }, { APR_FPROT_GREAD, S_IRGRP },
        { APR_FPROT_GWRITE, S_IWGRP }, { APR_FPROT_GEXECUTE, S_IXGRP },
        { APR_FPROT_WREAD, S_IROTH }, { APR_FPROT_WWRITE, S_IWOTH },
        { APR_FPROT_WEXECUTE, S_IXOTH }
    };
    apr_fileperms_t known = 0;
    apr_size_t i;

    *mode = 0;
    for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        known |= bits[i].perm;
        if (perms & bits[i].perm) {
            *mode |= bits[i].mode;
        }
    }
    return (perms & ~known) ? APR_EINVAL : APR_SUCCESS;
}

/* The suffix only avoids collisions; O_EXCL, mkdir and symlink refusing an
 * existing name is what makes it safe. */
const char *cs_file_tmp_path(const char *dir, apr_pool_t *p)
{
    static apr_uint32_t counter;
    unsigned char rnd[8];
    apr_uint64_t fallback;
    apr_status_t rv = APR_ENOTIMPL;
    int i;

#if APR_HAS_RANDOM
    rv = apr_generate_random_bytes(rnd, sizeof(rnd));
#endif
    if (rv != APR_SUCCESS) {
        fallback = (apr_uint64_t)apr_time_now()
                   ^ ((apr_uint64_t)getpid() << 32) ^ ++counter;
        for (i = 0; i < 8; i++) {
            rnd[i] = (unsigned char)(fallback >> (8 * i));
        }
    }
    return apr_psprintf(p, "%s/" CS_FILE_TMP_PREFIX
                        "%02x%02x%02x%02x%02x%02x%02x%02x", dir,
                        rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
                        rnd[6], rnd[7]);
}

int cs_file_is_tmp(const char *name)
{
    return strncmp(name, CS_FILE_TMP_PREFIX,
                   sizeof(CS_FILE_TMP_PREFIX) - 1) == 0;
}

apr_status_t cs_file_sync_dir(const char *dir)
{
    apr_status_t rv = APR_SUCCESS;
    int fd;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return os_error();
    }
    if (fsync(fd) != 0) {
        rv = os_error();
    }
    close(fd);
    /* Some file systems cannot sync a directory at all; their renames are
     * as durable as they will ever be. */
    return rv == APR_FROM_OS_ERROR(EINVAL) ? APR_SUCCESS : rv;
}

apr_status_t cs_file_parent(const char **parent, const char *path,
                            apr_pool_t *p)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        *parent = ".";
    }
    else if (slash == path) {
        *parent = "/";
    }
    else {
        *parent = apr_pstrmemdup(p, path, slash - path);
    }
    return slash && slash[1] == '\0' ? APR_EINVAL : APR_SUCCESS;
}

static apr_status_t write_new(const char *path, const void *data,
                              apr_size_t len, apr_fileperms_t perms,
                              long gid, int sync, apr_pool_t *p)
{
    apr_file_t *f;
    apr_os_file_t fd;
    apr_status_t rv, rv2;
    mode_t mode;

    rv = perms_mode(&mode, perms);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_file_open(&f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                       | APR_FOPEN_EXCL | APR_FOPEN_BINARY,
                       perms & ~(APR_FPROT_GREAD | APR_FPROT_GWRITE
                                 | APR_FPROT_GEXECUTE), p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* The group first, then the mode: a group-readable file is never
     * readable by the wrong group.  The umask may have taken bits away (a
     * chain must stay readable) and the mode is part of the contract, so
     * it is set exactly. */
    rv = apr_os_file_get(&fd, f);
    if (rv == APR_SUCCESS && gid >= 0
        && fchown(fd, (uid_t)-1, (gid_t)gid) != 0) {
        rv = os_error();
    }
    if (rv == APR_SUCCESS && fchmod(fd, mode) != 0) {
        rv = os_error();
    }
    if (rv == APR_SUCCESS && len > 0) {
        rv = apr_file_write_full(f, data, len, NULL);
    }
    if (rv == APR_SUCCESS && sync) {
        rv = apr_file_sync(f);
    }
    rv2 = apr_file_close(f);
    if (rv == APR_SUCCESS) {
        rv = rv2;
    }
    if (rv != APR_SUCCESS) {
        apr_file_remove(path, p);
    }
    return rv;
}

apr_status_t cs_file_write_new(const char *path, const void *data,
                               apr_size_t len, apr_fileperms_t perms,
                               long gid, apr_pool_t *p)
{
    return write_new(path, data, len, perms, gid, 1, p);
}

apr_status_t cs_file_write_new_unsynced(const char *path, const void *data,
                                        apr_size_t len,
                                        apr_fileperms_t perms, long gid,
                                        apr_pool_t *p)
{
    return write_new(path, data, len, perms, gid, 0, p);
}

apr_status_t cs_file_sync_fs(const char *dir)
{
#ifdef __linux__
    apr_status_t rv = APR_SUCCESS;
    int fd;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return os_error();
    }
    /* Since Linux 5.8 it also reports a writeback error of any file of
     * the file system since fd was opened. */
    if (syncfs(fd) != 0) {
        rv = os_error();
    }
    close(fd);
    return rv;
#else
    (void)dir;
    sync();
    return APR_SUCCESS;
#endif
}

apr_status_t cs_file_replace(const char *dir, const char *path,
                             const void *data, apr_size_t len,
                             apr_fileperms_t perms, long gid,
                             apr_pool_t *p)
{
    const char *tmp = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    for (i = 0; i < CS_FILE_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        tmp = cs_file_tmp_path(dir, p);
        rv = cs_file_write_new(tmp, data, len, perms, gid, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;      /* nothing left behind: write_new removes it */
    }
    rv = apr_file_rename(tmp, path, p);
    if (rv != APR_SUCCESS) {
        apr_file_remove(tmp, p);
        return rv;
    }
    return cs_file_sync_dir(dir);
}

apr_status_t cs_file_write_atomic(const char *path, const void *data,
                                  apr_size_t len, apr_fileperms_t perms,
                                  apr_pool_t *p)
{
    const char *dir;
    apr_status_t rv;
    mode_t mode;

    if (path == NULL || *path == '\0' || (data == NULL && len > 0)
        || perms_mode(&mode, perms) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    rv = cs_file_parent(&dir, path, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return cs_file_replace(dir, path, data, len, perms, -1, p);
}

/* cs_file_write_new for a fill function, buffered. */
static apr_status_t write_new_fn(const char *path, mode_t mode,
                                 apr_fileperms_t perms, cs_file_fill_fn *fill,
                                 void *baton, apr_pool_t *p)
{
    apr_file_t *f;
    apr_os_file_t fd;
    apr_status_t rv, rv2;

    rv = apr_file_open(&f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                       | APR_FOPEN_EXCL | APR_FOPEN_BINARY
                       | APR_FOPEN_BUFFERED, perms, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_os_file_get(&fd, f);
    if (rv == APR_SUCCESS && fchmod(fd, mode) != 0) {
        rv = os_error();
    }
    if (rv == APR_SUCCESS) {
        rv = fill(f, baton);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_flush(f);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_sync(f);
    }
    rv2 = apr_file_close(f);
    if (rv == APR_SUCCESS) {
        rv = rv2;
    }
    if (rv != APR_SUCCESS) {
        apr_file_remove(path, p);
    }
    return rv;
}

apr_status_t cs_file_write_atomic_fn(const char *path, apr_fileperms_t perms,
                                     cs_file_fill_fn *fill, void *baton,
                                     apr_pool_t *p)
{
    const char *dir, *tmp = NULL;
    apr_status_t rv = APR_EEXIST;
    mode_t mode;
    int i;

    if (path == NULL || *path == '\0' || fill == NULL
        || perms_mode(&mode, perms) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if ((rv = cs_file_parent(&dir, path, p)) != APR_SUCCESS) {
        return rv;
    }
    rv = APR_EEXIST;
    for (i = 0; i < CS_FILE_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        tmp = cs_file_tmp_path(dir, p);
        rv = write_new_fn(tmp, mode, perms, fill, baton, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_file_rename(tmp, path, p);
    if (rv != APR_SUCCESS) {
        apr_file_remove(tmp, p);
        return rv;
    }
    return cs_file_sync_dir(dir);
}

int cs_file_type(apr_filetype_e *type, const char *path, apr_pool_t *p)
{
    apr_finfo_t fi;

    if (apr_stat(&fi, path, APR_FINFO_LINK | APR_FINFO_TYPE, p)
        != APR_SUCCESS) {
        *type = APR_NOFILE;
        return 0;
    }
    *type = fi.filetype;
    return 1;
}

apr_status_t cs_file_ensure_dir_unsynced(const char *dir,
                                         apr_fileperms_t perms,
                                         apr_pool_t *p)
{
    apr_filetype_e type;
    apr_status_t rv;

    if (cs_file_type(&type, dir, p)) {
        return type == APR_DIR ? APR_SUCCESS : APR_ENOTDIR;
    }
    rv = apr_dir_make(dir, perms, p);
    /* Another thread of a batch may have made it meanwhile. */
    if (APR_STATUS_IS_EEXIST(rv)) {
        return cs_file_type(&type, dir, p) && type == APR_DIR
               ? APR_SUCCESS : APR_ENOTDIR;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return apr_file_perms_set(dir, perms);
}

apr_status_t cs_file_ensure_dir(const char *dir, const char *parent,
                                apr_fileperms_t perms, apr_pool_t *p)
{
    apr_filetype_e type;
    apr_status_t rv;

    if (cs_file_type(&type, dir, p)) {
        return type == APR_DIR ? APR_SUCCESS : APR_ENOTDIR;
    }
    rv = apr_dir_make(dir, perms, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* mkdir honours the umask; readers need exactly these bits. */
    rv = apr_file_perms_set(dir, perms);
    if (rv == APR_SUCCESS) {
        rv = cs_file_sync_dir(parent);
    }
    return rv;
}

apr_status_t cs_file_list_dir(apr_array_header_t **names, const char *dir,
                              apr_pool_t *p)
{
    apr_dir_t *d;
    apr_finfo_t fi;
    apr_status_t rv;

    *names = apr_array_make(p, 8, sizeof(const char *));
    rv = apr_dir_open(&d, dir, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    for (;;) {
        rv = apr_dir_read(&fi, APR_FINFO_NAME, d);
        if (APR_STATUS_IS_ENOENT(rv)) {
            rv = APR_SUCCESS;
            break;
        }
        if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
            break;
        }
        if (strcmp(fi.name, ".") && strcmp(fi.name, "..")) {
            APR_ARRAY_PUSH(*names, const char *) = apr_pstrdup(p, fi.name);
        }
    }
    apr_dir_close(d);
    return rv;
}

apr_status_t cs_file_remove_tree(const char *path, int depth, apr_pool_t *p)
{
    apr_array_header_t *names;
    apr_filetype_e type;
    apr_status_t rv;
    int i;

    if (!cs_file_type(&type, path, p)) {
        return APR_SUCCESS;
    }
    if (type != APR_DIR) {
        return apr_file_remove(path, p);
    }
    if (depth <= 0) {
        return APR_EINVAL;     /* deeper than the caller's own trees */
    }
    rv = cs_file_list_dir(&names, path, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        rv = cs_file_remove_tree(apr_pstrcat(p, path, "/",
                                             APR_ARRAY_IDX(names, i,
                                                           const char *),
                                             NULL), depth - 1, p);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_dir_remove(path, p);
    }
    return rv;
}
