/*
 * cs_name_idn.c: domain names at the API edge, where Unicode names become
 * A-labels (libidn2).  The rule itself is cs_name_check (cs_name.c).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <idn2.h>

#include "cs_name.h"

/* Every xn-- label of an already checked name must be the A-label of a
 * valid U-label: it decodes, and that encodes back to the same label with
 * the flags a Unicode name is encoded with (below).  Decoding alone lets
 * through labels of code points IDNA disallows (xn--a is U+0080,
 * xn--ls8h an emoji), which the Unicode path refuses: one name would be
 * refused as Unicode and accepted as its A-label. */
static const char *check_alabels(apr_pool_t *p, const char *name)
{
    const char *label, *dot;
    char *u8 = NULL, *back = NULL, *copy;
    size_t len;
    int rc;

    for (label = name; label; label = dot ? dot + 1 : NULL) {
        dot = strchr(label, '.');
        len = dot ? (size_t)(dot - label) : strlen(label);
        if (len < 4 || strncmp(label, "xn--", 4) != 0) {
            continue;
        }
        copy = apr_pstrmemdup(p, label, len);
        rc = idn2_to_unicode_8z8z(copy, &u8, 0);
        if (rc != IDN2_OK) {
            return apr_psprintf(p, "invalid IDNA A-label '%s': %s", copy,
                                idn2_strerror(rc));
        }
        rc = idn2_to_ascii_8z(u8, &back, IDN2_NFC_INPUT
                              | IDN2_NONTRANSITIONAL);
        idn2_free(u8);
        if (rc != IDN2_OK || strcmp(back, copy) != 0) {
            idn2_free(back);
            return apr_psprintf(p, "invalid IDNA A-label '%s': %s", copy,
                                rc != IDN2_OK ? idn2_strerror(rc)
                                : "not the A-label of its Unicode form");
        }
        idn2_free(back);
        back = NULL;
    }
    return NULL;
}

const char *cs_name_normalize(const char **out, apr_pool_t *p,
                              const char *name)
{
    const char *host, *why;
    char *ascii = NULL, *norm;
    size_t len, i;
    int wildcard = 0, non_ascii = 0;

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
    }
    if (wildcard) {
        norm = apr_pstrcat(p, "*.", norm, NULL);
    }
    if ((why = cs_name_check(p, norm, strlen(norm), 0)) != NULL
        || (why = check_alabels(p, norm)) != NULL) {
        return why;
    }
    *out = norm;
    return NULL;
}
