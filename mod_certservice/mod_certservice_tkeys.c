/*
 * mod_certservice_tkeys.c: the pool's TLS session ticket keys (issue 16,
 * part 1): the directive CertServiceTicketKeys and GET /v1/ticket-keys
 * for the proxies.  The keys' making, sealing and storage are pure code
 * (cs_store_tkeys.c), their schedule and format lib/cs_tkey.h.
 *
 * Log tags: CS00140 ... CS00149.
 */
#include "apr_strings.h"
#include "http_protocol.h"

#include "cs_crypto.h"
#include "cs_tkey.h"
#include "mod_certservice_private.h"

static cs_conf_t *tk_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config,
                                &certservice_module);
}

/* A duration: N, or N followed by s, m, h or d; at most 30 days. */
static apr_int64_t tk_duration(const char *s)
{
    char *end;
    long long n = strtoll(s, &end, 10);
    apr_int64_t unit = 1;

    if (end == s || n < 1) {
        return -1;
    }
    if (*end && end[1]) {
        return -1;
    }
    switch (*end) {
    case '\0': case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return -1;
    }
    if (n > 30LL * 86400 / unit) {
        return -1;
    }
    return (apr_int64_t)n * unit;
}

/* CertServiceTicketKeys off | ROTATE [ACCEPT] */
const char *cs_set_ticket_keys(cmd_parms *cmd, void *dummy,
                               const char *rotate, const char *accept)
{
    cs_conf_t *conf = tk_conf(cmd);
    apr_int64_t r, a;

    if (strcasecmp(rotate, "off") == 0 && !accept) {
        conf->tk_rotate = -1;
        conf->tk_accept = -1;
        return NULL;
    }
    if ((r = tk_duration(rotate)) < 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not 'off' or a "
                            "duration (N, Ns, Nm, Nh, Nd; up to 30d)",
                            cmd->cmd->name, rotate);
    }
    a = !accept ? 2 * r : strcmp(accept, "0") == 0 ? 0
                                : tk_duration(accept);
    if (a < 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration (N, Ns, "
                            "Nm, Nh, Nd; up to 30d)", cmd->cmd->name,
                            accept);
    }
    /* A proxy holds (accept / rotate) + 3 keys at most (cs_tkey.h). */
    if (a > (apr_int64_t)CS_TK_MAX_RATIO * r) {
        return apr_psprintf(cmd->pool, "%s: accepting %s is more than %d "
                            "times the rotation %s", cmd->cmd->name, accept,
                            CS_TK_MAX_RATIO, rotate);
    }
    conf->tk_rotate = r;
    conf->tk_accept = a;
    return NULL;
}

/* GET /v1/ticket-keys (role proxy). */
int cs_get_ticket_keys(cs_req_t *q)
{
    const cs_conf_t *conf = q->conf;
    apr_array_header_t *keys;
    apr_int64_t now = apr_time_sec(apr_time_now());
    const char *err;
    json_t *body, *list;
    apr_status_t rv;
    int i, made;

    if (conf->tk_rotate < 1) {
        return cs_error(q->r, HTTP_NOT_FOUND, "session ticket keys are off "
                        "(CertServiceTicketKeys off)");
    }
    if (!conf->wrap_certs) {
        return cs_error(q->r, HTTP_SERVICE_UNAVAILABLE, "no "
                        "CertServiceWrappingCertificate to seal ticket keys "
                        "to");
    }
    rv = cs_tkeys_current(&keys, &made, &q->db, q->r->pool, conf->wrap_certs,
                          conf->tk_rotate, conf->tk_accept, now, &err);
    if (rv != APR_SUCCESS) {
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, q->r, CSLOGNO(00141)
                          "ticket keys: %s%s%s", err, q->db.error[0]
                          ? ": " : "", q->db.error);
        }
        return cs_db_error(q, rv);
    }
    if (made) {
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, q->r, CSLOGNO(00140)
                      "ticket keys: made %d new key(s) (rotate %" 
                      APR_INT64_T_FMT "s, accept %" APR_INT64_T_FMT "s); "
                      "%d published", made, conf->tk_rotate,
                      conf->tk_accept, keys->nelts);
    }
    list = json_array();
    for (i = 0; i < keys->nelts; i++) {
        cs_tkey_row_t *k = &APR_ARRAY_IDX(keys, i, cs_tkey_row_t);

        json_array_append_new(list, json_pack(
            "{s:s, s:I, s:I, s:I, s:s}", "name", k->name,
            "issue_from", (json_int_t)k->issue_from,
            "issue_until", (json_int_t)k->issue_until,
            "accept_until", (json_int_t)k->accept_until,
            "key_cms", k->key_cms));
    }
    body = json_pack("{s:I, s:I, s:I, s:o}", "rotate",
                     (json_int_t)conf->tk_rotate, "accept",
                     (json_int_t)conf->tk_accept, "now", (json_int_t)now,
                     "keys", list);
    apr_table_setn(q->r->headers_out, "Cache-Control", "no-store");
    return cs_send_json(q->r, HTTP_OK, body);
}
