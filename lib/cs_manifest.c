/*
 * cs_manifest.c: parse and write the certsync manifest.  See
 * cs_manifest.h and docs/manifest.md.
 *
 * The format is deliberately narrow: the fields end up as arguments of
 * generated configuration lines (mod_macro_gen) and as paths (the store),
 * so anything that the configuration reader could interpret (quotes,
 * "${", whitespace) is refused here rather than escaped.
 */
#include <string.h>
#include <sys/uio.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "cs_manifest.h"
#include "cs_name.h"

#define HEADER_LEN      (sizeof(CS_MANIFEST_HEADER) - 1)
/* What every version's header starts with, to tell "other version" from
 * "not a manifest at all". */
#define HEADER_STEM     "# certsync manifest v"
/* The characters refused in a certdir besides whitespace, controls and
 * non-ASCII: quoting and escapes of the configuration reader, "${" of
 * variable expansion, and the section brackets. */
#define CERTDIR_REFUSED "\"'\\$<>"

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

const char *cs_manifest_certdir_check(apr_pool_t *p, const char *s,
                                      apr_size_t len)
{
    apr_size_t i;

    if (len == 0 || s[0] != '/') {
        return "certdir is not an absolute path";
    }
    if (len > CS_MANIFEST_CERTDIR_MAX) {
        return "certdir longer than 1024 bytes";
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x21 || c > 0x7e || strchr(CERTDIR_REFUSED, c)) {
            return apr_psprintf(p, "character '%s' is not allowed in a "
                                "certdir", cs_printable(p, s + i, 1, 1));
        }
    }
    return NULL;
}

static void problem(cs_manifest_t *m, apr_pool_t *p, int line,
                    const char *domain, apr_size_t dlen, const char *reason)
{
    cs_manifest_problem_t *pr = apr_array_push(m->problems);

    pr->line = line;
    pr->domain = domain ? cs_printable(p, domain, dlen, 80) : NULL;
    pr->reason = reason;
}

/* One line after the header, CR and LF already removed. */
static void parse_line(cs_manifest_t *m, apr_hash_t *seen, apr_pool_t *p,
                       const char *s, apr_size_t len, int line)
{
    apr_size_t i, dlen, rlen;
    const char *rest, *why;
    cs_manifest_entry_t *e;
    char *key;
    int *first;

    for (i = 0; i < len && is_space(s[i]); i++) {
    }
    if (i == len || s[0] == '#') {
        return;                 /* blank or comment */
    }
    if (memchr(s, '\0', len)) {
        problem(m, p, line, NULL, 0, "NUL byte in the line");
        return;
    }
    if (i > 0) {
        problem(m, p, line, NULL, 0, "leading whitespace");
        return;
    }
    for (dlen = 0; dlen < len && !is_space(s[dlen]); dlen++) {
    }
    if (dlen == len) {
        problem(m, p, line, s, dlen,
                "no certdir (expected '<domain> <certdir>')");
        return;
    }
    rest = s + dlen + 1;
    rlen = len - dlen - 1;
    if (rlen == 0) {
        problem(m, p, line, s, dlen, "trailing whitespace");
        return;
    }
    if (is_space(rest[0])) {
        problem(m, p, line, s, dlen,
                "more than one space or tab between the fields");
        return;
    }
    for (i = 0; i < rlen && !is_space(rest[i]); i++) {
    }
    if (i < rlen) {
        apr_size_t j = i;

        while (j < rlen && is_space(rest[j])) {
            j++;
        }
        problem(m, p, line, s, dlen, j == rlen
                ? "trailing whitespace" : "extra fields after the certdir");
        return;
    }
    if ((why = cs_name_check(p, s, dlen, CS_NAME_ANY_CASE)) != NULL
        || (why = cs_manifest_certdir_check(p, rest, rlen)) != NULL) {
        problem(m, p, line, s, dlen, why);
        return;
    }

    /* Names are case-insensitive; a second vhost for the same name would
     * never be chosen, so only the first line counts. */
    key = apr_pstrmemdup(p, s, dlen);
    for (i = 0; i < dlen; i++) {
        if (key[i] >= 'A' && key[i] <= 'Z') {
            key[i] = (char)(key[i] - 'A' + 'a');
        }
    }
    if ((first = apr_hash_get(seen, key, (apr_ssize_t)dlen)) != NULL) {
        problem(m, p, line, s, dlen,
                apr_psprintf(p, "duplicate domain, first listed on line %d",
                             *first));
        return;
    }

    e = apr_array_push(m->entries);
    e->domain = apr_pstrmemdup(p, s, dlen);
    e->certdir = apr_pstrmemdup(p, rest, rlen);
    e->line = line;
    first = apr_palloc(p, sizeof(*first));
    *first = line;
    apr_hash_set(seen, key, (apr_ssize_t)dlen, first);
}

const char *cs_manifest_parse(cs_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len)
{
    cs_manifest_t *m = apr_palloc(p, sizeof(*m));
    const char *s = buf, *end = buf + len, *eol;
    apr_hash_t *seen;
    apr_size_t n;
    int line = 1;

    m->entries = apr_array_make(p, 64, sizeof(cs_manifest_entry_t));
    m->problems = apr_array_make(p, 4, sizeof(cs_manifest_problem_t));
    *pm = m;

    eol = memchr(s, '\n', len);
    n = eol ? (apr_size_t)(eol - s) : len;
    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    if (n != HEADER_LEN || memcmp(s, CS_MANIFEST_HEADER, n) != 0) {
        if (len == 0) {
            return "empty file (a manifest starts with the line '"
                   CS_MANIFEST_HEADER "')";
        }
        if (n > sizeof(HEADER_STEM) - 1
            && memcmp(s, HEADER_STEM, sizeof(HEADER_STEM) - 1) == 0) {
            return apr_psprintf(p, "unsupported manifest version '%s' "
                                "(this module reads '" CS_MANIFEST_HEADER
                                "')", cs_printable(p, s, n, 80));
        }
        return "not a certsync manifest (the first line must be '"
               CS_MANIFEST_HEADER "')";
    }

    seen = apr_hash_make(p);
    s = eol ? eol + 1 : end;
    while (s < end) {
        line++;
        eol = memchr(s, '\n', (apr_size_t)(end - s));
        n = eol ? (apr_size_t)(eol - s) : (apr_size_t)(end - s);
        if (n > 0 && s[n - 1] == '\r') {
            n--;
        }
        parse_line(m, seen, p, s, n, line);
        s = eol ? eol + 1 : end;
    }
    return NULL;
}

const char *cs_manifest_text(const char **why, apr_pool_t *p,
                             const apr_array_header_t *entries)
{
    const cs_manifest_entry_t *e;
    struct iovec *iov;
    apr_size_t total;
    int i, n = 0;

    *why = NULL;
    iov = apr_palloc(p, sizeof(*iov) * (4 * (apr_size_t)entries->nelts + 1));
    iov[n].iov_base = (void *)(CS_MANIFEST_HEADER "\n");
    iov[n++].iov_len = HEADER_LEN + 1;
    for (i = 0; i < entries->nelts; i++) {
        e = &APR_ARRAY_IDX(entries, i, cs_manifest_entry_t);
        if (!e->domain || !e->certdir
            || (*why = cs_name_check(p, e->domain, strlen(e->domain),
                                     CS_NAME_ANY_CASE)) != NULL
            || (*why = cs_manifest_certdir_check(p, e->certdir,
                                                 strlen(e->certdir)))
               != NULL) {
            *why = apr_psprintf(p, "entry %d ('%s'): %s", i + 1,
                                e->domain ? cs_printable(p, e->domain,
                                                         strlen(e->domain),
                                                         80) : "",
                                *why ? *why : "no domain or certdir");
            return NULL;
        }
        iov[n].iov_base = (void *)e->domain;
        iov[n++].iov_len = strlen(e->domain);
        iov[n].iov_base = (void *)" ";
        iov[n++].iov_len = 1;
        iov[n].iov_base = (void *)e->certdir;
        iov[n++].iov_len = strlen(e->certdir);
        iov[n].iov_base = (void *)"\n";
        iov[n++].iov_len = 1;
    }
    return apr_pstrcatv(p, iov, (apr_size_t)n, &total);
}

const char *cs_manifest_problem_text(apr_pool_t *p, const char *path,
                                     const cs_manifest_problem_t *pr)
{
    return apr_psprintf(p, "skipping line %d of %s%s%s%s: %s", pr->line,
                        path, pr->domain ? " (domain '" : "",
                        pr->domain ? pr->domain : "",
                        pr->domain ? "')" : "", pr->reason);
}
