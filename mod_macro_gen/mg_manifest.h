/*
 * mg_manifest.h: the certsync manifest (docs/manifest.md), the list of
 * servable domains that mod_certsync writes and mod_macro_gen expands.
 *
 *     # certsync manifest v1
 *     example.com /var/lib/certsync/live/example.com/current
 *     www.example.net /var/lib/certsync/live/www.example.net/current
 *
 * Pure code: APR and POSIX only, no httpd types, so the unit tests link it
 * directly.  Nothing here logs: problems come back as data for the caller
 * to report.
 */
#ifndef MG_MANIFEST_H
#define MG_MANIFEST_H

#include <apr_pools.h>
#include <apr_tables.h>

/* The first line of every version 1 manifest. */
#define MG_MANIFEST_HEADER      "# certsync manifest v1"

#define MG_DOMAIN_MAX           253     /* "*." included */
#define MG_LABEL_MAX            63
#define MG_CERTDIR_MAX          1024

/* The files every certdir holds. */
#define MG_CERT_FILE            "fullchain.pem"
#define MG_KEY_FILE             "privkey.pem"

/** One servable domain. */
typedef struct {
    const char *domain;         /* LDH name, optionally "*." first */
    const char *certdir;        /* absolute path */
    int line;                   /* in the manifest, from 1 */
} mg_entry_t;

/** A line that was skipped, and why. */
typedef struct {
    int line;                   /* in the manifest, from 1 */
    const char *domain;         /* first field, printable; NULL if none */
    const char *reason;
} mg_problem_t;

typedef struct {
    apr_array_header_t *entries;    /* of mg_entry_t, in manifest order */
    apr_array_header_t *problems;   /* of mg_problem_t, in manifest order */
} mg_manifest_t;

/**
 * Parse a manifest held in memory.  A line that breaks the format is
 * skipped and recorded in (*pm)->problems; the others become entries.  So
 * one bad line never costs the other domains.
 * @param pm    the manifest, from p (also set when an error is returned,
 *              with no entries)
 * @param buf   the file's contents; need not be NUL-terminated
 * @return NULL, or why the whole buffer is refused: it is not a version 1
 *         manifest (the first line is not MG_MANIFEST_HEADER)
 */
const char *mg_manifest_parse(mg_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len);

/**
 * Check a domain name: LDH labels of 1-63 characters that neither start
 * nor end with '-', at least two labels, at most MG_DOMAIN_MAX characters
 * with an optional leading "*." label; no trailing dot.
 * @return NULL, or why the name is refused (static text or from p)
 */
const char *mg_domain_check(apr_pool_t *p, const char *name,
                            apr_size_t len);

/**
 * Check that an entry's MG_CERT_FILE and MG_KEY_FILE can be served: each
 * must be a non-empty regular file that this process can open for reading.
 * Allocates only when it fails.
 * @param path  the first file that fails, from p
 * @return NULL, or why *path cannot be used (from p)
 */
const char *mg_entry_check_files(const char **path, apr_pool_t *p,
                                 const mg_entry_t *e);

/**
 * Make untrusted text safe for one log line: bytes outside printable
 * ASCII become \xHH, and at most max bytes of the input are shown
 * ("..." marks the cut).
 */
const char *mg_printable(apr_pool_t *p, const char *s, apr_size_t len,
                         apr_size_t max);

#endif /* MG_MANIFEST_H */
