/*
 * cs_notify.h: CertService's notifications: per-domain lifecycle events
 * (issued, renewed, failed, expiring, moved to another CA, on-demand
 * refused) kept in an outbox table of the database and delivered to a
 * webhook (a signed JSON POST) and/or a command (like mod_md's
 * MDMessageCmd).
 *
 * Pure code: APR, OpenSSL, jansson and the store; no httpd types.  The
 * glue (mod_certservice_notify.c) owns the thread, the HTTP transport and
 * the processes it runs; everything it decides comes from here.
 *
 * Exactly once across instances on one database:
 *   * an event is recorded once: its id is derived from what it reports
 *     (a certificate's serial, a failed attempt), and the outbox's primary
 *     key (id, sink) refuses a second row, so an event that two instances
 *     notice (the expiry scan) or one instance notices twice is one row;
 *   * a row is delivered by one worker: a claim is one UPDATE whose WHERE
 *     re-checks that the row is due and unclaimed (like the ACME queue);
 *   * a worker that dies while delivering leaves a claim that expires
 *     (CS_NOTIFY_CLAIM): the row is delivered again, with the same id and
 *     body, so a receiver that keeps the ids it has seen dedupes it.
 *
 * Signature (docs/certservice-api.md, "Notifications"): HMAC-SHA256 with
 * the shared secret over "<timestamp>.<body>", sent as
 * "X-CertService-Signature: sha256=<hex>" beside
 * "X-CertService-Timestamp: <unix seconds>"; the receiver refuses a
 * timestamp too far from its clock (a replayed request) and an id it has
 * seen (a retried delivery).
 */
#ifndef CS_NOTIFY_H
#define CS_NOTIFY_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "cs_store.h"

/* Event types. */
#define CS_EVENT_ISSUED         "issued"        /* a new domain's first */
#define CS_EVENT_RENEWED        "renewed"
#define CS_EVENT_FAILED         "failed"        /* an order failed */
#define CS_EVENT_EXPIRING       "expiring"      /* no successor in time */
#define CS_EVENT_MOVED          "moved"         /* to another CA */
#define CS_EVENT_REFUSED        "on-demand-refused"

/* Sinks: one outbox row per sink per event, delivered independently. */
#define CS_SINK_WEBHOOK         "webhook"
#define CS_SINK_CMD             "cmd"

/* A worker's hold on an outbox row: longer than one delivery can take (the
 * webhook's 30 s, the command's CS_NOTIFY_CMD_TIMEOUT). */
#define CS_NOTIFY_CLAIM         120
#define CS_NOTIFY_CMD_TIMEOUT   60
/* Retries: from 30 s doubling to 1 hour, at most 16 attempts (about 12
 * hours); then the row is "dead" and stays for inspection. */
#define CS_NOTIFY_BACKOFF       30
#define CS_NOTIFY_BACKOFF_CAP   3600
#define CS_NOTIFY_MAX_ATTEMPTS  16
/* Delivered and dead rows are kept this long (and at least until the
 * certificate they name expired, so that its expiry is told once). */
#define CS_NOTIFY_KEEP          (7 * 86400)

/** One event.  Strings may be NULL where they do not apply. */
typedef struct {
    const char *type;           /* CS_EVENT_* */
    const char *domain;
    const char *serial;         /* the certificate it is about */
    apr_int64_t not_after;      /* of that certificate; 0: none */
    const char *error;          /* failed: the error text */
    const char *problem;        /* failed: the CA's problem document, JSON
                                 * text (cs_notify_problem()); or NULL */
    int attempts;               /* failed: failures in a row */
    const char *ca;             /* the CA's directory URL, or NULL */
    const char *detail;         /* moved: the new CA; refused: why */
    apr_int64_t time;           /* unix seconds */
} cs_event_t;

/** Whether type is one of CS_EVENT_*. */
int cs_notify_type_known(const char *type);

/**
 * The event's id: 32 hex digits of SHA-256 over its type, domain and
 * what makes it unique (discriminator: the serial for issued, renewed
 * and expiring; the attempt and its time for failed).  The same event
 * noticed twice gets the same id.
 */
const char *cs_notify_event_id(apr_pool_t *p, const char *type,
                               const char *domain,
                               const char *discriminator);

/**
 * The CA's problem document from an ACME error text (lib/cs_acme.h: "what:
 * urn:ietf:params:acme:error:TYPE: detail (HTTP n); SUBTYPE: detail"), as
 * JSON text {"type", "detail", "status", "subproblems"}; NULL when the
 * text names no ACME problem (a connection error, the pre-check).
 */
const char *cs_notify_problem(apr_pool_t *p, const char *error);

/** The event as the JSON body both sinks get (keys sorted, compact);
 * id as computed by cs_notify_event_id(). */
const char *cs_notify_event_json(apr_pool_t *p, const char *id,
                                 const cs_event_t *ev);

/**
 * The signature header's value "sha256=<64 hex digits>": HMAC-SHA256 with
 * secret over timestamp "." body.  NULL if OpenSSL failed.
 */
const char *cs_notify_sign(apr_pool_t *p, const unsigned char *secret,
                           apr_size_t secret_len, const char *timestamp,
                           const char *body, apr_size_t body_len);

/** A delivery's result, as the glue saw it. */
typedef enum {
    CS_DELIVERY_OK,             /* webhook 2xx, command exit 0 */
    CS_DELIVERY_UNREACHABLE,    /* no answer (connection, timeout, TLS) */
    CS_DELIVERY_STATUS,         /* webhook: another HTTP status */
    CS_DELIVERY_EXIT            /* command: non-zero exit, signal, timeout */
} cs_delivery_t;

/** What becomes of an outbox row after a delivery attempt. */
typedef struct {
    const char *state;          /* "sent", "pending" (retry), "dead" */
    int attempts;               /* failed attempts so far */
    apr_int64_t next_at;        /* pending: retry then */
} cs_notify_next_t;

/**
 * Decide after a delivery of a row that had failed attempts times before:
 * delivered, or retried with backoff (no answer, HTTP 5xx, 408, 429, a
 * command that failed; never sooner than retry_after seconds, a 429's or
 * 503's Retry-After), or dead (another 4xx: the receiver refuses it, a
 * retry would not change that; or CS_NOTIFY_MAX_ATTEMPTS reached).
 */
void cs_notify_decide(cs_notify_next_t *next, int attempts,
                      cs_delivery_t result, long status,
                      apr_int64_t retry_after, apr_int64_t now);

/* --- The outbox (cs_store_notify.c) ----------------------------------- */

/** An outbox row. */
typedef struct {
    const char *id;
    const char *sink;
    const char *type;
    const char *domain;
    const char *serial;
    apr_int64_t not_after;
    const char *body;           /* the JSON, as built when recorded */
    const char *state;          /* "pending", "sent", "dead" */
    int attempts;
    apr_int64_t next_at;
    const char *last_error;
    apr_int64_t created;
} cs_outbox_t;

/**
 * Record ev once for each sink of sinks (const char *: CS_SINK_*), due
 * now.  An event already recorded (same id and sink) is left as it is:
 * *added counts the rows that were new.  *id (if not NULL): the event's
 * id.  discriminator: see cs_notify_event_id().
 */
apr_status_t cs_notify_record(int *added, const char **id, cs_db_t *db,
                              apr_pool_t *p, const cs_event_t *ev,
                              const char *discriminator,
                              const apr_array_header_t *sinks);

/** Rows due at now and not claimed, earliest first, at most limit (array
 * of cs_outbox_t with id and sink only). */
apr_status_t cs_notify_due(apr_array_header_t **rows, cs_db_t *db,
                           apr_pool_t *p, apr_int64_t now, int limit);

/** Claim a due row for lease seconds, atomically across instances;
 * *claimed 0 if it was not due or another worker had it. */
apr_status_t cs_notify_claim(int *claimed, cs_db_t *db, apr_pool_t *p,
                             const char *id, const char *sink,
                             const char *owner, apr_int64_t now, int lease);

/** One row, or APR_NOTFOUND. */
apr_status_t cs_notify_get(cs_outbox_t **row, cs_db_t *db, apr_pool_t *p,
                           const char *id, const char *sink);

/** Store the decision for a row claimed by owner and release the claim. */
apr_status_t cs_notify_finish(cs_db_t *db, apr_pool_t *p, const char *id,
                              const char *sink, const char *owner,
                              const cs_notify_next_t *next,
                              const char *error, apr_int64_t now);

/**
 * Record an "expiring" event for every domain whose certificate expires
 * within window seconds of now or has at most percent % of its lifetime
 * left (either may be 0: not used), unless one was recorded for that
 * certificate already; at most limit per call.  *added: events recorded.
 */
apr_status_t cs_notify_scan_expiring(int *added, cs_db_t *db,
                                     apr_pool_t *p, apr_int64_t now,
                                     apr_int64_t window, int percent,
                                     const apr_array_header_t *sinks,
                                     int limit);

/** Drop delivered and dead rows older than keep seconds whose
 * certificate expired. */
apr_status_t cs_notify_purge(cs_db_t *db, apr_pool_t *p, apr_int64_t now,
                             apr_int64_t keep);

/** Rows of the outbox in state (for status pages and tests). */
apr_status_t cs_notify_count(apr_int64_t *count, cs_db_t *db,
                             apr_pool_t *p, const char *state);

#endif /* CS_NOTIFY_H */
