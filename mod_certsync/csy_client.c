/*
 * csy_client.c: the proxy's requests to CertService (mutual TLS through
 * lib/cs_http): JSON requests, restart leases, reports.  See csy_sync.h.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>

#include "cs_name.h"
#include "csy_client_private.h"

/* Largest response accepted: a page of bundles with long chains. */
#define CSY_MAX_RESPONSE    (64 * 1024 * 1024)
/* A lease refused without a Retry-After: ask again after this; one with a
 * Retry-After longer than the longest lease is not believed. */
#define CSY_LEASE_RETRY     5
#define CSY_LEASE_RETRY_MAX 3600
/* At most this much of an error text from CertService in ours. */
#define CSY_MAX_ANSWER_TEXT 300

void csy_log(const csy_config_t *cfg, cs_log_level_t level, apr_pool_t *p,
             const char *fmt, ...)
{
    va_list ap;

    if (!cfg->log) {
        return;
    }
    va_start(ap, fmt);
    cfg->log(cfg->log_baton, level, apr_pvsprintf(p, fmt, ap));
    va_end(ap);
}

apr_status_t csy_client_create(csy_client_t **pclient, apr_pool_t *p,
                               const csy_config_t *config)
{
    csy_client_t *client = apr_pcalloc(p, sizeof(*client));
    cs_http_conf_t hc;
    apr_status_t rv;

    /* The defaults are the glue's (csy_conf_effective, CertSyncTimeout),
     * not second ones here. */
    if (config->batch_size < 1 || (!config->http && config->timeout < 1)) {
        return APR_EINVAL;
    }
    client->config = config;
    if (config->http) {
        client->http = config->http;
    }
    else {
        memset(&hc, 0, sizeof(hc));
        hc.protocols = "https,http";
        hc.ca_file = config->ca_file;
        hc.client_cert = config->client_cert;
        hc.client_key = config->client_key;
        hc.timeout = apr_time_from_sec(config->timeout);
        hc.connect_timeout = apr_time_from_sec(10);
        hc.max_body = CSY_MAX_RESPONSE;
        if ((rv = cs_http_curl_create(&client->http, p, &hc))) {
            return rv;
        }
    }
    *pclient = client;
    return APR_SUCCESS;
}

/*
 * One request.  On success *json holds the parsed body (for 2xx with a
 * body) and *status the HTTP status; *err says what went wrong otherwise.
 * resp, if not NULL, receives the whole answer (its headers).
 */
static apr_status_t request(json_t **json, long *status, csy_client_t *cl,
                            apr_pool_t *p, const char *method,
                            const char *path, json_t *body,
                            cs_http_resp_t *resp, const char **err)
{
    static const char *const headers[] = {
        "Accept: application/json", "Content-Type: application/json", NULL
    };
    cs_http_req_t req;
    cs_http_resp_t r;
    char *text = NULL;
    json_error_t jerr;
    apr_status_t rv;

    *json = NULL;
    *status = 0;
    if (!resp) {
        resp = &r;
    }
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = apr_pstrcat(p, cl->config->url, path, NULL);
    req.headers = headers;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        req.body = text ? text : "{}";
        req.body_len = strlen(req.body);
    }
    rv = cs_http_send(cl->http, resp, &req, p, err);
    free(text);
    if (rv != APR_SUCCESS) {
        /* The transport's error names the method and the URL. */
        if (rv == APR_ENOSPC) {
            *err = apr_psprintf(p, "%s %s: response too large", method,
                                path);
        }
        return APR_EGENERAL;
    }
    *status = resp->status;
    /* Text from the answer goes into the error log and the status page:
     * one printable line (cs_printable), whatever CertService sent. */
    if (resp->len) {
        *json = json_loadb(resp->body, resp->len, 0, &jerr);
        if (!*json && *status < 300) {
            *err = apr_psprintf(p, "%s %s: malformed JSON: %s", method, path,
                                cs_printable(p, jerr.text, strlen(jerr.text),
                                             CSY_MAX_ANSWER_TEXT));
            return APR_EGENERAL;
        }
    }
    if (*status < 200 || *status >= 300) {
        json_t *msg = *json ? json_object_get(*json, "error") : NULL;
        *err = apr_psprintf(p, "%s %s: HTTP %ld%s%s", method, path, *status,
                            json_is_string(msg) ? ": " : "",
                            json_is_string(msg)
                            ? cs_printable(p, json_string_value(msg),
                                           json_string_length(msg),
                                           CSY_MAX_ANSWER_TEXT)
                            : "");
        json_decref(*json);
        *json = NULL;
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t csy_request_json(json_t **json, long *status,
                              csy_client_t *client, apr_pool_t *p,
                              const char *method, const char *path,
                              json_t *body, const char **err)
{
    return request(json, status, client, p, method, path, body, NULL, err);
}

static int lease_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64
           && s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789._-")] == '\0';
}

apr_status_t csy_lease_acquire(const char **lease, long *retry_after,
                               csy_client_t *cl, apr_pool_t *p, int ttl,
                               const char **err)
{
    const csy_config_t *cfg = cl->config;
    json_t *body, *resp = NULL;
    cs_http_resp_t answer;
    const char *id;
    long status;
    apr_int64_t ra;
    apr_status_t rv;

    *lease = NULL;
    *retry_after = 0;
    body = json_pack("{s:s, s:i}", "host", cfg->host_name, "ttl", ttl);
    rv = request(&resp, &status, cl, p, "POST",
                 apr_pstrcat(p, "/v1/pools/", cfg->pool_name, "/leases",
                             NULL), body, &answer, err);
    json_decref(body);
    if (rv && status == 409) {
        ra = cs_http_retry_after(apr_table_get(answer.headers, "Retry-After"),
                                 apr_time_now(), CSY_LEASE_RETRY_MAX);
        *retry_after = ra > 0 ? (long)ra : CSY_LEASE_RETRY;
        return APR_EAGAIN;
    }
    if (rv) {
        return rv;
    }
    id = json_string_value(json_object_get(resp, "lease"));
    if (!id) {
        json_decref(resp);
        *err = "lease answer without a lease id";
        return APR_EGENERAL;
    }
    /* It goes into the URL of its release: a lease name as the API
     * defines it (1 to 64 of A-Z a-z 0-9 . _ -), nothing that could
     * point elsewhere ("../") or break the URL. */
    if (!lease_name_ok(id)) {
        *err = apr_pstrcat(p, "lease answer with an invalid lease id '",
                           cs_printable(p, id, strlen(id), 64), "'", NULL);
        json_decref(resp);
        return APR_EGENERAL;
    }
    *lease = apr_pstrdup(p, id);
    json_decref(resp);
    return APR_SUCCESS;
}

apr_status_t csy_lease_release(csy_client_t *cl, apr_pool_t *p,
                               const char *lease)
{
    json_t *resp;
    const char *err;
    long status;
    apr_status_t rv;

    rv = request(&resp, &status, cl, p, "DELETE",
                 apr_pstrcat(p, "/v1/pools/", cl->config->pool_name,
                             "/leases/", lease, NULL), NULL, NULL, &err);
    json_decref(resp);
    if (rv && status != 404) {
        csy_log(cl->config, CS_LOG_WARN, p, "releasing lease %s failed: %s",
                lease, err);
        return rv;
    }
    return APR_SUCCESS;
}

apr_status_t csy_report(csy_client_t *cl, apr_pool_t *p, long long seq,
                        const char *state, apr_hash_t *failures)
{
    const csy_config_t *cfg = cl->config;
    json_t *failed = json_object(), *body, *resp;
    apr_hash_index_t *hi;
    const char *err;
    long status;
    apr_status_t rv;

    for (hi = apr_hash_first(p, failures); hi; hi = apr_hash_next(hi)) {
        json_object_set_new(failed, apr_hash_this_key(hi),
                            json_string(apr_hash_this_val(hi)));
    }
    body = json_pack("{s:s, s:I, s:s, s:o}", "pool", cfg->pool_name,
                     "seq", (json_int_t)seq, "state", state,
                     "failed", failed);
    rv = request(&resp, &status, cl, p, "POST",
                 apr_pstrcat(p, "/v1/hosts/", cfg->host_name, "/report",
                             NULL), body, NULL, &err);
    json_decref(body);
    json_decref(resp);
    if (rv) {
        csy_log(cfg, CS_LOG_WARN, p, "report to CertService failed: %s",
                err);
    }
    return rv;
}
