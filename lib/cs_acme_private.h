/*
 * cs_acme_private.h: what the files of the ACME client share (cs_acme.c,
 * cs_acme_order.c, cs_acme_precheck.c); not for its users.
 */
#ifndef CS_ACME_PRIVATE_H
#define CS_ACME_PRIVATE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>

#include "cs_acme.h"
#include "cs_http.h"

#define ACME_MAX_BODY       (1024 * 1024)
#define ACME_MAX_RETRY_AFTER (7 * 86400)   /* seconds */
#define ACME_NONCE_TRIES    5
#define ACME_ERR_PREFIX     "urn:ietf:params:acme:error:"
/* What an error text keeps of a CA's problem document. */
#define ACME_ERR_MAX        1024
/* The longest error text of a call (cs_acme.h). */
#define ACME_ERR_TEXT_MAX   1023

struct cs_acme_t {
    apr_pool_t *pool;
    cs_acme_conf_t conf;
    cs_http_t *http;            /* conf.http, or the curl one made */
    /* The directory. */
    int have_dir;
    const char *new_nonce, *new_account, *new_order, *revoke_cert,
               *key_change, *renewal_info;
    apr_table_t *profiles;      /* meta.profiles: name -> description;
                                 * NULL: the directory lists none */
    int eab_required;           /* meta.externalAccountRequired */
    /* The account. */
    EVP_PKEY *key;
    const char *kid;
    char nonce[256];
    apr_int64_t retry_after;
    cs_acme_stats_t stats;
    char err[ACME_ERR_TEXT_MAX + 1];    /* the last error of a call
                                         * whose pool went */
};

/* An answer, with the headers the protocol reads taken out. */
typedef struct {
    long status;
    char *body;                         /* NUL-terminated */
    apr_size_t len;
    apr_table_t *headers;
    const char *location;               /* Location, or NULL */
    apr_int64_t retry_after;            /* seconds; 0: none */
    apr_array_header_t *alternates;     /* const char *: Link rel=alternate */
} acme_resp_t;

/* Whether the client may use url: "https://" and printable ASCII only
 * (what a CA hands out; no space or control character reaches the
 * transport, an error text or a log line). */
int acme_url_ok(const char *url);

/* A text from a CA's document (JSON: valid UTF-8) for an error line: at
 * most max bytes, cut at a character, control characters as spaces; from
 * p.  NULL for NULL. */
const char *acme_ca_text(apr_pool_t *p, const char *s, apr_size_t max);

/* Whether the caller asked the client to stop (conf.stop). */
static APR_INLINE int acme_stopping(const cs_acme_t *a)
{
    return a->conf.stop && *a->conf.stop;
}

/* err cut to ACME_ERR_TEXT_MAX bytes at a character (a copy from p if
 * it must be cut); NULL for NULL. */
const char *acme_cut_err(apr_pool_t *p, const char *err);

/* err, cut likewise and kept past the call's pool in a's buffer. */
const char *acme_keep_err(cs_acme_t *a, const char *err);

void acme_log(cs_acme_t *a, cs_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One exchange with the CA.  method: "GET", "HEAD" or "POST" (body). */
apr_status_t acme_http(acme_resp_t *r, cs_acme_t *a, apr_pool_t *p,
                       const char *method, const char *url,
                       const char *body, const char *accept,
                       const char **err);

/* A signed POST (payload "" for POST-as-GET); jwk: the JWK in the header
 * instead of the kid.  Error answers become a status and *err. */
apr_status_t acme_post(acme_resp_t *r, cs_acme_t *a, apr_pool_t *p,
                       const char *url, const char *payload, EVP_PKEY *key,
                       int jwk, const char *accept, const char *what,
                       const char **err);

/* Maps an error answer to a status, *err, and the Retry-After. */
apr_status_t acme_answer_error(cs_acme_t *a, apr_pool_t *p,
                               const acme_resp_t *r, const char *what,
                               const char **err);

/* The JSON object of an answer (new reference), or NULL and *err. */
json_t *acme_body_json(apr_pool_t *p, const acme_resp_t *r,
                       const char *what, const char **err);

/* A string member of o, copied into p; NULL if absent. */
const char *acme_jstr(apr_pool_t *p, json_t *o, const char *name);

#endif /* CS_ACME_PRIVATE_H */
