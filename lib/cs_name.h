/*
 * cs_name.h: domain names, and text, at the API edge.
 *
 * Pure code: APR and libidn2 only, no httpd types.
 */
#ifndef CS_NAME_H
#define CS_NAME_H

#include <apr_pools.h>

#define CS_NAME_MAX     253     /* without the trailing dot */
#define CS_LABEL_MAX    63

/**
 * Normalise and validate a domain name: lower case, Unicode labels to IDNA
 * A-labels (xn--...), no trailing dot; LDH labels of 1-63 characters that
 * neither start nor end with '-', at least two labels, at most 253
 * characters; an optional leading "*." wildcard label.  A name that passes
 * is safe as a single path component and as SQL data.
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

#endif /* CS_NAME_H */
