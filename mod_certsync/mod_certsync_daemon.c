/*
 * mod_certsync_daemon.c: the sync daemon process, from the moment the
 * parent forked it (mod_certsync.c) until it exits.
 *
 * Its signals, the store's lock (one writer at a time across
 * generations), the state files it writes (state.json, health,
 * rollout.json, quarantine.json), the sync loop over csy_sync_once(), the
 * thread that answers HAProxy's agent-check, dynamic mode's activation of
 * what a cycle changed, and the real operations under the rollout state
 * machine (csy_rollout.c): the configuration test, SIGUSR1 to the parent,
 * the probe of our own listener, leases and reports on CertService.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "util_cfgtree.h"
#include "unixd.h"

#include "apr_atomic.h"
#include "apr_signal.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "cs_seal.h"
#include "csy_agent.h"
#include "csy_clock.h"
#include "csy_dyn.h"
#include "csy_probe.h"
#include "csy_rollout.h"
#include "csy_state.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "mod_certsync_private.h"

/* Seconds between tries after a failed cycle, at most. */
#define CSY_MAX_BACKOFF         600

/* Bytes of the agent-check's answer, description included. */
#define CSY_AGENT_LINE 256

/* Versions installed before the daemon wrote key.seal (an upgraded
 * store) get one, CSY_SEAL_BATCH per cycle, so that the workers' cache
 * misses stop opening key.cms; the activation of new certificates is not
 * held up by more than a batch. */
#define CSY_SEAL_BATCH 500

typedef struct {
    server_rec *s;
    const csy_conf_t *conf;
    apr_pool_t *pool;
    pid_t parent;
    csy_config_t cfg;
    csy_client_t *client;
    csy_store_t *store;
    /* What the status page shows: published to shared memory at every
     * change (csy_publish), and to state.json when the store takes it. */
    json_t *state;
    /* "ready" or "drain" (string literals): the agent thread reads it. */
    const char *volatile health;
    /* The agent-check's answer with why the host is degraded: written by
     * the main thread (csy_publish), read by the agent thread. */
    pthread_mutex_t agent_mu;
    char agent_line[CSY_AGENT_LINE];
    /* HAProxy agent-check address (a copy: the agent thread may still
     * look at it while the daemon's pool goes at exit); agent_on: set. */
    apr_sockaddr_t agent_addr;
    int agent_on;
    /* Answers the agent thread sent (all, and "ready" ones): tell whether
     * the load balancer has seen this host back in rotation. */
    volatile apr_uint32_t agent_told;
    volatile apr_uint32_t agent_told_ready;
    csy_rollout_t rollout;      /* the staggered restarts (vhost mode) */
    int seal_pos;               /* key.seal backfill: manifest position */
    int seals_done;             /* ... every version checked */
    int shm_trimmed;            /* CY00182 was logged */
    long seals_written;
    apr_hash_t *failures;       /* domain -> why its bundle was skipped */
} csy_daemon_t;

static volatile sig_atomic_t csy_stop;

static void csy_daemon_log(void *baton, cs_log_level_t level,
                           const char *msg)
{
    csy_daemon_t *d = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, d->s, CYLOGNO(00001)
                 "%s", msg);
}

/* The store's: the manifest lines it skipped (they name the manifest, the
 * line and the domain), a prune that kept domains because of them. */
static void csy_store_log(void *baton, cs_log_level_t level, const char *msg)
{
    csy_daemon_t *d = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, d->s, CYLOGNO(00045)
                 "%s", msg);
}

static void csy_on_term(int sig)
{
    csy_stop = 1;
}

static const char *csy_path(csy_daemon_t *d, apr_pool_t *p, const char *name)
{
    return apr_pstrcat(p, d->conf->store_dir, "/", name, NULL);
}

/*
 * The configuration test, with the parent's own arguments.  Returns its
 * exit code (-1 if it could not run) and, in *output, what it printed.
 */
static int csy_configtest(apr_pool_t *p, const char **output)
{
    apr_array_header_t *argv = apr_array_make(p, 12, sizeof(char *));
    const char *conffile = ap_conftree ? ap_conftree->filename : NULL;
    apr_procattr_t *attr;
    apr_file_t *rd, *wr;
    apr_proc_t proc;
    apr_exit_why_e why;
    char buf[4096];
    apr_size_t len = 0, n;
    int code = -1, i;

    *output = "";
    APR_ARRAY_PUSH(argv, const char *) = ap_server_argv0;
    APR_ARRAY_PUSH(argv, const char *) = "-t";
    APR_ARRAY_PUSH(argv, const char *) = "-d";
    APR_ARRAY_PUSH(argv, const char *) = ap_server_root;
    if (conffile) {
        APR_ARRAY_PUSH(argv, const char *) = "-f";
        APR_ARRAY_PUSH(argv, const char *) = conffile;
    }
    for (i = 0; i < ap_server_config_defines->nelts; i++) {
        APR_ARRAY_PUSH(argv, const char *) = "-D";
        APR_ARRAY_PUSH(argv, const char *) =
            APR_ARRAY_IDX(ap_server_config_defines, i, const char *);
    }
    APR_ARRAY_PUSH(argv, const char *) = NULL;
    /* Its output goes to a pipe, so a failure can say why. */
    if (apr_file_pipe_create_ex(&rd, &wr, APR_READ_BLOCK, p)
        || apr_procattr_create(&attr, p)
        || apr_procattr_cmdtype_set(attr, APR_PROGRAM_PATH)
        || apr_procattr_io_set(attr, APR_NO_PIPE, APR_NO_PIPE, APR_NO_PIPE)
        || apr_procattr_child_out_set(attr, wr, NULL)
        || apr_procattr_child_err_set(attr, wr, NULL)
        /* ap_server_argv0 is only the base name ("apache2"): looked up
         * in PATH it may be missing (/usr/sbin is not in every PATH) or
         * another httpd.  The parent's own argv[0] is what started it. */
        || apr_proc_create(&proc, ap_server_conf->process->argv[0],
                           (const char *const *)argv->elts, NULL, attr, p)) {
        return -1;
    }
    apr_file_close(wr);
    while (n = sizeof(buf) - 1 - len, n > 0
           && apr_file_read(rd, buf + len, &n) == APR_SUCCESS) {
        len += n;
    }
    buf[len] = '\0';
    for (n = 0; n < len; n++) {
        if (buf[n] == '\n' || buf[n] == '\r') {
            buf[n] = ' ';   /* one log line */
        }
    }
    apr_file_close(rd);
    if (apr_proc_wait(&proc, &code, &why, APR_WAIT) != APR_CHILD_DONE) {
        return -1;
    }
    *output = apr_pstrdup(p, buf);
    return why == APR_PROC_EXIT ? code : -1;
}

/*
 * The status goes to shared memory (the status page, the metrics and the
 * health page read it there: it cannot fail with the store), and the
 * agent-check's answer is made again from it.  A status too large for
 * the segment (tens of thousands of skipped bundles) is published without
 * the list of failures, which state.json still has.
 */
static void csy_publish(csy_daemon_t *d)
{
    json_t *reasons, *v, *small = NULL;
    char *text, *desc = NULL, line[CSY_AGENT_LINE];
    size_t i;
    apr_size_t len = 0;
    apr_status_t rv = APR_ENOSPC;

    text = json_dumps(d->state, JSON_COMPACT | JSON_SORT_KEYS);
    if (csy_status_shm && text
        && (rv = csy_state_shm_put(csy_status_shm, text, strlen(text)))
           == APR_ENOSPC) {
        small = json_deep_copy(d->state);
        json_object_set_new(small, "failures_trimmed", json_integer(
            (json_int_t)json_object_size(json_object_get(d->state,
                                                         "failures"))));
        json_object_set_new(small, "failures", json_object());
        free(text);
        text = json_dumps(small, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(small);
        rv = text ? csy_state_shm_put(csy_status_shm, text, strlen(text))
                  : APR_ENOMEM;
        if (!d->shm_trimmed) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s,
                         CYLOGNO(00182) "the status is too large for shared "
                         "memory: published without the list of skipped "
                         "bundles (%lu of them; state.json and the metrics "
                         "count them)", (unsigned long)json_object_size(
                             json_object_get(d->state, "failures")));
            d->shm_trimmed = 1;
        }
    }
    free(text);

    /* "ready up #certsync degraded: why; why" */
    reasons = csy_state_degraded(d->state);
    json_array_foreach(reasons, i, v) {
        const char *r = json_string_value(v);
        apr_size_t n = strlen(r);

        if (len + n + 3 > sizeof(line)) {
            break;
        }
        desc = desc ? realloc(desc, len + n + 3) : malloc(n + 1);
        if (!desc) {
            len = 0;
            break;
        }
        if (len) {
            memcpy(desc + len, "; ", 2);
            len += 2;
        }
        memcpy(desc + len, r, n + 1);
        len += n;
    }
    json_decref(reasons);
    csy_agent_line(line, sizeof(line), d->health, len ? desc : NULL);
    free(desc);
    pthread_mutex_lock(&d->agent_mu);
    memcpy(d->agent_line, line, sizeof(line));
    pthread_mutex_unlock(&d->agent_mu);
}

/*
 * A write to the store failed (name: a file of the store, or "manifest",
 * "cursor", "bundles" for the sync's own), or works again (why NULL).
 * The status keeps {"error", "path", "since", "last"} per name until
 * then: the status page, the metrics and the agent-check tell it.
 */
static void csy_store_status(csy_daemon_t *d, apr_pool_t *p,
                             const char *name, const char *path,
                             const char *why)
{
    json_t *errs = json_object_get(d->state, "store_errors");
    json_t *e = json_object_get(errs, name);
    json_int_t now = apr_time_sec(apr_time_now());

    if (!json_is_object(errs)) {
        errs = json_object();
        json_object_set_new(d->state, "store_errors", errs);
    }
    if (!why) {
        if (e) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00181)
                         "the store takes %s again (it failed since %"
                         APR_INT64_T_FMT ")", path ? path : name,
                         (apr_int64_t)json_integer_value(
                             json_object_get(e, "since")));
            json_object_del(errs, name);
            csy_publish(d);
        }
        return;
    }
    if (!e || !json_is_string(json_object_get(e, "error"))
        || strcmp(json_string_value(json_object_get(e, "error")), why)) {
        e = json_pack("{s:s, s:I}", "error", why, "since",
                      json_is_object(e) && json_object_get(e, "since")
                      ? json_integer_value(json_object_get(e, "since"))
                      : now);
        json_object_set_new(errs, name, e);
    }
    if (path) {
        json_object_set_new(e, "path", json_string(path));
    }
    json_object_set_new(e, "last", json_integer(now));
    csy_publish(d);
}

/* A file of the store, atomically.  rollout.json is the rollout's crash
 * journal and health what the load balancer's httpchk reads: a write that
 * fails is logged and shown in the status, never dropped silently. */
static apr_status_t csy_write_file(csy_daemon_t *d, apr_pool_t *p,
                                   const char *name, const char *text)
{
    const char *path = csy_path(d, p, name);
    apr_status_t rv = csy_write_atomic(path, text, strlen(text),
                                       APR_FPROT_UREAD | APR_FPROT_UWRITE
                                       | APR_FPROT_GREAD | APR_FPROT_WREAD,
                                       p);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00042)
                     "cannot write %s", path);
        csy_store_status(d, p, name, path, apr_psprintf(p, "%pm", &rv));
    }
    else {
        csy_store_status(d, p, name, path, NULL);
    }
    return rv;
}

/* The status (d->state) is published first: state.json only carries it
 * across a full restart, and may fail with the store. */
static apr_status_t csy_write_json(csy_daemon_t *d, apr_pool_t *p,
                                   const char *name, json_t *j)
{
    char *text;
    apr_status_t rv;

    if (j == d->state) {
        csy_publish(d);
    }
    if (!(text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00043)
                     "cannot write %s: no memory for its JSON",
                     csy_path(d, p, name));
        csy_store_status(d, p, name, csy_path(d, p, name), "no memory");
        return APR_ENOMEM;
    }
    rv = csy_write_file(d, p, name, text);
    free(text);
    return rv;
}

static json_t *csy_read_json(csy_daemon_t *d, apr_pool_t *p,
                             const char *name)
{
    json_error_t jerr;

    return json_load_file(csy_path(d, p, name), 0, &jerr);
}

static void csy_set_state(csy_daemon_t *d, csy_phase_t phase)
{
    json_object_set_new(d->state, "state",
                        json_string(csy_phase_name(phase)));
}

static void csy_count(json_t *state, const char *name, json_int_t add)
{
    json_t *counters = json_object_get(state, "counters");
    json_int_t v = json_integer_value(json_object_get(counters, name));

    json_object_set_new(counters, name, json_integer(v + add));
}

/* ready/drain, for HAProxy's agent-check and the certsync-health page. */
static void csy_set_health(csy_daemon_t *d, apr_pool_t *p, const char *health)
{
    d->health = health;
    json_object_set_new(d->state, "health", json_string(health));
    csy_publish(d);     /* the agent's answer first: it cannot fail */
    csy_write_file(d, p, "health", health);
    csy_write_json(d, p, "state.json", d->state);
}

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

static void csy_agent_open(csy_daemon_t *d)
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

/*
 * Which certificates does the listener present?  Handshakes with (up to
 * three of) the expected domains as SNI; if one presents another serial,
 * all of them are probed, and those that do not match go into mismatched
 * (domain -> the serial expected): CSY_PROBE_MISMATCH, *why says which.
 * A connection or handshake that fails means the restarted generation
 * does not answer yet (CSY_PROBE_NOT_READY: "scoreboard is full", the
 * listener still starting), never that a certificate is wrong.  With
 * nothing expected: does the listener answer at all?
 */
static int csy_probe(void *baton, apr_pool_t *p, apr_hash_t *expected,
                     apr_hash_t *mismatched, const char **why)
{
    csy_daemon_t *d = baton;
    const csy_addr_t *at = &d->conf->probe;
    const char *serial, *err;
    apr_hash_index_t *hi;
    int probed, pass;

    *why = NULL;
    if (!at->host) {
        return CSY_PROBE_OK;
    }
    if (apr_hash_count(expected) == 0) {
        if (csy_probe_serial(&serial, p, at->host, at->port, "localhost",
                             apr_time_from_sec(5), &err)) {
            *why = err;
            return CSY_PROBE_NOT_READY;
        }
        return CSY_PROBE_OK;
    }
    for (pass = 0; pass < 2; pass++) {
        probed = 0;
        for (hi = apr_hash_first(p, expected);
             hi && (pass || probed < 3); hi = apr_hash_next(hi), probed++) {
            const char *domain = apr_hash_this_key(hi), *sni = domain;
            const char *want = apr_hash_this_val(hi);

            if (domain[0] == '*') {
                sni = apr_pstrcat(p, "probe", domain + 1, NULL);
            }
            if (csy_probe_serial(&serial, p, at->host, at->port, sni,
                                 apr_time_from_sec(5), &err)) {
                *why = err;
                return CSY_PROBE_NOT_READY;
            }
            if (strcmp(serial, want) != 0) {
                if (!*why) {
                    *why = apr_psprintf(p, "%s is served with serial %s, "
                                        "not %s", domain, serial, want);
                }
                apr_hash_set(mismatched, domain, APR_HASH_KEY_STRING, want);
            }
        }
        if (!*why) {
            return CSY_PROBE_OK;
        }
        if (pass == 0) {
            /* Which ones, of all of them? */
            *why = NULL;
            apr_hash_clear(mismatched);
        }
    }
    return CSY_PROBE_MISMATCH;
}

/* The operations under the rollout state machine. */

static int csy_op_running(void *baton)
{
    csy_daemon_t *d = baton;

    return !csy_stop && getppid() == d->parent;
}

/* Intervals on the monotonic clock (csy_clock.h); the wall clock only
 * for the times saved in rollout.json and state.json. */
static apr_time_t csy_op_now(void *baton)
{
    return csy_clock_mono();
}

static apr_time_t csy_op_wall(void *baton)
{
    return apr_time_now();
}

static void csy_op_sleep(void *baton, apr_interval_time_t t)
{
    apr_sleep(t);
}

static int csy_op_configtest(void *baton, apr_pool_t *p, const char **output)
{
    return csy_configtest(p, output);
}

static void csy_op_graceful(void *baton)
{
    csy_daemon_t *d = baton;

    kill(d->parent, AP_SIG_GRACEFUL);
}

static void csy_op_set_health(void *baton, apr_pool_t *p, const char *health)
{
    csy_set_health(baton, p, health);
}

static void csy_op_report(void *baton, apr_pool_t *p, long long cursor,
                          const char *state)
{
    csy_daemon_t *d = baton;

    csy_report(d->client, p, cursor, state, d->failures);
}

static apr_status_t csy_op_lease_acquire(void *baton, apr_pool_t *p, int ttl,
                                         const char **lease,
                                         long *retry_after, const char **err)
{
    csy_daemon_t *d = baton;

    return csy_lease_acquire(lease, retry_after, d->client, p, ttl, err);
}

static void csy_op_lease_release(void *baton, apr_pool_t *p,
                                 const char *lease)
{
    csy_daemon_t *d = baton;

    csy_lease_release(d->client, p, lease);
}

/* The previous version becomes current again; a new domain, with nothing
 * to go back to, leaves the manifest (csy_store_unserve).  A manifest
 * that cannot be written is logged and shown in the status. */
static apr_status_t csy_op_rollback(void *baton, apr_pool_t *p,
                                    const char *domain)
{
    csy_daemon_t *d = baton;
    apr_status_t rv = csy_store_unserve(d->store, p, domain);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00044)
                     "rollback: cannot take %s out of the manifest of %s; "
                     "the next restart may still serve it", domain,
                     d->conf->store_dir);
        csy_store_status(d, p, "manifest", csy_path(d, p, "manifest"),
                         apr_psprintf(p, "rollback of %s: %pm", domain,
                                      &rv));
    }
    return rv;
}

static json_t *csy_op_read_json(void *baton, apr_pool_t *p, const char *name)
{
    return csy_read_json(baton, p, name);
}

static apr_status_t csy_op_write_json(void *baton, apr_pool_t *p,
                                      const char *name, json_t *j)
{
    return csy_write_json(baton, p, name, j);
}

/* rollout.json left behind would make the next daemon carry a finished
 * rollout on: a removal that fails is logged and shown like a write. */
static void csy_op_remove(void *baton, apr_pool_t *p, const char *name)
{
    csy_daemon_t *d = baton;
    const char *path = csy_path(d, p, name);
    apr_status_t rv = apr_file_remove(path, p);

    if (rv != APR_SUCCESS && !APR_STATUS_IS_ENOENT(rv)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, d->s, CYLOGNO(00180)
                     "cannot remove %s", path);
        csy_store_status(d, p, name, path,
                         apr_psprintf(p, "cannot remove: %pm", &rv));
    }
    else {
        csy_store_status(d, p, name, path, NULL);
    }
}

static int csy_op_agent(void *baton, apr_uint32_t *told,
                        apr_uint32_t *told_ready)
{
    csy_daemon_t *d = baton;

    *told = apr_atomic_read32(&d->agent_told);
    *told_ready = apr_atomic_read32(&d->agent_told_ready);
    return d->agent_on;
}

/* The rollout's lines carry their own tags. */
static void csy_op_log(void *baton, cs_log_level_t level, const char *msg)
{
    csy_daemon_t *d = baton;

    ap_log_error(APLOG_MARK, (int)level, 0, d->s, "%s", msg);
}

static const csy_rollout_ops_t csy_rollout_ops = {
    csy_op_running, csy_op_now, csy_op_wall, csy_op_sleep, csy_op_configtest,
    csy_op_graceful, csy_probe, csy_op_set_health, csy_op_report,
    csy_op_lease_acquire, csy_op_lease_release, csy_op_rollback,
    csy_op_read_json, csy_op_write_json, csy_op_remove, csy_op_agent,
    csy_op_log
};

/*
 * Dynamic mode: what the cycle installed or removed goes live now.  Prune
 * first (a deleted domain's directory goes), then bump each changed
 * domain's generation slot: a worker that looks the name up after the
 * bump finds the store already in its new state.
 */
static void csy_dyn_activate(csy_daemon_t *d, apr_pool_t *p,
                             const csy_result_t *res)
{
    apr_hash_index_t *hi;
    apr_status_t rv = APR_SUCCESS;
    int whole = 0;

    /* Only what changed: a pass over 100,000 domains per change would
     * cost seconds.  A domain both removed and made current in one cycle
     * (deleted, then added again, or the other way round) leaves the
     * manifest to decide: prune the whole store then. */
    for (hi = apr_hash_first(p, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        const char *name = apr_hash_this_key(hi);

        whole |= apr_hash_get(res->made_current, name,
                              APR_HASH_KEY_STRING) != NULL;
    }
    if (whole) {
        rv = csy_store_prune(d->store, p, NULL);
    }
    for (hi = apr_hash_first(p, res->removed_set); hi && !whole;
         hi = apr_hash_next(hi)) {
        apr_status_t rv2 = csy_store_remove(d->store, p,
                                            apr_hash_this_key(hi));

        if (rv2 != APR_SUCCESS && rv == APR_SUCCESS) {
            rv = rv2;           /* go on with the others */
        }
    }
    for (hi = apr_hash_first(p, res->made_current); hi && !whole;
         hi = apr_hash_next(hi)) {
        csy_store_prune(d->store, p, apr_hash_this_key(hi));
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00027)
                     "dynamic: cannot prune the store %s",
                     d->conf->store_dir);
    }
    for (hi = apr_hash_first(p, res->made_current); hi;
         hi = apr_hash_next(hi)) {
        csy_gen_bump(csy_shared, apr_hash_this_key(hi));
    }
    for (hi = apr_hash_first(p, res->removed_set); hi;
         hi = apr_hash_next(hi)) {
        csy_gen_bump(csy_shared, apr_hash_this_key(hi));
    }
    csy_count(d->state, "activations", 1);
    json_object_set_new(d->state, "last_activation",
                        json_integer(apr_time_sec(apr_time_now())));
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00028)
                 "dynamic: %d installed and %d removed are live, no "
                 "restart", (int)apr_hash_count(res->made_current),
                 (int)apr_hash_count(res->removed_set));
}

static void csy_backfill_seals(csy_daemon_t *d, apr_pool_t *p)
{
    int n = csy_seal_backfill(&d->cfg, d->store, p, &d->seal_pos,
                              CSY_SEAL_BATCH, &d->seals_done);

    d->seals_written += n;
    if (n > 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, d->s, CYLOGNO(00037)
                     "key.seal written for %d versions installed without "
                     "one (%d domains of the manifest checked so far)", n,
                     d->seal_pos);
    }
    if (d->seals_done && d->seals_written > 0) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00038)
                     "every current version has its key.seal (%ld "
                     "written)", d->seals_written);
    }
}

/* Signals, the client, the store and its lock: exits if any fails. */
static void csy_daemon_open(csy_daemon_t *d, apr_pool_t *cycle)
{
    const csy_conf_t *conf = d->conf;
    apr_file_t *lock;
    apr_status_t rv;

    /* The parent's handlers are not ours. */
    apr_signal(SIGTERM, csy_on_term);
    apr_signal(SIGINT, csy_on_term);
    apr_signal(SIGHUP, SIG_IGN);
    apr_signal(SIGUSR1, SIG_IGN);
    apr_signal(SIGWINCH, SIG_IGN);
    apr_signal(SIGPIPE, SIG_IGN);
    apr_signal(SIGCHLD, SIG_DFL);

    d->cfg.url = conf->url;
    d->cfg.client_cert = conf->client_cert;
    d->cfg.client_key = conf->client_key;
    d->cfg.ca_file = conf->ca_file;
    d->cfg.wrap_certs = conf->wrap_certs;
    d->cfg.wrap_keys = conf->wrap_keys;
    d->cfg.seal_keys = conf->dynamic == 1
                       ? cs_seal_keys_derive(d->pool, conf->wrap_keys)
                       : NULL;
    d->cfg.batch_size = conf->batch_size;
    d->cfg.keep_envelopes = conf->dynamic == 1;
    d->cfg.timeout = conf->timeout;
    d->cfg.pool_name = conf->pool_name;
    d->cfg.host_name = conf->host_name;
    d->cfg.log = csy_daemon_log;
    d->cfg.log_baton = d;

    if ((rv = csy_store_open(&d->store, d->pool, conf->store_dir))
        || (rv = csy_client_create(&d->client, d->pool, &d->cfg))) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, d->s, CYLOGNO(00002)
                     "sync daemon: cannot open the store %s or a client",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    csy_store_set_log(d->store, csy_store_log, d);
    if (conf->dynamic == 1 && geteuid() == 0) {
        /* The workers read the sealed keys as httpd's Group. */
        csy_store_set_envelope_group(d->store,
                                     (long)ap_unixd_config.group_id);
    }
    /* One writer at a time: the previous generation's daemon may still be
     * finishing a cycle after its SIGTERM.  The kernel drops the lock when
     * a daemon exits, however it exits. */
    rv = apr_file_open(&lock, csy_path(d, d->pool, ".lock"),
                       APR_FOPEN_WRITE | APR_FOPEN_CREATE,
                       APR_FPROT_UREAD | APR_FPROT_UWRITE, d->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_lock(lock, APR_FLOCK_EXCLUSIVE);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, d->s, CYLOGNO(00012)
                     "sync daemon: cannot lock the store %s",
                     conf->store_dir);
        exit(APEXIT_CHILDFATAL);
    }
    /* This generation's configuration was built from the manifest as it
     * is now: versions and deleted domains it does not use can go. */
    if ((rv = csy_store_prune(d->store, cycle, NULL)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00011)
                     "sync daemon: cannot prune the store %s",
                     conf->store_dir);
    }
    if (conf->dynamic == 1 && csy_shared) {
        /* A daemon before this one may have died between a cycle and its
         * activation: let the workers check everything they cache. */
        csy_gen_bump_all(csy_shared);
    }
}

/*
 * The status the previous daemon left: in shared memory after a graceful
 * restart (current even when the store could not take state.json), else
 * in state.json (a full restart), else none.  Either is parsed as
 * untrusted bytes (csy_state_parse).
 */
static json_t *csy_state_recall(csy_daemon_t *d, apr_pool_t *p)
{
    const char *path = csy_path(d, p, "state.json"), *err = NULL, *store;
    apr_size_t len;
    apr_status_t rv;
    json_t *st;
    char *text;

    if (csy_status_shm
        && (text = csy_state_shm_get(csy_status_shm, p, &len)) != NULL
        && (st = csy_state_parse(text, len, &err)) != NULL) {
        store = json_string_value(json_object_get(st, "store"));
        if (store && strcmp(store, d->conf->store_dir) == 0
            && !json_object_get(st, "failures_trimmed")) {
            return st;
        }
        /* (trimmed: the skipped bundles, to retry, are in state.json) */
        json_decref(st);        /* another store's (CertSyncStoreDir) */
    }
    rv = csy_store_read_file(&text, &len, p, path);
    if (rv == APR_SUCCESS && (st = csy_state_parse(text, len, &err))) {
        return st;
    }
    if (rv == APR_SUCCESS || !APR_STATUS_IS_ENOENT(rv)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, d->s, CYLOGNO(00183)
                     "cannot read %s (%s): the status starts empty; "
                     "counters and skipped bundles start again", path,
                     err ? err : "read error");
    }
    return json_object();
}

/* What the previous generation knew: the status, quarantine.json. */
static void csy_daemon_recall(csy_daemon_t *d, apr_pool_t *keep,
                              apr_pool_t *cycle)
{
    const csy_conf_t *conf = d->conf;
    csy_rollout_conf_t rc;
    json_t *j;

    d->state = csy_state_recall(d, cycle);
    if (!json_is_object(json_object_get(d->state, "counters"))) {
        json_object_set_new(d->state, "counters", json_object());
    }
    /* Until the first cycle says more (a rollback stays shown). */
    if (!json_is_string(json_object_get(d->state, "state"))) {
        csy_set_state(d, CSY_PHASE_STARTING);
    }
    /* The first cycle runs now.  The previous daemon's next_sync is in
     * the future after any restart, and hours ahead if its clock was:
     * shown, it would only mislead. */
    json_object_set_new(d->state, "next_sync",
                        json_integer(apr_time_sec(apr_time_now())));
    json_object_set_new(d->state, "host", json_string(d->cfg.host_name));
    json_object_set_new(d->state, "pool", json_string(d->cfg.pool_name));
    json_object_set_new(d->state, "service", json_string(d->cfg.url));
    json_object_set_new(d->state, "store", json_string(conf->store_dir));

    rc.interval = conf->interval;
    rc.drain_time = conf->drain_time;
    rc.lease_ttl = conf->lease_ttl;
    rc.min_restart_interval = conf->min_restart_interval;
    rc.restart_timeout = conf->restart_timeout;
    rc.agent_grace = CSY_AGENT_GRACE;
    rc.agent_name = conf->agent.host
                    ? apr_psprintf(d->pool, "%s:%d", conf->agent.host,
                                   conf->agent.port)
                    : "(no CertSyncAgent)";
    rc.parent = apr_psprintf(d->pool, "pid %" APR_PID_T_FMT, d->parent);
    j = csy_read_json(d, cycle, "quarantine.json");
    csy_rollout_init(&d->rollout, d->pool, &csy_rollout_ops, d, &rc,
                     d->state, csy_json_hash(d->pool, j));
    json_decref(j);
    d->cfg.quarantine = d->rollout.quarantine;
    /* Skipped bundles stay listed, reported and retried across daemons:
     * a daemon lives only until the next restart, and the cursor has
     * already moved past them. */
    d->failures = csy_json_hash(keep, json_object_get(d->state,
                                                      "failures"));
}

/* Files of the store whose last write failed and that nothing else would
 * write again soon: tried again every cycle, so that a store that takes
 * writes again does not keep stale copies (and the status its errors).
 * state.json is written at the end of every cycle anyway; rollout.json
 * and the sync's own files by what they are for. */
static void csy_retry_writes(csy_daemon_t *d, apr_pool_t *p)
{
    json_t *errs = json_object_get(d->state, "store_errors"), *q;

    if (json_object_get(errs, "health")) {
        csy_write_file(d, p, "health", d->health);
    }
    if (json_object_get(errs, "quarantine.json")) {
        q = csy_hash_json(p, d->rollout.quarantine);
        csy_write_json(d, p, "quarantine.json", q);
        json_decref(q);
    }
}

/* One sync cycle and what follows it; the seconds until the next. */
static int csy_daemon_cycle(csy_daemon_t *d, apr_pool_t *cycle, int *backoff)
{
    const csy_conf_t *conf = d->conf;
    apr_time_t now = apr_time_now();
    csy_result_t res;
    apr_hash_index_t *hi;
    const char *state;
    apr_status_t rv;

    csy_retry_writes(d, cycle);
    rv = csy_sync_once(&res, d->client, d->store, d->failures, cycle);
    json_object_set_new(d->state, "last_sync",
                        json_integer(apr_time_sec(now)));
    json_object_set_new(d->state, "cursor", json_integer(res.cursor_after));
    if (res.head > 0 || res.head_exact) {
        /* How far behind CertService the host is (a page read). */
        json_object_set_new(d->state, "service_cursor",
                            json_integer(res.head > res.cursor_after
                                         ? res.head : res.cursor_after));
        json_object_set_new(d->state, "service_cursor_exact",
                            json_boolean(res.head_exact));
    }
    if (res.store_failed) {
        csy_store_status(d, cycle, res.store_failed,
                         strcmp(res.store_failed, "bundles")
                         ? csy_path(d, cycle, res.store_failed)
                         : conf->store_dir, res.store_error);
    }
    else if (rv == APR_SUCCESS) {
        csy_store_status(d, cycle, "manifest", NULL, NULL);
        csy_store_status(d, cycle, "cursor", NULL, NULL);
        csy_store_status(d, cycle, "bundles", NULL, NULL);
    }
    json_object_set_new(d->state, "failures",
                        csy_hash_json(cycle, d->failures));
    csy_count(d->state, "cycles", 1);
    csy_count(d->state, "installed", res.installed);
    csy_count(d->state, "removed", res.removed);
    for (hi = apr_hash_first(cycle, res.made_current);
         hi && conf->dynamic != 1; hi = apr_hash_next(hi)) {
        csy_rollout_add(&d->rollout, apr_hash_this_key(hi),
                        apr_hash_this_val(hi));
    }
    if (rv) {
        *backoff = *backoff ? *backoff * 2 : conf->interval;
        if (*backoff > CSY_MAX_BACKOFF) {
            *backoff = CSY_MAX_BACKOFF;
        }
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, d->s, CYLOGNO(00004)
                     "sync failed: %s; nothing served changed; next try "
                     "in about %ds", res.error, *backoff);
        json_object_set_new(d->state, "last_error", json_string(res.error));
        json_object_set_new(d->state, "last_error_time",
                            json_integer(apr_time_sec(now)));
        csy_set_state(d, CSY_PHASE_BACKOFF);
        csy_count(d->state, "errors", 1);
        csy_publish(d);
        return *backoff;
    }
    *backoff = 0;
    json_object_set_new(d->state, "last_success",
                        json_integer(apr_time_sec(now)));
    json_object_set_new(d->state, "last_error", json_null());
    json_object_del(d->state, "last_error_time");
    /* A rollback stays visible until the next rollout ends; a host left
     * drained after one (CY00016) until its listener answers again. */
    state = json_string_value(json_object_get(d->state, "state"));
    if (csy_phase_parse(state) == CSY_PHASE_FAILED) {
        csy_rollout_recheck(&d->rollout, cycle);
    }
    else if (csy_phase_parse(state) != CSY_PHASE_ROLLED_BACK) {
        csy_set_state(d, CSY_PHASE_IDLE);
    }
    if (res.changed) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, d->s, CYLOGNO(00005)
                     "sync to seq %" APR_INT64_T_FMT ": %d installed, %d "
                     "removed, %d failed", (apr_int64_t)res.cursor_after,
                     res.installed, res.removed,
                     (int)apr_hash_count(d->failures));
    }
    if (res.changed && conf->dynamic == 1) {
        csy_dyn_activate(d, cycle, &res);
    }
    else if (res.changed) {
        json_object_set_new(d->state, "restart_pending", json_true());
        /* Durable before the rollout starts: a daemon that dies before
         * rollout.json is written (in the configuration test, say)
         * leaves the next one a restart to make. */
        csy_write_json(d, cycle, "state.json", d->state);
    }
    csy_publish(d);
    csy_report(d->client, cycle, res.cursor_after,
               json_is_true(json_object_get(d->state, "restart_pending"))
               ? "restart-pending" : "ready", d->failures);
    if (conf->dynamic == 1 && !d->seals_done) {
        csy_backfill_seals(d, cycle);
    }
    return csy_rollout_cycle(&d->rollout, cycle, res.cursor_after,
                             conf->restart == 1);
}

void csy_daemon_main(server_rec *s, const csy_conf_t *conf, pid_t parent)
{
    csy_daemon_t d;
    apr_pool_t *pool, *cycle, *keep;
    int backoff = 0;

    apr_pool_create(&pool, NULL);
    apr_pool_create(&keep, pool);
    apr_pool_create(&cycle, pool);
    memset(&d, 0, sizeof(d));
    d.s = s;
    d.conf = conf;
    d.pool = pool;
    d.parent = parent;
    /* Until the daemon knows whether a rollout is under way (rollout.json):
     * the agent thread may answer before that. */
    d.health = "drain";
    pthread_mutex_init(&d.agent_mu, NULL);
    apr_cpystrn(d.agent_line, csy_agent_answer(d.health),
                sizeof(d.agent_line));
    csy_daemon_open(&d, cycle);
    csy_daemon_recall(&d, keep, cycle);
    csy_publish(&d);
    csy_agent_open(&d);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00003)
                 "sync daemon started (pid %" APR_PID_T_FMT "): %s every "
                 "%ds, store %s", getpid(), d.cfg.url, conf->interval,
                 conf->store_dir);
    if (conf->dynamic == 1) {
        /* A rollout.json left by vhost mode: nothing to restart for. */
        csy_op_remove(&d, cycle, "rollout.json");
        csy_set_health(&d, cycle, "ready");
    }
    else {
        csy_rollout_start(&d.rollout, cycle);
    }

    while (csy_op_running(&d)) {
        apr_time_t now = apr_time_now();
        int wait;

        apr_pool_clear(cycle);
        wait = csy_daemon_cycle(&d, cycle, &backoff);
        if (!wait) {
            wait = conf->interval;
        }
        if (conf->jitter > 0) {
            unsigned char r[2];

            apr_generate_random_bytes(r, sizeof(r));
            wait += (int)(((r[0] << 8) | r[1]) % (conf->jitter + 1));
        }
        json_object_set_new(d.state, "next_sync",
                            json_integer(apr_time_sec(now) + wait));
        csy_write_json(&d, cycle, "state.json", d.state);
        csy_rollout_idle(&d.rollout, wait);
    }
    json_decref(d.state);
    csy_stop = 1;       /* the agent thread must not outlive the pool */
    apr_pool_destroy(pool);
    exit(0);
}
