/*
 * cs_run.c: a helper command in a process group of its own, with a
 * deadline.  See cs_run.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_strings.h>

#include "cs_run.h"

extern char **environ;

#define CS_RUN_POLL apr_time_from_msec(20)

/* posix_spawn's attributes: the child leads a new process group, with no
 * signal blocked and every signal's action the default (a thread of httpd
 * may block some, and httpd ignores SIGPIPE). */
static int spawn_attrs(posix_spawnattr_t *sa)
{
    sigset_t none, all;
    int rc;

    sigemptyset(&none);
    sigfillset(&all);
    if ((rc = posix_spawnattr_init(sa)) != 0) {
        return rc;
    }
    if ((rc = posix_spawnattr_setflags(sa, POSIX_SPAWN_SETPGROUP
                                           | POSIX_SPAWN_SETSIGMASK
                                           | POSIX_SPAWN_SETSIGDEF)) != 0
        || (rc = posix_spawnattr_setpgroup(sa, 0)) != 0
        || (rc = posix_spawnattr_setsigmask(sa, &none)) != 0
        || (rc = posix_spawnattr_setsigdefault(sa, &all)) != 0) {
        posix_spawnattr_destroy(sa);
    }
    return rc;
}

/* Writes what the pipe takes of the rest of the input; closes the pipe
 * once all is written or the reader is gone. */
static void feed(int *fd, const char **rest, apr_size_t *left)
{
    ssize_t n;

    while (*fd >= 0 && *left > 0) {
        n = write(*fd, *rest, *left);
        if (n > 0) {
            *rest += n;
            *left -= (apr_size_t)n;
        }
        else if (n < 0 && errno == EINTR) {
            continue;
        }
        else if (n < 0 && errno == EAGAIN) {
            return;             /* full: more at the next poll */
        }
        else {
            break;              /* EPIPE: it does not read its input */
        }
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

apr_status_t cs_run(int *exited, int *code, const cs_run_t *r,
                    apr_pool_t *p, const char **err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    const char *rest = r->input;
    apr_size_t left = r->input ? r->input_len : 0;
    apr_time_t until = apr_time_now() + r->limit;
    apr_status_t killed;
    int fds[2] = { -1, -1 }, st = 0, rc, late;
    pid_t pid, w;

    *exited = 0;
    *code = 0;
    if (r->input && pipe2(fds, O_CLOEXEC) != 0) {
        rc = errno;
        *err = apr_psprintf(p, "cannot run %s: pipe: %s", r->argv[0],
                            strerror(rc));
        return APR_FROM_OS_ERROR(rc);
    }
    if ((rc = posix_spawn_file_actions_init(&fa)) == 0) {
        if (r->input) {
            rc = posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
        }
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
        /* Nothing of the server's beyond stdin, stdout and stderr: a
         * descriptor some library opened without O_CLOEXEC (a socket, a
         * pipe of APR's) would stay open in what the command leaves
         * running. */
        if (rc == 0) {
            rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        }
#endif
#endif
        if (rc != 0) {
            posix_spawn_file_actions_destroy(&fa);
        }
    }
    if (rc == 0 && (rc = spawn_attrs(&sa)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
    }
    if (rc == 0) {
        rc = posix_spawn(&pid, r->argv[0], &fa, &sa, (char *const *)r->argv,
                         environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&sa);
    }
    if (fds[0] >= 0) {
        close(fds[0]);
    }
    if (rc != 0) {
        if (fds[1] >= 0) {
            close(fds[1]);
        }
        *err = apr_psprintf(p, "cannot run %s: %s", r->argv[0],
                            strerror(rc));
        return APR_FROM_OS_ERROR(rc);
    }
    if (fds[1] >= 0) {
        fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    }

    killed = APR_SUCCESS;
    for (;;) {
        feed(&fds[1], &rest, &left);
        w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = errno;         /* reaped by someone else: SIGCHLD ignored */
            if (fds[1] >= 0) {
                close(fds[1]);
            }
            *err = apr_psprintf(p, "%s: cannot wait for it: %s", r->argv[0],
                                strerror(rc));
            return APR_FROM_OS_ERROR(rc);
        }
        late = w == 0 && apr_time_now() > until;
        if (late || (w == 0 && r->stop && *r->stop)) {
            /* Ended meanwhile: what it left running is left alone. */
            if (waitpid(pid, &st, WNOHANG) == pid) {
                break;
            }
            killed = late ? APR_TIMEUP : APR_INCOMPLETE;
            /* The group it leads; itself at least if that fails (it
             * moved to a group of its own: what it started there is out
             * of reach, as after a setsid()). */
            if (kill(-pid, SIGKILL) != 0) {
                kill(pid, SIGKILL);
            }
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        apr_sleep(CS_RUN_POLL);
    }
    if (fds[1] >= 0) {
        close(fds[1]);
    }
    if (WIFEXITED(st)) {
        *exited = 1;
        *code = WEXITSTATUS(st);
    }
    else if (WIFSIGNALED(st)) {
        *code = WTERMSIG(st);
    }
    return killed;
}
