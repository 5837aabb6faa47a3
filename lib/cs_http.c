/*
 * cs_http.c: what every transport shares (see cs_http.h): the call
 * through the send function and the Retry-After grammar.  No libcurl
 * here, so a unit test over the fake transport needs none of it.
 */
#include <apr_date.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "cs_http.h"

apr_status_t cs_http_send(cs_http_t *http, cs_http_resp_t *resp,
                          const cs_http_req_t *req, apr_pool_t *p,
                          const char **err)
{
    apr_status_t rv;

    resp->status = 0;
    resp->body = "";
    resp->len = 0;
    resp->headers = NULL;
    *err = NULL;
    rv = http->send(http->baton, resp, req, p, err);
    /* The promises of cs_http.h, whatever the transport did. */
    if (!resp->body) {
        resp->body = "";
        resp->len = 0;
    }
    if (!resp->headers) {
        resp->headers = apr_table_make(p, 1);
    }
    if (rv != APR_SUCCESS && !*err) {
        *err = apr_psprintf(p, "%s %s: %pm", req->method, req->url, &rv);
    }
    return rv;
}

apr_int64_t cs_http_retry_after(const char *v, apr_time_t now,
                                apr_int64_t max)
{
    apr_time_t t;
    apr_int64_t s;

    if (!v) {
        return 0;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (apr_isdigit(*v)) {
        /* Bounded: a huge value must not overflow now + s. */
        s = apr_atoi64(v);
        return s < 0 ? 0 : s > max ? max : s;
    }
    t = apr_date_parse_http(v);
    if (t) {
        s = apr_time_sec(t - now);
        return s <= 0 ? 1 : s > max ? max : s;
    }
    return 0;
}
