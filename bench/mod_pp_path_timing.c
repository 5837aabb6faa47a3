/*
 * mod_pp_path_timing.c: a measuring module for bench/proxy_protocol.sh
 * (PATHTIME=1), loaded into the variants compared, never into a server.
 *
 * For each connection's first request it takes three clock readings:
 *
 *   t0  in the first pre_connection hook of all (before
 *       mod_proxy_protocol's, which runs APR_HOOK_REALLY_FIRST)
 *   t1  after the last post_read_request hook (after the module's
 *       PROXY_PROTOCOL_* variables)
 *   t2  in log_transaction, once the response has been written
 *
 * and appends "t1-t0 t2-t1" (nanoseconds) as one line to the file named
 * by the environment variable PP_PATH_TIMING_FILE (which must exist:
 * the children open it after dropping privileges).  t1 - t0 holds
 * everything mod_proxy_protocol does on a connection: the read of the
 * header, the parse, the client address, the bytes after the header
 * handed to the core, the request's variables; and in both variants the
 * core's setup and the read and parse of the request.  t2 - t1 (the
 * handler and the response) holds nothing of the module's.  With one
 * connection at a time the worker has the CPU to itself, so these wall
 * times are CPU time but for the odd interruption, which the medians
 * leave out.  The write comes after t2, outside both spans.
 *
 * Build:
 *   cc -O2 -shared -fPIC -I$(apxs -q INCLUDEDIR) $(apr-1-config --includes \
 *      --cppflags) bench/mod_pp_path_timing.c -o mod_pp_path_timing.so
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_protocol.h"
#include "http_request.h"

module AP_MODULE_DECLARE_DATA pp_path_timing_module;

typedef struct {
    apr_uint64_t t0, t1;
} pt_conn_t;

static int pt_fd = -1;

static apr_uint64_t pt_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (apr_uint64_t)ts.tv_sec * 1000000000u + (apr_uint64_t)ts.tv_nsec;
}

static int pt_pre_connection(conn_rec *c, void *csd)
{
    pt_conn_t *pc;

    if (c->master || pt_fd < 0) {
        return DECLINED;
    }
    pc = apr_pcalloc(c->pool, sizeof(*pc));
    pc->t0 = pt_now();
    ap_set_module_config(c->conn_config, &pp_path_timing_module, pc);
    return DECLINED;
}

static int pt_post_read_request(request_rec *r)
{
    pt_conn_t *pc = ap_get_module_config(r->connection->conn_config,
                                         &pp_path_timing_module);

    if (pc && !pc->t1) {
        pc->t1 = pt_now();
    }
    return DECLINED;
}

static int pt_log_transaction(request_rec *r)
{
    pt_conn_t *pc = ap_get_module_config(r->connection->conn_config,
                                         &pp_path_timing_module);
    apr_uint64_t t2 = pt_now();
    char line[64];
    int n;

    if (!pc || !pc->t1 || pc->t0 == 0) {
        return DECLINED;
    }
    n = snprintf(line, sizeof(line), "%" APR_UINT64_T_FMT " %"
                 APR_UINT64_T_FMT "\n", pc->t1 - pc->t0, t2 - pc->t1);
    /* One short O_APPEND write: whole lines, whichever thread. */
    if (write(pt_fd, line, (size_t)n) != n) {
        pt_fd = -1;
    }
    pc->t0 = 0;     /* later requests on the connection are not counted */
    return DECLINED;
}

static void pt_child_init(apr_pool_t *p, server_rec *s)
{
    const char *path = getenv("PP_PATH_TIMING_FILE");

    pt_fd = path ? open(path, O_WRONLY | O_APPEND) : -1;
}

static void pt_register_hooks(apr_pool_t *p)
{
    ap_hook_child_init(pt_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(pt_pre_connection, NULL, NULL,
                           APR_HOOK_REALLY_FIRST - 10);
    ap_hook_post_read_request(pt_post_read_request, NULL, NULL,
                              APR_HOOK_REALLY_LAST + 10);
    ap_hook_log_transaction(pt_log_transaction, NULL, NULL,
                            APR_HOOK_REALLY_LAST);
}

AP_DECLARE_MODULE(pp_path_timing) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    pt_register_hooks
};
