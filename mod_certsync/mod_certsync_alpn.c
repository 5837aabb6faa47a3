/*
 * mod_certsync_alpn.c: tls-alpn-01 (RFC 8737) on the proxies: an
 * acme-tls/1 handshake is answered with the challenge certificate
 * CertService made for the domain's order in progress (csy_alpn.h).
 *
 * How a handshake goes, in vhost and in dynamic mode alike (mod_ssl's
 * ALPN callback runs for every TLS virtual host, the catch-all one too):
 *
 *  1. protocol_propose: a client that offers acme-tls/1 alone (as a CA
 *     does) is proposed acme-tls/1; mod_ssl selects it only where
 *     `Protocols` lists it (the operator's switch, as for mod_md).  h2 and
 *     http/1.1 handshakes are never touched.
 *  2. protocol_switch to acme-tls/1: the certificate for the SNI name is
 *     fetched from CertService (GET /v1/acme-tls/DOMAIN, mutual TLS with
 *     CertSyncClientCertificate, 5 s at most) or taken from the process's
 *     cache, and its key opened with the wrapping key.  None (no SNI, no
 *     challenge in progress, CertService unreachable): the switch is
 *     declined, so mod_ssl ends the handshake with a fatal alert; no
 *     other certificate is ever sent for acme-tls/1.
 *  3. mod_ssl asks its optional hook ssl_answer_challenge for the
 *     connection's certificate and key: ours.  In dynamic mode, where
 *     OpenSSL runs the certificate callback after ALPN (TLS 1.3), that
 *     callback installs the same certificate instead of the store's
 *     (mod_certsync_dyn.c, csy_alpn_conn_cred).
 *
 * The connection then carries protocol acme-tls/1 and is closed after
 * the handshake (mod_ssl answers any request on it 503).
 *
 * Workers are not root: the parent reads the client certificate and key
 * into memory at startup (post_config), as it reads the wrapping keys.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_ssl.h"

#include "apr_optional.h"
#include "apr_optional_hooks.h"
#include "apr_strings.h"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "cs_http.h"
#include "csy_alpn.h"
#include "csy_dyn.h"
#include "mod_certsync_private.h"

/* mod_ssl's optional hook (modules/ssl/mod_ssl_openssl.h, which Debian
 * does not ship): a certificate and key for a challenge connection; the
 * first hook that does not decline decides.  mod_ssl takes its own
 * references (SSL_use_certificate, SSL_use_PrivateKey). */
typedef int ssl_HOOK_answer_challenge_t(conn_rec *c, const char *server_name,
                                        X509 **pcert, EVP_PKEY **pkey);

/* The fetch's limits: a CA waits for the handshake, and a worker thread
 * is held meanwhile. */
#define CSY_ALPN_TIMEOUT        5
#define CSY_ALPN_CONNECT        2

/* What the parent read for the workers (this generation's pconf). */
static const char *csy_alpn_cert_pem, *csy_alpn_key_pem;
/* Each worker process's cache. */
static csy_alpn_t *csy_alpn;

/* The connection's challenge, from protocol_switch. */
typedef struct {
    csy_alpn_cred_t *cred;
    const char *name;
} csy_alpn_conn_t;

static csy_alpn_conn_t *csy_alpn_conn(const conn_rec *c)
{
    return ap_get_module_config(c->conn_config, &certsync_module);
}

csy_alpn_cred_t *csy_alpn_conn_cred(const conn_rec *c)
{
    csy_alpn_conn_t *ctx = c ? csy_alpn_conn(c) : NULL;

    return ctx ? ctx->cred : NULL;
}

static apr_status_t csy_alpn_conn_cleanup(void *data)
{
    csy_alpn_conn_t *ctx = data;

    csy_alpn_cred_release(ctx->cred);
    ctx->cred = NULL;
    return APR_SUCCESS;
}

/* A PEM file into memory, wiped when p goes (a key). */
static apr_status_t csy_wipe(void *data)
{
    char *s = data;

    OPENSSL_cleanse(s, strlen(s));
    return APR_SUCCESS;
}

static const char *csy_read_pem(apr_pool_t *p, const char *path,
                                apr_status_t *rv)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t got;
    char *buf;

    if ((*rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p))) {
        return NULL;
    }
    if ((*rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f))
        || fi.size <= 0 || fi.size > 1024 * 1024) {
        *rv = *rv ? *rv : APR_EINVAL;
        apr_file_close(f);
        return NULL;
    }
    buf = apr_palloc(p, (apr_size_t)fi.size + 1);
    *rv = apr_file_read_full(f, buf, (apr_size_t)fi.size, &got);
    apr_file_close(f);
    buf[*rv ? 0 : got] = '\0';
    apr_pool_cleanup_register(p, buf, csy_wipe, apr_pool_cleanup_null);
    return *rv ? NULL : buf;
}

static int csy_alpn_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    server_rec *v;
    apr_status_t rv;
    int allowed = 0;

    csy_alpn_cert_pem = csy_alpn_key_pem = NULL;
    if (!conf->url || !conf->client_cert || !conf->wrap_keys
        || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    for (v = s; v; v = v->next) {
        allowed += ap_is_allowed_protocol(NULL, NULL, v, CSY_ACME_TLS_1);
    }
    if (!allowed) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00190)
                     "tls-alpn-01: no virtual host lists acme-tls/1 in "
                     "Protocols; acme-tls/1 handshakes are not answered");
        return OK;
    }
    if (!(csy_alpn_cert_pem = csy_read_pem(pconf, conf->client_cert, &rv))
        || !(csy_alpn_key_pem = csy_read_pem(pconf, conf->client_key,
                                             &rv))) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, CYLOGNO(00191)
                     "tls-alpn-01: cannot read CertSyncClientCertificate "
                     "%s; acme-tls/1 handshakes are not answered",
                     csy_alpn_cert_pem ? conf->client_key
                                       : conf->client_cert);
        csy_alpn_cert_pem = csy_alpn_key_pem = NULL;
        return OK;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00192)
                 "tls-alpn-01: acme-tls/1 handshakes answered on %d "
                 "virtual host(s) with challenge certificates from %s",
                 allowed, conf->url);
    return OK;
}

/* One fetch's transport: libcurl, the client certificate from memory. */
static cs_http_t *csy_alpn_http(void *baton, apr_pool_t *p)
{
    const csy_conf_t *conf = baton;
    cs_http_conf_t hc;
    cs_http_t *http;

    memset(&hc, 0, sizeof(hc));
    hc.protocols = "https,http";
    hc.ca_file = conf->ca_file;
    hc.client_cert_pem = csy_alpn_cert_pem;
    hc.client_key_pem = csy_alpn_key_pem;
    hc.user_agent = "mod_certsync (tls-alpn-01)";
    hc.timeout = apr_time_from_sec(CSY_ALPN_TIMEOUT);
    hc.connect_timeout = apr_time_from_sec(CSY_ALPN_CONNECT);
    hc.max_body = 64 * 1024;
    return cs_http_curl_create(&http, p, &hc) == APR_SUCCESS ? http : NULL;
}

static void csy_alpn_child_init(apr_pool_t *pchild, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    csy_alpn_conf_t ac;
    apr_status_t rv;

    csy_alpn = NULL;
    if (!csy_alpn_cert_pem) {
        return;
    }
    memset(&ac, 0, sizeof(ac));
    ac.url = conf->url;
    ac.http = csy_alpn_http;
    ac.http_baton = (void *)conf;
    ac.wrap_certs = conf->wrap_certs;
    ac.wrap_keys = conf->wrap_keys;
    if ((rv = csy_alpn_create(&csy_alpn, pchild, &ac))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, CYLOGNO(00193)
                     "tls-alpn-01: cannot create the challenge cache; this "
                     "process refuses acme-tls/1 handshakes");
        csy_alpn = NULL;
    }
}

static int csy_alpn_propose(conn_rec *c, request_rec *r, server_rec *s,
                            const apr_array_header_t *offers,
                            apr_array_header_t *proposals)
{
    if (r || !csy_alpn || !csy_alpn_offers_only_acme(offers)
        || !ap_ssl_conn_is_ssl(c)) {
        return DECLINED;
    }
    APR_ARRAY_PUSH(proposals, const char *) = CSY_ACME_TLS_1;
    return OK;
}

static int csy_alpn_switch(conn_rec *c, request_rec *r, server_rec *s,
                           const char *protocol)
{
    csy_alpn_conn_t *ctx;
    csy_alpn_cred_t *cred;
    const char *sni;
    char name[CSY_NAME_SIZE], err[512];
    apr_status_t rv;

    if (r || !csy_alpn || strcmp(protocol, CSY_ACME_TLS_1) != 0
        || !ap_ssl_conn_is_ssl(c)) {
        return DECLINED;
    }
    sni = ap_ssl_var_lookup(c->pool, s, c, NULL, "SSL_TLS_SNI");
    if (!sni || !*sni || !csy_sni_name(name, sni)) {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, CYLOGNO(00194)
                      "tls-alpn-01: acme-tls/1 without a usable server "
                      "name; handshake refused");
        return DECLINED;
    }
    rv = csy_alpn_get(&cred, csy_alpn, name, apr_time_now(), err,
                      sizeof(err));
    if (rv == APR_NOTFOUND) {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, CYLOGNO(00195)
                      "tls-alpn-01: no challenge in progress for %s; "
                      "acme-tls/1 handshake refused", name);
        return DECLINED;
    }
    if (rv != APR_SUCCESS) {
        ap_log_cerror(APLOG_MARK, APLOG_WARNING, rv, c, CYLOGNO(00196)
                      "tls-alpn-01: no challenge certificate for %s: %s; "
                      "acme-tls/1 handshake refused", name, err);
        return DECLINED;
    }
    ctx = apr_pcalloc(c->pool, sizeof(*ctx));
    ctx->cred = cred;
    ctx->name = apr_pstrdup(c->pool, name);
    apr_pool_cleanup_register(c->pool, ctx, csy_alpn_conn_cleanup,
                              apr_pool_cleanup_null);
    ap_set_module_config(c->conn_config, &certsync_module, ctx);
    c->keepalive = AP_CONN_CLOSE;
    ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, CYLOGNO(00197)
                  "tls-alpn-01: answering acme-tls/1 for %s", name);
    return OK;
}

static const char *csy_alpn_protocol(const conn_rec *c)
{
    return csy_alpn_conn_cred(c) ? CSY_ACME_TLS_1 : NULL;
}

static int csy_alpn_answer(conn_rec *c, const char *server_name,
                           X509 **pcert, EVP_PKEY **pkey)
{
    csy_alpn_cred_t *cred = csy_alpn_conn_cred(c);

    if (!cred) {
        return DECLINED;
    }
    *pcert = cred->cert;
    *pkey = cred->key;
    return OK;
}

void csy_alpn_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(csy_alpn_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(csy_alpn_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_propose(csy_alpn_propose, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_switch(csy_alpn_switch, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_get(csy_alpn_protocol, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ssl, answer_challenge, csy_alpn_answer, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
