/*
 * csy_ondemand.h: on-demand issuance on a proxy (CertSyncOnDemand on,
 * dynamic mode): the names that handshakes asked for and the store does
 * not have, between the handshake that saw them and CertService.
 *
 * Pure code: APR and POSIX threads, no httpd types.  The table lives in
 * shared memory the httpd parent maps before it forks (like csy_shared_t):
 * every worker thread of every process writes to it from the certificate
 * callback, the sync daemon reads it, sends the queued names to
 * CertService in batches (POST /v1/on-demand) and writes the answers back.
 *
 * A handshake never waits on the network here: csy_od_note() is a hash
 * probe under a process-shared mutex.  What keeps a flood of random names
 * cheap:
 *
 *  - a token bucket (rate names per second, burst): a name beyond it is
 *    not recorded at all (its next handshake may be);
 *  - a bounded table (CSY_OD_SLOTS, CSY_OD_PROBE slots per name): a name
 *    already there is not queued twice; when its slots are full a refused
 *    name (the oldest) gives way, a queued or pending one never does;
 *  - a negative cache: a name CertService refused stays refused here
 *    until the time CertService named, and costs its handshakes one probe.
 *
 * States of a slot: FREE; QUEUED (seen, waiting for the daemon); SENT (in
 * a request to CertService); PENDING (CertService issues it: the daemon
 * syncs every second until the store has it, or until it expires); and
 * REFUSED (until it expires).
 */
#ifndef CSY_ONDEMAND_H
#define CSY_ONDEMAND_H

#include <pthread.h>

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include <jansson.h>

#include "cs_name.h"

/** Names a proxy remembers (a power of two) and slots probed per name. */
#define CSY_OD_SLOTS    4096
#define CSY_OD_PROBE    8
/** Names per POST /v1/on-demand. */
#define CSY_OD_BATCH    50
/** How long a name CertService accepted is waited for (the daemon syncs
 * every second meanwhile), and how long a refusal without a time of its
 * own stays cached. */
#define CSY_OD_PENDING_TTL  apr_time_from_sec(120)
#define CSY_OD_REFUSED_TTL  apr_time_from_sec(300)
/** A name CertService answered "later" (its budget) or that could not be
 * sent is queued again after this long, at least. */
#define CSY_OD_RETRY        apr_time_from_sec(5)

typedef enum {
    CSY_OD_FREE = 0,
    CSY_OD_QUEUED,
    CSY_OD_SENT,
    CSY_OD_PENDING,
    CSY_OD_REFUSED
} csy_od_state_t;

/** What csy_od_note() did with a name. */
typedef enum {
    CSY_OD_NOTED,               /* new: queued for CertService */
    CSY_OD_KNOWN,               /* already queued, sent or pending */
    CSY_OD_NEGATIVE,            /* refused before: cached, nothing sent */
    CSY_OD_LIMITED,             /* over the rate: not recorded */
    CSY_OD_FULL                 /* no slot: not recorded */
} csy_od_note_t;

typedef struct {
    apr_uint32_t hash;
    apr_uint32_t state;         /* csy_od_state_t */
    apr_time_t until;           /* QUEUED: not sent before; PENDING,
                                 * REFUSED: expires */
    char name[CS_NAME_MAX + 1];
} csy_od_entry_t;

/** Counters, summed over every process (the status page shows them). */
typedef struct {
    apr_uint64_t noted;         /* new names queued */
    apr_uint64_t known;         /* handshakes for a name already queued */
    apr_uint64_t negative;      /* ... for a refused one */
    apr_uint64_t limited;       /* names over the rate */
    apr_uint64_t full;          /* names without a slot */
    apr_uint64_t sent;          /* names sent to CertService */
    apr_uint64_t accepted;      /* CertService issues them */
    apr_uint64_t refused;
    apr_uint64_t deferred;      /* CertService said later */
    apr_uint64_t failed;        /* a request that failed (names requeued) */
    apr_uint64_t served;        /* pending names the store got */
    apr_uint64_t waited;        /* handshakes that waited */
} csy_od_counters_t;

typedef struct {
    pthread_mutex_t mu;         /* process-shared, robust */
    /* The token bucket, under mu. */
    double tokens;
    apr_time_t refilled;
    double rate;                /* names per second */
    double burst;
    volatile apr_uint32_t waiters;  /* handshakes waiting right now */
    csy_od_counters_t count;
    csy_od_entry_t e[CSY_OD_SLOTS];
} csy_od_t;

/** Set up a table in (shared) memory of sizeof(csy_od_t) bytes: rate
 * names per second, at most burst at once (both >= 1). */
apr_status_t csy_od_init(csy_od_t *od, unsigned rate, unsigned burst);

/** A handshake for name (a store name, csy_sni_name()) the store does
 * not have, at now. */
csy_od_note_t csy_od_note(csy_od_t *od, const char *name, apr_time_t now);

/** The state of name (FREE if the table does not have it). */
csy_od_state_t csy_od_state(csy_od_t *od, const char *name, apr_time_t now);

/**
 * The daemon: up to max names queued and due at now, marked SENT, copied
 * into names (const char * from p).  Returns how many.
 */
int csy_od_take(csy_od_t *od, apr_array_header_t *names, apr_pool_t *p,
                int max, apr_time_t now);

/** CertService's verdict on one name. */
typedef enum {
    CSY_OD_V_ACCEPTED,          /* issued or queued: wait for the feed */
    CSY_OD_V_REFUSED,           /* cache the refusal until `until` */
    CSY_OD_V_LATER,             /* ask again after `until` */
    CSY_OD_V_UNKNOWN            /* an answer we do not know: as LATER */
} csy_od_verdict_t;

typedef struct {
    const char *name;
    csy_od_verdict_t verdict;
    const char *status;         /* CertService's word, for the log */
    apr_int64_t retry_after;    /* seconds; 0: not given */
} csy_od_answer_t;

/**
 * Parse CertService's answer to POST /v1/on-demand:
 * {"results":[{"domain":D,"status":S,"retry_after":N},...]}.  S is
 * "exists", "issued", "queued", "pending" (accepted), "refused",
 * "invalid" (refused), "limited", "deferred" (later).  answers: array of
 * csy_od_answer_t (from p).  APR_EINVAL (and *err) if it is not that
 * shape; entries with a status we do not know are CSY_OD_V_UNKNOWN.
 */
apr_status_t csy_od_parse_answer(apr_array_header_t **answers,
                                 apr_pool_t *p, json_t *body,
                                 const char **err);

/** Apply one verdict to name (a name taken with csy_od_take()); a name
 * the table no longer holds as SENT is left alone. */
void csy_od_apply(csy_od_t *od, const char *name, csy_od_verdict_t v,
                  apr_int64_t retry_after, apr_time_t now);

/** A request failed: every SENT name is queued again (after
 * CSY_OD_RETRY). */
void csy_od_requeue_sent(csy_od_t *od, apr_time_t now);

/** The store now has name: its slot is free again (1 if it was pending). */
int csy_od_served(csy_od_t *od, const char *name);

/** Names pending (accepted, not yet in the store) and queued at now. */
void csy_od_load(csy_od_t *od, apr_time_t now, int *pending, int *queued);

/** A copy of the counters. */
void csy_od_counters(csy_od_t *od, csy_od_counters_t *out);

/** Count a handshake that waited (CertSyncOnDemandWait). */
void csy_od_count_wait(csy_od_t *od);

#endif /* CSY_ONDEMAND_H */
