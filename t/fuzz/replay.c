/*
 * replay.c: runs a fuzz harness's LLVMFuzzerTestOneInput() over corpus
 * files without libFuzzer, so `make check` replays the corpus with any
 * compiler.
 *
 *     replay_pp_parse t/fuzz/corpus/pp_parse [more dirs or files ...]
 *
 * With no argument it replays $srcdir/t/fuzz/corpus/FUZZ_NAME (FUZZ_NAME
 * is set when the program is built; srcdir defaults to "."), which is how
 * automake's test harness runs it.
 *
 * A failing input aborts inside the harness; the file is then named on
 * stderr.  Ends with "<count> passed, 0 failed"; exits non-zero if no file
 * at all could be read, or if any named file or directory could not be.
 *
 * Built with -DFUZZ_LIBFUZZER (t/fuzz/run.sh) this file is empty and
 * libFuzzer's main() drives the same harness and sources.
 */
#ifndef FUZZ_LIBFUZZER
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verbose;
static const char *current;     /* the input being run, for on_abort() */

/* Names the input that made the harness abort, then dies as before. */
static void on_abort(int sig)
{
    static const char msg[] = "replay: aborted on ";

    if (current) {
        (void)!write(2, msg, sizeof(msg) - 1);
        (void)!write(2, current, strlen(current));
        (void)!write(2, "\n", 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads a whole regular file; returns 0 on success. */
static int slurp(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL, *nbuf;
    size_t len = 0, cap = 0, n;

    if (!f) {
        return -1;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if ((nbuf = realloc(buf, cap)) == NULL) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nbuf;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *data = buf;
    *size = len;
    return 0;
}

static int run_file(const char *path, int *count)
{
    unsigned char *data;
    size_t size;

    if (slurp(path, &data, &size) != 0) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    if (verbose) {
        fprintf(stderr, "replay: %s (%lu bytes)\n", path,
                (unsigned long)size);
    }
    current = path;
    LLVMFuzzerTestOneInput(data, size);
    current = NULL;
    free(data);
    (*count)++;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file directly in dir, in name order. */
static int run_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, **nnames, *path;
    size_t n = 0, cap = 0, i;
    struct stat st;
    int rv = 0;

    if (!d) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            if ((nnames = realloc(names, cap * sizeof(*names))) == NULL) {
                rv = -1;
                break;
            }
            names = nnames;
        }
        if ((names[n] = strdup(e->d_name)) == NULL) {
            rv = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n) {
        qsort(names, n, sizeof(*names), name_cmp);
    }
    for (i = 0; i < n; i++) {
        path = malloc(strlen(dir) + strlen(names[i]) + 2);
        if (path) {
            sprintf(path, "%s/%s", dir, names[i]);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)
                && run_file(path, count) != 0) {
                rv = -1;
            }
            free(path);
        }
        free(names[i]);
    }
    free(names);
    return rv;
}

int main(int argc, char **argv)
{
    struct stat st;
    int i, count = 0, errors = 0;
#ifdef FUZZ_NAME
    static char corpus[4096];
    static char *dflt[3];
    const char *srcdir = getenv("srcdir");
#endif

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        verbose = 1;
        argv++;
        argc--;
    }
#ifdef FUZZ_NAME
    if (argc < 2) {
        snprintf(corpus, sizeof(corpus), "%s/t/fuzz/corpus/%s",
                 srcdir && *srcdir ? srcdir : ".", FUZZ_NAME);
        dflt[0] = argv[0];
        dflt[1] = corpus;
        argv = dflt;
        argc = 2;
    }
#endif
    if (argc < 2) {
        fprintf(stderr, "usage: %s [-v] corpus-dir-or-file ...\n", argv[0]);
        return 2;
    }
    signal(SIGABRT, on_abort);
    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            errors++;
        }
        else if (S_ISDIR(st.st_mode)) {
            errors += run_dir(argv[i], &count) != 0;
        }
        else {
            errors += run_file(argv[i], &count) != 0;
        }
    }
    /* Failures abort in the harness, so any summary has 0 failed. */
    printf("%d passed, 0 failed\n", count);
    return count > 0 && !errors ? 0 : 1;
}

#else
typedef int replay_unused_t;    /* ISO C wants a non-empty file */
#endif /* FUZZ_LIBFUZZER */
