/*
 * mg_expand.h: the configuration lines MacroGenerate feeds to httpd's
 * configuration reader, and a reader over them.
 *
 * Pure code: APR only, no httpd types.  The glue wraps the reader in an
 * ap_configfile_t; keeping it here lets the unit tests check the partial
 * reads the configuration reader makes on long lines.
 */
#ifndef MG_EXPAND_H
#define MG_EXPAND_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>

/**
 * Render one "Use <macro> <domain> <certdir>[ <extra>]\n" line per entry,
 * in order, into a single buffer: one allocation and linear time however
 * many entries there are.
 * @param len       the length of the result (0 for no entries)
 * @param macro     the macro's name
 * @param extra     further arguments, copied verbatim; NULL or "" for none
 * @param entries   of cs_manifest_entry_t
 * @return the NUL-terminated lines, from p
 */
char *mg_expand_use_lines(apr_size_t *len, apr_pool_t *p, const char *macro,
                          const char *extra,
                          const apr_array_header_t *entries);

/**
 * The names a virtual host serving domain's certificate goes by
 * (MacroGenerateServerName): its ServerName is a name the certificate
 * covers, so that mod_ssl's startup check finds it (no AH01909).  For a
 * name, the name itself.  For a wildcard "*.parent", which httpd refuses
 * as a ServerName, the name "_.parent": the certificate covers it (one
 * label), and no domain of the suite can be it (the domain rule has no
 * '_'), so it never takes a name from another virtual host; the wildcard
 * itself is then the alias.
 * @param name   the ServerName, from p (in lower case)
 * @param alias  the wildcard to add as ServerAlias, from p; NULL if none
 * @param domain a domain under the suite's rule, in any case
 * @return NULL, or why domain is refused (from p)
 */
const char *mg_server_names(const char **name, const char **alias,
                            apr_pool_t *p, const char *domain);

/** Reads a buffer the way the configuration reader reads a file. */
typedef struct {
    const char *buf;
    apr_size_t len;
    apr_size_t pos;
    int line;                   /* index of the line last read from, from
                                 * 0; -1 before the first read */
} mg_reader_t;

void mg_reader_init(mg_reader_t *r, const char *buf, apr_size_t len);

/**
 * Like fgets(): copy at most size - 1 bytes, up to and including the next
 * '\n', and NUL-terminate.  A line longer than that is returned in pieces
 * by successive calls.
 * @return APR_SUCCESS; APR_EOF when nothing is left; APR_EINVAL if size < 2
 */
apr_status_t mg_reader_gets(char *out, apr_size_t size, mg_reader_t *r);

/** One byte; APR_EOF when nothing is left. */
apr_status_t mg_reader_getc(char *ch, mg_reader_t *r);

#endif /* MG_EXPAND_H */
