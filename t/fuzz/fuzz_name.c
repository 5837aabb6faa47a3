/*
 * fuzz_name.c: libFuzzer harness for domain names: the SNI a TLS client
 * sends, as dynamic mode turns it into a store name (csy_sni_name,
 * mod_certsync/csy_dyn.c) and looks it up (csy_cache_lookup, on an empty
 * store), and CertService's normalisation with IDNA (cs_name_normalize,
 * lib/cs_name_idn.c) over the one rule (cs_name_check, lib/cs_name.c).
 *
 * The input is the name as a C string (OpenSSL refuses a server name
 * with a NUL in it, so the SNI never has one).  It aborts if:
 *  - an accepted SNI is not the input in lower case, or breaks the rule
 *    by hand (LDH and dots, no empty label, labels of 1 to 63, at least
 *    two labels, a top-level label that is not all digits, at most 253),
 *    or is a wildcard, or is refused when given again (idempotence);
 *  - the wildcard a lookup falls back to is not a valid store name, or a
 *    lookup of an accepted name in an empty store is anything but
 *    "not found" with no error text;
 *  - a normalised name breaks the rule, does not normalise to itself,
 *    has an xn-- label that is not the canonical A-label of what it
 *    decodes to, or (not a wildcard) is refused by the SNI path or comes
 *    out of it changed, also in upper case;
 *  - CertService would store a name (an ASCII name, no root dot, not a
 *    wildcard) that the SNI path refuses, or the SNI path accepts a name
 *    that CertService normalises to another one;
 *  - cs_name_check disagrees with itself on case, or cs_printable writes
 *    anything but printable ASCII.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to
 * run the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <idn2.h>

#include "cs_name.h"
#include "csy_dyn.h"

#include "fuzz.h"

static apr_pool_t *root;
static csy_cache_t *cache;
static char store_dir[] = "/tmp/fuzz-name-XXXXXX";

/* The cache and the empty store made at start (nothing is ever put in
 * it). */
static void cleanup(void)
{
    apr_pool_destroy(root);
    rmdir(store_dir);
}

static void init(void)
{
    apr_array_header_t *none;

    if (root) {
        return;
    }
    apr_initialize();
    apr_pool_create(&root, NULL);
    REQUIRE(mkdtemp(store_dir) != NULL);
    atexit(cleanup);
    none = apr_array_make(root, 1, sizeof(void *));
    REQUIRE(csy_cache_create(&cache, root, 16, NULL, store_dir, none,
                             none)
            == APR_SUCCESS);
}

/* The rule, written out again independently of name_rule(). */
static void check_rule(const char *n, int wildcard_ok)
{
    size_t len = strlen(n), i, start, labels = 0;
    int digits = 1;

    REQUIRE(len >= 1 && len <= CS_NAME_MAX);
    if (wildcard_ok && n[0] == '*') {
        REQUIRE(n[1] == '.');
        n += 2;
        len -= 2;
    }
    for (start = 0, i = 0; i <= len; i++) {
        char c = i < len ? n[i] : '.';

        if (c == '.') {
            REQUIRE(i > start);                     /* no empty label */
            REQUIRE(i - start <= CS_LABEL_MAX);
            REQUIRE(n[start] != '-' && n[i - 1] != '-');
            if (i - start >= 4 && n[start + 2] == '-'
                && n[start + 3] == '-') {
                REQUIRE(n[start] == 'x' && n[start + 1] == 'n');
            }
            labels++;
            if (i < len) {
                digits = 1;
            }
            start = i + 1;
            continue;
        }
        REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                || c == '-');
        if (!(c >= '0' && c <= '9')) {
            digits = 0;
        }
    }
    REQUIRE(labels >= 2);
    REQUIRE(!digits);
}

/* Every xn-- label is the canonical A-label of its U-label: decoding and
 * encoding again gives it back, so one domain has one store name. */
static void check_alabels(const char *n)
{
    const char *label = n, *dot;
    char copy[CS_LABEL_MAX + 1];
    char *u8, *back;
    size_t len;

    if (label[0] == '*') {
        label += 2;
    }
    for (; label; label = dot ? dot + 1 : NULL) {
        dot = strchr(label, '.');
        len = dot ? (size_t)(dot - label) : strlen(label);
        if (len < 4 || strncmp(label, "xn--", 4) != 0) {
            continue;
        }
        REQUIRE(len <= CS_LABEL_MAX);
        memcpy(copy, label, len);
        copy[len] = '\0';
        u8 = back = NULL;
        REQUIRE(idn2_to_unicode_8z8z(copy, &u8, 0) == IDN2_OK);
        REQUIRE(idn2_to_ascii_8z(u8, &back, IDN2_NFC_INPUT
                                 | IDN2_NONTRANSITIONAL) == IDN2_OK);
        if (strcmp(back, copy) != 0) {
            fprintf(stderr, "A-label %s decodes to %s, which encodes as "
                    "%s\n", copy, u8, back);
        }
        REQUIRE(strcmp(back, copy) == 0);
        idn2_free(u8);
        idn2_free(back);
    }
}

/* The store names a lookup of an SNI name tries: the name, then the
 * wildcard "*.parent" (as csy_cache_lookup forms it). */
static void check_lookup(const char *n)
{
    const char *dot = strchr(n, '.');
    char wild[CSY_NAME_SIZE + 1], err[256];
    csy_bundle_t *b = (csy_bundle_t *)&b;
    apr_status_t rv;

    if (dot && strchr(dot + 1, '.')) {
        REQUIRE(strlen(dot) + 1 <= CS_NAME_MAX);
        snprintf(wild, sizeof(wild), "*%s", dot);
        REQUIRE(cs_name_check(NULL, wild, strlen(wild), 0) == NULL);
        check_rule(wild, 1);
    }
    err[0] = 'x';
    rv = csy_cache_lookup(&b, cache, n, err, sizeof(err));
    REQUIRE(APR_STATUS_IS_NOTFOUND(rv));
    REQUIRE(b == NULL);
    REQUIRE(err[0] == '\0');
}

static int is_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80) {
            return 0;
        }
    }
    return 1;
}

static void lower(char *out, const char *s)
{
    for (; *s; s++) {
        *out++ = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
    }
    *out = '\0';
}

static void upper(char *out, const char *s)
{
    for (; *s; s++) {
        *out++ = (char)(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
    }
    *out = '\0';
}

/* What a normalised (stored) name must satisfy. */
static void check_normalized(apr_pool_t *p, const char *n)
{
    char sni[CSY_NAME_SIZE], up[CSY_NAME_SIZE];
    const char *again;

    REQUIRE(strlen(n) <= CS_NAME_MAX);
    REQUIRE(cs_name_check(NULL, n, strlen(n), 0) == NULL);
    check_rule(n, 1);
    check_alabels(n);
    REQUIRE(cs_name_normalize(&again, p, n) == NULL);
    REQUIRE(strcmp(again, n) == 0);                 /* idempotent */
    if (n[0] != '*') {
        /* A client asking for it, in any case, finds it. */
        REQUIRE(csy_sni_name(sni, n));
        REQUIRE(strcmp(sni, n) == 0);
        upper(up, n);
        REQUIRE(csy_sni_name(sni, up));
        REQUIRE(strcmp(sni, n) == 0);
    }
    else {
        REQUIRE(!csy_sni_name(sni, n));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[CSY_NAME_SIZE], again[CSY_NAME_SIZE];
    char *s, *exact, *low;
    const char *norm, *why, *pr;
    apr_size_t plen;
    apr_pool_t *p;
    int sni_ok, c0, c1;
    size_t len, i;

    init();
    apr_pool_create(&p, root);

    /* cs_name_check on the bytes as given: exactly size bytes, so ASan
     * sees any read past them. */
    exact = malloc(size ? size : 1);
    REQUIRE(exact != NULL);
    memcpy(exact, data, size);
    c0 = cs_name_check(NULL, exact, size, 0) == NULL;
    c1 = cs_name_check(p, exact, size, CS_NAME_ANY_CASE) == NULL;
    REQUIRE(!c0 || c1);                 /* lower-case only is stricter */
    if (c1) {
        for (i = 0; i < size && !(exact[i] >= 'A' && exact[i] <= 'Z'); i++) {
        }
        REQUIRE(c0 == (i == size));
    }
    else {
        REQUIRE(cs_name_check(p, exact, size, CS_NAME_ANY_CASE) != NULL);
    }
    pr = cs_printable(p, exact, size, 64);
    plen = strlen(pr);
    REQUIRE(plen <= 64 * 4 + 3);
    for (i = 0; i < plen; i++) {
        REQUIRE(pr[i] >= 0x20 && pr[i] < 0x7f);
    }
    free(exact);

    s = malloc(size + 1);
    REQUIRE(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    len = strlen(s);
    REQUIRE(cs_utf8_prefix(s, 10) <= 10 && cs_utf8_prefix(s, 10) <= len);

    /* The SNI path. */
    sni_ok = csy_sni_name(out, s);
    if (sni_ok) {
        low = apr_palloc(p, len + 1);
        lower(low, s);
        REQUIRE(strcmp(out, low) == 0);
        check_rule(out, 0);
        REQUIRE(cs_name_check(NULL, out, strlen(out), 0) == NULL);
        REQUIRE(csy_sni_name(again, out));          /* idempotent */
        REQUIRE(strcmp(again, out) == 0);
        check_lookup(out);
    }

    /* CertService's normalisation. */
    why = cs_name_normalize(&norm, p, s);
    REQUIRE((why == NULL) == (norm != NULL));
    if (norm) {
        check_normalized(p, norm);
        if (is_ascii(s)) {
            /* ASCII is only lowered (and loses a root dot). */
            REQUIRE(strlen(norm) == len || strlen(norm) == len - 1);
            if (norm[0] != '*' && s[len - 1] != '.') {
                /* A name CertService stores is one a client can ask for:
                 * the two paths agree. */
                REQUIRE(sni_ok);
                REQUIRE(strcmp(out, norm) == 0);
            }
        }
    }
    else if (sni_ok) {
        /* Only an xn-- label that does not decode (which the SNI path
         * does not check) may set them apart. */
        REQUIRE(why && strncmp(why, "invalid IDNA A-label", 20) == 0);
    }
    free(s);
    apr_pool_destroy(p);
    return 0;
}
