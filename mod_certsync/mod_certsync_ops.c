/*
 * mod_certsync_ops.c: the real operations under the rollout state machine
 * (csy_rollout.h's csy_rollout_ops_t, for a csy_daemon_t): the
 * configuration test with the parent's own arguments, SIGUSR1 to the
 * parent, the TLS probe of our own listener, the health, leases and
 * reports on CertService, the rollback in the store, the journal's files,
 * the agent's counters, the clocks.
 *
 * Not here: any decision of the rollout (csy_rollout.c, pure, which the
 * unit tests drive with fake operations), the files' writing and the
 * status (mod_certsync_state.c).
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "util_cfgtree.h"

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "csy_clock.h"
#include "csy_probe.h"
#include "csy_rollout.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "mod_certsync_daemon.h"

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
        csy_daemon_store_status(d, p, "manifest",
                                csy_path(d, p, "manifest"),
                                apr_psprintf(p, "rollback of %s: %pm",
                                             domain, &rv));
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
        csy_daemon_store_status(d, p, name, path,
                         apr_psprintf(p, "cannot remove: %pm", &rv));
    }
    else {
        csy_daemon_store_status(d, p, name, path, NULL);
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

static const csy_rollout_ops_t csy_daemon_ops_table = {
    csy_op_running, csy_op_now, csy_op_wall, csy_op_sleep, csy_op_configtest,
    csy_op_graceful, csy_probe, csy_op_set_health, csy_op_report,
    csy_op_lease_acquire, csy_op_lease_release, csy_op_rollback,
    csy_op_read_json, csy_op_write_json, csy_op_remove, csy_op_agent,
    csy_op_log
};

const csy_rollout_ops_t *csy_daemon_ops(void)
{
    return &csy_daemon_ops_table;
}
