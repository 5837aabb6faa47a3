/*
 * test_cs_name.c: the suite's domain-name rule (cs_name_check) and its
 * normalisation at CertService's API edge.
 */
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_name.h"
#include "unit.h"

static apr_pool_t *pool;

/* The name normalises to want (NULL: it is refused). */
static void norm(const char *in, const char *want)
{
    const char *out = NULL, *why = cs_name_normalize(&out, pool, in);

    UNIT_CASE(in);
    if (want) {
        CHECK_STR(why, NULL);
        CHECK_STR(out, want);
    }
    else {
        CHECK(why != NULL);
        CHECK(out == NULL);
    }
}

int main(void)
{
    char label63[64], label64[65], longname[300];
    size_t i;

    apr_initialize();
    apr_pool_create(&pool, NULL);

    /* case, trailing dot */
    norm("example.com", "example.com");
    norm("Example.COM", "example.com");
    norm("www.example.com.", "www.example.com");
    norm("a-b.c-d.example", "a-b.c-d.example");
    norm("123.example", "123.example");
    /* wildcards: only as the whole first label */
    norm("*.example.com", "*.example.com");
    norm("*.Example.com.", "*.example.com");
    norm("*", NULL);
    norm("*.com", NULL);
    norm("w*.example.com", NULL);
    norm("www.*.example.com", NULL);
    norm("*.*.example.com", NULL);
    /* IDNA: Unicode labels become A-labels; bad A-labels are refused */
    norm("b\xc3\xbc" "cher.example", "xn--bcher-kva.example");
    norm("B\xc3\x9c" "CHER.example", "xn--bcher-kva.example");
    norm("xn--bcher-kva.example", "xn--bcher-kva.example");
    norm("XN--BCHER-KVA.example", "xn--bcher-kva.example");
    norm("xn--zz-.example", NULL);
    /* An A-label is valid only if it is the A-label of a valid U-label:
     * these decode (to U+0080, to an emoji, to U+0082 U+0081 U+0080), but
     * as Unicode the same names are refused (found by fuzz_name). */
    norm("xn--a.example", NULL);
    norm("xn--ls8h.example", NULL);
    norm("\xf0\x9f\x92\xa9.example", NULL);
    norm("xn--abc.example", NULL);
    norm("*.xn--a.example", NULL);
    norm("xn--80a.example", "xn--80a.example");
    norm("xn--strae-oqa.de", "xn--strae-oqa.de");
    norm("ab--cd.example", NULL);
    norm("\xff\xfe.example", NULL);
    /* LDH, labels, lengths */
    norm("", NULL);
    norm(".", NULL);
    norm("com", NULL);
    norm("example..com", NULL);
    norm(".example.com", NULL);
    norm("-a.example.com", NULL);
    norm("a-.example.com", NULL);
    norm("a_b.example.com", NULL);
    norm("a b.example.com", NULL);
    norm("a/b.example.com", NULL);
    norm("../etc/passwd", NULL);
    norm("a.example.com\n", NULL);
    norm("a'; DROP TABLE cs_domains; --.example", NULL);
    norm("192.168.1.1", NULL);
    norm("example.com..", NULL);

    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';
    norm(apr_pstrcat(pool, label63, ".example", NULL),
         apr_pstrcat(pool, label63, ".example", NULL));
    norm(apr_pstrcat(pool, label64, ".example", NULL), NULL);

    /* 253 characters is the most: 4 x 61 + 3 dots + ".com" = 251..254 */
    for (i = 0; i < 249; i++) {
        longname[i] = (i % 50 == 49) ? '.' : 'a';
    }
    strcpy(longname + 249, ".com");            /* 253 characters */
    norm(longname, longname);
    strcpy(longname + 249, ".comx");           /* 254 characters */
    norm(longname, NULL);
    strcpy(longname + 249, ".com.");           /* 253 + the root's dot */
    longname[253] = '.';
    longname[254] = '\0';
    UNIT_CASE("253 characters and a trailing dot");
    {
        const char *out, *why = cs_name_normalize(&out, pool, longname);
        CHECK_STR(why, NULL);
        CHECK_EQ_INT(out ? strlen(out) : 0, 253);
    }

    /* The rule itself, as the store, the manifest and SNI apply it. */
    UNIT_CASE("cs_name_check");
    CHECK_STR(cs_name_check(NULL, "a.example", 9, 0), NULL);
    CHECK_STR(cs_name_check(NULL, "*.a.example", 11, 0), NULL);
    CHECK(cs_name_check(NULL, "A.example", 9, 0) != NULL);
    CHECK_STR(cs_name_check(NULL, "A.example", 9, CS_NAME_ANY_CASE), NULL);
    CHECK_STR(cs_name_check(NULL, "a.example.", 9, 0), NULL);  /* len */
    CHECK(cs_name_check(NULL, "a.example.", 10, 0) != NULL);
    CHECK(cs_name_check(NULL, "10.0.0.1", 8, 0) != NULL);
    CHECK(cs_name_check(NULL, "ab--c.example", 13, 0) != NULL);
    CHECK_STR(cs_name_check(NULL, "xn--bcher-kva.example", 21, 0), NULL);
    CHECK_STR(cs_name_check(pool, "a_b.example", 11, 0),
              "character '_' is not allowed in a domain name (letters, "
              "digits, '-' and '.')");
    CHECK(cs_name_check(NULL, "", 0, 0) != NULL);

    UNIT_CASE("cs_name_lower");
    {
        char out[CS_NAME_MAX + 1];

        CHECK(cs_name_lower(out, "WWW.Example.COM"));
        CHECK_STR(out, "www.example.com");
        CHECK(!cs_name_lower(out, "www.example.com."));
        CHECK(!cs_name_lower(out, "caf\xc3\xa9.example"));
        CHECK(cs_name_lower(out, longname) == 0);   /* 254 characters */
    }

    UNIT_CASE("cs_printable");
    CHECK_STR(cs_printable(pool, "abc", 3, 80), "abc");
    CHECK_STR(cs_printable(pool, "a\nb\\", 4, 80), "a\\x0ab\\x5c");
    CHECK_STR(cs_printable(pool, "abcdef", 6, 3), "abc...");

    UNIT_CASE("cs_utf8_prefix: never splits a UTF-8 sequence");
    CHECK_EQ_INT(cs_utf8_prefix("abc", 3), 3);
    CHECK_EQ_INT(cs_utf8_prefix("abc", 10), 3);
    CHECK_EQ_INT(cs_utf8_prefix("abcd", 2), 2);
    CHECK_EQ_INT(cs_utf8_prefix("", 0), 0);
    /* "a" then U+00E9 (2 bytes) then U+20AC (3 bytes) */
    CHECK_EQ_INT(cs_utf8_prefix("a\xc3\xa9\xe2\x82\xac", 2), 1);
    CHECK_EQ_INT(cs_utf8_prefix("a\xc3\xa9\xe2\x82\xac", 3), 3);
    CHECK_EQ_INT(cs_utf8_prefix("a\xc3\xa9\xe2\x82\xac", 4), 3);
    CHECK_EQ_INT(cs_utf8_prefix("a\xc3\xa9\xe2\x82\xac", 5), 3);
    CHECK_EQ_INT(cs_utf8_prefix("a\xc3\xa9\xe2\x82\xac", 6), 6);
    CHECK_EQ_INT(cs_utf8_prefix("\xe2\x82\xac", 2), 0);

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
