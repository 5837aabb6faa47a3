/*
 * mod_certsync_watch.c: the sync daemon's watch on CertService's change
 * feed (CertSyncWatch, dynamic mode).
 *
 * A thread of the daemon keeps one long-poll request open: GET
 * /v1/changes?since=CURSOR&limit=1&wait=N, which CertService holds until
 * its feed moves past CURSOR (or N seconds pass).  When the answer shows
 * the feed moved, the daemon's wait between two cycles ends at once and a
 * cycle brings the change: a certificate issued anywhere is live on every
 * watching proxy within about a second, not within one CertSyncInterval.
 * The interval's polling stays as it was (the watch only shortens waits).
 *
 * Bounded: one thread and one connection per proxy; the request's
 * timeout is the wait plus CertSyncTimeout; after an error the thread
 * waits (5 s, doubling to 60 s); a CertService that answers at once
 * without holding the request (CertServiceChangesWait off, or too many
 * requests held there) makes the thread fall back to one request per
 * CertSyncInterval.  While the last cycle failed the watch does not
 * shorten the backoff.
 *
 * Log tags: CY00202 ... CY00205.
 */
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"

#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "mod_certsync_daemon.h"

#define WATCH_RETRY_MIN 5
#define WATCH_RETRY_MAX 60

static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static long long watch_cursor = -1;     /* the daemon's, after a cycle */
static long long watch_seen = -1;       /* the feed's head the watch saw */
static int watch_moved;                 /* seen > cursor: sync now */
static int watch_backoff;               /* the last cycle failed */

/* Sleeps up to secs, in steps, while the daemon runs. */
static void watch_sleep(csy_daemon_t *d, int secs)
{
    int i;

    for (i = 0; i < secs * 5 && !csy_stop && getppid() == d->parent; i++) {
        apr_sleep(apr_time_from_msec(200));
    }
}

static void *APR_THREAD_FUNC watch_main(apr_thread_t *t, void *data)
{
    csy_daemon_t *d = data;
    const int wait = d->conf->watch;
    csy_config_t *cfg;
    csy_client_t *cl;
    apr_pool_t *pool, *p;
    apr_time_t t0, last_log = 0;
    long long since, next;
    json_t *j;
    long status;
    const char *err;
    int retry = 0, quick = 0;

    (void)t;
    /* A pool of its own, never destroyed: the daemon's goes at its exit
     * while this thread may still be in a request. */
    if (apr_pool_create_unmanaged_ex(&pool, NULL, NULL) != APR_SUCCESS) {
        return NULL;
    }
    cfg = apr_pmemdup(pool, &d->cfg, sizeof(*cfg));
    cfg->timeout = wait + (cfg->timeout > 0 ? cfg->timeout : 30);
    cfg->log = NULL;
    if (csy_client_create(&cl, pool, cfg) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00202)
                     "CertSyncWatch: cannot make a client for %s; new "
                     "certificates come with each CertSyncInterval only",
                     cfg->url);
        return NULL;
    }
    apr_pool_create(&p, pool);
    while (!csy_stop && getppid() == d->parent) {
        pthread_mutex_lock(&watch_mu);
        since = watch_seen > watch_cursor ? watch_seen : watch_cursor;
        pthread_mutex_unlock(&watch_mu);
        if (since < 0) {
            watch_sleep(d, 1);          /* no cycle has run yet */
            continue;
        }
        apr_pool_clear(p);
        t0 = apr_time_now();
        j = NULL;
        err = NULL;
        if (csy_request_json(&j, &status, cl, p, "GET",
                             apr_psprintf(p, "/v1/changes?since=%"
                                          APR_INT64_T_FMT "&limit=1&wait=%d",
                                          (apr_int64_t)since, wait),
                             NULL, &err) != APR_SUCCESS
            || !json_is_integer(json_object_get(j, "next"))) {
            retry = retry ? retry * 2 : WATCH_RETRY_MIN;
            if (retry > WATCH_RETRY_MAX) {
                retry = WATCH_RETRY_MAX;
            }
            if (t0 - last_log > apr_time_from_sec(300)) {
                last_log = t0;
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s,
                             CYLOGNO(00203) "CertSyncWatch: GET /v1/changes "
                             "with wait=%d failed: %s; again in %d s (the "
                             "interval's syncs go on)", wait,
                             err ? err : "no \"next\" in the answer", retry);
            }
            json_decref(j);
            watch_sleep(d, retry);
            continue;
        }
        retry = 0;
        next = (long long)json_integer_value(json_object_get(j, "next"));
        json_decref(j);
        if (next > since) {
            pthread_mutex_lock(&watch_mu);
            if (next > watch_seen) {
                watch_seen = next;
            }
            watch_moved = 1;
            pthread_mutex_unlock(&watch_mu);
            quick = 0;
            continue;
        }
        /* Answered at once with nothing new: CertService did not hold
         * the request.  Do not poll faster than the interval then. */
        if (apr_time_now() - t0 < apr_time_from_sec(wait) / 2) {
            if (!quick++) {
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s,
                             CYLOGNO(00204) "CertSyncWatch: CertService "
                             "answers GET /v1/changes?wait=%d at once (is "
                             "CertServiceChangesWait off, or its held "
                             "requests all taken?); watching every %d s "
                             "meanwhile", wait, d->conf->interval);
            }
            watch_sleep(d, d->conf->interval);
        }
        else {
            quick = 0;
        }
    }
    return NULL;
}

void csy_daemon_watch_start(csy_daemon_t *d)
{
    apr_threadattr_t *attr;
    apr_thread_t *thread;
    apr_status_t rv;

    if (d->conf->watch <= 0) {
        return;
    }
    if (d->conf->dynamic != 1) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, d->s, CYLOGNO(00205)
                     "CertSyncWatch needs CertSyncActivation dynamic; "
                     "ignored");
        return;
    }
    if ((rv = apr_threadattr_create(&attr, d->pool))
        || (rv = apr_threadattr_detach_set(attr, 1))
        || (rv = apr_thread_create(&thread, attr, watch_main, d, d->pool))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00206)
                     "CertSyncWatch: cannot start its thread; new "
                     "certificates come with each CertSyncInterval only");
        return;
    }
    d->watching = 1;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, CYLOGNO(00207)
                 "CertSyncWatch: watching %s/v1/changes (wait %d s)",
                 d->cfg.url, d->conf->watch);
}

void csy_daemon_watch_cycled(csy_daemon_t *d, long long cursor, int failed)
{
    if (!d->watching) {
        return;
    }
    pthread_mutex_lock(&watch_mu);
    watch_cursor = cursor;
    watch_backoff = failed;
    if (cursor >= watch_seen) {
        watch_moved = 0;
    }
    pthread_mutex_unlock(&watch_mu);
}

int csy_daemon_watch_moved(csy_daemon_t *d)
{
    int moved;

    if (!d->watching) {
        return 0;
    }
    pthread_mutex_lock(&watch_mu);
    moved = watch_moved && !watch_backoff;
    pthread_mutex_unlock(&watch_mu);
    return moved;
}

void csy_daemon_watch_idle(csy_daemon_t *d, int seconds)
{
    apr_time_t until = apr_time_now() + apr_time_from_sec(seconds);

    while (csy_daemon_ops()->running(d) && apr_time_now() < until
           && !csy_daemon_watch_moved(d)) {
        apr_sleep(apr_time_from_msec(100));
    }
}
