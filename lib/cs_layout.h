/*
 * cs_layout.h: the certsync store's layout on disk, the one place that
 * spells it.  mod_certsync's store (mod_certsync/csy_store.h: how it is
 * written, durably), the dynamic-mode reader (csy_dyn.c), the manifest's
 * certdirs and bench/mkstore all build their paths here.
 *
 *   STORE/cursor                  the change-feed sequence applied ("123\n")
 *   STORE/manifest                the servable domains (docs/manifest.md)
 *   STORE/live/DOMAIN/SERIAL/     one version, never changed once complete:
 *       fullchain.pem             the certificate and its chain, PEM
 *       privkey.pem               the key, PEM (vhost mode)
 *       key.cms                   the key sealed to the wrapping key (dynamic)
 *       key.seal                  the same key sealed for this proxy
 *                                 (lib/cs_seal.h; optional, dynamic)
 *   STORE/live/DOMAIN/current     symlink -> SERIAL: what is served
 *   STORE/live/DOMAIN/previous    symlink -> SERIAL: the rollback target
 *   .tmp-*                        anywhere: a write in progress (cs_file.h)
 *
 * DOMAIN passes cs_name_check (lower case); SERIAL is 1 to 64 hex digits.
 * The manifest's certdir for DOMAIN is STORE/live/DOMAIN/current, written
 * relative to the store (live/DOMAIN/current, cs_layout_certdir) since
 * manifest version 2.
 *
 * Pure code: APR only.
 */
#ifndef CS_LAYOUT_H
#define CS_LAYOUT_H

#include <apr_pools.h>

#define CS_LAYOUT_LIVE          "live"
#define CS_LAYOUT_CURRENT       "current"
#define CS_LAYOUT_PREVIOUS      "previous"
#define CS_LAYOUT_CHAIN         "fullchain.pem"
#define CS_LAYOUT_KEY           "privkey.pem"
#define CS_LAYOUT_ENVELOPE      "key.cms"
#define CS_LAYOUT_SEAL          "key.seal"
#define CS_LAYOUT_MANIFEST      "manifest"
#define CS_LAYOUT_CURSOR        "cursor"

/* X.509 allows 20 octets (40 hex digits); a little room beyond. */
#define CS_LAYOUT_SERIAL_MAX    64

/**
 * A path in the store: STORE/live with domain NULL; STORE/live/DOMAIN
 * with entry NULL; STORE/live/DOMAIN/ENTRY (a serial, CS_LAYOUT_CURRENT
 * or CS_LAYOUT_PREVIOUS) with file NULL; else that directory's file.
 * Nothing is checked: the caller has checked domain and entry.
 */
const char *cs_layout_path(apr_pool_t *p, const char *store,
                           const char *domain, const char *entry,
                           const char *file);

/**
 * The same into buf (size bytes), without a pool, for the handshake path.
 * @return the length, or 0 if the path does not fit (buf is then empty)
 */
apr_size_t cs_layout_path_buf(char *buf, apr_size_t size, const char *store,
                              const char *domain, const char *entry,
                              const char *file);

/** The manifest's certdir for domain, relative to the store:
 *  "live/DOMAIN/current". */
const char *cs_layout_certdir(apr_pool_t *p, const char *domain);

/** A file at the top of the store (CS_LAYOUT_MANIFEST, CS_LAYOUT_CURSOR). */
const char *cs_layout_top(apr_pool_t *p, const char *store,
                          const char *name);

/** Whether s (len bytes) is a serial: 1 to CS_LAYOUT_SERIAL_MAX hex digits.
 *  Only a serial ever names a version directory or a link's target. */
int cs_layout_serial_ok(const char *s, apr_size_t len);

#endif /* CS_LAYOUT_H */
