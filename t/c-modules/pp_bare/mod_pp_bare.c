/*
 * mod_pp_bare (tests only): connections to a virtual host with
 * "PPBareChain On" lose mod_logio's and mod_reqtimeout's input filters, so
 * that mod_proxy_protocol's filter heads the connection's input chain, as
 * in an httpd built without those modules (Debian builds mod_logio in).
 * t/proxy_protocol/45_bare_chain.t checks that requests and their bodies
 * are still read through HTTP_IN there.  Each response says which filter
 * headed the connection's input chain once the others were gone
 * (X-PP-Bare-Head), so that the test knows the case it meant is the one
 * it ran.
 */
#define HTTPD_TEST_REQUIRE_APACHE 2.4

#if CONFIG_FOR_HTTPD_TEST
#endif

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_strings.h"

module AP_MODULE_DECLARE_DATA pp_bare_module;

typedef struct {
    int on;
} bare_conf_t;

static void *bare_create(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return apr_pcalloc(p, sizeof(bare_conf_t));
}

static const char *bare_flag(cmd_parms *cmd, void *dummy, int on)
{
    bare_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                             &pp_bare_module);
    (void)dummy;
    conf->on = on;
    return NULL;
}

static const command_rec bare_cmds[] = {
    AP_INIT_FLAG("PPBareChain", bare_flag, NULL, RSRC_CONF,
                 "On: drop mod_logio's and mod_reqtimeout's input filters"),
    { NULL }
};

static int bare_strip(conn_rec *c)
{
    bare_conf_t *conf = ap_get_module_config(c->base_server->module_config,
                                             &pp_bare_module);
    ap_filter_t *f, *next;

    if (!conf->on) {
        return DECLINED;
    }
    for (f = c->input_filters; f; f = next) {
        next = f->next;
        if (!strcasecmp(f->frec->name, "log_input_output")
            || !strcasecmp(f->frec->name, "reqtimeout")) {
            ap_remove_input_filter(f);
        }
    }
    if (c->input_filters) {
        apr_table_setn(c->notes, "pp_bare_head",
                       c->input_filters->frec->name);
    }
    return DECLINED;
}

static int bare_fixups(request_rec *r)
{
    const char *head = apr_table_get(r->connection->notes, "pp_bare_head");

    if (head) {
        apr_table_setn(r->headers_out, "X-PP-Bare-Head", head);
    }
    return DECLINED;
}

static int bare_pre_connection(conn_rec *c, void *csd)
{
    (void)csd;
    return bare_strip(c);
}

static void bare_register_hooks(apr_pool_t *p)
{
    (void)p;
    /* mod_logio adds its filter in pre_connection (middle; the core's
     * hook, really last, ends the run), mod_reqtimeout in
     * process_connection (first): strip after each, before anything
     * reads. */
    ap_hook_pre_connection(bare_pre_connection, NULL, NULL,
                           APR_HOOK_LAST);
    ap_hook_process_connection(bare_strip, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_fixups(bare_fixups, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA pp_bare_module = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, bare_create, NULL, bare_cmds, bare_register_hooks
};
