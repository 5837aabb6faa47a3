/*
 * mod_certsync_dyn.c: dynamic activation (CertSyncActivation dynamic), the
 * certificate of each handshake chosen by SNI from the store.
 *
 * Every virtual host marked `CertSyncCatchAll On` gets an OpenSSL
 * certificate callback through mod_ssl's optional ssl_init_server hook;
 * for each handshake it picks the chain and key for the client's server
 * name from a per-process cache (csy_dyn.h), which reads and decrypts a
 * domain's current version on first use and again after the daemon
 * bumped that domain's generation slot in shared memory.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"

#include "apr_optional.h"
#include "apr_optional_hooks.h"

#include <openssl/ssl.h>

#include "csy_alpn.h"
#include "csy_dyn.h"
#include "mod_certsync_private.h"

/* mod_ssl's optional hook; Debian does not ship mod_ssl_openssl.h. */
typedef int ssl_HOOK_init_server_t(server_rec *s, apr_pool_t *p,
                                   int is_proxy, SSL_CTX *ctx);

/* Each worker process's cache. */
csy_cache_t *csy_cache;

/* Dynamic mode's settings, checked before anything starts. */
int csy_dyn_check(apr_pool_t *pconf, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    server_rec *v;
    int catch_alls = 0;

    for (v = s; v; v = v->next) {
        catch_alls += csy_conf(v)->catch_all == 1;
    }
    if (conf->dynamic != 1) {
        if (catch_alls) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                         CYLOGNO(00029) "CertSyncCatchAll On needs "
                         "CertSyncActivation dynamic");
            return !OK;
        }
        return OK;
    }
    if (!catch_alls) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00030)
                     "CertSyncActivation dynamic, but no virtual host has "
                     "CertSyncCatchAll On: only names with their own "
                     "virtual host are served");
    }
    return OK;
}

static void csy_child_init(apr_pool_t *pchild, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    apr_status_t rv;

    if (conf->dynamic != 1 || !csy_shared) {
        return;
    }
    rv = csy_cache_create(&csy_cache, pchild, (unsigned)conf->cache_size,
                          csy_shared, conf->store_dir, conf->wrap_certs,
                          conf->wrap_keys);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, CYLOGNO(00032)
                     "dynamic: cannot create the certificate cache; this "
                     "process serves only default certificates");
    }
}

/* A name the store does not serve (or no SNI): the virtual host's own
 * certificate, or no handshake (its CertSyncUnknownName, merged with the
 * main server's). */
static int csy_unknown(SSL *ssl, server_rec *s, const char *name)
{
    conn_rec *c = SSL_get_app_data(ssl);

    if (csy_conf(s)->refuse_unknown == 1) {
        if (c) {
            ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, CYLOGNO(00033)
                          "dynamic: no certificate for %s; handshake "
                          "refused (CertSyncUnknownName refuse)",
                          name ? name : "a client without SNI");
        }
        return 0;
    }
    return 1;
}

static int csy_cert_cb(SSL *ssl, void *arg)
{
    server_rec *s = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    conn_rec *c = SSL_get_app_data(ssl);
    csy_bundle_t *b;
    csy_alpn_cred_t *chal;
    char name[CSY_NAME_SIZE], err[512];
    apr_status_t rv;
    int ok;

    /* tls-alpn-01: where ALPN came first (TLS 1.3), an acme-tls/1
     * connection has its challenge certificate already: that one, never
     * the store's or the default (mod_certsync_alpn.c).  In TLS 1.2 this
     * callback runs first, and mod_ssl's answer replaces what it sets. */
    if (c && (chal = csy_alpn_conn_cred(c)) != NULL) {
        ok = SSL_use_cert_and_key(ssl, chal->cert, chal->key, NULL, 1) == 1;
        if (!ok) {
            ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, c, CYLOGNO(00198)
                          "dynamic: OpenSSL refused the tls-alpn-01 "
                          "certificate");
        }
        return ok;
    }
    if (!csy_cache) {
        return 1;       /* not a worker (or no cache): default */
    }
    if (!sni || !csy_sni_name(name, sni)) {
        return csy_unknown(ssl, s, sni);
    }
    rv = csy_cache_lookup(&b, csy_cache, name, err, sizeof(err));
    if (err[0] && c) {
        ap_log_cerror(APLOG_MARK, APLOG_WARNING, rv, c, CYLOGNO(00034)
                      "dynamic: %s%s", err, rv == APR_SUCCESS
                      ? "; the version loaded before keeps serving" : "");
    }
    if (APR_STATUS_IS_NOTFOUND(rv) && csy_ondemand
        && csy_od_handshake(&b, c, name)) {
        rv = APR_SUCCESS;       /* on demand: it came while we waited */
    }
    if (rv != APR_SUCCESS) {
        return csy_unknown(ssl, s, name);
    }
    ok = csy_bundle_use(ssl, b);
    csy_bundle_release(b);
    if (!ok && c) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, c, CYLOGNO(00035)
                      "dynamic: OpenSSL refused the certificate of %s",
                      name);
    }
    return ok;
}

static int csy_ssl_init_server(server_rec *s, apr_pool_t *p, int is_proxy,
                               SSL_CTX *ctx)
{
    if (is_proxy || csy_conf(s)->catch_all != 1 || !csy_main_conf
        || csy_main_conf->dynamic != 1) {
        return DECLINED;
    }
    SSL_CTX_set_cert_cb(ctx, csy_cert_cb, s);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00036)
                 "dynamic: %s:%d serves every domain of the store by SNI",
                 s->server_hostname, s->addrs ? s->addrs->host_port : 0);
    return OK;
}

void csy_dyn_register_hooks(apr_pool_t *p)
{
    ap_hook_child_init(csy_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ssl, init_server, csy_ssl_init_server, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
