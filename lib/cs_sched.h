/*
 * cs_sched.h: when to renew, when to retry, whether an order may start.
 *
 * Pure functions over integers (unix seconds), no I/O: the issuer queue in
 * CertService calls them, and t/unit/test_cs_sched.c pins them down.
 */
#ifndef CS_SCHED_H
#define CS_SCHED_H

#include <apr_general.h>

/** A certificate's own jitter in [0, 1): from a hash of its serial, so
 * every instance and every restart agrees on it, and certificates issued
 * together spread out. */
double cs_sched_jitter(const char *serial);

/**
 * Renewal time from the lifetime the certificate itself states:
 * not_before + lifetime * (fraction - spread * jitter), where fraction and
 * spread are in per mille (667 and 50: between 61.7% and 66.7% of the
 * lifetime).  Never before not_before, never after not_after.
 */
apr_int64_t cs_sched_renew_at(apr_int64_t not_before, apr_int64_t not_after,
                              const char *serial, int fraction_pm,
                              int spread_pm);

/**
 * Renewal time inside an ACME Renewal Information window (RFC 9773
 * section 4.2): a point of [start, end) chosen by the certificate's
 * jitter; now if the window is already over.  A window that is not one
 * (end <= start) gives -1: use cs_sched_renew_at().
 */
apr_int64_t cs_sched_renew_ari(apr_int64_t start, apr_int64_t end,
                               const char *serial, apr_int64_t now);

/** Delay before attempt number attempts + 1 after attempts failures:
 * base * 2^(attempts - 1), at most cap (attempts 0: 0). */
apr_int64_t cs_sched_backoff(int attempts, apr_int64_t base,
                             apr_int64_t cap);

/** The state of one cluster-wide limiter (a database row). */
typedef struct {
    apr_int64_t window_start;   /* unix seconds */
    apr_int64_t count;          /* orders started in this window */
    apr_int64_t paused_until;   /* the CA said 429 Retry-After */
} cs_rate_t;

/**
 * May one more order start at now, with at most limit per window seconds
 * (fixed windows)?  Updates *r when it may (*granted 1); otherwise
 * *retry_after is the seconds to wait (at least 1).
 */
void cs_sched_rate_take(cs_rate_t *r, int *granted, apr_int64_t *retry_after,
                        apr_int64_t now, apr_int64_t window, int limit);

/** RFC 3339 date-time ("2025-01-02T03:04:05Z", fractions and offsets
 * allowed) to unix seconds; APR_EINVAL if it is not one. */
apr_status_t cs_sched_parse_time(apr_int64_t *t, const char *s);

/* --- The queue's order and the budgets an order takes ------------------ */

/** A job as the scheduler sees it. */
typedef struct {
    apr_int64_t queued_at;      /* when it was queued (new jobs) */
    apr_int64_t not_before;     /* the current certificate's; */
    apr_int64_t not_after;      /* 0: none (a new domain) */
} cs_sched_job_t;

/* A renewal's deadline, per mille of its certificate's lifetime: past it
 * the renewal goes before every new domain queued after it. */
#define CS_SCHED_URGENT_PM  833

/**
 * The job's deadline, the queue's order (earliest first): a new domain's
 * is the time it was queued, a renewal's CS_SCHED_URGENT_PM of its
 * certificate's lifetime (its renewal point, two thirds, plus a sixth of
 * slack).  New domains therefore go first while renewals are not urgent,
 * renewals by the time their certificates have left, and a job's deadline
 * never moves while it waits: whatever is queued later comes later, so
 * nothing starves.
 */
apr_int64_t cs_sched_deadline(const cs_sched_job_t *job);

/** idx[0 .. n-1]: the jobs' indexes, earliest deadline first (ties: the
 * lower index first). */
void cs_sched_order(int *idx, const cs_sched_job_t *jobs, int n);

/* The budgets an order takes (bits). */
#define CS_SCHED_BUDGET_GLOBAL  0x1     /* all CAs, all accounts */
#define CS_SCHED_BUDGET_ACCOUNT 0x2     /* new orders per account */
#define CS_SCHED_BUDGET_DOMAIN  0x4     /* per registered domain */

/** Which budgets an order takes: an ARI renewal (one that names the
 * certificate it replaces) only the global one, as Let's Encrypt exempts
 * those from its new-order and per-domain limits; others all three. */
int cs_sched_budgets(int ari_replaces);

#endif /* CS_SCHED_H */
