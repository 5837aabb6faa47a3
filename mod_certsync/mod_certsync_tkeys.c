/*
 * mod_certsync_tkeys.c: the pool's TLS session ticket keys on a proxy
 * (issue 16, part 1).
 *
 * CertService makes one ticket key per rotation period, sealed to the
 * wrapping certificates (lib/cs_tkey.h has the schedule).  The sync
 * daemon fetches them at every cycle (GET /v1/ticket-keys), opens them
 * with the wrapping key and writes them to a table in shared memory; they
 * never touch the disk in plaintext.  Every TLS virtual host's context,
 * in vhost mode (each of mod_ssl's contexts) and in dynamic mode (the
 * catch-all's), gets a ticket callback through mod_ssl's ssl_init_server
 * hook that encrypts new tickets with the key issuing now and decrypts
 * with any key still accepted: a ticket from any proxy of the pool
 * resumes on every proxy, and a rotation needs no restart.  Session IDs
 * (TLS 1.2's stateful resumption) stay in each proxy's own cache.
 *
 * Log tags: CY00260 ... CY00269.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "apr_optional.h"
#include "apr_optional_hooks.h"
#include "apr_shm.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "cs_tkey.h"
#include "csy_sync.h"
#include "csy_tkeys.h"
#include "mod_certsync_private.h"

/* mod_ssl's optional hook (as in mod_certsync_dyn.c). */
typedef int ssl_HOOK_init_server_t(server_rec *s, apr_pool_t *p,
                                   int is_proxy, SSL_CTX *ctx);

#define CSY_TK_SHM_KEY      "mod_certsync: ticket keys shm"

cs_tk_table_t *csy_tk_table;

/*
 * The table: anonymous shared memory made once in the process pool, like
 * the status segment (mod_certsync.c): inherited by the daemon and the
 * workers of every generation, so a graceful restart keeps the keys and
 * the new workers resume the old workers' tickets at once.
 */
int csy_tk_post_config(apr_pool_t *pconf, server_rec *s)
{
    const csy_conf_t *conf = csy_conf(s);
    apr_pool_t *pp = s->process->pool;
    apr_shm_t *shm = NULL;
    apr_status_t rv;

    csy_tk_table = NULL;
    if (!conf->url || conf->tickets != 1) {
        return OK;
    }
    apr_pool_userdata_get((void **)&shm, CSY_TK_SHM_KEY, pp);
    if (!shm) {
        if ((rv = apr_shm_create(&shm, sizeof(cs_tk_table_t), NULL, pp))) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, CYLOGNO(00260)
                         "ticket keys: cannot create shared memory; TLS "
                         "session tickets stay per proxy");
            return OK;
        }
        cs_tk_table_init(apr_shm_baseaddr_get(shm));
        apr_pool_userdata_set(shm, CSY_TK_SHM_KEY, apr_pool_cleanup_null,
                              pp);
    }
    csy_tk_table = apr_shm_baseaddr_get(shm);
    return OK;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb's callback: the pool's keys as
 * the table holds them now (a copy, taken without a lock). */
static int csy_tk_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
                     EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    cs_tk_table_t snap;
    int rc;

    (void)ssl;
    if (!csy_tk_table) {
        return 0;
    }
    cs_tk_table_get(&snap, csy_tk_table);
    rc = cs_tk_ticket_cb(&snap, apr_time_sec(apr_time_now()), name, iv,
                         ectx, hctx, enc);
    OPENSSL_cleanse(snap.keys, sizeof(snap.keys));
    return rc;
}

/*
 * The session id context.  mod_ssl gives each connection one made from
 * its virtual host's name and port (and OpenSSL refuses to resume a
 * session of another context).  Proxies of one pool may listen on
 * different ports (behind the load balancer, or several on one host), so
 * a ticket another proxy issued would never resume.  Instead, a ticket
 * carries the binding of its session (the name of the virtual host that
 * issued it, as ticket app data); a ticket that decrypts under the pool's
 * keys resumes only in a virtual host of the same name, and then gets this
 * connection's context (a digest of that binding).  So isolation stays per
 * virtual host, as mod_ssl means it, without the port.  (The SNI is not
 * part of it: OpenSSL has not parsed it yet when a TLS 1.2 ticket is
 * decrypted.  In dynamic mode every name is served by the catch-all
 * virtual host, one context on each proxy already.)
 */
static int csy_tk_ctx_index = -1;

/* The binding of a connection: the virtual host its context belongs to
 * (lower case) and the context's client verification (a session made
 * where no client certificate was asked for never resumes where one is
 * required: that was the port's part in mod_ssl's context); NULL if
 * unknown. */
static const char *csy_tk_binding(SSL *ssl, char *buf, apr_size_t size)
{
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    server_rec *s = ctx && csy_tk_ctx_index >= 0
                    ? SSL_CTX_get_ex_data(ctx, csy_tk_ctx_index) : NULL;
    apr_size_t i;

    if (!s || !s->server_hostname) {
        return NULL;
    }
    apr_snprintf(buf, size, "certsync-ticket|%s|verify=%d",
                 s->server_hostname, SSL_CTX_get_verify_mode(ctx));
    for (i = 0; buf[i]; i++) {
        buf[i] = apr_tolower(buf[i]);
    }
    return buf;
}

static int csy_tk_gen_cb(SSL *ssl, void *arg)
{
    char buf[512];
    const char *b = csy_tk_binding(ssl, buf, sizeof(buf));
    SSL_SESSION *sess = SSL_get_session(ssl);

    (void)arg;
    if (b && sess) {
        SSL_SESSION_set1_ticket_appdata(sess, b, strlen(b));
    }
    return 1;
}

static SSL_TICKET_RETURN csy_tk_dec_cb(SSL *ssl, SSL_SESSION *sess,
                                       const unsigned char *keyname,
                                       size_t keyname_len,
                                       SSL_TICKET_STATUS status, void *arg)
{
    char buf[512];
    const char *b;
    void *data = NULL;
    size_t len = 0;
    unsigned char sid[SHA256_DIGEST_LENGTH];

    (void)keyname;
    (void)keyname_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        break;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;  /* a full handshake */
    case SSL_TICKET_NONE:
        return SSL_TICKET_RETURN_IGNORE;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
    b = csy_tk_binding(ssl, buf, sizeof(buf));
    if (!b || !sess || !SSL_SESSION_get0_ticket_appdata(sess, &data, &len)
        || len != strlen(b) || memcmp(data, b, len) != 0) {
        return SSL_TICKET_RETURN_IGNORE_RENEW;  /* another host or name */
    }
    SHA256((const unsigned char *)b, len, sid);
    if (!SSL_set_session_id_context(ssl, sid, sizeof(sid))
        || !SSL_SESSION_set1_id_context(sess, sid, sizeof(sid))) {
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE
                                        : SSL_TICKET_RETURN_USE_RENEW;
}

/* Every TLS virtual host's context (not the proxy client's): the pool's
 * keys replace OpenSSL's per-context ones, and mod_ssl's
 * SSLSessionTicketKeyFile (this callback takes precedence). */
static int csy_tk_init_server(server_rec *s, apr_pool_t *p, int is_proxy,
                              SSL_CTX *ctx)
{
    if (is_proxy || !csy_tk_table) {
        return DECLINED;
    }
    if (csy_tk_ctx_index < 0) {
        csy_tk_ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
                                                    NULL);
    }
    if (csy_tk_ctx_index < 0
        || !SSL_CTX_set_ex_data(ctx, csy_tk_ctx_index, s)
        || SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, csy_tk_cb) != 1
        || SSL_CTX_set_session_ticket_cb(ctx, csy_tk_gen_cb, csy_tk_dec_cb,
                                         NULL) != 1) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00261)
                     "ticket keys: OpenSSL refused the ticket callbacks for "
                     "%s; its tickets stay per proxy", s->server_hostname);
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, NULL);
        return DECLINED;
    }
    return DECLINED;    /* others' hooks run too */
}

void csy_tk_register_hooks(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ssl, init_server, csy_tk_init_server, NULL, NULL,
                      APR_HOOK_MIDDLE);
}

/* --- the daemon's side ---------------------------------------------------- */

/* What the daemon told last (it logs changes, not every cycle). */
static char csy_tk_last_error[256];
static unsigned char csy_tk_last_issuing[CS_TK_NAME_LEN];
static int csy_tk_last_n = -1;

static void csy_tk_status(json_t *state, const cs_tk_table_t *t,
                          apr_int64_t now, const char *error)
{
    const cs_tk_key_t *k = cs_tk_issuing(t, now);
    char hex[2 * CS_TK_NAME_LEN + 1];
    json_t *o = json_object();

    json_object_set_new(o, "keys", json_integer(t->n));
    if (k) {
        cs_tk_name_hex(hex, k->name);
        json_object_set_new(o, "issuing", json_string(hex));
        json_object_set_new(o, "issuing_until",
                            json_integer(k->issue_until));
    }
    else {
        json_object_set_new(o, "issuing", json_null());
    }
    json_object_set_new(o, "rotate", json_integer(t->rotate));
    json_object_set_new(o, "accept", json_integer(t->accept));
    json_object_set_new(o, "updated", json_integer(t->updated));
    if (error) {
        json_object_set_new(o, "error", json_string(error));
    }
    json_object_set_new(state, "ticket_keys", o);
}

void csy_tk_sync(server_rec *s, const csy_conf_t *conf,
                 struct csy_client_t *client, json_t *state, apr_pool_t *p)
{
    cs_tk_key_t keys[CS_TK_MAX];
    cs_tk_table_t prev;
    const cs_tk_key_t *k;
    json_t *answer = NULL;
    apr_int64_t now = apr_time_sec(apr_time_now()), rotate, accept;
    const char *err = NULL;
    long status = 0;
    apr_status_t rv;
    int n, bad;

    if (!csy_tk_table) {
        return;
    }
    rv = csy_request_json(&answer, &status, client, p, "GET",
                          "/v1/ticket-keys", NULL, &err);
    if (rv == APR_SUCCESS && status == 200) {
        cs_tk_table_get(&prev, csy_tk_table);
        rv = csy_tk_open(keys, &n, &bad, &rotate, &accept, answer, &prev,
                         conf->wrap_certs, conf->wrap_keys, now, p, &err);
        OPENSSL_cleanse(prev.keys, sizeof(prev.keys));
    }
    else if (rv == APR_SUCCESS) {
        rv = APR_EGENERAL;
        err = apr_psprintf(p, "GET /v1/ticket-keys: HTTP %ld", status);
    }
    json_decref(answer);
    if (status == 404) {
        /* Off at CertService: no pool keys, so no tickets at all (a
         * ticket only one proxy could resume would mislead clients). */
        cs_tk_table_put(csy_tk_table, NULL, 0, 0, 0, now);
        if (csy_tk_last_n != 0) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, CYLOGNO(00262)
                         "ticket keys: CertService publishes none "
                         "(CertServiceTicketKeys off?): no session tickets; "
                         "resumption by session ID on this proxy only");
        }
        csy_tk_last_n = 0;
        csy_tk_status(state, csy_tk_table, now, err);
        return;
    }
    if (rv != APR_SUCCESS) {
        /* Keep what the table has: each key ends by its own schedule. */
        if (strcmp(csy_tk_last_error, err ? err : "") != 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, CYLOGNO(00263)
                         "ticket keys: %s; the keys held keep their "
                         "schedule", err ? err : "cannot fetch them");
            apr_cpystrn(csy_tk_last_error, err ? err : "",
                        sizeof(csy_tk_last_error));
        }
        csy_tk_status(state, csy_tk_table, now, err);
        return;
    }
    csy_tk_last_error[0] = '\0';
    if (bad) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00264)
                     "ticket keys: %d key(s) skipped: %s", bad, err);
    }
    cs_tk_table_put(csy_tk_table, keys, n, rotate, accept, now);
    OPENSSL_cleanse(keys, sizeof(keys));
    cs_tk_table_get(&prev, csy_tk_table);
    k = cs_tk_issuing(&prev, now);
    if (!k && csy_tk_last_n != -2) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, CYLOGNO(00265)
                     "ticket keys: %d held, none issues now: no session "
                     "tickets until one does", n);
        csy_tk_last_n = -2;
    }
    else if (k && (n != csy_tk_last_n
                   || memcmp(k->name, csy_tk_last_issuing,
                             CS_TK_NAME_LEN) != 0)) {
        char hex[2 * CS_TK_NAME_LEN + 1];

        cs_tk_name_hex(hex, k->name);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, CYLOGNO(00266)
                     "ticket keys: %d accepted; issuing with %.8s... until "
                     "%" APR_INT64_T_FMT " (rotate %" APR_INT64_T_FMT
                     "s, accept %" APR_INT64_T_FMT "s)", n, hex,
                     k->issue_until, rotate, accept);
        memcpy(csy_tk_last_issuing, k->name, CS_TK_NAME_LEN);
        csy_tk_last_n = n;
    }
    csy_tk_status(state, &prev, now, NULL);
    OPENSSL_cleanse(prev.keys, sizeof(prev.keys));
}
