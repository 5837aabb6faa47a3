/*
 * mod_certservice_api.c: the API's router: the handler splits the path,
 * answers http-01 challenges to anyone, identifies the caller, and sends
 * each method and path to its endpoint (mod_certservice_proxy.c,
 * mod_certservice_admin.c) once the role allows it.
 */
#include "apr_strings.h"
#include "http_core.h"
#include "http_protocol.h"

#include "mod_certservice_private.h"

/* The method is allowed here, and then the query string is good (every
 * endpoint: one that takes no parameter refuses a malformed one too). */
static int cs_method(cs_req_t *q, int allowed_mask, const char *allow)
{
    if (allowed_mask & (AP_METHOD_BIT << q->r->method_number)) {
        return cs_query(q);
    }
    apr_table_setn(q->r->err_headers_out, "Allow", allow);
    return cs_error(q->r, HTTP_METHOD_NOT_ALLOWED, "method %s not allowed "
                    "here (allowed: %s)", q->r->method, allow);
}

/* Roles are ordered: admin > proxy > metrics; the metrics role may
 * only read GET /metrics (cs_need_metrics()). */
static int cs_need(cs_req_t *q, cs_role_t role)
{
    if (q->caller.role >= role) {
        return DECLINED;
    }
    return cs_error(q->r, HTTP_FORBIDDEN, "this endpoint needs the %s role",
                    role == CS_ROLE_ADMIN ? "admin" : "proxy");
}

static int cs_need_metrics(cs_req_t *q)
{
    if (q->caller.role == CS_ROLE_ADMIN
        || q->caller.role == CS_ROLE_METRICS) {
        return DECLINED;
    }
    return cs_error(q->r, HTTP_FORBIDDEN, "this endpoint needs the metrics "
                    "or the admin role");
}

#define M(x) (AP_METHOD_BIT << (x))

static int cs_route(cs_req_t *q)
{
    const char **s = q->seg;
    int n = q->nseg, m = q->r->method_number, rc;

    /* What an operator watches (mod_certservice_metrics.c). */
    if (n == 1 && strcmp(s[0], "metrics") == 0) {
        if ((rc = cs_need_metrics(q)) != DECLINED
            || (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_metrics(q);
    }
    if (n >= 1 && n <= 2 && strcmp(s[0], "dashboard") == 0) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_method(q, M(M_GET), "GET")) != DECLINED) {
            return rc;
        }
        return cs_get_dashboard(q, n == 2 ? s[1]
                                   : q->r->uri[strlen(q->r->uri) - 1] == '/'
                                   ? "" : NULL);
    }
    if (q->caller.role == CS_ROLE_METRICS) {
        return cs_need(q, CS_ROLE_PROXY);
    }

    if (n < 2 || strcmp(s[0], "v1") != 0) {
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }
    if (strcmp(s[1], "domains") == 0 && n <= 4) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        if (n == 2) {
            return (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
                   ? rc : cs_get_domains(q);
        }
        if (n == 4 && strcmp(s[3], "certificate") == 0) {
            return (rc = cs_method(q, M(M_PUT), "PUT")) != DECLINED
                   ? rc : cs_put_certificate(q, s[2]);
        }
        if (n == 4 && strcmp(s[3], "revoke") == 0) {
            return (rc = cs_method(q, M(M_POST), "POST")) != DECLINED
                   ? rc : cs_post_revoke(q, s[2]);
        }
        if (n == 3) {
            if ((rc = cs_method(q, M(M_GET) | M(M_PUT) | M(M_DELETE),
                                "GET, PUT, DELETE")) != DECLINED) {
                return rc;
            }
            return m == M_GET ? cs_get_domain(q, s[2])
                   : m == M_PUT ? cs_put_domain(q, s[2])
                   : cs_delete_domain(q, s[2]);
        }
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }

    if (n == 2 && strcmp(s[1], "overview") == 0) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_overview(q);
    }

    if (strcmp(s[1], "acme") == 0 && n == 3 && strcmp(s[2], "cas") == 0) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_acme_cas(q);
    }
    if (strcmp(s[1], "acme") == 0 && n >= 3 && n <= 4
        && strcmp(s[2], "account") == 0) {
        if ((rc = cs_need(q, CS_ROLE_ADMIN)) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        if (n == 3) {
            return (rc = cs_method(q, M(M_GET), "GET")) != DECLINED
                   ? rc : cs_get_acme_account(q);
        }
        if (strcmp(s[3], "key-change") == 0) {
            return (rc = cs_method(q, M(M_POST), "POST")) != DECLINED
                   ? rc : cs_post_acme_key_change(q);
        }
        return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
    }

    if ((rc = cs_need(q, CS_ROLE_PROXY)) != DECLINED) {
        return rc;
    }
    if (n == 2 && strcmp(s[1], "changes") == 0) {
        if ((rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_changes(q);
    }
    if (n == 2 && strcmp(s[1], "ticket-keys") == 0) {
        if ((rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_ticket_keys(q);
    }
    if (strcmp(s[1], "bundles") == 0 && (n == 2 || n == 3)) {
        if ((rc = cs_method(q, n == 2 ? M(M_POST) : M(M_GET),
                            n == 2 ? "POST" : "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return n == 2 ? cs_post_bundles(q) : cs_get_bundle(q, s[2]);
    }
    if (strcmp(s[1], "pools") == 0 && (n == 4 || n == 5)
        && strcmp(s[3], "leases") == 0) {
        if ((rc = cs_method(q, n == 4 ? M(M_POST) : M(M_DELETE),
                            n == 4 ? "POST" : "DELETE")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return n == 4 ? cs_post_lease(q, s[2]) : cs_delete_lease(q, s[2],
                                                                 s[4]);
    }
    if (n == 3 && strcmp(s[1], "acme-tls") == 0) {
        if ((rc = cs_method(q, M(M_GET), "GET")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_get_acme_tls(q, s[2]);
    }
    if (n == 2 && strcmp(s[1], "on-demand") == 0) {
        if ((rc = cs_method(q, M(M_POST), "POST")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_post_on_demand(q);
    }
    if (n == 4 && strcmp(s[1], "hosts") == 0 && strcmp(s[3], "report") == 0) {
        if ((rc = cs_method(q, M(M_POST), "POST")) != DECLINED
            || (rc = cs_open_db(q)) != DECLINED) {
            return rc;
        }
        return cs_post_report(q, s[2]);
    }
    return cs_error(q->r, HTTP_NOT_FOUND, "no such endpoint");
}

int cs_handler(request_rec *r)
{
    cs_req_t q;
    char *path, *tok, *last;

    if (!r->handler || strcmp(r->handler, CS_HANDLER) != 0) {
        return DECLINED;
    }
    memset(&q, 0, sizeof(q));
    q.r = r;
    q.conf = cs_config_get(r->server);

    path = apr_pstrdup(r->pool, r->uri);
    for (tok = apr_strtok(path, "/", &last); tok;
         tok = apr_strtok(NULL, "/", &last)) {
        if (q.nseg == (int)(sizeof(q.seg) / sizeof(q.seg[0]))) {
            return cs_error(r, HTTP_NOT_FOUND, "no such endpoint");
        }
        q.seg[q.nseg++] = tok;
    }

    /* http-01 challenges are public: the CA asks through the proxies. */
    if (q.nseg == 2 && strcmp(q.seg[0], "acme-challenge") == 0) {
        return cs_get_challenge(&q, q.seg[1]);
    }

    cs_identify(&q.caller, r, q.conf);
    if (!q.caller.role) {
        return cs_error(r, HTTP_FORBIDDEN, "%s", q.caller.why);
    }
    return cs_route(&q);
}

/*
 * TRACE on the API.  httpd answers TRACE itself in map_to_storage
 * (ap_send_http_trace: a 200 echo of the request unless TraceEnable is
 * off), before any handler, whoever asks.  On a location whose handler is
 * certservice the module takes it away: translate_name, which runs while
 * the <Location> sections are merged (map_to_storage runs on the server's
 * defaults), marks the request; map_to_storage, first, then ends the hook
 * for it, so the request reaches cs_handler, which answers TRACE like any
 * other method the API does not take: 403 to a client without a role, 405
 * to one with.  So a configuration that forgets TraceEnable off does not
 * open TRACE on the API.  Other locations are left to httpd (TraceEnable).
 */
#define CS_TRACE_NOTE "certservice-trace"

int cs_trace_mark(request_rec *r)
{
    core_dir_config *d;
    const char *handler, *err = NULL;

    if (r->method_number != M_TRACE) {
        return DECLINED;
    }
    d = ap_get_core_module_config(r->per_dir_config);
    if (!d || !d->expr_handler) {
        return DECLINED;
    }
    /* SetHandler is an expression. */
    handler = ap_expr_str_exec(r, d->expr_handler, &err);
    if (!err && handler && strcasecmp(handler, CS_HANDLER) == 0) {
        apr_table_setn(r->notes, CS_TRACE_NOTE, "1");
    }
    return DECLINED;
}

int cs_trace_keep(request_rec *r)
{
    if (r->method_number != M_TRACE
        || !apr_table_get(r->notes, CS_TRACE_NOTE)) {
        return DECLINED;
    }
    /* No directory walk either: the API has no files. */
    return OK;
}
