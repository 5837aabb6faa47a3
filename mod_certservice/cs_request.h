/*
 * cs_request.h: what a CertService API request carries, read and checked
 * before anything is done with it: the query string, the names in the
 * path, and the JSON body of each endpoint.
 *
 * Pure code: APR, jansson and lib/cs_name; no httpd types, so the unit
 * tests and the fuzzer (t/fuzz/fuzz_cs_request.c) run exactly what the
 * glue runs.  Every function here returns 0 when the request is good,
 * else the HTTP status to answer (400, or 413 for too many domains) with
 * *err the reason: valid UTF-8 (it goes into the JSON error body) and
 * printable ASCII wherever it quotes the request.
 */
#ifndef CS_REQUEST_H
#define CS_REQUEST_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

/* The statuses the parsers answer with (httpd's numbers). */
#define CS_REQ_BAD              400
#define CS_REQ_TOO_LARGE        413

/* Query parameters: defaults and bounds. */
#define CS_REQ_DEFAULT_LIMIT    100
#define CS_REQ_MAX_LIMIT        1000

/* One query parameter, decoded. */
typedef struct {
    const char *name;
    const char *value;          /* "" for "name" and "name=" */
} cs_query_param_t;

/**
 * Split and decode a query string: parts separated by '&' (empty parts
 * skipped), each "name" or "name=value"; %XX escapes are decoded, '+' is
 * kept as it is.  A '%' not followed by two hex digits, or one that
 * decodes to NUL (%00), in a name or a value is a 400 naming the
 * parameter: a value must never end early at a NUL that the client sent.
 * @param params array of cs_query_param_t, in order (from p)
 * @param args   the query as received (undecoded); NULL or "": none
 */
int cs_query_parse(apr_array_header_t **params, apr_pool_t *p,
                   const char *args, const char **err);

/** The value of parameter name, its last occurrence; NULL if absent. */
const char *cs_query_get(const apr_array_header_t *params, const char *name);

/**
 * A decimal parameter from 0 to max (digits only: no sign, no space),
 * dflt when absent.  400 `query parameter 'NAME' must be a number from 0
 * to MAX` otherwise.
 */
int cs_query_int(apr_int64_t *out, apr_pool_t *p,
                 const apr_array_header_t *params, const char *name,
                 apr_int64_t dflt, apr_int64_t max, const char **err);

/** GET /v1/changes?since=SEQ&limit=N: since from 0 to 2^63-1 (default
 * 0), limit from 1 to 1000 (default 100). */
int cs_req_changes(apr_int64_t *since, int *limit, apr_pool_t *p,
                   const apr_array_header_t *params, const char **err);

/** GET /v1/domains?limit=N&after=NAME: limit as above; after normalised
 * (cs_req_domain), NULL when absent. */
int cs_req_domains(const char **after, int *limit, apr_pool_t *p,
                   const apr_array_header_t *params, const char **err);

/**
 * A domain name from the path, a body or a parameter, normalised
 * (cs_name_normalize): 400 `invalid domain name '...': <reason>`, the
 * name shown printable.  what, if not NULL, prefixes the reason (e.g.
 * "query parameter 'after'").
 */
int cs_req_domain(const char **name, apr_pool_t *p, const char *raw,
                  const char *what, const char **err);

/** Pool, host and lease names and report states: 1 to 64 characters of
 * A-Z a-z 0-9 . _ - */
int cs_req_token_ok(const char *s);

/**
 * A request body: a JSON object of len bytes (no body at all is {}), no
 * duplicate keys.  400 `malformed JSON at line L column C: ...` or `the
 * body must be a JSON object`.  The parsers below call it; *body is a new
 * reference (the caller json_decref()s it).
 */
int cs_req_json(json_t **body, apr_pool_t *p, const char *buf,
                apr_size_t len, const char **err);

/** POST /v1/bundles {"domains": [names]}: at most max_batch, each
 * normalised (array of const char *, in order). */
int cs_req_bundles(apr_array_header_t **domains, apr_pool_t *p,
                   const char *buf, apr_size_t len, int max_batch,
                   const char **err);

/** POST /v1/pools/POOL/leases {"host": token, "ttl": 1..max_ttl}. */
int cs_req_lease(const char **host, int *ttl, apr_pool_t *p,
                 const char *buf, apr_size_t len, int max_ttl,
                 const char **err);

/** POST /v1/hosts/HOST/report. */
typedef struct {
    const char *pool;           /* token */
    apr_int64_t seq;            /* >= 0 */
    const char *state;          /* token */
    const char *failed_json;    /* a JSON object, compact; "{}" if none */
} cs_report_t;
int cs_req_report(cs_report_t *report, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err);

/** An ACME profile name: 1 to 64 characters of A-Z a-z 0-9 . _ - (what
 * lib/cs_acme.h's cs_acme_profile_name_ok() takes). */
int cs_req_profile_ok(const char *s);

/**
 * PUT /v1/domains/DOMAIN {"key_type": "ec-p256" | "rsa-2048", "profile":
 * NAME}: *kt a cs_key_type_t, dflt when absent; *profile the ACME profile
 * (cs_req_profile_ok), NULL when absent or null.  400 `profile '...' is
 * not a profile name ...` quotes it printable.
 */
int cs_req_put_domain(int *kt, const char **profile, apr_pool_t *p,
                      const char *buf, apr_size_t len, int dflt,
                      const char **err);

/** PUT /v1/domains/DOMAIN/certificate {"chain_pem": s, "key_pem": s},
 * or, with key_cms not NULL, {"chain_pem": s, "key_cms": s} (a key its
 * importer sealed): exactly one of *key_pem and *key_cms is set.
 * The copy of a plain key in p is cleansed when p is cleared. */
int cs_req_import(const char **chain_pem, const char **key_pem,
                  const char **key_cms, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err);

/** POST /v1/domains/DOMAIN/revoke {"reason": RFC 5280 code, not 7};
 * 0 when absent. */
int cs_req_revoke(int *reason, apr_pool_t *p, const char *buf,
                  apr_size_t len, const char **err);

#endif /* CS_REQUEST_H */
