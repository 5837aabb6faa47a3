/*
 * csy_agent.h: HAProxy's agent-check as the sync daemon answers it: what
 * it says for a health, and how the listening port is taken when the
 * previous generation's daemon may still hold it.
 *
 * Pure code: APR and POSIX sockets; no httpd types.  The thread that
 * answers lives in mod_certsync_agent.c.
 */
#ifndef CSY_AGENT_H
#define CSY_AGENT_H

#include <apr_network_io.h>
#include <apr_time.h>

/* Seconds: how long the agent's port may stay taken by the previous
 * generation's daemon, and how long a host back in rotation waits for the
 * load balancer to ask its agent, before either is logged as a problem. */
#define CSY_AGENT_GRACE 10

/**
 * The line answered for health ("ready" or "drain"): "ready\n", or
 * "drain\n" for anything else (a host that does not know is kept out).
 */
const char *csy_agent_answer(const char *health);

/**
 * The line answered for health, with why the host is degraded (desc,
 * NULL or "" when it is not): HAProxy's agent-check reads words (ready,
 * up, drain, ...) and an optional description after '#', which its stats
 * page shows.  A degraded host that serves stays in rotation: "ready up
 * #certsync degraded: DESC\n"; "drain" keeps its description too.  The
 * description is cut to fit size (at least 64) and loses every byte that
 * is not printable ASCII.  Returns buf.
 */
const char *csy_agent_line(char *buf, apr_size_t size, const char *health,
                           const char *desc);

/** Is answer (csy_agent_answer's or csy_agent_line's) one that puts the
 * host in rotation? */
int csy_agent_answer_is_ready(const char *answer);

/** A listening socket on sa (non-blocking, close-on-exec), or -1 with
 * errno set. */
int csy_agent_listen(const apr_sockaddr_t *sa);

/* The retry policy of a listener whose port cannot be had yet. */
typedef struct {
    apr_time_t since;           /* the first try */
    int told;                   /* the problem was logged */
} csy_agent_retry_t;

void csy_agent_retry_init(csy_agent_retry_t *st, apr_time_t now);

/**
 * After a failed listen (errno e): how long to wait before the next try
 * (100 ms while the port is taken, it is free in a moment; 5 s for
 * anything else, which will hardly change), and in *log_now whether to
 * log the problem now: once, at once for anything but a taken port, after
 * CSY_AGENT_GRACE seconds for a taken one.
 */
apr_interval_time_t csy_agent_retry(csy_agent_retry_t *st, int e,
                                    apr_time_t now, int *log_now);

/**
 * Once listening: whether to log that it took a while (at least 100 ms),
 * and at which level: *notice 1 when the problem had been logged.
 */
int csy_agent_listening_late(const csy_agent_retry_t *st, apr_time_t now,
                             int *notice);

#endif /* CSY_AGENT_H */
