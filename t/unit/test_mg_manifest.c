/*
 * test_mg_manifest.c: the certsync manifest as mod_macro_gen reads it: the
 * parser (lib/cs_manifest.c), the domain rule it applies (lib/cs_name.c)
 * and the entry file checks (mg_manifest.c).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_layout.h"
#include "cs_name.h"
#include "mg_manifest.h"
#include "unit.h"

/* Version 1: the same grammar as 2, but absolute certdirs only; most
 * cases below hold for both. */
#define HDR CS_MANIFEST_HEADER_V1 "\n"
#define HDR2 CS_MANIFEST_HEADER_V2 "\n"

static apr_pool_t *pool;

static cs_manifest_t *parse(const char *text, const char **err)
{
    cs_manifest_t *m = NULL;

    *err = cs_manifest_parse(&m, pool, text, strlen(text));
    return m;
}

static const cs_manifest_entry_t *entry(const cs_manifest_t *m, int i)
{
    return &((const cs_manifest_entry_t *)m->entries->elts)[i];
}

static const cs_manifest_problem_t *problem(const cs_manifest_t *m, int i)
{
    return &((const cs_manifest_problem_t *)m->problems->elts)[i];
}

/* A one-line manifest body is refused; the reason contains want. */
static void bad_line(const char *name, const char *line, const char *want)
{
    const char *err;
    cs_manifest_t *m = parse(apr_pstrcat(pool, HDR, line, "\n", NULL), &err);

    UNIT_CASE(name);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->entries->nelts, 0);
    if (CHECK_EQ_INT(m->problems->nelts, 1)) {
        CHECK_EQ_INT(problem(m, 0)->line, 2);
        if (!CHECK(strstr(problem(m, 0)->reason, want) != NULL)) {
            printf("    reason: %s\n", problem(m, 0)->reason);
        }
    }
}

static void domain(const char *name, int ok)
{
    const char *why = cs_name_check(pool, name, strlen(name),
                                    CS_NAME_ANY_CASE);

    UNIT_CASE(name);
    if (ok) {
        CHECK_STR(why, NULL);
    }
    else {
        CHECK(why != NULL);
    }
}

static void test_header(void)
{
    const char *err;
    cs_manifest_t *m;

    UNIT_CASE("header only");
    m = parse(HDR, &err);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->entries->nelts, 0);
    CHECK_EQ_INT(m->problems->nelts, 0);

    UNIT_CASE("header without newline");
    m = parse(CS_MANIFEST_HEADER_V1, &err);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("header with CRLF");
    m = parse(CS_MANIFEST_HEADER_V1 "\r\na.example.com /c/a\r\n", &err);
    CHECK_STR(err, NULL);
    if (CHECK_EQ_INT(m->entries->nelts, 1)) {
        CHECK_STR(entry(m, 0)->certdir, "/c/a");
    }

    UNIT_CASE("empty file");
    m = parse("", &err);
    CHECK(err && strstr(err, "empty file"));
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("other version");
    m = parse("# certsync manifest v3\na.example.com /c/a\n", &err);
    CHECK(err && strstr(err, "unsupported manifest version "
                        "'# certsync manifest v3'"));
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("no header");
    m = parse("a.example.com /c/a\n", &err);
    CHECK(err && strstr(err, "not a certsync manifest"));
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("header not on the first line");
    m = parse("\n" HDR, &err);
    CHECK(err && strstr(err, "not a certsync manifest"));

    UNIT_CASE("byte-order mark");
    m = parse("\xef\xbb\xbf" HDR, &err);
    CHECK(err && strstr(err, "not a certsync manifest"));

    UNIT_CASE("header with trailing space");
    m = parse(CS_MANIFEST_HEADER_V1 " \n", &err);
    CHECK(err != NULL);
}

static void test_entries(void)
{
    const char *err;
    cs_manifest_t *m;

    UNIT_CASE("entries, comments, blank lines");
    m = parse(HDR
              "# a comment\n"
              "example.com /var/lib/certsync/live/example.com/current\n"
              "\n"
              "   \t \n"
              "*.example.net\t/store/live/*.example.net/current\n"
              "#another comment with  spaces and \"quotes\"\n"
              "Mixed-Case.Example.ORG /x/y_z/a+b=c,d:e@f~g.h\n"
              "last.example.com /no/newline", &err);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->problems->nelts, 0);
    if (CHECK_EQ_INT(m->entries->nelts, 4)) {
        CHECK_STR(entry(m, 0)->domain, "example.com");
        CHECK_STR(entry(m, 0)->certdir,
                  "/var/lib/certsync/live/example.com/current");
        CHECK_EQ_INT(entry(m, 0)->line, 3);
        CHECK_STR(entry(m, 1)->domain, "*.example.net");
        CHECK_STR(entry(m, 1)->certdir, "/store/live/*.example.net/current");
        CHECK_EQ_INT(entry(m, 1)->line, 6);
        CHECK_STR(entry(m, 2)->domain, "Mixed-Case.Example.ORG");
        CHECK_STR(entry(m, 2)->certdir, "/x/y_z/a+b=c,d:e@f~g.h");
        CHECK_EQ_INT(entry(m, 2)->line, 8);
        CHECK_STR(entry(m, 3)->domain, "last.example.com");
        CHECK_STR(entry(m, 3)->certdir, "/no/newline");
        CHECK_EQ_INT(entry(m, 3)->line, 9);
    }

    UNIT_CASE("good and bad lines keep their order and numbers");
    m = parse(HDR
              "a.example.com /c/a\n"
              "b.example.com relative/b\n"
              "c.example.com /c/c\n"
              "d_example.com /c/d\n"
              "e.example.com /c/e\n", &err);
    CHECK_STR(err, NULL);
    if (CHECK_EQ_INT(m->entries->nelts, 3)) {
        CHECK_EQ_INT(entry(m, 0)->line, 2);
        CHECK_EQ_INT(entry(m, 1)->line, 4);
        CHECK_EQ_INT(entry(m, 2)->line, 6);
    }
    if (CHECK_EQ_INT(m->problems->nelts, 2)) {
        CHECK_EQ_INT(problem(m, 0)->line, 3);
        CHECK_STR(problem(m, 0)->domain, "b.example.com");
        CHECK_EQ_INT(problem(m, 1)->line, 5);
        CHECK_STR(problem(m, 1)->domain, "d_example.com");
    }

    UNIT_CASE("duplicates, case-insensitive");
    m = parse(HDR
              "a.example.com /c/a\n"
              "A.Example.COM /c/a2\n"
              "a.example.com /c/a3\n", &err);
    CHECK_EQ_INT(m->entries->nelts, 1);
    if (CHECK_EQ_INT(m->problems->nelts, 2)) {
        CHECK_EQ_INT(problem(m, 0)->line, 3);
        CHECK(strstr(problem(m, 0)->reason, "first listed on line 2"));
        CHECK_EQ_INT(problem(m, 1)->line, 4);
    }

    UNIT_CASE("wildcard and plain name are different domains");
    m = parse(HDR "*.example.com /c/w\nexample.com /c/p\n", &err);
    CHECK_EQ_INT(m->entries->nelts, 2);
    CHECK_EQ_INT(m->problems->nelts, 0);

    UNIT_CASE("the domain in a problem is printable");
    m = parse(HDR "a\x01\xff\\b.example.com /c\n", &err);
    if (CHECK_EQ_INT(m->problems->nelts, 1)) {
        CHECK_STR(problem(m, 0)->domain, "a\\x01\\xff\\x5cb.example.com");
    }

    UNIT_CASE("a NUL byte");
    {
        static const char text[] = HDR "a.example.com /c/a\0x\n"
                                   "b.example.com /c/b\n";

        err = cs_manifest_parse(&m, pool, text, sizeof(text) - 1);
        CHECK_STR(err, NULL);
        if (CHECK_EQ_INT(m->entries->nelts, 1)) {
            CHECK_STR(entry(m, 0)->domain, "b.example.com");
        }
        if (CHECK_EQ_INT(m->problems->nelts, 1)) {
            CHECK(strstr(problem(m, 0)->reason, "NUL"));
            CHECK(problem(m, 0)->domain == NULL);
        }
    }

    /* Fields and separators */
    bad_line("no certdir", "a.example.com", "no certdir");
    bad_line("separator only", "a.example.com ", "trailing whitespace");
    bad_line("two spaces", "a.example.com  /c/a", "more than one");
    bad_line("space and tab", "a.example.com \t/c/a", "more than one");
    bad_line("trailing space", "a.example.com /c/a ", "trailing whitespace");
    bad_line("trailing tab", "a.example.com /c/a\t", "trailing whitespace");
    bad_line("extra field", "a.example.com /c/a x", "extra fields");
    bad_line("leading space", " a.example.com /c/a", "leading whitespace");
    bad_line("indented comment", "  # note", "leading whitespace");

    /* The certdir */
    bad_line("relative certdir", "a.example.com c/a", "absolute");
    bad_line("dot certdir", "a.example.com ./c", "absolute");
    bad_line("quote", "a.example.com /c/\"a", "not allowed in a certdir");
    bad_line("apostrophe", "a.example.com /c/'a", "not allowed in a certdir");
    bad_line("backslash", "a.example.com /c\\a", "not allowed in a certdir");
    bad_line("variable", "a.example.com /c/${HOME}", "'$'");
    bad_line("bracket", "a.example.com /c/a>", "'>'");
    bad_line("non-ASCII", "a.example.com /c/\xc3\xa9", "'\\xc3'");
    bad_line("control", "a.example.com /c/\x7f", "'\\x7f'");
    {
        char *dir = apr_palloc(pool, CS_MANIFEST_CERTDIR_MAX + 2);

        memset(dir, 'd', CS_MANIFEST_CERTDIR_MAX + 1);
        dir[0] = '/';
        dir[CS_MANIFEST_CERTDIR_MAX + 1] = '\0';
        bad_line("certdir too long",
                 apr_pstrcat(pool, "a.example.com ", dir, NULL), "longer");
        dir[CS_MANIFEST_CERTDIR_MAX] = '\0';
        UNIT_CASE("certdir at the limit");
        m = parse(apr_pstrcat(pool, HDR "a.example.com ", dir, "\n", NULL),
                  &err);
        CHECK_EQ_INT(m->entries->nelts, 1);
    }

    /* The domain, through the parser */
    bad_line("path in domain", "a/b.example.com /c", "'/'");
    bad_line("dotdot domain", "../etc /c", "empty label");
    bad_line("colon in domain", "a.example.com:443 /c", "':'");
}

/* A source of n generated v1 lines of about 100 bytes each, never held
 * in memory: a manifest as large as one likes, cheaply. */
typedef struct {
    long n, next;
    char line[160];
    apr_size_t len, pos;
    int header;
    apr_size_t chunk;           /* most bytes per read */
    apr_uint64_t bytes;
} gen_t;

static apr_status_t gen_read(void *baton, char *buf, apr_size_t *len)
{
    gen_t *g = baton;
    apr_size_t got = 0, k;

    if (g->chunk && *len > g->chunk) {
        *len = g->chunk;
    }
    while (got < *len) {
        if (g->pos == g->len) {
            if (!g->header) {
                g->len = (apr_size_t)apr_snprintf(g->line, sizeof(g->line),
                                                  "%s\n",
                                                  CS_MANIFEST_HEADER_V1);
                g->header = 1;
            }
            else if (g->next < g->n) {
                g->next++;
                g->len = (apr_size_t)apr_snprintf(
                    g->line, sizeof(g->line), "d%ld.big.example /var/lib/"
                    "certsync/store-of-a-proxy/live/d%ld.big.example/"
                    "current\n", g->next, g->next);
            }
            else {
                break;
            }
            g->pos = 0;
        }
        k = g->len - g->pos;
        if (k > *len - got) {
            k = *len - got;
        }
        memcpy(buf + got, g->line + g->pos, k);
        g->pos += k;
        got += k;
    }
    g->bytes += got;
    *len = got;
    return APR_SUCCESS;
}

static void test_stream(void)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    apr_status_t rv;
    apr_pool_t *p;
    const char *why;
    gen_t g;
    long n = 0, bad = 0;
    char *big, *text;

    /* The old reader refused a file over 64 MiB as a whole: about 720,000
     * store lines.  The stream has no limit: 900,000 lines of 86 to 88
     * bytes (78 MB), in reads of odd sizes. */
    UNIT_CASE("stream: a manifest larger than 64 MiB");
    memset(&g, 0, sizeof(g));
    g.n = 900000;
    g.chunk = 65521;
    apr_pool_create(&p, pool);
    rv = cs_manifest_reader_create(&r, &why, p, gen_read, NULL, &g, NULL);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    CHECK_EQ_INT(rv == APR_SUCCESS ? cs_manifest_version(r) : 0, 1);
    while (rv == APR_SUCCESS
           && (rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        if (e && e->line == n + 2) {
            n++;
        }
        else {
            bad++;
        }
    }
    CHECK_EQ_INT(rv, APR_EOF);
    CHECK_EQ_INT(n, 900000);
    CHECK_EQ_INT(bad, 0);
    CHECK(g.bytes > (apr_uint64_t)64 * 1024 * 1024);
    apr_pool_destroy(p);

    UNIT_CASE("stream: one byte at a time is the same parse");
    memset(&g, 0, sizeof(g));
    g.n = 300;
    g.chunk = 1;
    apr_pool_create(&p, pool);
    n = 0;
    rv = cs_manifest_reader_create(&r, &why, p, gen_read, NULL, &g, NULL);
    while (rv == APR_SUCCESS
           && (rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        n += e != NULL;
        if (e && e->line == 301) {
            CHECK_STR(e->certdir, "/var/lib/certsync/store-of-a-proxy/live/"
                      "d300.big.example/current");
        }
    }
    CHECK_EQ_INT(rv, APR_EOF);
    CHECK_EQ_INT(n, 300);
    apr_pool_destroy(p);

    /* A line over CS_MANIFEST_LINE_MAX is skipped without being held:
     * a problem unless it is a comment or blank; the next line reads. */
    UNIT_CASE("stream: lines longer than 4096 bytes");
    big = apr_palloc(pool, 10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    memcpy(big, "long.example.com /", 18);
    text = apr_pstrcat(pool, HDR2, big, "\n#", big, "\n", NULL);
    memset(big, ' ', 9999);
    text = apr_pstrcat(pool, text, big, "\r\nok.example.com /c/ok\n",
                       NULL);
    {
        cs_manifest_t *m;

        CHECK_STR(cs_manifest_parse(&m, pool, text, strlen(text)), NULL);
        if (CHECK_EQ_INT(m->problems->nelts, 1)) {
            CHECK_EQ_INT(problem(m, 0)->line, 2);
            CHECK_STR(problem(m, 0)->domain, "long.example.com");
            CHECK(strstr(problem(m, 0)->reason, "longer than 4096"));
        }
        if (CHECK_EQ_INT(m->entries->nelts, 1)) {
            CHECK_STR(entry(m, 0)->domain, "ok.example.com");
            CHECK_EQ_INT(entry(m, 0)->line, 5);
        }
    }
}

/* Version 2: certdirs relative to the manifest's directory. */
static void test_v2(void)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    cs_manifest_t *m;
    apr_array_header_t *list;
    cs_manifest_entry_t *x;
    const char *err, *dir, *path, *text;
    apr_status_t rv;
    FILE *f;

    UNIT_CASE("v2: relative and absolute certdirs");
    m = parse(HDR2 "a.example.com live/a.example.com/current\n"
              "b.example.com /abs/b\n"
              "c.example.com ./c\n", &err);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->problems->nelts, 0);
    if (CHECK_EQ_INT(m->entries->nelts, 3)) {
        /* In memory there is no directory: left as written. */
        CHECK_STR(entry(m, 0)->certdir, "live/a.example.com/current");
        CHECK_STR(entry(m, 1)->certdir, "/abs/b");
        CHECK_STR(entry(m, 0)->name, "a.example.com");
    }

    UNIT_CASE("v2: a file's relative certdirs are under its directory");
    dir = apr_psprintf(pool, "/tmp/test_mg_manifest.%ld", (long)getpid());
    mkdir(dir, 0700);
    path = apr_pstrcat(pool, dir, "/manifest", NULL);
    f = fopen(path, "w");
    fputs(HDR2 "A.Example.com live/a.example.com/current\n"
          "b.example.com /abs/b\n"
          "bad_name live/x\n", f);
    fclose(f);
    rv = cs_manifest_open(&r, &err, pool, path);
    CHECK_EQ_INT(rv, APR_SUCCESS);
    if (rv == APR_SUCCESS) {
        CHECK_EQ_INT(cs_manifest_version(r), 2);
        CHECK_EQ_INT(cs_manifest_next(&e, &pr, r), APR_SUCCESS);
        if (CHECK(e != NULL)) {
            CHECK_STR(e->certdir, apr_pstrcat(pool, dir,
                                              "/live/a.example.com/current",
                                              NULL));
            CHECK_STR(e->domain, "A.Example.com");
            CHECK_STR(e->name, "a.example.com");
        }
        CHECK_EQ_INT(cs_manifest_next(&e, &pr, r), APR_SUCCESS);
        if (CHECK(e != NULL)) {
            CHECK_STR(e->certdir, "/abs/b");
        }
        CHECK_EQ_INT(cs_manifest_next(&e, &pr, r), APR_SUCCESS);
        CHECK(e == NULL && pr != NULL && pr->line == 4);
        CHECK_EQ_INT(cs_manifest_next(&e, &pr, r), APR_EOF);
    }

    UNIT_CASE("v2: a file that changes size while read");
    f = fopen(path, "w");
    fputs(HDR2 "a.example.com live/a\n", f);
    fclose(f);
    rv = cs_manifest_open(&r, &err, pool, path);
    f = fopen(path, "a");
    fputs("b.example.com live/b\n", f);
    fclose(f);
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        /* The first read had the whole (small) file; its next read sees
         * more than the size it was opened with. */
        while ((rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        }
        CHECK_EQ_INT(rv, APR_EAGAIN);
    }

    /* Sorted (as mod_certsync writes): no index; the first name out of
     * order indexes what came before in a second pass (seek), and the
     * reader goes on where it was. */
    UNIT_CASE("v2: duplicates after the names go out of order (file)");
    f = fopen(path, "w");
    fputs(HDR2 "b.example.com /c\nc.example.com /c\nc.example.com /c2\n"
          "a.example.com /c\nB.example.com /c\nc.example.com /c\n"
          "d.example.com /c\n", f);
    fclose(f);
    rv = cs_manifest_open(&r, &err, pool, path);
    if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
        const char *got = "";

        while ((rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
            got = e ? apr_psprintf(pool, "%s %d:%s", got, e->line, e->name)
                    : apr_psprintf(pool, "%s %d!%s", got, pr->line,
                                   pr->reason);
        }
        CHECK_EQ_INT(rv, APR_EOF);
        CHECK_STR(got, " 2:b.example.com 3:c.example.com"
                  " 4!duplicate domain, first listed on line 3"
                  " 5:a.example.com"
                  " 6!duplicate domain, first listed on line 2"
                  " 7!duplicate domain, first listed on line 3"
                  " 8:d.example.com");
    }
    UNIT_CASE("v2: duplicates after the names go out of order (memory)");
    m = parse(HDR2 "b.example.com /c\nc.example.com /c\nc.example.com /c2\n"
              "a.example.com /c\nB.example.com /c\nc.example.com /c\n"
              "d.example.com /c\n", &err);
    CHECK_EQ_INT(m->entries->nelts, 4);
    if (CHECK_EQ_INT(m->problems->nelts, 3)) {
        CHECK_EQ_INT(problem(m, 1)->line, 6);
        CHECK(strstr(problem(m, 1)->reason, "line 2") != NULL);
    }

    UNIT_CASE("v2: a relative certdir too long once made absolute");
    {
        char rel[1011];

        memset(rel, 'r', sizeof(rel) - 1);
        rel[sizeof(rel) - 1] = '\0';
        f = fopen(path, "w");
        fprintf(f, HDR2 "a.example.com %s\n", rel);
        fclose(f);
        rv = cs_manifest_open(&r, &err, pool, path);
        if (CHECK_EQ_INT(rv, APR_SUCCESS)) {
            CHECK_EQ_INT(cs_manifest_next(&e, &pr, r), APR_SUCCESS);
            CHECK(e == NULL && pr && strstr(pr->reason, "once made absolute"));
        }
    }

    UNIT_CASE("v2: not a regular file, missing");
    CHECK_EQ_INT(cs_manifest_open(&r, &err, pool, dir), APR_EINVAL);
    CHECK(err == NULL);
    CHECK(APR_STATUS_IS_ENOENT(cs_manifest_open(&r, &err, pool,
                                                apr_pstrcat(pool, dir,
                                                            "/none",
                                                            NULL))));
    unlink(path);
    rmdir(dir);

    UNIT_CASE("v2: the writer writes v2, relative certdirs allowed");
    list = apr_array_make(pool, 2, sizeof(cs_manifest_entry_t));
    x = apr_array_push(list);
    memset(x, 0, sizeof(*x));
    x->domain = "a.example.com";
    x->certdir = "live/a.example.com/current";
    text = cs_manifest_text(&err, pool, list);
    CHECK_STR(text, CS_MANIFEST_HEADER_V2 "\n"
              "a.example.com live/a.example.com/current\n");
    x = apr_array_push(list);
    memset(x, 0, sizeof(*x));
    x->domain = "b.example.com";
    x->certdir = "live/b c";
    CHECK(cs_manifest_text(&err, pool, list) == NULL);
    CHECK(err && strstr(err, "entry 2"));
}

static void test_domains(void)
{
    char name[300];

    domain("example.com", 1);
    domain("a.b.c.d.example.com", 1);
    domain("xn--bcher-kva.example", 1);
    domain("EXAMPLE.com", 1);
    /* The suite's one rule (lib/cs_name.h), as CertService applies it: an
     * all-digit top-level label is an IP address, and "ab--" is reserved
     * for IDNA's "xn--". */
    domain("1.2.3.4", 0);
    domain("123.example", 1);
    domain("ab--cd.example.com", 0);
    domain("a-b.example.com", 1);
    domain("*.example.com", 1);
    domain("", 0);
    domain("com", 0);
    domain("*.com", 0);
    domain("*", 0);
    domain("*.", 0);
    domain("a.*.example.com", 0);
    domain("*a.example.com", 0);
    domain("**.example.com", 0);
    domain("example.com.", 0);
    domain(".example.com", 0);
    domain("a..example.com", 0);
    domain("-a.example.com", 0);
    domain("a-.example.com", 0);
    domain("a_b.example.com", 0);
    domain("a b.example.com", 0);
    domain("caf\xc3\xa9.example.com", 0);

    memset(name, 'a', 63);
    strcpy(name + 63, ".example.com");
    domain(name, 1);
    memset(name, 'a', 64);
    strcpy(name + 64, ".example.com");
    domain(name, 0);

    /* 253 characters: four labels of 62 plus dots and "c" */
    memset(name, 'a', sizeof(name));
    name[62] = name[125] = name[188] = name[251] = '.';
    name[253] = '\0';
    domain(name, 1);
    name[253] = 'c';
    name[254] = '\0';
    domain(name, 0);
    /* the wildcard counts */
    name[253] = '\0';
    domain(apr_pstrcat(pool, "*.", name, NULL), 0);
    domain(apr_pstrcat(pool, "*.", name + 2, NULL), 1);
}

static void test_printable(void)
{
    UNIT_CASE("printable");
    CHECK_STR(cs_printable(pool, "abc", 3, 80), "abc");
    CHECK_STR(cs_printable(pool, "a\nb", 3, 80), "a\\x0ab");
    CHECK_STR(cs_printable(pool, "abcdef", 6, 3), "abc...");
    CHECK_STR(cs_printable(pool, "", 0, 3), "");
}

static char *make_dir(const char *base, const char *name)
{
    char *dir = apr_pstrcat(pool, base, "/", name, NULL);

    mkdir(dir, 0755);
    return dir;
}

static void put(const char *dir, const char *file, const char *data)
{
    FILE *f = fopen(apr_pstrcat(pool, dir, "/", file, NULL), "w");

    if (f) {
        fputs(data, f);
        fclose(f);
    }
}

/* The entry's files pass (want_file NULL) or fail on want_file, with a
 * reason containing want_why. */
static void files(const char *name, const char *dir, const char *want_file,
                  const char *want_why)
{
    cs_manifest_entry_t e;
    const char *path = NULL, *why;

    e.domain = "a.example.com";
    e.certdir = dir;
    e.line = 2;
    why = mg_entry_check_files(&path, pool, &e);
    UNIT_CASE(name);
    if (!want_file) {
        CHECK_STR(why, NULL);
        return;
    }
    if (CHECK(why != NULL) && !CHECK(strstr(why, want_why) != NULL)) {
        printf("    reason: %s\n", why);
    }
    CHECK_STR(path, apr_pstrcat(pool, dir, "/", want_file, NULL));
}

static void test_files(void)
{
    char tmpl[] = "/tmp/test_mg_manifest.XXXXXX";
    char *base = mkdtemp(tmpl), *d;

    if (!CHECK(base != NULL)) {
        return;
    }

    d = make_dir(base, "ok");
    put(d, CS_LAYOUT_CHAIN, "cert\n");
    put(d, CS_LAYOUT_KEY, "key\n");
    files("both files present", d, NULL, NULL);

    files("no certdir", apr_pstrcat(pool, base, "/none", NULL),
          CS_LAYOUT_CHAIN, "No such file");

    d = make_dir(base, "nokey");
    put(d, CS_LAYOUT_CHAIN, "cert\n");
    files("no key", d, CS_LAYOUT_KEY, "No such file");

    d = make_dir(base, "nocert");
    put(d, CS_LAYOUT_KEY, "key\n");
    files("no certificate", d, CS_LAYOUT_CHAIN, "No such file");

    d = make_dir(base, "empty");
    put(d, CS_LAYOUT_CHAIN, "");
    put(d, CS_LAYOUT_KEY, "key\n");
    files("empty certificate", d, CS_LAYOUT_CHAIN, "empty file");

    d = make_dir(base, "isdir");
    put(d, CS_LAYOUT_CHAIN, "cert\n");
    make_dir(d, CS_LAYOUT_KEY);
    files("key is a directory", d, CS_LAYOUT_KEY, "not a regular file");

    d = make_dir(base, "fifo");
    put(d, CS_LAYOUT_CHAIN, "cert\n");
    mkfifo(apr_pstrcat(pool, d, "/" CS_LAYOUT_KEY, NULL), 0600);
    files("key is a FIFO (and does not hang)", d, CS_LAYOUT_KEY,
          "not a regular file");

    d = make_dir(base, "dangling");
    put(d, CS_LAYOUT_CHAIN, "cert\n");
    symlink("/nonexistent/privkey.pem",
            apr_pstrcat(pool, d, "/" CS_LAYOUT_KEY, NULL));
    files("dangling symlink", d, CS_LAYOUT_KEY, "No such file");

    d = make_dir(base, "link");
    symlink(apr_pstrcat(pool, base, "/ok", NULL),
            apr_pstrcat(pool, d, "/current", NULL));
    files("certdir through a symlink",
          apr_pstrcat(pool, d, "/current", NULL), NULL, NULL);

    /* root reads anything: only an unprivileged run can check this */
    if (geteuid() != 0) {
        d = make_dir(base, "noperm");
        put(d, CS_LAYOUT_CHAIN, "cert\n");
        put(d, CS_LAYOUT_KEY, "key\n");
        chmod(apr_pstrcat(pool, d, "/" CS_LAYOUT_KEY, NULL), 0);
        files("unreadable key", d, CS_LAYOUT_KEY, "Permission denied");
    }

    if (system(apr_pstrcat(pool, "rm -rf '", base, "'", NULL)) != 0) {
        printf("could not remove %s\n", base);
    }
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);

    test_header();
    test_entries();
    test_v2();
    test_stream();
    test_domains();
    test_printable();
    test_files();

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
