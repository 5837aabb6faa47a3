/*
 * test_cs_run.c: lib/cs_run.c, a helper command with a deadline in a
 * process group of its own, run for real through /bin/sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "cs_run.h"
#include "unit.h"

static apr_pool_t *pool;
static const char *dir;

static apr_status_t sh(int *exited, int *code, const char *script,
                       const char *input, apr_interval_time_t limit,
                       volatile apr_uint32_t *stop, const char **err)
{
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    cs_run_t r;

    memset(&r, 0, sizeof(r));
    r.argv = argv;
    r.input = input;
    r.input_len = input ? strlen(input) : 0;
    r.limit = limit;
    r.stop = stop;
    *err = NULL;
    return cs_run(exited, code, &r, pool, err);
}

/* The pid a script wrote into dir/name, or 0. */
static pid_t pid_in(const char *name)
{
    FILE *f = fopen(apr_pstrcat(pool, dir, "/", name, NULL), "r");
    long pid = 0;

    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) {
            pid = 0;
        }
        fclose(f);
    }
    return (pid_t)pid;
}

/* Whether pid still runs (a zombie waiting for init to reap it does not). */
static int alive(pid_t pid)
{
    char path[64], buf[512], *state;
    FILE *f;
    size_t n;

    if (kill(pid, 0) != 0) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (!(f = fopen(path, "r"))) {
        return 1;       /* cannot tell a zombie: count it as running */
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    state = strrchr(buf, ')');
    return state && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X';
}

/* Sets *stop once the file dir/ready exists (the script started all its
 * processes), so that the kill comes after them however slow the machine. */
typedef struct {
    volatile apr_uint32_t *stop;
    const char *ready;
} stopper_t;

static void *APR_THREAD_FUNC stop_when_ready(apr_thread_t *t, void *data)
{
    stopper_t *s = data;
    int i;

    (void)t;
    for (i = 0; i < 3000 && access(s->ready, F_OK) != 0; i++) {
        apr_sleep(apr_time_from_msec(10));
    }
    *s->stop = 1;
    return NULL;
}

int main(void)
{
    volatile apr_uint32_t stop = 0;
    const char *err, *script;
    apr_time_t t0;
    int exited, code, i;
    pid_t bg;
    char *tmpl;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    /* as in httpd: a command that does not read its input must not kill
     * the caller */
    signal(SIGPIPE, SIG_IGN);
    tmpl = apr_pstrdup(pool, "/tmp/test_cs_run.XXXXXX");
    dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }

    UNIT_CASE("exit status, and the input on stdin");
    CHECK_EQ_INT(sh(&exited, &code, "read x; [ \"$x\" = hello ] && exit 7",
                    "hello\n", apr_time_from_sec(10), NULL, &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(exited, 1);
    CHECK_EQ_INT(code, 7);
    CHECK_EQ_INT(sh(&exited, &code, "exit 0", NULL, apr_time_from_sec(10),
                    NULL, &err), APR_SUCCESS);
    CHECK(exited && code == 0);

    UNIT_CASE("ended by a signal");
    CHECK_EQ_INT(sh(&exited, &code, "kill -TERM $$", NULL,
                    apr_time_from_sec(10), NULL, &err), APR_SUCCESS);
    CHECK_EQ_INT(exited, 0);
    CHECK_EQ_INT(code, SIGTERM);

    UNIT_CASE("a large input the command never reads: its deadline holds");
    {
        char *big = apr_palloc(pool, 1 << 20);

        memset(big, 'x', (1 << 20) - 1);
        big[(1 << 20) - 1] = '\0';
        /* The pipe takes 64 KiB; a blocking write of the rest would wait
         * for a reader forever, past the deadline. */
        t0 = apr_time_now();
        CHECK_EQ_INT(sh(&exited, &code, "sleep 60", big,
                        apr_time_from_msec(500), NULL, &err), APR_TIMEUP);
        CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
        /* one that exits without reading it: EPIPE, not an error */
        CHECK_EQ_INT(sh(&exited, &code, "exit 0", big,
                        apr_time_from_sec(10), NULL, &err), APR_SUCCESS);
        CHECK(exited && code == 0);
        /* and read whole by one that reads */
        CHECK_EQ_INT(sh(&exited, &code, "[ $(wc -c) = 1048575 ]", big,
                        apr_time_from_sec(10), NULL, &err), APR_SUCCESS);
        CHECK(exited && code == 0);
    }

    UNIT_CASE("the deadline kills the command");
    t0 = apr_time_now();
    CHECK_EQ_INT(sh(&exited, &code, "sleep 60", NULL,
                    apr_time_from_msec(300), NULL, &err), APR_TIMEUP);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
    CHECK_EQ_INT(exited, 0);
    CHECK_EQ_INT(code, SIGKILL);

    UNIT_CASE("a kill reaches what the command started");
    {
        stopper_t st;
        apr_thread_t *thr;
        apr_status_t trv;

        script = apr_psprintf(pool, "sleep 60 & echo $! > %s/bg; "
                              "sh -c 'sleep 60' & echo $! > %s/bg2; "
                              ": > %s/ready; wait", dir, dir, dir);
        stop = 0;
        st.stop = &stop;
        st.ready = apr_pstrcat(pool, dir, "/ready", NULL);
        CHECK(apr_thread_create(&thr, NULL, stop_when_ready, &st, pool)
              == APR_SUCCESS);
        CHECK_EQ_INT(sh(&exited, &code, script, NULL, apr_time_from_sec(60),
                        &stop, &err), APR_INCOMPLETE);
        apr_thread_join(&trv, thr);
        CHECK(access(st.ready, F_OK) == 0);
        CHECK_EQ_INT(code, SIGKILL);
        bg = pid_in("bg");
        /* SIGKILL is delivered at once, but give the kernel a moment */
        for (i = 0; i < 100 && bg > 0 && alive(bg); i++) {
            apr_sleep(apr_time_from_msec(20));
        }
        CHECK(bg > 0 && !alive(bg));
        bg = pid_in("bg2");
        for (i = 0; i < 100 && bg > 0 && alive(bg); i++) {
            apr_sleep(apr_time_from_msec(20));
        }
        CHECK(bg > 0 && !alive(bg));
    }

    UNIT_CASE("the stop flag kills it within a poll");
    stop = 1;
    t0 = apr_time_now();
    CHECK_EQ_INT(sh(&exited, &code, "sleep 60", NULL, apr_time_from_sec(30),
                    &stop, &err), APR_INCOMPLETE);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(2));

    UNIT_CASE("only standard input, output and error are inherited");
    {
        int fd = open("/dev/null", O_RDONLY);   /* no O_CLOEXEC */

        CHECK(fd > 2);
        CHECK_EQ_INT(sh(&exited, &code,
                        apr_psprintf(pool, "[ ! -e /proc/$$/fd/%d ]", fd),
                        NULL, apr_time_from_sec(10), NULL, &err),
                     APR_SUCCESS);
        CHECK(exited && code == 0);
        close(fd);
    }

    UNIT_CASE("a command that cannot run");
    {
        const char *argv[] = { "/nonexistent/cmd", "x", NULL };
        cs_run_t r;

        memset(&r, 0, sizeof(r));
        r.argv = argv;
        r.limit = apr_time_from_sec(1);
        err = NULL;
        CHECK(cs_run(&exited, &code, &r, pool, &err) != APR_SUCCESS);
        CHECK(err && strstr(err, "/nonexistent/cmd"));
    }

    unlink(apr_pstrcat(pool, dir, "/bg", NULL));
    unlink(apr_pstrcat(pool, dir, "/bg2", NULL));
    unlink(apr_pstrcat(pool, dir, "/ready", NULL));
    rmdir(dir);
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
