/*
 * cs_run.h: a helper command (CertServiceNotifyCmd, CertServiceDNSHook)
 * run with a deadline, in a process group of its own so that a command
 * that hangs is killed with everything it started.
 *
 * Pure code: APR and POSIX (posix_spawn), no httpd types.
 *
 * APR's apr_proc_create() has no process-group option (its "detach" forks
 * once more, and the child's pid is lost), so a hung `sh -c 'x; sleep 60'`
 * killed through APR left its `sleep` behind.  Here the command is its own
 * group's leader and the kill reaches the whole group (not what moved to a
 * session of its own with setsid).  A command that ends by itself is not
 * touched, nor what it left running on purpose.  It inherits standard
 * input, output and error only (glibc 2.34 and later close the rest).
 */
#ifndef CS_RUN_H
#define CS_RUN_H

#include <apr_pools.h>
#include <apr_time.h>

typedef struct {
    /* argv[0] is the program's absolute path (no PATH search); the
     * environment is the caller's */
    const char *const *argv;
    /* Written to the command's standard input, which is then closed; a
     * command that does not read it is not an error.  NULL: its standard
     * input is the caller's (its output and error always are). */
    const char *input;
    apr_size_t input_len;
    apr_interval_time_t limit;  /* killed after this long; must be > 0 */
    /* Checked every 20 ms while the command runs: once non-zero, the
     * command is killed (the server is stopping).  May be NULL. */
    const volatile apr_uint32_t *stop;
} cs_run_t;

/**
 * Runs r->argv[0] and waits for it.
 *
 * The calling process must ignore SIGPIPE (httpd does): a command that
 * exits without reading its input must not kill the caller.
 * @param exited    set to 1 if the command exited, 0 if a signal ended it
 * @param code      its exit status, or the signal's number
 * @return APR_SUCCESS: it ended by itself (*exited, *code say how);
 *         APR_TIMEUP: killed at r->limit; APR_INCOMPLETE: killed because
 *         *r->stop was set (in both cases its whole process group was
 *         sent SIGKILL and the command reaped); otherwise it could not be
 *         started, and *err says why.
 */
apr_status_t cs_run(int *exited, int *code, const cs_run_t *r,
                    apr_pool_t *p, const char **err);

#endif /* CS_RUN_H */
