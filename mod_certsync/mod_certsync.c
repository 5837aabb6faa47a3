/*
 * mod_certsync: keeps a proxy's certificate store in step with CertService
 * and makes new certificates live (ARCHITECTURE.md section 4).
 *
 * This file: the module record, its hooks, post_config, and the parent's
 * side of the sync daemon (fork at every (re)start, started again when it
 * dies, stopped with the configuration generation that started it).
 *
 * The sync loop runs in a daemon the module forks from the httpd parent,
 * the way mod_cgid starts cgid: it keeps the parent's privileges (root in
 * production, so it can write root-only key files and signal the parent).
 * No sync work happens in the request path: workers only read the status
 * file the daemon writes.
 *
 * vhost activation: after a cycle that changed what is servable, the daemon
 * runs the configuration test (httpd -t) and, only if it passes, asks the
 * parent for a graceful restart (SIGUSR1), staggered across the pool by a
 * lease (csy_rollout.c); mod_macro_gen expands the new manifest.
 *
 * dynamic activation: the store keeps the sealed keys and no restart ever
 * happens: mod_ssl's ssl_init_server hook installs a certificate callback
 * on every catch-all virtual host (mod_certsync_dyn.c).
 *
 * The other files: mod_certsync_config.c (directives, defaults, merge),
 * mod_certsync_daemon.c (the daemon process; its other files are listed
 * in mod_certsync_daemon.h), mod_certsync_dyn.c, mod_certsync_status.c
 * (status, health, metrics), mod_certsync_private.h.
 */
#include <signal.h>
#include <unistd.h>


#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_listen.h"
#include "ap_mpm.h"

#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "cs_http.h"
#include "csy_dyn.h"
#include "csy_state.h"
#include "mod_certsync_private.h"

const csy_conf_t *csy_main_conf;
csy_shared_t *csy_shared;
csy_state_shm_t *csy_status_shm;

/* Bytes of the status's JSON text in shared memory (csy_state.h): far
 * more than a status needs; a page is only touched when written. */
#define CSY_STATUS_SHM_TEXT     (1024 * 1024)
#define CSY_STATUS_SHM_KEY      "mod_certsync: status shm"

/*
 * The status segment: anonymous, made in the process pool the first time
 * (it outlives every generation, and the module's DSO, which httpd
 * unloads at a restart: the pool's user data finds it again), inherited
 * by the daemon and the workers of each generation.  A graceful restart
 * keeps what the previous daemon published, even when the store could not
 * take state.json.
 */
static csy_state_shm_t *csy_status_segment(server_rec *s)
{
    apr_pool_t *pp = s->process->pool;
    apr_size_t size = csy_state_shm_size(CSY_STATUS_SHM_TEXT);
    apr_shm_t *shm = NULL;
    apr_status_t rv;

    apr_pool_userdata_get((void **)&shm, CSY_STATUS_SHM_KEY, pp);
    if (!shm) {
        if ((rv = apr_shm_create(&shm, size, NULL, pp)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, CYLOGNO(00184)
                         "cannot create shared memory for the status (%"
                         APR_SIZE_T_FMT " bytes): the status page reads "
                         "state.json, which a store that cannot be written "
                         "leaves behind", size);
            return NULL;
        }
        apr_pool_userdata_set(shm, CSY_STATUS_SHM_KEY, apr_pool_cleanup_null,
                              pp);
    }
    return csy_state_shm_attach(apr_shm_baseaddr_get(shm),
                                apr_shm_size_get(shm));
}

static pid_t csy_daemon_pid;

static apr_status_t csy_kill_daemon(void *data)
{
    if (csy_daemon_pid > 0) {
        kill(csy_daemon_pid, SIGTERM);
        csy_daemon_pid = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t csy_start_daemon(server_rec *s, apr_pool_t *pconf);

/* Restarts the daemon if it died (and httpd is not stopping). */
static void csy_maintenance(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;
    server_rec *s = ap_server_conf;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(data);
        if (csy_daemon_pid != proc->pid) {
            break;      /* an older generation's daemon */
        }
        csy_daemon_pid = 0;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00008)
                     "sync daemon %" APR_PID_T_FMT " died; starting it "
                     "again", proc->pid);
        csy_start_daemon(s, NULL);
        break;
    case APR_OC_REASON_RESTART:
        /* The pconf cleanup stops it; unregistering calls us again with
         * APR_OC_REASON_UNREGISTER, which has nothing left to do. */
        apr_proc_other_child_unregister(data);
        break;
    default:
        break;
    }
}

static apr_status_t csy_start_daemon(server_rec *s, apr_pool_t *pconf)
{
    apr_proc_t *proc;
    apr_status_t rv;
    pid_t parent = getpid();

    if (!pconf) {
        pconf = s->process->pconf;
    }
    proc = apr_pcalloc(pconf, sizeof(*proc));
    rv = apr_proc_fork(proc, pconf);
    if (rv == APR_INCHILD) {
        /* Not a worker: no listening sockets, no children to reap. */
        ap_close_listeners();
        csy_daemon_main(s, csy_conf(s), parent);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, CYLOGNO(00009)
                     "cannot fork the sync daemon");
        return rv;
    }
    csy_daemon_pid = proc->pid;
    apr_proc_other_child_register(proc, csy_maintenance, proc, NULL, pconf);
    return APR_SUCCESS;
}

static int csy_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    csy_conf_t *conf = csy_conf(s);
    server_rec *v;
    apr_shm_t *shm;
    apr_status_t rv;

    /* Every server_rec's copy with its defaults: nothing downstream needs
     * one of its own. */
    for (v = s; v; v = v->next) {
        csy_conf_effective(csy_conf(v), pconf);
    }
    csy_main_conf = conf;
    csy_shared = NULL;          /* the last generation's went with pconf */
    csy_status_shm = NULL;
    csy_ondemand = NULL;
    csy_tk_table = NULL;
    if (csy_dyn_check(pconf, s) != OK || csy_od_check(s) != OK) {
        return !OK;
    }
    if (!conf->url) {
        return OK;
    }
    if (!conf->store_dir || !conf->client_cert || !conf->wrap_keys) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     CYLOGNO(00010) "CertSyncServiceURL needs "
                     "CertSyncStoreDir, CertSyncClientCertificate and at "
                     "least one CertSyncWrappingKey");
        return !OK;
    }
    /* The first pass only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    cs_http_global_init();
    csy_status_shm = csy_status_segment(s);
    csy_tk_post_config(pconf, s);
    if (conf->dynamic == 1) {
        /* Anonymous: the daemon and the workers inherit the mapping.  The
         * generation table is sized for the store as it is now, at each
         * start (csy_dyn.h: about one slot per domain). */
        apr_finfo_t fi;
        apr_uint32_t slots = csy_gen_slots_for(
            apr_stat(&fi, apr_pstrcat(ptemp, conf->store_dir, "/manifest",
                                      NULL), APR_FINFO_SIZE, ptemp)
            == APR_SUCCESS ? (apr_uint64_t)fi.size : 0);

        if ((rv = apr_shm_create(&shm, csy_shared_size(slots), NULL,
                                 pconf))) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                         CYLOGNO(00031) "dynamic: cannot create shared "
                         "memory (%" APR_SIZE_T_FMT " bytes)",
                         csy_shared_size(slots));
            return !OK;
        }
        csy_shared = apr_shm_baseaddr_get(shm);
        csy_shared_init(csy_shared, slots);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00201)
                     "dynamic: %u generation slots (%" APR_SIZE_T_FMT
                     " bytes of shared memory) for the store %s",
                     (unsigned)slots, csy_shared_size(slots),
                     conf->store_dir);
        if (csy_od_post_config(pconf, s) != OK) {
            return !OK;
        }
    }
    if (csy_start_daemon(s, pconf) != APR_SUCCESS) {
        return !OK;
    }
    apr_pool_cleanup_register(pconf, NULL, csy_kill_daemon,
                              apr_pool_cleanup_null);
    return OK;
}

static void csy_register_hooks(apr_pool_t *p)
{
    /* Before mod_ssl's: its ssl_init_server hook reads our settings. */
    static const char *const before_ssl[] = { "mod_ssl.c", NULL };

    ap_hook_post_config(csy_post_config, NULL, before_ssl, APR_HOOK_MIDDLE);
    csy_dyn_register_hooks(p);
    csy_tk_register_hooks(p);
    csy_alpn_register_hooks(p);
    csy_status_register_hooks(p);
}

/* Not AP_DECLARE_MODULE: mod_certsync_private.h has APLOG_USE_MODULE. */
module AP_MODULE_DECLARE_DATA certsync_module = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    csy_create_server_config,
    csy_merge_server_config,
    csy_cmds,
    csy_register_hooks
};
