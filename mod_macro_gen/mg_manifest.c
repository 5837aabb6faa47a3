/*
 * mg_manifest.c: parse the certsync manifest and check its entries' files.
 *
 * The format (docs/manifest.md) is deliberately narrow: the fields end up
 * as arguments of generated configuration lines, so anything that the
 * configuration reader could interpret (quotes, "${", whitespace) is
 * refused here rather than escaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mg_manifest.h"

#define MG_HEADER_LEN   (sizeof(MG_MANIFEST_HEADER) - 1)
/* What every version's header starts with, to tell "other version" from
 * "not a manifest at all". */
#define MG_HEADER_STEM  "# certsync manifest v"

static int mg_is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-';
}

static int mg_is_space(char c)
{
    return c == ' ' || c == '\t';
}

const char *mg_printable(apr_pool_t *p, const char *s, apr_size_t len,
                         apr_size_t max)
{
    apr_size_t n = len > max ? max : len;
    char *out = apr_palloc(p, n * 4 + sizeof("..."));
    char *o = out;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c > 0x7e || c == '\\') {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = "0123456789abcdef"[c >> 4];
            *o++ = "0123456789abcdef"[c & 0x0f];
        }
        else {
            *o++ = (char)c;
        }
    }
    if (n < len) {
        memcpy(o, "...", 3);
        o += 3;
    }
    *o = '\0';
    return out;
}

const char *mg_domain_check(apr_pool_t *p, const char *name,
                            apr_size_t len)
{
    const char *s = name, *end = name + len;
    int labels = 0;

    if (len == 0) {
        return "empty domain name";
    }
    if (len > MG_DOMAIN_MAX) {
        return "domain name longer than 253 characters";
    }
    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
    }
    while (s < end) {
        const char *label = s;

        while (s < end && *s != '.') {
            if (!mg_is_ldh(*s)) {
                if (*s == '*') {
                    return "'*' is only allowed as a whole first label "
                           "(\"*.example.com\")";
                }
                return apr_psprintf(p, "character '%s' is not allowed in "
                                    "a domain name (letters, digits, '-' "
                                    "and '.')", mg_printable(p, s, 1, 1));
            }
            s++;
        }
        if (s == label) {
            return "empty label in domain name";
        }
        if (s - label > MG_LABEL_MAX) {
            return "label longer than 63 characters in domain name";
        }
        if (*label == '-' || s[-1] == '-') {
            return "label starts or ends with '-' in domain name";
        }
        labels++;
        if (s < end && ++s == end) {
            return "domain name ends with '.'";
        }
    }
    if (labels < 2) {
        return "domain name needs at least two labels";
    }
    return NULL;
}

/* The characters refused in a certdir besides whitespace, controls and
 * non-ASCII: quoting and escapes of the configuration reader, "${" of
 * variable expansion, and the section brackets. */
#define MG_CERTDIR_REFUSED  "\"'\\$<>"

static const char *mg_certdir_check(apr_pool_t *p, const char *s,
                                    apr_size_t len)
{
    apr_size_t i;

    if (s[0] != '/') {
        return "certdir is not an absolute path";
    }
    if (len > MG_CERTDIR_MAX) {
        return "certdir longer than 1024 bytes";
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x21 || c > 0x7e || strchr(MG_CERTDIR_REFUSED, c)) {
            return apr_psprintf(p, "character '%s' is not allowed in a "
                                "certdir", mg_printable(p, s + i, 1, 1));
        }
    }
    return NULL;
}

static void mg_problem(mg_manifest_t *m, apr_pool_t *p, int line,
                       const char *domain, apr_size_t dlen,
                       const char *reason)
{
    mg_problem_t *pr = apr_array_push(m->problems);

    pr->line = line;
    pr->domain = domain ? mg_printable(p, domain, dlen, 80) : NULL;
    pr->reason = reason;
}

/* One line after the header, CR and LF already removed. */
static void mg_parse_line(mg_manifest_t *m, apr_hash_t *seen, apr_pool_t *p,
                          const char *s, apr_size_t len, int line)
{
    apr_size_t i, dlen, rlen;
    const char *rest, *why;
    mg_entry_t *e;
    char *key;
    int *first;

    for (i = 0; i < len && mg_is_space(s[i]); i++) {
    }
    if (i == len || s[0] == '#') {
        return;                 /* blank or comment */
    }
    if (memchr(s, '\0', len)) {
        mg_problem(m, p, line, NULL, 0, "NUL byte in the line");
        return;
    }
    if (i > 0) {
        mg_problem(m, p, line, NULL, 0, "leading whitespace");
        return;
    }
    for (dlen = 0; dlen < len && !mg_is_space(s[dlen]); dlen++) {
    }
    if (dlen == len) {
        mg_problem(m, p, line, s, dlen,
                   "no certdir (expected '<domain> <certdir>')");
        return;
    }
    rest = s + dlen + 1;
    rlen = len - dlen - 1;
    if (rlen == 0) {
        mg_problem(m, p, line, s, dlen, "trailing whitespace");
        return;
    }
    if (mg_is_space(rest[0])) {
        mg_problem(m, p, line, s, dlen,
                   "more than one space or tab between the fields");
        return;
    }
    for (i = 0; i < rlen && !mg_is_space(rest[i]); i++) {
    }
    if (i < rlen) {
        apr_size_t j = i;

        while (j < rlen && mg_is_space(rest[j])) {
            j++;
        }
        mg_problem(m, p, line, s, dlen, j == rlen
                   ? "trailing whitespace"
                   : "extra fields after the certdir");
        return;
    }
    if ((why = mg_domain_check(p, s, dlen)) != NULL
        || (why = mg_certdir_check(p, rest, rlen)) != NULL) {
        mg_problem(m, p, line, s, dlen, why);
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
        mg_problem(m, p, line, s, dlen,
                   apr_psprintf(p, "duplicate domain, first listed on "
                                "line %d", *first));
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

const char *mg_manifest_parse(mg_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len)
{
    mg_manifest_t *m = apr_palloc(p, sizeof(*m));
    const char *s = buf, *end = buf + len, *eol;
    apr_hash_t *seen;
    apr_size_t n;
    int line = 1;

    m->entries = apr_array_make(p, 64, sizeof(mg_entry_t));
    m->problems = apr_array_make(p, 4, sizeof(mg_problem_t));
    *pm = m;

    eol = memchr(s, '\n', len);
    n = eol ? (apr_size_t)(eol - s) : len;
    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    if (n != MG_HEADER_LEN || memcmp(s, MG_MANIFEST_HEADER, n) != 0) {
        if (len == 0) {
            return "empty file (a manifest starts with the line '"
                   MG_MANIFEST_HEADER "')";
        }
        if (n > sizeof(MG_HEADER_STEM) - 1
            && memcmp(s, MG_HEADER_STEM, sizeof(MG_HEADER_STEM) - 1) == 0) {
            return apr_psprintf(p, "unsupported manifest version '%s' "
                                "(this module reads '" MG_MANIFEST_HEADER
                                "')", mg_printable(p, s, n, 80));
        }
        return "not a certsync manifest (the first line must be '"
               MG_MANIFEST_HEADER "')";
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
        mg_parse_line(m, seen, p, s, n, line);
        s = eol ? eol + 1 : end;
    }
    return NULL;
}

/* Check one file of a certdir. */
static const char *mg_check_file(const char **path, apr_pool_t *p,
                                 const char *dir, const char *name)
{
    char buf[MG_CERTDIR_MAX + 64];
    const char *why = NULL;
    char err[128];
    struct stat st;
    int fd;

    if (strlen(dir) + strlen(name) + 2 > sizeof(buf)) {
        *path = apr_pstrcat(p, dir, "/", name, NULL);
        return "path too long";
    }
    apr_snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    /* O_NONBLOCK: a FIFO in place of the file must not hang the start. */
    fd = open(buf, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        why = apr_pstrdup(p, apr_strerror(APR_FROM_OS_ERROR(errno), err,
                                          sizeof(err)));
    }
    else {
        if (fstat(fd, &st) != 0) {
            why = apr_pstrdup(p, apr_strerror(APR_FROM_OS_ERROR(errno), err,
                                              sizeof(err)));
        }
        else if (!S_ISREG(st.st_mode)) {
            why = "not a regular file";
        }
        else if (st.st_size == 0) {
            why = "empty file";
        }
        close(fd);
    }
    if (why) {
        *path = apr_pstrdup(p, buf);
    }
    return why;
}

const char *mg_entry_check_files(const char **path, apr_pool_t *p,
                                 const mg_entry_t *e)
{
    const char *why;

    if ((why = mg_check_file(path, p, e->certdir, MG_CERT_FILE)) != NULL) {
        return why;
    }
    return mg_check_file(path, p, e->certdir, MG_KEY_FILE);
}
