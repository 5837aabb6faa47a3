/*
 * cs_name.c: the domain-name rule (see cs_name.h) and text for log lines.
 * APR only: mod_macro_gen links this file.
 *
 * One pass over the name, no allocation unless a refused name's reason
 * quotes its character: the dynamic-mode certificate callback runs it on
 * every handshake that misses its cache.
 */
#include <string.h>

#include <apr_strings.h>

#include "cs_name.h"

typedef enum {
    NAME_OK,
    NAME_EMPTY,
    NAME_TOO_LONG,
    NAME_CHAR,
    NAME_STAR,
    NAME_UPPER,
    NAME_EMPTY_LABEL,
    NAME_LABEL_LONG,
    NAME_HYPHEN,
    NAME_RESERVED,
    NAME_TRAILING_DOT,
    NAME_ONE_LABEL,
    NAME_NUMERIC
} name_fault_t;

static const char *const name_reason[] = {
    NULL,
    "empty domain name",
    "domain name longer than 253 characters",
    "character not allowed in a domain name (letters, digits, '-' and '.')",
    "'*' is only allowed as a whole first label (\"*.example.com\")",
    "upper-case letter in a name that must be in lower case",
    "empty label in domain name",
    "label longer than 63 characters in domain name",
    "label starts or ends with '-' in domain name",
    "label has '--' in the third and fourth positions (reserved for IDNA "
    "xn--)",
    "domain name ends with '.'",
    "domain name needs at least two labels",
    "the top-level label is numeric (an IP address is not a domain name)"
};

/* The rule.  out (if not NULL) receives the name in lower case, not
 * terminated; *at is where a NAME_CHAR fault is. */
static name_fault_t name_rule(char *out, const char *name, apr_size_t len,
                              int flags, apr_size_t *at)
{
    apr_size_t i = 0, start, labels = 0;
    int digits = 1;
    char c;

    if (len == 0) {
        return NAME_EMPTY;
    }
    if (len > CS_NAME_MAX) {
        return NAME_TOO_LONG;
    }
    if (len >= 2 && name[0] == '*' && name[1] == '.') {
        if (out) {
            out[0] = '*';
            out[1] = '.';
        }
        i = 2;
    }
    for (start = i; i <= len; i++) {
        c = i < len ? name[i] : '.';
        if (c == '.') {
            if (i == start) {
                return NAME_EMPTY_LABEL;
            }
            if (i - start > CS_LABEL_MAX) {
                return NAME_LABEL_LONG;
            }
            if (name[start] == '-' || name[i - 1] == '-') {
                return NAME_HYPHEN;
            }
            /* "ab--" is reserved for encodings; IDNA's is the one in use. */
            if (i - start >= 4 && name[start + 2] == '-'
                && name[start + 3] == '-'
                && !((name[start] | 0x20) == 'x'
                     && (name[start + 1] | 0x20) == 'n')) {
                return NAME_RESERVED;
            }
            labels++;
            if (i + 1 == len) {
                return NAME_TRAILING_DOT;
            }
            if (i < len) {
                digits = 1;
            }
            start = i + 1;
        }
        else if ((c >= 'a' && c <= 'z') || c == '-') {
            digits = 0;
        }
        else if (c >= '0' && c <= '9') {
            /* a digit: the label may still be all digits */
        }
        else if (c >= 'A' && c <= 'Z') {
            if (!(flags & CS_NAME_ANY_CASE)) {
                return NAME_UPPER;
            }
            c = (char)(c - 'A' + 'a');
            digits = 0;
        }
        else {
            *at = i;
            return c == '*' ? NAME_STAR : NAME_CHAR;
        }
        if (out && i < len) {
            out[i] = c;
        }
    }
    if (labels < 2) {
        return NAME_ONE_LABEL;
    }
    return digits ? NAME_NUMERIC : NAME_OK;
}

const char *cs_name_check(apr_pool_t *p, const char *name, apr_size_t len,
                          int flags)
{
    apr_size_t at = 0;
    name_fault_t f = name_rule(NULL, name, len, flags, &at);

    if (f == NAME_CHAR && p) {
        return apr_psprintf(p, "character '%s' is not allowed in a domain "
                            "name (letters, digits, '-' and '.')",
                            cs_printable(p, name + at, 1, 1));
    }
    return name_reason[f];
}

int cs_name_lower(char *out, const char *name)
{
    apr_size_t at, len = strnlen(name, CS_NAME_MAX + 1);

    if (name_rule(out, name, len, CS_NAME_ANY_CASE, &at) != NAME_OK) {
        return 0;
    }
    out[len] = '\0';
    return 1;
}

apr_size_t cs_utf8_prefix(const char *s, apr_size_t max)
{
    apr_size_t n = strlen(s);

    if (n <= max) {
        return n;
    }
    for (n = max; n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; n--) {
    }
    return n;
}

const char *cs_printable(apr_pool_t *p, const char *s, apr_size_t len,
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
