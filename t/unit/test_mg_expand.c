/*
 * test_mg_expand.c: the Use lines of mod_macro_gen and the reader the
 * configuration reader sees them through.
 */
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "mg_expand.h"
#include "mg_manifest.h"
#include "unit.h"

static apr_pool_t *pool;

static apr_array_header_t *entries(int n)
{
    apr_array_header_t *a = apr_array_make(pool, n ? n : 1,
                                           sizeof(cs_manifest_entry_t));
    int i;

    for (i = 0; i < n; i++) {
        cs_manifest_entry_t *e = apr_array_push(a);

        e->domain = apr_psprintf(pool, "d%d.example.com", i);
        e->certdir = apr_psprintf(pool, "/store/d%d", i);
        e->line = i + 2;
    }
    return a;
}

static void test_render(void)
{
    apr_size_t len = 99;
    char *s;

    UNIT_CASE("no entries");
    s = mg_expand_use_lines(&len, pool, "M", NULL, entries(0));
    CHECK_STR(s, "");
    CHECK_EQ_INT(len, 0);

    UNIT_CASE("entries");
    s = mg_expand_use_lines(&len, pool, "TLSHost", NULL, entries(2));
    CHECK_STR(s, "Use TLSHost d0.example.com /store/d0\n"
                 "Use TLSHost d1.example.com /store/d1\n");
    CHECK_EQ_INT(len, strlen(s));

    UNIT_CASE("empty extra is none");
    s = mg_expand_use_lines(&len, pool, "M", "", entries(1));
    CHECK_STR(s, "Use M d0.example.com /store/d0\n");

    UNIT_CASE("extra arguments verbatim");
    s = mg_expand_use_lines(&len, pool, "M", "10.0.0.1 \"a b\" ''",
                            entries(1));
    CHECK_STR(s, "Use M d0.example.com /store/d0 10.0.0.1 \"a b\" ''\n");
    CHECK_EQ_INT(len, strlen(s));

    UNIT_CASE("100,000 entries");
    s = mg_expand_use_lines(&len, pool, "M", "x", entries(100000));
    CHECK_EQ_INT(len, strlen(s));
    CHECK(strncmp(s, "Use M d0.example.com /store/d0 x\n", 33) == 0);
    CHECK(len > 40 && strcmp(s + len - 41,
                             "Use M d99999.example.com /store/d99999 x\n")
                      == 0);
}

static void test_server_names(void)
{
    const char *name, *alias, *why;

    UNIT_CASE("server name: a name is its own");
    why = mg_server_names(&name, &alias, pool, "shop.example.com");
    CHECK(why == NULL);
    CHECK_STR(name, "shop.example.com");
    CHECK(alias == NULL);

    UNIT_CASE("server name: lower case");
    why = mg_server_names(&name, &alias, pool, "Shop.Example.COM");
    CHECK(why == NULL);
    CHECK_STR(name, "shop.example.com");

    UNIT_CASE("server name: a wildcard is '_' under it, and the alias");
    why = mg_server_names(&name, &alias, pool, "*.Example.org");
    CHECK(why == NULL);
    CHECK_STR(name, "_.example.org");
    CHECK_STR(alias, "*.example.org");

    UNIT_CASE("server name: refused names");
    CHECK(mg_server_names(&name, &alias, pool, "www*.example.com") != NULL);
    CHECK(mg_server_names(&name, &alias, pool, "*.*.example.com") != NULL);
    CHECK(mg_server_names(&name, &alias, pool, "_.example.com") != NULL);
    CHECK(mg_server_names(&name, &alias, pool, "localhost") != NULL);
    CHECK(mg_server_names(&name, &alias, pool, "") != NULL);
    CHECK(name == NULL && alias == NULL);
}

/* The reader gives the next piece, want, from line (unless NO_LINE). */
#define NO_LINE (-2)
static void next_piece(mg_reader_t *r, char *buf, apr_size_t size,
                       const char *want, int line)
{
    CHECK_EQ_INT(mg_reader_gets(buf, size, r), APR_SUCCESS);
    CHECK_STR(buf, want);
    if (line != NO_LINE) {
        CHECK_EQ_INT(r->line, line);
    }
}

static void test_reader(void)
{
    static const char text[] = "first line\nsecond\n\nlast, no newline";
    mg_reader_t r;
    char buf[64], small[5], *joined;
    apr_status_t rv;

    UNIT_CASE("whole lines");
    mg_reader_init(&r, text, sizeof(text) - 1);
    CHECK_EQ_INT(r.line, -1);
    next_piece(&r, buf, sizeof(buf), "first line\n", 0);
    next_piece(&r, buf, sizeof(buf), "second\n", 1);
    next_piece(&r, buf, sizeof(buf), "\n", 2);
    next_piece(&r, buf, sizeof(buf), "last, no newline", 3);
    CHECK_EQ_INT(mg_reader_gets(buf, sizeof(buf), &r), APR_EOF);
    CHECK_EQ_INT(mg_reader_gets(buf, sizeof(buf), &r), APR_EOF);

    /* The configuration reader starts with a small buffer and reads the
     * rest of a long line into a bigger one: pieces, same line index. */
    UNIT_CASE("pieces of a long line");
    mg_reader_init(&r, text, sizeof(text) - 1);
    next_piece(&r, small, sizeof(small), "firs", 0);
    next_piece(&r, small, sizeof(small), "t li", NO_LINE);
    next_piece(&r, small, sizeof(small), "ne\n", 0);
    next_piece(&r, small, sizeof(small), "seco", 1);

    UNIT_CASE("pieces join up to the text");
    mg_reader_init(&r, text, sizeof(text) - 1);
    joined = "";
    while ((rv = mg_reader_gets(small, sizeof(small), &r)) == APR_SUCCESS) {
        joined = apr_pstrcat(pool, joined, small, NULL);
    }
    CHECK_EQ_INT(rv, APR_EOF);
    CHECK_STR(joined, text);
    CHECK_EQ_INT(r.line, 3);

    UNIT_CASE("buffer too small");
    mg_reader_init(&r, text, sizeof(text) - 1);
    CHECK_EQ_INT(mg_reader_gets(small, 1, &r), APR_EINVAL);
    CHECK_EQ_INT(mg_reader_gets(small, 2, &r), APR_SUCCESS);
    CHECK_STR(small, "f");

    UNIT_CASE("bytes");
    mg_reader_init(&r, "ab\nc", 4);
    CHECK_EQ_INT(mg_reader_getc(buf, &r), APR_SUCCESS);
    CHECK_EQ_INT(buf[0], 'a');
    CHECK_EQ_INT(r.line, 0);
    mg_reader_getc(buf, &r);
    mg_reader_getc(buf, &r);
    CHECK_EQ_INT(buf[0], '\n');
    CHECK_EQ_INT(r.line, 0);
    CHECK_EQ_INT(mg_reader_getc(buf, &r), APR_SUCCESS);
    CHECK_EQ_INT(buf[0], 'c');
    CHECK_EQ_INT(r.line, 1);
    CHECK_EQ_INT(mg_reader_getc(buf, &r), APR_EOF);

    UNIT_CASE("empty buffer");
    mg_reader_init(&r, "", 0);
    CHECK_EQ_INT(mg_reader_gets(buf, sizeof(buf), &r), APR_EOF);
    CHECK_EQ_INT(mg_reader_getc(buf, &r), APR_EOF);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);

    test_render();
    test_reader();
    test_server_names();

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
