/*
 * csy_store.c: mod_certsync's local certificate store on disk.  See
 * csy_store.h.
 *
 * Unix only: versions are switched with symlinks, and durability needs
 * fsync() of directories, neither of which APR offers; those few calls are
 * POSIX.  Everything else goes through APR.
 *
 * The store has one writer (the sync process); readers (httpd's parent at
 * startup, the dynamic-mode certificate callback) only ever follow
 * live/DOMAIN/current, which always names a complete version.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "csy_store.h"

#define CSY_TMP_PREFIX      ".tmp-"
#define CSY_CURRENT         "current"
#define CSY_PREVIOUS        "previous"
#define CSY_CHAIN           "fullchain.pem"
#define CSY_KEY             "privkey.pem"
#define CSY_ENVELOPE        "key.cms"
#define CSY_SEAL            "key.seal"
/* Files of a version (chain, envelope) are small. */
#define CSY_READ_MAX        (1024 * 1024)
#define CSY_CURSOR          "cursor"
#define CSY_MANIFEST        "manifest"
#define CSY_MANIFEST_HEADER "# certsync manifest v1"

#define CSY_DOMAIN_MAX      253     /* a DNS name */
#define CSY_SERIAL_MAX      64      /* X.509 allows 20 octets: 40 digits */
#define CSY_MANIFEST_MAX    (64 * 1024 * 1024)
#define CSY_TMP_TRIES       16
#define CSY_RM_DEPTH        4       /* live/.tmp-X/SERIAL/file is enough */

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

struct csy_store_t {
    apr_pool_t *pool;
    const char *dir;            /* absolute, no trailing '/' */
    const char *live;           /* dir/live */
    long envelope_gid;          /* group that may read key.cms; -1: none */
};

/* ------------------------------------------------------------------ */
/* Names: everything that becomes a path component is checked here.   */

static int valid_domain(const char *name)
{
    apr_size_t i, len;
    char ch;

    if (name == NULL) {
        return 0;
    }
    len = strlen(name);
    if (len == 0 || len > CSY_DOMAIN_MAX) {
        return 0;
    }
    /* No leading dot: it would hide the directory and could collide with
     * our own .tmp- names; no "..": never a parent directory. */
    if (name[0] == '.' || name[len - 1] == '.' || strstr(name, "..")) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
              || ch == '.' || ch == '-' || ch == '*')) {
            return 0;
        }
    }
    return 1;
}

static int valid_serial(const char *serial)
{
    apr_size_t i, len;
    char ch;

    if (serial == NULL) {
        return 0;
    }
    len = strlen(serial);
    if (len == 0 || len > CSY_SERIAL_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        ch = serial[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')
              || (ch >= 'A' && ch <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* The store path ends up in the manifest and, through mod_macro_gen, in
 * httpd's configuration: keep to characters that need no quoting there. */
static int valid_store_path(const char *path)
{
    const unsigned char *s;

    for (s = (const unsigned char *)path; *s; s++) {
        /* The manifest's certdir rules (docs/manifest.md): the path
         * ends up in httpd's configuration. */
        if (*s <= 0x20 || *s >= 0x7f || *s == '"' || *s == '\''
            || *s == '\\' || *s == '$' || *s == '<' || *s == '>') {
            return 0;
        }
    }
    return 1;
}

static int is_tmp_name(const char *name)
{
    return strncmp(name, CSY_TMP_PREFIX, sizeof(CSY_TMP_PREFIX) - 1) == 0;
}

/* ------------------------------------------------------------------ */
/* File system helpers                                                 */

static apr_status_t os_error(void)
{
    return APR_FROM_OS_ERROR(errno);
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

/* dir/.tmp-<16 hex digits>.  The suffix only avoids collisions; O_EXCL,
 * mkdir and symlink refusing an existing name is what makes it safe. */
static const char *tmp_path(const char *dir, apr_pool_t *p)
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
    return apr_psprintf(p, "%s/" CSY_TMP_PREFIX
                        "%02x%02x%02x%02x%02x%02x%02x%02x", dir,
                        rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
                        rnd[6], rnd[7]);
}

/* Make a rename or unlink in dir durable. */
static apr_status_t sync_dir(const char *dir)
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

static apr_status_t parent_dir(const char **parent, const char *path,
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

/* Create path (which must not exist), write it fully with exactly perms,
 * and sync it.  On failure nothing is left behind. */
static apr_status_t write_new(const char *path, const void *data,
                              apr_size_t len, apr_fileperms_t perms,
                              apr_pool_t *p)
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
                       | APR_FOPEN_EXCL | APR_FOPEN_BINARY, perms, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* The umask may have taken bits away (a chain must stay readable) and
     * the mode is part of the contract, so set it exactly. */
    rv = apr_os_file_get(&fd, f);
    if (rv == APR_SUCCESS && fchmod(fd, mode) != 0) {
        rv = os_error();
    }
    if (rv == APR_SUCCESS && len > 0) {
        rv = apr_file_write_full(f, data, len, NULL);
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

/* A key file: never readable by others; a sealed one (useless without the
 * wrapping key) readable by the workers' group in dynamic mode. */
static apr_status_t write_key(const char *path, const void *data,
                              apr_size_t len, int sealed, long gid,
                              apr_pool_t *p)
{
    apr_status_t rv = write_new(path, data, len, CSY_PERMS_SECRET, p);

    if (rv == APR_SUCCESS && sealed && gid >= 0) {
        if (chown(path, (uid_t)-1, (gid_t)gid) != 0) {
            rv = APR_FROM_OS_ERROR(errno);
        }
        else {
            rv = apr_file_perms_set(path, CSY_PERMS_SECRET | APR_FPROT_GREAD);
        }
        if (rv != APR_SUCCESS) {
            apr_file_remove(path, p);
        }
    }
    return rv;
}

/* Read a whole (small) file; APR_ENOENT if it does not exist. */
static apr_status_t read_all(char **pbuf, apr_size_t *plen,
                             const char *path, apr_size_t max,
                             apr_pool_t *p)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_size_t got = 0;
    char *buf;

    *pbuf = NULL;
    *plen = 0;
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY,
                       APR_FPROT_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_file_info_get(&fi, APR_FINFO_SIZE | APR_FINFO_TYPE, f);
    if (rv == APR_SUCCESS
        && (fi.filetype != APR_REG || fi.size < 0
            || (apr_size_t)fi.size > max)) {
        rv = APR_EINVAL;
    }
    if (rv == APR_SUCCESS) {
        /* One byte more than the size, to notice a file that grew. */
        buf = apr_palloc(p, (apr_size_t)fi.size + 2);
        rv = apr_file_read_full(f, buf, (apr_size_t)fi.size + 1, &got);
        if (rv == APR_EOF && got == (apr_size_t)fi.size) {
            rv = APR_SUCCESS;
        }
        else if (rv == APR_SUCCESS) {
            rv = APR_EINVAL;
        }
        if (rv == APR_SUCCESS) {
            buf[got] = '\0';
            *pbuf = buf;
            *plen = got;
        }
    }
    apr_file_close(f);
    return rv;
}

apr_status_t csy_store_read_file(char **buf, apr_size_t *len, apr_pool_t *p,
                                 const char *path)
{
    return read_all(buf, len, path, CSY_READ_MAX, p);
}

static int lstat_type(apr_filetype_e *type, const char *path, apr_pool_t *p)
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

static int is_dir(const char *path, apr_pool_t *p)
{
    apr_filetype_e type;

    return lstat_type(&type, path, p) && type == APR_DIR;
}

/* Make dir (a real directory, not a symlink) exist with CSY_PERMS_DIR;
 * a new one is made durable in its parent. */
static apr_status_t ensure_dir(const char *dir, const char *parent,
                               apr_pool_t *p)
{
    apr_filetype_e type;
    apr_status_t rv;

    if (lstat_type(&type, dir, p)) {
        return type == APR_DIR ? APR_SUCCESS : APR_ENOTDIR;
    }
    rv = apr_dir_make(dir, CSY_PERMS_DIR, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* mkdir honours the umask; readers need exactly these bits. */
    rv = apr_file_perms_set(dir, CSY_PERMS_DIR);
    if (rv == APR_SUCCESS) {
        rv = sync_dir(parent);
    }
    return rv;
}

/* The names in dir, except "." and "..". */
static apr_status_t list_dir(apr_array_header_t **names, const char *dir,
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

/* Remove path and everything below it, never following a symlink. */
static apr_status_t remove_tree(const char *path, int depth, apr_pool_t *p)
{
    apr_array_header_t *names;
    apr_filetype_e type;
    apr_status_t rv;
    int i;

    if (!lstat_type(&type, path, p)) {
        return APR_SUCCESS;
    }
    if (type != APR_DIR) {
        return apr_file_remove(path, p);
    }
    if (depth <= 0) {
        return APR_EINVAL;     /* deeper than anything the store makes */
    }
    rv = list_dir(&names, path, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        rv = remove_tree(apr_pstrcat(p, path, "/",
                                     APR_ARRAY_IDX(names, i, const char *),
                                     NULL), depth - 1, p);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_dir_remove(path, p);
    }
    return rv;
}

/* The serial a link in ddir names, or NULL if there is no such link or it
 * does not name a serial (never trust what is on disk as a path). */
static const char *link_serial(const char *ddir, const char *name,
                               apr_pool_t *p)
{
    char buf[CSY_SERIAL_MAX + 2];
    ssize_t n;
    const char *path = apr_pstrcat(p, ddir, "/", name, NULL);

    n = readlink(path, buf, sizeof(buf));
    if (n <= 0 || (apr_size_t)n >= sizeof(buf)) {
        return NULL;
    }
    buf[n] = '\0';
    return valid_serial(buf) ? apr_pstrdup(p, buf) : NULL;
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

/* Point ddir/name at serial in one rename(), durably. */
static apr_status_t link_set(const char *ddir, const char *name,
                             const char *serial, apr_pool_t *p)
{
    const char *tmp = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    for (i = 0; i < CSY_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        tmp = tmp_path(ddir, p);
        rv = symlink(serial, tmp) == 0 ? APR_SUCCESS : os_error();
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_file_rename(tmp, apr_pstrcat(p, ddir, "/", name, NULL), p);
    if (rv != APR_SUCCESS) {
        apr_file_remove(tmp, p);
        return rv;
    }
    return sync_dir(ddir);
}

static const char *domain_dir(const csy_store_t *store, const char *domain,
                              apr_pool_t *p)
{
    return apr_pstrcat(p, store->live, "/", domain, NULL);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

/* Replaces path (in dir) by a new file: written beside it, then renamed,
 * so that a reader sees the old file or the whole new one.  gid >= 0:
 * a secret file readable by that group (write_key). */
static apr_status_t replace_file(const char *dir, const char *path,
                                 const void *data, apr_size_t len,
                                 apr_fileperms_t perms, long gid,
                                 apr_pool_t *p)
{
    const char *tmp = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    for (i = 0; i < CSY_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        tmp = tmp_path(dir, p);
        rv = gid >= 0 ? write_key(tmp, data, len, 1, gid, p)
                      : write_new(tmp, data, len, perms, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;      /* nothing of ours left: write_new removes it */
    }
    rv = apr_file_rename(tmp, path, p);
    if (rv != APR_SUCCESS) {
        apr_file_remove(tmp, p);
        return rv;
    }
    return sync_dir(dir);
}

apr_status_t csy_write_atomic(const char *path, const void *data,
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
    rv = parent_dir(&dir, path, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return replace_file(dir, path, data, len, perms, -1, p);
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
    if (!valid_store_path(trim)) {
        return APR_EINVAL;
    }

    /* The store itself may be a symlink (to another disk), so stat(). */
    rv = apr_stat(&fi, trim, APR_FINFO_TYPE | APR_FINFO_PROT, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        rv = apr_dir_make_recursive(trim, CSY_PERMS_DIR, p);
        if (rv == APR_SUCCESS) {
            rv = apr_file_perms_set(trim, CSY_PERMS_DIR);
        }
        if (rv == APR_SUCCESS && parent_dir(&parent, trim, p) == APR_SUCCESS) {
            rv = sync_dir(parent);
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
    store->live = apr_pstrcat(p, trim, "/live", NULL);
    rv = ensure_dir(store->live, store->dir, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *pstore = store;
    return APR_SUCCESS;
}

void csy_store_set_envelope_group(csy_store_t *store, long gid)
{
    store->envelope_gid = gid;
}

const char *csy_store_dir(const csy_store_t *store)
{
    return store->dir;
}

apr_status_t csy_store_cursor_get(long long *seq, csy_store_t *store,
                                  apr_pool_t *p)
{
    apr_status_t rv;
    apr_size_t len, i;
    long long value = 0;
    char *buf;

    *seq = 0;
    rv = read_all(&buf, &len, apr_pstrcat(p, store->dir, "/" CSY_CURSOR,
                                          NULL), 64, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* Exactly what cursor_set writes: digits and a newline.  Anything else
     * is not ours, and guessing could skip changes. */
    if (len < 2 || buf[len - 1] != '\n') {
        return APR_EINVAL;
    }
    for (i = 0; i < len - 1; i++) {
        if (buf[i] < '0' || buf[i] > '9'
            || value > (APR_INT64_MAX - (buf[i] - '0')) / 10) {
            return APR_EINVAL;
        }
        value = value * 10 + (buf[i] - '0');
    }
    *seq = value;
    return APR_SUCCESS;
}

apr_status_t csy_store_cursor_set(csy_store_t *store, long long seq,
                                  apr_pool_t *p)
{
    const char *text;

    if (seq < 0) {
        return APR_EINVAL;
    }
    text = apr_psprintf(p, "%" APR_INT64_T_FMT "\n", (apr_int64_t)seq);
    return csy_write_atomic(apr_pstrcat(p, store->dir, "/" CSY_CURSOR, NULL),
                            text, strlen(text), CSY_PERMS_PUBLIC, p);
}


/* Write one complete version into a fresh private directory under ddir;
 * it becomes readable (CSY_PERMS_DIR) only once complete. */
static apr_status_t build_version(const char **pdir, const char *ddir,
                                  const char *chain_pem, const void *key,
                                  apr_size_t key_len, int key_is_envelope,
                                  const void *seal, apr_size_t seal_len,
                                  long gid, apr_pool_t *p)
{
    const char *dir = NULL;
    apr_status_t rv = APR_EEXIST;
    int i;

    *pdir = NULL;
    for (i = 0; i < CSY_TMP_TRIES && APR_STATUS_IS_EEXIST(rv); i++) {
        dir = tmp_path(ddir, p);
        rv = apr_dir_make(dir, CSY_PERMS_BUILD, p);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *pdir = dir;
    rv = write_new(apr_pstrcat(p, dir, "/" CSY_CHAIN, NULL), chain_pem,
                   strlen(chain_pem), CSY_PERMS_PUBLIC, p);
    if (rv == APR_SUCCESS) {
        rv = write_key(apr_pstrcat(p, dir, "/", key_is_envelope
                                   ? CSY_ENVELOPE : CSY_KEY, NULL),
                       key, key_len, key_is_envelope, gid, p);
    }
    if (rv == APR_SUCCESS && seal && key_is_envelope) {
        /* Optional: without it the workers open key.cms (and count it),
         * so a failure to write it does not stop the install. */
        const char *spath = apr_pstrcat(p, dir, "/" CSY_SEAL, NULL);
        if (write_key(spath, seal, seal_len, 1, gid, p) != APR_SUCCESS) {
            apr_file_remove(spath, p);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_perms_set(dir, CSY_PERMS_DIR);
    }
    if (rv == APR_SUCCESS) {
        rv = sync_dir(dir);
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

apr_status_t csy_store_install_sealed(csy_store_t *store, apr_pool_t *p,
                                      const char *domain, const char *serial,
                                      const char *chain_pem, const void *key,
                                      apr_size_t key_len, int key_is_envelope,
                                      const void *seal, apr_size_t seal_len)
{
    const char *ddir, *cur, *prev, *target, *tmpdir, *trash = NULL;
    apr_filetype_e type;
    apr_status_t rv;

    if (!valid_domain(domain) || !valid_serial(serial) || chain_pem == NULL
        || *chain_pem == '\0' || key == NULL || key_len == 0) {
        return APR_EINVAL;
    }
    ddir = domain_dir(store, domain, p);
    rv = ensure_dir(ddir, store->live, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    cur = link_version(ddir, CSY_CURRENT, p);
    if (cur && strcmp(cur, serial) == 0) {
        return APR_SUCCESS;
    }

    rv = build_version(&tmpdir, ddir, chain_pem, key, key_len,
                       key_is_envelope, seal, seal_len, store->envelope_gid,
                       p);
    if (rv != APR_SUCCESS) {
        if (tmpdir) {
            remove_tree(tmpdir, CSY_RM_DEPTH, p);
        }
        return rv;
    }

    /* previous -> old current before anything else moves, so that
     * whatever happens next the rollback target exists, and so that the
     * directory about to be replaced below is referenced by nothing. */
    prev = link_serial(ddir, CSY_PREVIOUS, p);
    if (cur && (prev == NULL || strcmp(prev, cur) != 0)) {
        rv = link_set(ddir, CSY_PREVIOUS, cur, p);
    }
    else if (!cur && prev && strcmp(prev, serial) == 0) {
        rv = apr_file_remove(apr_pstrcat(p, ddir, "/" CSY_PREVIOUS, NULL), p);
        if (rv == APR_SUCCESS) {
            rv = sync_dir(ddir);
        }
    }

    /* A directory by this name is left over from an earlier install (or a
     * crash): rename() cannot replace a non-empty directory, so move it
     * aside; prune removes it if we die before we do. */
    target = apr_pstrcat(p, ddir, "/", serial, NULL);
    if (rv == APR_SUCCESS && lstat_type(&type, target, p)) {
        trash = tmp_path(ddir, p);
        rv = apr_file_rename(target, trash, p);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_rename(tmpdir, target, p);
    }
    if (rv == APR_SUCCESS) {
        rv = sync_dir(ddir);
    }
    if (rv != APR_SUCCESS) {
        remove_tree(tmpdir, CSY_RM_DEPTH, p);
        return rv;
    }
    if (trash) {
        remove_tree(trash, CSY_RM_DEPTH, p);
    }

    /* The switch: one rename() of a symlink. */
    return link_set(ddir, CSY_CURRENT, serial, p);
}

apr_status_t csy_store_add_seal(csy_store_t *store, apr_pool_t *p,
                                const char *domain, const char *serial,
                                const void *seal, apr_size_t seal_len)
{
    const char *vdir, *path;

    if (!valid_domain(domain) || !valid_serial(serial) || seal == NULL
        || seal_len == 0) {
        return APR_EINVAL;
    }
    vdir = csy_store_version_dir(store, p, domain, serial);
    path = apr_pstrcat(p, vdir, "/" CSY_SEAL, NULL);
    if (!is_dir(vdir, p)) {
        return APR_ENOENT;
    }
    /* A reader sees no key.seal or a whole one. */
    return replace_file(vdir, path, seal, seal_len, CSY_PERMS_SECRET,
                        store->envelope_gid, p);
}

apr_status_t csy_store_rollback(csy_store_t *store, apr_pool_t *p,
                                const char *domain)
{
    const char *ddir, *cur, *prev;
    apr_status_t rv;

    if (!valid_domain(domain)) {
        return APR_EINVAL;
    }
    ddir = domain_dir(store, domain, p);
    cur = link_version(ddir, CSY_CURRENT, p);
    prev = link_version(ddir, CSY_PREVIOUS, p);
    if (prev == NULL || (cur && strcmp(cur, prev) == 0)) {
        return APR_NOTFOUND;
    }
    /* current first: a crash between the two leaves the rollback done and
     * both links on the same complete version, never a dangling one. */
    rv = link_set(ddir, CSY_CURRENT, prev, p);
    if (rv == APR_SUCCESS && cur) {
        rv = link_set(ddir, CSY_PREVIOUS, cur, p);
    }
    return rv;
}

const char *csy_store_current(csy_store_t *store, apr_pool_t *p,
                              const char *domain)
{
    if (!valid_domain(domain)) {
        return NULL;
    }
    return link_version(domain_dir(store, domain, p), CSY_CURRENT, p);
}

const char *csy_store_version_dir(const csy_store_t *store, apr_pool_t *p,
                                  const char *domain, const char *serial)
{
    return apr_pstrcat(p, domain_dir(store, domain, p), "/", serial, NULL);
}

const char *csy_store_current_dir(csy_store_t *store, apr_pool_t *p,
                                  const char *domain)
{
    if (csy_store_current(store, p, domain) == NULL) {
        return NULL;
    }
    return apr_pstrcat(p, domain_dir(store, domain, p), "/" CSY_CURRENT,
                       NULL);
}

apr_status_t csy_store_manifest_read(apr_array_header_t **domains,
                                     csy_store_t *store, apr_pool_t *p)
{
    apr_status_t rv;
    apr_size_t len;
    char *buf, *line, *next, *end;
    int first = 1;

    *domains = apr_array_make(p, 16, sizeof(const char *));
    rv = read_all(&buf, &len, apr_pstrcat(p, store->dir, "/" CSY_MANIFEST,
                                          NULL), CSY_MANIFEST_MAX, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (strlen(buf) != len) {
        return APR_EINVAL;
    }
    for (line = buf; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) {
            *next++ = '\0';
        }
        /* The header names the format: refuse one we do not know rather
         * than serve a misread list. */
        if (first) {
            first = 0;
            if (strcmp(line, CSY_MANIFEST_HEADER) != 0) {
                return APR_EINVAL;
            }
            continue;
        }
        if (*line == '\0' || *line == '#') {
            continue;
        }
        end = line + strcspn(line, " \t");
        if (*end == '\0') {
            return APR_EINVAL;      /* a domain without its path */
        }
        *end = '\0';
        if (!valid_domain(line)) {
            return APR_EINVAL;
        }
        APR_ARRAY_PUSH(*domains, const char *) = line;
    }
    return APR_SUCCESS;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

apr_status_t csy_store_manifest_write(csy_store_t *store, apr_pool_t *p,
                                      const apr_array_header_t *domains)
{
    apr_array_header_t *sorted, *lines;
    const char *domain, *last = NULL, *text;
    int i;

    if (domains == NULL || domains->elt_size != sizeof(const char *)) {
        return APR_EINVAL;
    }
    sorted = apr_array_copy(p, domains);
    for (i = 0; i < sorted->nelts; i++) {
        if (!valid_domain(APR_ARRAY_IDX(sorted, i, const char *))) {
            return APR_EINVAL;
        }
    }
    qsort(sorted->elts, sorted->nelts, sorted->elt_size, cmp_str);

    lines = apr_array_make(p, sorted->nelts * 4 + 2, sizeof(const char *));
    APR_ARRAY_PUSH(lines, const char *) = CSY_MANIFEST_HEADER "\n";
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
        APR_ARRAY_PUSH(lines, const char *) = domain;
        APR_ARRAY_PUSH(lines, const char *) = " ";
        APR_ARRAY_PUSH(lines, const char *) =
            csy_store_current_dir(store, p, domain);
        APR_ARRAY_PUSH(lines, const char *) = "\n";
    }
    text = apr_array_pstrcat(p, lines, '\0');
    return csy_write_atomic(apr_pstrcat(p, store->dir, "/" CSY_MANIFEST,
                                        NULL), text, strlen(text),
                            CSY_PERMS_PUBLIC, p);
}

/* Remove the versions of one domain that nothing points to, and temp
 * entries a crash left behind.  Unknown names are left alone: the store
 * deletes only what it made. */
static apr_status_t prune_domain(const char *ddir, apr_pool_t *p)
{
    apr_array_header_t *names;
    apr_filetype_e type;
    apr_status_t rv, rv2;
    const char *cur, *prev, *name;
    int i, removed = 0;

    if (!lstat_type(&type, ddir, p)) {
        return APR_SUCCESS;
    }
    if (type != APR_DIR) {
        return APR_ENOTDIR;
    }
    cur = link_serial(ddir, CSY_CURRENT, p);
    prev = link_serial(ddir, CSY_PREVIOUS, p);
    rv = list_dir(&names, ddir, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        name = APR_ARRAY_IDX(names, i, const char *);
        if (is_tmp_name(name)
            || (valid_serial(name) && !(cur && strcmp(name, cur) == 0)
                && !(prev && strcmp(name, prev) == 0))) {
            rv = remove_tree(apr_pstrcat(p, ddir, "/", name, NULL),
                             CSY_RM_DEPTH, p);
            removed = 1;
        }
    }
    if (removed) {
        rv2 = sync_dir(ddir);
        if (rv == APR_SUCCESS) {
            rv = rv2;
        }
    }
    return rv;
}

/* Remove the .tmp- entries in dir (the store's root: cursor, manifest). */
static apr_status_t prune_tmp(const char *dir, apr_pool_t *p)
{
    apr_array_header_t *names;
    apr_status_t rv, rv2;
    const char *name;
    int i, removed = 0;

    rv = list_dir(&names, dir, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        name = APR_ARRAY_IDX(names, i, const char *);
        if (is_tmp_name(name)) {
            rv = remove_tree(apr_pstrcat(p, dir, "/", name, NULL),
                             CSY_RM_DEPTH, p);
            removed = 1;
        }
    }
    if (removed) {
        rv2 = sync_dir(dir);
        if (rv == APR_SUCCESS) {
            rv = rv2;
        }
    }
    return rv;
}

/* A domain's directory out of the served set in one rename(), so that a
 * crash halfway through the removal leaves only a temp entry. */
static apr_status_t remove_domain(csy_store_t *store, const char *name,
                                  apr_pool_t *p)
{
    const char *to = tmp_path(store->live, p);
    apr_status_t rv = apr_file_rename(domain_dir(store, name, p), to, p);

    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        rv = sync_dir(store->live);
    }
    if (rv == APR_SUCCESS) {
        rv = remove_tree(to, CSY_RM_DEPTH, p);
    }
    return rv;
}

apr_status_t csy_store_remove(csy_store_t *store, apr_pool_t *p,
                              const char *domain)
{
    if (!valid_domain(domain)) {
        return APR_EINVAL;
    }
    return remove_domain(store, domain, p);
}

apr_status_t csy_store_prune(csy_store_t *store, apr_pool_t *p,
                             const char *domain)
{
    apr_array_header_t *names, *listed;
    apr_hash_t *keep = NULL;
    apr_pool_t *sub;
    apr_status_t rv, rv2;
    const char *name;
    apr_filetype_e type;
    int i;

    if (domain) {
        if (!valid_domain(domain)) {
            return APR_EINVAL;
        }
        return prune_domain(domain_dir(store, domain, p), p);
    }

    /* The whole store.  Domains are removed only against a manifest that
     * exists: without one (never written) nothing says what is unused. */
    if (lstat_type(&type, apr_pstrcat(p, store->dir, "/" CSY_MANIFEST,
                                      NULL), p)) {
        rv = csy_store_manifest_read(&listed, store, p);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        keep = apr_hash_make(p);
        for (i = 0; i < listed->nelts; i++) {
            apr_hash_set(keep, APR_ARRAY_IDX(listed, i, const char *),
                         APR_HASH_KEY_STRING, "");
        }
    }
    rv = list_dir(&names, store->live, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create(&sub, p);
    for (i = 0; rv == APR_SUCCESS && i < names->nelts; i++) {
        name = APR_ARRAY_IDX(names, i, const char *);
        apr_pool_clear(sub);
        if (is_tmp_name(name)) {
            rv = remove_tree(apr_pstrcat(sub, store->live, "/", name, NULL),
                             CSY_RM_DEPTH, sub);
        }
        else if (!valid_domain(name)
                 || !is_dir(domain_dir(store, name, sub), sub)) {
            continue;           /* not ours */
        }
        else if (keep && !apr_hash_get(keep, name, APR_HASH_KEY_STRING)) {
            rv = remove_domain(store, name, sub);
        }
        else {
            rv = prune_domain(domain_dir(store, name, sub), sub);
        }
    }
    apr_pool_destroy(sub);
    rv2 = sync_dir(store->live);
    if (rv == APR_SUCCESS) {
        rv = rv2;
    }
    rv2 = prune_tmp(store->dir, p);
    return rv == APR_SUCCESS ? rv2 : rv;
}
