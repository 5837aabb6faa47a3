/*
 * cs_ondemand.c: on-demand issuance, what CertService decides (see
 * cs_ondemand.h): the request read, the ask URL, what the ask's answer
 * means, one refusal event per name and window.
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>

#include "cs_name.h"
#include "cs_ondemand.h"
#include "cs_request.h"

int cs_od_parse_request(apr_array_header_t **items, const char **host,
                        apr_pool_t *p, const char *buf, apr_size_t len,
                        int max, const char **err)
{
    json_t *body, *names, *h, *v;
    apr_hash_t *seen = apr_hash_make(p);
    size_t i;
    int rc;

    *items = apr_array_make(p, 8, sizeof(cs_od_item_t));
    *host = NULL;
    if ((rc = cs_req_json(&body, p, buf, len, err))) {
        return rc;
    }
    names = json_object_get(body, "domains");
    h = json_object_get(body, "host");
    if (!json_is_array(names) || (h && !json_is_string(h))) {
        json_decref(body);
        *err = "the body must be {\"domains\": [names], \"host\": name}";
        return CS_REQ_BAD;
    }
    if (json_array_size(names) > (size_t)max) {
        json_decref(body);
        *err = apr_psprintf(p, "at most %d names per request", max);
        return CS_REQ_TOO_LARGE;
    }
    if (h) {
        *host = cs_printable(p, json_string_value(h), json_string_length(h),
                             64);
    }
    json_array_foreach(names, i, v) {
        cs_od_item_t it;
        const char *why;

        if (!json_is_string(v)) {
            json_decref(body);
            *err = apr_psprintf(p, "domains[%d] is not a string", (int)i);
            return CS_REQ_BAD;
        }
        memset(&it, 0, sizeof(it));
        it.raw = cs_printable(p, json_string_value(v), json_string_length(v),
                              CS_NAME_MAX);
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            it.why = "contains a NUL byte";
        }
        else if ((why = cs_name_normalize(&it.name, p,
                                          json_string_value(v)))) {
            it.name = NULL;
            it.why = why;
        }
        else if (it.name[0] == '*') {
            it.name = NULL;
            it.why = "a wildcard is never asked for on demand (a handshake "
                     "names one host)";
        }
        if (it.name) {
            if (apr_hash_get(seen, it.name, APR_HASH_KEY_STRING)) {
                continue;
            }
            apr_hash_set(seen, it.name, APR_HASH_KEY_STRING, "");
        }
        *(cs_od_item_t *)apr_array_push(*items) = it;
    }
    json_decref(body);
    return 0;
}

const char *cs_od_ask_url(apr_pool_t *p, const char *base,
                          const char *domain)
{
    static const char hex[] = "0123456789ABCDEF";
    char *enc = apr_palloc(p, strlen(domain) * 3 + 1), *o = enc;
    const unsigned char *s;

    /* A normalised name is LDH and dots, nothing to escape; anything
     * else is escaped all the same, should a caller pass it. */
    for (s = (const unsigned char *)domain; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
            || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.') {
            *o++ = (char)*s;
        }
        else {
            *o++ = '%';
            *o++ = hex[*s >> 4];
            *o++ = hex[*s & 15];
        }
    }
    *o = '\0';
    return apr_pstrcat(p, base, strchr(base, '?') ? "&" : "?", "domain=",
                       enc, NULL);
}

int cs_od_ask_allows(apr_status_t rv, long status)
{
    return rv == APR_SUCCESS && status == 200;
}

const char *cs_od_event_discriminator(apr_pool_t *p, apr_int64_t now,
                                      apr_int64_t ttl)
{
    if (ttl < 1) {
        ttl = 1;
    }
    return apr_psprintf(p, "on-demand@%" APR_INT64_T_FMT, now / ttl);
}
