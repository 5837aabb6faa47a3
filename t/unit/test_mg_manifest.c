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

#define HDR CS_MANIFEST_HEADER "\n"

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
    m = parse(CS_MANIFEST_HEADER, &err);
    CHECK_STR(err, NULL);
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("header with CRLF");
    m = parse(CS_MANIFEST_HEADER "\r\na.example.com /c/a\r\n", &err);
    CHECK_STR(err, NULL);
    if (CHECK_EQ_INT(m->entries->nelts, 1)) {
        CHECK_STR(entry(m, 0)->certdir, "/c/a");
    }

    UNIT_CASE("empty file");
    m = parse("", &err);
    CHECK(err && strstr(err, "empty file"));
    CHECK_EQ_INT(m->entries->nelts, 0);

    UNIT_CASE("other version");
    m = parse("# certsync manifest v2\na.example.com /c/a\n", &err);
    CHECK(err && strstr(err, "unsupported manifest version "
                        "'# certsync manifest v2'"));
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
    m = parse(CS_MANIFEST_HEADER " \n", &err);
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
    test_domains();
    test_printable();
    test_files();

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
