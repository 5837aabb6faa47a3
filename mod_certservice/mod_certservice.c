/*
 * mod_certservice: CertService, the trusted host that issues certificates,
 * generates key pairs, seals private keys to the proxy pool's wrapping
 * certificates and serves them, with a change feed and restart leases, as
 * JSON over mutual TLS (ARCHITECTURE.md section 3, docs/certservice-api.md).
 *
 * This file holds the module record and its hooks: post_config checks the
 * configuration, applies its defaults and starts the ACME workers; the
 * handler is the API's router (mod_certservice_api.c).  The other glue
 * files are listed in mod_certservice_private.h.
 */
#include "mod_certservice_private.h"

#include "http_core.h"
#include "apr_atomic.h"
#include "http_request.h"

static int cs_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *main_s)
{
    const cs_conf_t *conf;
    server_rec *s;

    cs_ssl_var = APR_RETRIEVE_OPTIONAL_FN(ssl_var_lookup);
    cs_dbd_acquire = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
    if (!cs_dbd_acquire) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, main_s, CSLOGNO(00006)
                     "mod_certservice needs mod_dbd (LoadModule dbd_module)");
        return !OK;
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    /* Every server's effective configuration, before any thread reads
     * one. */
    for (s = main_s; s; s = s->next) {
        conf = cs_config_get(s);
        if (conf->ca && (!conf->wrap_certs || !conf->wrap_certs->nelts)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CSLOGNO(00007)
                         "CertServiceLocalCA without "
                         "CertServiceWrapCertificate: nothing can be issued "
                         "until a wrapping certificate is configured");
        }
    }
    cs_od_post_config(main_s);
    if (cs_acme_post_config(pconf, main_s) != OK) {
        return !OK;
    }
    return cs_notify_post_config(pconf, main_s);
}

/*
 * Watchdog threads (the ACME workers, the notification sender) hold a
 * mod_dbd connection while they work.  mod_watchdog joins its threads
 * only when the process ends, after the child's pool, and mod_dbd's
 * connection pool in it, is gone; destroying that pool while a
 * connection is out aborts the child (apr_reslist's assertion).  So the
 * child's pool first asks them to stop and waits, a bounded time, until
 * every connection is given back.
 */
volatile apr_uint32_t cs_wd_stop;
static volatile apr_uint32_t cs_wd_busy;

int cs_wd_enter(void)
{
    apr_atomic_inc32(&cs_wd_busy);
    if (apr_atomic_read32(&cs_wd_stop)) {
        apr_atomic_dec32(&cs_wd_busy);
        return 0;
    }
    return 1;
}

void cs_wd_leave(void)
{
    apr_atomic_dec32(&cs_wd_busy);
}

static apr_status_t cs_wd_child_exit(void *data)
{
    server_rec *s = data;
    int i;

    apr_atomic_set32(&cs_wd_stop, 1);
    for (i = 0; i < CS_WD_EXIT_WAIT * 100 && apr_atomic_read32(&cs_wd_busy);
         i++) {
        apr_sleep(apr_time_from_msec(10));
    }
    if (apr_atomic_read32(&cs_wd_busy)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CSLOGNO(00035)
                     "%u worker thread(s) still hold a database connection "
                     "after %d s at the child's exit",
                     apr_atomic_read32(&cs_wd_busy), CS_WD_EXIT_WAIT);
    }
    return APR_SUCCESS;
}

static void cs_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_pre_cleanup_register(pchild, s, cs_wd_child_exit);
}

static void cs_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(cs_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(cs_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(cs_handler, NULL, NULL, APR_HOOK_MIDDLE);
    /* TRACE on the API goes to the handler, not to http_core's echo
     * (mod_certservice_api.c). */
    ap_hook_translate_name(cs_trace_mark, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_map_to_storage(cs_trace_keep, NULL, NULL, APR_HOOK_REALLY_FIRST);
}

/* Declared without AP_DECLARE_MODULE: mod_certservice_private.h already
 * has APLOG_USE_MODULE(certservice) for every glue file. */
module AP_MODULE_DECLARE_DATA certservice_module = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    cs_create_server_config,
    cs_merge_server_config,
    cs_cmds,
    cs_register_hooks
};
