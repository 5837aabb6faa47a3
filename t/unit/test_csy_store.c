/*
 * test_csy_store.c: mod_certsync's on-disk store: versions and their
 * links, permissions, manifest, cursor, prune, input checks, and crash
 * safety under kill -9.
 *
 * Everything happens below one mkdtemp() directory, removed at the end.
 * It is made on /dev/shm when possible: the crash test kills a process
 * (which fsync cannot matter for) and on a disk every fsync costs
 * milliseconds.  CSY_TEST_TMPDIR chooses another place; CSY_CRASH_ROUNDS
 * and CSY_CRASH_SEED repeat or lengthen the crash test.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#ifdef __linux__
#include <sys/ptrace.h>
#endif
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_file.h"
#include "cs_layout.h"
#include "csy_store.h"
#include "unit.h"

#define PERMS_PUBLIC (APR_FPROT_UREAD | APR_FPROT_UWRITE | APR_FPROT_GREAD \
                      | APR_FPROT_WREAD)
#define PERMS_SECRET (APR_FPROT_UREAD | APR_FPROT_UWRITE)

static apr_pool_t *pool;
static char base[PATH_MAX];

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static const char *at(const char *rel)
{
    return apr_pstrcat(pool, base, "/", rel, NULL);
}

static int remove_cb(const char *path, const struct stat *st, int flag,
                     struct FTW *ftw)
{
    return remove(path);
}

static void remove_all(const char *path)
{
    nftw(path, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int tmp_count;

static int count_tmp_cb(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    if (strncmp(path + ftw->base, ".tmp-", 5) == 0) {
        tmp_count++;
    }
    return 0;
}

/* Entries named .tmp-* anywhere below dir. */
static int count_tmp(const char *dir)
{
    tmp_count = 0;
    nftw(dir, count_tmp_cb, 16, FTW_PHYS);
    return tmp_count;
}

/* The permission bits of path (not following a symlink), -1 if none. */
static int mode_of(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static int exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* The contents of a file (NUL-terminated), NULL if it cannot be read. */
static char *slurp(const char *path, apr_pool_t *p, size_t *plen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len = 0, cap = 1024, n;

    if (plen) {
        *plen = 0;
    }
    if (f == NULL) {
        return NULL;
    }
    buf = malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (plen) {
        *plen = len;
    }
    {
        char *copy = apr_pstrmemdup(p, buf, len);

        free(buf);
        return copy;
    }
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char *link_of(const char *path, apr_pool_t *p)
{
    char buf[256];
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);

    if (n < 0) {
        return NULL;
    }
    buf[n] = '\0';
    return apr_pstrdup(p, buf);
}

static csy_store_t *open_store(const char *rel)
{
    csy_store_t *store = NULL;
    apr_status_t rv = csy_store_open(&store, pool, at(rel));

    CHECK_EQ_INT(rv, APR_SUCCESS);
    return store;
}

static apr_status_t put(csy_store_t *store, const char *domain,
                        const char *serial)
{
    const char *chain = apr_psprintf(pool, "chain-%s\n", serial);
    const char *key = apr_psprintf(pool, "key-%s\n", serial);

    return csy_store_install(store, pool, domain, serial, chain, key,
                             strlen(key), 0);
}

static apr_array_header_t *list(const char *first, ...)
{
    apr_array_header_t *arr = apr_array_make(pool, 4, sizeof(const char *));
    const char *s;
    va_list ap;

    va_start(ap, first);
    for (s = first; s; s = va_arg(ap, const char *)) {
        APR_ARRAY_PUSH(arr, const char *) = s;
    }
    va_end(ap);
    return arr;
}

static const char *joined(const apr_array_header_t *arr)
{
    return apr_array_pstrcat(pool, arr, ',');
}

/* ------------------------------------------------------------------ */
/* Cases                                                               */

static void test_open(void)
{
    csy_store_t *store = NULL;
    char cwd[PATH_MAX];
    mode_t old;

    UNIT_CASE("open");
    old = umask(077);
    store = open_store("open/deep/store/");
    umask(old);
    if (!CHECK(store != NULL)) {
        return;
    }
    CHECK_STR(csy_store_dir(store), at("open/deep/store"));
    /* root reads the store at startup, dynamic-mode workers later */
    CHECK_EQ_INT(mode_of(at("open/deep/store")), 0755);
    CHECK_EQ_INT(mode_of(at("open/deep/store/live")), 0755);
    CHECK(open_store("open/deep/store") != NULL);

    UNIT_CASE("open relative");
    if (CHECK(getcwd(cwd, sizeof(cwd)) != NULL) && CHECK(chdir(base) == 0)) {
        CHECK_EQ_INT(csy_store_open(&store, pool, "rel"), APR_SUCCESS);
        CHECK_STR(csy_store_dir(store), at("rel"));
        CHECK(chdir(cwd) == 0);
    }

    UNIT_CASE("open refused");
    spit(at("open/file"), "x");
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/file")), APR_ENOTDIR);
    CHECK(store == NULL);
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/a space")),
                 APR_EINVAL);
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/$x")), APR_EINVAL);
    CHECK_EQ_INT(csy_store_open(&store, pool, ""), APR_EINVAL);
    CHECK(mkdir(at("open/ww"), 0700) == 0 && chmod(at("open/ww"), 0777) == 0);
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/ww")), APR_EACCES);
    /* a symlinked store is fine (another disk); a symlinked live/ is not */
    CHECK(symlink(at("open/deep/store"), at("open/link")) == 0);
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/link")),
                 APR_SUCCESS);
    CHECK(mkdir(at("open/sl"), 0755) == 0
          && symlink(at("open/deep"), at("open/sl/live")) == 0);
    CHECK_EQ_INT(csy_store_open(&store, pool, at("open/sl")), APR_ENOTDIR);
}

/* ex.com's current version is cur, and previous links to prev. */
static void versions_are(csy_store_t *store, const char *live,
                         const char *cur, const char *prev)
{
    CHECK_STR(csy_store_current(store, pool, "ex.com"), cur);
    CHECK_STR(link_of(apr_pstrcat(pool, live, "/previous", NULL), pool),
              prev);
}

static void test_install(void)
{
    csy_store_t *store = open_store("inst");
    const char *live = at("inst/live/ex.com");

    if (!store) {
        return;
    }
    UNIT_CASE("install first");
    CHECK_STR(csy_store_current(store, pool, "ex.com"), NULL);
    CHECK_STR(csy_store_current_dir(store, pool, "ex.com"), NULL);
    CHECK_EQ_INT(put(store, "ex.com", "01"), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "01");
    CHECK_STR(csy_store_current_dir(store, pool, "ex.com"),
              at("inst/live/ex.com/current"));
    CHECK_STR(csy_store_version_dir(store, pool, "ex.com", "01"),
              at("inst/live/ex.com/01"));
    CHECK_STR(link_of(apr_pstrcat(pool, live, "/current", NULL), pool),
              "01");
    CHECK(!exists(apr_pstrcat(pool, live, "/previous", NULL)));
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/fullchain.pem", NULL),
                    pool, NULL), "chain-01\n");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/privkey.pem", NULL),
                    pool, NULL), "key-01\n");
    CHECK_EQ_INT(csy_store_rollback(store, pool, "ex.com"), APR_NOTFOUND);

    UNIT_CASE("install second");
    CHECK_EQ_INT(put(store, "ex.com", "02"), APR_SUCCESS);
    versions_are(store, live, "02", "01");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/privkey.pem", NULL),
                    pool, NULL), "key-02\n");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/previous/privkey.pem", NULL),
                    pool, NULL), "key-01\n");

    UNIT_CASE("rollback");
    CHECK_EQ_INT(csy_store_rollback(store, pool, "ex.com"), APR_SUCCESS);
    versions_are(store, live, "01", "02");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/fullchain.pem", NULL),
                    pool, NULL), "chain-01\n");
    CHECK_EQ_INT(csy_store_rollback(store, pool, "ex.com"), APR_SUCCESS);
    versions_are(store, live, "02", "01");
    CHECK_EQ_INT(csy_store_rollback(store, pool, "none.example"),
                 APR_NOTFOUND);

    UNIT_CASE("install third");
    CHECK_EQ_INT(put(store, "ex.com", "03"), APR_SUCCESS);
    versions_are(store, live, "03", "02");
    /* 01 stays until prune */
    CHECK(exists(apr_pstrcat(pool, live, "/01/privkey.pem", NULL)));
    CHECK_EQ_INT(count_tmp(at("inst")), 0);

    UNIT_CASE("install envelope");
    CHECK_EQ_INT(csy_store_install(store, pool, "env.example", "0e",
                                   "chain-0e\n", "\x30\x00\x82", 3, 1),
                 APR_SUCCESS);
    {
        size_t len;
        const char *der = slurp(at("inst/live/env.example/current/key.cms"),
                                pool, &len);

        if (CHECK(der != NULL)) {
            CHECK_EQ_INT(len, 3);
            CHECK_MEM(der, "\x30\x00\x82", 3);
        }
    }
    CHECK(!exists(at("inst/live/env.example/current/privkey.pem")));
    CHECK(!exists(at("inst/live/env.example/current/key.seal")));

    UNIT_CASE("install envelope with key.seal; add key.seal later");
    CHECK_EQ_INT(csy_store_install_sealed(store, pool, "env.example", "0f",
                                          "chain-0f\n", "\x30\x00\x83", 3,
                                          1, "SEAL", 4), APR_SUCCESS);
    CHECK_STR(slurp(at("inst/live/env.example/current/key.seal"), pool,
                    NULL), "SEAL");
    {
        struct stat st;
        CHECK(stat(at("inst/live/env.example/current/key.seal"), &st) == 0
              && (st.st_mode & 077) == 0);
    }
    /* 0e, installed without one, gets it; the file appears whole */
    CHECK_EQ_INT(csy_store_add_seal(store, pool, "env.example", "0e",
                                    "SEAL-0e", 7), APR_SUCCESS);
    CHECK_STR(slurp(at("inst/live/env.example/0e/key.seal"), pool, NULL),
              "SEAL-0e");
    CHECK_EQ_INT(count_tmp(at("inst/live/env.example/0e")), 0);
    CHECK_EQ_INT(csy_store_add_seal(store, pool, "env.example", "0d",
                                    "S", 1), APR_ENOENT);
    CHECK_EQ_INT(csy_store_add_seal(store, pool, "../x", "0e", "S", 1),
                 APR_EINVAL);
    CHECK_EQ_INT(csy_store_add_seal(store, pool, "env.example", "0e",
                                    NULL, 0), APR_EINVAL);

    UNIT_CASE("install over a stale directory");
    CHECK(mkdir(apr_pstrcat(pool, live, "/0c", NULL), 0755) == 0);
    spit(apr_pstrcat(pool, live, "/0c/junk", NULL), "junk");
    spit(apr_pstrcat(pool, live, "/0c/privkey.pem", NULL), "stale");
    CHECK_EQ_INT(put(store, "ex.com", "0c"), APR_SUCCESS);
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/privkey.pem", NULL),
                    pool, NULL), "key-0c\n");
    CHECK(!exists(apr_pstrcat(pool, live, "/0c/junk", NULL)));
    CHECK_EQ_INT(count_tmp(at("inst")), 0);
}

static void test_reinstall(void)
{
    csy_store_t *store = open_store("again");
    const char *live = at("again/live/ex.com");
    struct stat before, after;

    if (!store) {
        return;
    }
    UNIT_CASE("reinstall current is a no-op");
    CHECK_EQ_INT(put(store, "ex.com", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "ex.com", "02"), APR_SUCCESS);
    CHECK(stat(apr_pstrcat(pool, live, "/02", NULL), &before) == 0);
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "02", "other\n",
                                   "other\n", 6, 0), APR_SUCCESS);
    CHECK(stat(apr_pstrcat(pool, live, "/02", NULL), &after) == 0);
    CHECK_EQ_INT(after.st_ino, before.st_ino);
    versions_are(store, live, "02", "01");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/privkey.pem", NULL),
                    pool, NULL), "key-02\n");

    UNIT_CASE("reinstall previous");
    /* the alternating case: the directory replaced is the rollback
     * target until previous moves to the old current */
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "01", "chain-1b\n",
                                   "key-1b\n", 7, 0), APR_SUCCESS);
    versions_are(store, live, "01", "02");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/privkey.pem", NULL),
                    pool, NULL), "key-1b\n");
    CHECK_STR(slurp(apr_pstrcat(pool, live, "/current/fullchain.pem", NULL),
                    pool, NULL), "chain-1b\n");
    CHECK_EQ_INT(count_tmp(at("again")), 0);
}

static void test_perms(void)
{
    static const mode_t masks[] = { 077, 0 };
    csy_store_t *store;
    const char *name, *v;
    mode_t old;
    int i;

    for (i = 0; i < 2; i++) {
        UNIT_CASE(i == 0 ? "permissions, umask 077" : "permissions, umask 0");
        name = apr_psprintf(pool, "perms%d", i);
        old = umask(masks[i]);
        store = open_store(name);
        if (store) {
            CHECK_EQ_INT(put(store, "ex.com", "0a"), APR_SUCCESS);
            CHECK_EQ_INT(csy_store_install(store, pool, "env.ex.com", "0b",
                                           "chain\n", "der", 3, 1),
                         APR_SUCCESS);
            CHECK_EQ_INT(csy_store_cursor_set(store, 7, pool), APR_SUCCESS);
            CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                                  list("ex.com", NULL)),
                         APR_SUCCESS);
        }
        umask(old);
        v = apr_pstrcat(pool, name, "/live/ex.com/0a", NULL);
        CHECK_EQ_INT(mode_of(at(name)), 0755);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, name, "/live", NULL))),
                     0755);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, name, "/live/ex.com",
                                            NULL))), 0755);
        CHECK_EQ_INT(mode_of(at(v)), 0755);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, v, "/privkey.pem", NULL))),
                     0600);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, v, "/fullchain.pem",
                                            NULL))), 0644);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, name,
                                            "/live/env.ex.com/0b/key.cms",
                                            NULL))), 0600);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, name, "/cursor", NULL))),
                     0644);
        CHECK_EQ_INT(mode_of(at(apr_pstrcat(pool, name, "/manifest", NULL))),
                     0644);
    }

    UNIT_CASE("csy_write_atomic");
    old = umask(0);
    CHECK_EQ_INT(csy_write_atomic(at("secret"), "s", 1, PERMS_SECRET, pool),
                 APR_SUCCESS);
    umask(077);
    CHECK_EQ_INT(csy_write_atomic(at("public"), "p", 1, PERMS_PUBLIC, pool),
                 APR_SUCCESS);
    umask(old);
    CHECK_EQ_INT(mode_of(at("secret")), 0600);
    CHECK_EQ_INT(mode_of(at("public")), 0644);
    /* replaced, not rewritten: a reader holding the old file keeps it */
    CHECK_EQ_INT(csy_write_atomic(at("public"), "", 0, PERMS_PUBLIC, pool),
                 APR_SUCCESS);
    CHECK_STR(slurp(at("public"), pool, NULL), "");
    CHECK_EQ_INT(csy_write_atomic(at("x"), "x", 1, APR_FPROT_OS_DEFAULT,
                                  pool), APR_EINVAL);
    CHECK_EQ_INT(csy_write_atomic(at("x"), "x", 1,
                                  PERMS_SECRET | APR_FPROT_USETID, pool),
                 APR_EINVAL);
    CHECK_EQ_INT(csy_write_atomic(at("nodir/x"), "x", 1, PERMS_SECRET, pool),
                 APR_ENOENT);
    CHECK(!exists(at("x")));
    CHECK_EQ_INT(count_tmp(base), 0);
    remove(at("secret"));
    remove(at("public"));
}

/* lib/cs_file.c's bounded read and lib/cs_layout.c's paths, which the
 * store, the dynamic-mode reader and mod_macro_gen share. */
static void test_file_layout(void)
{
    char *buf = NULL, small[16];
    apr_size_t len = 99;

    UNIT_CASE("cs_file_read");
    spit(at("f"), "abc");
    CHECK_EQ_INT(cs_file_read(&buf, &len, pool, at("f"), 3), APR_SUCCESS);
    CHECK_STR(buf, "abc");
    CHECK_EQ_INT(len, 3);
    CHECK_EQ_INT(cs_file_read(&buf, &len, pool, at("f"), 2),
                 APR_FROM_OS_ERROR(EFBIG));
    CHECK(buf == NULL && len == 0);
    CHECK_EQ_INT(cs_file_read(&buf, &len, pool, at("nothing"), 9),
                 APR_ENOENT);
    CHECK_EQ_INT(cs_file_read(&buf, &len, pool, base, 9), APR_EINVAL);
    spit(at("f"), "");
    CHECK_EQ_INT(cs_file_read(&buf, &len, pool, at("f"), 0), APR_SUCCESS);
    CHECK(buf != NULL && *buf == '\0' && len == 0);
    remove(at("f"));

    UNIT_CASE("cs_layout paths");
    CHECK_STR(cs_layout_path(pool, "/s", NULL, NULL, NULL), "/s/live");
    CHECK_STR(cs_layout_path(pool, "/s", "a.example", NULL, NULL),
              "/s/live/a.example");
    CHECK_STR(cs_layout_path(pool, "/s", "a.example", CS_LAYOUT_CURRENT,
                             NULL), "/s/live/a.example/current");
    CHECK_STR(cs_layout_path(pool, "/s", "a.example", "0a",
                             CS_LAYOUT_CHAIN),
              "/s/live/a.example/0a/fullchain.pem");
    CHECK_STR(cs_layout_top(pool, "/s", CS_LAYOUT_MANIFEST), "/s/manifest");
    CHECK_EQ_INT(cs_layout_path_buf(small, sizeof(small), "/s", "a.b",
                                    CS_LAYOUT_CURRENT, NULL), 0);
    CHECK_STR(small, "");
    CHECK_EQ_INT(cs_layout_path_buf(small, sizeof(small), "/s", "a.b", "0a",
                                    NULL), 14);
    CHECK_STR(small, "/s/live/a.b/0a");
    CHECK(cs_layout_serial_ok("0aF", 3));
    CHECK(!cs_layout_serial_ok("0g", 2));
    CHECK(!cs_layout_serial_ok("", 0));
}

/* csy_store_set_log: what the store reported. */
static void collect(void *baton, cs_log_level_t level, const char *msg)
{
    apr_array_header_t *got = baton;

    APR_ARRAY_PUSH(got, const char *) =
        apr_psprintf(pool, "%d %s", (int)level, msg);
}

static void test_manifest(void)
{
    csy_store_t *store = open_store("man");
    apr_array_header_t *got = NULL;
    const char *want, *dir;

    if (!store) {
        return;
    }
    dir = csy_store_dir(store);
    UNIT_CASE("manifest missing");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_SUCCESS);
    CHECK(got != NULL && got->nelts == 0);

    UNIT_CASE("manifest round trip");
    CHECK_EQ_INT(put(store, "b.example", "0b"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "a.example", "0a"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "*.w.example", "0c"), APR_SUCCESS);
    /* a directory, but no current version: not servable */
    CHECK(mkdir(at("man/live/half.example"), 0755) == 0);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("b.example", "none.example",
                                               "a.example", "half.example",
                                               "*.w.example", "a.example",
                                               NULL)), APR_SUCCESS);
    /* Version 2: certdirs relative to the store, not its path on every
     * line (docs/manifest.md). */
    want = apr_pstrcat(pool, "# certsync manifest v2\n",
                       "*.w.example live/*.w.example/current\n",
                       "a.example live/a.example/current\n",
                       "b.example live/b.example/current\n", NULL);
    CHECK_STR(slurp(at("man/manifest"), pool, NULL), want);
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_SUCCESS);
    CHECK_STR(joined(got), "*.w.example,a.example,b.example");

    UNIT_CASE("manifest empty");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("none.example", NULL)),
                 APR_SUCCESS);
    CHECK_STR(slurp(at("man/manifest"), pool, NULL),
              "# certsync manifest v2\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(got->nelts, 0);

    /* A store written before version 2 keeps working: its v1 manifest
     * (absolute certdirs) is read as it is, and the next write is v2. */
    UNIT_CASE("manifest v1 of an upgraded store");
    spit(at("man/manifest"), apr_pstrcat(pool, "# certsync manifest v1\n",
                                         "a.example ", dir,
                                         "/live/a.example/current\n",
                                         "b.example ", dir,
                                         "/live/b.example/current\n",
                                         NULL));
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_SUCCESS);
    CHECK_STR(joined(got), "a.example,b.example");
    {
        cs_manifest_t *m = NULL;
        const char *why;

        CHECK_EQ_INT(csy_store_manifest_load(&m, &why, store, pool),
                     APR_SUCCESS);
        if (CHECK_EQ_INT(m->entries->nelts, 2)) {
            CHECK_STR(APR_ARRAY_IDX(m->entries, 1, cs_manifest_entry_t)
                      .certdir, apr_pstrcat(pool, dir,
                                            "/live/b.example/current",
                                            NULL));
        }
        spit(at("man/manifest"), "# certsync manifest v2\n"
             "a.example live/a.example/current\n");
        CHECK_EQ_INT(csy_store_manifest_load(&m, &why, store, pool),
                     APR_SUCCESS);
        if (CHECK_EQ_INT(m->entries->nelts, 1)) {
            CHECK_STR(APR_ARRAY_IDX(m->entries, 0, cs_manifest_entry_t)
                      .certdir, apr_pstrcat(pool, dir,
                                            "/live/a.example/current",
                                            NULL));
        }
    }

    UNIT_CASE("manifest comments");
    spit(at("man/manifest"), "# certsync manifest v1\n\n# a comment\n"
         "a.example /x/live/a.example/current\n\n"
         "b.example\t/x/live/b.example/current\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_SUCCESS);
    CHECK_STR(joined(got), "a.example,b.example");

    UNIT_CASE("manifest refused");
    spit(at("man/manifest"), "# certsync manifest v3\na.example /x\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_EINVAL);
    spit(at("man/manifest"), "a.example /x\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_EINVAL);

    /* docs/manifest.md: a bad line is skipped, never the whole file; the
     * caller learns that the list is not whole, and which lines. */
    UNIT_CASE("manifest bad lines skipped");
    spit(at("man/manifest"), "# certsync manifest v1\n../etc /x\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_INCOMPLETE);
    CHECK_EQ_INT(got->nelts, 0);
    spit(at("man/manifest"), "# certsync manifest v1\na.example\n"
         "B.Example /x/live/b.example/current\n"
         "c.example /x/c\nb.example /x/b2\nd.example relative\n");
    CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool), APR_INCOMPLETE);
    CHECK_STR(joined(got), "b.example,c.example");
    {
        apr_array_header_t *logged = apr_array_make(pool, 4,
                                                    sizeof(const char *));

        csy_store_set_log(store, collect, logged);
        CHECK_EQ_INT(csy_store_manifest_read(&got, store, pool),
                     APR_INCOMPLETE);
        csy_store_set_log(store, NULL, NULL);
        if (CHECK_EQ_INT(logged->nelts, 3)) {
            CHECK_STR(APR_ARRAY_IDX(logged, 0, const char *),
                      apr_psprintf(pool, "%d skipping line 2 of %s/manifest "
                                   "(domain 'a.example'): no certdir "
                                   "(expected '<domain> <certdir>')",
                                   (int)CS_LOG_WARN, dir));
        }
    }
    {
        cs_manifest_t *m = NULL;
        const char *why = "";

        CHECK_EQ_INT(csy_store_manifest_load(&m, &why, store, pool),
                     APR_SUCCESS);
        CHECK_STR(why, NULL);
        if (CHECK(m != NULL) && CHECK_EQ_INT(m->problems->nelts, 3)) {
            CHECK_EQ_INT(APR_ARRAY_IDX(m->problems, 0,
                                       cs_manifest_problem_t).line, 2);
            CHECK_EQ_INT(APR_ARRAY_IDX(m->problems, 1,
                                       cs_manifest_problem_t).line, 5);
            CHECK_EQ_INT(APR_ARRAY_IDX(m->problems, 2,
                                       cs_manifest_problem_t).line, 6);
        }
        spit(at("man/manifest"), "# certsync manifest v3\n");
        CHECK_EQ_INT(csy_store_manifest_load(&m, &why, store, pool),
                     APR_EINVAL);
        CHECK(why != NULL && strstr(why, "unsupported") != NULL);
        CHECK(m != NULL && m->entries->nelts == 0);
    }
    spit(at("man/manifest"), "# certsync manifest v1\n");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "A.example",
                                               NULL)), APR_EINVAL);
    CHECK_STR(slurp(at("man/manifest"), pool, NULL),
              "# certsync manifest v1\n");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool, NULL), APR_EINVAL);
    CHECK_EQ_INT(count_tmp(at("man")), 0);
}

/*
 * A rollout's rollback (csy_store_unserve): a domain with a previous
 * version goes back to it; a new one leaves the manifest, and a manifest
 * that cannot be written is an error the caller sees (issue 17: it was
 * dropped).  The write is made to fail with RLIMIT_FSIZE (EFBIG), which
 * holds for root too.
 */
static void test_unserve(void)
{
    csy_store_t *store = open_store("unserve");
    apr_array_header_t *served = NULL;
    struct rlimit old, tiny;
    void (*was)(int);

    UNIT_CASE("unserve: a renewed domain goes back to its previous version");
    CHECK_EQ_INT(put(store, "old.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "old.example", "02"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "new.example", "0a"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("new.example", "old.example",
                                               NULL)), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_unserve(store, pool, "old.example"),
                 APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "old.example"), "01");

    UNIT_CASE("unserve: the manifest cannot be written");
    getrlimit(RLIMIT_FSIZE, &old);
    tiny = old;
    tiny.rlim_cur = 8;      /* less than the manifest's header line */
    was = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    CHECK(csy_store_unserve(store, pool, "new.example") != APR_SUCCESS);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, was);
    CHECK_EQ_INT(csy_store_manifest_read(&served, store, pool), APR_SUCCESS);
    CHECK_STR(joined(served), "new.example,old.example");

    UNIT_CASE("unserve: a new domain leaves the manifest");
    CHECK_EQ_INT(csy_store_unserve(store, pool, "new.example"),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_manifest_read(&served, store, pool), APR_SUCCESS);
    CHECK_STR(joined(served), "old.example");
}

/*
 * issue 18: at 1,000,000 domains the manifest (93 bytes a line in v1) was
 * larger than the 64 MiB the reader accepted, so every cycle failed with
 * "cannot prune the store" and "cannot read the store".  A v1 manifest of
 * 800,000 lines (74 MB, written in large blocks: a second) is read whole
 * and pruned against.
 */
static void test_manifest_large(void)
{
    csy_store_t *store = open_store("large");
    apr_array_header_t *served = NULL;
    const char *dir;
    struct stat st;
    FILE *f;
    long i, n = 800000;

    if (!store) {
        return;
    }
    dir = csy_store_dir(store);
    CHECK_EQ_INT(put(store, "d1.big.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "gone.example", "02"), APR_SUCCESS);
    f = fopen(at("large/manifest"), "w");
    if (!CHECK(f != NULL)) {
        return;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    fputs("# certsync manifest v1\n", f);
    for (i = 1; i <= n; i++) {
        fprintf(f, "d%ld.big.example %s/live/d%ld.big.example/current\n", i,
                dir, i);
    }
    CHECK(fclose(f) == 0);
    UNIT_CASE("manifest larger than 64 MiB: read");
    CHECK(stat(at("large/manifest"), &st) == 0
          && st.st_size > 64 * 1024 * 1024);
    CHECK_EQ_INT(csy_store_manifest_read(&served, store, pool), APR_SUCCESS);
    if (CHECK_EQ_INT(served->nelts, (int)n)) {
        CHECK_STR(APR_ARRAY_IDX(served, n - 1, const char *),
                  "d800000.big.example");
    }
    UNIT_CASE("manifest larger than 64 MiB: prune goes by it");
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "d1.big.example"), "01");
    CHECK(csy_store_current(store, pool, "gone.example") == NULL);
    UNIT_CASE("manifest larger than 64 MiB: written again as v2");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool, served), APR_SUCCESS);
    CHECK_STR(slurp(at("large/manifest"), pool, NULL),
              "# certsync manifest v2\n"
              "d1.big.example live/d1.big.example/current\n");
}

static void test_cursor(void)
{
    csy_store_t *store = open_store("cur");
    long long seq = -1;

    if (!store) {
        return;
    }
    UNIT_CASE("cursor");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(seq, 0);
    CHECK_EQ_INT(csy_store_cursor_set(store, 123, pool), APR_SUCCESS);
    CHECK_STR(slurp(at("cur/cursor"), pool, NULL), "123\n");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(seq, 123);
    CHECK_EQ_INT(csy_store_cursor_set(store, 0, pool), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(seq, 0);
    CHECK_EQ_INT(csy_store_cursor_set(store, 9223372036854775807LL, pool),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_SUCCESS);
    CHECK(seq == 9223372036854775807LL);
    CHECK_EQ_INT(csy_store_cursor_set(store, -1, pool), APR_EINVAL);
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_SUCCESS);
    CHECK(seq == 9223372036854775807LL);

    UNIT_CASE("cursor refused");
    spit(at("cur/cursor"), "12x\n");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_EINVAL);
    CHECK_EQ_INT(seq, 0);
    spit(at("cur/cursor"), "");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_EINVAL);
    spit(at("cur/cursor"), "12");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_EINVAL);
    spit(at("cur/cursor"), "-5\n");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_EINVAL);
    spit(at("cur/cursor"), "9223372036854775808\n");
    CHECK_EQ_INT(csy_store_cursor_get(&seq, store, pool), APR_EINVAL);
    CHECK_EQ_INT(count_tmp(at("cur")), 0);
}

static void test_prune(void)
{
    csy_store_t *store = open_store("prune");
    const char *live = at("prune/live/ex.com");
    int i;

    if (!store) {
        return;
    }
    UNIT_CASE("prune one domain");
    for (i = 1; i <= 4; i++) {
        CHECK_EQ_INT(put(store, "ex.com", apr_psprintf(pool, "%02d", i)),
                     APR_SUCCESS);
    }
    CHECK_EQ_INT(csy_store_rollback(store, pool, "ex.com"), APR_SUCCESS);
    /* what a crash leaves: a half-built version, a link, a file */
    CHECK(mkdir(apr_pstrcat(pool, live, "/.tmp-0123", NULL), 0700) == 0);
    spit(apr_pstrcat(pool, live, "/.tmp-0123/privkey.pem", NULL), "k");
    CHECK(symlink("01", apr_pstrcat(pool, live, "/.tmp-link", NULL)) == 0);
    spit(apr_pstrcat(pool, live, "/.tmp-file", NULL), "f");
    spit(apr_pstrcat(pool, live, "/README", NULL), "not ours");
    CHECK_EQ_INT(csy_store_prune(store, pool, "ex.com"), APR_SUCCESS);
    CHECK(!exists(apr_pstrcat(pool, live, "/01", NULL)));
    CHECK(!exists(apr_pstrcat(pool, live, "/02", NULL)));
    CHECK(exists(apr_pstrcat(pool, live, "/03/privkey.pem", NULL)));
    CHECK(exists(apr_pstrcat(pool, live, "/04/privkey.pem", NULL)));
    CHECK(exists(apr_pstrcat(pool, live, "/README", NULL)));
    CHECK_EQ_INT(count_tmp(at("prune")), 0);
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "03");
    CHECK_EQ_INT(csy_store_rollback(store, pool, "ex.com"), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "04");
    CHECK_EQ_INT(csy_store_prune(store, pool, "none.example"), APR_SUCCESS);

    UNIT_CASE("prune store without a manifest");
    CHECK_EQ_INT(put(store, "other.example", "0a"), APR_SUCCESS);
    spit(at("prune/.tmp-cursor"), "1");
    spit(at("prune/live/.tmp-x"), "1");
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK_EQ_INT(count_tmp(at("prune")), 0);
    CHECK_STR(csy_store_current(store, pool, "other.example"), "0a");
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "04");

    UNIT_CASE("prune store with a manifest");
    CHECK_EQ_INT(put(store, "ex.com", "05"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "ex.com", "06"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool, list("ex.com", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK(!exists(at("prune/live/other.example")));
    CHECK(!exists(apr_pstrcat(pool, live, "/04", NULL)));
    CHECK(exists(apr_pstrcat(pool, live, "/05", NULL)));
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "06");
    CHECK_EQ_INT(count_tmp(at("prune")), 0);

    /* A skipped line may be a domain still served: no domain goes, old
     * versions do, and the caller hears that the manifest is not whole. */
    UNIT_CASE("prune store with a damaged manifest");
    CHECK_EQ_INT(put(store, "keep.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "ex.com", "07"), APR_SUCCESS);
    spit(at("prune/manifest"), "# certsync manifest v1\n"
         "ex.com /x/live/ex.com/current\nkeep.example\n");
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_INCOMPLETE);
    CHECK(exists(at("prune/live/keep.example")));
    CHECK(!exists(apr_pstrcat(pool, live, "/05", NULL)));
    CHECK_STR(csy_store_current(store, pool, "ex.com"), "07");
}

/* Steps to the end of a pass; the number of steps in *steps. */
static apr_status_t prune_all_steps(csy_prune_t *pr, int *steps)
{
    apr_status_t rv;

    *steps = 0;
    do {
        rv = csy_store_prune_step(pr, 0);       /* one entry a step */
        ++*steps;
    } while (APR_STATUS_IS_EAGAIN(rv) && *steps < 1000);
    return rv;
}

/* The start's prune in steps between cycles (issue 18: at 1,000,000
 * domains the whole walk held the first cycle up for minutes). */
static void test_prune_steps(void)
{
    csy_store_t *store = open_store("steps");
    const char *live = at("steps/live");
    csy_prune_t *pr;
    apr_pool_t *pp;
    long checked, removed;
    int i, steps, pending;

    if (!store) {
        return;
    }
    apr_pool_create(&pp, pool);

    UNIT_CASE("prune in steps: what a whole prune removes");
    for (i = 1; i <= 4; i++) {
        CHECK_EQ_INT(put(store, "a.example", apr_psprintf(pool, "%02d", i)),
                     APR_SUCCESS);
    }
    CHECK_EQ_INT(put(store, "gone.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "b.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("b.example", "a.example",
                                               NULL)), APR_SUCCESS);
    spit(at("steps/.tmp-cursor"), "1");
    spit(at("steps/live/.tmp-x"), "1");
    CHECK(mkdir(at("steps/live/a.example/.tmp-0123"), 0700) == 0);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    /* nothing goes before the steps do */
    CHECK(exists(at("steps/live/gone.example")));
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    /* a step an entry: a.example, b.example, gone.example, .tmp-x, and
     * the one that finds the end */
    CHECK_EQ_INT(steps, 5);
    csy_store_prune_counts(pr, &checked, &removed);
    CHECK_EQ_INT(checked, 3);
    CHECK_EQ_INT(removed, 1);
    CHECK(!exists(at("steps/live/gone.example")));
    CHECK(!exists(at("steps/live/a.example/01")));
    CHECK(!exists(at("steps/live/a.example/02")));
    CHECK(exists(at("steps/live/a.example/03")));
    CHECK_STR(csy_store_current(store, pool, "a.example"), "04");
    CHECK_STR(csy_store_current(store, pool, "b.example"), "01");
    CHECK_EQ_INT(count_tmp(at("steps")), 0);
    /* done: the same answer again, nothing more */
    CHECK_EQ_INT(csy_store_prune_step(pr, 0), APR_SUCCESS);
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    /* Cycles run between the steps: what they make current after the
     * manifest the pass began with was read is served, and must stay. */
    UNIT_CASE("prune in steps: a domain made current meanwhile stays");
    CHECK_EQ_INT(put(store, "old.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "new.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_stage(&pending, store, pool, "staged.example",
                                 "0a", "chain\n", "key\n", 4, 0, NULL, 0),
                 APR_SUCCESS);
    CHECK_EQ_INT(pending, 1);
    CHECK_EQ_INT(csy_store_sync(store), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_switch(store, pool, "staged.example", "0a"),
                 APR_SUCCESS);
    /* a new version of a listed domain between two steps */
    CHECK_EQ_INT(csy_store_prune_step(pr, 0), APR_EAGAIN);
    CHECK_EQ_INT(put(store, "b.example", "02"), APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "new.example"), "01");
    CHECK_STR(csy_store_current(store, pool, "staged.example"), "0a");
    CHECK_STR(csy_store_current(store, pool, "b.example"), "02");
    CHECK(exists(at("steps/live/b.example/01")));
    CHECK(!exists(at("steps/live/old.example")));
    csy_store_prune_counts(pr, &checked, &removed);
    CHECK_EQ_INT(removed, 1);
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    /* A whole prune between two steps (dynamic mode's, for a domain
     * deleted and added again in one cycle) must leave the pass able to
     * hear of what is made current after it. */
    UNIT_CASE("prune in steps: a whole prune meanwhile, then a new domain");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               "new.example",
                                               "staged.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "after.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "after.example"), "01");
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    /* A cycle finds a domain current on disk that the manifest the pass
     * began with does not list (the daemon was stopped after switching
     * it, before its manifest was written): it says so, and it stays. */
    UNIT_CASE("prune in steps: a domain found current and kept by a cycle");
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    csy_store_prune_keep(store, "after.example");
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "after.example"), "01");
    csy_store_prune_end(pr);
    apr_pool_clear(pp);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               "new.example",
                                               "staged.example",
                                               "after.example", NULL)),
                 APR_SUCCESS);

    /* vhost mode serves a domain taken out of the manifest until the
     * restart: the pass that began before goes by the manifest it read. */
    UNIT_CASE("prune in steps: a domain deleted meanwhile waits a pass");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               "new.example",
                                               "staged.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               "staged.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    CHECK(exists(at("steps/live/new.example/current")));
    csy_store_prune_end(pr);
    apr_pool_clear(pp);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_step(pr, -1), APR_SUCCESS);
    CHECK(!exists(at("steps/live/new.example")));
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    /* Unsorted (another writer): the lookups still find every name. */
    UNIT_CASE("prune in steps: an unsorted manifest");
    spit(at("steps/manifest"), "# certsync manifest v2\n"
         "staged.example live/staged.example/current\n"
         "a.example live/a.example/current\n"
         "b.example live/b.example/current\n");
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "a.example"), "04");
    CHECK_STR(csy_store_current(store, pool, "b.example"), "02");
    CHECK_STR(csy_store_current(store, pool, "staged.example"), "0a");
    csy_store_prune_counts(pr, &checked, &removed);
    CHECK_EQ_INT(checked, 3);
    CHECK_EQ_INT(removed, 0);
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    UNIT_CASE("prune in steps: a damaged manifest removes no domain");
    CHECK_EQ_INT(put(store, "keep.example", "01"), APR_SUCCESS);
    spit(at("steps/manifest"), "# certsync manifest v2\n"
         "a.example live/a.example/current\nbad line here\n");
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_INCOMPLETE);
    CHECK_EQ_INT(csy_store_prune_step(pr, 0), APR_INCOMPLETE);
    CHECK(exists(at("steps/live/keep.example/current")));
    csy_store_prune_end(pr);
    apr_pool_clear(pp);

    /* Abandoned halfway (the daemon stopped): nothing half-done, and a
     * later pass (or install) works with no pass left registered. */
    UNIT_CASE("prune in steps: abandoned halfway");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_step(pr, 0), APR_EAGAIN);
    csy_store_prune_end(pr);
    apr_pool_clear(pp);
    CHECK_EQ_INT(put(store, "later.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK(!exists(at("steps/live/later.example")));
    CHECK(!exists(at("steps/live/b.example")));
    CHECK_STR(csy_store_current(store, pool, "a.example"), "04");
    CHECK_EQ_INT(count_tmp(at("steps")), 0);
    (void)live;
    apr_pool_destroy(pp);
}

/*
 * The sorted form (lib/cs_manifest.h) and the servable set of a cycle
 * (csy_served_*, issue 18): lookups by binary search in the mapped file,
 * the changes written as a patch of its bytes, only when the set changed;
 * a file this process checked or wrote is not read again, any other is
 * checked once (a start, an older version's manifest, a torn one).
 */
#define MAN_HEAD "# certsync manifest v2\n"
#define MAN_LINE(d) d " live/" d "/current\n"

static void test_sorted_form(void)
{
    const char *m = MAN_HEAD MAN_LINE("a.example") MAN_LINE("b.example")
                    MAN_LINE("b.example.net") MAN_LINE("c.example");
    apr_size_t len = strlen(m), off;
    const char *names[] = { "0.example", "a.example", "aa.example",
                            "b.example", "b.example.net", "b.examplf",
                            "c.example", "d.example" };
    /* found or not, and the line it is or goes before (0: after all) */
    const int found[] = { 0, 1, 0, 1, 1, 0, 1, 0 };
    const char *at_line[] = { "a.example", "a.example", "b.example",
                              "b.example", "b.example.net", "c.example",
                              "c.example", NULL };
    int i, f;

    UNIT_CASE("sorted form: accepted");
    CHECK_STR(cs_manifest_sorted_check(m, len, "live/", "/current"), NULL);
    CHECK_STR(cs_manifest_sorted_check(MAN_HEAD, strlen(MAN_HEAD), "live/",
                                       "/current"), NULL);

    UNIT_CASE("sorted form: anything else refused");
    {
        const char *bad[] = {
            "# certsync manifest v1\n" MAN_LINE("a.example"),
            MAN_HEAD MAN_LINE("b.example") MAN_LINE("a.example"),
            MAN_HEAD MAN_LINE("a.example") MAN_LINE("a.example"),
            MAN_HEAD "A.example live/A.example/current\n",
            MAN_HEAD "a.example live/b.example/current\n",
            MAN_HEAD "a.example /s/live/a.example/current\n",
            MAN_HEAD "# a comment\n" MAN_LINE("a.example"),
            MAN_HEAD "\n" MAN_LINE("a.example"),
            MAN_HEAD "a.example live/a.example/current\r\n",
            MAN_HEAD "a.example\n",
            /* torn: the last line cut */
            MAN_HEAD MAN_LINE("a.example") "b.example live/b.exa",
            MAN_HEAD MAN_LINE("a.example") "b.exam",
            "# certsync manifest v2",
            "",
        };

        for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
            if (!CHECK(cs_manifest_sorted_check(bad[i], strlen(bad[i]),
                                                "live/", "/current")
                       != NULL)) {
                printf("  accepted: %s\n", bad[i]);
            }
        }
    }

    UNIT_CASE("sorted form: lookups");
    for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        off = cs_manifest_sorted_find(&f, m, len, names[i]);
        CHECK_EQ_INT(f, found[i]);
        if (at_line[i]) {
            CHECK(off < len && strncmp(m + off, at_line[i],
                                       strlen(at_line[i])) == 0
                  && m[off + strlen(at_line[i])] == ' ');
        }
        else {
            CHECK(off == len);
        }
    }
    off = cs_manifest_sorted_find(&f, MAN_HEAD, strlen(MAN_HEAD),
                                  "a.example");
    CHECK(f == 0 && off == strlen(MAN_HEAD));
}

/* The manifest's inode: a rewrite is a new file. */
static unsigned long ino_of(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static void test_served(void)
{
    csy_store_t *store = open_store("served");
    const char *mpath = at("served/manifest"), *dir;
    apr_array_header_t *logged;
    csy_served_t *sv;
    csy_prune_t *pr;
    apr_pool_t *pp;
    unsigned long ino;
    int steps;

    if (!store) {
        return;
    }
    dir = csy_store_dir(store);
    apr_pool_create(&pp, pool);

    UNIT_CASE("served: no manifest yet, the first write makes it");
    CHECK_EQ_INT(put(store, "b.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "d.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK(!csy_served_has(sv, "b.example"));
    CHECK(!csy_served_dirty(sv));
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK(!exists(mpath));
    CHECK_EQ_INT(csy_served_add(sv, "d.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "b.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "b.example"), 0);
    CHECK(csy_served_dirty(sv));
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("b.example")
              MAN_LINE("d.example"));
    CHECK(!csy_served_dirty(sv));
    CHECK(csy_served_has(sv, "b.example") && csy_served_has(sv, "d.example")
          && !csy_served_has(sv, "c.example"));

    UNIT_CASE("served: adds and removes patched in, in order");
    CHECK_EQ_INT(put(store, "a.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "c.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "e.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(csy_served_add(sv, "e.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "a.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "c.example"), 1);
    CHECK_EQ_INT(csy_served_remove(sv, "d.example"), 1);
    CHECK_EQ_INT(csy_served_remove(sv, "d.example"), 0);
    CHECK_EQ_INT(csy_served_remove(sv, "x.example"), 0);
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("a.example")
              MAN_LINE("b.example") MAN_LINE("c.example")
              MAN_LINE("e.example"));
    /* the first and the last line out */
    CHECK_EQ_INT(csy_served_remove(sv, "a.example"), 1);
    CHECK_EQ_INT(csy_served_remove(sv, "e.example"), 1);
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("b.example")
              MAN_LINE("c.example"));
    CHECK_EQ_INT(count_tmp(at("served")), 0);

    UNIT_CASE("served: a renewal, a removal undone: nothing written");
    ino = ino_of(mpath);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(csy_served_add(sv, "b.example"), 0);
    CHECK_EQ_INT(csy_served_remove(sv, "c.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "c.example"), 1);
    CHECK_EQ_INT(csy_served_add(sv, "a.example"), 1);
    CHECK_EQ_INT(csy_served_remove(sv, "a.example"), 1);
    CHECK(!csy_served_dirty(sv));
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK(ino_of(mpath) == ino);

    UNIT_CASE("served: an added name that is not a store domain");
    CHECK_EQ_INT(csy_served_add(sv, "../x"), 1);
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_EINVAL);
    CHECK(ino_of(mpath) == ino);

    /* A daemon's start, or an older version's manifest: checked once,
     * rewritten sorted with the same domains. */
    UNIT_CASE("served: a version 1 manifest of an older run");
    spit(mpath, apr_pstrcat(pool, "# certsync manifest v1\n",
                            "c.example ", dir, "/live/c.example/current\n",
                            "a.example ", dir, "/live/a.example/current\n",
                            NULL));
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("a.example")
              MAN_LINE("c.example"));
    CHECK(csy_served_has(sv, "a.example") && csy_served_has(sv, "c.example")
          && !csy_served_has(sv, "b.example"));

    UNIT_CASE("served: a manifest another program wrote is read again");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("b.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK(csy_served_has(sv, "b.example") && !csy_served_has(sv, "a.example"));
    /* replaced behind the handle's back, a new file */
    spit(at("served/.tmp-m"), MAN_HEAD MAN_LINE("e.example"));
    CHECK(rename(at("served/.tmp-m"), mpath) == 0);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK(csy_served_has(sv, "e.example") && !csy_served_has(sv, "b.example"));

    /* A torn manifest: skipped lines are refused, as before, and logged
     * once, not at every cycle: the same file is not read again. */
    UNIT_CASE("served: a torn manifest is refused until it is whole");
    spit(at("served/.tmp-m"), MAN_HEAD MAN_LINE("a.example") "b.exam");
    CHECK(rename(at("served/.tmp-m"), mpath) == 0);
    logged = apr_array_make(pool, 4, sizeof(const char *));
    csy_store_set_log(store, collect, logged);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_INCOMPLETE);
    CHECK_EQ_INT(logged->nelts, 1);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_INCOMPLETE);
    CHECK_EQ_INT(logged->nelts, 1);
    csy_store_set_log(store, NULL, NULL);
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("a.example")
              "b.exam");
    spit(at("served/.tmp-m"), "# certsync manifest v9\n");
    CHECK(rename(at("served/.tmp-m"), mpath) == 0);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_EINVAL);
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               NULL)), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK(csy_served_has(sv, "a.example") && csy_served_has(sv, "b.example"));

    /* Deleted and added again in one cycle (or the other way round): the
     * manifest decides, for that domain only. */
    UNIT_CASE("settle: listed, its unused versions go");
    CHECK_EQ_INT(put(store, "a.example", "02"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "a.example", "03"), APR_SUCCESS);
    CHECK(exists(at("served/live/a.example/01")));
    CHECK_EQ_INT(csy_store_prune_settle(store, pool, "a.example"),
                 APR_SUCCESS);
    CHECK(!exists(at("served/live/a.example/01")));
    CHECK_STR(csy_store_current(store, pool, "a.example"), "03");

    UNIT_CASE("settle: not listed, its directory goes");
    CHECK(exists(at("served/live/e.example")));
    CHECK_EQ_INT(csy_store_prune_settle(store, pool, "e.example"),
                 APR_SUCCESS);
    CHECK(!exists(at("served/live/e.example")));
    CHECK(exists(at("served/live/b.example")));
    CHECK_EQ_INT(csy_store_prune_settle(store, pool, "../x"), APR_EINVAL);

    UNIT_CASE("settle: a refused manifest removes nothing");
    spit(at("served/.tmp-m"), MAN_HEAD "c.exam");
    CHECK(rename(at("served/.tmp-m"), mpath) == 0);
    CHECK(csy_store_prune_settle(store, pool, "c.example") != APR_SUCCESS);
    CHECK(exists(at("served/live/c.example")));

    /* The start's prune in steps goes by the manifest it began with; the
     * served set's writes between its steps are what cycles do. */
    UNIT_CASE("served: writes between the steps of the start's prune");
    CHECK_EQ_INT(csy_store_manifest_write(store, pool,
                                          list("a.example", "b.example",
                                               "c.example", NULL)),
                 APR_SUCCESS);
    CHECK_EQ_INT(csy_store_prune_begin(&pr, store, pp), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "n.example", "01"), APR_SUCCESS);
    CHECK_EQ_INT(csy_store_served_open(&sv, store, pool), APR_SUCCESS);
    CHECK_EQ_INT(csy_served_add(sv, "n.example"), 1);
    CHECK_EQ_INT(csy_served_remove(sv, "c.example"), 1);
    CHECK_EQ_INT(csy_served_write(sv, pool), APR_SUCCESS);
    CHECK_EQ_INT(prune_all_steps(pr, &steps), APR_SUCCESS);
    csy_store_prune_end(pr);
    CHECK(exists(at("served/live/n.example")));
    /* taken out since the pass began: waits for the next pass */
    CHECK(exists(at("served/live/c.example")));
    CHECK_EQ_INT(csy_store_prune(store, pool, NULL), APR_SUCCESS);
    CHECK(!exists(at("served/live/c.example")));
    CHECK(exists(at("served/live/n.example")));
    CHECK_STR(slurp(mpath, pool, NULL), MAN_HEAD MAN_LINE("a.example")
              MAN_LINE("b.example") MAN_LINE("n.example"));

    UNIT_CASE("served: the manifest in slices");
    {
        apr_array_header_t *names;
        int end;

        CHECK_EQ_INT(csy_store_manifest_slice(&names, &end, store, pool, 0,
                                              2), APR_SUCCESS);
        CHECK_STR(joined(names), "a.example,b.example");
        CHECK(!end);
        CHECK_EQ_INT(csy_store_manifest_slice(&names, &end, store, pool, 2,
                                              2), APR_SUCCESS);
        CHECK_STR(joined(names), "n.example");
        CHECK(end);
        CHECK_EQ_INT(csy_store_manifest_slice(&names, &end, store, pool, 9,
                                              2), APR_SUCCESS);
        CHECK(names->nelts == 0 && end);
    }
    apr_pool_destroy(pp);
}

static void test_validation(void)
{
    static const char *bad_domains[] = {
        "", ".", "..", "a..b", ".a", "a.", "a/b", "../x", "x/../y", "A.com",
        "a b", "a_b.example", "a\nb", "current/..", NULL
    };
    static const char *bad_serials[] = {
        "", "xyz", "0g", "01/", "../01", ".tmp-01", "current", " 01",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        NULL
    };
    csy_store_t *store = open_store("val");
    apr_array_header_t *arr;
    char longname[300];
    int i;

    if (!store) {
        return;
    }
    UNIT_CASE("bad domains");
    for (i = 0; bad_domains[i]; i++) {
        if (!CHECK_EQ_INT(put(store, bad_domains[i], "01"), APR_EINVAL)) {
            printf("  domain \"%s\"\n", bad_domains[i]);
        }
        CHECK_EQ_INT(csy_store_rollback(store, pool, bad_domains[i]),
                     APR_EINVAL);
        CHECK_EQ_INT(csy_store_prune(store, pool, bad_domains[i]),
                     APR_EINVAL);
        CHECK_STR(csy_store_current(store, pool, bad_domains[i]), NULL);
        CHECK_STR(csy_store_current_dir(store, pool, bad_domains[i]), NULL);
        arr = list(bad_domains[i], NULL);
        CHECK_EQ_INT(csy_store_manifest_write(store, pool, arr), APR_EINVAL);
    }
    CHECK_EQ_INT(put(store, NULL, "01"), APR_EINVAL);
    /* The suite's one rule (lib/cs_name.h): labels of at most 63, at
     * least two, 253 characters in all. */
    memset(longname, 'a', sizeof(longname));
    longname[62] = longname[125] = longname[188] = longname[251] = '.';
    longname[254] = '\0';
    CHECK_EQ_INT(put(store, longname, "01"), APR_EINVAL);
    longname[253] = '\0';
    CHECK_EQ_INT(put(store, longname, "01"), APR_SUCCESS);
    CHECK_EQ_INT(put(store, "localhost", "01"), APR_EINVAL);
    CHECK_EQ_INT(put(store, "10.0.0.1", "01"), APR_EINVAL);

    UNIT_CASE("bad serials");
    for (i = 0; bad_serials[i]; i++) {
        if (!CHECK_EQ_INT(put(store, "ex.com", bad_serials[i]), APR_EINVAL)) {
            printf("  serial \"%s\"\n", bad_serials[i]);
        }
    }
    CHECK_EQ_INT(put(store, "ex.com", NULL), APR_EINVAL);

    UNIT_CASE("bad content");
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "01", NULL, "k", 1,
                                   0), APR_EINVAL);
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "01", "", "k", 1,
                                   0), APR_EINVAL);
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "01", "c", NULL, 1,
                                   0), APR_EINVAL);
    CHECK_EQ_INT(csy_store_install(store, pool, "ex.com", "01", "c", "k", 0,
                                   0), APR_EINVAL);

    UNIT_CASE("nothing escaped the store");
    CHECK(!exists(at("val/x")));
    CHECK(!exists(at("x")));
    CHECK(!exists(at("val/live/ex.com/01")));
    CHECK(!exists(at("val/live/ex.com")));

    UNIT_CASE("good names");
    CHECK_EQ_INT(put(store, "*.example.com", "DEADbeef"), APR_SUCCESS);
    CHECK_STR(csy_store_current(store, pool, "*.example.com"), "DEADbeef");
    CHECK_EQ_INT(put(store, "xn--bcher-kva.example", "0123456789abcdef"),
                 APR_SUCCESS);

    UNIT_CASE("symlinked domain directory");
    CHECK(mkdir(at("elsewhere"), 0755) == 0);
    CHECK(symlink(at("elsewhere"), at("val/live/evil.example")) == 0);
    CHECK_EQ_INT(put(store, "evil.example", "01"), APR_ENOTDIR);
    CHECK(!exists(at("elsewhere/01")));
    CHECK(!exists(at("elsewhere/current")));
    CHECK_EQ_INT(csy_store_prune(store, pool, "evil.example"), APR_ENOTDIR);
}

/* ------------------------------------------------------------------ */
/* Crash safety                                                        */

static const char *crash_domains[] = {
    "a.example", "*.b.example", "c.example"
};
static const char *crash_serials[] = { "0a", "1b", "2c" };
#define CRASH_NDOMAINS 3
/* Put in and taken out of the manifest by patches (csy_served_*). */
#define CRASH_EXTRA "t.example"

/* Contents that name their version, padded so that a torn file cannot
 * pass for a whole one. */
static const char *body(apr_pool_t *p, const char *kind, const char *serial,
                        const char *nonce)
{
    char pad[4097];

    memset(pad, kind[0], sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    return apr_psprintf(p, "%s %s %s\n%s\nEND %s %s %s\n", kind, serial,
                        nonce, pad, kind, serial, nonce);
}

static apr_status_t crash_put(csy_store_t *store, apr_pool_t *p,
                              const char *domain, const char *serial,
                              const char *nonce)
{
    const char *key = body(p, "key", serial, nonce);

    return csy_store_install(store, p, domain, serial,
                             body(p, "chain", serial, nonce), key,
                             strlen(key), 0);
}

/* Set by the batched crash tests (inherited by their children): installs
 * go through csy_store_stage, one sync, csy_store_switch, one sync, as
 * the sync's batches do. */
static int crash_batched;

/* One batch: version j of every domain staged, synced, switched, synced. */
static int crash_batch(csy_store_t *store, apr_pool_t *p, long long n,
                       int j, int scripted)
{
    const char *nonce, *key, *serials[CRASH_NDOMAINS];
    int i, pending[CRASH_NDOMAINS];

    nonce = apr_psprintf(p, "%ld.%" APR_INT64_T_FMT ".%d", (long)getpid(),
                         (apr_int64_t)n, j);
    for (i = 0; i < CRASH_NDOMAINS; i++) {
        serials[i] = crash_serials[scripted ? j % 2 : rand() % 3];
        key = body(p, "key", serials[i], nonce);
        if (csy_store_stage(&pending[i], store, p, crash_domains[i],
                            serials[i], body(p, "chain", serials[i], nonce),
                            key, strlen(key), 0, NULL, 0) != APR_SUCCESS) {
            return 1;
        }
    }
    if (csy_store_sync(store) != APR_SUCCESS) {
        return 1;
    }
    for (i = 0; i < CRASH_NDOMAINS; i++) {
        if (pending[i] && csy_store_switch(store, p, crash_domains[i],
                                           serials[i]) != APR_SUCCESS) {
            return 1;
        }
    }
    return csy_store_sync(store) == APR_SUCCESS ? 0 : 1;
}

/* The sync daemon's start prune runs in steps between its cycles: one
 * pass at a time, a step (one entry of live/) a cycle. */
static csy_prune_t *crash_pass;
static csy_store_t *crash_pass_store;
static apr_pool_t *crash_pass_pool;

static int crash_prune_step(csy_store_t *store)
{
    apr_status_t rv;

    if (crash_pass && crash_pass_store != store) {
        csy_store_prune_end(crash_pass);        /* another run's store */
        crash_pass = NULL;
    }
    if (!crash_pass_pool) {
        apr_pool_create(&crash_pass_pool, pool);
    }
    if (!crash_pass) {
        apr_pool_clear(crash_pass_pool);
        if (csy_store_prune_begin(&crash_pass, store, crash_pass_pool)
            != APR_SUCCESS) {
            return 1;
        }
        crash_pass_store = store;
    }
    rv = csy_store_prune_step(crash_pass, 0);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        return 0;
    }
    csy_store_prune_end(crash_pass);
    crash_pass = NULL;
    return rv != APR_SUCCESS;
}

/* One round of what the sync loop does.  Serials are random, or with
 * scripted: per domain two fresh versions, then the first again, which
 * replaces the directory that is the rollback target until previous
 * moves. */
static int crash_cycle(csy_store_t *store, apr_pool_t *p, long long n,
                       const apr_array_header_t *domains, int scripted)
{
    const char *nonce;
    int i, j;
    apr_status_t rv;

    for (j = 0; crash_batched && j < (scripted ? 3 : 1); j++) {
        if (crash_batch(store, p, n, j, scripted)) {
            return 1;
        }
    }
    for (i = 0; !crash_batched && i < CRASH_NDOMAINS; i++) {
        for (j = 0; j < (scripted ? 3 : 1); j++) {
            nonce = apr_psprintf(p, "%ld.%" APR_INT64_T_FMT ".%d",
                                 (long)getpid(), (apr_int64_t)n, j);
            if (crash_put(store, p, crash_domains[i],
                          crash_serials[scripted ? j % 2 : rand() % 3],
                          nonce) != APR_SUCCESS) {
                return 1;
            }
        }
    }
    if (n % 7 == 0) {
        rv = csy_store_rollback(store, p, crash_domains[n % 3]);
        if (rv != APR_SUCCESS && rv != APR_NOTFOUND) {
            return 2;
        }
    }
    /* The whole list (always at the first cycle: a patch of no manifest
     * would be the whole set), or the sync's patches (csy_served_*): a
     * fourth domain put in (installed first) and taken out again. */
    if ((n % 4 == 0 || n == 1)
        && csy_store_manifest_write(store, p, domains) != APR_SUCCESS) {
        return 3;
    }
    if (n % 4 != 0 && n != 1) {
        csy_served_t *sv;

        if (n % 2 && crash_put(store, p, CRASH_EXTRA, crash_serials[0],
                               apr_psprintf(p, "%" APR_INT64_T_FMT,
                                            (apr_int64_t)n))
                     != APR_SUCCESS) {
            return 8;
        }
        if (csy_store_served_open(&sv, store, p) != APR_SUCCESS) {
            return 9;
        }
        if (n % 2) {
            csy_served_add(sv, CRASH_EXTRA);
        }
        else {
            csy_served_remove(sv, CRASH_EXTRA);
        }
        if (csy_served_write(sv, p) != APR_SUCCESS) {
            return 10;
        }
    }
    if (csy_store_cursor_set(store, n, p) != APR_SUCCESS) {
        return 4;
    }
    if (csy_store_prune(store, p, crash_domains[n % 3]) != APR_SUCCESS) {
        return 5;
    }
    if (n % 5 == 0 && csy_store_prune(store, p, NULL) != APR_SUCCESS) {
        return 6;
    }
    if (crash_prune_step(store)) {
        return 7;
    }
    return 0;
}

static apr_array_header_t *crash_list(apr_pool_t *p)
{
    apr_array_header_t *arr = apr_array_make(p, 3, sizeof(const char *));
    int i;

    for (i = 0; i < CRASH_NDOMAINS; i++) {
        APR_ARRAY_PUSH(arr, const char *) = crash_domains[i];
    }
    return arr;
}

/* The sync loop until killed; traced: one scripted cycle under ptrace. */
static void crash_child(const char *dir, unsigned seed, int traced)
{
    apr_pool_t *cp, *iter;
    csy_store_t *store;
    apr_array_header_t *domains;
    long long n;
    int rc;

#ifdef __linux__
    if (traced) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            _exit(99);
        }
        raise(SIGSTOP);
    }
#endif
    srand(seed);
    crash_pass = NULL;          /* the parent's, if any */
    crash_pass_pool = NULL;
    apr_pool_create(&cp, NULL);
    apr_pool_create(&iter, cp);
    domains = crash_list(cp);
    if (csy_store_open(&store, cp, dir) != APR_SUCCESS
        || csy_store_cursor_get(&n, store, cp) != APR_SUCCESS) {
        _exit(10);
    }
    for (;;) {
        apr_pool_clear(iter);
        rc = crash_cycle(store, iter, ++n, domains, traced);
        if (rc) {
            _exit(10 + rc);
        }
        if (traced) {
            _exit(0);
        }
    }
}

/* One version behind a link: both files whole, of that serial, and of the
 * same install.  NULL if good, else what is wrong. */
static const char *check_version(const char *ddir, const char *link,
                                 apr_pool_t *p)
{
    const char *serial, *chain, *key, *path;
    char kind[16], ser[80], nonce[80], knonce[80];

    serial = link_of(apr_pstrcat(p, ddir, "/", link, NULL), p);
    if (serial == NULL) {
        return apr_psprintf(p, "%s: no link", link);
    }
    path = apr_pstrcat(p, ddir, "/", link, "/fullchain.pem", NULL);
    chain = slurp(path, p, NULL);
    key = slurp(apr_pstrcat(p, ddir, "/", link, "/privkey.pem", NULL), p,
                NULL);
    if (chain == NULL || key == NULL) {
        return apr_psprintf(p, "%s -> %s: %s missing", link, serial,
                            chain ? "privkey.pem" : "fullchain.pem");
    }
    if (sscanf(chain, "%15s %79s %79s", kind, ser, nonce) != 3
        || strcmp(kind, "chain") || strcmp(ser, serial)
        || strcmp(chain, body(p, "chain", serial, nonce))) {
        return apr_psprintf(p, "%s -> %s: fullchain.pem torn or foreign "
                            "(%.40s)", link, serial, chain);
    }
    if (sscanf(key, "%15s %79s %79s", kind, ser, knonce) != 3
        || strcmp(kind, "key") || strcmp(ser, serial)
        || strcmp(key, body(p, "key", serial, knonce))) {
        return apr_psprintf(p, "%s -> %s: privkey.pem torn or foreign "
                            "(%.40s)", link, serial, key);
    }
    if (strcmp(nonce, knonce)) {
        return apr_psprintf(p, "%s -> %s: chain of %s, key of %s", link,
                            serial, nonce, knonce);
    }
    return NULL;
}

/* What a reader may rely on at any moment.  NULL if it holds. */
static const char *check_store(const char *dir, long long min_seq,
                               long long *seq, apr_pool_t *p)
{
    csy_store_t *store;
    apr_array_header_t *domains;
    const char *ddir, *why;
    int i;

    if (csy_store_open(&store, p, dir) != APR_SUCCESS) {
        return "store does not open";
    }
    if (csy_store_cursor_get(seq, store, p) != APR_SUCCESS) {
        return apr_psprintf(p, "cursor does not parse: \"%s\"",
                            slurp(apr_pstrcat(p, dir, "/cursor", NULL), p,
                                  NULL));
    }
    if (*seq < min_seq) {
        return apr_psprintf(p, "cursor went back from %" APR_INT64_T_FMT
                            " to %" APR_INT64_T_FMT, (apr_int64_t)min_seq,
                            (apr_int64_t)*seq);
    }
    if (csy_store_manifest_read(&domains, store, p) != APR_SUCCESS) {
        return "manifest does not parse";
    }
    /* every cycle lists all domains, all of which have a version; the
     * extra one, if listed, has a whole one too */
    if (strcmp(joined(domains), "*.b.example,a.example,c.example")
        && strcmp(joined(domains),
                  "*.b.example,a.example,c.example," CRASH_EXTRA)) {
        return apr_psprintf(p, "manifest lists \"%s\"", joined(domains));
    }
    if (domains->nelts == CRASH_NDOMAINS + 1
        && (why = check_version(apr_pstrcat(p, dir, "/live/" CRASH_EXTRA,
                                            NULL), "current", p))) {
        return apr_pstrcat(p, CRASH_EXTRA ": ", why, NULL);
    }
    for (i = 0; i < CRASH_NDOMAINS; i++) {
        ddir = apr_pstrcat(p, dir, "/live/", crash_domains[i], NULL);
        why = check_version(ddir, "current", p);
        if (why) {
            return apr_pstrcat(p, crash_domains[i], ": ", why, NULL);
        }
        if (!csy_store_current(store, p, crash_domains[i])) {
            return apr_pstrcat(p, crash_domains[i], ": no current", NULL);
        }
        /* the rollback target, when there is one, is whole too */
        if (exists(apr_pstrcat(p, ddir, "/previous", NULL))) {
            why = check_version(ddir, "previous", p);
            if (why) {
                return apr_pstrcat(p, crash_domains[i], ": ", why, NULL);
            }
        }
    }
    return NULL;
}

/* The next run after a crash: it must work and leave no debris. */
static const char *converge(const char *dir, int round, apr_pool_t *p)
{
    csy_store_t *store;
    apr_array_header_t *names;
    const char *serial = apr_psprintf(p, "ff%04x", round);
    const char *nonce = apr_psprintf(p, "converge.%d", round);
    long long seq;
    int i, versions;
    apr_status_t rv;
    DIR *d;
    struct dirent *de;

    if (csy_store_open(&store, p, dir) != APR_SUCCESS
        || csy_store_cursor_get(&seq, store, p) != APR_SUCCESS) {
        return "store does not open";
    }
    for (i = 0; i < CRASH_NDOMAINS; i++) {
        rv = crash_put(store, p, crash_domains[i], serial, nonce);
        if (rv != APR_SUCCESS) {
            return apr_psprintf(p, "install %s: error %d", crash_domains[i],
                                rv);
        }
    }
    names = crash_list(p);
    if (csy_store_manifest_write(store, p, names) != APR_SUCCESS
        || csy_store_cursor_set(store, seq + 1, p) != APR_SUCCESS
        || csy_store_prune(store, p, NULL) != APR_SUCCESS) {
        return "manifest, cursor or prune failed";
    }
    if (count_tmp(dir)) {
        return apr_psprintf(p, "%d temp entries left after prune",
                            count_tmp(dir));
    }
    for (i = 0; i < CRASH_NDOMAINS; i++) {
        if (strcmp(csy_store_current(store, p, crash_domains[i]) ?
                   csy_store_current(store, p, crash_domains[i]) : "",
                   serial)) {
            return apr_psprintf(p, "%s: %s is not current", crash_domains[i],
                                serial);
        }
        d = opendir(apr_pstrcat(p, dir, "/live/", crash_domains[i], NULL));
        if (d == NULL) {
            return "domain directory gone";
        }
        versions = 0;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] != '.' && strcmp(de->d_name, "current")
                && strcmp(de->d_name, "previous")) {
                versions++;
            }
        }
        closedir(d);
        if (versions > 2) {
            return apr_psprintf(p, "%s: %d versions after prune",
                                crash_domains[i], versions);
        }
    }
    return NULL;
}

static long long now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* After a kill: what a reader sees must hold, the next run must converge,
 * and it must hold again.  A broken store is rebuilt so the next round
 * tests something.  Returns 0 if all was well. */
static int after_kill(const char *dir, int round, unsigned seed,
                      long long *seen, int *bad, apr_pool_t *p)
{
    csy_store_t *store;
    const char *why;
    long long seq = 0;

    why = check_store(dir, *seen, &seq, p);
    if (why == NULL) {
        *seen = seq;
        why = converge(dir, round, p);
    }
    if (why == NULL) {
        why = check_store(dir, *seen, &seq, p);
        *seen = seq;
    }
    if (why == NULL) {
        return 0;
    }
    if ((*bad)++ < 5) {
        printf("  round %d (seed %u): %s\n", round, seed, why);
    }
    remove_all(dir);
    *seen = 0;
    if (csy_store_open(&store, p, dir) != APR_SUCCESS
        || crash_cycle(store, p, 1, crash_list(p), 0) != 0) {
        return -1;
    }
    return 1;
}

/* kill -9 at random moments of the sync loop. */
static void test_crash_random(const char *dir)
{
    const char *env_rounds = getenv("CSY_CRASH_ROUNDS");
    const char *env_seed = getenv("CSY_CRASH_SEED");
    int rounds = env_rounds ? atoi(env_rounds) : 200;
    unsigned seed = env_seed ? (unsigned)strtoul(env_seed, NULL, 10)
                             : (unsigned)time(NULL) ^ (unsigned)getpid();
    int round, status, bad = 0, child_errors = 0, debris = 0;
    long long t0, cycle_us, max_delay_us, seen = 0;
    apr_pool_t *p;
    csy_store_t *store;
    pid_t pid;

    UNIT_CASE(crash_batched ? "crash safety, random kills mid-batch"
                            : "crash safety, random kills");
    apr_pool_create(&p, pool);
    /* A first complete cycle, timed: the kills must land anywhere in a
     * cycle, and a slow file system (or ASan) makes cycles longer. */
    if (!CHECK_EQ_INT(csy_store_open(&store, p, dir), APR_SUCCESS)) {
        return;
    }
    t0 = now_us();
    CHECK_EQ_INT(crash_cycle(store, p, 1, crash_list(p), 0), 0);
    cycle_us = now_us() - t0;
    max_delay_us = cycle_us * 3 > 2000 ? cycle_us * 3 : 2000;
    if (max_delay_us > 200000) {
        max_delay_us = 200000;
    }
    srand(seed);

    for (round = 0; round < rounds; round++) {
        apr_pool_clear(p);
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
            CHECK(pid >= 0);
            break;
        }
        if (pid == 0) {
            crash_child(dir, seed + round, 0);
        }
        usleep((useconds_t)(rand() % (max_delay_us + 1)));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            if (child_errors++ < 3) {
                printf("  round %d: the child ended by itself (status "
                       "0x%x)\n", round, status);
            }
            continue;
        }
        debris += count_tmp(dir) > 0;
        if (after_kill(dir, round, seed, &seen, &bad, p) < 0) {
            break;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(child_errors, 0);
    CHECK_EQ_INT(round, rounds);
    /* kills mid-write are what the test is for: make sure some happened */
    CHECK(rounds < 20 || debris > 0);
    printf("# crash: %d kills within 0-%lld us (a cycle takes %lld us), "
           "%d left temp entries, seed %u\n", round, max_delay_us, cycle_us,
           debris, seed);
    apr_pool_destroy(p);
}

#ifdef __linux__
/* Run one scripted cycle in a traced child and SIGKILL it as it enters
 * its kill_at-th system call (0: never).  Returns the number of system
 * calls it entered, -1 if tracing is not possible, -2 if the child failed
 * on its own. */
static long traced_run(const char *dir, long kill_at)
{
    pid_t pid;
    int status, sig = 0, in_call = 0;
    long entries = 0;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        crash_child(dir, 1, 1);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) {
        return -1;      /* PTRACE_TRACEME refused: the child exited */
    }
    if (ptrace(PTRACE_SETOPTIONS, pid, NULL,
               (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL))
        != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig) != 0
            || waitpid(pid, &status, 0) != pid) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -2;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? entries
                                                                 : -2;
        }
        sig = 0;
        if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
            sig = WSTOPSIG(status);     /* a real signal: deliver it */
            continue;
        }
        in_call = !in_call;
        /* Killed at the entry stop, the call never runs. */
        if (in_call && ++entries == kill_at) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return entries;
        }
    }
}
#endif

/* kill -9 before each system call of one cycle in turn: the random kills
 * rarely land in a window a few instructions wide, this finds them. */
static void test_crash_syscalls(const char *dir)
{
#ifdef __linux__
    long total, k, got;
    long long seen = 0;
    int bad = 0, child_errors = 0;
    apr_pool_t *p;

    UNIT_CASE(crash_batched
              ? "crash safety, a kill at every system call of batches"
              : "crash safety, a kill at every system call");
    apr_pool_create(&p, pool);
    total = traced_run(dir, 0);
    if (total == -1) {
        printf("# crash: ptrace not permitted, system call kills "
               "skipped\n");
        apr_pool_destroy(p);
        return;
    }
    if (!CHECK(total > 100)) {
        apr_pool_destroy(p);
        return;
    }
    /* converge after the counting run, as after every kill */
    CHECK_EQ_INT(after_kill(dir, 0, 1, &seen, &bad, p), 0);
    for (k = 1; k <= total; k++) {
        apr_pool_clear(p);
        got = traced_run(dir, k);
        if (got < 0) {
            if (child_errors++ < 3) {
                printf("  kill at system call %ld: the child failed\n", k);
            }
            continue;
        }
        if (after_kill(dir, (int)k, 1, &seen, &bad, p) < 0) {
            break;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(child_errors, 0);
    printf("# crash: a kill at each of the %ld system calls of a cycle\n",
           total);
    apr_pool_destroy(p);
#endif
}

int main(void)
{
    const char *parent = getenv("CSY_TEST_TMPDIR");
    struct stat st;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (parent == NULL) {
        parent = (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
                  && access("/dev/shm", W_OK | X_OK) == 0)
                 ? "/dev/shm" : getenv("TMPDIR");
    }
    snprintf(base, sizeof(base), "%s/test_csy_store.XXXXXX",
             parent ? parent : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror(base);
        return 1;
    }

    test_open();
    test_install();
    test_reinstall();
    test_perms();
    test_file_layout();
    test_manifest();
    test_cursor();
    test_unserve();
    test_manifest_large();
    test_prune();
    test_prune_steps();
    test_sorted_form();
    test_served();
    test_validation();
    test_crash_random(at("crash"));
    test_crash_syscalls(at("crash"));
    /* The same kills in the middle of batches (csy_store_stage ...). */
    crash_batched = 1;
    remove_all(at("crash"));
    test_crash_random(at("crash"));
    test_crash_syscalls(at("crash"));

    remove_all(base);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
