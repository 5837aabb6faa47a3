/*
 * csy_tkeys.h: the pool's TLS session ticket keys on a proxy: what the
 * sync daemon makes of CertService's GET /v1/ticket-keys (lib/cs_tkey.h
 * has the schedule, the shared table and the ticket callback's body).
 *
 * Pure code: APR, OpenSSL and jansson; no httpd types.
 */
#ifndef CSY_TKEYS_H
#define CSY_TKEYS_H

#include <apr_pools.h>
#include <apr_tables.h>

#include <jansson.h>

#include "cs_tkey.h"

/**
 * Open the keys of an answer of GET /v1/ticket-keys into keys (room for
 * CS_TK_MAX; *n set), with the wrapping keys (X509 *, EVP_PKEY *, same
 * order).  A key prev (may be NULL) holds already, same name and times,
 * is copied from it instead of opened again (an RSA operation each).
 * Keys no longer accepted at now are left out; a key that does not open,
 * is malformed, has an all-zero HMAC or AES secret, or whose name was
 * listed before is skipped, counted in *bad, and *err says why (the
 * last one).  *rotate, *accept: the schedule published.  APR_EINVAL
 * (with *err) if the answer is not such a document at all.
 */
apr_status_t csy_tk_open(cs_tk_key_t *keys, int *n, int *bad,
                         apr_int64_t *rotate, apr_int64_t *accept,
                         json_t *answer, const cs_tk_table_t *prev,
                         const apr_array_header_t *wrap_certs,
                         const apr_array_header_t *wrap_keys,
                         apr_int64_t now, apr_pool_t *p, const char **err);

#endif /* CSY_TKEYS_H */
