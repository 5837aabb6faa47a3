/*
 * cs_ondemand.h: on-demand issuance in CertService: a proxy asks for
 * names its handshakes wanted (POST /v1/on-demand); for each new one
 * CertService asks the operator's URL (CertServiceOnDemandAsk: GET
 * URL?domain=NAME, 200 means yes, anything else or no answer means no, as
 * Caddy's "ask"), takes from a fleet-wide budget (a limiter row of the
 * database, shared by every instance), and adds the domain as PUT
 * /v1/domains/NAME would.
 *
 * Pure code: APR, jansson and the store; no httpd types.  The glue
 * (mod_certservice_ondemand.c) owns the HTTP client and the order of
 * the steps; what each step decides is here, unit-tested.
 *
 * The verdicts are kept in the database (table cs_ondemand), so that N
 * instances share them: a name refused is not asked for again until its
 * time is over (CertServiceOnDemandRefusedTTL), whichever instance a
 * proxy reaches; a name allowed is not asked for again either (for the
 * same time) when the budget made it wait.
 */
#ifndef CS_ONDEMAND_H
#define CS_ONDEMAND_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "cs_store.h"

/* Names per request, at most (a proxy sends CSY_OD_BATCH, 50). */
#define CS_OD_MAX_NAMES     100
/* The limiters' names in cs_acme_limits. */
#define CS_OD_LIMITER       "on-demand"
#define CS_OD_ASK_LIMITER   "on-demand-ask"
#define CS_OD_EVENT_LIMITER "on-demand-events"

/* Verdicts as stored, and the statuses of the answer. */
#define CS_OD_ALLOWED       "allowed"   /* the ask said yes */
#define CS_OD_REFUSED       "refused"   /* ask said no / no ask / bad name */
#define CS_OD_ADDED         "added"     /* issued or queued on demand */

/** One name of a request. */
typedef struct {
    const char *raw;            /* as sent (printable, cut) */
    const char *name;           /* normalised; NULL if refused */
    const char *why;            /* why it is refused */
} cs_od_item_t;

/**
 * Parse {"domains": ["name", ...], "host": "proxy-name"} (host optional):
 * at most max names (more: 413).  Each name is normalised
 * (cs_name_normalize); a name that is not a domain, or a wildcard (a
 * handshake asks for one name), is kept with name NULL and why set, so
 * that the answer can say so for it alone; a duplicate is dropped.
 * Returns 0, or an HTTP status (400, 413) with *err.
 */
int cs_od_parse_request(apr_array_header_t **items, const char **host,
                        apr_pool_t *p, const char *buf, apr_size_t len,
                        int max, const char **err);

/** The ask URL for domain: base + "?domain=" (or "&domain=" when base
 * has a query already), the name percent-encoded. */
const char *cs_od_ask_url(apr_pool_t *p, const char *base,
                          const char *domain);

/** What the ask's answer means: 1 (allowed) for HTTP 200 only; rv is the
 * transport's (a timeout, a refused connection: 0). */
int cs_od_ask_allows(apr_status_t rv, long status);

/** The discriminator of an on-demand-refused event: one event per name
 * per ttl-long window of time. */
const char *cs_od_event_discriminator(apr_pool_t *p, apr_int64_t now,
                                      apr_int64_t ttl);

/* --- The verdicts (cs_store_ondemand.c) -------------------------------- */

typedef struct {
    const char *name;
    const char *verdict;        /* CS_OD_* */
    apr_int64_t until;          /* unix seconds: the verdict holds until */
    const char *reason;         /* refused: why; or NULL */
    apr_int64_t asked;          /* when the ask was made */
} cs_od_row_t;

/** The verdict on name, or APR_NOTFOUND. */
apr_status_t cs_od_get(cs_od_row_t **row, cs_db_t *db, apr_pool_t *p,
                       const char *name);

/** Record a verdict (a new row, or the name's row replaced). */
apr_status_t cs_od_put(cs_db_t *db, apr_pool_t *p, const char *name,
                       const char *verdict, apr_int64_t until,
                       const char *reason, apr_int64_t now);

/** Drop verdicts over before now. */
apr_status_t cs_od_purge(cs_db_t *db, apr_pool_t *p, apr_int64_t now);

/** Verdicts of one kind (for the status and tests). */
apr_status_t cs_od_count(apr_int64_t *count, cs_db_t *db, apr_pool_t *p,
                         const char *verdict);

#endif /* CS_ONDEMAND_H */
