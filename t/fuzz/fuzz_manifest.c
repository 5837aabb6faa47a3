/*
 * fuzz_manifest.c: libFuzzer harness for the certsync manifest
 * (lib/cs_manifest.c, docs/manifest.md) and what mod_macro_gen makes of
 * it (mod_macro_gen/mg_expand.c).
 *
 * The input is a whole manifest file.  The harness aborts unless:
 * - it is refused exactly when its first line (without one CR) is neither
 *   the v1 nor the v2 header, and a refused file yields no entry and no
 *   problem;
 * - every accepted entry is a valid name (cs_name_check in any case, and
 *   in lower case as the store keeps it, which is e->name), an allowed
 *   certdir (absolute in v1), listed once (case-insensitively), and is
 *   exactly "DOMAIN SEP CERTDIR" on its line (lines longer than
 *   CS_MANIFEST_LINE_MAX are never entries);
 * - the streamed reader, fed in pieces of 1 to 64 bytes (a size taken
 *   from the input) and given a base directory, yields the same entries
 *   and problems as the whole-buffer parse, with relative certdirs under
 *   the base and absolute ones unchanged;
 * - entries plus skipped lines are the lines that are neither blank nor
 *   comments, each counted once, in order; every problem has a reason and
 *   a printable domain, and its warning text names its line;
 * - the project's writer (cs_manifest_text) takes the accepted entries and
 *   its text parses again to the same entries, with no problem (and is
 *   then a fixed point of parse and write);
 * - the lines MacroGenerate feeds to httpd (mg_expand_use_lines), read
 *   back in pieces the way the configuration reader does, are one
 *   "Use M DOMAIN CERTDIR\n" line per entry, with nothing the reader
 *   would interpret (quotes, backslash, "${").
 * - a file the sync daemon's sorted form accepts (cs_manifest_sorted_check
 *   with the store's certdirs) is one the parser reads whole: an entry per
 *   line, no problem, the names strictly increasing; the binary search
 *   (cs_manifest_sorted_find) finds each name at its own line, and a name
 *   not listed (each name with a byte appended, and two extremes) at the
 *   line it would go before, between smaller and larger names.
 *
 * Built with -fsanitize=fuzzer for fuzzing (t/fuzz/run.sh), or linked with
 * replay.c to run the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "cs_manifest.h"
#include "cs_name.h"
#include "mg_expand.h"

#include "fuzz.h"

#define MACRO   "Site"

static apr_pool_t *root;

/* One line of buf: [*s, *s + *n), CR before LF dropped; returns where the
 * next line starts (end when none). */
static const char *next_line(const char *s, const char *end, apr_size_t *n)
{
    const char *eol = memchr(s, '\n', (apr_size_t)(end - s));

    *n = eol ? (apr_size_t)(eol - s) : (apr_size_t)(end - s);
    if (*n > 0 && s[*n - 1] == '\r') {
        (*n)--;
    }
    return eol ? eol + 1 : end;
}

static int blank_or_comment(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n > 0 && s[0] == '#') {
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t') {
            return 0;
        }
    }
    return 1;
}

static int printable(const char *s)
{
    for (; *s; s++) {
        if (*s < 0x20 || *s > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static void lower(char *s)
{
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

static void same_entries(const apr_array_header_t *a,
                         const apr_array_header_t *b)
{
    int i;

    REQUIRE(a->nelts == b->nelts);
    for (i = 0; i < a->nelts; i++) {
        const cs_manifest_entry_t *x = &APR_ARRAY_IDX(a, i,
                                                      cs_manifest_entry_t);
        const cs_manifest_entry_t *y = &APR_ARRAY_IDX(b, i,
                                                      cs_manifest_entry_t);

        REQUIRE(strcmp(x->domain, y->domain) == 0);
        REQUIRE(strcmp(x->certdir, y->certdir) == 0);
    }
}

/* The accepted entries against the lines of the file. */
static void check_entries(apr_pool_t *p, const cs_manifest_t *m,
                          const char *buf, apr_size_t len, int v2)
{
    const char *s = buf, *end = buf + len;
    apr_hash_t *seen = apr_hash_make(p);
    int line = 0, e = 0, pr = 0, prev = 1;
    apr_size_t n;

    /* Walk the lines once, in step with entries and problems. */
    while (s < end || line == 0) {
        const char *l = s;

        s = next_line(s, end, &n);
        line++;
        if (line == 1 || blank_or_comment(l, n)) {
            REQUIRE(e >= m->entries->nelts
                    || APR_ARRAY_IDX(m->entries, e, cs_manifest_entry_t).line
                       != line);
            REQUIRE(pr >= m->problems->nelts
                    || APR_ARRAY_IDX(m->problems, pr,
                                     cs_manifest_problem_t).line != line);
        }
        else if (e < m->entries->nelts
                 && APR_ARRAY_IDX(m->entries, e, cs_manifest_entry_t).line
                    == line) {
            const cs_manifest_entry_t *x =
                &APR_ARRAY_IDX(m->entries, e, cs_manifest_entry_t);
            apr_size_t dl = strlen(x->domain), cl = strlen(x->certdir);
            char *key;

            REQUIRE(x->line > prev);
            REQUIRE(n <= CS_MANIFEST_LINE_MAX);
            REQUIRE(n == dl + 1 + cl);
            REQUIRE(memcmp(l, x->domain, dl) == 0);
            REQUIRE(l[dl] == ' ' || l[dl] == '\t');
            REQUIRE(memcmp(l + dl + 1, x->certdir, cl) == 0);
            REQUIRE(cs_name_check(p, x->domain, dl, CS_NAME_ANY_CASE)
                    == NULL);
            REQUIRE(cs_manifest_certdir_check(p, x->certdir, cl, v2)
                    == NULL);
            REQUIRE(strpbrk(x->certdir, " \t\"'\\$<>") == NULL);
            /* As mod_certsync keeps it: the store's own rule. */
            key = apr_pstrdup(p, x->domain);
            lower(key);
            REQUIRE(cs_name_check(NULL, key, dl, 0) == NULL);
            REQUIRE(strcmp(key, x->name) == 0);
            REQUIRE(apr_hash_get(seen, key, APR_HASH_KEY_STRING) == NULL);
            apr_hash_set(seen, key, APR_HASH_KEY_STRING, "");
            prev = x->line;
            e++;
        }
        else {
            /* Neither blank nor a comment, not an entry: skipped, named. */
            const cs_manifest_problem_t *y;
            const char *text;

            REQUIRE(pr < m->problems->nelts);
            y = &APR_ARRAY_IDX(m->problems, pr, cs_manifest_problem_t);
            REQUIRE(y->line == line);
            REQUIRE(y->reason != NULL && *y->reason);
            REQUIRE(y->domain == NULL || printable(y->domain));
            text = cs_manifest_problem_text(p, "/m", y);
            REQUIRE(strncmp(text, apr_psprintf(p, "skipping line %d of /m",
                                               line), 20) == 0);
            /* A duplicate names a line with an accepted entry. */
            if (strncmp(y->reason, "duplicate domain", 16) == 0) {
                apr_size_t dl = 0;
                char *key;

                while (dl < n && l[dl] != ' ' && l[dl] != '\t') {
                    dl++;
                }
                key = apr_pstrmemdup(p, l, dl);

                lower(key);
                REQUIRE(apr_hash_get(seen, key, APR_HASH_KEY_STRING));
            }
            pr++;
        }
    }
    REQUIRE(e == m->entries->nelts);
    REQUIRE(pr == m->problems->nelts);
}

/* A source handing out the input in pieces of at most chunk bytes. */
typedef struct {
    const char *buf;
    apr_size_t len, pos, chunk;
} pieces_t;

static apr_status_t pieces_read(void *baton, char *out, apr_size_t *len)
{
    pieces_t *src = baton;
    apr_size_t n = src->len - src->pos;

    if (n > src->chunk) {
        n = src->chunk;
    }
    if (n > *len) {
        n = *len;
    }
    memcpy(out, src->buf + src->pos, n);
    src->pos += n;
    *len = n;
    return APR_SUCCESS;
}

static apr_status_t pieces_seek(void *baton, apr_off_t offset)
{
    pieces_t *src = baton;

    REQUIRE(offset >= 0 && (apr_size_t)offset <= src->len);
    src->pos = (apr_size_t)offset;
    return APR_SUCCESS;
}

/* The streamed reader in small pieces, with a base, against the parse. */
static void check_stream(apr_pool_t *p, const cs_manifest_t *m,
                         const char *buf, apr_size_t len, int accepted)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    pieces_t src;
    const char *why;
    apr_status_t rv;
    int ne = 0, np = 0;

    src.buf = buf;
    src.len = len;
    src.pos = 0;
    src.chunk = 1 + (len ? (unsigned char)buf[len - 1] % 64 : 0);
    rv = cs_manifest_reader_create(&r, &why, p, pieces_read, pieces_seek,
                                   &src, "/b");
    if (!accepted) {
        REQUIRE(rv == APR_EINVAL && why != NULL);
        return;
    }
    REQUIRE(rv == APR_SUCCESS && why == NULL);
    /* A relative certdir that the base makes longer than the limit is a
     * problem in the stream only (and may change which line of a name
     * counts): then only a clean end is required. */
    for (ne = 0; ne < m->entries->nelts; ne++) {
        const char *c = APR_ARRAY_IDX(m->entries, ne,
                                      cs_manifest_entry_t).certdir;

        if (c[0] != '/' && strlen(c) + 3 > CS_MANIFEST_CERTDIR_MAX) {
            while ((rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
                REQUIRE((e == NULL) != (pr == NULL));
                REQUIRE(!e || strlen(e->certdir) <= CS_MANIFEST_CERTDIR_MAX);
            }
            REQUIRE(rv == APR_EOF);
            return;
        }
    }
    ne = 0;
    while ((rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        REQUIRE((e == NULL) != (pr == NULL));
        if (e) {
            const cs_manifest_entry_t *x;

            REQUIRE(ne < m->entries->nelts);
            x = &APR_ARRAY_IDX(m->entries, ne, cs_manifest_entry_t);
            REQUIRE(e->line == x->line);
            REQUIRE(strcmp(e->domain, x->domain) == 0);
            REQUIRE(strcmp(e->name, x->name) == 0);
            if (x->certdir[0] == '/') {
                REQUIRE(strcmp(e->certdir, x->certdir) == 0);
            }
            else {
                REQUIRE(cs_manifest_version(r) == 2);
                REQUIRE(strncmp(e->certdir, "/b/", 3) == 0);
                REQUIRE(strcmp(e->certdir + 3, x->certdir) == 0);
            }
            ne++;
        }
        else {
            const cs_manifest_problem_t *y;

            REQUIRE(np < m->problems->nelts);
            y = &APR_ARRAY_IDX(m->problems, np, cs_manifest_problem_t);
            REQUIRE(pr->line == y->line);
            REQUIRE(strcmp(pr->reason, y->reason) == 0);
            REQUIRE((pr->domain == NULL) == (y->domain == NULL));
            REQUIRE(!pr->domain || strcmp(pr->domain, y->domain) == 0);
            np++;
        }
    }
    REQUIRE(rv == APR_EOF);
    REQUIRE(ne == m->entries->nelts && np == m->problems->nelts);
}

/* What MacroGenerate feeds to httpd for the entries. */
static void check_expand(apr_pool_t *p, const apr_array_header_t *entries,
                         apr_size_t piece)
{
    apr_size_t llen, got = 0;
    const char *lines = mg_expand_use_lines(&llen, p, MACRO, NULL, entries);
    char *out = apr_palloc(p, piece);
    char *copy = apr_palloc(p, llen + 1);
    mg_reader_t rd;
    int i, n = 0;

    REQUIRE(strlen(lines) == llen);
    mg_reader_init(&rd, lines, llen);
    while (mg_reader_gets(out, piece, &rd) == APR_SUCCESS) {
        apr_size_t k = strlen(out);

        REQUIRE(k >= 1 && k <= piece - 1);
        REQUIRE(memcmp(out, lines + got, k) == 0);
        if (out[k - 1] == '\n') {
            n++;
        }
        got += k;
    }
    REQUIRE(got == llen);
    REQUIRE(n == entries->nelts);
    REQUIRE(rd.line == entries->nelts - 1);

    /* One line per entry, four words, nothing to interpret. */
    memcpy(copy, lines, llen + 1);
    for (i = 0; i < entries->nelts; i++) {
        const cs_manifest_entry_t *x = &APR_ARRAY_IDX(entries, i,
                                                      cs_manifest_entry_t);
        const char *want = apr_psprintf(p, "Use " MACRO " %s %s\n",
                                         x->domain, x->certdir);
        apr_size_t wl = strlen(want);

        REQUIRE(strncmp(copy, want, wl) == 0);
        REQUIRE(strpbrk(want + 4 + sizeof(MACRO), "\"'\\$<>") == NULL);
        REQUIRE(memchr(want, '\t', wl) == NULL);
        copy += wl;
    }
    REQUIRE(*copy == '\0');
}

static void check_round_trip(apr_pool_t *p, const cs_manifest_t *m)
{
    const char *why, *text, *text2;
    cs_manifest_t *m2, *m3;
    int i;

    text = cs_manifest_text(&why, p, m->entries);
    REQUIRE(text != NULL && why == NULL);
    REQUIRE(cs_manifest_parse(&m2, p, text, strlen(text)) == NULL);
    REQUIRE(m2->problems->nelts == 0);
    same_entries(m->entries, m2->entries);
    for (i = 0; i < m2->entries->nelts; i++) {
        REQUIRE(APR_ARRAY_IDX(m2->entries, i, cs_manifest_entry_t).line
                == i + 2);
    }
    text2 = cs_manifest_text(&why, p, m2->entries);
    REQUIRE(text2 != NULL && strcmp(text, text2) == 0);
    REQUIRE(cs_manifest_parse(&m3, p, text2, strlen(text2)) == NULL);
    same_entries(m2->entries, m3->entries);
}

/* The name at line start off of an accepted sorted manifest (up to its
 * space), or NULL at the end. */
static const char *sorted_name_at(apr_pool_t *p, const char *buf,
                                  apr_size_t size, apr_size_t off)
{
    const char *sp;

    if (off >= size) {
        return NULL;
    }
    REQUIRE(off > 0 && buf[off - 1] == '\n');
    sp = memchr(buf + off, ' ', size - off);
    REQUIRE(sp != NULL);
    return apr_pstrmemdup(p, buf + off, (apr_size_t)(sp - (buf + off)));
}

/* Where a name not listed is placed: before a larger name (or at the
 * end), after a smaller one (or after the header). */
static void check_sorted_miss(apr_pool_t *p, const char *buf,
                              apr_size_t size, apr_hash_t *names,
                              const char *probe)
{
    apr_size_t off, back;
    const char *at, *before;
    int found;

    off = cs_manifest_sorted_find(&found, buf, size, probe);
    if (apr_hash_get(names, probe, APR_HASH_KEY_STRING)) {
        REQUIRE(found);
        REQUIRE(strcmp(sorted_name_at(p, buf, size, off), probe) == 0);
        return;
    }
    REQUIRE(!found && off <= size);
    at = sorted_name_at(p, buf, size, off);
    REQUIRE(at == NULL || strcmp(at, probe) > 0);
    REQUIRE(off > sizeof(CS_MANIFEST_HEADER_V2) - 1);
    if (off > sizeof(CS_MANIFEST_HEADER_V2)) {
        for (back = off - 1; buf[back - 1] != '\n'; back--) {
        }
        before = sorted_name_at(p, buf, size, back);
        REQUIRE(before != NULL && strcmp(before, probe) < 0);
    }
}

static void check_sorted(apr_pool_t *p, const cs_manifest_t *m,
                         const char *buf, apr_size_t size)
{
    const char *why = cs_manifest_sorted_check(buf, size, "live/",
                                               "/current");
    apr_hash_t *names = apr_hash_make(p);
    apr_size_t off, lines = 0, k;
    const char *prev = NULL, *name;
    int i, found;

    if (why) {
        REQUIRE(*why && printable(why));
        return;
    }
    for (k = 0; k < size; k++) {
        lines += buf[k] == '\n';
    }
    REQUIRE(m->problems->nelts == 0);
    REQUIRE((apr_size_t)m->entries->nelts == lines - 1);
    for (i = 0; i < m->entries->nelts; i++) {
        name = APR_ARRAY_IDX(m->entries, i, cs_manifest_entry_t).name;
        REQUIRE(prev == NULL || strcmp(prev, name) < 0);
        apr_hash_set(names, name, APR_HASH_KEY_STRING, name);
        off = cs_manifest_sorted_find(&found, buf, size, name);
        REQUIRE(found);
        REQUIRE(strcmp(sorted_name_at(p, buf, size, off), name) == 0);
        prev = name;
    }
    for (i = 0; i < m->entries->nelts; i++) {
        name = APR_ARRAY_IDX(m->entries, i, cs_manifest_entry_t).name;
        check_sorted_miss(p, buf, size, names,
                          apr_pstrcat(p, name, "-", NULL));
        check_sorted_miss(p, buf, size, names,
                          apr_pstrmemdup(p, name, strlen(name) - 1));
    }
    check_sorted_miss(p, buf, size, names, "-");
    check_sorted_miss(p, buf, size, names, "~");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data, *why;
    apr_size_t n;
    cs_manifest_t *m;
    apr_pool_t *p;
    int header, v2;

    if (!root) {
        REQUIRE(apr_initialize() == APR_SUCCESS);
        REQUIRE(apr_pool_create(&root, NULL) == APR_SUCCESS);
    }
    apr_pool_create(&p, root);

    next_line(buf, buf + size, &n);
    header = n == sizeof(CS_MANIFEST_HEADER_V1) - 1
             && (memcmp(buf, CS_MANIFEST_HEADER_V1, n) == 0
                 || memcmp(buf, CS_MANIFEST_HEADER_V2, n) == 0);
    v2 = header && memcmp(buf, CS_MANIFEST_HEADER_V2, n) == 0;

    why = cs_manifest_parse(&m, p, buf, size);
    REQUIRE(m != NULL && m->entries && m->problems);
    if (!header) {
        REQUIRE(why != NULL && *why);
        REQUIRE(printable(why));
        REQUIRE(m->entries->nelts == 0 && m->problems->nelts == 0);
    }
    else {
        REQUIRE(why == NULL);
        check_entries(p, m, buf, size, v2);
        check_round_trip(p, m);
        /* The reader's piece size, as a long line meets the
         * configuration reader's buffer: 2 to 257 bytes. */
        check_expand(p, m->entries, 2 + size % 256);
    }
    check_stream(p, m, buf, size, header);
    check_sorted(p, m, buf, size);
    apr_pool_destroy(p);
    return 0;
}
