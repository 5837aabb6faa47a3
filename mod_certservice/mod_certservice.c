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

#include <openssl/crypto.h>

#include "http_core.h"
#include "apr_atomic.h"
#include "http_request.h"

/* What the watchdog workers of this generation made for themselves, to
 * release at the child's exit (cs_wd_own(), below); post_config makes it
 * in pconf. */
typedef struct {
    apr_status_t (*release)(void *);
    void *data;
} cs_wd_owned_t;

static apr_array_header_t *cs_wd_owned;

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
    cs_wd_owned = apr_array_make(pconf, 4, sizeof(cs_wd_owned_t));
    if (cs_acme_post_config(pconf, main_s) != OK) {
        return !OK;
    }
    return cs_notify_post_config(pconf, main_s);
}

/*
 * Watchdog threads (the ACME workers, the notification sender) at the
 * child's exit.  httpd 2.4's mod_watchdog never joins them in a child:
 * the child destroys its pool and calls exit() while they may still run.
 * Two things go wrong when a thread is still at work then:
 *
 * - mod_dbd's connection pool is in the child's pool; destroying it while
 *   a thread holds a connection aborts the child (apr_reslist's
 *   assertion);
 * - exit() runs OpenSSL's atexit cleanup; a thread that then frees its
 *   ACME clients or webhook transport (libcurl connections, OpenSSL keys
 *   and contexts, when mod_watchdog calls it with STOPPING) frees into a
 *   library that is gone and may corrupt the heap (a child aborted in
 *   malloc at its exit; t/acme/exit.sh makes it visible every time).
 *
 * So every callback runs between cs_wd_enter() and cs_wd_leave(), and
 * touches nothing of its worker outside them.  The child's pool, first of
 * all, asks them to stop and waits, a bounded time, until none runs; then,
 * since none will run again, it releases what each worker made for itself
 * (cs_wd_own()), before the pool and exit() go on.
 */
volatile apr_uint32_t cs_wd_stop;
static volatile apr_uint32_t cs_wd_busy;

void cs_wd_own(apr_status_t (*release)(void *), void *data)
{
    cs_wd_owned_t *o = apr_array_push(cs_wd_owned);

    o->release = release;
    o->data = data;
}

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
    /* The thread's own OpenSSL state (error queue, random generator) is
     * freed now, not when the thread ends: mod_watchdog may end it during
     * exit(), and freeing it after OpenSSL's cleanup is a double free
     * (free(): invalid pointer in the thread's TSD destructor).  The next
     * callback makes it again. */
    OPENSSL_thread_stop();
    apr_atomic_dec32(&cs_wd_busy);
}

static apr_status_t cs_wd_child_exit(void *data)
{
    server_rec *s = data;
    const cs_wd_owned_t *o;
    int i;

    apr_atomic_set32(&cs_wd_stop, 1);
    for (i = 0; i < CS_WD_EXIT_WAIT * 100 && apr_atomic_read32(&cs_wd_busy);
         i++) {
        apr_sleep(apr_time_from_msec(10));
    }
    if (apr_atomic_read32(&cs_wd_busy)) {
        /* Still in use: left to the process's end. */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CSLOGNO(00035)
                     "%u worker thread(s) still busy after %d s at the "
                     "child's exit", apr_atomic_read32(&cs_wd_busy),
                     CS_WD_EXIT_WAIT);
        return APR_SUCCESS;
    }
    for (i = 0; cs_wd_owned && i < cs_wd_owned->nelts; i++) {
        o = &APR_ARRAY_IDX(cs_wd_owned, i, cs_wd_owned_t);
        o->release(o->data);
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, CSLOGNO(00106)
                 "child exit: %d worker thread(s) stopped, their clients "
                 "released", cs_wd_owned ? cs_wd_owned->nelts : 0);
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
