/*
 * mod_certservice_io.c: the API's request and response plumbing: JSON
 * answers and error answers, reading a JSON body, query arguments, the
 * database handle of a request, and who the caller is (the role its
 * client certificate maps to).
 */
#include <errno.h>

#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_name.h"
#include "mod_certservice_private.h"

APR_OPTIONAL_FN_TYPE(ssl_var_lookup) *cs_ssl_var;
APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *cs_dbd_acquire;

int cs_send_json(request_rec *r, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);

    json_decref(body);
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (text) {
        ap_rputs(text, r);
        ap_rputc('\n', r);
        free(text);
    }
    return OK;
}

int cs_error(request_rec *r, int status, const char *fmt, ...)
{
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(r->pool, fmt, ap);
    va_end(ap);
    ap_log_rerror(APLOG_MARK, status >= 500 ? APLOG_ERR : APLOG_INFO, 0, r,
                  CSLOGNO(00001) "%s %s: %d %s", r->method, r->uri, status,
                  msg);
    return cs_send_json(r, status, json_pack("{s:s, s:i}", "error", msg,
                                             "status", status));
}

/* Reads the request body, at most CertServiceMaxBody bytes, for the
 * parsers of cs_request.h. */
int cs_read_body(cs_req_t *q, const char **body, apr_size_t *blen)
{
    request_rec *r = q->r;
    apr_size_t max = (apr_size_t)q->conf->max_body, len = 0;
    char *buf;
    long n;
    int rc;

    *body = "";
    *blen = 0;
    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return cs_error(r, rc, "cannot read the request body");
    }
    if (r->remaining > (apr_off_t)max) {
        return cs_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE, "request body of "
                        "%" APR_OFF_T_FMT " bytes exceeds "
                        "CertServiceMaxBodySize (%" APR_SIZE_T_FMT ")",
                        r->remaining, max);
    }
    buf = apr_palloc(r->pool, max + 1);
    if (ap_should_client_block(r)) {
        while ((n = ap_get_client_block(r, buf + len, max + 1 - len)) > 0) {
            len += (apr_size_t)n;
            if (len > max) {
                return cs_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE,
                                "request body exceeds CertServiceMaxBodySize "
                                "(%" APR_SIZE_T_FMT ")", max);
            }
        }
        if (n < 0) {
            return cs_error(r, HTTP_BAD_REQUEST, "cannot read the request "
                            "body");
        }
    }
    *body = buf;
    *blen = len;
    /* DECLINED: go on; anything else is the response already sent. */
    return DECLINED;
}

int cs_req_fail(cs_req_t *q, int status, const char *why)
{
    return cs_error(q->r, status, "%s", why);
}

void cs_identify(cs_caller_t *caller, request_rec *r,
                 const cs_conf_t *conf)
{
    const char *verify, *dn, *pem, *fp = NULL;
    int i;

    memset(caller, 0, sizeof(*caller));
    if (!cs_ssl_var) {
        caller->why = "mod_ssl is not loaded: no client certificates";
        return;
    }
    verify = cs_ssl_var(r->pool, r->server, r->connection, r,
                        "SSL_CLIENT_VERIFY");
    if (!verify || strcmp(verify, "SUCCESS") != 0) {
        caller->why = "a verified client certificate is required";
        return;
    }
    dn = cs_ssl_var(r->pool, r->server, r->connection, r, "SSL_CLIENT_S_DN");
    caller->who = dn ? dn : "?";
    for (i = 0; conf->roles && i < conf->roles->nelts; i++) {
        const cs_role_rule_t *rule = &APR_ARRAY_IDX(conf->roles, i,
                                                    cs_role_rule_t);
        int match;

        if (rule->by_fingerprint) {
            if (!fp) {
                pem = cs_ssl_var(r->pool, r->server, r->connection, r,
                                 "SSL_CLIENT_CERT");
                fp = "";
                if (pem) {
                    apr_array_header_t *certs;
                    const char *err;
                    if (!cs_pem_read_certs(&certs, r->pool, pem, strlen(pem),
                                           &err) && certs->nelts) {
                        fp = cs_cert_fingerprint(r->pool,
                                                 APR_ARRAY_IDX(certs, 0,
                                                               X509 *));
                    }
                }
            }
            match = strcmp(fp, rule->value) == 0;
        }
        else {
            match = dn && strcmp(dn, rule->value) == 0;
        }
        if (match && rule->role > caller->role) {
            caller->role = rule->role;
        }
    }
    if (!caller->role) {
        caller->why = "the client certificate maps to no role";
    }
}

/* The store's messages (conflicts run again: cs_db_tx_run()); they carry
 * their own tags. */
static void cs_db_log_request(void *baton, cs_log_level_t level,
                              const char *msg)
{
    ap_log_rerror(APLOG_MARK, (int)level, 0, (request_rec *)baton, "%s",
                  msg);
}

void cs_db_log_server(void *baton, cs_log_level_t level, const char *msg)
{
    ap_log_error(APLOG_MARK, (int)level, 0, (server_rec *)baton, "%s", msg);
}

int cs_open_db(cs_req_t *q)
{
    ap_dbd_t *dbd = cs_dbd_acquire ? cs_dbd_acquire(q->r) : NULL;
    apr_status_t rv;

    if (!dbd) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database "
                        "unavailable (see DBDriver/DBDParams)");
    }
    /* Statements are prepared on first use into mod_dbd's per-connection
     * hash, so they live exactly as long as the connection.  They are not
     * registered with ap_dbd_prepare(): mod_dbd would prepare them before
     * the schema exists and refuse every connection of a new database. */
    q->db.driver = dbd->driver;
    q->db.handle = dbd->handle;
    q->db.prepared = dbd->prepared;
    q->db.log = cs_db_log_request;
    q->db.log_baton = q->r;
    if (!*q->conf->schema_ready) {
        if ((rv = cs_store_schema(&q->db, q->r->pool)) != APR_SUCCESS) {
            return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database "
                            "schema: %s", cs_store_error(&q->db, q->r->pool,
                                                         rv));
        }
        *q->conf->schema_ready = 1;
    }
    return DECLINED;
}

int cs_db_error(cs_req_t *q, apr_status_t rv)
{
    return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "database error: %s",
                    cs_store_error(&q->db, q->r->pool, rv));
}

/* Domain from a path segment, normalised; NULL after a 400. */
const char *cs_domain(cs_req_t *q, const char *raw, int *rc)
{
    const char *name, *why;
    int status = cs_req_domain(&name, q->r->pool, raw, NULL, &why);

    if (status) {
        *rc = cs_req_fail(q, status, why);
        return NULL;
    }
    return name;
}

/* The query string, decoded once (cs_query_parse): every endpoint refuses
 * a bad one, whether it reads the parameter or not. */
int cs_query(cs_req_t *q)
{
    const char *why;
    int status;

    if (q->params) {
        return DECLINED;
    }
    if ((status = cs_query_parse(&q->params, q->r->pool, q->r->args,
                                 &why))) {
        q->params = NULL;
        return cs_req_fail(q, status, why);
    }
    return DECLINED;
}
