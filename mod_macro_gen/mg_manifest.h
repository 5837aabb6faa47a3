/*
 * mg_manifest.h: what mod_macro_gen checks of a manifest entry beyond the
 * grammar.  The manifest itself (docs/manifest.md: grammar, bad-line
 * policy) is lib/cs_manifest.h, shared with mod_certsync, which writes it;
 * the file names of a certdir are lib/cs_layout.h.
 *
 * Pure code: APR and POSIX only, no httpd types, so the unit tests link it
 * directly.  Nothing here logs: problems come back as data for the caller
 * to report.
 */
#ifndef MG_MANIFEST_H
#define MG_MANIFEST_H

#include <apr_pools.h>

#include "cs_manifest.h"

/**
 * Check that an entry's CS_LAYOUT_CHAIN and CS_LAYOUT_KEY can be served:
 * each must be a non-empty regular file that this process can open for
 * reading.  Allocates only when it fails.
 * @param path  the first file that fails, from p
 * @return NULL, or why *path cannot be used (from p)
 */
const char *mg_entry_check_files(const char **path, apr_pool_t *p,
                                 const cs_manifest_entry_t *e);

#endif /* MG_MANIFEST_H */
