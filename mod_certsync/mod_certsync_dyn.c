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
 *
 * One virtual host serves every name, so mod_ssl's own check that a
 * request's Host belongs to the virtual host of the handshake (421,
 * AH02032) cannot tell names apart: the catch-all makes that check itself
 * against the certificate it chose for the connection (csy_dyn_read_req).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "apr_optional.h"
#include "apr_optional_hooks.h"
#include "apr_strings.h"

#include "mod_ssl.h"

#include <openssl/ssl.h>

#include "csy_alpn.h"
#include "csy_dyn.h"
#include "mod_certsync_private.h"

/* mod_ssl's optional hook; Debian does not ship mod_ssl_openssl.h. */
typedef int ssl_HOOK_init_server_t(server_rec *s, apr_pool_t *p,
                                   int is_proxy, SSL_CTX *ctx);

/* Each worker process's cache. */
csy_cache_t *csy_cache;

/* What the certificate callback chose for a connection, kept on its pool
 * (userdata: the module's conn_config slot is tls-alpn-01's). */
#define CSY_DYN_CONN_KEY "certsync-dyn"
typedef struct {
    X509 *leaf;         /* the store's certificate; NULL: not the store's */
} csy_dyn_conn_t;

static APR_OPTIONAL_FN_TYPE(ssl_var_lookup) *csy_ssl_var;
static APR_OPTIONAL_FN_TYPE(ssl_is_https) *csy_ssl_is_https;

/* The connection a request arrived on, as TLS saw it (an HTTP/2 stream's
 * is its master's). */
static conn_rec *csy_tls_conn(conn_rec *c)
{
    while (c->master) {
        c = c->master;
    }
    return c;
}

static apr_status_t csy_dyn_conn_cleanup(void *data)
{
    csy_dyn_conn_t *dc = data;

    X509_free(dc->leaf);
    dc->leaf = NULL;
    return APR_SUCCESS;
}

/* Remember leaf (NULL: the virtual host's own certificate) as what this
 * connection's handshake presented; a second callback on the same
 * connection (a HelloRetryRequest) replaces the first. */
static void csy_dyn_conn_set(conn_rec *c, X509 *leaf)
{
    csy_dyn_conn_t *dc = NULL;
    void *v = NULL;

    if (!c) {
        return;
    }
    c = csy_tls_conn(c);
    apr_pool_userdata_get(&v, CSY_DYN_CONN_KEY, c->pool);
    dc = v;
    if (!dc) {
        dc = apr_pcalloc(c->pool, sizeof(*dc));
        apr_pool_userdata_setn(dc, CSY_DYN_CONN_KEY, csy_dyn_conn_cleanup,
                               c->pool);
    }
    X509_free(dc->leaf);
    dc->leaf = NULL;
    if (leaf && X509_up_ref(leaf) == 1) {
        dc->leaf = leaf;
    }
}

/* Whether another virtual host listens on a port of v. */
static int csy_shares_port(server_rec *s, server_rec *v)
{
    server_rec *o;
    server_addr_rec *a, *b;

    for (o = s->next; o; o = o->next) {
        if (o == v) {
            continue;
        }
        for (a = v->addrs; a; a = a->next) {
            for (b = o->addrs; b; b = b->next) {
                /* Port 0: any port (<VirtualHost *:*>). */
                if (a->host_port == b->host_port || !a->host_port
                    || !b->host_port) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* mod_ssl acknowledges a client's server name (an empty server_name
 * extension in its reply, RFC 6066) only when a virtual host's ServerName
 * or ServerAlias matches it.  A catch-all alone on its port gets the alias
 * "*", which matches every name there, as it would be chosen anyway.  With
 * other virtual hosts on its port an alias "*" would hide those after it
 * (the first match wins): left to the configuration. */
static void csy_dyn_sni_alias(apr_pool_t *pconf, server_rec *s,
                              server_rec *v)
{
    int i;

    if (csy_shares_port(s, v)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, v, CYLOGNO(00270)
                     "dynamic: %s shares its port with other virtual hosts, "
                     "so server names of the store are not acknowledged in "
                     "the TLS handshake (a last virtual host with "
                     "\"ServerAlias *\" would be)", v->server_hostname);
        return;
    }
    if (!v->wild_names) {
        v->wild_names = apr_array_make(pconf, 1, sizeof(char *));
    }
    for (i = 0; i < v->wild_names->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(v->wild_names, i, char *), "*")) {
            return;
        }
    }
    APR_ARRAY_PUSH(v->wild_names, char *) = "*";
}

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
    for (v = s->next; v; v = v->next) {
        if (csy_conf(v)->catch_all == 1) {
            csy_dyn_sni_alias(pconf, s, v);
        }
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

    csy_dyn_conn_set(c, NULL);

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
        csy_dyn_conn_set(c, NULL);
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
    csy_dyn_conn_set(c, ok ? b->leaf : NULL);
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

/* The certificate the store serves for the connection's server name: a
 * resumed handshake runs no certificate callback, and the name is then
 * the one of the session (TLS 1.2) or of this ClientHello (TLS 1.3).  A
 * reference the caller frees, or NULL. */
static X509 *csy_dyn_resumed_leaf(request_rec *r, conn_rec *c)
{
    const char *sni;
    char name[CSY_NAME_SIZE], err[512];
    csy_bundle_t *b;
    X509 *leaf = NULL;

    sni = csy_ssl_var ? csy_ssl_var(r->pool, r->server, c, NULL,
                                    "SSL_TLS_SNI") : NULL;
    if (!csy_cache || !sni || !sni[0] || !csy_sni_name(name, sni)
        || csy_cache_lookup(&b, csy_cache, name, err, sizeof(err))
           != APR_SUCCESS) {
        return NULL;
    }
    if (X509_up_ref(b->leaf) == 1) {
        leaf = b->leaf;
    }
    csy_bundle_release(b);
    return leaf;
}

/* A request on a catch-all's connection reaches the backend only when the
 * certificate the handshake presented covers its Host: 421 otherwise (as
 * mod_ssl answers, AH02032, when the Host belongs to a virtual host of
 * another TLS setup).  A connection that got no certificate of the store
 * (a name the store lacks, no SNI: CertSyncUnknownName default) is served
 * nothing: 403. */
static int csy_dyn_read_req(request_rec *r)
{
    conn_rec *c;
    csy_dyn_conn_t *dc;
    void *v = NULL;
    X509 *leaf;
    int covered;

    if (!csy_main_conf || csy_main_conf->dynamic != 1
        || csy_conf(r->server)->catch_all != 1
        || r->proxyreq != PROXYREQ_NONE || !ap_is_initial_req(r)) {
        return DECLINED;
    }
    c = csy_tls_conn(r->connection);
    if (!csy_ssl_is_https || !csy_ssl_is_https(c)) {
        return DECLINED;
    }
    apr_pool_userdata_get(&v, CSY_DYN_CONN_KEY, c->pool);
    dc = v;
    if (dc && !dc->leaf) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, CYLOGNO(00271)
                      "dynamic: no certificate of the store on this "
                      "connection (a name the store does not have, or no "
                      "SNI): request for %s refused (403)",
                      r->hostname ? r->hostname : "no host");
        return HTTP_FORBIDDEN;
    }
    if (!r->hostname) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, CYLOGNO(00272)
                      "dynamic: a request without a host name on a TLS "
                      "connection with a server name (400)");
        return HTTP_BAD_REQUEST;
    }
    leaf = dc ? dc->leaf : csy_dyn_resumed_leaf(r, c);
    if (!leaf) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, CYLOGNO(00273)
                      "dynamic: resumed session for a name the store does "
                      "not serve: request for %s refused (403)",
                      r->hostname);
        return HTTP_FORBIDDEN;
    }
    covered = csy_cert_covers(leaf, r->hostname);
    if (!dc) {
        X509_free(leaf);
    }
    if (!covered) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, CYLOGNO(00274)
                      "dynamic: host %s is not a name of the certificate "
                      "this connection's handshake presented (SNI %s): "
                      "misdirected request (421)", r->hostname,
                      csy_ssl_var ? csy_ssl_var(r->pool, r->server, c, NULL,
                                                "SSL_TLS_SNI") : "?");
        return HTTP_MISDIRECTED_REQUEST;
    }
    return DECLINED;
}

static void csy_dyn_optional_fns(void)
{
    csy_ssl_var = APR_RETRIEVE_OPTIONAL_FN(ssl_var_lookup);
    csy_ssl_is_https = APR_RETRIEVE_OPTIONAL_FN(ssl_is_https);
}

void csy_dyn_register_hooks(apr_pool_t *p)
{
    ap_hook_optional_fn_retrieve(csy_dyn_optional_fns, NULL, NULL,
                                 APR_HOOK_MIDDLE);
    ap_hook_post_read_request(csy_dyn_read_req, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(csy_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ssl, init_server, csy_ssl_init_server, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
