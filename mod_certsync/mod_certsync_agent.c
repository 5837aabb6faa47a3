/*
 * mod_certsync_agent.c: the sync daemon's thread that answers HAProxy's
 * agent-check (CertSyncAgent) with ready or drain, and why the host is
 * degraded.
 *
 * Not here: the answers themselves and how the port is taken again
 * (csy_agent.c, pure, unit-tested), the answer's text, which the main
 * thread makes from the status (csy_publish, mod_certsync_state.c).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"

#include "apr_atomic.h"
#include "apr_thread_proc.h"

#include "csy_agent.h"
#include "csy_clock.h"
#include "mod_certsync_daemon.h"

/*
 * HAProxy's agent-check, answered by a thread of its own: the daemon's
 * main thread may be busy for a while (a sync cycle, the configuration
 * test, a probe), and the load balancer must see ready/drain in every
 * phase.  Plain system calls only: no pool is shared with the main thread.
 *
 * After a graceful restart the previous generation's daemon may still hold
 * the port for a moment (it is on its way out): the port is taken as soon
 * as it is free (csy_agent_retry).  Until then connections are refused,
 * and HAProxy keeps the last answer it had, "drain".
 */
static void *APR_THREAD_FUNC csy_agent_main(apr_thread_t *thread, void *baton)
{
    csy_daemon_t *d = baton;
    csy_agent_retry_t retry;
    struct pollfd pfd;
    sigset_t all;
    int fd = -1, e, log_now, notice;
    apr_interval_time_t wait;

    /* Signals are for the main thread (csy_on_term). */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    csy_agent_retry_init(&retry, csy_clock_mono());
    while (!csy_stop && (fd = csy_agent_listen(&d->agent_addr)) < 0) {
        e = errno;
        wait = csy_agent_retry(&retry, e, csy_clock_mono(), &log_now);
        if (log_now) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(e),
                         d->s, CYLOGNO(00013) "CertSyncAgent %s:%d: cannot "
                         "listen; trying again (every 100 ms while the port "
                         "is taken, else every 5 s), meanwhile the "
                         "load balancer's agent-check sees neither drain "
                         "nor ready", d->conf->agent.host,
                         d->conf->agent.port);
        }
        apr_sleep(wait);
    }
    if (fd < 0) {
        return NULL;
    }
    if (csy_agent_listening_late(&retry, csy_clock_mono(), &notice)) {
        ap_log_error(APLOG_MARK, notice ? APLOG_NOTICE : APLOG_INFO, 0, d->s,
                     CYLOGNO(00040) "CertSyncAgent %s:%d: listening after "
                     "%" APR_TIME_T_FMT " ms (the port was taken)",
                     d->conf->agent.host, d->conf->agent.port,
                     apr_time_as_msec(csy_clock_mono() - retry.since));
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    while (!csy_stop) {
        char buf[CSY_AGENT_LINE];
        const char *line;
        int c;

        pfd.revents = 0;
        if (poll(&pfd, 1, 500) <= 0) {
            continue;
        }
        if ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            continue;
        }
        pthread_mutex_lock(&d->agent_mu);
        memcpy(buf, d->agent_line, sizeof(buf));
        pthread_mutex_unlock(&d->agent_mu);
        line = buf;
        if (send(c, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
            if (csy_agent_answer_is_ready(line)) {
                apr_atomic_inc32(&d->agent_told_ready);
            }
            apr_atomic_inc32(&d->agent_told);
        }
        /* else HAProxy gave up already: it asks again. */
        close(c);
    }
    close(fd);
    return NULL;
}

void csy_daemon_agent_start(csy_daemon_t *d)
{
    apr_threadattr_t *attr;
    apr_thread_t *thread;
    apr_sockaddr_t *sa;
    apr_status_t rv;

    if (!d->conf->agent.host) {
        return;
    }
    if ((rv = apr_sockaddr_info_get(&sa, d->conf->agent.host, APR_UNSPEC,
                                    (apr_port_t)d->conf->agent.port, 0,
                                    d->pool)) == APR_SUCCESS) {
        d->agent_addr = *sa;
        d->agent_on = 1;
    }
    if (rv
        || (rv = apr_threadattr_create(&attr, d->pool))
        || (rv = apr_threadattr_detach_set(attr, 1))
        || (rv = apr_thread_create(&thread, attr, csy_agent_main, d,
                                   d->pool))) {
        d->agent_on = 0;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00041)
                     "CertSyncAgent %s:%d: cannot resolve the address or "
                     "start the agent thread; the load balancer's "
                     "agent-check will not see drain/ready",
                     d->conf->agent.host, d->conf->agent.port);
    }
}
