/*
 * cs_name.c: domain name normalisation and validation.  See cs_name.h.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <idn2.h>

#include "cs_name.h"

static int is_ldh(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
}

static const char *check_label(apr_pool_t *p, const char *label, size_t len)
{
    size_t i;
    char *u8 = NULL, *copy;
    int rc;

    if (len == 0) {
        return "empty label";
    }
    if (len > CS_LABEL_MAX) {
        return "label longer than 63 characters";
    }
    for (i = 0; i < len; i++) {
        if (!is_ldh(label[i])) {
            return label[i] == '*' ? "a wildcard is only allowed as the "
                                     "whole first label (*.example.com)"
                                   : "invalid character (letters, digits "
                                     "and '-' only)";
        }
    }
    if (label[0] == '-' || label[len - 1] == '-') {
        return "label starts or ends with '-'";
    }
    /* "??--" is reserved for encodings; the only one in use is IDNA's. */
    if (len >= 4 && label[2] == '-' && label[3] == '-') {
        if (strncmp(label, "xn--", 4) != 0) {
            return "label has '--' in the third and fourth positions "
                   "(reserved for IDNA xn--)";
        }
        copy = apr_pstrmemdup(p, label, len);
        rc = idn2_to_unicode_8z8z(copy, &u8, 0);
        if (rc != IDN2_OK) {
            return apr_psprintf(p, "invalid IDNA A-label '%s': %s", copy,
                                idn2_strerror(rc));
        }
        idn2_free(u8);
    }
    return NULL;
}

const char *cs_name_normalize(const char **out, apr_pool_t *p,
                              const char *name)
{
    const char *host, *label, *dot, *why;
    char *ascii = NULL, *norm;
    size_t len, i, labels = 0, last_start = 0;
    int wildcard = 0, non_ascii = 0, all_digits;

    *out = NULL;
    if (!name || !*name) {
        return "empty name";
    }
    len = strlen(name);
    if (len > 4 * (CS_NAME_MAX + 1)) {
        return "name too long";
    }
    if (name[len - 1] == '.') {
        len--;     /* the root's dot: example.com. is example.com */
    }
    host = name;
    if (len >= 2 && name[0] == '*' && name[1] == '.') {
        wildcard = 1;
        host += 2;
        len -= 2;
    }
    norm = apr_pstrmemdup(p, host, len);
    for (i = 0; i < len; i++) {
        if ((unsigned char)norm[i] >= 0x80) {
            non_ascii = 1;
        }
        else if (norm[i] >= 'A' && norm[i] <= 'Z') {
            norm[i] = (char)(norm[i] - 'A' + 'a');
        }
        else if (norm[i] < 0x21 || norm[i] == 0x7F) {
            return "control character or space in name";
        }
    }
    if (non_ascii) {
        int rc = idn2_to_ascii_8z(norm, &ascii,
                                  IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK) {
            return apr_psprintf(p, "not a valid internationalised name: %s",
                                idn2_strerror(rc));
        }
        norm = apr_pstrdup(p, ascii);
        idn2_free(ascii);
        len = strlen(norm);
    }
    if (len + (wildcard ? 2 : 0) > CS_NAME_MAX) {
        return "name longer than 253 characters";
    }

    for (label = norm; ; label = dot + 1) {
        dot = strchr(label, '.');
        last_start = (size_t)(label - norm);
        why = check_label(p, label, dot ? (size_t)(dot - label)
                                        : strlen(label));
        if (why) {
            return why;
        }
        labels++;
        if (!dot) {
            break;
        }
    }
    if (labels < 2) {
        return "a name needs at least two labels (example.com)";
    }
    all_digits = 1;
    for (i = last_start; norm[i]; i++) {
        all_digits &= norm[i] >= '0' && norm[i] <= '9';
    }
    if (all_digits) {
        return "the top-level label is numeric (an IP address is not a "
               "domain name)";
    }
    *out = wildcard ? apr_pstrcat(p, "*.", norm, NULL) : norm;
    return NULL;
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
