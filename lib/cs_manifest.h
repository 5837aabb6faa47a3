/*
 * cs_manifest.h: the certsync manifest (docs/manifest.md), the list of
 * servable domains that mod_certsync writes and mod_macro_gen expands.
 * The grammar, its one policy for bad lines, the reader and the writer:
 * the one owner of the format.
 *
 *     # certsync manifest v2
 *     example.com live/example.com/current
 *     www.example.net live/www.example.net/current
 *
 * Version 2 (written since December 2026) allows a certdir relative to
 * the directory that holds the manifest (the store), so a line costs the
 * name twice and 14 bytes, not the store's absolute path.  Version 1 (the
 * same grammar, absolute certdirs only) is still read: a store written by
 * an older mod_certsync keeps working until its next manifest write.
 *
 * The manifest is read as a stream (cs_manifest_open, cs_manifest_next):
 * one line at a time through a fixed buffer, so there is no size limit
 * and no copy of the whole file in memory.  For the duplicate rule a
 * reader keeps the last name while the names are in increasing order,
 * and an index of every name only for a file that is not.
 *
 * The policy (docs/manifest.md, "What readers do"): a file whose first
 * line is not a known header is refused as a whole; a bad line (or a
 * domain listed again) is skipped and reported as a problem, so that one
 * line never costs the other domains.  Every reader must report each
 * problem (the line, the domain, why) and count them: a skipped line is
 * a domain not served.
 *
 * Pure code: APR only, no httpd types; nothing here logs.
 */
#ifndef CS_MANIFEST_H
#define CS_MANIFEST_H

#include <apr_file_io.h>
#include <apr_pools.h>
#include <apr_tables.h>

/* The first line of a version 1 manifest (absolute certdirs only). */
#define CS_MANIFEST_HEADER_V1   "# certsync manifest v1"
/* The first line of a version 2 manifest, the one written. */
#define CS_MANIFEST_HEADER_V2   "# certsync manifest v2"
#define CS_MANIFEST_HEADER      CS_MANIFEST_HEADER_V2

#define CS_MANIFEST_CERTDIR_MAX 1024
/* A longer line is skipped (a problem unless blank or a comment): a
 * domain (253), a separator and a certdir (1024) fit with room. */
#define CS_MANIFEST_LINE_MAX    4096

/** One servable domain. */
typedef struct {
    const char *domain;         /* as written: cs_name_check, any case */
    const char *certdir;        /* absolute; as written if it was relative
                                 * and the reader has no base */
    int line;                   /* in the manifest, from 1 */
    const char *name;           /* domain in lower case */
} cs_manifest_entry_t;

/** A line that was skipped, and why. */
typedef struct {
    int line;                   /* in the manifest, from 1 */
    const char *domain;         /* first field, printable; NULL if none */
    const char *reason;
} cs_manifest_problem_t;

/** A whole manifest in memory (cs_manifest_parse). */
typedef struct {
    apr_array_header_t *entries;    /* of cs_manifest_entry_t, in order */
    apr_array_header_t *problems;   /* of cs_manifest_problem_t, in order */
} cs_manifest_t;

typedef struct cs_manifest_reader_t cs_manifest_reader_t;

/**
 * Where a reader gets its bytes: at most *len into buf; *len = 0 at the
 * end.  @return APR_SUCCESS or a read error (passed on by
 * cs_manifest_next).
 */
typedef apr_status_t cs_manifest_read_fn(void *baton, char *buf,
                                         apr_size_t *len);

/**
 * Put the source at offset (bytes from its start), for a second pass over
 * the part already read.  @return APR_SUCCESS or why not.
 */
typedef apr_status_t cs_manifest_seek_fn(void *baton, apr_off_t offset);

/**
 * A reader over any source; reads the header.  With seek, the reader
 * keeps no name per line while the names come in increasing order (as
 * mod_certsync writes them) and reads the part before the first name out
 * of order a second time to index it; without seek (NULL), it indexes
 * every name from the start.
 * @param base  the directory relative certdirs (v2) are resolved against,
 *              or NULL to leave them as written
 * @param why   set when the source is refused as a whole (not a v1 or v2
 *              manifest); the return is then APR_EINVAL
 * @return APR_SUCCESS, APR_EINVAL (*why), or the source's read error
 */
apr_status_t cs_manifest_reader_create(cs_manifest_reader_t **r,
                                       const char **why, apr_pool_t *p,
                                       cs_manifest_read_fn *read,
                                       cs_manifest_seek_fn *seek,
                                       void *baton, const char *base);

/**
 * A reader over the file at path (relative certdirs resolved against its
 * directory); the file is closed with p.
 * @return as cs_manifest_reader_create; APR_ENOENT if it does not exist,
 *         APR_EINVAL with *why NULL if it is not a regular file; another
 *         open or read error
 */
apr_status_t cs_manifest_open(cs_manifest_reader_t **r, const char **why,
                              apr_pool_t *p, const char *path);

/**
 * The next entry or skipped line, in file order: exactly one of *e and
 * *pr is set.  Their strings stay valid until the next call.
 * @return APR_SUCCESS; APR_EOF after the last line; a read error
 */
apr_status_t cs_manifest_next(const cs_manifest_entry_t **e,
                              const cs_manifest_problem_t **pr,
                              cs_manifest_reader_t *r);

/** The version of the reader's manifest: 1 or 2. */
int cs_manifest_version(const cs_manifest_reader_t *r);

/**
 * Parse a manifest held in memory (buf need not be NUL-terminated), all
 * of it, through a reader; relative certdirs are left as written.
 * @param pm    the manifest, from p (also set, empty, when refused)
 * @return NULL, or why the whole buffer is refused: it is not a version 1
 *         or 2 manifest (the first line is not one of the headers)
 */
const char *cs_manifest_parse(cs_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len);

/**
 * Check a certdir: at most CS_MANIFEST_CERTDIR_MAX bytes of printable
 * ASCII other than space and the characters httpd's configuration reader
 * would interpret ("'\$<>); absolute unless relative_ok.
 * @return NULL, or why (static text or from p)
 */
const char *cs_manifest_certdir_check(apr_pool_t *p, const char *s,
                                      apr_size_t len, int relative_ok);

/** Write the version 2 header line to f. */
apr_status_t cs_manifest_write_header(apr_file_t *f);

/**
 * Write one entry's line to f, after checking it as a reader would (the
 * duplicate rule is the caller's: write each domain once).
 * @param p     for *why only
 * @return APR_SUCCESS; APR_EINVAL (*why: why) if it breaks the grammar,
 *         and nothing is written; a write error
 */
apr_status_t cs_manifest_write_entry(const char **why, apr_file_t *f,
                                     apr_pool_t *p, const char *domain,
                                     const char *certdir);

/**
 * Write a version 2 manifest for entries (array of cs_manifest_entry_t;
 * line and name are ignored), in the given order, to f (buffered is
 * best), a line at a time.
 * @return APR_SUCCESS; APR_EINVAL if an entry breaks the grammar (*why
 *         says which and why: what was written must then be thrown away);
 *         a write error
 */
apr_status_t cs_manifest_write(const char **why, apr_file_t *f,
                               apr_pool_t *p,
                               const apr_array_header_t *entries);

/**
 * The text cs_manifest_write would write, from p (for tests and small
 * manifests).
 * @return the text, or NULL if an entry breaks the grammar (*why says
 *         which and why)
 */
const char *cs_manifest_text(const char **why, apr_pool_t *p,
                             const apr_array_header_t *entries);

/*
 * A manifest in memory in the one form mod_certsync writes, which answers
 * a lookup without being read: the version 2 header, then for each domain
 * exactly "NAME PREFIX NAME SUFFIX\n" (NAME lower case, cs_name_check),
 * the names strictly increasing as bytes (strcmp's order), nothing else
 * (no comment, blank line or CR).  The sync daemon maps the file and
 * checks it once (cs_manifest_sorted_check), then finds names by binary
 * search (cs_manifest_sorted_find): a cycle with k changes looks at about
 * k * log2(lines) lines, not the whole file.
 */

/**
 * Is buf (len bytes, a whole manifest) in that form?  One pass, nothing
 * allocated.
 * @param prefix, suffix  what the certdir holds around the name
 *              ("live/" and "/current": cs_layout_certdir)
 * @return NULL, or why not (static text)
 */
const char *cs_manifest_sorted_check(const char *buf, apr_size_t len,
                                     const char *prefix, const char *suffix);

/**
 * In a manifest cs_manifest_sorted_check accepted: the offset of the line
 * of name (lower case) and *found 1, or the offset of the line it would go
 * before and *found 0 (len: after the last).
 */
apr_size_t cs_manifest_sorted_find(int *found, const char *buf,
                                   apr_size_t len, const char *name);

/**
 * One problem as the words of a warning:
 * "skipping line N of PATH (domain 'D'): REASON".
 */
const char *cs_manifest_problem_text(apr_pool_t *p, const char *path,
                                     const cs_manifest_problem_t *pr);

#endif /* CS_MANIFEST_H */
