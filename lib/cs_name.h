/*
 * cs_name.h: domain names, and text, at the API edge.
 *
 * The suite has one domain-name rule, cs_name_check().  Everything that
 * handles a name applies it: CertService when a name comes in
 * (cs_name_normalize, which first turns Unicode into A-labels), the
 * store before a name becomes a path component, both readers of the
 * manifest, and the dynamic-mode certificate callback on a client's SNI.
 *
 * Pure code, no httpd types.  cs_name.c needs only APR (mod_macro_gen
 * links it); cs_name_normalize (cs_name_idn.c) also needs libidn2.
 */
#ifndef CS_NAME_H
#define CS_NAME_H

#include <apr_pools.h>

#define CS_NAME_MAX     253     /* without the trailing dot, "*." included */
#define CS_LABEL_MAX    63

/* cs_name_check flags. */
#define CS_NAME_ANY_CASE 0x1    /* accept upper case (names compare
                                 * case-insensitively); else lower case only */

/**
 * The domain-name rule, for a name in ASCII: LDH labels (letters, digits,
 * '-') of 1 to 63 characters that neither start nor end with '-'; "--" in
 * the third and fourth positions only as IDNA's "xn--"; at least two
 * labels; a top-level label that is not all digits (an IP address is not
 * a domain name); at most 253 characters; no trailing dot; optionally a
 * leading "*." wildcard label, '*' nowhere else.  Lower case unless
 * CS_NAME_ANY_CASE.  A name that passes is safe as a single path
 * component, as configuration text and as SQL data.
 *
 * Whether an xn-- label is a valid A-label is not checked here (that
 * needs libidn2): cs_name_normalize does it where names enter the suite.
 * @param p     for a reason that quotes the offending character; NULL: the
 *              reason is static text
 * @param name  len bytes, need not be NUL-terminated
 * @return NULL, or why the name is refused
 */
const char *cs_name_check(apr_pool_t *p, const char *name, apr_size_t len,
                          int flags);

/**
 * The rule on a NUL-terminated name in any case, writing the name in lower
 * case to out (CS_NAME_MAX + 1 bytes).  Allocates nothing: for the
 * per-handshake path (a client's SNI).
 * @return 1 if the name passes, 0 if not (out is then undefined)
 */
int cs_name_lower(char *out, const char *name);

/**
 * Normalise and validate a domain name at the API edge: lower case,
 * Unicode labels to IDNA A-labels (xn--...), the root's trailing dot
 * dropped, then cs_name_check(), and every xn-- label must be the
 * A-label of a valid U-label (decoded and encoded again, it is itself):
 * a name is accepted as its A-labels exactly when it is as Unicode.
 * @param out   the normalised name, from p
 * @return NULL, or why the name is refused (static text or from p)
 */
const char *cs_name_normalize(const char **out, apr_pool_t *p,
                              const char *name);

/**
 * How much of s fits in max bytes without splitting a UTF-8 sequence: the
 * length of that prefix (strlen(s) if all of it fits).  For error texts
 * that are cut to a column or a buffer and may end up in JSON.
 */
apr_size_t cs_utf8_prefix(const char *s, apr_size_t max);

/**
 * Untrusted text made safe for one log line: bytes outside printable ASCII
 * and '\\' become \xHH, and at most max bytes of s (len bytes) are shown,
 * "..." marking the cut.  From p.
 */
const char *cs_printable(apr_pool_t *p, const char *s, apr_size_t len,
                         apr_size_t max);

#endif /* CS_NAME_H */
