/*
 * cs_manifest.h: the certsync manifest (docs/manifest.md), the list of
 * servable domains that mod_certsync writes and mod_macro_gen expands.
 * The grammar, its one policy for bad lines, and the writer.
 *
 *     # certsync manifest v1
 *     example.com /var/lib/certsync/live/example.com/current
 *     www.example.net /var/lib/certsync/live/www.example.net/current
 *
 * The policy (docs/manifest.md, "What readers do"): a file whose first
 * line is not the v1 header is refused as a whole; a bad line (or a
 * domain listed again) is skipped and recorded as a problem, so that one
 * line never costs the other domains.  Every reader must report each
 * problem (the line, the domain, why) and count them: a skipped line is
 * a domain not served.
 *
 * Pure code: APR only, no httpd types; nothing here logs.
 */
#ifndef CS_MANIFEST_H
#define CS_MANIFEST_H

#include <apr_pools.h>
#include <apr_tables.h>

/* The first line of every version 1 manifest. */
#define CS_MANIFEST_HEADER      "# certsync manifest v1"

#define CS_MANIFEST_CERTDIR_MAX 1024
/* Readers refuse a larger file as a whole: about 900,000 entries. */
#define CS_MANIFEST_MAX         (64 * 1024 * 1024)

/** One servable domain. */
typedef struct {
    const char *domain;         /* as written: cs_name_check, any case */
    const char *certdir;        /* absolute path */
    int line;                   /* in the manifest, from 1 */
} cs_manifest_entry_t;

/** A line that was skipped, and why. */
typedef struct {
    int line;                   /* in the manifest, from 1 */
    const char *domain;         /* first field, printable; NULL if none */
    const char *reason;
} cs_manifest_problem_t;

typedef struct {
    apr_array_header_t *entries;    /* of cs_manifest_entry_t, in order */
    apr_array_header_t *problems;   /* of cs_manifest_problem_t, in order */
} cs_manifest_t;

/**
 * Parse a manifest held in memory (buf need not be NUL-terminated).
 * @param pm    the manifest, from p (also set, empty, when refused)
 * @return NULL, or why the whole buffer is refused: it is not a version 1
 *         manifest (the first line is not CS_MANIFEST_HEADER)
 */
const char *cs_manifest_parse(cs_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len);

/**
 * Check a certdir: absolute, at most CS_MANIFEST_CERTDIR_MAX bytes of
 * printable ASCII other than space and the characters httpd's
 * configuration reader would interpret ("'\$<>).
 * @return NULL, or why (static text or from p)
 */
const char *cs_manifest_certdir_check(apr_pool_t *p, const char *s,
                                      apr_size_t len);

/**
 * The text of a manifest for entries (array of cs_manifest_entry_t; line
 * is ignored), in the given order, from p.
 * @return the text, or NULL if an entry breaks the grammar (*why says
 *         which and why); nothing is then to be written
 */
const char *cs_manifest_text(const char **why, apr_pool_t *p,
                             const apr_array_header_t *entries);

/**
 * One problem as the words of a warning:
 * "skipping line N of PATH (domain 'D'): REASON".
 */
const char *cs_manifest_problem_text(apr_pool_t *p, const char *path,
                                     const cs_manifest_problem_t *pr);

#endif /* CS_MANIFEST_H */
